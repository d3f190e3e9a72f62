/*
** test_dense.c: the fused dense op, act(x @ w + b) in one op. Its values
** and gradients must be bit for bit those of ag_matmul, ag_add and the
** activation recorded separately, in f32 and f64, on one thread and on a
** pool (whose passes split rows), through the raw backward and through
** create-graph; and it must refuse bad shapes, dtypes and activations with
** a message naming itself. (The finite-difference checks of its gradient and
** second derivative are cases of op_cases.h.)
*/
#include "autograd.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static ag_tensor *composed(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b,
                           ag_activation act)
{
    ag_tensor *z = ag_matmul(t, x, w);
    if (b)
        z = ag_add(t, z, b);
    switch (act) {
    case AG_ACT_RELU: return ag_relu(t, z);
    case AG_ACT_SIGMOID: return ag_sigmoid(t, z);
    case AG_ACT_TANH: return ag_tanh(t, z);
    default: return z;
    }
}

typedef struct layer {
    ag_tensor *w, *b;
} layer;

static layer make_layer(ag_dtype dt, int64_t in, int64_t out, bool bias, uint64_t seed)
{
    ag_rng r;
    ag_rng_seed(&r, seed);
    layer l = {ag_param_new(dt, 2, (int64_t[]){in, out}), NULL};
    ag_fill_uniform(l.w, &r, -1, 1);
    if (bias) {
        l.b = ag_param_new(dt, 1, (int64_t[]){out});
        ag_fill_uniform(l.b, &r, -1, 1);
    }
    return l;
}

static void free_layer(layer *l)
{
    ag_param_free(l->w);
    ag_param_free(l->b);
}

static bool same_bits(const ag_tensor *a, const ag_tensor *b)
{
    return a && b && ag_numel(a) == ag_numel(b) && ag_dtype_of(a) == ag_dtype_of(b) &&
           memcmp(ag_data((ag_tensor *)a), ag_data((ag_tensor *)b),
                  (size_t)ag_numel(a) * ag_dtype_size(ag_dtype_of(a))) == 0;
}

/* The output and the gradients of x, w and b, fused and composed, compared
** bit for bit. 'rows' x 'in' -> 'out'; the loss weighs each output so every
** gradient element differs. */
static void check_same_as_composed(ag_dtype dt, ag_activation act, bool bias, int64_t rows,
                                   int64_t in, int64_t out, int threads, bool create_graph)
{
    ag_pool *pool = threads > 1 ? ag_pool_new(threads) : NULL;
    layer l = make_layer(dt, in, out, bias, 7);
    ag_tensor *g_fused[3] = {0}, *g_comp[3] = {0}, *y[2];
    ag_tape *tapes[2];
    for (int k = 0; k < 2; k++) {
        ag_tape *t = tapes[k] = ag_tape_new();
        ag_tape_set_pool(t, pool);
        ag_rng r;
        ag_rng_seed(&r, 11);
        ag_tensor *x = ag_zeros(t, dt, 2, (int64_t[]){rows, in});
        ag_fill_uniform(x, &r, -2, 2);
        ag_requires_grad(x);
        ag_tensor *weights = ag_zeros(t, dt, 2, (int64_t[]){rows, out});
        ag_fill_uniform(weights, &r, -1, 1);
        y[k] = k == 0 ? ag_dense(t, x, l.w, l.b, act) : composed(t, x, l.w, l.b, act);
        ag_tensor *loss = ag_sum(t, ag_mul(t, y[k], weights));
        ag_tensor *inputs[3] = {x, l.w, l.b};
        ag_tensor **g = k == 0 ? g_fused : g_comp;
        ag_gradients(t, loss, NULL, bias ? 3 : 2, inputs, g, create_graph);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    }
    const char *what = dt == AG_F32 ? "f32" : "f64";
    cr_expect(same_bits(y[0], y[1]), "%s act %d: outputs differ", what, (int)act);
    for (int i = 0; i < (bias ? 3 : 2); i++)
        cr_expect(same_bits(g_fused[i], g_comp[i]), "%s act %d threads %d%s: gradient %d differs",
                  what, (int)act, threads, create_graph ? " create_graph" : "", i);
    ag_tape_free(tapes[0]);
    ag_tape_free(tapes[1]);
    free_layer(&l);
    ag_pool_free(pool);
}

