"""Emotion of any recording with the saved model.

Any wav/flac (or other format libsndfile reads), any sample rate, mono or stereo, any
length: the clip is featurised exactly as in training; clips longer than the model's
window are cut into half-overlapping windows whose probabilities are averaged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotion_cnn import features
from emotion_cnn.config import EMOTIONS, FeatureConfig, paths

AUDIO_TYPES = ("wav", "flac", "mp3", "ogg")  # what libsndfile reads and the app accepts


@dataclass
class Classifier:
    """A loaded model with the label order and feature settings it was trained with."""

    model: object
    labels: list[str]
    features: FeatureConfig
    info: dict = field(default_factory=dict)
    path: Path | None = None


@dataclass
class Prediction:
    path: str
    label: str
    probabilities: dict[str, float]  # label -> probability, in the model's label order
    windows: int
    window_labels: list[str]  # top emotion of each window, in time order
    window_probabilities: np.ndarray  # (windows, n_classes)
    duration: float  # seconds, as recorded
    window_starts: np.ndarray  # (windows,) seconds after the first sound
    window_features: np.ndarray  # (windows, n_mels, n_frames): what the model saw

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probabilities": self.probabilities,
                "windows": self.windows, "window_labels": self.window_labels,
                "duration": round(self.duration, 3)}


def read_model_info(model_path: Path) -> dict:
    """The sidecar JSON next to a model (``emotion_cnn_model.json``), or ``{}``."""
    sidecar = Path(model_path).with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.exists() else {}


@lru_cache(maxsize=4)
def _load(path_str: str, mtime_ns: int) -> Classifier:
    import keras

    path = Path(path_str)
    model = keras.models.load_model(path, safe_mode=True)
    info = read_model_info(path)
    feature_cfg = FeatureConfig(**info["features"]) if "features" in info else FeatureConfig()
    labels = info.get("labels") or list(EMOTIONS)
    expected = (feature_cfg.n_mels, feature_cfg.n_frames)
    if tuple(model.input_shape[1:]) != expected:
        raise ValueError(f"{path}: the model takes {tuple(model.input_shape[1:])} features but "
                         f"{path.with_suffix('.json').name} describes {expected}")
    return Classifier(model, labels, feature_cfg, info, path)


def load_classifier(model_path: str | Path | None = None) -> Classifier:
    """Load ``model_path`` (default: the project's ``emotion_cnn_model.keras``), cached."""
    path = Path(model_path or paths().model)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no model there: train one with `emotion-cnn train`")
    return _load(str(path.resolve()), path.stat().st_mtime_ns)


def prepare_signal(samples: np.ndarray, sr: int, *, name: str, cfg: FeatureConfig) -> np.ndarray:
    """Check a decoded clip ``(n, channels)`` int16 and return its mono signal at ``cfg.sr``.

    Raises
    ------
    features.AudioError
        Shorter than 0.5 s, or silent (:func:`features.check_clip`, the rule training data passed).
    """
    y = features.to_mono_float(samples)
    try:
        features.check_clip(y, sr=sr)
    except features.AudioError as err:
        raise type(err)(f"{name}: {err}") from None
    return features.resample(y, orig_sr=sr, sr=cfg.sr)


def predict_signal(y: np.ndarray, classifier: Classifier, *, name: str = "<signal>",
                   duration: float | None = None) -> Prediction:
    """Predict from a mono float signal ``(n,)`` already at ``classifier.features.sr``."""
    cfg = classifier.features
    X, starts = features.windows_with_starts(y, cfg)
    probs = np.asarray(classifier.model.predict(X, verbose=0), dtype=np.float64)
    mean = probs.mean(axis=0)
    return Prediction(
        path=name,
        label=classifier.labels[int(mean.argmax())],
        probabilities={lab: float(p) for lab, p in zip(classifier.labels, mean)},
        windows=len(X),
        window_labels=[classifier.labels[i] for i in probs.argmax(axis=1)],
        window_probabilities=probs,
        duration=duration if duration is not None else len(y) / cfg.sr,
        window_starts=starts,
        window_features=X,
    )


def predict_file(path: str | Path, *, model_path: str | Path | None = None,
                 classifier: Classifier | None = None) -> Prediction:
    """Emotion probabilities of one audio file.

    Raises
    ------
    features.AudioError
        Not audio, empty, silent or shorter than 0.5 s; the message names the file.
    """
    classifier = classifier or load_classifier(model_path)
    path = Path(path)
    if not path.is_file():
        raise features.AudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise features.AudioError(f"{path}: empty file (0 bytes)")
    try:
        samples, sr = features.decode(path)
    except features.AudioError as err:
        raise features.AudioError(f"{path}: not readable audio ({err})") from None
    y = prepare_signal(samples, sr, name=str(path), cfg=classifier.features)
    return predict_signal(y, classifier, name=str(path), duration=len(samples) / sr)


def audio_files(inputs: list[str | Path]) -> list[Path]:
    """Expand folders into the audio files under them (sorted); files are kept as given."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*")
                            if p.is_file() and p.suffix.lower().lstrip(".") in AUDIO_TYPES)
        else:
            found.append(item)
    return found
