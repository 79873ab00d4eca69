"""Issue 9 part A: hostile or broken input gets a one-line typed error (or works), never a
traceback, a hang, unbounded memory, a silently wrong model or a lost file.

Each test names the issue's item it covers."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mdfi
from mdfi import safejson
from mdfi.cli import main
from mdfi.errors import (ArgumentError, CfgError, FormatError, LimitError, MDFIError, MDFIWarning,
                         ModelFileError, WeightsError)
from mdfi.darknet.network import Network
from mdfi.darknet.weights import load_weights, write_weights

from conftest import DARKNET, REPO, run_python

MINI = DARKNET / "mini-yolov3"
MINI_CFG, MINI_W = MINI / "mini-yolov3.cfg", MINI / "mini-yolov3.weights"


@pytest.fixture
def alarm():
    """Fail instead of hanging (a FIFO read would block forever)."""
    def on_alarm(*_):
        raise TimeoutError("hung")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def one_line(exc: BaseException, name: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and name in msg and len(msg) < 600, msg
    return msg


def mini_net():
    net = Network.from_cfg(MINI_CFG)
    load_weights(net, MINI_W)
    return net


# ---------------------------------------------------------------------------------------------
# item 1: the default fixed-point path validates --cfg before reading it (zoo_cache.cache_path)
def _bad_cfg(kind: str, tmp: Path) -> str:
    if kind in ("/dev/zero", "/dev/urandom"):
        return kind
    p = tmp / f"{kind}.cfg"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "6GB":
        with open(p, "wb") as fh:
            fh.truncate(6 << 30)                # sparse: costs no disk
    elif kind == "folder":
        p.mkdir()
    elif kind == "latin1":
        p.write_bytes(MINI_CFG.read_bytes().replace(b"[net]", b"# caf\xe9\n[net]", 1))
    elif kind == "utf16":
        p.write_bytes(MINI_CFG.read_text().encode("utf-16"))
    return str(p)


@pytest.mark.parametrize("kind, words", [
    ("/dev/zero", "not a regular file"), ("/dev/urandom", "not a regular file"), ("fifo", "not a regular file"),
    ("6GB", "file is larger than"), ("folder", "is a directory"), ("latin1", ":5: not a text file in UTF-8 (byte 0xE9"),
    ("utf16", "UTF-16"),
])
def test_default_fixed_path_refuses_bad_cfg_before_reading(kind, words, tmp_path, alarm):
    cfg = _bad_cfg(kind, tmp_path)
    tracemalloc.start()
    with pytest.raises(CfgError) as ei:
        mdfi.load(cfg=cfg, weights=MINI_W)                    # fixed point: zoo_cache.cache_path first
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert words in one_line(ei.value, os.path.basename(cfg)) and peak < 8 << 20
    with pytest.raises(CfgError):
        mdfi.load(cfg=cfg, weights=MINI_W, precision="float")


def test_cfg_with_byte_order_mark_is_accepted(tmp_path):
    p = tmp_path / "bom.cfg"
    p.write_bytes(b"\xef\xbb\xbf" + MINI_CFG.read_bytes())
    assert len(mdfi.load(cfg=p, weights=MINI_W, precision="float").network.layers) == 35


# ---------------------------------------------------------------------------------------------
# item 2: weights that cannot be a trained model
def _write_modified(tmp: Path, change) -> Path:
    net = mini_net()
    change(net)
    out = tmp / "bad.weights"
    write_weights(net, out)
    return out


def test_negative_batchnorm_variance_is_refused_everywhere(tmp_path, capsys):
    def negative(net):
        net.layers[2].rolling_variance = net.layers[2].rolling_variance.copy()
        net.layers[2].rolling_variance[5] = -0.25
    w = _write_modified(tmp_path, negative)
    for kw in ({"precision": "float"}, {}):
        with pytest.raises(WeightsError) as ei:
            mdfi.load(cfg=MINI_CFG, weights=w, **kw)
        msg = one_line(ei.value, "bad.weights")
        assert "layer 2" in msg and "variance of filter 5 is -0.25" in msg
    assert main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(w), "-o", str(tmp_path / "q.mdfi")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.weights: layer 2" in err
    assert not (tmp_path / "q.mdfi").exists()


def test_unrepresentable_and_absurd_weights(tmp_path, capsys):
    def huge(net):
        net.layers[0].weights = net.layers[0].weights * np.float32(1e13)
    with pytest.raises(WeightsError, match=r"bad.weights: layer 0 .*beyond every fixed-point format"):
        mdfi.load(cfg=MINI_CFG, weights=_write_modified(tmp_path, huge), precision="float")

    def absurd(net):
        net.layers[3].biases = net.layers[3].biases * np.float32(1e6)
    mdfi.load(cfg=MINI_CFG, weights=_write_modified(tmp_path, absurd), precision="float")
    err = capsys.readouterr().err
    assert "warning: " in err and "bad.weights: layer 3" in err and "biases up to" in err


# ---------------------------------------------------------------------------------------------
# item 3: NMS
def _darknet_nms(boxes, objectness, probs, thresh):
    """Darknet's do_nms_sort, written out literally (O(n^2) loops): the reference."""
    from mdfi.postprocess import box_iou_matrix
    probs = probs.copy()
    live = [i for i in range(len(boxes)) if objectness[i] != 0]
    for k in range(probs.shape[1]):
        order = sorted(live, key=lambda i: -probs[i, k])            # stable, like MDFI
        for a, i in enumerate(order):
            if probs[i, k] == 0:
                continue
            for j in order[a + 1:]:
                if box_iou_matrix(boxes[i:i + 1], boxes[j:j + 1])[0, 0] > np.float32(thresh):
                    probs[j, k] = 0
    return probs


