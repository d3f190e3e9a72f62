/*
** test_conv_layers.c: nn_conv2d. Its parameters (names, PyTorch's weight
** layout, Kaiming-uniform by fan-in, zero bias), its forward (exactly
** ag_conv2d on those parameters), a training step that lowers a loss, and
** its errors on the model and on the tape. nn_batchnorm2d: its parameters,
** training and evaluation following the model, and its running statistics
** (against PyTorch's numbers). Pooling layers. A small CNN with batch norm
** and dropout that allocates nothing per training step after the first.
*/
#include "nn.h"

#include "alloc_hooks.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

Test(conv_layers, parameters_and_init)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_conv2d *c = nn_conv2d_new(m, "conv1", AG_F32, 4, 16, 3, 1, 1, 1, 2, 1);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    cr_assert(!nn_conv2d_is_nil(c));
    ag_tensor *w = nn_conv2d_weight(c), *b = nn_conv2d_bias(c);
    cr_assert_str_eq(ag_name(w), "conv1.weight");
    cr_assert_str_eq(ag_name(b), "conv1.bias");
    cr_assert(ag_rank(w) == 4 && ag_dim(w, 0) == 16 && ag_dim(w, 1) == 2 && ag_dim(w, 2) == 3 &&
              ag_dim(w, 3) == 3);
    /* fan_in = 2 * 3 * 3 = 18: U(-a, a) with a = sqrt(2) sqrt(3 / 18) = sqrt(1/3) */
    double a = sqrt(1.0 / 3.0), s2 = 0, mx = 0;
    int64_t n = ag_numel(w);
    for (int64_t i = 0; i < n; i++) {
        double v = ag_get(w, i);
        s2 += v * v;
        mx = fmax(mx, fabs(v));
    }
    cr_expect_leq(mx, a);
    cr_expect_gt(mx, 0.9 * a);
    /* the variance of U(-a, a) is a^2 / 3 = 1/9; 288 draws land near it */
    cr_expect(fabs(s2 / (double)n - 1.0 / 9.0) < 0.03, "variance %g", s2 / (double)n);
    for (int64_t i = 0; i < ag_numel(b); i++)
        cr_expect_eq(ag_get(b, i), 0.0);
    nn_conv2d *nb = nn_conv2d_new(m, "conv2", AG_F32, 16, 8, 1, 1, 0, 1, 1, 0);
    cr_assert_null(nn_conv2d_bias(nb));
    nn_model_free(m);
}

Test(conv_layers, forward_is_conv2d_and_trains)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_conv2d *c = nn_conv2d_new(m, "c", AG_F64, 2, 3, 3, 2, 1, 1, 1, 1);
    ag_tensor *w = nn_conv2d_weight(c), *b = nn_conv2d_bias(c);
    ag_set(b, 1, 0.5);
    ag_tape *t = ag_tape_new();
    ag_rng r;
    ag_rng_seed(&r, 3);
    ag_tensor *x = ag_rand(t, &r, AG_F64, 4, (int64_t[]){2, 2, 5, 5}, -1, 1);
    ag_tensor *y = nn_conv2d_forward(t, c, x);
    ag_tensor *ref = ag_conv2d(t, x, w, b, 2, 2, 1, 1, 1, 1, 1);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert(ag_rank(y) == 4 && ag_dim(y, 1) == 3 && ag_dim(y, 2) == 3 && ag_dim(y, 3) == 3);
    for (int64_t i = 0; i < ag_numel(y); i++)
        cr_assert_eq(ag_get(y, i), ag_get(ref, i));
    /* Gradient descent on mean(y^2) lowers it. */
    double before = ag_item(ag_mean(t, ag_square(t, y)));
    nn_optim *opt = nn_sgd_new(m, 0.1, 0, 0, 0);
    for (int step = 0; step < 5; step++) {
        ag_tape_reset(t);
        ag_rng_seed(&r, 3);
        x = ag_rand(t, &r, AG_F64, 4, (int64_t[]){2, 2, 5, 5}, -1, 1);
        nn_model_zero_grad(m);
        ag_backward(t, ag_mean(t, ag_square(t, nn_conv2d_forward(t, c, x))));
        nn_optim_step(opt);
    }
    ag_tape_reset(t);
    ag_rng_seed(&r, 3);
    x = ag_rand(t, &r, AG_F64, 4, (int64_t[]){2, 2, 5, 5}, -1, 1);
    double after = ag_item(ag_mean(t, ag_square(t, nn_conv2d_forward(t, c, x))));
    cr_expect_lt(after, 0.9 * before, "%g then %g", before, after);
    nn_optim_free(opt);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(conv_layers, errors)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_conv2d *c = nn_conv2d_new(m, "bad", AG_F32, 4, 6, 3, 1, 1, 1, 4, 1);
    cr_assert(nn_conv2d_is_nil(c));
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    cr_expect(strstr(nn_model_errmsg(m), "nn_conv2d_new") && strstr(nn_model_errmsg(m), "groups 4") &&
              strstr(nn_model_errmsg(m), "6 output"), "%s", nn_model_errmsg(m));
    ag_tape *t = ag_tape_new();
    nn_conv2d_forward(t, c, ag_zeros(t, AG_F32, 4, (int64_t[]){1, 4, 5, 5}));
    cr_expect_eq(ag_tape_status(t), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_conv2d_forward"));
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    c = nn_conv2d_new(m, "ok", AG_F32, 4, 6, 3, 0, 1, 1, 1, 1);
    cr_expect(nn_conv2d_is_nil(c));
    cr_expect(strstr(nn_model_errmsg(m), "stride 0"), "%s", nn_model_errmsg(m));
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    c = nn_conv2d_new(m, "ok", AG_F32, 4, 6, 3, 1, 1, 1, 1, 1);
    ag_tape_reset(t);
    ag_tensor *y = nn_conv2d_forward(t, c, ag_zeros(t, AG_F32, 4, (int64_t[]){1, 3, 5, 5}));
    cr_expect_eq(ag_rank(y), 0);
    cr_expect_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_conv2d_forward") && strstr(ag_tape_errmsg(t), "[1,3,5,5]") &&
              strstr(ag_tape_errmsg(t), "ok.weight"), "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
    nn_model_free(m);
}

