// adolc_peer.cc: the ADOL-C side of the replay rows (adolc_peer.h). The
// graph is the one bench_scalar.c records: per sample h = b + sum w_i x_i,
// d = tanh h - target, loss += d^2.
#include "adolc_peer.h"

#include <adolc/adolc.h>

#include <math.h>
#include <time.h>

static double now()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum { INPUTS = 8, ROWS = 100, TAG_SCALAR = 11, TAG_ROSEN = 12 };

extern "C" adolc_scalar_result adolc_scalar(int samples, int repeat, const double (*x)[8],
                                            const double *neg_target, const double *w0,
                                            double b0)
{
    adolc_scalar_result r = {INFINITY, INFINITY, INFINITY, INFINITY, 0, 0, false};
    double in[INPUTS + 1], g[INPUTS + 1], u = 1.0, loss = 0;
    for (int i = 0; i < INPUTS; i++)
        in[i] = w0[i];
    in[INPUTS] = b0;
    for (int rep = 0; rep < repeat; rep++) {
        double t0 = now();
        trace_on(TAG_SCALAR);
        adouble w[INPUTS], b, l = 0.0;
        for (int i = 0; i < INPUTS; i++)
            w[i] <<= in[i];
        b <<= in[INPUTS];
        for (int s = 0; s < samples; s++) {
            const double *xr = x[s % ROWS];
            adouble h = b;
            for (int i = 0; i < INPUTS; i++)
                h = h + w[i] * xr[i];
            adouble d = tanh(h) + neg_target[s % ROWS];
            l = l + pow(d, 2.0);
        }
        l >>= loss;
        trace_off();
        double t1 = now();
        r.tape_s = fmin(r.tape_s, t1 - t0);
    }
    /* Replays at new inputs, as a plan's runs are timed. */
    double moved[INPUTS + 1];
    for (int rep = 0; rep < repeat; rep++) {
        for (int i = 0; i <= INPUTS; i++)
            moved[i] = in[i] * (1.0 + 1e-3 * (rep + 1));
        double t0 = now();
        if (gradient(TAG_SCALAR, INPUTS + 1, moved, g) < 0)
            return r;
        double t1 = now();
        double y;
        if (zos_forward(TAG_SCALAR, 1, INPUTS + 1, 1, moved, &y) < 0)
            return r;
        double t2 = now();
        if (fos_reverse(TAG_SCALAR, 1, INPUTS + 1, &u, g) < 0)
            return r;
        double t3 = now();
        r.gradient_s = fmin(r.gradient_s, t1 - t0);
        r.forward_s = fmin(r.forward_s, t2 - t1);
        r.reverse_s = fmin(r.reverse_s, t3 - t2);
    }
    if (gradient(TAG_SCALAR, INPUTS + 1, in, g) < 0)
        return r;
    r.loss = loss;
    r.grad_w0 = g[0];
    r.ok = true;
    return r;
}

extern "C" adolc_hessian_result adolc_rosenbrock_hessian(int n, int repeat, const double *x)
{
    adolc_hessian_result r = {INFINITY, 0, false};
    adouble *xa = new adouble[n];
    double y;
    trace_on(TAG_ROSEN);
    adouble f = 0.0;
    for (int i = 0; i < n; i++)
        xa[i] <<= x[i];
    for (int i = 0; i + 1 < n; i++) {
        adouble a = xa[i + 1] - xa[i] * xa[i], c = 1.0 - xa[i];
        f = f + 100.0 * a * a + c * c;
    }
    f >>= y;
    trace_off();
    delete[] xa;
    double **h = myalloc2(n, n);
    double *xs = new double[n];
    for (int i = 0; i < n; i++)
        xs[i] = x[i];
    enum { CALLS = 200 };   /* one Hessian takes microseconds: time a batch */
    for (int rep = 0; rep < repeat; rep++) {
        double t0 = now();
        int rc = 0;
        for (int k = 0; k < CALLS && rc >= 0; k++)
            rc = hessian(TAG_ROSEN, n, xs, h);
        if (rc < 0)
            break;
        r.seconds = fmin(r.seconds, (now() - t0) / CALLS);
        r.ok = true;
    }
    r.h10 = h[1][0];
    myfree2(h);
    delete[] xs;
    return r;
}
