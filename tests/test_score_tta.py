import numpy as np
import pandas as pd
import pytest
from conftest import benchmark_script, make_dataset

from emotion_cnn import cv
from emotion_cnn.config import Config, ModelConfig
from emotion_cnn.model import adapt_normalization, build_model
from emotion_cnn.splits import EMOBOX_VAL_ACTORS
from emotion_cnn.train import average_models, warp


@pytest.mark.parametrize("average", ["probabilities", "logits"])
def test_scores_saved_fold_models_plain_by_member_and_with_copies(tmp_path, rng, monkeypatch, capsys, average):
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), emotions=(1, 5),
                        seconds=1.0)
    monkeypatch.setenv("RAVDESS_DIR", str(data))
    monkeypatch.setattr("sys.argv", ["export_features.py", str(tmp_path / "f.npz")])
    assert benchmark_script("export_features").main() == 0
    X, meta, _ = cv.load_exported(str(tmp_path / "f.npz"), Config())
    import keras

    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        member = build_model(X.shape[1:], 8, ModelConfig(filters=[4, 8], recurrent_units=0))
        adapt_normalization(member, X)
        logits = member.get_layer("emotion_logits")
        logits.kernel.assign(20 * logits.kernel)  # sure members, whose two means differ
        members.append(member)
    models = tmp_path / "models"
    models.mkdir()
    average_models(members, average=average).save(models / "fold3.keras")  # with logits, its members output them
    score_tta = benchmark_script("score_tta")

    def run(*options: str) -> pd.DataFrame:
        out = tmp_path / "out.csv"
        monkeypatch.setattr("sys.argv", ["score_tta.py", str(tmp_path / "f.npz"), str(models), str(out), *options])
        assert score_tta.main() == 0
        return pd.read_csv(out)

    cfg = Config()
    cfg.split.fold = 3
    split = cv.fold_split(X, meta, cfg, name="emobox-fold3")
    second = run("--member", "2", "--copies", "0")
    assert sorted(second["actor"].unique()) == sorted(EMOBOX_VAL_ACTORS[3]) and set(second["fold"]) == {3}
    np.testing.assert_allclose(second[[c for c in second if c.startswith("p_")]].to_numpy(),
                               members[1].predict(split.X_val, verbose=0), atol=2e-4)
    columns = [c for c in second if c.startswith("p_")]
    whole = run("--copies", "0")[columns].to_numpy()
    probabilities = np.array([m.predict(split.X_val, verbose=0) for m in members])
    # the members' logits averaged: the normalised geometric mean of their probabilities
    geometric = np.exp(np.mean(np.log(probabilities), axis=0))
    geometric /= geometric.sum(axis=1, keepdims=True)
    arithmetic = np.mean(probabilities, axis=0)
    assert np.abs(geometric - arithmetic).max() > 0.01
    np.testing.assert_allclose(whole, geometric if average == "logits" else arithmetic, atol=2e-4)
    augmented = run("--copies", "2")[columns].to_numpy()  # each clip averaged over 2 masked, shifted copies
    assert augmented.shape == whole.shape and not np.allclose(augmented, whole, atol=1e-3)
    keras.utils.set_random_seed(3)
    unsure = build_model(X.shape[1:], 8, ModelConfig(filters=[4, 8], recurrent_units=0))  # not saturated
    adapt_normalization(unsure, X)
    (tmp_path / "unsure").mkdir()
    unsure.save(tmp_path / "unsure" / "fold3.keras")
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["score_tta.py", str(tmp_path / "f.npz"), str(tmp_path / "unsure"),
                                     str(tmp_path / "w.csv"), "--copies", "0", "--mel-warp", "1.25"])
    assert score_tta.main() == 0
    warped = pd.read_csv(tmp_path / "w.csv")[columns].to_numpy()
    X_warped = np.stack([warp(x, 1.25, axis=0, anchor=0.0, floor=-cfg.features.top_db) for x in split.X_val])
    np.testing.assert_allclose(warped, unsure.predict(X_warped, verbose=0), atol=2e-4)
    assert not np.allclose(warped, unsure.predict(split.X_val, verbose=0), atol=1e-3)
    assert "UA per gender, folds pooled: female " in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["score_tta.py", str(tmp_path / "f.npz"), str(models), str(tmp_path / "x.csv"),
                                     "--mel-warp", "0"])
    with pytest.raises(SystemExit):
        score_tta.main()
    assert "--mel-warp is a stretch factor: above 0, not 0.0" in capsys.readouterr().err
    monkeypatch.setattr("sys.argv", ["score_tta.py", str(tmp_path / "f.npz"), str(models), str(tmp_path / "x.csv"),
                                     "--member", "3"])
    assert score_tta.main() == 1
    assert "no member 3 (its members: emotion_cnn_1, emotion_cnn_2)" in capsys.readouterr().err
