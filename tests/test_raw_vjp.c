/*
** test_raw_vjp.c: the raw fast path of backward (vjps that write straight
** into gradient buffers when nothing is recorded) gives the same bits as
** the differentiable path that create-graph mode takes, for every op that
** has one, in f32 and f64, with gradients that accumulate from several uses
** and with broadcast inputs (which the raw path leaves to the vjp). Also the
** lazy bookkeeping of backward: a second pass on the same tape, a parameter
** shared by two tapes in turn.
*/
#include "autograd.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

typedef ag_tensor *(*op_fn)(ag_tape *t, ag_tensor *a, ag_tensor *b);

static ag_tensor *op_add(ag_tape *t, ag_tensor *a, ag_tensor *b) { return ag_add(t, a, b); }
static ag_tensor *op_sub(ag_tape *t, ag_tensor *a, ag_tensor *b) { return ag_sub(t, a, b); }
static ag_tensor *op_mul(ag_tape *t, ag_tensor *a, ag_tensor *b) { return ag_mul(t, a, b); }
static ag_tensor *op_div(ag_tape *t, ag_tensor *a, ag_tensor *b) { return ag_div(t, a, b); }
static ag_tensor *op_neg(ag_tape *t, ag_tensor *a, ag_tensor *b) { (void)b; return ag_neg(t, a); }
static ag_tensor *op_exp(ag_tape *t, ag_tensor *a, ag_tensor *b) { (void)b; return ag_exp(t, a); }
static ag_tensor *op_log(ag_tape *t, ag_tensor *a, ag_tensor *b) { (void)b; return ag_log(t, a); }
static ag_tensor *op_tanh(ag_tape *t, ag_tensor *a, ag_tensor *b) { (void)b; return ag_tanh(t, a); }
static ag_tensor *op_sigmoid(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    (void)b;
    return ag_sigmoid(t, a);
}
static ag_tensor *op_relu(ag_tape *t, ag_tensor *a, ag_tensor *b) { (void)b; return ag_relu(t, a); }
static ag_tensor *op_square(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    (void)b;
    return ag_pow_scalar(t, a, 2.0);
}
static ag_tensor *op_cube(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    (void)b;
    return ag_pow_scalar(t, a, 3.0);
}
static ag_tensor *op_root(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    (void)b;
    return ag_pow_scalar(t, a, 0.37);
}

/* a times the cross-entropy of a + b (rows of 6 classes): the fused
** loss's raw backward, its gradient reaching a through three uses. */
static ag_tensor *op_cross_entropy(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    static const int64_t labels[5] = {0, 5, 2, 2, 3};
    return ag_mul(t, a, ag_cross_entropy(t, ag_add(t, a, b), labels));
}
static ag_tensor *op_log_softmax(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return ag_log_softmax(t, ag_mul(t, a, b), 1);
}

static const struct {
    const char *name;
    op_fn f;
    bool positive;   /* inputs must be > 0 (log, fractional powers, divisors) */
} ops[] = {
    {"add", op_add, false},   {"sub", op_sub, false},     {"mul", op_mul, false},
    {"div", op_div, true},    {"neg", op_neg, false},     {"exp", op_exp, false},
    {"log", op_log, true},    {"tanh", op_tanh, false},   {"sigmoid", op_sigmoid, false},
    {"relu", op_relu, false}, {"square", op_square, false}, {"cube", op_cube, false},
    {"pow 0.37", op_root, true},
    {"cross_entropy", op_cross_entropy, false}, {"log_softmax", op_log_softmax, false},
};

/* loss = sum(f(a, b) * f(b, a)) + sum(f(a, a)): a and b each feed the op
** several times, so their gradients accumulate from several contributions,
** some shared (add passes g on) and some computed. */
static ag_tensor *build(ag_tape *t, op_fn f, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *ab = f(t, a, b), *ba = f(t, b, a), *aa = f(t, a, a);
    return ag_add(t, ag_sum(t, ag_mul(t, ab, ba)), ag_sum(t, aa));
}

static void fill(ag_tensor *x, ag_rng *r, bool positive)
{
    for (int64_t i = 0; i < ag_numel(x); i++) {
        double v = ag_rng_uniform(r) * 2 - 1;
        /* Exact zeros too, where relu's derivative switches. */
        if (i % 7 == 3)
            v = 0;
        ag_set(x, i, positive ? fabs(v) + 0.25 : v);
    }
}

