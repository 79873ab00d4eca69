"""Reading and writing golden vectors: ``.hex`` ($readmemh), ``.dat`` (decimal), ``.npy``.

Formats are defined in docs/golden-format.md: one value per line; hex is two's complement
at the declared width, lower case, zero-padded to ``ceil(width/4)`` digits.  Writers and
readers are vectorised (tens of millions of values per second), and the readers accept
what other tools write too: upper case, fewer digits, ``//`` comments, blank lines, and
for ``.hex`` the ``@address`` markers of ``$readmemh`` files when they are sequential.
"""

from __future__ import annotations

import os
import re
from typing import Union

import numpy as np

from .errors import GoldenError
from .limits import require_regular_file

PathLike = Union[str, "os.PathLike[str]"]
FORMATS = ("hex", "npy", "dat")
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: ASCII byte -> hex digit value, 255 for anything else.
_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _NIBBLE[_c] = 10 + _i

#: Largest vector file the readers accept (a yolov3 accumulator dump is ~100 MB as hex).
MAX_VECTOR_BYTES = 2 << 30


def hex_digits(bits: int) -> int:
    return (bits + 3) // 4


def npy_dtype(bits: int, signed: bool) -> np.dtype:
    """Narrowest dtype holding the width (docs/golden-format.md)."""
    if not signed and bits <= 8:
        return np.dtype(np.uint8)
    if not signed and bits <= 16:
        return np.dtype(np.uint16)
    for dt, w in ((np.int8, 8), (np.int16, 16), (np.int32, 32), (np.int64, 64)):
        if bits <= w:
            return np.dtype(dt)
    raise GoldenError(f"no dtype holds {bits} bits")


def to_hex_bytes(values: np.ndarray, bits: int) -> bytes:
    """Two's complement at ``bits``, zero-padded hex, one value per line."""
    v = np.asarray(values).reshape(-1).astype(np.int64)
    u = v.view(np.uint64) & np.uint64((1 << bits) - 1) if bits < 64 else v.view(np.uint64)
    nd = hex_digits(bits)
    out = np.empty((u.size, nd + 1), dtype=np.uint8)
    for k in range(nd):
        out[:, k] = _HEX[((u >> np.uint64(4 * (nd - 1 - k))) & np.uint64(0xF)).astype(np.intp)]
    out[:, nd] = ord("\n")
    return out.tobytes()


def to_dat_bytes(values: np.ndarray) -> bytes:
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        return b""
    return ("\n".join(map(str, v.astype(np.int64).tolist())) + "\n").encode("ascii")


def write(path: PathLike, values: np.ndarray, fmt: str, bits: int, signed: bool) -> None:
    """Write ``values`` (any shape; flattened row-major) in format ``fmt``."""
    p = os.fspath(path)
    if fmt == "hex":
        data = to_hex_bytes(values, bits)
        with open(p, "wb") as fh:
            fh.write(data)
    elif fmt == "dat":
        with open(p, "wb") as fh:
            fh.write(to_dat_bytes(values))
    elif fmt == "npy":
        np.save(p, np.asarray(values).astype(npy_dtype(bits, signed)).astype(
            npy_dtype(bits, signed).newbyteorder("<")), allow_pickle=False)
    else:
        raise GoldenError(f"unknown vector format {fmt!r} (expected one of {', '.join(FORMATS)})")


# -- reading --------------------------------------------------------------------------------------------
def _read_bytes(path: str) -> bytes:
    require_regular_file(path, GoldenError)
    try:
        size = os.path.getsize(path)
        if size > MAX_VECTOR_BYTES:
            raise GoldenError(f"{path}: {size:,} bytes is larger than the {MAX_VECTOR_BYTES:,}-byte limit")
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise GoldenError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise GoldenError(f"{path}: is a directory") from None
    except OSError as exc:
        raise GoldenError(f"{path}: cannot read: {exc.strerror or exc}") from None


_LINE_END = re.compile(r"\r\n|\r|\n")


def _clip(token: str, limit: int = 40) -> str:
    """A token as it may appear in an error message (a bad "number" can be megabytes long)."""
    return token if len(token) <= limit else token[:limit] + "..."


