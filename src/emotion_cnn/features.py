"""Audio to log-mel features, and log-mel to a PNG picture.

Every clip goes through the same chain, in training and in prediction:
decode -> mix to mono -> resample to ``sr`` -> trim leading/trailing silence ->
centre crop or centre pad to ``duration`` -> log-mel in dB relative to the clip's peak,
clipped to ``[-top_db, 0]``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import soxr
from PIL import Image

from emotion_cnn.config import FeatureConfig
from emotion_cnn.io import atomic_write_bytes


MIN_SECONDS = 0.5  # shorter clips hold too little speech to judge
SILENCE_PEAK = 1e-3  # peak amplitude (full scale 1.0) below which a clip counts as silent


class AudioError(ValueError):
    """Audio that cannot be used; the message says why."""


class SilentAudioError(AudioError):
    """Audio with no signal to analyse."""


class ShortAudioError(AudioError):
    """Audio too short to judge."""


def decode(path: str | Path | io.BytesIO) -> tuple[np.ndarray, int]:
    """Read an audio file (a path or an open binary file) as 16-bit samples.

    Returns
    -------
    samples : np.ndarray, shape (n_frames, n_channels), int16
    sr : int
        The file's own sample rate.
    """
    try:
        source = path if hasattr(path, "read") else str(path)
        samples, sr = sf.read(source, dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise AudioError(f"cannot decode: {err}") from None
    if samples.size == 0:
        raise AudioError("no audio samples")
    return samples, int(sr)


def pcm_sha256(samples: np.ndarray) -> str:
    """SHA-256 of the decoded int16 samples (interleaved), independent of the container."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<i2").tobytes()).hexdigest()


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """``(n_frames, n_channels)`` int16 -> ``(n_frames,)`` float32 in [-1, 1], channels averaged."""
    return (samples.astype(np.float32) / 32768.0).mean(axis=1)


def check_clip(y: np.ndarray, *, sr: int) -> None:
    """The one rule for a usable clip, in training data and in predictions alike.

    Parameters
    ----------
    y : np.ndarray, shape (n,)
        Mono float signal in [-1, 1].
    sr : int

    Raises
    ------
    ShortAudioError
        Shorter than ``MIN_SECONDS``.
    SilentAudioError
        Peak below ``SILENCE_PEAK`` of full scale.
    """
    if len(y) / sr < MIN_SECONDS:
        raise ShortAudioError(f"too short ({len(y) / sr:.2f} s; at least {MIN_SECONDS} s needed)")
    peak = float(np.max(np.abs(y)))
    if peak < SILENCE_PEAK:
        raise SilentAudioError(f"silent (peak {peak:.1e} of full scale)")


def resample(y: np.ndarray, *, orig_sr: int, sr: int) -> np.ndarray:
    """Band-limited resampling (soxr "HQ", what ``librosa.resample`` uses by default)."""
    if orig_sr == sr:
        return y
    # soxr directly: librosa's wrapper adds ~25 ms per clip of checks and copies
    return soxr.resample(y, orig_sr, sr, quality="HQ").astype(np.float32, copy=False)


def trim_silence(y: np.ndarray, *, top_db: float, frame_length: int = 1024,
                 hop_length: int = 256) -> np.ndarray:
    """Drop leading and trailing frames quieter than ``top_db`` below the loudest frame.

    Same rule as ``librosa.effects.trim`` (centred frame RMS), vectorised: librosa's takes
    ~7 ms per clip, this well under 1 ms.

    Raises
    ------
    SilentAudioError
        If the signal is silent (all zeros).
    """
    if not np.any(y):
        raise SilentAudioError("every sample is zero")
    padded = np.pad(y.astype(np.float64), frame_length // 2)
    # frame energies from a running sum: O(n) memory, even for an hour of audio
    energy = np.concatenate([[0.0], np.cumsum(padded ** 2)])
    starts = np.arange(0, len(padded) - frame_length + 1, hop_length)
    # librosa floors frame RMS at 1e-5 (amplitude_to_db's amin), i.e. power at 1e-10
    power = np.maximum((energy[starts + frame_length] - energy[starts]) / frame_length, 1e-10)
    loud = np.flatnonzero(power > power.max() * 10.0 ** (-top_db / 10.0))
    start = loud[0] * hop_length
    end = min(len(y), (loud[-1] + 1) * hop_length)
    return y[start:end]


def fix_length(y: np.ndarray, *, n_samples: int) -> np.ndarray:
    """Centre-crop or centre-pad (with zeros) ``y`` to exactly ``n_samples``."""
    excess = len(y) - n_samples
    if excess >= 0:
        start = excess // 2
        return y[start:start + n_samples]
    before = -excess // 2
    return np.pad(y, (before, -excess - before))


def log_mel(
    y: np.ndarray,
    *,
    sr: int,
    n_fft: int,
    hop_length: int,
    win_length: int,
    n_mels: int,
    fmin: float,
    fmax: float,
    top_db: float,
) -> np.ndarray:
    """Log-mel power spectrogram in dB relative to its own peak.

    Returns
    -------
    np.ndarray, shape (n_mels, 1 + len(y) // hop_length), float32, values in [-top_db, 0]
    """
    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, win_length=win_length,
        n_mels=n_mels, fmin=fmin, fmax=fmax, power=2.0,
    )
    return librosa.power_to_db(mel, ref=np.max, top_db=top_db).astype(np.float32)


