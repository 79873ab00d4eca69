"""``mdfi detect`` and friends, end to end: output lines, JSON, annotated images, errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from mdfi.cli import main

from conftest import run_python, skimage_image


@pytest.fixture(scope="module")
def coffee(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "coffee.png"
    Image.fromarray(skimage_image("coffee.png")).save(p)
    return p


def run_cli(*args, cwd):
    """Run the installed console script (or python -m mdfi when it is not on PATH)."""
    exe = shutil.which("mdfi")
    if exe is None:
        return run_python(["-m", "mdfi", *args], cwd=cwd)
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_detect_prints_darknet_style_lines_and_writes_image(coffee, tmp_path, tiny_weights_path):
    r = run_cli("detect", str(coffee), "--float", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{coffee}: 1 detection")
    assert lines[1].startswith("cup: 64%  box=(151, 23, 428, 307)")   # Darknet: cup 64%
    out = tmp_path / "predictions.jpg"
    with Image.open(out) as im:
        assert im.size == (600, 400)


def test_python_dash_m_is_the_same_program(coffee, tmp_path, tiny_weights_path):
    r = run_python(["-m", "mdfi", "detect", str(coffee), "--json", "--out", "none", "--float"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert set(obj) == {"image", "width", "height", "detections"}
    assert (obj["width"], obj["height"]) == (600, 400)
    (det,) = obj["detections"]
    assert set(det) == {"class_id", "label", "confidence", "box"}
    assert det["label"] == "cup" and det["class_id"] == 41 and abs(det["confidence"] - 0.6404) < 0.001
    x1, y1, x2, y2 = det["box"]
    assert abs(x1 - 151.1) < 1 and abs(y2 - 307.0) < 1
    assert not (tmp_path / "predictions.jpg").exists()


def test_several_images_go_to_a_folder_and_json_lines(coffee, tmp_path, capsys, tiny_weights_path):
    other = tmp_path / "chelsea.png"
    Image.fromarray(skimage_image("chelsea.png")).save(other)
    out = tmp_path / "ann"
    assert main(["detect", str(coffee), str(other), "--json", "--out", str(out), "--float"]) == 0
    objs = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [o["image"] for o in objs] == [str(coffee), str(other)]
    assert sorted(os.listdir(out)) == ["chelsea.jpg", "coffee.jpg"]


def test_thresh_changes_output(coffee, capsys, tiny_weights_path):
    assert main(["detect", str(coffee), "--json", "--out", "none", "--thresh", "0.7", "--float"]) == 0
    assert json.loads(capsys.readouterr().out)["detections"] == []


@pytest.mark.parametrize("args, words", [
    (["detect", "/nonexistent/x.jpg", "--float"], "x.jpg"),
    (["detect", "IMG", "--cfg", "CFG", "--weights", "W", "--float"], "bad.cfg:5: unknown section [bogus]"),
    (["detect", "IMG", "--model", "yolov9000", "--float"], "yolov9000"),
    (["detect", "IMG", "--cfg", "CFG", "--float"], "--cfg needs --weights"),
])
def test_errors_are_one_line_exit_2(args, words, coffee, tmp_path, capsys, tiny_weights_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[bogus]\n")
    args = [str(coffee) if a == "IMG" else str(cfg) if a == "CFG" else
            str(tiny_weights_path) if a == "W" else a for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdfi: error: ") and words in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_unreadable_image_via_subprocess_has_no_traceback(tmp_path, tiny_weights_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("this is not a jpeg")
    r = run_cli("detect", str(bad), "--float", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "notes.jpg" in r.stderr


def test_bad_threshold_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["detect", "x.jpg", "--thresh", "1.5"])
    assert ei.value.code == 2
    assert "--thresh must be between 0 and 1" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "detect" in capsys.readouterr().err


def test_unbuilt_source_checkout_gets_one_line_error(tmp_path):
    """`python -m mdfi` inside a checkout that was never built (the CI failure mode: the
    checkout's mdfi/ shadows the installed package) says what to do, without a traceback."""
    import mdfi
    src = Path(mdfi.__file__).resolve().parent
    for py in src.rglob("*.py"):
        dest = tmp_path / "mdfi" / py.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(py, dest)
    assert not list((tmp_path / "mdfi").rglob("*.so"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["MDFI_NO_REDIRECT"] = "1"       # else a copy installed by `pip install .` (CI) is used instead
    Image.new("RGB", (8, 8)).save(tmp_path / "x.jpg")      # arguments are checked first
    r = subprocess.run([sys.executable, "-m", "mdfi", "detect", "x.jpg"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdfi: error: "), r.stderr
    assert "not built" in lines[0] and "pip install ." in lines[0]


def test_unbuilt_source_checkout_uses_the_built_copy(tmp_path):
    """The same unbuilt checkout with a built copy further down sys.path (as `pip install .`
    leaves it) imports that copy, so the README's commands work where they are run."""
    import mdfi
    src = Path(mdfi.__file__).resolve().parent
    (tmp_path / "mdfi").mkdir()
    shutil.copyfile(src / "__init__.py", tmp_path / "mdfi" / "__init__.py")
    env = {k: v for k, v in os.environ.items() if k != "MDFI_NO_REDIRECT"}
    env["PYTHONPATH"] = str(src.parent)
    r = subprocess.run([sys.executable, "-c", "import mdfi, mdfi.model; print(mdfi.__file__)"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()).resolve() == (src / "__init__.py").resolve()


# --- widths written as eval writes them (w4a8) in detect, info, golden, quantize and load -------------------

@pytest.mark.parametrize("text, pair", [("8", (8, 8)), ("w4a8", (4, 8)), ("w6a6", (6, 6)), ("16", (16, 16))])
def test_width_arg_reads_n_and_pairs(text, pair):
    from mdfi.cli.common import width_arg
    assert width_arg(text) == pair


@pytest.mark.parametrize("text", ["w4a", "4,8", "w1a8", "w4a17", "a8", "", "w4a8,w6a8", "eight"])
def test_width_arg_refuses_other_text(text):
    import argparse
    from mdfi.cli.common import width_arg
    with pytest.raises(argparse.ArgumentTypeError, match="wNaM"):
        width_arg(text)


def test_detect_bits_pair_is_the_api_model(coffee, capsys, tiny_weights_path):
    import mdfi
    assert main(["detect", str(coffee), "--json", "--out", "none", "--bits", "w6a8", "--engine", "ref"]) == 0
    got = json.loads(capsys.readouterr().out)["detections"]
    model = mdfi.load("yolov3-tiny", wbits=6, abits=8, engine="ref")
    assert "w6a8" in repr(model)
    want = [(d.label, round(d.confidence, 4), [round(v, 2) for v in d.box]) for d in model.detect(str(coffee))]
    assert [(d["label"], round(d["confidence"], 4), [round(v, 2) for v in d["box"]]) for d in got] == want
    assert repr(mdfi.load("yolov3-tiny", bits="w6a8", engine="ref")) == repr(model)


def test_bits_pair_errors(capsys, tmp_path):
    import mdfi
    assert main(["quantize", "--bits", "w6a8", "--wbits", "6", "-o", str(tmp_path / "m.mdfi")]) == 2
    assert "not both" in capsys.readouterr().err
    with pytest.raises(mdfi.MDFIError, match="w4a"):
        mdfi.load("yolov3-tiny", bits="w4a")
    with pytest.raises(mdfi.MDFIError, match="not both"):
        mdfi.load("yolov3-tiny", bits="w4a8", wbits=4)


def test_info_bits_pair(capsys, tiny_weights_path):
    assert main(["info", "yolov3-tiny", "--bits", "w6a8"]) == 0
    out = capsys.readouterr().out
    assert "weights 6 bits (per channel), activations 8 bits" in out
