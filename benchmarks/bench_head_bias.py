"""Where the low-width confidence bias comes from: yolov3-tiny fixed point vs float, layer by
layer and at the heads' object cells, on the selection photos only.

    python benchmarks/bench_head_bias.py M/gptq-w4a8_w8@0-*.mdfi --split val,val4

MODEL: ``.mdfi`` files of yolov3-tiny, e.g. those ``bench_accuracy.py --model-dir M`` saves.
For each model:

* **heads**: at the float network's object cells (objectness > 0.1, as
  :class:`mdfi.quant.formats.HeadObjective`), by float objectness bucket, the mean error
  (fixed - float) of the objectness and best-class logits, and the least-squares slope of the
  fixed logit on the float one (1 = no attenuation, < 1 = the fixed point shrinks the logits,
  which a mean shift cannot undo);
* **layers**: per convolution output (after the activation), over every position of the
  images, the mean error relative to the float RMS and the slope of fixed on float, and the
  same at the positions where the float output is in its channel's top 1 % (the large
  activations that carry detections); and of the weights, the fraction outside the
  channel's format (clipped) and the median over output channels of the *gain* of the
  quantized weights along the float ones (``<w_q, w> / <w, w>``: 1 = unbiased, < 1 = the
  channel's response shrinks, and the shrinkage compounds from layer to layer).

Photo sets as bench_accuracy.py (``--sets``, ``--person-sets``, float cache ``--cache``).
``test`` is refused: this is for choosing a fix.
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BUCKETS = ((0.1, 0.25), (0.25, 0.5), (0.5, 1.01))


def slope(x, y) -> float:
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    v = x.var()
    return float(((x - x.mean()) * (y - y.mean())).mean() / v) if v > 0 else float("nan")


def value(q, fmt) -> np.ndarray:
    """The real values of a layer's output codes: ``(q - zero) * 2**-frac`` (docs/fixed-point.md;
    ``zero`` is 0 without zero points)."""
    return (np.asarray(q, np.float64) - fmt.zero) * 2.0 ** -fmt.frac


def weight_gain(layer, ql):
    """(fraction of the float weights outside their channel's format, median over output
    channels of <w_q, w> / <w, w>) of a quantized convolution."""
    w, _ = layer.folded_float_params()
    w = np.asarray(w, np.float64).reshape(layer.filters, -1)
    if layer.inputs == [-1]:                 # the first layer's integers multiply 8-bit pixels
        w = w / 255.0
    step = 2.0 ** -np.asarray(ql.w_frac, np.float64).reshape(-1, 1)
    wq = np.asarray(ql.weights, np.float64).reshape(layer.filters, -1) * step
    lo, hi = -(2 ** (ql.wbits - 1)), 2 ** (ql.wbits - 1) - 1      # the integer range of the format
    clipped = (w > (hi + 0.5) * step) | (w < (lo - 0.5) * step)
    return float(clipped.mean()), float(np.median((wq * w).sum(1) / (w * w).sum(1)))


def main(argv=None) -> int:
    import bench_accuracy as ba
    ap = ba.selection_parser(__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=int, default=3, help="layer statistics on every N-th image (default 3)")
    args = ap.parse_args(argv)

    from mdfi.engine import FixedEngine
    from mdfi.model import _float_network
    from mdfi.quant import modelfile
    from mdfi.quant.formats import HeadObjective

    network, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    splits, xs = ba.selection_tensors(args, network, names)
    obj = HeadObjective(network, xs)
    convs = [l.index for l in network.layers if l.kind == "convolutional"]
    print(f"{'+'.join(splits)}: {len(xs)} images, {obj.n_cells} object cells")
    for path in args.models:
        qm = modelfile.load(path)
        eng = FixedEngine(qm, "c", threads=1)
        cells = {b: [[], [], [], []] for b in BUCKETS}       # float obj, fixed obj, float cls, fixed cls
        lay = {i: [[], [], [], []] for i in convs}           # (float, fixed) samples, the same at the top 1 %
        for n, (x, u8, per) in enumerate(zip(xs, obj.u8, obj.cells)):
            outs = eng.run(u8, keep="all")
            for (a, r, c, k, zo, zc), l, s in zip(per, obj.heads, obj.srcs):
                if a.size == 0:
                    continue
                zq = value(outs[s], qm.layers[s].out_fmt)
                zq = zq.reshape(l.n, l.entries, *zq.shape[1:])
                p = 1.0 / (1.0 + np.exp(-zo))
                for lo, hi in BUCKETS:
                    m = (p > lo) & (p <= hi)
                    cells[(lo, hi)][0].append(zo[m])
                    cells[(lo, hi)][1].append(zq[a, 4, r, c][m])
                    cells[(lo, hi)][2].append(zc[m])
                    cells[(lo, hi)][3].append(zq[a, 5 + k, r, c][m])
            if n % args.every:
                continue
            fl = {}
            network.forward_float(x, keep="needed", hook=lambda i, o: fl.__setitem__(i, o) if i in lay else None)
            for i in convs:
                f = fl[i].astype(np.float64)
                q = value(outs[i], qm.layers[i].out_fmt)
                st = lay[i]
                idx = np.random.default_rng(n).integers(0, f.size, 20000)
                st[0].append(f.reshape(-1)[idx])
                st[1].append(q.reshape(-1)[idx])
                fc = f.reshape(f.shape[0], -1)
                top = fc >= np.quantile(fc, 0.99, axis=1, keepdims=True)
                st[2].append(fc[top])
                st[3].append(q.reshape(fc.shape)[top])
            print(f"{os.path.basename(path)}: {n + 1}/{len(xs)}", file=sys.stderr, flush=True)
        print(f"\n{os.path.basename(path)}  ({qm.describe() if hasattr(qm, 'describe') else ''})")
        print(f"{'float objectness':<18} {'cells':>6} {'d obj':>7} {'slope obj':>9} {'d cls':>7} {'slope cls':>9}")
        allc = [[], [], [], []]
        for (lo, hi), v in cells.items():
            v = [np.concatenate(t) if t else np.zeros(0) for t in v]
            for j in range(4):
                allc[j].append(v[j])
            if v[0].size:
                print(f"({lo:.2f}, {min(hi, 1):.2f}]{'':<6} {v[0].size:>6} {np.mean(v[1] - v[0]):>+7.3f} "
                      f"{slope(v[0], v[1]):>9.3f} {np.mean(v[3] - v[2]):>+7.3f} {slope(v[2], v[3]):>9.3f}")
        allc = [np.concatenate(t) for t in allc]
        print(f"{'all object cells':<18} {allc[0].size:>6} {np.mean(allc[1] - allc[0]):>+7.3f} "
              f"{slope(allc[0], allc[1]):>9.3f} {np.mean(allc[3] - allc[2]):>+7.3f} {slope(allc[2], allc[3]):>9.3f}")
        print(f"{'layer':>5} {'mean d / rms f':>14} {'slope':>7} {'top1% d/rms':>11} {'top1% slope':>11} "
              f"{'w clipped':>9} {'w gain':>7}")
        for i in convs:
            f, q, tf, tq = (np.concatenate(t) for t in lay[i])
            rms = np.sqrt(np.mean(f ** 2))
            clip, gain = weight_gain(network.layers[i], qm.layers[i])
            print(f"{i:>5} {np.mean(q - f) / rms:>+14.4f} {slope(f, q):>7.3f} {np.mean(tq - tf) / rms:>+11.4f} "
                  f"{slope(tf, tq):>11.3f} {100 * clip:>8.2f}% {gain:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
