"""The max pool's window max (mdfi/layers/maxpool.py: one vectorised step per tap, ``val > max``
for floats and np.maximum for integers) against Darknet's loop written out element by element
(pjreddie src/maxpool_layer.c forward_maxpool_layer; AlexeyAB :243-320 with stride_x/stride_y):
``max = -FLT_MAX; for n, m: val = valid ? x : -FLT_MAX; max = (val > max) ? val : max``.
Bit for bit (signed zeros, infinities), float and int32 (the integer reference), every size,
stride and padding the layer takes."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network

FLT_MAX = np.float32(3.4028235e38)


def _pool(c, h, w, size, stride, padding, stride_y=None):
    extra = f"stride_x={stride}\nstride_y={stride_y}\n" if stride_y is not None else f"stride={stride}\n"
    text = (f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n"
            f"[maxpool]\nsize={size}\n{extra}padding={padding}\n")
    return Network(parse_cfg_text(text, "t.cfg"), "t.cfg", warn=False).layers[0]


def _darknet(layer, x, lowest):
    """forward_maxpool_layer, element by element (Python scalars: no vectorised reduction)."""
    c, h, w = x.shape
    _, oh, ow = layer.out_shape
    off = -(layer.padding // 2)
    out = np.empty((c, oh, ow), dtype=x.dtype)
    for k, i, j in itertools.product(range(c), range(oh), range(ow)):
        best = lowest
        for n, m in itertools.product(range(layer.size), range(layer.size)):
            y, xx = off + i * layer.stride_y + n, off + j * layer.stride + m
            val = x[k, y, xx] if 0 <= y < h and 0 <= xx < w else lowest
            best = val if val > best else best
        out[k, i, j] = best
    return out


CASES = [(2, 2, 0), (2, 2, 1), (2, 1, 1), (3, 1, 2), (3, 2, 2), (3, 2, 1), (1, 1, 0), (5, 1, 4), (4, 3, 3)]


@pytest.mark.parametrize("size,stride,padding", CASES)
def test_window_max_is_darknets_loop(size, stride, padding):
    rng = np.random.default_rng(size * 100 + stride * 10 + padding)
    layer = _pool(3, 7, 9, size, stride, padding)
    edge = np.array([0.0, -0.0, 1.5, -1.5, np.inf, -np.inf, 1e-45, -FLT_MAX], np.float32)
    for trial in range(4):
        x = (rng.choice(edge, size=layer.in_shape) if trial % 2 else
             rng.standard_normal(layer.in_shape)).astype(np.float32)
        got = layer.forward_float([x])
        want = _darknet(layer, x, -FLT_MAX)
        assert got.dtype == np.float32 and np.array_equal(got.view(np.uint32), want.view(np.uint32))
        xi = rng.integers(-2**31, 2**31, size=layer.in_shape, dtype=np.int64).astype(np.int32)
        if trial % 2:
            xi = rng.integers(-2, 3, size=layer.in_shape).astype(np.int32)
        lo = np.iinfo(np.int32).min
        assert np.array_equal(layer.window_max(xi, lo, lo), _darknet(layer, xi, lo))


def test_window_max_rectangular_strides():
    layer = _pool(2, 6, 8, 2, 2, 1, stride_y=1)
    x = np.random.default_rng(3).standard_normal(layer.in_shape).astype(np.float32)
    assert np.array_equal(layer.forward_float([x]), _darknet(layer, x, -FLT_MAX))
