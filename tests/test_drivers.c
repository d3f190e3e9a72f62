/*
** test_drivers.c: ag_vjp, ag_jvp, ag_jacobian, ag_hessian and ag_hvp
** (issue 15). Each against central differences, and against each other:
** a Jacobian by rows equals one by columns; a Hessian is symmetric and the
** Jacobian of the gradient; H v from ag_hvp is the Hessian times v; u^T J
** and J v from the products are the Jacobian's. Rosenbrock's Hessian
** against its closed form. Then f32, and bad input of every kind.
**
** The functions are made of elementwise ops, whose JVP rules exist from
** the start; a test that needs more (vector Rosenbrock: slices and a sum)
** is skipped, saying so, until their rules are in.
*/
#include <criterion/criterion.h>

#include <math.h>
#include <string.h>

#include "internal.h"

static bool close(double got, double want, double tol)
{
    return fabs(got - want) <= tol * (1.0 + fabs(want));
}

static bool has_jvp_rule(const char *name)
{
    for (const ag_op *const *const *table = agi_op_tables; *table; table++)
        for (const ag_op *const *op = *table; *op; op++)
            if (!strcmp((*op)->name, name))
                return (*op)->jvp != NULL;
    return false;
}

/* The first of names[0..n) whose op has no JVP rule yet, or NULL. */
static const char *missing_rule(const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!has_jvp_rule(names[i]))
            return names[i];
    return NULL;
}

/* ------------------------------------------------------------ functions */

/* Rosenbrock's function of n scalars x[0..n):
** sum over i < n-1 of (1 - x_i)^2 + 100 (x_{i+1} - x_i^2)^2. */
static ag_tensor *rosenbrock(ag_tape *t, ag_tensor *const *x, void *ud)
{
    int n = *(const int *)ud;
    ag_tensor *s = ag_scalar(t, ag_dtype_of(x[0]), 0.0);
    for (int i = 0; i + 1 < n; i++) {
        ag_tensor *r = ag_add_scalar(t, ag_neg(t, x[i]), 1.0);
        ag_tensor *q = ag_sub(t, x[i + 1], ag_square(t, x[i]));
        s = ag_add(t, s, ag_add(t, ag_square(t, r), ag_mul_scalar(t, ag_square(t, q), 100.0)));
    }
    return s;
}

static double rosenbrock_hessian(const double *x, int n, int i, int k)
{
    if (i == k)
        return (i + 1 < n ? 2 + 1200 * x[i] * x[i] - 400 * x[i + 1] : 0) + (i > 0 ? 200 : 0);
    if (k == i + 1)
        return -400 * x[i];
    if (i == k + 1)
        return -400 * x[k];
    return 0;
}

static double rosenbrock_gradient(const double *x, int n, int i)
{
    double g = 0;
    if (i + 1 < n)
        g += -2 * (1 - x[i]) - 400 * x[i] * (x[i + 1] - x[i] * x[i]);
    if (i > 0)
        g += 200 * (x[i] - x[i - 1] * x[i - 1]);
    return g;
}

/* A scalar function of three scalars in which every pair interacts:
** a b c + sin(a) e^b + c^3 / b + a^2 tanh(c). */
static ag_tensor *mixed(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    ag_tensor *a = x[0], *b = x[1], *c = x[2];
    ag_tensor *s = ag_mul(t, ag_mul(t, a, b), c);
    s = ag_add(t, s, ag_mul(t, ag_sin(t, a), ag_exp(t, b)));
    s = ag_add(t, s, ag_div(t, ag_pow_scalar(t, c, 3.0), b));
    return ag_add(t, s, ag_mul(t, ag_square(t, a), ag_tanh(t, c)));
}

/* A vector function of a [2,3] matrix and a scalar, elementwise but with
** the scalar in every element: y = sin(m) s + e^(m s) / (1 + m^2). Its
** inputs broadcast, so reverse mode sums the scalar's gradient back. */
static ag_tensor *vector_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    ag_tensor *m = x[0], *s = x[1];
    ag_tensor *a = ag_mul(t, ag_sin(t, m), s);
    ag_tensor *b = ag_div(t, ag_exp(t, ag_mul(t, m, s)), ag_add_scalar(t, ag_square(t, m), 1.0));
    return ag_add(t, a, b);
}

/* ------------------------------------------------------------- helpers */

static ag_tensor *vector(ag_tape *t, ag_dtype dt, int n, const double *v)
{
    ag_tensor *x = ag_zeros(t, dt, 1, (int64_t[]){n});
    for (int i = 0; i < n; i++)
        ag_set(x, i, v[i]);
    return x;
}

static void scalars(ag_tape *t, ag_dtype dt, int n, const double *v, ag_tensor **x)
{
    for (int i = 0; i < n; i++)
        x[i] = ag_scalar(t, dt, v[i]);
}

/* f at x with x[k][j] moved by h, evaluated on a tape of its own. */
static void f_moved(ag_fn f, void *ud, int n, ag_tensor *const *x, int k, int64_t j, double h,
                    double *out, int64_t n_out)
{
    ag_tape *s = ag_tape_new();
    ag_tensor *xs[4];
    for (int i = 0; i < n; i++) {
        xs[i] = ag_tensor_from(s, AG_F64, ag_rank(x[i]), ag_shape(x[i]), ag_data(x[i]));
        if (i == k)
            ag_set(xs[i], j, ag_get(xs[i], j) + h);
    }
    ag_tensor *y = f(s, xs, ud);
    cr_assert_eq(ag_tape_status(s), AG_OK, "%s", ag_tape_errmsg(s));
    cr_assert_eq(ag_numel(y), n_out);
    for (int64_t r = 0; r < n_out; r++)
        out[r] = ag_get(y, r);
    ag_tape_free(s);
}

