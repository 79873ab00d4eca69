"""Shared settings, helpers and fixtures of the fuzz tests, tests/test_fuzz_*.py (one module per
reader: cfg, weights, model, image, golden, cli, unsafe).

Property-based fuzzing of every reader of untrusted input (issue 6).

Inputs come from anywhere: Darknet ``.cfg`` and ``.weights`` files, ``.mdfi`` model files,
images, and golden-vector directories for ``mdfi verify``.  For each reader the mutated
inputs of those modules must either be accepted (and then be usable: a network that builds has sane
shapes, a model that loads runs) or be refused with a typed :class:`mdfi.errors.MDFIError`
whose message is ONE line that names the file (and the line, for text files).  Nothing may
crash with another exception type, hang, or allocate absurd memory; nothing is unpickled
or evaluated.

The runs are deterministic (``derandomize=True``, no example database) and bounded so the
modules take about a minute on two cores.  ``MDFI_FUZZ_SCALE=10`` multiplies every example
count for a deeper local run.
"""

from __future__ import annotations

import io
import copy
import json
import os
import re
import struct
import time
import tracemalloc
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from PIL import Image

from mdfi.hw import golden
from mdfi.quant import modelfile
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.engine import FixedEngine
from mdfi.errors import LimitError, MDFIError, ModelFileError
from mdfi.cli.info import info_table
from mdfi.model import Model
from mdfi.darknet.network import Network
from mdfi.quant.quantize import quantize_network
from mdfi.darknet.weights import load_weights, random_weights

from conftest import DARKNET, skimage_image

# -- settings ------------------------------------------------------------------------------------
SCALE = float(os.environ.get("MDFI_FUZZ_SCALE", "1"))
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
           HealthCheck.function_scoped_fixture, HealthCheck.large_base_example]


def fuzz(n: int):
    """Deterministic, bounded Hypothesis settings: ``n`` examples (times $MDFI_FUZZ_SCALE)."""
    return settings(max_examples=max(1, round(n * SCALE)), derandomize=True, deadline=None,
                    database=None, suppress_health_check=_HEALTH, print_blob=False)


#: Peak traced Python/NumPy memory allowed while reading one input.
MEM_LIMIT = 500 << 20
#: Seconds allowed for reading one input (a hang shows up as a failure, not a stuck CI job).
TIME_LIMIT = 20.0
#: Longest acceptable error message (one line on a terminal, not a dump of the input).
MAX_MESSAGE = 1000

MINI_DIR = DARKNET / "mini-yolov3"
MINI_CFG = MINI_DIR / "mini-yolov3.cfg"
MINI_WEIGHTS = MINI_DIR / "mini-yolov3.weights"


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


_counter = iter(range(10 ** 9))


def fresh(work: Path, prefix: str) -> Path:
    """A new empty directory under ``work`` (one per Hypothesis example)."""
    d = work / f"{prefix}{next(_counter)}"
    d.mkdir()
    return d


def attempt(fn, *, trace: bool = True):
    """Run ``fn()``; return (result, exception).  Fails on slow calls or big allocations."""
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    result = exc = None
    try:
        result = fn()
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - SystemExit, RecursionError, MemoryError count too
        exc = e
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] if trace else 0
        if trace:
            tracemalloc.stop()
    assert seconds < TIME_LIMIT, f"took {seconds:.1f} s (hang?) -> {exc!r}"
    assert peak < MEM_LIMIT, f"peak traced memory {peak >> 20} MB -> {exc!r}"
    return result, exc


def note(label: str) -> None:
    """Count an outcome (``pytest --hypothesis-show-statistics`` lists them per test)."""
    try:
        event(label)
    except Exception:  # noqa: BLE001 - outside a Hypothesis test
        pass


def assert_user_error(exc: BaseException, path, allowed=MDFIError) -> str:
    """``exc`` is a typed MDFI error with a one-line message naming ``path``."""
    if not isinstance(exc, allowed):
        raise AssertionError(f"{type(exc).__name__} escaped instead of a typed MDFI error: {exc!r}") from exc
    msg = str(exc)
    note(f"{type(exc).__name__}: {re.sub(r'[0-9][0-9,.]*', 'N', msg.replace(os.fspath(path), 'FILE'))[:70]}")
    assert msg and len(msg.splitlines()) == 1 and "\n" not in msg and "\r" not in msg, \
        f"not a one-line message: {msg!r}"
    assert len(msg) <= MAX_MESSAGE, f"message of {len(msg)} characters: {msg[:200]!r}..."
    assert os.fspath(path) in msg, f"message does not name {path}: {msg!r}"
    if isinstance(exc, LimitError):
        assert re.search(r"\bMDFI_[A-Z_]+", msg), f"limit error does not name its variable: {msg!r}"
    return msg


