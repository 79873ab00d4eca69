/* mdfi_conv.c -- see mdfi_conv.h (API) and mdfi_conv_internal.h (layouts).
 *
 * This file holds the validation and the blocked/threaded GEMM driver; mdfi_conv_pack.c the
 * weight packing, mdfi_conv_scalar.c the portable scalar path.  mdfi_conv_avx2.c supplies the AVX2 versions
 * of the five inner operations (micro-kernel, B packing, input re-layout, epilogue, widening).
 *
 * Driver.  Phase 1 re-lays the input out as X2 (padded with pad_value, channel pairs interleaved,
 * int16).  Then, per work item (a block of nb tiles of NR pixels, or a group of panels):
 *     for each K-pair block (kc2 pairs; nkc blocks)
 *       pack B [nb][kcl][NR][2] from X2           (im2col fused with packing; 1x1 stride-1
 *                                                  convolutions read X2 directly)
 *       for each panel (MR output channels)
 *         for each tile of the block: C tile (+)= A panel . B tile   (micro-kernel)
 *                                     last K block -> requantize into out (epilogue)
 * acc64 layers sum K-pairs in int32 chunks that provably cannot overflow and widen each chunk
 * into an int64 tile; with int16 activations and short chunks the activations are split
 * x = 256*hi + lo after packing and both halves summed that way (ctx->split, conv_int16).
 * Large maps are split by pixels (each thread packs its own B blocks); small maps (fewer
 * than 8 tiles per thread, e.g. 13x13) by output channels, sharing one B packed by all
 * threads.  Items are handed out dynamically (mdfi_conv_pool.c), but each output element
 * is always computed by one thread with the same integer operations, so the result never
 * depends on the thread count or the schedule.
 */
#include "mdfi_conv.h"
#include "mdfi_conv_internal.h"
#include "mdfi_conv_q8.h"
#include "mdfi_fixedpoint.h"

#include <stdlib.h>
#include <string.h>

#define KC_TARGET 256                 /* K-pairs per block: B tile = 16 KB, A panel = 6 KB */
#define NB_BYTES (192 * 1024)         /* B block (nb tiles x kc2 pairs) budget, ~L2/2      */
#define NB_MAX 64
#define ALIGN 64
#define LIM47 (((int64_t)1) << 47)
/* acc64 layers with int16 inputs whose plain int32 chunks are shorter than this many K-pairs
 * take the split path (conv_int16).  Measured on a 3x3 384 -> 256 layer at 26x26, 16-bit
 * activations, one thread, AMD EPYC Zen 4 (avx2 / avx512bw): chunks of 16 pairs 9.7 / 9.4 ms,
 * 8 pairs 12.3 / 11.4, 4 pairs 18.5 / 18.7, 2 pairs 42.5 / 42.7, 0 (scalar int64) 195 ms;
 * split 14.3 / 13.6 ms whatever the weights' width. */
#define SPLIT_BELOW 7

/* ---------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------- */
static size_t align_up(size_t n) { return (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1); }

int32_t mdfi_conv_out_size(int32_t n, int32_t ks, int32_t stride, int32_t pad)
{
    if (n < 1 || ks < 1 || stride < 1 || pad < 0) return -1;
    const int64_t span = (int64_t)n + 2 * (int64_t)pad - ks;
    if (span < 0) return -1;
    const int64_t o = span / stride + 1;
    return o > INT32_MAX ? -1 : (int32_t)o;
}

/* ---------------------------------------------------------------------------------------
 * Geometry, blocking and scratch layout (shared by scratch_size and conv2d)
 * ------------------------------------------------------------------------------------- */
