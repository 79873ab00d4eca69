/* mdfi_kernels_impl.h -- internal to the kernels of mdfi_kernels.h (mdfi_kernels.c,
 * mdfi_kernels_pool.c, mdfi_kernels_shortcut.c): typed element access, argument checks,
 * the work splitting over opts->pool, and the AVX2 load/store helpers.  Not installed, not
 * part of the API.  Integer only; arithmetic via mdfi_fixedpoint.h. */
#ifndef MDFI_KERNELS_IMPL_H
#define MDFI_KERNELS_IMPL_H

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

/* AVX-512 F/BW/VL/DQ (the 8-bit max-pool rows and the shortcut's 64-lane bodies with simd == 2). */
int mdfi_kernels_have_avx512bw(void);

/* The options used when a caller passes NULL (MDFI_KOPTS_DEFAULT). */
extern const mdfi_kopts mdfi_kopts_default;

typedef void (*range_fn)(const void *ctx, int64_t i0, int64_t i1);

/* fn(ctx, i0, i1) over the items [0, n), in ranges of at least `grain` items, on up to
 * opts->nthreads threads (about four ranges per thread, handed out dynamically). */
void mdfi_kpar_for(const mdfi_kopts *o, int64_t n, int64_t grain, range_fn fn, const void *ctx);
/* The same in guided runs of at least `grain` items from both ends: on two threads thread 0
 * takes the first items and thread 1 the last ones (spatial halves of a map, as the
 * convolutions' mdfi_pool_next_end). */
void mdfi_kpar_for_ends(const mdfi_kopts *o, int64_t n, int64_t grain, range_fn fn, const void *ctx);

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
static inline int fits(int32_t type, int32_t bits)
{
    if (bits < 2 || bits > 32) return 0;
    switch (type) {
    case MDFI_S8: return bits <= 8;
    case MDFI_S16: return bits <= 16;
    case MDFI_S32: return 1;
    default: return 0;
    }
}

static inline int valid_mode_act(int32_t mode, int32_t act)
{
    return (mode == MDFI_ROUND_HALF_UP || mode == MDFI_ROUND_TRUNCATE) &&
           (act == MDFI_ACT_LINEAR || act == MDFI_ACT_LEAKY || act == MDFI_ACT_RELU);
}

static inline int use_avx2(const mdfi_kopts *o)
{
#if MDFI_KERNELS_X86
    return o->simd != 0 && mdfi_kernels_have_avx2();
#else
    (void)o;
    return 0;
#endif
}

static inline int valid_opts(const mdfi_kopts *o)
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

#endif /* MDFI_KERNELS_IMPL_H */
