/*
** bench_scalar.c: the cost of recording and backpropagating one scalar op,
** on a graph of 1,000,000 ops built like micrograd's neurons: per sample,
** h = b + sum_i w_i x_i (8 mul, 8 add), y = tanh h, d = y - target (an
** add), loss += d^2 (pow, add): 20 ops. The same graph runs on PyTorch's
** 0-d float64 tensors in the same run, and both must agree on the loss and
** a gradient.
*/
#define _POSIX_C_SOURCE 200809L

#include "bench.h"

#include "autograd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { INPUTS = 8, DATA_ROWS = 100, OPS_PER_SAMPLE = 20, SAMPLES = 50000 };

/* The data, as formulas the Python script repeats exactly. */
static double x_at(int r, int i) { return (double)((r * 7 + i * 3) % 17) / 17.0 - 0.5; }
static double target_at(int r) { return (double)((r * 5) % 11) / 11.0 - 0.5; }
static double w_init(int i) { return 0.1 * (double)(i + 1) / INPUTS; }

static const char torch_script[] =
    "import sys, time, torch\n"
    "torch.set_num_threads(int(sys.argv[3]))\n"
    "N, repeat = int(sys.argv[1]), int(sys.argv[2])\n"
    "f64 = torch.float64\n"
    "best_f = best_b = float('inf')\n"
    "for _ in range(repeat):\n"
    "    w = [torch.tensor(0.1 * (i + 1) / 8, dtype=f64, requires_grad=True) for i in "
    "range(8)]\n"
    "    b = torch.tensor(0.0, dtype=f64, requires_grad=True)\n"
    "    X = [[torch.tensor(((r * 7 + i * 3) % 17) / 17.0 - 0.5, dtype=f64) for i in "
    "range(8)] for r in range(100)]\n"
    "    NT = [torch.tensor(-(((r * 5) % 11) / 11.0 - 0.5), dtype=f64) for r in range(100)]\n"
    "    t0 = time.perf_counter()\n"
    "    loss = torch.tensor(0.0, dtype=f64)\n"
    "    for s in range(N):\n"
    "        r = s % 100\n"
    "        xr = X[r]\n"
    "        h = b\n"
    "        for i in range(8):\n"
    "            h = h + w[i] * xr[i]\n"
    "        d = torch.tanh(h) + NT[r]\n"
    "        loss = loss + d ** 2\n"
    "    t1 = time.perf_counter()\n"
    "    loss.backward()\n"
    "    t2 = time.perf_counter()\n"
    "    best_f, best_b = min(best_f, t1 - t0), min(best_b, t2 - t1)\n"
    "print(best_f, best_b, repr(loss.item()), repr(w[0].grad.item()))\n";

typedef struct scalar_result {
    double forward_s, backward_s;   /* best of the repeats */
    double loss, grad_w0;
    size_t entries;
    bool ok;
    char err[256];
} scalar_result;

static scalar_result run_ours(int samples, int repeat)
{
    scalar_result res = {.forward_s = INFINITY, .backward_s = INFINITY};
    ag_tensor *w[INPUTS] = {0}, *b = ag_param_scalar(AG_F64, 0.0);
    for (int i = 0; i < INPUTS; i++)
        w[i] = ag_param_scalar(AG_F64, w_init(i));
    ag_tape *t = ag_tape_new();
    static ag_tensor *x[DATA_ROWS][INPUTS], *neg_target[DATA_ROWS];
    for (int rep = 0; rep < repeat && t; rep++) {
        ag_tape_reset(t);
        ag_zero_grads(INPUTS, w);
        ag_zero_grad(b);
        for (int r = 0; r < DATA_ROWS; r++) {
            for (int i = 0; i < INPUTS; i++)
                x[r][i] = ag_scalar(t, AG_F64, x_at(r, i));
            neg_target[r] = ag_scalar(t, AG_F64, -target_at(r));
        }
        double t0 = bench_now();
        ag_tensor *loss = ag_scalar(t, AG_F64, 0.0);
        for (int s = 0; s < samples; s++) {
            int r = s % DATA_ROWS;
            ag_tensor *h = b;
            for (int i = 0; i < INPUTS; i++)
                h = ag_add(t, h, ag_mul(t, w[i], x[r][i]));
            ag_tensor *d = ag_add(t, ag_tanh(t, h), neg_target[r]);
            loss = ag_add(t, loss, ag_pow_scalar(t, d, 2.0));
        }
        double t1 = bench_now();
        ag_backward(t, loss);
        double t2 = bench_now();
        if (ag_tape_status(t) != AG_OK) {
            snprintf(res.err, sizeof res.err, "%s", ag_tape_errmsg(t));
            break;
        }
        res.forward_s = t1 - t0 < res.forward_s ? t1 - t0 : res.forward_s;
        res.backward_s = t2 - t1 < res.backward_s ? t2 - t1 : res.backward_s;
        res.loss = ag_item(loss);
        res.grad_w0 = ag_grad_item(w[0]);
        res.entries = ag_tape_entries(t);
        res.ok = true;
    }
    if (!t)
        snprintf(res.err, sizeof res.err, "out of memory");
    ag_tape_free(t);
    for (int i = 0; i < INPUTS; i++)
        ag_param_free(w[i]);
    ag_param_free(b);
    return res;
}

