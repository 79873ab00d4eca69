/* conv_check.c -- every convolution path this CPU can run against the portable scalar path,
 * without Python (for cross builds run under qemu, and for machines without Python).
 *
 *   make -C csrc check                 build/conv_check, run it
 *   build/conv_check [--cases N] [--seed S]
 *
 * The scalar path is the C twin of the NumPy reference (tests/test_kernel_conv.py proves it
 * equal to mdfi.layers.convolutional.conv2d_int_ref on every input class), so a path equal to
 * it here is equal to the reference.  Random problems (deterministic from the seed): uint8 /
 * int8 / int16 activations, int8 / int16 weights of 2..16 bits with extreme values, odd
 * channel counts and map sizes, kernels 1..5, strides 1..4, padding 0..2, output widths
 * 2..16, both roundings, every activation, per-channel shifts (including <= 0 and > 31),
 * 1..3 threads, int32 or int64 accumulation, zero points (half the cases: a padding value and
 * an output zero point, a third of them the extremes of their range); every 8-bit register tile
 * in direct and packed mode.  Exit status 0 when every output byte agrees, 1 otherwise (with the first case).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../mdfi_conv.h"
#include "../mdfi_cpu.h"
#include "../mdfi_fixedpoint.h"

static uint64_t rng_state;

static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

static int32_t range(int32_t lo, int32_t hi) { return lo + (int32_t)(rnd() % (uint32_t)(hi - lo + 1)); }

/* a value of `bits` (signed) or 0..255 (bits == 0), a third of them extremes */
static int32_t value(int bits)
{
    const int32_t lo = bits ? -(1 << (bits - 1)) : 0, hi = bits ? (1 << (bits - 1)) - 1 : 255;
    const uint32_t r = rnd() % 6;
    return r == 0 ? lo : r == 1 ? hi : range(lo, hi);
}

typedef struct {
    int xtype, wtype, otype;
    int32_t c, h, w, m, ks, stride, pad, rounding, bits, act, acc64, threads, pad_value, zero_out;
    void *x, *wt, *packed, *scratch, *o1, *o2;
    int64_t *bias;
    int32_t *shift;
    int64_t nx, no, npk, nsc;
} problem;

static void free_problem(problem *p)
{
    free(p->x); free(p->wt); free(p->packed); free(p->scratch); free(p->o1); free(p->o2);
    free(p->bias); free(p->shift);
}

