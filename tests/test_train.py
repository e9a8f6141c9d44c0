import json
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import make_dataset, small_config

from emotion_cnn import train as train_module
from emotion_cnn.cv import cross_validate
from emotion_cnn.config import LABEL_INDEX, ModelConfig, TrainConfig
from emotion_cnn.model import adapt_normalization, build_model
from emotion_cnn.prepare import prepare
from emotion_cnn.train import (AugmentedBatches, MutualLoss, average_models, class_weights, fit, load_split,
                                mix_band_statistics, new_run_dir, seed_everything, strong_intensity, warp,
                                without_some_actors)


def test_learns_separable_synthetic_classes(tiny_model):
    """Held-out actor, 8 tone classes: chance is 12.5 %; a working pipeline is far above it."""
    _, result = tiny_model
    assert result.metrics["ua"] >= 0.6, result.metrics
    assert result.metrics["wa"] >= 0.6


def test_run_folder_contents(tiny_model):
    _, result = tiny_model
    run = result.run_dir
    for name in ("config.yaml", "labels.json", "history.csv", "metrics.json", "predictions.csv",
                 "classification_report.txt", "model.keras", "figures/confusion_matrix.png",
                 "figures/confusion_matrix_normalized.png", "figures/training_curves.png",
                 "figures/accuracy_per_actor.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("wa", "ua", "macro_f1", "per_actor", "per_intensity", "seconds_per_epoch", "parameters",
                "kept_epoch"):
        assert key in metrics
    predictions = pd.read_csv(run / "predictions.csv")
    assert set(predictions["actor"]) == {1}
    assert len(pd.read_csv(run / "history.csv")) == metrics["epochs_run"]


def test_class_weights_balance_neutral():
    y = np.array([0] * 5 + [1] * 10 + [2] * 10)
    w = class_weights(y, 3)
    np.testing.assert_allclose(w, [25 / 15, 25 / 30, 25 / 30])
    assert np.isclose((w[y]).mean(), 1.0)


def test_augmentation_is_seeded_and_shapes_hold(rng):
    X = rng.standard_normal((40, 16, 50)).astype("float32")
    y = np.arange(40) % 4
    cfg = TrainConfig(batch_size=8)
    a = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=1)
    b = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=1)
    c = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=2)
    xa, ya, wa = a[0]
    xb, _, _ = b[0]
    xc, _, _ = c[0]
    assert xa.shape == (8, 16, 50) and ya.shape == (8, 4) and wa.shape == (8,)
    np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(xa, xc)
    np.testing.assert_allclose(ya.sum(axis=1), 1.0, rtol=1e-6)
    assert len(a) == 5
    a.on_epoch_end()
    assert not np.array_equal(a[0][0], xa)


def test_batches_do_not_depend_on_the_order_they_are_built_in(rng):
    X = rng.standard_normal((44, 16, 40)).astype("float32")
    batches = AugmentedBatches(X, np.arange(44) % 4, num_classes=4, cfg=TrainConfig(batch_size=8), seed=5)
    forward = [batches[i] for i in range(len(batches))]
    backward = [batches[i] for i in reversed(range(len(batches)))][::-1]
    for a, b in zip(forward, backward, strict=True):
        for part_a, part_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(part_a, part_b)


def test_worker_threads_train_the_same_weights_as_no_workers(rng):
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the pool is TensorFlow's only")
    # 13 batches: more than the pool's queue holds (10), so it waits on a full queue as in a fold
    X = rng.standard_normal((100, 16, 40)).astype("float32")
    y = np.arange(100) % 4
    cfg = TrainConfig(batch_size=8)  # 12 full batches and a short one, masks and mixup on

    def trained(workers: int) -> list[np.ndarray]:
        seed_everything(5)
        model = build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_units=4))
        model.compile(optimizer="adam", loss="categorical_crossentropy")
        batches = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=5, workers=workers)
        model.fit(batches, epochs=3, verbose=0)
        return model.get_weights()

    assert AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=5).workers == 2
    pooled, inline = trained(2), trained(1)
    assert all(np.array_equal(a, b) for a, b in zip(pooled, inline, strict=True))


def test_no_worker_pool_off_tensorflow(rng, monkeypatch):
    import keras

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    X = rng.standard_normal((16, 16, 40)).astype("float32")
    y = np.arange(16) % 4
    assert AugmentedBatches(X, y, num_classes=4, cfg=TrainConfig(), seed=5).workers == 1
    with pytest.raises(ValueError, match="workers=2: .*TensorFlow only"):
        AugmentedBatches(X, y, num_classes=4, cfg=TrainConfig(), seed=5, workers=2)


def test_same_seed_same_metrics(synthetic_dataset):
    cfg = small_config(synthetic_dataset, train={"epochs": 2, "train_on_val": False})
    split = load_split(prepare(cfg, progress=False).split_dir)
    _, first = fit(cfg, split, verbose=0)
    _, second = fit(cfg, split, verbose=0)
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(first[cols], second[cols])


def test_train_without_split_says_what_to_do(project_root):
    from emotion_cnn.train import train

    with pytest.raises(FileNotFoundError, match="emotion-cnn prepare"):
        train(small_config(project_root))


def test_warp_identity_stretch_and_silence_outside():
    bands = np.tile(np.arange(10, dtype=np.float32)[:, None], (1, 4))
    np.testing.assert_array_equal(warp(bands, 1.0, axis=0, anchor=0.0, floor=-80.0), bands)
    up = warp(bands, 2.0, axis=0, anchor=0.0, floor=-80.0)  # band k now holds what was at k/2
    np.testing.assert_allclose(up[:, 0], np.arange(10) / 2)
    down = warp(bands, 0.5, axis=0, anchor=0.0, floor=-80.0)  # top bands read past the input
    np.testing.assert_allclose(down[:, 0], [0, 2, 4, 6, 8, -80, -80, -80, -80, -80])
    frames = np.tile(np.arange(9, dtype=np.float32)[None], (2, 1))
    faster = warp(frames, 0.8, axis=1, anchor=4.0, floor=-80.0)  # centre stays, ends fall outside
    assert faster[0, 4] == 4 and faster[0, 0] == -80 and faster[0, -1] == -80
    np.testing.assert_allclose(faster[0, 1:-1], 4 + (np.arange(1, 8) - 4) / 0.8)


