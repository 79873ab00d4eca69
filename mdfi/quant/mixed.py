"""Mixed precision: per-layer weight widths under a model-size budget.

Sensitivity of a layer = how much the head error of :class:`mdfi.quant.formats.HeadObjective`
(objectness and best-class logits at the float network's object cells of the calibration
inputs) grows when only that layer's weights are narrowed, everything else at the base
width.  :func:`choose_widths` then narrows layers greedily, cheapest error per saved byte
first, until the parameters fit the budget (a fraction of the float32 weights).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict, Sequence

from ..errors import FormatError

#: Widths a layer's weights may take below the base width.
CANDIDATE_WIDTHS = (6, 5, 4)


def conv_param_bits(layer, wbits: int, acc_bits: int) -> int:
    return layer.filters * layer.kernel_volume * wbits + layer.filters * acc_bits


def choose_widths(network, build: Callable[[Dict[int, int]], object], objective, *, base_bits: int,
                  budget: float, candidates: Sequence[int] = CANDIDATE_WIDTHS,
                  progress: bool = True) -> Dict[int, int]:
    """``{layer: weight width}`` for the convolutions, meeting ``param_bytes <= budget *
    float32 bytes`` if the candidates allow.  ``build(layer_wbits)`` quantizes the network
    with those per-layer widths; ``objective(model)`` scores it (lower is better)."""
    t0 = time.perf_counter()
    float_bytes = 4 * network.num_params()
    convs = [l for l in network.layers if l.kind == "convolutional"]
    base_model = build({})
    base_err = objective(base_model)
    acc = {l.index: base_model.layers[l.index].acc_bits for l in convs}
    narrowest = min([b for b in candidates if b < base_bits], default=base_bits)
    least = base_model.param_bytes() + sum(      # a lower bound: the accumulators narrow with the weights
        (conv_param_bits(l, narrowest, acc[l.index] - (base_bits - narrowest))
         - conv_param_bits(l, base_bits, acc[l.index])) / 8 for l in convs)
    if least > budget * float_bytes:     # refused before measuring every layer at every width (minutes)
        raise FormatError(f"size budget {100 * budget:g}% cannot be met: with every convolution's weights at "
                          f"{narrowest} bits the parameters take {100 * least / float_bytes:.1f}% of the float32 "
                          f"weights")
    cost: Dict[tuple, float] = {}
    for l in convs:
        for b in candidates:
            if b >= base_bits:
                continue
            cost[(l.index, b)] = max(objective(build({l.index: b})) - base_err, 0.0)
            if progress:
                print(f"mixed precision: layer {l.index} at {b} bits: head error +{cost[(l.index, b)]:.2f} "
                      f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    widths = {l.index: base_bits for l in convs}
    layers = {l.index: l for l in convs}

    def size():
        return base_model.param_bytes() + sum(
            (conv_param_bits(layers[i], w, acc[i]) - conv_param_bits(layers[i], base_bits, acc[i])) / 8
            for i, w in widths.items())
    while size() > budget * float_bytes:
        best = None
        for i, w in widths.items():
            nxt = [b for b in candidates if b < w]
            if not nxt:
                continue
            b = max(nxt)
            saved = layers[i].filters * layers[i].kernel_volume * (w - b) / 8
            extra = cost[(i, b)] - (cost[(i, w)] if w != base_bits else 0.0)
            score = max(extra, 0.0) / saved
            if best is None or score < best[0]:
                best = (score, i, b)
        if best is None:
            break
        widths[best[1]] = best[2]
    return {i: w for i, w in widths.items() if w != base_bits}
