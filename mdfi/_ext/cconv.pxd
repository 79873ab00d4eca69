# C declarations of csrc/mdfi_conv.h (no code here).
from libc.stdint cimport int32_t, int64_t

cdef extern from "mdfi_conv.h" nogil:
    enum:
        MDFI_CONV_U8
        MDFI_CONV_S8
        MDFI_CONV_S16
        MDFI_CONV_PATH_SCALAR
        MDFI_CONV_NPATHS
        MDFI_CONV_OK
        MDFI_CONV_MR
        MDFI_CONV_NR

    int32_t mdfi_conv_out_size(int32_t n, int32_t ks, int32_t stride, int32_t pad)
    int64_t mdfi_conv_packed_size(int32_t m, int32_t c, int32_t ks)
    int mdfi_conv_pack_weights(const void *w, int wtype, int32_t m, int32_t c, int32_t ks,
                               void *packed, int64_t packed_size)
    int mdfi_conv_packed_info(const void *packed, int64_t packed_size, int32_t *m, int32_t *c,
                              int32_t *ks, int32_t *wtype, int32_t *wmax)
    int64_t mdfi_conv_scratch_size(int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks,
                                   int32_t stride, int32_t pad, int32_t nthreads)
    int mdfi_conv2d(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                    const void *packed, int64_t packed_size,
                    const int64_t *bias, const int32_t *shift, int32_t m,
                    void *out, int otype, int64_t out_count,
                    int32_t ks, int32_t stride, int32_t pad,
                    int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                    int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size)
    int mdfi_conv2d_zp(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                       const void *packed, int64_t packed_size,
                       const int64_t *bias, const int32_t *shift, int32_t m,
                       void *out, int otype, int64_t out_count,
                       int32_t ks, int32_t stride, int32_t pad,
                       int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                       int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                       int32_t pad_value, int32_t zero_out)
    int mdfi_conv2d_pool_zp(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                            const void *packed, int64_t packed_size,
                            const int64_t *bias, const int32_t *shift, int32_t m,
                            void *out, int otype, int64_t out_count,
                            int32_t ks, int32_t stride, int32_t pad,
                            int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                            int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                            void *pool, int64_t pool_count, int32_t pool_only,
                            int32_t pad_value, int32_t zero_out)
    ctypedef struct mdfi_conv_residual:
        const void *b
        int32_t b_type
        int32_t da
        int32_t db
        int32_t shift
        int32_t rounding
        int32_t bits
        int32_t act
        void *out
        int32_t out_type
    int mdfi_conv2d_res(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                        const void *packed, int64_t packed_size,
                        const int64_t *bias, const int32_t *shift, int32_t m,
                        void *out, int otype, int64_t out_count,
                        int32_t ks, int32_t stride, int32_t pad,
                        int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                        int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                        const mdfi_conv_residual *res)
    int mdfi_conv2d_pool(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                         const void *packed, int64_t packed_size,
                         const int64_t *bias, const int32_t *shift, int32_t m,
                         void *out, int otype, int64_t out_count,
                         int32_t ks, int32_t stride, int32_t pad,
                         int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                         int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                         void *pool, int64_t pool_count, int32_t pool_only)
    int32_t mdfi_conv_best_path()
    int32_t mdfi_conv_env_path()
    const char *mdfi_conv_path_name(int32_t path)
    int32_t mdfi_conv_path_from_name(const char *name)
    int mdfi_conv_path_available(int32_t path)
    int32_t mdfi_conv_effective_path(int32_t path)
    void mdfi_conv_q8_override(int32_t kernel, int32_t direct)
    void mdfi_conv_q8_tune(int32_t profile)
    int32_t mdfi_conv_q8_choice(int32_t path, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks,
                                int32_t stride, int32_t pad, int32_t nthreads)
    int32_t mdfi_conv_q8_tiles(int32_t path, int32_t *tiles, int32_t max)
    void mdfi_conv_set_winograd(int32_t enable)
    void mdfi_conv_set_split(int32_t mode)
    int64_t mdfi_conv_split_calls()
    int64_t mdfi_conv_q8_split_calls()
    const char *mdfi_conv_strerror(int code)
    int mdfi_conv_pool_run(void (*job)(void *arg, int tid) noexcept nogil, void *arg, int nthreads)

cdef extern from "mdfi_fixedpoint.h" nogil:
    enum:
        MDFI_ROUND_HALF_UP
        MDFI_ROUND_TRUNCATE
        MDFI_ACT_LINEAR
        MDFI_ACT_LEAKY
        MDFI_ACT_RELU
        MDFI_MIN_SHIFT
        MDFI_MAX_SHIFT

cdef extern from "mdfi_cpu.h" nogil:
    const char *mdfi_cpu_describe()
    int mdfi_cpu_is_intel()
    int64_t mdfi_cpu_l2_bytes()
