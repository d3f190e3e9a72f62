/*
** test_lbfgs.c: L-BFGS (nn_lbfgs_*) on the Rosenbrock function in 2 and 100
** dimensions and on a quadratic, the strong Wolfe conditions at every
** accepted step, a model and a plain list alike; the first-order
** optimizers over a plain list against their model twins, bit for bit;
** errors, each named; no allocation once running.
*/
#include "alloc_hooks.h"
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* -------------------------------------------------------------- problems */

typedef struct problem {
    ag_tape *t;
    ag_tensor *x;          /* the parameter [n] */
    int n;
    int kind;              /* 0 Rosenbrock, 1 quadratic */
    ag_tensor *a, *b;      /* the quadratic's matrix [n,n] and vector [n], on no tape */
    double a_data[100 * 100], b_data[100];
    int calls;
    int fail_at;           /* the closure fails at this call (0: never) */
    int nan_from;          /* and gives NaN from this call on (0: never) */
} problem;

/* sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 */
static ag_tensor *rosenbrock(ag_tape *t, ag_tensor *x, int n)
{
    ag_tensor *head = ag_slice(t, x, 0, 0, n - 1, 1), *tail = ag_slice(t, x, 0, 1, n, 1);
    ag_tensor *a = ag_sub(t, tail, ag_square(t, head));
    ag_tensor *b = ag_add_scalar(t, ag_neg(t, head), 1.0);
    return ag_sum(t, ag_add(t, ag_mul_scalar(t, ag_square(t, a), 100.0), ag_square(t, b)));
}

/* x'Ax / 2 - b'x */
static ag_tensor *quadratic(ag_tape *t, problem *p)
{
    int64_t n = p->n;
    ag_tensor *a = ag_tensor_from_f64(t, 2, (int64_t[]){n, n}, p->a_data);
    ag_tensor *b = ag_tensor_from_f64(t, 1, (int64_t[]){n}, p->b_data);
    ag_tensor *ax = ag_matmul(t, a, p->x);
    return ag_sub(t, ag_mul_scalar(t, ag_sum(t, ag_mul(t, p->x, ax)), 0.5),
                  ag_sum(t, ag_mul(t, b, p->x)));
}

static ag_status closure(void *ud, double *loss)
{
    problem *p = ud;
    p->calls++;
    if (p->fail_at && p->calls == p->fail_at)
        return AG_EIO;
    ag_tape_reset(p->t);
    ag_tensor *f = p->kind == 0 ? rosenbrock(p->t, p->x, p->n) : quadratic(p->t, p);
    ag_backward(p->t, f);
    *loss = p->nan_from && p->calls >= p->nan_from ? NAN : ag_item(f);
    return ag_tape_status(p->t);
}

/* Checks the strong Wolfe conditions of each accepted step, and counts. */
typedef struct wolfe_log {
    int iterations, violations;
    double worst_slope_ratio;
} wolfe_log;

static void on_iteration(void *ud, const nn_lbfgs_iteration *it)
{
    wolfe_log *w = ud;
    w->iterations++;
    bool decrease = it->loss <= it->loss_before + 1e-4 * it->step * it->slope_before;
    bool curvature = fabs(it->slope) <= 0.9 * fabs(it->slope_before);
    cr_expect(it->slope_before < 0, "iteration %lld: not a descent direction (%g)",
              (long long)it->iteration, it->slope_before);
    cr_expect_eq(it->wolfe, decrease && curvature);
    if (!(decrease && curvature))
        w->violations++;
    w->worst_slope_ratio = fmax(w->worst_slope_ratio, fabs(it->slope / it->slope_before));
}

static void rosenbrock_start(ag_tensor *x, int n)
{
    for (int i = 0; i < n; i++)
        ag_set(x, i, i % 2 == 0 ? -1.2 : 1.0);
}

