/* mdfi_conv_post.c -- the fused shortcut of mdfi_conv2d_res (mdfi_conv.h) as a pass over a
 * finished convolution output, for the paths whose kernels do not apply it in their epilogue
 * (and for shortcut formats their epilogue does not take).
 *
 *     res_out[i] = mdfi_requantize(a[i] * 2^da + b[i] * 2^db, shift, rounding, bits, act)
 *
 * Portable C (exact int64, mdfi_conv_res_value), and an AVX2 twin for 8-bit a and b, whose
 * aligned sums (|.| <= 2 * 128 * 2^16 = 2^24) are exact int32 lanes requantized by
 * mdfi_requantize8_avx2 (mdfi_fixedpoint_avx2.h: every shift, tested equal to the scalar
 * function) -- the arithmetic of the separate shortcut kernel (mdfi_kernels_shortcut.c).  Threads split
 * the elements (every element computed by one thread).  Also the entry point
 * mdfi_conv2d_res and the check of its shortcut arguments.
 */
#include "mdfi_conv_internal.h"
#include "mdfi_cpu.h"
#include "mdfi_fixedpoint.h"

#include <string.h>

#define ITEM 32768                    /* elements per work item */

typedef struct {
    const mdfi_conv_residual *res;
    const void *a;
    int a_type;
    int64_t n;
    int simd;
    mdfi_counter item;
} post_job;

static int32_t ld(const void *p, int t, int64_t i)
{
    return t == MDFI_CONV_S8 ? ((const int8_t *)p)[i] : ((const int16_t *)p)[i];
}

static void post_scalar(const post_job *j, int64_t i0, int64_t i1)
{
    const mdfi_conv_residual *r = j->res;
    for (int64_t i = i0; i < i1; ++i) {
        const int32_t y = mdfi_conv_res_value(r, ld(j->a, j->a_type, i), ld(r->b, r->b_type, i));
        if (r->out_type == MDFI_CONV_S8) ((int8_t *)r->out)[i] = (int8_t)y;
        else ((int16_t *)r->out)[i] = (int16_t)y;
    }
}

#if MDFI_CONV_X86
#include <immintrin.h>

#include "mdfi_fixedpoint_avx2.h"

#define AVX2 __attribute__((target("avx2,fma")))

#define POST_AVX2(NAME, MODE, ACT)                                                             \
AVX2 static void NAME(const post_job *j, int64_t i0, int64_t i1)                              \
{                                                                                              \
    const mdfi_conv_residual *r = j->res;                                                      \
    mdfi_rq8_avx2 q;                                                                           \
    mdfi_rq8_init_avx2(&q, r->shift, MODE, r->bits, ACT);                                      \
    const __m128i da = _mm_cvtsi32_si128(r->da), db = _mm_cvtsi32_si128(r->db);                \
    const int8_t *a = (const int8_t *)j->a, *b = (const int8_t *)r->b;                        \
    int64_t i = i0;                                                                            \
    for (; i + 8 <= i1; i += 8) {                                                              \
        const __m256i va = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(a + i))); \
        const __m256i vb = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(b + i))); \
        const __m256i y = mdfi_requantize8_avx2(_mm256_add_epi32(_mm256_sll_epi32(va, da), _mm256_sll_epi32(vb, db)), \
                                                &q, MODE, ACT);                                \
        const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1)); \
        if (r->out_type == MDFI_CONV_S8) _mm_storel_epi64((__m128i *)(void *)((int8_t *)r->out + i), _mm_packs_epi16(w, w)); \
        else _mm_storeu_si128((__m128i *)(void *)((int16_t *)r->out + i), w);                  \
    }                                                                                          \
    post_scalar(j, i, i1);                                                                     \
}
POST_AVX2(post_avx2_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
POST_AVX2(post_avx2_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
POST_AVX2(post_avx2_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
POST_AVX2(post_avx2_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
POST_AVX2(post_avx2_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
POST_AVX2(post_avx2_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)
#endif

static void post_worker(void *arg, int tid)
{
    (void)tid;
    post_job *j = (post_job *)arg;
    const int64_t items = (j->n + ITEM - 1) / ITEM;
    for (int64_t k; (k = mdfi_pool_next(&j->item)) < items;) {
        const int64_t i0 = k * ITEM, i1 = i0 + ITEM < j->n ? i0 + ITEM : j->n;
#if MDFI_CONV_X86
        if (j->simd) {
            typedef void (*fn)(const post_job *, int64_t, int64_t);
            static const fn f[6] = {post_avx2_0, post_avx2_1, post_avx2_2, post_avx2_3, post_avx2_4, post_avx2_5};
            f[j->res->rounding * 3 + j->res->act](j, i0, i1);
            continue;
        }
#endif
        post_scalar(j, i0, i1);
    }
}

void mdfi_conv_residual_pass(const mdfi_conv_residual *res, const void *a, int a_type, int64_t n, int simd,
                             int32_t nthreads)
{
    post_job j;
    memset(&j, 0, sizeof j);
    j.res = res;
    j.a = a;
    j.a_type = a_type;
    j.n = n;
#if MDFI_CONV_X86
    j.simd = simd && a_type == MDFI_CONV_S8 && res->b_type == MDFI_CONV_S8 && (mdfi_cpu_features() & MDFI_CPU_AVX2) != 0;
#else
    (void)simd;
#endif
    const int64_t items = (n + ITEM - 1) / ITEM;
    mdfi_pool_run(post_worker, &j, items < nthreads ? (int)(items > 0 ? items : 1) : nthreads);
}

/* ---- the API (mdfi_conv.h) ------------------------------------------------------------ */
int mdfi_conv2d_res(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                    const void *packed, int64_t packed_size,
                    const int64_t *bias, const int32_t *shift, int32_t m,
                    void *out, int otype, int64_t out_count,
                    int32_t ks, int32_t stride, int32_t pad,
                    int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                    int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                    const mdfi_conv_residual *res)
{
    return mdfi_conv2d_on(x, xtype, c, h, w, x_count, packed, packed_size, bias, shift, m, out, otype, out_count,
                          ks, stride, pad, rounding, out_bits, act, acc64, nthreads,
                          mdfi_conv_effective_path(path), scratch, scratch_size, res, 0, 0);
}

int mdfi_conv_check_residual(const mdfi_conv_residual *r)
{
    if (r->b == NULL || r->out == NULL) return MDFI_CONV_E_DIM;
    if ((r->b_type != MDFI_CONV_S8 && r->b_type != MDFI_CONV_S16) ||
        (r->out_type != MDFI_CONV_S8 && r->out_type != MDFI_CONV_S16) ||
        (r->rounding != MDFI_ROUND_HALF_UP && r->rounding != MDFI_ROUND_TRUNCATE) ||
        (r->act != MDFI_ACT_LINEAR && r->act != MDFI_ACT_LEAKY && r->act != MDFI_ACT_RELU))
        return MDFI_CONV_E_CODE;
    if (r->bits < 2 || r->bits > 16 || (r->out_type == MDFI_CONV_S8 && r->bits > 8)) return MDFI_CONV_E_BITS;
    if (r->shift < MDFI_MIN_SHIFT || r->shift > MDFI_MAX_SHIFT) return MDFI_CONV_E_SHIFT;
    if (r->da < 0 || r->da > 16 || r->db < 0 || r->db > 16) return MDFI_CONV_E_RANGE;
    return MDFI_CONV_OK;
}