/* Every element of J (one per input) against central differences of f. */
static void expect_jacobian_is_finite_differences(ag_fn f, void *ud, int n, ag_tensor *const *x,
                                                  ag_tensor *const *jac, int64_t m, double tol)
{
    const double h = 1e-6;
    double up[64], down[64];
    cr_assert(m <= 64);
    for (int k = 0; k < n; k++)
        for (int64_t c = 0; c < ag_numel(x[k]); c++) {
            f_moved(f, ud, n, x, k, c, h, up, m);
            f_moved(f, ud, n, x, k, c, -h, down, m);
            for (int64_t r = 0; r < m; r++) {
                double fd = (up[r] - down[r]) / (2 * h);
                double got = ag_get(jac[k], r * ag_numel(x[k]) + c);
                cr_expect(close(got, fd, tol), "input %d: d y[%lld] / d x[%lld] = %.12g, "
                          "finite differences %.12g", k, (long long)r, (long long)c, got, fd);
            }
        }
}

/* ------------------------------------------------------------ jacobian */

Test(drivers, jacobian_by_rows_and_by_columns_agree_and_match_finite_differences)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2] = {ag_tensor_from_f64(t, 2, (int64_t[]){2, 3},
                                          (double[]){0.3, -0.7, 1.1, 0.5, -1.4, 0.9}),
                       ag_scalar(t, AG_F64, 0.8)};
    ag_tensor *rev[2], *fwd[2];
    ag_tensor *y = ag_jacobian(t, vector_fn, NULL, 2, x, AG_JACOBIAN_REVERSE, rev);
    ag_jacobian(t, vector_fn, NULL, 2, x, AG_JACOBIAN_FORWARD, fwd);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_rank(y), 2);
    cr_expect(close(ag_get(y, 0), sin(0.3) * 0.8 + exp(0.24) / 1.09, 1e-15));
    /* y.shape + x.shape: [2,3,2,3] and [2,3] */
    cr_assert_eq(ag_rank(rev[0]), 4);
    cr_assert_eq(ag_rank(fwd[0]), 4);
    int64_t want[4] = {2, 3, 2, 3};
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(ag_shape(rev[0])[i], want[i]);
        cr_expect_eq(ag_shape(fwd[0])[i], want[i]);
    }
    cr_assert_eq(ag_rank(rev[1]), 2);
    cr_assert_eq(ag_rank(fwd[1]), 2);
    for (int i = 0; i < 2; i++)
        for (int64_t j = 0; j < ag_numel(rev[i]); j++)
            cr_expect(close(ag_get(fwd[i], j), ag_get(rev[i], j), 1e-12),
                      "input %d element %lld: forward %.17g, reverse %.17g", i, (long long)j,
                      ag_get(fwd[i], j), ag_get(rev[i], j));
    /* Elementwise in m: off the diagonal d y / d m is exactly zero. */
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 6; c++)
            if (r != c)
                cr_expect_eq(ag_get(rev[0], r * 6 + c), 0.0);
    expect_jacobian_is_finite_differences(vector_fn, NULL, 2, x, rev, 6, 1e-7);
    ag_tape_free(t);
}

/* AUTO takes reverse mode (one call of f) when y has no more elements than
** the inputs, else forward mode (a first call, then one per input element). */
static ag_tensor *counted(ag_tape *t, ag_tensor *const *x, void *ud)
{
    int *calls = ud;
    ++*calls;
    /* y = x0 * [1, 2, 3]: three outputs */
    ag_tensor *k = ag_tensor_from_f64(t, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    return ag_mul(t, k, x[0]);
}

Test(drivers, auto_mode_chooses_by_shape)
{
    ag_tape *t = ag_tape_new();
    int calls = 0;
    ag_tensor *s = ag_scalar(t, AG_F64, 2.0), *jac;
    /* 3 outputs, 1 input: forward, 1 + 1 calls */
    ag_jacobian(t, counted, &calls, 1, &s, AG_JACOBIAN_AUTO, &jac);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(calls, 2);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(ag_get(jac, i), i + 1.0);
    calls = 0;
    ag_jacobian(t, counted, &calls, 1, &s, AG_JACOBIAN_FORWARD, &jac);
    cr_expect_eq(calls, 1, "forward mode asked for: one call per input element");
    calls = 0;
    ag_jacobian(t, counted, &calls, 1, &s, AG_JACOBIAN_REVERSE, &jac);
    cr_expect_eq(calls, 1, "reverse mode: one recording");
    for (int i = 0; i < 3; i++)
        cr_expect_eq(ag_get(jac, i), i + 1.0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* f may use what the caller has on the tape, and parameters. */
struct affine {
    ag_tensor *w;   /* a parameter */
    ag_tensor *b;   /* a constant of the caller's tape */
};

static ag_tensor *affine_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    const struct affine *a = ud;
    return ag_add(t, ag_mul(t, a->w, x[0]), ag_exp(t, ag_mul(t, a->b, x[0])));
}

Test(drivers, f_may_use_the_callers_tensors_and_parameters)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *w = ag_param_new(AG_F64, 1, (int64_t[]){2});
    ag_set(w, 0, 3.0);
    ag_set(w, 1, -1.0);
    struct affine a = {w, ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){0.5, 2.0})};
    ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){1.0, -0.5});
    ag_tensor *jr, *jf;
    ag_jacobian(t, affine_fn, &a, 1, &x, AG_JACOBIAN_REVERSE, &jr);
    ag_jacobian(t, affine_fn, &a, 1, &x, AG_JACOBIAN_FORWARD, &jf);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    double d0 = 3.0 + 0.5 * exp(0.5), d1 = -1.0 + 2.0 * exp(-1.0);
    double want[4] = {d0, 0, 0, d1};
    for (int i = 0; i < 4; i++) {
        cr_expect(close(ag_get(jr, i), want[i], 1e-15), "%d: %.17g", i, ag_get(jr, i));
        cr_expect(close(ag_get(jf, i), want[i], 1e-15), "%d: %.17g", i, ag_get(jf, i));
    }
    cr_expect_eq(ag_get(ag_grad(w), 0), 0.0, "a parameter's gradient is left alone");
    ag_tape_free(t);
    ag_param_free(w);
}

/* ------------------------------------------------------------- hessian */

