/* mdfi_cpu.c -- see mdfi_cpu.h. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE 1               /* syscall() */
#endif
#include "mdfi_cpu.h"

#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define MDFI_CPU_X86 1
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#else
#define MDFI_CPU_X86 0
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

#if MDFI_CPU_X86
static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

/* Linux: ask for the AMX tile data state (arch/x86/include/uapi/asm/prctl.h). */
static int amx_permitted(void)
{
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_GET_XCOMP_PERM = 0x1022, ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    unsigned long bits = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bits) == 0 && (bits & (1ul << XFEATURE_XTILEDATA)))
        return 1;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
    bits = 0;
    return syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bits) == 0 && (bits & (1ul << XFEATURE_XTILEDATA));
#else
    return 0;
#endif
}

static uint32_t detect(void)
{
    unsigned a, b, c, d;
    uint32_t f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int osxsave = (c >> 27) & 1;
    if (!osxsave || __get_cpuid_max(0, NULL) < 7) return 0;
    const uint64_t xcr0 = xgetbv0();
    const int os_avx = (xcr0 & 0x6) == 0x6;
    const int os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
    const int os_amx = (xcr0 & 0x60000) == 0x60000;
    unsigned b7, c7, d7, a71 = 0, b71, c71, d71;
    __cpuid_count(7, 0, a, b7, c7, d7);
    const unsigned max7 = a;
    if (max7 >= 1) __cpuid_count(7, 1, a71, b71, c71, d71);
    const int avx2 = os_avx && ((b7 >> 5) & 1) && ((c >> 12) & 1) /* FMA */;
    if (avx2) f |= MDFI_CPU_AVX2;
    const int avx512 = avx2 && os_avx512 && ((b7 >> 16) & 1) /* F */ && ((b7 >> 17) & 1) /* DQ */ &&
                       ((b7 >> 30) & 1) /* BW */ && ((b7 >> 31) & 1) /* VL */;
    if (avx512) f |= MDFI_CPU_AVX512BW;
    if (avx512 && ((c7 >> 11) & 1)) f |= MDFI_CPU_AVX512VNNI;
    if (avx2 && ((a71 >> 4) & 1)) f |= MDFI_CPU_AVXVNNI;
    /* AMX: tiles and int8 (EDX 24, 25), OS state, and (Linux) the permission */
    if (avx512 && os_amx && ((d7 >> 24) & 1) && ((d7 >> 25) & 1) && amx_permitted()) f |= MDFI_CPU_AMX;
    return f;
}
#elif defined(__aarch64__)
static uint32_t detect(void)
{
    uint32_t f = MDFI_CPU_NEON;                  /* architectural on AArch64 */
#if defined(__linux__)
    const unsigned long hw = getauxval(AT_HWCAP);
    if (hw & HWCAP_ASIMDDP) f |= MDFI_CPU_NEONDOT;
#elif defined(__ARM_FEATURE_DOTPROD)
    f |= MDFI_CPU_NEONDOT;
#endif
    return f;
}
#else
static uint32_t detect(void) { return 0; }
#endif

#if !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
static _Atomic uint32_t cached;          /* detected flags | intel << 30 | 1u << 31, 0 = not yet */
static _Atomic uint32_t cached_l2;       /* L2 KB | 1u << 31, 0 = not yet                  */
#define LOAD() atomic_load(&cached)
#define STORE(v) atomic_store(&cached, (v))
#define LOAD_L2() atomic_load(&cached_l2)
#define STORE_L2(v) atomic_store(&cached_l2, (v))
#else
static volatile uint32_t cached, cached_l2;
#define LOAD() cached
#define STORE(v) (cached = (v))
#define LOAD_L2() cached_l2
#define STORE_L2(v) (cached_l2 = (v))
#endif

/* CPUID vendor "GenuineIntel" */
static uint32_t vendor_intel(void)
{
#if MDFI_CPU_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    return b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu;   /* "Genu" "ineI" "ntel" */
#else
    return 0;
#endif
}

static uint32_t load_cached(void)
{
    uint32_t v = LOAD();
    if (v == 0) {                        /* a race detects twice, with the same result */
        v = detect() | vendor_intel() << 30 | (1u << 31);
        STORE(v);
    }
    return v;
}

uint32_t mdfi_cpu_features(void)
{
    return load_cached() & ~(3u << 30);
}

int mdfi_cpu_is_intel(void)
{
    return (int)((load_cached() >> 30) & 1u);
}

/* CPUID leaf 4 (Intel's deterministic cache parameters): the level-2 data or unified cache */
static uint32_t detect_l2_kb(void)
{
#if MDFI_CPU_X86
    if (!vendor_intel() || __get_cpuid_max(0, NULL) < 4) return 0;
    for (unsigned i = 0; i < 16; ++i) {
        unsigned a, b, c, d;
        __cpuid_count(4, i, a, b, c, d);
        const unsigned type = a & 0x1f, level = (a >> 5) & 7;
        if (type == 0) break;
        if (level == 2 && (type == 1 || type == 3)) {
            const uint64_t bytes = (uint64_t)((b >> 22) + 1) * (((b >> 12) & 0x3ff) + 1) * ((b & 0xfff) + 1) *
                                   ((uint64_t)c + 1);
            return bytes / 1024 < (1u << 30) ? (uint32_t)(bytes / 1024) : 0;
        }
    }
#endif
    return 0;
}

int64_t mdfi_cpu_l2_bytes(void)
{
    uint32_t v = LOAD_L2();
    if (v == 0) {
        v = detect_l2_kb() | (1u << 31);
        STORE_L2(v);
    }
    return (int64_t)(v & ~(1u << 31)) * 1024;
}

const char *mdfi_cpu_describe(void)
{
    static const char *names[] = {"avx2", "avx512bw", "avx512vnni", "avxvnni", "amx", "neon", "neondot"};
    static char buf[96];
    static int done;
    if (!done) {                         /* same text from any thread that races here */
        char tmp[96] = "";
        const uint32_t f = mdfi_cpu_features();
        for (unsigned i = 0; i < sizeof names / sizeof names[0]; ++i)
            if (f & (1u << i)) {
                if (tmp[0]) strcat(tmp, " ");
                strcat(tmp, names[i]);
            }
        if (!tmp[0]) strcpy(tmp, "none");
        memcpy(buf, tmp, sizeof buf);
        done = 1;
    }
    return buf;
}
