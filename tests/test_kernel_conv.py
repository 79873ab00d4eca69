"""The C convolution kernel (mdfi._ext._conv) against its executable specification,
mdfi.layers.convolutional.conv2d_int_ref: bit-exact on every code path and thread count,
and ShapeError (never a crash) on every inconsistent argument."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.errors import ShapeError
from mdfi.layers.convolutional import conv2d_int_ref
from conftest import run_python

_conv = pytest.importorskip("mdfi._ext._conv")

ACTS = ("linear", "leaky", "relu")
ROUNDINGS = ("half_up", "truncate")
PATHS = _conv.available_simd_paths()


# -- helpers ---------------------------------------------------------------------------
def int_dtype(bits):
    return np.int8 if bits <= 8 else np.int16


def fill(rng, shape, lo, hi, style, dtype):
    """Integers in [lo, hi] of a given style (random / max / min / zero / alt / edges)."""
    if style == "random":
        a = rng.integers(lo, hi + 1, size=shape)
    elif style == "max":
        a = np.full(shape, hi)
    elif style == "min":
        a = np.full(shape, lo)
    elif style == "zero":
        a = np.zeros(shape, np.int64)
    elif style == "alt":  # alternating extremes along the flattened array
        a = np.where(np.arange(int(np.prod(shape))) % 2 == 0, hi, lo).reshape(shape)
    elif style == "edges":  # mostly extreme values, some random
        a = rng.choice([lo, hi, lo + 1, hi - 1, 0], size=shape)
        mask = rng.random(shape) < 0.2
        a = np.where(mask, rng.integers(lo, hi + 1, size=shape), a)
    else:
        raise ValueError(style)
    return np.asarray(a).astype(dtype)


def run_kernel(x, w, bias, shift, *, k, s, p, rounding, bits, act, acc64, nthreads, simd,
               out_dtype=None, packed=None, pad_value=0, zero_out=0):
    if packed is None:
        packed = _conv.pack_weights(w)
    m = w.shape[0]
    oh = _conv.out_size(x.shape[1], k, s, p)
    ow = _conv.out_size(x.shape[2], k, s, p)
    out = np.full((m, oh, ow), 77, out_dtype or int_dtype(bits))
    _conv.conv2d(x, packed, bias, shift, out, ksize=k, stride=s, pad=p,
                 rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act),
                 acc64=acc64, nthreads=nthreads, simd=simd, pad_value=pad_value, zero_out=zero_out)
    return out


def reference(x, w, bias, shift, *, k, s, p, rounding, bits, act, pad_value=0, zero_out=0):
    return conv2d_int_ref(x, w, bias, shift, size=k, stride=s, padding=p, rounding=rounding,
                          bits=bits, activation=act, pad_value=pad_value, zero_out=zero_out)


def check_all_paths(x, w, bias, shift, *, threads=(1, 2, 3), acc64s=(0, 1), **kw):
    ref = reference(x, w, bias, shift, **kw)
    packed = _conv.pack_weights(w)
    for simd in PATHS:
        for nthreads in threads:
            for acc64 in acc64s:
                out = run_kernel(x, w, bias, shift, acc64=acc64, nthreads=nthreads, simd=simd,
                                 packed=packed, **kw)
                assert out.dtype == int_dtype(kw["bits"])
                if not np.array_equal(out, ref):
                    bad = np.argwhere(out != ref)[0]
                    raise AssertionError(
                        f"mismatch ({simd}, {nthreads} threads, acc64={acc64}) at {tuple(bad)}: "
                        f"{out[tuple(bad)]} != {ref[tuple(bad)]}; x {x.shape} {x.dtype}, "
                        f"w {w.shape} {w.dtype}, {kw}")


def int32_ok(x, w, bias, pad_value=0):
    """Does the quantizer's acc64 == 0 guarantee |sum| + |bias| < 2**31 hold (the padding
    value is summed too)?"""
    k = int(np.prod(w.shape[1:]))
    xmax = max(int(np.abs(x.astype(np.int64)).max()), abs(int(pad_value)))
    pmax = k * int(np.abs(w.astype(np.int64)).max()) * xmax
    return pmax + int(np.abs(bias).max()) < 2**31


# -- random shapes, widths, codes ------------------------------------------------------------
SHAPES = [  # C, H, W, M, k, stride, pad
    (3, 7, 5, 7, 3, 1, 1), (1, 1, 1, 1, 1, 1, 0), (1, 1, 1, 5, 3, 1, 1), (5, 1, 1, 7, 1, 1, 0),
    (17, 9, 11, 13, 3, 2, 1), (33, 13, 13, 255, 1, 1, 0), (5, 7, 5, 1, 5, 1, 2),
    (3, 17, 16, 16, 3, 1, 1), (17, 8, 9, 7, 3, 2, 0), (33, 5, 7, 19, 3, 1, 2),
    (1, 18, 21, 3, 3, 2, 1), (5, 6, 6, 255, 3, 1, 1), (3, 11, 11, 7, 5, 2, 2),
    (16, 26, 26, 12, 1, 1, 0), (2, 3, 3, 1, 3, 1, 0), (7, 4, 33, 5, 1, 2, 1),
    (3, 20, 37, 9, 3, 2, 1),   # 3 channels, stride 2 (AVX2: tap-pair K order, gather-free packing)
    (131, 5, 7, 9, 1, 1, 0), (801, 3, 6, 7, 1, 1, 0),   # 1x1 of >= 32 channels (AVX2: B packed from x), odd C, 2 K blocks
]


def _random_case(rng, shape):
    c, h, w, m, k, s, p = shape
    xkind = rng.choice(["u8", "s8", "s16"])
    if xkind == "u8":
        xlo, xhi, xdt = 0, 255, np.uint8
    else:
        xbits = int(rng.integers(2, 9)) if xkind == "s8" else int(rng.integers(9, 17))
        xlo, xhi, xdt = fp.qmin(xbits), fp.qmax(xbits), int_dtype(xbits)
    wbits = int(rng.integers(2, 17))
    style_x = rng.choice(["random"] * 5 + ["max", "min", "zero", "alt", "edges"])
    style_w = rng.choice(["random"] * 5 + ["max", "min", "alt", "edges"])
    x = fill(rng, (c, h, w), xlo, xhi, style_x, xdt)
    wt = fill(rng, (m, c, k, k), fp.qmin(wbits), fp.qmax(wbits), style_w, int_dtype(wbits))
    pmax = c * k * k * (1 << (wbits - 1)) * max(abs(xlo), xhi)
    bias = rng.integers(-pmax - 1, pmax + 2, size=m).astype(np.int64)
    # typical right shifts around log2(pmax) - bits, plus 0, negative and large ones
    typical = max(int(pmax).bit_length() - 8, 0)
    choices = [typical, typical + 1, max(typical - 3, 0), 0, 1, -1, -3, -31, 40, 47]
    shift = rng.choice(choices, size=m).astype(np.int32)
    bits = int(rng.integers(2, 17))
    return x, wt, bias, shift, dict(k=k, s=s, p=p, rounding=str(rng.choice(ROUNDINGS)),
                                    bits=bits, act=str(rng.choice(ACTS)))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_random_shapes_exact(shape, seed):
    rng = np.random.default_rng(1000 * seed + SHAPES.index(shape))
    x, wt, bias, shift, kw = _random_case(rng, shape)
    acc64s = (0, 1) if int32_ok(x, wt, bias) else (1,)
    check_all_paths(x, wt, bias, shift, threads=(1 + seed % 3,), acc64s=acc64s, **kw)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_every_code_8bit(act, rounding):
    """The shipping configuration: uint8 pixels / int8 activations, int8 weights."""
    rng = np.random.default_rng(7)
    for xdt in (np.uint8, np.int8):
        info = np.iinfo(xdt)
        x = rng.integers(info.min, info.max + 1, size=(5, 12, 10)).astype(xdt)
        wt = rng.integers(-128, 128, size=(13, 5, 3, 3)).astype(np.int8)
        bias = rng.integers(-20000, 20000, size=13).astype(np.int64)
        shift = rng.integers(6, 12, size=13).astype(np.int32)
        shift[:3] = [0, -2, 20]
        check_all_paths(x, wt, bias, shift, k=3, s=1, p=1, rounding=rounding, bits=8, act=act)


# -- the requantizing epilogue over every int16 accumulator, ties included ----------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_exhaustive_epilogue(act, rounding):
    """1x1 conv with weight +-1: the accumulators are every int16 value (+ bias), so every
    residue modulo 2**s -- every tie -- goes through the epilogue, for several shifts."""
    x = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16).reshape(1, 256, 256)
    wt = np.array([1, -1, 1, 1, -1, 1, 1, 1], np.int16).reshape(8, 1, 1, 1)
    shift = np.array([0, 1, 2, 5, 8, -1, 13, 16], np.int32)
    for bias0, bits in ((0, 8), (3, 16), (-(1 << 15), 12), (1 << 20, 5)):
        bias = np.array([bias0, -bias0, bias0 + 1, bias0, 7, 0, -bias0, bias0], np.int64)
        check_all_paths(x, wt, bias, shift, threads=(1, 2), k=1, s=1, p=0, rounding=rounding,
                        bits=bits, act=act)


def test_bias_and_accumulator_bounds():
    """|bias| at 2**47, large right shifts and left shifts that saturate (acc64 path)."""
    rng = np.random.default_rng(3)
    x = rng.integers(-32768, 32768, size=(9, 6, 7)).astype(np.int16)
    wt = rng.integers(-32768, 32768, size=(12, 9, 3, 3)).astype(np.int16)
    bias = np.array([2**47, -2**47, 2**47 - 1, -2**47 + 1, 0, 1] * 2, np.int64)
    shift = np.array([47, 47, 40, 35, -31, -1, 0, 47, 20, 30, 47, 46], np.int32)
    for act in ACTS:
        for rounding in ROUNDINGS:
            check_all_paths(x, wt, bias, shift, threads=(1, 2), acc64s=(1,), k=3, s=1, p=1,
                            rounding=rounding, bits=16, act=act)


@pytest.mark.parametrize("c", [1, 2, 17])
def test_int16_min_times_min(c):
    """x = w = -32768 everywhere: the one vpmaddwd pair sum (2**31) that wraps in int32."""
    x = np.full((c, 5, 6), -32768, np.int16)
    wt = np.full((7, c, 3, 3), -32768, np.int16)
    bias = np.zeros(7, np.int64)
    shift = np.full(7, 30, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="half_up", bits=16, act="linear")
    check_all_paths(x, wt, bias, shift, threads=(1, 2), acc64s=(1,), **kw)
    if c == 1:  # 9 * 2**30 does not fit int32; a 1x1 kernel does
        check_all_paths(x, np.ascontiguousarray(wt[:, :, :1, :1]), bias, shift, threads=(1, 2), acc64s=(0,),
                        **{**kw, "k": 1, "p": 0})


def test_wide_sums_in_int64_chunks():
    """12-bit weights x 16-bit activations: the AVX2 acc64 path sums short int32 chunks."""
    rng = np.random.default_rng(5)
    x = fill(rng, (64, 9, 9), -32768, 32767, "edges", np.int16)
    wt = fill(rng, (11, 64, 3, 3), -2048, 2047, "edges", np.int16)
    bias = rng.integers(-2**40, 2**40, size=11).astype(np.int64)
    shift = rng.integers(20, 32, size=11).astype(np.int32)
    check_all_paths(x, wt, bias, shift, threads=(1, 2), acc64s=(1,), k=3, s=1, p=1,
                    rounding="half_up", bits=16, act="leaky")


def test_simd_equals_scalar_outside_the_int32_contract():
    """acc64 = 0 with sums that overflow int32: not a valid request, but both paths compute
    the same residue modulo 2**32, so they still agree bit for bit."""
    if len(PATHS) < 2:
        pytest.skip("no SIMD path on this CPU")
    rng = np.random.default_rng(11)
    x = rng.integers(-32768, 32768, size=(40, 8, 8)).astype(np.int16)
    wt = rng.integers(-32768, 32768, size=(9, 40, 3, 3)).astype(np.int16)
    wt[0] = -32768
    x[:, :4] = -32768
    bias = rng.integers(-2**40, 2**40, size=9).astype(np.int64)
    shift = np.full(9, 30, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="half_up", bits=16, act="leaky", acc64=0)
    a = run_kernel(x, wt, bias, shift, nthreads=1, simd="scalar", **kw)
    b = run_kernel(x, wt, bias, shift, nthreads=2, simd="avx2", **kw)
    assert np.array_equal(a, b)


# -- blocking and threading regimes ------------------------------------------------------
@pytest.mark.parametrize("shape", [
    (128, 13, 13, 70, 3, 1, 1),     # K blocked (K2 = 576 pairs), few tiles: threads split M
    (96, 30, 31, 13, 3, 1, 1),      # K blocked, many tiles: threads split N
    (300, 9, 9, 40, 1, 1, 0),       # 1x1, odd channel count
    (64, 40, 40, 9, 3, 2, 1),       # stride 2, several tile blocks
    (3, 64, 70, 16, 3, 1, 1),       # first-layer-like, uint8
])
def test_blocking_regimes(shape):
    c, h, w, m, k, s, p = shape
    rng = np.random.default_rng(c * h + m)
    xdt = np.uint8 if c == 3 else np.int8
    info = np.iinfo(xdt)
    x = rng.integers(info.min, info.max + 1, size=(c, h, w)).astype(xdt)
    wt = rng.integers(-128, 128, size=(m, c, k, k)).astype(np.int8)
    bias = rng.integers(-50000, 50000, size=m).astype(np.int64)
    shift = rng.integers(8, 14, size=m).astype(np.int32)
    check_all_paths(x, wt, bias, shift, threads=(1, 2, 3), k=k, s=s, p=p, rounding="half_up",
                    bits=8, act="leaky")


def test_int16_output_for_narrow_bits_and_scratch_reuse():
    rng = np.random.default_rng(2)
    x = rng.integers(-8, 8, size=(6, 9, 9)).astype(np.int8)
    wt = rng.integers(-8, 8, size=(5, 6, 3, 3)).astype(np.int8)
    bias = rng.integers(-100, 100, size=5).astype(np.int64)
    shift = np.full(5, 3, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="truncate", bits=6, act="relu")
    ref = reference(x, wt, bias, shift, **kw)
    packed = _conv.pack_weights(wt)
    scratch = np.empty(_conv.scratch_bytes(6, 9, 9, 5, 3, 1, 1, 2) + 3, np.uint8)[3:]  # unaligned
    out = np.empty((5, 9, 9), np.int16)
    for _ in range(2):
        _conv.conv2d(x, packed, bias, shift, out, ksize=3, stride=1, pad=1, rounding=1,
                     out_bits=6, act=2, acc64=0, nthreads=2, scratch=scratch)
        assert np.array_equal(out, ref)


def test_packed_info_and_paths():
    wt = np.arange(-60, 60, dtype=np.int8).reshape(4, 3, 5, 2)[:, :, :2, :]
    wt = np.ascontiguousarray(wt)
    m, c, k, dt, wmax = _conv.packed_info(_conv.pack_weights(wt))
    assert (m, c, k, dt) == (4, 3, 2, np.dtype(np.int8))
    assert wmax == int(np.abs(wt.astype(np.int64)).max())
    assert _conv.simd_path() in _conv.PATHS
    assert _conv.best_simd_path() in _conv.PATHS
    assert set(_conv.available_simd_paths()) <= set(_conv.PATHS)


@pytest.mark.parametrize("value,expected", [("0", "scalar"), ("scalar", "scalar"),
                                            ("avx2", "avx2"), ("avx512vnni", "avx512vnni"),
                                            ("neondot", "neondot"), ("", None), ("auto", None)])
def test_mdfi_simd_environment_switch(value, expected, tmp_path):
    """MDFI_SIMD selects a path; a path this CPU lacks falls back to the best one."""
    env = dict(os.environ, MDFI_SIMD=value)
    res = run_python(["-c", "from mdfi._ext import _conv; print(_conv.simd_path())"], cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    if expected not in _conv.available_simd_paths():
        expected = None
    assert res.stdout.strip() == (expected or _conv.best_simd_path())


# -- argument checking -----------------------------------------------------------------------
def _good():
    x = np.zeros((3, 8, 8), np.int8)
    wt = np.ones((4, 3, 3, 3), np.int8)
    return dict(x=x, packed=_conv.pack_weights(wt), bias=np.zeros(4, np.int64),
                shift=np.zeros(4, np.int32), out=np.zeros((4, 8, 8), np.int8),
                kw=dict(ksize=3, stride=1, pad=1, rounding=0, out_bits=8, act=1, acc64=0,
                        nthreads=1))


def _call(g):
    return _conv.conv2d(g["x"], g["packed"], g["bias"], g["shift"], g["out"], **g["kw"])


def test_good_arguments_pass():
    _call(_good())


BAD = {
    "x ndim": lambda g: g.update(x=np.zeros((3, 8), np.int8)),
    "x 4d": lambda g: g.update(x=np.zeros((1, 3, 8, 8), np.int8)),
    "x channels": lambda g: g.update(x=np.zeros((2, 8, 8), np.int8)),
    "x dtype": lambda g: g.update(x=np.zeros((3, 8, 8), np.int32)),
    "x float": lambda g: g.update(x=np.zeros((3, 8, 8), np.float32)),
    "x noncontig": lambda g: g.update(x=np.zeros((3, 8, 16), np.int8)[:, :, ::2]),
    "x empty": lambda g: g.update(x=np.zeros((3, 0, 8), np.int8)),
    "x list": lambda g: g.update(x=[[[0]]]),
    "x too small": lambda g: g.update(x=np.zeros((3, 1, 1), np.int8)) or g["kw"].update(pad=0),
    "packed dtype": lambda g: g.update(packed=g["packed"].view(np.int8)),
    "packed truncated": lambda g: g.update(packed=g["packed"][:-1].copy()),
    "packed corrupt": lambda g: g["packed"].__setitem__(slice(0, 4), 0),
    "packed header": lambda g: g["packed"].__setitem__(slice(8, 12), 255),
    "ksize": lambda g: g["kw"].update(ksize=1),
    "stride 0": lambda g: g["kw"].update(stride=0),
    "pad -1": lambda g: g["kw"].update(pad=-1),
    "bias length": lambda g: g.update(bias=np.zeros(5, np.int64)),
    "bias dtype": lambda g: g.update(bias=np.zeros(4, np.int32)),
    "bias bound": lambda g: g["bias"].__setitem__(2, 2**47 + 1),
    "shift length": lambda g: g.update(shift=np.zeros(3, np.int32)),
    "shift dtype": lambda g: g.update(shift=np.zeros(4, np.int64)),
    "shift low": lambda g: g["shift"].__setitem__(1, fp.MIN_SHIFT - 1),
    "shift high": lambda g: g["shift"].__setitem__(3, fp.MAX_SHIFT + 1),
    "out shape": lambda g: g.update(out=np.zeros((4, 8, 7), np.int8)),
    "out channels": lambda g: g.update(out=np.zeros((5, 8, 8), np.int8)),
    "out dtype": lambda g: g.update(out=np.zeros((4, 8, 8), np.int32)),
    "out readonly": lambda g: g["out"].setflags(write=False),
    "out int8 for 9 bits": lambda g: g["kw"].update(out_bits=9),
    "bits 1": lambda g: g["kw"].update(out_bits=1),
    "bits 17": lambda g: g["kw"].update(out_bits=17),
    "bits huge": lambda g: g["kw"].update(out_bits=2**40),
    "rounding": lambda g: g["kw"].update(rounding=2),
    "act": lambda g: g["kw"].update(act=3),
    "act str": lambda g: g["kw"].update(act="leaky"),
    "acc64": lambda g: g["kw"].update(acc64=2),
    "nthreads 0": lambda g: g["kw"].update(nthreads=0),
    "nthreads huge": lambda g: g["kw"].update(nthreads=10**6),
    "scratch small": lambda g: g["kw"].update(scratch=np.zeros(16, np.uint8)),
    "scratch dtype": lambda g: g["kw"].update(scratch=np.zeros(10**6, np.int32)),
    "simd name": lambda g: g["kw"].update(simd="sse9"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_raise_shape_error(name):
    g = _good()
    BAD[name](g)
    with pytest.raises(ShapeError):
        _call(g)


def test_accumulator_bound_is_checked():
    """K * max|w| * max|x| > 2**47 cannot be represented: ShapeError, not overflow."""
    c = 16384
    x = np.zeros((c, 1, 1), np.int16)
    wt = np.full((1, c, 3, 3), -32768, np.int16)
    out = np.zeros((1, 1, 1), np.int16)
    with pytest.raises(ShapeError, match="2\\^47"):
        _conv.conv2d(x, _conv.pack_weights(wt), np.zeros(1, np.int64), np.zeros(1, np.int32),
                     out, ksize=3, stride=1, pad=1, rounding=0, out_bits=16, act=0, acc64=1)


@pytest.mark.parametrize("w", [np.zeros((2, 3, 3), np.int8), np.zeros((2, 3, 3, 2), np.int8),
                               np.zeros((2, 3, 3, 3), np.int32), np.zeros((2, 0, 3, 3), np.int8),
                               np.zeros((2, 3, 6, 6), np.int16)[:, :, ::2, ::2], "w"])
def test_bad_weights_raise_shape_error(w):
    with pytest.raises(ShapeError):
        _conv.pack_weights(w)


def test_bad_sizes_raise_shape_error():
    with pytest.raises(ShapeError):
        _conv.scratch_bytes(3, 8, 8, 4, 3, 1, 1, 0)
    with pytest.raises(ShapeError):
        _conv.scratch_bytes(3, 1, 1, 4, 3, 1, 0, 1)
    with pytest.raises(ShapeError):
        _conv.out_size(2, 5, 1, 0)
    with pytest.raises(ShapeError):
        _conv.packed_info(np.zeros(10, np.uint8))
    with pytest.raises(ShapeError):
        _conv.set_simd_path("sse9")


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_threads_survive_fork(tmp_path):
    """libgomp's pool does not survive fork(): a child forked after a threaded call must
    still compute (on one thread) instead of hanging."""
    code = """
