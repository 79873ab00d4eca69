/* ceiling.c -- the arithmetic ceiling of each multiply-accumulate instruction on this machine,
 * in GMAC/s (8-bit or 16-bit multiply-adds per second), with 1..N threads.
 *
 *   cc -O2 -pthread benchmarks/ceiling.c -o ceiling && ./ceiling [--threads 1,2] [--seconds 0.5]
 *      [--reps 5] [--only "vpdpbusd zmm"]   (--only: the instructions whose name contains it)
 *   (benchmarks/bench_ceiling.py compiles and runs it)
 *
 * Each measurement runs a loop of 12 independent accumulator chains of one instruction (enough
 * to cover its latency) on every thread at once and divides the work by the wall time.  Only
 * instructions the CPU (and OS) support are measured; the checks are MDFI's own
 * (csrc/mdfi_cpu.c, compiled in).  MACs per instruction:
 *   vpmaddwd ymm 16, zmm 32 (int16 pairs; counted with the vpaddd that accumulates them)
 *   vpdpbusd ymm 32, zmm 64 (u8 x s8 quads; EVEX, and the VEX AVX-VNNI encoding)
 *   tdpbusd 16384 (16 x 16 x 64 bytes)          vfmadd231ps ymm 8, zmm 16 (float, reference)
 *   aarch64: sdot 16, smlal 4 (int16), fmla 4 (float)
 */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../csrc/mdfi_cpu.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define R12(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
#define LOOP(NAME, BODY, CLOBBER)                                                                  \
    static void NAME(long it)                                                                      \
    {                                                                                              \
        __asm__ volatile("1:\n\t" R12(BODY) "dec %0\n\tjnz 1b" : "+r"(it) : : "memory" CLOBBER);  \
    }

#if defined(__x86_64__)
#define MADDY(i) "vpmaddwd %%ymm12, %%ymm13, %%ymm14\n\tvpaddd %%ymm14, %%ymm" #i ", %%ymm" #i "\n\t"
#define MADDZ(i) "vpmaddwd %%zmm12, %%zmm13, %%zmm14\n\tvpaddd %%zmm14, %%zmm" #i ", %%zmm" #i "\n\t"
#define DPY(i) "vpdpbusd %%ymm12, %%ymm13, %%ymm" #i "\n\t"
#define DPYVEX(i) "%{vex%} vpdpbusd %%ymm12, %%ymm13, %%ymm" #i "\n\t"
#define DPZ(i) "vpdpbusd %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define FMAY(i) "vfmadd231ps %%ymm12, %%ymm13, %%ymm" #i "\n\t"
#define FMAZ(i) "vfmadd231ps %%zmm12, %%zmm13, %%zmm" #i "\n\t"
#define CLOB , "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm14"
LOOP(k_maddy, MADDY, CLOB)
LOOP(k_maddz, MADDZ, CLOB)
LOOP(k_dpy, DPY, CLOB)
LOOP(k_dpyvex, DPYVEX, CLOB)
LOOP(k_dpz, DPZ, CLOB)
LOOP(k_fmay, FMAY, CLOB)
LOOP(k_fmaz, FMAZ, CLOB)

/* AMX: three C tiles accumulate from shared A/B tiles (tdpbusd latency is covered by 3 chains;
 * a tile op occupies the unit for 16 cycles) */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((aligned(64))) tilecfg;

static void k_amx(long it)
{
    static __thread tilecfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int i = 0; i < 8; ++i) { cfg.colsb[i] = 64; cfg.rows[i] = 16; }
    static __thread uint8_t buf[1024] __attribute__((aligned(64)));
    __asm__ volatile("ldtilecfg %0\n\t"
                     "tilezero %%tmm0\n\ttilezero %%tmm1\n\ttilezero %%tmm2\n\ttilezero %%tmm3\n\t"
                     "tileloadd (%1,%2,1), %%tmm4\n\ttileloadd (%1,%2,1), %%tmm5\n\t"
                     : : "m"(cfg), "r"(buf), "r"((long)64) : "memory");
    it *= 12;
    it /= 4;
    __asm__ volatile("1:\n\t"
                     "tdpbusd %%tmm5, %%tmm4, %%tmm0\n\ttdpbusd %%tmm5, %%tmm4, %%tmm1\n\t"
                     "tdpbusd %%tmm5, %%tmm4, %%tmm2\n\ttdpbusd %%tmm5, %%tmm4, %%tmm3\n\t"
                     "dec %0\n\tjnz 1b\n\t"
                     "tilerelease" : "+r"(it) : : "memory");
}
#elif defined(__aarch64__)
#define SDOT(i) "sdot v" #i ".4s, v24.16b, v25.16b\n\t"
#define SMLAL(i) "smlal v" #i ".4s, v24.4h, v25.4h\n\t"
#define FMLA(i) "fmla v" #i ".4s, v24.4s, v25.4s\n\t"
#define CLOB , "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11"
#define LOOPA(NAME, BODY, ATTR)                                                                    \
    ATTR static void NAME(long it)                                                                 \
    {                                                                                              \
        __asm__ volatile("1:\n\t" R12(BODY) "subs %0, %0, #1\n\tb.ne 1b" : "+r"(it) : : "memory", "cc" CLOB); \
    }
LOOPA(k_sdot, SDOT, __attribute__((target("arch=armv8.2-a+dotprod"))))
LOOPA(k_smlal, SMLAL, )
LOOPA(k_fmla, FMLA, )
#endif

