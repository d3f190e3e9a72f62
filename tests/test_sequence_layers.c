/*
** test_sequence_layers.c: nn_layernorm (against PyTorch's numbers, its
** parameters and errors) and nn_embedding (N(0, 1) initialisation, lookup
** of any token shape, gradients of repeated tokens, errors).
*/
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

/* x[i] = (7 i mod 11 - 5) / 4 + i / 8, exact in binary (PyTorch's
** numbers below come from the same formula, in f64, torch 1.13). */
static ag_tensor *exact_input(ag_tape *t, int rank, const int64_t *shape)
{
    ag_tensor *x = ag_zeros(t, AG_F64, rank, shape);
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, (double)((i * 7) % 11 - 5) / 4.0 + (double)i / 8.0);
    return x;
}

Test(layernorm, against_pytorch)
{
    nn_model *m = nn_model_new(NULL, NULL);
    /* torch.nn.LayerNorm([3, 4]), weight 1 + j / 8 and bias j / 16 - 1/4 */
    nn_layernorm *ln = nn_layernorm_new(m, "ln", AG_F64, 2, (int64_t[]){3, 4}, 1e-5, 1);
    /* torch.nn.LayerNorm(4, elementwise_affine=False) */
    nn_layernorm *plain = nn_layernorm_new(m, "plain", AG_F64, 1, (int64_t[]){4}, 1e-5, 0);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    ag_tensor *w = nn_layernorm_weight(ln), *b = nn_layernorm_bias(ln);
    cr_expect_str_eq(ag_name(w), "ln.weight");
    cr_expect_str_eq(ag_name(b), "ln.bias");
    cr_expect(ag_rank(w) == 2 && ag_dim(w, 0) == 3 && ag_dim(w, 1) == 4);
    cr_expect_eq(ag_get(w, 11), 1.0, "weight starts at ones");
    cr_expect_eq(ag_get(b, 11), 0.0, "bias at zeros");
    cr_expect_null(nn_layernorm_weight(plain));
    cr_expect_eq(nn_model_num_params(m), 2);
    for (int j = 0; j < 12; j++) {
        ag_set(w, j, 1 + j / 8.0);
        ag_set(b, j, j / 16.0 - 0.25);
    }
    ag_tape *t = ag_tape_new();
    ag_tensor *x = exact_input(t, 3, (int64_t[]){2, 3, 4});
    ag_tensor *y = nn_layernorm_forward(t, ln, x), *y1 = nn_layernorm_forward(t, plain, x);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const int at[] = {0, 5, 11, 12, 23};
    const double want[] = {-2.3093470675682366, -1.2304423350357394, -0.7852373213686404,
                           -0.5443004328387042, 3.932317639959605};
    const double want1[] = {-1.35293518424498, -1.411065318917177, -0.8275986329749254,
                            -0.0940710212611453, 0.9931183595699103};
    for (int k = 0; k < 5; k++) {
        cr_expect_float_eq(ag_get(y, at[k]), want[k], 1e-13, "y[%d] = %.17g", at[k],
                           ag_get(y, at[k]));
        cr_expect_float_eq(ag_get(y1, at[k]), want1[k], 1e-13, "y1[%d] = %.17g", at[k],
                           ag_get(y1, at[k]));
    }
    /* the same in evaluation */
    nn_model_set_training(m, 0);
    cr_expect_eq(ag_get(nn_layernorm_forward(t, ln, x), 5), ag_get(y, 5));
    ag_tape_free(t);
    nn_model_free(m);
}

Test(layernorm, errors_name_the_function)
{
    nn_model *m = nn_model_new(NULL, NULL);
    cr_expect(nn_layernorm_is_nil(nn_layernorm_new(m, "ln", AG_F32, 0, (int64_t[]){4}, 1e-5, 1)));
    cr_expect(strstr(nn_model_errmsg(m), "nn_layernorm_new: layer 'ln': 0 normalised axes"), "%s",
              nn_model_errmsg(m));
    nn_model_free(m);
    m = nn_model_new(NULL, NULL);
    cr_expect(nn_layernorm_is_nil(nn_layernorm_new(m, "ln", AG_F32, 2, (int64_t[]){4, 0}, 1e-5, 1)));
    cr_expect(strstr(nn_model_errmsg(m), "normalised size 1 is 0"), "%s", nn_model_errmsg(m));
    nn_model_free(m);
    m = nn_model_new(NULL, NULL);
    nn_layernorm *ln = nn_layernorm_new(m, "ln", AG_F32, 1, (int64_t[]){4}, 1e-5, 1);
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_layernorm_forward(t, ln, ag_zeros(t, AG_F32, 2, (int64_t[]){2, 5}));
    cr_expect_eq(ag_rank(y), 0);
    cr_expect_eq(ag_tape_status(t), AG_ESHAPE);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_layernorm_forward: input [2,5] does not end in the "
                                        "normalised shape [4]"), "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_layernorm_forward(t, NULL, ag_zeros(t, AG_F32, 1, (int64_t[]){4}));
    cr_expect(strstr(ag_tape_errmsg(t), "nn_layernorm_forward: the layer is NULL"), "%s",
              ag_tape_errmsg(t));
    ag_tape_free(t);
    nn_model_free(m);
}

