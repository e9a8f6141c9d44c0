import keras
import numpy as np
import pytest
from keras import layers

from emotion_cnn.fused_batchnorm import fused_batchnorm

on_tensorflow = keras.backend.backend() == "tensorflow"


def small_model(*, center: bool = True, scale: bool = True) -> keras.Model:
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 10, 1))
    x = layers.Conv2D(4, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization(center=center, scale=scale, name="bn")(x)
    x = layers.Activation("relu")(x)
    outputs = layers.Dense(3, activation="softmax")(layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    # plain SGD with rate 1: a step's weight change is exactly minus the gradient
    model.compile(keras.optimizers.SGD(1.0), "categorical_crossentropy")
    return model


def trained_weights(rng, *, fused: bool, **kwargs) -> tuple[list[np.ndarray], np.ndarray]:
    X = (3 * rng.standard_normal((8, 6, 10, 1)) + 2).astype("float32")
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, 8)]
    model = small_model(**kwargs)
    with fused_batchnorm(fused) as used:
        assert used is (fused and on_tensorflow)
        for _ in range(3):
            model.train_on_batch(X, y)
    return [np.asarray(w) for w in model.weights], np.asarray(model.predict_on_batch(X))


@pytest.mark.parametrize("center, scale", [(True, True), (False, False)])
def test_training_matches_keras_own_batchnorm(center, scale):
    stock, stock_out = trained_weights(np.random.default_rng(1), fused=False, center=center, scale=scale)
    fused, fused_out = trained_weights(np.random.default_rng(1), fused=True, center=center, scale=scale)
    # kernels, gamma and beta (the gradients), moving mean and biased variance, and inference
    assert len(stock) == len(fused)
    for a, b in zip(stock, fused):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stock_out, fused_out, rtol=1e-4, atol=1e-6)
    assert not np.allclose(stock[0], small_model().weights[0])  # the steps did train


@pytest.mark.skipif(not on_tensorflow, reason="the fused kernel is TensorFlow's")
def test_keras_own_call_is_back_after_the_block_and_after_an_error():
    stock_call = layers.BatchNormalization.call
    with fused_batchnorm() as used:
        assert used and layers.BatchNormalization.call is not stock_call
        with fused_batchnorm() as inner:  # nested: the outer block restores
            assert inner
        with fused_batchnorm(False) as inner:  # the outer block's kernel is still on: say so
            assert inner
        assert layers.BatchNormalization.call is not stock_call
    assert layers.BatchNormalization.call is stock_call
    with pytest.raises(RuntimeError), fused_batchnorm():
        raise RuntimeError("a failed fit")
    assert layers.BatchNormalization.call is stock_call


@pytest.mark.skipif(not on_tensorflow, reason="the fused kernel is TensorFlow's")
def test_cases_the_kernel_does_not_cover_run_keras_own_code():
    x = np.random.default_rng(2).standard_normal((4, 5, 3)).astype("float32")  # 3-D: no fused kernel
    bn = layers.BatchNormalization(momentum=0.5)
    stock = np.asarray(bn(x, training=True))
    moving = np.asarray(bn.moving_mean)
    bn2 = layers.BatchNormalization(momentum=0.5)
    with fused_batchnorm():
        fused = np.asarray(bn2(x, training=True))
    np.testing.assert_array_equal(stock, fused)
    np.testing.assert_array_equal(moving, np.asarray(bn2.moving_mean))


def test_does_nothing_when_disabled():
    stock_call = layers.BatchNormalization.call
    with fused_batchnorm(False) as used:
        assert used is False
        assert layers.BatchNormalization.call is stock_call
