import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import benchmark_script

from emotion_cnn.config import EMOTIONS, Config, config_from_dict, config_from_record
from emotion_cnn.cv import results_markdown


@pytest.fixture(scope="module")
def score_ensemble():
    return benchmark_script("score_ensemble")


def predictions(probabilities: np.ndarray, true: list[str], folds: list[int]) -> pd.DataFrame:
    frame = pd.DataFrame({"clip_id": [f"clip{i}" for i in range(len(true))], "actor": folds,
                          "true": true, "fold": folds})
    for j, label in enumerate(EMOTIONS):
        frame[f"p_{label}"] = probabilities[:, j]
    return frame


def test_ensemble_averages_probabilities_per_clip_and_scores_each_fold(score_ensemble):
    true = ["neutral", "calm", "neutral", "calm"]
    folds = [1, 1, 2, 2]
    a, b = np.zeros((4, 8)), np.zeros((4, 8))
    # each run alone gets one clip of each fold wrong; their average gets every clip right
    a[:, 0], a[:, 1] = [0.9, 0.6, 0.9, 0.6], [0.1, 0.4, 0.1, 0.4]
    b[:, 0], b[:, 1] = [0.4, 0.1, 0.4, 0.1], [0.6, 0.9, 0.6, 0.9]
    alone = score_ensemble.ensemble_scores([predictions(a, true, folds)], average="probabilities")
    assert alone["mean"]["wa"] == 50.0
    # the second file in another row order: clips are matched by fold and id, not position
    result = score_ensemble.ensemble_scores([predictions(a, true, folds),
                                             predictions(b, true, folds).iloc[::-1]], average="probabilities")
    assert [row["fold"] for row in result["folds"]] == [1, 2]
    assert [row["actors"] for row in result["folds"]] == [[1], [2]]
    assert result["mean"]["wa"] == 100.0 and result["std"]["wa"] == 0.0


def test_logit_average_is_the_normalised_geometric_mean_where_a_sure_member_vetoes(score_ensemble):
    true, folds = ["neutral", "calm"], [1, 1]
    a, b = np.zeros((2, 8)), np.zeros((2, 8))
    # clip 0: a is sure of calm; b finds calm unlikely and is split between neutral and sad
    # (0 as saved: below 5e-7). Mean: calm 0.455, neutral 0.295. Geometric: neutral
    # sqrt(0.1 * 0.49) against calm sqrt(0.9 * 0.01), sad all but 0. Clip 1: both say calm
    a[0, 0], a[0, 1] = 0.1, 0.9
    b[0, 0], b[0, 1], b[0, 3] = 0.49, 0.01, 0.5
    a[1, 1] = b[1, 1] = 1.0
    runs = [predictions(a, true, folds), predictions(b, true, folds)]
    assert score_ensemble.ensemble_scores(runs, average="probabilities")["mean"]["wa"] == 50.0
    assert score_ensemble.ensemble_scores(runs, average="logits")["mean"]["wa"] == 100.0
    _, joined = score_ensemble.average_probabilities(runs, [2, 1], average="logits")
    floor = 5e-7
    weighted = np.array([0.1 ** 2 * 0.49, 0.9 ** 2 * 0.01, floor ** 3, floor ** 2 * 0.5, *[floor ** 3] * 4]) ** (1 / 3)
    np.testing.assert_allclose(joined[0], weighted / weighted.sum(), rtol=1e-9)
    with pytest.raises(ValueError, match="average must be one of logits, probabilities, not 'mode'"):
        score_ensemble.ensemble_scores(runs, average="mode")


def test_ensemble_refuses_files_of_different_clips(score_ensemble):
    probabilities = np.full((2, 8), 1 / 8)
    one = predictions(probabilities, ["neutral", "calm"], [1, 1])
    other = one.assign(clip_id=["clip0", "clip9"])
    with pytest.raises(ValueError, match="same clips"):
        score_ensemble.ensemble_scores([one, other], average="probabilities")