/* Gradients of a and b by ag_backward (raw path where possible) and by
** ag_gradients in create-graph mode (the differentiable path), compared
** bit for bit. With 'broadcast', b is a row broadcast against a. */
static void compare(ag_dtype dt, int op, bool broadcast)
{
    int64_t as[2] = {5, 6}, bs[2] = {broadcast ? 1 : 5, 6};
    ag_rng r;
    ag_rng_seed(&r, 7 + (uint64_t)op);
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_requires_grad(ag_zeros(t, dt, 2, as));
    ag_tensor *b = ag_requires_grad(ag_zeros(t, dt, 2, bs));
    fill(a, &r, ops[op].positive);
    fill(b, &r, ops[op].positive);
    ag_backward(t, build(t, ops[op].f, a, b));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", ops[op].name, ag_tape_errmsg(t));
    ag_tensor *raw[2] = {ag_grad(a), ag_grad(b)};
    cr_assert(raw[0] && raw[1]);

    ag_tape *t2 = ag_tape_new();
    ag_tensor *a2 = ag_requires_grad(ag_tensor_from(t2, dt, 2, as, ag_data(a)));
    ag_tensor *b2 = ag_requires_grad(ag_tensor_from(t2, dt, 2, bs, ag_data(b)));
    ag_tensor *xs[2] = {a2, b2}, *general[2];
    ag_gradients(t2, build(t2, ops[op].f, a2, b2), NULL, 2, xs, general, 1);
    cr_assert_eq(ag_tape_status(t2), AG_OK, "%s: %s", ops[op].name, ag_tape_errmsg(t2));
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(ag_numel(raw[i]), ag_numel(general[i]));
        size_t bytes = (size_t)ag_numel(raw[i]) * ag_dtype_size(dt);
        for (int64_t k = 0; k < ag_numel(raw[i]); k++)
            cr_assert(ag_get(raw[i], k) == ag_get(general[i], k) ||
                          (isnan(ag_get(raw[i], k)) && isnan(ag_get(general[i], k))),
                      "%s %s%s: d/d%c[%lld] = %.17g by the raw path, %.17g by the vjp",
                      ops[op].name, ag_dtype_name(dt), broadcast ? " broadcast" : "",
                      i ? 'b' : 'a', (long long)k, ag_get(raw[i], k), ag_get(general[i], k));
        cr_assert(memcmp(ag_data(raw[i]), ag_data(general[i]), bytes) == 0,
                  "%s %s: the bits differ (signed zeros?)", ops[op].name, ag_dtype_name(dt));
    }
    ag_tape_free(t);
    ag_tape_free(t2);
}

Test(raw_vjp, same_bits_as_the_differentiable_path_f64)
{
    for (int op = 0; op < (int)(sizeof ops / sizeof ops[0]); op++)
        compare(AG_F64, op, false);
}

Test(raw_vjp, same_bits_as_the_differentiable_path_f32)
{
    for (int op = 0; op < (int)(sizeof ops / sizeof ops[0]); op++)
        compare(AG_F32, op, false);
}

/* Cross-entropy scaled by s over batches of 1 to 9 rows, and 2000 (several
** blocks of its scratch): its raw backward rounds 1/N and the upstream
** gradient as the composed ops do. */
Test(raw_vjp, cross_entropy_scaled_over_batch_sizes)
{
    static int64_t labels[2000];
    for (int i = 0; i < 2000; i++)
        labels[i] = (i * 7 + 3) % 5;
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F64 : AG_F32;
        static const int64_t sizes[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 2000};
        for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++)
            for (int k = 0; k < 8; k++) {
                int64_t n = sizes[z];
                double scale = 0.3 + 0.137 * k;
                ag_rng r;
                ag_rng_seed(&r, (uint64_t)(100 * n + k));
                ag_tensor *g[2];
                ag_tape *t[2];
                for (int path = 0; path < 2; path++) {
                    t[path] = ag_tape_new();
                    ag_rng_seed(&r, (uint64_t)(100 * n + k));
                    ag_tensor *x = ag_requires_grad(ag_zeros(t[path], dt, 2, (int64_t[]){n, 5}));
                    fill(x, &r, false);
                    ag_tensor *loss = ag_mul_scalar(t[path], ag_cross_entropy(t[path], x, labels), scale);
                    if (path == 0) {
                        ag_backward(t[path], loss);
                        g[path] = ag_grad(x);
                    } else {
                        ag_gradients(t[path], loss, NULL, 1, &x, &g[path], 1);
                    }
                    cr_assert_eq(ag_tape_status(t[path]), AG_OK, "%s", ag_tape_errmsg(t[path]));
                }
                cr_assert(memcmp(ag_data(g[0]), ag_data(g[1]), (size_t)(n * 5) * ag_dtype_size(dt)) == 0,
                          "%s n %lld scale %g: raw and differentiable gradients differ", ag_dtype_name(dt),
                          (long long)n, scale);
                ag_tape_free(t[0]);
                ag_tape_free(t[1]);
            }
    }
}

