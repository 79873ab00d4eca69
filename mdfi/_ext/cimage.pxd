# C declarations of csrc/mdfi_image.h (no code here).
from libc.stdint cimport int32_t, int64_t, uint8_t

cdef extern from "mdfi_image.h" nogil:
    int mdfi_letterbox_f32(const float *src, int32_t c, int32_t h, int32_t w,
                           float *part, int32_t new_h, int32_t new_w,
                           float *dst, int32_t net_h, int32_t net_w)
    ctypedef int (*mdfi_image_pool_fn)(void (*job)(void *arg, int tid) noexcept nogil, void *arg,
                                       int nthreads) noexcept nogil
    int64_t mdfi_letterbox_u8_scratch(int32_t c, int32_t new_w, int32_t nthreads)
    int mdfi_letterbox_u8(const uint8_t *rgb, int32_t c, int32_t h, int32_t w, int32_t pixel_stride,
                          int64_t row_stride, float *scratch, int64_t scratch_floats, uint8_t *dst,
                          int32_t new_h, int32_t new_w, int32_t net_h, int32_t net_w, mdfi_image_pool_fn pool,
                          int32_t nthreads, int32_t simd)
    int mdfi_image_have_avx2()
