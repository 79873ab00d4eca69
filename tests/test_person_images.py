"""benchmarks/person_images.py without the network: the split table is consistent and the
duplicate check recognises a photo of another split in a resized, recompressed copy (that
check is what keeps ``val4``/``calib4`` disjoint from ``test``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
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


def test_test4_uses_packages_of_no_other_split_and_is_report_only_data():
    own = {pkg for _, pkg, _ in person_images.PHOTOS["test4"]}
    other = {pkg for sp, items in person_images.PHOTOS.items() if sp != "test4" for _, pkg, _ in items}
    assert own and not own & other
    assert "test4" not in person_images.DEFAULT_SPLITS          # written only when asked for
    assert person_images.split_dir("test4", "S", "P") == "P" and person_images.split_dir("test", "S", "P") == "S"


def test_check_photo_refuses_small_photos_and_mirrored_copies_of_earlier_ones():
    a, b = _photo(3), _photo(4)
    refs = {}
    person_images.add_thumbs(refs, "test4/a", a)
    flipped = a.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((320, 210))
    with pytest.raises(SystemExit, match="looks like test4/a \\(mirror\\)"):
        person_images.check_photo("test4", "b", flipped, refs, 200)
    c, k = person_images.check_photo("test4", "b", b, refs, 200)
    assert c < person_images.DUPLICATE_CORR and k.startswith("test4/a")
    with pytest.raises(SystemExit, match="300x199 pixels, smaller than 200"):
        person_images.check_photo("test4", "small", b.resize((300, 199)), {}, 200)
    assert person_images.check_photo("calib4", "small", b.resize((112, 112)), {}) == (0.0, "")


def test_members_reads_zip_archives(tmp_path):
    import zipfile
    buf = io.BytesIO()
    _photo(5).save(buf, "PNG")
    path = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg-1.0/tests/images/a.png", buf.getvalue())
        zf.writestr("pkg-1.0/setup.py", b"raise SystemExit('never run')")
    got = person_images._members(str(path), ["pkg-1.0/tests/images/a.png"])
    assert list(got) == ["pkg-1.0/tests/images/a.png"] and got["pkg-1.0/tests/images/a.png"] == buf.getvalue()