/* Runs L-BFGS on the n-D Rosenbrock function from the classic start until
** it converges (at most 'calls' nn_lbfgs_step calls); returns the
** iterations it took. */
static int64_t minimise_rosenbrock(int n, wolfe_log *w, int64_t *evals, double *err)
{
    problem p = {.n = n, .t = ag_tape_new(), .x = ag_param_new(AG_F64, 1, (int64_t[]){n})};
    rosenbrock_start(p.x, n);
    nn_lbfgs_options opt = {.max_iter = 1000, .max_eval = 2000, .tolerance_grad = 1e-12,
                            .tolerance_change = 1e-25, .on_iteration = on_iteration,
                            .on_iteration_ud = w};
    nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &p.x, &opt);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_assert_str_eq(nn_optim_name(o), "lbfgs");
    double f = NAN;
    for (int i = 0; i < 10 && !nn_lbfgs_converged(o); i++)
        f = nn_lbfgs_step(o, closure, &p);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_expect(nn_lbfgs_converged(o));
    cr_expect_leq(f, 1e-20, "final loss %g", f);
    *err = 0;
    for (int i = 0; i < n; i++)
        *err = fmax(*err, fabs(ag_get(p.x, i) - 1.0));
    *evals = nn_lbfgs_evaluations(o);
    cr_expect_eq(*evals, p.calls);
    int64_t iters = nn_optim_steps(o);
    cr_expect_eq(iters, w->iterations);
    nn_optim_free(o);
    ag_param_free(p.x);
    ag_tape_free(p.t);
    return iters;
}

Test(lbfgs, rosenbrock_2d_to_1e8)
{
    wolfe_log w = {0};
    int64_t evals;
    double err;
    int64_t iters = minimise_rosenbrock(2, &w, &evals, &err);
    fprintf(stderr, "lbfgs: 2-D Rosenbrock: %lld iterations, %lld evaluations, max |x - 1| = "
            "%.3g, worst |g'd| ratio %.3f\n", (long long)iters, (long long)evals, err,
            w.worst_slope_ratio);
    cr_expect_leq(err, 1e-8);
    cr_expect_leq(iters, 50);
    cr_expect_leq(evals, 65);
    cr_expect_eq(w.violations, 0, "%d of %d steps broke the strong Wolfe conditions",
                 w.violations, w.iterations);
}

Test(lbfgs, rosenbrock_100d_to_1e8)
{
    wolfe_log w = {0};
    int64_t evals;
    double err;
    int64_t iters = minimise_rosenbrock(100, &w, &evals, &err);
    fprintf(stderr, "lbfgs: 100-D Rosenbrock: %lld iterations, %lld evaluations, max |x - 1| "
            "= %.3g, worst |g'd| ratio %.3f\n", (long long)iters, (long long)evals, err,
            w.worst_slope_ratio);
    cr_expect_leq(err, 1e-8);
    cr_expect_leq(iters, 650);
    cr_expect_leq(evals, 800);
    cr_expect_eq(w.violations, 0, "%d of %d steps broke the strong Wolfe conditions",
                 w.violations, w.iterations);
}

/* A = Q diag(1..n) Q' for an orthogonal Q (Householder), b = A 1: the
** minimiser is all ones. */
static void make_quadratic(problem *p, int n)
{
    double v[100], nv = 0;
    for (int i = 0; i < n; i++) {
        v[i] = sin(1.0 + 0.7 * i);
        nv += v[i] * v[i];
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double a = 0;
            for (int k = 0; k < n; k++) {
                double qik = (i == k) - 2 * v[i] * v[k] / nv, qjk = (j == k) - 2 * v[j] * v[k] / nv;
                a += qik * (1.0 + k) * qjk;
            }
            p->a_data[i * n + j] = a;
        }
    for (int i = 0; i < n; i++) {
        p->b_data[i] = 0;
        for (int j = 0; j < n; j++)
            p->b_data[i] += p->a_data[i * n + j];
    }
}

Test(lbfgs, a_quadratic_converges_in_about_n_iterations)
{
    enum { N = 10 };
    problem p = {.n = N, .kind = 1, .t = ag_tape_new(),
                 .x = ag_param_new(AG_F64, 1, (int64_t[]){N})};
    make_quadratic(&p, N);
    wolfe_log w = {0};
    nn_lbfgs_options opt = {.max_iter = 100, .tolerance_grad = 1e-9, .tolerance_change = 1e-15,
                            .on_iteration = on_iteration, .on_iteration_ud = &w};
    nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &p.x, &opt);
    nn_lbfgs_step(o, closure, &p);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_expect(nn_lbfgs_converged(o));
    double err = 0;
    for (int i = 0; i < N; i++)
        err = fmax(err, fabs(ag_get(p.x, i) - 1.0));
    fprintf(stderr, "lbfgs: quadratic, n = %d, condition 10: %lld iterations, %lld "
            "evaluations, max |x - 1| = %.3g\n", N, (long long)nn_optim_steps(o),
            (long long)nn_lbfgs_evaluations(o), err);
    cr_expect_leq(err, 1e-8);
    /* n with exact line searches (L-BFGS is then conjugate gradients);
    ** the Wolfe search accepts the first trial t = 1 where it meets both
    ** conditions, which is not the exact minimiser along d, so it takes
    ** more: 16 for n = 10 here. */
    cr_expect_leq(nn_optim_steps(o), 2 * N);
    cr_expect_eq(w.violations, 0);
    nn_optim_free(o);
    ag_param_free(p.x);
    ag_tape_free(p.t);
}

