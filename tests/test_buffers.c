/*
** test_buffers.c: a model's buffers (nn_buffer), batch norm's running
** statistics among them. They are named as PyTorch names them, kept out of
** the optimizers' reach, saved and loaded bit for bit by nn_model_save /
** load and nn_checkpoint_save / load, and a file written with PyTorch's
** names (num_batches_tracked, an I64, included) loads; a file without them
** is refused unless NN_LOAD_ALLOW_MISSING.
*/
#include "io_fixtures.h"   /* first: it sets _POSIX_C_SOURCE */

#include "nn.h"

#include "alloc_hooks.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static char dir[256];

static void setup(void) { cr_assert(fixture_dir(dir, sizeof dir)); }
static void teardown(void) { remove_dir(dir); }

TestSuite(buffers, .init = setup, .fini = teardown);

/* conv (1 -> 2, 3x3) then batch norm (2), f32: the shape of the example's blocks. */
typedef struct cnn {
    nn_model *m;
    nn_conv2d *conv;
    nn_batchnorm2d *bn;
} cnn;

static cnn cnn_make(uint64_t seed)
{
    cnn c;
    c.m = nn_model_new(NULL, NULL);
    nn_model_seed(c.m, seed);
    c.conv = nn_conv2d_new(c.m, "conv", AG_F32, 1, 2, 3, 1, 1, 1, 1, 1);
    c.bn = nn_batchnorm2d_new(c.m, "bn", AG_F32, 2, 0.1, 1e-5, 1);
    cr_assert_eq(nn_model_status(c.m), AG_OK, "%s", nn_model_errmsg(c.m));
    return c;
}

/* loss = mean(relu(bn(conv(x)))^2) over a fixed batch [4, 1, 5, 5] drawn from 'seed'. */
static ag_tensor *cnn_loss(ag_tape *t, const cnn *c, uint64_t seed)
{
    ag_rng r;
    ag_rng_seed(&r, seed);
    ag_tensor *x = ag_randn(t, &r, AG_F32, 4, (int64_t[]){4, 1, 5, 5}, 0.5, 2.0);
    ag_tensor *y = ag_relu(t, nn_batchnorm2d_forward(t, c->bn, nn_conv2d_forward(t, c->conv, x)));
    return ag_mean(t, ag_square(t, y));
}

/* A few SGD steps in training mode, so the running statistics move. */
static void cnn_train(cnn *c, int steps)
{
    ag_tape *t = ag_tape_new();
    nn_optim *o = nn_sgd_new(c->m, 0.1, 0.9, 0, 0);
    for (int s = 0; s < steps; s++) {
        nn_model_zero_grad(c->m);
        ag_backward(t, cnn_loss(t, c, 100 + (uint64_t)s));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        nn_optim_step(o);
        ag_tape_reset(t);
    }
    nn_optim_free(o);
    ag_tape_free(t);
}

static void expect_same_bits(ag_tensor *a, ag_tensor *b)
{
    cr_assert_eq(ag_numel(a), ag_numel(b));
    cr_expect_eq(memcmp(ag_data(a), ag_data(b), (size_t)ag_numel(a) * sizeof(float)), 0,
                 "'%s' differs", ag_name(a));
}

