"""Score an ensemble of runs from their saved per-clip probabilities, without training again.

    python benchmarks/score_ensemble.py NAME runs/a.csv runs/b.csv [--log benchmarks/results_log.jsonl]
    python benchmarks/score_ensemble.py --merge reports/benchmarks/A reports/benchmarks/B [--out DIR]
    python benchmarks/score_ensemble.py --curve runs/a.csv runs/b.csv runs/c.csv ...
    python benchmarks/score_ensemble.py NAME r/a/seed42.csv,r/b/seed42.csv r/a/seed43.csv,r/b/seed43.csv
    python benchmarks/score_ensemble.py NAME --draw 3 d42 d43 d44 d45 --draw 1 t42 t43 [--fresh d45 t43]

Each CSV is a ``search.py --predictions`` file (the same clips of the same folds, scored on the
same actors). A run whose folds were trained by two ``search.py --folds`` processes, each with
its own ``--predictions`` folder, is given as its files joined by a comma:
``r/a/seed42.csv,r/b/seed42.csv``. The ensemble joins the class probabilities per clip as
``train.average`` joins the members inside one model (``--average``; by default the default
config's, ``probabilities``: their mean; ``logits``: their normalised geometric mean, which is the
softmax of the members' mean logits), and is scored per fold like ``search.py``.

``--curve`` scores every subset of the runs and prints, per ensemble size, the mean, lowest
and highest 6-fold mean UA over the subsets of that size: what one more member is worth, with
the luck of which seeds were drawn averaged out.

``--draw K RUN...`` (once per kind of member) scores every ensemble made of K of each kind's
runs, both ways of joining them (``train.average``'s two), and prints the mean, lowest and
highest mean UA over those draws and how often logits beat probabilities (rounds 41-42); with
``--fresh RUN...`` only the draws that hold one of those runs.

``--merge`` joins test benchmark reports (``emotion-cnn cv``) of the same settings whose
members' seeds follow on from each other, e.g. a 2-member run of seed 42 (seeds 42, 43) and a
1-member run of seed 44, into the report a 3-member run of seed 42 would write: member ``k``
of an ensemble trains exactly as a single model of seed ``seed + k - 1`` does, so the members
already trained need not be trained again. 2-D members only: a report with temporal members
(``train.temporal_members``, whose seeds start again at ``seed``) is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import combinations, product
from pathlib import Path

import numpy as np
import pandas as pd

from emotion_cnn.config import AVERAGES, EMOTIONS, LABEL_INDEX, TrainConfig, check_average, config_from_record
from emotion_cnn.cv import fold_row, report_backend, summarise
from emotion_cnn.evaluate import scores


PROBABILITY_COLUMNS = [f"p_{label}" for label in EMOTIONS]


def average_probabilities(frames: list[pd.DataFrame], weights: list[float] | None = None, *, average: str
                          ) -> tuple[pd.DataFrame, np.ndarray]:
    """The first frame sorted by fold and clip, and every frame's class probabilities for those
    clips joined as ``train.average`` joins an ensemble's members, ``(n_clips, n_classes)``:
    ``"probabilities"``, their (weighted) mean; ``"logits"``, their (weighted) geometric mean,
    normalised, which is the softmax of the mean of the members' logits."""
    check_average(average)
    key = ["fold", "clip_id"]
    frames = [f.sort_values(key).reset_index(drop=True) for f in frames]
    for other in frames[1:]:
        if not other[key].equals(frames[0][key]):
            raise ValueError("the prediction files do not hold the same clips of the same folds")
    stacked = np.array([f[PROBABILITY_COLUMNS].to_numpy() for f in frames])
    if average == "probabilities":
        return frames[0], np.average(stacked, axis=0, weights=weights)
    # the files round to 6 decimals: a 0 there was below 5e-7
    geometric = np.exp(np.average(np.log(np.maximum(stacked, 5e-7)), axis=0, weights=weights))
    return frames[0], geometric / geometric.sum(axis=1, keepdims=True)


def read_run(spec: str) -> pd.DataFrame:
    """One run's predictions from ``spec``: a CSV, or several joined by commas that hold
    different folds of the same run (its halves from two ``search.py --folds`` processes)."""
    parts = [pd.read_csv(path) for path in spec.split(",")]
    folds = [set(part["fold"]) for part in parts]
    if sum(map(len, folds)) != len(set().union(*folds)):
        raise ValueError(f"{spec}: the files hold some of the same folds; a run's parts must hold different ones")
    return pd.concat(parts, ignore_index=True)


