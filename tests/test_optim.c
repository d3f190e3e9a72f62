/*
** test_optim.c: each optimizer's first three steps against values worked
** out by hand from its published update equations; f32 agreement; the
** learning-rate schedules; global-norm clipping; errors; no allocation.
*/
#include "alloc_hooks.h"
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

typedef nn_optim *(*make_fn)(nn_model *m);

/* Runs three steps on w = [1, -2] with loss sum(w^2 + w), so g = 2w + 1,
** writing w after each step to got[step][i]. */
static void three_steps(make_fn make, ag_dtype dt, double got[3][2])
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *w = nn_param(m, "w", dt, 1, (int64_t[]){2});
    ag_set(w, 0, 1.0);
    ag_set(w, 1, -2.0);
    nn_optim *o = make(m);
    cr_assert(!nn_optim_is_nil(o), "%s", nn_model_errmsg(m));
    ag_tape *t = ag_tape_new();
    for (int step = 0; step < 3; step++) {
        ag_tensor *loss = ag_sum(t, ag_add(t, ag_mul(t, w, w), w));
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        nn_optim_step(o);
        got[step][0] = ag_get(w, 0);
        got[step][1] = ag_get(w, 1);
        ag_tape_reset(t);
    }
    cr_assert_eq(nn_optim_steps(o), 3);
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    ag_tape_free(t);
    nn_optim_free(o);
    nn_model_free(m);
}

static void check_three(make_fn make, const double want[3][2])
{
    double got[3][2];
    three_steps(make, AG_F64, got);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 2; i++)
            cr_expect(fabs(got[s][i] - want[s][i]) <= 1e-12 * fmax(1.0, fabs(want[s][i])),
                      "step %d element %d: got %.17g, want %.17g", s + 1, i, got[s][i],
                      want[s][i]);
    /* The same update in f32 agrees to float precision. */
    double got32[3][2];
    three_steps(make, AG_F32, got32);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 2; i++)
            cr_expect_float_eq(got32[s][i], want[s][i], 1e-5, "f32 step %d element %d", s + 1, i);
}

/* The expected values below were computed by an independent Python script
** (plain float arithmetic, not this library) that applies the update
** equations of the torch.optim documentation's "Algorithm" boxes to
** w = [1, -2] with g = 2w + 1, printing repr() of each value. */

static nn_optim *make_sgd(nn_model *m) { return nn_sgd_new(m, 0.1, 0.0, 0.0, 0); }
Test(optim, sgd_plain_matches_hand_values)
{
    /* w -= 0.1 (2w + 1): 1 -> 0.7 -> 0.46 -> 0.268 */
    static const double want[3][2] = {
        {0.7, -1.7}, {0.45999999999999996, -1.46}, {0.26799999999999996, -1.268}};
    check_three(make_sgd, want);
}

static nn_optim *make_sgd_momentum(nn_model *m) { return nn_sgd_new(m, 0.1, 0.9, 0.01, 0); }
Test(optim, sgd_momentum_weight_decay_matches_hand_values)
{
    static const double want[3][2] = {{0.6990000000000001, -1.698},
                                      {0.18760100000000002, -1.184902},
                                      {-0.41036590100000003, -0.5849484979999999}};
    check_three(make_sgd_momentum, want);
}

static nn_optim *make_nesterov(nn_model *m) { return nn_sgd_new(m, 0.1, 0.9, 0.0, 1); }
Test(optim, sgd_nesterov_matches_hand_values)
{
    static const double want[3][2] = {{0.42999999999999994, -1.43},
                                      {-0.1664000000000001, -0.8335999999999999},
                                      {-0.6625280000000002, -0.3374719999999998}};
    check_three(make_nesterov, want);
}

static nn_optim *make_adam(nn_model *m) { return nn_adam_new(m, 0.1, 0.9, 0.999, 1e-8, 0.0); }
Test(optim, adam_matches_hand_values)
{
    static const double want[3][2] = {{0.9000000003333333, -1.9000000003333333},
                                      {0.8002390622922801, -1.8002390622922801},
                                      {0.7009028705180997, -1.7009028705180997}};
    check_three(make_adam, want);
}

