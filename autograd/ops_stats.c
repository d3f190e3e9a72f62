/*
** ops_stats.c: statistics along an axis or over everything (variance and
** standard deviation with PyTorch's 'correction') and the running sum
** cumsum, with its reverse, the adjoint that cumsum's vjp records.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>

/* attr.stat.axis for a reduction over every element. */
enum { ALL_AXES = -1 };
/* Below this many elements per thread, a pass stays on one thread. */
enum { MIN_ELEMS_PER_THREAD = 1 << 15 };

/* A walk over the lines of x along an axis: line o (o < outer * inner)
** holds n elements, 'inner' apart, from (o / inner) * n * inner + o % inner.
** A reduction over everything is one line with inner = 1. */
typedef struct line_job {
    const ag_tensor *x;
    ag_tensor *out;
    int64_t n, inner;
    double divisor;   /* var, std: max(0, n - correction) */
    bool root;        /* std: the square root of the variance */
    bool reverse;     /* cumsum: from the end of the line */
} line_job;

static int64_t line_base(const line_job *j, int64_t o)
{
    return (o / j->inner) * j->n * j->inner + o % j->inner;
}

/* Lines per pool range, so that a range holds about MIN_ELEMS_PER_THREAD. */
static int64_t line_grain(int64_t n) { return (MIN_ELEMS_PER_THREAD + n - 1) / (n > 0 ? n : 1); }

/* x shape with 'axis' set to 1 (every axis for ALL_AXES), n the count it
** reduces and inner the product of the dims after it. */
static void axis_geometry(const ag_tensor *x, int axis, int64_t *kept, int64_t *n, int64_t *inner)
{
    *n = axis == ALL_AXES ? x->numel : x->shape[axis];
    *inner = 1;
    for (int i = 0; i < x->rank; i++) {
        kept[i] = axis == ALL_AXES || i == axis ? 1 : x->shape[i];
        if (axis != ALL_AXES && i > axis)
            *inner *= x->shape[i];
    }
}

/* ------------------------------------------------------------- var, std */

/* The variance of n elements of x 'stride' apart, by the corrected two-pass
** algorithm: the mean first, then the sum of squared deviations from it,
** less (sum of deviations)^2 / n, which removes most of the error of the
** rounded mean. Both sums run in double for either dtype. A one-pass
** formula (sum x^2 - n mean^2) loses every digit when the mean is large
** against the spread; this one keeps them. n == 0 gives NaN. */
static double two_pass_var(const ag_tensor *x, int64_t base, int64_t n, int64_t stride,
                           double divisor)
{
    double sum = 0;
    for (int64_t k = 0; k < n; k++)
        sum += agi_get(x, base + k * stride);
    double mean = sum / (double)n, squares = 0, deviations = 0;
    for (int64_t k = 0; k < n; k++) {
        double d = agi_get(x, base + k * stride) - mean;
        squares += d * d;
        deviations += d;
    }
    double v = squares - deviations * deviations / (double)n;
    if (v < 0)   /* rounding, never a NaN: a variance is never negative */
        v = 0;
    return v / divisor;
}

static void var_lines(void *ctx, int64_t begin, int64_t end)
{
    const line_job *j = ctx;
    for (int64_t o = begin; o < end; o++) {
        double v = two_pass_var(j->x, line_base(j, o), j->n, j->inner, j->divisor);
        agi_set(j->out, o, j->root ? sqrt(v) : v);
    }
}

/* d var / dx = 2 (x - mean) / (n - correction), times g broadcast back over
** the reduced axes. The mean is recomputed with ops (sum / n) so that the
** second derivative sees its dependence on x. */
static ag_tensor *var_input_grad(ag_tape *t, ag_tensor *out, ag_tensor *g)
{
    ag_tensor *x = out->in[0];
    int axis = out->attr.stat.axis;
    int64_t kept[AG_MAX_DIMS], n, inner;
    axis_geometry(x, axis, kept, &n, &inner);
    ag_tensor *sum = axis == ALL_AXES ? ag_sum(t, x) : ag_sum_axis(t, x, axis, 1);
    ag_tensor *dev = ag_sub(t, x, ag_mul_scalar(t, sum, 1.0 / (double)n));
    double divisor = fmax(0.0, (double)n - out->attr.stat.correction);
    if (axis != ALL_AXES && !out->attr.stat.keepdim)
        g = ag_reshape(t, g, x->rank, kept);
    return ag_mul(t, ag_mul_scalar(t, dev, 2.0 / divisor), g);
}