static int geometry(conv_ctx *g, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks,
                    int32_t stride, int32_t pad, int32_t nthreads, size_t *total)
{
    memset(g, 0, sizeof *g);
    if (c < 1 || h < 1 || w < 1 || m < 1 || ks < 1 || stride < 1 || pad < 0)
        return MDFI_CONV_E_DIM;
    if (nthreads < 1) return MDFI_CONV_E_THREADS;
    const int32_t oh = mdfi_conv_out_size(h, ks, stride, pad);
    const int32_t ow = mdfi_conv_out_size(w, ks, stride, pad);
    if (oh < 1 || ow < 1) return MDFI_CONV_E_DIM;
    packed_geom pg;
    if (mdfi_conv_packed_geometry(m, c, ks, &pg)) return MDFI_CONV_E_DIM;
    g->c2 = pg.c2;
    g->k2 = pg.k2;
    g->npanels = pg.np;
    const int64_t hp = (int64_t)h + 2 * (int64_t)pad, wp = (int64_t)w + 2 * (int64_t)pad;
    /* Pixel offsets into one X2 plane are int32 (and gather indices). */
    if (hp > INT32_MAX || wp > INT32_MAX || hp * wp > INT32_MAX / 2) return MDFI_CONV_E_DIM;
    const int64_t n = (int64_t)oh * ow;
    if (n > INT32_MAX - NR) return MDFI_CONV_E_DIM;
    g->c = c; g->h = h; g->w = w; g->m = m; g->ks = ks; g->stride = stride; g->pad = pad;
    g->oh = oh; g->ow = ow; g->hp = (int32_t)hp; g->wp = (int32_t)wp;
    g->n = n; g->plane = hp * wp;
    g->ntiles = (int32_t)((n + NR - 1) / NR);

    /* K blocking: one block up to 1.5 KC_TARGET, else equal blocks of about KC_TARGET. */
    int32_t nkc = 1;
    if (g->k2 > KC_TARGET + KC_TARGET / 2) nkc = (g->k2 + KC_TARGET - 1) / KC_TARGET;
    g->nkc = nkc;
    g->kc2 = (g->k2 + nkc - 1) / nkc;
    int64_t nb = NB_BYTES / ((int64_t)g->kc2 * NR * 4);
    if (nb < 1) nb = 1;
    if (nb > NB_MAX) nb = NB_MAX;
    /* Few tiles (small maps): threads split the channels and share one packed B. */
    g->msplit = nthreads > 1 && (int64_t)g->ntiles < 8 * (int64_t)nthreads;
    g->direct = ks == 1 && stride == 1 && pad == 0;
    /* N split: at least ~4 tile blocks per thread, so that the dynamic schedule can even
     * out a thread that the OS preempts. */
    if (!g->msplit && nthreads > 1) {
        const int64_t cap = (g->ntiles + 4 * (int64_t)nthreads - 1) / (4 * (int64_t)nthreads);
        if (nb > cap) nb = cap;
    }
    if (nb > g->ntiles) nb = g->ntiles;
    g->nb = (int32_t)nb;
    /* M split: panels are handed out in groups of ~1/8 of a thread's share. */
    g->pgroup = nthreads > 1
        ? (int32_t)((g->npanels + 8 * (int64_t)nthreads - 1) / (8 * (int64_t)nthreads))
        : g->npanels;
    /* Work items of equal size (within one panel or tile; item g covers [U*g/I, U*(g+1)/I) of
     * the U panels or tiles), as many as a multiple of the thread count: with fixed sizes a
     * short last item left a thread idle (43 tiles in items of 6: 24 and 19 tiles on two
     * threads, yolov3-tiny layer 22).  Never larger than pgroup / nb. */
    {
        const int64_t units = g->msplit ? g->npanels : g->ntiles, size = g->msplit ? g->pgroup : g->nb;
        int64_t items = (units + size - 1) / size;
        items = (items + nthreads - 1) / nthreads * nthreads;
        g->nitems = items > units ? units : items;
    }

    /* Scratch layout (byte sizes; checked against SIZE_MAX through uint64). */
    const uint64_t x2b = ((uint64_t)g->c2 * (uint64_t)g->plane + NR) * 4u;
    /* (also for direct layers: a path may pack them anyway, see conv_int16) */
    /* (twice: the hi halves of the split acc64 path, conv_int16) */
    const uint64_t bsh = g->msplit ? 2u * (uint64_t)g->ntiles * (uint64_t)g->k2 * NR * 4u : 0;
    const uint64_t bpriv = g->msplit ? 0 : (uint64_t)g->nb * (uint64_t)g->kc2 * NR * 4u;
    const uint64_t part = nkc > 1 ? (uint64_t)g->npanels * (uint64_t)g->nb * MR * NR * 8u : 0;
    const uint64_t tiles = 3u * MR * NR * 8u;      /* tile32, tmp32, tile64 */
    const uint64_t lim = (uint64_t)(SIZE_MAX / 4 < INT64_MAX / 4 ? SIZE_MAX / 4 : INT64_MAX / 4);
    if (x2b > lim || bsh > lim || bpriv > lim || part > lim) return MDFI_CONV_E_DIM;
    /* per thread: B block, its hi halves (split acc64 path), partial C tiles, tiles */
    const uint64_t tb = 2u * align_up((size_t)bpriv) + align_up((size_t)part) + tiles;
    if (tb > lim / (uint64_t)nthreads) return MDFI_CONV_E_DIM;
    /* 3-channel inputs: room for the tap-pair A panels (conv_int16) */
    const uint64_t tpa = c == 3 ? (uint64_t)g->npanels * (uint64_t)(ks * ks + (ks * ks + 1) / 2) * MR * 4u : 0;
    const uint64_t sum = ALIGN + align_up((size_t)x2b) + align_up((size_t)bsh) + align_up((size_t)tpa) +
                         tb * (uint64_t)nthreads;
    if (sum > lim) return MDFI_CONV_E_DIM;
    g->bpriv_bytes = (size_t)bpriv;
    g->part_bytes = (size_t)part;
    g->tbytes = (size_t)tb;
    *total = (size_t)sum;
    return MDFI_CONV_OK;
}

int64_t mdfi_conv_scratch_size(int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks,
                               int32_t stride, int32_t pad, int32_t nthreads)
{
    conv_ctx g;
    size_t total;
    if (geometry(&g, c, h, w, m, ks, stride, pad, nthreads, &total)) return -1;
    /* the 8-bit family's scratch, when it could run this layer (for any kernel choice) */
    int64_t best = (int64_t)total;
    const int64_t q8 = mdfi_q8_scratch_size(c, h, w, m, ks, stride, pad, nthreads);
    if (q8 > best) best = q8;
#if MDFI_CONV_X86
    /* a 16-bit input split into bytes (mdfi_q8_split_ok: the AMX paths) */
    if (mdfi_q8_split_shape(c, ks, stride, pad)) {
        const int64_t q8s = mdfi_q8_scratch_size(2 * c, h, w, m, ks, stride, pad, nthreads);
        if (q8s > best) best = q8s;
    }
    if (ks == 3 && stride == 1) {
        const int64_t wn = mdfi_wino_scratch_size(c, h, w, pad, nthreads);
        if (wn >= 0 && wn + ALIGN > best) best = wn + ALIGN;
    }
#endif
    return best;
}

void mdfi_conv_shutdown(void) { mdfi_pool_shutdown(); }

int mdfi_conv_winograd = 1;
int mdfi_conv_split_mode = -1;
static mdfi_counter split_calls;       /* convolutions that took the split path (testing) */
static mdfi_counter q8_split_calls;    /* ... the AMX byte split of 16-bit inputs (testing) */

void mdfi_conv_set_split(int32_t mode) { mdfi_conv_split_mode = mode < 0 ? -1 : mode > 0 ? 1 : 0; }

int64_t mdfi_conv_q8_split_calls(void)
{
#if MDFI_POOL
    return atomic_load(&q8_split_calls);
#else
    return q8_split_calls;
#endif
}

int64_t mdfi_conv_split_calls(void)
{
#if MDFI_POOL
    return atomic_load(&split_calls);
#else
    return split_calls;
#endif
}

