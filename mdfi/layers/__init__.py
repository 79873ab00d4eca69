"""Layer registry: Darknet section name -> layer class (one module per layer type).

Names and aliases follow Darknet's string_to_layer_type (src/parser.c).
"""

from __future__ import annotations

from typing import Dict, Type

from .base import Layer, Shape
from .convolutional import ConvolutionalLayer
from .maxpool import MaxpoolLayer
from .region import RegionLayer
from .reorg import ReorgLayer
from .route import RouteLayer
from .shortcut import ShortcutLayer
from .upsample import UpsampleLayer
from .yolo import YoloLayer

REGISTRY: Dict[str, Type[Layer]] = {
    "convolutional": ConvolutionalLayer,
    "conv": ConvolutionalLayer,
    "maxpool": MaxpoolLayer,
    "max": MaxpoolLayer,
    "upsample": UpsampleLayer,
    "route": RouteLayer,
    "shortcut": ShortcutLayer,
    "yolo": YoloLayer,
    "region": RegionLayer,
    "reorg": ReorgLayer,
}

#: Sections Darknet knows that MDFI does not implement (a clearer error than "unknown").
DARKNET_ONLY = frozenset("""
crop cost detection local deconv deconvolutional activation logistic l2norm crnn gru lstm
rnn conn connected avg avgpool dropout lrn normalization batchnorm soft softmax
""".split())

NET_SECTIONS = ("net", "network")

__all__ = ["REGISTRY", "DARKNET_ONLY", "NET_SECTIONS", "Layer", "Shape", "ConvolutionalLayer",
           "MaxpoolLayer", "UpsampleLayer", "RouteLayer", "ShortcutLayer", "YoloLayer",
           "RegionLayer", "ReorgLayer"]