def test_warps_are_applied_and_seeded(rng):
    X = rng.standard_normal((16, 16, 40)).astype("float32")
    y = np.arange(16) % 4
    plain = TrainConfig(batch_size=16, time_masks=0, freq_masks=0, max_shift=0, mixup_alpha=0.0)
    warped = TrainConfig(**{**plain.__dict__, "time_stretch": 0.2, "freq_warp": 0.1})
    np.testing.assert_array_equal(AugmentedBatches(X, y, num_classes=4, cfg=plain, seed=3)[0][0],
                                  X[AugmentedBatches(X, y, num_classes=4, cfg=plain, seed=3).order])
    a = AugmentedBatches(X, y, num_classes=4, cfg=warped, seed=3)[0][0]
    b = AugmentedBatches(X, y, num_classes=4, cfg=warped, seed=3)[0][0]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (16, 16, 40) and not np.allclose(a, X[AugmentedBatches(X, y, num_classes=4, cfg=plain, seed=3).order])


def test_band_statistics_mix_each_clips_band_levels_with_its_partners(rng):
    X = (rng.standard_normal((6, 5, 40)) * rng.uniform(1, 5, (6, 5, 1)) + rng.uniform(-60, -10, (6, 5, 1)))
    X = X.astype("float32")
    mixed = mix_band_statistics(X, np.random.default_rng(9), alpha=0.3)
    draws = np.random.default_rng(9)
    lam = draws.beta(0.3, 0.3, size=(6, 1, 1))
    partner = draws.permutation(6)
    assert mixed.shape == X.shape and mixed.dtype == np.float32 and sorted(partner) != list(partner)
    mean, std = X.mean(axis=2, keepdims=True), X.std(axis=2, keepdims=True)
    np.testing.assert_allclose(mixed.mean(axis=2, keepdims=True), lam * mean + (1 - lam) * mean[partner], atol=1e-3)
    np.testing.assert_allclose(mixed.std(axis=2, keepdims=True), lam * std + (1 - lam) * std[partner], rtol=1e-3)
    # each clip's time course is its own: standardised per band, it is unchanged
    np.testing.assert_allclose((mixed - mixed.mean(2, keepdims=True)) / mixed.std(2, keepdims=True),
                               (X - mean) / std, atol=1e-3)


def test_band_statistics_mix_within_each_label_when_labels_are_given(rng):
    X = rng.uniform(-80, 0, (12, 4, 30)).astype("float32")
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3, 3])
    mixed = mix_band_statistics(X, np.random.default_rng(4), alpha=0.3, labels=labels)
    draws = np.random.default_rng(4)
    lam = draws.beta(0.3, 0.3, size=(12, 1, 1))
    partner = np.arange(12)
    for label in range(4):
        group = np.flatnonzero(labels == label)
        partner[group] = draws.permutation(group)
    assert (labels[partner] == labels).all() and (partner != np.arange(12)).any()
    mean = X.mean(axis=2, keepdims=True)
    np.testing.assert_allclose(mixed.mean(axis=2, keepdims=True), lam * mean + (1 - lam) * mean[partner], atol=1e-3)
    np.testing.assert_allclose(mixed[7], X[7], atol=1e-3)  # label 2 has one clip: its own partner


def test_batches_mix_band_statistics_as_often_as_mixstyle_p_says(rng):
    X = rng.uniform(-80, 0, (64, 8, 20)).astype("float32")
    y = np.arange(64) % 4
    plain = TrainConfig(batch_size=8, time_masks=0, freq_masks=0, max_shift=0, mixup_alpha=0.0)

    def changed(p: float) -> list[bool]:
        cfg = TrainConfig(**{**plain.__dict__, "mixstyle_p": p})
        batches = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=3)
        return [not np.allclose(batches[i][0], X[batches.order[i * 8:(i + 1) * 8]]) for i in range(len(batches))]

    assert not any(changed(0.0)) and all(changed(1.0)) and 0 < sum(changed(0.5)) < 8


def test_without_some_actors_leaves_out_as_many_of_each_gender_drawn_from_the_seed():
    actors = np.repeat(np.arange(1, 17), 3)
    genders = np.where(actors % 2, "male", "female")
    left_out = {seed: sorted(set(actors[~without_some_actors(actors, genders, drop=4, seed=seed)]))
                for seed in range(42, 48)}
    for seed, dropped in left_out.items():
        assert len(dropped) == 4 and sum(a % 2 for a in dropped) == 2
        assert sorted(set(actors[~without_some_actors(actors, genders, drop=4, seed=seed)])) == dropped
    assert len({tuple(d) for d in left_out.values()}) > 1
    with pytest.raises(ValueError, match="none would be left"):
        without_some_actors(actors, genders, drop=16, seed=1)


