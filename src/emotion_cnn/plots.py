"""Figures. Each function returns the matplotlib Figure (shown inline in a notebook) and
saves it as a PNG when given ``path``."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

if matplotlib.get_backend().lower() not in {"module://matplotlib_inline.backend_inline", "inline"}:
    matplotlib.use("Agg")  # no display outside notebooks

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from emotion_cnn.io import atomic_write_bytes


def _save(fig: plt.Figure, path: str | Path | None) -> plt.Figure:
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        atomic_write_bytes(path, buffer.getvalue())
    return fig


def training_curves(history: pd.DataFrame, *, path: str | Path | None = None) -> plt.Figure:
    """Accuracy and loss per epoch, training and (when there was one) validation; one pair of
    curves per ensemble member (``member`` column), with the epoch whose weights each member
    kept marked (``kept`` column; without one, the lowest validation loss)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if "member" not in history:
        history = history.assign(member=1)
    if "epoch" not in history:
        history = history.assign(epoch=history.groupby("member").cumcount() + 1)
    several = history["member"].nunique() > 1
    for k, (member, run) in enumerate(history.groupby("member")):
        suffix = f" (model {member})" if several else ""
        validated = "val_loss" in run and run["val_loss"].notna().any()
        for ax, metric in zip(axes, ("accuracy", "loss")):
            ax.plot(run["epoch"], run[metric], color=f"C{2 * k}", label=f"train {metric}{suffix}")
            if validated:
                ax.plot(run["epoch"], run[f"val_{metric}"], color=f"C{2 * k + 1}",
                        label=f"validation {metric}{suffix}")
        if "kept" in run:
            kept = run["epoch"].to_numpy()[int(np.argmax(run["kept"].astype(bool).to_numpy()))]
            restored = kept != run["epoch"].max()
        else:
            kept, restored = run["epoch"].to_numpy()[int(np.argmin(run["val_loss"].to_numpy()))], True
        label = "kept: lowest validation loss" if restored else "kept: last epoch"
        axes[1].axvline(kept, color="grey", linestyle="--", label=label if k == 0 else None)
    for ax, metric in zip(axes, ("accuracy", "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_title("Accuracy (train is on augmented, mixed-up batches)")
    axes[1].set_title("Loss")
    fig.tight_layout()
    return _save(fig, path)


def confusion_heatmap(confusion: np.ndarray, labels: list[str], *, normalize: bool = False,
                      title: str | None = None, path: str | Path | None = None) -> plt.Figure:
    """Labelled heatmap; rows are the true emotion. ``normalize``: each row sums to 1 (recall)."""
    values = confusion.astype(float)
    if normalize:
        values = values / np.maximum(values.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(8, 6.5))
    sns.heatmap(values, annot=True, fmt=".2f" if normalize else ".0f",
                cmap="Blues", xticklabels=labels, yticklabels=labels, cbar=True, ax=ax,
                vmin=0, vmax=1 if normalize else None, square=True)
    ax.set_xlabel("predicted emotion")
    ax.set_ylabel("true emotion")
    ax.set_title(title or ("Confusion matrix (row-normalised)" if normalize else "Confusion matrix (counts)"))
    fig.tight_layout()
    return _save(fig, path)


def accuracy_bars(accuracy: dict, *, title: str, xlabel: str, ylabel: str = "accuracy",
                  path: str | Path | None = None) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(accuracy) + 2), 3.5))
    keys = [str(k) for k in accuracy]
    ax.bar(keys, list(accuracy.values()), color="steelblue")
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    for i, v in enumerate(accuracy.values()):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center")
    fig.tight_layout()
    return _save(fig, path)


def class_distribution(meta: pd.DataFrame, *, path: str | Path | None = None) -> plt.Figure:
    """Clips per emotion (neutral has half: RAVDESS records it at normal intensity only)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    order = list(dict.fromkeys(meta.sort_values("emotion_code")["emotion"]))
    sns.countplot(data=meta, x="emotion", hue="intensity", order=order, ax=ax)
    ax.set_title(f"Clips per emotion ({len(meta)} clips)")
    fig.tight_layout()
    return _save(fig, path)


def durations(meta: pd.DataFrame, *, path: str | Path | None = None) -> plt.Figure:
    """Histogram of the clips' original durations (before trimming)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(meta["duration"], bins=40, color="slategray")
    ax.set_xlabel("clip duration before trimming (s)")
    ax.set_ylabel("clips")
    ax.set_title(f"Durations: median {meta['duration'].median():.2f} s")
    fig.tight_layout()
    return _save(fig, path)


def spectrogram(features: np.ndarray, *, sr: int, hop_length: int, fmin: float, fmax: float,
                title: str = "", ax: plt.Axes | None = None, top_db: float = 80.0):
    """One log-mel with axes: time (s), mel frequency (Hz), dB colour bar."""
    import librosa.display

    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(6, 3))
    image = librosa.display.specshow(features, sr=sr, hop_length=hop_length, x_axis="time",
                                     y_axis="mel", fmin=fmin, fmax=fmax, ax=ax,
                                     vmin=-top_db, vmax=0, cmap="magma")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, format="%+2.0f dB")
    return ax.figure


def example_spectrograms(examples: dict[str, np.ndarray], *, sr: int, hop_length: int,
                         fmin: float, fmax: float, top_db: float = 80.0,
                         path: str | Path | None = None) -> plt.Figure:
    """A grid of one log-mel per emotion, ``examples`` label -> ``(n_mels, n_frames)``."""
    cols = 2
    rows = int(np.ceil(len(examples) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(12, 2.6 * rows), squeeze=False)
    for ax, (label, feats) in zip(axes.flat, examples.items()):
        spectrogram(feats, sr=sr, hop_length=hop_length, fmin=fmin, fmax=fmax, title=label, ax=ax,
                    top_db=top_db)
    for ax in list(axes.flat)[len(examples):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _save(fig, path)
