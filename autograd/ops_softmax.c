/*
** ops_softmax.c: softmax and log-softmax along an axis, and the fused
** cross-entropy of logits with integer labels. All subtract the maximum
** before exponentiating, so logits of any finite size stay finite, and
** keep x - max apart from the log of the sum (below), so results do not
** move when a constant is added to the logits.
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

/* Every result is computed from z = x - max and the sum s of e^z, kept
** apart: softmax e^z / s, log-softmax z - log s, logsumexp max + log s,
** cross-entropy log s - z[label]. Subtracting a rounded logsumexp from x
** instead, as we once did, loses the digits of log s that the rounding to
** x's magnitude drops: at logits of 1e16 that is all of them, and the loss
** of [1e16, 1e16] came out 0. z is exact wherever it matters (Sterbenz:
** the elements near the maximum), so results do not change when a constant
** is added to the logits. */

/* The maximum of a lane, NaN if any element is: once m is NaN, neither
** comparison holds again. */
static inline double max_step(double m, double v) { return v > m || v != v ? v : m; }

/* The statistics of one lane: its maximum, s = sum e^(x - max) and log s.
** The maximum's own term is e^0 = 1 exactly, so the others are summed
** apart ('rest') and log s = log1p(rest): log(1 + rest) would lose rest's
** digits below an ulp of 1 (log-softmax's largest element, -log s, came out
** 0 for -2.6e-18). An infinite maximum leaves nothing to scale: s = 1 and
** log s = 0, so softmax is e^(x - max) (NaN for +inf, 0 for the rest). */
typedef struct lane_stats {
    double max, sum, logsum;
    int64_t at;   /* the first element equal to the maximum (or the first NaN) */
} lane_stats;

static void finish_stats(lane_stats *st, double rest)
{
    bool inf = isinf(st->max);
    st->sum = inf ? 1.0 : 1.0 + rest;
    st->logsum = inf ? 0.0 : log1p(rest);
}

