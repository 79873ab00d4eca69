#!/usr/bin/env python3
"""Run one convolution layer of an MDFI golden export through the Verilog engine (Icarus).

    python3 examples/rtl/conv_tb.py GOLDEN_DIR LAYER DUT_DIR [--rows FIRST:STEP:COUNT|edges|all] [--narrow BITS]
                                    [--narrow-auto] [--tm 8 --tp 8] [--build DIR]

Reads the layer's shapes, widths, activation, rounding and zero points (``pad_value=``,
``zero_out=``) from GOLDEN_DIR/manifest.json and model.txt (through mdfi/hw/golden_reader.py, which needs only NumPy), compiles
tb_conv.v + mdfi_conv.v (+ mdfi_conv_narrow.v with ``--narrow``) with iverilog, runs it on
the layer's golden ``in0``, ``weights``, ``bias`` and ``shift`` files, and leaves the
engine's outputs in DUT_DIR/lNNN.out.hex (a sparse dump when only some rows are computed).
Check it with ``mdfi verify GOLDEN_DIR DUT_DIR``.

``--rows`` selects output rows ``FIRST + k*STEP`` for ``k < COUNT`` (default: all; ``edges``:
the first and the last), each row for every output channel: a full set of output tiles.  ``--narrow-auto`` builds the
faulty engine with accumulator registers one bit narrower than this layer's golden
accumulators need on this image.  Prints one line: ``layer N: ... cycles, ... s``.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def _reader():
    spec = importlib.util.spec_from_file_location("golden_reader", REPO / "mdfi" / "hw" / "golden_reader.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gr = _reader()


#: the model.txt keys of a conv line the engine implements (docs/golden-format.md "model.txt");
#: anything else (a table activation's pre_bits= pre_frac= lut=, a key of a later format) is refused
CONV_KEYS = {"record", "index", "kind", "in", "c", "h", "w", "m", "k", "stride", "pad", "act", "rounding",
             "in_type", "wbits", "out_bits", "acc64", "acc_bits", "oh", "ow", "weights", "bias", "shift",
             "pad_value", "zero_out"}


def check_supported(ml: dict) -> None:
    """Refuse, with one message naming the layer, a conv line the engine does not implement.
    Zero points are implemented: ``pad_value=`` (padded taps) and ``zero_out=`` (added after the
    rounding shift, before the saturation), docs/golden-format.md "Zero points"."""
    why = []
    if ml.get("act") not in ("linear", "leaky", "relu"):
        why.append(f"act={ml.get('act')} (the engine has linear, leaky, relu)")
    if ml.get("in_type") not in ("u8", "s8"):
        why.append(f"in_type={ml.get('in_type')} (8-bit activations only)")
    if int(ml.get("wbits", 8)) > 8:
        why.append(f"wbits={ml['wbits']} (8-bit weights only)")
    extra = sorted(set(ml) - CONV_KEYS)
    if extra:
        why.append("keys " + ", ".join(f"{k}={ml[k]}" for k in extra))
    if why:
        raise ValueError(f"layer {ml['index']}: not implemented by the RTL example: {'; '.join(why)}")


def zero_points(ml: dict) -> tuple:
    """(pad_value, zero_out) of a conv line: 0 when absent (docs/golden-format.md "Zero points")."""
    return int(ml.get("pad_value", 0)), int(ml.get("zero_out", 0))


def layer_config(golden_dir: str, layer: int) -> dict:
    """Everything the bench needs about one conv layer, from the export."""
    g = gr.GoldenSet(golden_dir)
    L = g.layer(layer)
    if L["kind"] != "convolutional":
        raise ValueError(f"layer {layer} is a {L['kind']} layer, not a convolution")
    ml = next(r for r in g.model_lines() if r["record"] == "layer" and r["index"] == layer)
    check_supported(ml)
    pad_value, zero_out = zero_points(ml)
    c, h, w = L["in_shapes"][0]
    m, oh, ow = L["out_shape"]
    return dict(layer=layer, c=c, h=h, w=w, m=m, oh=oh, ow=ow, k=int(ml["k"]), stride=int(ml["stride"]),
                pad=int(ml["pad"]), act=ml["act"], rounding=ml["rounding"], acc_bits=int(ml["acc_bits"]),
                out_bits=int(ml["out_bits"]), in_unsigned=int(ml["in_type"] == "u8"), pad_value=pad_value,
                zero_out=zero_out, golden=g)


def needed_acc_bits(cfg: dict, rows=None) -> int:
    """Bits (signed) the layer's golden accumulators need on this image (in these rows)."""
    g = cfg["golden"]
    try:
        acc = g.read(cfg["layer"], "acc")
    except KeyError:
        raise ValueError(f"layer {cfg['layer']}: no acc stage in the export (mdfi golden --stages ...acc)") from None
    if rows is not None:
        first, step, count = rows
        acc = acc[:, first:first + step * (count - 1) + 1:step]
    return int(abs(acc).max()).bit_length() + 1


