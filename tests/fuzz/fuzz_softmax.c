/*
** fuzz_softmax.c: libFuzzer target for the numerics of the softmax family.
** The input picks logits and a shift; the target runs softmax, log-softmax
** (along the rows and along the columns), logsumexp (per row and over all),
** cross-entropy and the gradients of each, and compares every value with a
** long-double reference computed from the same logits. A value further from
** the reference than the tolerance below aborts, as does a raw cross-entropy
** gradient that differs in any bit from the differentiable one.
**
** Input: byte 0: bit 0 f64 (else f32), bits 1-3 columns C - 1, bits 4-5
** rows N - 1, bits 6-7 the spread of the logits (x 1, 8, 64, 512); bytes
** 1-3: the shift, s = +-m 2^e with m from 15 bits and e below 42 (f64: up
** to 7e16) or 11 (f32: up to 6.7e7); then per element a byte d (logit
** s + spread * d / 16, rounded to the dtype), a byte for the gradient's
** weight, and per row a byte for its label. Missing bytes read as 0.
**
** Tolerance. Everything is computed in double and rounded to the dtype
** once, from z = x - max, whose rounding moves e^z by |z| ulps. So with
** eps the dtype's unit roundoff (2^-53, 2^-24), c the columns and |z| the
** distance of an element to its lane's maximum, a value r passes when
**     |got - ref| <= 8 eps (|ref| + A) (|z| + c + 2) + tiny,
** where A is what may cancel in the formula (for log-softmax |z| + log
** sum, for logsumexp |max| + log sum, for a gradient the sizes of its
** terms: an f32 gradient rounds at each op of its vjp) and tiny a few of
** the dtype's smallest subnormals (results that underflow). The old code subtracted a rounded logsumexp from x: its
** error grew with |max| itself (a loss of 0 for 0.693 at 1e16) and fails
** this at once.
*/
#include "autograd.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ROWS = 4, MAX_COLS = 8, MAX_N = MAX_ROWS * MAX_COLS };

typedef struct input {
    const uint8_t *data;
    size_t size, at;
} input;

static unsigned next_byte(input *in) { return in->at < in->size ? in->data[in->at++] : 0; }

typedef struct problem {
    ag_dtype dt;
    int rows, cols;
    double x[MAX_N], w[MAX_N];
    int64_t labels[MAX_ROWS];
} problem;

static double round_to(ag_dtype dt, long double v)
{
    return dt == AG_F32 ? (double)(float)v : (double)v;
}

static void read_problem(const uint8_t *data, size_t size, problem *p)
{
    input in = {data, size, 0};
    unsigned b0 = next_byte(&in);
    p->dt = b0 & 1 ? AG_F64 : AG_F32;
    p->cols = 1 + (int)((b0 >> 1) & 7);
    p->rows = 1 + (int)((b0 >> 4) & 3);
    double spread = (double)(1u << (3 * ((b0 >> 6) & 3)));
    unsigned b1 = next_byte(&in), b2 = next_byte(&in), b3 = next_byte(&in);
    long double m = (long double)(((b1 & 0x7f) << 8) | b2);
    int e = (int)(b3 % (p->dt == AG_F64 ? 42 : 11));
    long double shift = (b1 & 0x80 ? -m : m) * ldexpl(1.0L, e);
    for (int i = 0; i < p->rows * p->cols; i++) {
        int d = (int8_t)next_byte(&in);
        p->x[i] = round_to(p->dt, shift + (long double)spread * d / 16);
        p->w[i] = round_to(p->dt, (long double)(int8_t)next_byte(&in) / 64);
    }
    for (int r = 0; r < p->rows; r++)
        p->labels[r] = (int64_t)(next_byte(&in) % (unsigned)p->cols);
}

/* ------------------------------------------------------------- reference */

/* A lane of n logits 'stride' apart: its maximum, log sum e^(x - max), and
** softmax, log-softmax and z = x - max per element, in long double. */
typedef struct lane_ref {
    long double max, logsum;
    long double z[MAX_COLS], p[MAX_COLS], logp[MAX_COLS];
} lane_ref;

