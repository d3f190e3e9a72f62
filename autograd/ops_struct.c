/*
** ops_struct.c: ops that build a tensor's structure around its values:
** stack (a new axis), pad (a constant border), tril/triu (a triangle of
** matrices), diag (a vector on a matrix's diagonal, or a matrix's diagonal
** as a vector) and trace.
*/
#include "internal.h"

#include <string.h>

/* Product of shape[from, to). */
static int64_t span(const int64_t *shape, int from, int to)
{
    int64_t n = 1;
    for (int d = from; d < to; d++)
        n *= shape[d];
    return n;
}

/* Every op here only places x's values, so each is linear: its JVP is the
** op applied to the tangent (pad's border, a constant, has none). */

/* ------------------------------------------------------------------ stack */

/* stack: input i is out's slice i along the new axis; it gets that slice of
** g, without the axis */
static void vjp_stack(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    int ax = out->attr.index.axis;
    for (int i = 0; i < out->nin; i++)
        if (agi_needs_grad(out, i)) {
            const ag_tensor *x = out->in[i];
            gin[i] = ag_reshape(t, ag_slice(t, g, ax, i, i + 1, 1), x->rank, x->shape);
        }
}
/* The inputs' tangents stacked, zeros standing in for those without. */
static ag_tensor *jvp_stack(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor **parts = agi_arena_alloc(t, (size_t)out->nin * sizeof *parts, 16);
    if (!parts)
        return NULL;
    for (int i = 0; i < out->nin; i++) {
        const ag_tensor *x = out->in[i];
        parts[i] = tan[i] ? tan[i] : ag_zeros(t, (ag_dtype)x->dtype, x->rank, x->shape);
    }
    return ag_stack(t, out->nin, parts, out->attr.index.axis);
}
static const ag_op op_stack = {.name = "stack", .vjp = vjp_stack, .jvp = jvp_stack};

ag_tensor *ag_stack(ag_tape *t, int n, ag_tensor *const *xs, int axis)
{
    if (!t || t->status != AG_OK)
        return agi_nil(t);
    if (n < 1 || n > 255 || !xs)
        return agi_error(t, AG_EINVAL, "ag_stack: %d inputs (xs %p); 1 to 255 are allowed", n,
                         (const void *)xs);
    if (!agi_check_inputs(t, "ag_stack", n, xs, true))
        return agi_nil(t);
    const ag_tensor *x0 = xs[0];
    /* The new axis may go anywhere from before the first to after the last. */
    int ax = agi_norm_axis(axis, x0->rank + 1);
    if (ax < 0 || x0->rank == AG_MAX_DIMS)
        return agi_error(t, AG_EINVAL, "ag_stack: axis %d is out of range for a new axis of %s",
                         axis, agi_shp(x0, 0));
    for (int i = 1; i < n; i++)
        if (!agi_same_shape(xs[i], x0))
            return agi_error(t, AG_ESHAPE, "ag_stack: input %d %s differs from input 0 %s", i,
                             agi_shp(xs[i], 0), agi_shp(x0, 1));
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, x0->shape, (size_t)ax * sizeof *shape);
    shape[ax] = n;
    memcpy(shape + ax + 1, x0->shape + ax, (size_t)(x0->rank - ax) * sizeof *shape);
    ag_tensor *out = agi_new(t, &op_stack, n, xs, (ag_dtype)x0->dtype, x0->rank + 1, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.axis = ax;
    /* Each input's block of 'inner' elements, in turn, 'outer' times. */
    int64_t outer = span(x0->shape, 0, ax), inner = span(x0->shape, ax, x0->rank);
    size_t block = (size_t)inner * ag_dtype_size((ag_dtype)x0->dtype);
    char *dst = out->value;
    for (int64_t o = 0; o < outer && block; o++)
        for (int i = 0; i < n; i++, dst += block)
            memcpy(dst, (const char *)xs[i]->value + (size_t)o * block, block);
    return out;
}

/* -------------------------------------------------------------------- pad */

/* pad: x in the middle of a border of 'value'; x gets the middle of g (one
** slice per padded axis), the value is a number and gets nothing */
static void vjp_pad(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const ag_tensor *x = out->in[0];
    const int64_t *w = out->attr.index.idx;
    for (int d = 0; d < x->rank; d++)
        if (w[2 * d] || w[2 * d + 1])
            g = ag_slice(t, g, d, w[2 * d], w[2 * d] + x->shape[d], 1);
    gin[0] = g;
}
static ag_tensor *jvp_pad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_pad(t, tan[0], out->attr.index.idx, 0.0);
}
static const ag_op op_pad = {.name = "pad", .vjp = vjp_pad, .jvp = jvp_pad};

