"""Keras 3 layers that simulate int8 inference for quantization-aware training (TF backend).

Imported lazily by ``edgeopt.techniques.qat`` (it imports TensorFlow and Keras at the top).
Importing this module registers the layers for ``.keras`` loading under the package ``edgeopt``.

The fake-quant ops are TensorFlow's own (``tf.quantization.fake_quant_with_min_max_vars`` and
its per-channel variant): the TFLite converter recognises them and uses their ranges as the
int8 quantization parameters, so the simulated model and the converted model agree.

* ``ActQuant``: activations, per tensor, asymmetric 8 bits, with trainable ``qmin``/``qmax``
  (gradients flow to them from clipped values, TF's fake-quant gradient).
* ``QuantConv2D`` / ``QuantDepthwiseConv2D`` / ``QuantDense``: the kernel is fake-quantized
  symmetrically (narrow range, zero point 0) with its range taken from the current weights:
  per output channel for convolutions, per tensor for Dense (per-channel Dense kernels do
  not convert). An optional ``mask`` weight keeps pruned weights at exactly zero.
"""
from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

NUM_BITS = 8
# Guards a zero range (an all-zero channel, e.g. a pruned filter): TF's nudging divides by it.
MIN_RANGE = 1e-6


def symmetric_range(kernel, axes):
    """(-m, m) with m = max |w| over ``axes`` (None: whole tensor): the weight range QAT uses."""
    m = tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), MIN_RANGE)
    return -m, m


@keras.saving.register_keras_serializable(package="edgeopt")
class ActQuant(keras.layers.Layer):
    """Fake-quantizes a tensor to 8 bits with a learned [qmin, qmax] range."""

    def __init__(self, init_min: float = 0.0, init_max: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.init_min = float(init_min)
        self.init_max = float(init_max)
        self.calibrating = False  # when True, call() records the float range and passes x through
        self.seen_min = None
        self.seen_max = None

    def build(self, input_shape):
        self.qmin = self.add_weight(shape=(), name="qmin", trainable=True,
                                    initializer=keras.initializers.Constant(self.init_min))
        self.qmax = self.add_weight(shape=(), name="qmax", trainable=True,
                                    initializer=keras.initializers.Constant(self.init_max))

    def call(self, x):
        if self.calibrating:  # eager only: record the global min/max over calibration batches
            lo, hi = float(ops.min(x)), float(ops.max(x))
            self.seen_min = lo if self.seen_min is None else min(self.seen_min, lo)
            self.seen_max = hi if self.seen_max is None else max(self.seen_max, hi)
            return x
        return tf.quantization.fake_quant_with_min_max_vars(
            x, tf.convert_to_tensor(self.qmin), tf.convert_to_tensor(self.qmax),
            num_bits=NUM_BITS, narrow_range=False)

    def set_range(self, lo: float, hi: float) -> None:
        lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)  # int8 needs 0 exactly representable
        if hi - lo < MIN_RANGE:
            hi = lo + MIN_RANGE
        self.qmin.assign(lo)
        self.qmax.assign(hi)

    def get_config(self):
        return {**super().get_config(), "init_min": self.init_min, "init_max": self.init_max}


class _KernelQuant:
    """Mixin: the fake-quantized (and masked) kernel of a conv or dense layer."""

    per_channel = True

    def __init__(self, *args, masked: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.masked = bool(masked)

    def build(self, input_shape):
        super().build(input_shape)
        if self.masked:
            self.mask = self.add_weight(shape=self._kernel_var().shape, name="mask", trainable=False,
                                        initializer="ones")

    def get_config(self):
        return {**super().get_config(), "masked": self.masked}

    def _kernel_var(self):
        k = getattr(self, "_kernel", None)  # Conv2D/Dense keep it there; DepthwiseConv2D in .kernel
        return self.kernel if k is None else k

    def effective_kernel(self):
        k = tf.convert_to_tensor(self._kernel_var())
        return k * tf.convert_to_tensor(self.mask) if self.masked else k

    def weight_range(self):
        """The (min, max) tensors the kernel is fake-quantized with (per channel or per tensor)."""
        k = self._channels_last(self.effective_kernel())
        return symmetric_range(k, axes=list(range(k.shape.rank - 1)) if self.per_channel else None)

    def _channels_last(self, k):
        return k

    def fake_quant_kernel(self):
        k = self.effective_kernel()
        lo, hi = self.weight_range()
        if not self.per_channel:
            return tf.quantization.fake_quant_with_min_max_vars(k, lo, hi, num_bits=NUM_BITS,
                                                                narrow_range=True)
        flat = self._channels_last(k)
        q = tf.quantization.fake_quant_with_min_max_vars_per_channel(flat, lo, hi, num_bits=NUM_BITS,
                                                                     narrow_range=True)
        return tf.reshape(q, tf.shape(k))

    def _finish(self, outputs):
        if self.use_bias:
            outputs = outputs + tf.convert_to_tensor(self.bias)
        return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="edgeopt")
class QuantConv2D(_KernelQuant, keras.layers.Conv2D):
    def call(self, inputs):
        return self._finish(self.convolution_op(inputs, self.fake_quant_kernel()))


@keras.saving.register_keras_serializable(package="edgeopt")
class QuantDepthwiseConv2D(_KernelQuant, keras.layers.DepthwiseConv2D):
    """Per-channel over the in*multiplier output channels (the TFLite depthwise layout)."""

    def _channels_last(self, k):
        kh, kw, cin, mult = k.shape
        return tf.reshape(k, (kh, kw, 1, cin * mult))

    def call(self, inputs):
        out = ops.depthwise_conv(inputs, self.fake_quant_kernel(), strides=self.strides,
                                 padding=self.padding, dilation_rate=self.dilation_rate,
                                 data_format=self.data_format)
        return self._finish(out)


@keras.saving.register_keras_serializable(package="edgeopt")
class QuantDense(_KernelQuant, keras.layers.Dense):
    per_channel = False

    def call(self, inputs, training=None):
        return self._finish(ops.matmul(inputs, self.fake_quant_kernel()))


QUANT_CLASSES = {"Conv2D": QuantConv2D, "DepthwiseConv2D": QuantDepthwiseConv2D, "Dense": QuantDense}
