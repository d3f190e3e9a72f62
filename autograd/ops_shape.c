/*
** ops_shape.c: ops that move elements without arithmetic: reshape,
** permute/transpose, slice (and its adjoint), concat, cast, detach.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <string.h>

/* Row-major strides of x, in elements. */
static void strides_of(const ag_tensor *x, int64_t *s)
{
    int64_t acc = 1;
    for (int i = x->rank - 1; i >= 0; i--) {
        s[i] = acc;
        acc *= x->shape[i];
    }
}


/* out = x read through 'strides' (over out's shape) from 'base' elements in. */
static void gather(ag_tensor *out, const ag_tensor *x, int64_t base, const int64_t *strides)
{
    if (out->numel == 0)
        return;
    const char *src = (const char *)x->value + base * (int64_t)ag_dtype_size((ag_dtype)x->dtype);
    if (out->rank == 0)
        agi_set(out, 0, agi_get(x, base));
    else
        agk_map2((ag_dtype)x->dtype, out->rank, out->shape, src, strides, src, strides, out->value,
                 agk_first);
}

/* a * b for a, b >= 0, saturating at INT64_MAX rather than overflowing. */
static int64_t mul_sat(int64_t a, int64_t b)
{
    return a != 0 && b > INT64_MAX / a ? INT64_MAX : a * b;
}

/* reshape: same elements, new shape; the gradient is reshaped back */
static void vjp_reshape(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_reshape(t, g, out->in[0]->rank, out->in[0]->shape);
}
/* Every op of this file moves elements without arithmetic, so each is
** linear: its JVP is the op itself applied to the tangent. */
static ag_tensor *jvp_reshape(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_reshape(t, tan[0], out->rank, out->shape);
}
static const ag_op op_reshape = {.name = "reshape", .vjp = vjp_reshape, .jvp = jvp_reshape};

ag_tensor *ag_reshape(ag_tape *t, ag_tensor *x, int rank, const int64_t *shape)
{
    if (!agi_check_inputs(t, "ag_reshape", 1, &x, false))
        return agi_nil(t);
    if (rank < 0 || rank > AG_MAX_DIMS || (rank > 0 && !shape))
        return agi_error(t, AG_EINVAL, "ag_reshape: target rank %d is invalid", rank);
    /* One dimension may be -1: it takes whatever size makes the counts agree. */
    int64_t dims[AG_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < rank; i++) {
        dims[i] = shape[i];
        if (shape[i] == -1 && infer < 0)
            infer = i;
        else if (shape[i] < 0)
            return agi_error(t, AG_ESHAPE, "ag_reshape: dimension %d of the target is %lld", i,
                             (long long)shape[i]);
        else
            known = mul_sat(known, shape[i]);
    }
    if (infer >= 0)
        dims[infer] = known > 0 && x->numel % known == 0 ? x->numel / known : -1;
    int64_t n = 1;
    for (int i = 0; i < rank; i++)
        n = mul_sat(n, dims[i] < 0 ? 0 : dims[i]);
    if (n != x->numel || (infer >= 0 && dims[infer] < 0)) {
        char to[96];
        agi_shape_str(to, sizeof to, rank, shape);
        return agi_error(t, AG_ESHAPE, "ag_reshape: cannot view %s (%lld elements) as %s",
                         agi_shp(x, 0), (long long)x->numel, to);
    }
    ag_tensor *out = agi_new(t, &op_reshape, 1, &x, (ag_dtype)x->dtype, rank, dims);
    if (!(out->flags & AGI_NIL) && x->numel)
        memcpy(out->value, x->value, (size_t)x->numel * ag_dtype_size((ag_dtype)x->dtype));
    return out;
}

/* permute: out axis i is x axis perm[i]; the gradient permutes back */
static void vjp_permute(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int inverse[AG_MAX_DIMS];
    for (int i = 0; i < out->rank; i++)
        inverse[out->attr.perm[i]] = i;
    gin[0] = ag_permute(t, g, inverse);
}
static ag_tensor *jvp_permute(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    int perm[AG_MAX_DIMS];
    for (int i = 0; i < out->rank; i++)
        perm[i] = out->attr.perm[i];
    return ag_permute(t, tan[0], perm);
}
static const ag_op op_permute = {.name = "permute", .vjp = vjp_permute, .jvp = jvp_permute};

