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
    "diag_embed", "concat", "stack", "pad", "sum_to", "slice_grad", "index_grad", "index_add",
    "scatter_add", "cumsum", "cumsum_reverse", "var", "std", "cross_entropy", "dense",
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

/* The list above names ops of the library that have cases. */
Test(plan, the_supported_list_names_library_ops)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    for (size_t i = 0; i < ARRAY_LEN(must_run); i++) {
        bool found = false;
        for (size_t k = 0; k < n && k < MAX_OPS; k++)
            found |= !strcmp(ops[k]->name, must_run[i]);
        cr_expect(found, "'%s' is no op of the library", must_run[i]);
        cr_expect(case_exists_for(must_run[i]), "'%s' has no case", must_run[i]);
    }
    (void)case_indices;   /* op_cases.h's, for the parameterised suites */
}

Test(plan, every_supported_op_case_f64) { every_case(AG_F64, 1e-12); }
Test(plan, every_supported_op_case_f32) { every_case(AG_F32, 2e-5); }

/* ------------------------------------------------------- the scalar graph */

/* The benchmark's graph, small: per sample h = b + sum w_i x_i, loss +=
** (tanh h - target)^2, with w and b parameters. */
enum { W = 8, ROWS = 7 };
static ag_tensor *scalar_graph(ag_tape *t, ag_tensor *const *w, int samples)
{
    ag_tensor *loss = ag_scalar(t, AG_F64, 0.0);
    for (int s = 0; s < samples; s++) {
        int r = s % ROWS;
        ag_tensor *h = w[W];
        for (int i = 0; i < W; i++)
            h = ag_add(t, h, ag_mul(t, w[i], ag_scalar(t, AG_F64, (double)((r * 7 + i * 3) % 17) / 17.0 - 0.5)));
        ag_tensor *d = ag_add(t, ag_tanh(t, h), ag_scalar(t, AG_F64, (double)r / 10 - 0.3));
        loss = ag_add(t, loss, ag_pow_scalar(t, d, 2.0));
    }
    return loss;
}

/* Scalar f64 instructions give the tape's bits: the same formulas, and
** gradients accumulated in the same (reverse) order. */
Test(plan, scalar_graph_replays_bit_for_bit)
{
    ag_tensor *w[W + 1];
    for (int i = 0; i <= W; i++)
        w[i] = ag_param_scalar(AG_F64, 0.1 * i);
    ag_tape *t = ag_tape_new();
    ag_plan *p = ag_plan_new(t, scalar_graph(t, w, 50), W + 1, w);
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_plan_ops(p), ag_tape_entries(t));
    double in[W + 1], g[W + 1], y;
    const double *leaves[W + 1];
    double *grads[W + 1];
    for (int round = 0; round < 3; round++) {
        ag_tape_reset(t);
        ag_zero_grads(W + 1, w);
        for (int i = 0; i <= W; i++) {
            in[i] = 0.3 * sin(round + i);
            ag_set(w[i], 0, in[i]);
            leaves[i] = &in[i];
            grads[i] = &g[i];
        }
        ag_tensor *l = scalar_graph(t, w, 50);
        ag_backward(t, l);
        cr_assert_eq(ag_plan_run_f64(p, leaves, &y, grads), AG_OK, "%s", ag_plan_errmsg(p));
        cr_assert_eq(y, ag_item(l), "round %d: %.17g vs %.17g", round, y, ag_item(l));
        for (int i = 0; i <= W; i++)
            cr_assert_eq(g[i], ag_grad_item(w[i]), "round %d, leaf %d: %.17g vs %.17g", round, i,
                         g[i], ag_grad_item(w[i]));
    }
    ag_plan_free(p);
    ag_tape_free(t);
    for (int i = 0; i <= W; i++)
        ag_param_free(w[i]);
}

/* ------------------------------------------------------ comparisons */

