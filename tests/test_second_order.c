/*
** test_second_order.c: gradients of gradients (issue 2). ag_gradients with
** create_graph records the vector-Jacobian products on the tape, so they can
** be differentiated again: known second derivatives, a Hessian-vector
** product and a full Hessian against finite differences, and for every case
** of op_cases.h a gradient check of a function built from a gradient, which
** checks that each op's vjp is itself correctly differentiable.
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>

#include "op_cases.h"

static const double TOLERANCE = 1e-6;

/* Fixed weights in [0.5, 1.5) of x's shape; 'salt' picks the stream. */
static ag_tensor *weights_like(ag_tape *t, const ag_tensor *x, uint64_t salt)
{
    ag_rng r;
    ag_rng_seed(&r, 0x77656967ull + salt);
    return ag_rand(t, &r, ag_dtype_of(x), ag_rank(x), ag_shape(x), 0.5, 1.5);
}

/* h(x) = sum_i <r_i, dS/dx_i> with S = sum(w y + v y^2 / 2), y = case(x).
** The square makes the seed of every vjp depend on x, so the check covers
** both a vjp's dependence on its upstream gradient and on its inputs. */
static ag_tensor *contracted_gradient(ag_tape *t, ag_tensor *const *x, void *ud)
{
    const op_case *c = ud;
    ag_tensor *y = case_apply(t, x, c);
    ag_tensor *w = weights_like(t, y, 1), *v = weights_like(t, y, 2);
    ag_tensor *s = ag_add(t, ag_sum(t, ag_mul(t, w, y)),
                          ag_mul_scalar(t, ag_sum(t, ag_mul(t, v, ag_square(t, y))), 0.5));
    ag_tensor *g[3];
    ag_gradients(t, s, NULL, c->n, x, g, 1);
    ag_tensor *h = ag_scalar(t, ag_dtype_of(y), 0.0);
    for (int i = 0; i < c->n; i++)
        h = ag_add(t, h, ag_sum(t, ag_mul(t, weights_like(t, g[i], 3 + (uint64_t)i), g[i])));
    return h;
}

ParameterizedTestParameters(second_order, vjp_is_differentiable)
{
    return case_indices();
}

ParameterizedTest(size_t *index, second_order, vjp_is_differentiable)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3];
    case_inputs(t, c, AG_F64, x);
    ag_gradcheck_report rep;
    char err[256];
    ag_status st = ag_gradcheck(contracted_gradient, (void *)c, c->n, x, 0, &rep, err, sizeof err);
    cr_assert_eq(st, AG_OK, "%s, %s: %s", c->op, c->what, err);
    cr_assert_leq(rep.max_rel_err, TOLERANCE,
                  "%s, %s: d/dx <r, grad>: input %d element %lld: analytic %.12g, numeric %.12g",
                  c->op, c->what, rep.input, (long long)rep.element, rep.analytic, rep.numeric);
    ag_tape_free(t);
}

Test(second_order, every_op_has_a_case)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    cr_assert(n > 0 && n <= MAX_OPS, "%zu ops", n);
    for (size_t i = 0; i < n; i++)
        cr_expect(case_exists_for(ops[i]->name),
                  "op '%s' is in an ops file's table but has no case in tests/op_cases.h",
                  ops[i]->name);
}

/* Every op's vjp must record in create-graph mode, and only there. */
Test(second_order, vjps_record_only_in_create_graph_mode)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_full(t, AG_F64, 1, (int64_t[]){5}, 0.5));
    ag_tensor *y = ag_sum(t, ag_pow_scalar(t, ag_slice(t, x, 0, 1, 5, 2), 3.0));
    size_t before = ag_tape_entries(t);
    ag_tensor *g;
    ag_gradients(t, y, NULL, 1, &x, &g, 0);
    cr_assert_eq(ag_tape_entries(t), before, "a plain backward recorded %zu entries",
                 ag_tape_entries(t) - before);
    cr_assert_not(ag_requires_grad_of(g));
    ag_gradients(t, y, NULL, 1, &x, &g, 1);
    cr_assert_gt(ag_tape_entries(t), before);
    cr_assert(ag_requires_grad_of(g));
    /* slice's vjp is slice_grad, recorded so that it can be differentiated. */
    cr_assert_str_eq(ag_op_name(g), "slice_grad");
    const double want[5] = {0, 0.75, 0, 0.75, 0};
    for (int i = 0; i < 5; i++)
        cr_expect_float_eq(ag_get(g, i), want[i], 1e-15, "element %d", i);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* ------------------------------------------------- known derivatives */

