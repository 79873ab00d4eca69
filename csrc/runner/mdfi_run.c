/* mdfi_run.c -- the standalone MDFI golden-model runner.
 *
 *   mdfi_run MODEL_DIR OUT_DIR [--input FILE] [--threads N] [--layers LIST]
 *            [--time] [--repeat N]
 *
 * Reads MODEL_DIR/model.txt and the parameter .hex files it names (all exported by
 * `mdfi golden`, format: docs/golden-format.md), the network input (default
 * MODEL_DIR/input.hex: uint8 pixels, [3][H][W], one value per line), runs every layer with
 * the csrc kernels and writes OUT_DIR/lNNN.out.hex for every layer (or those in LIST, e.g.
 * "0,5-7,15"), byte-identical to the golden lNNN.out.hex files.
 *
 * --threads N   convolution threads (default 1; results never depend on it)
 * --time        print each layer's and the total kernel time in ms (stdout)
 * --repeat N    run N times (outputs written once), --time reports medians
 * MDFI_SIMD=auto|scalar|avx2|avx512bw|avxvnni|avx512vnni|amx|neon|neondot (environment) selects
 * the convolution code path (default: the best this CPU runs; see mdfi_conv.h).
 *
 * Exit status: 0 on success, 2 on any error, after one line "mdfi_run: FILE:LINE: message"
 * on stderr.  Depends on libc, libm and POSIX threads only.
 */
#define _POSIX_C_SOURCE 200809L   /* mkdir, stat */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../mdfi_conv.h"
#include "mdfi_exec.h"
#include "mdfi_hexio.h"
#include "mdfi_model.h"
#include "mdfi_rt_util.h"

#define MAX_THREADS 256
#define MAX_REPEAT 100000

static const char USAGE[] =
    "usage: mdfi_run MODEL_DIR OUT_DIR [--input FILE] [--threads N] [--layers LIST] [--time] [--repeat N]\n"
    "\n"
    "Runs an MDFI model exported by `mdfi golden` and writes OUT_DIR/lNNN.out.hex per layer\n"
    "(byte-identical to the golden files).\n"
    "  --input FILE   network input, uint8 (C,H,W) .hex (default MODEL_DIR/input.hex)\n"
    "  --threads N    convolution threads (default 1)\n"
    "  --layers LIST  write only these layers, e.g. 0,5-7,15 (runs what they need)\n"
    "  --time         print per-layer and total kernel time in ms\n"
    "  --repeat N     run N times (outputs written once); --time prints medians\n"
    "Environment: MDFI_SIMD=auto|scalar|avx2|avx512bw|avxvnni|avx512vnni|amx|neon|neondot selects the\n"
    "convolution code path (default: the best this CPU runs).\n";

/* Command-line options. */
typedef struct {
    const char *model_dir, *out_dir, *input, *layers;
    int32_t threads, repeat, time;
} options;

