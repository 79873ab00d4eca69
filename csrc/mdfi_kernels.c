/* mdfi_kernels.c -- see mdfi_kernels.h.  Integer only; arithmetic via mdfi_fixedpoint.h. */
#include "mdfi_kernels.h"

#include <string.h>

#include "mdfi_fixedpoint.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define MDFI_KERNELS_X86 1
#include "mdfi_fixedpoint_avx2.h"
#include "mdfi_fixedpoint_avx512.h"
#else
#define MDFI_KERNELS_X86 0
#endif

int mdfi_kernels_have_avx2(void)
{
#if MDFI_KERNELS_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

/* AVX-512 F/BW/VL/DQ (the shortcut's 16-lane body with simd == 2). */
static int have_avx512bw(void)
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

/* Element access by type code.  The switch is loop-invariant; compilers unswitch it. */
static inline int64_t load(const void *p, int32_t type, int64_t i)
{
    switch (type) {
    case MDFI_U8: return ((const uint8_t *)p)[i];
    case MDFI_S8: return ((const int8_t *)p)[i];
    case MDFI_S16: return ((const int16_t *)p)[i];
    default: return ((const int32_t *)p)[i];
    }
}

/* Store a value already saturated to the output width (so the narrowing is exact). */
static inline void store(void *p, int32_t type, int64_t i, int32_t v)
{
    switch (type) {
    case MDFI_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case MDFI_S8: ((int8_t *)p)[i] = (int8_t)v; break;
    case MDFI_S16: ((int16_t *)p)[i] = (int16_t)v; break;
    default: ((int32_t *)p)[i] = v; break;
    }
}

/* Can a signed `bits`-wide value be stored in `type`? */
static int fits(int32_t type, int32_t bits)
{
    if (bits < 2 || bits > 32) return 0;
    switch (type) {
    case MDFI_S8: return bits <= 8;
    case MDFI_S16: return bits <= 16;
    case MDFI_S32: return 1;
    default: return 0;
    }
}

static int valid_mode_act(int32_t mode, int32_t act)
{
    return (mode == MDFI_ROUND_HALF_UP || mode == MDFI_ROUND_TRUNCATE) &&
           (act == MDFI_ACT_LINEAR || act == MDFI_ACT_LEAKY || act == MDFI_ACT_RELU);
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

/* Typed max pool of one channel.  Border windows clip to the image (Darknet ignores taps
 * outside it); the 2x2 stride-2 interior -- most of YOLO's pooling work -- takes a
 * branch-free path the compiler vectorizes (as does 2x2 stride 1, YOLOv3-tiny's 13x13 pool). */
/* 2x2 stride-2 windows of two 8-bit rows (r1 = r0: one row), outputs [0, n) with n <= w/2,
 * 64 per step (AVX-512BW; the last step with masked loads and stores): the vertical max of
 * 128 bytes of each row, then of each byte pair as 16-bit lanes (even bytes: the low one
 * sign- or zero-extended, odd: the high one), packed back (the values fit, nothing
 * saturates) and put back in order.  Reads only bytes < 2n of each row. */
#if MDFI_KERNELS_X86
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void maxpool2_row8_avx512(const void *r0v, const void *r1v, void *ov, int32_t n, int is_signed)
{
    const uint8_t *r0 = (const uint8_t *)r0v, *r1 = (const uint8_t *)r1v;
    uint8_t *o = (uint8_t *)ov;
    const __m512i perm = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), lo8 = _mm512_set1_epi16(0x00ff);
    for (int32_t j = 0; j < n; j += 64) {
        const int32_t cnt = n - j >= 64 ? 64 : n - j, nb = 2 * cnt;
        const __mmask64 k0 = nb >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << nb) - 1);
        const __mmask64 k1 = nb >= 128 ? ~(__mmask64)0 : nb > 64 ? (((__mmask64)1 << (nb - 64)) - 1) : 0;
        const __m512i a0 = _mm512_maskz_loadu_epi8(k0, (const void *)(r0 + 2 * j));
        const __m512i a1 = _mm512_maskz_loadu_epi8(k1, (const void *)(r0 + 2 * j + 64));
        const __m512i b0 = _mm512_maskz_loadu_epi8(k0, (const void *)(r1 + 2 * j));
        const __m512i b1 = _mm512_maskz_loadu_epi8(k1, (const void *)(r1 + 2 * j + 64));
        __m512i p;
        if (is_signed) {
            const __m512i m0 = _mm512_max_epi8(a0, b0), m1 = _mm512_max_epi8(a1, b1);
            const __m512i q0 = _mm512_max_epi16(_mm512_srai_epi16(_mm512_slli_epi16(m0, 8), 8), _mm512_srai_epi16(m0, 8));
            const __m512i q1 = _mm512_max_epi16(_mm512_srai_epi16(_mm512_slli_epi16(m1, 8), 8), _mm512_srai_epi16(m1, 8));
            p = _mm512_packs_epi16(q0, q1);
        } else {
            const __m512i m0 = _mm512_max_epu8(a0, b0), m1 = _mm512_max_epu8(a1, b1);
            const __m512i q0 = _mm512_max_epu16(_mm512_and_si512(m0, lo8), _mm512_srli_epi16(m0, 8));
            const __m512i q1 = _mm512_max_epu16(_mm512_and_si512(m1, lo8), _mm512_srli_epi16(m1, 8));
            p = _mm512_packus_epi16(q0, q1);
        }
        const __mmask64 ks = cnt >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << cnt) - 1);
        _mm512_mask_storeu_epi8((void *)(o + j), ks, _mm512_permutexvar_epi64(perm, p));
    }
}

