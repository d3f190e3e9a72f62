/*
** test_f32_agreement.c: every op computes the same thing in f32 as in f64
** (issue 2). Each case of op_cases.h runs on identical inputs (values
** representable in f32) in both dtypes; results must agree to 1e-5
** relative, and gradients to 1e-4, measured as |a - b| / max(1, |b|).
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>

#include "op_cases.h"

static const double FORWARD_TOLERANCE = 1e-5, GRADIENT_TOLERANCE = 1e-4;

static double rel_diff(double a, double b) { return fabs(a - b) / fmax(1.0, fabs(b)); }

ParameterizedTestParameters(f32_agreement, op)
{
    return case_indices();
}

ParameterizedTest(size_t *index, f32_agreement, op)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x32[3], *x64[3];
    case_inputs(t, c, AG_F32, x32);
    case_inputs(t, c, AG_F64, x64);
    for (int i = 0; i < c->n; i++) {
        ag_requires_grad(x32[i]);
        ag_requires_grad(x64[i]);
        for (int64_t j = 0; j < ag_numel(x64[i]); j++)
            cr_assert_eq(ag_get(x32[i], j), ag_get(x64[i], j), "inputs differ");
    }
    ag_tensor *y32 = case_apply(t, x32, c), *y64 = case_apply(t, x64, c);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    cr_assert_eq(ag_dtype_of(y32), AG_F32, "%s, %s: the f32 result is %s", c->op, c->what,
                 ag_dtype_name(ag_dtype_of(y32)));
    cr_assert_eq(ag_dtype_of(y64), AG_F64);
    cr_assert_eq(ag_rank(y32), ag_rank(y64));
    cr_assert_eq(ag_numel(y32), ag_numel(y64));
    for (int64_t j = 0; j < ag_numel(y64); j++) {
        double a = ag_get(y32, j), b = ag_get(y64, j);
        cr_expect(rel_diff(a, b) <= FORWARD_TOLERANCE,
                  "%s, %s: element %lld is %.9g in f32, %.9g in f64", c->op, c->what,
                  (long long)j, a, b);
    }

    /* The gradients of sum(w y) agree as well: every vjp runs in f32 too. */
    ag_tensor *g32[3], *g64[3];
    ag_tensor *w64 = ag_arange(t, AG_F64, 0.5, 0.5 + 0.25 * (double)ag_numel(y64), 0.25);
    ag_tensor *w32 = ag_cast(t, w64, AG_F32);
    ag_tensor *s32 = ag_sum(t, ag_mul(t, ag_reshape(t, w32, ag_rank(y32), ag_shape(y32)), y32));
    ag_tensor *s64 = ag_sum(t, ag_mul(t, ag_reshape(t, w64, ag_rank(y64), ag_shape(y64)), y64));
    ag_gradients(t, s32, NULL, c->n, x32, g32, 0);
    ag_gradients(t, s64, NULL, c->n, x64, g64, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    for (int i = 0; i < c->n; i++) {
        cr_assert_eq(ag_dtype_of(g32[i]), AG_F32);
        for (int64_t j = 0; j < ag_numel(g64[i]); j++) {
            double a = ag_get(g32[i], j), b = ag_get(g64[i], j);
            cr_expect(rel_diff(a, b) <= GRADIENT_TOLERANCE,
                      "%s, %s: gradient %d element %lld is %.9g in f32, %.9g in f64", c->op,
                      c->what, i, (long long)j, a, b);
        }
    }
    ag_tape_free(t);
}

Test(f32_agreement, every_op_has_a_case)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    cr_assert(n > 0 && n <= MAX_OPS, "%zu ops", n);
    for (size_t i = 0; i < n; i++)
        cr_expect(case_exists_for(ops[i]->name),
                  "op '%s' is in an ops file's table but has no case in tests/op_cases.h",
                  ops[i]->name);
}

Test(f32_agreement, cast_rounds_to_nearest_f32)
{
    ag_tape *t = ag_tape_new();
    const double v[4] = {0.1, -1.0 / 3.0, 1e10 + 1.0, 16777217.0};
    ag_tensor *x = ag_tensor_from(t, AG_F64, 1, (int64_t[]){4}, v);
    ag_tensor *y = ag_cast(t, x, AG_F32), *back = ag_cast(t, y, AG_F64);
    cr_assert_eq(ag_dtype_of(y), AG_F32);
    const float *yv = ag_data(y);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(yv[i], (float)v[i], "element %d", i);
        cr_expect_eq(ag_get(back, i), (double)(float)v[i], "element %d", i);
    }
    ag_tape_free(t);
}

/* The matrix product works in cache blocks (256 deep, 512 wide): sizes
** just past a block exercise the edges, against a plain loop in f64. */
static void check_gemm_blocks(int ta, int tb)
{
    enum { M = 5, K = 300, N = 530 };
    ag_tape *t = ag_tape_new();
    ag_rng r;
    ag_rng_seed(&r, 99);
    int64_t sa[2] = {ta ? K : M, ta ? M : K}, sb[2] = {tb ? N : K, tb ? K : N};
    ag_tensor *a64 = ag_rand(t, &r, AG_F64, 2, sa, -1, 1);
    ag_tensor *b64 = ag_rand(t, &r, AG_F64, 2, sb, -1, 1);
    /* Round the inputs so both dtypes see the same numbers. */
    a64 = ag_cast(t, ag_cast(t, a64, AG_F32), AG_F64);
    b64 = ag_cast(t, ag_cast(t, b64, AG_F32), AG_F64);
    ag_tensor *c64 = agi_matmul_t(t, a64, b64, ta, tb);
    ag_tensor *c32 = agi_matmul_t(t, ag_cast(t, a64, AG_F32), ag_cast(t, b64, AG_F32), ta, tb);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_dim(c64, 0), M);
    cr_assert_eq(ag_dim(c64, 1), N);
    const double *av = ag_data(a64), *bv = ag_data(b64);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int p = 0; p < K; p++)
                s += (ta ? av[p * M + i] : av[i * K + p]) * (tb ? bv[j * K + p] : bv[p * N + j]);
            double got64 = ag_get(c64, i * N + j), got32 = ag_get(c32, i * N + j);
            cr_expect(fabs(got64 - s) <= 1e-12 * fmax(1.0, fabs(s)),
                      "f64 [%d,%d]: %.15g, not %.15g", i, j, got64, s);
            cr_expect(rel_diff(got32, s) <= FORWARD_TOLERANCE, "f32 [%d,%d]: %.9g, not %.9g", i, j,
                      got32, s);
        }
    ag_tape_free(t);
}

Test(f32_agreement, gemm_across_block_edges) { check_gemm_blocks(0, 0); }
Test(f32_agreement, gemm_across_block_edges_transposed) { check_gemm_blocks(1, 1); }
