import json
from datetime import datetime

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset, small_config

from emotion_cnn.cv import (cross_validate, fold_split, load_features, results_markdown, speakers_markdown,
                             write_report)
from emotion_cnn.evaluate import speaker_breakdown
from emotion_cnn.splits import EMOBOX_TEST_ACTORS, EMOBOX_VAL_ACTORS


@pytest.fixture
def all_actors_dataset(tmp_path, rng):
    """24 actors x 8 emotions x 1 take: every EmoBox fold is populated."""
    return make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), seconds=1.0)


def test_fold_splits_follow_the_published_table(all_actors_dataset):
    cfg = small_config(all_actors_dataset, split={"protocol": "emobox", "fold": 1})
    X, meta = load_features(cfg)
    assert len(X) == len(meta) == 24 * 8
    for fold in range(1, 7):
        cfg.split.fold = fold
        split = fold_split(X, meta, cfg, name=f"fold{fold}")
        assert split.info["actors"]["test"] == sorted(EMOBOX_TEST_ACTORS[fold])
        assert split.info["actors"]["val"] == sorted(EMOBOX_VAL_ACTORS[fold])
        assert len(split.y_test) == 4 * 8 and len(split.y_train) == 16 * 8
        # rows really are those actors' clips: compare with the metadata order
        test_rows = meta.index[meta["actor"].isin(EMOBOX_TEST_ACTORS[fold])]
        np.testing.assert_array_equal(split.X_test, X[test_rows])


def test_cross_validation_writes_the_report(all_actors_dataset, project_root):
    cfg = small_config(all_actors_dataset, split={"protocol": "emobox"}, train={"epochs": 1})
    result = cross_validate(cfg, folds=[2, 5])
    assert [r["fold"] for r in result["folds"]] == [2, 5]
    assert 0 <= result["mean"]["ua"] <= 100
    reports = list((project_root / "reports" / "benchmarks").iterdir())
    assert len(reports) == 1 and reports[0].name.endswith("-folds2_5")  # a partial run never poses as the full one
    saved = json.loads((reports[0] / "metrics.json").read_text())
    assert np.array(saved["pooled_confusion"]).sum() == 2 * 4 * 8
    assert datetime.fromisoformat(saved["finished"]).tzinfo is not None  # orders two reports of one day
    assert saved["backend"] == keras.backend.backend()  # the saved model's sidecar picks its figure by it
    assert (reports[0] / "confusion_pooled.png").is_file() and (reports[0] / "ua_per_actor.png").is_file()
    assert sorted(saved["per_speaker"]["actor"]) == ["10", "12", "14", "15", "16", "18", "2", "4"]  # JSON keys
    assert "| 2 | 4, 10, 12, 14 |" in (reports[0] / "results.md").read_text()
    assert "UA % per test actor, hardest first" in (reports[0] / "results.md").read_text()
    assert not (project_root / "splits" / "LATEST").exists()  # `train` keeps using the user's split
    # the same commit benchmarked again that day: a folder of its own, the first report kept
    first = (reports[0] / "metrics.json").read_text()
    again = write_report({**saved, "finished": "later"}, pd.read_csv(reports[0] / "predictions.csv"))
    assert again == reports[0].with_name(reports[0].name + "-2")
    assert (reports[0] / "metrics.json").read_text() == first
    assert json.loads((again / "metrics.json").read_text())["finished"] == "later"


def test_validation_scoring_touches_no_test_actor(all_actors_dataset, project_root, tmp_path):
    import pandas as pd

    cfg = small_config(all_actors_dataset, split={"protocol": "emobox"}, train={"epochs": 1, "train_on_val": False})
    result = cross_validate(cfg, folds=[3], evaluate_on="val", predictions_csv=tmp_path / "val.csv",
                            models_dir=tmp_path / "models")
    assert result["folds"][0]["actors"] == sorted(EMOBOX_VAL_ACTORS[3])
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["fold3.keras"]
    assert not (project_root / "reports").exists()
    saved = pd.read_csv(tmp_path / "val.csv")
    assert sorted(saved["actor"].unique()) == sorted(EMOBOX_VAL_ACTORS[3]) and set(saved["fold"]) == {3}
    np.testing.assert_allclose(saved.filter(regex="^p_").sum(axis=1), 1.0, atol=1e-4)


