"""Float activations, exactly as Darknet's activations.h (pjreddie/darknet).

Only the activations the classic detectors use are supported; a cfg naming another
Darknet activation gets a clear error (Darknet itself silently falls back to ReLU for an
unknown name, which MDFI refuses to imitate).
"""

from __future__ import annotations

import numpy as np

#: Every activation name Darknet's get_activation() knows (src/activations.c).
DARKNET_ACTIVATIONS = frozenset(
    "logistic loggy relu elu selu relie plse hardtan lhtan linear ramp leaky tanh stair".split())

#: The ones MDFI implements (float and fixed point).
SUPPORTED = ("linear", "leaky", "relu", "logistic")

LEAKY_SLOPE = np.float32(0.1)  # leaky_activate(x) = (x>0) ? x : .1f*x


def apply_float(name: str, x: np.ndarray) -> np.ndarray:
    """Apply activation ``name`` to float32 ``x`` (a new array)."""
    if name == "linear":
        return x
    if name == "leaky":
        return np.where(x > 0, x, LEAKY_SLOPE * x).astype(np.float32, copy=False)
    if name == "relu":
        return (x * (x > 0)).astype(np.float32, copy=False)
    if name == "logistic":
        return logistic(x)
    raise ValueError(f"unsupported activation {name!r}")


def logistic(x: np.ndarray) -> np.ndarray:
    """Darknet's logistic_activate: 1.f/(1.f + expf(-x)), in float32."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))).astype(np.float32, copy=False)
