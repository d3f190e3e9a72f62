/*
** test_raw_vjp.c: the raw fast path of backward (vjps that write straight
** into gradient buffers when nothing is recorded) gives the same bits as
** the differentiable path that create-graph mode takes, for every op whose
** descriptor has one (found in the ops files' tables, with the inputs of its
** cases in op_cases.h), in f32 and f64, with gradients that accumulate from
** several uses and with broadcast inputs (which the raw path leaves to the
** vjp). Also the
** lazy bookkeeping of backward: a second pass on the same tape, a parameter
** shared by two tapes in turn.
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <string.h>

#include "op_cases.h"

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

/* Exact zeros in the inputs whose values allow them (where relu's
** derivative switches); no finite differences are taken here. */
static void add_zeros(const op_case *c, ag_tensor **x)
{
    for (int i = 0; i < c->n; i++) {
        value_kind v = c->in[i].values;
        if (v == UNIFORM || v == WIDE || v == GRID_A || v == GRID_B)
            for (int64_t k = 3; k < ag_numel(x[i]); k += 7)
                ag_set(x[i], k, 0.0);
    }
}

/* loss = sum(f(x) * w1) + sum(f(x) * w2), f the case's expression: each
** input feeds the op twice (and some cases use an input twice more), so
** its gradient accumulates from several contributions, some shared (add
** passes g on) and some computed; w1 and w2 make the upstream gradient
** differ from element to element. */
static ag_tensor *build(ag_tape *t, const op_case *c, ag_tensor *const *x)
{
    ag_tensor *y1 = case_apply(t, x, c), *y2 = case_apply(t, x, c);
    ag_dtype dt = ag_dtype_of(y1);
    ag_rng r;
    ag_rng_seed(&r, 99);
    ag_tensor *w1 = ag_zeros(t, dt, ag_rank(y1), ag_shape(y1));
    ag_tensor *w2 = ag_zeros(t, dt, ag_rank(y1), ag_shape(y1));
    fill(w1, &r, false);
    fill(w2, &r, true);
    return ag_add(t, ag_sum(t, ag_mul(t, y1, w1)), ag_sum(t, ag_mul(t, y2, w2)));
}

/* The gradients of c's inputs by ag_backward (the engine takes raw VJPs)
** and by ag_gradients in create-graph mode (only differentiable VJPs),
** compared bit for bit. */
static void compare(const op_case *c, ag_dtype dt)
{
    ag_tape *t = ag_tape_new(), *t2 = ag_tape_new();
    ag_tensor *x[3], *x2[3], *raw[3], *general[3];
    case_inputs(t, c, dt, x);
    add_zeros(c, x);
    for (int i = 0; i < c->n; i++) {
        ag_requires_grad(x[i]);
        x2[i] = ag_requires_grad(ag_tensor_from(t2, dt, ag_rank(x[i]), ag_shape(x[i]),
                                                ag_data(x[i])));
    }
    ag_backward(t, build(t, c, x));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    ag_gradients(t2, build(t2, c, x2), NULL, c->n, x2, general, 1);
    cr_assert_eq(ag_tape_status(t2), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t2));
    for (int i = 0; i < c->n; i++) {
        raw[i] = ag_grad(x[i]);
        if (!raw[i]) {   /* the loss does not depend on it (a mask) */
            for (int64_t k = 0; k < ag_numel(general[i]); k++)
                cr_assert(ag_get(general[i], k) == 0.0, "%s, %s: input %d", c->op, c->what, i);
            continue;
        }
        cr_assert_eq(ag_numel(raw[i]), ag_numel(general[i]));
        for (int64_t k = 0; k < ag_numel(raw[i]); k++)
            cr_assert(ag_get(raw[i], k) == ag_get(general[i], k) ||
                          (isnan(ag_get(raw[i], k)) && isnan(ag_get(general[i], k))),
                      "%s, %s, %s: d/dx%d[%lld] = %.17g by the raw path, %.17g by the vjp",
                      c->op, c->what, ag_dtype_name(dt), i, (long long)k, ag_get(raw[i], k),
                      ag_get(general[i], k));
        size_t bytes = (size_t)ag_numel(raw[i]) * ag_dtype_size(dt);
        cr_assert(memcmp(ag_data(raw[i]), ag_data(general[i]), bytes) == 0,
                  "%s, %s, %s: the bits differ (signed zeros?)", c->op, c->what, ag_dtype_name(dt));
    }
    ag_tape_free(t);
    ag_tape_free(t2);
}

/* The descriptor of the op called 'name', from the ops files' tables. */
static const ag_op *op_named(const char *name)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    for (size_t i = 0; i < n && i < MAX_OPS; i++)
        if (strcmp(ops[i]->name, name) == 0)
            return ops[i];
    return NULL;
}

ParameterizedTestParameters(raw_vjp, same_bits_as_the_differentiable_path)
{
    return case_indices();
}

/* Every case of op_cases.h whose op's descriptor has a raw VJP (broadcast
** inputs among them, which the raw paths of binary ops decline). */
ParameterizedTest(size_t *index, raw_vjp, same_bits_as_the_differentiable_path)
{
    const op_case *c = &op_cases[*index];
    const ag_op *op = op_named(c->op);
    cr_assert_not_null(op, "case '%s' names no op", c->what);
    if (!op->raw_vjp)
        return;
    compare(c, AG_F64);
    compare(c, AG_F32);
}

/* The raw VJPs the ops files define all have cases to be compared on. */
Test(raw_vjp, every_raw_vjp_has_a_case)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS), with_raw = 0;
    cr_assert_leq(n, MAX_OPS);
    for (size_t i = 0; i < n; i++)
        if (ops[i]->raw_vjp) {
            with_raw++;
            cr_expect(case_exists_for(ops[i]->name), "op '%s' has a raw VJP but no case",
                      ops[i]->name);
        }
    /* add sub mul div neg exp log tanh sigmoid relu pow_scalar dense cross_entropy */
    cr_assert_geq(with_raw, 13);
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
