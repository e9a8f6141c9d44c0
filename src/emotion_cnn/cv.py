"""Speaker-independent cross-validation over the 6 EmoBox folds.

Every fold trains a fresh model on its 16 training actors (validation actors for choosing
the epoch), or with ``train.train_on_val`` on all 20 non-test actors for a fixed number of
epochs, then scores its 4 test actors. ``evaluate_on="val"`` scores the validation
actors instead: that is what settings are tuned on, so the test actors are touched once.
Results go to ``reports/benchmarks/<date>-<commit>/`` (``-2``, ``-3``, ... for a later run of the
same commit that day): ``metrics.json``, ``results.md``, the pooled confusion matrix over every
test prediction, UA per test actor (``ua_per_actor.png``), and ``predictions.csv``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import re
import subprocess
import time
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_cnn import splits
from emotion_cnn.config import Config, paths
from emotion_cnn.io import atomic_save_csv, atomic_write_json, atomic_write_text, new_folder


def load_features(cfg: Config) -> tuple[np.ndarray, pd.DataFrame]:
    """Features of every usable clip, ``(n, n_mels, n_frames)``, and their metadata rows.

    Runs ``prepare`` (cheap when cached) and gathers its three split arrays into one.
    """
    from emotion_cnn.prepare import prepare
    from emotion_cnn.train import load_split

    result = prepare(cfg, progress=True, set_latest=False)
    split = load_split(result.split_dir)
    manifest = split.manifest.sort_values(["split", "index_in_split"])
    parts = {"train": split.X_train, "val": split.X_val, "test": split.X_test}
    X = np.concatenate([parts[s][manifest.loc[manifest["split"] == s, "index_in_split"].to_numpy()]
                        for s in ("train", "val", "test")])
    meta = pd.concat([manifest[manifest["split"] == s] for s in ("train", "val", "test")])
    meta = meta.drop(columns=["split", "index_in_split"]).reset_index(drop=True)
    # prepare's own order, so a random split drawn here equals the one prepare writes
    order = meta.sort_values(["actor", "clip_id", "path"], kind="stable").index.to_numpy()
    return X[order], meta.loc[order].reset_index(drop=True)


def load_exported(path: str | Path, cfg: Config | None = None) -> tuple[np.ndarray, pd.DataFrame, dict | None]:
    """Features written by ``benchmarks/export_features.py``: for a machine without the audio
    stack, e.g. a lent GPU.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file; its metadata ``.csv`` lies beside it.
    cfg : Config, optional
        With it, ``ValueError`` unless the features were made with ``cfg.features`` from the
        clips ``cfg.keep_duplicates`` and ``cfg.limit_actors`` select (where the file records them).

    Returns
    -------
    X : np.ndarray, shape (n, n_mels, n_frames), float32
    meta : pd.DataFrame, one row per clip
    features : dict or None
        The feature settings they were exported with (``None`` for exports older than that
        record, which are taken on trust).
    """
    from emotion_cnn.config import config_from_record

    data = np.load(path, allow_pickle=False)
    if "X" not in data.files:
        raise ValueError(f"{path}: no features array 'X' in it: not a file of benchmarks/export_features.py")
    meta = pd.read_csv(Path(path).with_suffix(".csv"))
    exported_with = json.loads(str(data["features"])) if "features" in data.files else None
    if cfg is not None and "selection" in data.files:
        selected = json.loads(str(data["selection"]))
        wanted = {"keep_duplicates": cfg.keep_duplicates, "limit_actors": cfg.limit_actors}
        if selected != wanted:
            raise ValueError(f"{path} holds the clips of {selected}, but the config sets {wanted}: "
                             "export them with its settings")
    if cfg is not None and exported_with is not None:
        try:
            settings = dataclasses.asdict(config_from_record({"features": exported_with}).features)
        except ValueError as err:  # a setting since removed
            raise ValueError(f"{path} was exported with settings this code lacks ({err}): export it again") from None
        if settings != dataclasses.asdict(cfg.features):
            raise ValueError(f"{path} holds features made with {settings}, but the config sets "
                             f"{dataclasses.asdict(cfg.features)}: export them with its settings")
    return data["X"].astype(np.float32), meta, exported_with


def fold_split(X: np.ndarray, meta: pd.DataFrame, cfg: Config, *, name: str):
    """The in-memory :class:`~emotion_cnn.train.Split` of one protocol setting."""
    assignment = splits.assign_splits(meta, cfg.split, seed=cfg.seed).to_numpy()
    return split_from_assignment(X, meta, assignment, name=name, protocol=cfg.split.protocol)


def split_from_assignment(X: np.ndarray, meta: pd.DataFrame, assignment: np.ndarray, *,
                          name: str, protocol: str):
    """A :class:`~emotion_cnn.train.Split` from features ``X`` (one row per ``meta`` row) and
    each row's split name, in ``meta`` order within each split."""
    from emotion_cnn.config import EMOTIONS, LABEL_INDEX
    from emotion_cnn.train import Split

    y = meta["emotion"].map(LABEL_INDEX).to_numpy(np.int64)
    manifest = meta.copy()
    manifest["split"] = assignment
    manifest["index_in_split"] = manifest.groupby("split").cumcount()
    arrays = {}
    for s in splits.SPLITS:
        mask = assignment == s
        arrays[f"X_{s}"], arrays[f"y_{s}"] = X[mask], y[mask]
    info = {"protocol": protocol, "leaky": protocol == "random",
            "actors": {s: sorted(int(a) for a in meta.loc[assignment == s, "actor"].unique())
                       for s in splits.SPLITS}}
    return Split(Path(name), labels=list(EMOTIONS), manifest=manifest, info=info, **arrays)


