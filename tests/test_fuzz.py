"""Property-based fuzzing of every reader of untrusted input (issue 6).

Inputs come from anywhere: Darknet ``.cfg`` and ``.weights`` files, ``.mdfi`` model files,
images, and golden-vector directories for ``mdfi verify``.  For each reader the mutated
inputs below must either be accepted (and then be usable: a network that builds has sane
shapes, a model that loads runs) or be refused with a typed :class:`mdfi.errors.MDFIError`
whose message is ONE line that names the file (and the line, for text files).  Nothing may
crash with another exception type, hang, or allocate absurd memory; nothing is unpickled
or evaluated.

The runs are deterministic (``derandomize=True``, no example database) and bounded so the
module takes about a minute on two cores.  ``MDFI_FUZZ_SCALE=10`` multiplies every example
count for a deeper local run.
"""

from __future__ import annotations

import io
import copy
import json
import os
import pickle
import re
import shutil
import struct
import sys
import time
import tokenize
import tracemalloc
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from mdfi.hw import golden, vectors, verify
from mdfi.quant import modelfile
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.cli import main
from mdfi.engine import FixedEngine
from mdfi.errors import (CfgError, GoldenError, ImageError, LimitError, MDFIError, ModelFileError,
                         WeightsError)
from mdfi.image import load_image
from mdfi.cli.info import info_table
from mdfi.layers import DARKNET_ONLY, REGISTRY
from mdfi.limits import MAX_ACTIVATION_BYTES, MAX_DIM
from mdfi.model import Model
from mdfi.darknet.network import Network
from mdfi.quant.quantize import quantize_network
from mdfi.darknet.weights import load_weights, random_weights

from conftest import DARKNET, REPO, run_python, skimage_image

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


# ================================================================================================
# 1. Darknet .cfg
CFG_SOURCES = {p.name: p.read_text() for p in sorted((REPO / "cfg").glob("*.cfg"))}
CFG_SOURCES["mini-yolov3.cfg"] = MINI_CFG.read_text()
CFG_NAMES = sorted(CFG_SOURCES)
assert len(CFG_NAMES) == 8, CFG_NAMES        # the shipped cfgs (pjreddie + AlexeyAB) and mini-yolov3

#: CfgError reasons that are about the whole file, not one line.
WHOLE_FILE = ("file not found", "is a directory", "cannot read", "file is larger than",
              "no sections found", "the first section must be")
KEYS = sorted({"width", "height", "channels", "filters", "size", "stride", "pad", "padding", "groups",
               "batch_normalize", "activation", "from", "layers", "mask", "anchors", "classes", "num",
               "coords", "softmax", "scale", "alpha", "beta", "reverse", "flatten", "extra",
               "background", "tree", "binary", "xnor", "batch", "jitter"})
NASTY_VALUES = ["0", "-1", "1", "2", "3", "-0", "+3", "1000000", "1000000000", "100000000000000000000",
                "-1000000", "99999999999999999999999999999999", "1.5", "1e3", "nan", "inf", "-inf",
                "abc", "0x10", "١٦", "1_6", "1,2", ",", "-1,-3", "0,0,0", "leaky", "linear", "logistic",
                "mish", "relu", "1e400", "3.4e38", "\t", "=", "[net]"]
VALUES = st.one_of(st.sampled_from(NASTY_VALUES), st.integers(-10 ** 21, 10 ** 21).map(str),
                   st.text(max_size=8))
SECTION_NAMES = st.one_of(
    st.sampled_from(sorted(REGISTRY) + sorted(DARKNET_ONLY)[:5] + ["net", "network", "NET", "yolo", "x"]),
    st.text(max_size=6))
INDEX = st.integers(0, 1 << 20)
LINE_OPS = st.one_of(
    st.tuples(st.just("delete"), INDEX),
    st.tuples(st.just("duplicate"), INDEX),
    st.tuples(st.just("set_value"), INDEX, VALUES),
    st.tuples(st.just("set_key"), INDEX, st.one_of(st.sampled_from(KEYS), st.text(max_size=6))),
    st.tuples(st.just("add_option"), INDEX, st.sampled_from(KEYS), VALUES),
    st.tuples(st.just("drop_equals"), INDEX),
    st.tuples(st.just("empty_value"), INDEX),
    st.tuples(st.just("rename_section"), INDEX, SECTION_NAMES),
    st.tuples(st.just("swap_sections"), INDEX, INDEX),
    st.tuples(st.just("delete_section"), INDEX),
    st.tuples(st.just("insert_line"), INDEX, st.text(max_size=20)),
)


def _option_lines(lines):
    return [i for i, l in enumerate(lines) if "=" in l and not l.lstrip().startswith(("#", ";"))]


def _section_spans(lines):
    starts = [i for i, l in enumerate(lines) if l.lstrip().startswith("[")]
    return [(s, e) for s, e in zip(starts, starts[1:] + [len(lines)])]


def apply_line_op(lines, op):
    lines = list(lines)
    kind, i = op[0], op[1]
    if not lines:
        return lines
    opts, spans = _option_lines(lines), _section_spans(lines)
    if kind == "delete":
        del lines[i % len(lines)]
    elif kind == "duplicate":
        j = i % len(lines)
        lines.insert(j, lines[j])
    elif kind in ("set_value", "set_key", "drop_equals", "empty_value") and opts:
        j = opts[i % len(opts)]
        key, value = lines[j].split("=", 1)
        lines[j] = {"set_value": lambda: f"{key}={op[2]}", "set_key": lambda: f"{op[2]}={value}",
                    "drop_equals": lambda: f"{key}{value}", "empty_value": lambda: f"{key}="}[kind]()
    elif kind == "add_option" and spans:
        s, _ = spans[i % len(spans)]
        lines.insert(s + 1, f"{op[2]}={op[3]}")
    elif kind == "rename_section" and spans:
        s, _ = spans[i % len(spans)]
        lines[s] = f"[{op[2]}]"
    elif kind == "swap_sections" and len(spans) > 1:
        a, b = sorted((i % len(spans), op[2] % len(spans)))
        if a != b:
            (s1, e1), (s2, e2) = spans[a], spans[b]
            lines = lines[:s1] + lines[s2:e2] + lines[e1:s2] + lines[s1:e1] + lines[e2:]
    elif kind == "delete_section" and spans:
        s, e = spans[i % len(spans)]
        del lines[s:e]
    elif kind == "insert_line":
        lines.insert(i % (len(lines) + 1), op[2])
    return lines


def _lines_in(data: bytes) -> int:
    return len(re.split(r"\r\n|\r|\n", data.decode("utf-8", "replace")))


def check_cfg_bytes(work: Path, data: bytes, name: str = "fuzz.cfg"):
    """Write ``data`` as a cfg and build it: a sane Network or a one-line CfgError/LimitError."""
    path = fresh(work, "cfg") / name
    path.write_bytes(data)
    net, exc = attempt(lambda: Network.from_cfg(path, warn=False))
    if exc is None:
        note("accepted")
        assert net.layers
        for layer in net.layers:
            assert all(1 <= d <= MAX_DIM.value for d in layer.out_shape), layer
        assert net.activation_bytes() >> 20 <= MAX_ACTIVATION_BYTES.value
        return net
    msg = assert_user_error(exc, path, (CfgError, LimitError))
    if isinstance(exc, CfgError):
        assert exc.path == os.fspath(path)
        if exc.line is None:
            assert exc.reason.startswith(WHOLE_FILE), f"error without a line number: {msg!r}"
            assert msg.startswith(f"{path}: ")
        else:
            assert msg.startswith(f"{path}:{exc.line}: "), msg
            assert 1 <= exc.line <= _lines_in(data), f"line {exc.line} of a {_lines_in(data)}-line file: {msg}"
    return exc


def test_shipped_cfgs_build(work):
    for name in CFG_NAMES:
        assert isinstance(check_cfg_bytes(work, CFG_SOURCES[name].encode(), name), Network)


