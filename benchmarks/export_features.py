"""Export every clip's features (float16) and metadata for a machine without the audio stack.

    python benchmarks/export_features.py .device/features.npz [--set features.n_mels=64 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from emotion_cnn.cli import parse_set
from emotion_cnn.config import load_config
from emotion_cnn.cv import load_features
from emotion_cnn.io import atomic_open, atomic_save_csv


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    cfg = load_config(None, **parse_set(args.set))
    X, meta = load_features(cfg)
    out = Path(args.out)
    # search.py checks these against each experiment's `features:` settings
    with atomic_open(out) as handle:
        np.savez(handle, X=X.astype(np.float16), features=json.dumps(dataclasses.asdict(cfg.features)),
                 selection=json.dumps({"keep_duplicates": cfg.keep_duplicates, "limit_actors": cfg.limit_actors}))
    atomic_save_csv(out.with_suffix(".csv"), meta)
    print(f"{out}: {X.shape}, {out.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
