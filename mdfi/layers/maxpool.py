"""``[maxpool]`` (alias ``[max]``): Darknet's maxpool_layer.c.

Defaults (parse_maxpool): stride=1, size=stride, padding=size-1.
Output size: ``(w + padding - size)/stride + 1``.  Window origin: ``-padding/2`` (C
integer division of a negative number truncates toward zero), so with size=2, stride=1,
padding=1 the extra row/column is on the right/bottom.  Positions outside the input do
not take part in the max (Darknet uses -FLT_MAX there).

AlexeyAB (parse_maxpool, src/parser.c:837-859; make_maxpool_layer, src/maxpool_layer.c:72-110;
forward_maxpool_layer, :243-320) adds ``stride_x``/``stride_y`` (default ``stride``; output
``(w + padding - size)/stride_x + 1``) and ``maxpool_depth=1``: the output keeps H x W and
has ``out_channels`` channels, channel ``g`` being the max over input channels ``g,
g + out_channels, g + 2*out_channels, ...`` (a channel ``g >= C`` gets -FLT_MAX; MDFI
refuses that).
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..errors import FormatError
from ..limits import MAX_KERNEL
from .base import Layer, QLayer, check_positive_shape, meta_format

FLT_MAX_NEG = -np.finfo(np.float32).max       # Darknet's -FLT_MAX: the start of every window's max


class MaxpoolLayer(Layer):
    kind = "maxpool"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        layer.stride = sec.get_int("stride", 1, minimum=1)
        MAX_KERNEL.check(layer.stride, f"{sec.path}:{sec.line}: [maxpool] stride")
        stride0 = layer.stride_y = layer.stride
        layer.depth, layer.out_channels = False, 1
        c, h, w = layer.in_shape
        if net.darknet == "alexeyab":
            layer.stride = sec.get_int("stride_x", layer.stride, minimum=1) if sec.has("stride_x") else layer.stride
            layer.stride_y = sec.get_int("stride_y", layer.stride_y, minimum=1) if sec.has("stride_y") else layer.stride_y
            MAX_KERNEL.check(max(layer.stride, layer.stride_y), f"{sec.path}:{sec.line}: [maxpool] stride")
            if sec.has("maxpool_depth") and sec.get_int("maxpool_depth", 0):
                layer.depth = True
                layer.out_channels = sec.get_int("out_channels", 1, minimum=1) if sec.has("out_channels") else 1
                if layer.out_channels > c:
                    raise sec.error(f"out_channels={layer.out_channels}: more than the {c} input channels "
                                    f"(Darknet outputs -FLT_MAX there)", "out_channels")
        layer.size = sec.get_int("size", stride0, minimum=1)     # size defaults to stride (both parsers)
        MAX_KERNEL.check(layer.size, f"{sec.path}:{sec.line}: [maxpool] size")
        layer.padding = sec.get_int("padding", layer.size - 1, minimum=0)
        if (layer.padding + 1) // 2 > layer.size - 1:
            # Some window would then lie entirely in the padding (Darknet outputs -FLT_MAX
            # there); no real network does this.
            raise sec.error(f"padding={layer.padding} is too large for size={layer.size} "
                            f"(at most {2 * (layer.size - 1)})", "padding" if sec.has("padding") else None)
        if layer.depth:
            layer.out_shape = (layer.out_channels, h, w)
            return layer
        oh = (h + layer.padding - layer.size) // layer.stride_y + 1
        ow = (w + layer.padding - layer.size) // layer.stride + 1
        layer.out_shape = check_positive_shape(layer, (c, oh, ow))
        return layer

    @property
    def plain(self) -> bool:
        """A square-stride spatial pool (what the fixed-point C kernel implements)."""
        return not self.depth and self.stride == self.stride_y

    def window_view(self, x: np.ndarray, fill) -> np.ndarray:
        """(C, OH, OW, size, size) view of ``x`` padded with ``fill`` (any dtype)."""
        c, h, w = x.shape
        _, oh, ow = self.out_shape
        lo = self.padding // 2           # -offset; offset = -padding/2 (truncation)
        hi_h = max(0, (oh - 1) * self.stride_y + self.size - lo - h)
        hi_w = max(0, (ow - 1) * self.stride + self.size - lo - w)
        xp = np.pad(x, ((0, 0), (lo, hi_h), (lo, hi_w)), constant_values=fill)
        s0, s1, s2 = xp.strides
        return np.lib.stride_tricks.as_strided(
            xp, shape=(c, oh, ow, self.size, self.size),
            strides=(s0, s1 * self.stride_y, s2 * self.stride, s1, s2), writeable=False)

    def window_max(self, x: np.ndarray, fill, lowest) -> np.ndarray:
        """(C, OH, OW) max of each window of ``x`` padded with ``fill``, as Darknet computes it
        (forward_maxpool_layer: ``max = lowest; for each tap, row by row: max = (val > max) ?
        val : max``; pjreddie src/maxpool_layer.c, AlexeyAB src/maxpool_layer.c:243-320 with
        lowest = -FLT_MAX; a tie keeps the earlier tap, so -0.0 before 0.0 stays -0.0).  One
        vectorised step per tap over the whole map: NumPy's reduction over the window view's
        two short trailing axes took 120 of yolov3-tiny's 290 ms float forward."""
        v = self.window_view(x, fill)
        out = np.full(v.shape[:3], lowest, dtype=x.dtype)
        integer = x.dtype.kind in "iu"          # integers: the plain max, no ties to tell apart
        for i in range(self.size):
            for j in range(self.size):
                tap = v[..., i, j]
                if integer:
                    np.maximum(out, tap, out=out)
                else:
                    np.copyto(out, tap, where=tap > out)
        return out

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        if self.depth:
            x = xs[0]
            k = self.out_channels
            return np.stack([x[g::k].max(axis=0) for g in range(k)]).astype(np.float32)
        return self.window_max(np.asarray(xs[0], np.float32), -np.inf, FLT_MAX_NEG)

    def describe(self) -> str:
        if self.depth:
            return f"max depth -> {self.out_channels}"
        st = f"{self.stride}" if self.stride == self.stride_y else f"{self.stride_y}x{self.stride}"
        return f"max {self.size}x{self.size}/{st}"


class QMaxpool(QLayer):
    """Integer max pool: exact; output format = input format.  Taps outside the image are
    ignored (padded with the format's minimum, which never wins over a real tap)."""

    kind = "maxpool"

    def forward_ref(self, xs, stats=None):
        lo = np.iinfo(np.int32).min
        return self.layer.window_max(np.asarray(xs[0], np.int32), lo, lo)

    @staticmethod
    def refusal(layer) -> str:
        if not layer.plain:
            return ("[maxpool] with stride_x != stride_y or maxpool_depth has no fixed-point kernel "
                    "(the float path runs it)")
        return ""

    @classmethod
    def quantize(cls, layer, in_fmt, rounding):
        if cls.refusal(layer):
            raise FormatError(f"layer {layer.index}: {cls.refusal(layer)}")
        return cls(layer, in_fmt, rounding)

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, meta_format(meta), meta["rounding"])
