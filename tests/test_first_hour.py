"""Issue 9 parts A (I/O and data loss), B (the first hour) and C (what users expect from
`detect`): each test names its item."""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mdfi
from mdfi.cli import build_parser, main
from mdfi.errors import MDFIError

from conftest import DARKNET, MDFI_TEST_HOME, REPO, run_python

SAMPLE = REPO / "mdfi" / "data" / "sample.jpg"
MINI = DARKNET / "mini-yolov3"
MINI_ARGS = ["--cfg", str(MINI / "mini-yolov3.cfg"), "--weights", str(MINI / "mini-yolov3.weights")]
#: The default model (yolov3-tiny, 8-bit, quantized once per session into the test MDFI_HOME):
#: real detections, about 0.1 s an image.  (The random-weight mini network finds 270,000
#: "detections" on a photo.)
FAST: list = []


def err_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.startswith("mdfi: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def photos(tmp_path):
    """x/photo.jpg, y/photo.jpg, x/photo.png: three inputs sharing a base name."""
    for rel in ("x/photo.jpg", "y/photo.jpg", "x/photo.png"):
        (tmp_path / rel).parent.mkdir(exist_ok=True)
        Image.open(SAMPLE).resize((180, 96)).save(tmp_path / rel)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# item 15: arguments are checked before any download or quantization
@pytest.mark.parametrize("args, words", [
    (["detect", "missing.jpg"], "missing.jpg: no such file or folder"),
    (["detect", "SAMPLE", "--out", "FILE/sub/out.jpg"], "is a file, not a folder"),
    (["detect", "SAMPLE", "--out", "out.xyz"], "cannot write '.xyz' images"),
    (["detect", "SAMPLE", "--names", "missing.names"], "--names missing.names: file not found"),
    (["detect", "SAMPLE", "--model", "yolov3-tin"], "did you mean yolov3-tiny?"),
    (["eval", "--images", "nodir"], "--images nodir: no such folder, list file or image"),
    (["eval", "--images", ".", "--labels", "missing.json"], "--labels missing.json: no such file"),
    (["golden", "missing.jpg", "-o", "g"], "missing.jpg: no such image file"),
    (["quantize", "--cfg", "missing.cfg", "--weights", "w", "-o", "m.mdfi"], "--cfg missing.cfg: file not found"),
])
def test_arguments_are_checked_before_any_download(args, words, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "empty-home"))     # nothing cached ...
    monkeypatch.setenv("MDFI_OFFLINE", "1")                           # ... and nothing may be fetched
    (tmp_path / "FILE").write_text("x")
    args = [str(SAMPLE) if a == "SAMPLE" else a for a in args]
    assert main(args) == 2
    assert words in err_line(capsys)
    assert not (tmp_path / "empty-home" / "quantized").exists()


