/* mdfi_conv_q8.c -- the 8-bit dot-product convolution: geometry, kernel choice and driver
 * (layouts and exactness argument: mdfi_conv_q8.h; the portable reference ops, path scalar8:
 * mdfi_conv_q8_ref.c).
 *
 * Driver.  Phase 1 builds X4 (channel quads interleaved, padded, phase-split, bytes x ^ flip)
 * in parallel rows.  Phase 2 (packed mode only) packs B for every tile.  Phase 3 hands out
 * work units: (block of tiles, row tile) pairs (large maps), or (row tile, tile) pairs under
 * the output-channel split (small maps such as 13x13, where a few tiles could not keep every
 * thread busy), in runs that shrink to single units at the end of the layer.  Each call of a
 * kernel computes one MR x NR register tile over the whole reduction (no K blocking: the
 * accumulators stay in registers), then requantizes and stores it.  Every output element is
 * computed by one kernel call, whatever the thread count or schedule.
 *
 * Kernel choice.  Each path offers a few register tiles (MR rows x NRV vectors); the driver
 * picks the tile shape and B mode (direct / packed / compact) with the smallest estimated
 * cost: padded positions and rows, loads per dot product, epilogue, packing or copies (q8_cost),
 * under a profile chosen at run time (generic, or Intel for the zmm path on an Intel CPU:
 * q8_tune).  The choice never changes the result, only the time.
 */
#include "mdfi_conv_q8.h"
#include "mdfi_cpu.h"
#include "mdfi_fixedpoint.h"

#include <string.h>

#define ALIGN 64
#define L2_BUDGET (256 * 1024)        /* B bytes per work item */
#define AMX_DIRECT_OW 104             /* AMX: strided layers this wide read B in direct mode   */
#define COMPACT_COST 0.25             /* cost units per 16 positions of a compact copy */

static size_t align_up(size_t n) { return (n + (ALIGN - 1)) & ~(size_t)(ALIGN - 1); }

/* ---------------------------------------------------------------------------------------
 * Geometry
 * ------------------------------------------------------------------------------------- */
int mdfi_q8_split_shape(int32_t c, int32_t ks, int32_t stride, int32_t pad)
{
    if (ks != 1 || stride != 1 || pad != 0 || c < 64 || c % 64 != 0 || c > INT32_MAX / 2) return 0;
    const int32_t half = c / 64;                   /* K steps of each half */
    return half <= Q8_AMX_KC || half % Q8_AMX_KC == 0;
}

int mdfi_q8_split_ok(const q8_ops *ops, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                     int32_t pad)
{
    if (ops == NULL || ops->x4_split == NULL || !mdfi_q8_split_shape(c, ks, stride, pad)) return 0;
    if (ops->usable != NULL && !ops->usable(2 * c, ks, stride)) return 0;
    return mdfi_q8_scratch_size(2 * c, h, w, m, ks, stride, pad, 1) >= 0;
}

int mdfi_q8_usable(int xtype, int wtype, int32_t acc64, int32_t c, int32_t h, int32_t w, int32_t m,
                   int32_t ks, int32_t stride, int32_t pad)
{
    if ((xtype != MDFI_CONV_U8 && xtype != MDFI_CONV_S8) || wtype != MDFI_CONV_S8 || acc64 != 0) return 0;
    if (ks > Q8_MAX_KS || stride > Q8_MAX_STRIDE) return 0;
    return mdfi_q8_scratch_size(c, h, w, m, ks, stride, pad, 1) >= 0;
}

/* Phase-plane geometry (independent of the kernel); 0 or -1 when too large. */
static int plane_geometry(q8_ctx *g, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                          int32_t pad)
{
    if (c < 1 || h < 1 || w < 1 || m < 1 || ks < 1 || ks > Q8_MAX_KS || stride < 1 || stride > Q8_MAX_STRIDE ||
        pad < 0)
        return -1;
    const int32_t oh = mdfi_conv_out_size(h, ks, stride, pad), ow = mdfi_conv_out_size(w, ks, stride, pad);
    if (oh < 1 || ow < 1) return -1;
    const int64_t hp = (int64_t)h + 2 * (int64_t)pad, wp = (int64_t)w + 2 * (int64_t)pad;
    const int64_t hps = (hp + stride - 1) / stride, wps = (wp + stride - 1) / stride;
    const int64_t span = (int64_t)((ks - 1) / stride) * (wps + 1);
    int64_t plane = hps * wps + Q8_MAX_NR + span;
    plane = (plane + 15) & ~(int64_t)15;
    const int64_t c4 = ((int64_t)c + 3) / 4;
    /* X4 bytes and every offset into it must fit comfortably (int64 / size_t) */
    if (hps > INT32_MAX || wps > INT32_MAX || plane > ((int64_t)1 << 40) / 4 ||
        c4 * stride * stride > ((int64_t)1 << 40) / (plane * 4))
        return -1;
    g->c = c; g->h = h; g->w = w; g->m = m; g->ks = ks; g->stride = stride; g->pad = pad;
    g->taps = ks * ks;
    g->c4 = (int32_t)c4;
    g->c4b = (int32_t)((c4 + 15) / 16);
    g->np16 = (int32_t)(((int64_t)m + Q8_PANEL - 1) / Q8_PANEL);
    g->oh = oh; g->ow = ow; g->hp = (int32_t)hp; g->wp = (int32_t)wp;
    g->hps = (int32_t)hps; g->wps = (int32_t)wps;
    g->plane = plane;
    g->n = (int64_t)oh * ow;
    g->xcs = (size_t)stride * (size_t)stride * (size_t)plane * 4;
    g->cplane = 0;
    if (ks >= 2) {
        g->cplane = ((hps * (int64_t)ow + Q8_MAX_NR) + 15) & ~(int64_t)15;
        if (c4 * stride * ks > ((int64_t)1 << 40) / (g->cplane * 4)) g->cplane = 0;   /* too large: none */
    }
    for (int32_t t = 0; t < g->taps; ++t) {
        const int32_t ky = t / ks, kx = t % ks;
        g->xoff[t] = ((int64_t)((ky % stride) * stride + (kx % stride)) * plane +
                      (int64_t)(ky / stride) * wps + kx / stride) * 4;
    }
    return 0;
}

