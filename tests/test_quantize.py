"""The quantizer, the .mdfi file and the fixed-point commands."""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import mdfi
from mdfi import fixedpoint as fp
from mdfi.quant import modelfile
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.cli import main
from mdfi.errors import FormatError, ModelFileError
from mdfi.layers import heads
from mdfi.darknet.network import Network
from mdfi.quant.quantize import input_to_u8, quantize_network
from mdfi.darknet.weights import random_weights

from conftest import DARKNET, skimage_image


@pytest.fixture(scope="module")
def tiny_q8(tiny_model):
    return mdfi.load("yolov3-tiny", engine="ref").quantized


@pytest.fixture(scope="module")
def dog_u8():
    return input_to_u8(np.load(DARKNET / "yolov3-tiny" / "dog_heads.npz")["input"])


def test_deterministic_and_file_roundtrip_is_exact(tiny_q8, dog_u8, tmp_path):
    p = tmp_path / "t.mdfi"
    size = modelfile.save(tiny_q8, p)
    assert size == p.stat().st_size
    back = modelfile.load(p)
    for a, b in zip(tiny_q8.layers, back.layers):
        assert a.meta() == b.meta()
        for k, v in a.arrays().items():
            assert v.dtype == b.arrays()[k].dtype and np.array_equal(v, b.arrays()[k]), (a.index, k)
    o1, o2, o3 = tiny_q8.forward_ref(dog_u8), tiny_q8.forward_ref(dog_u8), back.forward_ref(dog_u8)
    assert all(np.array_equal(a, b) and np.array_equal(a, c) for a, b, c in zip(o1, o2, o3))
    # saving again gives the same bytes (no timestamps, stable JSON)
    modelfile.save(back, tmp_path / "u.mdfi")
    assert (tmp_path / "u.mdfi").read_bytes() == p.read_bytes()


def test_model_size_against_float(tiny_q8, tmp_path):
    size = modelfile.save(tiny_q8, tmp_path / "t.mdfi")
    assert size <= 0.26 * 35_434_956


def test_every_conv_uses_int32_accumulator_at_8_bits(tiny_q8):
    """Every convolution of 8-bit inputs fits int32; since round 18b the default's two head
    convolutions read 16-bit inputs (layers 14 and 21 are 16-bit) and need 33 bits."""
    wide = {ql.index for ql in tiny_q8.layers if ql.kind == "convolutional" and ql.in_fmt.bits > 8}
    assert wide == {15, 22}
    for ql in tiny_q8.layers:
        if ql.kind == "convolutional" and ql.index not in wide:
            assert ql.acc_bits <= 32 and not ql.acc64 and ql.bias_clamped == 0
            # the proof: worst-case |sum| + |bias| fits acc_bits
            pmax = fp.product_bound(ql.wbits, ql.in_fmt.bits, ql.layer.kernel_volume, ql.in_fmt.signed)
            assert pmax + int(np.abs(ql.bias).max()) < 2 ** (ql.acc_bits - 1)


def test_fixed_point_finds_darknets_dog_detections(tiny_model):
    fixed = mdfi.load("yolov3-tiny", engine="ref")
    from mdfi.model import Prepared
    z = np.load(DARKNET / "yolov3-tiny" / "dog_heads.npz")
    dets = fixed.detect(Prepared(z["input"], 768, 576))
    ref = json.loads((DARKNET / "yolov3-tiny" / "detections_demo_images.json").read_text())["images"][0]
    assert sorted(d.label for d in dets) == sorted(r["class_name"] for r in ref["detections"])
    assert "fixed-point w8a8" in fixed.engine.name


# -- small networks: hand-checkable semantics ---------------------------------------------------
def small(text, seed=0):
    net = Network(parse_cfg_text("[net]\nwidth=8\nheight=8\nchannels=3\n" + text, "s.cfg"), "s.cfg", warn=False)
    random_weights(net, seed)
    return net


