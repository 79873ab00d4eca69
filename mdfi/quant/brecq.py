"""Block reconstruction (BRECQ) with dropped activation quantization (QDrop) at MDFI's
power-of-two formats.

Per-layer AdaRound (:mod:`mdfi.quant.adaround`) chooses each convolution's floor/ceil
alone.  BRECQ (Li, Gong, Tan, Yang, Hu, Zhang, Yu, Wang, Gu, "BRECQ: Pushing the Limit of
Post-Training Quantization by Block Reconstruction", ICLR 2021, arXiv:2102.05426) learns the
same rounding variables jointly for a *block* of consecutive layers, against the float
block's output, so that a layer's rounding may compensate its neighbour's.  QDrop (Wei, Gong,
Li, Liu, Yu, "QDrop: Randomly Dropping Quantization for Extremely Low-bit Post-Training
Quantization", ICLR 2022, arXiv:2203.05740) quantizes the activations inside the block
during the reconstruction, but for each element keeps the float value with probability
``p_drop`` (0.5), so the rounding learns to tolerate activation noise without over-fitting
to one noise pattern.

MDFI's adaptation (the integer semantics and the golden model are untouched; only the
integers change, each the floor or the ceiling of ``w / step`` inside the format):

* **Blocks** (:func:`blocks`): a run of consecutive layers, each the only reader of the
  previous one, made of convolutions and spatial max pools, starting and ending at a
  convolution, with at most ``convs`` (2) convolutions.  yolov3-tiny: 0-2, 4-6, 8-10, 12-13,
  14-15, 18, 21-22 (a conv whose output is read twice, or by a route, ends its block).
* **Input and target**: the block's input is what the already quantized network feeds it
  (dequantized integers), the target the float network's block output from the float input
  (asymmetric reconstruction, as :mod:`mdfi.quant.adaround`), after the last convolution's
  activation.  Inside the block every convolution's output is quantized to its own
  power-of-two format (round half up, clipped), straight-through, with QDrop's dropping;
  max pools pass the gradient to their arg-max.
* **Loss**: per output channel of the last convolution, the mean squared error divided by
  round-to-nearest's (on a fixed evaluation set of crops), summed; plus ``reg`` times that
  many channels times the mean AdaRound regulariser of each convolution (with ``beta``
  annealed 20 -> 2 after a 20 % warm-up), i.e. AdaRound's loss when the block is one layer.
* **Data**: each Adam step draws ``batch`` crops of ``crop`` x ``crop`` input pixels (whole
  maps when smaller; aligned to the block's stride) from random calibration inputs; the
  outputs within the block's receptive margin of a crop edge inside the map are left out
  of the loss (at the map's own edges the crop's zero padding is the network's).
* **Guarantee**: the learned integers of the block replace round-to-nearest only if the
  block output error on the evaluation crops (activations quantized, nothing dropped) is
  lower.

NumPy float32 only (im2col convolutions and their adjoint, col2im).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
from ..darknet.activations import LEAKY_SLOPE
from ..errors import FormatError
from .adaround import GAMMA, ZETA, beta_at, build_settings, init_rounding, rect_sigmoid, reg_grad

ACTIVATIONS = ("leaky", "relu", "linear")


@dataclass(frozen=True)
class BrecqSettings:
    """``iters`` Adam steps per block, ``batch`` crops per step of ``crop`` x ``crop`` input
    pixels, ``reg``/``lr``/``warmup``/``beta`` as AdaRound's, ``p_drop`` the probability that
    an activation inside the block keeps its float value (QDrop; 0 = always quantized, 1 =
    never), ``reg`` 10 and ``lr`` 0.05 (AdaRound's 0.01 and 0.01 leave most rounding variables
    undecided after a few hundred steps: the block's relaxed error is then far below its
    rounded one), ``convs`` the most convolutions per block (1 = per-layer reconstruction with the
    quantized activations), ``eval_crops`` the crops of the normalisation and the final check."""
    iters: int = 300
    batch: int = 8
    crop: int = 64
    reg: float = 10.0
    lr: float = 5e-2
    warmup: float = 0.2
    beta: tuple = (20.0, 2.0)
    p_drop: float = 0.5
    convs: int = 2
    eval_crops: int = 32
    seed: int = 0


def settings_from(opts) -> BrecqSettings:
    """:class:`BrecqSettings` from a mapping of some of its fields; unknown fields or values
    out of range are refused with one line."""
    st = build_settings(BrecqSettings, opts, "brecq")
    ints = (st.iters, st.batch, st.crop, st.convs, st.eval_crops)
    if (any(int(v) != v or v < 1 for v in ints) or st.crop < 4 or st.reg < 0 or st.lr <= 0
            or not 0 <= st.warmup < 1 or len(st.beta) != 2 or min(st.beta) <= 1 or not 0 <= st.p_drop <= 1):
        raise FormatError(f"brecq settings out of range: {st}")
    return st


def blocks(network, convs: int = 2) -> List[List[int]]:
    """The reconstruction blocks of ``network``: lists of layer indices (see the module)."""
    readers: Dict[int, List[int]] = {}
    for l in network.layers:
        for i in l.inputs:
            readers.setdefault(i, []).append(l.index)
    out: List[List[int]] = []
    taken = set()
    for l in network.layers:
        if l.kind != "convolutional" or l.index in taken:
            continue
        blk = [l.index]
        n = 1
        while n < convs:
            last = blk[-1]
            if readers.get(last, []) != [last + 1] or last + 1 >= len(network.layers):
                break
            nxt = network.layers[last + 1]
            if nxt.inputs != [last]:
                break
            if nxt.kind == "maxpool" and not getattr(nxt, "depth", False) and nxt.stride == nxt.stride_y:
                blk.append(nxt.index)
            elif nxt.kind == "convolutional":
                blk.append(nxt.index)
                n += 1
            else:
                break
        while network.layers[blk[-1]].kind != "convolutional":
            blk.pop()
        taken.update(blk)
        out.append(blk)
    return out


def check_network(network) -> None:
    """Refuse convolutions the block reconstruction cannot run (one line, naming the layer)."""
    for l in network.layers:
        if l.kind == "convolutional" and l.activation not in ACTIVATIONS:
            raise FormatError(f"{network.path}: layer {l.index}: weight_rounding='brecq' supports activations "
                              f"{', '.join(ACTIVATIONS)}, not {l.activation!r}")


def _slope(act: str) -> Optional[float]:
    return None if act == "linear" else (float(LEAKY_SLOPE) if act == "leaky" else 0.0)


def _im2col_batch(x: np.ndarray, layer) -> np.ndarray:
    """(B, C, H, W) -> (C*k*k, B*OH*OW) float32."""
    from ..layers.convolutional import im2col
    return np.concatenate([im2col(xb, layer.size, layer.stride, layer.padding) for xb in x], axis=1)


def _col2im_batch(g: np.ndarray, layer, shape) -> np.ndarray:
    """Adjoint of :func:`_im2col_batch`: (C*k*k, B*OH*OW) -> (B, C, H, W)."""
    b, c, h, w = shape
    k, s, p = layer.size, layer.stride, layer.padding
    oh = (h + 2 * p - k) // s + 1
    ow = (w + 2 * p - k) // s + 1
    g6 = g.reshape(c, k, k, b, oh, ow)
    out = np.zeros((c, b, h + 2 * p + s, w + 2 * p + s), np.float32)
    for ky in range(k):
        for kx in range(k):
            out[:, :, ky:ky + s * oh:s, kx:kx + s * ow:s] += g6[:, ky, kx]
    return np.ascontiguousarray(out[:, :, p:p + h, p:p + w].transpose(1, 0, 2, 3))


def _pool(x: np.ndarray, layer):
    """Darknet's max pool of (B, C, H, W): (output, flat arg-max index into the padded input)."""
    b, c, h, w = x.shape
    s, sz, pad = layer.stride, layer.size, layer.padding
    oh, ow = (h + pad - sz) // s + 1, (w + pad - sz) // s + 1
    lo = pad // 2
    hh, ww = max(h + lo, (oh - 1) * s + sz), max(w + lo, (ow - 1) * s + sz)
    xp = np.full((b, c, hh, ww), -np.inf, np.float32)
    xp[:, :, lo:lo + h, lo:lo + w] = x
    st = xp.strides
    v = np.lib.stride_tricks.as_strided(xp, (b, c, oh, ow, sz, sz), (st[0], st[1], st[2] * s, st[3] * s, st[2], st[3]))
    v = v.reshape(b, c, oh, ow, sz * sz)
    a = v.argmax(axis=-1)
    out = np.take_along_axis(v, a[..., None], -1)[..., 0]
    iy = np.arange(oh)[:, None] * s + a // sz
    ix = np.arange(ow)[None, :] * s + a % sz
    return np.ascontiguousarray(out), (iy * ww + ix, (hh, ww), lo, (h, w))


