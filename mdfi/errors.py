"""Typed errors.  Every failure MDFI reports to a user is an :class:`MDFIError`.

The CLI prints ``str(error)`` on one line (no traceback) and exits with status 2.
Each message names the file it is about (and the line, for text files), says what
was expected and what was found, and where useful how to fix it.
"""

from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class MDFIError(Exception):
    """Base class of every user-facing MDFI error (CLI exit status 2).

    The message is kept to one readable line whatever went into it: control characters
    (newlines, ANSI escape sequences) are escaped and any single token longer than
    :data:`MAX_TOKEN` characters is clipped (a cfg value or a file name can be megabytes)."""

    exit_status = 2

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (tidy_message(args[0]),) + args[1:]
        super().__init__(*args)


#: Longest run of non-blank characters kept in a message.
MAX_TOKEN = 200


def tidy_message(message: str) -> str:
    """One line, printable, no token longer than :data:`MAX_TOKEN` (see :class:`MDFIError`)."""
    if message.isprintable() and len(message) <= MAX_TOKEN:
        return message
    if not message.isprintable():
        message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    if len(message) > MAX_TOKEN:
        message = " ".join(t if len(t) <= MAX_TOKEN else t[:MAX_TOKEN - 20] + f"...({len(t):,} characters)"
                           for t in message.split(" "))
    return message


class CfgError(MDFIError):
    """A malformed or unsupported Darknet ``.cfg`` file.  Names the file and line."""

    def __init__(self, message: str, path: Optional[PathLike] = None, line: Optional[int] = None):
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.reason = message
        where = self.path or "<cfg>"
        if line is not None:
            where = f"{where}:{line}"
        super().__init__(f"{where}: {message}")


class WeightsError(MDFIError):
    """A Darknet ``.weights`` file that does not fit its cfg (size, header)."""


class ImageError(MDFIError):
    """An image that cannot be read or is not usable."""


class ModelFileError(MDFIError):
    """A quantized ``.mdfi`` model file that is corrupt, truncated or inconsistent."""


class FormatError(MDFIError, ValueError):
    """An impossible number format: bit width outside 2..16, unknown rounding mode, ..."""


class DownloadError(MDFIError):
    """Weights could not be fetched (no network, checksum mismatch, ...)."""


class ShapeError(MDFIError, ValueError):
    """Arrays handed to a kernel do not have the shapes/dtypes the kernel requires."""


class LimitError(MDFIError):
    """An input asks for more than a configured safety limit (memory, dimensions)."""


class GoldenError(MDFIError):
    """A golden-vector directory (``mdfi golden`` / ``mdfi verify``) that cannot be used."""


class ArgumentError(MDFIError, TypeError, ValueError):
    """An API argument of the wrong type or value (``mdfi.load(3)``, ``detect(None)``).

    Also a TypeError and a ValueError, so code written against Python's conventions still
    catches it."""


class OutputError(MDFIError):
    """An output that cannot be written (folder is a file, read-only, disk full), or that
    would overwrite one of the inputs."""


class MDFIWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints it as one
    ``mdfi: warning: ...`` line)."""


def shown(value: object, limit: int = 60) -> str:
    """``value`` as it may appear inside a one-line message: control characters, escape
    sequences and other non-printable characters escaped (``\\x1b``), clipped to about
    ``limit`` characters (a value read from a file can be megabytes long)."""
    s = value if isinstance(value, str) else str(value)
    clipped = len(s) > limit
    s = s[:limit]
    if not s.isprintable():
        s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)
    return s + ("..." if clipped else "")


class JobError(MDFIError):
    """A dataset-scale job that cannot run, or whose worker failed (mdfi.scale.pipeline, docs/scale.md).
    A bad input image is not one: it is reported in the results and the job goes on."""