# -- the mini-yolov3 weights (test_fuzz_weights, test_fuzz_cli) ------------------------------------
MINI_WEIGHT_BYTES = MINI_WEIGHTS.read_bytes()


# -- .mdfi model files, JSON mutations (test_fuzz_model, _cfg, _golden, _cli) -----------------------
_REGION_CFG = """[net]
width=32
height=32
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=relu

[reorg]
stride=2

[route]
layers=-1

[convolutional]
size=1
stride=1
pad=1
filters=14
activation=linear

[region]
anchors=1,1,2,2
classes=2
coords=4
num=2
softmax=1
"""


class _Blobs(dict):
    def __repr__(self) -> str:              # keeps Hypothesis' failure reports readable
        return f"<model files {sorted(self)}>"


@pytest.fixture(scope="session")
def model_files(tmp_path_factory):
    """Two small real model files: mini-yolov3 (at 32x32, same weights) and a [region] net
    (built once per session: the tests only read them)."""
    work = tmp_path_factory.mktemp("fuzz-models")
    out = _Blobs()
    text = MINI_CFG.read_text().replace("width=128", "width=32").replace("height=128", "height=32")
    net = Network(parse_cfg_text(text, "mini-yolov3.cfg"), "mini-yolov3.cfg", warn=False)
    load_weights(net, MINI_WEIGHTS)
    modelfile.save(quantize_network(net, cfg_text=text), work / "mini.mdfi")
    out["mini"] = (work / "mini.mdfi").read_bytes()
    net = Network(parse_cfg_text(_REGION_CFG, "region.cfg"), "region.cfg", warn=False)
    random_weights(net, seed=3)
    modelfile.save(quantize_network(net, cfg_text=_REGION_CFG, names=["a", "b"]), work / "region.mdfi")
    out["region"] = (work / "region.mdfi").read_bytes()
    return out


def split_model(blob: bytes):
    """(header dict, data bytes) of a model file, without validation."""
    _, _, hlen, _ = struct.unpack_from("<8sIII", blob)
    header = json.loads(blob[20:20 + hlen])
    return header, blob[(20 + hlen + 63) // 64 * 64:]


def join_model(header, data: bytes, *, fix_crc: bool = True) -> bytes:
    hb = json.dumps(header).encode()
    head = struct.pack("<8sIII", modelfile.MAGIC, 1, len(hb), zlib.crc32(hb) if fix_crc else 0) + hb
    head += b"\0" * ((len(head) + 63) // 64 * 64 - len(head))
    return head + data


def check_model_bytes(work: Path, blob: bytes):
    """Load: a model that runs on both engines, or a one-line ModelFileError naming the file."""
    path = fresh(work, "m") / "fuzz.mdfi"
    path.write_bytes(blob)
    qm, exc = attempt(lambda: modelfile.load(path))
    if exc is not None:
        assert_user_error(exc, path, (ModelFileError, LimitError))
        return exc

    note("accepted (runs on both engines)")

    def run():
        x = np.zeros(qm.input_shape, np.uint8)
        ref = qm.forward_ref(x)
        c = FixedEngine(qm, "c", 1).run(x)
        for a, b in zip(ref, c):
            np.testing.assert_array_equal(a, b)
        info_table(qm, file_bytes=len(blob))
        qm.describe()
    _, exc = attempt(run, trace=False)
    if exc is not None:
        raise AssertionError(f"{path}: loaded but does not run: {exc!r}") from exc
    return qm


NASTY_JSON = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 1, 2, 8, 16, 17, 40, 2 ** 31, 2 ** 40, 2 ** 63, 2 ** 64, 2 ** 70,
                     -2 ** 40, 10 ** 30, 1.5, -0.0, 8.0, 1e308, float("nan"), float("inf"), float("-inf"), "",
                     "8", "int8", "int16", "int32", "int64", "uint16", "object", "float32", "<i8", "half_up",
                     "truncate", "leaky", "linear", "convolutional", "yolo", "weights", "bias", "a\nb",
                     "x" * 300, [], [2 ** 40], [2 ** 70], [-1], [0], [1, 2, 3, 4, 5], [[1]], ["a"], {},
                     {"bits": 8}, {"bits": 8, "frac": 100}, {"bits": 99, "frac": 0},
                     {"bits": 8, "frac": 3, "signed": True}, {"bits": 16, "frac": -24}, {"a": 1}]),
    st.integers(), st.floats(), st.text(max_size=5),
    st.lists(st.integers(-2 ** 70, 2 ** 70), max_size=5))