@pytest.mark.parametrize("pairs", ["few pairs", "piled-up boxes"])
def test_nms_equals_darknet_loops(pairs, monkeypatch):
    from mdfi import postprocess as pp
    if pairs == "piled-up boxes":
        monkeypatch.setattr(pp, "_MAX_PAIRS", 0)              # the per-class greedy path
    rng = np.random.default_rng(7)
    for _ in range(30):
        n, k = int(rng.integers(1, 60)), int(rng.integers(1, 4))
        b = rng.uniform(0, 1, (n, 4)).astype(np.float32)
        b[:, 2:] *= 0.5
        b[rng.integers(0, n, n // 3)] = b[rng.integers(0, n, n // 3)]      # identical boxes
        obj = rng.uniform(0, 1, n).astype(np.float32)
        obj[rng.random(n) < 0.1] = 0
        pr = rng.uniform(0, 1, (n, k)).astype(np.float32)
        pr[rng.random((n, k)) < 0.3] = 0
        pr[rng.random((n, k)) < 0.2] = 0.5                                # ties
        assert np.array_equal(pp.do_nms_sort(b, obj, pr, 0.45), _darknet_nms(b, obj, pr, 0.45))


def test_nms_of_16128_identical_boxes_is_fast_and_small():
    """Issue 9 item 3: 16,128 identical candidates took 13 s and 2.7 GB."""
    from mdfi.postprocess import do_nms_sort
    n = 16128
    boxes = np.tile(np.float32([[0.5, 0.5, 0.3, 0.3]]), (n, 1))
    probs = np.zeros((n, 80), np.float32)
    probs[:, 0] = probs[:, 3] = 0.9
    tracemalloc.start()
    t0 = time.perf_counter()
    out = do_nms_sort(boxes, np.full(n, 0.9, np.float32), probs, 0.45)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (out[:, 0] > 0).sum() == 1 and (out[:, 3] > 0).sum() == 1
    assert peak < 200 << 20 and dt < 5, (peak, dt)


def test_nms_candidate_cap_warns(monkeypatch):
    from mdfi.postprocess import do_nms_sort
    monkeypatch.setenv("MDFI_MAX_NMS_CANDIDATES", "10")
    n = 30
    boxes = np.stack([np.linspace(0.05, 0.95, n), np.full(n, 0.5), np.full(n, 0.01), np.full(n, 0.01)], 1)
    obj = np.linspace(0.3, 0.9, n).astype(np.float32)
    probs = obj[:, None].copy()
    with pytest.warns(MDFIWarning, match="30 detection candidates .* keeps the 10 with the highest objectness"):
        out = do_nms_sort(boxes.astype(np.float32), obj, probs, 0.45)
    assert np.flatnonzero(out[:, 0]).tolist() == list(range(20, 30))


# ---------------------------------------------------------------------------------------------
# item 4: one hardened JSON reader
@pytest.mark.parametrize("text, words", [
    ("[" * 100000 + "]" * 100000, "nested deeper than 64"),
    ('{"a": [' * 70 + "1" + "]}" * 70, "nested deeper than 64"),
    ('{"id": ' + "7" * 5000 + "}", "integer of 5,000 digits"),
    ("[NaN]", "non-finite number NaN"),
    ('{"a": 1,', ":1: not valid JSON"),
])
def test_safejson_refuses(text, words):
    with pytest.raises(FormatError) as ei:
        safejson.loads(text, "x.json")
    assert words in one_line(ei.value, "x.json")
    assert safejson.loads('{"a": [[[1, 2.5]]], "b": -12345}', "x.json") == {"a": [[[1, 2.5]]], "b": -12345}


def _rewrite_header(src: Path, dst: Path, edit) -> None:
    from mdfi.quant import modelfile as mf
    blob = src.read_bytes()
    _, version, hlen, _ = mf.PREFIX.unpack_from(blob)
    data = blob[mf._align(mf.PREFIX.size + hlen):]
    header = edit(blob[mf.PREFIX.size:mf.PREFIX.size + hlen])
    head = mf.PREFIX.pack(mf.MAGIC, version, len(header), zlib.crc32(header)) + header
    dst.write_bytes(head + b"\0" * (mf._align(len(head)) - len(head)) + data)


@pytest.fixture(scope="module")
def mini_mdfi(tmp_path_factory):
    p = tmp_path_factory.mktemp("mdfi") / "mini.mdfi"
    assert main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "-o", str(p)]) == 0
    return p


