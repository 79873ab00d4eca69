"""``[yolo]``: Darknet's yolo_layer.c (YOLOv3 detection head).

Defaults (parse_yolo): classes=20, num=1, mask=0..num-1 when absent, anchors all 0.5
(make_yolo_layer fills biases with .5).  The input must have ``len(mask)*(classes+5)``
channels.  Layout of input and output: ``[anchor n][entry][h][w]`` with entries
``x, y, w, h, objectness, class0..``.

Forward (forward_yolo_layer): copy, then logistic on entries 0,1 (x, y) and 4.. (objectness
and classes); w, h stay raw.

Detections (get_yolo_detections, get_yolo_box): a cell/anchor is kept when
``objectness > thresh``; ``box.x = (col + x)/lw``, ``box.y = (row + y)/lh``,
``box.w = exp(w)*anchor_w/net_w``, ``box.h = exp(h)*anchor_h/net_h``;
``prob[j] = objectness*class_j`` if that is ``> thresh``, else 0.

pjreddie computes the logistic in double (activations.h:32).  AlexeyAB
(forward_yolo_layer, src/yolo_layer.c:662-681) computes it in float and adds:

* ``scale_x_y`` (parse_yolo, src/parser.c:466, stored as float): after the activation,
  ``x, y <- x*s + (float)(-0.5*(s - 1))`` in float (scal_add_cpu, src/blas.c:328-332), also
  for s = 1;
* ``new_coords=1``: no activation at all in the layer (the conv before it has
  ``activation=logistic``), and boxes ``w = tw*tw*4*anchor_w/net_w`` in float
  (get_yolo_box, src/yolo_layer.c:131-152);
* ``nms_kind`` / ``beta_nms`` (src/parser.c:493-500): the NMS test_detector applies, taken
  from the last [yolo] (see :mod:`mdfi.postprocess`).
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..darknet import activations
from . import heads
from .. import fixedpoint as fp
from ..errors import FormatError
from ..limits import MAX_DIM
from .base import Layer, meta_format

#: nms_kind values AlexeyAB's parse_yolo knows (src/parser.c:494-499).
NMS_KINDS = ("default", "greedynms", "diounms")


class YoloLayer(Layer):
    kind = "yolo"

    @classmethod
    def from_section(cls, index, section, net):
        layer = super().from_section(index, section, net)
        sec = section
        layer.classes = sec.get_int("classes", 20, minimum=1)
        layer.total = sec.get_int("num", 1, minimum=1)
        MAX_DIM.check(layer.total, f"{sec.path}:{sec.line}: [yolo] num")   # before lists of num entries
        mask = sec.get_int_list("mask")
        if mask is None:
            mask = list(range(layer.total))
        for m in mask:
            if not 0 <= m < layer.total:
                raise sec.error(f"mask: anchor index {m} is outside 0..{layer.total - 1} (num={layer.total})", "mask")
        layer.mask = mask
        anchors = sec.get_float_list("anchors")
        if anchors is None:
            anchors = [0.5] * (2 * layer.total)
        if len(anchors) < 2 * layer.total:
            raise sec.error(f"anchors: {len(anchors)} values given, num={layer.total} needs "
                            f"{2 * layer.total}", "anchors")
        layer.anchors = np.asarray(anchors[: 2 * layer.total], dtype=np.float32).reshape(-1, 2)
        layer.n = len(mask)
        c, h, w = layer.in_shape
        need = layer.n * (layer.classes + 5)
        if c != need:
            raise sec.error(f"input has {c} channels, but {layer.n} anchors x ({layer.classes} classes + 5) "
                            f"needs {need} (check filters= of the layer before)")
        layer.out_shape = layer.in_shape
        layer.net_w, layer.net_h = net.width, net.height
        layer.darknet = net.darknet
        layer.scale_x_y, layer.new_coords, layer.nms_kind, layer.beta_nms = 1.0, False, "default", 0.6
        if net.darknet == "alexeyab":
            if sec.has("scale_x_y"):
                layer.scale_x_y = float(np.float32(sec.get_float("scale_x_y", 1.0)))
            if sec.has("new_coords"):
                layer.new_coords = bool(sec.get_int("new_coords", 0))
            if sec.has("beta_nms"):
                layer.beta_nms = float(np.float32(sec.get_float("beta_nms", 0.6)))
            if sec.has("nms_kind"):
                kind = sec.get_str("nms_kind", "default")
                if kind not in NMS_KINDS:
                    raise sec.error(f"nms_kind={kind}: expected one of {', '.join(NMS_KINDS)} (AlexeyAB silently "
                                    f"uses default for any other name, src/parser.c:495-499)", "nms_kind")
                layer.nms_kind = kind
        return layer

    @property
    def xy_shift(self) -> np.float32:
        """The float BETA of scal_add_cpu: (float)(-0.5*((double)scale_x_y - 1))."""
        return np.float32(-0.5 * (float(np.float32(self.scale_x_y)) - 1.0))

    @property
    def entries(self) -> int:
        return self.classes + 5

    def logistic_mask(self) -> np.ndarray:
        """Boolean per channel: True where forward applies the logistic (none with new_coords)."""
        m = np.ones((self.n, self.entries), dtype=bool)
        m[:, 2:4] = False
        if self.new_coords:
            m[:] = False
        return m.reshape(-1)

    def xy_mask(self) -> np.ndarray:
        """Boolean per channel: the x and y entries."""
        m = np.zeros((self.n, self.entries), dtype=bool)
        m[:, 0:2] = True
        return m.reshape(-1)

    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        out = xs[0].copy()
        m = self.logistic_mask()
        out[m] = activations.logistic(out[m], self.darknet)
        if self.darknet == "alexeyab":
            xy = self.xy_mask()
            out[xy] = out[xy] * np.float32(self.scale_x_y) + self.xy_shift
        return out

    def decode(self, out: np.ndarray, thresh: float):
        """Darknet's get_yolo_detections before correct_yolo_boxes.

        Returns ``boxes`` (N,4) x,y,w,h relative to the network input, ``objectness`` (N,)
        and ``probs`` (N, classes), in Darknet's order (cell-major, then anchor).
        """
        _, lh, lw = self.out_shape
        p = out.reshape(self.n, self.entries, lh, lw)
        obj = p[:, 4]                                   # (n, lh, lw)
        # Darknet loops i over cells, then n over anchors: order (cell, anchor).
        keep = np.argwhere((obj > np.float32(thresh)).transpose(1, 2, 0))  # rows: (row, col, n)
        if len(keep) == 0:
            return (np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                    np.zeros((0, self.classes), np.float32))
        row, col, n = keep[:, 0], keep[:, 1], keep[:, 2]
        a = self.anchors[np.asarray(self.mask)[n]]
        # (i + x)/lw: int + float is a float sum in C (NumPy would widen int64 + float32)
        x = (col.astype(np.float32) + p[n, 0, row, col]) / np.float32(lw)
        y = (row.astype(np.float32) + p[n, 1, row, col]) / np.float32(lh)
        tw, th = p[n, 2, row, col], p[n, 3, row, col]
        if self.new_coords:
            # float: x*x*4*biases/w (AB src/yolo_layer.c:140-141)
            bw = tw * tw * np.float32(4) * a[:, 0] / np.float32(self.net_w)
            bh = th * th * np.float32(4) * a[:, 1] / np.float32(self.net_h)
        else:
            # exp() in double times the float anchor over the int width, stored as float
            bw = (np.exp(tw.astype(np.float64)) * a[:, 0] / self.net_w).astype(np.float32)
            bh = (np.exp(th.astype(np.float64)) * a[:, 1] / self.net_h).astype(np.float32)
        objectness = obj[n, row, col]
        probs = objectness[:, None] * p[n, 5:, row, col]
        probs = np.where(probs > np.float32(thresh), probs, np.float32(0))
        return np.stack([x, y, bw, bh], axis=1).astype(np.float32), objectness, probs.astype(np.float32)

    def describe(self) -> str:
        extra = (f" s{self.scale_x_y:g}" if self.scale_x_y != 1.0 else "") + (" new_coords" if self.new_coords else "")
        return f"yolo mask {','.join(map(str, self.mask))}{extra}"


#: the logit gains a quantizer may give a [yolo] head's objectness/class table (a correction
#: of a few per cent; anything outside is a damaged file or a mistake, refused)
LOGIT_GAIN_RANGE = (0.5, 2.0)


def check_gain(layer, gain) -> float:
    """``gain`` as a float64 in :data:`LOGIT_GAIN_RANGE` (1 with ``new_coords``, whose
    probabilities are the conv's own logistic outputs), else FormatError naming the layer."""
    if isinstance(gain, bool) or not isinstance(gain, (int, float, np.floating, np.integer)):
        raise FormatError(f"layer {layer.index}: logit gain {str(gain)[:40]!r} is not a number")
    g = float(gain)
    if not LOGIT_GAIN_RANGE[0] <= g <= LOGIT_GAIN_RANGE[1]:
        raise FormatError(f"layer {layer.index}: logit gain {g!r} outside {LOGIT_GAIN_RANGE[0]}..{LOGIT_GAIN_RANGE[1]}")
    if g != 1.0 and layer.new_coords:
        raise FormatError(f"layer {layer.index}: a logit gain on a new_coords head (its inputs are probabilities)")
    return g


def yolo_gains(network, gains) -> dict:
    """``quantize_network(head_gains=)`` with integer keys, each a ``[yolo]`` layer of
    ``network`` (else FormatError; the gains themselves are checked by :func:`check_gain`)."""
    out = {int(k): v for k, v in (gains or {}).items()}
    for i in out:
        if not 0 <= i < len(network.layers) or network.layers[i].kind != "yolo":
            raise FormatError(f"head gain for layer {i}: not a [yolo] layer of {network.path}")
    return out


class QYolo(heads.QHead):
    """Integer ``[yolo]``: logistic and exp through lookup tables (see :mod:`.heads`).

    Output int32 ``[anchor][entry][h][w]``: x, y, objectness and classes in unsigned Q1.15,
    w and h as exp() in unsigned Q15.16.  With AlexeyAB's ``scale_x_y != 1`` or
    ``new_coords`` a third table gives x and y in signed Q.15 (``xy_lut``, the scale folded
    in); with ``new_coords`` the objectness/class table is the identity (``prob_lut``,
    the conv before already applied the logistic) and the w/h table is ``(2t)^2``
    (``wh_lut``), docs/fixed-point.md section 7.

    ``logit_gain`` g (a quantizer's choice, default 1): the objectness/class table is
    ``sigmoid(g*t)`` -- it undoes an attenuation of the head's logits that the quantized
    network makes (docs/quantization.md round 18) at no run-time cost; x and y then go
    through the x/y table (``sigmoid(t)``, scale 1), so the boxes are unchanged.
    """

    kind = "yolo"

    def __init__(self, layer, in_fmt, rounding, logistic=None, exp=None, xy=None, logit_gain: float = 1.0):
        self.logit_gain = check_gain(layer, logit_gain)
        if layer.new_coords:
            logistic = heads.identity_prob_table(in_fmt) if logistic is None else logistic
            exp = heads.square_table(in_fmt) if exp is None else exp
        elif logistic is None and self.logit_gain != 1.0:
            logistic = heads.logistic_table(in_fmt, self.logit_gain)
        super().__init__(layer, in_fmt, rounding, logistic, exp)
        self.scaled = layer.scale_x_y != 1.0 or layer.new_coords or self.logit_gain != 1.0
        self.xy = None
        if self.scaled:
            self.xy = (heads.xy_table(in_fmt, layer.scale_x_y, layer.new_coords) if xy is None else np.asarray(xy))
            heads.check_table(f"layer {self.index}: xy table", self.xy, self.n_entries, -heads.XY_MAX, heads.XY_MAX)

    @property
    def table_names(self):
        if self.layer.new_coords:
            return ("prob_lut", "wh_lut", "xy_lut")
        return ("logistic_lut", "exp_lut", "xy_lut") if self.scaled else ("logistic_lut", "exp_lut")

    def table_select(self) -> np.ndarray:
        """Per channel: 0 = the Q1.15 table, 1 = the Q15.16 table, 2 = the x/y table."""
        l = self.layer
        sel = np.zeros((l.n, l.entries), np.uint8)
        sel[:, 2:4] = 1
        if self.scaled:
            sel[:, 0:2] = 2
        return sel.reshape(-1)

    def forward_ref(self, xs, stats=None):
        x = np.asarray(xs[0])
        sel = self.table_select()
        out = np.empty(x.shape, np.int32)
        for code, table in ((0, self.logistic), (1, self.exp), (2, self.xy)):
            m = sel == code
            if m.any():
                out[m] = heads.lookup(table, x[m], self.in_fmt)
        return out

    def arrays(self):
        tabs = (self.logistic, self.exp, self.xy)
        return dict(zip(self.table_names, tabs))

    @classmethod
    def quantize(cls, layer, in_fmt, rounding, logit_gain: float = 1.0):
        return cls(layer, in_fmt, rounding, logit_gain=logit_gain)

    def meta(self):
        d = super().meta()
        if self.scaled:
            d.update(scale_x_y=self.layer.scale_x_y, new_coords=bool(self.layer.new_coords))
        if self.logit_gain != 1.0:
            d.update(logit_gain=self.logit_gain)
        return d

    def param_bits(self) -> int:
        return self.logistic.size * 16 + self.exp.size * 32 + (self.xy.size * 32 if self.scaled else 0)

    @classmethod
    def from_saved(cls, layer, meta, arrays):
        gain = meta.get("logit_gain", 1.0)
        scaled = layer.scale_x_y != 1.0 or layer.new_coords or gain != 1.0
        names = ("prob_lut", "wh_lut", "xy_lut") if layer.new_coords else ("logistic_lut", "exp_lut", "xy_lut")
        tabs = [arrays[n] for n in names[:3 if scaled else 2]]
        return cls(layer, meta_format(meta, "in_fmt"), meta["rounding"], *tabs, logit_gain=gain)

    def describe_formats(self) -> str:
        if not self.scaled:
            return super().describe_formats()
        gain = f", logit gain {self.logit_gain:g}" if self.logit_gain != 1.0 else ""
        return (f"in {self.in_fmt.ap_type()} -> prob UQ1.15, {'(2t)^2' if self.layer.new_coords else 'exp'} UQ15.16, "
                f"xy Q.15 (scale_x_y {self.layer.scale_x_y:g}){gain}")

    def decode_int(self, out: np.ndarray, thresh: float):
        """:meth:`decode_int_ref` in C (csrc/mdfi_post.c) where it can run (an int32
        output), else the reference itself; the same arrays either way."""
        from ..postprocess_c import decode_yolo_q
        got = decode_yolo_q(self, out, thresh)
        return self.decode_int_ref(out, thresh) if got is None else got

    def decode_int_ref(self, out: np.ndarray, thresh: float):
        """Candidates with integer thresholds, then host-side float boxes (same order and
        semantics as :meth:`YoloLayer.decode`)."""
        l = self.layer
        _, lh, lw = l.out_shape
        p = np.asarray(out).reshape(l.n, l.entries, lh * lw)
        t_obj, t_prob = heads.thresholds(thresh)
        cell, n = np.nonzero((p[:, 4] > t_obj).T)   # in (row, col, anchor) order, as Darknet's loops
        if len(n) == 0:
            return (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, l.classes), np.float32))
        ent = p[n, :, cell].astype(np.int64)        # (candidates, entries): one gather
        a = l.anchors[np.asarray(l.mask)[n]].astype(np.float64)
        row, col = np.divmod(cell, lw)
        # x = (col + tx) / lw, y = (row + ty) / lh; w = ew * anchor_w / net_w, h likewise (float64)
        xy = (np.stack([col, row], axis=1) + ent[:, 0:2] * 2.0 ** -fp.PROB_FRAC) / (lw, lh)
        wh = ent[:, 2:4] * 2.0 ** -fp.EXP_FRAC * a / (l.net_w, l.net_h)
        obj_q = ent[:, 4]
        prob_q = obj_q[:, None] * ent[:, 5:]
        prob_q = np.where(prob_q > t_prob, prob_q, 0)
        boxes = np.concatenate([xy, wh], axis=1).astype(np.float32)
        return boxes, heads.to_float_prob(obj_q), heads.to_float_prob(prob_q, 2 * fp.PROB_FRAC)
