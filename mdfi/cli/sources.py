"""What ``mdfi detect`` reads: image files, folders, list files, videos, webcams and streams.

:func:`expand_sources` turns the command line's SOURCE arguments into a list of
:class:`Source` items *before* any model is loaded, so a typo fails in a second:

* an image file (any extension Pillow reads);
* a folder: its image files, sorted by name (not recursive);
* a ``.txt`` list file: one image path per line (blank lines and ``#`` comments skipped;
  relative paths are taken from the list file's folder, then from the current folder);
* a video file (``.mp4``, ``.avi``, ``.mkv``, ``.mov``, ``.webm`` ...): frames as they are
  decoded;
* a webcam (``0``, ``1``... or ``/dev/videoN``) or a stream URL (``rtsp://``, ``rtmp://``,
  ``http(s)://``, ``udp://``, ``tcp://``).

Videos, webcams and streams need the optional ``video`` extra (``pip install "mdfi[video]"``,
PyAV, FFmpeg's libraries in a wheel).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ..errors import ImageError, MDFIError, shown

__all__ = ["Source", "expand_sources", "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "open_video",
           "VideoWriter", "require_video"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm", ".jfif", ".jpe", ".tga", ".ico")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv",
                    ".ts", ".mts", ".3gp", ".ogv", ".asf")
_STREAM = re.compile(r"(rtsp|rtsps|rtmp|rtmps|http|https|udp|tcp|srt)://", re.I)
#: Lines read from one list file (a list of a million images is fine; more is a mistake).
MAX_LIST_LINES = 10_000_000
MAX_LIST_BYTES = 1 << 30


@dataclass(frozen=True)
class Source:
    """One input: ``kind`` is "image", "video" (a file) or "stream" (webcam or URL)."""

    kind: str
    path: str            # as given (or as listed), used in messages and output lines
    origin: str = ""     # the argument it came from (folder or list file), if any

    @property
    def is_video(self) -> bool:
        return self.kind in ("video", "stream")


def _is_stream(arg: str) -> bool:
    return bool(_STREAM.match(arg)) or arg.isdigit() or bool(re.fullmatch(r"/dev/video\d+", arg))


def _folder_images(folder: str) -> List[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise ImageError(f"{folder}: cannot list the folder: {exc.strerror or exc}") from None
    return [os.path.join(folder, n) for n in names
            if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(folder, n))]


def _list_file(path: str) -> List[str]:
    from ..inputs import read_text
    text = read_text(path, ImageError, what="list of images", max_bytes=MAX_LIST_BYTES)
    base = os.path.dirname(path)
    out = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if len(out) >= MAX_LIST_LINES:
            raise ImageError(f"{path}: more than {MAX_LIST_LINES:,} images listed")
        cand = line if os.path.isabs(line) else os.path.join(base, line)
        if not os.path.isabs(line) and not os.path.exists(cand) and os.path.exists(line):
            cand = line
        if not os.path.isfile(cand):
            why = ("is a folder" if os.path.isdir(cand) else
                   "not a regular file (a device, FIFO or socket)" if os.path.exists(cand) else "no such image file")
            raise ImageError(f"{path}:{lineno}: {shown(line)}: {why}")
        out.append(cand)
    if not out:
        raise ImageError(f"{path}: the list names no image (one path per line)")
    return out


def expand_sources(args: List[str]) -> List[Source]:
    """Check and expand SOURCE arguments (see the module docstring).  Raises a one-line
    :class:`~mdfi.errors.MDFIError` for the first one that does not exist or cannot be used."""
    out: List[Source] = []
    for arg in args:
        if not isinstance(arg, str) or not arg:
            raise ImageError("empty input name")
        if _is_stream(arg) and not os.path.isfile(arg):
            out.append(Source("stream", arg))
            continue
        try:
            st = os.stat(arg)
        except FileNotFoundError:
            raise ImageError(f"{shown(arg, 200)}: no such file or folder") from None
        except OSError as exc:
            raise ImageError(f"{shown(arg, 200)}: cannot read: {exc.strerror or exc}") from None
        ext = os.path.splitext(arg)[1].lower()
        if stat.S_ISDIR(st.st_mode):
            images = _folder_images(arg)
            if not images:
                raise ImageError(f"{arg}: folder holds no image files ({', '.join(IMAGE_EXTENSIONS[:5])} ...)")
            out += [Source("image", p, arg) for p in images]
        elif not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{arg}: not a regular file (a device, FIFO or socket); MDFI reads regular files only")
        elif ext == ".txt":
            out += [Source("image", p, arg) for p in _list_file(arg)]
        elif ext in VIDEO_EXTENSIONS:
            out.append(Source("video", arg))
        else:
            out.append(Source("image", arg))
    return out


# ---------------------------------------------------------------------------------------------
# video (optional extra)
def require_video(what: str):
    """The ``av`` module (PyAV), or a one-line error saying how to install it."""
    try:
        import av  # noqa: F401
    except ImportError:
        raise MDFIError(f"{what}: videos, webcams and streams need the optional video extra: "
                        f"pip install \"mdfi[video]\" (PyAV)") from None
    return av


def open_video(src: Source):
    """Open a video file, webcam or stream; returns (container, stream, frames/s or None)."""
    av = require_video(src.path)
    path, kw = src.path, {}
    if src.kind == "stream" and (path.isdigit() or path.startswith("/dev/video")):
        path = f"/dev/video{path}" if path.isdigit() else path
        kw["format"] = "v4l2"
    if src.kind == "stream" and path.lower().startswith(("rtsp://", "rtsps://")):
        kw["options"] = {"rtsp_transport": "tcp"}
    try:
        container = av.open(path, mode="r", timeout=(10.0, 30.0), **kw)
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors of every kind
        raise ImageError(f"{shown(src.path, 200)}: cannot open video: {' '.join(str(exc).split())[:200]}") from None
    if not container.streams.video:
        container.close()
        raise ImageError(f"{src.path}: has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    return container, stream, fps


def iter_frames(src: Source) -> Iterator[Tuple[int, np.ndarray, Optional[float]]]:
    """(frame index, HxWx3 uint8 RGB, frames/s of the source) for every frame, decoded as it
    comes (a stream is never read ahead).  Decoding errors are one-line ImageErrors."""
    from ..image import max_image_pixels
    container, stream, fps = open_video(src)
    try:
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.width * frame.height > max_image_pixels():
                    raise ImageError(f"{src.path}: frames of {frame.width}x{frame.height} pixels exceed "
                                     f"the image limit (MDFI_MAX_IMAGE_PIXELS)")
                yield index, frame.to_ndarray(format="rgb24"), fps
                index += 1
        except MDFIError:
            raise
        except Exception as exc:  # noqa: BLE001 - av.error.* while decoding
            if index == 0:
                raise ImageError(f"{src.path}: cannot decode video: {' '.join(str(exc).split())[:200]}") from None
            import sys
            print(f"mdfi: warning: {src.path}: decoding stopped after {index} frames: "
                  f"{' '.join(str(exc).split())[:200]}", file=sys.stderr)
    finally:
        container.close()


class VideoWriter:
    """Annotated frames into a video file (H.264 when the FFmpeg build has it, else MPEG-4
    part 2), written to a temporary name and renamed into place when closed."""

    CODECS = ("libx264", "h264", "mpeg4")

    def __init__(self, path: str, fps: Optional[float]):
        self.path = path
        self.fps = fps if fps and 0 < fps < 1000 else 25.0
        self.av = require_video(path)
        root, ext = os.path.splitext(path)
        if ext.lower() not in (".mp4", ".mkv", ".mov", ".avi", ".m4v"):
            raise MDFIError(f"{path}: annotated videos are written as .mp4, .mkv, .mov, .avi or .m4v")
        self.tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(root)}.{os.getpid()}.part{ext}")
        self.container = None
        self.stream = None
        self.frames = 0

    def _open(self, width: int, height: int) -> None:
        from fractions import Fraction
        from ..errors import OutputError
        try:
            self.container = self.av.open(self.tmp, mode="w")
        except Exception as exc:  # noqa: BLE001
            raise OutputError(f"{self.path}: cannot write video: {' '.join(str(exc).split())[:200]}") from None
        rate = Fraction(self.fps).limit_denominator(1001)
        for codec in self.CODECS:
            try:
                self.stream = self.container.add_stream(codec, rate=rate)
                break
            except Exception:  # noqa: BLE001 - codec missing from this FFmpeg build
                continue
        if self.stream is None:
            raise OutputError(f"{self.path}: no H.264 or MPEG-4 encoder in this FFmpeg build")
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        from ..errors import OutputError
        h, w = rgb.shape[:2]
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")   # yuv420p: even sizes
        if self.container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        try:
            frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
        except Exception as exc:  # noqa: BLE001
            raise OutputError(f"{self.path}: cannot write video: {' '.join(str(exc).split())[:200]}") from None
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        from ..errors import OutputError
        if self.container is None:
            return
        try:
            if keep:
                for packet in self.stream.encode():
                    self.container.mux(packet)
            self.container.close()
            if keep:
                os.replace(self.tmp, self.path)
        except Exception as exc:  # noqa: BLE001
            raise OutputError(f"{self.path}: cannot write video: {' '.join(str(exc).split())[:200]}") from None
        finally:
            self.container = None
            if os.path.exists(self.tmp):
                try:
                    os.unlink(self.tmp)
                except OSError:
                    pass