void mdfi_conv_set_winograd(int32_t enable) { mdfi_conv_winograd = enable != 0; }

int mdfi_conv_pool_run(void (*job)(void *arg, int tid), void *arg, int nthreads)
{
    if (job == NULL) return 0;
    return mdfi_pool_run(job, arg, nthreads < 1 ? 1 : nthreads);
}

const char *mdfi_conv_strerror(int code)
{
    switch (code) {
    case MDFI_CONV_OK: return "ok";
    case MDFI_CONV_E_DIM: return "invalid or too large dimensions";
    case MDFI_CONV_E_PACKED: return "packed weights are corrupt or do not match the layer";
    case MDFI_CONV_E_SCRATCH: return "scratch buffer too small";
    case MDFI_CONV_E_BITS: return "output bit width outside 2..16 or too wide for the output type";
    case MDFI_CONV_E_SHIFT: return "shift outside [MDFI_MIN_SHIFT, MDFI_MAX_SHIFT]";
    case MDFI_CONV_E_CODE: return "unknown rounding, activation, element type or acc64 code";
    case MDFI_CONV_E_RANGE: return "|bias| or K*max|w|*max|x| exceeds 2^47 (accumulator bound)";
    case MDFI_CONV_E_THREADS: return "nthreads must be >= 1";
    case MDFI_CONV_E_COUNT: return "buffer element count does not match the shapes";
    case MDFI_CONV_E_ZERO: return "zero point outside the input type / output format, or not supported here";
    default: return "unknown error";
    }
}

/* ---------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------- */
/* Work counters of one call, shared by its threads.  Items are taken dynamically (a thread
 * takes the next one when it is done with its last), and a phase that needs the previous
 * one complete waits for its items to be *done*, not for the other threads to arrive.
 * Which thread computes an output never changes its value. */
typedef struct {
    mdfi_counter x2, x2_done, pack, pack_done, item;
} conv_work;

/* The register epilogue's constants of panel rows m0..m0+mv-1 (conv_rows); 0 when a row
 * needs the general epilogue (shift outside 1..31, or |sum| + |bias| + half might leave
 * int32).  Rows past mv start at 0 and are not stored. */
static int panel_rows(const conv_ctx *ctx, int32_t m0, int32_t mv, conv_rows *rows)
{
    if (!ctx->sum32) return 0;
    for (int32_t r = 0; r < MR; ++r) {
        rows->bh[r] = rows->c[r] = rows->kd[r] = 0;
        rows->s[r] = 1;
        if (r >= mv) continue;
        const int32_t s = ctx->shift[m0 + r];
        if (s < 1 || s > 31) return 0;
        const mdfi_rqf k = mdfi_rqf_init(s, ctx->rounding);
        const int64_t b = ctx->bias[m0 + r], ab = b < 0 ? -b : b;
        if (ctx->bound + ab + k.half > (int64_t)INT32_MAX) return 0;
        rows->bh[r] = (int32_t)(b + k.half);
        rows->s[r] = s;
        rows->c[r] = k.c;
        rows->kd[r] = k.kd;
    }
    return 1;
}