static size_t x4_bytes(const q8_ctx *g) { return (size_t)g->c4 * g->xcs; }

/* B modes */
enum { MODE_PACKED = 0, MODE_DIRECT = 1, MODE_COMPACT = 2, MODE_CL = 3 };

/* copies per channel quad: one per phase row py and kernel column kx */
static size_t compact_bytes(const q8_ctx *g)
{
    return (size_t)g->c4 * (size_t)g->stride * (size_t)g->ks * (size_t)g->cplane * 4;
}

/* channels-last copy of X4 (MODE_CL) */
static size_t xl_bytes(const q8_ctx *g)
{
    return (size_t)g->stride * (size_t)g->stride * (size_t)g->plane * 64u * (size_t)g->c4b;
}

/* Can the layer take channels-last mode (forced or chosen)?  Whole 16-quad K steps at most one
 * quad short, so that XL (64 bytes per position and step) stays within about twice X4 and the
 * scratch of other layers (3-channel first layers: 16x X4) does not grow for it. */
static int cl_fits(const q8_ctx *g) { return g->c4 >= 16; }

/* Tiles, mode and offsets for kernel k in B mode `mode` (compact only when g->cplane). */
static void tile_geometry(q8_ctx *g, const q8_kernel *k, int mode)
{
    g->kern = k;
    g->mr = k->mr;
    g->nr = k->nrv * k->lanes;
    g->direct = mode == MODE_DIRECT || mode == MODE_CL;
    g->compact = mode == MODE_COMPACT;
    g->cl = mode == MODE_CL;
    g->cpb = 64 * g->c4b;
    g->ngrid = g->direct ? (int64_t)g->oh * g->wps : g->n;
    g->ntiles = (int32_t)((g->ngrid + g->nr - 1) / g->nr);
    g->nmt = (g->m + g->mr - 1) / g->mr;
    g->tile_bytes = (size_t)g->taps * (size_t)g->c4 * (size_t)g->nr * 4;
    if (g->cl) {
        g->bcs = (size_t)g->cpb;
        for (int32_t t = 0; t < g->taps; ++t) g->toff[t] = g->xoff[t] / 4 * g->cpb;
    } else if (g->direct) {
        g->bcs = g->xcs;
        memcpy(g->toff, g->xoff, sizeof(int64_t) * (size_t)g->taps);
    } else if (g->compact) {
        g->bcs = (size_t)g->stride * (size_t)g->ks * (size_t)g->cplane * 4;
        for (int32_t t = 0; t < g->taps; ++t) {
            const int32_t ky = t / g->ks, kx = t % g->ks;
            g->toff[t] = ((int64_t)((ky % g->stride) * g->ks + kx) * g->cplane + (int64_t)(ky / g->stride) * g->ow) * 4;
        }
    } else {
        g->bcs = (size_t)g->nr * 4;
        for (int32_t t = 0; t < g->taps; ++t) g->toff[t] = (int64_t)t * g->c4 * g->nr * 4;
    }
}

/* Kernel-choice profiles (q8_cost).  Generic: the model tuned on AMD Zen 4 (earlier rounds).
 * Intel (AVX512-VNNI zmm on an Intel CPU; measured on a Xeon of the Emerald Rapids class,
 * docs/performance.md, round 9): every tile of one vector per row (16x1) ran 10-30 % slower
 * than 8x3 or 12x2 on every yolov3 3x3 shape, compact mode 5-25 % slower than the better of
 * direct and packed (its kx copies lose the L1 reuse of the direct grid's neighbouring taps),
 * direct mode at stride 2 about 10 % slower than packed (four phase planes), and packing costs
 * more with several threads (a thread's tiles are packed partly by the other core). */
