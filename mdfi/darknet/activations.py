"""Float activations, exactly as each Darknet lineage computes them.

pjreddie (src/activations.h at f6afaabc) and AlexeyAB (src/activations.h, src/activations.c,
src/gemm.c at 59596d78) differ in precision and in the activations they know:

==========  =====================================================  =====================================
activation  pjreddie                                               AlexeyAB
==========  =====================================================  =====================================
linear      x                                                      x
leaky       ``(x>0) ? x : .1*x``, double .1 (activations.h:39)     convolutions and shortcuts go through
                                                                   ``activate_array_cpu_custom``: ``.1*x``
                                                                   with a double .1 (gemm.c:2341)
relu        ``x*(x>0)`` (activations.h:34)                         the same (activations.h:63)
logistic    ``1./(1.+exp(-x))`` in double (activations.h:32)       ``1.f/(1.f+expf(-x))`` in float (:61)
mish        -- (get_activation falls back to relu)                 ``x*tanh_activate(softplus(x, 20))``
                                                                   (activations.c:151-161), softplus
                                                                   activations.h:73-77, tanh_activate
                                                                   ``2/(1+expf(-2x)) - 1`` (:71)
swish       --                                                     ``x*logistic_activate(x)`` (:138-148)
hard_mish   --                                                     x>0: x; x>-2: x*x/2+x; else 0 (:163-170)
relu6       --                                                     ``min(max(x,0),6)`` (activations.h:64)
==========  =====================================================  =====================================

``relu6`` caveat: AlexeyAB's CPU ``activate()`` (activations.c:86-117) has no ``RELU6``
case and returns 0, so its CPU build outputs zeros; its GPU build (activation_kernels.cu:32),
on which such models are trained, computes ``min(max(x,0),6)``.  MDFI computes the latter
and says so in docs/darknet.md.  The same ``activate()`` makes ``[shortcut]
activation=hard_mish/relu6`` zero on the CPU (shortcut_layer.c:171-173); MDFI refuses those.

Darknet silently falls back to ReLU for an unknown name; MDFI refuses it instead.
"""

from __future__ import annotations

import numpy as np

#: Every activation name pjreddie's get_activation() knows (src/activations.c:45-61).
PJREDDIE_ACTIVATIONS = frozenset(
    "logistic loggy relu elu selu relie plse hardtan lhtan linear ramp leaky tanh stair".split())
#: ... and AlexeyAB's (src/activations.c:50-76).
ALEXEYAB_ACTIVATIONS = PJREDDIE_ACTIVATIONS | frozenset(
    "swish mish hard_mish relu6 gelu revleaky normalize_channels normalize_channels_softmax "
    "normalize_channels_softmax_maxval".split())
DARKNET_ACTIVATIONS = ALEXEYAB_ACTIVATIONS

#: What MDFI implements, per lineage (float and fixed point).
SUPPORTED = {
    "pjreddie": ("linear", "leaky", "relu", "logistic"),
    "alexeyab": ("linear", "leaky", "relu", "logistic", "mish", "swish", "hard_mish", "relu6"),
}

#: Kept for code that needs the constant (the batch-norm estimate).
LEAKY_SLOPE = np.float32(0.1)
MISH_THRESHOLD = np.float32(20.0)   # AB activations.c:153


def apply_float(name: str, x: np.ndarray, darknet: str = "pjreddie") -> np.ndarray:
    """Apply activation ``name`` to float32 ``x`` as Darknet ``darknet`` computes it."""
    x = np.asarray(x, dtype=np.float32)
    if name == "linear":
        return x
    if name == "leaky":
        # .1*x with a double .1, stored as float (both lineages' convolution path)
        return np.where(x > 0, x, (0.1 * x.astype(np.float64)).astype(np.float32)).astype(np.float32, copy=False)
    if name == "relu":
        return (x * (x > 0)).astype(np.float32, copy=False)
    if name == "logistic":
        return logistic(x, darknet)
    if name == "mish":
        return mish(x)
    if name == "swish":
        return x * logistic(x, "alexeyab")
    if name == "hard_mish":
        with np.errstate(over="ignore"):
            quad = x * x / np.float32(2) + x
        return np.where(x > 0, x, np.where(x > -2, quad, np.float32(0))).astype(np.float32, copy=False)
    if name == "relu6":
        return np.minimum(np.maximum(x, np.float32(0)), np.float32(6)).astype(np.float32, copy=False)
    raise ValueError(f"unsupported activation {name!r}")


def logistic(x: np.ndarray, darknet: str = "alexeyab") -> np.ndarray:
    """Darknet's logistic_activate: AlexeyAB ``1.f/(1.f + expf(-x))`` in float32; pjreddie
    ``1./(1. + exp(-x))`` in double, stored as float."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        if darknet == "pjreddie":
            return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))).astype(np.float32, copy=False)


def softplus(x: np.ndarray, threshold=MISH_THRESHOLD) -> np.ndarray:
    """AlexeyAB softplus_activate (activations.h:73-77): x above the threshold, expf(x) below
    -threshold, else logf(expf(x) + 1), in float32."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        mid = np.log(np.exp(x) + np.float32(1))
        return np.where(x > threshold, x, np.where(x < -threshold, np.exp(x), mid)).astype(np.float32)


def tanh_activate(x: np.ndarray) -> np.ndarray:
    """AlexeyAB tanh_activate (activations.h:71): ``2/(1 + expf(-2x)) - 1`` in float32."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return (np.float32(2) / (np.float32(1) + np.exp(np.float32(-2) * x)) - np.float32(1)).astype(np.float32)


def mish(x: np.ndarray) -> np.ndarray:
    """AlexeyAB activate_array_mish (activations.c:151-161)."""
    x = np.asarray(x, dtype=np.float32)
    return (x * tanh_activate(softplus(x, MISH_THRESHOLD))).astype(np.float32)


def reference_float64(name: str, x: np.ndarray) -> np.ndarray:
    """The mathematical functions in float64 (for the fixed-point tables and their error
    bounds: docs/fixed-point.md section 4.1)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        if name == "linear":
            return x
        if name == "leaky":
            return np.where(x > 0, x, 0.1 * x)
        if name == "relu":
            return np.maximum(x, 0.0)
        if name == "logistic":
            return 1.0 / (1.0 + np.exp(-x))
        if name == "swish":
            return x / (1.0 + np.exp(-x))
        if name == "mish":
            sp = np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))
            return x * np.tanh(sp)
        if name == "hard_mish":
            return np.where(x > 0, x, np.where(x > -2, x * x / 2 + x, 0.0))
        if name == "relu6":
            return np.clip(x, 0.0, 6.0)
    raise ValueError(f"unsupported activation {name!r}")
