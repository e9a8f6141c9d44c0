from types import SimpleNamespace

import numpy as np
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


def test_speaker_normalisation_aligns_each_actors_band_levels_and_keeps_silence(search, rng):
    floor = -80.0
    X = rng.uniform(-60, -10, size=(12, 6, 20)).astype("float32")
    actors = np.repeat([1, 2, 3], 4)
    X[actors == 2] += np.linspace(-8, 8, 6)[None, :, None].astype("float32")  # a brighter voice
    X[:, :, :3] = floor  # padding
    X[actors == 3, 5, :] = floor  # a band actor 3 never sounds in
    normalised = search.normalise_per_speaker(X, actors, floor=floor)
    assert not np.isnan(normalised).any() and (normalised[actors == 3, 5] == floor).all()

    def band_levels(Z, actor):
        return Z[actors == actor][:, :, 3:].mean(axis=(0, 2))

    before = np.std([band_levels(X, a)[:5] for a in (1, 2, 3)], axis=0)
    after = np.std([band_levels(normalised, a)[:5] for a in (1, 2, 3)], axis=0)
    assert before.max() > 4 and after.max() < 1e-3
    assert (normalised[:, :, :3] == floor).all() and normalised.max() <= 0
    # within an actor every clip moves by the same amount: clip-to-clip differences survive
    np.testing.assert_allclose(np.diff(normalised[actors == 1][:, :, 3:], axis=0),
                               np.diff(X[actors == 1][:, :, 3:], axis=0), atol=1e-4)


def test_speaker_norm_experiment_trains_on_normalised_features(search, tmp_path, rng, monkeypatch):
    X = rng.uniform(-60, -10, size=(6, 4, 10)).astype("float32")
    X[3:] += 5  # actor 2 is louder
    meta = pd.DataFrame({"actor": [1, 1, 1, 2, 2, 2]})
    np.savez(tmp_path / "f.npz", X=X.astype("float16"))
    meta.to_csv(tmp_path / "f.csv", index=False)
    seen = {}

    def fake_cross_validate(cfg, *, data, **kwargs):
        seen["X"], seen["train_on_val"] = data[0], cfg.train.train_on_val
        return {"mean": {"ua": 50.0}, "std": {"ua": 0.0}, "folds": [], "hardware": "test"}

    monkeypatch.setattr(cv, "cross_validate", fake_cross_validate)
    args = ("norm", {"speaker_norm": True, "train": {"ensemble": 1}}, str(tmp_path / "f.npz"), "val",
            None, None, None)
    record = search.run_one(args)
    assert record["overrides"]["speaker_norm"] is True and seen["train_on_val"] is False
    assert record["members"] == {"2d": 1, "temporal": 1}  # the defaults' temporal member, named in the log
    X16 = X.astype("float16").astype("float32")
    np.testing.assert_allclose(seen["X"], search.normalise_per_speaker(X16, meta["actor"].to_numpy(), floor=-80.0))
    assert abs(seen["X"][:3].mean() - seen["X"][3:].mean()) < 1e-3 < abs(X16[:3].mean() - X16[3:].mean())


def test_an_experiment_refuses_features_exported_with_other_settings(search, tmp_path, rng):
    import dataclasses
    import json

    from emotion_cnn.config import FeatureConfig

    X = rng.uniform(-60, -10, size=(2, 4, 10)).astype("float16")
    np.savez(tmp_path / "f.npz", X=X, features=json.dumps(dataclasses.asdict(FeatureConfig(fmax=11025.0))))
    pd.DataFrame({"actor": [1, 2]}).to_csv(tmp_path / "f.csv", index=False)
    assert cv.load_exported(str(tmp_path / "f.npz"))[2]["fmax"] == 11025.0
    args = ("narrow", {"train": {"ensemble": 1}}, str(tmp_path / "f.npz"), "val", None, None, None)
    with pytest.raises(ValueError, match=r"narrow: .*f\.npz holds features made with .*'fmax': 11025\.0"):
        search.run_one(args)


