"""Zero-point models (docs/fixed-point.md 1.1) on the C engine: every layer of whole networks
equal to the NumPy reference, on every code path this machine can run (the others are
skipped, naming the missing feature), and through the model file and the command line."""

from __future__ import annotations

import numpy as np
from PIL import Image
import pytest

from mdfi import zoo
from mdfi._ext import _conv
from mdfi.cengine import CRunner
from mdfi.darknet.cfgfile import parse_cfg_text
from mdfi.darknet.network import Network
from mdfi.darknet.weights import random_weights
from mdfi.quant import calibrate
from mdfi.quant.quantize import quantize_network

from test_cengine import _on_path


def _net(cfg_text, name, seed=0):
    net = Network(parse_cfg_text(cfg_text, name), name, warn=False)
    random_weights(net, seed)
    return net


def _calibrated(net, seed, n=2):
    rng = np.random.default_rng(seed)
    imgs = [rng.integers(0, 256, (net.height, net.width, 3)).astype(np.uint8) for _ in range(n)]
    return calibrate.collect(net, imgs, progress=False)


def _small_cfg(name, size):
    text = zoo.cfg_path(name).read_text()
    for key in ("width", "height"):
        text = "\n".join(f"{key}={size}" if line.strip().startswith(f"{key}=") else line
                         for line in text.splitlines())
    return text


@pytest.fixture(scope="module", params=[("yolov3-tiny", 96, 8), ("yolov4-tiny", 64, 8), ("yolov3-tiny", 64, 6),
                                        ("yolov7-tiny", 64, 8)],
                ids=["yolov3-tiny-a8", "yolov4-tiny-a8", "yolov3-tiny-a6", "yolov7-tiny-a8"])
def zp_model(request):
    name, size, abits = request.param
    text = _small_cfg(name, size)
    net = _net(text, f"{name}-{size}.cfg", seed=5)
    qm = quantize_network(net, per_channel=True, abits=abits, cfg_text=text, calib=_calibrated(net, 1),
                          zero_points=True)
    zeros = [ql.out_fmt.zero for ql in qm.layers if ql.out_fmt is not None]
    assert sum(z != 0 for z in zeros) >= len(zeros) // 2, zeros      # the test exercises zero points
    x = np.random.default_rng(3).integers(0, 256, net.input_shape).astype(np.uint8)
    return qm, x, qm.forward_ref(x)


@pytest.mark.parametrize("path", _conv.PATHS)
def test_zero_point_networks_every_path(path, zp_model):
    qm, x, ref = zp_model
    out = _on_path(path, lambda: CRunner(qm, 2).run(x))
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
    assert not bad, f"{path}: layers differ: {bad}"


@pytest.mark.parametrize("threads", [1, 3])
def test_zero_point_network_threads(threads, zp_model):
    qm, x, ref = zp_model
    out = CRunner(qm, threads).run(x)
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))


def test_zero_point_model_file_roundtrip(zp_model, tmp_path):
    from mdfi.quant import modelfile
    qm, x, ref = zp_model
    modelfile.save(qm, tmp_path / "z.mdfi")
    header, _ = modelfile.read_header(tmp_path / "z.mdfi")
    assert header["format_version"] == modelfile.FORMAT_VERSION_ZERO
    back = modelfile.load(tmp_path / "z.mdfi")
    assert [q.out_fmt for q in back.layers] == [q.out_fmt for q in qm.layers]
    assert all(np.array_equal(a, b) for a, b in zip(back.forward_ref(x), ref))


def test_yolov3_tiny_real_weights_zero_points(tiny_net):
    """Real weights, real photo statistics (the shipped calibration): the zero-point model's
    C engine equals its reference on the dog photo, and its head inputs, read as
    ``(q - zero) * 2^-frac``, agree with Darknet's own float outputs (the fixture) as well as
    without zero points (measured: largest error 0.18 and 0.14 of the largest value, mean
    absolute error 0.31 and 0.30; without zero points 0.14 / 0.16 and 0.34 / 0.36); read
    without the zero point the mean absolute error is the offset, 7.9 and 8.2."""
    from mdfi.quant import recipes
    from mdfi.quant.quantize import input_to_u8
    from conftest import DARKNET, rel_err
    d = np.load(DARKNET / "yolov3-tiny" / "dog_heads.npz")
    calib = recipes.shipped_calibration("yolov3-tiny")
    assert calib is not None
    qm = quantize_network(tiny_net, per_channel=True, calib=calib, zero_points=True,
                          cfg_text=zoo.cfg_path("yolov3-tiny").read_text())
    assert qm.options.get("zero_points") is True
    x = input_to_u8(d["input"])
    ref = qm.forward_ref(x)
    out = CRunner(qm, 2).run(x)
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))
    for i in (15, 22):
        f = qm.layers[i].out_fmt
        assert f.zero != 0
        q = out[i].astype(np.float64)
        assert rel_err((q - f.zero) * 2.0 ** -f.frac, d[f"layer{i}"]) < 0.3
        assert np.abs((q - f.zero) * 2.0 ** -f.frac - d[f"layer{i}"]).mean() < 0.4
        assert np.abs(q * 2.0 ** -f.frac - d[f"layer{i}"]).mean() > 4.0