def test_first_layer_folds_the_255(tmp_path):
    net = small("[convolutional]\nfilters=1\nsize=1\nactivation=linear\n")
    conv = net.layers[0]
    conv.weights[:] = np.array([0.5, -0.25, 1.0], np.float32).reshape(1, 3, 1, 1)
    conv.biases[:] = 0
    qm = quantize_network(net, act_fracs={0: 4}, cfg_text="[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=1\nsize=1\nactivation=linear\n")
    q = qm.layers[0]
    assert q.in_fmt == fp.INPUT_FORMAT
    x = np.zeros((3, 8, 8), np.uint8)
    x[0], x[1], x[2] = 255, 102, 51               # float input 1.0, 0.4, 0.2
    out = qm.forward_ref(x)[0]
    # float: 0.5*1 - 0.25*0.4 + 1.0*0.2 = 0.6 -> Q(8,4): 9.6 -> 10 (within one LSB of exact)
    assert abs(int(out[0, 0, 0]) - 0.6 * 16) <= 1


def test_route_aligns_inputs():
    net = small("[convolutional]\nfilters=2\nactivation=linear\n[convolutional]\nfilters=2\nactivation=linear\n"
                "[route]\nlayers=-1,-2\n")
    qm = quantize_network(net, act_fracs={0: 5, 1: 3, 2: 3}, cfg_text="x")
    route = qm.layers[2]
    assert route.out_fmt.frac == 3 and route.shifts == [0, 2]
    a = np.array([[[100]], [[-6]]], np.int32)      # layer 1 (frac 3): copied
    b = np.array([[[10]], [[-10]]], np.int32)      # layer 0 (frac 5): /4 -> 2.5->3, -2.5->-2
    assert route.forward_ref([a, b]).reshape(-1).tolist() == [100, -6, 3, -2]


def test_shortcut_aligns_rounds_and_saturates():
    net = small("[convolutional]\nfilters=2\nactivation=linear\n[convolutional]\nfilters=2\nactivation=linear\n"
                "[shortcut]\nfrom=-2\nactivation=linear\n")
    qm = quantize_network(net, act_fracs={0: 5, 1: 3, 2: 2}, cfg_text="x")
    short = qm.layers[2]
    assert [f.frac for f in short.in_fmts] == [3, 5] and short.shift == 3
    prev = np.array([[[127]], [[-128]]])             # frac 3
    frm = np.array([[[127]], [[-128]]])              # frac 5
    # sum at frac 5: 127*4 + 127 = 635 -> /8 = 79.375 -> 79;  -640/8 = -80
    assert short.forward_ref([prev, frm]).reshape(-1).tolist() == [79, -80]
    qm2 = quantize_network(net, act_fracs={0: 5, 1: 3, 2: 6}, cfg_text="x")
    # to frac 6: 635*2 = 1270 saturates to 127; -1280 -> -128
    assert qm2.layers[2].forward_ref([prev, frm]).reshape(-1).tolist() == [127, -128]


def test_yolo_tables_and_integer_thresholds():
    f = fp.QFormat(8, 4)
    t = heads.logistic_table(f)
    assert t[0 - f.min] == 16384                     # sigmoid(0) = 0.5 in Q1.15
    assert t[127 - f.min] == round(32768 / (1 + np.exp(-127 / 16)))
    e = heads.exp_table(f)
    assert e[0 - f.min] == 65536 and e[16 - f.min] == int(np.floor(np.e * 65536 + 0.5))
    assert heads.thresholds(0.25) == (8192, 268435456)
    # obj_q > 8192 <=> obj > 0.25 exactly
    assert not 8192 > heads.thresholds(0.25)[0] and 8193 > heads.thresholds(0.25)[0]


def test_softmax_integer():
    f = fp.QFormat(8, 4)
    table = heads.expneg_table(f)
    x = np.array([[16], [0], [0]])                   # logits 1, 0, 0
    p = heads.softmax_int(x, table, axis=0).reshape(-1)
    e1, e0 = 65536, int(np.floor(np.exp(-1) * 65536 + 0.5))
    total = e1 + 2 * e0
    assert p.tolist() == [(e0 * 65536 + total) // (2 * total) if i else (e1 * 65536 + total) // (2 * total)
                          for i in (0, 1, 1)]
    assert abs(p.sum() - 32768) <= 2


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{"wbits": 1}, {"abits": 17}, {"wbits": 0}, {"rounding": "even"},
                                {"act_method": "kl"}, {"layer_rounding": {99: "truncate"}}])
