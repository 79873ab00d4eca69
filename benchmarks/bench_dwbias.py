"""Rounds 30-31 (docs/quantization.md): the default of a depthwise model without photos, with and
without the empirical bias correction -- first explored on `val` (which decided round 28 for
Yolo-Fastest 1.1: those numbers decide nothing), then rules 30 and 31 and their held-out reports.

    python benchmarks/bench_dwbias.py --split val                       # bias from the sample photo
    python benchmarks/bench_dwbias.py --split val --bias-inputs calib   # from the `calib` photos
    python benchmarks/bench_dwbias.py --split val6,val7 --pool          # round 30's rule (and -xl)
    python benchmarks/bench_dwbias.py --split test,test4                # held out, once (and -xl)
    python benchmarks/bench_dwbias.py --split val4,val5 --pool --as-own # round 31's rule (and -xl)
    python benchmarks/bench_dwbias.py --split test4 --as-own            # held out, once (and -xl)

Rows (integer C engine, one thread; scored against the float path's detections at 0.25 with
``mdfi.eval.evaluate``, as bench_accuracy.py): **A** the model's default without photos (w8a8,
per-channel weights, zero points, ``mse`` formats from the shipped sample photo and its mirror;
Yolo-Fastest 1.1-xl with ``dw_equalize`` since round 29c) -- compared with ``mdfi.load``'s
default model (A's integers before round 30, B's after) -- and **B** = A with ``bias_correction="empirical"`` on the same two inputs (the
mean output error of the quantized network, layer by layer, cancelled per channel:
``mdfi.quant.sequential``; Nagel et al. 2019 measure it on depthwise networks), and with
``--bias-inputs calib`` on the ``calib`` photos and their mirrors instead (Yolo-Fastest 1.1 only:
the xl model's equalization factors would then come from those photos too); ``--bias-mode pre``
matches the pre-activation means (round 17c); ``--as-own``: the model's cfg and weights as anyone's
own (no recipe: the default of round 31's rule).  ``--pool``: the splits as one set.  ``--paired
N``: B - A agreement over N paired photo resamplings (``bench_grid.paired_sd``).
Photos: accuracy_images.py (``/tmp/mdfi-accuracy-sets``) and person_images.py
(``/tmp/mdfi-person-sets``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def quantized(net, names, spec_name: str, bias: bool, bias_inputs: str = "sample", sets: str = "",
              bias_mode: str = "post"):
    """Row A (``bias`` false) or B of ``spec_name``: what ``mdfi.load`` builds without photos,
    with or without the empirical bias correction on the sample photo and its mirror (or the
    ``calib`` photos and their mirrors)."""
    from mdfi.image import load_image
    from mdfi.preprocess import network_input
    from mdfi.quant import calibrate, recipes
    from mdfi.quant.quantize import quantize_network
    dw = recipes.default_dw_equalize(spec_name, "sample", {"wbits": 8, "abits": 8}, True)
    kw = recipes.dw_equalize_kwargs(net, True)       # the sample photo and its mirror as inputs
    if not dw:
        kw.pop("dw_equalize")
    if bias and bias_inputs == "calib":
        if dw:
            raise SystemExit(f"{spec_name}: --bias-inputs calib would change its equalization factors too")
        rgbs = [load_image(p) for p in calibrate.list_images(os.path.join(sets, "calib"))]
        kw["calib_inputs"] = [network_input(np.ascontiguousarray(v), net) for r in rgbs for v in (r, r[:, ::-1])]
    return quantize_network(net, wbits=8, abits=8, per_channel=True, calib=recipes.sample_calibration(net),
                            zero_points=True, act_method="mse", names=names, bias_mode=bias_mode,
                            bias_correction="empirical" if bias else "auto", progress=bias, **kw)


def same_integers(a, b) -> bool:
    return all(np.array_equal(x.weights, y.weights) and np.array_equal(x.shift, y.shift)
               and np.array_equal(x.bias, y.bias) for x, y in zip(a.layers, b.layers) if x.kind == "convolutional")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="yolo-fastest-1.1")
    ap.add_argument("--split", default="val")
    ap.add_argument("--pool", action="store_true", help="score the splits as one set")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets")
    ap.add_argument("--person-sets", default="/tmp/mdfi-person-sets")
    ap.add_argument("--cache", default="/tmp/mdfi-accuracy-cache")
    ap.add_argument("--paired", type=int, default=200, metavar="N")
    ap.add_argument("--bias-inputs", choices=("sample", "calib"), default="sample")
    ap.add_argument("--bias-mode", choices=("post", "pre"), default="post")
    ap.add_argument("--as-own", action="store_true",
                    help="the zoo model's cfg and weights as anyone's own (no recipe: round 31)")
    args = ap.parse_args(argv)

    import mdfi
    from mdfi.engine import FixedEngine
    from mdfi.eval import evaluate
    from mdfi.model import Model, _float_network
    from bench_accuracy import float_split
    from bench_grid import agreement_line, paired_line
    import person_images

    net, names, *_ = _float_network(args.model, None, None, None, True)
    spec = None if args.as_own else args.model
    if args.as_own:
        from mdfi import zoo
        default = mdfi.load(cfg=net.path, weights=zoo.weights_path(args.model)).engine.qmodel
    else:
        default = mdfi.load(args.model).engine.qmodel
    models = {}
    for row, bias in (("A", False), ("B", True)):
        t0 = time.perf_counter()
        qm = quantized(net, names, spec, bias, args.bias_inputs, args.sets, args.bias_mode)
        own = " (as own weights)" if args.as_own else ""
        print(f"{args.model}{own} {row}: quantized in {time.perf_counter() - t0:.1f} s; equals mdfi.load's default "
              f"model: {same_integers(default, qm)}", flush=True)
        models[row] = Model(net, names, FixedEngine(qm, backend="c", threads=1))
    splits = args.split.split(",")
    groups = [splits] if args.pool else [[sp] for sp in splits]
    for group in groups:
        data = []
        for sp in group:
            person_images.ensure_split(sp, args.person_sets)
            data += float_split(net, names, person_images.split_dir(sp, args.sets, args.person_sets), sp,
                                os.path.join(args.cache, args.model))
        label = "+".join(group)
        print(f"{args.model} on {label}: {len(data)} images, {sum(len(d[2]) for d in data)} float detections "
              "at 0.25", flush=True)
        dets = {}
        for row, model in models.items():
            dets[row] = [model.detect(d[1], thresh=0.005) for d in data]
            r = evaluate.agreement([d[2] for d in data], dets[row])
            print(f"  {row} {label:<10} {agreement_line(r)}", flush=True)
        if args.paired:
            print(f"  {paired_line(data, dets['A'], dets['B'], args.paired, 'A', 'B', label)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