def _pool_back(g: np.ndarray, cache) -> np.ndarray:
    flat, (hh, ww), lo, (h, w) = cache
    b, c = g.shape[:2]
    out = np.zeros((b, c, hh * ww), np.float32)
    np.add.at(out, (np.arange(b)[:, None, None, None], np.arange(c)[None, :, None, None], flat), g)
    return out.reshape(b, c, hh, ww)[:, :, lo:lo + h, lo:lo + w]


class _Conv:
    """One convolution of a block: float weights, the rounding variables, Adam's moments."""

    def __init__(self, layer, w, b, ql):
        self.layer, self.ql = layer, ql
        self.wf = np.asarray(w, np.float32)
        self.b = np.asarray(b, np.float32)
        self.slope = _slope(layer.activation)
        scale, self.nearest, free, self.base, self.v = init_rounding(w, ql.w_frac, ql.wbits)
        self.free = free.astype(np.float32)
        self.s32 = scale.astype(np.float32)
        self.lo, self.hi = fp.qmin(ql.wbits), fp.qmax(ql.wbits)
        self.fmt = ql.out_fmt
        self.m1 = np.zeros_like(self.v)
        self.m2 = np.zeros_like(self.v)

    def hard(self) -> np.ndarray:
        return np.clip(self.base + self.free * (self.v >= 0), self.lo, self.hi).astype(np.int64)

    def weights(self, which):
        """(M, K) float32 weights: "float", "nearest", "hard" or "soft" (with h)."""
        if which == "float":
            return self.wf, None
        if which == "nearest":
            return (self.nearest * self.s32).astype(np.float32), None
        if which == "hard":
            return (self.hard() * self.s32).astype(np.float32), None
        h = rect_sigmoid(self.v).astype(np.float32)
        return ((self.base + self.free * h) * self.s32).astype(np.float32), h

    def dh_dv(self, h: np.ndarray) -> np.ndarray:
        """dh/dV where h is not clipped and the weight is free (0 elsewhere)."""
        sig = 1.0 / (1.0 + np.exp(-self.v))
        return (ZETA - GAMMA) * sig * (1.0 - sig) * ((h > 0) & (h < 1)) * self.free

    def adam(self, g: np.ndarray, it: int, lr: float) -> None:
        b1, b2 = 0.9, 0.999
        self.m1 = b1 * self.m1 + (1 - b1) * g
        self.m2 = b2 * self.m2 + (1 - b2) * g * g
        self.v -= (lr / (1 - b1 ** (it + 1))) * self.m1 / (np.sqrt(self.m2 / (1 - b2 ** (it + 1))) + 1e-8)