typedef ag_tensor *(*branchy_fn)(ag_tape *t, ag_tensor *x);
static ag_tensor *b_relu(ag_tape *t, ag_tensor *x) { return ag_sum(t, ag_relu(t, x)); }
static ag_tensor *b_abs(ag_tape *t, ag_tensor *x) { return ag_sum(t, ag_abs(t, x)); }
static ag_tensor *b_clamp(ag_tape *t, ag_tensor *x) { return ag_sum(t, ag_clamp(t, x, -1, 1)); }
static ag_tensor *b_leaky(ag_tape *t, ag_tensor *x) { return ag_sum(t, ag_leaky_relu(t, x, 0.1)); }
static ag_tensor *b_max(ag_tape *t, ag_tensor *x) { return ag_max(t, x); }
static ag_tensor *b_min_axis(ag_tape *t, ag_tensor *x) { return ag_sum(t, ag_min_axis(t, x, 0, 0)); }
static ag_tensor *b_maximum(ag_tape *t, ag_tensor *x)
{
    return ag_sum(t, ag_maximum(t, x, ag_scalar(t, ag_dtype_of(x), 0.25)));
}
static ag_tensor *b_where_gt(ag_tape *t, ag_tensor *x)
{
    ag_tensor *zero = ag_scalar(t, ag_dtype_of(x), 0.0);
    return ag_sum(t, ag_where(t, ag_gt(t, x, zero), ag_square(t, x), ag_neg(t, x)));
}
static ag_tensor *b_scalar_relu(ag_tape *t, ag_tensor *x)
{
    return ag_mul(t, ag_relu(t, ag_index(t, x, 1, (int64_t[]){0})), ag_scalar(t, AG_F64, 3.0));
}

/* Each function is recorded at x0 and replayed at x1, where the branch
** named changes at element 'element' of the op. */
static const struct branchy {
    const char *op;
    branchy_fn f;
    double x0[4], x1[4];
    int64_t element;
} branchy[] = {
    {"relu", b_relu, {0.5, -0.5, 1, 2}, {0.5, 0.5, 1, 2}, 1},
    {"abs", b_abs, {0.5, -0.5, 1, 2}, {0.5, -0.5, 0, 2}, 2},
    {"clamp", b_clamp, {0.5, -0.5, 1, 2}, {0.5, -0.5, 1, 0.5}, 3},
    {"leaky_relu", b_leaky, {0.5, -0.5, 1, 2}, {-0.5, -0.5, 1, 2}, 0},
    {"max", b_max, {0.5, -0.5, 1, 2}, {0.5, -0.5, 3, 2}, 0},
    {"min", b_min_axis, {0.5, -0.5, 1, 2}, {0.5, -0.5, 1, -2}, 0},
    {"maximum", b_maximum, {0.5, -0.5, 1, 2}, {0.5, 0.5, 1, 2}, 1},
    {"gt", b_where_gt, {0.5, -0.5, 1, 2}, {0.5, -0.5, -1, 2}, 2},
    {"relu", b_scalar_relu, {0.5, -0.5, 1, 2}, {-0.5, -0.5, 1, 2}, 0},
};

