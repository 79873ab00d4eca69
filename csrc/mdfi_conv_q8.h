/* mdfi_conv_q8.h -- the 8-bit dot-product convolution ("q8" family): layouts, context and
 * per-path operations shared by mdfi_conv_q8.c (driver), mdfi_conv_q8_ref.c (portable
 * reference ops) and the SIMD twins (mdfi_conv_vnni.c: AVX512-VNNI zmm / ymm, AVX-VNNI;
 * mdfi_conv_amx.c: AMX; mdfi_conv_neon.c: SDOT).  Not part of the public API.
 *
 * When.  Activations of at most 8 bits (uint8 pixels or int8) times int8 weights with
 * int32 accumulation (acc64 == 0); everything else takes the int16-pair family
 * (mdfi_conv_internal.h).  Exactness: the dot-product instructions multiply 8-bit by 8-bit
 * and add four products to an int32 lane with wrap-around (vpdpbusd, not the saturating
 * vpdpbusds; tdpbusd; sdot), so each lane holds the exact sum modulo 2^32.
 *
 * Signedness.  vpdpbusd/tdpbusd take unsigned x signed bytes, sdot signed x signed.  The
 * activations are stored as bytes b = x ^ flip so that the instruction reads value(b) =
 * x + delta:
 *     unsigned x signed (VNNI, AMX): int8 x -> flip 0x80, delta +128;  uint8 x -> 0, 0
 *     signed x signed   (SDOT)     : uint8 x -> flip 0x80, delta -128; int8 x  -> 0, 0
 * so  sum_k w*value = S + delta*sum_k w,  and  S = acc - delta*wsum[m]  (wsum precomputed
 * when the weights are packed; a padded position stores 0 ^ flip, i.e. x = 0).  Modulo 2^32
 * this is exact; the int32 epilogue adds bq[m] = bias[m] - delta*wsum[m] (mod 2^32) when the
 * layer's bound (K*max|w|*max|x|, or max_m sum_k |w[m][k]| * max|x| when smaller; mdfi_conv.c)
 * + max|bias| < 2^31 (sum32) proves every S + bias exact;
 * otherwise S mod 2^32 is widened and the bias added in int64, like the scalar int16 path.
 *
 * Layouts (bytes, row-major):
 *   A4 (packed weights) : [P16][taps][C4][16][4] int8   P16 = ceil(M/16) panels of 16 output
 *                         channels, C4 = ceil(C/4) channel quads, tap = ky*ks + kx;
 *                         element [p][t][q][r][e] = w[16p + r][4q + e][ky][kx] (0 outside).
 *   wsum                : [M] int32, sum over k of w[m][k].
 *   X4 (input)          : [C4][S*S][plane][4] bytes: channel quads interleaved, zero-padded
 *                         (0 ^ flip), split into S*S phase planes (S = stride):
 *                         phase (py, px), position (r, j) holds padded pixel
 *                         (r*S + py, j*S + px).  Phase planes are Hps x Wps
 *                         (Hps = ceil(Hp/S), Wps = ceil(Wp/S)) followed by slack.
 *   Output grid (direct mode): q = oy*Wps + ox, ox < Wps.  The tap (ky, kx) of output q
 *                         reads phase (ky%S, kx%S) at position q + (ky/S)*Wps + kx/S, so a
 *                         tile of consecutive q is a contiguous load per tap and channel
 *                         quad: no im2col at all.  Positions with ox >= OW are computed and
 *                         discarded (W/Wps of the lanes are useful: 13/15 on a 13x13 map,
 *                         416/418 on 416x416; none wasted for 1x1 stride-1 convolutions).
 *   B packed (packed mode): [tile][taps][C4][NR][4], the im2col of NR consecutive output
 *                         pixels (the last tile repeats valid data); used when the grid's
 *                         junk columns would cost more than packing (small maps).
 *   B compact (compact mode, kernels of 2x2 and more): [C4][S][ks][cplane][4], one copy
 *                         of X4 per phase row py and kernel column kx without the junk
 *                         columns: copy (py, kx), position r*OW + j holds position
 *                         (r, j + kx/S) of phase plane (py, kx%S) (r < Hps, j < OW), then
 *                         padding (cplane = Hps*OW + NR max, rounded to 16).  Output
 *                         q = oy*OW + ox reads tap (ky, kx) at copy (ky%S, kx), position
 *                         q + (ky/S)*OW: contiguous per tap, like direct mode, but no lane is
 *                         spent on junk columns and the copies cost S*ks reads of X4 instead
 *                         of the taps of the im2col.
 *   XL (channels-last mode, AMX): [S*S][plane][C4B][16][4] bytes, X4 position-major: phase ph,
 *                         position p, quad 16g + i, byte e at ((ph*plane + p)*C4B + g)*64 +
 *                         4i + e (quads past C4 zero).  Output q (direct grid) reads tap t at
 *                         position q + toff[t]/(64*C4B), toff[t] = xoff[t]/4 * 64*C4B.
 * Every kernel reads B at  base + toff[t] + q4*bcs  for tap t and channel quad q4 (the
 * channels-last kernel its A rows, at  XL + q*64*C4B + toff[t] + g*64).
 */