/* The closure of a model-based problem: the 2-D Rosenbrock function of the
** model's one parameter. */
Test(lbfgs, works_on_a_model_as_on_a_list)
{
    nn_model *m = nn_model_new(NULL, NULL);
    problem p = {.n = 2, .t = ag_tape_new(), .x = nn_param(m, "x", AG_F64, 1, (int64_t[]){2})};
    rosenbrock_start(p.x, 2);
    nn_optim *o = nn_lbfgs_new(m, &(nn_lbfgs_options){.max_iter = 200,
                                                       .tolerance_grad = 1e-11,
                                                       .tolerance_change = 1e-14});
    cr_assert(!nn_optim_is_nil(o), "%s", nn_model_errmsg(m));
    nn_lbfgs_step(o, closure, &p);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    int64_t model_iters = nn_optim_steps(o);
    double x0 = ag_get(p.x, 0), x1 = ag_get(p.x, 1);
    nn_optim_free(o);
    /* The same run over a plain list gives the same bits. */
    problem q = {.n = 2, .t = p.t, .x = ag_param_new(AG_F64, 1, (int64_t[]){2})};
    rosenbrock_start(q.x, 2);
    o = nn_lbfgs_new_params(NULL, NULL, 1, &q.x, &(nn_lbfgs_options){.max_iter = 200,
                                                                     .tolerance_grad = 1e-11,
                                                                     .tolerance_change = 1e-14});
    nn_lbfgs_step(o, closure, &q);
    cr_expect_eq(nn_optim_steps(o), model_iters);
    cr_expect_eq(ag_get(q.x, 0), x0);
    cr_expect_eq(ag_get(q.x, 1), x1);
    cr_expect_leq(fabs(x0 - 1) + fabs(x1 - 1), 1e-8);
    nn_optim_free(o);
    ag_param_free(q.x);
    ag_tape_free(p.t);
    nn_model_free(m);
}

Test(lbfgs, f32_parameters_converge_to_float_precision)
{
    problem p = {.n = 2, .t = ag_tape_new(), .x = ag_param_new(AG_F32, 1, (int64_t[]){2})};
    rosenbrock_start(p.x, 2);
    nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &p.x, &(nn_lbfgs_options){.max_iter = 200});
    nn_lbfgs_step(o, closure, &p);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_expect_leq(fabs(ag_get(p.x, 0) - 1), 1e-3, "%g", ag_get(p.x, 0));
    cr_expect_leq(fabs(ag_get(p.x, 1) - 1), 1e-3, "%g", ag_get(p.x, 1));
    nn_optim_free(o);
    ag_param_free(p.x);
    ag_tape_free(p.t);
}

Test(lbfgs, steps_allocate_nothing_after_the_first)
{
    alloc_hooks h = hooks_counting();
    problem p = {.n = 100, .t = ag_tape_new_alloc(hook_alloc, &h),
                 .x = ag_param_new_alloc(hook_alloc, &h, AG_F64, 1, (int64_t[]){100})};
    rosenbrock_start(p.x, 100);
    nn_optim *o = nn_lbfgs_new_params(hook_alloc, &h, 1, &p.x,
                                      &(nn_lbfgs_options){.max_iter = 5, .history_size = 10});
    nn_lbfgs_step(o, closure, &p);
    long before = h.requests;
    for (int i = 0; i < 5; i++)
        nn_lbfgs_step(o, closure, &p);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_expect_eq(h.requests, before, "%ld allocations in 5 steps", h.requests - before);
    cr_expect_geq(nn_optim_steps(o), 20);
    nn_optim_free(o);
    ag_param_free(p.x);
    ag_tape_free(p.t);
    cr_expect_eq(h.live, 0);
    cr_expect_eq(h.bad_osize, 0);
}

/* f(x) = (x - c)^2 / 2 of a scalar parameter, with a centre c the test moves. */
typedef struct moving_centre {
    ag_tape *t;
    ag_tensor *x;
    double c;
} moving_centre;