def ensemble_scores(frames: list[pd.DataFrame], weights: list[float] | None = None, *, average: str) -> dict:
    clips, probabilities = average_probabilities(frames, weights, average=average)
    y_true = clips["true"].map(LABEL_INDEX).to_numpy()
    rows = []
    for fold in sorted(clips["fold"].unique()):
        mask = (clips["fold"] == fold).to_numpy()
        rows.append(fold_row(int(fold), scores(y_true[mask], probabilities[mask].argmax(axis=1), list(EMOTIONS)),
                             sorted(int(a) for a in clips.loc[mask, "actor"].unique())))
    return {"folds": rows, **summarise(rows)}


def ensemble_curve(frames: list[pd.DataFrame], *, average: str) -> list[dict]:
    """Per ensemble size ``k`` (1 to ``len(frames)``): the number of ``k``-member subsets of
    ``frames`` and the mean, lowest and highest of their mean UA over the folds."""
    curve = []
    for k in range(1, len(frames) + 1):
        uas = [mean_ua([frames[i] for i in subset], average=average) for subset in combinations(range(len(frames)), k)]
        curve.append({"members": k, "subsets": len(uas), "mean_ua": float(np.mean(uas)),
                      "min_ua": float(min(uas)), "max_ua": float(max(uas))})
    return curve


def mean_ua(frames: list[pd.DataFrame], *, average: str) -> float:
    """The mean over the folds of the ensemble's UA, from the folds' own UAs (the summary's mean is
    rounded to 2 decimals)."""
    return float(np.mean([row["ua"] for row in ensemble_scores(frames, average=average)["folds"]]))


def draw_scores(kinds: list[tuple[int, list[str]]], runs: dict[str, pd.DataFrame], *,
                fresh: set[str] = frozenset()) -> dict:
    """Every ensemble made of ``k`` runs of each kind ``(k, run names)`` (the names keys of
    ``runs``), scored with its members' probabilities and with their logits averaged; with
    ``fresh``, only the draws that hold one of those runs. The mean, lowest and highest mean UA
    over the draws each way, their mean difference (logits - probabilities) and the share of
    draws where logits scored higher and lower."""
    draws = [sum(choice, ()) for choice in product(*(combinations(names, k) for k, names in kinds))]
    if fresh:
        draws = [draw for draw in draws if fresh & set(draw)]
    if not draws:
        raise ValueError("no draw to score: every kind needs at least K runs, and --fresh runs among them")
    uas = {average: np.array([mean_ua([runs[name] for name in draw], average=average) for draw in draws])
           for average in AVERAGES}
    difference = uas["logits"] - uas["probabilities"]
    return {"draws": len(draws),
            **{average: {"mean_ua": float(ua.mean()), "min_ua": float(ua.min()), "max_ua": float(ua.max())}
               for average, ua in uas.items()},
            "logits_minus_probabilities": float(difference.mean()),
            "logits_higher": float(np.mean(difference > 0)), "logits_lower": float(np.mean(difference < 0))}