@pytest.mark.parametrize("train_on_val", [True, False])
def test_bagged_members_each_train_without_their_own_actors(synthetic_dataset, monkeypatch, train_on_val):
    import keras

    cfg = small_config(synthetic_dataset, train={"epochs": 1, "ensemble": 3, "bag_drop_actors": 2,
                                                 "train_on_val": train_on_val, "warmup_epochs": 0})
    split = load_split(prepare(cfg, progress=False).split_dir)
    parts = ["train", "val"] if train_on_val else ["train"]
    X = np.concatenate([getattr(split, f"X_{part}") for part in parts])
    actors = pd.concat([split.rows(part) for part in parts])["actor"].to_numpy()
    seen = []
    original = keras.Model.fit

    def spy(self, x=None, *args, **kwargs):
        rows = [int(np.flatnonzero((X == clip).all(axis=(1, 2)))[0]) for clip in x.X]
        seen.append(sorted(set(actors[rows])))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    fit(cfg, split, verbose=0)
    every = sorted(set(actors))
    assert every == ([2, 3, 4, 5, 6] if train_on_val else [3, 4, 5, 6]) and len(seen) == 3
    for member, kept in enumerate(seen):
        dropped = sorted(set(every) - set(kept))
        assert len(dropped) == 2 and sum(a % 2 for a in dropped) == 1
        assert kept == sorted(set(actors[without_some_actors(actors, np.where(actors % 2, "male", "female"),
                                                             drop=2, seed=cfg.seed + member)]))