Test(drivers, hessian_of_rosenbrock_is_its_closed_form)
{
    ag_tape *t = ag_tape_new();
    int n = 4;
    double v[4] = {-1.2, 1.0, 0.7, 1.3};
    ag_tensor *x[4], *g[4], *h[16];
    scalars(t, AG_F64, n, v, x);
    ag_tensor *y = ag_hessian(t, rosenbrock, &n, n, x, g, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    double f = 0;
    for (int i = 0; i + 1 < n; i++)
        f += (1 - v[i]) * (1 - v[i]) + 100 * pow(v[i + 1] - v[i] * v[i], 2);
    cr_expect(close(ag_item(y), f, 1e-15), "value %.17g, want %.17g", ag_item(y), f);
    for (int i = 0; i < n; i++) {
        cr_expect(close(ag_item(g[i]), rosenbrock_gradient(v, n, i), 1e-14), "g[%d]", i);
        for (int k = 0; k < n; k++) {
            cr_expect_eq(ag_rank(h[i * n + k]), 0, "scalars: rank-0 blocks");
            cr_expect(close(ag_item(h[i * n + k]), rosenbrock_hessian(v, n, i, k), 1e-14),
                      "H[%d][%d] = %.17g, want %.17g", i, k, ag_item(h[i * n + k]),
                      rosenbrock_hessian(v, n, i, k));
        }
    }
    /* The minimum (1, 1, ...): the gradient vanishes. */
    ag_tape_reset(t);
    double ones[4] = {1, 1, 1, 1};
    scalars(t, AG_F64, n, ones, x);
    y = ag_hessian(t, rosenbrock, &n, n, x, g, h);
    cr_expect_eq(ag_item(y), 0.0);
    for (int i = 0; i < n; i++)
        cr_expect_eq(ag_item(g[i]), 0.0);
    cr_expect_eq(ag_item(h[0]), 802.0);
    cr_expect_eq(ag_item(h[1]), -400.0);
    ag_tape_free(t);
}

/* Rosenbrock of one vector x of shape [d]: hess[0] is the [d, d] matrix. */
static ag_tensor *rosenbrock_vector(ag_tape *t, ag_tensor *const *x, void *ud)
{
    int64_t d = *(const int64_t *)ud;
    ag_tensor *a = ag_slice(t, x[0], 0, 0, d - 1, 1), *b = ag_slice(t, x[0], 0, 1, d, 1);
    ag_tensor *r = ag_add_scalar(t, ag_neg(t, a), 1.0), *q = ag_sub(t, b, ag_square(t, a));
    return ag_sum(t, ag_add(t, ag_square(t, r), ag_mul_scalar(t, ag_square(t, q), 100.0)));
}

Test(drivers, hessian_of_one_vector_is_a_matrix)
{
    static const char *const needs[] = {"slice", "slice_grad", "sum", "broadcast_to", "sum_to"};
    const char *missing = missing_rule(needs, 5);
    if (missing)
        cr_skip_test("op '%s' has no JVP rule yet", missing);
    ag_tape *t = ag_tape_new();
    int64_t d = 5;
    double v[5] = {-1.2, 1.0, 0.7, 1.3, -0.4};
    ag_tensor *x = vector(t, AG_F64, 5, v), *g, *h;
    ag_hessian(t, rosenbrock_vector, &d, 1, &x, &g, &h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_rank(h), 2);
    cr_expect(ag_shape(h)[0] == 5 && ag_shape(h)[1] == 5);
    for (int i = 0; i < 5; i++) {
        cr_expect(close(ag_get(g, i), rosenbrock_gradient(v, 5, i), 1e-14), "g[%d]", i);
        for (int k = 0; k < 5; k++)
            cr_expect(close(ag_get(h, i * 5 + k), rosenbrock_hessian(v, 5, i, k), 1e-14),
                      "H[%d][%d] = %.17g", i, k, ag_get(h, i * 5 + k));
    }
    ag_tape_free(t);
}

/* The gradient's element i, computed inside f with create_graph, so that
** the drivers differentiate a gradient. */
struct grad_of {
    ag_fn f;
    void *ud;
    int n, i;
};

static ag_tensor *gradient_element(ag_tape *t, ag_tensor *const *x, void *ud)
{
    const struct grad_of *go = ud;
    for (int k = 0; k < go->n; k++)
        ag_requires_grad(x[k]);
    ag_tensor *g[4];
    ag_gradients(t, go->f(t, x, go->ud), NULL, go->n, x, g, 1);
    return g[go->i];
}

Test(drivers, hessian_is_symmetric_and_the_jacobian_of_the_gradient)
{
    ag_tape *t = ag_tape_new();
    double v[3] = {0.7, 1.3, -0.4};
    ag_tensor *x[3], *g[3], *h[9];
    scalars(t, AG_F64, 3, v, x);
    ag_hessian(t, mixed, NULL, 3, x, g, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < i; k++)
            cr_expect(close(ag_item(h[i * 3 + k]), ag_item(h[k * 3 + i]), 1e-12),
                      "H[%d][%d] = %.17g but H[%d][%d] = %.17g", i, k, ag_item(h[i * 3 + k]), k,
                      i, ag_item(h[k * 3 + i]));
    /* Row i of H is the Jacobian of g_i, in both modes. */
    for (int i = 0; i < 3; i++) {
        struct grad_of go = {mixed, NULL, 3, i};
        ag_tensor *rev[3], *fwd[3];
        ag_tensor *gi = ag_jacobian(t, gradient_element, &go, 3, x, AG_JACOBIAN_REVERSE, rev);
        ag_jacobian(t, gradient_element, &go, 3, x, AG_JACOBIAN_FORWARD, fwd);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_expect(close(ag_item(gi), ag_item(g[i]), 1e-15));
        for (int k = 0; k < 3; k++) {
            double want = ag_item(h[i * 3 + k]);
            cr_expect(close(ag_item(rev[k]), want, 1e-12), "reverse d g%d / d x%d = %.17g, H %.17g",
                      i, k, ag_item(rev[k]), want);
            cr_expect(close(ag_item(fwd[k]), want, 1e-12), "forward d g%d / d x%d = %.17g, H %.17g",
                      i, k, ag_item(fwd[k]), want);
        }
        /* and the gradient's Jacobian against finite differences */
        expect_jacobian_is_finite_differences(gradient_element, &go, 3, x, rev, 1, 1e-7);
    }
    /* By hand: d2/da db = c + cos(a) e^b */
    cr_expect(close(ag_item(h[1]), -0.4 + cos(0.7) * exp(1.3), 1e-14));
    ag_tape_free(t);
}

/* f(m, s) = sum(sin(m) s^2), m of shape [2,2], s a scalar. */
static ag_tensor *sin_sum(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_sum(t, ag_mul(t, ag_sin(t, x[0]), ag_square(t, x[1])));
}

Test(drivers, hessian_blocks_have_the_shapes_of_input_pairs)
{
    static const char *const needs[] = {"sum", "sum_to", "broadcast_to"};
    const char *missing = missing_rule(needs, 3);
    if (missing)
        cr_skip_test("op '%s' has no JVP rule yet", missing);
    ag_tape *t = ag_tape_new();
    double m[4] = {0.5, 2.0, -1.0, 3.0}, s = 1.5;
    ag_tensor *x[2] = {ag_tensor_from_f64(t, 2, (int64_t[]){2, 2}, m), ag_scalar(t, AG_F64, s)};
    ag_tensor *h[4], *g[2];
    ag_hessian(t, sin_sum, NULL, 2, x, g, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_rank(h[0]), 4, "[2,2] + [2,2]");
    cr_assert_eq(ag_rank(h[1]), 2, "[2,2] + []");
    cr_assert_eq(ag_rank(h[2]), 2, "[] + [2,2]");
    cr_assert_eq(ag_rank(h[3]), 0, "[] + []");
    double sum_sin = 0;
    for (int i = 0; i < 4; i++) {
        sum_sin += sin(m[i]);
        for (int k = 0; k < 4; k++)
            cr_expect(close(ag_get(h[0], i * 4 + k), i == k ? -sin(m[i]) * s * s : 0, 1e-14));
        cr_expect(close(ag_get(h[1], i), 2 * s * cos(m[i]), 1e-14));
        cr_expect(close(ag_get(h[2], i), 2 * s * cos(m[i]), 1e-14));
        cr_expect(close(ag_get(g[0], i), cos(m[i]) * s * s, 1e-14));
    }
    cr_expect(close(ag_item(h[3]), 2 * sum_sin, 1e-14));
    ag_tape_free(t);
}

/* With elementwise ops alone, one element in and out: blocks [1,1] + [1,1]. */
static ag_tensor *one_element(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_mul(t, ag_exp(t, x[0]), ag_square(t, x[1]));
}

Test(drivers, hessian_of_one_element_tensors_keeps_their_shapes)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2] = {ag_full(t, AG_F64, 2, (int64_t[]){1, 1}, 0.5),
                       ag_full(t, AG_F64, 2, (int64_t[]){1, 1}, -2.0)};
    ag_tensor *h[4], *g[2];
    ag_tensor *y = ag_hessian(t, one_element, NULL, 2, x, g, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_rank(y), 2);
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(ag_rank(h[i]), 4);
        cr_expect_eq(ag_numel(h[i]), 1);
    }
    double e = exp(0.5);
    cr_expect(close(ag_item(h[0]), 4 * e, 1e-15));
    cr_expect(close(ag_item(h[1]), -4 * e, 1e-15));
    cr_expect(close(ag_item(h[2]), -4 * e, 1e-15));
    cr_expect(close(ag_item(h[3]), 2 * e, 1e-15));
    cr_expect(close(ag_item(g[1]), -4 * e, 1e-15));
    ag_tape_free(t);
}

