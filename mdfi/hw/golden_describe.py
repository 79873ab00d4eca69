"""What an ``mdfi golden`` manifest says about each layer besides its files
(docs/golden-format.md, ``manifest.json``): ``params`` (the settings that determine a layer's
arithmetic: geometry, route group slices, shortcut channel alignment, a table activation's
pre-activation code) and, for detection heads, ``decode`` (anchors, masks, grid, the tables
each entry goes through, AlexeyAB's ``scale_x_y``/``new_coords`` and NMS keys).

A new layer kind adds its entry to :data:`LAYER_PARAMS` (and its ``model.txt`` keys to
:func:`mdfi.hw.golden.model_txt`); a new head kind or decode its function to
:data:`HEAD_DECODERS`; both go into docs/golden-format.md and tests/test_golden_docs*.py.
"""

from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np


# ----------------------------------------------------------------------------------------------
# what a detection head needs to be decoded (manifest "decode"; docs/golden-format.md "Detections")
def _anchor_list(anchors) -> List[List[float]]:
    """float32 anchors as exact floats (JSON round-trips them bit for bit)."""
    return [[float(np.float32(a)) for a in row] for row in np.asarray(anchors, dtype=np.float32)]


def _yolo_decode(ql, qm) -> dict:
    l = ql.layer
    _, lh, lw = l.out_shape
    return {"kind": "yolo", "classes": int(l.classes), "n": int(l.n), "entries": int(l.entries),
            "mask": [int(m) for m in l.mask], "anchors": _anchor_list(l.anchors),
            "grid": [int(lh), int(lw)], "net": [int(l.net_w), int(l.net_h)],
            "layout": "[anchor][entry][y][x]", "entry_names": ["x", "y", "w", "h", "objectness", "class0..."],
            "entry_formats": {"x": "UQ1.15", "y": "UQ1.15", "w": "UQ15.16", "h": "UQ15.16",
                              "objectness": "UQ1.15", "classes": "UQ1.15"},
            "candidates": "objectness_q > obj_threshold_q15", "order": "cell-major (row, col), then anchor",
            "anchor_units": "network input pixels",
            # AlexeyAB: x/y tables with scale_x_y folded in (signed Q.15), new_coords (2t)^2 for w/h
            "scale_x_y": float(np.float32(l.scale_x_y)), "new_coords": bool(l.new_coords),
            # the quantizer's logit gain g of the objectness/class table, sigmoid(g*t) (1: none;
            # g != 1 sends x/y through the x/y table, scale 1: docs/fixed-point.md section 7)
            "logit_gain": float(getattr(ql, "logit_gain", 1.0)),
            **({"entry_formats": {"x": "Q16.15", "y": "Q16.15", "w": "UQ15.16", "h": "UQ15.16",
                                  "objectness": "UQ1.15", "classes": "UQ1.15"}} if ql.scaled else {}),
            # the exported table each entry goes through (model.txt sel=: 0 = first, 1 = second, 2 = third)
            "tables": _yolo_tables(ql),
            # this head's own NMS keys (test_detector uses the last head's: manifest postprocess)
            "nms_kind": str(l.nms_kind), "beta_nms": float(np.float32(l.beta_nms))}


def _yolo_tables(ql) -> dict:
    names = ql.table_names
    xy = names[2] if ql.scaled else names[0]
    return {"x": xy, "y": xy, "w": names[1], "h": names[1], "objectness": names[0], "classes": names[0]}


def _region_decode(ql, qm) -> dict:
    l = ql.layer
    _, lh, lw = l.out_shape
    return {"kind": "region", "classes": int(l.classes), "n": int(l.n), "entries": int(l.entries),
            "softmax": bool(l.softmax), "anchors": _anchor_list(l.anchors),
            "grid": [int(lh), int(lw)], "layout": "[anchor][entry][y][x]",
            "entry_names": ["x", "y", "w", "h", "objectness", "class0..."],
            "entry_formats": {"x": "UQ1.15", "y": "UQ1.15", "w": "UQ15.16", "h": "UQ15.16",
                              "objectness": "UQ1.15", "classes": "UQ1.15"},
            "candidates": "every cell and anchor", "order": "anchor-major (anchor, row, col)",
            "anchor_units": "grid cells"}


#: kind -> function(qlayer, quantized model) -> the head's "decode" entry.  A new head kind
#: (or a new decode of an existing one) adds its function here and its formulas to
#: docs/golden-format.md ("Detections") and tests/test_golden_docs*.py.
HEAD_DECODERS: Dict[str, Callable] = {"yolo": _yolo_decode, "region": _region_decode}


