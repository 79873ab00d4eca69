"""Activation range equalization: per-channel scales folded into the float weights.

A positive per-channel factor ``s[c]`` commutes with leaky/ReLU, max-pooling, nearest
upsampling and route concatenation.  Multiplying output channel ``c`` of a convolution by
``s[c]`` (its batch-norm ``scales`` and ``biases``, or its weights and bias) and dividing
input channel ``c`` of every convolution that reads it by ``s[c]`` leaves the network's
function unchanged (Nagel et al. 2019, "Data-Free Quantization Through Weight
Equalization and Bias Correction", cross-layer equalization).  MDFI uses it for the
activations: one power-of-two format per tensor gives channels with a small range only a
few of its levels; scaling every channel's calibration range up to just under the
format's top (``qmax * 2**-frac / headroom``) gives each channel the whole format, and
removes the up-to-one-bit waste of a power-of-two range at the same time.

Tensors that reach a detection head, a shortcut, a reorg or the network output keep
their scale (those consumers are not convolutions that could absorb ``1/s``), and so do the
outputs of convolutions whose activation is not positively homogeneous (``f(s x) = s f(x)``
for ``s > 0`` holds for linear, leaky and relu only: mish, swish, logistic, hard_mish and
relu6 of a rescaled pre-activation are not the rescaled activation).
"""

from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import fixedpoint as fp

#: Largest factor applied to one channel (nearly dead channels would otherwise be blown up).
MAX_SCALE = 256.0
#: Activations that commute with a positive per-channel factor (f(s x) = s f(x), s > 0).
HOMOGENEOUS_ACTIVATIONS = frozenset(("linear", "leaky", "relu"))


def channel_origins(network) -> Tuple[Dict[int, Optional[List[Tuple[int, int]]]], set]:
    """Per layer output: for each channel, the (convolution, channel) it is a scaled copy of
    (None when unknown), and the set of convolutions whose outputs may not be rescaled."""
    origin: Dict[int, Optional[List[Tuple[int, int]]]] = {-1: None}
    frozen = set()

    def freeze(src):
        if src is not None:
            frozen.update(k for k, _ in src)

    for l in network.layers:
        ins = [origin[i] for i in l.inputs]
        if l.kind == "convolutional":
            origin[l.index] = [(l.index, c) for c in range(l.filters)]
            if getattr(l, "activation", "linear") not in HOMOGENEOUS_ACTIVATIONS:
                frozen.add(l.index)             # its readers may still absorb its inputs' factors
        elif l.kind in ("maxpool", "upsample"):
            origin[l.index] = ins[0]
        elif l.kind == "route":
            # AlexeyAB's groups/group_id: the group_id-th of `groups` equal chunks of every
            # input (mdfi/layers/route.py); plain routes have groups = 1.
            g, gid = getattr(l, "groups", 1), getattr(l, "group_id", 0)
            origin[l.index] = None if any(s is None for s in ins) else \
                [x for s in ins for x in s[gid * len(s) // g:(gid + 1) * len(s) // g]]
            if origin[l.index] is None:
                for s in ins:
                    freeze(s)
        else:                                       # yolo, region, shortcut, reorg, ...
            for s in ins:
                freeze(s)
            origin[l.index] = None
    for l in network.output_layers():
        freeze(origin.get(l.index))
    last = network.layers[-1].index
    freeze(origin.get(last))
    return origin, frozen


def channel_maxima(network, inputs: Sequence[np.ndarray]) -> Dict[int, np.ndarray]:
    """Per convolution: the largest output value of every channel over ``inputs``."""
    conv = {l.index for l in network.layers if l.kind == "convolutional"}
    mx: Dict[int, np.ndarray] = {}

    def hook(i, out):
        if i in conv:
            m = out.reshape(out.shape[0], -1).max(axis=1).astype(np.float64)
            mx[i] = m if i not in mx else np.maximum(mx[i], m)
    for x in inputs:
        network.forward_float(x, keep="needed", hook=hook)
    return mx


def equalization_scales(network, maxima: Dict[int, np.ndarray], abits: int, headroom: float = 1.0,
                        layer_abits: Optional[Dict[int, int]] = None, alpha: Optional[float] = None
                        ) -> Dict[int, np.ndarray]:
    """Per rescalable convolution, the factor of each output channel: its calibration
    maximum goes to ``qmax * 2**-frac / headroom`` of the tensor's own ``max`` format.
    With ``alpha`` (0..1) instead: ``s = (top / r) ** alpha`` with ``top`` the tensor's
    largest channel maximum, so no channel's range passes the tensor's (no new clipping)."""
    _, frozen = channel_origins(network)
    scales: Dict[int, np.ndarray] = {}
    for l in network.layers:
        i = l.index
        if l.kind != "convolutional" or i in frozen or i not in maxima:
            continue
        r = maxima[i]
        top = float(r.max())
        if top <= 0:
            continue
        bits = (layer_abits or {}).get(i, abits)
        f = fp.max_frac(0.0, top, bits)
        target = fp.qmax(bits) * 2.0 ** -int(f) / headroom
        if alpha is not None:
            target = top
        s = np.where(r > 0, target / np.maximum(r, 1e-30), 1.0)
        if alpha is not None:
            s = s ** float(alpha)
        scales[i] = np.clip(s, 1.0 / MAX_SCALE, MAX_SCALE)
    return scales


def apply_scales(network, scales: Dict[int, np.ndarray]):
    """A copy of ``network`` computing the same function with output channel ``c`` of
    convolution ``i`` multiplied by ``scales[i][c]`` (and its readers compensating)."""
    origin, _ = channel_origins(network)
    net = copy.copy(network)
    net.layers = [copy.copy(l) for l in network.layers]
    for l in net.layers:
        if l.kind != "convolutional":
            continue
        w = l.weights.astype(np.float64)
        src = origin[l.inputs[0]]
        if src is not None:
            inv = np.array([1.0 / scales[k][c] if k in scales else 1.0 for k, c in src])
            # weights (M, C/G, k, k): output channel m of group j = m // (M/G) reads the input
            # channels j*C/G .. (j+1)*C/G - 1 (groups = 1: every input channel)
            g, cg = l.groups, w.shape[1]
            w = w * inv.reshape(g, 1, cg).repeat(w.shape[0] // g, axis=0).reshape(w.shape[0], cg)[:, :, None, None]
        s = scales.get(l.index)
        if s is not None:
            if l.batch_normalize:
                l.scales = (l.scales.astype(np.float64) * s).astype(np.float32)
            else:
                w = w * s[:, None, None, None]
            l.biases = (l.biases.astype(np.float64) * s).astype(np.float32)
        l.weights = w.astype(np.float32)
        if hasattr(l, "_fused"):
            l._fused = None                     # AlexeyAB's fused (weights, biases), cached
    return net