static ag_status centred_square(void *ud, double *loss)
{
    moving_centre *p = ud;
    ag_tape_reset(p->t);
    ag_tensor *f = ag_mul_scalar(p->t, ag_square(p->t, ag_add_scalar(p->t, p->x, -p->c)), 0.5);
    ag_backward(p->t, f);
    *loss = ag_item(f);
    return ag_tape_status(p->t);
}

/* The first iteration of each step, as on_iteration reports it. */
typedef struct first_iteration {
    int64_t seen;    /* iterations before this step's */
    nn_lbfgs_iteration it;
    bool taken;
} first_iteration;

static void keep_first(void *ud, const nn_lbfgs_iteration *it)
{
    first_iteration *f = ud;
    if (!f->taken && it->iteration > f->seen) {
        f->it = *it;
        f->taken = true;
    }
}

/* A pair that fails the curvature test (y's <= 1e-10) leaves the history
** as it was (PyTorch): with history_size 1 the ring is full, and its one
** slot holds the pair still in use, which a rejected pair must not
** overwrite. From x = 2 with c = 0 the first step goes to 1 (t = 1/2 on
** the gradient 2), keeps the pair s = -1, y = -1 and lands on 0. Moving c
** to -2 makes the next pair s = -1, y = +1 (y's = -1, rejected); the kept
** pair (curvature 1) gives d = -H g = -2, a Newton step accepted at t = 1
** after one evaluation. Overwritten by the rejected pair under the old
** pair's rho, the history gave d = -10, whose t = 1 failed sufficient
** decrease and needed a second evaluation to reach t = 0.2. */
Test(lbfgs, a_rejected_pair_leaves_the_full_history_untouched)
{
    moving_centre p = {.t = ag_tape_new(), .x = ag_param_new(AG_F64, 1, (int64_t[]){1})};
    ag_set(p.x, 0, 2.0);
    first_iteration first = {0};
    nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &p.x,
                                      &(nn_lbfgs_options){.history_size = 1,
                                                          .on_iteration = keep_first,
                                                          .on_iteration_ud = &first});
    cr_expect_eq(nn_lbfgs_step(o, centred_square, &p), 0.0);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_expect_eq(ag_get(p.x, 0), 0.0);
    cr_expect_eq(nn_optim_steps(o), 2);
    cr_expect(nn_lbfgs_converged(o));
    cr_expect_eq(first.it.step, 0.5);

    p.c = -2;
    first = (first_iteration){.seen = nn_optim_steps(o)};
    cr_expect_eq(nn_lbfgs_step(o, centred_square, &p), 0.0);
    cr_assert_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    cr_assert(first.taken);
    cr_expect_eq(first.it.slope_before, -4.0, "g'd = %g: d is not -2", first.it.slope_before);
    cr_expect_eq(first.it.step, 1.0, "step %g", first.it.step);
    cr_expect_eq(first.it.evaluations, 1, "%d evaluations", first.it.evaluations);
    cr_expect_eq(first.it.loss_before, 2.0);
    cr_expect_eq(first.it.loss, 0.0);
    cr_expect_eq(ag_get(p.x, 0), -2.0);
    nn_optim_free(o);
    ag_param_free(p.x);
    ag_tape_free(p.t);
}

/* ---------------------------------------------------------------- errors */

static void expect_msg(const nn_optim *o, ag_status st, const char *part)
{
    cr_expect_eq(nn_optim_status(o), st, "%s: %s", ag_status_str(nn_optim_status(o)),
                 nn_optim_errmsg(o));
    cr_expect(strstr(nn_optim_errmsg(o), part) != NULL, "'%s' lacks '%s'", nn_optim_errmsg(o),
              part);
}

