"""The generic no-photo default (per-channel weights, statistics of the shipped sample photo and
its mirror image) against the recipes' cheap extras on the same photo: a 0.03 % clip budget,
full head bias shifts, both, empirical bias correction (docs/quantization.md, "Round 11").

    python benchmarks/bench_sample_extras.py --split sel      # val for the COCO models, val4 for 10c
    python benchmarks/bench_sample_extras.py --split test     # held out, report only (also test4)
    python benchmarks/bench_sample_extras.py --split test --before-after --paired 1000
        # the generic default before round 11 (per-layer, batch-norm estimate) against S, with
        # the photo-resampling mean / SD of the difference (bench_grid.paired_sd)

Models: yolov3-tiny and yolov4-tiny (the zoo's official weights, quantized *without* their
recipes, as anyone's own weights are) and the 10-class yolov4-tiny of customyolov4==2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

VARIANTS = {                    # name -> (choose_decisions options or None, empirical bias)
    "S": (None, False),
    "V1 clip0.03": (dict(search=False, clip_budget=0.03, shift_strength=0.0), False),
    "V2 shift1": (dict(search=False, clip_budget=None, shift_strength=1.0), False),
    "V3 clip0.03+shift1": (dict(search=False, clip_budget=0.03, shift_strength=1.0), False),
    "V4 emp": (None, True),
}


def load_model(which: str):
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    if which == "10c":
        from bench_accuracy_v4tiny import FIXTURE, SPEC
        network = Network.from_cfg(os.path.join(FIXTURE, SPEC["cfg"]), warn=False)
        names = zoo.load_names(os.path.join(FIXTURE, SPEC["names"]))
        weights = zoo.weights_path(zoo.ModelSpec(**SPEC))
    else:
        name = {"y3": "yolov3-tiny", "v4c": "yolov4-tiny"}[which]
        network = Network.from_cfg(zoo.cfg_path(name), warn=False)
        names = zoo.load_names(zoo.names_path(name))
        weights = zoo.weights_path(name)
    load_weights(network, weights)
    return network, names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="sel", help="sel (val / val4), test or test4")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets")
    ap.add_argument("--person-sets", default="/tmp/mdfi-person-sets")
    ap.add_argument("--cache", default="/tmp/mdfi-accuracy-cache")
    ap.add_argument("--models", default="y3,v4c,10c")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--before-after", action="store_true",
                    help="only S and B0, the default before round 11 (per-layer, batch-norm estimate)")
    ap.add_argument("--paired", type=int, default=0, metavar="N",
                    help="with --before-after: mean / SD of S - B0 over N resamplings of the photos")
    args = ap.parse_args(argv)
    if args.split not in ("sel", "test", "test4"):
        ap.error("--split: sel, test or test4")

    from mdfi.engine import FixedEngine
    from mdfi.eval import evaluate
    from mdfi.model import Model
    from mdfi.preprocess import network_input
    from mdfi.quant import recipes
    from mdfi.quant.formats import choose_decisions
    from mdfi.quant.quantize import quantize_network
    from mdfi.image import load_image
    from importlib.resources import files
    from bench_accuracy import float_split
    import person_images

    from mdfi.quant import calibrate as calib_mod
    variants = {"B0 before": (None, False), "S": (None, False)} if args.before_after else VARIANTS
    rows = {}
    for which in args.models.split(","):
        split = ("val4" if which == "10c" else "val") if args.split == "sel" else args.split
        sets = args.person_sets if split in ("val4", "test4") else args.sets
        if split in ("val4", "test4"):
            person_images.ensure_split(split, args.person_sets)
        network, names = load_model(which)
        data = float_split(network, names, sets, split, os.path.join(args.cache, f"extras-{which}"))
        calib = recipes.sample_calibration(network)
        rgb = load_image(files("mdfi.data") / recipes.SAMPLE_PHOTO)
        xs = [network_input(v, network) for v in (rgb, rgb[:, ::-1].copy())]
        dets_of = {}
        for name, (opts, emp) in variants.items():
            t0 = time.perf_counter()
            final = dict(bias_correction="empirical", calib_inputs=xs) if emp else None
            if name == "B0 before":
                qm = quantize_network(network, per_channel=False, calib=calib_mod.estimate_from_batchnorm(network),
                                      names=names)
            elif opts is None and final is None:
                qm = quantize_network(network, per_channel=True, calib=calib, names=names)
            elif opts is None:
                qm = quantize_network(network, per_channel=True, calib=calib, names=names, **final)
            else:
                _, qm = choose_decisions(network, calib, xs, wbits=8, abits=8, per_channel=True, final=final,
                                         with_model=True, progress=False, **opts)
            tq = time.perf_counter() - t0
            fixed = Model(network, names, FixedEngine(qm, "c"))
            dets_of[name] = [fixed.detect(d[1], thresh=0.005) for d in data]
            r = evaluate.agreement([d[2] for d in data], dets_of[name])
            rows[f"{which} {name}"] = dict(evaluate.to_json_dict(r), split=split, quantize_seconds=tq)
            print(f"{which:4} {split:6} {name:20} agreement {r.map:.4f} kept {100 * r.kept_fraction:5.1f}% "
                  f"({r.matched}/{r.n_float}) extra {100 * r.extra_fraction:5.1f}% bias {r.mean_dconf:+.4f} "
                  f"({tq:.1f} s)", flush=True)
        if args.before_after and args.paired:
            from bench_grid import paired_sd
            mean, sd, up = paired_sd(data, dets_of["B0 before"], dets_of["S"], args.paired)
            rows[f"{which} S"]["paired_vs_before"] = dict(mean=mean, sd=sd, p_up=up)
            print(f"{which:4} {split:6} S - B0 over {args.paired} photo resamplings: mean {mean:+.4f}, sd {sd:.4f}, "
                  f"S higher in {100 * up:.0f} %", flush=True)
    finish(rows, variants, args.json)
    return 0


def finish(rows: dict, names, json_path=None) -> None:
    """Print each variant's mean agreement / kept / extra over the models (``rows`` keyed
    "MODEL VARIANT"), and write the rows as JSON when asked."""
    print("mean over the models:")
    for name in names:
        sel = [v for k, v in rows.items() if k.split(" ", 1)[1] == name]
        print(f"  {name:20} agreement {sum(v['map'] for v in sel) / len(sel):.4f} kept "
              f"{100 * sum(v['kept_fraction'] for v in sel) / len(sel):5.1f}% extra "
              f"{100 * sum(v['extra_fraction'] for v in sel) / len(sel):5.1f}%")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
