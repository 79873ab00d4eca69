# C declarations of csrc/mdfi_kernels.h and csrc/mdfi_fixedpoint.h (no code here).
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t

cdef extern from "mdfi_fixedpoint.h" nogil:
    int MDFI_MIN_SHIFT
    int MDFI_MAX_SHIFT

cdef extern from "mdfi_kernels.h" nogil:
    ctypedef int (*mdfi_pool_fn)(void (*job)(void *arg, int tid) noexcept nogil, void *arg, int nthreads) noexcept nogil
    ctypedef struct mdfi_kopts:
        mdfi_pool_fn pool
        int32_t nthreads
        int32_t simd
    int mdfi_kernels_have_avx2()
    int mdfi_requantize_array(const int64_t *acc, const int32_t *shift, int64_t channels, int64_t plane,
                              int32_t mode, int32_t bits, int32_t act, void *out, int32_t out_type,
                              int32_t simd)
    int mdfi_maxpool(const void *inp, int32_t type, int32_t c, int32_t h, int32_t w, int32_t size,
                     int32_t stride, int32_t pad, void *out, int32_t oh, int32_t ow)
    int mdfi_upsample(const void *inp, int32_t type, int32_t c, int32_t h, int32_t w, int32_t stride,
                      void *out)
    int mdfi_align_copy(const void *inp, int32_t in_type, int64_t n, int32_t shift, int32_t mode,
                        int32_t bits, void *out, int32_t out_type)
    int mdfi_shortcut(const void *a, int32_t a_type, int32_t fa, const void *b, int32_t b_type, int32_t fb,
                      int64_t n, int32_t out_frac, int32_t mode, int32_t bits, int32_t act, void *out,
                      int32_t out_type)
    int mdfi_avgpool(const void *inp, int32_t in_type, int32_t zi, int32_t c, int64_t plane, int32_t d,
                     int32_t mode, int32_t bits, int32_t zo, void *out, int32_t out_type)
    int mdfi_scale_channels(const void *a, int32_t a_type, int32_t za, int64_t a_cstride, int64_t a_pstride,
                            const void *b, int32_t b_type, int32_t zb, int32_t c, int64_t plane,
                            int32_t shift, int32_t mode, int32_t bits, int32_t act, int32_t zo,
                            void *out, int32_t out_type)
    int mdfi_reorg(const void *inp, int32_t type, int32_t c, int32_t h, int32_t w, int32_t stride, void *out)
    int mdfi_head_lookup(const void *inp, int32_t in_type, int32_t c, int64_t plane, int32_t qmin,
                         const uint16_t *logistic, const int32_t *exp_tab, int32_t table_len,
                         const uint8_t *table_sel, int32_t *out)
    int mdfi_softmax_int(const void *inp, int32_t in_type, int32_t n, int32_t stride_anchor, int32_t first,
                         int32_t classes, int64_t plane, const int32_t *expneg, int32_t table_len,
                         int32_t *out)
    int mdfi_conv_grouped_ex(const void *inp, int32_t in_type, int32_t c, int32_t h, int32_t w,
                             const int16_t *weights, const int64_t *bias, const int32_t *shift, int32_t m,
                             int32_t groups, int32_t k, int32_t stride, int32_t pad, int32_t pad_value,
                             int32_t rounding, int32_t bits, int32_t act, int32_t zero_out, int32_t acc32, void *out,
                             int32_t out_type, int32_t oh, int32_t ow, const mdfi_kopts *opts)
    void mdfi_grouped_set_vnni(int allowed)
    int mdfi_maxpool_ex(const void *inp, int32_t type, int32_t c, int32_t h, int32_t w, int32_t size,
                        int32_t stride, int32_t pad, void *out, int32_t oh, int32_t ow, const mdfi_kopts *opts)
    int mdfi_upsample_ex(const void *inp, int32_t type, int32_t c, int32_t h, int32_t w, int32_t stride,
                         void *out, const mdfi_kopts *opts)
    int mdfi_align_copy_ex(const void *inp, int32_t in_type, int64_t n, int32_t shift, int32_t mode,
                           int32_t bits, void *out, int32_t out_type, const mdfi_kopts *opts)
    int mdfi_align_copy_zp(const void *inp, int32_t in_type, int64_t n, int32_t shift, int32_t mode,
                           int32_t bits, void *out, int32_t out_type, int32_t zero_in, int32_t zero_out, const mdfi_kopts *opts)
    int mdfi_shortcut_zp(const void *a, int32_t a_type, int32_t fa, const void *b, int32_t b_type, int32_t fb,
                         int64_t n, int32_t out_frac, int32_t mode, int32_t bits, int32_t act, void *out,
                         int32_t out_type, int32_t za, int32_t zb, int32_t zo, const mdfi_kopts *opts)
    int mdfi_shortcut_ex(const void *a, int32_t a_type, int32_t fa, const void *b, int32_t b_type, int32_t fb,
                         int64_t n, int32_t out_frac, int32_t mode, int32_t bits, int32_t act, void *out,
                         int32_t out_type, const mdfi_kopts *opts)
    int mdfi_lut_ex(const void *inp, int32_t in_type, int64_t n, int32_t qmin, const int32_t *table,
                    int32_t table_len, void *out, int32_t out_type, const mdfi_kopts *opts)
    int mdfi_head_lookup_ex(const void *inp, int32_t in_type, int32_t c, int64_t plane, int32_t qmin,
                            const uint16_t *logistic, const int32_t *exp_tab, int32_t table_len,
                            const uint8_t *table_sel, int32_t *out, const mdfi_kopts *opts)
