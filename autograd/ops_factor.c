/*
** ops_factor.c: dense linear algebra on square matrices and batches of them:
** Cholesky, triangular and general solves, the inverse and log|det|. Each
** forward factors one matrix at a time in double (for both dtypes, rounded
** once into the result) with plain loops: the sizes these ops meet are
** small. Every vjp is written with library ops, these ones among them, so
** that create-graph mode differentiates it again.
*/
#include "internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static int64_t batch_count(const ag_tensor *a)
{
    int64_t count = 1;
    for (int d = 0; d < a->rank - 2; d++)
        count *= a->shape[d];
    return count;
}

/* Is a a matrix or a batch of them, [..., n, n]? Records AG_ESHAPE naming
** 'who' when not. */
static bool check_square(ag_tape *t, const char *who, const ag_tensor *a)
{
    if (a->rank >= 2 && a->shape[a->rank - 1] == a->shape[a->rank - 2])
        return true;
    agi_error(t, AG_ESHAPE, "%s: A %s is not a square matrix or a batch of them ([..., n, n])",
              who, agi_shp(a, 0));
    return false;
}

/* Where a failure happened, for messages: nothing for a single matrix, the
** flat batch index otherwise (PyTorch's "batch element"). */
static const char *batch_note(char *buf, size_t size, const ag_tensor *a, int64_t b)
{
    if (a->rank <= 2)
        return "";
    snprintf(buf, size, ", batch element %lld", (long long)b);
    return buf;
}

/* 'count' values of x from element 'off', as doubles. */
static void load(const ag_tensor *x, int64_t off, int64_t count, double *dst)
{
    if (x->dtype == AG_F32) {
        const float *v = (const float *)x->value + off;
        for (int64_t i = 0; i < count; i++)
            dst[i] = v[i];
    } else if (count > 0) {
        memcpy(dst, (const double *)x->value + off, (size_t)count * sizeof *dst);
    }
}

/* 'count' doubles into x from element 'off', rounded once to x's dtype. */
static void store(ag_tensor *x, int64_t off, int64_t count, const double *src)
{
    if (x->dtype == AG_F32) {
        float *v = (float *)x->value + off;
        for (int64_t i = 0; i < count; i++)
            v[i] = (float)src[i];
    } else if (count > 0) {
        memcpy((double *)x->value + off, src, (size_t)count * sizeof *src);
    }
}

static void fill(ag_tensor *x, int64_t off, int64_t count, double v)
{
    for (int64_t i = 0; i < count; i++)
        agi_set(x, off + i, v);
}

static bool has_nan(const double *a, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        if (isnan(a[i]))
            return true;
    return false;
}

/* Does the lower (or upper) triangle of the n x n row-major a, diagonal
** included, hold a NaN? The ops that read one triangle ask this of it. */
static bool triangle_has_nan(const double *a, int64_t n, bool upper)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = upper ? i : 0; j < (upper ? n : i + 1); j++)
            if (isnan(a[i * n + j]))
                return true;
    return false;
}

/* 'count' doubles of scratch from the arena (kept until the reset, and
** reused by the next pass that asks the same); NULL after recording ENOMEM. */
static double *scratch(ag_tape *t, int64_t count)
{
    return agi_arena_alloc(t, (size_t)(count > 0 ? count : 1) * sizeof(double), 64);
}

/* The batch dims of two operands broadcast together, walked in row-major
** order with each operand's offset in whole matrices (0 strides where an
** operand is broadcast), as matmul walks them. */
typedef struct batch_walk {
    int rank;
    int64_t shape[AG_MAX_DIMS], sa[AG_MAX_DIMS], sb[AG_MAX_DIMS], idx[AG_MAX_DIMS];
    int64_t count, oa, ob;
} batch_walk;

static bool batch_walk_init(batch_walk *w, const ag_tensor *a, const ag_tensor *b)
{
    memset(w, 0, sizeof *w);
    if (!agi_broadcast_shape(a->rank - 2, a->shape, b->rank - 2, b->shape, &w->rank, w->shape))
        return false;
    ag_tensor av = {.rank = (uint8_t)(a->rank - 2)}, bv = {.rank = (uint8_t)(b->rank - 2)};
    memcpy(av.shape, a->shape, (size_t)av.rank * sizeof *av.shape);
    memcpy(bv.shape, b->shape, (size_t)bv.rank * sizeof *bv.shape);
    agi_broadcast_strides(&av, w->rank, w->shape, w->sa);
    agi_broadcast_strides(&bv, w->rank, w->shape, w->sb);
    w->count = 1;
    for (int d = 0; d < w->rank; d++)
        w->count *= w->shape[d];
    return true;
}

