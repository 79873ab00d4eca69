"""Image input and output, matching what Darknet feeds its network.

Darknet reads images with ``stb_image`` asking for 3 channels
(``stbi_load(filename, &w, &h, &c, 3)``) and turns each byte ``v`` into
``(float)v/255.`` (``load_image_color``).  :func:`load_image` reproduces the *byte*
stage with Pillow and :func:`image_to_chw_float` the float stage, so that the
network input matches Darknet's bit for bit wherever the decoders agree:

* 8-bit RGB is taken as stored; grayscale is replicated to three channels.
* Alpha is **dropped**, never composited onto a background: stb ignores the alpha
  channel when 3 channels are requested, so a fully transparent pixel keeps its
  stored RGB.  Palette images are expanded through their palette (alpha dropped).
* 16-bit samples become 8 bits as stb does it: ``v >> 8`` (no rounding).
* EXIF orientation is **not** applied (Darknet does not apply it either): a phone
  photo stored sideways is detected sideways, exactly as Darknet sees it.
* Colour profiles and PNG gamma are ignored, like stb.

Known decoder differences: JPEG is decoded by libjpeg(-turbo) in Pillow and by
stb's own decoder in Darknet; the two may differ by +-1 in a few pixels.  Formats
stb cannot read (TIFF, WebP, CMYK, ...) are read with Pillow's ``convert("RGB")``.

Every failure is reported as an :class:`~mdfi.errors.ImageError` (or
:class:`~mdfi.errors.LimitError` for oversized images) whose one-line message names
the file and the reason; no Pillow/OS traceback escapes.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, LimitError, PathLike
from .limits import Limit

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS",
    "IMAGE_PIXELS_LIMIT",
    "ImageSource",
    "MAX_PIXELS_ENV",
    "decode_image",
    "image_to_chw_float",
    "load_image",
    "max_image_pixels",
    "save_image",
]

#: Anything :func:`load_image` accepts.
ImageSource = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

#: Environment variable holding the largest image (in pixels) MDFI will decode.
MAX_PIXELS_ENV = "MDFI_MAX_IMAGE_PIXELS"
#: Default for :data:`MAX_PIXELS_ENV`: 100 megapixels (300 MB as RGB bytes, 1.2 GB
#: as the float32 CHW array the network consumes).
DEFAULT_MAX_IMAGE_PIXELS = 100_000_000

# Pillow modes holding 16-bit samples; stb reduces 16-bit data with ``v >> 8``.
_MODES_16BIT = ("I;16", "I;16L", "I;16B", "I;16N")
# Formats whose 32-bit "I" mode really carries 16-bit samples (older Pillow opens
# 16-bit grayscale PNG as "I" rather than "I;16").
_FORMATS_I_IS_16BIT = ("PNG",)

# Image.MAX_IMAGE_PIXELS is process-global; serialise our temporary changes to it.
_PIL_LIMIT_LOCK = threading.Lock()


#: The image-size limit as a :class:`mdfi.limits.Limit` (same env-var parsing and
#: validation as MDFI's other safety limits).
IMAGE_PIXELS_LIMIT = Limit("image size", MAX_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS, "pixels")


def max_image_pixels() -> int:
    """The pixel limit in force: ``$MDFI_MAX_IMAGE_PIXELS`` or 100,000,000.

    Read on every call so that tests and long-running processes can change it.
    Raises :class:`LimitError` if the variable is set but is not a positive integer.
    """
    return IMAGE_PIXELS_LIMIT.value


def _one_line(exc: BaseException) -> str:
    """``str(exc)`` squeezed to one line, falling back to the exception's type name."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_size(name: str, width: int, height: int) -> None:
    """Refuse empty images and images above :func:`max_image_pixels`."""
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has zero size ({width}x{height} pixels)")
    limit = max_image_pixels()
    pixels = int(width) * int(height)
    if pixels > limit:
        raise LimitError(
            f"{name}: image is {width}x{height} = {pixels:,} pixels, more than the limit of "
            f"{limit:,} pixels; to load it set the environment variable "
            f"{MAX_PIXELS_ENV}={pixels} (or higher)")


