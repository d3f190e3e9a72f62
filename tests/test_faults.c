/*
** test_faults.c: failure injection across whole workflows, through the one
** allocator hook (tests/alloc_hooks.h) and a file-size limit that makes
** writes fail as on a full disk. Each refused request must give a clean
** error (a status and a message), leak nothing, never crash, and leave what
** was there before (weights, the previous checkpoint) intact. The single
** readers and writers have their own loops in test_safetensors.c,
** test_idx.c, test_csv.c, test_dataset.c, test_memory.c and test_dot.c;
** these tests chain them as a program does.
*/
#include "io_fixtures.h"

#include "alloc_hooks.h"
#include "nn.h"
#include "synthetic_idx.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

enum { SIDE = 8, PIXELS = SIDE * SIDE, HIDDEN = 16, BATCH = 16, SAMPLES = 64, STEPS = 2 };

static char dir[512], images[600], labels[600], ckpt[600];
static char err[512];

static void make_dir(void)
{
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(images, sizeof images, dir, "images.idx");
    fixture_path(labels, sizeof labels, dir, "labels.idx");
    fixture_path(ckpt, sizeof ckpt, dir, "model.safetensors");
    cr_assert(synth_write_idx(images, labels, SAMPLES, SIDE, SIDE));
}

static void drop_dir(void) { remove_dir(dir); }

static void expect_clean(const alloc_hooks *h, long k)
{
    cr_assert_eq(h->live, 0, "request %ld refused: %ld blocks (%zu bytes) leaked", k, h->live,
                 h->live_bytes);
    cr_assert_eq(h->bad_osize, 0, "request %ld refused: a wrong osize was passed back", k);
}

/* ------------------------------------------------------ a training run */

/* Everything a training program holds, all allocated through one hook. */
typedef struct pipeline {
    nn_dataset *ds;
    nn_model *m;
    nn_mlp *net;
    nn_optim *opt;
    nn_loader *ld;
    ag_tape *t;
} pipeline;

/* Where a run stopped: the stage whose allocation was refused. */
typedef enum stage { STAGE_DATA, STAGE_MODEL, STAGE_LOADER, STAGE_TAPE, STAGE_STEP, STAGE_COUNT } stage;

static const char *const stage_names[STAGE_COUNT] = {"data", "model", "loader", "tape", "step"};

static nn_optim *make_optimizer(nn_model *m) { return nn_adam_new(m, 1e-2, 0.9, 0.999, 1e-8, 0.0); }

/* Builds the pipeline through h. Returns STAGE_STEP when all is built, or
** the stage that failed, with its status in '*st' and its message in '*msg'. */
static stage build(pipeline *p, alloc_hooks *h, ag_status *st, const char **msg)
{
    memset(p, 0, sizeof *p);
    *msg = err;
    *st = nn_idx_load(images, labels, AG_F32, hook_alloc, h, &p->ds, err, sizeof err);
    if (*st != AG_OK)
        return STAGE_DATA;
    cr_assert_eq(nn_dataset_reshape(p->ds, 1, (int64_t[]){PIXELS}, err, sizeof err), AG_OK);
    p->m = nn_model_new(hook_alloc, h);
    if (!p->m) {
        *st = AG_ENOMEM;
        *msg = "out of memory (nn_model_new returned NULL)";
        return STAGE_MODEL;
    }
    nn_model_seed(p->m, 7);
    p->net = nn_mlp_new(p->m, "mlp", AG_F32, 3, (int64_t[]){PIXELS, HIDDEN, SYNTH_CLASSES},
                        NN_RELU);
    p->opt = make_optimizer(p->m);
    if ((*st = nn_model_status(p->m)) != AG_OK) {
        *msg = nn_model_errmsg(p->m);
        return STAGE_MODEL;
    }
    *st = nn_loader_new(p->ds, BATCH, 0, 0, NULL, hook_alloc, h, &p->ld, err, sizeof err);
    if (*st != AG_OK)
        return STAGE_LOADER;
    p->t = ag_tape_new_alloc(hook_alloc, h);
    if (!p->t) {
        *st = AG_ENOMEM;
        *msg = "out of memory (ag_tape_new_alloc returned NULL)";
        return STAGE_TAPE;
    }
    return STAGE_STEP;
}

/* STEPS steps of training; on a tape error, stops before the optimizer
** touches the weights (as a program that checks the status does). */
static ag_status train(pipeline *p)
{
    for (int s = 0; s < STEPS; s++) {
        nn_batch b;
        if (!nn_loader_next(p->ld, p->t, &b))
            return ag_tape_status(p->t) != AG_OK ? ag_tape_status(p->t) : AG_ESTATE;
        ag_tensor *logits = nn_mlp_forward(p->t, p->net, b.x);
        ag_tensor *loss = nn_cross_entropy_loss(p->t, logits, b.labels, 0, NN_REDUCE_MEAN);
        nn_model_zero_grad(p->m);
        ag_backward(p->t, loss);
        if (ag_tape_status(p->t) != AG_OK)
            return ag_tape_status(p->t);
        nn_optim_step(p->opt);
        ag_tape_reset(p->t);
    }
    return nn_model_status(p->m);
}

