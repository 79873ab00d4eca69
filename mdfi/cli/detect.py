"""``mdfi detect``: images, folders, list files, videos, webcams and streams.

Order of work (docs/hardening.md): every argument is checked -- inputs exist, the output
makes sense and is writable, options combine -- before the model is loaded (which may
download and quantize).  Outputs are written to a temporary name and renamed into place;
an output never overwrites an input, and inputs that share a base name get distinct output
names (a note says which).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from typing import Dict, List, Optional, Set

import numpy as np

from .common import add_model_args, add_precision_args, check_model_args, load_model_from_args, \
    positive_int, precision_kwargs, refuse_special_output, unit_float
from ..errors import ImageError, LimitError, MDFIError, OutputError, shown
from ..progress import StatusLine
from .sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Source, expand_sources

__all__ = ["add_detect_parser", "cmd_detect"]


def add_detect_parser(sub) -> None:
    d = sub.add_parser(
        "detect", help="detect objects in images, folders, lists, videos or streams",
        description="Print detections like Darknet and write annotated images (or videos).",
        epilog="SOURCE is an image file, a folder of images, a .txt file listing images (one per "
               "line), a video file, a webcam number (0) or a stream URL (rtsp://, http://...); videos, "
               "webcams and streams need `pip install \"mdfi[video]\"`.  The first run fetches the "
               "default yolov3-tiny weights into $MDFI_HOME (default ~/.cache/mdfi).")
    d.add_argument("images", nargs="+", metavar="SOURCE",
                   help="image, folder, list file (.txt), video, webcam number or stream URL")
    add_model_args(d)
    d.add_argument("--thresh", type=unit_float("--thresh"), default=0.25,
                   help="detection threshold (default 0.25)")
    d.add_argument("--nms", type=unit_float("--nms"), default=0.45, help="NMS IoU threshold (default 0.45)")
    d.add_argument("--out", metavar="PATH",
                   help="annotated output: a file for one image (default predictions.jpg) or video "
                        "(predictions.mp4), a folder for several inputs (default predictions/); 'none' to skip")
    d.add_argument("--json", action="store_true", help="print one JSON object per image (or frame) on stdout")
    o = d.add_argument_group("outputs")
    o.add_argument("--save-txt", action="store_true",
                   help="also write YOLO-format labels (class x_center y_center width height confidence, "
                        "relative to the image) to labels/NAME.txt in the output folder")
    o.add_argument("--save-crops", action="store_true",
                   help="also write each detection's crop to crops/CLASS/NAME.jpg in the output folder")
    o.add_argument("--classes", metavar="LIST",
                   help="keep only these classes: ids or names, e.g. 0,2 or person,car")
    o.add_argument("--hide-labels", action="store_true", help="draw boxes without labels")
    o.add_argument("--hide-conf", action="store_true", help="labels without confidences")
    o.add_argument("--line-width", type=positive_int, metavar="N",
                   help="box line width in pixels (default: scales with the image)")
    o.add_argument("--exif", action="store_true",
                   help="apply the EXIF orientation of photos first (Darknet, and the default, ignore it)")
    add_precision_args(d)
    d.set_defaults(func=cmd_detect)


# ------------------------------------------------------------------------------------------
# outputs
def _existing_ancestor(path: str) -> str:
    p = os.path.abspath(path)
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return p


def _check_writable_folder(folder: str, what: str) -> None:
    """``folder`` exists (it is created here) and a file can be created in it: its first
    existing ancestor must be a folder, not a file; a read-only folder or file system, or
    one we lack permission for, is refused now rather than after the model is loaded."""
    import tempfile
    anc = _existing_ancestor(folder)
    if not os.path.isdir(anc):
        raise OutputError(f"{what} {shown(folder, 200)}: {anc} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".mdfi-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{what} {shown(folder, 200)}: cannot write there "
                          f"({exc.strerror or exc}; read-only or no permission?)") from None


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _safe_name(text: str) -> str:
    return re.sub(r"[^\w.+-]+", "_", text).strip("._") or "unnamed"


class OutputPlan:
    """Where every output of a run goes (see :func:`plan_outputs`)."""

    def __init__(self, mode: str, target: str, inputs: Set[str]):
        self.mode = mode                # "none", "file" or "dir"
        self.target = target            # the file (mode "file") or folder ("dir", "none": side outputs)
        self.inputs = inputs            # real paths of the inputs: never written
        self.taken: Dict[str, str] = {}  # lower-case output stem -> source path

    @property
    def folder(self) -> str:
        return (os.path.dirname(self.target) or ".") if self.mode == "file" else self.target

    def stem_for(self, src: Source) -> str:
        """A unique output stem for ``src`` (``photo``, ``photo_2``...), said when renamed."""
        base = _safe_name(os.path.splitext(os.path.basename(src.path.rstrip("/")))[0]) if src.kind != "stream" \
            else _safe_name(src.path.rsplit("/", 1)[-1] or "stream")
        stem, n = base, 1
        while stem.lower() in self.taken or self._is_input(stem):
            n += 1
            stem = f"{base}_{n}"
        if n > 1:
            print(f"note: {src.path}: another input has the name {base!r}: its outputs are named {stem!r}",
                  file=sys.stderr)
        self.taken[stem.lower()] = src.path
        return stem

    def _is_input(self, stem: str) -> bool:
        if self.mode != "dir":
            return False
        return any(_real(os.path.join(self.target, stem + ext)) in self.inputs for ext in (".jpg", ".mp4"))

    def image_target(self, stem: str) -> Optional[str]:
        if self.mode == "none":
            return None
        return self.target if self.mode == "file" else os.path.join(self.target, stem + ".jpg")

    def video_target(self, stem: str) -> Optional[str]:
        if self.mode == "none":
            return None
        return self.target if self.mode == "file" else os.path.join(self.target, stem + ".mp4")


def plan_outputs(sources: List[Source], out: Optional[str], side: bool) -> OutputPlan:
    """Check ``--out`` against the inputs, before any model is loaded.

    One input: ``--out`` is a file (an existing folder: the file goes into it), default
    ``predictions.jpg`` (``predictions.mp4`` for a video).  Several inputs, a folder or a
    list: ``--out`` is a folder, default ``predictions/``.  ``side``: labels or crops are
    written too (into the output folder; with ``--out none`` into ``predictions/``)."""
    from ..image import _save_format
    inputs = {_real(s.path) for s in sources if s.kind != "stream"}
    many = len(sources) > 1 or any(s.origin for s in sources)
    video = len(sources) == 1 and sources[0].is_video
    if out == "none":
        plan = OutputPlan("none", "predictions", inputs)
        if side:
            _check_writable_folder(plan.target, "output folder")
        return plan
    if not many:
        src = sources[0]
        target = out or ("predictions.mp4" if video else "predictions.jpg")
        if os.path.isdir(target) or target.endswith(("/", os.sep)):     # `--out o/`: a folder, made below
            stem = _safe_name(os.path.splitext(os.path.basename(src.path))[0])
            target = os.path.join(target, stem + (".mp4" if video else ".jpg"))
        ext = os.path.splitext(target)[1].lower()
        if video and ext not in (".mp4", ".mkv", ".mov", ".avi", ".m4v"):
            raise OutputError(f"--out {shown(target, 200)}: a video's annotated output is a .mp4, .mkv, .mov, "
                              f".avi or .m4v file")
        if not video:
            try:
                _save_format(target)
            except ImageError as exc:
                raise OutputError(f"--out {exc}") from None
        if _real(target) in inputs:
            raise OutputError(f"--out {shown(target, 200)} is the input itself: it would be overwritten; "
                              f"choose another output name")
        refuse_special_output(target, "--out")
        _check_writable_folder(os.path.dirname(target) or ".", "--out")
        return OutputPlan("file", target, inputs)
    folder = out or "predictions"
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise OutputError(f"--out {shown(folder, 200)}: is a file; several inputs need an output folder")
    if out and os.path.splitext(folder)[1].lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS \
            and not os.path.isdir(folder):
        raise OutputError(f"--out {shown(folder, 200)}: several inputs write several files: give a folder")
    _check_writable_folder(folder, "--out")
    return OutputPlan("dir", folder, inputs)


def _write_atomic(path: str, write) -> None:
    """``write(tmp)`` then rename to ``path``: a full disk or an error leaves no partial file."""
    folder = os.path.dirname(path) or "."
    root, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(folder, f".{root}.{os.getpid()}.part{ext}")
    try:
        os.makedirs(folder, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except ImageError as exc:
        raise OutputError(str(exc).replace(tmp, path)) from None
    finally:
        if os.path.exists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _yolo_lines(dets, width: int, height: int) -> str:
    lines = []
    for d in dets:
        x1, y1, x2, y2 = d.box
        lines.append(f"{d.class_id} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {d.confidence:.6f}\n")
    return "".join(lines)


class SideOutputs:
    """``--save-txt`` and ``--save-crops`` files in the output folder."""

    def __init__(self, plan: OutputPlan, txt: bool, crops: bool):
        self.txt, self.crops = txt, crops
        self.labels_dir = os.path.join(plan.folder, "labels")
        self.crops_dir = os.path.join(plan.folder, "crops")
        self.crop_names: Set[str] = set()

    def write(self, stem: str, rgb, dets) -> None:
        if self.txt:
            text = _yolo_lines(dets, rgb.shape[1], rgb.shape[0])
            target = os.path.join(self.labels_dir, stem + ".txt")

            def write_txt(tmp: str) -> None:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text)
            _write_atomic(target, write_txt)
        if self.crops:
            from ..image import save_image
            h, w = rgb.shape[:2]
            for d in dets:
                x1, y1 = max(0, int(d.box[0])), max(0, int(d.box[1]))
                x2, y2 = min(w, max(x1 + 1, int(round(d.box[2])))), min(h, max(y1 + 1, int(round(d.box[3]))))
                if x1 >= w or y1 >= h:
                    continue
                folder = os.path.join(self.crops_dir, _safe_name(d.label))
                name, n = stem, 1
                while os.path.join(folder, name).lower() in self.crop_names:
                    n += 1
                    name = f"{stem}_{n}"
                self.crop_names.add(os.path.join(folder, name).lower())
                crop = rgb[y1:y2, x1:x2]
                _write_atomic(os.path.join(folder, name + ".jpg"), lambda tmp, c=crop: save_image(c, tmp))


# ------------------------------------------------------------------------------------------
class Progress:
    """``mdfi: 12/500 images, 9.8 images/s, about 50 s left`` on stderr: rewritten in place on a
    terminal, else a line every few seconds."""

    def __init__(self, total: Optional[int], unit: str, enabled: bool):
        self.total, self.unit = total, unit
        self.done = 0
        self.line = StatusLine(enabled=enabled, interval_tty=0.5, interval_log=5.0, clock=time.perf_counter)
        self.t0 = self.line.clock()

    def step(self) -> None:
        self.done += 1
        final = self.done == self.total
        if final or self.line.due():
            self.line.write(self._text(final), final=final)

    def rate(self) -> float:
        return self.done / max(self.line.clock() - self.t0, 1e-9)

    def _text(self, final: bool) -> str:
        rate = self.rate()
        text = f"mdfi: {self.done}{'/' + str(self.total) if self.total else ''} {self.unit}, {rate:.1f} {self.unit}/s"
        if self.total and not final and rate > 0:
            text += f", about {(self.total - self.done) / rate:.0f} s left"
        return text


def parse_classes(text: Optional[str], names: List[str], num_classes: Optional[int] = None) -> Optional[Set[int]]:
    """``--classes 0,2,person`` -> class ids (names matched case-insensitively); an id must be
    below ``num_classes`` (the model's heads' class count; default: the number of names)."""
    if not text:
        return None
    num_classes = len(names) if num_classes is None else num_classes
    lower = {n.lower(): i for i, n in reversed(list(enumerate(names)))}
    out: Set[int] = set()
    for tok in (t.strip() for t in text.split(",")):
        if not tok:
            continue
        if tok.isdigit():
            if int(tok) >= num_classes:             # would keep nothing, silently
                raise MDFIError(f"--classes: {shown(tok)} is not a class id of this model (it has classes "
                                f"0..{num_classes - 1})")
            out.add(int(tok))
        elif tok.lower() in lower:
            out.add(lower[tok.lower()])
        else:
            import difflib
            close = difflib.get_close_matches(tok.lower(), list(lower), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise MDFIError(f"--classes: {shown(tok)!r} is not a class of this model{hint}")
    return out


# ------------------------------------------------------------------------------------------
def cmd_detect(args: argparse.Namespace) -> int:
    from ..detection import detections_to_json
    from ..draw import draw_detections

    # 1. everything cheap first: options, inputs, outputs
    check_model_args(args)
    if args.stats and args.float:
        raise MDFIError("--stats reports fixed-point saturation; drop --float")
    kw = precision_kwargs(args)
    sources = expand_sources(args.images)
    if any(s.is_video for s in sources):
        from .sources import require_video
        require_video(next(s.path for s in sources if s.is_video))
    plan = plan_outputs(sources, args.out, args.save_txt or args.save_crops)
    side = SideOutputs(plan, args.save_txt, args.save_crops)
    if args.classes is not None and not args.classes.strip(", "):
        raise MDFIError("--classes: empty list")

    # 2. the model (may download and quantize)
    model = load_model_from_args(args, **kw)
    heads = [l.classes for l in model.network.layers if l.kind in ("yolo", "region")]
    keep = parse_classes(args.classes, model.names, max(heads) if heads else len(model.names))
    draw_kw = dict(num_classes=max(len(model.names), 1), line_width=args.line_width,
                   labels=not args.hide_labels, conf=not args.hide_conf)
    images = [s for s in sources if not s.is_video]
    progress = Progress(len(images), "images", len(images) > 1)

    def report(name: str, rgb, dets, ms: float, frame: Optional[int] = None) -> None:
        h, w = rgb.shape[:2]
        if args.json:
            obj = detections_to_json(name, w, h, dets)
            if frame is not None:
                obj["frame"] = frame
            print(json.dumps(obj), flush=True)
        else:
            where = name if frame is None else f"{name} frame {frame}"
            print(f"{where}: {len(dets)} detection{'s' * (len(dets) != 1)} in {ms:.0f} ms "
                  f"({model.name}, {model.engine.name})")
            for d in dets:
                print(f"{d.label}: {d.confidence * 100:.0f}%  box=({d.box[0]:.0f}, {d.box[1]:.0f}, "
                      f"{d.box[2]:.0f}, {d.box[3]:.0f})")

    def run(rgb):
        stats = {} if args.stats else None
        dets = model.detect(rgb, thresh=args.thresh, nms=args.nms, stats=stats)
        if keep is not None:
            dets = type(dets)([d for d in dets if d.class_id in keep])
        return dets, stats

    # decode image i+1 on one helper thread while image i runs (mdfi.readahead): results and
    # errors arrive in input order, at most one image is decoded ahead
    from ..image import load_image
    from ..readahead import read_ahead, read_ahead_pays
    overlap = read_ahead_pays(getattr(model.engine, "threads", 1) or 1)
    decoded = read_ahead(images, lambda s: load_image(s.path, exif=args.exif), enabled=overlap)
    try:
        failed = _image_loop(args, model, sources, plan, side, images, decoded, progress, run, report,
                             draw_detections, draw_kw, overlap and len(images) > 1)
    finally:
        decoded.close()
    if len(images) > 20 and plan.mode != "none":
        print(f"wrote {len(images) - failed} annotated images to {plan.target}", file=sys.stderr)
    if failed:
        print(f"mdfi: error: {failed} of {len(images)} images could not be read", file=sys.stderr)
        return 2
    return 0


def _image_loop(args, model, sources, plan, side, images, decoded, progress, run, report, draw_detections,
                draw_kw, overlap: bool) -> int:
    """Every source in order (``decoded`` yields the images' arrays in order); the failures.
    With ``overlap``, image i's annotated JPEG is drawn and written on a helper thread while
    image i+1 runs; its "wrote" line and any error come before anything about image i+1."""
    from ..image import save_image
    writer = _Writer(overlap)
    failed = 0
    try:
        for src in sources:
            if src.is_video:
                writer.finish()
                _detect_video(src, plan.stem_for(src), plan, side, run, report, draw_detections, draw_kw)
                continue
            t0 = time.perf_counter()
            try:
                got, ok, rgb = next(decoded)
                assert got is src
                if not ok:
                    raise rgb
                dets, stats = run(rgb)
            except (ImageError, LimitError) as exc:
                if len(sources) == 1:
                    raise
                writer.finish()
                plan.stem_for(src)
                failed += 1
                print(f"mdfi: error: {exc}", file=sys.stderr)
                progress.step()
                continue
            ms = (time.perf_counter() - t0) * 1e3
            writer.finish()
            stem = plan.stem_for(src)
            if stats is not None:
                from ..quant.qmodel import saturation_report
                print(f"{src.path}: saturated outputs per layer (values the format could not hold, clamped):\n"
                      f"{saturation_report(model.quantized, stats)}", file=sys.stderr)
            report(src.path, rgb, dets, ms)
            target = plan.image_target(stem)
            if target is not None:
                def write(rgb=rgb, dets=dets, target=target) -> None:
                    annotated = draw_detections(rgb, dets, **draw_kw)
                    _write_atomic(target, lambda tmp: save_image(annotated, tmp))
            side.write(stem, rgb, dets)
            if target is not None:
                # "wrote" and this image's progress step come when the write is done
                writer.start(write, f"wrote {target}" if len(images) <= 20 else None, progress.step)
                if src is images[-1]:
                    writer.finish()
            else:
                progress.step()
        writer.finish()
    finally:
        writer.close()
    return failed


class _Writer:
    """One annotated image written at a time: on a helper thread (``overlap``) or at once."""

    def __init__(self, overlap: bool):
        self.pool = None
        if overlap:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdfi-read-ahead-write")
        self.pending = None

    def start(self, write, message: Optional[str], then) -> None:
        """Run ``write()``, then print ``message`` and call ``then()``."""
        self.finish()
        if self.pool is None:
            write()
            self._done(message, then)
        else:
            self.pending = (self.pool.submit(write), message, then)

    def finish(self) -> None:
        """Wait for the pending write: its message, or its error (raised here)."""
        if self.pending is not None:
            future, message, then = self.pending
            self.pending = None
            future.result()
            self._done(message, then)

    @staticmethod
    def _done(message: Optional[str], then) -> None:
        if message:
            print(message, file=sys.stderr)
        then()

    def close(self) -> None:
        if self.pool is not None:
            if self.pending is not None:       # an error elsewhere: let the write end, quietly
                self.pending[0].cancel()
                self.pending = None
            self.pool.shutdown(wait=True, cancel_futures=True)


def _detect_video(src: Source, stem: str, plan: OutputPlan, side: SideOutputs, run, report, draw, draw_kw) -> None:
    """Frames as they are decoded: detect, report, draw into the output video."""
    from .sources import VideoWriter, iter_frames
    target = plan.video_target(stem)
    writer = None
    t_start = time.perf_counter()
    frames = 0
    ok = False
    progress = Progress(None, "frames", True)
    try:
        for index, rgb, fps in iter_frames(src):
            t0 = time.perf_counter()
            dets, _ = run(rgb)
            report(src.path, rgb, dets, (time.perf_counter() - t0) * 1e3, frame=index)
            if target is not None:
                if writer is None:
                    writer = VideoWriter(target, fps)
                writer.write(np.asarray(draw(rgb, dets, **draw_kw)))
            if side.txt or side.crops:
                side.write(f"{stem}_{index:06d}", rgb, dets)
            frames += 1
            progress.step()
        ok = True
    finally:
        if writer is not None:
            writer.close(keep=ok or frames > 0)
    dt = time.perf_counter() - t_start
    print(f"{src.path}: {frames} frames in {dt:.1f} s ({frames / max(dt, 1e-9):.1f} frames/s)"
          f"{f'; wrote {target}' if target is not None and frames else ''}", file=sys.stderr)
