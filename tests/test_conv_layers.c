/*
** test_conv_layers.c: nn_conv2d. Its parameters (names, PyTorch's weight
** layout, Kaiming-uniform by fan-in, zero bias), its forward (exactly
** ag_conv2d on those parameters), a training step that lowers a loss, and
** its errors on the model and on the tape. nn_batchnorm2d: its parameters,
** training and evaluation following the model, and its running statistics.
*/
#include "nn.h"

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
