/* mdfi_conv_amx.c -- the 8-bit convolution on AMX tiles (Intel Sapphire Rapids and later).
 *
 * Register tile: 32 output channels x 32 output positions = four int32 C tiles (tmm0-3),
 * two weight tiles (tmm4-5: 16 channels x 16 channel quads, from the AT layout of the packed
 * weights, one 1 KB block each) and two activation tiles (tmm6-7: 16 channel quads x 16
 * positions, loaded from the packed B -- or straight from X4 for 1x1 stride-1 layers -- with
 * the quad stride as the row stride); a call runs 1 or 4 such register tiles (below).
 * TDPBSUD multiplies the signed weight bytes by the unsigned activation bytes and adds four
 * products per int32 lane with wrap-around, like vpdpbusd (so the X4 bytes, delta
 * and the exactness argument are those of the VNNI kernels, mdfi_conv_q8.h).  The C tiles are
 * stored to a stack buffer (rows = channels) and go through the zmm epilogue (with a fused
 * shortcut, if any).
 *
 * Used for layers whose channel count is a multiple of 64 (whole K tiles) or 29-63 (one
 * partial K tile per tap, amx_usable); other layers take the AVX512-VNNI kernels
 * (q8_ops.fallback).  The tile state is configured by a thread's first kernel call of a
 * layer and released at the end of the layer (amx_finish: no AMX state outlives a layer).
 * The kernel runs
 * only after mdfi_cpu_features() reported AMX-TILE + AMX-INT8 with the OS tile state and the
 * Linux permission (arch_prctl), and after the path's start-up self-check
 * (mdfi_conv_paths.c).  The kernel's source is shared with "amx-sim" (the same text on a C
 * model of the tile instructions, tested like every path on any AVX512-VNNI machine); on a
 * machine with AMX (an Intel Xeon, stop 35) the real instructions run the same tests.
 */
#include "mdfi_conv_q8.h"

#if MDFI_CONV_X86 && ((!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11) || \
                      (defined(__clang__) && __clang_major__ >= 12))
#define MDFI_HAVE_AMX 1
#else
#define MDFI_HAVE_AMX 0
#endif

#if MDFI_HAVE_AMX

#include <immintrin.h>
#include <string.h>

#define AMX __attribute__((target("amx-tile,amx-int8,avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tilecfg;

/* AT panel of row r (rows past the packed panels read panel 0: dropped). */
static inline const int8_t *at_panel(const q8_ctx *ctx, int32_t r)
{
    if (r >= ctx->np16 * Q8_PANEL) r = 0;
    /* (a split 16-bit layer: the weights' own C4B, both halves of K read the same blocks) */
    return ctx->at + (size_t)(r / Q8_PANEL) * (size_t)ctx->taps * (size_t)(ctx->split ? ctx->split : ctx->c4b) * 1024;
}

/* Steps of the K loop: step s = tap * C4B + blk reads the A blocks at s * 1 KB of the rows'
 * panels and the B rows at toff[tap] + blk * 16 * bcs.  A call covers J register tiles of
 * 32 rows (MR = 32 * J) on one tile of 32 positions: the K loop runs in chunks of AMX_KC
 * steps, and every register tile of the call runs a chunk in turn, so the chunk's B rows
 * (AMX_KC * 2 KB) are read from L2 once and from L1 by the other register tiles, whose C
 * tiles wait in `cb` (stored after a chunk, loaded before the next).  A layer whose whole K
 * fits one chunk stores each C tile once.  Every sum is the one of a single register tile
 * (same K order; modulo 2^32 anyway).  The driver (choose, mdfi_conv_q8.c) takes direct mode
 * with J = 1 for kernels of 2x2 and more at stride 1 and on wide strided maps (stop 40: faster
 * than packed B although its tile rows cross cache lines), packed B (rows on cache lines) with
 * J = 4 on the narrower strided maps, and for 1x1 stride-1 layers direct mode (aligned rows)
 * with J = 1 when K is one chunk, else J = 4. */
#define AMX_KC Q8_AMX_KC

/* The kernel, written once over tile operations (STATE, ZERO, LOAD, DP, STORE, RELEASE) and
 * compiled twice: on the AMX instructions, and on a C model of them (Intel's pseudo-code of
 * TILELOADD / TDPBSUD / TILESTORED), the test path "amx-sim" that checks this file's
 * addressing and layouts on any AVX512-VNNI machine. */