Test(buffers, registration)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *w = nn_param(m, "w", AG_F64, 1, (int64_t[]){3});
    ag_tensor *b = nn_buffer(m, "stat", AG_F64, 2, (int64_t[]){2, 3});
    cr_assert_not_null(b);
    cr_expect_str_eq(ag_name(b), "stat");
    cr_expect_eq(nn_model_num_buffers(m), 1);
    cr_expect_eq(nn_model_buffer(m, 0), b);
    cr_expect_null(nn_model_buffer(m, 1));
    cr_expect_eq(nn_model_find_buffer(m, "stat"), b);
    cr_expect_null(nn_model_find(m, "stat"), "a buffer is not a parameter");
    cr_expect_null(nn_model_find_buffer(m, "w"));
    cr_expect_eq(nn_model_num_params(m), 1);
    cr_expect_eq(nn_model_numel(m), 3, "buffers are outside the parameter buffers");
    for (int64_t i = 0; i < 6; i++)
        cr_expect_eq(ag_get(b, i), 0.0);
    cr_expect_eq(ag_param_free(b), AG_EINVAL, "the model owns its buffers");
    /* Values survive the block's growth (64 elements at first). */
    ag_set(b, 5, 2.5);
    ag_tensor *big = nn_buffer(m, "big", AG_F64, 1, (int64_t[]){100});
    ag_set(big, 99, -1.0);
    cr_expect_eq(ag_get(b, 5), 2.5);
    cr_expect_eq(ag_get(big, 99), -1.0);
    cr_expect_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    /* a buffer passed to an op: its gradient goes elsewhere, its values stay */
    ag_tape *t = ag_tape_new();
    ag_backward(t, ag_sum(t, ag_mul(t, ag_reshape(t, b, 1, (int64_t[]){6}),
                                    ag_full(t, AG_F64, 1, (int64_t[]){6}, 3.0))));
    cr_expect_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_get(b, 5), 2.5);
    cr_expect_eq(ag_get(b, 0), 0.0);
    ag_tape_free(t);
    (void)w;
    /* names are shared with the parameters */
    cr_expect_null(nn_buffer(m, "w", AG_F64, 0, NULL));
    cr_expect_str_eq(nn_model_errmsg(m), "nn_buffer: the model already has a parameter 'w'");
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    nn_buffer(m, "s", AG_F64, 0, NULL);
    cr_expect_null(nn_param(m, "s", AG_F64, 0, NULL));
    cr_expect_str_eq(nn_model_errmsg(m), "nn_param: the model already has a buffer 's'");
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F32, 0, NULL);
    cr_expect_null(nn_buffer(m, "s", AG_F64, 0, NULL));
    cr_expect_eq(nn_model_status(m), AG_EDTYPE);
    cr_expect(strstr(nn_model_errmsg(m), "nn_buffer: 's' is f64"), "%s", nn_model_errmsg(m));
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    cr_expect_null(nn_buffer(m, NULL, AG_F32, 0, NULL));
    cr_expect(strstr(nn_model_errmsg(m), "nn_buffer: name NULL"), "%s", nn_model_errmsg(m));
    nn_model_free(m);
    cr_expect_eq(nn_model_num_buffers(NULL), 0);
    cr_expect_null(nn_model_find_buffer(NULL, "x"));
}

Test(buffers, batch_norm_names_them_as_pytorch)
{
    cnn c = cnn_make(1);
    cr_assert_eq(nn_model_num_buffers(c.m), 2);
    cr_expect_str_eq(ag_name(nn_model_buffer(c.m, 0)), "bn.running_mean");
    cr_expect_str_eq(ag_name(nn_model_buffer(c.m, 1)), "bn.running_var");
    cr_expect_eq(nn_batchnorm2d_running_mean(c.bn), nn_model_buffer(c.m, 0));
    cr_expect_eq(ag_dtype_of(nn_batchnorm2d_running_mean(c.bn)), AG_F32);
    cr_expect_eq(ag_get(nn_batchnorm2d_running_var(c.bn), 1), 1.0);
    cr_expect_str_eq(ag_name(nn_batchnorm2d_weight(c.bn)), "bn.weight");
    cr_expect_str_eq(ag_name(nn_batchnorm2d_bias(c.bn)), "bn.bias");
    /* without the affine part: buffers, no parameters */
    nn_batchnorm2d *plain = nn_batchnorm2d_new(c.m, "plain", AG_F32, 3, 0.1, 1e-5, 0);
    cr_expect_null(nn_batchnorm2d_weight(plain));
    cr_expect_eq(nn_model_num_buffers(c.m), 4);
    cr_expect_eq(nn_model_num_params(c.m), 4);
    nn_model_free(c.m);
}

