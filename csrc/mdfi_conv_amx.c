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
    return ctx->at + (size_t)(r / Q8_PANEL) * (size_t)ctx->taps * (size_t)ctx->c4b * 1024;
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
#define AMX_KC 8

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
    const int32_t kc = steps <= Q8_AMX_KC_ONE ? steps : AMX_KC;                                   \
    int32_t nj = (ctx->m - m0 + 31) / 32;                      /* register tiles with rows < M */ \
    if (nj > J) nj = J;                                                                           \
    for (int32_t s0 = 0; s0 < steps; s0 += kc) {                                                  \
        const int32_t s1 = s0 + kc < steps ? s0 + kc : steps;                                     \
        for (int32_t j = 0; j < nj; ++j) {                                                        \
            const int8_t *a0 = at_panel(ctx, m0 + 32 * j), *a1 = at_panel(ctx, m0 + 32 * j + 16);   \
            if (s0 == 0) {                                                                        \
                ZERO(0); ZERO(1); ZERO(2); ZERO(3);                                               \
            } else {                                                                              \
                LOAD(0, &cb[j][0][0], 128);                                                       \
                LOAD(1, &cb[j][0][16], 128);                                                      \
                LOAD(2, &cb[j][16][0], 128);                                                      \
                LOAD(3, &cb[j][16][16], 128);                                                     \
            }                                                                                     \
            int32_t tap = s0 / c4b, blk = s0 % c4b;                                               \
            for (int32_t st = s0; st < s1; ++st) {                                                \
                const size_t ao = (size_t)st * 1024;                                              \
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

AMX static void amx_finish(void)
{
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

/* TDPBSUD: dst.dword[m][n] += sum_{k < a.colsb/4} sum_e s8(a[m][4k+e]) * u8(b[k][4n+e]),
 * modulo 2^32, m < dst.rows, n < dst.colsb/4 */
static void sim_dpbsud(simtile *dst, const simtile *a, const simtile *b)
{
    for (int m = 0; m < dst->rows; ++m)
        for (int n = 0; n < dst->colsb / 4; ++n) {
            uint32_t acc;
            memcpy(&acc, &dst->d[m][4 * n], 4);
            for (int k = 0; k < a->colsb / 4; ++k)
                for (int e = 0; e < 4; ++e)
                    acc += (uint32_t)((int32_t)(int8_t)a->d[m][4 * k + e] * (int32_t)b->d[k][4 * n + e]);
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
#define SIM_DP(d, a, b) sim_dpbsud(&tiles_[d], &tiles_[a], &tiles_[b])
#define SIM_STORE(i, base, stride) sim_store(&tiles_[i], (base), (stride))
AMX_KERNEL(amxsim_tile_128x32, 4, , SIM_STATE, SIM_CONFIG, SIM_ZERO, SIM_LOAD, SIM_DP, SIM_STORE, ((void)0))
AMX_KERNEL(amxsim_tile_32x32, 1, , SIM_STATE, SIM_CONFIG, SIM_ZERO, SIM_LOAD, SIM_DP, SIM_STORE, ((void)0))

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

static const q8_kernel kerns_amx[] = {{128, 2, 16, amx_tile_128x32}, {32, 2, 16, amx_tile_32x32}};
const q8_ops mdfi_q8_ops_amx = {"amx", 0, mdfi_q8_x4_avx512, mdfi_q8_pack_avx512, kerns_amx, 2, amx_usable,
                                &mdfi_q8_ops_vnni512, 1, 1, mdfi_q8_x4_avx512_s2, 1, amx_finish};
static const q8_kernel kerns_sim[] = {{128, 2, 16, amxsim_tile_128x32}, {32, 2, 16, amxsim_tile_32x32}};
const q8_ops mdfi_q8_ops_amxsim = {"amx-sim", 0, mdfi_q8_x4_avx512, mdfi_q8_pack_avx512, kerns_sim, 2, amx_usable,
                                   &mdfi_q8_ops_vnni512, 1, 1, mdfi_q8_x4_avx512_s2, 1, NULL};

int mdfi_q8_have_amx_build(void) { return 1; }

#elif MDFI_CONV_X86

const q8_ops mdfi_q8_ops_amx = {"amx", 0, mdfi_q8_x4_avx2, mdfi_q8_pack_ref, NULL, 0, NULL, &mdfi_q8_ops_vnni512, 0, 0,
                                NULL, 0, NULL};
const q8_ops mdfi_q8_ops_amxsim = {"amx-sim", 0, mdfi_q8_x4_avx2, mdfi_q8_pack_ref, NULL, 0, NULL,
                                   &mdfi_q8_ops_vnni512, 0, 0, NULL, 0, NULL};
int mdfi_q8_have_amx_build(void) { return 0; }

#else
typedef int mdfi_conv_amx_unused;
#endif
