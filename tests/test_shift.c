/*
** test_shift.c: the softmax family does not move when a constant is added
** to the logits. Softmax, log-softmax, logsumexp, cross-entropy and their
** gradients are invariant under x -> x + c; they once subtracted a rounded
** logsumexp, whose rounding grows with the largest logit (f64 [[1e16,
** 1e16]] gave a loss of 0 and a gradient of [0, 1]). The logits here are
** c + d with d a multiple of an ulp of c, so x holds c + d exactly and
** every result must equal the unshifted one to a few ulps (logsumexp: c
** plus the unshifted one, rounded), in f32 up to c = 1e7 and f64 up to 1e16.
*/
#include "autograd.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <string.h>

enum { N = 3, C = 5 };
static const int64_t labels[N] = {4, 0, 2};

/* An ulp of |v| in dtype dt. */
static double ulp(double v, ag_dtype dt)
{
    v = fabs(v);
    if (dt == AG_F32) {
        float f = (float)v;
        return (double)nextafterf(f, INFINITY) - (double)f;
    }
    return nextafter(v, INFINITY) - v;
}

static void expect_close(double got, double want, double ulps, ag_dtype dt, const char *what,
                         double shift, int64_t i)
{
    double tol = ulps * ulp(fmax(fabs(got), fabs(want)), dt);
    if (tol < (dt == AG_F32 ? FLT_MIN : DBL_MIN))
        tol = dt == AG_F32 ? FLT_MIN : DBL_MIN;
    cr_assert(fabs(got - want) <= tol, "%s (%s), shift %g, element %lld: %.17g, unshifted %.17g",
              what, ag_dtype_name(dt), shift, (long long)i, got, want);
}

/* Every result and gradient the family gives for logits 'x' (N x C). */
typedef struct results {
    double softmax[N * C], log_softmax[N * C], softmax0[N * C], log_softmax0[N * C];
    double lse[N], lse_all, ce;
    double g_softmax[N * C], g_log_softmax[N * C], g_lse[N * C], g_lse_all[N * C];
    double g_ce_raw[N * C], g_ce_graph[N * C], g_softmax0[N * C];
} results;

static void copy_out(const ag_tensor *x, double *out)
{
    cr_assert_not_null(x);
    for (int64_t i = 0; i < ag_numel(x); i++)
        out[i] = ag_get(x, i);
}

/* d/dx of sum(w * f(x)) with fixed weights w (so softmax's gradient is not 0). */
static void grad_of(ag_dtype dt, const double *x, const double *w, int which, double *out)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *xt = ag_zeros(t, dt, 2, (int64_t[]){N, C});
    ag_tensor *wt = ag_zeros(t, dt, 2, (int64_t[]){N, C});
    for (int i = 0; i < N * C; i++) {
        ag_set(xt, i, x[i]);
        ag_set(wt, i, w[i]);
    }
    ag_requires_grad(xt);
    ag_tensor *y, *g;
    switch (which) {
    case 0: y = ag_softmax(t, xt, 1); break;
    case 1: y = ag_log_softmax(t, xt, 1); break;
    case 2: y = ag_logsumexp_axis(t, xt, 1, 1); break;
    case 3: y = ag_logsumexp(t, xt); break;
    case 4: y = ag_softmax(t, xt, 0); break;
    default: y = ag_cross_entropy(t, xt, labels); break;
    }
    ag_tensor *loss = ag_sum(t, ag_mul(t, y, which == 2 || which == 3 || which >= 5
                                                 ? ag_scalar(t, dt, 1.0) : wt));
    if (which == 6) {
        /* The differentiable path (create-graph), beside ag_backward's raw one. */
        ag_gradients(t, loss, NULL, 1, &xt, &g, 1);
    } else {
        ag_backward(t, loss);
        g = ag_grad(xt);
    }
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    copy_out(g, out);
    ag_tape_free(t);
}

