# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrapper of csrc/mdfi_image.c: shapes are checked here, all arithmetic is in C."""

from cpython.pycapsule cimport PyCapsule_GetPointer
from libc.stdint cimport int64_t, uint8_t
import numpy as np
from mdfi._ext.cimage cimport (mdfi_image_have_avx2, mdfi_image_pool_fn, mdfi_letterbox_f32,
                              mdfi_letterbox_u8_scratch, mdfi_letterbox_u8)
from mdfi._ext import _conv
from mdfi.errors import ShapeError


def letterbox_f32(const float[:, :, ::1] src not None,
                  float[:, :, ::1] part not None,
                  float[:, :, ::1] dst not None,
                  int new_h, int new_w):
    """Darknet letterbox of ``src`` (C,H,W) into ``dst`` (C,net_h,net_w).

    ``part`` is scratch of shape (C, H, new_w).  Raises ShapeError on any inconsistency;
    the C code is only reached with buffers of exactly the sizes it will touch.
    """
    cdef Py_ssize_t c = src.shape[0], h = src.shape[1], w = src.shape[2]
    cdef Py_ssize_t net_h = dst.shape[1], net_w = dst.shape[2]
    if c < 1 or h < 1 or w < 1:
        raise ShapeError(f"letterbox: empty source image ({c}, {h}, {w})")
    if dst.shape[0] != c:
        raise ShapeError(f"letterbox: dst has {dst.shape[0]} channels, src has {c}")
    if not (1 <= new_w <= net_w and 1 <= new_h <= net_h):
        raise ShapeError(f"letterbox: resized size {new_w}x{new_h} does not fit {net_w}x{net_h}")
    if part.shape[0] != c or part.shape[1] != h or part.shape[2] != new_w:
        raise ShapeError(f"letterbox: scratch must be {(c, h, new_w)}, got ({part.shape[0]}, {part.shape[1]}, {part.shape[2]})")
    if max(c, h, w, net_h, net_w) > 2**31 - 1:
        raise ShapeError("letterbox: dimension exceeds int32")
    cdef int rc
    with nogil:
        rc = mdfi_letterbox_f32(&src[0, 0, 0], <int>c, <int>h, <int>w,
                                &part[0, 0, 0], new_h, new_w,
                                &dst[0, 0, 0], <int>net_h, <int>net_w)
    if rc != 0:
        raise ShapeError("letterbox: C kernel rejected the sizes")


cdef extern from *:
    """
    /* The Arrow C data interface (https://arrow.apache.org/docs/format/CDataInterface.html):
     * a stable ABI, through which Pillow (>= 11.2) shares an image's pixel memory. */
    struct ArrowSchema {
        const char *format; const char *name; const char *metadata; int64_t flags; int64_t n_children;
        struct ArrowSchema **children; struct ArrowSchema *dictionary;
        void (*release)(struct ArrowSchema *); void *private_data;
    };
    struct ArrowArray {
        int64_t length; int64_t null_count; int64_t offset; int64_t n_buffers; int64_t n_children;
        const void **buffers; struct ArrowArray **children; struct ArrowArray *dictionary;
        void (*release)(struct ArrowArray *); void *private_data;
    };
    """
    struct ArrowSchema:
        const char *format
        int64_t n_children
        ArrowSchema **children
        void *release
    struct ArrowArray:
        int64_t length
        int64_t null_count
        int64_t offset
        int64_t n_buffers
        int64_t n_children
        const void **buffers
        ArrowArray **children
        void *release

MAX_THREADS = 256
# The convolution's thread pool (one pool per process, shared with mdfi._ext._kernels).
cdef mdfi_image_pool_fn _pool = <mdfi_image_pool_fn>PyCapsule_GetPointer(_conv.pool_capsule(), b"mdfi_pool_fn")


cdef int _check_letterbox(Py_ssize_t c, Py_ssize_t h, Py_ssize_t w, dst, int new_h, int new_w,
                          nthreads) except -1:
    if c < 1 or h < 1 or w < 1:
        raise ShapeError(f"letterbox: empty source image ({h}, {w}, {c})")
    if dst.shape[0] != c:
        raise ShapeError(f"letterbox: dst has {dst.shape[0]} channels, src has {c}")
    if not (1 <= new_w <= dst.shape[2] and 1 <= new_h <= dst.shape[1]):
        raise ShapeError(f"letterbox: resized size {new_w}x{new_h} does not fit {dst.shape[2]}x{dst.shape[1]}")
    if max(c, h, w, dst.shape[1], dst.shape[2]) > 2**31 - 1:
        raise ShapeError("letterbox: dimension exceeds int32")
    if not isinstance(nthreads, (int, np.integer)) or isinstance(nthreads, bool) or \
            not 1 <= nthreads <= MAX_THREADS:
        raise ShapeError(f"letterbox: nthreads must be an integer in 1..{MAX_THREADS}, got {nthreads!r}")
    return 0