def test_cli_quantize_zero_points(tmp_path, capsys):
    """`mdfi quantize --zero-points` writes a version-2 model whose formats carry zero points
    (on the tensors mini-yolov3's shortcuts read and write as well), which `mdfi detect` runs; the
    options that choose formats another way are refused before any work."""
    from mdfi.cli import main
    from mdfi.quant import modelfile
    from conftest import DARKNET
    cfg = DARKNET / "mini-yolov3" / "mini-yolov3.cfg"
    base = ["quantize", "--cfg", str(cfg), "--weights", str(DARKNET / "mini-yolov3" / "mini-yolov3.weights")]
    assert main(base + ["--zero-points", "-o", str(tmp_path / "z.mdfi")]) == 0
    qm = modelfile.load(tmp_path / "z.mdfi")
    assert qm.options.get("zero_points") is True
    shortcuts = [ql for ql in qm.layers if ql.kind == "shortcut"]
    assert shortcuts and all(ql.out_fmt.zero and all(f.zero for f in ql.in_fmts) for ql in shortcuts), \
        [(ql.out_fmt, ql.in_fmts) for ql in shortcuts]
    assert any(ql.out_fmt is not None and ql.out_fmt.zero for ql in qm.layers)
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)).save(img)
    capsys.readouterr()
    assert main(["detect", str(img), "--model", str(tmp_path / "z.mdfi"), "--out", "none"]) == 0
    capsys.readouterr()
    cfgw = ["--cfg", str(cfg), "--weights", str(DARKNET / "mini-yolov3" / "mini-yolov3.weights")]
    assert main(["detect", str(img), *cfgw, "--zero-points", "--out", "none", "--json"]) == 0
    assert main(["detect", str(img), *cfgw, "--zero-points", "--float", "--out", "none"]) == 2
    assert "--zero-points applies to the fixed-point engine" in capsys.readouterr().err
    assert main(["detect", str(img), "--model", str(tmp_path / "z.mdfi"), "--zero-points", "--out", "none"]) == 2
    assert "fixes its formats" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "z.mdfi")]) == 0
    out = capsys.readouterr().out
    import re
    assert "with zero points" in out and re.search(r"ap_fixed<8,-?\d+>[+-]\d+ ", out)
    for extra, msg in ((["--search", "--calib", str(tmp_path)], "--zero-points or --search"),
                       (["--method", "max"], "mse criterion")):
        assert main(base + ["--zero-points", *extra, "-o", str(tmp_path / "y.mdfi")]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "y.mdfi").exists()