#define AMX_KERNEL(NAME, J, ATTR, STATE, CONFIG, ZERO, LOAD, DP, STORE, RELEASE)                  \
ATTR static void NAME(const q8_ctx *ctx, int32_t m0, int32_t t)                                   \
{                                                                                                 \
    STATE;                                                                                        \
    const int32_t kq = ctx->c4 < 16 ? ctx->c4 : 16;   /* channel quads per K step (amx_usable) */ \
    CONFIG;                                                                                       \
    int32_t cb[J][32][32] __attribute__((aligned(64)));   /* C tiles of the register tiles */ \
    const uint8_t *b = mdfi_q8_bbase(ctx, t);                                                     \
    const size_t bcs = ctx->bcs;                                                                  \
    const int32_t c4b = ctx->c4b, steps = ctx->taps * c4b;                                        \
    /* a split 16-bit layer (mdfi_q8_split_ok): chunks end where the lo half of K begins */      \
    const int32_t kc = ctx->split ? (ctx->split < AMX_KC ? ctx->split : AMX_KC)                    \
                                  : steps <= Q8_AMX_KC_ONE ? steps : AMX_KC;                       \
    int32_t nj = (ctx->m - m0 + 31) / 32;                      /* register tiles with rows < M */ \
    if (nj > J) nj = J;                                                                           \
    for (int32_t s0 = 0; s0 < steps; s0 += kc) {                                                  \
        const int32_t s1 = s0 + kc < steps ? s0 + kc : steps;                                     \
        for (int32_t j = 0; j < nj; ++j) {                                                        \
            const int8_t *a0 = at_panel(ctx, m0 + 32 * j), *a1 = at_panel(ctx, m0 + 32 * j + 16);   \
            if (s0 == 0) {                                                                        \
                ZERO(0); ZERO(1); ZERO(2); ZERO(3);                                               \
            } else {                                                                              \
                if (s0 == ctx->split) {       /* the hi half done: its sums times 256, mod 2^32 */ \
                    uint32_t *cu = (uint32_t *)(void *)&cb[j][0][0];                              \
                    for (int32_t e = 0; e < 32 * 32; ++e) cu[e] <<= 8;                            \
                }                                                                                 \
                LOAD(0, &cb[j][0][0], 128);                                                       \
                LOAD(1, &cb[j][0][16], 128);                                                      \
                LOAD(2, &cb[j][16][0], 128);                                                      \
                LOAD(3, &cb[j][16][16], 128);                                                     \
            }                                                                                     \
            int32_t tap = s0 / c4b, blk = s0 % c4b;                                               \
            for (int32_t st = s0; st < s1; ++st) {                                                \
                const size_t ao = (size_t)(ctx->split && st >= ctx->split ? st - ctx->split : st) * 1024; \
                const uint8_t *bb = b + ctx->toff[tap] + (size_t)blk * 16 * bcs;                   \
                LOAD(4, a0 + ao, 64);                                                             \
                LOAD(5, a1 + ao, 64);                                                             \
                LOAD(6, bb, bcs);                                                                 \
                LOAD(7, bb + 64, bcs);                                                            \
                DP(0, 4, 6);                                                                      \
                DP(1, 4, 7);                                                                      \
                DP(2, 5, 6);                                                                      \
                DP(3, 5, 7);                                                                      \
                if (++blk == c4b) {                                                               \
                    blk = 0;                                                                      \
                    ++tap;                                                                        \
                }                                                                                 \
            }                                                                                     \
            STORE(0, &cb[j][0][0], 128);                                                          \
            STORE(1, &cb[j][0][16], 128);                                                         \
            STORE(2, &cb[j][16][0], 128);                                                         \
            STORE(3, &cb[j][16][16], 128);                                                        \
        }                                                                                         \
    }                                                                                             \
    RELEASE;                                                                                      \
    for (int32_t j = 0; j < nj; ++j)                                                              \
        mdfi_q8_epi_vnni512(ctx, m0 + 32 * j, 32, 2, &cb[j][0][0], ctx->vinfo + (size_t)t * 2);  \
}