@fuzz(300)
@given(st.one_of(st.text(max_size=300).map(lambda s: s.encode("utf-8")), st.binary(max_size=300),
                 st.lists(st.sampled_from(["[net]", "[convolutional]", "[yolo]", "[route]", "width=8",
                                           "height=8", "channels=3", "filters=255", "layers=-1", "from=-1",
                                           "size=3", "stride=2", "mask=0", "#", "", "x", "["]),
                          max_size=20).map(lambda ls: "\n".join(ls).encode())))
@example(b"")
@example(b"\x00")
@example(b"\xff\xfe[net]")
@example(b"[net]\nwidth=8\nheight=8\nchannels=3\n\x0c\x0c\x0c\n[bogus]\n")   # form feeds are not line ends
@example(b"[net]\nwidth=8\nheight=8\nchannels=3\n[yolo]\nnum=1000000000\n")
@example(b"[net]\nwidth=8\nheight=8\nchannels=3\n[region]\nnum=1000000000\n")
@example(b"[net]\nwidth=8\n" + b"x" * 100000 + b"\n")                    # a huge malformed line
def test_cfg_random_text(work, data):
    check_cfg_bytes(work, data)


@fuzz(400)
@given(st.sampled_from(CFG_NAMES), st.lists(LINE_OPS, min_size=1, max_size=4))
@example("mini-yolov3.cfg", [("set_value", 3, "1000000")])
@example("yolov3-tiny.cfg", [("add_option", 0, "num", "1000000000")])
def test_cfg_line_mutations(work, name, ops):
    lines = CFG_SOURCES[name].split("\n")
    for op in ops:
        lines = apply_line_op(lines, op)
    check_cfg_bytes(work, "\n".join(lines).encode("utf-8"), name)


@fuzz(250)
@given(st.sampled_from(CFG_NAMES), st.integers(0, 1 << 30), st.booleans(),
       st.lists(st.tuples(st.integers(0, 1 << 30),
                          st.one_of(st.sampled_from([0x00, 0xff, 0x80, 0xc3, 0x0a, 0x0d, 0x5b, 0x3d, 0x23,
                                                     0x2d, 0x39]), st.integers(0, 255))),
                max_size=4))
def test_cfg_truncated_and_byte_flipped(work, name, cut, truncate, flips):
    data = bytearray(CFG_SOURCES[name].encode())
    if truncate:
        del data[cut % (len(data) + 1):]
    for pos, byte in flips:
        if data:
            data[pos % len(data)] = byte
    check_cfg_bytes(work, bytes(data), name)


@pytest.mark.parametrize("value", ["1_6", "\u0661\u0666", "16abc", "0x10", "1" * 5000, "-" + "9" * 41])
def test_cfg_integers_are_plain_ascii_like_darknet(work, value):
    """Python's int() takes "1_6" (Darknet's atoi reads 1) and Arabic-Indic digits; a 5000-digit
    value exceeds int()'s digit limit (ValueError)."""
    text = f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters={value}\nactivation=leaky\n"
    exc = check_cfg_bytes(work, text.encode(), "num.cfg")
    assert isinstance(exc, CfgError) and exc.line == 6 and "filters=" in str(exc), repr(exc)


@pytest.mark.parametrize("value", ["1_0", "\u0661.5", "1e400", "nan", "0x1p3"])
def test_cfg_floats_are_plain_ascii(work, value):
    text = (f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=8\nactivation=leaky\n"
            f"[upsample]\nscale={value}\n")
    exc = check_cfg_bytes(work, text.encode(), "float.cfg")
    assert isinstance(exc, CfgError) and exc.line == 9 and "scale=" in str(exc), repr(exc)


def test_cfg_long_section_name_and_line_are_clipped(work):
    exc = check_cfg_bytes(work, b"[net]\nwidth=8\nheight=8\nchannels=3\n[" + b"y" * 5000 + b"]\n", "long.cfg")
    assert isinstance(exc, CfgError) and exc.line == 5 and len(str(exc)) < 300


@pytest.mark.parametrize("body", [
    "[maxpool]\n" * 400_000,                                     # 4 MB of sections
    "[maxpool]\n" + "stride=1\n" * 200_000,                     # 200,000 duplicate keys
    "[maxpool]\n" + "".join(f"k{i}=1\n" for i in range(100_000)),  # 100,000 unused keys
], ids=["sections", "duplicate-keys", "unused-keys"])
def test_cfg_spam_is_fast_and_quiet(work, capfd, body):
    """A 4 MB cfg must not take tens of seconds or print a million warning lines."""
    data = ("[net]\nwidth=8\nheight=8\nchannels=3\n" + body).encode()
    path = fresh(work, "cfg") / "spam.cfg"
    path.write_bytes(data)
    t0 = time.perf_counter()
    _, exc = attempt(lambda: Network.from_cfg(path), trace=False)   # warn=True: unused keys too
    assert time.perf_counter() - t0 < 5
    if exc is not None:     # refused at the 4097th layer (line 4101), not after parsing 400,000
        assert isinstance(exc, LimitError) and f"{path}:4101: number of layers" in str(exc), repr(exc)
    err = capfd.readouterr().err
    assert len(err.splitlines()) <= 25, err[-300:]


def test_model_embedded_cfg_larger_than_a_cfg_file(work, model_files):
    header, data = split_model(model_files["mini"])
    header["cfg"] = header["cfg"] + "\n[maxpool]" * 500_000
    exc = check_model_bytes(work, join_model(header, data))
    assert isinstance(exc, ModelFileError) and "embedded cfg" in str(exc), repr(exc)


# Absurd sizes must be refused before anything is allocated, quickly, naming the variable.
_NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"


@pytest.mark.parametrize("text, env", [
    ("[net]\nwidth=1000000\nheight=64\nchannels=3\n[maxpool]\n", "MDFI_MAX_DIM"),
    ("[net]\nwidth=64\nheight=1000000000\nchannels=3\n[maxpool]\n", "MDFI_MAX_DIM"),
    ("[net]\nwidth=64\nheight=64\nchannels=100000000000000000000\n[maxpool]\n", "MDFI_MAX_DIM"),
    (_NET + "[convolutional]\nfilters=10000000\nactivation=leaky\n", "MDFI_MAX_DIM"),
    (_NET + "[convolutional]\nfilters=16\nsize=1000001\nactivation=leaky\n", "MDFI_MAX_KERNEL"),
    (_NET + "[convolutional]\nfilters=16\nsize=3\nstride=100000000000000000000\nactivation=leaky\n",
     "MDFI_MAX_KERNEL"),
    (_NET + "[convolutional]\nfilters=16\nsize=3\nstride=20000\npadding=10000\nactivation=leaky\n",
     "MDFI_MAX_KERNEL"),
    (_NET + "[maxpool]\nsize=2\nstride=100000000000000000000\n", "MDFI_MAX_KERNEL"),
    (_NET + "[maxpool]\nsize=1000000\n", "MDFI_MAX_KERNEL"),
    (_NET + "[upsample]\nstride=1000000\n", "MDFI_MAX_KERNEL"),
    (_NET + "[convolutional]\nfilters=255\nsize=1\nactivation=linear\n[yolo]\nnum=1000000000\n", "MDFI_MAX_DIM"),
    (_NET + "[convolutional]\nfilters=255\nsize=1\nactivation=linear\n[yolo]\nnum=1000000000\nmask=0\n",
     "MDFI_MAX_DIM"),
    (_NET + "[convolutional]\nfilters=125\nsize=1\nactivation=linear\n[region]\nnum=1000000000\n",
     "MDFI_MAX_DIM"),
    (_NET + "[maxpool]\n[route]\nlayers=" + ",".join(["-1"] * 100000) + "\n", "MDFI_MAX_DIM"),
    ("[net]\nwidth=30000\nheight=30000\nchannels=3\n[convolutional]\nfilters=64\nactivation=leaky\n",
     "MDFI_MAX_ACTIVATION_MB"),
    (_NET + "[convolutional]\nfilters=32768\nsize=63\npad=1\nactivation=leaky\n"
            "[convolutional]\nfilters=32768\nsize=63\npad=1\nactivation=leaky\n", "MDFI_MAX_PARAMS"),
    (_NET + "[maxpool]\n" * 5000, "MDFI_MAX_LAYERS"),
], ids=["width", "height", "channels", "filters", "size", "conv-stride", "conv-padding", "pool-stride",
        "pool-size", "upsample", "yolo-num", "yolo-num-mask", "region-num", "route", "activations", "params",
        "layers"])