Test(lbfgs, bad_settings_and_closures_are_named)
{
    ag_tensor *x = ag_param_new(AG_F64, 1, (int64_t[]){2});
    nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &x, &(nn_lbfgs_options){.history_size = -1});
    cr_expect(nn_optim_is_nil(o));
    expect_msg(o, AG_EINVAL, "nn_lbfgs_new_params: history_size -1");
    nn_optim_free(o);
    o = nn_lbfgs_new_params(NULL, NULL, 1, &x, &(nn_lbfgs_options){.tolerance_grad = NAN});
    expect_msg(o, AG_EINVAL, "nn_lbfgs_new_params: tolerance_grad nan");
    nn_optim_free(o);
    o = nn_lbfgs_new_params(NULL, NULL, 0, &x, NULL);
    expect_msg(o, AG_EINVAL, "nn_lbfgs_new_params: 0 parameters");
    nn_optim_free(o);
    cr_expect(isnan(nn_lbfgs_step(o = nn_lbfgs_new_params(NULL, NULL, 0, NULL, NULL), closure,
                                  NULL)));
    nn_optim_free(o);

    /* On a model, errors go to the model as for every model optimizer. */
    nn_model *m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F64, 1, (int64_t[]){2});
    o = nn_lbfgs_new(m, &(nn_lbfgs_options){.lr = -1});
    cr_expect(nn_optim_is_nil(o));
    cr_expect(strstr(nn_model_errmsg(m), "nn_lbfgs_new: lr -1"), "%s", nn_model_errmsg(m));
    nn_model_free(m);
    cr_expect(nn_optim_is_nil(nn_lbfgs_new(NULL, NULL)));

    problem p = {.n = 2, .t = ag_tape_new(), .x = x};
    rosenbrock_start(x, 2);
    o = nn_lbfgs_new_params(NULL, NULL, 1, &x, NULL);
    cr_expect(isnan(nn_lbfgs_step(o, NULL, &p)));
    expect_msg(o, AG_EINVAL, "nn_lbfgs_step: the closure is NULL");
    nn_optim_free(o);

    o = nn_lbfgs_new_params(NULL, NULL, 1, &x, NULL);
    nn_optim_step(o);
    expect_msg(o, AG_EINVAL, "nn_optim_step: a lbfgs optimizer needs a closure");
    nn_optim_free(o);

    o = nn_adam_new_params(NULL, NULL, 1, &x, 0.1, 0.9, 0.999, 1e-8, 0);
    cr_expect(isnan(nn_lbfgs_step(o, closure, &p)));
    expect_msg(o, AG_EINVAL, "nn_lbfgs_step: the optimizer is adam, not lbfgs");
    nn_optim_free(o);

    /* A closure that fails on its third call stops the step there. */
    o = nn_lbfgs_new_params(NULL, NULL, 1, &x, NULL);
    p.fail_at = 3;
    cr_expect(isnan(nn_lbfgs_step(o, closure, &p)));
    expect_msg(o, AG_EIO, "nn_lbfgs_step: the closure failed (");
    expect_msg(o, AG_EIO, ag_status_str(AG_EIO));
    expect_msg(o, AG_EIO, ") at evaluation 3");
    /* Sticky: later steps do nothing. */
    int calls = p.calls;
    cr_expect(isnan(nn_lbfgs_step(o, closure, &p)));
    cr_expect_eq(p.calls, calls);
    nn_optim_free(o);

    /* NaN at the start is an error; NaN at a trial point is too far. */
    p.fail_at = 0;
    p.calls = 0;
    p.nan_from = 1;
    o = nn_lbfgs_new_params(NULL, NULL, 1, &x, NULL);
    cr_expect(isnan(nn_lbfgs_step(o, closure, &p)));
    expect_msg(o, AG_ENUMERIC, "nn_lbfgs_step: the closure gave a non-finite loss");
    nn_optim_free(o);
    ag_param_free(x);
    ag_tape_free(p.t);
}

