/*
** test_custom_op.c: user-defined ops (ag_custom, autograd.h), written as a
** user would, with the public API only: values and gradients in f32 and
** f64, broadcasting inputs, an op used twice, second derivatives through a
** VJP written with ops, raw VJPs (first order only), saved tensors and the
** context, callbacks that fail, allocation failures, and bad descriptors;
** and forward mode (ag_dual) through a user's JVP rule: its tangents in
** f32 and f64, zero tangents, forward-over-reverse, and rules that fail.
*/
#include "autograd.h"
#include "alloc_hooks.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const double TWO_OVER_SQRT_PI = 1.12837916709551257390;

#define expect_in(text, part) \
    cr_expect(strstr((text), (part)), "message \"%s\" lacks \"%s\"", (text), (part))

/* ------------------------------------------------------------ erf, as in
** the example: forward from libm, VJP with ops. */

static int erf_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    ag_tensor *x = ag_input(out, 0);
    for (int64_t i = 0; i < ag_numel(out); i++)
        ag_set(out, i, erf(ag_get(x, i)));
    return 0;
}

static void erf_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = ag_input(out, 0);
    ag_tensor *slope = ag_mul_scalar(t, ag_exp(t, ag_neg(t, ag_mul(t, x, x))), TWO_OVER_SQRT_PI);
    gin[0] = ag_mul(t, g, slope);
}

/* d erf x = 2/sqrt(pi) e^(-x^2) dx: the tangent, with ops as the VJP is. */
static int erf_jvp_calls;
static ag_tensor *erf_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tangents)
{
    erf_jvp_calls++;
    ag_tensor *x = ag_input(out, 0);
    ag_tensor *slope = ag_mul_scalar(t, ag_exp(t, ag_neg(t, ag_mul(t, x, x))), TWO_OVER_SQRT_PI);
    return ag_mul(t, tangents[0], slope);
}

static const ag_op erf_op = {.name = "erf", .forward = erf_forward, .vjp = erf_vjp,
                             .jvp = erf_jvp};

static ag_tensor *my_erf(ag_tape *t, ag_tensor *x)
{
    return ag_custom(t, &erf_op, NULL, 1, &x, ag_dtype_of(x), ag_rank(x), ag_shape(x));
}

static double erf_slope(double x) { return TWO_OVER_SQRT_PI * exp(-x * x); }

static void erf_values_and_gradients(ag_dtype dt, double tol)
{
    static const double xs[5] = {-1.5, -0.3, 0.0, 0.7, 2.0};
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_zeros(t, dt, 1, (int64_t[]){5}));
    for (int i = 0; i < 5; i++)
        ag_set(x, i, xs[i]);
    ag_tensor *y = my_erf(t, x);
    cr_assert_eq(ag_dtype_of(y), dt);
    ag_backward(t, ag_sum(t, y));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_str_eq(ag_op_name(y), "erf");
    for (int i = 0; i < 5; i++) {
        cr_expect_float_eq(ag_get(y, i), erf(xs[i]), tol, "erf(%g)", xs[i]);
        cr_expect_float_eq(ag_get(ag_grad(x), i), erf_slope(xs[i]), tol, "erf'(%g)", xs[i]);
    }
    ag_tape_free(t);
}

Test(custom_op, erf_f64) { erf_values_and_gradients(AG_F64, 1e-15); }
Test(custom_op, erf_f32) { erf_values_and_gradients(AG_F32, 1e-6); }

static ag_tensor *erf_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return my_erf(t, x[0]);
}

static ag_tensor *erf_grad_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    ag_tensor *g;
    ag_gradients(t, ag_sum(t, my_erf(t, x[0])), NULL, 1, x, &g, 1);
    return g;
}

Test(custom_op, erf_passes_gradcheck_to_second_order)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3},
                                  (const double[]){-1.2, -0.5, 0.1, 0.4, 0.9, 1.7});
    ag_gradcheck_report rep;
    char err[256];
    cr_assert_eq(ag_gradcheck(erf_fn, NULL, 1, &x, 0, &rep, err, sizeof err), AG_OK, "%s", err);
    cr_expect_leq(rep.max_rel_err, 1e-6);
    cr_expect_eq(rep.checked, 6);
    cr_assert_eq(ag_gradcheck(erf_grad_fn, NULL, 1, &x, 0, &rep, err, sizeof err), AG_OK, "%s",
                 err);
    cr_expect_leq(rep.max_rel_err, 1e-6);
    ag_tape_free(t);
}

