"""Gain correction: round towards the float network's output, not towards ``w`` applied to
the already degraded inputs.

Why (docs/quantization.md, "Where the remaining 4-bit bias comes from"): GPTQ minimises
``(w - q) H (w - q)^T`` with ``H = X_q X_q^T``, i.e. it reproduces ``w X_q``, the float
weights applied to the quantized network's inputs.  Every rounding method that minimises a
squared error shrinks a little (at 4 bits each output channel keeps a gain
``<q, w>/<w, w>`` of 0.976–0.986), and because each layer only reproduces its own float
weights on inputs that are already shrunk, the shrink compounds over the ten convolutions
before a head (0.98^10 ≈ 0.82, the measured slope of the best-class logit).

Two corrections, both choosing only *which integers* a layer gets (the power-of-two
formats, the integer semantics and the golden model are unchanged):

* ``"asym"`` — asymmetric calibration (Li et al. 2025, "GPTAQ: Efficient Finetuning-Free
  Quantization for Asymmetric Calibration", ICML 2025, arXiv:2504.02692): minimise
  ``||w X_f - q X_q||^2`` over the calibration positions, ``X_f`` the float network's input
  columns of the layer and ``X_q`` the quantized network's (dequantized) at the same
  positions.  Its least-squares optimum is ``w* = w C H^-1`` with ``C = X_f X_q^T``; with
  ``||w X_f - q X_q||^2 = ||w X_f - w* X_q||^2 + (w* - q) H (w* - q)^T`` the integers are
  then rounded towards ``w*`` under ``H`` (GPTQ) or to nearest.  The inverse is damped as
  GPTQ's (``DAMP`` times the mean diagonal), applied to the *correction* only,
  ``w* = w + w (C - H) (H + lambda I)^-1``, so that ``X_f = X_q`` gives ``w* = w`` exactly.
* ``"gain"`` — one parameter per output channel: the least-squares slope ``g_m`` of the
  quantized layer's pre-activation output on the float network's over all calibration
  positions (centred: the intercept is the empirical bias correction's job), then re-round
  ``w / g`` (cumulative), at most :data:`GAIN_ITERS` times; per channel the integers whose
  slope is closest to 1 are kept (the uncorrected ones included).

Clipping stays clipping: a target outside the weight format is clipped as before.
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Tuple

import numpy as np

from .. import fixedpoint as fp

#: The corrections ``quantize_network(gain_correction=...)`` accepts.
GAIN_CORRECTIONS = ("asym", "gain")
#: Re-roundings of the ``"gain"`` correction.
GAIN_ITERS = 3
#: A slope is accepted only within these bounds (a channel whose float output hardly varies
#: over the calibration positions keeps gain 1).
GAIN_BOUNDS = (0.5, 2.0)


def check(value) -> Optional[str]:
    """``value`` if it names a gain correction (or is None), else a FormatError."""
    from ..errors import FormatError
    if value is None or value in GAIN_CORRECTIONS:
        return value
    raise FormatError(f"gain_correction={str(value)[:40]!r}: expected None or one of {', '.join(GAIN_CORRECTIONS)}")


def _columns(layer, run, in_frac: int, float_input_scale: float, step: int = 1):
    """Yield (X_q, X_f) per calibration input: (K, N) float64 im2col of the quantized
    network's dequantized input and of the float network's input of ``layer``, in the units
    the float weights multiply (every ``step``-th output position)."""
    from .sequential import conv_columns
    deq = float(2.0 ** -in_frac)
    for xs_f, xs_q in zip(run.inputs(layer, "float"), run.inputs(layer, "fixed")):
        cq = conv_columns(layer, xs_q[0], step)
        cq *= deq
        cf = conv_columns(layer, xs_f[0], step)
        if float_input_scale != 1.0:
            cf *= float_input_scale
        yield cq, cf


def layer_moments(layer, run, in_frac: int, float_input_scale: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
    """(H, C): ``X_q X_q^T`` and ``X_f X_q^T`` (K x K) over all calibration positions,
    divided by their number."""
    k = layer.kernel_volume
    h = np.zeros((k, k))
    c = np.zeros((k, k))
    n = 0
    for cq, cf in _columns(layer, run, in_frac, float_input_scale):
        h += cq @ cq.T
        c += cf @ cq.T
        n += cq.shape[1]
    n = max(n, 1)
    return h / n, c / n


def asym_target(w: np.ndarray, h: np.ndarray, c: np.ndarray, damp: float) -> np.ndarray:
    """``w + w (C - H) (H + lambda I)^-1`` (M, K), ``lambda = damp * mean(diag H)``; dead
    input positions (zero diagonal) get no correction."""
    w = np.asarray(w, np.float64)
    live = np.diag(h) > 0
    out = w.copy()
    if not live.any():
        return out
    hl = h[np.ix_(live, live)].copy()
    if damp > 0:
        hl[np.diag_indices(hl.shape[0])] += damp * float(np.mean(np.diag(hl)))
    d = (c - h)[np.ix_(live, live)]                  # (C - H) restricted to live positions
    rhs = w[:, live] @ d                             # (M, K_live)
    try:
        corr = np.linalg.solve(hl, rhs.T).T          # H symmetric: rhs (H + lambda I)^-1
    except np.linalg.LinAlgError:
        corr = rhs @ np.linalg.pinv(hl)
    out[:, live] += corr
    return out


#: The slopes are measured on at most about this many output positions per layer (every
#: k-th position of every calibration input; a per-channel scalar needs no more).
GAIN_POSITIONS = 1 << 18


def channel_gains(layer, run, in_frac: int, float_input_scale: float, w: np.ndarray, q_deq: np.ndarray
                  ) -> np.ndarray:
    """Per output channel, the least-squares slope of ``q_deq X_q`` on ``w X_f`` (centred)
    over the calibration positions (at most about :data:`GAIN_POSITIONS`, evenly spaced);
    1 where the float output does not vary."""
    m = w.shape[0]
    oh, ow = layer.out_shape[1:]
    step = max(1, (len(run) * oh * ow) // GAIN_POSITIONS)
    s_f = np.zeros(m)
    s_q = np.zeros(m)
    s_ff = np.zeros(m)
    s_qf = np.zeros(m)
    n = 0
    for cq, cf in _columns(layer, run, in_frac, float_input_scale, step):
        zf = w @ cf
        zq = q_deq @ cq
        s_f += zf.sum(axis=1)
        s_q += zq.sum(axis=1)
        s_ff += (zf * zf).sum(axis=1)
        s_qf += (zq * zf).sum(axis=1)
        n += cf.shape[1]
    n = max(n, 1)
    var_f = s_ff / n - (s_f / n) ** 2
    cov = s_qf / n - (s_f / n) * (s_q / n)
    ok = var_f > 1e-12 * max(float(var_f.max(initial=0.0)), 1e-300)
    g = np.where(ok, cov / np.where(ok, var_f, 1.0), 1.0)
    return np.where((g >= GAIN_BOUNDS[0]) & (g <= GAIN_BOUNDS[1]), g, 1.0)


def correct_layer(kind: str, layer, run, w: np.ndarray, w_frac: np.ndarray, in_frac: int,
                  float_input_scale: float, round_fn: Callable[[np.ndarray, Optional[np.ndarray]], np.ndarray],
                  *, damp: float, progress: bool = False, hessian: bool = True) -> np.ndarray:
    """Integer weights (M, K) of ``layer`` with gain correction ``kind`` ("asym"/"gain").

    ``w`` (M, K): the folded float weights multiplying the dequantized integer input;
    ``round_fn(target, h)`` rounds a target (M, K) at the layer's formats, given the input
    Hessian ``h`` (``hessian=False``: the rounding does not use it, and the ``"gain"``
    correction passes None instead of measuring it)."""
    scale = np.exp2(-np.asarray(w_frac, np.float64)).reshape(-1, 1)
    label = f"gain correction: layer {layer.index} ({kind})"
    if kind == "asym":
        h, c = layer_moments(layer, run, in_frac, float_input_scale)
        target = asym_target(w, h, c, damp)
        q = round_fn(target, h)
        if progress:
            rel = np.linalg.norm(target - w) / max(np.linalg.norm(w), 1e-300)
            print(f"{label}: target moved {rel:.4f} of |w|", file=sys.stderr, flush=True)
        return q
    # "gain": per-channel slope, re-round w / g
    from .gptq import layer_hessian
    h = layer_hessian(layer, run) * float(2.0 ** (-2 * in_frac)) if hessian else None
    q = round_fn(w, h)
    g = channel_gains(layer, run, in_frac, float_input_scale, w, q * scale)
    best_q, best_g = q, g
    g0 = g
    target = np.asarray(w, np.float64)
    for _ in range(GAIN_ITERS):
        if float(np.abs(best_g - 1.0).max()) < 1e-3:
            break
        target = target / g[:, None]
        q = round_fn(target, h)
        g = channel_gains(layer, run, in_frac, float_input_scale, w, q * scale)
        better = np.abs(g - 1.0) < np.abs(best_g - 1.0)
        best_q = np.where(better[:, None], q, best_q)
        best_g = np.where(better, g, best_g)
    if progress:
        print(f"{label}: median slope {np.median(g0):.4f} -> {np.median(best_g):.4f} "
              f"(max |1 - g| {float(np.abs(g0 - 1).max()):.4f} -> {float(np.abs(best_g - 1).max()):.4f})",
              file=sys.stderr, flush=True)
    return best_q


def nearest_round(w: np.ndarray, w_frac: np.ndarray, bits: int) -> np.ndarray:
    scale = np.exp2(-np.asarray(w_frac, np.float64)).reshape(-1, 1)
    return np.clip(fp.round_half_up_float(np.asarray(w, np.float64) / scale), fp.qmin(bits), fp.qmax(bits)
                   ).astype(np.int64)
