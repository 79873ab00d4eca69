"""Mantissa alignment: real-valued cross-layer rescaling for power-of-two weight formats.

A per-output-channel weight format of MDFI has a power-of-two step ``2**-frac``.  A channel
whose largest weight is just above a power of two times ``qmax`` gets a step almost twice
the one it needs and uses about half of its integer range (on average ~0.4 bit of the
width is wasted).  Cross-layer rescaling (Nagel et al. 2019, "Data-Free Quantization
Through Weight Equalization and Bias Correction", section 4.1) can move that waste out of
the way at no cost in the integer arithmetic: multiplying output channel ``c`` of a
convolution by ``s[c] > 0`` and dividing input channel ``c`` of every convolution reading
it by ``s[c]`` leaves the float network's function unchanged (leaky/relu, max-pooling,
nearest upsampling and route concatenation commute with positive per-channel factors;
:func:`mdfi.quant.equalize.channel_origins` says which channels may move).  Here ``s[c]``
is *real-valued* (not a power of two, which could not change a mantissa): it is chosen so
that the channel's ideal real step -- ``max|w| / qmax`` (``step="max"``), the step of
least squared weight error at the width (``step="mse"``) or of least expected squared
output error (``step="output"``: each weight's error weighted by the mean square of the
input it multiplies, measured on the calibration inputs) -- becomes exactly a power of
two.  The channel then gets, in the shift-only arithmetic, the weight resolution a
per-channel *real* scale would give it; the integer semantics and the golden model are
unchanged, only the float weights before quantization differ.

The cost is in the activations: channel ``c``'s output range changes by ``s[c]`` under a
per-tensor format.  Each channel's step is aligned to one of its two neighbouring powers of
two, ``s`` in ``(1/2, 1]`` (``down``) or ``(1, 2]`` (``up``): ``direction="fit"`` (default)
goes up where the channel's calibration maximum times ``s`` still fits the tensor's current
``max`` activation format (no new clipping, finer activation steps for that channel) and
down elsewhere; ``"keep"`` does the same against the format the calibration method
(``mse`` with its clip budget) chose for the original tensor, so that the tensor's upper
tail does not grow and its format is not made coarser; ``"nearest"`` takes the nearer power of two (``s`` in ``[2**-0.5,
2**0.5]``); ``"down"`` never enlarges a channel.  Convolutions are processed in network
order, each on weights that already absorbed its producers' factors.  Activation
statistics are then gathered again on the rescaled network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
from ..errors import FormatError
from .equalize import apply_scales, channel_origins

#: How a channel's ideal real-valued weight step is estimated.
ALIGN_STEPS = ("max", "mse", "output")
#: Which neighbouring power of two the step is aligned to.
ALIGN_DIRECTIONS = ("fit", "keep", "nearest", "down")
#: Clipping ratios of the largest weight tried by ``step="mse"`` (the step is
#: ``ratio * max|w| / qmax``).
MSE_RATIOS = np.linspace(0.5, 1.0, 51)


def check_settings(step, direction, per_channel: bool) -> None:
    """Refuse unknown or meaningless alignment settings with one clear line."""
    if step not in ALIGN_STEPS:
        raise FormatError(f"align={step!r}: expected one of {', '.join(ALIGN_STEPS)} (or None)")
    if direction not in ALIGN_DIRECTIONS:
        raise FormatError(f"align_direction={direction!r}: expected one of {', '.join(ALIGN_DIRECTIONS)}")
    if not per_channel:
        raise FormatError("align needs per-channel weight formats (per_channel=True, --per-channel): with one "
                          "format per layer a channel's step cannot be aligned on its own")


def real_steps(flat: np.ndarray, bits: int, step: str = "max",
               col_weight: Optional[np.ndarray] = None) -> np.ndarray:
    """Per row of ``flat`` (M, K): the ideal real-valued quantization step at ``bits``.

    ``max``: the smallest step holding the row's extremes (``max(hi/qmax, -lo/(qmax+1))``);
    ``mse``: among ``MSE_RATIOS`` times that, the step of least squared error of
    round-half-up with clipping to the width; ``output``: the same with each column's
    squared error weighted by ``col_weight`` (K,: the mean square of the input it
    multiplies, so the error is the expected squared output error, the diagonal of the
    layer's Hessian).  All-zero rows get 0."""
    v = np.asarray(flat, np.float64)
    qmx, qmn = fp.qmax(bits), fp.qmin(bits)
    t = np.maximum(v.max(axis=1) / qmx, -v.min(axis=1) / -qmn)
    t = np.maximum(t, 0.0)
    if step == "max":
        return t
    best_t, best_e = t.copy(), None
    safe = np.where(t > 0, t, 1.0)
    cw = np.ones((1, v.shape[1])) if step == "mse" or col_weight is None else \
        np.asarray(col_weight, np.float64).reshape(1, -1)
    for r in MSE_RATIOS:
        s = (r * safe)[:, None]
        q = np.clip(fp.round_half_up_float(v / s), qmn, qmx)
        e = (((q * s - v) ** 2) * cw).sum(axis=1)
        if best_e is None:
            best_t, best_e = r * safe, e
        else:
            better = e < best_e
            best_t = np.where(better, r * safe, best_t)
            best_e = np.where(better, e, best_e)
    return np.where(t > 0, best_t, 0.0)


def channel_absmax(network, inputs: Sequence[np.ndarray], meansq: Optional[Dict[int, np.ndarray]] = None
                   ) -> Dict[int, np.ndarray]:
    """Per convolution: the largest |output| of every channel over the float ``inputs``.
    ``meansq`` (a dict), if given, receives every layer output's (and the input's, -1)
    per-channel mean square."""
    conv = {l.index for l in network.layers if l.kind == "convolutional"}
    mx: Dict[int, np.ndarray] = {}
    sq: Dict[int, np.ndarray] = {}

    def hook(i, out):
        flat = out.reshape(out.shape[0], -1).astype(np.float64)
        if i in conv:
            m = np.abs(flat).max(axis=1)
            mx[i] = m if i not in mx else np.maximum(mx[i], m)
        if meansq is not None and out.ndim == 3:
            sq[i] = sq.get(i, 0.0) + (flat ** 2).mean(axis=1)
    for x in inputs:
        if meansq is not None:
            hook(-1, np.asarray(x))
        network.forward_float(x, keep="needed", hook=hook)
    if meansq is not None:
        meansq.update({k: v / len(inputs) for k, v in sq.items()})
    return mx


def pixel_inputs(network) -> set:
    """Layers whose output is still in pixel units (their readers' weights see 1/255)."""
    pix = {-1}
    for l in network.layers:
        if l.kind in ("maxpool", "upsample") and l.inputs[0] in pix:
            pix.add(l.index)
    return pix


def alignment_scales(network, *, wbits: int, layer_wbits: Optional[Dict[int, int]] = None, abits: int = 8,
                     layer_abits: Optional[Dict[int, int]] = None, step: str = "max", direction: str = "fit",
                     absmax: Optional[Dict[int, np.ndarray]] = None,
                     meansq: Optional[Dict[int, np.ndarray]] = None,
                     tops: Optional[Dict[int, float]] = None) -> Dict[int, np.ndarray]:
    """The factor of every output channel of every rescalable convolution (layers whose
    outputs must keep their scale, and all-zero channels, get none / 1).

    ``absmax`` (per convolution, per channel: the largest |output| on calibration data) is
    needed by ``direction="fit"``, ``meansq`` (per layer output and the input -1, per
    channel: the mean square on calibration data) by ``step="output"``, ``tops`` (per
    convolution: the largest value of its calibrated activation format) by ``"keep"``."""
    if direction == "keep" and (tops is None or absmax is None):
        raise FormatError("align_direction='keep' needs the calibrated formats (calibration inputs)")
    if direction == "fit" and absmax is None:
        raise FormatError("align_direction='fit' needs the channels' calibration maxima (calibration inputs)")
    if step == "output" and meansq is None:
        raise FormatError("align='output' needs the inputs' mean squares (calibration inputs)")
    origin, frozen = channel_origins(network)
    pix = pixel_inputs(network)
    layer_wbits = layer_wbits or {}
    layer_abits = layer_abits or {}
    scales: Dict[int, np.ndarray] = {}
    for l in network.layers:
        i = l.index
        if l.kind != "convolutional" or i in frozen:
            continue
        w, _ = l.folded_float_params()
        m = l.filters
        if l.inputs[0] in pix:
            w = w / 255.0
        src = origin[l.inputs[0]]
        cw = None
        if src is not None:
            inv = np.array([1.0 / scales[k][c] if k in scales else 1.0 for k, c in src])
            w = w * inv[None, :, None, None]
        if step == "output":          # the rescaled input's mean square: s**2 times the original's
            cw = np.asarray(meansq[l.inputs[0]], np.float64)
            if src is not None:
                cw = cw / inv ** 2
            cw = np.repeat(cw, w.shape[2] * w.shape[3])
        t = real_steps(w.reshape(m, -1), layer_wbits.get(i, wbits), step, col_weight=cw)
        live = t > 0
        safe = np.where(live, t, 1.0)
        down = np.exp2(np.floor(np.log2(safe))) / safe          # (1/2, 1]: step -> the power below
        up = np.where(down < 1.0, 2.0 * down, 1.0)              # (1, 2]: the power above (1 if aligned)
        if direction == "down":
            s = down
        elif direction == "nearest":
            s = np.where(np.abs(np.log2(up)) < np.abs(np.log2(down)), up, down)
        else:
            r = absmax[i]
            bits = layer_abits.get(i, abits)
            top_r = float(r.max())
            f = fp.max_frac(0.0, top_r, bits) if top_r > 0 else None
            top = fp.qmax(bits) * 2.0 ** -f if f is not None else 0.0
            if direction == "keep":
                top = tops[i]
            s = np.where(r * up <= top, up, down)
        scales[i] = np.where(live, s, 1.0)
    return scales


def collect_inputs(network, inputs: Sequence[np.ndarray], source: str = "calibration inputs"):
    """Activation statistics (:class:`~mdfi.quant.calibrate.CalibStats`) of ``network`` over
    float ``inputs`` (as :func:`mdfi.quant.calibrate.collect` gathers them from images)."""
    from .calibrate import StatsGatherer
    gather = StatsGatherer(network)
    for x in inputs:
        gather.add(x)
    return gather.stats(source, len(inputs))


@dataclass
class Alignment:
    """A rescaled copy of a network (``network``) computing the same function as
    ``source``, the factors (``scales``), the settings, and the activation statistics of
    the rescaled network on the calibration inputs (``calib``).  ``kind``: the key of the
    per-layer method record and of the model options (subclasses have their own)."""
    kind = "align"
    source: object
    network: object
    scales: Dict[int, np.ndarray]
    step: str
    direction: str
    wbits: int
    layer_wbits: Dict[int, int] = field(default_factory=dict)
    calib: object = None

    @property
    def record(self) -> str:
        """The per-layer method record (``QConvolutional.method["align"]``)."""
        return f"{self.step}/{self.direction}"

    def summary(self) -> dict:
        s = np.concatenate([v for v in self.scales.values()]) if self.scales else np.ones(0)
        return {"step": self.step, "direction": self.direction, "layers": sorted(self.scales),
                "channels_up": int((s > 1).sum()), "channels_down": int((s < 1).sum()),
                "channels": int(s.size)}


def prepare(network, step: str, *, direction: str = "fit", wbits: int, layer_wbits=None, abits: int = 8,
            layer_abits=None, per_channel: bool = True, inputs: Optional[Sequence[np.ndarray]] = None,
            progress: bool = False) -> Alignment:
    """Align ``network`` (see the module docstring) and recalibrate it on ``inputs``
    (float (C,H,W) calibration inputs; required)."""
    import sys
    check_settings(step, direction, per_channel)
    if not inputs:
        raise FormatError("align needs calibration images (calib_inputs, --calib DIR): the activation "
                          "statistics must be gathered again on the rescaled network")
    layer_wbits = {int(k): int(v) for k, v in (layer_wbits or {}).items()}
    layer_abits = {int(k): int(v) for k, v in (layer_abits or {}).items()}
    meansq: Optional[Dict[int, np.ndarray]] = {} if step == "output" else None
    absmax = channel_absmax(network, inputs, meansq)
    tops = None
    if direction == "keep":
        from .calibrate import choose_frac
        orig = collect_inputs(network, inputs)
        tops = {}
        for i in absmax:
            bits = layer_abits.get(i, abits)
            tops[i] = fp.qmax(bits) * 2.0 ** -int(choose_frac(orig[i], bits, "mse"))
    scales = alignment_scales(network, wbits=wbits, layer_wbits=layer_wbits, abits=abits, layer_abits=layer_abits,
                              step=step, direction=direction, absmax=absmax, meansq=meansq, tops=tops)
    net = apply_scales(network, scales)
    calib = collect_inputs(net, inputs, source=f"{len(inputs)} calibration inputs, aligned network")
    al = Alignment(network, net, scales, step, direction, int(wbits), layer_wbits, calib)
    if progress:
        sm = al.summary()
        print(f"align {al.record}: {sm['channels']} channels of {len(sm['layers'])} layers rescaled "
              f"({sm['channels_up']} up, {sm['channels_down']} down)", file=sys.stderr, flush=True)
    return al


def resolve(network, align, *, direction: str, wbits: int, layer_wbits, abits: int, layer_abits,
            per_channel: bool, inputs, progress: bool) -> Alignment:
    """``quantize_network(align=...)``: a prepared :class:`Alignment` (checked against the
    network and widths) or a step name (prepared now)."""
    lw = {int(k): int(v) for k, v in (layer_wbits or {}).items()}
    if isinstance(align, Alignment):
        if align.source is not network:
            raise FormatError("align: this Alignment was prepared for another network")
        if align.wbits != int(wbits) or {k: v for k, v in align.layer_wbits.items() if v != align.wbits} != \
                {k: v for k, v in lw.items() if v != int(wbits)}:
            raise FormatError("align: this Alignment was prepared for other weight widths")
        if not per_channel:
            raise FormatError(f"{align.kind} needs per-channel weight formats (per_channel=True, --per-channel)")
        return align
    return prepare(network, align, direction=direction, wbits=wbits, layer_wbits=lw, abits=abits,
                   layer_abits=layer_abits, per_channel=per_channel, inputs=inputs, progress=progress)


__all__ = ["ALIGN_STEPS", "ALIGN_DIRECTIONS", "Alignment", "alignment_scales", "channel_absmax",
           "collect_inputs", "prepare", "real_steps", "resolve", "check_settings"]