@pytest.mark.parametrize("what", ["deep", "digits"])
def test_mdfi_header_json_limits(what, mini_mdfi, tmp_path):
    bad = tmp_path / "bad.mdfi"
    extra = b'"x": ' + (b"[" * 5000 + b"]" * 5000 if what == "deep" else b"9" * 5000) + b", "
    _rewrite_header(mini_mdfi, bad, lambda h: h[:1] + extra + h[1:])
    with pytest.raises(ModelFileError) as ei:
        mdfi.load(bad)
    assert ("nested deeper" if what == "deep" else "5,000 digits") in one_line(ei.value, "bad.mdfi")


def test_coco_labels_and_calibration_json_limits(tmp_path):
    from mdfi.quant.calibrate import CalibStats
    from mdfi.eval.evaluate import LabelError, load_coco_json
    p = tmp_path / "coco.json"
    p.write_text('{"images": [], "annotations": [], "categories": ' + "[" * 3000 + "]" * 3000 + "}")
    with pytest.raises(LabelError, match="nested deeper"):
        load_coco_json(p, ["person"])
    p.write_text('{"images": [{"id": ' + "1" * 5000 + '}], "annotations": [], "categories": []}')
    with pytest.raises(LabelError, match="5,000 digits"):
        load_coco_json(p, ["person"])
    p.write_text("[" * 3000 + "]" * 3000)
    with pytest.raises(ModelFileError, match="coco.json.*nested deeper"):
        CalibStats.from_json(p)


# ---------------------------------------------------------------------------------------------
# item 6: [yolo] directly after [yolo]
def test_yolo_after_yolo(tmp_path):
    cfg = tmp_path / "yy.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=6\nsize=1\n"
                   "activation=linear\n" + "[yolo]\nmask=0\nanchors=10,14,23,27\nclasses=1\nnum=2\n" * 2)
    net = Network.from_cfg(cfg)
    from mdfi.darknet.weights import random_weights
    random_weights(net)
    write_weights(net, tmp_path / "yy.weights")
    model = mdfi.load(cfg=cfg, weights=tmp_path / "yy.weights", precision="float")     # Darknet runs it
    assert isinstance(model.detect(np.zeros((20, 20, 3), np.uint8)), list)
    with pytest.raises(FormatError) as ei:
        mdfi.load(cfg=cfg, weights=tmp_path / "yy.weights")
    assert "layer 2 (yolo) reads the output of detection head layer 1" in one_line(ei.value, "yy.cfg")


# ---------------------------------------------------------------------------------------------
# item 8: a small JPEG declaring a huge image: memory checked before decoding
def _jpeg_declaring(path: Path, width: int, height: int) -> None:
    buf = Path(path)
    Image.new("RGB", (16, 16), (90, 120, 30)).save(buf, quality=50)
    data = bytearray(buf.read_bytes())
    i = data.index(b"\xff\xc0")                 # SOF0: length(2) precision(1) height(2) width(2)
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    buf.write_bytes(bytes(data))


