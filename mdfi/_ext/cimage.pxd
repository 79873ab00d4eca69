# C declarations of csrc/mdfi_image.h (no code here).
from libc.stdint cimport int32_t

cdef extern from "mdfi_image.h" nogil:
    int mdfi_letterbox_f32(const float *src, int32_t c, int32_t h, int32_t w,
                           float *part, int32_t new_h, int32_t new_w,
                           float *dst, int32_t net_h, int32_t net_w)
