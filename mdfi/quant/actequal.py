"""Activation-range equalization for narrow per-tensor activation formats.

One power-of-two activation format per tensor gives a channel whose calibration range is
far below the tensor's largest only a few of the ``2**(bits-1)`` levels: at 6 bits a
channel ranging over a tenth of the tensor's range gets 3 of its 31 positive levels.
Multiplying output channel ``c`` of a convolution by ``s[c] > 0`` (its batch-norm scale
and bias) and dividing input channel ``c`` of every convolution reading it by ``s[c]``
leaves the float network's function unchanged (cross-layer rescaling, Nagel et al. 2019,
"Data-Free Quantization Through Weight Equalization and Bias Correction", section 4.1;
leaky/relu, max-pooling, nearest upsampling and route concatenation commute with positive
per-channel factors; :func:`mdfi.quant.equalize.channel_origins` says which channels may
move).  Nagel et al. equalize *weight* ranges; :mod:`mdfi.quant.equalize` scales every
channel to the tensor's range, which measured worse (small channels fire harder on unseen
photos and clip); :mod:`mdfi.quant.align` rescales by at most 2x to align weight mantissas,
and its gain at w6a6 came from the channels it happened to enlarge.

Here the factor of each channel is chosen, per producing convolution ``L`` in network
order, by the expected squared error it causes at the outputs of the convolutions reading
``L`` (all in the original units of those outputs, estimated from calibration statistics):

* activation rounding of channel ``c`` in ``L``'s per-tensor format (step ``D``): variance
  ``min(D**2/12, s**2 m_c) / s**2`` in original units (``m_c`` the channel's mean square;
  a channel below the step is lost, not rounded), seen through the readers' weights of
  that channel (``G_c``, the sum of their squares over output channels and kernel taps);
* ``L``'s own weight rounding of row ``c``: the row scaled by ``s`` gets the power-of-two
  step ``p(s) = 2**ceil(log2(s t_c))`` (``t_c`` the row's least-squared-error real step at
  its width), error variance ``(p(s)/s)**2 / 12`` times the sum of ``L``'s input mean
  squares over the fan-in, through ``G_c`` as well;
* the readers' weight rounding: a reader's output row ``j`` has one power-of-two step for
  all its inputs; with column ``c`` divided by ``s`` and input ``c`` multiplied by ``s``
  its output error variance is ``k t_j(s)**2 / 12 * taps * sum_q s_q**2 m_q`` (``t_j`` its
  real step, ``k = 3 / ln 4`` the mean squared power-of-two waste of a step).

Each channel's factor minimizes the sum over a geometric grid (``steps_per_octave`` per
octave) in ``[min_scale, upper_c]``, ``upper_c = min(max_scale, max(1, T / (headroom *
r_c)))``: ``r_c`` the channel's largest |value| on the calibration inputs and ``T`` the
top of the tensor's format (``bound="mse"``, the default: the format the ``mse``
calibration chose for the original tensor, clip budget included; ``"max"``: the format
that holds the tensor's largest calibration value, which the factors then keep), so that no channel clips on the calibration
inputs where it did not and ``headroom`` leaves room for unseen photos.  The readers' steps
depend on all factors through their row maxima: a few sweeps re-estimate them, and the
sweep of least total expected error is kept.  Activation statistics are then gathered
again on the rescaled network.  The integer semantics and the golden model are unchanged;
only the float weights before quantization differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
from ..errors import FormatError
from .align import Alignment, channel_absmax, collect_inputs, pixel_inputs, real_steps
from .equalize import apply_scales, channel_origins

#: The tensor format whose top bounds a channel's range.
BOUNDS = ("max", "mse")
#: Mean of ``(p/t)**2`` for a power-of-two step ``p = 2**ceil(log2 t)`` with ``log2 t``
#: uniform in an octave: the readers' expected waste (their own factors choose it later).
POW2_WASTE = 3.0 / np.log(4.0)


@dataclass(frozen=True)
class ActEqualSettings:
    """Settings of :func:`prepare` (see the module docstring); the defaults are the
    setting chosen on the ``val`` photos at w6a6 (docs/quantization.md, round 5)."""
    bound: str = "mse"
    headroom: float = 1.0
    max_scale: float = 4.0
    min_scale: float = 0.5
    steps_per_octave: int = 8
    sweeps: int = 3

    def label(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name):g}" if not isinstance(getattr(self, f.name), str)
                        else f"{f.name}={getattr(self, f.name)}" for f in fields(self))


def settings_from(value) -> ActEqualSettings:
    """:class:`ActEqualSettings` from None / True (defaults), a mapping, an instance, or
    text ``"bound=mse,headroom=2"``; refused with one line when unknown or out of range."""
    if isinstance(value, ActEqualSettings):
        s = value
    else:
        if value is None or value is True:
            value = {}
        if isinstance(value, str):
            kv = {}
            for part in value.split(","):
                if part.strip():
                    k, eq, v = part.partition("=")
                    if not eq:
                        raise FormatError(f"act_equalize: expected KEY=VALUE, got {part!r}")
                    if k.strip() in kv:             # the last one silently won
                        raise FormatError(f"act_equalize: {k.strip()} is given twice")
                    kv[k.strip()] = v.strip()
            value = kv
        if not isinstance(value, Mapping):
            raise FormatError(f"act_equalize: expected settings (KEY=VALUE,...), got {value!r}")
        known = {f.name: f.type for f in fields(ActEqualSettings)}
        bad = set(value) - set(known)
        if bad:
            raise FormatError(f"act_equalize: unknown settings {sorted(bad)} (known: {', '.join(known)})")
        kw = {}
        for k, v in value.items():
            try:
                kw[k] = str(v) if k == "bound" else int(v) if k in ("steps_per_octave", "sweeps") else float(v)
            except (TypeError, ValueError):
                raise FormatError(f"act_equalize: {k}={v!r} is not a number") from None
        s = ActEqualSettings(**kw)
    if s.bound not in BOUNDS:
        raise FormatError(f"act_equalize: bound={s.bound!r}: expected one of {', '.join(BOUNDS)}")
    if not (s.headroom >= 1.0 and 0.0 < s.min_scale <= 1.0 <= s.max_scale <= 1024.0):
        raise FormatError("act_equalize: need headroom >= 1 and 0 < min_scale <= 1 <= max_scale <= 1024")
    if not (1 <= s.steps_per_octave <= 64 and 1 <= s.sweeps <= 10):
        raise FormatError("act_equalize: need 1 <= steps_per_octave <= 64 and 1 <= sweeps <= 10")
    return s


class ActEqualization(Alignment):
    """A rescaled copy of a network (:class:`~mdfi.quant.align.Alignment` with the
    ``actequal`` record): ``step`` holds the bound, ``direction`` the other settings."""
    kind = "actequal"

    def __init__(self, source, network, scales, settings: ActEqualSettings, wbits, layer_wbits, calib,
                 abits: int, layer_abits):
        super().__init__(source, network, scales, settings.bound, settings.label(), int(wbits),
                         dict(layer_wbits), calib)
        self.settings = settings
        self.abits = int(abits)
        self.layer_abits = dict(layer_abits)

    @property
    def record(self) -> str:
        return self.settings.bound

    def summary(self) -> dict:
        d = super().summary()
        d.pop("step")
        d.pop("direction")
        s = np.concatenate(list(self.scales.values())) if self.scales else np.ones(1)
        budget = getattr(self, "clip_budget", None)
        return dict(asdict(self.settings), **d, abits=self.abits,
                    **({} if budget is None else {"clip_budget": budget}),
                    scale_min=float(s.min()), scale_max=float(s.max()),
                    scale_median=float(np.median(s)))


class _Reader:
    """A convolution reading (some of) a producer's channels: per input column ``q`` its
    origin, and the per-row / per-column quantities of the readers' error terms."""

    def __init__(self, layer, src, meansq_in, wbits):
        w, _ = layer.folded_float_params()
        w = np.asarray(w, np.float64)
        m, q = w.shape[:2]
        self.index = layer.index
        self.src = src
        self.taps = w.shape[2] * w.shape[3]
        self.colmax = np.abs(w).reshape(m, q, -1).max(axis=2)           # (M, Q)
        self.energy = (w ** 2).reshape(m, q, -1).sum(axis=(0, 2))         # (Q,)
        self.meansq = np.asarray(meansq_in, np.float64)                   # (Q,) original units
        flat = w.reshape(m, -1)
        tmax = real_steps(flat, wbits, "max")
        tmse = real_steps(flat, wbits, "mse")
        self.ratio = np.where(tmax > 0, tmse / np.where(tmax > 0, tmax, 1.0), 1.0)     # (M,)
        self.qmax = fp.qmax(wbits)

    def factors(self, scales) -> np.ndarray:
        return np.array([scales[k][c] if k in scales else 1.0 for k, c in self.src])

    def row_t2(self, s_in: np.ndarray) -> np.ndarray:
        """(M,): the squared real step of every output row with inputs scaled by ``s_in``."""
        t = self.ratio * (self.colmax / s_in[None, :]).max(axis=1) / self.qmax
        return t ** 2

    def weight_noise(self, s_in: np.ndarray) -> float:
        """Total expected squared output error of the reader's weight rounding."""
        return float(POW2_WASTE / 12.0 * self.row_t2(s_in).sum() * self.taps * (s_in ** 2 * self.meansq).sum())


