"""Weight rounding with error feedback (GPTQ) at MDFI's power-of-two weight formats.

Round-to-nearest treats every weight alone.  GPTQ (Frantar et al. 2023, "GPTQ: Accurate
Post-Training Quantization for Generative Pre-trained Transformers", after Frantar & Alistarh
2022, "Optimal Brain Compression") rounds the weights of a layer one input position at a
time and spreads each rounding error over the positions not yet rounded, weighted by the
inverse of the Hessian ``H = X X^T`` of the layer's squared output error on calibration
inputs ``X``.  Here ``X`` is the *integer* input the quantized network really feeds the
layer (dequantized), so upstream errors are part of what is compensated.  The formats stay
MDFI's: every output channel keeps its power-of-two ``w_frac``; only the integers change,
clipped to the width.  Positions are visited in decreasing order of ``H``'s diagonal
("act order").

Guarantee: per output channel the result replaces round-to-nearest only where it lowers
the calibration reconstruction error ``(w - q) H (w - q)^T`` (so it is never worse on the
calibration data; on new data it is measured in docs/quantization.md).
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp

#: Dampening added to H's diagonal, relative to its mean (as in GPTQ).
DAMP = 0.01
#: Columns processed per block (lazy batch updates).
BLOCK = 128


def layer_hessian(layer, run) -> np.ndarray:
    """``sum X X^T`` over the calibration inputs: X the im2col of the layer's integer input,
    dequantized (K x K, float64), divided by the number of output pixels."""
    from .sequential import conv_columns
    k = layer.kernel_volume
    h = np.zeros((k, k))
    n = 0
    for xs in run.inputs(layer, "fixed"):
        cols = conv_columns(layer, xs[0])
        h += cols @ cols.T
        n += cols.shape[1]
    return h / max(n, 1)


def gptq_round(w: np.ndarray, w_frac: np.ndarray, bits: int, h: np.ndarray, *, damp: float = DAMP,
               block: int = BLOCK) -> np.ndarray:
    """Integer weights (M, K) for float weights ``w`` (M, K) at ``Q(bits, w_frac[m])`` that
    approximately minimise ``(w - q*2**-f) H (w - q*2**-f)^T`` per row; ``h`` (K, K) is the
    input Hessian in the units ``w`` multiplies.  Never worse than round-to-nearest per row
    under ``h`` (the better of the two is kept)."""
    w = np.asarray(w, np.float64)
    m, k = w.shape
    scale = np.exp2(-np.asarray(w_frac, np.float64)).reshape(m, 1)
    lo, hi = fp.qmin(bits), fp.qmax(bits)
    nearest = np.clip(fp.round_half_up_float(w / scale), lo, hi)
    h = np.array(h, np.float64, copy=True)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h[np.diag_indices(k)] += damp * float(np.mean(np.diag(h)))
    perm = np.argsort(-np.diag(h), kind="stable")
    inv_perm = np.argsort(perm)
    hp = h[np.ix_(perm, perm)]
    W = w[:, perm] / scale                      # work in integer units of each row
    W[:, dead[perm]] = 0.0
    try:
        hinv = np.linalg.cholesky(np.linalg.inv(hp)).T   # upper triangular
    except np.linalg.LinAlgError:
        return nearest.astype(np.int64)
    Q = np.zeros_like(W)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        W1 = W[:, i1:i2].copy()
        E1 = np.zeros_like(W1)
        H1 = hinv[i1:i2, i1:i2]
        for j in range(i2 - i1):
            col = W1[:, j]
            q = np.clip(fp.round_half_up_float(col), lo, hi)
            Q[:, i1 + j] = q
            e = (col - q) / H1[j, j]
            W1[:, j:] -= e[:, None] * H1[j, j:][None, :]
            E1[:, j] = e
        W[:, i2:] -= E1 @ hinv[i1:i2, i2:]
    q = Q[:, inv_perm]

    def err(qq):
        d = w - qq * scale
        return ((d @ h) * d).sum(axis=1)
    better = err(q) < err(nearest)
    return np.where(better[:, None], q, nearest).astype(np.int64)


def gptq_layer(layer, run, w_float: np.ndarray, w_frac: np.ndarray, wbits: int) -> np.ndarray:
    """GPTQ integers (M, K) of a convolution on the calibration run's integer inputs."""
    h = layer_hessian(layer, run)
    return gptq_round(w_float, w_frac, wbits, h)
