"""Results of dataset-scale jobs: canonical JSON text, the resumable JSON-lines results file,
and the progress line with rate and ETA (used by :mod:`mdfi.scale.pipeline`)."""

from __future__ import annotations

import json
import os
import time
from typing import Any, Iterator, Mapping, Optional, Set

from ..errors import JobError
from ..progress import StatusLine

__all__ = ["canonical", "ResultsFile", "RateProgress", "RESULTS_FORMAT", "RESULTS_VERSION"]

RESULTS_FORMAT = "mdfi-results"
RESULTS_VERSION = 1


def canonical(obj: Any) -> str:
    """The canonical JSON text of a result: sorted keys, no spaces, exact float repr, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False)


# ============================================================================ progress


def _duration(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class RateProgress:
    """``eval: 120/1000 images, 3.4 images/s, ETA 4m18s`` on stderr: rewritten in place on a
    terminal (at most 5 updates/s), one line every ``log_interval`` seconds otherwise."""

    def __init__(self, total: Optional[int], label: str, *, stream=None, unit: str = "images",
                 enabled: bool = True, log_interval: float = 5.0, clock=time.monotonic):
        self.total, self.label, self.unit = total, label, unit
        self.line = StatusLine(stream, enabled=enabled, interval_tty=0.2, interval_log=log_interval, clock=clock)
        self.start = clock()
        self.count = self.errors = self.skipped = 0

    def text(self) -> str:
        elapsed = max(self.line.clock() - self.start, 1e-9)
        rate = self.count / elapsed
        of = f"/{self.total}" if self.total is not None else ""
        line = f"{self.label}: {self.count + self.skipped}{of} {self.unit}, {rate:.2f} {self.unit}/s"
        if self.total is not None and rate > 0:
            line += f", ETA {_duration((self.total - self.count - self.skipped) / rate)}"
        if self.skipped:
            line += f" ({self.skipped} done before)"
        if self.errors:
            line += f", {self.errors} error{'s' * (self.errors != 1)}"
        return line

    def step(self, error: bool = False) -> None:
        self.count += 1
        self.errors += bool(error)
        self.line.update(self.text())

    def done(self) -> None:
        elapsed = self.line.clock() - self.start
        rate = self.count / max(elapsed, 1e-9)
        line = (f"{self.label}: {self.count} {self.unit} in {_duration(elapsed)} ({rate:.2f} {self.unit}/s)"
                + (f", {self.skipped} done before" if self.skipped else "")
                + (f", {self.errors} error{'s' * (self.errors != 1)}" if self.errors else ""))
        self.line.write(line, final=True)


# ============================================================================ results journal


class ResultsFile:
    """JSON-lines results: a header line (the job's digest and parameters), then one result
    per line, appended and flushed as results arrive.  Opening an existing file resumes it:
    the header must match (else :class:`JobError`: never mix two jobs' results), the keys
    already there are :attr:`done`, and a last line cut short by a crash is dropped."""

    def __init__(self, path: str, header: Mapping[str, Any], *, what: str = "results file"):
        self.path = os.fspath(path)
        self.what = what
        self.header = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, **header}
        self.done: Set[str] = set()
        head_text = canonical(self.header)
        if os.path.exists(self.path):
            self._resume(head_text)
        else:
            parent = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(parent, exist_ok=True)
                self._fh = open(self.path, "x", encoding="utf-8")
                self._fh.write(head_text + "\n")
                self._fh.flush()
            except OSError as exc:
                raise JobError(f"{self.path}: cannot create the results file: {exc.strerror or exc}") from None

    def _resume(self, head_text: str) -> None:
        from ..limits import require_regular_file
        require_regular_file(self.path, JobError)
        try:
            fh = open(self.path, "r+b")
        except OSError as exc:
            raise JobError(f"{self.path}: cannot open the results file: {exc.strerror or exc}") from None
        first = fh.readline()
        try:
            other = json.loads(first)
        except ValueError:
            other = None
        mine = {k: v for k, v in self.header.items() if k != "images"}
        legacy = isinstance(other, dict) and "images" not in other and canonical(mine) == canonical(other)
        if first.rstrip(b"\n").decode("utf-8", "replace") != head_text and not legacy:   # legacy: before "images"
            fh.close()
            if not isinstance(other, dict) or other.get("format") != RESULTS_FORMAT:
                what = "not an MDFI results file"
            elif canonical({k: v for k, v in other.items() if k != "images"}) == canonical(mine):
                what = (f"the {other.get('job', '?')} results of images in other folders (files of the same "
                        f"name would be taken for these)")
            else:
                what = f"a {other.get('job', '?')} job with other models or options"
            raise JobError(f"{self.path}: exists and holds {what}; give another {self.what} "
                           f"(or delete it to start again)")
        good = fh.tell()
        for line in fh:
            if not line.endswith(b"\n"):
                break                                  # cut short by a crash: dropped
            try:
                key = json.loads(line)["image"]
            except (ValueError, KeyError, TypeError):
                break
            self.done.add(key)
            good += len(line)
        fh.truncate(good)
        fh.close()
        self._fh = open(self.path, "a", encoding="utf-8")

    def write(self, text: str) -> None:
        self._fh.write(text + "\n")
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def records(self) -> Iterator[dict]:
        """Every result of the file (re-read from disk, one at a time)."""
        with open(self.path, "r", encoding="utf-8") as fh:
            fh.readline()
            for line in fh:
                yield json.loads(line)
