/*
** ops_index.c: ops that pick elements by integer position: index_select and
** its adjoint index_add, gather and its adjoint scatter_add, and ag_index
** (an element or sub-tensor by its leading coordinates) with its adjoint.
** Indices are int64 arrays, checked against their axis and copied into the
** tape's arena, so that a vjp can still read them after the caller's array
** is gone; the vjps pass that copy on without copying or checking again.
** The inner constructors (the _raw ones, index_block, index_grad) still
** check their tensor inputs, cheaply: called from a vjp, an input may be the
** result of the op just before, whose tangent (forward mode) is computed
** only when the next op checks its inputs.
*/
#include "internal.h"

#include <string.h>

/* Row-major strides of a shape, in elements. */
static void strides_of(int rank, const int64_t *shape, int64_t *s)
{
    int64_t acc = 1;
    for (int i = rank - 1; i >= 0; i--) {
        s[i] = acc;
        acc *= shape[i];
    }
}

/* Product of shape[from, to). */
static int64_t span(const int64_t *shape, int from, int to)
{
    int64_t n = 1;
    for (int d = from; d < to; d++)
        n *= shape[d];
    return n;
}

/* Copies the n indices of an axis of size 'dim' into the arena after
** checking that each lies in [0, dim); NULL with AG_EINVAL (naming 'who',
** the index, its entry and the axis) or AG_ENOMEM recorded otherwise. */
static const int64_t *copy_indices(ag_tape *t, const char *who, int64_t n, const int64_t *idx,
                                   int axis, int64_t dim)
{
    if (n > 0 && !idx) {
        agi_error(t, AG_EINVAL, "%s: idx is NULL for %lld indices", who, (long long)n);
        return NULL;
    }
    /* As agi_new bounds element counts: the copy's size cannot overflow. */
    if (n > INT64_MAX / 8 / (int64_t)sizeof *idx) {
        agi_error(t, AG_EINVAL, "%s: %lld indices are too many", who, (long long)n);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= dim) {
            agi_error(t, AG_EINVAL, "%s: index %lld (entry %lld) is outside [0, %lld), the size "
                      "of axis %d", who, (long long)idx[i], (long long)i, (long long)dim, axis);
            return NULL;
        }
    /* One element at least: the arena hands out no empty blocks. */
    int64_t *copy = agi_arena_alloc(t, (size_t)(n > 0 ? n : 1) * sizeof *copy, 16);
    if (copy && n > 0)
        memcpy(copy, idx, (size_t)n * sizeof *copy);
    return copy;
}

/* The element offsets of a walk over 'shape' through 'stride' (0 on axes
** the walk must not move along), one step at a time: the odometer that
** gather and scatter_add share. */
typedef struct walk {
    int rank;
    const int64_t *shape;
    int64_t stride[AG_MAX_DIMS], at[AG_MAX_DIMS];
    int64_t off;
} walk;

static void walk_start(walk *w, int rank, const int64_t *shape, const int64_t *stride)
{
    w->rank = rank;
    w->shape = shape;
    w->off = 0;
    for (int d = 0; d < rank; d++) {
        w->stride[d] = stride[d];
        w->at[d] = 0;
    }
}

static inline void walk_next(walk *w)
{
    for (int d = w->rank - 1; d >= 0; d--) {
        w->off += w->stride[d];
        if (++w->at[d] < w->shape[d])
            return;
        w->off -= w->stride[d] * w->shape[d];
        w->at[d] = 0;
    }
}

/* --------------------------------------------------- index_select, index_add */

/* d[i] += s[i] for i < n, in the dtype's own arithmetic. */
static void add_into(ag_dtype dt, void *d, const void *s, int64_t n)
{
    if (dt == AG_F32) {
        float *df = d;
        const float *sf = s;
        for (int64_t i = 0; i < n; i++)
            df[i] += sf[i];
    } else {
        double *dd = d;
        const double *sd = s;
        for (int64_t i = 0; i < n; i++)
            dd[i] += sd[i];
    }
}

/* Adds src's slices along 'axis' at the indices into 'dst', a tensor of
** src's shape but for 'dim' along the axis: src's block (o, i) into dst's
** block (o, idx[i]), in src's order, so repeated indices add in a fixed order. */
static void add_slices(const ag_tensor *src, int axis, const int64_t *idx, int64_t dim, void *dst)
{
    size_t es = ag_dtype_size((ag_dtype)src->dtype);
    int64_t n = src->shape[axis];
    int64_t outer = span(src->shape, 0, axis), inner = span(src->shape, axis + 1, src->rank);
    const char *from = src->value;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < n; i++, from += (size_t)inner * es)
            add_into((ag_dtype)src->dtype, (char *)dst + (size_t)((o * dim + idx[i]) * inner) * es,
                     from, inner);
}

