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
from typing import Callable, Dict, Optional, Sequence

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


#: Models without a recipe, at these (weight, activation) widths: the weights of the layers
#: the sensitivity method picks stay at 8 bits, in a budget of the uniform model's size plus
#: this fraction of the float32 size (docs/quantization.md "Round 24": w4a8; "Round 24b": w6a8 --
#: not w6a6, where the rule failed).
SAMPLE_MIXED_EXTRA: Dict[tuple, float] = {(4, 8): 0.009, (6, 8): 0.0035}
#: A model whose classes are not in the sample photo (fewer object cells than this): its
#: sensitivity is measured at the cells of highest float objectness instead.
SAMPLE_MIN_CELLS = 16


def sample_inputs(network):
    """The shipped sample photo and its mirror image as ``network``'s float inputs (what a
    model without a recipe is calibrated on when no photos are given)."""
    import numpy as np
    from ..preprocess import network_input
    from .recipes import sample_rgb
    rgb = sample_rgb()
    return [network_input(v, network) for v in (rgb, np.ascontiguousarray(rgb[:, ::-1]))]


def sample_mixed_widths(network, build: Callable[[Dict[int, int]], object], wbits: int, abits: int, *,
                        extra: Optional[float] = None, progress: bool = True) -> Dict[int, int]:
    """``{layer: 8}`` for the convolutions whose weights stay at 8 bits in a ``wbits``-bit
    model without a recipe: :func:`choose_widths` from a base of 8-bit weights with the one
    candidate ``wbits``, the head error measured on the shipped sample photo and its mirror
    image, under a budget of the uniform ``wbits`` model's size plus ``extra`` (default
    :data:`SAMPLE_MIXED_EXTRA`) of the float32 size.  ``{}`` when no extra is set for these
    widths.  ``build(layer_wbits)`` quantizes with the base width 8 and those layer widths."""
    if extra is None:
        extra = SAMPLE_MIXED_EXTRA.get((wbits, abits))
    if not extra or wbits >= 8:
        return {}
    from .formats import HeadObjective
    if not any(l.kind == "yolo" for l in network.output_layers()):
        return {}                                   # ([region] heads: no head error to measure)
    convs = [l.index for l in network.layers if l.kind == "convolutional"]
    uniform = build({i: wbits for i in convs}).param_bytes()
    float_bytes = 4 * network.num_params()
    budget = (uniform + extra * float_bytes) / float_bytes
    t0 = time.perf_counter()
    if progress:
        print(f"mixed widths: which layers keep 8-bit weights at a {100 * budget:.1f} % budget "
              f"(sensitivity on the sample photo and its mirror image)", file=sys.stderr, flush=True)
    objective = HeadObjective(network, sample_inputs(network), min_cells=SAMPLE_MIN_CELLS)
    narrowed = choose_widths(network, build, objective, base_bits=8, budget=budget, candidates=(wbits,),
                             progress=False)
    keep = {i: 8 for i in convs if i not in narrowed}
    if progress:
        print(f"mixed widths: 8-bit weights in layers {','.join(map(str, keep)) or 'none'} "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return keep
