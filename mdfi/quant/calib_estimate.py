"""Data-free, approximate activation statistics from batch-norm parameters.

Split out of :mod:`mdfi.quant.calibrate` (which re-exports :func:`estimate_from_batchnorm`); used
when no calibration images are available.  See :func:`estimate_from_batchnorm`.
"""

from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..darknet.activations import LEAKY_SLOPE
from .calibrate import _BIN_LO, _EDGES32, NBINS, CalibStats, TensorStats, _bin_index
from ..errors import ShapeError

# Every tensor is described per channel c as ``y = gain[c] * act[c](x)`` with the
# pre-activation ``x ~ Normal(mu[c], sigma[c]**2)`` truncated at ``+-zlim[c]`` standard
# deviations.  Histograms are integrated exactly from the normal CDF over the pre-images of the
# bins; means and second moments (needed by the next layer) by quadrature.

_ACTS = ("linear", "leaky", "relu", "logistic", "mish", "swish", "hard_mish", "relu6")
_LIN, _LEAKY, _RELU, _LOGI, _MISH, _SWISH, _HMISH, _RELU6 = range(8)
#: Activations whose histograms are integrated numerically (not monotone, or clamped).
_NUMERIC = (_MISH, _SWISH, _HMISH, _RELU6)
_NUMERIC_POINTS = 512
#: Virtual values per channel in synthetic histograms (they hold no real counts).
_VIRTUAL_PER_CHANNEL = 1 << 20
#: Extent of the synthetic normals: the max is at mean + 6 std.
_ZLIM = 6.0
_SLOPE = float(LEAKY_SLOPE)


def _erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, relative error < 1.2e-7 everywhere (Numerical Recipes
    ``erfcc``, Chebyshev fit), vectorised."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = t * np.exp(poly)
    return np.where(x >= 0, r, 2.0 - r)


def _interval_probs(z: np.ndarray, zlim: np.ndarray) -> np.ndarray:
    """P(z[..., j] <= Z < z[..., j+1]) for increasing edges ``z`` (last axis), Z standard
    normal truncated to [-zlim, zlim].  One erfc per edge: with the tail
    ``t(z) = P(Z > |z|)``, an interval on one side of 0 has probability ``|t(lo) - t(hi)|``,
    one across 0 ``1 - t(lo) - t(hi)`` (no cancellation in the tails)."""
    zc = np.clip(z, -zlim, zlim)
    t = 0.5 * _erfc(np.abs(zc) / math.sqrt(2.0))
    lo, hi = zc[..., :-1], zc[..., 1:]
    tl, th = t[..., :-1], t[..., 1:]
    p = np.where(lo >= 0, tl - th, np.where(hi <= 0, th - tl, 1.0 - tl - th))
    mass = 1.0 - _erfc(zlim / math.sqrt(2.0))              # P(-zlim <= Z < zlim)
    return np.maximum(p, 0.0) / mass