# ----------------------------------------------------------------------------------------------
# what each layer computes besides its formats (manifest "params"; model.txt carries the same)
def _table_params(ql) -> dict:
    """A table activation (docs/fixed-point.md 4.1): the pre-activation code and the table."""
    if not getattr(ql, "lut", False):
        return {}
    p = ql.pre_fmt
    return {"table": {"file": f"l{ql.index:03d}.act_lut", "pre_bits": int(p.bits), "pre_frac": int(p.frac),
                      "entries": 1 << int(p.bits), "qmin": int(p.min),
                      "index": "act_lut[pre - qmin]", "pre_ap_type": p.ap_type()}}


def _conv_zero(ql) -> dict:
    """Zero points (docs/fixed-point.md 1.1), only when nonzero (model.txt's ``pad_value=``,
    ``zero_out=``): the padding value, and the output's zero point the epilogue adds (a table
    activation has it folded into ``act_lut``: absent then)."""
    z_in, z_out = int(ql.in_fmt.zero), 0 if getattr(ql, "lut", False) else int(ql.out_fmt.zero)
    return {**({"pad_value": z_in} if z_in else {}), **({"zero_out": z_out} if z_out else {})}


def _conv_geometry(ql) -> dict:
    l = ql.layer
    return {"filters": int(l.filters), "size": int(l.size), "stride": int(l.stride), "pad": int(l.padding),
            "activation": l.activation, **_table_params(ql), **_conv_zero(ql),
            **({"groups": int(l.groups)} if l.groups > 1 else {})}


def _route_geometry(ql) -> dict:
    l = ql.layer
    zs = [int(f.zero) for f in ql.in_fmts]
    zero = {"zero_in": zs, "zero_out": int(ql.out_fmt.zero)} if any(zs) or ql.out_fmt.zero else {}
    return {"groups": int(l.groups), "group_id": int(l.group_id),
            "slices": [[int(a), int(b)] for a, b in l.slices()], "shifts": [int(v) for v in ql.shifts], **zero}


def _shortcut_geometry(ql) -> dict:
    l = ql.layer
    na = int(np.prod(l.in_shapes[0]))
    nb = int(np.prod(l.in_shapes[1]))
    fa, fb = (int(f.frac) for f in ql.in_fmts)
    return {"activation": l.activation, "fa": fa, "fb": fb, "sum_frac": int(ql.sum_frac), "shift": int(ql.shift),
            "a_elements": na, "b_elements": nb, "added_elements": min(na, nb), **_table_params(ql),
            **_shortcut_zero(ql)}


def _shortcut_zero(ql) -> dict:
    """Zero points (docs/fixed-point.md section 6), only when nonzero (model.txt's ``zero_a=``,
    ``zero_b=``, ``zero_out=``): subtracted from the inputs, the output's added before the
    saturation (a table activation has it folded into ``act_lut``: absent then)."""
    za, zb = (int(f.zero) for f in ql.in_fmts)
    zo = 0 if getattr(ql, "lut", False) else int(ql.out_fmt.zero)
    return {k: v for k, v in (("zero_a", za), ("zero_b", zb), ("zero_out", zo)) if v}


def _avgpool_zero(ql) -> dict:
    """Zero points of an average pool (docs/fixed-point.md 9.1), only when nonzero (model.txt's
    ``zero_in=``, ``zero_out=``)."""
    zi, zo = int(ql.in_fmt.zero), int(ql.out_fmt.zero)
    return {k: v for k, v in (("zero_in", zi), ("zero_out", zo)) if v}


def _avgpool_params(ql) -> dict:
    return {"plane": int(ql.layer.plane), "in_frac": int(ql.in_fmt.frac), "d": int(ql.d),
            "divisor": int(ql.layer.plane) << max(-int(ql.d), 0), **_avgpool_zero(ql)}


def _scale_params(ql) -> dict:
    fa, fb = (int(f.frac) for f in ql.in_fmts)
    return {"mode": ql.layer.mode, "activation": ql.layer.activation, "fa": fa, "fb": fb,
            "prod_frac": int(ql.prod_frac), "shift": int(ql.shift), **_shortcut_zero(ql)}


#: kind -> function(qlayer) -> the manifest's ``params`` of the layer: the settings that
#: determine its arithmetic (docs/golden-format.md, manifest.json).  A new layer kind adds
#: its entry here, its keys to model_txt(), and both to docs/golden-format.md.
LAYER_PARAMS: Dict[str, Callable] = {
    "convolutional": _conv_geometry,
    "maxpool": lambda ql: {"size": int(ql.layer.size), "stride": int(ql.layer.stride),
                           "padding": int(ql.layer.padding)},
    "upsample": lambda ql: {"stride": int(ql.layer.stride)},
    "reorg": lambda ql: {"stride": int(ql.layer.stride)},
    "route": _route_geometry,
    "shortcut": _shortcut_geometry,
    "avgpool": _avgpool_params,
    "scale_channels": _scale_params,
}
