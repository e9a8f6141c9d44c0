import pytest
from conftest import benchmark_script, make_dataset, small_config

from emotion_cnn.cv import cross_validate, load_features
from emotion_cnn.splits import EMOBOX_VAL_ACTORS


@pytest.fixture(scope="module")
def score_time_shifts():
    return benchmark_script("score_time_shifts")


def test_saved_fold_models_are_scored_again_on_their_validation_actors(
        score_time_shifts, tmp_path, rng, project_root):
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), seconds=1.0)
    cfg = small_config(data, split={"protocol": "emobox"}, train={"epochs": 2, "train_on_val": False})
    models = tmp_path / "models"
    trained = cross_validate(cfg, folds=[4], evaluate_on="val", models_dir=models)
    X, meta = load_features(cfg)
    results = score_time_shifts.score_shift_sets(X, meta, models, [[0], [-3, 0, 3]])
    unshifted, shifted = results["[0]"], results["[-3, 0, 3]"]
    assert unshifted["folds"][0]["ua"] == pytest.approx(trained["folds"][0]["ua"])
    assert [r["actors"] for r in shifted["folds"]] == [sorted(EMOBOX_VAL_ACTORS[4])]
    with pytest.raises(FileNotFoundError, match="no fold"):
        score_time_shifts.score_shift_sets(X, meta, tmp_path, [[0]])
