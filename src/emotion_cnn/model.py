"""The CNN: log-mel ``(n_mels, n_frames)`` in, emotion probabilities out.

Built from stock Keras 3 layers only (no Lambda, no custom classes), so a saved model loads
with plain ``keras.models.load_model`` in safe mode, under any backend, without this package.
Input normalisation is a ``Normalization`` layer inside the model: per mel band mean and
variance, adapted on the training split by :func:`adapt_normalization`.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, regularizers

from emotion_cnn.config import ModelConfig


def build_model(input_shape: tuple[int, int], num_classes: int,
                config: ModelConfig | None = None) -> keras.Model:
    """A 2-D CNN over a log-mel spectrogram.

    Each block is ``convs_per_block`` x (3x3 conv, batch norm, ReLU), then 2x2 max pooling
    (and dropout with ``block_dropout``); with ``residual`` the block's input is added before
    its last ReLU.
    The last block's map is pooled by both mean and max over time only
    (``pooling="time"``), so the classifier still knows in which frequency band the energy
    lies (pitch height matters for emotion), by a learned attention-weighted mean and the max
    over time (``pooling="attention"``), or over time and frequency (``pooling="global"``).
    With ``recurrent_units`` a bidirectional GRU also reads a block's map frame by frame (the
    last block's, or an earlier, longer one's with ``recurrent_block``) and its final states
    join the pooled features; with ``recurrent_layers`` > 1, stacked GRUs read it, each the
    sequence of the one before. With ``pitch_rows`` the input's first rows are per-frame pitch
    features, read by two 1-D convs over time whose mean and max join the pooled features; the
    CNN reads the rest. Then dropout, a dense layer of logits (``emotion_logits``) and the
    softmax (``emotion``). With ``utterance_norm`` each clip's mean per mel band (over its
    frames) is subtracted after the normalisation. With ``temporal`` the blocks are 1-D convs
    over time (``temporal_kernel`` frames) that read the mel bands as channels, then 2x max
    pooling over time; pooling and the GRU read their frames.

    Parameters
    ----------
    input_shape : (n_mels, n_frames)
    num_classes : int
    config : ModelConfig, optional
        Filters per block, convs per block, pooling, the GRU, dropout (before the classifier and
        after each block) and L2 weight decay.

    Returns
    -------
    keras.Model
        Input shape ``(batch, n_mels, n_frames)``, output ``(batch, num_classes)``
        probabilities. Its ``normalize`` layer still needs :func:`adapt_normalization`.
    """
    config = config or ModelConfig()
    l2 = regularizers.L2(config.l2) if config.l2 else None
    inputs = keras.Input(shape=tuple(input_shape), name="log_mel")
    x = layers.Reshape((*input_shape, 1), name="add_channel")(inputs)
    x = layers.Normalization(axis=1, name="normalize")(x)
    summaries = []
    if config.pitch_rows:
        # the first rows are per-frame pitch features (benchmarks/export_pitch.py): read over
        # time by their own 1-D convs, not pooled with the lowest mel bands
        rows, frames = input_shape[0] - config.pitch_rows, input_shape[1]
        if config.pitch_rows < 0 or rows < 1:
            raise ValueError(f"model.pitch_rows must be 0 or more and leave mel bands of the "
                             f"{input_shape[0]} rows, not {config.pitch_rows}")
        pitch = layers.Cropping2D(((0, rows), (0, 0)), name="pitch_rows")(x)
        pitch = layers.Permute((2, 1), name="pitch_time_first")(
            layers.Reshape((config.pitch_rows, frames), name="pitch_drop_channel")(pitch))
        for conv in (1, 2):
            pitch = layers.Conv1D(32, 5, padding="same", activation="relu", kernel_regularizer=l2,
                                  name=f"pitch_conv{conv}")(pitch)
        summaries += [layers.GlobalAveragePooling1D(name="pitch_mean")(pitch),
                      layers.GlobalMaxPooling1D(name="pitch_max")(pitch)]
        x = layers.Cropping2D(((config.pitch_rows, 0), (0, 0)), name="mel_rows")(x)
        input_shape = (rows, frames)
    if config.utterance_norm:
        clip_mean = layers.AveragePooling2D((1, input_shape[1]), name="clip_mean")(x)
        x = layers.Subtract(name="subtract_clip_mean")([x, clip_mean])
    if config.recurrent_layers < 1:
        raise ValueError(f"model.recurrent_layers must be 1 or more, not {config.recurrent_layers}")
    if not -len(config.filters) <= config.recurrent_block <= -1:
        raise ValueError(f"model.recurrent_block must be -1 (the last block) to "
                         f"-{len(config.filters)} (the first), not {config.recurrent_block}")
    if config.temporal:
        if config.residual or config.convs_per_block != 1:
            raise ValueError("model.temporal has one conv a block and no residual connections (the kind "
                             "rounds 40-41 scored)")
        if config.pooling not in ("time", "global"):
            raise ValueError(f"model.temporal pools over time only: pooling 'time' or 'global', not {config.pooling!r}")
        if config.temporal_kernel < 1:
            raise ValueError(f"model.temporal_kernel is the frames a temporal conv sees: 1 or more, not "
                             f"{config.temporal_kernel}")
        rows, frames = input_shape
        x = layers.Reshape((frames, rows), name="bands_as_channels")(
            layers.Permute((2, 1, 3), name="time_first_input")(x))
        conv_layer, kernel, pooling_layer = layers.Conv1D, config.temporal_kernel, layers.MaxPooling1D
    else:
        conv_layer, kernel, pooling_layer = layers.Conv2D, 3, layers.MaxPooling2D
    block_maps = []
    for block, filters in enumerate(config.filters, start=1):
        block_input = x
        for conv in range(1, config.convs_per_block + 1):
            x = conv_layer(filters, kernel, padding="same", use_bias=False, kernel_regularizer=l2,
                           name=f"block{block}_conv{conv}")(x)
            x = layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
            if config.residual and conv == config.convs_per_block:
                # the block's input joins before the last ReLU, through a 1x1 conv where the
                # channel count changes (He et al. 2016)
                if block_input.shape[-1] != filters:
                    block_input = layers.BatchNormalization(name=f"block{block}_shortcut_bn")(
                        conv_layer(filters, 1, use_bias=False, kernel_regularizer=l2,
                                   name=f"block{block}_shortcut")(block_input))
                x = layers.Add(name=f"block{block}_add")([x, block_input])
            x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
        x = pooling_layer(2, name=f"block{block}_pool")(x)
        if config.block_dropout:
            x = layers.Dropout(config.block_dropout, name=f"block{block}_dropout")(x)
        block_maps.append(x)  # (batch, mel rows, frames, channels); temporal: (batch, frames, channels)
    frames = x.shape[1 if config.temporal else 2]
    if config.temporal:
        summaries += [layers.GlobalAveragePooling1D(name="mean_pool")(x),
                      layers.GlobalMaxPooling1D(name="max_pool")(x)]
    elif config.pooling == "time":
        summaries += [
            layers.Flatten(name="mean_flat")(layers.AveragePooling2D((1, frames), name="mean_pool")(x)),
            layers.Flatten(name="max_flat")(layers.MaxPooling2D((1, frames), name="max_pool")(x)),
        ]
    elif config.pooling == "attention":
        # a learned weight per frame and mel row (softmax over time) instead of the plain mean:
        # the frames that carry the emotion count most
        scores = layers.Conv2D(1, 1, name="attention_scores")(x)
        weights = layers.Softmax(axis=2, name="attention_weights")(scores)
        weighted = layers.Multiply(name="attention_weighted")([x, weights])
        weighted_sum = layers.Rescaling(float(frames), name="attention_sum")(
            layers.AveragePooling2D((1, frames), name="attention_pool")(weighted))
        summaries += [
            layers.Flatten(name="attention_flat")(weighted_sum),
            layers.Flatten(name="max_flat")(layers.MaxPooling2D((1, frames), name="max_pool")(x)),
        ]
    elif config.pooling == "global":
        summaries += [layers.GlobalAveragePooling2D(name="mean_pool")(x),
                      layers.GlobalMaxPooling2D(name="max_pool")(x)]
    else:
        raise ValueError("model.pooling must be 'time', 'attention' or 'global', "
                         f"not {config.pooling!r}")
    if config.recurrent_units:
        sequence = block_maps[config.recurrent_block]
        if not config.temporal:
            rows, steps, channels = sequence.shape[1:]
            sequence = layers.Reshape((steps, rows * channels), name="frames_as_sequence")(
                layers.Permute((2, 1, 3), name="time_first")(sequence))
        for layer in range(1, config.recurrent_layers):
            sequence = layers.Bidirectional(layers.GRU(config.recurrent_units, return_sequences=True),
                                            name=f"recurrent_stack{layer}")(sequence)
        summaries.append(layers.Bidirectional(layers.GRU(config.recurrent_units),
                                              name="recurrent")(sequence))
    x = layers.Concatenate(name="stats_pool")(summaries)
    x = layers.Dropout(config.dropout, name="dropout")(x)
    # the logits apart from the softmax, so an ensemble can average them (train.average)
    logits = layers.Dense(num_classes, kernel_regularizer=l2, name="emotion_logits")(x)
    outputs = layers.Activation("softmax", name="emotion")(logits)
    return keras.Model(inputs, outputs, name="emotion_cnn")


def adapt_normalization(model: keras.Model, X_train: np.ndarray) -> None:
    """Set the model's per-mel-band normalisation from training features ``(n, n_mels, n_frames)``."""
    model.get_layer("normalize").adapt(np.asarray(X_train, dtype=np.float32)[..., None])