import multiprocessing as mp, numpy as np
from mdfi._ext import _conv
x = np.ones((16, 32, 32), np.int8); w = np.ones((8, 16, 3, 3), np.int8)
pk = _conv.pack_weights(w); b = np.zeros(8, np.int64); s = np.full(8, 4, np.int32)
def run(_=None):
    out = np.empty((8, 32, 32), np.int8)
    _conv.conv2d(x, pk, b, s, out, ksize=3, stride=1, pad=1, rounding=0, out_bits=8, act=1,
                 acc64=0, nthreads=2)
    return int(out.sum())
if __name__ == "__main__":
    first = run()
    with mp.get_context("fork").Pool(2) as pool:
        assert pool.map(run, range(3)) == [first] * 3
    print("ok")
"""
    res = run_python(["-c", code], cwd=tmp_path, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_concurrent_callers():
    """Several Python threads convolving at once (the GIL is released): one of them gets
    the worker pool, the others run on their own thread; every result is exact."""
    import threading
    rng = np.random.default_rng(21)
    x = rng.integers(-128, 128, size=(32, 20, 20)).astype(np.int8)
    wt = rng.integers(-128, 128, size=(24, 32, 3, 3)).astype(np.int8)
    bias = rng.integers(-5000, 5000, size=24).astype(np.int64)
    shift = np.full(24, 10, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="half_up", bits=8, act="leaky")
    ref = reference(x, wt, bias, shift, **kw)
    packed = _conv.pack_weights(wt)
    errors = []

    def job(i):
        try:
            for rep in range(10):
                out = run_kernel(x, wt, bias, shift, acc64=rep % 2, nthreads=1 + (i + rep) % 3,
                                 simd=PATHS[(i + rep) % len(PATHS)], packed=packed, **kw)
                if not np.array_equal(out, ref):
                    errors.append(i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=job, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- Winograd F(2x2,3x3) of the int16-pair SIMD paths (8-bit 3x3 stride-1 layers) ----------------
WINO_PATHS = [p for p in ("avx2", "avx512bw") if p in PATHS]


@pytest.mark.parametrize("winograd", [True, False])
@pytest.mark.parametrize("path", WINO_PATHS or ["avx2"])
def test_winograd_3x3_exact(path, winograd):
    """Random and edge-heavy 3x3 stride-1 8-bit layers (odd and tiny maps, padding 0-2, uint8
    and int8 inputs, widths 2..16, per-channel shifts) on the Winograd kernels and, switched
    off, on the direct int16-pair kernels."""
    if path not in PATHS:
        pytest.skip(f"{path} not available on this CPU ({_conv.cpu_features()})")
    _conv._set_winograd(winograd)
    try:
        rng = np.random.default_rng(77 + winograd)
        for i, (c, h, w, m, p) in enumerate([(32, 13, 13, 7, 1), (33, 1, 1, 6, 1), (64, 2, 3, 13, 1),
                                             (40, 5, 26, 1, 0), (35, 17, 9, 33, 2), (100, 26, 26, 16, 1),
                                             (32, 31, 34, 12, 1), (48, 3, 3, 5, 2), (16, 21, 18, 32, 1),
                                             (19, 9, 30, 5, 1),
                                             # 13 tile blocks, 7 panels: on 2 and 3 threads the
                                             # (block, panel group) items (mdfi_conv_wino.c, ngrid)
                                             (20, 28, 28, 40, 1),
                                             # two K blocks (260 channel pairs), a last panel of 4 rows
                                             (520, 6, 6, 10, 1)]):
            xkind = "u8" if i % 3 == 0 else "s8"
            xlo, xhi, xdt = (0, 255, np.uint8) if xkind == "u8" else (-128, 127, np.int8)
            x = fill(rng, (c, h, w), xlo, xhi, ["random", "edges", "max", "min", "alt"][i % 5], xdt)
            wt = fill(rng, (m, c, 3, 3), -128, 127, ["random", "edges", "alt", "max", "min"][i % 5], np.int8)
            pmax = c * 9 * 128 * max(-xlo, xhi)
            bias = rng.integers(-pmax, pmax + 1, size=m).astype(np.int64)
            shift = rng.choice([10, 12, 14, 16, 1, 0, -2, 33], size=m).astype(np.int32)
            for bits, rounding, act in ((8, "half_up", "leaky"), (5, "truncate", "relu"), (16, "half_up", "linear"),
                                        (2, "truncate", "leaky")):
                kw = dict(k=3, s=1, p=p, rounding=rounding, bits=bits, act=act)
                ref = reference(x, wt, bias, shift, **kw)
                for nthreads in (1, 2, 3):
                    out = run_kernel(x, wt, bias, shift, acc64=0, nthreads=nthreads, simd=path, **kw)
                    assert np.array_equal(out, ref), (path, winograd, i, bits, rounding, act, nthreads)
    finally:
        _conv._set_winograd(True)


@pytest.mark.parametrize("path", WINO_PATHS or ["avx2"])
def test_winograd_one_tile_block(path):
    """A last block of one tile (mdfi_conv_wino.c, wino_ukr1: steps of 4, 2 and 1 channel
    pairs): 2x2 maps (one tile) and 13x13 maps (49 tiles) with 17-27 input channels, random
    data, 1 and 2 threads."""
    if path not in PATHS:
        pytest.skip(f"{path} not available on this CPU ({_conv.cpu_features()})")
    rng = np.random.default_rng(5)
    for c in range(17, 28):
        for h in (2, 13):
            x = rng.integers(-128, 128, size=(c, h, h)).astype(np.int8)
            wt = rng.integers(-128, 128, size=(7, c, 3, 3)).astype(np.int8)
            bias = rng.integers(-5000, 5000, size=7).astype(np.int64)
            shift = rng.integers(9, 12, size=7).astype(np.int32)
            kw = dict(k=3, s=1, p=1, rounding="half_up", bits=8, act="leaky")
            ref = reference(x, wt, bias, shift, **kw)
            for nthreads in (1, 2):
                out = run_kernel(x, wt, bias, shift, acc64=0, nthreads=nthreads, simd=path, **kw)
                assert np.array_equal(out, ref), (path, c, h, nthreads)


@pytest.mark.parametrize("path", WINO_PATHS or ["avx2"])
def test_winograd_large_weights_all_blocks(path):
    """Winograd layers whose transformed weights exceed 8 MB on maps of 2-4 tile blocks
    (mdfi_conv_wino.c, wino_compute_all: the blocks innermost, the narrow kernel for a last
    block of at most 8 tiles), 1-3 threads, both roundings, every activation, uint8/int8."""
    if path not in PATHS:
        pytest.skip(f"{path} not available on this CPU ({_conv.cpu_features()})")
    rng = np.random.default_rng(123)
    for i, (c, h, w, m) in enumerate([(511, 11, 11, 520), (512, 9, 11, 515), (513, 13, 13, 512)]):
        xkind = "u8" if i == 1 else "s8"
        xlo, xhi, xdt = (0, 255, np.uint8) if xkind == "u8" else (-128, 127, np.int8)
        x = fill(rng, (c, h, w), xlo, xhi, ["random", "edges", "alt"][i], xdt)
        wt = fill(rng, (m, c, 3, 3), -128, 127, ["edges", "random", "random"][i], np.int8)
        pmax = c * 9 * 128 * max(-xlo, xhi)
        bias = rng.integers(-pmax, pmax + 1, size=m).astype(np.int64)
        shift = rng.choice([12, 16, 20, 1, 0, -2, 33], size=m).astype(np.int32)
        packed = _conv.pack_weights(wt)
        for bits, rounding, act in ((8, "half_up", "leaky"), (6, "truncate", "relu"), (16, "truncate", "linear")):
            kw = dict(k=3, s=1, p=1, rounding=rounding, bits=bits, act=act)
            ref = reference(x, wt, bias, shift, **kw)
            for nthreads in (1, 2, 3):
                out = run_kernel(x, wt, bias, shift, acc64=0, nthreads=nthreads, simd=path, packed=packed, **kw)
                assert np.array_equal(out, ref), (path, i, bits, rounding, act, nthreads)


# -- zero points: padding = pad_value, out = sat(R(act(acc) / 2**s) + zero_out) ------------------
def _pad_values(xdt):
    info = np.iinfo(xdt)
    return (info.min, info.max, info.min + 1, info.max - 1, 1, -1 if info.min < 0 else 128)


def _zero_outs(bits):
    return (fp.qmin(bits), fp.qmax(bits), fp.qmin(bits) + 1, fp.qmax(bits) - 1, 1, -1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_zero_points_random_shapes_exact(shape, seed):
    """Every shape of the random test with a nonzero padding value (the input type's extremes
    among others) and an output zero point (qmin and qmax among others), every path."""
    rng = np.random.default_rng(5000 + 1000 * seed + SHAPES.index(shape))
    x, wt, bias, shift, kw = _random_case(rng, shape)
    pvs, zos = _pad_values(x.dtype), _zero_outs(kw["bits"])
    kw["pad_value"] = int(pvs[(seed + SHAPES.index(shape)) % len(pvs)])
    kw["zero_out"] = int(zos[(2 * seed + SHAPES.index(shape)) % len(zos)])
    acc64s = (0, 1) if int32_ok(x, wt, bias, kw["pad_value"]) else (1,)
    check_all_paths(x, wt, bias, shift, threads=(1 + seed % 3,), acc64s=acc64s, **kw)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 1), (1, 1, 0), (1, 2, 0), (3, 1, 0), (3, 2, 0), (1, 1, 1)])
def test_zero_points_every_code_8bit(act, rounding, k, s, p):
    """The 8-bit layers (the dot-product family) and 16-bit outputs: uint8 / int8 inputs with
    the padding value at the type's extremes, the output zero point at qmin and qmax."""
    rng = np.random.default_rng(11 + k + 3 * s + 7 * p)
    for xdt in (np.uint8, np.int8):
        info = np.iinfo(xdt)
        x = rng.integers(info.min, info.max + 1, size=(37, 9, 11)).astype(xdt)
        x[:, 0, :] = info.max                      # edge-heavy border rows
        x[:, -1, :] = info.min
        wt = rng.integers(-128, 128, size=(13, 37, k, k)).astype(np.int8)
        bias = rng.integers(-40000, 40000, size=13).astype(np.int64)
        shift = rng.integers(8, 14, size=13).astype(np.int32)
        shift[:3] = [0, -2, 20]
        for bits in (8, 5, 16):
            for pv, zo in ((info.min, fp.qmin(bits)), (info.max, fp.qmax(bits)), (info.max, fp.qmin(bits)),
                           (info.min + 3, fp.qmax(bits) // 3)):
                check_all_paths(x, wt, bias, shift, threads=(1, 2), acc64s=(0,), k=k, s=s, p=p,
                                rounding=rounding, bits=bits, act=act, pad_value=int(pv), zero_out=int(zo))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_zero_points_exhaustive_epilogue(act, rounding):
    """Every int16 accumulator through the epilogue with output zero points at both ends of
    the range (every shift class: left, 0, 1..31, large)."""
    x = np.arange(-32768, 32768, dtype=np.int64).astype(np.int16).reshape(1, 256, 256)
    wt = np.array([1, -1, 1, 1, -1, 1, 1, 1], np.int16).reshape(8, 1, 1, 1)
    shift = np.array([0, 1, 2, 5, 8, -1, 13, 16], np.int32)
    for bias0, bits, zo in ((0, 8, -128), (3, 16, 32767), (-(1 << 15), 12, 1000), (1 << 20, 5, 15),
                            (0, 16, -32768), (5, 8, 127)):
        bias = np.array([bias0, -bias0, bias0 + 1, bias0, 7, 0, -bias0, bias0], np.int64)
        check_all_paths(x, wt, bias, shift, threads=(1,), k=1, s=1, p=0, rounding=rounding,
                        bits=bits, act=act, zero_out=zo)


@pytest.mark.parametrize("path", WINO_PATHS or ["avx2"])
def test_zero_points_winograd(path):
    """The Winograd kernels (3x3 stride 1, >= 32 channels, 8-bit) with padding values and
    output zero points, against the direct kernels switched off and the reference."""
    if path not in PATHS:
        pytest.skip(f"{path} not available on this CPU ({_conv.cpu_features()})")
    rng = np.random.default_rng(99)
    for i, (c, h, w, m, p) in enumerate([(32, 13, 13, 7, 1), (64, 2, 3, 13, 1), (35, 17, 9, 33, 2),
                                         (48, 3, 3, 5, 2), (40, 10, 12, 12, 0), (33, 8, 8, 6, 1)]):
        xdt = np.uint8 if i % 2 == 0 else np.int8
        info = np.iinfo(xdt)
        x = fill(rng, (c, h, w), info.min, info.max, ["random", "edges", "alt"][i % 3], xdt)
        wt = fill(rng, (m, c, 3, 3), -128, 127, ["random", "edges"][i % 2], np.int8)
        pmax = c * 9 * 128 * 255
        bias = rng.integers(-pmax, pmax + 1, size=m).astype(np.int64)
        shift = rng.choice([10, 12, 14, 16, 1, 0, -2, 33], size=m).astype(np.int32)
        for bits, rounding, act in ((8, "half_up", "leaky"), (5, "truncate", "relu"), (16, "half_up", "linear"),
                                    (8, "truncate", "relu")):
            for pv, zo in ((info.max, fp.qmin(bits)), (info.min, fp.qmax(bits)), (info.min + 1, -1)):
                kw = dict(k=3, s=1, p=p, rounding=rounding, bits=bits, act=act, pad_value=int(pv), zero_out=int(zo))
                ref = reference(x, wt, bias, shift, **kw)
                for nthreads in (1, 2):
                    out = run_kernel(x, wt, bias, shift, acc64=0, nthreads=nthreads, simd=path, **kw)
                    assert np.array_equal(out, ref), (path, i, bits, rounding, act, pv, zo, nthreads)


def test_zero_points_zero_is_unchanged():
    """pad_value = zero_out = 0 is the zero-free convolution, bit for bit."""
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(9, 7, 8)).astype(np.int8)
    wt = rng.integers(-128, 128, size=(5, 9, 3, 3)).astype(np.int8)
    bias = rng.integers(-9000, 9000, size=5).astype(np.int64)
    shift = np.full(5, 9, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="half_up", bits=8, act="leaky", acc64=0, nthreads=1)
    for simd in PATHS:
        a = run_kernel(x, wt, bias, shift, simd=simd, **kw)
        b = run_kernel(x, wt, bias, shift, simd=simd, pad_value=0, zero_out=0, **kw)
        assert np.array_equal(a, b)


@pytest.mark.parametrize("xdt,pv,bits,zo,msg", [
    (np.uint8, -1, 8, 0, "pad_value"), (np.uint8, 256, 8, 0, "pad_value"), (np.int8, 128, 8, 0, "pad_value"),
    (np.int8, -129, 8, 0, "pad_value"), (np.int16, 40000, 8, 0, "pad_value"), (np.int8, 0, 8, 128, "zero_out"),
    (np.int8, 0, 5, -17, "zero_out"), (np.int8, 0, 16, 32768, "zero_out"), (np.int8, 1.5, 8, 0, "pad_value"),
])
def test_zero_points_bad_arguments(xdt, pv, bits, zo, msg):
    x = np.zeros((2, 4, 4), xdt)
    packed = _conv.pack_weights(np.ones((3, 2, 3, 3), np.int8))
    out = np.zeros((3, 4, 4), np.int8 if bits <= 8 else np.int16)
    with pytest.raises(ShapeError, match=msg):
        _conv.conv2d(x, packed, np.zeros(3, np.int64), np.full(3, 4, np.int32), out, ksize=3, stride=1, pad=1,
                     rounding=0, out_bits=bits, act=0, acc64=0, pad_value=pv, zero_out=zo)


def test_zero_points_refused_with_a_fused_residual():
    x = np.zeros((2, 4, 4), np.int8)
    packed = _conv.pack_weights(np.ones((3, 2, 3, 3), np.int8))
    out = np.zeros((3, 4, 4), np.int8)
    res = (np.zeros((3, 4, 4), np.int8), np.zeros((3, 4, 4), np.int8), 0, 0, 1, 0, 8, 0)
    with pytest.raises(ShapeError, match="residual"):
        _conv.conv2d(x, packed, np.zeros(3, np.int64), np.full(3, 4, np.int32), out, ksize=3, stride=1, pad=1,
                     rounding=0, out_bits=8, act=0, acc64=0, residual=res, zero_out=3)
