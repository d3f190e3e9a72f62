/*
** test_layers.c: dense layers (values, layout, errors), activations by
** name, inverted dropout, and sequential MLPs.
*/
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static void set_all(ag_tensor *x, int n, const double *v)
{
    for (int i = 0; i < n; i++)
        ag_set(x, i, v[i]);
}

/* ------------------------------------------------------------------- dense */

Test(dense, computes_x_times_w_plus_b_with_w_stored_in_by_out)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_dense *d = nn_dense_new(m, "fc1", AG_F64, 3, 2, 1);
    cr_assert(!nn_dense_is_nil(d), "%s", nn_model_errmsg(m));
    ag_tensor *w = nn_dense_weight(d), *b = nn_dense_bias(d);
    cr_assert_str_eq(ag_name(w), "fc1.weight");
    cr_assert_str_eq(ag_name(b), "fc1.bias");
    cr_assert_eq(ag_rank(w), 2);
    cr_assert_eq(ag_dim(w, 0), 3);
    cr_assert_eq(ag_dim(w, 1), 2);
    cr_assert_eq(ag_dim(b, 0), 2);
    /* W = [[1, 2], [3, 4], [5, 6]], b = [10, 20] */
    set_all(w, 6, (double[]){1, 2, 3, 4, 5, 6});
    set_all(b, 2, (double[]){10, 20});
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3}, (double[]){1, 0, -1, 2, 1, 0});
    ag_tensor *y = nn_dense_forward(t, d, x);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_dim(y, 0), 2);
    cr_assert_eq(ag_dim(y, 1), 2);
    /* row 0: [1 - 5, 2 - 6] + b = [6, 16]; row 1: [2 + 3, 4 + 4] + b = [15, 28] */
    double want[] = {6, 16, 15, 28};
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(ag_get(y, i), want[i], 1e-12, "y[%d]", i);
    /* dL/dW = x^T 1, dL/db = column sums of 1 */
    ag_backward(t, ag_sum(t, y));
    cr_assert_float_eq(ag_get(ag_grad(w), 0), 3.0, 1e-12);   /* x[0,0] + x[1,0] */
    cr_assert_float_eq(ag_get(ag_grad(w), 4), -1.0, 1e-12);  /* x[0,2] + x[1,2] */
    cr_assert_float_eq(ag_get(ag_grad(b), 1), 2.0, 1e-12);
    /* A single row [in] gives [out]. */
    ag_tape_reset(t);
    ag_tensor *row = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (double[]){1, 1, 1});
    ag_tensor *out = nn_dense_forward(t, d, row);
    cr_assert_eq(ag_rank(out), 1);
    cr_assert_float_eq(ag_get(out, 0), 19.0, 1e-12);
    cr_assert_float_eq(ag_get(out, 1), 32.0, 1e-12);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(dense, without_bias_and_initialised_within_the_glorot_bound)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_dense *d = nn_dense_new(m, "proj", AG_F32, 20, 30, 0);
    cr_assert_null(nn_dense_bias(d));
    cr_assert_eq(nn_model_num_params(m), 1);
    ag_tensor *w = nn_dense_weight(d);
    double bound = sqrt(6.0 / 50.0), maxabs = 0;
    for (int64_t i = 0; i < ag_numel(w); i++)
        maxabs = fmax(maxabs, fabs(ag_get(w, i)));
    cr_assert_leq(maxabs, bound);
    cr_assert_gt(maxabs, 0.8 * bound, "the weights are drawn, not left at zero");
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_dense_forward(t, d, ag_ones(t, AG_F32, 2, (int64_t[]){4, 20}));
    cr_assert_eq(ag_dim(y, 1), 30);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(dense, same_seed_same_weights)
{
    nn_model *a = nn_model_new(NULL, NULL), *b = nn_model_new(NULL, NULL);
    nn_model_seed(a, 7);
    nn_model_seed(b, 7);
    ag_tensor *wa = nn_dense_weight(nn_dense_new(a, "fc", AG_F64, 5, 4, 1));
    ag_tensor *wb = nn_dense_weight(nn_dense_new(b, "fc", AG_F64, 5, 4, 1));
    for (int64_t i = 0; i < 20; i++)
        cr_assert_eq(ag_get(wa, i), ag_get(wb, i));
    nn_model_free(a);
    nn_model_free(b);
}

