"""A member of a wholly other kind, with no training worth the name: a linear model or an SVM
on each clip's statistics (round 53's free check).

    python benchmarks/functionals_member.py .device/features-hop20.npz .device/pitch-hop20.npz \
        .device/r30a/baseline_seed42.csv,.device/r30b/baseline_seed42.csv --predictions .device/r53c

Per clip, from the log-mel export (frames above the floor only) and ``export_pitch.py``'s
contour: each mel band's mean, spread, 10th/50th/90th percentiles and mean absolute frame-to-frame
change; the frame level's mean, spread and range and the active frames; the voiced pitch's mean,
spread, 10th and 90th percentiles and the voiced share (393 numbers, standardised). Each fold
trains on its training actors minus the validation actors of the reference run (a
``search.py --predictions`` file, whose folds and validation actors it copies) and scores those
actors, so its predictions join that run's in ``score_ensemble.py``. Writes
``logreg_c0.1.csv``, ``logreg_c1.csv`` and ``svm_rbf_c10.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from emotion_cnn.config import EMOTIONS, LABEL_INDEX
from emotion_cnn.cv import load_exported
from emotion_cnn.evaluate import evaluate_predictions
from emotion_cnn.io import atomic_save_csv
from emotion_cnn.splits import EMOBOX_TEST_ACTORS

CLASSIFIERS = {
    "logreg_c0.1": lambda: LogisticRegression(C=0.1, max_iter=3000),
    "logreg_c1": lambda: LogisticRegression(C=1.0, max_iter=3000),
    # SVC(probability=True) is deprecated from scikit-learn 1.9 for this
    "svm_rbf_c10": lambda: CalibratedClassifierCV(SVC(C=10.0), ensemble=False),
}


def clip_statistics(x: np.ndarray, pitch: np.ndarray, *, floor: float) -> np.ndarray:
    """The statistics of one clip, ``x`` ``(n_mels, n_frames)`` in dB and ``pitch``
    ``(2, n_frames)`` (pitch, voiced flag): a vector of ``6 * n_mels + 9`` numbers."""
    active = x.max(axis=0) > floor + 1e-3
    x = x[:, active] if active.sum() > 5 else x
    level = x.mean(axis=0)
    voiced = pitch[1] > 0.5
    f0 = pitch[0][voiced] if voiced.sum() > 3 else pitch[0]
    parts = [x.mean(1), x.std(1), *np.percentile(x, [10, 50, 90], axis=1), np.abs(np.diff(x, axis=1)).mean(1),
             [level.mean(), level.std(), np.percentile(level, 90) - np.percentile(level, 10), active.sum()],
             [f0.mean(), f0.std(), np.percentile(f0, 10), np.percentile(f0, 90), voiced.mean()]]
    return np.concatenate([np.ravel(p) for p in parts]).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("pitch")
    parser.add_argument("reference", help="a search.py --predictions run (parts joined by a comma)")
    parser.add_argument("--predictions", metavar="DIR", required=True)
    args = parser.parse_args()
    X, meta, _ = load_exported(args.data)
    pitch = np.load(args.pitch)
    if list(pitch["clip_id"]) != list(meta["clip_id"]):
        raise ValueError(f"{args.pitch}: its clips are not {args.data}'s, in its order")
    floor = float(X.min())
    stats = np.stack([clip_statistics(x.astype(np.float32), p, floor=floor) for x, p in zip(X, pitch["pitch"])])
    reference = pd.concat([pd.read_csv(part) for part in args.reference.split(",")])
    row_of = {clip: i for i, clip in enumerate(meta["clip_id"])}
    y = meta["emotion"].map(LABEL_INDEX).to_numpy()
    out = Path(args.predictions)
    out.mkdir(parents=True, exist_ok=True)
    for name, make in CLASSIFIERS.items():
        frames = []
        for fold, scored in reference.groupby("fold"):
            held_out = set(scored["actor"]) | set(EMOBOX_TEST_ACTORS[int(fold)])
            train = ~meta["actor"].isin(held_out).to_numpy()
            rows = np.array([row_of[c] for c in scored["clip_id"]])
            classifier = make_pipeline(StandardScaler(), make())
            classifier.fit(stats[train], y[train])
            probabilities = np.zeros((len(rows), len(EMOTIONS)), np.float32)
            probabilities[:, classifier.classes_] = classifier.predict_proba(stats[rows])
            evaluation = evaluate_predictions(probabilities, y[rows], list(EMOTIONS), meta.iloc[rows])
            frames.append(evaluation.predictions.assign(fold=fold))
        pooled = pd.concat(frames, ignore_index=True)
        atomic_save_csv(out / f"{name}.csv", pooled)
        ua = pooled.groupby("fold").apply(lambda f: f.groupby("true")["correct"].mean().mean()).mean()
        print(f"{name}: validation UA {100 * ua:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
