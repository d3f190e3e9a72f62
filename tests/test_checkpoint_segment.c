/*
** test_checkpoint_segment.c: gradient checkpointing (ag_checkpoint). A
** 10,000-step damped pendulum differentiated through a checkpoint every 100
** steps gives the plain tape's gradient to 1e-12 in a twentieth of its
** memory; gradient checks through checkpoints, first and second order;
** parameters as inputs, f32, nesting; and every error, named.
*/
#include "alloc_hooks.h"
#include "autograd.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- the pendulum */

/* One semi-implicit Euler step of a damped pendulum, state [theta, omega],
** damping k (rank 0):  omega' = omega + dt (-sin theta - k omega),
** theta' = theta + dt omega'. */
static const double DT = 0.01;

static ag_tensor *pendulum_step(ag_tape *t, ag_tensor *x, ag_tensor *k)
{
    ag_tensor *theta = ag_slice(t, x, 0, 0, 1, 1);
    ag_tensor *omega = ag_slice(t, x, 0, 1, 2, 1);
    ag_tensor *acc = ag_neg(t, ag_add(t, ag_sin(t, theta), ag_mul(t, k, omega)));
    omega = ag_add(t, omega, ag_mul_scalar(t, acc, DT));
    theta = ag_add(t, theta, ag_mul_scalar(t, omega, DT));
    return ag_concat(t, 2, (ag_tensor *[]){theta, omega}, 0);
}

typedef struct segment {
    int steps;
    int calls;   /* how often the segment ran */
} segment;

/* in[0] the state, in[1] the damping. */
static ag_tensor *pendulum_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    segment *s = ud;
    s->calls++;
    ag_tensor *x = in[0];
    for (int i = 0; i < s->steps; i++)
        x = pendulum_step(t, x, in[1]);
    return x;
}

/* Peak live bytes through the hook: what the process really held. */
typedef struct peak_hooks {
    alloc_hooks h;
    size_t peak;
} peak_hooks;

static void *peak_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    peak_hooks *p = ud;
    void *r = hook_alloc(&p->h, ptr, osize, nsize);
    if (p->h.live_bytes > p->peak)
        p->peak = p->h.live_bytes;
    return r;
}

typedef struct run_result {
    double loss, dk, dx0[2];
    size_t tape_bytes;   /* ag_tape_bytes after backward, its largest */
    size_t heap_peak;    /* the hook's peak, scratch tape included */
    int calls;
} run_result;

/* The loss theta_N^2 + omega_N^2 after 'steps' steps from (1, 0) with k =
** 0.3, and its gradient in k (a parameter) and in the start; with a
** checkpoint every 'every' steps (0: none). */
static run_result pendulum(ag_dtype dt, int steps, int every)
{
    peak_hooks ph = {0};
    run_result r = {0};
    ag_tape *t = ag_tape_new_alloc(peak_alloc, &ph);
    ag_tensor *k = ag_param_scalar(dt, 0.3);
    double start[2] = {1.0, 0.0};
    float start32[2] = {1.0f, 0.0f};
    ag_tensor *x0 = ag_requires_grad(dt == AG_F64
                                         ? ag_tensor_from_f64(t, 1, (int64_t[]){2}, start)
                                         : ag_tensor_from_f32(t, 1, (int64_t[]){2}, start32));
    ag_tensor *x = x0;
    segment seg = {every, 0};
    if (every == 0)
        for (int i = 0; i < steps; i++)
            x = pendulum_step(t, x, k);
    else
        for (int i = 0; i < steps; i += every)
            x = ag_checkpoint(t, pendulum_segment, &seg, 2, (ag_tensor *[]){x, k});
    ag_tensor *loss = ag_sum(t, ag_square(t, x));
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    r.loss = ag_item(loss);
    r.dk = ag_grad_item(k);
    r.dx0[0] = ag_get(ag_grad(x0), 0);
    r.dx0[1] = ag_get(ag_grad(x0), 1);
    r.tape_bytes = ag_tape_bytes(t);
    r.calls = seg.calls;
    ag_tape_free(t);
    r.heap_peak = ph.peak;
    cr_assert_eq(ph.h.live, 0, "%ld blocks left", ph.h.live);
    cr_assert_eq(ph.h.bad_osize, 0);
    ag_param_free(k);
    return r;
}

static void expect_close(double got, double want, double tol, const char *what)
{
    cr_expect(fabs(got - want) <= tol * fmax(1.0, fabs(want)), "%s: got %.17g, want %.17g", what,
              got, want);
}