typedef struct {
    int32_t min_nrv;                  /* kernels with fewer vectors per row are skipped      */
    int32_t compact;                  /* compact mode may replace packed mode at stride 1    */
    double pack;                      /* packing cost per vector and channel quad x tap      */
    double direct_s2;                 /* direct mode factor at stride >= 2                   */
    double l2;                        /* packed B beyond these bytes per core (0: never) ...  */
    double l2_excess;                 /* ... costs this much more per l2 of excess            */
    int32_t nthreads;
} q8_tune;
static int32_t force_tune = -1;        /* mdfi_conv_q8_tune */

void mdfi_conv_q8_tune(int32_t profile) { force_tune = profile; }

static q8_tune choose_tune(const q8_ops *ops, int32_t nthreads)
{
    int intel = force_tune == 1;
#if MDFI_CONV_X86
    if (force_tune < 0) intel = ops == &mdfi_q8_ops_vnni512 && mdfi_cpu_is_intel();
#else
    (void)ops;
#endif
    if (!intel) {
        const q8_tune t = {1, 1, 0.25, 1.0, 0.0, 0.0, nthreads};
        return t;
    }
    /* L2 (CPUID; 2 MB per core on Sapphire / Emerald Rapids): packed B beyond that is written
     * to and read back from L3 (yolov3's 52x52 3x3 layers at one thread: 3.1 MB, packed 4 % slower
     * than direct).  Under the output-channel split every core reads all of packed B, half of
     * it packed by the other core: half an L2 then (yolov3's 26x26 3x3 layers, 1.6 MB: packed
     * 15-20 % slower than direct at 2 threads, 2 % faster at one) */
    const int64_t l2 = mdfi_cpu_l2_bytes();        /* CPUID leaf 4; 2 MB if unknown or odd */
    const double l2b = l2 >= 256 * 1024 && l2 <= 64 * 1024 * 1024 ? (double)l2 : 2.0 * 1024 * 1024;
    const q8_tune t = {2, 0, nthreads > 1 ? 0.5 : 0.25, 1.1, l2b, 0.1, nthreads};
    return t;
}

/* The work split (mdfi_q8_conv): split the output channels (each thread streams only its own
 * weight panels, the shared input stays in cache) when the pixels give few tiles per thread,
 * or when the weights outweigh the layer's input (the 13x13 and 26x26 layers of deep
 * networks); else blocks of tiles. */
static int use_msplit(const q8_ctx *g, int32_t nthreads)
{
    const double wbytes = (double)g->m * g->c4 * 4.0 * g->taps;
    const double xbytes = (double)g->c4 * 4.0 * g->ntiles * g->nr;
    /* AMX, any thread count: the output-channel order (each weight panel read once, every
     * tile's B kept in L2) when the weights outweigh a B that fits half of L2 (yolov3's 13x13
     * layers of 1024 filters 0.73-0.80x at one thread; with B past L2, 26x26 layers lost 4 %) */
    if (g->ops != NULL && g->ops->b_aligned && g->nmt >= 2 * nthreads) {
        const double bbytes = (double)g->ntiles * (double)g->tile_bytes;
        if (wbytes > bbytes && bbytes <= (double)mdfi_cpu_l2_bytes() / 2.0) return 1;
    }
    return nthreads > 1 && g->nmt >= 2 * nthreads && ((int64_t)g->ntiles < 4 * (int64_t)nthreads || wbytes > xbytes);
}

/* Estimated cycles (in units of one dot-product instruction of the kernel's width). */
static double q8_cost(q8_ctx *g, const q8_kernel *k, int mode, const q8_tune *tu)
{
    tile_geometry(g, k, mode);
    const double k4 = (double)g->taps * g->c4;
    const double dots = (double)k->mr * k->nrv;
    const double loads = (double)(k->mr + k->nrv) / 2.0;           /* two loads per cycle */
    const double step = dots > loads ? dots : loads;
    double cost = (double)g->ntiles * g->nmt * (k4 * step + 4.0 + dots * 6.0);
    /* (not for the pixel-input layers, C <= 4: their nine-tap K makes packing at stride 2 the
     * dearer part -- yolov4-tiny's and yolov7-tiny's 416 -> 208 first layer, packed 1.6x
     * slower than direct on the Intel Xeon with AMX, stop 42) */
    if (mode == MODE_DIRECT && g->stride >= 2 && g->c4 > 1) cost *= tu->direct_s2;
    if (mode == MODE_PACKED && tu->l2 > 0.0) {
        const double bytes = (double)g->ntiles * (double)g->tile_bytes;
        const double l2 = use_msplit(g, tu->nthreads) ? tu->l2 / 2.0 : tu->l2 * tu->nthreads;
        if (bytes > l2) cost *= 1.0 + tu->l2_excess * (bytes / l2 - 1.0);
    }
    if (mode == MODE_PACKED) cost += (double)g->ntiles * k4 * k->nrv * tu->pack;     /* packing */
    if (mode == MODE_COMPACT) cost += (double)g->c4 * g->stride * g->ks * g->hps * g->ow / 16.0 * COMPACT_COST;
    return cost;
}

