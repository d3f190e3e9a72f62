/*
** bench_replay.c: record once, replay (issue 15). On bench_scalar.c's graph
** of 1,000,000 scalar ops: our recording and backward per op, and a plan
** (ag_plan) replaying forward and backward at new inputs per op, beside
** ADOL-C's taping, gradient() replay and reverse sweep (fos_reverse) on the
** same graph; and the Hessian of the 10-dimensional Rosenbrock function,
** ours by reverse over reverse (create_graph, one backward per row), and by
** ag_hessian (forward over reverse), and a plan of the recorded gradient
** (a Hessian-vector product per run), each
** beside ADOL-C's hessian(). ADOL-C is optional (found by meson): without it the
** reference column says so.
*/
#define _POSIX_C_SOURCE 200809L

#include "bench.h"

#include "autograd.h"

#if BENCH_HAVE_ADOLC
#include "adolc_peer.h"
#endif

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { INPUTS = 8, DATA_ROWS = 100, OPS_PER_SAMPLE = 20, SAMPLES = 50000, ROSEN_N = 10 };

/* bench_scalar.c's data, by the same formulas */
static double x_at(int r, int i) { return (double)((r * 7 + i * 3) % 17) / 17.0 - 0.5; }
static double target_at(int r) { return (double)((r * 5) % 11) / 11.0 - 0.5; }
static double w_init(int i) { return 0.1 * (double)(i + 1) / INPUTS; }

typedef struct ours_result {
    double record_s, backward_s, replay_s, replay_forward_s;
    double loss, grad_w0;      /* the recording's, at the initial point */
    double plan_loss, plan_grad_w0;   /* the plan's at the same point */
    size_t entries, plan_ops;
    bool ok;
    char err[256];
} ours_result;

static ours_result run_ours(int samples, int repeat)
{
    ours_result res = {.record_s = INFINITY, .backward_s = INFINITY, .replay_s = INFINITY,
                       .replay_forward_s = INFINITY};
    ag_tensor *w[INPUTS + 1];
    for (int i = 0; i < INPUTS; i++)
        w[i] = ag_param_scalar(AG_F64, w_init(i));
    w[INPUTS] = ag_param_scalar(AG_F64, 0.0);   /* b */
    ag_tape *t = ag_tape_new();
    ag_plan *plan = NULL;
    static ag_tensor *x[DATA_ROWS][INPUTS], *neg_target[DATA_ROWS];
    for (int rep = 0; rep < repeat && t; rep++) {
        ag_tape_reset(t);
        ag_zero_grads(INPUTS + 1, w);
        for (int r = 0; r < DATA_ROWS; r++) {
            for (int i = 0; i < INPUTS; i++)
                x[r][i] = ag_scalar(t, AG_F64, x_at(r, i));
            neg_target[r] = ag_scalar(t, AG_F64, -target_at(r));
        }
        double t0 = bench_now();
        ag_tensor *loss = ag_scalar(t, AG_F64, 0.0);
        for (int s = 0; s < samples; s++) {
            int r = s % DATA_ROWS;
            ag_tensor *h = w[INPUTS];
            for (int i = 0; i < INPUTS; i++)
                h = ag_add(t, h, ag_mul(t, w[i], x[r][i]));
            ag_tensor *d = ag_add(t, ag_tanh(t, h), neg_target[r]);
            loss = ag_add(t, loss, ag_pow_scalar(t, d, 2.0));
        }
        double t1 = bench_now();
        ag_backward(t, loss);
        double t2 = bench_now();
        if (ag_tape_status(t) != AG_OK)
            break;
        res.record_s = fmin(res.record_s, t1 - t0);
        res.backward_s = fmin(res.backward_s, t2 - t1);
        res.loss = ag_item(loss);
        res.grad_w0 = ag_grad_item(w[0]);
        res.entries = ag_tape_entries(t);
        if (rep == repeat - 1)
            plan = ag_plan_new(t, loss, INPUTS + 1, w);
    }
    if (!t || ag_tape_status(t) != AG_OK || !plan) {
        snprintf(res.err, sizeof res.err, "%s", t ? ag_tape_errmsg(t) : "out of memory");
        goto done;
    }
    ag_tape_reset(t);   /* the plan stands alone */
    res.plan_ops = ag_plan_ops(plan);
    double in[INPUTS + 1], g[INPUTS + 1], y;
    const double *leaves[INPUTS + 1];
    double *grads[INPUTS + 1];
    for (int i = 0; i <= INPUTS; i++) {
        leaves[i] = &in[i];
        grads[i] = &g[i];
    }
    for (int rep = 0; rep < repeat; rep++) {
        for (int i = 0; i <= INPUTS; i++)
            in[i] = (i < INPUTS ? w_init(i) : 0.0) * (1.0 + 1e-3 * (rep + 1));
        double t0 = bench_now();
        ag_status s = ag_plan_run_f64(plan, leaves, &y, grads);
        double t1 = bench_now();
        ag_plan_run_f64(plan, leaves, &y, NULL);
        double t2 = bench_now();
        if (s != AG_OK) {
            snprintf(res.err, sizeof res.err, "%s", ag_plan_errmsg(plan));
            goto done;
        }
        res.replay_s = fmin(res.replay_s, t1 - t0);
        res.replay_forward_s = fmin(res.replay_forward_s, t2 - t1);
    }
    for (int i = 0; i <= INPUTS; i++)
        in[i] = i < INPUTS ? w_init(i) : 0.0;
    ag_plan_run_f64(plan, leaves, &res.plan_loss, grads);
    res.plan_grad_w0 = g[0];
    res.ok = true;
done:
    ag_plan_free(plan);
    ag_tape_free(t);
    for (int i = 0; i <= INPUTS; i++)
        ag_param_free(w[i]);
    return res;
}