Test(checkpoint_segment, ten_thousand_steps_same_gradient_in_a_twentieth_of_the_memory)
{
    run_result plain = pendulum(AG_F64, 10000, 0);
    run_result ck = pendulum(AG_F64, 10000, 100);
    expect_close(ck.loss, plain.loss, 0, "loss");
    expect_close(ck.dk, plain.dk, 1e-12, "d/dk");
    expect_close(ck.dx0[0], plain.dx0[0], 1e-12, "d/dtheta0");
    expect_close(ck.dx0[1], plain.dx0[1], 1e-12, "d/domega0");
    cr_expect(plain.dk != 0 && isfinite(plain.dk), "d/dk %g", plain.dk);
    /* 100 segments forward, each once more in backward. */
    cr_expect_eq(ck.calls, 200);
    fprintf(stderr, "checkpoint_segment: tape bytes %zu plain, %zu checkpointed; heap peak "
            "(hook, scratch tape included) %zu plain, %zu checkpointed\n",
            plain.tape_bytes, ck.tape_bytes, plain.heap_peak, ck.heap_peak);
    cr_expect_leq(ck.tape_bytes * 20, plain.tape_bytes, "tape bytes %zu vs %zu", ck.tape_bytes,
                  plain.tape_bytes);
    cr_expect_leq(ck.heap_peak * 20, plain.heap_peak, "heap peak %zu vs %zu", ck.heap_peak,
                  plain.heap_peak);
}

Test(checkpoint_segment, f32_agrees_with_the_plain_tape)
{
    run_result plain = pendulum(AG_F32, 1000, 0);
    run_result ck = pendulum(AG_F32, 1000, 100);
    /* The same f32 operations; only the order of the sum into k differs. */
    expect_close(ck.loss, plain.loss, 0, "loss");
    expect_close(ck.dk, plain.dk, 1e-5, "d/dk");
    expect_close(ck.dx0[0], plain.dx0[0], 1e-6, "d/dtheta0");
    expect_close(ck.dx0[1], plain.dx0[1], 1e-6, "d/domega0");
    run_result ref = pendulum(AG_F64, 1000, 0);
    expect_close(ck.dk, ref.dk, 1e-3, "f32 d/dk against f64");
}

/* A segment of nested checkpoints: in[0] the state, in[1] k; ud the inner
** segment. */
static ag_tensor *nested_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    ag_tensor *x = in[0];
    for (int i = 0; i < 10; i++)
        x = ag_checkpoint(t, pendulum_segment, ud, 2, (ag_tensor *[]){x, in[1]});
    return x;
}

Test(checkpoint_segment, a_segment_may_checkpoint_inside)
{
    segment inner = {10, 0};
    ag_tape *t = ag_tape_new();
    ag_tensor *k = ag_param_scalar(AG_F64, 0.3);
    ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){1.0, 0.0});
    for (int i = 0; i < 10; i++)
        x = ag_checkpoint(t, nested_segment, &inner, 2, (ag_tensor *[]){x, k});
    ag_tensor *loss = ag_sum(t, ag_square(t, x));
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    run_result plain = pendulum(AG_F64, 1000, 0);
    expect_close(ag_item(loss), plain.loss, 0, "loss");
    expect_close(ag_grad_item(k), plain.dk, 1e-12, "d/dk");
    /* The caller's tape holds the ten outer entries and the loss. */
    cr_expect_leq(ag_tape_entries(t), 12);
    ag_param_free(k);
    ag_tape_free(t);
}

/* ------------------------------------------------------------ gradient checks */

/* A segment of two inputs [3] and [3] with a rank-0 result: a reduction of
** products and transcendental functions, so every derivative order is
** nonzero. */
static ag_tensor *mixed_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    (void)ud;
    ag_tensor *a = ag_mul(t, ag_sin(t, in[0]), ag_exp(t, ag_mul_scalar(t, in[1], 0.5)));
    return ag_sum(t, ag_add(t, ag_square(t, a), ag_mul(t, in[0], in[1])));
}

/* f(x, y) = checkpoint(mixed)(x, y) * x[0]: a checkpoint with work after it. */
static ag_tensor *through_checkpoint(ag_tape *t, ag_tensor *const *in, void *ud)
{
    (void)ud;
    ag_tensor *c = ag_checkpoint(t, mixed_segment, NULL, 2, in);
    return ag_mul(t, c, ag_slice(t, in[0], 0, 0, 1, 1));
}