def compile_tb(cfg: dict, build: Path, *, narrow=None, tm: int = 8, tp: int = 8) -> Path:
    build.mkdir(parents=True, exist_ok=True)
    tag = f"l{cfg['layer']:03d}_{tm}x{tp}" + (f"_narrow{narrow}" if narrow else "")
    vvp = build / f"tb_conv_{tag}.vvp"
    params = dict(C=cfg["c"], H=cfg["h"], W=cfg["w"], M=cfg["m"], K=cfg["k"], ACC_BITS=cfg["acc_bits"],
                  OUT_BITS=cfg["out_bits"], TM=tm, TP=tp)
    cmd = ["iverilog", "-g2005", "-s", "tb_conv", "-o", str(vvp)]
    cmd += [f"-Ptb_conv.{k}={v}" for k, v in params.items()]
    if narrow:
        cmd.append(f"-DNARROW={int(narrow)}")
    cmd += [str(HERE / f) for f in ("tb_conv.v", "mdfi_conv.v", "mdfi_conv_narrow.v", "mdfi_requant.v")]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
    return vvp


def golden_files(cfg: dict) -> dict:
    """The layer's golden input and parameter files (hex)."""
    g, i = cfg["golden"], cfg["layer"]
    return {k: g.path(i, st, "hex") for k, st in (("in", "in0"), ("weights", "weights"), ("bias", "bias"),
                                                   ("shift", "shift"))}


def simulate(cfg: dict, vvp: Path, out: Path, files=None, rows=None, timeout: int = 1800) -> dict:
    """Run the bench, writing the engine's outputs to ``out``; returns {"cycles", "outputs",
    "seconds", "out"}.  ``files``: in/weights/bias/shift hex files (default: the golden ones)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    files = files or golden_files(cfg)
    first, step, count = rows if rows else (0, 1, cfg["oh"])
    args = ["vvp", "-n", str(vvp), f"+in={files['in']}", f"+weights={files['weights']}",
            f"+bias={files['bias']}", f"+shift={files['shift']}", f"+out={out}",
            f"+stride={cfg['stride']}", f"+pad={cfg['pad']}", f"+act={cfg['act']}", f"+rounding={cfg['rounding']}",
            f"+in_unsigned={cfg['in_unsigned']}", f"+pad_value={cfg.get('pad_value', 0)}",
            f"+zero_out={cfg.get('zero_out', 0)}", f"+oy_first={first}", f"+oy_step={step}", f"+oy_count={count}"]
    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    dt = time.perf_counter() - t0
    m = re.search(r"tb_conv: DONE (\d+) outputs .* in (\d+) cycles", r.stdout)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"tb_conv failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}")
    return {"outputs": int(m.group(1)), "cycles": int(m.group(2)), "seconds": dt, "out": out}


def parse_rows(text: str):
    """``FIRST:STEP:COUNT``, ``edges`` (the first and the last row) or ``all``."""
    if text in ("edges", "all"):
        return text
    a, b, c = (int(v) for v in text.split(":"))
    return a, b, c


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("golden")
    p.add_argument("layer", type=int)
    p.add_argument("dut")
    p.add_argument("--rows", type=parse_rows, default=None, metavar="FIRST:STEP:COUNT|edges|all")
    p.add_argument("--narrow", type=int, default=None, metavar="BITS")
    p.add_argument("--narrow-auto", action="store_true")
    p.add_argument("--tm", type=int, default=8)
    p.add_argument("--tp", type=int, default=8)
    p.add_argument("--build", default=None)
    a = p.parse_args(argv)
    cfg = layer_config(a.golden, a.layer)
    if a.rows == "edges":
        a.rows = (0, max(cfg["oh"] - 1, 1), 2 if cfg["oh"] > 1 else 1)
    elif a.rows == "all":
        a.rows = None
    narrow = needed_acc_bits(cfg, a.rows) - 1 if a.narrow_auto else a.narrow
    build = Path(a.build) if a.build else Path(a.dut).resolve().parent / ".tb_build"
    vvp = compile_tb(cfg, build, narrow=narrow, tm=a.tm, tp=a.tp)
    res = simulate(cfg, vvp, Path(a.dut) / f"l{a.layer:03d}.out.hex", rows=a.rows)
    rows = a.rows or (0, 1, cfg["oh"])
    print(f"layer {a.layer}: {cfg['c']}x{cfg['h']}x{cfg['w']} -> {cfg['m']}x{cfg['oh']}x{cfg['ow']}, "
          f"{cfg['k']}x{cfg['k']}/{cfg['stride']} pad {cfg['pad']} {cfg['act']}, pad_value {cfg['pad_value']}, "
          f"zero_out {cfg['zero_out']}, acc {cfg['acc_bits']} bits"
          f"{f' (engine registers {narrow} bits: FAULTY)' if narrow else ''}; rows {rows[0]}+k*{rows[1]}, "
          f"k<{rows[2]}: {res['outputs']} outputs in {res['cycles']} cycles ({a.tm}x{a.tp} PEs), "
          f"{res['seconds']:.1f} s -> {res['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
