"""``emotion-cnn``: a thin command line over the package.

    emotion-cnn fetch                  download RAVDESS into dataset/ (or --from a folder/zip)
    emotion-cnn prepare                features, PNGs and the .npy split (EmoBox fold 1)
    emotion-cnn train                  train on the latest split, evaluate, save the model
    emotion-cnn evaluate RUN_DIR       re-evaluate a run's model
    emotion-cnn predict FILE_OR_DIR..  emotions of recordings
    emotion-cnn cv                     6-fold speaker-independent benchmark
    emotion-cnn app                    the web app
    emotion-cnn run                    the whole pipeline: both notebooks, headless
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
DEFAULT_PREDICTIONS_CSV = "emotion_predictions.csv"  # written for folder inputs without --csv


def _config(args: argparse.Namespace):
    from emotion_cnn.config import load_config

    protocol = getattr(args, "protocol", None)
    if protocol is None and (getattr(args, "test_actors", None) or getattr(args, "val_actors", None)):
        protocol = "actors"  # giving actor lists means that protocol
    overrides = {
        "seed": getattr(args, "seed", None),
        "data_dir": getattr(args, "data", None),
        "keep_duplicates": True if getattr(args, "keep_duplicates", False) else None,
        "limit_actors": getattr(args, "limit_actors", None),
        "workers": getattr(args, "workers", None),
        "split__protocol": protocol,
        "split__fold": getattr(args, "fold", None),
        "split__test_actors": getattr(args, "test_actors", None),
        "split__val_actors": getattr(args, "val_actors", None),
        "train__epochs": getattr(args, "epochs", None),
        "train__batch_size": getattr(args, "batch_size", None),
        "train__learning_rate": getattr(args, "lr", None),
    }
    overrides.update(parse_set(getattr(args, "set", None) or []))
    return load_config(args.config, **overrides)


def parse_set(items: list[str]) -> dict:
    """``["features.n_mels=128"]`` -> ``{"features__n_mels": 128}`` (values parsed as YAML)."""
    import yaml

    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. --set features.n_mels=128")
        overrides[key.replace(".", "__")] = yaml.safe_load(value)
    return overrides


def cmd_fetch(args: argparse.Namespace) -> int:
    from emotion_cnn.config import Config, resolve_data_dir
    from emotion_cnn.fetch import FetchError, fetch

    try:
        fetch(Path(args.dest) if args.dest else resolve_data_dir(Config()), source=Path(args.source) if args.source else None,
              force=args.force, **({"url": args.url} if args.url else {}),
              **({"md5": None, "size": None} if args.no_verify else {}))
    except FetchError as err:
        print(f"fetch failed: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from emotion_cnn.prepare import prepare

    result = prepare(_config(args), force=args.force, out_dir=Path(args.out) if args.out else None,
                     progress=not args.quiet)
    print(result.split_dir)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from emotion_cnn.train import train

    result = train(_config(args), split_dir=args.split, export=not args.no_export,
                   verbose=2 if args.quiet else "auto")
    m = result.metrics
    print(f"run {result.run_dir}\n  test WA {m['wa']:.3f}  UA {m['ua']:.3f}  macro-F1 {m['macro_f1']:.3f}"
          f"  ({m['models']} model(s), {m['epochs_run']} epochs in all, {m['seconds_per_epoch']:.1f} s/epoch)")
    if not args.no_export:
        from emotion_cnn.config import paths

        print(f"  saved {paths().model}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from emotion_cnn.evaluate import evaluate_run

    metrics = evaluate_run(Path(args.run_dir), split_dir=args.split)
    print(json.dumps({k: metrics[k] for k in ("wa", "ua", "macro_f1", "n")}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from emotion_cnn.features import AudioError
    from emotion_cnn.predict import audio_files, load_classifier, predict_file

    classifier = load_classifier(args.model)
    rows, failed = [], 0
    for path in audio_files(args.inputs):
        try:
            pred = predict_file(path, classifier=classifier)
        except AudioError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr)
            if args.json:
                print(json.dumps({"path": str(path), "error": str(err)}))
            continue
        rows.append(pred)
        if args.json:
            print(json.dumps(pred.to_dict()))
        else:
            tops = "  ".join(f"{label} {p:.0%}" for label, p in pred.top(args.top))
            print(f"{path}: {tops}" + (f"  ({pred.windows} windows)" if pred.windows > 1 else ""))
    csv_path = args.csv or (DEFAULT_PREDICTIONS_CSV if any(Path(i).is_dir() for i in args.inputs) else None)
    if csv_path and rows:
        from emotion_cnn.io import atomic_save_csv

        table = pd.DataFrame([{"path": r.path, "label": r.label, "windows": r.windows,
                               **{f"p_{k}": round(v, 6) for k, v in r.probabilities.items()}}
                              for r in rows])
        atomic_save_csv(csv_path, table)
        print(f"wrote {csv_path}", file=sys.stderr)
    if failed:
        print(f"{failed} of {failed + len(rows)} files failed", file=sys.stderr)
    return 1 if failed or not rows else 0


def cmd_cv(args: argparse.Namespace) -> int:
    from emotion_cnn.cv import cross_validate, load_exported

    if args.features and args.data:
        raise ValueError("cv: --features holds the clips already; --data cannot choose others")
    cfg = _config(args)
    data = load_exported(args.features, cfg)[:2] if args.features else None
    cross_validate(cfg, folds=args.folds, out_dir=Path(args.out) if args.out else None,
                   verbose=2 if args.jobs == 1 else 0, jobs=args.jobs, data=data, features_file=args.features)
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    import subprocess

    from emotion_cnn.serve import streamlit_command

    return subprocess.call(streamlit_command(port=args.port, address=args.address, model=args.model))


def cmd_run(args: argparse.Namespace) -> int:
    from emotion_cnn.pipeline import run_pipeline

    run_pipeline(epochs=args.epochs, limit_actors=args.limit_actors, fold=args.fold)
    return 0


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file overriding the defaults")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any setting, e.g. --set features.n_mels=128 --set model.dropout=0.4")


def _add_split_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=["emobox", "actors", "random"])
    p.add_argument("--fold", type=int, help="EmoBox fold 1..6")
    p.add_argument("--test-actors", type=int, nargs="+")
    p.add_argument("--val-actors", type=int, nargs="+")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emotion-cnn", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download RAVDESS speech (Zenodo, checksum-verified)")
    p.add_argument("--dest", help="target folder (default $RAVDESS_DIR, else dataset/)")
    p.add_argument("--from", dest="source", help="import from a local folder or zip instead")
    p.add_argument("--url", default=None)
    p.add_argument("--no-verify", action="store_true", help="skip the size/MD5 check (with --url)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("prepare", help="audio -> log-mel arrays, PNGs and .npy splits")
    p.add_argument("--data", help="dataset folder (default $RAVDESS_DIR, else dataset/)")
    _add_split_flags(p)
    p.add_argument("--limit-actors", type=int, help="only N actors, for a quick run")
    p.add_argument("--keep-duplicates", action="store_true",
                   help="keep identical recordings (reproduces the leaky doubled-data setup)")
    p.add_argument("--workers", type=int, help="processes (default: all cores)")
    p.add_argument("--out", help="split folder (default splits/<name>, e.g. splits/emobox-fold1)")
    p.add_argument("--force", action="store_true", help="redo cached work")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_flags(p)
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("train", help="train, evaluate and save the model")
    p.add_argument("--split", help="split folder (default: the one prepare wrote last)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--no-export", action="store_true", help="do not overwrite emotion_cnn_model.keras")
    p.add_argument("--quiet", action="store_true", help="one line per epoch")
    _add_config_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a run's model on its test split")
    p.add_argument("run_dir")
    p.add_argument("--split", help="another split folder to evaluate on")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict the emotion of audio files")
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--model", help="model file (default emotion_cnn_model.keras)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--csv", help="also write a CSV table here (default for a folder: "
                                 f"{DEFAULT_PREDICTIONS_CSV} in the current directory)")
    p.add_argument("--top", type=int, default=3)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("cv", help="6-fold speaker-independent cross-validation benchmark")
    p.add_argument("--protocol", choices=["emobox"], default="emobox")
    p.add_argument("--folds", type=int, nargs="+", help="subset of folds (default all 6)")
    p.add_argument("--data", help="dataset folder")
    p.add_argument("--epochs", type=int)
    p.add_argument("--out", help="report folder (default reports/benchmarks/<date>-<commit>)")
    p.add_argument("--jobs", type=int, default=1,
                   help="folds trained at once, each in its own process with its share of the cores")
    p.add_argument("--features", metavar="NPZ",
                   help="features written by benchmarks/export_features.py instead of the audio: "
                        "for a machine without the audio stack (a lent GPU)")
    _add_config_flags(p)
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser("app", help="start the Streamlit web app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--model")
    p.set_defaults(func=cmd_app)

    p = sub.add_parser("run", help="the main job: fetch if needed, run both notebooks headless")
    p.add_argument("--epochs", type=int, help="override training epochs")
    p.add_argument("--limit-actors", type=int, default=0)
    p.add_argument("--fold", type=int, default=1)
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import yaml

    from emotion_cnn.fetch import FetchError

    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError, FetchError, yaml.YAMLError) as err:
        print(f"emotion-cnn {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