/* d2/dx2 erf x = -2x erf'(x), through create-graph mode and a second pass. */
Test(custom_op, second_derivative_through_a_vjp_of_ops)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.6));
    ag_tensor *dy, *d2y;
    ag_gradients(t, my_erf(t, x), NULL, 1, &x, &dy, 1);
    ag_gradients(t, dy, NULL, 1, &x, &d2y, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_item(dy), erf_slope(0.6), 1e-15);
    cr_expect_float_eq(ag_item(d2y), -2 * 0.6 * erf_slope(0.6), 1e-15);
    ag_tape_free(t);
}

/* erf(erf(x)) + erf(2x): the op twice in a chain and once beside it. */
Test(custom_op, used_several_times_on_one_tape)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.35));
    ag_tensor *y = ag_add(t, my_erf(t, my_erf(t, x)), my_erf(t, ag_mul_scalar(t, x, 2.0)));
    ag_backward(t, y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    double want = erf_slope(erf(0.35)) * erf_slope(0.35) + 2 * erf_slope(0.7);
    cr_expect_float_eq(ag_grad_item(x), want, 1e-15);
    cr_expect_float_eq(ag_item(y), erf(erf(0.35)) + erf(0.7), 1e-15);
    ag_tape_free(t);
}

/* ------------------------------------------ a broadcasting binary op */

/* out = a * b^2 for a of shape [r, c] and b of shape [c] (a row), as NumPy
** broadcasts it; the VJP sums b's gradient over the rows. */
static int scale_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    ag_tensor *a = ag_input(out, 0), *b = ag_input(out, 1);
    int64_t c = ag_numel(b);
    for (int64_t i = 0; i < ag_numel(out); i++) {
        double bv = ag_get(b, i % c);
        ag_set(out, i, ag_get(a, i) * bv * bv);
    }
    return 0;
}

static void scale_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = ag_input(out, 0), *b = ag_input(out, 1);
    if (ag_op_needs_grad(out, 0))
        gin[0] = ag_mul(t, g, ag_mul(t, b, b));
    if (ag_op_needs_grad(out, 1))
        gin[1] = ag_sum_to(t, ag_mul(t, g, ag_mul(t, a, ag_mul_scalar(t, b, 2.0))), ag_rank(b),
                           ag_shape(b));
}

static const ag_op scale_op = {.name = "scale_by_square", .forward = scale_forward,
                               .vjp = scale_vjp};

static ag_tensor *scale_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_custom(t, &scale_op, NULL, 2, x, ag_dtype_of(x[0]), ag_rank(x[0]), ag_shape(x[0]));
}

Test(custom_op, broadcasting_inputs)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2] = {
        ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3}, (const double[]){1, -2, 3, 0.5, 4, -1}),
        ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (const double[]){0.5, -1.5, 2}),
    };
    ag_gradcheck_report rep;
    char err[256];
    cr_assert_eq(ag_gradcheck(scale_fn, NULL, 2, x, 0, &rep, err, sizeof err), AG_OK, "%s", err);
    cr_expect_leq(rep.max_rel_err, 1e-6);
    cr_expect_eq(rep.checked, 9);
    /* And the values: d sum / d b_j = sum_i a_ij 2 b_j. */
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F32 : AG_F64;
        ag_tensor *a = ag_requires_grad(ag_cast(t, x[0], dt));
        ag_tensor *b = ag_requires_grad(ag_cast(t, x[1], dt));
        ag_tensor *in[2] = {a, b};
        ag_tensor *y = scale_fn(t, in, NULL);
        ag_backward(t, ag_sum(t, y));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_expect_float_eq(ag_get(y, 4), 4 * 1.5 * 1.5, 1e-6);
        cr_expect_float_eq(ag_get(ag_grad(b), 0), (1 + 0.5) * 2 * 0.5, 1e-6);
        cr_expect_float_eq(ag_get(ag_grad(b), 1), (-2 + 4) * 2 * -1.5, 1e-6);
        cr_expect_float_eq(ag_get(ag_grad(a), 5), 4.0, 1e-6);
    }
    ag_tape_free(t);
}

/* ------------------------------------------- saved tensors and context */

typedef struct scale_ctx {
    double k;
    int vjp_calls;
} scale_ctx;

/* out = k e^x, keeping e^x in a saved tensor that the VJP reuses. */
static int kexp_forward(ag_tensor *out, void *ctx)
{
    const scale_ctx *c = ctx;
    ag_tensor *x = ag_input(out, 0);
    ag_tape *t = ag_tape_of(out);
    ag_tensor *e = ag_empty(t, ag_dtype_of(x), ag_rank(x), ag_shape(x));
    if (ag_is_nil(e))
        return 1;
    for (int64_t i = 0; i < ag_numel(x); i++) {
        ag_set(e, i, exp(ag_get(x, i)));
        ag_set(out, i, c->k * ag_get(e, i));
    }
    return ag_op_save(out, e) == AG_OK ? 0 : 1;
}