def test_jpeg_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.jpg"
    _jpeg_declaring(bomb, 9999, 10000)
    assert bomb.stat().st_size < 1000
    from mdfi import image
    monkeypatch.setattr(image, "_memory_headroom", lambda: (512 << 20, "the test's limit"))
    tracemalloc.start()
    with pytest.raises(LimitError) as ei:
        image.load_image(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    msg = one_line(ei.value, "bomb.jpg")
    assert "9999x10000 image needs about 1,8" in msg and "the test's limit" in msg and peak < 16 << 20


def test_jpeg_bomb_under_an_address_space_cap_is_one_line(tmp_path):
    """The issue's case, end to end: `mdfi detect` under `ulimit -v` (1.6 GB) exits with one
    line instead of a MemoryError traceback in preprocessing (the image needs about 1.8 GB)."""
    bomb = tmp_path / "bomb.jpg"
    _jpeg_declaring(bomb, 9999, 10000)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (1600 << 20, 1600 << 20)); "
            "from mdfi.cli import main; sys.exit(main(sys.argv[1:]))")
    r = run_python(["-c", code, "detect", str(bomb), "--float", "--out", "none"], cwd=tmp_path,
                   env=dict(os.environ, OPENBLAS_NUM_THREADS="1", MDFI_THREADS="1"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "bomb.jpg" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# item 10: numbers exactly as Darknet reads them, or refused
@pytest.mark.parametrize("space", ["\u00a0", "\v", "\f", "\x1c", "\u3000"])
def test_cfg_numbers_with_other_white_space_are_refused(space):
    from mdfi.darknet.cfgfile import parse_cfg_text
    text = f"[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=1{space}6\nsize=1\n"
    with pytest.raises(CfgError) as ei:
        Network(parse_cfg_text(text, "w.cfg"), "w.cfg")
    msg = one_line(ei.value, "w.cfg:6")
    assert "expected an integer (Darknet's atoi would read 1" in msg and space not in msg


def test_cfg_spaces_and_tabs_are_stripped_like_darknet():
    from mdfi.darknet.cfgfile import parse_cfg_text
    net = Network(parse_cfg_text("[net]\nwidth = 8\n height\t=\t8 \nchannels=3\n[convolutional]\n"
                                 "filters = 1 6\nsize=1\n", "s.cfg"), "s.cfg")
    assert net.layers[0].filters == 16        # Darknet's strip() removes spaces inside: "16"


# ---------------------------------------------------------------------------------------------
# item 11: class names from files are printed and drawn sanitised
def test_class_names_are_sanitised(mini_mdfi, tmp_path, capsys):
    from mdfi.quant import modelfile
    qm = modelfile.load(mini_mdfi)
    evil = ["\x1b[2J\x1b[31mred", "cat\nfake: 99%", "x" * 5000] + [f"c{i}" for i in range(77)]
    qm.names = evil
    modelfile.save(qm, tmp_path / "evil.mdfi")
    names = mdfi.load(tmp_path / "evil.mdfi").names
    assert names[0] == "\\x1b[2J\\x1b[31mred" and names[1] == "cat\\nfake: 99%" and len(names[2]) < 110
    assert all(n.isprintable() for n in names)
    p = tmp_path / "evil.names"
    p.write_text("\n".join(evil[:2]) + "\n")
    assert mdfi.zoo.load_names(p) == ["\\x1b[2J\\x1b[31mred", "cat", "fake: 99%"]   # one name a line


# ---------------------------------------------------------------------------------------------
# item 12: the quantized cache is tied to the weights' digest and the recipe
def test_swapped_or_stale_cache_entries_are_not_used(tmp_path, monkeypatch, capsys):
    from mdfi.quant import recipes, zoo_cache
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "home"))
    w = tmp_path / "m.weights"
    shutil.copyfile(MINI_W, w)
    a = mdfi.load(cfg=MINI_CFG, weights=w)
    (entry,) = (tmp_path / "home" / "quantized").iterdir()
    b = mdfi.load(cfg=MINI_CFG, weights=w, bits=6)              # another entry
    other = [p for p in (tmp_path / "home" / "quantized").iterdir() if p != entry][0]
    shutil.copyfile(other, entry)                               # swap: a valid file of other inputs
    c = mdfi.load(cfg=MINI_CFG, weights=w)
    assert "does not belong to these inputs" in capsys.readouterr().err
    assert c.quantized.options["wbits"] == 8
    # weights edited in place, size and mtime restored: a new digest, a new quantization
    st = w.stat()
    data = bytearray(w.read_bytes())
    data[-4:] = np.float32(0.125).tobytes()
    w.write_bytes(bytes(data))
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    path_before = zoo_cache.cache_path(MINI_CFG, MINI_W, None, recipes.resolve(None))[0]
    path_after = zoo_cache.cache_path(MINI_CFG, w, None, recipes.resolve(None))[0]
    assert path_before != path_after
    d = mdfi.load(cfg=MINI_CFG, weights=w)
    assert not np.array_equal(d.quantized.layers[-2].arrays()["weights"], a.quantized.layers[-2].arrays()["weights"]) \
        or not np.array_equal(d.quantized.layers[-2].arrays()["bias"], a.quantized.layers[-2].arrays()["bias"])
    assert b.quantized.options["wbits"] == 6


def test_first_use_quantization_says_so_once(tmp_path, monkeypatch, capsys):
    """A cache miss quantizes for seconds to a minute (yolov3: ~10 s) with nothing else on
    stderr: one line says so in a log (whole lines, not a terminal); a cache hit says nothing."""
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "home"))
    w = tmp_path / "m.weights"
    shutil.copyfile(MINI_W, w)
    mdfi.load(cfg=MINI_CFG, weights=w)
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("quantizing ")]
    assert len(lines) == 1 and "to w8a8 (first use; cached in " in lines[0] and str(tmp_path / "home") in lines[0]
    mdfi.load(cfg=MINI_CFG, weights=w)
    assert "quantizing" not in capsys.readouterr().err
    mdfi.load(cfg=MINI_CFG, weights=w, bits="w6a8", cache=False)
    (line,) = [l for l in capsys.readouterr().err.splitlines() if l.startswith("quantizing ")]
    assert "to w6a8 (first use)" in line