static void vjp_var(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = var_input_grad(t, out, g);
}
/* d var = sum over the axis of 2 (x - mean) dx / (n - correction): the
** vjp's factor, reduced against the tangent instead of broadcast from g. */
static ag_tensor *var_tangent(ag_tape *t, ag_tensor *out, ag_tensor *dx)
{
    ag_tensor *x = out->in[0];
    int axis = out->attr.stat.axis;
    int64_t kept[AG_MAX_DIMS], n, inner;
    axis_geometry(x, axis, kept, &n, &inner);
    ag_tensor *sum = axis == ALL_AXES ? ag_sum(t, x) : ag_sum_axis(t, x, axis, 1);
    ag_tensor *dev = ag_sub(t, x, ag_mul_scalar(t, sum, 1.0 / (double)n));
    ag_tensor *prod = ag_mul(t, dev, dx);
    ag_tensor *s = axis == ALL_AXES ? ag_sum(t, prod)
                                    : ag_sum_axis(t, prod, axis, out->attr.stat.keepdim);
    double divisor = fmax(0.0, (double)n - out->attr.stat.correction);
    return ag_mul_scalar(t, s, 2.0 / divisor);
}

static ag_tensor *jvp_var(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return var_tangent(t, out, tan[0]);
}
static const ag_op op_var = {.name = "var", .vjp = vjp_var, .jvp = jvp_var};

/* std = sqrt var: d std = d var / (2 std). Where std is 0 (all the values
** equal) the gradient is 0, as PyTorch's, rather than 0/0. */
static void vjp_std(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *zero = agi_const_like(t, out, 0.0);
    ag_tensor *gvar = ag_where(t, ag_eq(t, out, zero), zero,
                               ag_div(t, g, ag_mul_scalar(t, out, 2.0)));
    gin[0] = var_input_grad(t, out, gvar);
}
/* d std = d var / (2 std), 0 where std is 0 as in the vjp */
static ag_tensor *jvp_std(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *zero = agi_const_like(t, out, 0.0);
    ag_tensor *dvar = var_tangent(t, out, tan[0]);
    return ag_where(t, ag_eq(t, out, zero), zero, ag_div(t, dvar, ag_mul_scalar(t, out, 2.0)));
}
static const ag_op op_std = {.name = "std", .vjp = vjp_std, .jvp = jvp_std};

static ag_tensor *var_or_std(ag_tape *t, const ag_op *op, const char *who, ag_tensor *x,
                             bool all, int axis, int keepdim, double correction)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    int ax = ALL_AXES;
    if (!all && (ax = agi_norm_axis(axis, x->rank)) < 0)
        return agi_error(t, AG_EINVAL, "%s: axis %d is out of range for shape %s", who, axis,
                         agi_shp(x, 0));
    if (!(correction >= 0 && isfinite(correction)))
        return agi_error(t, AG_EINVAL, "%s: correction %g is not a finite number >= 0", who,
                         correction);
    int64_t kept[AG_MAX_DIMS], shape[AG_MAX_DIMS], n, inner;
    axis_geometry(x, ax, kept, &n, &inner);
    int rank = 0;
    if (keepdim && !all) {
        rank = x->rank;
        for (int i = 0; i < rank; i++)
            shape[i] = kept[i];
    } else if (!all) {
        for (int i = 0; i < x->rank; i++)
            if (i != ax)
                shape[rank++] = x->shape[i];
    }
    ag_tensor *out = agi_new(t, op, 1, &x, (ag_dtype)x->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.stat.axis = ax;
    out->attr.stat.keepdim = keepdim != 0;
    out->attr.stat.correction = correction;
    line_job j = {.x = x, .out = out, .n = n, .inner = inner,
                  .divisor = fmax(0.0, (double)n - correction), .root = op == &op_std};
    int64_t lines = all ? 1 : out->numel;
    ag_pool_for(t->pool, lines, line_grain(n), var_lines, &j);
    return out;
}

