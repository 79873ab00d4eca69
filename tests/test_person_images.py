"""benchmarks/person_images.py without the network: the split table is consistent and the
duplicate check recognises a photo of another split in a resized, recompressed copy (that
check is what keeps ``val4``/``calib4`` disjoint from ``test``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import person_images  # noqa: E402


def test_split_table_is_disjoint_and_pinned():
    names = [n for split in person_images.PHOTOS.values() for n, _, _ in split]
    members = [m for split in person_images.PHOTOS.values() for _, _, ms in split for m in ms]
    assert len(names) == len(set(names)) and len(members) == len(set(members))
    for split in person_images.PHOTOS.values():
        for _, package, _ in split:
            client, spec, fname, sha = person_images.PACKAGES[package]
            assert client in ("pip", "apt") and len(sha) == 64 and fname


def _photo(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)          # smooth structure at thumbnail scale
    return Image.fromarray(a).resize((300, 200), Image.Resampling.BICUBIC)


def test_duplicate_check_finds_resized_and_jpeg_copies_and_not_other_photos():
    a, b = _photo(1), _photo(2)
    buf = io.BytesIO()
    a.resize((450, 300)).save(buf, "JPEG", quality=70)
    copy = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    t = person_images.thumb
    assert float(t(copy) @ t(a)) > person_images.DUPLICATE_CORR
    # a mirrored copy is not found by the plain thumbnail: why other_thumbs adds the mirror images
    assert float(t(a.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) @ t(a)) < person_images.DUPLICATE_CORR
    assert float(t(b) @ t(a)) < 0.5


def test_half_crops_are_the_four_quadrants_and_the_centre():
    img = Image.fromarray(np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8))
    crops = dict(person_images.half_crops(img))
    assert list(crops) == ["htl", "htr", "hbl", "hbr", "hc"]
    assert all(c.size == img.size for c in crops.values())
