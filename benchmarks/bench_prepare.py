"""Cold and warm `prepare` on the full dataset: wall time, clips per second, peak memory.

    RAVDESS_DIR=../shared/ravdess python benchmarks/bench_prepare.py

Cold = empty feature cache, no PNGs, no split (a fresh temporary project root);
warm = the same command again. Each run is a separate process, timed from outside,
so start-up and imports are counted.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time

COMMAND = [sys.executable, "-m", "emotion_cnn.cli", "prepare", "--quiet"]


def timed(env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(COMMAND, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> int:
    if not os.environ.get("RAVDESS_DIR"):
        print("set RAVDESS_DIR to the RAVDESS folder", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as root:
        env = {**os.environ, "EMOTION_CNN_ROOT": root}
        env.pop("EMOTION_CNN_CACHE", None)
        cold, cold_mb = timed(env)
        warm, warm_mb = timed(env)
        clips = sum(1 for line in open(os.path.join(root, "spectrograms", "metadata.csv"))) - 1
    print(f"clips: {clips}, cores: {os.cpu_count()}")
    print(f"cold prepare: {cold:.1f} s ({clips / cold:.0f} clips/s), peak RSS of the largest process {cold_mb:.0f} MiB")
    print(f"warm prepare: {warm:.1f} s ({clips / warm:.0f} clips/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