#ifndef MDFI_CONV_Q8_H
#define MDFI_CONV_Q8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mdfi_conv.h"
#include "mdfi_conv_internal.h"
#include "mdfi_fixedpoint.h"

#define Q8_MAX_KS 15                 /* kernels up to 15x15 (taps <= 225)  */
#define Q8_MAX_TAPS (Q8_MAX_KS * Q8_MAX_KS)
#define Q8_MAX_STRIDE 4
#define Q8_MAX_NR 128                /* widest register tile (positions)  */
#define Q8_PANEL 16                  /* rows per A4 panel                 */
#define Q8_AMX_KC_ONE 12             /* AMX: K steps (64 channels each) run as one chunk, at most
                                        (mdfi_conv_amx.c; choose() in mdfi_conv_q8.c) */
#define Q8_AMX_KC 8                  /* AMX: K steps per chunk otherwise (mdfi_conv_amx.c) */

struct q8_ops;
struct q8_kernel;

/* Per output channel constants of the int32-lane epilogue (mdfi_fixedpoint.h, folded form):
 *   bq = bias - delta*wsum + half (mod 2^32)     s = shift, or 0: the row takes the exact
 *   c, kd: mdfi_rqf_init(s, rounding)               scalar store (mdfi_q8_store_one)
 * A row is fast when sum32 holds, 1 <= s <= 31 and the layer's bound + |bias| + half fits
 * int32, so that t = acc + bq is the exact value S + bias + half.  The register tiles start
 * their accumulators at bq (slow rows: 0), so they end holding t. */
typedef struct {
    int32_t bq, s, c, kd;
} q8_rowc;

