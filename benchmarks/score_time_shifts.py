"""Score saved fold models (``search.py --models DIR``) with test-time averaging over time
shifts, without training again: each shift set against the same models unshifted.

    python benchmarks/score_time_shifts.py .device/features-hop20.npz .device/models8/se_4 \
        --shifts=-8,-4,0,4,8 --shifts=-4,0,4 [--log benchmarks/results_log.jsonl --round 8]

The models must have been scored on validation actors (the default of ``search.py``); the
folds' validation actors are scored again here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras

from emotion_cnn.config import Config
from emotion_cnn.cv import fold_row, fold_split, summarise
from emotion_cnn.evaluate import predict_probabilities, scores
from emotion_cnn.model import time_shift_average


def score_shift_sets(X, meta, models_dir: Path, shift_sets: list[list[int]]) -> dict[str, dict]:
    """``{"[shifts]": {"folds": [...], "mean": ..., "std": ...}}`` on each fold's validation actors."""
    rows: dict[str, list[dict]] = {str(s): [] for s in shift_sets}
    for path in sorted(models_dir.glob("fold*.keras")):
        fold = int(path.stem.removeprefix("fold"))
        cfg = Config()
        cfg.split.protocol, cfg.split.fold = "emobox", fold
        split = fold_split(X, meta, cfg, name=f"emobox-fold{fold}")
        model = keras.models.load_model(path, safe_mode=True)
        for shifts in shift_sets:
            predicted = predict_probabilities(time_shift_average(model, shifts), split.X_val).argmax(axis=1)
            rows[str(shifts)].append(fold_row(fold, scores(split.y_val, predicted, split.labels),
                                              split.info["actors"]["val"]))
    if not any(rows.values()):
        raise FileNotFoundError(f"{models_dir} holds no fold<N>.keras models")
    return {key: {"folds": folds, **summarise(folds)} for key, folds in rows.items()}


def main() -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from search import load_exported

    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--shifts", action="append", required=True, metavar="S1,S2,...",
                        help="frames, e.g. --shifts=-8,-4,0,4,8 (repeat for more sets)")
    parser.add_argument("--round", default="")
    parser.add_argument("--log", help="append each result to this JSON-lines log")
    args = parser.parse_args()
    shift_sets = [[0]] + [[int(s) for s in text.split(",")] for text in args.shifts]
    X, meta = load_exported(args.data)
    results = score_shift_sets(X, meta, args.models_dir, shift_sets)
    for key, result in results.items():
        print(f"RESULT {args.models_dir.name} shifts {key}: val UA {result['mean']['ua']:.1f} "
              f"± {result['std']['ua']:.1f} {[round(r['ua'], 1) for r in result['folds']]}")
        if args.log and key != "[0]":
            record = {"name": f"{args.models_dir.name}+time_shifts{key}",
                      "overrides": {"test_time_shifts": json.loads(key), "models_of": args.models_dir.name},
                      "evaluated_on": "val", **result}
            if args.round:
                record["round"] = args.round
            with open(args.log, "a") as log:
                log.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