def log_mel_from_config(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    return log_mel(
        y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, top_db=cfg.top_db,
    )


def load_mono(path: str | Path, *, sr: int) -> tuple[np.ndarray, str, dict]:
    """Decode, hash, check (:func:`check_clip`), mix down and resample one file.

    Returns
    -------
    y : np.ndarray, shape (n,), float32 at ``sr``
    digest : str
        :func:`pcm_sha256` of the file's samples.
    info : dict
        ``orig_sr``, ``channels`` and ``duration`` (seconds) of the file.
    """
    samples, orig_sr = decode(path)
    info = {"orig_sr": orig_sr, "channels": samples.shape[1], "duration": samples.shape[0] / orig_sr}
    y = to_mono_float(samples)
    check_clip(y, sr=orig_sr)
    return resample(y, orig_sr=orig_sr, sr=sr), pcm_sha256(samples), info


def clip_signal(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mono signal at ``cfg.sr`` -> the trimmed, fixed-length signal a clip's features are made
    from, shape ``(cfg.n_samples,)``."""
    return fix_length(trim_silence(y, top_db=cfg.trim_top_db), n_samples=cfg.n_samples)


def clip_features(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Mono signal at ``cfg.sr`` -> trimmed, fixed-length log-mel, shape ``(n_mels, n_frames)``."""
    return log_mel_from_config(clip_signal(y, cfg), cfg)


def windows(y: np.ndarray, cfg: FeatureConfig, *, overlap: float = 0.5) -> np.ndarray:
    """Log-mel of every ``duration``-long window of a trimmed clip (for long recordings).

    A clip no longer than one window gives exactly :func:`clip_features`. Longer ones are
    cut into windows with ``overlap`` (fraction), the last one aligned to the end.

    Returns
    -------
    np.ndarray, shape (n_windows, n_mels, n_frames), float32
    """
    return windows_with_starts(y, cfg, overlap=overlap)[0]


def windows_with_starts(y: np.ndarray, cfg: FeatureConfig, *,
                        overlap: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """:func:`windows`, and each window's start in seconds from the first sound.

    Returns
    -------
    X : np.ndarray, shape (n_windows, n_mels, n_frames), float32
    starts : np.ndarray, shape (n_windows,), seconds after the trimmed clip's start
    """
    trimmed = trim_silence(y, top_db=cfg.trim_top_db)
    size = cfg.n_samples
    if len(trimmed) <= size:
        return log_mel_from_config(fix_length(trimmed, n_samples=size), cfg)[None], np.zeros(1)
    starts = window_starts(len(trimmed), size=size, overlap=overlap)
    X = np.stack([log_mel_from_config(trimmed[s:s + size], cfg) for s in starts])
    return X, np.asarray(starts) / cfg.sr


def window_starts(length: int, *, size: int, overlap: float = 0.5) -> list[int]:
    """Start samples of the windows :func:`windows` cuts from a trimmed clip of ``length``."""
    if length <= size:
        return [0]
    step = max(1, int(size * (1 - overlap)))
    starts = list(range(0, length - size + 1, step))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def _magma_lut() -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


_LUT: np.ndarray | None = None


def spectrogram_image(features: np.ndarray, *, top_db: float) -> Image.Image:
    """Render a log-mel array as an RGB picture, one pixel per (mel bin, frame).

    The dB range is fixed, so pictures are comparable: ``-top_db`` dB (black) to 0 dB, the
    clip's peak (light yellow), through matplotlib's "magma" colour map. Low frequencies
    are at the bottom; no axes.
    """
    global _LUT
    if _LUT is None:
        _LUT = _magma_lut()
    scaled = np.clip((features + top_db) / top_db, 0.0, 1.0)
    indices = np.round(scaled[::-1] * 255).astype(np.uint8)
    return Image.fromarray(_LUT[indices])


def save_png(features: np.ndarray, path: str | Path, *, top_db: float) -> None:
    buffer = io.BytesIO()
    spectrogram_image(features, top_db=top_db).save(buffer, format="PNG", compress_level=1)
    atomic_write_bytes(path, buffer.getvalue())
