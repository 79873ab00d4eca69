"""Common base of the layer modules.  One module per Darknet section type; see registry in
:mod:`mdfi.layers`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, List, Optional, Sequence, Tuple

import numpy as np

from ..darknet.cfgfile import Section
from ..errors import CfgError

if TYPE_CHECKING:  # pragma: no cover
    from ..darknet.network import Network

Shape = Tuple[int, int, int]  # (C, H, W): Darknet's planar layout, batch 1


class Layer:
    """A layer of a Darknet network, built from its cfg section.

    ``inputs`` are the indices of the layers whose outputs it reads; ``-1`` means the
    network input.  ``out_shape`` is (C, H, W).
    """

    kind: ClassVar[str] = ""

    def __init__(self, index: int, section: Section, inputs: Sequence[int], in_shapes: Sequence[Shape]):
        self.index = index
        self.section = section
        self.inputs: List[int] = list(inputs)
        self.in_shapes: List[Shape] = list(in_shapes)
        self.out_shape: Shape = in_shapes[0] if in_shapes else (0, 0, 0)

    # -- construction --------------------------------------------------------------
    @classmethod
    def from_section(cls, index: int, section: Section, net: "Network") -> "Layer":
        """Default: one input, the previous layer (Darknet's params.h/w/c)."""
        prev = index - 1
        return cls(index, section, [prev], [net.shape_of(prev)])

    def error(self, message: str, key: Optional[str] = None) -> CfgError:
        return self.section.error(message, key)

    @property
    def in_shape(self) -> Shape:
        return self.in_shapes[0]

    # -- parameters ------------------------------------------------------------------
    def num_params(self) -> int:
        """Number of float32 values this layer reads from a ``.weights`` file."""
        return 0

    def set_params(self, values: np.ndarray) -> None:
        """Take this layer's ``num_params()`` float32 values, in file order."""

    @property
    def macs(self) -> int:
        return 0

    # -- float forward ---------------------------------------------------------------
    def forward_float(self, xs: List[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind

    def __repr__(self) -> str:
        return f"<{type(self).__name__} #{self.index} {self.in_shapes} -> {self.out_shape}>"


def check_positive_shape(layer: Layer, shape: Shape, what: str = "output") -> Shape:
    if min(shape) < 1:
        raise layer.error(f"{what} shape {shape} is empty (input {layer.in_shapes})")
    return shape


class QLayer:
    """The fixed-point version of a layer: formats, integer parameters, and the NumPy
    integer reference forward (the executable specification the C kernels must equal).

    ``out_fmt`` is the :class:`~mdfi.fixedpoint.QFormat` of the output (``None`` for the
    detection heads, whose entries carry several formats).  Integer tensors flow between
    layers as int32 NumPy arrays in the reference.
    """

    kind: ClassVar[str] = ""

    def __init__(self, layer: Layer, out_fmt, rounding: str = "half_up"):
        self.layer = layer
        self.index = layer.index
        self.out_fmt = out_fmt
        self.rounding = rounding

    @property
    def inputs(self) -> List[int]:
        return self.layer.inputs

    def forward_ref(self, xs: List[np.ndarray], stats: Optional[dict] = None) -> np.ndarray:
        """Integer output; ``stats`` (a dict) accumulates saturation counts where the layer
        requantizes (``saturated``, ``total``)."""
        raise NotImplementedError

    # -- serialisation (model files and golden exports) ---------------------------------
    def meta(self) -> dict:
        """JSON-safe description of this layer's formats and settings."""
        return {"kind": self.kind, "rounding": self.rounding,
                "out_fmt": None if self.out_fmt is None else self.out_fmt.to_dict()}

    def arrays(self) -> dict:
        """Integer arrays of this layer (weights, biases, tables), by name."""
        return {}

    def param_bits(self) -> int:
        """Bits of parameters at their declared widths (for model-size reports)."""
        return 0

    def describe_formats(self) -> str:
        return "" if self.out_fmt is None else str(self.out_fmt)


def meta_format(meta: dict, key: str = "out_fmt"):
    """The :class:`QFormat` saved under ``key`` (KeyError when it is absent or null)."""
    from ..fixedpoint import QFormat
    d = meta.get(key)
    if d is None:
        raise KeyError(key)
    return QFormat.from_dict(d)