def train_and_score(cfg: Config, split, *, on: str = "test", verbose: int = 0,
                    model_path: Path | None = None):
    """Fit a fresh model on ``split`` and score it on its ``on`` part (``test`` or ``val``);
    with ``model_path``, save the model there too.

    Returns
    -------
    (Evaluation, history frame)
    """
    from emotion_cnn.evaluate import evaluate_predictions, predict_probabilities
    from emotion_cnn.train import fit, save_model_atomic

    model, history = fit(cfg, split, verbose=verbose)
    if model_path is not None:
        save_model_atomic(model, Path(model_path))
    X_eval, y_eval = getattr(split, f"X_{on}"), getattr(split, f"y_{on}")
    return evaluate_predictions(predict_probabilities(model, X_eval), y_eval, split.labels, split.rows(on)), history


def _commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=paths().root, check=True).stdout.strip() or "nocommit"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=paths().root).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "nocommit"


def hardware() -> str:
    import keras

    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    accelerator = _accelerator(keras.backend.backend())
    return (f"{accelerator + ' with ' if accelerator else ''}{cpu}, {os.cpu_count()} cores, "
            f"keras {keras.__version__} ({keras.backend.backend()})")


def report_backend(report: dict) -> str | None:
    """The Keras backend a benchmark report (its metrics.json) ran on, or ``None`` if it does
    not say. Reports before the ``backend`` field name it only at the end of their ``hardware``
    string, as :func:`hardware` writes it: "... (jax)"."""
    if "backend" in report:
        return report["backend"]
    named = re.search(r"\((\w+)\)$", str(report.get("hardware", "")))
    return named.group(1) if named else None


def _accelerator(backend: str) -> str | None:
    """The accelerator (GPU or TPU) the Keras ``backend`` ("jax", "torch" or "tensorflow")
    computes on: its name, or ``None`` on the CPU."""
    try:
        if backend == "jax":
            import jax

            device = jax.devices()[0]
            return None if device.platform == "cpu" else device.device_kind
        if backend == "torch":
            import torch

            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else None
    except (ImportError, RuntimeError):
        return None
    return None


