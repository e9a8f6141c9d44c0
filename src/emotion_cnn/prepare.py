"""The prepare stage: dataset folder -> features, PNGs, metadata and ``.npy`` splits.

Work already done is skipped: decoded-sample hashes are remembered per file (path, size,
modification time), features are cached per (sample hash, feature settings), and a split
whose inputs did not change is not rewritten. ``force=True`` redoes everything.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import threadpoolctl
from tqdm.auto import tqdm

from emotion_cnn import data, features, splits
from emotion_cnn.data import relative_path as _rel
from emotion_cnn.config import EMOTIONS, LABEL_INDEX, Config, FeatureConfig, paths, resolve_data_dir, save_config
from emotion_cnn.io import atomic_save_csv, atomic_save_npy, atomic_write_json, atomic_write_text

@dataclass
class PrepareResult:
    split_dir: Path
    metadata: pd.DataFrame  # one row per kept clip, with its split
    skipped: list[data.Skipped]
    summary: dict


@dataclass(frozen=True)
class _Task:
    path: Path
    known_sha: str | None
    png_path: Path
    render_png: bool
    features: FeatureConfig
    feature_dir: Path
    force: bool


def _feature_file(feature_dir: Path, digest: str) -> Path:
    return feature_dir / f"{digest}.npy"


def _process(task: _Task) -> dict:
    """Hash, featurise and draw one clip, reusing the cache where it can (runs in a worker)."""
    result: dict = {"path": task.path}
    try:
        digest, y = task.known_sha, None  # known_sha is None under force
        if not (digest and _feature_file(task.feature_dir, digest).exists()):
            y, digest, result["info"] = features.load_mono(task.path, sr=task.features.sr)
        result["sha"] = digest
        target = _feature_file(task.feature_dir, digest)
        if y is not None and (task.force or not target.exists()):
            logmel = features.clip_features(y, task.features)
            atomic_save_npy(target, logmel)
        elif task.render_png:
            logmel = np.load(target)
        else:
            return result
        features.save_png(logmel, task.png_path, top_db=task.features.top_db)
    except features.SilentAudioError as err:
        result.update(reason=data.SILENT, detail=str(err))
    except features.ShortAudioError as err:
        result.update(reason=data.TOO_SHORT, detail=str(err))
    except features.AudioError as err:
        result.update(reason=data.UNDECODABLE, detail=str(err))
    return result


def _one_blas_thread() -> None:
    # one process per core already; BLAS threads on top of that make it 2.5x slower
    threadpoolctl.threadpool_limits(limits=1)


def _warm_up(cfg: FeatureConfig) -> None:
    """Compile librosa's numba kernels (~2 s) once here rather than once per worker."""
    tone = np.sin(np.linspace(0, 2000, cfg.n_samples, dtype=np.float32))
    features.spectrogram_image(features.clip_features(tone, cfg), top_db=cfg.top_db)


def _run_tasks(tasks: list[_Task], *, workers: int, progress: bool) -> list[dict]:
    bar = dict(total=len(tasks), desc="features", unit="clip", disable=not progress or not tasks)
    if workers <= 1 or len(tasks) < 2 * workers:
        return [_process(t) for t in tqdm(tasks, **bar)]
    _warm_up(tasks[0].features)
    # fork: workers inherit the imported modules and compiled code, so they start in milliseconds
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, initializer=_one_blas_thread) as pool:
        return list(tqdm(pool.imap_unordered(_process, tasks, chunksize=8), **bar))


def _png_path(spectrograms: Path, name: data.ClipName) -> Path:
    return spectrograms / name.label / f"{name.clip_id}.png"


def _prune_pngs(spectrograms: Path, kept: set[Path]) -> None:
    """Delete the pictures of clips this run did not keep (dropped copies, files that went
    bad or away, actors left out): ``spectrograms/`` shows the clips ``metadata.csv`` lists."""
    for png in spectrograms.glob("*/*.png"):
        if png.parent.name in EMOTIONS and png not in kept:
            png.unlink(missing_ok=True)