static int parse_count(const char *opt, const char *v, int64_t lo, int64_t hi, int32_t *out, mdfi_err *err)
{
    int64_t x;
    if (v == NULL || mdfi_parse_int(v, lo, hi, &x))
        return mdfi_fail(err, NULL, 0, "%s: expected an integer in [%lld, %lld]", opt, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return 0;
}

/* 0: run, 1: help printed, -1: error. */
static int parse_args(int argc, char **argv, options *o, mdfi_err *err)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->repeat = 1;
    int npos = 0;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) return 1;
        if (strncmp(a, "--", 2) == 0) {
            const char *eq = strchr(a, '=');
            char name[32];
            const size_t nl = eq ? (size_t)(eq - a) : strlen(a);
            if (nl >= sizeof name) return mdfi_fail(err, NULL, 0, "unknown option %.40s (see --help)", a);
            memcpy(name, a, nl);
            name[nl] = '\0';
            if (strcmp(name, "--time") == 0) {
                if (eq) return mdfi_fail(err, NULL, 0, "--time takes no value");
                o->time = 1;
                continue;
            }
            const int known = strcmp(name, "--input") == 0 || strcmp(name, "--threads") == 0 ||
                              strcmp(name, "--layers") == 0 || strcmp(name, "--repeat") == 0;
            if (!known) return mdfi_fail(err, NULL, 0, "unknown option %.40s (see --help)", a);
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (v == NULL) return mdfi_fail(err, NULL, 0, "%s needs a value", name);
            if (strcmp(name, "--input") == 0) o->input = v;
            else if (strcmp(name, "--layers") == 0) o->layers = v;
            else if (strcmp(name, "--threads") == 0) {
                if (parse_count(name, v, 1, MAX_THREADS, &o->threads, err)) return -1;
            } else if (parse_count(name, v, 1, MAX_REPEAT, &o->repeat, err)) {
                return -1;
            }
        } else if (npos == 0) {
            o->model_dir = a;
            npos++;
        } else if (npos == 1) {
            o->out_dir = a;
            npos++;
        } else {
            return mdfi_fail(err, NULL, 0, "unexpected argument %.200s (see --help)", a);
        }
    }
    if (npos != 2) return mdfi_fail(err, NULL, 0, "expected MODEL_DIR and OUT_DIR (see --help)");
    return 0;
}

/* "0,5-7,15" -> sel[nlayers] flags (docs: mdfi.hw.golden.parse_layers). */
static int parse_layers(const char *spec, int32_t n, uint8_t *sel, mdfi_err *err)
{
    memset(sel, 0, (size_t)n);
    const char *p = spec;
    int any = 0;
    while (*p) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[48], *dash;
        if (len >= sizeof item) return mdfi_fail(err, NULL, 0, "--layers: item too long");
        size_t a0 = 0, a1 = len;                           /* strip blanks, like Python */
        while (a0 < a1 && (p[a0] == ' ' || p[a0] == '\t')) ++a0;
        while (a1 > a0 && (p[a1 - 1] == ' ' || p[a1 - 1] == '\t')) --a1;
        memcpy(item, p + a0, a1 - a0);
        item[a1 - a0] = '\0';
        p += len + (end ? 1 : 0);
        if (a1 == a0) continue;
        int64_t a, b;
        dash = strchr(item, '-');
        if (dash) *dash = '\0';
        if (mdfi_parse_int(item, 0, INT32_MAX, &a) || (dash && mdfi_parse_int(dash + 1, 0, INT32_MAX, &b)) ||
            item[0] == '+' || item[0] == '-' || (dash && (dash[1] == '+' || dash[1] == '-'))) {
            if (dash) *dash = '-';
            return mdfi_fail(err, NULL, 0, "--layers: '%s' is not an index or a range like 5-7", item);
        }
        if (!dash) b = a;
        if (a > b || b >= n) {
            if (dash) *dash = '-';
            return mdfi_fail(err, NULL, 0, "--layers: '%s' is outside the model's layers 0..%d", item, (int)n - 1);
        }
        for (int64_t i = a; i <= b; ++i) sel[i] = 1;
        any = 1;
    }
    if (!any) memset(sel, 1, (size_t)n);     /* empty list: every layer (like mdfi golden) */
    return 0;
}

