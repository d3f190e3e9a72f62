/*
** test_model.c: models own named parameters in one contiguous value buffer
** and one gradient buffer; growth keeps handles valid; sticky errors; the
** allocator hook sees every byte; out-of-memory at every allocation;
** checkpoints by name.
*/
#include "io_fixtures.h"   /* first: it sets _POSIX_C_SOURCE */

#include "alloc_hooks.h"
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

Test(model, starts_empty_and_ok)
{
    nn_model *m = nn_model_new(NULL, NULL);
    cr_assert_not_null(m);
    cr_assert_eq(nn_model_status(m), AG_OK);
    cr_assert_str_eq(nn_model_errmsg(m), "");
    cr_assert_eq(nn_model_num_params(m), 0);
    cr_assert_eq(nn_model_numel(m), 0);
    cr_assert_null(nn_model_values(m));
    cr_assert_null(nn_model_grads(m));
    cr_assert_null(nn_model_param(m, 0));
    cr_assert(nn_model_training(m));
    nn_model_zero_grad(m);
    nn_model_free(m);
    nn_model_free(NULL);
    cr_assert_eq(nn_model_status(NULL), AG_EINVAL);
}

Test(model, parameters_are_named_and_laid_out_back_to_back)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *w = nn_param(m, "fc1.weight", AG_F64, 2, (int64_t[]){2, 3});
    ag_tensor *b = nn_param(m, "fc1.bias", AG_F64, 1, (int64_t[]){3});
    ag_tensor *s = nn_param(m, "scale", AG_F64, 0, NULL);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    cr_assert_eq(nn_model_num_params(m), 3);
    cr_assert_eq(nn_model_numel(m), 10);
    cr_assert_eq(nn_model_dtype(m), AG_F64);
    cr_assert_str_eq(ag_name(w), "fc1.weight");
    cr_assert_str_eq(ag_name(s), "scale");
    cr_assert(ag_is_param(w));
    cr_assert_eq(nn_model_param(m, 1), b);
    cr_assert_eq(nn_model_find(m, "fc1.bias"), b);
    cr_assert_null(nn_model_find(m, "fc2.bias"));
    /* One value buffer and one gradient buffer, in registration order. */
    double *values = nn_model_values(m), *grads = nn_model_grads(m);
    cr_assert_eq(ag_data(w), values);
    cr_assert_eq(ag_data(b), values + 6);
    cr_assert_eq(ag_data(s), values + 9);
    cr_assert_eq(ag_data(ag_grad(w)), grads);
    cr_assert_eq(ag_data(ag_grad(s)), grads + 9);
    for (int i = 0; i < 10; i++)
        cr_assert_float_eq(values[i], 0.0, 0, "parameters start at zero");
    nn_model_free(m);
}

