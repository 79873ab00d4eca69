"""``[shortcut]``: Darknet's shortcut_layer.c.

``from=`` one layer index (relative if negative).  Output = ``alpha*prev + beta*from``
(pjreddie's defaults alpha=1, beta=1), then ``activation`` (default linear).  MDFI requires
both inputs to have the same shape (Darknet's strided variant for mismatched shapes is
not used by the YOLO networks).
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import activations
from .convolutional import parse_activation
from .route import resolve_index
from .. import fixedpoint as fp
from ..errors import FormatError
from .base import Layer, QLayer, meta_format


class ShortcutLayer(Layer):
    kind = "shortcut"

    @classmethod
    def from_section(cls, index, section, net):
        sec = section
        raw = sec.get_int_list("from", required=True)
        if len(raw) != 1:
            raise sec.error(f"from: exactly one layer expected, got {len(raw)}", "from")
        if index == 0:
            raise sec.error("[shortcut] cannot be the first layer")
        src = resolve_index(sec, "from", raw[0], index)
        prev = index - 1
        shapes = [net.shape_of(prev), net.shape_of(src)]
        if shapes[0] != shapes[1]:
            raise sec.error(f"from: shape mismatch: previous layer {prev} is {shapes[0]} but layer "
                            f"{src} is {shapes[1]} (C,H,W)", "from")
        layer = cls(index, section, [prev, src], shapes)
        layer.alpha = sec.get_float("alpha", 1.0)
        layer.beta = sec.get_float("beta", 1.0)
        layer.activation = parse_activation(sec, "linear")
        layer.out_shape = shapes[0]
        return layer

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        a, b = xs
        if self.alpha == 1.0 and self.beta == 1.0:
            out = a + b
        else:
            out = np.float32(self.alpha) * a + np.float32(self.beta) * b
        return activations.apply_float(self.activation, out.astype(np.float32, copy=False))

    def describe(self) -> str:
        return f"shortcut {self.inputs[1]}"


class QShortcut(QLayer):
    """Integer shortcut (docs/fixed-point.md section 6)::

        s   = a * 2**(fm - fa) + b * 2**(fm - fb)      exact, fm = max(fa, fb)
        out = requantize(s, fm - f_out, rounding, bits, activation)   (saturates)
    """

    kind = "shortcut"

    def __init__(self, layer, in_fmts, out_fmt, rounding):
        super().__init__(layer, out_fmt, rounding)
        if layer.alpha != 1.0 or layer.beta != 1.0:
            raise FormatError(f"layer {layer.index}: [shortcut] alpha/beta other than 1 are not supported "
                              f"in fixed point")
        if layer.activation not in ("linear", "leaky", "relu"):
            raise FormatError(f"layer {layer.index}: activation '{layer.activation}' has no fixed-point "
                              f"implementation")
        self.in_fmts = list(in_fmts)
        fa, fb = (f.frac for f in self.in_fmts)
        if abs(fa - fb) > 16:
            raise FormatError(f"layer {layer.index}: shortcut inputs differ by {abs(fa - fb)} fractional bits "
                              f"(at most 16)")
        self.sum_frac = max(fa, fb)
        self.shift = self.sum_frac - out_fmt.frac
        if not fp.MIN_SHIFT <= self.shift <= fp.MAX_SHIFT:
            raise FormatError(f"layer {layer.index}: shortcut shift {self.shift} out of range")

    def stages_ref(self, xs) -> dict:
        """Golden stages: ``acc`` (the exact aligned sum), ``act`` (activation before the
        shift) and ``out``."""
        (fa, fb) = (f.frac for f in self.in_fmts)
        acc, _ = fp.add_aligned(xs[0], fa, xs[1], fb)
        act, _ = fp.pre_shift_activation(acc, self.layer.activation)
        return {"acc": acc, "act": act, "out": self.forward_ref(xs)}

    def stage_formats(self) -> dict:
        fa, fb = (f for f in self.in_fmts)
        acc_bits = max(fa.bits + self.sum_frac - fa.frac, fb.bits + self.sum_frac - fb.frac) + 1
        act_bits = acc_bits + (12 if self.layer.activation == "leaky" else 0)
        return {"acc": (acc_bits, True, self.sum_frac), "act": (act_bits, True, None),
                "out": (self.out_fmt.bits, True, self.out_fmt.frac)}

    def forward_ref(self, xs, stats=None):
        (fa, fb) = (f.frac for f in self.in_fmts)
        s, _ = fp.add_aligned(xs[0], fa, xs[1], fb)
        return fp.requantize(s, self.shift, self.rounding, self.out_fmt.bits, self.layer.activation, stats=stats)

    @classmethod
    def quantize(cls, layer, in_fmts, out_fmt, rounding):
        return cls(layer, in_fmts, out_fmt, rounding)

    def meta(self):
        d = super().meta()
        d.update(in_fmts=[f.to_dict() for f in self.in_fmts], shift=self.shift, activation=self.layer.activation)
        return d

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, [fp.QFormat.from_dict(f) for f in meta["in_fmts"]], meta_format(meta), meta["rounding"])
