/*
** gemm_avx512.c: the AVX-512 micro-kernels: an 8 x 32 f32 tile and an 8 x 16
** f64 tile, each held in up to 16 zmm registers. Eight rows divide the
** common batch and layer sizes. A tile cut by the edge of C runs a copy of
** the loop for just its rows and column vectors, and masks its loads of B
** and its loads and stores of C, so edges cost what they compute and read
** operands in place. Only gemm.c's dispatcher
** calls these, after checking the CPU.
*/
#include "gemm_internal.h"

#if AGK_HAVE_X86
#include <immintrin.h>

/* Tiles are MR rows; the last rows of an A read in place may go as one
** tile of up to MAX_ROWS (24 accumulators of the 32 registers), so 10
** rows (Nielsen's batch, the MLP's transposed 10-column products) make one
** pass over B instead of 8 + 2. */
enum { MR = 8, MAX_ROWS = 12 };

#define AGK_AVX512_INLINE AGK_TARGET_AVX512 static inline __attribute__((always_inline))

/* acc += b * (*src in every lane), the broadcast folded into the
** multiply-add as its memory operand ({1to16}): one instruction where a
** broadcast and the multiply-adds using it were two or three. With two
** vectors of B per row, GCC broadcasts into a register first; the folded
** form ran the 64^3 and 256^3 products 1-2% faster on Zen 4, and gives the
** same bits (x * b is b * x, rounded once). */
#define FMA_BCAST_PS(acc, b, src) \
    __asm__("vfmadd231ps %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(src)))
#define FMA_BCAST_PD(acc, b, src) \
    __asm__("vfmadd231pd %2%{1to8%}, %1, %0" : "+v"(acc) : "v"(b), "m"(*(src)))


/* R rows and H vectors of 16 columns, all in use when FULL (no masks);
** constants at each call, so the loops unroll and the accumulators stay in
** registers. */
AGK_AVX512_INLINE void rows_f32(const int R, const int H, const bool FULL, int64_t kc,
                                const float *restrict a,
                                int64_t ars, int64_t acs, const float *restrict b, int64_t brs,
                                float *restrict c, int64_t ldc, agk_c_mode mode,
                                const __mmask16 *mask)
{
    __m512 acc[MAX_ROWS][2];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++)
    {
        /* No loop over h: GCC then kept the accumulators in memory. */
        const float *ci = c + i * ldc;
        bool cont = mode == AGK_C_CONTINUE;
        acc[i][0] = !cont ? _mm512_setzero_ps()
                    : FULL ? _mm512_loadu_ps(ci) : _mm512_maskz_loadu_ps(mask[0], ci);
        acc[i][1] = H < 2 || !cont ? _mm512_setzero_ps()
                    : FULL ? _mm512_loadu_ps(ci + 16) : _mm512_maskz_loadu_ps(mask[1], ci + 16);
    }
    if (ars == 1) {
        for (int64_t p = 0; p < kc; p++, a += acs, b += brs) {
            __m512 b0 = FULL ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(mask[0], b);
            __m512 b1 = H < 2 ? b0
                         : FULL ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(mask[1], b + 16);
            KEEP_IN_REGISTERS(b0, b1);
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                FMA_BCAST_PS(acc[i][0], b0, &a[i]);
                if (H > 1)
                    FMA_BCAST_PS(acc[i][1], b1, &a[i]);
            }
        }
    } else {
        for (int64_t p = 0; p < kc; p++, b += brs) {
            __m512 b0 = FULL ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(mask[0], b);
            __m512 b1 = H < 2 ? b0
                         : FULL ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(mask[1], b + 16);
            KEEP_IN_REGISTERS(b0, b1);
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                FMA_BCAST_PS(acc[i][0], b0, &a[i * ars + p]);
                if (H > 1)
                    FMA_BCAST_PS(acc[i][1], b1, &a[i * ars + p]);
            }
        }
    }
    /* With AGK_C_ADD, all of the tile's C is read before any of it is written:
    ** rows of C that are not whole vectors overlap, so a row's masked store
    ** covers the start of the next row, whose load would then wait for the
    ** store to retire (masked stores do not forward). */
    if (mode == AGK_C_ADD) {
#pragma GCC unroll 12
        for (int i = 0; i < R; i++)
            for (int h = 0; h < H; h++) {
                const float *ci = c + i * ldc + 16 * h;
                __m512 old = FULL ? _mm512_loadu_ps(ci) : _mm512_maskz_loadu_ps(mask[h], ci);
                acc[i][h] = _mm512_add_ps(old, acc[i][h]);
            }
    }
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {
        for (int h = 0; h < H; h++) {
            float *ci = c + i * ldc + 16 * h;
            if (FULL)
                _mm512_storeu_ps(ci, acc[i][h]);
            else
                _mm512_mask_storeu_ps(ci, mask[h], acc[i][h]);
        }
    }
}