int64_t mdfi_q8_scratch_size(int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                             int32_t pad, int32_t nthreads)
{
    q8_ctx g;
    if (nthreads < 1 || plane_geometry(&g, c, h, w, m, ks, stride, pad) != 0) return -1;
    const uint64_t x4 = x4_bytes(&g);
    /* packed B for the widest tile: ceil(N / NR) * NR <= N + NR positions */
    uint64_t packed = ((uint64_t)g.n + Q8_MAX_NR) * (uint64_t)g.taps * (uint64_t)g.c4 * 4u;
    if (compact_bytes(&g) > packed) packed = compact_bytes(&g);     /* the same buffer */
    if (cl_fits(&g) && xl_bytes(&g) > packed) packed = xl_bytes(&g);   /* and XL */
    const uint64_t bq = (uint64_t)m * 4u;
    const uint64_t rowc = ((uint64_t)m + Q8_PANEL) * sizeof(q8_rowc);      /* + rows past M: zero */
    /* lane info: one entry per vector of >= 8 lanes over the grid (direct) or N (packed) */
    const uint64_t grid = (uint64_t)g.oh * (uint64_t)g.wps > (uint64_t)g.n ? (uint64_t)g.oh * (uint64_t)g.wps
                                                                            : (uint64_t)g.n;
    const uint64_t vinfo = ((grid + Q8_MAX_NR) / 8u + 2u) * 8u;
    const uint64_t total = ALIGN + align_up(x4) + align_up(packed) + align_up(bq) + align_up(rowc) + align_up(vinfo);
    if (total > (uint64_t)INT64_MAX / 2 || total > (uint64_t)SIZE_MAX / 2) return -1;
    return (int64_t)total;
}

/* ---------------------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------------------- */
static int32_t force_kernel = -1, force_direct = -1;     /* testing: mdfi_conv_q8_override */

void mdfi_conv_q8_override(int32_t kernel, int32_t direct)
{
    force_kernel = kernel;
    force_direct = direct;
}

typedef struct {
    const q8_ctx *ctx;
    mdfi_counter x4, x4_done, pack, pack_done, item;
} q8_job;

/* Per-row constants of the int32-lane epilogue (q8_rowc, mdfi_conv_q8.h). */
static int prepare_rows(const q8_ctx *ctx, q8_rowc *rowc)
{
    int32_t nfast = 0;
    for (int32_t m = 0; m < ctx->m; ++m) {
        const int32_t s = ctx->shift[m];
        rowc[m].s = 0;
        rowc[m].bq = rowc[m].c = rowc[m].kd = 0;
        if (!ctx->sum32 || s < 1 || s > 31) continue;
        const mdfi_rqf k = mdfi_rqf_init(s, ctx->rounding);
        const int64_t ab = ctx->bias[m] < 0 ? -ctx->bias[m] : ctx->bias[m];
        if (ctx->bound + ab + k.half > (int64_t)INT32_MAX) continue;
        rowc[m].bq = mdfi_q8_wrap((uint32_t)(uint64_t)ctx->bias[m] - (uint32_t)ctx->delta * (uint32_t)ctx->wsum[m] +
                                  (uint32_t)k.half);
        rowc[m].c = k.c;
        rowc[m].kd = k.kd;
        rowc[m].s = s;
        ++nfast;
    }
    return nfast == ctx->m;                   /* every row fast */
}

/* Output index and lane mask of every vector of `lanes` grid positions (the mdfi_q8_lanes of
 * each, walked without divisions): vi[g] = start | mask << 48. */
static void prepare_vinfo(const q8_ctx *ctx, int32_t lanes, uint64_t *vi)
{
    const int64_t nv = (int64_t)ctx->ntiles * (ctx->nr / lanes);
    const uint32_t full = (1u << lanes) - 1u;
    if (!ctx->direct) {
        for (int64_t g = 0; g < nv; ++g) {
            const int64_t q = g * lanes, v = ctx->n - q;
            const uint32_t mask = q >= ctx->n ? 0 : v >= lanes ? full : (1u << v) - 1u;
            vi[g] = (uint64_t)(q < ctx->n ? q : ctx->n) | (uint64_t)mask << 48;
        }
        return;
    }
    const int32_t wps = ctx->wps, ow = ctx->ow;
    int64_t oy = 0;
    int32_t ox = 0;                       /* grid position of lane 0 of vector g */
    for (int64_t g = 0; g < nv; ++g) {
        uint32_t mask = 0;
        int64_t start = ctx->n;
        if (oy < ctx->oh) {
            start = oy * ow + (ox < ow ? ox : ow);
            int64_t y = oy;
            int32_t x = ox;
            for (int32_t l = 0; l < lanes && y < ctx->oh;) {
                const int32_t valid = ow - x;
                if (valid > 0) {
                    const int32_t e = l + valid < lanes ? l + valid : lanes;
                    mask |= (full >> (lanes - e)) & ~((1u << l) - 1u);
                }
                l += wps - x;
                x = 0;
                ++y;
            }
        }
        vi[g] = (uint64_t)start | (uint64_t)mask << 48;
        ox += lanes;
        while (ox >= wps) {
            ox -= wps;
            ++oy;
        }
    }
}

