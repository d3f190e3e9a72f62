/*
** test_nan.c: NaN propagates through every op, as IEEE arithmetic, NumPy
** and PyTorch make it: a NaN input gives a NaN result where it takes part,
** and a NaN gradient for every input of those elements. Masks written as
** 'x > 0 ? x : 0' lose it (relu(NaN) was 0, and a diverged model looked
** healthy). Each op is checked in f32 and f64, forward and backward, on the
** raw path (ag_backward) and the differentiable one (ag_gradients with
** create_graph), which must agree.
*/
#include "autograd.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static const ag_dtype dtypes[2] = {AG_F32, AG_F64};

/* A leaf that requires grad, of dtype dt, holding v. */
static ag_tensor *leaf(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape, const double *v)
{
    ag_tensor *x = ag_zeros(t, dt, rank, shape);
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, v[i]);
    return ag_requires_grad(x);
}

/* Asserts that x is NaN exactly where 'pattern' has 'N' ('.' elsewhere). */
static void expect_nans(const ag_tensor *x, const char *pattern, const char *what, ag_dtype dt)
{
    cr_assert_not_null(x, "%s (%s): no tensor", what, ag_dtype_name(dt));
    cr_assert_eq(ag_numel(x), (int64_t)strlen(pattern), "%s (%s): %lld elements", what,
                 ag_dtype_name(dt), (long long)ag_numel(x));
    for (int64_t i = 0; i < ag_numel(x); i++)
        cr_assert_eq(isnan(ag_get(x, i)) != 0, pattern[i] == 'N',
                     "%s (%s): element %lld is %g, expected %s", what, ag_dtype_name(dt),
                     (long long)i, ag_get(x, i), pattern[i] == 'N' ? "NaN" : "a number");
}

/* The function under test builds its output from n leaves. */
typedef ag_tensor *(*build_fn)(ag_tape *t, ag_tensor *const *x);

typedef struct input {
    int rank;
    int64_t shape[2];
    double v[8];
    const char *grad_nans;   /* where d sum(y) / dx is NaN */
} input;

/* Checks f's result against 'out_nans' and each input's gradient against
** its pattern, through ag_backward and through create-graph ag_gradients. */
static void check(const char *what, build_fn f, int n, const input *in, const char *out_nans)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = dtypes[d];
        for (int graph = 0; graph < 2; graph++) {
            ag_tape *t = ag_tape_new();
            ag_tensor *x[3];
            for (int i = 0; i < n; i++)
                x[i] = leaf(t, dt, in[i].rank, in[i].shape, in[i].v);
            ag_tensor *y = f(t, x);
            cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", what, ag_tape_errmsg(t));
            expect_nans(y, out_nans, what, dt);
            ag_tensor *loss = ag_sum(t, y), *g[3];
            if (graph) {
                ag_gradients(t, loss, NULL, n, x, g, 1);
            } else {
                ag_backward(t, loss);
                for (int i = 0; i < n; i++)
                    g[i] = ag_grad(x[i]);
            }
            cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", what, ag_tape_errmsg(t));
            for (int i = 0; i < n; i++) {
                char name[96];
                snprintf(name, sizeof name, "%s: gradient of input %d (%s)", what, i,
                         graph ? "create-graph" : "raw");
                expect_nans(g[i], in[i].grad_nans, name, dt);
            }
            ag_tape_free(t);
        }
    }
}

#define VEC(...) {1, {4}, {__VA_ARGS__}
static const input nan_first = VEC(NAN, -1.5, 0.0, 2.0), "N..."};
static const input nan_last = VEC(-1.0, 0.5, 3.0, NAN), "...N"};

static ag_tensor *f_relu(ag_tape *t, ag_tensor *const *x) { return ag_relu(t, x[0]); }
static ag_tensor *f_leaky(ag_tape *t, ag_tensor *const *x) { return ag_leaky_relu(t, x[0], 0.1); }
static ag_tensor *f_clamp(ag_tape *t, ag_tensor *const *x) { return ag_clamp(t, x[0], -1, 1); }
static ag_tensor *f_abs(ag_tape *t, ag_tensor *const *x) { return ag_abs(t, x[0]); }
static ag_tensor *f_sigmoid(ag_tape *t, ag_tensor *const *x) { return ag_sigmoid(t, x[0]); }
static ag_tensor *f_tanh(ag_tape *t, ag_tensor *const *x) { return ag_tanh(t, x[0]); }
static ag_tensor *f_gelu(ag_tape *t, ag_tensor *const *x) { return ag_gelu(t, x[0]); }
static ag_tensor *f_softplus(ag_tape *t, ag_tensor *const *x) { return ag_softplus(t, x[0]); }
static ag_tensor *f_square(ag_tape *t, ag_tensor *const *x) { return ag_square(t, x[0]); }
static ag_tensor *f_exp(ag_tape *t, ag_tensor *const *x) { return ag_exp(t, x[0]); }

