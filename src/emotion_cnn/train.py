"""Train the CNN on a prepared split and write a run folder.

``runs/<run-id>/`` holds: ``config.yaml`` (resolved settings and seed), ``labels.json``,
``history.csv`` (its ``kept`` column marks the epoch whose weights were kept; the epochs of
``train.snapshot_epochs`` are kept beside it), ``model.keras``,
and what :mod:`emotion_cnn.evaluate` writes (``metrics.json``, ``predictions.csv``,
``classification_report.txt``, ``figures/``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import layers, ops

from emotion_cnn import evaluate
from emotion_cnn.config import Config, TrainConfig, check_average, check_optimizer, paths, save_config
from emotion_cnn.fused_batchnorm import fused_batchnorm
from emotion_cnn.io import atomic_save_csv, atomic_write_json, new_folder
from emotion_cnn.model import adapt_normalization, build_model, recalibrate_batch_norm, with_intensity_head


@dataclass
class Split:
    """A prepared split loaded into memory. ``X_*``: ``(n, n_mels, n_frames)``; ``y_*``: ``(n,)``."""

    directory: Path
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    manifest: pd.DataFrame
    info: dict

    def rows(self, part: str) -> pd.DataFrame:
        """The manifest's rows of ``part`` (train, val, test), in the order of its ``X_<part>``."""
        rows = self.manifest[self.manifest["split"] == part].sort_values("index_in_split")
        if len(rows) != len(getattr(self, f"y_{part}")):
            raise ValueError(f"{self.directory}: manifest.csv lists {len(rows)} {part} clips, "
                             f"X_{part}.npy holds {len(getattr(self, f'y_{part}'))}: prepare it again")
        return rows


def load_split(directory: str | Path) -> Split:
    directory = Path(directory)
    if not (directory / "X_train.npy").exists():
        raise FileNotFoundError(f"{directory} holds no prepared split: run `emotion-cnn prepare`")
    arrays = {f"{k}_{s}": np.load(directory / f"{k}_{s}.npy")
              for s in ("train", "val", "test") for k in ("X", "y")}
    labels_map = json.loads((directory / "labels.json").read_text())
    labels = [labels_map[str(i)] for i in range(len(labels_map))]
    return Split(directory, labels=labels, manifest=pd.read_csv(directory / "manifest.csv"),
                 info=json.loads((directory / "split.json").read_text()), **arrays)


def with_split_features(cfg: Config, split: Split) -> Config:
    """``cfg`` with the feature settings the split was made with (they define the model's
    input, and travel with it), whatever the training config said."""
    import copy
    import sys

    from emotion_cnn.config import FeatureConfig

    made_with = split.info.get("features")
    if not made_with or FeatureConfig(**made_with) == cfg.features:
        return cfg
    print(f"train: using the feature settings {split.directory.name} was prepared with", file=sys.stderr)
    cfg = copy.deepcopy(cfg)
    cfg.features = FeatureConfig(**made_with)
    return cfg


def seed_everything(seed: int) -> None:
    """The one place where the run's randomness is seeded: Python, NumPy and the backend."""
    keras.utils.set_random_seed(seed)


def class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights, mean 1 over the samples (neutral has half the clips)."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(y) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def warp(x: np.ndarray, factor: float, *, axis: int, anchor: float, floor: float) -> np.ndarray:
    """Stretch ``x`` by ``factor`` along ``axis`` about position ``anchor``, keeping its shape.

    Linear interpolation; positions read from outside the input get ``floor`` (silence).
    Along time (anchor at the centre) this changes the tempo; along the mel axis (anchor at
    band 0) it moves every band up (``factor > 1``) or down: a pitch and formant shift at low
    frequencies, a larger one in Hz at the top, where the mel scale is logarithmic.

    Parameters
    ----------
    x : np.ndarray, shape (n_mels, n_frames)
    factor : float
        > 1 stretches (slower speech, higher bands), < 1 compresses.
    """
    n = x.shape[axis]
    source = anchor + (np.arange(n) - anchor) / factor
    inside = (source >= 0) & (source <= n - 1)
    low = np.clip(np.floor(source).astype(np.int64), 0, n - 2)
    frac = (source - low).astype(x.dtype)
    a, b = np.take(x, low, axis=axis), np.take(x, low + 1, axis=axis)
    shape = [1, 1]
    shape[axis] = n
    out = a + (b - a) * frac.reshape(shape)
    return np.where(inside.reshape(shape), out, np.asarray(floor, x.dtype))