# ---------------------------------------------------------------------------------------------
# item 14: messages
def test_huge_values_are_clipped_in_messages(tmp_path, capsys):
    cfg = tmp_path / "act.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=2\nactivation="
                   + "x" * 3_000_000 + "\n")
    assert main(["detect", str(REPO / "mdfi" / "data" / "sample.jpg"),
                 "--cfg", str(cfg), "--weights", str(MINI_W), "--float", "--out", "none"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) < 600 and "act.cfg:7" in err and "3,000,0" in err


def test_numpy_warnings_are_one_line(tmp_path):
    """Weights whose activations overflow float32: a one-line warning, no NumPy source lines."""
    def scale(net):
        for layer in net.layers:
            if layer.kind == "convolutional":
                layer.weights = layer.weights * np.float32(3e3)
    w = _write_modified(tmp_path, scale)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "r.png")
    r = run_python(["-m", "mdfi", "detect", str(tmp_path / "r.png"), "--cfg", str(MINI_CFG), "--weights", str(w),
                    "--float", "--out", "none"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "RuntimeWarning" not in r.stderr and "out = " not in r.stderr
    assert all(line.startswith(("mdfi: warning:", "warning:")) for line in r.stderr.splitlines()), r.stderr
    assert "non-finite" in r.stderr


@pytest.mark.parametrize("call", [
    lambda: mdfi.load(3), lambda: mdfi.load(cfg=3, weights=MINI_W), lambda: mdfi.load(b"yolov3-tiny"),
    lambda: mdfi.load("yolov3-tiny", bits="8"), lambda: mdfi.load("yolov3-tiny", precision=3),
    lambda: mdfi.load("yolov3-tiny", threads=0), lambda: mdfi.load("yolov3-tiny", per_channel="yes"),
])
def test_api_argument_types_raise_typed_errors(call):
    with pytest.raises(ArgumentError) as ei:
        call()
    assert isinstance(ei.value, (TypeError, ValueError, MDFIError)) and "\n" not in str(ei.value)


def test_detect_argument_types(tiny_weights_path):
    model = mdfi.load(cfg=MINI_CFG, weights=MINI_W, precision="float")
    for bad in (dict(image=None), dict(image=3), dict(image=np.zeros(3, np.uint8))):
        with pytest.raises(MDFIError):
            model.detect(bad["image"])
    for kw in ({"thresh": "0.5"}, {"nms": None}, {"thresh": True}, {"thresh": 2}):
        with pytest.raises(ArgumentError):
            model.detect(np.zeros((8, 8, 3), np.uint8), **kw)


# ---------------------------------------------------------------------------------------------
# audit 24: inputs of the features added since issue 9
def test_calib_stats_without_a_convolution_is_one_line(tmp_path, capsys):
    """`mdfi quantize --calib-stats` of a file missing a convolution's statistics (edited, or
    another network with the same first layers) was a KeyError traceback."""
    from mdfi.quant.calibrate import CalibStats, estimate_from_batchnorm
    good = tmp_path / "good.json"
    estimate_from_batchnorm(mini_net()).to_json(good)
    calib = CalibStats.from_json(good)
    conv = max(i for i in calib.layers if mini_net().layers[i].kind == "convolutional")
    del calib.layers[conv]
    bad = tmp_path / "bad.json"
    calib.to_json(bad)
    out = tmp_path / "q.mdfi"
    for zp in ("--zero-points", "--no-zero-points"):
        assert main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--calib-stats", str(bad),
                     zp, "-o", str(out)]) == 2
        err = capsys.readouterr().err
        errors = [l for l in err.splitlines() if l.startswith("mdfi: error:")]
        assert "Traceback" not in err and len(errors) == 1, err
        assert f"bad.json: no statistics for layer {conv} (convolutional)" in errors[0]
        assert not out.exists()


@pytest.mark.parametrize("option, spec, words", [
    ("--layer-wbits", "11=4", "layer 11 of .* is a maxpool layer; only convolutional layers have weights"),
    ("--layer-wbits", "4=4", "layer 4 of .* is a shortcut layer"),
    ("--layer-abits", "20=16", "layer 20 of .* is a yolo layer; only convolutional, shortcut, avgpool and scale_channels layers"),
    ("--layer-abits", "12=16", "layer 12 of .* is a route layer"),
])
def test_layer_widths_of_layers_without_them_are_refused(option, spec, words, tmp_path, capsys):
    """A per-layer width for a layer that has no weights (or no output format of its own) was
    recorded in the model and shown (`mixed w4@11`) while changing nothing."""
    out = tmp_path / "q.mdfi"
    assert main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(MINI_W), option, spec, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("mdfi: error:") == 1 and not out.exists()
    import re
    assert re.search(words, err), err
    from mdfi.quant.quantize import quantize_network
    with pytest.raises(FormatError):
        quantize_network(mini_net(), **{option[2:].replace("-", "_"): {int(spec.split("=")[0]): 4}})