def test_ensemble_averages_members_and_cosine_schedule_runs(synthetic_dataset, tmp_path):
    import keras

    cfg = small_config(synthetic_dataset, train={"epochs": 2, "ensemble": 2, "schedule": "cosine",
                                                 "warmup_epochs": 1, "train_on_val": False, "average": "logits"})
    split = load_split(prepare(cfg, progress=False).split_dir)
    model, history = fit(cfg, split, run_dir=tmp_path, verbose=0)
    assert list(history["member"]) == [1, 1, 2, 2] and list(history["epoch"]) == [1, 2, 1, 2]
    for member in (1, 2):
        live_log = pd.read_csv(tmp_path / f"history-member{member}.csv")
        assert list(live_log["epoch"]) == [1, 2] and "val_loss" in live_log
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in members] == ["emotion_cnn_1", "emotion_cnn_2"]
    x = split.X_test[:5]
    logits = [m.predict(x, verbose=0) for m in members]  # members of an ensemble of logits output them
    expected = softmax(np.mean(logits, axis=0))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(logits[0], logits[1])
    model.save(tmp_path / "ensemble.keras")
    loaded = keras.models.load_model(tmp_path / "ensemble.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_ensemble_member_k_trains_as_a_single_model_of_seed_plus_k_minus_1(synthetic_dataset):
    """What lets score_ensemble.py --merge add members to a benchmark without retraining the others."""
    import keras

    cfg = small_config(synthetic_dataset, seed=7, train={"epochs": 2, "ensemble": 2})
    split = load_split(prepare(cfg, progress=False).split_dir)
    ensemble, ensemble_history = fit(cfg, split, verbose=0)
    single, single_history = fit(small_config(synthetic_dataset, seed=8, train={"epochs": 2, "ensemble": 1}),
                                 split, verbose=0)
    second = [layer for layer in ensemble.layers if isinstance(layer, keras.Model)][1]
    x = split.X_test[:8]
    np.testing.assert_array_equal(second.predict(x, verbose=0), single.predict(x, verbose=0))
    np.testing.assert_array_equal(ensemble_history.loc[ensemble_history["member"] == 2, "loss"].to_numpy(),
                                  single_history["loss"].to_numpy())


def test_temporal_members_follow_the_2d_ones_each_as_a_single_temporal_model_of_its_seed(synthetic_dataset, tmp_path):
    """Round 41's members: train.temporal_members 1-D models after the 2-D ones, seeds from
    ``seed`` again, each trained as search.py trains one with model.temporal on that seed."""
    import keras

    cfg = small_config(synthetic_dataset, seed=7, train={"epochs": 2, "ensemble": 1, "temporal_members": 2},
                       model={"temporal_filters": [8, 8]})
    split = load_split(prepare(cfg, progress=False).split_dir)
    ensemble, history = fit(cfg, split, run_dir=tmp_path, verbose=0)
    assert list(history["member"]) == [1, 1, 2, 2, 3, 3]
    assert [p.name for p in sorted(tmp_path.glob("history-member*.csv"))] == [
        f"history-member{m}.csv" for m in (1, 2, 3)]
    members = [layer for layer in ensemble.layers if isinstance(layer, keras.Model)]
    assert [any(isinstance(layer, keras.layers.Conv1D) for layer in m.layers) for m in members] == [False, True, True]
    x = split.X_test[:8]
    for member, seed in ((2, 7), (3, 8)):
        single, single_history = fit(small_config(synthetic_dataset, seed=seed, train={"epochs": 2, "ensemble": 1},
                                                  model={"temporal": True, "filters": [8, 8]}), split, verbose=0)
        np.testing.assert_array_equal(members[member - 1].predict(x, verbose=0), single.predict(x, verbose=0))
        np.testing.assert_array_equal(history.loc[history["member"] == member, "loss"].to_numpy(),
                                      single_history["loss"].to_numpy())


def test_temporal_member_settings_it_cannot_build_fail_before_any_training(synthetic_dataset, tmp_path):
    cfg = small_config(synthetic_dataset, train={"epochs": 2, "ensemble": 1, "temporal_members": 1},
                       model={"pooling": "attention"})
    split = load_split(prepare(cfg, progress=False).split_dir)
    with pytest.raises(ValueError, match="pooling 'time' or 'global'.*set it to 0 for 2-D members only"):
        fit(cfg, split, run_dir=tmp_path, verbose=0)
    assert not list(tmp_path.glob("history*.csv"))  # the 2-D member never started


def test_restore_best_keeps_the_lowest_validation_loss_epoch_and_off_the_last(synthetic_dataset):
    cfg = small_config(synthetic_dataset, train={"epochs": 4, "ensemble": 1, "train_on_val": False,
                                                 "restore_best": True, "schedule": "plateau",
                                                 "learning_rate": 0.01})
    split = load_split(prepare(cfg, progress=False).split_dir)
    # wrong validation labels: the better the model learns, the higher its validation loss, so
    # the lowest one is not at the last epoch
    split.y_val = (split.y_val + 1) % 8
    onehot = np.eye(8, dtype="float32")[split.y_val]
    model, history = fit(cfg, split, verbose=0)
    assert history["kept"].sum() == 1 and not history["kept"].iloc[-1]
    assert history.loc[history["kept"], "val_loss"].iloc[0] == history["val_loss"].min()
    assert model.evaluate(split.X_val, onehot, verbose=0)[0] == pytest.approx(history["val_loss"].min(), rel=1e-4)
    cfg.train.restore_best = False
    model, history = fit(cfg, split, verbose=0)
    assert list(history["kept"]) == [False, False, False, True]
    assert model.evaluate(split.X_val, onehot, verbose=0)[0] == pytest.approx(history["val_loss"].iloc[-1], rel=1e-4)


def test_train_on_val_fits_train_and_validation_actors_for_fixed_epochs(synthetic_dataset, monkeypatch):
    import keras

    cfg = small_config(synthetic_dataset, train={"epochs": 2, "ensemble": 1, "train_on_val": True, "restore_best": False,
                                                 "schedule": "cosine", "warmup_epochs": 1})
    split = load_split(prepare(cfg, progress=False).split_dir)
    seen = []
    original = keras.Model.fit

    def spy(self, x=None, *args, **kwargs):
        seen.append((len(x.X), kwargs.get("validation_data")))
        return original(self, x, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy)
    _, history = fit(cfg, split, verbose=0)
    assert seen == [(len(split.y_train) + len(split.y_val), None)]
    assert "val_loss" not in history and list(history["kept"]) == [False, True]


def test_label_smoothing_reaches_the_loss(synthetic_dataset, monkeypatch):
    import keras

    cfg = small_config(synthetic_dataset, train={"epochs": 1, "ensemble": 1, "label_smoothing": 0.1})
    split = load_split(prepare(cfg, progress=False).split_dir)
    losses = []
    original = keras.Model.compile

    def spy(self, *args, **kwargs):
        losses.append(kwargs["loss"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", spy)
    fit(cfg, split, verbose=0)
    assert [loss.get_config()["label_smoothing"] for loss in losses] == [pytest.approx(0.1)]


def test_weight_average_is_what_the_model_ends_with(synthetic_dataset):
    cfg = small_config(synthetic_dataset, train={"epochs": 2, "ensemble": 1, "restore_best": False})
    split = load_split(prepare(cfg, progress=False).split_dir)
    plain, _ = fit(cfg, split, verbose=0)
    cfg.train.ema_momentum = 0.9
    averaged, _ = fit(cfg, split, verbose=0)
    # same seed, same batches: only the saved weights differ
    assert not np.allclose(plain.predict(split.X_test[:4], verbose=0), averaged.predict(split.X_test[:4], verbose=0))


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def test_average_models_joins_probabilities_or_logits(rng):
    import keras

    X = rng.normal(size=(6, 16, 40)).astype("float32")
    members = []
    for seed in (1, 2, 3):
        keras.utils.set_random_seed(seed)
        member = build_model((16, 40), 4, ModelConfig(filters=[4], recurrent_units=0))
        adapt_normalization(member, X)
        logits = member.get_layer("emotion_logits")
        logits.kernel.assign(20 * logits.kernel)  # sure members, whose two means differ
        members.append(member)
    probabilities = np.array([m.predict(X, verbose=0) for m in members])
    arithmetic = np.mean(probabilities, axis=0)
    geometric = np.exp(np.mean(np.log(probabilities), axis=0))
    geometric /= geometric.sum(axis=1, keepdims=True)
    assert np.abs(arithmetic - geometric).max() > 0.05
    np.testing.assert_allclose(average_models(members, average="probabilities").predict(X, verbose=0),
                               arithmetic, atol=1e-5)
    np.testing.assert_allclose(average_models(members, average="logits").predict(X, verbose=0), geometric, atol=1e-5)
    assert average_models(members[:1], average="logits") is members[0]
    with pytest.raises(ValueError, match="train.average must be one of logits, probabilities, not 'median'"):
        average_models(members, average="median")


@pytest.mark.parametrize("average", ["probabilities", "logits"])
def test_snapshot_epochs_join_the_ensemble_as_the_weights_of_those_epochs(synthetic_dataset, tmp_path, average):
    import keras

    # a constant learning rate, so epoch 1 of a 3-epoch run is epoch 1 of a 1-epoch run
    steady = {"schedule": "plateau", "train_on_val": False, "lr_patience": 10}
    cfg = small_config(synthetic_dataset, train={**steady, "epochs": 3, "snapshot_epochs": [2, 1], "average": average})
    split = load_split(prepare(cfg, progress=False).split_dir)
    model, history = fit(cfg, split, verbose=0)
    assert list(history["epoch"]) == [1, 2, 3]
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in members] == ["emotion_cnn_1", "emotion_cnn_2", "emotion_cnn_3"]
    x = split.X_test[:5]
    outputs = [m.predict(x, verbose=0) for m in members]  # with logits averaged, the members' logits
    if average == "logits":
        expected, probabilities = softmax(np.mean(outputs, axis=0)), [softmax(o) for o in outputs]
    else:
        expected, probabilities = np.mean(outputs, axis=0), outputs
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)
    one_epoch, _ = fit(small_config(synthetic_dataset, train={**steady, "epochs": 1}), split, verbose=0)
    np.testing.assert_allclose(probabilities[0], one_epoch.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(probabilities[0], probabilities[1]) and not np.allclose(probabilities[1], probabilities[2])
    model.save(tmp_path / "snapshots.keras")
    loaded = keras.models.load_model(tmp_path / "snapshots.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_snapshots_of_a_model_with_an_intensity_head_hold_the_emotion_model_alone(split_with_intensities, tmp_path):
    import keras

    cfg, split = split_with_intensities
    cfg.train.epochs, cfg.train.ensemble, cfg.train.intensity_weight = 3, 1, 0.5
    cfg.train.snapshot_epochs = [1]
    model, _ = fit(cfg, split, verbose=0)
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert len(members) == 2
    for member in members:
        assert member.output_shape == (None, len(split.labels))
        assert "intensity" not in [layer.name for layer in member.layers]
    x = split.X_test[:4]
    assert not np.allclose(members[0].predict(x, verbose=0), members[1].predict(x, verbose=0))
    model.save(tmp_path / "snapshots.keras")
    loaded = keras.models.load_model(tmp_path / "snapshots.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.fixture
def split_with_intensities(tmp_path, rng):
    """A prepared split whose clips come at both intensities (neutral only at normal)."""
    data_dir = make_dataset(tmp_path / "ravdess-intensities", rng, actors=range(1, 5), intensities=(1, 2))
    cfg = small_config(data_dir, split={"protocol": "actors", "test_actors": [1], "val_actors": [2]})
    return cfg, load_split(prepare(cfg, progress=False).split_dir)


def test_strong_intensity_follows_each_part_in_the_order_of_its_arrays(split_with_intensities):
    _, split = split_with_intensities
    for part in ("train", "val", "test"):
        rows = split.manifest[split.manifest["split"] == part].sort_values("index_in_split")
        np.testing.assert_array_equal(rows["emotion"].map(LABEL_INDEX), getattr(split, f"y_{part}"))
        strong = strong_intensity(split, part)
        # the intensity code is the 4th field of the RAVDESS name
        np.testing.assert_array_equal(strong, [float(c.split("-")[3] == "02") for c in rows["clip_id"]])
        assert 0 < strong.mean() < 1
    split.manifest.loc[split.manifest.index[0], "intensity"] = "2"
    with pytest.raises(ValueError, match=r"manifest.csv gives intensities \['2'\]"):
        strong_intensity(split, split.manifest["split"].iloc[0])


def test_batches_mix_the_intensity_target_as_they_mix_the_emotion(rng):
    X = rng.standard_normal((40, 16, 50)).astype("float32")
    y = np.arange(40) % 4
    cfg = TrainConfig(batch_size=8, mixup_alpha=0.4)
    weights = np.array([2.0, 1.0, 1.0, 1.0], np.float32)
    plain = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=3, weights=weights)
    headed = AugmentedBatches(X, y, num_classes=4, cfg=cfg, seed=3, weights=weights,
                              intensity=(y == 3).astype(np.float32))
    mixed = []
    for index in range(len(headed)):
        x, targets, sample_weights = headed[index]
        x_plain, y_plain, w_plain = plain[index]
        np.testing.assert_array_equal(x, x_plain)
        np.testing.assert_array_equal(targets["emotion"], y_plain)
        np.testing.assert_array_equal(sample_weights["emotion"], w_plain)
        assert targets["intensity"].shape == (len(x), 1)
        np.testing.assert_allclose(targets["intensity"][:, 0], y_plain[:, 3], rtol=1e-6)
        np.testing.assert_array_equal(sample_weights["intensity"], 1.0)
        mixed.extend(y_plain[:, 3])
    assert any(0 < share < 1 for share in mixed)  # clips of class 3 were mixed with others


@pytest.mark.parametrize("train_on_val", [True, False])
def test_intensity_head_trains_the_model_and_is_not_saved_with_it(split_with_intensities, train_on_val, tmp_path):
    import keras

    cfg, split = split_with_intensities
    cfg.train.epochs, cfg.train.ensemble, cfg.train.train_on_val = 2, 1, train_on_val
    cfg.model.l2 = 0.0  # so the validation total is the two losses alone
    plain, _ = fit(cfg, split, verbose=0)
    cfg.train.intensity_weight = 0.5
    model, history = fit(cfg, split, run_dir=tmp_path, verbose=0)
    live = pd.read_csv(tmp_path / "history.csv")  # as CSVLogger wrote it while training
    for prefix in ("",) if train_on_val else ("", "val_"):
        names = {f"{prefix}{name}" for name in ("accuracy", "loss", "intensity_loss", "total_loss")}
        assert names <= set(history) and names <= set(live)
        assert f"{prefix}emotion_loss" not in live
    np.testing.assert_allclose(live["loss"], history["loss"], rtol=1e-5)
    if not train_on_val:
        # one unweighted batch: the total is exactly the emotion loss plus the weighted intensity loss
        # (training's running means weight batches and class weights otherwise)
        np.testing.assert_allclose(history["val_total_loss"],
                                   history["val_loss"] + 0.5 * history["val_intensity_loss"], rtol=1e-5)
    assert "intensity" not in [layer.name for layer in model.layers]
    x = split.X_test[:6]
    assert model.predict(x, verbose=0).shape == (6, len(split.labels))
    # same seed and batches: the head's gradient is what changed the weights
    assert not np.allclose(model.predict(x, verbose=0), plain.predict(x, verbose=0))
    model.save(tmp_path / "headless.keras")
    loaded = keras.models.load_model(tmp_path / "headless.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_with_an_intensity_head_the_emotion_loss_chooses_the_epoch_and_the_plateaus(split_with_intensities,
                                                                                   monkeypatch):
    import keras

    cfg, split = split_with_intensities
    cfg.train.epochs, cfg.train.ensemble, cfg.train.intensity_weight = 4, 1, 2.0
    cfg.train.train_on_val, cfg.train.restore_best, cfg.train.schedule = False, True, "plateau"
    seen = {}  # what each callback read under the name it monitors, epoch by epoch
    for name in ("EarlyStopping", "ReduceLROnPlateau"):
        original = getattr(keras.callbacks, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            callback = _original(*args, **kwargs)
            on_epoch_end = callback.on_epoch_end

            def recording(epoch, logs=None):
                seen.setdefault(_name, []).append(logs[callback.monitor])
                return on_epoch_end(epoch, logs)

            callback.on_epoch_end = recording
            return callback

        monkeypatch.setattr(keras.callbacks, name, spy)
    _, history = fit(cfg, split, verbose=0)
    assert "val_emotion_loss" not in history and "val_total_loss" in history
    # both read the emotion's validation loss, not the total with the head's
    for values in seen.values():
        np.testing.assert_allclose(values, history["val_loss"], rtol=1e-6)
        assert not np.allclose(values, history["val_total_loss"])
    assert set(seen) == {"EarlyStopping", "ReduceLROnPlateau"}
    assert history.loc[history["kept"], "epoch"].item() == history.loc[history["val_loss"].idxmin(), "epoch"]


def test_precise_bn_recalibrates_every_model_on_the_clean_training_clips(synthetic_dataset, monkeypatch):
    cfg = small_config(synthetic_dataset, train={"epochs": 2, "snapshot_epochs": [1], "precise_bn": True})
    split = load_split(prepare(cfg, progress=False).split_dir)
    calls = []
    monkeypatch.setattr(train_module, "recalibrate_batch_norm", lambda model, X: calls.append((model, X)))
    model, _ = fit(cfg, split, verbose=0)
    assert len(calls) == 2 * cfg.train.ensemble  # a snapshot and the last epoch, in every member
    for _, X in calls:  # training on the validation actors too, unaugmented
        np.testing.assert_array_equal(X, np.concatenate([split.X_train, split.X_val]))


def test_the_pipeline_refuses_pitch_rows_it_has_no_pitch_for(tmp_path, rng, project_root):
    # fit refuses, before any training, so every path through it does: the main job and cv
    data = make_dataset(tmp_path / "ravdess", rng, actors=range(1, 25), repetitions=(1,), seconds=1.0)
    cfg = small_config(data, split={"protocol": "emobox"}, model={"pitch_rows": 2})
    split_dir = prepare(cfg, progress=False).split_dir
    with pytest.raises(ValueError, match="the pipeline has no pitch stage"):
        train_module.train(cfg, split_dir=split_dir)
    with pytest.raises(ValueError, match="the pipeline has no pitch stage"):
        cross_validate(cfg, folds=[1])


def test_weight_decay_shrinks_kernels_but_not_batch_norm_or_biases():
    import keras

    kernel, gamma, beta, bias = (keras.Variable(np.ones(3, dtype="float32"), name=name)
                                 for name in ("kernel", "gamma", "beta", "bias"))
    zero = [np.zeros(3, dtype="float32")] * 4  # Adam's own step is 0 for a zero gradient
    decayed = train_module.make_optimizer(TrainConfig(weight_decay=0.5), 0.1)
    decayed.apply_gradients(zip(zero, [kernel, gamma, beta, bias]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 1 - 0.1 * 0.5)
    for exempt in (gamma, beta, bias):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(exempt), 1.0)
    plain = train_module.make_optimizer(TrainConfig(), 0.1)
    assert type(plain) is keras.optimizers.Adam
    plain.apply_gradients(zip(zero[:1], [kernel]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 0.95)


def test_sgd_steps_with_nesterov_momentum_and_decays_only_kernels():
    import keras

    sgd = train_module.make_optimizer(TrainConfig(optimizer="sgd", momentum=0.5), 0.1)
    assert type(sgd) is keras.optimizers.SGD and sgd.nesterov
    weight = keras.Variable(np.zeros(2, dtype="float32"), name="kernel")
    for _ in range(2):
        sgd.apply_gradients([(np.ones(2, dtype="float32"), weight)])
    # gradient 1, velocity v <- 0.5 v - 0.1, Nesterov step 0.5 v - 0.1: -0.15 then -0.175
    # (plain momentum would step v itself: -0.1 then -0.15)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), -0.325, rtol=1e-6)

    decayed = train_module.make_optimizer(TrainConfig(optimizer="sgd", weight_decay=0.5), 0.1)
    kernel, gamma, beta, bias = (keras.Variable(np.ones(3, dtype="float32"), name=name)
                                 for name in ("kernel", "gamma", "beta", "bias"))
    decayed.apply_gradients(zip([np.zeros(3, dtype="float32")] * 4, [kernel, gamma, beta, bias]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), 1 - 0.1 * 0.5)
    for exempt in (gamma, beta, bias):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(exempt), 1.0)


def test_mutual_loss_is_each_members_cross_entropy_plus_the_kl_from_its_peers(rng):
    probabilities = rng.dirichlet(np.ones(8), size=(4, 3)).astype("float32")  # (batch, members, classes)
    target = np.eye(8, dtype="float32")[[0, 3, 3, 7]]
    smoothed = target * 0.9 + 0.1 / 8
    cross_entropy = -(smoothed[:, None] * np.log(probabilities)).sum(-1)
    peers = (probabilities.sum(1, keepdims=True) - probabilities) / 2
    divergence = (peers * np.log(peers / probabilities)).sum(-1)
    loss = MutualLoss(0.7, label_smoothing=0.1)(target, probabilities)
    np.testing.assert_allclose(float(loss), (cross_entropy + 0.7 * divergence).sum(1).mean(), rtol=1e-5)
    import keras

    # weight 0: the sum of the members' own losses, as each would train alone
    alone = sum(float(keras.losses.CategoricalCrossentropy()(target, probabilities[:, k])) for k in range(3))
    np.testing.assert_allclose(float(MutualLoss(0.0)(target, probabilities)), alone, rtol=1e-5)


def test_mutual_members_train_together_and_save_as_the_plain_ensemble(synthetic_dataset, tmp_path):
    import keras

    cfg = small_config(synthetic_dataset, train={"epochs": 2, "ensemble": 2, "mutual_weight": 1.0,
                                                 "warmup_epochs": 1, "train_on_val": False})
    split = load_split(prepare(cfg, progress=False).split_dir)
    model, history = fit(cfg, split, run_dir=tmp_path, verbose=0)
    assert list(history["epoch"]) == [1, 2] and "member" not in history
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    assert list(pd.read_csv(tmp_path / "history.csv")["epoch"]) == [0, 1]  # written live, by Keras
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    assert [m.name for m in members] == ["emotion_cnn_1", "emotion_cnn_2"]
    x = split.X_test[:5]
    assert not np.allclose(members[0].predict(x, verbose=0), members[1].predict(x, verbose=0))
    model.save(tmp_path / "mutual.keras")
    loaded = keras.models.load_model(tmp_path / "mutual.keras", safe_mode=True)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_mutual_loss_holds_the_peers_constant(rng):
    """The gradient reaches each member through its own probabilities only: the peers' mean is a
    target, as in deep mutual learning, not a second path that would pull the peers too."""
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the gradient is taken with TensorFlow's GradientTape")
    import tensorflow as tf

    probabilities = rng.dirichlet(np.ones(8), size=(4, 3)).astype("float32")
    target = np.eye(8, dtype="float32")[[1, 2, 5, 5]]
    y_pred = tf.Variable(probabilities)
    with tf.GradientTape() as tape:
        loss = MutualLoss(0.5)(target, y_pred)
    peers = (probabilities.sum(1, keepdims=True) - probabilities) / 2
    expected = (-target[:, None] / probabilities - 0.5 * peers / probabilities) / 4  # mean over the batch
    np.testing.assert_allclose(tape.gradient(loss, y_pred).numpy(), expected, rtol=1e-4)


def test_mutual_members_make_a_run_folder_through_train(synthetic_dataset, tmp_path):
    cfg = small_config(synthetic_dataset, train={"epochs": 1, "ensemble": 2, "mutual_weight": 1.0,
                                                 "warmup_epochs": 0})
    split_dir = prepare(cfg, progress=False).split_dir
    result = train_module.train(cfg, split_dir=split_dir, runs_dir=tmp_path / "runs", export=False, verbose=0)
    assert result.metrics["models"] == 2 and result.metrics["kept_epoch"] == [1]
    assert (result.run_dir / "metrics.json").is_file() and (result.run_dir / "model.keras").is_file()


def test_mutual_weight_pulls_the_members_predictions_together(rng):
    """Two small softmax members fitted side by side, from the same two starts with and without
    the KL term: with it they agree more than their own cross-entropies alone make them."""
    import keras

    x = rng.standard_normal((64, 6)).astype("float32")
    y = np.eye(8, dtype="float32")[rng.integers(0, 8, 64)]

    def disagreement(weight: float) -> float:
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6,))
        members = [keras.Model(inputs, keras.layers.Dense(8, activation="softmax")(inputs)) for _ in range(2)]
        together = train_module.stacked_members(members)
        together.compile(keras.optimizers.SGD(0.1), MutualLoss(weight))
        together.fit(x, y, batch_size=64, epochs=30, verbose=0)
        first, second = (member.predict(x, verbose=0) for member in members)
        return float(np.abs(first - second).sum(axis=1).mean())

    apart, pulled = disagreement(0.0), disagreement(3.0)
    assert pulled < 0.5 * apart


@pytest.mark.parametrize("setting, message", [({"schedule": "linear"}, "train.schedule"),
                                              ({"mutual_weight": -1.0}, "train.mutual_weight"),
                                              ({"mixstyle_p": 1.5}, "train.mixstyle_p"),
                                              ({"bag_drop_actors": 1}, "train.bag_drop_actors"),
                                              ({"mutual_weight": 1.0, "ensemble": 2, "bag_drop_actors": 2},
                                               "set one of them to 0"),
                                              ({"bag_drop_actors": -2}, "train.bag_drop_actors"),
                                              ({"mixstyle_p": 0.5, "mixstyle_alpha": 0.0}, "train.mixstyle_alpha"),
                                              ({"mutual_weight": 1.0, "ensemble": 1}, "train.ensemble >= 2"),
                                              ({"mutual_weight": 1.0, "ensemble": 2, "epochs": 3,
                                                "snapshot_epochs": [1]}, "train.snapshot_epochs=\\[\\]"),
                                              ({"mutual_weight": 1.0, "ensemble": 2, "intensity_weight": 0.5},
                                               "train.intensity_weight=0"),
                                              ({"ensemble": 0}, "train.ensemble"),
                                              ({"temporal_members": -1}, "train.temporal_members"),
                                              ({"average": "median"}, "train.average must be one of logits, "
                                               "probabilities, not 'median'"),
                                              ({"mutual_weight": 1.0, "ensemble": 2, "temporal_members": 1},
                                               "train.temporal_members=0"),
                                              ({"optimizer": "rmsprop"}, "train.optimizer must be one of adam, "
                                               "sgd, not 'rmsprop'"),
                                              ({"optimizer": "sgd", "momentum": 1.0}, "train.momentum"),
                                              ({"time_stretch": 1.0}, "train.time_stretch"),
                                              ({"freq_warp": -0.1}, "train.freq_warp"),
                                              ({"ema_momentum": 1.0}, "train.ema_momentum"),
                                              ({"weight_decay": -0.1}, "train.weight_decay"),
                                              ({"intensity_weight": -0.5}, "train.intensity_weight"),
                                              ({"ema_momentum": 0.99, "train_on_val": False, "restore_best": True},
                                               "restore_best=false"),
                                              ({"restore_best": True}, "train.train_on_val"),
                                              ({"epochs": 3, "snapshot_epochs": [3]}, "train.snapshot_epochs"),
                                              ({"epochs": 3, "snapshot_epochs": [1, 1]}, "train.snapshot_epochs"),
                                              ({"epochs": 3, "snapshot_epochs": [0]}, "train.snapshot_epochs"),
                                              ({"snapshot_epochs": [1], "ema_momentum": 0.9}, "ema_momentum=0"),
                                              ({"snapshot_epochs": [1], "train_on_val": False, "restore_best": True},
                                               "restore_best=false \\(which"),
                                              ({"epochs": 3, "snapshot_epochs": [1.5]}, "train.snapshot_epochs"),
                                              ({"epochs": 3, "snapshot_epochs": ["1"]}, "train.snapshot_epochs"),
                                              ({"train_on_val": True, "restore_best": False,
                                                "schedule": "plateau"}, "train.train_on_val")])
def test_fit_rejects_bad_training_settings(synthetic_dataset, setting, message):
    cfg = small_config(synthetic_dataset, train=setting)
    split = load_split(prepare(cfg, progress=False).split_dir)
    with pytest.raises(ValueError, match=message):
        fit(cfg, split, verbose=0)


def write_benchmark(project_root: Path, name: str, config: dict, *, date: str, folds: int = 6, **fields) -> None:
    """A benchmark report's metrics.json, as far as ``latest_benchmark`` reads it."""
    folder = project_root / "reports" / "benchmarks" / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"protocol": "emobox", "date": date, "config": config,
                                                     "folds": [{}] * folds, **fields}))