def _clean_lines(path: str, data: bytes, hexmode: bool):
    """Tokens of a text vector file: comments, blank lines and (hex) sequential @addresses removed."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise GoldenError(f"{path}:{line}: not an ASCII text vector file") from None
    tokens, lines = [], []
    for lineno, raw in enumerate(_LINE_END.split(text), 1):   # not splitlines(): \f, \x1c.. are no line ends
        cut = raw.find("//")
        body = (raw[:cut] if cut >= 0 else raw).split()
        for tok in body:
            if hexmode and tok.startswith("@"):
                try:
                    addr = int(tok[1:], 16)
                except ValueError:
                    raise GoldenError(f"{path}:{lineno}: bad address marker {_clip(tok)!r}") from None
                if addr != len(tokens):
                    raise GoldenError(f"{path}:{lineno}: address @{_clip(tok[1:])} is not sequential "
                                      f"(expected @{len(tokens):x}); only sequential files are supported")
                continue
            tokens.append(tok)
            lines.append(lineno)
    return tokens, lines


_DAT_BYTES = np.zeros(256, dtype=bool)
_DAT_BYTES[list(b"0123456789-+ \t\r\n")] = True
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\r\n")] = True


def _qrange(bits: int, signed: bool):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _fast_text(data: bytes, fmt: str, bits: int, signed: bool, count: int):
    """Vectorised parse of a plain text vector file (decimal with any white space, or hex
    with fixed-width lines, LF or CRLF), or None when the file needs the careful parser
    (comments, @addresses, bad tokens, wrong count, out-of-range values: its errors name
    the line)."""
    if count == 0:
        return None
    b = np.frombuffer(data, dtype=np.uint8)
    lo, hi = _qrange(bits, signed)
    if fmt == "dat":
        if not _DAT_BYTES[b].all():
            return None
        sp = _SPACE[b]
        starts = np.count_nonzero(~sp[1:] & sp[:-1]) + (0 if sp.size == 0 or sp[0] else 1)
        if starts != count:
            return None
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                v = np.fromstring(data, dtype=np.int64, sep=" ")
            except (ValueError, DeprecationWarning, RuntimeWarning):
                return None
        if v.size != count or np.any(v < lo) or np.any(v > hi):
            return None
        return v
    if b"\r" in data:
        b = b[b != ord("\r")]
    if b.size % count:
        return None
    k = b.size // count - 1
    if not 1 <= k <= 16:
        return None
    m = b.reshape(count, k + 1)
    if not np.all(m[:, k] == ord("\n")):
        return None
    val = _NIBBLE[m[:, :k]]
    if np.any(val == 255) or (k == 16 and np.any(val[:, 0] >= 8)):
        return None
    u = np.zeros(count, dtype=np.int64)
    for j in range(k):
        u = (u << 4) | val[:, j].astype(np.int64)
    if np.any(u >= (1 << bits)):
        return None
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u


def _one_line(exc: BaseException, limit: int = 200) -> str:
    return " ".join(str(exc).split())[:limit] or type(exc).__name__


def _check_npy(p: str, count: int) -> None:
    """Validate an ``.npy`` header before numpy reads the data: the magic, an integer dtype,
    ``count`` values and enough bytes for them (a header can declare any shape: numpy
    would try to allocate it; an ``.npz`` archive would come back as a lazy zip reader)."""
    require_regular_file(p, GoldenError)
    try:
        with open(p, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            try:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise GoldenError(f"{p}: .npy format version {version[0]}.{version[1]} is not "
                                      f"supported (1.0 or 2.0)")
            except GoldenError:
                raise
            except Exception as exc:  # noqa: BLE001 - numpy's header parser raises ValueError,
                # EOFError, tokenize.TokenError ("{"), ... for damaged headers
                raise GoldenError(f"{p}: not a readable .npy file ({_one_line(exc)})") from None
            data_bytes = size - fh.tell()
    except FileNotFoundError:
        raise GoldenError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise GoldenError(f"{p}: is a directory") from None
    except OSError as exc:
        raise GoldenError(f"{p}: cannot read: {exc.strerror or exc}") from None
    if dtype.kind not in "iu" or dtype.hasobject:
        raise GoldenError(f"{p}: dtype {dtype} is not an integer type")
    n = 1
    for d in shape:
        n *= d
    if n != count or any(d < 0 for d in shape):
        raise GoldenError(f"{p}: holds {n:,} values (shape {str(shape)[:60]}), expected {count:,}")
    if data_bytes < n * dtype.itemsize:
        raise GoldenError(f"{p}: truncated: {data_bytes:,} data bytes, {n * dtype.itemsize:,} needed")


def read(path: PathLike, fmt: str, bits: int, signed: bool, count: int) -> np.ndarray:
    """Read ``count`` values (int64, 1-D) of a ``bits``-wide (signed) stage.

    Errors name the file and line: a value that is not a number, does not fit the width,
    or a file with too few or too many values.
    """
    p = os.fspath(path)
    if fmt == "npy":
        _check_npy(p, count)
        try:
            arr = np.load(p, allow_pickle=False)
        except FileNotFoundError:
            raise GoldenError(f"{p}: file not found") from None
        except (ValueError, OSError, EOFError) as exc:
            raise GoldenError(f"{p}: not a readable .npy file ({_one_line(exc)})") from None
        if arr.dtype.kind not in "iu":
            raise GoldenError(f"{p}: dtype {arr.dtype} is not an integer type")
        if arr.size != count:
            raise GoldenError(f"{p}: holds {arr.size:,} values, expected {count:,}")
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise GoldenError(f"{p}: value {int(arr.max())} does not fit {bits} "
                              f"{'signed' if signed else 'unsigned'} bits")   # before int64 wraps it
        v = arr.reshape(-1).astype(np.int64)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        bad = np.flatnonzero((v < lo) | (v > hi))
        if bad.size:
            raise GoldenError(f"{p}: value {v[bad[0]]} at index {bad[0]} does not fit {bits} "
                              f"{'signed' if signed else 'unsigned'} bits")
        return v
    if fmt not in ("hex", "dat"):
        raise GoldenError(f"unknown vector format {fmt!r}")
    data = _read_bytes(p)
    fast = _fast_text(data, fmt, bits, signed, count)
    if fast is not None:
        return fast
    # The careful parser: every token checked, errors name the line.
    tokens, lines = _clean_lines(p, data, fmt == "hex")
    out = np.empty(len(tokens), dtype=np.int64)
    for i, (tok, ln) in enumerate(zip(tokens, lines)):
        try:
            out[i] = int(tok, 16) if fmt == "hex" else int(tok, 10)
        except ValueError:
            raise GoldenError(f"{p}:{ln}: {_clip(tok)!r} is not a {'hex' if fmt == 'hex' else 'decimal'} "
                              f"number") from None
        except OverflowError:   # beyond int64, so beyond every width (<= 64 bits)
            raise GoldenError(f"{p}:{ln}: value {_clip(tok)} does not fit {bits} "
                              f"{'signed' if signed else 'unsigned'} bits") from None
    if len(tokens) != count:
        raise GoldenError(f"{p}: holds {len(tokens):,} values, expected {count:,}")
    if fmt == "hex":
        return _sign_check(p, out, bits, signed, lines)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    bad = np.flatnonzero((out < lo) | (out > hi))
    if bad.size:
        raise GoldenError(f"{p}:{lines[bad[0]]}: value {out[bad[0]]} does not fit {bits} "
                          f"{'signed' if signed else 'unsigned'} bits")
    return out


def _sign_check(path: str, u: np.ndarray, bits: int, signed: bool, lines) -> np.ndarray:
    bad = np.flatnonzero((u < 0) | (u >= (1 << bits)))
    if bad.size:
        where = f"{path}:{lines[bad[0]]}" if lines else f"{path} (line {bad[0] + 1})"
        raise GoldenError(f"{where}: hex value {int(u[bad[0]]):x} is wider than {bits} bits")
    if signed:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u
