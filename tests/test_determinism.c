/*
** test_determinism.c: the same seed gives bit-identical weights after an
** epoch of Fashion-MNIST-style training (a generated IDX data set of 512
** images of 28x28, read by the real reader; the example's 784-256-128-10
** ReLU network, Adam, shuffled mini-batches), run twice, on one thread and
** on thread pools of 2 and 3, whose products split the work differently.
*/
#include "io_fixtures.h"

#include "nn.h"
#include "synthetic_idx.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

enum { SIDE = 28, PIXELS = SIDE * SIDE, SAMPLES = 512, BATCH = 64 };

static char dir[512], images[600], labels[600];

static void make_data(void)
{
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(images, sizeof images, dir, "train-images-idx3-ubyte");
    fixture_path(labels, sizeof labels, dir, "train-labels-idx1-ubyte");
    cr_assert(synth_write_idx(images, labels, SAMPLES, SIDE, SIDE));
}

static void drop_data(void) { remove_dir(dir); }

typedef struct outcome {
    float *weights;      /* malloc'ed */
    size_t bytes;
    double first_loss, last_loss;
} outcome;

/* One epoch from 'seed' with a pool of 'threads' (0: no pool at all). */
static outcome train_epoch(uint64_t seed, int threads)
{
    char err[512];
    nn_dataset *ds;
    cr_assert_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_OK,
                 "%s", err);
    cr_assert_eq(nn_dataset_reshape(ds, 1, (int64_t[]){PIXELS}, err, sizeof err), AG_OK, "%s", err);
    ag_pool *pool = threads ? ag_pool_new(threads) : NULL;
    cr_assert(!threads || ag_pool_size(pool) == threads);
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tape *t = ag_tape_new();
    cr_assert(m && t);
    ag_tape_set_pool(t, pool);
    nn_model_seed(m, seed);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F32, 4,
                             (int64_t[]){PIXELS, 256, 128, SYNTH_CLASSES}, NN_RELU);
    nn_optim *adam = nn_adam_new(m, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    ag_rng order;
    ag_rng_seed(&order, seed + 1);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, BATCH, 1, 0, &order, NULL, NULL, &ld, err, sizeof err), AG_OK,
                 "%s", err);
    outcome out = {0};
    nn_batch b;
    int steps = 0;
    while (nn_loader_next(ld, t, &b)) {
        ag_tensor *loss = nn_cross_entropy_loss(t, nn_mlp_forward(t, net, b.x), b.labels, 0,
                                                NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        if (steps++ == 0)
            out.first_loss = ag_item(loss);
        out.last_loss = ag_item(loss);
        nn_optim_step(adam);
        ag_tape_reset(t);
    }
    cr_assert_eq(steps, SAMPLES / BATCH);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    out.bytes = (size_t)nn_model_numel(m) * sizeof(float);
    out.weights = malloc(out.bytes);
    cr_assert_not_null(out.weights);
    memcpy(out.weights, nn_model_values(m), out.bytes);
    nn_loader_free(ld);
    nn_optim_free(adam);
    ag_tape_free(t);
    ag_pool_free(pool);
    nn_model_free(m);
    nn_dataset_free(ds);
    return out;
}

static void expect_same_bits(const outcome *a, const outcome *b, const char *what)
{
    cr_assert_eq(a->bytes, b->bytes);
    cr_assert(memcmp(a->weights, b->weights, a->bytes) == 0, "%s: the weights differ", what);
    cr_assert(a->last_loss == b->last_loss, "%s: last loss %.9g vs %.9g", what, a->last_loss,
              b->last_loss);
}

Test(determinism, same_seed_same_bits_on_one_and_two_threads, .init = make_data,
     .fini = drop_data)
{
    outcome one = train_epoch(42, 0);
    cr_assert(isfinite(one.last_loss));
    cr_assert(one.last_loss < one.first_loss, "the epoch learns: %g -> %g", one.first_loss,
              one.last_loss);
    outcome again = train_epoch(42, 0), single = train_epoch(42, 1), two = train_epoch(42, 2),
            three = train_epoch(42, 3);
    expect_same_bits(&one, &again, "a second run");
    expect_same_bits(&one, &single, "a pool of 1");
    expect_same_bits(&one, &two, "a pool of 2");
    expect_same_bits(&one, &three, "a pool of 3");
    outcome other = train_epoch(43, 2);
    cr_assert(memcmp(one.weights, other.weights, one.bytes) != 0, "another seed, other weights");
    free(one.weights);
    free(again.weights);
    free(single.weights);
    free(two.weights);
    free(three.weights);
    free(other.weights);
}