static int make_problem(problem *p)
{
    memset(p, 0, sizeof *p);
    const int kind = range(0, 9);      /* mostly 8-bit layers, the family the SIMD paths vary */
    const int xbits = kind < 3 ? 0 : kind < 8 ? range(2, 8) : range(9, 16);
    const int wbits = kind < 8 ? range(2, 8) : range(2, 16);
    p->xtype = xbits == 0 ? MDFI_CONV_U8 : xbits <= 8 ? MDFI_CONV_S8 : MDFI_CONV_S16;
    p->wtype = wbits <= 8 ? MDFI_CONV_S8 : MDFI_CONV_S16;
    p->c = range(0, 3) == 0 ? range(60, 140) : range(1, 19);
    p->ks = range(1, 5);
    p->stride = range(0, 2) ? 1 : range(2, 4);
    p->pad = range(0, p->ks / 2 + 1);
    p->h = range(p->ks > 2 * p->pad ? p->ks - 2 * p->pad : 1, 19);
    p->w = range(p->ks > 2 * p->pad ? p->ks - 2 * p->pad : 1, 23);
    p->m = range(1, 40);
    p->bits = range(2, 16);
    p->otype = p->bits <= 8 && range(0, 1) ? MDFI_CONV_S8 : MDFI_CONV_S16;
    p->rounding = range(0, 1);
    p->act = range(0, 2);
    p->threads = range(1, 3);
    if (range(0, 1)) {                 /* zero points (else 0, 0) */
        p->pad_value = p->xtype == MDFI_CONV_U8 ? value(0) : value(p->xtype == MDFI_CONV_S8 ? 8 : 16);
        p->zero_out = value(p->bits);
    }
    const int32_t oh = mdfi_conv_out_size(p->h, p->ks, p->stride, p->pad);
    const int32_t ow = mdfi_conv_out_size(p->w, p->ks, p->stride, p->pad);
    if (oh < 1 || ow < 1) return 0;
    const int64_t k = (int64_t)p->c * p->ks * p->ks;
    const int64_t xmax = xbits == 0 ? 255 : (int64_t)1 << (xbits - 1), wmax = (int64_t)1 << (wbits - 1);
    const int64_t pmax = k * xmax * wmax;
    p->acc64 = pmax > ((int64_t)1 << 30) ? 1 : range(0, 3) == 0;
    p->nx = (int64_t)p->c * p->h * p->w;
    p->no = (int64_t)p->m * oh * ow;
    p->npk = mdfi_conv_packed_size(p->m, p->c, p->ks);
    p->nsc = mdfi_conv_scratch_size(p->c, p->h, p->w, p->m, p->ks, p->stride, p->pad, p->threads);
    const size_t xs = p->xtype == MDFI_CONV_S16 ? 2 : 1, ws = p->wtype == MDFI_CONV_S16 ? 2 : 1;
    const size_t os = p->otype == MDFI_CONV_S16 ? 2 : 1;
    const int64_t nw = (int64_t)p->m * k;
    p->x = malloc((size_t)p->nx * xs);
    p->wt = malloc((size_t)nw * ws);
    p->packed = malloc((size_t)p->npk);
    p->scratch = malloc((size_t)p->nsc);
    p->o1 = malloc((size_t)p->no * os);
    p->o2 = malloc((size_t)p->no * os);
    p->bias = malloc(sizeof(int64_t) * (size_t)p->m);
    p->shift = malloc(sizeof(int32_t) * (size_t)p->m);
    if (!p->x || !p->wt || !p->packed || !p->scratch || !p->o1 || !p->o2 || !p->bias || !p->shift) return -1;
    for (int64_t i = 0; i < p->nx; ++i) {
        const int32_t v = value(xbits);
        if (xs == 2) ((int16_t *)p->x)[i] = (int16_t)v;
        else if (p->xtype == MDFI_CONV_U8) ((uint8_t *)p->x)[i] = (uint8_t)v;
        else ((int8_t *)p->x)[i] = (int8_t)v;
    }
    for (int64_t i = 0; i < nw; ++i) {
        const int32_t v = value(wbits);
        if (ws == 2) ((int16_t *)p->wt)[i] = (int16_t)v;
        else ((int8_t *)p->wt)[i] = (int8_t)v;
    }
    int lg = 0;
    while (((int64_t)1 << lg) < pmax) ++lg;
    /* acc64: half the cases with |bias| up to 2^40, half up to the sums' bound (a bias that
     * dwarfs the sums would saturate every output and hide the sums' low bits) */
    const int64_t blim = p->acc64 ? (range(0, 1) ? ((int64_t)1 << 40) : pmax) : ((int64_t)1 << 31) - 1 - pmax;
    for (int32_t i = 0; i < p->m; ++i) {
        p->bias[i] = (int64_t)(((uint64_t)rnd() << 32 | rnd()) % (uint64_t)(2 * blim + 1)) - blim;
        const uint32_t r = rnd() % 8;
        p->shift[i] = r == 0 ? 0 : r == 1 ? -range(1, 3) : r == 2 ? range(32, 47) : r == 3 ? range(1, 31)
                                                                              : lg - p->bits + range(0, 3);
        if (p->shift[i] < MDFI_MIN_SHIFT) p->shift[i] = MDFI_MIN_SHIFT;
        if (p->shift[i] > MDFI_MAX_SHIFT) p->shift[i] = MDFI_MAX_SHIFT;
    }
    return mdfi_conv_pack_weights(p->wt, p->wtype, p->m, p->c, p->ks, p->packed, p->npk) == MDFI_CONV_OK ? 1 : -1;
}

static int run(problem *p, int32_t path, void *out)
{
    return mdfi_conv2d_zp(p->x, p->xtype, p->c, p->h, p->w, p->nx, p->packed, p->npk, p->bias, p->shift, p->m, out,
                          p->otype, p->no, p->ks, p->stride, p->pad, p->rounding, p->bits, p->act, p->acc64,
                          p->threads, path, p->scratch, p->nsc, p->pad_value, p->zero_out);
}