/* out = base + src's slices along 'axis' added at the indices, in index
** order (one that repeats adds twice); indices already checked and kept. */
static ag_tensor *index_add_raw(ag_tape *t, ag_tensor *base, int axis, const int64_t *idx,
                                ag_tensor *src);

/* index_select with indices already checked and kept on the tape. */
static ag_tensor *index_select_raw(ag_tape *t, ag_tensor *x, int axis, int64_t n,
                                   const int64_t *idx);

/* Each op here is linear in its inputs (indices are constants), so its JVP
** is the op applied to the tangents; for the two-input adds, a tangent
** missing from src means the base's tangent alone. */

/* index_select: out[.., i, ..] = x[.., idx[i], ..]; the gradient adds g's
** slices back at the indices (index_add into zeros) */
static void vjp_index_select(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0];
    ag_tensor *zeros = ag_zeros(t, (ag_dtype)g->dtype, x->rank, x->shape);
    gin[0] = index_add_raw(t, zeros, out->attr.index.axis, out->attr.index.idx, g);
}

/* The raw path, for an embedding's backward: when x has no gradient yet in
** this pass, g's slices are added straight into a zeroed buffer of x's own,
** the bits of the index_add into zeros above without the zeros tensor and
** the copy of it. Otherwise it declines: the vjp's sum is then added to x's
** gradient as one term, which adding slice by slice would round apart. */
static int raw_index_select(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    ag_tensor *x = out->in[0];
    if (x->gacc)
        return 0;
    bool fresh;
    void *dst = agi_grad_slot(t, x, &fresh);
    if (!dst)
        return 1;   /* out of memory, recorded */
    if (x->numel)
        memset(dst, 0, (size_t)x->numel * ag_dtype_size((ag_dtype)x->dtype));
    add_slices(g, out->attr.index.axis, out->attr.index.idx, x->shape[out->attr.index.axis], dst);
    return 1;
}
static ag_tensor *jvp_index_select(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    int ax = out->attr.index.axis;
    return index_select_raw(t, tan[0], ax, out->shape[ax], out->attr.index.idx);
}
static const ag_op op_index_select = {.name = "index_select", .vjp = vjp_index_select,
                                      .raw_vjp = raw_index_select, .jvp = jvp_index_select};

static ag_tensor *index_select_raw(ag_tape *t, ag_tensor *x, int axis, int64_t n,
                                   const int64_t *idx)
{
    if (!agi_check_inputs(t, "index_select", 1, &x, false))
        return agi_nil(t);
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x->shape, (size_t)x->rank * sizeof *shape);
    shape[axis] = n;
    ag_tensor *out = agi_new(t, &op_index_select, 1, &x, (ag_dtype)x->dtype, x->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.axis = axis;
    out->attr.index.idx = idx;
    /* Whole blocks of 'inner' elements move: an embedding's rows at a time. */
    int64_t outer = span(x->shape, 0, axis), inner = span(x->shape, axis + 1, x->rank);
    int64_t dim = x->shape[axis];
    size_t es = ag_dtype_size((ag_dtype)x->dtype), block = (size_t)inner * es;
    char *dst = out->value;
    const char *src = x->value;
    for (int64_t o = 0; o < outer && block; o++)
        for (int64_t i = 0; i < n; i++, dst += block)
            memcpy(dst, src + (size_t)((o * dim + idx[i]) * inner) * es, block);
    return out;
}

ag_tensor *ag_index_select(ag_tape *t, ag_tensor *x, int axis, int64_t n, const int64_t *idx)
{
    if (!agi_check_inputs(t, "ag_index_select", 1, &x, false))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_index_select: axis %d is out of range for %s", axis,
                         agi_shp(x, 0));
    if (n < 0)
        return agi_error(t, AG_EINVAL, "ag_index_select: %lld indices", (long long)n);
    const int64_t *copy = copy_indices(t, "ag_index_select", n, idx, ax, x->shape[ax]);
    return copy ? index_select_raw(t, x, ax, n, copy) : agi_nil(t);
}