Test(nan, unary_ops)
{
    static const struct {
        const char *name;
        build_fn f;
    } ops[] = {
        {"relu", f_relu},       {"leaky_relu", f_leaky}, {"clamp", f_clamp},
        {"abs", f_abs},         {"sigmoid", f_sigmoid},  {"tanh", f_tanh},
        {"gelu", f_gelu},       {"softplus", f_softplus}, {"square", f_square},
        {"exp", f_exp},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        check(ops[i].name, ops[i].f, 1, &nan_first, "N...");
        check(ops[i].name, ops[i].f, 1, &nan_last, "...N");
    }
}

/* The cases exactly: relu(NaN) and maximum(NaN, 0) were 0. */
Test(nan, relu_and_maximum_of_a_nan_scalar)
{
    for (int d = 0; d < 2; d++) {
        ag_tape *t = ag_tape_new();
        ag_tensor *x = ag_requires_grad(ag_scalar(t, dtypes[d], NAN));
        ag_tensor *zero = ag_scalar(t, dtypes[d], 0.0);
        cr_assert(isnan(ag_item(ag_relu(t, x))));
        cr_assert(isnan(ag_item(ag_maximum(t, x, zero))));
        cr_assert(isnan(ag_item(ag_maximum(t, zero, x))));
        cr_assert(isnan(ag_item(ag_minimum(t, x, zero))));
        cr_assert(isnan(ag_item(ag_minimum(t, zero, x))));
        cr_assert(isnan(ag_item(ag_clamp(t, x, -1, 1))));
        cr_assert(isnan(ag_item(ag_sign(t, x))));
        ag_backward(t, ag_relu(t, x));
        cr_assert(isnan(ag_grad_item(x)));
        ag_tape_free(t);
    }
}

static ag_tensor *f_maximum(ag_tape *t, ag_tensor *const *x) { return ag_maximum(t, x[0], x[1]); }
static ag_tensor *f_minimum(ag_tape *t, ag_tensor *const *x) { return ag_minimum(t, x[0], x[1]); }
static ag_tensor *f_where(ag_tape *t, ag_tensor *const *x)
{
    /* A NaN mask is true (nonzero), as in NumPy; a NaN chosen is NaN. */
    ag_tensor *mask = ag_detach(t, x[1]);
    return ag_where(t, mask, x[0], x[1]);
}

Test(nan, binary_ops)
{
    /* NaN on either side, and ties and plain wins beside them. */
    input in[2] = {VEC(NAN, 1.0, 2.0, 5.0), "NN.."}, VEC(0.0, NAN, 2.0, 1.0), "NN.."}};
    check("maximum", f_maximum, 2, in, "NN..");
    check("minimum", f_minimum, 2, in, "NN..");
    /* where(b, a, b): mask b = [0, NaN, 2, 1] picks b, then a (NaN mask), a, a. */
    input w[2] = {VEC(NAN, 1.0, 2.0, 5.0), "...."}, VEC(0.0, NAN, 2.0, 1.0), "...."}};
    check("where", f_where, 2, w, "....");
    input w2[2] = {VEC(1.0, NAN, 2.0, 5.0), "...."}, VEC(NAN, 3.0, 2.0, 1.0), "...."}};
    check("where", f_where, 2, w2, ".N..");
}