static const ag_activation acts[] = {AG_ACT_IDENTITY, AG_ACT_RELU, AG_ACT_SIGMOID, AG_ACT_TANH};

Test(dense, same_bits_as_matmul_add_activation)
{
    for (int d = 0; d < 2; d++)
        for (size_t a = 0; a < 4; a++)
            for (int bias = 0; bias < 2; bias++)
                check_same_as_composed(d ? AG_F64 : AG_F32, acts[a], bias, 5, 7, 3, 1, false);
}

Test(dense, same_bits_through_create_graph)
{
    for (int d = 0; d < 2; d++)
        for (size_t a = 0; a < 4; a++)
            check_same_as_composed(d ? AG_F64 : AG_F32, acts[a], true, 4, 6, 3, 1, true);
}

/* ag_backward into a parameter's own gradient: the fused layer adds x^T dz
** straight into it when the weight has no other use, the composed ops go
** through the engine's accumulation. Both start from the same nonzero
** gradients (an earlier step's, say) and must end with the same bits,
** after one pass and after a second. 'uses' 2 feeds the weight to a second
** layer, 3 to a penalty sum(w * w): either must take the engine's path and
** still agree. */
static void check_backward_same_bits(ag_dtype dt, ag_activation act, int64_t rows, int64_t in,
                                     int64_t out, int uses, int threads)
{
    ag_pool *pool = threads > 1 ? ag_pool_new(threads) : NULL;
    layer l[2] = {make_layer(dt, in, out, true, 5), make_layer(dt, in, out, true, 5)};
    ag_tape *t[2];
    for (int k = 0; k < 2; k++) {
        ag_rng r;
        ag_rng_seed(&r, 3);
        ag_fill_uniform(ag_grad(l[k].w), &r, -1, 1);
        ag_fill_uniform(ag_grad(l[k].b), &r, -1, 1);
        t[k] = ag_tape_new();
        ag_tape_set_pool(t[k], pool);
        for (int pass = 0; pass < 2; pass++) {
            ag_tensor *x = ag_zeros(t[k], dt, 2, (int64_t[]){rows, in});
            ag_fill_uniform(x, &r, -2, 2);
            ag_tensor *y = k == 0 ? ag_dense(t[k], x, l[k].w, l[k].b, act)
                                  : composed(t[k], x, l[k].w, l[k].b, act);
            if (uses == 2 && in == out)
                y = k == 0 ? ag_dense(t[k], y, l[k].w, NULL, act) : composed(t[k], y, l[k].w, NULL, act);
            ag_tensor *weights = ag_zeros(t[k], dt, 2, (int64_t[]){rows, out});
            ag_fill_uniform(weights, &r, -1, 1);
            ag_tensor *loss = ag_sum(t[k], ag_mul(t[k], y, weights));
            if (uses == 3)   /* a weight penalty: a second use by another op */
                loss = ag_add(t[k], loss, ag_sum(t[k], ag_mul(t[k], l[k].w, l[k].w)));
            ag_backward(t[k], loss);
        }
        cr_assert_eq(ag_tape_status(t[k]), AG_OK, "%s", ag_tape_errmsg(t[k]));
    }
    const char *what = dt == AG_F32 ? "f32" : "f64";
    cr_expect(same_bits(ag_grad(l[0].w), ag_grad(l[1].w)),
              "%s act %d rows %lld %lldx%lld uses %d threads %d: weight gradients differ", what,
              (int)act, (long long)rows, (long long)in, (long long)out, uses, threads);
    cr_expect(same_bits(ag_grad(l[0].b), ag_grad(l[1].b)), "%s act %d: bias gradients differ", what,
              (int)act);
    for (int k = 0; k < 2; k++) {
        ag_tape_free(t[k]);
        free_layer(&l[k]);
    }
    ag_pool_free(pool);
}

