"""A small, self-contained reader for MDFI golden exports (``docs/golden-format.md``).

For test benches (cocotb, plain Python, notebooks): it needs only the Python standard
library and NumPy, imports nothing else from MDFI, and can be copied on its own into a
verification project (``cp mdfi/hw/golden_reader.py tb/``).  ``mdfi verify`` does the
checking with its own, more tolerant and more defensive reader (:mod:`mdfi.hw.vectors`);
this one reads what ``mdfi golden`` writes, and writes what ``mdfi verify`` reads.

    from golden_reader import GoldenSet            # or: from mdfi.hw.golden_reader import GoldenSet
    g = GoldenSet("golden/")                       # reads golden/manifest.json
    acc = g.read(13, "acc")                        # int64 array of shape (256, 13, 13)
    w = g.read(13, "weights")                      # (M, C, ky, kx)
    L = g.layer(13)                                # the manifest's layer entry: kind, shapes, meta
    e = g.entry(13, "out")                         # bits, signed, frac, ap_type, layout, ...
    head = g.layer(16)["decode"]                   # anchors, mask, classes (docs: "Detections")
    g.model_line(13)                               # model.txt's record of layer 13: {"kind": "conv", ...}
    write_hex("dut/l013.out.hex", values, bits=8)  # the canonical $readmemh format
    dets = decode_detections(g)                    # = detections.json's "detections"
    dets = decode_detections(g, {16: dut16, 23: dut23})   # the detections a device's head outputs give

:func:`decode_detections` is the host side of docs/golden-format.md ("Detections") written
out once in NumPy -- candidates, boxes, the lineage's box correction (pjreddie's letterbox
correction, AlexeyAB's with ``letter_box=1``, or none after a plain resize), NMS (Darknet's
``do_nms_sort``, AlexeyAB's ``greedynms`` and ``diounms``) and the final list -- so that a
test bench can turn a device's head outputs into detections and compare them with the
golden ``detections.json``, for either Darknet lineage.

Values are returned as ``int64`` NumPy arrays in the stage's shape (planar CHW for
tensors, ``[M][C][ky][kx]`` for weights).  Errors are ``ValueError`` naming the file.
The manifest is read with :func:`json.load`: exports are trusted input here (``mdfi
verify`` is the tool that treats them as hostile).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["GoldenSet", "read_vector", "write_hex", "to_hex_lines", "decode_detections", "FORMATS"]

FORMATS = ("hex", "npy", "dat")
#: Preference when a stage was written in several formats (fastest to read first).
_ORDER = {"npy": 0, "hex": 1, "dat": 2}


def _wrap_signed(u: np.ndarray, bits: int, signed: bool, path: str = "") -> np.ndarray:
    if u.size and (int(u.min()) < 0 or int(u.max()) >= (1 << bits)):
        raise ValueError(f"{path}: a hex value is wider than {bits} bits")
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u


def read_vector(path: str, fmt: str, bits: int, signed: bool, shape: Sequence[int]) -> np.ndarray:
    """Read one golden file: ``hex`` (two's complement at ``bits``, one value per line),
    ``dat`` (signed decimal per line) or ``npy``.  Returns int64 of ``shape``."""
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if fmt == "npy":
        v = np.load(path, allow_pickle=False).astype(np.int64).reshape(-1)
    elif fmt in ("hex", "dat"):
        with open(path, "rb") as fh:
            data = fh.read()
        v = _fast_hex(data, count) if fmt == "hex" else None
        if v is not None:
            return _checked(path, _wrap_signed(v, bits, signed, path), bits, signed, shape)
        text = data.decode("ascii")
        toks: List[str] = []
        for line in text.splitlines():
            line = line.split("//", 1)[0].strip()
            if line:
                toks.extend(line.split())
        if fmt == "hex":
            if any(t.startswith("@") for t in toks):
                raise ValueError(f"{path}: @address markers are not supported by this reader")
            v = _wrap_signed(np.array([int(t, 16) for t in toks], dtype=np.int64), bits, signed, path)
        else:
            v = np.array([int(t, 10) for t in toks], dtype=np.int64)
    else:
        raise ValueError(f"{path}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    return _checked(path, v, bits, signed, shape)


def _fast_hex(data: bytes, count: int) -> Optional[np.ndarray]:
    """The canonical golden .hex (``count`` lines of equal width, LF): vectorised; else None."""
    if count == 0 or len(data) % count:
        return None
    k = len(data) // count - 1
    if not 1 <= k <= 16:
        return None
    m = np.frombuffer(data, dtype=np.uint8).reshape(count, k + 1)
    if not np.all(m[:, k] == 10):
        return None
    d = m[:, :k].astype(np.int64)
    d = np.where((d >= 48) & (d <= 57), d - 48, np.where((d >= 97) & (d <= 102), d - 87, -1))
    if np.any(d < 0) or (k == 16 and np.any(d[:, 0] >= 8)):
        return None
    v = np.zeros(count, dtype=np.int64)
    for j in range(k):
        v = (v << 4) | d[:, j]
    return v


def _checked(path: str, v: np.ndarray, bits: int, signed: bool, shape: Sequence[int]) -> np.ndarray:
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if v.size != count:
        raise ValueError(f"{path}: holds {v.size} values, expected {count} (shape {list(shape)})")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if v.size and (int(v.min()) < lo or int(v.max()) > hi):
        raise ValueError(f"{path}: values outside the {bits}-bit {'signed' if signed else 'unsigned'} range")
    return v.reshape(shape)


def to_hex_lines(values: Iterable[int], bits: int) -> List[str]:
    """Values as canonical golden hex lines: two's complement at ``bits``, lower case,
    zero-padded to ``ceil(bits/4)`` digits (what Verilog's ``%h`` prints for a ``bits``-wide reg)."""
    digits = (bits + 3) // 4
    mask = (1 << bits) - 1
    return [format(int(v) & mask, f"0{digits}x") for v in values]


def write_hex(path: str, values: Iterable[int], bits: int,
              addresses: Optional[Iterable[int]] = None) -> None:
    """Write a ``.hex`` file ``mdfi verify`` reads.  With ``addresses`` (flat indices, one per
    value) the file is a *sparse dump*: ``@address`` markers (``$readmemh`` syntax, hex)
    precede every run of consecutive addresses, and ``mdfi verify`` compares only those
    values (docs/golden-format.md, "Sparse dumps")."""
    vals = [int(v) for v in values]
    lines = to_hex_lines(vals, bits)
    out: List[str] = []
    if addresses is None:
        out = lines
    else:
        addrs = [int(a) for a in addresses]
        if len(addrs) != len(vals):
            raise ValueError(f"{path}: {len(vals)} values but {len(addrs)} addresses")
        nxt = None
        for a, s in zip(addrs, lines):
            if a != nxt:
                out.append(f"@{a:x}")
            out.append(s)
            nxt = a + 1
    with open(path, "w", encoding="ascii", newline="\n") as fh:
        fh.write("".join(s + "\n" for s in out))


class GoldenSet:
    """One ``mdfi golden`` export folder, described by its ``manifest.json``."""

    def __init__(self, folder: str):
        self.folder = os.fspath(folder)
        with open(os.path.join(self.folder, "manifest.json"), encoding="utf-8") as fh:
            self.manifest: dict = json.load(fh)
        if self.manifest.get("format") != "mdfi-golden":
            raise ValueError(f"{self.folder}/manifest.json: not an MDFI golden manifest")
        self.files: List[dict] = list(self.manifest["files"])
        self._layers: Dict[int, dict] = {L["index"]: L for L in self.manifest["layers"]}

    # -- description -------------------------------------------------------------------
    @property
    def layers(self) -> List[dict]:
        return list(self.manifest["layers"])

    def layer(self, index: int) -> dict:
        """The manifest's entry of layer ``index``: kind, inputs, in_shapes, out_shape,
        exported, meta (formats and settings), and for heads ``decode``."""
        return self._layers[index]

    def entries(self, layer: int, stage: str) -> List[dict]:
        """Manifest entries of a stage (one per format), npy first.  The network input is
        layer ``-1``, stage ``"out"`` (the output of a virtual layer -1)."""
        es = [e for e in self.files if e["layer"] == layer and e["stage"] == stage]
        return sorted(es, key=lambda e: _ORDER.get(e["format"], 9))

    def entry(self, layer: int, stage: str, fmt: Optional[str] = None) -> dict:
        es = [e for e in self.entries(layer, stage) if fmt is None or e["format"] == fmt]
        if not es:
            raise KeyError(f"{self.folder}: no {fmt or ''} file for layer {layer} stage {stage!r}")
        return es[0]

    def path(self, layer: int, stage: str, fmt: Optional[str] = None) -> str:
        return os.path.join(self.folder, self.entry(layer, stage, fmt)["path"])

    def stages(self, layer: int) -> List[str]:
        return sorted({e["stage"] for e in self.files if e["layer"] == layer})

    # -- values ------------------------------------------------------------------------
    def read(self, layer: int, stage: str, fmt: Optional[str] = None) -> np.ndarray:
        """The stage's values, int64, in its shape."""
        e = self.entry(layer, stage, fmt)
        return read_vector(os.path.join(self.folder, e["path"]), e["format"], e["bits"], e["signed"],
                           e["shape"])

    def input(self) -> np.ndarray:
        """The network input: 8-bit pixels (3, H, W)."""
        return self.read(-1, "out")

    def detections(self) -> dict:
        """``detections.json``: the detections the exported head outputs decode to."""
        with open(os.path.join(self.folder, self.manifest.get("detections", "detections.json")),
                  encoding="utf-8") as fh:
            return json.load(fh)

    def model_line(self, index: int) -> dict:
        """``model.txt``'s record of layer ``index`` (see :meth:`model_lines`)."""
        for rec in self.model_lines():
            if rec["record"] == "layer" and rec["index"] == index:
                return rec
        raise KeyError(f"{self.folder}/model.txt: no layer {index}")

    def decode_detections(self, outputs: Optional[Dict[int, np.ndarray]] = None) -> List[dict]:
        """:func:`decode_detections` of this export."""
        return decode_detections(self, outputs)

    def model_lines(self) -> List[dict]:
        """``model.txt`` as a list of dicts: ``{"record": "layer", "index": 0, "kind": "conv",
        "c": "3", ...}`` (values as strings)."""
        out = []
        with open(os.path.join(self.folder, self.manifest.get("model_txt", "model.txt")), encoding="ascii") as fh:
            for line in fh:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                tok = line.split()
                rec: dict = {"record": tok[0]}
                rest = tok[1:]
                if tok[0] == "layer":
                    rec.update(index=int(tok[1]), kind=tok[2])
                    rest = tok[3:]
                for t in rest:
                    k, sep, v = t.partition("=")
                    if sep:
                        rec[k] = v
                    else:
                        rec.setdefault("args", []).append(t)
                out.append(rec)
        return out


# ----------------------------------------------------------------------------------------------
# the host side: head outputs -> detections (docs/golden-format.md, "Detections")
_F32 = np.float32


def _candidates(dec: dict, p: np.ndarray, t_obj: int, t_prob: int, net_w: int, net_h: int):
    """Steps 2-4 for one head: boxes (N,4) float32 relative to the network input,
    objectness (N,) and probabilities (N, classes), in Darknet's candidate order."""
    n, entries, classes = dec["n"], dec["entries"], dec["classes"]
    lh, lw = dec["grid"]
    p = np.asarray(p, np.int64).reshape(n, entries, lh, lw)
    anchors = np.asarray(dec["anchors"], np.float64)
    if dec["kind"] == "yolo":
        rows, cols, a = np.nonzero((p[:, 4] > t_obj).transpose(1, 2, 0))      # cell-major, then anchor
        anc = anchors[np.asarray(dec["mask"], np.int64)[a]]
        div_w, div_h = float(net_w), float(net_h)
    else:
        a, rows, cols = (g.reshape(-1) for g in np.meshgrid(np.arange(n), np.arange(lh), np.arange(lw),
                                                             indexing="ij"))
        anc = anchors[a]
        div_w, div_h = float(lw), float(lh)
    v = p[a, :, rows, cols]                                                   # (N, entries)
    x = (cols + v[:, 0] * 2.0 ** -15) / lw
    y = (rows + v[:, 1] * 2.0 ** -15) / lh
    w = v[:, 2] * 2.0 ** -16 * anc[:, 0] / div_w
    h = v[:, 3] * 2.0 ** -16 * anc[:, 1] / div_h
    obj_q = v[:, 4] if dec["kind"] == "yolo" else np.where(v[:, 4] > t_obj, v[:, 4], 0)
    prob_q = obj_q[:, None] * v[:, 5:5 + classes]
    prob_q = np.where((prob_q > t_prob) & (obj_q[:, None] > 0), prob_q, 0)
    boxes = np.stack([x, y, w, h], axis=1).astype(_F32)
    return boxes, (obj_q * 2.0 ** -15).astype(_F32), (prob_q * 2.0 ** -30).astype(_F32)


def _correct(boxes: np.ndarray, mode: str, lb: dict, net_w: int, net_h: int) -> np.ndarray:
    """Step 5: undo the letterbox (pjreddie / AlexeyAB with letter_box=1), or nothing."""
    b = boxes.astype(_F32).copy()
    if mode == "none" or len(b) == 0:
        return b
    new_w, new_h = lb["new_w"], lb["new_h"]
    rw, rh = _F32(new_w) / _F32(net_w), _F32(new_h) / _F32(net_h)
    b[:, 0] = ((b[:, 0].astype(np.float64) - (net_w - new_w) / 2.0 / net_w) / np.float64(rw)).astype(_F32)
    b[:, 1] = ((b[:, 1].astype(np.float64) - (net_h - new_h) / 2.0 / net_h) / np.float64(rh)).astype(_F32)
    if mode == "alexeyab-letterbox":
        b[:, 2] *= _F32(1) / rw
        b[:, 3] *= _F32(1) / rh
    elif mode == "pjreddie":
        b[:, 2] *= _F32(net_w) / _F32(new_w)
        b[:, 3] *= _F32(net_h) / _F32(new_h)
    else:
        raise ValueError(f"unknown box correction {mode!r}")
    return b


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Darknet's box_iou (float32) of box ``a`` (4,) with every row of ``b`` (N, 4)."""
    half = _F32(0.5)

    def overlap(x1, w1, x2, w2):
        return np.minimum(x1 + w1 * half, x2 + w2 * half) - np.maximum(x1 - w1 * half, x2 - w2 * half)
    ow = overlap(a[0], a[2], b[:, 0], b[:, 2])
    oh = overlap(a[1], a[3], b[:, 1], b[:, 3])
    inter = np.where((ow < 0) | (oh < 0), _F32(0), ow * oh)
    union = a[2] * a[3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        v = inter / union
    return np.where(np.isnan(v), _F32(0), v).astype(_F32)


def _diou(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """AlexeyAB's box_diou / box_diounms of ``a`` with every row of ``b`` (``beta``: float64)."""
    two = _F32(2)
    top = np.minimum(a[1] - a[3] / two, b[:, 1] - b[:, 3] / two)
    bot = np.maximum(a[1] + a[3] / two, b[:, 1] + b[:, 3] / two)
    left = np.minimum(a[0] - a[2] / two, b[:, 0] - b[:, 2] / two)
    right = np.maximum(a[0] + a[2] / two, b[:, 0] + b[:, 2] / two)
    c = (right - left) * (right - left) + (bot - top) * (bot - top)
    d = (a[0] - b[:, 0]) * (a[0] - b[:, 0]) + (a[1] - b[:, 1]) * (a[1] - b[:, 1])
    iou = _iou(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.power((d / c).astype(np.float64), beta).astype(_F32)
    return np.where(c == 0, iou, iou - u).astype(_F32)


def _nms(boxes: np.ndarray, obj: np.ndarray, probs: np.ndarray, nms: float, kind: str, beta_nms: float):
    """Step 6 (Darknet's do_nms_sort; AlexeyAB's diounms_sort for greedynms/diounms)."""
    if kind == "default":
        metric = _iou
    elif kind == "greedynms":
        metric = lambda a, b: _diou(a, b, 0.6)                            # noqa: E731  (a double literal)
    elif kind == "diounms":
        metric = lambda a, b: _diou(a, b, float(_F32(beta_nms)))          # noqa: E731
    else:
        raise ValueError(f"unknown nms_kind {kind!r}")
    probs = probs.copy()
    live = np.flatnonzero(obj != 0)
    thr = _F32(nms)
    for j in range(probs.shape[1]):
        col = probs[live, j]
        order = live[np.argsort(-col, kind="stable")][np.sort(-col, kind="stable") < 0]
        for r, k in enumerate(order):
            if probs[k, j] == 0 or r + 1 == len(order):
                continue
            later = order[r + 1:]
            probs[later[metric(boxes[k], boxes[later]) > thr], j] = 0
    return probs


def decode_detections(g: "GoldenSet", outputs: Optional[Dict[int, np.ndarray]] = None) -> List[dict]:
    """The detections of an export's head outputs (or of ``outputs``: {head layer index: its
    ``out`` tensor}, e.g. a device's), as ``detections.json`` lists them: ``class_id``,
    ``label``, ``confidence`` (6 decimals), ``box`` (2 decimals) and ``exact`` (unrounded
    ``confidence``, ``objectness``, ``rel_box``, ``box``).  docs/golden-format.md,
    "Detections", steps 1-7, for both Darknet lineages (``postprocess.correct``,
    ``nms_kind``, ``beta_nms`` in the manifest)."""
    man = g.manifest
    pp, lb, img = man["postprocess"], man["letterbox"], man["image"]
    net_w, net_h = man["net"]["width"], man["net"]["height"]
    thresh = float(pp["thresh"])
    t_obj, t_prob = int(np.floor(thresh * 2.0 ** 15)), int(np.floor(thresh * 2.0 ** 30))
    parts = []
    for i in pp["heads"]:
        p = g.read(i, "out") if outputs is None or i not in outputs else np.asarray(outputs[i])
        parts.append(_candidates(g.layer(i)["decode"], p, t_obj, t_prob, net_w, net_h))
    if not parts or not sum(len(b) for b, _, _ in parts):
        return []
    boxes = np.concatenate([b for b, _, _ in parts])
    obj = np.concatenate([o for _, o, _ in parts])
    probs = np.concatenate([q for _, _, q in parts])
    boxes = _correct(boxes, pp.get("correct", "pjreddie"), lb, net_w, net_h)
    probs = _nms(boxes, obj, probs, pp["nms"], pp.get("nms_kind", "default"), pp.get("beta_nms", 0.6))
    W, H = img["width"], img["height"]
    names = pp.get("names") or []
    dets = []
    for k, j in zip(*np.nonzero(probs > _F32(thresh))):
        x, y, w, h = (float(v) for v in boxes[k])
        box = [min(max((x - w / 2) * W, 0.0), float(W)), min(max((y - h / 2) * H, 0.0), float(H)),
               min(max((x + w / 2) * W, 0.0), float(W)), min(max((y + h / 2) * H, 0.0), float(H))]
        conf = float(probs[k, j])
        dets.append({"class_id": int(j), "label": names[j] if j < len(names) else f"class{j}",
                     "confidence": round(conf, 6), "box": [round(v, 2) for v in box],
                     "exact": {"confidence": conf, "objectness": float(obj[k]),
                               "rel_box": [float(v) for v in boxes[k]], "box": box}})
    dets.sort(key=lambda d: (-d["exact"]["confidence"], d["class_id"]))
    return dets