static void batch_walk_next(batch_walk *w)
{
    for (int d = w->rank - 1; d >= 0; d--) {
        w->oa += w->sa[d], w->ob += w->sb[d];
        if (++w->idx[d] < w->shape[d])
            return;
        w->oa -= w->sa[d] * w->shape[d], w->ob -= w->sb[d] * w->shape[d];
        w->idx[d] = 0;
    }
}

/* A constant [n, n] of x's dtype holding 'below' under the diagonal, 'diag'
** on it and 'above' over it: a triangle as a mask to multiply by, which
** keeps vjps in library ops. */
static ag_tensor *triangle_mask(ag_tape *t, const ag_tensor *x, int64_t n, double below,
                                double diag, double above)
{
    ag_tensor *m = ag_empty(t, (ag_dtype)x->dtype, 2, (int64_t[]){n, n});
    for (int64_t i = 0; i < n && !(m->flags & AGI_NIL); i++)
        for (int64_t j = 0; j < n; j++)
            agi_set(m, i * n + j, i > j ? below : i == j ? diag : above);
    return m;
}

static ag_tensor *transpose(ag_tape *t, ag_tensor *x) { return ag_transpose(t, x, -1, -2); }

/* ---------------------------------------------------- raw factorizations */

/* The Cholesky factor L (A = L L^T) over the lower triangle of the n x n
** row-major a, reading only that triangle; the upper one is zeroed. Returns
** -1, or the first column whose pivot is not positive (stored in *pivot).
** A NaN pivot is not refused: it flows on into L. */
static int64_t cholesky_in_place(double *a, int64_t n, double *pivot)
{
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; k++)
            d -= a[j * n + k] * a[j * n + k];
        if (d <= 0) {
            *pivot = d;
            return j;
        }
        double ljj = sqrt(d);
        a[j * n + j] = ljj;
        for (int64_t i = j + 1; i < n; i++) {
            double s = a[i * n + j];
            for (int64_t k = 0; k < j; k++)
                s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / ljj;
        }
        for (int64_t i = 0; i < j; i++)
            a[i * n + j] = 0;
    }
    return -1;
}

/* P A = L U in place by Gaussian elimination with partial pivoting (the
** largest |value| left in each column becomes the pivot, so no multiplier
** exceeds 1): U on and above the diagonal, L's multipliers below it (its
** unit diagonal implied). perm[i] is the row of A now at row i, and *odd
** says whether the rows were exchanged an odd number of times. Returns -1,
** or the first column without a nonzero pivot: A is singular. The callers
** keep a NaN of A out, but infinities make NaN as they go (inf / inf, inf -
** inf): a NaN left in a column is taken as its pivot, so that it flows into
** U, since a comparison would never pick it, and a column holding NaN under
** a zero would be called singular. */
static int64_t lu_in_place(double *a, int64_t n, int64_t *perm, bool *odd)
{
    *odd = false;
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    for (int64_t k = 0; k < n; k++) {
        int64_t p = k;
        double best = fabs(a[k * n + k]);
        for (int64_t i = k + 1; i < n && !isnan(best); i++)
            if (fabs(a[i * n + k]) > best || isnan(a[i * n + k]))
                best = fabs(a[i * n + k]), p = i;
        if (best == 0)
            return k;
        if (p != k) {
            for (int64_t j = 0; j < n; j++) {
                double v = a[k * n + j];
                a[k * n + j] = a[p * n + j];
                a[p * n + j] = v;
            }
            int64_t r = perm[k];
            perm[k] = perm[p];
            perm[p] = r;
            *odd = !*odd;
        }
        for (int64_t i = k + 1; i < n; i++) {
            double m = a[i * n + k] /= a[k * n + k];
            for (int64_t j = k + 1; j < n; j++)
                a[i * n + j] -= m * a[k * n + j];
        }
    }
    return -1;
}

