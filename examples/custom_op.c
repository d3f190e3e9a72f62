/*
** custom_op.c: giving the engine functions of your own, with their
** derivatives (ag_custom, autograd.h).
**
** (a) erf, from libm, whose VJP is written with library ops: it then
**     differentiates twice, as the library's ops do. Checked by
**     ag_gradcheck to first and second order. Its JVP rule serves forward
**     mode (ag_dual): a directional derivative, checked against the exact
**     one.
** (b) y(a) solving y = cos(a y), found by Newton's method in plain C. Its
**     derivative comes from the implicit function theorem: with
**     F(y, a) = y - cos(a y) = 0, dy/da = -F_a / F_y
**     = -y sin(a y) / (1 + a sin(a y)), so the VJP needs only a and y, not
**     the iterations. Checked against central finite differences of the
**     solver itself.
**
**     usage: custom_op
*/
#include "autograd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ erf */

/* y = erf(x) elementwise, in either dtype. */
static int erf_forward(ag_tensor *out, void *ctx)
{
    (void)ctx;
    ag_tensor *x = ag_input(out, 0);
    int64_t n = ag_numel(out);
    if (ag_dtype_of(out) == AG_F32) {
        const float *xv = ag_data(x);
        float *yv = ag_data(out);
        for (int64_t i = 0; i < n; i++)
            yv[i] = erff(xv[i]);
    } else {
        const double *xv = ag_data(x);
        double *yv = ag_data(out);
        for (int64_t i = 0; i < n; i++)
            yv[i] = erf(xv[i]);
    }
    return 0;
}

/* d/dx erf x = 2/sqrt(pi) e^(-x^2), written with ops so that create-graph
** mode records it and a second backward differentiates it. */
static void erf_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    static const double two_over_sqrt_pi = 1.12837916709551257390;
    ag_tensor *x = ag_input(out, 0);
    ag_tensor *slope = ag_mul_scalar(t, ag_exp(t, ag_neg(t, ag_mul(t, x, x))), two_over_sqrt_pi);
    gin[0] = ag_mul(t, g, slope);
}

/* Forward mode: the tangent of erf(x) is erf'(x) times x's tangent, the
** same slope, again with ops (so a gradient's tangent works too). */
static ag_tensor *erf_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tangents)
{
    static const double two_over_sqrt_pi = 1.12837916709551257390;
    ag_tensor *x = ag_input(out, 0);
    ag_tensor *slope = ag_mul_scalar(t, ag_exp(t, ag_neg(t, ag_mul(t, x, x))), two_over_sqrt_pi);
    return ag_mul(t, tangents[0], slope);
}

static const ag_op erf_op = {.name = "erf", .forward = erf_forward, .vjp = erf_vjp,
                             .jvp = erf_jvp};

static ag_tensor *my_erf(ag_tape *t, ag_tensor *x)
{
    return ag_custom(t, &erf_op, NULL, 1, &x, ag_dtype_of(x), ag_rank(x), ag_shape(x));
}

/* For ag_gradcheck: the function, and its gradient as a function of x
** (create-graph mode), whose own gradient needs erf's second derivative. */
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

/* ------------------------------------------------- an implicit function */

/* The solver's settings and what it reports: the op's context. */
typedef struct newton {
    double tol;
    int max_steps;
    int steps;   /* the most any element took, set by the forward */
} newton;

/* y solving y = cos(a y), by Newton's method on F(y) = y - cos(a y). */
static int solve(double a, const newton *nt, double *y, int *steps)
{
    double v = 1.0;
    for (int k = 1; k <= nt->max_steps; k++) {
        double f = v - cos(a * v), df = 1.0 + a * sin(a * v);
        double step = f / df;
        v -= step;
        if (fabs(step) <= nt->tol * (1.0 + fabs(v))) {
            *y = v;
            *steps = k;
            return 0;
        }
    }
    return -1;
}

static int implicit_forward(ag_tensor *out, void *ctx)
{
    newton *nt = ctx;
    ag_tensor *a = ag_input(out, 0);
    nt->steps = 0;
    for (int64_t i = 0; i < ag_numel(out); i++) {
        double y;
        int steps;
        if (solve(ag_get(a, i), nt, &y, &steps) != 0) {
            ag_op_fail(out, AG_ENUMERIC, "Newton did not converge for a = %g in %d steps",
                       ag_get(a, i), nt->max_steps);
            return -1;
        }
        ag_set(out, i, y);
        if (steps > nt->steps)
            nt->steps = steps;
    }
    return 0;
}

/* dy/da = -y sin(a y) / (1 + a sin(a y)): the implicit function theorem,
** with ops on a and y (the op's result), so it differentiates again. */
static void implicit_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = ag_input(out, 0), *y = out;
    ag_tensor *s = ag_sin(t, ag_mul(t, a, y));
    ag_tensor *dy_da = ag_neg(t, ag_div(t, ag_mul(t, y, s), ag_add_scalar(t, ag_mul(t, a, s), 1.0)));
    gin[0] = ag_mul(t, g, dy_da);
}

