"""The empirical bias correction as a default (docs/quantization.md rounds 30-32: the zoo's
Yolo-Fastest models and every model without a recipe that has depthwise convolutions): which
models and widths get it, and that mdfi.load, `mdfi quantize` and `mdfi eval` build the same
integers as quantize_network(bias_correction="empirical") on the shipped sample photo and its
mirror."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mdfi.quant import recipes
from mdfi.quant.quantize import quantize_network
from test_dwequal import CFG, _net

# the same kind of network without a depthwise layer (groups of two channels at most)
PLAIN_CFG = """[net]
width=24
height=24
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
groups=4
activation=leaky

[convolutional]
size=1
filters=4
activation=linear
"""


def _same(a, b) -> bool:
    return all(np.array_equal(x.weights, y.weights) and np.array_equal(x.shift, y.shift)
               and np.array_equal(x.bias, y.bias) for x, y in zip(a.layers, b.layers) if x.kind == "convolutional")


def test_recipe_default_is_yolo_fastest_at_w8a8_without_photos():
    w8a8, w6a8 = recipes.resolve(None), recipes.resolve(None, wbits=6)
    d = recipes.default_empirical_bias
    for name in ("yolo-fastest-1.1", "yolo-fastest-1.1-xl"):
        assert d(name, "sample", w8a8, True)
        assert not d(name, "photos", w8a8, True)        # rule 30 decided without photos
        assert not d(name, "sample", w8a8, False)       # ... with zero points
        assert not d(name, "sample", recipes.resolve(None, wbits=4), True)
    assert d("yolo-fastest-1.1-xl", "sample", w6a8, True)             # rule 32
    assert not d("yolo-fastest-1.1", "sample", w6a8, True)
    assert not d("yolov3-tiny", "shipped", w8a8, True)
    assert not d("yolov3-tiny", "sample", w8a8, True, True)          # a recipe model: its recipe decides
    assert not d(None, "sample", w8a8, True)                          # no depthwise layer
    assert d(None, "sample", w8a8, True, True)                        # round 31
    assert d(None, "sample", w8a8, True, lambda: True)
    assert not d(None, "sample", w6a8, True, True)
    assert not d(None, "photos", w8a8, True, True)
    assert not d(None, "sample", w8a8, False, True)
    called = []
    assert not d(None, "photos", w8a8, True, lambda: called.append(1) or True) and not called   # only when needed
    assert recipes.has_depthwise(_net()) and recipes.rgb_depthwise(_net())
    assert not recipes.has_depthwise(_net(cfg=PLAIN_CFG))
    gray = _net(cfg=CFG.replace("channels=3", "channels=1"))
    assert recipes.has_depthwise(gray) and not recipes.rgb_depthwise(gray)   # no sample photo for it


@pytest.fixture(scope="module")
def dw_model(tmp_path_factory):
    from mdfi.darknet.weights import write_weights
    d = tmp_path_factory.mktemp("eb")
    (d / "dw.cfg").write_text(CFG)
    write_weights(_net(), d / "dw.weights")
    return d


def _want(dw: bool = False):
    net = _net()
    qkw = dict(per_channel=True, cfg_text=CFG, calib=recipes.sample_calibration(net), zero_points=True,
               act_method="mse", **recipes.dw_equalize_kwargs(net, dw))
    plain = quantize_network(net, **qkw)
    qkw.update(recipes.empirical_bias_kwargs(net, True, qkw))
    return plain, quantize_network(net, **qkw)


def test_load_quantize_and_eval_agree(dw_model, tmp_path, capsys):
    """The default of a model without a recipe with depthwise layers (round 31) and the explicit
    option build quantize_network's empirical model in all three entry points; the biases move,
    the weights and formats do not; the model file and `mdfi eval` say so; False / --bias-correction
    auto give the plain model."""
    import mdfi
    from mdfi.cli import main
    from mdfi.quant import modelfile
    cfg, weights = dw_model / "dw.cfg", dw_model / "dw.weights"
    plain, want = _want()
    assert not _same(plain, want)
    moved = [a.index for a, b in zip(plain.layers, want.layers)
             if a.kind == "convolutional" and not np.array_equal(a.bias, b.bias)]
    assert moved and all(np.array_equal(a.weights, b.weights) and np.array_equal(a.shift, b.shift)
                         for a, b in zip(plain.layers, want.layers) if a.kind == "convolutional")
    on = mdfi.load(cfg=cfg, weights=weights, empirical_bias=True, cache=False).engine.qmodel
    off = mdfi.load(cfg=cfg, weights=weights, empirical_bias=False, cache=False).engine.qmodel
    default = mdfi.load(cfg=cfg, weights=weights, cache=False).engine.qmodel
    assert _same(on, want) and _same(off, plain) and _same(default, want)
    assert "rounds 30-32" in on.options["formats_source"]
    assert "rounds 30-32" not in (off.options.get("formats_source") or "")
    assert main(["quantize", "--cfg", str(cfg), "--weights", str(weights), "-o", str(tmp_path / "m.mdfi")]) == 0
    q = modelfile.load(tmp_path / "m.mdfi")
    assert _same(q, want) and "rounds 30-32" in q.options["formats_source"]
    assert main(["quantize", "--cfg", str(cfg), "--weights", str(weights), "--bias-correction", "auto", "-o",
                 str(tmp_path / "p.mdfi")]) == 0
    assert _same(modelfile.load(tmp_path / "p.mdfi"), plain)
    capsys.readouterr()
    from PIL import Image
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    assert main(["eval", "--cfg", str(cfg), "--weights", str(weights), "--images", str(imgs), "--bits", "8",
                 "--json", "--workers", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["empirical_bias"] == ["w8a8"]


def test_not_the_default_without_depthwise_layers(tmp_path):
    import mdfi
    from mdfi.darknet.weights import write_weights
    (tmp_path / "p.cfg").write_text(PLAIN_CFG)
    net = _net(cfg=PLAIN_CFG)
    write_weights(net, tmp_path / "p.weights")
    got = mdfi.load(cfg=tmp_path / "p.cfg", weights=tmp_path / "p.weights", cache=False).engine.qmodel
    want = quantize_network(net, per_channel=True, cfg_text=PLAIN_CFG, calib=recipes.sample_calibration(net),
                            zero_points=True, act_method="mse")
    assert _same(got, want) and "rounds 30-32" not in (got.options.get("formats_source") or "")


def test_not_the_default_of_a_non_rgb_network(tmp_path):
    """A depthwise network of one input channel takes the batch-norm estimate (no sample photo to
    measure the correction on): the default stays off and loading works."""
    import mdfi
    from mdfi.darknet.weights import write_weights
    cfg = CFG.replace("channels=3", "channels=1")
    (tmp_path / "g.cfg").write_text(cfg)
    write_weights(_net(cfg=cfg), tmp_path / "g.weights")
    got = mdfi.load(cfg=tmp_path / "g.cfg", weights=tmp_path / "g.weights", cache=False).engine.qmodel
    assert "rounds 30-32" not in (got.options.get("formats_source") or "")


def test_with_photos_load_equals_quantize(dw_model, tmp_path):
    """mdfi.load(calib=DIR, empirical_bias=True) builds what `mdfi quantize --calib DIR
    --bias-correction empirical` builds (the photos and their mirror images; with --dw-equalize
    both read the same inputs)."""
    import mdfi
    from mdfi.cli import main
    from mdfi.quant import modelfile
    from PIL import Image
    imgs = tmp_path / "photos"
    imgs.mkdir()
    rng = np.random.default_rng(9)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    cfg, weights = dw_model / "dw.cfg", dw_model / "dw.weights"
    for dw in (False, True):
        got = mdfi.load(cfg=cfg, weights=weights, calib=imgs, empirical_bias=True, dw_equalize=dw,
                        zero_points=True, cache=False).engine.qmodel
        out = tmp_path / f"q{dw}.mdfi"
        assert main(["quantize", "--cfg", str(cfg), "--weights", str(weights), "--calib", str(imgs), "--zero-points",
                     "--bias-correction", "empirical", *(["--dw-equalize"] if dw else []), "-o", str(out)]) == 0
        assert _same(got, modelfile.load(out))


def test_with_the_equalization_the_inputs_are_shared(dw_model):
    """With dw_equalize too, the correction is measured on the equalization's inputs (the sample
    photo and its mirror), as Yolo-Fastest 1.1-xl's default."""
    import mdfi
    _, want = _want(dw=True)
    got = mdfi.load(cfg=dw_model / "dw.cfg", weights=dw_model / "dw.weights", dw_equalize=True,
                    empirical_bias=True, cache=False).engine.qmodel
    assert _same(got, want) and "dw_equalize" in got.options