/* x = A^{-1} b for one column, from A's factors: x = U^{-1} L^{-1} P b.
** b and x are columns with strides bs and xs, and must not overlap. */
static void lu_solve_column(const double *lu, const int64_t *perm, int64_t n, const double *b,
                            int64_t bs, double *x, int64_t xs)
{
    for (int64_t i = 0; i < n; i++) {
        double s = b[perm[i] * bs];
        for (int64_t j = 0; j < i; j++)
            s -= lu[i * n + j] * x[j * xs];
        x[i * xs] = s;
    }
    for (int64_t i = n - 1; i >= 0; i--) {
        double s = x[i * xs];
        for (int64_t j = i + 1; j < n; j++)
            s -= lu[i * n + j] * x[j * xs];
        x[i * xs] = s / lu[i * n + i];
    }
}

/* Element (i, j) of T = A, or A^T when 'trans'. */
static inline double tri_at(const double *a, int64_t n, bool trans, int64_t i, int64_t j)
{
    return trans ? a[j * n + i] : a[i * n + j];
}

/* Solves T x = b in place (x holds b on entry, with stride xs) for T = A or
** A^T, where A is lower or upper triangular; reads only that triangle. */
static void tri_solve_in_place(const double *a, int64_t n, bool upper, bool trans, double *x,
                               int64_t xs)
{
    if (upper != trans) {   /* T is upper: back substitution */
        for (int64_t i = n - 1; i >= 0; i--) {
            double s = x[i * xs];
            for (int64_t j = i + 1; j < n; j++)
                s -= tri_at(a, n, trans, i, j) * x[j * xs];
            x[i * xs] = s / a[i * n + i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            double s = x[i * xs];
            for (int64_t j = 0; j < i; j++)
                s -= tri_at(a, n, trans, i, j) * x[j * xs];
            x[i * xs] = s / a[i * n + i];
        }
    }
}

/* ----------------------------------------------------------- cholesky */

/* A = L L^T, so L^{-1} dA L^{-T} = M + M^T with M = L^{-1} dL lower
** triangular: dL = L Phi(L^{-1} dA L^{-T}), Phi keeping the lower triangle
** and half the diagonal. Phi is its own adjoint, so for the gradient G of L,
** <G, dL> = <L^{-T} Phi(L^T G) L^{-1}, dA>. A is symmetric and only its
** lower triangle is read, so the gradient is reported symmetric (as
** PyTorch's): the symmetric part of that matrix, P. */
static void vjp_cholesky(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *l = out;
    int64_t n = l->shape[l->rank - 1];
    ag_tensor *phi = ag_mul(t, agi_matmul_t(t, l, g, 1, 0), triangle_mask(t, l, n, 1, 0.5, 0));
    ag_tensor *left = ag_solve_triangular(t, transpose(t, l), phi, 1, 1);   /* L^{-T} Phi */
    ag_tensor *p = ag_solve_triangular(t, l, left, 0, 0);                    /* ... L^{-1} */
    gin[0] = ag_mul_scalar(t, ag_add(t, p, transpose(t, p)), 0.5);
}
/* The forward rule above, applied to the symmetric part of dA: the
** derivative whose adjoint the vjp is (for a symmetric dA, the usual one). */
static ag_tensor *jvp_cholesky(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *l = out;
    int64_t n = l->shape[l->rank - 1];
    ag_tensor *s = ag_mul_scalar(t, ag_add(t, tan[0], transpose(t, tan[0])), 0.5);
    ag_tensor *left = ag_solve_triangular(t, l, s, 0, 1);              /* L^{-1} S */
    ag_tensor *m = ag_solve_triangular(t, transpose(t, l), left, 1, 0); /* ... L^{-T} */
    return agi_matmul_t(t, l, ag_mul(t, m, triangle_mask(t, l, n, 1, 0.5, 0)), 0, 0);
}
static const ag_op op_cholesky = {.name = "cholesky", .vjp = vjp_cholesky, .jvp = jvp_cholesky};

ag_tensor *ag_cholesky(ag_tape *t, ag_tensor *a)
{
    if (!agi_check_inputs(t, "ag_cholesky", 1, &a, false) || !check_square(t, "ag_cholesky", a))
        return agi_nil(t);
    ag_tensor *l = agi_new(t, &op_cholesky, 1, &a, (ag_dtype)a->dtype, a->rank, a->shape);
    int64_t n = a->shape[a->rank - 1], mat = n * n, batches = batch_count(a);
    double *w = scratch(t, mat);
    if ((l->flags & AGI_NIL) || !w)
        return agi_nil(t);
    for (int64_t b = 0; b < batches; b++) {
        load(a, b * mat, mat, w);
        double pivot;
        int64_t j = cholesky_in_place(w, n, &pivot);
        if (j >= 0) {
            /* A NaN in the triangle read gives NaN, never an error (the
            ** failed pivot may come before the NaN reaches it). */
            load(a, b * mat, mat, w);
            if (triangle_has_nan(w, n, false)) {
                fill(l, b * mat, mat, NAN);
                continue;
            }
            char note[48];
            return agi_error(t, AG_EINVAL,
                             "ag_cholesky: A %s%s is not positive definite (the leading minor of "
                             "order %lld is not: pivot %g)",
                             agi_shp(a, 0), batch_note(note, sizeof note, a, b),
                             (long long)(j + 1), pivot);
        }
        store(l, b * mat, mat, w);
    }
    return l;
}

/* --------------------------------------------------- triangular solve */

/* Left: X = A^{-1} B, so dX = -A^{-1} dA X + A^{-1} dB: the gradient of B
** is A^{-T} G, a triangular solve with A^T, and that of A is -(A^{-T} G)
** X^T. Right: X = B A^{-1}, dB's gradient G A^{-T}, A's -X^T (G A^{-T}).
** Only A's triangle is read, so A's gradient is masked to it. */
static void vjp_solve_triangular(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    int upper = out->attr.tri.upper, left = out->attr.tri.left;
    ag_tensor *gb = ag_solve_triangular(t, transpose(t, a), g, !upper, left);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, gb, b);
    if (agi_needs_grad(out, 0)) {
        int64_t n = a->shape[a->rank - 1];
        ag_tensor *ga = left ? agi_matmul_t(t, gb, out, 0, 1) : agi_matmul_t(t, out, gb, 1, 0);
        ag_tensor *mask = triangle_mask(t, a, n, upper ? 0 : -1, -1, upper ? -1 : 0);
        gin[0] = agi_unbroadcast(t, ag_mul(t, ga, mask), a);
    }
}
/* dX = A^{-1} (dB - dA X) on the left, (dB - X dA) A^{-1} on the right,
** with dA cut to the triangle that is read. dB keeps its own batch dims
** until the solve broadcasts it. */
static ag_tensor *jvp_solve_triangular(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    int upper = out->attr.tri.upper, left = out->attr.tri.left;
    ag_tensor *r = tan[1];
    if (tan[0]) {
        ag_tensor *da = upper ? ag_triu(t, tan[0], 0) : ag_tril(t, tan[0], 0);
        ag_tensor *dax = left ? agi_matmul_t(t, da, out, 0, 0) : agi_matmul_t(t, out, da, 0, 0);
        r = r ? ag_sub(t, r, dax) : ag_neg(t, dax);
    }
    return ag_solve_triangular(t, out->in[0], r, upper, left);
}
static const ag_op op_solve_triangular = {
    .name = "solve_triangular", .vjp = vjp_solve_triangular, .jvp = jvp_solve_triangular};

