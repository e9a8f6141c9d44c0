import os
import platform
import subprocess
import sys
import textwrap

import pytest

# what training steps do to glibc under TensorFlow: its 128 kB trim threshold (set by TF's data
# pipeline) turns glibc's adaptive mmap threshold off, then large tensors are allocated,
# touched and freed step after step
STEPS = textwrap.dedent("""
    import ctypes, resource, sys
    import numpy as np
    if sys.argv[1] == "package":
        import emotion_cnn
    ctypes.CDLL("libc.so.6").mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD, as TensorFlow sets it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        activations = np.ones(5_000_000, dtype=np.float32)  # 20 MB
        del activations
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def python(code: str, *args: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter, without the setting this test process's own import made."""
    inherited = {k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"}
    # numpy's huge pages would fault 2 MB at a time and hide the difference
    env = {**inherited, "NUMPY_MADVISE_HUGEPAGE": "0", **env}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="needs Linux with glibc")
def test_importing_the_package_keeps_freed_tensors_in_the_process():
    default, kept = int(python(STEPS, "plain")), int(python(STEPS, "package"))
    # 30 x 20 MB touched afresh is about 150,000 faults of 4 kB pages; kept, only the first
    assert default > 30 * 1000
    assert kept < default / 10


def test_tensorflow_gets_its_caching_allocator_unless_the_user_chose():
    code = "import os, emotion_cnn; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"
    assert python(code) == "true"
    assert python(code, TF_CPU_ALLOCATOR_USE_BFC="false") == "false"
