/* mdfi_conv_avx512.c -- AVX-512BW micro-kernels of the int16-pair convolution (the formats
 * of 9 to 16 bits, and every layer on AVX-512 CPUs without VNNI).
 *
 * Same layouts and exactness argument as mdfi_conv_avx2.c (vpmaddwd: exact int16 products,
 * pair sums modulo 2^32; vpaddd modulo 2^32), on zmm: one zmm holds the 16 pixels of a tile
 * row (NR = 16), so the kernel computes two tiles at once (6 rows x 2 tiles = 12
 * accumulators, enough to keep two vpmaddwd ports busy).  The other operations (packing,
 * re-layout, epilogue) are the AVX2 ones (mdfi_conv_ops_avx512 in mdfi_conv_avx2.c).  The
 * AVX512-VNNI path's int16-pair layers use the same kernels with vpdpwssd
 * (mdfi_conv_ops_vnni16).
 */
#include "mdfi_conv_internal.h"

#if MDFI_CONV_X86

#include <immintrin.h>
#include <string.h>

#define AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

static inline int32_t ld32(const int16_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The two micro-kernels, written once for two instructions: MAC(c, av, x) adds the pair
 * products of av and x to the int32 lanes of c -- vpmaddwd + vpaddd (AVX-512BW), or the fused
 * vpdpwssd (AVX512-VNNI: the same two exact int16 products and the same sums modulo 2^32, in one
 * instruction; a micro-benchmark of the 6x2-tile kernel on the AMD EPYC Zen 4 read 97 -> 117
 * GMAC/s, one thread, L1-resident). */
#define MAC_BW(c, av, x) _mm512_add_epi32((c), _mm512_madd_epi16((av), (x)))
#define MAC_VNNI(c, av, x) _mm512_dpwssd_epi32((c), (av), (x))

/* C[2][6][16] (=|+=) A[kcl][6][2] . B_t[kcl][16][2] for the tiles at b0 and b1. */
#define UKR32X2(NAME, TARGET, MAC)                                                                     \
TARGET void NAME(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b0,                   \
                 const int16_t *restrict b1, size_t bstride, int32_t *restrict c, int accumulate)      \
{                                                                                                      \
    __m512i c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;                                \
    if (accumulate) {                                                                                  \
        c00 = _mm512_loadu_si512((const void *)(c + 0 * NR)); c01 = _mm512_loadu_si512((const void *)(c + MR * NR + 0 * NR)); \
        c10 = _mm512_loadu_si512((const void *)(c + 1 * NR)); c11 = _mm512_loadu_si512((const void *)(c + MR * NR + 1 * NR)); \
        c20 = _mm512_loadu_si512((const void *)(c + 2 * NR)); c21 = _mm512_loadu_si512((const void *)(c + MR * NR + 2 * NR)); \
        c30 = _mm512_loadu_si512((const void *)(c + 3 * NR)); c31 = _mm512_loadu_si512((const void *)(c + MR * NR + 3 * NR)); \
        c40 = _mm512_loadu_si512((const void *)(c + 4 * NR)); c41 = _mm512_loadu_si512((const void *)(c + MR * NR + 4 * NR)); \
        c50 = _mm512_loadu_si512((const void *)(c + 5 * NR)); c51 = _mm512_loadu_si512((const void *)(c + MR * NR + 5 * NR)); \
    } else {                                                                                           \
        c00 = c01 = c10 = c11 = c20 = c21 = _mm512_setzero_si512();                                    \
        c30 = c31 = c40 = c41 = c50 = c51 = _mm512_setzero_si512();                                    \
    }                                                                                                  \
    for (int32_t i = 0; i < kcl; ++i) {                                                                \
        const __m512i x0 = _mm512_loadu_si512((const void *)b0);                                       \
        const __m512i x1 = _mm512_loadu_si512((const void *)b1);                                       \
        __m512i av;                                                                                    \
        av = _mm512_set1_epi32(ld32(a + 0)); c00 = MAC(c00, av, x0); c01 = MAC(c01, av, x1);           \
        av = _mm512_set1_epi32(ld32(a + 2)); c10 = MAC(c10, av, x0); c11 = MAC(c11, av, x1);           \
        av = _mm512_set1_epi32(ld32(a + 4)); c20 = MAC(c20, av, x0); c21 = MAC(c21, av, x1);           \
        av = _mm512_set1_epi32(ld32(a + 6)); c30 = MAC(c30, av, x0); c31 = MAC(c31, av, x1);           \
        av = _mm512_set1_epi32(ld32(a + 8)); c40 = MAC(c40, av, x0); c41 = MAC(c41, av, x1);           \
        av = _mm512_set1_epi32(ld32(a + 10)); c50 = MAC(c50, av, x0); c51 = MAC(c51, av, x1);          \
        a += MR * 2;                                                                                   \
        b0 += bstride;                                                                                 \
        b1 += bstride;                                                                                 \
    }                                                                                                  \
    _mm512_storeu_si512((void *)(c + 0 * NR), c00); _mm512_storeu_si512((void *)(c + MR * NR + 0 * NR), c01); \
    _mm512_storeu_si512((void *)(c + 1 * NR), c10); _mm512_storeu_si512((void *)(c + MR * NR + 1 * NR), c11); \
    _mm512_storeu_si512((void *)(c + 2 * NR), c20); _mm512_storeu_si512((void *)(c + MR * NR + 2 * NR), c21); \
    _mm512_storeu_si512((void *)(c + 3 * NR), c30); _mm512_storeu_si512((void *)(c + MR * NR + 3 * NR), c31); \
    _mm512_storeu_si512((void *)(c + 4 * NR), c40); _mm512_storeu_si512((void *)(c + MR * NR + 4 * NR), c41); \
    _mm512_storeu_si512((void *)(c + 5 * NR), c50); _mm512_storeu_si512((void *)(c + MR * NR + 5 * NR), c51); \
}

/* One tile: C[6][16] (=|+=) A . B (the last, odd tile of a block). */
#define UKR32(NAME, TARGET, MAC)                                                                       \
TARGET void NAME(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,     \
                 int32_t *restrict c, int accumulate)                                                  \
{                                                                                                      \
    __m512i c0, c1, c2, c3, c4, c5;                                                                    \
    if (accumulate) {                                                                                  \
        c0 = _mm512_loadu_si512((const void *)c);                                                      \
        c1 = _mm512_loadu_si512((const void *)(c + NR));                                               \
        c2 = _mm512_loadu_si512((const void *)(c + 2 * NR));                                           \
        c3 = _mm512_loadu_si512((const void *)(c + 3 * NR));                                           \
        c4 = _mm512_loadu_si512((const void *)(c + 4 * NR));                                           \
        c5 = _mm512_loadu_si512((const void *)(c + 5 * NR));                                           \
    } else {                                                                                           \
        c0 = c1 = c2 = c3 = c4 = c5 = _mm512_setzero_si512();                                          \
    }                                                                                                  \
    for (int32_t i = 0; i < kcl; ++i) {                                                                \
        const __m512i x = _mm512_loadu_si512((const void *)b);                                         \
        c0 = MAC(c0, _mm512_set1_epi32(ld32(a)), x);                                                   \
        c1 = MAC(c1, _mm512_set1_epi32(ld32(a + 2)), x);                                               \
        c2 = MAC(c2, _mm512_set1_epi32(ld32(a + 4)), x);                                               \
        c3 = MAC(c3, _mm512_set1_epi32(ld32(a + 6)), x);                                               \
        c4 = MAC(c4, _mm512_set1_epi32(ld32(a + 8)), x);                                               \
        c5 = MAC(c5, _mm512_set1_epi32(ld32(a + 10)), x);                                              \
        a += MR * 2;                                                                                   \
        b += bstride;                                                                                  \
    }                                                                                                  \
    _mm512_storeu_si512((void *)c, c0);                                                                \
    _mm512_storeu_si512((void *)(c + NR), c1);                                                         \
    _mm512_storeu_si512((void *)(c + 2 * NR), c2);                                                     \
    _mm512_storeu_si512((void *)(c + 3 * NR), c3);                                                     \
    _mm512_storeu_si512((void *)(c + 4 * NR), c4);                                                     \
    _mm512_storeu_si512((void *)(c + 5 * NR), c5);                                                     \
}

#define VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

UKR32X2(mdfi_conv_avx512_ukr32x2, AVX512, MAC_BW)
UKR32(mdfi_conv_avx512_ukr32, AVX512, MAC_BW)
UKR32X2(mdfi_conv_vnni16_ukr32x2, VNNI, MAC_VNNI)
UKR32(mdfi_conv_vnni16_ukr32, VNNI, MAC_VNNI)

#else
typedef int mdfi_conv_avx512_unused;
#endif
