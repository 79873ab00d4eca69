# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrapper of csrc/mdfi_conv.c, the integer convolution kernel.

Every shape, dtype, size and code is checked here (raising :class:`mdfi.errors.ShapeError`)
before a pointer reaches C; the C code re-checks what it can and never touches memory
outside the buffers described by the sizes it is given.  All arithmetic is in C.

Typical use (model load, then every inference)::

    packed = pack_weights(w)                        # w: (M, C, k, k) int8 / int16
    scratch = np.empty(scratch_bytes(C, H, W, M, k, stride, pad, nthreads), np.uint8)
    conv2d(x, packed, bias, shift, out, ksize=k, stride=s, pad=p, rounding=0,
           out_bits=8, act=1, acc64=0, nthreads=2, scratch=scratch)
"""

import numpy as np

from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, uint8_t
from mdfi._ext.cconv cimport *
from mdfi.errors import ShapeError

MIN_BITS, MAX_BITS = 2, 16
MAX_THREADS = 256
MIN_SHIFT, MAX_SHIFT = MDFI_MIN_SHIFT, MDFI_MAX_SHIFT
BIAS_LIMIT = 1 << 47
MR, NR = MDFI_CONV_MR, MDFI_CONV_NR

#: every code path of the C kernel, by name (see csrc/mdfi_conv.h)
PATHS = tuple(mdfi_conv_path_name(p).decode("ascii") for p in range(MDFI_CONV_NPATHS))
# MDFI_SIMD is read once, here.
cdef int32_t _path = mdfi_conv_env_path()


from cpython.pycapsule cimport PyCapsule_New


def pool_capsule():
    """The convolution's thread pool (mdfi_conv_pool_run) as a PyCapsule named
    "mdfi_pool_fn", so that the other kernels (mdfi._ext._kernels) share its threads."""
    return PyCapsule_New(<void *>mdfi_conv_pool_run, b"mdfi_pool_fn", NULL)


def _path_name(int32_t p):
    return mdfi_conv_path_name(p).decode("ascii")


def simd_path():
    """Name of the code path conv2d uses by default (after its start-up self-check)."""
    return _path_name(mdfi_conv_effective_path(_path))


def best_simd_path():
    """Best code path this CPU supports."""
    return _path_name(mdfi_conv_best_path())


def available_simd_paths():
    """Names of the code paths this CPU and build can run (test paths included)."""
    return [p for i, p in enumerate(PATHS) if mdfi_conv_path_available(i)]


def cpu_features():
    """The CPU features the kernels detected ("avx2 avx512bw ...")."""
    return mdfi_cpu_describe().decode("ascii")


def _cpu_tuning():
    """Testing / benchmarks: what the kernel choice reads about the CPU: (Intel vendor,
    level-2 cache bytes from CPUID leaf 4 or 0)."""
    return bool(mdfi_cpu_is_intel()), int(mdfi_cpu_l2_bytes())


def set_simd_path(name):
    """Select the default code path (a name of PATHS or "auto"); returns the path in effect
    (a path the CPU lacks falls back to the best one it has)."""
    global _path
    _path = _resolve_path(name)
    return simd_path()


def _set_q8_override(kernel=-1, direct=-1):
    """Testing only: force the 8-bit kernels' register tile and B mode (direct 1, packed 0,
    compact 2: kernels of at least 2x2, else packed; channels-last 3: paths that have it (AMX),
    with its own kernel, on layers of 61 channels or more, else direct)."""
    mdfi_conv_q8_override(int(kernel), int(direct))


def _set_q8_tune(profile=-1):
    """Testing / benchmarks: the 8-bit kernel-choice profile (-1 auto, 0 generic, 1 Intel
    AVX512-VNNI on every path).  It changes which tile and B mode run, never the result."""
    mdfi_conv_q8_tune(int(profile))


def _q8_choice(name, c, h, w, m, ksize, stride, pad, nthreads=1):
    """Testing / benchmarks: the 8-bit tile and B mode path `name` picks for a layer, as
    (tile index into q8_tiles(name), "packed" | "direct" | "compact"; for the channels-last
    kernel (AMX), which is not among the tiles, (len(q8_tiles(name)), "channels-last")), or None."""
    if name not in PATHS:
        raise ShapeError(f"unknown SIMD path {name!r}")
    cdef int32_t r = mdfi_conv_q8_choice(PATHS.index(name), c, h, w, m, ksize, stride, pad, nthreads)
    if r < 0:
        return None
    return (r // 4, ("packed", "direct", "compact", "channels-last")[r % 4])


def _set_winograd(enable):
    """Testing only: turn the Winograd kernels of the int16-pair paths off (False) or on."""
    mdfi_conv_set_winograd(1 if enable else 0)


def _set_split(mode):
    """Testing / benchmarks: the split path of acc64 layers with int16 inputs on the SIMD
    paths: -1 automatic (default), 0 never, 1 whenever it applies."""
    mdfi_conv_set_split(int(mode))


def _split_calls():
    """Testing: how many convolutions of this process took the split path."""
    return mdfi_conv_split_calls()


def _q8_split_calls():
    """Testing: how many convolutions of this process ran a 16-bit input as AMX byte-split
    products (csrc/mdfi_conv_q8.h, mdfi_q8_split_ok)."""
    return mdfi_conv_q8_split_calls()


def q8_tiles(name):
    """The 8-bit register tiles (rows, vectors, lanes) of a path ([] if it has none)."""
    if name not in PATHS:
        raise ShapeError(f"unknown SIMD path {name!r}")
    cdef int32_t t[48]
    cdef int32_t n = mdfi_conv_q8_tiles(PATHS.index(name), t, 16)
    return [(t[3 * i], t[3 * i + 1], t[3 * i + 2]) for i in range(min(n, 16))]


cdef int32_t _resolve_path(name) except -1:
    cdef int32_t best = mdfi_conv_best_path()
    if name is None:
        return _path
    if name == "auto":
        return best
    if name not in PATHS:
        raise ShapeError(f"unknown SIMD path {name!r} (expected auto or one of: {', '.join(PATHS)})")
    cdef int32_t p = PATHS.index(name)
    return p if mdfi_conv_path_available(p) else best


# dtype instances: comparing an array's dtype with these is an identity test, with np.int8
# & co. (type objects) a dtype conversion per comparison (most of a small call's overhead)
_U8, _I8, _I16, _I32, _I64 = (np.dtype(t) for t in (np.uint8, np.int8, np.int16, np.int32, np.int64))


cdef int _check_int32(value, str what) except -1:
    if value < 0 or value > 2**31 - 1:
        raise ShapeError(f"conv: {what} {value} does not fit int32")
    return 0


def _as_int(v, str what):
    """An integer argument (Python or NumPy int, bool for flags) that fits int32."""
    if not isinstance(v, (int, np.integer)):
        raise ShapeError(f"conv: {what} must be an integer, got {type(v).__name__}")
    v = int(v)
    if not -2**31 <= v <= 2**31 - 1:
        raise ShapeError(f"conv: {what} {v} is out of range")
    return v


def _check_array(a, str what, int ndim, dtypes):
    if not isinstance(a, np.ndarray):
        raise ShapeError(f"conv: {what} must be a numpy array, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ShapeError(f"conv: {what} must have {ndim} dimension(s), got shape {a.shape}")
    if a.dtype not in dtypes:
        raise ShapeError(f"conv: {what} has dtype {a.dtype}, expected "
                         f"{' or '.join(str(np.dtype(d)) for d in dtypes)}")
    if not a.flags.c_contiguous:
        raise ShapeError(f"conv: {what} must be C-contiguous")
    for d in a.shape:
        if d < 1:
            raise ShapeError(f"conv: {what} is empty (shape {a.shape})")
        if d > 2**31 - 1:               # the message is formatted only when it is raised
            _check_int32(d, f"{what} dimension")


def packed_size(m, c, ksize):
    """Bytes of the packed weights of an (m, c, ksize, ksize) convolution."""
    m, c, ksize = _as_int(m, "M"), _as_int(c, "C"), _as_int(ksize, "ksize")
    cdef int64_t n = mdfi_conv_packed_size(m, c, ksize)
    if n < 0:
        raise ShapeError(f"conv: invalid or too large weight shape {(m, c, ksize, ksize)}")
    return n


def pack_weights(w):
    """Pack (M, C, k, k) int8/int16 weights (Darknet order) into the kernel's opaque layout.

    Returns a 1-D uint8 array; pass it unchanged to :func:`conv2d`."""
    _check_array(w, "weights", 4, (_I8, _I16))
    if w.shape[2] != w.shape[3]:
        raise ShapeError(f"conv: weights must be (M, C, k, k) with a square kernel, got {w.shape}")
    cdef int32_t m = w.shape[0], c = w.shape[1], ks = w.shape[2]
    cdef int64_t n = mdfi_conv_packed_size(m, c, ks)
    if n < 0:
        raise ShapeError(f"conv: weight shape {w.shape} is too large")
    # on a 64-byte boundary: the AMX kernels load 64-byte rows of the packed weights, and a
    # row across two cache lines costs two (NumPy aligns to 16 bytes)
    buf = np.empty(n + 64, dtype=np.uint8)
    cdef int64_t off = (-<int64_t>buf.ctypes.data) % 64
    packed = buf[off:off + n]
    cdef uint8_t[::1] pv = packed
    cdef const int8_t[:, :, :, ::1] w8
    cdef const int16_t[:, :, :, ::1] w16
    cdef const void *wp
    cdef int wtype
    if w.dtype == _I8:
        w8 = w
        wp = &w8[0, 0, 0, 0]
        wtype = MDFI_CONV_S8
    else:
        w16 = w
        wp = &w16[0, 0, 0, 0]
        wtype = MDFI_CONV_S16
    cdef int rc
    with nogil:
        rc = mdfi_conv_pack_weights(wp, wtype, m, c, ks, &pv[0], n)
    if rc != 0:
        raise ShapeError(f"conv: packing weights failed: {mdfi_conv_strerror(rc).decode()}")
    return packed


def packed_info(packed):
    """(M, C, k, weight dtype, max |w|) stored in a packed-weights buffer."""
    _check_array(packed, "packed weights", 1, (_U8,))
    cdef const uint8_t[::1] pv = packed
    cdef int32_t m = 0, c = 0, ks = 0, wtype = 0, wmax = 0
    if mdfi_conv_packed_info(&pv[0], pv.shape[0], &m, &c, &ks, &wtype, &wmax) != 0:
        raise ShapeError("conv: packed weights are corrupt (not made by pack_weights, or "
                         "truncated)")
    return m, c, ks, np.dtype(np.int8 if wtype == MDFI_CONV_S8 else np.int16), wmax


def out_size(n, ksize, stride, pad):
    """(n + 2*pad - ksize)//stride + 1, the Darknet output size."""
    n, ksize = _as_int(n, "size"), _as_int(ksize, "ksize")
    stride, pad = _as_int(stride, "stride"), _as_int(pad, "pad")
    cdef int32_t o = mdfi_conv_out_size(n, ksize, stride, pad)
    if o < 1:
        raise ShapeError(f"conv: input size {n} with kernel {ksize}, stride {stride}, "
                         f"pad {pad} gives an empty output")
    return o