/* nn_optim_set_lr refuses for L-BFGS what its constructor refuses: with
** lr 0 every trial step is 0, and the step "converged" (AG_OK) where the
** gradient is not 0. A first-order optimizer may still be paused with 0. */
Test(lbfgs, set_lr_refuses_what_the_constructor_refuses)
{
    ag_tensor *x = ag_param_new(AG_F64, 1, (int64_t[]){2});
    problem p = {.n = 2, .t = ag_tape_new(), .x = x};
    const double bad[] = {0.0, -0.5, INFINITY, NAN};
    const char *msgs[] = {"nn_optim_set_lr: learning rate 0 must be finite and > 0 for lbfgs",
                          "nn_optim_set_lr: learning rate -0.5 must be finite and > 0 for lbfgs",
                          "nn_optim_set_lr: learning rate inf must be finite and > 0 for lbfgs",
                          "nn_optim_set_lr: learning rate nan must be finite and > 0 for lbfgs"};
    for (int k = 0; k < 4; k++) {
        nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &x, NULL);
        nn_optim_set_lr(o, bad[k]);
        expect_msg(o, AG_EINVAL, msgs[k]);
        cr_expect_eq(nn_optim_lr(o), 1.0, "the bad rate %g is ignored", bad[k]);
        rosenbrock_start(x, 2);
        cr_expect(isnan(nn_lbfgs_step(o, closure, &p)), "a step in error does nothing");
        cr_expect(!nn_lbfgs_converged(o));
        cr_expect_eq(ag_get(x, 0), -1.2);
        nn_optim_free(o);
    }
    /* On a model, the error goes to the model. */
    nn_model *m = nn_model_new(NULL, NULL);
    nn_param(m, "w", AG_F64, 1, (int64_t[]){2});
    nn_optim *o = nn_lbfgs_new(m, NULL);
    nn_optim_set_lr(o, 0);
    cr_expect_eq(nn_model_status(m), AG_EINVAL);
    cr_expect(strstr(nn_model_errmsg(m), msgs[0]), "%s", nn_model_errmsg(m));
    nn_optim_free(o);
    nn_model_free(m);
    /* A good rate is taken; SGD takes 0 and refuses infinity. */
    o = nn_lbfgs_new_params(NULL, NULL, 1, &x, NULL);
    nn_optim_set_lr(o, 0.5);
    cr_expect_eq(nn_optim_lr(o), 0.5);
    cr_expect_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    nn_optim_free(o);
    o = nn_sgd_new_params(NULL, NULL, 1, &x, 0.1, 0, 0, 0);
    nn_optim_set_lr(o, 0);
    cr_expect_eq(nn_optim_lr(o), 0.0);
    cr_expect_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    nn_optim_set_lr(o, INFINITY);
    expect_msg(o, AG_EINVAL, "nn_optim_set_lr: learning rate inf must be finite and >= 0");
    cr_expect_eq(nn_optim_lr(o), 0.0);
    nn_optim_free(o);
    ag_param_free(x);
    ag_tape_free(p.t);
}

/* ------------------------------------- plain lists against their model twins */

typedef struct config {
    const char *name;
    nn_optim *(*model)(nn_model *m);
    nn_optim *(*list)(int n, ag_tensor *const *ps);
} config;

#define TWINS(NAME, MODEL_CALL, LIST_CALL)                                                        \
    static nn_optim *NAME##_model(nn_model *m) { return MODEL_CALL; }                            \
    static nn_optim *NAME##_list(int n, ag_tensor *const *ps) { return LIST_CALL; }

TWINS(sgd, nn_sgd_new(m, 0.1, 0, 0.01, 0), nn_sgd_new_params(NULL, NULL, n, ps, 0.1, 0, 0.01, 0))
TWINS(nesterov, nn_sgd_new(m, 0.1, 0.9, 0.01, 1),
      nn_sgd_new_params(NULL, NULL, n, ps, 0.1, 0.9, 0.01, 1))
TWINS(momentum, nn_sgd_new(m, 0.1, 0.9, 0, 0), nn_sgd_new_params(NULL, NULL, n, ps, 0.1, 0.9, 0, 0))
TWINS(rmsprop_plain, nn_rmsprop_new(m, 0.01, 0.99, 1e-8, 0, 0),
      nn_rmsprop_new_params(NULL, NULL, n, ps, 0.01, 0.99, 1e-8, 0, 0))
TWINS(adam, nn_adam_new(m, 0.01, 0.9, 0.999, 1e-8, 0.01),
      nn_adam_new_params(NULL, NULL, n, ps, 0.01, 0.9, 0.999, 1e-8, 0.01))
TWINS(adamw, nn_adamw_new(m, 0.01, 0.9, 0.999, 1e-8, 0.01),
      nn_adamw_new_params(NULL, NULL, n, ps, 0.01, 0.9, 0.999, 1e-8, 0.01))
TWINS(rmsprop, nn_rmsprop_new(m, 0.01, 0.99, 1e-8, 0.9, 0.01),
      nn_rmsprop_new_params(NULL, NULL, n, ps, 0.01, 0.99, 1e-8, 0.9, 0.01))
TWINS(adagrad, nn_adagrad_new(m, 0.01, 1e-10, 0.01),
      nn_adagrad_new_params(NULL, NULL, n, ps, 0.01, 1e-10, 0.01))