def equalization_scales(network, *, wbits: int, layer_wbits=None, abits: int, layer_abits=None,
                        absmax: Dict[int, np.ndarray], meansq: Dict[int, np.ndarray],
                        act_fracs: Dict[int, int], settings: ActEqualSettings) -> Dict[int, np.ndarray]:
    """The factor of every output channel of every rescalable convolution that a
    convolution reads (module docstring).  ``absmax`` (per convolution, per channel: the
    largest |output| on calibration data), ``meansq`` (per layer output and the input -1,
    per channel: the mean square), ``act_fracs`` (per convolution: the frac of its output
    format before rescaling; it sets the activation step ``D``)."""
    origin, frozen = channel_origins(network)
    pix = pixel_inputs(network)
    layer_wbits = {int(k): int(v) for k, v in (layer_wbits or {}).items()}
    layer_abits = {int(k): int(v) for k, v in (layer_abits or {}).items()}
    convs = [l for l in network.layers if l.kind == "convolutional"]
    readers_of: Dict[int, list] = {}
    for l in convs:
        src = origin[l.inputs[0]]
        if src is None:
            continue
        rd = _Reader(l, src, meansq[l.inputs[0]], layer_wbits.get(l.index, wbits))
        for k in {k for k, _ in src}:
            readers_of.setdefault(k, []).append(rd)
    grid_lo = np.log2(settings.min_scale)
    grid_hi = np.log2(settings.max_scale)
    n = int(round((grid_hi - grid_lo) * settings.steps_per_octave)) + 1
    grid = np.unique(np.concatenate([np.exp2(np.linspace(grid_lo, grid_hi, max(n, 2))), [1.0]]))   # (S,)
    scales: Dict[int, np.ndarray] = {}
    for l in convs:
        i = l.index
        if i in frozen or i not in readers_of:
            continue
        m = l.filters
        bits_a = layer_abits.get(i, abits)
        r = np.asarray(absmax[i], np.float64)
        mc = np.asarray(meansq[i], np.float64)
        # L's own rows at their width, with its producers' factors absorbed (original input units)
        w, _ = l.folded_float_params()
        w = np.asarray(w, np.float64)
        in_scale = 1.0 / 255.0 if l.inputs[0] in pix else 1.0
        s_in = np.ones(w.shape[1])
        src = origin[l.inputs[0]]
        if src is not None:
            s_in = np.array([scales[k][c] if k in scales else 1.0 for k, c in src])
        w_eff = (w * in_scale / s_in[None, :, None, None]).reshape(m, -1)
        t_own = real_steps(w_eff, layer_wbits.get(i, wbits), "mse")                           # (M,)
        power_in = w.shape[2] * w.shape[3] * float((np.asarray(meansq[l.inputs[0]], np.float64)
                                                    * s_in ** 2 / in_scale ** 2).sum())
        step_a = 2.0 ** -int(act_fracs[i])
        top_r = float(r.max())
        if settings.bound == "max":
            f = fp.max_frac(0.0, top_r, bits_a) if top_r > 0 else None
            top = fp.qmax(bits_a) * 2.0 ** -int(f) if f is not None else 0.0
        else:
            top = fp.qmax(bits_a) * step_a
        live = (r > 0) & (t_own > 0)
        upper = np.where(live, np.minimum(settings.max_scale,
                                          np.maximum(1.0, top / (settings.headroom * np.where(live, r, 1.0)))), 1.0)
        allowed = (grid[None, :] <= upper[:, None] * (1 + 1e-12)) & (grid[None, :] >= settings.min_scale * (1 - 1e-12))
        allowed |= ~live[:, None] & (grid[None, :] == 1.0)
        # reader column energy of each of L's channels, and where its columns are
        g = np.zeros(m)
        cols = []
        for rd in readers_of[i]:
            qs = np.array([q for q, (k, _) in enumerate(rd.src) if k == i])
            cs = np.array([c for k, c in rd.src if k == i])
            np.add.at(g, cs, rd.energy[qs])
            cols.append((rd, qs, cs))
        sg = grid[None, :]
        t_live = np.where(live, t_own, 1.0)

        def act_own(sv, mcv, tv):
            """Per channel at factor ``sv``: activation rounding + L's own weight rounding
            (original units, before the readers' column energy)."""
            p = np.exp2(np.ceil(np.log2(np.maximum(sv * tv, 1e-300))))
            return np.minimum(step_a ** 2 / 12.0, sv ** 2 * mcv) / sv ** 2 + (p / sv) ** 2 / 12.0 * power_in

        fixed_cost = g[:, None] * act_own(sg, mc[:, None], t_live[:, None])                   # (M, S)

        def total(s):
            scales[i] = s
            tot = float((g * act_own(s, mc, t_live)).sum())
            return tot + sum(rd.weight_noise(rd.factors(scales)) for rd in readers_of[i])

        s = np.ones(m)
        best_s, best_j = s.copy(), total(s)
        for _ in range(settings.sweeps):
            scales[i] = s
            a = np.zeros(m)
            for rd, qs, cs in cols:
                coef = POW2_WASTE / 12.0 * rd.row_t2(rd.factors(scales)).sum() * rd.taps
                np.add.at(a, cs, coef * rd.meansq[qs])
            cost = np.where(allowed, fixed_cost + a[:, None] * sg ** 2, np.inf)
            s = grid[np.argmin(cost, axis=1)]
            s = np.where(live, s, 1.0)
            j = total(s)
            if j < best_j:
                best_s, best_j = s.copy(), j
        scales[i] = best_s
    return scales