def test_sidecar_benchmark_is_the_newest_one_of_the_same_settings(project_root):
    from emotion_cnn.config import Config
    from emotion_cnn.train import latest_benchmark

    cfg = Config()

    def report(name, *, date, folds=6, **model):
        config = cfg.to_dict()
        config["model"].update(model)
        del config["model"]["utterance_norm"]  # written before that setting existed: its default
        write_benchmark(project_root, name, config, date=date, folds=folds,
                        mean={"ua": float(len(name))}, std={"ua": 1.0})

    assert latest_benchmark(cfg) is None
    report("2026-01-01-aaaa", date="2026-01-01")
    report("2026-02-01-bbbb", date="2026-02-01", dropout=0.45)  # newer, other settings
    report("2026-03-01-cccc", date="2026-03-01", folds=2)  # newer, not all folds
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-01-aaaa"
    cfg.model.dropout = 0.45
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-02-01-bbbb"
    cfg.seed = 7
    assert latest_benchmark(cfg) is None


def test_sidecar_benchmark_of_one_day_is_the_one_that_finished_last(project_root):
    """Two runs on one day: the folder names end in commit hashes, which say nothing of order."""
    from emotion_cnn.config import Config
    from emotion_cnn.train import latest_benchmark

    cfg = Config()
    for name, finished in [("2026-01-01-ffff", None), ("2026-01-01-bbbb", "2026-01-01T15:00:00+00:00"),
                           ("2026-01-01-aaaa", "2026-01-01T16:00:00+00:00")]:
        write_benchmark(project_root, name, cfg.to_dict(), date="2026-01-01",
                        **({"finished": finished} if finished else {}))
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-01-aaaa"


