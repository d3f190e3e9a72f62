/*
** test_ops_factor.c: the values of the dense linear algebra ops (issue 14):
** factors that multiply back, residuals of solves, determinants computed by
** hand, the errors each op records and NaN passing through. Their
** gradients are checked with every other op's, from tests/op_cases.h.
*/
#include <criterion/criterion.h>

#include <math.h>
#include <string.h>

#include "autograd.h"

static ag_tensor *from64(ag_tape *t, int rank, const int64_t *shape, const double *v)
{
    return ag_tensor_from(t, AG_F64, rank, shape, v);
}

/* A [..., n, n] filled from the seed: X + n I with X in [-1, 1), diagonally
** dominant, so well conditioned. */
static ag_tensor *dominant(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape, uint64_t seed)
{
    ag_rng r;
    ag_rng_seed(&r, seed);
    ag_tensor *x = ag_rand(t, &r, dt, rank, shape, -1, 1);
    int64_t n = shape[rank - 1];
    return ag_add(t, x, ag_mul_scalar(t, ag_eye(t, dt, n), (double)n));
}

static void expect_status(ag_tape *t, ag_status want, const char *const *words, int nwords)
{
    cr_assert_eq(ag_tape_status(t), want, "status %s, not %s: %s",
                 ag_status_str(ag_tape_status(t)), ag_status_str(want), ag_tape_errmsg(t));
    for (int i = 0; i < nwords; i++)
        cr_expect(strstr(ag_tape_errmsg(t), words[i]), "message '%s' lacks '%s'",
                  ag_tape_errmsg(t), words[i]);
}
#define EXPECT_ERROR(t, want, ...)                                                    \
    expect_status(t, want, (const char *const[]){__VA_ARGS__},                        \
                  (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

/* max |x - y| over all elements, with the shapes required equal. */
static double max_diff(const ag_tensor *x, const ag_tensor *y)
{
    cr_assert_eq(ag_rank(x), ag_rank(y));
    cr_assert_eq(ag_numel(x), ag_numel(y));
    double m = 0;
    for (int64_t i = 0; i < ag_numel(x); i++)
        m = fmax(m, fabs(ag_get(x, i) - ag_get(y, i)));
    return m;
}

/* ---------------------------------------------------------------- values */

Test(ops_factor, inverse_times_a_is_the_identity)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = dominant(t, AG_F64, 3, (int64_t[]){3, 5, 5}, 1);
    ag_tensor *ai = ag_inverse(t, a);
    ag_tensor *eye = ag_eye(t, AG_F64, 5);
    ag_tensor *left = ag_matmul(t, ai, a), *right = ag_matmul(t, a, ai);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_rank(ai), 3);
    cr_expect_leq(max_diff(left, ag_broadcast_to(t, eye, 3, ag_shape(left))), 1e-12);
    cr_expect_leq(max_diff(right, ag_broadcast_to(t, eye, 3, ag_shape(right))), 1e-12);
    ag_tape_free(t);
}

Test(ops_factor, inverse_of_a_matrix_that_needs_pivoting)
{
    ag_tape *t = ag_tape_new();
    /* A zero in the corner: elimination without row exchanges divides by it. */
    ag_tensor *a = from64(t, 2, (int64_t[]){2, 2}, (double[]){0, 2, 4, 1});
    ag_tensor *ai = ag_inverse(t, a);
    const double want[4] = {-0.125, 0.25, 0.5, 0};
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(ag_get(ai, i), want[i], 1e-15, "element %d: %.17g", i, ag_get(ai, i));
    ag_tape_free(t);
}

Test(ops_factor, inverse_in_f32)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = dominant(t, AG_F32, 2, (int64_t[]){4, 4}, 2);
    ag_tensor *ai = ag_inverse(t, a);
    cr_assert_eq(ag_dtype_of(ai), AG_F32);
    ag_tensor *prod = ag_matmul(t, a, ai);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_leq(max_diff(prod, ag_eye(t, AG_F32, 4)), 1e-6);
    ag_tape_free(t);
}

