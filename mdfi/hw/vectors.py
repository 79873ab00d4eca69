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

from ..errors import GoldenError
from ..limits import require_regular_file

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


def encode(values: np.ndarray, fmt: str, bits: int, signed: bool) -> bytes:
    """The bytes of a vector file of ``values`` (any shape; flattened row-major)."""
    if fmt == "hex":
        return to_hex_bytes(values, bits)
    if fmt == "dat":
        return to_dat_bytes(values)
    if fmt == "npy":
        import io
        buf = io.BytesIO()
        dt = npy_dtype(bits, signed)
        np.save(buf, np.asarray(values).astype(dt).astype(dt.newbyteorder("<")), allow_pickle=False)
        return buf.getvalue()
    raise GoldenError(f"unknown vector format {fmt!r} (expected one of {', '.join(FORMATS)})")


def size_bound(count: int, fmt: str, bits: int, signed: bool) -> int:
    """Bytes of a file of ``count`` values: exact for ``hex`` and ``npy`` (header at most
    128 bytes), an upper bound for ``dat`` (every value as wide as the widest)."""
    if fmt == "hex":
        return count * (hex_digits(bits) + 1)
    if fmt == "npy":
        return count * npy_dtype(bits, signed).itemsize + 128
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return count * (max(len(str(lo)), len(str(hi))) + 1)


def write(path: PathLike, values: np.ndarray, fmt: str, bits: int, signed: bool) -> None:
    """Write ``values`` (any shape; flattened row-major) in format ``fmt``."""
    data = encode(values, fmt, bits, signed)
    with open(os.fspath(path), "wb") as fh:
        fh.write(data)


# -- reading --------------------------------------------------------------------------------------------
#: Text files are read in pieces of this many bytes (cut at line ends), so memory stays
#: about ``8 * count`` bytes for the values plus a few pieces, whatever the file holds.
CHUNK_BYTES = 4 << 20
#: A line longer than this is not a line of a vector file.
MAX_LINE_BYTES = 1 << 20
#: A text vector file of ``count`` values may hold at most this many bytes per value
#: (plus :data:`SLACK_BYTES`): room for comments and ``@address`` markers, not for a file
#: of another tensor.  Checked before anything is read.
MAX_BYTES_PER_VALUE = 128
SLACK_BYTES = 1 << 20


def max_text_bytes(count: int) -> int:
    """Largest ``.hex``/``.dat`` file accepted for ``count`` values (docs/golden-format.md)."""
    return min(MAX_VECTOR_BYTES, count * MAX_BYTES_PER_VALUE + SLACK_BYTES)


def _open_text(path: str, count: int):
    require_regular_file(path, GoldenError)
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise GoldenError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise GoldenError(f"{path}: is a directory") from None
    except OSError as exc:
        raise GoldenError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        fh.close()
        raise GoldenError(f"{path}: cannot read: {exc.strerror or exc}") from None
    limit = max_text_bytes(count)
    if size > limit:
        fh.close()
        raise GoldenError(f"{path}: {size:,} bytes is too large for {count:,} values (a text vector file of "
                          f"{count:,} values may hold at most {limit:,} bytes)")
    return fh


_LINE_END = re.compile(r"\r\n|\r|\n")


def _clip(token: str, limit: int = 40) -> str:
    """A token as it may appear in an error message (a bad "number" can be megabytes long)."""
    return token if len(token) <= limit else token[:limit] + "..."


_DAT_BYTES = np.zeros(256, dtype=bool)
_DAT_BYTES[list(b"0123456789-+ \t\r\n")] = True
_SPACE = np.zeros(256, dtype=bool)
_SPACE[list(b" \t\r\n")] = True
_HEX_TOKEN = re.compile(r"[0-9a-fA-F]+")
_DEC_TOKEN = re.compile(r"[+-]?[0-9]+")


