/*
** bench_conv.c: the three products of a convolution, on the layer shapes of
** examples/fashion_cnn at batch 64 (f32, 3x3, padding 1): the forward
** conv2d, the input gradient (a transposed convolution) and the weight
** gradient, in GFLOP/s (2 N O OH OW C KH KW flops each), ours beside
** PyTorch's (F.conv2d and aten.convolution_backward, oneDNN in Debian's
** build) measured in the same run. Each side runs on one and on two
** threads and keeps its faster.
*/
#define _POSIX_C_SOURCE 200809L

#include "bench.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct conv_shape {
    const char *label;
    int64_t n, c, h, w, o, k;
    int pad;
} conv_shape;

static const conv_shape shapes[] = {
    {"conv1 64x1x28x28 -> 16", 64, 1, 28, 28, 16, 3, 1},
    {"conv2 64x16x14x14 -> 32", 64, 16, 14, 14, 32, 3, 1},
};

enum { FORWARD, INPUT_GRAD, WEIGHT_GRAD, KINDS };
static const char *const kind_names[KINDS] = {"forward", "input gradient", "weight gradient"};

/* Calls per timed round: enough for some 10 ms at a few GFLOP/s. */
static int calls_for(double flops) { return flops > 5e7 ? 10 : 40; }

static double flops_of(const conv_shape *s)
{
    int64_t oh = s->h + 2 * s->pad - s->k + 1, ow = s->w + 2 * s->pad - s->k + 1;
    return 2.0 * (double)(s->n * s->o * oh * ow * s->c * s->k * s->k);
}

/* Seconds per call of 'kind', the best of 'repeat' rounds. */
static double time_ours(const conv_shape *s, int kind, int threads, int repeat)
{
    int64_t oh = s->h + 2 * s->pad - s->k + 1, ow = s->w + 2 * s->pad - s->k + 1;
    ag_tensor *x = ag_param_new(AG_F32, 4, (int64_t[]){s->n, s->c, s->h, s->w});
    ag_tensor *w = ag_param_new(AG_F32, 4, (int64_t[]){s->o, s->c, s->k, s->k});
    ag_tensor *g = ag_param_new(AG_F32, 4, (int64_t[]){s->n, s->o, oh, ow});
    ag_tape *t = ag_tape_new();
    ag_pool *pool = ag_pool_new(threads);
    double best = INFINITY;
    if (x && w && g && t && pool) {
        ag_rng r;
        ag_rng_seed(&r, 1);
        ag_fill_uniform(x, &r, -1, 1);
        ag_fill_uniform(w, &r, -1, 1);
        ag_fill_uniform(g, &r, -1, 1);
        ag_tape_set_pool(t, pool);
        const int p[AGI_CONV_PARAMS] = {1, 1, s->pad, s->pad, 1, 1, 1};
        int calls = calls_for(flops_of(s));
        for (int round = -1; round < repeat; round++) {   /* round -1 warms up */
            double start = bench_now();
            for (int i = 0; i < calls; i++) {
                ag_tape_reset(t);
                ag_no_grad_begin(t);
                if (kind == FORWARD)
                    ag_conv2d(t, x, w, NULL, 1, 1, s->pad, s->pad, 1, 1, 1);
                else if (kind == INPUT_GRAD)
                    agi_conv2d_input_grad(t, g, w, s->h, s->w, p);
                else
                    agi_conv2d_weight_grad(t, x, g, s->k, s->k, p);
                ag_no_grad_end(t);
            }
            double dt = (bench_now() - start) / calls;
            if (ag_tape_status(t) != AG_OK) {
                fprintf(stderr, "bench: conv: %s\n", ag_tape_errmsg(t));
                best = NAN;
                break;
            }
            if (round >= 0 && dt < best)
                best = dt;
        }
    }
    ag_tape_free(t);
    ag_pool_free(pool);
    ag_param_free(x), ag_param_free(w), ag_param_free(g);
    return best;
}