/* ------------------------------------------------------------- Hessian */

static double rosen_x(int i) { return i % 2 ? 1.2 : -0.8 + 0.05 * i; }

/* sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2 */
static ag_tensor *rosen(ag_tape *t, ag_tensor *x, int n)
{
    ag_tensor *f = ag_scalar(t, AG_F64, 0.0);
    for (int i = 0; i + 1 < n; i++) {
        ag_tensor *xi = ag_index(t, x, 1, (int64_t[]){i});
        ag_tensor *xj = ag_index(t, x, 1, (int64_t[]){i + 1});
        ag_tensor *a = ag_sub(t, xj, ag_square(t, xi));
        ag_tensor *c = ag_sub(t, ag_scalar(t, AG_F64, 1.0), xi);
        f = ag_add(t, f, ag_add(t, ag_mul_scalar(t, ag_square(t, a), 100.0), ag_square(t, c)));
    }
    return f;
}

/* Reverse over reverse: the gradient recorded (create_graph), then one
** backward per element of it. Best seconds per Hessian; H[1][0] out. */
static double our_hessian(int n, int repeat, double *h10)
{
    double best = INFINITY;
    ag_tape *t = ag_tape_new();
    enum { CALLS = 50 };
    double xv[ROSEN_N];
    for (int i = 0; i < n; i++)
        xv[i] = rosen_x(i);
    for (int rep = 0; rep < repeat && t; rep++) {
        double t0 = bench_now();
        for (int call = 0; call < CALLS; call++) {
            ag_tape_reset(t);
            ag_tensor *x = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){n}, xv));
            ag_tensor *f = rosen(t, x, n);
            ag_tensor *g;
            ag_gradients(t, f, NULL, 1, &x, &g, 1);
            for (int i = 0; i < n; i++) {
                ag_tensor *row;
                ag_gradients(t, ag_index(t, g, 1, (int64_t[]){i}), NULL, 1, &x, &row, 0);
                if (i == 1)
                    *h10 = ag_get(row, 0);
            }
        }
        if (ag_tape_status(t) != AG_OK) {
            fprintf(stderr, "bench: hessian: %s\n", ag_tape_errmsg(t));
            best = NAN;
            break;
        }
        best = fmin(best, (bench_now() - t0) / CALLS);
    }
    ag_tape_free(t);
    return best;
}

static ag_tensor *rosen_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return rosen(t, x[0], (int)ag_shape(x[0])[0]);
}

/* ag_hessian: forward over reverse, one pass per element. Best seconds per
** Hessian; H[1][0] out. */
static double driver_hessian(int n, int repeat, double *h10)
{
    double best = INFINITY;
    ag_tape *t = ag_tape_new();
    enum { CALLS = 50 };
    double xv[ROSEN_N];
    for (int i = 0; i < n; i++)
        xv[i] = rosen_x(i);
    for (int rep = 0; rep < repeat && t; rep++) {
        double t0 = bench_now();
        for (int call = 0; call < CALLS; call++) {
            ag_tape_reset(t);
            ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){n}, xv), *h;
            ag_hessian(t, rosen_fn, NULL, 1, &x, NULL, &h);
            if (call == 0 && ag_tape_status(t) == AG_OK)
                *h10 = ag_get(h, n);
        }
        if (ag_tape_status(t) != AG_OK) {
            fprintf(stderr, "bench: ag_hessian: %s\n", ag_tape_errmsg(t));
            best = NAN;
            break;
        }
        best = fmin(best, (bench_now() - t0) / CALLS);
    }
    ag_tape_free(t);
    return best;
}