Test(dense, backward_adds_the_weight_gradient_in_place_with_the_same_bits)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F64 : AG_F32;
        for (size_t a = 0; a < 4; a++) {
            check_backward_same_bits(dt, acts[a], 10, 37, 30, 1, 1);   /* masked columns */
            check_backward_same_bits(dt, acts[a], 7, 16, 16, 2, 1);    /* used twice */
            check_backward_same_bits(dt, acts[a], 9, 12, 5, 3, 1);     /* and a penalty */
        }
        check_backward_same_bits(dt, AG_ACT_RELU, 1100, 5, 9, 1, 1);   /* k past one block */
        /* k past one block with B (dz) packed, one thread and two */
        check_backward_same_bits(dt, AG_ACT_TANH, 1100, 300, 200, 1, 1);
        check_backward_same_bits(dt, AG_ACT_TANH, 1100, 300, 200, 1, 2);
        check_backward_same_bits(dt, AG_ACT_RELU, 0, 5, 9, 1, 1);      /* empty batch */
        check_backward_same_bits(dt, AG_ACT_TANH, 64, 300, 200, 1, 2); /* split on threads */
    }
}

/* A weight used on tape A, then on tape B, then on A again: A's count of
** its uses cannot be trusted after B's, so A's backward must take the
** engine's path (two contributions summed, then added), as the composed
** ops do. */
Test(dense, weight_shared_by_two_tapes_in_turn)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F64 : AG_F32;
        layer l[2] = {make_layer(dt, 6, 5, false, 9), make_layer(dt, 6, 5, false, 9)};
        for (int k = 0; k < 2; k++) {
            ag_rng r;
            ag_rng_seed(&r, 4);
            ag_fill_uniform(ag_grad(l[k].w), &r, -1, 1);   /* sums in another order would show */
            ag_tape *a = ag_tape_new(), *b = ag_tape_new();
            ag_tensor *x[3];
            for (int i = 0; i < 3; i++) {
                x[i] = ag_zeros(i == 1 ? b : a, dt, 2, (int64_t[]){3, 6});
                ag_fill_uniform(x[i], &r, -1, 1);
            }
            ag_tensor *y[3];
            for (int i = 0; i < 3; i++) {
                ag_tape *t = i == 1 ? b : a;
                y[i] = k == 0 ? ag_dense(t, x[i], l[k].w, NULL, AG_ACT_TANH)
                              : composed(t, x[i], l[k].w, NULL, AG_ACT_TANH);
            }
            ag_tensor *loss = ag_add(a, ag_sum(a, y[0]), ag_sum(a, ag_mul(a, y[2], y[2])));
            ag_backward(a, loss);
            cr_assert_eq(ag_tape_status(a), AG_OK, "%s", ag_tape_errmsg(a));
            ag_tape_free(a);
            ag_tape_free(b);
        }
        cr_expect(same_bits(ag_grad(l[0].w), ag_grad(l[1].w)), "%s: weight gradients differ",
                  ag_dtype_name(dt));
        free_layer(&l[0]);
        free_layer(&l[1]);
    }
}

