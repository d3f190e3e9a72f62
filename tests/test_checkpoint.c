/*
** test_checkpoint.c: training checkpoints (nn/checkpoint.c). A run saved
** midway and resumed gives the bits of a run never interrupted, for every
** optimizer and with dropout drawing from the model's generator; loads are
** strict unless asked, and say what is missing or extra.
*/
#include "io_fixtures.h"   /* first: it sets _POSIX_C_SOURCE */

#include "nn.h"

#include <criterion/criterion.h>
#include <string.h>

typedef nn_optim *(*make_optim)(nn_model *m);

static nn_optim *make_sgd(nn_model *m) { return nn_sgd_new(m, 0.05, 0.9, 1e-3, 1); }
static nn_optim *make_adam(nn_model *m) { return nn_adam_new(m, 1e-2, 0.9, 0.999, 1e-8, 0); }
static nn_optim *make_adamw(nn_model *m) { return nn_adamw_new(m, 1e-2, 0.9, 0.99, 1e-8, 0.01); }
static nn_optim *make_rmsprop(nn_model *m) { return nn_rmsprop_new(m, 1e-3, 0.99, 1e-8, 0.5, 0); }
static nn_optim *make_adagrad(nn_model *m) { return nn_adagrad_new(m, 0.1, 1e-10, 0); }

typedef struct run {
    nn_model *m;
    nn_mlp *net;
    nn_optim *o;
    ag_tape *t;
} run;

/* A 3-8-2 MLP with dropout, seeded, and its optimizer. */
static void run_make(run *r, make_optim make)
{
    r->m = nn_model_new(NULL, NULL);
    nn_model_seed(r->m, 7);
    r->net = nn_mlp_new(r->m, "net", AG_F32, 3, (int64_t[]){3, 8, 2}, NN_TANH);
    nn_mlp_set_dropout(r->net, 0.25);
    r->o = make(r->m);
    r->t = ag_tape_new();
    cr_assert_eq(nn_model_status(r->m), AG_OK, "%s", nn_model_errmsg(r->m));
}

static void run_free(run *r)
{
    nn_optim_free(r->o);
    ag_tape_free(r->t);
    nn_model_free(r->m);
}

/* Steps [from, to) on a fixed batch that depends on the step. */
static void train(run *r, int from, int to)
{
    for (int s = from; s < to; s++) {
        float x[12], y[8];
        for (int i = 0; i < 12; i++)
            x[i] = (float)((i * 7 + s * 3) % 11) / 5.0f - 1.0f;
        for (int i = 0; i < 8; i++)
            y[i] = (float)((i + s) % 3) - 1.0f;
        ag_tensor *xt = ag_tensor_from(r->t, AG_F32, 2, (int64_t[]){4, 3}, x);
        ag_tensor *yt = ag_tensor_from(r->t, AG_F32, 2, (int64_t[]){4, 2}, y);
        ag_tensor *loss = nn_mse_loss(r->t, nn_mlp_forward(r->t, r->net, xt), yt, NN_REDUCE_MEAN);
        nn_model_zero_grad(r->m);
        ag_backward(r->t, loss);
        cr_assert_eq(ag_tape_status(r->t), AG_OK, "%s", ag_tape_errmsg(r->t));
        nn_optim_step(r->o);
        ag_tape_reset(r->t);
    }
}