/* The Hessian by a plan: the gradient g recorded once (create_graph) and
** frozen as y = <g, v> with v a leaf too, so that a run with v = e_i gives
** dy/dx = H e_i, row i. Best seconds per Hessian (n runs); H[1][0] out. */
static double plan_hessian(int n, int repeat, double *h10)
{
    double best = INFINITY;
    ag_tape *t = ag_tape_new();
    double xv[ROSEN_N], e[ROSEN_N] = {0}, row[ROSEN_N], dv[ROSEN_N], y;
    for (int i = 0; i < n; i++)
        xv[i] = rosen_x(i);
    ag_tensor *x = ag_requires_grad(ag_tensor_from_f64(t, 1, (int64_t[]){n}, xv));
    ag_tensor *v = ag_requires_grad(ag_zeros(t, AG_F64, 1, (int64_t[]){n})), *g;
    ag_gradients(t, rosen(t, x, n), NULL, 1, &x, &g, 1);
    ag_plan *p = ag_plan_new(t, ag_sum(t, ag_mul(t, g, v)), 2, (ag_tensor *[]){x, v});
    if (!p) {
        fprintf(stderr, "bench: hessian plan: %s\n", ag_tape_errmsg(t));
        ag_tape_free(t);
        return NAN;
    }
    ag_tape_free(t);
    enum { CALLS = 200 };
    for (int rep = 0; rep < repeat; rep++) {
        double t0 = bench_now();
        for (int call = 0; call < CALLS; call++)
            for (int i = 0; i < n; i++) {
                e[i] = 1;
                ag_plan_run_f64(p, (const double *[]){xv, e}, &y, (double *[]){row, dv});
                e[i] = 0;
                if (i == 1)
                    *h10 = row[0];
            }
        best = fmin(best, (bench_now() - t0) / CALLS);
    }
    ag_plan_free(p);
    return best;
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

void bench_replay(bench_table *t, const bench_options *o)
{
    int samples = o->quick ? SAMPLES / 10 : SAMPLES;
    double ops = (double)samples * OPS_PER_SAMPLE;
    ours_result ours = run_ours(samples, o->repeat);
    if (!ours.ok) {
        fprintf(stderr, "bench: replay: %s\n", ours.err);
        return;
    }
    if (!close_to(ours.plan_loss, ours.loss) || !close_to(ours.plan_grad_w0, ours.grad_w0))
        fprintf(stderr, "bench: replay: the plan gives loss %.17g, dL/dw0 %.17g; the tape %.17g, "
                "%.17g\n", ours.plan_loss, ours.plan_grad_w0, ours.loss, ours.grad_w0);
    double tape_ns = NAN, grad_ns = NAN, fwd_ns = NAN, rev_ns = NAN, hess_ref = NAN, h10_ref = NAN;
    char note[160];
#if BENCH_HAVE_ADOLC
    double xs[DATA_ROWS][INPUTS], nt[DATA_ROWS], w0[INPUTS], xr[ROSEN_N];
    for (int r = 0; r < DATA_ROWS; r++) {
        for (int i = 0; i < INPUTS; i++)
            xs[r][i] = x_at(r, i);
        nt[r] = -target_at(r);
    }
    for (int i = 0; i < INPUTS; i++)
        w0[i] = w_init(i);
    adolc_scalar_result a = adolc_scalar(samples, o->repeat, (const double(*)[8])xs, nt, w0, 0.0);
    if (!a.ok)
        snprintf(note, sizeof note, "ADOL-C failed on the scalar graph");
    else if (!close_to(a.loss, ours.loss) || !close_to(a.grad_w0, ours.grad_w0))
        snprintf(note, sizeof note, "results differ: loss %.17g vs ADOL-C %.17g", ours.loss,
                 a.loss);
    else
        snprintf(note, sizeof note, "ADOL-C (adouble tape); loss and dL/dw0 agree");
    if (a.ok) {
        tape_ns = a.tape_s / ops * 1e9;
        grad_ns = a.gradient_s / ops * 1e9;
        fwd_ns = a.forward_s / ops * 1e9;
        rev_ns = a.reverse_s / ops * 1e9;
    }
    for (int i = 0; i < ROSEN_N; i++)
        xr[i] = rosen_x(i);
    adolc_hessian_result ah = adolc_rosenbrock_hessian(ROSEN_N, o->repeat, xr);
    if (ah.ok) {
        hess_ref = ah.seconds * 1e6;
        h10_ref = ah.h10;
    }
#else
    snprintf(note, sizeof note, "ADOL-C not found by meson (Debian: libadolc-dev)");
#endif
    char name[96];
    double k = ops / 1000;
    snprintf(name, sizeof name, "replay graph %.0fk ops, record vs ADOL-C taping", k);
    bench_add(t, name, ours.record_s / ops * 1e9, tape_ns, "ns/op", BENCH_LOWER_IS_BETTER, note);
    snprintf(name, sizeof name, "replay graph %.0fk ops, backward vs ADOL-C fos_reverse", k);
    bench_add(t, name, ours.backward_s / ops * 1e9, rev_ns, "ns/op", BENCH_LOWER_IS_BETTER, note);
    snprintf(name, sizeof name, "replay graph %.0fk ops, plan forward vs ADOL-C zos_forward", k);
    bench_add(t, name, ours.replay_forward_s / ops * 1e9, fwd_ns, "ns/op", BENCH_LOWER_IS_BETTER,
              note);
    snprintf(name, sizeof name, "replay graph %.0fk ops, plan fwd+bwd vs ADOL-C gradient()", k);
    bench_add(t, name, ours.replay_s / ops * 1e9, grad_ns, "ns/op", BENCH_LOWER_IS_BETTER, note);
    double h10 = NAN;
    double hess = our_hessian(ROSEN_N, o->repeat, &h10) * 1e6;
    char hnote[160];
    if (isnan(hess_ref))
        snprintf(hnote, sizeof hnote, "%s", note);
    else if (!close_to(h10, h10_ref))
        snprintf(hnote, sizeof hnote, "H[1][0] differs: %.17g vs ADOL-C %.17g", h10, h10_ref);
    else
        snprintf(hnote, sizeof hnote, "reverse over reverse (recorded each time) vs ADOL-C "
                 "hessian() on one tape; H[1][0] agrees");
    snprintf(name, sizeof name, "rosenbrock-%d Hessian vs ADOL-C hessian()", ROSEN_N);
    bench_add(t, name, hess, hess_ref, "us", BENCH_LOWER_IS_BETTER, hnote);
    double h10d = NAN, hdriver = driver_hessian(ROSEN_N, o->repeat, &h10d) * 1e6;
    if (isnan(hess_ref))
        snprintf(hnote, sizeof hnote, "%s", note);
    else if (!close_to(h10d, h10_ref))
        snprintf(hnote, sizeof hnote, "H[1][0] differs: %.17g vs ADOL-C %.17g", h10d, h10_ref);
    else
        snprintf(hnote, sizeof hnote, "forward over reverse (recorded each time) vs ADOL-C "
                 "hessian() on one tape; H[1][0] agrees");
    snprintf(name, sizeof name, "rosenbrock-%d ag_hessian vs ADOL-C hessian()", ROSEN_N);
    bench_add(t, name, hdriver, hess_ref, "us", BENCH_LOWER_IS_BETTER, hnote);
    double h10p = NAN, hplan = plan_hessian(ROSEN_N, o->repeat, &h10p) * 1e6;
    if (isnan(hess_ref))
        snprintf(hnote, sizeof hnote, "%s", note);
    else if (!close_to(h10p, h10_ref))
        snprintf(hnote, sizeof hnote, "H[1][0] differs: %.17g vs ADOL-C %.17g", h10p, h10_ref);
    else
        snprintf(hnote, sizeof hnote, "a plan of <grad f, v>, %d runs (v = e_i) vs ADOL-C "
                 "hessian(); H[1][0] agrees", ROSEN_N);
    snprintf(name, sizeof name, "rosenbrock-%d Hessian by a plan vs ADOL-C hessian()", ROSEN_N);
    bench_add(t, name, hplan, hess_ref, "us", BENCH_LOWER_IS_BETTER, hnote);
    fprintf(stderr, "bench: replay: %zu tape entries, %zu plan instructions\n", ours.entries,
            ours.plan_ops);
}