static int ensure_dir(const char *dir, mdfi_err *err)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) return mdfi_fail(err, dir, 0, "exists and is not a directory");
        return 0;
    }
    if (mkdir(dir, 0777) != 0) return mdfi_fail(err, dir, 0, "cannot create the output folder: %s", strerror(errno));
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1] (reorders v). */
static double median(double *v, int32_t n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Print the timing table: t = [repeat][nlayers] layer times. */
static void print_times(const mdfi_model *m, const mdfi_plan *plan, const double *t, int32_t repeat)
{
    double *col = malloc(sizeof *col * (size_t)repeat);  /* one layer's times over the runs */
    if (col == NULL) return;
    printf("# %d layers, %d thread(s), convolution path %s, %s of %d run(s)\n", (int)m->nlayers,
           (int)plan->nthreads, mdfi_conv_path_name(plan->path), repeat > 1 ? "median" : "time", (int)repeat);
    for (int32_t i = 0; i < m->nlayers; ++i) {
        if (!plan->needed[i]) continue;
        for (int32_t r = 0; r < repeat; ++r) col[r] = t[(size_t)r * (size_t)m->nlayers + (size_t)i];
        printf("layer %4d %-9s %10.3f ms\n", (int)i, mdfi_kind_name(m->layers[i].kind), median(col, repeat));
    }
    for (int32_t r = 0; r < repeat; ++r) {
        double s = 0.0;
        for (int32_t i = 0; i < m->nlayers; ++i) s += t[(size_t)r * (size_t)m->nlayers + (size_t)i];
        col[r] = s;
    }
    printf("total                %10.3f ms\n", median(col, repeat));
    free(col);
}

int main(int argc, char **argv)
{
    mdfi_err err;
    options o;
    mdfi_model model;
    mdfi_plan plan;
    uint8_t *input = NULL;     /* [C][H][W] uint8 network input pixels */
    uint8_t *sel = NULL;       /* [nlayers] 1 = write this layer's output */
    double *times = NULL;      /* [repeat][nlayers] kernel times in ms */
    int status = 2;
    memset(&model, 0, sizeof model);
    memset(&plan, 0, sizeof plan);
    err.msg[0] = '\0';

    const int pa = parse_args(argc, argv, &o, &err);
    if (pa == 1) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (pa != 0) goto done;
    if (mdfi_model_load(&model, o.model_dir, 1, &err)) goto done;
    sel = mdfi_alloc(model.nlayers, 1);
    if (sel == NULL) {
        mdfi_fail(&err, NULL, 0, "out of memory");
        goto done;
    }
    if (parse_layers(o.layers ? o.layers : "", model.nlayers, sel, &err)) goto done;

    char in_path[MDFI_PATH_LEN];
    if (o.input) {
        if (strlen(o.input) >= sizeof in_path) {
            mdfi_fail(&err, NULL, 0, "--input: path too long");
            goto done;
        }
        strcpy(in_path, o.input);
    } else if (mdfi_join_path(in_path, o.model_dir, "input.hex", &err)) {
        goto done;
    }
    const int64_t nin = mdfi_tensor_elems(&model.input);
    input = mdfi_alloc(nin, 1);
    if (input == NULL) {
        mdfi_fail(&err, NULL, 0, "out of memory");
        goto done;
    }
    if (mdfi_hex_read(in_path, nin, 8, 0, input, MDFI_ELEM_U8, &err)) goto done;
    if (ensure_dir(o.out_dir, &err)) goto done;
    if (mdfi_plan_init(&plan, &model, sel, o.threads, mdfi_conv_effective_path(mdfi_conv_env_path()), &err))
        goto done;
    if (o.time) {
        times = mdfi_alloc((int64_t)o.repeat * model.nlayers, sizeof *times);
        if (times == NULL) {
            mdfi_fail(&err, NULL, 0, "out of memory");
            goto done;
        }
    }
    for (int32_t r = 0; r < o.repeat; ++r)
        if (mdfi_plan_run(&plan, input, sel, r == 0 ? o.out_dir : NULL,
                          times ? times + (size_t)r * (size_t)model.nlayers : NULL, &err))
            goto done;
    if (o.time) print_times(&model, &plan, times, o.repeat);
    status = 0;

done:
    if (status != 0) fprintf(stderr, "mdfi_run: %s\n", err.msg[0] ? err.msg : "failed");
    free(times);
    mdfi_plan_free(&plan);
    free(input);
    free(sel);
    mdfi_model_free(&model);
    mdfi_conv_shutdown();                     /* join the worker threads: a clean exit */
    return status;
}
