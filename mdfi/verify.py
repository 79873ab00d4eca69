"""``mdfi verify``: check a device's (or simulator's) dumps against golden vectors.

``GOLDEN_DIR`` is what ``mdfi golden`` wrote (docs/golden-format.md); ``DUT_DIR`` holds any
subset of the same files (``l013.out.hex``, ``l000.acc.npy``, ``input.dat`` ...), in any of
the three formats: a DUT file is compared with the golden stage of the same layer and
stage whatever format the golden set holds it in.

Every comparison is exact and vectorised.  For a file that differs the report gives the
number of differing values, the first one(s) in hardware coordinates (layer, stage,
channel/y/x or m/c/ky/kx, file line), the golden values of the earlier stages at that
element, and *hints*: the arithmetic patterns that explain the differences (rounding mode,
requantizing shift, wrap-around instead of saturation, leaky slope, addressing offsets,
layout, narrow registers, missing bias, isolated bit flips, channel or border confinement).

A hint about the requantizing step is a *hypothesis tested on the whole tensor*: the golden
``act`` stage is requantized again with the changed rule, and the hint is given only when
that reproduces every differing value and the DUT follows the changed rule at (nearly)
every element where it differs from the golden rule.

Exit status (``Report.exit_status``): 0 when at least one file was compared and every
compared file matches; 1 when a DUT file differs or cannot be read; 2 when nothing was
compared or the golden set itself is unusable (corrupt manifest, golden file unreadable,
``--check-golden`` checksum failures).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from . import vectors
from .errors import GoldenError, MDFIError
from .limits import require_regular_file
from .fixedpoint import MAX_SHIFT as _MAX_SHIFT, MIN_SHIFT as _MIN_SHIFT

FORMAT = "mdfi-golden"
FORMAT_VERSION = 1
#: Names in a golden (or DUT) folder that are not vector files.
META_FILES = ("manifest.json", "model.txt", "detections.json")
PARAM_STAGES = ("weights", "bias", "shift", "logistic_lut", "exp_lut", "expneg_lut", "act_lut", "xy_lut",
                "prob_lut", "wh_lut")
_NAME_RE = re.compile(r"^(?:(input)|l(\d+)\.([A-Za-z_][A-Za-z0-9_]*))\.(hex|dat|npy)$")
#: Mismatches used to screen hypotheses before they are tested on every mismatch.
_SAMPLE = 4096
#: Mismatch counts up to which "isolated values" is a meaningful diagnosis.
_ISOLATED_MAX = 16
#: A hypothesis must be followed by the DUT at this fraction of the elements where it
#: differs from the golden rule, and explain this fraction of the mismatches.
_COVERAGE = 0.9


# ----------------------------------------------------------------------------------------------
# rounding modes (docs/fixed-point.md section 2, plus the ones a device might use by mistake)
#: mode -> (noun phrase for the DUT, verb phrase for golden)
_MODES = {
    "half_up": ("rounding half up (AP_RND)", "rounds half up (AP_RND)"),
    "truncate": ("truncation (floor, AP_TRN)", "truncates (floor, AP_TRN)"),
    "trn_zero": ("truncation toward zero (AP_TRN_ZERO, C integer division)",
                 "truncates toward zero (AP_TRN_ZERO)"),
    "half_even": ("rounding half to even (AP_RND_CONV, numpy.rint)", "rounds half to even (AP_RND_CONV)"),
    "half_away": ("rounding half away from zero (AP_RND_INF, C round())", "rounds half away from zero (AP_RND_INF)"),
    "half_zero": ("rounding half toward zero (AP_RND_ZERO)", "rounds half toward zero (AP_RND_ZERO)"),
    "half_down": ("rounding half down (AP_RND_MIN_INF)", "rounds half down (AP_RND_MIN_INF)"),
}


_SHORT = {"half_up": "half-up rounding", "truncate": "truncation", "trn_zero": "truncation toward zero",
          "half_even": "half-to-even rounding", "half_away": "half-away-from-zero rounding",
          "half_zero": "half-toward-zero rounding", "half_down": "half-down rounding"}


def round_shift(x: np.ndarray, s: np.ndarray, mode: str) -> np.ndarray:
    """``R(x / 2**s)`` for int64 ``x`` in any of the modes above (``s <= 0``: exact ``x * 2**-s``).

    No saturation, no overflow protection for left shifts (callers bound ``x``).
    """
    x = np.asarray(x, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    right = np.clip(s, 0, 62)
    left = np.clip(-s, 0, 62)
    q = np.right_shift(x, right)
    if mode != "truncate":
        r = x - np.left_shift(q, right)
        inexact = r != 0
        h = np.left_shift(np.int64(1), np.maximum(right - 1, 0))
        above, tie = (r > h) & (right > 0), (r == h) & (right > 0)
        if mode == "half_up":
            up = above | tie
        elif mode == "trn_zero":
            up = inexact & (x < 0)
        elif mode == "half_even":
            up = above | (tie & ((q & 1) == 1))
        elif mode == "half_away":
            up = above | (tie & (x >= 0))
        elif mode == "half_zero":
            up = above | (tie & (x < 0))
        elif mode == "half_down":
            up = above
        else:  # pragma: no cover - internal
            raise ValueError(mode)
        q = q + up
    return np.left_shift(q, left)


def _wrap(v: np.ndarray, bits: int, signed: bool = True) -> np.ndarray:
    """Two's-complement wrap-around to ``bits`` (AP_WRAP)."""
    mask = np.int64((1 << bits) - 1)
    u = np.asarray(v, dtype=np.int64) & mask
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u


def _qrange(bits: int, signed: bool) -> Tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# ----------------------------------------------------------------------------------------------
# fast reading of text files vectors.read takes its tolerant (per-value) path for
def read_values(path: str, fmt: str, bits: int, signed: bool, count: int) -> np.ndarray:
    """Kept for callers of earlier versions: :func:`mdfi.vectors.read`."""
    return vectors.read(path, fmt, bits, signed, count)


def hex_at(v: int, bits: int) -> str:
    """``-12`` at 8 bits -> ``0xf4`` (two's complement, zero-padded to the width)."""
    return f"0x{int(v) & ((1 << bits) - 1):0{(bits + 3) // 4}x}"


# ----------------------------------------------------------------------------------------------
# manifest
def _fail(path: str, msg: str) -> GoldenError:
    return GoldenError(f"{path}: {msg}")


