"""``[scale_channels]`` and ``[sam]``: AlexeyAB's products of two layers' outputs.

``[scale_channels]`` (string_to_layer_type, AB src/parser.c:59; parse_scale_channels,
src/parser.c:990-1009; src/scale_channels_layer.c).  Its inputs are the previous layer (the
*scale*, Darknet's ``state.input``) and the layer ``from`` (``atoi`` of the key, relative when
negative, src/parser.c:992-994; Darknet's ``from_output``).  The output has the ``from`` layer's
shape (src/scale_channels_layer.c:21-23) and the forward is (src/scale_channels_layer.c:65-90,
batch 1)::

    scale_wh=0 (default, parser.c:995):  out[i] = scale[i / (w*h)] * from[i]     (one scale per channel;
                                          the scale layer must be 1x1 with the same channels, :18, :24)
    scale_wh=1:                          out[i] = scale[i % (w*h)] * from[i]     (one scale per position;
                                          the scale layer must be 1 x h x w, :19, :25)
    then activate_array(out, activation)                                         (:89)

``[sam]`` (src/parser.c:60, :1011-1029; src/sam_layer.c:61-74): the same with
``out[i] = scale[i] * from[i]`` (both of one shape, src/sam_layer.c:21-22).

Darknet's ``assert``s on the shapes (scale_channels_layer.c:18-25, sam_layer.c:21-22) are
refused here with the cfg's file:line.  ``activation`` (parser.c:1002-1004 / :1022-1024, default
linear) goes through ``activate_array`` (AB src/activations.c:115-136): linear nothing, leaky
``leaky_activate`` (``x>0 ? x : .1f*x``, float constant, activations.h), logistic
``logistic_activate`` (float), others through ``activate()`` (activations.c:78-113), which has
no case for swish, mish, hard_mish or relu6 and returns 0 for them (:112; the parser only warns,
:1005-1007): those are refused.

Fixed point (docs/fixed-point.md section 9.2): the exact product of the two integer codes, then
the requantize of convolutions and shortcuts.
"""

from __future__ import annotations

from typing import List

import numpy as np

from .. import fixedpoint as fp
from ..darknet import activations
from ..errors import FormatError
from .base import Layer, QLayer, meta_format
from .route import resolve_index

#: Activations AB's activate_array computes for these layers as MDFI does (see the docstring).
FLOAT_ACTIVATIONS = ("linear", "leaky", "relu", "logistic")
#: Activations the integer requantize applies (docs/fixed-point.md section 4).
INT_ACTIVATIONS = ("linear", "leaky", "relu")


def _activation(sec, darknet: str) -> str:
    name = sec.get_str("activation", "linear")
    if name in ("swish", "mish", "hard_mish", "relu6"):
        raise sec.error(f"activation={name}: AlexeyAB's activate_array (src/activations.c:115-136) sends it to "
                        f"activate(), which has no case for it and returns 0 (src/activations.c:112; the parser "
                        f"only warns, src/parser.c:1005-1007, :1025-1027); refused", "activation")
    if name not in FLOAT_ACTIVATIONS:
        raise sec.error(f"activation={name}: not supported on [{sec.name}] (supported: "
                        f"{', '.join(FLOAT_ACTIVATIONS)})", "activation")
    return name


class ScaleChannelsLayer(Layer):
    """``inputs = [previous layer (the scale), from layer]``; ``mode`` is ``channels``
    (scale_wh=0), ``spatial`` (scale_wh=1) or ``elementwise`` ([sam])."""

    kind = "scale_channels"

    @classmethod
    def from_section(cls, index, section, net):
        sec = section
        if net.darknet != "alexeyab":
            raise sec.error(f"[{sec.name}] is a section of AlexeyAB's Darknet only (src/parser.c:59-60); "
                            f"this cfg is read as {net.darknet}'s: pass --darknet alexeyab")
        if index == 0:
            raise sec.error(f"[{sec.name}] cannot be the first layer: it scales the previous layer's output")
        if not sec.has("from"):
            raise sec.error(f"from= is required (AlexeyAB src/parser.c:{992 if sec.name == 'scale_channels' else 1013} "
                            f"passes the missing key to atoi)")
        raw = sec.get_int_list("from", required=True)
        if len(raw) != 1:
            raise sec.error(f"from: {len(raw)} layers, but AlexeyAB's parser reads one "
                            f"(atoi, src/parser.c:{993 if sec.name == 'scale_channels' else 1014})", "from")
        src = resolve_index(sec, "from", raw[0], index)
        prev = index - 1
        sa, sb = net.shape_of(prev), net.shape_of(src)
        layer = cls(index, sec, [prev, src], [sa, sb])
        layer.darknet = net.darknet
        ca, ha, wa = sa
        cb, hb, wb = sb
        if sec.name == "sam":
            layer.mode = "elementwise"
            if sa != sb:                                            # AB src/sam_layer.c:21-22
                raise sec.error(f"from: the previous layer's output {sa} (C,H,W) and layer {src}'s {sb} differ; "
                                f"AlexeyAB's make_sam_layer asserts they are equal (src/sam_layer.c:21-22)", "from")
        else:
            scale_wh = sec.get_int("scale_wh", 0) if sec.has("scale_wh") else 0   # AB src/parser.c:995
            layer.mode = "spatial" if scale_wh else "channels"
            if not scale_wh and not (ha == 1 and wa == 1 and ca == cb):          # :18, :24
                raise sec.error(f"from: the previous layer's output {sa} (C,H,W) must be {cb}x1x1 to scale the "
                                f"{cb} channels of layer {src} {sb}; AlexeyAB's make_scale_channels_layer asserts "
                                f"w == 1 && h == 1 and out_c == c (src/scale_channels_layer.c:18, :24)", "from")
            if scale_wh and not (ca == 1 and ha == hb and wa == wb):              # :19, :25
                raise sec.error(f"scale_wh=1: the previous layer's output {sa} (C,H,W) must be 1x{hb}x{wb} to "
                                f"scale every position of layer {src} {sb}; AlexeyAB's make_scale_channels_layer "
                                f"asserts c == 1 and equal w, h (src/scale_channels_layer.c:19, :25)", "scale_wh")
        layer.activation = _activation(sec, net.darknet)
        layer.out_shape = sb                                        # scale_channels_layer.c:21-23
        return layer

    def scale_view(self, a: np.ndarray) -> np.ndarray:
        """The scale tensor shaped to broadcast against the ``from`` tensor (C,H,W)."""
        c, h, w = self.out_shape
        if self.mode == "channels":
            return a.reshape(c, 1, 1)
        if self.mode == "spatial":
            return a.reshape(1, h, w)
        return a.reshape(c, h, w)

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        a = self.scale_view(np.asarray(xs[0], np.float32))
        out = (a * np.asarray(xs[1], np.float32)).astype(np.float32)     # one float32 product per element
        if self.activation == "leaky":                      # leaky_activate: .1f (float), AB activations.h
            return np.where(out > 0, out, np.float32(0.1) * out).astype(np.float32)
        return activations.apply_float(self.activation, out, self.darknet)

    def describe(self) -> str:
        what = {"channels": "per channel", "spatial": "per position", "elementwise": "elementwise"}[self.mode]
        return f"{self.section.name} {self.inputs[1]} x {self.inputs[0]} ({what})"


