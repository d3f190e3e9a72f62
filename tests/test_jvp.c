/*
** test_jvp.c: forward mode (issue 15). For every case of op_cases.h, in
** f64: the tangent that forward mode computes (J v) against central
** differences along v; <u, J v> from forward mode against <J^T u, v> from
** reverse mode; and forward-over-reverse, the tangent of a gradient (H v),
** against central differences of the gradient. Then the API itself: duals,
** parameters, ops without a JVP rule, bad input.
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>

#include "op_cases.h"

static const double STEP = 1e-6;
static const double TOLERANCE = 1e-6;

/* Directions and weights in [-1, 1) of x's shape; 'salt' picks the stream. */
static ag_tensor *random_like(ag_tape *t, const ag_tensor *x, uint64_t salt)
{
    ag_rng r;
    ag_rng_seed(&r, 0x6a7670ull + salt);
    return ag_rand(t, &r, ag_dtype_of(x), ag_rank(x), ag_shape(x), -1.0, 1.0);
}

/* x[i] + s v[i], as fresh leaves. */
static void shifted_inputs(ag_tape *t, int n, ag_tensor *const *x, ag_tensor *const *v, double s,
                           ag_tensor **out)
{
    for (int i = 0; i < n; i++) {
        out[i] = ag_zeros(t, AG_F64, ag_rank(x[i]), ag_shape(x[i]));
        for (int64_t j = 0; j < ag_numel(x[i]); j++)
            ag_set(out[i], j, ag_get(x[i], j) + s * ag_get(v[i], j));
    }
}

static double dot(const ag_tensor *a, const ag_tensor *b)
{
    double s = 0;
    for (int64_t j = 0; j < ag_numel(a); j++)
        s += ag_get(a, j) * ag_get(b, j);
    return s;
}

static bool close(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

ParameterizedTestParameters(jvp, matches_finite_differences) { return case_indices(); }

ParameterizedTest(size_t *index, jvp, matches_finite_differences)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3], *v[3], *dual[3], *plus[3], *minus[3];
    case_inputs(t, c, AG_F64, x);
    for (int i = 0; i < c->n; i++) {
        v[i] = random_like(t, x[i], (uint64_t)i);
        dual[i] = ag_dual(t, x[i], v[i]);
    }
    ag_tensor *y = case_apply(t, dual, c);
    ag_tensor *jv = ag_tangent(y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    shifted_inputs(t, c->n, x, v, STEP, plus);
    shifted_inputs(t, c->n, x, v, -STEP, minus);
    ag_tensor *yp = case_apply(t, plus, c), *ym = case_apply(t, minus, c);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    for (int64_t j = 0; j < ag_numel(y); j++) {
        double fd = (ag_get(yp, j) - ag_get(ym, j)) / (2 * STEP);
        double got = jv ? ag_get(jv, j) : 0.0;
        cr_expect(close(got, fd, TOLERANCE), "%s, %s: element %lld: JVP %.12g, finite differences %.12g",
                  c->op, c->what, (long long)j, got, fd);
    }
    ag_tape_free(t);
}

ParameterizedTestParameters(jvp, agrees_with_reverse_mode) { return case_indices(); }

ParameterizedTest(size_t *index, jvp, agrees_with_reverse_mode)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3], *v[3], *dual[3], *g[3];
    case_inputs(t, c, AG_F64, x);
    for (int i = 0; i < c->n; i++) {
        v[i] = random_like(t, x[i], (uint64_t)i);
        dual[i] = ag_dual(t, x[i], v[i]);
    }
    ag_tensor *jv = ag_tangent(case_apply(t, dual, c));
    for (int i = 0; i < c->n; i++)
        ag_requires_grad(x[i]);
    ag_tensor *y = case_apply(t, x, c);
    ag_tensor *u = random_like(t, y, 7);
    ag_gradients(t, ag_sum(t, ag_mul(t, u, y)), NULL, c->n, x, g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    double forward = jv ? dot(u, jv) : 0.0, reverse = 0.0;
    for (int i = 0; i < c->n; i++)
        reverse += dot(g[i], v[i]);
    cr_expect(close(forward, reverse, 1e-10), "%s, %s: <u, Jv> = %.15g but <J^T u, v> = %.15g",
              c->op, c->what, forward, reverse);
    ag_tape_free(t);
}

/* s = sum(w y + y^2 / 2) of the case's y: the square makes the gradient
** depend on x through every op's vjp as well as through y. */
static ag_tensor *scalar_of(ag_tape *t, ag_tensor *y)
{
    ag_tensor *w = random_like(t, y, 11);
    return ag_add(t, ag_sum(t, ag_mul(t, w, y)), ag_mul_scalar(t, ag_sum(t, ag_square(t, y)), 0.5));
}