Test(raw_vjp, broadcast_inputs_take_the_vjp_and_agree)
{
    for (int op = 0; op < 4; op++) {
        compare(AG_F64, op, true);
        compare(AG_F32, op, true);
    }
}

/* y = w*x + w: dy/dw = x + 1, computed twice on one tape, accumulates. */
Test(raw_vjp, second_backward_on_one_tape_accumulates)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *w = ag_param_scalar(AG_F64, 2.0);
    ag_tensor *y = ag_add(t, ag_mul(t, w, ag_scalar(t, AG_F64, 3.0)), w);
    ag_backward(t, y);
    cr_assert_float_eq(ag_grad_item(w), 4.0, 1e-15);
    ag_backward(t, y);
    cr_assert_float_eq(ag_grad_item(w), 8.0, 1e-15);
    /* ag_gradients on the same tape sees this pass only. */
    ag_tensor *g;
    ag_gradients(t, y, NULL, 1, &w, &g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_float_eq(ag_item(g), 4.0, 1e-15);
    cr_assert_float_eq(ag_grad_item(w), 8.0, 1e-15);
    ag_tape_free(t);
    ag_param_free(w);
}

/* A parameter used by one tape, then by another: the second backward must
** not see the first one's partial gradient. */
Test(raw_vjp, parameter_shared_by_two_tapes_in_turn)
{
    ag_tensor *w = ag_param_scalar(AG_F32, 1.5);
    ag_tape *t1 = ag_tape_new(), *t2 = ag_tape_new();
    ag_backward(t1, ag_tanh(t1, ag_mul(t1, w, w)));
    double first = ag_grad_item(w);
    cr_assert_float_eq(first, 2 * 1.5 * (1 - pow(tanh(2.25), 2)), 1e-6);
    ag_zero_grad(w);
    ag_backward(t2, ag_mul(t2, w, ag_scalar(t2, AG_F32, 5.0)));
    cr_assert_float_eq(ag_grad_item(w), 5.0, 1e-6);
    /* And back on the first tape after a reset. */
    ag_zero_grad(w);
    ag_tape_reset(t1);
    ag_backward(t1, ag_sub(t1, w, ag_scalar(t1, AG_F32, 1.0)));
    cr_assert_float_eq(ag_grad_item(w), 1.0, 1e-6);
    ag_tape_free(t1);
    ag_tape_free(t2);
    ag_param_free(w);
}

/* Gradients of gradients still work: create-graph mode takes the vjps. */
Test(raw_vjp, second_derivative_through_raw_capable_ops)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.3));
    ag_tensor *y = ag_mul(t, ag_tanh(t, x), ag_exp(t, x));
    ag_tensor *dy;
    ag_gradients(t, y, NULL, 1, &x, &dy, 1);
    ag_tensor *d2y;
    ag_gradients(t, dy, NULL, 1, &x, &d2y, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    double th = tanh(0.3), e = exp(0.3), s2 = 1 - th * th;
    /* y = tanh(x) e^x: y' = (s2 + th) e^x, y'' = (-2 th s2 + 2 s2 + th) e^x */
    cr_assert_float_eq(ag_item(dy), (s2 + th) * e, 1e-12);
    cr_assert_float_eq(ag_item(d2y), (-2 * th * s2 + 2 * s2 + th) * e, 1e-12);
    ag_tape_free(t);
}