static void run(ag_dtype dt, const double *x, const double *w, results *r)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *xt = ag_zeros(t, dt, 2, (int64_t[]){N, C});
    for (int i = 0; i < N * C; i++)
        ag_set(xt, i, x[i]);
    copy_out(ag_softmax(t, xt, 1), r->softmax);
    copy_out(ag_log_softmax(t, xt, 1), r->log_softmax);
    copy_out(ag_softmax(t, xt, 0), r->softmax0);
    copy_out(ag_log_softmax(t, xt, 0), r->log_softmax0);
    copy_out(ag_logsumexp_axis(t, xt, 1, 0), r->lse);
    r->lse_all = ag_item(ag_logsumexp(t, xt));
    r->ce = ag_item(ag_cross_entropy(t, xt, labels));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
    grad_of(dt, x, w, 0, r->g_softmax);
    grad_of(dt, x, w, 1, r->g_log_softmax);
    grad_of(dt, x, w, 2, r->g_lse);
    grad_of(dt, x, w, 3, r->g_lse_all);
    grad_of(dt, x, w, 4, r->g_softmax0);
    grad_of(dt, x, w, 5, r->g_ce_raw);
    grad_of(dt, x, w, 6, r->g_ce_graph);
}

static void compare(const double *got, const double *want, int n, ag_dtype dt, const char *what,
                    double shift)
{
    for (int i = 0; i < n; i++)
        expect_close(got[i], want[i], 4, dt, what, shift, i);
}

/* Offsets d in [-8, 8] (f64: even, since an ulp of 1e16 is 2), a fixed
** pseudo-random pattern, and weights for the gradients. */
static void offsets(ag_dtype dt, unsigned seed, double *d, double *w)
{
    ag_rng r;
    ag_rng_seed(&r, seed);
    for (int i = 0; i < N * C; i++) {
        double k = (double)ag_rng_below(&r, 9) - 4.0;
        d[i] = dt == AG_F64 ? 2.0 * k : 2.0 * k + (double)ag_rng_below(&r, 2);
        w[i] = ag_rng_uniform(&r) - 0.5;
    }
}

static void check_shifts(ag_dtype dt, const double *shifts, int n_shifts)
{
    for (unsigned seed = 1; seed <= 4; seed++) {
        double d[N * C], w[N * C], x[N * C];
        offsets(dt, seed, d, w);
        static results base, r;
        run(dt, d, w, &base);
        for (int s = 0; s < n_shifts; s++) {
            double c = shifts[s];
            for (int i = 0; i < N * C; i++) {
                x[i] = c + d[i];
                cr_assert(dt == AG_F64 ? x[i] - c == d[i] : (float)x[i] - (float)c == d[i],
                          "c + d is not exact: fix the test");
            }
            run(dt, x, w, &r);
            compare(r.softmax, base.softmax, N * C, dt, "softmax", c);
            compare(r.log_softmax, base.log_softmax, N * C, dt, "log_softmax", c);
            compare(r.softmax0, base.softmax0, N * C, dt, "softmax along axis 0", c);
            compare(r.log_softmax0, base.log_softmax0, N * C, dt, "log_softmax along axis 0", c);
            compare(&r.ce, &base.ce, 1, dt, "cross_entropy", c);
            compare(r.g_softmax, base.g_softmax, N * C, dt, "softmax's gradient", c);
            compare(r.g_log_softmax, base.g_log_softmax, N * C, dt, "log_softmax's gradient", c);
            compare(r.g_softmax0, base.g_softmax0, N * C, dt, "softmax's gradient, axis 0", c);
            compare(r.g_lse, base.g_lse, N * C, dt, "logsumexp_axis's gradient", c);
            compare(r.g_lse_all, base.g_lse_all, N * C, dt, "logsumexp's gradient", c);
            compare(r.g_ce_raw, base.g_ce_raw, N * C, dt, "cross_entropy's gradient", c);
            compare(r.g_ce_graph, base.g_ce_graph, N * C, dt,
                    "cross_entropy's gradient (create-graph)", c);
            /* logsumexp moves with the shift: c + the unshifted, to its rounding. */
            for (int i = 0; i < N; i++)
                expect_close(r.lse[i], c + base.lse[i], 2, dt, "logsumexp_axis", c, i);
            expect_close(r.lse_all, c + base.lse_all, 2, dt, "logsumexp", c, 0);
        }
    }
}

