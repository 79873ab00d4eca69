"""Layer registry: Darknet section name -> layer class (one module per layer type).

Names and aliases follow Darknet's string_to_layer_type (src/parser.c).
"""

from __future__ import annotations

from typing import Dict, Type

from .avgpool import AvgpoolLayer, QAvgpool
from .base import Layer, QLayer, Shape
from .convolutional import ConvolutionalLayer, QConvolutional
from .dropout import DropoutLayer
from .maxpool import MaxpoolLayer, QMaxpool
from .region import QRegion, RegionLayer
from .reorg import QReorg, ReorgLayer
from .route import QRoute, RouteLayer
from .scale_channels import QScaleChannels, ScaleChannelsLayer
from .shortcut import QShortcut, ShortcutLayer
from .upsample import QUpsample, UpsampleLayer
from .yolo import QYolo, YoloLayer

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
    "dropout": DropoutLayer,      # the identity at inference: a one-input route (dropout.py)
    "avgpool": AvgpoolLayer,      # AB src/parser.c:87-88 ([avg] and [avgpool])
    "avg": AvgpoolLayer,
    "scale_channels": ScaleChannelsLayer,
    "sam": ScaleChannelsLayer,    # AB src/sam_layer.c: the elementwise case (kind scale_channels)
}

#: Layer kind -> its fixed-point class (same module as the float layer).
QREGISTRY: Dict[str, Type[QLayer]] = {
    "convolutional": QConvolutional,
    "maxpool": QMaxpool,
    "upsample": QUpsample,
    "route": QRoute,
    "shortcut": QShortcut,
    "yolo": QYolo,
    "region": QRegion,
    "reorg": QReorg,
    "avgpool": QAvgpool,
    "scale_channels": QScaleChannels,
}

#: Layer kinds whose output format is chosen from their own statistics (the others copy or
#: align their inputs' codes, or end the integer datapath).
OWN_FORMAT_KINDS = ("convolutional", "shortcut", "avgpool", "scale_channels")

#: Sections Darknet knows that MDFI does not implement (a clearer error than "unknown").
DARKNET_ONLY = frozenset("""
crop cost detection local deconv deconvolutional activation logistic l2norm crnn gru lstm
rnn conn connected lrn normalization batchnorm soft softmax
gaussian_yolo local_avg local_avgpool reorg3d empty silence implicit
implicit_add implicit_mul contrastive conv_lstm history
""".split())

NET_SECTIONS = ("net", "network")

__all__ = ["REGISTRY", "QREGISTRY", "OWN_FORMAT_KINDS", "QLayer", "DARKNET_ONLY", "NET_SECTIONS", "Layer", "Shape", "ConvolutionalLayer",
           "MaxpoolLayer", "UpsampleLayer", "RouteLayer", "ShortcutLayer", "YoloLayer",
           "RegionLayer", "ReorgLayer", "AvgpoolLayer", "ScaleChannelsLayer"]