Test(dense, wrong_input_size_is_a_shape_error_on_the_tape)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_dense *d = nn_dense_new(m, "fc1", AG_F64, 3, 2, 1);
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_dense_forward(t, d, ag_zeros(t, AG_F64, 2, (int64_t[]){2, 4}));
    cr_assert(ag_is_nil(y));
    cr_assert_eq(ag_tape_status(t), AG_ESHAPE);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_dense_forward: input [2,4] does not end in 3, the "
                     "input size of 'fc1.weight' [3,2]");
    ag_tape_reset(t);
    nn_dense_forward(t, d, NULL);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_dense_forward: the input is NULL");
    ag_tape_reset(t);
    nn_dense_forward(t, d, ag_zeros(t, AG_F64, 0, NULL));
    cr_assert_eq(ag_tape_status(t), AG_ESHAPE, "a scalar has no last dim");
    ag_tape_free(t);
    nn_model_free(m);
}

Test(dense, a_failed_constructor_gives_a_nil_layer_that_reports_on_the_tape)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_dense *d = nn_dense_new(m, "fc", AG_F64, 0, 2, 1);
    cr_assert(nn_dense_is_nil(d));
    cr_assert_not_null(d, "never NULL");
    cr_assert_null(nn_dense_weight(d));
    cr_assert_eq(nn_model_status(m), AG_ESHAPE);
    cr_assert_str_eq(nn_model_errmsg(m),
                     "nn_dense_new: layer 'fc' is 0 -> 2; both sizes must be >= 1");
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_dense_forward(t, d, ag_zeros(t, AG_F64, 1, (int64_t[]){2}));
    cr_assert(ag_is_nil(y));
    cr_assert(strstr(ag_tape_errmsg(t), "nn_dense_forward: the layer is nil"), "%s",
              ag_tape_errmsg(t));
    ag_tape_free(t);
    nn_model_free(m);
}

Test(dense, a_layer_of_a_model_in_error_reports_the_model_message)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_dense *d = nn_dense_new(m, "fc", AG_F64, 2, 2, 1);
    nn_dense_new(m, "fc", AG_F64, 2, 2, 1);   /* duplicate names */
    ag_tape *t = ag_tape_new();
    nn_dense_forward(t, d, ag_zeros(t, AG_F64, 1, (int64_t[]){2}));
    cr_assert_eq(ag_tape_status(t), AG_ESTATE);
    cr_assert(strstr(ag_tape_errmsg(t), "model is in error: nn_param: the model already has a "
                     "parameter 'fc.weight'"), "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
    nn_model_free(m);
}

/* ------------------------------------------------------------- activations */

Test(activation, each_matches_its_autograd_op)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from(t, AG_F64, 1, (int64_t[]){4}, (double[]){-2, -0.5, 0.5, 3});
    ag_tensor *want[] = {
        [NN_IDENTITY] = x,
        [NN_RELU] = ag_relu(t, x),
        [NN_LEAKY_RELU] = ag_leaky_relu(t, x, 0.01),
        [NN_TANH] = ag_tanh(t, x),
        [NN_SIGMOID] = ag_sigmoid(t, x),
        [NN_GELU] = ag_gelu(t, x),
        [NN_SOFTPLUS] = ag_softplus(t, x),
    };
    for (int a = 0; a < NN_ACTIVATION_COUNT; a++) {
        ag_tensor *y = nn_activate(t, (nn_activation)a, x);
        for (int i = 0; i < 4; i++)
            cr_assert_float_eq(ag_get(y, i), ag_get(want[a], i), 0, "%s[%d]",
                               nn_activation_name((nn_activation)a), i);
    }
    cr_assert_eq(nn_activate(t, NN_IDENTITY, x), x);
    cr_assert_float_eq(ag_get(nn_activate(t, NN_LEAKY_RELU, x), 0), -0.02, 1e-15);
    cr_assert_str_eq(nn_activation_name(NN_TANH), "tanh");
    cr_assert_str_eq(nn_activation_name((nn_activation)99), "?");
    cr_assert(ag_is_nil(nn_activate(t, (nn_activation)99, x)));
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_activate: activation 99 is not an nn_activation");
    ag_tape_free(t);
}