Test(batchnorm_layers, training_updates_running_statistics_evaluation_uses_them)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_batchnorm2d *bn = nn_batchnorm2d_new(m, "bn1", AG_F64, 2, 0.1, 1e-5, 1);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    cr_assert_eq(nn_model_num_params(m), 2);
    ag_tape *t = ag_tape_new();
    /* x [2, 2, 1, 2]: channel 0 holds 1, 2, 3, 4; channel 1 holds 10, 20, 30, 40 */
    ag_tensor *x = ag_tensor_from(t, AG_F64, 4, (int64_t[]){2, 2, 1, 2},
                                  (double[]){1, 2, 10, 20, 3, 4, 30, 40});
    ag_tensor *y = nn_batchnorm2d_forward(t, bn, x);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_get(y, 0), -1.5 / sqrt(1.25 + 1e-5), 1e-12);
    const double *rm = ag_data(nn_batchnorm2d_running_mean(bn));
    const double *rv = ag_data(nn_batchnorm2d_running_var(bn));
    cr_expect_str_eq(ag_name(nn_batchnorm2d_running_mean(bn)), "bn1.running_mean");
    cr_expect_str_eq(ag_name(nn_batchnorm2d_running_var(bn)), "bn1.running_var");
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 1);
    cr_expect_float_eq(rm[0], 0.25, 1e-15);
    cr_expect_float_eq(rm[1], 2.5, 1e-14);
    cr_expect_float_eq(rv[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-14);
    cr_expect_float_eq(rv[1], 0.9 + 0.1 * 500.0 / 3.0, 1e-12);
    /* The scale and shift get gradients; evaluation leaves the statistics. */
    ag_backward(t, ag_sum(t, ag_mul(t, y, y)));
    cr_expect_float_eq(ag_get(ag_grad(nn_model_param(m, 0)), 0), 2 * 4 * 1.25 / (1.25 + 1e-5),
                       1e-9);
    nn_model_set_training(m, 0);
    ag_tape_reset(t);
    x = ag_tensor_from(t, AG_F64, 4, (int64_t[]){2, 2, 1, 2}, (double[]){1, 2, 10, 20, 3, 4, 30, 40});
    y = nn_batchnorm2d_forward(t, bn, x);
    cr_expect_float_eq(ag_get(y, 0), (1 - 0.25) / sqrt(rv[0] + 1e-5), 1e-12);
    cr_expect_float_eq(rm[0], 0.25, 1e-15);
    /* errors */
    nn_batchnorm2d_forward(t, bn, ag_zeros(t, AG_F64, 4, (int64_t[]){1, 3, 2, 2}));
    cr_expect_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_batchnorm2d_forward") &&
              strstr(ag_tape_errmsg(t), "[1,3,2,2]"), "%s", ag_tape_errmsg(t));
    nn_batchnorm2d *bad = nn_batchnorm2d_new(m, "bad", AG_F64, 2, 1.5, 1e-5, 1);
    cr_expect(nn_batchnorm2d_is_nil(bad));
    cr_expect(strstr(nn_model_errmsg(m), "nn_batchnorm2d_new") &&
              strstr(nn_model_errmsg(m), "momentum 1.5"), "%s", nn_model_errmsg(m));
    ag_tape_free(t);
    nn_model_free(m);
}