/* Every optimizer (with weight decay, which would pull any value it saw),
** zero_grad and clipping leave the buffers' bits alone. */
Test(buffers, optimizers_skip_them)
{
    for (int k = 0; k < 5; k++) {
        cnn c = cnn_make(2);
        cnn_train(&c, 2);
        nn_optim *o = k == 0   ? nn_sgd_new(c.m, 0.1, 0.9, 0.1, 0)
                      : k == 1 ? nn_adam_new(c.m, 0.1, 0.9, 0.999, 1e-8, 0.1)
                      : k == 2 ? nn_adamw_new(c.m, 0.1, 0.9, 0.999, 1e-8, 0.1)
                      : k == 3 ? nn_rmsprop_new(c.m, 0.1, 0.99, 1e-8, 0.5, 0.1)
                               : nn_adagrad_new(c.m, 0.1, 1e-10, 0.1);
        ag_tape *t = ag_tape_new();
        nn_model_zero_grad(c.m);
        ag_backward(t, cnn_loss(t, &c, 5));
        float mean[2], var[2];
        memcpy(mean, ag_data(nn_batchnorm2d_running_mean(c.bn)), sizeof mean);
        memcpy(var, ag_data(nn_batchnorm2d_running_var(c.bn)), sizeof var);
        float w0 = (float)ag_get(nn_conv2d_weight(c.conv), 0);
        nn_clip_grad_norm(c.m, 1e-3);
        for (int s = 0; s < 3; s++)
            nn_optim_step(o);
        nn_model_zero_grad(c.m);
        cr_expect_neq((float)ag_get(nn_conv2d_weight(c.conv), 0), w0, "%s stepped", nn_optim_name(o));
        cr_expect_eq(memcmp(mean, ag_data(nn_batchnorm2d_running_mean(c.bn)), sizeof mean), 0,
                     "%s", nn_optim_name(o));
        cr_expect_eq(memcmp(var, ag_data(nn_batchnorm2d_running_var(c.bn)), sizeof var), 0,
                     "%s", nn_optim_name(o));
        nn_optim_free(o);
        ag_tape_free(t);
        nn_model_free(c.m);
    }
}