Test(plan, comparison_changes_are_reported)
{
    for (size_t k = 0; k < ARRAY_LEN(branchy); k++) {
        const struct branchy *c = &branchy[k];
        ag_tape *t = ag_tape_new();
        ag_tensor *x = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){4}, c->x0));
        ag_plan *p = ag_plan_new(t, c->f(t, x), 1, &x);
        cr_assert_not_null(p, "%s: %s", c->op, ag_tape_errmsg(t));
        double y, g[4];
        /* at the recorded point, and at one that takes the same branches */
        cr_assert_eq(ag_plan_run_f64(p, (const double *[]){c->x0}, &y, (double *[]){g}), AG_OK,
                     "%s: %s", c->op, ag_plan_errmsg(p));
        cr_assert_str_empty(ag_plan_errmsg(p));
        /* then where one branch goes otherwise: reported, values still those of x1 */
        ag_status s = ag_plan_run_f64(p, (const double *[]){c->x1}, &y, (double *[]){g});
        cr_assert_eq(s, AG_ESTATE, "%s: %d %s", c->op, s, ag_plan_errmsg(p));
        cr_assert_eq(ag_plan_status(p), AG_ESTATE);
        char want[64];
        snprintf(want, sizeof want, "op '%s' (", c->op);
        cr_assert(strstr(ag_plan_errmsg(p), want), "%s: %s", c->op, ag_plan_errmsg(p));
        cr_assert(strstr(ag_plan_errmsg(p), "ag_plan_run"), "%s", ag_plan_errmsg(p));
        snprintf(want, sizeof want, "element %lld,", (long long)c->element);
        cr_assert(strstr(ag_plan_errmsg(p), want), "%s: %s", c->op, ag_plan_errmsg(p));
        cr_assert(strstr(ag_plan_errmsg(p), "record"), "%s", ag_plan_errmsg(p));
        if (strcmp(c->op, "gt"))
            cr_assert(strstr(ag_plan_errmsg(p), "tape entry"), "%s", ag_plan_errmsg(p));
        ag_tape_reset(t);
        ag_tensor *x1 = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){4}, c->x1));
        ag_tensor *y1 = c->f(t, x1), *g1;
        ag_gradients(t, y1, NULL, 1, &x1, &g1, 0);
        cr_assert_eq(y, ag_item(y1), "%s: %.17g vs %.17g", c->op, y, ag_item(y1));
        for (int i = 0; i < 4; i++)
            cr_assert_eq(g[i], ag_get(g1, i), "%s, d/dx[%d]: %.17g vs %.17g", c->op, i, g[i],
                         ag_get(g1, i));
        /* each run starts clean */
        cr_assert_eq(ag_plan_run_f64(p, (const double *[]){c->x0}, &y, NULL), AG_OK);
        cr_assert_str_empty(ag_plan_errmsg(p));
        ag_plan_free(p);
        ag_tape_free(t);
    }
}

/* ----------------------------------------------------------- memory */

Test(plan, runs_allocate_nothing_and_the_plan_outlives_its_tape)
{
    alloc_hooks h = {0};
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    ag_tensor *x = ag_requires_grad(ag_zeros(t, AG_F64, 2, (int64_t[]){3, 4}));
    ag_tensor *w = ag_requires_grad(ag_ones(t, AG_F64, 2, (int64_t[]){4, 2}));
    ag_tensor *z = ag_softmax(t, ag_tanh(t, ag_matmul(t, x, w)), 1);
    ag_tensor *y = ag_sum(t, ag_mul(t, z, ag_relu(t, ag_matmul(t, x, w))));
    ag_plan *p = ag_plan_new(t, y, 2, (ag_tensor *[]){x, w});
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);   /* everything the plan needs is its own */
    long before = h.requests;
    double xv[12], wv[8], gx[12], gw[8], yv;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 12; i++)
            xv[i] = sin(i + round);
        for (int i = 0; i < 8; i++)
            wv[i] = cos(i * round);
        ag_status s = ag_plan_run_f64(p, (const double *[]){xv, wv}, &yv, (double *[]){gx, gw});
        cr_assert(s == AG_OK || s == AG_ESTATE, "%s", ag_plan_errmsg(p));
    }
    cr_assert_eq(h.requests, before, "runs made %ld allocations", h.requests - before);
    cr_assert(h.live > 0);
    ag_plan_free(p);
    cr_assert_eq(h.live, 0, "%ld blocks leaked", h.live);
    cr_assert_eq(h.bad_osize, 0);
}