def _qrange(bits: int, signed: bool):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def _fast_piece(piece: bytes, fmt: str, bits: int, signed: bool):
    """Vectorised parse of a piece of plain text lines (decimal with any white space, or hex
    with fixed-width lines, LF or CRLF), or None when the piece needs the careful parser
    (comments, @addresses, bad tokens, out-of-range values: its errors name the line)."""
    b = np.frombuffer(piece, dtype=np.uint8)
    if b.size == 0:
        return None
    lo, hi = _qrange(bits, signed)
    if fmt == "dat":
        if not _DAT_BYTES[b].all():
            return None
        sp = _SPACE[b]
        starts = np.count_nonzero(~sp[1:] & sp[:-1]) + (0 if sp[0] else 1)
        if starts == 0:
            return None
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                v = np.fromstring(piece, dtype=np.int64, sep=" ")
            except (ValueError, DeprecationWarning, RuntimeWarning):
                return None
        if v.size != starts or np.any(v < lo) or np.any(v > hi):
            return None
        return v
    if b[-1] != ord("\n"):
        return None
    if b"\r" in piece:
        b = b[b != ord("\r")]
    nl = np.flatnonzero(b == ord("\n"))
    k = int(nl[0])
    if not 1 <= k <= 16 or b.size % (k + 1):
        return None
    count = b.size // (k + 1)
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


class _Sink:
    """Where parsed values go: a preallocated array of ``count`` values, written at a
    position that ``@address`` markers may move (sparse dumps)."""

    def __init__(self, path: str, count: int, sparse: bool):
        self.path, self.count, self.sparse = path, count, sparse
        self.out = np.zeros(count, dtype=np.int64)
        self.present: "np.ndarray | None" = None     # allocated at the first jump
        self.pos = 0
        self.values = 0

    def too_many(self, where: str):
        return GoldenError(f"{where}: more than the {self.count:,} values the stage holds")

    def put(self, v: np.ndarray, where: str) -> None:
        n = v.size
        if self.pos + n > self.count:
            raise self.too_many(where)
        if self.present is not None:
            seg = self.present[self.pos:self.pos + n]
            if seg.any():
                dup = self.pos + int(np.flatnonzero(seg)[0])
                raise GoldenError(f"{where}: address {dup:x} (value {dup + 1:,}) is written twice")
            seg[:] = True
        self.out[self.pos:self.pos + n] = v
        self.pos += n
        self.values += n

    def put1(self, v: int, where: str) -> None:
        pos = self.pos
        if pos >= self.count:
            raise self.too_many(where)
        if self.present is not None:
            if self.present[pos]:
                raise GoldenError(f"{where}: address {pos:x} (value {pos + 1:,}) is written twice")
            self.present[pos] = True
        self.out[pos] = v
        self.pos = pos + 1
        self.values += 1

    def jump(self, addr: int, where: str, tok: str) -> None:
        if addr == self.pos:
            return
        if not self.sparse:
            raise GoldenError(f"{where}: address @{_clip(tok[1:])} is not sequential (expected @{self.pos:x}); "
                              f"only sequential files are supported here")
        if addr >= self.count:
            raise GoldenError(f"{where}: address @{_clip(tok[1:])} is beyond the {self.count:,} values of the stage")
        if self.present is None:
            self.present = np.zeros(self.count, dtype=bool)
            self.present[:self.pos] = True
        self.pos = addr


def _careful_piece(sink: _Sink, text_bytes: bytes, first_line: int, fmt: str, bits: int, signed: bool) -> None:
    """Token by token, errors naming the line (comments, blank lines, @addresses)."""
    p = sink.path
    try:
        text = text_bytes.decode("ascii")
    except UnicodeDecodeError as exc:
        line = first_line + len(_LINE_END.findall(text_bytes[: exc.start].decode("ascii", "replace")))
        raise GoldenError(f"{p}:{line}: not an ASCII text vector file") from None
    lo, hi = _qrange(bits, signed)
    hexmode = fmt == "hex"
    tok_re = _HEX_TOKEN if hexmode else _DEC_TOKEN
    for k, raw in enumerate(_LINE_END.split(text)):   # not splitlines(): \f, \x1c.. are no line ends
        cut = raw.find("//")
        body = (raw[:cut] if cut >= 0 else raw).split()
        if not body:
            continue
        where = f"{p}:{first_line + k}"
        for tok in body:
            if hexmode and tok.startswith("@"):
                if not _HEX_TOKEN.fullmatch(tok[1:]):
                    raise GoldenError(f"{where}: bad address marker {_clip(tok)!r}")
                sink.jump(int(tok[1:], 16), where, tok)
                continue
            if not tok_re.fullmatch(tok):
                raise GoldenError(f"{where}: {_clip(tok)!r} is not a {'hex' if hexmode else 'decimal'} number")
            if len(tok) > 40:
                raise GoldenError(f"{where}: value {_clip(tok)} does not fit {bits} "
                                  f"{'signed' if signed else 'unsigned'} bits")
            v = int(tok, 16 if hexmode else 10)
            if hexmode:
                if v >= (1 << bits):
                    raise GoldenError(f"{where}: hex value {_clip(format(v, 'x'))} is wider than {bits} bits")
                if signed and v >= (1 << (bits - 1)):
                    v -= 1 << bits
            elif not lo <= v <= hi:
                raise GoldenError(f"{where}: value {_clip(tok)} does not fit {bits} "
                                  f"{'signed' if signed else 'unsigned'} bits")
            sink.put1(v, where)


