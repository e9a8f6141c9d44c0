"""Score saved fold models with test-time augmentation: each clip's class probabilities averaged
over several copies of it, augmented as training augments (time shift, masks; no mixup).

    python benchmarks/score_tta.py .device/features-hop20.npz MODELS_DIR OUT.csv [--copies 8]

``MODELS_DIR`` holds ``fold<N>.keras`` from ``search.py --models DIR`` (one experiment's
folder); each fold model is scored on that fold's validation actors, plain and with TTA, and the
TTA predictions go to ``OUT.csv`` in ``search.py --predictions``'s format (for
``score_ensemble.py``); ``--copies 0`` writes the plain ones, and ``--member K`` scores an
ensemble's K-th member alone (round 36); ``--mel-warp F`` scores the clips with their mel axis
stretched by ``F`` (``train.warp``; 1.03: every band 3 % higher) and prints UA per gender, a
check of how the models react to a voice a little higher or lower (round 54). The same trained
weights both ways, so the comparison is paired. The
augmentation and the folds' actors are the default config's: for models trained with it.
Round 33, ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_cnn.config import Config
from emotion_cnn.cv import fold_split, load_exported
from emotion_cnn.evaluate import evaluate_predictions, predict_probabilities, speaker_breakdown
from emotion_cnn.train import augment_clip, warp


def tta_probabilities(model, X: np.ndarray, *, cfg: Config, copies: int, seed: int) -> np.ndarray:
    """Mean class probabilities ``(n, n_classes)`` over ``copies`` augmented copies of each clip
    of ``X`` ``(n, n_mels, n_frames)``, the copies drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(copies):
        augmented = np.stack([augment_clip(x, rng, cfg.train, floor=-cfg.features.top_db) for x in X])
        total = total + predict_probabilities(model, augmented)
    return total / copies


def main() -> int:
    import keras

    parser = argparse.ArgumentParser()
    parser.add_argument("features")
    parser.add_argument("models_dir")
    parser.add_argument("out")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--member", type=int, metavar="K",
                        help="score an ensemble's K-th member alone (1-based; with train.snapshot_epochs the snapshots count as members)")
    parser.add_argument("--mel-warp", type=float, default=1.0, metavar="F",
                        help="stretch each clip's mel axis by F before scoring (1: as it is)")
    args = parser.parse_args()
    if args.mel_warp <= 0:
        parser.error(f"--mel-warp is a stretch factor: above 0, not {args.mel_warp}")
    cfg = Config()
    X, meta, _ = load_exported(args.features, cfg)
    frames = []
    for path in sorted(Path(args.models_dir).glob("fold*.keras")):
        fold = int(re.fullmatch(r"fold(\d)\.keras", path.name).group(1))
        cfg.split.protocol, cfg.split.fold = "emobox", fold
        split = fold_split(X, meta, cfg, name=f"emobox-fold{fold}")
        part = split.rows("val")
        model = keras.models.load_model(path, safe_mode=True)
        if args.member is not None:
            members = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
            if f"emotion_cnn_{args.member}" not in members:
                print(f"{path}: no member {args.member} (its members: {', '.join(members) or 'none, one model'})",
                      file=sys.stderr)
                return 1
            model = model.get_layer(f"emotion_cnn_{args.member}")
            if model.layers[-1].name == "emotion_logits":  # a member of an ensemble that averages logits
                model = keras.Model(model.input, keras.layers.Activation("softmax")(model.output))
        X_val = split.X_val
        if args.mel_warp != 1:
            X_val = np.stack([warp(x, args.mel_warp, axis=0, anchor=0.0, floor=-cfg.features.top_db) for x in X_val])
        plain = evaluate_predictions(predict_probabilities(model, X_val), split.y_val, split.labels, part)
        if args.copies:
            tta = evaluate_predictions(tta_probabilities(model, X_val, cfg=cfg, copies=args.copies,
                                                         seed=args.seed + fold),
                                       split.y_val, split.labels, part)
            print(f"fold {fold}: UA plain {100 * plain.metrics['ua']:.1f}, TTA x{args.copies} "
                  f"{100 * tta.metrics['ua']:.1f}", flush=True)
        else:
            tta = plain
            print(f"fold {fold}: UA {100 * plain.metrics['ua']:.1f}", flush=True)
        frames.append(tta.predictions.assign(fold=fold))
    if not frames:
        print(f"{args.models_dir}: no fold<N>.keras models", file=sys.stderr)
        return 1
    pooled = pd.concat(frames, ignore_index=True)
    pooled.to_csv(args.out, index=False)
    by_gender = speaker_breakdown(pooled)["gender"]
    print("UA per gender, folds pooled: " + ", ".join(f"{g} {ua:.1f}" for g, ua in by_gender.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