static nn_optim *make_adam_l2(nn_model *m) { return nn_adam_new(m, 0.1, 0.9, 0.999, 1e-8, 0.1); }
Test(optim, adam_with_l2_matches_hand_values)
{
    static const double want[3][2] = {{0.9000000003225807, -1.9000000003125},
                                      {0.8002440561204963, -1.800234260969904},
                                      {0.7009222595223426, -1.700884247917488}};
    check_three(make_adam_l2, want);
}

static nn_optim *make_adamw(nn_model *m) { return nn_adamw_new(m, 0.1, 0.9, 0.999, 1e-8, 0.1); }
Test(optim, adamw_matches_hand_values)
{
    static const double want[3][2] = {{0.8900000003333333, -1.8800000003333333},
                                      {0.7813706456058049, -1.7615037270307345},
                                      {0.6743071513248575, -1.6447348531969017}};
    check_three(make_adamw, want);
}

static nn_optim *make_rmsprop(nn_model *m) { return nn_rmsprop_new(m, 0.01, 0.99, 1e-8, 0.0, 0.0); }
Test(optim, rmsprop_matches_hand_values)
{
    static const double want[3][2] = {{0.9000000033333333, -1.9000000033333333},
                                      {0.831585116078795, -1.831585116078795},
                                      {0.7768514992249173, -1.7768514992249174}};
    check_three(make_rmsprop, want);
}

static nn_optim *make_rmsprop_momentum(nn_model *m)
{
    return nn_rmsprop_new(m, 0.01, 0.9, 1e-8, 0.9, 0.01);
}
Test(optim, rmsprop_momentum_weight_decay_matches_hand_values)
{
    static const double want[3][2] = {{0.9683772237305421, -1.9683772237294421},
                                      {0.9172085000696897, -1.9172077144729982},
                                      {0.8525028538448628, -1.8524994592656139}};
    check_three(make_rmsprop_momentum, want);
}

static nn_optim *make_adagrad(nn_model *m) { return nn_adagrad_new(m, 0.1, 1e-10, 0.0); }
Test(optim, adagrad_matches_hand_values)
{
    static const double want[3][2] = {{0.9000000000033334, -1.9000000000033332},
                                      {0.8317681749689081, -1.831768174968908},
                                      {0.7773245390840855, -1.7773245390840855}};
    check_three(make_adagrad, want);
}

static nn_optim *make_adagrad_wd(nn_model *m) { return nn_adagrad_new(m, 0.1, 1e-10, 0.1); }
Test(optim, adagrad_weight_decay_matches_hand_values)
{
    static const double want[3][2] = {{0.9000000000032258, -1.900000000003125},
                                      {0.8318102202370324, -1.831727508079721},
                                      {0.7774229297508485, -1.7772293883621406}};
    check_three(make_adagrad_wd, want);
}

/* A model whose one parameter p has the given values and gradient. */
static nn_model *model_with_grad(ag_dtype dt, int n, const double *values, const double *grads,
                                 ag_tensor **p)
{
    nn_model *m = nn_model_new(NULL, NULL);
    *p = nn_param(m, "p", dt, 1, (int64_t[]){n});
    for (int i = 0; i < n; i++) {
        ag_set(*p, i, values[i]);
        ag_set(ag_grad(*p), i, grads[i]);
    }
    return m;
}

Test(optim, step_walks_every_parameter_of_the_flat_buffer)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *a = nn_param(m, "a", AG_F32, 2, (int64_t[]){20, 30});   /* 600 > one block */
    ag_tensor *b = nn_param(m, "b", AG_F32, 1, (int64_t[]){7});
    ag_fill(a, 1.0);
    ag_fill(b, 2.0);
    ag_fill(ag_grad(a), 1.0);
    ag_fill(ag_grad(b), -1.0);
    nn_optim *o = nn_sgd_new(m, 0.5, 0.0, 0.0, 0);
    nn_optim_step(o);
    for (int64_t i = 0; i < 600; i++)
        cr_assert_float_eq(ag_get(a, i), 0.5, 1e-7, "a[%lld]", (long long)i);
    for (int64_t i = 0; i < 7; i++)
        cr_assert_float_eq(ag_get(b, i), 2.5, 1e-7, "b[%lld]", (long long)i);
    nn_optim_free(o);
    nn_model_free(m);
}

