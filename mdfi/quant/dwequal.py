"""Power-of-two equalization of the tensors that only depthwise convolutions read.

A depthwise convolution (``groups`` = channels: one input channel per group) sums each input
channel alone, so the channels of the tensor it reads may have very different ranges: in
Yolo-Fastest the 1x1 convolutions feeding its depthwise layers have channels whose
calibration maxima differ by up to 2**8, and one power-of-two format per tensor (8 bits) gives
the small ones a few levels only (docs/quantization.md, "Round 28": 16-bit activations there
recover most of the 8-bit loss).  Multiplying output channel ``c`` of the producing
convolution by ``2**k[c]`` (its batch-norm ``scales`` and ``biases``, or its weights and
bias) and dividing the weights of the depthwise channel that reads it by ``2**k[c]`` leaves
the network's function unchanged (cross-layer rescaling, Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", section 4.1, whose subject is
depthwise-separable networks; leaky and relu commute with positive factors).  With a power of
two the float32 network is unchanged bit for bit (scaling by ``2**k`` is exact in floating
point), and in fixed point the factors cost nothing: both convolutions have per-channel weight
formats, which absorb ``2**±k`` exactly (the same integer weights, ``frac`` moved by ``k``), and
the depthwise sum never adds channels of different scales.  What changes is the tensor between
them: one per-tensor format (and zero point) now holds channels of similar range, i.e. channel
``c`` effectively has ``frac + k[c]`` fractional bits -- per-channel activation formats for
free, in a network whose integer semantics (docs/fixed-point.md) and golden model are untouched.

Factors: from the float calibration inputs, per channel its largest value ``p[c]`` and its
largest negative magnitude ``n[c]``; with ``P = max p`` and ``N = max n`` over the tensor,
``k[c] = floor(min(log2(P / p[c]), log2(N / n[c])))`` (a side a channel never reaches does not
bound it), clipped to ``0 .. MAX_SHIFT``: every channel's calibration range stays inside the
tensor's own ``[-N, P]``, so the format the ``mse`` calibration then chooses (on the statistics
of the rescaled network, gathered again) does not clip it where the original did not.

Eligible: convolutions with a positively homogeneous activation (linear, leaky, relu) whose
every reader is a convolution with one input channel per group reading it directly (not
through a route), and whose output is no network output.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import FormatError
from .align import Alignment, collect_inputs
from .equalize import HOMOGENEOUS_ACTIVATIONS, apply_scales

#: Largest exponent of a channel's factor (a nearly dead channel would otherwise be blown up).
MAX_SHIFT = 8


def eligible(network) -> List[int]:
    """The convolutions whose outputs may be rescaled (module docstring), in network order."""
    readers = network.consumers()
    outputs = {l.index for l in network.output_layers()} | {network.layers[-1].index}
    out = []
    for l in network.layers:
        rs = readers.get(l.index, [])
        if l.kind != "convolutional" or l.index in outputs or not rs or \
                getattr(l, "activation", "linear") not in HOMOGENEOUS_ACTIVATIONS:
            continue
        if all(network.layers[r].kind == "convolutional" and network.layers[r].group_channels == 1
               and list(network.layers[r].inputs) == [l.index] for r in rs):
            out.append(l.index)
    return out


def channel_ranges(network, inputs: Sequence[np.ndarray], layers: Sequence[int]) -> Dict[int, np.ndarray]:
    """Per layer of ``layers``: (2, C) float64, each channel's largest value and largest
    negative magnitude (both >= 0) over the float forward passes of ``inputs``."""
    want = set(layers)
    rng: Dict[int, np.ndarray] = {}

    def hook(i, out):
        if i in want:
            flat = out.reshape(out.shape[0], -1)
            r = np.stack([np.maximum(flat.max(axis=1), 0), np.maximum(-flat.min(axis=1), 0)]).astype(np.float64)
            rng[i] = r if i not in rng else np.maximum(rng[i], r)
    for x in inputs:
        network.forward_float(x, keep="needed", hook=hook)
    return rng


def factors(ranges: Dict[int, np.ndarray], max_shift: int = MAX_SHIFT) -> Dict[int, np.ndarray]:
    """Per layer: the exponent ``k[c]`` (int64, ``0 .. max_shift``) of each channel's factor."""
    ks = {}
    for i, r in ranges.items():
        top = r.max(axis=1, keepdims=True)                 # (2, 1): P and N
        with np.errstate(divide="ignore", invalid="ignore"):
            lim = np.where((r > 0) & (top > 0), np.floor(np.log2(top / np.where(r > 0, r, 1.0))), np.inf)
        k = lim.min(axis=0)
        ks[i] = np.clip(np.where(np.isfinite(k), k, 0), 0, max_shift).astype(np.int64)
    return ks


@dataclass
class DepthwiseEqualization(Alignment):
    """The rescaled network (``network``), its power-of-two factors (``scales``) and the
    statistics gathered again on it (``calib``)."""
    kind = "dw_equalize"

    @property
    def record(self) -> str:
        return f"pow2/max{MAX_SHIFT}"

    def summary(self) -> dict:
        s = np.concatenate([v for v in self.scales.values()]) if self.scales else np.ones(0)
        return {"layers": sorted(self.scales), "channels": int(s.size), "channels_up": int((s > 1).sum()),
                "max_factor": float(s.max()) if s.size else 1.0}


def prepare(network, inputs: Sequence[np.ndarray], *, per_channel: bool = True, wbits: int = 8,
            progress: bool = False) -> Optional[DepthwiseEqualization]:
    """Equalize ``network``'s depthwise inputs (module docstring) on the float (C,H,W)
    calibration ``inputs`` and gather its activation statistics again on them; None when
    ``network`` has no tensor to equalize (it is then quantized as without it)."""
    if not per_channel:
        raise FormatError("dw_equalize needs per-channel weight formats (per_channel=True, --per-channel): "
                          "only they absorb the factors exactly")
    if not inputs:
        raise FormatError("dw_equalize needs calibration inputs (calib_inputs): the channels' ranges come from them "
                          "and the rescaled network is calibrated again")
    layers = eligible(network)
    if not layers:
        return None
    ks = factors(channel_ranges(network, inputs, layers))
    scales = {i: np.exp2(k.astype(np.float64)) for i, k in ks.items()}
    net = apply_scales(network, scales)
    calib = collect_inputs(net, inputs, source=f"{len(inputs)} calibration inputs, depthwise inputs equalized")
    eq = DepthwiseEqualization(network, net, scales, "pow2", "fit", int(wbits), {}, calib)
    if progress:
        sm = eq.summary()
        print(f"dw_equalize: {sm['channels_up']} of {sm['channels']} channels of {len(sm['layers'])} depthwise inputs "
              f"scaled up by powers of two (at most {sm['max_factor']:g}x)", file=sys.stderr, flush=True)
    return eq
