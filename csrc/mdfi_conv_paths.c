/* mdfi_conv_paths.c -- the convolution's code paths: the dispatch table (int16-pair ops and
 * 8-bit dot-product ops of each path), what this CPU and build can run, MDFI_SIMD, and the
 * start-up self-check.
 *
 * Self-check.  The first time a SIMD path is used, it convolves a few small deterministic
 * problems (uint8 pixels and int8 activations with extreme values, 3x3/1x1, stride 1 and 2,
 * odd sizes, a tile that needs packing, 64 channels for AMX, int16 operands for the pair
 * kernels, a fused shortcut) and compares every output byte with the scalar path.  A path that differs is
 * never used again in this process: calls fall back along fallback[] (e.g. amx ->
 * avx512vnni -> avx512bw -> avx2 -> scalar) and one line goes to stderr.  This is what lets
 * paths that the development machines cannot execute (AVX-VNNI's VEX encoding, AMX) ship:
 * they share their source with a tested twin, and a machine that runs them checks them
 * before trusting them.  Every SIMD path is checked the same way (about 0.1 ms, once).
 * MDFI_SELFCHECK_FAIL=<path name> makes that path's check fail (to test the fallback).
 */
#include "mdfi_conv.h"
#include "mdfi_conv_internal.h"
#include "mdfi_conv_q8.h"
#include "mdfi_cpu.h"
#include "mdfi_fixedpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    uint32_t need;                  /* MDFI_CPU_* flags (all required)                   */
    int32_t fallback;               /* path used if this one fails its self-check        */
} path_info;

static const path_info PATHS[MDFI_CONV_NPATHS] = {
    [MDFI_CONV_PATH_SCALAR] = {"scalar", 0, MDFI_CONV_PATH_SCALAR},
    [MDFI_CONV_PATH_AVX2] = {"avx2", MDFI_CPU_AVX2, MDFI_CONV_PATH_SCALAR},
    [MDFI_CONV_PATH_AVX512BW] = {"avx512bw", MDFI_CPU_AVX512BW, MDFI_CONV_PATH_AVX2},
    [MDFI_CONV_PATH_AVXVNNI] = {"avxvnni", MDFI_CPU_AVX2 | MDFI_CPU_AVXVNNI, MDFI_CONV_PATH_AVX2},
    [MDFI_CONV_PATH_AVX512VNNI] = {"avx512vnni", MDFI_CPU_AVX512BW | MDFI_CPU_AVX512VNNI, MDFI_CONV_PATH_AVX512BW},
    [MDFI_CONV_PATH_AMX] = {"amx", MDFI_CPU_AVX512BW | MDFI_CPU_AVX512VNNI | MDFI_CPU_AMX,
                            MDFI_CONV_PATH_AVX512VNNI},
    [MDFI_CONV_PATH_NEON] = {"neon", MDFI_CPU_NEON, MDFI_CONV_PATH_SCALAR},
    [MDFI_CONV_PATH_NEONDOT] = {"neondot", MDFI_CPU_NEON | MDFI_CPU_NEONDOT, MDFI_CONV_PATH_NEON},
    [MDFI_CONV_PATH_AVX512VNNI_YMM] = {"avx512vnni-ymm", MDFI_CPU_AVX512BW | MDFI_CPU_AVX512VNNI,
                                       MDFI_CONV_PATH_AVX512BW},
    [MDFI_CONV_PATH_SCALAR8] = {"scalar8", 0, MDFI_CONV_PATH_SCALAR},
    [MDFI_CONV_PATH_AMX_SIM] = {"amx-sim", MDFI_CPU_AVX512BW | MDFI_CPU_AVX512VNNI, MDFI_CONV_PATH_AVX512BW},
};

/* Preference order of the automatic choice. */
static const int32_t BEST_ORDER[] = {MDFI_CONV_PATH_AMX, MDFI_CONV_PATH_AVX512VNNI, MDFI_CONV_PATH_AVXVNNI,
                                     MDFI_CONV_PATH_AVX512BW, MDFI_CONV_PATH_AVX2, MDFI_CONV_PATH_NEONDOT,
                                     MDFI_CONV_PATH_NEON};