def test_a_run_split_over_two_files_scores_as_one(score_ensemble, rng, tmp_path, monkeypatch, capsys):
    true = [EMOTIONS[i % 8] for i in range(24)]
    folds = [1] * 8 + [2] * 8 + [3] * 8
    runs = [predictions(rng.dirichlet(np.ones(8), size=24), true, folds) for _ in range(2)]
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    halves = []
    for k, run in enumerate(runs):  # folds 1 and 2 in one process's file, fold 3 in the other's
        run[run["fold"] < 3].to_csv(tmp_path / "a" / f"seed{k}.csv", index=False)
        run[run["fold"] == 3].to_csv(tmp_path / "b" / f"seed{k}.csv", index=False)
        halves.append(f"{tmp_path / 'a' / f'seed{k}.csv'},{tmp_path / 'b' / f'seed{k}.csv'}")
    log = tmp_path / "log.jsonl"
    monkeypatch.setattr("sys.argv", ["score_ensemble.py", "pair", *halves, "--log", str(log), "--average", "logits"])
    assert score_ensemble.main() == 0
    record = json.loads(log.read_text())
    assert record["overrides"] == {"ensemble_of": ["seed0", "seed1"], "average": "logits"}
    assert record["folds"] == score_ensemble.ensemble_scores(runs, average="logits")["folds"]
    assert [row["fold"] for row in record["folds"]] == [1, 2, 3]
    with pytest.raises(ValueError, match="same folds"):
        score_ensemble.read_run(f"{tmp_path / 'a' / 'seed0.csv'},{tmp_path / 'a' / 'seed1.csv'}")


def write_report(directory, probabilities: np.ndarray, true: list[str], folds: list[int], *,
                 seed: int, members: int, hardware: str = "cpu", **settings) -> None:
    """A test benchmark report of ``members`` models from ``seed``: metrics.json and predictions.csv."""
    config = config_from_dict({**Config().to_dict(), "seed": seed}).to_dict()
    config["train"]["ensemble"], config["train"]["temporal_members"] = members, 0
    for section, values in settings.items():
        config[section].update(values)
    directory.mkdir(parents=True)
    rows = [{"fold": fold, "ua": 0.0, "wa": 0.0, "macro_f1": 0.0, "actors": [fold],
             "epochs": 60 * members, "seconds": 100.0 * members} for fold in range(1, 7)]
    (directory / "metrics.json").write_text(json.dumps({
        "protocol": "emobox", "evaluated_on": "test", "folds": rows, "wall_seconds": 300.0 * members,
        "jobs": 2, "config": config, "hardware": hardware, "commit": f"c{seed}", "date": "2026-12-03",
        "finished": f"2026-12-03T1{members}:00:00+00:00"}))
    predictions(probabilities, true, folds).to_csv(directory / "predictions.csv", index=False)


GEOMETRIC_NEUTRAL = (0.8 ** 2 * 0.1) ** (1 / 3)
GEOMETRIC_CALM = (0.2 ** 2 * 0.9) ** (1 / 3)


@pytest.mark.parametrize("average, neutral", [
    ("probabilities", (2 * 0.8 + 0.1) / 3),
    # the weighted geometric mean; the six classes both gave 0 stay at the floor, 5e-7
    ("logits", GEOMETRIC_NEUTRAL / (GEOMETRIC_NEUTRAL + GEOMETRIC_CALM + 6 * 5e-7)),
])
def test_merge_weighs_each_report_by_its_members_and_writes_the_ensembles_config(score_ensemble, tmp_path,
                                                                                  average, neutral):
    true = ["neutral", "calm"] * 6
    folds = [fold for fold in range(1, 7) for _ in range(2)]
    two, one = np.zeros((12, 8)), np.zeros((12, 8))
    # 2 members say neutral (0.8 : 0.2), the third says calm (0.1 : 0.9): weighed 2 : 1 neutral
    # wins (probabilities 0.567 : 0.433, logits 0.548 : 0.452); if each report counted as one
    # member calm would (0.45 : 0.55 and 0.40 : 0.60)
    two[:, 0], two[:, 1] = 0.8, 0.2
    one[:, 0], one[:, 1] = 0.1, 0.9
    joined_by = {"train": {"average": average}}
    write_report(tmp_path / "members-42-43", two, true, folds, seed=42, members=2, **joined_by)
    write_report(tmp_path / "member-44", one, true, folds, seed=44, members=1, **joined_by)
    result, merged = score_ensemble.merge_reports([tmp_path / "member-44", tmp_path / "members-42-43"])
    assert list(merged["predicted"]) == ["neutral"] * 12
    np.testing.assert_allclose(merged["p_neutral"], neutral, atol=1e-6)
    assert result["mean"]["wa"] == 50.0 and [row["fold"] for row in result["folds"]] == list(range(1, 7))
    assert result["config"]["seed"] == 42 and result["config"]["train"]["ensemble"] == 3
    assert result["config"]["train"]["average"] == average
    assert result["folds"][0]["epochs"] == 180 and result["folds"][0]["seconds"] == 300.0
    assert result["wall_seconds"] == 900.0 and result["commit"] == "c42+c44"
    assert result["finished"] == "2026-12-03T12:00:00+00:00"
    assert [m["members"] for m in result["merged_from"]] == [2, 1]
    assert "members-42-43 (2 members from seed 42); member-44 (1 member from seed 44)" in results_markdown(result)
    assert config_from_record(result["config"]).train.ensemble == 3
    assert "backend" not in result  # "cpu" names none