ag_tensor *ag_pad(ag_tape *t, ag_tensor *x, const int64_t *widths, double value)
{
    if (!agi_check_inputs(t, "ag_pad", 1, &x, false))
        return agi_nil(t);
    if (x->rank > 0 && !widths)
        return agi_error(t, AG_EINVAL, "ag_pad: widths is NULL for %s", agi_shp(x, 0));
    int64_t shape[AG_MAX_DIMS];
    for (int d = 0; d < x->rank; d++) {
        int64_t before = widths[2 * d], after = widths[2 * d + 1];
        if (before < 0 || after < 0)
            return agi_error(t, AG_EINVAL, "ag_pad: widths (%lld, %lld) of axis %d of %s are not "
                             "both >= 0", (long long)before, (long long)after, d, agi_shp(x, 0));
        /* Bounded here so that the sum cannot overflow; agi_check_make
        ** then bounds the product. */
        if (before > INT64_MAX / 4 || after > INT64_MAX / 4 || x->shape[d] > INT64_MAX / 4)
            return agi_error(t, AG_ESHAPE, "ag_pad: widths (%lld, %lld) of axis %d of %s are too "
                             "large", (long long)before, (long long)after, d, agi_shp(x, 0));
        shape[d] = before + x->shape[d] + after;
    }
    if (!agi_check_make(t, "ag_pad", (ag_dtype)x->dtype, x->rank, shape))
        return agi_nil(t);
    int64_t *copy = agi_arena_alloc(t, (size_t)(x->rank > 0 ? 2 * x->rank : 1) * sizeof *copy, 16);
    if (!copy)
        return agi_nil(t);
    if (x->rank > 0)
        memcpy(copy, widths, (size_t)(2 * x->rank) * sizeof *copy);
    ag_tensor *out = agi_new(t, &op_pad, 1, &x, (ag_dtype)x->dtype, x->rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.idx = copy;
    ag_fill(out, value);
    if (x->numel == 0)
        return out;
    /* x's rows (its last axis, or its one element) go to their place in out,
    ** walked with an odometer over x's other axes. */
    int r = x->rank;
    int64_t os[AG_MAX_DIMS], at[AG_MAX_DIMS] = {0}, dst = 0;
    int64_t acc = 1;
    for (int d = r - 1; d >= 0; d--) {
        os[d] = acc;
        acc *= shape[d];
    }
    for (int d = 0; d < r; d++)
        dst += copy[2 * d] * os[d];
    size_t es = ag_dtype_size((ag_dtype)x->dtype);
    int64_t row = r > 0 ? x->shape[r - 1] : 1, rows = x->numel / row;
    const char *src = x->value;
    for (int64_t i = 0; i < rows; i++, src += (size_t)row * es) {
        memcpy((char *)out->value + (size_t)dst * es, src, (size_t)row * es);
        for (int d = r - 2; d >= 0; d--) {
            dst += os[d];
            if (++at[d] < x->shape[d])
                break;
            dst -= os[d] * x->shape[d];
            at[d] = 0;
        }
    }
    return out;
}

/* ------------------------------------------------------------- tril, triu */

/* Zeroes the elements of x's matrices (its last two axes) outside the
** triangle: kept where j - i <= k (lower) or j - i >= k (upper). The zeros
** are stored, never multiplied in, so a NaN outside does not leak in. */
static ag_tensor *triangle(ag_tape *t, const ag_op *op, const char *who, ag_tensor *x, int64_t k,
                           bool upper)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    if (x->rank < 2)
        return agi_error(t, AG_ESHAPE, "%s: x %s has rank %d; matrices need 2 or more", who,
                         agi_shp(x, 0), x->rank);
    ag_tensor *out = agi_new(t, op, 1, &x, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.k = k;
    int64_t rows = x->shape[x->rank - 2], cols = x->shape[x->rank - 1];
    int64_t mats = rows > 0 && cols > 0 ? x->numel / (rows * cols) : 0;
    for (int64_t m = 0, e = 0; m < mats; m++)
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++, e++) {
                /* j - i cannot overflow; k is compared, never added. */
                bool keep = upper ? j - i >= k : j - i <= k;
                agi_set(out, e, keep ? agi_get(x, e) : 0.0);
            }
    return out;
}

/* tril: the gradient keeps the same triangle of g */
static void vjp_tril(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_tril(t, g, out->attr.index.k);
}
static ag_tensor *jvp_tril(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_tril(t, tan[0], out->attr.index.k);
}
static const ag_op op_tril = {.name = "tril", .vjp = vjp_tril, .jvp = jvp_tril};

ag_tensor *ag_tril(ag_tape *t, ag_tensor *x, int64_t k)
{
    return triangle(t, &op_tril, "ag_tril", x, k, false);
}

static void vjp_triu(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_triu(t, g, out->attr.index.k);
}
static ag_tensor *jvp_triu(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_triu(t, tan[0], out->attr.index.k);
}
static const ag_op op_triu = {.name = "triu", .vjp = vjp_triu, .jvp = jvp_triu};

ag_tensor *ag_triu(ag_tape *t, ag_tensor *x, int64_t k)
{
    return triangle(t, &op_triu, "ag_triu", x, k, true);
}

/* ------------------------------------------------------------ diag, trace */