ag_tensor *ag_permute(ag_tape *t, ag_tensor *x, const int *perm)
{
    if (!agi_check_inputs(t, "ag_permute", 1, &x, false))
        return agi_nil(t);
    if (x->rank > 0 && !perm)
        return agi_error(t, AG_EINVAL, "ag_permute: perm is NULL for shape %s", agi_shp(x, 0));
    int64_t shape[AG_MAX_DIMS], xs[AG_MAX_DIMS], strides[AG_MAX_DIMS];
    bool seen[AG_MAX_DIMS] = {false};
    strides_of(x, xs);
    for (int i = 0; i < x->rank; i++) {
        if (perm[i] < 0 || perm[i] >= x->rank || seen[perm[i]])
            return agi_error(t, AG_EINVAL,
                             "ag_permute: entry %d (%d) makes no permutation of %d axes for %s", i,
                             perm[i], x->rank, agi_shp(x, 0));
        seen[perm[i]] = true;
        shape[i] = x->shape[perm[i]];
        strides[i] = xs[perm[i]];
    }
    ag_tensor *out = agi_new(t, &op_permute, 1, &x, (ag_dtype)x->dtype, x->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    for (int i = 0; i < x->rank; i++)
        out->attr.perm[i] = (uint8_t)perm[i];
    gather(out, x, 0, strides);
    return out;
}

ag_tensor *ag_transpose(ag_tape *t, ag_tensor *x, int axis0, int axis1)
{
    if (!agi_check_inputs(t, "ag_transpose", 1, &x, false))
        return agi_nil(t);
    int a0 = agi_norm_axis(axis0, x->rank), a1 = agi_norm_axis(axis1, x->rank);
    if (a0 < 0 || a1 < 0)
        return agi_error(t, AG_EINVAL, "ag_transpose: axes %d and %d do not both exist in %s",
                         axis0, axis1, agi_shp(x, 0));
    int perm[AG_MAX_DIMS];
    for (int i = 0; i < x->rank; i++)
        perm[i] = i;
    perm[a0] = a1;
    perm[a1] = a0;
    return ag_permute(t, x, perm);
}

/* slice: every step-th element of [start, stop) along one axis; the gradient
** scatters back into zeros (slice_grad), whose own gradient slices again */
static void vjp_slice(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = agi_slice_grad(t, g, out->in[0], out->attr.slice.axis, out->attr.slice.start,
                            out->attr.slice.step);
}
/* The stop that picks out's elements again from 'start' by 'step': an empty
** slice stops where it starts (the formula for n > 0 would put stop before
** start, which ag_slice rejects). */
static int64_t slice_stop(int64_t start, int64_t step, int64_t n)
{
    return n > 0 ? start + (n - 1) * step + 1 : start;
}
static ag_tensor *jvp_slice(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    int ax = out->attr.slice.axis;
    int64_t start = out->attr.slice.start, step = out->attr.slice.step;
    return ag_slice(t, tan[0], ax, start, slice_stop(start, step, out->shape[ax]), step);
}
static const ag_op op_slice = {.name = "slice", .vjp = vjp_slice, .jvp = jvp_slice};

ag_tensor *ag_slice(ag_tape *t, ag_tensor *x, int axis, int64_t start, int64_t stop, int64_t step)
{
    if (!agi_check_inputs(t, "ag_slice", 1, &x, false))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_slice: axis %d is out of range for %s", axis,
                         agi_shp(x, 0));
    int64_t dim = x->shape[ax];
    int64_t s = start < 0 ? start + dim : start, e = stop < 0 ? stop + dim : stop;
    if (step < 1 || s < 0 || e > dim || s > e)
        return agi_error(t, AG_EINVAL,
                         "ag_slice: [%lld:%lld:%lld] does not fit axis %d of %s (size %lld)",
                         (long long)start, (long long)stop, (long long)step, axis, agi_shp(x, 0),
                         (long long)dim);
    /* A step past the axis's end picks one element, as 'dim' would; clamped,
    ** the index arithmetic below cannot overflow. */
    if (step > dim)
        step = dim > 0 ? dim : 1;
    int64_t shape[AG_MAX_DIMS], strides[AG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->rank * sizeof *shape);
    shape[ax] = (e - s + step - 1) / step;
    strides_of(x, strides);
    int64_t base = s * strides[ax];
    strides[ax] *= step;
    ag_tensor *out = agi_new(t, &op_slice, 1, &x, (ag_dtype)x->dtype, x->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.slice.axis = ax;
    out->attr.slice.start = s;
    out->attr.slice.step = step;
    gather(out, x, base, strides);
    return out;
}

static void vjp_slice_grad(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const ag_tensor *sl = out->in[0];
    int ax = out->attr.slice.axis;
    int64_t start = out->attr.slice.start, step = out->attr.slice.step;
    /* The slice that was scattered. */
    gin[0] = ag_slice(t, g, ax, start, slice_stop(start, step, sl->shape[ax]), step);
}
static ag_tensor *jvp_slice_grad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return agi_slice_grad(t, tan[0], out, out->attr.slice.axis, out->attr.slice.start,
                          out->attr.slice.step);
}
static const ag_op op_slice_grad = {
    .name = "slice_grad", .vjp = vjp_slice_grad, .jvp = jvp_slice_grad};