Test(ops_factor, cholesky_by_hand_and_multiplied_back)
{
    ag_tape *t = ag_tape_new();
    /* [[4, 2], [2, 3]] = [[2, 0], [1, sqrt 2]] [[2, 1], [0, sqrt 2]] */
    ag_tensor *l = ag_cholesky(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){4, 2, 2, 3}));
    const double want[4] = {2, 0, 1, sqrt(2.0)};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(l, i), want[i], "element %d: %.17g", i, ag_get(l, i));

    ag_rng r;
    ag_rng_seed(&r, 3);
    ag_tensor *x = ag_rand(t, &r, AG_F64, 3, (int64_t[]){2, 4, 4}, -1, 1);
    ag_tensor *a = ag_add(t, ag_matmul(t, x, ag_transpose(t, x, -1, -2)),
                          ag_mul_scalar(t, ag_eye(t, AG_F64, 4), 0.5));
    l = ag_cholesky(t, a);
    ag_tensor *llt = ag_matmul(t, l, ag_transpose(t, l, -1, -2));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_leq(max_diff(llt, a), 1e-12);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                double v = ag_get(l, b * 16 + i * 4 + j);
                if (j > i)
                    cr_expect_eq(v, 0, "L[%d][%d][%d] = %g above the diagonal", b, i, j, v);
                if (j == i)
                    cr_expect_gt(v, 0, "L[%d][%d][%d] = %g on the diagonal", b, i, j, v);
            }
    ag_tape_free(t);
}

Test(ops_factor, cholesky_reads_only_the_lower_triangle)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *l = ag_cholesky(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){4, 1e300, 2, 3}));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_get(l, 2), 1);
    cr_expect_eq(ag_get(l, 1), 0);
    ag_tape_free(t);
}

