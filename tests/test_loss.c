/*
** test_loss.c: each loss against values worked out by hand, its gradient
** against finite differences (ag_gradcheck, f64), stability at extreme
** logits, both reductions, and argument errors.
*/
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static ag_tensor *vec(ag_tape *t, int n, const double *v)
{
    return ag_tensor_from(t, AG_F64, 1, (int64_t[]){n}, v);
}

/* ------------------------------------------------------------ hand values */
/* Expected values: by hand, or (BCE, cross-entropy) from Python's math
** module: softplus(x) = max(x, 0) + log1p(exp(-|x|)), logsumexp directly. */

Test(loss, mse_l1_huber_values)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *p = vec(t, 3, (double[]){1, 2, 3}), *y = vec(t, 3, (double[]){1.5, 2, 1});
    /* d = [-0.5, 0, 2] */
    cr_assert_float_eq(ag_item(nn_mse_loss(t, p, y, NN_REDUCE_MEAN)), 4.25 / 3, 1e-15);
    cr_assert_float_eq(ag_item(nn_mse_loss(t, p, y, NN_REDUCE_SUM)), 4.25, 1e-15);
    cr_assert_float_eq(ag_item(nn_l1_loss(t, p, y, NN_REDUCE_MEAN)), 2.5 / 3, 1e-15);
    cr_assert_float_eq(ag_item(nn_l1_loss(t, p, y, NN_REDUCE_SUM)), 2.5, 1e-15);
    /* delta 1: 0.5^2 / 2 + 0 + 1 (2 - 1/2) = 0.125 + 1.5 */
    cr_assert_float_eq(ag_item(nn_huber_loss(t, p, y, 1.0, NN_REDUCE_SUM)), 1.625, 1e-15);
    cr_assert_float_eq(ag_item(nn_huber_loss(t, p, y, 1.0, NN_REDUCE_MEAN)), 1.625 / 3, 1e-15);
    /* delta 3: all quadratic, half the squared error */
    cr_assert_float_eq(ag_item(nn_huber_loss(t, p, y, 3.0, NN_REDUCE_SUM)), 2.125, 1e-15);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(loss, bce_with_logits_values_and_stability)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = vec(t, 3, (double[]){0, 2, -1}), *y = vec(t, 3, (double[]){1, 0, 1});
    cr_assert_float_eq(ag_item(nn_bce_with_logits_loss(t, x, y, NN_REDUCE_SUM)),
                       4.133336879121141, 1e-14);
    cr_assert_float_eq(ag_item(nn_bce_with_logits_loss(t, x, y, NN_REDUCE_MEAN)),
                       1.3777789597070471, 1e-14);
    /* Logits of 1e4: right answers cost nothing, a wrong one costs 1e4. */
    ag_tensor *big = ag_requires_grad(vec(t, 3, (double[]){1e4, -1e4, 1e4}));
    ag_tensor *l = nn_bce_with_logits_loss(t, big, vec(t, 3, (double[]){1, 0, 0}),
                                           NN_REDUCE_SUM);
    cr_assert_float_eq(ag_item(l), 1e4, 1e-9);
    ag_backward(t, l);
    /* d/dx = sigmoid(x) - y */
    cr_assert_float_eq(ag_get(ag_grad(big), 0), 0.0, 1e-15);
    cr_assert_float_eq(ag_get(ag_grad(big), 2), 1.0, 1e-15);
    /* f32 too */
    float xf[] = {3e4f, -3e4f};
    float yf[] = {1.0f, 1.0f};
    ag_tensor *l32 = nn_bce_with_logits_loss(t, ag_tensor_from(t, AG_F32, 1, (int64_t[]){2}, xf),
                                             ag_tensor_from(t, AG_F32, 1, (int64_t[]){2}, yf),
                                             NN_REDUCE_SUM);
    cr_assert_float_eq(ag_item(l32), 3e4, 1e-2);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(loss, cross_entropy_values_and_label_smoothing)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 1, 1, 1});
    int64_t labels[] = {2, 0};
    ag_tensor *ce = nn_cross_entropy_loss(t, x, labels, 0.0, NN_REDUCE_MEAN);
    cr_assert_float_eq(ag_item(ce), 0.7531091265562448, 1e-14);
    cr_assert_float_eq(ag_item(nn_cross_entropy_loss(t, x, labels, 0.0, NN_REDUCE_SUM)),
                       2 * 0.7531091265562448, 1e-14);
    /* target (1 - 0.1) onehot + 0.1 / 3 */
    cr_assert_float_eq(ag_item(nn_cross_entropy_loss(t, x, labels, 0.1, NN_REDUCE_MEAN)),
                       0.8031091265562449, 1e-14);
    /* Equal logits: log C whatever the smoothing. */
    ag_tensor *flat = ag_zeros(t, AG_F64, 2, (int64_t[]){1, 4});
    cr_assert_float_eq(ag_item(nn_cross_entropy_loss(t, flat, (int64_t[]){3}, 0.3,
                                                     NN_REDUCE_MEAN)), log(4.0), 1e-15);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(loss, cross_entropy_is_stable_at_logits_of_1e4)
{
    ag_tape *t = ag_tape_new();
    for (int smoothing = 0; smoothing < 2; smoothing++) {
        ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3},
                                                       (double[]){1e4, 0, -1e4, 1e4, 0, -1e4}));
        double s = smoothing ? 0.1 : 0.0;
        ag_tensor *l = nn_cross_entropy_loss(t, x, (int64_t[]){0, 1}, s, NN_REDUCE_MEAN);
        /* row 0 right: 0; row 1 wrong by 1e4; smoothing adds s * mean(-logp) per row, where
        ** -logp is [0, 1e4, 2e4] */
        double want = (0.0 + 1e4) / 2 * (1 - s) + s * 1e4;
        cr_assert(isfinite(ag_item(l)));
        cr_assert_float_eq(ag_item(l), want, 1e-9, "smoothing %g: %.17g", s, ag_item(l));
        ag_backward(t, l);
        for (int i = 0; i < 6; i++)
            cr_assert(isfinite(ag_get(ag_grad(x), i)), "grad %d", i);
        /* d/dx = (softmax - target) / N; softmax is [1, 0, 0] in both rows */
        cr_assert_float_eq(ag_get(ag_grad(x), 3), (1.0 - s / 3) / 2, 1e-12);
        cr_assert_float_eq(ag_get(ag_grad(x), 4), -(1.0 - s + s / 3) / 2, 1e-12);
    }
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(loss, hinge_values)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *s = vec(t, 3, (double[]){2, 0.5, -1}), *y = vec(t, 3, (double[]){1, -1, -1});
    /* 1 - y s = [-1, 1.5, 0] -> relu [0, 1.5, 0] */
    cr_assert_float_eq(ag_item(nn_hinge_loss(t, s, y, NN_REDUCE_SUM)), 1.5, 1e-15);
    cr_assert_float_eq(ag_item(nn_hinge_loss(t, s, y, NN_REDUCE_MEAN)), 0.5, 1e-15);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* -------------------------------------------------------------- gradcheck */

