"""``[avgpool]`` (alias ``[avg]``): the global average pool of both Darknets.

AlexeyAB (string_to_layer_type, src/parser.c:87-88; parse_avgpool, src/parser.c:861-872, which
reads no key and refuses an input without an image shape, :868; make_avgpool_layer,
src/avgpool_layer.c:6-32) and pjreddie (the same avgpool_layer.c): the output is ``C x 1 x 1``
(src/avgpool_layer.c:15-17), and the forward (src/avgpool_layer.c:41-56) is, per channel k::

    out[k] = 0;  for i in 0 .. h*w-1: out[k] += in[k][i]     (float, in index order)
    out[k] /= h*w                                            (float division by the int h*w)

MDFI reproduces this sum order in float32 (bit-identical), and in fixed point computes the
exact integer sum, then one rounded integer division (docs/fixed-point.md section 9.1).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import fixedpoint as fp
from ..errors import FormatError
from .base import Layer, QLayer, meta_format


class AvgpoolLayer(Layer):
    kind = "avgpool"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        c, h, w = layer.in_shape
        if not (c and h and w):                  # AB src/parser.c:868
            raise section.error(f"the layer before [avgpool] must output an image (input {layer.in_shape}; "
                                f"AlexeyAB src/parser.c:868)")
        layer.out_shape = (c, 1, 1)              # AB src/avgpool_layer.c:15-17
        return layer

    @property
    def plane(self) -> int:
        return self.in_shape[1] * self.in_shape[2]

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        x = np.asarray(xs[0], np.float32).reshape(self.in_shape[0], -1)
        acc = np.zeros(x.shape[0], np.float32)
        for i in range(x.shape[1]):              # AB src/avgpool_layer.c:49-51: float sum in index order
            acc += x[:, i]
        acc /= np.float32(x.shape[1])            # :53, l.h*l.w converted to float (exact below 2**24)
        return acc.reshape(self.out_shape)

    def describe(self) -> str:
        c, h, w = self.in_shape
        return f"avgpool {h}x{w} -> 1x1"


class QAvgpool(QLayer):
    """Integer global average pool (docs/fixed-point.md section 9.1)::

        S   = sum over the h*w positions of (q - z_in)                    exact (int64)
        d   = f_out - f_in
        out = sat(div_round(S * 2**d, n) + z_out)       for d >= 0,  n = h*w
        out = sat(div_round(S, n * 2**-d) + z_out)      for d < 0

    ``div_round(N, D)`` (D > 0) is :func:`mdfi.fixedpoint.div_round`: ``floor((2N + D) / (2D))``
    (round half up, ties toward +infinity for every sign, the rule of every shift) or
    ``floor(N / D)`` (truncate), with mathematical floor division for negative ``N``.
    """

    kind = "avgpool"
    #: Bounds that keep 2*N + D inside int64 (section 9.1): n <= 2**24, -24 <= d <= 20.
    MAX_PLANE = 1 << 24
    MIN_D, MAX_D = -24, 20

    def __init__(self, layer, in_fmt, out_fmt, rounding):
        super().__init__(layer, out_fmt, rounding)
        self.in_fmt = in_fmt
        self.d = out_fmt.frac - in_fmt.frac
        if layer.plane > self.MAX_PLANE:
            raise FormatError(f"layer {layer.index}: [avgpool] over {layer.plane} positions: at most "
                              f"{self.MAX_PLANE} in fixed point (docs/fixed-point.md 9.1)")
        if not self.MIN_D <= self.d <= self.MAX_D:
            raise FormatError(f"layer {layer.index}: [avgpool] output format {out_fmt} is {self.d} fractional "
                              f"bits from its input's {in_fmt}: [{self.MIN_D}, {self.MAX_D}] in fixed point")
        if not out_fmt.signed:
            raise FormatError(f"layer {layer.index}: [avgpool] output format must be signed")

    def num_den(self, s: np.ndarray):
        """The numerator and denominator of the division (section 9.1)."""
        n = np.int64(self.layer.plane)
        if self.d >= 0:
            return np.left_shift(s, np.int64(self.d)), n
        return s, n << np.int64(-self.d)

    def sums(self, xs) -> np.ndarray:
        """The exact per-channel sums S (int64, shape (C, 1, 1))."""
        x = np.asarray(xs[0], np.int64).reshape(self.layer.in_shape[0], -1) - np.int64(self.in_fmt.zero)
        return x.sum(axis=1).reshape(self.layer.out_shape)

    def forward_ref(self, xs, stats=None):
        num, den = self.num_den(self.sums(xs))
        unsat = fp.div_round(num, den, self.rounding) + np.int64(self.out_fmt.zero)
        return fp.saturate_counted(unsat, self.out_fmt.bits, stats=stats)

    def stages_ref(self, xs) -> dict:
        """Golden stages: ``acc`` (the exact sum S) and ``out``."""
        return {"acc": self.sums(xs), "out": self.forward_ref(xs)}

    def stage_formats(self) -> dict:
        f = self.in_fmt
        acc_bits = f.bits + (1 if f.zero or not f.signed else 0) + max(int(np.ceil(np.log2(self.layer.plane))), 0)
        return {"acc": (acc_bits, True, f.frac), "out": (self.out_fmt.bits, True, self.out_fmt.frac)}

    @classmethod
    def quantize(cls, layer, in_fmt, out_fmt, rounding):
        return cls(layer, in_fmt, out_fmt, rounding)

    def meta(self):
        d = super().meta()
        d.update(in_fmt=self.in_fmt.to_dict(), d=self.d)
        return d

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, meta_format(meta, "in_fmt"), meta_format(meta), meta["rounding"])
