"""Fuzzing the Darknet ``.cfg`` reader (issue 6; the rules and shared helpers: fuzz_common.py)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mdfi.quant import modelfile
from mdfi.engine import FixedEngine
from mdfi.errors import CfgError, LimitError, MDFIError, ModelFileError
from mdfi.layers import DARKNET_ONLY, REGISTRY
from mdfi.limits import MAX_ACTIVATION_BYTES, MAX_DIM
from mdfi.darknet.network import Network
from mdfi.quant.quantize import quantize_network
from mdfi.darknet.weights import random_weights

from conftest import REPO

import fuzz_common
from fuzz_common import (fuzz, MINI_CFG, fresh, attempt, note, assert_user_error, split_model, join_model,
                         check_model_bytes)

# fixtures shared with the other test_fuzz_* modules (defined in fuzz_common.py)
work = fuzz_common.work
model_files = fuzz_common.model_files


# ================================================================================================
# 1. Darknet .cfg
CFG_SOURCES = {p.name: p.read_text() for p in sorted((REPO / "cfg").glob("*.cfg"))}
CFG_SOURCES["mini-yolov3.cfg"] = MINI_CFG.read_text()
CFG_NAMES = sorted(CFG_SOURCES)
assert len(CFG_NAMES) == 10, CFG_NAMES       # the shipped cfgs (pjreddie, AlexeyAB, Yolo-Fastest) and mini-yolov3

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
    "avgpool": ["stride"],          # reads no key (AB src/parser.c:861-872): the audit warns
    "scale_channels": ["from", "scale_wh", "activation"],
    "sam": ["from", "activation"],
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
        required = {"route": "layers", "shortcut": "from", "scale_channels": "from", "sam": "from"}.get(kind)
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