/* An op before the layer reads the weight's gradient as a value: its vjp
** runs after the layer's, so the layer must leave the gradient alone until
** the pass ends, as the engine does. */
Test(dense, a_weight_whose_gradient_is_read_keeps_the_engine_path)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F64 : AG_F32;
        layer l[2] = {make_layer(dt, 4, 4, false, 6), make_layer(dt, 4, 4, false, 6)};
        ag_tensor *gx[2];
        ag_tape *t[2];
        for (int k = 0; k < 2; k++) {
            ag_rng r;
            ag_rng_seed(&r, 8);
            ag_fill_uniform(ag_grad(l[k].w), &r, -1, 1);
            t[k] = ag_tape_new();
            ag_tensor *x = ag_requires_grad(ag_zeros(t[k], dt, 2, (int64_t[]){4, 4}));
            ag_fill_uniform(x, &r, -1, 1);
            ag_tensor *h = ag_mul(t[k], x, ag_grad(l[k].w));
            ag_tensor *y = k == 0 ? ag_dense(t[k], h, l[k].w, NULL, AG_ACT_TANH)
                                  : composed(t[k], h, l[k].w, NULL, AG_ACT_TANH);
            ag_backward(t[k], ag_sum(t[k], y));
            cr_assert_eq(ag_tape_status(t[k]), AG_OK, "%s", ag_tape_errmsg(t[k]));
            gx[k] = ag_grad(x);
        }
        cr_expect(same_bits(gx[0], gx[1]), "%s: the input's gradient differs", ag_dtype_name(dt));
        cr_expect(same_bits(ag_grad(l[0].w), ag_grad(l[1].w)), "%s: weight gradients differ",
                  ag_dtype_name(dt));
        for (int k = 0; k < 2; k++) {
            ag_tape_free(t[k]);
            free_layer(&l[k]);
        }
    }
}

/* Large enough that the bias-and-activation pass and the backward pass are
** cut among two threads (and the products too). */
Test(dense, same_bits_on_two_threads)
{
    for (int d = 0; d < 2; d++)
        for (size_t a = 0; a < 4; a++)
            check_same_as_composed(d ? AG_F64 : AG_F32, acts[a], true, 300, 40, 256, 2, false);
}

Test(dense, values_by_hand)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 2}, (double[]){1, 2, -3, 4});
    ag_tensor *w = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 2}, (double[]){1, -1, 0.5, 2});
    ag_tensor *b = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){0.5, -4});
    /* x @ w = [[2, 3], [-1, 11]]; + b = [[2.5, -1], [-0.5, 7]] */
    ag_tensor *y = ag_dense(t, x, w, b, AG_ACT_RELU);
    double want[] = {2.5, 0, 0, 7};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(y, i), want[i], "relu element %d: %g", i, ag_get(y, i));
    ag_tensor *s = ag_dense(t, x, w, b, AG_ACT_SIGMOID);
    cr_expect_float_eq(ag_get(s, 1), 1.0 / (1.0 + exp(1.0)), 1e-15);
    ag_tensor *v = ag_dense(t, ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){1, 2}), w,
                            NULL, AG_ACT_IDENTITY);
    cr_expect_eq(ag_rank(v), 1);
    cr_expect_eq(ag_get(v, 0), 2.0);
    cr_expect_eq(ag_get(v, 1), 3.0);
    ag_tape_free(t);
}

Test(dense, leading_dims_are_rows)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_ones(t, AG_F64, 3, (int64_t[]){2, 3, 4});
    ag_tensor *w = ag_full(t, AG_F64, 2, (int64_t[]){4, 5}, 0.5);
    ag_tensor *y = ag_dense(t, x, w, NULL, AG_ACT_IDENTITY);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_rank(y), 3);
    cr_expect_eq(ag_dim(y, 0), 2);
    cr_expect_eq(ag_dim(y, 1), 3);
    cr_expect_eq(ag_dim(y, 2), 5);
    for (int64_t i = 0; i < ag_numel(y); i++)
        cr_expect_eq(ag_get(y, i), 2.0);
    ag_tape_free(t);
}

