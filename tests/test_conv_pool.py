"""The 2x2 stride-2 max pool fused into the convolution (conv2d(..., pool=...),
mdfi_conv2d_pool; CRunner.pooled).

Kernel: on every path this machine can run, the convolution's output equals conv2d_int_ref and,
when the call reports the pool written (the Winograd kernels of the int16-pair SIMD paths, even
output sizes), the pool equals the 2x2 windows' max of the reference output (a NumPy reshape);
otherwise the pool array is untouched.  Odd and even maps, padding 0-2, uint8/int8 inputs,
widths 2..16, every activation, both roundings, per-channel shifts (folded and general
requantize rows), 1-3 threads, maps that reach each work split of mdfi_conv_wino.c.

With pool_only=True the output is left alone where the pool is fused (else it is written and the
pool is not).

Engine: a small network whose pooled convolution is also read by a route, at even and odd map
sizes, every path, 1-3 threads, keep="all", keep="needed" (where pools that alone read their
convolution take pool_only) and a hook: every layer equals QuantizedModel.forward_ref, and
CRunner plans exactly the tile-aligned pools.
"""

from __future__ import annotations

import numpy as np
import pytest

from test_kernel_conv import ACTS, fill, int_dtype, reference

_conv = pytest.importorskip("mdfi._ext._conv")
from mdfi import fixedpoint as fp  # noqa: E402
from mdfi.cengine import CRunner  # noqa: E402
from mdfi.darknet.cfgfile import parse_cfg_text  # noqa: E402
from mdfi.darknet.network import Network  # noqa: E402
from mdfi.darknet.weights import random_weights  # noqa: E402
from mdfi.errors import MDFIError  # noqa: E402
from mdfi.quant.quantize import quantize_network  # noqa: E402

PATHS = _conv.available_simd_paths()
WINO_PATHS = {"avx2", "avx512bw"}