/* Every allocation ag_plan_new makes, refused in turn: NULL, AG_ENOMEM on the
** tape, nothing leaked. */
Test(plan, out_of_memory_while_freezing)
{
    for (long k = 1;; k++) {
        alloc_hooks h = {0};
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        ag_tensor *x = ag_requires_grad(ag_zeros(t, AG_F64, 1, (int64_t[]){5}));
        ag_tensor *y = ag_sum(t, ag_concat(t, 2, (ag_tensor *[]){ag_exp(t, x),
                                           ag_slice(t, x, 0, 1, 4, 2)}, 0));
        h.fail_at = h.requests + k;
        ag_plan *p = ag_plan_new(t, y, 1, &x);
        if (p) {
            cr_assert_eq(h.refused, 0);
            ag_plan_free(p);
            ag_tape_free(t);
            cr_assert_eq(h.live, 0);
            cr_assert_gt(k, 3, "only %ld allocations", k);
            break;
        }
        cr_assert_eq(ag_tape_status(t), AG_ENOMEM, "refusing request %ld: %s", k,
                     ag_tape_errmsg(t));
        ag_tape_free(t);
        cr_assert_eq(h.live, 0, "refusing request %ld leaked %ld blocks", k, h.live);
        cr_assert_eq(h.bad_osize, 0, "refusing request %ld", k);
    }
}

/* --------------------------------------------------------- bad input */

static int fwd_twice(ag_tensor *out, void *ctx)
{
    (void)ctx;
    for (int64_t i = 0; i < ag_numel(out); i++)
        ag_set(out, i, 2 * ag_get(ag_input(out, 0), i));
    return 0;
}
static void vjp_twice(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)out;
    gin[0] = ag_mul_scalar(t, g, 2);
}
static const ag_op twice = {.name = "twice", .vjp = vjp_twice, .forward = fwd_twice};

Test(plan, bad_input_is_refused_with_a_message)
{
    ag_tape *t = ag_tape_new(), *other = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 2));
    ag_tensor *c = ag_scalar(t, AG_F64, 3);
    ag_tensor *y = ag_mul(t, x, x);
    cr_assert_null(ag_plan_new(NULL, y, 1, &x));