def prepare(network, settings=None, *, wbits: int, layer_wbits=None, abits: int = 8, layer_abits=None,
            per_channel: bool = True, inputs: Optional[Sequence[np.ndarray]] = None,
            progress: bool = False, clip_budget: Optional[float] = None) -> ActEqualization:
    """Equalize ``network``'s activation ranges (module docstring) and recalibrate it on
    ``inputs`` (float (C,H,W) calibration inputs; required).  ``clip_budget`` (percent, as
    :func:`mdfi.quant.calibrate.choose_frac`; None: its default) is the budget of the ``mse``
    formats that ``bound="mse"`` keeps: the one the model's formats will be chosen with, or
    an enlarged channel may pass the top of a finer final format and clip."""
    import sys
    from .calibrate import choose_frac
    st = settings_from(settings)
    if not per_channel:
        raise FormatError("act_equalize needs per-channel weight formats (per_channel=True, --per-channel): "
                          "its error model is the one of per-channel weight steps")
    if not inputs:
        raise FormatError("act_equalize needs calibration images (calib_inputs, --calib DIR): the channels' "
                          "ranges come from them and the rescaled network is calibrated again")
    layer_wbits = {int(k): int(v) for k, v in (layer_wbits or {}).items()}
    layer_abits = {int(k): int(v) for k, v in (layer_abits or {}).items()}
    meansq: Dict[int, np.ndarray] = {}
    absmax = channel_absmax(network, inputs, meansq)
    orig = collect_inputs(network, inputs)
    budget = {} if clip_budget is None else {"clip_budget": float(clip_budget)}
    fracs = {i: int(choose_frac(orig[i], layer_abits.get(i, abits), "mse", **budget)) for i in absmax}
    scales = equalization_scales(network, wbits=wbits, layer_wbits=layer_wbits, abits=abits,
                                 layer_abits=layer_abits, absmax=absmax, meansq=meansq, act_fracs=fracs,
                                 settings=st)
    net = apply_scales(network, scales)
    calib = collect_inputs(net, inputs, source=f"{len(inputs)} calibration inputs, activation-equalized network")
    eq = ActEqualization(network, net, scales, st, wbits, layer_wbits, calib, abits, layer_abits)
    eq.clip_budget = None if clip_budget is None else float(clip_budget)
    if progress:
        sm = eq.summary()
        print(f"act_equalize {st.label()}: {sm['channels']} channels of {len(sm['layers'])} layers "
              f"({sm['channels_up']} up, {sm['channels_down']} down; factors {sm['scale_min']:.3g}.."
              f"{sm['scale_max']:.3g}, median {sm['scale_median']:.3g})", file=sys.stderr, flush=True)
    return eq


__all__ = ["ActEqualSettings", "ActEqualization", "BOUNDS", "equalization_scales", "prepare", "settings_from"]
