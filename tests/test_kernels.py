"""C kernels (csrc/mdfi_kernels.c) equal their NumPy references, exactly.

Random and edge-heavy inputs: extremes of every width, rounding ties, odd shapes.
The convolution kernel has its own file (test_kernel_conv.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi._ext import _kernels as K
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.errors import ShapeError
from mdfi.layers import heads
from mdfi.layers.maxpool import QMaxpool
from mdfi.layers.upsample import QUpsample
from mdfi.darknet.network import Network

RNG = np.random.default_rng(20261123)
MODES = ("half_up", "truncate")
ACTS = {"linear": 0, "leaky": 1, "relu": 2}


def dtype_for(bits, signed=True):
    return fp.storage_dtype(bits, signed)


def values(shape, bits, rng=RNG, signed=True):
    """Random integers of a width, with its extremes planted."""
    lo, hi = fp.qmin(bits, signed), fp.qmax(bits, signed)
    v = rng.integers(lo, hi + 1, size=shape)
    flat = v.reshape(-1)
    flat[: min(4, flat.size)] = [lo, hi, 0, lo + 1][: min(4, flat.size)]
    return v.astype(dtype_for(bits, signed))


# -- requantize (the header's mdfi_requantize, array form) -----------------------------------------
@pytest.mark.parametrize("bits", [2, 3, 7, 8, 9, 12, 15, 16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("act", list(ACTS))
def test_requantize_equals_reference(bits, mode, act):
    rng = np.random.default_rng(bits * 7 + len(mode) + ACTS[act])
    shifts = np.array([fp.MIN_SHIFT, -8, -1, 0, 1, 2, 5, 13, 31, fp.MAX_SHIFT], np.int32)
    c, p = len(shifts), 512
    acc = rng.integers(-(1 << 46), 1 << 46, size=(c, p), dtype=np.int64)
    acc[:, :64] = rng.integers(-1000, 1000, size=(c, 64))           # small values
    for ch, s in enumerate(shifts):                                  # exact ties: k*2^s +- 2^(s-1)
        if s > 0:
            lim = min(500, (1 << (45 - int(s))) if s <= 45 else 0)    # stay inside |acc| < 2^47
            k = rng.integers(-lim, lim + 1, size=64)
            acc[ch, 64:128] = k * (1 << int(s)) + (1 << int(s - 1))
            acc[ch, 128:192] = k * (1 << int(s)) - (1 << int(s - 1))
    acc[:, 192:196] = [(1 << 46) - 1, -(1 << 46), 0, -1]
    ref = fp.requantize(acc, shifts[:, None], mode, bits, act)
    for simd in (False, True):                  # the header and its AVX2 twin
        out = np.empty((c, p), dtype_for(bits))
        K.requantize_array(acc, shifts, fp.rounding_code(mode), bits, ACTS[act], out, simd=simd)
        assert np.array_equal(out, ref), f"simd={simd}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("act", list(ACTS))
def test_requantize_every_int16_accumulator(mode, act):
    """Exhaustive over all 65536 int16 accumulators for a spread of shifts (every tie), on
    the header, its AVX2 twin's int64 lanes and its int32 lanes (simd="i32")."""
    acc = np.tile(np.arange(-32768, 32768, dtype=np.int64), (8, 1))
    shifts = np.array([-3, 0, 1, 2, 5, 9, 15, 20], np.int32)
    ref = fp.requantize(acc, shifts[:, None], mode, 8, act)
    for simd in (False, True, "i32"):
        out = np.empty(acc.shape, np.int8)
        K.requantize_array(acc, shifts, fp.rounding_code(mode), 8, ACTS[act], out, simd=simd)
        assert np.array_equal(out, ref), f"simd={simd}"