typedef struct q8_ctx {
    /* input */
    const void *x;
    int xtype;
    int32_t c, h, w;
    uint8_t flip, padv;               /* stored byte = x ^ flip; padding = pad_value ^ flip */
    int32_t delta;                    /* value read by the instruction = x + delta       */
    /* weights */
    const int8_t *a;                  /* A4 [P16][taps][C4][16][4]                       */
    const int8_t *at;                 /* AT [P16][taps][C4B][16][16][4] (AMX) or NULL     */
    const int32_t *wsum;              /* [M]                                             */
    int32_t m, ks, stride, pad, taps, c4, c4b, np16;
    int32_t split;                    /* 16-bit input as bytes (mdfi_q8_split_ok): K steps of the
                                         hi half, = the weights' C4B; 0: 8-bit input      */
    /* epilogue */
    const int64_t *bias;              /* [M]                                             */
    const int32_t *shift;             /* [M]                                             */
    int32_t *bq;                      /* [M] bias - delta*wsum mod 2^32 (sum32 layers)    */
    void *out;                        /* [M][N] int8 or int16                            */
    int otype;
    int32_t rounding, bits, act, sum32;
    int32_t zo, zlo, zhi;             /* output zero point; qmin - zo, qmax - zo          */
    /* geometry */
    int32_t oh, ow, hp, wp, hps, wps;
    int64_t plane;                    /* positions per phase plane, slack included       */
    int64_t n;                        /* OH*OW                                           */
    int32_t direct;                   /* 1: B read from X4 on the output grid            */
    int32_t compact;                  /* 1 (direct 0): B read from the compact copies     */
    int32_t cl;                       /* 1 (direct 1): channels-last mode, XL in bpk (AMX) */
    int32_t cpb;                      /* XL bytes per position: 64 * C4B                  */
    int64_t cplane;                   /* compact: positions per copy (0: no compact mode) */
    int64_t ngrid;                    /* direct: OH*Wps; packed: N                       */
    int32_t mr, nr;                   /* register tile of the chosen kernel              */
    int32_t ntiles, nmt;              /* tiles of NR positions; row tiles of MR rows     */
    int32_t nb;                       /* tiles per work item (N split), at most          */
    int64_t nitems;                   /* work items of the N split                       */
    int32_t msplit;                   /* M split (use_msplit)                            */
    size_t bcs;                       /* bytes between channel quads in B                */
    int64_t toff[Q8_MAX_TAPS];        /* byte offset of tap t in B                       */
    size_t xcs;                       /* the same two for X4 itself (direct mode: equal) */
    int64_t xoff[Q8_MAX_TAPS];
    /* the int32-lane epilogue (filled by the driver when ops->fast_epi) */
    const q8_rowc *rowc;              /* [M]                                             */
    const uint64_t *vinfo;            /* [ntiles][NR / lanes]: output index | mask << 48  */
    int32_t clamp;                    /* 1: clamp to [qmin, qmax] before narrowing        */
    int32_t addz;                     /* 1 (no clamp): + zo, then the saturating narrowing */
    int32_t regs_epi;                 /* 1: every row fast, no fused shortcut: the tiles'
                                         epilogue works on the accumulator registers      */
    int64_t bound;                    /* the layer's bound of |S| (mdfi_conv.c: ctx.bound) */
    /* a fused shortcut (mdfi_conv2d_res), or NULL */
    const mdfi_conv_residual *res;
    int32_t res_fast;                 /* 1: the kernels' epilogue applies it              */
    int32_t res_left, res_lsh;        /* shift <= 0 (not leaky): clamp to +-2^15, << lsh  */
    mdfi_rqf resk;                    /* shift >= 1: folded constants                     */
    /* scratch */
    uint8_t *x4;                      /* X4                                              */
    uint8_t *bpk;                     /* packed B                                        */
    size_t tile_bytes;                /* packed B bytes per tile                         */
    const struct q8_kernel *kern;
    const struct q8_ops *ops;
} q8_ctx;

/* Rows m0 .. m0+MR-1 (rows >= M are computed on other rows' weights and dropped) of tile
 * t: the full K, the epilogue, the store. */
typedef void (*q8_tile_fn)(const q8_ctx *ctx, int32_t m0, int32_t t);

typedef struct q8_kernel {
    int32_t mr;                       /* rows (a multiple of 4)                          */
    int32_t nrv;                      /* vectors per row                                 */
    int32_t lanes;                    /* positions per vector                            */
    q8_tile_fn fn;
} q8_kernel;

