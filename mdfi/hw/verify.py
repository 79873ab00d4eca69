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
to the stage's value count (:func:`mdfi.hw.vectors.read_dut`), so a huge file costs no memory.

Every comparison is exact and vectorised.  For a file that differs the report gives the
number of differing values, the first one(s) in hardware coordinates (layer, stage,
channel/y/x or m/c/ky/kx, file line), the golden values of the earlier stages at that
element, and *hints*: the arithmetic patterns that explain the differences (rounding mode,
requantizing shift, wrap-around instead of saturation, leaky slope, addressing offsets,
layout, narrow registers, missing bias, isolated bit flips, channel or border confinement).

Hints are computed by :mod:`mdfi.hw.verify_hints` (with the arithmetic hypotheses of
:mod:`mdfi.hw.verify_rules`): each change (bias, accumulator width, activation, rounding,
shift, saturation) is a hypothesis tested on the whole tensor at every stage where it is
observable (``acc``, ``act`` or ``out``).  The report is :mod:`mdfi.hw.verify_report`.

Exit status (``Report.exit_status``): 0 when at least one file was compared and every
compared file matches; 1 when a DUT file differs or cannot be read; 2 when nothing was
compared or the golden set itself is unusable (corrupt manifest, golden file unreadable,
``--check-golden`` checksum failures).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat as _stat
from typing import Dict, Iterable, List, Optional, Set, Tuple

import numpy as np

from .. import safejson
from . import vectors
from ..errors import GoldenError, MDFIError
from ..limits import require_regular_file
from .verify_hints import Analyzer, Hint, coords as _coords, where as _where  # noqa: F401
from .verify_report import FileResult, Mismatch, Report, hex_at  # noqa: F401
from .verify_rules import round_shift  # noqa: F401

FORMAT = "mdfi-golden"
FORMAT_VERSION = 1
#: Names in a golden (or DUT) folder that are not vector files.
META_FILES = ("manifest.json", "model.txt", "detections.json")
PARAM_STAGES = ("weights", "bias", "shift", "logistic_lut", "exp_lut", "expneg_lut", "act_lut", "xy_lut",
                "prob_lut", "wh_lut")
_NAME_RE = re.compile(r"^(?:(input)|l(\d+)\.([A-Za-z_][A-Za-z0-9_]*))\.(hex|dat|npy)$")


# ----------------------------------------------------------------------------------------------
# fast reading of text files vectors.read takes its tolerant (per-value) path for
def read_values(path: str, fmt: str, bits: int, signed: bool, count: int) -> np.ndarray:
    """Kept for callers of earlier versions: :func:`mdfi.hw.vectors.read`."""
    return vectors.read(path, fmt, bits, signed, count)


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
    m = safejson.loads(raw, path, error=GoldenError)     # depth, number size and NaN limits; one line
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
        z = e.get("zero", 0)           # the zero point (docs/golden-format.md "Zero points"), absent = 0
        lo, hi = (-(1 << (e["bits"] - 1)), (1 << (e["bits"] - 1)) - 1) if e["signed"] else (0, (1 << e["bits"]) - 1)
        if not isinstance(z, int) or isinstance(z, bool) or not lo <= z <= hi:
            raise _fail(path, f"{where}: field 'zero' must be a code of the {e['bits']}-bit format, got {_show(z)}")
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
        k = ({"acc": 1, "act": 2, "pre": 2, "out": 3}.get(stage, 4 + (PARAM_STAGES.index(stage) if stage in PARAM_STAGES
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
    errors: List[Tuple[str, FileResult]] = []
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
                    errors.append((name, FileResult(file=shown, status="error", error=f"{full}: {why}")))
                else:
                    rep.ignored.append((shown, why.split(":")[0]))
                continue
        try:
            st = os.stat(full)
        except OSError as exc:
            errors.append((name, FileResult(file=shown, status="error",
                                            error=f"{full}: cannot read: {exc.strerror or exc}")))
            continue
        if _stat.S_ISDIR(st.st_mode):
            rep.ignored.append((shown, "a folder"))
            continue
        if not _stat.S_ISREG(st.st_mode):
            if vector_name:
                errors.append((name, FileResult(file=shown, status="error",
                                                error=f"{full}: not a regular file (a device, FIFO or socket): not read")))
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
    results = []
    for name, res in errors:             # not read: placed by their stage too (the earliest failure)
        entry = _match(gs, name)[0]
        results.append(((0,) if entry is None else (1, _stage_order(entry["layer"], entry["stage"])), name, res))
    for order, name, entry, full, ext in todo:
        results.append(((1, order), name, compare_file(gs, entry, full, ext, max_report)))
    results.sort(key=lambda t: (t[0], t[1]))
    rep.files.extend(res for _, _, res in results)
    return rep