/* h = <r, grad f> with the gradient recorded (create_graph): differentiating
** h checks the checkpoint's create-graph VJP. */
static ag_tensor *gradient_through_checkpoint(ag_tape *t, ag_tensor *const *in, void *ud)
{
    ag_tensor *f = through_checkpoint(t, in, ud);
    /* Square f so that the seed of the checkpoint's vjp depends on x. */
    ag_tensor *s = ag_square(t, f);
    ag_tensor *g[2];
    ag_gradients(t, s, NULL, 2, in, g, 1);
    ag_tensor *r0 = ag_tensor_from_f64(t, 1, (int64_t[]){3}, (double[]){0.7, -1.1, 0.4});
    ag_tensor *r1 = ag_tensor_from_f64(t, 1, (int64_t[]){3}, (double[]){1.3, 0.2, -0.6});
    return ag_add(t, ag_sum(t, ag_mul(t, r0, g[0])), ag_sum(t, ag_mul(t, r1, g[1])));
}

static void gradcheck_inputs(ag_tape *t, ag_tensor *x[2])
{
    x[0] = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){3}, (double[]){0.3, -0.8, 1.2}));
    x[1] = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){3}, (double[]){0.5, 0.1, -0.4}));
}

Test(checkpoint_segment, gradcheck_first_order)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2];
    gradcheck_inputs(t, x);
    ag_gradcheck_report rep;
    char err[256];
    cr_assert_eq(ag_gradcheck(through_checkpoint, NULL, 2, x, 0, &rep, err, sizeof err), AG_OK,
                 "%s", err);
    cr_expect_leq(rep.max_rel_err, 1e-7, "input %d element %lld: %.12g vs %.12g", rep.input,
                  (long long)rep.element, rep.analytic, rep.numeric);
    cr_expect_eq(rep.checked, 6);
    ag_tape_free(t);
}

Test(checkpoint_segment, gradcheck_second_order)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2];
    gradcheck_inputs(t, x);
    ag_gradcheck_report rep;
    char err[256];
    cr_assert_eq(ag_gradcheck(gradient_through_checkpoint, NULL, 2, x, 0, &rep, err, sizeof err),
                 AG_OK, "%s", err);
    cr_expect_leq(rep.max_rel_err, 1e-6, "input %d element %lld: %.12g vs %.12g", rep.input,
                  (long long)rep.element, rep.analytic, rep.numeric);
    ag_tape_free(t);
}

Test(checkpoint_segment, second_order_matches_the_plain_tape_and_keeps_no_intermediate)
{
    double want[2][3], got[2][3];
    size_t entries[2];
    for (int pass = 0; pass < 2; pass++) {
        ag_tape *t = ag_tape_new();
        ag_tensor *x[2];
        gradcheck_inputs(t, x);
        ag_tensor *f = pass ? ag_checkpoint(t, mixed_segment, NULL, 2, x)
                            : mixed_segment(t, x, NULL);
        ag_tensor *g[2], *h[2];
        ag_gradients(t, f, NULL, 2, x, g, 1);
        /* Hessian-vector product: d/dx <g[0], v>. */
        ag_tensor *v = ag_tensor_from_f64(t, 1, (int64_t[]){3}, (double[]){1, 2, 3});
        ag_gradients(t, ag_sum(t, ag_mul(t, g[0], v)), NULL, 2, x, h, 0);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        for (int i = 0; i < 3; i++) {
            (pass ? got : want)[0][i] = ag_get(h[0], i);
            (pass ? got : want)[1][i] = ag_get(h[1], i);
        }
        entries[pass] = ag_tape_entries(t);
        ag_tape_free(t);
    }
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 3; i++)
            expect_close(got[j][i], want[j][i], 1e-13, "Hessian-vector product");
    /* The plain tape records the segment's ops and their vjps; the
    ** checkpointed one an entry for the segment, its vjp's and a few. */
    cr_expect_lt(entries[1], entries[0], "%zu vs %zu entries", entries[1], entries[0]);
}

/* ------------------------------------------------------------------- errors */

static ag_tensor *failing_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    (void)ud;
    return ag_add(t, in[0], ag_ones(t, AG_F64, 1, (int64_t[]){4}));   /* [3] + [4] */
}

static ag_tensor *null_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    (void)t, (void)in, (void)ud;
    return NULL;
}

/* Returns the tensor ud points to: one of another tape, or a parameter. */
static ag_tensor *foreign_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    (void)t, (void)in;
    return ud;
}

