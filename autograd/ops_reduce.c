/*
** ops_reduce.c: reductions (sum, max, min, logsumexp over everything or one
** axis, mean on top of sum) and the pair that maps between a shape and one
** it broadcasts to: broadcast_to and its adjoint sum_to.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>
#include <stdalign.h>

enum { AXIS_ALL = -1000 };

/* Reduces n elements of x starting at 'base', 'stride' apart. */
typedef double (*reducer)(const ag_tensor *x, int64_t base, int64_t n, int64_t stride);

static double r_sum(const ag_tensor *x, int64_t base, int64_t n, int64_t stride)
{
    /* agi_get's terms, with the dtype's test out of the loop (a batch
    ** norm's means spend their time here) */
    double s = 0;
    if (x->dtype == AG_F32) {
        const float *v = (const float *)x->value + base;
        for (int64_t k = 0; k < n; k++)
            s += (double)v[k * stride];
    } else {
        const double *v = (const double *)x->value + base;
        for (int64_t k = 0; k < n; k++)
            s += v[k * stride];
    }
    return s;
}

static double r_max(const ag_tensor *x, int64_t base, int64_t n, int64_t stride)
{
    double m = -INFINITY;
    for (int64_t k = 0; k < n; k++) {
        double v = agi_get(x, base + k * stride);
        if (v > m || isnan(v))
            m = v;
        if (isnan(m))
            break;
    }
    return m;
}

static double r_min(const ag_tensor *x, int64_t base, int64_t n, int64_t stride)
{
    double m = INFINITY;
    for (int64_t k = 0; k < n; k++) {
        double v = agi_get(x, base + k * stride);
        if (v < m || isnan(v))
            m = v;
        if (isnan(m))
            break;
    }
    return m;
}

/* log sum e^x, shifted by the maximum so that it neither overflows nor
** underflows to -inf for very negative inputs: m + log1p(the sum of the
** other terms), the maximum's own being e^0 = 1 (log of 1 + a small sum
** would drop its digits below an ulp of 1). */
static double r_logsumexp(const ag_tensor *x, int64_t base, int64_t n, int64_t stride)
{
    double m = r_max(x, base, n, stride);
    if (isinf(m) || isnan(m))
        return m;
    double rest = 0;
    bool seen = false;
    for (int64_t k = 0; k < n; k++) {
        double v = agi_get(x, base + k * stride);
        if (v == m && !seen)
            seen = true;
        else
            rest += exp(v - m);
    }
    return m + log1p(rest);
}

/* Below this many elements per thread, a reduction stays on one thread. */
enum { MIN_ELEMS_PER_THREAD = 1 << 15 };
/* A whole-tensor reduction of many elements is cut into chunks of this
** size, whatever the threads: each chunk reduced alone, then the chunks'
** results in order, so the sum's rounding never depends on the pool. */
enum { CHUNK = 1 << 14 };

/* Output o of a reduction along an axis reduces n elements, 'inner' apart,
** from (o / inner) * n * inner + o % inner. */
typedef struct reduce_job {
    const ag_tensor *x;
    ag_tensor *out;
    reducer r;
    int64_t n, inner;
    double *partial;   /* reduce_in_chunks: one result per chunk */
} reduce_job;

static void reduce_outputs(void *ctx, int64_t begin, int64_t end)
{
    const reduce_job *j = ctx;
    int64_t a = begin / j->inner, i = begin % j->inner;
    for (int64_t o = begin; o < end; o++) {
        agi_set(j->out, o, j->r(j->x, a * j->n * j->inner + i, j->n, j->inner));
        if (++i == j->inner) {
            i = 0;
            a++;
        }
    }
}

static void reduce_chunks(void *ctx, int64_t begin, int64_t end)
{
    const reduce_job *j = ctx;
    for (int64_t c = begin; c < end; c++) {
        int64_t base = c * CHUNK, len = j->n - base < CHUNK ? j->n - base : CHUNK;
        j->partial[c] = j->r(j->x, base, len, 1);
    }
}

/* sum, max or min over all of x (n elements), chunk by chunk. */
static void reduce_in_chunks(ag_tape *t, reduce_job *j)
{
    int64_t chunks = (j->n + CHUNK - 1) / CHUNK;
    j->partial = agi_arena_alloc(t, (size_t)chunks * sizeof *j->partial, alignof(double));
    if (!j->partial)
        return;
    ag_pool_for(t->pool, chunks, MIN_ELEMS_PER_THREAD / CHUNK, reduce_chunks, j);
    /* The chunks' results, reduced as one more row of elements. */
    ag_tensor row = {.value = j->partial, .dtype = AG_F64, .numel = chunks};
    agi_set(j->out, 0, j->r(&row, 0, chunks, 1));
}