def merge_reports(report_dirs: list[Path]) -> tuple[dict, pd.DataFrame]:
    """The metrics and predictions of one ensemble made of the members of several reports.

    Each report's probabilities weigh as many members as it trained, joined as the reports'
    ``train.average`` joins members. Refused unless the reports
    ran the same folds, settings (apart from ``train.ensemble`` and ``seed``) and Keras backend,
    and their member seeds follow on from each other without a gap or an overlap, and have no
    temporal members (``train.temporal_members``), whose seeds start again at ``seed``.
    """
    runs = sorted(([json.loads((Path(d) / "metrics.json").read_text()), Path(d)] for d in report_dirs),
                  key=lambda run: run[0]["config"]["seed"])
    # as each report ran: settings added since take the value they had before they existed
    configs = [config_from_record(metrics["config"]).to_dict() for metrics, _ in runs]
    members = [config["train"]["ensemble"] for config in configs]
    next_seed = configs[0]["seed"]
    for (metrics, directory), config, count in zip(runs, configs, members):
        if metrics.get("evaluated_on") != "test" or len(metrics["folds"]) != 6:
            raise ValueError(f"{directory}: not a 6-fold test benchmark report")
        if config["seed"] != next_seed:
            raise ValueError(f"{directory}: its members start at seed {config['seed']}, not {next_seed}: "
                             "the merged members must be seeds that follow on from each other")
        if config["train"]["temporal_members"]:
            raise ValueError(f"{directory}: has train.temporal_members={config['train']['temporal_members']}: "
                             "--merge joins runs of 2-D members only, whose seeds follow on")
        next_seed += count
        config["train"]["ensemble"] = config["seed"] = None
    backends = [report_backend(metrics) for metrics, _ in runs]
    for (_, directory), config, backend in zip(runs[1:], configs[1:], backends[1:]):
        if None not in (backend, backends[0]) and backend != backends[0]:
            raise ValueError(f"{directory}: trained with Keras on {backend}, {runs[0][1]} on {backends[0]}: "
                             "one run trains all its members on one backend")
        if config != configs[0]:
            differing = sorted(k for k in config if config[k] != configs[0][k])
            raise ValueError(f"{directory}: other settings than {runs[0][1]} ({', '.join(differing)})")
    # joined as the members of one run are: the weighted geometric mean of the reports' softmax
    # outputs is the softmax of the mean of all their members' logits
    clips, probabilities = average_probabilities(
        [pd.read_csv(directory / "predictions.csv") for _, directory in runs], weights=members,
        average=configs[0]["train"]["average"])
    # rounded as cv's predictions.csv is, so the file's argmax is the prediction scored
    probabilities = probabilities.round(6)
    predictions = clips.assign(predicted=[EMOTIONS[i] for i in probabilities.argmax(axis=1)])
    predictions["correct"] = predictions["true"] == predictions["predicted"]
    predictions[PROBABILITY_COLUMNS] = probabilities
    scored = ensemble_scores([predictions], average="probabilities")
    fold_runs = [{row["fold"]: row for row in metrics["folds"]} for metrics, _ in runs]
    for row in scored["folds"]:
        row["epochs"] = sum(folds[row["fold"]]["epochs"] for folds in fold_runs)
        row["seconds"] = round(sum(folds[row["fold"]]["seconds"] for folds in fold_runs), 1)
    base = runs[0][0]
    config = config_from_record(base["config"]).to_dict()
    config["train"]["ensemble"] = sum(members)
    result = {
        "protocol": base["protocol"], "evaluated_on": "test", **scored,
        "wall_seconds": round(sum(metrics["wall_seconds"] for metrics, _ in runs), 1), "jobs": base["jobs"],
        "config": config,
        "hardware": " / ".join(dict.fromkeys(metrics["hardware"] for metrics, _ in runs)),
        **({"backend": backends[0]} if len(set(backends)) == 1 and backends[0] else {}),
        "commit": "+".join(dict.fromkeys(metrics["commit"] for metrics, _ in runs)),
        "date": max(metrics["date"] for metrics, _ in runs),
        "finished": max(metrics.get("finished", "") for metrics, _ in runs),
        "merged_from": [{"report": directory.name, "seed": metrics["config"]["seed"], "members": count}
                        for (metrics, directory), count in zip(runs, members)],
    }
    return result, predictions


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("name", nargs="?")
    parser.add_argument("predictions", nargs="*")
    parser.add_argument("--evaluated-on", default="val")
    parser.add_argument("--round", default="")
    parser.add_argument("--log", help="append the result to this JSON-lines log")
    parser.add_argument("--merge", nargs="+", metavar="REPORT_DIR",
                        help="join test benchmark reports into one ensemble's report")
    parser.add_argument("--curve", action="store_true",
                        help="score every subset of the prediction files: mean UA by ensemble size")
    parser.add_argument("--out", help="with --merge: the report folder (default reports/benchmarks/<date>-<commits>)")
    parser.add_argument("--draw", nargs="+", action="append", metavar="K RUN",
                        help="K, then the runs of one kind of member: every draw of K of them (repeat per kind)")
    parser.add_argument("--fresh", nargs="+", default=[], metavar="RUN",
                        help="with --draw: only the draws that hold one of these runs")
    parser.add_argument("--average", choices=AVERAGES,
                        help="how the runs join, as train.average joins members (default: the default "
                             f"config's, {TrainConfig().average}); --merge joins as the reports' settings say")
    args = parser.parse_args()
    if args.merge and args.average:
        parser.error("--merge joins the reports as their own train.average says: no --average")
    if args.merge and (args.name or args.predictions or args.log):
        parser.error("--merge writes a report folder, not a log row: no NAME, prediction files or --log")
    if args.out and not args.merge:
        parser.error("--out goes with --merge")
    if args.draw:
        return score_draws(parser, args)
    if args.fresh:
        parser.error("--fresh goes with --draw")
    args.average = args.average or TrainConfig().average
    if args.curve:
        files = [f for f in (args.name, *args.predictions) if f]
        if len(files) < 2 or args.merge or args.log:
            parser.error("--curve takes two or more runs' prediction files (a run's halves joined by a comma), "
                         "and no --merge or --log")
        if len(files) > 12:
            parser.error(f"--curve: {len(files)} files make {2 ** len(files) - 1} ensembles to score; 12 at most")
        print("members  subsets  mean UA  lowest  highest")
        for row in ensemble_curve([read_run(p) for p in files], average=args.average):
            print(f"{row['members']:>7}  {row['subsets']:>7}  {row['mean_ua']:>7.2f}  {row['min_ua']:>6.2f}  "
                  f"{row['max_ua']:>7.2f}")
        return 0
    if args.merge:
        from emotion_cnn.cv import write_report

        result, predictions = merge_reports([Path(d) for d in args.merge])
        out = write_report(result, predictions, Path(args.out) if args.out else None)
        print(f"RESULT merged ({result['config']['train']['ensemble']} members): test UA "
              f"{result['mean']['ua']:.1f} ± {result['std']['ua']:.1f} {[round(r['ua'], 1) for r in result['folds']]} "
              f"-> {out}")
        return 0
    if not args.name or not args.predictions:
        parser.error("give NAME and one or more prediction files, or NAME --draw K RUN ..., "
                     "or --curve RUN RUN ..., or --merge REPORT_DIR ...")
    result = ensemble_scores([read_run(p) for p in args.predictions], average=args.average)
    print(f"RESULT {args.name}: {args.evaluated_on} UA {result['mean']['ua']:.1f} ± {result['std']['ua']:.1f} "
          f"{[round(r['ua'], 1) for r in result['folds']]}")
    log_result(args, {"ensemble_of": [run_name(p) for p in args.predictions], "average": args.average}, result)
    return 0