/* Panels [p0,p1) x tiles [t0,t1).  B comes from ctx->bshared (msplit) or is packed here. */
static void compute(const conv_ctx *ctx, const conv_ops *ops, int tid, int32_t p0, int32_t p1,
                    int32_t t0, int32_t t1)
{
    unsigned char *tb = ctx->tbase + (size_t)tid * ctx->tbytes;
    int16_t *bpriv = (int16_t *)(void *)tb;
    int16_t *bpriv_hi = (int16_t *)(void *)(tb + align_up(ctx->bpriv_bytes));
    unsigned char *part = tb + 2 * align_up(ctx->bpriv_bytes);
    int32_t *tile32 = (int32_t *)(void *)(part + align_up(ctx->part_bytes));
    int32_t *tmp32 = tile32 + 2 * MR * NR;           /* spaced as int64 slots */
    int64_t *tile64 = (int64_t *)(void *)(tile32 + 4 * MR * NR);
    const int32_t k2 = ctx->k2, nkc = ctx->nkc;
    const int simd = ctx->path != MDFI_CONV_PATH_SCALAR;

    for (int32_t tb0 = t0; tb0 < t1; tb0 += ctx->nb) {
        const int32_t nb = (t1 - tb0) < ctx->nb ? (t1 - tb0) : ctx->nb;
        for (int32_t kci = 0; kci < nkc; ++kci) {
            const int32_t kc0 = kci * ctx->kc2;
            const int32_t kcl = (k2 - kc0) < ctx->kc2 ? (k2 - kc0) : ctx->kc2;
            const int first = kci == 0, last = kci == nkc - 1;
            if (!ctx->msplit && !ctx->direct) {
                for (int32_t t = 0; t < nb; ++t)
                    ops->pack(ctx, tb0 + t, kc0, kcl, bpriv + (size_t)t * kcl * NR * 2);
                if (ctx->split)
                    ops->split(bpriv, bpriv_hi, (size_t)nb * kcl * NR * 2);
            }
            const size_t bstride = ctx->direct ? (size_t)ctx->plane * 2 : (size_t)NR * 2;
            for (int32_t p = p0; p < p1; ++p) {
                const int16_t *ap = ctx->a + ((size_t)p * k2 + kc0) * MR * 2;
                const int32_t m0 = p * MR;
                const int32_t mv = (ctx->m - m0) < MR ? (ctx->m - m0) : MR;
                conv_rows rows;
                const int fused = last && ops->ukr32e != NULL && !ctx->acc64 && panel_rows(ctx, m0, mv, &rows);
                for (int32_t t = 0; t < nb; ++t) {
                    const int32_t tt = tb0 + t;
#define BPTR(T, TT) (ctx->direct ? ctx->x2 + ((size_t)kc0 * (size_t)ctx->plane + (size_t)(TT) * NR) * 2     \
                     : ctx->msplit ? ctx->bshared + ((size_t)(TT) * k2 + kc0) * NR * 2                       \
                     : bpriv + (size_t)(T) * kcl * NR * 2)
                    const int16_t *bp = BPTR(t, tt);
                    const int64_t px0 = (int64_t)tt * NR;
                    const int32_t nv = (ctx->n - px0) < NR ? (int32_t)(ctx->n - px0) : NR;
                    const size_t slot = ((size_t)p * ctx->nb + t) * MR * NR;
                    if (!ctx->acc64 && ops->ukr32x2 != NULL && t + 1 < nb) {
                        /* two tiles per call; their C tiles are consecutive (part or tile32) */
                        int32_t *ct = nkc > 1 ? (int32_t *)(void *)part + slot : tile32;
                        ops->ukr32x2(kcl, ap, bp, BPTR(t + 1, tt + 1), bstride, ct, !first);
                        if (last) {
                            ops->epi32(ctx, ct, m0, mv, px0, nv);
                            const int64_t px1 = px0 + NR;
                            ops->epi32(ctx, ct + MR * NR, m0, mv, px1,
                                       (ctx->n - px1) < NR ? (int32_t)(ctx->n - px1) : NR);
                        }
                        ++t;
                        continue;
                    }
#undef BPTR
                    if (fused) {
                        const int32_t *cin = first ? NULL : (const int32_t *)(const void *)part + slot;
                        ops->ukr32e(kcl, ap, bp, bstride, cin, &rows, ctx, m0, mv, px0, nv);
                        continue;
                    }
                    if (!ctx->acc64) {
                        int32_t *ct = nkc > 1 ? (int32_t *)(void *)part + slot : tile32;
                        (mv < MR && ops->ukr32_rows != NULL ? ops->ukr32_rows(mv) : ops->ukr32)(kcl, ap, bp, bstride,
                                                                                             ct, !first);
                        if (last) ops->epi32(ctx, ct, m0, mv, px0, nv);
                    } else {
                        int64_t *ct = nkc > 1 ? (int64_t *)(void *)part + slot : tile64;
                        if (first) memset(ct, 0, sizeof(int64_t) * MR * NR);
                        if (ctx->split) {
                            /* x = 256 hi + lo: sum w x = 256 sum w hi + sum w lo, each half
                             * summed exactly in int32 for schunk K-pairs (conv_int16) */
                            const int16_t *bh = ctx->msplit ? ctx->bshared_hi + ((size_t)tt * k2 + kc0) * NR * 2
                                                            : bpriv_hi + (size_t)t * kcl * NR * 2;
                            int32_t *lo = tmp32, *hi = tmp32 + MR * NR;
                            for (int32_t i = 0; i < kcl; i += ctx->schunk) {
                                const int32_t len = (kcl - i) < ctx->schunk ? (kcl - i) : ctx->schunk;
                                const int16_t *ai = ap + (size_t)i * MR * 2;
                                if (ops->ukr32x2 != NULL) {
                                    ops->ukr32x2(len, ai, bp + (size_t)i * bstride, bh + (size_t)i * bstride, bstride,
                                                 lo, 0);
                                } else {
                                    ops->ukr32(len, ai, bp + (size_t)i * bstride, bstride, lo, 0);
                                    ops->ukr32(len, ai, bh + (size_t)i * bstride, bstride, hi, 0);
                                }
                                ops->widen2(ct, lo, hi);
                            }
                        } else if (simd && ctx->chunk > 0) {
                            for (int32_t i = 0; i < kcl; i += ctx->chunk) {
                                const int32_t len = (kcl - i) < ctx->chunk ? (kcl - i) : ctx->chunk;
                                ops->ukr32(len, ap + (size_t)i * MR * 2, bp + (size_t)i * bstride,
                                           bstride, tmp32, 0);
                                ops->widen(ct, tmp32);
                            }
                        } else {
                            mdfi_conv_ukr64_scalar(kcl, ap, bp, bstride, ct);
                        }
                        if (last) ops->epi64(ctx, ct, m0, mv, px0, nv);
                    }
                }
            }
        }
    }
}

#define X2_ITEM_PAIRS 8192          /* ~X2 pairs per work item (32 KB) */

typedef struct {
    const conv_ctx *ctx;
    const conv_ops *ops;
    conv_work *work;
} conv_job;

