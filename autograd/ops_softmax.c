/*
** ops_softmax.c: softmax and log-softmax along an axis, and the fused
** cross-entropy of logits with integer labels. All subtract the maximum
** before exponentiating, so logits of any finite size stay finite.
*/
#include "internal.h"
#include "kernels/activation.h"

#include <math.h>
#include <string.h>

/* The layout of a reduction along 'axis': outer blocks of n rows of inner. */
typedef struct lanes {
    int64_t outer, n, inner;
} lanes;

static lanes lanes_of(const ag_tensor *x, int axis)
{
    lanes l = {1, x->shape[axis], 1};
    for (int i = 0; i < axis; i++)
        l.outer *= x->shape[i];
    for (int i = axis + 1; i < x->rank; i++)
        l.inner *= x->shape[i];
    return l;
}

/* e^v for every v <= 0 of a buffer, in place: the exps of a whole batch in
** one vectorised pass (kernels/activation.h), where a call per element was
** most of the softmax. */
AGK_SIMD_CLONES static void exp_nonpos_all(int64_t n, double *v)
{
    for (int64_t i = 0; i < n; i++)
        v[i] = agk_exp_nonpos(v[i]);
}

/* The maximum and log-sum-exp of one lane: log sum e^x = m + log sum e^(x-m),
** the terms added in order. For lanes with a stride; rows use row_lse. */
static double lane_logsumexp(const ag_tensor *x, int64_t base, int64_t n, int64_t stride)
{
    double m = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        double v = agi_get(x, base + k * stride);
        m = v > m ? v : m;
    }
    if (isinf(m))
        return m;
    double s = 0;
    for (int64_t k = 0; k < n; k++)
        s += agk_exp_nonpos(agi_get(x, base + k * stride) - m);
    return m + log(s);
}

/* Row i of a [rows, c] tensor as doubles, from element 'base'. */
static void row_values(const ag_tensor *x, int64_t base, int64_t c, double *out)
{
    if (x->dtype == AG_F32) {
        const float *v = (const float *)x->value + base;
        for (int64_t k = 0; k < c; k++)
            out[k] = v[k];
    } else {
        memcpy(out, (const double *)x->value + base, (size_t)c * sizeof *out);
    }
}

/* lane_logsumexp of each of the 'rows' rows of c elements of x (its last
** axis, contiguous), the same bits, with the exps taken in one pass: x - m
** goes into 'tmp' (rows * c doubles), exps in place, then each row's sum in
** order. Returns tmp. */
static double *row_lse(const ag_tensor *x, int64_t rows, int64_t c, double *lse, double *tmp)
{
    for (int64_t i = 0; i < rows; i++) {
        double *z = tmp + i * c, m = -INFINITY;
        row_values(x, i * c, c, z);
        for (int64_t k = 0; k < c; k++)
            m = z[k] > m ? z[k] : m;
        lse[i] = m;
        for (int64_t k = 0; k < c; k++)
            z[k] = isinf(m) ? 0 : z[k] - m;
    }
    exp_nonpos_all(rows * c, tmp);
    for (int64_t i = 0; i < rows; i++) {
        if (isinf(lse[i]))
            continue;
        double sum = 0;
        for (int64_t k = 0; k < c; k++)
            sum += tmp[i * c + k];
        lse[i] += log(sum);
    }
    return tmp;
}

/* e^(x - lse) of every element of a [rows, c] x into tmp, as doubles. */
static void row_softmax(const ag_tensor *x, int64_t rows, int64_t c, const double *lse,
                        double *tmp)
{
    for (int64_t i = 0; i < rows; i++) {
        double *z = tmp + i * c;
        row_values(x, i * c, c, z);
        for (int64_t k = 0; k < c; k++)
            z[k] -= lse[i];
    }
    exp_nonpos_all(rows * c, tmp);
}

/* Scratch for rows x c: the per-row lse and the doubles, or NULL (the tape
** has failed). */
static double *row_scratch(ag_tape *t, int64_t rows, int64_t c, double **lse)
{
    *lse = agi_arena_alloc(t, (size_t)rows * sizeof **lse, 64);
    double *tmp = *lse ? agi_arena_alloc(t, (size_t)(rows * c) * sizeof *tmp, 64) : NULL;
    if (!tmp)
        agi_error(t, AG_ENOMEM, "softmax: out of memory for %lld x %lld scratch", (long long)rows,
                  (long long)c);
    return tmp;
}

static ag_tensor *softmax_like(ag_tape *t, const ag_op *op, const char *who, ag_tensor *x,
                               int axis, bool log_space)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "%s: axis %d is out of range for %s", who, axis,
                         agi_shp(x, 0));
    ag_tensor *out = agi_new(t, op, 1, &x, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.red.axis = ax;
    lanes l = lanes_of(x, ax);
    if (l.inner == 1 && x->numel > 0) {
        /* Rows along the last axis: each row's exps in one pass. */
        int64_t rows = l.outer, c = l.n;
        double *lse, *tmp = row_scratch(t, rows, c, &lse);
        if (!tmp)
            return agi_nil(t);
        row_lse(x, rows, c, lse, tmp);
        if (log_space) {
            for (int64_t i = 0; i < rows; i++)
                for (int64_t k = 0; k < c; k++)
                    agi_set(out, i * c + k, agi_get(x, i * c + k) - lse[i]);
        } else {
            row_softmax(x, rows, c, lse, tmp);
            for (int64_t i = 0; i < rows * c; i++)
                agi_set(out, i, tmp[i]);
        }
        return out;
    }
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t i = 0; i < l.inner; i++) {
            int64_t base = o * l.n * l.inner + i;
            double lse = lane_logsumexp(x, base, l.n, l.inner);
            for (int64_t k = 0; k < l.n; k++) {
                int64_t at = base + k * l.inner;
                double z = agi_get(x, at) - lse;
                agi_set(out, at, log_space ? z : agk_exp_nonpos(z));
            }
        }
    return out;
}

