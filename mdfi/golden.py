"""``mdfi golden``: per-layer golden vectors for RTL verification (docs/golden-format.md).

The layer outputs come from the engine ``mdfi detect`` runs (the C kernels by default);
the intermediate stages (``acc``, ``act``) are recomputed by the NumPy reference from the
same layer inputs, and their final requantization is checked against the engine's output
before anything is written, so every exported stage is consistent with every other.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Dict, Iterable, List, Optional, Sequence, Set

import numpy as np

from . import __version__
from . import fixedpoint as fp
from . import vectors
from .errors import GoldenError, MDFIError
from .postprocess import postprocess, settings as post_settings
from .quantize import QuantizedModel, input_to_u8

FORMAT = "mdfi-golden"
FORMAT_VERSION = 1
PARAM_STAGES = ("weights", "bias", "shift", "logistic_lut", "exp_lut", "expneg_lut", "act_lut", "xy_lut",
                "prob_lut", "wh_lut")


def parse_layers(spec: Optional[str], n: int) -> Set[int]:
    """``"0,5-7,15"`` -> {0, 5, 6, 7, 15}; None -> every layer.  Errors name the bad item."""
    if spec is None or spec.strip() == "":
        return set(range(n))
    out: Set[int] = set()
    for item in filter(None, (t.strip() for t in spec.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not m:
            raise MDFIError(f"--layers: {item!r} is not an index or a range like 5-7")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if a > b or b >= n:
            raise MDFIError(f"--layers: {item!r} is outside the model's layers 0..{n - 1}")
        out.update(range(a, b + 1))
    return out


def parse_formats(spec: Optional[str]) -> List[str]:
    if spec is None:
        return list(vectors.FORMATS)
    fmts = [f.strip() for f in spec.split(",") if f.strip()]
    bad = [f for f in fmts if f not in vectors.FORMATS]
    if bad or not fmts:
        raise MDFIError(f"--format: {', '.join(bad) or 'nothing'} not among {', '.join(vectors.FORMATS)}")
    return fmts


def _fmt_fields(bits: int, signed: bool, frac) -> dict:
    d = {"bits": int(bits), "signed": bool(signed), "frac": frac, "ap_type": None, "q": None}
    if isinstance(frac, int) and fp.QFormat.MIN_FRAC <= frac <= fp.QFormat.MAX_FRAC and 2 <= bits <= 16:
        f = fp.QFormat(bits, frac, signed)
        d.update(ap_type=f.ap_type(), q=f.q_notation())
    elif isinstance(frac, int):
        d.update(ap_type=f"ap_{'' if signed else 'u'}fixed<{bits},{bits - frac}>",
                 q=f"{'' if signed else 'U'}Q{bits - frac - (1 if signed else 0)}.{frac}")
    return d


class _Writer:
    def __init__(self, folder: str, formats: Sequence[str], rounding: str):
        self.folder = folder
        self.formats = list(formats)
        self.rounding = rounding
        self.files: List[dict] = []

    def tensor(self, name: str, layer: int, stage: str, arr: np.ndarray, bits: int, signed: bool, frac,
               layout: str = "CHW", rounding: Optional[str] = None, saturation: Optional[str] = "AP_SAT",
               formats: Optional[Sequence[str]] = None) -> None:
        arr = np.asarray(arr)
        for fmt in formats or self.formats:
            path = f"{name}.{fmt}"
            full = os.path.join(self.folder, path)
            vectors.write(full, arr, fmt, bits, signed)
            with open(full, "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            entry = {"path": path, "layer": layer, "stage": stage, "format": fmt, "shape": list(arr.shape),
                     "layout": layout, **_fmt_fields(bits, signed, frac),
                     "rounding": rounding if rounding is not None else self.rounding,
                     "saturation": saturation, "sha256": digest}
            self.files.append(entry)


def _qlayer_stages(ql, xs) -> Dict[str, np.ndarray]:
    return ql.stages_ref(xs) if hasattr(ql, "stages_ref") else {}


def _type_name(fmt) -> str:
    if fmt is None:
        return "s32"
    if not fmt.signed:
        return "u8"
    return "s8" if fmt.bits <= 8 else "s16"


def model_txt(qm: QuantizedModel) -> str:
    """The standalone C runner's model description (docs/golden-format.md)."""
    net = qm.network
    lines = ["mdfi-model 1", f"# {qm.name}: {qm.describe()}",
             f"input c={net.channels} h={net.height} w={net.width}"]
    fmts = {-1: qm.input_fmt}
    act = {a: a for a in ("linear", "leaky", "relu", "logistic", "mish", "swish", "hard_mish", "relu6")}

    def table(ql) -> str:        # the table activations (docs/golden-format.md)
        if not getattr(ql, "lut", False):
            return ""
        return f" pre_bits={ql.pre_fmt.bits} pre_frac={ql.pre_fmt.frac} lut=l{ql.index:03d}.act_lut.hex"
    for ql in qm.layers:
        l = ql.layer
        ins = ",".join(str(i) for i in ql.inputs)
        tag = f"layer {ql.index}"
        c, h, w = l.in_shape
        if ql.kind == "convolutional":
            _, oh, ow = l.out_shape
            lines.append(f"{tag} conv in={ins} c={c} h={h} w={w} m={l.filters} k={l.size} stride={l.stride} "
                         f"pad={l.padding} act={act[l.activation]} rounding={ql.rounding} "
                         f"in_type={_type_name(fmts[ql.inputs[0]])} wbits={ql.wbits} out_bits={ql.out_fmt.bits} "
                         f"acc64={int(ql.acc64)} acc_bits={ql.acc_bits} oh={oh} ow={ow} "
                         f"weights=l{ql.index:03d}.weights.hex bias=l{ql.index:03d}.bias.hex "
                         f"shift=l{ql.index:03d}.shift.hex{table(ql)}")
        elif ql.kind == "maxpool":
            _, oh, ow = l.out_shape
            lines.append(f"{tag} maxpool in={ins} c={c} h={h} w={w} size={l.size} stride={l.stride} "
                         f"pad={l.padding} oh={oh} ow={ow}")
        elif ql.kind == "upsample":
            lines.append(f"{tag} upsample in={ins} c={c} h={h} w={w} stride={l.stride}")
        elif ql.kind == "reorg":
            lines.append(f"{tag} reorg in={ins} c={c} h={h} w={w} stride={l.stride}")
        elif ql.kind == "route":
            groups = f" groups={l.groups} group_id={l.group_id}" if getattr(l, "groups", 1) > 1 else ""
            lines.append(f"{tag} route in={ins} shifts={','.join(map(str, ql.shifts))} rounding={ql.rounding} "
                         f"out_bits={ql.out_fmt.bits}{groups}")
        elif ql.kind == "shortcut":
            fa, fb = (f.frac for f in ql.in_fmts)
            lines.append(f"{tag} shortcut in={ins} fa={fa} fb={fb} out_frac={ql.out_fmt.frac} "
                         f"act={act[l.activation]} rounding={ql.rounding} out_bits={ql.out_fmt.bits}{table(ql)}")
        elif ql.kind == "yolo":
            names = ql.table_names
            sel = ",".join(map(str, ql.table_select()))
            xy = f" xy=l{ql.index:03d}.{names[2]}.hex" if ql.scaled else ""
            lines.append(f"{tag} yolo in={ins} c={c} h={h} w={w} qmin={ql.in_fmt.min} bits={ql.in_fmt.bits} "
                         f"sel={sel} logistic=l{ql.index:03d}.{names[0]}.hex exp=l{ql.index:03d}.{names[1]}.hex{xy}")
        elif ql.kind == "region":
            per = np.zeros((l.n, l.entries), int)
            per[:, 2:4] = 1
            if l.softmax:
                per[:, 5:] = 2
            lines.append(f"{tag} region in={ins} c={c} h={h} w={w} qmin={ql.in_fmt.min} bits={ql.in_fmt.bits} "
                         f"sel={','.join(map(str, per.reshape(-1)))} softmax={int(l.softmax)} n={l.n} "
                         f"entries={l.entries} classes={l.classes} logistic=l{ql.index:03d}.logistic_lut.hex "
                         f"exp=l{ql.index:03d}.exp_lut.hex expneg=l{ql.index:03d}.expneg_lut.hex")
        else:  # pragma: no cover - every kind is handled above
            raise GoldenError(f"layer {ql.index}: kind {ql.kind} cannot be exported")
        fmts[ql.index] = ql.out_fmt
    return "\n".join(lines) + "\n"