static const config configs[] = {
    {"sgd", sgd_model, sgd_list},         {"nesterov", nesterov_model, nesterov_list},
    {"adam", adam_model, adam_list},      {"adamw", adamw_model, adamw_list},
    {"rmsprop", rmsprop_model, rmsprop_list}, {"adagrad", adagrad_model, adagrad_list},
    {"momentum", momentum_model, momentum_list},
    {"rmsprop_plain", rmsprop_plain_model, rmsprop_plain_list},
};

static void fill_pattern(ag_tensor *x, double scale, double shift)
{
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, scale * sin(0.37 * (double)i + shift));
}

Test(plain_list, every_optimizer_matches_its_model_twin_bit_for_bit)
{
    for (int dt = 0; dt < 2; dt++)
        for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
            ag_dtype dtype = dt ? AG_F64 : AG_F32;
            nn_model *m = nn_model_new(NULL, NULL);
            ag_tensor *mw = nn_param(m, "w", dtype, 2, (int64_t[]){5, 7});
            ag_tensor *mb = nn_param(m, "b", dtype, 1, (int64_t[]){7});
            ag_tensor *lw = ag_param_new(dtype, 2, (int64_t[]){5, 7});
            ag_tensor *lb = ag_param_new(dtype, 1, (int64_t[]){7});
            ag_tensor *ps[] = {lw, lb};
            nn_optim *om = configs[c].model(m), *ol = configs[c].list(2, ps);
            cr_assert_eq(nn_optim_status(ol), AG_OK, "%s", nn_optim_errmsg(ol));
            cr_assert(!nn_optim_is_nil(om));
            fill_pattern(mw, 1.0, 0.0);
            fill_pattern(lw, 1.0, 0.0);
            fill_pattern(mb, 0.5, 1.0);
            fill_pattern(lb, 0.5, 1.0);
            for (int step = 0; step < 4; step++) {
                /* Gradients that change with the step. */
                fill_pattern(ag_grad(mw), 0.3, step);
                fill_pattern(ag_grad(lw), 0.3, step);
                fill_pattern(ag_grad(mb), 0.2, 2.0 * step);
                fill_pattern(ag_grad(lb), 0.2, 2.0 * step);
                nn_optim_step(om);
                nn_optim_step(ol);
            }
            size_t es = ag_dtype_size(dtype);
            cr_expect(!memcmp(ag_data(mw), ag_data(lw), 35 * es), "%s %s: w differs",
                      configs[c].name, ag_dtype_name(dtype));
            cr_expect(!memcmp(ag_data(mb), ag_data(lb), 7 * es), "%s %s: b differs",
                      configs[c].name, ag_dtype_name(dtype));
            cr_expect(ag_get(mw, 3) != sin(0.37 * 3), "%s: nothing moved", configs[c].name);
            cr_expect_eq(nn_optim_steps(ol), 4);
            cr_expect_str_eq(nn_optim_name(ol), nn_optim_name(om));
            nn_optim_free(om);
            nn_optim_free(ol);
            ag_param_free(lw);
            ag_param_free(lb);
            nn_model_free(m);
        }
}

Test(plain_list, a_model_parameter_may_be_listed_and_steps_allocate_nothing)
{
    alloc_hooks h = hooks_counting();
    nn_model *m = nn_model_new(hook_alloc, &h);
    ag_tensor *w = nn_param(m, "w", AG_F32, 1, (int64_t[]){40});
    ag_tensor *other = ag_param_new_alloc(hook_alloc, &h, AG_F32, 1, (int64_t[]){3});
    ag_fill(ag_grad(w), 1.0);
    ag_fill(ag_grad(other), -1.0);
    nn_optim *o = nn_sgd_new_params(hook_alloc, &h, 2, (ag_tensor *[]){w, other}, 0.5, 0, 0, 0);
    long before = h.requests;
    for (int i = 0; i < 4; i++)
        nn_optim_step(o);
    cr_expect_eq(h.requests, before);
    cr_expect_float_eq(ag_get(w, 39), -2.0, 1e-6);
    cr_expect_float_eq(ag_get(other, 0), 2.0, 1e-6);
    /* The model grows and moves w's buffers: the list follows the handle. */
    nn_param(m, "late", AG_F32, 1, (int64_t[]){5000});
    ag_fill(ag_grad(w), 1.0);
    nn_optim_step(o);
    cr_expect_float_eq(ag_get(w, 39), -2.5, 1e-6);
    cr_expect_eq(nn_optim_status(o), AG_OK, "%s", nn_optim_errmsg(o));
    nn_optim_free(o);
    ag_param_free(other);
    nn_model_free(m);
    cr_expect_eq(h.live, 0);
    cr_expect_eq(h.bad_osize, 0);
}