Test(shift, f64_up_to_1e16)
{
    static const double shifts[] = {1e3, 1e8, 1e12, 1e15, 1e16, -1e16, -3e15};
    check_shifts(AG_F64, shifts, sizeof shifts / sizeof shifts[0]);
}

Test(shift, f32_up_to_1e7)
{
    static const double shifts[] = {100.0, 1e4, 1e6, 1e7, -1e7, 4194304.0};
    check_shifts(AG_F32, shifts, sizeof shifts / sizeof shifts[0]);
}

/* The examples, exactly. */
Test(shift, cross_entropy_of_1e16_logits)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_full(t, AG_F64, 2, (int64_t[]){1, 2}, 1e16));
    ag_tensor *loss = ag_cross_entropy(t, x, (const int64_t[]){0});
    cr_assert_float_eq(ag_item(loss), log(2.0), 1e-15, "loss %.17g", ag_item(loss));
    ag_backward(t, loss);
    cr_assert_eq(ag_get(ag_grad(x), 0), -0.5, "%.17g", ag_get(ag_grad(x), 0));
    cr_assert_eq(ag_get(ag_grad(x), 1), 0.5, "%.17g", ag_get(ag_grad(x), 1));
    ag_tensor *g;
    ag_gradients(t, loss, NULL, 1, &x, &g, 1);
    cr_assert_eq(ag_get(g, 0), -0.5);
    cr_assert_eq(ag_get(g, 1), 0.5);
    ag_tape_free(t);
}

Test(shift, logsumexp_gradient_of_1e7_in_f32)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_full(t, AG_F32, 1, (int64_t[]){2}, 1e7));
    ag_backward(t, ag_logsumexp(t, x));
    cr_assert_eq(ag_get(ag_grad(x), 0), 0.5, "%.9g", ag_get(ag_grad(x), 0));
    cr_assert_eq(ag_get(ag_grad(x), 1), 0.5);
    ag_tape_reset(t);
    /* At 1e4 it was already off by 2e-4. */
    x = ag_requires_grad(ag_tensor_from_f32(t, 1, (int64_t[]){2}, (const float[]){1e4f, 1e4f + 1}));
    ag_backward(t, ag_logsumexp_axis(t, x, 0, 0));
    double p1 = 1.0 / (1.0 + exp(-1.0));
    cr_assert_float_eq(ag_get(ag_grad(x), 1), p1, 1e-7, "%.9g", ag_get(ag_grad(x), 1));
    ag_tape_free(t);
}

Test(shift, softmax_of_1e15_sums_to_one)
{
    ag_tape *t = ag_tape_new();
    double v[8];
    for (int i = 0; i < 8; i++)
        v[i] = 1e15 + 0.125 * i;   /* an ulp of 1e15 is 1/8 */
    ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){8}, v);
    ag_tensor *p = ag_softmax(t, x, 0);
    double sum = 0;
    for (int i = 0; i < 8; i++)
        sum += ag_get(p, i);
    cr_assert(fabs(sum - 1.0) <= 8 * DBL_EPSILON, "sum %.17g", sum);
    /* And each is the softmax of 0, 1/8, ..., 7/8. */
    double z = 0;
    for (int i = 0; i < 8; i++)
        z += exp(0.125 * i);
    for (int i = 0; i < 8; i++)
        cr_assert_float_eq(ag_get(p, i), exp(0.125 * i) / z, 4e-16);
    ag_tape_free(t);
}