def test_cfg_absurd_sizes_are_limit_errors(work, text, env):
    path = fresh(work, "cfg") / "huge.cfg"
    path.write_text(text)
    t0 = time.perf_counter()
    exc = check_cfg_bytes(work, text.encode(), "huge.cfg")
    assert time.perf_counter() - t0 < 5
    assert isinstance(exc, LimitError) and env in str(exc), repr(exc)


# Small generated networks: whatever builds must also run (float) and quantize (or refuse with
# an MDFIError), and a quantized model must survive a .mdfi round trip bit-exactly on both engines.
_LAYER_KEYS = {
    "convolutional": ["filters", "size", "stride", "pad", "padding", "batch_normalize", "activation", "groups"],
    "maxpool": ["size", "stride", "padding"],
    "upsample": ["stride", "scale"],
    "route": ["layers", "groups"],
    "shortcut": ["from", "activation", "alpha", "beta"],
    "reorg": ["stride", "reverse"],
    "yolo": ["classes", "num", "mask", "anchors"],
    "region": ["classes", "num", "coords", "softmax", "anchors", "background"],
}
_SMALL_VALUES = st.one_of(st.sampled_from(["0", "1", "2", "3", "4", "5", "-1", "-2", "-3", "1,-2", "0,1",
                                           "leaky", "linear", "relu", "logistic", "1,2,3,4", "0.5"]),
                          st.sampled_from(NASTY_VALUES))


@st.composite
def small_cfg(draw):
    lines = ["[net]", f"width={draw(st.sampled_from([1, 2, 3, 5, 8, 13, 16]))}",
             f"height={draw(st.sampled_from([1, 2, 4, 7, 8, 16]))}",
             f"channels={draw(st.sampled_from([1, 2, 3, 4]))}"]
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(sorted(_LAYER_KEYS)))
        lines.append(f"[{kind}]")
        if kind == "convolutional":
            lines.append("activation=leaky")
        if kind in ("yolo", "region"):
            lines.append("classes=1")
            lines.append("num=1")
        keys = draw(st.lists(st.sampled_from(_LAYER_KEYS[kind]), max_size=4, unique=True))
        for key in keys:
            lines.append(f"{key}={draw(_SMALL_VALUES)}")
        required = {"route": "layers", "shortcut": "from"}.get(kind)
        if required and required not in keys:
            lines.append(f"{required}=-{draw(st.integers(1, 3))}")
    return "\n".join(lines) + "\n"


@fuzz(400)
@given(small_cfg())
@example("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=2\nsize=3\n"
         "stride=100000000000000000000\nactivation=leaky\n")
@example("[net]\nwidth=8\nheight=8\nchannels=3\n[maxpool]\nsize=2\nstride=100000000000000000000\n")
def test_generated_networks_build_run_and_roundtrip(work, text):
    d = fresh(work, "gen")
    net = check_cfg_bytes(d, text.encode(), "gen.cfg")
    if not isinstance(net, Network) or net.macs > 5_000_000 or net.num_params() > 200_000:
        return

    def run():
        random_weights(net, seed=1)
        net.forward_float(np.zeros(net.input_shape, np.float32))
        qm = quantize_network(net, cfg_text=text, progress=False)
        modelfile.save(qm, d / "gen.mdfi")
        loaded = modelfile.load(d / "gen.mdfi")
        x = np.zeros(loaded.input_shape, np.uint8)
        ref = loaded.forward_ref(x)
        for a, b in zip(ref, FixedEngine(loaded, "c", 1).run(x)):      # the C kernels agree
            np.testing.assert_array_equal(a, b)
        return ref
    _, exc = attempt(run)
    note("built; ran, quantized and round-tripped" if exc is None else f"built; then {type(exc).__name__}")
    if exc is not None:
        assert isinstance(exc, MDFIError), f"{type(exc).__name__}: {exc!r}"
        assert len(str(exc).splitlines()) == 1, repr(str(exc))


# ================================================================================================
# 2. Darknet .weights (with the mini-yolov3 cfg)
@lru_cache(maxsize=None)
def _mini_network() -> Network:
    return Network.from_cfg(MINI_CFG, warn=False)


MINI_WEIGHT_BYTES = MINI_WEIGHTS.read_bytes()


def weights_verdict(data: bytes, nparams: int):
    """What load_weights must say about ``data``, from an independent reading of the format."""
    if len(data) < 16:
        return "too short", None
    major, minor, revision = struct.unpack_from("<iii", data)
    if min(major, minor, revision) < 0:
        return "negative version", None
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    hb = 20 if wide else 16
    if len(data) < hb:
        return "too short", None
    expected = hb + 4 * nparams
    if len(data) != expected:
        return "size", expected
    values = np.frombuffer(data, "<f4", offset=hb)
    if not np.isfinite(values).all():
        return "non-finite", None
    if _untrained(_mini_network(), values):
        return "untrained", None
    return "ok", hb


def _untrained(net, values) -> bool:
    """A negative batch-norm variance, or a folded weight or bias of 2**39 or more (beyond
    every fixed-point format): issue 9 item 2, written out here independently of
    mdfi.darknet.weights.check_trained."""
    off = 0
    for layer in net.layers:
        n = layer.num_params()
        if not n:
            continue
        f = layer.filters
        chunk = values[off:off + n].astype(np.float64)
        off += n
        bias = np.abs(chunk[:f])
        if layer.batch_normalize:
            scale, mean, var, w = chunk[f:2 * f], chunk[2 * f:3 * f], chunk[3 * f:4 * f], chunk[4 * f:]
            if (var < 0).any():
                return True
            k = np.abs(scale) / (np.sqrt(var) + 1e-6)
            bias = bias + np.abs(mean) * k
        else:
            w, k = chunk[f:], np.ones(f)
        top = max((np.abs(w.reshape(f, -1)).max(axis=1) * k).max(), bias.max())
        if not np.isfinite(top) or top >= 2.0 ** 39:
            return True
    return False


def check_weights_bytes(work: Path, data: bytes):
    net = _mini_network()
    path = fresh(work, "w") / "mini.weights"
    path.write_bytes(data)
    verdict, info = weights_verdict(data, net.num_params())
    header, exc = attempt(lambda: load_weights(net, path))
    if verdict == "ok":
        note("accepted")
        assert exc is None, f"valid file refused: {exc!r}"
        assert header.header_bytes == info
        return
    msg = assert_user_error(exc, path, (WeightsError, LimitError))
    if verdict == "size":
        assert f"expected {info:,} bytes" in msg and f"found {len(data):,} bytes" in msg, msg
    elif verdict == "non-finite":
        assert "non-finite" in msg and "NaN" in msg, msg
    elif verdict == "untrained":
        assert "not the weights of a trained model" in msg, msg
    elif verdict == "too short":
        assert "too short" in msg, msg
    else:
        assert "negative" in msg, msg


@fuzz(100)
@given(st.integers(0, len(MINI_WEIGHT_BYTES)), st.binary(max_size=9))
@example(0, b"")
@example(15, b"")
@example(19, b"")
@example(len(MINI_WEIGHT_BYTES) - 1, b"")
@example(len(MINI_WEIGHT_BYTES), b"\0")
@example(len(MINI_WEIGHT_BYTES), b"\0\0\0\0")
def test_weights_truncated_or_extended(work, cut, extra):
    check_weights_bytes(work, MINI_WEIGHT_BYTES[:cut] + extra)


@fuzz(120)
@given(st.lists(st.tuples(st.integers(0, 19), st.integers(0, 255)), min_size=1, max_size=6))
@example([(0, 0xff), (1, 0xff), (2, 0xff), (3, 0xff)])            # major = -1
@example([(0, 0x00), (4, 0x02)])                                  # 0.2: 64-bit seen
@example([(4, 0x01)])                                             # 0.1: 32-bit seen (size changes)
@example([(0, 0xe8), (1, 0x03)])                                  # major 1000: 32-bit seen
@example([(12, 0xff), (13, 0xff), (14, 0xff), (15, 0xff), (16, 0xff), (17, 0xff), (18, 0xff), (19, 0xff)])
def test_weights_header_flips(work, flips):
    data = bytearray(MINI_WEIGHT_BYTES)
    for pos, byte in flips:
        data[pos] = byte
    check_weights_bytes(work, bytes(data))