/* For lanes with a stride; rows use block_stats, with the same bits: the
** same z, the same exps, summed in the same order. */
static lane_stats lane_stats_of(const ag_tensor *x, int64_t base, int64_t n, int64_t stride)
{
    lane_stats st = {-INFINITY, 0, 0, 0};
    for (int64_t k = 0; k < n; k++) {
        double v = agi_get(x, base + k * stride);
        st.at = v > st.max || (v != v && st.max == st.max) ? k : st.at;
        st.max = max_step(st.max, v);
    }
    double rest = 0;
    for (int64_t k = 0; k < n; k++)
        if (k != st.at)
            rest += agk_exp_nonpos(agi_get(x, base + k * stride) - st.max);
    finish_stats(&st, rest);
    return st;
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

/* Rows [first, first + rows) of x's last axis (c elements each, contiguous)
** go through scratch a block at a time: each row's lane_stats into st, and
** e^(x - max) left in tmp (the exps of the whole block taken in one pass). */
typedef struct row_block {
    int64_t first, rows, c;
    lane_stats *st;   /* rows of them */
    double *tmp;      /* rows * c */
} row_block;

/* About 64 KB of doubles a block, at least one row: the scratch stays in
** cache and a large softmax needs no copy of its size. */
enum { BLOCK_DOUBLES = 1 << 13 };

static int64_t block_rows(int64_t rows, int64_t c)
{
    int64_t r = BLOCK_DOUBLES / (c > 0 ? c : 1);
    r = r < 1 ? 1 : r;
    return r < rows ? r : rows;
}

/* Scratch for blocks of up to 'rows' rows of c, or false (the tape has
** failed: the arena recorded why). */
static bool block_scratch(ag_tape *t, int64_t rows, int64_t c, row_block *b)
{
    b->c = c;
    b->st = agi_arena_alloc(t, (size_t)rows * sizeof *b->st, 64);
    b->tmp = b->st ? agi_arena_alloc(t, (size_t)(rows * c) * sizeof *b->tmp, 64) : NULL;
    return b->tmp != NULL;
}

static void block_stats(const ag_tensor *x, row_block *b)
{
    int64_t c = b->c;
    for (int64_t i = 0; i < b->rows; i++) {
        double *z = b->tmp + i * c, m = -INFINITY;
        int64_t at = 0;
        row_values(x, (b->first + i) * c, c, z);
        for (int64_t k = 0; k < c; k++) {
            at = z[k] > m || (z[k] != z[k] && m == m) ? k : at;
            m = max_step(m, z[k]);
        }
        b->st[i].max = m;
        b->st[i].at = at;
        for (int64_t k = 0; k < c; k++)
            z[k] -= m;
    }
    exp_nonpos_all(b->rows * c, b->tmp);
    for (int64_t i = 0; i < b->rows; i++) {
        /* Every term but the maximum's, in order: two loops, not a test per term. */
        const double *e = b->tmp + i * c;
        double rest = 0;
        for (int64_t k = 0; k < b->st[i].at; k++)
            rest += e[k];
        for (int64_t k = b->st[i].at + 1; k < c; k++)
            rest += e[k];
        finish_stats(&b->st[i], rest);
    }
}

/* Element k of a row or lane: softmax from its exp, log-softmax from x. */
static inline double softmax_of(double e, const lane_stats *st) { return e / st->sum; }
static inline double log_softmax_of(double x, const lane_stats *st)
{
    return (x - st->max) - st->logsum;
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
        row_block b;
        if (!block_scratch(t, block_rows(rows, c), c, &b))
            return agi_nil(t);
        for (b.first = 0; b.first < rows; b.first += b.rows) {
            b.rows = block_rows(rows - b.first, c);
            block_stats(x, &b);
            for (int64_t i = 0; i < b.rows; i++)
                for (int64_t k = 0; k < c; k++) {
                    int64_t at = (b.first + i) * c + k;
                    agi_set(out, at, log_space ? log_softmax_of(agi_get(x, at), &b.st[i])
                                               : softmax_of(b.tmp[i * c + k], &b.st[i]));
                }
        }
        return out;
    }
    for (int64_t o = 0; o < l.outer; o++)
        for (int64_t i = 0; i < l.inner; i++) {
            int64_t base = o * l.n * l.inner + i;
            lane_stats st = lane_stats_of(x, base, l.n, l.inner);
            for (int64_t k = 0; k < l.n; k++) {
                int64_t at = base + k * l.inner;
                double v = agi_get(x, at);
                agi_set(out, at, log_space ? log_softmax_of(v, &st)
                                           : softmax_of(agk_exp_nonpos(v - st.max), &st));
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
/* Softmax's Jacobian, diag(s) - s s^T along the axis, is symmetric: its
** JVP is its VJP. */
static ag_tensor *jvp_softmax(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *gin[1] = {NULL};
    vjp_softmax(t, out, tan[0], gin);
    return gin[0];
}
static const ag_op op_softmax = {.name = "softmax", .vjp = vjp_softmax, .jvp = jvp_softmax};
ag_tensor *ag_softmax(ag_tape *t, ag_tensor *x, int axis)
{
    return softmax_like(t, &op_softmax, "ag_softmax", x, axis, false);
}

/* log_softmax: d = g - e^out sum(g) */
static void vjp_log_softmax(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int ax = out->attr.red.axis;
    gin[0] = ag_sub(t, g, ag_mul(t, ag_exp(t, out), ag_sum_axis(t, g, ax, 1)));
}
/* d log_softmax = dx - sum(softmax(x) dx) */
static ag_tensor *jvp_log_softmax(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    int ax = out->attr.red.axis;
    return ag_sub(t, tan[0], ag_sum_axis(t, ag_mul(t, ag_exp(t, out), tan[0]), ax, 1));
}
static const ag_op op_log_softmax = {
    .name = "log_softmax", .vjp = vjp_log_softmax, .jvp = jvp_log_softmax};
ag_tensor *ag_log_softmax(ag_tape *t, ag_tensor *x, int axis)
{
    return softmax_like(t, &op_log_softmax, "ag_log_softmax", x, axis, true);
}

/* cross_entropy: mean_i -log_softmax(x_i)[y_i]; d/dx = (softmax x - onehot y) / N */
/* The raw path: (softmax x - onehot) * (g / N) straight into x's gradient,
** one row pass, rounding where the ops below do. */
static int raw_cross_entropy(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    ag_tensor *x = out->in[0];
    int64_t n = x->shape[0], c = x->shape[1];
    row_block b;
    bool fresh;
    void *dst = block_scratch(t, block_rows(n, c), c, &b) ? agi_grad_slot(t, x, &fresh) : NULL;
    if (!dst)
        return true;
    bool f32 = x->dtype == AG_F32;
    /* ag_mul_scalar makes 1/N a constant of the dtype first. */
    double scale = agk_round(agi_get(g, 0) * agk_round(1.0 / (double)n, f32), f32);
    for (b.first = 0; b.first < n; b.first += b.rows) {
        b.rows = block_rows(n - b.first, c);
        block_stats(x, &b);
        for (int64_t i = 0; i < b.rows; i++)
            for (int64_t k = 0; k < c; k++) {
                int64_t row = b.first + i, at = row * c + k;
                double p = agk_round(softmax_of(b.tmp[i * c + k], &b.st[i]), f32);
                double d = agk_round(p - (k == out->attr.labels[row]), f32);
                double v = agk_round(d * scale, f32);
                if (f32)
                    ((float *)dst)[at] = (float)(fresh ? v : ((float *)dst)[at] + v);
                else
                    ((double *)dst)[at] = fresh ? v : ((double *)dst)[at] + v;
            }
    }
    return true;
}

static void vjp_cross_entropy(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
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
/* d loss = sum((softmax x - onehot y) dx) / N */
static ag_tensor *jvp_cross_entropy(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *x = out->in[0];
    int64_t n = x->shape[0], c = x->shape[1];
    ag_tensor *onehot = ag_zeros(t, (ag_dtype)x->dtype, 2, x->shape);
    if (onehot->flags & AGI_NIL)
        return onehot;
    for (int64_t i = 0; i < n; i++)
        agi_set(onehot, i * c + out->attr.labels[i], 1.0);
    ag_tensor *d = ag_sub(t, ag_softmax(t, x, 1), onehot);
    return ag_mul_scalar(t, ag_sum(t, ag_mul(t, d, tan[0])), 1.0 / (double)n);
}
static const ag_op op_cross_entropy = {.name = "cross_entropy", .vjp = vjp_cross_entropy,
                                       .raw_vjp = raw_cross_entropy, .jvp = jvp_cross_entropy};

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
    ag_tensor *out = agi_new(t, &op_cross_entropy, 1, &logits, (ag_dtype)logits->dtype, 0, NULL);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.labels = copy;
    row_block b;
    if (!block_scratch(t, block_rows(n, c), c, &b))
        return agi_nil(t);
    double total = 0;
    for (b.first = 0; b.first < n; b.first += b.rows) {
        b.rows = block_rows(n - b.first, c);
        block_stats(logits, &b);
        for (int64_t i = 0; i < b.rows; i++)
            total -= log_softmax_of(agi_get(logits, (b.first + i) * c + copy[b.first + i]),
                                    &b.st[i]);
    }
    agi_set(out, 0, total / (double)n);
    return out;
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_softmax[] = {
    &op_softmax, &op_log_softmax, &op_cross_entropy, NULL
};