def run_name(spec: str) -> str:
    """A run's name in the log: its (first) file's stem."""
    return Path(spec.split(",")[0]).stem


def log_result(args: argparse.Namespace, overrides: dict, result: dict) -> None:
    """Append the result to ``--log``, if given, as one JSON line."""
    record = {"name": args.name, "overrides": overrides, "evaluated_on": args.evaluated_on, **result}
    if args.round:
        record["round"] = args.round
    if args.log:
        with open(args.log, "a") as log:
            log.write(json.dumps(record) + "\n")


def score_draws(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if not args.name or args.predictions or args.merge or args.curve or args.average:
        parser.error("--draw takes NAME and no other prediction files, --merge, --curve or --average "
                     "(it scores both averages)")
    kinds = []
    for draw in args.draw:
        if not draw[0].isdigit() or int(draw[0]) < 1 or len(draw) - 1 < int(draw[0]):
            parser.error(f"--draw {' '.join(draw)}: give K (1 or more), then at least K runs")
        kinds.append((int(draw[0]), draw[1:]))
    names = [name for _, kind in kinds for name in kind]
    if len({run_name(name) for name in names}) < len(names):
        parser.error("--draw: each run once, in one kind, and no two runs of the same file name (the log "
                     "names runs by it)")
    not_drawn = [name for name in args.fresh if name not in names]
    if not_drawn:
        parser.error(f"--fresh {' '.join(not_drawn)}: not among the --draw runs (give each exactly as given "
                     "to --draw, a run's halves joined by a comma)")
    result = draw_scores(kinds, {name: read_run(name) for name in names}, fresh=set(args.fresh))
    print(f"RESULT {args.name}: {result['draws']} draws, {args.evaluated_on} UA")
    for average in AVERAGES:
        print(f"  {average:>13}: mean {result[average]['mean_ua']:.2f} (lowest {result[average]['min_ua']:.2f}, "
              f"highest {result[average]['max_ua']:.2f})")
    print(f"  logits - probabilities: {result['logits_minus_probabilities']:+.2f}; logits higher in "
          f"{100 * result['logits_higher']:.0f} % of the draws, lower in {100 * result['logits_lower']:.0f} %")
    log_result(args, {"draws_of": [[k, [run_name(p) for p in kind]] for k, kind in kinds],
                      **({"fresh": [run_name(p) for p in args.fresh]} if args.fresh else {})}, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