/* Uses the parameter in ud without taking it as an input. */
static ag_tensor *capturing_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    return ag_mul(t, in[0], (ag_tensor *)ud);
}

/* Gives other values each time it runs. */
static ag_tensor *impure_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    int *calls = ud;
    return ag_mul_scalar(t, in[0], (double)++*calls);
}

static ag_tensor *log_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    (void)ud;
    return ag_log(t, in[0]);
}

static void expect_error(ag_tape *t, ag_status want, const char *part)
{
    cr_expect_eq(ag_tape_status(t), want, "status %s: %s", ag_status_str(ag_tape_status(t)),
                 ag_tape_errmsg(t));
    cr_expect(strstr(ag_tape_errmsg(t), part) != NULL, "message '%s' lacks '%s'",
              ag_tape_errmsg(t), part);
}

Test(checkpoint_segment, bad_arguments_are_named)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_tensor *y = ag_checkpoint(t, NULL, NULL, 1, &x);
    cr_expect(ag_is_nil(y));
    expect_error(t, AG_EINVAL, "ag_checkpoint: the segment function is NULL");
    ag_tape_reset(t);
    x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_checkpoint(t, log_segment, NULL, 0, &x);
    expect_error(t, AG_EINVAL, "ag_checkpoint: 0 inputs");
    ag_tape_reset(t);
    ag_checkpoint(t, log_segment, NULL, 1, (ag_tensor *[]){NULL});
    expect_error(t, AG_EINVAL, "ag_checkpoint: input 0 is NULL");
    ag_tape_reset(t);
    x = ag_ones(t, AG_F64, 1, (int64_t[]){3});
    ag_tensor *x32 = ag_ones(t, AG_F32, 1, (int64_t[]){3});
    ag_checkpoint(t, mixed_segment, NULL, 2, (ag_tensor *[]){x, x32});
    expect_error(t, AG_EDTYPE, "ag_checkpoint: dtypes differ");
    ag_tape_reset(t);
    ag_tape *other = ag_tape_new();
    ag_checkpoint(t, log_segment, NULL, 1, (ag_tensor *[]){ag_ones(other, AG_F64, 0, NULL)});
    expect_error(t, AG_EINVAL, "another tape");
    /* NULL tape: nil, no crash. */
    cr_expect(ag_is_nil(ag_checkpoint(NULL, log_segment, NULL, 1, &x)));
    ag_tape_free(other);
    ag_tape_free(t);
}

Test(checkpoint_segment, errors_of_the_segment_reach_the_caller)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_tensor *y = ag_checkpoint(t, failing_segment, NULL, 1, &x);
    cr_expect(ag_is_nil(y));
    expect_error(t, AG_ESHAPE, "ag_checkpoint: the segment failed: ag_add");
    ag_tape_reset(t);

    x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_checkpoint(t, null_segment, NULL, 1, &x);
    expect_error(t, AG_EINVAL, "ag_checkpoint: the segment returned NULL");
    ag_tape_reset(t);

    x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_tensor *mine = ag_ones(t, AG_F64, 1, (int64_t[]){3});
    ag_checkpoint(t, foreign_segment, mine, 1, &x);
    expect_error(t, AG_EINVAL, "ag_checkpoint: the segment returned a tensor of another tape");
    ag_tape_reset(t);

    /* A tensor of the caller's tape used inside: another tape's there. */
    x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    mine = ag_ones(t, AG_F64, 1, (int64_t[]){3});
    ag_checkpoint(t, capturing_segment, mine, 1, &x);
    expect_error(t, AG_EINVAL, "ag_checkpoint: the segment failed: ag_mul: input 1");
    ag_tape_reset(t);

    /* A parameter reached through ud: its gradient would be lost. */
    ag_tensor *p = ag_param_scalar(AG_F64, 2.0);
    x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    ag_checkpoint(t, capturing_segment, p, 1, &x);
    expect_error(t, AG_EINVAL, "not one of its inputs");
    ag_tape_reset(t);
    /* Under no-grad nothing is lost: the value is all. */
    x = ag_ones(t, AG_F64, 1, (int64_t[]){3});
    ag_no_grad_begin(t);
    y = ag_checkpoint(t, capturing_segment, p, 1, &x);
    ag_no_grad_end(t);
    cr_expect_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_get(y, 2), 2.0);
    ag_param_free(p);
    ag_tape_reset(t);

    /* An impure segment is caught when backward runs it again. */
    int calls = 0;
    x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){3}));
    y = ag_checkpoint(t, impure_segment, &calls, 1, &x);
    cr_expect_eq(ag_get(y, 0), 1.0);
    ag_backward(t, ag_sum(t, y));
    expect_error(t, AG_ESTATE, "ag_checkpoint (backward): the segment gave other values");
    ag_tape_free(t);
}

