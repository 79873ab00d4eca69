"""16-bit inputs as AMX byte-split products (csrc/mdfi_conv_q8.h, mdfi_q8_split_ok; the AMX
kernel and amx_x4_split in csrc/mdfi_conv_amx.c): x = 256*hi + lo, the hi half of K first,
its C tiles times 256, then the lo half, modulo 2^32 and exact under the layer's int32 bound.
yolov3-tiny's 16-bit-input head convolutions are such layers.  On `amx` (real tiles) and
`amx-sim` (the same kernel text on a C model of the tile instructions), every output must
equal the NumPy integer reference (conv2d_int_ref) bit for bit: random and extreme inputs
(the byte boundaries 255/256, -32768, 32767), every activation and rounding, 8- and 16-bit
outputs with zero points, shifts the int32 lanes take and others, 1-3 threads; the layers
that cannot split (a channel count the K chunks cannot halve, 3x3 kernels, padding, the
bound failing) take the int16 kernels and are equal as well."""

from __future__ import annotations

import numpy as np
import pytest

from mdfi.layers.conv_arith import conv2d_int_ref

_conv = pytest.importorskip("mdfi._ext._conv")
from test_conv_bound import ACTS, INT32_MAX, run  # noqa: E402  (conv2d with acc64=0 on one path)

PATHS = [p for p in ("amx", "amx-sim") if p in _conv.available_simd_paths()]

pytestmark = pytest.mark.skipif(not PATHS, reason="needs an AMX build (amx or amx-sim: x86-64 with AVX512-VNNI); "
                                                  f"this CPU/build has: {_conv.available_simd_paths()}")


def case(rng, c, h, w, m, style):
    wt = rng.integers(-12, 13, size=(m, c, 1, 1)).astype(np.int8)
    wt[:, 0, 0, 0] = rng.choice([-128, 127], size=m)               # max|w| at the extremes
    if style == "random":
        x = rng.integers(-32768, 32768, size=(c, h, w))
    else:   # the split's byte boundaries and the extremes
        x = rng.choice([-32768, 32767, -32767, 255, 256, -256, -255, 0, -1, 1, 128, -129, 32512, -32513],
                       size=(c, h, w))
    tight = int(np.abs(wt.astype(np.int64)).reshape(m, -1).sum(axis=1).max()) * 32768
    assert tight < INT32_MAX, "the test's weights must keep the layer's int32 bound"
    room = INT32_MAX - tight - (1 << 30)
    bias = rng.integers(-room, room + 1, size=m).astype(np.int64)
    shift = rng.choice([12, 15, 20, 1, 31, 0, -2], size=m).astype(np.int32)
    return x.astype(np.int16), wt, bias, shift


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("c, h, w, m", [(64, 1, 1, 1), (64, 5, 7, 17), (128, 13, 13, 40), (256, 26, 26, 255),
                                        (512, 13, 13, 255), (1024, 3, 5, 33)])
def test_split_equals_reference(path, c, h, w, m):
    rng = np.random.default_rng(c + h * 7 + m)
    for i, style in enumerate(("random", "edges")):
        x, wt, bias, shift = case(rng, c, h, w, m, style)
        rounding, act = ("half_up", "truncate")[i], ACTS[(c // 64 + i) % 3]
        for bits, zo in ((8, 0), (8, -100), (16, 0), (12, 2047)):
            ref = conv2d_int_ref(x, wt, bias, shift, size=1, stride=1, padding=0, rounding=rounding, bits=bits,
                                 activation=act, zero_out=zo)
            for nthreads in (1, 2, 3):
                n0 = _conv._q8_split_calls()
                out = run(x, wt, bias, shift, k=1, s=1, p=0, rounding=rounding, bits=bits, act=act, path=path,
                          nthreads=nthreads, zero_out=zo)
                assert _conv._q8_split_calls() == n0 + 1, f"{path}: the split path was not taken"
                if not np.array_equal(out, ref):
                    bad = tuple(np.argwhere(out != ref)[0])
                    raise AssertionError(f"{path}, {nthreads} thr, bits {bits}, zo {zo}, {style}: {out[bad]} != "
                                         f"{ref[bad]} at {bad}")


@pytest.mark.parametrize("path", PATHS)
def test_layers_that_do_not_split_are_equal_too(path):
    """A channel count whose K chunks cannot end at the half (576: 9 steps a half), a 3x3
    kernel, padding, 16-bit weights, and weights whose row sums break the int32 bound: the
    int16 kernels, equal to the reference, and the split counter unchanged."""
    rng = np.random.default_rng(5)
    for c, k, p, wdtype, big in ((576, 1, 0, np.int8, False), (64, 3, 1, np.int8, False), (64, 1, 1, np.int8, False),
                                 (64, 1, 0, np.int16, False), (1024, 1, 0, np.int8, True)):
        wt = rng.integers(-9, 10, size=(19, c, k, k)).astype(wdtype)
        if big:
            wt[3] = 127                                  # 1024 * 127 * 32768 > 2^31
        x = rng.integers(-32768, 32768, size=(c, 6, 5)).astype(np.int16)
        bias = rng.integers(-1000, 1000, size=19).astype(np.int64)
        shift = np.full(19, 18, np.int32)
        acc64 = int(np.abs(wt.astype(np.int64)).reshape(19, -1).sum(axis=1).max() * 32768 + 1000 > INT32_MAX)
        ref = conv2d_int_ref(x, wt, bias, shift, size=k, stride=1, padding=p, rounding="half_up", bits=8,
                             activation="leaky")
        n0 = _conv._q8_split_calls()
        out = np.full(ref.shape, 77, np.int8)
        _conv.conv2d(x, _conv.pack_weights(wt), bias, shift, out, ksize=k, stride=1, pad=p, rounding=0, out_bits=8,
                     act=1, acc64=acc64, nthreads=2, simd=path)
        assert _conv._q8_split_calls() == n0, (c, k, p, wdtype)
        assert np.array_equal(out, ref), (c, k, p, wdtype)