/* log sum e^z over a lane whose maximum's z is 0: log1p of the other
** terms, as log(1 + small) would round the small sum away even in long
** double (a reference must not be the less accurate side). */
static long double log_sum_exp_z(const long double *z, int n, long double *sum)
{
    long double rest = 0;
    int at = -1;
    for (int k = 0; k < n; k++) {
        if (at < 0 && z[k] == 0)
            at = k;
        else
            rest += expl(z[k]);
    }
    *sum = 1 + rest;
    return log1pl(rest);
}

static void lane_reference(const double *x, int n, int stride, lane_ref *r)
{
    r->max = -INFINITY;
    for (int k = 0; k < n; k++)
        r->max = fmaxl(r->max, x[k * stride]);
    long double s;
    for (int k = 0; k < n; k++)
        r->z[k] = (long double)x[k * stride] - r->max;
    r->logsum = log_sum_exp_z(r->z, n, &s);
    for (int k = 0; k < n; k++) {
        r->p[k] = expl(r->z[k]) / s;
        r->logp[k] = r->z[k] - r->logsum;
    }
}

/* ---------------------------------------------------------------- checks */

static double eps_of(ag_dtype dt) { return dt == AG_F32 ? 0x1p-24 : 0x1p-53; }
static double tiny_of(ag_dtype dt) { return dt == AG_F32 ? 4 * 0x1p-149 : 4 * 0x1p-1074; }

/* |got - ref| <= 8 eps (|ref| + cancel) (|z| + c + 2) + tiny, or abort. */
static void expect(const problem *p, double got, long double ref, long double z,
                   long double cancel)
{
    long double tol = 8 * eps_of(p->dt) * (fabsl(ref) + cancel) * (fabsl(z) + p->cols + 2) +
                      tiny_of(p->dt);
    if (!(fabsl((long double)got - ref) <= tol))
        abort();
}

static ag_tensor *logits(ag_tape *t, const problem *p)
{
    ag_tensor *x = ag_zeros(t, p->dt, 2, (int64_t[]){p->rows, p->cols});
    for (int i = 0; i < p->rows * p->cols; i++)
        ag_set(x, i, p->x[i]);
    return ag_requires_grad(x);
}

static ag_tensor *weights(ag_tape *t, const problem *p)
{
    ag_tensor *w = ag_zeros(t, p->dt, 2, (int64_t[]){p->rows, p->cols});
    for (int i = 0; i < p->rows * p->cols; i++)
        ag_set(w, i, p->w[i]);
    return w;
}

/* Softmax and log-softmax along 'axis' (1: rows, 0: columns), their values
** and the gradients of sum(w * f(x)). */
static void check_softmax(const problem *p, int axis)
{
    int lanes = axis == 1 ? p->rows : p->cols, n = axis == 1 ? p->cols : p->rows;
    int stride = axis == 1 ? 1 : p->cols, step = axis == 1 ? p->cols : 1;
    for (int log_space = 0; log_space < 2; log_space++) {
        ag_tape *t = ag_tape_new();
        if (!t)
            return;
        ag_tensor *x = logits(t, p);
        ag_tensor *y = log_space ? ag_log_softmax(t, x, axis) : ag_softmax(t, x, axis);
        ag_backward(t, ag_sum(t, ag_mul(t, y, weights(t, p))));
        if (ag_tape_status(t) != AG_OK)
            abort();
        for (int l = 0; l < lanes; l++) {
            lane_ref r;
            int base = l * step;
            lane_reference(p->x + base, n, stride, &r);
            long double wsum = 0, wp = 0;
            for (int k = 0; k < n; k++) {
                wsum += p->w[base + k * stride];
                wp += p->w[base + k * stride] * r.p[k];
            }
            for (int k = 0; k < n; k++) {
                int at = base + k * stride;
                double got = ag_get(y, at), g = ag_get(ag_grad(x), at);
                long double w = p->w[at];
                if (log_space) {
                    expect(p, got, r.logp[k], 0, fabsl(r.z[k]) + fabsl(r.logsum));
                    /* d = w - p sum(w); p from exp(log_softmax): |z| + log sum */
                    expect(p, g, w - r.p[k] * wsum, r.z[k] + r.logsum,
                           fabsl(w) + fabsl(r.p[k] * wsum));
                } else {
                    expect(p, got, r.p[k], r.z[k], 0);
                    long double wabs = 0;
                    for (int j = 0; j < n; j++)
                        wabs += fabsl(p->w[base + j * stride]);
                    expect(p, g, r.p[k] * (w - wp), r.z[k], r.p[k] * (fabsl(w) + wabs));
                }
            }
        }
        ag_tape_free(t);
    }
}

