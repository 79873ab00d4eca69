# cython: language_level=3, boundscheck=False, wraparound=False
"""Thin wrapper of csrc/mdfi_image.c: shapes are checked here, all arithmetic is in C."""

from libc.stdint cimport int64_t, uint8_t
import numpy as np
from mdfi._ext.cimage cimport mdfi_letterbox_f32, mdfi_letterbox_u8_scratch, mdfi_letterbox_u8
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


def letterbox_u8(const uint8_t[:, :, ::1] rgb not None, uint8_t[:, :, ::1] dst not None,
                 int new_h, int new_w):
    """Darknet letterbox of 8-bit pixels ``rgb`` (H,W,C) straight into the 8-bit network input
    ``dst`` (C,net_h,net_w): equal to ``input_to_u8(letterbox_f32(rgb/255))``."""
    cdef Py_ssize_t h = rgb.shape[0], w = rgb.shape[1], c = rgb.shape[2]
    cdef Py_ssize_t net_h = dst.shape[1], net_w = dst.shape[2]
    if c < 1 or h < 1 or w < 1:
        raise ShapeError(f"letterbox: empty source image ({h}, {w}, {c})")
    if dst.shape[0] != c:
        raise ShapeError(f"letterbox: dst has {dst.shape[0]} channels, src has {c}")
    if not (1 <= new_w <= net_w and 1 <= new_h <= net_h):
        raise ShapeError(f"letterbox: resized size {new_w}x{new_h} does not fit {net_w}x{net_h}")
    if max(c, h, w, net_h, net_w) > 2**31 - 1:
        raise ShapeError("letterbox: dimension exceeds int32")
    cdef int64_t n = mdfi_letterbox_u8_scratch(<int>c, <int>h, new_w)
    scratch = np.empty(n, dtype=np.float32)
    cdef float[::1] sv = scratch
    cdef int rc
    with nogil:
        rc = mdfi_letterbox_u8(&rgb[0, 0, 0], <int>c, <int>h, <int>w, &sv[0], n, &dst[0, 0, 0], new_h, new_w,
                               <int>net_h, <int>net_w)
    if rc != 0:
        raise ShapeError("letterbox: C kernel rejected the sizes")