static ag_tensor *one_element_square(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_mul(t, ag_mul(t, x[0], x[0]), x[0]);
}

/* ------------------------------------------------------------ products */

Test(drivers, hvp_is_the_hessian_times_v)
{
    ag_tape *t = ag_tape_new();
    double xv[3] = {0.7, 1.3, -0.4}, vv[3] = {0.25, -1.5, 2.0};
    ag_tensor *x[3], *v[3], *g[3], *h[9], *hv[3], *g2[3];
    scalars(t, AG_F64, 3, xv, x);
    scalars(t, AG_F64, 3, vv, v);
    ag_tensor *y = ag_hessian(t, mixed, NULL, 3, x, g, h);
    ag_tensor *y2 = ag_hvp(t, mixed, NULL, 3, x, v, g2, hv);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_item(y), ag_item(y2));
    for (int i = 0; i < 3; i++) {
        double want = 0;
        for (int k = 0; k < 3; k++)
            want += ag_item(h[i * 3 + k]) * vv[k];
        cr_expect(close(ag_item(hv[i]), want, 1e-12), "(Hv)[%d] = %.17g, H v = %.17g", i,
                  ag_item(hv[i]), want);
        cr_expect_eq(ag_item(g2[i]), ag_item(g[i]));
    }
    /* A NULL direction is zero: H e_1 is column 1. */
    ag_tensor *only[3] = {NULL, ag_scalar(t, AG_F64, 1.0), NULL};
    ag_hvp(t, mixed, NULL, 3, x, only, NULL, hv);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 3; i++)
        cr_expect(close(ag_item(hv[i]), ag_item(h[i * 3 + 1]), 1e-14));
    ag_tape_free(t);
}

