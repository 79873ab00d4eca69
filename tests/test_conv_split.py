"""The split path of acc64 layers (csrc/mdfi_conv.c, conv_int16): int16 activations are split
into x = 256*hi + lo (lo = x & 255, hi = x >> 8) and both halves summed by the int32 pair kernels.
Every SIMD path, automatic and forced, must equal the NumPy integer reference
(conv2d_int_ref) bit for bit on random and edge-heavy inputs; the scalar path never splits."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.layers.convolutional import conv2d_int_ref

_conv = pytest.importorskip("mdfi._ext._conv")

ACTS = ("linear", "leaky", "relu")
ROUNDINGS = ("half_up", "truncate")
PATHS = _conv.available_simd_paths()
SIMD = [p for p in PATHS if p not in ("scalar", "scalar8")]

SHAPES = [  # C, H, W, M, k, stride, pad
    (17, 9, 11, 13, 3, 1, 1),      # odd channels, odd M (partial last panel)
    (33, 13, 13, 19, 3, 2, 1),     # stride 2
    (40, 7, 9, 7, 1, 1, 0),        # 1x1 stride 1 unpadded (direct layout, packed when split)
    (7, 4, 33, 5, 1, 2, 1),        # 1x1 stride 2 padded
    (300, 6, 6, 13, 3, 1, 1),      # K blocked (6 blocks), few tiles: threads split M (shared B)
    (96, 20, 21, 8, 3, 1, 1),      # K blocked (2 blocks), many tiles: threads split N
    (1, 1, 1, 1, 1, 1, 0), (3, 5, 4, 2, 3, 1, 2),
]


def fill(rng, shape, lo, hi, style):
    if style == "random":
        a = rng.integers(lo, hi + 1, size=shape)
    elif style == "min":
        a = np.full(shape, lo)
    elif style == "max":
        a = np.full(shape, hi)
    elif style == "neg":
        a = rng.integers(lo, 0, size=shape)
    elif style == "alt":
        a = np.where(np.arange(int(np.prod(shape))) % 2 == 0, hi, lo).reshape(shape)
    else:  # edges: extreme codes, the byte boundaries of the split, some random
        a = rng.choice([lo, hi, lo + 1, hi - 1, 0, -1, 255, 256, -256, -255, 127, -129], size=shape)
        a = np.clip(a, lo, hi)
        mask = rng.random(shape) < 0.2
        a = np.where(mask, rng.integers(lo, hi + 1, size=shape), a)
    return np.asarray(a).astype(np.int16)


def run(x, packed, m, bias, shift, kw, *, path, nthreads, pad_value, zero_out):
    k, s, p = kw["k"], kw["s"], kw["p"]
    oh, ow = _conv.out_size(x.shape[1], k, s, p), _conv.out_size(x.shape[2], k, s, p)
    out = np.full((m, oh, ow), 77, np.int16)
    _conv.conv2d(x, packed, bias, shift, out, ksize=k, stride=s, pad=p,
                 rounding=fp.rounding_code(kw["rounding"]), out_bits=kw["bits"], act=ACTS.index(kw["act"]),
                 acc64=1, nthreads=nthreads, simd=path, pad_value=pad_value, zero_out=zero_out)
    return out


def check(x, wt, bias, shift, kw, *, pad_value=0, zero_out=0, threads=(1, 2, 3), expect_auto_split=None):
    ref = conv2d_int_ref(x, wt, bias, shift, size=kw["k"], stride=kw["s"], padding=kw["p"],
                         rounding=kw["rounding"], bits=kw["bits"], activation=kw["act"],
                         pad_value=pad_value, zero_out=zero_out)
    packed = _conv.pack_weights(wt)
    m = wt.shape[0]
    try:
        for mode in (-1, 1):
            _conv._set_split(mode)
            for path in PATHS:
                for nthreads in threads:
                    n0 = _conv._split_calls()
                    out = run(x, packed, m, bias, shift, kw, path=path, nthreads=nthreads,
                              pad_value=pad_value, zero_out=zero_out)
                    took = _conv._split_calls() - n0
                    if path in ("scalar", "scalar8"):
                        assert took == 0, "the scalar path must never split"
                    elif mode == 1 or expect_auto_split:
                        assert took == 1, f"{path}: split path not taken (mode {mode})"
                    elif expect_auto_split is False:
                        assert took == 0, f"{path}: split path taken"
                    if not np.array_equal(out, ref):
                        bad = tuple(np.argwhere(out != ref)[0])
                        raise AssertionError(f"mismatch ({path}, {nthreads} threads, split mode {mode}) at {bad}: "
                                             f"{out[bad]} != {ref[bad]}; x {x.shape}, w {wt.shape}, {kw}, "
                                             f"pad {pad_value}, zo {zero_out}")
    finally:
        _conv._set_split(-1)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_split_random_and_edges(shape, seed):
    c, h, w, m, k, s, p = shape
    rng = np.random.default_rng(100 * seed + SHAPES.index(shape))
    # widths 9..16 for both; seed 0 is always the 16 x 16 case (the one the split is for)
    xbits = 16 if seed == 0 else int(rng.integers(9, 17))
    wbits = 16 if seed == 0 else int(rng.integers(9, 17))
    styles = ["random", "edges", "min", "max", "neg", "alt"]
    x = fill(rng, (c, h, w), fp.qmin(xbits), fp.qmax(xbits), styles[(seed + SHAPES.index(shape)) % len(styles)])
    wt = fill(rng, (m, c, k, k), fp.qmin(wbits), fp.qmax(wbits), styles[(seed + 2 * SHAPES.index(shape) + 1) % 6])
    pmax = c * k * k * 2 ** (wbits - 1) * 2 ** (xbits - 1)
    bias = rng.integers(-min(pmax, 2**46), min(pmax, 2**46) + 1, size=m).astype(np.int64)
    typical = max(pmax.bit_length() - 16, 0)
    shift = rng.choice([typical, typical + 1, max(typical - 5, 0), 0, -2, 47], size=m).astype(np.int32)
    pad_value = int(rng.choice([0, fp.qmin(xbits), fp.qmax(xbits), -1, 255]))
    pad_value = int(np.clip(pad_value, fp.qmin(xbits), fp.qmax(xbits)))
    out_bits = int(rng.integers(9, 17))
    zero_out = int(rng.choice([0, fp.qmin(out_bits), fp.qmax(out_bits)]))
    kw = dict(k=k, s=s, p=p, rounding=ROUNDINGS[seed % 2], bits=out_bits, act=ACTS[(seed + c) % 3])
    wmax = max(int(np.abs(wt.astype(np.int64)).max()), 0)
    chunk = (2**31 - 1) // (2 * wmax * 32768) if wmax else 1 << 30
    check(x, wt, bias, shift, kw, pad_value=pad_value, zero_out=zero_out,
          expect_auto_split=(xbits == 16 and chunk < 7) or None)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_split_extreme_codes(act, rounding):
    """-32768 / 32767 everywhere, in every combination, padded with either extreme."""
    c, m = 19, 7
    for xv, wv, padv in [(-32768, -32768, -32768), (32767, -32768, 32767), (-32768, 32767, 0), (32767, 32767, -32768)]:
        x = np.full((c, 6, 5), xv, np.int16)
        x[::3, ::2] = -32768 if xv > 0 else 32767
        wt = np.full((m, c, 3, 3), wv, np.int16)
        wt[1] = -wt[1] if wv != -32768 else 32767
        bias = np.array([0, 2**46, -2**46, 1, -1, 12345, -98765], np.int64)
        shift = np.array([23, 24, 40, 21, 0, 47, -3], np.int32)     # |sum| <= 2^37.4
        check(x, wt, bias, shift, dict(k=3, s=1, p=1, rounding=rounding, bits=16, act=act),
              pad_value=padv, zero_out=0, threads=(1, 2), expect_auto_split=True)


@pytest.mark.parametrize("xv", [-1, 255, -32768, 32767, -256])
def test_split_chunk_bound(xv):
    """lo = 255 (x = -1, 255) or hi = -128 / 127 on every tap with w = -32768: 64 channels x 3x3
    = 288 K-pairs in one block, so the int32 chunks of either half reach their proven length
    (128 pairs at max|w| = 32768) and a longer one would wrap."""
    x = np.full((64, 5, 7), xv, np.int16)
    wt = np.full((5, 64, 3, 3), -32768, np.int16)
    wt[3] = 32767
    bias = np.array([0, 7, -7, 2**33, -2**33], np.int64)
    # outputs that keep the sum's high bits (|sum| <= 2^39.2 -> 16 bits at s = 25; for lo = 255
    # and hi = 0 it is 2^32.2, at s = 18): a wrapped chunk changes them
    typical = int(64 * 9 * 32768 * max(abs(xv), 1)).bit_length() - 15
    shift = np.array([typical, typical + 2, typical - 2, typical, 0], np.int32)
    check(x, wt, bias, shift, dict(k=3, s=1, p=1, rounding="truncate", bits=16, act="linear"),
          pad_value=xv, threads=(1, 2), expect_auto_split=True)


def test_no_split_where_it_does_not_help():
    """8-bit weights with 16-bit activations (int32 chunks of 255 pairs) and 8-bit inputs keep the
    plain acc64 path in automatic mode; the results are equal either way."""
    rng = np.random.default_rng(3)
    x = rng.integers(-32768, 32768, size=(64, 9, 9)).astype(np.int16)
    wt = rng.integers(-128, 128, size=(11, 64, 3, 3)).astype(np.int16)
    bias = rng.integers(-2**40, 2**40, size=11).astype(np.int64)
    shift = np.full(11, 24, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="half_up", bits=16, act="leaky")
    check(x, wt, bias, shift, kw, threads=(1, 2), expect_auto_split=False)
    if SIMD:   # int8 inputs never split, not even forced
        x8 = rng.integers(-128, 128, size=(64, 9, 9)).astype(np.int8)
        wt16 = rng.integers(-32768, 32768, size=(11, 64, 3, 3)).astype(np.int16)
        try:
            _conv._set_split(1)
            n0 = _conv._split_calls()
            out = np.zeros((11, 9, 9), np.int16)
            _conv.conv2d(x8, _conv.pack_weights(wt16), bias, shift, out, ksize=3, stride=1, pad=1, rounding=0,
                         out_bits=16, act=1, acc64=1, nthreads=1, simd=SIMD[0])
            assert _conv._split_calls() == n0
        finally:
            _conv._set_split(-1)


def test_paths_tested_here():
    """Which SIMD paths this machine ran the split tests on (the others are skipped)."""
    if not SIMD:
        pytest.skip(f"no SIMD path on this CPU/build ({_conv.cpu_features()}): the split path is not used")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_split_whole_network_every_path(mini_net, threads):
    """mini-yolov3 at w16a16 (stride-2 convolutions, 1x1 and 3x3, shortcut, route, three heads):
    every layer equal to the NumPy reference on every path, and the SIMD paths split."""
    from mdfi.cengine import CRunner
    from mdfi.quant.quantize import input_to_u8, quantize_network
    from conftest import DARKNET
    text = (DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text()
    qm = quantize_network(mini_net, wbits=16, abits=16, per_channel=True, rounding="half_up", cfg_text=text,
                          layer_rounding={5: "truncate"})
    x = input_to_u8(np.load(DARKNET / "mini-yolov3" / "astronaut_heads.npz")["input"])
    ref = qm.forward_ref(x)
    before = _conv.simd_path()
    try:
        for path in PATHS:
            assert _conv.set_simd_path(path) == path
            n0 = _conv._split_calls()
            out = CRunner(qm, threads).run(x)
            took = _conv._split_calls() - n0
            assert (took == 0) if path in ("scalar", "scalar8") else (took > 0), (path, took)
            bad = [i for i, (a, b) in enumerate(zip(ref, out)) if a.shape != b.shape or not np.array_equal(a, b)]
            assert not bad, f"{path}, {threads} threads: layers differ: {bad}"
    finally:
        _conv.set_simd_path(before)
