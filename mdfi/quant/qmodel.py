"""The quantized model: a network with fixed-point parameters (what a ``.mdfi`` file holds),
its NumPy integer reference forward, and the host-side conversion of the input to 8-bit
pixels.  :func:`mdfi.quant.quantize.quantize_network` makes one (split out of
``quantize.py``, which re-exports these names)."""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .. import fixedpoint as fp
from ..errors import ShapeError
from ..layers import QLayer
from ..darknet.network import Network


class QuantizedModel:
    """A network with fixed-point parameters: what a ``.mdfi`` file holds.

    ``layers[i]`` is the :class:`~mdfi.layers.QLayer` of ``network.layers[i]``.  The input
    is the letterboxed image as 8-bit pixels (:data:`mdfi.fixedpoint.INPUT_FORMAT`).
    """

    def __init__(self, network: Network, cfg_text: str, layers: Sequence[QLayer], options: Mapping,
                 names: Optional[Sequence[str]] = None):
        self.network = network
        self.cfg_text = cfg_text
        self.layers: List[QLayer] = list(layers)
        self.options = dict(options)
        self.names = list(names) if names is not None else None
        self.input_fmt = fp.INPUT_FORMAT
        # Identity kept across save/load (the network of a loaded file has a synthetic path).
        self.cfg_name = os.path.basename(network.path)
        self.name = os.path.splitext(self.cfg_name)[0]
        if len(self.layers) != len(network.layers):
            raise ShapeError("quantized model: layer count differs from its network")

    @property
    def input_shape(self):
        return self.network.input_shape

    def output_layers(self) -> List[QLayer]:
        return [self.layers[l.index] for l in self.network.output_layers()]

    # -- integer reference forward --------------------------------------------------------------
    def check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != self.input_shape:
            raise ShapeError(f"fixed-point input must have shape {self.input_shape} (C,H,W), got {x.shape}")
        if x.dtype != np.uint8:
            raise ShapeError(f"fixed-point input must be uint8 pixels, got {x.dtype}")
        return np.ascontiguousarray(x)

    def forward_ref(self, x_u8: np.ndarray, *, keep: str = "all",
                    hook: Optional[Callable[[int, np.ndarray], None]] = None,
                    stats: Optional[Dict[int, dict]] = None) -> List[Optional[np.ndarray]]:
        """The NumPy integer reference: every layer's int32 output for a uint8 (C,H,W) input.

        ``stats`` (a dict) receives, per layer index that requantizes, ``{"saturated": n,
        "total": m}`` accumulated over calls: how many outputs the saturation clamped.
        """
        x = self.check_input(x_u8).astype(np.int32)
        last = self.network.last_use() if keep == "needed" else {}
        outs: List[Optional[np.ndarray]] = [None] * len(self.layers)
        for ql in self.layers:
            xs = [x if i == -1 else outs[i] for i in ql.inputs]
            layer_stats = None if stats is None else stats.setdefault(ql.index, {})
            out = ql.forward_ref(xs, stats=layer_stats)
            outs[ql.index] = out
            if hook is not None:
                hook(ql.index, out)
            self.network.release_inputs(outs, ql.index, last)
        return outs

    # -- reporting ------------------------------------------------------------------------------
    def param_bytes(self) -> int:
        """Bytes of all parameters at their declared widths (bit-packed, as in the file)."""
        return sum((ql.param_bits() + 7) // 8 for ql in self.layers)

    def describe(self) -> str:
        o = self.options
        mixed = ""
        for key, what in (("layer_wbits", "w"), ("layer_abits", "a")):
            by_width: Dict[int, List[str]] = {}
            for k, v in sorted((o.get(key) or {}).items(), key=lambda kv: int(kv[0])):
                by_width.setdefault(int(v), []).append(str(k))
            mixed += "".join(f" {what}{b}@{','.join(ls)}" for b, ls in sorted(by_width.items()))
        if mixed:
            mixed = " mixed" + mixed
        return (f"w{o.get('wbits')}a{o.get('abits')}{mixed}"
                f"{' per-channel' if o.get('per_channel') else ''}{' zero-points' if o.get('zero_points') else ''} "
                f"{o.get('rounding')}")


def input_to_u8(x: np.ndarray) -> np.ndarray:
    """Letterboxed float input in [0,1] -> 8-bit pixels ``floor(v*255 + 1/2)`` (host side).

    For pixels copied from the image this recovers the original 8-bit value exactly; the
    0.5 grey border becomes 128 (127.5 rounded half up)."""
    v = np.asarray(x, dtype=np.float64) * 255.0
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)


def saturation_report(qm: QuantizedModel, stats: Dict[int, dict], *, only_nonzero: bool = False) -> str:
    """Per-layer table of ``forward_ref(..., stats=...)`` counts: how many outputs each
    requantizing layer clamped to its format's range (a format too narrow shows here)."""
    lines = [f"{'layer':>5}  {'kind':<13} {'format':<24} {'saturated':>12} {'of':>12} {'%':>8}"]
    tot_s = tot_n = 0
    for i in sorted(stats):
        st = stats[i]
        if not st or "total" not in st:
            continue
        s, n = st["saturated"], st["total"]
        tot_s += s
        tot_n += n
        if only_nonzero and s == 0:
            continue
        ql = qm.layers[i]
        fmt = "" if ql.out_fmt is None else f"{ql.out_fmt.ap_type()} {ql.out_fmt.q_notation()}"
        lines.append(f"{i:>5}  {ql.kind:<13} {fmt:<24} {s:>12,} {n:>12,} {100.0 * s / max(n, 1):>7.3f}%")
    lines.append(f"{'all':>5}  {'':<13} {'':<24} {tot_s:>12,} {tot_n:>12,} {100.0 * tot_s / max(tot_n, 1):>7.3f}%")
    return "\n".join(lines)