/* argv: n c h w o k pad threads repeat; prints seconds per call of the
** forward, the input gradient and the weight gradient, each the best of
** 'repeat' rounds. */
static const char torch_script[] =
    "import sys, time, torch\n"
    "n, c, h, w, o, k, pad, threads, repeat = map(int, sys.argv[1:10])\n"
    "torch.set_num_threads(threads); torch.manual_seed(1)\n"
    "x = torch.rand(n, c, h, w) * 2 - 1; wt = torch.rand(o, c, k, k) * 2 - 1\n"
    "y = torch.nn.functional.conv2d(x, wt, None, 1, pad)\n"
    "g = torch.rand(y.shape) * 2 - 1\n"
    "calls = 10 if 2.0 * y.numel() * c * k * k > 5e7 else 40\n"
    "cb = torch.ops.aten.convolution_backward\n"
    "fns = [lambda: torch.nn.functional.conv2d(x, wt, None, 1, pad),\n"
    "       lambda: cb(g, x, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,\n"
    "                  [True, False, False]),\n"
    "       lambda: cb(g, x, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1,\n"
    "                  [False, True, False])]\n"
    "out = []\n"
    "with torch.no_grad():\n"
    "    for f in fns:\n"
    "        best = float('inf')\n"
    "        for r in range(repeat + 1):\n"
    "            t = time.perf_counter()\n"
    "            for _ in range(calls): f()\n"
    "            dt = (time.perf_counter() - t) / calls\n"
    "            if r > 0: best = min(best, dt)\n"
    "        out.append(best)\n"
    "print(*out)\n";

/* PyTorch's best of one and two threads per kind, into ref[KINDS]; false
** (with 'why') when it cannot run. */
static bool time_torch(const bench_options *o, const conv_shape *s, double *ref, int *threads_of,
                       char *why, size_t whylen)
{
    bool any = false;
    for (int k = 0; k < KINDS; k++)
        ref[k] = INFINITY;
    for (int threads = 1; threads <= 2; threads++) {
        char args[128];
        snprintf(args, sizeof args, "%lld %lld %lld %lld %lld %lld %d %d %d", (long long)s->n,
                 (long long)s->c, (long long)s->h, (long long)s->w, (long long)s->o,
                 (long long)s->k, s->pad, threads, o->repeat);
        char *out = bench_python(o, torch_script, args, why, whylen);
        double v[KINDS];
        if (out && sscanf(out, "%lf %lf %lf", &v[0], &v[1], &v[2]) == 3) {
            any = true;
            for (int k = 0; k < KINDS; k++)
                if (v[k] < ref[k]) {
                    ref[k] = v[k];
                    threads_of[k] = threads;
                }
        } else if (out) {
            snprintf(why, whylen, "unexpected output from the PyTorch script");
        }
        free(out);
    }
    return any;
}

void bench_conv(bench_table *t, const bench_options *o)
{
    bool torch = bench_have_torch(o);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const conv_shape *s = &shapes[i];
        double flops = flops_of(s), ours[KINDS], ref[KINDS];
        int ours_threads[KINDS] = {0}, ref_threads[KINDS] = {0};
        for (int k = 0; k < KINDS; k++) {
            ours[k] = INFINITY;
            for (int threads = 1; threads <= 2; threads++) {
                double dt = time_ours(s, k, threads, o->repeat);
                if (dt < ours[k]) {
                    ours[k] = dt;
                    ours_threads[k] = threads;
                }
            }
        }
        char why[160] = "python3-torch not installed";
        bool have_ref = torch && time_torch(o, s, ref, ref_threads, why, sizeof why);
        for (int k = 0; k < KINDS; k++) {
            char name[96], note[160];
            snprintf(name, sizeof name, "%s, %s", s->label, kind_names[k]);
            if (have_ref)
                snprintf(note, sizeof note, "best of 1-2 threads: ours on %d, torch on %d",
                         ours_threads[k], ref_threads[k]);
            else
                snprintf(note, sizeof note, "ours on %d thread(s); no reference: %.100s",
                         ours_threads[k], why);
            bench_add(t, name, flops / ours[k] * 1e-9, have_ref ? flops / ref[k] * 1e-9 : NAN,
                      "GFLOP/s", BENCH_HIGHER_IS_BETTER, note);
        }
    }
}