#define X4_ITEM_BYTES (32 * 1024)

/* Compact copy `item` = (channel quad, phase row py, kernel column kx): rows r < Hps of the
 * X4 phase plane (py, kx % S), positions kx / S .. kx / S + OW - 1 (all inside the plane's
 * Wps: (kx / S) + OW - 1 <= (Wp - 1) / S). */
static void compact_copy(const q8_ctx *ctx, int64_t item)
{
    const int32_t ks = ctx->ks, s = ctx->stride, ow = ctx->ow, hps = ctx->hps, wps = ctx->wps;
    const int64_t q4 = item / ((int64_t)s * ks), py = item / ks % s, kx = item % ks;
    const uint8_t *src = ctx->x4 + (size_t)q4 * ctx->xcs +
                         ((size_t)(py * s + kx % s) * (size_t)ctx->plane + (size_t)(kx / s)) * 4;
    uint8_t *dst = ctx->bpk + (size_t)item * (size_t)ctx->cplane * 4;
    for (int32_t r = 0; r < hps; ++r)
        memcpy(dst + (size_t)r * (size_t)ow * 4, src + (size_t)r * (size_t)wps * 4, (size_t)ow * 4);
    memset(dst + (size_t)hps * (size_t)ow * 4, ctx->padv, ((size_t)ctx->cplane - (size_t)hps * (size_t)ow) * 4);
}

static void q8_worker(void *arg, int tid)
{
    q8_job *job = (q8_job *)arg;
    const q8_ctx *ctx = job->ctx;
    const q8_ops *ops = ctx->ops;
    /* X4 rows: one per (channel quad, phase, plane row), or with x4_s2 one per (channel quad,
     * phase row, plane row) covering both column phases */
    const int pairs = ctx->stride == 2 && ops->x4_s2 != NULL;
    /* by plane rows y of every (channel quad, phase), from both ends (mdfi_pool_next_end:
     * thread 0 the top rows, which its tiles then read, thread 1 the bottom ones); row
     * r = prefix * hps + y in every x4 operation */
    const int64_t prefixes = (int64_t)ctx->c4 * ctx->stride * (pairs ? 1 : ctx->stride);
    if (ctx->hps >= SPATIAL_MIN_ROWS) {
        const int64_t rb = (int64_t)ctx->wps * 4 * (pairs ? 2 : 1) * prefixes;
        const int64_t per = rb >= X4_ITEM_BYTES ? 1 : X4_ITEM_BYTES / rb;
        const int64_t nx = ((int64_t)ctx->hps + per - 1) / per;
        for (int64_t i0, i1; (i0 = mdfi_pool_next_end(&job->x4, nx, tid & 1, 4, 1, &i1)) < nx;) {
            const int64_t y0 = i0 * per, y1 = i1 * per < ctx->hps ? i1 * per : ctx->hps;
            for (int64_t pl = 0; pl < prefixes; ++pl)
                (ctx->split ? ops->x4_split : pairs ? ops->x4_s2 : ops->x4)(ctx, pl * ctx->hps + y0, pl * ctx->hps + y1);
            for (int64_t i = i0; i < i1; ++i) mdfi_pool_done(&job->x4_done, nx);
        }
        mdfi_pool_wait(&job->x4_done, nx);
    } else {
        /* small maps: rows in order (many short calls per channel quad cost more than the
         * spatial split brings: 1x1 layers on 13x13 1.11x at one thread) */
        const int64_t rows = prefixes * ctx->hps;
        const int64_t rb = (int64_t)ctx->wps * 4 * (pairs ? 2 : 1);
        const int64_t per = rb >= X4_ITEM_BYTES ? 1 : X4_ITEM_BYTES / rb;
        const int64_t nx = (rows + per - 1) / per;
        for (int64_t i; (i = mdfi_pool_next(&job->x4)) < nx;) {
            (ctx->split ? ops->x4_split : pairs ? ops->x4_s2 : ops->x4)(ctx, i * per,
                                                                         (i + 1) * per < rows ? (i + 1) * per : rows);
            mdfi_pool_done(&job->x4_done, nx);
        }
        mdfi_pool_wait(&job->x4_done, nx);
    }
    if (ctx->cl) {
        const int64_t nblk = (int64_t)ctx->stride * ctx->stride * (ctx->plane / 16);
        for (int64_t b0, b1; (b0 = mdfi_pool_next_end(&job->pack, nblk, tid & 1, 4, 1, &b1)) < nblk;)
            for (int64_t b = b0; b < b1; ++b) {
                ops->xl(ctx, b);
                mdfi_pool_done(&job->pack_done, nblk);
            }
        mdfi_pool_wait(&job->pack_done, nblk);
    } else if (ctx->compact) {
        const int64_t ncopies = (int64_t)ctx->c4 * ctx->stride * ctx->ks;
        for (int64_t i; (i = mdfi_pool_next(&job->pack)) < ncopies;) {
            compact_copy(ctx, i);
            mdfi_pool_done(&job->pack_done, ncopies);
        }
        mdfi_pool_wait(&job->pack_done, ncopies);
    } else if (!ctx->direct) {
        for (int64_t t0, t1; (t0 = mdfi_pool_next_end(&job->pack, ctx->ntiles, tid & 1, 4, 1, &t1)) < ctx->ntiles;)
            for (int64_t t = t0; t < t1; ++t) {
                ops->pack(ctx, (int32_t)t, ctx->bpk + (size_t)t * ctx->tile_bytes);
                mdfi_pool_done(&job->pack_done, ctx->ntiles);
            }
        mdfi_pool_wait(&job->pack_done, ctx->ntiles);
    }
    const q8_tile_fn fn = ctx->kern->fn;
    /* Work units (output-channel tile mt, block of pixel tiles): under the output-channel
     * split one unit per (mt, pixel tile), mt-major (each thread streams only the weight
     * panels of its own mt); else one per (item g, mt), g-major (an item's tiles read the same
     * X4 rows or packed B).  Runs of units from both ends (mdfi_pool_next_end: thread 0 the
     * top, thread 1 the bottom), a quarter of what is left per claim: long runs first, single
     * units at the end, so the threads finish within one unit of each other (items of whole
     * output-channel groups left one thread idle for 5-15 % of a short layer at two threads). */
    const int64_t outer = ctx->msplit ? ctx->nmt : ctx->nitems, inner = ctx->msplit ? ctx->ntiles : ctx->nmt;
    const int64_t per = outer * inner < ((int64_t)1 << 30) ? 1 : inner;    /* units per claim step */
    const int64_t units = outer * (inner / per);
    for (int64_t u0, u1; (u0 = mdfi_pool_next_end(&job->item, units, tid & 1, 4, 1, &u1)) < units;) {
        for (int64_t e = u0 * per, e1 = u1 * per; e < e1;) {
            const int64_t o = e / inner, i0 = e % inner;
            const int64_t i1 = e1 - (e - i0) < inner ? e1 - (e - i0) : inner;     /* o's units in the run */
            if (ctx->msplit) {
                for (int64_t t = i0; t < i1; ++t) fn(ctx, (int32_t)o * ctx->mr, (int32_t)t);
            } else {
                /* item o: tiles [o*T/I, (o+1)*T/I), sizes differ by at most one tile */
                const int32_t t0 = (int32_t)(o * ctx->ntiles / ctx->nitems);
                const int32_t t1 = (int32_t)((o + 1) * ctx->ntiles / ctx->nitems);
                for (int64_t mt = i0; mt < i1; ++mt)
                    for (int32_t t = t0; t < t1; ++t) fn(ctx, (int32_t)mt * ctx->mr, t);
            }
            e += i1 - i0;
        }
    }
    if (ops->finish != NULL) ops->finish();
}