/* index_add: base gets g, src gets g's slices at the indices */
static void vjp_index_add(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int ax = out->attr.index.axis;
    if (agi_needs_grad(out, 0))
        gin[0] = g;
    if (agi_needs_grad(out, 1))
        gin[1] = index_select_raw(t, g, ax, out->in[1]->shape[ax], out->attr.index.idx);
}
static ag_tensor *jvp_index_add(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    if (!tan[1])
        return tan[0];
    const ag_tensor *base = out->in[0];
    ag_tensor *dbase = tan[0] ? tan[0]
                              : ag_zeros(t, (ag_dtype)base->dtype, base->rank, base->shape);
    return index_add_raw(t, dbase, out->attr.index.axis, out->attr.index.idx, tan[1]);
}
static const ag_op op_index_add = {.name = "index_add", .vjp = vjp_index_add, .jvp = jvp_index_add};

static ag_tensor *index_add_raw(ag_tape *t, ag_tensor *base, int axis, const int64_t *idx,
                                ag_tensor *src)
{
    ag_tensor *in[2] = {base, src};
    if (!agi_check_inputs(t, "index_add", 2, in, true))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_index_add, 2, in, (ag_dtype)base->dtype, base->rank,
                             base->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.axis = axis;
    out->attr.index.idx = idx;
    size_t es = ag_dtype_size((ag_dtype)base->dtype);
    if (base->numel)
        memcpy(out->value, base->value, (size_t)base->numel * es);
    add_slices(src, axis, idx, base->shape[axis], out->value);
    return out;
}

ag_tensor *ag_index_add(ag_tape *t, ag_tensor *base, int axis, int64_t n, const int64_t *idx,
                        ag_tensor *src)
{
    ag_tensor *in[2] = {base, src};
    if (!agi_check_inputs(t, "ag_index_add", 2, in, true))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, base->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_index_add: axis %d is out of range for base %s", axis,
                         agi_shp(base, 0));
    if (n < 0)
        return agi_error(t, AG_EINVAL, "ag_index_add: %lld indices", (long long)n);
    bool fits = src->rank == base->rank;
    for (int d = 0; fits && d < base->rank; d++)
        fits = src->shape[d] == (d == ax ? n : base->shape[d]);
    if (!fits)
        return agi_error(t, AG_ESHAPE, "ag_index_add: src %s is not base %s with axis %d of "
                         "size %lld (the number of indices)", agi_shp(src, 0), agi_shp(base, 1),
                         ax, (long long)n);
    const int64_t *copy = copy_indices(t, "ag_index_add", n, idx, ax, base->shape[ax]);
    return copy ? index_add_raw(t, base, ax, copy, src) : agi_nil(t);
}

/* --------------------------------------------------------- gather, scatter_add */

/* The walk of an index array of 'shape' over a tensor 'x' of the same rank:
** offsets in x of every element but for the 'axis' coordinate, which the
** index supplies (times x's stride along it, returned). */
static int64_t walk_indexed(walk *w, const ag_tensor *x, int axis, const int64_t *shape)
{
    int64_t xs[AG_MAX_DIMS] = {0};
    strides_of(x->rank, x->shape, xs);
    int64_t along = xs[axis];
    xs[axis] = 0;
    walk_start(w, x->rank, shape, xs);
    return along;
}

/* scatter_add with indices already checked and kept on the tape. */
static ag_tensor *scatter_add_raw(ag_tape *t, ag_tensor *base, int axis, const int64_t *idx,
                                  ag_tensor *src);

/* gather: out[i][j] = x[idx[i][j]][j] (axis 0); the gradient scatters g back */
static void vjp_gather(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0];
    ag_tensor *zeros = ag_zeros(t, (ag_dtype)g->dtype, x->rank, x->shape);
    gin[0] = scatter_add_raw(t, zeros, out->attr.index.axis, out->attr.index.idx, g);
}
static ag_tensor *gather_raw(ag_tape *t, ag_tensor *x, int axis, const int64_t *shape,
                             const int64_t *idx);
static ag_tensor *jvp_gather(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return gather_raw(t, tan[0], out->attr.index.axis, out->shape, out->attr.index.idx);
}
static const ag_op op_gather = {.name = "gather", .vjp = vjp_gather, .jvp = jvp_gather};

