"""``[convolutional]`` (alias ``[conv]``): Darknet's convolutional_layer.c.

Darknet defaults (parse_convolutional, src/parser.c): filters=1, size=1, stride=1,
pad=0, padding=0 (``pad=1`` overrides it with ``size/2``), groups=1,
activation=logistic (!), batch_normalize=0.
Output size (convolutional_out_width): ``(w + 2*padding - size)/stride + 1``.

Weights file order (load_convolutional_weights): biases[n]; if batch_normalize:
scales[n], rolling_mean[n], rolling_variance[n]; then weights[n][c][size][size].

Float forward (forward_convolutional_layer): ``out = W x im2col(in)``; with batch norm
``out = (out - mean)/(sqrt(var) + .000001f)`` (normalize_cpu: note the epsilon is added
*after* the square root), ``out *= scales``; then ``out += biases``; then activation.
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import activations
from ..limits import MAX_DIM, MAX_KERNEL
from .base import Layer, check_positive_shape

BN_EPS = np.float32(0.000001)  # normalize_cpu: sqrt(variance) + .000001f


def conv_out_size(n: int, size: int, stride: int, padding: int) -> int:
    """convolutional_out_width/height."""
    return (n + 2 * padding - size) // stride + 1


def im2col(x: np.ndarray, size: int, stride: int, padding: int) -> np.ndarray:
    """Darknet's im2col_cpu: (C,H,W) -> (C*size*size, OH*OW), zero padding.

    Row index is ``(c*size + ky)*size + kx``, the order of Darknet's weights.  Works for
    any dtype (float32 here, integers in the fixed-point reference).
    """
    c, h, w = x.shape
    oh = conv_out_size(h, size, stride, padding)
    ow = conv_out_size(w, size, stride, padding)
    if size == 1 and stride == 1 and padding == 0:
        return x.reshape(c, h * w)
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding))) if padding else x
    s0, s1, s2 = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, shape=(c, size, size, oh, ow), strides=(s0, s1, s2, s1 * stride, s2 * stride),
        writeable=False)
    return view.reshape(c * size * size, oh * ow)


class ConvolutionalLayer(Layer):
    kind = "convolutional"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        c, h, w = layer.in_shape
        layer.filters = sec.get_int("filters", 1, minimum=1)
        MAX_DIM.check(layer.filters, f"{sec.path}:{sec.line}: [convolutional] filters")
        layer.size = sec.get_int("size", 1, minimum=1)
        MAX_KERNEL.check(layer.size, f"{sec.path}:{sec.line}: [convolutional] size")
        layer.stride = sec.get_int("stride", 1, minimum=1)
        pad = sec.get_int("pad", 0, minimum=0)
        layer.padding = sec.get_int("padding", 0, minimum=0)
        if pad:
            layer.padding = layer.size // 2
        groups = sec.get_int("groups", 1, minimum=1)
        if groups != 1:
            raise sec.error(f"groups={groups}: grouped convolutions are not supported by MDFI", "groups")
        for key in ("binary", "xnor"):
            if sec.has(key) and sec.get_int(key, 0):
                raise sec.error(f"{key}=1: binary/XNOR convolutions are not supported by MDFI", key)
        layer.batch_normalize = bool(sec.get_int("batch_normalize", 0))
        layer.activation = parse_activation(sec, "logistic")
        oh = conv_out_size(h, layer.size, layer.stride, layer.padding)
        ow = conv_out_size(w, layer.size, layer.stride, layer.padding)
        layer.out_shape = check_positive_shape(layer, (layer.filters, oh, ow))
        layer.biases = layer.scales = layer.rolling_mean = layer.rolling_variance = None
        layer.weights = None
        return layer

    # -- parameters --------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        return self.in_shape[0]

    @property
    def kernel_volume(self) -> int:
        return self.in_channels * self.size * self.size

    def num_params(self) -> int:
        n = self.filters
        return n + (3 * n if self.batch_normalize else 0) + n * self.kernel_volume

    def set_params(self, values: np.ndarray) -> None:
        n = self.filters
        off = 0

        def take(count):
            nonlocal off
            out = values[off:off + count]
            off += count
            return out

        self.biases = take(n)
        if self.batch_normalize:
            self.scales = take(n)
            self.rolling_mean = take(n)
            self.rolling_variance = take(n)
        self.weights = take(n * self.kernel_volume).reshape(n, self.in_channels, self.size, self.size)

    @property
    def macs(self) -> int:
        _, oh, ow = self.out_shape
        return self.filters * self.kernel_volume * oh * ow

    def folded_float_params(self):
        """Batch norm folded into (weights, bias) in float64, for the quantizer.

        ``y = scale*(conv - mean)/(sqrt(var)+eps) + bias = conv*k + (bias - mean*k)``
        with ``k = scale/(sqrt(var)+eps)`` per output channel.
        """
        w = self.weights.astype(np.float64)
        b = self.biases.astype(np.float64)
        if self.batch_normalize:
            k = self.scales.astype(np.float64) / (
                np.sqrt(self.rolling_variance.astype(np.float64)) + float(BN_EPS))
            w = w * k[:, None, None, None]
            b = b - self.rolling_mean.astype(np.float64) * k
        return w, b

    # -- float forward -------------------------------------------------------------
    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        x = xs[0]
        n, oh, ow = self.out_shape
        cols = im2col(x, self.size, self.stride, self.padding)
        out = self.weights.reshape(n, -1) @ cols  # float32 GEMM, like Darknet's gemm()
        if self.batch_normalize:
            # normalize_cpu computes in double: (x - mean) / (sqrt((double)var) + 1e-6f).
            denom = np.sqrt(self.rolling_variance.astype(np.float64)) + np.float64(BN_EPS)
            out = ((out - self.rolling_mean[:, None]).astype(np.float64) / denom[:, None]).astype(np.float32)
            out *= self.scales[:, None]
        out += self.biases[:, None]
        return activations.apply_float(self.activation, out.reshape(n, oh, ow))

    def describe(self) -> str:
        return (f"conv {self.filters} {self.size}x{self.size}/{self.stride}"
                f"{' bn' if self.batch_normalize else ''} {self.activation}")


def parse_activation(sec, default: str) -> str:
    name = sec.get_str("activation", default)
    if name in activations.SUPPORTED:
        return name
    if name in activations.DARKNET_ACTIVATIONS:
        raise sec.error(f"activation={name}: a Darknet activation MDFI does not support "
                        f"(supported: {', '.join(activations.SUPPORTED)})", "activation")
    raise sec.error(f"unknown activation '{name}' (supported: {', '.join(activations.SUPPORTED)})",
                    "activation")