static void free_pipeline(pipeline *p)
{
    nn_loader_free(p->ld);
    ag_tape_free(p->t);
    nn_optim_free(p->opt);
    nn_model_free(p->m);
    nn_dataset_free(p->ds);
}

static size_t weight_bytes(nn_model *m)
{
    return (size_t)nn_model_numel(m) * ag_dtype_size(nn_model_dtype(m));
}

Test(faults, a_training_run_fails_cleanly_at_every_allocation, .init = make_dir, .fini = drop_dir)
{
    /* The reference: initial and final weights, and the number of requests. */
    alloc_hooks clean = hooks_counting();
    pipeline p;
    ag_status st;
    const char *msg;
    cr_assert_eq(build(&p, &clean, &st, &msg), STAGE_STEP, "%s", msg);
    size_t bytes = weight_bytes(p.m);
    float *initial = malloc(bytes), *want = malloc(bytes), *before = malloc(bytes);
    cr_assert(initial && want && before);
    memcpy(initial, nn_model_values(p.m), bytes);
    cr_assert_eq(train(&p), AG_OK, "%s", ag_tape_errmsg(p.t));
    memcpy(want, nn_model_values(p.m), bytes);
    cr_assert(memcmp(want, initial, bytes) != 0, "training changed the weights");
    long total = clean.requests;
    free_pipeline(&p);
    expect_clean(&clean, 0);

    int seen[STAGE_COUNT] = {0};
    for (long k = 1; k <= total; k++) {
        alloc_hooks h = hooks_failing_at(k);
        stage s = build(&p, &h, &st, &msg);
        if (s == STAGE_STEP) {
            memcpy(before, nn_model_values(p.m), bytes);
            st = train(&p);
            msg = ag_tape_errmsg(p.t);
        }
        cr_assert_eq(h.refused, 1, "request %ld of %ld was never made", k, total);
        cr_assert_eq(st, AG_ENOMEM, "request %ld (%s): %s", k, stage_names[s], msg);
        cr_assert(strstr(msg, "out of memory"), "request %ld (%s): %s", k, stage_names[s], msg);
        seen[s]++;
        if (s == STAGE_STEP) {
            /* The failed step left the weights alone, and the same objects
            ** finish the run once memory is back: the same bits. */
            cr_assert(memcmp(before, nn_model_values(p.m), bytes) == 0, "request %ld", k);
            ag_tape_reset(p.t);
            nn_loader_rewind(p.ld);
            memcpy(nn_model_values(p.m), initial, bytes);
            nn_optim_free(p.opt);
            p.opt = make_optimizer(p.m);
            cr_assert_eq(train(&p), AG_OK, "request %ld: %s", k, ag_tape_errmsg(p.t));
            cr_assert(memcmp(want, nn_model_values(p.m), bytes) == 0,
                      "request %ld: the recovered run differs", k);
        }
        free_pipeline(&p);
        expect_clean(&h, k);
    }
    for (int s = 0; s < STAGE_COUNT; s++)
        cr_expect_gt(seen[s], 0, "no refusal fell in stage '%s'", stage_names[s]);
    free(initial);
    free(want);
    free(before);
}

/* ---------------------------------------------------------- checkpoints */

/* A small model on hook h (or malloc when NULL) whose weights are
** base, base + 1, ... */
static nn_model *checkpoint_model(alloc_hooks *h, float base)
{
    nn_model *m = nn_model_new(h ? hook_alloc : NULL, h);
    cr_assert_not_null(m);
    nn_mlp_new(m, "mlp", AG_F32, 3, (int64_t[]){PIXELS, HIDDEN, SYNTH_CLASSES}, NN_TANH);
    nn_param(m, "temperature", AG_F32, 0, NULL);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    float *v = nn_model_values(m);
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        v[i] = base + (float)i;
    return m;
}

/* The checkpoint at 'path' loads, into a fresh model, exactly 'base'. */
static void expect_checkpoint_holds(const char *path, float base)
{
    nn_model *m = checkpoint_model(NULL, -1.0f);
    char e[512];
    cr_assert_eq(nn_model_load(m, path, e, sizeof e), AG_OK, "%s", e);
    const float *v = nn_model_values(m);
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        cr_assert_eq(v[i], base + (float)i, "element %lld", (long long)i);
    nn_model_free(m);
}