def scratch_bytes(c, h, w, m, ksize, stride, pad, nthreads):
    """Bytes of scratch :func:`conv2d` needs for these shapes and thread count."""
    c, h, w, m = _as_int(c, "C"), _as_int(h, "H"), _as_int(w, "W"), _as_int(m, "M")
    ksize, stride, pad = _as_int(ksize, "ksize"), _as_int(stride, "stride"), _as_int(pad, "pad")
    nthreads = _as_int(nthreads, "nthreads")
    if nthreads < 1 or nthreads > MAX_THREADS:
        raise ShapeError(f"conv: nthreads must be in 1..{MAX_THREADS}, got {nthreads}")
    cdef int64_t n = mdfi_conv_scratch_size(c, h, w, m, ksize, stride, pad, nthreads)
    if n < 0:
        raise ShapeError(f"conv: invalid or too large convolution: input {(c, h, w)}, "
                         f"{m} filters {ksize}x{ksize}, stride {stride}, pad {pad}")
    return n


cdef int _residual_arg(residual, out, mdfi_conv_residual *r) except -1:
    """Check the fused shortcut (b, res_out, da, db, shift, rounding, bits, act) against out."""
    if not isinstance(residual, tuple) or len(residual) != 8:
        raise ShapeError("conv: residual must be (b, out, da, db, shift, rounding, bits, act)")
    b, o2, da, db, sh, rnd, bits, act = residual
    _check_array(b, "residual input", 3, (_I8, _I16))
    _check_array(o2, "residual output", 3, (_I8, _I16))
    if b.shape != out.shape or o2.shape != out.shape:
        raise ShapeError(f"conv: residual arrays must have the output's shape {out.shape}, got {b.shape} and {o2.shape}")
    if not o2.flags.writeable:
        raise ShapeError("conv: residual output is read-only")
    if np.shares_memory(o2, out) or np.shares_memory(o2, b) or np.shares_memory(b, out):
        raise ShapeError("conv: residual input, residual output and output must not overlap")
    da, db, sh = _as_int(da, "residual da"), _as_int(db, "residual db"), _as_int(sh, "residual shift")
    rnd, bits, act = _as_int(rnd, "residual rounding"), _as_int(bits, "residual bits"), _as_int(act, "residual act")
    if not (0 <= da <= 16 and 0 <= db <= 16):
        raise ShapeError(f"conv: residual alignment shifts {da}, {db} outside 0..16")
    if not MDFI_MIN_SHIFT <= sh <= MDFI_MAX_SHIFT:
        raise ShapeError(f"conv: residual shift {sh} outside [{MDFI_MIN_SHIFT}, {MDFI_MAX_SHIFT}]")
    if not MIN_BITS <= bits <= MAX_BITS or (o2.dtype == _I8 and bits > 8):
        raise ShapeError(f"conv: residual bits {bits} do not fit a {o2.dtype} output")
    if rnd not in (MDFI_ROUND_HALF_UP, MDFI_ROUND_TRUNCATE) or act not in (MDFI_ACT_LINEAR, MDFI_ACT_LEAKY, MDFI_ACT_RELU):
        raise ShapeError("conv: unknown residual rounding or activation code")
    cdef const int8_t[:, :, ::1] b8
    cdef const int16_t[:, :, ::1] b16
    cdef int8_t[:, :, ::1] o8
    cdef int16_t[:, :, ::1] o16
    if b.dtype == _I8:
        b8 = b
        r.b = &b8[0, 0, 0]
        r.b_type = MDFI_CONV_S8
    else:
        b16 = b
        r.b = &b16[0, 0, 0]
        r.b_type = MDFI_CONV_S16
    if o2.dtype == _I8:
        o8 = o2
        r.out = &o8[0, 0, 0]
        r.out_type = MDFI_CONV_S8
    else:
        o16 = o2
        r.out = &o16[0, 0, 0]
        r.out_type = MDFI_CONV_S16
    r.da, r.db, r.shift, r.rounding, r.bits, r.act = da, db, sh, rnd, bits, act
    return 0


