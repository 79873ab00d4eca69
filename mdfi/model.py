"""The Python API: load a model once, detect on images or arrays.

>>> import mdfi
>>> model = mdfi.load("yolov3-tiny")             # doctest: +SKIP
>>> for det in model.detect("dog.jpg"):           # doctest: +SKIP
...     print(det.label, det.confidence, det.box)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np

from . import zoo
from .detection import Detection
from .errors import MDFIError, ShapeError
from .image import load_image
from .network import Network
from .postprocess import Raw, postprocess
from .preprocess import image_to_input
from .weights import load_weights

PathLike = Union[str, "os.PathLike[str]"]
ImageLike = Union[PathLike, np.ndarray, "PIL.Image.Image"]  # noqa: F821


@dataclass(frozen=True)
class Prepared:
    """A letterboxed network input and the original image size."""

    tensor: np.ndarray   # (3, net_h, net_w) float32 in [0,1]
    width: int           # original image width
    height: int


class FloatEngine:
    """Darknet's float32 forward pass (NumPy): the float reference path."""

    name = "float"

    def __init__(self, network: Network):
        self.network = network

    def heads(self, x: np.ndarray, thresh: float) -> List[Raw]:
        outs = self.network.forward_float(x, keep="needed")
        return [layer.decode(outs[layer.index], thresh) for layer in self.network.output_layers()]


class Model:
    """A loaded detector.  Build it with :func:`mdfi.load`."""

    def __init__(self, network: Network, names: Sequence[str], engine, *, name: str = ""):
        self.network = network
        self.names = list(names)
        self.engine = engine
        self.name = name or os.path.basename(network.path)

    # -- input -------------------------------------------------------------------------
    @property
    def input_size(self):
        """(width, height) of the network input."""
        return self.network.width, self.network.height

    def prepare(self, image: ImageLike) -> Prepared:
        """Load ``image`` (path, PIL image or HxWx3 uint8 array) and letterbox it."""
        rgb = load_image(image)
        if self.network.channels != 3:
            raise ShapeError(f"{self.name}: the network takes {self.network.channels} channels; "
                             f"only 3-channel (RGB) networks can run on images")
        h, w = rgb.shape[:2]
        return Prepared(image_to_input(rgb, self.network.width, self.network.height), w, h)

    # -- inference -----------------------------------------------------------------------
    def detect(self, image: ImageLike, *, thresh: float = 0.25, nms: float = 0.45) -> List[Detection]:
        """Detections on one image, highest confidence first.

        ``thresh`` is Darknet's detection threshold (objectness and objectness x class
        probability must exceed it); ``nms`` the IoU above which a lower-scoring box of
        the same class is suppressed.
        """
        _check_unit("thresh", thresh)
        _check_unit("nms", nms)
        prep = image if isinstance(image, Prepared) else self.prepare(image)
        raws = self.engine.heads(prep.tensor, thresh)
        return postprocess(raws, prep.width, prep.height, self.network.width, self.network.height,
                           thresh, nms, self.names)

    def layer_outputs(self, x: np.ndarray) -> List[np.ndarray]:
        """Every layer's float32 output for a (C,H,W) float32 input tensor (float path)."""
        return self.network.forward_float(x, keep="all")

    def __repr__(self) -> str:
        return (f"<mdfi.Model {self.name} {self.network.width}x{self.network.height} "
                f"{len(self.network.layers)} layers engine={self.engine.name}>")


def _check_unit(name: str, value: float) -> None:
    if not (0.0 <= float(value) <= 1.0):
        raise MDFIError(f"{name}={value}: must be between 0 and 1")


def load(model: Optional[str] = None, *, cfg: Optional[PathLike] = None,
         weights: Optional[PathLike] = None, names: Optional[PathLike] = None,
         precision: str = "float", download: bool = True) -> Model:
    """Load a detector.

    * ``load("yolov3-tiny")`` (the default): a zoo model; its weights are fetched into the
      cache on first use (see :mod:`mdfi.zoo`).
    * ``load(cfg="my.cfg", weights="my.weights")``: any Darknet model.
    * ``load("yolov3", weights="yolov3.weights")``: a zoo cfg with local weights.

    ``names`` is a class-name file (one per line; default: COCO).
    """
    if precision != "float":
        raise MDFIError(f"precision={precision!r}: expected 'float'")
    if cfg is None:
        spec_name = model or zoo.DEFAULT_MODEL
        cfg_file = zoo.cfg_path(spec_name)
        weights_file = weights if weights is not None else zoo.weights_path(spec_name, download=download)
        names_file = names if names is not None else zoo.names_path(spec_name)
        label = spec_name
    else:
        if weights is None:
            raise MDFIError("a cfg needs its weights: pass weights=PATH (CLI: --weights PATH)")
        cfg_file, weights_file = cfg, weights
        names_file = names if names is not None else zoo.names_path(zoo.DEFAULT_MODEL)
        label = os.path.splitext(os.path.basename(os.fspath(cfg)))[0]
    network = Network.from_cfg(cfg_file)
    load_weights(network, weights_file)
    class_names = zoo.load_names(names_file)
    return Model(network, class_names, FloatEngine(network), name=label)
