"""``mdfi verify``: check a device's (or simulator's) dumps against golden vectors.

``GOLDEN_DIR`` is what ``mdfi golden`` wrote (docs/golden-format.md); ``DUT_DIR`` holds any
subset of the same files (``l013.out.hex``, ``l000.acc.npy``, ``input.dat`` ...), in any of
the three formats.  A DUT file is compared like with like: with the golden file of the
same name when the golden set has it, else with the same stage in another format.  A
``.hex`` dump may be *sparse* (``@address`` markers): then only the values it holds are
compared, and the report says how many.  The golden files are checked against the
manifest's checksums first (``check_golden``, the default), so an edited or inconsistent
golden set is never used silently.

Every name in ``DUT_DIR`` is accounted for: compared, excluded by the filters, not in the
golden set, or ignored (not a vector file) -- and listed.  Symbolic links are followed only
when they stay inside ``DUT_DIR``; a link leading outside (or nowhere) is an error, and
nothing outside the folder is ever read.  Text files are streamed with a size limit tied
to the stage's value count (:func:`mdfi.vectors.read_dut`), so a huge file costs no memory.

Every comparison is exact and vectorised.  For a file that differs the report gives the
number of differing values, the first one(s) in hardware coordinates (layer, stage,
channel/y/x or m/c/ky/kx, file line), the golden values of the earlier stages at that
element, and *hints*: the arithmetic patterns that explain the differences (rounding mode,
requantizing shift, wrap-around instead of saturation, leaky slope, addressing offsets,
layout, narrow registers, missing bias, isolated bit flips, channel or border confinement).

Hints are computed by :mod:`mdfi.verify_hints`: each arithmetic change (bias, accumulator
width, activation, rounding, shift, saturation) is a hypothesis tested on the whole tensor
at every stage where it is observable (``acc``, ``act`` or ``out``).

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
import stat as _stat
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np

from . import vectors
from .errors import GoldenError, MDFIError
from .limits import require_regular_file
from .verify_hints import Analyzer, Hint, coords as _coords, round_shift, where as _where  # noqa: F401

FORMAT = "mdfi-golden"
FORMAT_VERSION = 1
#: Names in a golden (or DUT) folder that are not vector files.
META_FILES = ("manifest.json", "model.txt", "detections.json")
PARAM_STAGES = ("weights", "bias", "shift", "logistic_lut", "exp_lut", "expneg_lut")
_NAME_RE = re.compile(r"^(?:(input)|l(\d+)\.([A-Za-z_][A-Za-z0-9_]*))\.(hex|dat|npy)$")


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
        if (not isinstance(p, str) or not p or os.path.basename(p) != p or p in (".", "..")
                or not p.isprintable() or "\\" in p or len(p) > 255):
            raise _fail(path, f"{where}: 'path' must be a plain file name (printable, no folders), got {_show(p)}")
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
    known = set(known) | {"in0", "acc", "act", "out", *PARAM_STAGES}
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
    present: Optional[int] = None    # values a sparse dump holds (None: all of them)
    mismatches: int = 0
    first: List[Mismatch] = field(default_factory=list)
    hints: List[Hint] = field(default_factory=list)
    error: Optional[str] = None
    golden_error: bool = False       # the golden side (not the DUT file) could not be read

    def to_dict(self) -> dict:
        return {"file": self.file, "status": self.status, "layer": self.layer, "stage": self.stage,
                "format": self.format, "golden_file": self.golden_file, "shape": self.shape,
                "layout": self.layout, "bits": self.bits, "signed": self.signed, "total": self.total,
                "present": self.total if self.present is None else self.present,
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
    ignored: List[Tuple[str, str]] = field(default_factory=list)          # (name, what it is)
    checksum_failures: List[Tuple[str, str]] = field(default_factory=list)   # (golden file, reason)
    checked_golden: bool = False

    @property
    def counts(self) -> Dict[str, int]:
        st = [f.status for f in self.files]
        return {"compared": len(st), "matched": st.count("ok"), "mismatched": st.count("mismatch"),
                "errors": st.count("error"), "skipped": len(self.skipped), "not_in_golden": len(self.not_in_golden),
                "golden_checksum_failures": len(self.checksum_failures), "ignored": len(self.ignored)}

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
                "skipped": list(self.skipped),
                "ignored": [{"file": n, "reason": r} for n, r in self.ignored], "checked_golden": self.checked_golden,
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
            sparse = "" if f.present is None else f" (sparse dump: {f.present:,} of {f.total:,} values)"
            if f.status == "ok":
                n = f.total if f.present is None else f.present
                out.append(f"{f.file:<{width}}  OK  {n:,} values{sparse}{vs}")
                continue
            if f.status == "error":
                out.append(f"{f.file:<{width}}  ERROR  {f.error}")
                continue
            n = f.total if f.present is None else f.present
            out.append(f"{f.file:<{width}}  MISMATCH  {f.mismatches:,} of {n:,} values differ{sparse}{vs}")
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
        if self.ignored:
            out.append("ignored (not vector files): " + _name_list([f"{n} ({r})" for n, r in self.ignored]))
        c = self.counts
        out.append(f"summary: {c['compared']} file(s) compared: {c['matched']} matched, {c['mismatched']} "
                   f"mismatched, {c['errors']} error(s); {c['skipped']} skipped; {c['not_in_golden']} not in "
                   f"the golden set; {c['ignored']} ignored")
        ef = self.earliest_failure()
        if ef is not None:
            tag = ("not read" if ef.layer is None else "input" if ef.layer == -1
                   else f"layer {ef.layer} {ef.stage}")
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

    def entries(self, layer: int, stage: str, prefer: Optional[str] = None) -> List[dict]:
        """Entries of a stage: format ``prefer`` first, then the fastest to read (npy, hex, dat)."""
        order = {"npy": 1, "hex": 2, "dat": 3}
        return sorted(self.by_stage.get((layer, stage), []),
                      key=lambda e: 0 if e["format"] == prefer else order.get(e["format"], 4))

    def read_entry(self, e: dict) -> np.ndarray:
        n = int(np.prod(e["shape"], dtype=np.int64))
        return read_values(os.path.join(self.folder, e["path"]), e["format"], e["bits"], e["signed"], n)

    def read_stage(self, layer: int, stage: str, prefer: Optional[str] = None) -> Tuple[np.ndarray, dict]:
        """Flat int64 values of a stage from whichever of its files reads (format ``prefer``
        first); GoldenError if none does."""
        errors = []
        for e in self.entries(layer, stage, prefer):
            try:
                return self.read_entry(e), e
            except GoldenError as exc:
                errors.append(str(exc))
        raise GoldenError("; ".join(errors) or f"no golden file for layer {layer} {stage}")

    def stage(self, layer: int, stage: str, prefer: Optional[str] = None) -> Optional[np.ndarray]:
        """Cached flat values of another stage of ``layer`` (None when not exported/readable)."""
        if layer != self._cache_layer:
            self._cache.clear()
            self._cache_layer = layer
        key = (layer, stage)
        if key not in self._cache:
            try:
                self._cache[key] = self.read_stage(layer, stage, prefer)[0]
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
                require_regular_file(full, GoldenError)
                if os.path.islink(full) or not os.path.isfile(full):
                    raise OSError(0, "missing, or not a regular file")
                got = _sha256(full, cache=True)
            except GoldenError:
                bad.append((e["path"], "not a regular file"))
                continue
            except OSError as exc:
                bad.append((e["path"], f"cannot read: {exc.strerror or exc}"))
                continue
            if got != want:
                bad.append((e["path"], f"sha256 {got[:16]}... differs from the manifest's {want[:16]}..."))
        return bad


#: (device, inode, size, mtime in ns) -> sha256, for golden files already hashed in
#: this process (an API user verifying many DUT folders against one golden set hashes it once).
_DIGESTS: Dict[tuple, str] = {}


def _sha256(path: str, cache: bool = False) -> str:
    key = None
    if cache:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key in _DIGESTS:
            return _DIGESTS[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    digest = h.hexdigest()
    if key is not None:
        if len(_DIGESTS) > 100_000:
            _DIGESTS.clear()
        _DIGESTS[key] = digest
    return digest


def _stage_order(layer: int, stage: str) -> tuple:
    m = re.fullmatch(r"in(\d+)", stage)
    if m:
        k = (0, int(m.group(1)))
    else:
        k = ({"acc": 1, "act": 2, "out": 3}.get(stage, 4 + (PARAM_STAGES.index(stage) if stage in PARAM_STAGES
                                                                else len(PARAM_STAGES))), 0)
    return (layer, k)


# ----------------------------------------------------------------------------------------------
def _match(gs: _GoldenSet, name: str) -> Tuple[Optional[dict], Optional[str]]:
    """Golden entry for a DUT file name, or (None, why it is not in the golden set)."""
    if name in gs.by_path:
        return gs.by_path[name], None
    m = _NAME_RE.match(name)
    if not m:
        return None, "not a golden file name (lNNN.<stage>.<hex|dat|npy> or input.<ext>)"
    layer, stage = (-1, "out") if m.group(1) else (int(m.group(2)), m.group(3))
    ents = gs.entries(layer, stage, prefer=name.rsplit(".", 1)[-1])
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
            gsize = os.path.getsize(os.path.join(gs.folder, entry["path"]))
        except OSError:
            gsize = -1
        try:
            if os.path.getsize(dut_path) == gsize and _sha256(dut_path) == entry["sha256"]:
                return r
        except OSError as exc:
            r.status, r.error = "error", f"{dut_path}: cannot read: {exc.strerror or exc}"
            return r
    try:
        dut, present = vectors.read_dut(dut_path, fmt, entry["bits"], entry["signed"], n)
    except GoldenError as exc:
        r.status, r.error = "error", str(exc)
        return r
    try:
        gold = gs.read_entry(entry)          # like with like: the golden file this DUT file was matched to
    except GoldenError as exc:
        r.status, r.error, r.golden_error = "error", f"golden: {exc}", True
        return r
    sel = None
    if present is not None:
        sel = np.flatnonzero(present)
        r.present = int(sel.size)
        gold, dut = gold[sel], dut[sel]
    neq = gold != dut
    k = int(np.count_nonzero(neq))
    if k == 0:
        return r
    r.status, r.mismatches = "mismatch", k
    mism = np.flatnonzero(neq)
    an = Analyzer(gs, entry, gold, dut, mism, sel)
    for i in mism[:max(max_report, 0)]:
        i = int(i)
        fi = i if sel is None else int(sel[i])
        c = _coords(fi, entry["shape"], entry.get("layout"))
        r.first.append(Mismatch(fi, c, int(gold[i]), int(dut[i]), entry["bits"], an.golden_context(fi),
                                _where(entry["layer"], entry["stage"], c, fi)))
    r.hints = an.hints()
    return r


def _shown(name: str) -> str:
    """A file name as a report may print it (control characters escaped, clipped)."""
    return name if name.isprintable() and len(name) <= 120 else repr(name)[:120]


def _inside(path: str, root_real: str) -> Optional[str]:
    """The real path of ``path`` when it stays inside ``root_real`` (a folder's realpath), else None."""
    real = os.path.realpath(path)
    try:
        if os.path.commonpath([real, root_real]) != root_real:
            return None
    except ValueError:
        return None
    return real


def verify(golden_dir, dut_dir, *, layers: Optional[str] = None, stages: Optional[str] = None,
           max_report: int = 1, check_golden: bool = True) -> Report:
    """Compare the files of ``dut_dir`` with the golden set in ``golden_dir``.

    ``layers``/``stages`` are the CLI's ``--layers``/``--stages`` strings (``"0,5-7"``,
    ``"out,acc"``).  ``check_golden`` (default) first checks every golden file against the
    manifest's sha256.  Raises :class:`GoldenError` for an unusable golden directory
    (missing or corrupt manifest) or a missing ``dut_dir``; everything about individual
    files is in the returned :class:`Report`.
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
    root = os.path.realpath(dut_dir)
    todo = []
    errors: List[FileResult] = []
    for name in names:
        full = os.path.join(dut_dir, name)
        shown = _shown(name)
        ext = name.rsplit(".", 1)[-1] if "." in name else ""
        vector_name = ext in vectors.FORMATS and name not in META_FILES
        is_link = os.path.islink(full)
        if is_link:
            real = _inside(full, root)
            if not os.path.exists(full):
                why = "a dangling symbolic link (its target does not exist)"
            elif real is None:
                why = "a symbolic link to a file outside the DUT folder: not read (copy the file into the folder)"
            else:
                why = None
            if why is not None:
                if vector_name:
                    errors.append(FileResult(file=shown, status="error", error=f"{full}: {why}"))
                else:
                    rep.ignored.append((shown, why.split(":")[0]))
                continue
        try:
            st = os.stat(full)
        except OSError as exc:
            errors.append(FileResult(file=shown, status="error", error=f"{full}: cannot read: {exc.strerror or exc}"))
            continue
        if _stat.S_ISDIR(st.st_mode):
            rep.ignored.append((shown, "a folder"))
            continue
        if not _stat.S_ISREG(st.st_mode):
            if vector_name:
                errors.append(FileResult(file=shown, status="error",
                                         error=f"{full}: not a regular file (a device, FIFO or socket): not read"))
            else:
                rep.ignored.append((shown, "not a regular file"))
            continue
        if name in META_FILES:
            rep.ignored.append((shown, "export metadata"))
            continue
        if not vector_name:
            rep.ignored.append((shown, "not a .hex/.dat/.npy file"))
            continue
        entry, why = _match(gs, name)
        if entry is None:
            rep.not_in_golden.append((shown, why))
            continue
        if (lf is not None and entry["layer"] not in lf) or (sf is not None and entry["stage"] not in sf):
            rep.skipped.append(shown)
            continue
        todo.append((_stage_order(entry["layer"], entry["stage"]), name, entry, full, ext))
    todo.sort(key=lambda t: (t[0], t[1]))
    rep.files.extend(errors)
    for _, name, entry, full, ext in todo:
        rep.files.append(compare_file(gs, entry, full, ext, max_report))
    return rep