def cross_validate(cfg: Config, *, folds: list[int] | None = None, out_dir: Path | None = None,
                   evaluate_on: str = "test", data: tuple[np.ndarray, pd.DataFrame] | None = None,
                   verbose: int = 0, jobs: int = 1, predictions_csv: Path | None = None,
                   models_dir: Path | None = None, features_file: str | None = None) -> dict:
    """Train and score every fold; write the report (``evaluate_on="test"`` only).

    ``jobs > 1`` trains that many folds at once in separate processes, the cores shared out
    between them (TensorFlow's and OpenMP's thread pools; JAX on CPU is not limited): on a
    small CPU two one-thread trainings got through more work than one two-thread training (on
    the slower VM kind not: TensorFlow idles when two of its threads share a CPU, round 19).
    Each fold's seed and data are the same either way.
    ``predictions_csv`` saves every scored clip's class probabilities (with its fold), e.g.
    to score an ensemble of runs on validation actors afterwards. ``models_dir`` keeps each
    fold's model as ``fold<N>.keras``, e.g. to score test-time settings without training again.
    ``features_file`` names the export ``data`` was read from, for the report.

    Returns
    -------
    dict
        ``folds`` (per-fold UA/WA/macro-F1 in %, epochs, seconds), ``mean`` and ``std``.
    """
    folds = folds or sorted(splits.EMOBOX_TEST_ACTORS)
    if jobs < 1:
        raise ValueError(f"cv: jobs must be at least 1, not {jobs}")
    if evaluate_on == "val" and cfg.train.train_on_val:
        raise ValueError("cv: with train.train_on_val the validation actors are trained on, "
                         "so they cannot be scored")
    # features first: prepare forks workers, which must not inherit a loaded Keras backend
    X, meta = data if data is not None else load_features(cfg)
    started = time.perf_counter()
    commit = _commit()  # the code that runs: later edits to the checkout must not relabel it
    tasks = [(cfg, fold, evaluate_on, verbose, models_dir) for fold in folds]
    done = []
    if jobs == 1:
        done = [_score_fold(task, X, meta) for task in tasks]
    else:
        import multiprocessing

        processes = min(jobs, len(tasks))
        threads = max(1, len(os.sched_getaffinity(0)) // processes)
        with multiprocessing.get_context("spawn").Pool(
                processes, initializer=_init_fold_worker, initargs=(threads, X, meta)) as pool:
            done = list(pool.imap_unordered(_score_fold_in_worker, tasks))
    done.sort(key=lambda item: folds.index(item[0]["fold"]))
    rows = [row for row, _ in done]
    import keras  # not before the folds: a spawned or forked worker must load its own backend

    result = {
        "protocol": "emobox", "evaluated_on": evaluate_on, "folds": rows, **summarise(rows),
        "wall_seconds": round(time.perf_counter() - started, 1), "jobs": jobs,
        "config": cfg.to_dict(), "hardware": hardware(), "backend": keras.backend.backend(), "commit": commit,
        **({"features_file": str(features_file)} if features_file else {}),
        "date": date.today().isoformat(),
        # orders two reports of one day: their folder names end in a commit hash, not a time
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"mean UA {result['mean']['ua']:.1f} ± {result['std']['ua']:.1f}  WA {result['mean']['wa']:.1f}  "
          f"F1 {result['mean']['macro_f1']:.1f}  ({result['wall_seconds'] / 60:.1f} min)", flush=True)
    pooled = pd.concat([p for _, p in done], ignore_index=True)
    if predictions_csv is not None:
        atomic_save_csv(Path(predictions_csv), pooled)
    if evaluate_on == "test":
        write_report(result, pooled, out_dir)
    return result


def fold_row(fold: int, metrics: dict, actors: list[int]) -> dict:
    """One fold's line of the table: UA, WA and macro-F1 in %, and the actors scored."""
    return {"fold": fold, "ua": 100 * metrics["ua"], "wa": 100 * metrics["wa"],
            "macro_f1": 100 * metrics["macro_f1"], "actors": actors}


def summarise(rows: list[dict]) -> dict:
    """``mean`` and ``std`` (population) over the folds of UA, WA and macro-F1."""
    table = pd.DataFrame(rows)
    return {"mean": {k: round(float(table[k].mean()), 2) for k in ("ua", "wa", "macro_f1")},
            "std": {k: round(float(table[k].std(ddof=0)), 2) for k in ("ua", "wa", "macro_f1")}}


def _score_fold(task, X: np.ndarray, meta: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """Train and score one fold: its table row and its predictions."""
    cfg, fold, evaluate_on, verbose, models_dir = task
    fold_cfg = copy.deepcopy(cfg)
    fold_cfg.split.protocol, fold_cfg.split.fold = "emobox", fold
    split = fold_split(X, meta, fold_cfg, name=f"emobox-fold{fold}")
    t0 = time.perf_counter()
    evaluation, history = train_and_score(
        fold_cfg, split, on=evaluate_on, verbose=verbose,
        model_path=Path(models_dir) / f"fold{fold}.keras" if models_dir else None)
    seconds = time.perf_counter() - t0
    row = {**fold_row(fold, evaluation.metrics, split.info["actors"][evaluate_on]),
           "epochs": len(history), "seconds": round(seconds, 1)}
    print(f"fold {fold} ({evaluate_on} actors {row['actors']}): UA {row['ua']:.1f}  WA {row['wa']:.1f}  "
          f"F1 {row['macro_f1']:.1f}  ({len(history)} epochs, {seconds:.0f} s)", flush=True)
    return row, evaluation.predictions.assign(fold=fold)


_worker_data: tuple[np.ndarray, pd.DataFrame] | None = None


def _init_fold_worker(threads: int, X: np.ndarray, meta: pd.DataFrame) -> None:
    # set before the backend is imported in this (spawned) process: its share of the cores
    os.environ.update({"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
                       "OMP_NUM_THREADS": str(threads), "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    global _worker_data
    _worker_data = (X, meta)


def _score_fold_in_worker(task) -> tuple[dict, pd.DataFrame]:
    return _score_fold(task, *_worker_data)


def write_report(result: dict, predictions: pd.DataFrame, out_dir: Path | None = None) -> Path:
    """metrics.json, results.md, predictions.csv, the pooled confusion matrix and UA per actor."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    from emotion_cnn import plots
    from emotion_cnn.config import EMOTIONS
    from emotion_cnn.evaluate import speaker_breakdown

    partial = "" if len(result["folds"]) == 6 else "-folds" + "_".join(str(r["fold"]) for r in result["folds"])
    if out_dir is None:
        # a second run of one commit on one day gets <name>-2 instead of overwriting the first
        out_dir = new_folder(paths().reports / "benchmarks" / f"{result['date']}-{result['commit']}{partial}")
    out_dir = Path(out_dir)
    labels = list(EMOTIONS)
    confusion = confusion_matrix(predictions["true"], predictions["predicted"], labels=labels)
    result["pooled_confusion"] = confusion.tolist()
    off = confusion.astype(float) / confusion.sum(axis=1, keepdims=True)
    np.fill_diagonal(off, 0)
    worst = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:5], off.shape))[0]
    result["most_confused"] = [f"{labels[i]} -> {labels[j]} ({off[i, j]:.0%})" for i, j in worst]
    result["per_speaker"] = speaker_breakdown(predictions)
    atomic_write_json(out_dir / "metrics.json", result)
    atomic_save_csv(out_dir / "predictions.csv", predictions)
    fig = plots.confusion_heatmap(confusion, labels, normalize=True,
                                  title=f"Pooled over {len(predictions)} test predictions, "
                                        f"{len(result['folds'])} folds",
                                  path=out_dir / "confusion_pooled.png")
    plt.close(fig)
    if per_actor := result["per_speaker"].get("actor"):
        fig = plots.accuracy_bars({actor: ua / 100 for actor, ua in per_actor.items()},
                                  title=f"UA per test actor, pooled over {len(result['folds'])} folds",
                                  xlabel="actor", ylabel="UA", path=out_dir / "ua_per_actor.png")
        plt.close(fig)
    atomic_write_text(out_dir / "results.md", results_markdown(result))
    print(f"report: {out_dir}", flush=True)
    return out_dir


def results_markdown(result: dict) -> str:
    lines = [f"# EmoBox speaker-independent cross-validation, {len(result['folds'])} folds "
             f"({result['date']}, commit {result['commit']})",
             "", f"Hardware: {result['hardware']}. Wall time: {result['wall_seconds'] / 60:.1f} min.", ""]
    if "features_file" in result:
        lines += [f"Features read from `{result['features_file']}` (benchmarks/export_features.py), not the audio.", ""]
    if "merged_from" in result:
        runs = "; ".join(f"{m['report']} ({m['members']} member{'s' * (m['members'] > 1)} from seed {m['seed']})"
                         for m in result["merged_from"])
        lines += [f"One ensemble made of the members of several runs (`benchmarks/score_ensemble.py --merge`): "
                  f"{runs}. Wall time and seconds are their sums.", ""]
    lines += ["| fold | test actors | UA % | WA % | macro-F1 % | epochs (all models) | seconds |",
              "|---|---|---|---|---|---|---|"]
    for r in result["folds"]:
        lines.append(f"| {r['fold']} | {', '.join(map(str, r['actors']))} | {r['ua']:.1f} | {r['wa']:.1f} | "
                     f"{r['macro_f1']:.1f} | {r['epochs']} | {r['seconds']:.0f} |")
    m, s = result["mean"], result["std"]
    lines.append(f"| **mean ± std** | | **{m['ua']:.1f} ± {s['ua']:.1f}** | {m['wa']:.1f} ± {s['wa']:.1f} | "
                 f"{m['macro_f1']:.1f} ± {s['macro_f1']:.1f} | | |")
    lines += ["", "Published on the same folds (EmoBox, frozen pretrained features + small head), UA / WA / F1 %:", ""]
    for name, (ua, wa, f1) in splits.EMOBOX_PUBLISHED.items():
        lines.append(f"- {name}: {ua:.1f} / {wa:.1f} / {f1:.1f}")
    if "most_confused" in result:
        lines += ["", "Most confused (true -> predicted, share of the true class): " + "; ".join(result["most_confused"])]
    if result.get("per_speaker", {}).get("actor"):
        lines += ["", speakers_markdown(result["per_speaker"])]
    return "\n".join(lines) + "\n"


def speakers_markdown(per_speaker: dict) -> str:
    """:func:`emotion_cnn.evaluate.speaker_breakdown`'s figures as one paragraph: every actor from the hardest up."""
    actors = sorted(per_speaker["actor"].items(), key=lambda item: (item[1], item[0]))
    values = np.array([ua for _, ua in actors])
    groups = "; ".join(f"{key} {ua:.1f}" for by in ("gender", "intensity") for key, ua in per_speaker.get(by, {}).items())
    return (f"UA % per test actor, hardest first (median {np.median(values):.1f}, "
            f"{values.min():.1f} to {values.max():.1f}): "
            + ", ".join(f"{actor}: {ua:.1f}" for actor, ua in actors)
            + (f". By gender and intensity (strong without neutral, which is never acted strong): {groups}."
               if groups else "."))
