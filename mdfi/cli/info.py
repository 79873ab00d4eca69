"""``mdfi info``: the per-layer table of a quantized model."""

from __future__ import annotations

from typing import Optional

from .. import fixedpoint as fp
from ..layers import OWN_FORMAT_KINDS
from ..quant.qmodel import QuantizedModel


def _shape(s) -> str:
    return "x".join(str(v) for v in s)


def _wfmt(ql) -> str:
    if ql.kind != "convolutional":
        return "-"
    lo, hi = int(ql.w_frac.min()), int(ql.w_frac.max())
    if lo == hi:
        return fp.QFormat(ql.wbits, lo).ap_type()
    return f"ap_fixed<{ql.wbits},{ql.wbits - hi}..{ql.wbits - lo}>/ch"


def _method(ql) -> str:
    m = getattr(ql, "method", None)
    if ql.kind != "convolutional":
        return "-"
    if not m:
        return "?"                       # a file written before MDFI recorded it
    al = f" align {m['align']}" if m.get("align") else ""
    al += f" actequal {m['actequal']}" if m.get("actequal") else ""
    al += f" gain {m['gain']}" if m.get("gain") else ""
    return f"{m.get('weights', '?')}/{m.get('bias', '?')}{al}"


def _afmt(ql) -> str:
    if ql.out_fmt is not None:
        return f"{ql.out_fmt.ap_type()} {ql.out_fmt.q_notation()}"
    return "prob UQ1.15, exp UQ15.16"


def info_table(qm: QuantizedModel, *, file_bytes: Optional[int] = None) -> str:
    net = qm.network
    rows = [("#", "layer", "input", "output", "MMAC", "weights", "output format", "acc", "param B",
             "rounding/bias")]
    total_bits = 0
    for layer, ql in zip(net.layers, qm.layers):
        acc = f"{ql.acc_bits}b" if ql.kind == "convolutional" else (
            f"{max(f.frac for f in ql.in_fmts) - min(f.frac for f in ql.in_fmts) + ql.out_fmt.bits + 1}b"
            if ql.kind == "shortcut" else "-")
        pbits = ql.param_bits()
        total_bits += pbits
        rows.append((str(layer.index), layer.describe(), _shape(layer.in_shape), _shape(layer.out_shape),
                     f"{layer.macs / 1e6:.1f}" if layer.macs else "-", _wfmt(ql), _afmt(ql), acc,
                     f"{(pbits + 7) // 8:,}" if pbits else "-", _method(ql)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {0, 4, 7, 8}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    float_bytes = 20 + 4 * net.num_params()
    param_bytes = qm.param_bytes()
    o = qm.options
    lines.append("-" * len(lines[0]))
    lines.append(f"{len(net.layers)} layers, {net.macs / 1e9:.3f} GMAC per {net.width}x{net.height} image, "
                 f"{net.num_params():,} parameters")
    reason = qm.options.get("darknet_reason", net.darknet_reason)
    how = "given explicitly" if reason == "given explicitly" else f"detected: {reason}"
    pre = "letterbox" if net.letter_box else "plain resize (no letterbox)"
    nms, beta = net.nms_settings()
    lines.append(f"darknet lineage: {net.darknet} ({how}); input {pre}; NMS {nms}"
                 f"{f' beta {beta:g}' if nms == 'diounms' else ''}")
    lines.append(f"quantization: weights {o.get('wbits')} bits "
                 f"({'per channel' if o.get('per_channel') else 'per layer'}), activations {o.get('abits')} bits, "
                 f"rounding {o.get('rounding')}, input {qm.input_fmt.ap_type()}; formats: {o.get('formats_source')}"
                 + "".join(f", {k.replace('_', ' ')} {v:g}{' %' if k == 'clip_budget' else ''}"
                           for k, v in sorted((o.get("act_options") or {}).items()))
                 + ("; with zero points (value (q - zero)*2^-frac, shown as ap_fixed<..>+z; docs/fixed-point.md 1.1)"
                    if o.get("zero_points") else ""))
    for kind, what in (("align", "mantissa alignment"), ("actequal", "activation-range equalization")):
        d = o.get(kind)
        if isinstance(d, dict):
            layers = d.get("layers") if isinstance(d.get("layers"), list) else []
            settings = ", ".join(f"{k} {v:g}" if type(v) in (int, float) else f"{k} {v}" for k, v in d.items()
                                 if k not in ("layers", "channels", "channels_up", "channels_down")
                                 and type(v) in (int, float, str))
            lines.append(f"cross-layer rescaling: {what} ({settings}): {d.get('channels', '?')} channels of "
                         f"{len(layers)} layers, {d.get('channels_up', '?')} enlarged, "
                         f"{d.get('channels_down', '?')} reduced (folded into the float weights before quantization)")
    d = o.get("search")
    if isinstance(d, dict):
        heads = ", ".join(str(i) for i in d.get("heads", []) if type(i) is int) or "none"
        lines.append(f"format search: activation formats chosen by their effect on the heads at "
                     f"{d.get('object_cells', '?')} object cells of {d.get('inputs', '?')} calibration inputs; head "
                     f"biases at layers {heads} shifted by {d.get('head_shift_strength', '?')} of the error left there")
    widths = sorted({ql.wbits for ql in qm.layers if ql.kind == "convolutional"})
    if len(widths) > 1:
        lines.append("mixed precision: weight widths " + ", ".join(
            f"{ql.index}:{ql.wbits}" for ql in qm.layers if ql.kind == "convolutional"))
    abits = {ql.index: ql.out_fmt.bits for ql in qm.layers
             if ql.kind in OWN_FORMAT_KINDS and ql.out_fmt is not None}
    if len(set(abits.values())) > 1:
        base = o.get("abits")
        wide = [f"{i}:{b}" for i, b in abits.items() if b != base]
        lines.append(f"mixed precision: activation widths {', '.join(wide)} (the other layers {base} bits; "
                     f"weights as listed): {qm.describe()}")
    lines.append("rounding/bias: how each layer's integers were chosen (nearest, gptq, adaround or brecq weights; bias "
                 "nearest, "
                 "analytic or empirical correction; ? = not recorded)")
    if o.get("brecq"):
        lines.append("block reconstruction (brecq): blocks " + ", ".join("-".join(map(str, b)) for b in
                     o["brecq"].get("blocks", [])) + f"; QDrop p={o['brecq'].get('p_drop')}, "
                     f"{o['brecq'].get('iters')} steps per block")
    if o.get("gain_correction"):
        lines.append(f"gain correction: {o['gain_correction']} (weights rounded towards the float network's output "
                     f"from the quantized inputs; the layers marked 'gain {o['gain_correction']}')")
    size = f"parameters {param_bytes:,} bytes at their declared widths"
    if file_bytes is not None:
        size += f"; model file {file_bytes:,} bytes"
    ref = file_bytes if file_bytes is not None else param_bytes
    size += f" = {100.0 * ref / float_bytes:.1f}% of the float weights ({float_bytes:,} bytes)"
    lines.append(size)
    return "\n".join(lines)