void mdfi_conv_path_ops(int32_t path, const conv_ops **pair, const struct q8_ops **q8)
{
    *pair = &mdfi_conv_ops_scalar;
    *q8 = NULL;
    switch (path) {
    case MDFI_CONV_PATH_SCALAR8: *q8 = &mdfi_q8_ops_ref; break;
#if MDFI_CONV_X86
    case MDFI_CONV_PATH_AVX2: *pair = &mdfi_conv_ops_avx2; break;
    case MDFI_CONV_PATH_AVX512BW: *pair = &mdfi_conv_ops_avx512; break;
    case MDFI_CONV_PATH_AVXVNNI: *pair = &mdfi_conv_ops_avx2; *q8 = &mdfi_q8_ops_avxvnni; break;
    case MDFI_CONV_PATH_AVX512VNNI: *pair = &mdfi_conv_ops_vnni16; *q8 = &mdfi_q8_ops_vnni512; break;
    case MDFI_CONV_PATH_AVX512VNNI_YMM: *pair = &mdfi_conv_ops_avx512; *q8 = &mdfi_q8_ops_vnni256; break;
    case MDFI_CONV_PATH_AMX: *pair = &mdfi_conv_ops_vnni16; *q8 = &mdfi_q8_ops_amx; break;
    case MDFI_CONV_PATH_AMX_SIM: *pair = &mdfi_conv_ops_vnni16; *q8 = &mdfi_q8_ops_amxsim; break;
#endif
#if MDFI_CONV_ARM
    case MDFI_CONV_PATH_NEON: *pair = &mdfi_conv_ops_neon; break;
    case MDFI_CONV_PATH_NEONDOT: *pair = &mdfi_conv_ops_neon; *q8 = &mdfi_q8_ops_neondot; break;
#endif
    default: break;
    }
}

int32_t mdfi_conv_q8_tiles(int32_t path, int32_t *tiles, int32_t max)
{
    if (path < 0 || path >= MDFI_CONV_NPATHS) return 0;
    const conv_ops *pair;
    const q8_ops *q8;
    mdfi_conv_path_ops(path, &pair, &q8);
    if (q8 == NULL) return 0;
    for (int32_t i = 0; i < q8->nkerns && i < max; ++i) {
        tiles[3 * i] = q8->kerns[i].mr;
        tiles[3 * i + 1] = q8->kerns[i].nrv;
        tiles[3 * i + 2] = q8->kerns[i].lanes;
    }
    return q8->nkerns;
}

int32_t mdfi_conv_q8_choice(int32_t path, int32_t c, int32_t h, int32_t w, int32_t m, int32_t ks, int32_t stride,
                            int32_t pad, int32_t nthreads)
{
    if (path < 0 || path >= MDFI_CONV_NPATHS) return -1;
    const conv_ops *pair;
    const q8_ops *q8;
    mdfi_conv_path_ops(path, &pair, &q8);
    return q8 == NULL ? -1 : mdfi_q8_choice(q8, c, h, w, m, ks, stride, pad, nthreads);
}

/* Compiled into this build? */
static int built(int32_t path)
{
    switch (path) {
    case MDFI_CONV_PATH_SCALAR:
    case MDFI_CONV_PATH_SCALAR8: return 1;
#if MDFI_CONV_X86
    case MDFI_CONV_PATH_AVX2:
    case MDFI_CONV_PATH_AVX512BW:
    case MDFI_CONV_PATH_AVX512VNNI:
    case MDFI_CONV_PATH_AVX512VNNI_YMM: return 1;
    case MDFI_CONV_PATH_AMX:
    case MDFI_CONV_PATH_AMX_SIM: return mdfi_q8_have_amx_build();
    case MDFI_CONV_PATH_AVXVNNI: return mdfi_q8_have_avxvnni_build();
#endif
#if MDFI_CONV_ARM
    case MDFI_CONV_PATH_NEON:
    case MDFI_CONV_PATH_NEONDOT: return 1;
#endif
    default: return 0;
    }
}

int mdfi_conv_path_available(int32_t path)
{
    if (path < 0 || path >= MDFI_CONV_NPATHS || !built(path)) return 0;
    const uint32_t need = PATHS[path].need;
    return (mdfi_cpu_features() & need) == need;
}

int32_t mdfi_conv_best_path(void)
{
    for (size_t i = 0; i < sizeof BEST_ORDER / sizeof BEST_ORDER[0]; ++i)
        if (mdfi_conv_path_available(BEST_ORDER[i])) return BEST_ORDER[i];
    return MDFI_CONV_PATH_SCALAR;
}

