/*
** test_jvp_cnn.c: forward mode through the convolution, pooling,
** normalisation, statistics and special-function ops (issues 15 and 17).
** test_jvp.c checks every case in f64; here the same cases of these
** families run in f32 as well, whose tangents and Hessian-vector products
** must agree with f64's, and the rules' corners: max pooling's ties and
** NaN winners, and a tangent on the convolution's bias alone.
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>

#include "op_cases.h"

/* As test_f32_agreement.c measures gradients: |a - b| / max(1, |b|). */
static const double TOLERANCE = 1e-4;

static double rel_diff(double a, double b) { return fabs(a - b) / fmax(1.0, fabs(b)); }

/* The families whose rules this file checks, by the case's op or, for the
** compositions (average pooling, the norms), by what the case says. */
static bool in_scope(const op_case *c)
{
    static const char *const ops[] = {
        "conv2d", "conv2d_input_grad", "conv2d_weight_grad", "max_pool2d", "max_pool2d_scatter",
        "max_pool2d_gather", "var", "std", "cumsum", "cumsum_reverse", "erf", "atan", "log1p",
        "expm1", "atan2"};
    for (size_t i = 0; i < ARRAY_LEN(ops); i++)
        if (strcmp(c->op, ops[i]) == 0)
            return true;
    return strstr(c->what, "pool") || strstr(c->what, "norm");
}

/* case_indices() with the cases out of scope left out. */
static struct criterion_test_params scoped_case_indices(void)
{
    struct criterion_test_params p = case_indices();
    size_t *idx = p.params, k = 0;
    for (size_t i = 0; idx && i < p.length; i++)
        if (in_scope(&op_cases[idx[i]]))
            idx[k++] = idx[i];
    p.length = k;
    return p;
}

Test(jvp_cnn, every_op_of_these_families_has_a_rule_and_a_case)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS), seen = 0;
    for (size_t i = 0; i < n && i < MAX_OPS; i++) {
        op_case c = {.op = ops[i]->name, .what = ""};
        if (!in_scope(&c))
            continue;
        seen++;
        cr_expect(ops[i]->jvp != NULL, "op '%s' has no JVP rule", ops[i]->name);
        cr_expect(case_exists_for(ops[i]->name), "op '%s' has no case", ops[i]->name);
    }
    cr_expect_eq(seen, 15, "the 15 ops of these families are all in the tables");
}

/* Values in [-1, 1) of x's shape, drawn in f64 and rounded to f32, so that
** both dtypes see the same numbers. */
static ag_tensor *random_like(ag_tape *t, const ag_tensor *x, ag_dtype dt, uint64_t salt)
{
    ag_rng r;
    ag_rng_seed(&r, 0x6a76703332ull + salt);
    ag_tensor *v = ag_rand(t, &r, AG_F64, ag_rank(x), ag_shape(x), -1.0, 1.0);
    for (int64_t j = 0; j < ag_numel(v); j++)
        ag_set(v, j, (float)ag_get(v, j));
    return ag_cast(t, v, dt);
}

/* The case's inputs in 'dt' as duals carrying the directions. */
static void dual_inputs(ag_tape *t, const op_case *c, ag_dtype dt, ag_tensor **x,
                        ag_tensor **dual)
{
    case_inputs(t, c, dt, x);
    for (int i = 0; i < c->n; i++)
        dual[i] = ag_dual(t, x[i], random_like(t, x[i], dt, (uint64_t)i));
}

static void expect_agree(const op_case *c, const char *what, const ag_tensor *a32,
                         const ag_tensor *a64)
{
    cr_assert_eq(!a32, !a64, "%s, %s: %s is zero in one dtype only", c->op, c->what, what);
    if (!a64)
        return;
    cr_assert_eq(ag_dtype_of(a32), AG_F32, "%s, %s: %s", c->op, c->what, what);
    cr_assert_eq(ag_numel(a32), ag_numel(a64));
    for (int64_t j = 0; j < ag_numel(a64); j++) {
        double a = ag_get(a32, j), b = ag_get(a64, j);
        cr_expect(rel_diff(a, b) <= TOLERANCE, "%s, %s: %s element %lld is %.9g in f32, %.9g in f64",
                  c->op, c->what, what, (long long)j, a, b);
    }
}

ParameterizedTestParameters(jvp_cnn, f32_tangents_agree_with_f64) { return scoped_case_indices(); }