static void worker(void *arg, int tid)
{
    const conv_ctx *ctx = ((const conv_job *)arg)->ctx;
    const conv_ops *ops = ((const conv_job *)arg)->ops;
    conv_work *work = ((const conv_job *)arg)->work;
    /* X2 by padded rows y of every channel pair, from both ends (mdfi_pool_next_end: thread 0
     * the top rows, which its tiles then read, thread 1 the bottom ones) */
    if (ctx->hp >= SPATIAL_MIN_ROWS) {
        const int64_t rowpairs = (int64_t)ctx->c2 * ctx->wp;
        const int64_t per = rowpairs >= X2_ITEM_PAIRS ? 1 : X2_ITEM_PAIRS / rowpairs;   /* rows */
        const int64_t nx2 = ctx->x1 ? 0 : ((int64_t)ctx->hp + per - 1) / per;
        for (int64_t i0, i1; (i0 = mdfi_pool_next_end(&work->x2, nx2, tid & 1, 4, 1, &i1)) < nx2;) {
            const int64_t y0 = i0 * per, y1 = i1 * per < ctx->hp ? i1 * per : ctx->hp;
            for (int64_t cc = 0; cc < ctx->c2; ++cc) ops->x2(ctx, cc * ctx->hp + y0, cc * ctx->hp + y1);
            for (int64_t i = i0; i < i1; ++i) mdfi_pool_done(&work->x2_done, nx2);
        }
        mdfi_pool_wait(&work->x2_done, nx2);
    } else {                                    /* small maps: rows in channel order */
        const int64_t rows = (int64_t)ctx->c2 * ctx->hp;
        const int64_t per = ctx->wp >= X2_ITEM_PAIRS ? 1 : X2_ITEM_PAIRS / ctx->wp;   /* rows */
        const int64_t nx2 = ctx->x1 ? 0 : (rows + per - 1) / per;
        for (int64_t i; (i = mdfi_pool_next(&work->x2)) < nx2;) {
            ops->x2(ctx, i * per, (i + 1) * per < rows ? (i + 1) * per : rows);
            mdfi_pool_done(&work->x2_done, nx2);
        }
        mdfi_pool_wait(&work->x2_done, nx2);
    }
    if (ctx->msplit) {
        const int64_t npack = ctx->direct ? 0 : ctx->ntiles;
        for (int64_t t; (t = mdfi_pool_next(&work->pack)) < npack;) {
            ops->pack(ctx, (int32_t)t, 0, ctx->k2, ctx->bshared + (size_t)t * ctx->k2 * NR * 2);
            if (ctx->split)
                ops->split(ctx->bshared + (size_t)t * ctx->k2 * NR * 2, ctx->bshared_hi + (size_t)t * ctx->k2 * NR * 2,
                           (size_t)ctx->k2 * NR * 2);
            mdfi_pool_done(&work->pack_done, npack);
        }
        mdfi_pool_wait(&work->pack_done, npack);
        for (int64_t g; (g = mdfi_pool_next(&work->item)) < ctx->nitems;) {
            const int64_t p0 = (int64_t)ctx->npanels * g / ctx->nitems, p1 = (int64_t)ctx->npanels * (g + 1) / ctx->nitems;
            compute(ctx, ops, tid, (int32_t)p0, (int32_t)p1, 0, ctx->ntiles);
        }
    } else {
        /* runs of items from both ends (thread 0 the top of the map, thread 1 the bottom) */
        for (int64_t g0, g1; (g0 = mdfi_pool_next_end(&work->item, ctx->nitems, tid & 1, 4, 1, &g1)) < ctx->nitems;)
            for (int64_t g = g0; g < g1; ++g) {
                const int64_t t0 = (int64_t)ctx->ntiles * g / ctx->nitems, t1 = (int64_t)ctx->ntiles * (g + 1) / ctx->nitems;
                compute(ctx, ops, tid, 0, ctx->npanels, (int32_t)t0, (int32_t)t1);
            }
    }
}

int mdfi_conv2d(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                const void *packed, int64_t packed_size,
                const int64_t *bias, const int32_t *shift, int32_t m,
                void *out, int otype, int64_t out_count,
                int32_t ks, int32_t stride, int32_t pad,
                int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size)
{
    return mdfi_conv2d_on(x, xtype, c, h, w, x_count, packed, packed_size, bias, shift, m, out, otype, out_count,
                          ks, stride, pad, rounding, out_bits, act, acc64, nthreads,
                          mdfi_conv_effective_path(path), scratch, scratch_size, NULL, 0, 0);
}

int mdfi_conv2d_zp(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                   const void *packed, int64_t packed_size,
                   const int64_t *bias, const int32_t *shift, int32_t m,
                   void *out, int otype, int64_t out_count,
                   int32_t ks, int32_t stride, int32_t pad,
                   int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                   int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                   int32_t pad_value, int32_t zero_out)
{
    return mdfi_conv2d_on(x, xtype, c, h, w, x_count, packed, packed_size, bias, shift, m, out, otype, out_count,
                          ks, stride, pad, rounding, out_bits, act, acc64, nthreads,
                          mdfi_conv_effective_path(path), scratch, scratch_size, NULL, pad_value, zero_out);
}