def test_sidecar_benchmark_prefers_a_run_on_the_backend_that_trains(project_root, monkeypatch):
    from emotion_cnn.config import Config
    from emotion_cnn.train import latest_benchmark

    cfg = Config()
    write_benchmark(project_root, "2026-01-01-cpu", cfg.to_dict(), date="2026-01-01",
                    hardware="AMD EPYC, 2 cores, keras 3.15.1 (tensorflow)")
    write_benchmark(project_root, "2026-01-02-gpu", cfg.to_dict(), date="2026-01-02",
                    hardware="NVIDIA H200 with Intel Xeon, 16 cores, keras 3.15.1 (jax)")
    monkeypatch.setattr("keras.backend.backend", lambda: "tensorflow")
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-01-cpu"  # older, but this backend
    monkeypatch.setattr("keras.backend.backend", lambda: "jax")
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-02-gpu"
    monkeypatch.setattr("keras.backend.backend", lambda: "torch")  # no run of its own: the newest
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-02-gpu"
    # newer reports name their backend in a field of its own, which wins over the hardware string
    write_benchmark(project_root, "2026-01-03-torch", cfg.to_dict(), date="2026-01-03",
                    hardware="AMD EPYC, 2 cores, keras 3.15.1 (tensorflow)", backend="torch")
    monkeypatch.setattr("keras.backend.backend", lambda: "tensorflow")
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-01-cpu"  # not the newer torch run
    monkeypatch.setattr("keras.backend.backend", lambda: "torch")
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-03-torch"