@fuzz(100)
@given(st.lists(st.tuples(st.integers(0, 1 << 30),
                          st.one_of(st.sampled_from([float("nan"), float("inf"), float("-inf"), 3.4e38, -0.0,
                                                     1e-45]),
                                    st.floats(width=32))),
                min_size=1, max_size=5),
       st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), max_size=4))
def test_weights_float_data_nan_inf_and_flips(work, values, flips):
    data = bytearray(MINI_WEIGHT_BYTES)
    n = (len(data) - 20) // 4
    for pos, v in values:
        struct.pack_into("<f", data, 20 + 4 * (pos % n), v)
    for pos, byte in flips:
        data[20 + pos % (len(data) - 20)] = byte
    check_weights_bytes(work, bytes(data))


def test_weights_all_nan_inf_empty_and_directory(work):
    n = _mini_network().num_params()
    head = MINI_WEIGHT_BYTES[:20]
    check_weights_bytes(work, head + np.full(n, np.nan, "<f4").tobytes())
    check_weights_bytes(work, head + np.full(n, np.inf, "<f4").tobytes())
    check_weights_bytes(work, b"")
    d = fresh(work, "w") / "dir.weights"
    d.mkdir()
    with pytest.raises(WeightsError) as ei:
        load_weights(_mini_network(), d)
    assert_user_error(ei.value, d)
    with pytest.raises(WeightsError) as ei:
        load_weights(_mini_network(), d.parent / "missing.weights")
    assert_user_error(ei.value, d.parent / "missing.weights")


# ================================================================================================
# 3. .mdfi model files
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


@pytest.fixture(scope="module")
def model_files(work):
    """Two small real model files: mini-yolov3 (at 32x32, same weights) and a [region] net."""
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


def test_model_files_load_and_run(work, model_files):
    for blob in model_files.values():
        assert not isinstance(check_model_bytes(work, blob), BaseException)


@fuzz(100)
@given(st.sampled_from(["mini", "region"]), st.integers(0, 1 << 30))
@example("mini", 0)
@example("mini", 19)
@example("mini", 200)
def test_model_truncated(work, model_files, which, cut):
    blob = model_files[which]
    check_model_bytes(work, blob[:cut % len(blob)])


@fuzz(200)
@given(st.sampled_from(["mini", "region"]),
       st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=6),
       st.booleans())
def test_model_byte_flips(work, model_files, which, flips, in_prefix):
    blob = bytearray(model_files[which])
    for pos, byte in flips:
        blob[(pos % 20) if in_prefix else pos % len(blob)] = byte
    check_model_bytes(work, bytes(blob))


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


@pytest.mark.parametrize("what", sorted(TARGETED))
def test_model_targeted_header_mutations(work, model_files, what):
    header, data = split_model(model_files["mini"])
    TARGETED[what](header)
    res = check_model_bytes(work, join_model(header, data))
    assert isinstance(res, BaseException), f"{what}: accepted"


@pytest.mark.parametrize("key, value", [
    ("layer_abits", True), ("layer_wbits", [8]), ("layer_abits", {"x": 8}), ("layer_abits", {"3": "8"}),
    ("layer_wbits", {"3": 99}), ("wbits", "8"), ("abits", True), ("rounding", "\x1b[2J"),
    ("formats_source", 7), ("act_options", {"clip budget": 1}), ("act_options", {"clip_budget": "x"}),
    ("act_options", [1]),
])
def test_model_options_of_wrong_type_are_refused_at_load(work, model_files, key, value):
    """The header's options are only a record, but reports read them (mdfi info, describe):
    a value of the wrong type is a one-line load error, not a crash later (found by the
    mutation fuzzer above: layer_abits = true loaded and broke describe())."""
    header, blob = split_model(model_files["mini"])
    header["options"][key] = value
    res = check_model_bytes(work, join_model(header, blob))
    assert isinstance(res, ModelFileError) and "options" in str(res), res


@fuzz(400)
@given(st.sampled_from(["mini", "region"]), st.data())
def test_model_header_json_mutations(work, model_files, which, data):
    header, blob = split_model(model_files[which])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = json_paths(header)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        mutate_json(header, path, data.draw(JSON_OPS), data.draw(NASTY_JSON))
    check_model_bytes(work, join_model(header, blob, fix_crc=data.draw(st.integers(0, 9)) > 0))


@fuzz(150)
@given(st.sampled_from(["mini", "region"]), st.data())
def test_model_tensor_data_with_valid_checksums(work, model_files, which, data):
    """Random tensor contents with their CRCs fixed: the value checks (weights beyond their
    width, biases beyond the accumulator bound, lookup tables out of range) must refuse them."""
    header, blob = split_model(model_files[which])
    blob = bytearray(blob)
    t = data.draw(st.sampled_from(header["tensors"]))
    off, n = t["offset"], t["nbytes"]
    for _ in range(data.draw(st.integers(1, 8))):
        if n:
            blob[off + data.draw(st.integers(0, n - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()) and n:
        fill = data.draw(st.sampled_from([0x00, 0x7f, 0x80, 0xff]))
        blob[off:off + n] = bytes([fill]) * n
    t["crc32"] = zlib.crc32(bytes(blob[off:off + n]))
    check_model_bytes(work, join_model(header, bytes(blob)))


@pytest.mark.parametrize("which, tensor, fill, words", [
    ("region", "layer006.expneg_lut", 0x80, "softmax table"),     # negative: softmax sums <= 0
    ("region", "layer006.logistic_lut", 0xff, "logistic table"),
    ("mini", "layer020.exp_lut", 0xff, "exp table"),
])
def test_model_lookup_tables_out_of_range(work, model_files, which, tensor, fill, words):
    """Tables with valid checksums but values the quantizer never writes: the C kernels and
    the NumPy reference would disagree on them (C guards a zero softmax sum, NumPy divides
    by it), so the loader refuses them."""
    header, blob = split_model(model_files[which])
    blob = bytearray(blob)
    t = _tensor(header, tensor)
    blob[t["offset"]:t["offset"] + t["nbytes"]] = bytes([fill]) * t["nbytes"]
    t["crc32"] = zlib.crc32(bytes(blob[t["offset"]:t["offset"] + t["nbytes"]]))
    exc = check_model_bytes(work, join_model(header, bytes(blob)))
    assert isinstance(exc, ModelFileError) and words in str(exc), repr(exc)


def test_model_file_is_a_directory_or_missing(work):
    d = fresh(work, "m") / "dir.mdfi"
    d.mkdir()
    for p in (d, d.parent / "missing.mdfi"):
        with pytest.raises(ModelFileError) as ei:
            modelfile.load(p)
        assert_user_error(ei.value, p)


# ================================================================================================
# 4. images
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


IMAGE_NAMES = sorted(IMAGE_KINDS)


def check_image_bytes(work: Path, data: bytes, name: str = "fuzz.img"):
    path = fresh(work, "img") / name
    path.write_bytes(data)
    arr, exc = attempt(lambda: load_image(path), trace=False)
    if exc is None:
        note("accepted")
        assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert arr.shape[0] >= 1 and arr.shape[1] >= 1 and arr.flags.c_contiguous
        return arr
    assert_user_error(exc, path, (ImageError, LimitError))
    return exc


def test_image_kinds_load(work):
    for kind in IMAGE_NAMES:
        arr = check_image_bytes(work, image_bytes(kind), f"ok.{kind}")
        assert isinstance(arr, np.ndarray), (kind, arr)
        assert kind == "ico" or arr.shape[:2] == (17, 23), kind


@fuzz(250)
@given(st.sampled_from(IMAGE_NAMES), st.integers(0, 1 << 30))
def test_image_truncated(work, kind, cut):
    data = image_bytes(kind)
    check_image_bytes(work, data[:cut % len(data)], f"t.{kind}")


@fuzz(300)
@given(st.sampled_from(IMAGE_NAMES), st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)),
                                              min_size=1, max_size=8), st.booleans())
