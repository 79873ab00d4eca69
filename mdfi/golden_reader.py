"""A small, self-contained reader for MDFI golden exports (``docs/golden-format.md``).

For test benches (cocotb, plain Python, notebooks): it needs only the Python standard
library and NumPy, imports nothing else from MDFI, and can be copied on its own into a
verification project (``cp mdfi/golden_reader.py tb/``).  ``mdfi verify`` does the
checking with its own, more tolerant and more defensive reader (:mod:`mdfi.vectors`);
this one reads what ``mdfi golden`` writes, and writes what ``mdfi verify`` reads.

    from golden_reader import GoldenSet            # or: from mdfi.golden_reader import GoldenSet
    g = GoldenSet("golden/")                       # reads golden/manifest.json
    acc = g.read(13, "acc")                        # int64 array of shape (256, 13, 13)
    w = g.read(13, "weights")                      # (M, C, ky, kx)
    L = g.layer(13)                                # the manifest's layer entry: kind, shapes, meta
    e = g.entry(13, "out")                         # bits, signed, frac, ap_type, layout, ...
    head = g.layer(16)["decode"]                   # anchors, mask, classes (docs: "Detections")
    write_hex("dut/l013.out.hex", values, bits=8)  # the canonical $readmemh format

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

__all__ = ["GoldenSet", "read_vector", "write_hex", "to_hex_lines", "FORMATS"]

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