Test(optim, set_lr_changes_later_steps_and_rejects_bad_rates)
{
    ag_tensor *p;
    nn_model *m = model_with_grad(AG_F64, 1, (double[]){1.0}, (double[]){1.0}, &p);
    nn_optim *o = nn_sgd_new(m, 0.1, 0.0, 0.0, 0);
    cr_assert_float_eq(nn_optim_lr(o), 0.1, 0);
    cr_assert_str_eq(nn_optim_name(o), "sgd");
    nn_optim_set_lr(o, 0.25);
    nn_optim_step(o);
    cr_assert_float_eq(ag_get(p, 0), 0.75, 1e-15);
    nn_optim_set_lr(o, NAN);
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    cr_assert(strstr(nn_model_errmsg(m), "nn_optim_set_lr"), "%s", nn_model_errmsg(m));
    cr_assert_float_eq(nn_optim_lr(o), 0.25, 0, "the bad rate is ignored");
    /* The model is in error: steps do nothing. */
    nn_optim_step(o);
    cr_assert_float_eq(ag_get(p, 0), 0.75, 1e-15);
    nn_optim_free(o);
    nn_model_free(m);
}

Test(optim, bad_hyperparameters_give_a_nil_optimizer_and_a_message)
{
    ag_tensor *p;
    nn_model *m = model_with_grad(AG_F64, 1, (double[]){1.0}, (double[]){1.0}, &p);
    nn_optim *o = nn_adam_new(m, 0.1, 1.0, 0.999, 1e-8, 0.0);
    cr_assert(nn_optim_is_nil(o));
    cr_assert_str_eq(nn_optim_name(o), "nil");
    cr_assert(isnan(nn_optim_lr(o)));
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    cr_assert(strstr(nn_model_errmsg(m), "nn_adam_new: beta1 1"), "%s", nn_model_errmsg(m));
    nn_optim_step(o);   /* harmless */
    nn_optim_set_lr(o, 0.1);
    nn_optim_free(o);
    /* Later constructors on a model in error are nil too, and keep the first message. */
    cr_assert(nn_optim_is_nil(nn_sgd_new(m, 0.1, 0.0, 0.0, 0)));
    cr_assert(strstr(nn_model_errmsg(m), "beta1"));
    nn_model_free(m);

    m = model_with_grad(AG_F64, 1, (double[]){1.0}, (double[]){1.0}, &p);
    cr_assert(nn_optim_is_nil(nn_sgd_new(m, 0.1, 0.0, 0.0, 1)));
    cr_assert(strstr(nn_model_errmsg(m), "Nesterov"), "%s", nn_model_errmsg(m));
    nn_model_free(m);

    m = model_with_grad(AG_F64, 1, (double[]){1.0}, (double[]){1.0}, &p);
    cr_assert(nn_optim_is_nil(nn_rmsprop_new(m, -1.0, 0.99, 1e-8, 0.0, 0.0)));
    cr_assert(strstr(nn_model_errmsg(m), "nn_rmsprop_new: learning rate -1"), "%s",
              nn_model_errmsg(m));
    nn_model_free(m);

    m = model_with_grad(AG_F64, 1, (double[]){1.0}, (double[]){1.0}, &p);
    cr_assert(nn_optim_is_nil(nn_adagrad_new(m, 0.1, -1e-10, 0.0)));
    cr_assert(strstr(nn_model_errmsg(m), "eps"), "%s", nn_model_errmsg(m));
    nn_model_free(m);

    m = nn_model_new(NULL, NULL);
    cr_assert(nn_optim_is_nil(nn_adamw_new(m, 0.1, 0.9, 0.999, 1e-8, 0.01)));
    cr_assert_eq(nn_model_status(m), AG_ESTATE);
    cr_assert(strstr(nn_model_errmsg(m), "no parameter"), "%s", nn_model_errmsg(m));
    nn_model_free(m);

    cr_assert(nn_optim_is_nil(nn_sgd_new(NULL, 0.1, 0.0, 0.0, 0)));
    nn_optim_free(NULL);
}