static void kexp_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    scale_ctx *c = ag_op_ctx(out);
    c->vjp_calls++;
    gin[0] = ag_mul(t, g, ag_mul_scalar(t, ag_op_saved(out, 0), c->k));
}

static const ag_op kexp_op = {.name = "kexp", .forward = kexp_forward, .vjp = kexp_vjp};

Test(custom_op, saved_tensors_and_context_reach_the_vjp)
{
    ag_tape *t = ag_tape_new();
    scale_ctx c = {.k = 3.0};
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){2},
                                                   (const double[]){0.5, -1.0}));
    ag_tensor *y = ag_custom(t, &kexp_op, &c, 1, &x, AG_F64, 1, (int64_t[]){2});
    cr_assert_eq(ag_op_ctx(y), &c);
    cr_assert_eq(ag_op_num_saved(y), 1);
    cr_assert_null(ag_op_saved(y, 1));
    cr_assert_null(ag_op_saved(y, -1));
    cr_expect_float_eq(ag_get(ag_op_saved(y, 0), 1), exp(-1.0), 1e-15);
    ag_backward(t, ag_sum(t, y));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(c.vjp_calls, 1);
    cr_expect_float_eq(ag_get(ag_grad(x), 0), 3 * exp(0.5), 1e-14);
    cr_expect_float_eq(ag_get(ag_grad(x), 1), 3 * exp(-1.0), 1e-14);
    /* The library's ops have no context nor saved tensors. */
    cr_assert_null(ag_op_ctx(ag_exp(t, x)));
    cr_assert_eq(ag_op_num_saved(ag_exp(t, x)), 0);
    ag_tape_free(t);
}

/* Saving more than the first block's room, and a tensor from another tape. */
static int save_many_forward(ag_tensor *out, void *ctx)
{
    ag_tensor *other = ctx;
    ag_tensor *x = ag_input(out, 0);
    ag_set(out, 0, ag_item(x));
    for (int i = 0; i < 9; i++)
        if (ag_op_save(out, x) != AG_OK)
            return 1;
    return ag_op_save(out, other) == AG_OK ? 0 : 2;
}

static void identity_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)t, (void)out;
    gin[0] = g;
}

static const ag_op save_many_op = {.name = "save_many", .forward = save_many_forward,
                                   .vjp = identity_vjp};

Test(custom_op, saving_grows_and_checks_the_tape)
{
    ag_tape *t = ag_tape_new(), *t2 = ag_tape_new();
    ag_tensor *x = ag_scalar(t, AG_F64, 1.0);
    ag_tensor *y = ag_custom(t, &save_many_op, ag_scalar(t, AG_F64, 2.0), 1, &x, AG_F64, 0, NULL);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_op_num_saved(y), 10);
    cr_assert_eq(ag_op_saved(y, 8), x);
    y = ag_custom(t, &save_many_op, ag_scalar(t2, AG_F64, 2.0), 1, &x, AG_F64, 0, NULL);
    cr_assert(ag_is_nil(y));
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    expect_in(ag_tape_errmsg(t), "ag_op_save (op 'save_many')");
    cr_assert_eq(ag_op_save(NULL, x), AG_EINVAL);
    ag_tape_free(t);
    ag_tape_free(t2);
}

/* ----------------------------------------------------------- raw VJPs */

/* out = x^3 with a raw VJP only: 3 x^2 g computed on the arrays. */
static int cube_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    ag_tensor *x = ag_input(out, 0);
    for (int64_t i = 0; i < ag_numel(out); i++)
        ag_set(out, i, pow(ag_get(x, i), 3));
    return 0;
}

static int cube_raw_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = ag_input(out, 0);
    ag_tensor *dx = ag_empty(t, ag_dtype_of(x), ag_rank(x), ag_shape(x));
    if (ag_is_nil(dx))
        return 1;
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(dx, i, 3 * ag_get(x, i) * ag_get(x, i) * ag_get(g, i));
    gin[0] = dx;
    return 1;
}

static const ag_op cube_op = {.name = "raw_cube", .forward = cube_forward,
                              .raw_vjp = cube_raw_vjp};

static ag_tensor *cube(ag_tape *t, ag_tensor *x)
{
    return ag_custom(t, &cube_op, NULL, 1, &x, ag_dtype_of(x), ag_rank(x), ag_shape(x));
}