class _Dist:
    """Per-channel description of a tensor (see the comment above)."""

    __slots__ = ("mu", "sigma", "act", "gain", "zlim")

    def __init__(self, mu, sigma, act, gain=1.0, zlim=_ZLIM):
        self.mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        c = self.mu.size
        self.sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (c,)).copy()
        self.act = np.broadcast_to(np.asarray(act, dtype=np.int8), (c,)).copy()
        self.gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), (c,)).copy()
        self.zlim = np.broadcast_to(np.asarray(zlim, dtype=np.float64), (c,)).copy()
        # a degenerate channel (sigma 0) becomes a very narrow normal
        self.sigma = np.maximum(np.abs(self.sigma), 1e-9 * np.abs(self.mu) + 1e-30)

    @property
    def channels(self) -> int:
        return self.mu.size

    @staticmethod
    def concat(parts: Sequence["_Dist"]) -> "_Dist":
        return _Dist(np.concatenate([p.mu for p in parts]), np.concatenate([p.sigma for p in parts]),
                     np.concatenate([p.act for p in parts]), np.concatenate([p.gain for p in parts]),
                     np.concatenate([p.zlim for p in parts]))

    def take(self, idx) -> "_Dist":
        return _Dist(self.mu[idx], self.sigma[idx], self.act[idx], self.gain[idx], self.zlim[idx])

    # -- moments ------------------------------------------------------------------------------
    def moments(self, points: int = 401) -> Tuple[np.ndarray, np.ndarray]:
        """Per-channel mean and mean square of the values."""
        t = np.linspace(-1.0, 1.0, points)
        z = self.zlim[:, None] * t[None, :]
        w = np.exp(-0.5 * z * z)
        w /= w.sum(axis=1, keepdims=True)
        y = _apply_act(self.act[:, None], self.mu[:, None] + self.sigma[:, None] * z) * self.gain[:, None]
        return (w * y).sum(axis=1), (w * y * y).sum(axis=1)

    def as_gaussian(self) -> Tuple[np.ndarray, np.ndarray]:
        """Moment-matched normal (mean, std) of every channel's values."""
        m, e2 = self.moments()
        return m, np.sqrt(np.maximum(e2 - m * m, 0.0))

    def extremes(self) -> Tuple[np.ndarray, np.ndarray]:
        """Per-channel smallest and largest value (over a grid where the activation is not
        monotone)."""
        a = _apply_act(self.act, self.mu - self.zlim * self.sigma) * self.gain
        b = _apply_act(self.act, self.mu + self.zlim * self.sigma) * self.gain
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        num = np.isin(self.act, _NUMERIC)
        if num.any():
            y = self._grid(num)[0]
            lo[num] = np.minimum(lo[num], y.min(axis=1))
            hi[num] = np.maximum(hi[num], y.max(axis=1))
        return lo, hi

    def _grid(self, sel: np.ndarray):
        """Values on a grid of the truncated normal of the channels ``sel`` and the grid
        weights: (values (n, P), weights (n, P), rows sum to 1)."""
        zl = self.zlim[sel][:, None]
        k = np.arange(_NUMERIC_POINTS + 1, dtype=np.float64) / _NUMERIC_POINTS
        edges = -zl + 2.0 * zl * k[None, :]
        w = _interval_probs(edges, zl)
        w /= np.maximum(w.sum(axis=1, keepdims=True), 1e-300)
        z = 0.5 * (edges[:, :-1] + edges[:, 1:])
        x = self.mu[sel][:, None] + self.sigma[sel][:, None] * z
        return _apply_act(self.act[sel][:, None], x) * self.gain[sel][:, None], w

    # -- the synthetic TensorStats ----------------------------------------------------------------
    def stats(self) -> TensorStats:
        pos = np.zeros(NBINS)
        neg = np.zeros(NBINS)
        zeros = 0.0
        edges = _BIN_LO.astype(np.float64)          # |y| edges: 0, E1, ..., E_{N-1}, inf
        num = np.isin(self.act, _NUMERIC)
        if num.any():
            y, w = self._grid(num)
            y, w = y.reshape(-1), w.reshape(-1)
            nz = y != 0
            zeros += float(w[~nz].sum())
            k = _bin_index(np.abs(y[nz]))
            pos += np.bincount(k[y[nz] > 0], weights=w[nz][y[nz] > 0], minlength=NBINS)
            neg += np.bincount(k[y[nz] < 0], weights=w[nz][y[nz] < 0], minlength=NBINS)
        for code in range(_MISH):
            for sign in (1.0, -1.0):
                sel = (self.act == code) & (np.sign(self.gain) == sign)
                if not sel.any():
                    continue
                mu, sd, g, zl = (self.mu[sel][:, None], self.sigma[sel][:, None],
                                 np.abs(self.gain[sel])[:, None], self.zlim[sel][:, None])
                # positive outputs y in [e_k, e_{k+1}): pre-image of y/g
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    u = edges[None, :] / g
                    if code == _LOGI:       # logit(u) on (0, 1); -inf at 0, +inf from 1 on
                        x = np.where(u >= 1.0, np.inf, np.log(u) - np.log1p(-np.minimum(u, 1.0)))
                    else:
                        x = u
                    zp = (x - mu) / sd
                hp = _interval_probs(zp, zl).sum(axis=0)
                # negative outputs |y| in [e_k, e_{k+1}) <=> x in (-e_{k+1}/(g s), -e_k/(g s)]
                hn = np.zeros(NBINS)
                if code in (_LIN, _LEAKY):
                    s = 1.0 if code == _LIN else _SLOPE
                    with np.errstate(over="ignore", invalid="ignore"):
                        zn = (-u[:, ::-1] / s - mu) / sd          # increasing
                    hn = _interval_probs(zn, zl).sum(axis=0)[::-1]
                if code == _RELU:
                    z0 = np.concatenate([np.full_like(mu, -np.inf), -mu / sd], axis=1)
                    zeros += float(_interval_probs(z0, zl).sum())
                if sign > 0:
                    pos += hp
                    neg += hn
                else:
                    pos += hn
                    neg += hp
        zero_gain = self.gain == 0
        zeros += float(zero_gain.sum())
        st = TensorStats()
        scale = float(_VIRTUAL_PER_CHANNEL)
        st.pos = np.floor(pos * scale + 0.5).astype(np.int64)
        st.neg = np.floor(neg * scale + 0.5).astype(np.int64)
        st.zeros = int(math.floor(zeros * scale + 0.5))
        st.count = int(st.pos.sum() + st.neg.sum()) + st.zeros
        lo, hi = self.extremes()
        st.min, st.max = _consistent_range(st, float(lo.min()), float(hi.max()))
        return st


