"""Argument helpers shared by the ``mdfi`` subcommands (:mod:`mdfi.cli`, :mod:`mdfi.cli.detect`)."""

from __future__ import annotations

import argparse
import os
from typing import Optional, Tuple

from ..errors import MDFIError, OutputError, shown


def add_model_args(p: argparse.ArgumentParser, quantized: bool = True) -> None:
    """The model options; ``quantized=False``: the command needs the float network, --model
    takes no .mdfi file."""
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="NAME|FILE.mdfi" if quantized else "NAME",
                   help="a zoo model name (default yolov3-tiny; see `mdfi models`)" + (
                        " or a quantized .mdfi file written by `mdfi quantize`" if quantized else ""))
    g.add_argument("--cfg", metavar="FILE", help="Darknet .cfg (with --weights) instead of a zoo model")
    g.add_argument("--weights", metavar="FILE", help="Darknet .weights file")
    g.add_argument("--names", metavar="FILE", help="class names, one per line (default: COCO)")
    g.add_argument("--darknet", choices=("pjreddie", "alexeyab"), default=None,
                   help="the Darknet lineage whose semantics the model follows (default: detected from the "
                        "cfg; `mdfi info` shows which and why)")


def check_model_args(args: argparse.Namespace) -> None:
    """Cheap checks of the model options, before anything heavy runs: combinations, and
    that every named file exists and is a regular file."""
    if args.cfg and args.model:
        raise MDFIError("give either --model NAME or --cfg FILE --weights FILE, not both")
    if args.cfg and not args.weights:
        raise MDFIError("--cfg needs --weights FILE")
    for opt in ("cfg", "weights", "names"):
        path = getattr(args, opt, None)
        if path:
            _check_input_file(path, f"--{opt}")
    model = getattr(args, "model", None)
    if model and (model.endswith(".mdfi") or os.sep in model or os.path.isfile(model)):
        _check_input_file(model, "--model")
    elif model:
        from .. import zoo
        zoo.get_spec(model)                 # unknown name: "did you mean ...?" now, not later


def refuse_quantized_model(args: argparse.Namespace, why: str) -> None:
    """``--model FILE.mdfi`` where the command needs the float network (quantize, calibrate,
    eval): one line saying why, not `unknown model 'm.mdfi' ... a quantized model is a FILE.mdfi`."""
    model = getattr(args, "model", None)
    if model:
        from ..model import _is_mdfi_file
        if _is_mdfi_file(model):
            raise MDFIError(f"--model {shown(model, 200)} is a quantized model: {why}, which needs the .cfg and "
                            f".weights it was made from (--model NAME or --cfg FILE --weights FILE)")


