"""Fixed point of the AlexeyAB layers: the table activations, route groups, shortcuts
between channel counts, [yolo] scale_x_y / new_coords (docs/fixed-point.md 4.1, 5-7).

* the lookup kernel (csrc mdfi_lut) equals the NumPy reference for every input/output type,
  widths 2..16, odd sizes, 1-3 threads, with and without SIMD requested (it has one
  portable path: the SIMD flag must not change anything);
* the tables are what docs/fixed-point.md 4.1 writes, recomputed here element by element
  with Python's ``math`` (independently of the vectorised NumPy builder);
* whole networks (a synthetic mini network using every new feature, the yolov7-tiny and
  yolov4 fixtures' layers, yolov4-tiny with real weights): the C engine equals the NumPy
  reference layer by layer at widths 2..16, both roundings, 1-3 threads, scalar and SIMD
  convolution paths; model files round-trip;
* single layers against AlexeyAB's Darknet: the 8-bit logistic head conv of yolov7-tiny and
  a mish conv of yolov4, fed Darknet's float inputs, stay within a few output steps.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from alexeyab_data import AB, V4, V7, astronaut_input, load_json, random_network, rel_err, tiny_network
from mdfi import actlut
from mdfi import fixedpoint as fp
from mdfi._ext import _conv
from mdfi._ext import _kernels as K
from mdfi.cengine import CRunner
from mdfi.errors import FormatError
from mdfi.darknet.network import Network
from mdfi.quant.quantize import input_to_u8, quantize_network
from mdfi.darknet.weights import random_weights

MINI = AB / "mini-alexeyab.cfg"
OPTS = [(1, False), (1, True), (2, False), (2, True), (3, True)]


# -- the lookup kernel --------------------------------------------------------------------------
@pytest.mark.parametrize("nthreads, simd", OPTS)
@pytest.mark.parametrize("in_bits, out_bits", [(2, 2), (4, 8), (8, 8), (12, 8), (9, 16), (16, 16), (16, 5),
                                               (8, 16), (13, 3), (10, 32)])
def test_lut_kernel_equals_reference(nthreads, simd, in_bits, out_bits):
    rng = np.random.default_rng(in_bits * 100 + out_bits)
    pre = fp.QFormat(in_bits, 3)
    n = (37, 41, 43) if in_bits % 2 else (5, 7, 3)              # odd sizes, several ranges per thread
    x = rng.integers(pre.min, pre.max + 1, size=n).astype(fp.storage_dtype(in_bits))
    lo, hi = (-(1 << 31), (1 << 31) - 1) if out_bits == 32 else (fp.qmin(out_bits), fp.qmax(out_bits))
    table = rng.integers(lo, hi, size=1 << in_bits, endpoint=True).astype(np.int32)
    out = np.empty(n, np.int32 if out_bits == 32 else fp.storage_dtype(out_bits))
    K.lut(x, pre.min, table, out, nthreads=nthreads, simd=simd)
    assert np.array_equal(out, actlut.lookup(table, x, pre))


def test_lut_kernel_pixel_input_and_bad_tables():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    table = (np.arange(256, dtype=np.int32) - 128)
    out = np.empty((16, 16), np.int8)
    K.lut(x, 0, table, out)
    assert np.array_equal(out, x.astype(np.int32) - 128)
    from mdfi.errors import ShapeError
    with pytest.raises(ShapeError, match="do not fit"):
        K.lut(x, 0, table * 2, out)                               # 254 does not fit int8
    with pytest.raises(ShapeError, match="elements"):
        K.lut(x, 0, table, np.empty(10, np.int8))
    # an input outside the table's range clamps to its ends (no read outside it)
    small = np.array([-5, 0, 3, 100], np.int16)
    out = np.empty(4, np.int16)
    K.lut(small, 0, np.array([7, 8, 9, 10], np.int32), out)
    assert out.tolist() == [7, 7, 10, 10]


# -- the tables (docs/fixed-point.md 4.1) --------------------------------------------------------
def _f(act: str, x: float) -> float:
    if act == "logistic":
        return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0
    if act == "swish":
        return x / (1.0 + math.exp(-x)) if x > -700 else 0.0
    if act == "mish":
        return x * math.tanh(math.log1p(math.exp(x))) if x < 20 else x * math.tanh(x)
    if act == "hard_mish":
        return x if x > 0 else (x * x / 2 + x if x > -2 else 0.0)
    return min(max(x, 0.0), 6.0)


@pytest.mark.parametrize("act", actlut.LUT_ACTIVATIONS)
@pytest.mark.parametrize("bits, frac, rounding", [(8, 4, "half_up"), (8, 7, "truncate"), (4, 1, "half_up"),
                                                   (6, 3, "truncate"), (12, 7, "half_up")])
def test_tables_follow_their_definition(act, bits, frac, rounding):
    out = fp.QFormat(bits, frac)
    pre = actlut.pre_format(act, out)
    assert pre.bits == min(16, bits + 4)
    t = actlut.build_table(act, pre, out, rounding)
    rng = np.random.default_rng(bits * 7 + frac)
    for i in rng.integers(0, 1 << pre.bits, size=300).tolist() + [0, (1 << pre.bits) - 1, -pre.min]:
        v = _f(act, (pre.min + i) * 2.0 ** -pre.frac) * 2.0 ** frac
        r = math.floor(v + 0.5) if rounding == "half_up" else math.floor(v)
        assert t[i] == min(max(r, out.min), out.max), (act, i)
    # the pre-activation range covers where f still changes by half an output step
    step = 2.0 ** -frac
    assert abs(_f(act, pre.min * 2.0 ** -pre.frac)) < step / 2 + 1e-12
    assert _f(act, pre.max * 2.0 ** -pre.frac) >= min(out.max * step, {"logistic": 1 - step / 2, "relu6": 6}.get(
        act, out.max * step)) - 1e-9


@pytest.mark.parametrize("act", actlut.LUT_ACTIVATIONS)
def test_table_error_bound_at_8_bits(act):
    """docs/fixed-point.md 4.1: at 8 bits the output of a table activation is within 0.8 of an
    output step of the float function (0.5 is the output's own rounding)."""
    for frac in (1, 3, 4, 5, 7):
        steps, _ = actlut.worst_error(act, fp.QFormat(8, frac), points=1 << 15)
        assert steps <= 0.8, (act, frac, steps)


# -- whole networks: C engine == NumPy reference ----------------------------------------------------
@pytest.fixture(scope="module")
def mini():
    net = Network.from_cfg(MINI, warn=False)
    random_weights(net, 5)
    from conftest import skimage_image
    from mdfi.preprocess import network_input
    return net, network_input(skimage_image("astronaut.png"), net)


def _assert_c_equals_ref(qm, x_u8, threads=2):
    ref = qm.forward_ref(x_u8)
    out = CRunner(qm, threads).run(x_u8)
    bad = [i for i, (a, b) in enumerate(zip(ref, out)) if a.shape != b.shape or not np.array_equal(a, b)]
    assert not bad, f"layers differ: {bad}"
    return ref


@pytest.mark.parametrize("wbits, abits, per_channel, rounding", [
    (8, 8, False, "half_up"), (8, 8, True, "truncate"), (4, 4, True, "half_up"), (2, 2, False, "truncate"),
    (16, 16, True, "half_up"), (12, 10, False, "truncate"), (6, 13, True, "half_up"),
])
def test_mini_network_c_equals_reference(mini, wbits, abits, per_channel, rounding):
    net, x = mini
    qm = quantize_network(net, wbits=wbits, abits=abits, per_channel=per_channel, rounding=rounding,
                          cfg_text=MINI.read_text(), layer_rounding={6: "truncate" if rounding == "half_up" else "half_up"})
    kinds = {i: type(ql).__name__ for i, ql in enumerate(qm.layers)}
    assert qm.layers[0].lut and qm.layers[11].lut and qm.layers[5].lut and qm.layers[12].scaled
    assert kinds[12] == "QYolo" and qm.layers[12].table_names == ("prob_lut", "wh_lut", "xy_lut")
    _assert_c_equals_ref(qm, input_to_u8(x))


@pytest.mark.parametrize("threads", [1, 3])
def test_mini_network_threads_and_scalar_path(mini, threads):
    net, x = mini
    qm = quantize_network(net, cfg_text=MINI.read_text())
    x8 = input_to_u8(x)
    ref = _assert_c_equals_ref(qm, x8, threads)
    before = _conv.simd_path()
    try:
        _conv.set_simd_path("scalar")
        scalar = CRunner(qm, threads).run(x8)
    finally:
        _conv.set_simd_path(before)
    assert all(np.array_equal(a, b) for a, b in zip(ref, scalar))


def test_mini_network_model_file_round_trip(mini, tmp_path):
    from mdfi.quant import modelfile
    net, x = mini
    qm = quantize_network(net, wbits=6, abits=9, cfg_text=MINI.read_text())
    path = tmp_path / "m.mdfi"
    modelfile.save(qm, path)
    back = modelfile.load(path)
    assert back.network.darknet == "alexeyab" and back.options["darknet"] == "alexeyab"
    assert np.array_equal(back.layers[0].act_lut, qm.layers[0].act_lut)
    x8 = input_to_u8(x)
    for a, b in zip(qm.forward_ref(x8), CRunner(back, 2).run(x8)):
        assert np.array_equal(a, b)


def test_mini_network_detects_in_float_and_fixed_point(mini):
    from mdfi.engine import FixedEngine
    from mdfi.model import FloatEngine, Model
    net, _ = mini
    img = (np.arange(90 * 120 * 3) % 251).astype(np.uint8).reshape(90, 120, 3)
    qm = quantize_network(net, cfg_text=MINI.read_text())
    counts = []
    for engine in (FloatEngine(net), FixedEngine(qm, "c", 2), FixedEngine(qm, "ref")):
        dets = Model(net, ["a", "b"], engine).detect(img, thresh=0.9)
        assert all(0 <= d.box[0] <= d.box[2] <= 120 for d in dets)
        counts.append(len(dets))
    assert counts[0] > 0 and counts[1] == counts[2]


def test_fixed_point_refuses_what_has_no_kernel():
    base = "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=mish\n"
    cases = {
        "stride_x": base + "[convolutional]\nfilters=4\nsize=3\nstride_x=2\nstride_y=1\npad=1\nactivation=leaky\n",
        "dilation": base + "[convolutional]\nfilters=4\nsize=3\ndilation=2\npad=1\nactivation=leaky\n",
        "maxpool_depth": base + "[maxpool]\nmaxpool_depth=1\nout_channels=2\n",
        "negative stride": base + "[upsample]\nstride=-2\n",
        "several from": base + "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n[shortcut]\nfrom=-1,-2\n",
    }
    from mdfi.darknet.cfgfile import parse_cfg_text
    for what, text in cases.items():
        net = Network(parse_cfg_text(text, what), what, warn=False)
        random_weights(net, 1)
        net.forward_float(np.full((3, 32, 32), 0.5, np.float32))            # the float path runs it
        with pytest.raises(FormatError, match="no fixed-point kernel|fixed-point kernel"):
            quantize_network(net, cfg_text=text)


def test_batchnorm_estimate_covers_groups_and_new_activations(mini):
    """The data-free estimate handles route groups (it used to fail with "estimate has 64
    channels, expected 32"), channel-mismatched shortcuts and the table activations."""
    from mdfi.quant import calibrate
    net, x = mini
    est = calibrate.estimate_from_batchnorm(net)
    assert len(est) == len(net.layers)
    outs = net.forward_float(x)
    for i in (0, 1, 3, 6):            # mish, swish, hard_mish, relu6: same order of magnitude
        real = float(np.abs(outs[i]).max())
        assert real / 20 < est[i].abs_max < real * 20, (i, est[i].abs_max, real)
    assert est[6].max <= 6.0 and est[3].min >= -0.5 and est[0].min >= -0.31


# -- the fixture models ------------------------------------------------------------------------------
def test_yolov7_tiny_random_8bit_c_equals_reference(tmp_path):
    """yolov7-tiny (logistic head convs, new_coords) at 8 bits, all 99 layers, with the
    fixture's regenerated random weights (docs: the random networks cannot measure accuracy)."""
    net = random_network(V7, "yolov7-tiny-192.cfg")
    qm = quantize_network(net, cfg_text="")
    assert [i for i, ql in enumerate(qm.layers) if getattr(ql, "lut", False)] == [89, 93, 97]
    _assert_c_equals_ref(qm, input_to_u8(astronaut_input(net)))


def _single_layer_error(folder, cfg, index, wbits=8, abits=8):
    """Quantize one conv layer with formats from Darknet's tensors, feed it Darknet's float
    input (rounded into its format) and compare the dequantized output with Darknet's."""
    from mdfi.layers.convolutional import QConvolutional
    net = random_network(folder, cfg, [index])
    layer = net.layers[index]
    z = {}
    for name in ("astronaut_selected_layers.npz", "astronaut_heads.npz"):
        with np.load(folder / name) as f:
            z.update({k: f[k] for k in f.files})
    x, ref = z["layer%02d" % layer.inputs[0]], z["layer%02d" % index]
    in_fmt = fp.QFormat(abits, fp.max_frac(x.min(), x.max(), abits))
    out_fmt = fp.QFormat(abits, fp.max_frac(ref.min(), ref.max(), abits))
    ql = QConvolutional.quantize(layer, in_fmt, out_fmt, wbits=wbits, rounding="half_up", per_channel=True)
    xq = fp.quantize_float(x, in_fmt.frac, abits).astype(np.int32)
    out = ql.forward_ref([xq]) * 2.0 ** -out_fmt.frac
    return float(np.abs(out - ref).max() / 2.0 ** -out_fmt.frac), rel_err(out, ref), ql


def test_single_layers_against_darknet_at_8_bits():
    """The logistic head conv of yolov7-tiny (97) and a 3x3 mish conv of yolov4 (91), 8-bit
    weights and activations, fed Darknet's own inputs: within a few output steps of Darknet."""
    steps97, rel97, ql97 = _single_layer_error(V7, "yolov7-tiny-192.cfg", 97)
    steps91, rel91, ql91 = _single_layer_error(V4, "yolov4-192.cfg", 91)
    print(f"8-bit single layers vs Darknet: yolov7-tiny 97 (logistic) {steps97:.2f} steps, rel {rel97:.3f}; "
          f"yolov4 91 (mish) {steps91:.2f} steps, rel {rel91:.3f}")
    assert ql97.lut and ql91.lut
    assert steps97 <= 4 and steps91 <= 6
    assert rel97 <= 0.05 and rel91 <= 0.05


def test_yolov4_tiny_8bit_c_equals_reference_and_detects():
    net = tiny_network()
    qm = quantize_network(net, cfg_text="")
    x = astronaut_input(net)
    _assert_c_equals_ref(qm, input_to_u8(x), threads=2)
    assert [ql.scaled for ql in qm.output_layers()] == [True, True]


def test_cli_detect_float_and_8bit(tmp_path):
    """`mdfi detect --cfg yolov4-tiny-10c.cfg --weights ... --names classes.names IMAGE` in
    float and in 8-bit (the issue's command), JSON on stdout, lineage reported by `mdfi info`."""
    import json
    from alexeyab_data import TINY, tiny_weights
    from conftest import run_python, skimage_image
    from PIL import Image
    weights = tiny_weights()
    img = tmp_path / "astronaut.png"
    Image.fromarray(skimage_image("astronaut.png")).save(img)
    base = ["-m", "mdfi", "detect", str(img), "--cfg", str(TINY / "yolov4-tiny-10c.cfg"), "--weights", str(weights),
            "--names", str(TINY / "classes.names"), "--thresh", "0.01", "--json", "--out", "none", "--threads", "2"]
    env = dict(__import__("os").environ, MDFI_HOME=str(tmp_path / "home"))
    results = {}
    for mode in ("--float", "--bits=8"):
        proc = run_python(base + [mode], cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr
        results[mode] = json.loads(proc.stdout)
    fl = results["--float"]["detections"]
    rec = next(i for i in load_json(TINY / "detections_thresh0.01.json")["images"] if i["image"] == "astronaut.png")
    got = sorted((d["class_id"], d["confidence"]) for d in fl)
    want = sorted((r["class_id"], r["prob"]) for r in rec["detections"])             # = Darknet
    assert [c for c, _ in got] == [c for c, _ in want]
    assert all(abs(a - b) < 1e-4 for (_, a), (_, b) in zip(got, want))
    assert results["--bits=8"]["detections"], "8-bit finds nothing"
    q = tmp_path / "m.mdfi"
    proc = run_python(["-m", "mdfi", "quantize", "--cfg", str(TINY / "yolov4-tiny-10c.cfg"), "--weights", str(weights),
                       "-o", str(q)], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    info = run_python(["-m", "mdfi", "info", str(q)], cwd=tmp_path, env=env)
    assert "darknet lineage: alexeyab (detected:" in info.stdout and "plain resize" in info.stdout


def test_golden_export_of_the_new_layers_verifies(mini, tmp_path):
    """`mdfi golden` on the AlexeyAB features: the new stages (pre) and tables (act_lut,
    xy_lut, prob_lut, wh_lut) are written and listed, the manifest records the lineage's box
    correction and NMS, and `mdfi verify` accepts a copy of the export."""
    import shutil
    from mdfi.hw import golden
    from mdfi.cli import main
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    net, _ = mini
    qm = quantize_network(net, cfg_text=MINI.read_text())
    img = (np.arange(90 * 120 * 3) % 251).astype(np.uint8).reshape(90, 120, 3)
    man = golden.export(Model(net, ["a", "b"], FixedEngine(qm, "c", 1)), img, str(tmp_path / "g"), thresh=0.9)
    stages = {f["stage"] for f in man["files"]}
    assert {"pre", "act_lut", "xy_lut", "prob_lut", "wh_lut"} <= stages
    assert man["postprocess"]["darknet"] == "alexeyab" and man["postprocess"]["correct"] == "none"
    assert man["postprocess"]["nms_kind"] == "greedynms"              # the last [yolo]'s
    shutil.copytree(tmp_path / "g", tmp_path / "dut")
    assert main(["verify", str(tmp_path / "g"), str(tmp_path / "dut")]) == 0