@pytest.mark.parametrize("section, missing, as_it_ran", [
    # before round 5: the best epoch restored, 16 training actors
    ("train", ("train_on_val", "restore_best"), (False, True)),
    # before round 12: no recurrent part
    ("model", ("recurrent_units",), (0,)),
])
def test_sidecar_benchmark_reads_old_reports_as_they_ran(project_root, section, missing, as_it_ran):
    """A report written before a setting existed ran with that setting's old value, so it must
    not pass for today's defaults, only for a config with the old value."""
    from emotion_cnn.config import Config
    from emotion_cnn.train import latest_benchmark

    cfg = Config()
    config = cfg.to_dict()
    for name in missing:
        del config[section][name]
    write_benchmark(project_root, "2026-01-01-old", config, date="2026-01-01")
    assert latest_benchmark(cfg) is None
    for name, value in zip(missing, as_it_ran):
        setattr(getattr(cfg, section), name, value)
    assert latest_benchmark(cfg)["report"] == "reports/benchmarks/2026-01-01-old"


def test_run_folders_started_in_the_same_second_do_not_collide(tmp_path, monkeypatch):
    class FrozenClock:
        @staticmethod
        def now():
            return datetime(2026, 11, 25, 19, 51, 17)

    monkeypatch.setattr(train_module, "datetime", FrozenClock)
    split = SimpleNamespace(directory=Path("splits/emobox-fold1"))
    first, second = new_run_dir(split, runs_dir=tmp_path), new_run_dir(split, runs_dir=tmp_path)
    assert (first.name, second.name) == ("20261125-195117-emobox-fold1", "20261125-195117-emobox-fold1-2")
    # another training creating the folder between a check and the mkdir: mkdir itself must decide
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert new_run_dir(split, runs_dir=tmp_path).name == "20261125-195117-emobox-fold1-3"