/* ----------------------------------------------------------------- dropout */

Test(dropout, zeroes_with_probability_p_and_scales_survivors)
{
    ag_tape *t = ag_tape_new();
    ag_rng r;
    ag_rng_seed(&r, 3);
    int64_t n = 10000;
    ag_tensor *x = ag_requires_grad(ag_full(t, AG_F64, 1, &n, 2.0));
    ag_tensor *y = nn_dropout_with(t, &r, x, 0.25, 1);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = ag_get(y, i);
        cr_assert(v == 0.0 || fabs(v - 2.0 / 0.75) < 1e-12, "y[%lld] = %g", (long long)i, v);
        kept += v != 0.0;
    }
    /* 7500 expected; 5 standard deviations is about 217. */
    cr_assert(kept > 7500 - 217 && kept < 7500 + 217, "kept %lld", (long long)kept);
    /* The gradient is the same mask: 1/(1-p) where kept, 0 where dropped. */
    ag_backward(t, ag_sum(t, y));
    for (int64_t i = 0; i < n; i += 97)
        cr_assert_float_eq(ag_get(ag_grad(x), i), ag_get(y, i) / 2.0, 1e-12);
    ag_tape_free(t);
}

Test(dropout, same_seed_same_mask)
{
    ag_tape *t = ag_tape_new();
    ag_rng r1, r2;
    ag_rng_seed(&r1, 11);
    ag_rng_seed(&r2, 11);
    ag_tensor *x = ag_ones(t, AG_F32, 2, (int64_t[]){8, 8});
    ag_tensor *a = nn_dropout_with(t, &r1, x, 0.5, 1);
    ag_tensor *b = nn_dropout_with(t, &r2, x, 0.5, 1);
    for (int64_t i = 0; i < 64; i++)
        cr_assert_eq(ag_get(a, i), ag_get(b, i));
    ag_tape_free(t);
}

Test(dropout, identity_in_evaluation_mode_and_edge_probabilities)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_ones(t, AG_F64, 1, (int64_t[]){5});
    cr_assert_neq(nn_dropout(t, m, x, 0.5), x, "training: a new tensor");
    nn_model_set_training(m, 0);
    cr_assert_eq(nn_dropout(t, m, x, 0.5), x, "evaluation: x itself");
    nn_model_set_training(m, 1);
    cr_assert_eq(nn_dropout(t, m, x, 0.0), x);
    ag_tensor *z = nn_dropout(t, m, x, 1.0);
    for (int i = 0; i < 5; i++)
        cr_assert_float_eq(ag_get(z, i), 0.0, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert(ag_is_nil(nn_dropout(t, m, x, 1.5)));
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_dropout: probability 1.5 is outside [0, 1]");
    ag_tape_reset(t);
    x = ag_ones(t, AG_F64, 1, (int64_t[]){5});
    nn_dropout_with(t, NULL, x, 0.5, 1);
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_dropout_with: generator is NULL");
    ag_tape_free(t);
    nn_model_free(m);
}