/* The int16-pair family (and its Winograd kernels) of mdfi_conv2d_on, arguments validated. */
static int conv_int16(conv_ctx *pctx, const conv_ops *ops, int32_t path, const void *x, int xtype, int32_t c,
                      int32_t h, int32_t w, const void *packed, int32_t wmax, int64_t wx, const int64_t *bias,
                      const int32_t *shift, int32_t m, void *out, int otype, int32_t ks, int32_t stride, int32_t pad,
                      int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64, int32_t nthreads,
                      unsigned char *s, int64_t scratch_size, void *pool, int32_t pool_only, int *pooled)
{
    conv_ctx ctx = *pctx;
    ctx.path = ops == &mdfi_conv_ops_scalar ? MDFI_CONV_PATH_SCALAR : path;

#if MDFI_CONV_X86
    const int64_t kvol = (int64_t)c * ks * ks;
    /* 8-bit 3x3 stride-1 layers on the int16-pair SIMD paths: Winograd F(2x2,3x3) when the
     * layer's bounds make it exact (mdfi_conv_wino.c): int16 transformed weights, |4 S| and
     * S + bias inside int32 */
    {
        packed_geom pg;
        (void)mdfi_conv_packed_geometry(m, c, ks, &pg);
        const int32_t umax = mdfi_conv_rd32((const unsigned char *)packed + 44);
        if (mdfi_conv_winograd && (ops == &mdfi_conv_ops_avx2 || ops == &mdfi_conv_ops_avx512 || ops == &mdfi_conv_ops_vnni16) && pg.wino_off &&
            ks == 3 && stride == 1 && acc64 == 0 && ctx.sum32 && (xtype == MDFI_CONV_U8 || xtype == MDFI_CONV_S8) &&
            c >= MDFI_WINO_MIN_C &&
            umax >= 0 && umax <= 32767 && 4 * kvol * wx <= (int64_t)INT32_MAX) {
            const int64_t need = mdfi_wino_scratch_size(c, h, w, pad, nthreads);
            if (need >= 0 && scratch_size >= need + ALIGN) {
                const int p = mdfi_wino_conv(ops, x, xtype, c, h, w,
                                             (const int16_t *)(const void *)((const unsigned char *)packed + pg.wino_off),
                                             bias, shift, m, out, pool, pool_only, otype, pad, rounding, out_bits, act, kvol * wx,
                                             nthreads, s, ctx.padv, ctx.zo);
                if (pooled != NULL) *pooled = p;
                return MDFI_CONV_OK;
            }
        }
    }
#else
    (void)c; (void)h; (void)w; (void)m; (void)ks; (void)stride; (void)pad; (void)scratch_size; (void)pool; (void)pool_only; (void)pooled;
#endif

    ctx.x = x; ctx.xtype = xtype;
    ctx.a = (const int16_t *)(const void *)((const unsigned char *)packed + MDFI_CONV_HDR);
    ctx.wmax = wmax;
    /* ctx.bound: set by the caller (conv2d_impl: the layer's tight bound, packed header) */
    ctx.bias = bias; ctx.shift = shift; ctx.out = out; ctx.otype = otype;
    ctx.rounding = rounding; ctx.bits = out_bits; ctx.act = act; ctx.acc64 = acc64;
    /* acc64: K-pairs whose int32 sum cannot overflow: chunk * 2*wmax*xmax <= 2^31 - 1. */
    ctx.chunk = wx == 0 ? ctx.kc2 : (int32_t)((int64_t)INT32_MAX / (2 * wx));
    if (ctx.chunk > ctx.kc2) ctx.chunk = ctx.kc2;
    /* acc64 with int16 inputs on a SIMD path: split the activations (after padding, so the
     * padding value is split too), x = 256 hi + lo, lo = x & 255 in [0, 255], hi = x >> 8 in
     * [-128, 127]; then sum w x = 256 sum w hi + sum w lo exactly.  Either half's pair sum is
     * at most 2*wmax*255 (never the vpmaddwd wrap case, which needs -32768 on both sides), so
     * schunk K-pairs with schunk * 2*wmax*255 <= 2^31 - 1 sum exactly in int32 (>= 128 for
     * wmax <= 32768), and the int64 tile gets lo + 256 hi (widen2).  Two passes of the int32
     * kernels instead of chunks of 0-1 pairs (16-bit weights and activations) or the scalar
     * int64 kernel; taken when the plain chunks are shorter than SPLIT_BELOW pairs. */
    ctx.split = 0;
    if (acc64 && ctx.path != MDFI_CONV_PATH_SCALAR && xtype == MDFI_CONV_S16 && mdfi_conv_split_mode != 0) {
        const int64_t sc = wmax == 0 ? ctx.kc2 : (int64_t)INT32_MAX / (2 * (int64_t)wmax * 255);
        ctx.schunk = sc > ctx.kc2 ? ctx.kc2 : (int32_t)sc;
        ctx.split = ctx.schunk >= 1 && (mdfi_conv_split_mode == 1 || ctx.chunk < SPLIT_BELOW);
        if (ctx.split) {
            ctx.direct = 0;                     /* B is packed (and split) for every layout */
#if MDFI_POOL
            atomic_fetch_add(&split_calls, 1);
#else
            ++split_calls;
#endif
        }
    }

#if MDFI_CONV_X86
    /* AVX2, 1x1 layers of at least 32 channels: packed B tiles (contiguous 64-byte rows) beat
     * reading B from X2 (rows a plane apart): yolov3's 1x1 layers 0.81-0.93x, yolov3-tiny's
     * 0.87-0.91x (round 5, packed from X2); packed straight from x (ctx.x1, no X2 pass, which
     * was 12% of these layers in a perf profile) 0.83-0.92x more, and then 64 channels too
     * (64x208x208 -> 32: 0.93x; packed from X2 it was 1.07-1.20x).  Scratch is sized for both
     * (geometry). */
    if (ops == &mdfi_conv_ops_avx2 && ctx.direct && ctx.k2 >= 16) {
        ctx.direct = 0;
        ctx.x1 = 1;
    }
#endif
    ctx.x2 = (int16_t *)(void *)s;
    /* the NR pairs after the last plane are only read for discarded pixels; keep them 0 */
    memset(ctx.x2 + (size_t)ctx.c2 * (size_t)ctx.plane * 2, 0, NR * 4);
    s += align_up(((size_t)ctx.c2 * (size_t)ctx.plane + NR) * 4);
    ctx.bshared = (int16_t *)(void *)s;
    ctx.bshared_hi = ctx.bshared + (size_t)ctx.ntiles * (size_t)ctx.k2 * NR * 2;
    if (ctx.msplit) s += align_up(2 * (size_t)ctx.ntiles * (size_t)ctx.k2 * NR * 4);
    ctx.tbase = s;
#if MDFI_CONV_X86
    /* 3-channel inputs (first layers) on the AVX2 packing: the tap-pair K order (ctx.tp), 14
     * K-pairs instead of 18 for 3x3 (the pair (c2, 0) of each tap wastes half a vpmaddwd).
     * The A panels are re-ordered into scratch (a few KB); integer sums are exact in any order. */
    if ((ops == &mdfi_conv_ops_avx2 || ops == &mdfi_conv_ops_avx512 || ops == &mdfi_conv_ops_vnni16) && c == 3 && ks >= 2 && !ctx.direct &&
        ctx.nkc == 1) {
        const int32_t taps = ks * ks, k2t = taps + (taps + 1) / 2;
        int16_t *at = (int16_t *)(void *)(ctx.tbase + ctx.tbytes * (size_t)nthreads);   /* geometry: tpa */
        for (int32_t p = 0; p < ctx.npanels; ++p) {
            const int16_t *src = ctx.a + (size_t)p * ctx.k2 * MR * 2;       /* [taps][C2 = 2][MR][2] */
            int16_t *dst = at + (size_t)p * k2t * MR * 2;                   /* [k2t][MR][2]          */
            for (int32_t t = 0; t < taps; ++t)
                memcpy(dst + (size_t)t * MR * 2, src + (size_t)t * 2 * MR * 2, MR * 2 * sizeof(int16_t));
            for (int32_t j = 0; j < (taps + 1) / 2; ++j)
                for (int32_t r = 0; r < MR; ++r) {
                    const int32_t ta = 2 * j, tb = 2 * j + 1;
                    dst[((size_t)(taps + j) * MR + r) * 2] = src[((size_t)(ta * 2 + 1) * MR + r) * 2];
                    dst[((size_t)(taps + j) * MR + r) * 2 + 1] = tb < taps ? src[((size_t)(tb * 2 + 1) * MR + r) * 2] : 0;
                }
        }
        ctx.a = at;
        ctx.k2 = k2t;
        ctx.kc2 = k2t;
        ctx.tp = 1;
    }
#endif
    conv_work work = {0, 0, 0, 0, 0};
    conv_job job = {&ctx, ops, &work};
    mdfi_pool_run(worker, &job, nthreads);
    return MDFI_CONV_OK;
}

