"""What a logit gain (and shift) at the heads would do to the 8-bit default (round 17,
docs/quantization.md "A logit gain instead of a shift"): a diagnostic on the selection photos.

    python benchmarks/bench_head_gain.py --split val4,val5 --gains 1.04/1.06 1.06/1.10 1.04/1.06+0.03/0.08

The shipped 8-bit yolov3-tiny default runs in fixed point up to its head inputs; those are
dequantized (``(q - zero) * 2**-frac``), the objectness logits multiplied by ``g_obj`` and the
class logits by ``g_cls`` (plus ``c_obj`` / ``c_cls`` if given: ``G_OBJ/G_CLS+C_OBJ/C_CLS``), and
the float yolo layer and the usual decode and NMS make the detections, compared with the float
detections as ``mdfi eval`` does.  With ``1/1`` it reproduces the fixed-point model's aggregate
row (its tables differ from the float logistic by less than their Q1.15 step).  Nothing here
changes the integer model: it measures a candidate before anyone builds it.  Selection splits
only (``val``, ``val4``-``val9``); ``test`` and ``test4`` are refused.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


def parse_gain(text: str):
    """``G_OBJ/G_CLS[+C_OBJ/C_CLS]`` -> (g_obj, g_cls, c_obj, c_cls)."""
    g, _, c = text.partition("+")
    try:
        go, gc = (float(v) for v in g.split("/"))
        co, cc = (float(v) for v in c.split("/")) if c else (0.0, 0.0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected G_OBJ/G_CLS[+C_OBJ/C_CLS], e.g. 1.04/1.06")
    return go, gc, co, cc


class GainEngine:
    """The fixed-point engine up to the head inputs, then logits x g + c and the float heads."""

    name = "head-gain"

    def __init__(self, network, qm, gain):
        from mdfi.engine import FixedEngine
        self.network, self.qm, self.gain = network, qm, gain
        self.engine = FixedEngine(qm, "c", threads=2)

    def heads(self, x, thresh, stats=None):
        from bench_head_bias import value
        from mdfi.quant.quantize import input_to_u8
        go, gc, co, cc = self.gain
        outs = self.engine.run(input_to_u8(x), keep="all")
        res = []
        for layer in self.network.output_layers():
            src = layer.inputs[0]
            z = value(outs[src], self.qm.layers[src].out_fmt)
            z = z.reshape(layer.n, layer.entries, *z.shape[1:])
            z[:, 4] = z[:, 4] * go + co
            z[:, 5:] = z[:, 5:] * gc + cc
            out = layer.forward_float([z.reshape(-1, *z.shape[2:]).astype(np.float32)])
            res.append(layer.decode(out, thresh))
        return res


def run_engine(network, names, engine, data, progress: str = ""):
    """``mdfi eval``'s agreement of ``engine``'s detections with the float ones on ``data``
    (bench_accuracy.float_split's images), and the row this script prints for it;
    ``progress``: a label for per-image progress on stderr."""
    from mdfi.eval import evaluate
    from mdfi.model import Model
    from mdfi.scale import imagejobs
    model = Model(network, names, engine)
    dets = []
    for n, d in enumerate(data):
        dets.append(imagejobs.top_detections(model.detect(d[1], thresh=0.005))[0])
        if progress:
            print(f"{progress}: {n + 1}/{len(data)}", file=sys.stderr, flush=True)
    r = evaluate.agreement([d[2] for d in data], dets)
    return r, (f"agreement {r.map:.4f}  kept {r.matched}/{r.n_float} ({100 * r.kept_fraction:.1f} %)  extra {r.extra} "
               f"({100 * r.extra_fraction:.1f} %)  bias {r.mean_dconf_ranked:+.4f} "
               f"({100 * r.down_fraction_ranked:.0f} % lower)")


def main(argv=None) -> int:
    import bench_accuracy as ba
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", type=ba._selection_splits, default="val4,val5",
                    help="selection splits, comma-separated: val, val4-val9; never test or test4")
    ap.add_argument("--gains", nargs="+", type=parse_gain, default=[(1.04, 1.06, 0.0, 0.0)],
                    metavar="G_OBJ/G_CLS[+C_OBJ/C_CLS]", help="the row 1/1 (the default itself) is always printed first")
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"))
    args = ap.parse_args(argv)

    import mdfi
    from mdfi.model import _float_network
    network, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    qm = mdfi.load("yolov3-tiny").quantized
    for sp in args.split:
        data = ba.float_split(network, names, args.sets if sp == "val" else args.person_sets, sp, args.cache)
        for gain in [(1.0, 1.0, 0.0, 0.0)] + list(args.gains):
            _, row = run_engine(network, names, GainEngine(network, qm, gain), data)
            print(f"{sp:<5} g {gain[0]:.3f}/{gain[1]:.3f} c {gain[2]:+.3f}/{gain[3]:+.3f}: {row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
