/* mdfi_kernels.c -- see mdfi_kernels.h: requantize, the work splitting, route alignment,
 * reorg, head tables, lookup tables, softmax.  The max pool and upsample are in
 * mdfi_kernels_pool.c, the shortcut in mdfi_kernels_shortcut.c; shared helpers in
 * mdfi_kernels_impl.h.  Integer only; arithmetic via mdfi_fixedpoint.h. */
#include "mdfi_kernels_impl.h"

int mdfi_kernels_have_avx2(void)
{
#if MDFI_KERNELS_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

int mdfi_kernels_have_avx512bw(void)
{
#if MDFI_KERNELS_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
               ? 1
               : 0;
#else
    return 0;
#endif
}

size_t mdfi_type_size(int32_t type)
{
    switch (type) {
    case MDFI_U8: case MDFI_S8: return 1;
    case MDFI_S16: return 2;
    case MDFI_S32: return 4;
    default: return 0;
    }
}


#if MDFI_KERNELS_X86
/* The same loop through the AVX2 twin (four lanes, scalar tail). */
__attribute__((target("avx2")))
static void requantize_array_avx2(const int64_t *restrict acc, const int32_t *restrict shift,
                                  int64_t channels, int64_t plane, int32_t mode, int32_t bits,
                                  int32_t act, void *restrict out, int32_t out_type)
{
    for (int64_t ch = 0; ch < channels; ++ch) {
        mdfi_rq_avx2 q;
        mdfi_rq_init_avx2(&q, shift[ch], mode, bits, act);
        const int64_t *a = acc + ch * plane;
        int64_t i = 0;
        for (; i + 4 <= plane; i += 4) {
            int64_t r[4];
            _mm256_storeu_si256((__m256i *)r,
                                mdfi_requantize4_avx2(_mm256_loadu_si256((const __m256i *)(a + i)), &q, mode, act));
            for (int k = 0; k < 4; ++k) store(out, out_type, ch * plane + i + k, (int32_t)r[k]);
        }
        for (; i < plane; ++i)
            store(out, out_type, ch * plane + i, mdfi_requantize(a[i], shift[ch], mode, bits, act));
    }
}
#endif

#if MDFI_KERNELS_X86
/* simd == 2: channels whose shift is 1..31 through the int32-lane twin (eight lanes; every
 * accumulator must be an int32, checked by the caller), the others as above. */
__attribute__((target("avx2")))
static void requantize_array_i32_avx2(const int64_t *restrict acc, const int32_t *restrict shift,
                                      int64_t channels, int64_t plane, int32_t mode, int32_t bits,
                                      int32_t act, void *restrict out, int32_t out_type)
{
    for (int64_t ch = 0; ch < channels; ++ch) {
        if (!mdfi_rq32_ok(shift[ch])) {
            requantize_array_avx2(acc + ch * plane, shift + ch, 1, plane, mode, bits, act,
                                  (unsigned char *)out + ch * plane * (int64_t)mdfi_type_size(out_type),
                                  out_type);
            continue;
        }
        mdfi_rq32_avx2 q;
        mdfi_rq32_init_avx2(&q, shift[ch], mode, bits);
        const int64_t *a = acc + ch * plane;
        int64_t i = 0;
        for (; i + 8 <= plane; i += 8) {
            int32_t v[8];
            for (int k = 0; k < 8; ++k) v[k] = (int32_t)a[i + k];
            __m256i r = _mm256_loadu_si256((const __m256i *)v);
            switch (mode * 3 + act) {   /* constant mode/act per call, as in the kernels */
            case 0: r = mdfi_requantize8_i32_avx2(r, &q, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR); break;
            case 1: r = mdfi_requantize8_i32_avx2(r, &q, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY); break;
            case 2: r = mdfi_requantize8_i32_avx2(r, &q, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU); break;
            case 3: r = mdfi_requantize8_i32_avx2(r, &q, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR); break;
            case 4: r = mdfi_requantize8_i32_avx2(r, &q, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY); break;
            default: r = mdfi_requantize8_i32_avx2(r, &q, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU); break;
            }
            _mm256_storeu_si256((__m256i *)v, r);
            for (int k = 0; k < 8; ++k) store(out, out_type, ch * plane + i + k, v[k]);
        }
        for (; i < plane; ++i)
            store(out, out_type, ch * plane + i, mdfi_requantize(a[i], shift[ch], mode, bits, act));
    }
}
#endif

int mdfi_requantize_array(const int64_t *restrict acc, const int32_t *restrict shift,
                          int64_t channels, int64_t plane, int32_t mode, int32_t bits, int32_t act,
                          void *restrict out, int32_t out_type, int32_t simd)
{
    if (channels < 0 || plane < 0 || !fits(out_type, bits) || bits > 16 || !valid_mode_act(mode, act) ||
        simd < 0 || simd > 2)
        return -1;
    for (int64_t ch = 0; ch < channels; ++ch)
        if (shift[ch] < MDFI_MIN_SHIFT || shift[ch] > MDFI_MAX_SHIFT) return -2;
    if (simd == 2)
        for (int64_t i = 0; i < channels * plane; ++i)
            if (acc[i] < INT32_MIN || acc[i] > INT32_MAX) return -3;
#if MDFI_KERNELS_X86
    if (simd == 2 && mdfi_kernels_have_avx2()) {
        requantize_array_i32_avx2(acc, shift, channels, plane, mode, bits, act, out, out_type);
        return 0;
    }
    if (simd && mdfi_kernels_have_avx2()) {
        requantize_array_avx2(acc, shift, channels, plane, mode, bits, act, out, out_type);
        return 0;
    }
#endif
    for (int64_t ch = 0; ch < channels; ++ch) {
        const int32_t s = shift[ch];
        const int64_t *a = acc + ch * plane;
        for (int64_t i = 0; i < plane; ++i)
            store(out, out_type, ch * plane + i, mdfi_requantize(a[i], s, mode, bits, act));
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Work splitting: ranges of items on the threads of opts->pool (see mdfi_kopts)
 * ------------------------------------------------------------------------------------- */
#if !defined(MDFI_NO_THREADS) && !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#define MDFI_KATOMIC 1
typedef _Atomic int64_t kcounter;
#else
#define MDFI_KATOMIC 0
typedef int64_t kcounter;
#endif

typedef struct {
    range_fn fn;
    const void *ctx;
    int64_t n, chunk, nchunks;
    kcounter next;
    int ends;                     /* runs from both ends (mdfi_kpar_for_ends) */
} par_job;

#if MDFI_KATOMIC
/* Guided runs of at least j->chunk items from both ends of [0, n): the counter holds the items
 * taken from the front (low 32 bits) and from the back (high 32 bits); even tids take the front,
 * odd ones the back (the convolution pool's mdfi_pool_next_end, csrc/mdfi_conv_pool.c). */
static void par_worker_ends(par_job *j, int tid)
{
    const int back = tid & 1;
    int64_t v = atomic_load(&j->next);
    for (;;) {
        const int64_t lo = v & 0xffffffff, nb = (int64_t)((uint64_t)v >> 32), left = j->n - lo - nb;
        if (left <= 0) return;
        int64_t c = left / 4;
        if (c < j->chunk) c = j->chunk;
        if (c > left) c = left;
        const int64_t nv = back ? (int64_t)((uint64_t)(nb + c) << 32 | (uint64_t)lo)
                                : (int64_t)((uint64_t)nb << 32 | (uint64_t)(lo + c));
        if (atomic_compare_exchange_weak(&j->next, &v, nv)) {
            const int64_t i0 = back ? j->n - nb - c : lo;
            j->fn(j->ctx, i0, i0 + c);
            v = atomic_load(&j->next);
        }
    }
}
#endif

static void par_worker(void *arg, int tid)
{
    par_job *j = (par_job *)arg;
    (void)tid;
#if MDFI_KATOMIC
    if (j->ends) {
        par_worker_ends(j, tid);
        return;
    }
#endif
    for (;;) {
#if MDFI_KATOMIC
        const int64_t k = atomic_fetch_add(&j->next, 1);
#else
        const int64_t k = j->next++;
#endif
        if (k >= j->nchunks) break;
        const int64_t i0 = k * j->chunk;
        j->fn(j->ctx, i0, j->n - i0 < j->chunk ? j->n : i0 + j->chunk);
    }
}

const mdfi_kopts mdfi_kopts_default = MDFI_KOPTS_DEFAULT;

void mdfi_kpar_for(const mdfi_kopts *o, int64_t n, int64_t grain, range_fn fn, const void *ctx)
{
    const int64_t nt = o->nthreads;
    if (n <= 0) return;
    if (!MDFI_KATOMIC || o->pool == NULL || nt <= 1 || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    int64_t chunk = (n + 4 * nt - 1) / (4 * nt);
    if (chunk < grain) chunk = grain;
    par_job j = {fn, ctx, n, chunk, (n + chunk - 1) / chunk, 0, 0};
    o->pool(par_worker, &j, (int)nt);
}

void mdfi_kpar_for_ends(const mdfi_kopts *o, int64_t n, int64_t grain, range_fn fn, const void *ctx)
{
    const int64_t nt = o->nthreads;
    if (n <= 0) return;
    if (!MDFI_KATOMIC || o->pool == NULL || nt <= 1 || n <= grain || n >= ((int64_t)1 << 31)) {
        fn(ctx, 0, n);
        return;
    }
    par_job j = {fn, ctx, n, grain < 1 ? 1 : grain, 0, 0, 1};
    o->pool(par_worker, &j, (int)nt);
}

/* ---------------------------------------------------------------------------------------
 * Route alignment copy: ranges of elements
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    void *out;
    int32_t in_type, out_type, shift, mode, bits, simd;
    int32_t zi, zo;                   /* input / output zero points */
} align_ctx;

#if MDFI_KERNELS_X86
#define MDFI_ALIGN_AVX2(NAME, MODE)                                                          \
KAVX2 static void NAME(const align_ctx *a, int64_t i0, int64_t i1)                           \
{                                                                                            \
    mdfi_rq8_avx2 k;                                                                         \
    mdfi_rq8_init_avx2(&k, a->shift, MODE, a->bits, MDFI_ACT_LINEAR);                        \
    int64_t i = i0;                                                                          \
    if (a->zi == 0 && a->zo == 0) {                                                          \
        for (; i + 8 <= i1; i += 8)                                                          \
            st8(a->out, a->out_type, i, mdfi_requantize8_avx2(ld8(a->in, a->in_type, i), &k, MODE, MDFI_ACT_LINEAR)); \
    } else {                          /* sat(R((x - zi) / 2^s) + zo), x - zi exact in int32 */ \
        if (a->zo) mdfi_rq8_zp_avx2(&k, a->bits, a->zo);                                     \
        const __m256i zi = _mm256_set1_epi32(a->zi), zo = _mm256_set1_epi32(a->zo);          \
        for (; i + 8 <= i1; i += 8)                                                          \
            st8(a->out, a->out_type, i,                                                      \
                _mm256_add_epi32(mdfi_requantize8_avx2(_mm256_sub_epi32(ld8(a->in, a->in_type, i), zi), &k, MODE, \
                                                       MDFI_ACT_LINEAR), zo));               \
    }                                                                                        \
    for (; i < i1; ++i)                                                                      \
        store(a->out, a->out_type, i,                                                        \
              mdfi_requantize_zp(load(a->in, a->in_type, i) - a->zi, a->shift, MODE, a->bits, MDFI_ACT_LINEAR, \
                                 a->zo));                                                    \
}
MDFI_ALIGN_AVX2(align_avx2_half, MDFI_ROUND_HALF_UP)
MDFI_ALIGN_AVX2(align_avx2_trunc, MDFI_ROUND_TRUNCATE)
#endif

static void align_range(const void *vctx, int64_t i0, int64_t i1)
{
    const align_ctx *a = (const align_ctx *)vctx;
    if (a->shift == 0 && a->in_type == a->out_type && a->in_type != MDFI_U8 && a->zi == 0 && a->zo == 0) {
        const size_t es = mdfi_type_size(a->in_type);           /* same format: pure copy */
        memcpy((unsigned char *)a->out + (size_t)i0 * es, (const unsigned char *)a->in + (size_t)i0 * es,
               (size_t)(i1 - i0) * es);
        return;
    }
#if MDFI_KERNELS_X86
    if (a->simd) {
        (a->mode == MDFI_ROUND_HALF_UP ? align_avx2_half : align_avx2_trunc)(a, i0, i1);
        return;
    }
#endif
    for (int64_t i = i0; i < i1; ++i)
        store(a->out, a->out_type, i,
              mdfi_requantize_zp(load(a->in, a->in_type, i) - a->zi, a->shift, a->mode, a->bits, MDFI_ACT_LINEAR,
                                 a->zo));
}

int mdfi_align_copy_ex(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                       int32_t mode, int32_t bits, void *restrict out, int32_t out_type,
                       const mdfi_kopts *opts)
{
    return mdfi_align_copy_zp(in, in_type, n, shift, mode, bits, out, out_type, 0, 0, opts);
}

int mdfi_align_copy_zp(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                       int32_t mode, int32_t bits, void *restrict out, int32_t out_type,
                       int32_t zero_in, int32_t zero_out, const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 ||
        n < 0 || shift < 0 || shift > MDFI_MAX_SHIFT || !valid_mode_act(mode, MDFI_ACT_LINEAR) ||
        !valid_opts(opts))
        return -1;
    if (zero_in < -32768 || zero_in > 65535 || zero_out < mdfi_qmin(bits) || zero_out > mdfi_qmax(bits))
        return -4;
    const align_ctx a = {in, out, in_type, out_type, shift, mode, bits, use_avx2(opts), zero_in, zero_out};
    mdfi_kpar_for(opts, n, 32768, align_range, &a);
    return 0;
}

int mdfi_align_copy(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                    int32_t mode, int32_t bits, void *restrict out, int32_t out_type)
{
    return mdfi_align_copy_ex(in, in_type, n, shift, mode, bits, out, out_type, NULL);
}


int mdfi_reorg(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
               int32_t stride, void *restrict out)
{
    if (mdfi_type_size(type) == 0 || c < 1 || h < 1 || w < 1 || stride < 1 ||
        c % (stride * stride) != 0)
        return -1;
    /* Darknet reorg_cpu(x, w, h, c, batch, stride, forward=0, out): out[in_index] = x[out_index]. */
    const int32_t out_c = c / (stride * stride);
    for (int32_t k = 0; k < c; ++k) {
        const int32_t c2 = k % out_c, offset = k / out_c;
        for (int32_t j = 0; j < h; ++j)
            for (int32_t i = 0; i < w; ++i) {
                const int64_t in_index = i + (int64_t)w * (j + (int64_t)h * k);
                const int64_t w2 = (int64_t)i * stride + offset % stride;
                const int64_t h2 = (int64_t)j * stride + offset / stride;
                const int64_t out_index = w2 + (int64_t)w * stride * (h2 + (int64_t)h * stride * c2);
                store(out, type, in_index, (int32_t)load(in, type, out_index));
            }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Detection-head lookup: ranges of channels
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    int32_t *out;
    int32_t in_type, qmin, table_len;
    int64_t plane;
    const uint16_t *logistic;
    const int32_t *exp_tab;
    const uint8_t *sel;
} head_ctx;

#define MDFI_HEAD_PLANE(T, NAME)                                                             \
static void NAME(const T *restrict in, int64_t plane, int32_t qmin, int32_t table_len, int sel, \
                 const uint16_t *restrict logistic, const int32_t *restrict exp_tab,        \
                 int32_t *restrict out)                                                      \
{                                                                                            \
    for (int64_t p = 0; p < plane; ++p) {                                                    \
        int64_t idx = (int64_t)in[p] - qmin;                                                 \
        /* Valid inputs lie in the table's range (the producer saturates to its width);     \
         * the clamp only guarantees no out-of-bounds read for any input. */                \
        idx = idx < 0 ? 0 : (idx >= table_len ? table_len - 1 : idx);                        \
        out[p] = sel == 0 ? (int32_t)logistic[idx] : exp_tab[idx];                          \
    }                                                                                        \
}
MDFI_HEAD_PLANE(uint8_t, head_u8)
MDFI_HEAD_PLANE(int8_t, head_s8)
MDFI_HEAD_PLANE(int16_t, head_s16)

static void head_range(const void *vctx, int64_t c0, int64_t c1)
{
    const head_ctx *h = (const head_ctx *)vctx;
    if (h->in_type == MDFI_U8 || h->in_type == MDFI_S8) {
        /* 8-bit inputs: both tables re-indexed by the input byte once (the offset and the
         * clamp of head_u8 / head_s8 folded in), then one table load per element */
        int32_t t[2][256];
        for (int32_t v = 0; v < 256; ++v) {
            const int32_t x = h->in_type == MDFI_U8 || v < 128 ? v : v - 256;
            int64_t idx = (int64_t)x - h->qmin;
            idx = idx < 0 ? 0 : (idx >= h->table_len ? h->table_len - 1 : idx);
            t[0][v] = (int32_t)h->logistic[idx];
            t[1][v] = h->exp_tab[idx];
        }
        for (int64_t ch = c0; ch < c1; ++ch) {
            const int sel = h->sel[ch];
            if (sel == 2) continue;
            const uint8_t *restrict in = (const uint8_t *)h->in + (size_t)(ch * h->plane);
            int32_t *restrict out = h->out + ch * h->plane;
            const int32_t *restrict tt = t[sel];
            for (int64_t p = 0; p < h->plane; ++p) out[p] = tt[in[p]];
        }
        return;
    }
    const size_t es = mdfi_type_size(h->in_type);
    for (int64_t ch = c0; ch < c1; ++ch) {
        const int sel = h->sel[ch];
        if (sel == 2) continue;
        const void *in = (const unsigned char *)h->in + (size_t)(ch * h->plane) * es;
        int32_t *out = h->out + ch * h->plane;
        switch (h->in_type) {
        case MDFI_U8: head_u8(in, h->plane, h->qmin, h->table_len, sel, h->logistic, h->exp_tab, out); break;
        case MDFI_S8: head_s8(in, h->plane, h->qmin, h->table_len, sel, h->logistic, h->exp_tab, out); break;
        default: head_s16(in, h->plane, h->qmin, h->table_len, sel, h->logistic, h->exp_tab, out); break;
        }
    }
}

int mdfi_head_lookup_ex(const void *restrict in, int32_t in_type, int32_t c, int64_t plane,
                        int32_t qmin, const uint16_t *restrict logistic,
                        const int32_t *restrict exp_tab, int32_t table_len,
                        const uint8_t *restrict table_sel, int32_t *restrict out,
                        const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || c < 0 || plane < 0 || table_len < 1 ||
        !valid_opts(opts))
        return -1;
    const head_ctx h = {in, out, in_type, qmin, table_len, plane, logistic, exp_tab, table_sel};
    mdfi_kpar_for(opts, c, 1 + 8192 / (plane > 0 ? plane : 1), head_range, &h);
    return 0;
}

int mdfi_head_lookup(const void *restrict in, int32_t in_type, int32_t c, int64_t plane,
                     int32_t qmin, const uint16_t *restrict logistic, const int32_t *restrict exp_tab,
                     int32_t table_len, const uint8_t *restrict table_sel, int32_t *restrict out)
{
    return mdfi_head_lookup_ex(in, in_type, c, plane, qmin, logistic, exp_tab, table_len, table_sel, out,
                               NULL);
}

/* ---------------------------------------------------------------------------------------
 * Table lookup: ranges of elements
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    void *out;
    const int32_t *table;
    int32_t in_type, out_type, qmin, len;
} lut_ctx;

#define MDFI_LUT_RANGE(TI, TO, NAME)                                                         \
static void NAME(const TI *restrict in, TO *restrict out, int64_t i0, int64_t i1, int32_t qmin, \
                 const int32_t *restrict table, int32_t len)                                 \
{                                                                                            \
    for (int64_t i = i0; i < i1; ++i) {                                                      \
        int32_t idx = (int32_t)in[i] - qmin;                                                 \
        idx = idx < 0 ? 0 : (idx >= len ? len - 1 : idx);                                   \
        out[i] = (TO)table[idx];                                                             \
    }                                                                                        \
}
MDFI_LUT_RANGE(uint8_t, int8_t, lut_u8_s8)
MDFI_LUT_RANGE(uint8_t, int16_t, lut_u8_s16)
MDFI_LUT_RANGE(uint8_t, int32_t, lut_u8_s32)
MDFI_LUT_RANGE(int8_t, int8_t, lut_s8_s8)
MDFI_LUT_RANGE(int8_t, int16_t, lut_s8_s16)
MDFI_LUT_RANGE(int8_t, int32_t, lut_s8_s32)
MDFI_LUT_RANGE(int16_t, int8_t, lut_s16_s8)
MDFI_LUT_RANGE(int16_t, int16_t, lut_s16_s16)
MDFI_LUT_RANGE(int16_t, int32_t, lut_s16_s32)

static void lut_range(const void *vctx, int64_t i0, int64_t i1)
{
    const lut_ctx *k = (const lut_ctx *)vctx;
    typedef void (*fn)(const void *, void *, int64_t, int64_t, int32_t, const int32_t *, int32_t);
    static const fn f[3][3] = {
        {(fn)lut_u8_s8, (fn)lut_u8_s16, (fn)lut_u8_s32},
        {(fn)lut_s8_s8, (fn)lut_s8_s16, (fn)lut_s8_s32},
        {(fn)lut_s16_s8, (fn)lut_s16_s16, (fn)lut_s16_s32}};
    f[k->in_type][k->out_type - MDFI_S8](k->in, k->out, i0, i1, k->qmin, k->table, k->len);
}

int mdfi_lut_ex(const void *restrict in, int32_t in_type, int64_t n, int32_t qmin,
                const int32_t *restrict table, int32_t table_len, void *restrict out, int32_t out_type,
                const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || mdfi_type_size(out_type) == 0 ||
        out_type == MDFI_U8 || n < 0 || table_len < 1 || !valid_opts(opts))
        return -1;
    const int64_t lo = out_type == MDFI_S8 ? INT8_MIN : (out_type == MDFI_S16 ? INT16_MIN : INT32_MIN);
    const int64_t hi = out_type == MDFI_S8 ? INT8_MAX : (out_type == MDFI_S16 ? INT16_MAX : INT32_MAX);
    for (int32_t i = 0; i < table_len; ++i)
        if (table[i] < lo || table[i] > hi) return -2;
    const lut_ctx k = {in, out, table, in_type, out_type, qmin, table_len};
    mdfi_kpar_for(opts, n, 32768, lut_range, &k);
    return 0;
}

int mdfi_lut(const void *restrict in, int32_t in_type, int64_t n, int32_t qmin,
             const int32_t *restrict table, int32_t table_len, void *restrict out, int32_t out_type)
{
    return mdfi_lut_ex(in, in_type, n, qmin, table, table_len, out, out_type, NULL);
}

int mdfi_softmax_int(const void *restrict in, int32_t in_type, int32_t n, int32_t stride_anchor,
                     int32_t first, int32_t classes, int64_t plane,
                     const int32_t *restrict expneg, int32_t table_len, int32_t *restrict out)
{
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || n < 0 || classes < 1 || plane < 0 ||
        first < 0 || first + classes > stride_anchor || table_len < 1)
        return -1;
    for (int32_t a = 0; a < n; ++a) {
        const int64_t base = ((int64_t)a * stride_anchor + first) * plane;
        for (int64_t p = 0; p < plane; ++p) {
            int64_t mx = load(in, in_type, base + p);
            for (int32_t k = 1; k < classes; ++k) {
                const int64_t v = load(in, in_type, base + (int64_t)k * plane + p);
                mx = v > mx ? v : mx;
            }
            int64_t total = 0;
            for (int32_t k = 0; k < classes; ++k) {
                int64_t d = mx - load(in, in_type, base + (int64_t)k * plane + p);
                d = d >= table_len ? table_len - 1 : d;       /* see mdfi_head_lookup */
                total += expneg[d];
            }
            if (total <= 0) total = 1;     /* only a corrupt table (expneg[0] must be 2^16) */
            for (int32_t k = 0; k < classes; ++k) {
                int64_t d = mx - load(in, in_type, base + (int64_t)k * plane + p);
                d = d >= table_len ? table_len - 1 : d;
                const int64_t e = expneg[d];
                /* round_half_up(e * 2^15 / total), all terms non-negative (docs section 7) */
                out[base + (int64_t)k * plane + p] =
                    (int32_t)((e * ((int64_t)1 << (MDFI_PROB_FRAC + 1)) + total) / (2 * total));
            }
        }
    }
    return 0;
}
