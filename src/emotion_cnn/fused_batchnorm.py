"""TensorFlow's fused batch-norm kernel for training steps, with the layer itself left stock.

Keras 3 on TensorFlow trains ``BatchNormalization`` with separate operations
(``tf.nn.moments``, then ``tf.nn.batch_normalization``, and the gradient of each): on this
project's 2-core CPU they took about 40 % of a training step of the default model, most of it
in the first block, whose map is the largest (``benchmarks/README.md``, round 25). TensorFlow's
fused kernel (``FusedBatchNormV3``) computes the same batch statistics, normalisation and
gradients in one pass each way. Inside :func:`fused_batchnorm`, training steps use it; the
layer class, its weights, its moving averages and the saved model stay stock Keras, and
inference (``training=False``) is untouched. Same maths, other rounding: weights trained this
way are not bit-identical to the stock path's.

JAX compiles the layer with XLA, which fuses it already; there :func:`fused_batchnorm` changes
nothing. This module is the one place TensorFlow is called directly: the model and training
code stay backend-agnostic.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import keras

FUSED_MIN_EPSILON = 1.001e-5  # TensorFlow's fused kernel refuses a smaller one


def _fused_call(stock_call):
    import tensorflow as tf

    @functools.wraps(stock_call)
    def call(self, inputs, training=None, mask=None):
        # renorm and synchronized are newer than some Keras 3 releases
        if not (training and self.trainable and mask is None and not getattr(self, "renorm", False)
                and not getattr(self, "synchronized", False) and len(inputs.shape) == 4
                and self.axis in (-1, 3) and inputs.dtype == tf.float32
                and self.epsilon >= FUSED_MIN_EPSILON):
            return stock_call(self, inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        gamma = tf.convert_to_tensor(self.gamma) if self.scale else tf.ones([channels])
        beta = tf.convert_to_tensor(self.beta) if self.center else tf.zeros([channels])
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, gamma, beta, epsilon=self.epsilon, data_format="NHWC", is_training=True)
        # the kernel hands back the unbiased variance; Keras' moving average takes the biased one
        count = tf.cast(tf.size(inputs) // channels, tf.float32)
        variance = variance * (count - 1.0) / count
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    call.stock_call = stock_call
    return call


@contextlib.contextmanager
def fused_batchnorm(enabled: bool = True) -> Iterator[bool]:
    """Within the block, ``BatchNormalization`` trains through TensorFlow's fused kernel.

    Covers what the default's 2-D members have: 4-D float32 input normalised over its last axis,
    no mask, renorm or synchronisation; any other call (the temporal member's 3-D maps, which
    are small), and every call on another backend, runs Keras' own code. A model must be fitted (its training step traced) inside the block.

    Parameters
    ----------
    enabled : bool
        False leaves Keras as it is (``train.fused_batchnorm=false``), unless an enclosing
        block already swapped the kernel in.

    Yields
    ------
    bool
        Whether the fused kernel is in use.
    """
    layer = keras.layers.BatchNormalization
    if not enabled or keras.backend.backend() != "tensorflow" or hasattr(layer.call, "stock_call"):
        # a nested block leaves the outer one in charge, and reports whether its kernel is on
        yield hasattr(layer.call, "stock_call")
        return
    stock_call = layer.call
    layer.call = _fused_call(stock_call)
    try:
        yield True
    finally:
        layer.call = stock_call