Test(model, backward_accumulates_into_the_flat_gradient_buffer)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *w = nn_param(m, "w", AG_F64, 1, (int64_t[]){2});
    ag_tensor *c = nn_param(m, "c", AG_F64, 0, NULL);
    ag_set(w, 0, 3.0);
    ag_set(w, 1, -1.0);
    ag_set(c, 0, 2.0);
    ag_tape *t = ag_tape_new();
    /* L = c * sum(w^2): dL/dw = 2 c w = [12, -4], dL/dc = sum(w^2) = 10 */
    ag_tensor *loss = ag_mul(t, c, ag_sum(t, ag_square(t, w)));
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const double *g = nn_model_grads(m);
    cr_assert_float_eq(g[0], 12.0, 1e-12);
    cr_assert_float_eq(g[1], -4.0, 1e-12);
    cr_assert_float_eq(g[2], 10.0, 1e-12);
    /* Gradients survive the reset and add up over two passes. */
    ag_tape_reset(t);
    ag_backward(t, ag_mul(t, c, ag_sum(t, ag_square(t, w))));
    cr_assert_float_eq(g[0], 24.0, 1e-12);
    nn_model_zero_grad(m);
    for (int i = 0; i < 3; i++)
        cr_assert_float_eq(g[i], 0.0, 0);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(model, growing_keeps_handles_and_values)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *first = nn_param(m, "first", AG_F32, 1, (int64_t[]){5});
    for (int i = 0; i < 5; i++) {
        ag_set(first, i, i + 1.0);
        ag_set(ag_grad(first), i, -(i + 1.0));
    }
    /* Enough parameters to force the buffers to move several times. */
    ag_tensor *ps[40];
    for (int k = 0; k < 40; k++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", k);
        ps[k] = nn_param(m, name, AG_F32, 2, (int64_t[]){k + 1, 7});
        ag_fill(ps[k], k);
    }
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    float *values = nn_model_values(m);
    cr_assert_eq(ag_data(first), values);
    for (int i = 0; i < 5; i++) {
        cr_assert_float_eq(ag_get(first, i), i + 1.0, 0);
        cr_assert_float_eq(ag_get(ag_grad(first), i), -(i + 1.0), 0);
    }
    int64_t at = 5;
    for (int k = 0; k < 40; k++) {
        cr_assert_eq(ag_data(ps[k]), values + at, "p%d is at its slot", k);
        cr_assert_float_eq(ag_get(ps[k], 0), k, 0);
        at += (k + 1) * 7;
    }
    cr_assert_eq(nn_model_numel(m), at);
    /* Values and gradients, streamed side by side by the optimizers, start
    ** at different offsets within a page (no 4K aliasing). */
    uintptr_t gap = (uintptr_t)nn_model_grads(m) - (uintptr_t)values;
    cr_expect_geq(gap % 4096, 256, "values %p, gradients %p", (void *)values, nn_model_grads(m));
    /* The moved parameters still work in ops. */
    ag_tape *t = ag_tape_new();
    ag_backward(t, ag_sum(t, ag_mul(t, first, first)));
    cr_assert_float_eq(ag_get(ag_grad(first), 4), -5.0 + 10.0, 1e-6);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(model, errors_are_sticky_and_name_the_function)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *a = nn_param(m, "a", AG_F64, 1, (int64_t[]){2});
    cr_assert_not_null(a);
    cr_assert_null(nn_param(m, "a", AG_F64, 1, (int64_t[]){2}));
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    cr_assert_str_eq(nn_model_errmsg(m), "nn_param: the model already has a parameter 'a'");
    /* The first error wins; later builders do nothing. */
    cr_assert_null(nn_param(m, "b", AG_F32, 1, (int64_t[]){2}));
    cr_assert_str_eq(nn_model_errmsg(m), "nn_param: the model already has a parameter 'a'");
    cr_assert_eq(nn_model_num_params(m), 1);
    cr_assert(nn_dense_is_nil(nn_dense_new(m, "fc", AG_F64, 2, 2, 1)));
    nn_model_fail(m, AG_EIO, "ignored");
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    nn_model_free(m);
}