Test(ops_factor, solve_residuals_with_broadcast_batches)
{
    ag_tape *t = ag_tape_new();
    ag_rng r;
    ag_rng_seed(&r, 4);
    ag_tensor *a = dominant(t, AG_F64, 3, (int64_t[]){2, 3, 3}, 5);
    ag_tensor *b = ag_rand(t, &r, AG_F64, 2, (int64_t[]){3, 2}, -1, 1);
    ag_tensor *x = ag_solve(t, a, b);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_rank(x), 3);
    cr_expect(ag_dim(x, 0) == 2 && ag_dim(x, 1) == 3 && ag_dim(x, 2) == 2);
    ag_tensor *ax = ag_matmul(t, a, x);
    cr_expect_leq(max_diff(ax, ag_broadcast_to(t, b, 3, ag_shape(ax))), 1e-13);

    /* A broadcast against a batch of B. */
    ag_tensor *a2 = dominant(t, AG_F64, 2, (int64_t[]){4, 4}, 6);
    ag_tensor *b2 = ag_rand(t, &r, AG_F64, 4, (int64_t[]){2, 1, 4, 3}, -1, 1);
    ag_tensor *x2 = ag_solve(t, a2, b2);
    cr_expect_leq(max_diff(ag_matmul(t, a2, x2), b2), 1e-13);
    /* Both broadcast: A's batch element changes at every step of the walk. */
    ag_tensor *a3 = dominant(t, AG_F64, 4, (int64_t[]){1, 2, 3, 3}, 10);
    ag_tensor *b3 = ag_rand(t, &r, AG_F64, 4, (int64_t[]){2, 1, 3, 2}, -1, 1);
    ag_tensor *x3 = ag_solve(t, a3, b3);
    cr_assert_eq(ag_rank(x3), 4);
    cr_expect(ag_dim(x3, 0) == 2 && ag_dim(x3, 1) == 2);
    ag_tensor *ax3 = ag_matmul(t, a3, x3);
    cr_expect_leq(max_diff(ax3, ag_broadcast_to(t, b3, 4, ag_shape(ax3))), 1e-13);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(ops_factor, solve_takes_vectors_as_pytorch_does)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = from64(t, 2, (int64_t[]){2, 2}, (double[]){2, 1, 1, 3});
    ag_tensor *x = ag_solve(t, a, from64(t, 1, (int64_t[]){2}, (double[]){3, 5}));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_rank(x), 1);
    cr_expect_float_eq(ag_get(x, 0), 0.8, 1e-15);
    cr_expect_float_eq(ag_get(x, 1), 1.4, 1e-15);

    /* [2,3] beside A [2,3,3] is a batch of two vectors... */
    ag_tensor *ab = dominant(t, AG_F64, 3, (int64_t[]){2, 3, 3}, 7);
    ag_tensor *xv = ag_solve(t, ab, ag_ones(t, AG_F64, 2, (int64_t[]){2, 3}));
    cr_assert_eq(ag_rank(xv), 2);
    cr_expect(ag_dim(xv, 0) == 2 && ag_dim(xv, 1) == 3);
    ag_tensor *back = ag_matmul(t, ab, ag_reshape(t, xv, 3, (int64_t[]){2, 3, 1}));
    cr_expect_leq(max_diff(ag_reshape(t, back, 2, (int64_t[]){2, 3}),
                           ag_ones(t, AG_F64, 2, (int64_t[]){2, 3})), 1e-14);
    /* ...while [3,2] is one matrix of two columns. */
    ag_tensor *xm = ag_solve(t, ab, ag_ones(t, AG_F64, 2, (int64_t[]){3, 2}));
    cr_assert_eq(ag_rank(xm), 3);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(ops_factor, triangular_solves_left_and_right)
{
    ag_tape *t = ag_tape_new();
    ag_rng r;
    ag_rng_seed(&r, 8);
    ag_tensor *full = dominant(t, AG_F64, 3, (int64_t[]){2, 4, 4}, 9);
    ag_tensor *b = ag_rand(t, &r, AG_F64, 2, (int64_t[]){4, 3}, -1, 1);
    ag_tensor *bt = ag_rand(t, &r, AG_F64, 2, (int64_t[]){3, 4}, -1, 1);
    for (int upper = 0; upper < 2; upper++) {
        /* The other triangle of 'full' is ignored: compare with it zeroed. */
        ag_tensor *tri = ag_detach(t, full);
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    if (upper ? j < i : j > i)
                        ag_set(tri, k * 16 + i * 4 + j, 0);
        ag_tensor *x = ag_solve_triangular(t, full, b, upper, 1);
        ag_tensor *ax = ag_matmul(t, tri, x);
        cr_expect_leq(max_diff(ax, ag_broadcast_to(t, b, 3, ag_shape(ax))), 1e-13, "upper %d",
                      upper);
        ag_tensor *y = ag_solve_triangular(t, full, bt, upper, 0);
        ag_tensor *ya = ag_matmul(t, y, tri);
        cr_expect_leq(max_diff(ya, ag_broadcast_to(t, bt, 3, ag_shape(ya))), 1e-13,
                      "right, upper %d", upper);
    }
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(ops_factor, slogdet_against_determinants_by_hand)
{
    ag_tape *t = ag_tape_new();
    /* det [[1,2],[3,4]] = -2; det [[0,1],[1,0]] = -1 (a row exchange);
    ** det diag(2,3,4) = 24; det [[1,2],[2,4]] = 0. */
    ag_tensor *sign;
    ag_tensor *ld = ag_slogdet(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4}), &sign);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_rank(ld), 0);
    cr_assert_eq(ag_rank(sign), 0);
    cr_expect_eq(ag_item(sign), -1);
    cr_expect_float_eq(ag_item(ld), log(2.0), 1e-15);

    ld = ag_slogdet(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){0, 1, 1, 0}), &sign);
    cr_expect_eq(ag_item(sign), -1);
    cr_expect_eq(ag_item(ld), 0);

    ld = ag_slogdet(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 2, 4}), &sign);
    cr_expect_eq(ag_item(sign), 0);
    cr_expect(isinf(ag_item(ld)) && ag_item(ld) < 0, "log|det| %g", ag_item(ld));

    const double batch[2][9] = {{2, 0, 0, 0, 3, 0, 0, 0, 4}, {0, 0, -2, 0, 3, 0, 1, 0, 0}};
    ld = ag_slogdet(t, from64(t, 3, (int64_t[]){2, 3, 3}, &batch[0][0]), &sign);
    cr_assert_eq(ag_rank(ld), 1);
    cr_assert_eq(ag_dim(sign, 0), 2);
    cr_expect_eq(ag_get(sign, 0), 1);
    cr_expect_float_eq(ag_get(ld, 0), log(24.0), 1e-15);
    cr_expect_eq(ag_get(sign, 1), 1, "det = (-2)(0 - 3) = 6, sign %g", ag_get(sign, 1));
    cr_expect_float_eq(ag_get(ld, 1), log(6.0), 1e-15);
    cr_expect_not(ag_requires_grad_of(sign));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(ops_factor, slogdet_gradient_is_the_inverse_transposed)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_requires_grad(from64(t, 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4}));
    ag_tensor *sign;
    ag_tensor *ld = ag_slogdet(t, a, &sign);
    ag_backward(t, ld);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_tape_entries(t), 1, "sign is not recorded");
    /* A^{-1} = [[-2, 1], [1.5, -0.5]] */
    const double want[4] = {-2, 1.5, 1, -0.5};
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(ag_get(ag_grad(a), i), want[i], 1e-15, "element %d", i);
    ag_tape_free(t);
}

