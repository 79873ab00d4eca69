"""csrc/mdfi_kernels_grouped.c (the direct grouped convolution, docs/fixed-point.md 3.6) against
its specification, the NumPy integer reference conv2d_int_ref(groups=): array_equal on seeded
random layers -- groups, channels per group, filters per group, kernel sizes 1/3/5, strides 1/2,
paddings, widths 2-16, both roundings, every activation, zero points, u8/s8/s16 inputs, int32
and int64 sums -- and on edge values (the extremes of every range), on the portable, AVX2 and
AVX-512 bodies this CPU runs, at 1-3 threads; plus depthwise-shaped layers that reach the
pair-plane kernel's edges (maps down to 1x1 with padding, odd sizes, stride 2, k = 5, maps of
several row blocks, zero weights).  The engine uses it for groups of <= GROUPED_DIRECT_MAX
channels (tests/test_paths_alexeyab.py runs whole grouped networks)."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi._ext import _conv, _kernels
from mdfi.errors import ShapeError
from mdfi.layers.conv_arith import conv2d_int_ref

ACTS = ("linear", "leaky", "relu")
# the AVX-512 path name selects the kernel's AVX-512 bodies (mdfi/_ext/_kernels.pyx _opts)
# (avx512bw-novnni: the same with the VNNI twin of its tap loop turned off)
SIMD = [p for p in ("scalar", "avx2", "avx512bw") if p in _conv.available_simd_paths()]
SIMD += ["avx512bw-novnni"] if "avx512bw" in SIMD and "avx512vnni" in _conv.cpu_features().split() else []


class _path:
    """Select a SIMD path of SIMD for the block (and VNNI off for avx512bw-novnni)."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.old = _conv.simd_path()
        _conv.set_simd_path(self.name.replace("-novnni", ""))
        _kernels._set_grouped_vnni(not self.name.endswith("-novnni"))

    def __exit__(self, *exc):
        _conv.set_simd_path(self.old)
        _kernels._set_grouped_vnni(True)


