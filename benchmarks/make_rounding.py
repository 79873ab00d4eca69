"""Make a zoo recipe's shipped 8-bit rounding (docs/quantization.md "Round 15").

Builds round 13's best 8-bit model of a zoo model exactly as ``bench_zeropoint.py --method
adaround --only-zero-points`` does -- zero-point activation formats (``mse`` on the shipped
statistics), per-channel ``mse`` weight formats, AdaRound weight rounding and empirical bias
correction on the ``calib`` photos and their mirror images -- and writes what its integers
need beyond round-half-up (``mdfi/data/MODEL.wWaA.rounding.npz``, :func:`mdfi.quant.recipes.
write_rounding`): one bit per weight (moved off round-half-up or not), one sign bit per moved
weight, and the empirical bias shifts, with the digest of the model's integers, which
``mdfi.load`` checks when it applies the file.  2.5-3 min per model on one core::

    python benchmarks/accuracy_images.py /tmp/mdfi-accuracy-sets      # the calib photos
    python benchmarks/make_rounding.py --model yolov3-tiny --out mdfi/data/yolov3-tiny.w8a8.rounding.npz
    python benchmarks/make_rounding.py --model yolov4-tiny --out mdfi/data/yolov4-tiny.w8a8.rounding.npz
    python benchmarks/make_rounding.py --model yolov3-tiny --wbits 6 --abits 8 --out mdfi/data/yolov3-tiny.w6a8.rounding.npz

``--from FILE --head-gains I=G[,...]`` (round 18) writes a copy of a rounding file with the
heads' logit gains added to its meta (``quantize_network(head_gains=...)``: the [yolo] layers'
objectness/class tables become ``sigmoid(G*t)``); the convolution integers and their digest are
those of FILE, nothing is recomputed (a second)::

    python benchmarks/make_rounding.py --model yolov3-tiny --from mdfi/data/yolov3-tiny.w8a8.rounding.npz \
        --head-gains 16=1.05,23=1.05 --out /tmp/G18.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_accuracy as ba  # noqa: E402
import bench_grid as bg  # noqa: E402


def build(model: str, sets: str, refinements=None, wbits: int = 8, abits: int = 8, layer_wbits=None,
          extra=(), crops: bool = False, adaround=None, bias_mode: str = "post", layer_abits=None):
    """(network, names, calib, the quantized model) of round 13's best 8-bit model's pipeline
    at the widths given; ``extra`` (more calibration folders) and ``crops`` (four corner crops
    per photo) change only the inputs AdaRound and the empirical bias correction see (round 16)."""
    from mdfi.quant.quantize import quantize_network
    network, names, calib = bg.load_model(model, types.SimpleNamespace(
        weights=None, sets=sets, person_sets=None, calib_set="calib"))
    qm = quantize_network(network, wbits=wbits, abits=abits, per_channel=True, calib=calib, names=names,
                          zero_points=True, weight_method="mse", bias_correction="empirical",
                          calib_inputs=ba.calib_inputs(network, sets, crops, extra), progress=True,
                          weight_rounding="adaround", refinements=refinements, layer_wbits=layer_wbits,
                          adaround=adaround, bias_mode=bias_mode, layer_abits=layer_abits)
    return network, names, calib, qm


def layer_map(ap, option: str, text, cast):
    """``I=V[,...]`` (``--layer-wbits``, ``--layer-abits``, ``--head-gains``) as {int: cast(V)},
    None when not given; anything else is a one-line usage error."""
    if not text:
        return None
    try:
        return {int(i): cast(v) for i, v in (item.split("=") for item in text.split(","))}
    except ValueError:
        ap.error(f"{option} {text!r}: expected I=VALUE[,I=VALUE...]")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("yolov3-tiny", "yolov4-tiny"), required=True)
    ap.add_argument("--out", required=True, help="the rounding file to write (.npz)")
    ap.add_argument("--wbits", type=int, default=8)
    ap.add_argument("--abits", type=int, default=8)
    ap.add_argument("--layer-wbits", default=None, metavar="I=BITS[,...]", help="per-layer weight widths, e.g. 0=8")
    ap.add_argument("--layer-abits", default=None, metavar="I=BITS[,...]",
                    help="per-layer output (activation) widths, e.g. 14=16,21=16 (round 18b); recorded in the file")
    ap.add_argument("--sets", default="/tmp/mdfi-accuracy-sets", help="accuracy_images.py's folder (its calib/)")
    ap.add_argument("--calib-extra", default=None, metavar="DIR[,DIR]",
                    help="more calibration photo folders for AdaRound and the bias correction (round 16: "
                         "person_images.py's calib4)")
    ap.add_argument("--adaround", default=None, metavar="KEY=VALUE[,...]",
                    help="AdaRound settings (mdfi.quant.adaround.AdaRoundSettings), e.g. inputs=float (round 17)")
    ap.add_argument("--bias-mode", choices=("post", "pre"), default="post",
                    help="the empirical bias correction matches the means after the activation (post, default) or "
                         "of the pre-activation sums (pre; round 17c)")
    ap.add_argument("--crops", action="store_true",
                    help="also the four 75 %% corner crops of every calibration photo (six inputs per photo)")
    ap.add_argument("--from", dest="source", default=None, metavar="FILE",
                    help="copy this rounding file instead of building one (with --head-gains)")
    ap.add_argument("--head-gains", default=None, metavar="I=G[,...]",
                    help="with --from: the logit gain G of [yolo] layer I (round 18)")
    args = ap.parse_args(argv)
    if os.path.exists(args.out):
        ap.error(f"--out {args.out}: exists (remove it first; nothing is overwritten)")
    from mdfi.quant import recipes
    if args.source or args.head_gains:
        if not (args.source and args.head_gains):
            ap.error("--from and --head-gains go together")
        return copy_with_gains(ap, args)
    t0 = time.perf_counter()
    refinements: dict = {}
    lw = layer_map(ap, "--layer-wbits", args.layer_wbits, int)
    la = layer_map(ap, "--layer-abits", args.layer_abits, int)
    extra = [d for d in (args.calib_extra or "").split(",") if d]
    missing = [d for d in extra if not os.path.isdir(d)]
    if missing:
        ap.error(f"--calib-extra: {', '.join(missing)}: not a folder")
    ada = dict(item.split("=", 1) for item in args.adaround.split(",")) if args.adaround else None
    if ada:
        from mdfi.quant.adaround import settings_from
        from mdfi.errors import MDFIError
        try:
            settings_from(ada)
        except MDFIError as e:
            ap.error(f"--adaround: {e}")
    _, _, _, qm = build(args.model, args.sets, refinements, args.wbits, args.abits, lw, extra, args.crops, ada, args.bias_mode,
                        la)
    seconds = time.perf_counter() - t0
    from mdfi import zoo
    meta = {"model": args.model, "weights_sha256": zoo.get_spec(args.model).sha256,
            "wbits": args.wbits, "abits": args.abits,
            "layer_wbits": {str(k): v for k, v in sorted((lw or {}).items())},
            **({"layer_abits": {str(k): v for k, v in sorted(la.items())}} if la else {}),
            "method": "zero points (mse, shipped statistics), per-channel mse weight formats, AdaRound weights "
                      "and empirical bias correction on the calib photos" + "".join(f", {os.path.basename(d)}" for d in extra)
                      + (", their mirror images and four corner crops" if args.crops else " and their mirror images")
                      + (f"; AdaRound {args.adaround}" if args.adaround else "")
                      + ("; the bias correction matches pre-activation means" if args.bias_mode == "pre" else ""),
            "command": f"python benchmarks/make_rounding.py --model {args.model} --wbits {args.wbits} "
                       f"--abits {args.abits}" + (f" --layer-wbits {args.layer_wbits}" if lw else "")
                       + (f" --layer-abits {args.layer_abits}" if la else "")
                       + (f" --calib-extra {','.join(extra)}" if extra else "") + (" --crops" if args.crops else "")
                       + (f" --adaround {args.adaround}" if args.adaround else "")
                       + (" --bias-mode pre" if args.bias_mode == "pre" else ""),
            "calib_inputs": qm.options.get("calib_inputs"), "adaround": qm.options.get("adaround"),
            "seconds": round(seconds), "integer_digest": recipes.integer_digest(qm)}
    recipes.write_rounding(args.out, refinements, meta)
    moved = sum(int((r["weight_delta"] != 0).sum()) for r in refinements.values())
    total = sum(r["weight_delta"].size for r in refinements.values())
    print(f"{args.out}: {len(refinements)} convolutions, {moved:,} of {total:,} weights off round-half-up "
          f"({100.0 * moved / max(total, 1):.1f} %), {os.path.getsize(args.out):,} bytes, {seconds:.0f} s",
          file=sys.stderr)
    return 0


def copy_with_gains(ap, args) -> int:
    """--from FILE --head-gains: FILE's rounding with the heads' logit gains in its meta."""
    from mdfi import zoo
    from mdfi.darknet.network import Network
    from mdfi.errors import MDFIError
    from mdfi.layers.yolo import check_gain, yolo_gains
    from mdfi.quant import recipes
    gains = layer_map(ap, "--head-gains", args.head_gains, float)
    try:
        meta, deltas, shifts = recipes.read_rounding(args.source)
        network = Network.from_cfg(zoo.cfg_path(args.model), warn=False)
        for i, g in yolo_gains(network, gains).items():      # quantize_network's own checks
            check_gain(network.layers[i], g)
    except MDFIError as e:
        ap.error(f"--from/--head-gains: {e}")
    if meta.get("model") != args.model:
        ap.error(f"--from {args.source}: made for {meta.get('model')}, not {args.model}")
    text = ",".join(f"{i}={g!r}" for i, g in sorted(gains.items()))
    meta = dict(meta, head_gains={str(i): g for i, g in sorted(gains.items())},
                method=f"{meta.get('method')}; logit gains {text} at the heads (round 18)",
                command=f"{meta.get('command')}; python benchmarks/make_rounding.py --model {args.model} --from "
                        f"{os.path.basename(args.source)} --head-gains {text}")
    meta.pop("format", None)
    meta.pop("version", None)
    recipes.write_rounding(args.out, {i: {"weight_delta": d, "bias_shift": shifts[i]} for i, d in deltas.items()}, meta)
    print(f"{args.out}: {args.source} with logit gains {text}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