def _consistent_range(st: TensorStats, lo: float, hi: float) -> Tuple[Optional[float], Optional[float]]:
    """Make a synthetic min/max agree with rounded synthetic histograms (the checks of
    :meth:`TensorStats.from_dict`): a bin rounded to zero count must not leave the max in it."""
    if st.count == 0:
        return None, None
    nz_pos, nz_neg = np.flatnonzero(st.pos), np.flatnonzero(st.neg)
    if nz_pos.size:
        top = int(nz_pos[-1])
        if hi <= 0 or int(_bin_index(np.array([hi]))[0]) < top:
            hi = float(_EDGES32[top])                  # E[top] lies in bin top (E[0] in bin 0)
    elif st.zeros:
        hi = 0.0
    else:                                              # all negative: max in the lowest bin
        first = int(nz_neg[0])
        if hi >= 0 or int(_bin_index(np.array([-hi]))[0]) != first:
            hi = -float(_EDGES32[first])
    if nz_neg.size:
        top = int(nz_neg[-1])
        if lo >= 0 or int(_bin_index(np.array([-lo]))[0]) < top:
            lo = -float(_EDGES32[top])
    elif st.zeros:
        lo = 0.0
    else:                                              # all positive: min in the lowest bin
        first = int(nz_pos[0])
        if lo <= 0 or int(_bin_index(np.array([lo]))[0]) != first:
            lo = float(_EDGES32[first])
    if st.zeros:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    return lo, hi


def _apply_act(code: np.ndarray, x: np.ndarray) -> np.ndarray:
    code = np.broadcast_to(code, x.shape)
    with np.errstate(over="ignore"):
        logi = 1.0 / (1.0 + np.exp(-x))
    conds = [code == _LEAKY, code == _RELU, code == _LOGI]
    vals = [np.where(x > 0, x, _SLOPE * x), np.maximum(x, 0.0), logi]
    if (code >= _MISH).any():
        from ..darknet.activations import reference_float64
        for c in _NUMERIC:
            if (code == c).any():
                conds.append(code == c)
                vals.append(reference_float64(_ACTS[c], x))
    return np.select(conds, vals, x)


def _max_of_n(n: int) -> Tuple[float, float]:
    """Mean and standard deviation of the maximum of ``n`` independent standard normals."""
    if n <= 1:
        return 0.0, 1.0
    z = np.linspace(-8.0, 8.0, 4001)
    cdf = 0.5 * _erfc(-z / math.sqrt(2.0))
    pdf = n * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * cdf ** (n - 1)
    pdf /= pdf.sum()
    m = float((z * pdf).sum())
    return m, float(math.sqrt(max((z * z * pdf).sum() - m * m, 1e-12)))


def _with_activation(d: _Dist, apply: np.ndarray, shift: Optional[np.ndarray] = None) -> _Dist:
    """Apply the logistic to the channels where ``apply`` is True (detection heads).

    A channel that is ``gain * x`` (linear) becomes ``logistic(gain * x)`` exactly; any other
    is first replaced by its moment-matched normal.  ``shift`` subtracts from the logits.
    """
    mu, sd, act, gain, zl = d.mu.copy(), d.sigma.copy(), d.act.copy(), d.gain.copy(), d.zlim.copy()
    lin = act == _LIN
    gm, gs = d.as_gaussian() if not np.all(lin | ~apply) else (mu, sd)
    sel = apply & lin
    mu[sel], sd[sel] = mu[sel] * gain[sel], sd[sel] * np.abs(gain[sel])
    other = apply & ~lin
    mu[other], sd[other], zl[other] = gm[other], gs[other], _ZLIM
    if shift is not None:
        mu[apply] -= shift[apply]
    act[apply] = _LOGI
    gain[apply] = 1.0
    return _Dist(mu, sd, act, gain, zl)