def _write_params(w: _Writer, ql) -> None:
    name = f"l{ql.index:03d}"
    if ql.kind == "convolutional":
        wf = ql.w_frac.tolist()
        w.tensor(f"{name}.weights", ql.index, "weights", ql.weights, ql.wbits, True,
                 wf[0] if len(set(wf)) == 1 else wf, layout="MCKK", rounding=None, saturation=None)
        bf = (ql.w_frac + ql.in_fmt.frac).tolist()
        w.tensor(f"{name}.bias", ql.index, "bias", ql.bias, ql.acc_bits, True, bf[0] if len(set(bf)) == 1 else bf,
                 layout="M", rounding=None, saturation=None)
        w.tensor(f"{name}.shift", ql.index, "shift", ql.shift, 8, True, None, layout="M", rounding=None,
                 saturation=None)
    if getattr(ql, "lut", False):
        f = ql.out_fmt
        w.tensor(f"{name}.act_lut", ql.index, "act_lut", ql.act_lut, f.bits, True, f.frac, layout="TABLE",
                 rounding=None, saturation=None)
    if ql.kind == "yolo" and ql.scaled:
        n0, n1, n2 = ql.table_names
        w.tensor(f"{name}.{n0}", ql.index, n0, ql.logistic, 16, False, fp.PROB_FRAC, layout="TABLE",
                 rounding=None, saturation=None)
        w.tensor(f"{name}.{n1}", ql.index, n1, ql.exp, 32, True, fp.EXP_FRAC, layout="TABLE",
                 rounding=None, saturation=None)
        w.tensor(f"{name}.{n2}", ql.index, n2, ql.xy, 32, True, fp.PROB_FRAC, layout="TABLE",
                 rounding=None, saturation=None)
    elif ql.kind in ("yolo", "region"):
        w.tensor(f"{name}.logistic_lut", ql.index, "logistic_lut", ql.logistic, 16, False, fp.PROB_FRAC,
                 layout="TABLE", rounding=None, saturation=None)
        w.tensor(f"{name}.exp_lut", ql.index, "exp_lut", ql.exp, 32, True, fp.EXP_FRAC, layout="TABLE",
                 rounding=None, saturation=None)
        if ql.kind == "region":
            w.tensor(f"{name}.expneg_lut", ql.index, "expneg_lut", ql.expneg, 32, True, fp.EXP_FRAC,
                     layout="TABLE", rounding=None, saturation=None)


