"""Round 53: does a copy of a trained member, fine-tuned on one gender's training clips, score
that gender's validation actors better than the member it came from?

    python benchmarks/gender_finetune.py .device/features-hop20.npz --seed 42 --folds 1 2 3 \
        --predictions .device/r53a

Per fold: one 2-D member trains as the default's does (validation actors held out), then three
fine-tunings start from its weights, each ``--epochs`` more epochs of the default augmentation
under a cosine decay from ``--learning-rate``: on every training clip (``ft_all``, the control:
more training alone), and on the female or the male training clips alone (``ft_gender``, each
scored on its gender's validation clips, routed by the known gender: an upper bound, since a
real system would need a gender classifier). Writes ``base_seedN.csv``, ``ft_all_seedN.csv`` and
``ft_gender_seedN.csv`` in ``search.py --predictions``' format; score them with
``score_ensemble.py``. Male voices score 17 points below female ones (test actors of 0ba40ab),
and every kind of member shows the gap: this asks whether the shared model leaves room for a
gender's own.

Plan and rule, fixed before any fold ran (2026-12-08): seeds 42-44, all 6 folds, 10 epochs from
a peak of 3e-4 (a tenth of training's), this kind (AMD EPYC family 26); folds 1-3 and 4-6 in two
processes, predictions in .device/r53a|b. Go on only if ``ft_gender``'s mean UA over the three
seeds is >= both ``base``'s and ``ft_all``'s + 0.5, and male voices gain; then the next step
is a gender-routed model the saved file can carry (a gender head choosing between two heads),
checked as an ensemble member. ``base`` should repeat round 30's ``baseline_seed42-44`` (same
code path and seeds): a free check of determinism.

Result (benchmarks/README.md, round 53): ``ft_gender`` 66.42, ``base`` 66.39 (round 30's exactly),
``ft_all`` 66.26; male voices 58.23 in ``base`` and ``ft_gender`` alike. Not met.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from emotion_cnn.config import config_from_dict
from emotion_cnn.cv import fold_split, load_exported
from emotion_cnn.evaluate import evaluate_predictions, predict_probabilities
from emotion_cnn.fused_batchnorm import fused_batchnorm
from emotion_cnn.io import atomic_save_csv
from emotion_cnn.train import AugmentedBatches, _fit_one, class_weights, make_optimizer, seed_everything

GENDERS = ("female", "male")


def fine_tune(model: keras.Model, base_weights: list, X: np.ndarray, y: np.ndarray, cfg, *, seed: int,
              epochs: int, learning_rate: float) -> keras.Model:
    """``model`` reset to ``base_weights`` and trained ``epochs`` more epochs on ``(X, y)``
    with a fresh optimizer, the learning rate decaying from ``learning_rate`` to 1 % of it."""
    model.set_weights(base_weights)
    seed_everything(seed)
    num_classes = model.output_shape[-1]
    batches = AugmentedBatches(X, y, num_classes=num_classes, cfg=cfg.train, seed=seed,
                               floor=-cfg.features.top_db, weights=class_weights(y, num_classes))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * len(batches), alpha=0.01)
    model.compile(optimizer=make_optimizer(cfg.train, schedule), loss=keras.losses.CategoricalCrossentropy())
    with fused_batchnorm(cfg.train.fused_batchnorm):
        model.fit(batches, epochs=epochs, verbose=0)
    return model


def score_fold(cfg, X: np.ndarray, meta: pd.DataFrame, fold: int, *, epochs: int,
               learning_rate: float) -> dict[str, pd.DataFrame]:
    """The validation predictions of one fold's three arms, keyed ``base``, ``ft_all``, ``ft_gender``."""
    fold_cfg = copy.deepcopy(cfg)
    fold_cfg.split.protocol, fold_cfg.split.fold = "emobox", fold
    split = fold_split(X, meta, fold_cfg, name=f"emobox-fold{fold}")
    (model,), _ = _fit_one(fold_cfg, split, seed=cfg.seed, log=None, verbose=0)
    base_weights = model.get_weights()
    val_rows = split.rows("val").reset_index(drop=True)
    train_gender = split.rows("train")["gender"].to_numpy()

    def predictions(probabilities: np.ndarray) -> pd.DataFrame:
        return evaluate_predictions(probabilities, split.y_val, split.labels, val_rows).predictions.assign(fold=fold)

    arms = {"base": predictions(predict_probabilities(model, split.X_val))}
    fine_tune(model, base_weights, split.X_train, split.y_train, fold_cfg, seed=cfg.seed, epochs=epochs,
              learning_rate=learning_rate)
    arms["ft_all"] = predictions(predict_probabilities(model, split.X_val))
    by_gender = np.zeros((len(val_rows), len(split.labels)), np.float32)
    for gender in GENDERS:
        mine = train_gender == gender
        fine_tune(model, base_weights, split.X_train[mine], split.y_train[mine], fold_cfg, seed=cfg.seed,
                  epochs=epochs, learning_rate=learning_rate)
        scored = (val_rows["gender"] == gender).to_numpy()
        by_gender[scored] = predict_probabilities(model, split.X_val[scored])
    arms["ft_gender"] = predictions(by_gender)
    for name, frame in arms.items():
        ua = 100 * frame.groupby("true")["correct"].mean().mean()
        print(f"fold {fold} seed {cfg.seed} {name}: UA {ua:.1f}", flush=True)
    return arms


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--predictions", metavar="DIR", required=True)
    args = parser.parse_args()
    cfg = config_from_dict({"seed": args.seed, "train": {"ensemble": 1, "temporal_members": 0,
                                                         "train_on_val": False}})
    X, meta, _ = load_exported(args.data, cfg)
    Path(args.predictions).mkdir(parents=True, exist_ok=True)
    pooled: dict[str, list[pd.DataFrame]] = {}
    for fold in args.folds:
        for name, frame in score_fold(cfg, X, meta, fold, epochs=args.epochs,
                                      learning_rate=args.learning_rate).items():
            pooled.setdefault(name, []).append(frame)
    for name, frames in pooled.items():
        atomic_save_csv(Path(args.predictions) / f"{name}_seed{args.seed}.csv", pd.concat(frames, ignore_index=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