ag_tensor *ag_solve_triangular(ag_tape *t, ag_tensor *a, ag_tensor *b, int upper, int left)
{
    static const char who[] = "ag_solve_triangular";
    ag_tensor *in[2] = {a, b};
    if (!agi_check_inputs(t, who, 2, in, true) || !check_square(t, who, a))
        return agi_nil(t);
    int64_t n = a->shape[a->rank - 1];
    if (b->rank < 2)
        return agi_error(t, AG_ESHAPE, "%s: B %s needs rank 2 or more ([..., n, k] on the %s)",
                         who, agi_shp(b, 0), left ? "left" : "right");
    int64_t bn = b->shape[b->rank - (left ? 2 : 1)];
    if (bn != n)
        return agi_error(t, AG_ESHAPE, "%s: A %s and B %s: B's %s (%lld) differ from A's size %lld",
                         who, agi_shp(a, 0), agi_shp(b, 1), left ? "rows" : "columns",
                         (long long)bn, (long long)n);
    batch_walk w;
    if (!batch_walk_init(&w, a, b))
        return agi_error(t, AG_ESHAPE, "%s: A %s and B %s: batch dims do not broadcast", who,
                         agi_shp(a, 0), agi_shp(b, 1));
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, w.shape, (size_t)w.rank * sizeof *shape);
    int64_t rows = b->shape[b->rank - 2], cols = b->shape[b->rank - 1];
    shape[w.rank] = rows;
    shape[w.rank + 1] = cols;
    ag_tensor *x = agi_new(t, &op_solve_triangular, 2, in, (ag_dtype)a->dtype, w.rank + 2,
                           shape);
    int64_t mat = n * n, bmat = rows * cols;
    double *am = scratch(t, mat), *xm = scratch(t, bmat);
    if ((x->flags & AGI_NIL) || !am || !xm)
        return agi_nil(t);
    x->attr.tri.upper = upper != 0;
    x->attr.tri.left = left != 0;
    for (int64_t i = 0; i < w.count; i++, batch_walk_next(&w)) {
        load(a, w.oa * mat, mat, am);
        bool zero = false;
        for (int64_t d = 0; d < n; d++)
            zero |= am[d * n + d] == 0;
        if (zero && triangle_has_nan(am, n, upper)) {
            /* a NaN gives NaN, never an error */
            fill(x, i * bmat, bmat, NAN);
            continue;
        }
        for (int64_t d = 0; zero && d < n; d++)
            if (am[d * n + d] == 0) {
                char note[48];
                return agi_error(t, AG_EINVAL,
                                 "%s: A %s%s is singular: its diagonal holds 0 at %lld", who,
                                 agi_shp(a, 0), batch_note(note, sizeof note, a, w.oa),
                                 (long long)d);
            }
        load(b, w.ob * bmat, bmat, xm);
        if (left)   /* A X = B, column by column */
            for (int64_t c = 0; c < cols; c++)
                tri_solve_in_place(am, n, upper, false, xm + c, cols);
        else        /* X A = B: A^T x = b for each row */
            for (int64_t r = 0; r < rows; r++)
                tri_solve_in_place(am, n, upper, true, xm + r * cols, 1);
        store(x, i * bmat, bmat, xm);
    }
    return x;
}