const char *mdfi_conv_path_name(int32_t path)
{
    return path >= 0 && path < MDFI_CONV_NPATHS ? PATHS[path].name : "unknown";
}

int32_t mdfi_conv_path_from_name(const char *name)
{
    if (name == NULL) return -1;
    for (int32_t p = 0; p < MDFI_CONV_NPATHS; ++p)
        if (strcmp(name, PATHS[p].name) == 0) return p;
    return -1;
}

int32_t mdfi_conv_env_path(void)
{
    const int32_t best = mdfi_conv_best_path();
    const char *v = getenv("MDFI_SIMD");
    if (v == NULL || v[0] == '\0' || strcmp(v, "auto") == 0 || strcmp(v, "1") == 0) return best;
    if (strcmp(v, "0") == 0 || strcmp(v, "off") == 0) return MDFI_CONV_PATH_SCALAR;
    const int32_t p = mdfi_conv_path_from_name(v);
    return p >= 0 && mdfi_conv_path_available(p) ? p : best;
}

/* ---------------------------------------------------------------------------------------
 * Self-check
 * ------------------------------------------------------------------------------------- */
typedef struct {
    int xtype, wtype, otype;
    int32_t c, h, w, m, ks, stride, pad, rounding, bits, act, acc64;
    int32_t res;                    /* 1: with a fused shortcut (shift 1, leaky), 2: shift 0 */
} check_case;

static const check_case CASES[] = {
    /* uint8 pixels, 3 channels (first layer) */
    {MDFI_CONV_U8, MDFI_CONV_S8, MDFI_CONV_S8, 3, 9, 11, 5, 3, 1, 1, MDFI_ROUND_HALF_UP, 8, MDFI_ACT_LEAKY, 0, 0},
    /* int8, stride 2, odd sizes, narrow output */
    {MDFI_CONV_S8, MDFI_CONV_S8, MDFI_CONV_S8, 13, 7, 6, 21, 3, 2, 1, MDFI_ROUND_TRUNCATE, 6, MDFI_ACT_LINEAR, 0, 0},
    /* 1x1, relu, int16 output */
    {MDFI_CONV_S8, MDFI_CONV_S8, MDFI_CONV_S16, 9, 5, 5, 17, 1, 1, 0, MDFI_ROUND_HALF_UP, 12, MDFI_ACT_RELU, 0, 0},
    /* small map, many channels (packed tiles; AMX-sized channel blocks) */
    {MDFI_CONV_S8, MDFI_CONV_S8, MDFI_CONV_S8, 128, 3, 4, 40, 3, 1, 1, MDFI_ROUND_HALF_UP, 8, MDFI_ACT_LEAKY, 0, 1},
    {MDFI_CONV_S8, MDFI_CONV_S8, MDFI_CONV_S8, 64, 6, 7, 33, 3, 1, 1, MDFI_ROUND_TRUNCATE, 8, MDFI_ACT_LEAKY, 0, 2},
    /* AMX: one partial K tile per tap (10 channel quads), two row groups of register tiles */
    {MDFI_CONV_S8, MDFI_CONV_S8, MDFI_CONV_S8, 40, 5, 6, 150, 3, 1, 1, MDFI_ROUND_HALF_UP, 8, MDFI_ACT_LEAKY, 0, 0},
    /* int16 operands: the int16-pair kernels, int64 accumulation */
    {MDFI_CONV_S16, MDFI_CONV_S16, MDFI_CONV_S16, 5, 6, 5, 7, 3, 1, 1, MDFI_ROUND_HALF_UP, 16, MDFI_ACT_LEAKY, 1, 0},
    {MDFI_CONV_S16, MDFI_CONV_S8, MDFI_CONV_S16, 6, 5, 9, 13, 3, 1, 1, MDFI_ROUND_TRUNCATE, 10, MDFI_ACT_RELU, 0, 0},
};

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* A value of a type: mostly random, a quarter extremes. */
static int32_t draw(uint32_t *s, int type, int bits)
{
    const int32_t lo = type == MDFI_CONV_U8 ? 0 : -(1 << (bits - 1));
    const int32_t hi = type == MDFI_CONV_U8 ? 255 : (1 << (bits - 1)) - 1;
    const uint32_t r = lcg(s);
    if (r % 4 == 0) return (r / 4) % 2 ? hi : lo;
    return lo + (int32_t)((r / 4) % (uint32_t)(hi - lo + 1));
}

