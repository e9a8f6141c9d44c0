import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from emotion_cnn.config import FeatureConfig, ModelConfig
from emotion_cnn.model import build_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_epoch.py"


def bench_epoch(*args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPT), "--clips", "64", "--epochs", "2",
                           "--set", "model.filters=[4, 8]", *args],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("plain, allocator", [(False, "true"), (True, "(unset)")])
def test_reports_each_epoch_of_the_chosen_model_with_or_without_the_allocator(plain, allocator):
    out = bench_epoch(*(["--plain"] if plain else []))
    shape = (FeatureConfig().n_mels, FeatureConfig().n_frames)
    parameters = build_model(shape, 8, ModelConfig(filters=[4, 8])).count_params()  # --set took
    assert (f"64 clips {shape}, {parameters} parameters, 2 batch workers, "
            f"TF_CPU_ALLOCATOR_USE_BFC={allocator}, ") in out
    epochs = re.findall(r"^epoch (\d): [\d.]+ s wall, user [\d.]+ s, kernel [\d.]+ s, \d+ page faults$",
                        out, flags=re.MULTILINE)
    assert epochs == ["1", "2"]


@pytest.mark.parametrize("fused", ["true", "false"])
def test_workers_and_batch_norm_flags_take(fused):
    out = bench_epoch("--workers", "1", "--set", f"train.fused_batchnorm={fused}")
    assert ", 1 batch workers, " in out
    used = fused == "true" and keras.backend.backend() == "tensorflow"
    assert out.count(f", {'fused' if used else 'Keras'} batch norm\n") == 1
    assert re.findall(r"^epoch (\d): [\d.]+ s wall", out, flags=re.MULTILINE) == ["1", "2"]
