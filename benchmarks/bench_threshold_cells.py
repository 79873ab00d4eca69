"""Which head cells cross the 0.25 threshold, by their float objectness (yolov3-tiny, selection
photos only).

For every anchor of every head cell: the float and fixed-point objectness logits and the
confidence (objectness x best class probability, as the decoded detections before NMS).  By
float objectness bucket, from background (< 0.01) to objects (> 0.5): the number of cells, the
mean error of the objectness logit (fixed - float), and how many cells cross 0.25 upwards
(float < 0.25 <= fixed: candidate extra detections) and downwards (candidate lost ones).  It
answers whether the extra detections a correction adds come from background cells whose
objectness rises (a head-bias effect) or from cells that float already puts near the
threshold.  docs/quantization.md, round 7.

    python benchmarks/bench_threshold_cells.py A.mdfi B.mdfi --split val,val4 --person-sets DIR
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BUCKETS = ((0.0, 0.01), (0.01, 0.05), (0.05, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 1.01))
THRESH = 0.25


def head_logits(outs, heads, srcs, frac=None):
    """Per head: (anchors, entries, H, W) float64 logits from a layer-output list (``frac``:
    per source layer, the fixed-point fraction bits, or None for float outputs)."""
    res = []
    for l, s in zip(heads, srcs):
        z = np.asarray(outs[s], np.float64)
        if frac is not None:
            z = z * 2.0 ** -frac[s]
        res.append(z.reshape(l.n, l.entries, *z.shape[1:]))
    return res


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def cell_table(zf_all, zq_all):
    """Rows (bucket, cells, mean objectness-logit error, up-crossings, down-crossings) over
    lists of per-head logit arrays (float, fixed)."""
    acc = {b: [0, 0.0, 0, 0] for b in BUCKETS}
    for zf, zq in zip(zf_all, zq_all):
        pf, pq = sigmoid(zf[:, 4]), sigmoid(zq[:, 4])
        cf = pf * sigmoid(zf[:, 5:]).max(axis=1)
        cq = pq * sigmoid(zq[:, 5:]).max(axis=1)
        for lo, hi in BUCKETS:
            m = (pf >= lo) & (pf < hi)
            a = acc[(lo, hi)]
            a[0] += int(m.sum())
            a[1] += float((zq[:, 4] - zf[:, 4])[m].sum())
            a[2] += int((m & (cf < THRESH) & (cq >= THRESH)).sum())
            a[3] += int((m & (cf >= THRESH) & (cq < THRESH)).sum())
    return [(b, n, s / max(n, 1), up, down) for b, (n, s, up, down) in acc.items()]


def main(argv=None) -> int:
    import bench_accuracy as ba
    ap = ba.selection_parser(__doc__.split("\n\n")[0])
    args = ap.parse_args(argv)

    from mdfi.engine import FixedEngine
    from mdfi.model import _float_network
    from mdfi.quant import modelfile
    from mdfi.quant.quantize import input_to_u8

    network, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    heads = [l for l in network.output_layers() if l.kind == "yolo"]
    srcs = [l.inputs[0] for l in heads]
    splits, xs = ba.selection_tensors(args, network, names)
    zf_all = []
    for x in xs:
        keep = {}
        network.forward_float(x, keep="needed", hook=lambda i, o: keep.__setitem__(i, o) if i in srcs else None)
        zf_all.append(head_logits(keep, heads, srcs))
    print(f"{'+'.join(splits)}: {len(xs)} images, {sum(z.shape[0] * z.shape[2] * z.shape[3] for z in zf_all[0])} "
          f"anchor cells per image")
    for path in args.models:
        qm = modelfile.load(path)
        eng = FixedEngine(qm, "c", threads=1)
        frac = {s: qm.layers[s].out_fmt.frac for s in srcs}
        zf_flat, zq_flat = [], []
        for x, zf in zip(xs, zf_all):
            outs = eng.run(input_to_u8(x), keep="all")
            zf_flat += zf
            zq_flat += head_logits(outs, heads, srcs, frac)
        print(f"\n{os.path.basename(path)}")
        print(f"{'float objectness':<16} {'cells':>8} {'d obj logit':>11} {'up 0.25':>8} {'down 0.25':>9}")
        for (lo, hi), n, d, up, down in cell_table(zf_flat, zq_flat):
            print(f"[{lo:.2f}, {min(hi, 1):.2f}){'':<4} {n:>8} {d:>+11.3f} {up:>8} {down:>9}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