/* The register tile and B mode of a layer (ctx: plane_geometry done): the smallest estimated
 * cost under the CPU's profile, unless forced (mdfi_conv_q8_override). */
static void choose(q8_ctx *g, const q8_ops *ops, int32_t nthreads, const q8_kernel **bestp, int *best_modep)
{
    const q8_kernel *best = &ops->kerns[0];
    int best_mode = MODE_DIRECT;
    double best_cost = -1.0;
    /* stride 1: compact mode replaces packed mode, which it beat on every yolov3 layer shape
     * measured on AMD; stride 2 keeps packed mode (compact was 1-2% slower there: S*ks copies
     * and the X4 pass against ks*ks packed taps; docs/performance.md).  Forced compact mode
     * runs at every stride (tests). */
    const q8_tune tu = choose_tune(ops, nthreads);
    const int modes[2] = {MODE_DIRECT, g->cplane && g->stride == 1 && tu.compact ? MODE_COMPACT : MODE_PACKED};
    int32_t min_nrv = tu.min_nrv;
    for (int32_t i = 0; i < ops->nkerns; ++i)                /* no kernel that wide: all of them */
        if (ops->kerns[i].nrv >= min_nrv) break;
        else if (i == ops->nkerns - 1) min_nrv = 1;
    for (int32_t i = 0; i < ops->nkerns; ++i)
        for (int j = 0; j < 2; ++j) {
            if (ops->kerns[i].nrv < min_nrv) continue;
            const double cost = q8_cost(g, &ops->kerns[i], modes[j], &tu);
            if (best_cost < 0.0 || cost < best_cost * 0.97) {
                best_cost = cost;
                best = &ops->kerns[i];
                best_mode = modes[j];
            }
        }
    if (ops->b_aligned) {
        /* AMX (docs/performance.md "AMX on real hardware" and "Direct mode on AMX", measured
         * per layer): 1x1 layers read B straight from X4 (stride 1, no padding: rows on cache
         * lines), kernel 1 (one register tile) when K is one chunk (at most Q8_AMX_KC_ONE steps
         * of 64 channels), else kernel 0 (4 register tiles sharing B from L1).  Larger kernels:
         * direct mode with one register tile at stride 1 and on wide strided maps (stop 40:
         * 0.67-0.93x the time of packed B on yolov3's shapes at 1 and 2 threads, although its
         * tile rows cross cache lines), else packed B (rows on lines) with 4 register tiles. */
        const int direct = g->ks == 1 ? g->stride == 1 && g->pad == 0 : g->stride == 1 || g->ow >= AMX_DIRECT_OW;
        best_mode = direct ? MODE_DIRECT : MODE_PACKED;
        const int one_tile = (g->ks == 1 && (g->c4 + 15) / 16 <= Q8_AMX_KC_ONE) || (direct && g->ks > 1);
        best = &ops->kerns[ops->nkerns > 1 && one_tile ? 1 : 0];
        /* stop 41: the channels-last kernel with its epilogue pipelined into the next call, for
         * kernels of 2x2 and more at stride 1, or 2 with outputs at least 26 wide, on two or more
         * whole K tiles per tap (yolov3's 3x3 stride-1 layers of 128-1024 channels 0.71-0.96x
         * the time of direct mode, its 104x104 and 52x52 stride-2 ones 0.82-0.83x that of
         * packed B; at 64 channels 0.98-1.08x, on the 26x26 stride-2 map 1.03x: not taken;
         * docs/performance.md "Channels-last on AMX") */
        if (ops->cl != NULL && (g->stride == 1 || (g->stride == 2 && g->ow >= 26)) && g->ks >= 2 && g->c % 64 == 0 &&
            g->c >= 128)
            best_mode = MODE_CL;
    }
    if (force_kernel >= 0) best = &ops->kerns[force_kernel < ops->nkerns ? force_kernel : ops->nkerns - 1];
    /* 2 (compact) where the layer has no compact mode: packed; 3 (channels-last) where the
     * ops or the layer have none (cl_fits): direct */
    if (force_direct >= 0)
        best_mode = force_direct == 1 || (force_direct == 3 && (ops->cl == NULL || !cl_fits(g))) ? MODE_DIRECT
                  : force_direct == 3 ? MODE_CL
                  : force_direct == 2 && g->cplane ? MODE_COMPACT : MODE_PACKED;
    if (best_mode == MODE_CL) best = ops->cl;
    *bestp = best;
    *best_modep = best_mode;
}