typedef struct {
    const char *name;
    uint32_t need;
    double macs;               /* per instruction */
    void (*fn)(long);
    double per_iter;           /* instructions per loop iteration */
} instr;

static const instr INSTRS[] = {
#if defined(__x86_64__)
    {"vpmaddwd ymm (int16, AVX2)", MDFI_CPU_AVX2, 16, k_maddy, 12},
    {"vpmaddwd zmm (int16, AVX-512BW)", MDFI_CPU_AVX512BW, 32, k_maddz, 12},
    {"vpdpbusd ymm (8-bit, AVX-VNNI VEX)", MDFI_CPU_AVXVNNI, 32, k_dpyvex, 12},
    {"vpdpbusd ymm (8-bit, AVX512-VNNI)", MDFI_CPU_AVX512VNNI, 32, k_dpy, 12},
    {"vpdpbusd zmm (8-bit, AVX512-VNNI)", MDFI_CPU_AVX512VNNI, 64, k_dpz, 12},
    {"tdpbusd (8-bit, AMX)", MDFI_CPU_AMX, 16384, k_amx, 12},
    {"vfmadd231ps ymm (float, FMA)", MDFI_CPU_AVX2, 8, k_fmay, 12},
    {"vfmadd231ps zmm (float, AVX-512)", MDFI_CPU_AVX512BW, 16, k_fmaz, 12},
#elif defined(__aarch64__)
    {"sdot (8-bit, dot product)", MDFI_CPU_NEONDOT, 16, k_sdot, 12},
    {"smlal (int16 -> int32)", MDFI_CPU_NEON, 4, k_smlal, 12},
    {"fmla (float)", MDFI_CPU_NEON, 4, k_fmla, 12},
#endif
};

typedef struct {
    void (*fn)(long);
    long it;
    pthread_barrier_t *bar;
    double cpu;                /* this thread's CPU seconds */
} job;

static double cputime(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *runner(void *arg)
{
    job *j = (job *)arg;
    pthread_barrier_wait(j->bar);
    const double c0 = cputime();
    j->fn(j->it);
    j->cpu = cputime() - c0;
    return NULL;
}

/* GMAC/s of `in` on n threads, `it` loop iterations per thread: by wall time, and the sum over
 * threads of work / thread CPU time in *cpu_rate (equal on a quiet machine; the CPU-time rate
 * is what each core achieves while it runs, whatever else shares the machine) */
static double measure(const instr *in, int n, long it, double *cpu_rate)
{
    pthread_t th[64];
    job jobs[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; ++i) {
        jobs[i] = (job){in->fn, it, &bar, 0.0};
        pthread_create(&th[i], NULL, runner, &jobs[i]);
    }
    pthread_barrier_wait(&bar);
    const double t0 = now();
    for (int i = 0; i < n; ++i) pthread_join(th[i], NULL);
    const double dt = now() - t0;
    pthread_barrier_destroy(&bar);
    const double work = (double)it * in->per_iter * in->macs / 1e9;
    *cpu_rate = 0.0;
    for (int i = 0; i < n; ++i) *cpu_rate += work / (jobs[i].cpu > 1e-9 ? jobs[i].cpu : 1e-9);
    return (double)n * work / dt;
}

int main(int argc, char **argv)
{
    char threads[64] = "1,2";
    double seconds = 0.5;
    int reps = 5;
    const char *only = NULL;   /* measure only the instructions whose name contains this */
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) snprintf(threads, sizeof threads, "%s", argv[++i]);
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads 1,2] [--seconds S] [--reps N] [--only NAME]\n", argv[0]);
            return 2;
        }
    }
    const uint32_t f = mdfi_cpu_features();
    printf("# CPU features: %s; best of %d runs of ~%.2f s each\n", mdfi_cpu_describe(), reps, seconds);
    printf("%-36s", "instruction");
    int tn[16], nt = 0;
    for (char *p = strtok(threads, ","); p && nt < 16; p = strtok(NULL, ",")) tn[nt++] = atoi(p);
    for (int k = 0; k < nt; ++k) printf(" %4d thr. (cpu)", tn[k]);
    printf("   GMAC/s by wall time (by thread CPU time)\n");
    for (size_t i = 0; i < sizeof INSTRS / sizeof INSTRS[0]; ++i) {
        const instr *in = &INSTRS[i];
        if (only && !strstr(in->name, only)) continue;
        if ((f & in->need) != in->need) {
            printf("%-36s   not supported here\n", in->name);
            continue;
        }
        /* calibrate the iteration count to ~seconds on one thread */
        long it = 1000;
        for (;;) {
            const double t0 = now();
            in->fn(it);
            if (now() - t0 > 0.05) break;
            it *= 4;
        }
        const double t0 = now();
        in->fn(it);
        const double dt = now() - t0;
        it = (long)((double)it * seconds / (dt > 1e-6 ? dt : 1e-6)) + 1;
        printf("%-36s", in->name);
        for (int k = 0; k < nt; ++k) {
            double best = 0.0, best_cpu = 0.0;
            for (int r = 0; r < reps; ++r) {
                double c;
                const double g = measure(in, tn[k] < 64 ? tn[k] : 64, it, &c);
                if (g > best) best = g;
                if (c > best_cpu) best_cpu = c;
            }
            printf(" %7.1f (%5.0f)", best, best_cpu);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}
