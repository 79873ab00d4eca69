/* mdfi_conv_wino.c -- 3x3 stride-1 convolutions of 8-bit activations on the int16-pair paths
 * (AVX2, AVX-512BW) by integer Winograd F(2x2, 3x3): 16 multiplies per 2x2 outputs and
 * channel instead of 36.
 *
 * Arithmetic (all integers, exact).  For a 4x4 input patch d (zero-padded) and the 3x3 kernel
 * g of one (output, input) channel pair, with
 *     B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G' = [2 0 0; 1 1 1; 1 -1 1; 0 0 2]
 *     A^T = [1 1 1 0; 0 1 -1 -1],
 *     V = B^T d B (input transform: sums of 4 inputs, |V| <= 4 max|x|),
 *     U = G' g G'^T (weights, at load: |U| <= 9 max|w|, stored as int16 when <= 32767),
 * the identity of Winograd's F(2,3) scaled by 2 per dimension gives, summed over channels,
 *     Y = A^T (sum_c U_c (.) V_c) A = 4 S
 * where S is the 2x2 block of the exact convolution sums.  The channel sums are vpmaddwd pairs
 * (exact int16 products) added modulo 2^32, and the output transform only adds and subtracts,
 * so Y is computed exactly modulo 2^32.  When the layer's bound gives |4 S| < 2^31
 * (4 * K * max|w| * max|x| < 2^31), Y is 4 S exactly and S = Y >> 2 exactly; then the bias is
 * added in int32 (the sum32 bound) and the common requantize twin (mdfi_fixedpoint_avx2.h)
 * finishes.  Layers outside these bounds (wider formats, acc64, |U| > 32767) take the direct
 * int16-pair kernels, like everything on the scalar path.
 *
 * Layouts (int16 units):
 *   U      : [16][P][C2][MR][2]   the transformed weights, per Winograd point xi = 4i + j, in the
 *            int16-pair panel layout of mdfi_conv_internal.h (so the micro-kernels are reused)
 *   X2     : [C2][Hp + 1][Wp + 1][2]  zero-padded input, channel pairs interleaved, one extra
 *            zero row and column for the last tiles of odd output sizes
 *   V block: [16][C2][NR][2]       the transformed inputs of NR = 16 tiles (raster order)
 *   C tiles: [16][MR][NR] int32    per thread, the 16 products of one panel and block
 * Tiles: TH x TW = ceil(OH/2) x ceil(OW/2); tile (ty, tx) reads padded rows 2ty..2ty+3,
 * columns 2tx..2tx+3, and writes outputs (2ty + a, 2tx + b) that exist.
 */
#include "mdfi_conv_internal.h"
#include "mdfi_fixedpoint.h"

#include <string.h>

/* ---------------------------------------------------------------------------------------
 * Weights (at load; portable)
 * ------------------------------------------------------------------------------------- */
static const int32_t GP[4][3] = {{2, 0, 0}, {1, 1, 1}, {1, -1, 1}, {0, 0, 2}};

int64_t mdfi_wino_packed_bytes(int32_t m, int32_t c)
{
    const int64_t p = ((int64_t)m + MR - 1) / MR, c2 = ((int64_t)c + 1) / 2;
    return 16 * p * c2 * MR * 2 * 2;
}

int32_t mdfi_wino_pack(const void *w, int wtype, int32_t m, int32_t c, int16_t *u)
{
    const int64_t p = ((int64_t)m + MR - 1) / MR, c2 = ((int64_t)c + 1) / 2;
    memset(u, 0, (size_t)mdfi_wino_packed_bytes(m, c));
    int64_t umax = 0;
    for (int32_t mm = 0; mm < m; ++mm)
        for (int32_t ch = 0; ch < c; ++ch) {
            int64_t g[3][3];
            for (int a = 0; a < 3; ++a)
                for (int b = 0; b < 3; ++b) {
                    const size_t idx = (((size_t)mm * (size_t)c + (size_t)ch) * 3 + (size_t)a) * 3 + (size_t)b;
                    g[a][b] = wtype == MDFI_CONV_S8 ? ((const int8_t *)w)[idx] : ((const int16_t *)w)[idx];
                }
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) {
                    int64_t v = 0;
                    for (int a = 0; a < 3; ++a)
                        for (int b = 0; b < 3; ++b) v += GP[i][a] * g[a][b] * GP[j][b];
                    const int64_t av = v < 0 ? -v : v;
                    if (av > umax) umax = av;
                    if (av > 32767) continue;          /* the layer is then not eligible */
                    const size_t o = (((((size_t)(4 * i + j) * (size_t)p + (size_t)(mm / MR)) * (size_t)c2 +
                                        (size_t)(ch / 2)) * MR + (size_t)(mm % MR)) * 2) + (size_t)(ch % 2);
                    u[o] = (int16_t)v;
                }
        }
    return umax > 0x7fffffff ? 0x7fffffff : (int32_t)umax;
}

#if MDFI_CONV_X86

#include <immintrin.h>

#include "mdfi_fixedpoint_avx2.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define NB 16                                   /* tiles per block = NR */
#define PG 8                                    /* panels per group */
#define KC 256                                  /* channel pairs per K block */
#ifndef PGA
#define PGA 2                                   /* panels per step of wino_compute_all */
#endif
#define ALLB 4                                  /* at most this many blocks: wino_compute_all */
#define ALLB_BYTES ((int64_t)8 << 20)           /* ... and U at least this large             */
#define CT_TILES (PG * 16 > PGA * ALLB * 16 ? PG * 16 : PGA * ALLB * 16)   /* C tiles per thread */