typedef struct loss_case {
    const char *name;
    int kind;
    nn_reduction r;
    const ag_tensor *fixed;       /* target when it is not checked (hinge) */
    const int64_t *labels;
} loss_case;

enum { MSE, L1, HUBER, BCE, CE, CE_SMOOTH, HINGE };

static ag_tensor *apply(ag_tape *t, ag_tensor *const *in, void *ud)
{
    const loss_case *c = ud;
    switch (c->kind) {
    case MSE: return nn_mse_loss(t, in[0], in[1], c->r);
    case L1: return nn_l1_loss(t, in[0], in[1], c->r);
    case HUBER: return nn_huber_loss(t, in[0], in[1], 0.7, c->r);
    case BCE: return nn_bce_with_logits_loss(t, in[0], in[1], c->r);
    case CE: return nn_cross_entropy_loss(t, in[0], c->labels, 0.0, c->r);
    case CE_SMOOTH: return nn_cross_entropy_loss(t, in[0], c->labels, 0.2, c->r);
    case HINGE: {
        const ag_tensor *y = c->fixed;
        ag_tensor *target = ag_tensor_from(t, AG_F64, ag_rank(y), ag_shape(y),
                                           ag_data((ag_tensor *)y));
        return nn_hinge_loss(t, in[0], target, c->r);
    }
    }
    return NULL;
}

static void gradcheck(loss_case *c, int n, ag_tensor *const *inputs)
{
    ag_gradcheck_report rep;
    char err[256];
    ag_status st = ag_gradcheck(apply, c, n, inputs, 1e-6, &rep, err, sizeof err);
    cr_assert_eq(st, AG_OK, "%s: %s", c->name, err);
    cr_assert_lt(rep.max_rel_err, 1e-7, "%s (%s): input %d element %lld: analytic %g, numeric %g",
                 c->name, c->r == NN_REDUCE_SUM ? "sum" : "mean", rep.input,
                 (long long)rep.element, rep.analytic, rep.numeric);
    cr_assert_gt(rep.checked, 0);
}

static ag_tensor *param_from(int rank, const int64_t *shape, const double *v)
{
    ag_tensor *p = ag_param_new(AG_F64, rank, shape);
    for (int64_t i = 0; i < ag_numel(p); i++)
        ag_set(p, i, v[i]);
    return p;
}

