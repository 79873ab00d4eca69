"""``[upsample]``: Darknet's upsample_layer.c (nearest neighbour).

Defaults (parse_upsample): stride=2, scale=1.  ``out[c][y][x] = scale*in[c][y/stride][x/stride]``.
A negative stride (Darknet's down-sampling mode) is not supported.
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
        layer.stride = sec.get_int("stride", 2)
        if layer.stride < 1:
            raise sec.error(f"stride={layer.stride}: only up-sampling (stride >= 1) is supported", "stride")
        MAX_KERNEL.check(layer.stride, f"{sec.path}:{sec.line}: [upsample] stride")
        layer.scale = sec.get_float("scale", 1.0)
        c, h, w = layer.in_shape
        layer.out_shape = (c, h * layer.stride, w * layer.stride)
        return layer

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        s = self.stride
        out = np.repeat(np.repeat(xs[0], s, axis=1), s, axis=2)
        if self.scale != 1.0:
            out = out * np.float32(self.scale)
        return out

    def describe(self) -> str:
        return f"upsample x{self.stride}"


class QUpsample(QLayer):
    """Integer nearest-neighbour upsample: exact; output format = input format.
    Darknet's ``scale`` must be 1 (any other value would need a multiplier)."""

    kind = "upsample"

    def forward_ref(self, xs, stats=None):
        s = self.layer.stride
        return np.repeat(np.repeat(np.asarray(xs[0], np.int32), s, axis=1), s, axis=2)

    @classmethod
    def quantize(cls, layer, in_fmt, rounding):
        if layer.scale != 1.0:
            raise FormatError(f"layer {layer.index}: [upsample] scale={layer.scale} is not supported in "
                              f"fixed point (only 1)")
        return cls(layer, in_fmt, rounding)

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, meta_format(meta), meta["rounding"])
