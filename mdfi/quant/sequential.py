"""Layer-by-layer quantization on calibration inputs, and empirical bias correction.

:class:`CalibRun` holds, for every calibration input, the float network's activations and
the activations of the network quantized *so far*.  :func:`mdfi.quant.quantize.quantize_network`
advances it layer by layer, so each convolution is quantized knowing the integer inputs it
will really receive (including every error made upstream).

Why empirical bias correction (docs/quantization.md, "Where the 8-bit bias came from"):
rounding noise is zero-mean, but leaky ReLU and max-pooling are convex, so
``E[leaky(z + n)] > leaky(z)`` and ``E[max(x + n)] > max(x)``: every quantized layer shifts
the mean of the activations after it upward a little, and the shifts add up through the
network into a systematic error of the detection logits.  Per output channel we measure
the mean error the quantized network makes at a convolution and move the bias to cancel
it (Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization and Bias
Correction", section 4.2, empirical variant; Finkelstein et al. 2019, "Fighting Quantization
Bias With Bias"): for a linear layer the pre-activation means are matched; after leaky the
*post-activation* means are matched (the quantity the next layer sees), by Newton steps
on the measured pre-activations.
"""

from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
from ..darknet.activations import LEAKY_SLOPE

#: At most this many output pixels per image and layer are kept as samples for the
#: post-activation matching (every k-th pixel); the means themselves use all pixels.
SAMPLE_PIXELS = 4096


class CalibRun:
    """Float and integer activations of calibration inputs, advanced one layer at a time.

    ``inputs``: float32 (C,H,W) letterboxed images in [0, 1].  Outputs are released as soon
    as no later layer reads them (the same bookkeeping as the forward passes).
    """

    def __init__(self, network, inputs: Sequence[np.ndarray], progress: bool = False):
        from .quantize import input_to_u8
        self.network = network
        self.last = network.last_use()
        self.fl: List[Dict[int, np.ndarray]] = [{-1: np.ascontiguousarray(x, np.float32)} for x in inputs]
        self.fx: List[Dict[int, np.ndarray]] = [{-1: input_to_u8(x).astype(np.int32)} for x in inputs]
        self.progress = progress
        self.t0 = time.perf_counter()
        #: the zero point of every integer output so far (docs/fixed-point.md 1.1)
        self.zeros: Dict[int, int] = {-1: 0}

    def __len__(self) -> int:
        return len(self.fl)

    def inputs(self, layer, which: str) -> List[List[np.ndarray]]:
        """The layer's inputs per image: float, or ``"fixed"``: the integer codes minus their
        zero point (``x_q - z``, so ``(x_q - z) * 2**-frac`` is the value and zero padding
        of these is the padding the engine applies)."""
        if which == "float":
            return [[d[i] for i in layer.inputs] for d in self.fl]
        zs = [self.zeros.get(i, 0) for i in layer.inputs]
        return [[d[i] - z if z else d[i] for i, z in zip(layer.inputs, zs)] for d in self.fx]

    def advance(self, layer, ql) -> None:
        """Run ``layer`` (float) and ``ql`` (integer reference) on every input."""
        for d_f, d_q in zip(self.fl, self.fx):
            if layer.kind not in ("yolo", "region"):
                d_f[layer.index] = np.ascontiguousarray(layer.forward_float([d_f[i] for i in layer.inputs]),
                                                        dtype=np.float32)
                d_q[layer.index] = ql.forward_ref([d_q[i] for i in layer.inputs])
        if ql.out_fmt is not None:
            self.zeros[layer.index] = ql.out_fmt.zero
            for i in layer.inputs:
                if i >= 0 and self.last.get(i) == layer.index:
                    d_f.pop(i, None)
                    d_q.pop(i, None)
        if self.progress:
            print(f"quantize: layer {layer.index}/{len(self.network.layers) - 1} ({layer.kind}) done "
                  f"({time.perf_counter() - self.t0:.0f} s)", file=sys.stderr, flush=True)


def conv_columns(layer, x: np.ndarray, step: int = 1) -> np.ndarray:
    """im2col of one input, float64, keeping every ``step``-th output pixel."""
    from ..layers.convolutional import im2col
    cols = im2col(np.asarray(x), layer.size, layer.stride, layer.padding)
    if step > 1:
        cols = cols[:, ::step]
    return cols.astype(np.float64)


def _leaky(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, z, float(LEAKY_SLOPE) * z)


def empirical_bias_shift(layer, run: CalibRun, ql, w_float: np.ndarray, b_float: np.ndarray,
                         float_input_scale: float = 1.0, mode: str = "post") -> np.ndarray:
    """The per-channel amount to *add* to the float bias of quantized layer ``ql`` so that
    its mean output over the calibration inputs matches the float network's.

    ``w_float`` (M, K) and ``b_float`` (M,): the folded float parameters, multiplying the
    dequantized integer input ``x_q * 2**-in_frac``; the float network's input of the layer
    is ``float_input_scale`` times smaller (255 for the pixel input).  ``mode="pre"``
    matches pre-activation means; ``"post"`` (default) matches the means after the
    activation (leaky/relu; identical to ``"pre"`` for linear layers).
    """
    from ..layers.conv_arith import group_matmul
    m = layer.filters
    w_float = np.asarray(w_float, np.float64).reshape(m, -1)
    acc_scale = np.exp2(-(ql.w_frac.astype(np.float64) + ql.in_fmt.frac))[:, None]
    w_q = ql.weights.reshape(m, -1).astype(np.float64)
    b_q = ql.bias_unfolded()[:, None]           # the inputs below are centred (x_q - z)
    sum_q = np.zeros(m)
    sum_f = np.zeros(m)
    sum_af = np.zeros(m)
    n = 0
    samples: List[np.ndarray] = []
    act = layer.activation
    for xs_f, xs_q in zip(run.inputs(layer, "float"), run.inputs(layer, "fixed")):
        z_f = group_matmul(w_float, conv_columns(layer, xs_f[0]) * float_input_scale, layer.groups) + b_float[:, None]
        z_q = (group_matmul(w_q, conv_columns(layer, xs_q[0]), layer.groups) + b_q) * acc_scale
        sum_q += z_q.sum(axis=1)
        sum_f += z_f.sum(axis=1)
        if act == "leaky":
            sum_af += _leaky(z_f).sum(axis=1)
        elif act == "relu":
            sum_af += np.maximum(z_f, 0).sum(axis=1)
        n += z_q.shape[1]
        if act in ("leaky", "relu") and mode == "post":
            step = max(1, z_q.shape[1] // SAMPLE_PIXELS)
            samples.append(z_q[:, ::step])
    delta = (sum_f - sum_q) / n
    if act not in ("leaky", "relu") or mode == "pre":
        return delta
    z = np.concatenate(samples, axis=1)
    target = sum_af / n
    slope = float(LEAKY_SLOPE) if act == "leaky" else 0.0
    for _ in range(8):                          # Newton on g(d) = mean(act(z + d)) - target
        y = z + delta[:, None]
        pos = y >= 0
        g = np.where(pos, y, slope * y).mean(axis=1) - target
        dg = np.maximum(np.where(pos, 1.0, slope).mean(axis=1), 1e-3)
        delta = delta - g / dg
    return delta
