"""Mixed weight widths for models without a recipe (docs/quantization.md "Round 24"): the
generic w4a8 default (per-channel 4-bit weights, activation formats from the shipped sample
photo and its mirror image) against the same with 8-bit weights kept in the layers the
sensitivity method picks on that photo pair (``mdfi.quant.mixed.sample_mixed_widths``,
uniform size + 0.9 % of the float size).

    python benchmarks/bench_sample_mixed.py --split val7,val8          # selection (the rule)
    python benchmarks/bench_sample_mixed.py --split test               # held out, report only
    python benchmarks/bench_sample_mixed.py --split test4 --paired 1000
    python benchmarks/bench_sample_mixed.py --compare zero-points --wbits 8 --split val6,val7,val8,val9
        # round 25: the 8-bit model of a model without a recipe (U) against the same with zero
        # points (Z: recipes.zero_point_kwargs, what --zero-points gives it)
    python benchmarks/bench_sample_mixed.py --compare mixed-zero-points --wbits 4 --split val6,val7,val8,val9
        # round 26: round 24's mixed model (M) against the same with zero points (MZ)
    python benchmarks/bench_sample_mixed.py --compare zero-points --wbits 8 --stats calib --split val6,val7,val8,val9
        # round 27: the same as round 25 with the `calib` photos as the user's --calib folder
    python benchmarks/bench_sample_mixed.py --compare empirical-bias --wbits 8 --split val
        # stop 40: the 8-bit default with zero points (Z) against the same with the empirical bias
        # correction on the sample photo and its mirror (ZB)

Models: yolov3-tiny and yolov4-tiny (the zoo's official weights quantized *without* their
recipes, as anyone's own weights are) and the 10-class yolov4-tiny of customyolov4==2.  Several
splits are pooled into one set of photos.  ``--paired N``: mean / SD of M - U over N
resamplings of the photos, and the share of resamplings where M is ahead.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

CACHES = {"y3": "", "v4c": "-yolov4-tiny", "10c": os.sep + "yolov4-tiny-10c"}
EXTRA = 0.009                    # of the float size: yolov3-tiny's shipped w4a8 is 12.5 % + 0.9 points


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", required=True, help="comma-separated: val7,val8 (selection), test or test4")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets")
    ap.add_argument("--person-sets", default="/tmp/mdfi-person-sets")
    ap.add_argument("--cache", default="/tmp/mdfi-accuracy-cache")
    ap.add_argument("--models", default="y3,v4c,10c")
    ap.add_argument("--compare", choices=("mixed", "zero-points", "mixed-zero-points", "empirical-bias"),
                    default="mixed",
                    help="mixed: U against M (round 24); zero-points: U against Z (round 25); mixed-zero-points: "
                         "M against MZ, M with zero points and its widths chosen with them (round 26); "
                         "empirical-bias: Z against ZB, Z with the empirical bias correction on the sample photo "
                         "and its mirror (stop 40, recipes.empirical_bias_kwargs)")
    ap.add_argument("--wbits", type=int, default=4)
    ap.add_argument("--abits", type=int, default=8)
    ap.add_argument("--extra", type=float, default=EXTRA, metavar="FRACTION",
                    help=f"budget: the uniform size + this fraction of the float size (default {EXTRA})")
    ap.add_argument("--stats", choices=("sample", "calib"), default="sample",
                    help="activation statistics: the shipped sample photo and its mirror image (no photos given), "
                         "or the `calib` photos as a user's --calib folder (round 27)")
    ap.add_argument("--paired", type=int, default=0, metavar="N")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    splits = args.split.split(",")
    if ("test" in splits or "test4" in splits) and len(splits) > 1:
        ap.error("--split: a held-out split alone")

    from mdfi.engine import FixedEngine
    from mdfi.eval import evaluate
    from mdfi.model import Model
    from mdfi.quant import recipes
    from mdfi.quant.mixed import sample_mixed_widths
    from mdfi.quant.quantize import quantize_network
    from bench_accuracy import float_split
    from bench_sample_extras import finish, load_model
    import person_images

    rows = {}
    for which in args.models.split(","):
        network, names = load_model(which)
        data = []
        for split in splits:
            sets = args.sets if split in ("val", "test") else args.person_sets
            if sets == args.person_sets:
                person_images.ensure_split(split, args.person_sets)
            data += float_split(network, names, sets, split, args.cache + CACHES[which])
        if args.stats == "sample":
            calib = recipes.sample_calibration(network)
        else:                   # a user's photos: what `mdfi quantize --calib DIR` collects
            from mdfi.quant import calibrate
            calib = calibrate.collect_from_dir(network, os.path.join(args.sets, "calib"), progress=False)
        opts = recipes.resolve(None, wbits=args.wbits, abits=args.abits, per_channel=True)

        def build(layer_wbits, wbits=args.wbits, zkw=None):
            kw = dict(zkw) if zkw else dict(act_method=opts["act_method"])
            return quantize_network(network, wbits=wbits, abits=opts["abits"], per_channel=True,
                                    rounding=opts["rounding"], calib=calib, weight_method=opts["weight_method"],
                                    names=names, layer_wbits=layer_wbits, **kw)
        # the product's zero-point kwargs (mdfi.load(zero_points=True) for a model without a recipe)
        zkw = recipes.zero_point_kwargs(None, False, opts)
        t0 = time.perf_counter()
        if args.compare == "mixed":
            keep = sample_mixed_widths(network, lambda lw: build(lw, 8), args.wbits, args.abits, extra=args.extra)
            variants = (("U", {}, None), ("M", keep, None))
        elif args.compare == "zero-points":
            variants = (("U", {}, None), ("Z", {}, zkw))
        elif args.compare == "empirical-bias":
            variants = (("Z", {}, zkw), ("ZB", {}, dict(zkw, **recipes.empirical_bias_kwargs(network, True, zkw))))
        else:           # round 26: round 24's mixed model against the same with zero points (widths chosen with them)
            keep = sample_mixed_widths(network, lambda lw: build(lw, 8), args.wbits, args.abits, extra=args.extra)
            keepz = sample_mixed_widths(network, lambda lw: build(lw, 8, zkw), args.wbits, args.abits,
                                        extra=args.extra)
            variants = (("M", keep, None), ("MZ", keepz, zkw))
        tw = time.perf_counter() - t0
        dets_of = {}
        for name, lw, vz in variants:
            qm = build(lw, zkw=vz)
            fixed = Model(network, names, FixedEngine(qm, "c"))
            dets_of[name] = [fixed.detect(d[1], thresh=0.005) for d in data]
            r = evaluate.agreement([d[2] for d in data], dets_of[name])
            size = 100 * qm.param_bytes() / (4 * network.num_params())
            rows[f"{which} {name}"] = dict(evaluate.to_json_dict(r), splits=splits, size_percent=size,
                                           layer_wbits=lw, widths_seconds=tw)
            print(f"{which:4} {args.split:9} {name} agreement {r.map:.4f} kept {100 * r.kept_fraction:5.1f}% "
                  f"({r.matched}/{r.n_float}) extra {100 * r.extra_fraction:5.1f}% bias {r.mean_dconf:+.4f} "
                  f"(ranked {r.mean_dconf_ranked:+.4f}) "
                  f"size {size:.2f}%{' w8@' + ','.join(map(str, lw)) if lw else ''}", flush=True)
        if args.paired:
            from bench_grid import paired_sd
            base, cand = variants[0][0], variants[1][0]
            mean, sd, up = paired_sd(data, dets_of[base], dets_of[cand], args.paired)
            rows[f"{which} {cand}"]["paired_vs_base"] = dict(mean=mean, sd=sd, p_up=up)
            print(f"{which:4} {args.split:9} {cand} - {base} over {args.paired} photo resamplings: mean {mean:+.4f}, "
                  f"sd {sd:.4f}, {cand} ahead in {100 * up:.0f} %", flush=True)
    finish(rows, {"mixed": ("U", "M"), "zero-points": ("U", "Z"), "mixed-zero-points": ("M", "MZ"),
                  "empirical-bias": ("Z", "ZB")}[args.compare],
           args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