def augment_clip(x: np.ndarray, rng: np.random.Generator, cfg: TrainConfig, *, floor: float) -> np.ndarray:
    """One clip ``(n_mels, n_frames)`` with ``cfg``'s tempo and mel-axis warps, circular time
    shift and SpecAugment-style masks (filled with ``floor``), drawn from ``rng``: a new array."""
    x = x.copy()
    n_mels, n_frames = x.shape
    if cfg.time_stretch:
        factor = 1 + rng.uniform(-cfg.time_stretch, cfg.time_stretch)
        x = warp(x, factor, axis=1, anchor=(n_frames - 1) / 2, floor=floor)
    if cfg.freq_warp:
        factor = 1 + rng.uniform(-cfg.freq_warp, cfg.freq_warp)
        x = warp(x, factor, axis=0, anchor=0.0, floor=floor)
    if cfg.max_shift:
        x = np.roll(x, rng.integers(-cfg.max_shift, cfg.max_shift + 1), axis=1)
    for _ in range(cfg.time_masks):
        width = rng.integers(0, cfg.time_mask_width + 1)
        start = rng.integers(0, max(1, n_frames - width))
        x[:, start:start + width] = floor
    for _ in range(cfg.freq_masks):
        width = rng.integers(0, cfg.freq_mask_width + 1)
        start = rng.integers(0, max(1, n_mels - width))
        x[start:start + width, :] = floor
    return x


def mix_band_statistics(x: np.ndarray, rng: np.random.Generator, *, alpha: float, labels: np.ndarray | None = None,
                        eps: float = 1e-6) -> np.ndarray:
    """Freq-MixStyle: each clip's mean and standard deviation over time, per mel band, replaced
    by a mix of its own and those of another clip of the batch (MixStyle, Zhou et al. 2021, per
    frequency band as CP-JKU's DCASE 2022 systems apply it to log-mel input), the clip's
    time course kept. A band's level and spread over a clip carry the speaker's (and the
    microphone's) long-term spectrum, so mixing them makes new ones.

    Parameters
    ----------
    x : np.ndarray, shape (batch, n_mels, n_frames)
    rng : np.random.Generator
        Draws the partners (a permutation) and the mixing weights, Beta(alpha, alpha).
    alpha : float
    labels : np.ndarray, shape (batch,), optional
        Given, each clip's partner is a clip of the same label (itself where it has none), so
        that what a band's statistics say of the class stays; else any clip of the batch.

    Returns
    -------
    np.ndarray, shape (batch, n_mels, n_frames), ``x``'s dtype
        Not clipped: a band moved to a louder or wider partner's statistics may leave
        ``[floor, 0]`` dB; the model's input normalisation takes any range.
    """
    mean = x.mean(axis=2, keepdims=True)
    std = np.sqrt(x.var(axis=2, keepdims=True) + eps)
    lam = rng.beta(alpha, alpha, size=(len(x), 1, 1)).astype(np.float32)
    if labels is None:
        partner = rng.permutation(len(x))
    else:
        partner = np.arange(len(x))
        for label in np.unique(labels):
            group = np.flatnonzero(labels == label)
            partner[group] = rng.permutation(group)
    mixed_mean = lam * mean + (1 - lam) * mean[partner]
    mixed_std = lam * std + (1 - lam) * std[partner]
    return ((x - mean) / std * mixed_std + mixed_mean).astype(x.dtype)


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled training batches with band-statistics mixing (``train.mixstyle_p``), tempo and
    mel-axis warps, SpecAugment-style masks, time shifts and mixup.

    Yields ``(x, y_onehot, sample_weight)``, or with ``intensity`` ``(x, {"emotion": y_onehot,
    "intensity": strong}, {"emotion": sample_weight, "intensity": ones})`` for a model with an
    intensity head (mixup mixes both targets alike). Augmentation lives here, outside the model,
    so the saved model holds stock layers only and does nothing random at inference.
    Each batch's randomness comes from ``(seed, epoch, index)``, so runs repeat exactly,
    whichever thread builds it.

    Parameters
    ----------
    X : np.ndarray, shape (n_clips, n_mels, n_frames)
        Log-mel features in dB, ``floor`` and up.
    y : np.ndarray, shape (n_clips,)
        Integer labels.
    num_classes : int
    cfg : TrainConfig
        Batch size and augmentation settings.
    seed : int
    weights : np.ndarray, shape (num_classes,), optional
        Per-class loss weights, returned per clip as the sample weight.
    intensity : np.ndarray, shape (n_clips,), optional
        1 where the clip was acted with strong intensity, else 0.
    floor : float
        The value masks and warps fill with: the features' lowest.
    workers : int, optional
        Threads that build batches ahead; by default 2 on TensorFlow and 1 on other backends,
        which take no more. The pool is for speed, not parallelism: without one, TensorFlow
        feeds ``fit`` through tf.data's autotuned prefetch, which left a training that shares a
        CPU about 45 % idle (20.9 s an epoch against 11.5 s with the pool); Keras turns
        autotuning off for a worker pool, and the trained weights stay bit-identical. On JAX,
        Keras starts the pool when it reads a first batch to build the model and serves the
        batches queued then (up to ``max_queue_size``) in the first epoch, built with epoch 0's
        order, so some clips would train twice and others not at all (round 20).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, cfg: TrainConfig,
                 seed: int, weights: np.ndarray | None = None, floor: float = -80.0,
                 intensity: np.ndarray | None = None, workers: int | None = None):
        on_tensorflow = keras.backend.backend() == "tensorflow"
        if workers is None:
            workers = 2 if on_tensorflow else 1
        if workers > 1 and not on_tensorflow:
            raise ValueError(f"workers={workers}: a batch-building pool is for TensorFlow only; on "
                             f"{keras.backend.backend()} Keras would serve batches of the wrong epoch")
        super().__init__(workers=workers)
        self.X, self.y, self.cfg, self.seed = X, y, cfg, seed
        self.onehot = np.eye(num_classes, dtype=np.float32)[y]
        self.sample_weight = (weights[y] if weights is not None else np.ones(len(y), np.float32))
        self.intensity = None if intensity is None else np.asarray(intensity, np.float32)
        self.floor = floor
        self.epoch = 0
        self._order()

    def _order(self) -> None:
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.X))

    def __len__(self) -> int:
        return int(np.ceil(len(self.X) / self.cfg.batch_size))

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order()

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        idx = self.order[index * self.cfg.batch_size:(index + 1) * self.cfg.batch_size]
        x = self.X[idx].copy()
        y = self.onehot[idx].copy()
        w = self.sample_weight[idx].copy()
        cfg = self.cfg
        if cfg.mixstyle_p > 0 and len(x) > 1 and rng.random() < cfg.mixstyle_p:
            # before the masks, which fill with the floor
            x = mix_band_statistics(x, rng, alpha=cfg.mixstyle_alpha,
                                    labels=self.y[idx] if cfg.mixstyle_same_class else None)
        for i in range(len(x)):
            x[i] = augment_clip(x[i], rng, cfg, floor=self.floor)
        strong = None if self.intensity is None else self.intensity[idx]
        if cfg.mixup_alpha > 0 and len(x) > 1:
            lam = rng.beta(cfg.mixup_alpha, cfg.mixup_alpha, size=len(x)).astype(np.float32)
            lam = np.maximum(lam, 1 - lam)  # the first clip stays the dominant one
            partner = rng.permutation(len(x))
            x = lam[:, None, None] * x + (1 - lam[:, None, None]) * x[partner]
            y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
            w = lam * w + (1 - lam) * w[partner]
            if strong is not None:
                strong = lam * strong + (1 - lam) * strong[partner]
        if strong is None:
            return x, y, w
        return x, {"emotion": y, "intensity": strong[:, None]}, {"emotion": w, "intensity": np.ones_like(w)}