static int conv2d_impl(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                       const void *packed, int64_t packed_size, const int64_t *bias, const int32_t *shift,
                       int32_t m, void *out, int otype, int64_t out_count, int32_t ks, int32_t stride,
                       int32_t pad, int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                       int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                       const mdfi_conv_residual *res, void *pool, int32_t pool_only, int *pooled,
                       int32_t pad_value, int32_t zero_out)
{
    conv_ctx ctx;
    size_t total;
    int rc;
    if (x == NULL || packed == NULL || bias == NULL || shift == NULL || out == NULL ||
        scratch == NULL)
        return MDFI_CONV_E_DIM;
    if (xtype != MDFI_CONV_U8 && xtype != MDFI_CONV_S8 && xtype != MDFI_CONV_S16)
        return MDFI_CONV_E_CODE;
    if (otype != MDFI_CONV_S8 && otype != MDFI_CONV_S16) return MDFI_CONV_E_CODE;
    if (rounding != MDFI_ROUND_HALF_UP && rounding != MDFI_ROUND_TRUNCATE) return MDFI_CONV_E_CODE;
    if (act != MDFI_ACT_LINEAR && act != MDFI_ACT_LEAKY && act != MDFI_ACT_RELU)
        return MDFI_CONV_E_CODE;
    if (acc64 != 0 && acc64 != 1) return MDFI_CONV_E_CODE;
    if (out_bits < 2 || out_bits > 16 || (otype == MDFI_CONV_S8 && out_bits > 8))
        return MDFI_CONV_E_BITS;
    /* zero points: a value of the input type; inside the output format */
    if (pad_value < (xtype == MDFI_CONV_U8 ? 0 : xtype == MDFI_CONV_S8 ? -128 : -32768) ||
        pad_value > (xtype == MDFI_CONV_U8 ? 255 : xtype == MDFI_CONV_S8 ? 127 : 32767) ||
        zero_out < mdfi_qmin(out_bits) || zero_out > mdfi_qmax(out_bits))
        return MDFI_CONV_E_ZERO;
    if (res != NULL && (pad_value != 0 || zero_out != 0)) return MDFI_CONV_E_ZERO;
    if ((rc = geometry(&ctx, c, h, w, m, ks, stride, pad, nthreads, &total)) != 0) return rc;
    if (res != NULL && (rc = mdfi_conv_check_residual(res)) != 0) return rc;
    ctx.padv = pad_value;
    ctx.zo = zero_out;
    ctx.zlo = mdfi_qmin(out_bits) - zero_out;
    ctx.zhi = mdfi_qmax(out_bits) - zero_out;

    int32_t pm, pc, pk, wtype, wmax;
    if (mdfi_conv_packed_info(packed, packed_size, &pm, &pc, &pk, &wtype, &wmax) != 0 ||
        pm != m || pc != c || pk != ks)
        return MDFI_CONV_E_PACKED;
    if (x_count != (int64_t)c * h * w || out_count != (int64_t)m * ctx.n) return MDFI_CONV_E_COUNT;
    if (scratch_size < 0 || (uint64_t)scratch_size < (uint64_t)total) return MDFI_CONV_E_SCRATCH;
    int64_t bmax = 0;
    for (int32_t i = 0; i < m; ++i) {
        if (shift[i] < MDFI_MIN_SHIFT || shift[i] > MDFI_MAX_SHIFT) return MDFI_CONV_E_SHIFT;
        if (bias[i] < -LIM47 || bias[i] > LIM47) return MDFI_CONV_E_RANGE;
        const int64_t ab = bias[i] < 0 ? -bias[i] : bias[i];
        if (ab > bmax) bmax = ab;
    }
    /* K * wmax * xmax <= 2^47 (so |sum + bias| <= 2^48, see mdfi_conv.h) */
    const int64_t kvol = (int64_t)c * ks * ks;
    const int64_t wx = (int64_t)wmax * mdfi_conv_type_max_abs(xtype);       /* <= 2^30 */
    if (wx > 0 && kvol > LIM47 / wx) return MDFI_CONV_E_RANGE;
    /* |S| of every output channel (its partial sums too) is at most the layer's bound: K max|w|
     * max|x|, or tighter max_m sum_k |w[m][k]| * max|x| from the packed header (the int32
     * bound of a layer whose few large weights would fail K max|w| max|x|: 16-bit inputs) */
    const int64_t rsum = mdfi_conv_rd64((const unsigned char *)packed + 48);
    const int64_t xmax = mdfi_conv_type_max_abs(xtype);
    ctx.bound = rsum * xmax < kvol * wx ? rsum * xmax : kvol * wx;   /* rsum <= kvol * wmax */
    /* every partial sum, and sum + bias, provably inside int32 (<= 2^47 + 2^47 here) */
    ctx.sum32 = acc64 == 0 && ctx.bound + bmax <= (int64_t)INT32_MAX;

    const conv_ops *ops;
    const q8_ops *q8;
    mdfi_conv_path_ops(path, &ops, &q8);
    uintptr_t base = (uintptr_t)scratch;
    unsigned char *s = (unsigned char *)scratch + ((ALIGN - (base % ALIGN)) % ALIGN);

    /* 16-bit inputs, 8-bit weights on AMX: 8-bit products of a byte split (mdfi_q8_split_ok,
     * 2C byte channels), when the layer's int32 bound holds (the halves combine modulo 2^32)
     * and the scratch holds them; else the int16 kernels */
    int split = q8 != NULL && xtype == MDFI_CONV_S16 && wtype == MDFI_CONV_S8 && acc64 == 0 && ctx.sum32 &&
                res == NULL && mdfi_q8_split_ok(q8, c, h, w, m, ks, stride, pad);
    if (split) {
        const int64_t need = mdfi_q8_scratch_size(2 * c, h, w, m, ks, stride, pad, nthreads);
        split = need >= 0 && scratch_size >= need;
    }
    /* 8-bit layers: the dot-product family (mdfi_conv_q8.c) */
    if (!split && q8 != NULL && q8->usable != NULL && !q8->usable(c, ks, stride)) q8 = q8->fallback;
    if (split || (q8 != NULL && mdfi_q8_usable(xtype, wtype, acc64, c, h, w, m, ks, stride, pad))) {
        if (split) {
#if MDFI_POOL
            atomic_fetch_add(&q8_split_calls, 1);
#else
            ++q8_split_calls;
#endif
        } else {
            const int64_t need = mdfi_q8_scratch_size(c, h, w, m, ks, stride, pad, nthreads);
            if (need < 0 || scratch_size < need) return MDFI_CONV_E_SCRATCH;
        }
        packed_geom pg;
        (void)mdfi_conv_packed_geometry(m, c, ks, &pg);
        const unsigned char *pk = (const unsigned char *)packed;
        mdfi_q8_conv(q8, x, xtype, c, h, w, (const int8_t *)(const void *)(pk + pg.a4_off),
                     PACK_AT ? (const int8_t *)(const void *)(pk + pg.at_off) : NULL,
                     (const int32_t *)(const void *)(pk + pg.wsum_off), bias, shift, m, out, otype, ks, stride,
                     pad, rounding, out_bits, act, ctx.sum32, ctx.bound, res, nthreads, s, pad_value, zero_out);
        return MDFI_CONV_OK;
    }
    rc = conv_int16(&ctx, ops, path, x, xtype, c, h, w, packed, wmax, wx, bias, shift, m, out, otype, ks,
                    stride, pad, rounding, out_bits, act, acc64, nthreads, s, scratch_size, res == NULL ? pool : NULL,
                    pool_only, pooled);
    if (rc == MDFI_CONV_OK && res != NULL)
        mdfi_conv_residual_pass(res, out, otype, out_count, ops != &mdfi_conv_ops_scalar, nthreads);
    return rc;
}

