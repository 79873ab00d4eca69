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
    """Base class of every user-facing MDFI error (CLI exit status 2)."""

    exit_status = 2


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


class JobError(MDFIError):
    """A dataset-scale job that cannot run, or whose worker failed (mdfi.pipeline, docs/scale.md).
    A bad input image is not one: it is reported in the results and the job goes on."""