def json_paths(obj, prefix=()):
    """Every path (tuple of keys/indices) to a node below ``obj``."""
    out = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        if k != "cfg":
            out += json_paths(v, prefix + (k,))
    return out


def mutate_json(obj, path, op, value):
    """Apply one structural mutation at ``path`` (in place).  ``value`` is copied: the
    strategy's sampled lists and dicts must not be changed by later mutations of the header
    (hypothesis would see the strategy itself change: FlakyStrategyDefinition)."""
    value = copy.deepcopy(value)
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    k = path[-1]
    target = parent[k]
    if op == "replace":
        parent[k] = value
    elif op == "delete":
        del parent[k]
    elif op == "wrap":
        parent[k] = [target]
    elif op == "stringify":
        parent[k] = json.dumps(target)
    elif op == "add_key" and isinstance(target, dict):
        target[str(value)[:10]] = value
    elif op == "append" and isinstance(target, list):
        target.append(target[-1] if target and not isinstance(value, (int, float)) else value)
    elif op == "pop" and isinstance(target, list) and target:
        target.pop()
    elif op == "scale" and isinstance(target, (int, float)) and not isinstance(target, bool):
        parent[k] = target * 1000003 if isinstance(value, bool) else -target - 1
    else:
        parent[k] = value


JSON_OPS = st.sampled_from(["replace", "delete", "wrap", "stringify", "add_key", "append", "pop", "scale"])


def _tensor(h, name):
    return next(t for t in h["tensors"] if t["name"] == name)


# Targeted header mutations (the CRC is recomputed, so the semantic checks are exercised).
TARGETED = {
    "huge shape": lambda h: _tensor(h, "layer000.weights").update(shape=[2 ** 40]),
    "huge shape 2^70": lambda h: _tensor(h, "layer000.weights").update(shape=[2 ** 70]),
    "shape wraps int64": lambda h: _tensor(h, "layer000.bias").update(shape=[2 ** 32, 2 ** 32], nbytes=0),
    "infinite shape": lambda h: _tensor(h, "layer000.bias").update(shape=[float("inf")]),
    "negative offset": lambda h: _tensor(h, "layer000.bias").update(offset=-64),
    "infinite offset": lambda h: _tensor(h, "layer000.bias").update(offset=float("inf")),
    "shape disagrees with cfg": lambda h: _tensor(h, "layer000.weights").update(shape=[16, 3, 9, 1]),
    "cfg disagrees with shapes": lambda h: h.update(cfg=h["cfg"].replace("filters=16", "filters=8", 1)),
    "wrong dtype string": lambda h: _tensor(h, "layer000.bias").update(dtype="float64"),
    "weights stored as int32": lambda h: _tensor(h, "layer000.weights").update(dtype="int32"),
    "object dtype": lambda h: _tensor(h, "layer000.bias").update(dtype="object"),
    "wbits out of range": lambda h: h["layers"][0].update(wbits=17),
    "out_fmt bits 40": lambda h: h["layers"][0].update(out_fmt={"bits": 40, "frac": 3, "signed": True}),
    "frac out of range": lambda h: h["layers"][0].update(out_fmt={"bits": 8, "frac": 1000}),
    "infinite frac": lambda h: h["layers"][0].update(in_fmt={"bits": 8, "frac": float("inf")}),
    "w_frac too short": lambda h: h["layers"][0].update(w_frac=[3]),
    "w_frac too long": lambda h: h["layers"][0].update(w_frac=h["layers"][0]["w_frac"] * 3),
    "w_frac huge": lambda h: h["layers"][0].update(w_frac=[2 ** 70] * len(h["layers"][0]["w_frac"])),
    "w_frac shifts out of range": lambda h: h["layers"][0].update(w_frac=[100] * len(h["layers"][0]["w_frac"])),
    "bias_clamped infinite": lambda h: h["layers"][0].update(bias_clamped=float("inf")),
    "out_fmt null": lambda h: h["layers"][0].update(out_fmt=None),
    "in_fmt null (yolo)": lambda h: h["layers"][20].update(in_fmt=None),
    "out_fmt null (shortcut)": lambda h: h["layers"][4].update(out_fmt=None),
    "extra layer": lambda h: h["layers"].append(dict(h["layers"][-1], index=len(h["layers"]))),
    "layers swapped": lambda h: h["layers"].insert(0, h["layers"].pop(1)),
    "options not a dict": lambda h: h.update(options="ab"),
    "names not strings": lambda h: h.update(names=[1, 2]),
    "cfg_name with newline": lambda h: h.update(cfg_name="a\nb.cfg", cfg=h["cfg"].replace("width=", "width=0#")),
    "model_name with newline": lambda h: h.update(model_name="evil\nname"),
    "header is a list": lambda h: h.clear(),
    "huge format_version": lambda h: h.update(format_version=["v" * 100] * 1000),
    "huge packed width": lambda h: _tensor(h, "layer000.weights").update(bits=[8] * 100000),
    "huge wbits": lambda h: h["layers"][0].update(wbits="w" * 100000),
    "tensor of no layer, odd name": lambda h: h["tensors"][0].update(layer=99, name="evil\nname"),
    "tensor name with newline": lambda h: _tensor(h, "layer000.bias").update(name="a\nb", nbytes=1),
    "shortcut formats wrong": lambda h: h["layers"][4].update(in_fmts=[{"bits": 8, "frac": 2}]),
    "route formats not objects": lambda h: h["layers"][12].update(in_fmts=[1, 2]),
    "yolo in_fmt width 16": lambda h: h["layers"][20].update(in_fmt={"bits": 16, "frac": 3}),
}


