"""MDFI: Micro Darknet For Inference.

A forward-only, fixed-point inference engine for Darknet detectors (YOLOv3, YOLOv3-tiny,
YOLOv2-tiny ...) and a bit-exact golden model for hardware verification.

Python API::

    import mdfi
    model = mdfi.load("yolov3-tiny")        # weights fetched and cached on first use
    detections = model.detect("dog.jpg")    # path, PIL image or HxWx3 uint8 array
"""

__version__ = "0.1.0"

from .detection import Detection  # noqa: E402
from .errors import MDFIError  # noqa: E402
from .model import Model, load  # noqa: E402

__all__ = ["load", "Model", "Detection", "MDFIError", "__version__"]