def pool_ref(out):
    m, oh, ow = out.shape
    return out.reshape(m, oh // 2, 2, ow // 2, 2).max(axis=(2, 4))


KERNEL_CASES = [  # C, H, W, M, pad
    (32, 26, 26, 40, 1),    # 11 tile blocks: (block, panel group) items on 2-3 threads
    (16, 52, 52, 20, 1),    # 43 blocks: two-ended N split
    (64, 8, 8, 64, 1),      # one block: panel (M) split
    (24, 12, 10, 7, 1),     # one short panel
    (20, 16, 14, 13, 0),    # pad 0: OH, OW = 14, 12
    (18, 11, 9, 9, 2),      # pad 2: 13 x 11 outputs (odd: not fused)
    (32, 13, 13, 16, 1),    # 13x13 (odd: not fused)
    (40, 13, 14, 11, 1),    # odd height, even width (not fused)
    (17, 2, 2, 5, 1),       # one tile
]


def _kernel_case(rng, i, c, h, w, m):
    """(xlo, xhi, x, weights, bias, shift, packed) of KERNEL_CASES[i]: uint8 or int8 input, fills
    that cycle through random and edge-heavy patterns, shifts from -2 to 33."""
    xlo, xhi, xdt = (0, 255, np.uint8) if i % 3 == 0 else (-128, 127, np.int8)
    x = fill(rng, (c, h, w), xlo, xhi, ["random", "edges", "max", "min", "alt"][i % 5], xdt)
    wt = fill(rng, (m, c, 3, 3), -128, 127, ["random", "edges", "alt", "random", "min"][i % 5], np.int8)
    pmax = c * 9 * 128 * max(-xlo, xhi)
    bias = rng.integers(-pmax // 4, pmax // 4 + 1, size=m).astype(np.int64)
    shift = rng.choice([12, 13, 14, 15, 16, 1, 0, -2, 33], size=m).astype(np.int32)
    return xlo, xhi, x, wt, bias, shift, _conv.pack_weights(wt)


@pytest.mark.parametrize("path", PATHS)
def test_conv_pool_kernel(path):
    before = _conv.simd_path()
    assert _conv.set_simd_path(path) == path
    _conv.set_simd_path(before)
    rng = np.random.default_rng(sum(map(ord, path)))
    for i, (c, h, w, m, p) in enumerate(KERNEL_CASES):
        xlo, xhi, x, wt, bias, shift, packed = _kernel_case(rng, i, c, h, w, m)
        for bits, rounding, act in ((8, "half_up", "leaky"), (5, "truncate", "relu"), (16, "half_up", "linear"),
                                    (12, "truncate", "leaky")):
            kw = dict(k=3, s=1, p=p, rounding=rounding, bits=bits, act=act)
            ref = reference(x, wt, bias, shift, **kw)
            mo, oh, ow = ref.shape
            aligned = oh % 2 == 0 and ow % 2 == 0
            for nthreads in (1, 2, 3):
                out = np.full(ref.shape, 77, int_dtype(bits))
                pool = np.full((mo, oh // 2, ow // 2), 55, int_dtype(bits))
                done = _conv.conv2d(x, packed, bias, shift, out, ksize=3, stride=1, pad=p,
                                    rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act),
                                    acc64=0, nthreads=nthreads, simd=path, pool=pool)
                where = (path, i, bits, rounding, act, nthreads)
                assert np.array_equal(out, ref), where
                # the fusion happens exactly where it must: Winograd paths, tile-aligned outputs
                assert done == (path in WINO_PATHS and aligned), where
                if done:
                    assert np.array_equal(pool, pool_ref(ref)), where
                else:
                    assert (pool == 55).all(), where
                # pool_only: the pool alone where it is fused, else the output (and no pool)
                out[:] = 77
                pool[:] = 55
                done = _conv.conv2d(x, packed, bias, shift, out, ksize=3, stride=1, pad=p,
                                    rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act),
                                    acc64=0, nthreads=nthreads, simd=path, pool=pool, pool_only=True)
                assert done == (path in WINO_PATHS and aligned), where
                if done:
                    assert np.array_equal(pool, pool_ref(ref)) and (out == 77).all(), where
                else:
                    assert np.array_equal(out, ref) and (pool == 55).all(), where


def test_conv_pool_arguments():
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, (16, 8, 8)).astype(np.int8)
    packed = _conv.pack_weights(rng.integers(-128, 128, (4, 16, 3, 3)).astype(np.int8))
    bias, shift = np.zeros(4, np.int64), np.full(4, 10, np.int32)
    out = np.zeros((4, 8, 8), np.int8)
    kw = dict(ksize=3, stride=1, pad=1, rounding=0, out_bits=8, act=1, acc64=0)
    for bad in (np.zeros((4, 4, 4), np.int16), np.zeros((4, 5, 4), np.int8), out[:, :4, :4]):
        with pytest.raises(MDFIError):
            _conv.conv2d(x, packed, bias, shift, out, pool=bad, **kw)
    with pytest.raises(MDFIError):
        _conv.conv2d(x, packed, bias, shift, out, pool=np.zeros((4, 4, 4), np.int8),
                     residual=(out.copy(), np.zeros_like(out), 0, 0, 0, 0, 8, 0), **kw)


# layer 4 is read by the pool 5 and by the route 8; layer 0 (3 input channels) is planned as
# fused but its kernel is not Winograd (the step runs the pool kernel); pool 3 has padding=0
POOL_NET = """[net]
width={w}
height={h}
channels=3
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
padding=0
[convolutional]
batch_normalize=1
filters=24
size=3
stride=1
pad=1
activation=relu
[maxpool]
size=2
stride=2
[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear
[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=2
num=6
[route]
layers=-4
[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear
[yolo]
mask=3,4,5
anchors=10,14, 23,27, 37,58, 81,82, 135,169, 344,319
classes=2
num=6
"""


@pytest.mark.parametrize("h, w, pooled", [
    (64, 48, {0: 1, 2: 3, 4: 5}),    # every map even
    (52, 44, {0: 1, 2: 3}),          # layer 4 on 13 x 11: not fused
    (50, 40, {0: 1, 4: 5}),          # layer 2 on 25 x 20: not fused; layer 4 on 12 x 10 after pool 3
])
def test_pool_fused_network(h, w, pooled):
    text = POOL_NET.format(h=h, w=w)
    net = Network(parse_cfg_text(text, "pool.cfg"), "pool.cfg", warn=False)
    random_weights(net, h + w)
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, cfg_text=text)
    rng = np.random.default_rng(h)
    x = rng.integers(0, 256, net.input_shape).astype(np.uint8)
    ref = qm.forward_ref(x)
    heads = [l.index for l in net.output_layers()]
    before = _conv.simd_path()
    try:
        for path in PATHS:
            assert _conv.set_simd_path(path) == path
            for threads in (1, 2, 3):
                runner = CRunner(qm, threads)
                assert runner.pooled == pooled
                # pools that alone read their convolution (layer 4 is also read by route 8)
                assert runner.pool_only == set(pooled) - {4}
                assert CRunner(qm, threads, fuse_pool=False).pooled == {}
                out = runner.run(x)
                bad = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
                assert not bad, (path, threads, bad)
                for _ in range(2):                       # planned buffers, reused
                    got = runner.run(x, keep="needed")
                    assert all(np.array_equal(got[i], ref[i]) for i in heads), (path, threads)
                seen = {}
                runner.run(x, keep="needed", hook=lambda i, o: seen.__setitem__(i, o.copy()))
                assert not [i for i in range(len(ref)) if not np.array_equal(seen[i], ref[i])], (path, threads)
    finally:
        _conv.set_simd_path(before)


