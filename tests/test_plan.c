/*
** test_plan.c: record once, replay (ag_plan, issue 15 section 3). A plan
** run at new leaf values must give what recording the tape again at those
** values gives: the value and the gradient of every leaf, for every op case
** of op_cases.h that a plan supports, in f64 and f32; comparisons that go
** otherwise are reported; runs allocate nothing; bad input is refused with
** messages that name the function.
**
** Tolerances. f64: values and gradients to 1e-12 relative (|a - b| <=
** 1e-12 max(1, |a|, |b|)): elementwise values are the same bits, but sums,
** matrix products and accumulated gradients may add in another order than
** the tape's kernels (chunked sums, the packed gemm, gradient sharing).
** f32: 2e-5, since an f32 tape rounds every intermediate gradient to float
** where a plan keeps doubles.
*/
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "alloc_hooks.h"
#include "op_cases.h"

static bool close_rel(double a, double b, double tol)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (isinf(a) || isinf(b))
        return a == b;
    double m = fmax(1.0, fmax(fabs(a), fabs(b)));
    return fabs(a - b) <= tol * m;
}

/* ------------------------------------------------------ the op cases */

/* The case's output contracted with fixed weights to a scalar (sum(out * w)),
** so that every element of it takes part in the gradient. */
static ag_tensor *contracted(ag_tape *t, ag_tensor *out)
{
    ag_rng r;
    ag_rng_seed(&r, 77);
    ag_tensor *w = ag_rand(t, &r, ag_dtype_of(out), ag_rank(out), ag_shape(out), 0.5, 1.5);
    return ag_sum(t, ag_mul(t, out, w));
}

/* New values near the old ones: the shapes and most branches stay, the
** numbers all change. */
static void perturb(ag_rng *r, int64_t n, const double *from, double *to)
{
    for (int64_t i = 0; i < n; i++)
        to[i] = (double)(float)(from[i] * (1.0 + 0.05 * (2 * ag_rng_uniform(r) - 1)) +
                                0.02 * (2 * ag_rng_uniform(r) - 1));
}

enum { MAXN = 8192 };   /* elements of a case's input, at most */

typedef struct case_outcome {
    bool supported;
    char why[320];
} case_outcome;