def test_image_byte_flips(work, kind, flips, header_only):
    data = bytearray(image_bytes(kind))
    for pos, byte in flips:
        data[pos % min(len(data), 64) if header_only else pos % len(data)] = byte
    check_image_bytes(work, bytes(data), f"f.{kind}")


@fuzz(150)
@given(st.binary(max_size=2000), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM",
                                                  b"II*\x00", b"MM\x00*", b"RIFF\0\0\0\0WEBP", b"P6\n"]))
def test_image_random_bytes(work, data, magic):
    check_image_bytes(work, magic + data)


_BOMB_IDAT = zlib.compress(b"\0" * 100000)


@pytest.mark.parametrize("data, expect", [
    (png_with_header(100_000, 100_000), LimitError),
    (png_with_header(2 ** 31 - 1, 2 ** 31 - 1), (ImageError, LimitError)),
    (png_with_header(20_000, 20_000, idat=_BOMB_IDAT), LimitError),
    (png_with_header(0, 0), ImageError),
    (png_with_header(0, 10), ImageError),
    (png_with_header(64, 64, 8, 3, plte=b""), ImageError),                          # empty palette
    (png_with_header(64, 64, 8, 3, plte=b"\x01\x02"), ImageError),                  # not a multiple of 3
    (png_with_header(64, 64, 8, 3, plte=b"\x01\x02\x03" * 300), ImageError),        # > 256 entries
    (png_with_header(8, 8, 8, 3, plte=b"\x01\x02\x03", idat=zlib.compress(b"\0\xff" * 64)), None),  # bad index
    (png_with_header(8, 8, 16, 2, idat=zlib.compress(b"\0" * 1000)), None),
    (png_with_header(8, 8, 7, 2), ImageError),                                      # impossible depth
    (b"BM" + struct.pack("<IHHIIiiHHIIiiII", 0, 0, 0, 54, 40, 100_000, 100_000, 1, 24, 0, 0, 0, 0, 0, 0),
     LimitError),
    (b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0) + b",\0\0\0\0" + struct.pack("<HH", 65535, 65535)
     + b"\0\x02\x02\x4c\x01\0;", (ImageError, LimitError)),
], ids=["png-1e10", "png-max", "png-bomb", "png-0x0", "png-0x10", "plte-empty", "plte-short", "plte-long",
        "plte-index", "png-16-short", "png-depth7", "bmp-huge", "gif-huge"])
def test_image_crafted_headers(work, data, expect):
    res = check_image_bytes(work, data, "crafted.img")
    if expect is not None:
        assert isinstance(res, expect), repr(res)


