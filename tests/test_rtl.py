"""The worked RTL example (examples/rtl/): Verilog requantize stage vs MDFI golden vectors.

Runs Icarus Verilog on ``examples/rtl/tb_requant.v``: the correct ``mdfi_requant`` must
reproduce ``lNNN.out.hex`` byte for byte on yolov3-tiny's layer 13 (1x1 conv, leaky) and
layer 15 (1x1 conv, linear); the faulty ``mdfi_requant_trunc`` (truncates instead of rounding
half up) must differ.  A corner-case test checks the module against the arithmetic reference
on every 8-bit shift, all activations and both rounding modes.  Skipped without ``iverilog``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import run_python
from mdfi import fixedpoint as fx
from mdfi.hw import vectors

REPO = Path(__file__).resolve().parent.parent
RTL = REPO / "examples" / "rtl"
LAYERS = (13, 15)            # yolov3-tiny: 1x1 conv leaky (256ch), 1x1 conv linear (255ch)

pytestmark = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="Icarus Verilog (iverilog, vvp) not on PATH: apt-get install -y iverilog")


@pytest.fixture(scope="module")
def golden(rtl_golden) -> Path:
    """Golden hex vectors of layers 13 and 15 (and 18), every stage (tests/conftest.py)."""
    return rtl_golden


def _layer(golden: Path, index: int) -> dict:
    man = json.loads((golden / "manifest.json").read_text())
    lay = next(l for l in man["layers"] if l["index"] == index)
    bits = {f["stage"]: f["bits"] for f in man["files"]
            if f["layer"] == index and f["format"] == "hex"}
    c, h, w = lay["out_shape"]
    return dict(c=c, h=h, w=w, acc_bits=bits["acc"], out_bits=bits["out"],
                act=lay["meta"]["activation"], rounding=lay["meta"]["rounding"])


def _simulate(build: Path, module: str, acc: Path, shift: Path, out: Path, *, acc_bits: int,
              out_bits: int, c: int, hw: int, act: str, rounding: str) -> None:
    """Compile tb_requant with ``module`` as the DUT and run it; writes ``out``."""
    build.mkdir(parents=True, exist_ok=True)
    vvp = build / f"{module}_{acc_bits}_{out_bits}_{c}_{hw}.vvp"
    if not vvp.exists():
        subprocess.run(["iverilog", "-g2005", "-Wall", f"-DDUT={module}", "-s", "tb_requant",
                        f"-Ptb_requant.ACC_BITS={acc_bits}", f"-Ptb_requant.OUT_BITS={out_bits}",
                        f"-Ptb_requant.C={c}", f"-Ptb_requant.HW={hw}", "-o", str(vvp),
                        str(RTL / "tb_requant.v"), str(RTL / "mdfi_requant.v"),
                        str(RTL / "mdfi_requant_trunc.v")],
                       check=True, capture_output=True, text=True, timeout=60)
    res = subprocess.run(["vvp", "-n", str(vvp), f"+acc={acc}", f"+shift={shift}",
                          f"+out={out}", f"+act={act}", f"+rounding={rounding}"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "tb_requant: DONE" in res.stdout, res.stdout + res.stderr


def _run_layer(golden: Path, work: Path, module: str, index: int) -> Path:
    p = _layer(golden, index)
    out = work / module / f"l{index:03d}.out.hex"
    out.parent.mkdir(parents=True, exist_ok=True)
    _simulate(work / "build", module, golden / f"l{index:03d}.acc.hex",
              golden / f"l{index:03d}.shift.hex", out, acc_bits=p["acc_bits"],
              out_bits=p["out_bits"], c=p["c"], hw=p["h"] * p["w"], act=p["act"],
              rounding=p["rounding"])
    return out


HAVE_VERIFY = importlib.util.find_spec("mdfi.hw.verify") is not None


def _mdfi_verify(golden: Path, dut_dir: Path) -> subprocess.CompletedProcess:
    return run_python(["-m", "mdfi", "verify", str(golden), str(dut_dir)], cwd=dut_dir, timeout=120)


def test_golden_layers_are_the_intended_ones(golden):
    assert _layer(golden, 13)["act"] == "leaky"
    assert _layer(golden, 15)["act"] == "linear"


@pytest.mark.parametrize("index", LAYERS)
def test_correct_module_is_bit_exact(golden, tmp_path, index):
    out = _run_layer(golden, tmp_path, "mdfi_requant", index)
    p = _layer(golden, index)
    ref = golden / f"l{index:03d}.out.hex"
    assert len(out.read_bytes().splitlines()) == p["c"] * p["h"] * p["w"]
    assert out.read_bytes() == ref.read_bytes()
    if HAVE_VERIFY:
        res = _mdfi_verify(golden, out.parent)
        assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("index", LAYERS)
def test_faulty_module_is_caught(golden, tmp_path, index):
    out = _run_layer(golden, tmp_path, "mdfi_requant_trunc", index)
    ref = golden / f"l{index:03d}.out.hex"
    assert out.read_bytes() != ref.read_bytes()
    p = _layer(golden, index)
    n = p["c"] * p["h"] * p["w"]
    got = vectors.read(out, "hex", p["out_bits"], True, n)
    want = vectors.read(ref, "hex", p["out_bits"], True, n)
    diff = got - want
    # the truncation signature: never above, at most one LSB below, and on many values
    assert diff.max() == 0 and diff.min() == -1
    assert (diff != 0).mean() > 0.2
    if HAVE_VERIFY:
        res = _mdfi_verify(golden, out.parent)
        assert res.returncode == 1, res.stdout + res.stderr
        assert "rounding" in res.stdout.lower(), res.stdout     # the rounding-mode hint


def test_run_sh(golden, tmp_path):
    """The example's one-shot script, on the vectors exported above."""
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    env = dict(os.environ, MDFI_RTL_GOLDEN=str(golden),
               MDFI_RTL_WORK=str(tmp_path / "work"), PYTHON=sys.executable)
    res = subprocess.run(["bash", str(RTL / "run.sh")], env=env, capture_output=True,
                         text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "RESULT: PASS" in res.stdout
    for i in LAYERS:
        assert f"PASS layer {i}: mdfi_requant bit-exact" in res.stdout
        assert f"PASS layer {i}: fault caught" in res.stdout
    # the conv engine part (layers 0 and 2 are not in this export: skipped, said so)
    assert "layer 0: not in the golden export(s): skipped" in res.stdout
    assert "PASS layer 18: mdfi_conv bit-exact" in res.stdout
    assert "PASS layer 18: narrow accumulator caught, with the accumulator-wrap hint" in res.stdout


def _exact(acc: int, s: int, rounding: str, bits: int, act: str) -> int:
    """docs/fixed-point.md section 4 with Python integers: exact for any shift."""
    if act == "relu" and acc < 0:
        acc = 0
    if act == "leaky" and acc < 0:
        acc, s = acc * fx.LEAKY_MULT, s + fx.LEAKY_SHIFT
    y = ((acc + ((1 << (s - 1)) if rounding == "half_up" else 0)) >> s) if s > 0 else acc << -s
    return min(max(y, fx.qmin(bits)), fx.qmax(bits))


@pytest.mark.parametrize("act", ["linear", "leaky", "relu"])
def test_corner_cases(tmp_path, act):
    """Every 8-bit shift (including left shifts and shifts past the operand width), ties,
    saturation and the extreme accumulators, both rounding modes, against the exact
    formula; and the 48-bit / 16-bit extreme configuration against mdfi.fixedpoint."""
    rng = np.random.default_rng(7)
    # (a) ACC_BITS=12, OUT_BITS=5: every shift in [-128, 127]
    ab, ob = 12, 5
    accs = np.unique(np.concatenate([np.arange(-40, 41), [-2048, -2047, 2047, 2046],
                                     rng.integers(-2048, 2048, 40)]))
    shifts = np.arange(-128, 128)
    # (b) ACC_BITS=48, OUT_BITS=16: MDFI's shift range, wide accumulators of every magnitude
    ab2, ob2 = 48, 16
    shifts2 = np.arange(fx.MIN_SHIFT, fx.MAX_SHIFT + 1)
    hw2 = 64
    mag = rng.integers(0, ab2, shifts2.size * hw2)
    accs2 = rng.integers(-(1 << 47), 1 << 47, shifts2.size * hw2) >> mag
    accs2[:4] = [-(1 << 47), (1 << 47) - 1, -1, 0]
    cases = [(ab, ob, np.tile(accs, shifts.size), shifts, accs.size),
             (ab2, ob2, accs2, shifts2, hw2)]
    for k, (a_bits, o_bits, acc, sh, hw) in enumerate(cases):
        (tmp_path / f"c{k}.acc.hex").write_bytes(vectors.to_hex_bytes(acc, a_bits))
        (tmp_path / f"c{k}.shift.hex").write_bytes(vectors.to_hex_bytes(sh, 8))
        s_all = np.repeat(sh, hw)
        for rounding in ("half_up", "truncate"):
            out = tmp_path / f"c{k}_{rounding}.out.hex"
            _simulate(tmp_path / "build", "mdfi_requant", tmp_path / f"c{k}.acc.hex",
                      tmp_path / f"c{k}.shift.hex", out, acc_bits=a_bits, out_bits=o_bits,
                      c=sh.size, hw=hw, act=act, rounding=rounding)
            if k == 0:
                want = np.array([_exact(int(a), int(s), rounding, o_bits, act)
                                 for a, s in zip(acc, s_all)])
            else:
                want = fx.requantize(acc, s_all, rounding, o_bits, act)
            assert out.read_bytes() == vectors.to_hex_bytes(want, o_bits), (k, act, rounding)


@pytest.fixture(scope="module")
def zero_golden(tiny_net, tmp_path_factory) -> Path:
    """yolov3-tiny quantized with zero points (docs/golden-format.md "Zero points"): layers 2
    (3x3, pad_value and zero_out) and 13 (1x1, zero_out), every stage."""
    from mdfi.engine import FixedEngine
    from mdfi.hw import golden as gexp
    from mdfi.model import Model
    from mdfi.quant import recipes
    from mdfi.quant.quantize import quantize_network
    qm = quantize_network(tiny_net, wbits=8, abits=8, per_channel=True, act_method="mse", zero_points=True,
                          calib=recipes.shipped_calibration("yolov3-tiny"))
    out = tmp_path_factory.mktemp("rtl_zero") / "golden"
    gexp.export(Model(tiny_net, [f"class{i}" for i in range(80)], FixedEngine(qm, "c", 2)),
                np.random.default_rng(0).integers(0, 256, (120, 160, 3)).astype(np.uint8), str(out),
                layers=[2, 13])
    return out


def test_zero_point_layers_are_refused(zero_golden, tmp_path):
    """The RTL example implements no zero point: run.sh and the conv engine's bench refuse such
    a layer with one message naming it (zero-free exports: test_run_sh above)."""
    if shutil.which("bash") is None:
        pytest.skip("bash not available")
    env = dict(os.environ, MDFI_RTL_GOLDEN=str(zero_golden), MDFI_RTL_WORK=str(tmp_path / "work"),
               PYTHON=sys.executable, MDFI_RTL_LAYERS="13", MDFI_RTL_CONV="none")
    res = subprocess.run(["bash", str(RTL / "run.sh")], env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "layer 13: zero-point activations (pad_value=" in res.stdout + res.stderr
    assert "not implemented by the RTL example" in res.stdout + res.stderr
    spec = importlib.util.spec_from_file_location("conv_tb_zero", RTL / "conv_tb.py")
    tb = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tb)
    with pytest.raises(ValueError, match=r"layer 2: zero-point activations "
                                         r"\(pad_value=-?\d+, zero_out=-?\d+\) are not"):
        tb.layer_config(str(zero_golden), 2)
