import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from emotion_cnn.config import ModelConfig
from emotion_cnn.model import adapt_normalization, build_model, recalibrate_batch_norm


def test_build_model_shapes_and_stock_layers():
    model = build_model((32, 63), 8, ModelConfig(filters=[8, 16]))
    assert model.input_shape == (None, 32, 63)
    assert model.output_shape == (None, 8)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "Lambda" not in kinds
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)


def test_outputs_are_probabilities(rng):
    model = build_model((32, 63), 5, ModelConfig(filters=[8]))
    probs = np.asarray(model.predict(rng.standard_normal((4, 32, 63)).astype("float32"), verbose=0))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_block_dropout_drops_units_after_each_block_only_while_training(rng):
    import keras

    model = build_model((16, 40), 4, ModelConfig(filters=[4, 8], block_dropout=0.5, recurrent_units=0))
    assert [layer.name for layer in model.layers if layer.name.endswith("_dropout")] == [
        "block1_dropout", "block2_dropout"]
    assert not any(layer.name.endswith("_dropout")
                   for layer in build_model((16, 40), 4, ModelConfig(filters=[4, 8])).layers)
    pooled = keras.Model(model.input, model.get_layer("block1_dropout").output)
    X = rng.standard_normal((2, 16, 40)).astype("float32")
    kept = np.asarray(pooled(X, training=True))
    assert 0.3 < np.mean(kept == 0) - np.mean(np.asarray(pooled(X, training=False)) == 0) < 0.7
    np.testing.assert_array_equal(model.predict(X, verbose=0), model.predict(X, verbose=0))