@pytest.mark.parametrize("kind, cut", [("tiff-rgb", 60), ("tiff-rgb", 20), ("tiff-cmyk", 100)])
def test_image_pillow_warnings_do_not_leak(work, kind, cut):
    """Pillow warns about damaged TIFF metadata; printed by Python that is two lines of
    source code above the one-line error."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_image_bytes(work, image_bytes(kind)[:cut], f"w.{kind}")
    assert not [w for w in caught if "PIL" in w.filename], [str(w.message) for w in caught]


def test_image_empty_and_directory(work):
    assert isinstance(check_image_bytes(work, b"", "empty.png"), ImageError)
    d = fresh(work, "img") / "dir.png"
    d.mkdir()
    _, exc = attempt(lambda: load_image(d))
    assert_user_error(exc, d, ImageError)


# ================================================================================================
# 5. golden vectors for `mdfi verify`
@pytest.fixture(scope="module")
def golden_dir(work):
    net = Network.from_cfg(MINI_CFG, warn=False)
    load_weights(net, MINI_WEIGHTS)
    qm = quantize_network(net, cfg_text=MINI_CFG.read_text())
    model = Model(qm.network, [f"c{i}" for i in range(80)], FixedEngine(qm, "c", 2), name="mini-yolov3")
    d = work / "golden"
    golden.export(model, skimage_image("astronaut.png"), str(d), layers=[0, 1, 2],
                  formats=["hex", "dat", "npy"], thresh=0.9)
    return d


@pytest.fixture()
def np_load_calls(monkeypatch):
    """Record every numpy.load call made while verifying (they must all refuse pickles)."""
    calls = []
    real = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(np, "load", spy)
    return calls


#: (golden file, format to write the DUT in).  Small stages mostly; one 65k-value output.
DUT_TARGETS = [("l000.shift.hex", "hex"), ("l000.bias.dat", "dat"), ("l001.shift.npy", "npy"),
               ("l000.bias.hex", "npy"), ("l002.bias.npy", "dat"), ("l020.logistic_lut.hex", "hex"),
               ("l002.out.hex", "hex"), ("l002.out.npy", "npy")]


def _entry(golden_dir: Path, name: str) -> dict:
    m = json.loads((golden_dir / "manifest.json").read_text())
    return next(e for e in m["files"] if e["path"] == name)


@lru_cache(maxsize=None)
def _golden_values(golden_dir: Path, name: str) -> np.ndarray:
    e = _entry(golden_dir, name)
    return vectors.read(golden_dir / name, e["format"], e["bits"], e["signed"], int(np.prod(e["shape"])))


def check_dut_file(work: Path, golden_dir: Path, name: str, data: bytes):
    dut = fresh(work, "dut")
    path = dut / name
    path.write_bytes(data)
    rep, exc = attempt(lambda: verify.verify(golden_dir, dut, max_report=3))
    if exc is not None:
        raise AssertionError(f"verify raised {exc!r} for a bad DUT file") from exc
    assert len(rep.files) == 1, (rep.files, rep.not_in_golden)
    f = rep.files[0]
    note(f"{f.status}: {re.sub(r'[0-9][0-9,]*', 'N', (f.error or '').replace(str(path), 'FILE'))[:60]}")
    assert f.status in ("ok", "mismatch", "error")
    if f.status == "ok":
        stem = name.rsplit(".", 1)[0]
        golden_name = next(n for n, _ in DUT_TARGETS if n.rsplit(".", 1)[0] == stem)
        e = _entry(golden_dir, golden_name)
        got = vectors.read(path, name.rsplit(".", 1)[1], e["bits"], e["signed"], int(np.prod(e["shape"])))
        np.testing.assert_array_equal(got, _golden_values(golden_dir, golden_name))
        assert rep.exit_status == 0
    else:
        assert rep.exit_status == 1
        assert not f.golden_error
    if f.status == "error":
        assert f.error and len(f.error.splitlines()) == 1 and len(f.error) <= MAX_MESSAGE, repr(f.error)
        assert str(path) in f.error, f.error
    json.loads(rep.to_json())
    rep.format_text()
    shutil.rmtree(dut)
    return f


def _as_text(values: np.ndarray, fmt: str, e: dict) -> bytes:
    if fmt == "hex":
        return vectors.to_hex_bytes(values, e["bits"])
    return vectors.to_dat_bytes(values)


@fuzz(100)
@given(st.sampled_from(DUT_TARGETS), st.data())
def test_dut_text_mutations(work, golden_dir, np_load_calls, target, data):
    name, fmt = target
    e = _entry(golden_dir, name)
    gold = _golden_values(golden_dir, name)
    dut_name = name.rsplit(".", 1)[0] + "." + ("dat" if fmt == "npy" else fmt)
    fmt = dut_name.rsplit(".", 1)[1]
    lines = _as_text(gold, fmt, e).decode().split("\n")
    kind = data.draw(st.sampled_from(["random", "binary", "truncate", "garbage_line", "huge", "count",
                                      "non_ascii", "replace_value", "comment", "address"]))
    if kind == "random":
        raw = data.draw(st.text(max_size=200)).encode("utf-8")
    elif kind == "binary":
        raw = data.draw(st.binary(max_size=200))
    else:
        if kind == "truncate":
            text = "\n".join(lines)
            lines = [text[:data.draw(st.integers(0, len(text)))]]
        elif kind == "garbage_line":
            lines.insert(data.draw(st.integers(0, len(lines))),
                         data.draw(st.one_of(st.text(max_size=12), st.sampled_from(["zz", "0x1f", "--1", "1 2", "@",
                                                                                   "@zz", "//", "1e3", "-"]))))
        elif kind in ("huge", "replace_value"):
            value = data.draw(st.one_of(
                st.sampled_from(["99999999999999999999999999", "-99999999999999999999999999", "ffffffffffffffffffff",
                                 "8000000000000000", "7fffffffffffffff", "-9223372036854775809",
                                 "18446744073709551616", "1_0", "+1", "-0", "١٢", "1.5", "nan", "", "-", "0x10"]),
                st.integers(-2 ** 70, 2 ** 70).map(str)))
            lines[data.draw(st.integers(0, max(len(lines) - 2, 0)))] = value
        elif kind == "count":
            k = data.draw(st.integers(-3, 3))
            lines = lines[:-1][:max(len(lines) - 1 + k, 0)] + (["0"] * k if k > 0 else []) + [""]
        elif kind == "non_ascii":
            lines[data.draw(st.integers(0, max(len(lines) - 2, 0)))] += data.draw(st.sampled_from(["é", "\x00", "\u2028",
                                                                                                   "\x85", "\x0c"]))
        elif kind == "comment":
            lines.insert(0, "// dumped by a simulator")
        elif kind == "address":
            lines.insert(data.draw(st.integers(0, len(lines))), data.draw(st.sampled_from(["@0", "@1", "@ffffffffffffffffffffff",
                                                                                         "@-1", "@"])))
        raw = "\n".join(lines).encode("utf-8", "surrogatepass")
    check_dut_file(work, golden_dir, dut_name, raw)
    assert all(c.get("allow_pickle") is False for c in np_load_calls), np_load_calls


def _npy(arr, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kw)
    return buf.getvalue()


@fuzz(100)
@given(st.sampled_from([n for n, f in DUT_TARGETS if f == "npy"] + ["l000.shift.hex"]), st.data())
def test_dut_npy_mutations(work, golden_dir, np_load_calls, name, data):
    gold = _golden_values(golden_dir, name)
    dut_name = name.rsplit(".", 1)[0] + ".npy"
    kind = data.draw(st.sampled_from(["dtype", "shape", "object", "structured", "unicode", "truncate", "flip",
                                      "header", "npz", "random", "big_endian", "fortran"]))
    if kind == "dtype":
        raw = _npy(gold.astype(data.draw(st.sampled_from([np.float32, np.float64, np.bool_, np.complex64,
                                                          np.uint64, np.int8, np.uint8, np.float16]))))
    elif kind == "shape":
        n = data.draw(st.integers(0, gold.size + 3))
        raw = _npy(np.resize(gold, n).reshape(data.draw(st.sampled_from([(n,), (1, n), (n, 1)]))))
    elif kind == "object":
        raw = _npy(gold.astype(object), allow_pickle=True)
    elif kind == "structured":
        raw = _npy(np.zeros(gold.size, dtype=[("a", "<i4"), ("b", "<i4")]))
    elif kind == "unicode":
        raw = _npy(gold.astype(str))
    elif kind == "big_endian":
        raw = _npy(gold.astype(">i8"))
    elif kind == "fortran":
        raw = _npy(np.asfortranarray(gold.reshape(-1, 1).repeat(2, axis=1))[:, :1])
    elif kind == "npz":
        buf = io.BytesIO()
        np.savez(buf, a=gold)
        raw = buf.getvalue()
    elif kind == "random":
        raw = data.draw(st.binary(max_size=300))
    else:
        raw = bytearray(_npy(gold))
        if kind == "truncate":
            raw = raw[:data.draw(st.integers(0, len(raw)))]
        elif kind == "flip":
            for _ in range(data.draw(st.integers(1, 4))):
                raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        else:   # rewrite the header dict
            hl = struct.unpack_from("<H", raw, 8)[0]
            new = data.draw(st.sampled_from([
                "{'descr': '<i8', 'fortran_order': False, 'shape': (1099511627776,), }",
                "{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
                "{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
                "{'descr': '<i8', 'fortran_order': False, 'shape': (-16,), }",
                "{'descr': 'O', 'fortran_order': False, 'shape': (16,), }",
                "{'descr': '<f8', 'fortran_order': False, 'shape': (16,), }",
                "{'descr': '<i8', 'fortran_order': 1, 'shape': (16,), }",
                "{'descr': [('a', '<i8')], 'fortran_order': False, 'shape': (16,), }",
                "{'descr': '<i8', 'shape': (16,), }",
                "{'descr': '<i8', 'fortran_order': False, 'shape': 16, }",
                "{'descr': '<i8', 'fortran_order': False, 'shape': (16,), 'x': __import__('os'), }",
                "[1, 2, 3]", "{", "",
            ]))
            body = new.encode("latin1")
            body += b" " * ((hl - len(body) - 1) % 64) + b"\n" if len(body) < hl else b"\n"
            raw = raw[:8] + struct.pack("<H", len(body)) + body + raw[10 + hl:]
        raw = bytes(raw)
    f = check_dut_file(work, golden_dir, dut_name, raw)
    if kind in ("object", "npz", "structured", "unicode"):
        assert f.status == "error", f
    assert all(c.get("allow_pickle") is False for c in np_load_calls), np_load_calls


def _npy_with_header(header: str) -> bytes:
    body = header.encode("latin1")
    body += b" " * (63 - (10 + len(body)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body + b"\0" * 64


@pytest.mark.parametrize("make, words", [
    (lambda g: _npz(a=g), "not a readable .npy"),                                         # was AttributeError
    (lambda g: _npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (1099511627776,), }"),
     "expected"),                                                                         # was MemoryError
    (lambda g: _npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (10**23,), }"),
     "not a readable"),
    (lambda g: _npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999999999999999,), }"),
     "expected"),                                                                         # was OverflowError
    (lambda g: _npy_with_header("{'descr': '<i1', 'fortran_order': False, 'shape': (%d,), }" % g.size)[:-60],
     "truncated"),
    (lambda g: b"garbage", "not a readable .npy"),      # numpy's advice to load it "unsafely" is not shown
    (lambda g: _npy_with_header("{"), "not a readable .npy"),                           # was tokenize.TokenError
    (lambda g: _npy_with_header("{'descr': '<i8', 'fortran_order': False, 'shape': (16,), "
                                "'x': __import__('os').system('false'), }"), "not a readable .npy"),
    (lambda g: _npy(g.astype(np.uint64)), "does not fit"),            # int64 cast would wrap -k back to -k
    (lambda g: _npy(g.astype(object), allow_pickle=True), "not an integer type"),
], ids=["npz", "shape-2^40", "shape-expression", "shape-10^23", "truncated", "garbage", "header-{",
        "header-call", "uint64-wrap", "object"])
def test_dut_npy_crafted(work, golden_dir, np_load_calls, make, words):
    gold = _golden_values(golden_dir, "l002.out.npy")
    assert gold.min() < 0
    f = check_dut_file(work, golden_dir, "l002.out.npy", make(gold))
    assert f.status == "error" and words in f.error and "allow_pickle" not in f.error, f.error
    assert all(c.get("allow_pickle") is False for c in np_load_calls), np_load_calls


@pytest.mark.parametrize("token", ["99999999999999999999999999", "-99999999999999999999999999",
                                   "ffffffffffffffffffffffffff", "9" * 100000])
def test_dut_text_values_beyond_int64(work, golden_dir, token):
    for name in ("l000.bias.dat", "l000.bias.hex"):
        lines = _as_text(_golden_values(golden_dir, name), name[-3:], _entry(golden_dir, name)).decode().split("\n")
        lines[3] = token
        f = check_dut_file(work, golden_dir, name, "\n".join(lines).encode())
        assert f.status == "error" and ":4:" in f.error, f.error     # was OverflowError


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_dut_pickled_npy_is_never_unpickled(work, golden_dir, np_load_calls):
    """An .npy whose object payload would run code when unpickled: refused, nothing runs."""
    marker = work / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))
    raw = _npy(np.array([Evil(), 1], dtype=object), allow_pickle=True)
    assert b"makedirs" in raw
    f = check_dut_file(work, golden_dir, "l001.shift.npy", raw)
    assert f.status == "error" and ("pickle" in f.error.lower() or "object" in f.error.lower()), f.error
    assert not marker.exists()
    # a raw pickle stream named .npy
    f = check_dut_file(work, golden_dir, "l001.shift.npy", pickle.dumps(Evil()))
    assert f.status == "error" and not marker.exists()
    # the header check refuses both before numpy.load; a valid file is read with allow_pickle=False
    assert check_dut_file(work, golden_dir, "l001.shift.npy",
                          (golden_dir / "l001.shift.npy").read_bytes()).status == "ok"
    f = check_dut_file(work, golden_dir, "l001.shift.npy", _npy(_golden_values(golden_dir, "l001.shift.npy")
                                                               .astype(np.int16)))
    assert f.status == "ok"
    assert np_load_calls and all(c.get("allow_pickle") is False for c in np_load_calls)


@pytest.fixture(scope="module")
def golden_copy(work, golden_dir):
    """A golden directory whose vector files are links to the real export (only the manifest
    is rewritten per example), and a DUT directory that exercises comparison and hints."""
    g = work / "golden_copy"
    g.mkdir()
    for p in golden_dir.iterdir():
        if p.name != "manifest.json":
            os.symlink(p, g / p.name)
    dut = work / "dut_fixed"
    dut.mkdir()
    out = _golden_values(golden_dir, "l002.out.hex").copy()
    out[::997] += 1                                     # some mismatches -> hints and golden context
    (dut / "l002.out.dat").write_bytes(vectors.to_dat_bytes(out))
    shutil.copy(golden_dir / "l000.shift.hex", dut)
    (dut / "l001.acc.hex").write_text("zz\n")
    (dut / "input.npy").write_bytes(b"garbage")
    (dut / "l007.out.hex").write_text("00\n")
    return g, dut, (golden_dir / "manifest.json").read_text()


def check_manifest(g: Path, dut: Path, text: bytes):
    man = g / "manifest.json"
    man.write_bytes(text)
    rep, exc = attempt(lambda: verify.verify(g, dut, max_report=2))
    if exc is not None:
        assert_user_error(exc, man, GoldenError)
        return exc
    note(f"report: {rep.counts['compared']} compared, exit status {rep.exit_status}")
    json.loads(rep.to_json())
    rep.format_text()
    for f in rep.files:
        if f.error:
            assert len(f.error.splitlines()) == 1, repr(f.error)
    return rep


@fuzz(150)
@given(st.data())
def test_manifest_json_mutations(golden_copy, data):
    g, dut, text = golden_copy
    m = json.loads(text)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in json_paths(m) if not (len(p) >= 2 and p[0] == "files" and p[-1] == "sha256")]
        if not paths:
            break
        if data.draw(st.integers(0, 2)) == 0:        # aim at the parts the comparison reads
            focus = [p for p in paths if p[0] in ("files", "layers") and len(p) >= 3]
            paths = focus or paths
        mutate_json(m, data.draw(st.sampled_from(paths)), data.draw(JSON_OPS), data.draw(NASTY_JSON))
    check_manifest(g, dut, json.dumps(m).encode())


@fuzz(60)
@given(st.integers(0, 1 << 30), st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), max_size=4))
def test_manifest_truncated_or_flipped(golden_copy, cut, flips):
    g, dut, text = golden_copy
    raw = bytearray(text.encode())
    if not flips:
        del raw[cut % len(raw):]
    for pos, byte in flips:
        raw[pos % len(raw)] = byte
    check_manifest(g, dut, bytes(raw))


TARGETED_MANIFEST = {
    "huge shape": lambda m: _mf(m, "l002.out", shape=[10 ** 30]),
    "shape wraps int64": lambda m: _mf(m, "l002.out", shape=[2 ** 32, 2 ** 32]),
    "bits 64 unsigned": lambda m: _mf(m, "l000.shift", bits=64, signed=False, sha256=None),
    "bits 1": lambda m: _mf(m, "l002.out", bits=1),
    "rounding not a string": lambda m: (_mf(m, "l002.out", rounding=[1]), m["layers"][2]["meta"].update(rounding={})),
    "layout garbage": lambda m: _mf(m, "l002.out", layout=[1]),
    "layer meta w_frac huge": lambda m: m["layers"][2]["meta"].update(w_frac=[2 ** 70]),
    "layer meta frac infinite": lambda m: m["layers"][2]["meta"].update(in_fmt={"frac": float("inf")}),
    "layer meta shift huge": lambda m: m["layers"][2].update(kind="shortcut", meta={"shift": 10 ** 30}),
    "in_shapes garbage": lambda m: m["layers"][2].update(kind="route", in_shapes=[[None]]),
    "layers not objects": lambda m: m.update(layers=[1, 2]),
    "files not objects": lambda m: m.update(files=[None]),
    "path traversal": lambda m: _mf(m, "l000.shift", path="../../etc/passwd"),
    "duplicate index": lambda m: m["layers"].append(m["layers"][0]),
    "huge field value": lambda m: _mf(m, "l000.shift", bits="b" * 100000),
    "huge path": lambda m: _mf(m, "l000.shift", path="p" * 100000),
    "path with newline": lambda m: _mf(m, "l000.shift", path="l000.shift\n.hex", format="hex", bits="x"),
    "huge format_version": lambda m: m.update(format_version=["v" * 100] * 1000),
}


def _mf(m, stem, **fields):
    """Update every manifest entry of a stage (all its formats)."""
    for e in m["files"]:
        if e["path"].rsplit(".", 1)[0] == stem:
            e.update(fields)


#: Targeted manifest mutations the loader must refuse as a whole (the rest are read with care).
MANIFEST_REFUSED = {"huge shape", "shape wraps int64", "in_shapes garbage", "layers not objects",
                    "files not objects", "path traversal", "huge field value", "huge path", "huge format_version",
                    "path with newline",
                    "layer meta frac infinite"}       # Infinity is not JSON: the hardened reader (safejson) refuses it


@pytest.mark.parametrize("what", sorted(TARGETED_MANIFEST))
def test_manifest_targeted(golden_copy, what):
    g, dut, text = golden_copy
    m = json.loads(text)
    TARGETED_MANIFEST[what](m)
    res = check_manifest(g, dut, json.dumps(m).encode())
    assert isinstance(res, GoldenError) == (what in MANIFEST_REFUSED), repr(res)


# ================================================================================================
# 6. the command line: one line on stderr, status 2, no traceback
@pytest.fixture(scope="module")
def bad_inputs(work, model_files, golden_dir):
    d = work / "bad"
    d.mkdir()
    (d / "bad.cfg").write_text(MINI_CFG.read_text().replace("filters=32", "filters=10000000", 1))
    (d / "nul.cfg").write_bytes(MINI_CFG.read_bytes().replace(b"stride=2", b"stride=\x002", 1))
    (d / "short.weights").write_bytes(MINI_WEIGHT_BYTES[:-4])
    (d / "nan.weights").write_bytes(MINI_WEIGHT_BYTES[:20] + np.full((len(MINI_WEIGHT_BYTES) - 20) // 4, np.nan,
                                                                       "<f4").tobytes())
    (d / "huge.png").write_bytes(png_with_header(100_000, 100_000))
    (d / "trunc.png").write_bytes(image_bytes("png-rgb")[:60])
    (d / "trunc.tif").write_bytes(image_bytes("tiff-rgb")[:60])        # Pillow warns, then fails
    (d / "trunc.mdfi").write_bytes(model_files["mini"][:1000])
    header, data = split_model(model_files["mini"])
    TARGETED["w_frac huge"](header)
    (d / "wfrac.mdfi").write_bytes(join_model(header, data))
    g = d / "golden"
    g.mkdir()
    m = json.loads((golden_dir / "manifest.json").read_text())
    m["files"][0]["bits"] = "8"
    (g / "manifest.json").write_text(json.dumps(m))
    (d / "dut").mkdir()
    (d / "image.png").write_bytes(image_bytes("png-rgb"))
    return d


def _cli_cases(d: Path):
    cfg, w, img = str(MINI_CFG), str(MINI_WEIGHTS), str(d / "image.png")
    det = ["detect", "--float", "--out", "none"]
    return {
        "cfg filters": (det + [img, "--cfg", str(d / "bad.cfg"), "--weights", w], str(d / "bad.cfg")),
        "cfg NUL": (det + [img, "--cfg", str(d / "nul.cfg"), "--weights", w], str(d / "nul.cfg") + ":"),
        "weights short": (det + [img, "--cfg", cfg, "--weights", str(d / "short.weights")], "short.weights"),
        "weights NaN": (det + [img, "--cfg", cfg, "--weights", str(d / "nan.weights")], "nan.weights"),
        "image huge": (det + [str(d / "huge.png"), "--cfg", cfg, "--weights", w], "MDFI_MAX_IMAGE_PIXELS"),
        "image truncated": (det + [str(d / "trunc.png"), "--cfg", cfg, "--weights", w], "trunc.png"),
        "tiff truncated": (det + [str(d / "trunc.tif"), "--cfg", cfg, "--weights", w], "trunc.tif"),
        "mdfi truncated": (["info", str(d / "trunc.mdfi")], "trunc.mdfi"),
        "mdfi w_frac": (["info", str(d / "wfrac.mdfi")], "wfrac.mdfi"),
        "mdfi detect": (["detect", img, "--model", str(d / "wfrac.mdfi"), "--out", "none"], "wfrac.mdfi"),
        "manifest": (["verify", str(d / "golden"), str(d / "dut")], "manifest.json"),
        "golden dir missing": (["verify", str(d / "nope"), str(d / "dut")], "nope"),
    }


def _assert_cli_stderr(err: str, words: str):
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdfi: error: "), err
    assert words in lines[0], err


@pytest.mark.parametrize("case", ["cfg filters", "cfg NUL", "weights short", "weights NaN", "image huge",
                                  "image truncated", "tiff truncated", "mdfi truncated", "mdfi w_frac", "mdfi detect", "manifest",
                                  "golden dir missing"])
def test_cli_bad_inputs_in_process(bad_inputs, capsys, monkeypatch, tmp_path, case):
    monkeypatch.setenv("MDFI_HOME", str(tmp_path))
    argv, words = _cli_cases(bad_inputs)[case]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    _assert_cli_stderr(err, words)


@pytest.mark.parametrize("case", ["cfg filters", "tiff truncated", "mdfi w_frac"])
def test_cli_bad_inputs_subprocess(bad_inputs, tmp_path, case):
    argv, words = _cli_cases(bad_inputs)[case]
    env = dict(os.environ, MDFI_HOME=str(tmp_path))
    r = run_python(["-m", "mdfi", *argv], cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    _assert_cli_stderr(r.stderr, words)


# ================================================================================================
# 7. never unpickle, never eval
_FORBIDDEN_NAMES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}


def _code_tokens(path: Path):
    with open(path, "rb") as fh:
        return [t for t in tokenize.tokenize(fh.readline)
                if t.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE,
                                  tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING)
                and not (sys.version_info >= (3, 12) and t.type in (tokenize.FSTRING_START,
                                                                     tokenize.FSTRING_MIDDLE,
                                                                     tokenize.FSTRING_END))]


def find_unsafe_code(path: Path):
    """Uses of pickle, eval/exec and numpy.load without allow_pickle=False (comments and
    docstrings excluded)."""
    toks = _code_tokens(path)
    bad = []
    for i, t in enumerate(toks):
        prev = toks[i - 1].string if i else ""
        nxt = toks[i + 1].string if i + 1 < len(toks) else ""
        where = f"{path.relative_to(REPO) if REPO in path.parents else path.name}:{t.start[0]}"
        if t.type == tokenize.NAME and t.string in _FORBIDDEN_NAMES:
            bad.append(f"{where}: uses {t.string}")
        if t.type == tokenize.NAME and t.string in ("eval", "exec", "__import__", "compile") and nxt == "(" \
                and prev != ".":
            bad.append(f"{where}: calls {t.string}()")
        if t.string == "allow_pickle" and nxt == "=" and toks[i + 2].string != "False":
            bad.append(f"{where}: allow_pickle={toks[i + 2].string}")
        if t.string == "load" and prev == "." and i >= 2 and toks[i - 2].string in ("np", "numpy") and nxt == "(":
            depth, j, args = 0, i + 1, []
            while j < len(toks):
                s = toks[j].string
                depth += s in "([{" and toks[j].type == tokenize.OP
                depth -= s in ")]}" and toks[j].type == tokenize.OP
                args.append(s)
                if depth == 0:
                    break
                j += 1
            if "allow_pickle=False" not in "".join(args):
                bad.append(f"{where}: numpy.load without allow_pickle=False")
        if t.string == "import" and prev == "numpy" and nxt == "load":
            bad.append(f"{where}: imports numpy.load by name")
    return bad


def test_find_unsafe_code_catches_what_it_should(tmp_path):
    p = tmp_path / "probe.py"
    p.write_text('"""pickle and eval( in a docstring are fine."""\n# pickle in a comment too\n'
                 "import pickle\nx = eval('1')\nnp.load(f)\nnp.load(f, allow_pickle=True)\n"
                 "np.load(f, allow_pickle=False)\nm.eval()\n")
    found = find_unsafe_code(p)
    assert [f.split(": ", 1)[1] for f in found] == [
        "uses pickle", "calls eval()", "numpy.load without allow_pickle=False",
        "numpy.load without allow_pickle=False", "allow_pickle=True"], found


def test_package_never_unpickles_or_evals():
    sources = sorted((REPO / "mdfi").rglob("*.py"))
    assert len(sources) > 20
    bad = [b for p in sources for b in find_unsafe_code(p)]
    assert not bad, "\n".join(bad)
    # Cython sources: a plain text check (no eval/exec/pickle, np.load only with allow_pickle=False).
    for p in sorted((REPO / "mdfi").rglob("*.pyx")):
        code = "\n".join(l.split("#", 1)[0] for l in p.read_text().splitlines())
        assert not re.search(r"\bpickle\b|\beval\s*\(|\bexec\s*\(|\bmarshal\b", code), p
        assert "np.load(" not in code or "allow_pickle=False" in code, p


# -- special files: never opened, never block ---------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.parametrize("kind", ["cfg", "weights", "mdfi", "image", "names", "calib", "vector", "manifest"])
def test_fifos_and_devices_are_refused_without_blocking(tmp_path, kind):
    import mdfi.quant.calibrate as calibrate_mod
    from mdfi.hw import vectors as vec_mod
    from mdfi.hw import verify as verify_mod
    from mdfi import zoo as zoo_mod
    from mdfi.image import load_image
    from mdfi.quant.modelfile import load as load_mdfi
    from mdfi.darknet.network import Network as Net
    from mdfi.darknet.weights import load_weights as lw
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    mini = Net.from_cfg(MINI_DIR / "mini-yolov3.cfg", warn=False) if kind == "weights" else None
    calls = {
        "cfg": lambda p: Net.from_cfg(p),
        "weights": lambda p: lw(mini, p),
        "mdfi": lambda p: load_mdfi(p),
        "image": lambda p: load_image(p),
        "names": lambda p: zoo_mod.load_names(p),
        "calib": lambda p: calibrate_mod.CalibStats.from_json(p),
        "vector": lambda p: vec_mod.read(p, "hex", 8, True, 4),
    }
    targets = [fifo, "/dev/zero"] if os.path.exists("/dev/zero") else [fifo]
    for target in targets:
        if kind == "manifest":
            d = tmp_path / f"g{len(str(target))}"
            d.mkdir()
            os.symlink(target, d / "manifest.json")
            with pytest.raises(MDFIError, match="not a regular file"):
                verify_mod.load_manifest(str(d))
            continue
        with pytest.raises(MDFIError, match="not a regular file"):
            calls[kind](str(target))
