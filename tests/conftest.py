"""Shared fixtures: synthetic RAVDESS-named audio from a seeded RNG, an isolated project
root for every test, and the real dataset when ``RAVDESS_DIR`` is set.

``pytest --require-data`` turns a missing dataset into an error instead of a skip (CI).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from emotion_cnn.config import Config, FeatureConfig, config_from_dict  # noqa: E402

# Emotion k is a tone at BASE_HZ * (k + 1): separable classes for learning tests.
BASE_HZ = 220.0


def pytest_addoption(parser):
    parser.addoption("--require-data", action="store_true",
                     help="fail (not skip) tests that need RAVDESS_DIR when it is missing")


def ravdess_name(*, emotion: int, actor: int, intensity: int = 1, statement: int = 1,
                 repetition: int = 1, modality: int = 3, channel: int = 1) -> str:
    return f"{modality:02d}-{channel:02d}-{emotion:02d}-{intensity:02d}-{statement:02d}-{repetition:02d}-{actor:02d}"


def synth_signal(rng: np.random.Generator, *, emotion: int, sr: int = 48000, seconds: float = 2.0,
                 silence: float = 0.4, channels: int = 1) -> np.ndarray:
    """Silence, a noisy tone whose pitch encodes ``emotion`` (1..8), silence.

    Returns
    -------
    np.ndarray, shape (n, channels), float32 in [-1, 1]
    """
    t = np.arange(int(seconds * sr)) / sr
    f0 = BASE_HZ * emotion * rng.uniform(0.97, 1.03)
    tone = 0.5 * np.sin(2 * np.pi * f0 * t) + 0.25 * np.sin(2 * np.pi * 2 * f0 * t)
    tone *= np.hanning(len(t)) ** 0.2
    tone += 0.01 * rng.standard_normal(len(t))
    pad = np.zeros(int(silence * sr))
    mono = np.concatenate([pad, tone, pad]).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1) * np.linspace(1.0, 0.8, channels)[None, :]


def write_clip(path: Path, signal: np.ndarray, *, sr: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), signal, sr, subtype="PCM_16")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20241124)


@pytest.fixture(autouse=True)
def project_root(tmp_path_factory, monkeypatch) -> Path:
    """Every test writes its derived files (spectrograms/, splits/, runs/...) under a temp root."""
    root = tmp_path_factory.mktemp("project")
    monkeypatch.setenv("EMOTION_CNN_ROOT", str(root))
    monkeypatch.delenv("EMOTION_CNN_CACHE", raising=False)
    return root


def make_dataset(root: Path, rng: np.random.Generator, *, actors=range(1, 7), emotions=range(1, 9),
                 repetitions=(1, 2), intensities=(1,), suffix: str = ".wav", sr: int = 16000,
                 seconds: float = 1.2) -> Path:
    """A RAVDESS-layout tree ``root/Actor_NN/03-01-EE-II-01-RR-NN.wav`` of synthetic clips
    (neutral, emotion 1, only ever at intensity 1, as in RAVDESS)."""
    for actor in actors:
        for emotion in emotions:
            for intensity in intensities if emotion != 1 else (1,):
                for rep in repetitions:
                    name = ravdess_name(emotion=emotion, actor=actor, intensity=intensity, repetition=rep)
                    write_clip(root / f"Actor_{actor:02d}" / f"{name}{suffix}",
                               synth_signal(rng, emotion=emotion, sr=sr, seconds=seconds, silence=0.2), sr=sr)
    return root


@pytest.fixture
def small_features() -> FeatureConfig:
    """Cheap settings for tests: 1 s windows, 32 mel bands."""
    return FeatureConfig(sr=16000, duration=1.0, n_mels=32, n_fft=512, hop_length=256,
                         win_length=512, fmin=20.0, fmax=8000.0)


@pytest.fixture
def synthetic_dataset(tmp_path, rng) -> Path:
    """6 actors x 8 emotions x 2 repetitions = 96 clips at 16 kHz."""
    return make_dataset(tmp_path / "ravdess", rng)


def benchmark_script(name: str):
    """``benchmarks/<name>.py`` imported as a module (the scripts are not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_config(data_dir: Path, **overrides) -> Config:
    """A quick config over ``data_dir``: small features, one worker, actors protocol 1 | 2 | rest,
    one model (tests of ensembles ask for more; test_cli trains the default members)."""
    base = {
        "data_dir": str(data_dir), "workers": 1,
        "features": {"duration": 1.0, "n_mels": 32, "hop_length": 256, "win_length": 512},
        "split": {"protocol": "actors", "test_actors": [1], "val_actors": [2]},
        "train": {"epochs": 2, "batch_size": 16, "ensemble": 1, "temporal_members": 0},
        "model": {"filters": [8, 16]},
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            base.setdefault(key, {}).update(value)
        else:
            base[key] = value
    return config_from_dict(base)


@pytest.fixture
def real_data_dir(request) -> Path:
    """The real RAVDESS folder from ``$RAVDESS_DIR``; skipped (or failed, with --require-data) if absent."""
    env = os.environ.get("RAVDESS_DIR")
    if env and (Path(env) / "Actor_01").is_dir():
        return Path(env).resolve()
    message = f"RAVDESS_DIR={env!r} does not hold the RAVDESS Actor_NN folders"
    if request.config.getoption("--require-data"):
        pytest.fail(message + " (--require-data)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One feature cache for all real-data tests in a session, so each clip is decoded once."""
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small model trained once on synthetic separable classes, saved with its sidecar.

    Returns ``(model_path, split, metrics)``; test actor 1, validation actor 2.
    """
    from emotion_cnn.prepare import prepare
    from emotion_cnn.train import train

    base = tmp_path_factory.mktemp("tiny-model")
    data_dir = make_dataset(base / "ravdess", np.random.default_rng(7))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMOTION_CNN_ROOT", str(base / "project"))
        cfg = small_config(data_dir, train={"epochs": 25, "batch_size": 16, "learning_rate": 0.003,
                                            "patience": 25})
        prepare(cfg, progress=False)
        result = train(cfg, verbose=0)
        from emotion_cnn.config import paths

        model_path = paths().model
    return model_path, result