Test(model, rejects_bad_parameters)
{
    struct {
        const char *name;
        ag_dtype dt;
        int rank;
        int64_t shape[2];
        ag_status want;
        const char *needle;
    } cases[] = {
        {"b", AG_F32, 1, {2}, AG_EDTYPE, "'b' is f32 but the model's parameters are f64"},
        {"", AG_F64, 1, {2}, AG_EINVAL, "must have 1 to 63 bytes"},
        {NULL, AG_F64, 1, {2}, AG_EINVAL, "name NULL"},
        {"a-name-that-is-much-too-long-for-the-sixty-three-byte-limit-of-names", AG_F64, 1,
         {2}, AG_EINVAL, "1 to 63 bytes"},
        {"neg", AG_F64, 2, {2, -1}, AG_ESHAPE, "'neg' has invalid dimension 1 (-1)"},
        {"deep", AG_F64, 9, {1, 1}, AG_ESHAPE, "rank 9"},
        {"dt", (ag_dtype)7, 1, {1}, AG_EDTYPE, "dtype 7"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nn_model *m = nn_model_new(NULL, NULL);
        nn_param(m, "first", AG_F64, 0, NULL);
        cr_assert_null(nn_param(m, cases[i].name, cases[i].dt, cases[i].rank, cases[i].shape));
        cr_assert_eq(nn_model_status(m), cases[i].want, "case %zu: %s", i, nn_model_errmsg(m));
        cr_assert(strstr(nn_model_errmsg(m), cases[i].needle), "case %zu: %s", i,
                  nn_model_errmsg(m));
        cr_assert(strncmp(nn_model_errmsg(m), "nn_param: ", 10) == 0);
        nn_model_free(m);
    }
}

Test(model, nn_param_null_is_reported_by_the_ops_that_use_it)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F64, 0, NULL);
    ag_tensor *dup = nn_param(m, "w", AG_F64, 0, NULL);
    ag_tape *t = ag_tape_new();
    ag_tensor *y = ag_mul(t, dup, ag_scalar(t, AG_F64, 2.0));
    cr_assert(ag_is_nil(y));
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    ag_tape_free(t);
    nn_model_free(m);
}

Test(model, training_flag_and_generator)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_set_training(m, 0);
    cr_assert_not(nn_model_training(m));
    nn_model_set_training(m, 5);
    cr_assert(nn_model_training(m));
    ag_rng r;
    ag_rng_seed(&r, 0);
    cr_assert_eq(ag_rng_next(nn_model_rng(m)), ag_rng_next(&r), "seeded with 0 by default");
    nn_model_seed(m, 99);
    ag_rng_seed(&r, 99);
    cr_assert_eq(ag_rng_next(nn_model_rng(m)), ag_rng_next(&r));
    cr_assert_null(nn_model_rng(NULL));
    nn_model_free(m);
}

Test(model, every_byte_goes_through_the_hook)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(hook_alloc, &h);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F32, 3, (int64_t[]){4, 16, 2}, NN_RELU);
    nn_dense *extra = nn_dense_new(m, "head", AG_F32, 2, 3, 0);
    nn_optim *o = nn_adam_new(m, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    cr_assert(!nn_mlp_is_nil(net) && !nn_dense_is_nil(extra) && !nn_optim_is_nil(o));
    cr_assert_gt(h.requests, 0);
    nn_optim_free(o);
    nn_model_free(m);
    cr_assert_eq(h.live, 0, "%ld blocks leaked", h.live);
    cr_assert_eq(h.bad_osize, 0);
}

/* Builds a small model with layers and an optimizer, failing allocation n. */
static void build_failing_at(long n, int *completed)
{
    alloc_hooks h = hooks_failing_at(n);
    nn_model *m = nn_model_new(hook_alloc, &h);
    if (!m) {
        cr_assert_eq(h.refused, 1);
        return;
    }
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 4, (int64_t[]){3, 20, 20, 2}, NN_TANH);
    for (int k = 0; k < 30; k++) {
        char name[16];
        snprintf(name, sizeof name, "extra%d", k);
        nn_param(m, name, AG_F64, 1, (int64_t[]){k + 1});
    }
    nn_optim *o = nn_sgd_new(m, 0.1, 0.9, 0.0, 0);
    if (h.refused) {
        cr_assert_eq(nn_model_status(m), AG_ENOMEM, "request %ld: %s", n, nn_model_errmsg(m));
        cr_assert(nn_optim_is_nil(o));
    } else {
        cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
        cr_assert(!nn_mlp_is_nil(net));
        *completed = 1;
    }
    nn_optim_free(o);
    nn_model_free(m);
    cr_assert_eq(h.live, 0, "request %ld: %ld blocks leaked", n, h.live);
    cr_assert_eq(h.bad_osize, 0);
}

Test(model, out_of_memory_at_every_allocation)
{
    int completed = 0;
    long n;
    for (n = 1; n < 500 && !completed; n++)
        build_failing_at(n, &completed);
    cr_assert(completed, "the build never finished within %ld allocations", n);
    cr_assert_gt(n, 10, "the failure loop covered the allocations");
}