#define REFUSED(call, code, text)                                                             \
    do {                                                                                      \
        ag_tape_reset(t);                                                                     \
        x = ag_requires_grad(ag_scalar(t, AG_F64, 2));                                        \
        c = ag_scalar(t, AG_F64, 3);                                                          \
        y = ag_mul(t, x, x);                                                                  \
        cr_assert_null(call);                                                                 \
        cr_assert_eq(ag_tape_status(t), code, "%s", ag_tape_errmsg(t));                       \
        cr_assert(strstr(ag_tape_errmsg(t), "ag_plan_new") && strstr(ag_tape_errmsg(t), text), \
                  "%s", ag_tape_errmsg(t));                                                   \
    } while (0)
    REFUSED(ag_plan_new(t, NULL, 1, &x), AG_EINVAL, "y is NULL");
    REFUSED(ag_plan_new(t, y, 1, NULL), AG_EINVAL, "leaves");
    REFUSED(ag_plan_new(t, y, -1, &x), AG_EINVAL, "-1 leaves");
    REFUSED(ag_plan_new(t, y, 1, (ag_tensor *[]){NULL}), AG_EINVAL, "leaf 0 is NULL");
    REFUSED(ag_plan_new(t, y, 1, &c), AG_EINVAL, "does not require grad");
    REFUSED(ag_plan_new(t, y, 2, (ag_tensor *[]){x, x}), AG_EINVAL, "the same tensor");
    ag_tensor *o = ag_requires_grad(ag_scalar(other, AG_F64, 1));
    REFUSED(ag_plan_new(t, y, 1, &o), AG_EINVAL, "another tape");
    REFUSED(ag_plan_new(t, ag_custom(t, &twice, NULL, 1, &x, AG_F64, 0, NULL), 1, &x),
            AG_EUNSUPPORTED, "op 'twice'");
    REFUSED(ag_plan_new(t, ag_sum(t, ag_inverse(t, ag_reshape(t, x, 2, (int64_t[]){1, 1}))), 1,
                        &x), AG_EUNSUPPORTED, "op 'inverse'");
    /* a tape in error keeps its own error */
    ag_tape_reset(t);
    x = ag_requires_grad(ag_scalar(t, AG_F64, 2));
    y = ag_mul(t, x, x);
    ag_add(t, x, NULL);
    cr_assert_null(ag_plan_new(t, y, 1, &x));
    cr_assert(strstr(ag_tape_errmsg(t), "ag_add"), "%s", ag_tape_errmsg(t));

    /* runs */
    ag_tape_reset(t);
    ag_tensor *v = ag_requires_grad(ag_zeros(t, AG_F32, 1, (int64_t[]){3}));
    ag_tensor *yv = ag_exp(t, v);
    ag_plan *p = ag_plan_new(t, yv, 1, &v);
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    float in[3] = {0, 1, 2}, out[3], g[3];
    double d[3];
    cr_assert_eq(ag_plan_run_f32(NULL, (const float *[]){in}, out, NULL), AG_EINVAL);
    cr_assert_eq(ag_plan_status(NULL), AG_EINVAL);
    cr_assert(strstr(ag_plan_errmsg(NULL), "NULL"));
    cr_assert_eq(ag_plan_run_f32(p, NULL, out, NULL), AG_EINVAL);
    cr_assert(strstr(ag_plan_errmsg(p), "ag_plan_run_f32: leaves is NULL"), "%s", ag_plan_errmsg(p));
    cr_assert_eq(ag_plan_run_f32(p, (const float *[]){NULL}, out, NULL), AG_EINVAL);
    cr_assert(strstr(ag_plan_errmsg(p), "leaf 0"), "%s", ag_plan_errmsg(p));
    cr_assert_eq(ag_plan_run_f64(p, (const double *[]){d}, d, NULL), AG_EDTYPE);
    cr_assert(strstr(ag_plan_errmsg(p), "ag_plan_run_f64: leaf 0 is f32"), "%s", ag_plan_errmsg(p));
    cr_assert_eq(ag_plan_run_f32(p, (const float *[]){in}, out, (float *[]){g}), AG_ESHAPE);
    cr_assert(strstr(ag_plan_errmsg(p), "y [3] has 3 elements"), "%s", ag_plan_errmsg(p));
    cr_assert_eq(ag_plan_run_f32(p, (const float *[]){in}, out, NULL), AG_OK, "%s", ag_plan_errmsg(p));
    for (int i = 0; i < 3; i++)
        cr_assert_eq(out[i], (float)exp((double)in[i]));
    cr_assert_eq(ag_plan_num_leaves(p), 1);
    ag_plan_free(p);
    ag_plan_free(NULL);
    ag_tape_free(t);
    ag_tape_free(other);
}

/* ------------------------------------------------------- edge cases */

static ag_tensor *rosenbrock(ag_tape *t, ag_tensor *x, int n)
{
    ag_tensor *f = ag_scalar(t, AG_F64, 0.0);
    for (int i = 0; i + 1 < n; i++) {
        ag_tensor *xi = ag_index(t, x, 1, (int64_t[]){i});
        ag_tensor *xj = ag_index(t, x, 1, (int64_t[]){i + 1});
        ag_tensor *a = ag_sub(t, xj, ag_square(t, xi));
        ag_tensor *c = ag_sub(t, ag_scalar(t, AG_F64, 1.0), xi);
        f = ag_add(t, f, ag_add(t, ag_mul_scalar(t, ag_square(t, a), 100.0), ag_square(t, c)));
    }
    return f;
}