/* A's gradient through the factor is symmetric, as PyTorch's: only the
** lower triangle is read, but A stands for a symmetric matrix. */
Test(ops_factor, cholesky_gradient_is_symmetric)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_requires_grad(
        from64(t, 2, (int64_t[]){3, 3}, (double[]){4, 1, 0.5, 1, 3, 0.25, 0.5, 0.25, 2}));
    ag_tensor *w = from64(t, 2, (int64_t[]){3, 3}, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    ag_backward(t, ag_sum(t, ag_mul(t, w, ag_cholesky(t, a))));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tensor *g = ag_grad(a);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < i; j++)
            cr_expect_eq(ag_get(g, i * 3 + j), ag_get(g, j * 3 + i), "[%d][%d]: %g vs %g", i, j,
                         ag_get(g, i * 3 + j), ag_get(g, j * 3 + i));
    cr_expect_neq(ag_get(g, 3), 0);
    ag_tape_free(t);
}

/* chol([a]) = sqrt a: first derivative 1 / (2 sqrt a), second -1 / (4 a^1.5). */
Test(ops_factor, cholesky_second_derivative_of_one_by_one)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_requires_grad(ag_full(t, AG_F64, 2, (int64_t[]){1, 1}, 4.0));
    ag_tensor *l = ag_sum(t, ag_cholesky(t, a));
    ag_tensor *g, *h;
    ag_gradients(t, l, NULL, 1, &a, &g, 1);
    ag_gradients(t, ag_sum(t, g), NULL, 1, &a, &h, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_get(g, 0), 0.25, 1e-15);
    cr_expect_float_eq(ag_get(h, 0), -1.0 / 32.0, 1e-15);
    ag_tape_free(t);
}

Test(ops_factor, empty_matrices)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_zeros(t, AG_F64, 3, (int64_t[]){2, 0, 0});
    ag_tensor *sign, *ld = ag_slogdet(t, a, &sign);
    ag_tensor *l = ag_cholesky(t, a), *ai = ag_inverse(t, a);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_numel(l), 0);
    cr_expect_eq(ag_numel(ai), 0);
    cr_assert_eq(ag_numel(ld), 2);
    cr_expect(ag_get(ld, 1) == 0 && ag_get(sign, 1) == 1, "det of 0 x 0 is 1");
    ag_tape_free(t);
}

/* ------------------------------------------------------------------ NaN */

Test(ops_factor, nan_in_gives_nan_out)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = from64(t, 2, (int64_t[]){2, 2}, (double[]){4, 2, 2, NAN});
    ag_tensor *sign;
    ag_tensor *l = ag_cholesky(t, a), *ai = ag_inverse(t, a), *ld = ag_slogdet(t, a, &sign);
    ag_tensor *x = ag_solve(t, a, ag_ones(t, AG_F64, 1, (int64_t[]){2}));
    ag_tensor *y = ag_solve_triangular(t, a, ag_ones(t, AG_F64, 2, (int64_t[]){2, 1}), 0, 1);
    ag_tensor *good = from64(t, 2, (int64_t[]){2, 2}, (double[]){4, 2, 2, 3});
    ag_tensor *xb = ag_solve(t, good, from64(t, 1, (int64_t[]){2}, (double[]){1, NAN}));
    cr_assert_eq(ag_tape_status(t), AG_OK, "NaN is a value, not an error: %s", ag_tape_errmsg(t));
    cr_expect(isnan(ag_get(l, 3)), "cholesky: L[1][1] %g", ag_get(l, 3));
    cr_expect_eq(ag_get(l, 0), 2, "cholesky: the column before the NaN stands");
    for (int i = 0; i < 4; i++)
        cr_expect(isnan(ag_get(ai, i)), "inverse: element %d is %g", i, ag_get(ai, i));
    for (int i = 0; i < 2; i++)
        cr_expect(isnan(ag_get(x, i)), "solve: element %d is %g", i, ag_get(x, i));
    cr_expect(isnan(ag_get(y, 1)), "solve_triangular: element 1 is %g", ag_get(y, 1));
    cr_expect(isnan(ag_get(xb, 0)) || isnan(ag_get(xb, 1)), "solve: NaN in B");
    cr_expect(isnan(ag_item(ld)) && isnan(ag_item(sign)), "slogdet: %g, sign %g", ag_item(ld),
              ag_item(sign));
    ag_tape_free(t);
}