/* x[i] = ((i + off) 7 mod 11 - 5) / 4 + (i + off) / 8: exact in binary, so
** PyTorch saw the same inputs (its numbers below, printed in f64 by
** torch 1.13 from the same formula). */
static ag_tensor *exact_input(ag_tape *t, int rank, const int64_t *shape, int off)
{
    ag_tensor *x = ag_zeros(t, AG_F64, rank, shape);
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, (double)(((i + off) * 7) % 11 - 5) / 4.0 + (double)(i + off) / 8.0);
    return x;
}

/* torch.nn.BatchNorm2d(2) with weight [1.5, -0.5], bias [0.2, 0.3]: two
** training passes, then evaluation; and the gradients of a training pass. */
Test(batchnorm_layers, against_pytorch)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_batchnorm2d *bn = nn_batchnorm2d_new(m, "bn", AG_F64, 2, 0.1, 1e-5, 1);
    ag_tensor *w = nn_batchnorm2d_weight(bn), *b = nn_batchnorm2d_bias(bn);
    ag_set(w, 0, 1.5), ag_set(w, 1, -0.5), ag_set(b, 0, 0.2), ag_set(b, 1, 0.3);
    ag_tape *t = ag_tape_new();
    const int64_t shape[] = {2, 2, 2, 3};
    nn_batchnorm2d_forward(t, bn, exact_input(t, 4, shape, 0));
    ag_tensor *y = nn_batchnorm2d_forward(t, bn, exact_input(t, 4, shape, 5));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const int at[] = {0, 7, 13, 23};
    const double y2[] = {-2.3261174233476294, 0.5151768519041712, 1.1434896400455,
                         -0.47794707996123453};
    for (int k = 0; k < 4; k++)
        cr_expect_float_eq(ag_get(y, at[k]), y2[k], 1e-13, "y[%d] = %.17g", at[k],
                           ag_get(y, at[k]));
    ag_tensor *rm = nn_batchnorm2d_running_mean(bn), *rv = nn_batchnorm2d_running_var(bn);
    cr_expect_float_eq(ag_get(rm, 0), 0.2654166666666667, 1e-15);
    cr_expect_float_eq(ag_get(rm, 1), 0.40229166666666666, 1e-15);
    cr_expect_float_eq(ag_get(rv, 0), 1.0805492424242424, 1e-15);
    cr_expect_float_eq(ag_get(rv, 1), 1.0863304924242425, 1e-15);
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 2);

    nn_model_set_training(m, 0);
    y = nn_batchnorm2d_forward(t, bn, exact_input(t, 4, shape, 0));
    const double ye[] = {-1.9867494562733796, 0.0732327784415707, 1.4403805686807758,
                         -1.1260649997431589};
    for (int k = 0; k < 4; k++)
        cr_expect_float_eq(ag_get(y, at[k]), ye[k], 1e-13, "eval y[%d]", at[k]);
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 2, "evaluation counts nothing");
    cr_expect_float_eq(ag_get(rm, 0), 0.2654166666666667, 1e-15);

    /* gradients of sum(y^2 * arange(24)) through a training pass */
    nn_model_free(m);
    m = nn_model_new(NULL, NULL);
    bn = nn_batchnorm2d_new(m, "bn", AG_F64, 2, 0.1, 1e-5, 1);
    w = nn_batchnorm2d_weight(bn), b = nn_batchnorm2d_bias(bn);
    ag_set(w, 0, 1.5), ag_set(w, 1, -0.5), ag_set(b, 0, 0.2), ag_set(b, 1, 0.3);
    ag_tape_reset(t);
    ag_tensor *x = ag_requires_grad(exact_input(t, 4, shape, 0));
    y = nn_batchnorm2d_forward(t, bn, x);
    ag_tensor *r = ag_reshape(t, ag_arange(t, AG_F64, 0, 24, 1), 4, shape);
    ag_backward(t, ag_sum(t, ag_mul(t, ag_square(t, y), r)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const double gx[] = {36.52715329253138, 2.38867526449636, -15.908424478152853,
                         3.7060294231154227};
    for (int k = 0; k < 4; k++)
        cr_expect_float_eq(ag_get(ag_grad(x), at[k]), gx[k], 1e-10, "dx[%d] = %.17g", at[k],
                           ag_get(ag_grad(x), at[k]));
    cr_expect_float_eq(ag_get(ag_grad(w), 0), 304.67046846769915, 1e-10);
    cr_expect_float_eq(ag_get(ag_grad(w), 1), -156.15343658428984, 1e-10);
    ag_tape_free(t);
    nn_model_free(m);
}

/* One switch, nn_model_set_training, governs dropout and batch norm alike. */
Test(batchnorm_layers, mode_switching)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_batchnorm2d *bn = nn_batchnorm2d_new(m, "bn", AG_F64, 2, 0.5, 0, 0);
    cr_expect_eq(nn_model_training(m), 1, "a new model trains");
    ag_tape *t = ag_tape_new();
    const int64_t shape[] = {2, 2, 2, 3};
    ag_tensor *x = exact_input(t, 4, shape, 0);
    ag_tensor *yt = nn_batchnorm2d_forward(t, bn, x);
    ag_tensor *dt = nn_dropout(t, m, x, 0.5);
    /* training: each channel standardised by its batch (mean 0), the
    ** statistics moved halfway; dropout zeroes some, doubles the rest */
    double s = 0;
    for (int64_t i = 0; i < 6; i++)
        s += ag_get(yt, i) + ag_get(yt, 12 + i);
    cr_expect(fabs(s) < 1e-12, "channel 0's mean %g", s / 12);
    int zeros = 0;
    for (int64_t i = 0; i < 24; i++) {
        double v = ag_get(dt, i), xi = ag_get(x, i);
        zeros += v == 0 && xi != 0;
        cr_expect(v == 0 || v == 2 * xi, "dropout[%lld] %g of %g", (long long)i, v, xi);
    }
    cr_expect(zeros > 0 && zeros < 24, "%d dropped", zeros);
    double mean0 = ag_get(nn_batchnorm2d_running_mean(bn), 0);
    cr_expect_neq(mean0, 0.0);

    nn_model_set_training(m, 0);
    cr_expect_eq(nn_model_training(m), 0);
    ag_tensor *ye = nn_batchnorm2d_forward(t, bn, x);
    cr_expect_eq(nn_dropout(t, m, x, 0.5), x, "evaluation: dropout is the identity");
    double rv0 = ag_get(nn_batchnorm2d_running_var(bn), 0);
    cr_expect_float_eq(ag_get(ye, 0), (ag_get(x, 0) - mean0) / sqrt(rv0), 1e-14);
    cr_expect_neq(ag_get(ye, 0), ag_get(yt, 0));
    cr_expect_eq(ag_get(nn_batchnorm2d_running_mean(bn), 0), mean0, "evaluation moves nothing");
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 1);

    nn_model_set_training(m, 7);   /* any nonzero */
    cr_expect_eq(nn_model_training(m), 1);
    ag_tensor *y2 = nn_batchnorm2d_forward(t, bn, x);
    cr_expect_eq(ag_get(y2, 0), ag_get(yt, 0), "batch statistics again");
    cr_expect_neq(ag_get(nn_batchnorm2d_running_mean(bn), 0), mean0);
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 2);
    cr_expect_eq(nn_model_training(NULL), 0);
    nn_model_set_training(NULL, 1);   /* no-op */
    ag_tape_free(t);
    nn_model_free(m);
}