Test(plain_list, bad_lists_and_settings_are_named)
{
    ag_tensor *a = ag_param_new(AG_F64, 1, (int64_t[]){2});
    ag_tensor *b32 = ag_param_new(AG_F32, 1, (int64_t[]){2});
    ag_tape *t = ag_tape_new();
    ag_tensor *tape_tensor = ag_ones(t, AG_F64, 1, (int64_t[]){2});
    struct {
        nn_optim *o;
        ag_status st;
        const char *part;
    } cases[] = {
        {nn_sgd_new_params(NULL, NULL, 1, NULL, 0.1, 0, 0, 0), AG_EINVAL,
         "nn_sgd_new_params: 1 parameters at"},
        {nn_adam_new_params(NULL, NULL, 0, &a, 0.1, 0.9, 0.999, 1e-8, 0), AG_EINVAL,
         "nn_adam_new_params: 0 parameters"},
        {nn_adamw_new_params(NULL, NULL, 2, (ag_tensor *[]){a, NULL}, 0.1, 0.9, 0.999, 1e-8, 0),
         AG_EINVAL, "nn_adamw_new_params: parameter 1 is NULL"},
        {nn_rmsprop_new_params(NULL, NULL, 1, &tape_tensor, 0.1, 0.99, 1e-8, 0, 0), AG_EINVAL,
         "nn_rmsprop_new_params: parameter 0 is not a parameter"},
        {nn_adagrad_new_params(NULL, NULL, 2, (ag_tensor *[]){a, b32}, 0.1, 1e-10, 0), AG_EDTYPE,
         "nn_adagrad_new_params: parameter 1 is f32 but parameter 0 is f64"},
        {nn_sgd_new_params(NULL, NULL, 2, (ag_tensor *[]){a, a}, 0.1, 0, 0, 0), AG_EINVAL,
         "nn_sgd_new_params: parameter 1 is parameter 0 again"},
        {nn_sgd_new_params(NULL, NULL, 1, &a, -1, 0, 0, 0), AG_EINVAL,
         "nn_sgd_new_params: learning rate -1"},
        {nn_sgd_new_params(NULL, NULL, 1, &a, 0.1, 0, 0, 1), AG_EINVAL,
         "nn_sgd_new_params: Nesterov momentum needs momentum > 0"},
        {nn_adam_new_params(NULL, NULL, 1, &a, 0.1, 1.0, 0.999, 1e-8, 0), AG_EINVAL,
         "nn_adam_new_params: beta1 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect(nn_optim_is_nil(cases[i].o), "case %zu", i);
        expect_msg(cases[i].o, cases[i].st, cases[i].part);
        nn_optim_step(cases[i].o);   /* harmless */
        nn_optim_free(cases[i].o);
    }
    /* An optimizer in error keeps its first message. */
    nn_optim *o = nn_sgd_new_params(NULL, NULL, 1, &a, 0.1, 0, 0, 0);
    nn_optim_set_lr(o, -2);
    expect_msg(o, AG_EINVAL, "nn_optim_set_lr: learning rate -2");
    nn_optim_set_lr(o, NAN);
    expect_msg(o, AG_EINVAL, "learning rate -2");
    nn_optim_free(o);
    cr_expect_eq(nn_optim_status(NULL), AG_EINVAL);
    ag_tape_free(t);
    ag_param_free(a);
    ag_param_free(b32);
}

Test(plain_list, out_of_memory_is_an_optimizer_in_error)
{
    ag_tensor *a = ag_param_new(AG_F64, 1, (int64_t[]){2});
    alloc_hooks h = hooks_failing_at(1);
    nn_optim *o = nn_adam_new_params(hook_alloc, &h, 1, &a, 0.1, 0.9, 0.999, 1e-8, 0);
    cr_expect(nn_optim_is_nil(o));
    expect_msg(o, AG_ENOMEM, "nn_adam_new_params: out of memory");
    nn_optim_free(o);
    h = hooks_failing_at(0);
    h.fail_from = 1;
    o = nn_lbfgs_new_params(hook_alloc, &h, 1, &a, NULL);
    cr_expect_eq(nn_optim_status(o), AG_ENOMEM);
    nn_optim_free(o);
    cr_expect_eq(h.live, 0);
    ag_param_free(a);
}
