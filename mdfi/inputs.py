"""One validated way to open every input file MDFI reads (cfg, weights, names, images,
labels, ``.mdfi`` models, JSON): docs/hardening.md.

* The path must be a ``str`` or ``os.PathLike`` (else :class:`~mdfi.errors.ArgumentError`).
* Only regular files are read.  The file is opened with ``O_NONBLOCK`` and checked with
  ``fstat`` on the open descriptor, so a FIFO never blocks, a device (``/dev/zero``) is
  never read, and a folder gets its own message; there is no window between check and read.
* The size is checked before anything is read, against the caller's limit.
* Text is decoded strictly as UTF-8 (a UTF-8 byte-order mark is accepted and dropped); a
  UTF-16 file, a Latin-1 byte or a NUL byte is a one-line error naming the file and line.

Every error is the caller's :class:`~mdfi.errors.MDFIError` subclass with a one-line
message that names the file.
"""

from __future__ import annotations

import os
import stat
from typing import Optional, Tuple, Type

from .errors import ArgumentError, CfgError, MDFIError, PathLike

__all__ = ["as_path", "open_input", "read_bytes", "read_text", "decode_text"]


def as_path(path: object, what: str = "path") -> str:
    """``os.fspath(path)`` for a str or PathLike; anything else is an ArgumentError."""
    if isinstance(path, bytes):
        raise ArgumentError(f"{what}: expected a file name (str or os.PathLike), got bytes")
    try:
        p = os.fspath(path)  # type: ignore[arg-type]
    except TypeError:
        raise ArgumentError(f"{what}: expected a file name (str or os.PathLike), "
                            f"got {type(path).__name__}") from None
    if not isinstance(p, str):
        raise ArgumentError(f"{what}: expected a file name (str), got {type(p).__name__}")
    if p == "":
        raise ArgumentError(f"{what}: empty file name")
    if "\x00" in p:
        raise ArgumentError(f"{what}: file name contains a NUL byte")
    return p


def _a(what: str) -> str:
    return ("an " if what[:1].lower() in "aeiou" else "a ") + what


def _error(error: Type[MDFIError], path: str, message: str, line: Optional[int] = None) -> MDFIError:
    if issubclass(error, CfgError):
        return error(message, path, line)
    where = path if line is None else f"{path}:{line}"
    return error(f"{where}: {message}")


def open_input(path: PathLike, error: Type[MDFIError], *, what: str = "file",
               max_bytes: Optional[int] = None, limit_hint: str = "") -> Tuple[int, int]:
    """Open ``path`` for reading as a regular file.  Returns ``(fd, size)``; the caller
    closes ``fd`` (``os.fdopen(fd, "rb")``).  ``max_bytes``: refuse larger files
    (``limit_hint`` says how to raise the limit)."""
    p = as_path(path, what)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise _error(error, p, "file not found") from None
    except IsADirectoryError:
        raise _error(error, p, f"is a directory, not {_a(what)}") from None
    except PermissionError:
        raise _error(error, p, "cannot read: permission denied") from None
    except OSError as exc:
        raise _error(error, p, f"cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _error(error, p, f"is a directory, not {_a(what)}")
        if not stat.S_ISREG(st.st_mode):
            raise _error(error, p, "not a regular file (a device, FIFO or socket); MDFI reads regular files only")
        if max_bytes is not None and st.st_size > max_bytes:
            raise _error(error, p, f"file is larger than {_a(what)} can be ({st.st_size:,} bytes; "
                                   f"limit {max_bytes:,} bytes{limit_hint})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return fd, st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: PathLike, error: Type[MDFIError], *, what: str = "file",
               max_bytes: Optional[int] = None, limit_hint: str = "") -> bytes:
    """The bytes of a regular file no larger than ``max_bytes`` (checked before reading;
    a file growing while read is cut at ``max_bytes + 1`` and refused)."""
    p = as_path(path, what)
    fd, size = open_input(p, error, what=what, max_bytes=max_bytes, limit_hint=limit_hint)
    try:
        with os.fdopen(fd, "rb") as fh:
            # read(n) allocates n bytes up front: ask for the size fstat reported, not the limit
            data = fh.read(size)
            grew = fh.read(1)
    except MemoryError:
        raise _error(error, p, f"not enough memory to read this {what}") from None
    except OSError as exc:
        raise _error(error, p, f"cannot read: {exc.strerror or exc}") from None
    if grew:
        raise _error(error, p, "the file grew while it was read; try again when it is complete")
    return data


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"


def decode_text(data: bytes, path: str, error: Type[MDFIError], *, what: str = "text file",
                allow_nul: bool = False) -> str:
    """Strict UTF-8 (a leading UTF-8 byte-order mark is dropped).  UTF-16, other encodings
    and NUL bytes are one-line errors with the line number."""
    if data.startswith(_UTF16_BOMS) or (len(data) >= 4 and data[1:4:2] == b"\0\0" and data[0:4:2] != b"\0\0"):
        raise _error(error, path, f"not a text file in UTF-8 (UTF-16?); save the {what} as UTF-8", 1)
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        byte = data[exc.start]
        raise _error(error, path, f"not a text file in UTF-8 (byte 0x{byte:02X} is not UTF-8: Latin-1 or "
                                  f"another encoding?); save the {what} as UTF-8", line) from None
    if not allow_nul and "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise _error(error, path, "not a text file (NUL byte)", line)
    return text


def read_text(path: PathLike, error: Type[MDFIError], *, what: str = "text file",
              max_bytes: Optional[int] = None, limit_hint: str = "") -> str:
    """A regular UTF-8 text file, size-checked before reading, decoded strictly."""
    p = as_path(path, what)
    return decode_text(read_bytes(p, error, what=what, max_bytes=max_bytes, limit_hint=limit_hint),
                       p, error, what=what)