Test(custom_op, raw_vjp_serves_first_order)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F32 : AG_F64;
        ag_tape *t = ag_tape_new();
        ag_tensor *x = ag_requires_grad(ag_full(t, dt, 1, (int64_t[]){3}, 1.5));
        ag_backward(t, ag_sum(t, ag_mul(t, cube(t, x), cube(t, x))));   /* x^6 */
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_expect_float_eq(ag_get(ag_grad(x), 2), 6 * pow(1.5, 5), 1e-4);
        /* ag_gradients without create_graph, and the DOT export's replay,
        ** which takes the raw VJP for want of another. */
        ag_tensor *g;
        ag_tensor *y = ag_sum(t, cube(t, x));
        ag_gradients(t, y, NULL, 1, &x, &g, 0);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_expect_float_eq(ag_get(g, 0), 3 * 1.5 * 1.5, 1e-6);
        FILE *f = tmpfile();
        cr_assert_not_null(f);
        cr_assert_eq(ag_dot_write(t, y, NULL, f), AG_OK, "%s", ag_tape_errmsg(t));
        fclose(f);
        ag_tape_free(t);
    }
}

Test(custom_op, raw_vjp_under_create_graph_is_unsupported)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 2.0));
    ag_tensor *g;
    ag_gradients(t, ag_exp(t, cube(t, x)), NULL, 1, &x, &g, 1);
    cr_assert_eq(ag_tape_status(t), AG_EUNSUPPORTED);
    expect_in(ag_tape_errmsg(t), "raw_cube: its VJP is raw (first order only)");
    cr_assert(ag_is_nil(g));
    ag_tape_free(t);
}

static int declining_raw_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)t, (void)out, (void)g, (void)gin;
    return 0;
}

static const ag_op declining_op = {.name = "declines", .forward = cube_forward,
                                   .raw_vjp = declining_raw_vjp};

Test(custom_op, a_raw_vjp_that_declines_with_no_vjp_is_an_error)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 2.0));
    ag_backward(t, ag_custom(t, &declining_op, NULL, 1, &x, AG_F64, 0, NULL));
    cr_assert_eq(ag_tape_status(t), AG_ESTATE);
    expect_in(ag_tape_errmsg(t), "declines: its raw VJP declined");
    ag_tape_free(t);
}

/* Both paths: the raw one in ag_backward, the one with ops in create-graph
** mode, as the library's hot ops have. */
static const ag_op cube_both_op = {.name = "cube_both", .forward = cube_forward,
                                   .raw_vjp = cube_raw_vjp, .vjp = NULL};

static int raw_calls;
static int counting_raw_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    raw_calls++;
    return cube_raw_vjp(t, out, g, gin);
}

static void cube_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = ag_input(out, 0);
    gin[0] = ag_mul(t, g, ag_mul_scalar(t, ag_mul(t, x, x), 3.0));
}

static const ag_op cube_two_paths = {.name = "cube2", .forward = cube_forward, .vjp = cube_vjp,
                                     .raw_vjp = counting_raw_vjp};

Test(custom_op, the_engine_picks_the_raw_vjp_outside_create_graph)
{
    (void)cube_both_op;
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 2.0));
    ag_tensor *y = ag_custom(t, &cube_two_paths, NULL, 1, &x, AG_F64, 0, NULL);
    raw_calls = 0;
    ag_backward(t, y);
    cr_expect_eq(raw_calls, 1);
    cr_expect_float_eq(ag_grad_item(x), 12.0, 1e-15);
    ag_tensor *dy, *d2y;
    ag_gradients(t, y, NULL, 1, &x, &dy, 1);
    cr_expect_eq(raw_calls, 1, "create-graph mode took the raw VJP");
    ag_gradients(t, dy, NULL, 1, &x, &d2y, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_item(d2y), 12.0, 1e-15);   /* d/dx 3x^2 = 6x */
    ag_tape_free(t);
}

/* ----------------------------------------------- callbacks that fail */

static int failing_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    ag_op_fail(out, AG_ENUMERIC, "no root for %g", ag_item(ag_input(out, 0)));
    return -1;
}

static int silent_failing_forward(ag_tensor *out, void *ctx)
{
    (void)out, (void)ctx;
    return 3;
}

static const ag_op failing_op = {.name = "solver", .forward = failing_forward,
                                 .vjp = identity_vjp};
static const ag_op silent_op = {.name = "quiet", .forward = silent_failing_forward,
                                .vjp = identity_vjp};

Test(custom_op, a_failing_forward_names_the_op)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 4.0));
    ag_tensor *y = ag_custom(t, &failing_op, NULL, 1, &x, AG_F64, 0, NULL);
    cr_assert(ag_is_nil(y));
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    cr_assert_str_eq(ag_tape_errmsg(t), "solver: no root for 4");
    /* The tape stays in error: later ops give nil. */
    cr_assert(ag_is_nil(ag_exp(t, x)));
    ag_tape_reset(t);
    x = ag_scalar(t, AG_F64, 1.0);
    y = ag_custom(t, &silent_op, NULL, 1, &x, AG_F64, 0, NULL);
    cr_assert(ag_is_nil(y));
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    cr_assert_str_eq(ag_tape_errmsg(t), "quiet: forward failed (returned 3)");
    ag_tape_free(t);
}

