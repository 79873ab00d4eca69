# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrappers of csrc/mdfi_kernels.c.

Each wrapper checks dtypes, contiguity, shapes and parameter ranges, raising
mdfi.errors.ShapeError, before a pointer is handed to C; then calls C without the GIL.
No arithmetic happens here beyond computing the sizes to check.
"""

import numpy as np

from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t
from mdfi._ext.ckernels cimport *
from mdfi._ext import _conv
from mdfi.errors import ShapeError

MAX_THREADS = 256
# The convolution's thread pool (one pool per process: its workers also run these kernels).
cdef mdfi_pool_fn _pool = <mdfi_pool_fn>PyCapsule_GetPointer(_conv.pool_capsule(), b"mdfi_pool_fn")


# convolution paths of AVX-512 CPUs: the kernels may use their AVX-512 bodies (simd 2)
_AVX512_PATHS = ("avx512bw", "avx512vnni", "avx512vnni-ymm", "amx", "amx-sim")


cdef mdfi_kopts _opts(nthreads, simd) except *:
    """Options of a kernel call: nthreads (1..MAX_THREADS) on the shared pool; simd None =
    the convolution's current path (MDFI_SIMD / _conv.set_simd_path: portable C, AVX2, or AVX2
    and AVX-512 on an AVX-512 path), "avx512" (AVX2 and AVX-512 where the CPU has them), else
    a bool (AVX2 or portable C)."""
    cdef mdfi_kopts o
    if not isinstance(nthreads, (int, np.integer)) or not 1 <= nthreads <= MAX_THREADS:
        raise ShapeError(f"nthreads must be an integer in 1..{MAX_THREADS}, got {nthreads!r}")
    o.pool = _pool
    o.nthreads = nthreads
    if simd is None:
        path = _conv.simd_path()
        o.simd = 2 if path in _AVX512_PATHS else (0 if path == "scalar" else 1)
    else:
        o.simd = 2 if simd == "avx512" else (1 if simd else 0)
    return o

# dtype -> mdfi_type code (csrc/mdfi_kernels.h)
_TYPES = {np.dtype(np.uint8): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.int32): 3}
_WIDTH = {0: 8, 1: 8, 2: 16, 3: 32}


def _code(a, what, allowed=(0, 1, 2)):
    if not isinstance(a, np.ndarray):
        raise ShapeError(f"{what}: expected a NumPy array, got {type(a).__name__}")
    code = _TYPES.get(a.dtype)
    if code is None or code not in allowed:
        names = ", ".join(str(d) for d, c in _TYPES.items() if c in allowed)
        raise ShapeError(f"{what}: dtype {a.dtype} not supported (expected {names})")
    if not a.flags.c_contiguous:
        raise ShapeError(f"{what}: array must be C-contiguous")
    if a.size == 0:
        raise ShapeError(f"{what}: empty array")
    return code


def _out(a, what, allowed=(1, 2)):
    code = _code(a, what, allowed)
    if not a.flags.writeable:
        raise ShapeError(f"{what}: output array is read-only")
    return code


cdef const unsigned char* _ptr(a):
    cdef const unsigned char[::1] mv = a.reshape(-1).view(np.uint8)
    return &mv[0]


cdef unsigned char* _wptr(a):
    cdef unsigned char[::1] mv = a.reshape(-1).view(np.uint8)
    return &mv[0]


def _check_bits(bits, code, what):
    if not (2 <= bits <= 16) or bits > _WIDTH[code]:
        raise ShapeError(f"{what}: {bits} bits do not fit its {_WIDTH[code]}-bit elements (2..16)")


def _check_mode_act(mode, act):
    if mode not in (0, 1):
        raise ShapeError(f"rounding code {mode} (expected 0 half_up or 1 truncate)")
    if act not in (0, 1, 2):
        raise ShapeError(f"activation code {act} (expected 0 linear, 1 leaky, 2 relu)")


def _rc(int rc, name):
    if rc != 0:
        raise ShapeError(f"{name}: the C kernel rejected its arguments (code {rc})")


def have_avx2():
    """True when the AVX2 paths run on this CPU."""
    return bool(mdfi_kernels_have_avx2())


def requantize_array(acc, shift, int mode, int bits, int act, out, *, simd=True):
    """out[c, p] = mdfi_requantize(acc[c, p], shift[c]) (acc int64 (C,P), shift int32 (C,)).

    ``simd=True`` uses the AVX2 twin of the header where the CPU has AVX2; ``simd="i32"``
    its int32 lanes (the convolution epilogue's, for shifts 1..31; every acc must fit int32)."""
    if not (isinstance(acc, np.ndarray) and acc.dtype == np.int64 and acc.ndim == 2 and acc.flags.c_contiguous):
        raise ShapeError("requantize: acc must be a C-contiguous int64 (C, P) array")
    if acc.size and np.abs(acc).max() >= (1 << 47):
        raise ShapeError("requantize: |acc| must stay below 2**47 (the accumulator bound)")
    if not (isinstance(shift, np.ndarray) and shift.dtype == np.int32 and shift.shape == (acc.shape[0],)):
        raise ShapeError(f"requantize: shift must be int32 of shape ({acc.shape[0]},)")
    code = _out(out, "requantize output", (1, 2, 3))
    if out.shape != acc.shape:
        raise ShapeError(f"requantize: output shape {out.shape} != {acc.shape}")
    _check_bits(bits, code, "requantize output")
    _check_mode_act(mode, act)
    if shift.min() < MDFI_MIN_SHIFT or shift.max() > MDFI_MAX_SHIFT:
        raise ShapeError(f"requantize: shifts outside [{MDFI_MIN_SHIFT}, {MDFI_MAX_SHIFT}]")
    cdef const int64_t[:, ::1] a = acc
    cdef const int32_t[::1] s = shift
    cdef void *o = _wptr(out)
    cdef int64_t ch = acc.shape[0], pl = acc.shape[1]
    cdef int rc, oc = code, use_simd = 2 if simd == "i32" else (1 if simd else 0)
    if use_simd == 2 and acc.size and (acc.min() < -2**31 or acc.max() > 2**31 - 1):
        raise ShapeError("requantize: simd='i32' needs every acc inside int32")
    with nogil:
        rc = mdfi_requantize_array(&a[0, 0], &s[0], ch, pl, mode, bits, act, o, oc, use_simd)
    _rc(rc, "requantize")


def maxpool(inp, out, int size, int stride, int pad, *, nthreads=1, simd=None):
    """Darknet max pool of inp (C,H,W) into out (C,OH,OW) of the same dtype."""
    cdef mdfi_kopts o = _opts(nthreads, simd)
    code = _code(inp, "maxpool input")
    if _out(out, "maxpool output", (0, 1, 2)) != code:
        raise ShapeError("maxpool: output dtype must equal the input dtype")
    if inp.ndim != 3 or out.ndim != 3 or out.shape[0] != inp.shape[0]:
        raise ShapeError(f"maxpool: shapes {inp.shape} -> {out.shape} are not (C,H,W) -> (C,OH,OW)")
    c, h, w = inp.shape
    if size < 1 or stride < 1 or pad < 0:
        raise ShapeError("maxpool: size and stride must be >= 1, pad >= 0")
    if out.shape[1] != (h + pad - size) // stride + 1 or out.shape[2] != (w + pad - size) // stride + 1:
        raise ShapeError(f"maxpool: output {out.shape} does not match size={size} stride={stride} pad={pad}")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef int rc, tc = code
    cdef int ci = c, hi = h, wi = w, oh = out.shape[1], ow = out.shape[2]
    with nogil:
        rc = mdfi_maxpool_ex(ip, tc, ci, hi, wi, size, stride, pad, op, oh, ow, &o)
    _rc(rc, "maxpool")


def upsample(inp, out, int stride, *, nthreads=1, simd=None):
    cdef mdfi_kopts o = _opts(nthreads, simd)
    code = _code(inp, "upsample input")
    if _out(out, "upsample output", (0, 1, 2)) != code:
        raise ShapeError("upsample: output dtype must equal the input dtype")
    if stride < 1 or inp.ndim != 3 or out.shape != (inp.shape[0], inp.shape[1] * stride, inp.shape[2] * stride):
        raise ShapeError(f"upsample: {inp.shape} x{stride} cannot produce {out.shape}")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef int rc, tc = code
    cdef int c = inp.shape[0], h = inp.shape[1], w = inp.shape[2]
    with nogil:
        rc = mdfi_upsample_ex(ip, tc, c, h, w, stride, op, &o)
    _rc(rc, "upsample")


def align_copy(inp, out, int shift, int mode, int bits, *, nthreads=1, simd=None, zero_in=0, zero_out=0):
    """out = sat(R((inp - zero_in) / 2**shift) + zero_out) element-wise (route inputs; fixedpoint.align);
    same element count.  zero_in: the input's zero point (-32768..65535); zero_out: the output's
    (inside the ``bits`` range)."""
    cdef mdfi_kopts o = _opts(nthreads, simd)
    ic = _code(inp, "route input")
    oc = _out(out, "route output")
    if inp.size != out.size:
        raise ShapeError(f"route: {inp.size} input elements for {out.size} output elements")
    _check_bits(bits, oc, "route output")
    _check_mode_act(mode, 0)
    if not 0 <= shift <= MDFI_MAX_SHIFT:
        raise ShapeError(f"route: alignment shift {shift} outside [0, {MDFI_MAX_SHIFT}]")
    if isinstance(zero_in, (bool, np.bool_)) or not isinstance(zero_in, (int, np.integer)):
        raise ShapeError(f"route: zero_in must be an integer, got {zero_in!r}")
    if isinstance(zero_out, (bool, np.bool_)) or not isinstance(zero_out, (int, np.integer)):
        raise ShapeError(f"route: zero_out must be an integer, got {zero_out!r}")
    if not -32768 <= zero_in <= 65535:
        raise ShapeError(f"route: zero_in {zero_in} outside [-32768, 65535]")
    if not -(1 << (bits - 1)) <= zero_out <= (1 << (bits - 1)) - 1:
        raise ShapeError(f"route: zero_out {zero_out} outside the {bits}-bit range")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef int64_t n = inp.size
    cdef int rc, ict = ic, oct = oc
    cdef int32_t izi = zero_in, izo = zero_out
    with nogil:
        rc = mdfi_align_copy_zp(ip, ict, n, shift, mode, bits, op, oct, izi, izo, &o)
    _rc(rc, "route")


def shortcut(a, int fa, b, int fb, out, int out_frac, int mode, int bits, int act, *, za=0, zb=0, zo=0,
             nthreads=1, simd=None, b_type=None):
    """out = sat(R(act((a - za) * 2**(fm - fa) + (b - zb) * 2**(fm - fb)) / 2**(fm - out_frac)) + zo)
    element-wise (QShortcut.forward_ref; docs/fixed-point.md section 6).  ``b`` None: its real
    value is 0 everywhere (the term ``b - zb`` is 0); ``b_type`` then names its dtype (default
    int8, only validated).  za, zb: the inputs' zero points (-32768..65535); zo: the output's
    (inside the ``bits`` range)."""
    cdef mdfi_kopts o = _opts(nthreads, simd)
    ac = _code(a, "shortcut input a")
    if b is None:
        bc = _code(np.zeros(1, np.int8 if b_type is None else b_type), "shortcut input b")
    else:
        bc = _code(b, "shortcut input b")
    oc = _out(out, "shortcut output")
    if (b is not None and a.shape != b.shape) or a.shape != out.shape:
        raise ShapeError(f"shortcut: shapes {a.shape}, {None if b is None else b.shape} -> {out.shape} differ")
    _check_bits(bits, oc, "shortcut output")
    _check_mode_act(mode, act)
    fm = max(fa, fb)
    if fm - min(fa, fb) > 16 or not MDFI_MIN_SHIFT <= fm - out_frac <= MDFI_MAX_SHIFT:
        raise ShapeError(f"shortcut: formats {fa}, {fb} -> {out_frac} out of range")
    for name, z in (("za", za), ("zb", zb), ("zo", zo)):
        if isinstance(z, (bool, np.bool_)) or not isinstance(z, (int, np.integer)):
            raise ShapeError(f"shortcut: {name} must be an integer, got {z!r}")
    if not -32768 <= za <= 65535 or not -32768 <= zb <= 65535:
        raise ShapeError(f"shortcut: input zero points {za}, {zb} outside [-32768, 65535]")
    if not -(1 << (bits - 1)) <= zo <= (1 << (bits - 1)) - 1:
        raise ShapeError(f"shortcut: zo {zo} outside the {bits}-bit range")
    cdef const void *ap = _ptr(a)
    cdef const void *bp = NULL
    if b is not None:
        bp = _ptr(b)
    cdef void *op = _wptr(out)
    cdef int64_t n = a.size
    cdef int rc, act_t = ac, bct = bc, oct = oc
    cdef int32_t iza = za, izb = zb, izo = zo
    with nogil:
        rc = mdfi_shortcut_zp(ap, act_t, fa, bp, bct, fb, n, out_frac, mode, bits, act, op, oct, iza, izb, izo, &o)
    _rc(rc, "shortcut")


def reorg(inp, out, int stride):
    code = _code(inp, "reorg input")
    if _out(out, "reorg output", (0, 1, 2)) != code:
        raise ShapeError("reorg: output dtype must equal the input dtype")
    if inp.ndim != 3 or stride < 1:
        raise ShapeError("reorg: input must be (C,H,W), stride >= 1")
    c, h, w = inp.shape
    if c % (stride * stride) or h % stride or w % stride or \
            out.shape != (c * stride * stride, h // stride, w // stride):
        raise ShapeError(f"reorg: {inp.shape} /{stride} cannot produce {out.shape}")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef int rc, tc = code
    cdef int ci = c, hi = h, wi = w
    with nogil:
        rc = mdfi_reorg(ip, tc, ci, hi, wi, stride, op)
    _rc(rc, "reorg")


def avgpool(inp, int zi, int d, int mode, int bits, int zo, out):
    """QAvgpool.forward_ref (csrc/mdfi_kernels_scale.c): inp (C,H,W) U8/S8/S16, out (C,1,1) S8/S16."""
    code = _code(inp, "avgpool input")
    oc = _out(out, "avgpool output")
    if inp.ndim != 3 or out.shape != (inp.shape[0], 1, 1):
        raise ShapeError(f"avgpool: input {inp.shape} cannot produce {out.shape}")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef int rc, tc = code, toc = oc
    cdef int32_t c = inp.shape[0]
    cdef int64_t plane = inp.shape[1] * inp.shape[2]
    with nogil:
        rc = mdfi_avgpool(ip, tc, zi, c, plane, d, mode, bits, zo, op, toc)
    _rc(rc, "avgpool")


_SCALE_MODES = {"channels": 0, "spatial": 1, "elementwise": 2}


def scale_channels(a, int za, b, int zb, str scale_mode, int shift, int mode, int bits, int act, int zo, out):
    """QScaleChannels.forward_ref (csrc/mdfi_kernels_scale.c): b and out (C,H,W); a (C,1,1)
    (scale_mode 'channels'), (1,H,W) ('spatial') or (C,H,W) ('elementwise')."""
    ac = _code(a, "scale_channels scale")
    bc = _code(b, "scale_channels input")
    oc = _out(out, "scale_channels output")
    if scale_mode not in _SCALE_MODES or b.ndim != 3 or out.shape != b.shape:
        raise ShapeError(f"scale_channels: mode {scale_mode!r}, input {b.shape}, output {out.shape}")
    c, h, w = b.shape
    want = {"channels": (c, 1, 1), "spatial": (1, h, w), "elementwise": (c, h, w)}[scale_mode]
    if a.shape != want:
        raise ShapeError(f"scale_channels: scale {a.shape}, expected {want} for mode {scale_mode}")
    cdef int64_t plane = h * w
    cdef int64_t cs = {"channels": 1, "spatial": 0, "elementwise": plane}[scale_mode]
    cdef int64_t ps = {"channels": 0, "spatial": 1, "elementwise": 1}[scale_mode]
    cdef const void *ap = _ptr(a)
    cdef const void *bp = _ptr(b)
    cdef void *op = _wptr(out)
    cdef int rc, tac = ac, tbc = bc, toc = oc
    cdef int32_t ci = c
    with nogil:
        rc = mdfi_scale_channels(ap, tac, za, cs, ps, bp, tbc, zb, ci, plane, shift, mode, bits, act, zo, op, toc)
    _rc(rc, "scale_channels")


def head_lookup(inp, int qmin, logistic, exp_tab, table_sel, out, *, nthreads=1, simd=None):
    """Detection-head tables: out[c] = logistic[inp[c]-qmin] or exp[...] by table_sel[c]."""
    cdef mdfi_kopts o = _opts(nthreads, simd)
    ic = _code(inp, "head input")
    if _out(out, "head output", (3,)) != 3 or out.shape != inp.shape or inp.ndim != 2:
        raise ShapeError(f"head: input {inp.shape} and int32 output {out.shape} must be equal (C, P)")
    n = 1 << (_WIDTH[ic] if ic != 0 else 8)
    if not (isinstance(logistic, np.ndarray) and logistic.dtype == np.uint16 and logistic.ndim == 1
            and isinstance(exp_tab, np.ndarray) and exp_tab.dtype == np.int32 and exp_tab.shape == logistic.shape
            and 1 <= logistic.size <= 65536):
        raise ShapeError("head: tables must be uint16 / int32 of equal length 1..65536")
    if not (isinstance(table_sel, np.ndarray) and table_sel.dtype == np.uint8 and table_sel.shape == (inp.shape[0],)
            and table_sel.max() <= 2):
        raise ShapeError(f"head: table_sel must be uint8 values 0..2 of shape ({inp.shape[0]},)")
    logistic = np.ascontiguousarray(logistic); exp_tab = np.ascontiguousarray(exp_tab)
    table_sel = np.ascontiguousarray(table_sel)
    cdef const void *ip = _ptr(inp)
    cdef const uint16_t[::1] lg = logistic
    cdef const int32_t[::1] ex = exp_tab
    cdef const uint8_t[::1] sel = table_sel
    cdef int32_t[:, ::1] ov = out
    cdef int c = inp.shape[0], tl = logistic.size
    cdef int64_t plane = inp.shape[1]
    cdef int rc, ict = ic
    with nogil:
        rc = mdfi_head_lookup_ex(ip, ict, c, plane, qmin, &lg[0], &ex[0], tl, &sel[0], &ov[0, 0], &o)
    _rc(rc, "head")


def softmax_int(inp, int n, int stride_anchor, int first, int classes, expneg, out):
    ic = _code(inp, "softmax input")
    if _out(out, "softmax output", (3,)) != 3 or out.shape != inp.shape or inp.ndim != 2:
        raise ShapeError("softmax: input and int32 output must both be (C, P)")
    if n < 0 or classes < 1 or first < 0 or first + classes > stride_anchor or n * stride_anchor > inp.shape[0]:
        raise ShapeError(f"softmax: {n} anchors x {stride_anchor} channels do not fit {inp.shape[0]} channels")
    if not (isinstance(expneg, np.ndarray) and expneg.dtype == np.int32 and expneg.ndim == 1
            and 1 <= expneg.size <= 65536 and expneg.flags.c_contiguous):
        raise ShapeError("softmax: expneg must be a contiguous int32 table of 1..65536 entries")
    cdef const void *ip = _ptr(inp)
    cdef const int32_t[::1] e = expneg
    cdef int32_t[:, ::1] o = out
    cdef int64_t plane = inp.shape[1]
    cdef int tl = expneg.size
    cdef int rc, ict = ic
    with nogil:
        rc = mdfi_softmax_int(ip, ict, n, stride_anchor, first, classes, plane, &e[0], tl, &o[0, 0])
    _rc(rc, "softmax")


def conv_grouped(inp, weights, bias, shift, out, int groups, int k, int stride, int pad, int pad_value,
                 int rounding, int bits, int act, int zero_out, int acc32, *, nthreads=1):
    """A grouped convolution computed directly (csrc/mdfi_kernels_grouped.c): inp (C,H,W)
    uint8/int8/int16, weights (M, C/groups, k, k) int16, bias (M,) int64, shift (M,) int32,
    out (M, OH, OW) int8/int16; acc32: every sum fits int32 (the layer's accumulator bound,
    docs/fixed-point.md 3.2), else int64."""
    cdef mdfi_kopts o = _opts(nthreads, None)
    ic = _code(inp, "grouped convolution input")
    oc = _out(out, "grouped convolution output")
    if inp.ndim != 3 or out.ndim != 3:
        raise ShapeError("grouped convolution: input and output must be (C, H, W)")
    c, h, w = inp.shape
    m, oh, ow = out.shape
    if not (isinstance(weights, np.ndarray) and weights.dtype == np.int16 and weights.flags.c_contiguous
            and groups >= 1 and weights.shape == (m, c // groups, k, k)):
        raise ShapeError(f"grouped convolution: weights must be contiguous int16 of shape "
                         f"({m}, {c // max(groups, 1)}, {k}, {k})")
    _check_bits(bits, oc, "grouped convolution output")
    _check_mode_act(rounding, act)
    for a, dt, what in ((bias, np.int64, "bias"), (shift, np.int32, "shift")):
        if not (isinstance(a, np.ndarray) and a.dtype == dt and a.shape == (m,) and a.flags.c_contiguous):
            raise ShapeError(f"grouped convolution: {what} must be contiguous {np.dtype(dt)} of {m} entries")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef const int16_t[:, :, :, ::1] wv = weights
    cdef const int64_t[::1] bv = bias
    cdef const int32_t[::1] sv = shift
    cdef int rc, ict = ic, oct = oc, ci = c, hi = h, wi = w, mi = m, ohi = oh, owi = ow
    with nogil:
        rc = mdfi_conv_grouped_ex(ip, ict, ci, hi, wi, &wv[0, 0, 0, 0], &bv[0], &sv[0], mi, groups, k, stride, pad,
                                  pad_value, rounding, bits, act, zero_out, acc32, op, oct, ohi, owi, &o)
    _rc(rc, "grouped convolution")


def _set_grouped_vnni(allowed):
    """Testing only: False keeps conv_grouped's AVX-512 body off VNNI on a VNNI CPU (the
    AVX-512 BW body), True (default) lets it use VNNI."""
    mdfi_grouped_set_vnni(1 if allowed else 0)


def lut(inp, int qmin, table, out, *, nthreads=1, simd=None):
    """out.flat[i] = table[inp.flat[i] - qmin] (clamped index); table int32; out int8/int16/int32
    with the same number of elements (table activations and single head tables)."""
    cdef mdfi_kopts o = _opts(nthreads, simd)
    ic = _code(inp, "table input")
    oc = _out(out, "table output", (1, 2, 3))
    if inp.size != out.size:
        raise ShapeError(f"table lookup: {inp.size} input elements for {out.size} output elements")
    if not (isinstance(table, np.ndarray) and table.dtype == np.int32 and table.ndim == 1
            and 1 <= table.size <= 65536 and table.flags.c_contiguous):
        raise ShapeError("table lookup: the table must be a contiguous int32 array of 1..65536 entries")
    lim = {1: (-128, 127), 2: (-32768, 32767), 3: (-2**31, 2**31 - 1)}[oc]
    if table.min() < lim[0] or table.max() > lim[1]:
        raise ShapeError(f"table lookup: table values do not fit the {out.dtype} output")
    cdef const void *ip = _ptr(inp)
    cdef void *op = _wptr(out)
    cdef const int32_t[::1] t = table
    cdef int64_t n = inp.size
    cdef int rc, ict = ic, oct = oc, tl = table.size
    with nogil:
        rc = mdfi_lut_ex(ip, ict, n, qmin, &t[0], tl, op, oct, &o)
    _rc(rc, "table lookup")
