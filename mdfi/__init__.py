"""MDFI: Micro Darknet For Inference.

A forward-only, fixed-point inference engine for Darknet detectors (YOLOv3, YOLOv3-tiny,
YOLOv2-tiny ...) and a bit-exact golden model for hardware verification.

Python API::

    import mdfi
    model = mdfi.load("yolov3-tiny")        # weights fetched and cached on first use
    detections = model.detect("image.jpg")  # path, PIL image or HxWx3 uint8 array (or a list)
    detections.plot().save("annotated.jpg") # draw them (mdfi.draw_detections)
"""

__version__ = "0.1.0"


def _use_built_copy():
    """Python started in an unbuilt source checkout finds this ``mdfi/`` first (the current
    folder leads ``sys.path``) although ``pip install .`` put a built copy in site-packages.
    Then that copy -- code and compiled extensions from one build -- is imported instead,
    so the README's Python snippet and ``python -m mdfi`` work where its commands are run.
    Returns the built module, or None (this copy is built, or no built copy exists: the
    one-line "not built" error of mdfi/_ext then says what to do)."""
    import importlib.util
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))

    def built(folder: str) -> bool:
        try:
            names = os.listdir(os.path.join(folder, "_ext"))
        except OSError:
            return False
        return all(any(n.startswith(ext + ".") and n.endswith((".so", ".pyd")) for n in names)
                   for ext in ("_conv", "_image", "_kernels"))

    if built(here) or os.environ.get("MDFI_NO_REDIRECT"):
        return None
    for entry in sys.path:
        folder = os.path.join(os.path.abspath(entry or os.getcwd()), "mdfi")
        if os.path.normcase(folder) == os.path.normcase(here) or not built(folder):
            continue
        init = os.path.join(folder, "__init__.py")
        spec = importlib.util.spec_from_file_location(__name__, init, submodule_search_locations=[folder])
        if spec is None or spec.loader is None or not os.path.isfile(init):
            continue
        me = sys.modules.get(__name__)
        module = importlib.util.module_from_spec(spec)
        sys.modules[__name__] = module          # the import system returns what sys.modules holds
        try:
            spec.loader.exec_module(module)
        except Exception:                       # a broken copy: stay with this one
            if me is not None:
                sys.modules[__name__] = me
            for name in [n for n in sys.modules if n.startswith(__name__ + ".")]:
                del sys.modules[name]
            return None
        return module
    return None


# If a built copy replaced this module in sys.modules, the definitions below still run here
# (harmlessly: relative imports resolve through sys.modules to the built copy) and are unused.
_use_built_copy()

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