Test(ops_factor, nan_in_one_batch_element_leaves_the_others)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = from64(t, 3, (int64_t[]){2, 1, 1}, (double[]){NAN, 4});
    ag_tensor *ai = ag_inverse(t, a);
    /* A broadcast over B's batch: every element of the batch sees the NaN. */
    ag_tensor *x = ag_solve(t, ag_slice(t, a, 0, 0, 1, 1),
                            ag_ones(t, AG_F64, 3, (int64_t[]){3, 1, 2}));
    ag_tensor *y = ag_solve(t, a, ag_ones(t, AG_F64, 2, (int64_t[]){1, 2}));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(isnan(ag_get(ai, 0)));
    cr_expect_eq(ag_get(ai, 1), 0.25);
    for (int i = 0; i < 6; i++)
        cr_expect(isnan(ag_get(x, i)), "element %d is %g", i, ag_get(x, i));
    cr_expect(isnan(ag_get(y, 0)) && isnan(ag_get(y, 1)));
    cr_expect(ag_get(y, 2) == 0.25 && ag_get(y, 3) == 0.25);
    ag_tape_free(t);
}

/* A NaN in what the op reads, in a matrix it could not factor anyway (a
** pivot that is not positive, a zero on the diagonal, met before the NaN
** spreads to it): the header promises NaN, never an error, but each
** recorded AG_EINVAL. The other batch element keeps its factor. */
Test(ops_factor, nan_beside_a_failed_pivot_gives_nan_not_an_error)
{
    ag_tape *t = ag_tape_new();
    /* batch 0: [[4, 2], [2, 3]] = L L^T; batch 1: pivot -1 first, NaN below it */
    const double v[8] = {4, 2, 2, 3, -1, 0, NAN, 1};
    ag_tensor *l = ag_cholesky(t, from64(t, 3, (int64_t[]){2, 2, 2}, v));
    cr_assert_eq(ag_tape_status(t), AG_OK, "cholesky: %s", ag_tape_errmsg(t));
    const double want[4] = {2, 0, 1, sqrt(2.0)};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(l, i), want[i], "L[0] element %d: %g", i, ag_get(l, i));
    for (int i = 4; i < 8; i++)
        cr_expect(isnan(ag_get(l, i)), "L[1] element %d: %g", i - 4, ag_get(l, i));

    /* lower triangular, a NaN on the diagonal and a 0 after it */
    const double tri[8] = {2, 0, 1, 4, NAN, 0, 1, 0};
    ag_tensor *x = ag_solve_triangular(t, from64(t, 3, (int64_t[]){2, 2, 2}, tri),
                                       ag_ones(t, AG_F64, 2, (int64_t[]){2, 1}), 0, 1);
    cr_assert_eq(ag_tape_status(t), AG_OK, "solve_triangular: %s", ag_tape_errmsg(t));
    cr_expect(ag_get(x, 0) == 0.5 && ag_get(x, 1) == 0.125, "X[0] = %g, %g", ag_get(x, 0),
              ag_get(x, 1));
    cr_expect(isnan(ag_get(x, 2)) && isnan(ag_get(x, 3)), "X[1] = %g, %g", ag_get(x, 2),
              ag_get(x, 3));

    /* A NaN in the triangle that is not read changes nothing: still errors. */
    ag_tape_reset(t);
    ag_cholesky(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){-1, NAN, 0, 1}));
    EXPECT_ERROR(t, AG_EINVAL, "ag_cholesky: A [2,2] is not positive definite");
    ag_tape_reset(t);
    ag_solve_triangular(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){1, NAN, 5, 0}),
                        ag_ones(t, AG_F64, 2, (int64_t[]){2, 1}), 0, 1);
    EXPECT_ERROR(t, AG_EINVAL, "ag_solve_triangular", "diagonal holds 0 at 1");
    ag_tape_free(t);
}