ag_tensor *ag_var(ag_tape *t, ag_tensor *x, double correction)
{
    return var_or_std(t, &op_var, "ag_var", x, true, 0, 0, correction);
}
ag_tensor *ag_var_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim, double correction)
{
    return var_or_std(t, &op_var, "ag_var_axis", x, false, axis, keepdim, correction);
}
ag_tensor *ag_std(ag_tape *t, ag_tensor *x, double correction)
{
    return var_or_std(t, &op_std, "ag_std", x, true, 0, 0, correction);
}
ag_tensor *ag_std_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim, double correction)
{
    return var_or_std(t, &op_std, "ag_std_axis", x, false, axis, keepdim, correction);
}

/* --------------------------------------------------------------- cumsum */

/* Each line's running sum, in double for either dtype and rounded once per
** element: an f32 cumsum does not drift as a float accumulator would. */
static void cumsum_lines(void *ctx, int64_t begin, int64_t end)
{
    const line_job *j = ctx;
    for (int64_t o = begin; o < end; o++) {
        int64_t base = line_base(j, o), step = j->inner;
        if (j->reverse) {
            base += (j->n - 1) * j->inner;
            step = -step;
        }
        double acc = 0;
        for (int64_t k = 0; k < j->n; k++) {
            acc += agi_get(j->x, base + k * step);
            agi_set(j->out, base + k * step, acc);
        }
    }
}

static ag_tensor *cumsum_dir(ag_tape *t, const ag_op *op, const char *who, ag_tensor *x, int axis,
                             bool reverse)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    /* A scalar is a line of one, along axis 0 or -1, as in PyTorch. */
    int ax = x->rank == 0 && (axis == 0 || axis == -1) ? 0 : agi_norm_axis(axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "%s: axis %d is out of range for shape %s", who, axis,
                         agi_shp(x, 0));
    ag_tensor *out = agi_new(t, op, 1, &x, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.stat.axis = ax;
    int64_t kept[AG_MAX_DIMS], n = 1, inner = 1;
    if (x->rank > 0)
        axis_geometry(x, ax, kept, &n, &inner);
    if (n == 0)
        return out;
    line_job j = {.x = x, .out = out, .n = n, .inner = inner, .reverse = reverse};
    ag_pool_for(t->pool, x->numel / n, line_grain(n), cumsum_lines, &j);
    return out;
}

/* cumsum: out[k] = x[0] + ... + x[k], so d out[k] / d x[i] = [i <= k] and
** the gradient of x[i] is g[i] + ... + g[n-1]: the reverse running sum. */
static void vjp_cumsum(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = agi_cumsum_reverse(t, g, out->attr.stat.axis);
}
/* Both running sums are linear: each one's JVP is itself applied to the tangent. */
static ag_tensor *jvp_cumsum(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_cumsum(t, tan[0], out->attr.stat.axis);
}
static const ag_op op_cumsum = {.name = "cumsum", .vjp = vjp_cumsum, .jvp = jvp_cumsum};

/* The reverse running sum's adjoint is the forward one. */
static void vjp_cumsum_reverse(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_cumsum(t, g, out->attr.stat.axis);
}
static ag_tensor *jvp_cumsum_reverse(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return agi_cumsum_reverse(t, tan[0], out->attr.stat.axis);
}
static const ag_op op_cumsum_reverse = {
    .name = "cumsum_reverse", .vjp = vjp_cumsum_reverse, .jvp = jvp_cumsum_reverse};

ag_tensor *ag_cumsum(ag_tape *t, ag_tensor *x, int axis)
{
    return cumsum_dir(t, &op_cumsum, "ag_cumsum", x, axis, false);
}

ag_tensor *agi_cumsum_reverse(ag_tape *t, ag_tensor *x, int axis)
{
    return cumsum_dir(t, &op_cumsum_reverse, "agi_cumsum_reverse", x, axis, true);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_stats[] = {
    &op_var, &op_std, &op_cumsum, &op_cumsum_reverse, NULL
};