def export(model, image, out_dir: str, *, layers: Optional[Iterable[int]] = None,
           formats: Optional[Sequence[str]] = None, thresh: float = 0.25, nms: float = 0.45,
           image_name: Optional[str] = None) -> dict:
    """Write the golden vectors of ``model`` (a fixed-point :class:`mdfi.Model`) on ``image``.

    Returns the manifest (also written as ``manifest.json``).
    """
    qm: QuantizedModel = getattr(model, "quantized", None)
    if qm is None:
        raise MDFIError("golden vectors need a fixed-point model (not the float path)")
    n = len(qm.layers)
    selected = set(range(n)) if layers is None else set(layers)
    formats = list(formats or vectors.FORMATS)
    os.makedirs(out_dir, exist_ok=True)
    if os.listdir(out_dir) and os.path.exists(os.path.join(out_dir, "manifest.json")):
        pass  # overwriting an earlier export of the same layout is fine
    prep = model.prepare(image)
    x = input_to_u8(prep.tensor)
    outs = model.engine.run(x, keep="all")                      # the engine `mdfi detect` runs
    w = _Writer(out_dir, formats, qm.options.get("rounding", "half_up"))
    w.tensor("input", -1, "out", x, 8, False, 0, rounding=None, saturation=None)
    layer_entries = []
    for ql in qm.layers:
        l = ql.layer
        _write_params(w, ql)
        exported = ql.index in selected
        entry = {"index": ql.index, "kind": ql.kind, "inputs": list(ql.inputs),
                 "in_shapes": [list(s) for s in l.in_shapes], "out_shape": list(l.out_shape),
                 "exported": exported, "meta": ql.meta()}
        layer_entries.append(entry)
        if not exported:
            continue
        name = f"l{ql.index:03d}"
        xs = [x if i == -1 else outs[i] for i in ql.inputs]
        in_fmts = [qm.input_fmt if i == -1 else qm.layers[i].out_fmt for i in ql.inputs]
        for k, (xi, f) in enumerate(zip(xs, in_fmts)):
            bits, signed, frac = (32, True, None) if f is None else (f.bits, f.signed, f.frac)
            w.tensor(f"{name}.in{k}", ql.index, f"in{k}", xi, bits, signed, frac, rounding=None, saturation=None)
        stages = _qlayer_stages(ql, [np.asarray(v) for v in xs])
        if stages:
            if not np.array_equal(stages["out"], outs[ql.index]):
                raise GoldenError(f"layer {ql.index}: the engine's output differs from the reference "
                                  f"recomputation (report this as a bug)")
            sf = ql.stage_formats()
            for st in (k for k in sf if k != "out"):         # acc, act (or pre: table activations)
                bits, signed, frac = sf[st]
                w.tensor(f"{name}.{st}", ql.index, st, stages[st], bits, signed, frac, rounding=ql.rounding,
                         saturation=None)
        if ql.out_fmt is None:
            w.tensor(f"{name}.out", ql.index, "out", outs[ql.index], 32, True, None, rounding=ql.rounding,
                     saturation=None)
        else:
            f = ql.out_fmt
            w.tensor(f"{name}.out", ql.index, "out", outs[ql.index], f.bits, f.signed, f.frac, rounding=ql.rounding)
    with open(os.path.join(out_dir, "model.txt"), "w") as fh:
        fh.write(model_txt(qm))
    # Detections decoded from the exported head outputs (the same path as `mdfi detect`).
    raws = [hl.decode_int(outs[hl.index], thresh) for hl in qm.output_layers()]
    dets = postprocess(raws, prep.width, prep.height, qm.network.width, qm.network.height, thresh, nms,
                       model.names, **post_settings(qm.network))
    src = image_name or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<array>")
    with open(os.path.join(out_dir, "detections.json"), "w") as fh:
        json.dump({"image": src, "width": prep.width, "height": prep.height, "thresh": thresh, "nms": nms,
                   "detections": [d.to_dict() for d in dets]}, fh, indent=1)
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "mdfi_version": __version__,
        "model": {"name": qm.name, "cfg_name": qm.cfg_name, "options": qm.options, "engine": model.engine.name},
        "image": {"path": src, "width": prep.width, "height": prep.height},
        "net": {"width": qm.network.width, "height": qm.network.height, "channels": qm.network.channels},
        "layers": layer_entries, "files": w.files, "detections": "detections.json", "model_txt": "model.txt",
    }
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    return manifest
