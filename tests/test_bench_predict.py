import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import synth_signal, write_clip

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_predict.py"


def bench_predict(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_times_each_model_in_alternating_rounds(tiny_model, tmp_path, rng):
    model_path, _ = tiny_model
    second = tmp_path / "second" / model_path.name
    second.parent.mkdir()
    shutil.copy(model_path, second)
    shutil.copy(model_path.with_suffix(".json"), second.with_suffix(".json"))
    clip = write_clip(tmp_path / "clip.wav", synth_signal(rng, emotion=3, seconds=1.5), sr=48000)
    done = bench_predict(str(model_path), str(second), "--clip", str(clip), "--repeats", "2",
                         "--rounds", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{clip}: 2.30 s at 48000 Hz, 2 calls a round" in done.stdout
    rounds = re.findall(r"^round (\d) (.+): median \d+ ms, fastest \d+ ms$", done.stdout, flags=re.MULTILINE)
    assert rounds == [("1", str(model_path)), ("1", str(second)), ("2", str(model_path)), ("2", str(second))]


def test_without_a_clip_or_dataset_names_the_missing_file(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "RAVDESS_DIR"}
    env["EMOTION_CNN_ROOT"] = str(tmp_path)  # a project folder with no dataset/
    done = bench_predict(env=env)
    assert done.returncode == 2
    missing = tmp_path / "dataset" / "Actor_01" / "03-01-05-02-01-01-01.flac"
    assert f"{missing}: no such audio file" in done.stderr and "set RAVDESS_DIR" in done.stderr


@pytest.mark.parametrize("option", ["--repeats", "--rounds"])
def test_refuses_fewer_than_one_repeat_or_round(option, tmp_path):
    done = bench_predict("--clip", str(tmp_path / "clip.wav"), option, "0")
    assert done.returncode == 2
    assert f"argument {option}: must be a whole number of at least 1, not '0'" in done.stderr
