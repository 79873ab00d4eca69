/* amx_overlap.c -- what runs beside AMX's TDPBSUD on this core (docs/performance.md, "AMX: where
 * the big layers' time goes", stop 41).  x86-64 Linux with AMX-TILE + AMX-INT8 only.
 *
 *   cc -O2 benchmarks/amx_overlap.c -o amx_overlap && ./amx_overlap
 *
 * Loops of one thread, timed with the TSC (cycles per iteration, medians of 5 runs):
 *   - 4 x 4 TDPBSUD on register-resident tiles (the 2 x 2 register tile of mdfi_conv_amx.c),
 *     alone and with 32-256 independent zmm instructions after them (vpaddd, vpsrad, vpmaddwd):
 *     does the zmm epilogue overlap the tile multiplies?
 *   - one K step of the kernel (2 A + 2 B TILELOADD of 16 x 64 bytes, 4 TDPBSUD) with the B rows
 *     on cache lines or 4 bytes off them (direct mode's rows cross lines), from L1; and the
 *     loads alone.
 */
#define _GNU_SOURCE 1
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw"), noinline))

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tilecfg;

static int8_t amem[2][16 * 64] __attribute__((aligned(64)));     /* A tiles: [16][64]          */
static uint8_t bmem[16 * 256 + 128] __attribute__((aligned(64)));  /* B rows: stride 256 bytes   */
static int32_t sink[16] __attribute__((aligned(64)));

/* kind: 0 vpaddd, 1 vpsrad, 2 vpmaddwd (8 independent chains) */
AMX static double dp_and_vec(int ndp, int nvec, int kind, int iters)
{
    __m512i v0 = _mm512_set1_epi32(1), v1 = v0, v2 = v0, v3 = v0, v4 = v0, v5 = v0, v6 = v0, v7 = v0;
    const __m512i k = _mm512_set1_epi32(3);
    const uint64_t t0 = __rdtsc();
    for (int it = 0; it < iters; ++it) {
        for (int d = 0; d < ndp; ++d) {
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
        for (int v = 0; v < nvec; v += 8) {
#define OP(r) r = kind == 0 ? _mm512_add_epi32(r, k) : kind == 1 ? _mm512_srai_epi32(r, 1) : _mm512_madd_epi16(r, k)
            OP(v0); OP(v1); OP(v2); OP(v3); OP(v4); OP(v5); OP(v6); OP(v7);
#undef OP
            __asm__ volatile("" : "+v"(v0), "+v"(v1), "+v"(v2), "+v"(v3), "+v"(v4), "+v"(v5), "+v"(v6), "+v"(v7));
        }
    }
    const uint64_t t1 = __rdtsc();
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(v0, v1), _mm512_add_epi32(v2, v3)),
                                 _mm512_add_epi32(_mm512_add_epi32(v4, v5), _mm512_add_epi32(v6, v7)));
    _mm512_store_si512(sink, s);
    return (double)(t1 - t0) / iters;
}

/* nsteps K steps: 2 A + 2 B loads (B rows at stride 256, first row at byte `off`), and the
 * 4 TDPBSUD unless loads_only */
AMX static double step(int off, int loads_only, int iters)
{
    const uint8_t *b = bmem + off;
    const uint64_t t0 = __rdtsc();
    for (int it = 0; it < iters; ++it) {
        _tile_loadd(4, amem[0], 64);
        _tile_loadd(5, amem[1], 64);
        _tile_loadd(6, b, 256);
        _tile_loadd(7, b + 64, 256);
        if (!loads_only) {
            _tile_dpbsud(0, 4, 6);
            _tile_dpbsud(1, 4, 7);
            _tile_dpbsud(2, 5, 6);
            _tile_dpbsud(3, 5, 7);
        }
    }
    return (double)(__rdtsc() - t0) / iters;
}

static int cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MEDIAN(expr)                                                                              \
    ({                                                                                            \
        double r_[5];                                                                             \
        (void)(expr);                                                                             \
        for (int i_ = 0; i_ < 5; ++i_) r_[i_] = (expr);                                           \
        qsort(r_, 5, sizeof r_[0], cmp);                                                          \
        r_[2];                                                                                    \
    })

AMX static int run(void)
{
    tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; ++i) {
        cfg.colsb[i] = 64;
        cfg.rows[i] = 16;
    }
    _tile_loadconfig(&cfg);
    _tile_loadd(4, amem[0], 64);
    _tile_loadd(5, amem[1], 64);
    _tile_loadd(6, bmem, 256);
    _tile_loadd(7, bmem + 64, 256);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const char *names[3] = {"vpaddd", "vpsrad", "vpmaddwd"};
    const double dp = MEDIAN(dp_and_vec(4, 0, 0, 20000));
    printf("16 TDPBSUD (4 x the 2x2 register tile), register tiles only: %.1f TSC cycles\n", dp);
    for (int kind = 0; kind < 3; ++kind) {
        printf("%-9s", names[kind]);
        for (int nv = 32; nv <= 256; nv *= 2) {
            const double alone = MEDIAN(dp_and_vec(0, nv, kind, 20000));
            const double both = MEDIAN(dp_and_vec(4, nv, kind, 20000));
            printf("  %3d zmm: alone %6.1f, after the 16 TDPBSUD %6.1f (sum %6.1f) |", nv, alone, both, dp + alone);
        }
        printf("\n");
    }
    const double s_al = MEDIAN(step(0, 0, 200000)), s_mis = MEDIAN(step(4, 0, 200000));
    const double l_al = MEDIAN(step(0, 1, 200000)), l_mis = MEDIAN(step(4, 1, 200000));
    printf("one K step (2 A + 2 B TILELOADD from L1, 4 TDPBSUD): B rows on cache lines %.1f, 4 bytes off %.1f\n",
           s_al, s_mis);
    printf("the 4 TILELOADD alone:                               B rows on cache lines %.1f, 4 bytes off %.1f\n",
           l_al, l_mis);
    _tile_release();
    return 0;
}

int main(void)
{
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        fprintf(stderr, "amx_overlap: no AMX tile data permission on this machine/kernel\n");
        return 1;
    }
    memset(amem, 1, sizeof amem);
    memset(bmem, 2, sizeof bmem);
    return run();
}
