"""The calibration images of a folder and the float inputs made of them (mirror images and
corner crops): what :mod:`mdfi.quant.calibrate` gathers statistics on and what the data-driven
methods of :mod:`mdfi.quant` (GPTQ, AdaRound, empirical bias, format search) run on."""

from __future__ import annotations

import os
from typing import List

import numpy as np

from ..errors import MDFIError, PathLike

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm")


def list_images(folder: PathLike) -> List[str]:
    """Image files directly in ``folder`` (not recursive), sorted by name; extensions
    :data:`IMAGE_EXTENSIONS`, case-insensitive."""
    name = os.fspath(folder)
    if not os.path.isdir(name):
        raise MDFIError(f"{name}: calibration image folder not found (or not a directory)")
    try:
        entries = sorted(os.listdir(name))
    except OSError as exc:
        raise MDFIError(f"{name}: cannot list calibration images: {exc.strerror or exc}") from None
    files = [os.path.join(name, e) for e in entries
             if e.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(name, e))]
    if not files:
        raise MDFIError(f"{name}: no calibration images in this folder (looked for "
                        f"{', '.join(x.lstrip('.') for x in IMAGE_EXTENSIONS)} files)")
    return files


#: The four 75 % corner crops of :func:`corner_crops` (left, top offsets as fractions of the image).
CORNER_CROPS = {"tl": (0.0, 0.0), "tr": (0.25, 0.0), "bl": (0.0, 0.25), "br": (0.25, 0.25)}


def corner_crops(rgb: np.ndarray) -> List[np.ndarray]:
    """The four 75 % corner crops of an RGB image (H, W, 3) u8, each scaled back up to
    (H, W) with Pillow's bilinear filter: objects seen larger and cut at the borders, as
    calibration data (docs/quantization.md, "more calibration photos")."""
    from PIL import Image
    img = Image.fromarray(np.ascontiguousarray(rgb))
    w, h = img.size
    out = []
    for fx, fy in CORNER_CROPS.values():
        box = (round(fx * w), round(fy * h), round(fx * w + 0.75 * w), round(fy * h + 0.75 * h))
        out.append(np.asarray(img.crop(box).resize((w, h), Image.Resampling.BILINEAR).convert("RGB")))
    return out


def calibration_variants(rgb: np.ndarray, *, augment: bool = True, crops: bool = False) -> List[np.ndarray]:
    """The calibration images made of one photo: itself, its mirror image (``augment``) and
    its four corner crops (``crops``), in that order."""
    vs = [rgb, rgb[:, ::-1]] if augment or crops else [rgb]
    if crops:
        vs += corner_crops(rgb)
    return [np.ascontiguousarray(v) for v in vs]


def load_inputs(network, folder: PathLike, *, augment: bool = True, crops: bool = False) -> List[np.ndarray]:
    """The float inputs of the images in ``folder`` (and of their mirror images with
    ``augment``, and of their four 75 % corner crops with ``crops``: six per photo), made as
    the model's Darknet lineage makes them (letterbox or plain resize): the calibration data
    of the data-driven methods (mdfi.quant)."""
    from ..image import load_image
    from ..preprocess import network_input
    return [network_input(img, network) for p in list_images(folder)
            for img in calibration_variants(load_image(p), augment=augment, crops=crops)]