Test(batchnorm_layers, errors_name_the_function)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_batchnorm2d *bn = nn_batchnorm2d_new(m, "bn", AG_F32, 2, 0.1, 1e-5, 1);
    ag_tape *t = ag_tape_new();
    nn_batchnorm2d_forward(t, bn, ag_zeros(t, AG_F64, 4, (int64_t[]){2, 2, 2, 2}));
    cr_expect_eq(ag_tape_status(t), AG_EDTYPE);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_batchnorm2d_forward: input is f64 but 'bn.running_mean' "
                                        "is f32"), "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    /* training needs two values per channel */
    nn_batchnorm2d_forward(t, bn, ag_zeros(t, AG_F32, 4, (int64_t[]){1, 2, 1, 1}));
    cr_expect_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "training needs 2"), "%s", ag_tape_errmsg(t));
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 0, "a failed pass counts nothing");
    ag_tape_reset(t);
    nn_batchnorm2d_forward(t, bn, NULL);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_batchnorm2d_forward: the input is NULL"), "%s",
              ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_batchnorm2d_forward(t, NULL, ag_zeros(t, AG_F32, 4, (int64_t[]){2, 2, 2, 2}));
    cr_expect(strstr(ag_tape_errmsg(t), "nn_batchnorm2d_forward: the layer is NULL"), "%s",
              ag_tape_errmsg(t));
    cr_expect_null(nn_batchnorm2d_running_mean(NULL));
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(NULL), 0);
    /* a name too long for "<name>.running_mean" */
    char name[53];   /* 52 bytes: ".weight" fits, ".running_mean" does not */
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    cr_expect(nn_batchnorm2d_is_nil(nn_batchnorm2d_new(m, name, AG_F32, 2, 0.1, 1e-5, 0)));
    cr_expect(strstr(nn_model_errmsg(m), "nn_batchnorm2d_new: name") &&
              strstr(nn_model_errmsg(m), "running_mean' is longer than 63"), "%s",
              nn_model_errmsg(m));
    ag_tape_free(t);
    nn_model_free(m);
}