def test_cli_eval_zero_points(tmp_path, capsys):
    """`mdfi eval --zero-points` measures zero-point models (the report names them); with
    another format method it is refused before any work."""
    import json
    from mdfi.cli import main
    from conftest import DARKNET
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3)).astype(np.uint8)).save(folder / f"{k}.png")
    model = ["--cfg", str(DARKNET / "mini-yolov3" / "mini-yolov3.cfg"),
             "--weights", str(DARKNET / "mini-yolov3" / "mini-yolov3.weights")]
    assert main(["eval", "--images", str(folder), *model, "--bits", "8", "--zero-points", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["agreement"]) == {"w8a8"}
    assert report["zero_points"] == ["w8a8"] and report["options"]["act_method"] == "mse"
    assert main(["eval", "--images", str(folder), *model, "--zero-points", "--method", "max"]) == 2
    assert "mse criterion" in capsys.readouterr().err


def test_api_load_zero_points(tmp_path):
    """mdfi.load(..., zero_points=True) quantizes with zero points (its own cache entry);
    a .mdfi file or the float path refuses the option, a non-bool is a clear error."""
    import mdfi
    from mdfi.errors import MDFIError
    from conftest import DARKNET
    kw = dict(cfg=DARKNET / "mini-yolov3" / "mini-yolov3.cfg", weights=DARKNET / "mini-yolov3" / "mini-yolov3.weights",
              cache=False)
    m = mdfi.load(**kw, zero_points=True)
    assert m.quantized.options.get("zero_points") is True
    assert "zero_points" not in mdfi.load(**kw, zero_points=False).quantized.options
    # round 25: the default of a model without a recipe on the sample photo, at 8 bits only
    assert mdfi.load(**kw).quantized.options.get("zero_points") is True
    assert "zero_points" not in mdfi.load(**kw, wbits=6, abits=6).quantized.options
    img = np.random.default_rng(4).integers(0, 256, (40, 60, 3)).astype(np.uint8)
    m.detect(img)
    with pytest.raises(MDFIError, match="fixed-point path only"):
        mdfi.load(**kw, precision="float", zero_points=True)
    with pytest.raises(MDFIError):
        mdfi.load(**kw, zero_points="yes")


# -- shortcuts with zero points (docs/fixed-point.md section 6) --------------------------------------
@pytest.fixture(scope="module")
def yolov3_zp():
    """yolov3 (23 shortcuts, every channel count of the real network) at 64x64 with generated
    weights, quantized with zero points from random-image statistics: every shortcut reads
    and writes zero-point formats."""
    text = _small_cfg("yolov3", 64)
    net = _net(text, "yolov3-64.cfg", seed=1)
    qm = quantize_network(net, per_channel=True, cfg_text=text, calib=_calibrated(net, 2), zero_points=True)
    scs = [ql for ql in qm.layers if ql.kind == "shortcut"]
    assert len(scs) == 23
    assert sum(bool(ql.out_fmt.zero) for ql in scs) >= 20 and sum(bool(f.zero) for ql in scs for f in ql.in_fmts) >= 40
    x = np.random.default_rng(3).integers(0, 256, net.input_shape).astype(np.uint8)
    return net, qm, x, qm.forward_ref(x)


@pytest.mark.parametrize("path", _conv.PATHS)
def test_yolov3_zero_points_every_path(path, yolov3_zp):
    _, qm, x, ref = yolov3_zp
    out = _on_path(path, lambda: CRunner(qm, 2).run(x))
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
    assert not bad, f"{path}: layers differ: {bad}"


@pytest.mark.parametrize("threads", [1, 3])
def test_yolov3_zero_points_threads_and_fusion(threads, yolov3_zp):
    """fuse=True fuses no shortcut with zero points (the conv epilogue has none) and still
    gives the reference."""
    _, qm, x, ref = yolov3_zp
    runner = CRunner(qm, threads, fuse=True)
    for i, j in runner.fused.items():
        assert not any(f.zero for f in list(qm.layers[j].in_fmts) + [qm.layers[j].out_fmt, qm.layers[i].in_fmt])
    assert len(runner.fused) < 23
    out = runner.run(x)
    assert all(np.array_equal(a, b) for a, b in zip(ref, out))


def test_yolov3_zero_points_c_runner(yolov3_zp, tmp_path):
    """The standalone C runner on the golden export (zero_a= zero_b= zero_out= on the
    shortcuts) is bit-identical to the Python engine, every layer."""
    from test_c_runner import _export, _fixed_model, assert_identical, _have_compiler
    import shutil
    import subprocess
    if shutil.which("make") is None or not _have_compiler():
        pytest.skip("make or a C compiler is not available")
    from test_c_runner import CSRC
    build = tmp_path / "build"
    proc = subprocess.run(["make", "-C", str(CSRC), f"BUILD={build}", "-j2", "runner"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    net, qm, x, _ = yolov3_zp
    img = np.random.default_rng(7).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    gold = _export(_fixed_model(net, qm), img, tmp_path / "gold")
    txt = (gold / "model.txt").read_text()
    sc = [line for line in txt.splitlines() if " shortcut " in line]
    assert len(sc) == 23 and sum(" zero_a=" in s and " zero_b=" in s and " zero_out=" in s for s in sc) >= 15
    assert assert_identical(build / "mdfi_run", gold, tmp_path, "--threads", "2") == len(qm.layers)


@pytest.mark.parametrize("path", _conv.PATHS)
def test_alexeyab_shortcut_zero_points_every_path(path):
    """Shortcuts with zero points between equal, fewer (the rest of a: b's real value 0) and
    more channels, leaky / linear / table activations, different input formats."""
    from test_c_runner import ab_zero_points_everywhere
    _, qm = ab_zero_points_everywhere()
    x = np.random.default_rng(4).integers(0, 256, qm.network.input_shape).astype(np.uint8)
    ref = qm.forward_ref(x)
    for threads in (1, 2):
        out = _on_path(path, lambda: CRunner(qm, threads).run(x))
        bad = [i for i, (a, b) in enumerate(zip(ref, out)) if not np.array_equal(a, b)]
        assert not bad, f"{path}: layers differ: {bad}"
