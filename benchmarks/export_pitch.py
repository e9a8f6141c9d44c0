"""Export every clip's pitch contour, frame-aligned with ``export_features.py``'s log-mel, for
``search.py``'s ``pitch: PATH`` experiment key (round 34).

    python benchmarks/export_pitch.py .device/features-hop20.npz .device/pitch-hop20.npz

For each clip of the feature export (same order, read from its ``.csv``): the same decoded,
trimmed, fixed-length signal as the log-mel (:func:`emotion_cnn.features.clip_signal`), then
``librosa.pyin`` (65-600 Hz, the export's hop, centred frames) gives two rows a frame:
the pitch in semitones re 100 Hz (unvoiced frames 0) and whether pyin decoded the frame as
voiced (1 or 0; its voicing probability runs low on quiet clips, its decoded flag does not). Writes
``pitch`` ``(n_clips, 2, n_frames)`` float32 and the clip ids.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
from tqdm import tqdm

from emotion_cnn.config import FeatureConfig
from emotion_cnn.features import clip_signal, load_mono
from emotion_cnn.io import atomic_open


def pitch_rows(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``(2, n_frames)``: semitones re 100 Hz (0 where unvoiced) and the voiced flag (1 or 0)."""
    f0, voiced, _ = librosa.pyin(clip_signal(y, cfg), fmin=65.0, fmax=600.0, sr=cfg.sr, frame_length=1024,
                                             hop_length=cfg.hop_length, center=True)
    semitones = np.where(np.isfinite(f0), 12 * np.log2(np.where(np.isfinite(f0), f0, 100.0) / 100.0), 0.0)
    if len(f0) != cfg.n_frames:
        raise ValueError(f"pyin gave {len(f0)} frames, the log-mel has {cfg.n_frames}")
    return np.stack([semitones, voiced]).astype(np.float32)


def main() -> int:
    # before 0.11, pyin's frames start half a window early against the log-mel's centred frames
    if tuple(int(part) for part in librosa.__version__.split(".")[:2]) < (0, 11):
        raise SystemExit(f"export_pitch.py needs librosa >= 0.11, not {librosa.__version__}")
    parser = argparse.ArgumentParser()
    parser.add_argument("features", help="an export_features.py .npz (its .csv beside it)")
    parser.add_argument("out")
    parser.add_argument("--ravdess", default=None, help="the dataset folder (default: $RAVDESS_DIR)")
    args = parser.parse_args()
    import os

    root = Path(args.ravdess or os.environ["RAVDESS_DIR"])
    with np.load(args.features) as export:
        cfg = FeatureConfig(**json.loads(str(export["features"])))
    meta = pd.read_csv(Path(args.features).with_suffix(".csv"))
    rows = []
    for path in tqdm(meta["path"], desc="pitch"):
        y, _, _ = load_mono(root / path, sr=cfg.sr)
        rows.append(pitch_rows(y, cfg))
    pitch = np.stack(rows)
    with atomic_open(Path(args.out)) as handle:
        np.savez(handle, pitch=pitch, clip_id=meta["clip_id"].to_numpy(str))
    print(f"{args.out}: {pitch.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