static void failing_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)t, (void)g, (void)gin;
    ag_op_fail(out, AG_OK, "cannot differentiate at %g", ag_item(ag_input(out, 0)));
}

static int copy_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    for (int64_t i = 0; i < ag_numel(out); i++)
        ag_set(out, i, ag_get(ag_input(out, 0), i));
    return 0;
}

static const ag_op failing_vjp_op = {.name = "kink", .forward = copy_forward,
                                     .vjp = failing_vjp};

Test(custom_op, a_failing_vjp_names_the_op_and_stops_the_pass)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *w = ag_param_scalar(AG_F64, 0.5);
    ag_tensor *y = ag_custom(t, &failing_vjp_op, NULL, 1, &w, AG_F64, 0, NULL);
    cr_assert_eq(ag_tape_status(t), AG_OK);
    ag_backward(t, ag_mul(t, y, y));
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    cr_assert_str_eq(ag_tape_errmsg(t), "kink: cannot differentiate at 0.5");
    cr_expect_float_eq(ag_grad_item(w), 0.0, 0.0, "a failed pass stores nothing");
    ag_tape_free(t);
    ag_param_free(w);
}

/* A VJP that returns the wrong shape is caught in every build. */
static void wrong_shape_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)out;
    gin[0] = ag_zeros(t, ag_dtype_of(g), 1, (int64_t[]){4});
}

static const ag_op wrong_shape_op = {.name = "sloppy", .forward = copy_forward,
                                     .vjp = wrong_shape_vjp};

Test(custom_op, a_vjp_of_the_wrong_shape_is_refused)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_full(t, AG_F64, 1, (int64_t[]){2}, 1.0));
    ag_backward(t, ag_sum(t, ag_custom(t, &wrong_shape_op, NULL, 1, &x, AG_F64, 1,
                                       (int64_t[]){2})));
    cr_assert_eq(ag_tape_status(t), AG_ESHAPE);
    expect_in(ag_tape_errmsg(t), "sloppy: its vjp gave f64 [4] for input 0 of f64 [2]");
    ag_tape_free(t);
}

/* ---------------------------------------------------- bad descriptors */

/* ag_custom on a fresh tape, with 'nin' inputs of shape [2] made there
** when 'inputs' (the second one NULL), or 'in' NULL otherwise: the status,
** and the message in 'msg'. */
static ag_status custom_status(const ag_op *op, int nin, bool inputs, ag_dtype dt, int rank,
                               const int64_t *shape, char *msg)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *in[2] = {ag_full(t, AG_F64, 1, (int64_t[]){2}, 1.0), NULL};
    ag_tensor *y = ag_custom(t, op, NULL, nin, inputs ? in : NULL, dt, rank, shape);
    ag_status st = ag_tape_status(t);
    cr_assert(ag_is_nil(y));
    snprintf(msg, 256, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
    return st;
}

Test(custom_op, bad_descriptors_and_arguments_are_refused)
{
    char msg[256];
    const int64_t two[1] = {2}, negative[1] = {-2};
    static const ag_op no_name = {.forward = copy_forward, .vjp = identity_vjp};
    static const ag_op empty_name = {.name = "", .forward = copy_forward, .vjp = identity_vjp};
    static const ag_op no_forward = {.name = "nofwd", .vjp = identity_vjp};
    static const ag_op no_vjp = {.name = "novjp", .forward = copy_forward};

    cr_assert_eq(custom_status(NULL, 0, false, AG_F64, 0, NULL, msg), AG_EINVAL);
    cr_assert_str_eq(msg, "ag_custom: op is NULL");
    cr_assert_eq(custom_status(&no_name, 0, false, AG_F64, 0, NULL, msg), AG_EINVAL);
    cr_assert_str_eq(msg, "ag_custom: the op has no name (.name is NULL)");
    cr_assert_eq(custom_status(&empty_name, 0, false, AG_F64, 0, NULL, msg), AG_EINVAL);
    expect_in(msg, ".name is empty");
    cr_assert_eq(custom_status(&no_forward, 0, false, AG_F64, 0, NULL, msg), AG_EINVAL);
    cr_assert_str_eq(msg, "ag_custom: op 'nofwd' has no forward");
    cr_assert_eq(custom_status(&no_vjp, 0, false, AG_F64, 0, NULL, msg), AG_EINVAL);
    cr_assert_str_eq(msg, "ag_custom: op 'novjp' has neither vjp nor raw_vjp");

    cr_assert_eq(custom_status(&erf_op, 1, true, AG_F64, 1, negative, msg), AG_ESHAPE);
    expect_in(msg, "ag_custom (op 'erf'): dimension 0 is negative (-2)");
    cr_assert_eq(custom_status(&erf_op, 1, true, AG_F64, 1, NULL, msg), AG_EINVAL);
    expect_in(msg, "ag_custom (op 'erf'): shape is NULL for rank 1");
    cr_assert_eq(custom_status(&erf_op, 1, true, AG_F64, AG_MAX_DIMS + 1, two, msg), AG_ESHAPE);
    expect_in(msg, "ag_custom (op 'erf'): rank 9");
    cr_assert_eq(custom_status(&erf_op, 1, true, (ag_dtype)7, 1, two, msg), AG_EDTYPE);
    expect_in(msg, "ag_custom (op 'erf'): dtype 7");
    cr_assert_eq(custom_status(&erf_op, 2, true, AG_F64, 1, two, msg), AG_EINVAL);
    expect_in(msg, "ag_custom (op 'erf')");
    cr_assert_eq(custom_status(&erf_op, -1, true, AG_F64, 1, two, msg), AG_EINVAL);
    expect_in(msg, "ag_custom: op 'erf' given -1 inputs");
    cr_assert_eq(custom_status(&erf_op, 1, false, AG_F64, 1, two, msg), AG_EINVAL);
    expect_in(msg, "ag_custom: op 'erf' given 1 inputs at");
    cr_assert(ag_is_nil(ag_custom(NULL, &erf_op, NULL, 0, NULL, AG_F64, 0, NULL)));
}