/* ------------------------------------------------------------------ pooling */

Test(pool_layers, values_by_hand)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_pool2d *mx = nn_maxpool2d_new(m, 2, 0, 0), *av = nn_avgpool2d_new(m, 2, 2, 0);
    nn_pool2d *av1 = nn_avgpool2d_new(m, 3, 1, 1), *gl = nn_global_avgpool2d_new(m);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    ag_tape *t = ag_tape_new();
    /* one 4x4 plane holding 0..15 */
    ag_tensor *x = ag_requires_grad(
        ag_reshape(t, ag_arange(t, AG_F64, 0, 16, 1), 4, (int64_t[]){1, 1, 4, 4}));
    ag_tensor *y = nn_pool2d_forward(t, mx, x);   /* stride 0: the kernel, 2 */
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert(ag_dim(y, 2) == 2 && ag_dim(y, 3) == 2);
    const double want_max[] = {5, 7, 13, 15}, want_avg[] = {2.5, 4.5, 10.5, 12.5};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(y, i), want_max[i]);
    ag_backward(t, ag_sum(t, y));
    cr_expect_eq(ag_get(ag_grad(x), 5), 1.0);
    cr_expect_eq(ag_get(ag_grad(x), 4), 0.0);
    y = nn_pool2d_forward(t, av, x);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(y, i), want_avg[i]);
    /* 3x3, stride 1, padding 1: the corner's window holds 0, 1, 4, 5 and five padded zeros */
    y = nn_pool2d_forward(t, av1, x);
    cr_assert(ag_dim(y, 2) == 4 && ag_dim(y, 3) == 4);
    cr_expect_float_eq(ag_get(y, 0), 10.0 / 9.0, 1e-15);
    cr_expect_float_eq(ag_get(y, 5), (0 + 1 + 2 + 4 + 5 + 6 + 8 + 9 + 10) / 9.0, 1e-15);
    y = nn_pool2d_forward(t, gl, x);
    cr_assert(ag_rank(y) == 4 && ag_dim(y, 2) == 1 && ag_dim(y, 3) == 1);
    cr_expect_eq(ag_get(y, 0), 7.5);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(pool_layers, errors_name_the_function)
{
    nn_model *m = nn_model_new(NULL, NULL);
    cr_expect(nn_pool2d_is_nil(nn_maxpool2d_new(m, 2, 1, 2)));
    cr_expect(strstr(nn_model_errmsg(m), "nn_maxpool2d_new: kernel 2") &&
              strstr(nn_model_errmsg(m), "padding 2"), "%s", nn_model_errmsg(m));
    nn_model_free(m);
    m = nn_model_new(NULL, NULL);
    cr_expect(nn_pool2d_is_nil(nn_avgpool2d_new(m, 0, 1, 0)));
    cr_expect(strstr(nn_model_errmsg(m), "nn_avgpool2d_new: kernel 0"), "%s", nn_model_errmsg(m));
    cr_expect(nn_pool2d_is_nil(nn_global_avgpool2d_new(m)), "the model is in error");
    nn_model_free(m);
    m = nn_model_new(NULL, NULL);
    nn_pool2d *p = nn_maxpool2d_new(m, 3, 0, 0);
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_pool2d_forward(t, p, ag_zeros(t, AG_F32, 4, (int64_t[]){1, 1, 2, 5}));
    cr_expect_eq(ag_rank(y), 0);
    cr_expect_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_pool2d_forward: input [1,1,2,5]"), "%s",
              ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_pool2d_forward(t, p, ag_zeros(t, AG_F32, 3, (int64_t[]){1, 5, 5}));
    cr_expect(strstr(ag_tape_errmsg(t), "nn_pool2d_forward: input [1,5,5] is not [N, C, H, W]"),
              "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_pool2d_forward(t, NULL, ag_zeros(t, AG_F32, 4, (int64_t[]){1, 1, 5, 5}));
    cr_expect(strstr(ag_tape_errmsg(t), "nn_pool2d_forward: the layer is NULL"), "%s",
              ag_tape_errmsg(t));
    ag_tape_free(t);
    nn_model_free(m);
}

/* ------------------------------------------------ a CNN's steady state */

/* conv -> batch norm -> relu -> max pool -> flatten -> dropout -> dense,
** cross-entropy, Adam: the steps after the first allocate nothing (the
** tape's arena and the model's buffers are reused), as for the MLP. */
Test(cnn, training_steps_allocate_nothing_after_the_first)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(hook_alloc, &h);
    nn_model_seed(m, 11);
    nn_conv2d *conv = nn_conv2d_new(m, "conv", AG_F32, 1, 4, 3, 1, 1, 1, 1, 1);
    nn_batchnorm2d *bn = nn_batchnorm2d_new(m, "bn", AG_F32, 4, 0.1, 1e-5, 1);
    nn_pool2d *pool = nn_maxpool2d_new(m, 2, 0, 0);
    nn_dense *fc = nn_dense_new(m, "fc", AG_F32, 4 * 4 * 4, 3, 1);
    nn_optim *o = nn_adam_new(m, 1e-2, 0.9, 0.999, 1e-8, 0);
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    int64_t labels[8];
    float xs[8 * 64];
    ag_rng r;
    ag_rng_seed(&r, 5);
    for (int i = 0; i < 8; i++) {
        labels[i] = i % 3;
        for (int j = 0; j < 64; j++)   /* class k brightens row block k */
            xs[i * 64 + j] = (float)(ag_rng_uniform(&r) * 0.5 + (j / 8 / 3 == labels[i]));
    }
    long after_first = 0;
    double first = 0, last = 0;
    for (int step = 0; step < 20; step++) {
        ag_tensor *x = ag_tensor_from_f32(t, 4, (int64_t[]){8, 1, 8, 8}, xs);
        ag_tensor *y = ag_relu(t, nn_batchnorm2d_forward(t, bn, nn_conv2d_forward(t, conv, x)));
        y = nn_dropout(t, m, ag_flatten(t, nn_pool2d_forward(t, pool, y), 1), 0.1);
        ag_tensor *loss = nn_cross_entropy_loss(t, nn_dense_forward(t, fc, y), labels, 0,
                                                NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        cr_assert_eq(ag_tape_status(t), AG_OK, "step %d: %s", step, ag_tape_errmsg(t));
        nn_optim_step(o);
        last = ag_item(loss);
        if (step == 0) {
            first = last;
            after_first = h.requests;
        } else {
            cr_assert_eq(h.requests, after_first, "step %d allocated %ld times", step,
                         h.requests - after_first);
        }
        ag_tape_reset(t);
    }
    cr_expect_lt(last, 0.5 * first, "the loop trains: loss %g -> %g", first, last);
    cr_expect_eq(nn_batchnorm2d_num_batches_tracked(bn), 20);
    ag_tape_free(t);
    nn_optim_free(o);
    nn_model_free(m);
    cr_expect_eq(h.live, 0, "%ld blocks leaked", h.live);
    cr_expect_eq(h.bad_osize, 0);
}
