"""``[upsample]``: Darknet's upsample_layer.c (nearest neighbour).

Defaults (parse_upsample): stride=2, scale=1.  ``out[c][y][x] = scale*in[c][y/stride][x/stride]``.

A negative stride ``-s`` (both lineages: make_upsample_layer, src/upsample_layer.c:19-24;
forward, :69-77; upsample_cpu, src/blas.c:483-498) down-samples: the output is ``w/s x h/s``
and ``out[c][y][x] = sum over the s x s block (rows, then columns, in order) of scale*in``,
accumulated in float.  MDFI requires H and W divisible by ``s`` (Darknet's loop indexes the
input with the output width times ``s`` otherwise) and runs it in float only.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..limits import MAX_KERNEL
from ..errors import FormatError
from .base import Layer, QLayer, meta_format


class UpsampleLayer(Layer):
    kind = "upsample"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        stride = sec.get_int("stride", 2)
        if stride == 0:
            raise sec.error("stride=0: must not be 0", "stride")
        layer.reverse = stride < 0
        layer.stride = abs(stride)
        MAX_KERNEL.check(layer.stride, f"{sec.path}:{sec.line}: [upsample] stride")
        layer.scale = sec.get_float("scale", 1.0)
        c, h, w = layer.in_shape
        if layer.reverse:
            if h % layer.stride or w % layer.stride:
                raise sec.error(f"stride={stride}: the input {h}x{w} is not divisible by {layer.stride}", "stride")
            layer.out_shape = (c, h // layer.stride, w // layer.stride)
        else:
            layer.out_shape = (c, h * layer.stride, w * layer.stride)
        return layer

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        s = self.stride
        if self.reverse:
            c, oh, ow = self.out_shape
            blocks = xs[0].reshape(c, oh, s, ow, s)
            out = np.zeros(self.out_shape, np.float32)
            sc = np.float32(self.scale)
            for dy in range(s):                 # the order of upsample_cpu's loops
                for dx in range(s):
                    out += sc * blocks[:, :, dy, :, dx]
            return out
        out = np.repeat(np.repeat(xs[0], s, axis=1), s, axis=2)
        if self.scale != 1.0:
            out = out * np.float32(self.scale)
        return out

    def describe(self) -> str:
        return f"{'downsample /' if self.reverse else 'upsample x'}{self.stride}"


class QUpsample(QLayer):
    """Integer nearest-neighbour upsample: exact; output format = input format.
    Darknet's ``scale`` must be 1 (any other value would need a multiplier)."""

    kind = "upsample"

    def forward_ref(self, xs, stats=None):
        s = self.layer.stride
        return np.repeat(np.repeat(np.asarray(xs[0], np.int32), s, axis=1), s, axis=2)

    @staticmethod
    def refusal(layer) -> str:
        if layer.reverse:
            return "[upsample] with a negative stride (sum-pooling) has no fixed-point kernel (the float path runs it)"
        if layer.scale != 1.0:
            return f"[upsample] scale={layer.scale} is not supported in fixed point (only 1)"
        return ""

    @classmethod
    def quantize(cls, layer, in_fmt, rounding):
        if cls.refusal(layer):
            raise FormatError(f"layer {layer.index}: {cls.refusal(layer)}")
        return cls(layer, in_fmt, rounding)

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, meta_format(meta), meta["rounding"])