static void expect_resume_is_exact(make_optim make, const char *name)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "train.safetensors");

    run whole, first, resumed;
    run_make(&whole, make);
    train(&whole, 0, 20);

    run_make(&first, make);
    train(&first, 0, 8);
    const char *keys[] = {"epoch"}, *values[] = {"3"};
    cr_assert_eq(nn_checkpoint_save(first.m, first.o, path, 1, keys, values, err, sizeof err),
                 AG_OK, "%s: %s", name, err);

    run_make(&resumed, make);   /* a new process would start like this */
    cr_assert_eq(nn_checkpoint_load(resumed.m, resumed.o, path, 0, err, sizeof err), AG_OK,
                 "%s: %s", name, err);
    cr_assert_eq(nn_optim_steps(resumed.o), 8, "%s", name);
    train(&resumed, 8, 20);

    size_t bytes = (size_t)nn_model_numel(whole.m) * sizeof(float);
    cr_expect(memcmp(nn_model_values(whole.m), nn_model_values(resumed.m), bytes) == 0,
              "%s: a resumed run differs from an uninterrupted one", name);

    /* Without the optimizer's state the run drifts: the test can tell. */
    run cold;
    run_make(&cold, make);
    cr_assert_eq(nn_model_load(cold.m, path, err, sizeof err), AG_OK, "%s", err);
    train(&cold, 8, 20);
    if (strcmp(name, "sgd-without-state") != 0)
        cr_expect(memcmp(nn_model_values(whole.m), nn_model_values(cold.m), bytes) != 0,
                  "%s: weights alone resumed exactly too; the test proves nothing", name);

    /* The file stays an ordinary checkpoint: the state is tensors, the rest metadata. */
    nn_safetensors *f = NULL;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_expect_str_eq(nn_safetensors_metadata_get(f, "optim"), nn_optim_name(whole.o));
    cr_expect_str_eq(nn_safetensors_metadata_get(f, "optim.steps"), "8");
    cr_expect_str_eq(nn_safetensors_metadata_get(f, "epoch"), "3");
    cr_expect(nn_safetensors_metadata_get(f, "model.rng"));
    nn_safetensors_close(f);

    run_free(&whole), run_free(&first), run_free(&resumed), run_free(&cold);
    remove_dir(dir);
}

Test(checkpoint, resume_is_bit_exact_for_sgd) { expect_resume_is_exact(make_sgd, "sgd"); }
Test(checkpoint, resume_is_bit_exact_for_adam) { expect_resume_is_exact(make_adam, "adam"); }
Test(checkpoint, resume_is_bit_exact_for_adamw) { expect_resume_is_exact(make_adamw, "adamw"); }
Test(checkpoint, resume_is_bit_exact_for_rmsprop)
{
    expect_resume_is_exact(make_rmsprop, "rmsprop");
}
Test(checkpoint, resume_is_bit_exact_for_adagrad)
{
    expect_resume_is_exact(make_adagrad, "adagrad");
}

Test(checkpoint, state_is_named_as_pytorch_names_it)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "adam.safetensors");
    run r;
    run_make(&r, make_adam);
    train(&r, 0, 2);
    cr_assert_eq(nn_checkpoint_save(r.m, r.o, path, 0, NULL, NULL, err, sizeof err), AG_OK, "%s",
                 err);
    nn_safetensors *f = NULL;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(nn_safetensors_count(f), 3 * 4, "4 parameters, each with exp_avg and exp_avg_sq");
    int i = nn_safetensors_find(f, "optim.net.0.weight.exp_avg_sq");
    cr_assert_geq(i, 0);
    cr_expect_eq(nn_safetensors_entry(f, i)->shape[0], 3);
    cr_expect_eq(nn_safetensors_entry(f, i)->shape[1], 8);
    cr_expect_geq(nn_safetensors_find(f, "optim.net.1.bias.exp_avg"), 0);
    nn_safetensors_close(f);
    run_free(&r);
    remove_dir(dir);
}