Test(drivers, hvp_against_finite_differences_of_the_gradient)
{
    ag_tape *t = ag_tape_new();
    int n = 3;
    double xv[3] = {-1.2, 1.0, 0.7}, vv[3] = {1.0, 0.5, -0.25}, hstep = 1e-6;
    ag_tensor *x[3], *v[3], *hv[3], *gp[3], *gm[3], *h[9];
    scalars(t, AG_F64, n, xv, x);
    scalars(t, AG_F64, n, vv, v);
    ag_hvp(t, rosenbrock, &n, n, x, v, NULL, hv);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    double up[3], down[3];
    for (int i = 0; i < n; i++) {
        up[i] = xv[i] + hstep * vv[i];
        down[i] = xv[i] - hstep * vv[i];
    }
    scalars(t, AG_F64, n, up, x);
    ag_vjp(t, rosenbrock, &n, n, x, NULL, gp);
    scalars(t, AG_F64, n, down, x);
    ag_vjp(t, rosenbrock, &n, n, x, NULL, gm);
    scalars(t, AG_F64, n, xv, x);
    ag_hessian(t, rosenbrock, &n, n, x, NULL, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < n; i++) {
        double fd = (ag_item(gp[i]) - ag_item(gm[i])) / (2 * hstep), exact = 0;
        for (int k = 0; k < n; k++)
            exact += rosenbrock_hessian(xv, n, i, k) * vv[k];
        cr_expect(close(ag_item(hv[i]), fd, 1e-6), "(Hv)[%d] %.12g, differences %.12g", i,
                  ag_item(hv[i]), fd);
        cr_expect(close(ag_item(hv[i]), exact, 1e-13), "(Hv)[%d] %.17g, closed form %.17g", i,
                  ag_item(hv[i]), exact);
    }
    ag_tape_free(t);
}

Test(drivers, vjp_and_jvp_are_products_with_the_jacobian)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2] = {ag_tensor_from_f64(t, 2, (int64_t[]){2, 3},
                                          (double[]){0.3, -0.7, 1.1, 0.5, -1.4, 0.9}),
                       ag_scalar(t, AG_F64, 0.8)};
    ag_tensor *u = ag_tensor_from_f64(t, 2, (int64_t[]){2, 3}, (double[]){1, -2, 0.5, 3, 0.25, -1});
    ag_tensor *v[2] = {ag_tensor_from_f64(t, 2, (int64_t[]){2, 3},
                                          (double[]){0.5, 1, -1, 2, 0, 0.75}),
                       ag_scalar(t, AG_F64, -1.5)};
    ag_tensor *jac[2], *ut_j[2], *jv;
    ag_jacobian(t, vector_fn, NULL, 2, x, AG_JACOBIAN_REVERSE, jac);
    ag_tensor *y1 = ag_vjp(t, vector_fn, NULL, 2, x, u, ut_j);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tensor *y2 = ag_jvp(t, vector_fn, NULL, 2, x, v, &jv);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int r = 0; r < 6; r++)
        cr_expect_eq(ag_get(y1, r), ag_get(y2, r));
    cr_assert_eq(ag_rank(ut_j[0]), 2);
    cr_assert_eq(ag_rank(ut_j[1]), 0);
    cr_assert_eq(ag_rank(jv), 2);
    for (int i = 0; i < 2; i++) {
        int64_t nx = ag_numel(x[i]);
        for (int64_t c = 0; c < nx; c++) {
            double want = 0;
            for (int r = 0; r < 6; r++)
                want += ag_get(u, r) * ag_get(jac[i], r * nx + c);
            cr_expect(close(ag_get(ut_j[i], c), want, 1e-13), "(u^T J)[%d][%lld]", i, (long long)c);
        }
    }
    for (int r = 0; r < 6; r++) {
        double want = 0;
        for (int i = 0; i < 2; i++)
            for (int64_t c = 0; c < ag_numel(x[i]); c++)
                want += ag_get(jac[i], r * ag_numel(x[i]) + c) * ag_get(v[i], c);
        cr_expect(close(ag_get(jv, r), want, 1e-13), "(J v)[%d] %.17g, want %.17g", r,
                  ag_get(jv, r), want);
    }
    /* A NULL direction moves nothing: J v with v = (0, 1) is d y / d s. */
    ag_tensor *only_s[2] = {NULL, ag_scalar(t, AG_F64, 1.0)};
    ag_jvp(t, vector_fn, NULL, 2, x, only_s, &jv);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int r = 0; r < 6; r++)
        cr_expect(close(ag_get(jv, r), ag_get(jac[1], r), 1e-14));
    ag_tape_free(t);
}

Test(drivers, jvp_of_rosenbrock_is_the_directional_derivative)
{
    ag_tape *t = ag_tape_new();
    int n = 2;
    ag_tensor *x[2], *v[2] = {ag_scalar(t, AG_F64, 1.0), NULL}, *dy;
    scalars(t, AG_F64, 2, (double[]){1.0, 2.0}, x);
    ag_tensor *y = ag_jvp(t, rosenbrock, &n, 2, x, v, &dy);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_item(y), 100.0);
    cr_expect_eq(ag_item(dy), -400.0, "the example in autograd.h");
    ag_tensor *g[2], *h[4];
    ag_hessian(t, rosenbrock, &n, 2, x, g, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(ag_item(g[0]) == -400.0 && ag_item(g[1]) == 200.0, "autograd.h and README.md");
    double want[4] = {402, -400, -400, 200};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_item(h[i]), want[i], "h[%d], as autograd.h and README.md say", i);
    /* no direction at all: zero */
    ag_tensor *none[2] = {NULL, NULL};
    ag_jvp(t, rosenbrock, &n, 2, x, none, &dy);
    cr_expect_eq(ag_item(dy), 0.0);
    cr_expect_eq(ag_rank(dy), 0);
    ag_tape_free(t);
}

/* ------------------------------------------------------ what results are */

