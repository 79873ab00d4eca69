"""The layer's tight int32 bound (csrc/mdfi_conv.c, the packed header's row-sum field; and
mdfi.cengine.engine_acc64): every partial sum of output channel m is at most
sum_k |w[m, k]| * max|x|, which proves int32 sums for layers whose worst case K * max|w| *
max|x| does not fit -- 16-bit inputs above all.  The bound is used, so it is tested where it
is tight: inputs whose signs follow the weights' make |S| reach sum_k |w[m, k]| * max|x|
exactly, and biases put S + bias + half at the last int32 value.  Every path, 1-3 threads,
must equal the NumPy integer reference (conv2d_int_ref) bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi.layers.conv_arith import conv2d_int_ref

_conv = pytest.importorskip("mdfi._ext._conv")

PATHS = _conv.available_simd_paths()
INT32_MAX = 2**31 - 1
ACTS = ("linear", "leaky", "relu")


def sparse_weights(rng, m, c, k, wdtype, big, small):
    """(M, C, k, k) weights with one large weight per output channel and small others: the
    worst case K * max|w| * max|x| fails int32, the row sums do not."""
    w = rng.integers(-small, small + 1, size=(m, c, k, k))
    for mm in range(m):
        i = np.unravel_index(int(rng.integers(0, c * k * k)), (c, k, k))
        w[(mm,) + i] = big if mm % 2 else -big
    return w.astype(wdtype)


def run(x, wt, bias, shift, *, k, s, p, rounding, bits, act, path, nthreads, pad_value=0, zero_out=0):
    m = wt.shape[0]
    oh, ow = _conv.out_size(x.shape[1], k, s, p), _conv.out_size(x.shape[2], k, s, p)
    out = np.full((m, oh, ow), 77, np.int8 if bits <= 8 else np.int16)
    _conv.conv2d(x, _conv.pack_weights(wt), bias, shift, out, ksize=k, stride=s, pad=p,
                 rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act), acc64=0,
                 nthreads=nthreads, simd=path, pad_value=pad_value, zero_out=zero_out)
    return out


def check(x, wt, bias, shift, **kw):
    ref = conv2d_int_ref(x, wt, bias, shift, size=kw["k"], stride=kw["s"], padding=kw["p"],
                         rounding=kw["rounding"], bits=kw["bits"], activation=kw["act"],
                         pad_value=kw.get("pad_value", 0), zero_out=kw.get("zero_out", 0))
    for path in PATHS:
        for nthreads in (1, 2, 3):
            out = run(x, wt, bias, shift, path=path, nthreads=nthreads, **kw)
            if not np.array_equal(out, ref):
                bad = tuple(np.argwhere(out != ref)[0])
                raise AssertionError(f"{path}, {nthreads} threads: {out[bad]} != {ref[bad]} at {bad}; {kw}")


def row_bound(wt, xmax):
    return int(np.abs(wt.astype(np.int64)).reshape(wt.shape[0], -1).sum(axis=1).max()) * xmax


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(600, 5, 7, 19, 1, 1, 0), (70, 5, 9, 21, 3, 1, 1), (64, 13, 9, 33, 3, 2, 1),
                                   (129, 4, 4, 16, 3, 1, 1), (600, 6, 6, 8, 1, 1, 0)],
                         ids=lambda s: "x".join(map(str, s)))
def test_int16_inputs_at_the_tight_bound(shape, seed):
    """16-bit inputs, 8-bit weights: K * 128 * 32768 > 2^31, but the row sums prove int32.
    x = -32768 where w > 0 and 32767 where w < 0 (for a 1x1 layer every position reaches
    |S| = sum|w| * 32768 - ...), then random and edge-heavy inputs."""
    c, h, w, m, k, s, p = shape
    rng = np.random.default_rng(1000 * seed + c)
    wt = sparse_weights(rng, m, c, k, np.int8, 127 if seed % 2 else 128 - 1, 3)
    if seed == 3:
        wt[0, 0, 0, 0] = -128                      # max|w| = 128 in one row
        wt[1:, 0, 0, 0] = -1
    assert c * k * k * int(np.abs(wt.astype(np.int64)).max()) * 32768 > INT32_MAX, "worst case must fail"
    tight = row_bound(wt, 32768)
    assert tight < 2**30
    if seed in (0, 3):
        # every row with row 0's signs, and the input window of output position (1, 1) at the
        # extremes they ask for: S = -sum|w| * 32768 there (the bound, attained by row 0); for
        # a 1x1 layer the other half of the rows of positions at S = +sum|w| * 32767
        sign = np.where(wt[0] < 0, -1, 1).astype(np.int64)
        wt = (np.abs(wt.astype(np.int64)) * sign[None]).astype(wt.dtype)
        x = rng.integers(-32768, 32768, size=(c, h, w))
        y0, x0 = s - p, s - p
        ys, xs = slice(max(y0, 0), y0 + k), slice(max(x0, 0), x0 + k)
        x[:, ys, xs] = np.where(sign > 0, -32768, 32767)[:, max(-y0, 0):, max(-x0, 0):]
        if k == 1:
            x[:, h // 2:] = np.where(sign[:, 0, 0] > 0, 32767, -32768)[:, None, None]
    elif seed == 1:
        x = rng.choice([-32768, 32767, -32767, 32766, 0, -1, 255, 256], size=(c, h, w))
    else:
        x = rng.integers(-32768, 32768, size=(c, h, w))
    x = x.astype(np.int16)
    # |bias| up to the room left: S + bias + half stays inside int32 for the extreme rows
    half = 1 << 20
    room = INT32_MAX - tight - half
    # and beyond it (those rows must leave the int32 epilogue: a bound taken too small fails here)
    bias = rng.choice([room, -room, 0, room // 3, room + tight // 2, -room - tight // 2], size=m).astype(np.int64)
    shift = rng.choice([21, 1, 31, 12, 0, -1], size=m).astype(np.int32)
    # the first rows at the bound and beyond it (no bias nearer 2^31: the layer's sum32 would
    # send every row to the general epilogue)
    shift[:8] = 21
    bias[:8] = [room, -room, room + tight // 2, -room - tight // 2] * 2
    bits = 8 if seed in (0, 3) else int(rng.choice([12, 16]))   # 8-bit outputs: the register epilogues
    zero_out = int(rng.choice([0, fp.qmin(bits), fp.qmax(bits)]))
    pad_value = int(rng.choice([0, -32768, 32767]))
    check(x, wt, bias, shift, k=k, s=s, p=p, rounding=("half_up", "truncate")[seed % 2], bits=bits,
          act=ACTS[seed % 3], pad_value=pad_value, zero_out=zero_out)


@pytest.mark.parametrize("xtype", [np.uint8, np.int8])
@pytest.mark.parametrize("act", ACTS)
def test_8bit_inputs_with_a_large_bias(xtype, act):
    """8-bit inputs (the dot-product paths): the worst case K * max|w| * max|x| plus a bias near
    2^31 fails int32, the row sums with it do not: the int32-lane epilogue is taken; inputs at
    their extremes, signs chosen to reach the row bound."""
    rng = np.random.default_rng(7 if xtype is np.uint8 else 8)
    c, h, w, m, k = 128, 6, 7, 40, 3
    wt = sparse_weights(rng, m, c, k, np.int8, 127, 1)
    xmax = 255 if xtype is np.uint8 else 128
    tight, worst = row_bound(wt, xmax), c * k * k * 127 * xmax
    half = 1 << 5
    room = INT32_MAX - tight - half
    assert worst + room > INT32_MAX >= tight + room + half
    lo, hi = (0, 255) if xtype is np.uint8 else (-128, 127)
    # every row with row 0's signs: rows of positions at the extremes that follow them reach
    # S = +-sum|w| * max|x| away from the padded border
    # (unsigned inputs: every weight positive, so that S reaches sum|w| * 255)
    sign = np.where(wt[0] < 0, -1, 1) if xtype is np.int8 else np.ones_like(wt[0], dtype=np.int64)
    wt = (np.abs(wt.astype(np.int64)) * sign[None]).astype(np.int8)
    tight = row_bound(wt, xmax)
    room = INT32_MAX - tight - half
    x = rng.choice([lo, hi], size=(c, h, w)).astype(xtype)
    x[:, 2:5, 2:5] = np.where(sign > 0, hi, lo)           # the window centred at (3, 3)
    bias = rng.choice([room, -room, room - 1, 0, room + tight // 2, -room - tight // 2], size=m).astype(np.int64)
    bias[:4] = [room, -room, room + tight // 2, -room - tight // 2]
    shift = rng.choice([6, 1, 31, 0], size=m).astype(np.int32)
    shift[:4] = 6
    for rounding in ("half_up", "truncate"):
        check(x, wt, bias, shift, k=k, s=1, p=1, rounding=rounding, bits=8, act=act)


def test_packed_header_row_sum_checked():
    """The row-sum field is trusted for exactness: a value outside [max|w|, K max|w|] is a
    corrupt buffer, refused like the other header fields."""
    rng = np.random.default_rng(3)
    wt = rng.integers(-100, 101, size=(8, 5, 3, 3)).astype(np.int8)
    packed = _conv.pack_weights(wt)
    rs = int(np.frombuffer(packed[48:56].tobytes(), np.int64)[0])
    assert rs == int(np.abs(wt.astype(np.int64)).reshape(8, -1).sum(axis=1).max())
    x = rng.integers(-128, 128, size=(5, 4, 4)).astype(np.int8)
    out = np.empty((8, 4, 4), np.int8)
    kw = dict(ksize=3, stride=1, pad=1, rounding=0, out_bits=8, act=0, acc64=0)
    for bad in (5 * 9 * 128 + 1, -1, int(np.abs(wt).max()) - 1):
        p = packed.copy()
        p[48:56] = np.frombuffer(np.int64(bad).tobytes(), np.uint8)
        with pytest.raises(Exception):
            _conv.conv2d(x, p, np.zeros(8, np.int64), np.full(8, 4, np.int32), out, **kw)


def test_engine_acc64_proves_int32_from_the_integers():
    """cengine.engine_acc64: a documented acc64 layer (acc_bits > 32) runs on the int32 kernels
    when its own integers prove it, and not when one row's sum is too large."""
    from types import SimpleNamespace
    from mdfi.cengine import engine_acc64
    fmt16 = fp.QFormat(16, 12)
    w = np.zeros((4, 512), np.int8)
    w[:, :100] = 20                                     # row sums 2000: 2000 * 32768 + bias fits
    ql = SimpleNamespace(acc64=True, in_fmt=fmt16, weights=w.reshape(4, 512, 1, 1), bias=np.full(4, 10**8))
    assert engine_acc64(ql) is False
    w[2, :] = 127                                       # 65024 * 32768 > 2^31
    assert engine_acc64(ql) is True
    ql.acc64 = False
    assert engine_acc64(ql) is False