Test(loss, gradients_match_finite_differences)
{
    /* Differences pred - target stay clear of the kinks of |d| (0) and of
    ** Huber's delta (0.7). */
    int64_t shape[] = {2, 3};
    ag_tensor *pred = param_from(2, shape, (double[]){0.3, -1.2, 2.0, 0.9, -0.4, 1.5});
    ag_tensor *target = param_from(2, shape, (double[]){0.1, 0.5, 0.2, -0.8, -0.3, 1.0});
    ag_tensor *probs = param_from(2, shape, (double[]){0.2, 1.0, 0.0, 0.7, 0.5, 0.9});
    ag_tensor *signs = param_from(2, shape, (double[]){1, -1, 1, -1, -1, 1});
    /* scores with 1 - y s away from 0 */
    ag_tensor *score = param_from(2, shape, (double[]){0.3, -1.6, 2.0, 0.4, 0.2, -0.5});
    int64_t labels[] = {2, 0};
    for (int r = 0; r < 2; r++) {
        nn_reduction red = r ? NN_REDUCE_SUM : NN_REDUCE_MEAN;
        loss_case cases[] = {
            {"mse", MSE, red, NULL, NULL},     {"l1", L1, red, NULL, NULL},
            {"huber", HUBER, red, NULL, NULL}, {"bce", BCE, red, NULL, NULL},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            gradcheck(&cases[i], 2, (ag_tensor *[]){pred, cases[i].kind == BCE ? probs : target});
        loss_case ce = {"cross-entropy", CE, red, NULL, labels};
        gradcheck(&ce, 1, &pred);
        loss_case smooth = {"cross-entropy smoothed", CE_SMOOTH, red, NULL, labels};
        gradcheck(&smooth, 1, &pred);
        loss_case hinge = {"hinge", HINGE, red, signs, NULL};
        gradcheck(&hinge, 1, &score);
    }
    ag_param_free(pred);
    ag_param_free(target);
    ag_param_free(probs);
    ag_param_free(signs);
    ag_param_free(score);
}

/* ----------------------------------------------------------------- errors */

Test(loss, mismatched_arguments_name_the_loss)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_zeros(t, AG_F64, 2, (int64_t[]){3, 1});
    ag_tensor *b = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    cr_assert(ag_is_nil(nn_mse_loss(t, a, b, NN_REDUCE_MEAN)));
    cr_assert_eq(ag_tape_status(t), AG_ESHAPE);
    cr_assert_str_eq(ag_tape_errmsg(t),
                     "nn_mse_loss: prediction [3,1] and target [3] differ in shape");
    ag_tape_reset(t);

    a = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    b = ag_zeros(t, AG_F32, 1, (int64_t[]){3});
    nn_l1_loss(t, a, b, NN_REDUCE_SUM);
    cr_assert_eq(ag_tape_status(t), AG_EDTYPE);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_l1_loss: prediction is f64 but target is f32");
    ag_tape_reset(t);

    a = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    nn_huber_loss(t, a, a, 0.0, NN_REDUCE_SUM);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_huber_loss: delta 0 must be finite and > 0");
    ag_tape_reset(t);

    a = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    nn_bce_with_logits_loss(t, a, NULL, NN_REDUCE_MEAN);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_bce_with_logits_loss: the target is NULL");
    ag_tape_reset(t);

    a = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    nn_mse_loss(t, a, a, (nn_reduction)5);
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    cr_assert(strstr(ag_tape_errmsg(t), "reduction 5"));
    ag_tape_reset(t);

    a = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    b = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (double[]){1, 0.5, -1});
    nn_hinge_loss(t, a, b, NN_REDUCE_MEAN);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_hinge_loss: target element 1 is 0.5, not -1 or +1");
    ag_tape_free(t);
}

Test(loss, cross_entropy_argument_errors)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_zeros(t, AG_F64, 2, (int64_t[]){2, 3});
    nn_cross_entropy_loss(t, x, (int64_t[]){0, 3}, 0.0, NN_REDUCE_MEAN);
    cr_assert_str_eq(ag_tape_errmsg(t),
                     "nn_cross_entropy_loss: label 3 of row 1 is outside [0, 3)");
    ag_tape_reset(t);
    x = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    nn_cross_entropy_loss(t, x, (int64_t[]){0}, 0.0, NN_REDUCE_MEAN);
    cr_assert_str_eq(ag_tape_errmsg(t),
                     "nn_cross_entropy_loss: logits are [3], not [N,C] with N, C >= 1");
    ag_tape_reset(t);
    x = ag_zeros(t, AG_F64, 2, (int64_t[]){2, 3});
    nn_cross_entropy_loss(t, x, NULL, 0.0, NN_REDUCE_MEAN);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_cross_entropy_loss: labels is NULL");
    ag_tape_reset(t);
    x = ag_zeros(t, AG_F64, 2, (int64_t[]){2, 3});
    nn_cross_entropy_loss(t, x, (int64_t[]){0, 1}, 1.0, NN_REDUCE_MEAN);
    cr_assert_str_eq(ag_tape_errmsg(t),
                     "nn_cross_entropy_loss: label smoothing 1 is outside [0, 1)");
    /* A tape already in error: nothing new is recorded. */
    nn_mse_loss(t, x, x, NN_REDUCE_MEAN);
    cr_assert(strstr(ag_tape_errmsg(t), "smoothing"));
    ag_tape_free(t);
}