def test_exported_features_record_their_settings_for_search(search, tmp_path, rng, monkeypatch):
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), seconds=1.0)
    monkeypatch.setenv("RAVDESS_DIR", str(data))
    monkeypatch.setattr("sys.argv", ["export_features.py", str(tmp_path / "f.npz"), "--set", "features.n_mels=32",
                                     "--set", "features.duration=1.0"])
    assert benchmark_script("export_features").main() == 0
    X, meta, features = cv.load_exported(str(tmp_path / "f.npz"))
    assert X.shape[:2] == (len(meta), 32) and features["n_mels"] == 32 and features["duration"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.csv", "f.npz", "ravdess"]  # no temp files left


def test_an_export_from_before_a_setting_existed_counts_as_its_default(search, tmp_path, rng, monkeypatch):
    import dataclasses
    import json

    from emotion_cnn.config import FeatureConfig

    older = dataclasses.asdict(FeatureConfig())
    del older["top_db"]  # as if exported before top_db was a setting
    X = rng.uniform(-60, -10, size=(2, 4, 10)).astype("float16")
    np.savez(tmp_path / "f.npz", X=X, features=json.dumps(older))
    pd.DataFrame({"actor": [1, 2]}).to_csv(tmp_path / "f.csv", index=False)
    monkeypatch.setattr("emotion_cnn.cv.cross_validate", lambda cfg, **kw: {
        "mean": {"ua": 1.0}, "std": {"ua": 0.0}, "folds": [], "hardware": "test"})
    args = ("old_export", {"train": {"ensemble": 1}}, str(tmp_path / "f.npz"), "val", None, None, None)
    assert search.run_one(args)["mean"] == {"ua": 1.0}
    with pytest.raises(ValueError, match=r"old_export: .*f\.npz holds features made with .*'top_db': 80\.0"):
        search.run_one(("old_export", {"features": {"top_db": 60.0}}, *args[2:]))
    np.savez(tmp_path / "f.npz", X=X, features=json.dumps({**older, "reference": "peak"}))
    with pytest.raises(ValueError, match=r"old_export: .*f\.npz was exported with settings this code lacks .*reference"):
        search.run_one(args)


def test_pcen_from_log_mel_is_librosas_pcen_scaled_above_the_floor(search, rng):
    import librosa
    import scipy.signal

    X = rng.uniform(-80, 0, size=(3, 5, 40)).astype("float32")
    X[:, :, :10] = -80.0  # leading silence
    out = search.pcen_from_log_mel(X, sr=16000, hop_length=320, top_db=80.0)
    assert out.shape == X.shape and out.dtype == np.float32 and out.min() >= -80.0
    power = 10.0 ** (X.astype(np.float64) / 10.0) * 1e20
    frames = 0.4 * 16000 / 320
    b = (np.sqrt(1 + 4 * frames ** 2) - 1) / (2 * frames ** 2)
    settled = scipy.signal.lfilter_zi([b], [1, b - 1])[0] * power[..., :1]  # on each band's first frame
    expected = librosa.pcen(power, sr=16000, hop_length=320, axis=-1, zi=settled)
    np.testing.assert_allclose(out, expected * 10 - 80, rtol=1e-4, atol=1e-3)
    assert np.ptp(out[:, :, :10]) < 1e-3  # steady silence is steady: no onset at the clip's start
    # the gain control: a clip 30 dB quieter keeps nearly the same shape (not 30 dB lower)
    quieter = search.pcen_from_log_mel(np.maximum(X - 30, -80), sr=16000, hop_length=320, top_db=80.0)
    assert np.abs(quieter - out)[:, :, 20:].mean() < 0.5 * 30


def test_pcen_experiment_trains_on_pcen_features(search, tmp_path, rng, monkeypatch):
    X = rng.uniform(-60, -10, size=(4, 4, 10)).astype("float32")
    np.savez(tmp_path / "f.npz", X=X.astype("float16"))
    pd.DataFrame({"actor": [1, 1, 2, 2]}).to_csv(tmp_path / "f.csv", index=False)
    seen = {}

    def fake_cross_validate(cfg, *, data, **kwargs):
        seen["X"] = data[0]
        return {"mean": {"ua": 50.0}, "std": {"ua": 0.0}, "folds": [], "hardware": "test"}

    monkeypatch.setattr("emotion_cnn.cv.cross_validate", fake_cross_validate)
    record = search.run_one(("pcen", {"pcen": True}, str(tmp_path / "f.npz"), "val", None, None, None))
    assert record["overrides"] == {"pcen": True} and record["members"] == {"2d": 3, "temporal": 1}
    X16 = X.astype("float16").astype("float32")
    np.testing.assert_allclose(seen["X"], search.pcen_from_log_mel(X16, sr=16000, hop_length=320, top_db=80.0))


def test_a_run_over_some_folds_logs_a_row_marked_partial(search):
    half = {"name": "x", "folds": [{"fold": f, "ua": 60.0} for f in (1, 2, 3)], "mean": {"ua": 60.0}}
    row = search.log_record(half, round_tag="25", folds=[1, 2, 3])
    assert row["partial"] is True and row["round"] == "25"
    assert "partial" not in half  # the worker's record is left as it came
    whole = {**half, "folds": [{"fold": f, "ua": 60.0} for f in range(1, 7)]}
    assert "partial" not in search.log_record(whole, round_tag="", folds=[1, 2, 3, 4, 5, 6])
    assert "round" not in search.log_record(whole, round_tag="", folds=None)


def test_pitch_rows_sit_before_the_mel_bands_and_read_as_floor_where_unvoiced(search, tmp_path, rng):
    X = rng.uniform(-80, 0, (3, 5, 7)).astype(np.float32)
    meta = pd.DataFrame({"clip_id": ["a", "b", "c"]})
    pitch = np.zeros((3, 2, 7), np.float32)
    pitch[:, 0] = 12.0  # 200 Hz
    pitch[1, 1, 2:5] = 1.0  # clip b voiced in frames 2-4 only
    np.savez(tmp_path / "pitch.npz", pitch=pitch, clip_id=np.array(["a", "b", "c"]))
    out = search.with_pitch_rows(X, meta, str(tmp_path / "pitch.npz"), floor=-80.0)
    assert out.shape == (3, 7, 7) and out.dtype == X.dtype
    np.testing.assert_array_equal(out[:, 2:], X)
    np.testing.assert_array_equal(out[1, 0, 2:5], -80 + 20 + 12)
    np.testing.assert_array_equal(out[1, 1, 2:5], 0.0)
    unvoiced = np.ones((3, 7), bool)
    unvoiced[1, 2:5] = False
    assert (out[:, :2][np.broadcast_to(unvoiced[:, None], (3, 2, 7))] == -80).all()
    with pytest.raises(ValueError, match="not the clips or frames"):
        search.with_pitch_rows(X, meta.iloc[::-1].reset_index(drop=True), str(tmp_path / "pitch.npz"), floor=-80.0)
    with pytest.raises(ValueError, match="not the clips or frames"):
        search.with_pitch_rows(X[:, :, :6], meta, str(tmp_path / "pitch.npz"), floor=-80.0)


def test_other_inputs_replace_the_log_mel_when_they_hold_the_same_clips_and_frames(search, tmp_path, rng):
    X = rng.uniform(-80, 0, (3, 5, 7)).astype(np.float32)
    meta = pd.DataFrame({"clip_id": ["a", "b", "c"]})
    other = rng.uniform(-80, 0, (3, 9, 7)).astype(np.float16)
    np.savez(tmp_path / "cqt.npz", X=other, clip_id=np.array(["a", "b", "c"]))
    out = search.other_inputs(X, meta, str(tmp_path / "cqt.npz"))
    assert out.shape == (3, 9, 7) and out.dtype == np.float32
    np.testing.assert_array_equal(out, other.astype(np.float32))
    with pytest.raises(ValueError, match="not the clips or frames"):
        search.other_inputs(X, meta.iloc[::-1].reset_index(drop=True), str(tmp_path / "cqt.npz"))
    with pytest.raises(ValueError, match="not the clips or frames"):
        search.other_inputs(X[:, :, :6], meta, str(tmp_path / "cqt.npz"))