typedef struct {
    const void *x;
    int xtype;
    int32_t c, h, w, pad, c2, m, np;
    int32_t oh, ow, th, tw, hp1, wp1;
    int64_t ntiles, plane;                      /* tiles; X2 pairs per channel pair */
    int32_t nblk;                               /* ceil(ntiles / NB)                  */
    const int16_t *u;                           /* U                                  */
    const int64_t *bias;
    const int32_t *shift;
    void *out;
    void *pool;                                 /* NULL, or [M][OH/2][OW/2] of otype: the
                                                   2x2 stride-2 max of every tile (OH, OW
                                                   even, mdfi_conv2d_pool)              */
    int32_t pool_only;                          /* 1: with pool, out is not written    */
    int otype;
    int32_t rounding, bits, act;
    int32_t padv;                               /* the padding value (input zero point) */
    int32_t zo, zlo, zhi;                       /* output zero point; qmin - zo, qmax - zo */
    int64_t bound;                              /* K*max|w|*max|x| >= |S|             */
    ukr32_fn ukr;
    ukr32_fn ukr_last;                          /* the last panel's (its rows only, when fewer) */
    int32_t msplit, pgroup, nbitem;
    int32_t ngroups;                            /* msplit / allb: panel groups, equal to
                                                   within one panel (np * g / ngroups)  */
    int32_t ngrid;                              /* > 0: items = (block, panel group), ngrid
                                                   groups per block, V blocks shared     */
    int32_t allb;                               /* 1: wino_compute_all (nblk <= ALLB)    */
    int32_t nthr;                               /* threads asked for                     */
    int16_t *x2;
    int16_t *vshared;                           /* msplit: [nblk] V blocks            */
    unsigned char *tbase;
    size_t tbytes, vbytes;                      /* per thread; one V block            */
} wino_ctx;

/* X2 rows r0..r1-1 (row = cc*(Hp+1) + y), zero padding, one extra zero row/column: the two
 * channel rows widened to int16 and interleaved, 16 pixels per step. */
AVX2 static void wino_x2(const wino_ctx *k, int64_t r0, int64_t r1)
{
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t cc = r / k->hp1, y = r % k->hp1;
        int16_t *d = k->x2 + ((size_t)cc * (size_t)k->plane + (size_t)y * (size_t)k->wp1) * 2;
        const int64_t iy = y - k->pad;
        if (iy < 0 || iy >= k->h) {
            mdfi_conv_fill_pad(d, (size_t)k->wp1, k->padv, 2 * cc + 1 < k->c);
            continue;
        }
        mdfi_conv_fill_pad(d, (size_t)k->pad, k->padv, 2 * cc + 1 < k->c);
        mdfi_conv_fill_pad(d + ((size_t)k->pad + (size_t)k->w) * 2, (size_t)(k->wp1 - k->pad - k->w), k->padv, 2 * cc + 1 < k->c);
        const int has1 = 2 * cc + 1 < k->c;
        const size_t row0 = ((size_t)(2 * cc) * (size_t)k->h + (size_t)iy) * (size_t)k->w;
        const size_t row1 = has1 ? row0 + (size_t)k->h * (size_t)k->w : row0;
        int16_t *di = d + (size_t)k->pad * 2;
        int32_t i = 0;
        for (; i + 16 <= k->w; i += 16) {
            const __m128i a = _mm_loadu_si128((const __m128i *)(const void *)((const int8_t *)k->x + row0 + (size_t)i));
            const __m128i b = has1 ? _mm_loadu_si128((const __m128i *)(const void *)((const int8_t *)k->x + row1 + (size_t)i))
                                   : _mm_setzero_si128();
            const __m256i e = k->xtype == MDFI_CONV_U8 ? _mm256_cvtepu8_epi16(a) : _mm256_cvtepi8_epi16(a);
            const __m256i o = k->xtype == MDFI_CONV_U8 ? _mm256_cvtepu8_epi16(b) : _mm256_cvtepi8_epi16(b);
            const __m256i lo = _mm256_unpacklo_epi16(e, o), hi = _mm256_unpackhi_epi16(e, o);
            _mm256_storeu_si256((__m256i *)(void *)(di + 2 * (size_t)i), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(void *)(di + 2 * (size_t)i + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
        for (; i < k->w; ++i) {
            if (k->xtype == MDFI_CONV_U8) {
                di[2 * (size_t)i] = ((const uint8_t *)k->x)[row0 + (size_t)i];
                di[2 * (size_t)i + 1] = has1 ? ((const uint8_t *)k->x)[row1 + (size_t)i] : 0;
            } else {
                di[2 * (size_t)i] = ((const int8_t *)k->x)[row0 + (size_t)i];
                di[2 * (size_t)i + 1] = has1 ? ((const int8_t *)k->x)[row1 + (size_t)i] : 0;
            }
        }
    }
}

/* V block b: [16][C2][NB][2] from X2.  Each lane holds a channel pair (two int16), and the
 * transform is done on both halves at once with 16-bit adds (|V| <= 4*255, no overflow). */
AVX2 static void wino_vblock(const wino_ctx *k, int32_t blk, int16_t *restrict v)
{
    int32_t off[NB];
    int consecutive = 1;
    for (int j = 0; j < NB; ++j) {
        int64_t t = (int64_t)blk * NB + j;
        if (t >= k->ntiles) t = k->ntiles - 1;
        const int64_t ty = t / k->tw, tx = t % k->tw;
        off[j] = (int32_t)(2 * ty * k->wp1 + 2 * tx);
        if (j > 0 && off[j] != off[j - 1] + 2) consecutive = 0;
    }
    const __m256i o0 = _mm256_loadu_si256((const __m256i *)(const void *)off);
    const __m256i o1 = _mm256_loadu_si256((const __m256i *)(const void *)(off + 8));
    const int nh = k->ntiles - (int64_t)blk * NB <= 8 ? 1 : 2;   /* tiles 8..15 unused (wino_ukr8) */
    for (int32_t cc = 0; cc < k->c2; ++cc) {
        const int32_t *pl = (const int32_t *)(const void *)(k->x2 + (size_t)cc * (size_t)k->plane * 2);
        for (int hh = 0; hh < nh; ++hh) {
            /* one half (8 tiles) at a time, a column of d at a time: fewer live registers */
            __m256i t[4][4];
            for (int j = 0; j < 4; ++j) {
                __m256i d[4];                    /* d[row i], column j: 8 tiles */
                for (int i = 0; i < 4; ++i) {
                    const int32_t *p = pl + (size_t)i * (size_t)k->wp1 + (size_t)j;
                    if (consecutive) {
                        /* tiles 2 pairs apart: every other pair of 16 consecutive pairs */
                        const int32_t *q = p + off[0] + 16 * hh;
                        const __m256 a = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)q));
                        const __m256 b = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(const void *)(q + 8)));
                        d[i] = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), 0xD8);
                    } else {
                        d[i] = _mm256_i32gather_epi32((const int *)(const void *)p, hh ? o1 : o0, 4);
                    }
                }
                t[0][j] = _mm256_sub_epi16(d[0], d[2]);      /* rows: B^T d */
                t[1][j] = _mm256_add_epi16(d[1], d[2]);
                t[2][j] = _mm256_sub_epi16(d[2], d[1]);
                t[3][j] = _mm256_sub_epi16(d[1], d[3]);
            }
            for (int i = 0; i < 4; ++i) {         /* columns: (B^T d) B */
                const __m256i r[4] = {_mm256_sub_epi16(t[i][0], t[i][2]), _mm256_add_epi16(t[i][1], t[i][2]),
                                      _mm256_sub_epi16(t[i][2], t[i][1]), _mm256_sub_epi16(t[i][1], t[i][3])};
                for (int j = 0; j < 4; ++j)
                    _mm256_storeu_si256((__m256i *)(void *)(v + (((size_t)(4 * i + j) * (size_t)k->c2 + (size_t)cc) * NB + 8 * (size_t)hh) * 2), r[j]);
            }
        }
    }
}

/* Output transform of one panel and block, bias, requantize, store.
 *
 * Rows whose shift is 1..31 and whose bound |S| + |bias| + half fits int32 (k->bound is
 * K*max|w|*max|x| >= |S|) use the folded int32 form of mdfi_fixedpoint.h (mdfi_rqf_init,
 * mdfi_rqf8_avx2): t = S + (bias + half), R = t >> s, leaky as max(R, n) with n from two
 * vpmaddwd; saturation by the narrowing (clamped first when the format is narrower than the
 * output type).  Other rows take mdfi_requantize8_avx2 (saturating).  The 16 tiles' results
 * of output row a of the tile are interleaved in registers (even columns from point a0, odd
 * from a1) into the 32 consecutive output columns of the block's tiles, then stored by runs
 * of tiles of one tile row (one run when the block lies in one tile row). */
/* The rows outside the folded form (shift outside 1..31, or a bound beyond int32): the common
 * requantize twin on t = S + bias (rare rows: the constants are set up per call). */
AVX2 __attribute__((noinline)) static __m256i wino_rq_general(const wino_ctx *k, int32_t sh, __m256i t)
{
    mdfi_rq8_avx2 q;
    mdfi_rq8_init_avx2(&q, sh, k->rounding, k->bits, k->act);
    if (k->zo) mdfi_rq8_zp_avx2(&q, k->bits, k->zo);
    return _mm256_add_epi32(mdfi_requantize8_avx2(t, &q, k->rounding, k->act), _mm256_set1_epi32(k->zo));
}

typedef struct {
    int32_t j0, n, oy, ox;                      /* first tile, columns, tile row, column    */
} wino_run;

AVX2 static inline __attribute__((always_inline)) void wino_out_body(const wino_ctx *k, const int32_t *restrict ct,
                                                                    int32_t m0, int32_t mv, int32_t blk, const int pooled,
                                                                    const int write_out)
{
    /* runs of consecutive tiles in one tile row: [j0, j0 + n/2 tiles), n output columns */
    wino_run runs[NB];
    int32_t nruns = 0;
    for (int j = 0; j < NB;) {
        const int64_t t = (int64_t)blk * NB + j;
        if (t >= k->ntiles) break;
        const int32_t ty = (int32_t)(t / k->tw), tx = (int32_t)(t % k->tw);
        int32_t len = k->tw - tx < NB - j ? k->tw - tx : NB - j;
        if ((int64_t)len > k->ntiles - t) len = (int32_t)(k->ntiles - t);
        const int32_t ox = 2 * tx, ncol = k->ow - ox < 2 * len ? k->ow - ox : 2 * len;
        runs[nruns++] = (wino_run){j, ncol, 2 * ty, ox};
        j += len;
    }
    const int nh = k->ntiles - (int64_t)blk * NB <= 8 ? 1 : 2;   /* tiles 8..15 computed (wino_ukr8) */
    const int s8 = k->otype == MDFI_CONV_S8;
    /* the clamp to [qmin - zo, qmax - zo] and + zo (output zero point zo), unless the
     * narrowing saturates to the same range */
    const int clamp = !((s8 && k->bits == 8) || k->bits == 16) || k->zo != 0;
    const __m256i qmin = _mm256_set1_epi32(k->zlo), qmax = _mm256_set1_epi32(k->zhi);
    const __m256i vzo = _mm256_set1_epi32(k->zo);
    for (int32_t r = 0; r < mv; ++r) {
        const int32_t mm = m0 + r, sh = k->shift[mm];
        const int64_t ab = k->bias[mm] < 0 ? -k->bias[mm] : k->bias[mm];
        const mdfi_rqf f = mdfi_rqf_init(sh >= 1 && sh <= 31 ? sh : 1, k->rounding);
        const int fast = sh >= 1 && sh <= 31 && k->bound + ab + f.half <= (int64_t)INT32_MAX;
        const __m256i b = _mm256_set1_epi32((int32_t)(fast ? k->bias[mm] + f.half : k->bias[mm]));
        const __m128i vs = _mm_cvtsi32_si128(sh);
        const __m256i vc = _mm256_set1_epi32(f.c), vkd = _mm256_set1_epi32(f.kd);
        __m256i res[4][2];                       /* [point a][tiles 8hh..8hh+7], int32 */
        __m256i pm[2];                           /* the tiles' max (fused pool)            */
        res[0][1] = res[1][1] = res[2][1] = res[3][1] = pm[0] = pm[1] = _mm256_setzero_si256();
        for (int hh = 0; hh < nh; ++hh) {
            __m256i mx[16];
            for (int xi = 0; xi < 16; ++xi)
                mx[xi] = _mm256_loadu_si256((const __m256i *)(const void *)(ct + ((size_t)xi * MR + (size_t)r) * NR + 8 * hh));
            __m256i u0[4], u1[4], y[4];
            for (int j = 0; j < 4; ++j) {         /* A^T M */
                u0[j] = _mm256_add_epi32(_mm256_add_epi32(mx[j], mx[4 + j]), mx[8 + j]);
                u1[j] = _mm256_sub_epi32(_mm256_sub_epi32(mx[4 + j], mx[8 + j]), mx[12 + j]);
            }
            y[0] = _mm256_add_epi32(_mm256_add_epi32(u0[0], u0[1]), u0[2]);
            y[1] = _mm256_sub_epi32(_mm256_sub_epi32(u0[1], u0[2]), u0[3]);
            y[2] = _mm256_add_epi32(_mm256_add_epi32(u1[0], u1[1]), u1[2]);
            y[3] = _mm256_sub_epi32(_mm256_sub_epi32(u1[1], u1[2]), u1[3]);
            for (int a = 0; a < 4; ++a) {         /* Y = 4 S exactly: S = Y >> 2 */
                const __m256i t = _mm256_add_epi32(_mm256_srai_epi32(y[a], 2), b);
                __m256i v;
                if (fast) {
                    v = k->act == MDFI_ACT_LEAKY ? mdfi_rqf8_avx2(t, vs, vc, vkd, MDFI_ACT_LEAKY)
                      : k->act == MDFI_ACT_RELU ? mdfi_rqf8_avx2(t, vs, vc, vkd, MDFI_ACT_RELU)
                      : mdfi_rqf8_avx2(t, vs, vc, vkd, MDFI_ACT_LINEAR);
                    if (clamp) v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, qmin), qmax), vzo);
                } else {
                    v = wino_rq_general(k, sh, t);
                }
                res[a][hh] = v;
            }
            if (pooled)
                pm[hh] = _mm256_max_epi32(_mm256_max_epi32(res[0][hh], res[1][hh]), _mm256_max_epi32(res[2][hh], res[3][hh]));
        }
        if (pooled) {
            /* the fused 2x2 stride-2 max pool: a tile's four outputs are one window (OH, OW
             * even); the max of the int32 results before the saturating narrowing equals the
             * max of the narrowed values (the narrowing is monotonic) */
            const __m256i p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(pm[0], pm[1]), 0xD8);   /* tiles 0..15 */
            /* the pool's [OH/2][OW/2] plane is the tiles' [TH][TW] grid: tile t at element t,
             * so a block's pools are NB consecutive elements (fewer in the last block) */
            const int64_t t0 = (int64_t)blk * NB, nt = k->ntiles - t0 < NB ? k->ntiles - t0 : NB;
            const size_t o = (size_t)mm * (size_t)k->ntiles + (size_t)t0;
            if (s8) {
                const __m128i p8 = _mm_packs_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
                int8_t *d = (int8_t *)k->pool + o;
                if (nt == NB) {
                    _mm_storeu_si128((__m128i *)(void *)d, p8);
                } else {
                    int8_t tmp[NB];
                    _mm_storeu_si128((__m128i *)(void *)tmp, p8);
                    memcpy(d, tmp, (size_t)nt);
                }
            } else {
                int16_t *d = (int16_t *)k->pool + o;
                if (nt == NB) {
                    _mm256_storeu_si256((__m256i *)(void *)d, p16);
                } else {
                    int16_t tmp[NB];
                    _mm256_storeu_si256((__m256i *)(void *)tmp, p16);
                    memcpy(d, tmp, (size_t)nt * 2);
                }
            }
        }
        for (int a2 = 0; a2 < 2 * write_out; ++a2) {
            /* columns 0..31 of the block's tiles: (even, odd) = points (2 a2, 2 a2 + 1) */
            __m256i w16[2];
            for (int hh = 0; hh < 2; ++hh) {
                const __m256i e = res[2 * a2][hh], o = res[2 * a2 + 1][hh];
                w16[hh] = _mm256_packs_epi32(_mm256_unpacklo_epi32(e, o), _mm256_unpackhi_epi32(e, o));
            }
            if (s8) {
                const __m256i w8 = _mm256_permute4x64_epi64(_mm256_packs_epi16(w16[0], w16[1]), 0xD8);
                int8_t tmp[2 * NB];
                _mm256_storeu_si256((__m256i *)(void *)tmp, w8);
                for (int32_t ri = 0; ri < nruns; ++ri) {
                    const wino_run *u = &runs[ri];
                    const int32_t oy = u->oy + a2;
                    if (oy >= k->oh) continue;
                    int8_t *d = (int8_t *)k->out + ((size_t)mm * (size_t)k->oh + (size_t)oy) * (size_t)k->ow + (size_t)u->ox;
                    if (u->n == 2 * NB) _mm256_storeu_si256((__m256i *)(void *)d, w8);
                    else memcpy(d, tmp + 2 * u->j0, (size_t)u->n);
                }
            } else {
                int16_t tmp[2 * NB];
                _mm256_storeu_si256((__m256i *)(void *)tmp, w16[0]);
                _mm256_storeu_si256((__m256i *)(void *)(tmp + NB), w16[1]);
                for (int32_t ri = 0; ri < nruns; ++ri) {
                    const wino_run *u = &runs[ri];
                    const int32_t oy = u->oy + a2;
                    if (oy >= k->oh) continue;
                    int16_t *d = (int16_t *)k->out + ((size_t)mm * (size_t)k->oh + (size_t)oy) * (size_t)k->ow + (size_t)u->ox;
                    memcpy(d, tmp + 2 * u->j0, (size_t)u->n * 2);
                }
            }
        }
    }
}

/* Two copies of the output step: without the fused pool exactly the plain epilogue (the
 * compiler keeps its registers; a run-time test inside the loop cost 0.2 ms on 208x208). */
AVX2 static void wino_out(const wino_ctx *k, const int32_t *restrict ct, int32_t m0, int32_t mv, int32_t blk)
{
    if (k->pool == NULL) wino_out_body(k, ct, m0, mv, blk, 0, 1);
    else if (k->pool_only) wino_out_body(k, ct, m0, mv, blk, 1, 0);
    else wino_out_body(k, ct, m0, mv, blk, 1, 1);
}

/* C[6][0..7] (+)= A[kcl][6][2] . B[kcl][0..7][2] (B rows of NB pairs): the first 8 tiles of a
 * block only, for a last block of at most 8 tiles (13x13 maps: 49 tiles = 3 blocks + 1).
 * Columns 8..15 of C are not written; the output transform does not read them then.  The
 * same exact int32 arithmetic modulo 2^32 as the 16-wide kernels (mdfi_conv_avx2.c). */
AVX2 static void wino_ukr8(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                           int32_t *restrict c, int accumulate)
{
    __m256i c0, c1, c2, c3, c4, c5;
    if (accumulate) {
        c0 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 0 * NR));
        c1 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 1 * NR));
        c2 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 2 * NR));
        c3 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 3 * NR));
        c4 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 4 * NR));
        c5 = _mm256_loadu_si256((const __m256i *)(const void *)(c + 5 * NR));
    } else {
        c0 = c1 = c2 = c3 = c4 = c5 = _mm256_setzero_si256();
    }
    for (int32_t i = 0; i < kcl; ++i) {
        const __m256i b0 = _mm256_loadu_si256((const __m256i *)(const void *)b);
#define WROW(r, acc) { int32_t av; memcpy(&av, a + 2 * (r), sizeof av); \
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_set1_epi32(av), b0)); }
        WROW(0, c0) WROW(1, c1) WROW(2, c2) WROW(3, c3) WROW(4, c4) WROW(5, c5)
#undef WROW
        a += MR * 2;
        b += bstride;
    }
    _mm256_storeu_si256((__m256i *)(void *)(c + 0 * NR), c0);
    _mm256_storeu_si256((__m256i *)(void *)(c + 1 * NR), c1);
    _mm256_storeu_si256((__m256i *)(void *)(c + 2 * NR), c2);
    _mm256_storeu_si256((__m256i *)(void *)(c + 3 * NR), c3);
    _mm256_storeu_si256((__m256i *)(void *)(c + 4 * NR), c4);
    _mm256_storeu_si256((__m256i *)(void *)(c + 5 * NR), c5);
}

/* C[6][0] (+)= A[kcl][6][2] . B[kcl][0][2]: the first tile of a block only, for a last block of
 * one tile (13x13 maps: 49 tiles = 3 blocks + 1).  The six rows of a K-pair are one xmm (rows
 * 0..3) and one 64-bit load (rows 4..5) multiplied by the broadcast B pair: 2 vpmaddwd per
 * K-pair instead of wino_ukr8's 6 ymm ones.  Columns 1..7 of C are written as 0 (the output
 * transform reads them, and stores only the existing tiles).  The same exact int32 arithmetic
 * modulo 2^32 as the other kernels (the order of the additions does not matter modulo 2^32). */
AVX2 static void wino_ukr1(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                           int32_t *restrict c, int accumulate)
{
    __m128i s03a = _mm_setzero_si128(), s45a = _mm_setzero_si128();
    __m128i s03b = _mm_setzero_si128(), s45b = _mm_setzero_si128();
    int32_t i = 0;
    {
        /* rows 0..5 of K-pairs k and k+1 as one ymm (rows 0-5 of k, 0-1 of k+1) and one xmm
         * (rows 2-5 of k+1), times the pairs broadcast to the matching lanes */
        __m256i y0 = _mm256_setzero_si256(), y1 = _mm256_setzero_si256();
        __m128i x0 = _mm_setzero_si128(), x1 = _mm_setzero_si128();
        for (; i + 4 <= kcl; i += 4) {
            int32_t b0, b1, b2, b3;
            memcpy(&b0, b, sizeof b0);
            memcpy(&b1, b + bstride, sizeof b1);
            memcpy(&b2, b + 2 * bstride, sizeof b2);
            memcpy(&b3, b + 3 * bstride, sizeof b3);
            const __m256i v01 = _mm256_blend_epi32(_mm256_set1_epi32(b0), _mm256_set1_epi32(b1), 0xC0);
            const __m256i v23 = _mm256_blend_epi32(_mm256_set1_epi32(b2), _mm256_set1_epi32(b3), 0xC0);
            y0 = _mm256_add_epi32(y0, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)a), v01));
            x0 = _mm_add_epi32(x0, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)(a + 16)), _mm_set1_epi32(b1)));
            y1 = _mm256_add_epi32(y1, _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(const void *)(a + 24)), v23));
            x1 = _mm_add_epi32(x1, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)(a + 40)), _mm_set1_epi32(b3)));
            a += 4 * MR * 2;
            b += 4 * bstride;
        }
        /* fold: ymm lanes 0-5 = rows 0-5, lanes 6-7 = rows 0-1; xmm lanes 0-3 = rows 2-5 */
        const __m256i y = _mm256_add_epi32(y0, y1);
        const __m128i x = _mm_add_epi32(x0, x1);
        const __m128i ylo = _mm256_castsi256_si128(y), yhi = _mm256_extracti128_si256(y, 1);
        /* rows 0-3: ylo + (yhi lanes 2,3 -> lanes 0,1) + (x lanes 0,1 -> lanes 2,3) */
        s03a = _mm_add_epi32(ylo, _mm_add_epi32(_mm_srli_si128(yhi, 8), _mm_slli_si128(x, 8)));
        /* rows 4-5: yhi lanes 0,1 + x lanes 2,3 */
        s45a = _mm_add_epi32(yhi, _mm_srli_si128(x, 8));
        s45a = _mm_and_si128(s45a, _mm_set_epi32(0, 0, -1, -1));
    }
    for (; i + 2 <= kcl; i += 2) {        /* two independent chains */
        int32_t b0, b1;
        memcpy(&b0, b, sizeof b0);
        memcpy(&b1, b + bstride, sizeof b1);
        const __m128i v0 = _mm_set1_epi32(b0), v1 = _mm_set1_epi32(b1);
        s03a = _mm_add_epi32(s03a, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)a), v0));
        s45a = _mm_add_epi32(s45a, _mm_madd_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(a + 8)), v0));
        s03b = _mm_add_epi32(s03b, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)(a + MR * 2)), v1));
        s45b = _mm_add_epi32(s45b, _mm_madd_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(a + MR * 2 + 8)), v1));
        a += 2 * MR * 2;
        b += 2 * bstride;
    }
    if (i < kcl) {
        int32_t b0;
        memcpy(&b0, b, sizeof b0);
        const __m128i v0 = _mm_set1_epi32(b0);
        s03a = _mm_add_epi32(s03a, _mm_madd_epi16(_mm_loadu_si128((const __m128i *)(const void *)a), v0));
        s45a = _mm_add_epi32(s45a, _mm_madd_epi16(_mm_loadl_epi64((const __m128i *)(const void *)(a + 8)), v0));
    }
    int32_t r[8];
    _mm_storeu_si128((__m128i *)(void *)r, _mm_add_epi32(s03a, s03b));
    _mm_storeu_si128((__m128i *)(void *)(r + 4), _mm_add_epi32(s45a, s45b));
    for (int j = 0; j < MR; ++j) {
        const uint32_t v = (uint32_t)r[j] + (accumulate ? (uint32_t)c[j * NR] : 0u);   /* modulo 2^32 */
        _mm256_storeu_si256((__m256i *)(void *)(c + j * NR), _mm256_setzero_si256());
        memcpy(c + j * NR, &v, sizeof v);
    }
}

/* The kernel of a block with `rem` = ntiles - first tile tiles left. */
static ukr32_fn wino_block_ukr(const wino_ctx *k, int64_t rem)
{
    return rem <= 1 ? wino_ukr1 : rem <= 8 ? wino_ukr8 : k->ukr;
}

/* Panels [p0, p1) of V block blk (at vb), PG panels at a time: each V_xi (C2 x NB pairs) is
 * then read from L1 by PG micro-kernel calls in a row. */
static void wino_compute(const wino_ctx *k, int tid, int32_t p0, int32_t p1, int32_t blk, const int16_t *vb)
{
    int32_t *ct0 = (int32_t *)(void *)(k->tbase + (size_t)tid * k->tbytes);
    const ukr32_fn ukr = wino_block_ukr(k, k->ntiles - (int64_t)blk * NB);
    for (int32_t g0 = p0; g0 < p1; g0 += PG) {
        const int32_t g1 = g0 + PG < p1 ? g0 + PG : p1;
        for (int32_t c0 = 0; c0 < k->c2; c0 += KC) {
            const int32_t kcl = (k->c2 - c0) < KC ? (k->c2 - c0) : KC;
            for (int xi = 0; xi < 16; ++xi) {
                const int16_t *bv = vb + ((size_t)xi * (size_t)k->c2 + (size_t)c0) * NB * 2;
                for (int32_t p = g0; p < g1; ++p) {
                    const int16_t *a = k->u + (((size_t)xi * (size_t)k->np + (size_t)p) * (size_t)k->c2 + (size_t)c0) * MR * 2;
                    (ukr == k->ukr && p == k->np - 1 ? k->ukr_last : ukr)(
                        kcl, a, bv, NB * 2, ct0 + ((size_t)(p - g0) * 16 + (size_t)xi) * MR * NR, c0 > 0);
                }
            }
        }
        for (int32_t p = g0; p < g1; ++p) {
            const int32_t m0 = p * MR, mv = (k->m - m0) < MR ? (k->m - m0) : MR;
            wino_out(k, ct0 + (size_t)(p - g0) * 16 * MR * NR, m0, mv, blk);
        }
    }
}

/* Panels [p0, p1) of every block at once (k->allb: few blocks, e.g. 13x13 maps): the blocks
 * are the innermost loop, so each transformed-weight panel U_xi is read once per call (from
 * memory: 16 MB for 1024 x 512 channels) instead of once per block; the V blocks come from
 * the shared area (L2).  PGA panels at a time: C tiles [PGA][nblk][16][MR][NR]. */
static void wino_compute_all(const wino_ctx *k, int tid, int32_t p0, int32_t p1)
{
    int32_t *ct0 = (int32_t *)(void *)(k->tbase + (size_t)tid * k->tbytes);
    const int32_t nb = k->nblk;
    for (int32_t g0 = p0; g0 < p1; g0 += PGA) {
        const int32_t g1 = g0 + PGA < p1 ? g0 + PGA : p1;
        for (int32_t c0 = 0; c0 < k->c2; c0 += KC) {
            const int32_t kcl = (k->c2 - c0) < KC ? (k->c2 - c0) : KC;
            for (int xi = 0; xi < 16; ++xi)
                for (int32_t p = g0; p < g1; ++p) {
                    const int16_t *a = k->u + (((size_t)xi * (size_t)k->np + (size_t)p) * (size_t)k->c2 + (size_t)c0) * MR * 2;
                    {   /* the next panel in this loop's order, into L2 (U comes from memory; the same
                         * prefetch in wino_compute, whose U mostly stays in L3, gave nothing) */
                        const int nxi = p + 1 < g1 ? xi : (xi + 1) % 16;
                        const int32_t np_ = p + 1 < g1 ? p + 1 : (xi + 1 < 16 ? g0 : (g1 < p1 ? g1 : g0));
                        const char *pa = (const char *)(k->u + (((size_t)nxi * (size_t)k->np + (size_t)np_) * (size_t)k->c2 + (size_t)c0) * MR * 2);
                        for (size_t o = 0; o < (size_t)kcl * MR * 4; o += 64) __builtin_prefetch(pa + o, 0, 2);
                    }
                    for (int32_t b = 0; b < nb; ++b) {
                        const int16_t *bv = k->vshared + (size_t)b * (k->vbytes / 2) + ((size_t)xi * (size_t)k->c2 + (size_t)c0) * NB * 2;
                        const ukr32_fn ukr = wino_block_ukr(k, k->ntiles - (int64_t)b * NB);
                        ukr(kcl, a, bv, NB * 2, ct0 + (((size_t)(p - g0) * (size_t)nb + (size_t)b) * 16 + (size_t)xi) * MR * NR, c0 > 0);
                    }
                }
        }
        for (int32_t p = g0; p < g1; ++p) {
            const int32_t m0 = p * MR, mv = (k->m - m0) < MR ? (k->m - m0) : MR;
            for (int32_t b = 0; b < nb; ++b)
                wino_out(k, ct0 + ((size_t)(p - g0) * (size_t)nb + (size_t)b) * 16 * MR * NR, m0, mv, b);
        }
    }
}