Test(drivers, results_are_constants_and_inputs_are_left_alone)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2] = {ag_requires_grad(ag_scalar(t, AG_F64, 1.0)), ag_scalar(t, AG_F64, 2.0)};
    ag_tensor *g[2], *h[4], *jac[2], *jv, *v[2] = {x[1], x[0]};
    int n = 2;
    ag_tensor *ys[5] = {
        ag_hessian(t, rosenbrock, &n, 2, x, g, h),
        ag_jacobian(t, rosenbrock, &n, 2, x, AG_JACOBIAN_FORWARD, jac),
        ag_jvp(t, rosenbrock, &n, 2, x, v, &jv),
        ag_hvp(t, rosenbrock, &n, 2, x, v, NULL, g),
        ag_vjp(t, rosenbrock, &n, 2, x, NULL, g),
    };
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(ag_item(ys[i]), 100.0);
        cr_expect_not(ag_requires_grad_of(ys[i]));
        cr_expect_null(ag_tangent(ys[i]));
    }
    for (int i = 0; i < 4; i++) {
        cr_expect_not(ag_requires_grad_of(h[i]));
        cr_expect_null(ag_tangent(h[i]));
    }
    cr_expect_not(ag_requires_grad_of(jv));
    cr_expect_eq(ag_item(x[0]), 1.0);
    cr_expect_eq(ag_item(x[1]), 2.0);
    cr_expect_null(ag_tangent(x[0]));
    cr_expect_null(ag_tangent(x[1]));
    cr_expect_null(ag_grad(x[0]), "no gradient is stored on x");
    cr_expect_not(ag_requires_grad_of(x[1]));
    ag_tape_free(t);
}

static ag_tensor *identity(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)t, (void)ud;
    return x[0];
}

static ag_tensor *a_parameter(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)t, (void)x;
    return ud;
}

static ag_tensor *constant(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)x, (void)ud;
    return ag_scalar(t, AG_F64, 7.0);
}

/* Edge cases: f returns its input (J = I, H = 0), a parameter or a
** constant (J = 0), there are no inputs at all, x is a parameter. */
Test(drivers, identities_constants_parameters_and_no_inputs)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){1.5, -2.0});
    ag_tensor *jr, *jf, *h, *g, *jv;
    ag_jacobian(t, identity, NULL, 1, &x, AG_JACOBIAN_REVERSE, &jr);
    ag_jacobian(t, identity, NULL, 1, &x, AG_JACOBIAN_FORWARD, &jf);
    ag_jvp(t, identity, NULL, 1, &x, &x, &jv);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 4; i++) {
        cr_expect_eq(ag_get(jr, i), i == 0 || i == 3 ? 1.0 : 0.0);
        cr_expect_eq(ag_get(jf, i), i == 0 || i == 3 ? 1.0 : 0.0);
    }
    cr_expect(ag_get(jv, 0) == 1.5 && ag_get(jv, 1) == -2.0);

    ag_tensor *p = ag_param_new(AG_F64, 1, (int64_t[]){3});
    ag_fill(p, 4.0);
    ag_tensor *y = ag_jacobian(t, a_parameter, p, 1, &x, AG_JACOBIAN_REVERSE, &jr);
    ag_jacobian(t, a_parameter, p, 1, &x, AG_JACOBIAN_FORWARD, &jf);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_get(y, 2), 4.0);
    cr_expect_not(ag_is_param(y), "the value is a copy");
    for (int i = 0; i < 6; i++)
        cr_expect(ag_get(jr, i) == 0.0 && ag_get(jf, i) == 0.0);

    /* a parameter as x: its value is read, it is left alone */
    ag_tensor *s = ag_param_scalar(AG_F64, 3.0), *hs;
    ag_hessian(t, one_element_square, NULL, 1, &s, &g, &hs);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(ag_item(g) == 27.0 && ag_item(hs) == 18.0, "x^3: %g, %g", ag_item(g), ag_item(hs));
    cr_expect_eq(ag_grad_item(s), 0.0);

    /* constants: zero derivatives of the right shapes */
    ag_tensor *xs[2] = {x, ag_scalar(t, AG_F64, 1.0)}, *hh[4];
    ag_hessian(t, constant, NULL, 2, xs, NULL, hh);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_rank(hh[0]), 2);
    cr_expect_eq(ag_rank(hh[1]), 1);
    cr_expect_eq(ag_rank(hh[3]), 0);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(hh[0], i), 0.0);
    cr_expect_eq(ag_item(hh[3]), 0.0);

    /* no inputs: the value alone */
    y = ag_jacobian(t, constant, NULL, 0, NULL, AG_JACOBIAN_FORWARD, NULL);
    cr_expect_eq(ag_item(y), 7.0);
    y = ag_hessian(t, constant, NULL, 0, NULL, NULL, NULL);
    cr_expect_eq(ag_item(y), 7.0);
    y = ag_jvp(t, constant, NULL, 0, NULL, NULL, &jv);
    cr_expect(ag_item(y) == 7.0 && ag_item(jv) == 0.0);
    y = ag_vjp(t, constant, NULL, 0, NULL, NULL, NULL);
    cr_expect_eq(ag_item(y), 7.0);
    y = ag_hvp(t, constant, NULL, 0, NULL, NULL, NULL, NULL);
    cr_expect_eq(ag_item(y), 7.0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    (void)h;
    ag_tape_free(t);
    ag_param_free(p);
    ag_param_free(s);
}

/* ----------------------------------------------------------------- f32 */

Test(drivers, f32_agrees_with_f64)
{
    ag_tape *t = ag_tape_new();
    int n = 3;
    double v[3] = {-1.2, 1.0, 0.7};
    ag_tensor *x32[3], *x64[3], *h32[9], *h64[9], *g32[3], *j32[3], *j64[3];
    scalars(t, AG_F32, n, v, x32);
    scalars(t, AG_F64, n, v, x64);
    ag_tensor *y32 = ag_hessian(t, rosenbrock, &n, n, x32, g32, h32);
    ag_hessian(t, rosenbrock, &n, n, x64, NULL, h64);
    ag_jacobian(t, mixed, NULL, n, x32, AG_JACOBIAN_FORWARD, j32);
    ag_jacobian(t, mixed, NULL, n, x64, AG_JACOBIAN_REVERSE, j64);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_dtype_of(y32), AG_F32);
    for (int i = 0; i < n; i++) {
        cr_expect_eq(ag_dtype_of(g32[i]), AG_F32);
        cr_expect(close(ag_item(j32[i]), ag_item(j64[i]), 1e-5), "dy/dx%d", i);
        cr_expect_eq(ag_dtype_of(j32[i]), AG_F32);
        for (int k = 0; k < n; k++) {
            cr_expect_eq(ag_dtype_of(h32[i * n + k]), AG_F32);
            cr_expect(close(ag_item(h32[i * n + k]), ag_item(h64[i * n + k]), 1e-5),
                      "H[%d][%d]: f32 %.9g, f64 %.17g", i, k, ag_item(h32[i * n + k]),
                      ag_item(h64[i * n + k]));
        }
    }
    ag_tape_free(t);
}

