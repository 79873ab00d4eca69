"""The cocotb test bench of the convolution engine (examples/rtl/cocotb/), with Icarus.

cocotb drives mdfi_conv.v from Python and checks every output against the golden export,
read through mdfi/hw/golden_reader.py: a 3x3 layer (yolov3-tiny's layer 4, an interior row,
all 64 channels) and a 1x1 layer (layer 18, one row, all 128 channels) pass, and the same
bench fails on the faulty engine (narrow accumulators).  The dumps it writes pass or fail
``mdfi verify`` accordingly.  Skipped without cocotb (the ``rtl``/``test`` extras) or
Icarus Verilog.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest

from conftest import REPO, run_python

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                                reason="Icarus Verilog (iverilog, vvp) not on PATH: apt-get install -y iverilog")
pytest.importorskip("cocotb", reason="cocotb is not installed (pip install '.[rtl]'; the test extra leaves it out on Linux "
                               "aarch64, where it has no wheel and needs a C++ compiler)")
pytest.importorskip("cocotb_tools.runner", reason="cocotb 2.x (with cocotb_tools) is needed")
if importlib.util.find_spec("find_libpython") is not None:
    import find_libpython
    if not find_libpython.find_libpython():
        pytest.skip("cocotb needs a shared libpython, which this Python does not have", allow_module_level=True)

COCOTB = REPO / "examples" / "rtl" / "cocotb"


def _runner():
    spec = importlib.util.spec_from_file_location("run_cocotb", COCOTB / "run_cocotb.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _verify(golden, dut):
    r = run_python(["-m", "mdfi", "verify", str(golden), str(dut), "--json"], cwd=dut, timeout=120)
    return r.returncode, json.loads(r.stdout)


@pytest.mark.parametrize("fixture, layer, rows", [("rtl_golden_conv", 4, (52, 1, 1)), ("rtl_golden", 18, (6, 1, 1))],
                         ids=["l004-3x3", "l018-1x1"])
def test_cocotb_bench_passes_on_real_layers(request, tmp_path, fixture, layer, rows):
    golden = request.getfixturevalue(fixture)
    dut = tmp_path / "dut"
    res = _runner().run(str(golden), layer, dut, rows, build=tmp_path / "build")
    assert res["passed"], res
    status, rep = _verify(golden, dut)
    assert status == 0 and rep["files"][0]["present"] > 0, rep


def test_cocotb_bench_fails_on_the_faulty_engine(rtl_golden, tmp_path):
    dut = tmp_path / "dut"
    res = _runner().run(str(rtl_golden), 18, dut, (0, 1, 1), build=tmp_path / "build", narrow=14)
    assert res["tests"] == 1 and res["failed"] == 1, res
    status, rep = _verify(rtl_golden, dut)
    assert status == 1 and rep["files"][0]["hints"][0]["kind"] == "acc_wrap", rep
