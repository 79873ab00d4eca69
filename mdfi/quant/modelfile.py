"""The ``.mdfi`` quantized-model file: JSON header + raw little-endian arrays.  No pickle.

Layout (all integers little-endian)::

    0   8 bytes  magic  89 4D 44 46 49 0D 0A 1A  ("\\x89MDFI\\r\\n\\x1a", PNG-style: catches
                                                 text-mode and truncation damage)
    8   u32      container version (1)
    12  u32      header length H
    16  u32      CRC-32 of the header bytes
    20  H bytes  header, UTF-8 JSON (see below)
    ... zero padding to a multiple of 64
    D   data: every tensor at D + offset (64-byte aligned), nbytes long

Header: ``format`` ("mdfi-quantized-model"), ``format_version``, ``mdfi_version``,
``model_name``, ``cfg_name``, ``cfg`` (the Darknet cfg text, so the file is self-contained),
``names`` (class names), ``options`` (widths, rounding, methods), ``input_fmt``, ``layers``
(per layer: kind and formats, see ``QLayer.meta``) and ``tensors``: a list of
``{name, layer, key, dtype, shape, bits, offset, nbytes, crc32}``.

Weights are bit-packed at their declared width (``bits``): two's complement values, least
significant bit first, consecutive values back to back (so 8- and 16-bit weights are
plain little-endian int8/int16, and 4-bit weights take half a byte each).  Other arrays
(biases, lookup tables) are stored as their dtype.

Loading parses only JSON and raw numbers, validates every field, offset, size and checksum
against the cfg before building anything, and reports problems as
:class:`~mdfi.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .. import __version__
from .. import fixedpoint as fp
from ..darknet.cfgfile import MAX_CFG_BYTES, parse_cfg_text
from ..errors import CfgError, LimitError, MDFIError, ModelFileError
from ..layers import QREGISTRY
from ..limits import Limit
from ..darknet.network import Network
from .qmodel import QuantizedModel

PathLike = Union[str, "os.PathLike[str]"]

MAGIC = b"\x89MDFI\r\n\x1a"
CONTAINER_VERSION = 1
FORMAT = "mdfi-quantized-model"
FORMAT_VERSION = 1
#: Files whose activation formats carry zero points (docs/fixed-point.md 1.1) are version 2,
#: so that an MDFI before round 13, which would ignore the zero points, refuses them.
FORMAT_VERSION_ZERO = 2
#: Files with a head's logit gain (docs/fixed-point.md 7) are version 3: an MDFI before round 18
#: would send x and y through the gained table.
FORMAT_VERSION_GAIN = 3
READ_VERSIONS = (FORMAT_VERSION, FORMAT_VERSION_ZERO, FORMAT_VERSION_GAIN)
ALIGN = 64
PREFIX = struct.Struct("<8sIII")

#: dtypes a tensor may declare (anything else is refused).
DTYPES = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64,
          "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32}

MAX_MODEL_BYTES = Limit("model file size", "MDFI_MAX_MODEL_MB", 4096, "MB")
MAX_HEADER_BYTES = 64 << 20


# -- bit packing ------------------------------------------------------------------------------------
def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Two's complement ``bits``-wide values, LSB first, back to back."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if bits == 8:
        return v.astype("<i1").tobytes()
    if bits == 16:
        return v.astype("<i2").tobytes()
    u = (v & ((1 << bits) - 1)).astype(np.uint32)
    planes = ((u[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(planes.reshape(-1), bitorder="little").tobytes()


def unpack_bits(buf: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits` (int64 values)."""
    if bits == 8:
        return np.frombuffer(buf, dtype="<i1", count=count).astype(np.int64)
    if bits == 16:
        return np.frombuffer(buf, dtype="<i2", count=count).astype(np.int64)
    planes = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little", count=count * bits)
    u = planes.reshape(count, bits).astype(np.int64) @ (np.int64(1) << np.arange(bits, dtype=np.int64))
    return np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)


