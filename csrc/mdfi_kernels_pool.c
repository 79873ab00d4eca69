/* mdfi_kernels_pool.c -- the max pool and the upsample of mdfi_kernels.h (portable C, with
 * AVX2 and AVX-512BW rows for 2x2 stride-2 pools of 8-bit maps, chosen at run time).
 * Integer only; shared helpers in mdfi_kernels_impl.h. */
#include "mdfi_kernels_impl.h"


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

/* Windows of size >= 3 (SPP's 5x5, 9x9, 13x13 stride-1 pools): separably.  Each input row's
 * maxima over the windows' columns are computed once and kept for the last `size` rows (a ring
 * of size x ow elements, at most MDFI_POOL_RING), then each output is the maximum of its
 * window's rows there: the same elements as MDFI_WINDOW_MAX (the window clipped to the image),
 * so the same integer maximum, with about 2 size instead of size^2 comparisons per output.
 * The columns of windows inside the image run as `size` vectorizable passes. */
#define MDFI_POOL_RING 8192
#define MDFI_MAXPOOL_SEPARABLE(T, NAME)                                                      \
static void NAME(const T *restrict in, int32_t h, int32_t w, int32_t size, int32_t stride,   \
                 int32_t off, T *restrict out, int32_t oh, int32_t ow)                       \
{                                                                                            \
    T ring[MDFI_POOL_RING];                                                                  \
    /* output columns whose window lies inside the row: [jlo, jhi) */                       \
    int32_t jlo = off < 0 ? (-off + stride - 1) / stride : 0;                                \
    int32_t jhi = w - size - off < 0 ? 0 : (w - size - off) / stride + 1;                    \
    if (jhi > ow) jhi = ow;                                                                  \
    if (jlo > jhi) jlo = jhi;                                                                \
    int32_t have = -1;                      /* the last input row in the ring */             \
    for (int32_t i = 0; i < oh; ++i) {                                                       \
        const int32_t y0 = off + i * stride;                                                 \
        const int32_t ya = y0 < 0 ? 0 : y0;                                                  \
        const int32_t yb = (y0 + size > h) ? h : y0 + size;                                  \
        T *restrict orow = out + (int64_t)i * ow;                                            \
        if (ya >= yb) { for (int32_t j = 0; j < ow; ++j) orow[j] = 0; continue; } /* excluded by the checks */ \
        for (int32_t r = have + 1 > ya ? have + 1 : ya; r < yb; ++r) {                       \
            const T *restrict row = in + (int64_t)r * w;                                     \
            T *restrict hm = ring + (int64_t)(r % size) * ow;                                \
            for (int32_t j = jlo; j < jhi; ++j) hm[j] = row[off + j * stride];               \
            for (int32_t t = 1; t < size; ++t)                                               \
                for (int32_t j = jlo; j < jhi; ++j) {                                        \
                    const T v = row[off + j * stride + t];                                   \
                    hm[j] = v > hm[j] ? v : hm[j];                                           \
                }                                                                            \
            for (int32_t side = 0; side < 2; ++side)      /* border columns: [0, jlo), [jhi, ow) */ \
                for (int32_t j = side ? jhi : 0; j < (side ? ow : jlo); ++j) {               \
                    const int32_t x0 = off + j * stride;                                     \
                    const int32_t xa = x0 < 0 ? 0 : x0, xb = (x0 + size > w) ? w : x0 + size; \
                    T best = xa < xb ? row[xa] : 0;                                          \
                    for (int32_t x = xa + 1; x < xb; ++x) best = row[x] > best ? row[x] : best; \
                    hm[j] = best;                                                            \
                }                                                                            \
            have = r;                                                                        \
        }                                                                                    \
        const T *restrict first = ring + (int64_t)(ya % size) * ow;                          \
        for (int32_t j = 0; j < ow; ++j) orow[j] = first[j];                                 \
        for (int32_t r = ya + 1; r < yb; ++r) {                                              \
            const T *restrict hm = ring + (int64_t)(r % size) * ow;                          \
            for (int32_t j = 0; j < ow; ++j) orow[j] = hm[j] > orow[j] ? hm[j] : orow[j];    \
        }                                                                                    \
    }                                                                                        \
}
MDFI_MAXPOOL_SEPARABLE(uint8_t, maxpool_u8_sep)
MDFI_MAXPOOL_SEPARABLE(int8_t, maxpool_s8_sep)
MDFI_MAXPOOL_SEPARABLE(int16_t, maxpool_s16_sep)

