"""Small networks whose golden exports exercise rare paths (used by test_golden_docs.py through
a child process, and by test_c_runner.py).

* :func:`shift_model`: convolutions whose requantizing shifts are <= 0 in some channels,
  and a leaky layer whose *effective* shift for negative accumulators (shift + 15) lies on
  both sides of 0 -- formats no calibrated real network gets, forced through ``act_fracs``.
* :func:`reorg_model`: conv, maxpool, reorg, a two-input route, a region head with softmax
  (random weights).
* :func:`alexeyab_model`: every layer kind and activation AlexeyAB's models add (issue 11):
  a convolution with each table activation (mish, swish, hard_mish, relu6, logistic),
  route groups on one and on three inputs (one of them aligned by a shift), shortcuts
  between equal, fewer and more channels with leaky, linear and table activations (swish,
  logistic) and different input formats, a [yolo] with ``new_coords=1`` and
  ``scale_x_y=2`` and one with ``scale_x_y=1.05``; the NMS kind and the letterbox switch
  are parameters (random weights).
"""

from __future__ import annotations

import numpy as np

SHIFT_NET = """[net]
width=24
height=24
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=12
size=1
stride=1
pad=1
activation=leaky
[convolutional]
filters=6
size=1
stride=1
activation=linear
"""

REORG_NET = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[reorg]
stride=2
[route]
layers=-2
[maxpool]
size=2
stride=2
[route]
layers=-1,-3
[convolutional]
size=1
stride=1
pad=1
filters=30
activation=linear
[region]
anchors=1,1,2,2
classes=10
num=2
softmax=1
"""

# The layer comments give the output channels; the route/shortcut comments the channel counts.
AB_NET = """[net]
width=80
height=48
channels=3
{letter_box}
# 0: 16
[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish
# 1: 16
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=swish
# 2: channels 8..15 of layer 1
[route]
layers=-1
groups=2
group_id=1
# 3: 8
[convolutional]
batch_normalize=1
filters=8
size=1
activation=hard_mish
# 4: channels 0..3 of layer 3 (aligned by a shift), 0..3 of layer 2, 0..7 of layer 0
[route]
layers=-1,-2,-4
groups=2
group_id=0
# 5: 16 + 16 (layer 0), swish
[shortcut]
from=-5
activation=swish
# 6: 24
[convolutional]
batch_normalize=1
filters=24
size=3
pad=1
activation=relu6
# 7: 24 + the 16 of layer 5 (fewer), leaky
[shortcut]
from=-2
activation=leaky
# 8: 8
[convolutional]
batch_normalize=1
filters=8
size=1
activation=logistic
# 9: 8 + the 24 of layer 7 (more: the extra ones are ignored)
[shortcut]
from=-2
activation=linear
# 10: 8 + the 24 of layer 6, logistic
[shortcut]
from=-4
activation=logistic
# 11
[maxpool]
size=2
stride=2
# 12: 2 anchors x (2 classes + 5)
[convolutional]
size=1
filters=14
activation=logistic
# 13
[yolo]
mask=0,1
anchors=10,14, 23,27, 37,58, 81,82
classes=2
num=4
new_coords=1
scale_x_y=2.0
# 14
[route]
layers=9
# 15
[convolutional]
size=1
filters=14
activation=linear
# 16
[yolo]
mask=2,3
anchors=10,14, 23,27, 37,58, 81,82
classes=2
num=4
scale_x_y=1.05
{nms}
"""

NAMES = [f"class{i}" for i in range(80)]


def _net(text: str, name: str, seed: int):
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import random_weights
    net = Network(parse_cfg_text(text, name), name, warn=False)
    random_weights(net, seed)
    return net


def _model(net, qm):
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    return Model(net, NAMES, FixedEngine(qm, "c", 1))


def shift_model(seed: int = 3):
    """(model, quantized model): layer 1 has shifts around 0 (some <= 0), layer 2 shifts
    around -15 (effective leaky shifts on both sides of 0)."""
    from mdfi.quant import calibrate
    from mdfi.quant.quantize import quantize_network
    net = _net(SHIFT_NET, "shifts.cfg", seed)
    fracs = calibrate.choose_formats(calibrate.estimate_from_batchnorm(net), net, 8, "max")

    def q():
        return quantize_network(net, wbits=8, abits=8, per_channel=True, act_fracs=dict(fracs), cfg_text=SHIFT_NET)
    qm = q()
    l1 = qm.layers[1]
    fracs[1] = int(np.median(l1.w_frac)) + l1.in_fmt.frac          # shifts w_frac[m] - median: around 0
    qm = q()
    l2 = qm.layers[2]
    fracs[2] = int(np.median(l2.w_frac)) + l2.in_fmt.frac + 15     # shifts around -15
    qm = q()
    fracs[3] = min(40, int(np.max(qm.layers[3].w_frac)) + qm.layers[3].in_fmt.frac)
    qm = q()
    return _model(net, qm), qm


def route_shift_model():
    """(model, quantized model): yolov3-tiny with its shipped statistics but without
    unified route formats (``unify_routes=False``), so route 20 aligns layer 19 by a
    one-bit shift -- the alignment path no default model takes any more."""
    from mdfi.quant import recipes
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.quant.quantize import quantize_network
    from mdfi.darknet.weights import load_weights
    net = Network.from_cfg(zoo.cfg_path("yolov3-tiny"))
    load_weights(net, zoo.weights_path("yolov3-tiny"))
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, calib=recipes.shipped_calibration("yolov3-tiny"),
                          unify_routes=False)
    return _model(net, qm), qm


def reorg_model(seed: int = 1):
    from mdfi.quant.quantize import quantize_network
    net = _net(REORG_NET, "reorg.cfg", seed)
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, cfg_text=REORG_NET)
    return _model(net, qm), qm


def alexeyab_cfg(nms: str = "greedynms", beta_nms: float = 0.6, letter_box: bool = False) -> str:
    """:data:`AB_NET` with the last [yolo]'s ``nms_kind``/``beta_nms`` and ``letter_box``."""
    return AB_NET.format(letter_box="letter_box=1" if letter_box else "",
                         nms=f"nms_kind={nms}\nbeta_nms={beta_nms}" if nms != "default" else "")


def alexeyab_model(bits: int = 8, rounding: str = "half_up", seed: int = 4, layer_abits=None, act_zeros=None,
                   head_gains=None, **cfg):
    """(model, quantized model) of :data:`AB_NET` (``cfg``: :func:`alexeyab_cfg`'s options).
    Formats from the batch-norm estimate, except layer 3's output, one bit finer than the
    other inputs of route 4, which therefore aligns it by a shift.  ``layer_abits``: output
    widths per layer (mixed precision: int8 and int16 inputs of one route or shortcut).
    ``act_zeros``: forced zero points per layer (docs/fixed-point.md 1.1; not on the
    shortcuts' producers); layer 1 (so route 2) is then one bit finer than layer 0 as well,
    so route 4 takes layer 0's format (zero point 0, shortcut 5 reads it) and aligns the others.
    ``head_gains``: logit gains of [yolo] heads (docs/fixed-point.md 7; the scale_x_y head is
    layer 16)."""
    from mdfi.quant import calibrate
    from mdfi.quant.quantize import quantize_network
    text = alexeyab_cfg(**cfg)
    net = _net(text, "alexeyab.cfg", seed)
    fracs = calibrate.choose_formats(calibrate.estimate_from_batchnorm(net), net, bits, "max")
    if act_zeros:
        fracs[1] = fracs[2] = max(fracs[1], fracs[0] + 1)
    fracs[3] = max(fracs[0], fracs[1]) + 1
    for i, b in (layer_abits or {}).items():
        fracs[i] += b - bits
    qm = quantize_network(net, wbits=bits, abits=bits, per_channel=True, rounding=rounding, act_fracs=fracs,
                          cfg_text=text, layer_abits=layer_abits, act_zeros=act_zeros, head_gains=head_gains)
    return _model(net, qm), qm
