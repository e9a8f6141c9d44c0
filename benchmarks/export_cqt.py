"""Export every clip's constant-Q spectrogram, frame-aligned with ``export_features.py``'s
log-mel, for ``search.py``'s ``inputs: PATH`` experiment key (round 55).

    python benchmarks/export_cqt.py .device/features-hop20.npz .device/cqt-hop20.npz

For each clip of the feature export (same order, read from its ``.csv``): the same decoded,
trimmed, fixed-length signal as the log-mel (:func:`emotion_cnn.features.clip_signal`), then
``librosa.cqt`` from 55 Hz, 12 bins an octave for 7 octaves (84 bins, to 7.04 kHz), the export's
hop, power in dB relative to the clip's peak with the export's floor, as the log-mel is. On a
log-frequency axis a change of pitch, with the formants, is a shift along the axis, the same
for every bin, and a low voice's harmonics stay resolved (the lowest bins' windows are about
0.3 s long); on the mel axis a shift of pitch stretches the bands instead.
Writes ``X`` ``(n_clips, 84, n_frames)`` float16, the clip ids and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
from tqdm import tqdm

from emotion_cnn.config import FeatureConfig
from emotion_cnn.features import clip_signal, load_mono
from emotion_cnn.io import atomic_open

CQT = {"fmin": 55.0, "bins_per_octave": 12, "n_bins": 84}


def log_cqt(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``(84, n_frames)`` constant-Q power in dB relative to the clip's peak, floored at
    ``-cfg.top_db``, of the clip's trimmed, fixed-length signal."""
    power = np.abs(librosa.cqt(clip_signal(y, cfg), sr=cfg.sr, hop_length=cfg.hop_length, **CQT)) ** 2
    out = librosa.power_to_db(power, ref=np.max, top_db=cfg.top_db).astype(np.float32)
    if out.shape[1] != cfg.n_frames:
        raise ValueError(f"cqt gave {out.shape[1]} frames, the log-mel has {cfg.n_frames}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("features", help="an export_features.py .npz (its .csv beside it)")
    parser.add_argument("out")
    parser.add_argument("--ravdess", default=None, help="the dataset folder (default: $RAVDESS_DIR)")
    args = parser.parse_args()
    root = Path(args.ravdess or os.environ["RAVDESS_DIR"])
    with np.load(args.features) as export:
        cfg = FeatureConfig(**json.loads(str(export["features"])))
    meta = pd.read_csv(Path(args.features).with_suffix(".csv"))
    X = np.stack([log_cqt(load_mono(root / path, sr=cfg.sr)[0], cfg)
                  for path in tqdm(meta["path"], desc="cqt")]).astype(np.float16)
    with atomic_open(Path(args.out)) as handle:
        np.savez(handle, X=X, clip_id=meta["clip_id"].to_numpy(str),
                 settings=json.dumps({**CQT, "sr": cfg.sr, "hop_length": cfg.hop_length, "top_db": cfg.top_db}))
    print(f"{args.out}: {X.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