def _estimate_layer(layer, ins: List[_Dist]) -> _Dist:
    kind = layer.kind
    if kind == "convolutional":
        code = _ACTS.index(layer.activation)
        if layer.batch_normalize:
            # normalised conv output has zero mean and unit variance under the rolling stats
            return _Dist(layer.biases, np.abs(layer.scales), code)
        m, e2 = ins[0].moments()
        w = layer.weights.astype(np.float64)
        wsq = (w * w).sum(axis=(2, 3))                 # (M, C/groups): ||w_{m,c}||^2
        g = layer.groups                               # filter m reads the channels of its group
        std = np.sqrt((wsq.reshape(g, -1, wsq.shape[1]) @ e2.reshape(g, -1, 1)).reshape(-1))
        return _Dist(layer.biases, std, code)
    if kind == "maxpool" and getattr(layer, "depth", False):
        d = ins[0]                                     # max over C/out_channels channels
        e, s = _max_of_n(max(d.channels // layer.out_channels, 1))
        f = d.take(slice(0, layer.out_channels))
        sign = np.where(f.gain < 0, -1.0, 1.0)
        return _Dist(f.mu + sign * e * f.sigma, f.sigma * s, f.act, f.gain, f.zlim)
    if kind == "maxpool":
        e, s = _max_of_n(layer.size * layer.size)
        d = ins[0]
        # act is non-decreasing: max commutes with it (gain < 0 turns max into min)
        sign = np.where(d.gain < 0, -1.0, 1.0)
        return _Dist(d.mu + sign * e * d.sigma, d.sigma * s, d.act, d.gain, d.zlim)
    if kind == "upsample" and getattr(layer, "reverse", False):
        m, sd = ins[0].as_gaussian()                   # sum of stride^2 values
        n = layer.stride * layer.stride
        return _Dist(m * n * layer.scale, sd * np.sqrt(n) * abs(layer.scale), _LIN)
    if kind == "upsample":
        d = ins[0]
        return _Dist(d.mu, d.sigma, d.act, d.gain * float(layer.scale), d.zlim)
    if kind == "reorg":
        s2 = layer.stride * layer.stride
        return _Dist.concat([ins[0]] * s2) if s2 > 1 else ins[0]
    if kind == "route":
        if getattr(layer, "groups", 1) > 1:                # AlexeyAB groups: channel slices
            ins = [d.take(slice(a, b)) for d, (a, b) in zip(ins, layer.slices())]
        return _Dist.concat(ins)
    if kind == "shortcut":
        ma, sa = ins[0].as_gaussian()
        mu, var = layer.alpha * ma, (layer.alpha * sa) ** 2
        for d in ins[1:]:                                  # common channels get the sum
            mb, sb = d.as_gaussian()
            k = min(len(mb), len(mu))
            mu[:k] += layer.beta * mb[:k]
            var[:k] += (layer.beta * sb[:k]) ** 2
        return _Dist(mu, np.sqrt(var), _ACTS.index(layer.activation))
    if kind == "avgpool":
        # the mean of h*w values: the channel's mean; its spread is kept (not divided by
        # sqrt(h*w)): real maps are spatially correlated, and a wide range cannot saturate
        m, sd = ins[0].as_gaussian()
        return _Dist(m, sd, _LIN)
    if kind == "scale_channels":
        # product of independent factors: E = ma mb, Var = (sa^2 + ma^2)(sb^2 + mb^2) - ma^2 mb^2
        ma, sa = ins[0].as_gaussian()
        mb, sb = ins[1].as_gaussian()
        if layer.mode == "spatial":                    # one scale map for every channel
            ma, sa = np.full_like(mb, float(np.mean(ma))), np.full_like(sb, float(np.sqrt(np.mean(sa ** 2))))
        mu = ma * mb
        var = (sa ** 2 + ma ** 2) * (sb ** 2 + mb ** 2) - mu ** 2
        return _Dist(mu, np.sqrt(np.maximum(var, 0.0)), _ACTS.index(layer.activation))
    if kind == "yolo":
        return _with_activation(ins[0], layer.logistic_mask())
    if kind == "region":
        d = ins[0]
        n, e = layer.n, layer.entries
        mask = np.ones((n, e), dtype=bool)             # logistic on x, y, objectness, classes;
        mask[:, 2:4] = False                           # w, h stay raw
        shift = np.zeros((n, e))
        if layer.softmax:
            # softmax_j ~ logistic(x_j - log sum_{k != j} E[exp x_k]), E[exp x] lognormal mean
            m, s = d.as_gaussian()
            lme = (m + 0.5 * s * s).reshape(n, e)[:, 5:]
            top = lme.max(axis=1, keepdims=True)
            ex = np.exp(lme - top)
            rest = ex.sum(axis=1, keepdims=True) - ex
            with np.errstate(divide="ignore"):
                shift[:, 5:] = np.where(rest > 0, top + np.log(np.maximum(rest, 1e-300)), -30.0)
        return _with_activation(d, mask.reshape(-1), shift.reshape(-1))
    raise ShapeError(f"layer {layer.index}: no statistics estimate for [{kind}] layers")


def estimate_from_batchnorm(network) -> CalibStats:
    """Data-free, **approximate** statistics for every layer, from the parameters alone.

    Used when no calibration images are available.  Model:

    * network input: the letterboxed image in [0, 1], taken as a normal N(0.5, 0.25**2)
      truncated to [0, 1];
    * convolution with batch norm: the pre-activation of channel c is normal with mean
      ``biases[c]`` and std ``|scales[c]|`` (the normalised conv output has zero mean and
      unit variance under the rolling training statistics); without batch norm: mean
      ``biases[c]`` and std ``sqrt(sum_i ||w[c,i]||**2 * E[x_i**2])`` (||w_c|| times the rms
      of the input, per input channel);
    * the activation is applied exactly to that normal (leaky: negative side x 0.1; relu;
      logistic), truncated at +-6 std so that the max is at mean + 6 std;
    * maxpool: the max of ``size**2`` independent normals (moment-matched); upsample: same
      values (times ``scale``); reorg: same values; route: union of its inputs; shortcut:
      normal with the summed means and variances of its inputs (moment-matched), then its
      activation; avgpool: the input's mean and spread; scale_channels / sam: the moments of a
      product of independent factors, then its activation; [yolo]/[region]: the logistic (softmax approximated per class) of the
      input.

    Histograms are integrated from the normal CDF per channel over the bins; they hold
    2**20 *virtual* values per channel (``count`` is not a real count; ``num_images`` is 0,
    ``method`` is ``"batchnorm-estimate"``).  Real activations have heavier tails and
    spatial correlation this ignores: calibrating on a few real images is better.
    """
    for l in network.layers:
        if l.num_params() and getattr(l, "weights", None) is None:
            raise ShapeError(f"layer {l.index} ({l.kind}) has no weights loaded")
    c = network.channels
    dists: Dict[int, _Dist] = {-1: _Dist(np.full(c, 0.5), 0.25, _LIN, 1.0, 2.0)}
    layers: Dict[int, TensorStats] = {}
    for layer in network.layers:
        d = _estimate_layer(layer, [dists[i] for i in layer.inputs])
        if d.channels != layer.out_shape[0]:
            raise ShapeError(f"layer {layer.index}: estimate has {d.channels} channels, "
                             f"expected {layer.out_shape[0]}")
        dists[layer.index] = d
        layers[layer.index] = _with_channel_means(d.stats(), d)
    return CalibStats(layers, source="batch-norm parameters", num_images=0,
                      input_size=(network.width, network.height), cfg=os.path.basename(network.path),
                      method="batchnorm-estimate", layer_kinds=[l.kind for l in network.layers],
                      input=_with_channel_means(dists[-1].stats(), dists[-1]))


def _with_channel_means(st: TensorStats, d: "_Dist") -> TensorStats:
    """Attach the model's per-channel means (one virtual value per channel)."""
    mean, _ = d.moments()
    st.channel_sum = np.asarray(mean, dtype=np.float64).copy()
    st.channel_n = 1
    return st


