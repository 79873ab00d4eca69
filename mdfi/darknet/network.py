"""A Darknet network: layers built from a cfg, parameters from a ``.weights`` file, and
the float32 reference forward pass."""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from . import cfgkeys, lineage as lineages
from .cfgfile import Section, read_cfg, warn_unused
from ..errors import CfgError, ShapeError
from ..layers import DARKNET_ONLY, NET_SECTIONS, REGISTRY, Layer, Shape
from ..limits import MAX_ACTIVATION_BYTES, MAX_DIM, MAX_LAYERS, MAX_PARAMS

PathLike = Union[str, "os.PathLike[str]"]


class Network:
    """Layers and shapes of a Darknet cfg (batch 1).

    ``layers[i].out_shape`` is (C, H, W).  Parameters are attached by
    :func:`mdfi.darknet.weights.load_weights`.

    ``darknet`` chooses the lineage whose semantics the float path reproduces
    (``"pjreddie"`` or ``"alexeyab"``, :mod:`mdfi.darknet.lineage`); None detects it from the cfg.
    ``darknet`` (the lineage used), ``darknet_reason`` (why) and ``darknet_explicit`` are
    attributes.
    """

    def __init__(self, sections: Sequence[Section], path: str = "<cfg>", *, warn: bool = True,
                 darknet: Optional[str] = None):
        self.path = path
        self.darknet, self.darknet_reason = lineages.resolve(sections, darknet)
        self.darknet_explicit = darknet is not None
        if not sections or sections[0].name not in NET_SECTIONS:
            first = sections[0] if sections else None
            raise CfgError("the first section must be [net] or [network]", path,
                           first.line if first else None)
        net = sections[0]
        self.net_section = net
        self.width = net.get_int("width", required=True, minimum=1)
        self.height = net.get_int("height", required=True, minimum=1)
        self.channels = net.get_int("channels", required=True, minimum=1)
        for key, v in (("width", self.width), ("height", self.height), ("channels", self.channels)):
            MAX_DIM.check(v, f"{path}:{net.options[key].line}: [net] {key}")
        inputs = net.get_int("inputs", self.width * self.height * self.channels)
        if inputs != self.width * self.height * self.channels:
            raise net.error(f"inputs={inputs}: differs from width*height*channels "
                            f"({self.width * self.height * self.channels}); only image networks are supported",
                            "inputs")
        # AlexeyAB: test_detector letterboxes only with letter_box=1 (src/parser.c:1208,
        # src/detector.c:1633, :1674); pjreddie always letterboxes (examples/detector.c:587).
        self.letter_box = bool(net.get_int("letter_box", 0)) if self.darknet == "alexeyab" else True
        MAX_LAYERS.check(len(sections) - 1, f"{path}: number of layers")
        self.layers: List[Layer] = []
        for index, sec in enumerate(sections[1:]):
            if sec.name in NET_SECTIONS:
                raise CfgError(f"[{sec.name}] may only be the first section", path, sec.line)
            cls = REGISTRY.get(sec.name)
            if cls is None:
                if sec.name in DARKNET_ONLY:
                    raise CfgError(f"[{sec.name}] is a Darknet layer MDFI does not support "
                                   f"(supported: {', '.join(sorted(set(REGISTRY)))})", path, sec.line)
                raise CfgError(f"unknown section [{sec.name}]", path, sec.line)
            layer = cls.from_section(index, sec, self)
            for d in layer.out_shape:
                MAX_DIM.check(d, f"{path}:{sec.line}: [{sec.name}] output {layer.out_shape}")
            self.layers.append(layer)
        if not self.layers:
            raise CfgError("the network has no layers after [net]", path, net.line)
        cfgkeys.check_sections(sections, self.darknet)
        MAX_PARAMS.check(self.num_params(), f"{path}: parameters")
        MAX_ACTIVATION_BYTES.check(self.activation_bytes() >> 20, f"{path}: float activations of one forward pass")
        if warn:
            warn_unused(sections)

    # -- construction helpers -------------------------------------------------------
    @classmethod
    def from_cfg(cls, path: PathLike, *, warn: bool = True, darknet: Optional[str] = None) -> "Network":
        spath = os.fspath(path)
        return cls(read_cfg(spath), spath, warn=warn, darknet=darknet)

    # -- detection settings of the lineage -------------------------------------------------
    def nms_settings(self):
        """``(nms_kind, beta_nms)`` of test_detector: AlexeyAB takes them from the last
        ``[yolo]``/``[region]`` layer (src/detector.c:1684-1704); pjreddie always uses
        ``do_nms_sort``."""
        heads = self.output_layers()
        if self.darknet != "alexeyab" or not heads:
            return "default", 0.6
        last = heads[-1]
        return getattr(last, "nms_kind", "default"), getattr(last, "beta_nms", 0.6)

    def shape_of(self, index: int) -> Shape:
        """Output shape of layer ``index``; -1 is the network input."""
        if index == -1:
            return (self.channels, self.height, self.width)
        return self.layers[index].out_shape

    @property
    def input_shape(self) -> Shape:
        return (self.channels, self.height, self.width)

    def num_params(self) -> int:
        return sum(l.num_params() for l in self.layers)

    def activation_bytes(self) -> int:
        return 4 * sum(int(np.prod(l.out_shape)) for l in self.layers)

    @property
    def macs(self) -> int:
        return sum(l.macs for l in self.layers)

    def output_layers(self) -> List[Layer]:
        """The detection heads ([yolo]/[region]) in network order."""
        return [l for l in self.layers if l.kind in ("yolo", "region")]

    def consumers(self) -> Dict[int, List[int]]:
        """Layer index -> indices of layers that read its output (-1: network input)."""
        out: Dict[int, List[int]] = {i: [] for i in range(-1, len(self.layers))}
        for l in self.layers:
            for i in l.inputs:
                out[i].append(l.index)
        return out

    # -- float forward ------------------------------------------------------------------
    def forward_float(self, x: np.ndarray, *, keep: str = "all",
                      hook: Optional[Callable[[int, np.ndarray], None]] = None) -> List[Optional[np.ndarray]]:
        """Float32 forward pass of a (C,H,W) input in [0,1].

        Returns the list of layer outputs.  ``keep="all"`` keeps every output;
        ``keep="needed"`` frees outputs once no later layer needs them, keeping only the
        detection heads (saves memory on YOLOv3).  ``hook(i, out)`` sees every output.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self.input_shape:
            raise ShapeError(f"network input must have shape {self.input_shape} (C,H,W), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ShapeError("network input contains NaN or Inf")
        last_use = self.last_use() if keep == "needed" else {}
        outs: List[Optional[np.ndarray]] = [None] * len(self.layers)
        warned = False
        for layer in self.layers:
            if layer.num_params() and getattr(layer, "weights", None) is None:
                raise ShapeError(f"layer {layer.index} ({layer.kind}) has no weights loaded")
            xs = [x if i == -1 else outs[i] for i in layer.inputs]
            # float32 overflow (weights far beyond a trained model's) is reported once, in one
            # line, instead of NumPy's RuntimeWarnings with source lines.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                out = np.ascontiguousarray(layer.forward_float(xs), dtype=np.float32)
            if not warned and not np.isfinite(out).all():
                import warnings
                from ..errors import MDFIWarning
                warned = True
                bad = int(out.size - np.count_nonzero(np.isfinite(out)))
                warnings.warn(f"{self.path}: layer {layer.index} ({layer.kind}) has {bad:,} non-finite outputs "
                              f"(float32 overflow): the weights' magnitudes are far beyond a trained model's; "
                              f"detections are meaningless", MDFIWarning, stacklevel=2)
            outs[layer.index] = out
            if hook is not None:
                hook(layer.index, out)
            self.release_inputs(outs, layer.index, last_use)
        return outs

    def last_use(self) -> Dict[int, int]:
        """Layer index (-1: network input) -> index of the last layer that reads it.  The
        quantized layers and the C runner's steps read the same inputs, so all forward
        passes free (or reuse) outputs by this map."""
        last: Dict[int, int] = {}
        for l in self.layers:
            for i in l.inputs:
                last[i] = l.index
        return last

    def release_inputs(self, outs: List[Optional[np.ndarray]], index: int, last_use: Dict[int, int]) -> None:
        """keep="needed": drop the outputs whose last reader was layer ``index`` (heads stay)."""
        for i in self.layers[index].inputs:
            if i >= 0 and last_use.get(i) == index and self.layers[i].kind not in ("yolo", "region"):
                outs[i] = None

    def summary(self) -> str:
        lines = [f"{'#':>3} {'layer':<28} {'input':>16} -> {'output':<16} {'MMAC':>8}"]
        for l in self.layers:
            fmt = lambda s: "x".join(str(v) for v in s)
            lines.append(f"{l.index:>3} {l.describe():<28} {fmt(l.in_shape):>16} -> "
                         f"{fmt(l.out_shape):<16} {l.macs / 1e6:8.1f}")
        lines.append(f"total {self.macs / 1e9:.3f} GMAC, {self.num_params():,} parameters")
        return "\n".join(lines)