typedef ag_tensor *(*cube_fn)(ag_tape *t, ag_tensor *x);
static ag_tensor *cube_pow_scalar(ag_tape *t, ag_tensor *x) { return ag_pow_scalar(t, x, 3.0); }
static ag_tensor *cube_mul(ag_tape *t, ag_tensor *x) { return ag_mul(t, ag_mul(t, x, x), x); }
static ag_tensor *cube_pow(ag_tape *t, ag_tensor *x)
{
    return ag_pow(t, x, ag_scalar(t, AG_F64, 3.0));
}

/* x^3 at 2: 12, then 12, then 6. */
static void check_cube(cube_fn cube, const char *how)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 2.0));
    ag_tensor *y = cube(t, x), *d1, *d2, *d3;
    ag_gradients(t, y, NULL, 1, &x, &d1, 1);
    ag_gradients(t, d1, NULL, 1, &x, &d2, 1);
    ag_gradients(t, d2, NULL, 1, &x, &d3, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", how, ag_tape_errmsg(t));
    cr_expect_float_eq(ag_item(y), 8.0, 1e-12, "%s", how);
    cr_expect_float_eq(ag_item(d1), 12.0, 1e-12, "%s: first derivative %g", how, ag_item(d1));
    cr_expect_float_eq(ag_item(d2), 12.0, 1e-12, "%s: second derivative %g", how, ag_item(d2));
    cr_expect_float_eq(ag_item(d3), 6.0, 1e-12, "%s: third derivative %g", how, ag_item(d3));
    ag_tape_free(t);
}

Test(second_order, cube_by_pow_scalar) { check_cube(cube_pow_scalar, "pow_scalar(x, 3)"); }
Test(second_order, cube_by_products) { check_cube(cube_mul, "x * x * x"); }
Test(second_order, cube_by_pow) { check_cube(cube_pow, "pow(x, 3)"); }

/* ----------------------------------- Hessian-vector product of an MLP */

/* A 3-4-1 tanh network on a fixed batch: loss = mean((tanh(X W1 + b1) W2 + b2 - Y)^2). */
enum { BATCH = 5, N_IN = 3, N_HID = 4, N_PARAMS = 4 };
static const int PARAM_RANK[N_PARAMS] = {2, 1, 2, 1};
static const int64_t PARAM_SHAPE[N_PARAMS][2] = {{N_IN, N_HID}, {N_HID}, {N_HID, 1}, {1}};
static const int64_t PARAM_SIZE[N_PARAMS] = {N_IN * N_HID, N_HID, N_HID, 1};
enum { N_THETA = N_IN * N_HID + N_HID + N_HID + 1 };

typedef struct mlp_problem {
    double x[BATCH * N_IN], y[BATCH], theta[N_THETA], v[N_THETA];
} mlp_problem;

static mlp_problem make_problem(void)
{
    mlp_problem p;
    ag_rng r;
    ag_rng_seed(&r, 34);
    for (int i = 0; i < BATCH * N_IN; i++)
        p.x[i] = ag_rng_normal(&r);
    for (int i = 0; i < BATCH; i++)
        p.y[i] = ag_rng_normal(&r);
    for (int i = 0; i < N_THETA; i++) {
        p.theta[i] = 0.7 * ag_rng_normal(&r);
        p.v[i] = ag_rng_normal(&r);
    }
    return p;
}

/* Leaves holding theta (plus 'step' times v), split into W1, b1, W2, b2. */
static void mlp_params(ag_tape *t, const mlp_problem *p, double step, ag_tensor **params)
{
    int64_t off = 0;
    for (int k = 0; k < N_PARAMS; k++) {
        params[k] = ag_zeros(t, AG_F64, PARAM_RANK[k], PARAM_SHAPE[k]);
        for (int64_t i = 0; i < PARAM_SIZE[k]; i++)
            ag_set(params[k], i, p->theta[off + i] + step * p->v[off + i]);
        ag_requires_grad(params[k]);
        off += PARAM_SIZE[k];
    }
}