def test_refused_with_a_shipped_rounding_and_with_float(dw_model, tmp_path, capsys):
    from mdfi.cli import main
    from mdfi.errors import MDFIError
    for qkw, shipped in (({"weight_deltas": {}}, False), ({"bias_shifts": {}}, False), ({}, True)):
        with pytest.raises(MDFIError, match="recipe ships its own bias corrections"):
            recipes.check_empirical_bias(qkw, shipped=shipped)
    recipes.check_empirical_bias({})
    from PIL import Image
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((24, 24, 3), np.uint8)).save(img)
    rc = main(["detect", str(img), "--cfg", str(dw_model / "dw.cfg"), "--weights", str(dw_model / "dw.weights"),
               "--out", str(tmp_path / "o.jpg"), "--float", "--empirical-bias"])
    err = capsys.readouterr().err
    assert rc != 0 and "--empirical-bias applies to the fixed-point engine" in err and err.count("\n") == 1


@pytest.mark.parametrize("zp", [[], ["--no-zero-points"]], ids=["zero-points", "no-zero-points"])
def test_refused_for_a_recipe_model_before_any_work(tmp_path, zp):
    """A recipe model with its shipped statistics (yolov3-tiny's recipe; with or without its zero
    points) refuses the correction in one line, before its cfg or weights are read."""
    from mdfi.errors import MDFIError
    from mdfi.quant import zoo_cache as rc
    calls = []

    def fail():
        calls.append(1)
        raise AssertionError("the weights were read")
    with pytest.raises(MDFIError, match="recipe ships its own bias corrections"):
        rc.quantized_for(tmp_path / "x.cfg", tmp_path / "x.weights", "yolov3-tiny", names=["a"], load_network=fail,
                         zero_points=not zp, empirical_bias=True, cache=False)
    assert not calls