class _PilLimit:
    """Context manager: Pillow's bomb check uses ``limit`` (None: off), then is restored.

    Pillow raises ``DecompressionBombError`` above *twice* ``MAX_IMAGE_PIXELS`` and
    only warns above it.  While decoding we set it to our limit (so Pillow still
    guards plugins that check sizes during decoding) and silence the warning; every
    oversized image is reported by :func:`_check_size` with one consistent
    :class:`LimitError`, whatever the process-wide Pillow setting is.
    """

    def __init__(self, limit: Optional[int]) -> None:
        self.limit = limit
        self._saved: Optional[int] = None
        self._warnings: Optional[warnings.catch_warnings] = None

    def __enter__(self) -> "_PilLimit":
        _PIL_LIMIT_LOCK.acquire()
        self._saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = self.limit
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow warns about damaged metadata ("Truncated File Read", "Corrupt EXIF data"):
        # the image then decodes or fails with an ImageError; the warning itself would only
        # print two lines of Python source to the user's terminal.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            assert self._warnings is not None
            self._warnings.__exit__(*exc)
        finally:
            Image.MAX_IMAGE_PIXELS = self._saved
            _PIL_LIMIT_LOCK.release()


def _bomb_error(name: str, exc: BaseException, limit: int) -> LimitError:
    """A :class:`LimitError` for Pillow's ``DecompressionBombError`` (size unknown to us)."""
    return LimitError(
        f"{name}: image is larger than the limit of {limit:,} pixels ({_one_line(exc)}); "
        f"to load it raise the environment variable {MAX_PIXELS_ENV}")


# ---------------------------------------------------------------------------------
# Pillow image -> HxWx3 uint8


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Replicate an HxW uint8 array to HxWx3 (stb's gray -> RGB conversion)."""
    return np.ascontiguousarray(np.broadcast_to(gray[:, :, None], gray.shape + (3,)))


def _round_half_up_u8(values: np.ndarray) -> np.ndarray:
    """Float values on the 0..255 scale -> uint8, rounding halves up, clipping, NaN -> 0."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a loaded Pillow image to HxWx3 uint8 the way stb_image (3 channels) would.

    Scaling rules for the high-bit-depth modes (documented in :func:`load_image`):

    * ``I;16*``: 16-bit samples, ``v >> 8``.
    * ``I`` opened from a PNG: 16-bit samples that older Pillow stores as 32-bit,
      clipped to 0..65535 then ``v >> 8``.
    * other ``I`` and ``F``: values taken on the 0..255 scale (like Pillow's own
      ``convert("L")``), rounded half up and clipped to 0..255.
    """
    mode = img.mode
    if mode == "RGB":
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))
    if mode == "L":
        return _gray_to_rgb(np.asarray(img, dtype=np.uint8))
    if mode in ("RGBA", "RGBX"):
        # Drop alpha (do not composite): stb ignores it when 3 channels are requested.
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[:, :, :3])
    if mode == "LA":
        return _gray_to_rgb(np.ascontiguousarray(np.asarray(img, dtype=np.uint8)[:, :, 0]))
    if mode in _MODES_16BIT:
        raw = np.asarray(img).astype(np.uint16, copy=False)
        return _gray_to_rgb((raw >> 8).astype(np.uint8))
    if mode == "I":
        raw = np.asarray(img, dtype=np.int64)
        if getattr(img, "format", None) in _FORMATS_I_IS_16BIT:
            return _gray_to_rgb((np.clip(raw, 0, 65535) >> 8).astype(np.uint8))
        return _gray_to_rgb(np.clip(raw, 0, 255).astype(np.uint8))
    if mode == "F":
        return _gray_to_rgb(_round_half_up_u8(np.asarray(img)))
    # "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV", "RGBa", ...: Pillow knows how.
    # For P/PA this expands the palette and drops any alpha, as stb does.
    converted = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(converted, dtype=np.uint8))


def _describe_pil(img: Image.Image) -> str:
    """The name used in messages about a Pillow image (its file name if it has one)."""
    filename = getattr(img, "filename", "") or ""
    return os.fspath(filename) if filename else "<PIL image>"


#: Working memory per pixel of preparing an image for the network, measured: the decoded
#: image (up to 4 bytes), the RGB array (3) and the float32 planes letterboxing reads (12).
WORK_BYTES_PER_PIXEL = 19