/* A plan of a recorded gradient: its run's gradient is a Hessian-vector
** product, equal to reverse over reverse on a tape. */
Test(plan, plan_of_a_gradient_gives_hessian_vector_products)
{
    enum { N = 6 };
    double x0[N] = {-1.2, 1, 0.5, -0.3, 0.8, 1.1}, v[N] = {1, -2, 0.5, 3, -1, 0.25};
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){N}, x0)), *g;
    ag_gradients(t, rosenbrock(t, x, N), NULL, 1, &x, &g, 1);
    ag_tensor *gv = ag_sum(t, ag_mul(t, g, ag_tensor_from_f64(t, 1, (int64_t[]){N}, v)));
    ag_plan *p = ag_plan_new(t, gv, 1, &x);
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    double x1[N], y, hv[N];
    for (int i = 0; i < N; i++)
        x1[i] = x0[i] + 0.1 * i;
    cr_assert_eq(ag_plan_run_f64(p, (const double *[]){x1}, &y, (double *[]){hv}), AG_OK, "%s",
                 ag_plan_errmsg(p));
    ag_tape_reset(t);
    x = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){N}, x1));
    ag_gradients(t, rosenbrock(t, x, N), NULL, 1, &x, &g, 1);
    gv = ag_sum(t, ag_mul(t, g, ag_tensor_from_f64(t, 1, (int64_t[]){N}, v)));
    ag_tensor *want;
    ag_gradients(t, gv, NULL, 1, &x, &want, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert(close_rel(y, ag_item(gv), 1e-12), "%.17g vs %.17g", y, ag_item(gv));
    for (int i = 0; i < N; i++)
        cr_assert(close_rel(hv[i], ag_get(want, i), 1e-12), "(Hv)[%d] %.17g vs %.17g", i, hv[i],
                  ag_get(want, i));
    ag_plan_free(p);
    ag_tape_free(t);
}

/* sum(diag(X, k)^3) . V's gradient, recorded with create_graph, for X of
** 'rows' x 'cols': its diag_embed is of X's shape, oblong here. */
static ag_tensor *diag_gradient_dot(ag_tape *t, ag_tensor *x, int64_t k, const double *v)
{
    ag_tensor *g;
    ag_gradients(t, ag_sum(t, ag_pow_scalar(t, ag_diag(t, x, k), 3.0)), NULL, 1, &x, &g, 1);
    return ag_sum(t, ag_mul(t, g, ag_tensor_from_f64(t, 2, ag_shape(x), v)));
}

/* diagonal's gradient on an oblong matrix (a diag_embed of that shape) was
** mapped as ag_diag's square: [2,3] was refused as unsupported, and [2,8]
** with k = 2 (16 elements, as ag_diag's [4,4]) ran with status OK reading
** V at the wrong places. Each must give what a new recording gives. */
Test(plan, gradient_through_the_diagonal_of_an_oblong_matrix)
{
    static const struct { int64_t rows, cols, k; } shapes[] = {
        {2, 8, 2}, {2, 3, 0}, {3, 2, -1}, {4, 3, 1}, {3, 3, 1},
    };
    for (size_t c = 0; c < ARRAY_LEN(shapes); c++) {
        int64_t rows = shapes[c].rows, cols = shapes[c].cols, k = shapes[c].k, n = rows * cols;
        double x0[32], x1[32], v[32], y, hv[32];
        for (int64_t i = 0; i < n; i++) {
            x0[i] = 0.5 + 0.1 * (double)i;
            x1[i] = x0[i] - 0.03 * (double)(i % 5);
            v[i] = 1.0 + (double)i;   /* every place tells */
        }
        ag_tape *t = ag_tape_new();
        ag_tensor *x = ag_requires_grad(ag_tensor_from_f64(t, 2, (int64_t[]){rows, cols}, x0));
        ag_plan *p = ag_plan_new(t, diag_gradient_dot(t, x, k, v), 1, &x);
        cr_assert_not_null(p, "[%lld,%lld] k %lld: %s", (long long)rows, (long long)cols,
                           (long long)k, ag_tape_errmsg(t));
        cr_assert_eq(ag_plan_run_f64(p, (const double *[]){x1}, &y, (double *[]){hv}), AG_OK,
                     "%s", ag_plan_errmsg(p));
        ag_tape_reset(t);
        x = ag_requires_grad(ag_tensor_from_f64(t, 2, (int64_t[]){rows, cols}, x1));
        ag_tensor *gv = diag_gradient_dot(t, x, k, v), *want;
        ag_gradients(t, gv, NULL, 1, &x, &want, 0);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_expect(close_rel(y, ag_item(gv), 1e-12), "[%lld,%lld] k %lld: %.17g vs %.17g",
                  (long long)rows, (long long)cols, (long long)k, y, ag_item(gv));
        for (int64_t i = 0; i < n; i++)
            cr_expect(close_rel(hv[i], ag_get(want, i), 1e-12),
                      "[%lld,%lld] k %lld: (Hv)[%lld] %.17g vs %.17g", (long long)rows,
                      (long long)cols, (long long)k, (long long)i, hv[i], ag_get(want, i));
        ag_plan_free(p);
        ag_tape_free(t);
    }
}