def test_bad_quantize_arguments(kw):
    net = small("[convolutional]\nfilters=2\nactivation=leaky\n")
    with pytest.raises(FormatError):
        quantize_network(net, cfg_text="x", **kw)


SMALL_CFG = ("[net]\nwidth=8\nheight=8\nchannels=3\n"
             "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"
             "[maxpool]\nsize=2\nstride=2\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n"
             "[yolo]\nmask=0,1,2\nnum=3\nclasses=1\nanchors=1,2,3,4,5,6\n")


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    net = Network(parse_cfg_text(SMALL_CFG, "s.cfg"), "s.cfg", warn=False)
    random_weights(net)
    qm = quantize_network(net, cfg_text=SMALL_CFG, wbits=5)
    p = tmp_path_factory.mktemp("m") / "s.mdfi"
    modelfile.save(qm, p)
    return p


def _rewrite_header(path, edit):
    blob = bytearray(path.read_bytes())
    magic, ver, hlen, _ = struct.unpack_from("<8sIII", blob)
    header = json.loads(blob[20:20 + hlen])
    edit(header)
    hb = json.dumps(header).encode()
    data_start = (20 + hlen + 63) // 64 * 64
    head = struct.pack("<8sIII", magic, ver, len(hb), zlib.crc32(hb)) + hb
    head += b"\0" * ((len(head) + 63) // 64 * 64 - len(head))
    return head + bytes(blob[data_start:])


@pytest.mark.parametrize("damage, words", [
    (lambda b, h: b[:10], "too short"),
    (lambda b, h: b"PK\x03\x04" + b[4:], "bad magic"),
    (lambda b, h: b[:-40], "truncated"),
    (lambda b, h: b[:-1] + bytes([b[-1] ^ 1]) if b[-1] else b[:-70] + bytes([b[-70] ^ 0x10]) + b[-69:], "checksum"),
    (lambda b, h: b[:30] + bytes([b[30] ^ 0x20]) + b[31:], "header checksum"),
    (lambda b, h: b[:8] + struct.pack("<I", 9) + b[12:], "container version 9"),
    (lambda b, h: _rewrite_header(h, lambda d: d.update(format_version=99)), "format version 99"),
    (lambda b, h: _rewrite_header(h, lambda d: d["tensors"][0].update(shape=[4, 3, 3, 4])), "needs"),
    (lambda b, h: _rewrite_header(h, lambda d: d["layers"][2].update(w_frac=[1])), "layer 2"),
    (lambda b, h: _rewrite_header(h, lambda d: d["layers"][0].update(wbits=40)), "weight width 40"),
    (lambda b, h: _rewrite_header(h, lambda d: d["layers"][1].update(out_fmt={"bits": 8, "frac": 1})), "chain"),
    (lambda b, h: _rewrite_header(h, lambda d: d.update(cfg="[net]\nwidth=8\n")), "embedded cfg"),
    (lambda b, h: _rewrite_header(h, lambda d: d["tensors"][0].update(dtype="object")), "not allowed"),
    (lambda b, h: _rewrite_header(h, lambda d: d["tensors"][0].update(offset=10 ** 12)), "outside"),
])
def test_corrupt_model_files_give_clear_errors(small_file, tmp_path, damage, words):
    bad = tmp_path / "bad.mdfi"
    bad.write_bytes(damage(small_file.read_bytes(), small_file))
    with pytest.raises(ModelFileError) as ei:
        modelfile.load(bad)
    assert str(bad) in str(ei.value) and words in str(ei.value), str(ei.value)


def test_model_file_is_never_pickle(small_file):
    raw = small_file.read_bytes()
    assert raw.startswith(modelfile.MAGIC) and b"pickle" not in raw


# -- commands -----------------------------------------------------------------------------------
def test_quantize_info_and_detect_with_a_model_file(tmp_path, capsys, tiny_weights_path):
    out = tmp_path / "w6.mdfi"
    assert main(["quantize", "--model", "yolov3-tiny", "--wbits", "6", "--abits", "8", "--per-channel",
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "shipped calibration statistics" in err and "% of the" in err
    assert main(["info", str(out)]) == 0
    table = capsys.readouterr().out
    assert "ap_fixed<8," in table and "acc" in table and "GMAC" in table and "% of the float weights" in table
    coffee = tmp_path / "coffee.png"
    Image.fromarray(skimage_image("coffee.png")).save(coffee)
    assert main(["detect", str(coffee), "--model", str(out), "--json", "--out", "none", "--engine", "ref"]) == 0
    assert "detections" in json.loads(capsys.readouterr().out)


def test_quantize_without_calibration_says_so(tmp_path, capsys):
    """Without photos a model without a recipe is calibrated on the shipped sample photo and
    its mirror image (docs/quantization.md round 11): the model equals one quantized from
    statistics collected independently here (the photo decoded and flipped with NumPy);
    ``--bn-estimate`` keeps the data-free estimate."""
    from importlib.resources import files
    from mdfi.darknet.weights import load_weights
    from mdfi.quant import calibrate
    cfg = tmp_path / "m.cfg"
    cfg.write_text((DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text())
    weights = DARKNET / "mini-yolov3" / "mini-yolov3.weights"
    base = ["quantize", "--cfg", str(cfg), "--weights", str(weights)]
    assert main(base + ["-o", str(tmp_path / "m.mdfi")]) == 0
    err = capsys.readouterr().err
    assert "shipped sample photo mdfi/data/sample.jpg and its mirror image" in err
    qm = modelfile.load(tmp_path / "m.mdfi")
    assert "sample photo" in qm.options["formats_source"] and qm.options["per_channel"] is True

    net = Network.from_cfg(cfg)
    load_weights(net, weights)
    with Image.open(files("mdfi.data") / "sample.jpg") as im:
        rgb = np.asarray(im.convert("RGB"))
    stats = calibrate.collect(net, [rgb, rgb[:, ::-1].copy()], progress=False)
    # at 8 bits with zero points (round 25); --no-zero-points: the model of round 11
    assert main(base + ["--no-zero-points", "-o", str(tmp_path / "n.mdfi")]) == 0
    capsys.readouterr()
    for got, want in ((qm, quantize_network(net, per_channel=True, calib=stats, zero_points=True, act_method="mse")),
                      (modelfile.load(tmp_path / "n.mdfi"), quantize_network(net, per_channel=True, calib=stats))):
        assert [q.out_fmt for q in got.layers] == [q.out_fmt for q in want.layers]
        for a, b in zip(got.layers, want.layers):
            for name in ("weights", "bias", "w_frac"):
                if hasattr(a, name):
                    assert np.array_equal(getattr(a, name), getattr(b, name))

    assert main(base + ["--bn-estimate", "-o", str(tmp_path / "e.mdfi")]) == 0
    assert "estimated from batch-norm statistics" in capsys.readouterr().err
    est = modelfile.load(tmp_path / "e.mdfi")
    assert [q.out_fmt for q in est.layers] != [q.out_fmt for q in qm.layers]
    assert main(base + ["--bn-estimate", "--calib", str(tmp_path), "-o", str(tmp_path / "x.mdfi")]) == 2
    assert "--bn-estimate or calibration statistics" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--wbits", "17"], ["--abits", "1"], ["--wbits", "x"]])
def test_quantize_rejects_bad_widths(args, tmp_path, capsys):
    with pytest.raises(SystemExit) as ei:
        main(["quantize", "--model", "yolov3-tiny", *args, "-o", str(tmp_path / "x.mdfi")])
    assert ei.value.code == 2
    assert "bit width" in capsys.readouterr().err


def test_eval_reports_agreement(tmp_path, capsys, tiny_weights_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("coffee.png", "motorcycle_left.png"):
        Image.fromarray(skimage_image(name)).save(folder / name)
    assert main(["eval", "--images", str(folder), "--bits", "16,w6a8", "--engine", "ref", "--json"]) == 0
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert set(report["agreement"]) == {"w16a16", "w6a8"}
    assert report["agreement"]["w16a16"]["map"] == 1.0
    assert "eval: 2 images in" in out.err


def test_act_options_clip_budget_is_recorded_and_monotone(tiny_model):
    """``act_options`` reach the format choice: allowing more clipping never gives a layer a
    coarser format (a larger clip budget can only move the mse choice to a finer frac), at least
    one layer of yolov3-tiny gets finer at 1 %, and the options are recorded."""
    from mdfi.quant import recipes
    net = tiny_model.network
    calib = recipes.shipped_calibration("yolov3-tiny")
    fr = {}
    for cb in (0.0, 0.01, 1.0):
        qm = quantize_network(net, calib=calib, act_options={"clip_budget": cb}, unify_routes=False)
        assert qm.options["act_options"] == {"clip_budget": cb}
        fr[cb] = {ql.index: ql.out_fmt.frac for ql in qm.layers if ql.kind == "convolutional"}
    assert all(fr[0.0][i] <= fr[0.01][i] <= fr[1.0][i] for i in fr[0.0])
    assert any(fr[0.0][i] < fr[1.0][i] for i in fr[0.0])
    assert "act_options" not in quantize_network(net, calib=calib).options
    with pytest.raises(FormatError, match="act_options"):
        quantize_network(net, act_fracs={0: 4}, act_options={"clip_budget": 0.03})
    with pytest.raises(FormatError, match="clip_budget"):
        quantize_network(net, calib=calib, act_options={"clip_budget": 100.0})


@pytest.mark.parametrize("extra, words", [
    (["--clip-budget", "0.03"], "needs calibration statistics"),
    (["--clip-budget", "0.03", "--calib-stats", "X", "--method", "max"], "applies to mse formats"),
    (["--clip-budget", "150", "--calib-stats", "X"], "a percentage in [0, 100)"),
])
def test_cli_clip_budget_refusals(tmp_path, capsys, extra, words):
    extra = [str(tmp_path / "c.json") if a == "X" else a for a in extra]
    (tmp_path / "c.json").write_text("{}")
    rc = main(["quantize", "--model", "yolov3-tiny", "-o", str(tmp_path / "m.mdfi")] + extra)
    err = capsys.readouterr().err
    assert rc != 0 and words in err and "Traceback" not in err, err


def test_quantize_without_calibration_non_rgb_input_uses_the_estimate(tmp_path, capsys):
    """The shipped sample photo is RGB: a network with another input channel count falls back
    to the batch-norm estimate without photos, and says so."""
    cfg = tmp_path / "gray.cfg"
    text = (DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text()
    assert "channels=3" in text
    cfg.write_text(text.replace("channels=3", "channels=1"))
    net = Network.from_cfg(cfg)
    random_weights(net, 1)
    from mdfi.darknet.weights import write_weights
    write_weights(net, tmp_path / "gray.weights")
    assert main(["quantize", "--cfg", str(cfg), "--weights", str(tmp_path / "gray.weights"),
                 "-o", str(tmp_path / "g.mdfi")]) == 0
    assert "estimated from batch-norm statistics (the shipped sample photo is RGB" in capsys.readouterr().err
    assert modelfile.load(tmp_path / "g.mdfi").options["formats_source"] == "batchnorm-estimate"


def test_detect_calib_equals_quantize_calib(tmp_path, capsys, monkeypatch):
    """`mdfi detect --calib DIR` (mdfi.load(calib=...)) gives the detections of the model
    `mdfi quantize --calib DIR` writes; --calib with --float or a missing folder is refused."""
    monkeypatch.setenv("MDFI_HOME", str(tmp_path / "home"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(skimage_image(f"{name}.png")).save(photos / f"{name}.png")
    img = tmp_path / "chelsea.png"
    Image.fromarray(skimage_image("chelsea.png")).save(img)
    model = ["--cfg", str(DARKNET / "mini-yolov3" / "mini-yolov3.cfg"),
             "--weights", str(DARKNET / "mini-yolov3" / "mini-yolov3.weights")]
    assert main(["quantize", *model, "--calib", str(photos), "-o", str(tmp_path / "m.mdfi")]) == 0
    capsys.readouterr()
    run = ["detect", str(img), "--json", "--out", "none", "--thresh", "0.05"]
    assert main(run + ["--model", str(tmp_path / "m.mdfi")]) == 0
    want = json.loads(capsys.readouterr().out)["detections"]
    assert main(run + model + ["--calib", str(photos)]) == 0
    got = json.loads(capsys.readouterr().out)["detections"]
    assert got == want and len(want) > 0
    assert main(run + model + ["--calib", str(photos), "--float"]) == 2
    assert "--calib applies to the fixed-point engine" in capsys.readouterr().err
    assert main(run + model + ["--calib", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
