"""Activation formats chosen by their effect on the detection heads.

A per-tensor histogram method (:func:`mdfi.quant.calibrate.choose_frac`) weighs every value of a
tensor alike, but detections live in a few cells whose activations are the largest ones:
one more bit of resolution that clips them costs confidence, one bit of headroom that
nobody uses costs resolution everywhere.  :func:`search_formats` settles it per layer on the
calibration inputs by what reaches the heads: starting from the histogram choice, each
layer's ``frac`` is moved by -1/+1 when that lowers the squared error of the head logits
that matter -- objectness and the best class at the cells where the float network sees an
object -- with the rest of the network quantized (coordinate descent, two sweeps at most).
The integer model of every candidate is run by the C engine (the NumPy reference when the
extension is not built), so a search takes about a minute for yolov3-tiny.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from ..layers import OWN_FORMAT_KINDS

#: A cell counts as an object cell when the float objectness exceeds this.
OBJECT_THRESH = 0.1


class HeadObjective:
    """Squared error of the objectness and best-class logits at the float network's object
    cells, summed over the calibration inputs (the quantity :func:`search_formats` lowers)."""

    def __init__(self, network, inputs: Sequence[np.ndarray], min_cells: int = 0):
        """``min_cells``: when fewer cells than this exceed :data:`OBJECT_THRESH` over all
        inputs (a photo without the model's classes), the ``min_cells`` cells of highest float
        objectness are the object cells instead (ties at the cut included)."""
        from .quantize import input_to_u8
        self.network = network
        self.heads = [l for l in network.output_layers() if l.kind == "yolo"]
        self.srcs = [l.inputs[0] for l in self.heads]
        self.u8 = [input_to_u8(x) for x in inputs]
        self.cells = []                  # per input, per head: (idx obj, idx cls, float obj, float cls)
        outs = []
        for x in inputs:
            keep = {}

            def hook(i, o):
                if i in self.srcs:
                    keep[i] = o.astype(np.float64)
            network.forward_float(x, keep="needed", hook=hook)
            outs.append(keep)
        objs = [[1.0 / (1.0 + np.exp(-keep[s].reshape(l.n, l.entries, *keep[s].shape[1:])[:, 4]))
                 for l, s in zip(self.heads, self.srcs)] for keep in outs]
        thresh = OBJECT_THRESH
        flat = np.concatenate([o.ravel() for per in objs for o in per]) if objs and objs[0] else np.zeros(0)
        if min_cells > 0 and np.count_nonzero(flat > thresh) < min_cells and flat.size:
            top = np.sort(flat)[::-1][min(min_cells, flat.size) - 1]
            thresh = np.nextafter(top, -np.inf)          # obj > thresh <=> obj >= top
        self.thresh = float(thresh)
        for keep, per_obj in zip(outs, objs):
            per = []
            for l, s, obj in zip(self.heads, self.srcs, per_obj):
                z = keep[s].reshape(l.n, l.entries, *keep[s].shape[1:])
                a, r, c = np.nonzero(obj > thresh)
                k = np.argmax(z[a, 5:, r, c], axis=1) if a.size else np.zeros(0, int)
                per.append((a, r, c, k, z[a, 4, r, c], z[a, 5 + k, r, c]))
            self.cells.append(per)
        self.n_cells = sum(len(p[0]) for per in self.cells for p in per)

    def __call__(self, qm, engine: str = "c") -> float:
        from ..engine import FixedEngine
        try:
            eng = FixedEngine(qm, engine, threads=1)
        except Exception:                 # the C extension is not built: the reference
            eng = FixedEngine(qm, "ref")
        err = 0.0
        for u8, per in zip(self.u8, self.cells):
            outs = eng.run(u8, keep="all")
            for (a, r, c, k, zo, zc), l, s in zip(per, self.heads, self.srcs):
                if a.size == 0:
                    continue
                fmt = qm.layers[s].out_fmt
                zq = np.asarray(outs[s], np.float64) - fmt.zero
                zq = zq.reshape(l.n, l.entries, *zq.shape[1:]) * 2.0 ** -fmt.frac
                err += float(((zq[a, 4, r, c] - zo) ** 2).sum() + ((zq[a, 5 + k, r, c] - zc) ** 2).sum())
        return err


def search_formats(network, fracs: Dict[int, int], build: Callable[[Dict[int, int]], object],
                   objective: HeadObjective, *, sweeps: int = 2, progress: bool = True) -> Dict[int, int]:
    """Coordinate descent on the activation ``frac`` of every convolution output.

    ``build(fracs)`` returns the quantized model for candidate formats (the caller keeps the
    formats consistent, e.g. unified routes); ``objective(model)`` scores it.  Returns the
    best formats found.  Progress on stderr.
    """
    t0 = time.perf_counter()
    best = dict(fracs)
    best_err = objective(build(best))
    layers = [l.index for l in network.layers if l.kind == "convolutional" and l.index in best]
    for sweep in range(sweeps):
        improved = False
        for i in layers:
            for d in (-1, 1):
                cand = dict(best)
                cand[i] = best[i] + d
                try:
                    e = objective(build(cand))
                except Exception:            # a format out of range: not a candidate
                    continue
                if e < best_err * (1 - 1e-9):
                    best, best_err, improved = cand, e, True
                    break
            if progress:
                print(f"formats: sweep {sweep + 1}, layer {i}: frac {best[i]}, head error {best_err:.1f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        if not improved:
            break
    return best


def head_shifts(qm, objective: HeadObjective, engine: str = "c") -> Dict[int, np.ndarray]:
    """Per head convolution, the bias shift that cancels the mean error of the objectness
    and of the class logits at the object cells of the calibration inputs (one value for
    all objectness channels and one for all class channels of a head: a few hundred object
    cells do not determine 255 channel-wise values)."""
    from ..engine import FixedEngine
    try:
        eng = FixedEngine(qm, engine, threads=1)
    except Exception:
        eng = FixedEngine(qm, "ref")
    sums = {s: np.zeros(4) for s in objective.srcs}        # d_obj, n_obj, d_cls, n_cls
    for u8, per in zip(objective.u8, objective.cells):
        outs = eng.run(u8, keep="all")
        for (a, r, c, k, zo, zc), l, s in zip(per, objective.heads, objective.srcs):
            if a.size == 0:
                continue
            zq = np.asarray(outs[s], np.float64) - qm.layers[s].out_fmt.zero
            zq = zq.reshape(l.n, l.entries, *zq.shape[1:]) * 2.0 ** -qm.layers[s].out_fmt.frac
            sums[s] += [float((zo - zq[a, 4, r, c]).sum()), a.size, float((zc - zq[a, 5 + k, r, c]).sum()), a.size]
    out = {}
    for l, s in zip(objective.heads, objective.srcs):
        d_obj, n_obj, d_cls, n_cls = sums[s]
        v = np.zeros((l.n, l.entries))
        if n_obj:
            v[:, 4] = d_obj / n_obj
            v[:, 5:] = d_cls / n_cls
        out[s] = v.reshape(-1)
    return out


#: Fraction of the measured object-cell logit error that :func:`choose_decisions` cancels
#: (chosen on the method-selection photos, docs/quantization.md: the full correction also
#: lifts the many weak object cells of the calibration set and overshoots).
HEAD_SHIFT_STRENGTH = 0.5


def widen_formats(network, calib, fracs: Dict[int, int], layer_abits: Dict[int, int], abits: int,
                  act_method: str = "mse") -> Dict[int, int]:
    """``fracs`` (formats at the uniform width ``abits``) with the layers of ``layer_abits``
    given the histogram choice at their own width; routes are unified again where their
    producers still share a width."""
    from . import calibrate
    from ..errors import FormatError
    from .quantize import unify_route_formats
    out = dict(fracs)
    for i, b in layer_abits.items():
        if b == abits:
            continue
        if i not in calib:
            raise FormatError(f"per-layer activation width for layer {i}: the calibration statistics do not "
                              f"cover that layer")
        out[i] = calibrate.choose_frac(calib[i], b, act_method)
    return unify_route_formats(network, out, layer_abits, abits)


def choose_decisions(network, calib, inputs: Sequence[np.ndarray], *, wbits: int, abits: int,
                     per_channel: bool, act_method: str = "mse", progress: bool = True,
                     final: Optional[dict] = None, with_model: bool = False, search: bool = True,
                     clip_budget: Optional[float] = None, shift_strength: float = HEAD_SHIFT_STRENGTH,
                     layer_abits: Optional[Dict[int, int]] = None, searched: Optional[Dict[int, int]] = None,
                     layer_wbits: Optional[Dict[int, int]] = None, align=None, common: Optional[dict] = None):
    """The data-driven part of a recipe, as small JSON-able data: activation formats
    searched by their effect on the heads (:func:`search_formats`) and the head bias
    shifts (:func:`head_shifts`, times ``shift_strength``, default
    :data:`HEAD_SHIFT_STRENGTH`).  ``inputs``: float calibration inputs, made as the
    model's Darknet makes them (:func:`mdfi.preprocess.network_input`); ``calib``: their
    statistics (the starting formats, ``act_method`` with ``clip_budget`` if given).
    ``search=False`` keeps the starting formats (routes unified): with few object cells in
    the calibration photos the search fits them and not unseen photos
    (docs/quantization.md, yolov4-tiny).

    ``layer_abits`` ({layer: width}): some layers' outputs wider than ``abits``.  The search
    runs at the uniform width (or ``searched`` gives its result, from an earlier call); the
    wide layers then get their histogram format (:func:`widen_formats`), and the head shifts
    are measured on that model.  The widths are recorded in the result.  ``layer_wbits``
    ({layer: width}): per-layer weight widths, used throughout (search included).  ``align``:
    an :class:`~mdfi.quant.align.Alignment` of ``network`` used by every model built (its
    statistics replace ``calib``).  ``common``: more :func:`quantize_network` keyword arguments
    for every model built (e.g. ``rounding``, ``layer_rounding``, ``names``, ``cfg_text``)."""
    from . import calibrate
    from .quantize import quantize_network, unify_route_formats
    layer_abits = {int(k): int(v) for k, v in (layer_abits or {}).items() if int(v) != abits}
    layer_wbits = {int(k): int(v) for k, v in (layer_wbits or {}).items() if int(v) != wbits}
    from ..errors import FormatError
    if not any(l.kind == "yolo" for l in network.output_layers()):
        raise FormatError("the format search and head shifts need [yolo] detection heads; this network has none")
    objective = HeadObjective(network, inputs)
    if objective.n_cells == 0:
        raise FormatError(f"the format search found no object cells (float objectness > {OBJECT_THRESH:g}) in the "
                          f"{len(inputs)} calibration inputs: give photos with objects the model detects")
    opts = {} if clip_budget is None else {"clip_budget": clip_budget}
    al = dict(common or {})
    if align is not None:
        calib, al["align"] = align.calib, align

    def build(fr, shifts=None):
        return quantize_network(network, wbits=wbits, abits=abits, per_channel=per_channel, calib=calib,
                                act_fracs=unify_route_formats(network, fr, {}, abits), bias_shifts=shifts,
                                layer_wbits=layer_wbits, **al)
    if searched is None:
        base = unify_route_formats(network, calibrate.choose_formats(calib, network, abits, act_method, **opts),
                                   {}, abits)
        searched = base if not search else search_formats(network, base, build, objective, progress=progress)
    fracs = unify_route_formats(network, {int(k): int(v) for k, v in searched.items()}, {}, abits)
    if layer_abits:
        fracs = widen_formats(network, calib, fracs, layer_abits, abits, act_method)
    if final or layer_abits:  # e.g. GPTQ + empirical bias correction: measure the shifts on it
        model = quantize_network(network, wbits=wbits, abits=abits, per_channel=per_channel, calib=calib,
                                 act_fracs=fracs, progress=progress, layer_abits=layer_abits,
                                 layer_wbits=layer_wbits, **dict(al, **(final or {})))
    else:
        model = build(fracs)
    shifts = head_shifts(model, objective)
    heads = {}
    for l in network.output_layers():
        if l.kind != "yolo":
            continue
        v = shifts[l.inputs[0]].reshape(l.n, l.entries)
        heads[str(l.inputs[0])] = {"objectness": shift_strength * float(v[0, 4]),
                                   "classes": shift_strength * float(v[0, 5])}
    conv = {l.index for l in network.layers if l.kind in OWN_FORMAT_KINDS}
    d = {"wbits": wbits, "abits": abits, "per_channel": bool(per_channel),
         "act_fracs": {str(k): int(v) for k, v in sorted(fracs.items()) if k in conv},
         **({"layer_abits": {str(k): v for k, v in sorted(layer_abits.items())}} if layer_abits else {}),
         **({"layer_wbits": {str(k): v for k, v in sorted(layer_wbits.items())}} if layer_wbits else {}),
         "head_shifts": heads, "object_cells": objective.n_cells, "inputs": len(inputs)}
    if not search or clip_budget is not None or shift_strength != HEAD_SHIFT_STRENGTH:
        d["options"] = {"search": bool(search), "clip_budget": clip_budget, "shift_strength": float(shift_strength)}
    if not with_model:
        return d
    from .quantize import shift_biases
    for s, v in shifts.items():
        model.layers[s] = shift_biases(model.layers[s], shift_strength * v)
    return d, model


def decisions_to_kwargs(network, d: dict) -> dict:
    """``quantize_network`` keyword arguments (``act_fracs``, ``bias_shifts``) of
    :func:`choose_decisions` output (validated against ``network``)."""
    from ..errors import FormatError
    try:
        fracs = {int(k): int(v) for k, v in d["act_fracs"].items()}
        shifts = {}
        for k, hv in d.get("head_shifts", {}).items():
            i = int(k)
            consumers = [l for l in network.layers if l.kind == "yolo" and l.inputs == [i]]
            if not consumers:
                raise ValueError(f"layer {i} does not feed a [yolo] head")
            l = consumers[0]
            v = np.zeros((l.n, l.entries))
            v[:, 4] = float(hv["objectness"])
            v[:, 5:] = float(hv["classes"])
            shifts[i] = v.reshape(-1)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"recipe decisions do not fit the network: {exc}") from None
    missing = [l.index for l in network.layers if l.kind in OWN_FORMAT_KINDS and l.index not in fracs]
    if missing:
        raise FormatError(f"recipe decisions lack formats of layers {missing[:5]}")
    out = {"act_fracs": fracs, "bias_shifts": shifts}
    la = decision_layer_abits(d)
    if la:
        out["layer_abits"] = la
    return out


def decision_layer_abits(d: dict) -> Dict[int, int]:
    """The per-layer activation widths a decisions entry was made for ({} when uniform)."""
    from ..errors import FormatError
    try:
        return {int(k): int(v) for k, v in (d.get("layer_abits") or {}).items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"recipe decisions: bad layer_abits: {exc}") from None