/* Infinities make NaN during elimination (inf / inf): here a NaN under a
** zero in the second column. The pivot search compared it away and called
** the matrix singular (an error for solve and inverse, sign 0 and log|det|
** -inf for slogdet, a determinant of 0 that is no more true than any
** other). A NaN made on the way is a NaN, as one given would be. */
Test(ops_factor, nan_made_by_infinities_is_not_compared_away)
{
    ag_tape *t = ag_tape_new();
    const double v[9] = {INFINITY, 1, 0, 0, 0, 1, INFINITY, 2, 0};
    ag_tensor *a = from64(t, 2, (int64_t[]){3, 3}, v);
    ag_tensor *sign, *ld = ag_slogdet(t, a, &sign);
    ag_tensor *ai = ag_inverse(t, a);
    ag_tensor *x = ag_solve(t, a, ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(isnan(ag_item(ld)) && isnan(ag_item(sign)), "slogdet: %g, sign %g", ag_item(ld),
              ag_item(sign));
    for (int i = 0; i < 9; i++)
        cr_expect(isnan(ag_get(ai, i)), "inverse: element %d is %g", i, ag_get(ai, i));
    for (int i = 0; i < 3; i++)
        cr_expect(isnan(ag_get(x, i)), "solve: element %d is %g", i, ag_get(x, i));
    /* Infinities that make no NaN keep their IEEE results. */
    ag_tensor *d = ag_inverse(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){INFINITY, 0, 0, 2}));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(ag_get(d, 0) == 0 && ag_get(d, 3) == 0.5, "%g %g", ag_get(d, 0), ag_get(d, 3));
    ag_tape_free(t);
}

/* --------------------------------------------------------------- errors */

Test(ops_factor, every_op_refuses_a_matrix_that_is_not_square)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *sign;
    static const char *const names[] = {"ag_cholesky", "ag_inverse", "ag_slogdet", "ag_solve",
                                        "ag_solve_triangular"};
    for (int op = 0; op < 5; op++) {
        ag_tape_reset(t);
        ag_tensor *a = ag_ones(t, AG_F64, 3, (int64_t[]){4, 2, 3});
        ag_tensor *b = ag_ones(t, AG_F64, 2, (int64_t[]){2, 1});
        ag_tensor *r = op == 0   ? ag_cholesky(t, a)
                       : op == 1 ? ag_inverse(t, a)
                       : op == 2 ? ag_slogdet(t, a, &sign)
                       : op == 3 ? ag_solve(t, a, b)
                                 : ag_solve_triangular(t, a, b, 0, 1);
        cr_expect(ag_is_nil(r));
        EXPECT_ERROR(t, AG_ESHAPE, names[op], "[4,2,3]", "square");
    }
    ag_tape_reset(t);
    ag_cholesky(t, ag_ones(t, AG_F64, 1, (int64_t[]){4}));
    EXPECT_ERROR(t, AG_ESHAPE, "ag_cholesky", "[4]");
    ag_tape_reset(t);
    ag_slogdet(t, ag_scalar(t, AG_F64, 2), &sign);
    EXPECT_ERROR(t, AG_ESHAPE, "ag_slogdet", "[]");
    cr_expect(ag_is_nil(sign), "*sign is nil on error");
    ag_tape_free(t);
}

Test(ops_factor, cholesky_names_the_batch_element_and_the_minor)
{
    ag_tape *t = ag_tape_new();
    const double v[8] = {4, 0, 0, 1, /* PD */ 1, 2, 2, 1 /* minor of order 2: 1 - 4 */};
    ag_tensor *l = ag_cholesky(t, from64(t, 3, (int64_t[]){2, 2, 2}, v));
    cr_expect(ag_is_nil(l));
    EXPECT_ERROR(t, AG_EINVAL, "ag_cholesky", "[2,2,2]", "batch element 1", "not positive definite",
                 "order 2", "pivot -3");
    ag_tape_reset(t);
    ag_cholesky(t, from64(t, 2, (int64_t[]){2, 2}, (double[]){-1, 0, 0, 1}));
    EXPECT_ERROR(t, AG_EINVAL, "ag_cholesky: A [2,2] is not positive definite", "order 1");
    ag_tape_free(t);
}