ParameterizedTest(size_t *index, jvp_cnn, f32_tangents_agree_with_f64)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x32[3], *x64[3], *d32[3], *d64[3];
    dual_inputs(t, c, AG_F32, x32, d32);
    dual_inputs(t, c, AG_F64, x64, d64);
    ag_tensor *jv32 = ag_tangent(case_apply(t, d32, c));
    ag_tensor *jv64 = ag_tangent(case_apply(t, d64, c));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    expect_agree(c, "the tangent", jv32, jv64);
    ag_tape_free(t);
}

/* The gradient of sum(w y + y^2 / 2) at the duals; its tangent is H v. */
static void gradient_at(ag_tape *t, const op_case *c, ag_dtype dt, ag_tensor *const *x,
                        ag_tensor **g)
{
    for (int i = 0; i < c->n; i++)
        ag_requires_grad(x[i]);
    ag_tensor *y = case_apply(t, x, c);
    ag_tensor *w = random_like(t, y, dt, 11);
    ag_tensor *s = ag_add(t, ag_sum(t, ag_mul(t, w, y)),
                          ag_mul_scalar(t, ag_sum(t, ag_square(t, y)), 0.5));
    ag_gradients(t, s, NULL, c->n, x, g, 0);
}

ParameterizedTestParameters(jvp_cnn, f32_hessian_vector_products_agree_with_f64)
{
    return scoped_case_indices();
}

ParameterizedTest(size_t *index, jvp_cnn, f32_hessian_vector_products_agree_with_f64)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x32[3], *x64[3], *d32[3], *d64[3], *g32[3], *g64[3];
    dual_inputs(t, c, AG_F32, x32, d32);
    dual_inputs(t, c, AG_F64, x64, d64);
    gradient_at(t, c, AG_F32, d32, g32);
    gradient_at(t, c, AG_F64, d64, g64);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    for (int i = 0; i < c->n; i++)
        expect_agree(c, "H v", ag_tangent(g32[i]), ag_tangent(g64[i]));
    ag_tape_free(t);
}

/* A tie takes the first maximum in row-major window order, a NaN wins over
** everything: the tangent is read there, where the vjp sends the gradient. */
Test(jvp_cnn, max_pool_tangents_follow_the_winners)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F32 : AG_F64;
        ag_tape *t = ag_tape_new();
        /* two 2x2 windows side by side: a tie of 3s, and a NaN */
        const int64_t shape[4] = {1, 1, 2, 4};
        ag_tensor *x0 = ag_cast(t, ag_tensor_from_f64(t, 4, shape,
                                                      (const double[]){1, 3, 5, NAN, 3, 2, 7, 6}),
                                dt);
        ag_tensor *v = ag_cast(t, ag_tensor_from_f64(t, 4, shape,
                                                     (const double[]){10, 20, 30, 40, 50, 60, 70, 80}),
                               dt);
        ag_tensor *y = ag_max_pool2d(t, ag_dual(t, ag_requires_grad(x0), v), 2, 2, 2, 2, 0, 0);
        ag_tensor *dy = ag_tangent(y);
        ag_backward(t, ag_sum(t, y));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_assert_not_null(dy);
        cr_expect_eq(ag_get(dy, 0), 20.0, "the first 3 in row-major order: %g", ag_get(dy, 0));
        cr_expect_eq(ag_get(dy, 1), 40.0, "the NaN: %g", ag_get(dy, 1));
        cr_expect(isnan(ag_get(y, 1)));
        for (int i = 0; i < 8; i++)
            cr_expect_eq(ag_get(ag_grad(x0), i), i == 1 || i == 3 ? 1.0 : 0.0,
                         "the gradient goes to the same winners (element %d: %g)", i, ag_get(ag_grad(x0), i));
        ag_tape_free(t);
    }
}

/* Only the bias carries a tangent: the rule returns it as [1, O, 1, 1],
** which the engine broadcasts over the batch and the plane. */
Test(jvp_cnn, a_tangent_on_the_bias_alone)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_ones(t, AG_F64, 4, (int64_t[]){2, 1, 3, 3});
    ag_tensor *w = ag_ones(t, AG_F64, 4, (int64_t[]){2, 1, 2, 2});
    ag_tensor *b = ag_dual(t, ag_zeros(t, AG_F64, 1, (int64_t[]){2}),
                           ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (const double[]){1.5, -2}));
    ag_tensor *y = ag_conv2d(t, x, w, b, 1, 1, 0, 0, 1, 1, 1);
    ag_tensor *dy = ag_tangent(y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_not_null(dy);
    cr_assert_eq(ag_numel(dy), 2 * 2 * 2 * 2);
    for (int64_t i = 0; i < ag_numel(dy); i++)
        cr_expect_eq(ag_get(dy, i), (i / 4) % 2 ? -2.0 : 1.5, "element %lld", (long long)i);
    ag_tape_free(t);
}