/* 1 if `path` computes every case like the scalar path. */
static int selfcheck(int32_t path)
{
    const char *force = getenv("MDFI_SELFCHECK_FAIL");
    if (force != NULL && strcmp(force, PATHS[path].name) == 0) return 0;
    int ok = 1;
    uint32_t seed = 12345u;
    for (size_t ci = 0; ci < sizeof CASES / sizeof CASES[0] && ok; ++ci) {
        const check_case *k = &CASES[ci];
        const int32_t oh = mdfi_conv_out_size(k->h, k->ks, k->stride, k->pad);
        const int32_t ow = mdfi_conv_out_size(k->w, k->ks, k->stride, k->pad);
        const int64_t nx = (int64_t)k->c * k->h * k->w, nw = (int64_t)k->m * k->c * k->ks * k->ks;
        const int64_t no = (int64_t)k->m * oh * ow;
        const int64_t np = mdfi_conv_packed_size(k->m, k->c, k->ks);
        const int64_t ns = mdfi_conv_scratch_size(k->c, k->h, k->w, k->m, k->ks, k->stride, k->pad, 1);
        const size_t xs = k->xtype == MDFI_CONV_S16 ? 2 : 1, ws = k->wtype == MDFI_CONV_S16 ? 2 : 1;
        const size_t os = k->otype == MDFI_CONV_S16 ? 2 : 1;
        unsigned char *x = malloc((size_t)nx * xs), *wt = malloc((size_t)nw * ws), *pk = malloc((size_t)np);
        unsigned char *o1 = malloc((size_t)no * os), *o2 = malloc((size_t)no * os), *sc = malloc((size_t)ns);
        int64_t *bias = malloc(sizeof(int64_t) * (size_t)k->m);
        int32_t *shift = malloc(sizeof(int32_t) * (size_t)k->m);
        int8_t *rb = malloc((size_t)no), *r1 = malloc((size_t)no), *r2 = malloc((size_t)no);
        if (!x || !wt || !pk || !o1 || !o2 || !sc || !bias || !shift || !rb || !r1 || !r2) {
            ok = 0;                     /* out of memory: do not trust what was not checked */
        } else {
            const int xbits = k->xtype == MDFI_CONV_S16 ? 16 : 8, wbits = k->wtype == MDFI_CONV_S16 ? 12 : 8;
            for (int64_t i = 0; i < nx; ++i) {
                const int32_t v = draw(&seed, k->xtype, xbits);
                if (xs == 2) ((int16_t *)(void *)x)[i] = (int16_t)v;
                else if (k->xtype == MDFI_CONV_U8) x[i] = (uint8_t)v;
                else ((int8_t *)(void *)x)[i] = (int8_t)v;
            }
            for (int64_t i = 0; i < nw; ++i) {
                const int32_t v = draw(&seed, k->wtype, wbits);
                if (ws == 2) ((int16_t *)(void *)wt)[i] = (int16_t)v;
                else ((int8_t *)(void *)wt)[i] = (int8_t)v;
            }
            const int32_t kv = k->c * k->ks * k->ks;
            const int32_t base = k->acc64 ? 24 : (kv > 64 ? 12 : 9);
            for (int32_t i = 0; i < k->m; ++i) {
                bias[i] = (int64_t)(lcg(&seed) % 200001u) - 100000;
                shift[i] = base + (int32_t)(lcg(&seed) % 4u) - (i == 1 ? base + 2 : 0);   /* row 1: shift <= 0 */
            }
            for (int64_t i = 0; i < no; ++i) rb[i] = (int8_t)draw(&seed, MDFI_CONV_S8, 8);
            ok = mdfi_conv_pack_weights(wt, k->wtype, k->m, k->c, k->ks, pk, np) == MDFI_CONV_OK;
            memset(o1, 0x5a, (size_t)no * os);
            memset(o2, 0xa5, (size_t)no * os);
            memset(r1, 0x5a, (size_t)no);
            memset(r2, 0xa5, (size_t)no);
            mdfi_conv_residual res1 = {rb, MDFI_CONV_S8, 1, 0, k->res == 1 ? 1 : 0, MDFI_ROUND_HALF_UP, 8,
                                       k->res == 1 ? MDFI_ACT_LEAKY : MDFI_ACT_LINEAR, r1, MDFI_CONV_S8};
            mdfi_conv_residual res2 = res1;
            res2.out = r2;
            ok = ok && mdfi_conv2d_on(x, k->xtype, k->c, k->h, k->w, nx, pk, np, bias, shift, k->m, o1, k->otype, no,
                                      k->ks, k->stride, k->pad, k->rounding, k->bits, k->act, k->acc64, 1, path, sc,
                                      ns, k->res ? &res1 : NULL, 0, 0) == MDFI_CONV_OK;
            ok = ok && mdfi_conv2d_on(x, k->xtype, k->c, k->h, k->w, nx, pk, np, bias, shift, k->m, o2, k->otype, no,
                                      k->ks, k->stride, k->pad, k->rounding, k->bits, k->act, k->acc64, 1,
                                      MDFI_CONV_PATH_SCALAR, sc, ns, k->res ? &res2 : NULL, 0, 0) == MDFI_CONV_OK;
            ok = ok && memcmp(o1, o2, (size_t)no * os) == 0;
            ok = ok && (!k->res || memcmp(r1, r2, (size_t)no) == 0);
            if (!k->res) {
                /* zero points: a nonzero padding value near the type's extreme and an output
                 * zero point near qmin or qmax (alternating with the case) */
                const int32_t pv = k->xtype == MDFI_CONV_U8 ? 251 : k->xtype == MDFI_CONV_S8 ? -126 : 30001;
                const int32_t zo = ci % 2 ? mdfi_qmax(k->bits) - 1 : mdfi_qmin(k->bits) + 2;
                memset(o1, 0x5a, (size_t)no * os);
                memset(o2, 0xa5, (size_t)no * os);
                ok = ok && mdfi_conv2d_on(x, k->xtype, k->c, k->h, k->w, nx, pk, np, bias, shift, k->m, o1, k->otype,
                                          no, k->ks, k->stride, k->pad, k->rounding, k->bits, k->act, k->acc64, 1,
                                          path, sc, ns, NULL, pv, zo) == MDFI_CONV_OK;
                ok = ok && mdfi_conv2d_on(x, k->xtype, k->c, k->h, k->w, nx, pk, np, bias, shift, k->m, o2, k->otype,
                                          no, k->ks, k->stride, k->pad, k->rounding, k->bits, k->act, k->acc64, 1,
                                          MDFI_CONV_PATH_SCALAR, sc, ns, NULL, pv, zo) == MDFI_CONV_OK;
                ok = ok && memcmp(o1, o2, (size_t)no * os) == 0;
            }
        }
        free(x); free(wt); free(pk); free(o1); free(o2); free(sc); free(bias); free(shift);
        free(rb); free(r1); free(r2);
    }
    return ok;
}