/* The tile shapes of a layer with kq channel quads per K step (16, or C4 < 16 for layers of
 * 29-63 channels): C tiles 0-3 16 x 64 bytes (16 x 16 int32), A tiles 4-5 16 rows x 4*kq bytes
 * (16 output channels x kq quads), B tiles 6-7 kq rows x 64 bytes (kq quads x 16 positions).
 * TDPBSUD then sums kq quads per lane; the A and B rows past them are neither read nor used. */
static inline __attribute__((always_inline)) void amx_shapes(int32_t kq, uint16_t colsb[8], uint8_t rows[8])
{
    for (int i = 0; i < 8; ++i) {
        colsb[i] = i == 4 || i == 5 ? (uint16_t)(4 * kq) : 64;
        rows[i] = i == 6 || i == 7 ? (uint8_t)kq : 16;
    }
}

/* the AMX instructions */
static inline __attribute__((always_inline)) void amx_config(tilecfg *cfg, int32_t kq)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->palette = 1;
    amx_shapes(kq, cfg->colsb, cfg->rows);
}
/* The tile configuration is loaded by a thread's first call of a layer (or when the layer's
 * shapes differ from the loaded ones) and released by amx_finish at the end of the layer
 * (q8_ops.finish, run by every thread of the layer): no tile state outlives a layer.  Loading
 * and releasing it around every call cost 24 % of a 3x3 layer's tile loop with one register
 * tile per call (stop 40, a micro-benchmark; docs/performance.md "Direct mode on AMX"). */
static __thread int32_t amx_loaded_kq;        /* kq of the loaded configuration, 0: none */
#define HW_STATE tilecfg cfg_
#define HW_CONFIG                                                                                 \
    do {                                                                                          \
        if (amx_loaded_kq != kq) {                                                                \
            amx_config(&cfg_, kq);                                                                \
            _tile_loadconfig(&cfg_);                                                              \
            amx_loaded_kq = kq;                                                                   \
        }                                                                                         \
    } while (0)
AMX_KERNEL(amx_tile_128x32, 4, AMX, HW_STATE, HW_CONFIG, _tile_zero, _tile_loadd, _tile_dpbsud, _tile_stored,
           ((void)0))
AMX_KERNEL(amx_tile_32x32, 1, AMX, HW_STATE, HW_CONFIG, _tile_zero, _tile_loadd, _tile_dpbsud, _tile_stored,
           ((void)0))

static void cl_flush(void);

AMX static void amx_finish(void)
{
    cl_flush();
    if (amx_loaded_kq != 0) {
        _tile_release();
        amx_loaded_kq = 0;
    }
}

/* the C model (Intel SDM pseudo-code): a tile of rows x colsb bytes as configured, the
 * rest of its 16 x 64 bytes zero */
typedef struct {
    uint8_t d[16][64];
    uint16_t colsb;
    uint8_t rows;
} simtile;

static void sim_load(simtile *t, const void *base, size_t stride)
{
    memset(t->d, 0, sizeof t->d);
    for (int r = 0; r < t->rows; ++r) memcpy(t->d[r], (const uint8_t *)base + (size_t)r * stride, t->colsb);
}

static void sim_store(const simtile *t, void *base, size_t stride)
{
    for (int r = 0; r < t->rows; ++r) memcpy((uint8_t *)base + (size_t)r * stride, t->d[r], t->colsb);
}

/* TDPBSUD (a_signed) / TDPBUSD: dst.dword[m][n] += sum_{k < a.colsb/4} sum_e s8(a[m][4k+e]) *
 * u8(b[k][4n+e])  (TDPBUSD: u8(a) * s8(b)), modulo 2^32, m < dst.rows, n < dst.colsb/4 */
static void sim_dp(simtile *dst, const simtile *a, const simtile *b, int a_signed)
{
    for (int m = 0; m < dst->rows; ++m)
        for (int n = 0; n < dst->colsb / 4; ++n) {
            uint32_t acc;
            memcpy(&acc, &dst->d[m][4 * n], 4);
            for (int k = 0; k < a->colsb / 4; ++k)
                for (int e = 0; e < 4; ++e) {
                    const uint8_t x = a->d[m][4 * k + e], y = b->d[k][4 * n + e];
                    acc += a_signed ? (uint32_t)((int32_t)(int8_t)x * (int32_t)y)
                                    : (uint32_t)((int32_t)x * (int32_t)(int8_t)y);
                }
            memcpy(&dst->d[m][4 * n], &acc, 4);
        }
}