int mdfi_conv2d_on(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                   const void *packed, int64_t packed_size, const int64_t *bias, const int32_t *shift,
                   int32_t m, void *out, int otype, int64_t out_count, int32_t ks, int32_t stride,
                   int32_t pad, int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                   int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                   const mdfi_conv_residual *res, int32_t pad_value, int32_t zero_out)
{
    return conv2d_impl(x, xtype, c, h, w, x_count, packed, packed_size, bias, shift, m, out, otype, out_count, ks,
                       stride, pad, rounding, out_bits, act, acc64, nthreads, path, scratch, scratch_size, res,
                       NULL, 0, NULL, pad_value, zero_out);
}

int mdfi_conv2d_pool(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                     const void *packed, int64_t packed_size, const int64_t *bias, const int32_t *shift,
                     int32_t m, void *out, int otype, int64_t out_count, int32_t ks, int32_t stride,
                     int32_t pad, int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                     int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                     void *pool, int64_t pool_count, int32_t pool_only)
{
    return mdfi_conv2d_pool_zp(x, xtype, c, h, w, x_count, packed, packed_size, bias, shift, m, out, otype, out_count,
                               ks, stride, pad, rounding, out_bits, act, acc64, nthreads, path, scratch, scratch_size,
                               pool, pool_count, pool_only, 0, 0);
}

int mdfi_conv2d_pool_zp(const void *x, int xtype, int32_t c, int32_t h, int32_t w, int64_t x_count,
                        const void *packed, int64_t packed_size, const int64_t *bias, const int32_t *shift,
                        int32_t m, void *out, int otype, int64_t out_count, int32_t ks, int32_t stride,
                        int32_t pad, int32_t rounding, int32_t out_bits, int32_t act, int32_t acc64,
                        int32_t nthreads, int32_t path, void *scratch, int64_t scratch_size,
                        void *pool, int64_t pool_count, int32_t pool_only, int32_t pad_value, int32_t zero_out)
{
    int pooled = 0;
    if (pool == NULL) return MDFI_CONV_E_DIM;
    const int32_t oh = mdfi_conv_out_size(h, ks, stride, pad), ow = mdfi_conv_out_size(w, ks, stride, pad);
    /* only a tile-aligned pool: even output sizes, windows at the origin */
    void *p = oh > 0 && ow > 0 && oh % 2 == 0 && ow % 2 == 0 && pool_count == (int64_t)m * (oh / 2) * (ow / 2)
            ? pool : NULL;
    const int rc = conv2d_impl(x, xtype, c, h, w, x_count, packed, packed_size, bias, shift, m, out, otype, out_count,
                               ks, stride, pad, rounding, out_bits, act, acc64, nthreads,
                               mdfi_conv_effective_path(path), scratch, scratch_size, NULL, p, pool_only != 0,
                               &pooled, pad_value, zero_out);
    return rc != MDFI_CONV_OK ? rc : pooled;
}