int main(int argc, char **argv)
{
    long cases = 300;
    uint64_t seed = 1;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--cases") == 0 && i + 1 < argc) cases = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--cases N] [--seed S]\n", argv[0]);
            return 2;
        }
    }
    printf("conv_check: CPU features: %s; best path: %s\n", mdfi_cpu_describe(),
           mdfi_conv_path_name(mdfi_conv_best_path()));
    int bad = 0, tested = 0;
    for (int32_t path = 1; path < MDFI_CONV_NPATHS; ++path) {
        if (!mdfi_conv_path_available(path)) {
            printf("  %-15s skipped (not available on this CPU/build)\n", mdfi_conv_path_name(path));
            continue;
        }
        if (mdfi_conv_effective_path(path) != path) {
            printf("  %-15s FAILED its start-up self-check\n", mdfi_conv_path_name(path));
            bad = 1;
            continue;
        }
        int32_t tiles[48];
        const int32_t nt = mdfi_conv_q8_tiles(path, tiles, 16);
        long convs = 0;
        rng_state = seed;
        for (long ci = 0; ci < cases && !bad; ++ci) {
            problem p;
            const int mk = make_problem(&p);
            if (mk < 0) {
                fprintf(stderr, "conv_check: out of memory\n");
                free_problem(&p);
                return 2;
            }
            if (mk == 0) {
                free_problem(&p);
                continue;
            }
            const size_t ob = (size_t)p.no * (p.otype == MDFI_CONV_S16 ? 2 : 1);
            memset(p.o2, 0x5a, ob);
            if (run(&p, MDFI_CONV_PATH_SCALAR, p.o2) != MDFI_CONV_OK) bad = 1;
            for (int32_t k = -1; k < (nt > 0 ? nt : 0) && !bad; ++k)
                for (int32_t d = (k < 0 ? -1 : 0); d <= (k < 0 ? -1 : 1) && !bad; ++d) {
                    mdfi_conv_q8_override(k, d);
                    memset(p.o1, 0xa5, ob);
                    const int rc = run(&p, path, p.o1);
                    ++convs;
                    if (rc != MDFI_CONV_OK || memcmp(p.o1, p.o2, ob) != 0) {
                        printf("  %-15s MISMATCH (rc %d) case %ld: x type %d, w type %d, c %d h %d w %d m %d k %d "
                               "s %d p %d, bits %d, rounding %d, act %d, acc64 %d, threads %d, tile %d, direct %d, "
                               "pad value %d, zero out %d\n",
                               mdfi_conv_path_name(path), rc, ci, p.xtype, p.wtype, p.c, p.h, p.w, p.m, p.ks,
                               p.stride, p.pad, p.bits, p.rounding, p.act, p.acc64, p.threads, k, d, p.pad_value,
                               p.zero_out);
                        bad = 1;
                    }
                }
            mdfi_conv_q8_override(-1, -1);
            if (!bad && p.acc64 && p.xtype == MDFI_CONV_S16) {
                /* the split acc64 path (mdfi_conv.c), forced: automatic only takes it for
                 * the widest weights x activations; scalar8 has the scalar pair kernels,
                 * which never split */
                mdfi_conv_set_split(1);
                memset(p.o1, 0xa5, ob);
                const int64_t n0 = mdfi_conv_split_calls();
                const int rc = run(&p, path, p.o1);
                ++convs;
                if (rc != MDFI_CONV_OK || memcmp(p.o1, p.o2, ob) != 0 || mdfi_conv_split_calls() != n0 + (path != MDFI_CONV_PATH_SCALAR8)) {
                    printf("  %-15s MISMATCH on the split path (rc %d) case %ld: w type %d, c %d h %d w %d m %d "
                           "k %d s %d p %d, bits %d, threads %d, pad value %d\n",
                           mdfi_conv_path_name(path), rc, ci, p.wtype, p.c, p.h, p.w, p.m, p.ks, p.stride, p.pad,
                           p.bits, p.threads, p.pad_value);
                    bad = 1;
                }
                mdfi_conv_set_split(-1);
            }
            free_problem(&p);
        }
        if (!bad) {
            printf("  %-15s %ld convolutions identical to the scalar path", mdfi_conv_path_name(path), convs);
            if (nt > 0) {
                printf(" (8-bit tiles");
                for (int32_t i = 0; i < nt; ++i) printf(" %dx%d", tiles[3 * i], tiles[3 * i + 1] * tiles[3 * i + 2]);
                printf(", direct and packed)");
            }
            printf("\n");
            ++tested;
        }
    }
    mdfi_conv_shutdown();
    printf("conv_check: %s (%d SIMD path(s) tested)\n", bad ? "FAILED" : "ok", tested);
    return bad ? 1 : 0;
}
