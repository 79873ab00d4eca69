/* mdfi_cpu.h -- what the CPU (and the operating system) lets MDFI's kernels use, detected at
 * run time.  No build needs -march: ISA-specific functions carry target attributes and are
 * reached only after these checks.
 *
 * x86-64 (gcc/clang): CPUID + XGETBV (the OS must save the registers: XCR0 bits 1-2 for
 *   AVX, 5-7 for AVX-512, 17-18 for AMX tiles); AMX additionally needs Linux to grant the
 *   tile data state, requested once with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)
 *   (a refusal leaves MDFI_CPU_AMX unset, and the AMX path falls back cleanly).
 * aarch64: Advanced SIMD is architectural; the dot-product extension (SDOT) is read from
 *   getauxval(AT_HWCAP) & HWCAP_ASIMDDP on Linux (elsewhere: only if the compiler targets it).
 * Other architectures: no flag is set (portable C only).
 */
#ifndef MDFI_CPU_H
#define MDFI_CPU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MDFI_CPU_AVX2 = 1u << 0,        /* AVX2 (+ OS YMM state)                                */
    MDFI_CPU_AVX512BW = 1u << 1,    /* AVX-512 F, BW, VL, DQ (+ OS ZMM/opmask state)       */
    MDFI_CPU_AVX512VNNI = 1u << 2,  /* AVX512_VNNI on top of MDFI_CPU_AVX512BW             */
    MDFI_CPU_AVXVNNI = 1u << 3,     /* AVX-VNNI (VEX-encoded vpdpbusd) on top of AVX2      */
    MDFI_CPU_AMX = 1u << 4,         /* AMX-TILE + AMX-INT8, OS state and Linux permission  */
    MDFI_CPU_NEON = 1u << 5,        /* aarch64 Advanced SIMD                               */
    MDFI_CPU_NEONDOT = 1u << 6      /* aarch64 dot product (SDOT/UDOT)                     */
};

/* The MDFI_CPU_* flags of this CPU (detected once, thread-safe). */
uint32_t mdfi_cpu_features(void);

/* 1 on an Intel CPU (CPUID vendor "GenuineIntel"), else 0: tuning choices only (which register
 * tile and B mode the 8-bit convolution prefers), never correctness. */
int mdfi_cpu_is_intel(void);

/* Bytes of one core's level-2 cache as CPUID leaf 4 reports it on Intel CPUs, else 0
 * (unknown): tuning only. */
int64_t mdfi_cpu_l2_bytes(void);

/* "avx2 avx512bw ..." for messages (static storage). */
const char *mdfi_cpu_describe(void);

#ifdef __cplusplus
}
#endif
#endif /* MDFI_CPU_H */
