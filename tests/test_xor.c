/*
** test_xor.c: convergence smoke tests. A 2-layer MLP learns XOR from a fixed
** seed, and after the first step the training loop allocates nothing (the
** tape and the model share one counting allocator hook).
*/
#include "alloc_hooks.h"
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>

static const float xor_x[] = {0, 0, 0, 1, 1, 0, 1, 1};
static const float xor_y[] = {0, 1, 1, 0};

typedef struct run {
    int correct;           /* of the 4 cases, after training */
    double loss;           /* the last step's */
    long first_step_requests, later_requests;
} run;

/* Trains a 2-8-1 tanh MLP for 'steps' steps with the given optimizer maker.
** 'hinge' uses targets in {-1, +1} and the max-margin loss, else BCE. */
static run train(nn_optim *(*make)(nn_model *), int steps, int hinge)
{
    alloc_hooks h = hooks_counting();
    run out = {0};
    nn_model *m = nn_model_new(hook_alloc, &h);
    nn_model_seed(m, 1234);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F32, 3, (int64_t[]){2, 8, 1}, NN_TANH);
    nn_optim *opt = make(m);
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    float signs[4];
    for (int i = 0; i < 4; i++)
        signs[i] = 2 * xor_y[i] - 1;
    ag_tensor *logits = NULL;
    for (int step = 0; step < steps; step++) {
        ag_tensor *x = ag_tensor_from(t, AG_F32, 2, (int64_t[]){4, 2}, xor_x);
        ag_tensor *y = ag_tensor_from(t, AG_F32, 2, (int64_t[]){4, 1}, hinge ? signs : xor_y);
        logits = nn_mlp_forward(t, net, x);
        ag_tensor *loss = hinge ? nn_hinge_loss(t, logits, y, NN_REDUCE_MEAN)
                                : nn_bce_with_logits_loss(t, logits, y, NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        cr_assert_eq(ag_tape_status(t), AG_OK, "step %d: %s", step, ag_tape_errmsg(t));
        nn_optim_step(opt);
        out.loss = ag_item(loss);
        if (step < steps - 1)
            ag_tape_reset(t);
        if (step == 0)
            out.first_step_requests = h.requests;
    }
    out.later_requests = h.requests - out.first_step_requests;
    for (int i = 0; i < 4; i++)
        out.correct += (ag_get(logits, i) > 0) == (xor_y[i] > 0.5f);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    ag_tape_free(t);
    nn_optim_free(opt);
    nn_model_free(m);
    cr_assert_eq(h.live, 0, "%ld blocks leaked", h.live);
    return out;
}

static nn_optim *adam(nn_model *m) { return nn_adam_new(m, 0.05, 0.9, 0.999, 1e-8, 0.0); }
static nn_optim *sgd(nn_model *m) { return nn_sgd_new(m, 0.1, 0.9, 0.0, 0); }

Test(xor, mlp_with_adam_learns_xor_within_2000_steps)
{
    run r = train(adam, 2000, 0);
    cr_assert_eq(r.correct, 4, "accuracy %d/4, loss %g", r.correct, r.loss);
    cr_assert_lt(r.loss, 0.01);
}

Test(xor, the_training_loop_allocates_nothing_after_the_first_step)
{
    run r = train(adam, 50, 0);
    cr_assert_gt(r.first_step_requests, 0);
    cr_assert_eq(r.later_requests, 0, "%ld allocations after step 1", r.later_requests);
}

Test(xor, max_margin_with_sgd_momentum_as_in_micrograd)
{
    run r = train(sgd, 500, 1);
    cr_assert_eq(r.correct, 4, "accuracy %d/4, loss %g", r.correct, r.loss);
    cr_assert_lt(r.loss, 1e-3, "every margin reached");
    cr_assert_eq(r.later_requests, 0);
}
