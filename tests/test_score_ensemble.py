import numpy as np
import pandas as pd
import pytest
from conftest import benchmark_script

from emotion_cnn.config import EMOTIONS


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
    alone = score_ensemble.ensemble_scores([predictions(a, true, folds)])
    assert alone["mean"]["wa"] == 50.0
    # the second file in another row order: clips are matched by fold and id, not position
    result = score_ensemble.ensemble_scores([predictions(a, true, folds),
                                             predictions(b, true, folds).iloc[::-1]])
    assert [row["fold"] for row in result["folds"]] == [1, 2]
    assert [row["actors"] for row in result["folds"]] == [[1], [2]]
    assert result["mean"]["wa"] == 100.0 and result["std"]["wa"] == 0.0


def test_ensemble_refuses_files_of_different_clips(score_ensemble):
    probabilities = np.full((2, 8), 1 / 8)
    one = predictions(probabilities, ["neutral", "calm"], [1, 1])
    other = one.assign(clip_id=["clip0", "clip9"])
    with pytest.raises(ValueError, match="same clips"):
        score_ensemble.ensemble_scores([one, other])
