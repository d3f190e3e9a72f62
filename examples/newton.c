/*
** newton.c: second derivatives and fast re-evaluation, on the
** n-dimensional Rosenbrock function
**
**     f(x) = sum over i < n-1 of 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2,
**
** whose minimum is 0 at x = (1, ..., 1), from the classic start
** x = (-1.2, 1, -1.2, 1, ...). Three ways:
**
** (1) Newton's method. ag_hessian gives the gradient g and the Hessian H
**     (forward over reverse: one pass per column); the step solves
**     H p = -g (ag_solve). Far from the minimum H need not be positive
**     definite, so where p is no descent direction H + lambda I is tried
**     with a growing lambda; a backtracking line search keeps f falling.
**     (Shifting wherever H is indefinite, as a Cholesky test would, lands
**     in the local minimum near (-1, 1, ..., 1), f = 3.99, from this start.)
** (2) L-BFGS (nn_lbfgs_step) on a plain parameter, with a closure that
**     records f on a tape and runs backward at every evaluation.
** (3) The same L-BFGS, with a closure that replays a plan (ag_plan) frozen
**     once from one recording: nothing recorded, nothing allocated.
**
** Then the time per gradient of recording again against replaying. A plan
** saves what recording costs per op (about 20 ns a scalar op); on this
** function's 100-element vectors the arithmetic is most of the time, so
** the two are close there, and replaying wins by far at small --dim.
**
**     usage: newton [--dim N] [--evals K]
*/
#include "autograd.h"
#include "nn.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_DIM = 1000 };

/* f of x [n], with the library's ops: a = x[0..n-1), b = x[1..n). */
static ag_tensor *rosenbrock(ag_tape *t, ag_tensor *x)
{
    int64_t n = ag_shape(x)[0];
    ag_tensor *a = ag_slice(t, x, 0, 0, n - 1, 1), *b = ag_slice(t, x, 0, 1, n, 1);
    ag_tensor *valley = ag_sub(t, b, ag_square(t, a));
    ag_tensor *slope = ag_add_scalar(t, ag_neg(t, a), 1.0);
    return ag_sum(t, ag_add(t, ag_mul_scalar(t, ag_square(t, valley), 100.0), ag_square(t, slope)));
}

/* The same as an ag_fn, for the drivers. */
static ag_tensor *rosenbrock_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return rosenbrock(t, x[0]);
}

static void start_point(int n, double *x)
{
    for (int i = 0; i < n; i++)
        x[i] = i % 2 ? 1.0 : -1.2;
}

static double distance_to_optimum(int n, const double *x)
{
    double d = 0;
    for (int i = 0; i < n; i++)
        d = fmax(d, fabs(x[i] - 1.0));
    return d;
}

static double max_abs(int n, const double *v)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(ag_tape *t, const char *what)
{
    fprintf(stderr, "newton: %s: %s\n", what, ag_tape_errmsg(t));
    return 1;
}

/* ------------------------------------------------------- (1) Newton */

/* f at x, recorded on t (which the caller resets). */
static double value_at(ag_tape *t, int n, const double *x)
{
    ag_tensor *xt = ag_tensor_from(t, AG_F64, 1, (int64_t[]){n}, x);
    return ag_item(rosenbrock(t, xt));
}

/* Solves (H + lambda I) p = -g (H and g as arrays) on t, which it
** resets; returns g'p, or NAN when the system is singular. */
static double newton_direction(ag_tape *t, int n, const double *h, const double *g,
                               double lambda, double *p)
{
    ag_tape_reset(t);
    ag_tensor *ht = ag_tensor_from(t, AG_F64, 2, (int64_t[]){n, n}, h);
    ag_tensor *rhs = ag_tensor_from(t, AG_F64, 2, (int64_t[]){n, 1}, g);
    ag_tensor *shifted = ag_add(t, ht, ag_mul_scalar(t, ag_eye(t, AG_F64, n), lambda));
    ag_tensor *sol = ag_solve(t, shifted, ag_neg(t, rhs));
    if (ag_tape_status(t) != AG_OK)
        return NAN;
    double slope = 0;
    for (int i = 0; i < n; i++) {
        p[i] = ag_get(sol, i);
        slope += p[i] * g[i];
    }
    return slope;
}