def test_recalibrated_batch_norm_holds_the_statistics_of_its_input_over_the_clips(rng, tmp_path):
    import keras

    model = build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_units=4))
    X = (rng.standard_normal((70, 16, 40)) * 3 + 1).astype("float32")
    adapt_normalization(model, X)
    before = model.predict(X[:5], verbose=0)
    recalibrate_batch_norm(model, X, batch_size=32)  # 70 clips: the last batch is short
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) == 2
    for layer in norms:
        # each layer's input as the model computes it at inference, the layers before recalibrated
        inputs = np.asarray(keras.Model(model.input, layer.input).predict(X, verbose=0), np.float64)
        inputs = inputs.reshape(-1, inputs.shape[-1])
        np.testing.assert_allclose(np.asarray(layer.moving_mean), inputs.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(layer.moving_variance), inputs.var(axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(model.predict(X[:5], verbose=0), before)
    from emotion_cnn.train import average_models
    with pytest.raises(ValueError, match="recalibrate each member"):
        recalibrate_batch_norm(average_models([model, build_model((16, 40), 4, ModelConfig(filters=[4]))],
                                              average="probabilities"), X)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(X[:5], verbose=0), model.predict(X[:5], verbose=0), atol=1e-6)


def test_residual_blocks_add_each_blocks_input_before_its_last_relu(rng):
    import keras

    model = build_model((16, 40), 4, ModelConfig(filters=[4, 4], convs_per_block=2, residual=True,
                                                 recurrent_units=0))
    # block 1 goes from 1 channel to 4 through a 1x1 conv; block 2 keeps 4, so its input adds as it is
    assert [layer.name for layer in model.layers if "shortcut" in layer.name] == [
        "block1_shortcut", "block1_shortcut_bn"]
    X = rng.standard_normal((3, 16, 40)).astype("float32")
    add = model.get_layer("block2_add")
    block_input, last_bn = (keras.Model(model.input, tensor).predict(X, verbose=0)
                            for tensor in (model.get_layer("block1_pool").output, model.get_layer("block2_bn2").output))
    np.testing.assert_allclose(keras.Model(model.input, add.output).predict(X, verbose=0),
                               block_input + last_bn, rtol=1e-5, atol=1e-6)
    plain = build_model((16, 40), 4, ModelConfig(filters=[4, 4], convs_per_block=2, recurrent_units=0))
    assert not any(layer.name.endswith("_add") for layer in plain.layers)


def test_pitch_rows_are_read_by_their_own_branch_and_the_rest_by_the_cnn(rng):
    import keras

    model = build_model((18, 40), 4, ModelConfig(filters=[4, 8], pitch_rows=2, recurrent_units=0))
    assert model.get_layer("block1_conv1").input.shape[1:3] == (16, 40)  # the mel bands only
    assert model.get_layer("pitch_conv1").input.shape[1:] == (40, 2)  # frames x pitch rows
    X = rng.standard_normal((3, 18, 40)).astype("float32")
    adapt_normalization(model, X)
    mel_part = keras.Model(model.input, model.get_layer("mean_flat").output)
    pitch_part = keras.Model(model.input, model.get_layer("pitch_mean").output)
    changed = X.copy()
    changed[:, :2] += 5.0  # the pitch rows move; the mel branch must not see it
    np.testing.assert_allclose(mel_part.predict(changed, verbose=0), mel_part.predict(X, verbose=0), atol=1e-6)
    assert not np.allclose(pitch_part.predict(changed, verbose=0), pitch_part.predict(X, verbose=0))
    for pitch_rows in (2, -1):
        with pytest.raises(ValueError, match="model.pitch_rows must be 0 or more and leave mel bands"):
            build_model((2, 40), 4, ModelConfig(filters=[4], pitch_rows=pitch_rows))


@pytest.mark.parametrize("options", [{"pooling": "time"}, {"pooling": "attention"}, {"pooling": "global"},
                                     {"recurrent_units": 4, "recurrent_block": -2}])
def test_the_pitch_branch_joins_the_pooled_features_in_every_pooling(options):
    model = build_model((18, 40), 4, ModelConfig(filters=[4, 8], pitch_rows=2, **options))
    joined = model.get_layer("stats_pool").input
    for name in ("pitch_mean", "pitch_max"):
        assert any(tensor is model.get_layer(name).output for tensor in joined)


def test_normalization_adapts_per_mel_band(rng):
    X = (rng.standard_normal((50, 16, 20)) * np.arange(1, 17)[None, :, None] + 5).astype("float32")
    model = build_model((16, 20), 3, ModelConfig(filters=[4]))
    adapt_normalization(model, X)
    layer = model.get_layer("normalize")
    mean = np.asarray(layer.mean).reshape(-1)
    np.testing.assert_allclose(mean, X.mean(axis=(0, 2)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("utterance_norm", [True, False])
def test_utterance_norm_ignores_a_clips_constant_spectrum(rng, utterance_norm):
    """A per-band offset of one clip (a louder band for the whole clip: a speaker's timbre or
    a microphone) is removed by the per-clip mean, and only by it."""
    X = rng.standard_normal((20, 16, 24)).astype("float32")
    model = build_model((16, 24), 4, ModelConfig(filters=[4, 8], utterance_norm=utterance_norm))
    adapt_normalization(model, X)
    offset = rng.uniform(-3, 3, size=(1, 16, 1)).astype("float32")
    before, after = (np.asarray(model.predict(x, verbose=0)) for x in (X[:4], X[:4] + offset))
    assert np.allclose(before, after, atol=1e-5) == utterance_norm


def test_attention_pooling_is_a_weighted_mean_over_time(rng):
    """Per mel row and channel, the attention summary is a convex combination of the frames:
    the weights sum to one over time, so it lies between the frames' minimum and maximum."""
    import keras

    model = build_model((16, 40), 4, ModelConfig(filters=[4, 8], pooling="attention"))
    X = rng.standard_normal((3, 16, 40)).astype("float32")
    probe = keras.Model(model.input, [model.get_layer(name).output for name in
                                      ("block2_pool", "attention_weights", "attention_sum")])
    feature_map, weights, summary = (np.asarray(a) for a in probe.predict(X, verbose=0))
    np.testing.assert_allclose(weights.sum(axis=2), 1.0, rtol=1e-5)
    np.testing.assert_allclose(summary[:, :, 0], (weights * feature_map).sum(axis=2), rtol=1e-4, atol=1e-5)
    assert np.all(summary[:, :, 0] <= feature_map.max(axis=2) + 1e-5)
    assert np.all(summary[:, :, 0] >= feature_map.min(axis=2) - 1e-5)
    assert not np.allclose(summary[:, :, 0], feature_map.mean(axis=2), atol=1e-4)  # not uniform


@pytest.mark.parametrize("recurrent_block, block_map", [(-1, "block2_pool"), (-2, "block1_pool")])
def test_recurrent_summary_reads_the_frames_in_time_order(rng, recurrent_block, block_map):
    """The GRU's sequence is the chosen block's map frame by frame (every mel row and channel of
    a frame in one step), and its final states join the pooled features."""
    import keras

    plain = build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_units=0))
    with_gru = build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_units=6,
                                                    recurrent_block=recurrent_block))
    assert with_gru.get_layer("stats_pool").output.shape[-1] == (
        plain.get_layer("stats_pool").output.shape[-1] + 2 * 6)
    probe = keras.Model(with_gru.input, [with_gru.get_layer(name).output
                                         for name in (block_map, "frames_as_sequence")])
    feature_map, sequence = (np.asarray(a) for a in
                             probe.predict(rng.standard_normal((2, 16, 40)).astype("float32"), verbose=0))
    batch, rows, frames, channels = feature_map.shape  # block 2: (2, 4, 10, 8); block 1: (2, 8, 20, 4)
    assert frames == {-1: 10, -2: 20}[recurrent_block]
    np.testing.assert_array_equal(
        sequence, feature_map.transpose(0, 2, 1, 3).reshape(batch, frames, rows * channels))