/* x's shape with the reduced axis set to 1 (every axis, for AXIS_ALL). */
static void kept_shape(const ag_tensor *x, int axis, int64_t *shape)
{
    for (int i = 0; i < x->rank; i++)
        shape[i] = axis == AXIS_ALL || i == axis ? 1 : x->shape[i];
}

/* y, the result of reducing x along 'axis', broadcast back to x's shape. */
static ag_tensor *expand_back(ag_tape *t, ag_tensor *y, const ag_tensor *x, int axis)
{
    int64_t shape[AG_MAX_DIMS];
    kept_shape(x, axis, shape);
    return ag_broadcast_to(t, ag_reshape(t, y, x->rank, shape), x->rank, x->shape);
}

/* Reduces x along 'axis', or over all its elements when 'all' is set. */
static ag_tensor *reduce(ag_tape *t, const ag_op *op, const char *who, ag_tensor *x, bool all,
                         int axis, int keepdim, reducer r)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    int ax = AXIS_ALL;
    if (!all && (ax = agi_norm_axis(axis, x->rank)) < 0)
        return agi_error(t, AG_EINVAL, "%s: axis %d is out of range for shape %s", who, axis,
                         agi_shp(x, 0));
    if (r != r_sum && x->numel == 0)
        return agi_error(t, AG_ESHAPE, "%s: cannot reduce the empty shape %s", who, agi_shp(x, 0));
    int64_t shape[AG_MAX_DIMS];
    int rank = 0;
    if (all) {
        rank = 0;
    } else if (keepdim) {
        kept_shape(x, ax, shape);
        rank = x->rank;
    } else {
        for (int i = 0; i < x->rank; i++)
            if (i != ax)
                shape[rank++] = x->shape[i];
    }
    ag_tensor *out = agi_new(t, op, 1, &x, (ag_dtype)x->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.red.axis = ax;
    out->attr.red.keepdim = keepdim;
    int64_t n = ax == AXIS_ALL ? x->numel : x->shape[ax], inner = 1, outer = 1;
    if (ax != AXIS_ALL) {
        for (int i = ax + 1; i < x->rank; i++)
            inner *= x->shape[i];
        for (int i = 0; i < ax; i++)
            outer *= x->shape[i];
    }
    reduce_job j = {.x = x, .out = out, .r = r, .n = n, .inner = inner};
    if (ax == AXIS_ALL && r != r_logsumexp && n >= 2 * CHUNK)
        reduce_in_chunks(t, &j);
    else
        ag_pool_for(t->pool, outer * inner, (MIN_ELEMS_PER_THREAD + n - 1) / (n ? n : 1),
                         reduce_outputs, &j);
    return out;
}

/* sum: the gradient is g copied to every summed element */
static void vjp_sum(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = expand_back(t, g, out->in[0], out->attr.red.axis);
}
/* A tangent reduced as x was, to out's shape. */
static ag_tensor *reduce_like(ag_tape *t, const ag_tensor *out, ag_tensor *v)
{
    int axis = out->attr.red.axis;
    return axis == AXIS_ALL ? ag_sum(t, v) : ag_sum_axis(t, v, axis, out->attr.red.keepdim);
}
static ag_tensor *jvp_sum(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return reduce_like(t, out, tan[0]);
}
static const ag_op op_sum = {.name = "sum", .vjp = vjp_sum, .jvp = jvp_sum};

/* max and min: the gradient goes to the elements equal to the result, split
** evenly among ties */
static void vjp_extremum(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0];
    int axis = out->attr.red.axis;
    ag_tensor *hit = ag_eq(t, x, expand_back(t, out, x, axis));
    ag_tensor *count = axis == AXIS_ALL ? ag_sum(t, hit) : ag_sum_axis(t, hit, axis, 1);
    gin[0] = ag_mul(t, expand_back(t, g, x, axis),
                    ag_div(t, hit, ag_broadcast_to(t, count, x->rank, x->shape)));
}
/* The tangent of the winner, averaged over ties as the vjp splits g. */
static ag_tensor *jvp_extremum(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *x = out->in[0];
    int axis = out->attr.red.axis;
    ag_tensor *hit = ag_eq(t, x, expand_back(t, out, x, axis));
    ag_tensor *count = axis == AXIS_ALL ? ag_sum(t, hit) : ag_sum_axis(t, hit, axis, 1);
    ag_tensor *share = ag_div(t, hit, ag_broadcast_to(t, count, x->rank, x->shape));
    return reduce_like(t, out, ag_mul(t, tan[0], share));
}
static const ag_op op_max = {.name = "max", .vjp = vjp_extremum, .jvp = jvp_extremum};
static const ag_op op_min = {.name = "min", .vjp = vjp_extremum, .jvp = jvp_extremum};