/* ------------------------------------------------ allocation failures */

/* y = sum(k e^x) through kexp (which makes and saves a tensor in its
** forward), then backward, with the Nth allocation refused, for every N
** until one run needs no refusal: each run either succeeds with the right
** gradient or fails with AG_ENOMEM, and frees everything. The tensors are
** large (160 KB) so that each takes a new arena chunk: refusals land
** inside ag_custom (its result, the forward's tensor) and its VJP. */
Test(custom_op, allocation_failure_inside_a_user_op)
{
    bool completed = false;
    int inside = 0;
    const int64_t n_el = 20000;
    for (long n = 1; n < 200 && !completed; n++) {
        alloc_hooks h = hooks_failing_at(n);
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        if (!t) {
            cr_assert_eq(h.live, 0);
            continue;
        }
        scale_ctx c = {.k = 2.0};
        ag_tensor *x = ag_requires_grad(ag_full(t, AG_F64, 1, &n_el, 0.25));
        ag_tensor *y = ag_custom(t, &kexp_op, &c, 1, &x, AG_F64, 1, &n_el);
        inside += !ag_is_nil(x) && ag_is_nil(y);
        ag_backward(t, ag_sum(t, y));
        ag_status st = ag_tape_status(t);
        if (st == AG_OK) {
            cr_expect_float_eq(ag_get(ag_grad(x), n_el - 1), 2 * exp(0.25), 1e-14);
            completed = h.refused == 0;
        } else {
            cr_assert_eq(st, AG_ENOMEM, "refusing request %ld: %s", n, ag_tape_errmsg(t));
        }
        ag_tape_free(t);
        cr_assert_eq(h.live, 0, "refusing request %ld leaked %ld blocks", n, h.live);
        cr_assert_eq(h.bad_osize, 0);
    }
    cr_assert(completed, "no run completed without a refusal");
    cr_assert_geq(inside, 2, "refusals reached the user op %d times", inside);
}

/* Anomaly mode sees a user op's result once its forward has filled it:
** erf's forward is fine, log's of the 0 it gives is not; a forward that
** makes a NaN is named. */
static int nan_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    ag_set(out, 0, NAN);
    return 0;
}

static const ag_op nan_op = {.name = "makes_nan", .forward = nan_forward, .vjp = identity_vjp};

Test(custom_op, anomaly_mode_checks_the_forward_result)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.0));
    ag_tensor *y = my_erf(t, x);
    ag_tensor *z = ag_exp(t, y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_item(z), 1.0, 0.0);
    ag_custom(t, &nan_op, NULL, 1, &x, AG_F64, 0, NULL);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), "anomaly: makes_nan");
    ag_tape_free(t);
}

/* A forward that saves a tensor before writing its result: ag_op_save
** checks its input, which once made anomaly mode check the result while it
** still held the zeros ag_custom starts it with, and miss the NaN written
** after. */
static int save_then_nan_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    if (ag_op_save(out, ag_input(out, 0)) != AG_OK)
        return 1;
    ag_set(out, 0, NAN);
    return 0;
}

static const ag_op save_then_nan_op = {
    .name = "saves_then_makes_nan", .forward = save_then_nan_forward, .vjp = identity_vjp};