@pytest.mark.parametrize("path", PATHS)
def test_conv_pool_kernel_zero_points(path):
    """The fused pool with zero points: the convolution equals conv2d_int_ref(pad_value=,
    zero_out=) and the pool (of stored codes) the windows' max of it."""
    before = _conv.simd_path()
    assert _conv.set_simd_path(path) == path
    _conv.set_simd_path(before)
    rng = np.random.default_rng(3 + sum(map(ord, path)))
    for i, (c, h, w, m, p) in enumerate(KERNEL_CASES):
        xlo, xhi, x, wt, bias, shift, packed = _kernel_case(rng, i, c, h, w, m)
        for j, (bits, rounding, act) in enumerate(((8, "half_up", "leaky"), (5, "truncate", "relu"),
                                                   (16, "half_up", "linear"), (8, "truncate", "relu"))):
            pv = (xlo, xhi, (xlo + xhi) // 3)[(i + j) % 3]
            zo = (fp.qmin(bits), fp.qmax(bits), -3)[(i + 2 * j) % 3]
            kw = dict(k=3, s=1, p=p, rounding=rounding, bits=bits, act=act, pad_value=pv, zero_out=zo)
            ref = reference(x, wt, bias, shift, **kw)
            mo, oh, ow = ref.shape
            aligned = oh % 2 == 0 and ow % 2 == 0
            for nthreads in (1, 2):
                out = np.full(ref.shape, 77, int_dtype(bits))
                pool = np.full((mo, oh // 2, ow // 2), 55, int_dtype(bits))
                done = _conv.conv2d(x, packed, bias, shift, out, ksize=3, stride=1, pad=p,
                                    rounding=fp.rounding_code(rounding), out_bits=bits, act=ACTS.index(act),
                                    acc64=0, nthreads=nthreads, simd=path, pool=pool, pad_value=pv, zero_out=zo)
                where = (path, i, bits, rounding, act, pv, zo, nthreads)
                assert np.array_equal(out, ref), where
                assert done == (path in WINO_PATHS and aligned), where
                if done:
                    assert np.array_equal(pool, pool_ref(ref)), where
                else:
                    assert (pool == 55).all(), where
