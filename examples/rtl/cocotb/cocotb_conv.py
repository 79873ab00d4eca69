"""cocotb test bench: one convolution layer of an MDFI golden export through mdfi_conv.

The reference is the golden export itself, read with ``mdfi/hw/golden_reader.py`` (standalone,
NumPy only): the layer's shapes and formats from its manifest, the expected outputs from
``lNNN.out.hex``.  The bench drives clock, reset and the layer descriptor, starts the engine,
collects every output it produces (address and value), checks each one against the golden
output at that address, checks that every requested output came exactly once, and writes
the outputs as a sparse dump (``lNNN.out.hex`` with ``@address`` markers) for ``mdfi
verify``.

Run it with ``run_cocotb.py`` (which prepares the memory images and starts Icarus through
cocotb's runner); settings come from the environment: MDFI_GOLDEN, MDFI_LAYER, MDFI_ROWS
(``FIRST:STEP:COUNT``), MDFI_DUT_OUT, MDFI_TM, MDFI_TP.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, with_timeout

_REPO = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("golden_reader", _REPO / "mdfi" / "hw" / "golden_reader.py")
gr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gr)
# the one list of what the engine implements (and the refusal naming the layer): conv_tb.py's
_spec = importlib.util.spec_from_file_location("conv_tb", Path(__file__).resolve().parents[1] / "conv_tb.py")
_conv_tb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conv_tb)
check_supported = _conv_tb.check_supported


def layer_descriptor(g, layer: int, rows) -> dict:
    """The engine's configuration for one layer (what a driver would compute)."""
    L = g.layer(layer)
    ml = next(r for r in g.model_lines() if r["record"] == "layer" and r["index"] == layer)
    check_supported(ml)
    # zero points (docs/golden-format.md "Zero points"): padded taps hold pad_value (a code of the
    # input format), zero_out is added after the rounding shift; 0 when the key is absent
    pad_value, zero_out = int(ml.get("pad_value", 0)), int(ml.get("zero_out", 0))
    c, h, w = L["in_shapes"][0]
    m, oh, ow = L["out_shape"]
    k, stride, pad = int(ml["k"]), int(ml["stride"]), int(ml["pad"])
    first, step, count = rows if rows else (0, 1, oh)
    return dict(cfg_c=c, cfg_h=h, cfg_w=w, cfg_hw=h * w, cfg_m=m, cfg_k=k, cfg_stride=stride, cfg_pad=pad,
                cfg_ow=ow, cfg_ohw=oh * ow, cfg_ckk=c * k * k, cfg_oy_first=first, cfg_oy_step=step,
                cfg_oy_count=count, cfg_iy_first=first * stride - pad, cfg_iy_step=step * stride,
                cfg_iyw_first=(first * stride - pad) * w, cfg_iyw_step=step * stride * w,
                cfg_oyw_first=first * ow, cfg_oyw_step=step * ow,
                cfg_act={"linear": 0, "leaky": 1, "relu": 2}[ml["act"]],
                cfg_rnd={"half_up": 0, "truncate": 1}[ml["rounding"]],
                cfg_in_unsigned=int(ml["in_type"] == "u8"),
                cfg_pad_value=pad_value & 0xFF, cfg_zero_out=zero_out & ((1 << int(ml["out_bits"])) - 1))


@cocotb.test()
async def conv_layer_matches_golden(dut):
    g = gr.GoldenSet(os.environ["MDFI_GOLDEN"])
    layer = int(os.environ["MDFI_LAYER"])
    rows = tuple(int(v) for v in os.environ["MDFI_ROWS"].split(":")) if os.environ.get("MDFI_ROWS") else None
    desc = layer_descriptor(g, layer, rows)
    gold = g.read(layer, "out")                       # (M, OH, OW)
    m, oh, ow = gold.shape
    first, step, count = rows or (0, 1, oh)
    want = {(ch * oh + first + r * step) * ow + x for ch in range(m) for r in range(count) for x in range(ow)}
    gold = gold.reshape(-1)

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for name, value in desc.items():
        getattr(dut, name).value = value
    dut.rst_n.value = 0
    dut.start.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst_n.value = 1

    got = {}
    bad = []

    async def monitor():
        while True:
            await RisingEdge(dut.clk)
            await ReadOnly()
            if dut.out_valid.value == 1:
                if not (dut.out_addr.value.is_resolvable and dut.out_data.value.is_resolvable):
                    bad.append("x/z on the output port")
                    continue
                a, v = int(dut.out_addr.value), dut.out_data.value.to_signed()
                if a in got:
                    bad.append(f"address {a} produced twice")
                got[a] = v

    cocotb.start_soon(monitor())
    await RisingEdge(dut.clk)
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0
    tm, tp = int(os.environ.get("MDFI_TM", 8)), int(os.environ.get("MDFI_TP", 8))
    cycles = count * -(-ow // tp) * -(-m // tm) * (desc["cfg_ckk"] + 8 * tm * tp) + 1000
    await with_timeout(RisingEdge(dut.done), cycles * 10, "ns")
    await ClockCycles(dut.clk, 2)

    addr = np.array(sorted(got), dtype=np.int64)
    vals = np.array([got[a] for a in addr], dtype=np.int64)
    out = os.environ.get("MDFI_DUT_OUT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        gr.write_hex(out, vals, g.entry(layer, "out")["bits"], addresses=addr)
    wrong = np.flatnonzero(gold[addr] != vals) if addr.size else np.array([], dtype=np.int64)
    dut._log.info(f"layer {layer}: {len(got)} outputs, {wrong.size} differ from golden")
    assert not bad, bad[:5]
    assert set(got) == want, f"{len(set(got) ^ want)} outputs missing or unexpected"
    assert wrong.size == 0, (f"{wrong.size} of {addr.size} outputs differ; first at flat index {addr[wrong[0]]}: "
                             f"golden {gold[addr[wrong[0]]]}, engine {vals[wrong[0]]}")