def _read_text(path: str, fmt: str, bits: int, signed: bool, count: int, sparse: bool) -> _Sink:
    sink = _Sink(path, count, sparse)
    line = 1
    carry = b""
    with _open_text(path, count) as fh:
        while True:
            try:
                block = fh.read(CHUNK_BYTES)
            except OSError as exc:
                raise GoldenError(f"{path}: cannot read: {exc.strerror or exc}") from None
            data = carry + block if carry else block
            if block:
                cut = data.rfind(b"\n")
                if cut < 0:
                    cut = data.rfind(b"\r", 0, len(data) - 1)     # old Mac line ends; never split CR LF
                if cut < 0:
                    if len(data) > MAX_LINE_BYTES:
                        raise GoldenError(f"{path}:{line}: line longer than {MAX_LINE_BYTES:,} bytes: not a "
                                          f"vector file")
                    carry = data
                    continue
                piece, carry = data[:cut + 1], data[cut + 1:]
            else:
                piece, carry = data, b""
                if piece and piece[-1:] not in (b"\n", b"\r"):
                    piece += b"\n"                       # the last line without its line end
            if piece:
                fast = _fast_piece(piece, fmt, bits, signed)
                if fast is not None:
                    sink.put(fast, f"{path}:{line}")
                else:
                    _careful_piece(sink, piece, line, fmt, bits, signed)
                line += piece.count(b"\n") + len(re.findall(rb"\r(?!\n)", piece))
            if not block:
                break
    return sink


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


def _read_npy(p: str, bits: int, signed: bool, count: int) -> np.ndarray:
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
    lo, hi = _qrange(bits, signed)
    bad = np.flatnonzero((v < lo) | (v > hi))
    if bad.size:
        raise GoldenError(f"{p}: value {v[bad[0]]} at index {bad[0]} does not fit {bits} "
                          f"{'signed' if signed else 'unsigned'} bits")
    return v


def read(path: PathLike, fmt: str, bits: int, signed: bool, count: int) -> np.ndarray:
    """Read ``count`` values (int64, 1-D) of a ``bits``-wide (signed) stage.

    Errors name the file and line: a value that is not a number, does not fit the width,
    or a file with too few or too many values.  Text files are streamed in pieces (memory
    about ``8 * count`` bytes plus a few MB) after a size check against ``count``.
    """
    values, present = read_dut(path, fmt, bits, signed, count, sparse=False)
    return values


def read_dut(path: PathLike, fmt: str, bits: int, signed: bool, count: int, *, sparse: bool = True):
    """Like :func:`read`, for a device's dump: returns ``(values, present)``.

    ``present`` is None when the file holds every value; for a *sparse* ``.hex`` dump
    (``@address`` markers that jump, the ``$readmemh`` syntax) it is a boolean mask of the
    addresses the file gives (values elsewhere are 0).  An address written twice or
    beyond the stage is an error naming the line.
    """
    p = os.fspath(path)
    if fmt == "npy":
        return _read_npy(p, bits, signed, count), None
    if fmt not in ("hex", "dat"):
        raise GoldenError(f"unknown vector format {fmt!r}")
    sink = _read_text(p, fmt, bits, signed, count, sparse and fmt == "hex")
    if sink.present is None:
        if sink.values != count:
            raise GoldenError(f"{p}: holds {sink.values:,} values, expected {count:,}")
        return sink.out, None
    if sink.values == count:
        return sink.out, None
    return sink.out, sink.present


