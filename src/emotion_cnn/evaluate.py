"""Scores of a model on a test set: WA, UA, macro-F1, per-class report, confusion
matrices, accuracy per actor and per intensity, predictions per clip.

WA (weighted accuracy) is plain accuracy, UA (unweighted accuracy) is balanced accuracy,
the mean of per-class recalls: the EmoBox benchmark's names.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
)

from emotion_cnn import plots
from emotion_cnn.io import atomic_save_csv, atomic_write_json, atomic_write_text


@dataclass
class Evaluation:
    metrics: dict
    predictions: pd.DataFrame
    report: str
    confusion: np.ndarray  # (n_classes, n_classes) counts, rows = true class


def scores(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict:
    """WA, UA and macro-F1 (fractions) of integer predictions."""
    classes = list(range(len(labels)))
    return {
        "wa": float(accuracy_score(y_true, y_pred)),
        "ua": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "n": int(len(y_true)),
    }


def evaluate_predictions(probabilities: np.ndarray, y_true: np.ndarray, labels: list[str],
                         manifest: pd.DataFrame | None = None) -> Evaluation:
    """Score ``probabilities`` ``(n, n_classes)`` against ``y_true`` ``(n,)``.

    ``manifest`` (one row per clip, same order) adds clip ids, actors and intensities to
    the predictions and the per-actor and per-intensity accuracies to the metrics.
    """
    y_pred = probabilities.argmax(axis=1)
    classes = list(range(len(labels)))
    metrics = scores(y_true, y_pred, labels)
    report = classification_report(y_true, y_pred, labels=classes, target_names=labels,
                                   digits=3, zero_division=0)
    confusion = confusion_matrix(y_true, y_pred, labels=classes)
    predictions = pd.DataFrame({"true": [labels[i] for i in y_true],
                                "predicted": [labels[i] for i in y_pred]})
    predictions["correct"] = predictions["true"] == predictions["predicted"]
    for i, label in enumerate(labels):
        predictions[f"p_{label}"] = probabilities[:, i].round(6)
    if manifest is not None:
        info = manifest.reset_index(drop=True)[["clip_id", "path", "actor", "gender", "intensity"]]
        predictions = pd.concat([info, predictions], axis=1)
        metrics["per_actor"] = {int(k): float(v) for k, v in predictions.groupby("actor")["correct"].mean().items()}
        metrics["per_intensity"] = {str(k): float(v) for k, v in predictions.groupby("intensity")["correct"].mean().items()}
    metrics["per_class_recall"] = {
        label: float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else 0.0
        for i, label in enumerate(labels)}
    return Evaluation(metrics, predictions, report, confusion)


def speaker_breakdown(predictions: pd.DataFrame) -> dict:
    """UA in % of pooled test predictions per actor, per gender and per intensity.

    Over the 6 benchmark folds every actor is a test actor once, so ``actor`` spans all 24
    speakers the models never heard: how far apart they lie, which one fold's mean hides. UA,
    the benchmark's figure, where a run's ``per_actor`` (:func:`evaluate_predictions`) is accuracy.

    Parameters
    ----------
    predictions : pd.DataFrame
        One row per clip with ``true``, ``predicted``, ``actor``, ``gender`` and ``intensity``.

    Returns
    -------
    dict
        ``{"actor": {actor: ua}, "gender": {...}, "intensity": {...}}``, each for the columns
        present; each UA is the recall averaged over the classes that group holds (no neutral
        clip is acted strong, so ``strong`` averages 7 classes).
    """
    def ua(rows: pd.DataFrame) -> float:
        with warnings.catch_warnings():  # a class predicted that the group never holds
            warnings.simplefilter("ignore", UserWarning)
            return round(100 * float(balanced_accuracy_score(rows["true"], rows["predicted"])), 1)

    return {by: {(int(key) if by == "actor" else str(key)): ua(rows) for key, rows in predictions.groupby(by)}
            for by in ("actor", "gender", "intensity") if by in predictions}


def save_evaluation(evaluation: Evaluation, labels: list[str], out_dir: Path,
                    history: pd.DataFrame | None = None) -> None:
    """Write metrics, predictions, the report and every figure into ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "metrics.json", evaluation.metrics)
    atomic_save_csv(out_dir / "predictions.csv", evaluation.predictions)
    atomic_write_text(out_dir / "classification_report.txt", evaluation.report)
    figures = out_dir / "figures"
    made = [
        plots.confusion_heatmap(evaluation.confusion, labels, normalize=False,
                                path=figures / "confusion_matrix.png"),
        plots.confusion_heatmap(evaluation.confusion, labels, normalize=True,
                                path=figures / "confusion_matrix_normalized.png"),
    ]
    if "per_actor" in evaluation.metrics:
        made.append(plots.accuracy_bars(evaluation.metrics["per_actor"], title="Accuracy per test actor",
                                        xlabel="actor", path=figures / "accuracy_per_actor.png"))
        made.append(plots.accuracy_bars(evaluation.metrics["per_intensity"], title="Accuracy per intensity",
                                        xlabel="intensity", path=figures / "accuracy_per_intensity.png"))
    if history is not None:
        made.append(plots.training_curves(history, path=figures / "training_curves.png"))
    for fig in made:
        plt.close(fig)


def predict_probabilities(model, X: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    return np.asarray(model.predict(X, batch_size=batch_size, verbose=0))


def evaluate_split(model, split, out_dir: Path | None = None) -> Evaluation:
    """Evaluate ``model`` on ``split``'s test set and, if ``out_dir``, save everything."""
    evaluation = evaluate_predictions(predict_probabilities(model, split.X_test), split.y_test,
                                      split.labels, split.rows("test"))
    if out_dir is not None:
        history_file = Path(out_dir) / "history.csv"
        history = pd.read_csv(history_file) if history_file.exists() else None
        save_evaluation(evaluation, split.labels, out_dir, history)
    return evaluation


def evaluate_run(run_dir: Path, *, split_dir: str | Path | None = None) -> dict:
    """Re-evaluate ``run_dir/model.keras`` on its own split's test set (or ``split_dir``'s),
    rewriting the run's metrics, predictions, report and figures."""
    import json

    import keras

    from emotion_cnn.train import load_split

    run_dir = Path(run_dir)
    old = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {}
    split = load_split(split_dir or old["split"])
    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    out_dir = run_dir if split_dir is None else run_dir / f"eval-{split.directory.name}"
    evaluation = evaluate_split(model, split, out_dir)
    metrics = {**old, **evaluation.metrics} if split_dir is None else evaluation.metrics
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics
