/* mdfi_conv_internal.h -- data layouts shared by mdfi_conv.c (driver), mdfi_conv_pack.c
 * (weight packing), mdfi_conv_scalar.c (scalar path) and mdfi_conv_avx2.c (AVX2 path).  Not
 * part of the public API.
 *
 * GEMM view: out[M][N] = A[M][K] * B[K][N], N = OH*OW output pixels, K = C*ks*ks.
 *
 * K order.  Both operands use the same order of the reduction index, chosen so that
 * vpmaddwd's pairs are two *channels* at one kernel tap:
 *     kp = tap*C2 + cc,  tap = ky*ks + kx,  C2 = ceil(C/2),  pair = channels (2cc, 2cc+1)
 * (a missing channel 2cc+1 = C is a zero).  Integer sums are exact in any order, so this
 * permutation of Darknet's k = (c*ks + ky)*ks + kx changes nothing.  K2 = ks*ks*C2 pairs.
 * Every element is int16 (int8/uint8 data are widened exactly); a "pair" is two int16 at
 * consecutive addresses, element 0 = the even channel.
 *
 * Layouts (int16 units, row-major):
 *   packed A : header (MDFI_CONV_HDR bytes) + [P][K2][MR][2]   P = ceil(M/MR) panels;
 *              rows m >= M and channels >= C are zero.
 *   X2       : [C2][Hp][Wp][2]  the input padded with pad_value (ctx->padv; a missing odd
 *              channel is 0 everywhere), channel pairs interleaved,
 *              Hp = H + 2*pad, Wp = W + 2*pad ("plane" = Hp*Wp pairs).
 *   B tile   : [kcl][NR][2]     pixels t*NR .. t*NR+NR-1 (clamped to N-1 at the end) of
 *              K-pairs kc0 .. kc0+kcl-1:  B[i][j] = X2[cc][off_j + ky*Wp + kx].
 *              1x1 stride-1 unpadded convolutions ("direct") read B straight from X2
 *              (row i = plane cc = kc0 + i, pixels t*NR ..), no packing; X2 then has NR
 *              pairs of slack after its last plane for the last, partial tile.
 *   C tile   : [MR][NR]         int32 (or int64) accumulators of one register tile.
 */
#ifndef MDFI_CONV_INTERNAL_H
#define MDFI_CONV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mdfi_conv.h"
#include "mdfi_fixedpoint.h"

#define MR MDFI_CONV_MR
#define NR MDFI_CONV_NR
#define MDFI_CONV_HDR 64          /* bytes of the packed-weights header */
/* Header (int32 at byte offsets, host byte order): 0 magic (8 bytes), 8 M, 12 C, 16 ks,
 * 20 weight type, 24 MR, 28 C2, 32 K2, 36 P, 40 max|w|, 44 max |Winograd weight| (-1: none),
 * 48 (int64) max over m of sum_k |w[m][k]|: with the input type's max|x| the tight bound of
 * every (partial) sum of the layer (mdfi_conv.c, conv2d_impl: ctx.bound). */

#if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64)) && !defined(MDFI_NO_SIMD)
#define MDFI_CONV_X86 1
#else
#define MDFI_CONV_X86 0
#endif
#if defined(__GNUC__) && defined(__aarch64__) && !defined(MDFI_NO_SIMD)
#define MDFI_CONV_ARM 1
#else
#define MDFI_CONV_ARM 0
#endif

/* Worker threads (mdfi_conv_pool.c): POSIX threads with C11 atomics, else none. */
#if !defined(MDFI_NO_THREADS) && (defined(__unix__) || defined(__APPLE__)) && \
    !defined(__STDC_NO_ATOMICS__)
#define MDFI_POOL 1
#include <stdatomic.h>
typedef _Atomic int64_t mdfi_counter;
#else
#define MDFI_POOL 0
typedef int64_t mdfi_counter;
#endif
#define MDFI_POOL_MAX_THREADS 256

/* Run fn(arg, tid) on up to nthreads threads: the caller (tid 0) and pool workers that
 * join while the caller is still busy with the job (tids 1..).  Returns the number of
 * participants.  fn must hand out its work through counters (mdfi_pool_next), so that it
 * is complete whoever joins. */
typedef void (*mdfi_job_fn)(void *arg, int tid);
int mdfi_pool_run(mdfi_job_fn fn, void *arg, int nthreads);
/* Stop and join every worker (after the running job, if any); the pool restarts lazily. */
void mdfi_pool_shutdown(void);
/* Atomically return *counter and increment it (the next work item). */
int64_t mdfi_pool_next(mdfi_counter *counter);
/* Guided runs of consecutive items from both ends of [0, total) (total < 2^31; the counter
 * starts at 0): atomically take [start, *end), max(minrun, left / parts) items long, from the
 * front (`back` = 0) or from the back (1); returns start (>= total: nothing left).  The runs
 * shrink towards the end for balance.  Participants with even tids taking the front
 * and odd ones the back give two threads the same halves of a map in every phase and layer
 * (thread 0 the top, thread 1 the bottom), so that most of what a thread reads it wrote
 * itself (in its own cache) instead of the other core. */
int64_t mdfi_pool_next_end(mdfi_counter *counter, int64_t total, int back, int64_t parts, int64_t minrun,
                           int64_t *end);
/* Re-layouts (X2, X4) split by plane rows from both ends from this many padded rows on
 * (smaller maps: rows in channel order, fewer and longer calls). */
#define SPATIAL_MIN_ROWS 32
/* A work item of a phase with `total` items is done / wait until all of them are done. */
void mdfi_pool_done(mdfi_counter *counter, int64_t total);
void mdfi_pool_wait(mdfi_counter *counter, int64_t total);

typedef struct conv_ctx {
    /* input */
    const void *x;
    int xtype;
    int32_t c, h, w;
    /* weights */
    const int16_t *a;             /* packed A data: [P][K2][MR][2]                  */
    int32_t m, ks, stride, pad;
    int32_t c2, k2, npanels;
    int32_t wmax;
    /* epilogue */
    const int64_t *bias;          /* [M]                                           */
    const int32_t *shift;         /* [M]                                           */
    void *out;                    /* [M][N] int8 or int16                          */
    int otype;
    int32_t rounding, bits, act, acc64;
    int32_t padv;                 /* the padding value (the input's zero point)     */
    int32_t zo, zlo, zhi;         /* the output zero point; the clamp bounds before it is
                                     added: qmin(bits) - zo, qmax(bits) - zo           */
    int32_t sum32;                /* 1: bound + max|bias| < 2^31, so every sum and
                                     sum + bias is an exact int32 (int32-lane epilogue)  */
    int64_t bound;                /* min(K*max|w|, max_m sum_k |w[m][k]|) * max|x|
                                     (>= |sum| of every channel, partial sums too)    */
    /* geometry */
    int32_t oh, ow, hp, wp;
    int64_t n;                    /* OH*OW                                         */
    int64_t plane;                /* Hp*Wp (pairs)                                 */
    int32_t ntiles;               /* ceil(N/NR)                                    */
    int32_t kc2, nkc;             /* K-pair block length and count                 */
    int32_t nb;                   /* tiles per N block                             */
    int32_t msplit;               /* 1: threads split M (panels), 0: split N       */
    int32_t pgroup;               /* panels per work item (M split)                */
    int64_t nitems;               /* work items (either split), equal to within one */
    int32_t direct;               /* 1x1, stride 1, pad 0: B read from X2          */
    int32_t x1;                   /* 1x1, stride 1, pad 0, packed: the B tiles are packed
                                     straight from x (no X2; AVX2 packing)          */
    int32_t tp;                   /* 1: 3-channel input, tap-pair K order (AVX2 packing,
                                     mdfi_conv.c conv_int16): kp < taps is pair (c0, c1)
                                     of tap kp, kp = taps + j is (c2 of tap 2j, c2 of tap
                                     2j + 1): K2 = taps + ceil(taps/2) instead of 2 taps */
    int32_t chunk;                /* acc64: K-pairs summed in int32 before widening;
                                     0 = accumulate straight into int64            */
    int32_t split;                /* acc64, int16 inputs, SIMD: the B data are split into
                                     lo = x & 255 and hi = x >> 8 (x = 256 hi + lo) and
                                     each half is summed in int32 for schunk K-pairs
                                     (mdfi_conv.c, conv_int16; never on the scalar path) */
    int32_t schunk;               /* split: K-pairs per int32 chunk of either half    */
    int32_t path;
    /* scratch */
    int16_t *x2;                  /* [C2][Hp][Wp][2]                               */
    int16_t *bshared;             /* msplit: [ntiles][K2][NR][2]                   */
    int16_t *bshared_hi;          /* msplit and split: the hi halves, same layout    */
    unsigned char *tbase;         /* per-thread areas, tbytes each                 */
    size_t tbytes;
    size_t bpriv_bytes;           /* private B block [nb][kc2][NR][2] (N split)    */
    size_t part_bytes;            /* partial C tiles                               */
} conv_ctx;

/* Per-path operations. */

/* C[MR][NR] (=|+=) A[kcl][MR][2] . B[kcl][NR][2], int32 arithmetic modulo 2^32.  Row i of
 * B starts at b + i*bstride (int16 units): NR*2 for a packed tile, the X2 plane for 1x1. */
typedef void (*ukr32_fn)(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b,
                         size_t bstride, int32_t *restrict c, int accumulate);
/* Pack B tile t, K-pairs kc0 .. kc0+kcl-1 into dst [kcl][NR][2]. */
typedef void (*pack_fn)(const conv_ctx *ctx, int32_t t, int32_t kc0, int32_t kcl,
                        int16_t *restrict dst);
/* Rows r0..r1-1 of X2 (row index = cc*Hp + y). */
typedef void (*x2_fn)(const conv_ctx *ctx, int64_t r0, int64_t r1);
/* Requantize a C tile into out: rows m0..m0+mv-1, pixels p0..p0+nv-1. */
typedef void (*epi32_fn)(const conv_ctx *ctx, const int32_t *restrict c, int32_t m0,
                         int32_t mv, int64_t p0, int32_t nv);
typedef void (*epi64_fn)(const conv_ctx *ctx, const int64_t *restrict c, int32_t m0,
                         int32_t mv, int64_t p0, int32_t nv);
/* c64[MR*NR] += c32[MR*NR] */
typedef void (*widen_fn)(int64_t *restrict c64, const int32_t *restrict c32);
/* c64[MR*NR] += lo[MR*NR] + 256 * hi[MR*NR] (exact in int64) */
typedef void (*widen2_fn)(int64_t *restrict c64, const int32_t *restrict lo, const int32_t *restrict hi);
/* The split of n int16 values: hi[i] = b[i] >> 8 (arithmetic, -128..127), then
 * b[i] = b[i] & 255 (0..255), so that the old b[i] = 256 * hi[i] + b[i]. */
typedef void (*split_fn)(int16_t *restrict b, int16_t *restrict hi, size_t n);
/* Two tiles at once (optional): C[2][MR][NR] (=|+=) A . B0 and A . B1. */
typedef void (*ukr32x2_fn)(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b0,
                           const int16_t *restrict b1, size_t bstride, int32_t *restrict c, int accumulate);

/* Per-row constants of a panel for the register epilogue (ukr32e): the folded int32 form of
 * mdfi_fixedpoint.h (mdfi_rqf_init) -- accumulators start at bh = bias + half, R = t >> s,
 * leaky with c and kd.  Only for panels whose every row has 1 <= s <= 31 and
 * bound + |bias| + half <= INT32_MAX (mdfi_conv.c, panel_rows). */
typedef struct {
    int32_t bh[MR], s[MR], c[MR], kd[MR];
} conv_rows;
/* C[MR][NR] = (cin ? cin : 0) + bh + A[kcl][MR][2] . B[kcl][NR][2], then requantized from the
 * registers into out: rows m0..m0+mv-1, pixels p0..p0+nv-1 (the last K block of a tile). */
typedef void (*ukr32e_fn)(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                          const int32_t *restrict cin, const conv_rows *rows, const conv_ctx *ctx, int32_t m0,
                          int32_t mv, int64_t p0, int32_t nv);

typedef struct conv_ops {
    ukr32_fn ukr32;
    pack_fn pack;
    x2_fn x2;
    epi32_fn epi32;
    epi64_fn epi64;
    widen_fn widen;
    ukr32x2_fn ukr32x2;           /* NULL: one tile per call */
    ukr32e_fn ukr32e;             /* NULL: ukr32 then epi32 */
    /* NULL, or the ukr32 for the first mv rows of a panel only (rows mv..MR-1 of C are then
     * not written; for a last panel of fewer than MR rows, e.g. Winograd's) */
    ukr32_fn (*ukr32_rows)(int32_t mv);
    /* the split acc64 path (ctx->split); every table sets both (the portable ones in
     * mdfi_conv_scalar.c where a path has no vector twin) */
    split_fn split;
    widen2_fn widen2;
} conv_ops;

/* uint32 -> int32 modulo 2^32, without implementation-defined conversions. */
static inline int32_t mdfi_wrap_i32(uint32_t u)
{
    return (u <= (uint32_t)INT32_MAX) ? (int32_t)u
                                      : (int32_t)(u - 2147483648u) - INT32_MAX - 1;
}

/* mdfi_conv_pack.c: packed-weights geometry; 0 or -1.  Layout: header (MDFI_CONV_HDR bytes), the int16-pair
 * panels A [P][K2][MR][2], then (64-byte aligned) wsum [M] int32 and the 8-bit panels
 * A4 [P16][taps][C4][16][4] (mdfi_conv_q8.h), filled for int8 weights only; x86 builds add
 * the AMX tiles AT [P16][taps][C4B][16][16][4] (the same weights, 1 KB per tile). */
#if MDFI_CONV_X86
#define PACK_AT 1
#else
#define PACK_AT 0
#endif
typedef struct {
    int32_t c2, k2, np, c4, c4b, np16;
    int64_t wsum_off, a4_off, at_off, wino_off, bytes;
} packed_geom;
int mdfi_conv_packed_geometry(int32_t m, int32_t c, int32_t ks, packed_geom *g);

/* An int32 of the packed-weights header (unaligned, host byte order). */
static inline int32_t mdfi_conv_rd32(const unsigned char *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline int64_t mdfi_conv_rd64(const unsigned char *p)
{
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline int32_t mdfi_conv_type_max_abs(int t)  /* max |value| of an element type */
{
    return t == MDFI_CONV_U8 ? 255 : (t == MDFI_CONV_S8 ? 128 : 32768);
}

/* mdfi_conv_scalar.c: the scalar path. */
extern const conv_ops mdfi_conv_ops_scalar;
/* c64 += A . B in exact int64 (the driver's acc64 layers without int32 chunks, any path). */
void mdfi_conv_ukr64_scalar(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                            int64_t *restrict c);
/* the portable operations, for paths that vectorise only some of them */
void mdfi_conv_pack_scalar(const conv_ctx *ctx, int32_t t, int32_t kc0, int32_t kcl, int16_t *restrict dst);
void mdfi_conv_x2_scalar(const conv_ctx *ctx, int64_t r0, int64_t r1);
void mdfi_conv_epi32_scalar(const conv_ctx *ctx, const int32_t *restrict c, int32_t m0, int32_t mv, int64_t p0,
                            int32_t nv);
void mdfi_conv_epi64_scalar(const conv_ctx *ctx, const int64_t *restrict c, int32_t m0, int32_t mv, int64_t p0,
                            int32_t nv);
void mdfi_conv_widen_scalar(int64_t *restrict c64, const int32_t *restrict c32);
void mdfi_conv_widen2_scalar(int64_t *restrict c64, const int32_t *restrict lo, const int32_t *restrict hi);
void mdfi_conv_split_scalar(int16_t *restrict b, int16_t *restrict hi, size_t n);
/* mdfi_conv.c: the split acc64 path: -1 automatic (default), 0 never, 1 whenever it applies */
extern int mdfi_conv_split_mode;
#if MDFI_CONV_X86
extern const conv_ops mdfi_conv_ops_avx2;
extern const conv_ops mdfi_conv_ops_avx512;
extern const conv_ops mdfi_conv_ops_vnni16;     /* mdfi_conv_ops_avx512 with vpdpwssd kernels */
void mdfi_conv_vnni16_ukr32(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                            int32_t *restrict c, int accumulate);
void mdfi_conv_vnni16_ukr32x2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b0,
                              const int16_t *restrict b1, size_t bstride, int32_t *restrict c, int accumulate);
void mdfi_conv_avx512_ukr32(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b, size_t bstride,
                            int32_t *restrict c, int accumulate);
void mdfi_conv_avx512_ukr32x2(int32_t kcl, const int16_t *restrict a, const int16_t *restrict b0,
                              const int16_t *restrict b1, size_t bstride, int32_t *restrict c, int accumulate);
#endif
#if MDFI_CONV_ARM
extern const conv_ops mdfi_conv_ops_neon;
#endif

/* mdfi_conv_paths.c: the operations of an (available, effective) path: int16-pair ops and
 * the 8-bit dot-product ops (NULL when the path has none). */
struct q8_ops;
void mdfi_conv_path_ops(int32_t path, const conv_ops **pair, const struct q8_ops **q8);

/* mdfi_conv_wino.c: Winograd F(2x2,3x3) for 8-bit 3x3 stride-1 layers on the int16-pair SIMD
 * paths.  mdfi_wino_pack returns max |U| (the layer is eligible when it is <= 32767). */
int64_t mdfi_wino_packed_bytes(int32_t m, int32_t c);
int32_t mdfi_wino_pack(const void *w, int wtype, int32_t m, int32_t c, int16_t *u);
int64_t mdfi_wino_scratch_size(int32_t c, int32_t h, int32_t w, int32_t pad, int32_t nthreads);
/* pool: NULL, or the [M][OH/2][OW/2] output (otype) of the 2x2 stride-2 max pool of the
 * output, written as well (ignored unless OH and OW are even); pool_only: then out is not
 * written.  Returns 1 when it wrote the pool, else 0 (and out). */
int mdfi_wino_conv(const conv_ops *ops, const void *x, int xtype, int32_t c, int32_t h, int32_t w, const int16_t *u,
                   const int64_t *bias, const int32_t *shift, int32_t m, void *out, void *pool, int32_t pool_only,
                   int otype, int32_t pad,
                   int32_t rounding, int32_t bits, int32_t act, int64_t bound, int32_t nthreads, void *scratch,
                   int32_t pad_value, int32_t zero_out);
extern int mdfi_conv_winograd;
#define MDFI_WINO_MIN_C 16        /* fewer input channels: the transforms cost more than they save
                                     (16: yolov3-tiny layer 2, 16x208x208 -> 32, 0.88x on AVX2) */

/* The fused shortcut of one element (mdfi_conv.h): exact, int64. */
static inline int32_t mdfi_conv_res_value(const mdfi_conv_residual *r, int32_t a, int32_t b)
{
    return mdfi_requantize((int64_t)a * (((int64_t)1) << r->da) + (int64_t)b * (((int64_t)1) << r->db), r->shift,
                           r->rounding, r->bits, r->act);
}
/* mdfi_conv_post.c: MDFI_CONV_OK or the error code of an invalid fused shortcut. */
int mdfi_conv_check_residual(const mdfi_conv_residual *r);
/* mdfi_conv_post.c: the fused shortcut as a pass over a finished output a ([n] of a_type),
 * elements [0, n) on nthreads threads (AVX2 when simd, the CPU has it and a, b are 8-bit;
 * simd = 0 on the scalar path, which stays portable C). */
void mdfi_conv_residual_pass(const mdfi_conv_residual *res, const void *a, int a_type, int64_t n, int simd,
                             int32_t nthreads);

/* mdfi_conv2d on exactly `path` (no availability check, no self-check): the self-check and
 * mdfi_conv2d call it. */
int mdfi_conv2d_on(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                   const void *packed, int64_t packed_size, const int64_t *bias, const int32_t *shift,
                   int32_t m, void *out, int otype, int64_t out_count, int32_t ks, int32_t stride,
                   int32_t pad, int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                   int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                   const mdfi_conv_residual *res, int32_t pad_value, int32_t zero_out);

/* Fill n pairs of X2 with the padding value v: (v, v), or (v, 0) when the pair has no odd
 * channel (has1 = 0; that element stays 0 everywhere, as packings rely on). */
static inline void mdfi_conv_fill_pad(int16_t *d, size_t npairs, int32_t v, int has1)
{
    if (v == 0) {
        memset(d, 0, npairs * 4);
        return;
    }
    for (size_t i = 0; i < npairs; ++i) {
        d[2 * i] = (int16_t)v;
        d[2 * i + 1] = has1 ? (int16_t)v : 0;
    }
}

/* Pixel offsets (in pairs, relative to a channel plane of X2) of tile t.  Returns
 *   1 if they are consecutive: off[j] = off[0] + j;
 *   2 if they are two consecutive runs: off[j] = off[0] + j + (j >= *jb ? *gap : 0);
 *   0 otherwise (several rows, stride > 1, or the clamped last tile). */
static inline int mdfi_conv_tile_offsets(const conv_ctx *ctx, int32_t t, int32_t off[NR],
                                         int32_t *jb, int32_t *gap)
{
    int64_t p = (int64_t)t * NR;
    int64_t oy = p / ctx->ow, ox = p % ctx->ow;
    int kind = (ctx->stride == 1) ? 1 : 0;
    *jb = NR;
    *gap = 0;
    for (int j = 0; j < NR; ++j) {
        if (p + j >= ctx->n) {          /* past the end: repeat the last pixel */
            kind = 0;
            off[j] = off[j - 1];        /* j >= 1 because p < n */
            continue;
        }
        off[j] = (int32_t)(oy * ctx->stride * ctx->wp + ox * ctx->stride);
        if (j > 0 && off[j] != off[j - 1] + 1 && kind != 0) {
            if (kind == 1 && off[j] > off[j - 1] + 1) {
                kind = 2;
                *jb = j;
                *gap = off[j] - off[j - 1] - 1;
            } else {
                kind = 0;
            }
        }
        if (++ox == ctx->ow) { ox = 0; ++oy; }
    }
    return kind;
}

#endif /* MDFI_CONV_INTERNAL_H */