Test(custom_op, anomaly_mode_checks_the_result_a_saving_forward_writes)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.5));
    ag_tensor *y = ag_custom(t, &save_then_nan_op, NULL, 1, &x, AG_F64, 0, NULL);
    /* The check runs when the result is next used, as for the library's ops. */
    ag_exp(t, y);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC, "%s", ag_tape_errmsg(t));
    expect_in(ag_tape_errmsg(t), "anomaly: saves_then_makes_nan");
    ag_tape_free(t);
}

/* ------------------------------------------------------- forward mode */

/* y = erf(x) with x carrying v: the user's rule gives erf'(x) v, of x's
** dtype, and the library's ops downstream carry it on (d y^2 = 2 y dy). */
static void erf_tangents(ag_dtype dt, double tol)
{
    static const double xs[4] = {-1.2, -0.1, 0.4, 1.7}, vs[4] = {1.0, -2.0, 0.5, 3.0};
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_zeros(t, dt, 1, (int64_t[]){4}), *v = ag_zeros(t, dt, 1, (int64_t[]){4});
    for (int i = 0; i < 4; i++) {
        ag_set(x0, i, xs[i]);
        ag_set(v, i, vs[i]);
    }
    erf_jvp_calls = 0;
    ag_tensor *y = my_erf(t, ag_dual(t, x0, v));
    ag_tensor *dy = ag_tangent(y), *dsq = ag_tangent(ag_square(t, y));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(erf_jvp_calls, 1, "the rule runs once per result");
    cr_assert_not_null(dy);
    cr_assert_eq(ag_dtype_of(dy), dt);
    for (int i = 0; i < 4; i++) {
        double want = erf_slope(xs[i]) * vs[i];
        cr_expect_float_eq(ag_get(dy, i), want, tol * (1 + fabs(want)), "erf'(%g) v", xs[i]);
        cr_expect_float_eq(ag_get(dsq, i), 2 * erf(xs[i]) * want, tol * (1 + fabs(want)),
                           "d erf(x)^2 at %g", xs[i]);
    }
    /* Without a dual the rule never runs. */
    my_erf(t, x0);
    cr_expect_eq(ag_tape_status(t), AG_OK);
    cr_expect_eq(erf_jvp_calls, 1);
    ag_tape_free(t);
}

Test(custom_op, a_user_jvp_gives_forward_mode_f64) { erf_tangents(AG_F64, 1e-15); }
Test(custom_op, a_user_jvp_gives_forward_mode_f32) { erf_tangents(AG_F32, 1e-6); }

/* Forward-over-reverse through the user's VJP (written with ops): the
** tangent of the gradient of sum erf(x) is erf''(x) v = -2 x erf'(x) v. */
Test(custom_op, forward_over_reverse_through_a_user_op)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){2},
                                                    (const double[]){0.3, -0.8}));
    ag_tensor *v = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (const double[]){2.0, 1.0});
    ag_backward_seed(t, my_erf(t, ag_dual(t, x0, v)), ag_ones(t, AG_F64, 1, (int64_t[]){2}));
    ag_tensor *hv = ag_tangent(ag_grad(x0));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_not_null(hv);
    cr_expect_float_eq(ag_get(hv, 0), -2 * 0.3 * erf_slope(0.3) * 2.0, 1e-14);
    cr_expect_float_eq(ag_get(hv, 1), -2 * -0.8 * erf_slope(-0.8) * 1.0, 1e-14);
    ag_tape_free(t);
}

/* a * b^2 with a's tangent NULL: the rule sees NULL for a zero tangent and
** may return one that broadcasts to the result (b's row). */
static ag_tensor *scale_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *a = ag_input(out, 0), *b = ag_input(out, 1), *r = NULL;
    if (tan[0])
        r = ag_mul(t, tan[0], ag_mul(t, b, b));
    if (tan[1]) {
        ag_tensor *db = ag_mul(t, tan[1], ag_mul_scalar(t, b, 2.0));
        r = r ? ag_add(t, r, ag_mul(t, a, db)) : ag_mul(t, a, db);
    }
    return r;
}

static const ag_op scale_fwd_op = {.name = "scale_by_square", .forward = scale_forward,
                                   .vjp = scale_vjp, .jvp = scale_jvp};

Test(custom_op, a_user_jvp_sees_zero_tangents_as_null)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3}, (const double[]){1, -2, 3, 0.5, 4, -1});
    ag_tensor *b0 = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (const double[]){0.5, -1.5, 2});
    ag_tensor *db = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (const double[]){1, 0, -1});
    ag_tensor *in[2] = {a, ag_dual(t, b0, db)};
    ag_tensor *y = ag_custom(t, &scale_fwd_op, NULL, 2, in, AG_F64, 2, (int64_t[]){2, 3});
    ag_tensor *dy = ag_tangent(y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_not_null(dy);
    for (int i = 0; i < 6; i++)
        cr_expect_float_eq(ag_get(dy, i), ag_get(a, i) * 2 * ag_get(b0, i % 3) * ag_get(db, i % 3),
                           1e-15, "element %d", i);
    ag_tape_free(t);
}