/* The AVX2 twin (simd 1): 32 outputs per step from 64 bytes of each row, the same vertical
 * then pairwise maximum, packed back and put in order (vpermq); a last partial step is
 * redone as the 32 outputs ending at n (overlapping outputs get the same values again).
 * Rows of fewer than 32 outputs: returns 0 and the caller does the row in C.  Reads only
 * bytes < 2n. */
__attribute__((target("avx2")))
static inline void maxpool2_step8_avx2(const uint8_t *r0, const uint8_t *r1, uint8_t *o, int is_signed)
{
    const __m256i a0 = _mm256_loadu_si256((const __m256i *)(const void *)r0);
    const __m256i a1 = _mm256_loadu_si256((const __m256i *)(const void *)(r0 + 32));
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)r1);
    const __m256i b1 = _mm256_loadu_si256((const __m256i *)(const void *)(r1 + 32));
    __m256i p;
    if (is_signed) {
        const __m256i m0 = _mm256_max_epi8(a0, b0), m1 = _mm256_max_epi8(a1, b1);
        const __m256i q0 = _mm256_max_epi16(_mm256_srai_epi16(_mm256_slli_epi16(m0, 8), 8), _mm256_srai_epi16(m0, 8));
        const __m256i q1 = _mm256_max_epi16(_mm256_srai_epi16(_mm256_slli_epi16(m1, 8), 8), _mm256_srai_epi16(m1, 8));
        p = _mm256_packs_epi16(q0, q1);
    } else {
        const __m256i lo8 = _mm256_set1_epi16(0x00ff);
        const __m256i m0 = _mm256_max_epu8(a0, b0), m1 = _mm256_max_epu8(a1, b1);
        const __m256i q0 = _mm256_max_epu16(_mm256_and_si256(m0, lo8), _mm256_srli_epi16(m0, 8));
        const __m256i q1 = _mm256_max_epu16(_mm256_and_si256(m1, lo8), _mm256_srli_epi16(m1, 8));
        p = _mm256_packus_epi16(q0, q1);
    }
    _mm256_storeu_si256((__m256i *)(void *)o, _mm256_permute4x64_epi64(p, 0xD8));
}

__attribute__((target("avx2")))
static int32_t maxpool2_row8_avx2(const void *r0v, const void *r1v, void *ov, int32_t n, int is_signed)
{
    const uint8_t *r0 = (const uint8_t *)r0v, *r1 = (const uint8_t *)r1v;
    uint8_t *o = (uint8_t *)ov;
    if (n < 32) return 0;
    int32_t j = 0;
    for (; j + 32 <= n; j += 32) maxpool2_step8_avx2(r0 + 2 * j, r1 + 2 * j, o + j, is_signed);
    if (j < n) maxpool2_step8_avx2(r0 + 2 * (n - 32), r1 + 2 * (n - 32), o + n - 32, is_signed);
    return n;
}
#endif

/* dst = the maximum of the window rows ya..yb-1, columns xa..xb-1 of a plane of width w
 * (a non-empty window; the portable pools and the AVX-512 pool's right edge). */
#define MDFI_WINDOW_MAX(T, in, w, ya, yb, xa, xb, dst)                                       \
    do {                                                                                     \
        T best_ = (in)[(int64_t)(ya) * (w) + (xa)];                                          \
        for (int32_t y_ = (ya); y_ < (yb); ++y_)                                             \
            for (int32_t x_ = (xa); x_ < (xb); ++x_) {                                       \
                const T v_ = (in)[(int64_t)y_ * (w) + x_];                                   \
                best_ = v_ > best_ ? v_ : best_;                                             \
            }                                                                                \
        (dst) = best_;                                                                       \
    } while (0)

#if MDFI_KERNELS_X86
/* A 2x2 stride-2 pool (no offset) of one 8-bit plane with the AVX-512BW rows: every output
 * row takes maxpool2_row8_avx512 for its whole windows (a last single input row as both rows),
 * a last window cut by the right edge (odd W with padding) the window maximum in C. */
#define MDFI_MAXPOOL2_PLANE8(T, NAME, SIGNED)                                                 \
static void NAME(const T *restrict in, int32_t h, int32_t w, T *restrict out, int32_t oh, int32_t ow) \
{                                                                                            \
    for (int32_t i = 0; i < oh; ++i) {                                                       \
        const int32_t ya = 2 * i, yb = ya + 2 > h ? h : ya + 2;                              \
        T *restrict orow = out + (int64_t)i * ow;                                            \
        const int32_t full = w / 2 < ow ? w / 2 : ow;                                        \
        maxpool2_row8_avx512(in + (int64_t)ya * w, in + (int64_t)(yb - 1) * w, orow, full, SIGNED); \
        for (int32_t j = full; j < ow; ++j) {                                                \
            const int32_t xa = 2 * j, xb = xa + 2 > w ? w : xa + 2;                          \
            MDFI_WINDOW_MAX(T, in, w, ya, yb, xa, xb, orow[j]);                              \
        }                                                                                    \
    }                                                                                        \
}
MDFI_MAXPOOL2_PLANE8(uint8_t, maxpool2_u8_avx512, 0)
MDFI_MAXPOOL2_PLANE8(int8_t, maxpool2_s8_avx512, 1)