def conv2d(x, packed, bias, shift, out, *, ksize, stride, pad, rounding, out_bits, act,
           acc64, nthreads=1, scratch=None, simd=None, residual=None, pool=None, pool_only=False,
           pad_value=0, zero_out=0):
    """Integer convolution + bias + requantize/activation/saturate, in place into ``out``.

    x: (C, H, W) uint8/int8/int16; packed: from :func:`pack_weights`; bias: (M,) int64;
    shift: (M,) int32; out: (M, OH, OW) int8 (out_bits <= 8) or int16.  ``rounding`` and
    ``act`` are the codes of mdfi_fixedpoint.h (mdfi.fixedpoint.rounding_code; activations
    linear 0, leaky 1, relu 2).  ``acc64``: 0 = int32 accumulation (the caller guarantees
    |sum| + |bias| < 2**31), 1 = int64.  ``scratch``: 1-D uint8 of at least
    :func:`scratch_bytes` bytes (allocated per call when None).  ``simd``: None (default
    path), "auto" or a name of PATHS.  Bit-identical to conv2d_int_ref.  ``residual``: a
    shortcut fused into the convolution, ``(b, res_out, da, db, shift, rounding, bits, act)``:
    res_out (the output's shape, int8/int16) receives ``requantize(out * 2**da + b * 2**db,
    shift, ...)`` with ``out`` as stored (docs/fixed-point.md section 6); ``out`` is written too.
    ``pool``: (M, OH/2, OW/2) of out's dtype, the 2x2 stride-2 max pool of ``out`` (windows at
    the origin), written in the same pass where the path can (mdfi_conv2d_pool: the Winograd
    kernels, OH and OW even); the call then returns True, else False (``pool`` untouched, the
    caller runs the pool).  ``pool_only``: when the pool is written, ``out`` is not (its
    contents are then undefined).  Not with ``residual``.
    ``pad_value``: the padding value, the input's zero point (a value of x's dtype);
    ``zero_out``: the output's zero point, added after the activation and before the
    saturation (inside the out_bits range): ``out = sat(R(act(acc) / 2**s) + zero_out)``
    (conv2d_int_ref(..., pad_value=, zero_out=)).  Not with ``residual``.
    """
    # -- codes -------------------------------------------------------------------------
    ksize = _as_int(ksize, "ksize")
    stride = _as_int(stride, "stride")
    pad = _as_int(pad, "pad")
    rounding = _as_int(rounding, "rounding code")
    out_bits = _as_int(out_bits, "out_bits")
    act = _as_int(act, "activation code")
    acc64 = _as_int(acc64, "acc64")
    nthreads = _as_int(nthreads, "nthreads")
    pad_value = _as_int(pad_value, "pad_value")
    zero_out = _as_int(zero_out, "zero_out")
    if not MIN_BITS <= out_bits <= MAX_BITS:
        raise ShapeError(f"conv: out_bits {out_bits} outside {MIN_BITS}..{MAX_BITS}")
    if not -(1 << (out_bits - 1)) <= zero_out <= (1 << (out_bits - 1)) - 1:
        raise ShapeError(f"conv: zero_out {zero_out} outside the {out_bits}-bit range "
                         f"[{-(1 << (out_bits - 1))}, {(1 << (out_bits - 1)) - 1}]")
    if residual is not None and (pad_value != 0 or zero_out != 0):
        raise ShapeError("conv: a fused residual cannot take zero points (pad_value, zero_out)")
    if rounding not in (MDFI_ROUND_HALF_UP, MDFI_ROUND_TRUNCATE):
        raise ShapeError(f"conv: unknown rounding code {rounding} (0 = half_up, 1 = truncate)")
    if act not in (MDFI_ACT_LINEAR, MDFI_ACT_LEAKY, MDFI_ACT_RELU):
        raise ShapeError(f"conv: unknown activation code {act} (0 = linear, 1 = leaky, 2 = relu)")
    if acc64 not in (0, 1):
        raise ShapeError(f"conv: acc64 must be 0 or 1, got {acc64!r}")
    if nthreads < 1 or nthreads > MAX_THREADS:
        raise ShapeError(f"conv: nthreads must be in 1..{MAX_THREADS}, got {nthreads}")
    cdef int32_t path = _resolve_path(simd)

    # -- packed weights ----------------------------------------------------------------
    _check_array(packed, "packed weights", 1, (_U8,))
    cdef const uint8_t[::1] pv = packed
    cdef int32_t m = 0, c = 0, pk = 0, wtype = 0, wmax = 0
    if mdfi_conv_packed_info(&pv[0], pv.shape[0], &m, &c, &pk, &wtype, &wmax) != 0:
        raise ShapeError("conv: packed weights are corrupt (not made by pack_weights, or "
                         "truncated)")
    if ksize != pk:
        raise ShapeError(f"conv: ksize={ksize} but the packed weights are {pk}x{pk}")

    # -- input -------------------------------------------------------------------------
    _check_array(x, "input", 3, (_U8, _I8, _I16))
    if x.shape[0] != c:
        raise ShapeError(f"conv: input has {x.shape[0]} channels, the weights expect {c}")
    cdef int32_t h = x.shape[1], w = x.shape[2]
    lo, hi = (0, 255) if x.dtype == _U8 else (-128, 127) if x.dtype == _I8 else (-32768, 32767)
    if not lo <= pad_value <= hi:
        raise ShapeError(f"conv: pad_value {pad_value} is not a value of the input's {x.dtype} "
                         f"[{lo}, {hi}]")
    if stride < 1:
        raise ShapeError(f"conv: stride must be >= 1, got {stride}")
    if pad < 0:
        raise ShapeError(f"conv: pad must be >= 0, got {pad}")
    cdef int32_t oh = mdfi_conv_out_size(h, ksize, stride, pad)
    cdef int32_t ow = mdfi_conv_out_size(w, ksize, stride, pad)
    if oh < 1 or ow < 1:
        raise ShapeError(f"conv: input {x.shape} with kernel {ksize}, stride {stride}, pad {pad} "
                         f"gives an empty output")

    # -- bias, shift -------------------------------------------------------------------
    _check_array(bias, "bias", 1, (_I64,))
    _check_array(shift, "shift", 1, (_I32,))
    if bias.shape[0] != m:
        raise ShapeError(f"conv: bias has {bias.shape[0]} entries, the weights have {m} filters")
    if shift.shape[0] != m:
        raise ShapeError(f"conv: shift has {shift.shape[0]} entries, the weights have {m} filters")
    cdef const int64_t[::1] bv = bias
    cdef const int32_t[::1] sv = shift
    cdef Py_ssize_t i
    for i in range(m):
        if sv[i] < MDFI_MIN_SHIFT or sv[i] > MDFI_MAX_SHIFT:
            raise ShapeError(f"conv: shift[{i}] = {sv[i]} outside [{MDFI_MIN_SHIFT}, {MDFI_MAX_SHIFT}]")
        if bv[i] < -BIAS_LIMIT or bv[i] > BIAS_LIMIT:
            raise ShapeError(f"conv: |bias[{i}]| = {abs(bv[i])} exceeds 2**47")

    # -- output ------------------------------------------------------------------------
    _check_array(out, "output", 3, (_I8, _I16))
    if out.shape != (m, oh, ow):
        raise ShapeError(f"conv: output must have shape {(m, oh, ow)}, got {out.shape}")
    if out.dtype == _I8 and out_bits > 8:
        raise ShapeError(f"conv: out_bits {out_bits} does not fit an int8 output (use int16)")
    if not out.flags.writeable:
        raise ShapeError("conv: output array is read-only")

    # -- scratch -----------------------------------------------------------------------
    cdef int64_t need = mdfi_conv_scratch_size(c, h, w, m, ksize, stride, pad, nthreads)
    if need < 0:
        raise ShapeError(f"conv: convolution too large: input {x.shape}, {m} filters "
                         f"{ksize}x{ksize}, stride {stride}, pad {pad}")
    if scratch is None:
        scratch = np.empty(need, dtype=np.uint8)
    _check_array(scratch, "scratch", 1, (_U8,))
    if scratch.shape[0] < need:
        raise ShapeError(f"conv: scratch has {scratch.shape[0]} bytes, needs {need} "
                         f"(see scratch_bytes)")
    if not scratch.flags.writeable:
        raise ShapeError("conv: scratch array is read-only")
    cdef uint8_t[::1] scv = scratch

    # -- pointers ----------------------------------------------------------------------
    cdef const uint8_t[:, :, ::1] xu8
    cdef const int8_t[:, :, ::1] xs8
    cdef const int16_t[:, :, ::1] xs16
    cdef int8_t[:, :, ::1] o8
    cdef int16_t[:, :, ::1] o16
    cdef const void *xp
    cdef void *op
    cdef int xtype, otype
    if x.dtype == _U8:
        xu8 = x
        xp = &xu8[0, 0, 0]
        xtype = MDFI_CONV_U8
    elif x.dtype == _I8:
        xs8 = x
        xp = &xs8[0, 0, 0]
        xtype = MDFI_CONV_S8
    else:
        xs16 = x
        xp = &xs16[0, 0, 0]
        xtype = MDFI_CONV_S16
    if out.dtype == _I8:
        o8 = out
        op = &o8[0, 0, 0]
        otype = MDFI_CONV_S8
    else:
        o16 = out
        op = &o16[0, 0, 0]
        otype = MDFI_CONV_S16

    cdef mdfi_conv_residual res
    cdef const mdfi_conv_residual *resp = NULL
    if residual is not None:
        _residual_arg(residual, out, &res)
        resp = &res
        if np.shares_memory(residual[1], x) or np.shares_memory(out, x):
            raise ShapeError("conv: outputs must not overlap the input")

    cdef void *pp = NULL
    cdef int8_t[:, :, ::1] p8
    cdef int16_t[:, :, ::1] p16
    cdef int64_t pool_count = 0
    if pool is not None:
        if residual is not None:
            raise ShapeError("conv: pool and residual cannot be fused together")
        _check_array(pool, "pool output", 3, (out.dtype,))
        if pool.shape != (m, oh // 2, ow // 2):
            raise ShapeError(f"conv: pool output must have shape {(m, oh // 2, ow // 2)}, got {pool.shape}")
        if not pool.flags.writeable:
            raise ShapeError("conv: pool output array is read-only")
        if np.shares_memory(pool, x) or np.shares_memory(pool, out) or np.shares_memory(out, x):
            raise ShapeError("conv: outputs must not overlap the input or each other")
        if oh % 2 or ow % 2:
            pool = None                 # not tile-aligned: the caller pools
        elif out.dtype == _I8:
            p8 = pool
            pp = &p8[0, 0, 0]
        else:
            p16 = pool
            pp = &p16[0, 0, 0]
        pool_count = m * (oh // 2) * (ow // 2)
    cdef int64_t x_count = x.size, out_count = out.size, npacked = pv.shape[0]
    cdef int64_t nscratch = scv.shape[0]
    cdef int32_t iacc64 = acc64, iks = ksize, istride = stride, ipad = pad
    cdef int32_t iround = rounding, ibits = out_bits, iact = act, inth = nthreads
    cdef int rc
    cdef bint want_pool = pp != NULL
    cdef int32_t ionly = 1 if pool_only else 0
    cdef int32_t ipadv = pad_value, izo = zero_out
    with nogil:
        if want_pool:
            rc = mdfi_conv2d_pool_zp(xp, xtype, c, h, w, x_count, &pv[0], npacked, &bv[0], &sv[0], m,
                                     op, otype, out_count, iks, istride, ipad, iround, ibits, iact,
                                     iacc64, inth, path, &scv[0], nscratch, pp, pool_count, ionly,
                                     ipadv, izo)
        elif resp == NULL:
            rc = mdfi_conv2d_zp(xp, xtype, c, h, w, x_count, &pv[0], npacked, &bv[0], &sv[0], m,
                                op, otype, out_count, iks, istride, ipad, iround, ibits, iact,
                                iacc64, inth, path, &scv[0], nscratch, ipadv, izo)
        else:
            rc = mdfi_conv2d_res(xp, xtype, c, h, w, x_count, &pv[0], npacked, &bv[0], &sv[0], m,
                                 op, otype, out_count, iks, istride, ipad, iround, ibits, iact,
                                 iacc64, inth, path, &scv[0], nscratch, resp)
    if rc < 0:
        raise ShapeError(f"conv: {mdfi_conv_strerror(rc).decode()} (input {x.shape} "
                         f"{x.dtype}, weights {(m, c, pk, pk)} {'int8' if wtype == MDFI_CONV_S8 else 'int16'})")
    if pool_count:
        return rc == 1
    return out
