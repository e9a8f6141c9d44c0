from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import benchmark_script, make_dataset, small_config

from emotion_cnn import cv
from emotion_cnn.splits import EMOBOX_TEST_ACTORS, EMOBOX_VAL_ACTORS


@pytest.fixture(scope="module")
def search():
    return benchmark_script("search")


def test_learning_curve_trains_on_a_gender_balanced_subset_and_scores_validation_actors(
        search, tmp_path, rng, monkeypatch):
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), seconds=1.0)
    cfg = small_config(data, split={"protocol": "emobox"})
    X, meta = cv.load_features(cfg)
    trained = []

    def fake_train_and_score(cfg, split, *, on):
        trained.append((split, on))
        metrics = {"ua": 0.5, "wa": 0.5, "macro_f1": 0.5}
        return SimpleNamespace(metrics=metrics), pd.DataFrame({"epoch": [1]})

    monkeypatch.setattr(cv, "train_and_score", fake_train_and_score)
    result = search.score_fewer_train_actors(cfg, X, meta, 6, [2, 5])
    assert [row["fold"] for row in result["folds"]] == [2, 5]
    for (split, on), fold, row in zip(trained, (2, 5), result["folds"]):
        kept = split.info["actors"]["train"]
        assert on == "val" and row["actors"] == sorted(EMOBOX_VAL_ACTORS[fold])
        assert kept == row["train_actors"] and len(kept) == 6
        assert sum(a % 2 for a in kept) == 3  # 3 male (odd), 3 female (even)
        assert not set(kept) & (set(EMOBOX_TEST_ACTORS[fold]) | set(EMOBOX_VAL_ACTORS[fold]))
        assert len(split.y_train) == 6 * 8 and len(split.y_val) == 4 * 8
    again = search.score_fewer_train_actors(cfg, X, meta, 6, [2, 5])
    assert [r["train_actors"] for r in again["folds"]] == [r["train_actors"] for r in result["folds"]]