#define MDFI_MAXPOOL_PLANE(T, NAME)                                                          \
static void NAME(const T *restrict in, int32_t h, int32_t w, int32_t size, int32_t stride,   \
                 int32_t off, T *restrict out, int32_t oh, int32_t ow)                       \
{                                                                                            \
    if (size >= 3 && (int64_t)size * ow <= MDFI_POOL_RING) {                                 \
        NAME##_sep(in, h, w, size, stride, off, out, oh, ow);                                \
        return;                                                                              \
    }                                                                                        \
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

#if MDFI_KERNELS_X86
/* Stride-1 windows of size >= 3 (every SPP block: 5x5, 9x9, 13x13 on 13x13 / 19x19 maps) with
 * AVX2, MDFI_MAXPOOL_SEPARABLE's order of work on 32-byte vectors of columns: each input row
 * is copied into a row padded with the type's minimum (pb[q] = row[q + off], the minimum
 * outside the row), so an output column's horizontal maximum is the maximum of pb[j + t],
 * t < size, `size` unaligned loads per vector; the minimum never wins over the window's real
 * elements (there is one: mdfi_maxpool_ex's checks) -- the value of the clipped window, as
 * MDFI_WINDOW_MAX.  Then the vertical maxima over the window's rows kept in the ring.  Columns
 * past ow up to the vector are computed in padding and never stored.  256x13x13 int8, one
 * thread: 5x5 0.174 -> 0.060 ms, 13x13 0.33 -> 0.083 ms (docs/performance.md, stop 42). */
#define MDFI_POOL_VEC 32                                 /* bytes of a vector */
#define MDFI_MAXPOOL_S1_AVX2(T, NAME, TMIN, VMAX)                                            \
KAVX2 static void NAME(const T *restrict in, int32_t h, int32_t w, int32_t size, int32_t off, \
                       T *restrict out, int32_t oh, int32_t ow)                              \
{                                                                                            \
    enum { L = MDFI_POOL_VEC / (int)sizeof(T) };         /* lanes */                         \
    T ring[MDFI_POOL_RING];                 /* [size][jw]: horizontal maxima of input rows */ \
    T pb[MDFI_POOL_RING + 2 * L];           /* [jw + size - 1]: one padded input row         */ \
    T tail[L];                                                                               \
    const int32_t jw = (ow + L - 1) / L * L, np = jw + size - 1, lead = -off;                \
    for (int32_t q = 0; q < np; ++q) pb[q] = (T)(TMIN);                                      \
    const int32_t nreal = w < np - lead ? w : np - lead;   /* row elements pb holds */        \
    int32_t have = -1;                      /* the last input row in the ring */             \
    for (int32_t i = 0; i < oh; ++i) {                                                       \
        const int32_t y0 = off + i;                                                          \
        const int32_t ya = y0 < 0 ? 0 : y0;                                                  \
        const int32_t yb = (y0 + size > h) ? h : y0 + size;                                  \
        T *restrict orow = out + (int64_t)i * ow;                                            \
        if (ya >= yb) { for (int32_t j = 0; j < ow; ++j) orow[j] = 0; continue; } /* excluded by the checks */ \
        for (int32_t r = have + 1 > ya ? have + 1 : ya; r < yb; ++r) {                       \
            memcpy(pb + lead, in + (int64_t)r * w, (size_t)nreal * sizeof(T));              \
            T *restrict hm = ring + (int64_t)(r % size) * jw;                                \
            for (int32_t j0 = 0; j0 < jw; j0 += L) {                                         \
                __m256i acc = _mm256_loadu_si256((const __m256i *)(const void *)(pb + j0));  \
                for (int32_t t = 1; t < size; ++t)                                           \
                    acc = VMAX(acc, _mm256_loadu_si256((const __m256i *)(const void *)(pb + j0 + t))); \
                _mm256_storeu_si256((__m256i *)(void *)(hm + j0), acc);                      \
            }                                                                                \
            have = r;                                                                        \
        }                                                                                    \
        for (int32_t j0 = 0; j0 < jw; j0 += L) {                                             \
            __m256i acc = _mm256_loadu_si256((const __m256i *)(const void *)(ring + (int64_t)(ya % size) * jw + j0)); \
            for (int32_t r = ya + 1; r < yb; ++r)                                            \
                acc = VMAX(acc, _mm256_loadu_si256((const __m256i *)(const void *)(ring + (int64_t)(r % size) * jw + j0))); \
            if (ow - j0 >= L) {                                                              \
                _mm256_storeu_si256((__m256i *)(void *)(orow + j0), acc);                    \
            } else {                                                                         \
                _mm256_storeu_si256((__m256i *)(void *)tail, acc);                           \
                memcpy(orow + j0, tail, (size_t)(ow - j0) * sizeof(T));                      \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}
MDFI_MAXPOOL_S1_AVX2(uint8_t, maxpool_u8_s1_avx2, 0, _mm256_max_epu8)
MDFI_MAXPOOL_S1_AVX2(int8_t, maxpool_s8_s1_avx2, INT8_MIN, _mm256_max_epi8)
MDFI_MAXPOOL_S1_AVX2(int16_t, maxpool_s16_s1_avx2, INT16_MIN, _mm256_max_epi16)

/* 2x2 stride-1 windows with Darknet's padding of one (output H x W: the last row and column
 * see the window cut by the edge; yolov3-tiny's 512x13x13 pool), on the flattened plane: a
 * copy of the plane followed by rows of the type's minimum, hm[i] = max(x[i], x[i + 1]) but
 * x[i] alone in the last column (lane mask `last`, bytes 0xff there, built once per call:
 * MDFI_MAXPOOL2S1_LAST), then out[i] = max(hm[i], hm[i + W]) -- below the last row hm is the
 * minimum, which never wins.  The elements of MDFI_WINDOW_MAX's clipped window, so its value.
 * 32-byte vectors over the whole plane instead of 13-element rows. */
#define MDFI_MAXPOOL2S1_AVX2(T, NAME, TMIN, VMAX)                                             \
KAVX2 static void NAME(const T *restrict in, int32_t h, int32_t w, T *restrict out,          \
                       const T *restrict last, T *restrict buf, T *restrict hm)              \
{                                                                                            \
    enum { L = MDFI_POOL_VEC / (int)sizeof(T) };                                             \
    const int32_t n = h * w, nh = (n + w + L - 1) / L * L;  /* hm computed on [0, nh) */     \
    memcpy(buf, in, (size_t)n * sizeof(T));                                                  \
    for (int32_t q = n; q < nh + L; ++q) buf[q] = (T)(TMIN);                                 \
    for (int32_t i = 0; i < nh; i += L) {                                                    \
        const __m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(buf + i));      \
        const __m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(buf + i + 1));  \
        const __m256i k = _mm256_loadu_si256((const __m256i *)(const void *)(last + i));     \
        _mm256_storeu_si256((__m256i *)(void *)(hm + i), _mm256_blendv_epi8(VMAX(a, b), a, k)); \
    }                                                                                        \
    int32_t i = 0;                                                                           \
    for (; i + L <= n; i += L)                                                               \
        _mm256_storeu_si256((__m256i *)(void *)(out + i),                                    \
                            VMAX(_mm256_loadu_si256((const __m256i *)(const void *)(hm + i)), \
                                 _mm256_loadu_si256((const __m256i *)(const void *)(hm + i + w)))); \
    if (i < n) {                                                                             \
        T tail[L];                                                                           \
        _mm256_storeu_si256((__m256i *)(void *)tail,                                         \
                            VMAX(_mm256_loadu_si256((const __m256i *)(const void *)(hm + i)), \
                                 _mm256_loadu_si256((const __m256i *)(const void *)(hm + i + w)))); \
        memcpy(out + i, tail, (size_t)(n - i) * sizeof(T));                                  \
    }                                                                                        \
}
MDFI_MAXPOOL2S1_AVX2(uint8_t, maxpool2s1_u8_avx2, 0, _mm256_max_epu8)
MDFI_MAXPOOL2S1_AVX2(int8_t, maxpool2s1_s8_avx2, INT8_MIN, _mm256_max_epi8)
MDFI_MAXPOOL2S1_AVX2(int16_t, maxpool2s1_s16_avx2, INT16_MIN, _mm256_max_epi16)
/* planes that fit: the copy, its minimum rows and the vector slack in MDFI_POOL_RING / 2 bytes
 * (each of maxpool_range's three buffers) for elements of sz bytes */
#define MDFI_MAXPOOL2S1_FITS(h, w, sz) \
    (((int64_t)(h) * (w) + 2 * (int64_t)(w) + 4 * MDFI_POOL_VEC) * (sz) <= MDFI_POOL_RING / 2)
/* the lane mask of the last column: element i of [0, nh) all ones where i % w == w - 1 */
#define MDFI_MAXPOOL2S1_LAST(T, last, h, w)                                                  \
    do {                                                                                     \
        const int32_t nl = (int32_t)((int64_t)(h) * (w) + (w) + MDFI_POOL_VEC);              \
        for (int32_t q = 0; q < nl; ++q) (last)[q] = (T)(q % (w) == (w) - 1 ? -1 : 0);       \
    } while (0)
#endif


/* ---------------------------------------------------------------------------------------
 * Max pool: ranges of channels
 * ------------------------------------------------------------------------------------- */
typedef struct {
    const void *in;
    void *out;
    int32_t type, h, w, size, stride, off, oh, ow;
    int simd;
    int32_t c;                     /* 2: the AVX-512BW 2x2 stride-2 rows of 8-bit types, 1: AVX2 */
} pool_ctx;

static void maxpool_range(const void *vctx, int64_t k0, int64_t k1)
{
    const pool_ctx *p = (const pool_ctx *)vctx;
    const int64_t in_plane = (int64_t)p->h * p->w, out_plane = (int64_t)p->oh * p->ow;
#if MDFI_KERNELS_X86
    /* 2x2 stride-2 pools of 8-bit planes: the AVX-512BW rows (simd 2), or the AVX2 rows when a
     * row has at least 32 windows (shorter rows: the portable plane, which GCC vectorizes;
     * 16x416x416 0.106 -> 0.050 ms, 32x208x208 0.086 -> 0.031, 64x104x104 0.044 -> 0.022) */
    typedef void (*plane_u8)(const uint8_t *restrict, int32_t, int32_t, uint8_t *restrict, int32_t, int32_t);
    typedef void (*plane_s8)(const int8_t *restrict, int32_t, int32_t, int8_t *restrict, int32_t, int32_t);
    plane_u8 fu = NULL;
    plane_s8 fs = NULL;
    if (p->size == 2 && p->stride == 2 && p->off == 0 && p->type != MDFI_S16) {
        if (p->simd == 2) {
            fu = maxpool2_u8_avx512;
            fs = maxpool2_s8_avx512;
        } else if (p->simd == 1 && p->w >= 64) {
            fu = maxpool2_u8_avx2;
            fs = maxpool2_s8_avx2;
        }
    }
    if (fu != NULL) {
        for (int64_t k = k0; k < k1; ++k) {
            if (p->type == MDFI_U8)
                fu((const uint8_t *)p->in + k * in_plane, p->h, p->w, (uint8_t *)p->out + k * out_plane, p->oh,
                   p->ow);
            else
                fs((const int8_t *)p->in + k * in_plane, p->h, p->w, (int8_t *)p->out + k * out_plane, p->oh,
                   p->ow);
        }
        return;
    }
    /* 2x2 stride-1 windows with the padding of one (output = input size): flattened planes */
    if (p->simd >= 1 && p->stride == 1 && p->size == 2 && p->off == 0 && p->oh == p->h && p->ow == p->w &&
        MDFI_MAXPOOL2S1_FITS(p->h, p->w, mdfi_type_size(p->type))) {
        union { uint8_t u8[MDFI_POOL_RING / 2]; int8_t s8[MDFI_POOL_RING / 2]; int16_t s16[MDFI_POOL_RING / 4]; }
            last, buf, hm;
        if (p->type == MDFI_U8) MDFI_MAXPOOL2S1_LAST(uint8_t, last.u8, p->h, p->w);
        else if (p->type == MDFI_S8) MDFI_MAXPOOL2S1_LAST(int8_t, last.s8, p->h, p->w);
        else MDFI_MAXPOOL2S1_LAST(int16_t, last.s16, p->h, p->w);
        for (int64_t k = k0; k < k1; ++k) {
            const int64_t i = k * in_plane, o = k * out_plane;
            if (p->type == MDFI_U8)
                maxpool2s1_u8_avx2((const uint8_t *)p->in + i, p->h, p->w, (uint8_t *)p->out + o, last.u8, buf.u8,
                                   hm.u8);
            else if (p->type == MDFI_S8)
                maxpool2s1_s8_avx2((const int8_t *)p->in + i, p->h, p->w, (int8_t *)p->out + o, last.s8, buf.s8,
                                   hm.s8);
            else
                maxpool2s1_s16_avx2((const int16_t *)p->in + i, p->h, p->w, (int16_t *)p->out + o, last.s16,
                                    buf.s16, hm.s16);
        }
        return;
    }
    /* stride-1 windows of 3 and more (SPP): the AVX2 planes while the ring holds them */
    if (p->simd >= 1 && p->stride == 1 && p->size >= 3 && p->off <= 0 &&
        (int64_t)p->size * (p->ow + MDFI_POOL_VEC) <= MDFI_POOL_RING) {
        for (int64_t k = k0; k < k1; ++k) {
            const int64_t i = k * in_plane, o = k * out_plane;
            if (p->type == MDFI_U8)
                maxpool_u8_s1_avx2((const uint8_t *)p->in + i, p->h, p->w, p->size, p->off, (uint8_t *)p->out + o,
                                   p->oh, p->ow);
            else if (p->type == MDFI_S8)
                maxpool_s8_s1_avx2((const int8_t *)p->in + i, p->h, p->w, p->size, p->off, (int8_t *)p->out + o,
                                   p->oh, p->ow);
            else
                maxpool_s16_s1_avx2((const int16_t *)p->in + i, p->h, p->w, p->size, p->off,
                                    (int16_t *)p->out + o, p->oh, p->ow);
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

/* Output rows [r0, r1) of every channel of a 2x2 stride-2 pool without offset: the spatial
 * split of mdfi_maxpool_ex, in the same halves as the convolutions around it (thread 0 the top
 * rows, thread 1 the bottom ones; output row r reads input rows 2r and 2r + 1). */
static void maxpool_rows(const void *vctx, int64_t r0, int64_t r1)
{
    const pool_ctx *p = (const pool_ctx *)vctx;
    const int64_t in_plane = (int64_t)p->h * p->w, out_plane = (int64_t)p->oh * p->ow;
    const int32_t ih = (int32_t)((2 * r1 < p->h ? 2 * r1 : p->h) - 2 * r0), oh = (int32_t)(r1 - r0);
    const int64_t io = 2 * r0 * p->w, oo = r0 * p->ow;
    for (int64_t k = 0; k < p->c; ++k) {
        const int64_t i = k * in_plane + io, o = k * out_plane + oo;
#if MDFI_KERNELS_X86
        if (p->type != MDFI_S16 && (p->simd == 2 || (p->simd == 1 && p->w >= 64))) {
            if (p->type == MDFI_U8)
                (p->simd == 2 ? maxpool2_u8_avx512 : maxpool2_u8_avx2)((const uint8_t *)p->in + i, ih, p->w,
                                                                      (uint8_t *)p->out + o, oh, p->ow);
            else
                (p->simd == 2 ? maxpool2_s8_avx512 : maxpool2_s8_avx2)((const int8_t *)p->in + i, ih, p->w,
                                                                      (int8_t *)p->out + o, oh, p->ow);
            continue;
        }
#endif
        switch (p->type) {
        case MDFI_U8:
            maxpool_u8((const uint8_t *)p->in + i, ih, p->w, 2, 2, 0, (uint8_t *)p->out + o, oh, p->ow);
            break;
        case MDFI_S8:
            maxpool_s8((const int8_t *)p->in + i, ih, p->w, 2, 2, 0, (int8_t *)p->out + o, oh, p->ow);
            break;
        default:
            maxpool_s16((const int16_t *)p->in + i, ih, p->w, 2, 2, 0, (int16_t *)p->out + o, oh, p->ow);
            break;
        }
    }
}

int mdfi_maxpool_ex(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                    int32_t size, int32_t stride, int32_t pad,
                    void *restrict out, int32_t oh, int32_t ow, const mdfi_kopts *opts)
{
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(type) == 0 || type == MDFI_S32 || c < 1 || h < 1 || w < 1 || size < 1 ||
        stride < 1 || pad < 0 || !valid_opts(opts))
        return -1;
    /* Darknet: out = (w + pad - size)/stride + 1; every window must hold a real tap. */
    if (oh != (h + pad - size) / stride + 1 || ow != (w + pad - size) / stride + 1 || oh < 1 || ow < 1 ||
        (pad + 1) / 2 > size - 1)
        return -2;
    /* C: -l.pad/2 truncates toward zero */
    const pool_ctx p = {in, out, type, h, w, size, stride, -(pad / 2), oh, ow,
                        opts->simd == 2 && mdfi_kernels_have_avx512bw() ? 2 : use_avx2(opts) ? 1 : 0, c};
    if (size == 2 && stride == 2 && p.off == 0 && ow >= 64) {
        /* by output rows of every channel, from both ends (see maxpool_rows), in runs of at
         * least an eighth of the map: output rows of at least one cache line (narrower ones
         * would share a line between the threads at every run boundary of every channel; and
         * short runs are many calls per channel).  Measured alone (2 threads, the input from
         * the caller): 64x104x104 0.013 -> 0.023 ms split by rows in runs of 2, 128x52x52
         * 0.012 -> 0.026, 256x26x26 0.012 -> 0.044. */
        int64_t grain = 1 + 8192 / ((int64_t)c * w);
        if (grain < (oh + 7) / 8) grain = (oh + 7) / 8;
        mdfi_kpar_for_ends(opts, oh, grain, maxpool_rows, &p);
        return 0;
    }
    const int64_t grain = 1 + 16384 / ((int64_t)h * w);          /* >= ~16K input elements */
    mdfi_kpar_for(opts, c, grain, maxpool_range, &p);
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
    if (opts == NULL) opts = &mdfi_kopts_default;
    if (mdfi_type_size(type) == 0 || c < 1 || h < 1 || w < 1 || stride < 1 || !valid_opts(opts))
        return -1;
    const up_ctx u = {in, out, type, w, stride};
    mdfi_kpar_for(opts, (int64_t)c * h, 1 + 8192 / ((int64_t)w * stride * stride), upsample_range, &u);
    return 0;
}

int mdfi_upsample(const void *restrict in, int32_t type, int32_t c, int32_t h, int32_t w,
                  int32_t stride, void *restrict out)
{
    return mdfi_upsample_ex(in, type, c, h, w, stride, out, NULL);
}