typedef struct q8_ops {
    const char *name;
    int signed_dot;                   /* 1: signed x signed (SDOT); 0: unsigned x signed */
    void (*x4)(const q8_ctx *ctx, int64_t r0, int64_t r1);   /* X4 rows (cq, phase, r)  */
    void (*pack)(const q8_ctx *ctx, int32_t t, uint8_t *dst); /* packed B of tile t      */
    const q8_kernel *kerns;
    int32_t nkerns;
    /* optional: layers these ops cannot run go to `fallback` (e.g. AMX needs C % 64 == 0) */
    int (*usable)(int32_t c, int32_t ks, int32_t stride);
    const struct q8_ops *fallback;
    int32_t fast_epi;                 /* kernels use ctx->rowc / ctx->vinfo              */
    int32_t native_res;               /* kernels apply ctx->res when ctx->res_fast        */
    /* optional, stride 2: X4 rows (cq * 2 + py) * Hps + pr, both column phases of each */
    void (*x4_s2)(const q8_ctx *ctx, int64_t r0, int64_t r1);
    /* 1: the kernels read whole 64-byte B rows best on cache lines (AMX tile loads: a row
     * across two lines costs two): packed mode, unless direct mode's rows are aligned
     * (1x1 stride 1, no padding: tiles start at multiples of NR, planes at 16 positions) */
    int32_t b_aligned;
    /* optional: run by every thread at the end of a layer (AMX: release the tile state the
     * kernels configured once per thread and layer) */
    void (*finish)(void);
    /* optional (AMX): the channels-last mode (XL layout above): its kernel (not among
     * `kerns`), and the pass that writes block `item` of XL from X4 (16 positions of one
     * phase plane) */
    const struct q8_kernel *cl;
    void (*xl)(const q8_ctx *ctx, int64_t item);
    /* optional (AMX): X4 rows of a 16-bit input split into bytes (mdfi_q8_split_ok): quads
     * q < C/4 the high bytes with the 0x80 flip, quads C/4 + q the low bytes */
    void (*x4_split)(const q8_ctx *ctx, int64_t r0, int64_t r1);
} q8_ops;

/* The portable reference ops (mdfi_conv_q8.c) and the SIMD twins. */
extern const q8_ops mdfi_q8_ops_ref;
#if MDFI_CONV_X86
extern const q8_ops mdfi_q8_ops_vnni512;       /* AVX512-VNNI, zmm                      */
extern const q8_ops mdfi_q8_ops_vnni256;       /* AVX512-VNNI + VL, ymm (EVEX)           */
extern const q8_ops mdfi_q8_ops_avxvnni;       /* AVX-VNNI, ymm (VEX): same source       */
extern const q8_ops mdfi_q8_ops_amx;           /* AMX tdpbsud (+ AVX512-VNNI)            */
extern const q8_ops mdfi_q8_ops_amxsim;        /* the AMX kernel on a C model of the tiles */
int mdfi_q8_have_avxvnni_build(void);          /* compiler could build the VEX variant   */
void mdfi_q8_x4_avx2(const q8_ctx *ctx, int64_t r0, int64_t r1);
void mdfi_q8_x4_avx512(const q8_ctx *ctx, int64_t r0, int64_t r1);   /* AVX-512BW */
void mdfi_q8_x4_avx512_s2(const q8_ctx *ctx, int64_t r0, int64_t r1);
void mdfi_q8_pack_avx512(const q8_ctx *ctx, int32_t t, uint8_t *dst);
/* the zmm epilogue of `rows` rows x nrv vectors of 16 int32 sums (tmp [rows][nrv*16]); vi: the
 * tile's ctx->vinfo entries */
void mdfi_q8_epi_vnni512(const q8_ctx *ctx, int32_t m0, int32_t rows, int32_t nrv, const int32_t *tmp,
                         const uint64_t *vi);
int mdfi_q8_have_amx_build(void);
#endif
#if MDFI_CONV_ARM
extern const q8_ops mdfi_q8_ops_neondot;       /* aarch64 SDOT                          */
#endif

/* The driver (mdfi_conv_q8.c).  mdfi_q8_usable: can the family run this layer (element
 * types, acc64, kernel size, stride, and a geometry that fits)?  mdfi_q8_scratch_size: bytes
 * of scratch for any kernel choice (-1 if unusable).  mdfi_q8_conv: the convolution (all
 * arguments validated by mdfi_conv2d; scratch 64-byte aligned). */
int mdfi_q8_usable(int xtype, int wtype, int32_t acc64, int32_t c, int32_t h, int32_t w, int32_t m,
                   int32_t ks, int32_t stride, int32_t pad);
