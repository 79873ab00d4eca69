/* mdfi_conv_avx512.c -- AVX-512BW micro-kernels of the int16-pair convolution (the formats
 * of 9 to 16 bits, and every layer on AVX-512 CPUs without VNNI).
 *
 * Same layouts and exactness argument as mdfi_conv_avx2.c (vpmaddwd: exact int16 products,
 * pair sums modulo 2^32; vpaddd modulo 2^32), on zmm: one zmm holds the 16 pixels of a tile
 * row (NR = 16), so the kernel computes two tiles at once (6 rows x 2 tiles = 12
 * accumulators, enough to keep two vpmaddwd ports busy).  The other operations (packing,
 * re-layout, epilogue) are the AVX2 ones (mdfi_conv_ops_avx512 in mdfi_conv_avx2.c).
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

/* C[2][6][16] (=|+=) A[kcl][6][2] . B_t[kcl][16][2] for the tiles at b0 and b1. */
AVX512 void mdfi_conv_avx512_ukr32x2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b0,
                                     const int16_t *restrict b1, size_t bstride, int32_t *restrict c,
                                     int accumulate)
{
    __m512i c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (accumulate) {
#define LD(r) c##r##0 = _mm512_loadu_si512((const void *)(c + (r) * NR));                   \
              c##r##1 = _mm512_loadu_si512((const void *)(c + MR * NR + (r) * NR));
        LD(0) LD(1) LD(2) LD(3) LD(4) LD(5)
#undef LD
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm512_setzero_si512();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm512_setzero_si512();
    }
    for (int32_t i = 0; i < kcl; ++i) {
        const __m512i x0 = _mm512_loadu_si512((const void *)b0);
        const __m512i x1 = _mm512_loadu_si512((const void *)b1);
        __m512i av;
#define ROW(r) av = _mm512_set1_epi32(ld32(a + 2 * (r)));                        \
               c##r##0 = _mm512_add_epi32(c##r##0, _mm512_madd_epi16(av, x0));  \
               c##r##1 = _mm512_add_epi32(c##r##1, _mm512_madd_epi16(av, x1));
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
        a += MR * 2;
        b0 += bstride;
        b1 += bstride;
    }
#define ST(r) _mm512_storeu_si512((void *)(c + (r) * NR), c##r##0);                 \
              _mm512_storeu_si512((void *)(c + MR * NR + (r) * NR), c##r##1);
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
#undef ST
}

/* One tile: C[6][16] (=|+=) A . B (the last, odd tile of a block). */
AVX512 void mdfi_conv_avx512_ukr32(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b,
                                   size_t bstride, int32_t *restrict c, int accumulate)
{
    __m512i c0, c1, c2, c3, c4, c5;
    if (accumulate) {
        c0 = _mm512_loadu_si512((const void *)c);
        c1 = _mm512_loadu_si512((const void *)(c + NR));
        c2 = _mm512_loadu_si512((const void *)(c + 2 * NR));
        c3 = _mm512_loadu_si512((const void *)(c + 3 * NR));
        c4 = _mm512_loadu_si512((const void *)(c + 4 * NR));
        c5 = _mm512_loadu_si512((const void *)(c + 5 * NR));
    } else {
        c0 = c1 = c2 = c3 = c4 = c5 = _mm512_setzero_si512();
    }
    for (int32_t i = 0; i < kcl; ++i) {
        const __m512i x = _mm512_loadu_si512((const void *)b);
        c0 = _mm512_add_epi32(c0, _mm512_madd_epi16(_mm512_set1_epi32(ld32(a)), x));
        c1 = _mm512_add_epi32(c1, _mm512_madd_epi16(_mm512_set1_epi32(ld32(a + 2)), x));
        c2 = _mm512_add_epi32(c2, _mm512_madd_epi16(_mm512_set1_epi32(ld32(a + 4)), x));
        c3 = _mm512_add_epi32(c3, _mm512_madd_epi16(_mm512_set1_epi32(ld32(a + 6)), x));
        c4 = _mm512_add_epi32(c4, _mm512_madd_epi16(_mm512_set1_epi32(ld32(a + 8)), x));
        c5 = _mm512_add_epi32(c5, _mm512_madd_epi16(_mm512_set1_epi32(ld32(a + 10)), x));
        a += MR * 2;
        b += bstride;
    }
    _mm512_storeu_si512((void *)c, c0);
    _mm512_storeu_si512((void *)(c + NR), c1);
    _mm512_storeu_si512((void *)(c + 2 * NR), c2);
    _mm512_storeu_si512((void *)(c + 3 * NR), c3);
    _mm512_storeu_si512((void *)(c + 4 * NR), c4);
    _mm512_storeu_si512((void *)(c + 5 * NR), c5);
}

#else
typedef int mdfi_conv_avx512_unused;
#endif