static void gradient_at(ag_tape *t, const op_case *c, ag_tensor *const *x, ag_tensor **g)
{
    for (int i = 0; i < c->n; i++)
        ag_requires_grad(x[i]);
    ag_gradients(t, scalar_of(t, case_apply(t, x, c)), NULL, c->n, x, g, 0);
}

ParameterizedTestParameters(jvp, of_a_gradient_is_a_hessian_vector_product) { return case_indices(); }

ParameterizedTest(size_t *index, jvp, of_a_gradient_is_a_hessian_vector_product)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3], *v[3], *dual[3], *g[3], *plus[3], *minus[3], *gp[3], *gm[3];
    case_inputs(t, c, AG_F64, x);
    for (int i = 0; i < c->n; i++) {
        v[i] = random_like(t, x[i], (uint64_t)i);
        dual[i] = ag_dual(t, x[i], v[i]);
    }
    gradient_at(t, c, dual, g);
    ag_tensor *hv[3];
    for (int i = 0; i < c->n; i++)
        hv[i] = ag_tangent(g[i]);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    shifted_inputs(t, c->n, x, v, STEP, plus);
    shifted_inputs(t, c->n, x, v, -STEP, minus);
    gradient_at(t, c, plus, gp);
    gradient_at(t, c, minus, gm);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    for (int i = 0; i < c->n; i++)
        for (int64_t j = 0; j < ag_numel(g[i]); j++) {
            double fd = (ag_get(gp[i], j) - ag_get(gm[i], j)) / (2 * STEP);
            double got = hv[i] ? ag_get(hv[i], j) : 0.0;
            cr_expect(close(got, fd, TOLERANCE),
                      "%s, %s: input %d element %lld: Hv %.12g, finite differences %.12g", c->op,
                      c->what, i, (long long)j, got, fd);
        }
    ag_tape_free(t);
}

Test(jvp, every_op_has_a_rule)
{
    cr_assert(case_exists_for("add"));
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    for (size_t i = 0; i < n; i++)
        cr_expect(ops[i]->jvp != NULL, "op '%s' has no JVP rule", ops[i]->name);
}

/* ------------------------------------------------------------- the API */

Test(jvp, a_known_derivative)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (double[]){0.5, -1.0, 2.0});
    ag_tensor *v = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (double[]){1.0, 2.0, -0.5});
    ag_tensor *x = ag_dual(t, x0, v);
    ag_tensor *y = ag_sin(t, ag_mul(t, x, x));
    ag_tensor *dy = ag_tangent(y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_not_null(dy);
    for (int i = 0; i < 3; i++) {
        double a = ag_get(x0, i);
        cr_expect_float_eq(ag_get(dy, i), 2 * a * cos(a * a) * ag_get(v, i), 1e-15, "element %d", i);
    }
    cr_expect_null(ag_tangent(x0), "x0 itself carries no tangent");
    ag_tape_free(t);
}

Test(jvp, what_depends_on_no_dual_has_no_tangent)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_scalar(t, AG_F64, 2.0), *b = ag_scalar(t, AG_F64, 3.0);
    ag_tensor *x = ag_dual(t, a, ag_scalar(t, AG_F64, 1.0));
    ag_tensor *c = ag_mul(t, b, b);
    ag_tensor *mask = ag_gt(t, x, b);
    cr_expect_null(ag_tangent(c));
    cr_expect_null(ag_tangent(mask), "a comparison is a constant");
    cr_expect_float_eq(ag_item(ag_tangent(ag_mul(t, x, c))), 9.0, 1e-15);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(jvp, a_dual_replaces_the_tangent_it_is_given)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_dual(t, ag_scalar(t, AG_F64, 2.0), ag_scalar(t, AG_F64, 1.0));
    ag_tensor *y = ag_dual(t, ag_square(t, x), ag_scalar(t, AG_F64, 10.0));
    cr_expect_float_eq(ag_item(ag_tangent(ag_mul_scalar(t, y, 3.0))), 30.0, 1e-15);
    cr_expect_float_eq(ag_item(ag_tangent(ag_square(t, x))), 4.0, 1e-15);
    ag_tape_free(t);
}

Test(jvp, a_parameter_takes_a_tangent_through_its_dual)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *p = ag_param_new(AG_F64, 1, (int64_t[]){2});
    ag_set(p, 0, 1.5);
    ag_set(p, 1, -2.0);
    ag_tensor *v = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){1.0, 1.0});
    ag_tensor *y = ag_sum(t, ag_exp(t, ag_dual(t, p, v)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_item(ag_tangent(y)), exp(1.5) + exp(-2.0), 1e-14);
    ag_backward(t, y);
    cr_expect_float_eq(ag_get(ag_grad(p), 0), exp(1.5), 1e-14, "gradients still reach p");
    cr_expect_null(ag_tangent(p));
    ag_tape_free(t);
    ag_param_free(p);
}