Test(ops_factor, singular_matrices_are_errors_for_solve_and_inverse)
{
    ag_tape *t = ag_tape_new();
    const double v[8] = {1, 0, 0, 1, /* fine */ 1, 2, 2, 4 /* singular */};
    ag_tensor *a = from64(t, 3, (int64_t[]){2, 2, 2}, v);
    cr_expect(ag_is_nil(ag_solve(t, a, ag_ones(t, AG_F64, 2, (int64_t[]){2, 3}))));
    EXPECT_ERROR(t, AG_EINVAL, "ag_solve", "[2,2,2]", "batch element 1", "singular");
    ag_tape_reset(t);
    a = from64(t, 3, (int64_t[]){2, 2, 2}, v);
    cr_expect(ag_is_nil(ag_inverse(t, a)));
    EXPECT_ERROR(t, AG_EINVAL, "ag_inverse", "batch element 1", "singular");
    ag_tape_reset(t);
    ag_inverse(t, ag_zeros(t, AG_F64, 2, (int64_t[]){3, 3}));
    EXPECT_ERROR(t, AG_EINVAL, "ag_inverse: A [3,3] is singular", "column 0");
    ag_tape_reset(t);
    ag_tensor *tri = from64(t, 2, (int64_t[]){2, 2}, (double[]){1, 0, 5, 0});
    ag_solve_triangular(t, tri, ag_ones(t, AG_F64, 2, (int64_t[]){2, 2}), 0, 1);
    EXPECT_ERROR(t, AG_EINVAL, "ag_solve_triangular", "[2,2]", "singular", "diagonal holds 0 at 1");
    ag_tape_free(t);
}

Test(ops_factor, mismatched_shapes_are_named)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_eye(t, AG_F64, 3);
    ag_solve(t, a, ag_ones(t, AG_F64, 2, (int64_t[]){4, 2}));
    EXPECT_ERROR(t, AG_ESHAPE, "ag_solve", "[3,3]", "[4,2]", "rows (4)");
    ag_tape_reset(t);
    a = ag_eye(t, AG_F64, 3);
    ag_solve(t, a, ag_ones(t, AG_F64, 1, (int64_t[]){4}));
    EXPECT_ERROR(t, AG_ESHAPE, "ag_solve", "[3,3]", "[4]", "length 4");
    ag_tape_reset(t);
    ag_solve(t, ag_ones(t, AG_F64, 3, (int64_t[]){2, 3, 3}),
             ag_ones(t, AG_F64, 3, (int64_t[]){3, 3, 1}));
    EXPECT_ERROR(t, AG_ESHAPE, "ag_solve", "[2,3,3]", "[3,3,1]", "batch dims do not broadcast");
    ag_tape_reset(t);
    ag_solve(t, ag_eye(t, AG_F64, 3), ag_scalar(t, AG_F64, 1));
    EXPECT_ERROR(t, AG_ESHAPE, "ag_solve", "scalar");
    ag_tape_reset(t);
    ag_solve_triangular(t, ag_eye(t, AG_F64, 3), ag_ones(t, AG_F64, 1, (int64_t[]){3}), 0, 1);
    EXPECT_ERROR(t, AG_ESHAPE, "ag_solve_triangular", "[3]", "rank 2");
    ag_tape_reset(t);
    ag_solve_triangular(t, ag_eye(t, AG_F64, 3), ag_ones(t, AG_F64, 2, (int64_t[]){3, 2}), 1, 0);
    EXPECT_ERROR(t, AG_ESHAPE, "ag_solve_triangular", "[3,2]", "columns (2)");
    ag_tape_free(t);
}

Test(ops_factor, mixed_dtypes_are_refused)
{
    ag_tape *t = ag_tape_new();
    ag_solve(t, ag_eye(t, AG_F64, 2), ag_ones(t, AG_F32, 1, (int64_t[]){2}));
    EXPECT_ERROR(t, AG_EDTYPE, "ag_solve", "f64", "f32");
    ag_tape_reset(t);
    ag_solve_triangular(t, ag_eye(t, AG_F32, 2), ag_ones(t, AG_F64, 2, (int64_t[]){2, 2}), 0, 1);
    EXPECT_ERROR(t, AG_EDTYPE, "ag_solve_triangular", "f32", "f64");
    ag_tape_free(t);
}

Test(ops_factor, null_and_sticky_errors)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *sign = NULL;
    cr_expect(ag_is_nil(ag_cholesky(t, NULL)));
    EXPECT_ERROR(t, AG_EINVAL, "ag_cholesky", "NULL");
    /* On a tape in error every op returns nil and keeps the first message. */
    ag_tensor *a = ag_eye(t, AG_F64, 2);
    cr_expect(ag_is_nil(ag_inverse(t, a)));
    cr_expect(ag_is_nil(ag_slogdet(t, a, &sign)));
    cr_expect(ag_is_nil(sign));
    EXPECT_ERROR(t, AG_EINVAL, "ag_cholesky");
    ag_tape_free(t);
}