static ag_tensor *mlp_loss(ag_tape *t, const mlp_problem *p, ag_tensor *const *params)
{
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){BATCH, N_IN}, p->x);
    ag_tensor *y = ag_tensor_from(t, AG_F64, 2, (int64_t[]){BATCH, 1}, p->y);
    ag_tensor *h = ag_tanh(t, ag_add(t, ag_matmul(t, x, params[0]), params[1]));
    ag_tensor *out = ag_add(t, ag_matmul(t, h, params[2]), params[3]);
    return ag_mean(t, ag_square(t, ag_sub(t, out, y)));
}

/* The plain gradient of the loss at theta + step v, flattened. */
static void mlp_gradient(const mlp_problem *p, double step, double *grad)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *params[N_PARAMS], *g[N_PARAMS];
    mlp_params(t, p, step, params);
    ag_gradients(t, mlp_loss(t, p, params), NULL, N_PARAMS, params, g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    int64_t off = 0;
    for (int k = 0; k < N_PARAMS; k++)
        for (int64_t i = 0; i < PARAM_SIZE[k]; i++)
            grad[off++] = ag_get(g[k], i);
    ag_tape_free(t);
}

Test(second_order, hessian_vector_product_of_a_tanh_mlp)
{
    mlp_problem p = make_problem();
    ag_tape *t = ag_tape_new();
    ag_tensor *params[N_PARAMS], *g[N_PARAMS], *hv[N_PARAMS];
    mlp_params(t, &p, 0.0, params);
    ag_gradients(t, mlp_loss(t, &p, params), NULL, N_PARAMS, params, g, 1);
    /* H v is the gradient of <grad, v>. */
    ag_tensor *dot = ag_scalar(t, AG_F64, 0.0);
    int64_t off = 0;
    for (int k = 0; k < N_PARAMS; k++) {
        ag_tensor *vk = ag_tensor_from(t, AG_F64, PARAM_RANK[k], PARAM_SHAPE[k], p.v + off);
        dot = ag_add(t, dot, ag_sum(t, ag_mul(t, g[k], vk)));
        off += PARAM_SIZE[k];
    }
    ag_gradients(t, dot, NULL, N_PARAMS, params, hv, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));

    const double eps = 1e-5;
    double plus[N_THETA], minus[N_THETA];
    mlp_gradient(&p, eps, plus);
    mlp_gradient(&p, -eps, minus);
    off = 0;
    double norm = 0;
    for (int k = 0; k < N_PARAMS; k++)
        for (int64_t i = 0; i < PARAM_SIZE[k]; i++, off++) {
            double numeric = (plus[off] - minus[off]) / (2 * eps), analytic = ag_get(hv[k], i);
            norm += fabs(analytic);
            cr_expect(fabs(analytic - numeric) <= TOLERANCE * fmax(1.0, fabs(numeric)),
                      "(Hv)[%lld]: analytic %.12g, finite differences %.12g", (long long)off,
                      analytic, numeric);
        }
    cr_assert_gt(norm, 0.1, "the product should not vanish for these weights");
    ag_tape_free(t);
}

/* ------------------------------------------- the Hessian of f(x, y, z) */

/* f = x y z + sin(x) e^y + z^3 / (1 + x^2) */
static ag_tensor *f3(ag_tape *t, ag_tensor *const *v)
{
    ag_tensor *x = v[0], *y = v[1], *z = v[2];
    ag_tensor *xyz = ag_mul(t, ag_mul(t, x, y), z);
    ag_tensor *se = ag_mul(t, ag_sin(t, x), ag_exp(t, y));
    ag_tensor *frac = ag_div(t, ag_pow_scalar(t, z, 3.0), ag_add_scalar(t, ag_square(t, x), 1.0));
    return ag_add(t, ag_add(t, xyz, se), frac);
}

static void f3_leaves(ag_tape *t, const double *at, ag_tensor **v)
{
    for (int i = 0; i < 3; i++)
        v[i] = ag_requires_grad(ag_scalar(t, AG_F64, at[i]));
}

static void f3_gradient(const double *at, double *grad)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *v[3], *g[3];
    f3_leaves(t, at, v);
    ag_gradients(t, f3(t, v), NULL, 3, v, g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 3; i++)
        grad[i] = ag_item(g[i]);
    ag_tape_free(t);
}