def test_merge_keeps_the_backend_its_reports_share_and_refuses_two(score_ensemble, tmp_path):
    probabilities = np.full((12, 8), 1 / 8)
    true, folds = ["neutral"] * 12, [fold for fold in range(1, 7) for _ in range(2)]
    write_report(tmp_path / "a", probabilities, true, folds, seed=42, members=2,
                 hardware="AMD EPYC, 2 cores, keras 3.15.1 (tensorflow)")
    write_report(tmp_path / "b", probabilities, true, folds, seed=44, members=1,
                 hardware="AMD EPYC, 2 cores, keras 3.15.1 (tensorflow)")
    write_report(tmp_path / "c", probabilities, true, folds, seed=44, members=1,
                 hardware="NVIDIA H200 with Intel Xeon, 16 cores, keras 3.15.1 (jax)")
    result, _ = score_ensemble.merge_reports([tmp_path / "a", tmp_path / "b"])
    assert result["backend"] == "tensorflow"
    with pytest.raises(ValueError, match="c: trained with Keras on jax, .*a on tensorflow"):
        score_ensemble.merge_reports([tmp_path / "a", tmp_path / "c"])


@pytest.mark.parametrize("seed, members, settings, message", [
    (45, 1, {}, "start at seed 45, not 44"),
    (43, 1, {}, "start at seed 43, not 44"),
    (44, 1, {"model": {"recurrent_units": 32}}, "other settings.*model"),
    (44, 1, {"train": {"temporal_members": 1}}, "b: has train.temporal_members=1"),
])
def test_merge_refuses_members_that_a_single_run_would_not_have_trained(score_ensemble, tmp_path, seed,
                                                                        members, settings, message):
    probabilities = np.full((12, 8), 1 / 8)
    true, folds = ["neutral"] * 12, [fold for fold in range(1, 7) for _ in range(2)]
    write_report(tmp_path / "a", probabilities, true, folds, seed=42, members=2)
    write_report(tmp_path / "b", probabilities, true, folds, seed=seed, members=members, **settings)
    with pytest.raises(ValueError, match=message):
        score_ensemble.merge_reports([tmp_path / "a", tmp_path / "b"])


def test_merge_refuses_reports_that_all_have_temporal_members(score_ensemble, tmp_path):
    """Their temporal members' seeds start again at each report's seed: not one run's members."""
    probabilities = np.full((12, 8), 1 / 8)
    true, folds = ["neutral"] * 12, [fold for fold in range(1, 7) for _ in range(2)]
    for name, seed, members in (("a", 42, 2), ("b", 44, 1)):
        write_report(tmp_path / name, probabilities, true, folds, seed=seed, members=members,
                     train={"temporal_members": 1})
    with pytest.raises(ValueError, match="a: has train.temporal_members=1"):
        score_ensemble.merge_reports([tmp_path / "a", tmp_path / "b"])


def test_curve_averages_every_subset_of_each_size(score_ensemble, rng):
    true = [EMOTIONS[i % 8] for i in range(16)]
    folds = [1] * 8 + [2] * 8
    frames = [predictions(rng.dirichlet(np.ones(8), size=16), true, folds) for _ in range(4)]
    curve = score_ensemble.ensemble_curve(frames, average="probabilities")
    assert [(row["members"], row["subsets"]) for row in curve] == [(1, 4), (2, 6), (3, 4), (4, 1)]
    singles = [score_ensemble.ensemble_scores([f], average="probabilities")["mean"]["ua"] for f in frames]
    assert curve[0]["mean_ua"] == pytest.approx(np.mean(singles))
    assert (curve[0]["min_ua"], curve[0]["max_ua"]) == (min(singles), max(singles))
    everything = score_ensemble.ensemble_scores(frames, average="probabilities")["mean"]["ua"]
    assert curve[-1]["mean_ua"] == curve[-1]["min_ua"] == curve[-1]["max_ua"] == everything


def test_curve_from_the_command_line(score_ensemble, rng, tmp_path, monkeypatch, capsys):
    true = [EMOTIONS[i % 8] for i in range(16)]
    paths = []
    for k in range(3):
        paths.append(str(tmp_path / f"run{k}.csv"))
        predictions(rng.dirichlet(np.ones(8), size=16), true, [1] * 8 + [2] * 8).to_csv(paths[-1], index=False)
    monkeypatch.setattr("sys.argv", ["score_ensemble.py", "--curve", *paths])
    assert score_ensemble.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["members", "subsets"] and [line.split()[:2] for line in lines[1:]] == [
        ["1", "3"], ["2", "3"], ["3", "1"]]
    for extra in (["--log", str(tmp_path / "log.jsonl")], []):
        monkeypatch.setattr("sys.argv", ["score_ensemble.py", "--curve", *(paths[:1] if not extra else paths), *extra])
        with pytest.raises(SystemExit):
            score_ensemble.main()
        assert "--curve takes two or more" in capsys.readouterr().err
    assert not (tmp_path / "log.jsonl").exists()