/* 16-bit inputs on these ops as 8-bit products of a byte split (x = 256 hi + lo, lo = x & 255,
 * hi = x >> 8): sum w x = 256 sum w hi + sum w lo, the hi half of K first, its C tiles times
 * 256 before the lo half; modulo 2^32, exact when the caller's int32 bound holds (sum32).
 * 1x1 stride-1 unpadded layers of C % 64 == 0 on ops with x4_split (AMX), whose K chunks can
 * end at the half (C / 64 <= Q8_AMX_KC or a multiple of it).  mdfi_q8_conv takes them with
 * xtype MDFI_CONV_S16 and scratch for 2C channels (mdfi_q8_scratch_size(2C, ...)). */
int mdfi_q8_split_ok(const q8_ops *ops, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                     int32_t pad);
/* Its layer-shape part (no ops): the driver's scratch size reserves 2C channels for these. */
int mdfi_q8_split_shape(int32_t c, int32_t ks, int32_t stride, int32_t pad);
int64_t mdfi_q8_scratch_size(int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                             int32_t pad, int32_t nthreads);
void mdfi_q8_conv(const q8_ops *ops, const void *x, int xtype, int32_t c, int32_t h, int32_t w,
                  const int8_t *a4, const int8_t *at, const int32_t *wsum, const int64_t *bias, const int32_t *shift, int32_t m,
                  void *out, int otype, int32_t ks, int32_t stride, int32_t pad, int32_t rounding,
                  int32_t bits, int32_t act, int32_t sum32, int64_t bound, const mdfi_conv_residual *res,
                  int32_t nthreads, void *scratch, int32_t pad_value, int32_t zero_out);

/* The tile and B mode mdfi_q8_conv would run for this layer: kernel index * 4 + mode (0 packed,
 * 1 direct, 2 compact), -1 if unusable (testing and benchmarks: mdfi_conv_q8_choice). */
int32_t mdfi_q8_choice(const q8_ops *ops, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                       int32_t pad, int32_t nthreads);

/* Generic helpers shared by the kernels. */
void mdfi_q8_x4_ref(const q8_ctx *ctx, int64_t r0, int64_t r1);
void mdfi_q8_pack_ref(const q8_ctx *ctx, int32_t t, uint8_t *dst);
/* Slow exact epilogue of one output element: acc (int32 lane) -> out[m][idx] (and the fused
 * shortcut's output when ctx->res_fast). */
void mdfi_q8_store_one(const q8_ctx *ctx, int32_t m, int64_t idx, int32_t acc);
/* uint32 -> int32 modulo 2^32 (no implementation-defined conversion). */
/* X4 plane pl (channel quad pl / s^2, phase (py, px) = its remainder): its first byte, and the
 * four input channels of the quad (NULL past C: padding) */
static inline uint8_t *mdfi_q8_x4_plane(const q8_ctx *ctx, int64_t pl, const uint8_t *src[4], int32_t *py,
                                        int32_t *px)
{
    const int64_t s = ctx->stride, cq = pl / (s * s), ph = pl % (s * s);
    *py = (int32_t)(ph / s);
    *px = (int32_t)(ph % s);
    for (int e = 0; e < 4; ++e) {
        const int64_t ch = 4 * cq + e;
        src[e] = ch < ctx->c ? (const uint8_t *)ctx->x + (size_t)ch * (size_t)ctx->h * (size_t)ctx->w : NULL;
    }
    return ctx->x4 + (size_t)pl * (size_t)ctx->plane * 4;
}

/* X4 positions [j0, n) of a row, one byte at a time: rs[e][j*s] ^ flip, padding where the
 * quad has no channel e.  d: the row's first real position (output column jlo). */
static inline void mdfi_q8_x4_bytes(uint8_t *d, const uint8_t *const rs[4], int64_t j0, int64_t n, int32_t s,
                                    uint8_t flip, uint8_t padv)
{
    for (int64_t j = j0; j < n; ++j)
        for (int e = 0; e < 4; ++e) d[4 * j + e] = rs[e] ? (uint8_t)(rs[e][j * s] ^ flip) : padv;
}