/* logsumexp: d/dx = softmax x, taken from ag_softmax, which divides
** e^(x - max) by its sum: e^(x - out) would carry out's rounding, as large as
** an ulp of the largest logit (the gradient at [1e7, 1e7] in f32 was e^-1,
** not 1/2). Over all elements, the softmax of x as one row. */
static void vjp_logsumexp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0];
    int axis = out->attr.red.axis;
    ag_tensor *p;
    if (axis == AXIS_ALL)
        p = ag_reshape(t, ag_softmax(t, ag_reshape(t, x, 1, &x->numel), 0), x->rank, x->shape);
    else
        p = ag_softmax(t, x, axis);
    gin[0] = ag_mul(t, expand_back(t, g, x, axis), p);
}
/* d logsumexp = sum(softmax(x) dx): the vjp's softmax, applied to v. */
static ag_tensor *jvp_logsumexp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *x = out->in[0];
    ag_tensor *p;
    if (out->attr.red.axis == AXIS_ALL)
        p = ag_reshape(t, ag_softmax(t, ag_reshape(t, x, 1, &x->numel), 0), x->rank, x->shape);
    else
        p = ag_softmax(t, x, out->attr.red.axis);
    return reduce_like(t, out, ag_mul(t, tan[0], p));
}
static const ag_op op_logsumexp = {
    .name = "logsumexp", .vjp = vjp_logsumexp, .jvp = jvp_logsumexp};

ag_tensor *ag_sum(ag_tape *t, ag_tensor *x) { return reduce(t, &op_sum, "ag_sum", x, true, 0, 0, r_sum); }
ag_tensor *ag_max(ag_tape *t, ag_tensor *x) { return reduce(t, &op_max, "ag_max", x, true, 0, 0, r_max); }
ag_tensor *ag_min(ag_tape *t, ag_tensor *x) { return reduce(t, &op_min, "ag_min", x, true, 0, 0, r_min); }
ag_tensor *ag_logsumexp(ag_tape *t, ag_tensor *x)
{
    return reduce(t, &op_logsumexp, "ag_logsumexp", x, true, 0, 0, r_logsumexp);
}

ag_tensor *ag_sum_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim)
{
    return reduce(t, &op_sum, "ag_sum_axis", x, false, axis, keepdim, r_sum);
}
ag_tensor *ag_max_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim)
{
    return reduce(t, &op_max, "ag_max_axis", x, false, axis, keepdim, r_max);
}
ag_tensor *ag_min_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim)
{
    return reduce(t, &op_min, "ag_min_axis", x, false, axis, keepdim, r_min);
}
ag_tensor *ag_logsumexp_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim)
{
    return reduce(t, &op_logsumexp, "ag_logsumexp_axis", x, false, axis, keepdim,
                  r_logsumexp);
}

/* mean = sum / n */
ag_tensor *ag_mean(ag_tape *t, ag_tensor *x)
{
    if (!agi_check_inputs(t, "ag_mean", 1, &x, false))
        return agi_nil(t);
    if (x->numel == 0)
        return agi_error(t, AG_ESHAPE, "ag_mean: the mean of the empty shape %s is undefined",
                         agi_shp(x, 0));
    return ag_mul_scalar(t, ag_sum(t, x), 1.0 / (double)x->numel);
}

ag_tensor *ag_mean_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim)
{
    /* Checked here so that errors name ag_mean_axis, not ag_sum_axis. */
    if (!agi_check_inputs(t, "ag_mean_axis", 1, &x, false))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_mean_axis: axis %d is out of range for shape %s", axis,
                         agi_shp(x, 0));
    int64_t n = x->shape[ax];
    if (n == 0)
        return agi_error(t, AG_ESHAPE, "ag_mean_axis: axis %d of %s is empty", axis, agi_shp(x, 0));
    return ag_mul_scalar(t, ag_sum_axis(t, x, axis, keepdim), 1.0 / (double)n);
}

/* broadcast_to: copies x along the dims it repeats; the adjoint is sum_to */
static void vjp_broadcast_to(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)out;
    gin[0] = ag_sum_to(t, g, out->in[0]->rank, out->in[0]->shape);
}
static ag_tensor *jvp_broadcast_to(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_broadcast_to(t, tan[0], out->rank, out->shape);
}
static const ag_op op_broadcast_to = {
    .name = "broadcast_to", .vjp = vjp_broadcast_to, .jvp = jvp_broadcast_to};

/* Does 'from' broadcast to exactly 'to'? */
static bool broadcasts_to(int rf, const int64_t *from, int rt, const int64_t *to)
{
    if (rf > rt)
        return false;
    for (int i = 0; i < rf; i++) {
        int64_t f = from[i], d = to[rt - rf + i];
        if (f != d && f != 1)
            return false;
    }
    return true;
}

