"""Adaptive rounding (AdaRound) at MDFI's power-of-two weight formats.

Round-to-nearest treats every weight alone.  AdaRound (Nagel et al. 2020, "Up or Down?
Adaptive Rounding for Post-Training Quantization", ICML) chooses, per weight, whether to
round down or up so that the *layer's output* on calibration data is reconstructed best.
Each weight ``w`` at step ``s`` becomes ``s * (floor(w/s) + h(V))`` with the rectified
sigmoid ``h(V) = clip(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)`` (zeta 1.1, gamma -0.1),
``V`` is learned with Adam on

    reconstruction error + lambda * sum(1 - |2 h(V) - 1| ** beta)

where the regulariser, with ``beta`` annealed from 20 to 2 after a warm-up (20 % of the
iterations without it), drives every ``h`` to 0 or 1; the result is ``floor + [h >= 1/2]``.

MDFI's adaptation: the formats stay what they are (a power-of-two ``w_frac`` per output
channel, or per layer); only the integers change, each one the floor or the ceiling of
``w / step`` (or the format's bound where ``w`` lies outside it), so the integer semantics,
the golden model and the C engine are untouched.  The layer's input is what the already
quantized network really feeds it (dequantized integers), the target is the float
network's output of the float input: the paper's *asymmetric* reconstruction, which also
compensates the error made upstream.  By default the error is measured after the layer's
activation (leaky/relu; ``mode="post"``, the paper's choice), or on the pre-activation
(``mode="pre"``).  Each output channel's error is divided by its round-to-nearest error, so
one ``lambda`` suits every layer.  Positions: a pool of at most :data:`POOL_POSITIONS`
output pixels sampled from the calibration inputs, and a random batch of :data:`BATCH` of
them per iteration, so yolov3-tiny takes minutes.

Guarantee (as :mod:`mdfi.quant.gptq`): per output channel the learned rounding replaces
round-to-nearest only where it lowers the reconstruction error on the whole pool.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import fixedpoint as fp
from ..darknet.activations import LEAKY_SLOPE

ZETA, GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class AdaRoundSettings:
    """``iters`` Adam steps per layer, ``batch`` output positions per step, ``reg`` the
    regulariser's weight (per channel, relative to its normalised reconstruction error),
    ``lr`` Adam's step size, ``warmup`` the fraction of steps without the regulariser,
    ``beta`` its start and end exponents, ``mode`` "post" (after the activation) or "pre",
    ``inputs`` what the layer is fed while its rounding is learned: "quantized" (what the
    already quantized network feeds it: the paper's asymmetric reconstruction) or "float"
    (the float network's input of the layer: the symmetric one; it compensates nothing
    upstream, and measured worse on yolov3-tiny -- round 17b, docs/quantization.md)."""
    iters: int = 300
    batch: int = 512
    reg: float = 0.01
    lr: float = 1e-2
    warmup: float = 0.2
    beta: tuple = (20.0, 2.0)
    mode: str = "post"
    seed: int = 0
    inputs: str = "quantized"


def settings_from(opts) -> AdaRoundSettings:
    """:class:`AdaRoundSettings` from a mapping of some of its fields (None: the defaults);
    unknown fields or values out of range are refused."""
    from ..errors import FormatError
    st = build_settings(AdaRoundSettings, opts, "adaround")
    if (int(st.iters) != st.iters or st.iters < 1 or int(st.batch) != st.batch or st.batch < 1 or st.reg < 0
            or st.lr <= 0 or not 0 <= st.warmup < 1 or len(st.beta) != 2 or min(st.beta) <= 1
            or st.mode not in ("post", "pre") or st.inputs not in ("quantized", "float")):
        raise FormatError(f"adaround settings out of range: {st}")
    return st


def build_settings(cls, opts, what: str):
    """``cls`` (a settings dataclass) from a mapping of some of its fields (None: the
    defaults); unknown fields are refused with one line, ``beta`` becomes a tuple."""
    from dataclasses import fields
    from ..errors import FormatError
    opts = dict(opts or {})
    known = {f.name for f in fields(cls)}
    bad = sorted(set(opts) - known)
    if bad:
        raise FormatError(f"{what} settings: unknown {', '.join(map(str, bad))} (known: {', '.join(sorted(known))})")
    if "beta" in opts:
        opts["beta"] = tuple(float(b) for b in opts["beta"])
    return cls(**opts)


#: Output positions kept per layer (sampled evenly over the calibration inputs).
POOL_POSITIONS = 32768
#: ... and at most this many bytes for the two float32 column pools of a layer.
POOL_BYTES = 256 << 20


def rect_sigmoid(v: np.ndarray) -> np.ndarray:
    return np.clip(1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def init_rounding(w: np.ndarray, w_frac: np.ndarray, bits: int):
    """(scale (M, 1), nearest (M, K), free (M, K) bool, base (M, K) float32, V (M, K) float32)
    for float weights ``w`` (M, K) at ``Q(bits, w_frac[m])``: ``free`` where both the floor and
    the ceiling of ``w / scale`` are in the format, ``base`` the floor (clipped elsewhere), and
    ``V`` the rectified sigmoid's parameter that reproduces the float weight."""
    w = np.asarray(w, np.float64)
    scale = np.exp2(-np.asarray(w_frac, np.float64)).reshape(w.shape[0], 1)
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    r = w / scale
    fl = np.floor(r)
    nearest = np.clip(fp.round_half_up_float(r), lo, hi)
    free = (fl >= lo) & (fl < hi)                    # both floor and ceil are in the format
    base = np.where(free, fl, np.clip(fl, lo, hi)).astype(np.float32)
    rest = np.clip(r - fl, 1e-4, 1 - 1e-4)
    v = np.where(free, -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0), 0.0).astype(np.float32)
    return scale, nearest, free, base, v