class EpochTimer(keras.callbacks.Callback):
    """Adds ``epoch_seconds`` to the logs (and so to ``history.csv``)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class WeightSnapshots(keras.callbacks.Callback):
    """Keeps ``model``'s weights (batch-norm statistics and the adapted normalisation included)
    at the end of the given 1-based epochs; :meth:`models` turns them into models like it.
    ``model`` may be a part of the model being fitted (the emotion model inside its twin with an
    intensity head), so a snapshot never holds training-only layers."""

    def __init__(self, epochs: list[int], model: keras.Model):
        super().__init__()
        self.epochs = set(epochs)
        self.source = model
        self.weights: dict[int, list[np.ndarray]] = {}

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self.weights[epoch + 1] = self.source.get_weights()

    def models(self, model: keras.Model) -> list[keras.Model]:
        snapshots = []
        for _, weights in sorted(self.weights.items()):
            snapshot = keras.models.clone_model(model)
            snapshot.set_weights(weights)
            # the normalisation layer computes with tensors made from its variables at adapt()
            snapshot.get_layer("normalize").finalize_state()
            snapshots.append(snapshot)
        return snapshots


@dataclass
class TrainResult:
    run_dir: Path
    model: keras.Model
    history: pd.DataFrame
    metrics: dict
    predictions: pd.DataFrame
    evaluation: evaluate.Evaluation  # confusion matrix and report of the test split


def new_run_dir(split: Split, *, runs_dir: Path | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return new_folder((runs_dir or paths().runs) / f"{stamp}-{split.directory.name}")


def fit(cfg: Config, split: Split, *, run_dir: Path | None = None, verbose: int | str = "auto"):
    """Build, adapt and fit ``cfg.train.ensemble`` models on ``split``, then
    ``cfg.train.temporal_members`` 1-D temporal ones (``model.temporal``).

    Returns
    -------
    (keras.Model, pd.DataFrame)
        The model (with several members or ``train.snapshot_epochs``, one model that averages
        the logits or probabilities, ``train.average``, of every member's snapshots and last
        epoch) and the
        history: one row per epoch and member, with ``member`` (1-based) and ``epoch``; with
        ``train.mutual_weight`` (members fitted together) one row per epoch and no ``member``.
    """
    for name in ("train", "val"):
        if len(getattr(split, f"y_{name}")) == 0:
            raise ValueError(f"{split.directory}: the {name} split is empty: check the actor lists")
    if cfg.train.schedule not in ("plateau", "cosine"):
        raise ValueError(f"train.schedule must be 'plateau' or 'cosine', not {cfg.train.schedule!r}")
    if cfg.train.ensemble < 1:
        raise ValueError(f"train.ensemble must be at least 1, not {cfg.train.ensemble}")
    check_average(cfg.train.average)  # now, not after the members have trained
    check_optimizer(cfg.train.optimizer)
    if cfg.train.temporal_members < 0:
        raise ValueError(f"train.temporal_members must be 0 (none) or more, not {cfg.train.temporal_members}")
    temporal = replace(cfg, model=replace(cfg.model, temporal=True, filters=list(cfg.model.temporal_filters)))
    if cfg.train.temporal_members:
        try:  # refused model settings fail now, not after the 2-D members have trained
            build_model(split.X_train.shape[1:], len(split.labels), temporal.model)
        except ValueError as error:
            raise ValueError(f"{error} (train.temporal_members={cfg.train.temporal_members} trains temporal members "
                             "with these model settings: set it to 0 for 2-D members only)") from None
    if not 0 <= cfg.train.mixstyle_p <= 1:
        raise ValueError(f"train.mixstyle_p is the share of batches mixed: in [0, 1], not {cfg.train.mixstyle_p}")
    if cfg.train.mixstyle_p and cfg.train.mixstyle_alpha <= 0:
        raise ValueError(f"train.mixstyle_alpha is a Beta distribution's parameter: above 0, not "
                         f"{cfg.train.mixstyle_alpha}")
    for name in ("time_stretch", "freq_warp"):
        if not 0 <= getattr(cfg.train, name) < 1:
            raise ValueError(f"train.{name} must be in [0, 1), not {getattr(cfg.train, name)}")
    rows = split.X_train.shape[1]
    if cfg.model.pitch_rows and rows != cfg.features.n_mels + cfg.model.pitch_rows:
        # only benchmarks/search.py's pitch key adds pitch rows; prepare writes mel bands alone,
        # whose lowest would be taken for pitch
        raise ValueError(f"model.pitch_rows={cfg.model.pitch_rows} needs {cfg.model.pitch_rows} pitch rows "
                         f"before the {cfg.features.n_mels} mel bands, the features have {rows} rows: the "
                         "pipeline has no pitch stage (set it to 0; search.py's pitch: PATH adds them)")
    if cfg.train.intensity_weight < 0:
        raise ValueError(f"train.intensity_weight must be 0 (off) or more, not {cfg.train.intensity_weight}")
    if not 0 <= cfg.train.weight_decay < 1:
        raise ValueError(f"train.weight_decay must be in [0, 1), not {cfg.train.weight_decay}")
    if not 0 <= cfg.train.momentum < 1:
        raise ValueError(f"train.momentum must be in [0, 1), not {cfg.train.momentum}")
    if not 0 <= cfg.train.ema_momentum < 1:
        raise ValueError(f"train.ema_momentum must be in [0, 1), not {cfg.train.ema_momentum}")
    if cfg.train.ema_momentum and cfg.train.restore_best:
        raise ValueError("train.ema_momentum needs train.restore_best=false: restoring an epoch's "
                         "weights would throw the average away")
    snapshots = cfg.train.snapshot_epochs
    if (any(type(e) is not int or not 1 <= e < cfg.train.epochs for e in snapshots)
            or len(set(snapshots)) < len(snapshots)):
        raise ValueError(f"train.snapshot_epochs must be distinct epochs from 1 to {cfg.train.epochs - 1} "
                         f"(train.epochs - 1), not {snapshots}")
    if snapshots and (cfg.train.ema_momentum or cfg.train.restore_best):
        raise ValueError("train.snapshot_epochs adds earlier epochs' weights to the last epoch's: it "
                         "needs train.ema_momentum=0 (which averages the last one) and "
                         "train.restore_best=false (which replaces it)")
    if cfg.train.train_on_val and (cfg.train.restore_best or cfg.train.schedule != "cosine"):
        raise ValueError("train.train_on_val leaves no validation loss to choose by: it needs "
                         "train.restore_best=false and train.schedule=cosine")
    if cfg.train.bag_drop_actors < 0 or cfg.train.bag_drop_actors % 2:
        raise ValueError("train.bag_drop_actors leaves out as many male as female actors: it must be 0 (off) "
                         f"or a positive even number, not {cfg.train.bag_drop_actors}")
    if cfg.train.mutual_weight < 0:
        raise ValueError(f"train.mutual_weight must be 0 (off) or more, not {cfg.train.mutual_weight}")
    if cfg.train.mutual_weight:
        if cfg.train.ensemble < 2:
            raise ValueError(f"train.mutual_weight trains the ensemble's members together, each pulled "
                             f"towards the others: it needs train.ensemble >= 2, not {cfg.train.ensemble}")
        if snapshots or cfg.train.intensity_weight:
            raise ValueError("train.mutual_weight trains plain members together: it needs "
                             "train.snapshot_epochs=[] and train.intensity_weight=0")
        if cfg.train.bag_drop_actors:
            raise ValueError("train.bag_drop_actors gives each member its own actors, train.mutual_weight fits "
                             "the members on the same batches: set one of them to 0")
        if cfg.train.temporal_members:
            raise ValueError("train.mutual_weight fits members of one kind together: it needs "
                             "train.temporal_members=0")
        log = None if run_dir is None else run_dir / "history.csv"
        members, frame = _fit_one(cfg, split, seed=cfg.seed, log=log, verbose=verbose,
                                  together=cfg.train.ensemble)
        return average_models(members, average=cfg.train.average), frame
    kinds = ([(cfg, seed) for seed in range(cfg.seed, cfg.seed + cfg.train.ensemble)]
             + [(temporal, seed) for seed in range(cfg.seed, cfg.seed + cfg.train.temporal_members)])
    members, frames = [], []
    for member, (member_cfg, seed) in enumerate(kinds, start=1):
        # written epoch by epoch, so a long run can be watched; train() writes the whole history.csv
        log = None if run_dir is None else run_dir / (
            "history.csv" if len(kinds) == 1 else f"history-member{member}.csv")
        models, frame = _fit_one(member_cfg, split, seed=seed, log=log, verbose=verbose)
        if log is not None and len(kinds) > 1:
            # the live log counts epochs from 0 (Keras CSVLogger); end with history.csv's numbering
            atomic_save_csv(log, frame)
        frame.insert(0, "member", member)
        members.extend(models)
        frames.append(frame)
    return average_models(members, average=cfg.train.average), pd.concat(frames, ignore_index=True)


def strong_intensity(split: Split, part: str) -> np.ndarray:
    """Shape ``(n,)``: 1.0 for each clip of ``split``'s ``part`` (train, val, test) acted with
    strong intensity, else 0.0, in the order of its ``X_<part>``."""
    rows = split.rows(part)
    if unknown := set(rows["intensity"]) - {"normal", "strong"}:
        raise ValueError(f"{split.directory}: manifest.csv gives intensities {sorted(map(str, unknown))}, "
                         "not 'normal' or 'strong': prepare it again")
    return (rows["intensity"] == "strong").to_numpy(np.float32)


def without_some_actors(actors: np.ndarray, genders: np.ndarray, *, drop: int, seed: int) -> np.ndarray:
    """Shape ``(n,)``: True for the clips of every actor but ``drop`` of them, half of each
    gender, drawn from ``seed`` (so each member of an ensemble, having its own seed, leaves out
    its own actors: bagging over speakers).

    Parameters
    ----------
    actors, genders : np.ndarray, shape (n,)
        Each clip's actor and gender.
    drop : int
        Even, and under twice the actors of the rarer gender.
    seed : int

    Returns
    -------
    np.ndarray, shape (n,), bool
    """
    # NumPy pads a seed list with zeros, so this is also the stream of epoch 1's shuffle; harmless,
    # since it picks actors there and clips here, and round 38's runs were drawn from it
    rng = np.random.default_rng([seed, 1])
    left_out = []
    for gender in sorted(set(genders)):
        pool = sorted(set(actors[genders == gender]))
        if drop // 2 >= len(pool):
            raise ValueError(f"train.bag_drop_actors={drop} leaves out {drop // 2} {gender} actors of "
                             f"{len(pool)}: none would be left")
        left_out += list(rng.choice(pool, drop // 2, replace=False))
    return ~np.isin(actors, left_out)


class HeadedHistoryNames(keras.callbacks.Callback):
    """With an intensity head Keras names each output's loss and metric by the output (Keras >=
    3.5); this renames them, in each epoch's logs, to the one-output names for the emotion's, so
    history.csv (live and final), the curves, the kept epoch and the plateau schedule all read
    the emotion alike. One difference: there ``loss`` is the emotion's cross-entropy alone,
    without the L2 term, which only ``total_loss`` holds. Must come before the callbacks that
    read the logs."""

    NAMES = {"loss": "total_loss", "emotion_loss": "loss", "emotion_accuracy": "accuracy"}

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            renamed = {prefix + new: logs.pop(prefix + old) for old, new in self.NAMES.items()
                       for prefix in ("", "val_") if prefix + old in logs}
            logs.update(renamed)


class MutualLoss(keras.losses.Loss):
    """Deep mutual learning (Zhang et al. 2018) for members trained side by side on the same
    batches: each member's cross-entropy with the target plus ``weight`` times the KL divergence
    from the mean of the other members' probabilities (held constant) to its own, summed over
    the members, so that each member's gradient is the one it gets alone plus the pull towards
    its peers, and its L2 term keeps its weight.

    Parameters
    ----------
    weight : float
        The KL term's weight; 0 trains each member as it would train alone.
    label_smoothing : float
        Share of each target spread evenly over the classes, as ``train.label_smoothing``.

    ``y_true`` has shape ``(batch, classes)``, ``y_pred`` ``(batch, members, classes)`` (the
    members' probabilities); the loss per clip has shape ``(batch,)``.
    """

    def __init__(self, weight: float, *, label_smoothing: float = 0.0, name: str = "mutual_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight, self.label_smoothing = weight, label_smoothing

    def call(self, y_true, y_pred):
        num_members, num_classes = y_pred.shape[1], y_pred.shape[2]
        if num_members < 2:
            raise ValueError(f"MutualLoss needs the probabilities of 2 or more members, not {num_members}")
        if self.label_smoothing:
            y_true = y_true * (1 - self.label_smoothing) + self.label_smoothing / num_classes
        probabilities = ops.clip(y_pred, keras.config.epsilon(), 1.0)
        log_probabilities = ops.log(probabilities)
        cross_entropy = -ops.sum(y_true[:, None, :] * log_probabilities, axis=-1)
        peers = ops.stop_gradient(
            (ops.sum(probabilities, axis=1, keepdims=True) - probabilities) / (num_members - 1))
        divergence = ops.sum(peers * (ops.log(peers) - log_probabilities), axis=-1)
        return ops.sum(cross_entropy + self.weight * divergence, axis=1)

    def get_config(self):
        return {**super().get_config(), "weight": self.weight, "label_smoothing": self.label_smoothing}


def ensemble_accuracy(y_true, y_pred):
    """Per clip, 1.0 where the mean of the members' probabilities ``y_pred`` ``(batch, members,
    classes)`` picks the target's class (a training metric: the mean of probabilities whatever
    ``train.average`` joins the saved model by)."""
    return ops.cast(ops.equal(ops.argmax(y_true, axis=-1), ops.argmax(ops.mean(y_pred, axis=1), axis=-1)),
                    "float32")


def _members_on_one_input(members: list[keras.Model]):
    """A shared input and each member's output on it, the members named ``emotion_cnn_1``, ... (the
    names ``score_tta.py --member`` and the tests look them up by)."""
    inputs = keras.Input(shape=members[0].input_shape[1:], name="log_mel")
    return inputs, [keras.Model(m.input, m.output, name=f"emotion_cnn_{i}")(inputs)
                    for i, m in enumerate(members, 1)]


def stacked_members(members: list[keras.Model]) -> keras.Model:
    """One model for training ``members`` (2 or more) together: output ``(batch, members, classes)``."""
    if len(members) < 2:
        raise ValueError(f"stacked_members needs 2 or more members, not {len(members)}")
    inputs, outputs = _members_on_one_input(members)
    stacked = layers.Concatenate(axis=1, name="members")([layers.Reshape((1, -1))(out) for out in outputs])
    return keras.Model(inputs, stacked, name="mutual_ensemble")


def _fit_one(cfg: Config, split: Split, *, seed: int, log: Path | None, verbose: int | str, together: int = 1):
    """Fit one model, or with ``together`` > 1 that many members side by side (``MutualLoss``);
    returns the models to average and the history."""
    seed_everything(seed)
    num_classes = len(split.labels)
    headed = cfg.train.intensity_weight > 0
    X, y = split.X_train, split.y_train
    strong, strong_val = (strong_intensity(split, "train"), strong_intensity(split, "val")) if headed else (None, None)
    y_val = np.eye(num_classes, dtype=np.float32)[split.y_val]
    validation = (split.X_val, {"emotion": y_val, "intensity": strong_val[:, None]} if headed else y_val)
    if cfg.train.train_on_val:
        X, y = np.concatenate([X, split.X_val]), np.concatenate([y, split.y_val])
        strong = np.concatenate([strong, strong_val]) if headed else None
        validation = None
    if cfg.train.bag_drop_actors:
        parts = ("train", "val") if cfg.train.train_on_val else ("train",)
        rows = pd.concat([split.rows(part) for part in parts])
        bagged = without_some_actors(rows["actor"].to_numpy(), rows["gender"].to_numpy(),
                                     drop=cfg.train.bag_drop_actors, seed=seed)
        X, y = X[bagged], y[bagged]
        strong = None if strong is None else strong[bagged]
    trained = [build_model(X.shape[1:], num_classes, cfg.model) for _ in range(together)]
    for model in trained:
        adapt_normalization(model, X)
    model = trained[0]
    trainee = stacked_members(trained) if together > 1 else with_intensity_head(model) if headed else model
    batches = AugmentedBatches(X, y, num_classes=num_classes, cfg=cfg.train, seed=seed,
                               floor=-cfg.features.top_db, intensity=strong,
                               weights=class_weights(y, num_classes) if cfg.train.class_weights else None)
    snapshots = WeightSnapshots(cfg.train.snapshot_epochs, model)
    # with the head, val_loss is the emotion's alone from here on: the kept epoch and the plateau
    # schedule follow it, never the head's
    callbacks = [EpochTimer(), *([HeadedHistoryNames()] if headed else []), snapshots]
    stopper = None
    if validation is not None and cfg.train.restore_best:
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=cfg.train.patience,
                                                restore_best_weights=True)
        callbacks.append(stopper)
    if cfg.train.schedule == "cosine":
        steps = len(batches)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.train.learning_rate / 10, warmup_target=cfg.train.learning_rate,
            warmup_steps=cfg.train.warmup_epochs * steps,
            decay_steps=max(1, (cfg.train.epochs - cfg.train.warmup_epochs) * steps), alpha=0.01)
    else:
        learning_rate = cfg.train.learning_rate
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", mode="min", factor=0.5,
                                                           patience=cfg.train.lr_patience, min_lr=1e-5))
    if log is not None:
        callbacks.append(keras.callbacks.CSVLogger(str(log)))
    emotion_loss = keras.losses.CategoricalCrossentropy(label_smoothing=cfg.train.label_smoothing)
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    if together > 1:
        trainee.compile(optimizer=make_optimizer(cfg.train, learning_rate),
                        loss=MutualLoss(cfg.train.mutual_weight, label_smoothing=cfg.train.label_smoothing),
                        metrics=[keras.metrics.MeanMetricWrapper(ensemble_accuracy, name="accuracy")])
    elif headed:
        trainee.compile(optimizer=make_optimizer(cfg.train, learning_rate),
                        loss={"emotion": emotion_loss, "intensity": keras.losses.BinaryCrossentropy()},
                        loss_weights={"emotion": 1.0, "intensity": cfg.train.intensity_weight},
                        metrics={"emotion": [accuracy]})
    else:
        trainee.compile(optimizer=make_optimizer(cfg.train, learning_rate), loss=emotion_loss, metrics=[accuracy])
    with fused_batchnorm(cfg.train.fused_batchnorm):
        history = trainee.fit(batches, validation_data=validation, epochs=cfg.train.epochs,
                              callbacks=callbacks, verbose=verbose)
    frame = pd.DataFrame(history.history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    # Keras' own choice (NaN losses included), not a recomputation of it
    kept = stopper.best_epoch if stopper is not None and stopper.best_weights is not None else len(frame) - 1
    frame["kept"] = np.arange(len(frame)) == kept
    models = snapshots.models(model) + trained
    if cfg.train.precise_bn:
        for each in models:
            recalibrate_batch_norm(each, X)
    return models, frame


def make_optimizer(cfg: TrainConfig, learning_rate) -> keras.optimizers.Optimizer:
    """Adam, AdamW when ``cfg.weight_decay`` > 0, or SGD with Nesterov momentum when
    ``cfg.optimizer`` is ``"sgd"`` (decayed by ``cfg.weight_decay`` too when it is > 0). Decay
    spares batch-norm scales and offsets and biases; any of them keeps a moving average of the
    weights when ``cfg.ema_momentum`` > 0."""
    check_optimizer(cfg.optimizer)
    ema = {"use_ema": cfg.ema_momentum > 0, "ema_momentum": cfg.ema_momentum}
    decay = {"weight_decay": cfg.weight_decay} if cfg.weight_decay else {}
    if cfg.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=cfg.momentum, nesterov=True, **decay, **ema)
    elif cfg.weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate, **decay, **ema)
    else:
        optimizer = keras.optimizers.Adam(learning_rate, **ema)
    if cfg.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def average_models(members: list[keras.Model], *, average: str) -> keras.Model:
    """One model that joins the members' outputs (stock layers only, so it still loads in safe
    mode); a single member is returned as it is.

    ``average="logits"``: the softmax of the mean of the members' logits (their
    ``emotion_logits`` layers), which is the normalised geometric mean of their probabilities;
    the members inside, ``emotion_cnn_1``, ..., then output logits. ``"probabilities"``: the
    mean of the members' probabilities.
    """
    check_average(average)
    if len(members) == 1:
        return members[0]
    if average == "probabilities":
        inputs, outputs = _members_on_one_input(members)
        return keras.Model(inputs, layers.Average(name="emotion")(outputs), name="emotion_cnn_ensemble")
    inputs, logits = _members_on_one_input([keras.Model(m.input, m.get_layer("emotion_logits").output)
                                            for m in members])
    mean_logits = layers.Average(name="mean_logits")(logits)
    return keras.Model(inputs, layers.Activation("softmax", name="emotion")(mean_logits), name="emotion_cnn_ensemble")


def train(cfg: Config, *, split_dir: str | Path | None = None, runs_dir: Path | None = None,
          export: bool = True, verbose: int | str = "auto") -> TrainResult:
    """Train on a split (default: the one ``prepare`` wrote last), evaluate on its test set,
    write the run folder and, if ``export``, the top-level ``emotion_cnn_model.keras``."""
    from emotion_cnn.prepare import latest_split_dir  # needs the audio stack: import when used

    split = load_split(split_dir or latest_split_dir())
    cfg = with_split_features(cfg, split)
    run_dir = new_run_dir(split, runs_dir=runs_dir)
    save_config(cfg, run_dir / "config.yaml")
    atomic_write_json(run_dir / "labels.json", {str(i): lab for i, lab in enumerate(split.labels)})
    started = time.perf_counter()
    model, history = fit(cfg, split, run_dir=run_dir, verbose=verbose)
    train_seconds = time.perf_counter() - started
    save_model_atomic(model, run_dir / "model.keras")
    atomic_save_csv(run_dir / "history.csv", history)
    result = evaluate.evaluate_split(model, split, run_dir)
    result.metrics.update(
        train_seconds=round(train_seconds, 1), models=cfg.train.ensemble + cfg.train.temporal_members, epochs_run=len(history),
        # members fitted together (train.mutual_weight) share one history and one kept epoch
        kept_epoch=[int(f.loc[f["kept"], "epoch"].iloc[0])
                    for _, f in (history.groupby("member") if "member" in history else [(1, history)])],
        snapshot_epochs=sorted(cfg.train.snapshot_epochs),
        seconds_per_epoch=round(float(history["epoch_seconds"].mean()), 2),
        parameters=int(model.count_params()), backend=keras.backend.backend(),
        seed=cfg.seed, split=str(split.directory), protocol=split.info["protocol"],
        leaky=split.info["leaky"])
    atomic_write_json(run_dir / "metrics.json", result.metrics)
    if export:
        export_model(model, cfg, split, run_dir, result.metrics)
    return TrainResult(run_dir, model, history, result.metrics, result.predictions, result)


BENCHMARKED_SETTINGS = ("seed", "features", "model", "train")


def latest_benchmark(cfg: Config) -> dict | None:
    """Mean scores of the newest full (6-fold) ``reports/benchmarks/*/metrics.json`` run with
    the same features, model, training settings and seed as ``cfg``, or ``None``: a figure
    measured with other settings does not describe this model. Runs on the Keras backend this
    process trains with come first (another backend rounds floats differently, so trains other
    models: a GPU run on JAX does not replace the CPU figure of a model trained on TensorFlow)."""
    from emotion_cnn.config import config_from_record
    from emotion_cnn.cv import report_backend

    wanted = {k: v for k, v in cfg.to_dict().items() if k in BENCHMARKED_SETTINGS}
    matching = []
    for path in paths().reports.glob("benchmarks/*/metrics.json"):
        bench = json.loads(path.read_text())
        if "config" not in bench:
            continue
        try:
            ran = config_from_record(bench["config"]).to_dict()
        except ValueError:  # a setting since removed
            continue
        if len(bench.get("folds", [])) == 6 and {k: ran[k] for k in wanted} == wanted:
            # reports older than "finished" sort first within their day: they were written before it existed
            same_backend = report_backend(bench) == keras.backend.backend()
            matching.append((same_backend, bench.get("date", ""), bench.get("finished", ""), path.parent.name,
                             path, bench))
    if not matching:
        return None
    *_, path, bench = max(matching)
    return {"protocol": bench.get("protocol"), "folds": 6, "mean": bench.get("mean"),
            "std": bench.get("std"), "report": _from_root(path.parent)}


