"""`mdfi quantize --search` and `--calib-crops` (docs/quantization.md): the benchmark's best
pipeline (activation formats searched by their effect on the heads, head bias shifts, more
calibration inputs) from the command line."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mdfi.cli import main
from mdfi.quant import calibrate, modelfile

DARKNET = Path(__file__).parent / "fixtures" / "darknet" / "mini-yolov3"
MODEL = ["--cfg", str(DARKNET / "mini-yolov3.cfg"), "--weights", str(DARKNET / "mini-yolov3.weights")]


def test_corner_crops_are_the_four_75_percent_corners():
    """A 40x40 image, white in its last 10 columns and its last 10 rows: the top-left crop
    (rows and columns 0..29) holds no white; the top-right crop (columns 10..39) is white in
    its right third, the bottom-left crop in its bottom third, the bottom-right in both."""
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, 30:] = 255
    img[30:, :] = 255
    tl, tr, bl, br = calibrate.corner_crops(img)
    assert all(c.shape == img.shape and c.dtype == np.uint8 for c in (tl, tr, bl, br))
    assert tl.max() == 0
    for crop, white in ((tr, (slice(0, 25), slice(29, 40))), (bl, (slice(29, 40), slice(0, 25))),
                        (br, (slice(29, 40), slice(29, 40)))):
        assert crop[white].min() == 255 and crop[:25, :25].max() == 0
    vs = calibrate.calibration_variants(img, crops=True)
    assert len(vs) == 6 and np.array_equal(vs[1], img[:, ::-1])
    assert len(calibrate.calibration_variants(img)) == 2 and len(calibrate.calibration_variants(img, augment=False)) == 1


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from skimage import data
    d = tmp_path_factory.mktemp("cal")
    Image.fromarray(data.coffee()[::3, ::3]).save(d / "coffee.png")
    return d


def test_search_lowers_the_head_error_and_is_recorded(calib_dir, tmp_path, capsys):
    """The searched model's objectness/class logits at the float object cells are closer to
    float (on the calibration inputs) than the model with the histogram formats alone, and
    the file says how it was made."""
    from mdfi.quant.formats import HeadObjective
    plain, searched = tmp_path / "plain.mdfi", tmp_path / "searched.mdfi"
    # (the histogram formats without zero points, as the search builds them; zero points are the
    # default of a model without a recipe on photos since round 27)
    assert main(["quantize", *MODEL, "--calib", str(calib_dir), "--no-zero-points", "-o", str(plain)]) == 0
    assert main(["quantize", *MODEL, "--calib", str(calib_dir), "--search", "--calib-crops", "--clip-budget", "0.03",
                 "-o", str(searched)]) == 0
    err = capsys.readouterr().err
    assert "format search on 6 inputs" in err and "biases shifted by objectness" in err
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    net = Network.from_cfg(DARKNET / "mini-yolov3.cfg")
    load_weights(net, DARKNET / "mini-yolov3.weights")
    qp, qs = modelfile.load(plain), modelfile.load(searched)
    objective = HeadObjective(net, calibrate.load_inputs(net, calib_dir, crops=True))
    assert objective.n_cells > 0
    e_plain, e_searched = objective(qp), objective(qs)
    assert e_searched < e_plain
    rec = qs.options["search"]
    assert (rec["inputs"], rec["heads"]) == (6, [19, 26, 33]) and rec["object_cells"] == objective.n_cells
    assert "search" not in qp.options and qs.options["act_options"] == {"clip_budget": 0.03}
    assert main(["info", str(searched)]) == 0
    assert f"format search: activation formats chosen by their effect on the heads at {objective.n_cells} object " \
        "cells of 6 calibration inputs" in capsys.readouterr().out


@pytest.mark.parametrize("args, msg", [
    (["--search"], "--search and --calib-crops need calibration images (--calib DIR)"),
    (["--calib-crops"], "--search and --calib-crops need calibration images (--calib DIR)"),
    (["--calib", "CAL", "--calib-crops"], "--calib-crops adds inputs to the data-driven methods"),
])
def test_search_options_are_checked_before_heavy_work(args, msg, calib_dir, tmp_path, capsys):
    out = tmp_path / "m.mdfi"
    args = [str(calib_dir) if a == "CAL" else a for a in args]
    assert main(["quantize", *MODEL, *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not out.exists()


def test_search_refuses_a_network_without_yolo_heads(calib_dir, tmp_path, capsys):
    """--search measures the [yolo] heads' logits: a [region] (YOLOv2) model is refused before
    the calibration pass."""
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import random_weights, write_weights
    text = ("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=6\nsize=1\nstride=1\n"
            "activation=linear\n[region]\nanchors=1,1\nclasses=1\nnum=1\ncoords=4\n")
    cfg = tmp_path / "r.cfg"
    cfg.write_text(text)
    net = Network(parse_cfg_text(text, str(cfg)), str(cfg), warn=False)
    random_weights(net, seed=1)
    write_weights(net, tmp_path / "r.weights")
    out = tmp_path / "r.mdfi"
    assert main(["quantize", "--cfg", str(cfg), "--weights", str(tmp_path / "r.weights"), "--calib", str(calib_dir),
                 "--search", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has no [yolo] detection heads" in err and "calibrat" not in err.split("error:")[0]
    assert not out.exists()