def have_avx2():
    """True when the 8-bit letterbox can take its AVX2 path on this CPU."""
    return bool(mdfi_image_have_avx2())


cdef int _simd(simd) except -1:
    """simd None: the convolution's current choice (MDFI_SIMD / _conv.set_simd_path; "scalar"
    turns the AVX2 twins off), else a bool."""
    return (_conv.simd_path() != "scalar") if simd is None else (1 if simd else 0)


cdef _letterbox_u8_ptr(const uint8_t *src, int c, int h, int w, int pixel_stride, int64_t row_stride,
                       uint8_t[:, :, ::1] dst, int new_h, int new_w, int nthreads, int simd):
    cdef int64_t n = mdfi_letterbox_u8_scratch(c, new_w, nthreads)
    scratch = np.empty(n, dtype=np.float32)
    cdef float[::1] sv = scratch
    cdef int rc
    cdef int net_h = <int>dst.shape[1], net_w = <int>dst.shape[2]
    with nogil:
        rc = mdfi_letterbox_u8(src, c, h, w, pixel_stride, row_stride, &sv[0], n, &dst[0, 0, 0], new_h, new_w,
                               net_h, net_w, _pool, nthreads, simd)
    if rc != 0:
        raise ShapeError("letterbox: C kernel rejected the sizes")


def letterbox_u8(const uint8_t[:, :, ::1] rgb not None, uint8_t[:, :, ::1] dst not None,
                 int new_h, int new_w, nthreads=1, simd=None):
    """Darknet letterbox of 8-bit pixels ``rgb`` (H,W,C) straight into the 8-bit network input
    ``dst`` (C,net_h,net_w): equal to ``input_to_u8(letterbox_f32(rgb/255))``, on up to
    ``nthreads`` threads of the convolution's pool, with the AVX2 twins where the CPU has them
    unless ``simd`` is False (None: unless MDFI_SIMD=scalar); the result depends on neither."""
    cdef Py_ssize_t h = rgb.shape[0], w = rgb.shape[1], c = rgb.shape[2]
    _check_letterbox(c, h, w, dst, new_h, new_w, nthreads)
    _letterbox_u8_ptr(&rgb[0, 0, 0], <int>c, <int>h, <int>w, <int>c, <int64_t>(w * c), dst, new_h, new_w,
                      nthreads, _simd(simd))


def letterbox_u8_arrow(schema not None, array not None, int h, int w, uint8_t[:, :, ::1] dst not None,
                       int new_h, int new_w, nthreads=1, simd=None):
    """:func:`letterbox_u8` of an 8-bit RGB image of ``h`` rows and ``w`` columns exported
    through the Arrow C data interface as Pillow (>= 11.2) does it: ``image.__arrow_c_array__()``
    = (schema, array) capsules of ``h*w`` pixels, a fixed-size list of 4 uint8 each (R, G, B and
    a padding byte), in one contiguous buffer, row after row.  Reads that memory in place (no
    copy).  Raises ShapeError when the capsules describe anything else (the caller then falls
    back to a copy); the caller keeps the image and the capsules alive during the call."""
    cdef ArrowSchema *sch = <ArrowSchema *>PyCapsule_GetPointer(schema, b"arrow_schema")
    cdef ArrowArray *arr = <ArrowArray *>PyCapsule_GetPointer(array, b"arrow_array")
    cdef ArrowArray *child
    _check_letterbox(3, h, w, dst, new_h, new_w, nthreads)
    if sch.release == NULL or arr.release == NULL:
        raise ShapeError("letterbox: the Arrow capsules were released")
    if sch.format == NULL or bytes(sch.format) != b"+w:4" or sch.n_children != 1 or \
            sch.children[0].format == NULL or bytes(sch.children[0].format) != b"C":
        raise ShapeError("letterbox: the Arrow array is not a fixed-size list of 4 uint8")
    if arr.length != <int64_t>h * w or arr.offset != 0 or arr.null_count != 0 or arr.n_children != 1:
        raise ShapeError("letterbox: the Arrow array does not hold the image's pixels")
    child = arr.children[0]
    if child.length != 4 * <int64_t>h * w or child.offset != 0 or child.null_count != 0 or \
            child.n_buffers != 2 or child.buffers[1] == NULL:
        raise ShapeError("letterbox: the Arrow array's bytes are not one contiguous buffer")
    _letterbox_u8_ptr(<const uint8_t *>child.buffers[1], 3, h, w, 4, 4 * <int64_t>w, dst, new_h, new_w, nthreads,
                      _simd(simd))
