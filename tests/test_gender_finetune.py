import numpy as np
import pytest
from conftest import benchmark_script, make_dataset

from emotion_cnn import cv
from emotion_cnn.config import config_from_dict
from emotion_cnn.model import adapt_normalization, build_model
from emotion_cnn.splits import EMOBOX_VAL_ACTORS


@pytest.fixture
def exported(tmp_path, rng, monkeypatch):
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), emotions=(1, 5),
                        seconds=1.0)
    monkeypatch.setenv("RAVDESS_DIR", str(data))
    monkeypatch.setattr("sys.argv", ["export_features.py", str(tmp_path / "f.npz")])
    assert benchmark_script("export_features").main() == 0
    # no dropout: its random state runs on across fine-tunings, so a repeat would differ
    cfg = config_from_dict({"seed": 1, "model": {"filters": [4, 8], "recurrent_units": 0, "dropout": 0.0},
                            "train": {"ensemble": 1, "temporal_members": 0, "train_on_val": False,
                                      "epochs": 1, "batch_size": 16}})
    X, meta, _ = cv.load_exported(str(tmp_path / "f.npz"), cfg)
    return cfg, X, meta


def test_each_arm_starts_from_the_trained_member_and_each_gender_is_scored_by_its_own_copy(exported, monkeypatch):
    cfg, X, meta = exported
    gender_finetune = benchmark_script("gender_finetune")
    import keras

    keras.utils.set_random_seed(7)
    member = build_model(X.shape[1:], 8, cfg.model)
    adapt_normalization(member, X)
    base_weights = member.get_weights()
    monkeypatch.setattr(gender_finetune, "_fit_one", lambda *args, **kwargs: ([member], None))
    arms = gender_finetune.score_fold(cfg, X, meta, 3, epochs=2, learning_rate=1e-2)

    fold_cfg = config_from_dict({**cfg.to_dict(), "split": {"protocol": "emobox", "fold": 3}})
    split = cv.fold_split(X, meta, fold_cfg, name="fold3")
    val_gender = split.rows("val")["gender"].to_numpy()
    train_gender = split.rows("train")["gender"].to_numpy()
    columns = [c for c in arms["base"] if c.startswith("p_")]
    for frame in arms.values():
        assert sorted(frame["actor"].unique()) == sorted(EMOBOX_VAL_ACTORS[3]) and set(frame["fold"]) == {3}
        np.testing.assert_array_equal(frame["clip_id"], arms["base"]["clip_id"])
    member.set_weights(base_weights)
    np.testing.assert_allclose(arms["base"][columns], member.predict(split.X_val, verbose=0), atol=2e-4)
    for gender in ("female", "male"):
        mine = train_gender == gender
        tuned = gender_finetune.fine_tune(member, base_weights, split.X_train[mine], split.y_train[mine], fold_cfg,
                                          seed=cfg.seed, epochs=2, learning_rate=1e-2)
        scored = val_gender == gender
        expected = tuned.predict(split.X_val[scored], verbose=0)
        np.testing.assert_allclose(arms["ft_gender"][columns].to_numpy()[scored], expected, atol=2e-4)
        assert not np.allclose(arms["ft_all"][columns].to_numpy()[scored], expected, atol=1e-3)
    assert not np.allclose(arms["ft_all"][columns], arms["base"][columns], atol=1e-3)