def test_stacked_recurrent_layers_feed_the_last_one_the_sequence(rng):
    """With two layers the first GRU returns one state pair per frame, which the second (the
    one whose final states join the pooled features) reads; the summary width is unchanged."""
    one = build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_units=6))
    two = build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_units=6, recurrent_layers=2))
    assert two.get_layer("recurrent_stack1").output.shape[1:] == (10, 2 * 6)  # 10 frames after block 2
    assert two.get_layer("recurrent").input.shape[1:] == (10, 2 * 6)
    assert two.get_layer("stats_pool").output.shape == one.get_layer("stats_pool").output.shape
    assert two.count_params() > one.count_params()
    assert "recurrent_stack1" not in {layer.name for layer in one.layers}


def test_zero_recurrent_layers_are_refused():
    with pytest.raises(ValueError, match="model.recurrent_layers must be 1 or more, not 0"):
        build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_layers=0))


@pytest.mark.parametrize("recurrent_block", [0, -3, 1])
def test_recurrent_block_outside_the_model_is_refused(recurrent_block):
    with pytest.raises(ValueError, match=f"model.recurrent_block must be -1 .* to -2 .*not {recurrent_block}"):
        build_model((16, 40), 4, ModelConfig(filters=[4, 8], recurrent_block=recurrent_block))


def test_temporal_blocks_see_every_band_of_a_few_frames(rng):
    """With ``temporal`` a change in one mel band at one frame reaches every channel of the first
    conv's output, at that frame and the 2 frames on each side only (4 with ``temporal_kernel``
    9); the 2-D default's stays within 1 band and 1 frame of it."""
    import keras

    X = rng.standard_normal((1, 16, 40)).astype("float32")
    nudged = X.copy()
    nudged[0, 5, 20] += 3.0
    for temporal, kernel, changed_frames in ((True, 5, [18, 19, 20, 21, 22]), (True, 9, list(range(16, 25))),
                                             (False, 5, [19, 20, 21])):
        model = build_model((16, 40), 4, ModelConfig(filters=[6, 8], temporal=temporal, temporal_kernel=kernel))
        adapt_normalization(model, rng.standard_normal((8, 16, 40)))
        probe = keras.Model(model.input, model.get_layer("block1_conv1").output)
        delta = np.abs(np.asarray(probe(nudged)) - np.asarray(probe(X)))[0] > 1e-6
        if temporal:  # (frames, channels)
            assert np.flatnonzero(delta.any(axis=1)).tolist() == changed_frames
            assert delta[20].all()
        else:  # (bands, frames, channels)
            assert np.flatnonzero(delta.any(axis=(0, 2))).tolist() == changed_frames
            assert np.flatnonzero(delta.any(axis=(1, 2))).tolist() == [4, 5, 6]
    assert model.get_layer("block2_pool").output.shape[1:] == (4, 10, 8)
    temporal_model = build_model((16, 40), 4, ModelConfig(filters=[6, 8], temporal=True))
    assert temporal_model.get_layer("block2_pool").output.shape[1:] == (10, 8)


@pytest.mark.parametrize("options, message", [({"residual": True, "convs_per_block": 2}, "one conv a block"),
                                               ({"residual": True}, "no residual connections"),
                                               ({"convs_per_block": 2}, "one conv a block"),
                                               ({"pooling": "attention"}, "pooling 'time' or 'global'"),
                                               ({"temporal_kernel": 0}, "model.temporal_kernel .* not 0")])