/* ------------------------------------------------------------ checkpoints */

/* A model with a dense layer and a scalar, its values set from 'base'. */
static nn_model *checkpoint_model(double base, int extra)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_dense_new(m, "fc1", AG_F32, 3, 2, 1);
    nn_param(m, "temperature", AG_F32, 0, NULL);
    if (extra)
        nn_param(m, "extra", AG_F32, 1, (int64_t[]){2});
    float *v = nn_model_values(m);
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        v[i] = (float)(base + (double)i);
    return m;
}

Test(model, save_then_load_restores_every_parameter_by_name)
{
    char dir[256], path[300], err[256];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "model.safetensors");
    nn_model *a = checkpoint_model(1.0, 0);
    cr_assert_eq(nn_model_save(a, path, err, sizeof err), AG_OK, "%s", err);
    cr_assert_str_eq(err, "");
    nn_model *b = checkpoint_model(100.0, 0);
    cr_assert_eq(nn_model_load(b, path, err, sizeof err), AG_OK, "%s", err);
    const float *va = nn_model_values(a), *vb = nn_model_values(b);
    for (int64_t i = 0; i < nn_model_numel(a); i++)
        cr_assert_eq(va[i], vb[i], "element %lld", (long long)i);
    cr_assert_float_eq(ag_item(nn_model_find(b, "temperature")), 9.0, 0, "6 + 2 values before it");

    /* A file that lacks a parameter of the model: an error, and nothing changes. */
    nn_model *c = checkpoint_model(-5.0, 1);
    ag_status st = nn_model_load(c, path, err, sizeof err);
    cr_assert_neq(st, AG_OK);
    cr_assert(strstr(err, "missing from the file: 'extra'"), "%s", err);
    cr_assert_float_eq(((const float *)nn_model_values(c))[0], -5.0, 0);
    cr_assert_eq(nn_model_status(c), AG_OK, "a failed load leaves the model usable");

    /* A model in error refuses, with its own message. */
    nn_param(c, "extra", AG_F32, 0, NULL);
    cr_assert_eq(nn_model_save(c, path, err, sizeof err), AG_EINVAL);
    cr_assert(strstr(err, "nn_model_save: the model is in error: nn_param"), "%s", err);
    cr_assert_eq(nn_model_load(NULL, path, err, sizeof err), AG_EINVAL);
    cr_assert_str_eq(err, "nn_model_load: model is NULL");

    nn_model_free(a);
    nn_model_free(b);
    nn_model_free(c);
    remove_dir(dir);
}

/* ------------------------------------------- the autograd API nn relies on */

Test(model, ag_param_rebind_moves_a_parameter_and_rejects_the_rest)
{
    double v1[2] = {1, 2}, g1[2] = {0, 0}, v2[2] = {5, 6}, g2[2] = {7, 8};
    ag_tensor *p = ag_param_view(NULL, NULL, AG_F64, 1, (int64_t[]){2}, v1, g1);
    cr_assert_eq(ag_param_rebind(p, v2, g2), AG_OK);
    cr_assert_float_eq(ag_get(p, 1), 6.0, 0);
    cr_assert_float_eq(ag_get(ag_grad(p), 0), 7.0, 0);
    cr_assert_eq(ag_param_rebind(p, NULL, g1), AG_EINVAL);
    cr_assert_eq(ag_param_rebind(p, v1, NULL), AG_EINVAL);
    cr_assert_eq(ag_data(p), v2, "a refused rebind changes nothing");
    cr_assert_eq(ag_param_rebind(ag_grad(p), v1, g1), AG_EINVAL, "a gradient is no parameter");
    ag_tape *t = ag_tape_new();
    cr_assert_eq(ag_param_rebind(ag_ones(t, AG_F64, 0, NULL), v1, g1), AG_EINVAL);
    cr_assert_eq(ag_param_rebind(NULL, v1, g1), AG_EINVAL);
    cr_assert(ag_is_nil(ag_tape_nil(t)));
    cr_assert(ag_is_nil(ag_tape_nil(NULL)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "asking for the nil records nothing");
    ag_tape_free(t);
    ag_param_free(p);
}

/* The largest single request the model made, through the hook. */
static size_t largest_request;
static void *spy_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    if (nsize > largest_request)
        largest_request = nsize;
    return hook_alloc(ud, ptr, osize, nsize);
}