/* The same with the AVX2 rows (simd 1): 32 outputs per step, the rest of each row in C (full
 * windows pairwise as in MDFI_MAXPOOL_PLANE, r1 = r0 for a last single row; a cut last window). */
#define MDFI_MAXPOOL2_PLANE8_AVX2(T, NAME, SIGNED)                                            \
static void NAME(const T *restrict in, int32_t h, int32_t w, T *restrict out, int32_t oh, int32_t ow) \
{                                                                                            \
    for (int32_t i = 0; i < oh; ++i) {                                                       \
        const int32_t ya = 2 * i, yb = ya + 2 > h ? h : ya + 2;                              \
        T *restrict orow = out + (int64_t)i * ow;                                            \
        const int32_t full = w / 2 < ow ? w / 2 : ow;                                        \
        const T *restrict r0 = in + (int64_t)ya * w, *restrict r1 = in + (int64_t)(yb - 1) * w; \
        int32_t j = maxpool2_row8_avx2(r0, r1, orow, full, SIGNED);                          \
        for (; j < full; ++j) {                                                              \
            const T a = r0[2 * j] > r0[2 * j + 1] ? r0[2 * j] : r0[2 * j + 1];               \
            const T b = r1[2 * j] > r1[2 * j + 1] ? r1[2 * j] : r1[2 * j + 1];               \
            orow[j] = a > b ? a : b;                                                         \
        }                                                                                    \
        for (; j < ow; ++j) {                                                                \
            const int32_t xa = 2 * j, xb = xa + 2 > w ? w : xa + 2;                          \
            MDFI_WINDOW_MAX(T, in, w, ya, yb, xa, xb, orow[j]);                              \
        }                                                                                    \
    }                                                                                        \
}
MDFI_MAXPOOL2_PLANE8_AVX2(uint8_t, maxpool2_u8_avx2, 0)
MDFI_MAXPOOL2_PLANE8_AVX2(int8_t, maxpool2_s8_avx2, 1)
#endif

#define MDFI_MAXPOOL_PLANE(T, NAME)                                                          \
static void NAME(const T *restrict in, int32_t h, int32_t w, int32_t size, int32_t stride,   \
                 int32_t off, T *restrict out, int32_t oh, int32_t ow)                       \
{                                                                                            \
    for (int32_t i = 0; i < oh; ++i) {                                                       \
        const int32_t y0 = off + i * stride;                                                 \
        const int32_t ya = y0 < 0 ? 0 : y0;                                                  \
        const int32_t yb = (y0 + size > h) ? h : y0 + size;                                  \
        T *restrict orow = out + (int64_t)i * ow;                                            \
        int32_t j = 0;                                                                       \
        if (size == 2 && stride == 2 && off == 0 && yb - ya == 2) {                         \
            const T *restrict r0 = in + (int64_t)ya * w, *restrict r1 = r0 + w;             \
            const int32_t full = w / 2 < ow ? w / 2 : ow;                                    \
            for (; j < full; ++j) {                                                          \
                const T a = r0[2 * j] > r0[2 * j + 1] ? r0[2 * j] : r0[2 * j + 1];           \
                const T b = r1[2 * j] > r1[2 * j + 1] ? r1[2 * j] : r1[2 * j + 1];           \
                orow[j] = a > b ? a : b;                                                     \
            }                                                                                \
        } else if (size == 2 && stride == 1 && off == 0 && yb - ya == 2) {                  \
            const T *restrict r0 = in + (int64_t)ya * w, *restrict r1 = r0 + w;             \
            const int32_t full = w - 1 < ow ? w - 1 : ow;                                    \
            for (; j < full; ++j) {                                                          \
                const T a = r0[j] > r0[j + 1] ? r0[j] : r0[j + 1];                           \
                const T b = r1[j] > r1[j + 1] ? r1[j] : r1[j + 1];                           \
                orow[j] = a > b ? a : b;                                                     \
            }                                                                                \
        }                                                                                    \
        for (; j < ow; ++j) {                                                                \
            const int32_t x0 = off + j * stride;                                             \
            const int32_t xa = x0 < 0 ? 0 : x0;                                              \
            const int32_t xb = (x0 + size > w) ? w : x0 + size;                              \
            if (ya >= yb || xa >= xb) { orow[j] = 0; continue; } /* excluded by the checks */ \
            MDFI_WINDOW_MAX(T, in, w, ya, yb, xa, xb, orow[j]);                              \
        }                                                                                    \
    }                                                                                        \
}
MDFI_MAXPOOL_PLANE(uint8_t, maxpool_u8)
MDFI_MAXPOOL_PLANE(int8_t, maxpool_s8)
MDFI_MAXPOOL_PLANE(int16_t, maxpool_s16)

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

typedef void (*range_fn)(const void *ctx, int64_t i0, int64_t i1);

typedef struct {
    range_fn fn;
    const void *ctx;
    int64_t n, chunk, nchunks;
    kcounter next;
} par_job;