Test(embedding, init_lookup_and_gradients)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 3);
    nn_embedding *e = nn_embedding_new(m, "emb", AG_F64, 500, 8);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    ag_tensor *w = nn_embedding_weight(e);
    cr_expect_str_eq(ag_name(w), "emb.weight");
    cr_assert(ag_rank(w) == 2 && ag_dim(w, 0) == 500 && ag_dim(w, 1) == 8);
    /* N(0, 1): 4000 draws have mean within 0.05 and variance within 0.1 of it */
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < 4000; i++) {
        s += ag_get(w, i);
        s2 += ag_get(w, i) * ag_get(w, i);
    }
    cr_expect(fabs(s / 4000) < 0.05, "mean %g", s / 4000);
    cr_expect(fabs(s2 / 4000 - 1) < 0.1, "variance %g", s2 / 4000);

    ag_tape *t = ag_tape_new();
    const int64_t tokens[] = {4, 0, 4, 499, 7, 4};
    ag_tensor *y = nn_embedding_forward(t, e, 2, (int64_t[]){2, 3}, tokens);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert(ag_rank(y) == 3 && ag_dim(y, 0) == 2 && ag_dim(y, 1) == 3 && ag_dim(y, 2) == 8);
    for (int i = 0; i < 6; i++)
        for (int d = 0; d < 8; d++)
            cr_expect_eq(ag_get(y, i * 8 + d), ag_get(w, tokens[i] * 8 + d));
    /* d sum(y * c) / dw: row 4 gets the three c rows summed */
    ag_tensor *c = ag_reshape(t, ag_arange(t, AG_F64, 0, 48, 1), 3, (int64_t[]){2, 3, 8});
    nn_model_zero_grad(m);
    ag_backward(t, ag_sum(t, ag_mul(t, y, c)));
    ag_tensor *g = ag_grad(w);
    cr_expect_eq(ag_get(g, 4 * 8 + 1), 1 + 17 + 41);
    cr_expect_eq(ag_get(g, 499 * 8 + 2), 26);
    cr_expect_eq(ag_get(g, 1 * 8), 0, "unused rows get nothing");
    /* one token: [dim] */
    ag_tape_reset(t);
    y = nn_embedding_forward(t, e, 0, NULL, (int64_t[]){9});
    cr_assert(ag_rank(y) == 1 && ag_dim(y, 0) == 8);
    cr_expect_eq(ag_get(y, 3), ag_get(w, 9 * 8 + 3));
    ag_tape_free(t);
    nn_model_free(m);
}

Test(embedding, errors_name_the_function)
{
    nn_model *m = nn_model_new(NULL, NULL);
    cr_expect(nn_embedding_is_nil(nn_embedding_new(m, "emb", AG_F32, 0, 8)));
    cr_expect(strstr(nn_model_errmsg(m), "nn_embedding_new: layer 'emb' has 0 vectors"), "%s",
              nn_model_errmsg(m));
    nn_model_free(m);
    m = nn_model_new(NULL, NULL);
    nn_embedding *e = nn_embedding_new(m, "emb", AG_F32, 10, 4);
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_embedding_forward(t, e, 1, (int64_t[]){3}, (int64_t[]){1, 10, 2});
    cr_expect_eq(ag_rank(y), 0);
    cr_expect_eq(ag_tape_status(t), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_embedding_forward: token 10 at position 1 is outside "
                                        "[0, 10) of 'emb.weight'"), "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_embedding_forward(t, e, 1, (int64_t[]){1}, (int64_t[]){-1});
    cr_expect(strstr(ag_tape_errmsg(t), "token -1 at position 0"), "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_embedding_forward(t, e, AG_MAX_DIMS, (int64_t[AG_MAX_DIMS]){1}, (int64_t[]){0});
    cr_expect(strstr(ag_tape_errmsg(t), "nn_embedding_forward: rank"), "%s", ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_embedding_forward(t, e, 1, (int64_t[]){2}, NULL);
    cr_expect(strstr(ag_tape_errmsg(t), "nn_embedding_forward: 2 tokens but tokens is NULL"), "%s",
              ag_tape_errmsg(t));
    ag_tape_reset(t);
    nn_embedding_forward(t, NULL, 1, (int64_t[]){1}, (int64_t[]){0});
    cr_expect(strstr(ag_tape_errmsg(t), "nn_embedding_forward: the layer is NULL"), "%s",
              ag_tape_errmsg(t));
    cr_expect_null(nn_embedding_weight(NULL));
    ag_tape_free(t);
    nn_model_free(m);
}