static void sim_config(simtile *tiles, int32_t kq)
{
    uint16_t colsb[8];
    uint8_t rows[8];
    amx_shapes(kq, colsb, rows);
    for (int i = 0; i < 8; ++i) {
        tiles[i].colsb = colsb[i];
        tiles[i].rows = rows[i];
    }
}
#define SIM_STATE simtile tiles_[8]
#define SIM_CONFIG sim_config(tiles_, kq)
#define SIM_ZERO(i) memset(tiles_[i].d, 0, sizeof tiles_[i].d)
#define SIM_LOAD(i, base, stride) sim_load(&tiles_[i], (base), (stride))
#define SIM_DP(d, a, b) sim_dp(&tiles_[d], &tiles_[a], &tiles_[b], 1)
#define SIM_STORE(i, base, stride) sim_store(&tiles_[i], (base), (stride))
AMX_KERNEL(amxsim_tile_128x32, 4, , SIM_STATE, SIM_CONFIG, SIM_ZERO, SIM_LOAD, SIM_DP, SIM_STORE, ((void)0))
AMX_KERNEL(amxsim_tile_32x32, 1, , SIM_STATE, SIM_CONFIG, SIM_ZERO, SIM_LOAD, SIM_DP, SIM_STORE, ((void)0))

/* ---------------------------------------------------------------------------------------
 * Channels-last mode (MODE_CL; XL layout in mdfi_conv_q8.h), stop 41.  The activations are the
 * A operand: an A tile row is one grid position's 64 channel bytes of a K step, read from XL at
 * the tap's offset (whole positions: every row on a cache line, unlike direct mode's B rows);
 * the B operand is the packed weights' own A4 block of the step (16 channel quads x 16 output
 * channels x 4 bytes, 1 KB), so nothing else is packed.  TDPBUSD multiplies the unsigned
 * activation bytes by the signed weights (the X4 bytes and delta of mdfi_conv_q8.h).  The sums
 * come out [position][channel] and are transposed (16 x 16 dword blocks) into the usual
 * epilogue -- software-pipelined: a call's C tiles go to a thread-local buffer, and their
 * transposition and epilogue run in ten units spread over the thread's next call's K loop,
 * while the TMUL unit works through that call's TDPBUSDs; the thread's last call of a layer is
 * finished by cl_flush (q8_ops.finish).  Run after their own tile loop instead, transposition
 * and epilogue took half of the 52x52 layer's time (docs/performance.md "Channels-last on
 * AMX").  Every block's epilogue reads only its own sums, once, on the thread that computed
 * them.
 * ------------------------------------------------------------------------------------- */
#define AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))

/* dst row j = src column j of a 16 x 16 block of dwords (src rows at ss bytes, dst rows at ds
 * bytes; src rows i >= nrows read as zero) */