static void par_worker(void *arg, int tid)
{
    par_job *j = (par_job *)arg;
    (void)tid;
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

static const mdfi_kopts kopts_default = MDFI_KOPTS_DEFAULT;

/* fn(ctx, i0, i1) over the items [0, n), in ranges of at least `grain` items, on up to
 * opts->nthreads threads (about four ranges per thread, handed out dynamically). */
static void par_for(const mdfi_kopts *o, int64_t n, int64_t grain, range_fn fn, const void *ctx)
{
    const int64_t nt = o->nthreads;
    if (n <= 0) return;
    if (!MDFI_KATOMIC || o->pool == NULL || nt <= 1 || n <= grain) {
        fn(ctx, 0, n);
        return;
    }
    int64_t chunk = (n + 4 * nt - 1) / (4 * nt);
    if (chunk < grain) chunk = grain;
    par_job j = {fn, ctx, n, chunk, (n + chunk - 1) / chunk, 0};
    o->pool(par_worker, &j, (int)nt);
}

static int use_avx2(const mdfi_kopts *o)
{
#if MDFI_KERNELS_X86
    return o->simd != 0 && mdfi_kernels_have_avx2();
#else
    (void)o;
    return 0;
#endif
}

static int valid_opts(const mdfi_kopts *o)
{
    return o->nthreads >= 1 && o->simd >= 0 && o->simd <= 2;
}

/* ---------------------------------------------------------------------------------------
 * AVX2 helpers: eight elements as int32 lanes, and requantizing them through the twin
 * ------------------------------------------------------------------------------------- */
#if MDFI_KERNELS_X86
#define KAVX2 __attribute__((target("avx2")))
#define KAVX2_INLINE static inline __attribute__((target("avx2"), always_inline))

/* Elements i..i+7 of an U8/S8/S16 buffer, widened exactly. */
KAVX2_INLINE __m256i ld8(const void *p, int32_t t, int64_t i)
{
    switch (t) {
    case MDFI_U8: return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((const uint8_t *)p + i)));
    case MDFI_S8: return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)((const int8_t *)p + i)));
    default: return _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)((const int16_t *)p + i)));
    }
}

/* Store eight int32 lanes whose values fit the S8/S16/S32 type (the packs never saturate). */
KAVX2_INLINE void st8(void *p, int32_t t, int64_t i, __m256i v)
{
    if (t == MDFI_S32) {
        _mm256_storeu_si256((__m256i *)((int32_t *)p + i), v);
        return;
    }
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    if (t == MDFI_S16) _mm_storeu_si128((__m128i *)((int16_t *)p + i), w16);
    else _mm_storel_epi64((__m128i *)((int8_t *)p + i), _mm_packs_epi16(w16, w16));
}

#endif

/* ---------------------------------------------------------------------------------------
 * Max pool: ranges of channels
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    void *out;
    int32_t type, h, w, size, stride, off, oh, ow;
    int simd;                     /* 2: the AVX-512BW 2x2 stride-2 rows of 8-bit types, 1: AVX2 */
} pool_ctx;

static void maxpool_range(const void *vctx, int64_t k0, int64_t k1)
{
    const pool_ctx *p = (const pool_ctx *)vctx;
    const int64_t in_plane = (int64_t)p->h * p->w, out_plane = (int64_t)p->oh * p->ow;
#if MDFI_KERNELS_X86
    if (p->simd == 2 && p->size == 2 && p->stride == 2 && p->off == 0 && p->type != MDFI_S16) {
        for (int64_t k = k0; k < k1; ++k) {
            if (p->type == MDFI_U8)
                maxpool2_u8_avx512((const uint8_t *)p->in + k * in_plane, p->h, p->w,
                                   (uint8_t *)p->out + k * out_plane, p->oh, p->ow);
            else
                maxpool2_s8_avx512((const int8_t *)p->in + k * in_plane, p->h, p->w,
                                   (int8_t *)p->out + k * out_plane, p->oh, p->ow);
        }
        return;
    }
    /* AVX2 rows when a row has at least 32 windows (shorter rows: the portable plane, which GCC
     * vectorizes; 16x416x416 0.106 -> 0.050 ms, 32x208x208 0.086 -> 0.031, 64x104x104 0.044 -> 0.022) */
    if (p->simd == 1 && p->size == 2 && p->stride == 2 && p->off == 0 && p->type != MDFI_S16 && p->w >= 64) {
        for (int64_t k = k0; k < k1; ++k) {
            if (p->type == MDFI_U8)
                maxpool2_u8_avx2((const uint8_t *)p->in + k * in_plane, p->h, p->w,
                                 (uint8_t *)p->out + k * out_plane, p->oh, p->ow);
            else
                maxpool2_s8_avx2((const int8_t *)p->in + k * in_plane, p->h, p->w,
                                 (int8_t *)p->out + k * out_plane, p->oh, p->ow);
        }
        return;
    }
#endif
    for (int64_t k = k0; k < k1; ++k) {
        switch (p->type) {
        case MDFI_U8:
            maxpool_u8((const uint8_t *)p->in + k * in_plane, p->h, p->w, p->size, p->stride, p->off,
                       (uint8_t *)p->out + k * out_plane, p->oh, p->ow);
            break;
        case MDFI_S8:
            maxpool_s8((const int8_t *)p->in + k * in_plane, p->h, p->w, p->size, p->stride, p->off,
                       (int8_t *)p->out + k * out_plane, p->oh, p->ow);
            break;
        default:
            maxpool_s16((const int16_t *)p->in + k * in_plane, p->h, p->w, p->size, p->stride, p->off,
                        (int16_t *)p->out + k * out_plane, p->oh, p->ow);
            break;
        }
    }
}

