/*
** gemm_avx512_intel.c: AVX-512 micro-kernels for Intel cores with two
** 512-bit FMA ports (Skylake-SP to Sapphire Rapids): a 12 x 32 f32 tile and
** a 12 x 16 f64 tile in 24 zmm accumulators. Each row's value of A is
** broadcast into a register once and feeds both of the row's multiply-adds:
** 12 broadcasts and 2 loads of B per 24 FMAs. Zen 4's kernel folds the
** broadcast into each FMA as a memory operand (18 loads per 16 FMAs), and
** these cores issue about one zmm load per cycle, which held that kernel
** near one FMA per cycle of their two (issue 16, measured on Ice Lake-SP).
** Edges mask as Zen 4's kernel does. Not measured on an Intel core by the
** session that wrote it (none was at hand): the tests run it only where the
** CPU has AVX-512.
*/
#include "gemm_internal.h"

#if AGK_HAVE_X86
#include <immintrin.h>

enum { MR = 12 };

#define AGK_AVX512_INLINE AGK_TARGET_AVX512 static inline __attribute__((always_inline))

/* Keeps a broadcast in its register: left alone, GCC folds a broadcast
** used by a multiply-add into it as a {1toN} memory operand, which is what
** this kernel is for avoiding. */
#define IN_REGISTER(x) __asm__("" : "+v"(x))

/* R rows and H vectors of 16 floats, all lanes in use when FULL. */
AGK_AVX512_INLINE void rows_f32(const int R, const int H, const bool FULL, int64_t kc,
                                const float *restrict a, int64_t ars, int64_t acs,
                                const float *restrict b, int64_t brs, float *restrict c,
                                int64_t ldc, agk_c_mode mode, const __mmask16 *mask)
{
    __m512 acc[MR][2];
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
    for (int64_t p = 0; p < kc; p++, b += brs) {
        __m512 b0 = FULL ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(mask[0], b);
        __m512 b1 = H < 2 ? b0
                     : FULL ? _mm512_loadu_ps(b + 16) : _mm512_maskz_loadu_ps(mask[1], b + 16);
        KEEP_IN_REGISTERS(b0, b1);
        const float *ap = ars == 1 ? a + p * acs : a + p;
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512 x = _mm512_set1_ps(ap[i * ars]);
            IN_REGISTER(x);
            acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
            if (H > 1)
                acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
        }
    }
    /* All of C read before any is written (see gemm_avx512.c). */
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
    for (int i = 0; i < R; i++)
        for (int h = 0; h < H; h++) {
            float *ci = c + i * ldc + 16 * h;
            if (FULL)
                _mm512_storeu_ps(ci, acc[i][h]);
            else
                _mm512_mask_storeu_ps(ci, mask[h], acc[i][h]);
        }
}

/* The f64 twin: H vectors of 8 doubles. */
AGK_AVX512_INLINE void rows_f64(const int R, const int H, const bool FULL, int64_t kc,
                                const double *restrict a, int64_t ars, int64_t acs,
                                const double *restrict b, int64_t brs, double *restrict c,
                                int64_t ldc, agk_c_mode mode, const __mmask8 *mask)
{
    __m512d acc[MR][2];
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
    for (int64_t p = 0; p < kc; p++, b += brs) {
        __m512d b0 = FULL ? _mm512_loadu_pd(b) : _mm512_maskz_loadu_pd(mask[0], b);
        __m512d b1 = H < 2 ? b0
                      : FULL ? _mm512_loadu_pd(b + 8) : _mm512_maskz_loadu_pd(mask[1], b + 8);
        KEEP_IN_REGISTERS(b0, b1);
        const double *ap = ars == 1 ? a + p * acs : a + p;
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512d x = _mm512_set1_pd(ap[i * ars]);
            IN_REGISTER(x);
            acc[i][0] = _mm512_fmadd_pd(x, b0, acc[i][0]);
            if (H > 1)
                acc[i][1] = _mm512_fmadd_pd(x, b1, acc[i][1]);
        }
    }
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
    for (int i = 0; i < R; i++)
        for (int h = 0; h < H; h++) {
            double *ci = c + i * ldc + 8 * h;
            if (FULL)
                _mm512_storeu_pd(ci, acc[i][h]);
            else
                _mm512_mask_storeu_pd(ci, mask[h], acc[i][h]);
        }
}

#define ROWS_CASES(fn, H, FULL, mask)                                                  \
    switch (rows) {                                                                 \
    case 1: fn(1, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 2: fn(2, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 3: fn(3, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 4: fn(4, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 5: fn(5, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 6: fn(6, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 7: fn(7, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 8: fn(8, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 9: fn(9, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;      \
    case 10: fn(10, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;    \
    case 11: fn(11, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;    \
    default: fn(12, H, FULL, kc, a, ars, acs, b, brs, c, ldc, mode, mask); break;    \
    }

AGK_TARGET_AVX512 static void tile_f32(int64_t kc, const float *a, int64_t ars, int64_t acs,
                                       const float *b, int64_t brs, float *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    if (cols == 32) {
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

AGK_TARGET_AVX512 static void full_f32(int64_t kc, const float *a, int64_t ars, int64_t acs,
                                       const float *b, int64_t brs, float *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    (void)rows, (void)cols;
    rows_f32(MR, 2, true, kc, a, ars, acs, b, brs, c, ldc, mode, NULL);
}

AGK_TARGET_AVX512 static void tile_f64(int64_t kc, const double *a, int64_t ars, int64_t acs,
                                       const double *b, int64_t brs, double *c, int64_t ldc,
                                       agk_c_mode mode, int rows, int cols)
{
    if (cols == 16) {
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

/* The blocks here are fallbacks: gemm.c derives them from the caches. */
const agk_kernel_f32 agk_kernel_f32_avx512_intel = {
    {MR, 32, 192, 256, 1024}, MR, tile_f32, full_f32, true, agk_pack_t_f32_avx2,
    agk_store_t_f32_avx2,
};
const agk_kernel_f64 agk_kernel_f64_avx512_intel = {
    {MR, 16, 192, 256, 1024}, MR, tile_f64, full_f64, true, agk_pack_t_f64_avx2,
    agk_store_t_f64_avx2,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int agk_no_avx512_intel;
#endif
