"""A convolution's element-wise tail runs over cache-sized blocks (mdfi/layers/conv_arith.py,
TAIL_BLOCK): in the float path (batch norm, bias, activation) the same bytes as on the whole
map, for both lineages' tails (pjreddie's double-precision normalize; AlexeyAB's fused weights
with leaky, linear and logistic in yolov4-tiny / yolov7-tiny, and every other AlexeyAB float
activation in a small network of its own); in the NumPy integer reference (requantize) the
same integers and saturation counts; with block sizes that leave partial row and column
blocks."""
from __future__ import annotations

import numpy as np
import pytest

from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.darknet.weights import random_weights
from mdfi.layers import conv_arith


def _outputs(net, x, block, monkeypatch):
    monkeypatch.setattr(conv_arith, "TAIL_BLOCK", block)
    return net.forward_float(x, keep="all")


@pytest.mark.parametrize("cfg", ["yolov3-tiny", "yolov4-tiny", "yolov7-tiny"])
def test_blocks_give_the_bytes_of_the_whole_map(cfg, monkeypatch):
    from mdfi import zoo
    net = Network.from_cfg(zoo.cfg_path(cfg), warn=False)
    random_weights(net, seed=7)
    x = np.random.default_rng(2).random(net.input_shape, dtype=np.float32)
    whole = _outputs(net, x, 1 << 40, monkeypatch)
    for block in (4099, 65536):
        parts = _outputs(net, x, block, monkeypatch)
        for a, b in zip(whole, parts):
            assert a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_blocks_every_alexeyab_activation(monkeypatch):
    convs = "".join(f"[convolutional]\nbatch_normalize={i % 2}\nfilters={5 + i}\nsize=3\nstride=1\npad=1\n"
                    f"activation={act}\n" for i, act in
                    enumerate(["mish", "swish", "hard_mish", "relu6", "logistic", "relu", "leaky", "linear"]))
    text = "[net]\nwidth=96\nheight=80\nchannels=3\n" + convs
    net = Network(parse_cfg_text(text, "t.cfg"), "t.cfg", warn=False, darknet="alexeyab")
    random_weights(net, seed=11)
    x = np.random.default_rng(6).random(net.input_shape, dtype=np.float32)
    whole = _outputs(net, x, 1 << 40, monkeypatch)
    parts = _outputs(net, x, 997, monkeypatch)
    for a, b in zip(whole, parts):
        assert a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_integer_reference_blocks_give_the_same_integers_and_counts(monkeypatch):
    """The NumPy integer reference's requantize (conv2d_int_ref) runs over the same blocks: the
    same integers and the same saturation counts as on the whole map."""
    import mdfi
    from mdfi.quant.qmodel import input_to_u8
    q = mdfi.load("yolov3-tiny", bits=8).quantized
    x = input_to_u8(np.random.default_rng(4).random(q.network.input_shape, dtype=np.float32))
    runs = []
    for block in (1 << 40, 20011):
        monkeypatch.setattr(conv_arith, "TAIL_BLOCK", block)
        stats: dict = {}
        runs.append((q.forward_ref(x, keep="all", stats=stats), stats))
    (a, sa), (b, sb) = runs
    assert sa == sb and any(v for v in sa.values())
    for u, v in zip(a, b):
        assert (u is None and v is None) or np.array_equal(u, v)