def recalibrate_batch_norm(model: keras.Model, X: np.ndarray, *, batch_size: int = 64) -> None:
    """Set every batch-norm layer's moving mean and variance to the statistics of its input over
    the clean clips ``X`` ``(n, n_mels, n_frames)``, layer by layer in order, each with the ones
    before already set ("precise BN", Wu and Johnson 2021). Training leaves moving averages of
    augmented batches (masked, shifted, mixed up), whose statistics differ from the clean
    clips the model then predicts."""
    for layer in model.layers:
        if isinstance(layer, keras.Model) and any(isinstance(inner, (layers.BatchNormalization, keras.Model))
                                                  for inner in layer.layers):
            raise ValueError(f"recalibrate_batch_norm: {model.name} holds {layer.name}, a nested model "
                             "with batch norm (an ensemble?): recalibrate each member before joining them")
        if not isinstance(layer, layers.BatchNormalization):
            continue
        if layer.axis not in (-1, len(layer.input.shape) - 1):
            raise ValueError(f"recalibrate_batch_norm: {layer.name} normalises axis {layer.axis}, "
                             "not the last (channels) axis")
        probe = keras.Model(model.input, layer.input)
        total = total_squares = 0.0
        count = 0
        for start in range(0, len(X), batch_size):
            batch = np.asarray(probe(np.asarray(X[start:start + batch_size], np.float32), training=False),
                               dtype=np.float64)
            batch = batch.reshape(-1, batch.shape[-1])  # channels last
            total = total + batch.sum(axis=0)
            total_squares = total_squares + np.square(batch).sum(axis=0)
            count += len(batch)
        mean = total / count
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(total_squares / count - np.square(mean), 0.0).astype(np.float32))


def with_intensity_head(model: keras.Model) -> keras.Model:
    """A training-only twin of ``model`` with a second output: the same layers and weights,
    plus one sigmoid unit that reads what the ``emotion_logits`` layer reads (the pooled features
    after dropout) and says whether the clip was acted with strong intensity. Fitting the twin trains
    ``model``; the head stays out of ``model``, which is what is saved.

    Returns
    -------
    keras.Model
        Outputs ``{"emotion": (batch, num_classes), "intensity": (batch, 1)}``.
    """
    strong = layers.Dense(1, activation="sigmoid", name="intensity")(model.get_layer("emotion_logits").input)
    return keras.Model(model.input, {"emotion": model.output, "intensity": strong},
                       name=f"{model.name}_with_intensity")