def test_draws_score_every_choice_of_k_runs_of_each_kind_both_ways(score_ensemble, rng, tmp_path, monkeypatch,
                                                                    capsys):
    true = [EMOTIONS[i % 8] for i in range(16)]
    folds = [1] * 8 + [2] * 8
    paths = {}
    for name in ("d1", "d2", "d3", "t1", "t2"):
        paths[name] = str(tmp_path / f"{name}.csv")
        predictions(rng.dirichlet(np.full(8, 0.3), size=16), true, folds).to_csv(paths[name], index=False)
    runs = {name: score_ensemble.read_run(path) for name, path in paths.items()}
    result = score_ensemble.draw_scores([(2, ["d1", "d2", "d3"]), (1, ["t1", "t2"])], runs)
    draws = [[a, b, t] for a, b in (("d1", "d2"), ("d1", "d3"), ("d2", "d3")) for t in ("t1", "t2")]
    assert result["draws"] == 6
    uas = {}
    for average in ("probabilities", "logits"):
        uas[average] = np.array([score_ensemble.mean_ua([runs[n] for n in draw], average=average) for draw in draws])
        assert result[average]["mean_ua"] == pytest.approx(uas[average].mean())
        assert (result[average]["min_ua"], result[average]["max_ua"]) == (uas[average].min(), uas[average].max())
    assert not np.array_equal(uas["logits"], uas["probabilities"])  # the two ways differ on these runs
    assert result["logits_minus_probabilities"] == pytest.approx(np.mean(uas["logits"] - uas["probabilities"]))
    assert result["logits_higher"] == np.mean(uas["logits"] > uas["probabilities"])
    assert result["logits_lower"] == np.mean(uas["logits"] < uas["probabilities"])
    fresh = score_ensemble.draw_scores([(2, ["d1", "d2", "d3"]), (1, ["t1", "t2"])], runs, fresh={"d3", "t2"})
    assert fresh["draws"] == 5  # all but d1 + d2 + t1

    log = tmp_path / "log.jsonl"
    monkeypatch.setattr("sys.argv", ["score_ensemble.py", "mix", "--draw", "2", paths["d1"], paths["d2"], paths["d3"],
                                     "--draw", "1", paths["t1"], paths["t2"], "--fresh", paths["t2"],
                                     "--round", "42", "--log", str(log)])
    assert score_ensemble.main() == 0
    record = json.loads(log.read_text())
    assert record["overrides"] == {"draws_of": [[2, ["d1", "d2", "d3"]], [1, ["t1", "t2"]]], "fresh": ["t2"]}
    assert (record["name"], record["evaluated_on"], record["draws"], record["round"]) == ("mix", "val", 3, "42")
    assert "RESULT mix: 3 draws" in capsys.readouterr().out
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "d1.csv").write_text(Path(paths["d1"]).read_text())
    for bad, message in (
            (["x", "--draw", "3", paths["d1"], paths["d2"]], "give K \\(1 or more\\), then at least K runs"),
            (["x", "--draw", "0", paths["d1"]], "give K"),
            (["x", "--draw", "two", paths["d1"], paths["d2"]], "give K"),
            (["x", "--draw", "1", paths["d1"], "--fresh", paths["t1"]], f"--fresh {paths['t1']}: not among"),
            (["x", "--draw", "1", paths["d1"], "--draw", "1", paths["d1"]], "each run once"),
            (["x", "--draw", "1", paths["d1"], str(tmp_path / "copy" / "d1.csv")], "same file name"),
            (["x", "--draw", "1", paths["d1"], "--average", "logits"], "scores both averages"),
            (["x", paths["d2"], "--draw", "1", paths["d1"]], "no other prediction files"),
            (["x", "--draw", "1", paths["d1"], "--curve"], "--curve"),
            (["x", paths["d1"], "--fresh", paths["d1"]], "--fresh goes with --draw"),
            (["x", paths["d1"], "--out", str(tmp_path)], "--out goes with --merge"),
            (["--merge", str(tmp_path), "--average", "logits"], "no --average"),
            (["x", "--merge", str(tmp_path)], "not a log row"),
            (["--merge", str(tmp_path), "--log", str(log)], "not a log row")):
        monkeypatch.setattr("sys.argv", ["score_ensemble.py", *bad])
        with pytest.raises(SystemExit):
            score_ensemble.main()
        assert re.search(message, capsys.readouterr().err), bad