def _quantize_act(a: np.ndarray, fmt, keep: Optional[np.ndarray]):
    """(value, straight-through gradient mask) of ``a`` quantized to ``fmt`` where ``keep``
    (QDrop's mask) is False."""
    sc = float(2.0 ** fmt.frac)
    q = fp.round_half_up_float(a * sc) + fmt.zero
    inside = (q >= fp.qmin(fmt.bits)) & (q <= fp.qmax(fmt.bits))
    aq = ((np.clip(q, fp.qmin(fmt.bits), fp.qmax(fmt.bits)) - fmt.zero) / sc).astype(np.float32)
    if keep is None:
        return aq, inside
    return np.where(keep, a, aq), keep | inside


def _forward(x, net_layers, convs, which, rng=None, p_drop=0.0, quantize=True):
    """Run a block on (B, C, H, W) ``x``; returns (output, caches for :func:`_backward`)."""
    caches = []
    ci = 0
    for layer in net_layers:
        if layer.kind == "maxpool":
            x, pc = _pool(x, layer)
            caches.append(("pool", pc))
            continue
        cv = convs[ci]
        ci += 1
        wm, h = cv.weights(which)
        cols = _im2col_batch(x, layer)
        b = x.shape[0]
        z = (wm @ cols + cv.b[:, None]).reshape(len(cv.b), b, -1)
        oh = (x.shape[2] + 2 * layer.padding - layer.size) // layer.stride + 1
        z = z.reshape(len(cv.b), b, oh, -1).transpose(1, 0, 2, 3)
        a = z if cv.slope is None else np.where(z >= 0, z, np.float32(cv.slope) * z)
        gmask = None
        if quantize and ci < len(convs):
            keep = rng.random(a.shape) < p_drop if (rng is not None and p_drop > 0) else None
            a, gmask = _quantize_act(a, cv.fmt, keep)
        caches.append(("conv", cv, x.shape, cols, z, h, gmask))
        x = a.astype(np.float32)
    return x, caches