static const ag_op implicit_op = {.name = "cos_fixed_point", .forward = implicit_forward,
                                  .vjp = implicit_vjp};

/* ------------------------------------------------------------------ main */

static int check(ag_tape *t)
{
    if (ag_tape_status(t) == AG_OK)
        return 0;
    fprintf(stderr, "custom_op: %s\n", ag_tape_errmsg(t));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        fprintf(strcmp(argv[1], "--help") == 0 ? stdout : stderr,
                "usage: custom_op\n"
                "Defines erf and an implicit function as user ops and checks their derivatives.\n");
        return strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    ag_tape *t = ag_tape_new();
    if (!t)
        return 1;

    /* (a) erf at 0.5: the value, the first and the second derivative. */
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.5));
    ag_tensor *y = my_erf(t, x);
    ag_tensor *dy, *d2y;
    ag_gradients(t, y, NULL, 1, &x, &dy, 1);
    ag_gradients(t, dy, NULL, 1, &x, &d2y, 0);
    if (check(t))
        return 1;
    double slope = 2.0 / sqrt(acos(-1.0)) * exp(-0.25);
    printf("erf(0.5) = %.15f (libm %.15f)\n", ag_item(y), erf(0.5));
    printf("d/dx erf(0.5) = %.15f (exact %.15f)\n", ag_item(dy), slope);
    printf("d2/dx2 erf(0.5) = %.15f (exact %.15f)\n", ag_item(d2y), -2.0 * 0.5 * slope);

    ag_tensor *xs = ag_tensor_from(t, AG_F64, 1, (int64_t[]){7},
                                   (const double[]){-1.5, -1.0, -0.4, 0.1, 0.6, 1.2, 2.0});
    ag_gradcheck_report first, second;
    char err[256];
    if (ag_gradcheck(erf_fn, NULL, 1, &xs, 0, &first, err, sizeof err) != AG_OK ||
        ag_gradcheck(erf_grad_fn, NULL, 1, &xs, 0, &second, err, sizeof err) != AG_OK) {
        fprintf(stderr, "custom_op: %s\n", err);
        return 1;
    }
    printf("gradcheck erf, first order: max relative error %.3g over %lld elements\n",
           first.max_rel_err, (long long)first.checked);
    printf("gradcheck erf, second order: max relative error %.3g over %lld elements\n",
           second.max_rel_err, (long long)second.checked);

    /* Forward mode: the directional derivative d/ds erf(x + s v) at s = 0,
    ** J v, in one pass with no backward: the tangent of the result. */
    static const double x0[3] = {0.5, -1.0, 2.0}, v0[3] = {1.0, 2.0, -0.5};
    ag_tensor *xd = ag_dual(t, ag_tensor_from_f64(t, 1, (int64_t[]){3}, x0),
                            ag_tensor_from_f64(t, 1, (int64_t[]){3}, v0));
    ag_tensor *jv = ag_tangent(my_erf(t, xd));
    if (check(t) || !jv)
        return 1;
    printf("forward mode: erf at x = (0.5, -1, 2) along v = (1, 2, -0.5): J v =");
    for (int i = 0; i < 3; i++)
        printf(" %.15f", ag_get(jv, i));
    printf(" (exact");
    for (int i = 0; i < 3; i++)
        printf(" %.15f", 2.0 / sqrt(acos(-1.0)) * exp(-x0[i] * x0[i]) * v0[i]);
    printf(")\n");

    /* (b) y = cos(a y) at a = 0.8. */
    newton nt = {.tol = 1e-15, .max_steps = 50};
    const double a0 = 0.8;
    ag_tensor *a = ag_requires_grad(ag_scalar(t, AG_F64, a0));
    ag_tensor *ya = ag_custom(t, &implicit_op, &nt, 1, &a, AG_F64, 0, NULL);
    ag_tensor *dya;
    ag_gradients(t, ya, NULL, 1, &a, &dya, 0);
    if (check(t))
        return 1;
    double yv = ag_item(ya), h = 1e-6, yp, ym;
    int steps;
    if (solve(a0 + h, &nt, &yp, &steps) != 0 || solve(a0 - h, &nt, &ym, &steps) != 0)
        return 1;
    double fd = (yp - ym) / (2 * h);
    printf("y = cos(a y) at a = 0.8: y = %.15f (residual %.3g, %d Newton steps)\n", yv,
           fabs(yv - cos(a0 * yv)), nt.steps);
    printf("dy/da = %.12f (finite differences %.12f, difference %.3g)\n", ag_item(dya), fd,
           fabs(ag_item(dya) - fd));

    ag_tape_free(t);
    return 0;
}
