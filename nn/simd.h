/*
** simd.h: NNI_SIMD_CLONES, AVX-512 and AVX2 clones of a loop beside the
** baseline one, picked by the loader (GCC's target_clones through an ifunc)
** where the toolchain has them, so the build never assumes more than
** x86-64. The library is ISO C (no FMA contraction), so all clones give the
** same bits.
** Not under ThreadSanitizer: an ifunc resolver in a shared library runs
** before TSan's runtime is up, and the process dies at load. Private.
*/
#ifndef NN_SIMD_H
#define NN_SIMD_H

#include <stdint.h>   /* and with it <features.h>: __GLIBC__ */

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__linux__) && defined(__GLIBC__) && !defined(__SANITIZE_THREAD__)
#define NNI_SIMD_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NNI_SIMD_CLONES
#endif

/* A function built for AVX2 with FMA, called only where nni_have_fma()
** says the CPU has them. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NNI_HAVE_X86 1
#define NNI_TARGET_FMA __attribute__((target("avx2,fma")))
static inline int nni_have_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
#define NNI_HAVE_X86 0
static inline int nni_have_fma(void) { return 0; }
#endif

#endif