/* -------------------------------------------------------------- solve */

static ag_tensor *solve_matrix(ag_tape *t, ag_tensor *a, ag_tensor *b);

/* X = A^{-1} B: B's gradient is A^{-T} G (a solve with A^T), A's is
** -(A^{-T} G) X^T; each summed back over the batch dims it broadcast. */
static void vjp_solve(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    ag_tensor *gb = solve_matrix(t, transpose(t, a), g);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, gb, b);
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, ag_neg(t, agi_matmul_t(t, gb, out, 0, 1)), a);
}
/* dX = A^{-1} (dB - dA X); dB keeps its own batch dims until the solve
** broadcasts it. */
static ag_tensor *jvp_solve(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *r = tan[1];
    if (tan[0]) {
        ag_tensor *dax = agi_matmul_t(t, tan[0], out, 0, 0);
        r = r ? ag_sub(t, r, dax) : ag_neg(t, dax);
    }
    return solve_matrix(t, out->in[0], r);
}
static const ag_op op_solve = {.name = "solve", .vjp = vjp_solve, .jvp = jvp_solve};

static ag_tensor *singular(ag_tape *t, const char *who, const ag_tensor *a, int64_t b, int64_t k)
{
    char note[48];
    return agi_error(t, AG_EINVAL,
                     "%s: A %s%s is singular (no nonzero pivot in column %lld of its LU "
                     "factorization)",
                     who, agi_shp(a, 0), batch_note(note, sizeof note, a, b), (long long)k);
}

