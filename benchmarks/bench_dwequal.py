"""Round 29 (docs/quantization.md): the default of a model without a recipe, with and without the
power-of-two equalization of its depthwise inputs (``quantize_network(dw_equalize=True)``).

    python benchmarks/bench_dwequal.py --split val8                 # the selection set of rule 29
    python benchmarks/bench_dwequal.py --split test,test4           # held out, once, after the rule
    python benchmarks/bench_dwequal.py --model yolo-fastest-1.1-xl --split test --calib-modes sample

Rows (integer C engine, one thread; scored against the float path's detections at 0.25 with
``mdfi.eval.evaluate``, as bench_accuracy.py): **A** the default of a model without a recipe
(w8a8, per-channel weights, zero points, ``mse`` formats) and **E** = A with ``dw_equalize``,
calibrated on the shipped sample photo and its mirror (``sample``: what ``mdfi.load`` does
without photos) and on the ``calib`` photos and their mirrors (``calib``: a user's ``--calib``
photos); each ``sample`` row is compared with ``mdfi.load``'s default model (A's integers, or E's
where the zoo's recipe equalizes: yolo-fastest-1.1-xl since round 29c; since rounds 30-31 the
defaults add the empirical bias correction, so neither row equals them: bench_dwbias.py).  ``--paired N``: E - A
agreement over N paired photo resamplings (``bench_grid.paired_sd``).  Photos:
accuracy_images.py (``/tmp/mdfi-accuracy-sets``) and person_images.py (``/tmp/mdfi-person-sets``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def quantized(net, names, calib_mode: str, sets: str, dw: bool):
    from mdfi.image import load_image
    from mdfi.preprocess import network_input
    from mdfi.quant import calibrate, recipes
    from mdfi.quant.quantize import quantize_network
    if calib_mode == "sample":
        rgbs = [recipes.sample_rgb()]
        stats = recipes.sample_calibration(net)
    else:
        rgbs = [load_image(p) for p in calibrate.list_images(os.path.join(sets, "calib"))]
        stats = calibrate.collect(net, rgbs, progress=False, augment=True)
    xs = [network_input(np.ascontiguousarray(v), net) for r in rgbs for v in (r, r[:, ::-1])]
    return quantize_network(net, wbits=8, abits=8, per_channel=True, calib=stats, zero_points=True,
                            act_method="mse", names=names, calib_inputs=xs, dw_equalize=dw, progress=dw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolo-fastest-1.1")
    ap.add_argument("--split", default="val8")
    ap.add_argument("--calib-modes", default="sample,calib")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets")
    ap.add_argument("--person-sets", default="/tmp/mdfi-person-sets")
    ap.add_argument("--cache", default="/tmp/mdfi-accuracy-cache")
    ap.add_argument("--paired", type=int, default=200, metavar="N")
    args = ap.parse_args(argv)

    import mdfi
    from mdfi.engine import FixedEngine
    from mdfi.eval import evaluate
    from mdfi.model import Model, _float_network
    from bench_accuracy import float_split
    from bench_grid import agreement_line, paired_line
    import person_images

    net, names, *_ = _float_network(args.model, None, None, None, True)
    for sp in args.split.split(","):
        person_images.ensure_split(sp, args.person_sets)
        data = float_split(net, names, person_images.split_dir(sp, args.sets, args.person_sets), sp,
                           os.path.join(args.cache, args.model))
        print(f"{args.model} on {sp}: {len(data)} images, {sum(len(d[2]) for d in data)} float detections at 0.25",
              flush=True)
        for cm in args.calib_modes.split(","):
            dets = {}
            for row, dw in (("A", False), ("E", True)):
                t0 = time.perf_counter()
                qm = quantized(net, names, cm, args.sets, dw)
                if cm == "sample":
                    ref = mdfi.load(args.model).engine.qmodel
                    same = all(np.array_equal(a.weights, b.weights) and np.array_equal(a.shift, b.shift)
                               and np.array_equal(a.bias, b.bias)
                               for a, b in zip(ref.layers, qm.layers) if a.kind == "convolutional")
                    print(f"  {row} (sample) equals mdfi.load's default model: {same}", flush=True)
                model = Model(net, names, FixedEngine(qm, backend="c", threads=1))
                dets[row] = [model.detect(d[1], thresh=0.005) for d in data]
                r = evaluate.agreement([d[2] for d in data], dets[row])
                print(f"  {row} {cm:<6} {sp:<6} {agreement_line(r)}  {time.perf_counter() - t0:.0f} s", flush=True)
            if args.paired:
                print(f"  {paired_line(data, dets['A'], dets['E'], args.paired, 'A', 'E', f'{cm}, {sp}')}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
