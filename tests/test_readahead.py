"""Issue 12: decode image i+1 on one helper thread while image i runs (mdfi/readahead.py), in
Model.detect(list) and `mdfi detect`: same detections, same messages, same order; at most one
image decoded ahead; errors and Ctrl-C reach the caller."""

from __future__ import annotations

import re
import threading
import time

import pytest
from PIL import Image

import mdfi
import mdfi.model
import mdfi.readahead as ra
from mdfi.cli import main
from mdfi.errors import ImageError

from conftest import skimage_image


def _workers():
    return [t for t in threading.enumerate() if t.name.startswith("mdfi-read-ahead")]


def _wait_no_workers():
    deadline = time.monotonic() + 5
    while _workers() and time.monotonic() < deadline:
        time.sleep(0.01)
    return _workers()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Five real photos as JPEG and PNG files."""
    folder = tmp_path_factory.mktemp("ra")
    paths = []
    for i, name in enumerate(("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")):
        p = folder / f"p{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(skimage_image(name)).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def fixed_model(tiny_weights_path):
    return mdfi.load("yolov3-tiny")                   # the default: 8-bit C engine


@pytest.mark.parametrize("engine", ["fixed", "float"])
@pytest.mark.parametrize("on", [True, False])
def test_list_equals_one_by_one(tiny_model, fixed_model, photos, monkeypatch, on, engine):
    model = fixed_model if engine == "fixed" else tiny_model
    want = [model.detect(p, thresh=0.1) for p in photos]
    assert sum(len(w) for w in want) >= 5          # real detections to compare
    seen = []
    real = ra.read_ahead

    def spy(items, load, *, enabled=True):
        seen.append(enabled)
        return real(items, load, enabled=enabled)
    monkeypatch.setattr(mdfi.model, "read_ahead", spy)
    monkeypatch.setattr(mdfi.model, "read_ahead_pays", lambda threads: on)
    got = model.detect(photos, thresh=0.1)
    assert seen == [on] and got == want
    assert [d.source for d in got] == photos           # each list keeps its own image
    assert _wait_no_workers() == []


def test_bad_image_in_the_middle_of_a_list(tiny_model, photos, tmp_path, monkeypatch):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    monkeypatch.setattr(mdfi.model, "read_ahead_pays", lambda threads: True)
    calls = []
    real = tiny_model._detect_decoded

    def counted(image, *a):
        calls.append(image)
        return real(image, *a)
    monkeypatch.setattr(tiny_model, "_detect_decoded", counted)
    with pytest.raises(ImageError, match="bad.jpg: not an image") as exc:
        tiny_model.detect([photos[0], photos[1], bad, photos[2]])
    assert "\n" not in str(exc.value)
    assert calls == [photos[0], photos[1]]            # in order; nothing after the bad one ran
    assert _wait_no_workers() == []


def test_at_most_one_image_decoded_ahead():
    """The loader is counted: never two decodes at once, never more than one result waiting
    beyond the one the caller holds."""
    live = [0]
    peak = [0]
    made, used = [], []
    lock = threading.Lock()

    def load(i):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(0.005)
        with lock:
            live[0] -= 1
            made.append(i)
        return i * 10

    for item, ok, value in ra.read_ahead(range(8), load):
        assert ok and value == item * 10
        used.append(item)
        time.sleep(0.02)                                # the caller is slow: the helper waits for it
        assert len(made) - len(used) <= 1, (made, used)
    assert peak[0] == 1 and used == list(range(8)) and made == used
    assert _wait_no_workers() == []


def test_errors_arrive_in_order_and_caller_errors_stop_the_helper():
    def load(i):
        if i == 2:
            raise ImageError("two: broken")
        return i
    got = [(i, ok, v if ok else str(v)) for i, ok, v in ra.read_ahead(range(4), load)]
    assert got == [(0, True, 0), (1, True, 1), (2, False, "two: broken"), (3, True, 3)]
    with pytest.raises(RuntimeError, match="caller"):
        for i, ok, v in ra.read_ahead(range(6), lambda i: i):
            if i == 1:
                raise RuntimeError("caller")
    assert _wait_no_workers() == []


def test_keyboard_interrupt_shuts_the_helper_down():
    started = threading.Event()

    def load(i):
        started.set()
        time.sleep(0.05)
        return i
    with pytest.raises(KeyboardInterrupt):
        for i, ok, v in ra.read_ahead(range(100), load):
            started.wait()
            raise KeyboardInterrupt
    assert _wait_no_workers() == []


def _cli(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    # progress lines carry a rate: keep only the last, without it
    err = re.sub(r"mdfi: (\d+/\d+) images, [^\n]*\n", r"PROGRESS \1\n", err)
    err = re.sub(r"(PROGRESS \d+/\d+\n)+(?=.*PROGRESS)", "", err, flags=re.S)
    return rc, out, err


def test_cli_folder_with_a_bad_image_same_outputs(photos, tmp_path, capsys, monkeypatch, tiny_weights_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, p in enumerate(photos[:4]):
        (folder / f"{i}{p.suffix}").write_bytes(p.read_bytes())
    (folder / "2b.jpg").write_bytes(b"not a jpeg")   # sorted between 2.jpg and 3.png
    outs = {}
    for on in (False, True):
        monkeypatch.setattr(ra, "read_ahead_pays", lambda threads, on=on: on)
        out = tmp_path / f"out{on}"
        rc, text, err = _cli(["detect", str(folder), "--out", str(out), "--json"], capsys)
        outs[on] = (rc, text, err.replace(str(out), "OUT"), sorted(x.name for x in out.iterdir()),
                    [(out / n).read_bytes() for n in sorted(x.name for x in out.iterdir())])
    assert outs[True] == outs[False]
    rc, text, err, names, _ = outs[True]
    assert rc == 2 and text.count("\n") == 4 and names == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert "2b.jpg: not an image" in err and "1 of 5 images could not be read" in err
    assert err.index("wrote") < err.index("2b.jpg") < err.rindex("wrote") < err.index("PROGRESS 5/5")
    assert _wait_no_workers() == []