Test(optim, parameters_added_after_the_optimizer_are_an_error)
{
    ag_tensor *p;
    nn_model *m = model_with_grad(AG_F64, 2, (double[]){1, 2}, (double[]){1, 1}, &p);
    nn_optim *o = nn_adam_new(m, 0.1, 0.9, 0.999, 1e-8, 0.0);
    nn_param(m, "late", AG_F64, 1, (int64_t[]){3});
    nn_optim_step(o);
    cr_assert_eq(nn_model_status(m), AG_ESTATE);
    cr_assert(strstr(nn_model_errmsg(m), "nn_optim_step: the model has 5 values but this adam "
                     "optimizer was made for 2"), "%s", nn_model_errmsg(m));
    cr_assert_float_eq(ag_get(p, 0), 1.0, 0, "nothing was updated");
    cr_assert_eq(nn_optim_steps(o), 0);
    nn_optim_free(o);
    nn_model_free(m);
}

Test(optim, optimizer_may_be_freed_after_its_model)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(hook_alloc, &h);
    nn_param(m, "w", AG_F32, 1, (int64_t[]){4});
    nn_optim *o = nn_rmsprop_new(m, 0.01, 0.99, 1e-8, 0.9, 0.0);
    nn_model_free(m);
    nn_optim_free(o);
    cr_assert_eq(h.live, 0);
    cr_assert_eq(h.bad_osize, 0);
}

Test(optim, a_step_allocates_nothing)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(hook_alloc, &h);
    ag_tensor *w = nn_param(m, "w", AG_F32, 2, (int64_t[]){33, 17});
    ag_fill(ag_grad(w), 0.5);
    make_fn makers[] = {make_sgd, make_sgd_momentum, make_nesterov, make_adam, make_adamw,
                        make_rmsprop, make_rmsprop_momentum, make_adagrad};
    for (size_t k = 0; k < sizeof makers / sizeof makers[0]; k++) {
        nn_optim *o = makers[k](m);
        long before = h.requests;
        for (int i = 0; i < 5; i++)
            nn_optim_step(o);
        nn_clip_grad_norm(m, 1e-3);
        cr_assert_eq(h.requests, before, "%s allocated during steps", nn_optim_name(o));
        nn_optim_free(o);
    }
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    nn_model_free(m);
    cr_assert_eq(h.live, 0);
}

Test(optim, optimizer_state_runs_out_of_memory_cleanly)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(hook_alloc, &h);
    nn_param(m, "w", AG_F64, 1, (int64_t[]){8});
    h.fail_at = h.requests + 1;
    nn_optim *o = nn_adam_new(m, 0.1, 0.9, 0.999, 1e-8, 0.0);
    cr_assert(nn_optim_is_nil(o));
    cr_assert_eq(nn_model_status(m), AG_ENOMEM);
    cr_assert(strstr(nn_model_errmsg(m), "nn_adam_new"), "%s", nn_model_errmsg(m));
    nn_model_free(m);
    cr_assert_eq(h.live, 0);
}

/* --------------------------------------------------------------- schedules */

Test(schedule, step_decay)
{
    nn_schedule s = nn_schedule_step(0.1, 10, 0.5);
    cr_assert_float_eq(nn_schedule_lr(&s, 0), 0.1, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 9), 0.1, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 10), 0.05, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 25), 0.025, 1e-15);
    nn_schedule bad = nn_schedule_step(0.1, 0, 0.5);
    cr_assert(isnan(nn_schedule_lr(&bad, 3)));
}

Test(schedule, exponential_and_constant)
{
    nn_schedule s = nn_schedule_exponential(1.0, 0.9);
    cr_assert_float_eq(nn_schedule_lr(&s, 0), 1.0, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 3), 0.729, 1e-15);
    nn_schedule c = nn_schedule_constant(0.3);
    cr_assert_float_eq(nn_schedule_lr(&c, 12345), 0.3, 0);
    cr_assert(isnan(nn_schedule_lr(&c, -1)));
    cr_assert(isnan(nn_schedule_lr(NULL, 0)));
}