/* Freezes case c in dtype dt, then at three new points compares the plan
** with a new recording. */
static case_outcome check_case(const op_case *c, ag_dtype dt, double tol)
{
    case_outcome res = {0};
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3];
    case_inputs(t, c, dt, x);
    for (int i = 0; i < c->n; i++)
        ag_requires_grad(x[i]);
    ag_tensor *y = contracted(t, case_apply(t, x, c));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", c->what, ag_tape_errmsg(t));
    ag_plan *p = ag_plan_new(t, y, c->n, x);
    if (!p) {
        cr_assert_eq(ag_tape_status(t), AG_EUNSUPPORTED, "%s: %s", c->what, ag_tape_errmsg(t));
        cr_assert(strstr(ag_tape_errmsg(t), "ag_plan_new: op '"), "%s", ag_tape_errmsg(t));
        snprintf(res.why, sizeof res.why, "%s", ag_tape_errmsg(t));
        ag_tape_free(t);
        return res;
    }
    res.supported = true;
    int64_t n[3];
    static double old[3][MAXN], val[3][MAXN], grad[3][MAXN];
    static float val32[3][MAXN], grad32[3][MAXN];
    for (int i = 0; i < c->n; i++) {
        n[i] = ag_numel(x[i]);
        cr_assert_leq(n[i], MAXN);
        for (int64_t j = 0; j < n[i]; j++)
            old[i][j] = ag_get(x[i], j);
    }
    ag_tape_free(t);   /* the plan stands alone */
    ag_rng r;
    ag_rng_seed(&r, 1234);
    ag_tape *t2 = ag_tape_new();
    for (int round = 0; round < 3; round++) {
        ag_tape_reset(t2);
        ag_tensor *x2[3], *g2[3];
        const void *leaves[3];
        void *grads[3];
        /* new leaves of the recorded shapes (case_inputs gives them) at new values */
        ag_tape *tr = ag_tape_new();
        ag_tensor *xr[3];
        case_inputs(tr, c, dt, xr);
        for (int i = 0; i < c->n; i++) {
            perturb(&r, n[i], old[i], val[i]);
            x2[i] = ag_zeros(t2, dt, ag_rank(xr[i]), ag_shape(xr[i]));
            for (int64_t j = 0; j < n[i]; j++)
                ag_set(x2[i], j, val[i][j]);
            ag_requires_grad(x2[i]);
            for (int64_t j = 0; j < n[i]; j++)
                val32[i][j] = (float)val[i][j];
            leaves[i] = dt == AG_F64 ? (const void *)val[i] : (const void *)val32[i];
            grads[i] = dt == AG_F64 ? (void *)grad[i] : (void *)grad32[i];
        }
        ag_tape_free(tr);
        ag_tensor *y2 = contracted(t2, case_apply(t2, x2, c));
        ag_gradients(t2, y2, NULL, c->n, x2, g2, 0);
        cr_assert_eq(ag_tape_status(t2), AG_OK, "%s: %s", c->what, ag_tape_errmsg(t2));
        double yv;
        float yv32;
        ag_status s = ag_plan_run(p, leaves, dt == AG_F64 ? (void *)&yv : (void *)&yv32, grads);
        cr_assert(s == AG_OK || s == AG_ESTATE, "%s: %s", c->what, ag_plan_errmsg(p));
        double got = dt == AG_F64 ? yv : yv32;
        cr_assert(close_rel(got, ag_item(y2), tol), "%s (%s): y %.17g, recorded again %.17g",
                  c->what, ag_dtype_name(dt), got, ag_item(y2));
        for (int i = 0; i < c->n; i++)
            for (int64_t j = 0; j < n[i]; j++) {
                double gp = dt == AG_F64 ? grad[i][j] : grad32[i][j];
                double gr = ag_get(g2[i], j);
                cr_assert(close_rel(gp, gr, tol),
                          "%s (%s), round %d: d/dx%d[%lld] %.17g, recorded again %.17g",
                          c->what, ag_dtype_name(dt), round, i, (long long)j, gp, gr);
            }
    }
    ag_tape_free(t2);
    ag_plan_free(p);
    return res;
}

/* Ops whose every case a plan must run (the supported set of autograd.h). */
static const char *const must_run[] = {
    "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where", "neg", "exp", "log",
    "sqrt", "abs", "sin", "cos", "tanh", "sigmoid", "relu", "leaky_relu", "gelu", "softplus",
    "clamp", "pow_scalar", "erf", "atan", "log1p", "expm1", "atan2", "sum", "max", "min",
    "logsumexp", "matmul", "softmax", "log_softmax", "reshape", "cast", "permute", "slice",
    "broadcast_to", "index", "index_select", "gather", "tril", "triu", "diagonal",
    "diag_embed", "concat", "stack",
};

static bool must(const char *op)
{
    for (size_t i = 0; i < ARRAY_LEN(must_run); i++)
        if (!strcmp(must_run[i], op))
            return true;
    return false;
}

static void every_case(ag_dtype dt, double tol)
{
    size_t ran = 0;
    for (size_t k = 0; k < n_op_cases; k++) {
        const op_case *c = &op_cases[k];
        case_outcome o = check_case(c, dt, tol);
        if (must(c->op))
            cr_expect(o.supported, "%s (%s): %s", c->what, c->op, o.why);
        ran += o.supported;
        if (!o.supported && getenv("PLAN_VERBOSE"))
            fprintf(stderr, "unsupported: %s\n", o.why);
    }
    if (getenv("PLAN_VERBOSE"))
        fprintf(stderr, "%s: %zu of %zu cases ran\n", ag_dtype_name(dt), ran, n_op_cases);
    cr_assert_geq(ran, 150, "only %zu cases ran", ran);
}

Test(plan, every_supported_op_case_f64) { every_case(AG_F64, 1e-12); }
Test(plan, every_supported_op_case_f32) { every_case(AG_F32, 2e-5); }