ag_tensor *agi_slice_grad(ag_tape *t, ag_tensor *g, const ag_tensor *x, int axis, int64_t start,
                          int64_t step)
{
    if (!agi_check_inputs(t, "slice_grad", 1, &g, false))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_slice_grad, 1, &g, (ag_dtype)g->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.slice.axis = axis;
    out->attr.slice.start = start;
    out->attr.slice.step = step;
    ag_fill(out, 0.0);
    int64_t so[AG_MAX_DIMS], idx[AG_MAX_DIMS] = {0};
    strides_of(out, so);
    int64_t o = start * so[axis];
    so[axis] *= step;
    for (int64_t i = 0; i < g->numel; i++) {
        agi_set(out, o, agi_get(g, i));
        for (int d = g->rank - 1; d >= 0; d--) {
            o += so[d];
            if (++idx[d] < g->shape[d])
                break;
            o -= so[d] * g->shape[d];
            idx[d] = 0;
        }
    }
    return out;
}

/* concat: inputs side by side along one axis; each gets its slice of g */
static void vjp_concat(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int ax = out->attr.red.axis;
    int64_t off = 0;
    for (int i = 0; i < out->nin; i++) {
        int64_t len = out->in[i]->shape[ax];
        if (agi_needs_grad(out, i))
            gin[i] = ag_slice(t, g, ax, off, off + len, 1);
        off += len;
    }
}
/* The inputs' tangents side by side, zeros standing in for those without. */
static ag_tensor *jvp_concat(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor **parts = agi_arena_alloc(t, (size_t)out->nin * sizeof *parts, 16);
    if (!parts)
        return NULL;
    for (int i = 0; i < out->nin; i++) {
        const ag_tensor *x = out->in[i];
        parts[i] = tan[i] ? tan[i] : ag_zeros(t, (ag_dtype)x->dtype, x->rank, x->shape);
    }
    return ag_concat(t, out->nin, parts, out->attr.red.axis);
}
static const ag_op op_concat = {.name = "concat", .vjp = vjp_concat, .jvp = jvp_concat};

ag_tensor *ag_concat(ag_tape *t, int n, ag_tensor *const *xs, int axis)
{
    if (!t || t->status != AG_OK)
        return agi_nil(t);
    if (n < 1 || n > 255 || !xs)
        return agi_error(t, AG_EINVAL, "ag_concat: %d inputs (xs %p); 1 to 255 are allowed", n,
                         (const void *)xs);
    if (!agi_check_inputs(t, "ag_concat", n, xs, true))
        return agi_nil(t);
    const ag_tensor *x0 = xs[0];
    int ax = agi_norm_axis(axis, x0->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_concat: axis %d is out of range for %s", axis,
                         agi_shp(x0, 0));
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x0->shape, (size_t)x0->rank * sizeof *shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) {
        const ag_tensor *x = xs[i];
        bool fits = x->rank == x0->rank;
        for (int d = 0; fits && d < x->rank; d++)
            fits = d == ax || x->shape[d] == x0->shape[d];
        if (!fits)
            return agi_error(t, AG_ESHAPE, "ag_concat: input %d %s does not match input 0 %s "
                             "outside axis %d", i, agi_shp(x, 0), agi_shp(x0, 1), ax);
        shape[ax] += x->shape[ax];
    }
    ag_tensor *out = agi_new(t, &op_concat, n, xs, (ag_dtype)x0->dtype, x0->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.red.axis = ax;
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; d++)
        outer *= shape[d];
    for (int d = ax + 1; d < x0->rank; d++)
        inner *= shape[d];
    size_t es = ag_dtype_size((ag_dtype)x0->dtype);
    char *dst = out->value;
    for (int64_t o = 0; o < outer; o++)
        for (int i = 0; i < n; i++) {
            size_t chunk = (size_t)(xs[i]->shape[ax] * inner) * es;
            memcpy(dst, (const char *)xs[i]->value + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    return out;
}

/* cast: the same values in another dtype; the gradient casts back */
static void vjp_cast(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_cast(t, g, (ag_dtype)out->in[0]->dtype);
}
static ag_tensor *jvp_cast(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_cast(t, tan[0], (ag_dtype)out->dtype);
}
static const ag_op op_cast = {.name = "cast", .vjp = vjp_cast, .jvp = jvp_cast};

ag_tensor *ag_cast(ag_tape *t, ag_tensor *x, ag_dtype dt)
{
    if (!agi_check_inputs(t, "ag_cast", 1, &x, false))
        return agi_nil(t);
    if (dt != AG_F32 && dt != AG_F64)
        return agi_error(t, AG_EDTYPE, "ag_cast: dtype %d is neither AG_F32 nor AG_F64", (int)dt);
    ag_tensor *out = agi_new(t, &op_cast, 1, &x, dt, x->rank, x->shape);
    for (int64_t i = 0; !(out->flags & AGI_NIL) && i < x->numel; i++)
        agi_set(out, i, agi_get(x, i));
    return out;
}

ag_tensor *ag_detach(ag_tape *t, ag_tensor *x)
{
    if (!agi_check_inputs(t, "ag_detach", 1, &x, false))
        return agi_nil(t);
    return ag_tensor_from(t, (ag_dtype)x->dtype, x->rank, x->shape, x->value);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_shape[] = {
    &op_reshape, &op_permute, &op_slice, &op_slice_grad, &op_concat, &op_cast, NULL
};
