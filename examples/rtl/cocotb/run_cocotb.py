#!/usr/bin/env python3
"""Run the cocotb test bench (cocotb_conv.py) on one layer of a golden export, with Icarus.

    python3 examples/rtl/cocotb/run_cocotb.py GOLDEN_DIR LAYER DUT_DIR [--rows FIRST:STEP:COUNT] [--narrow BITS]

Prepares the memory images from the golden files (packed weight, bias and shift words; the
activations are the golden ``lNNN.in0.hex`` as is), builds tb_conv_top.v + mdfi_conv.v +
mdfi_requant.v with cocotb's runner, runs the cocotb test, and leaves the engine's outputs
in DUT_DIR/lNNN.out.hex.  Exit status 0 when the cocotb test passed.  Needs ``pip install
cocotb`` (the ``rtl`` extra) and Icarus Verilog.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RTL = HERE.parent
REPO = RTL.parent.parent
_spec = importlib.util.spec_from_file_location("golden_reader", REPO / "mdfi" / "hw" / "golden_reader.py")
gr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gr)
_spec = importlib.util.spec_from_file_location("conv_tb", RTL / "conv_tb.py")
_conv_tb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conv_tb)


def _words(path: Path, rows, lane_bits: int) -> None:
    """rows: list of lists of lane values -> one hex word per row, lane i at [i*lane_bits +: lane_bits]."""
    mask = (1 << lane_bits) - 1
    digits = (lane_bits * len(rows[0]) + 3) // 4
    with open(path, "w") as fh:
        for lanes in rows:
            v = 0
            for i, x in enumerate(lanes):
                v |= (int(x) & mask) << (i * lane_bits)
            fh.write(format(v, f"0{digits}x") + "\n")


def prepare(golden: str, layer: int, build: Path, tm: int = 8) -> dict:
    """Memory images and HDL parameters for ``layer``."""
    g = gr.GoldenSet(str(Path(golden).resolve()))
    ml = g.model_line(layer)
    _conv_tb.check_supported(ml)     # zero points are implemented; refuses what the engine is not
    w = g.read(layer, "weights")                      # (M, C, K, K)
    bias, shift = g.read(layer, "bias"), g.read(layer, "shift")
    m = w.shape[0]
    ckk = w[0].size
    mt = -(-m // tm)
    wf = w.reshape(m, ckk)
    pad = lambda a, i: [int(a[i * tm + j]) if i * tm + j < m else 0 for j in range(tm)]   # noqa: E731
    build.mkdir(parents=True, exist_ok=True)
    _words(build / "wword.hex", [[int(wf[t * tm + j, r]) if t * tm + j < m else 0 for j in range(tm)]
                                 for t in range(mt) for r in range(ckk)], 8)
    acc_bits = g.entry(layer, "bias")["bits"]
    _words(build / "bword.hex", [pad(bias, t) for t in range(mt)], acc_bits)
    _words(build / "sword.hex", [pad(shift, t) for t in range(mt)], 8)
    c, h, wd = g.layer(layer)["in_shapes"][0]
    return {"plusargs": [f"+act={g.path(layer, 'in0', 'hex')}", f"+wword={build / 'wword.hex'}",
                         f"+bword={build / 'bword.hex'}", f"+sword={build / 'sword.hex'}"],
            "parameters": {"NIN": c * h * wd, "NWW": mt * ckk, "MT": mt, "TM": tm, "TP": 8, "ACC_BITS": acc_bits,
                           "OUT_BITS": g.entry(layer, "out")["bits"]}}


def run(golden: str, layer: int, dut_dir: Path, rows=None, build: Path = None, narrow=None) -> dict:
    """Build and run (``narrow``: the faulty engine with accumulator registers of that many
    bits); returns {"passed": bool, "tests", "failed", "seconds", "out": path, "results": xml}."""
    from cocotb_tools.runner import get_results, get_runner
    build = Path(build or (Path(dut_dir).resolve().parent / f".cocotb_l{layer:03d}{'_narrow' if narrow else ''}"))
    build = build.resolve()      # the simulator runs inside build_dir: relative memory-image paths would break
    prep = prepare(golden, layer, build)
    runner = get_runner("icarus")
    t0 = time.perf_counter()
    runner.build(sources=[HERE / "tb_conv_top.v", RTL / "mdfi_conv.v", RTL / "mdfi_conv_narrow.v",
                          RTL / "mdfi_requant.v"],
                 hdl_toplevel="tb_conv_top", parameters=prep["parameters"], build_dir=build, always=True,
                 defines={"NARROW": int(narrow)} if narrow else {})
    out = Path(dut_dir).resolve() / f"l{layer:03d}.out.hex"
    env = {"MDFI_GOLDEN": str(Path(golden).resolve()), "MDFI_LAYER": str(layer), "MDFI_DUT_OUT": str(out),
           "MDFI_ROWS": ":".join(map(str, rows)) if rows else "", "MDFI_TM": "8", "MDFI_TP": "8"}
    xml = build / "results.xml"
    if xml.exists():
        xml.unlink()
    try:
        runner.test(hdl_toplevel="tb_conv_top", test_module="cocotb_conv", test_dir=HERE, build_dir=build,
                    plusargs=prep["plusargs"], extra_env=env, results_xml=str(xml))
    except SystemExit:           # cocotb's runner exits when a test fails; the results file says which
        pass
    n, failed = get_results(xml)
    return {"passed": n > 0 and failed == 0, "tests": n, "failed": failed, "seconds": time.perf_counter() - t0,
            "out": out, "results": xml}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("golden")
    p.add_argument("layer", type=int)
    p.add_argument("dut")
    p.add_argument("--rows", default=None, metavar="FIRST:STEP:COUNT")
    p.add_argument("--build", default=None)
    p.add_argument("--narrow", type=int, default=None, metavar="BITS", help="run the faulty engine")
    a = p.parse_args(argv)
    rows = tuple(int(v) for v in a.rows.split(":")) if a.rows else None
    res = run(a.golden, a.layer, Path(a.dut), rows, Path(a.build) if a.build else None, a.narrow)
    print(f"cocotb: layer {a.layer}: {'PASS' if res['passed'] else 'FAIL'} ({res['tests']} test(s), "
          f"{res['failed']} failed) in {res['seconds']:.1f} s -> {res['out']}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
