"""Safety limits checked *before* anything is allocated.

A cfg or model file from the internet can ask for anything; MDFI refuses absurd requests
with a :class:`~mdfi.errors.LimitError` that states the limit and the environment variable
that raises it.  Defaults are far above every classic Darknet detector (YOLOv3-SPP at
608x608 needs ~0.5 GB of float activations).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from .errors import LimitError


@dataclass(frozen=True)
class Limit:
    name: str        # what is limited, for messages
    env: str         # environment variable that overrides the default
    default: int
    unit: str = ""

    @property
    def value(self) -> int:
        raw = os.environ.get(self.env)
        if raw is None or raw.strip() == "":
            return self.default
        try:
            v = int(raw)
        except ValueError:
            raise LimitError(f"{self.env}={raw!r}: expected an integer") from None
        if v < 1:
            raise LimitError(f"{self.env}={raw!r}: must be >= 1")
        return v

    def check(self, requested: int, what: str) -> None:
        """Raise LimitError if ``requested`` exceeds the limit."""
        limit = self.value
        if requested > limit:
            unit = f" {self.unit}" if self.unit else ""
            raise LimitError(
                f"{what}: {requested:,}{unit} exceeds the {self.name} limit of {limit:,}{unit} "
                f"(set {self.env} to raise it)")


#: Width, height or channels of any tensor.
MAX_DIM = Limit("tensor dimension", "MDFI_MAX_DIM", 1 << 15)
#: Number of layers in a cfg.
MAX_LAYERS = Limit("layer count", "MDFI_MAX_LAYERS", 4096)
#: Kernel size of a convolution or pool window (also bounds strides and convolution padding).
MAX_KERNEL = Limit("kernel size", "MDFI_MAX_KERNEL", 63)
#: Float32 parameters of a network (YOLOv3-SPP has 63 M).
MAX_PARAMS = Limit("parameter count", "MDFI_MAX_PARAMS", 1 << 30)
#: Bytes of all layer outputs of one forward pass, in float32.
MAX_ACTIVATION_BYTES = Limit("activation memory", "MDFI_MAX_ACTIVATION_MB", 8192, "MB")


def require_regular_file(path, error: type) -> None:
    """Refuse a FIFO, device or socket before anything opens it: reading one could block
    forever (a FIFO) or never end (``/dev/zero``).  Missing files and folders are left to
    the caller, which reports them in its own words."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        raise error(f"{p}: not a regular file (a device, FIFO or socket); MDFI reads regular files only")
