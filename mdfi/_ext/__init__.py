"""MDFI's compiled extensions: thin Cython wrappers (``*.pyx``) over the C kernels in ``csrc/``.

They are built by ``pip install .`` (or ``python setup.py build_ext --inplace`` in a
checkout).  A source checkout without that build has only the ``.pyx`` files: importing a
wrapper from it then fails with a message that says so (module ``__getattr__``, PEP 562,
is what ``from mdfi._ext import _conv`` consults first).
"""

from importlib.machinery import PathFinder
from pathlib import Path

_WRAPPERS = ("_conv", "_image", "_kernels")


def __getattr__(name: str):
    # ``from mdfi._ext import _conv`` asks this first (hasattr), before importing the
    # submodule: AttributeError lets a built module load; only a missing one is an error.
    if name in _WRAPPERS and PathFinder.find_spec(f"{__name__}.{name}", __path__) is None:
        raise ImportError(
            f"MDFI's compiled extension {name} is not built in {Path(__file__).parent}: this is a "
            "source checkout without a build, and no built copy is installed.  Install with "
            "`pip install .` (Python started in the checkout then uses the installed copy), or build "
            "in place with `python setup.py build_ext --inplace`.",
            name=f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