def reg_grad(h: np.ndarray, beta: float) -> np.ndarray:
    """d/dh of ``1 - |2h - 1| ** beta`` (the regulariser per weight)."""
    t = 2.0 * h - 1.0
    return (-2.0 * beta) * np.copysign(np.abs(t) ** (beta - 1.0), t)


def beta_at(st, it: int) -> Optional[float]:
    """The regulariser's exponent at step ``it`` (None during the warm-up)."""
    warm = int(st.warmup * st.iters)
    if it < warm or st.reg <= 0:
        return None
    rel = (it - warm) / max(1, st.iters - warm)
    return st.beta[1] + (st.beta[0] - st.beta[1]) * (1.0 - rel)


def _act(z: np.ndarray, slope: Optional[float]) -> np.ndarray:
    return z if slope is None else np.where(z >= 0, z, np.float32(slope) * z)


def adaround_round(w: np.ndarray, w_frac: np.ndarray, bits: int, x_q: np.ndarray, x_f: Optional[np.ndarray] = None,
                   bias: Optional[np.ndarray] = None, *, slope: Optional[float] = None,
                   settings: AdaRoundSettings = AdaRoundSettings(), label: str = "",
                   progress: bool = False) -> np.ndarray:
    """Integer weights (M, K) for float weights ``w`` (M, K) at ``Q(bits, w_frac[m])``.

    ``x_q`` (N, K): N input columns (im2col rows) the quantized network feeds the layer, in
    the units ``w`` multiplies; ``x_f`` (N, K): the float network's columns at the same
    positions (default ``x_q``); ``bias`` (M,) the float bias.  The loss compares
    ``act(w_q x_q + b)`` with ``act(w x_f + b)`` where ``act`` is the identity
    (``slope=None``) or leaky with that slope (0 for relu)."""
    st = settings
    w = np.asarray(w, np.float64)
    m, k = w.shape
    n = x_q.shape[0]
    x_q = np.ascontiguousarray(x_q, np.float32)
    x_f = x_q if x_f is None else np.ascontiguousarray(x_f, np.float32)
    b = np.zeros(m, np.float32) if bias is None else np.asarray(bias, np.float32)
    scale, nearest, free, base, v = init_rounding(w, w_frac, bits)
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    freef = free.astype(np.float32)
    s32 = scale.astype(np.float32)
    wf = w.astype(np.float32)
    target = _act(x_f @ wf.T + b, slope)             # (N, M)

    def rec_rows(q):
        """Mean squared error per output channel over the whole pool."""
        z = _act(x_q @ (q.astype(np.float32) * s32).T + b, slope)
        return ((z - target) ** 2).mean(axis=0).astype(np.float64)
    e_near = rec_rows(nearest)
    norm = np.maximum(e_near, 1e-12 + 1e-9 * float(e_near.mean())).astype(np.float32)   # (M,)
    rng = np.random.default_rng(st.seed)
    mom, sec = np.zeros_like(v), np.zeros_like(v)                  # Adam's moments
    sig, h, wq, tmp, tmp2 = (np.empty_like(v) for _ in range(5))   # (M, K) work buffers, no allocation per step
    b1, b2, eps = 0.9, 0.999, 1e-8
    warm = int(st.warmup * st.iters)
    t0 = time.perf_counter()
    rec = 1.0
    slope32 = None if slope is None else np.float32(slope)
    for it in range(st.iters):
        idx = rng.integers(0, n, st.batch) if n > st.batch else slice(None)
        xb = x_q[idx]                                 # (B, K)
        tb = target[idx]                              # (B, M)
        np.negative(v, out=sig)
        np.exp(sig, out=sig)
        sig += 1.0
        np.reciprocal(sig, out=sig)                   # sigmoid(V)
        np.multiply(sig, np.float32(ZETA - GAMMA), out=h)
        h += np.float32(GAMMA)
        np.maximum(h, 0.0, out=h)
        np.minimum(h, 1.0, out=h)                     # h(V)
        np.multiply(freef, h, out=wq)
        wq += base
        wq *= s32                                     # the relaxed weights (M, K)
        z = xb @ wq.T
        z += b                                        # (B, M)
        if slope32 is None:
            d = z - tb
            gz = d
        else:
            neg = z < 0
            d = np.where(neg, slope32 * z, z) - tb
            gz = np.where(neg, slope32 * d, d)
        rec = float(((d * d).mean(axis=0) / norm).mean())
        gz *= (2.0 / (xb.shape[0] * norm)).astype(np.float32)[None, :]   # d(sum_m rec_m / norm_m) / dz
        gh = gz.T @ xb                                # (M, K)
        gh *= s32                                     # d/dh
        if it >= warm and st.reg > 0:
            rel = (it - warm) / max(1, st.iters - warm)
            beta = st.beta[1] + (st.beta[0] - st.beta[1]) * (1.0 - rel)
            np.multiply(h, 2.0, out=tmp)
            tmp -= 1.0                                # t = 2h - 1
            np.abs(tmp, out=tmp2)
            np.power(tmp2, np.float32(beta - 1.0), out=tmp2)
            np.copysign(tmp2, tmp, out=tmp2)
            tmp2 *= np.float32(st.reg / k * 2.0 * beta)
            gh -= tmp2                                # d/dh of reg/K * (1 - |2h - 1|^beta)
        np.subtract(1.0, sig, out=tmp)
        tmp *= sig
        tmp *= np.float32(ZETA - GAMMA)               # dh/dV where h is not clipped
        np.multiply(tmp, h > 0, out=tmp)
        np.multiply(tmp, h < 1, out=tmp)
        gh *= tmp                                     # d/dV (weights that are not free: ignored)
        mom *= b1
        np.multiply(gh, 1 - b1, out=tmp)
        mom += tmp
        sec *= b2
        np.multiply(gh, gh, out=tmp)
        tmp *= 1 - b2
        sec += tmp
        np.multiply(sec, np.float32(1.0 / (1 - b2 ** (it + 1))), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += eps
        np.divide(mom, tmp, out=tmp)
        tmp *= np.float32(st.lr / (1 - b1 ** (it + 1)))
        v -= tmp
        if progress and (it + 1) % max(1, st.iters // 4) == 0:
            print(f"adaround: {label}{m}x{k}, {n} positions: step {it + 1}/{st.iters}, relaxed reconstruction "
                  f"{rec:.3f} of nearest's ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    q = np.clip(base.astype(np.float64) + free * (v >= 0), lo, hi)
    better = rec_rows(q) <= e_near
    if progress:
        tot = rec_rows(np.where(better[:, None], q, nearest)).sum() / max(e_near.sum(), 1e-30)
        print(f"adaround: {label}kept for {int(better.sum())}/{m} channels; pool error {tot:.3f} of nearest's",
              file=sys.stderr, flush=True)
    return np.where(better[:, None], q, nearest).astype(np.int64)


def layer_pools(layer, run, float_input_scale: float, in_frac: int, positions: int = POOL_POSITIONS,
                seed: int = 0):
    """(x_q, x_f): (N, K) float32 im2col rows of the layer's integer input (dequantized)
    and of the float network's input at the same output positions, at most ``positions``
    of them (and :data:`POOL_BYTES`), sampled evenly over the calibration inputs."""
    from .sequential import conv_columns
    k = layer.kernel_volume
    xs_f, xs_q = run.inputs(layer, "float"), run.inputs(layer, "fixed")
    cap = max(1, min(positions, POOL_BYTES // (8 * k)))
    per = max(1, cap // max(1, len(xs_q)))
    rng = np.random.default_rng(seed)
    pq, pf = [], []
    deq = float(2.0 ** -in_frac)
    for f, q in zip(xs_f, xs_q):
        cq = conv_columns(layer, q[0])
        cf = conv_columns(layer, f[0])
        npos = cq.shape[1]
        idx = np.arange(npos) if npos <= per else np.sort(rng.choice(npos, per, replace=False))
        pq.append((cq[:, idx] * deq).T.astype(np.float32))
        pf.append((cf[:, idx] * float_input_scale).T.astype(np.float32))
    return np.concatenate(pq), np.concatenate(pf)


def adaround_layer(layer, run, w_float: np.ndarray, b_float: np.ndarray, w_frac: np.ndarray, wbits: int,
                   in_frac: int, float_input_scale: float = 1.0,
                   settings: Optional[AdaRoundSettings] = None) -> np.ndarray:
    """AdaRound integers (M, K) of a convolution on the calibration run's inputs.
    ``w_float`` (M, K), ``b_float`` (M,): the folded float parameters multiplying the
    dequantized integer input (``x_q * 2**-in_frac``); the float network's input is
    ``float_input_scale`` times smaller (255 for the pixel input)."""
    st = settings or AdaRoundSettings()
    x_q, x_f = layer_pools(layer, run, float_input_scale, in_frac, seed=st.seed)
    if st.inputs == "float":
        x_q = x_f
    act = layer.activation
    slope = None
    if st.mode == "post" and act in ("leaky", "relu"):
        slope = float(LEAKY_SLOPE) if act == "leaky" else 0.0
    return adaround_round(w_float, w_frac, wbits, x_q, x_f, b_float, slope=slope, settings=st,
                          label=f"layer {layer.index} ", progress=run.progress)
