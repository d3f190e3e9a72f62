/*
** test_cnn_steps.c: the training step of fashion_cnn's network
** (examples/fashion_cnn_net.h: two conv + batch norm + max pool blocks and a
** dense head, with Adam): after the first step it allocates nothing, through
** the model's, the tape's and the pool's allocator hook alike; and its
** weights and running statistics are the same bits on one thread and on
** pools of 2 and 3, whose products and unfolding split the work differently.
*/
#include "alloc_hooks.h"
#include "fashion_cnn_net.h"
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 16, PIXELS = CNN_SIDE * CNN_SIDE, STEPS = 4 };

typedef struct rig {
    nn_model *m;
    ag_tape *t;
    ag_pool *pool;
    nn_optim *adam;
    cnn net;
    float images[BATCH * PIXELS];
    int64_t labels[BATCH];
} rig;

/* A model, tape and pool of 'threads' (0: none), all through 'h' when
** given; images of a blurred square whose size gives the label. */
static void rig_new(rig *r, int threads, alloc_hooks *h)
{
    r->m = nn_model_new(h ? hook_alloc : NULL, h);
    r->t = h ? ag_tape_new_alloc(hook_alloc, h) : ag_tape_new();
    r->pool = threads ? (h ? ag_pool_new_alloc(hook_alloc, h, threads) : ag_pool_new(threads))
                      : NULL;
    cr_assert(r->m && r->t && (!threads || r->pool));
    ag_tape_set_pool(r->t, r->pool);
    nn_model_set_pool(r->m, r->pool);
    nn_model_seed(r->m, 7);
    cr_assert_eq(cnn_new(r->m, AG_F32, &r->net), 0, "%s", nn_model_errmsg(r->m));
    r->adam = nn_adam_new(r->m, 1e-3, 0.9, 0.999, 1e-8, 0.0);
    cr_assert_eq(nn_model_status(r->m), AG_OK, "%s", nn_model_errmsg(r->m));
    for (int n = 0; n < BATCH; n++) {
        int side = 4 + 2 * (n % CNN_CLASSES);
        r->labels[n] = n % CNN_CLASSES;
        for (int i = 0; i < PIXELS; i++) {
            int y = i / CNN_SIDE, x = i % CNN_SIDE, lo = 14 - side / 2;
            int in = y >= lo && y < lo + side && x >= lo && x < lo + side;
            r->images[n * PIXELS + i] = (float)(in ? 0.9 : 0.05 * ((i * 7 + n) % 5));
        }
    }
}

static void rig_free(rig *r)
{
    nn_optim_free(r->adam);
    ag_tape_free(r->t);
    ag_pool_free(r->pool);
    nn_model_free(r->m);
}

/* One training step; returns the loss. */
static double step(rig *r)
{
    ag_tape_reset(r->t);
    ag_tensor *x = ag_tensor_from_f32(r->t, 2, (int64_t[]){BATCH, PIXELS}, r->images);
    ag_tensor *loss = nn_cross_entropy_loss(r->t, cnn_forward(r->t, &r->net, x), r->labels, 0,
                                            NN_REDUCE_MEAN);
    nn_model_zero_grad(r->m);
    ag_backward(r->t, loss);
    cr_assert_eq(ag_tape_status(r->t), AG_OK, "%s", ag_tape_errmsg(r->t));
    nn_optim_step(r->adam);
    return ag_item(loss);
}

Test(cnn_steps, training_steps_allocate_nothing_after_the_first)
{
    alloc_hooks h = hooks_counting();
    rig *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    rig_new(r, 2, &h);
    double first = step(r), last = first;
    long after_first = h.requests;
    for (int s = 1; s < 3 * STEPS; s++) {
        last = step(r);
        cr_assert_eq(h.requests, after_first, "step %d allocated %ld times", s,
                     h.requests - after_first);
    }
    /* testing, in evaluation mode, allocates nothing either once it has run */
    nn_model_set_training(r->m, 0);
    for (int s = 0; s < 2; s++) {
        ag_tape_reset(r->t);
        ag_tensor *x = ag_tensor_from_f32(r->t, 2, (int64_t[]){BATCH, PIXELS}, r->images);
        ag_no_grad_begin(r->t);
        cnn_forward(r->t, &r->net, x);
        ag_no_grad_end(r->t);
        cr_assert_eq(ag_tape_status(r->t), AG_OK, "%s", ag_tape_errmsg(r->t));
        if (s == 0)
            after_first = h.requests;
        cr_assert_eq(h.requests, after_first, "evaluation pass %d allocated", s);
    }
    cr_assert(isfinite(last) && last < first, "the steps train: loss %g -> %g", first, last);
    cr_assert_eq(h.refused, 0);
    rig_free(r);
    free(r);
    cr_assert_eq(h.live, 0, "%ld blocks leaked", h.live);
}

/* The weights and running statistics after STEPS steps on 'threads'. */
static float *train(int threads, size_t *bytes, float stats[4 * CNN_C2])
{
    rig *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    rig_new(r, threads, NULL);
    for (int s = 0; s < STEPS; s++)
        step(r);
    *bytes = (size_t)nn_model_numel(r->m) * sizeof(float);
    float *w = malloc(*bytes);
    cr_assert_not_null(w);
    memcpy(w, nn_model_values(r->m), *bytes);
    /* The buffers are tensors of the model's dtype (f32 here). */
    memcpy(stats, ag_data(nn_batchnorm2d_running_mean(r->net.bn1)), CNN_C1 * sizeof(float));
    memcpy(stats + CNN_C1, ag_data(nn_batchnorm2d_running_var(r->net.bn1)),
           CNN_C1 * sizeof(float));
    memcpy(stats + 2 * CNN_C1, ag_data(nn_batchnorm2d_running_mean(r->net.bn2)),
           CNN_C2 * sizeof(float));
    memcpy(stats + 2 * CNN_C1 + CNN_C2, ag_data(nn_batchnorm2d_running_var(r->net.bn2)),
           CNN_C2 * sizeof(float));
    rig_free(r);
    free(r);
    return w;
}

Test(cnn_steps, the_same_bits_on_any_number_of_threads)
{
    size_t bytes0, bytes;
    float stats0[4 * CNN_C2], stats[4 * CNN_C2];
    float *w0 = train(0, &bytes0, stats0);
    int n_stats = 2 * CNN_C1 + 2 * CNN_C2;
    for (int threads = 1; threads <= 3; threads++) {
        float *w = train(threads, &bytes, stats);
        cr_assert_eq(bytes, bytes0);
        cr_expect(memcmp(w, w0, bytes) == 0, "weights differ on %d thread(s)", threads);
        cr_expect(memcmp(stats, stats0, (size_t)n_stats * sizeof(float)) == 0,
                  "running statistics differ on %d thread(s)", threads);
        free(w);
    }
    free(w0);
}