@pytest.mark.parametrize("bits", [2, 5, 8, 9, 16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("act", list(ACTS))
def test_requantize_int32_lanes_every_shift(bits, mode, act):
    """The twin's int32 lanes (the convolution epilogue when a layer's sums fit int32):
    every shift in [MIN_SHIFT, MAX_SHIFT] (1..31 take the int32 lanes, the others the int64
    ones), every int16 accumulator, the int32 extremes and exact ties over the whole int32
    range, against the header and mdfi.fixedpoint."""
    rng = np.random.default_rng(bits * 31 + len(mode) + ACTS[act])
    shifts = np.arange(fp.MIN_SHIFT, fp.MAX_SHIFT + 1, dtype=np.int32)
    lo, hi = -(1 << 31), (1 << 31) - 1
    base = np.concatenate([
        np.arange(-32768, 32768, dtype=np.int64),
        np.array([lo, lo + 1, lo + 2, hi, hi - 1, hi - 2, 0, -1, 1], np.int64),
        rng.integers(lo, hi + 1, size=4096, dtype=np.int64),
    ])
    acc = np.tile(base, (len(shifts), 1))
    for ch, s in enumerate(shifts):                       # ties k*2^s +- 2^(s-1), in int32
        if 1 <= s <= 31:
            k = rng.integers(-(1 << (31 - int(s))), 1 << (31 - int(s)), size=2048, dtype=np.int64)
            t = np.concatenate([k * (1 << int(s)) + (1 << int(s - 1)), k * (1 << int(s)) - (1 << int(s - 1))])
            acc[ch, -t.size:] = np.clip(t, lo, hi)
            # leaky's ties: a*3277 == 2^(s+14) modulo 2^(s+15), and their neighbours
            n = int(s) + 15
            a0 = ((1 << (n - 1)) * pow(3277, -1, 1 << n)) % (1 << n) - (1 << n)
            ties = [a0 - j * (1 << n) + d for j in range(8) for d in (-1, 0, 1)]
            ties = [a for a in ties if lo <= a < 0][:24]
            acc[ch, 9 + 65536:9 + 65536 + len(ties)] = ties
    ref = fp.requantize(acc, shifts[:, None], mode, bits, act)
    for simd in (False, "i32"):
        out = np.empty(acc.shape, dtype_for(bits))
        K.requantize_array(acc, shifts, fp.rounding_code(mode), bits, ACTS[act], out, simd=simd)
        assert np.array_equal(out, ref), f"simd={simd}"


def test_requantize_int32_lanes_refuse_wide_accumulators():
    acc = np.array([[1 << 31]], np.int64)
    with pytest.raises(ShapeError):
        K.requantize_array(acc, np.array([3], np.int32), 0, 8, 0, np.empty((1, 1), np.int8), simd="i32")


def test_avx2_is_available_here():
    """The benchmarks assume it; on a CPU without AVX2 the scalar path is used instead."""
    import platform
    if platform.machine() in ("x86_64", "AMD64"):
        assert isinstance(K.have_avx2(), bool)


# -- maxpool / upsample ---------------------------------------------------------------------------------
def pool_layer(c, h, w, size, stride, padding=None):
    pad = "" if padding is None else f"padding={padding}\n"
    text = f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n[maxpool]\nsize={size}\nstride={stride}\n{pad}"
    return Network(parse_cfg_text(text, "p.cfg"), "p.cfg", warn=False).layers[0]


@pytest.mark.parametrize("c, h, w, size, stride, padding", [
    (3, 8, 8, 2, 2, None), (5, 7, 9, 2, 2, None), (4, 13, 13, 2, 1, None), (2, 16, 16, 5, 1, None),
    (3, 16, 11, 9, 1, None), (1, 6, 6, 13, 1, None), (2, 9, 7, 3, 2, None), (3, 5, 5, 3, 3, 0),
    (2, 1, 1, 2, 1, None), (1, 4, 3, 3, 2, 4),
])
@pytest.mark.parametrize("bits, signed", [(8, False), (8, True), (5, True), (16, True), (12, True)])
def test_maxpool_equals_reference(c, h, w, size, stride, padding, bits, signed):
    layer = pool_layer(c, h, w, size, stride, padding)
    x = values((c, h, w), bits, signed=signed)
    out = np.empty(layer.out_shape, x.dtype)
    K.maxpool(x, out, layer.size, layer.stride, layer.padding)
    ref = QMaxpool(layer, fp.QFormat(bits, 0, signed)).forward_ref([x])
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("c, h, w, size, stride, padding", [
    (8, 13, 13, 13, 1, None), (8, 13, 13, 9, 1, None), (8, 13, 13, 5, 1, None),   # yolov7-tiny's / SPP's pools
    (3, 26, 40, 5, 2, None), (2, 17, 23, 7, 3, 2), (2, 15, 15, 3, 5, None),        # stride > size: rows skipped
    (2, 9, 11, 4, 1, 6), (1, 3, 700, 13, 1, None), (1, 4, 3000, 5, 1, None),       # size x ow > the ring: C loop
    (2, 40, 3, 6, 1, None), (1, 20, 20, 3, 1, 0), (1, 11, 11, 11, 2, 10),
    (2, 9, 70, 5, 1, None), (2, 6, 33, 9, 1, None), (1, 19, 19, 13, 1, None),       # several vectors, tails
    (2, 7, 64, 3, 1, 0), (1, 5, 31, 4, 1, None),                                   # no padding; even size
    (4, 13, 13, 2, 1, None), (3, 40, 45, 2, 1, None), (2, 45, 45, 2, 1, None),     # 2x2/1 (yolov3-tiny's), flat
    (2, 1, 7, 2, 1, None), (2, 6, 1, 2, 1, None), (2, 9, 9, 2, 1, 0),              # planes; one row / column
])
@pytest.mark.parametrize("bits, signed", [(8, False), (8, True), (16, True)])
@pytest.mark.parametrize("nthreads, simd", [(1, None), (3, None), (1, False), (2, "avx512")])
def test_maxpool_large_windows_equal_reference(c, h, w, size, stride, padding, bits, signed, nthreads, simd):
    """Windows of size >= 3 run separably (row maxima kept for the window's rows, then their
    maximum; csrc/mdfi_kernels_pool.c; at stride 1 on AVX2 vectors of columns, from rows padded
    with the type's minimum), 2x2 stride-1 ones with the padding of one on flattened planes
    (AVX2): every output equal to the NumPy reference, also at the borders,
    with strides larger than the window and rows too long for the ring; the portable C (simd
    False) and the default path; half of the maps at the type's minimum, so whole windows of
    minimum values meet the padding's minimum."""
    layer = pool_layer(c, h, w, size, stride, padding)
    rng = np.random.default_rng(size * 100 + w)
    x = values((c, h, w), bits, signed=signed, rng=rng)
    x[:, : h // 2] = np.where(rng.random((c, h // 2, w)) < 0.9, fp.qmin(bits, signed), x[:, : h // 2])
    out = np.empty(layer.out_shape, x.dtype)
    K.maxpool(x, out, layer.size, layer.stride, layer.padding, nthreads=nthreads, simd=simd)
    ref = QMaxpool(layer, fp.QFormat(bits, 0, signed)).forward_ref([x])
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("shape, stride, bits", [((3, 5, 7), 2, 8), ((1, 1, 1), 3, 16), ((4, 13, 13), 2, 6)])
def test_upsample_equals_reference(shape, stride, bits):
    c, h, w = shape
    layer = Network(parse_cfg_text(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n[upsample]\nstride={stride}\n",
                                   "u.cfg"), "u.cfg", warn=False).layers[0]
    x = values(shape, bits)
    out = np.empty(layer.out_shape, x.dtype)
    K.upsample(x, out, stride)
    assert np.array_equal(out, QUpsample(layer, fp.QFormat(bits, 0)).forward_ref([x]))


# -- route alignment, shortcut ------------------------------------------------------------------------
@pytest.mark.parametrize("in_bits, out_bits", [(8, 8), (6, 8), (16, 16), (8, 16), (4, 4)])
@pytest.mark.parametrize("shift", [0, 1, 2, 7, 15])
@pytest.mark.parametrize("mode", MODES)
def test_align_copy_equals_reference(in_bits, out_bits, shift, mode):
    x = values((3, 9, 11), in_bits)
    out = np.empty(x.shape, dtype_for(out_bits))
    K.align_copy(x, out, shift, fp.rounding_code(mode), out_bits)
    assert np.array_equal(out, fp.align(x, shift, 0, mode, out_bits))


@pytest.mark.parametrize("fa, fb, fo", [(3, 3, 3), (5, 3, 2), (3, 5, 6), (0, 16, 4), (7, 7, 0), (4, 2, 9)])
@pytest.mark.parametrize("bits", [8, 5, 16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("act", ["linear", "leaky"])
def test_shortcut_equals_reference(fa, fb, fo, bits, mode, act):
    a, b = values((4, 7, 5), bits), values((4, 7, 5), bits)
    out = np.empty(a.shape, dtype_for(bits))
    K.shortcut(a, fa, b, fb, out, fo, fp.rounding_code(mode), bits, ACTS[act])
    s, fm = fp.add_aligned(a, fa, b, fb)
    assert np.array_equal(out, fp.requantize(s, fm - fo, mode, bits, act))


def test_shortcut_mixed_input_types():
    a, b = values((2, 3, 3), 8), values((2, 3, 3), 16)
    out = np.empty(a.shape, np.int16)
    K.shortcut(a, 4, b, 9, out, 6, 0, 16, 0)
    s, fm = fp.add_aligned(a, 4, b, 9)
    assert np.array_equal(out, fp.requantize(s, fm - 6, "half_up", 16))


# -- every path and thread count: the AVX2 bodies (int32 lanes of the twin, int64 lanes for
#    shifts outside 1..31, scalar tails) and ranges split over the convolution's pool ----------------
OPTS = [(1, False), (1, True), (2, False), (2, True), (3, True), (1, "avx512"), (2, "avx512")]
BIG = (37, 41, 43)          # 65231 elements: several ranges per thread, odd tails


@pytest.mark.parametrize("nthreads, simd", OPTS)
@pytest.mark.parametrize("fa, fb, fo", [(3, 3, 3), (5, 3, 2), (3, 5, 6), (0, 16, 4), (7, 7, -30), (4, 2, 9),
                                        (9, 9, -20), (1, 0, 30)])
@pytest.mark.parametrize("bits", [8, 16])
def test_shortcut_paths_and_threads(nthreads, simd, fa, fb, fo, bits):
    rng = np.random.default_rng(fa * 100 + fb * 10 + bits)
    a, b = values(BIG, bits, rng), values(BIG, bits, rng)
    b.reshape(-1)[-9:] = fp.qmin(bits)                        # extremes in the scalar tail too
    s, fm = fp.add_aligned(a, fa, b, fb)
    for mode in MODES:
        for act in ACTS:
            out = np.empty(a.shape, dtype_for(bits))
            K.shortcut(a, fa, b, fb, out, fo, fp.rounding_code(mode), bits, ACTS[act], nthreads=nthreads, simd=simd)
            assert np.array_equal(out, fp.requantize(s, fm - fo, mode, bits, act)), (mode, act)


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_shortcut_int8_bodies_avx512(nthreads):
    """int8 + int8 -> int8 with a shift <= 0 (yolov3's shortcuts: equal formats, shift 0) or
    a shift of 1 with formats at most one bit apart on the AVX-512 bodies: the saturating byte
    add (da = db = shift = 0), the byte average (shift 1), the 16-lane left shift, every output
    width 2..8, both roundings, every activation (leaky takes the other bodies), full-range and
    extreme inputs, lengths with tails of both loops."""
    from mdfi._ext import _conv
    if "avx512bw" not in _conv.cpu_features().split():
        pytest.skip(f"needs x86-64 AVX-512 F/BW/VL/DQ; this CPU/build has: {_conv.cpu_features()}")
    rng = np.random.default_rng(77 + nthreads)
    for n in (1, 15, 17, 63, 64, 65, 130, 70001):
        a = rng.integers(-128, 128, n).astype(np.int8)
        b = rng.integers(-128, 128, n).astype(np.int8)
        a[:n // 4], b[:n // 8] = 127, -128                       # extremes, both signs
        b[n // 8:n // 4] = 127
        for fa, fb, fo in [(3, 3, 3), (5, 5, 5), (3, 5, 6), (4, 2, 9), (1, 0, 30), (6, 6, 36), (0, 0, 1), (2, 2, 2),
                           (0, 10, 26), (0, 16, 31), (16, 0, 20), (3, 3, 2), (4, 3, 3), (3, 4, 3), (5, 6, 5)]:
            s, fm = fp.add_aligned(a, fa, b, fb)
            for bits in range(2, 9):
                for act in ACTS:
                    for mode in MODES:
                        out = np.empty(n, np.int8)
                        K.shortcut(a, fa, b, fb, out, fo, fp.rounding_code(mode), bits, ACTS[act], nthreads=nthreads,
                                   simd="avx512")
                        assert np.array_equal(out, fp.requantize(s, fm - fo, mode, bits, act)), \
                            (n, fa, fb, fo, bits, act, mode)


@pytest.mark.parametrize("nthreads, simd", OPTS)
@pytest.mark.parametrize("in_bits, out_bits, signed", [(8, 8, True), (8, 16, True), (16, 16, True), (8, 8, False),
                                                       (5, 12, True)])
def test_align_copy_paths_and_threads(nthreads, simd, in_bits, out_bits, signed):
    x = values(BIG, in_bits, np.random.default_rng(in_bits + out_bits), signed=signed)
    for shift in (0, 1, 3, 8, 31, 32, 47):
        for mode in MODES:
            out = np.empty(x.shape, dtype_for(out_bits))
            K.align_copy(x, out, shift, fp.rounding_code(mode), out_bits, nthreads=nthreads, simd=simd)
            assert np.array_equal(out, fp.align(x, shift, 0, mode, out_bits)), (shift, mode)


@pytest.mark.parametrize("simd", ["avx512", "avx2"])
@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_maxpool_2x2_8bit_avx512(nthreads, simd):
    """2x2 stride-2 max pools of 8-bit maps wide enough for the AVX-512BW rows (64 outputs per
    step, masked tails, a last single row, the cut last window in portable C) and the AVX2 rows
    (32 outputs per step, the rest of each row in C): int8 and uint8, random and extreme values,
    widths with and without a tail, padding as Darknet sets it; maps tall enough for the split
    by output rows (runs from both ends, odd heights with their last single row)."""
    from mdfi._ext import _conv
    need = "avx512bw" if simd == "avx512" else "avx2"
    if need not in _conv.cpu_features().split():
        pytest.skip(f"needs x86-64 {need}; this CPU/build has: {_conv.cpu_features()}")
    rng = np.random.default_rng(31 + nthreads)
    for c, h, w in [(3, 4, 128), (2, 5, 131), (4, 7, 416), (1, 2, 257), (5, 3, 255), (3, 6, 52), (2, 3, 2), (1, 1, 5),
                    (2, 9, 129), (2, 3, 64), (1, 4, 65), (2, 5, 95), (1, 2, 26),
                    # tall enough to be split by output rows from both ends on 2-3 threads
                    (4, 67, 130), (2, 201, 64), (3, 96, 416)]:
        for signed in (True, False):
            layer = pool_layer(c, h, w, 2, 2)
            lo, hi = (-128, 128) if signed else (0, 256)
            x = rng.integers(lo, hi, (c, h, w)).astype(np.int8 if signed else np.uint8)
            x[0, 0, ::3] = lo
            x[-1, -1, 1::5] = hi - 1
            out = np.empty(layer.out_shape, x.dtype)
            K.maxpool(x, out, layer.size, layer.stride, layer.padding, nthreads=nthreads,
                      simd="avx512" if simd == "avx512" else True)
            ref = QMaxpool(layer, fp.QFormat(8, 0, signed=signed)).forward_ref([x])
            assert np.array_equal(out, ref), (c, h, w, signed)


@pytest.mark.parametrize("nthreads, simd", OPTS)
def test_pool_upsample_heads_threads(nthreads, simd):
    for (c, h, w, size, stride), bits, signed in [((64, 52, 53, 2, 2), 8, True), ((40, 27, 26, 2, 2), 16, True),
                                                  ((24, 13, 13, 2, 1), 8, True), ((16, 30, 31, 3, 2), 8, False)]:
        layer = pool_layer(c, h, w, size, stride)
        x = values((c, h, w), bits, signed=signed)
        out = np.empty(layer.out_shape, x.dtype)
        K.maxpool(x, out, layer.size, layer.stride, layer.padding, nthreads=nthreads, simd=simd)
        assert np.array_equal(out, QMaxpool(layer, fp.QFormat(bits, 0, signed)).forward_ref([x]))
    for (c, h, w), stride, bits in [((128, 26, 26), 2, 8), ((33, 13, 17), 3, 16), ((300, 7, 9), 2, 8)]:
        layer = Network(parse_cfg_text(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n[upsample]\n"
                                       f"stride={stride}\n", "u.cfg"), "u.cfg", warn=False).layers[0]
        x = values((c, h, w), bits)
        out = np.empty(layer.out_shape, x.dtype)
        K.upsample(x, out, stride, nthreads=nthreads, simd=simd)
        assert np.array_equal(out, QUpsample(layer, fp.QFormat(bits, 0)).forward_ref([x]))
    f = fp.QFormat(8, 4)
    lg, ex = heads.logistic_table(f), heads.exp_table(f)
    x = values((255, 676), 8)
    sel = (np.arange(255) % 85 % 3 == 2).astype(np.uint8)
    out = np.empty(x.shape, np.int32)
    K.head_lookup(x, f.min, lg, ex, sel, out, nthreads=nthreads, simd=simd)
    assert np.array_equal(out, np.where(sel[:, None] == 0, heads.lookup(lg, x, f), heads.lookup(ex, x, f)))


@pytest.mark.parametrize("nthreads", [0, -1, 300, 1.5, "2"])
def test_kernels_reject_bad_thread_counts(nthreads):
    with pytest.raises(ShapeError):
        K.upsample(np.zeros((1, 2, 2), np.int8), np.zeros((1, 4, 4), np.int8), 2, nthreads=nthreads)


# -- reorg ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("c, h, w, s", [(8, 4, 6, 2), (4, 2, 2, 2), (18, 9, 6, 3), (5, 3, 3, 1)])
def test_reorg_equals_reference(c, h, w, s):
    layer = Network(parse_cfg_text(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n[reorg]\nstride={s}\n", "r.cfg"),
                    "r.cfg", warn=False).layers[0]
    x = values((c, h, w), 16)
    out = np.empty(layer.out_shape, x.dtype)
    K.reorg(x, out, s)
    assert np.array_equal(out, layer.reorg(x))


# -- detection heads ----------------------------------------------------------------------------------
@pytest.mark.parametrize("bits, frac", [(8, 4), (8, -2), (4, 1), (12, 8), (16, 12)])
def test_head_lookup_equals_reference(bits, frac):
    f = fp.QFormat(bits, frac)
    lg, ex = heads.logistic_table(f), heads.exp_table(f)
    x = values((10, 37), bits)
    sel = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0], np.uint8)
    out = np.empty(x.shape, np.int32)
    K.head_lookup(x, f.min, lg, ex, sel, out)
    ref = np.where(sel[:, None] == 0, heads.lookup(lg, x, f), heads.lookup(ex, x, f))
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("bits, frac", [(8, 4), (8, 0), (16, 10), (3, 1)])
def test_softmax_equals_reference(bits, frac):
    f = fp.QFormat(bits, frac)
    table = heads.expneg_table(f)
    n, classes, entries, plane = 3, 20, 25, 17
    x = values((n * entries, plane), bits)
    x[5:25, 0] = f.max                                 # ties for the maximum
    x[30:50, 1] = f.min
    out = np.zeros(x.shape, np.int32)
    K.softmax_int(x, n, entries, 5, classes, table, out)
    ref = heads.softmax_int(x.reshape(n, entries, plane)[:, 5:], table, axis=1)
    assert np.array_equal(out.reshape(n, entries, plane)[:, 5:], ref)


# -- the wrappers refuse inconsistent arguments (C is never reached) -------------------------------
@pytest.mark.parametrize("call", [
    lambda: K.maxpool(np.zeros((2, 4, 4), np.int8), np.zeros((2, 3, 3), np.int8), 2, 2, 1),
    lambda: K.maxpool(np.zeros((2, 4, 4), np.int8), np.zeros((2, 2, 2), np.int16), 2, 2, 1),
    lambda: K.maxpool(np.zeros((2, 4, 4), np.float32), np.zeros((2, 2, 2), np.float32), 2, 2, 1),
    lambda: K.maxpool(np.zeros((2, 4, 4), np.int8)[:, ::2], np.zeros((2, 1, 2), np.int8), 2, 2, 1),
    lambda: K.upsample(np.zeros((1, 2, 2), np.int8), np.zeros((1, 4, 5), np.int8), 2),
    lambda: K.align_copy(np.zeros(5, np.int16), np.zeros(5, np.int8), 1, 0, 16),
    lambda: K.align_copy(np.zeros(5, np.int8), np.zeros(4, np.int8), 1, 0, 8),
    lambda: K.align_copy(np.zeros(5, np.int8), np.zeros(5, np.int8), -1, 0, 8),
    lambda: K.shortcut(np.zeros(4, np.int8), 0, np.zeros(5, np.int8), 0, np.zeros(4, np.int8), 0, 0, 8, 0),
    lambda: K.shortcut(np.zeros(4, np.int8), 0, np.zeros(4, np.int8), 30, np.zeros(4, np.int8), 0, 0, 8, 0),
    lambda: K.shortcut(np.zeros(4, np.int8), 0, np.zeros(4, np.int8), 0, np.zeros(4, np.int8), 0, 2, 8, 0),
    lambda: K.requantize_array(np.zeros((2, 3), np.int64), np.array([0, 99], np.int32), 0, 8, 0,
                               np.zeros((2, 3), np.int8)),
    lambda: K.requantize_array(np.zeros((2, 3), np.int64), np.array([0, 1], np.int32), 0, 12, 0,
                               np.zeros((2, 3), np.int8)),
    lambda: K.reorg(np.zeros((3, 4, 4), np.int8), np.zeros((12, 2, 2), np.int8), 2),
    lambda: K.head_lookup(np.zeros((2, 3), np.int8), -128, np.zeros(256, np.uint16), np.zeros(255, np.int32),
                          np.zeros(2, np.uint8), np.zeros((2, 3), np.int32)),
    lambda: K.head_lookup(np.zeros((2, 3), np.int8), -128, np.zeros(256, np.uint16), np.zeros(256, np.int32),
                          np.full(2, 3, np.uint8), np.zeros((2, 3), np.int32)),
    lambda: K.softmax_int(np.zeros((10, 3), np.int8), 1, 10, 5, 6, np.ones(256, np.int32), np.zeros((10, 3), np.int32)),
    lambda: K.maxpool(np.zeros((0, 4, 4), np.int8), np.zeros((0, 2, 2), np.int8), 2, 2, 1),
    lambda: K.maxpool(np.zeros((2, 4, 4), np.int8), np.zeros((2, 2, 2), np.int8).copy().setflags(write=False) or
                      np.zeros((2, 2, 2), np.int8)[:, :, ::-1], 2, 2, 1),
])
def test_wrappers_reject_bad_arguments(call):
    with pytest.raises(ShapeError):
        call()


@pytest.mark.parametrize("nthreads", [1, 2, 3])
def test_head_lookup_every_byte(nthreads):
    """8-bit head inputs (the byte-indexed tables of mdfi_kernels.c): every int8 and uint8
    value, tables shorter and as long as the byte range (values outside clamp to the ends),
    both tables and the untouched third selector, channels split over 1-3 threads."""
    rng = np.random.default_rng(5 + nthreads)
    for dt, qmin, tlen in [(np.int8, -128, 256), (np.int8, -8, 16), (np.int8, -20, 300), (np.uint8, 0, 256),
                           (np.uint8, 3, 40), (np.int8, 100, 7)]:
        lg = rng.integers(0, 2**16, tlen).astype(np.uint16)
        ex = rng.integers(-2**31, 2**31, tlen).astype(np.int32)
        vals = np.arange(256, dtype=np.int16) + (-128 if dt == np.int8 else 0)
        x = np.stack([rng.permutation(vals) for _ in range(37)]).astype(dt)
        sel = (np.arange(37) % 3).astype(np.uint8)
        out = np.full(x.shape, 12345, np.int32)
        K.head_lookup(x, qmin, lg, ex, sel, out, nthreads=nthreads)
        idx = np.clip(x.astype(np.int64) - qmin, 0, tlen - 1)
        ref = np.where(sel[:, None] == 0, lg[idx].astype(np.int32), np.where(sel[:, None] == 1, ex[idx], 12345))
        assert np.array_equal(out, ref), (dt, qmin, tlen)


def test_head_lookup_never_reads_outside_the_table():
    # a value outside the table's input range (impossible from a saturating producer) is clamped
    f = fp.QFormat(4, 0)
    x = np.array([[-100, 100, 0]], np.int8)
    out = np.empty(x.shape, np.int32)
    K.head_lookup(x, f.min, heads.logistic_table(f), heads.exp_table(f), np.zeros(1, np.uint8), out)
    assert out[0, 0] == heads.logistic_table(f)[0] and out[0, 1] == heads.logistic_table(f)[-1]


# -- route alignment with zero points: sat(R((x - zero_in) / 2**shift) + zero_out) -----------------------
@pytest.mark.parametrize("nthreads, simd", OPTS)
@pytest.mark.parametrize("in_bits, out_bits, signed", [(8, 8, True), (8, 16, True), (16, 16, True), (8, 8, False),
                                                       (5, 12, True), (16, 8, True)])
def test_align_copy_zero_points(nthreads, simd, in_bits, out_bits, signed):
    x = values(BIG, in_bits, np.random.default_rng(3 * in_bits + out_bits), signed=signed)
    lo, hi = (fp.qmin(in_bits), fp.qmax(in_bits)) if signed else (0, 2**in_bits - 1)
    for zi, zo in ((lo, fp.qmin(out_bits)), (hi, fp.qmax(out_bits)), (0, fp.qmax(out_bits)), (lo + 1, 0),
                   (hi // 3, -1), (1, fp.qmin(out_bits) + 1)):
        for shift in (0, 1, 3, 8, 31, 47):
            for mode in MODES:
                out = np.empty(x.shape, dtype_for(out_bits))
                K.align_copy(x, out, shift, fp.rounding_code(mode), out_bits, nthreads=nthreads, simd=simd,
                             zero_in=int(zi), zero_out=int(zo))
                ref = fp.align(x, shift, 0, mode, out_bits, zero_in=int(zi), zero_out=int(zo))
                assert np.array_equal(out, ref), (zi, zo, shift, mode)


@pytest.mark.parametrize("zi, zo, bits", [(-40000, 0, 8), (70000, 0, 8), (0, 128, 8), (0, -9, 4), (0, 1.5, 8)])
def test_align_copy_zero_points_checked(zi, zo, bits):
    with pytest.raises(ShapeError, match="zero"):
        K.align_copy(np.zeros(5, np.int16), np.zeros(5, np.int16), 1, 0, bits, zero_in=zi, zero_out=zo)


# -- shortcut with zero points: sat(R(act((a - za)*2^da + (b - zb)*2^db) / 2^s) + zo) ----------------
def _shortcut_zp_ref(a, fa, b, fb, fo, mode, bits, act, za, zb, zo):
    fm = max(fa, fb)
    sa = (a.astype(np.int64) - za) << (fm - fa)
    sb = 0 if b is None else (b.astype(np.int64) - zb) << (fm - fb)
    return fp.requantize(sa + sb, fm - fo, mode, bits, act, zero=zo)


@pytest.mark.parametrize("nthreads, simd", OPTS)
@pytest.mark.parametrize("fa, fb, fo", [(3, 3, 3), (5, 3, 2), (3, 5, 6), (0, 16, 4), (7, 7, -30), (4, 2, 9),
                                        (1, 0, 30)])
@pytest.mark.parametrize("bits", [8, 16])
def test_shortcut_zero_points_paths(nthreads, simd, fa, fb, fo, bits):
    """Every path (scalar, AVX2 int32/int64 lanes, the AVX-512 choice falling back), thread
    count, rounding and activation; zero points at the extremes of the codes and both
    inputs' zero points independent of the output's; b None (its real value 0)."""
    rng = np.random.default_rng(fa * 100 + fb * 10 + bits + 5)
    a, b = values(BIG, bits, rng), values(BIG, bits, rng)
    b.reshape(-1)[-9:] = fp.qmin(bits)
    a.reshape(-1)[-5:] = fp.qmax(bits)
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    for za, zb, zo in ((lo, hi, lo), (hi, lo, hi), (0, 0, hi), (lo, 0, 0), (0, hi, -1), (hi // 3, lo + 1, 7),
                       (-5, 17, lo + 1)):
        for mode in MODES:
            for act in ACTS:
                out = np.empty(a.shape, dtype_for(bits))
                K.shortcut(a, fa, b, fb, out, fo, fp.rounding_code(mode), bits, ACTS[act], nthreads=nthreads,
                           simd=simd, za=int(za), zb=int(zb), zo=int(zo))
                ref = _shortcut_zp_ref(a, fa, b, fb, fo, mode, bits, act, za, zb, zo)
                assert np.array_equal(out, ref), (za, zb, zo, mode, act)
        out = np.empty(a.shape, dtype_for(bits))
        K.shortcut(a, fa, None, fb, out, fo, 0, bits, ACTS["leaky"], nthreads=nthreads, simd=simd,
                   za=int(za), zb=int(zb), zo=int(zo), b_type=b.dtype)
        assert np.array_equal(out, _shortcut_zp_ref(a, fa, None, fb, fo, "half_up", bits, "leaky", za, zb, zo))


@pytest.mark.parametrize("nthreads", [1, 2])
def test_shortcut_int16_lanes_avx512(nthreads):
    """int8 + int8 -> int8, linear or relu, shift >= 0, with or without zero points, where the
    aligned sum provably fits int16 (csrc/mdfi_kernels_shortcut.c, shortcut_avx512_w16; yolov3's
    zero-point shortcuts): shifts 0..20 (half_up's carry bit, counts past 15), alignments
    0..7, zero points at the codes' extremes (some pairs just past the int16 bound, which must
    take the int32 bodies), every output width 2..8, extreme inputs, lengths with tails."""
    from mdfi._ext import _conv
    if "avx512bw" not in _conv.cpu_features().split():
        pytest.skip(f"needs x86-64 AVX-512 F/BW/VL/DQ; this CPU/build has: {_conv.cpu_features()}")
    rng = np.random.default_rng(31 + nthreads)
    zps = [(0, 0, 0), (-110, -113, -108), (-128, 127, 5), (127, -128, -128), (3, -2, 127), (-128, -128, 0)]
    for n in (1, 31, 33, 64, 97, 5003):
        a = rng.integers(-128, 128, n).astype(np.int8)
        b = rng.integers(-128, 128, n).astype(np.int8)
        a[:n // 4], b[:n // 8] = 127, -128
        b[n // 8:n // 4] = 127
        a[-3:], b[-2:] = -128, -128
        for fa, fb, fo in [(4, 4, 4), (4, 5, 4), (5, 4, 3), (3, 3, 0), (7, 0, 7), (0, 7, 6), (2, 8, -6), (6, 6, 0),
                           (4, 4, -12), (4, 5, -15), (1, 1, -15), (9, 2, -3)]:
            for za, zb, zo in zps:
                for bits in (2, 5, 8):
                    zo_b = int(np.clip(zo, fp.qmin(bits), fp.qmax(bits)))
                    for act in ("linear", "relu", "leaky"):
                        for mode in MODES:
                            out = np.empty(n, np.int8)
                            K.shortcut(a, fa, b, fb, out, fo, fp.rounding_code(mode), bits, ACTS[act],
                                       nthreads=nthreads, simd="avx512", za=za, zb=zb, zo=zo_b)
                            ref = _shortcut_zp_ref(a, fa, b, fb, fo, mode, bits, act, za, zb, zo_b)
                            assert np.array_equal(out, ref), (n, fa, fb, fo, za, zb, zo_b, bits, act, mode)


@pytest.mark.parametrize("nthreads", [1, 2])
def test_shortcut_zero_points_int8_short_lengths(nthreads):
    """int8 + int8 -> int8 (the case the AVX-512 bodies take without zero points), lengths
    with tails, every width 2..8 (zero points inside the output width), mixed input types."""
    rng = np.random.default_rng(91 + nthreads)
    for n in (1, 7, 8, 9, 63, 65, 1001):
        a = rng.integers(-128, 128, n).astype(np.int8)
        b = rng.integers(-128, 128, n).astype(np.int8)
        for fa, fb, fo in [(3, 3, 3), (0, 0, 1), (4, 3, 3), (0, 16, 31)]:
            for bits in range(2, 9):
                for za, zb, zo in ((-128, 127, fp.qmin(bits)), (127, -128, fp.qmax(bits)), (3, -3, 0)):
                    for simd in (False, True, "avx512"):
                        for act in ACTS:
                            out = np.empty(n, np.int8)
                            K.shortcut(a, fa, b, fb, out, fo, 1, bits, ACTS[act], nthreads=nthreads, simd=simd,
                                       za=za, zb=zb, zo=zo)
                            ref = _shortcut_zp_ref(a, fa, b, fb, fo, "truncate", bits, act, za, zb, zo)
                            assert np.array_equal(out, ref), (n, fa, fb, fo, bits, za, zb, zo, simd, act)
    a, b = values((2, 3, 3), 8), values((2, 3, 3), 16)
    out = np.empty(a.shape, np.int16)
    K.shortcut(a, 4, b, 9, out, 6, 0, 16, 0, za=-100, zb=30000, zo=-7)
    assert np.array_equal(out, _shortcut_zp_ref(a, 4, b, 9, 6, "half_up", 16, "linear", -100, 30000, -7))


@pytest.mark.parametrize("kw", [dict(za=-40000), dict(zb=70000), dict(zo=128), dict(zo=-129), dict(za=1.5),
                                dict(zo=True)])
def test_shortcut_zero_points_checked(kw):
    with pytest.raises(ShapeError):
        K.shortcut(np.zeros(4, np.int8), 0, np.zeros(4, np.int8), 0, np.zeros(4, np.int8), 0, 0, 8, 0, **kw)
