"""Fuzzing the readers of `mdfi verify`: DUT vector files and the golden manifest (issue 6; the rules
and shared helpers: fuzz_common.py)."""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import shutil
import struct
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdfi.hw import vectors, verify
from mdfi.errors import GoldenError

import fuzz_common
from fuzz_common import (fuzz, MAX_MESSAGE, fresh, attempt, note, assert_user_error, NASTY_JSON, json_paths,
                         mutate_json, JSON_OPS)

# fixtures shared with the other test_fuzz_* modules (defined in fuzz_common.py)
work = fuzz_common.work
golden_dir = fuzz_common.golden_dir


# ================================================================================================
# 5. golden vectors for `mdfi verify`

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
