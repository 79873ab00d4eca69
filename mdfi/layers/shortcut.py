"""``[shortcut]``: Darknet's shortcut_layer.c.  The output always has the previous layer's
shape (both lineages), then ``activation`` (default linear) is applied.

pjreddie (parse_shortcut, src/parser.c:539-556; shortcut_cpu, src/blas.c:68-92): one ``from``
layer (``atoi`` reads the first index only); ``out = alpha*prev + beta*from`` over the
common channels, with integer resampling ``stride = w_from/w_out``, ``sample = w_out/w_from``
when the spatial sizes differ; channels beyond the common ones keep ``prev``.

AlexeyAB (parse_shortcut, src/parser.c:915-988; forward_shortcut_layer,
src/shortcut_layer.c:150-174; shortcut_multilayer_cpu, src/blas.c:77-143): one or more
``from`` layers, each added **by flat index** for ``i < from.outputs`` (fewer channels: the
rest are copies of ``prev``; more: the extra ones are ignored; a different H x W
misaligns -- there is no resampling), in the order listed, in float.  Optional
``weights_type=per_feature|per_channel`` multiplies ``prev`` and every ``from`` by weights
read from the weights file (``weights[i]`` or ``weights[c + i*C]``); no alpha/beta.

The two lineages agree when the spatial sizes are equal (alpha = beta = 1); for different
H x W they do not, so MDFI then requires the lineage to be given explicitly (``--darknet``).
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..darknet import activations
from .. import actlut
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
        if index == 0:
            raise sec.error("[shortcut] cannot be the first layer")
        ab = net.darknet == "alexeyab"
        if not ab and len(raw) != 1:
            raise sec.error(f"from: {len(raw)} layers, but pjreddie's Darknet reads only the first "
                            f"(src/parser.c:541-543); several layers are AlexeyAB's: pass --darknet alexeyab", "from")
        srcs = [resolve_index(sec, "from", r, index) for r in raw]
        prev = index - 1
        shapes = [net.shape_of(prev)] + [net.shape_of(s) for s in srcs]
        layer = cls(index, section, [prev] + srcs, shapes)
        layer.darknet = net.darknet
        layer.out_shape = shapes[0]
        layer.alpha = layer.beta = 1.0
        layer.weights_type = "none"
        layer.weights = None
        if ab:
            wt = sec.get_str("weights_type", "none") if sec.has("weights_type") else "none"
            if wt == "per_layer":
                wt = "per_feature"                      # AB src/parser.c:922
            if wt not in ("none", "per_feature", "per_channel"):
                raise sec.error(f"weights_type={wt}: expected none, per_feature or per_channel", "weights_type")
            layer.weights_type = wt
        else:
            layer.alpha = sec.get_float("alpha", 1.0)
            layer.beta = sec.get_float("beta", 1.0)
        layer.activation = parse_activation(sec, "linear", net.darknet, "shortcut")
        if any(s[1:] != shapes[0][1:] for s in shapes[1:]):
            if not net.darknet_explicit:
                raise sec.error(f"from: the inputs' sizes differ ({shapes}); pjreddie's Darknet resamples "
                                f"(src/blas.c:68-92) and AlexeyAB's adds by flat index (src/blas.c:123-140): "
                                f"pass --darknet pjreddie|alexeyab to say which Darknet the model is from", "from")
            if not ab:
                c1, h1, w1 = shapes[1]
                c2, h2, w2 = shapes[0]
                if w1 // w2 != h1 // h2 or w2 // w1 != h2 // h1:
                    raise sec.error(f"from: {w1}x{h1} -> {w2}x{h2} fails pjreddie's shortcut_cpu assertions "
                                    f"(src/blas.c:72-73)", "from")
        return layer

    @property
    def same_shape(self) -> bool:
        return all(s == self.out_shape for s in self.in_shapes[1:])

    def num_params(self) -> int:
        if self.weights_type == "per_feature":
            return len(self.inputs)
        if self.weights_type == "per_channel":
            return len(self.inputs) * self.out_shape[0]
        return 0

    def set_params(self, values: np.ndarray) -> None:
        if self.num_params():
            n = len(self.inputs)
            self.weights = np.asarray(values[:self.num_params()], np.float32).reshape(n, -1)

    def _weight(self, i: int, c: int):
        """Weight of input ``i`` (0 = prev) as a (C,1,1) or scalar float32."""
        w = self.weights[i]
        return w[0] if self.weights_type == "per_feature" else w[:c, None, None]

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        if self.darknet == "alexeyab":
            return self._forward_ab(xs)
        a, b = xs
        if self.alpha == 1.0 and self.beta == 1.0 and self.same_shape:
            out = a + b
        elif self.same_shape:
            out = np.float32(self.alpha) * a + np.float32(self.beta) * b
        else:
            out = self._pjreddie_resample(a, b)
        return activations.apply_float(self.activation, out.astype(np.float32, copy=False), self.darknet)

    def _pjreddie_resample(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """pjreddie shortcut_cpu(batch, w1,h1,c1 = from, add, w2,h2,c2 = out, s1, s2, out)."""
        c1, h1, w1 = b.shape
        c2, h2, w2 = a.shape
        stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
        minw, minh, minc = min(w1, w2), min(h1, h2), min(c1, c2)
        out = a.copy()
        ys, xs_ = np.arange(minh), np.arange(minw)
        dst = out[:minc][:, (ys * sample)[:, None], (xs_ * sample)[None, :]]
        src = b[:minc][:, (ys * stride)[:, None], (xs_ * stride)[None, :]]
        out[:minc, (ys * sample)[:, None], (xs_ * sample)[None, :]] = \
            np.float32(self.alpha) * dst + np.float32(self.beta) * src
        return out

    def _forward_ab(self, xs: List[np.ndarray]) -> np.ndarray:
        c = self.out_shape[0]
        if self.weights_type != "none":
            out = (xs[0] * self._weight(0, c)).astype(np.float32)
        else:
            out = xs[0].astype(np.float32, copy=True)
        flat = out.reshape(-1)
        for i, x in enumerate(xs[1:], start=1):
            n = min(x.size, flat.size)
            if self.weights_type == "none":
                flat[:n] += x.reshape(-1)[:n]
            else:
                wb = np.broadcast_to(self._weight(i, c), out.shape).reshape(-1)[:n]
                flat[:n] += x.reshape(-1)[:n] * wb
        return activations.apply_float(self.activation, out, self.darknet)

    def describe(self) -> str:
        return "shortcut " + ",".join(str(i) for i in self.inputs[1:])


class QShortcut(QLayer):
    """Integer shortcut (docs/fixed-point.md section 6)::

        s   = (a - za) * 2**(fm - fa) + (b - zb) * 2**(fm - fb)      exact, fm = max(fa, fb)
        out = sat(R(act(s) / 2**(fm - f_out)) + zo)                   (requantize, zero=zo)

    ``a`` is the previous layer, ``b`` the ``from`` layer, ``za``, ``zb``, ``zo`` the zero
    points of the inputs and the output (section 1.1; 0 without).  When ``b`` has fewer
    channels (same H x W), the elements beyond it take the real value 0 for ``b`` (the term
    ``b - zb`` is 0 there; AlexeyAB's flat-index add and
    pjreddie's common-channel add agree there); with more channels its extra ones are
    ignored.  Table activations (mish, swish, logistic, hard_mish, relu6) requantize ``s``
    linearly to the pre-activation code and look the output up (section 4.1).
    """

    kind = "shortcut"

    def __init__(self, layer, in_fmts, out_fmt, rounding, pre_fmt=None, act_lut=None):
        super().__init__(layer, out_fmt, rounding)
        why = self.refusal(layer)
        if why:
            raise FormatError(f"layer {layer.index}: {why}")
        self.lut = layer.activation in actlut.LUT_ACTIVATIONS
        self.pre_fmt = self.act_lut = None
        if self.lut:
            self.pre_fmt = pre_fmt if pre_fmt is not None else actlut.pre_format(layer.activation, out_fmt)
            self.act_lut = (actlut.build_table(layer.activation, self.pre_fmt, out_fmt, rounding) if act_lut is None
                            else actlut.check_table(act_lut, self.pre_fmt, out_fmt, f"layer {layer.index}"))
        self.in_fmts = list(in_fmts)
        fa, fb = (f.frac for f in self.in_fmts)
        if abs(fa - fb) > 16:
            raise FormatError(f"layer {layer.index}: shortcut inputs differ by {abs(fa - fb)} fractional bits "
                              f"(at most 16)")
        self.sum_frac = max(fa, fb)
        self.shift = self.sum_frac - self.shift_fmt.frac
        if not fp.MIN_SHIFT <= self.shift <= fp.MAX_SHIFT:
            raise FormatError(f"layer {layer.index}: shortcut shift {self.shift} out of range")

    @staticmethod
    def refusal(layer) -> str:
        """Why this layer has no fixed-point implementation ("" when it has one)."""
        if layer.alpha != 1.0 or layer.beta != 1.0:
            return "[shortcut] alpha/beta other than 1 are not supported in fixed point"
        if len(layer.inputs) != 2:
            return "[shortcut] with several from= layers has no fixed-point kernel (the float path runs it)"
        if layer.weights_type != "none":
            return f"[shortcut] weights_type={layer.weights_type} has no fixed-point kernel (the float path runs it)"
        if any(sh[1:] != layer.out_shape[1:] for sh in layer.in_shapes):
            return (f"[shortcut] between different sizes {layer.in_shapes} has no fixed-point kernel "
                    f"(the float path runs it)")
        if layer.activation not in ("linear", "leaky", "relu") + actlut.LUT_ACTIVATIONS:
            return f"activation '{layer.activation}' has no fixed-point implementation"
        return ""

    @property
    def shift_fmt(self):
        return self.pre_fmt if self.lut else self.out_fmt

    @property
    def common(self) -> int:
        """Elements of ``a`` that get ``b`` added (flat index; the rest take b = 0)."""
        return min(int(np.prod(s)) for s in self.layer.in_shapes)

    def _sum(self, xs):
        fa, fb = self.in_fmts
        a = np.asarray(xs[0], np.int64) - np.int64(fa.zero)
        b = np.zeros(a.size, np.int64)          # beyond the common elements: b - zb = 0
        n = self.common
        b[:n] = np.asarray(xs[1], np.int64).reshape(-1)[:n] - np.int64(fb.zero)
        s, _ = fp.add_aligned(a, fa.frac, b.reshape(a.shape), fb.frac)
        return s

    def stages_ref(self, xs) -> dict:
        """Golden stages: ``acc`` (the exact aligned sum), ``act`` (activation before the
        shift; ``pre``, the pre-activation code, for a table activation) and ``out``."""
        acc = self._sum(xs)
        if self.lut:
            pre = fp.requantize(acc, self.shift, self.rounding, self.pre_fmt.bits)
            return {"acc": acc, "pre": pre, "out": actlut.lookup(self.act_lut, pre, self.pre_fmt)}
        act, _ = fp.pre_shift_activation(acc, self.layer.activation)
        return {"acc": acc, "act": act, "out": self.forward_ref(xs)}

    def stage_formats(self) -> dict:
        fa, fb = (f for f in self.in_fmts)
        # a - za needs one more bit than a when za != 0 (docs/fixed-point.md section 6)
        acc_bits = max(fa.bits + (fa.zero != 0) + self.sum_frac - fa.frac,
                       fb.bits + (fb.zero != 0) + self.sum_frac - fb.frac) + 1
        if self.lut:
            return {"acc": (acc_bits, True, self.sum_frac), "pre": (self.pre_fmt.bits, True, self.pre_fmt.frac),
                    "out": (self.out_fmt.bits, True, self.out_fmt.frac)}
        act_bits = acc_bits + (12 if self.layer.activation == "leaky" else 0)
        return {"acc": (acc_bits, True, self.sum_frac), "act": (act_bits, True, None),
                "out": (self.out_fmt.bits, True, self.out_fmt.frac)}

    def forward_ref(self, xs, stats=None):
        s = self._sum(xs)
        if self.lut:
            pre = fp.requantize(s, self.shift, self.rounding, self.pre_fmt.bits, stats=stats)
            return actlut.lookup(self.act_lut, pre, self.pre_fmt)
        return fp.requantize(s, self.shift, self.rounding, self.out_fmt.bits, self.layer.activation, stats=stats,
                             zero=self.out_fmt.zero)

    @classmethod
    def quantize(cls, layer, in_fmts, out_fmt, rounding):
        return cls(layer, in_fmts, out_fmt, rounding)

    def meta(self):
        d = super().meta()
        d.update(in_fmts=[f.to_dict() for f in self.in_fmts], shift=self.shift, activation=self.layer.activation)
        if self.lut:
            d["pre_fmt"] = self.pre_fmt.to_dict()
        return d

    def arrays(self):
        return {"act_lut": self.act_lut} if self.lut else {}

    def param_bits(self) -> int:
        return self.act_lut.size * self.out_fmt.bits if self.lut else 0

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        lut = layer.activation in actlut.LUT_ACTIVATIONS
        if lut and ("pre_fmt" not in meta or "act_lut" not in arrays):
            raise KeyError("pre_fmt/act_lut")
        return cls(layer, [fp.QFormat.from_dict(f) for f in meta["in_fmts"]], meta_format(meta), meta["rounding"],
                   pre_fmt=meta_format(meta, "pre_fmt") if lut else None, act_lut=arrays.get("act_lut") if lut else None)
