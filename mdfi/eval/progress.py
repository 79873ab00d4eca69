"""A minimal progress line for long evaluations (re-exported by :mod:`mdfi.eval.evaluate`)."""

from __future__ import annotations

import time
from typing import IO, Any, Optional

from ..progress import StatusLine

__all__ = ["Progress"]


class Progress:
    """Minimal progress display: ``label: 3/12 name`` on ``stream`` (default stderr).

    On a TTY one line is rewritten in place with ``\\r``; otherwise one line per step is
    written.  Either way at most one update per ``min_interval`` seconds (0.1 s: ~10 lines/s)
    is written; the last step (``count == total``) and :meth:`done` always are.  Also a
    context manager (``done`` on exit).  ``clock`` is injectable for tests.
    """

    def __init__(self, total: Optional[int], label: str, stream: Optional[IO[str]] = None, *,
                 min_interval: float = 0.1, clock=time.monotonic):
        self.total = total
        self.label = label
        self.line = StatusLine(stream, interval_tty=min_interval, interval_log=min_interval, clock=clock)
        self.stream, self.tty = self.line.stream, self.line.tty
        self.count = 0
        self._start = clock()
        self._pending: Optional[str] = None   # last text not written because of throttling
        self._done = False

    def _text(self, name: str) -> str:
        total = "?" if self.total is None else str(self.total)
        name = " ".join(str(name).split())          # no \r, \n, tabs from file names
        if self.tty and len(name) > 60:
            name = "..." + name[-57:]
        return f"{self.label}: {self.count}/{total} {name}".rstrip()

    def step(self, item_name: str = "") -> None:
        """Count one item and show it (subject to throttling)."""
        self.count += 1
        text = self._text(item_name)
        if self.count == self.total or self.line.due():
            self.line.write(text)
            self._pending = None
        else:
            self._pending = text

    def done(self) -> None:
        """Write the final state (if throttled away) and finish the line.  Idempotent."""
        if self._done:
            return
        self._done = True
        if self._pending is not None:
            self.line.write(self._pending)
        elapsed = self.line.clock() - self._start
        if self.tty:
            self.stream.write(f"  ({elapsed:.1f} s)\n" if self.line.width else "")
        else:
            self.stream.write(f"{self.label}: done, {self.count} item(s) in {elapsed:.1f} s\n")
        self.stream.flush()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.done()