def _case(rng, edge: bool, tiny: bool = False):
    g = int(rng.choice([1, 2, 3, 8]))
    cg, mg = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    k = int(rng.choice([1, 3, 5]))
    if tiny:                     # depthwise-like: 1-2 channels per group, k 2-5, any pad
        g, cg = int(rng.choice([1, 3, 8, 17])), int(rng.choice([1, 1, 2]))
        k = int(rng.choice([2, 3, 3, 5, 5]))
    it = str(rng.choice(["u8", "s8", "s16"]))
    bits = int(rng.integers(2, 17))
    in_bits = 8 if it != "s16" else 16
    lo, hi = (0, 255) if it == "u8" else (fp.qmin(in_bits), fp.qmax(in_bits))
    shape = (g * cg, int(rng.integers(k, 18)), int(rng.integers(k, 18)))
    pad = int(rng.integers(0, k))
    if tiny:                     # maps from 1x1 (with pad), odd/even sizes, a few of several row blocks
        pad = int(rng.integers((k + 1) // 2, k + 1))
        big = rng.random() < 0.15
        hw = [int(rng.integers(max(1, k - 2 * pad), 80 if big else 12)) for _ in range(2)]
        shape = (g * cg, hw[0], hw[1])
    wbits = int(rng.choice([4, 8, 12]))
    if edge:
        x = rng.choice([lo, hi, 0], shape)
        w = rng.choice([fp.qmin(wbits), fp.qmax(wbits), 0], (g * mg, cg, k, k))
    elif tiny:                   # many zero weights (skipped tap pairs)
        x = rng.integers(lo, hi + 1, shape)
        w = rng.integers(fp.qmin(wbits), fp.qmax(wbits) + 1, (g * mg, cg, k, k)) * (rng.random((g * mg, cg, k, k)) < 0.7)
    else:
        x = rng.integers(lo, hi + 1, shape)
        w = rng.integers(fp.qmin(wbits), fp.qmax(wbits) + 1, (g * mg, cg, k, k))
    x = x.astype({"u8": np.uint8, "s8": np.int8, "s16": np.int16}[it])
    kvol = cg * k * k
    acc_bits = fp.accumulator_bits(wbits, in_bits + (it == "u8"), kvol, it != "u8")
    lim = (1 << (acc_bits - 1)) - 1 - fp.product_bound(wbits, in_bits + (it == "u8"), kvol, it != "u8")
    bias = rng.integers(-min(lim, 10**6), min(lim, 10**6) + 1, g * mg)
    return dict(x=x, w=w.astype(np.int16), bias=bias.astype(np.int64), g=g, k=k, it=it, bits=bits, lo=lo, hi=hi,
                acc32=int(acc_bits <= 32), stride=int(rng.choice([1, 2])), pad=pad,
                shift=rng.integers(fp.MIN_SHIFT if edge else -2, 24 if edge else 14, g * mg).astype(np.int32),
                act=int(rng.integers(0, 3)), mode=int(rng.integers(0, 2)))


@pytest.mark.parametrize("simd", SIMD)
@pytest.mark.parametrize("edge", [0, 1, 2], ids=["random", "edges", "tiny"])
def test_direct_grouped_convolution_equals_the_reference(simd, edge):
    rng = np.random.default_rng(11 + edge)
    with _path(simd):
        for n in range(150):
            c = _case(rng, edge == 1, tiny=edge == 2)
            bits = c["bits"]
            pad_value = int(rng.integers(c["lo"], c["hi"] + 1)) if n % 3 == 0 else 0
            zero_out = int(rng.integers(fp.qmin(bits), fp.qmax(bits) + 1)) if n % 4 == 0 else 0
            ref = conv2d_int_ref(c["x"], c["w"], c["bias"], c["shift"], size=c["k"], stride=c["stride"],
                                 padding=c["pad"], rounding=("half_up", "truncate")[c["mode"]], bits=bits,
                                 activation=ACTS[c["act"]], pad_value=pad_value, zero_out=zero_out, groups=c["g"])
            for threads in (1, 2, 3):
                # the output is the head of a longer buffer: nothing may be written past it
                buf = np.full(ref.size + 64, 77, np.int8 if bits <= 8 else np.int16)
                out = buf[:ref.size].reshape(ref.shape)
                _kernels.conv_grouped(c["x"], c["w"], c["bias"], c["shift"], out, c["g"], c["k"], c["stride"],
                                      c["pad"], pad_value, c["mode"], bits, c["act"], zero_out, c["acc32"],
                                      nthreads=threads)
                if edge == 2 and c["acc32"] and n % 2:   # the same layer on the int64 path
                    out64 = np.full(ref.shape, 77, out.dtype)
                    _kernels.conv_grouped(c["x"], c["w"], c["bias"], c["shift"], out64, c["g"], c["k"], c["stride"],
                                          c["pad"], pad_value, c["mode"], bits, c["act"], zero_out, 0,
                                          nthreads=threads)
                    assert np.array_equal(out64, ref), (n, threads, "acc64")
                assert np.array_equal(out, ref), (n, threads, {k: v for k, v in c.items() if k not in "xw"})
                assert (buf[ref.size:] == 77).all(), (n, threads, "written past the output")


def test_direct_grouped_convolution_refuses_bad_arguments():
    x = np.zeros((4, 5, 5), np.int8)
    w = np.zeros((4, 2, 3, 3), np.int16)
    b, s = np.zeros(4, np.int64), np.full(4, 3, np.int32)
    out = np.zeros((4, 5, 5), np.int8)
    _kernels.conv_grouped(x, w, b, s, out, 2, 3, 1, 1, 0, 0, 8, 0, 0, 1)
    with pytest.raises(ShapeError, match="weights must be contiguous int16 of shape"):
        _kernels.conv_grouped(x, w, b, s, out, 4, 3, 1, 1, 0, 0, 8, 0, 0, 1)       # 4 groups: (4, 1, 3, 3)
    with pytest.raises(ShapeError, match="code -2"):
        _kernels.conv_grouped(x, w, b, s, out, 2, 3, 2, 1, 0, 0, 8, 0, 0, 1)       # stride 2: 3x3 output
    with pytest.raises(ShapeError, match="code -1"):                             # a bias beyond int32 with acc32
        _kernels.conv_grouped(x, w, np.array([2**31, 0, 0, 0], np.int64), s, out, 2, 3, 1, 1, 0, 0, 8, 0, 0, 1)
    with pytest.raises(ShapeError, match="bits"):
        _kernels.conv_grouped(x, w, b, s, out, 2, 3, 1, 1, 0, 0, 12, 0, 0, 1)      # 12 bits into int8


@pytest.mark.parametrize("simd", SIMD)
def test_direct_grouped_convolution_small_maps(simd):
    """Every map of 1..5 x 1..6 with k 3 and 5, strides 1 and 2, each valid pad: depthwise
    layers (2 channels per group in one of three), int8 and int16 inputs, zero points."""
    rng = np.random.default_rng(5)
    with _path(simd):
        n = 0
        for k in (3, 5):
            for h in range(1, 6):
                for w in range(1, 7):
                    for stride in (1, 2):
                        for pad in range(0, k + 1):
                            if h + 2 * pad < k or w + 2 * pad < k:
                                continue
                            n += 1
                            cg, it = (2 if n % 3 == 0 else 1), (np.int16 if n % 4 == 0 else np.int8)
                            lo, hi = np.iinfo(it).min, np.iinfo(it).max
                            x = rng.integers(lo, hi + 1, (4 * cg, h, w)).astype(it)
                            wt = rng.integers(-127, 128, (4, cg, k, k)).astype(np.int16)
                            bias = rng.integers(-10**4, 10**4, 4).astype(np.int64)
                            shift = rng.integers(1, 16, 4).astype(np.int32)
                            pad_value, zero_out = int(rng.integers(lo, hi + 1)) * (n % 2), int(rng.integers(-9, 9))
                            mode, act = n % 2, n % 3
                            ref = conv2d_int_ref(x, wt, bias, shift, size=k, stride=stride, padding=pad,
                                                 rounding=("half_up", "truncate")[mode], bits=8,
                                                 activation=ACTS[act], pad_value=pad_value, zero_out=zero_out,
                                                 groups=4)
                            for threads in (1, 2):
                                buf = np.full(ref.size + 64, 77, np.int8)
                                out = buf[:ref.size].reshape(ref.shape)
                                _kernels.conv_grouped(x, wt, bias, shift, out, 4, k, stride, pad, pad_value, mode, 8,
                                                      act, zero_out, 1, nthreads=threads)
                                assert np.array_equal(out, ref), (k, h, w, stride, pad, cg, it, threads)
                                assert (buf[ref.size:] == 77).all(), (k, h, w, stride, pad, "past the output")
        assert n > 300


@pytest.mark.parametrize("simd", SIMD)
def test_direct_grouped_convolution_near_the_int32_bound(simd):
    """int16 inputs at their extremes and weights whose sum |w| * 32768 is just inside int32:
    the sums fit int32 (acc32), |sum| + half does not (the requantize's unfolded forms); and
    maps wider than 1024 columns (the AVX-512 plane build's masks in several chunks)."""
    rng = np.random.default_rng(7)
    with _path(simd):
        for n in range(24):
            k, stride = (3, 5)[n % 2], 1 + (n // 2) % 2
            kk = k * k
            wmax = (2**31 - 2**18) // (32768 * kk)          # sum |w| * 32768 < 2^31 - 2^18
            wide = n >= 18
            h, w = (3, 1100 + n) if wide else (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
            pad = int(rng.integers((k + 1) // 2, k))
            x = rng.choice(np.array([-32768, 32767], np.int16), (3, h, w))
            wt = (rng.choice([-1, 1], (3, 1, k, k)) * wmax).astype(np.int16)
            bias = rng.integers(-2**17, 2**17, 3).astype(np.int64)
            shift = rng.integers(15, 23, 3).astype(np.int32)
            bits = (8, 16)[n % 3 == 0]
            pad_value, zero_out = (-32768, 32767, 0)[n % 3], (0, 5)[n % 4 == 1]
            mode, act = (n // 3) % 2, n % 3
            ref = conv2d_int_ref(x, wt, bias, shift, size=k, stride=stride, padding=pad,
                                 rounding=("half_up", "truncate")[mode], bits=bits, activation=ACTS[act],
                                 pad_value=pad_value, zero_out=zero_out, groups=3)
            out = np.full(ref.shape, 77, np.int8 if bits <= 8 else np.int16)
            _kernels.conv_grouped(x, wt, bias, shift, out, 3, k, stride, pad, pad_value, mode, bits, act, zero_out,
                                  1, nthreads=1 + n % 2)
            assert np.array_equal(out, ref), (n, k, stride, h, w, pad, mode, act)
