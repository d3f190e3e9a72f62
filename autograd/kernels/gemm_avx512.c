/*
** gemm_avx512.c: the AVX-512 micro-kernels: an 8 x 32 f32 tile and an 8 x 16
** f64 tile, each held in up to 16 zmm registers, from the tile template
** shared with the Intel kernel (gemm_avx512_tile.inc, which also says how
** edges go). Eight rows divide the common batch and layer sizes. Only
** gemm.c's dispatcher calls these, after checking the CPU.
*/
#include "gemm_internal.h"

#if AGK_HAVE_X86
#ifdef AGK_AVX512_EMULATED
#include "gemm_avx512_emulated.h"
#else
#include <immintrin.h>
#endif

/* Tiles are MR rows; the last rows of an A read in place may go as one
** tile of up to MAX_ROWS (24 accumulators of the 32 registers), so 10
** rows (Nielsen's batch, the MLP's transposed 10-column products) make one
** pass over B instead of 8 + 2. */
enum { MR = 8, MAX_ROWS = 12 };

#ifndef AGK_AVX512_INLINE   /* the emulated build's is in gemm_avx512_emulated.h */
#define AGK_AVX512_INLINE AGK_TARGET_AVX512 static inline __attribute__((always_inline))
#endif

/* acc += b * (*src in every lane), the broadcast folded into the
** multiply-add as its memory operand ({1to16}): one instruction where a
** broadcast and the multiply-adds using it were two or three. With two
** vectors of B per row, GCC broadcasts into a register first; the folded
** form ran the 64^3 and 256^3 products 1-2% faster on Zen 4, and gives the
** same bits (x * b is b * x, rounded once). */
#ifdef AGK_AVX512_EMULATED
/* The same fused multiply-add, written as intrinsics (the test build). */
#define FMA_BCAST_PS(acc, b, src) ((acc) = _mm512_fmadd_ps(b, _mm512_set1_ps(*(src)), acc))
#define FMA_BCAST_PD(acc, b, src) ((acc) = _mm512_fmadd_pd(b, _mm512_set1_pd(*(src)), acc))
#else
#define FMA_BCAST_PS(acc, b, src) \
    __asm__("vfmadd231ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(src)))
#define FMA_BCAST_PD(acc, b, src) \
    __asm__("vfmadd231pd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(src)))
#endif

/* One k step of a row: both multiply-adds take A's value as a broadcast
** memory operand. */
#define STEP_PS(acc0, acc1, H, b0, b1, src)   \
    do {                                      \
        FMA_BCAST_PS(acc0, b0, src);          \
        if (H > 1)                            \
            FMA_BCAST_PS(acc1, b1, src);      \
    } while (0)
#define STEP_PD(acc0, acc1, H, b0, b1, src)   \
    do {                                      \
        FMA_BCAST_PD(acc0, b0, src);          \
        if (H > 1)                            \
            FMA_BCAST_PD(acc1, b1, src);      \
    } while (0)

#include "gemm_avx512_tile.inc"

/* Blocks, measured on Zen 4 (docs/PERFORMANCE.md): a long k block keeps C
** in registers longer; the A block (mc x kc) and a B panel (kc x nr) fit
** L2 together, and the B block (kc x nc) L2 or L3. */
const agk_kernel_f32 agk_kernel_f32_avx512 = {
    {MR, 32, 48, 1024, 1024}, MAX_ROWS, tile_f32, full_f32, true, agk_pack_t_f32_avx2,
    agk_store_t_f32_avx2, NULL, NULL,
};
const agk_kernel_f64 agk_kernel_f64_avx512 = {
    {MR, 16, 48, 512, 1024}, MAX_ROWS, tile_f64, full_f64, true, agk_pack_t_f64_avx2,
    agk_store_t_f64_avx2, NULL, NULL,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int agk_no_avx512;
#endif