/* ag_solve for B of rank 2 or more, [..., n, k]. */
static ag_tensor *solve_matrix(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    static const char who[] = "ag_solve";
    ag_tensor *in[2] = {a, b};
    if (!agi_check_inputs(t, who, 2, in, true))
        return agi_nil(t);
    int64_t n = a->shape[a->rank - 1], k = b->shape[b->rank - 1];
    if (b->shape[b->rank - 2] != n)
        return agi_error(t, AG_ESHAPE,
                         "%s: A %s and B %s: B's rows (%lld) differ from A's size %lld", who,
                         agi_shp(a, 0), agi_shp(b, 1), (long long)b->shape[b->rank - 2],
                         (long long)n);
    batch_walk w;
    if (!batch_walk_init(&w, a, b))
        return agi_error(t, AG_ESHAPE, "%s: A %s and B %s: batch dims do not broadcast", who,
                         agi_shp(a, 0), agi_shp(b, 1));
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, w.shape, (size_t)w.rank * sizeof *shape);
    shape[w.rank] = n;
    shape[w.rank + 1] = k;
    ag_tensor *x = agi_new(t, &op_solve, 2, in, (ag_dtype)a->dtype, w.rank + 2, shape);
    int64_t mat = n * n, bmat = n * k;
    double *lu = scratch(t, mat), *bm = scratch(t, bmat), *xm = scratch(t, bmat);
    int64_t *perm = agi_arena_alloc(t, (size_t)(n > 0 ? n : 1) * sizeof *perm, 64);
    if ((x->flags & AGI_NIL) || !lu || !bm || !xm || !perm)
        return agi_nil(t);
    /* An A broadcast over B's batch is factored once per run of equal offsets. */
    int64_t factored = -1;
    bool nan_a = false;
    for (int64_t i = 0; i < w.count; i++, batch_walk_next(&w)) {
        if (w.oa != factored) {
            load(a, w.oa * mat, mat, lu);
            factored = w.oa;
            nan_a = has_nan(lu, mat);
            bool odd;
            int64_t bad = nan_a ? -1 : lu_in_place(lu, n, perm, &odd);
            if (bad >= 0)
                return singular(t, who, a, w.oa, bad);
        }
        if (nan_a) {
            fill(x, i * bmat, bmat, NAN);
            continue;
        }
        load(b, w.ob * bmat, bmat, bm);
        for (int64_t c = 0; c < k; c++)
            lu_solve_column(lu, perm, n, bm + c, k, xm + c, k);
        store(x, i * bmat, bmat, xm);
    }
    return x;
}

ag_tensor *ag_solve(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *in[2] = {a, b};
    if (!agi_check_inputs(t, "ag_solve", 2, in, true) || !check_square(t, "ag_solve", a))
        return agi_nil(t);
    if (b->rank == 0)
        return agi_error(t, AG_ESHAPE,
                         "ag_solve: B %s is a scalar: it must be [..., n] or [..., n, k]",
                         agi_shp(b, 0));
    /* PyTorch's rule: B is a (batch of) vector(s) when it has rank 1, or is
    ** shaped as A without its last dim; otherwise a (batch of) matrices. */
    bool vector = b->rank == 1 ||
                  (b->rank == a->rank - 1 &&
                   memcmp(b->shape, a->shape, (size_t)b->rank * sizeof *b->shape) == 0);
    if (!vector)
        return solve_matrix(t, a, b);
    if (b->shape[b->rank - 1] != a->shape[a->rank - 1])
        return agi_error(t, AG_ESHAPE,
                         "ag_solve: A %s and B %s: B's length %lld differs from A's size %lld",
                         agi_shp(a, 0), agi_shp(b, 1), (long long)b->shape[b->rank - 1],
                         (long long)a->shape[a->rank - 1]);
    int64_t shape[AG_MAX_DIMS + 1];
    memcpy(shape, b->shape, (size_t)b->rank * sizeof *shape);
    shape[b->rank] = 1;
    ag_tensor *x = solve_matrix(t, a, ag_reshape(t, b, b->rank + 1, shape));
    if (x->flags & AGI_NIL)
        return x;
    return ag_reshape(t, x, x->rank - 1, x->shape);
}

/* ------------------------------------------------------------ inverse */

/* X = A^{-1}: dX = -X dA X, so A's gradient is -X^T G X^T. */
static void vjp_inverse(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_neg(t, agi_matmul_t(t, agi_matmul_t(t, out, g, 1, 0), out, 0, 1));
}
static ag_tensor *jvp_inverse(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return ag_neg(t, agi_matmul_t(t, agi_matmul_t(t, out, tan[0], 0, 0), out, 0, 0));
}
static const ag_op op_inverse = {.name = "inverse", .vjp = vjp_inverse, .jvp = jvp_inverse};

