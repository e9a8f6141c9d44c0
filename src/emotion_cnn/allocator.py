"""Keep a training step's freed tensors in the process instead of handing them to the kernel.

Keras on TensorFlow frees a step's activations (some 400 MB a step for the default model with
batch 32) and allocates them again in the next step. TensorFlow's CPU allocator takes them from
glibc, which returns blocks over 128 kB to the kernel on free (TensorFlow's data pipeline also
sets glibc's trim threshold to 128 kB: it logs "Memory patch applied: M_TRIM_THRESHOLD=128 kb
was set"), so every step faulted its memory in again page by page: 2.8 million minor page
faults and 8 s of kernel time per epoch of 960 clips on this project's VM
(``benchmarks/README.md``, round 8), and far more on days when its page faults are slow.
TensorFlow's caching (BFC) allocator on the CPU, plus glibc settings for what numpy allocates
around it, bring that to about 1,300 faults an epoch. Importing :mod:`emotion_cnn` applies
both, so notebooks, the CLI and benchmark workers all train this way.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TOP_PAD = -2  # glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's upper limit for this setting on 64-bit
TOP_PAD_BYTES = 256 * 2**20
# a user who tunes glibc's malloc through its environment keeps those settings
GLIBC_MALLOC_VARIABLES = ("MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Make TensorFlow cache its CPU tensors and glibc keep freed heap memory.

    TensorFlow reads ``TF_CPU_ALLOCATOR_USE_BFC`` when it creates its CPU allocator (at its
    first operation), so this must run before that; a value the user has set is left alone.
    For glibc, blocks up to 32 MiB come from the heap and 256 MiB of free heap is kept at its
    top, unless the user set any of ``GLIBC_MALLOC_VARIABLES``.

    Returns
    -------
    bool
        True where the glibc settings took (Linux with glibc); False elsewhere (macOS, Windows,
        musl) or where the user's own settings stand, with only the TensorFlow setting applied.
    """
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
    if not sys.platform.startswith("linux") or any(v in os.environ for v in GLIBC_MALLOC_VARIABLES):
        return False
    try:
        libc = ctypes.CDLL(None)  # the C library this process already runs on
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mmap_threshold_set = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    top_pad_set = bool(libc.mallopt(M_TOP_PAD, TOP_PAD_BYTES))
    return mmap_threshold_set and top_pad_set