def _show(value, limit: int = 80) -> str:
    """repr() of a manifest value, clipped: messages stay one short line whatever the file holds."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + "..."


def load_manifest(golden_dir: str) -> dict:
    """Read and validate ``GOLDEN_DIR/manifest.json``; errors name the file (and line/entry)."""
    if not os.path.isdir(golden_dir):
        raise GoldenError(f"{golden_dir}: golden directory not found (write one with `mdfi golden`)")
    path = os.path.join(golden_dir, "manifest.json")
    require_regular_file(path, GoldenError)
    try:
        if os.path.getsize(path) > vectors.MAX_VECTOR_BYTES:
            raise _fail(path, f"larger than {vectors.MAX_VECTOR_BYTES:,} bytes: not a manifest")
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise _fail(path, "file not found: not a golden directory (`mdfi golden IMAGE -o DIR` writes one)") from None
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc.strerror or exc}") from None
    try:
        m = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise _fail(path, "not a UTF-8 JSON file") from None
    except json.JSONDecodeError as exc:
        raise GoldenError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(m, dict):
        raise _fail(path, "expected a JSON object")
    if m.get("format") != FORMAT:
        raise _fail(path, f"format is {_show(m.get('format'))}, expected {FORMAT!r} (not an MDFI golden manifest)")
    if m.get("format_version") != FORMAT_VERSION:
        raise _fail(path, f"format_version {_show(m.get('format_version'))} is not supported "
                          f"(this mdfi reads version {FORMAT_VERSION})")
    files, layers = m.get("files"), m.get("layers")
    if not isinstance(files, list):
        raise _fail(path, "'files' is missing or not a list")
    if not isinstance(layers, list):
        raise _fail(path, "'layers' is missing or not a list")

    def int_list(v):
        return isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in v)

    for i, L in enumerate(layers):
        if not (isinstance(L, dict) and isinstance(L.get("index"), int) and isinstance(L.get("kind"), str)
                and isinstance(L.get("meta", {}), dict)):
            raise _fail(path, f"layers[{i}]: expected an object with 'index' (int), 'kind' (str), 'meta' (object)")
        # Optional fields the report reads (hints, golden context): checked here, not trusted later.
        if not (int_list(L.get("inputs", [])) and int_list(L.get("out_shape", []))
                and isinstance(L.get("in_shapes", []), list) and all(int_list(s) and len(s) == 3
                                                                     for s in L.get("in_shapes", []))):
            raise _fail(path, f"layers[{i}]: 'inputs', 'out_shape' and 'in_shapes' must be lists of integers")
    seen: Set[str] = set()
    for i, e in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(e, dict):
            raise _fail(path, f"{where}: expected an object")
        p = e.get("path")
        if not isinstance(p, str) or not p or os.path.basename(p) != p or p in (".", ".."):
            raise _fail(path, f"{where}: 'path' must be a plain file name, got {_show(p)}")
        where = f"{where} ({p if p.isprintable() and len(p) <= 80 else _show(p)})"
        if p in seen:
            raise _fail(path, f"{where}: listed twice")
        seen.add(p)
        checks = (("layer", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= -1, "an integer >= -1"),
                  ("stage", lambda v: isinstance(v, str) and bool(v), "a stage name"),
                  ("format", lambda v: v in vectors.FORMATS, f"one of {', '.join(vectors.FORMATS)}"),
                  ("shape", lambda v: isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool)
                                                                  and d >= 0 for d in v), "a list of sizes"),
                  ("bits", lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 64, "1..64"),
                  ("signed", lambda v: isinstance(v, bool), "true or false"),
                  ("sha256", lambda v: v is None or (isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)),
                   "64 hex digits"))
        for key, ok, what in checks:
            if key not in e and key == "sha256":
                continue
            if key not in e:
                raise _fail(path, f"{where}: field '{key}' is missing")
            if not ok(e[key]):
                raise _fail(path, f"{where}: field '{key}' must be {what}, got {_show(e[key])}")
        if not p.endswith("." + e["format"]):
            raise _fail(path, f"{where}: name does not end in .{e['format']}")
        count = 1
        for d in e["shape"]:
            count *= d
        if count > vectors.MAX_VECTOR_BYTES:     # every value takes at least a byte in every format
            raise _fail(path, f"{where}: shape {str(e['shape'])[:80]} holds more values than a vector file can")
    return m


def parse_layer_filter(spec: Optional[str], n: int) -> Optional[Set[int]]:
    """``--layers``: ``0,5-7,15`` (``input`` or ``-1`` selects the network input)."""
    if spec is None:
        return None
    from .golden import parse_layers
    items = [t.strip() for t in spec.split(",") if t.strip()]
    out: Set[int] = set()
    rest = []
    for t in items:
        if t.lower() in ("input", "-1"):
            out.add(-1)
        else:
            rest.append(t)
    if rest:
        out |= parse_layers(",".join(rest), n)
    if not out:
        raise MDFIError("--layers: empty list")
    return out


def parse_stage_filter(spec: Optional[str], known: Iterable[str]) -> Optional[Set[str]]:
    """``--stages``: ``out,acc`` (``in`` selects every ``inN``; ``params`` the parameter arrays)."""
    if spec is None:
        return None
    known = set(known) | {"in0", "acc", "act", "pre", "out", *PARAM_STAGES}
    out: Set[str] = set()
    for t in (t.strip() for t in spec.split(",")):
        if not t:
            continue
        if t == "in":
            out |= {s for s in known if re.fullmatch(r"in\d+", s)} | {"in0"}
        elif t == "params":
            out |= set(PARAM_STAGES)
        elif t in known or re.fullmatch(r"in\d+", t):
            out.add(t)
        else:
            raise MDFIError(f"--stages: unknown stage {t!r} (stages: {', '.join(sorted(known))}, in, params)")
    if not out:
        raise MDFIError("--stages: empty list")
    return out


# ----------------------------------------------------------------------------------------------
# results
@dataclass
class Mismatch:
    index: int                       # flat index = line number - 1
    coords: Dict[str, int]
    expected: int
    found: int
    bits: int
    golden: Dict[str, object] = field(default_factory=dict)   # earlier stages at this element
    where: str = ""                  # "layer 13 out (channel 5, y 3, x 7)"

    def to_dict(self) -> dict:
        return {"index": self.index, "line": self.index + 1, "coords": self.coords, "expected": self.expected,
                "found": self.found, "expected_hex": hex_at(self.expected, self.bits),
                "found_hex": hex_at(self.found, self.bits), "golden": self.golden, "where": self.where}


@dataclass
class Hint:
    kind: str      # rounding, shift, wrap, activation, combined, addressing, layout, narrow, bias, scale,
                   # saturation, off_by_one, isolated, bitflip, channels, border, unknown
    text: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "text": self.text}


@dataclass
class FileResult:
    file: str                        # DUT file name
    status: str                      # ok, mismatch, error
    layer: Optional[int] = None
    stage: Optional[str] = None
    format: Optional[str] = None
    golden_file: Optional[str] = None
    shape: Optional[List[int]] = None
    layout: Optional[str] = None
    bits: Optional[int] = None
    signed: Optional[bool] = None
    total: int = 0
    mismatches: int = 0
    first: List[Mismatch] = field(default_factory=list)
    hints: List[Hint] = field(default_factory=list)
    error: Optional[str] = None
    golden_error: bool = False       # the golden side (not the DUT file) could not be read

    def to_dict(self) -> dict:
        return {"file": self.file, "status": self.status, "layer": self.layer, "stage": self.stage,
                "format": self.format, "golden_file": self.golden_file, "shape": self.shape,
                "layout": self.layout, "bits": self.bits, "signed": self.signed, "total": self.total,
                "mismatches": None if self.status == "error" else self.mismatches,
                "first": [m.to_dict() for m in self.first],
                "hints": [h.to_dict() for h in self.hints], "error": self.error, "golden_error": self.golden_error}


@dataclass
class Report:
    golden_dir: str
    dut_dir: str
    model: str = ""
    files: List[FileResult] = field(default_factory=list)
    not_in_golden: List[Tuple[str, str]] = field(default_factory=list)   # (name, reason)
    skipped: List[str] = field(default_factory=list)
    checksum_failures: List[Tuple[str, str]] = field(default_factory=list)   # (golden file, reason)
    checked_golden: bool = False

    @property
    def counts(self) -> Dict[str, int]:
        st = [f.status for f in self.files]
        return {"compared": len(st), "matched": st.count("ok"), "mismatched": st.count("mismatch"),
                "errors": st.count("error"), "skipped": len(self.skipped), "not_in_golden": len(self.not_in_golden),
                "golden_checksum_failures": len(self.checksum_failures)}

    @property
    def message(self) -> Optional[str]:
        """Why the verification could not give a verdict (exit status 2), else None."""
        c = self.counts
        if self.checksum_failures:
            return (f"{c['golden_checksum_failures']} golden file(s) differ from their manifest checksum: "
                    f"the golden set in {self.golden_dir} is corrupt")
        bad_golden = [f for f in self.files if f.golden_error]
        if bad_golden:
            return f"golden file(s) could not be read: {', '.join(f.golden_file or f.file for f in bad_golden)}"
        if c["compared"] == 0:
            why = []
            if self.skipped:
                why.append(f"{len(self.skipped)} file(s) excluded by --layers/--stages")
            if self.not_in_golden:
                why.append(f"{len(self.not_in_golden)} file(s) not in the golden set")
            return (f"nothing compared: {self.dut_dir} holds no file of the golden set"
                    + (f" ({'; '.join(why)})" if why else " (it has no .hex/.dat/.npy files)"))
        return None

    @property
    def exit_status(self) -> int:
        if self.message is not None:
            return 2
        c = self.counts
        return 1 if c["mismatched"] or c["errors"] else 0

    def earliest_failure(self) -> Optional[FileResult]:
        bad = [f for f in self.files if f.status != "ok"]
        return bad[0] if bad else None

    def to_dict(self) -> dict:
        ef = self.earliest_failure()
        return {"golden_dir": self.golden_dir, "dut_dir": self.dut_dir, "model": self.model,
                "files": [f.to_dict() for f in self.files],
                "not_in_golden": [{"file": n, "reason": r} for n, r in self.not_in_golden],
                "skipped": list(self.skipped), "checked_golden": self.checked_golden,
                "golden_checksum_failures": [{"file": n, "reason": r} for n, r in self.checksum_failures],
                "summary": self.counts, "earliest_failure": None if ef is None else ef.file,
                "exit_status": self.exit_status, "message": self.message}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def format_text(self) -> str:
        out = [f"mdfi verify: golden {self.golden_dir}{f' ({self.model})' if self.model else ''}, "
               f"DUT {self.dut_dir}"]
        if self.checked_golden:
            if self.checksum_failures:
                out.append(f"golden checksums: {len(self.checksum_failures)} file(s) differ from the manifest:")
                out += [f"  {n}: {r}" for n, r in self.checksum_failures]
            else:
                out.append("golden checksums: all files match the manifest")
        width = max([len(f.file) for f in self.files] + [12])
        for f in self.files:
            vs = "" if f.golden_file in (None, f.file) else f"  (vs golden {f.golden_file})"
            if f.status == "ok":
                out.append(f"{f.file:<{width}}  OK  {f.total:,} values{vs}")
                continue
            if f.status == "error":
                out.append(f"{f.file:<{width}}  ERROR  {f.error}")
                continue
            out.append(f"{f.file:<{width}}  MISMATCH  {f.mismatches:,} of {f.total:,} values differ{vs}")
            for k, m in enumerate(f.first):
                lead = "first at" if k == 0 else "also at"
                out.append(f"  {lead} {m.where}: expected {m.expected} ({hex_at(m.expected, m.bits)}), "
                           f"found {m.found} ({hex_at(m.found, m.bits)})")
                g = _golden_line(m.golden)
                if g:
                    out.append(f"    {g}")
            if f.mismatches > len(f.first) and f.first:
                out.append(f"  ({f.mismatches - len(f.first):,} more; --max-report N lists more)")
            for h in f.hints:
                out.append(f"  hint: {h.text}")
        if self.skipped:
            out.append(f"skipped (--layers/--stages): {_name_list(self.skipped)}")
        if self.not_in_golden:
            out.append("not in the golden set (not compared):")
            out += [f"  {n}: {r}" for n, r in self.not_in_golden]
        c = self.counts
        out.append(f"summary: {c['compared']} file(s) compared: {c['matched']} matched, {c['mismatched']} "
                   f"mismatched, {c['errors']} error(s); {c['skipped']} skipped; {c['not_in_golden']} not in "
                   f"the golden set")
        ef = self.earliest_failure()
        if ef is not None:
            tag = "input" if ef.layer == -1 else f"layer {ef.layer} {ef.stage}"
            out.append(f"earliest failure in dataflow order: {ef.file} ({tag})")
        msg = self.message
        verdict = {0: "PASS", 1: "FAIL"}.get(self.exit_status, "NO VERDICT")
        out.append(f"result: {verdict}" + (f": {msg}" if msg else ""))
        return "\n".join(out)


def _name_list(names: Sequence[str], limit: int = 12) -> str:
    s = ", ".join(names[:limit])
    return s + (f", ... ({len(names):,} in all)" if len(names) > limit else "")


def _golden_line(g: Dict[str, object]) -> str:
    if not g:
        return ""
    parts = []
    for k, v in g.items():
        if k in ("shift", "exact", "note"):
            continue
        parts.append(f"{k} = {v}")
    line = "golden " + ", ".join(parts) if parts else ""
    extra = []
    if "shift" in g:
        extra.append(f"shift {g['shift']}")
    if "exact" in g:
        extra.append(f"act / 2^shift = {g['exact']}")
    if "note" in g:
        extra.append(str(g["note"]))
    if extra:
        line = (line + " " if line else "golden ") + "(" + "; ".join(extra) + ")"
    return line


# ----------------------------------------------------------------------------------------------
# the golden set
class _GoldenSet:
    def __init__(self, folder: str, manifest: dict):
        self.folder = folder
        self.manifest = manifest
        self.by_path: Dict[str, dict] = {e["path"]: e for e in manifest["files"]}
        self.by_stage: Dict[Tuple[int, str], List[dict]] = {}
        for e in manifest["files"]:
            self.by_stage.setdefault((e["layer"], e["stage"]), []).append(e)
        self.layers: Dict[int, dict] = {L["index"]: L for L in manifest["layers"]}
        self._cache: Dict[Tuple[int, str], Optional[np.ndarray]] = {}
        self._cache_layer: Optional[int] = None

    def entries(self, layer: int, stage: str) -> List[dict]:
        """Entries of a stage, fastest to read first (npy, hex, dat)."""
        order = {"npy": 0, "hex": 1, "dat": 2}
        return sorted(self.by_stage.get((layer, stage), []), key=lambda e: order.get(e["format"], 3))

    def read_entry(self, e: dict) -> np.ndarray:
        n = int(np.prod(e["shape"], dtype=np.int64))
        return read_values(os.path.join(self.folder, e["path"]), e["format"], e["bits"], e["signed"], n)

    def read_stage(self, layer: int, stage: str) -> Tuple[np.ndarray, dict]:
        """Flat int64 values of a stage from whichever of its files reads; GoldenError if none does."""
        errors = []
        for e in self.entries(layer, stage):
            try:
                return self.read_entry(e), e
            except GoldenError as exc:
                errors.append(str(exc))
        raise GoldenError("; ".join(errors) or f"no golden file for layer {layer} {stage}")

    def stage(self, layer: int, stage: str) -> Optional[np.ndarray]:
        """Cached flat values of another stage of ``layer`` (None when not exported/readable)."""
        if layer != self._cache_layer:
            self._cache.clear()
            self._cache_layer = layer
        key = (layer, stage)
        if key not in self._cache:
            try:
                self._cache[key] = self.read_stage(layer, stage)[0]
            except GoldenError:
                self._cache[key] = None
        return self._cache[key]

    def check_checksums(self) -> List[Tuple[str, str]]:
        bad = []
        for e in self.manifest["files"]:
            full = os.path.join(self.folder, e["path"])
            want = e.get("sha256")
            if want is None:
                continue
            try:
                got = _sha256(full)
            except OSError as exc:
                bad.append((e["path"], f"cannot read: {exc.strerror or exc}"))
                continue
            if got != want:
                bad.append((e["path"], f"sha256 {got[:16]}... differs from the manifest's {want[:16]}..."))
        return bad


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _stage_order(layer: int, stage: str) -> tuple:
    m = re.fullmatch(r"in(\d+)", stage)
    if m:
        k = (0, int(m.group(1)))
    else:
        k = ({"acc": 1, "act": 2, "pre": 2, "out": 3}.get(stage, 4 + (PARAM_STAGES.index(stage) if stage in PARAM_STAGES
                                                                else len(PARAM_STAGES))), 0)
    return (layer, k)


# ----------------------------------------------------------------------------------------------
# coordinates
def _coords(idx: int, shape: Sequence[int], layout: Optional[str]) -> Dict[str, int]:
    shape = list(shape)
    if not shape:
        return {"index": idx}
    try:
        pos = [int(v) for v in np.unravel_index(idx, shape)]
    except ValueError:
        return {"index": idx}
    if layout == "CHW" and len(shape) == 3:
        return dict(zip(("channel", "y", "x"), pos))
    if layout == "MCKK" and len(shape) == 4:
        return dict(zip(("m", "c", "ky", "kx"), pos))
    if layout == "M" and len(shape) == 1:
        return {"channel": pos[0]}
    if layout == "TABLE" and len(shape) == 1:
        return {"entry": pos[0]}
    return {"index": idx} if len(shape) == 1 else {f"d{k}": v for k, v in enumerate(pos)}


def _coord_text(coords: Dict[str, int], idx: int) -> str:
    return ", ".join(f"{k} {v}" for k, v in coords.items()) + f"; line {idx + 1}"


def _where(layer: int, stage: str, coords: Dict[str, int], idx: int) -> str:
    name = "input" if layer == -1 else f"layer {layer} {stage}"
    return f"{name} ({_coord_text(coords, idx)})"


# ----------------------------------------------------------------------------------------------
# the requantizing step, re-done with changed rules (hints)
class _Requant:
    """Everything needed to recompute a conv/shortcut ``out`` from the golden ``act``."""

    def __init__(self, act: np.ndarray, base_shift: np.ndarray, activation: str, mode: str, bits: int,
                 acc: Optional[np.ndarray]):
        self.act = act
        self.base = base_shift            # per element, int64 (no leaky extra)
        self.activation = activation
        self.mode = mode if isinstance(mode, str) and mode in _MODES else "half_up"
        self.bits = bits
        self.lo, self.hi = _qrange(bits, True)
        self.neg = (act < 0) if activation == "leaky" else None
        self.extra = np.where(self.neg, 15, 0).astype(np.int64) if activation == "leaky" else None
        if acc is None and activation in ("leaky", "linear"):
            acc = np.where(act < 0, act // 3277, act) if activation == "leaky" else act
        self.acc = acc

    def eff_shift(self, idx):
        s = self.base[idx]
        return s + self.extra[idx] if self.extra is not None else s

    def _finish(self, q, wrap):
        return _wrap(q, self.bits) if wrap else np.clip(q, self.lo, self.hi)

    def predict(self, idx, mode=None, dshift=0, wrap=False, act_variant=None):
        """Predicted ``out`` at flat indices ``idx`` (a slice(None) for all)."""
        mode = mode or self.mode
        if act_variant is None:
            a = self.act[idx]
            s = self.eff_shift(idx) + dshift
        else:
            acc = self.acc[idx]
            s0 = self.base[idx] + dshift
            neg = acc < 0
            if act_variant == "after":
                q1 = round_shift(acc, s0, self.mode)
                q = np.where(neg, round_shift(q1 * 3277, np.full_like(q1, 15), self.mode), q1)
                return self._finish(q, wrap)
            if act_variant == "float":
                v = np.floor(acc * 0.1 / np.exp2(s0.astype(np.float64)) + 0.5).astype(np.int64)
                q = np.where(neg, v, round_shift(acc, s0, self.mode))
                return self._finish(q, wrap)
            if act_variant == "linear":
                a, s = acc, s0
            elif act_variant == "relu":
                a, s = np.maximum(acc, 0), s0
            elif act_variant == "slope8":
                a, s = acc, s0 + np.where(neg, 3, 0)
            else:  # pragma: no cover
                raise ValueError(act_variant)
        if wrap:
            a = np.where(s < 0, a & np.int64((1 << self.bits) - 1), a)   # wrap is modular: bound left shifts
        else:
            lim = np.int64(1) << np.int64(self.bits)
            a = np.where(s < 0, np.clip(a, -lim, lim), a)
        return self._finish(round_shift(a, s, mode), wrap)


@dataclass
class _Hyp:
    kind: str
    changes: int                      # how many rules differ from golden
    label: str
    pred: object                      # callable(idx) -> (lo, hi) arrays
    text: object = None               # callable(stats) -> str
    explained: int = 0
    covered: int = 0
    differs: int = 0


def _sample(mism: np.ndarray, rng) -> np.ndarray:
    return mism if mism.size <= _SAMPLE else np.sort(mism[rng.integers(0, mism.size, _SAMPLE)])


def _test(h: _Hyp, gold, dut, mism, sample) -> bool:
    """Does the DUT follow hypothesis ``h`` (screened on a sample of the mismatches, then
    tested on every mismatch and on every element)?"""
    n = mism.size
    lo, hi = h.pred(sample)
    d = dut[sample]
    if np.count_nonzero((d >= lo) & (d <= hi)) < _COVERAGE * sample.size:
        return False
    if sample is not mism:
        lo, hi = h.pred(mism)
        d = dut[mism]
    h.explained = int(np.count_nonzero((d >= lo) & (d <= hi)))
    if h.explained < _COVERAGE * n:
        return False
    lo, hi = h.pred(slice(None))
    differs = (gold < lo) | (gold > hi)                     # where the changed rule gives other values
    h.differs = int(np.count_nonzero(differs))
    h.covered = int(np.count_nonzero(differs & (dut >= lo) & (dut <= hi)))
    return h.differs > 0 and h.covered >= _COVERAGE * h.differs


def _exact(f):
    def pred(idx):
        v = f(idx)
        return v, v
    return pred


def _fraction_clause(rq: _Requant, mism: np.ndarray) -> str:
    a = rq.act[mism]
    s = rq.eff_shift(mism)
    if np.any(s <= 0):
        return ""
    q = np.right_shift(a, s)
    r = a - np.left_shift(q, s)
    h = np.left_shift(np.int64(1), s - 1)
    if np.all(r == h):
        return " at exact ties (fraction = 1/2)"
    if np.all(r >= h):
        return " where the fraction x - floor(x) is >= 1/2"
    if np.all((r > 0) & (r < h)):
        return " where the fraction x - floor(x) is < 1/2"
    if np.all(r != 0):
        return " where the quotient is inexact"
    return ""


def _requant_hyps(rq: _Requant, gold, dut, mism) -> List[_Hyp]:
    n = mism.size
    hyps: List[_Hyp] = []
    gm = rq.mode

    def mode_text(mode):
        def t(h):
            s = (f"rounding-mode difference: found values equal {_MODES[mode][0]} where golden "
                 f"{_MODES[gm][1]}: {h.explained:,} of {n:,} mismatches are off by one"
                 f"{_fraction_clause(rq, mism) if h.explained == n else ''}")
            if h.covered == h.differs:
                return s + f"; the DUT follows {_SHORT[mode]} at all {h.differs:,} values where the modes differ"
            return (s + f"; the DUT follows {_SHORT[mode]} at {h.covered:,} of {h.differs:,} values where the "
                        f"modes differ")
        return t

    def shift_text(k, mode):
        def t(h):
            how = f"1/{2 ** k} of" if k > 0 else f"{2 ** -k} times"
            m = "" if mode == gm else f" with {_MODES[mode][0]}"
            return (f"looks like a requantizing shift off by {k:+d} (DUT shifts by shift{k:+d}{m}): found values "
                    f"are {how} the golden ones (factor {2 ** abs(k)}), saturated; {h.explained:,} of {n:,} "
                    f"mismatches explained")
        return t

    def wrap_text(mode):
        def t(h):
            lo, hi = rq.lo, rq.hi
            m = "" if mode == gm else f" (and {_MODES[mode][0]})"
            return (f"DUT wraps around instead of saturating (AP_WRAP vs AP_SAT){m}: {h.explained:,} of {n:,} "
                    f"mismatches are where golden saturates at {lo}/{hi} and the found value is the unsaturated "
                    f"result wrapped to {rq.bits} bits")
        return t

    for mode in _MODES:
        if mode != gm:
            hyps.append(_Hyp("rounding", 1, mode, _exact(lambda i, m=mode: rq.predict(i, mode=m)), mode_text(mode)))
    for k in (1, -1, 2, -2, 3, -3, 4, -4):
        hyps.append(_Hyp("shift", 1, f"shift{k:+d}", _exact(lambda i, k=k: rq.predict(i, dshift=k)),
                         shift_text(k, gm)))
    hyps.append(_Hyp("wrap", 1, "wrap", _exact(lambda i: rq.predict(i, wrap=True)), wrap_text(gm)))
    if rq.activation == "leaky" and rq.acc is not None:
        texts = {
            "after": "DUT applies the leaky slope after the requantizing shift (two roundings) instead of to the "
                     "accumulator before it (docs/fixed-point.md section 4)",
            "linear": "negative values are not multiplied by the leaky slope: the DUT output is linear "
                      "(activation missing)",
            "relu": "negative values become 0: the DUT applies ReLU instead of leaky",
            "slope8": "the DUT uses the leaky slope 1/8 (a shift by 3) instead of 3277/2^15",
            "float": "the DUT uses the leaky slope 0.1 exactly (float) instead of 3277/2^15 = 0.100006",
        }
        for v, txt in texts.items():
            hyps.append(_Hyp("activation", 1, v, _exact(lambda i, v=v: rq.predict(i, act_variant=v)),
                             lambda h, txt=txt: f"{txt}: {h.explained:,} of {n:,} mismatches explained, at "
                                                f"{h.covered:,} of {h.differs:,} negative values affected"))
    return hyps


def _combo_hyps(rq: _Requant, n: int) -> List[_Hyp]:
    gm = rq.mode
    hyps = []
    for mode in _MODES:
        if mode == gm:
            continue
        for k in (1, -1, 2, -2):
            hyps.append(_Hyp("combined", 2, f"{mode}+shift{k:+d}",
                             _exact(lambda i, m=mode, k=k: rq.predict(i, mode=m, dshift=k)),
                             lambda h, m=mode, k=k: (f"two differences: requantizing shift off by {k:+d} (factor "
                                                     f"{2 ** abs(k)}) and {_MODES[m][0]} instead of golden's "
                                                     f"{_MODES[gm][0]}: {h.explained:,} of {n:,} mismatches "
                                                     f"explained")))
        hyps.append(_Hyp("combined", 2, f"{mode}+wrap", _exact(lambda i, m=mode: rq.predict(i, mode=m, wrap=True)),
                         lambda h, m=mode: (f"two differences: DUT wraps around instead of saturating (AP_WRAP vs "
                                            f"AP_SAT) and uses {_MODES[m][0]} instead of golden's {_MODES[gm][0]}: "
                                            f"{h.explained:,} of {n:,} mismatches explained")))
    for k in (1, -1, 2, -2):
        hyps.append(_Hyp("combined", 2, f"wrap+shift{k:+d}",
                         _exact(lambda i, k=k: rq.predict(i, dshift=k, wrap=True)),
                         lambda h, k=k: (f"two differences: requantizing shift off by {k:+d} (factor {2 ** abs(k)}) "
                                         f"and wrap-around instead of saturation (AP_WRAP vs AP_SAT): "
                                         f"{h.explained:,} of {n:,} mismatches explained")))
    return hyps


def _sign_note(d: np.ndarray) -> str:
    if np.all(d == 1):
        return " (found = expected + 1 everywhere)"
    if np.all(d == -1):
        return " (found = expected - 1 everywhere)"
    return ""


def _best(hyps: List[_Hyp], gold, dut, mism, rng) -> List[_Hyp]:
    sample = _sample(mism, rng)
    ok = [h for h in hyps if _test(h, gold, dut, mism, sample)]
    ok.sort(key=lambda h: (h.changes, -h.explained, -(h.covered / max(h.differs, 1))))
    return ok


# ----------------------------------------------------------------------------------------------
class _Analyzer:
    """Hints for one differing file."""

    def __init__(self, gs: _GoldenSet, entry: dict, gold: np.ndarray, dut: np.ndarray, mism: np.ndarray):
        self.gs, self.e = gs, entry
        self.gold, self.dut, self.mism = gold, dut, mism
        self.layer, self.stage = entry["layer"], entry["stage"]
        self.bits, self.signed = entry["bits"], entry["signed"]
        self.shape = list(entry["shape"])
        self.layout = entry.get("layout")
        self.L = gs.layers.get(self.layer, {})
        self.meta = self.L.get("meta") or {}
        self.kind = self.L.get("kind")
        self.rng = np.random.default_rng(12345)
        self._rq = None

    # -- golden values of earlier stages -----------------------------------------------------
    def base_shift(self) -> Optional[np.ndarray]:
        """The requantizing shift of every element (no leaky extra), or None."""
        if not hasattr(self, "_base"):
            self._base = self._base_shift()
        return self._base

    def _base_shift(self) -> Optional[np.ndarray]:
        n = self.gold.size
        if self.kind == "convolutional" and len(self.shape) == 3:
            c, h, w = self.shape
            sh = self.gs.stage(self.layer, "shift")
            if sh is None or sh.size != c:
                try:
                    wf = np.asarray(self.meta["w_frac"], dtype=np.int64)
                    sh = wf + int(self.meta["in_fmt"]["frac"]) - int(self.meta["out_fmt"]["frac"])
                    if sh.size == 1:
                        sh = np.repeat(sh, c)
                except (KeyError, TypeError, ValueError, OverflowError):   # the manifest is data
                    return None
            if sh.size != c or not np.all((sh >= _MIN_SHIFT) & (sh <= _MAX_SHIFT)):
                return None
            return np.repeat(sh.astype(np.int64), h * w)
        shift = self.meta.get("shift")
        if self.kind == "shortcut" and isinstance(shift, int) and _MIN_SHIFT <= shift <= _MAX_SHIFT:
            return np.full(n, shift, dtype=np.int64)
        return None

    def requant(self) -> Optional[_Requant]:
        if self._rq is not None:
            return self._rq
        if self.stage != "out" or self.kind not in ("convolutional", "shortcut") or not self.signed:
            return None
        act = self.gs.stage(self.layer, "act")
        base = self.base_shift()
        if act is None or base is None or act.size != self.gold.size:
            return None
        activation = self.meta.get("activation", "linear")
        if activation not in ("linear", "leaky", "relu"):
            return None
        acc = self.gs.stage(self.layer, "acc")
        if acc is not None and acc.size != act.size:
            acc = None
        # The layer's own mode (meta) first: it includes per-layer overrides (--layer-rounding).
        mode = self.meta.get("rounding") or self.e.get("rounding") or "half_up"
        rq = _Requant(act, base, activation, mode, self.bits, acc)
        # The golden file must be what the golden rule gives, or no recomputation is meaningful.
        probe = self.mism if self.mism.size <= _SAMPLE else self.mism[:_SAMPLE]
        if not np.array_equal(rq.predict(probe), self.gold[probe]):
            return None
        self._rq = rq
        return rq

    def golden_context(self, i: int) -> Dict[str, object]:
        g: Dict[str, object] = {}
        if self.stage in ("out", "act") and self.kind in ("convolutional", "shortcut"):
            acc = self.gs.stage(self.layer, "acc")
            if acc is not None and acc.size == self.gold.size:
                g["acc"] = int(acc[i])
            if self.stage == "out":
                act = self.gs.stage(self.layer, "act")
                base = self.base_shift()
                if act is not None and act.size == self.gold.size:
                    g["act"] = int(act[i])
                    if base is not None:
                        s = int(base[i])
                        leaky = self.meta.get("activation") == "leaky" and act[i] < 0
                        if leaky:
                            g["shift"] = f"{s + 15} = {s} + 15, leaky"
                        else:
                            a = self.meta.get("activation")
                            g["shift"] = f"{s}, {a}" if a not in (None, "linear") else f"{s}"
                        s_eff = s + (15 if leaky else 0)
                        g["exact"] = float(f"{int(act[i]) / 2.0 ** s_eff:.6g}")
        elif (self.stage == "acc" and self.kind == "convolutional"
              and "channel" in _coords(i, self.shape, self.layout)):
            bias = self.gs.stage(self.layer, "bias")
            ch = _coords(i, self.shape, self.layout)["channel"]
            if bias is not None and ch < bias.size:
                g["bias"] = int(bias[ch])
        elif self.stage == "out" and self.kind in ("yolo", "region"):
            x = self.gs.stage(self.layer, "in0")
            if x is not None and x.size == self.gold.size:
                g["in0"] = int(x[i])
        elif self.stage == "out" and self.kind == "route" and self.layout == "CHW":
            ch = _coords(i, self.shape, self.layout)["channel"]
            hw = self.shape[1] * self.shape[2]
            start = 0
            for k, s in enumerate(self.L.get("in_shapes") or []):
                if ch < start + s[0]:
                    x = self.gs.stage(self.layer, f"in{k}")
                    src = (self.L.get("inputs") or [None] * (k + 1))[k]
                    if x is not None:
                        j = (ch - start) * hw + i % hw
                        if j < x.size:
                            g[f"in{k}"] = int(x[j])
                    g["note"] = f"from input {k} (layer {src}) channel {ch - start}"
                    break
                start += s[0]
        return g

    # -- hints ---------------------------------------------------------------------------------
    def hints(self) -> List[Hint]:
        out: List[Hint] = []
        addr = self.addressing()
        if addr is not None:
            return [addr]
        arithmetic = self.arithmetic()
        out += arithmetic
        if not arithmetic:
            out += self.generic()
        if all(h.kind == "off_by_one" for h in out):
            out += self.isolated()
        if not any(h.kind in ("isolated", "bitflip") for h in out):
            loc = self.localisation()
            # Mismatches confined to a few channels say more than a weak arithmetic guess.
            out = (loc + out) if all(h.kind == "off_by_one" for h in out) else (out + loc)
        if not out:
            d = self.dut[self.mism] - self.gold[self.mism]
            out.append(Hint("unknown", f"no recognised pattern: found - expected ranges {int(d.min()):+,} .. "
                                       f"{int(d.max()):+,} (median |difference| {int(np.median(np.abs(d))):,})"))
        return out

    def addressing(self) -> Optional[Hint]:
        gold, dut, n = self.gold, self.dut, self.mism.size
        total = gold.size
        if n < 2 or total < 4:
            return None
        cands = [(1, "1 element"), (-1, "1 element")]
        if self.layout == "CHW" and len(self.shape) == 3:
            c, h, w = self.shape
            if w > 1:
                cands += [(w, f"one row ({w} elements)"), (-w, f"one row ({w} elements)")]
            if h * w > w and c > 1:
                cands += [(h * w, f"one channel ({h * w:,} elements)"), (-h * w, f"one channel ({h * w:,} elements)")]
        cands += [(2, "2 elements"), (-2, "2 elements")]
        best = None
        for d, what in cands:
            if abs(d) >= total:
                continue
            if d > 0:       # DUT[i] = golden[i - d]
                bad = np.count_nonzero(dut[d:] != gold[:-d])
            else:           # DUT[i] = golden[i + |d|]
                bad = np.count_nonzero(dut[:d] != gold[-d:])
            if bad <= max(0.001 * (total - abs(d)), 0) and bad < n / 10 and (best is None or bad < best[0]):
                best = (bad, d, what)
        if best is not None:
            bad, d, what = best
            rel = f"DUT[i] = golden[i{-d:+d}]"
            direction = "later" if d > 0 else "earlier"
            extra = "" if bad == 0 else f", apart from {bad:,} values"
            return Hint("addressing", f"DUT is the golden tensor shifted by {what} ({rel}: each value appears "
                                      f"{abs(d)} position(s) {direction}{extra}): addressing off by one?")
        if self.layout == "CHW" and len(self.shape) == 3 and self.shape[0] > 1 and self.shape[1] * self.shape[2] > 1:
            c, h, w = self.shape
            g3 = gold.reshape(c, h, w)
            for perm, name in (((1, 2, 0), "HWC (channel fastest)"), ((0, 2, 1), "CWH (x and y swapped)"),
                               ((2, 1, 0), "WHC")):
                t = g3.transpose(perm).reshape(-1)
                bad = np.count_nonzero(t != dut)
                if bad <= 0.001 * total and bad < n / 10:
                    return Hint("layout", f"DUT holds the tensor in {name} order instead of CHW "
                                          f"(docs/golden-format.md: planar CHW, x fastest)"
                                          + ("" if bad == 0 else f", apart from {bad:,} values"))
        return None

    def arithmetic(self) -> List[Hint]:
        rq = self.requant()
        if rq is None:
            return []
        gold, dut, mism = self.gold, self.dut, self.mism
        ok = _best(_requant_hyps(rq, gold, dut, mism), gold, dut, mism, self.rng)
        if not ok:
            ok = _best(_combo_hyps(rq, mism.size), gold, dut, mism, self.rng)
        if not ok:
            d = dut[mism] - gold[mism]
            if np.all(np.abs(d) == 1):
                return [Hint("off_by_one", f"all {mism.size:,} mismatches are off by one{_sign_note(d)}, but no "
                                           f"rounding mode, shift or activation variant applied to the whole tensor "
                                           f"reproduces them (an offset in the accumulator, e.g. the bias, or "
                                           f"rounding in an intermediate step?)")]
            return []
        top = ok[0]
        txt = top.text(top)
        same = [h for h in ok[1:] if h.changes == top.changes and h.explained == top.explained
                and h.covered * max(top.differs, 1) == top.covered * max(h.differs, 1)]
        if same:
            txt += f" (equally consistent with: {', '.join(h.label.replace('_', '-') for h in same[:3])})"
        return [Hint(top.kind, txt)]

    def generic(self) -> List[Hint]:
        gold, dut, mism, n = self.gold, self.dut, self.mism, self.mism.size
        g, d = gold[mism], dut[mism]
        out: List[Hint] = []
        hyps: List[_Hyp] = []
        # bias missing / added twice (convolution accumulators)
        if self.stage == "acc" and self.kind == "convolutional" and len(self.shape) == 3:
            bias = self.gs.stage(self.layer, "bias")
            c, h, w = self.shape
            if bias is not None and bias.size == c:
                be = np.repeat(bias.astype(np.int64), h * w)
                hyps.append(_Hyp("bias", 1, "no-bias", _exact(lambda i: gold[i] - be[i]),
                                 lambda hh: f"found values equal the golden accumulator without the bias: bias not "
                                            f"added ({hh.explained:,} of {n:,} mismatches)"))
                hyps.append(_Hyp("bias", 1, "bias-twice", _exact(lambda i: gold[i] + be[i]),
                                 lambda hh: f"found values equal the golden accumulator plus the bias again: bias "
                                            f"added twice ({hh.explained:,} of {n:,} mismatches)"))
        # a register narrower than the declared width
        for b in range(max(2, self.bits - 24), self.bits):
            blo, bhi = _qrange(b, self.signed)
            if np.all(((d - g) & np.int64((1 << b) - 1)) == 0) and np.all((d >= blo) & (d <= bhi)):
                hyps.append(_Hyp("narrow", 1, f"wrap{b}", _exact(lambda i, b=b: _wrap(gold[i], b, self.signed)),
                                 lambda hh, b=b: (f"found values equal the golden ones wrapped to {b} bits (declared "
                                                  f"{self.bits}): a register or bus too narrow? ({hh.explained:,} of "
                                                  f"{n:,} mismatches)")))
        # power-of-two scaling (a shift off by k without act/shift information)
        lo_q, hi_q = _qrange(self.bits, self.signed)
        for k in range(1, max(1, min(self.bits, 16, 62 - self.bits))):
            hyps.append(_Hyp("scale", 1, f"x2^{k}", _exact(lambda i, k=k: np.clip(gold[i] << k, lo_q, hi_q)),
                             lambda hh, k=k: (f"looks like a requantizing shift off by {-k:+d}: found values are "
                                              f"2^{k} times the golden ones (factor {2 ** k}), {hh.explained:,} of "
                                              f"{n:,} mismatches")))
            hyps.append(_Hyp("scale", 1, f"/2^{k}",
                             lambda i, k=k: (gold[i] >> k, -((-gold[i]) >> k)),
                             lambda hh, k=k: (f"looks like a requantizing shift off by {k:+d}: found values are the "
                                              f"golden ones divided by 2^{k} (factor {2 ** k}), {hh.explained:,} of "
                                              f"{n:,} mismatches")))
        ok = _best(hyps, gold, dut, mism, self.rng)
        if ok:
            return [Hint(ok[0].kind, ok[0].text(ok[0]))]
        # saturation without act: mismatches only where golden sits at qmin/qmax
        if self.stage == "out" and self.e.get("saturation") == "AP_SAT":
            sat = (gold == lo_q) | (gold == hi_q)
            if np.all(sat[mism]) and n >= 0.5 * np.count_nonzero(sat) and n > 1:
                out.append(Hint("saturation", f"all {n:,} mismatches are where golden saturates (at {lo_q}/{hi_q}): "
                                              f"the DUT probably wraps around instead of saturating "
                                              f"(AP_WRAP vs AP_SAT)"))
                return out
        if np.all(np.abs(d - g) == 1) and n > 1:
            out.append(Hint("off_by_one", f"all {n:,} mismatches are off by one: possibly a rounding-mode "
                                          f"difference (no golden act stage and shift to confirm it)"))
        return out

    def isolated(self) -> List[Hint]:
        n = self.mism.size
        if n > _ISOLATED_MAX:
            return []
        g, d = self.gold[self.mism], self.dut[self.mism]
        mask = np.int64((1 << self.bits) - 1) if self.bits < 64 else np.int64(-1)
        x = (g ^ d) & mask
        single = [int(v).bit_length() - 1 for v in x if v and (int(v) & (int(v) - 1)) == 0]
        where = "; ".join(f"({_coord_text(_coords(int(i), self.shape, self.layout), int(i))})"
                          for i in self.mism[:4])
        hints = [Hint("isolated", f"{n} isolated mismatch{'es' if n != 1 else ''} (no arithmetic pattern): data "
                                  f"corruption or addressing? at {where}{', ...' if n > 4 else ''}")]
        if len(single) == n:
            bits = sorted(set(single))
            hints.append(Hint("bitflip", f"{'each differs' if n > 1 else 'it differs'} from golden in a single bit "
                                         f"(bit{'s' if len(bits) > 1 else ''} {', '.join(map(str, bits))}): "
                                         f"a bit flip?"))
        return hints

    def localisation(self) -> List[Hint]:
        n = self.mism.size
        out: List[Hint] = []
        if n < 2:
            return out
        if self.layout in ("CHW", "MCKK") and len(self.shape) in (3, 4):
            per = int(np.prod(self.shape[1:]))
            nch = self.shape[0]
            ch, cnt = np.unique(self.mism // per, return_counts=True)
            if len(ch) < nch and len(ch) <= 8:
                name = "channels" if self.layout == "CHW" else "filters (output channels m)"
                items = [f"{int(c)}" + (f" (all {per:,} values)" if k == per else f" ({int(k):,} values)")
                         for c, k in zip(ch, cnt)]
                out.append(Hint("channels", f"mismatches confined to {len(ch)} of {nch} {name}: {', '.join(items)}"))
        if self.layout == "CHW" and len(self.shape) == 3:
            c, h, w = self.shape
            if h > 2 and w > 2:
                y = (self.mism // w) % h
                x = self.mism % w
                border = (y == 0) | (y == h - 1) | (x == 0) | (x == w - 1)
                if np.all(border):
                    sides = [nm for nm, m in (("top row y 0", y == 0), (f"bottom row y {h - 1}", y == h - 1),
                                              ("left column x 0", x == 0), (f"right column x {w - 1}", x == w - 1))
                             if np.any(m)]
                    out.append(Hint("border", f"all mismatches are on the tensor border ({', '.join(sides)}): "
                                              f"padding or edge handling?"))
        return out


# ----------------------------------------------------------------------------------------------
def _match(gs: _GoldenSet, name: str) -> Tuple[Optional[dict], Optional[str]]:
    """Golden entry for a DUT file name, or (None, why it is not in the golden set)."""
    if name in gs.by_path:
        return gs.by_path[name], None
    m = _NAME_RE.match(name)
    if not m:
        return None, "not a golden file name (lNNN.<stage>.<hex|dat|npy> or input.<ext>)"
    layer, stage = (-1, "out") if m.group(1) else (int(m.group(2)), m.group(3))
    ents = gs.entries(layer, stage)
    if ents:
        return ents[0], None
    if layer != -1 and layer not in gs.layers:
        return None, f"the model has no layer {layer}"
    L = gs.layers.get(layer)
    if L is not None and not L.get("exported", True) and stage not in PARAM_STAGES:
        return None, f"layer {layer} was not exported to the golden set (mdfi golden --layers)"
    stages = sorted({s for (li, s) in gs.by_stage if li == layer}, key=lambda s: _stage_order(layer, s))
    return None, f"layer {layer} has no stage {stage!r} in the golden set ({', '.join(stages) or 'none'})"


def compare_file(gs: _GoldenSet, entry: dict, dut_path: str, fmt: str, max_report: int = 1) -> FileResult:
    name = os.path.basename(dut_path)
    n = int(np.prod(entry["shape"], dtype=np.int64))
    r = FileResult(file=name, status="ok", layer=entry["layer"], stage=entry["stage"], format=fmt,
                   golden_file=entry["path"], shape=list(entry["shape"]), layout=entry.get("layout"),
                   bits=entry["bits"], signed=entry["signed"], total=n)
    # Byte-identical to the golden file as the manifest recorded it: equal, nothing to parse.
    if fmt == entry["format"] and entry.get("sha256"):
        try:
            if _sha256(dut_path) == entry["sha256"]:
                return r
        except OSError as exc:
            r.status, r.error = "error", f"{dut_path}: cannot read: {exc.strerror or exc}"
            return r
    try:
        dut = read_values(dut_path, fmt, entry["bits"], entry["signed"], n)
    except GoldenError as exc:
        r.status, r.error = "error", str(exc)
        return r
    try:
        gold, _ = gs.read_stage(entry["layer"], entry["stage"])
    except GoldenError as exc:
        r.status, r.error, r.golden_error = "error", f"golden: {exc}", True
        return r
    neq = gold != dut
    k = int(np.count_nonzero(neq))
    if k == 0:
        return r
    r.status, r.mismatches = "mismatch", k
    mism = np.flatnonzero(neq)
    an = _Analyzer(gs, entry, gold, dut, mism)
    for i in mism[:max(max_report, 0)]:
        i = int(i)
        c = _coords(i, entry["shape"], entry.get("layout"))
        r.first.append(Mismatch(i, c, int(gold[i]), int(dut[i]), entry["bits"], an.golden_context(i),
                                _where(entry["layer"], entry["stage"], c, i)))
    r.hints = an.hints()
    return r


def verify(golden_dir, dut_dir, *, layers: Optional[str] = None, stages: Optional[str] = None,
           max_report: int = 1, check_golden: bool = False) -> Report:
    """Compare the files of ``dut_dir`` with the golden set in ``golden_dir``.

    ``layers``/``stages`` are the CLI's ``--layers``/``--stages`` strings (``"0,5-7"``,
    ``"out,acc"``).  Raises :class:`GoldenError` for an unusable golden directory (missing or
    corrupt manifest) or a missing ``dut_dir``; everything about individual files is in the
    returned :class:`Report`.
    """
    golden_dir, dut_dir = os.fspath(golden_dir), os.fspath(dut_dir)
    if max_report < 0:
        raise MDFIError("--max-report must be >= 0")
    manifest = load_manifest(golden_dir)
    if not os.path.isdir(dut_dir):
        raise GoldenError(f"{dut_dir}: DUT directory not found")
    gs = _GoldenSet(golden_dir, manifest)
    lf = parse_layer_filter(layers, len(manifest["layers"]))
    sf = parse_stage_filter(stages, {s for (_, s) in gs.by_stage})
    model = manifest.get("model") or {}
    rep = Report(golden_dir, dut_dir, model=str(model.get("name", "")) if isinstance(model, dict) else "")
    if check_golden:
        rep.checked_golden = True
        rep.checksum_failures = gs.check_checksums()
    try:
        names = sorted(os.listdir(dut_dir))
    except OSError as exc:
        raise GoldenError(f"{dut_dir}: cannot list: {exc.strerror or exc}") from None
    todo = []
    for name in names:
        full = os.path.join(dut_dir, name)
        if name in META_FILES or not os.path.isfile(full):
            continue
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        if ext not in vectors.FORMATS:
            continue
        entry, why = _match(gs, name)
        if entry is None:
            rep.not_in_golden.append((name, why))
            continue
        if (lf is not None and entry["layer"] not in lf) or (sf is not None and entry["stage"] not in sf):
            rep.skipped.append(name)
            continue
        todo.append((_stage_order(entry["layer"], entry["stage"]), name, entry, full, ext))
    todo.sort(key=lambda t: (t[0], t[1]))
    for _, name, entry, full, ext in todo:
        rep.files.append(compare_file(gs, entry, full, ext, max_report))
    return rep