/* Dropout with a generator reached through ud: each run draws another mask,
** so the segment is not a pure function of its inputs. */
static ag_tensor *dropout_segment(ag_tape *t, ag_tensor *const *in, void *ud)
{
    ag_tensor *u = ag_rand(t, ud, ag_dtype_of(in[0]), ag_rank(in[0]), ag_shape(in[0]), 0, 1);
    ag_tensor *keep = ag_gt(t, u, ag_scalar(t, ag_dtype_of(in[0]), 0.5));
    return ag_mul(t, in[0], ag_mul_scalar(t, keep, 2.0));
}

/* Create-graph gradients and forward-mode tangents run the segment again
** too: a mask drawn anew there gave, with status OK, the derivative of
** another function than the one whose values the forward pass used (only
** the first-order backward compared). Each must refuse as backward does. */
Test(checkpoint_segment, an_impure_segment_is_caught_in_every_mode)
{
    enum { N = 64 };
    ag_tape *t = ag_tape_new();
    ag_rng rng;
    for (int mode = 0; mode < 3; mode++) {
        ag_tape_reset(t);
        ag_rng_seed(&rng, 5);
        ag_tensor *x = ag_requires_grad(ag_ones(t, AG_F64, 1, (int64_t[]){N}));
        ag_tensor *xin = x;
        if (mode == 2)
            xin = ag_dual(t, x, ag_ones(t, AG_F64, 1, (int64_t[]){N}));
        ag_tensor *y = ag_checkpoint(t, dropout_segment, &rng, 1, &xin);
        /* (not ag_tape_status: it would run the pending JVP of mode 2) */
        cr_assert_not(ag_is_nil(y), "mode %d", mode);
        /* y = 2 x where the first mask kept x, 0 elsewhere */
        double kept = 0;
        for (int i = 0; i < N; i++)
            kept += ag_get(y, i) != 0;
        cr_assert(kept > 0 && kept < N, "a mask that keeps %g of %d", kept, N);
        ag_tensor *g = NULL;
        if (mode == 0) {
            ag_backward(t, ag_sum(t, y));
        } else if (mode == 1) {
            ag_gradients(t, ag_sum(t, y), NULL, 1, &x, &g, 1);
        } else {
            ag_tensor *s = ag_sum(t, y);
            g = ag_tangent(s);
        }
        cr_expect_eq(ag_tape_status(t), AG_ESTATE, "mode %d: status %s, %s", mode,
                     ag_status_str(ag_tape_status(t)), ag_tape_errmsg(t));
        cr_expect(strstr(ag_tape_errmsg(t), "the segment gave other values") != NULL,
                  "mode %d: %s", mode, ag_tape_errmsg(t));
        /* No derivative of the second mask escapes. */
        for (int i = 0; g && !ag_is_nil(g) && i < ag_numel(g); i++)
            cr_expect_eq(ag_get(g, i), mode == 1 ? (ag_get(y, i) != 0) * 2.0 : kept * 2.0,
                         "mode %d: element %d is the derivative of another mask", mode, i);
    }
    ag_tape_free(t);
}

Test(checkpoint_segment, nan_propagates_and_anomaly_mode_names_the_op)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){2},
                                                       (double[]){-1.0, 4.0}));
    ag_tensor *y = ag_checkpoint(t, log_segment, NULL, 1, &x);
    ag_backward(t, ag_sum(t, y));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(isnan(ag_get(y, 0)));
    cr_expect_eq(ag_get(y, 1), log(4.0));
    cr_expect_eq(ag_get(ag_grad(x), 0), -1.0);
    cr_expect_eq(ag_get(ag_grad(x), 1), 0.25);
    ag_tape_reset(t);
    ag_tape_set_anomaly(t, 1);
    x = ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){-1.0, 4.0});
    ag_checkpoint(t, log_segment, NULL, 1, &x);
    expect_error(t, AG_ENUMERIC, "ag_checkpoint: the segment failed: anomaly: log");
    ag_tape_free(t);
}