/* x of rank 3 or more: the weight's gradient is summed as matmul sums it,
** a product per batch matrix and then their sum, not one product over the
** flattened rows. The case: x [2,2,1] = {1, 2^-53, 2^-53, 2^-53},
** w = [[1]]: per batch 1 + 2^-53 = 1 and 2^-52, then 1 + 2^-52; flattened,
** each 2^-53 is lost against 1. */
Test(dense, leading_dims_give_matmuls_weight_gradient_exactly)
{
    double tiny = ldexp(1.0, -53);
    for (int fused = 0; fused < 2; fused++) {
        ag_tape *t = ag_tape_new();
        ag_tensor *w2 = ag_param_new(AG_F64, 2, (int64_t[]){1, 1});
        ag_set(w2, 0, 1.0);
        ag_tensor *x = ag_tensor_from_f64(t, 3, (int64_t[]){2, 2, 1},
                                          (const double[]){1.0, tiny, tiny, tiny});
        ag_tensor *y = fused ? ag_dense(t, x, w2, NULL, AG_ACT_IDENTITY) : ag_matmul(t, x, w2);
        ag_backward(t, ag_sum(t, y));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_expect_eq(ag_get(ag_grad(w2), 0), 1.0 + 2 * tiny, "%s: %.17g",
                     fused ? "dense" : "matmul", ag_get(ag_grad(w2), 0));
        ag_param_free(w2);
        ag_tape_free(t);
    }
}

/* Random rank-3 and rank-4 inputs: output and every gradient with the
** composed ops' bits, through ag_backward (parameters' own gradients) and
** through create-graph ag_gradients. */
static void check_leading_dims(ag_dtype dt, ag_activation act, int rank, const int64_t *lead,
                               int64_t in, int64_t out, bool create_graph)
{
    layer l[2] = {make_layer(dt, in, out, true, 9), make_layer(dt, in, out, true, 9)};
    ag_tensor *g[2][3], *y[2];
    ag_tape *tapes[2];
    int64_t shape[4];
    memcpy(shape, lead, (size_t)(rank - 1) * sizeof *shape);
    shape[rank - 1] = in;
    int64_t yshape[4];
    memcpy(yshape, lead, (size_t)(rank - 1) * sizeof *yshape);
    yshape[rank - 1] = out;
    for (int k = 0; k < 2; k++) {
        ag_tape *t = tapes[k] = ag_tape_new();
        ag_rng r;
        ag_rng_seed(&r, 21);
        ag_tensor *x = ag_zeros(t, dt, rank, shape);
        ag_fill_uniform(x, &r, -2, 2);
        ag_requires_grad(x);
        ag_tensor *weights = ag_zeros(t, dt, rank, yshape);
        ag_fill_uniform(weights, &r, -1, 1);
        y[k] = k == 0 ? ag_dense(t, x, l[k].w, l[k].b, act) : composed(t, x, l[k].w, l[k].b, act);
        ag_tensor *loss = ag_sum(t, ag_mul(t, y[k], weights));
        ag_tensor *inputs[3] = {x, l[k].w, l[k].b};
        if (create_graph) {
            ag_gradients(t, loss, NULL, 3, inputs, g[k], 1);
        } else {
            ag_backward(t, loss);
            for (int i = 0; i < 3; i++)
                g[k][i] = ag_grad(inputs[i]);
        }
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    }
    cr_expect(same_bits(y[0], y[1]), "%s act %d rank %d: outputs differ", ag_dtype_name(dt),
              (int)act, rank);
    for (int i = 0; i < 3; i++)
        cr_expect(same_bits(g[0][i], g[1][i]), "%s act %d rank %d%s: gradient %d differs",
                  ag_dtype_name(dt), (int)act, rank, create_graph ? " create_graph" : "", i);
    for (int k = 0; k < 2; k++) {
        ag_tape_free(tapes[k]);
        free_layer(&l[k]);
    }
}

Test(dense, leading_dims_same_bits_as_composed)
{
    for (int d = 0; d < 2; d++)
        for (size_t a = 0; a < 4; a++)
            for (int cg = 0; cg < 2; cg++) {
                ag_dtype dt = d ? AG_F64 : AG_F32;
                check_leading_dims(dt, acts[a], 3, (int64_t[]){3, 17}, 13, 5, cg);
                check_leading_dims(dt, acts[a], 4, (int64_t[]){2, 3, 7}, 9, 4, cg);
            }
}

