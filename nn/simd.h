/*
** simd.h: NNI_SIMD_CLONES, AVX-512 and AVX2 clones of a loop beside the
** baseline one (autograd's AGK_SIMD_CLONES: kernels/simd_clones.h says
** when and why), and NNI_TARGET_FMA for a function run only where
** nni_have_fma() says the CPU can. Private.
*/
#ifndef NN_SIMD_H
#define NN_SIMD_H

#include "kernels/simd_clones.h"   /* autograd's: one definition for both libraries */

#define NNI_SIMD_CLONES AGK_SIMD_CLONES

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