/* Each entry point names itself in its errors (nn_dropout_with said nn_dropout). */
Test(dropout, errors_name_the_function_called)
{
    ag_rng r;
    ag_rng_seed(&r, 1);
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_ones(t, AG_F64, 1, (int64_t[]){3});
    cr_assert(ag_is_nil(nn_dropout_with(t, &r, x, -0.5, 1)));
    cr_assert_str_eq(ag_tape_errmsg(t), "nn_dropout_with: probability -0.5 is outside [0, 1]");
    ag_tape_reset(t);
    nn_dropout_with(t, &r, NULL, 0.5, 1);
    cr_assert(strncmp(ag_tape_errmsg(t), "nn_dropout_with: ", 17) == 0, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* -------------------------------------------------------------------- MLPs */

Test(mlp, names_shapes_and_forward)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 4, (int64_t[]){3, 5, 4, 2}, NN_RELU);
    cr_assert(!nn_mlp_is_nil(net), "%s", nn_model_errmsg(m));
    cr_assert_eq(nn_mlp_depth(net), 3);
    cr_assert_eq(nn_model_num_params(m), 6);
    const char *names[] = {"mlp.0.weight", "mlp.0.bias", "mlp.1.weight",
                           "mlp.1.bias",   "mlp.2.weight", "mlp.2.bias"};
    for (int i = 0; i < 6; i++)
        cr_assert_str_eq(ag_name(nn_model_param(m, i)), names[i]);
    cr_assert_eq(nn_model_numel(m), 3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2);
    cr_assert_eq(nn_dense_weight(nn_mlp_layer(net, 1)), nn_model_find(m, "mlp.1.weight"));
    cr_assert_null(nn_mlp_layer(net, 3));
    /* Hidden layers: He-uniform bound sqrt(6 / fan_in); the last: Glorot. */
    ag_tensor *w0 = nn_dense_weight(nn_mlp_layer(net, 0));
    for (int64_t i = 0; i < ag_numel(w0); i++)
        cr_assert_leq(fabs(ag_get(w0, i)), sqrt(6.0 / 3.0));
    /* The forward equals the layers applied by hand. */
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3}, (double[]){1, -1, 2, 0, 3, -2});
    ag_tensor *y = nn_mlp_forward(t, net, x);
    ag_tensor *h = ag_relu(t, nn_dense_forward(t, nn_mlp_layer(net, 0), x));
    h = ag_relu(t, nn_dense_forward(t, nn_mlp_layer(net, 1), h));
    h = nn_dense_forward(t, nn_mlp_layer(net, 2), h);
    cr_assert_eq(ag_dim(y, 0), 2);
    cr_assert_eq(ag_dim(y, 1), 2);
    for (int i = 0; i < 4; i++)
        cr_assert_float_eq(ag_get(y, i), ag_get(h, i), 1e-12);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(mlp, unnamed_layers_and_dropout)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_mlp *net = nn_mlp_new(m, NULL, AG_F32, 3, (int64_t[]){2, 64, 1}, NN_TANH);
    cr_assert_str_eq(ag_name(nn_model_param(m, 0)), "0.weight");
    nn_mlp_set_dropout(net, 0.5);
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_ones(t, AG_F32, 2, (int64_t[]){1, 2});
    ag_tensor *a = nn_mlp_forward(t, net, x), *b = nn_mlp_forward(t, net, x);
    cr_assert_neq(ag_item(a), ag_item(b), "training: two different masks");
    nn_model_set_training(m, 0);
    a = nn_mlp_forward(t, net, x);
    b = nn_mlp_forward(t, net, x);
    cr_assert_eq(ag_item(a), ag_item(b), "evaluation: deterministic");
    nn_mlp_set_dropout(net, 1.0);
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    cr_assert(strstr(nn_model_errmsg(m), "nn_mlp_set_dropout: probability 1"));
    ag_tape_free(t);
    nn_model_free(m);
}

Test(mlp, bad_sizes_give_a_nil_mlp)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 1, (int64_t[]){3}, NN_RELU);
    cr_assert(nn_mlp_is_nil(net));
    cr_assert_eq(nn_mlp_depth(net), 0);
    cr_assert_str_eq(nn_model_errmsg(m), "nn_mlp_new: 1 sizes; an MLP needs at least 2");
    ag_tape *t = ag_tape_new();
    cr_assert(ag_is_nil(nn_mlp_forward(t, net, ag_zeros(t, AG_F64, 1, (int64_t[]){3}))));
    cr_assert(strstr(ag_tape_errmsg(t), "nn_mlp_forward: the layer is nil"));
    ag_tape_free(t);
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    cr_assert(nn_mlp_is_nil(nn_mlp_new(m, "mlp", AG_F64, 3, (int64_t[]){3, -4, 1}, NN_RELU)));
    cr_assert(strstr(nn_model_errmsg(m), "layer 'mlp.0' is 3 -> -4"), "%s", nn_model_errmsg(m));
    nn_model_free(m);
}