Test(buffers, model_save_load_round_trip_bit_for_bit)
{
    char path[512];
    fixture_path(path, sizeof path, dir, "cnn.safetensors");
    cnn a = cnn_make(3);
    cnn_train(&a, 4);
    ag_tensor *am = nn_batchnorm2d_running_mean(a.bn), *av = nn_batchnorm2d_running_var(a.bn);
    cr_assert_neq(ag_get(am, 0), 0.0, "training moved the statistics");
    char err[512];
    cr_assert_eq(nn_model_save(a.m, path, err, sizeof err), AG_OK, "%s", err);

    cnn b = cnn_make(99);   /* other weights, fresh statistics */
    cr_assert_eq(nn_model_load(b.m, path, err, sizeof err), AG_OK, "%s", err);
    expect_same_bits(am, nn_batchnorm2d_running_mean(b.bn));
    expect_same_bits(av, nn_batchnorm2d_running_var(b.bn));
    expect_same_bits(nn_conv2d_weight(a.conv), nn_conv2d_weight(b.conv));
    /* evaluation then gives the same bits */
    nn_model_set_training(a.m, 0);
    nn_model_set_training(b.m, 0);
    ag_tape *t = ag_tape_new();
    ag_tensor *la = cnn_loss(t, &a, 7), *lb = cnn_loss(t, &b, 7);
    cr_expect_eq(ag_item(la), ag_item(lb));
    ag_tape_free(t);
    nn_model_free(b.m);

    /* a model with only buffers (batch norm without the affine part) too */
    nn_model *p = nn_model_new(NULL, NULL);
    nn_batchnorm2d *pb = nn_batchnorm2d_new(p, "bn", AG_F64, 2, 0.1, 1e-5, 0);
    ag_set(nn_batchnorm2d_running_mean(pb), 1, 0.75);
    cr_assert_eq(nn_model_save(p, path, err, sizeof err), AG_OK, "%s", err);
    nn_model *q = nn_model_new(NULL, NULL);
    nn_batchnorm2d *qb = nn_batchnorm2d_new(q, "bn", AG_F64, 2, 0.1, 1e-5, 0);
    cr_assert_eq(nn_model_load(q, path, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(ag_get(nn_batchnorm2d_running_mean(qb), 1), 0.75);
    nn_model_free(p);
    nn_model_free(q);
    nn_model_free(a.m);
}

Test(buffers, checkpoint_round_trip_resumes_the_same_bits)
{
    char path[512];
    fixture_path(path, sizeof path, dir, "ckpt.safetensors");
    char err[512];
    /* one run of 6 steps against 3 steps, a checkpoint, and 3 more */
    cnn a = cnn_make(4);
    nn_optim *oa = nn_adam_new(a.m, 1e-2, 0.9, 0.999, 1e-8, 0);
    cnn b = cnn_make(4);
    nn_optim *ob = nn_adam_new(b.m, 1e-2, 0.9, 0.999, 1e-8, 0);
    ag_tape *t = ag_tape_new();
    for (int s = 0; s < 6; s++) {
        nn_model_zero_grad(a.m);
        ag_backward(t, cnn_loss(t, &a, 200 + (uint64_t)s));
        nn_optim_step(oa);
        ag_tape_reset(t);
    }
    for (int s = 0; s < 3; s++) {
        nn_model_zero_grad(b.m);
        ag_backward(t, cnn_loss(t, &b, 200 + (uint64_t)s));
        nn_optim_step(ob);
        ag_tape_reset(t);
    }
    cr_assert_eq(nn_checkpoint_save(b.m, ob, path, 0, NULL, NULL, err, sizeof err), AG_OK, "%s",
                 err);
    nn_optim_free(ob);
    nn_model_free(b.m);
    cnn c = cnn_make(55);
    nn_optim *oc = nn_adam_new(c.m, 1e-2, 0.9, 0.999, 1e-8, 0);
    cr_assert_eq(nn_checkpoint_load(c.m, oc, path, 0, err, sizeof err), AG_OK, "%s", err);
    for (int s = 3; s < 6; s++) {
        nn_model_zero_grad(c.m);
        ag_backward(t, cnn_loss(t, &c, 200 + (uint64_t)s));
        nn_optim_step(oc);
        ag_tape_reset(t);
    }
    expect_same_bits(nn_batchnorm2d_running_mean(a.bn), nn_batchnorm2d_running_mean(c.bn));
    expect_same_bits(nn_batchnorm2d_running_var(a.bn), nn_batchnorm2d_running_var(c.bn));
    expect_same_bits(nn_conv2d_weight(a.conv), nn_conv2d_weight(c.conv));
    expect_same_bits(nn_batchnorm2d_weight(a.bn), nn_batchnorm2d_weight(c.bn));
    /* the optimizer's state has no entries for buffers */
    nn_safetensors *f = NULL;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_expect_geq(nn_safetensors_find(f, "bn.running_var"), 0);
    cr_expect_geq(nn_safetensors_find(f, "optim.bn.weight.exp_avg"), 0);
    cr_expect_lt(nn_safetensors_find(f, "optim.bn.running_var.exp_avg"), 0);
    nn_safetensors_close(f);
    ag_tape_free(t);
    nn_optim_free(oa);
    nn_optim_free(oc);
    nn_model_free(a.m);
    nn_model_free(c.m);
}

/* ------------------------------------------------ files written elsewhere */

typedef struct entry {
    const char *name, *dtype;
    int rank;
    int64_t shape[4];
    const void *data;
    size_t bytes;
} entry;

/* A safetensors file of the given entries, as any writer may lay it out. */
static void write_safetensors(const char *path, int n, const entry *e)
{
    char header[4096];
    size_t len = 0, off = 0;
    len += (size_t)snprintf(header + len, sizeof header - len, "{");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                                e[i].name, e[i].dtype);
        for (int d = 0; d < e[i].rank; d++)
            len += (size_t)snprintf(header + len, sizeof header - len, "%s%lld", d ? "," : "",
                                    (long long)e[i].shape[d]);
        len += (size_t)snprintf(header + len, sizeof header - len,
                                "],\"data_offsets\":[%zu,%zu]}", off, off + e[i].bytes);
        off += e[i].bytes;
    }
    len += (size_t)snprintf(header + len, sizeof header - len, "}");
    while (len % 8)
        header[len++] = ' ';
    unsigned char *blob = malloc(8 + len + off);
    cr_assert_not_null(blob);
    for (int i = 0; i < 8; i++)
        blob[i] = (unsigned char)((uint64_t)len >> (8 * i));
    memcpy(blob + 8, header, len);
    size_t at = 8 + len;
    for (int i = 0; i < n; i++) {
        memcpy(blob + at, e[i].data, e[i].bytes);   /* little-endian host */
        at += e[i].bytes;
    }
    cr_assert(write_bytes(path, blob, at));
    free(blob);
}