Test(faults, a_failed_save_keeps_the_previous_checkpoint, .init = make_dir, .fini = drop_dir)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = checkpoint_model(&h, 1.0f);
    cr_assert_eq(nn_model_save(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    float *v = nn_model_values(m);
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        v[i] = 1000.0f + (float)i;
    long first = h.requests;
    cr_assert_eq(nn_model_save(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    long per_save = h.requests - first;
    cr_assert_geq(per_save, 2, "the name list and the writer's buffers");
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        v[i] = 1.0f + (float)i;
    cr_assert_eq(nn_model_save(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        v[i] = 1000.0f + (float)i;

    for (long k = 1; k <= per_save; k++) {
        long live = h.live;
        h.fail_at = h.requests + k;
        ag_status st = nn_model_save(m, ckpt, err, sizeof err);
        cr_assert_eq(h.refused, k, "request %ld of the save was never made", k);
        cr_assert_eq(st, AG_ENOMEM, "request %ld: %s", k, err);
        cr_assert(strstr(err, "nn_") && strstr(err, "out of memory"), "%s", err);
        cr_assert_eq(h.live, live, "request %ld: the save leaked", k);
        cr_assert_eq(dir_entries(dir), 3, "request %ld: a temporary file was left", k);
        cr_assert_eq(nn_model_status(m), AG_OK, "a failed save leaves the model usable");
        expect_checkpoint_holds(ckpt, 1.0f);
    }
    h.fail_at = 0;
    cr_assert_eq(nn_model_save(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    expect_checkpoint_holds(ckpt, 1000.0f);
    nn_model_free(m);
    expect_clean(&h, 0);
}

Test(faults, a_failed_load_changes_no_weight, .init = make_dir, .fini = drop_dir)
{
    nn_model *saved = checkpoint_model(NULL, 5.0f);
    cr_assert_eq(nn_model_save(saved, ckpt, err, sizeof err), AG_OK, "%s", err);
    nn_model_free(saved);

    alloc_hooks h = hooks_counting();
    nn_model *m = checkpoint_model(&h, -7.0f);
    size_t bytes = weight_bytes(m);
    float *mine = malloc(bytes);
    cr_assert_not_null(mine);
    memcpy(mine, nn_model_values(m), bytes);
    long first = h.requests;
    cr_assert_eq(nn_model_load(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    long per_load = h.requests - first;
    cr_assert_geq(per_load, 3, "the name list, the handle, its header and tables");
    memcpy(nn_model_values(m), mine, bytes);

    for (long k = 1; k <= per_load; k++) {
        long live = h.live;
        h.fail_at = h.requests + k;
        ag_status st = nn_model_load(m, ckpt, err, sizeof err);
        cr_assert_eq(st, AG_ENOMEM, "request %ld: %s", k, err);
        cr_assert(strstr(err, "out of memory"), "%s", err);
        cr_assert_eq(h.live, live, "request %ld: the load leaked", k);
        cr_assert(memcmp(mine, nn_model_values(m), bytes) == 0, "request %ld changed weights", k);
        cr_assert_eq(nn_model_status(m), AG_OK);
    }
    h.fail_at = 0;
    cr_assert_eq(nn_model_load(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    cr_assert_float_eq(((const float *)nn_model_values(m))[3], 8.0f, 0);
    expect_checkpoint_holds(ckpt, 5.0f);
    free(mine);
    nn_model_free(m);
    expect_clean(&h, 0);
}

/* Writes past 'limit' bytes fail with EFBIG, as on a full disk. */
static ag_status save_with_file_limit(nn_model *m, rlim_t limit)
{
    struct rlimit old, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = limit;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    ag_status st = nn_model_save(m, ckpt, err, sizeof err);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    return st;
}

Test(faults, a_full_disk_at_any_point_of_a_save_keeps_the_previous_checkpoint,
     .init = make_dir, .fini = drop_dir)
{
    signal(SIGXFSZ, SIG_IGN);
    nn_model *m = checkpoint_model(NULL, 1.0f);
    cr_assert_eq(nn_model_save(m, ckpt, err, sizeof err), AG_OK, "%s", err);
    struct stat st;
    cr_assert_eq(stat(ckpt, &st), 0);
    off_t size = st.st_size;
    cr_assert_gt(size, 4096, "large enough to fail midway through the data");
    float *v = nn_model_values(m);
    for (int64_t i = 0; i < nn_model_numel(m); i++)
        v[i] = -3.0f + (float)i;
    /* The limit falls in the length, the header, the data, the last byte. */
    const rlim_t limits[] = {0, 3, 8, 100, 512, 4096, (rlim_t)size / 2, (rlim_t)size - 1};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        ag_status s = save_with_file_limit(m, limits[i]);
        cr_assert_eq(s, AG_EIO, "limit %lu: %s", (unsigned long)limits[i], err);
        cr_assert(strstr(err, "nn_model_save") || strstr(err, "nn_safetensors_save"), "%s", err);
        cr_assert(strstr(err, strerror(EFBIG)), "the system's reason is given: %s", err);
        cr_assert_eq(dir_entries(dir), 3, "limit %lu: a temporary file was left",
                     (unsigned long)limits[i]);
        expect_checkpoint_holds(ckpt, 1.0f);
    }
    cr_assert_eq(save_with_file_limit(m, (rlim_t)size), AG_OK, "%s", err);
    expect_checkpoint_holds(ckpt, -3.0f);
    nn_model_free(m);
}

/* ------------------------------------------------------------------ DOT */

/* A small neuron on t: tanh(w . x + b), whose graph has a few steps. */
static ag_tensor *neuron(ag_tape *t)
{
    ag_tensor *x = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (double[]){1, -2, 0.5});
    ag_tensor *w = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){3},
                                                   (double[]){0.3, 0.1, -0.7}));
    ag_tensor *b = ag_requires_grad(ag_scalar(t, AG_F64, 0.2));
    ag_set_name(x, "x");
    ag_set_name(w, "w");
    ag_set_name(b, "b");
    ag_tensor *y = ag_tanh(t, ag_add(t, ag_sum(t, ag_mul(t, w, x)), b));
    ag_set_name(y, "y");
    return y;
}

Test(faults, dot_files_fail_cleanly_at_every_allocation, .init = make_dir, .fini = drop_dir)
{
    char path[600], frames_dir[600];
    fixture_path(path, sizeof path, dir, "graph.dot");
    fixture_path(frames_dir, sizeof frames_dir, dir, "frames");
    cr_assert_eq(mkdir(frames_dir, 0755), 0);
    int refusals = 0;
    for (long k = 1;; k++) {
        alloc_hooks h = hooks_counting();
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        cr_assert_not_null(t);
        ag_tensor *y = neuron(t);
        cr_assert_eq(ag_tape_status(t), AG_OK);
        h.fail_at = h.requests + k;
        ag_status s = ag_dot_save(t, y, NULL, path);
        int64_t frames = -1;
        if (s == AG_OK)
            s = ag_dot_save_steps(t, y, NULL, frames_dir, "dot", &frames);
        int refused = h.refused > 0;
        cr_assert_eq(s, refused ? AG_ENOMEM : AG_OK, "request %ld: %s", k, ag_tape_errmsg(t));
        cr_assert_eq(ag_tape_status(t), s);
        if (refused) {
            cr_assert(strstr(ag_tape_errmsg(t), "out of memory"), "%s", ag_tape_errmsg(t));
            /* Nothing half-written: the graph file exists only when complete,
            ** and the frames on disk are the ones reported. */
            struct stat st;
            cr_assert(frames >= 0 || stat(path, &st) != 0, "request %ld: graph.dot left", k);
            if (frames >= 0)
                cr_assert_eq(dir_entries(frames_dir), frames, "request %ld", k);
        }
        ag_tape_free(t);
        expect_clean(&h, k);
        unlink(path);
        remove_dir(frames_dir);
        cr_assert_eq(mkdir(frames_dir, 0755), 0);
        if (!refused) {
            cr_assert_gt(frames, 3);
            break;
        }
        refusals++;
    }
    cr_assert_gt(refusals, 2);
}

Test(faults, a_dot_export_to_a_full_disk_is_an_io_error)
{
    FILE *full = fopen("/dev/full", "w");
    if (!full)
        cr_skip_test("no /dev/full here");
    ag_tape *t = ag_tape_new();
    ag_tensor *y = neuron(t);
    cr_assert_eq(ag_dot_write(t, y, NULL, full), AG_EIO);
    cr_assert(strstr(ag_tape_errmsg(t), "ag_dot_write") && strstr(ag_tape_errmsg(t), strerror(ENOSPC)),
              "%s", ag_tape_errmsg(t));
    fclose(full);
    ag_tape_free(t);
}

Test(faults, a_dot_file_past_a_size_limit_is_an_io_error, .init = make_dir, .fini = drop_dir)
{
    signal(SIGXFSZ, SIG_IGN);
    char path[600];
    fixture_path(path, sizeof path, dir, "graph.dot");
    ag_tape *t = ag_tape_new();
    ag_tensor *y = neuron(t);
    struct rlimit old, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 100;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    ag_status s = ag_dot_save(t, y, NULL, path);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    cr_assert_eq(s, AG_EIO);
    cr_assert(strstr(ag_tape_errmsg(t), "ag_dot_save") && strstr(ag_tape_errmsg(t), "graph.dot"),
              "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}