Test(checkpoint_segment, steady_state_allocates_nothing_and_frees_everything)
{
    alloc_hooks h = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
    ag_tensor *k = ag_param_scalar(AG_F64, 0.3);
    segment seg = {50, 0};
    long after_first = 0;
    for (int pass = 0; pass < 3; pass++) {
        ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){1.0, 0.0});
        for (int i = 0; i < 4; i++)
            x = ag_checkpoint(t, pendulum_segment, &seg, 2, (ag_tensor *[]){x, k});
        ag_zero_grad(k);
        ag_backward(t, ag_sum(t, ag_square(t, x)));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        ag_tape_reset(t);
        if (pass == 1)
            after_first = h.requests;
    }
    cr_expect_eq(h.requests, after_first, "pass 3 allocated %ld times",
                 h.requests - after_first);
    ag_tape_free(t);
    ag_param_free(k);
    cr_expect_eq(h.live, 0, "%ld blocks left", h.live);
    cr_expect_eq(h.bad_osize, 0);
}

Test(checkpoint_segment, out_of_memory_is_reported_at_every_allocation)
{
    for (long n = 1; n < 200; n++) {
        alloc_hooks h = hooks_failing_at(n);
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        if (!t)
            continue;
        ag_tensor *k = ag_param_scalar(AG_F64, 0.3);
        segment seg = {20, 0};
        ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){2}, (double[]){1.0, 0.0});
        for (int i = 0; i < 3; i++)
            x = ag_checkpoint(t, pendulum_segment, &seg, 2, (ag_tensor *[]){x, k});
        ag_backward(t, ag_sum(t, ag_square(t, x)));
        ag_status st = ag_tape_status(t);
        cr_expect(st == AG_OK || st == AG_ENOMEM, "refusing request %ld: %s", n,
                  ag_tape_errmsg(t));
        if (st == AG_ENOMEM)
            cr_expect(strlen(ag_tape_errmsg(t)) > 0);
        ag_tape_free(t);
        ag_param_free(k);
        cr_expect_eq(h.live, 0, "refusing request %ld left %ld blocks", n, h.live);
        if (h.refused == 0)
            break;   /* the whole run needs fewer than n requests */
    }
}

Test(checkpoint_segment, the_graph_export_replays_through_a_checkpoint)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x[2];
    gradcheck_inputs(t, x);
    ag_tensor *y = through_checkpoint(t, x, NULL);
    FILE *f = tmpfile();
    cr_assert(f);
    cr_expect_eq(ag_dot_write(t, y, NULL, f), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(ag_html_write(t, y, NULL, f), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_gt(ftell(f), 0);
    fclose(f);
    /* The replays stored nothing: backward still gives the gradient once. */
    ag_backward(t, y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect(ag_grad(x[1]) != NULL);
    ag_tape_free(t);
}

/* ------------------------------------------------------------ forward mode */

/* The pendulum's final state after 'steps' steps, with a checkpoint every
** 'every' (0: none), its start x0 carrying tangent v; and the Hessian-
** vector product of theta_N^2 + omega_N^2 along v by forward over reverse. */
static void pendulum_forward_mode(int steps, int every, double jv[2], double hv[2])
{
    ag_tape *t = ag_tape_new();
    ag_tensor *k = ag_scalar(t, AG_F64, 0.3);
    ag_tensor *x0 = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){2},
                                                    (double[]){1.0, 0.0}));
    ag_tensor *v = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){0.5, -1.0});
    ag_tensor *x = ag_dual(t, x0, v);
    segment seg = {.steps = every};
    for (int done = 0; done < steps;) {
        if (every) {
            x = ag_checkpoint(t, pendulum_segment, &seg, 2, (ag_tensor *[]){x, k});
            done += every;
        } else {
            x = pendulum_step(t, x, k);
            done++;
        }
    }
    ag_tensor *dx = ag_tangent(x);
    ag_backward(t, ag_sum(t, ag_square(t, x)));
    ag_tensor *h = ag_tangent(ag_grad(x0));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_not_null(dx);
    cr_assert_not_null(h);
    for (int i = 0; i < 2; i++) {
        jv[i] = ag_get(dx, i);
        hv[i] = ag_get(h, i);
    }
    ag_tape_free(t);
}

Test(checkpoint_segment, forward_mode_and_hessian_vector_products_pass_through)
{
    double jv_plain[2], hv_plain[2], jv[2], hv[2];
    pendulum_forward_mode(1000, 0, jv_plain, hv_plain);
    pendulum_forward_mode(1000, 100, jv, hv);
    for (int i = 0; i < 2; i++) {
        expect_close(jv[i], jv_plain[i], 1e-12, "J v");
        expect_close(hv[i], hv_plain[i], 1e-12, "H v");
    }
}