def _load_index(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def prepare(cfg: Config, *, force: bool = False, progress: bool = True,
            out_dir: Path | None = None, set_latest: bool = True) -> PrepareResult:
    """Run the prepare stage with settings ``cfg``; see the module docstring.

    Parameters
    ----------
    cfg : Config
        Data folder, feature settings, split protocol, seed, ``limit_actors``, ``workers``.
    force : bool
        Recompute features, PNGs and the split even if cached.
    progress : bool
        Show a progress bar.
    out_dir : Path, optional
        Split folder; default ``splits/<protocol name>``.
    set_latest : bool
        Make this the split that ``train`` uses by default (``splits/LATEST``).

    Returns
    -------
    PrepareResult
        Where the split went, the kept clips with their split, and what was skipped.
    """
    started = time.perf_counter()
    where = paths()
    root = resolve_data_dir(cfg)
    scan = data.scan_dataset(root)
    split_cfg = cfg.split
    name = splits.split_name(split_cfg, seed=cfg.seed, keep_duplicates=cfg.keep_duplicates)
    out_dir = Path(out_dir) if out_dir else where.splits / name

    candidates = scan.candidates
    if cfg.limit_actors > 0:
        keep = set(splits.limit_actors([c.name.actor for c in candidates], split_cfg, cfg.limit_actors))
        candidates = [c for c in candidates if c.name.actor in keep]

    feature_dir = where.cache / cfg.features.key()
    index_path = where.cache / "decoded-index.json"
    index = _load_index(index_path)
    png_key_file = where.spectrograms / ".png-settings"
    png_stale = force or not png_key_file.exists() or png_key_file.read_text() != cfg.features.key()

    known_shas = {}  # from the index, for files unchanged since they were hashed
    for cand in candidates:
        entry = index.get(str(cand.path))
        if entry and entry["size"] == cand.size and entry["mtime_ns"] == cand.mtime_ns:
            known_shas[cand.path] = entry["sha"]
    # a known redundant copy (Actor_07's identical pair) is dropped below: no picture to draw
    known_copies = set() if cfg.keep_duplicates else set(data.find_duplicates(known_shas))

    shas: dict[Path, str] = {}
    infos: dict[Path, dict] = {}
    tasks: list[_Task] = []
    for cand in candidates:
        known = known_shas.get(cand.path)
        entry = index.get(str(cand.path))
        png_path = _png_path(where.spectrograms, cand.name)
        render = (png_stale or not png_path.exists()) and cand.path not in known_copies
        if known and not force and not render and _feature_file(feature_dir, known).exists():
            shas[cand.path], infos[cand.path] = known, entry["info"]
            continue
        tasks.append(_Task(cand.path, None if force else known, png_path, render, cfg.features,
                           feature_dir, force))

    workers = cfg.workers or os.cpu_count() or 1
    skipped = list(scan.skipped)
    for res in _run_tasks(tasks, workers=workers, progress=progress):
        path = res["path"]
        if "reason" in res:
            skipped.append(data.Skipped(path, res["reason"], res["detail"]))
            index.pop(str(path), None)
            continue
        shas[path] = res["sha"]
        stat = path.stat()
        info = res.get("info") or index[str(path)]["info"]
        infos[path] = info
        index[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha": res["sha"], "info": info}
    if tasks:
        atomic_write_json(index_path, index)
        atomic_write_text(png_key_file, cfg.features.key())

    shas = dict(sorted(shas.items()))  # workers finish in any order; outputs must not
    if not cfg.keep_duplicates:
        for copy, kept in data.find_duplicates(shas).items():
            skipped.append(data.Skipped(copy, data.DUPLICATE, f"same samples as {_rel(kept, root)}"))
            del shas[copy]

    by_path = {c.path: c for c in candidates}

    meta = _metadata(sorted(shas), by_path, shas, infos, root)
    if meta.empty:
        raise RuntimeError(f"no usable RAVDESS speech clips in {root}")
    meta["split"] = splits.assign_splits(meta, split_cfg, seed=cfg.seed).to_numpy()
    empty = [s for s in splits.SPLITS if not (meta["split"] == s).any()]
    if empty:
        raise ValueError(f"the {', '.join(empty)} split would be empty: none of its actors are in {root}"
                         + (f" after limit_actors={cfg.limit_actors}" if cfg.limit_actors else ""))

    summary = data.summarize(skipped, kept=len(meta), not_speech=scan.not_speech)
    summary.update(data_dir=str(root), split_dir=str(out_dir), protocol=split_cfg.protocol,
                   clips_per_split={s: int((meta["split"] == s).sum()) for s in splits.SPLITS})
    _write_split(out_dir, meta, cfg, feature_dir, force=force)
    _prune_pngs(where.spectrograms, {_png_path(where.spectrograms, by_path[p].name) for p in shas})
    skipped_frame = pd.DataFrame(
        [{"path": _rel(s.path, root), "reason": s.reason, "detail": s.detail}
         for s in sorted(skipped, key=lambda s: str(s.path))],
        columns=["path", "reason", "detail"])
    atomic_save_csv(where.spectrograms / "metadata.csv", meta)
    atomic_save_csv(out_dir / "skipped.csv", skipped_frame)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    atomic_write_json(out_dir / "summary.json", summary)
    if set_latest:
        atomic_write_text(where.splits / "LATEST", str(out_dir.resolve()) + "\n")
    _report(skipped, summary, root, cfg)
    return PrepareResult(out_dir, meta, skipped, summary)


def _metadata(paths: list[Path], by_path: dict, shas: dict, infos: dict, root: Path) -> pd.DataFrame:
    rows = []
    for path in paths:
        clip = by_path[path].name
        info = infos[path]
        rows.append({
            "clip_id": clip.clip_id, "path": _rel(path, root), "actor": clip.actor,
            "gender": clip.gender, "emotion": clip.label, "emotion_code": clip.emotion,
            "intensity": "strong" if clip.intensity == 2 else "normal",
            "statement": clip.statement, "repetition": clip.repetition,
            "duration": round(info["duration"], 4), "orig_sr": info["orig_sr"],
            "channels": info["channels"], "pcm_sha256": shas[path],
        })
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["actor", "clip_id", "path"], kind="stable").reset_index(drop=True)
    return frame


def _write_split(out_dir: Path, meta: pd.DataFrame, cfg: Config, feature_dir: Path, *, force: bool) -> None:
    """Write ``X_/y_{train,val,test}.npy``, labels, manifest and config, unless unchanged."""
    content_key = {
        "features": cfg.features.key(), "seed": cfg.seed, "split": cfg.to_dict()["split"],
        "clips": [list(row) for row in zip(meta["pcm_sha256"], meta["emotion"], meta["split"])],
    }
    key_file = out_dir / "content-key.json"
    expected = [out_dir / f"{kind}_{s}.npy" for s in splits.SPLITS for kind in ("X", "y")]
    if not force and key_file.exists() and all(p.exists() for p in expected):
        if json.loads(key_file.read_text()) == content_key:
            return
    # the key goes first, so an interrupted rewrite can never look complete
    key_file.unlink(missing_ok=True)
    manifest = meta.copy()
    manifest["index_in_split"] = manifest.groupby("split").cumcount()
    for split in splits.SPLITS:
        part = manifest[manifest["split"] == split]
        X = np.stack([np.load(_feature_file(feature_dir, sha)) for sha in part["pcm_sha256"]]) \
            if len(part) else np.zeros((0, cfg.features.n_mels, cfg.features.n_frames), np.float32)
        atomic_save_npy(out_dir / f"X_{split}.npy", X.astype(np.float32))
        atomic_save_npy(out_dir / f"y_{split}.npy", part["emotion"].map(LABEL_INDEX).to_numpy(np.int64))
    atomic_write_json(out_dir / "labels.json", {str(i): label for i, label in enumerate(EMOTIONS)})
    atomic_save_csv(out_dir / "manifest.csv", manifest)
    save_config(cfg, out_dir / "config.yaml")
    info = {
        "protocol": cfg.split.protocol,
        "leaky": cfg.split.protocol == "random" or cfg.keep_duplicates,
        "warning": splits.LEAKY_WARNING if cfg.split.protocol == "random" else "",
        "seed": cfg.seed,
        "actors": {s: sorted(int(a) for a in meta.loc[meta["split"] == s, "actor"].unique())
                   for s in splits.SPLITS},
        "x_shape": [cfg.features.n_mels, cfg.features.n_frames],
        "features": cfg.to_dict()["features"],
        "normalisation": "none here: the model's Normalization layer is adapted on X_train",
    }
    atomic_write_json(out_dir / "split.json", info)
    atomic_write_json(key_file, content_key)


def _report(skipped: list[data.Skipped], summary: dict, root: Path, cfg: Config) -> None:
    out = sys.stderr
    for s in sorted(skipped, key=lambda s: str(s.path)):
        print(s.message(root), file=out)
    print(f"prepare: {summary['kept']} clips kept from {root}", file=out)
    if summary["left_out_not_speech"]:
        print(f"  left out {summary['left_out_not_speech']} song/video files (only audio-only speech is used)", file=out)
    for reason, count in summary["skipped"].items():
        print(f"  skipped {count}: {reason}", file=out)
    counts = ", ".join(f"{k} {v}" for k, v in summary["clips_per_split"].items())
    print(f"  split {Path(summary['split_dir']).name}: {counts}", file=out)
    if cfg.split.protocol == "random":
        print(f"  WARNING: {splits.LEAKY_WARNING}", file=out)
    if cfg.keep_duplicates:
        print("  WARNING: duplicate recordings kept (--keep-duplicates): copies can sit in train and test", file=out)


def latest_split_dir() -> Path:
    """The split folder that ``prepare`` wrote last."""
    latest = paths().splits / "LATEST"
    if not latest.exists():
        raise FileNotFoundError("no split prepared yet: run `emotion-cnn prepare` first")
    return Path(latest.read_text().strip())