typedef struct {
    const wino_ctx *k;
    mdfi_counter x2, x2_done, vb, vb_done, item;
} wino_job;

static void wino_worker(void *arg, int tid)
{
    wino_job *job = (wino_job *)arg;
    const wino_ctx *k = job->k;
    /* X2 by padded rows y of every channel pair, from both ends (thread 0 the top rows, which
     * its blocks then read, thread 1 the bottom ones): done items count rows */
    if (k->hp1 >= SPATIAL_MIN_ROWS) {
        const int64_t rowpairs = (int64_t)k->c2 * k->wp1;
        const int64_t per = rowpairs >= 8192 ? 1 : 8192 / rowpairs;
        const int64_t nx = ((int64_t)k->hp1 + per - 1) / per;
        for (int64_t i0, i1; (i0 = mdfi_pool_next_end(&job->x2, nx, tid & 1, 4, 1, &i1)) < nx;) {
            const int64_t y0 = i0 * per, y1 = i1 * per < k->hp1 ? i1 * per : k->hp1;
            for (int64_t cc = 0; cc < k->c2; ++cc) wino_x2(k, cc * k->hp1 + y0, cc * k->hp1 + y1);
            for (int64_t i = i0; i < i1; ++i) mdfi_pool_done(&job->x2_done, nx);
        }
        mdfi_pool_wait(&job->x2_done, nx);
    } else {                                    /* small maps: rows in channel order */
        const int64_t rows = (int64_t)k->c2 * k->hp1;
        const int64_t per = k->wp1 >= 8192 ? 1 : 8192 / k->wp1;
        const int64_t nx = (rows + per - 1) / per;
        for (int64_t i; (i = mdfi_pool_next(&job->x2)) < nx;) {
            wino_x2(k, i * per, (i + 1) * per < rows ? (i + 1) * per : rows);
            mdfi_pool_done(&job->x2_done, nx);
        }
        mdfi_pool_wait(&job->x2_done, nx);
    }
    if (k->ngrid > 0) {
        /* few blocks on several threads: every V block once into the shared area, then
         * items of (block, panel group), blocks outer, so that the threads share out the
         * panels of a block instead of whole blocks (11 blocks on 2 threads: 6 and 5) */
        for (int64_t b; (b = mdfi_pool_next(&job->vb)) < k->nblk;) {
            wino_vblock(k, (int32_t)b, k->vshared + (size_t)b * (k->vbytes / 2));
            mdfi_pool_done(&job->vb_done, k->nblk);
        }
        mdfi_pool_wait(&job->vb_done, k->nblk);
        const int64_t items = (int64_t)k->nblk * k->ngrid;
        for (int64_t g; (g = mdfi_pool_next(&job->item)) < items;) {
            const int32_t b = (int32_t)(g / k->ngrid), q = (int32_t)(g % k->ngrid);
            const int32_t p0 = (int32_t)((int64_t)k->np * q / k->ngrid);
            const int32_t p1 = (int32_t)((int64_t)k->np * (q + 1) / k->ngrid);
            wino_compute(k, tid, p0, p1, b, k->vshared + (size_t)b * (k->vbytes / 2));
        }
    } else if (k->msplit || k->allb) {
        for (int64_t b; (b = mdfi_pool_next(&job->vb)) < k->nblk;) {
            wino_vblock(k, (int32_t)b, k->vshared + (size_t)b * (k->vbytes / 2));
            mdfi_pool_done(&job->vb_done, k->nblk);
        }
        mdfi_pool_wait(&job->vb_done, k->nblk);
        for (int64_t g; (g = mdfi_pool_next(&job->item)) < k->ngroups;) {
            const int32_t p0 = (int32_t)((int64_t)k->np * g / k->ngroups);
            const int32_t p1 = (int32_t)((int64_t)k->np * (g + 1) / k->ngroups);
            if (k->allb) {
                wino_compute_all(k, tid, p0, p1);
                continue;
            }
            for (int32_t b = 0; b < k->nblk; ++b)
                wino_compute(k, tid, p0, p1, b, k->vshared + (size_t)b * (k->vbytes / 2));
        }
    } else {
        /* runs of consecutive blocks from both ends (thread 0 the top of the map, thread 1 the
         * bottom): threads taking alternate blocks wrote alternate 32-byte halves of the same
         * output cache lines, and read X2 rows the other thread had written */
        int16_t *vb = (int16_t *)(void *)(k->tbase + (size_t)tid * k->tbytes + (size_t)CT_TILES * MR * NR * 4);
        for (int64_t b0, b1; (b0 = mdfi_pool_next_end(&job->item, k->nblk, tid & 1, 2 * (int64_t)k->nthr, 1, &b1)) < k->nblk;)
            for (int64_t b = b0; b < b1; ++b) {
                wino_vblock(k, (int32_t)b, vb);
                wino_compute(k, tid, 0, k->np, (int32_t)b, vb);
            }
    }
}

#define ALIGN 64
static size_t align_up(size_t n) { return (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1); }