static bool check_target(ag_tape *t, const char *who, int rank, const int64_t *shape)
{
    if (rank < 0 || rank > AG_MAX_DIMS || (rank > 0 && !shape)) {
        agi_error(t, AG_EINVAL, "%s: target rank %d (shape %p) is invalid", who, rank,
                  (const void *)shape);
        return false;
    }
    return true;
}

ag_tensor *ag_broadcast_to(ag_tape *t, ag_tensor *x, int rank, const int64_t *shape)
{
    if (!agi_check_inputs(t, "ag_broadcast_to", 1, &x, false) ||
        !check_target(t, "ag_broadcast_to", rank, shape))
        return agi_nil(t);
    if (!broadcasts_to(x->rank, x->shape, rank, shape)) {
        char to[96];
        agi_shape_str(to, sizeof to, rank, shape);
        return agi_error(t, AG_ESHAPE, "ag_broadcast_to: %s does not broadcast to %s",
                         agi_shp(x, 0), to);
    }
    ag_tensor *out = agi_new(t, &op_broadcast_to, 1, &x, (ag_dtype)x->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    int64_t sx[AG_MAX_DIMS];
    agi_broadcast_strides(x, rank, shape, sx);
    if (rank == 0)
        agi_set(out, 0, agi_get(x, 0));
    else
        agk_map2((ag_dtype)x->dtype, rank, shape, x->value, sx, x->value, sx, out->value, agk_first);
    return out;
}

/* sum_to: sums x over the dims on which 'shape' broadcasts to x's shape */
static void vjp_sum_to(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_broadcast_to(t, g, out->in[0]->rank, out->in[0]->shape);
}
static ag_tensor *jvp_sum_to(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_sum_to(t, tan[0], out->rank, out->shape);
}
static const ag_op op_sum_to = {.name = "sum_to", .vjp = vjp_sum_to, .jvp = jvp_sum_to};

/* Adds a row of n elements of x into out: element by element where out
** keeps the dim (step 1), all into out[0] where it sums it (step 0); one
** rounding per add either way. */
static void add_row(ag_dtype dt, void *out, int64_t step, const void *x, int64_t n)
{
    if (step) {
        agk_add_inplace(NULL, dt, n, out, x);
    } else if (dt == AG_F32) {
        /* the same chain of roundings, kept in a register rather than
        ** stored and reloaded at every add */
        float acc = *(float *)out;
        const float *s = x;
        for (int64_t j = 0; j < n; j++)
            acc += s[j];
        *(float *)out = acc;
    } else {
        double acc = *(double *)out;
        const double *s = x;
        for (int64_t j = 0; j < n; j++)
            acc += s[j];
        *(double *)out = acc;
    }
}

ag_tensor *ag_sum_to(ag_tape *t, ag_tensor *x, int rank, const int64_t *shape)
{
    if (!agi_check_inputs(t, "ag_sum_to", 1, &x, false) ||
        !check_target(t, "ag_sum_to", rank, shape))
        return agi_nil(t);
    if (!broadcasts_to(rank, shape, x->rank, x->shape)) {
        char to[96];
        agi_shape_str(to, sizeof to, rank, shape);
        return agi_error(t, AG_ESHAPE, "ag_sum_to: %s does not broadcast to %s", to,
                         agi_shp(x, 0));
    }
    ag_tensor *out = agi_new(t, &op_sum_to, 1, &x, (ag_dtype)x->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    ag_fill(out, 0.0);
    if (x->numel == 0)
        return out;
    /* x's rows (its last dim) in order, each added into out at the offset the
    ** other dims give: element by element where out keeps the last dim (a
    ** bias's gradient), into one element where it sums it. Either way each
    ** output element takes its terms in x's order, one rounding per add. */
    int64_t so[AG_MAX_DIMS], idx[AG_MAX_DIMS] = {0}, o = 0;
    agi_broadcast_strides(out, x->rank, x->shape, so);
    int last = x->rank - 1;
    int64_t row = last >= 0 ? x->shape[last] : 1, step = last >= 0 ? so[last] : 0;
    ag_dtype dt = (ag_dtype)x->dtype;
    size_t es = ag_dtype_size(dt);
    for (int64_t i = 0; i < x->numel; i += row) {
        add_row(dt, (char *)out->value + (size_t)o * es, step, (const char *)x->value + (size_t)i * es,
                row);
        for (int d = last - 1; d >= 0; d--) {
            o += so[d];
            if (++idx[d] < x->shape[d])
                break;
            o -= so[d] * x->shape[d];
            idx[d] = 0;
        }
    }
    return out;
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_reduce[] = {
    &op_sum, &op_sum_to, &op_max, &op_min, &op_logsumexp, &op_broadcast_to, NULL
};