static int run_newton(ag_tape *t, int n)
{
    double x[MAX_DIM], g[MAX_DIM], p[MAX_DIM], trial[MAX_DIM];
    double *h = malloc((size_t)n * (size_t)n * sizeof *h);
    if (!h) {
        fprintf(stderr, "newton: out of memory\n");
        return 1;
    }
    start_point(n, x);
    int iterations = 0, shifts = 0;
    double f = 0, gmax = INFINITY;
    for (; iterations < 200; iterations++) {
        ag_tape_reset(t);
        ag_tensor *xt = ag_tensor_from(t, AG_F64, 1, (int64_t[]){n}, x);
        ag_tensor *gt, *ht;
        f = ag_item(ag_hessian(t, rosenbrock_fn, NULL, 1, &xt, &gt, &ht));
        if (ag_tape_status(t) != AG_OK) {
            free(h);
            return fail(t, "ag_hessian");
        }
        memcpy(g, ag_data(gt), (size_t)n * sizeof *g);
        memcpy(h, ag_data(ht), (size_t)n * (size_t)n * sizeof *h);
        gmax = max_abs(n, g);
        if (gmax <= 1e-9)
            break;
        /* Newton's step when it goes downhill; else H + lambda I, lambda
        ** growing from a thousandth of the gradient's scale until it does. */
        double lambda = 0, slope = newton_direction(t, n, h, g, 0, p);
        while (!(slope < 0) && lambda < 1e12) {
            lambda = lambda ? lambda * 10 : 1e-3 * (1 + gmax);
            slope = newton_direction(t, n, h, g, lambda, p);
        }
        if (!(slope < 0)) {
            free(h);
            fprintf(stderr, "newton: no descent direction at iteration %d\n", iterations);
            return 1;
        }
        shifts += lambda > 0;
        /* Backtracking: the full step first, halved until f falls enough. */
        double step = 1;
        for (int k = 0; k < 60; k++, step /= 2) {
            for (int i = 0; i < n; i++)
                trial[i] = x[i] + step * p[i];
            ag_tape_reset(t);
            if (value_at(t, n, trial) <= f + 1e-4 * step * slope)
                break;
        }
        memcpy(x, trial, (size_t)n * sizeof *x);
    }
    free(h);
    printf("(1) Newton (ag_hessian, ag_solve): %d iterations (%d shifted), f = %.3e, "
           "max |g| = %.3e, max |x - 1| = %.3e\n",
           iterations, shifts, f, gmax, distance_to_optimum(n, x));
    return 0;
}

/* ----------------------------------------------- (2) and (3) L-BFGS */

typedef struct problem {
    ag_tape *t;
    ag_tensor *x;     /* the parameter L-BFGS moves */
    ag_plan *plan;    /* (3): replayed instead of recording */
    int n;
} problem;

/* (2): record f and its backward at the parameter's values. */
static ag_status recorded_gradient(void *ud, double *loss)
{
    problem *p = ud;
    ag_tape_reset(p->t);
    ag_tensor *f = rosenbrock(p->t, p->x);
    ag_backward(p->t, f);
    *loss = ag_item(f);
    return ag_tape_status(p->t);
}

/* (3): the plan's replay, its gradient written into the parameter's. */
static ag_status replayed_gradient(void *ud, double *loss)
{
    problem *p = ud;
    const double *x = ag_data(p->x);
    double *g = ag_data(ag_grad(p->x));
    return ag_plan_run_f64(p->plan, &x, loss, &g);
}