int mdfi_maxpool_ex(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                    int32_t size, int32_t stride, int32_t pad,
                    void *restrict out, int32_t oh, int32_t ow, const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &kopts_default;
    if (mdfi_type_size(type) == 0 || type == MDFI_S32 || c < 1 || h < 1 || w < 1 || size < 1 ||
        stride < 1 || pad < 0 || !valid_opts(opts))
        return -1;
    /* Darknet: out = (w + pad - size)/stride + 1; every window must hold a real tap. */
    if (oh != (h + pad - size) / stride + 1 || ow != (w + pad - size) / stride + 1 || oh < 1 || ow < 1 ||
        (pad + 1) / 2 > size - 1)
        return -2;
    /* C: -l.pad/2 truncates toward zero */
    const pool_ctx p = {in, out, type, h, w, size, stride, -(pad / 2), oh, ow,
                        opts->simd == 2 && have_avx512bw() ? 2 : use_avx2(opts) ? 1 : 0};
    const int64_t grain = 1 + 16384 / ((int64_t)h * w);          /* >= ~16K input elements */
    par_for(opts, c, grain, maxpool_range, &p);
    return 0;
}

int mdfi_maxpool(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                 int32_t size, int32_t stride, int32_t pad,
                 void *restrict out, int32_t oh, int32_t ow)
{
    return mdfi_maxpool_ex(in, type, c, h, w, size, stride, pad, out, oh, ow, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Upsample: ranges of input rows (channel * h + y); each becomes `stride` output rows
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    void *out;
    int32_t type, w, stride;
} up_ctx;

#define MDFI_UPSAMPLE_ROWS(T, NAME)                                                          \
static void NAME(const T *restrict in, T *restrict out, int64_t r0, int64_t r1, int32_t w,    \
                 int32_t stride)                                                             \
{                                                                                            \
    const int64_t ow = (int64_t)w * stride;                                                  \
    for (int64_t r = r0; r < r1; ++r) {                                                      \
        const T *restrict src = in + r * w;                                                  \
        T *restrict dst = out + r * stride * ow;                                             \
        if (stride == 2) {                                                                   \
            for (int32_t x = 0; x < w; ++x) { dst[2 * x] = src[x]; dst[2 * x + 1] = src[x]; } \
        } else {                                                                             \
            for (int64_t x = 0; x < ow; ++x) dst[x] = src[x / stride];                       \
        }                                                                                    \
        for (int32_t k = 1; k < stride; ++k) memcpy(dst + k * ow, dst, (size_t)ow * sizeof(T)); \
    }                                                                                        \
}
MDFI_UPSAMPLE_ROWS(uint8_t, upsample_u8)
MDFI_UPSAMPLE_ROWS(int8_t, upsample_s8)
MDFI_UPSAMPLE_ROWS(int16_t, upsample_s16)
MDFI_UPSAMPLE_ROWS(int32_t, upsample_s32)

static void upsample_range(const void *vctx, int64_t r0, int64_t r1)
{
    const up_ctx *u = (const up_ctx *)vctx;
    switch (u->type) {
    case MDFI_U8: upsample_u8(u->in, u->out, r0, r1, u->w, u->stride); break;
    case MDFI_S8: upsample_s8(u->in, u->out, r0, r1, u->w, u->stride); break;
    case MDFI_S16: upsample_s16(u->in, u->out, r0, r1, u->w, u->stride); break;
    default: upsample_s32(u->in, u->out, r0, r1, u->w, u->stride); break;
    }
}

int mdfi_upsample_ex(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                     int32_t stride, void *restrict out, const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &kopts_default;
    if (mdfi_type_size(type) == 0 || c < 1 || h < 1 || w < 1 || stride < 1 || !valid_opts(opts))
        return -1;
    const up_ctx u = {in, out, type, w, stride};
    par_for(opts, (int64_t)c * h, 1 + 8192 / ((int64_t)w * stride * stride), upsample_range, &u);
    return 0;
}

int mdfi_upsample(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                  int32_t stride, void *restrict out)
{
    return mdfi_upsample_ex(in, type, c, h, w, stride, out, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Route alignment copy: ranges of elements
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    void *out;
    int32_t in_type, out_type, shift, mode, bits, simd;
} align_ctx;

#if MDFI_KERNELS_X86
#define MDFI_ALIGN_AVX2(NAME, MODE)                                                          \
KAVX2 static void NAME(const align_ctx *a, int64_t i0, int64_t i1)                           \
{                                                                                            \
    mdfi_rq8_avx2 k;                                                                         \
    mdfi_rq8_init_avx2(&k, a->shift, MODE, a->bits, MDFI_ACT_LINEAR);                        \
    int64_t i = i0;                                                                          \
    for (; i + 8 <= i1; i += 8)                                                              \
        st8(a->out, a->out_type, i, mdfi_requantize8_avx2(ld8(a->in, a->in_type, i), &k, MODE, MDFI_ACT_LINEAR)); \
    for (; i < i1; ++i)                                                                      \
        store(a->out, a->out_type, i,                                                        \
              mdfi_requantize(load(a->in, a->in_type, i), a->shift, MODE, a->bits, MDFI_ACT_LINEAR)); \
}
MDFI_ALIGN_AVX2(align_avx2_half, MDFI_ROUND_HALF_UP)
MDFI_ALIGN_AVX2(align_avx2_trunc, MDFI_ROUND_TRUNCATE)
#endif

static void align_range(const void *vctx, int64_t i0, int64_t i1)
{
    const align_ctx *a = (const align_ctx *)vctx;
    if (a->shift == 0 && a->in_type == a->out_type && a->in_type != MDFI_U8) {
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
              mdfi_requantize(load(a->in, a->in_type, i), a->shift, a->mode, a->bits, MDFI_ACT_LINEAR));
}

int mdfi_align_copy_ex(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                       int32_t mode, int32_t bits, void *restrict out, int32_t out_type,
                       const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 ||
        n < 0 || shift < 0 || shift > MDFI_MAX_SHIFT || !valid_mode_act(mode, MDFI_ACT_LINEAR) ||
        !valid_opts(opts))
        return -1;
    const align_ctx a = {in, out, in_type, out_type, shift, mode, bits, use_avx2(opts)};
    par_for(opts, n, 32768, align_range, &a);
    return 0;
}

int mdfi_align_copy(const void *restrict in, int32_t in_type, int64_t n, int32_t shift,
                    int32_t mode, int32_t bits, void *restrict out, int32_t out_type)
{
    return mdfi_align_copy_ex(in, in_type, n, shift, mode, bits, out, out_type, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Shortcut: ranges of elements
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *a, *b;
    void *out;
    int32_t a_type, b_type, out_type, da, db, s, mode, bits, act;
    int64_t ma, mb;
    int32_t simd;                 /* 1: AVX2, the aligned sum provably fits int32; 2: AVX-512,
                                     int8 + int8 -> int8 and a shift of 1..31 as well; 3:
                                     AVX-512, int8 + int8 -> int8, not leaky, a shift <= 0 or
                                     a shift of 1 with da, db <= 1 */
} shortcut_ctx;

#if MDFI_KERNELS_X86
/* s = (a << da) + (b << db) on int32 lanes: exact, the caller checked that it fits. */
#define MDFI_SHORTCUT_AVX2(NAME, MODE, ACT)                                                  \
KAVX2 static void NAME(const shortcut_ctx *k, int64_t i0, int64_t i1)                        \
{                                                                                            \
    mdfi_rq8_avx2 q;                                                                         \
    mdfi_rq8_init_avx2(&q, k->s, MODE, k->bits, ACT);                                        \
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);              \
    int64_t i = i0;                                                                          \
    for (; i + 8 <= i1; i += 8) {                                                            \
        const __m256i sum = _mm256_add_epi32(_mm256_sll_epi32(ld8(k->a, k->a_type, i), da),  \
                                             _mm256_sll_epi32(ld8(k->b, k->b_type, i), db)); \
        st8(k->out, k->out_type, i, mdfi_requantize8_avx2(sum, &q, MODE, ACT));              \
    }                                                                                        \
    for (; i < i1; ++i) {                                                                    \
        const int64_t sum = load(k->a, k->a_type, i) * k->ma + load(k->b, k->b_type, i) * k->mb; \
        store(k->out, k->out_type, i, mdfi_requantize(sum, k->s, MODE, k->bits, ACT));       \
    }                                                                                        \
}
MDFI_SHORTCUT_AVX2(shortcut_avx2_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX2(shortcut_avx2_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX2(shortcut_avx2_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
MDFI_SHORTCUT_AVX2(shortcut_avx2_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX2(shortcut_avx2_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX2(shortcut_avx2_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)

/* int8 a, b -> int8 out on sixteen int32 lanes (mdfi_requantize16_i32_avx512: the formulas of
 * the AVX2 twin), the tail with masked loads and stores. */
#define MDFI_SHORTCUT_AVX512(NAME, MODE, ACT)                                                \
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))                       \
static void NAME(const shortcut_ctx *k, int64_t i0, int64_t i1)                              \
{                                                                                            \
    mdfi_rq32_avx512 q;                                                                      \
    mdfi_rq32_init_avx512(&q, k->s, MODE, k->bits);                                          \
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);              \
    const int8_t *a = (const int8_t *)k->a, *b = (const int8_t *)k->b;                       \
    int8_t *o = (int8_t *)k->out;                                                            \
    for (int64_t i = i0; i < i1; i += 16) {                                                  \
        const __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1u); \
        const __m512i va = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(a + i))); \
        const __m512i vb = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(b + i))); \
        const __m512i sum = _mm512_add_epi32(_mm512_sll_epi32(va, da), _mm512_sll_epi32(vb, db)); \
        const __m512i r = mdfi_requantize16_i32_avx512(sum, &q, MODE, ACT);                  \
        _mm_mask_storeu_epi8((void *)(o + i), m, _mm512_cvtepi32_epi8(r));                   \
    }                                                                                        \
}
MDFI_SHORTCUT_AVX512(shortcut_avx512_0, MDFI_ROUND_HALF_UP, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX512(shortcut_avx512_1, MDFI_ROUND_HALF_UP, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX512(shortcut_avx512_2, MDFI_ROUND_HALF_UP, MDFI_ACT_RELU)
MDFI_SHORTCUT_AVX512(shortcut_avx512_3, MDFI_ROUND_TRUNCATE, MDFI_ACT_LINEAR)
MDFI_SHORTCUT_AVX512(shortcut_avx512_4, MDFI_ROUND_TRUNCATE, MDFI_ACT_LEAKY)
MDFI_SHORTCUT_AVX512(shortcut_avx512_5, MDFI_ROUND_TRUNCATE, MDFI_ACT_RELU)

/* int8 a, b -> int8 out, shift s <= 0, linear or relu (mdfi_requantize: sat(x * 2^-s) of the
 * aligned sum x, |x| <= 2^24 after relu, clamped first to +-2^bits there).  The rounding mode
 * plays no part.  da = db = s = 0: sat(a + b) is the saturating byte add (the sum lies in
 * [-256, 254]; relu and the clamp to a narrower width commute with the saturation to 8 bits),
 * 64 lanes per step.  Otherwise 16 int32 lanes: clamp to +-2^15 and shift left by min(-s, 15)
 * -- every nonzero x that either clamp or the smaller shift changes saturates both ways, with
 * the same sign, since |result| >= 2^15 > qmax(bits) for bits <= 16 -- then saturate. */
/* s = 1 with da, db <= 1 (formats one bit apart), linear or relu: 64 byte lanes as well.
 *   da = db = 0:  R((a + b) / 2): half_up floor((a + b + 1) / 2) is the unsigned byte average
 *                 of a ^ 0x80 and b ^ 0x80, XOR 0x80; truncate subtracts 1 where a + b is odd
 *                 ((a ^ b) & 1); both lie in [-128, 127].
 *   db = 1:       R((a + 2b) / 2) = b + R(a / 2) (2b is even), R(a / 2) in [-64, 64] as above
 *                 with b = 0; b + R(a / 2) in [-192, 191], saturated by the saturating add.
 *   da = 1:       the same with a and b exchanged.
 * relu: max(R(x / 2), 0) = R(max(x, 0) / 2); then the clamp to the output width. */
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void shortcut_avx512_half(const shortcut_ctx *k, int64_t i0, int64_t i1)
{
    const int8_t *a = (const int8_t *)(k->da == 1 ? k->b : k->a), *b = (const int8_t *)(k->da == 1 ? k->a : k->b);
    const int both = k->da == 0 && k->db == 0;      /* else: b is the operand shifted by one */
    const int trunc = k->mode == MDFI_ROUND_TRUNCATE, relu = k->act == MDFI_ACT_RELU;
    int8_t *o = (int8_t *)k->out;
    const __m512i lo = _mm512_set1_epi8((char)mdfi_qmin(k->bits)), hi = _mm512_set1_epi8((char)mdfi_qmax(k->bits));
    const __m512i s80 = _mm512_set1_epi8((char)0x80), one = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
    for (int64_t i = i0; i < i1; i += 64) {
        const __mmask64 m = i1 - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (i1 - i)) - 1);
        const __m512i va = _mm512_maskz_loadu_epi8(m, (const void *)(a + i));
        const __m512i vb = _mm512_maskz_loadu_epi8(m, (const void *)(b + i));
        const __m512i c = both ? vb : zero;           /* the averaged partner of a */
        __m512i r = _mm512_xor_si512(_mm512_avg_epu8(_mm512_xor_si512(va, s80), _mm512_xor_si512(c, s80)), s80);
        if (trunc) r = _mm512_sub_epi8(r, _mm512_and_si512(_mm512_xor_si512(va, c), one));
        if (!both) r = _mm512_adds_epi8(r, vb);
        if (relu) r = _mm512_max_epi8(r, zero);
        r = _mm512_min_epi8(_mm512_max_epi8(r, lo), hi);
        _mm512_mask_storeu_epi8((void *)(o + i), m, r);
    }
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
static void shortcut_avx512_left(const shortcut_ctx *k, int64_t i0, int64_t i1)
{
    const int8_t *a = (const int8_t *)k->a, *b = (const int8_t *)k->b;
    int8_t *o = (int8_t *)k->out;
    const int relu = k->act == MDFI_ACT_RELU;
    if (k->da == 0 && k->db == 0 && k->s == 0) {
        const __m512i lo = _mm512_set1_epi8((char)mdfi_qmin(k->bits)), hi = _mm512_set1_epi8((char)mdfi_qmax(k->bits));
        const __m512i zero = _mm512_setzero_si512();
        for (int64_t i = i0; i < i1; i += 64) {
            const __mmask64 m = i1 - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (i1 - i)) - 1);
            __m512i r = _mm512_adds_epi8(_mm512_maskz_loadu_epi8(m, (const void *)(a + i)),
                                         _mm512_maskz_loadu_epi8(m, (const void *)(b + i)));
            if (relu) r = _mm512_max_epi8(r, zero);
            r = _mm512_min_epi8(_mm512_max_epi8(r, lo), hi);
            _mm512_mask_storeu_epi8((void *)(o + i), m, r);
        }
        return;
    }
    const __m128i da = _mm_cvtsi32_si128(k->da), db = _mm_cvtsi32_si128(k->db);
    const __m128i lsh = _mm_cvtsi32_si128(-k->s < 15 ? -k->s : 15);
    const __m512i lim_lo = _mm512_set1_epi32(-(1 << 15)), lim_hi = _mm512_set1_epi32(1 << 15);
    const __m512i qmin = _mm512_set1_epi32(mdfi_qmin(k->bits)), qmax = _mm512_set1_epi32(mdfi_qmax(k->bits));
    for (int64_t i = i0; i < i1; i += 16) {
        const __mmask16 m = i1 - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (i1 - i)) - 1u);
        const __m512i va = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(a + i)));
        const __m512i vb = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, (const void *)(b + i)));
        __m512i x = _mm512_add_epi32(_mm512_sll_epi32(va, da), _mm512_sll_epi32(vb, db));
        if (relu) x = _mm512_max_epi32(x, _mm512_setzero_si512());
        x = _mm512_sll_epi32(_mm512_min_epi32(_mm512_max_epi32(x, lim_lo), lim_hi), lsh);
        x = _mm512_min_epi32(_mm512_max_epi32(x, qmin), qmax);
        _mm_mask_storeu_epi8((void *)(o + i), m, _mm512_cvtepi32_epi8(x));
    }
}
#endif