Test(checkpoint, loads_are_strict_unless_asked_and_name_what_differs)
{
    char dir[256], small[300], big[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(small, sizeof small, dir, "small.safetensors");
    fixture_path(big, sizeof big, dir, "big.safetensors");

    nn_model *a = nn_model_new(NULL, NULL);
    ag_tensor *wa = nn_param(a, "w", AG_F64, 1, (int64_t[]){2});
    ag_fill_uniform(wa, nn_model_rng(a), 1, 2);
    cr_assert_eq(nn_model_save(a, small, err, sizeof err), AG_OK, "%s", err);
    nn_model *b = nn_model_new(NULL, NULL);
    nn_param(b, "w", AG_F64, 1, (int64_t[]){2});
    ag_tensor *extra = nn_param(b, "scale", AG_F64, 0, NULL);
    ag_set(extra, 0, 5.0);
    cr_assert_eq(nn_model_save(b, big, err, sizeof err), AG_OK, "%s", err);

    /* b from the small file: 'scale' is missing. */
    cr_expect_eq(nn_model_load(b, small, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "nn_model_load") && strstr(err, "missing") && strstr(err, "'scale'"),
              "%s", err);
    cr_expect_eq(nn_model_load_flags(b, small, NN_LOAD_ALLOW_MISSING, err, sizeof err), AG_OK, "%s",
                 err);
    cr_expect_eq(ag_get(nn_model_find(b, "w"), 1), ag_get(wa, 1), "what the file has is loaded");
    cr_expect_eq(ag_item(extra), 5.0, "what it lacks is left alone");

    /* a from the big file: 'scale' is extra. */
    ag_set(wa, 0, -1.0);
    cr_expect_eq(nn_model_load(a, big, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "extra") && strstr(err, "'scale'"), "%s", err);
    cr_expect_eq(ag_get(wa, 0), -1.0, "a refused load changes nothing");
    cr_expect_eq(nn_model_load_flags(a, big, NN_LOAD_ALLOW_EXTRA, err, sizeof err), AG_OK, "%s", err);
    cr_expect_neq(ag_get(wa, 0), -1.0);
    cr_expect_eq(nn_model_load_flags(a, big, 4, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "unknown flags 0x4"), "%s", err);

    /* A shape that differs is named with both shapes. */
    nn_model *c = nn_model_new(NULL, NULL);
    nn_param(c, "w", AG_F64, 1, (int64_t[]){3});
    cr_expect_eq(nn_model_load(c, small, err, sizeof err), AG_ESHAPE);
    cr_expect(strstr(err, "'w' is F64 [2] in the file, F64 [3] in the model"), "%s", err);

    nn_model_free(a), nn_model_free(b), nn_model_free(c);
    remove_dir(dir);
}

Test(checkpoint, an_optimizer_of_another_kind_or_none_is_refused)
{
    char dir[256], path[300], plain[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "adam.safetensors");
    fixture_path(plain, sizeof plain, dir, "plain.safetensors");
    run r, s;
    run_make(&r, make_adam);
    train(&r, 0, 3);
    cr_assert_eq(nn_checkpoint_save(r.m, r.o, path, 0, NULL, NULL, err, sizeof err), AG_OK, "%s",
                 err);
    cr_assert_eq(nn_model_save(r.m, plain, err, sizeof err), AG_OK, "%s", err);
    run_make(&s, make_sgd);
    cr_expect_eq(nn_checkpoint_load(s.m, s.o, path, 0, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "an adam optimizer, not of sgd") || strstr(err, "missing"), "%s", err);
    cr_expect_eq(nn_checkpoint_load(r.m, r.o, plain, 0, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "missing"), "%s", err);
    cr_expect_eq(nn_checkpoint_load(r.m, r.o, plain, NN_LOAD_ALLOW_MISSING, err, sizeof err), AG_OK,
                 "%s", err);
    cr_expect_eq(nn_optim_steps(r.o), 3, "no state in the file: the optimizer keeps its own");

    /* The checkpoint's own metadata keys are refused from the caller. */
    const char *keys[] = {"optim.steps"}, *values[] = {"9"};
    cr_expect_eq(nn_checkpoint_save(r.m, r.o, path, 1, keys, values, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "'optim.steps' is the checkpoint's own"), "%s", err);
    /* An optimizer of another model. */
    cr_expect_eq(nn_checkpoint_save(r.m, s.o, path, 0, NULL, NULL, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "another model"), "%s", err);
    run_free(&r), run_free(&s);
    remove_dir(dir);
}

Test(checkpoint, generators_round_trip_through_text)
{
    ag_rng a, b;
    ag_rng_seed(&a, 99);
    ag_rng_normal(&a);   /* leaves a spare normal variate */
    char text[NN_RNG_CHARS];
    cr_assert_eq(nn_rng_format(&a, text, sizeof text), NN_RNG_CHARS - 1);
    cr_assert_eq(nn_rng_parse(&b, text), AG_OK);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(ag_rng_normal(&a), ag_rng_normal(&b));
    ag_rng before = b;
    cr_expect_eq(nn_rng_parse(&b, "0123"), AG_EINVAL);
    text[3] = 'G';
    cr_expect_eq(nn_rng_parse(&b, text), AG_EINVAL);
    /* Field by field: the struct's padding is never written. */
    cr_expect(memcmp(before.s, b.s, sizeof b.s) == 0 && before.has_spare == b.has_spare &&
                  memcmp(&before.spare, &b.spare, sizeof b.spare) == 0,
              "a refused text changes nothing");
    cr_expect_eq(nn_rng_parse(NULL, text), AG_EINVAL);
    cr_expect_eq(nn_rng_format(NULL, text, sizeof text), -1);
}

/* A spare normal variate that is an infinity or a NaN (no text of
** nn_rng_format holds one) was taken, and came out of the next
** ag_rng_normal: a tampered "model.rng" put it into the next draw. */
Test(checkpoint, a_generator_with_a_non_finite_spare_is_refused)
{
    ag_rng a, b;
    ag_rng_seed(&a, 5);
    ag_rng_normal(&a);   /* leaves a spare */
    char text[NN_RNG_CHARS];
    cr_assert_eq(nn_rng_format(&a, text, sizeof text), NN_RNG_CHARS - 1);
    cr_assert_eq(text[65], '1');
    static const char *const bits[] = {"7ff0000000000000", "fff0000000000000", "7ff8000000000000",
                                       "fff0000000000001"};
    for (size_t i = 0; i < sizeof bits / sizeof bits[0]; i++) {
        memcpy(text + 67, bits[i], 16);
        ag_rng_seed(&b, 1);
        ag_rng before = b;
        cr_expect_eq(nn_rng_parse(&b, text), AG_EINVAL, "spare %s", bits[i]);
        cr_expect(memcmp(before.s, b.s, sizeof b.s) == 0 && before.has_spare == b.has_spare,
                  "a refused text changes nothing");
    }
    /* Unused (no spare pending), the bits are not read, and load. */
    text[65] = '0';
    cr_expect_eq(nn_rng_parse(&b, text), AG_OK);
    cr_expect_eq(b.has_spare, 0);
    /* A finite spare loads and is the next draw. */
    text[65] = '1';
    memcpy(text + 67, "3ff8000000000000", 16);   /* 1.5 */
    cr_expect_eq(nn_rng_parse(&b, text), AG_OK);
    cr_expect_eq(ag_rng_normal(&b), 1.5);
}

/* Rewrites the file at 'path' with its metadata 'key' set to 'value', the
** tensors as they were: a checkpoint another program has tampered with. */
static void set_metadata(const char *path, const char *key, const char *value)
{
    char err[512];
    nn_safetensors *f;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    int n = nn_safetensors_count(f), nmeta = nn_safetensors_metadata_count(f);
    const char **names = calloc((size_t)n + 1, sizeof *names);
    ag_tensor **tensors = calloc((size_t)n + 1, sizeof *tensors);
    const char **keys = calloc((size_t)nmeta + 1, sizeof *keys);
    const char **values = calloc((size_t)nmeta + 1, sizeof *values);
    cr_assert(names && tensors && keys && values);
    for (int i = 0; i < n; i++) {
        const nn_safetensors_info *e = nn_safetensors_entry(f, i);
        names[i] = e->name;
        tensors[i] = ag_param_new(strcmp(e->dtype, "F64") ? AG_F32 : AG_F64, e->rank, e->shape);
        cr_assert_eq(nn_safetensors_read(f, i, tensors[i], err, sizeof err), AG_OK, "%s", err);
    }
    for (int i = 0; i < nmeta; i++) {
        keys[i] = nn_safetensors_metadata_key(f, i);
        values[i] = strcmp(keys[i], key) ? nn_safetensors_metadata_value(f, i) : value;
    }
    cr_assert_eq(nn_safetensors_save_meta(path, n, names, tensors, nmeta, keys, values, NULL, NULL, err,
                                          sizeof err),
                 AG_OK, "%s", err);
    for (int i = 0; i < n; i++)
        ag_param_free(tensors[i]);
    nn_safetensors_close(f);
    free(names), free(tensors), free(keys), free(values);
}

/* A tampered "optim.steps": strtoll took "99999999999999999999" as
** INT64_MAX (ERANGE went unseen), and so "9223372036854775807" itself; the
** next nn_optim_step then overflowed the signed step counter. A sign or
** blanks passed too. Only digits up to 2^53 load; the rest is refused by
** name and changes nothing. */
Test(checkpoint, a_step_count_not_plain_digits_or_past_2_53_is_refused)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "adam.safetensors");
    run r;
    run_make(&r, make_adam);
    train(&r, 0, 3);
    cr_assert_eq(nn_checkpoint_save(r.m, r.o, path, 0, NULL, NULL, err, sizeof err), AG_OK, "%s", err);
    static const char *const bad[] = {"9223372036854775807", "99999999999999999999", "9007199254740993",
                                      "-1", "+5", " 5", "5 ", "", "0x10", "1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_metadata(path, "optim.steps", bad[i]);
        run s;
        run_make(&s, make_adam);
        size_t bytes = (size_t)nn_model_numel(s.m) * sizeof(float);
        float *before = malloc(bytes);
        cr_assert(before);
        memcpy(before, nn_model_values(s.m), bytes);
        cr_expect_eq(nn_checkpoint_load(s.m, s.o, path, 0, err, sizeof err), AG_EINVAL, "'%s'", bad[i]);
        char want[128];
        snprintf(want, sizeof want, "optim.steps '%s' is not a step count", bad[i]);
        cr_expect(strncmp(err, "nn_checkpoint_load: ", 20) == 0 && strstr(err, want), "%s", err);
        cr_expect_eq(nn_optim_steps(s.o), 0, "'%s'", bad[i]);
        cr_expect(memcmp(before, nn_model_values(s.m), bytes) == 0, "'%s' changed the weights", bad[i]);
        free(before);
        run_free(&s);
    }
    /* 2^53 itself loads, and the counter goes on from it. */
    set_metadata(path, "optim.steps", "9007199254740992");
    run s;
    run_make(&s, make_adam);
    cr_assert_eq(nn_checkpoint_load(s.m, s.o, path, 0, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(nn_optim_steps(s.o), INT64_C(9007199254740992));
    train(&s, 3, 4);
    cr_expect_eq(nn_optim_steps(s.o), INT64_C(9007199254740993));
    run_free(&s), run_free(&r);
    remove_dir(dir);
}

/* A corrupt file gave nn_model_load's caller "nn_safetensors_open: ...",
** naming a function it never called (the saves named theirs). */
Test(checkpoint, a_bad_file_is_named_by_the_function_called)
{
    char dir[256], path[300], err[512];
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(path, sizeof path, dir, "short.safetensors");
    cr_assert(write_text(path, "abcd"));
    nn_model *m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F32, 1, (int64_t[]){2});
    nn_optim *o = nn_sgd_new(m, 0.1, 0, 0, 0);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    char want[400];
    snprintf(want, sizeof want, "nn_safetensors_open: %s: truncated: the file has 4 bytes", path);

    cr_expect_eq(nn_model_load(m, path, err, sizeof err), AG_EIO);
    cr_expect(strncmp(err, "nn_model_load: ", 15) == 0 && strstr(err, want), "%s", err);
    cr_expect_eq(nn_model_load_flags(m, path, NN_LOAD_ALLOW_MISSING, err, sizeof err), AG_EIO);
    cr_expect(strncmp(err, "nn_model_load_flags: ", 21) == 0 && strstr(err, want), "%s", err);
    cr_expect_eq(nn_checkpoint_load(m, o, path, 0, err, sizeof err), AG_EIO);
    cr_expect(strncmp(err, "nn_checkpoint_load: ", 20) == 0 && strstr(err, want), "%s", err);
    /* A directory, likewise. */
    cr_expect_eq(nn_model_load(m, dir, err, sizeof err), AG_EIO);
    cr_expect(strncmp(err, "nn_model_load: ", 15) == 0 && strstr(err, "is a directory"), "%s", err);
    nn_optim_free(o);
    nn_model_free(m);
    remove_dir(dir);
}