# ---------------------------------------------------------------------------------------------
# item 5: ordinary I/O errors of multi-image detect
def test_output_errors_are_one_line(photos, tmp_path, monkeypatch, capsys):
    inputs = [str(photos / "x" / "photo.jpg"), str(photos / "y" / "photo.jpg")]
    (tmp_path / "afile").write_text("x")
    cases = [
        (["--out", str(tmp_path / "afile")], "is a file; several inputs need an output folder"),
        (["--out", str(tmp_path / "afile" / "sub")], "is a file, not a folder"),
        (["--out", "/proc/mdfi-no-such-dir"], "/proc"),                    # a read-only file system
    ]
    for extra, words in cases:
        assert main(["detect", *inputs, *extra]) == 2
        assert words in err_line(capsys)
    # full disk: the write fails half way -> one line, no partial or temporary file left
    from mdfi import image

    def full_disk(img, path):
        Path(path).write_bytes(b"\xff\xd8 partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(image, "save_image", full_disk)
    out = tmp_path / "out"
    assert main(["detect", *inputs, "--out", str(out)]) == 2
    assert "No space left on device" in err_line(capsys)
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(photos, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert main(["detect", str(photos / "x" / "photo.jpg"), str(photos / "y" / "photo.jpg"),
                 "--out", str(ro / "out")]) == 2
    assert "read-only" in err_line(capsys)


# ---------------------------------------------------------------------------------------------
# item 13: data loss
def test_out_equal_to_the_input_is_refused(photos, capsys):
    photo = photos / "x" / "photo.jpg"
    before = photo.read_bytes()
    assert main(["detect", str(photo), "--out", str(photo)]) == 2
    assert "is the input itself" in err_line(capsys)
    assert photo.read_bytes() == before


def test_inputs_sharing_a_name_get_distinct_outputs(photos, tmp_path, capsys):
    inputs = [photos / "x" / "photo.jpg", photos / "y" / "photo.jpg", photos / "x" / "photo.png"]
    before = [p.read_bytes() for p in inputs]
    assert main(["detect", *map(str, inputs), "--out", str(photos / "x"), "--save-txt"]) == 0
    err = capsys.readouterr().err
    # x/photo.jpg is an input inside the output folder: never overwritten
    assert [p.read_bytes() for p in inputs] == before
    assert sorted(os.listdir(photos / "x")) == ["labels", "photo.jpg", "photo.png", "photo_2.jpg", "photo_3.jpg",
                                                "photo_4.jpg"]
    assert sorted(os.listdir(photos / "x" / "labels")) == ["photo_2.txt", "photo_3.txt", "photo_4.txt"]
    assert err.count("another input has the name 'photo'") == 3


def test_quantize_and_calibrate_refuse_to_overwrite_their_inputs(tmp_path, capsys):
    w = tmp_path / "m.weights"
    shutil.copyfile(MINI / "mini-yolov3.weights", w)
    before = w.read_bytes()
    for cmd in (["quantize"], ["calibrate", "--images", str(tmp_path)]):
        assert main([*cmd, "--cfg", str(MINI / "mini-yolov3.cfg"), "--weights", str(w), "-o", str(w)]) == 2
        assert "is also an input" in err_line(capsys)
    assert w.read_bytes() == before


# ---------------------------------------------------------------------------------------------
# item 17: one default quantization
def test_quantize_default_is_the_model_recipe(tmp_path, tiny_weights_path):
    out = tmp_path / "tiny.mdfi"
    assert main(["quantize", "--model", "yolov3-tiny", "-o", str(out)]) == 0
    a, b = mdfi.load(out).quantized, mdfi.load("yolov3-tiny").quantized
    assert a.options["per_channel"] and a.describe() == b.describe()
    for qa, qb in zip(a.layers, b.layers):
        assert qa.meta() == qb.meta()
        for key, arr in qa.arrays().items():
            assert np.array_equal(arr, qb.arrays()[key]), (qa.index, key)


# ---------------------------------------------------------------------------------------------
# item 19: warnings, help texts, names, MDFI_HOME of the tests
def test_low_widths_warn_with_the_measured_cost(capsys, tiny_weights_path):
    assert main(["detect", str(SAMPLE), "--bits", "3", "--out", "none", "--json"]) == 0
    err = capsys.readouterr().err
    (line,) = [l for l in err.splitlines() if "warning" in l]
    assert line.startswith("mdfi: warning: w3a3 fixed point keeps 0 % of the float path's detections")


def test_every_option_has_a_help_text():
    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{name} {a.dest}" for name, p in subs.choices.items() for a in p._actions
               if a.help is None and a.dest != "help"]
    assert missing == []
    assert all(p.description for p in subs.choices.values())
    assert "FILE.mdfi" in subs.choices["detect"].format_help()


def test_info_bits_on_a_model_file_is_refused(tmp_path, capsys):
    out = tmp_path / "m.mdfi"
    assert main(["quantize", *MINI_ARGS, "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--bits", "6"]) == 2
    assert "has its widths fixed" in err_line(capsys)


def test_tests_never_write_into_the_users_mdfi_home():
    assert os.environ["MDFI_HOME"] == str(MDFI_TEST_HOME)
    user = Path(os.path.expanduser("~/.cache/mdfi")).resolve()
    assert MDFI_TEST_HOME.resolve() != user and not str(MDFI_TEST_HOME.resolve()).startswith(str(user))


# ---------------------------------------------------------------------------------------------
# item 20: folders and list files
def test_folder_and_list_file_inputs_with_progress(photos, tmp_path, capsys):
    (photos / "x" / "notes.txt").write_text("not an image")
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n{photos / 'y' / 'photo.jpg'}\n\nx/photo.png\n")
    out = tmp_path / "out"
    assert main(["detect", str(photos / "x"), str(listing), "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    images = [json.loads(l)["image"] for l in captured.out.splitlines()]
    assert images == [str(photos / "x" / "photo.jpg"), str(photos / "x" / "photo.png"),
                      str(photos / "y" / "photo.jpg"), str(tmp_path / "x" / "photo.png")]
    assert "mdfi: 4/4 images" in captured.err and "images/s" in captured.err
    assert sorted(os.listdir(out)) == ["photo.jpg", "photo_2.jpg", "photo_3.jpg", "photo_4.jpg"]
    listing.write_text("missing.jpg\n")
    assert main(["detect", str(listing), *FAST]) == 2
    assert "list.txt:1: missing.jpg: no such image file" in err_line(capsys)


def test_unreadable_image_in_a_folder_does_not_stop_the_others(photos, tmp_path, capsys):
    (photos / "x" / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["detect", str(photos / "x"), "--out", "none"]) == 2
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and "1 of 3 images could not be read" in captured.err
    assert captured.out.count("detection") == 2


# ---------------------------------------------------------------------------------------------
# item 21: videos and streams (optional extra)
@pytest.fixture(scope="module")
def video(tmp_path_factory):
    av = pytest.importorskip("av")
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    base = np.asarray(Image.open(SAMPLE).resize((192, 96)))
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 192, 96, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 4 * i, axis=1).copy(), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _frames(path: Path) -> int:
    import av
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_video_file(video, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    assert main(["detect", str(video), "--json", "--out", str(out), "--save-txt"]) == 0
    captured = capsys.readouterr()
    objs = [json.loads(l) for l in captured.out.splitlines()]
    assert [o["frame"] for o in objs] == list(range(6)) and objs[0]["width"] == 192
    assert "clip.mp4: 6 frames in" in captured.err and "frames/s" in captured.err
    assert _frames(out) == 6
    assert len(os.listdir(tmp_path / "labels")) == 6


def test_stream_url(video, tmp_path, capsys):
    """A stream (here HTTP from 127.0.0.1): frames processed as they are decoded."""
    handler = lambda *a, **k: SimpleHTTPRequestHandler(*a, directory=str(video.parent), **k)  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
        assert main(["detect", url, "--out", str(tmp_path / "s.mp4")]) == 0
    finally:
        server.shutdown()
    assert "6 frames in" in capsys.readouterr().err and _frames(tmp_path / "s.mp4") == 6


def test_missing_webcam_is_one_line(capsys):
    pytest.importorskip("av")
    if os.path.exists("/dev/video7"):
        pytest.skip("a /dev/video7 exists")
    assert main(["detect", "7", *FAST]) == 2
    assert "7: cannot open video" in err_line(capsys)


# ---------------------------------------------------------------------------------------------
# item 22: --save-txt, --save-crops, --classes, --hide-*, --line-width, --exif
def test_save_txt_crops_and_classes(tmp_path, capsys, tiny_weights_path):
    img = tmp_path / "image.jpg"
    shutil.copyfile(SAMPLE, img)
    out = tmp_path / "run" / "pred.jpg"
    assert main(["detect", str(img), "--json", "--out", str(out), "--save-txt", "--save-crops",
                 "--classes", "cup,0", "--hide-conf", "--line-width", "4"]) == 0
    obj = json.loads(capsys.readouterr().out)
    labels = sorted(d["label"] for d in obj["detections"])
    assert labels == ["cup", "cup", "person"]                     # the cat is filtered out
    rows = [l.split() for l in (tmp_path / "run" / "labels" / "image.txt").read_text().splitlines()]
    assert len(rows) == 3
    for row, det in zip(rows, obj["detections"]):
        cls, cx, cy, w, h, conf = int(row[0]), *map(float, row[1:])
        x1, y1, x2, y2 = det["box"]
        assert cls == det["class_id"] and abs(conf - det["confidence"]) < 1e-5
        assert abs(cx - (x1 + x2) / 2 / 720) < 1e-4 and abs(cy - (y1 + y2) / 2 / 384) < 1e-4
        assert abs(w - (x2 - x1) / 720) < 1e-4 and abs(h - (y2 - y1) / 384) < 1e-4
    crops = sorted(str(p.relative_to(tmp_path / "run" / "crops")) for p in (tmp_path / "run" / "crops").rglob("*.jpg"))
    assert crops == ["cup/image.jpg", "cup/image_2.jpg", "person/image.jpg"]
    assert main(["detect", str(img), "--classes", "giraffe,ca", "--out", "none"]) == 2
    assert "did you mean" in err_line(capsys)


def test_exif_orientation_is_opt_in(tmp_path, capsys):
    p = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6                                             # rotate 90 degrees when shown
    Image.open(SAMPLE).save(p, exif=exif)
    from mdfi.image import load_image
    assert load_image(p).shape == (384, 720, 3)                  # Darknet: as stored
    assert load_image(p, exif=True).shape == (720, 384, 3)
    for extra, size in (([], (720, 384)), (["--exif"], (384, 720))):
        assert main(["detect", str(p), "--json", "--out", "none", *extra]) == 0
        obj = json.loads(capsys.readouterr().out)
        assert (obj["width"], obj["height"]) == size


# ---------------------------------------------------------------------------------------------
# item 23: the Python API
def test_api_lists_plot_and_names(tmp_path, tiny_weights_path):
    assert {"load", "Model", "Detections", "draw_detections", "sample_image"} <= set(dir(mdfi))
    model = mdfi.load()
    arr = np.asarray(Image.open(SAMPLE))
    one, two = model.detect([mdfi.sample_image(), arr])
    assert isinstance(one, mdfi.Detections) and one == two and len(one) == 4
    img = one.plot()
    assert img.size == (720, 384) and np.asarray(img).shape == arr.shape
    assert not np.array_equal(np.asarray(img), arr)
    assert np.array_equal(np.asarray(two.plot()), np.asarray(img))
    one.save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(img))
    drawn = mdfi.draw_detections(arr, one, labels=False)
    assert drawn.size == (720, 384)
    with pytest.raises(MDFIError):
        mdfi.Detections(one).plot()                               # no image known


def test_python_dash_m_sample_and_detect(tmp_path, tiny_weights_path):
    r = run_python(["-m", "mdfi", "sample"], cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "image.jpg").read_bytes() == SAMPLE.read_bytes()
    r = run_python(["-m", "mdfi", "sample"], cwd=tmp_path)             # the README run twice: fine
    assert r.returncode == 0, r.stderr
    (tmp_path / "image.jpg").write_bytes(b"my own photo")
    r = run_python(["-m", "mdfi", "sample"], cwd=tmp_path)
    assert r.returncode == 2 and "exists; pass --force" in r.stderr
    assert (tmp_path / "image.jpg").read_bytes() == b"my own photo"


def test_sample_to_a_fifo_or_a_name_that_is_not_a_jpeg(tmp_path, capsys, monkeypatch):
    """`mdfi sample f.jpg` on a FIFO hung (comparing it with the sample); `mdfi sample x.txt`
    wrote a JPEG and suggested `mdfi detect x.txt`, which reads x.txt as a list of images."""
    monkeypatch.chdir(tmp_path)
    os.mkfifo("f.jpg")
    r = run_python(["-m", "mdfi", "sample", "f.jpg"], cwd=tmp_path, timeout=30)   # hung before
    assert r.returncode == 2 and "not a regular file" in r.stderr
    for name in ("x.txt", "x.png", ""):
        assert main(["sample", name]) == 2
        assert "give a name ending in .jpg" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["f.jpg"]
    assert main(["sample", "X.JPEG"]) == 0


def test_detect_out_with_a_trailing_slash_is_a_folder(tmp_path, monkeypatch, capsys):
    """`mdfi detect image.jpg --out o/` said `cannot tell the image format: the file name has
    no extension`: the slash says it is a folder."""
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (32, 32)).save("a.png")
    assert main(["detect", "a.png", "--cfg", str(DARKNET / "mini-yolov3" / "mini-yolov3.cfg"), "--weights",
                 str(DARKNET / "mini-yolov3" / "mini-yolov3.weights"), "--float", "--thresh", "0.999",
                 "--out", "o/"]) == 0
    assert os.listdir(tmp_path / "o") == ["a.jpg"]