static void shortcut_range(const void *vctx, int64_t i0, int64_t i1)
{
    const shortcut_ctx *k = (const shortcut_ctx *)vctx;
#if MDFI_KERNELS_X86
    typedef void (*fn)(const shortcut_ctx *, int64_t, int64_t);
    if (k->simd == 3) {
        if (k->s == 1) shortcut_avx512_half(k, i0, i1);
        else shortcut_avx512_left(k, i0, i1);
        return;
    }
    if (k->simd == 2) {
        static const fn f[6] = {shortcut_avx512_0, shortcut_avx512_1, shortcut_avx512_2,
                                shortcut_avx512_3, shortcut_avx512_4, shortcut_avx512_5};
        f[k->mode * 3 + k->act](k, i0, i1);
        return;
    }
    if (k->simd) {
        static const fn f[6] = {shortcut_avx2_0, shortcut_avx2_1, shortcut_avx2_2,
                                shortcut_avx2_3, shortcut_avx2_4, shortcut_avx2_5};
        f[k->mode * 3 + k->act](k, i0, i1);
        return;
    }
#endif
    for (int64_t i = i0; i < i1; ++i) {
        const int64_t sum = load(k->a, k->a_type, i) * k->ma + load(k->b, k->b_type, i) * k->mb;
        store(k->out, k->out_type, i, mdfi_requantize(sum, k->s, k->mode, k->bits, k->act));
    }
}