/* One call of rows_f32 for R rows, for each R up to MAX_ROWS. */
#define ROWS_CASES(fn, H, FULL, mask)                                                   \
    switch (rows) {                                                                  \
    case 1: fn(1, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 2: fn(2, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 3: fn(3, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 4: fn(4, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 5: fn(5, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 6: fn(6, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 7: fn(7, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 8: fn(8, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 9: fn(9, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;        \
    case 10: fn(10, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 11: fn(11, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    default: fn(12, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    }

AGK_TARGET_AVX512 static void tile_f32(int64_t kc, const float *a, int64_t ars, int64_t acs,
                                       const float *b, int64_t brs, float *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    /* Whole tiles, the common case, without masks: a mask register
    ** reloaded in the loop costs a few percent. */
    if (rows == MR && cols == 32) {
        rows_f32(MR, 2, true, kc, a, ars, acs, b, brs, c, ldc, mode, NULL);
        return;
    }
    if (cols == 32 && rows > MR) {
        ROWS_CASES(rows_f32, 2, true, NULL)
        return;
    }
    __mmask16 mask[2] = {
        (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1),
        (__mmask16)(cols >= 32 ? 0xFFFF : cols > 16 ? (1u << (cols - 16)) - 1 : 0),
    };
    if (cols > 16)
        ROWS_CASES(rows_f32, 2, false, mask)
    else
        ROWS_CASES(rows_f32, 1, false, mask)
}

/* A whole tile, the common case, in a function of its own: the general
** one's prologue, sized for all its cases, cost small products a few
** percent. */
AGK_TARGET_AVX512 static void full_f32(int64_t kc, const float *a, int64_t ars, int64_t acs,
                                       const float *b, int64_t brs, float *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    (void)rows, (void)cols;
    rows_f32(MR, 2, true, kc, a, ars, acs, b, brs, c, ldc, mode, NULL);
}

/* The f64 twin: H vectors of 8 columns. */
AGK_AVX512_INLINE void rows_f64(const int R, const int H, const bool FULL, int64_t kc,
                                const double *restrict a,
                                int64_t ars, int64_t acs, const double *restrict b, int64_t brs,
                                double *restrict c, int64_t ldc, agk_c_mode mode,
                                const __mmask8 *mask)
{
    __m512d acc[MAX_ROWS][2];
#pragma GCC unroll 12
    for (int i = 0; i < R; i++)
    {
        /* No loop over h: GCC then kept the accumulators in memory. */
        const double *ci = c + i * ldc;
        bool cont = mode == AGK_C_CONTINUE;
        acc[i][0] = !cont ? _mm512_setzero_pd()
                    : FULL ? _mm512_loadu_pd(ci) : _mm512_maskz_loadu_pd(mask[0], ci);
        acc[i][1] = H < 2 || !cont ? _mm512_setzero_pd()
                    : FULL ? _mm512_loadu_pd(ci + 8) : _mm512_maskz_loadu_pd(mask[1], ci + 8);
    }
    if (ars == 1) {
        for (int64_t p = 0; p < kc; p++, a += acs, b += brs) {
            __m512d b0 = FULL ? _mm512_loadu_pd(b) : _mm512_maskz_loadu_pd(mask[0], b);
            __m512d b1 = H < 2 ? b0
                         : FULL ? _mm512_loadu_pd(b + 8) : _mm512_maskz_loadu_pd(mask[1], b + 8);
            KEEP_IN_REGISTERS(b0, b1);
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                FMA_BCAST_PD(acc[i][0], b0, &a[i]);
                if (H > 1)
                    FMA_BCAST_PD(acc[i][1], b1, &a[i]);
            }
        }
    } else {
        for (int64_t p = 0; p < kc; p++, b += brs) {
            __m512d b0 = FULL ? _mm512_loadu_pd(b) : _mm512_maskz_loadu_pd(mask[0], b);
            __m512d b1 = H < 2 ? b0
                         : FULL ? _mm512_loadu_pd(b + 8) : _mm512_maskz_loadu_pd(mask[1], b + 8);
            KEEP_IN_REGISTERS(b0, b1);
#pragma GCC unroll 12
            for (int i = 0; i < R; i++) {
                FMA_BCAST_PD(acc[i][0], b0, &a[i * ars + p]);
                if (H > 1)
                    FMA_BCAST_PD(acc[i][1], b1, &a[i * ars + p]);
            }
        }
    }
    /* With AGK_C_ADD, all of the tile's C is read before any of it is written:
    ** rows of C that are not whole vectors overlap, so a row's masked store
    ** covers the start of the next row, whose load would then wait for the
    ** store to retire (masked stores do not forward). */
    if (mode == AGK_C_ADD) {
#pragma GCC unroll 12
        for (int i = 0; i < R; i++)
            for (int h = 0; h < H; h++) {
                const double *ci = c + i * ldc + 8 * h;
                __m512d old = FULL ? _mm512_loadu_pd(ci) : _mm512_maskz_loadu_pd(mask[h], ci);
                acc[i][h] = _mm512_add_pd(old, acc[i][h]);
            }
    }
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {
        for (int h = 0; h < H; h++) {
            double *ci = c + i * ldc + 8 * h;
            if (FULL)
                _mm512_storeu_pd(ci, acc[i][h]);
            else
                _mm512_mask_storeu_pd(ci, mask[h], acc[i][h]);
        }
    }
}

AGK_TARGET_AVX512 static void tile_f64(int64_t kc, const double *a, int64_t ars, int64_t acs,
                                       const double *b, int64_t brs, double *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    if (rows == MR && cols == 16) {
        rows_f64(MR, 2, true, kc, a, ars, acs, b, brs, c, ldc, mode, NULL);
        return;
    }
    if (cols == 16 && rows > MR) {
        ROWS_CASES(rows_f64, 2, true, NULL)
        return;
    }
    __mmask8 mask[2] = {
        (__mmask8)(cols >= 8 ? 0xFF : (1u << cols) - 1),
        (__mmask8)(cols >= 16 ? 0xFF : cols > 8 ? (1u << (cols - 8)) - 1 : 0),
    };
    if (cols > 8)
        ROWS_CASES(rows_f64, 2, false, mask)
    else
        ROWS_CASES(rows_f64, 1, false, mask)
}

AGK_TARGET_AVX512 static void full_f64(int64_t kc, const double *a, int64_t ars, int64_t acs,
                                       const double *b, int64_t brs, double *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    (void)rows, (void)cols;
    rows_f64(MR, 2, true, kc, a, ars, acs, b, brs, c, ldc, mode, NULL);
}

/* Blocks, measured on Zen 4 (docs/PERFORMANCE.md): a long k block keeps C
** in registers longer; the A block (mc x kc) and a B panel (kc x nr) fit
** L2 together, and the B block (kc x nc) L2 or L3. */
const agk_kernel_f32 agk_kernel_f32_avx512 = {
    {MR, 32, 48, 1024, 1024}, MAX_ROWS, tile_f32, full_f32, true, agk_pack_t_f32_avx2,
    agk_store_t_f32_avx2,
};
const agk_kernel_f64 agk_kernel_f64_avx512 = {
    {MR, 16, 48, 512, 1024}, MAX_ROWS, tile_f64, full_f64, true, agk_pack_t_f64_avx2,
    agk_store_t_f64_avx2,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int agk_no_avx512;
#endif
