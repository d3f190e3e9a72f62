/*
** gemm.c: the matrix product for both dtypes, from one template.
*/
#include "kernels.h"

#define REAL float
#define GEMM_NAME gemm_f32
#include "gemm_template.inc"
#undef REAL
#undef GEMM_NAME

#define REAL double
#define GEMM_NAME gemm_f64
#include "gemm_template.inc"
#undef REAL
#undef GEMM_NAME

size_t agk_gemm_scratch(ag_dtype dt, int64_t m, int64_t n, int64_t k, bool ta, bool tb)
{
    size_t es = dt == AG_F32 ? sizeof(float) : sizeof(double);
    return ((ta ? (size_t)(m * k) : 0) + (tb ? (size_t)(k * n) : 0)) * es;
}

void agk_gemm(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, bool ta,
              const void *b, int64_t ldb, bool tb, void *c, int64_t ldc, void *scratch)
{
    if (dt == AG_F32)
        gemm_f32(m, n, k, a, lda, ta, b, ldb, tb, c, ldc, scratch);
    else
        gemm_f64(m, n, k, a, lda, ta, b, ldb, tb, c, ldc, scratch);
}