int32_t mdfi_q8_choice(const q8_ops *ops, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                       int32_t pad, int32_t nthreads)
{
    static q8_ctx zero;
    q8_ctx g = zero;
    if (ops == NULL || ops->nkerns < 1 || nthreads < 1 || plane_geometry(&g, c, h, w, m, ks, stride, pad) != 0)
        return -1;
    const q8_kernel *best;
    int mode;
    choose(&g, ops, nthreads, &best, &mode);
    if (mode == MODE_CL) return ops->nkerns * 4 + MODE_CL;      /* its kernel: one past `kerns` */
    return (int32_t)(best - ops->kerns) * 4 + mode;
}

void mdfi_q8_conv(const q8_ops *ops, const void *x, int xtype, int32_t c, int32_t h, int32_t w,
                  const int8_t *a4, const int8_t *at, const int32_t *wsum, const int64_t *bias, const int32_t *shift, int32_t m,
                  void *out, int otype, int32_t ks, int32_t stride, int32_t pad, int32_t rounding,
                  int32_t bits, int32_t act, int32_t sum32, int64_t bound, const mdfi_conv_residual *res,
                  int32_t nthreads, void *scratch, int32_t pad_value, int32_t zero_out)
{
    static q8_ctx zero;
    q8_ctx ctx = zero;
    /* a 16-bit input (mdfi_q8_split_ok) runs as 2C byte channels: the hi halves, then the lo */
    const int split = xtype == MDFI_CONV_S16;
    (void)plane_geometry(&ctx, split ? 2 * c : c, h, w, m, ks, stride, pad);   /* checked by the caller */
    ctx.ops = ops;
    ctx.x = x;
    ctx.xtype = xtype;
    const int unsigned_x = xtype == MDFI_CONV_U8;
    if (split) {
        /* read: 256 (hi + 128) + lo = x + 32768 per position (amx_x4_split); no padding */
        ctx.split = (c / 4 + 15) / 16;
        ctx.flip = 0;
        ctx.delta = 32768;
    } else if (ops->signed_dot) {
        ctx.flip = unsigned_x ? 0x80 : 0;
        ctx.delta = unsigned_x ? -128 : 0;
    } else {
        ctx.flip = unsigned_x ? 0 : 0x80;
        ctx.delta = unsigned_x ? 0 : 128;
    }
    ctx.padv = (uint8_t)((uint8_t)(pad_value & 0xff) ^ ctx.flip);
    ctx.a = a4;
    ctx.at = at;
    ctx.wsum = wsum;
    ctx.bias = bias;
    ctx.shift = shift;
    ctx.out = out;
    ctx.otype = otype;
    ctx.rounding = rounding;
    ctx.bits = bits;
    ctx.act = act;
    ctx.sum32 = sum32;
    ctx.bound = bound;
    ctx.zo = zero_out;
    ctx.zlo = mdfi_qmin(bits) - zero_out;
    ctx.zhi = mdfi_qmax(bits) - zero_out;

    const q8_kernel *best;
    int best_mode;
    choose(&ctx, ops, nthreads, &best, &best_mode);
    tile_geometry(&ctx, best, best_mode);

    /* work split (use_msplit) */
    ctx.msplit = use_msplit(&ctx, nthreads);
    const double per_tile = ctx.direct || ctx.compact ? (double)ctx.c4 * ctx.nr * 4.0 * (ctx.taps < 4 ? ctx.taps : 4)
                                                      : (double)ctx.tile_bytes;
    int64_t nb = (int64_t)(L2_BUDGET / (per_tile > 1.0 ? per_tile : 1.0));
    if (nb < 1) nb = 1;
    if (nthreads > 1) {
        const int64_t cap = (ctx.ntiles + 4 * (int64_t)nthreads - 1) / (4 * (int64_t)nthreads);
        if (nb > cap) nb = cap;
    }
    if (nb > ctx.ntiles) nb = ctx.ntiles;
    if (nb < 1) nb = 1;
    ctx.nb = (int32_t)nb;
    /* items of nb tiles or slightly fewer, as many as a multiple of the thread count: equal
     * shares (a last, short item would leave a thread idle at the end of the layer) */
    int64_t nitems = (ctx.ntiles + nb - 1) / nb;
    nitems = (nitems + nthreads - 1) / nthreads * nthreads;
    if (nitems > ctx.ntiles) nitems = ctx.ntiles;
    ctx.nitems = nitems;

    /* scratch: X4, packed B, bq */
    unsigned char *s = (unsigned char *)scratch;
    ctx.x4 = s;
    s += align_up(x4_bytes(&ctx));
    ctx.bpk = s;
    if (ctx.cl) s += align_up(xl_bytes(&ctx));
    else if (ctx.compact) s += align_up(compact_bytes(&ctx));
    else if (!ctx.direct) s += align_up((size_t)ctx.ntiles * ctx.tile_bytes);
    ctx.bq = (int32_t *)(void *)s;
    if (sum32)
        for (int32_t i = 0; i < m; ++i)  /* bias - delta*wsum modulo 2^32 */
            ctx.bq[i] = mdfi_q8_wrap((uint32_t)(uint64_t)bias[i] - (uint32_t)ctx.delta * (uint32_t)wsum[i]);
    s += align_up((size_t)m * 4);
    if (ops->fast_epi) {
        q8_rowc *rowc = (q8_rowc *)(void *)s;
        s += align_up(((size_t)m + Q8_PANEL) * sizeof(q8_rowc));
        /* the rows a register tile runs past M read bq 0 from here (no branch per row) */
        memset(rowc + m, 0, Q8_PANEL * sizeof(q8_rowc));
        ctx.regs_epi = prepare_rows(&ctx, rowc);
        ctx.rowc = rowc;
        uint64_t *vi = (uint64_t *)(void *)s;
        prepare_vinfo(&ctx, best->lanes, vi);
        ctx.vinfo = vi;
    }
    /* the epilogue's clamp: unless the narrowing saturates to the same range; then an output
     * zero point is one add before it (sat(r + zo): the fast rows' |r| <= 2^30, no wrap) */
    {
        const int narrow_sat = (otype == MDFI_CONV_S8 && bits == 8) || bits == 16;
        ctx.clamp = !narrow_sat;
        ctx.addz = narrow_sat && zero_out != 0;
    }
    /* a fused shortcut: in the kernels' epilogue (8-bit a and b, shifts the int32 lanes take),
     * else as a pass over the output afterwards */
    ctx.res = res;
    if (res != NULL && ops->native_res && ops->fast_epi && otype == MDFI_CONV_S8 && res->b_type == MDFI_CONV_S8 &&
        ((res->shift >= 1 && res->shift <= 31) || (res->shift <= 0 && res->act != MDFI_ACT_LEAKY))) {
        ctx.res_fast = 1;
        ctx.clamp = 1;                    /* a is the stored (saturated) value */
        ctx.addz = 0;                     /* the clamp adds zo (a fused shortcut has none) */
        ctx.res_left = res->shift <= 0;
        ctx.res_lsh = ctx.res_left ? (-res->shift < 15 ? -res->shift : 15) : 0;
        if (!ctx.res_left) ctx.resk = mdfi_rqf_init(res->shift, res->rounding);
        ctx.regs_epi = 0;
    }

    q8_job job;
    memset(&job, 0, sizeof job);
    job.ctx = &ctx;
    mdfi_pool_run(q8_worker, &job, nthreads);
    if (res != NULL && !ctx.res_fast)
        mdfi_conv_residual_pass(res, out, otype, (int64_t)m * ctx.n, ops != &mdfi_q8_ops_ref, nthreads);
}
