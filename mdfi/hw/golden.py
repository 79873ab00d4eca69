"""``mdfi golden``: per-layer golden vectors for RTL verification (docs/golden-format.md).

The layer outputs come from the engine ``mdfi detect`` runs (the C kernels by default);
the intermediate stages (``acc``, ``act``) are recomputed by the NumPy reference from the
same layer inputs, and their final requantization is checked against the engine's output
before anything is written, so every exported stage is consistent with every other.

The export is planned first (every file, its shape and size: :func:`plan`), the plan's
size is reported and checked against the free space, and the files are written into a
temporary sibling folder renamed into place at the end (:mod:`mdfi.hw.exportdir`): an error
or a full disk never leaves a half-written export.  The manifest also carries what is
needed to turn the head outputs into the final detections (``decode`` per head,
``postprocess``): docs/golden-format.md, "Detections".
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

import numpy as np

from .. import __version__
from .. import fixedpoint as fp
from .. import safejson
from . import vectors
from ..errors import GoldenError, MDFIError
from .exportdir import ExportFolder
from .golden_describe import HEAD_DECODERS, LAYER_PARAMS
from ..postprocess import postprocess, settings as post_settings
from ..preprocess import letterbox_geometry
from ..quant.qmodel import QuantizedModel, input_to_u8

FORMAT = "mdfi-golden"
FORMAT_VERSION = 1
PARAM_STAGES = ("weights", "bias", "shift", "logistic_lut", "exp_lut", "expneg_lut", "act_lut", "xy_lut",
                "prob_lut", "wh_lut")
#: Tensor stages ``--stages`` selects (``in`` = every ``inN``); parameters are always written.
TENSOR_STAGES = ("in", "acc", "act", "pre", "out")     # pre: table activations (docs/fixed-point.md 4.1)
#: What ``mdfi golden`` writes unless told otherwise: $readmemh hex only (docs/golden-format.md).
DEFAULT_FORMATS = ("hex",)
#: Files of an export besides the vector files.
META_FILES = ("manifest.json", "model.txt", "detections.json")


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
        if a > b:                           # said "outside the model's layers" of 5-2
            raise MDFIError(f"--layers: {item!r} runs backwards (write {b}-{a})")
        if b >= n:
            raise MDFIError(f"--layers: {item!r} is outside the model's layers 0..{n - 1}")
        out.update(range(a, b + 1))
    return out


def parse_formats(spec: Optional[str]) -> List[str]:
    """``"hex,npy"`` -> ["hex", "npy"]; None -> the default (hex only); ``all`` -> all three."""
    if spec is None:
        return list(DEFAULT_FORMATS)
    if spec.strip() == "all":
        return list(vectors.FORMATS)
    fmts = [f.strip() for f in spec.split(",") if f.strip()]
    bad = [f for f in fmts if f not in vectors.FORMATS]
    if bad or not fmts:
        raise MDFIError(f"--format: {', '.join(bad) or 'nothing'} not among {', '.join(vectors.FORMATS)}")
    return fmts


def parse_stages(spec: Optional[str]) -> List[str]:
    """``"acc,out"`` -> the tensor stages to write (``in`` = every input); None -> all."""
    if spec is None or spec.strip() in ("", "all"):
        return list(TENSOR_STAGES)
    st = [t.strip() for t in spec.split(",") if t.strip()]
    bad = [t for t in st if t not in TENSOR_STAGES]
    if bad or not st:
        raise MDFIError(f"--stages: {', '.join(bad) or 'nothing'} not among {', '.join(TENSOR_STAGES)} "
                        f"(parameters are always written)")
    return [t for t in TENSOR_STAGES if t in st]


def _fmt_fields(bits: int, signed: bool, frac, zero: int = 0) -> dict:
    """A file entry's format fields; ``zero`` (the zero point, docs/fixed-point.md 1.1) only
    when nonzero, so exports of zero-free models are unchanged (docs/golden-format.md)."""
    d = {"bits": int(bits), "signed": bool(signed), "frac": frac, "ap_type": None, "q": None}
    if zero:
        d["zero"] = int(zero)
    if isinstance(frac, int) and fp.QFormat.MIN_FRAC <= frac <= fp.QFormat.MAX_FRAC and 2 <= bits <= 16:
        f = fp.QFormat(bits, frac, signed, zero)
        d.update(ap_type=f.ap_type(), q=f.q_notation())
    elif isinstance(frac, int):
        d.update(ap_type=f"ap_{'' if signed else 'u'}fixed<{bits},{bits - frac}>",
                 q=f"{'' if signed else 'U'}Q{bits - frac - (1 if signed else 0)}.{frac}")
    return d


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
    def conv_zero(ql) -> str:    # zero points (docs/golden-format.md): absent = 0
        z_in, z_out = ql.in_fmt.zero, 0 if getattr(ql, "lut", False) else ql.out_fmt.zero
        return (f" pad_value={z_in}" if z_in else "") + (f" zero_out={z_out}" if z_out else "")

    def route_zero(ql) -> str:
        zs = [f.zero for f in ql.in_fmts]
        if not any(zs) and not ql.out_fmt.zero:
            return ""
        return f" zero_in={','.join(map(str, zs))} zero_out={ql.out_fmt.zero}"
    def shortcut_zero(ql) -> str:   # zero points (docs/golden-format.md): absent = 0
        from .golden_describe import _shortcut_zero
        return "".join(f" {k}={v}" for k, v in _shortcut_zero(ql).items())
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
                         f"shift=l{ql.index:03d}.shift.hex{table(ql)}{conv_zero(ql)}"
                         f"{f' groups={l.groups}' if l.groups > 1 else ''}")
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
                         f"out_bits={ql.out_fmt.bits}{groups}{route_zero(ql)}")
        elif ql.kind == "shortcut":
            fa, fb = (f.frac for f in ql.in_fmts)
            lines.append(f"{tag} shortcut in={ins} fa={fa} fb={fb} out_frac={ql.out_fmt.frac} "
                         f"act={act[l.activation]} rounding={ql.rounding} out_bits={ql.out_fmt.bits}{table(ql)}"
                         f"{shortcut_zero(ql)}")
        elif ql.kind == "avgpool":
            from .golden_describe import _avgpool_zero
            zs = "".join(f" {k}={v}" for k, v in _avgpool_zero(ql).items())
            lines.append(f"{tag} avgpool in={ins} c={c} h={h} w={w} d={ql.d} rounding={ql.rounding} "
                         f"out_bits={ql.out_fmt.bits}{zs}")
        elif ql.kind == "scale_channels":
            from .golden_describe import _shortcut_zero
            oc, oh, ow = l.out_shape
            zs = "".join(f" {k}={v}" for k, v in _shortcut_zero(ql).items())
            lines.append(f"{tag} scale_channels in={ins} c={oc} h={oh} w={ow} mode={l.mode} shift={ql.shift} "
                         f"act={act[l.activation]} rounding={ql.rounding} out_bits={ql.out_fmt.bits}{zs}")
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


# ----------------------------------------------------------------------------------------------
# the plan: every vector file, before anything is computed or written
@dataclass
class Planned:
    """One tensor of the export (written once per requested format)."""
    name: str                      # file name without the extension
    layer: int
    stage: str
    shape: List[int]
    bits: int
    signed: bool
    frac: object
    layout: str = "CHW"
    rounding: Optional[str] = None
    saturation: Optional[str] = None
    source: object = None          # an array (parameters) or a key resolved after the forward pass
    zero: int = 0                  # the zero point of an activation format (docs/fixed-point.md 1.1)

    @property
    def count(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


def _conv_params(ql) -> List[Planned]:
    name = f"l{ql.index:03d}"
    wf = ql.w_frac.tolist()
    bf = (ql.w_frac + ql.in_fmt.frac).tolist()
    return [Planned(f"{name}.weights", ql.index, "weights", list(ql.weights.shape), ql.wbits, True,
                    wf[0] if len(set(wf)) == 1 else wf, layout="MCKK", source=ql.weights),
            Planned(f"{name}.bias", ql.index, "bias", list(ql.bias.shape), ql.acc_bits, True,
                    bf[0] if len(set(bf)) == 1 else bf, layout="M", source=ql.bias),
            Planned(f"{name}.shift", ql.index, "shift", list(ql.shift.shape), 8, True, None, layout="M",
                    source=ql.shift)]


def _act_table(ql) -> List[Planned]:
    """The table of a table activation (docs/fixed-point.md 4.1): output codes."""
    if not getattr(ql, "lut", False):
        return []
    f = ql.out_fmt
    return [Planned(f"l{ql.index:03d}.act_lut", ql.index, "act_lut", list(ql.act_lut.shape), f.bits, True, f.frac,
                    layout="TABLE", source=ql.act_lut, zero=f.zero)]


def _conv_and_table_params(ql) -> List[Planned]:
    return _conv_params(ql) + _act_table(ql)


def _head_params(ql) -> List[Planned]:
    # Tables: logistic values UQ1.15 in 16 bits; exp values UQ15.16 (ap_ufixed<31,15>) in 31 bits.
    name = f"l{ql.index:03d}"
    if ql.kind == "yolo" and ql.scaled:
        # AlexeyAB scale_x_y / new_coords: Q1.15 table, Q15.16 table, signed Q.15 x/y table
        n0, n1, n2 = ql.table_names
        return [Planned(f"{name}.{n0}", ql.index, n0, list(ql.logistic.shape), 16, False, fp.PROB_FRAC,
                        layout="TABLE", source=ql.logistic),
                Planned(f"{name}.{n1}", ql.index, n1, list(ql.exp.shape), 31, False, fp.EXP_FRAC, layout="TABLE",
                        source=ql.exp),
                Planned(f"{name}.{n2}", ql.index, n2, list(ql.xy.shape), 32, True, fp.PROB_FRAC, layout="TABLE",
                        source=ql.xy)]
    out = [Planned(f"{name}.logistic_lut", ql.index, "logistic_lut", list(ql.logistic.shape), 16, False,
                   fp.PROB_FRAC, layout="TABLE", source=ql.logistic),
           Planned(f"{name}.exp_lut", ql.index, "exp_lut", list(ql.exp.shape), 31, False, fp.EXP_FRAC,
                   layout="TABLE", source=ql.exp)]
    if ql.kind == "region":
        out.append(Planned(f"{name}.expneg_lut", ql.index, "expneg_lut", list(ql.expneg.shape), 31, False,
                           fp.EXP_FRAC, layout="TABLE", source=ql.expneg))
    return out


#: kind -> function(qlayer) -> the layer's parameter files (always exported; the C model needs
#: them).  A new layer kind with parameters (tables of a new activation, ...) adds its entry,
#: its stage names to PARAM_STAGES here and in mdfi/hw/verify.py, and its rows to
#: docs/golden-format.md ("Parameters").
PARAM_EXPORTERS: Dict[str, Callable] = {"convolutional": _conv_and_table_params, "shortcut": _act_table,
                                        "yolo": _head_params, "region": _head_params}


def _params(ql) -> List[Planned]:
    f = PARAM_EXPORTERS.get(ql.kind)
    return f(ql) if f is not None else []


def plan(qm: QuantizedModel, layers: Optional[Iterable[int]] = None,
         stages: Optional[Sequence[str]] = None) -> List[Planned]:
    """Every tensor an export writes, in file order (input, then per layer parameters,
    inputs, acc, act, out).  Parameters of every layer are always written (the C model
    needs them); tensors only for ``layers`` and ``stages``."""
    n = len(qm.layers)
    selected = set(range(n)) if layers is None else set(layers)
    stages = list(TENSOR_STAGES) if stages is None else list(stages)
    c, h, w = qm.input_shape
    files = [Planned("input", -1, "out", [c, h, w], 8, False, 0, source=("input",))]
    fmts = {-1: qm.input_fmt}
    for ql in qm.layers:
        files += _params(ql)
        l = ql.layer
        if ql.index in selected:
            name = f"l{ql.index:03d}"
            if "in" in stages:
                for k, (src, shp) in enumerate(zip(ql.inputs, l.in_shapes)):
                    f = fmts[src]
                    bits, signed, frac = (32, True, None) if f is None else (f.bits, f.signed, f.frac)
                    files.append(Planned(f"{name}.in{k}", ql.index, f"in{k}", list(shp), bits, signed, frac,
                                         source=("in", ql.index, k), zero=0 if f is None else f.zero))
            if hasattr(ql, "stages_ref") and hasattr(ql, "stage_formats"):
                sf = ql.stage_formats()
                for st in (k for k in sf if k != "out"):          # acc, act (pre: table activations)
                    if st in stages:
                        bits, signed, frac = sf[st]
                        files.append(Planned(f"{name}.{st}", ql.index, st, list(l.out_shape), bits, signed, frac,
                                             rounding=ql.rounding, source=("stage", ql.index, st)))
            if "out" in stages:
                f = ql.out_fmt
                if f is None:      # heads: 32-bit words holding UQ1.15 and UQ15.16 entries
                    files.append(Planned(f"{name}.out", ql.index, "out", list(l.out_shape), 32, True, None,
                                         rounding=ql.rounding, source=("out", ql.index)))
                else:
                    files.append(Planned(f"{name}.out", ql.index, "out", list(l.out_shape), f.bits, f.signed, f.frac,
                                         rounding=ql.rounding, saturation="AP_SAT", source=("out", ql.index),
                                         zero=f.zero))
        fmts[ql.index] = ql.out_fmt
    return files


def estimate_bytes(files: Sequence[Planned], formats: Sequence[str], n_layers: int = 0) -> int:
    """Bytes the export will take: vector files (exact for hex/npy, a bound for dat) plus
    the manifest, model.txt and detections.json."""
    vec = sum(vectors.size_bound(f.count, fmt, f.bits, f.signed) for f in files for fmt in formats)
    return vec + 700 * len(files) * len(formats) + 4000 * n_layers + 200_000


def describe_plan(files: Sequence[Planned], formats: Sequence[str], qm: QuantizedModel, selected: Set[int],
                  out_dir: str) -> str:
    """One line: file count and size (exact for hex and npy, a bound for dat)."""
    nbytes = estimate_bytes(files, formats, len(qm.layers))
    bound = "dat" in formats
    by_fmt = ", ".join(f"{fmt} {'<= ' if fmt == 'dat' else ''}"
                       f"{sum(vectors.size_bound(f.count, fmt, f.bits, f.signed) for f in files) / 1e6:,.1f} MB"
                       for fmt in formats)
    return (f"mdfi golden: {len(files) * len(formats) + len(META_FILES)} files, {'at most' if bound else 'about'} "
            f"{nbytes / 1e6:,.1f} MB ({by_fmt}) for {len(selected)} of {len(qm.layers)} layer(s) of {qm.name} "
            f"-> {out_dir}")


# ----------------------------------------------------------------------------------------------
# the destination folder
def _owned_by_export(dest: str, names: Iterable[str]) -> Optional[str]:
    """None when the non-empty folder ``dest`` holds only an earlier MDFI export (which the
    new one replaces), else why it may not be replaced."""
    names = set(names)
    if "manifest.json" not in names:
        return ("is not empty and holds no MDFI golden export (no manifest.json); mdfi golden replaces the "
                "whole folder, so give a new or empty one")
    path = os.path.join(dest, "manifest.json")
    try:
        # Size-capped and parsed by the hardened reader; mdfi verify validates manifests in full.
        if not os.path.isfile(path) or os.path.getsize(path) > (256 << 20):
            raise ValueError("not a regular manifest file")
        with open(path, "rb") as fh:
            man = safejson.parse(fh.read().decode("utf-8"))
        files = man.get("files") if isinstance(man, dict) and man.get("format") == FORMAT else None
        if not isinstance(files, list):
            raise ValueError("not an MDFI golden manifest")
        listed = {e["path"] for e in files if isinstance(e, dict) and isinstance(e.get("path"), str)}
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return ("holds a manifest.json that is not a readable MDFI golden manifest; mdfi golden replaces the "
                "whole folder, so give a new or empty one")
    extra = sorted(names - listed - set(META_FILES))
    if extra:
        shown = ", ".join(e if e.isprintable() and len(e) <= 60 else repr(e)[:60] for e in extra[:3])
        return (f"holds files that are not part of its earlier MDFI export ({shown}"
                f"{', ...' if len(extra) > 3 else ''}); mdfi golden replaces the whole folder, so move them or "
                f"give another folder")
    return None


def check_output(out_dir: str, need_bytes: int = 0) -> ExportFolder:
    """Check the destination (cheap; before any heavy work).  Raises GoldenError."""
    return ExportFolder(out_dir, owned=_owned_by_export, need_bytes=need_bytes, error=GoldenError,
                        what="golden export")


# ----------------------------------------------------------------------------------------------
class _Writer:
    def __init__(self, folder: str, formats: Sequence[str]):
        self.folder = folder
        self.formats = list(formats)
        self.files: List[dict] = []

    def tensor(self, f: Planned, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        if list(arr.shape) != list(f.shape):
            raise GoldenError(f"{f.name}: shape {list(arr.shape)} differs from the planned {f.shape} "
                              f"(report this as a bug)")
        for fmt in self.formats:
            data = vectors.encode(arr, fmt, f.bits, f.signed)
            path = f"{f.name}.{fmt}"
            with open(os.path.join(self.folder, path), "wb") as fh:
                fh.write(data)
            entry = {"path": path, "layer": f.layer, "stage": f.stage, "format": fmt, "shape": list(arr.shape),
                     "layout": f.layout, **_fmt_fields(f.bits, f.signed, f.frac, f.zero),
                     "rounding": f.rounding, "saturation": f.saturation,
                     "sha256": hashlib.sha256(data).hexdigest()}
            self.files.append(entry)


def _exact_detection(d) -> dict:
    """A detection as detections.json lists it: the rounded values ``mdfi detect --json``
    prints, and ``exact`` ones (float32 values written exactly) to compare bit for bit."""
    e = d.to_dict()
    e["exact"] = {"confidence": float(d.confidence), "objectness": float(d.objectness),
                  "rel_box": [float(v) for v in d.rel_box], "box": [float(v) for v in d.box]}
    return e


def _write_detections(fh, head: dict, dets) -> None:
    """detections.json: the header's keys, then ``detections`` one per line.  Each line goes
    through JSON's C encoder: a model with generated weights decodes to 10^5 detections and
    more (mini-yolov3: 334,270 at 0.25), which ``json.dump(indent=1)``'s pure-Python encoder
    took 17 s to write."""
    fh.write("{\n")
    for key, value in head.items():
        fh.write(f" {json.dumps(key)}: {json.dumps(value)},\n")
    fh.write(' "detections": [')
    for i, d in enumerate(dets):
        fh.write((",\n  " if i else "\n  ") + json.dumps(_exact_detection(d)))
    fh.write("\n ]\n}\n" if dets else "]\n}\n")


def export(model, image, out_dir: str, *, layers: Optional[Iterable[int]] = None,
           formats: Optional[Sequence[str]] = None, stages: Optional[Sequence[str]] = None,
           thresh: float = 0.25, nms: float = 0.45, image_name: Optional[str] = None,
           report: Optional[Callable[[str], None]] = None) -> dict:
    """Write the golden vectors of ``model`` (a fixed-point :class:`mdfi.Model`) on ``image``
    into the folder ``out_dir`` (replacing an earlier export there, never other files).

    ``formats``: any of hex, npy, dat (default hex only); ``stages``: any of in, acc, act,
    out (default all); ``layers``: layer indices (default all).  ``report`` receives the
    plan's one-line summary (file count and size) before anything is written.  Returns the
    manifest (also written as ``manifest.json``).
    """
    qm: QuantizedModel = getattr(model, "quantized", None)
    if qm is None:
        raise MDFIError("golden vectors need a fixed-point model (not the float path)")
    n = len(qm.layers)
    selected = set(range(n)) if layers is None else set(layers)
    formats = list(formats or DEFAULT_FORMATS)
    bad = [f for f in formats if f not in vectors.FORMATS] + [s for s in (stages or []) if s not in TENSOR_STAGES]
    if bad:
        raise MDFIError(f"golden export: {', '.join(map(str, bad))} not among the formats "
                        f"{', '.join(vectors.FORMATS)} or the stages {', '.join(TENSOR_STAGES)}")
    stages = list(TENSOR_STAGES) if stages is None else [s for s in TENSOR_STAGES if s in stages]
    files = plan(qm, selected, stages)
    need = estimate_bytes(files, formats, n)
    if report is not None:
        report(describe_plan(files, formats, qm, selected, out_dir))
    folder = check_output(out_dir, need)
    prep = model.prepare(image)
    x = input_to_u8(prep.tensor)
    outs = model.engine.run(x, keep="all")                      # the engine `mdfi detect` runs
    cache: Dict[int, Dict[str, np.ndarray]] = {}

    def layer_inputs(i: int) -> List[np.ndarray]:
        return [x if s == -1 else np.asarray(outs[s]) for s in qm.layers[i].inputs]

    def resolve(src):
        if not isinstance(src, tuple):
            return src
        if src[0] == "input":
            return x
        if src[0] == "in":
            return layer_inputs(src[1])[src[2]]
        if src[0] == "out":
            return outs[src[1]]
        i, st = src[1], src[2]
        if i not in cache:
            cache.clear()
            stg = _qlayer_stages(qm.layers[i], layer_inputs(i))
            if not np.array_equal(stg["out"], outs[i]):
                raise GoldenError(f"layer {i}: the engine's output differs from the reference "
                                  f"recomputation (report this as a bug)")
            cache[i] = stg
        return cache[i][st]

    src = image_name or (os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<array>")
    with folder as tmp:
        w = _Writer(tmp, formats)
        for f in files:
            w.tensor(f, resolve(f.source))
        with open(os.path.join(tmp, "model.txt"), "w") as fh:
            fh.write(model_txt(qm))
        # Detections decoded from the exported head outputs (the same path as `mdfi detect`).
        raws = [hl.decode_int(outs[hl.index], thresh) for hl in qm.output_layers()]
        dets = postprocess(raws, prep.width, prep.height, qm.network.width, qm.network.height, thresh, nms,
                           model.names, **post_settings(qm.network))
        with open(os.path.join(tmp, "detections.json"), "w") as fh:
            _write_detections(fh, {"image": src, "width": prep.width, "height": prep.height, "thresh": thresh,
                                   "nms": nms}, dets)
        manifest = _manifest(model, qm, prep, src, selected, formats, stages, thresh, nms, w.files)
        with open(os.path.join(tmp, "manifest.json"), "w") as fh:
            json.dump(manifest, fh, indent=1)
    return manifest


def _manifest(model, qm, prep, src, selected, formats, stages, thresh, nms, files) -> dict:
    import PIL
    net = qm.network
    new_w, new_h = letterbox_geometry(prep.width, prep.height, net.width, net.height)
    layer_entries = []
    for ql in qm.layers:
        l = ql.layer
        entry = {"index": ql.index, "kind": ql.kind, "inputs": list(ql.inputs),
                 "in_shapes": [list(s) for s in l.in_shapes], "out_shape": list(l.out_shape),
                 "exported": ql.index in selected, "meta": ql.meta()}
        if ql.kind in LAYER_PARAMS:
            entry["params"] = LAYER_PARAMS[ql.kind](ql)
        if ql.kind in HEAD_DECODERS:
            entry["decode"] = HEAD_DECODERS[ql.kind](ql, qm)
        layer_entries.append(entry)
    t_obj, t_prob = (int(np.floor(float(thresh) * 2.0 ** fp.PROB_FRAC)),
                     int(np.floor(float(thresh) * 2.0 ** (2 * fp.PROB_FRAC))))
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "mdfi_version": __version__,
        "model": {"name": qm.name, "cfg_name": qm.cfg_name, "options": qm.options, "engine": model.engine.name},
        "image": {"path": src, "width": prep.width, "height": prep.height,
                  "decoder": f"Pillow {PIL.__version__} (mdfi.image.load_image: RGB, alpha dropped, EXIF "
                             f"orientation ignored)"},
        "net": {"width": net.width, "height": net.height, "channels": net.channels},
        # the lineage's preprocessing (docs/fixed-point.md section 1): letterbox, or AlexeyAB's
        # plain resize_image to the network size (no canvas; its box correction is the identity)
        "letterbox": ({"mode": "letterbox", "new_w": new_w, "new_h": new_h, "dx": (net.width - new_w) // 2,
                       "dy": (net.height - new_h) // 2, "fill": 128} if net.letter_box else
                      {"mode": "resize", "new_w": net.width, "new_h": net.height, "dx": 0, "dy": 0, "fill": None,
                       "resize": "AlexeyAB plain resize_image, no letterbox"}),
        "postprocess": {"thresh": thresh, "nms": nms, "obj_threshold_q15": t_obj, "prob_threshold_q30": t_prob,
                        # the Darknet lineage's box correction and NMS (docs/golden-format.md, Detections)
                        "darknet": net.darknet, **post_settings(net),
                        "heads": [hl.index for hl in qm.output_layers()],
                        "classes": int(qm.output_layers()[0].layer.classes) if qm.output_layers() else 0,
                        "names": list(model.names)},
        "formats": list(formats), "stages": list(stages),
        "layers": layer_entries, "files": files, "detections": "detections.json", "model_txt": "model.txt",
    }
