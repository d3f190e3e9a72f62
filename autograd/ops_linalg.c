/*
** ops_linalg.c: the matrix product. One op, matmul(a, b, ta, tb) computing
** op(a) @ op(b) over broadcast batch dims, serves the forward pass and both
** products of its vjp, so transposes are never materialised.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <string.h>

/* The gradients of C = op(A) op(B) (op transposes when its flag is set)
** for an upstream G, in four cases, each one product whose transposes the
** kernel reads in place (no copy):
**   A as is: gA = G op(B)^T        A transposed: gA = op(B) G^T
**   B as is: gB = op(A)^T G        B transposed: gB = G^T op(A) */
static void vjp_matmul(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    int ta = out->attr.mm.ta, tb = out->attr.mm.tb;
    if (agi_needs_grad(out, 0)) {
        ag_tensor *ga = ta ? agi_matmul_t(t, b, g, tb, 1) : agi_matmul_t(t, g, b, 0, !tb);
        gin[0] = agi_unbroadcast(t, ga, a);
    }
    if (agi_needs_grad(out, 1)) {
        ag_tensor *gb = tb ? agi_matmul_t(t, g, a, 1, ta) : agi_matmul_t(t, a, g, !ta, 0);
        gin[1] = agi_unbroadcast(t, gb, b);
    }
}
/* d(op(A) op(B)) = op(dA) op(B) + op(A) op(dB) */
static ag_tensor *jvp_matmul(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    int ta = out->attr.mm.ta, tb = out->attr.mm.tb;
    return agi_jvp_sum(t, tan[0] ? agi_matmul_t(t, tan[0], b, ta, tb) : NULL,
                       tan[1] ? agi_matmul_t(t, a, tan[1], ta, tb) : NULL);
}
static const ag_op op_matmul = {.name = "matmul", .vjp = vjp_matmul, .jvp = jvp_matmul};

ag_tensor *agi_matmul_t(ag_tape *t, ag_tensor *a, ag_tensor *b, int ta, int tb)
{
    ag_tensor *in[2] = {a, b};
    if (!agi_check_inputs(t, "ag_matmul", 2, in, true))
        return agi_nil(t);
    if (a->rank < 2 || b->rank < 2)
        return agi_error(t, AG_ESHAPE, "ag_matmul: %s x %s: operands need rank 2 or more",
                         agi_shp(a, 0), agi_shp(b, 1));
    int64_t m = a->shape[a->rank - (ta ? 1 : 2)], ka = a->shape[a->rank - (ta ? 2 : 1)];
    int64_t kb = b->shape[b->rank - (tb ? 1 : 2)], n = b->shape[b->rank - (tb ? 2 : 1)];
    if (ka != kb)
        return agi_error(t, AG_ESHAPE, "ag_matmul: %s%s x %s%s: inner sizes %lld and %lld differ",
                         agi_shp(a, 0), ta ? "^T" : "", agi_shp(b, 1), tb ? "^T" : "",
                         (long long)ka, (long long)kb);
    int rank;
    int64_t shape[AG_MAX_DIMS];
    if (!agi_broadcast_shape(a->rank - 2, a->shape, b->rank - 2, b->shape, &rank, shape))
        return agi_error(t, AG_ESHAPE, "ag_matmul: %s x %s: batch dims do not broadcast",
                         agi_shp(a, 0), agi_shp(b, 1));
    shape[rank] = m;
    shape[rank + 1] = n;
    ag_tensor *out = agi_new(t, &op_matmul, 2, in, (ag_dtype)a->dtype, rank + 2, shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.mm.ta = ta;
    out->attr.mm.tb = tb;
    ag_dtype dt = (ag_dtype)a->dtype;
    size_t es = ag_dtype_size(dt);
    void *scratch = NULL;
    size_t need = agk_gemm_scratch(dt, m, n, ka, ta, tb, t->pool);
    if (need && !(scratch = agi_arena_alloc(t, need, 64)))
        return agi_nil(t);
    /* Batch strides in whole matrices, 0 where a side is broadcast. */
    int64_t batches = 1, sa[AG_MAX_DIMS], sb[AG_MAX_DIMS], idx[AG_MAX_DIMS] = {0};
    for (int d = 0; d < rank; d++)
        batches *= shape[d];
    ag_tensor av = {.rank = (uint8_t)(a->rank - 2)}, bv = {.rank = (uint8_t)(b->rank - 2)};
    memcpy(av.shape, a->shape, (size_t)av.rank * sizeof *av.shape);
    memcpy(bv.shape, b->shape, (size_t)bv.rank * sizeof *bv.shape);
    agi_broadcast_strides(&av, rank, shape, sa);
    agi_broadcast_strides(&bv, rank, shape, sb);
    int64_t a_mat = m * ka, b_mat = ka * n, c_mat = m * n, oa = 0, ob = 0;
    int64_t lda = a->shape[a->rank - 1], ldb = b->shape[b->rank - 1];
    for (int64_t i = 0; i < batches; i++) {
        agk_gemm(dt, m, n, ka, (const char *)a->value + (size_t)(oa * a_mat) * es, lda, ta,
                 (const char *)b->value + (size_t)(ob * b_mat) * es, ldb, tb,
                 (char *)out->value + (size_t)(i * c_mat) * es, n, scratch, t->pool);
        for (int d = rank - 1; d >= 0; d--) {
            oa += sa[d], ob += sb[d];
            if (++idx[d] < shape[d])
                break;
            oa -= sa[d] * shape[d], ob -= sb[d] * shape[d];
            idx[d] = 0;
        }
    }
    return out;
}

ag_tensor *ag_matmul(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *in[2] = {a, b};
    if (!agi_check_inputs(t, "ag_matmul", 2, in, true))
        return agi_nil(t);
    if (a->rank == 0 || b->rank == 0)
        return agi_error(t, AG_ESHAPE, "ag_matmul: %s x %s: scalars have no matrix product",
                         agi_shp(a, 0), agi_shp(b, 1));
    if (a->rank >= 2 && b->rank >= 2)
        return agi_matmul_t(t, a, b, 0, 0);
    /* NumPy's vector rules: a row on the left, a column on the right, and the
    ** added axis dropped from the result. */
    bool row = a->rank == 1, col = b->rank == 1;
    /* Checked here, not after the reshapes below, so that the message
    ** names the shapes given ([3] x [4], not [1,3] x [4,1]). */
    int64_t ka = a->shape[a->rank - 1], kb = b->shape[col ? 0 : b->rank - 2];
    if (ka != kb)
        return agi_error(t, AG_ESHAPE, "ag_matmul: %s x %s: inner sizes %lld and %lld differ",
                         agi_shp(a, 0), agi_shp(b, 1), (long long)ka, (long long)kb);
    ag_tensor *a2 = row ? ag_reshape(t, a, 2, (int64_t[]){1, a->shape[0]}) : a;
    ag_tensor *b2 = col ? ag_reshape(t, b, 2, (int64_t[]){b->shape[0], 1}) : b;
    ag_tensor *c = agi_matmul_t(t, a2, b2, 0, 0);
    if (c->flags & AGI_NIL)
        return c;
    int64_t shape[AG_MAX_DIMS];
    int rank = 0;
    for (int d = 0; d < c->rank; d++) {
        if ((row && d == c->rank - 2) || (col && d == c->rank - 1))
            continue;
        shape[rank++] = c->shape[d];
    }
    return ag_reshape(t, c, rank, shape);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_linalg[] = {
    &op_matmul, NULL
};