AVX512 static inline void tr16(const uint8_t *src, size_t ss, uint8_t *dst, size_t ds, int nrows)
{
    __m512i r[16], u[16];
    for (int i = 0; i < 16; ++i)
        r[i] = i < nrows ? _mm512_loadu_si512((const void *)(src + (size_t)i * ss)) : _mm512_setzero_si512();
    for (int i = 0; i < 16; i += 2) {
        u[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        u[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int g = 0; g < 4; ++g) {
        r[4 * g + 0] = _mm512_unpacklo_epi64(u[4 * g], u[4 * g + 2]);
        r[4 * g + 1] = _mm512_unpackhi_epi64(u[4 * g], u[4 * g + 2]);
        r[4 * g + 2] = _mm512_unpacklo_epi64(u[4 * g + 1], u[4 * g + 3]);
        r[4 * g + 3] = _mm512_unpackhi_epi64(u[4 * g + 1], u[4 * g + 3]);
    }
    for (int j = 0; j < 4; ++j) {
        const __m512i va = _mm512_shuffle_i32x4(r[j], r[4 + j], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i vb = _mm512_shuffle_i32x4(r[j], r[4 + j], _MM_SHUFFLE(3, 1, 3, 1));
        const __m512i wa = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(2, 0, 2, 0));
        const __m512i wb = _mm512_shuffle_i32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(3, 1, 3, 1));
        _mm512_storeu_si512((void *)(dst + (size_t)(j + 0) * ds), _mm512_shuffle_i32x4(va, wa, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_si512((void *)(dst + (size_t)(j + 8) * ds), _mm512_shuffle_i32x4(va, wa, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm512_storeu_si512((void *)(dst + (size_t)(j + 4) * ds), _mm512_shuffle_i32x4(vb, wb, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_si512((void *)(dst + (size_t)(j + 12) * ds), _mm512_shuffle_i32x4(vb, wb, _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

/* cb [32 channels][32 positions] = the transpose of ct [32 positions][32 channels] */
AVX512 static void tr32(const int32_t *ct, int32_t *cb)
{
    for (int bi = 0; bi < 2; ++bi)
        for (int bj = 0; bj < 2; ++bj)
            tr16((const uint8_t *)(ct + (size_t)(16 * bi) * 32 + 16 * bj), 128,
                 (uint8_t *)(cb + (size_t)(16 * bj) * 32 + 16 * bi), 128, 16);
}

/* XL block `item`: 16 positions of one phase plane, every 16-quad group of their X4 bytes
 * transposed to position-major (quads past C4 zero: their weights are zero too) */
AVX512 static void amx_xl(const q8_ctx *ctx, int64_t item)
{
    const int64_t per = ctx->plane / 16, ph = item / per, pos0 = item % per * 16;
    const int64_t ss = (int64_t)ctx->stride * ctx->stride;
    for (int32_t g = 0; g < ctx->c4b; ++g) {
        const int32_t q0 = 16 * g, nq = ctx->c4 - q0 < 16 ? ctx->c4 - q0 : 16;
        const uint8_t *src = ctx->x4 + ((size_t)(q0 * ss + ph) * (size_t)ctx->plane + (size_t)pos0) * 4;
        uint8_t *dst = ctx->bpk + ((size_t)ph * (size_t)ctx->plane + (size_t)pos0) * (size_t)ctx->cpb + (size_t)g * 64;
        tr16(src, ctx->xcs, dst, (size_t)ctx->cpb, nq);
    }
}

/* A4 panel of row r (rows past the packed panels read panel 0: dropped) */
static inline const int8_t *a4_panel(const q8_ctx *ctx, int32_t r)
{
    if (r >= ctx->np16 * Q8_PANEL) r = 0;
    return ctx->a + (size_t)(r / Q8_PANEL) * (size_t)ctx->taps * (size_t)ctx->c4 * 64;
}

#define CLSUB 2             /* blocks of 32 positions per call (the kernel's NR = 32 * CLSUB) */
/* the previous call's C tiles and the units of their epilogue still to run (CLSUB x (one
 * transposition + 4 x 8 rows)), drained during the next call's K loop */
typedef struct {
    const q8_ctx *ctx;
    int32_t m0, t, buf, next;
} cl_pending;
static __thread cl_pending cl_pend;
static __thread int32_t cl_ct[2][CLSUB][32][32] __attribute__((aligned(64)));
static __thread int32_t cl_cb[32][32] __attribute__((aligned(64)));
#define CL_UNITS (CLSUB * 5)

AVX512 static void cl_unit(void)
{
    cl_pending *p = &cl_pend;
    if (p->ctx == NULL || p->next >= CL_UNITS) return;
    const int sub = p->next / 5, u = p->next % 5;
    if (u == 0) {
        tr32(&cl_ct[p->buf][sub][0][0], &cl_cb[0][0]);
    } else {
        const int32_t r0 = (u - 1) * 8;
        if (p->m0 + r0 < p->ctx->m)
            mdfi_q8_epi_vnni512(p->ctx, p->m0 + r0, 8, 2, &cl_cb[r0][0], p->ctx->vinfo + ((size_t)p->t * CLSUB + sub) * 2);
    }
    ++p->next;
}

static void cl_flush(void)
{
    while (cl_pend.ctx != NULL && cl_pend.next < CL_UNITS) cl_unit();
    cl_pend.ctx = NULL;
}

#define AMX_CL_KERNEL(NAME, ATTR, STATE, CONFIG, ZERO, LOAD, DP, STORE, RELEASE)                 \
ATTR static void NAME(const q8_ctx *ctx, int32_t m0, int32_t t)                                   \
{                                                                                                 \
    STATE;                                                                                        \
    const int32_t kq = ctx->c4 < 16 ? ctx->c4 : 16;                                               \
    CONFIG;                                                                                       \
    const int32_t cur = cl_pend.ctx != NULL ? cl_pend.buf ^ 1 : 0;                                \
    const int32_t every0 = CLSUB * ctx->taps * ctx->c4b / (CL_UNITS + 1);                          \
    const int32_t every = every0 > 0 ? every0 : 1;                                                \
    int32_t stepc = 0;                                                                            \
    const size_t cpb = (size_t)ctx->cpb, tapb = (size_t)ctx->c4 * 64;                             \
    const int8_t *w0 = a4_panel(ctx, m0), *w1 = a4_panel(ctx, m0 + 16);                           \
    for (int sub = 0; sub < CLSUB; ++sub) {                                                       \
        const uint8_t *xl = ctx->bpk + ((size_t)t * CLSUB + sub) * 32 * cpb;                      \
        ZERO(0); ZERO(1); ZERO(2); ZERO(3);                                                       \
        for (int32_t tap = 0; tap < ctx->taps; ++tap) {                                           \
            const uint8_t *a = xl + ctx->toff[tap];                                               \
            const int8_t *b0 = w0 + (size_t)tap * tapb, *b1 = w1 + (size_t)tap * tapb;            \
            for (int32_t blk = 0; blk < ctx->c4b; ++blk) {                                        \
                LOAD(4, a + (size_t)blk * 64, cpb);                                               \
                LOAD(5, a + 16 * cpb + (size_t)blk * 64, cpb);                                    \
                LOAD(6, b0 + (size_t)blk * 1024, 64);                                             \
                LOAD(7, b1 + (size_t)blk * 1024, 64);                                             \
                DP(0, 4, 6);                                                                      \
                DP(1, 4, 7);                                                                      \
                DP(2, 5, 6);                                                                      \
                DP(3, 5, 7);                                                                      \
                if (++stepc % every == 0) cl_unit();                                              \
            }                                                                                     \
        }                                                                                         \
        STORE(0, &cl_ct[cur][sub][0][0], 128);                                                    \
        STORE(1, &cl_ct[cur][sub][0][16], 128);                                                   \
        STORE(2, &cl_ct[cur][sub][16][0], 128);                                                   \
        STORE(3, &cl_ct[cur][sub][16][16], 128);                                                  \
    }                                                                                             \
    RELEASE;                                                                                      \
    while (cl_pend.ctx != NULL && cl_pend.next < CL_UNITS) cl_unit();                             \
    cl_pend.ctx = ctx;                                                                            \
    cl_pend.m0 = m0;                                                                              \
    cl_pend.t = t;                                                                                \
    cl_pend.buf = cur;                                                                            \
    cl_pend.next = 0;                                                                             \
}

AMX_CL_KERNEL(amx_cl_32x32, AMX, HW_STATE, HW_CONFIG, _tile_zero, _tile_loadd, _tile_dpbusd, _tile_stored,
              ((void)0))

#define SIM_DPU(d, a, b) sim_dp(&tiles_[d], &tiles_[a], &tiles_[b], 0)
AMX_CL_KERNEL(amxsim_cl_32x32, , SIM_STATE, SIM_CONFIG, SIM_ZERO, SIM_LOAD, SIM_DPU, SIM_STORE, ((void)0))

/* whole K tiles (channels a multiple of 64), or one partial K tile per tap: 8-15 channel
 * quads (29-63 channels; the AT blocks are zero past C, the A tiles read 4*C4 bytes of each
 * row, the B tiles C4 rows).  Fewer quads would waste more than half of each TDPBSUD. */
static int amx_usable(int32_t c, int32_t ks, int32_t stride)
{
    (void)ks;
    (void)stride;
    const int32_t c4 = (c + 3) / 4;
    return c % 64 == 0 || (c4 >= 8 && c4 < 16);
}

static const q8_kernel kerns_amx[] = {{128, 2, 16, amx_tile_128x32}, {32, 2, 16, amx_tile_32x32},
                                      {32, 2 * CLSUB, 16, amx_cl_32x32}};
/* X4 rows r0..r1-1 of a split 16-bit layer (mdfi_q8_split_ok: 1x1, stride 1, no padding, so a
 * quad's plane is the image, row r = quad * H + y): quad q < C/4 holds the high bytes of
 * channels 4q..4q+3 with the 0x80 flip, (x ^ 0x8000) >> 8 = (x >> 8) + 128 (the instruction
 * reads hi + 128: delta 128 on the hi half, 256 * 128 = 32768 on the whole sum), quad C/4 + q
 * the low bytes x & 255 (read as they are).  Sixteen positions per step: each channel's
 * values zero-extended to int32 lanes after the flip of bit 15, the four bytes of a position
 * assembled in its lane.  The last row of a plane fills the plane's slack with zeros. */
AMX static void amx_x4_split(const q8_ctx *ctx, int64_t r0, int64_t r1)
{
    const int32_t h = ctx->h, w = ctx->w, half = ctx->c4 / 2;
    const int64_t hw = (int64_t)h * w;
    const int16_t *x = (const int16_t *)ctx->x;
    const __m256i flip = _mm256_set1_epi16((short)0x8000);
    const __m512i lo8 = _mm512_set1_epi32(0xff);
    for (int64_t r = r0; r < r1; ++r) {
        const int64_t q = r / h, y = r % h;
        const int hi = q < half;
        const int16_t *src = x + (size_t)(4 * (hi ? q : q - half)) * (size_t)hw + (size_t)y * (size_t)w;
        uint8_t *plane = ctx->x4 + (size_t)q * ctx->xcs;
        uint8_t *d = plane + (size_t)y * (size_t)w * 4;
        for (int32_t j = 0; j < w; j += 16) {
            const __mmask16 m = w - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (w - j)) - 1u);
            __m512i v = _mm512_setzero_si512();
            for (int e = 0; e < 4; ++e) {
                const __m256i xe = _mm256_xor_si256(_mm256_maskz_loadu_epi16(m, src + (size_t)e * (size_t)hw + j), flip);
                const __m512i u = _mm512_cvtepu16_epi32(xe);          /* x + 32768 in 0..65535 */
                const __m512i b = hi ? _mm512_srli_epi32(u, 8) : _mm512_and_si512(u, lo8);
                v = _mm512_or_si512(v, _mm512_slli_epi32(b, 8 * e));
            }
            _mm512_mask_storeu_epi32((void *)(d + (size_t)j * 4), m, v);
        }
        if (y == h - 1) memset(plane + (size_t)hw * 4, 0, ((size_t)ctx->plane - (size_t)hw) * 4);
    }
}

const q8_ops mdfi_q8_ops_amx = {"amx", 0, mdfi_q8_x4_avx512, mdfi_q8_pack_avx512, kerns_amx, 2, amx_usable,
                                &mdfi_q8_ops_vnni512, 1, 1, mdfi_q8_x4_avx512_s2, 1, amx_finish, &kerns_amx[2], amx_xl, amx_x4_split};
static const q8_kernel kerns_sim[] = {{128, 2, 16, amxsim_tile_128x32}, {32, 2, 16, amxsim_tile_32x32},
                                      {32, 2 * CLSUB, 16, amxsim_cl_32x32}};
const q8_ops mdfi_q8_ops_amxsim = {"amx-sim", 0, mdfi_q8_x4_avx512, mdfi_q8_pack_avx512, kerns_sim, 2, amx_usable,
                                   &mdfi_q8_ops_vnni512, 1, 1, mdfi_q8_x4_avx512_s2, 1, cl_flush, &kerns_sim[2], amx_xl, amx_x4_split};

int mdfi_q8_have_amx_build(void) { return 1; }

#elif MDFI_CONV_X86

const q8_ops mdfi_q8_ops_amx = {"amx", 0, mdfi_q8_x4_avx2, mdfi_q8_pack_ref, NULL, 0, NULL, &mdfi_q8_ops_vnni512, 0, 0,
                                NULL, 0, NULL, NULL, NULL, NULL};
const q8_ops mdfi_q8_ops_amxsim = {"amx-sim", 0, mdfi_q8_x4_avx2, mdfi_q8_pack_ref, NULL, 0, NULL,
                                   &mdfi_q8_ops_vnni512, 0, 0, NULL, 0, NULL, NULL, NULL, NULL};
int mdfi_q8_have_amx_build(void) { return 0; }

#else
typedef int mdfi_conv_amx_unused;
#endif