def test_temporal_refuses_what_it_does_not_build(options, message):
    with pytest.raises(ValueError, match=message):
        build_model((16, 40), 4, ModelConfig(filters=[4], temporal=True, **options))


def test_unknown_pooling_is_refused():
    with pytest.raises(ValueError, match="model.pooling.*'median'"):
        build_model((16, 40), 4, ModelConfig(filters=[4], pooling="median"))


@pytest.mark.parametrize("options", [{"pooling": "attention"}, {"recurrent_units": 4},
                                     {"recurrent_units": 4, "recurrent_block": -2},
                                     {"recurrent_units": 4, "recurrent_layers": 2},
                                     {"recurrent_units": 0}, {"pooling": "global"},
                                     {"block_dropout": 0.2},
                                     {"convs_per_block": 2, "residual": True}, {"pitch_rows": 2},
                                     {"temporal": True}, {"temporal": True, "pitch_rows": 2,
                                                          "recurrent_block": -2}])
def test_every_model_option_saves_and_loads_in_safe_mode(rng, tmp_path, options):
    import keras

    model = build_model((16, 40), 4, ModelConfig(filters=[4, 8], **options))
    assert "Lambda" not in {type(layer).__name__ for layer in model.layers}
    X = rng.standard_normal((3, 16, 40)).astype("float32")
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(again.predict(X, verbose=0), model.predict(X, verbose=0), atol=1e-6)


def test_saved_model_loads_without_the_package(tiny_model, tmp_path):
    """Plain keras.models.load_model, safe mode, in a fresh Python that never imports emotion_cnn."""
    model_path, result = tiny_model
    from emotion_cnn.train import load_split

    split = load_split(result.metrics["split"])
    np.save(tmp_path / "x.npy", split.X_test)
    expected = np.asarray(result.model.predict(split.X_test, verbose=0))
    script = textwrap.dedent(f"""
        import sys, numpy as np, keras
        model = keras.models.load_model({str(model_path)!r}, safe_mode=True)
        np.save({str(tmp_path / 'p.npy')!r}, model.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0))
        assert not any(m.startswith("emotion_cnn") for m in sys.modules), "package was imported"
    """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)
    info = json.loads(model_path.with_suffix(".json").read_text())
    assert info["labels"][0] == "neutral" and len(info["labels"]) == 8
    assert info["features"]["n_mels"] == 32
    assert info["model"]["filters"] == [8, 16] and info["train"]["epochs"] == 25
    assert info["input_shape"] == list(split.X_test.shape[1:])


@pytest.mark.slow
def test_model_code_runs_on_jax(tmp_path):
    pytest.importorskip("jax")
    script = textwrap.dedent(f"""
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        from pathlib import Path
        import pandas as pd
        from emotion_cnn.config import config_from_dict
        from emotion_cnn.train import Split, fit
        rng = np.random.default_rng(0)
        X = rng.standard_normal((48, 16, 24)).astype("float32")
        y = np.arange(48) % 8
        split = Split(Path("synthetic"), X, y, X[:16], y[:16], X[:16], y[:16],
                      [str(i) for i in range(8)], pd.DataFrame(), {{}})
        cfg = config_from_dict({{"model": {{"filters": [4, 8], "temporal_filters": [8, 8]}},
                                 "train": {{"epochs": 2, "batch_size": 16, "ensemble": 2, "temporal_members": 1}}}})
        model, history = fit(cfg, split, verbose=0)
        assert history["member"].tolist() == [1, 1, 2, 2, 3, 3]  # the third the temporal member
        model.save({str(tmp_path / 'm.keras')!r})
        again = keras.models.load_model({str(tmp_path / 'm.keras')!r})
        np.testing.assert_allclose(again.predict(X[:4], verbose=0), model.predict(X[:4], verbose=0), atol=1e-5)
        from emotion_cnn.config import ModelConfig
        from emotion_cnn.model import build_model
        options = build_model((16, 24), 8, ModelConfig(filters=[4, 8], pooling="attention",
                                                       recurrent_units=4))
        assert options.predict(X[:4], verbose=0).shape == (4, 8)
        print("JAX OK")
    """)
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "KERAS_BACKEND": "jax"},
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "JAX OK" in out.stdout
