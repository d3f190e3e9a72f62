/*
** simd_clones.h: AGK_SIMD_CLONES, shared by autograd's kernels and nn's
** loops (nn/simd.h). Private: never installed.
*/
#ifndef AG_SIMD_CLONES_H
#define AG_SIMD_CLONES_H

#include <stdint.h>   /* and with it <features.h>: __GLIBC__ */

/* AVX-512 and AVX2 clones of a function beside the baseline one, picked
** when the library loads (GCC's target_clones, through an ifunc), for loops
** whose formula vectorises: the build itself never assumes more than
** x86-64. Without FMA contraction (ISO C: -ffp-contract=off) all clones
** give the same bits. Not under ThreadSanitizer: an ifunc resolver in a shared
** library runs before TSan's runtime is up, and the process dies at load. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12 && defined(__x86_64__) && \
    defined(__linux__) && defined(__GLIBC__) && !defined(__SANITIZE_THREAD__)
#define AGK_SIMD_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AGK_SIMD_CLONES
#endif

#endif