/* Issue 21: the buffers doubled to the next power of two, so a 600 MB model
** asked for 2 GiB. One large parameter now gets buffers of its size; a model
** built a parameter at a time gets at most a quarter more. */
Test(model, buffers_grow_by_a_quarter_not_to_a_power_of_two)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(spy_alloc, &h);
    const int64_t n = ((int64_t)1 << 20) + 1;
    largest_request = 0;
    cr_assert(nn_param(m, "w", AG_F32, 1, &n));
    size_t need = 2 * (size_t)n * 4;   /* values and gradients */
    cr_expect_leq(largest_request, need + 3 * 4096, "asked %zu bytes for %zu", largest_request, need);
    nn_model_free(m);

    m = nn_model_new(spy_alloc, &h);
    largest_request = 0;
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        cr_assert(nn_param(m, name, AG_F64, 1, (int64_t[]){10007}));
    }
    need = 2 * (size_t)(100 * 10007) * 8;
    cr_expect_leq(largest_request, need + need / 4 + 3 * 4096, "asked %zu bytes for %zu", largest_request,
                  need);
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "p%d", i);
        cr_expect_eq(ag_numel(nn_model_find(m, name)), 10007);
    }
    nn_model_free(m);
    cr_expect_eq(h.live, 0);
}

/* A model's parameter is claimed by the model: ag_param_free refuses it
** (it was a double free once nn_model_free ran), and nn_model_free frees it. */
Test(model, ag_param_free_refuses_a_models_parameter)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *p = nn_param(m, "w", AG_F64, 2, (int64_t[]){2, 3});
    cr_assert_not_null(p);
    cr_assert(ag_param_claimed(p));
    cr_assert_eq(ag_param_free(p), AG_EINVAL);
    cr_assert_eq(ag_param_free_claimed(p, NULL), AG_EINVAL);
    cr_assert_eq(ag_param_free_claimed(p, p), AG_EINVAL, "only the model may free it");
    cr_assert_eq(ag_param_claim(p, p), AG_EINVAL, "claimed already");
    ag_set(p, 0, 4.0);
    cr_assert_eq(ag_get(p, 0), 4.0, "a refused free leaves it usable");
    nn_model_free(m);   /* frees p once: ASan and glibc catch a second free */
}

Test(model, param_free_and_claim_refuse_what_is_no_parameter)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_ones(t, AG_F64, 1, (int64_t[]){2});
    cr_assert_eq(ag_param_free(x), AG_EINVAL, "a tape tensor");
    cr_assert_eq(ag_param_claim(x, t), AG_EINVAL);
    ag_tensor *p = ag_param_new(AG_F32, 1, (int64_t[]){2});
    cr_assert_eq(ag_param_free(ag_grad(p)), AG_EINVAL, "a parameter's gradient");
    cr_assert_eq(ag_param_claim(p, NULL), AG_EINVAL);
    cr_assert_not(ag_param_claimed(p));
    cr_assert_eq(ag_param_claim(p, t), AG_OK);
    cr_assert_eq(ag_param_free(p), AG_EINVAL);
    cr_assert_eq(ag_param_free_claimed(p, t), AG_OK);
    cr_assert_eq(ag_param_free(NULL), AG_OK);
    cr_assert_eq(ag_param_free_claimed(NULL, t), AG_OK);
    ag_tensor *q = ag_param_scalar(AG_F64, 1.0);
    cr_assert_eq(ag_param_free(q), AG_OK);
    ag_tape_free(t);
}