static ag_tensor *counted_square(ag_tape *t, ag_tensor *const *x, void *ud)
{
    ++*(int *)ud;
    return ag_mul(t, ag_mul(t, x[0], x[0]), x[1]);
}

Test(drivers, hessian_calls_f_once_per_input_element)
{
    ag_tape *t = ag_tape_new();
    int calls = 0;
    ag_tensor *x[2] = {ag_scalar(t, AG_F64, 3.0), ag_scalar(t, AG_F64, 2.0)}, *h[4], *hv[2];
    ag_hessian(t, counted_square, &calls, 2, x, NULL, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(calls, 2);
    /* x0^2 x1: [[2 x1, 2 x0], [2 x0, 0]] */
    double want[4] = {4, 6, 6, 0};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_item(h[i]), want[i], "H[%d]", i);
    calls = 0;
    ag_hvp(t, counted_square, &calls, 2, x, x, NULL, hv);
    cr_expect_eq(calls, 1, "one pass");
    cr_expect_eq(ag_item(hv[0]), 4 * 3.0 + 6 * 2.0);
    cr_expect_eq(ag_item(hv[1]), 6 * 3.0);
    ag_tape_free(t);
}

/* The product's Hessian is exact; its entry (y, x) comes from the last op
** of the backward pass of the column of x, whose tangent is computed
** only when asked for: the driver must ask before it moves to the next
** column (it once read it after, and found 0). */
static ag_tensor *product3(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_mul(t, ag_mul(t, x[0], x[1]), x[2]);
}

Test(drivers, hessian_of_a_product_is_exact)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3], *h[9], *jac[3];
    scalars(t, AG_F64, 3, (double[]){2, 3, 4}, x);
    ag_hessian(t, product3, NULL, 3, x, NULL, h);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    double want[9] = {0, 4, 3, 4, 0, 2, 3, 2, 0};
    for (int i = 0; i < 9; i++)
        cr_expect_eq(ag_item(h[i]), want[i], "H[%d][%d] = %g, want %g", i / 3, i % 3,
                     ag_item(h[i]), want[i]);
    ag_jacobian(t, product3, NULL, 3, x, AG_JACOBIAN_FORWARD, jac);
    for (int i = 0; i < 3; i++)
        cr_expect_eq(ag_item(jac[i]), 24 / ag_item(x[i]));
    ag_tape_free(t);
}

/* ------------------------------------------------------------ bad input */

static ag_tensor *square_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_mul(t, x[0], x[0]);
}

static ag_tensor *fails(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_add(t, x[0], ag_scalar(t, AG_F32, 1.0));
}

static ag_tensor *returns_null(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)t, (void)x, (void)ud;
    return NULL;
}

static ag_tensor *returns_nil(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)x, (void)ud;
    return ag_tape_nil(t);
}

static ag_tensor *uses_another_tape(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)t, (void)x;
    return ag_scalar((ag_tape *)ud, AG_F64, 1.0);
}

/* x on the first call, x broadcast to [2, 2] on the next. */
static ag_tensor *changes_shape(ag_tape *t, ag_tensor *const *x, void *ud)
{
    int *calls = ud;
    if (++*calls == 1)
        return ag_mul(t, x[0], x[0]);
    return ag_mul(t, x[0], ag_ones(t, AG_F64, 2, (int64_t[]){2, 2}));
}

/* Runs 'call' (a statement on tape t with x, out...), then expects status
** 'code' and every word of 'words' in the message. */
static void expect_error(ag_tape *t, ag_status code, const char *const *words)
{
    cr_expect_eq(ag_tape_status(t), code, "status %s: %s", ag_status_str(ag_tape_status(t)),
                 ag_tape_errmsg(t));
    for (; *words; words++)
        cr_expect(strstr(ag_tape_errmsg(t), *words), "'%s' not in: %s", *words, ag_tape_errmsg(t));
    ag_tape_reset(t);
}

#define WORDS(...) ((const char *const[]){__VA_ARGS__, NULL})

