"""Tune settings on validation actors only (never the test actors), from exported features.

    python benchmarks/export_features.py .device/features.npz      # here: features + metadata
    KERAS_BACKEND=jax python benchmarks/search.py .device/features.npz benchmarks/experiments.yaml

Each experiment (a name and a nested override of the default config) runs 6-fold
cross-validation scored on each fold's validation actors; experiments run in parallel
processes. An experiment may also set ``train_actors: N`` (train on N of each fold's 16
training actors: a learning curve), ``speaker_norm: true`` (features shifted per actor by
:func:`normalise_per_speaker`), ``pcen: true`` (the log-mel turned into PCEN by
:func:`pcen_from_log_mel`), ``pitch: PATH`` (an ``export_pitch.py`` file's pitch contour as two
more input rows, :func:`with_pitch_rows`), ``inputs: PATH`` (another export of the same clips and
frames in place of the log-mel, e.g. ``export_cqt.py``'s constant-Q spectrogram:
:func:`other_inputs`) or ``manifest: PATH`` (score the exact split ``prepare``
wrote, on its test clips: the leak table). Results are appended to
``benchmarks/results_log.jsonl``: settings -> mean validation UA. ``--test NAME`` scores the test actors instead (the final figure, once).
With ``--folds`` naming some of the 6 folds (a run split over processes), each row is marked
``"partial": true``: its mean is over those folds only. An experiment's overrides apply to
the defaults of the day: since round 41 they add a temporal member (``train.temporal_members``
1) beside ``train.ensemble``'s 2-D ones, so one 2-D member alone is ``train: {ensemble: 1,
temporal_members: 0}``; each row's ``members`` says what it trained. ``score_ensemble.py NAME a.csv,b.csv
--log ...`` joins the parts' prediction files and logs the whole run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def normalise_per_speaker(X: np.ndarray, actors: np.ndarray, *, floor: float) -> np.ndarray:
    """Each actor's clips shifted, per mel band, so that the actor's mean level over all their
    sounding bins (above ``floor``) equals the mean over every actor: the speaker's long-term
    spectrum taken out, each clip's own level kept. Uses every clip of an actor, labels unseen,
    so at prediction time it needs a batch of clips from the same speaker. The shared level is
    the mean over all actors given, test actors included (unlabelled, like their own means):
    the model's input normalisation re-centres each band on the training clips anyway.

    Parameters
    ----------
    X : np.ndarray, shape (n, n_mels, n_frames)
    actors : np.ndarray, shape (n,)
    """
    sounding = X > floor
    band_means = {}  # per actor, (n_mels,); NaN where a band never sounds: it is not shifted
    for actor in np.unique(actors):
        rows = actors == actor
        counts = sounding[rows].sum(axis=(0, 2))
        sums = np.where(sounding[rows], X[rows], 0).sum(axis=(0, 2))
        band_means[actor] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    overall = np.nanmean(list(band_means.values()), axis=0)
    out = X.copy()
    for actor, means in band_means.items():
        rows = actors == actor
        shifted = X[rows] - np.nan_to_num(means - overall)[None, :, None]
        out[rows] = np.where(sounding[rows], np.clip(shifted, floor, 0.0), floor)
    return out


def pcen_from_log_mel(X: np.ndarray, *, sr: int, hop_length: int, top_db: float, peak_power: float = 1e20,
                      time_constant: float = 0.4, gain: float = 0.98, bias: float = 2.0, power: float = 0.5,
                      eps: float = 1e-6) -> np.ndarray:
    """Per-channel energy normalisation (Wang et al. 2017, with ``librosa.pcen``'s defaults) of
    exported log-mel features, in place of the log: each band divided by its own smoothed
    energy (about 0.4 s), then root-compressed. The export keeps only dB relative to each
    clip's peak, so the mel power is rebuilt with the peak at ``peak_power`` (about a
    full-scale clip at librosa's recommended 2**31 input scaling). The result, 0 and up, is
    scaled by 10 and shifted down by ``top_db``, so that the augmentation masks, which fill with
    ``-top_db``, still fill with the lowest value there is.

    Parameters
    ----------
    X : np.ndarray, shape (n, n_mels, n_frames)
        Log-mel in dB, ``[-top_db, 0]``.
    sr, hop_length : int
        The sample rate and hop the features were made with: they set the smoother's frames.
    top_db : float
        The export's floor below each clip's peak, in dB.
    peak_power : float
        The mel power each clip's peak bin is given.
    time_constant : float
        Seconds over which the smoother averages.
    gain, bias, power, eps : float
        PCEN's alpha, delta, r and epsilon.

    Returns
    -------
    np.ndarray, shape (n, n_mels, n_frames), float32, ``>= -top_db``
    """
    frames = time_constant * sr / hop_length
    b = (np.sqrt(1 + 4 * frames ** 2) - 1) / (2 * frames ** 2)

    def pcen(energy: np.ndarray) -> np.ndarray:
        smooth = np.empty_like(energy)
        # settled on the first frame (as librosa.pcen with zi scaled by it): librosa's own start, near
        # zero energy, would make every clip's first 0.4 s an onset
        state = energy[..., 0]
        for t in range(energy.shape[-1]):
            state = (1 - b) * state + b * energy[..., t]
            smooth[..., t] = state
        agc = np.exp(-gain * (np.log(eps) + np.log1p(smooth / eps)))
        return bias ** power * np.expm1(power * np.log1p(energy * agc / bias))

    energy = 10.0 ** (X.astype(np.float64) / 10.0) * peak_power
    return (pcen(energy) * 10.0 - top_db).astype(np.float32)


def with_pitch_rows(X: np.ndarray, meta: pd.DataFrame, pitch_path: str, *, floor: float) -> np.ndarray:
    """``X`` ``(n, n_mels, n_frames)`` with two rows before the lowest mel band: the pitch
    (``floor`` + 20 + semitones re 100 Hz) and the voiced flag (0 voiced, ``floor`` unvoiced),
    both at ``floor`` where a frame is unvoiced, so that a frequency mask over them reads as
    "no voice", as it reads as silence over the mel bands. Returns ``(n, n_mels + 2, n_frames)``."""
    with np.load(pitch_path) as export:
        pitch, clip_ids = export["pitch"], export["clip_id"]
    if list(clip_ids) != list(meta["clip_id"]) or pitch.shape[2] != X.shape[2]:
        raise ValueError(f"{pitch_path}: not the clips or frames of the feature export; run "
                         "export_pitch.py on it again")
    semitones, voiced = pitch[:, 0], pitch[:, 1] > 0.5
    rows = np.stack([np.where(voiced, floor + 20 + semitones, floor), np.where(voiced, 0.0, floor)], axis=1)
    return np.concatenate([rows.astype(X.dtype), X], axis=1)


def other_inputs(X: np.ndarray, meta: pd.DataFrame, path: str) -> np.ndarray:
    """The features ``X`` ``(n, rows, n_frames)`` of another export of the same clips, in their
    order and with as many frames (``export_cqt.py``), as float32."""
    with np.load(path) as export:
        other, clip_ids = export["X"], export["clip_id"]
    if list(clip_ids) != list(meta["clip_id"]) or other.shape[2] != X.shape[2]:
        raise ValueError(f"{path}: not the clips or frames of the feature export; export it again from that file")
    return other.astype(np.float32)


def score_manifest_split(cfg, X, meta, manifest_path: str) -> dict:
    """Train and test on the exact split ``prepare`` wrote (its manifest.csv), features
    looked up by sample hash: used for the leak table (random splits, doubled data)."""
    from emotion_cnn.cv import fold_row, hardware, split_from_assignment, summarise, train_and_score

    manifest = pd.read_csv(manifest_path).sort_values(["split", "index_in_split"], kind="stable")
    row_of = {sha: i for i, sha in enumerate(meta["pcm_sha256"])}
    split = split_from_assignment(X[[row_of[h] for h in manifest["pcm_sha256"]]],
                                  manifest.drop(columns=["split", "index_in_split"]).reset_index(drop=True),
                                  manifest["split"].to_numpy(), name=manifest_path, protocol="random")
    evaluation, history = train_and_score(cfg, split, on="test")
    row = {**fold_row(0, evaluation.metrics, split.info["actors"]["test"]),
           "epochs": len(history), "n_test": evaluation.metrics["n"], "n_train": len(split.y_train)}
    return {**summarise([row]), "folds": [row], "hardware": hardware()}


def score_fewer_train_actors(cfg, X, meta, n_actors: int, folds: list[int] | None) -> dict:
    """Each fold trained on only ``n_actors`` of its training actors (half male, half female,
    drawn with the config's seed) and scored on its validation actors: a learning curve over
    speakers, to judge what more training actors are worth without touching test actors."""
    from emotion_cnn.cv import fold_row, hardware, split_from_assignment, summarise, train_and_score
    from emotion_cnn.splits import EMOBOX_TEST_ACTORS, assign_splits

    rows = []
    for fold in folds or sorted(EMOBOX_TEST_ACTORS):
        cfg.split.protocol, cfg.split.fold = "emobox", fold
        assignment = assign_splits(meta, cfg.split, seed=cfg.seed).to_numpy().copy()
        train_actors = sorted(int(a) for a in meta.loc[assignment == "train", "actor"].unique())
        rng = np.random.default_rng([cfg.seed, fold])
        kept = [a for parity in (1, 0) for a in
                rng.choice([a for a in train_actors if a % 2 == parity], n_actors // 2, replace=False)]
        assignment[(assignment == "train") & ~meta["actor"].isin(kept).to_numpy()] = "unused"
        split = split_from_assignment(X, meta, assignment, name=f"emobox-fold{fold}", protocol="emobox")
        t0 = time.time()
        evaluation, history = train_and_score(cfg, split, on="val")
        rows.append({**fold_row(fold, evaluation.metrics, split.info["actors"]["val"]),
                     "epochs": len(history), "seconds": round(time.time() - t0, 1),
                     "train_actors": sorted(int(a) for a in kept)})
        print(f"fold {fold}: val UA {rows[-1]['ua']:.1f} with {n_actors} training actors", flush=True)
    return {**summarise(rows), "folds": rows, "hardware": hardware()}


def log_record(record: dict, *, round_tag: str, folds: list[int] | None) -> dict:
    """``record`` as its results-log row: tagged with the round, and marked partial when it
    scored only some of the 6 folds (``--folds``), so no one takes its mean for the run's."""
    row = dict(record)
    if round_tag:
        row["round"] = round_tag
    if folds and len({fold["fold"] for fold in record["folds"]}) < 6:
        row["partial"] = True
    return row


def run_one(args):
    name, overrides, data_path, evaluate_on, folds, predictions_dir, models_dir = args
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.05")
    from emotion_cnn.config import config_from_dict
    from emotion_cnn.cv import cross_validate, load_exported

    settings = dict(overrides)
    manifest = settings.pop("manifest", None)
    train_actors = settings.pop("train_actors", None)
    speaker_norm = settings.pop("speaker_norm", False)
    use_pcen = settings.pop("pcen", False)
    pitch = settings.pop("pitch", None)
    inputs = settings.pop("inputs", None)
    if train_actors and evaluate_on != "val":
        raise ValueError(f"{name}: a train_actors learning curve is scored on validation actors only")
    cfg = config_from_dict(settings)
    try:  # the log records the experiment's feature settings: they must be the ones X was made with
        X, meta, _ = load_exported(data_path, cfg)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from None
    if inputs:
        X = other_inputs(X, meta, inputs)
    if speaker_norm:
        X = normalise_per_speaker(X, meta["actor"].to_numpy(), floor=-cfg.features.top_db)
    if use_pcen:
        f = cfg.features
        X = pcen_from_log_mel(X, sr=f.sr, hop_length=f.hop_length, top_db=f.top_db)
    if pitch:
        X = with_pitch_rows(X, meta, pitch, floor=-cfg.features.top_db)
    if evaluate_on == "val":
        cfg.train.train_on_val = False  # the validation actors are scored, so never trained on
    started = time.time()
    if manifest:
        result = score_manifest_split(cfg, X, meta, manifest)
    elif train_actors:
        result = score_fewer_train_actors(cfg, X, meta, train_actors, folds)
    else:
        predictions = Path(predictions_dir) / f"{name}.csv" if predictions_dir else None
        result = cross_validate(cfg, folds=folds, evaluate_on=evaluate_on, data=(X, meta),
                                predictions_csv=predictions,
                                models_dir=Path(models_dir) / name if models_dir else None)
    return {"name": name, "overrides": overrides, "evaluated_on": "test" if manifest else evaluate_on,
            "mean": result["mean"], "std": result["std"], "folds": result["folds"],
            "minutes": round((time.time() - started) / 60, 1), "hardware": result["hardware"],
            # the defaults move on (round 41 added a temporal member): say what each run trained
            "members": {"2d": cfg.train.ensemble, "temporal": cfg.train.temporal_members}}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("experiments")
    parser.add_argument("--only", nargs="+")
    parser.add_argument("--test", action="store_true", help="score test actors (final figure)")
    parser.add_argument("--folds", type=int, nargs="+")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--log", default="benchmarks/results_log.jsonl")
    parser.add_argument("--round", default="", help="tag the log rows, e.g. 3")
    parser.add_argument("--predictions", metavar="DIR",
                        help="save each experiment's per-clip probabilities as DIR/<name>.csv")
    parser.add_argument("--models", metavar="DIR",
                        help="keep each experiment's fold models as DIR/<name>/fold<N>.keras")
    args = parser.parse_args()
    # `kill` of this process must also end its workers: as an exception, it leaves the `with`
    # block below, which terminates the pool (round 5 lost CPU to orphaned workers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    experiments = yaml.safe_load(Path(args.experiments).read_text())
    names = args.only or list(experiments)
    jobs = [(n, experiments[n] or {}, args.data, "test" if args.test else "val", args.folds, args.predictions,
             args.models) for n in names]
    with multiprocessing.get_context("spawn").Pool(min(args.procs, len(jobs))) as pool:
        for record in pool.imap_unordered(run_one, jobs):
            record = log_record(record, round_tag=args.round, folds=args.folds)
            line = json.dumps(record)
            scope = (f" over folds {', '.join(str(f['fold']) for f in record['folds'])} only"
                     if record.get("partial") else "")
            print(f"RESULT {record['name']}: {record['evaluated_on']} UA {record['mean']['ua']:.1f} "
                  f"± {record['std']['ua']:.1f}{scope} ({record['minutes']} min)", flush=True)
            with open(args.log, "a") as log:
                log.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