ag_tensor *ag_inverse(ag_tape *t, ag_tensor *a)
{
    if (!agi_check_inputs(t, "ag_inverse", 1, &a, false) || !check_square(t, "ag_inverse", a))
        return agi_nil(t);
    ag_tensor *x = agi_new(t, &op_inverse, 1, &a, (ag_dtype)a->dtype, a->rank, a->shape);
    int64_t n = a->shape[a->rank - 1], mat = n * n, batches = batch_count(a);
    double *lu = scratch(t, mat), *xm = scratch(t, mat), *unit = scratch(t, n);
    int64_t *perm = agi_arena_alloc(t, (size_t)(n > 0 ? n : 1) * sizeof *perm, 64);
    if ((x->flags & AGI_NIL) || !lu || !xm || !unit || !perm)
        return agi_nil(t);
    for (int64_t b = 0; b < batches; b++) {
        load(a, b * mat, mat, lu);
        if (has_nan(lu, mat)) {
            fill(x, b * mat, mat, NAN);
            continue;
        }
        bool odd;
        int64_t bad = lu_in_place(lu, n, perm, &odd);
        if (bad >= 0)
            return singular(t, "ag_inverse", a, b, bad);
        for (int64_t c = 0; c < n; c++) {
            for (int64_t r = 0; r < n; r++)
                unit[r] = r == c;
            lu_solve_column(lu, perm, n, unit, 1, xm + c, n);
        }
        store(x, b * mat, mat, xm);
    }
    return x;
}

/* ------------------------------------------------------------ slogdet */

/* d log|det A| = tr(A^{-1} dA), so A's gradient is g A^{-T}, g broadcast
** over each matrix. The inverse is the op's own, so this differentiates
** again. */
static void vjp_slogdet(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0];
    int64_t shape[AG_MAX_DIMS];
    memcpy(shape, out->shape, (size_t)out->rank * sizeof *shape);
    shape[out->rank] = shape[out->rank + 1] = 1;
    ag_tensor *gm = ag_reshape(t, g, out->rank + 2, shape);
    gin[0] = ag_mul(t, gm, transpose(t, ag_inverse(t, a)));
}
/* tr(A^{-1} dA) = sum(A^{-T} * dA) over each matrix; the sign is constant
** (where it changes, log|det| is -inf). */
static ag_tensor *jvp_slogdet(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *p = ag_mul(t, transpose(t, ag_inverse(t, out->in[0])), tan[0]);
    return ag_sum_axis(t, ag_sum_axis(t, p, -1, 0), -1, 0);
}
static const ag_op op_slogdet = {.name = "slogdet", .vjp = vjp_slogdet, .jvp = jvp_slogdet};

ag_tensor *ag_slogdet(ag_tape *t, ag_tensor *a, ag_tensor **sign)
{
    if (sign)
        *sign = agi_nil(t);
    if (!agi_check_inputs(t, "ag_slogdet", 1, &a, false) || !check_square(t, "ag_slogdet", a))
        return agi_nil(t);
    int rank = a->rank - 2;
    ag_tensor *s = sign ? ag_empty(t, (ag_dtype)a->dtype, rank, a->shape) : NULL;
    ag_tensor *out = agi_new(t, &op_slogdet, 1, &a, (ag_dtype)a->dtype, rank, a->shape);
    int64_t n = a->shape[a->rank - 1], mat = n * n, batches = batch_count(a);
    double *lu = scratch(t, mat);
    int64_t *perm = agi_arena_alloc(t, (size_t)(n > 0 ? n : 1) * sizeof *perm, 64);
    if ((out->flags & AGI_NIL) || (s && (s->flags & AGI_NIL)) || !lu || !perm)
        return agi_nil(t);
    for (int64_t b = 0; b < batches; b++) {
        load(a, b * mat, mat, lu);
        double sgn = 1, logabs = 0;
        bool odd = false;
        if (has_nan(lu, mat)) {
            sgn = logabs = NAN;
        } else if (lu_in_place(lu, n, perm, &odd) >= 0) {
            sgn = 0, logabs = -INFINITY;
        } else {
            for (int64_t i = 0; i < n; i++) {
                double u = lu[i * n + i];
                logabs += log(fabs(u));
                if (u < 0)
                    sgn = -sgn;
            }
            if (odd)
                sgn = -sgn;
            if (isnan(logabs))   /* NaN made of infinities on the way */
                sgn = NAN;
        }
        agi_set(out, b, logabs);
        if (s)
            agi_set(s, b, sgn);
    }
    if (sign)
        *sign = s;
    return out;
}

const ag_op *const agi_ops_factor[] = {
    &op_cholesky, &op_solve_triangular, &op_solve, &op_inverse, &op_slogdet, NULL,
};