static scalar_result run_torch(const bench_options *o, int samples, int repeat)
{
    scalar_result res = {.forward_s = NAN, .backward_s = NAN};
    double best_total = INFINITY;
    /* Debian's torch may be slower with more threads even here: keep the best. */
    for (int threads = 1; threads <= 2; threads++) {
        char args[64];
        snprintf(args, sizeof args, "%d %d %d", samples, repeat, threads);
        char *out = bench_python(o, torch_script, args, res.err, sizeof res.err);
        scalar_result r = {0};
        if (!out || sscanf(out, "%lf %lf %lf %lf", &r.forward_s, &r.backward_s, &r.loss,
                           &r.grad_w0) != 4) {
            if (out)
                snprintf(res.err, sizeof res.err, "unexpected output from the torch script");
            free(out);
            continue;
        }
        free(out);
        if (r.forward_s + r.backward_s < best_total) {
            best_total = r.forward_s + r.backward_s;
            r.ok = true;
            res = r;
        }
    }
    return res;
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * (1 + fabs(b)); }

void bench_scalar(bench_table *t, const bench_options *o)
{
    int samples = o->quick ? SAMPLES / 10 : SAMPLES;
    double ops = (double)samples * OPS_PER_SAMPLE;
    scalar_result ours = run_ours(samples, o->repeat);
    if (!ours.ok) {
        fprintf(stderr, "bench: scalar graph failed: %s\n", ours.err);
        return;
    }
    if (ours.entries != (size_t)ops)
        fprintf(stderr, "bench: scalar graph recorded %zu ops, not %.0f\n", ours.entries, ops);
    char note[160] = "";
    scalar_result ref = {.forward_s = NAN, .backward_s = NAN};
    if (!bench_have_torch(o)) {
        snprintf(note, sizeof note, "PyTorch not found (%s -c 'import torch' fails)", o->python);
    } else {
        /* PyTorch takes ~15 s a pass: two passes give a best without doubling the run. */
        ref = run_torch(o, samples, o->repeat < 2 ? o->repeat : 2);
        if (!ref.ok)
            snprintf(note, sizeof note, "torch script failed: %.120s", ref.err);
        else if (!close_to(ours.loss, ref.loss) || !close_to(ours.grad_w0, ref.grad_w0))
            snprintf(note, sizeof note, "results differ: loss %.17g vs %.17g", ours.loss,
                     ref.loss);
        else
            snprintf(note, sizeof note, "PyTorch 0-d float64 tensors; loss and dL/dw0 agree");
    }
    char name[96];
    snprintf(name, sizeof name, "scalar graph %.0fk ops, forward", ops / 1000);
    bench_add(t, name, ours.forward_s / ops * 1e9, ref.forward_s / ops * 1e9, "ns/op",
              BENCH_LOWER_IS_BETTER, note);
    snprintf(name, sizeof name, "scalar graph %.0fk ops, backward", ops / 1000);
    bench_add(t, name, ours.backward_s / ops * 1e9, ref.backward_s / ops * 1e9, "ns/op",
              BENCH_LOWER_IS_BETTER, note);
    snprintf(name, sizeof name, "scalar graph %.0fk ops, forward+backward", ops / 1000);
    bench_add(t, name, (ours.forward_s + ours.backward_s) / ops * 1e9,
              (ref.forward_s + ref.backward_s) / ops * 1e9, "ns/op", BENCH_LOWER_IS_BETTER,
              note);
}
