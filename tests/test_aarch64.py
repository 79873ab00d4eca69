"""The NEON paths on aarch64, emulated: csrc/ cross-compiled with Debian's aarch64 GCC and run
under qemu-aarch64 as a CPU with the dot-product extension (``-cpu max``: neondot) and without
it (``-cpu cortex-a72``: neon, the smlal path).

* csrc/tests/conv_check.c: every path the emulated CPU runs (every 8-bit register tile, direct
  and packed) against the portable scalar path, which the x86 tests prove equal to the NumPy
  reference;
* the standalone runner on golden exports (NumPy reference, `mdfi golden`): every layer
  output byte-identical, for yolov3-tiny (real weights), mini-yolov3 at 8 and 16 bits, and the
  AlexeyAB lineage: yolov4-tiny (real 10-class weights, zero points), yolov7-tiny (seeded random
  weights), mini-alexeyab at 16 bits and golden_nets' every-kind network with 8/12-bit layers.

Skipped (with the reason) when the cross compiler or qemu-user is missing; .ci/run installs
them with apt where it can (packages gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user).  The same steps as a
script: tests/run_aarch64_qemu.sh.

On an aarch64 Linux host the same programs are built by the host's compiler (``cc``) and run
natively, on the path that CPU has (the one ``mdfi._ext._conv.best_simd_path()`` names), and
also under qemu-aarch64 as both CPUs above when qemu-user is installed (``-L /``).  Environment:
``MDFI_AARCH64_CC`` (compiler), ``MDFI_AARCH64_SYSROOT`` (qemu's ``-L``), ``MDFI_AARCH64_RUN``
(the command prefix of a native run; tests/run_aarch64_python.sh sets it to qemu, which stands
for the CPU of its emulated Python).
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DARKNET, REPO

#: an aarch64 Linux host: build with its own compiler, run natively (and under qemu if present)
NATIVE = sys.platform.startswith("linux") and platform.machine().lower() in ("aarch64", "arm64")
CROSS = os.environ.get("MDFI_AARCH64_CC", "cc" if NATIVE else "aarch64-linux-gnu-gcc")
QEMU = shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")
SYSROOT = os.environ.get("MDFI_AARCH64_SYSROOT", "/" if NATIVE else "/usr/aarch64-linux-gnu")
CPUS = {"max": "neondot", "cortex-a72": "neon"}
HEADERS = NATIVE or os.path.exists(os.path.join(SYSROOT, "include", "stdint.h"))

#: label -> command prefix; the path each run must report is RUN_PATHS (native: the host CPU's)
RUNS: dict[str, list[str]] = {}
if NATIVE:
    RUNS["native"] = shlex.split(os.environ.get("MDFI_AARCH64_RUN", ""))
if QEMU is not None and HEADERS:
    RUNS.update({cpu: [QEMU, "-L", SYSROOT, "-cpu", cpu] for cpu in CPUS})

pytestmark = [
    pytest.mark.skipif(shutil.which(CROSS) is None,
                       reason=f"{CROSS} (the host's C compiler) not found" if NATIVE
                       else f"{CROSS} (Debian gcc-aarch64-linux-gnu) not installed"),
    pytest.mark.skipif(not HEADERS,
                       reason=f"the aarch64 C library headers are missing under {SYSROOT} (Debian libc6-dev-arm64-cross)"),
    pytest.mark.skipif(not NATIVE and QEMU is None, reason="qemu-aarch64 (Debian qemu-user) not installed"),
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not available"),
]


def expected_path(run: str) -> str:
    """The best path a run must report: the emulated CPU's, or the host's (as the package sees it)."""
    if run in CPUS:
        return CPUS[run]
    from mdfi._ext import _conv
    return _conv.best_simd_path()


@pytest.fixture(scope="module")
def arm_build(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("aarch64_build")
    prefix = CROSS[:-len("gcc")] if CROSS.endswith("gcc") else "" if NATIVE else "aarch64-linux-gnu-"
    proc = subprocess.run(["make", "-C", str(REPO / "csrc"), f"BUILD={build}", "-j4", f"CC={CROSS}",
                           f"AR={prefix}ar", f"STRIP={prefix}strip", "runner", str(build / "conv_check")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"cross build failed:\n{proc.stdout}\n{proc.stderr}"
    assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    return build


def run_on(run: str, *args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([*RUNS[run], *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("run", list(RUNS))
def test_conv_paths_equal_scalar(arm_build, run):
    res = run_on(run, arm_build / "conv_check", "--cases", "80")
    assert res.returncode == 0, res.stdout + res.stderr
    path = expected_path(run)
    assert path in ("neon", "neondot"), path
    assert f"best path: {path}" in res.stdout, res.stdout
    assert "conv_check: ok" in res.stdout and "identical" in res.stdout, res.stdout
    tested = [l.split()[0] for l in res.stdout.splitlines() if "identical to the scalar path" in l]
    assert path in tested and "neon" in tested, res.stdout


def _gold(tmp_path: Path, model, image) -> Path:
    from mdfi.hw import golden
    folder = tmp_path / "gold"
    golden.export(model, image, str(folder), formats=["hex"], thresh=1.0)
    return folder


def _check_runner(arm_build: Path, gold: Path, tmp_path: Path):
    for run in RUNS:
        out = tmp_path / f"out-{run}"
        res = run_on(run, arm_build / "mdfi_run", gold, out, "--threads", "2")
        assert res.returncode == 0, res.stderr
        golden_files = sorted(p.name for p in gold.glob("l*.out.hex"))
        assert golden_files and sorted(p.name for p in out.glob("l*.out.hex")) == golden_files
        differ = [n for n in golden_files if (out / n).read_bytes() != (gold / n).read_bytes()]
        assert not differ, f"{run}: outputs differ from the NumPy reference: {differ}"


def test_runner_yolov3_tiny(arm_build, tiny_weights_path, tmp_path):
    import mdfi
    from test_c_runner import _photo
    _check_runner(arm_build, _gold(tmp_path, mdfi.load("yolov3-tiny", threads=2), _photo()), tmp_path)


@pytest.mark.parametrize("bits", [8, 16])
def test_runner_mini_yolov3(arm_build, mini_net, bits, tmp_path):
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import NAMES, _fixed_model, _photo
    text = (DARKNET / "mini-yolov3" / "mini-yolov3.cfg").read_text()
    qm = quantize_network(mini_net, wbits=bits, abits=bits, per_channel=True, cfg_text=text)
    _check_runner(arm_build, _gold(tmp_path, _fixed_model(mini_net, qm), _photo()), tmp_path)
    assert NAMES


def test_runner_yolov3_tiny_zero_points(arm_build, tiny_net, tmp_path):
    """Zero-point activations (pad_value=, zero_out=, route zero_in=) on the NEON paths."""
    from mdfi.engine import FixedEngine
    from mdfi.model import Model
    from mdfi.quant import recipes
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import NAMES, _photo
    qm = quantize_network(tiny_net, wbits=8, abits=8, per_channel=True, act_method="mse", zero_points=True,
                          calib=recipes.shipped_calibration("yolov3-tiny"))
    gold = _gold(tmp_path, Model(tiny_net, NAMES, FixedEngine(qm, "ref", 1)), _photo())
    assert " pad_value=" in (gold / "model.txt").read_text()
    _check_runner(arm_build, gold, tmp_path)


def _v4tiny_256_zero_points():
    """yolov4-tiny with its real 10-class weights at 256x256 (the same layers as at 416, a
    third of the emulated time), 8-bit with zero points."""
    from alexeyab_data import TINY, tiny_weights
    from mdfi.darknet.cfgfile import parse_cfg_text
    from mdfi.darknet.network import Network
    from mdfi.darknet.weights import load_weights
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import _fixed_model
    text = "\n".join("width=256" if l.startswith("width=") else "height=256" if l.startswith("height=") else l
                     for l in (TINY / "yolov4-tiny-10c.cfg").read_text().splitlines())
    net = Network(parse_cfg_text(text, "yolov4-tiny-10c-256.cfg"), "yolov4-tiny-10c-256.cfg", warn=False)
    assert net.input_shape == (3, 256, 256)
    load_weights(net, tiny_weights())
    qm = quantize_network(net, per_channel=True, cfg_text="", act_method="mse", zero_points=True)
    return _fixed_model(net, qm)


def _v7tiny_192():
    from alexeyab_data import V7, random_network
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import _fixed_model
    net = random_network(V7, "yolov7-tiny-192.cfg")
    return _fixed_model(net, quantize_network(net, cfg_text=""))


def _mini_alexeyab_16():
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import _fixed_model, _random_net
    text = (REPO / "tests" / "fixtures" / "darknet-alexeyab" / "mini-alexeyab.cfg").read_text()
    net = _random_net(text, "mini-alexeyab.cfg", 16)
    return _fixed_model(net, quantize_network(net, wbits=16, abits=16, per_channel=True, cfg_text=text))


def _every_kind_mixed():
    from golden_nets import alexeyab_model
    return alexeyab_model(bits=8, rounding="truncate", layer_abits={3: 12, 8: 12})[0]


def _mini_grouped_zero_points():
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import _fixed_model
    from test_grouped import mini_network
    net = mini_network()
    return _fixed_model(net, quantize_network(net, per_channel=True, cfg_text="", act_method="mse", zero_points=True))


def _mini_enet_zero_points():
    from mdfi.quant.quantize import quantize_network
    from test_c_runner import _fixed_model
    from test_enet import mini_network
    net = mini_network()
    return _fixed_model(net, quantize_network(net, per_channel=True, cfg_text="", act_method="mse", zero_points=True))


@pytest.mark.parametrize("build", [_v4tiny_256_zero_points, _v7tiny_192, _mini_alexeyab_16, _every_kind_mixed,
                                   _mini_grouped_zero_points, _mini_enet_zero_points],
                         ids=["yolov4-tiny-10c-zp", "yolov7-tiny", "mini-alexeyab-16", "every-kind-8-12",
                              "mini-grouped-zp", "mini-enet-zp"])
def test_runner_alexeyab_models(arm_build, build, tmp_path):
    """The AlexeyAB lineage on the NEON paths (issue 12: "... and the newer models as they
    land"): route groups, table activations (mish, swish, logistic, ...), shortcuts between
    channel counts, new_coords / scale_x_y heads, zero points, 16-bit and mixed 8/12-bit layers,
    grouped and depthwise convolutions, [avgpool] and [scale_channels] / [sam];
    every layer output byte-identical to the NumPy reference's golden export."""
    from test_c_runner import _photo
    _check_runner(arm_build, _gold(tmp_path, build(), _photo()), tmp_path)