def packed_nbytes(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


# -- save -------------------------------------------------------------------------------------------
def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def save(model: QuantizedModel, path: PathLike, *, model_name: Optional[str] = None,
         source: Optional[dict] = None) -> int:
    """Write ``model`` to ``path`` atomically.  Returns the file size in bytes.

    ``source``: what the model was quantized from (digests of cfg, weights, calibration and
    the options; :func:`mdfi.quant.zoo_cache.cache_source`), stored in the header so that the cache
    can check a file belongs to its inputs."""
    spath = os.fspath(path)
    blob = dumps(model, model_name=model_name, source=source, name=spath)
    tmp = f"{spath}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, spath)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise ModelFileError(f"{spath}: cannot write: {exc.strerror or exc}") from None
    return len(blob)


def dumps(model: QuantizedModel, *, model_name: Optional[str] = None, source: Optional[dict] = None,
          name: str = "<bytes>") -> bytes:
    """The bytes :func:`save` writes (``name`` appears in error messages only)."""
    spath = name
    tensors: List[dict] = []
    blobs: List[bytes] = []
    offset = 0
    for ql in model.layers:
        for key, arr in ql.arrays().items():
            arr = np.asarray(arr)
            if key == "weights":
                bits = ql.wbits
                data = pack_bits(arr, bits)
                dtype = str(fp.storage_dtype(bits))
            else:
                bits = None
                dtype = str(arr.dtype)
                if dtype not in DTYPES:
                    raise ModelFileError(f"{spath}: cannot store dtype {dtype} of layer {ql.index} {key}")
                data = arr.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
            tensors.append({"name": f"layer{ql.index:03d}.{key}", "layer": ql.index, "key": key,
                            "dtype": dtype, "shape": list(arr.shape), "bits": bits,
                            "offset": offset, "nbytes": len(data), "crc32": zlib.crc32(data)})
            pad = _align(len(data)) - len(data)
            blobs.append(data + b"\0" * pad)
            offset += len(data) + pad
    header = {
        "format": FORMAT, "mdfi_version": __version__,
        "format_version": _format_version(model),
        "model_name": model_name or model.name, "cfg_name": model.cfg_name, "cfg": model.cfg_text,
        "names": model.names, "options": model.options, "input_fmt": model.input_fmt.to_dict(),
        "layers": [dict(index=ql.index, **ql.meta()) for ql in model.layers],
        "tensors": tensors, "data_bytes": offset,
    }
    if source is not None:
        header["source"] = source
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    prefix = PREFIX.pack(MAGIC, CONTAINER_VERSION, len(hbytes), zlib.crc32(hbytes))
    head = prefix + hbytes
    head += b"\0" * (_align(len(head)) - len(head))
    return b"".join([head, *blobs])


def _format_version(model) -> int:
    """The oldest format version that describes ``model`` (older readers must refuse what
    they would misread)."""
    if any(getattr(ql, "logit_gain", 1.0) != 1.0 for ql in model.layers):
        return FORMAT_VERSION_GAIN
    if any((f is not None and f.zero) for ql in model.layers for f in (ql.out_fmt, getattr(ql, "in_fmt", None))):
        return FORMAT_VERSION_ZERO
    return FORMAT_VERSION


# -- load -------------------------------------------------------------------------------------------
def _fail(path: str, msg: str) -> ModelFileError:
    return ModelFileError(f"{path}: {msg}")


def read_bytes(path: PathLike) -> bytes:
    """The bytes of a ``.mdfi`` file (regular files only, size-capped); nothing is parsed."""
    from ..inputs import as_path, read_bytes as read_input
    spath = as_path(path, "model file")
    return read_input(spath, ModelFileError, what="MDFI model file", max_bytes=MAX_MODEL_BYTES.value << 20,
                      limit_hint=f"; set {MAX_MODEL_BYTES.env} (MB) to raise it")


def read_header(path: PathLike) -> Tuple[dict, bytes]:
    """Validate the container and return (header dict, data bytes)."""
    from ..inputs import as_path
    spath = as_path(path, "model file")
    return _parse_container(read_bytes(spath), spath)


def _parse_container(blob: bytes, spath: str) -> Tuple[dict, bytes]:
    MAX_MODEL_BYTES.check(len(blob) >> 20, f"{spath}: model file")
    if len(blob) < PREFIX.size:
        raise _fail(spath, f"file is {len(blob)} bytes, too short for an MDFI model")
    magic, version, hlen, hcrc = PREFIX.unpack_from(blob)
    if magic != MAGIC:
        raise _fail(spath, "not an MDFI model file (bad magic bytes)")
    if version != CONTAINER_VERSION:
        raise _fail(spath, f"container version {version} is not supported (this MDFI reads {CONTAINER_VERSION})")
    if hlen > MAX_HEADER_BYTES or PREFIX.size + hlen > len(blob):
        raise _fail(spath, f"header length {hlen} exceeds the file ({len(blob)} bytes): truncated?")
    hbytes = blob[PREFIX.size:PREFIX.size + hlen]
    if zlib.crc32(hbytes) != hcrc:
        raise _fail(spath, "header checksum mismatch (file corrupted)")
    from ..safejson import loads
    header = loads(hbytes, f"{spath}: header", error=ModelFileError, allow_constants=True)
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _fail(spath, f"header does not describe an {FORMAT}")
    if header.get("format_version") not in READ_VERSIONS:
        raise _fail(spath, f"format version {_text(repr(header.get('format_version')))} is not supported "
                           f"(this MDFI reads {' and '.join(map(str, READ_VERSIONS))})")
    data = blob[_align(PREFIX.size + hlen):]
    return header, data


def _text(value, limit: int = 60) -> str:
    """A string from the header as it may appear in a one-line message."""
    s = str(value)
    return s if s.isprintable() and len(s) <= limit else repr(s[:limit])


def _check_options(spath: str, options: dict) -> None:
    """The header's ``options`` are a record of how the model was made (no integer depends on
    them), but reports read some of them: those must have the types the quantizer writes."""
    for key in ("wbits", "abits"):
        v = options.get(key)
        if v is not None and not (type(v) is int and 1 <= v <= 32):
            raise _fail(spath, f"options: {key}={_text(repr(v))} is not a bit width")
    for key in ("layer_wbits", "layer_abits"):
        v = options.get(key)
        if v is None:
            continue
        ok = isinstance(v, dict) and len(v) <= 10_000
        for k, b in (v.items() if ok else ()):
            ok = ok and isinstance(k, str) and k.isdigit() and len(k) <= 9 and type(b) is int and 1 <= b <= 32
        if not ok:
            raise _fail(spath, f"options: {key} is not a map of layer index to bit width")
    ao = options.get("act_options")
    if ao is not None and not (isinstance(ao, dict) and len(ao) <= 8 and all(
            isinstance(k, str) and k.isidentifier() and len(k) <= 40 and type(v) in (int, float)
            for k, v in ao.items())):
        raise _fail(spath, "options: act_options is not a map of option name to number")
    for key in ("align", "actequal", "search"):  # rescaling and format-search summaries (mdfi info prints them)
        v = options.get(key)
        if v is None:
            continue
        ok = isinstance(v, dict) and len(v) <= 32
        for k, x in (v.items() if ok else ()):
            ok = ok and isinstance(k, str) and k.isidentifier() and len(k) <= 40 and (
                (type(x) in (int, float) and math.isfinite(x))
                or (isinstance(x, str) and x.isprintable() and len(x) <= 200)
                or (isinstance(x, list) and len(x) <= 10_000 and all(type(i) is int for i in x)))
        if not ok:
            raise _fail(spath, f"options: {key} is not a summary of names to numbers, texts or layer lists")
    gc = options.get("gain_correction")
    if gc is not None:
        from .gaincorr import GAIN_CORRECTIONS
        if gc not in GAIN_CORRECTIONS:
            raise _fail(spath, f"options: gain_correction {_text(repr(gc))} is not one of {', '.join(GAIN_CORRECTIONS)}")
    for key in ("rounding", "formats_source", "darknet_reason"):
        v = options.get(key)
        if v is not None and not (isinstance(v, str) and v.isprintable() and len(v) <= 4096):
            raise _fail(spath, f"options: {key} {_text(repr(v))} is not a printable text")


def _tensor(spath: str, t: dict, data: bytes) -> np.ndarray:
    try:
        name, dtype, shape = _text(t["name"]), str(t["dtype"]), [int(s) for s in t["shape"]]
        offset, nbytes, crc = int(t["offset"]), int(t["nbytes"]), int(t["crc32"])
        bits = t.get("bits")
    except (KeyError, TypeError, ValueError, OverflowError):   # OverflowError: int(Infinity)
        raise _fail(spath, f"malformed tensor entry {str(t)[:80]}") from None
    if dtype not in DTYPES:
        raise _fail(spath, f"tensor {name}: dtype {_text(dtype)} not allowed")
    if any(s < 0 for s in shape) or len(shape) > 4 or any(s >= 1 << 40 for s in shape):
        raise _fail(spath, f"tensor {name}: invalid shape {str(shape)[:80]}")
    count = 1
    for s in shape:              # Python integers: np.prod would wrap around (or overflow)
        count *= s
    if bits is not None:
        if not isinstance(bits, int) or not fp.MIN_BITS <= bits <= fp.MAX_BITS:
            raise _fail(spath, f"tensor {name}: packed width {_text(repr(bits))} not in 2..16")
        if np.dtype(DTYPES[dtype]) != fp.storage_dtype(bits):
            raise _fail(spath, f"tensor {name}: dtype {dtype} does not hold {bits}-bit values "
                               f"(expected {fp.storage_dtype(bits)})")
        expect = packed_nbytes(count, bits)
    else:
        expect = count * np.dtype(DTYPES[dtype]).itemsize
    if nbytes != expect:
        raise _fail(spath, f"tensor {name}: {nbytes} bytes stored but shape {shape} needs {expect}")
    if offset < 0 or offset % ALIGN or offset + nbytes > len(data):
        raise _fail(spath, f"tensor {name}: bytes {offset}..{offset + nbytes} lie outside the data "
                           f"({len(data)} bytes): truncated?")
    raw = data[offset:offset + nbytes]
    if zlib.crc32(raw) != crc:
        raise _fail(spath, f"tensor {name}: checksum mismatch (file corrupted)")
    if bits is not None:
        arr = unpack_bits(raw, bits, count).astype(DTYPES[dtype])
    else:
        arr = np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"), count=count)
        arr = arr.astype(DTYPES[dtype])
    return arr.reshape(shape)


def load(path: PathLike) -> QuantizedModel:
    """Read a ``.mdfi`` file (never executes code from it)."""
    from ..inputs import as_path
    spath = as_path(path, "model file")
    return loads(read_bytes(spath), spath)


def loads(blob: bytes, name: str = "<bytes>") -> QuantizedModel:
    """A model from the bytes of a ``.mdfi`` file (e.g. sent to a worker); ``name`` stands
    for the file in messages.  The same checks as :func:`load`."""
    spath = str(name)
    header, data = _parse_container(bytes(blob), spath)
    try:
        cfg_text = str(header["cfg"])
        metas = header["layers"]
        tensors = header["tensors"]
        options = header.get("options") or {}
        names = header.get("names")
        if not isinstance(metas, list) or not isinstance(tensors, list) or not isinstance(options, dict):
            raise TypeError
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise TypeError
        if names is not None:
            from ..zoo import clean_label
            names = [clean_label(n) for n in names]     # printed and drawn: no escape sequences
    except (KeyError, TypeError):
        raise _fail(spath, "header lacks cfg/layers/tensors or has wrong types") from None
    if len(cfg_text) > MAX_CFG_BYTES:
        raise _fail(spath, f"embedded cfg of {len(cfg_text):,} characters is larger than a Darknet cfg can be "
                           f"({MAX_CFG_BYTES:,} bytes)")
    cfg_name = str(header.get("cfg_name", "model.cfg"))
    model_name = str(header.get("model_name", ""))
    for what, value in (("cfg_name", cfg_name), ("model_name", model_name)):
        if not value.isprintable() or len(value) > 255:     # both appear in messages and reports
            raise _fail(spath, f"{what} {_text(value)} is not a printable name")
    _check_options(spath, options)
    darknet = options.get("darknet")
    if darknet is not None and darknet not in ("pjreddie", "alexeyab"):
        raise _fail(spath, f"options: darknet={_text(repr(darknet))} is not pjreddie or alexeyab")
    try:
        network = Network(parse_cfg_text(cfg_text, f"{spath}[{cfg_name}]"), f"{spath}[{cfg_name}]", warn=False,
                          darknet=darknet)
    except (CfgError, LimitError) as exc:
        raise _fail(spath, f"embedded cfg: {exc}") from None
    if len(metas) != len(network.layers):
        raise _fail(spath, f"header describes {len(metas)} layers, its cfg has {len(network.layers)}")
    by_layer: Dict[int, Dict[str, np.ndarray]] = {}
    for t in tensors:
        if not isinstance(t, dict):
            raise _fail(spath, "malformed tensor table")
        arr = _tensor(spath, t, data)
        layer_i = t.get("layer")
        if not isinstance(layer_i, int) or not 0 <= layer_i < len(network.layers):
            raise _fail(spath, f"tensor {_text(t.get('name'))}: layer {_text(repr(layer_i))} does not exist")
        by_layer.setdefault(layer_i, {})[str(t.get("key"))] = arr
    qlayers = []
    for layer, meta in zip(network.layers, metas):
        if not isinstance(meta, dict) or meta.get("kind") != layer.kind or meta.get("index") != layer.index:
            raise _fail(spath, f"layer {layer.index}: header says {str(meta)[:60]!r}, cfg says {layer.kind}")
        try:
            fp.rounding_code(meta.get("rounding"))
            ql = QREGISTRY[layer.kind].from_saved(layer, meta, by_layer.get(layer.index, {}))
        except (MDFIError, KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            detail = " ".join(detail.split())[:300]         # one line, even for values from the header
            raise _fail(spath, f"layer {layer.index} ({layer.kind}): {detail}") from None
        qlayers.append(ql)
    _check_chain(spath, network, qlayers)
    model = QuantizedModel(network, cfg_text, qlayers, options, names)
    model.name = model_name or model.name
    model.cfg_name = cfg_name
    source = header.get("source")
    model.source = source if isinstance(source, dict) else None
    return model


def _check_chain(spath: str, network: Network, qlayers) -> None:
    """Every layer's declared input formats must be its producers' output formats, and the
    format-preserving layers must output their input format."""
    fmts = {-1: fp.INPUT_FORMAT}
    for ql in qlayers:
        ins = [fmts.get(i) for i in ql.inputs]
        if ql.kind in ("maxpool", "upsample", "reorg"):
            declared, ok = ins[:1], ql.out_fmt == ins[0]
        elif ql.kind in ("route", "shortcut", "scale_channels"):
            declared = list(ql.in_fmts)
            ok = declared == ins
        else:
            declared = [ql.in_fmt]
            ok = declared == ins
        if not ok:
            raise _fail(spath, f"layer {ql.index} ({ql.kind}): formats {declared} -> {ql.out_fmt} do not "
                               f"chain with its input layer(s) {ql.inputs}, which produce {ins}")
        if ql.out_fmt is None and ql.kind not in ("yolo", "region"):
            raise _fail(spath, f"layer {ql.index}: no output format")
        fmts[ql.index] = ql.out_fmt


__all__ = ["save", "dumps", "load", "loads", "read_bytes", "read_header", "pack_bits", "unpack_bits", "MAGIC"]