@pytest.mark.parametrize("option, spec", [("--layer-wbits", "0=8,0=4"), ("--layer-abits", "3=16,03=12"),
                                          ("--layer-rounding", "5=truncate,5=half_up")])
def test_layer_given_twice_is_refused(option, spec, tmp_path, capsys):
    """`--layer-wbits 0=8,0=4` silently kept the last width."""
    out = tmp_path / "q.mdfi"
    with pytest.raises(SystemExit) as ei:
        main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(MINI_W), option, spec, "-o", str(out)])
    assert ei.value.code == 2 and not out.exists()
    assert "is given twice" in capsys.readouterr().err


def test_outputs_never_replace_implied_inputs(tmp_path, monkeypatch, capsys):
    """`quantize -o` onto the zoo's cached weights (an input the model name implies) and
    `calibrate -o` / `--results` onto one of the --images replaced them."""
    from mdfi import zoo
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "home"))
    cached = zoo.cache_dir() / zoo.get_spec("yolov3-tiny").weights
    cached.write_bytes(b"the zoo's weights")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32)).save(photos / "a.jpg")
    before = (photos / "a.jpg").read_bytes()
    for argv in (["quantize", "-o", str(cached)], ["quantize", "-o", str(zoo.cfg_path("yolov3-tiny"))],
                 ["quantize", "--calib", str(photos), "-o", str(photos / "a.jpg")],
                 ["calibrate", "--images", str(photos), "-o", str(photos / "a.jpg")],
                 ["calibrate", "--images", str(photos), "-o", str(tmp_path / "s.json"), "--results",
                  str(photos / "a.jpg")],
                 ["eval", "--images", str(photos), "--results", str(photos / "a.jpg")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "is also an input" in err and err.count("\n") == 1, err
    assert cached.read_bytes() == b"the zoo's weights" and (photos / "a.jpg").read_bytes() == before


def test_output_files_are_checked_before_any_work(tmp_path, monkeypatch, capsys):
    """`quantize -o missing/m.mdfi` (or a folder) failed only after quantizing (minutes with
    --search); `calibrate -o s.json --results s.json` wrote both into one file."""
    import mdfi.quant.quantize as Q
    monkeypatch.setattr(Q, "quantize_network", lambda *a, **k: pytest.fail("quantized before the check"))
    model = ["--cfg", str(MINI_CFG), "--weights", str(MINI_W)]
    (tmp_path / "folder").mkdir()
    for out, words in ((tmp_path / "missing" / "m.mdfi", "no such folder"),
                       (tmp_path / "folder", "is a folder"), ("", "empty file name")):
        assert main(["quantize", *model, "-o", str(out)]) == 2
        assert words in capsys.readouterr().err
    same = str(tmp_path / "s.json")
    assert main(["calibrate", *model, "--images", str(REPO / "mdfi" / "data" / "sample.jpg"), "-o", same,
                 "--results", same]) == 2
    assert "is also the -o file" in capsys.readouterr().err and not os.path.exists(same)


def test_eval_plot_path_is_checked_before_the_evaluation(tmp_path, capsys):
    """`eval --plot p.xyz` was a matplotlib ValueError traceback after the whole evaluation,
    `--plot out` wrote out.png and said `wrote out`, `--plot` onto one of the --images
    replaced it, and `--plot r.svg --results r.svg` wrote the plot over the results."""
    pytest.importorskip("matplotlib")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (32, 32)).save(photos / "a.jpg")
    before = (photos / "a.jpg").read_bytes()
    model = ["--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--images", str(photos), "--workers", "1"]
    for extra, words in ((["--plot", str(tmp_path / "p.xyz")], "matplotlib cannot write .xyz files"),
                         (["--plot", str(tmp_path / "p")], "no file extension"),
                         (["--plot", str(photos / "a.jpg")], "is also an input"),
                         (["--plot", str(tmp_path / "r.svg"), "--results", str(tmp_path / "r.svg")],
                          "is also the --results file")):
        t0 = time.monotonic()
        assert main(["eval", *model, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1 and "eval:" not in err, err
        assert time.monotonic() - t0 < 5
    assert (photos / "a.jpg").read_bytes() == before and sorted(os.listdir(tmp_path)) == ["photos"]


@pytest.mark.parametrize("command", ["quantize", "calibrate", "eval"])
def test_quantized_model_where_the_float_network_is_needed(command, mini_mdfi, tmp_path, capsys):
    """`mdfi eval --model m.mdfi` said `unknown model 'm.mdfi' ... a quantized model is a
    FILE.mdfi`, while its help offered --model NAME|FILE.mdfi."""
    argv = {"quantize": ["-o", str(tmp_path / "q.mdfi")],
            "calibrate": ["--images", str(REPO / "mdfi" / "data" / "sample.jpg"), "-o", str(tmp_path / "s.json")],
            "eval": ["--images", str(REPO / "mdfi" / "data" / "sample.jpg")]}[command]
    assert main([command, "--model", str(mini_mdfi), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mini.mdfi is a quantized model" in err and "unknown model" not in err, err
    from mdfi.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert "FILE.mdfi" not in sub.choices[command].format_help()
    assert "FILE.mdfi" in sub.choices["detect"].format_help() and "FILE.mdfi" in sub.choices["golden"].format_help()


def test_classes_id_beyond_the_model_is_refused(tmp_path, capsys):
    """`mdfi detect --classes 80` on an 80-class model kept nothing, silently (-1 was refused)."""
    from mdfi.cli.detect import parse_classes
    names = [f"c{i}" for i in range(3)]
    assert parse_classes("2,c0", names) == {0, 2}
    with pytest.raises(MDFIError, match=r"3 is not a class id of this model \(it has classes 0\.\.2\)"):
        parse_classes("3", names)
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    heads = [l.classes for l in mini_net().layers if l.kind == "yolo"]
    assert main(["detect", str(img), "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--float", "--out", "none",
                 "--classes", str(max(heads))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--classes: {max(heads)} is not a class id" in err, err


def test_thread_counts_beyond_the_kernels_limit(monkeypatch):
    """`MDFI_THREADS=100000` and `load(threads=1000)` were `ShapeError: conv: nthreads must be in
    1..256` from the kernel (load's own check said 1..1024); a machine with more than 256 CPUs
    would have hit it by default."""
    from mdfi import engine
    from mdfi._ext import _conv, _image, _kernels
    assert engine.MAX_THREADS == _conv.MAX_THREADS == _image.MAX_THREADS == _kernels.MAX_THREADS
    monkeypatch.setenv("MDFI_THREADS", "100000")
    with pytest.raises(MDFIError, match=r"MDFI_THREADS='100000': expected 1\.\.256"):
        engine.default_threads()
    monkeypatch.delenv("MDFI_THREADS")
    monkeypatch.setattr(engine.os, "sched_getaffinity", lambda pid: set(range(300)))
    assert engine.default_threads() == 256
    with pytest.raises(ArgumentError, match=r"threads=1000: expected 1\.\.256"):
        mdfi.load(cfg=MINI_CFG, weights=MINI_W, threads=1000)


def test_detect_calib_file_and_float_engine(tmp_path, capsys):
    """`detect --calib photo.jpg` said `no such folder` of an existing file; `--float --engine
    ref` ignored --engine silently (--bits, --calib and --zero-points are refused with --float)."""
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    model = ["--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--out", "none"]
    assert main(["detect", str(img), *model, "--calib", str(img)]) == 2
    assert "a.png: not a folder (give a folder of photos)" in capsys.readouterr().err
    assert main(["detect", str(img), *model, "--float", "--engine", "ref"]) == 2
    assert "--engine applies to the fixed-point engine; drop --float" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["quantize", "eval"])
def test_per_channel_and_per_layer_together_are_refused(command, tmp_path, capsys):
    """`--per-layer --per-channel` silently kept the last one."""
    argv = ["-o", str(tmp_path / "q.mdfi")] if command == "quantize" else ["--images", str(tmp_path)]
    with pytest.raises(SystemExit) as ei:
        main([command, "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--per-layer", "--per-channel", *argv])
    assert ei.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_unreachable_size_budget_is_refused_before_measuring(tmp_path, capsys):
    """`quantize --size-budget 10%` measured every layer at every width (minutes), then wrote a
    model of 12.6% with every layer at 4 bits, silently over the budget."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (64, 64), (90, 120, 30)).save(photos / "a.png")
    out = tmp_path / "q.mdfi"
    assert main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--calib", str(photos),
                 "--size-budget", "1%", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "size budget 1% cannot be met: with every convolution's weights at 4 bits" in err, err
    assert "mixed precision: layer" not in err and not out.exists()


def test_darknet_files_given_as_the_model_say_so(tmp_path, capsys):
    """`--model my.cfg` said `my.cfg: file not found (looked in .../cfg/my.cfg); reinstall mdfi`
    (`./my.cfg`: `not a plain file name of the mdfi.cfg package data`), `mdfi info x.json`
    `unknown model ... a quantized model is a FILE.mdfi`."""
    cfg = tmp_path / "my.cfg"
    shutil.copy(MINI_CFG, cfg)
    other = tmp_path / "notes.json"
    other.write_text("{}")
    for model, words, info_words in (
            (cfg, "is a Darknet .cfg file: give it with its weights", "quantize it first (mdfi quantize --cfg"),
            (MINI_W, "is a Darknet .weights file: give it with its cfg", "quantize it first (mdfi quantize --cfg"),
            (other, "notes.json: not an MDFI model file (no MDFI magic bytes)", None)):
        with pytest.raises(MDFIError) as ei:
            mdfi.load(str(model))
        assert words in one_line(ei.value, model.name)
        assert main(["info", str(model)]) == 2        # (info takes no --cfg / --weights: it says what to do)
        err = capsys.readouterr().err
        assert (info_words or words) in err and model.name in err and err.count("\n") == 1, err


def test_results_file_of_another_image_folder_is_refused(tmp_path, capsys):
    """`eval --images X --results r.jsonl`, then `eval --images Y --results r.jsonl` took X's
    results for Y's files of the same name (a black image reported X's photo's detections)."""
    x, y = tmp_path / "X", tmp_path / "Y"
    x.mkdir()
    y.mkdir()
    shutil.copy(REPO / "mdfi" / "data" / "sample.jpg", x / "a.jpg")
    Image.new("RGB", (64, 64)).save(y / "a.jpg")
    model = ["--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--workers", "1"]
    res = tmp_path / "r.jsonl"
    assert main(["eval", "--images", str(x), *model, "--no-stats", "--results", str(res)]) == 0
    capsys.readouterr()
    assert main(["eval", "--images", str(y), *model, "--no-stats", "--results", str(res)]) == 2
    assert "results of images in other folders" in capsys.readouterr().err
    assert main(["eval", "--images", str(x), *model, "--no-stats", "--results", str(res)]) == 0    # resumes
    cal = tmp_path / "c.jsonl"
    assert main(["calibrate", "--images", str(x), *model, "-o", str(tmp_path / "c.json"), "--results", str(cal)]) == 0
    capsys.readouterr()
    assert main(["calibrate", "--images", str(y), *model, "-o", str(tmp_path / "c.json"), "--results", str(cal)]) == 2
    assert "results of images in other folders" in capsys.readouterr().err


def test_list_file_naming_a_device_or_a_folder_says_so(tmp_path, capsys):
    """`mdfi detect list.txt` whose line is /dev/zero said `/dev/zero: no such image file`."""
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    (tmp_path / "sub").mkdir()
    for line, words in (("/dev/zero", "not a regular file"), ("sub", "is a folder"),
                        ("gone.png", "no such image file")):
        lst = tmp_path / "list.txt"
        lst.write_text(f"a.png\n{line}\n")
        assert main(["detect", str(lst), "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--out", "none"]) == 2
        err = capsys.readouterr().err
        assert f"list.txt:2: {line}: {words}" in err and err.count("\n") == 1, err


def test_calib_stats_channel_means_of_another_shape_are_refused(tmp_path, capsys):
    """Channel means of the wrong length (another network with the same layer kinds, or an
    edited file) were skipped silently: the bias correction they feed was not applied."""
    from mdfi.quant.calibrate import CalibStats, collect
    net = mini_net()
    calib = collect(net, [np.zeros((32, 32, 3), np.uint8)], source="unit test")
    calib.check_network(net)
    bad = tmp_path / "bad.json"
    calib.to_json(bad)
    import json
    d = json.loads(bad.read_text())
    d["layers"]["0"]["channel_mean"] = [0.0] * 3
    bad.write_text(json.dumps(d))
    assert main(["quantize", "--cfg", str(MINI_CFG), "--weights", str(MINI_W), "--calib-stats", str(bad),
                 "--wbits", "4", "-o", str(tmp_path / "q.mdfi")]) == 2
    err = capsys.readouterr().err
    assert "bad.json: do not match the network" in err and "layer 0 has" in err and "channel means 3" in err, err


def test_outputs_never_replace_a_device_or_fifo(tmp_path, capsys):
    """`mdfi quantize -o /dev/null` (and `calibrate -o`, `detect --out`) wrote a temporary file
    and renamed it over the path: as root that replaced the /dev/null device node with a
    regular file.  Checked here with FIFOs (never a real device)."""
    import stat
    img = tmp_path / "a.png"
    Image.new("RGB", (32, 32)).save(img)
    model = ["--cfg", str(MINI_CFG), "--weights", str(MINI_W)]
    for name, argv in (("q.mdfi", ["quantize", *model, "-o"]),
                       ("s.json", ["calibrate", *model, "--images", str(img), "--workers", "1", "-o"]),
                       ("p.jpg", ["detect", str(img), *model, "--float", "--out"])):
        fifo = tmp_path / name
        os.mkfifo(fifo)
        assert main([*argv, str(fifo)]) == 2, name
        err = capsys.readouterr().err
        assert "not a regular file (a device, FIFO or socket)" in err and err.count("\n") == 1, err
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
