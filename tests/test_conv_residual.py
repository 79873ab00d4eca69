"""A shortcut fused into the convolution (conv2d(..., residual=...), mdfi_conv2d_res): on every
path this machine can run, both the convolution's output and the shortcut's output equal the
NumPy reference -- conv2d_int_ref, then fp.requantize(a * 2**da + b * 2**db, ...) as
QShortcut.forward_ref computes it (docs/fixed-point.md section 6).  The avx512vnni and amx
kernels apply it in their int32-lane epilogue (8-bit a and b); every other path and format
takes the post-pass (csrc/mdfi_conv_post.c).  Random and edge-heavy operands, every shift
from -3 to 31, both roundings, every activation, 8- and 16-bit outputs, int8/int16 b."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from test_kernel_conv import ACTS, ROUNDINGS, fill, int_dtype, reference
from test_kernel_q8 import case, need

_conv = pytest.importorskip("mdfi._ext._conv")
from mdfi.errors import MDFIError  # noqa: E402


def shortcut_ref(a, b, da, db, shift, rounding, bits, act):
    s = np.left_shift(a.astype(np.int64), da) + np.left_shift(b.astype(np.int64), db)
    return fp.requantize(s, shift, rounding, bits, act).astype(int_dtype(bits))


def run_res(x, wt, bias, shift, b, rkw, *, k, s, p, rounding, bits, act, simd, nthreads=1, acc64=0):
    m = wt.shape[0]
    shape = (m, _conv.out_size(x.shape[1], k, s, p), _conv.out_size(x.shape[2], k, s, p))
    out = np.full(shape, 77, int_dtype(bits))
    rout = np.full(shape, 55, int_dtype(rkw["bits"]))
    _conv.conv2d(x, _conv.pack_weights(wt), bias, shift, out, ksize=k, stride=s, pad=p,
                 rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act), acc64=acc64,
                 nthreads=nthreads, simd=simd,
                 residual=(b, rout, rkw["da"], rkw["db"], rkw["shift"], fp.rounding_code(rkw["rounding"]),
                           rkw["bits"], ACTS.index(rkw["act"])))
    return out, rout


def residual_case(rng, out_shape, a_bits, *, style=None, b16=None):
    b16 = bool(rng.random() < 0.3) if b16 is None else b16
    bbits = int(rng.integers(9, 17)) if b16 else int(rng.integers(2, 9))
    style = style or str(rng.choice(["random"] * 3 + ["max", "min", "alt", "edges"]))
    b = fill(rng, out_shape, fp.qmin(bbits), fp.qmax(bbits), style, np.int16 if b16 else np.int8)
    # the Darknet case: one alignment shift is 0; the API takes both
    da, db = (int(v) for v in rng.integers(0, 17, size=2))
    if rng.random() < 0.7:
        (da, db) = (0, db) if rng.random() < 0.5 else (da, 0)
    return b, dict(da=da, db=db, shift=int(rng.choice([-3, -1, 0, 1, 2, 3, 5, 8, 13, 17, 24, 31])),
                   rounding=str(rng.choice(ROUNDINGS)), bits=int(rng.choice([a_bits, 8, 2, 5, 12, 16])),
                   act=str(rng.choice(ACTS)))


SHAPES = [  # C, H, W, M, k, stride, pad
    (3, 11, 13, 16, 3, 1, 1),       # first layer: uint8 pixels
    (16, 9, 10, 21, 3, 1, 1),       # 3x3, odd output channels
    (33, 6, 7, 19, 1, 1, 0),        # 1x1
    (9, 13, 13, 24, 3, 2, 1),       # stride 2
    (64, 4, 5, 40, 3, 1, 1),        # AMX-sized channel blocks, small map (packed tiles)
    (5, 1, 1, 7, 1, 1, 0),
]


@pytest.mark.parametrize("path", _conv.PATHS)
def test_fused_shortcut_equals_reference(path):
    need(path)
    rng = np.random.default_rng(sum(map(ord, path)) + 17)
    ntiles = max(len(_conv.q8_tiles(path)), 1)
    for i, shape in enumerate(SHAPES * 3):
        x, wt, bias, shift, kw = case(rng, *shape, xkind="u8" if shape[0] == 3 else None)
        if i % 3 != 2:
            kw["bits"] = 8                     # 8-bit a: the epilogue-fused form where there is one
        ref = reference(x, wt, bias, shift, **kw)
        b, rkw = residual_case(rng, ref.shape, kw["bits"], b16=None if i % 3 == 2 else False)
        rref = shortcut_ref(ref, b, **rkw)
        for kern in range(ntiles):
            for direct in (1, 0, 3):
                _conv._set_q8_override(kern, direct)
                try:
                    out, rout = run_res(x, wt, bias, shift, b, rkw, simd=path,
                                        nthreads=1 + (i + kern + direct) % 3, **kw)
                finally:
                    _conv._set_q8_override(-1, -1)
                assert np.array_equal(out, ref), (path, shape, kw, kern, direct)
                if not np.array_equal(rout, rref):
                    bad = tuple(np.argwhere(rout != rref)[0])
                    raise AssertionError(f"{path} tile {kern} {'direct' if direct else 'packed'} {shape} {kw} "
                                         f"{rkw} b {b.dtype}: at {bad} {rout[bad]} != {rref[bad]}")


@pytest.mark.parametrize("path", _conv.PATHS)
def test_fused_shortcut_every_shift_and_extreme_operands(path):
    """Extreme a (saturated conv outputs) and b (-128/127/alternating), every shift -3..31
    of the shortcut, both roundings (ties at every shift), every activation."""
    need(path)
    rng = np.random.default_rng(3)
    x, wt, bias, shift, kw = case(rng, 8, 6, 9, 18, 3, 1, 1, xkind="s8", style="max", wbits=8, xbits=8)
    kw.update(bits=8, rounding="half_up", act="leaky")
    ref = reference(x, wt, bias, shift, **kw)
    for sh in range(-3, 32):
        for style in ("alt", "min", "max", "edges"):
            b = fill(rng, ref.shape, -128, 127, style, np.int8)
            for rounding in ROUNDINGS:
                for act in ACTS:
                    rkw = dict(da=sh % 3, db=0 if sh % 2 else sh % 5, shift=sh, rounding=rounding,
                               bits=8 if sh % 4 else 6, act=act)
                    out, rout = run_res(x, wt, bias, shift, b, rkw, simd=path, nthreads=1 + sh % 2, **kw)
                    assert np.array_equal(out, ref)
                    assert np.array_equal(rout, shortcut_ref(ref, b, **rkw)), (path, rkw, style)


@pytest.mark.parametrize("path", _conv.PATHS)
def test_fused_shortcut_16bit(path):
    """int16 operands and outputs (acc64), the post-pass with int16 a and b."""
    need(path)
    rng = np.random.default_rng(5)
    x = rng.integers(-30000, 30000, size=(5, 7, 6)).astype(np.int16)
    wt = rng.integers(-3000, 3000, size=(7, 5, 3, 3)).astype(np.int16)
    bias = rng.integers(-2**30, 2**30, size=7).astype(np.int64)
    shift = np.full(7, 20, np.int32)
    kw = dict(k=3, s=1, p=1, rounding="truncate", bits=16, act="leaky")
    ref = reference(x, wt, bias, shift, **kw)
    for sh in (-2, 0, 1, 7, 16, 31):
        b, rkw = residual_case(rng, ref.shape, 16, b16=True)
        rkw["shift"] = sh
        out, rout = run_res(x, wt, bias, shift, b, rkw, simd=path, nthreads=2, acc64=1, **kw)
        assert np.array_equal(out, ref)
        assert np.array_equal(rout, shortcut_ref(ref, b, **rkw)), (path, rkw)


def test_residual_arguments_are_checked():
    rng = np.random.default_rng(1)
    x, wt, bias, shift, kw = case(rng, 4, 5, 5, 6, 3, 1, 1)
    kw["bits"] = 8
    ref = reference(x, wt, bias, shift, **kw)
    b = np.zeros(ref.shape, np.int8)
    good = dict(da=0, db=1, shift=1, rounding="half_up", bits=8, act="leaky")
    for bad_b, bad in [(np.zeros((6, 5, 4), np.int8), {}), (b, dict(da=17)), (b, dict(shift=10**6)),
                       (b, dict(bits=1)), (np.zeros(ref.shape, np.int32), {})]:
        with pytest.raises(MDFIError):
            run_res(x, wt, bias, shift, bad_b, {**good, **bad}, simd="scalar", **kw)