static ag_tensor *f_max(ag_tape *t, ag_tensor *const *x) { return ag_max(t, x[0]); }
static ag_tensor *f_min(ag_tape *t, ag_tensor *const *x) { return ag_min(t, x[0]); }
static ag_tensor *f_max_axis(ag_tape *t, ag_tensor *const *x) { return ag_max_axis(t, x[0], 1, 0); }
static ag_tensor *f_min_axis(ag_tape *t, ag_tensor *const *x) { return ag_min_axis(t, x[0], 1, 0); }
static ag_tensor *f_lse_axis(ag_tape *t, ag_tensor *const *x)
{
    return ag_logsumexp_axis(t, x[0], 1, 0);
}
static ag_tensor *f_lse(ag_tape *t, ag_tensor *const *x) { return ag_logsumexp(t, x[0]); }
static ag_tensor *f_softmax(ag_tape *t, ag_tensor *const *x) { return ag_softmax(t, x[0], 1); }
static ag_tensor *f_softmax0(ag_tape *t, ag_tensor *const *x) { return ag_softmax(t, x[0], 0); }
static ag_tensor *f_log_softmax(ag_tape *t, ag_tensor *const *x)
{
    return ag_log_softmax(t, x[0], 1);
}
static ag_tensor *f_log_softmax0(ag_tape *t, ag_tensor *const *x)
{
    return ag_log_softmax(t, x[0], 0);
}
static ag_tensor *f_cross_entropy(ag_tape *t, ag_tensor *const *x)
{
    return ag_cross_entropy(t, x[0], (const int64_t[]){1, 2});
}

/* A row (or column) that holds a NaN reduces to NaN, and all of it gets a
** NaN gradient: every element took part in the result. */
Test(nan, reductions_and_the_softmax_family)
{
    input m = {2, {2, 3}, {1.0, NAN, 3.0, 4.0, 6.0, 5.0}, "NNN..."};
    check("max_axis", f_max_axis, 1, &m, "N.");
    check("min_axis", f_min_axis, 1, &m, "N.");
    check("logsumexp_axis", f_lse_axis, 1, &m, "N.");
    check("softmax", f_softmax, 1, &m, "NNN...");
    check("log_softmax", f_log_softmax, 1, &m, "NNN...");
    check("cross_entropy", f_cross_entropy, 1, &m, "N");
    input all = {2, {2, 3}, {1.0, 2.0, 3.0, 4.0, 6.0, NAN}, "NNNNNN"};
    check("max", f_max, 1, &all, "N");
    check("min", f_min, 1, &all, "N");
    check("logsumexp", f_lse, 1, &all, "N");
    /* Along axis 0: lanes with a stride. */
    input col = {2, {2, 3}, {1.0, NAN, 3.0, 4.0, 6.0, 5.0}, ".N..N."};
    check("softmax axis 0", f_softmax0, 1, &col, ".N..N.");
    check("log_softmax axis 0", f_log_softmax0, 1, &col, ".N..N.");
    /* A row of NaN only. */
    input nans = {2, {2, 3}, {NAN, NAN, NAN, 4.0, 6.0, 5.0}, "NNN..."};
    check("logsumexp_axis, a row of NaN", f_lse_axis, 1, &nans, "N.");
    check("softmax, a row of NaN", f_softmax, 1, &nans, "NNN...");
}

/* The fused dense layer: each activation, and the composed ops it matches. */
static ag_activation act_now;
static ag_tensor *f_dense(ag_tape *t, ag_tensor *const *x)
{
    return ag_dense(t, x[0], x[1], x[2], act_now);
}
static ag_tensor *f_composed(ag_tape *t, ag_tensor *const *x)
{
    ag_tensor *z = ag_add(t, ag_matmul(t, x[0], x[1]), x[2]);
    switch (act_now) {
    case AG_ACT_RELU: return ag_relu(t, z);
    case AG_ACT_SIGMOID: return ag_sigmoid(t, z);
    case AG_ACT_TANH: return ag_tanh(t, z);
    default: return z;
    }
}

Test(nan, dense_layer_and_its_activations)
{
    for (int a = AG_ACT_IDENTITY; a <= AG_ACT_TANH; a++) {
        act_now = (ag_activation)a;
        /* x [2,2] with a NaN in row 0, w [2,2], b [2]. Row 0 of the result is
        ** NaN; so are w's gradient where row 0's NaN column meets it, and b's
        ** (row 0's gradient is NaN) unless the activation is the identity,
        ** whose gradient ignores the values. */
        bool id = a == AG_ACT_IDENTITY;
        input in[3] = {
            {2, {2, 2}, {0.5, NAN, -1.0, 2.0}, id ? "...." : "NN.."},
            {2, {2, 2}, {0.3, -0.7, 1.1, 0.2}, id ? "..NN" : "NNNN"},
            {1, {2}, {0.1, -0.2}, id ? ".." : "NN"},
        };
        check("dense", f_dense, 3, in, "NN..");
        check("matmul + add + activation", f_composed, 3, in, "NN..");
    }
}
