"""The convolution's array arithmetic, shared by the float path and the integer reference:
Darknet's im2col, the exact integer GEMM and ``conv2d_int_ref`` (the executable
specification of the C kernel, docs/fixed-point.md sections 3-4), and the cache-sized
blocks of a convolution's element-wise tail.  The layer classes are in convolutional.py.
"""

from __future__ import annotations

import numpy as np

from .. import fixedpoint as fp


def conv_out_size(n: int, size: int, stride: int, padding: int) -> int:
    """convolutional_out_width/height."""
    return (n + 2 * padding - size) // stride + 1


def im2col(x: np.ndarray, size: int, stride: int, padding: int, *, stride_y: "int | None" = None,
           dilation: int = 1, pad_value: int = 0) -> np.ndarray:
    """Darknet's im2col_cpu / AlexeyAB's im2col_cpu_ext: (C,H,W) -> (C*size*size, OH*OW),
    zero padding (``pad_value``: the input's zero point in the fixed-point reference, the
    code of the real value 0, docs/fixed-point.md section 1.1).

    Row index is ``(c*size + ky)*size + kx``, the order of Darknet's weights.  ``stride`` is
    the horizontal stride (``stride_y`` defaults to it); with ``dilation`` the taps are
    ``dilation`` apart and the padding is ``padding*dilation`` (AlexeyAB passes
    ``l.pad * l.dilation``).  Works for any dtype (float32 here, integers in the
    fixed-point reference).
    """
    c, h, w = x.shape
    sy = stride if stride_y is None else stride_y
    sx = stride
    d = dilation
    pad = padding * d
    ext = d * (size - 1) + 1
    oh = (h + 2 * pad - ext) // sy + 1
    ow = (w + 2 * pad - ext) // sx + 1
    if size == 1 and sx == 1 and sy == 1 and padding == 0:
        return x.reshape(c, h * w)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), constant_values=pad_value) if pad else x
    s0, s1, s2 = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, shape=(c, size, size, oh, ow), strides=(s0, s1 * d, s2 * d, s1 * sy, s2 * sx),
        writeable=False)
    return view.reshape(c * size * size, oh * ow)


#: Elements per block of a convolution's element-wise tail (float: batch norm, bias,
#: activation; integer reference: requantize): temporaries that stay in cache.  On whole maps
#: NumPy's temporaries of tens of MB (float64 for the batch norm and the leaky slope) cost more
#: than the arithmetic: yolov3-tiny layer 0 (16 x 173,056) 82 -> 23 ms on the AVX2-only AMD
#: EPYC of stop 36.
TAIL_BLOCK = 65536


def by_blocks(out: np.ndarray, post, dtype=np.float32) -> np.ndarray:
    """``post(block, r0, r1)`` (element-wise, with per-row constants of rows r0..r1) over
    (rows, columns) blocks of the (N, P) ``out`` of a GEMM, in a new ``dtype`` array: the same
    values as ``post(out, 0, N)`` (every step is element-wise)."""
    n, p = out.shape
    if out.size <= 4 * TAIL_BLOCK:
        return np.asarray(post(out, 0, n), dtype=dtype)
    res = np.empty((n, p), dtype=dtype)
    rows = max(1, TAIL_BLOCK // p)
    cols = min(p, TAIL_BLOCK)
    for r0 in range(0, n, rows):
        r1 = min(n, r0 + rows)
        for c0 in range(0, p, cols):
            c1 = min(p, c0 + cols)
            res[r0:r1, c0:c1] = post(out[r0:r1, c0:c1], r0, r1)
    return res


# -- integer reference (the executable specification of the C kernel) -----------------------------
def int_matmul(w: np.ndarray, cols: np.ndarray, *, exact_int64: bool = False) -> np.ndarray:
    """Exact integer ``w @ cols`` as int64.

    By default the product is computed with float64 BLAS, which is *exact* here: every
    product and every partial sum of a convolution is an integer of magnitude below
    ``2**47`` (accumulator bound, docs/fixed-point.md section 3.2), and float64 represents
    every integer below ``2**53`` exactly, so no rounding can occur in any summation order.
    ``exact_int64=True`` uses NumPy's int64 matmul instead (slow; tests cross-check both).
    """
    if exact_int64:
        return np.asarray(w, dtype=np.int64) @ np.asarray(cols, dtype=np.int64)
    return (np.asarray(w, dtype=np.float64) @ np.asarray(cols, dtype=np.float64)).astype(np.int64)


def group_matmul(w: np.ndarray, cols: np.ndarray, groups: int, matmul=np.matmul) -> np.ndarray:
    """``w @ cols`` of a grouped convolution: ``w`` (M, K/groups), ``cols`` (K, P) the
    im2col of all C input channels (K = C*size*size, rows of one channel together, so
    group j's rows are the j-th K/groups block); filters [j*M/g, (j+1)*M/g) multiply group
    j's rows (Darknet's forward_convolutional_layer loops over the groups the same way).
    ``matmul`` is any (batched) product, e.g. :func:`int_matmul`."""
    if groups == 1:
        return matmul(w, cols)
    m, kg = w.shape
    out = matmul(w.reshape(groups, m // groups, kg), cols.reshape(groups, kg, cols.shape[-1]))
    return out.reshape(m, cols.shape[-1])


def conv2d_int_ref(x: np.ndarray, w: np.ndarray, bias: np.ndarray, shift: np.ndarray, *,
                   size: int, stride: int, padding: int, rounding: str, bits: int,
                   activation: str, exact_int64: bool = False, stats=None, pad_value: int = 0,
                   zero_out: int = 0, groups: int = 1) -> np.ndarray:
    """Integer convolution + bias + requantize/activation/saturate (docs sections 3-4).

    ``x``: (C,H,W) integers; ``w``: (M, C/groups, k, k) integers; ``bias``: (M,) integers at
    the accumulator scale; ``shift``: (M,) requantizing shifts.  The padding holds
    ``pad_value`` (the input's zero point; 0 without one).  Returns (M,OH,OW) int32 with
    ``out[m] = requantize(sum_k w[m,k]*col[k] + bias[m], shift[m], zero=zero_out)``, the
    sum over the input channels of filter m's group (section 3.6).
    """
    m = w.shape[0]
    _, h, wd = x.shape
    oh, ow = conv_out_size(h, size, stride, padding), conv_out_size(wd, size, stride, padding)
    cols = im2col(np.asarray(x), size, stride, padding, pad_value=pad_value)
    acc = group_matmul(w.reshape(m, -1), cols, groups,
                       lambda a, b: int_matmul(a, b, exact_int64=exact_int64))
    bias64, shift64 = np.asarray(bias, np.int64), np.asarray(shift, np.int64)

    def post(blk, r0, r1):       # element-wise: in cache-sized blocks (TAIL_BLOCK): the same integers
        return fp.requantize(blk + bias64[r0:r1, None], shift64[r0:r1, None], rounding, bits, activation,
                             stats=stats, zero=zero_out)
    return by_blocks(acc, post, np.int32).reshape(m, oh, ow)