Test(dense, empty_batch_and_empty_input)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *w = ag_ones(t, AG_F32, 2, (int64_t[]){3, 2});
    ag_tensor *y = ag_dense(t, ag_zeros(t, AG_F32, 2, (int64_t[]){0, 3}), w, NULL, AG_ACT_RELU);
    cr_expect_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_dim(y, 0), 0);
    ag_tensor *b = ag_full(t, AG_F32, 1, (int64_t[]){2}, 1.5);
    ag_tensor *z = ag_dense(t, ag_zeros(t, AG_F32, 2, (int64_t[]){2, 0}),
                            ag_zeros(t, AG_F32, 2, (int64_t[]){0, 2}), b, AG_ACT_IDENTITY);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(z, i), 1.5, "an empty product is zero, plus the bias");
    ag_tape_free(t);
}

static void expect_error(ag_status want, const char *fragment,
                         ag_tensor *(*build)(ag_tape *t))
{
    ag_tape *t = ag_tape_new();
    ag_tensor *y = build(t);
    cr_expect_eq(ag_tape_status(t), want, "status %d: %s", ag_tape_status(t), ag_tape_errmsg(t));
    cr_expect(strstr(ag_tape_errmsg(t), "ag_dense"), "message names ag_dense: %s",
              ag_tape_errmsg(t));
    cr_expect(strstr(ag_tape_errmsg(t), fragment), "message '%s' lacks '%s'", ag_tape_errmsg(t),
              fragment);
    cr_expect_eq(ag_numel(y), 0);
    ag_tape_free(t);
}

static ag_tensor *inner_mismatch(ag_tape *t)
{
    return ag_dense(t, ag_ones(t, AG_F32, 2, (int64_t[]){2, 3}),
                    ag_ones(t, AG_F32, 2, (int64_t[]){4, 5}), NULL, AG_ACT_RELU);
}
static ag_tensor *weight_not_matrix(ag_tape *t)
{
    return ag_dense(t, ag_ones(t, AG_F32, 2, (int64_t[]){2, 3}),
                    ag_ones(t, AG_F32, 1, (int64_t[]){3}), NULL, AG_ACT_RELU);
}
static ag_tensor *bias_wrong(ag_tape *t)
{
    return ag_dense(t, ag_ones(t, AG_F32, 2, (int64_t[]){2, 3}),
                    ag_ones(t, AG_F32, 2, (int64_t[]){3, 5}),
                    ag_ones(t, AG_F32, 1, (int64_t[]){4}), AG_ACT_RELU);
}
static ag_tensor *scalar_input(ag_tape *t)
{
    return ag_dense(t, ag_scalar(t, AG_F32, 1), ag_ones(t, AG_F32, 2, (int64_t[]){1, 5}), NULL,
                    AG_ACT_IDENTITY);
}
static ag_tensor *dtype_mix(ag_tape *t)
{
    return ag_dense(t, ag_ones(t, AG_F64, 2, (int64_t[]){2, 3}),
                    ag_ones(t, AG_F32, 2, (int64_t[]){3, 5}), NULL, AG_ACT_RELU);
}
static ag_tensor *bad_act(ag_tape *t)
{
    return ag_dense(t, ag_ones(t, AG_F32, 2, (int64_t[]){2, 3}),
                    ag_ones(t, AG_F32, 2, (int64_t[]){3, 5}), NULL, (ag_activation)42);
}
static ag_tensor *null_weight(ag_tape *t)
{
    return ag_dense(t, ag_ones(t, AG_F32, 2, (int64_t[]){2, 3}), NULL, NULL, AG_ACT_RELU);
}

Test(dense, bad_input_is_refused_with_a_message)
{
    expect_error(AG_ESHAPE, "[2,3]", inner_mismatch);
    expect_error(AG_ESHAPE, "[3]", weight_not_matrix);
    expect_error(AG_ESHAPE, "[4]", bias_wrong);
    expect_error(AG_ESHAPE, "does not end in", scalar_input);
    expect_error(AG_EDTYPE, "", dtype_mix);
    expect_error(AG_EINVAL, "42", bad_act);
    expect_error(AG_EINVAL, "", null_weight);
}
