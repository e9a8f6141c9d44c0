import json

import numpy as np
import pandas as pd
import pytest
from conftest import small_config

from emotion_cnn.config import TrainConfig
from emotion_cnn.prepare import prepare
from emotion_cnn.train import AugmentedBatches, class_weights, fit, load_split


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
    for key in ("wa", "ua", "macro_f1", "per_actor", "per_intensity", "seconds_per_epoch", "parameters"):
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


def test_same_seed_same_metrics(synthetic_dataset):
    cfg = small_config(synthetic_dataset, train={"epochs": 2})
    split = load_split(prepare(cfg, progress=False).split_dir)
    _, first = fit(cfg, split, verbose=0)
    _, second = fit(cfg, split, verbose=0)
    cols = ["loss", "accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(first[cols], second[cols])


def test_train_without_split_says_what_to_do(project_root):
    from emotion_cnn.train import train

    with pytest.raises(FileNotFoundError, match="emotion-cnn prepare"):
        train(small_config(project_root))