static int64_t type_max_abs(int32_t t)
{
    return t == MDFI_U8 ? 255 : (t == MDFI_S8 ? 128 : 32768);
}

int mdfi_shortcut_ex(const void *restrict a, int32_t a_type, int32_t fa,
                     const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                     int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                     void *restrict out, int32_t out_type, const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &kopts_default;
    if (mdfi_type_size(a_type) == 0 || mdfi_type_size(b_type) == 0 || a_type == MDFI_S32 ||
        b_type == MDFI_S32 || !fits(out_type, bits) || bits > 16 || n < 0 || !valid_mode_act(mode, act) ||
        !valid_opts(opts))
        return -1;
    const int32_t fm = fa > fb ? fa : fb;
    const int32_t da = fm - fa, db = fm - fb, s = fm - out_frac;
    if (da > 16 || db > 16 || s < MDFI_MIN_SHIFT || s > MDFI_MAX_SHIFT) return -2;
    const int64_t ma = (int64_t)1 << da, mb = (int64_t)1 << db;   /* exact alignment factors */
    const int fits32 = type_max_abs(a_type) * ma + type_max_abs(b_type) * mb <= (int64_t)INT32_MAX;
    int32_t simd = use_avx2(opts) && fits32;
    if (simd && opts->simd == 2 && a_type == MDFI_S8 && b_type == MDFI_S8 && out_type == MDFI_S8 &&
        have_avx512bw()) {
        if (act != MDFI_ACT_LEAKY && (s <= 0 || (s == 1 && da <= 1 && db <= 1))) simd = 3;
        else if (s >= 1 && s <= 31) simd = 2;
    }
    const shortcut_ctx k = {a, b, out, a_type, b_type, out_type, da, db, s, mode, bits, act, ma, mb, simd};
    par_for(opts, n, 32768, shortcut_range, &k);
    return 0;
}