/* What torch.nn.Sequential-free code like
**     conv = nn.Conv2d(1, 2, 3, padding=1); bn = nn.BatchNorm2d(2)
** gives as a state dict under the prefixes "conv." and "bn.": PyTorch's
** order, its int64 num_batches_tracked included. */
Test(buffers, loads_a_file_with_pytorchs_names)
{
    char path[512];
    fixture_path(path, sizeof path, dir, "torch.safetensors");
    static float cw[18], cb[2] = {0.5f, -0.5f}, bw[2] = {2, 3}, bb[2] = {0.25f, 0.75f},
                         rm[2] = {0.125f, -1.5f}, rv[2] = {4.0f, 0.0625f};
    for (int i = 0; i < 18; i++)
        cw[i] = (float)i / 16;
    int64_t tracked = 1234;
    entry e[] = {
        {"conv.weight", "F32", 4, {2, 1, 3, 3}, cw, sizeof cw},
        {"conv.bias", "F32", 1, {2}, cb, sizeof cb},
        {"bn.weight", "F32", 1, {2}, bw, sizeof bw},
        {"bn.bias", "F32", 1, {2}, bb, sizeof bb},
        {"bn.running_mean", "F32", 1, {2}, rm, sizeof rm},
        {"bn.running_var", "F32", 1, {2}, rv, sizeof rv},
        {"bn.num_batches_tracked", "I64", 0, {0}, &tracked, sizeof tracked},
    };
    write_safetensors(path, 7, e);
    cnn c = cnn_make(5);
    char err[512];
    cr_assert_eq(nn_model_load(c.m, path, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(ag_get(nn_conv2d_weight(c.conv), 17), 17.0 / 16);
    cr_expect_eq(ag_get(nn_batchnorm2d_running_mean(c.bn), 1), -1.5);
    cr_expect_eq(ag_get(nn_batchnorm2d_running_var(c.bn), 0), 4.0);
    cr_expect_eq(ag_get(nn_batchnorm2d_weight(c.bn), 1), 3.0);
    /* evaluation uses them: channel 1 of a zero image after the conv is its
    ** bias -0.5: (-0.5 + 1.5) / sqrt(0.0625 + 1e-5) * 3 + 0.75 */
    nn_model_set_training(c.m, 0);
    ag_tape *t = ag_tape_new();
    ag_tensor *y = nn_batchnorm2d_forward(
        t, c.bn, nn_conv2d_forward(t, c.conv, ag_zeros(t, AG_F32, 4, (int64_t[]){1, 1, 2, 2})));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_float_eq(ag_get(y, 4), 1.0 / sqrt(0.0625 + 1e-5) * 3 + 0.75, 1e-5);
    ag_tape_free(t);
    nn_model_free(c.m);

    /* a count whose layer the model lacks is an extra tensor like any other */
    nn_model *m = nn_model_new(NULL, NULL);
    nn_conv2d_new(m, "conv", AG_F32, 1, 2, 3, 1, 1, 1, 1, 1);
    nn_batchnorm2d_new(m, "other", AG_F32, 2, 0.1, 1e-5, 1);
    cr_expect_eq(nn_model_load_flags(m, path, NN_LOAD_ALLOW_MISSING, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "5 extra tensors"), "the count is one of them: %s", err);
    nn_model_free(m);
}

/* A file saved before the model had buffers (its parameters alone): the
** strict load names what is missing; NN_LOAD_ALLOW_MISSING loads it and
** leaves the statistics as they are. */
Test(buffers, a_file_without_them)
{
    char path[512], err[512];
    fixture_path(path, sizeof path, dir, "old.safetensors");
    cnn a = cnn_make(6);
    int np = nn_model_num_params(a.m);
    const char *names[8];
    ag_tensor *params[8];
    for (int i = 0; i < np; i++) {
        params[i] = nn_model_param(a.m, i);
        names[i] = ag_name(params[i]);
    }
    cr_assert_eq(nn_safetensors_save(path, np, names, params, NULL, NULL, err, sizeof err), AG_OK,
                 "%s", err);
    cnn b = cnn_make(7);
    ag_set(nn_batchnorm2d_running_mean(b.bn), 0, 0.5);
    float w0 = (float)ag_get(nn_conv2d_weight(b.conv), 0);
    cr_expect_eq(nn_model_load(b.m, path, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "nn_model_load") && strstr(err, "2 tensors") &&
              strstr(err, "'bn.running_mean', 'bn.running_var'") &&
              strstr(err, "NN_LOAD_ALLOW_MISSING"), "%s", err);
    cr_expect_eq((float)ag_get(nn_conv2d_weight(b.conv), 0), w0, "a failed load changes nothing");
    cr_assert_eq(nn_model_load_flags(b.m, path, NN_LOAD_ALLOW_MISSING, err, sizeof err), AG_OK,
                 "%s", err);
    expect_same_bits(nn_conv2d_weight(a.conv), nn_conv2d_weight(b.conv));
    cr_expect_eq(ag_get(nn_batchnorm2d_running_mean(b.bn), 0), 0.5);
    cr_expect_eq(ag_get(nn_batchnorm2d_running_var(b.bn), 0), 1.0);

    /* a buffer of the wrong shape: refused, nothing changed */
    static float three[3] = {1, 2, 3}, two[2] = {1, 1};
    entry e[] = {
        {"conv.weight", "F32", 4, {2, 1, 3, 3}, (float[18]){0}, 18 * sizeof(float)},
        {"conv.bias", "F32", 1, {2}, two, sizeof two},
        {"bn.weight", "F32", 1, {2}, two, sizeof two},
        {"bn.bias", "F32", 1, {2}, two, sizeof two},
        {"bn.running_mean", "F32", 1, {3}, three, sizeof three},
        {"bn.running_var", "F32", 1, {2}, two, sizeof two},
    };
    write_safetensors(path, 6, e);
    cr_expect_eq(nn_model_load(b.m, path, err, sizeof err), AG_ESHAPE);
    cr_expect(strstr(err, "'bn.running_mean' is F32 [3] in the file, F32 [2] in the model"), "%s",
              err);
    cr_expect_eq(ag_get(nn_batchnorm2d_running_mean(b.bn), 0), 0.5);
    expect_same_bits(nn_conv2d_weight(a.conv), nn_conv2d_weight(b.conv));
    nn_model_free(a.m);
    nn_model_free(b.m);
}

/* Building a model with buffers when memory runs out at any request: the
** model records AG_ENOMEM naming the function, nothing leaks, and a model
** built with every request granted has its statistics in place. */
Test(buffers, out_of_memory_while_building)
{
    long total = 0;
    for (long k = 1;; k++) {
        alloc_hooks h = hooks_failing_at(k);
        nn_model *m = nn_model_new(hook_alloc, &h);
        if (m) {
            nn_conv2d_new(m, "conv", AG_F32, 1, 2, 3, 1, 1, 1, 1, 1);
            nn_batchnorm2d *bn = nn_batchnorm2d_new(m, "bn", AG_F32, 40, 0.1, 1e-5, 1);
            nn_batchnorm2d *bn2 = nn_batchnorm2d_new(m, "bn2", AG_F32, 40, 0.1, 1e-5, 0);
            if (h.refused) {
                cr_expect_eq(nn_model_status(m), AG_ENOMEM, "request %ld: %s", k,
                             nn_model_errmsg(m));
                cr_expect(strstr(nn_model_errmsg(m), "out of memory"), "%s", nn_model_errmsg(m));
            } else {
                cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
                cr_expect_eq(ag_get(nn_batchnorm2d_running_var(bn), 39), 1.0);
                cr_expect_eq(ag_get(nn_batchnorm2d_running_var(bn2), 39), 1.0);
                cr_expect_eq(ag_get(nn_batchnorm2d_running_mean(bn2), 0), 0.0);
            }
            nn_model_free(m);
        }
        cr_assert_eq(h.live, 0, "request %ld refused: %ld blocks leaked", k, h.live);
        cr_assert_eq(h.bad_osize, 0);
        if (!h.refused) {
            total = k;
            break;
        }
    }
    cr_expect_gt(total, 8, "the sweep reached every request");
}