def _from_root(path: Path) -> str:
    """``path`` relative to the project root when inside it: the sidecar travels with the model."""
    try:
        return str(Path(path).resolve().relative_to(paths().root.resolve()))
    except ValueError:
        return str(path)


def model_info(cfg: Config, split: Split, run_dir: Path, metrics: dict) -> dict:
    """What a user of the saved model needs: label order, feature settings, provenance (the
    model and training settings too: the run folder it names is not committed with the model)."""
    settings = cfg.to_dict()
    return {
        "labels": split.labels,
        "features": settings["features"],
        "model": settings["model"],
        "train": settings["train"],
        "input_shape": list(split.X_train.shape[1:]),
        "protocol": split.info["protocol"],
        "split": split.directory.name,
        "test_actors": split.info["actors"]["test"],
        "test_metrics": {k: metrics[k] for k in ("wa", "ua", "macro_f1")},
        "cv_metrics": None,
        "run_dir": _from_root(run_dir),
        "seed": cfg.seed,
        "keras_version": keras.__version__,
    }


def export_model(model: keras.Model, cfg: Config, split: Split, run_dir: Path, metrics: dict,
                 *, path: Path | None = None) -> Path:
    """Save ``emotion_cnn_model.keras`` and its ``.json`` sidecar atomically."""
    path = Path(path or paths().model)
    info = model_info(cfg, split, run_dir, metrics)
    info["cv_metrics"] = latest_benchmark(cfg)
    save_model_atomic(model, path)
    atomic_write_json(path.with_suffix(".json"), info)
    return path


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """``model.save`` to a unique temporary ``.keras`` beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{time.monotonic_ns()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)

