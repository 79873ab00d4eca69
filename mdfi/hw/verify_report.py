"""The report of ``mdfi verify``: per-file results, the summary, text and JSON forms."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .verify_hints import Hint


def hex_at(v: int, bits: int) -> str:
    """``-12`` at 8 bits -> ``0xf4`` (two's complement, zero-padded to the width)."""
    return f"0x{int(v) & ((1 << bits) - 1):0{(bits + 3) // 4}x}"


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