# -- images (test_fuzz_image, test_fuzz_cli) -----------------------------------------------------
def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_with_header(width: int, height: int, depth: int = 8, color: int = 2, idat: bytes = b"",
                    plte: bytes = None) -> bytes:
    """A PNG whose IHDR (valid CRC) declares any size; ``idat`` is the (possibly bogus) data."""
    out = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0))
    if plte is not None:
        out += _png_chunk(b"PLTE", plte)
    return out + _png_chunk(b"IDAT", idat or zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")


def _encode(mode: str, fmt: str, size=(23, 17), **kw) -> bytes:
    rng = np.random.default_rng(7)
    rgb = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    elif mode == "F":
        im = Image.fromarray(rng.random((size[1], size[0]), dtype=np.float32))
    elif mode == "P":
        im = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    else:
        im = rgb.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


IMAGE_KINDS = {
    "png-rgb": ("RGB", "PNG"), "png-rgba": ("RGBA", "PNG"), "png-l": ("L", "PNG"), "png-la": ("LA", "PNG"),
    "png-p": ("P", "PNG"), "png-16": ("I;16", "PNG"), "png-1": ("1", "PNG"),
    "jpeg-rgb": ("RGB", "JPEG"), "jpeg-l": ("L", "JPEG"), "jpeg-cmyk": ("CMYK", "JPEG"),
    "jpeg-progressive": ("RGB", "JPEG"), "gif-p": ("P", "GIF"), "bmp-rgb": ("RGB", "BMP"),
    "bmp-p": ("P", "BMP"), "tiff-rgb": ("RGB", "TIFF"), "tiff-cmyk": ("CMYK", "TIFF"),
    "tiff-16": ("I;16", "TIFF"), "tiff-f": ("F", "TIFF"), "tiff-lzw": ("RGB", "TIFF"),
    "webp": ("RGB", "WEBP"), "ppm": ("RGB", "PPM"), "tga": ("RGB", "TGA"), "ico": ("RGBA", "ICO"),
}


@lru_cache(maxsize=None)
def image_bytes(kind: str) -> bytes:
    mode, fmt = IMAGE_KINDS[kind]
    kw = {"progressive": True} if kind == "jpeg-progressive" else \
        {"compression": "tiff_lzw"} if kind == "tiff-lzw" else {}
    return _encode(mode, fmt, **kw)


# -- golden vectors (test_fuzz_golden, test_fuzz_cli) --------------------------------------------
@pytest.fixture(scope="session")
def golden_dir(tmp_path_factory):
    """A golden export of mini-yolov3 (once per session: the tests only read it)."""
    work = tmp_path_factory.mktemp("fuzz-golden")
    net = Network.from_cfg(MINI_CFG, warn=False)
    load_weights(net, MINI_WEIGHTS)
    qm = quantize_network(net, cfg_text=MINI_CFG.read_text())
    model = Model(qm.network, [f"c{i}" for i in range(80)], FixedEngine(qm, "c", 2), name="mini-yolov3")
    d = work / "golden"
    golden.export(model, skimage_image("astronaut.png"), str(d), layers=[0, 1, 2],
                  formats=["hex", "dat", "npy"], thresh=0.9)
    return d