class QScaleChannels(QLayer):
    """Integer product (docs/fixed-point.md section 9.2)::

        P   = (a - za) * (b - zb)                               exact (int64), frac fa + fb
        out = sat(R(act(P) / 2**(fa + fb - f_out)) + zo)         (the requantize of section 4)

    ``a`` is the scale (the previous layer) at the element's channel (scale_wh=0), position
    (scale_wh=1) or element ([sam]); ``b`` the ``from`` layer.  Activations linear, relu and
    leaky (the integer slope 3277/2**15 of section 4); logistic is refused.
    """

    kind = "scale_channels"

    def __init__(self, layer, in_fmts, out_fmt, rounding):
        super().__init__(layer, out_fmt, rounding)
        why = self.refusal(layer)
        if why:
            raise FormatError(f"layer {layer.index}: {why}")
        self.in_fmts = list(in_fmts)
        if not out_fmt.signed:
            raise FormatError(f"layer {layer.index}: [{layer.section.name}] output format must be signed")
        fa, fb = self.in_fmts
        self.prod_frac = fa.frac + fb.frac
        self.shift = self.prod_frac - out_fmt.frac
        if not fp.MIN_SHIFT <= self.shift <= fp.MAX_SHIFT:
            raise FormatError(f"layer {layer.index}: [{layer.section.name}] shift {self.shift} outside "
                              f"[{fp.MIN_SHIFT}, {fp.MAX_SHIFT}]")

    @staticmethod
    def refusal(layer) -> str:
        if layer.activation not in INT_ACTIVATIONS:
            return (f"[{layer.section.name}] activation={layer.activation} has no fixed-point implementation "
                    f"(linear, relu, leaky; the float path runs it)")
        return ""

    def product(self, xs) -> np.ndarray:
        fa, fb = self.in_fmts
        a = self.layer.scale_view(np.asarray(xs[0], np.int64) - np.int64(fa.zero))
        return a * (np.asarray(xs[1], np.int64) - np.int64(fb.zero))

    def forward_ref(self, xs, stats=None):
        return fp.requantize(self.product(xs), self.shift, self.rounding, self.out_fmt.bits, self.layer.activation,
                             stats=stats, zero=self.out_fmt.zero)

    def stages_ref(self, xs) -> dict:
        """Golden stages: ``acc`` (the exact product P), ``act`` (before the shift), ``out``."""
        acc = self.product(xs)
        act, _ = fp.pre_shift_activation(acc, self.layer.activation)
        return {"acc": acc, "act": act, "out": self.forward_ref(xs)}

    def stage_formats(self) -> dict:
        fa, fb = self.in_fmts
        acc_bits = fa.bits + (fa.zero != 0 or not fa.signed) + fb.bits + (fb.zero != 0 or not fb.signed)
        act_bits = acc_bits + (12 if self.layer.activation == "leaky" else 0)
        return {"acc": (acc_bits, True, self.prod_frac), "act": (act_bits, True, None),
                "out": (self.out_fmt.bits, True, self.out_fmt.frac)}

    @classmethod
    def quantize(cls, layer, in_fmts, out_fmt, rounding):
        return cls(layer, in_fmts, out_fmt, rounding)

    def meta(self):
        d = super().meta()
        d.update(in_fmts=[f.to_dict() for f in self.in_fmts], shift=self.shift, activation=self.layer.activation,
                 mode=self.layer.mode)
        return d

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        return cls(layer, [fp.QFormat.from_dict(f) for f in meta["in_fmts"]], meta_format(meta), meta["rounding"])