int64_t mdfi_wino_scratch_size(int32_t c, int32_t h, int32_t w, int32_t pad, int32_t nthreads)
{
    if (c < 1 || h < 1 || w < 1 || pad < 0 || nthreads < 1) return -1;
    const int64_t c2 = ((int64_t)c + 1) / 2, hp1 = (int64_t)h + 2 * pad + 1, wp1 = (int64_t)w + 2 * pad + 1;
    const int64_t oh = (int64_t)h + 2 * pad - 2, ow = (int64_t)w + 2 * pad - 2;
    if (oh < 1 || ow < 1 || hp1 * wp1 > INT32_MAX / 4 || c2 > (1 << 20)) return -1;
    const int64_t ntiles = ((oh + 1) / 2) * ((ow + 1) / 2), nblk = (ntiles + NB - 1) / NB;
    const uint64_t x2 = (uint64_t)(c2 * hp1 * wp1) * 4u;
    const uint64_t vblk = 16u * (uint64_t)c2 * NB * 4u;
    const uint64_t shared = vblk * (uint64_t)nblk;
    const uint64_t per = align_up((size_t)(CT_TILES * MR * NR * 4)) + align_up((size_t)vblk);
    const uint64_t total = ALIGN + align_up((size_t)x2) + align_up((size_t)shared) + per * (uint64_t)nthreads;
    return total > (uint64_t)INT64_MAX / 4 ? -1 : (int64_t)total;
}

int mdfi_wino_conv(const conv_ops *ops, const void *x, int xtype, int32_t c, int32_t h, int32_t w, const int16_t *u,
                   const int64_t *bias, const int32_t *shift, int32_t m, void *out, void *pool, int32_t pool_only,
                   int otype, int32_t pad,
                   int32_t rounding, int32_t bits, int32_t act, int64_t bound, int32_t nthreads, void *scratch,
                   int32_t pad_value, int32_t zero_out)
{
    wino_ctx k;
    memset(&k, 0, sizeof k);
    k.x = x; k.xtype = xtype; k.c = c; k.h = h; k.w = w; k.pad = pad; k.m = m;
    k.c2 = (c + 1) / 2;
    k.np = (m + MR - 1) / MR;
    k.oh = h + 2 * pad - 2; k.ow = w + 2 * pad - 2;
    k.th = (k.oh + 1) / 2; k.tw = (k.ow + 1) / 2;
    k.hp1 = h + 2 * pad + 1; k.wp1 = w + 2 * pad + 1;
    k.plane = (int64_t)k.hp1 * k.wp1;
    k.ntiles = (int64_t)k.th * k.tw;
    k.nblk = (int32_t)((k.ntiles + NB - 1) / NB);
    k.u = u; k.bias = bias; k.shift = shift; k.out = out; k.otype = otype;
    k.pool = (k.oh % 2 == 0 && k.ow % 2 == 0) ? pool : NULL;
    k.pool_only = k.pool != NULL && pool_only;
    k.rounding = rounding; k.bits = bits; k.act = act; k.bound = bound;
    k.padv = pad_value; k.zo = zero_out;
    k.zlo = mdfi_qmin(bits) - zero_out; k.zhi = mdfi_qmax(bits) - zero_out;
    k.nthr = nthreads;
    k.ukr = ops->ukr32;
    k.ukr_last = ops->ukr32_rows != NULL ? ops->ukr32_rows(m - (k.np - 1) * MR) : ops->ukr32;
    k.msplit = nthreads > 1 && (int64_t)k.nblk < 4 * (int64_t)nthreads && k.np >= 2 * nthreads;
    k.pgroup = (int32_t)((k.np + 8 * (int64_t)nthreads - 1) / (8 * (int64_t)nthreads));
    if (k.pgroup < 1) k.pgroup = 1;
    /* measured (yolov3-tiny, 13x13, one thread): U of 16.8 MB 0.93x, U of 4.2 MB 1.12x (its V
     * blocks then come from L2 instead of L1, and U stays in L3 anyway) */
    k.allb = k.nblk > 1 && k.nblk <= ALLB && mdfi_wino_packed_bytes(m, c) >= ALLB_BYTES;
    if (k.allb && !k.msplit) k.pgroup = k.np;
    /* groups of equal size (within one panel), as many as a multiple of the thread count:
     * 171 panels in groups of 11 gave 15 of 11 and one of 6, shared out 88 / 83 on 2 threads */
    k.ngroups = (int32_t)((k.np + k.pgroup - 1) / k.pgroup);
    if (k.msplit) {
        k.ngroups = (k.ngroups + nthreads - 1) / nthreads * nthreads;
        if (k.ngroups > k.np) k.ngroups = k.np;
    }
    /* N split with a block count that does not share out evenly (26x26: 11 blocks): panel
     * groups of every block, ngrid per block, so that the item count is a multiple of the
     * thread count (the V blocks are made once, in the shared area, as for msplit).  From 16
     * blocks per thread on (52x52: 43 blocks) the two-ended N split instead: runs of blocks
     * end within a block or two of even, and each thread keeps its half of the map. */
    if (nthreads > 1 && !k.msplit && !k.allb && k.nblk % nthreads != 0 && k.nblk < 16 * (int64_t)nthreads &&
        k.np >= 2 * nthreads)
        k.ngrid = nthreads;
    k.vbytes = (size_t)16 * (size_t)k.c2 * NB * 4;
    k.tbytes = align_up((size_t)(CT_TILES * MR * NR * 4)) + align_up(k.vbytes);
    unsigned char *s = (unsigned char *)scratch;
    k.x2 = (int16_t *)(void *)s;
    s += align_up((size_t)k.c2 * (size_t)k.plane * 4);
    k.vshared = (int16_t *)(void *)s;
    s += align_up(k.vbytes * (size_t)k.nblk);
    k.tbase = s;
    wino_job job;
    memset(&job, 0, sizeof job);
    job.k = &k;
    mdfi_pool_run(wino_worker, &job, nthreads);
    return k.pool != NULL;
}

#endif /* MDFI_CONV_X86 */