def _backward(g, caches):
    """Gradients d/dV (list per convolution, in block order) of the loss whose gradient with
    respect to the block output is ``g``."""
    grads = []
    for c in reversed(caches):
        if c[0] == "pool":
            g = _pool_back(g, c[1])
            continue
        _, cv, xshape, cols, z, h, gmask = c
        if gmask is not None:
            g = g * gmask
        if cv.slope is not None:
            g = np.where(z >= 0, g, np.float32(cv.slope) * g)
        m = z.shape[1]
        g2 = g.transpose(1, 0, 2, 3).reshape(m, -1)
        gw = g2 @ cols.T
        if len(grads) < sum(1 for q in caches if q[0] == "conv") - 1:
            wm = cv.weights("soft")[0]
            g = _col2im_batch(wm.T @ g2, cv.layer, xshape)
        grads.append((gw * cv.s32 * cv.dh_dv(h)).astype(np.float32))
    return grads[::-1]


class _Crops:
    """Aligned crops of the block's inputs (quantized and float) and the loss mask."""

    def __init__(self, xs_q, xs_f, net_layers, crop, rng):
        self.xs_q, self.xs_f, self.rng = xs_q, xs_f, rng
        self.align = 1
        self.margin = 1
        for l in net_layers:
            self.align *= l.stride
            self.margin += l.padding if l.kind == "convolutional" else l.size - 1
        _, self.h, self.w = xs_q[0].shape
        self.ch = self._side(self.h, crop)
        self.cw = self._side(self.w, crop)

    def _side(self, n, crop):
        return n if n <= crop else max(self.align, crop // self.align * self.align)

    def draw(self, b):
        idx = self.rng.integers(0, len(self.xs_q), b)
        ys = self.rng.integers(0, (self.h - self.ch) // self.align + 1, b) * self.align
        xs = self.rng.integers(0, (self.w - self.cw) // self.align + 1, b) * self.align
        q = np.stack([self.xs_q[i][:, y:y + self.ch, x:x + self.cw] for i, y, x in zip(idx, ys, xs)])
        f = np.stack([self.xs_f[i][:, y:y + self.ch, x:x + self.cw] for i, y, x in zip(idx, ys, xs)])
        return q.astype(np.float32), f.astype(np.float32), ys, xs

    def mask(self, ys, xs, oh, ow):
        """(B, 1, OH, OW) float32: 1 where the crop's output equals the full map's."""
        r = self.margin
        mk = np.ones((len(ys), 1, oh, ow), np.float32)
        for n, (y, x) in enumerate(zip(ys, xs)):
            if y > 0:
                mk[n, :, :r] = 0
            if y + self.ch < self.h:
                mk[n, :, oh - r:] = 0
            if x > 0:
                mk[n, :, :, :r] = 0
            if x + self.cw < self.w:
                mk[n, :, :, ow - r:] = 0
        return mk


def reconstruct_block(net_layers, convs: Sequence[_Conv], xs_q, xs_f, settings: BrecqSettings,
                      label: str = "", progress: bool = False) -> Dict[int, np.ndarray]:
    """Integer weights {layer index: (M, K)} of the block's convolutions (see the module).
    ``xs_q``/``xs_f``: per calibration input, the block's input (C, H, W) from the quantized
    network (dequantized) and from the float network, in the units the weights multiply."""
    st = settings
    rng = np.random.default_rng(st.seed)
    crops = _Crops(xs_q, xs_f, net_layers, st.crop, rng)
    ev = crops.draw(st.eval_crops)

    def err(which, data):
        q, f, ys, xs = data
        tgt, _ = _forward(f, net_layers, convs, "float", quantize=False)
        out, _ = _forward(q, net_layers, convs, which)
        mk = crops.mask(ys, xs, *out.shape[2:])
        return (((out - tgt) ** 2) * mk).sum(axis=(0, 2, 3)) / max(float(mk.sum()), 1.0)

    e_near = err("nearest", ev).astype(np.float64)
    norm = np.maximum(e_near, 1e-12 + 1e-9 * float(e_near.mean())).astype(np.float32)
    mlast = len(convs[-1].b)
    t0 = time.perf_counter()
    for it in range(st.iters):
        q, f, ys, xs = crops.draw(st.batch)
        tgt, _ = _forward(f, net_layers, convs, "float", quantize=False)
        out, caches = _forward(q, net_layers, convs, "soft", rng=rng, p_drop=st.p_drop)
        mk = crops.mask(ys, xs, *out.shape[2:])
        cnt = max(float(mk.sum()), 1.0)
        d = (out - tgt) * mk
        rec = float(((d * d).sum(axis=(0, 2, 3)) / cnt / norm).mean())
        g = d * (2.0 / (cnt * norm))[None, :, None, None]
        grads = _backward(g.astype(np.float32), caches)
        beta = beta_at(st, it)
        for cv, gv in zip(convs, grads):
            if beta is not None:
                h = rect_sigmoid(cv.v)
                gv = gv + (st.reg * mlast / cv.v.size) * reg_grad(h, beta) * cv.dh_dv(h)
            cv.adam(gv.astype(np.float32), it, st.lr)
        if progress and (it + 1) % max(1, st.iters // 4) == 0:
            print(f"brecq: {label}step {it + 1}/{st.iters}, relaxed reconstruction {rec:.3f} of nearest's "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    e_hard = err("hard", ev).astype(np.float64)
    ratio = float(e_hard.sum() / max(e_near.sum(), 1e-30))
    keep = ratio < 1.0
    if progress:
        print(f"brecq: {label}block error {ratio:.3f} of nearest's on {st.eval_crops} crops: "
              f"{'learned rounding kept' if keep else 'nearest kept'}", file=sys.stderr, flush=True)
    return {cv.ql.index: (cv.hard() if keep else cv.nearest.astype(np.int64)) for cv in convs}


def brecq_block(network, blk: Sequence[int], qls: Dict[int, object], run, in_scale: float,
                settings: BrecqSettings) -> Dict[int, np.ndarray]:
    """Integers of block ``blk`` (layer indices) of ``network`` on the calibration run's
    inputs.  ``qls``: the round-to-nearest quantized convolutions of the block (formats);
    ``in_scale``: 1/255 when the block reads the pixel input (its weights multiply pixels)."""
    first = network.layers[blk[0]]
    net_layers = [network.layers[j] for j in blk]
    convs = []
    for j in blk:
        l = network.layers[j]
        if l.kind != "convolutional":
            continue
        w, b = l.folded_float_params()
        w = w.reshape(l.filters, -1) * (in_scale if j == blk[0] else 1.0)
        convs.append(_Conv(l, w, b, qls[j]))
    deq = float(2.0 ** -qls[blk[0]].in_fmt.frac)
    xs_q = [np.asarray(x[0], np.float32) * np.float32(deq) for x in run.inputs(first, "fixed")]
    xs_f = [np.asarray(x[0], np.float32) * np.float32(1.0 / in_scale) for x in run.inputs(first, "float")]
    label = f"block {'-'.join(map(str, blk))} "
    return reconstruct_block(net_layers, convs, xs_q, xs_f, settings, label=label, progress=run.progress)