/* out = k e^x whose forward saves a tensor before it writes out: the rule,
** which reads out, must still see the finished result. */
static int kexp_save_first_forward(ag_tensor *out, void *ctx)
{
    const scale_ctx *c = ctx;
    ag_tensor *x = ag_input(out, 0);
    if (ag_op_save(out, x) != AG_OK)
        return 1;
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(out, i, c->k * exp(ag_get(x, i)));
    return 0;
}

static ag_tensor *kexp_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_mul(t, tan[0], out);
}

static const ag_op kexp_save_first_op = {.name = "kexp", .forward = kexp_save_first_forward,
                                         .vjp = kexp_vjp, .jvp = kexp_jvp};

Test(custom_op, a_user_jvp_sees_the_whole_result)
{
    ag_tape *t = ag_tape_new();
    scale_ctx c = {.k = 3.0};
    ag_tensor *x = ag_dual(t, ag_scalar(t, AG_F64, 0.5), ag_scalar(t, AG_F64, 2.0));
    ag_tensor *y = ag_custom(t, &kexp_save_first_op, &c, 1, &x, AG_F64, 0, NULL);
    ag_tensor *dy = ag_tangent(y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_not_null(dy);
    cr_expect_float_eq(ag_item(dy), 3 * exp(0.5) * 2.0, 1e-14);
    ag_tape_free(t);
}

/* Rules that go wrong: a tangent of another dtype or a shape that does not
** broadcast to the result, and one that fails through ag_op_fail. Each is
** the tape's error, naming the op; later ops give nil. */
static ag_tensor *f32_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)out;
    return ag_cast(t, tan[0], AG_F32);
}
static ag_tensor *row_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)out, (void)tan;
    return ag_zeros(t, AG_F64, 1, (int64_t[]){2});
}
static ag_tensor *failing_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)t, (void)tan;
    ag_op_fail(out, AG_ENUMERIC, "no tangent at %g", ag_get(ag_input(out, 0), 0));
    return NULL;
}
static ag_tensor *zero_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)t, (void)out, (void)tan;
    return NULL;
}
static const ag_op f32_jvp_op = {.name = "wrong_dtype", .forward = copy_forward,
                                 .vjp = identity_vjp, .jvp = f32_jvp};
static const ag_op row_jvp_op = {.name = "wrong_shape", .forward = copy_forward,
                                 .vjp = identity_vjp, .jvp = row_jvp};
static const ag_op failing_jvp_op = {.name = "kinked", .forward = copy_forward,
                                     .vjp = identity_vjp, .jvp = failing_jvp};
static const ag_op zero_jvp_op = {.name = "flat", .forward = copy_forward,
                                  .vjp = identity_vjp, .jvp = zero_jvp};

/* The status after applying 'op' to a [3] input carrying a tangent, and then
** an op of the library to its result; the message in 'msg'. */
static ag_status jvp_status(const ag_op *op, char *msg)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_dual(t, ag_full(t, AG_F64, 1, (int64_t[]){3}, 0.25),
                           ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_tensor *y = ag_custom(t, op, NULL, 1, &x, AG_F64, 1, (int64_t[]){3});
    ag_tensor *z = ag_exp(t, y);
    ag_status s = ag_tape_status(t);
    snprintf(msg, 256, "%s", ag_tape_errmsg(t));
    if (s != AG_OK) {
        cr_expect(ag_is_nil(z), "%s: the op after the failed rule gives nil", op->name);
        cr_expect_null(ag_tangent(y));
    }
    ag_tape_free(t);
    return s;
}

Test(custom_op, a_user_jvp_that_goes_wrong_names_the_op)
{
    char msg[256];
    cr_expect_eq(jvp_status(&f32_jvp_op, msg), AG_EDTYPE);
    expect_in(msg, "wrong_dtype: its JVP rule returned a f32 tangent for a f64 result");
    cr_expect_eq(jvp_status(&row_jvp_op, msg), AG_ESHAPE);
    expect_in(msg, "wrong_shape: its JVP rule returned shape [2] for a result of shape [3]");
    cr_expect_eq(jvp_status(&failing_jvp_op, msg), AG_ENUMERIC);
    cr_expect_str_eq(msg, "kinked: no tangent at 0.25");
    cr_expect_eq(jvp_status(&zero_jvp_op, msg), AG_OK, "NULL is a zero tangent: %s", msg);
}