static ag_tensor *gather_raw(ag_tape *t, ag_tensor *x, int axis, const int64_t *shape,
                             const int64_t *idx)
{
    if (!agi_check_inputs(t, "gather", 1, &x, false))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_gather, 1, &x, (ag_dtype)x->dtype, x->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.axis = axis;
    out->attr.index.idx = idx;
    walk w;
    int64_t along = walk_indexed(&w, x, axis, out->shape);
    for (int64_t i = 0; i < out->numel; i++, walk_next(&w))
        agi_set(out, i, agi_get(x, w.off + idx[i] * along));
    return out;
}

/* Checks an index array of 'rank' dims 'shape' for 'who': x's rank, no dim
** above x's except along 'axis', every index inside the axis. Returns the
** arena copy, or NULL after recording the error. */
static const int64_t *check_index_array(ag_tape *t, const char *who, const ag_tensor *x,
                                        const char *xname, int axis, int rank,
                                        const int64_t *shape, const int64_t *idx)
{
    char s[96];
    if (rank > 0 && !shape) {
        agi_error(t, AG_EINVAL, "%s: the index array's shape is NULL for rank %d", who, rank);
        return NULL;
    }
    agi_shape_str(s, sizeof s, rank, shape);
    if (rank != x->rank) {
        agi_error(t, AG_ESHAPE, "%s: the index array %s has rank %d, %s %s has rank %d", who, s,
                  rank, xname, agi_shp(x, 0), x->rank);
        return NULL;
    }
    int64_t n = 1;
    for (int d = 0; d < rank; d++) {
        if (shape[d] < 0 || (d != axis && shape[d] > x->shape[d]) ||
            (shape[d] > 0 && n > INT64_MAX / 8 / shape[d])) {
            agi_error(t, AG_ESHAPE, "%s: the index array %s does not fit in %s %s outside axis %d",
                      who, s, xname, agi_shp(x, 0), axis);
            return NULL;
        }
        n *= shape[d];
    }
    return copy_indices(t, who, n, idx, axis, x->shape[axis]);
}

ag_tensor *ag_gather(ag_tape *t, ag_tensor *x, int axis, int rank, const int64_t *shape,
                     const int64_t *idx)
{
    if (!agi_check_inputs(t, "ag_gather", 1, &x, false))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_gather: axis %d is out of range for %s", axis,
                         agi_shp(x, 0));
    const int64_t *copy = check_index_array(t, "ag_gather", x, "x", ax, rank, shape, idx);
    return copy ? gather_raw(t, x, ax, shape, copy) : agi_nil(t);
}

/* scatter_add: base gets g, src gets g gathered at the indices */
static void vjp_scatter_add(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    if (agi_needs_grad(out, 0))
        gin[0] = g;
    if (agi_needs_grad(out, 1))
        gin[1] = gather_raw(t, g, out->attr.index.axis, out->in[1]->shape, out->attr.index.idx);
}
static ag_tensor *jvp_scatter_add(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    if (!tan[1])
        return tan[0];
    const ag_tensor *base = out->in[0];
    ag_tensor *dbase = tan[0] ? tan[0]
                              : ag_zeros(t, (ag_dtype)base->dtype, base->rank, base->shape);
    return scatter_add_raw(t, dbase, out->attr.index.axis, out->attr.index.idx, tan[1]);
}
static const ag_op op_scatter_add = {
    .name = "scatter_add", .vjp = vjp_scatter_add, .jvp = jvp_scatter_add};

static ag_tensor *scatter_add_raw(ag_tape *t, ag_tensor *base, int axis, const int64_t *idx,
                                  ag_tensor *src)
{
    ag_tensor *in[2] = {base, src};
    if (!agi_check_inputs(t, "scatter_add", 2, in, true))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_scatter_add, 2, in, (ag_dtype)base->dtype, base->rank,
                             base->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.axis = axis;
    out->attr.index.idx = idx;
    if (base->numel)
        memcpy(out->value, base->value, (size_t)base->numel * ag_dtype_size((ag_dtype)base->dtype));
    walk w;
    int64_t along = walk_indexed(&w, base, axis, src->shape);
    /* In src's order, so that repeated targets add in a fixed order. */
    for (int64_t i = 0; i < src->numel; i++, walk_next(&w)) {
        int64_t at = w.off + idx[i] * along;
        if (base->dtype == AG_F32)
            ((float *)out->value)[at] += ((const float *)src->value)[i];
        else
            ((double *)out->value)[at] += ((const double *)src->value)[i];
    }
    return out;
}

