"""Is the 8-bit default's confidence bias the noise itself?  (round 18, docs/quantization.md
"What is left of the bias: the noise itself"): a diagnostic on the selection photos.

    python benchmarks/bench_head_noise.py --split val5,val7

For every image the float network's head inputs ``z_f`` (the two 1x1 head convolutions'
outputs) and the shipped 8-bit yolov3-tiny default's, dequantized (``z_q``), give the error
``e = z_q - z_f``.  The float yolo layer, decode and NMS then run on

* ``fixed``: ``z_f + e`` (= ``z_q``: the fixed-point model's row, as ``bench_head_gain.py`` 1/1);
* ``shuffled``: ``z_f + e`` with ``e`` permuted among the positions of each channel (seeded):
  the same errors, with their per-channel distribution and mean, but no longer tied to the
  signal (no attenuation of the large logits, no correlation with the objects);
* ``gauss``: ``z_f + n``, ``n`` zero-mean Gaussian with ``e``'s standard deviation per channel;
* ``gauss-half``: the same with half that standard deviation;

and each is compared with the float detections as ``mdfi eval`` does.  If the noise alone
(``shuffled``, ``gauss``) lowers the confidences as much as the fixed-point model does, the
bias is the curvature of the logistic under noise (E[sigma(t + n)] < sigma(t) where sigma is
concave, t > 0; a detection's confidence is the product of two logistics, mostly in their
concave parts), which no shift or gain of the logits removes without raising other
confidences.  Selection splits only (``val``, ``val4``-``val9``); ``test`` and ``test4`` are
refused.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

MODES = ("fixed", "shuffled", "gauss", "gauss-half")


class NoiseEngine:
    """Float head inputs plus the fixed-point model's head error, as it is or re-drawn."""

    name = "head-noise"

    def __init__(self, network, qm, mode: str, seed: int = 0):
        from mdfi.engine import FixedEngine
        self.network, self.qm, self.mode = network, qm, mode
        self.engine = FixedEngine(qm, "c", threads=2)
        self.rng = np.random.default_rng(seed)

    def noisy(self, zf: np.ndarray, zq: np.ndarray) -> np.ndarray:
        e = (zq - zf).reshape(zf.shape[0], -1)
        if self.mode == "shuffled":
            e = self.rng.permuted(e, axis=1)
        elif self.mode.startswith("gauss"):
            sd = e.std(axis=1, keepdims=True) * (0.5 if self.mode == "gauss-half" else 1.0)
            e = self.rng.standard_normal(e.shape) * sd
        return zf + e.reshape(zf.shape)

    def heads(self, x, thresh, stats=None):
        from bench_head_bias import value
        from mdfi.quant.quantize import input_to_u8
        outs = self.engine.run(input_to_u8(x), keep="all")
        srcs = [layer.inputs[0] for layer in self.network.output_layers()]
        fl = {}
        self.network.forward_float(x, keep="needed", hook=lambda i, o: fl.__setitem__(i, o) if i in srcs else None)
        res = []
        for layer, src in zip(self.network.output_layers(), srcs):
            zq = value(outs[src], self.qm.layers[src].out_fmt)
            z = zq if self.mode == "fixed" else self.noisy(fl[src].astype(np.float64), zq)
            out = layer.forward_float([z.astype(np.float32)])
            res.append(layer.decode(out, thresh))
        return res


def main(argv=None) -> int:
    import bench_accuracy as ba
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", type=ba._selection_splits, default="val5,val7",
                    help="selection splits, comma-separated (val, val4-val9); never test or test4")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=os.path.join("/tmp", "mdfi-accuracy-sets"))
    ap.add_argument("--person-sets", default=os.path.join("/tmp", "mdfi-person-sets"))
    ap.add_argument("--cache", default=os.path.join("/tmp", "mdfi-accuracy-cache"))
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    if any(m not in MODES for m in modes):
        ap.error(f"--modes: of {', '.join(MODES)}")

    import mdfi
    from bench_head_gain import run_engine
    from mdfi.model import _float_network
    network, names, *_ = _float_network("yolov3-tiny", None, None, None, True)
    qm = mdfi.load("yolov3-tiny").quantized
    for sp in args.split:
        data = ba.float_split(network, names, args.sets if sp == "val" else args.person_sets, sp, args.cache)
        for mode in modes:
            r, row = run_engine(network, names, NoiseEngine(network, qm, mode, args.seed), data, f"{sp} {mode}")
            print(f"{sp:<5} {mode:<10}: {row}  mean |d conf| {r.mean_abs_dconf:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