Test(schedule, cosine_with_warmup)
{
    /* warm-up over steps 0..3, cosine from step 4 to 12, min 0.1 after */
    nn_schedule s = nn_schedule_cosine(1.0, 0.1, 4, 12);
    cr_assert_float_eq(nn_schedule_lr(&s, 0), 0.25, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 1), 0.5, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 3), 1.0, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 4), 1.0, 1e-15);
    /* halfway, p = 0.5: 0.1 + 0.9 (1 + cos(pi / 2)) / 2 = 0.55 */
    cr_assert_float_eq(nn_schedule_lr(&s, 8), 0.55, 1e-15);
    /* p = 0.25: 0.1 + 0.45 (1 + sqrt(2) / 2) */
    cr_assert_float_eq(nn_schedule_lr(&s, 6) - 0.1 - 0.45 * (1.0 + sqrt(0.5)), 0.0, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 12), 0.1, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&s, 1000), 0.1, 1e-15);
    nn_schedule none = nn_schedule_cosine(1.0, 0.0, 0, 2);
    cr_assert_float_eq(nn_schedule_lr(&none, 0), 1.0, 1e-15);
    cr_assert_float_eq(nn_schedule_lr(&none, 1), 0.5, 1e-15);
    nn_schedule bad = nn_schedule_cosine(1.0, 0.0, 5, 5);
    cr_assert(isnan(nn_schedule_lr(&bad, 0)));
}

Test(schedule, drives_an_optimizer)
{
    ag_tensor *p;
    nn_model *m = model_with_grad(AG_F64, 1, (double[]){0.0}, (double[]){1.0}, &p);
    nn_optim *o = nn_sgd_new(m, 1.0, 0.0, 0.0, 0);
    nn_schedule s = nn_schedule_step(1.0, 1, 0.5);
    for (int step = 0; step < 3; step++) {
        nn_optim_set_lr(o, nn_schedule_lr(&s, step));
        nn_optim_step(o);
    }
    cr_assert_float_eq(ag_get(p, 0), -1.75, 1e-15, "-(1 + 0.5 + 0.25)");
    nn_schedule bad = nn_schedule_step(1.0, 0, 0.5);
    nn_optim_set_lr(o, nn_schedule_lr(&bad, 0));
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    nn_optim_free(o);
    nn_model_free(m);
}

/* ---------------------------------------------------------------- clipping */

Test(clip, scales_to_the_global_norm)
{
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_F32 : AG_F64;
        nn_model *m = nn_model_new(NULL, NULL);
        ag_tensor *a = nn_param(m, "a", dt, 0, NULL);
        ag_tensor *b = nn_param(m, "b", dt, 1, (int64_t[]){1});
        ag_set(ag_grad(a), 0, 3.0);
        ag_set(ag_grad(b), 0, -4.0);
        double tol = k ? 1e-6 : 1e-15;
        cr_assert_float_eq(nn_clip_grad_norm(m, 10.0), 5.0, tol);
        cr_assert_float_eq(ag_get(ag_grad(a), 0), 3.0, tol, "below max_norm: untouched");
        cr_assert_float_eq(nn_clip_grad_norm(m, 1.0), 5.0, tol);
        cr_assert_float_eq(ag_get(ag_grad(a), 0), 3.0 / (5.0 + 1e-6), tol);
        cr_assert_float_eq(ag_get(ag_grad(b), 0), -4.0 / (5.0 + 1e-6), tol);
        cr_assert_float_eq(nn_clip_grad_norm(m, 1.0), 5.0 / (5.0 + 1e-6), tol);
        nn_model_free(m);
    }
}

Test(clip, rejects_a_bad_max_norm_and_leaves_non_finite_gradients)
{
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *a = nn_param(m, "a", AG_F64, 1, (int64_t[]){2});
    ag_set(ag_grad(a), 0, INFINITY);
    ag_set(ag_grad(a), 1, 1.0);
    cr_assert(isinf(nn_clip_grad_norm(m, 1.0)));
    cr_assert_float_eq(ag_get(ag_grad(a), 1), 1.0, 0);
    cr_assert(isnan(nn_clip_grad_norm(m, 0.0)));
    cr_assert_eq(nn_model_status(m), AG_EINVAL);
    cr_assert(strstr(nn_model_errmsg(m), "nn_clip_grad_norm: max_norm 0"), "%s",
              nn_model_errmsg(m));
    nn_model_free(m);
    cr_assert(isnan(nn_clip_grad_norm(NULL, 1.0)));
}