/* logsumexp per row and over all elements, values and gradients (softmax). */
static void check_logsumexp(const problem *p)
{
    for (int all = 0; all < 2; all++) {
        ag_tape *t = ag_tape_new();
        if (!t)
            return;
        ag_tensor *x = logits(t, p);
        ag_tensor *y = all ? ag_logsumexp(t, x) : ag_logsumexp_axis(t, x, 1, 0);
        ag_backward(t, ag_sum(t, y));
        if (ag_tape_status(t) != AG_OK)
            abort();
        int lanes = all ? 1 : p->rows, n = all ? p->rows * p->cols : p->cols;
        for (int l = 0; l < lanes; l++) {
            /* The whole tensor is one lane of rows * cols <= MAX_N elements. */
            long double max = -INFINITY, s, z[MAX_N];
            for (int k = 0; k < n; k++)
                max = fmaxl(max, p->x[l * n + k]);
            for (int k = 0; k < n; k++)
                z[k] = (long double)p->x[l * n + k] - max;
            long double logsum = log_sum_exp_z(z, n, &s);
            expect(p, ag_get(y, l), max + logsum, 0, fabsl(max) + fabsl(logsum));
            for (int k = 0; k < n; k++)
                expect(p, ag_get(ag_grad(x), l * n + k), expl(z[k]) / s, z[k], 0);
        }
        ag_tape_free(t);
    }
}

/* Cross-entropy: the loss, and its gradient (softmax - onehot) / N by the
** raw path (ag_backward) and the differentiable one, which must agree bit
** for bit. */
static void check_cross_entropy(const problem *p)
{
    ag_tape *t = ag_tape_new();
    if (!t)
        return;
    ag_tensor *x = logits(t, p);
    ag_tensor *loss = ag_cross_entropy(t, x, p->labels);
    ag_tensor *g_graph;
    ag_gradients(t, loss, NULL, 1, &x, &g_graph, 1);
    ag_backward(t, loss);
    if (ag_tape_status(t) != AG_OK)
        abort();
    ag_tensor *g = ag_grad(x);
    size_t bytes = (size_t)(p->rows * p->cols) * ag_dtype_size(p->dt);
    if (memcmp(ag_data(g), ag_data(g_graph), bytes) != 0)
        abort();
    long double total = 0, cancel = 0;
    for (int r = 0; r < p->rows; r++) {
        lane_ref ref;
        lane_reference(p->x + r * p->cols, p->cols, 1, &ref);
        long double lr = -ref.logp[p->labels[r]];
        total += lr;
        cancel += fabsl(ref.z[p->labels[r]]) + fabsl(ref.logsum);
        for (int k = 0; k < p->cols; k++) {
            long double want = (ref.p[k] - (k == p->labels[r])) / p->rows;
            expect(p, ag_get(g, r * p->cols + k), want, ref.z[k], (ref.p[k] + 1) / p->rows);
        }
    }
    expect(p, ag_item(loss), total / p->rows, 0, cancel / p->rows);
    ag_tape_free(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    problem p;
    read_problem(data, size, &p);
    check_softmax(&p, 1);
    check_softmax(&p, 0);
    check_logsumexp(&p);
    check_cross_entropy(&p);
    return 0;
}