/* Diagonal k of a [rows, cols] matrix starts at (row0, col0) and has 'len'
** elements; 0 when it lies outside. |k| is bounded by the callers. */
typedef struct diag_span {
    int64_t row0, col0, len;
} diag_span;

static diag_span diag_of(int64_t rows, int64_t cols, int64_t k)
{
    diag_span s = {k < 0 ? -k : 0, k > 0 ? k : 0, 0};
    int64_t r = rows - s.row0, c = cols - s.col0;
    s.len = r < c ? r : c;
    if (s.len < 0)
        s.len = 0;
    return s;
}

/* Both check their input although ag_diag did: called from a vjp, it may be
** the result of the op just before, whose tangent (forward mode) is
** computed only when the next op checks its inputs. */
static ag_tensor *diag_embed(ag_tape *t, ag_tensor *v, int64_t k, int64_t rows, int64_t cols);
static ag_tensor *diagonal(ag_tape *t, ag_tensor *x, int64_t k);

/* diag_embed: v on diagonal k of a zero matrix; the gradient is g's diagonal */
static void vjp_diag_embed(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = diagonal(t, g, out->attr.index.k);
}
static ag_tensor *jvp_diag_embed(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return diag_embed(t, tan[0], out->attr.index.k, out->shape[0], out->shape[1]);
}
static const ag_op op_diag_embed = {
    .name = "diag_embed", .vjp = vjp_diag_embed, .jvp = jvp_diag_embed};

static ag_tensor *diag_embed(ag_tape *t, ag_tensor *v, int64_t k, int64_t rows, int64_t cols)
{
    if (!agi_check_inputs(t, "diag_embed", 1, &v, false))
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_diag_embed, 1, &v, (ag_dtype)v->dtype, 2,
                             (int64_t[]){rows, cols});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.k = k;
    ag_fill(out, 0.0);
    diag_span s = diag_of(rows, cols, k);
    for (int64_t i = 0; i < s.len; i++)
        agi_set(out, (s.row0 + i) * cols + s.col0 + i, agi_get(v, i));
    return out;
}

/* diagonal: x's diagonal k; the gradient puts g on that diagonal of zeros */
static void vjp_diagonal(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const ag_tensor *x = out->in[0];
    gin[0] = diag_embed(t, g, out->attr.index.k, x->shape[0], x->shape[1]);
}
static ag_tensor *jvp_diagonal(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return diagonal(t, tan[0], out->attr.index.k);
}
static const ag_op op_diagonal = {.name = "diagonal", .vjp = vjp_diagonal, .jvp = jvp_diagonal};

static ag_tensor *diagonal(ag_tape *t, ag_tensor *x, int64_t k)
{
    if (!agi_check_inputs(t, "diagonal", 1, &x, false))
        return agi_nil(t);
    int64_t cols = x->shape[1];
    diag_span s = diag_of(x->shape[0], cols, k);
    ag_tensor *out = agi_new(t, &op_diagonal, 1, &x, (ag_dtype)x->dtype, 1, &s.len);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.index.k = k;
    for (int64_t i = 0; i < s.len; i++)
        agi_set(out, i, agi_get(x, (s.row0 + i) * cols + s.col0 + i));
    return out;
}

ag_tensor *ag_diag(ag_tape *t, ag_tensor *x, int64_t k)
{
    if (!agi_check_inputs(t, "ag_diag", 1, &x, false))
        return agi_nil(t);
    /* Far enough from INT64_MIN that -k and n + |k| are safe to form. */
    if (k < -(INT64_MAX / 4) || k > INT64_MAX / 4)
        return agi_error(t, AG_EINVAL, "ag_diag: diagonal %lld is out of range", (long long)k);
    if (x->rank == 2)
        return diagonal(t, x, k);
    if (x->rank != 1)
        return agi_error(t, AG_ESHAPE, "ag_diag: x %s has rank %d, not 1 (vector to matrix) or 2 "
                         "(matrix to vector)", agi_shp(x, 0), x->rank);
    int64_t n = x->shape[0] + (k < 0 ? -k : k);
    if (!agi_check_make(t, "ag_diag", (ag_dtype)x->dtype, 2, (int64_t[]){n, n}))
        return agi_nil(t);
    return diag_embed(t, x, k, n, n);
}

ag_tensor *ag_trace(ag_tape *t, ag_tensor *x)
{
    if (!agi_check_inputs(t, "ag_trace", 1, &x, false))
        return agi_nil(t);
    if (x->rank != 2)
        return agi_error(t, AG_ESHAPE, "ag_trace: x %s has rank %d, not 2", agi_shp(x, 0),
                         x->rank);
    /* The sum of the diagonal: its gradient, g on the diagonal of zeros,
    ** is g * eye. */
    return ag_sum(t, diagonal(t, x, 0));
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_struct[] = {
    &op_stack, &op_pad, &op_tril, &op_triu, &op_diag_embed, &op_diagonal, NULL
};