def _memory_headroom() -> Tuple[Optional[int], str]:
    """(bytes this process may still allocate, what limits it) or (None, "") where unknown:
    the address-space limit (``ulimit -v``) less what is mapped, the cgroup's memory.max
    less its usage, and MemAvailable, whichever is smallest (Linux; elsewhere unknown)."""
    best: Tuple[Optional[int], str] = (None, "")

    def take(value: Optional[int], why: str) -> None:
        nonlocal best
        if value is not None and (best[0] is None or value < best[0]):
            best = (max(0, value), why)
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft not in (resource.RLIM_INFINITY, -1):
            with open("/proc/self/statm") as fh:
                mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            take(soft - mapped, "the address-space limit (ulimit -v)")
    except (ImportError, OSError, ValueError, AttributeError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            raw = fh.read().strip()
        if raw != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                take(int(raw) - int(fh.read().strip()), "the container's memory limit")
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    take(int(line.split()[1]) * 1024, "the machine's available memory")
                    break
    except (OSError, ValueError, IndexError):
        pass
    return best


#: Images needing at most this much working memory are not checked by
#: :func:`check_work_memory`: reading the limits (three files) costs a detect() on a small photo
#: about 0.5% of its time, and a process without 32 MB to spare fails anyway.
WORK_MEMORY_UNCHECKED = 32 << 20


def check_work_memory(name: str, width: int, height: int) -> None:
    """Refuse, before decoding, an image whose preparation needs more memory than this
    process can get (:data:`WORK_BYTES_PER_PIXEL` per pixel; a 633-byte JPEG can declare
    100 megapixels).  Images needing at most :data:`WORK_MEMORY_UNCHECKED` pass unchecked."""
    need = int(width) * int(height) * WORK_BYTES_PER_PIXEL
    if need <= WORK_MEMORY_UNCHECKED:
        return
    room, why = _memory_headroom()
    if room is not None and need > room:
        raise LimitError(f"{name}: a {width}x{height} image needs about {need / 2**20:,.0f} MB to decode and "
                         f"prepare, more than the {room / 2**20:,.0f} MB left by {why}")


def _load_pil(img: Image.Image, name: str, exif: bool = False, keep_rgb: bool = False):
    """Size-check, fully decode and convert an opened Pillow image (``keep_rgb``: an image of
    mode RGB is returned as the loaded Pillow image, see :func:`decode_image`)."""
    _check_size(name, *img.size)
    check_work_memory(name, *img.size)
    limit = max_image_pixels()
    try:
        with _PilLimit(limit):
            # load() forces the full decode here, so truncated or corrupt data
            # raises now (inside this try) instead of later somewhere else.
            img.load()
    except Image.DecompressionBombError as exc:
        raise _bomb_error(name, exc, limit) from None
    except MemoryError:
        raise LimitError(f"{name}: not enough memory to decode the "
                         f"{img.size[0]}x{img.size[1]} image") from None
    except OSError as exc:
        # Pillow says "image file is truncated (N bytes not processed)" etc.
        raise ImageError(f"{name}: corrupt or truncated image data: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow plugins raise many types
        raise ImageError(f"{name}: cannot decode image data: {_one_line(exc)}") from None
    if exif:
        try:
            from PIL import ImageOps
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
                img = ImageOps.exif_transpose(img)
        except MemoryError:
            raise LimitError(f"{name}: not enough memory to rotate the image") from None
        except Exception as exc:  # noqa: BLE001 - damaged EXIF data
            raise ImageError(f"{name}: cannot apply the EXIF orientation: {_one_line(exc)}") from None
    if keep_rgb and img.mode == "RGB":
        return img
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
            return _pil_to_rgb(img)
    except MemoryError:
        raise LimitError(f"{name}: not enough memory to convert the "
                         f"{img.size[0]}x{img.size[1]} image") from None
    except Exception as exc:  # noqa: BLE001 - e.g. "conversion from La to RGB not supported"
        raise ImageError(f"{name}: cannot convert image mode {img.mode!r} to RGB: "
                         f"{_one_line(exc)}") from None


def _load_path(path: PathLike, exif: bool = False, keep_rgb: bool = False):
    """Open, decode and convert the image file at ``path``."""
    name = os.fspath(path)
    limit = max_image_pixels()  # before opening: a bad $MDFI_MAX_IMAGE_PIXELS leaks nothing
    from .inputs import open_input
    try:
        fd, _ = open_input(name, ImageError, what="image file")
    except ImageError as exc:
        # keep the image wording: "no such file", "is a directory, not an image file"
        raise ImageError(str(exc).replace(": file not found", ": no such file")) from None
    fh = os.fdopen(fd, "rb")
    with fh:
        try:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageError(f"{name}: file is empty, not an image")
            # Opening only parses the header.  Pillow's bomb check is off here so
            # that _check_size (in _load_pil) reports an oversized image with our
            # own message; it is back on, at our limit, for the actual decode.
            with _PilLimit(None):
                img = Image.open(fh)
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise _bomb_error(name, exc, limit) from None
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image, or an image format Pillow cannot "
                             f"read") from None
        except Exception as exc:  # noqa: BLE001 - header parsing raises many types
            raise ImageError(f"{name}: corrupt or unreadable image: {_one_line(exc)}") from None
        with img:
            return _load_pil(img, name, exif, keep_rgb)


# ---------------------------------------------------------------------------------
# numpy arrays

_ARRAY_HELP = ("accepted arrays: HxW, HxWx1, HxWx2, HxWx3 or HxWx4 (RGB, alpha dropped) of "
               "dtype uint8 (as is), uint16 (>> 8), bool (0/255) or float with values in "
               "[0, 1] (x 255, rounded)")


def _load_array(arr: np.ndarray) -> np.ndarray:
    """Convert an accepted numpy array to HxWx3 uint8 (see :func:`load_image`)."""
    name = "<array>"
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 2, 3, 4)):
        raise ImageError(f"{name}: cannot use an array of shape {arr.shape}; {_ARRAY_HELP}")
    height, width = int(arr.shape[0]), int(arr.shape[1])
    _check_size(name, width, height)

    dtype = arr.dtype
    # Compare kind and size, not dtype objects: byte-swapped (">u2") arrays count too.
    if dtype.kind == "u" and dtype.itemsize == 1:
        data = arr
    elif dtype.kind == "u" and dtype.itemsize == 2:
        data = (arr >> 8).astype(np.uint8)
    elif dtype.kind == "b":
        # Like a 1-bit image: white is 255.
        data = arr.astype(np.uint8) * np.uint8(255)
    elif dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all() or arr.min(initial=0.0) < 0.0 or arr.max(initial=0.0) > 1.0:
            vals = arr[finite]
            found = (f"min {vals.min():g}, max {vals.max():g}" if vals.size else "no finite values")
            raise ImageError(f"{name}: float array values must lie in [0, 1] (found {found}, "
                             f"{int((~finite).sum())} non-finite); {_ARRAY_HELP}")
        # float64 so that exact halves (0.5 * 255 = 127.5) round up reliably.
        data = np.floor(arr.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ImageError(f"{name}: cannot use an array of dtype {dtype}; {_ARRAY_HELP} "
                         f"(convert 0..255 integers with .astype(numpy.uint8))")

    if data.ndim == 2:
        return _gray_to_rgb(data)
    channels = data.shape[2]
    if channels in (1, 2):  # gray (+ alpha, dropped)
        return _gray_to_rgb(np.ascontiguousarray(data[:, :, 0]))
    # 3 channels: as is; 4 channels: alpha dropped, not composited.
    return np.ascontiguousarray(data[:, :, :3])


# ---------------------------------------------------------------------------------
# public API


def load_image(src: ImageSource, *, exif: bool = False) -> np.ndarray:
    """Load an image as an ``(H, W, 3)`` ``uint8`` C-contiguous RGB array, like Darknet.

    ``src`` may be

    * a path (``str`` or ``os.PathLike``) to any file Pillow can read;
    * a :class:`PIL.Image.Image` (decoded here if it was opened lazily);
    * a numpy array: ``HxWx3 uint8`` RGB is taken as is (the result may share memory
      with it; treat it as read-only), ``HxW`` / ``HxWx1`` grayscale is replicated,
      ``HxWx2`` / ``HxWx4`` drop the alpha channel, ``uint16`` is reduced with
      ``>> 8``, ``bool`` becomes 0/255 and floats in ``[0, 1]`` are scaled by 255
      and rounded half up.  Other dtypes and shapes raise :class:`ImageError`.

    Conversion follows stb_image asked for 3 channels (what Darknet uses): 8-bit
    RGB as stored; grayscale replicated; **alpha dropped, not composited** (RGBA,
    LA, palette with transparency); palette images expanded via their palette;
    16-bit samples reduced with ``v >> 8``; CMYK, YCbCr, LAB and HSV converted with
    Pillow's ``convert("RGB")``.  Pillow's 32-bit modes: ``I`` read from a PNG holds
    16-bit samples (``>> 8``); any other ``I`` or ``F`` image is taken on the 0..255
    scale, rounded half up and clipped to 0..255.

    **EXIF orientation is not applied** (Darknet does not apply it) unless ``exif=True``
    (files and PIL images).  Only the first frame of animated images is read.  Before
    decoding, the pixel count and the memory preparing the image needs
    (:func:`check_work_memory`) are checked.

    Raises:
        ImageError: missing file, directory, unreadable or unknown format,
            truncated or corrupt data, zero-size image, unsupported array.
        LimitError: the image has more pixels than ``$MDFI_MAX_IMAGE_PIXELS``
            (default 100,000,000); the message says how to raise the limit.
    """
    if isinstance(src, np.ndarray):
        return _load_array(src)
    if isinstance(src, Image.Image):
        return _load_pil(src, _describe_pil(src), exif)
    if isinstance(src, (str, os.PathLike)):
        return _load_path(src, exif)
    raise ImageError(f"cannot load an image from a {type(src).__name__}; pass a file path, "
                     f"a PIL.Image.Image or a numpy array")


def decode_image(src: ImageSource, *, exif: bool = False) -> Union[np.ndarray, Image.Image]:
    """:func:`load_image`, except that an image Pillow decodes to 8-bit RGB (a JPEG photo, an RGB
    PNG; a file or a Pillow image) is returned as the loaded Pillow image of mode ``"RGB"``,
    whose ``np.asarray`` is :func:`load_image`'s array: the 8-bit letterbox
    (:func:`mdfi.preprocess.image_to_pixels`) reads its pixels in place, without the copy
    into an array.  Everything else is :func:`load_image`'s array.  Same checks and errors."""
    if isinstance(src, np.ndarray):
        return _load_array(src)
    if isinstance(src, Image.Image):
        return _load_pil(src, _describe_pil(src), exif, keep_rgb=True)
    if isinstance(src, (str, os.PathLike)):
        return _load_path(src, exif, keep_rgb=True)
    raise ImageError(f"cannot load an image from a {type(src).__name__}; pass a file path, "
                     f"a PIL.Image.Image or a numpy array")


def image_to_chw_float(img: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 with each value ``v / 255``.

    Identical to Darknet's ``load_image_color``, which stores ``(float)v/255.``: the
    division is done in double there and rounded to float, here in float32 with
    IEEE correct rounding; for division, double-then-float rounding is known to be
    innocuous, so both give the same float for every byte value.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 \
            or img.shape[2] != 3:
        what = (f"array of shape {img.shape} and dtype {img.dtype}"
                if isinstance(img, np.ndarray) else type(img).__name__)
        raise ImageError(f"image_to_chw_float needs an HxWx3 uint8 array (see load_image), "
                         f"got {what}")
    chw = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    chw /= np.float32(255.0)
    return chw


def _save_format(name: str) -> str:
    """The Pillow format name to save ``name`` with, chosen by its extension."""
    ext = os.path.splitext(name)[1].lower()
    if not ext:
        raise ImageError(f"{name}: cannot tell the image format: the file name has no "
                         f"extension (use .jpg or .png)")
    Image.init()  # make sure every plugin has registered its extensions
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"{name}: Pillow cannot write {ext!r} images (use .jpg or .png)")
    return fmt


def save_image(pil_image: Union[Image.Image, np.ndarray], path: PathLike) -> None:
    """Save an image to ``path`` in the format given by its extension.

    ``.jpg``/``.jpeg`` are written with quality 95 (alpha and other modes JPEG cannot
    hold are converted to RGB first), ``.png`` losslessly, any other extension
    Pillow can write with Pillow's defaults.  Missing parent directories are
    created.  A numpy array is accepted too (via ``Image.fromarray``).

    Raises:
        ImageError: unknown or unwritable extension, or an OS error while writing.
    """
    name = os.fspath(path)
    fmt = _save_format(name)
    if isinstance(pil_image, np.ndarray):
        try:
            pil_image = Image.fromarray(pil_image)
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"{name}: cannot save an array of shape {pil_image.shape} "
                             f"and dtype {pil_image.dtype}: {_one_line(exc)}") from None
    if not isinstance(pil_image, Image.Image):
        raise ImageError(f"{name}: cannot save a {type(pil_image).__name__}; pass a "
                         f"PIL.Image.Image")

    options: dict = {}
    image = pil_image
    try:
        if fmt == "JPEG":
            options["quality"] = 95
            if image.mode not in ("RGB", "L", "CMYK"):
                # Same conversion as load_image (alpha dropped, 16-bit >> 8).
                image = Image.fromarray(_pil_to_rgb(image))
        os.makedirs(os.path.dirname(os.path.abspath(name)), exist_ok=True)
        # Pillow removes the file it created if encoding fails half way.
        image.save(name, format=fmt, **options)
    except OSError as exc:
        reason = exc.strerror if isinstance(exc.strerror, str) else _one_line(exc)
        raise ImageError(f"{name}: cannot write image: {reason}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. a mode the format cannot store
        raise ImageError(f"{name}: cannot write image as {fmt}: {_one_line(exc)}") from None