/* ag_backward while tangents are live: ag_grad of a tape leaf carries H v. */
Test(jvp, backward_gives_hessian_vector_products)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){1.0, 2.0}));
    ag_tensor *x = ag_dual(t, x0, ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){1.0, 0.0}));
    /* f = x0^2 x1 + x1^3: H = [[2 x1, 2 x0], [2 x0, 6 x1]] */
    ag_tensor *a = ag_index(t, x, 1, (int64_t[]){0}), *b = ag_index(t, x, 1, (int64_t[]){1});
    ag_tensor *f = ag_add(t, ag_mul(t, ag_square(t, a), b), ag_pow_scalar(t, b, 3.0));
    ag_backward(t, f);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tensor *hv = ag_tangent(ag_grad(x0));
    cr_assert_not_null(hv);
    cr_expect_float_eq(ag_get(hv, 0), 4.0, 1e-14);
    cr_expect_float_eq(ag_get(hv, 1), 2.0, 1e-14);
    ag_tape_free(t);
}

static int identity_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    memcpy(ag_data(out), ag_data(ag_input(out, 0)), (size_t)ag_numel(out) * sizeof(double));
    return 0;
}
static void identity_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)t, (void)out;
    gin[0] = g;
}
static const ag_op no_jvp_op = {.name = "my_identity", .forward = identity_forward, .vjp = identity_vjp};

Test(jvp, an_op_without_a_rule_says_so)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_dual(t, ag_scalar(t, AG_F64, 2.0), ag_scalar(t, AG_F64, 1.0));
    ag_tensor *y = ag_custom(t, &no_jvp_op, NULL, 1, &x, AG_F64, 0, NULL);
    cr_expect_eq(ag_item(y), 2.0, "the value is computed");
    cr_expect_null(ag_tangent(y));
    cr_assert_eq(ag_tape_status(t), AG_EUNSUPPORTED);
    cr_expect(strstr(ag_tape_errmsg(t), "my_identity") && strstr(ag_tape_errmsg(t), "JVP"), "%s",
              ag_tape_errmsg(t));
    ag_tape_free(t);
}

static ag_tensor *wrong_shape_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)out, (void)tan;
    return ag_zeros(t, AG_F64, 1, (int64_t[]){5});
}
static const ag_op bad_jvp_op = {.name = "bad_jvp", .forward = identity_forward,
                                 .vjp = identity_vjp, .jvp = wrong_shape_jvp};

Test(jvp, a_rule_of_the_wrong_shape_is_refused)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    ag_tensor *x = ag_dual(t, x0, ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_custom(t, &bad_jvp_op, NULL, 1, &x, AG_F64, 1, (int64_t[]){3});
    cr_assert_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "bad_jvp") && strstr(ag_tape_errmsg(t), "[5]"), "%s",
              ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(jvp, bad_input)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    cr_expect(ag_is_nil(ag_dual(t, x, NULL)));
    cr_expect_eq(ag_tape_status(t), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(t), "ag_dual"), "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    ag_dual(t, x, ag_zeros(t, AG_F64, 1, (int64_t[]){4}));
    cr_expect_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "[4]") && strstr(ag_tape_errmsg(t), "[3]"), "%s",
              ag_tape_errmsg(t));
    ag_tape_reset(t);
    x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    ag_dual(t, x, ag_zeros(t, AG_F32, 1, (int64_t[]){3}));
    cr_expect_eq(ag_tape_status(t), AG_EDTYPE);
    cr_expect_null(ag_tangent(NULL));
    ag_tape_reset(t);
    cr_expect_null(ag_tangent(x), "a stale tensor");
    cr_expect_null(ag_tangent(ag_tape_nil(t)));
    ag_tape_free(t);
}

/* f32 tangents round as f32 values do: the same rule in either dtype. */
Test(jvp, f32_agrees_with_f64)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x32 = ag_dual(t, ag_full(t, AG_F32, 1, (int64_t[]){4}, 0.75),
                             ag_full(t, AG_F32, 1, (int64_t[]){4}, 1.0));
    ag_tensor *x64 = ag_dual(t, ag_full(t, AG_F64, 1, (int64_t[]){4}, 0.75),
                             ag_full(t, AG_F64, 1, (int64_t[]){4}, 1.0));
    ag_tensor *d32 = ag_tangent(ag_tanh(t, ag_exp(t, x32)));
    ag_tensor *d64 = ag_tangent(ag_tanh(t, ag_exp(t, x64)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_dtype_of(d32), AG_F32);
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(ag_get(d32, i), ag_get(d64, i), 1e-5 * fabs(ag_get(d64, i)));
    ag_tape_free(t);
}
