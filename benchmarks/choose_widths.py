"""Which convolutions keep 8-bit weights in a zoo model's mixed w6a8 / w4a8 (docs/quantization.md
"Round 21b"): round 2's sensitivity method (``mdfi.quant.mixed.choose_widths``: the head-logit
error at the object cells of the 22 ``calib`` inputs, greedy by error per saved byte) from a base
of 8-bit weights, one candidate width, on the recipe's zero-point model (mse formats on the
shipped statistics, round-half-up weights).  Prints the ``--layer-wbits`` of
``make_rounding.py``.  Looks at the ``calib`` photos only.  A few minutes per width::

    python benchmarks/choose_widths.py --model yolov4-tiny --wbits 4 --budget 13.3
    python benchmarks/choose_widths.py --model yolov4-tiny --wbits 6 --budget 19.1
"""

from __future__ import annotations

import argparse
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_accuracy as ba  # noqa: E402
import bench_grid as bg  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("yolov3-tiny", "yolov4-tiny"), required=True)
    ap.add_argument("--wbits", type=int, choices=(4, 5, 6, 7), required=True, help="the narrow weight width")
    ap.add_argument("--budget", type=float, required=True, metavar="PERCENT", help="model size, %% of float")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets", help="accuracy_images.py's folder (its calib/)")
    args = ap.parse_args(argv)
    if not 0 < args.budget < 100:
        ap.error(f"--budget {args.budget}: expected a percentage in (0, 100)")
    if not os.path.isdir(os.path.join(args.sets, "calib")):
        ap.error(f"--sets {args.sets}: no calib/ folder (python benchmarks/accuracy_images.py {args.sets})")
    from mdfi.quant.formats import HeadObjective
    from mdfi.quant.mixed import choose_widths
    from mdfi.quant.quantize import quantize_network
    network, names, calib = bg.load_model(args.model, types.SimpleNamespace(
        weights=None, sets=args.sets, person_sets=None, calib_set="calib"))
    objective = HeadObjective(network, ba.calib_inputs(network, args.sets))
    common = dict(wbits=8, abits=8, per_channel=True, calib=calib, names=names, zero_points=True,
                  act_method="mse", weight_method="mse")
    widths = choose_widths(network, lambda lw: quantize_network(network, **dict(common, layer_wbits=lw)),
                           objective, base_bits=8, budget=args.budget / 100.0, candidates=(args.wbits,))
    convs = [l.index for l in network.layers if l.kind == "convolutional"]
    keep = [i for i in convs if widths.get(i, 8) == 8]          # choose_widths returns the narrowed layers
    print(f"{args.model}: {len(keep)} of {len(convs)} convolutions keep 8-bit weights at a {args.budget:g} % budget; "
          f"make_rounding.py --wbits {args.wbits} --layer-wbits {','.join(f'{i}=8' for i in keep)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