static int run_lbfgs(problem *p, nn_closure_fn closure, const char *label, double *x_out)
{
    double *x = ag_data(p->x);
    start_point(p->n, x);
    nn_lbfgs_options opt = {.max_iter = 1000, .max_eval = 2000, .tolerance_grad = 1e-9,
                            .tolerance_change = 1e-15};
    nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &p->x, &opt);
    double f = nn_lbfgs_step(o, closure, p);
    if (nn_optim_status(o) != AG_OK) {
        fprintf(stderr, "newton: %s: %s\n", label, nn_optim_errmsg(o));
        nn_optim_free(o);
        return 1;
    }
    printf("%s: %lld iterations, %lld gradients, f = %.3e, max |g| = %.3e, max |x - 1| = %.3e\n",
           label, (long long)nn_optim_steps(o), (long long)nn_lbfgs_evaluations(o), f,
           max_abs(p->n, ag_data(ag_grad(p->x))), distance_to_optimum(p->n, x));
    memcpy(x_out, x, (size_t)p->n * sizeof *x);
    nn_optim_free(o);
    return 0;
}

/* ------------------------------------------- recording against replay */

static int time_gradients(problem *p, int evals)
{
    double loss, best_record = INFINITY, best_replay = INFINITY;
    for (int round = 0; round < 3; round++) {
        double t0 = seconds();
        for (int k = 0; k < evals; k++)
            recorded_gradient(p, &loss);
        double t1 = seconds();
        for (int k = 0; k < evals; k++)
            replayed_gradient(p, &loss);
        double t2 = seconds();
        best_record = fmin(best_record, (t1 - t0) / evals);
        best_replay = fmin(best_replay, (t2 - t1) / evals);
    }
    if (ag_tape_status(p->t) != AG_OK)
        return fail(p->t, "recording");
    printf("time per gradient, n = %d: recording %.2f us, replaying the plan %.2f us "
           "(%zu instructions): recording / replaying = %.2f\n",
           p->n, best_record * 1e6, best_replay * 1e6, ag_plan_ops(p->plan),
           best_record / best_replay);
    return 0;
}

static void usage(FILE *f)
{
    fputs("usage: newton [--dim N] [--evals K]\n"
          "  Minimises the N-dimensional Rosenbrock function (default 100, 2 to 1000) by\n"
          "  Newton's method with ag_hessian, by L-BFGS recording each gradient, and by\n"
          "  L-BFGS replaying a plan; then times K gradients (default 2000) each way.\n",
          f);
}

int main(int argc, char **argv)
{
    int n = 100, evals = 2000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        char *end = NULL;
        long v = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
        bool ok = end && *end == '\0' && end != argv[i + 1];
        if (!strcmp(argv[i], "--dim") && ok && v >= 2 && v <= MAX_DIM)
            n = (int)v;
        else if (!strcmp(argv[i], "--evals") && ok && v >= 1 && v <= 100000000)
            evals = (int)v;
        else {
            fprintf(stderr, "newton: bad argument '%s'%s%s\n", argv[i],
                    i + 1 < argc ? " " : "", i + 1 < argc ? argv[i + 1] : "");
            usage(stderr);
            return 2;
        }
        i++;
    }
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_param_new(AG_F64, 1, (int64_t[]){n});
    if (!t || !x) {
        fprintf(stderr, "newton: out of memory\n");
        return 1;
    }
    problem p = {.t = t, .x = x, .n = n};
    int rc = run_newton(t, n);
    double x_recorded[MAX_DIM], x_replayed[MAX_DIM];
    if (!rc)
        rc = run_lbfgs(&p, recorded_gradient, "(2) L-BFGS, recording each gradient", x_recorded);
    if (!rc) {
        /* One recording, frozen: x's values are the leaf's from now on. */
        ag_tape_reset(t);
        ag_tensor *leaf = ag_requires_grad(ag_zeros(t, AG_F64, 1, (int64_t[]){n}));
        p.plan = ag_plan_new(t, rosenbrock(t, leaf), 1, &leaf);
        if (!p.plan)
            rc = fail(t, "ag_plan_new");
    }
    if (!rc)
        rc = run_lbfgs(&p, replayed_gradient, "(3) L-BFGS, replaying one plan", x_replayed);
    if (!rc) {
        double d = 0;
        for (int i = 0; i < n; i++)
            d = fmax(d, fabs(x_recorded[i] - x_replayed[i]));
        printf("(2) and (3) end at points %.3e apart\n", d);
        rc = time_gradients(&p, evals);
    }
    ag_plan_free(p.plan);
    ag_param_free(x);
    ag_tape_free(t);
    return rc;
}