def _check_input_file(path: str, opt: str) -> None:
    import stat
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise MDFIError(f"{opt} {shown(path, 200)}: file not found") from None
    except OSError as exc:
        raise MDFIError(f"{opt} {shown(path, 200)}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise MDFIError(f"{opt} {shown(path, 200)}: is a directory, expected a file")
    if not stat.S_ISREG(st.st_mode):
        raise MDFIError(f"{opt} {shown(path, 200)}: not a regular file (a device, FIFO or socket)")


def load_model_from_args(args: argparse.Namespace, **kw):
    from ..model import load
    check_model_args(args)
    return load(args.model, cfg=args.cfg, weights=args.weights, names=args.names,
                darknet=getattr(args, "darknet", None), **kw)


def bits_arg(text: str) -> int:
    from ..fixedpoint import check_bits
    try:
        return check_bits(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bit width must be an integer 2..16, got {text!r}") from None
    except MDFIError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def width_arg(text: str) -> Tuple[int, int]:
    """``--bits`` of detect, info and golden: ``8`` -> (8, 8), ``w4a8`` -> (4, 8), as ``mdfi eval
    --bits`` and the recipes name widths."""
    from ..fixedpoint import parse_width
    try:
        return parse_width(text)
    except MDFIError:
        raise argparse.ArgumentTypeError(f"width must be N (2..16, weights and activations) or a pair wNaM "
                                         f"such as w4a8 or w6a8, got {text!r}") from None


def layer_rounding_arg(text: str):
    """``3=truncate,7=half_up`` -> {3: "truncate", 7: "half_up"}."""
    from ..fixedpoint import rounding_code
    out = {}
    for item in filter(None, text.split(",")):
        try:
            idx, mode = item.split("=", 1)
            if int(idx) in out:
                raise ValueError(f"layer {int(idx)} is given twice")
            out[int(idx)] = mode.strip()
            rounding_code(out[int(idx)])
        except (ValueError, MDFIError) as exc:
            raise argparse.ArgumentTypeError(f"--layer-rounding expects INDEX=MODE[,INDEX=MODE...] "
                                             f"with MODE half_up or truncate: {item!r} ({exc})") from None
    return out


def layer_bits_arg(text: str, opt: str = "--layer-abits", what: str = "activation width"):
    """``0=16,10=16`` -> {0: 16, 10: 16} (per-layer widths: ``--layer-abits``, ``--layer-wbits``)."""
    from ..fixedpoint import check_bits
    out = {}
    for item in filter(None, text.split(",")):
        try:
            idx, bits = item.split("=", 1)
            if int(idx) < 0:
                raise ValueError("negative layer index")
            if int(idx) in out:
                raise ValueError(f"layer {int(idx)} is given twice")
            out[int(idx)] = check_bits(int(bits), what)
        except (ValueError, MDFIError) as exc:
            raise argparse.ArgumentTypeError(f"{opt} expects INDEX=BITS[,INDEX=BITS...] with BITS "
                                             f"2..16: {item!r} ({exc})") from None
    if not out:
        raise argparse.ArgumentTypeError(f"{opt}: empty list")
    return out


def layer_wbits_arg(text: str):
    return layer_bits_arg(text, "--layer-wbits", "weight width")


#: The --zero-points default, as every command's help says it (mdfi.quant.recipes.default_zero_points).
ZERO_POINTS_DEFAULT = ("default: the model's recipe -- with them, and the recipe's shipped AdaRound weights and bias "
                       "shifts, for the zoo's yolov3-tiny and COCO yolov4-tiny at w8a8, w6a8, w6a6 and w4a8 from "
                       "their shipped statistics; with plain zero points for a model without a recipe at w8a8 and "
                       "w6a8 (on the shipped sample photo or --calib photos); else without (docs/quantization.md, "
                       "rounds 14, 15, 25-27)")


#: The --dw-equalize default, as every command's help says it (mdfi.quant.recipes.default_dw_equalize).
DW_EQUALIZE_DEFAULT = ("default: on for the zoo's yolo-fastest-1.1-xl at w8a8 without --calib photos, else off; "
                       "docs/quantization.md round 29")


#: The --empirical-bias default, as every command's help says it (mdfi.quant.recipes.default_empirical_bias).
EMPIRICAL_BIAS_DEFAULT = ("default: on without --calib photos for the zoo's yolo-fastest-1.1 (w8a8) and "
                          "yolo-fastest-1.1-xl (w8a8, w6a8) and for every model without a recipe that has depthwise "
                          "convolutions (w8a8), else off; docs/quantization.md rounds 30-32")


def add_format_options(g) -> None:
    """--zero-points, --dw-equalize and --empirical-bias (mdfi detect / info / golden and mdfi eval):
    the switches of the defaults mdfi.load applies by recipe (mdfi quantize has its own forms)."""
    g.add_argument("--zero-points", action=argparse.BooleanOptionalAction, default=None,
                   help="activation formats with zero points, or --no-zero-points without (as mdfi quantize; "
                        + ZERO_POINTS_DEFAULT + ")")
    g.add_argument("--dw-equalize", action=argparse.BooleanOptionalAction, default=None,
                   help="equalize the tensors only depthwise convolutions read by powers of two, or "
                        "--no-dw-equalize (as mdfi quantize; " + DW_EQUALIZE_DEFAULT + ")")
    g.add_argument("--empirical-bias", action=argparse.BooleanOptionalAction, default=None,
                   help="cancel the mean error per channel measured on the calibration inputs (the sample photo and "
                        "its mirror, or --calib), or --no-empirical-bias (as mdfi quantize --bias-correction "
                        "empirical; " + EMPIRICAL_BIAS_DEFAULT + ")")


def add_precision_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("precision")
    g.add_argument("--float", action="store_true", help="run the float32 reference path")
    g.add_argument("--bits", type=width_arg, default=None, metavar="N|wNaM",
                   help="fixed-point width 2..16 for weights and activations (default 8), or a pair such as "
                        "w4a8 or w6a8 (weight bits, activation bits; `mdfi eval` measures each)")
    g.add_argument("--engine", choices=("c", "ref"), default=None,
                   help="fixed-point backend: c (fast kernels) or ref (NumPy reference); same integers")
    g.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="threads of the C kernels (default: MDFI_THREADS or all CPUs)")
    g.add_argument("--calib", metavar="DIR", default=None,
                   help="calibrate the fixed-point formats on the photos in DIR (cached; default: a zoo "
                        "model's shipped statistics, else the shipped sample photo's)")
    add_format_options(g)
    g.add_argument("--stats", action="store_true",
                   help="print per-layer saturation counts (how many outputs each format clamped)")


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




def precision_kwargs(args: argparse.Namespace) -> dict:
    """--float / --bits / --engine -> keyword arguments of mdfi.load."""
    calib = getattr(args, "calib", None)
    zp = getattr(args, "zero_points", None)
    dw = getattr(args, "dw_equalize", None)
    eb = getattr(args, "empirical_bias", None)
    if args.float:
        if args.bits is not None or calib or zp or dw or eb or args.engine is not None:
            opt = ('--bits' if args.bits is not None else '--calib' if calib else '--engine' if args.engine else
                   '--zero-points' if zp else '--dw-equalize' if dw else '--empirical-bias')
            raise MDFIError(f"{opt} applies to the fixed-point engine; drop --float")
        return {"precision": "float"}
    kw = {"precision": "fixed", "engine": args.engine, "threads": getattr(args, "threads", None)}
    if args.bits is not None:
        kw["wbits"], kw["abits"] = args.bits
    if calib:
        if not os.path.isdir(calib):
            raise MDFIError(f"--calib {shown(calib, 200)}: "
                            f"{'not a folder (give a folder of photos)' if os.path.exists(calib) else 'no such folder'}")
        kw["calib"] = calib
    if zp is not None:
        kw["zero_points"] = zp
    if dw is not None:
        kw["dw_equalize"] = dw
    if eb is not None:
        kw["empirical_bias"] = eb
    return kw


def refuse_overwrite(output: str, *inputs: Optional[str], opt: str = "-o") -> None:
    """An output must not be one of the command's inputs (issue 9: `quantize -o` onto its own
    --weights overwrote the float weights)."""
    try:
        out = os.stat(output)                   # follows a symbolic link to an input, as a write would
    except (OSError, ValueError):
        return                                  # nothing there: nothing to overwrite
    for inp in inputs:
        try:
            st = os.stat(inp) if inp else None
        except (OSError, ValueError):
            continue
        if st is not None and (st.st_dev, st.st_ino) == (out.st_dev, out.st_ino):
            raise OutputError(f"{opt} {shown(output, 200)} is also an input ({shown(os.fspath(inp), 200)}): it would be "
                              f"overwritten; choose another output name")


def model_inputs(args: argparse.Namespace) -> list:
    """The files the model options name, and those a zoo model name implies: its shipped cfg
    and names and its cached weights (`quantize -o ~/.cache/mdfi/yolov3-tiny.weights`
    replaced the zoo's weights)."""
    found = [getattr(args, k, None) for k in ("cfg", "weights", "names", "model")]
    model = getattr(args, "model", None)
    if not getattr(args, "cfg", None) and not (model and (model.endswith(".mdfi") or os.sep in model
                                                          or os.path.isfile(model))):
        from .. import zoo
        try:
            spec = zoo.get_spec(model or zoo.DEFAULT_MODEL)
            found += [str(zoo.cfg_path(spec)), str(zoo.names_path(spec)), str(zoo.cache_dir() / spec.weights)]
        except MDFIError:
            pass
    return found


def image_inputs(spec: Optional[str]) -> list:
    """The files an ``--images``/``--calib`` folder, list file or image names (the list file
    too); nothing when it cannot be listed (the command reports that itself)."""
    if not spec:
        return []
    from ..scale.imagejobs import list_inputs
    try:
        return [spec] + [p for _, p in list_inputs(spec)]
    except MDFIError:
        return [spec]


def refuse_special_output(output: str, opt: str) -> None:
    """Outputs are written to a temporary file renamed into place: over a device or FIFO
    (`-o /dev/null`) the rename replaced the device node itself (as root)."""
    import stat
    try:
        st = os.stat(output)
    except (OSError, ValueError):
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise OutputError(f"{opt} {shown(output, 200)}: not a regular file (a device, FIFO or socket); outputs are "
                          f"written to a new file renamed into place, which would replace it")


def check_output_file(output: str, *inputs: Optional[str], opt: str = "-o", make_folder: bool = False,
                      other: Optional[tuple] = None) -> None:
    """Before any work: ``output`` is a file name (not a folder) in an existing folder (or one
    the command creates, ``make_folder``), none of ``inputs`` and not the command's ``other``
    output ``(option, path)``."""
    if not output:
        raise OutputError(f"{opt}: empty file name")
    if other and other[1] and os.path.realpath(other[1]) == os.path.realpath(output):
        raise OutputError(f"{opt} {shown(output, 200)} is also the {other[0]} file; give two names")
    if os.path.isdir(output):
        raise OutputError(f"{opt} {shown(output, 200)}: is a folder; give a file name")
    refuse_special_output(output, opt)
    parent = os.path.dirname(output) or "."
    if not make_folder and not os.path.isdir(parent):
        raise OutputError(f"{opt} {shown(output, 200)}: no such folder {shown(parent, 200)}")
    refuse_overwrite(output, *inputs, opt=opt)