ag_tensor *ag_scatter_add(ag_tape *t, ag_tensor *base, int axis, const int64_t *idx,
                          ag_tensor *src)
{
    ag_tensor *in[2] = {base, src};
    if (!agi_check_inputs(t, "ag_scatter_add", 2, in, true))
        return agi_nil(t);
    int ax = agi_norm_axis(axis, base->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_scatter_add: axis %d is out of range for base %s",
                         axis, agi_shp(base, 0));
    const int64_t *copy = check_index_array(t, "ag_scatter_add", base, "base", ax, src->rank,
                                            src->shape, idx);
    return copy ? scatter_add_raw(t, base, ax, copy, src) : agi_nil(t);
}

/* ------------------------------------------------------------------ index */

/* Leading coordinates fix a contiguous block of x: 'index' reads it, and
** its adjoint 'index_grad' writes g there in zeros of x's shape. Both keep
** the block's first element in attr.index.k. */
static ag_tensor *index_grad(ag_tape *t, ag_tensor *g, const ag_tensor *like, int64_t offset);

/* index: out = the block of x at 'offset'; the gradient puts g back there */
static void vjp_index(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = index_grad(t, g, out->in[0], out->attr.index.k);
}
static ag_tensor *index_block(ag_tape *t, ag_tensor *x, int64_t offset, int rank,
                              const int64_t *shape);
static ag_tensor *jvp_index(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return index_block(t, tan[0], out->attr.index.k, out->rank, out->shape);
}
static const ag_op op_index = {.name = "index", .vjp = vjp_index, .jvp = jvp_index};

static ag_tensor *index_block(ag_tape *t, ag_tensor *x, int64_t offset, int rank,
                              const int64_t *shape)
{
    if (!agi_check_inputs(t, "index", 1, &x, false))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_index, 1, &x, (ag_dtype)x->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.k = offset;
    size_t es = ag_dtype_size((ag_dtype)x->dtype);
    if (out->numel)
        memcpy(out->value, (const char *)x->value + (size_t)offset * es, (size_t)out->numel * es);
    return out;
}

/* index_grad: the gradient of the block is g's block */
static void vjp_index_grad(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const ag_tensor *block = out->in[0];
    gin[0] = index_block(t, g, out->attr.index.k, block->rank, block->shape);
}
static ag_tensor *jvp_index_grad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return index_grad(t, tan[0], out, out->attr.index.k);
}
static const ag_op op_index_grad = {
    .name = "index_grad", .vjp = vjp_index_grad, .jvp = jvp_index_grad};

static ag_tensor *index_grad(ag_tape *t, ag_tensor *g, const ag_tensor *like, int64_t offset)
{
    if (!agi_check_inputs(t, "index_grad", 1, &g, false))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_index_grad, 1, &g, (ag_dtype)g->dtype, like->rank,
                             like->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.k = offset;
    ag_fill(out, 0.0);
    size_t es = ag_dtype_size((ag_dtype)g->dtype);
    if (g->numel)
        memcpy((char *)out->value + (size_t)offset * es, g->value, (size_t)g->numel * es);
    return out;
}

ag_tensor *ag_index(ag_tape *t, ag_tensor *x, int n, const int64_t *idx)
{
    if (!agi_check_inputs(t, "ag_index", 1, &x, false))
        return agi_nil(t);
    if (n < 0 || n > x->rank || (n > 0 && !idx))
        return agi_error(t, AG_EINVAL, "ag_index: %d indices%s for %s (rank %d)", n,
                         n > 0 && !idx ? " at NULL" : "", agi_shp(x, 0), x->rank);
    int64_t strides[AG_MAX_DIMS], offset = 0;
    strides_of(x->rank, x->shape, strides);
    for (int d = 0; d < n; d++) {
        int64_t i = idx[d] < 0 ? idx[d] + x->shape[d] : idx[d];
        if (i < 0 || i >= x->shape[d])
            return agi_error(t, AG_EINVAL, "ag_index: index %lld is outside axis %d of %s (size "
                             "%lld)", (long long)idx[d], d, agi_shp(x, 0), (long long)x->shape[d]);
        offset += i * strides[d];
    }
    return index_block(t, x, offset, x->rank - n, x->shape + n);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_index[] = {
    &op_index_select, &op_index_add, &op_gather, &op_scatter_add, &op_index, &op_index_grad, NULL
};
