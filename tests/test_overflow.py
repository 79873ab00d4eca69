"""Signed overflow is impossible by construction (docs/fixed-point.md section 3.2); these
tests drive every convolution to its worst case and check it.

For output channel m, the input x_k = qmax where w[m,k] > 0 and qmin where w[m,k] < 0 makes
every product as large as it can be (and the opposite pattern as negative as it can be):
the accumulator then reaches sum|w|*max|x| + bias, which must fit the declared
``acc_bits`` and the int32/int64 type the C kernel uses, and the C kernel must equal the
reference there too.
"""

from __future__ import annotations

import numpy as np
import pytest

from mdfi import fixedpoint as fp
from mdfi import zoo
from mdfi._ext import _conv
from mdfi.cengine import ACT_CODES
from mdfi.darknet.network import Network
from mdfi.quant.quantize import quantize_network
from mdfi.darknet.weights import random_weights


def worst_inputs(ql, m, sign):
    """(C, k, k) input whose single output (no padding) is the extreme accumulator of channel m."""
    w = ql.weights[m].astype(np.int64)
    f = ql.in_fmt
    hi, lo = (f.max, f.min) if sign > 0 else (f.min, f.max)
    if not f.signed:                      # pixels: 0..255, the extreme uses 255 or 0
        hi, lo = (f.max, 0) if sign > 0 else (0, f.max)
    x = np.where(w > 0, hi, np.where(w < 0, lo, 0))
    return x.astype(fp.storage_dtype(f.bits, f.signed))


def check_layer(ql, channels, threads=2):
    l = ql.layer
    packed = _conv.pack_weights(np.ascontiguousarray(ql.weights))
    for m in channels:
        for sign in (+1, -1):
            x = worst_inputs(ql, m, sign)
            # reference accumulator of this single output pixel, exactly in Python ints
            acc = int(sum(int(a) * int(b) for a, b in zip(ql.weights[m].reshape(-1), x.reshape(-1)))) + int(ql.bias[m])
            assert abs(acc) <= (1 << (ql.acc_bits - 1)) - 1, (l.index, m, acc, ql.acc_bits)
            if not ql.acc64:
                assert -(1 << 31) <= acc < (1 << 31)
            out = np.empty((l.filters, 1, 1), fp.storage_dtype(ql.out_fmt.bits))
            _conv.conv2d(np.ascontiguousarray(x), packed, ql.bias.astype(np.int64), ql.shift.astype(np.int32), out,
                         ksize=l.size, stride=1, pad=0, rounding=fp.rounding_code(ql.rounding),
                         out_bits=ql.out_fmt.bits, act=ACT_CODES[l.activation], acc64=int(ql.acc64),
                         nthreads=threads)
            ref = fp.requantize(np.array([acc]), int(ql.shift[m]), ql.rounding, ql.out_fmt.bits, l.activation)
            assert int(out[m, 0, 0]) == int(ref[0]), (l.index, m, sign)


def _quantized(name, wbits, abits, seed=0):
    net = Network.from_cfg(zoo.cfg_path(name), warn=False)
    random_weights(net, seed)
    return quantize_network(net, wbits=wbits, abits=abits, per_channel=True, cfg_text=zoo.cfg_path(name).read_text())


@pytest.mark.parametrize("wbits, abits", [(8, 8), (16, 16), (12, 10), (2, 2)])
def test_yolov3_tiny_worst_case_accumulators(wbits, abits):
    qm = _quantized("yolov3-tiny", wbits, abits)
    rng = np.random.default_rng(wbits)
    for ql in qm.layers:
        if ql.kind == "convolutional":
            m = ql.layer.filters
            check_layer(ql, sorted(set(rng.integers(0, m, 3).tolist()) | {0, m - 1}))


def test_real_weights_8bit_worst_case(tiny_weights_path):
    import mdfi
    qm = mdfi.load("yolov3-tiny", engine="ref").quantized
    for ql in qm.layers:
        if ql.kind == "convolutional":
            # the channel with the largest sum|w| is the worst one of the layer
            m = int(np.abs(ql.weights.reshape(ql.layer.filters, -1).astype(np.int64)).sum(axis=1).argmax())
            check_layer(ql, [m])


def test_yolov3_widest_kernels_at_16_bits():
    """YOLOv3's 3x3x512 and 1x1x1024 kernels at 16 bits: acc_bits 16+16+13 = 45 < 48."""
    qm = _quantized("yolov3", 16, 16, seed=3)
    convs = [q for q in qm.layers if q.kind == "convolutional"]
    widest = sorted(convs, key=lambda q: q.layer.kernel_volume)[-2:]
    for ql in widest:
        assert ql.acc64 and ql.acc_bits <= fp.MAX_ACC_BITS
        check_layer(ql, [0, ql.layer.filters - 1])


def test_extreme_weights_and_inputs_int16():
    """All weights -32768 and all inputs -32768: the one case where a pair of int16 products
    overflows int32 (vpmaddwd); the kernel must take its exact int64 path."""
    from mdfi.darknet.cfgfile import parse_cfg_text
    text = ("[net]\nwidth=3\nheight=3\nchannels=3\n[convolutional]\nfilters=4\nsize=1\nactivation=linear\n"
            "[convolutional]\nfilters=2\nsize=3\nactivation=linear\n")
    net = Network(parse_cfg_text(text, "x.cfg"), "x.cfg", warn=False)
    random_weights(net)
    qm = quantize_network(net, wbits=16, abits=16, act_fracs={0: 0, 1: 0}, cfg_text=text)
    ql = qm.layers[1]                                  # 16-bit weights on a 16-bit input
    ql.weights[:] = -32768
    ql.bias[:] = 0
    x = np.full((4, 3, 3), -32768, np.int16)
    acc = 36 * (1 << 30)                               # 2^35.2: needs the int64 accumulator
    assert ql.acc64 and acc < (1 << (ql.acc_bits - 1))
    out = np.empty((2, 1, 1), np.int16)
    _conv.conv2d(x, _conv.pack_weights(ql.weights), ql.bias, ql.shift, out, ksize=3, stride=1, pad=0,
                 rounding=0, out_bits=16, act=0, acc64=1, nthreads=2)
    assert out.reshape(-1).tolist() == fp.requantize(np.array([acc, acc]), ql.shift, "half_up", 16).tolist()
