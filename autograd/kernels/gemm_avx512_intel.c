/*
** gemm_avx512_intel.c: AVX-512 micro-kernels for Intel cores with two
** 512-bit FMA ports (Skylake-SP to Sapphire Rapids): a 12 x 32 f32 tile and
** a 12 x 16 f64 tile in 24 zmm accumulators. Each row's value of A is
** broadcast into a register once and feeds both of the row's multiply-adds:
** 12 broadcasts and 2 loads of B per 24 FMAs. Zen 4's kernel folds the
** broadcast into each FMA as a memory operand (18 loads per 16 FMAs), and
** these cores issue about one zmm load per cycle, which held that kernel
** near one FMA per cycle of their two (issue 16, measured on Ice Lake-SP).
** The tile itself is Zen 4's (gemm_avx512_tile.inc), but for that step
** and its height. Not measured on an Intel core by the
** session that wrote it (none was at hand); its bits are tested on any
** x86-64 CPU through emulated intrinsics (gemm_avx512_emulated.h).
*/
#include "gemm_internal.h"

#if AGK_HAVE_X86
#ifdef AGK_AVX512_EMULATED
#include "gemm_avx512_emulated.h"
#else
#include <immintrin.h>
#endif

enum { MR = 12, MAX_ROWS = 12 };

#ifndef AGK_AVX512_INLINE   /* the emulated build's is in gemm_avx512_emulated.h */
#define AGK_AVX512_INLINE AGK_TARGET_AVX512 static inline __attribute__((always_inline))
#endif

/* Keeps a broadcast in its register: left alone, GCC folds a broadcast
** used by a multiply-add into it as a {1toN} memory operand, which is what
** this kernel is for avoiding. */
#ifdef AGK_AVX512_EMULATED
#define IN_REGISTER(x) ((void)(x))   /* no register to hold (the test build) */
#else
#define IN_REGISTER(x) __asm__("" : "+v"(x))
#endif

/* One k step of a row: A's value broadcast into a register, which both
** multiply-adds take. */
#define STEP_PS(acc0, acc1, H, b0, b1, src)          \
    do {                                             \
        __m512 x = _mm512_set1_ps(*(src));           \
        IN_REGISTER(x);                              \
        acc0 = _mm512_fmadd_ps(x, b0, acc0);         \
        if (H > 1)                                   \
            acc1 = _mm512_fmadd_ps(x, b1, acc1);     \
    } while (0)
#define STEP_PD(acc0, acc1, H, b0, b1, src)          \
    do {                                             \
        __m512d x = _mm512_set1_pd(*(src));          \
        IN_REGISTER(x);                              \
        acc0 = _mm512_fmadd_pd(x, b0, acc0);         \
        if (H > 1)                                   \
            acc1 = _mm512_fmadd_pd(x, b1, acc1);     \
    } while (0)

#include "gemm_avx512_tile.inc"

/* The blocks here are fallbacks: gemm.c derives them from the caches. */
const agk_kernel_f32 agk_kernel_f32_avx512_intel = {
    {MR, 32, 192, 256, 1024}, MR, tile_f32, full_f32, true, agk_pack_t_f32_avx2,
    agk_store_t_f32_avx2, NULL, NULL,
};
const agk_kernel_f64 agk_kernel_f64_avx512_intel = {
    {MR, 16, 192, 256, 1024}, MR, tile_f64, full_f64, true, agk_pack_t_f64_avx2,
    agk_store_t_f64_avx2, NULL, NULL,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int agk_no_avx512_intel;
#endif