Test(plan, leaves_outputs_and_scopes)
{
    ag_tape *t = ag_tape_new();
    /* y a leaf: dy/dy = 1 */
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 2));
    ag_plan *p = ag_plan_new(t, x, 1, &x);
    double xv = 5, y, g;
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_plan_run_f64(p, (const double *[]){&xv}, &y, (double *[]){&g}), AG_OK);
    cr_assert(y == 5 && g == 1, "%g %g", y, g);
    ag_plan_free(p);
    /* y a constant: captured, gradient 0 */
    ag_tensor *c = ag_exp(t, ag_scalar(t, AG_F64, 1));
    p = ag_plan_new(t, c, 1, &x);
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_plan_ops(p), 0);
    cr_assert_eq(ag_plan_run_f64(p, (const double *[]){&xv}, &y, (double *[]){&g}), AG_OK);
    cr_assert(y == exp(1.0) && g == 0, "%g %g", y, g);
    ag_plan_free(p);
    /* a no-grad scope: values follow the leaf, no gradient flows through it,
    ** as a backward through the tape would not */
    ag_no_grad_begin(t);
    ag_tensor *s = ag_mul(t, x, x);
    ag_no_grad_end(t);
    ag_tensor *z = ag_add(t, ag_mul(t, s, x), x);   /* s x + x: ds/dx not counted */
    p = ag_plan_new(t, z, 1, &x);
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_plan_run_f64(p, (const double *[]){&xv}, &y, (double *[]){&g}), AG_OK);
    cr_assert(y == 5 * 5 * 5 + 5 && g == 25 + 1, "%g %g", y, g);
    ag_plan_free(p);
    /* mixed dtypes through casts, a vector y: values only, untyped run */
    ag_tensor *a = ag_requires_grad(ag_zeros(t, AG_F32, 1, (int64_t[]){3}));
    ag_tensor *b = ag_requires_grad(ag_param_scalar(AG_F64, 0));
    ag_tensor *v = ag_mul(t, ag_cast(t, a, AG_F64), b);
    p = ag_plan_new(t, v, 2, (ag_tensor *[]){a, b});
    cr_assert_not_null(p, "%s", ag_tape_errmsg(t));
    float av[3] = {1, 2, 3};
    double bv = 0.5, out[3];
    cr_assert_eq(ag_plan_run(p, (const void *[]){av, &bv}, out, NULL), AG_OK, "%s",
                 ag_plan_errmsg(p));
    cr_assert(out[0] == 0.5 && out[1] == 1 && out[2] == 1.5);
    cr_assert_eq(ag_plan_run_f32(p, (const float *[]){av, av}, NULL, NULL), AG_EDTYPE);
    cr_assert(strstr(ag_plan_errmsg(p), "leaf 1 is f64"), "%s", ag_plan_errmsg(p));
    ag_plan_free(p);
    ag_param_free(b);
    ag_tape_free(t);
}
