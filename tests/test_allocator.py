import os
import platform
import subprocess
import sys
import textwrap

import pytest

from emotion_cnn import allocator

# what training steps do to glibc under TensorFlow: its 128 kB trim threshold (its data
# pipeline logs "Memory patch applied: M_TRIM_THRESHOLD=128 kb was set") turns glibc's adaptive
# mmap threshold off, then large tensors are allocated, touched and freed step after step
STEPS = textwrap.dedent("""
    import ctypes, resource, sys
    import numpy as np
    if sys.argv[1] == "package":
        import emotion_cnn
    ctypes.CDLL(None).mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD, as TensorFlow sets it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(30):
        activations = np.ones(5_000_000, dtype=np.float32)  # 20 MB
        del activations
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")
ON_GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def run_python(code: str, *args: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter, without the settings this test process's own import made."""
    inherited = {k: v for k, v in os.environ.items()
                 if k not in ("TF_CPU_ALLOCATOR_USE_BFC", *allocator.GLIBC_MALLOC_VARIABLES)}
    # numpy's huge pages would fault 2 MB at a time and blur the difference
    env = {**inherited, "NUMPY_MADVISE_HUGEPAGE": "0", **env}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


@pytest.mark.skipif(not ON_GLIBC, reason="needs Linux with glibc")
def test_importing_the_package_keeps_freed_tensors_in_the_process():
    default, kept = int(run_python(STEPS, "plain")), int(run_python(STEPS, "package"))
    # 30 x 20 MB touched afresh is about 150,000 faults of 4 kB pages (fewer with the kernel's
    # own huge pages); kept, only the first allocation faults
    assert default > 3000
    assert kept < default / 10


@pytest.mark.skipif(not ON_GLIBC, reason="needs Linux with glibc")
def test_users_own_glibc_settings_stand():
    default = int(run_python(STEPS, "package", GLIBC_TUNABLES="glibc.malloc.arena_max=2"))
    assert default > 3000  # the package did not override what the user chose


def test_tensorflow_gets_its_caching_allocator_unless_the_user_chose():
    code = "import os, emotion_cnn; print(os.environ['TF_CPU_ALLOCATOR_USE_BFC'])"
    assert run_python(code) == "true"
    assert run_python(code, TF_CPU_ALLOCATOR_USE_BFC="false") == "false"


def test_elsewhere_only_the_tensorflow_setting_applies(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delenv("TF_CPU_ALLOCATOR_USE_BFC", raising=False)
    assert allocator.keep_freed_memory() is False
    assert os.environ["TF_CPU_ALLOCATOR_USE_BFC"] == "true"