/* softmax: d = s (g - sum(g s)) */
static void vjp_softmax(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int ax = out->attr.red.axis;
    gin[0] = ag_mul(t, out, ag_sub(t, g, ag_sum_axis(t, ag_mul(t, g, out), ax, 1)));
}
const ag_op agi_op_softmax = {"softmax", vjp_softmax};
ag_tensor *ag_softmax(ag_tape *t, ag_tensor *x, int axis)
{
    return softmax_like(t, &agi_op_softmax, "ag_softmax", x, axis, false);
}

/* log_softmax: d = g - e^out sum(g) */
static void vjp_log_softmax(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int ax = out->attr.red.axis;
    gin[0] = ag_sub(t, g, ag_mul(t, ag_exp(t, out), ag_sum_axis(t, g, ax, 1)));
}
const ag_op agi_op_log_softmax = {"log_softmax", vjp_log_softmax};
ag_tensor *ag_log_softmax(ag_tape *t, ag_tensor *x, int axis)
{
    return softmax_like(t, &agi_op_log_softmax, "ag_log_softmax", x, axis, true);
}

/* cross_entropy: mean_i (logsumexp(x_i) - x_i[y_i]); d/dx = (softmax x - onehot y) / N */
/* The raw path: (softmax x - onehot) * (g / N) straight into x's gradient,
** one row pass, rounding where the ops below do. */
static bool raw_cross_entropy(ag_tape *t, ag_tensor *out, ag_tensor *g)
{
    ag_tensor *x = out->in[0];
    int64_t n = x->shape[0], c = x->shape[1];
    double *lse, *p = row_scratch(t, n, c, &lse);
    bool fresh;
    void *dst = p ? agi_grad_slot(t, x, &fresh) : NULL;
    if (!dst)
        return true;
    row_lse(x, n, c, lse, p);
    row_softmax(x, n, c, lse, p);
    bool f32 = x->dtype == AG_F32;
    /* ag_mul_scalar makes 1/N a constant of the dtype first. */
    double scale = agk_round(agi_get(g, 0) * agk_round(1.0 / (double)n, f32), f32);
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < c; k++) {
            double d = agk_round(agk_round(p[i * c + k], f32) - (k == out->attr.labels[i]), f32);
            double v = agk_round(d * scale, f32);
            int64_t at = i * c + k;
            if (f32)
                ((float *)dst)[at] = (float)(fresh ? v : ((float *)dst)[at] + v);
            else
                ((double *)dst)[at] = fresh ? v : ((double *)dst)[at] + v;
        }
    return true;
}

static void vjp_cross_entropy(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    if (agi_raw_backward(t) && raw_cross_entropy(t, out, g))
        return;
    ag_tensor *x = out->in[0];
    int64_t n = x->shape[0], c = x->shape[1];
    ag_tensor *onehot = ag_zeros(t, (ag_dtype)x->dtype, 2, x->shape);
    if (onehot->flags & AGI_NIL)
        return;
    for (int64_t i = 0; i < n; i++)
        agi_set(onehot, i * c + out->attr.labels[i], 1.0);
    ag_tensor *d = ag_sub(t, ag_softmax(t, x, 1), onehot);
    gin[0] = ag_mul(t, d, ag_mul_scalar(t, g, 1.0 / (double)n));
}
const ag_op agi_op_cross_entropy = {"cross_entropy", vjp_cross_entropy};

ag_tensor *ag_cross_entropy(ag_tape *t, ag_tensor *logits, const int64_t *labels)
{
    if (!agi_check_inputs(t, "ag_cross_entropy", 1, &logits, false))
        return agi_nil(t);
    if (logits->rank != 2 || logits->shape[0] < 1 || logits->shape[1] < 1)
        return agi_error(t, AG_ESHAPE, "ag_cross_entropy: logits are %s, not [N,C] with N, C >= 1",
                         agi_shp(logits, 0));
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (!labels)
        return agi_error(t, AG_EINVAL, "ag_cross_entropy: labels is NULL");
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= c)
            return agi_error(t, AG_EINVAL, "ag_cross_entropy: label %lld of row %lld is outside "
                             "[0, %lld)", (long long)labels[i], (long long)i, (long long)c);
    int64_t *copy = agi_arena_alloc(t, (size_t)n * sizeof *copy, 16);
    if (!copy)
        return agi_nil(t);
    memcpy(copy, labels, (size_t)n * sizeof *copy);
    ag_tensor *out = agi_new(t, &agi_op_cross_entropy, 1, &logits, (ag_dtype)logits->dtype, 0, NULL);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.labels = copy;
    double *lse, *tmp = row_scratch(t, n, c, &lse);
    if (!tmp)
        return agi_nil(t);
    row_lse(logits, n, c, lse, tmp);
    double total = 0;
    for (int64_t i = 0; i < n; i++)
        total += lse[i] - agi_get(logits, i * c + copy[i]);
    agi_set(out, 0, total / (double)n);
    return out;
}