int mdfi_shortcut(const void *restrict a, int32_t a_type, int32_t fa,
                  const void *restrict b, int32_t b_type, int32_t fb, int64_t n,
                  int32_t out_frac, int32_t mode, int32_t bits, int32_t act,
                  void *restrict out, int32_t out_type)
{
    return mdfi_shortcut_ex(a, a_type, fa, b, b_type, fb, n, out_frac, mode, bits, act, out, out_type,
                            NULL);
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
    if (opts == NULL) opts = &kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || c < 0 || plane < 0 || table_len < 1 ||
        !valid_opts(opts))
        return -1;
    const head_ctx h = {in, out, in_type, qmin, table_len, plane, logistic, exp_tab, table_sel};
    par_for(opts, c, 1 + 8192 / (plane > 0 ? plane : 1), head_range, &h);
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
    if (opts == NULL) opts = &kopts_default;
    if (mdfi_type_size(in_type) == 0 || in_type == MDFI_S32 || mdfi_type_size(out_type) == 0 ||
        out_type == MDFI_U8 || n < 0 || table_len < 1 || !valid_opts(opts))
        return -1;
    const int64_t lo = out_type == MDFI_S8 ? INT8_MIN : (out_type == MDFI_S16 ? INT16_MIN : INT32_MIN);
    const int64_t hi = out_type == MDFI_S8 ? INT8_MAX : (out_type == MDFI_S16 ? INT16_MAX : INT32_MAX);
    for (int32_t i = 0; i < table_len; ++i)
        if (table[i] < lo || table[i] > hi) return -2;
    const lut_ctx k = {in, out, table, in_type, out_type, qmin, table_len};
    par_for(opts, n, 32768, lut_range, &k);
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