Test(second_order, full_hessian_of_three_variables)
{
    const double at[3] = {0.7, -0.4, 1.3};
    double x = at[0], y = at[1], z = at[2], q = 1 + x * x;
    const double exact[3][3] = {
        {-sin(x) * exp(y) + z * z * z * (6 * x * x - 2) / (q * q * q), z + cos(x) * exp(y),
         y - 6 * x * z * z / (q * q)},
        {z + cos(x) * exp(y), sin(x) * exp(y), x},
        {y - 6 * x * z * z / (q * q), x, 6 * z / q},
    };
    ag_tape *t = ag_tape_new();
    ag_tensor *v[3], *g[3], *row[3];
    f3_leaves(t, at, v);
    ag_gradients(t, f3(t, v), NULL, 3, v, g, 1);
    const double eps = 1e-5;
    for (int i = 0; i < 3; i++) {
        ag_gradients(t, g[i], NULL, 3, v, row, 0);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        double shifted[3], plus[3], minus[3];
        memcpy(shifted, at, sizeof shifted);
        shifted[i] = at[i] + eps;
        f3_gradient(shifted, plus);
        shifted[i] = at[i] - eps;
        f3_gradient(shifted, minus);
        for (int j = 0; j < 3; j++) {
            /* Row i of the Hessian is d(grad)/dx_i, by symmetry column i. */
            double h = ag_item(row[j]), numeric = (plus[j] - minus[j]) / (2 * eps);
            cr_expect_float_eq(h, exact[i][j], 1e-12, "H[%d][%d] = %.15g, exactly %.15g", i, j, h,
                               exact[i][j]);
            cr_expect(fabs(h - numeric) <= TOLERANCE * fmax(1.0, fabs(numeric)),
                      "H[%d][%d] = %.12g, finite differences %.12g", i, j, h, numeric);
        }
    }
    ag_tape_free(t);
}

/* -------------------------------- a gradient penalty on a parameter */

/* loss = f(w) + |grad f(w)|^2 with f = sum w^3, through ag_backward into a
** parameter: d/dw = 3 w^2 + 2 (3 w^2)(6 w) = 3 w^2 + 36 w^3. */
Test(second_order, gradient_penalty_reaches_a_parameter)
{
    ag_tensor *w = ag_param_new(AG_F64, 1, (int64_t[]){3});
    cr_assert_not_null(w);
    const double wv[3] = {0.5, -1.0, 2.0};
    for (int i = 0; i < 3; i++)
        ag_set(w, i, wv[i]);
    ag_tape *t = ag_tape_new();
    for (int pass = 1; pass <= 2; pass++) {
        ag_tensor *f = ag_sum(t, ag_pow_scalar(t, w, 3.0)), *g;
        ag_gradients(t, f, NULL, 1, &w, &g, 1);
        ag_backward(t, ag_add(t, f, ag_sum(t, ag_square(t, g))));
        cr_assert_eq(ag_tape_status(t), AG_OK, "pass %d: %s", pass, ag_tape_errmsg(t));
        /* gradients accumulate across passes */
        for (int i = 0; i < 3; i++) {
            double x = wv[i], want = pass * (3 * x * x + 36 * x * x * x);
            cr_expect_float_eq(ag_get(ag_grad(w), i), want, 1e-12,
                               "pass %d, w[%d]: %.15g, not %.15g", pass, i,
                               ag_get(ag_grad(w), i), want);
        }
        ag_tape_reset(t);
    }
    ag_tape_free(t);
    ag_param_free(w);
}

/* A seed that depends on x is part of the graph too: with g = 2 x sin x
** (the vjp of x^2 seeded by sin x), dg/dx = 2 sin x + 2 x cos x. */
Test(second_order, a_seed_that_depends_on_x_is_differentiated)
{
    ag_tape *t = ag_tape_new();
    const double xv[3] = {0.3, -0.7, 1.1};
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, xv)), *g, *h;
    ag_gradients(t, ag_square(t, x), ag_sin(t, x), 1, &x, &g, 1);
    ag_gradients(t, ag_sum(t, g), NULL, 1, &x, &h, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 3; i++) {
        double v = xv[i];
        cr_expect_float_eq(ag_get(g, i), 2 * v * sin(v), 1e-14, "g[%d]", i);
        cr_expect_float_eq(ag_get(h, i), 2 * sin(v) + 2 * v * cos(v), 1e-14, "h[%d]", i);
    }
    ag_tape_free(t);
}
