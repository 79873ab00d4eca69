"""The one status-line writer under every progress display of MDFI.

Long work shows progress on stderr (calibration, downloads, ``mdfi detect`` over many
images, evaluations, dataset-scale jobs).  Each of those formats its own text; this class
does the part they share: on a terminal one line is rewritten in place (``\\r``, padded
over the previous text), elsewhere (a log, CI) whole lines are written, and updates are
throttled to at most one per ``interval`` seconds (``interval_tty`` on a terminal,
``interval_log`` otherwise).  ``clock`` is injectable for tests.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Callable, Optional

__all__ = ["StatusLine"]


class StatusLine:
    def __init__(self, stream: Optional[IO[str]] = None, *, enabled: bool = True,
                 interval_tty: float = 0.0, interval_log: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        try:
            self.tty = bool(self.stream.isatty())
        except Exception:           # a closed or exotic stream: write plain lines
            self.tty = False
        self.interval = interval_tty if self.tty else interval_log
        self.clock = clock
        self.last: Optional[float] = None    # clock at the last write (None: nothing yet)
        self.width = 0                       # length of the line on screen (terminal)

    def due(self) -> bool:
        """True when the throttle lets an update through now (always for the first one)."""
        return self.last is None or self.clock() - self.last >= self.interval

    def write(self, text: str, final: bool = False) -> None:
        """Show ``text``: in place on a terminal (a newline after it when ``final``), as a
        whole line elsewhere."""
        if not self.enabled:
            return
        if self.tty:
            self.stream.write("\r" + text + " " * max(0, self.width - len(text)) + ("\n" if final else ""))
            self.width = 0 if final else len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last = self.clock()

    def update(self, text: str, force: bool = False) -> bool:
        """Write ``text`` if the throttle allows it (or ``force``); return whether it did."""
        if force or self.due():
            self.write(text)
            return True
        return False

    def end_line(self) -> None:
        """Finish an in-place line on a terminal (nothing elsewhere, nothing if none shown)."""
        if self.enabled and self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0