def test_validation_actors_trained_on_cannot_be_scored(all_actors_dataset, project_root):
    cfg = small_config(all_actors_dataset, split={"protocol": "emobox"},
                       train={"epochs": 1, "train_on_val": True, "restore_best": False, "schedule": "cosine"})
    with pytest.raises(ValueError, match="train_on_val"):
        cross_validate(cfg, folds=[3], evaluate_on="val")


def test_folds_in_parallel_processes_report_in_fold_order(all_actors_dataset, project_root):
    cfg = small_config(all_actors_dataset, split={"protocol": "emobox"}, train={"epochs": 1})
    result = cross_validate(cfg, folds=[4, 1, 6], jobs=2)
    assert [r["fold"] for r in result["folds"]] == [4, 1, 6]
    assert [r["actors"] for r in result["folds"]] == [sorted(EMOBOX_TEST_ACTORS[f]) for f in (4, 1, 6)]
    assert result["jobs"] == 2 and all(r["seconds"] > 0 for r in result["folds"])
    report = project_root / "reports" / "benchmarks"
    saved = json.loads(next(report.iterdir()).joinpath("metrics.json").read_text())
    assert np.array(saved["pooled_confusion"]).sum() == 3 * 4 * 8


def test_speaker_breakdown_scores_each_actor_gender_and_intensity_by_ua():
    rows = [  # actor, gender, intensity, true, predicted
        (1, "male", "normal", "neutral", "neutral"), (1, "male", "normal", "sad", "calm"),
        (1, "male", "strong", "sad", "sad"), (1, "male", "strong", "sad", "sad"),
        (2, "female", "normal", "neutral", "sad"), (2, "female", "strong", "sad", "sad"),
    ]
    predictions = pd.DataFrame(rows, columns=["actor", "gender", "intensity", "true", "predicted"])
    breakdown = speaker_breakdown(predictions)
    # actor 1: neutral 1/1, sad 2/3 -> (1 + 2/3) / 2; actor 2: neutral 0/1, sad 1/1 -> 1/2
    assert breakdown["actor"] == {1: 83.3, 2: 50.0}
    assert breakdown["gender"] == {"female": 50.0, "male": 83.3}
    # normal: neutral 1/2, sad 0/1 -> 25; strong: sad only, 3/3 (the calm it never holds is not a class of it)
    assert breakdown["intensity"] == {"normal": 25.0, "strong": 100.0}
    text = speakers_markdown(breakdown)
    assert text.startswith("UA % per test actor, hardest first (median 66.7, 50.0 to 83.3): 2: 50.0, 1: 83.3.")
    assert "female 50.0; male 83.3; normal 25.0; strong 100.0" in text
    # an older predictions file without genders or intensities still gets its actors
    actors_only = speaker_breakdown(predictions.drop(columns=["gender", "intensity"]))
    assert actors_only == {"actor": {1: 83.3, 2: 50.0}}
    assert speakers_markdown(actors_only).endswith("2: 50.0, 1: 83.3.")


def test_results_markdown_lists_published_baselines():
    result = {"date": "2026-01-01", "commit": "abc", "hardware": "cpu", "wall_seconds": 60,
              "folds": [{"fold": 1, "actors": [1, 11, 20, 21], "ua": 50.0, "wa": 51.0,
                         "macro_f1": 49.0, "epochs": 3, "seconds": 20}],
              "mean": {"ua": 50.0, "wa": 51.0, "macro_f1": 49.0},
              "std": {"ua": 0.0, "wa": 0.0, "macro_f1": 0.0}}
    text = results_markdown(result)
    assert "whisper-large-v3: 75.3" in text and "1 folds" in text


def test_hardware_names_the_gpu_the_backend_computes_on(monkeypatch):
    import sys
    from types import ModuleType, SimpleNamespace

    from emotion_cnn import cv

    fake_jax = ModuleType("jax")
    fake_jax.devices = lambda: [SimpleNamespace(platform="gpu", device_kind="NVIDIA H200")]
    monkeypatch.setitem(sys.modules, "jax", fake_jax)
    monkeypatch.setattr("keras.backend.backend", lambda: "jax")
    assert cv.hardware().startswith("NVIDIA H200 with ") and cv.hardware().endswith("(jax)")
    fake_jax.devices = lambda: [SimpleNamespace(platform="cpu", device_kind="cpu")]
    assert not cv.hardware().startswith("cpu with")