/* The slack after the last row of an X4 plane (positions hps*wps .. plane-1): padding. */
static inline void mdfi_q8_x4_slack(const q8_ctx *ctx, uint8_t *plane)
{
    const size_t used = (size_t)ctx->hps * (size_t)ctx->wps;
    memset(plane + used * 4, ctx->padv, ((size_t)ctx->plane - used) * 4);
}

/* X4 row q of the phase plane (py, px): its input row y (outside [0, H): all padding) and the
 * output columns [jlo, jhi) that read input columns (jlo*s + px - pad ...), the rest padding */
static inline int64_t mdfi_q8_x4_row(const q8_ctx *ctx, int64_t q, int32_t py, int32_t px, int64_t *jlo,
                                     int64_t *jhi)
{
    const int64_t s = ctx->stride, y = q * s + py - ctx->pad;
    *jlo = *jhi = 0;
    if (y >= 0 && y < ctx->h) {
        const int64_t a = (int64_t)ctx->pad - px, b = (int64_t)ctx->w + ctx->pad - px;
        *jlo = a <= 0 ? 0 : (a + s - 1) / s;
        *jhi = b <= 0 ? 0 : (b + s - 1) / s;
        if (*jhi > ctx->wps) *jhi = ctx->wps;
        if (*jlo > *jhi) *jlo = *jhi;
    }
    return y;
}

static inline int32_t mdfi_q8_wrap(uint32_t u)
{
    return u <= (uint32_t)INT32_MAX ? (int32_t)u : (int32_t)(u - 2147483648u) - INT32_MAX - 1;
}

/* Does row m take the int32-lane epilogue (sum32 and a shift of 1..31)? */
static inline int mdfi_q8_row_fast(const q8_ctx *ctx, int32_t m)
{
    return ctx->sum32 && ctx->shift[m] >= 1 && ctx->shift[m] <= 31;
}

/* B base of tile t (add toff[tap] + q4*bcs). */
static inline const uint8_t *mdfi_q8_bbase(const q8_ctx *ctx, int32_t t)
{
    return ctx->direct ? ctx->x4 + (size_t)t * (size_t)ctx->nr * 4
         : ctx->compact ? ctx->bpk + (size_t)t * (size_t)ctx->nr * 4
                        : ctx->bpk + (size_t)t * ctx->tile_bytes;
}

/* A4 pointer of the 4-row group containing row r (rows past the packed panels read row
 * group 0: their results are dropped). */
static inline const int8_t *mdfi_q8_agroup(const q8_ctx *ctx, int32_t r)
{
    if (r >= ctx->np16 * Q8_PANEL) r = 0;
    return ctx->a + ((size_t)(r / Q8_PANEL) * (size_t)ctx->taps * (size_t)ctx->c4 * Q8_PANEL + (size_t)(r % Q8_PANEL)) * 4;
}

/* Output positions of `lanes` (<= 16) consecutive grid positions starting at q: returns the
 * mask of lanes that are real outputs and sets *start to the output index of the first of
 * them (valid lanes map to consecutive output indices). */
static inline uint32_t mdfi_q8_lanes(const q8_ctx *ctx, int64_t q, int lanes, int64_t *start)
{
    if (!ctx->direct) {
        *start = q;
        if (q >= ctx->n) return 0;
        const int64_t v = ctx->n - q;
        return v >= lanes ? (1u << lanes) - 1u : (1u << v) - 1u;
    }
    const int32_t wps = ctx->wps, ow = ctx->ow;
    int64_t oy = q / wps;
    int32_t ox = (int32_t)(q - oy * wps);
    if (oy >= ctx->oh) {
        *start = ctx->n;
        return 0;
    }
    *start = oy * ow + (ox < ow ? ox : ow);
    uint32_t m = 0;
    int l = 0;
    while (l < lanes && oy < ctx->oh) {
        const int32_t valid = ow - ox;            /* lanes of this row that are outputs */
        if (valid > 0) {
            int e = l + valid;
            if (e > lanes) e = lanes;
            m |= ((1u << e) - 1u) & ~((1u << l) - 1u);
        }
        l += wps - ox;
        ox = 0;
        ++oy;
    }
    return m;
}

#endif /* MDFI_CONV_Q8_H */
