"""MDFI: Micro Darknet For Inference.

A forward-only, fixed-point inference engine for Darknet detectors (YOLOv3, YOLOv3-tiny,
YOLOv2-tiny ...) and a bit-exact golden model for hardware verification.

Python API::

    import mdfi
    model = mdfi.load("yolov3-tiny")        # weights fetched and cached on first use
    detections = model.detect("dog.jpg")    # path, PIL image or HxWx3 uint8 array
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING  # noqa: E402

from .detection import Detection, Detections  # noqa: E402
from .errors import MDFIError  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from .draw import draw_detections
    from .model import Model, load

__all__ = ["load", "Model", "Detection", "Detections", "MDFIError", "draw_detections", "sample_image",
           "__version__"]


def sample_image() -> str:
    """Path of the sample photo shipped with MDFI (public domain; ``mdfi sample`` copies it)."""
    from importlib.resources import files
    return str(files("mdfi.data").joinpath("sample.jpg"))


def __getattr__(name: str):
    # ``load`` and ``Model`` import the engine (and its compiled extensions) on first use, so
    # ``python -m mdfi`` in an unbuilt source checkout can still report that in one line.
    if name in ("load", "Model"):
        from . import model
        return getattr(model, name)
    if name == "draw_detections":
        from .draw import draw_detections
        return draw_detections
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
