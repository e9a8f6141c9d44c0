"""Score an ensemble of runs from their saved per-clip probabilities, without training again.

    python benchmarks/score_ensemble.py NAME runs/a.csv runs/b.csv [--log benchmarks/results_log.jsonl]

Each CSV is a ``search.py --predictions`` file (the same clips of the same folds, scored on the
same actors). The ensemble averages the class probabilities per clip, as
``train.ensemble`` does inside one model, and is scored per fold like ``search.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_cnn.config import EMOTIONS, LABEL_INDEX
from emotion_cnn.cv import fold_row, summarise
from emotion_cnn.evaluate import scores


def ensemble_scores(frames: list[pd.DataFrame]) -> dict:
    columns = [f"p_{label}" for label in EMOTIONS]
    key = ["fold", "clip_id"]
    frames = [f.sort_values(key).reset_index(drop=True) for f in frames]
    for other in frames[1:]:
        if not other[key].equals(frames[0][key]):
            raise ValueError("the prediction files do not hold the same clips of the same folds")
    probabilities = np.mean([f[columns].to_numpy() for f in frames], axis=0)
    y_true = frames[0]["true"].map(LABEL_INDEX).to_numpy()
    rows = []
    for fold in sorted(frames[0]["fold"].unique()):
        mask = (frames[0]["fold"] == fold).to_numpy()
        rows.append(fold_row(int(fold), scores(y_true[mask], probabilities[mask].argmax(axis=1), list(EMOTIONS)),
                             sorted(int(a) for a in frames[0].loc[mask, "actor"].unique())))
    return {"folds": rows, **summarise(rows)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("predictions", nargs="+")
    parser.add_argument("--evaluated-on", default="val")
    parser.add_argument("--round", default="")
    parser.add_argument("--log", help="append the result to this JSON-lines log")
    args = parser.parse_args()
    result = ensemble_scores([pd.read_csv(p) for p in args.predictions])
    record = {"name": args.name, "overrides": {"ensemble_of": [Path(p).stem for p in args.predictions]},
              "evaluated_on": args.evaluated_on, **result}
    if args.round:
        record["round"] = args.round
    print(f"RESULT {args.name}: {args.evaluated_on} UA {result['mean']['ua']:.1f} ± {result['std']['ua']:.1f} "
          f"{[round(r['ua'], 1) for r in result['folds']]}")
    if args.log:
        with open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