#if !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
static _Atomic int checked[MDFI_CONV_NPATHS];      /* 0 unknown, 1 passed, 2 failed */
static _Atomic int warned[MDFI_CONV_NPATHS];
#define LD(a) atomic_load(&(a))
#define ST(a, v) atomic_store(&(a), (v))
#define XCHG(a, v) atomic_exchange(&(a), (v))
#else
static volatile int checked[MDFI_CONV_NPATHS], warned[MDFI_CONV_NPATHS];
#define LD(a) (a)
#define ST(a, v) ((a) = (v))
static int xchg_plain(volatile int *a, int v) { int o = *a; *a = v; return o; }
#define XCHG(a, v) xchg_plain(&(a), (v))
#endif

int32_t mdfi_conv_effective_path(int32_t path)
{
    if (!mdfi_conv_path_available(path)) path = mdfi_conv_best_path();
    while (path != MDFI_CONV_PATH_SCALAR) {
        int st = LD(checked[path]);
        if (st == 0) {                  /* concurrent first calls may both check: harmless */
            st = selfcheck(path) ? 1 : 2;
            ST(checked[path], st);
        }
        if (st == 1) return path;
        const int32_t next = PATHS[path].fallback;
        if (XCHG(warned[path], 1) == 0)
            fprintf(stderr, "mdfi: the %s convolution path failed its start-up self-check against the scalar "
                            "path; using %s\n", PATHS[path].name, mdfi_conv_path_name(mdfi_conv_effective_path(next)));
        path = next;
    }
    return MDFI_CONV_PATH_SCALAR;
}