Test(drivers_errors, bad_arguments_name_the_driver)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_scalar(t, AG_F64, 2.0), *out[4], *one;

    cr_expect(ag_is_nil(ag_jacobian(t, NULL, NULL, 1, &x, AG_JACOBIAN_AUTO, out)));
    cr_expect(ag_is_nil(out[0]), "result slots are nil");
    expect_error(t, AG_EINVAL, WORDS("ag_jacobian", "f NULL"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_hessian(t, square_fn, NULL, -1, &x, NULL, out);
    expect_error(t, AG_EINVAL, WORDS("ag_hessian", "-1 inputs"));

    ag_vjp(t, square_fn, NULL, 1, NULL, NULL, out);
    expect_error(t, AG_EINVAL, WORDS("ag_vjp", "x NULL"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_vjp(t, square_fn, NULL, 1, &x, NULL, NULL);
    expect_error(t, AG_EINVAL, WORDS("ag_vjp", "out is NULL"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_hessian(t, square_fn, NULL, 1, &x, NULL, NULL);
    expect_error(t, AG_EINVAL, WORDS("ag_hessian", "hess is NULL"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_hvp(t, square_fn, NULL, 1, &x, NULL, NULL, out);
    expect_error(t, AG_EINVAL, WORDS("ag_hvp", "v is NULL"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_jvp(t, square_fn, NULL, 1, &x, NULL, &one);
    cr_expect(ag_is_nil(one));
    expect_error(t, AG_EINVAL, WORDS("ag_jvp", "v is NULL"));

    ag_tensor *null_input = NULL;
    ag_jvp(t, square_fn, NULL, 1, &null_input, &null_input, &one);
    expect_error(t, AG_EINVAL, WORDS("ag_jvp"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_jacobian(t, square_fn, NULL, 1, &x, (ag_jacobian_mode)7, out);
    expect_error(t, AG_EINVAL, WORDS("ag_jacobian", "mode 7"));

    /* A stale input, and one of another tape. */
    ag_tensor *stale = ag_scalar(t, AG_F64, 2.0);
    ag_tape_reset(t);
    ag_hessian(t, square_fn, NULL, 1, &stale, NULL, out);
    expect_error(t, AG_ESTATE, WORDS("ag_hessian"));
    ag_tape *other = ag_tape_new();
    ag_tensor *foreign = ag_scalar(other, AG_F64, 2.0);
    ag_jvp(t, square_fn, NULL, 1, &foreign, &foreign, &one);
    expect_error(t, AG_EINVAL, WORDS("ag_jvp"));

    /* A NULL tape: nothing to record on, nil back. */
    cr_expect(ag_is_nil(ag_hvp(NULL, square_fn, NULL, 1, &x, &x, NULL, out)));
    ag_tape_free(other);
    ag_tape_free(t);
}

Test(drivers_errors, directions_and_seeds_must_fit)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_zeros(t, AG_F64, 1, (int64_t[]){3}), *out[1];
    ag_tensor *v = ag_zeros(t, AG_F64, 1, (int64_t[]){4});
    ag_jvp(t, square_fn, NULL, 1, &x, &v, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_jvp", "v[0]", "[4]", "[3]"));

    x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    v = ag_zeros(t, AG_F32, 1, (int64_t[]){3});
    ag_hvp(t, square_fn, NULL, 1, &x, &v, NULL, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_hvp", "f32", "f64"));

    x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    ag_vjp(t, square_fn, NULL, 1, &x, NULL, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_vjp", "[3]", "give u"));

    x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    ag_tensor *u = ag_zeros(t, AG_F64, 1, (int64_t[]){2});
    ag_vjp(t, square_fn, NULL, 1, &x, u, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_vjp", "u", "[2]", "f's output"));
    ag_tape_free(t);
}

Test(drivers_errors, what_f_does_wrong_is_named)
{
    ag_tape *t = ag_tape_new(), *other = ag_tape_new();
    ag_tensor *x = ag_scalar(t, AG_F64, 2.0), *out[1], *one;

    ag_jacobian(t, fails, NULL, 1, &x, AG_JACOBIAN_REVERSE, out);
    expect_error(t, AG_EDTYPE, WORDS("ag_jacobian: f failed: ag_add"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_jvp(t, returns_null, NULL, 1, &x, &x, &one);
    expect_error(t, AG_EINVAL, WORDS("ag_jvp", "f returned NULL"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_hessian(t, returns_nil, NULL, 1, &x, NULL, out);
    expect_error(t, AG_EINVAL, WORDS("ag_hessian", "nil tensor"));

    x = ag_scalar(t, AG_F64, 2.0);
    ag_vjp(t, uses_another_tape, other, 1, &x, NULL, out);
    expect_error(t, AG_EINVAL, WORDS("ag_vjp", "another tape"));

    int calls = 0;
    x = ag_zeros(t, AG_F64, 1, (int64_t[]){2});
    ag_jacobian(t, changes_shape, &calls, 1, &x, AG_JACOBIAN_FORWARD, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_jacobian", "f64 [2] on one call and f64 [2,2] on another"));

    x = ag_zeros(t, AG_F64, 1, (int64_t[]){2});
    ag_hessian(t, square_fn, NULL, 1, &x, NULL, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_hessian", "[2]", "one element"));

    x = ag_zeros(t, AG_F64, 1, (int64_t[]){2});
    ag_hvp(t, square_fn, NULL, 1, &x, &x, NULL, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_hvp", "one element"));

    /* y.shape + x.shape of rank 10 */
    int64_t five[5] = {1, 1, 1, 1, 1};
    x = ag_zeros(t, AG_F64, 5, five);
    ag_jacobian(t, square_fn, NULL, 1, &x, AG_JACOBIAN_AUTO, out);
    expect_error(t, AG_ESHAPE, WORDS("ag_jacobian", "rank 10", "AG_MAX_DIMS"));

    /* A tape already in error: its message stays. */
    ag_tape_fail(t, AG_EIO, "earlier");
    x = ag_tape_nil(t);
    cr_expect(ag_is_nil(ag_hessian(t, square_fn, NULL, 1, &x, NULL, out)));
    cr_expect(ag_is_nil(out[0]));
    expect_error(t, AG_EIO, WORDS("earlier"));
    ag_tape_free(other);
    ag_tape_free(t);
}

/* An op without a JVP rule met in forward mode: the engine says so, after
** the driver's name; reverse mode does not need one. */
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
static const ag_op no_rule = {.name = "no_rule", .forward = identity_forward, .vjp = identity_vjp};

static ag_tensor *through_no_rule(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    ag_tensor *y = ag_custom(t, &no_rule, NULL, 1, x, AG_F64, 0, NULL);
    return ag_mul(t, y, y);
}

Test(drivers_errors, an_op_without_a_jvp_rule_stops_forward_mode_only)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_scalar(t, AG_F64, 3.0), *out[1];
    ag_jacobian(t, through_no_rule, NULL, 1, &x, AG_JACOBIAN_REVERSE, out);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_item(out[0]), 6.0);
    ag_jacobian(t, through_no_rule, NULL, 1, &x, AG_JACOBIAN_FORWARD, out);
    expect_error(t, AG_EUNSUPPORTED, WORDS("ag_jacobian: f failed: no_rule", "JVP"));
    x = ag_scalar(t, AG_F64, 3.0);
    ag_hessian(t, through_no_rule, NULL, 1, &x, NULL, out);
    expect_error(t, AG_EUNSUPPORTED, WORDS("ag_hessian: f failed: no_rule"));
    ag_tape_free(t);
}
