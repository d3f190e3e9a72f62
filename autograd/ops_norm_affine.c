/*
** ops_norm_affine.c: the per-channel affine map of evaluation batch norm
** and of group norm's gamma and beta, over x viewed as [a, c, b]:
**
**   channel_affine(x, m, s, h)     y = (x - m[c]) s[c] + h[c]        (one pass)
**   channel_affine_sums(g, x, m)   [sum_c g (x - m); sum_c g]        (one pass)
**
** m and h are optional (0), and so is s inside (1). The sums are the
** gradients of s and h (and, times -s, of m). Each op's VJP and JVP are
** made of the two ops and small ops on [c] vectors, so gradients of every
** order follow. The passes are ops_norm_fused.c's, with the same bits on
** any number of threads.
*/
#include "ops_norm_fused.h"

/* A result's view (a geometry without statistics) and where m, s and h are
** among its inputs (-1: absent; the sums op has only m). */
typedef struct affine_node {
    agi_norm_geom geom;
    int8_t m, s, h;
} affine_node;

static ag_tensor *affine(ag_tape *t, ag_tensor *x, ag_tensor *m, ag_tensor *s, ag_tensor *h,
                         const agi_norm_geom *geo);
static ag_tensor *affine_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *m,
                              const agi_norm_geom *geo);

static ag_tensor *input_at(const ag_tensor *out, int idx)
{
    return idx >= 0 ? out->in[idx] : NULL;
}

static bool wants(const ag_tensor *out, int idx)
{
    return idx >= 0 && agi_needs_grad(out, idx);
}

/* Row i of a [2, c] tensor, as [c]. */
static ag_tensor *row_of(ag_tape *t, ag_tensor *u, int i, int64_t c)
{
    return ag_reshape(t, ag_slice(t, u, 0, i, i + 1, 1), 1, &c);
}

/* [p; 0] for p [c]. */
static ag_tensor *first_row(ag_tape *t, ag_tensor *p, int64_t c)
{
    ag_tensor *rows[2] = {ag_reshape(t, p, 2, (int64_t[]){1, c}),
                          ag_zeros(t, (ag_dtype)p->dtype, 2, (int64_t[]){1, c})};
    return ag_concat(t, 2, rows, 0);
}

/* d/dx = g s; d/ds, d/dh = the rows of sums(g, x, m); d/dm = -s sum g */
static void vjp_affine(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const affine_node *nd = out->attr.ext;
    const agi_norm_geom *geo = &nd->geom;
    ag_tensor *x = out->in[0], *m = input_at(out, nd->m), *s = input_at(out, nd->s);
    if (agi_needs_grad(out, 0))
        gin[0] = s ? affine(t, g, NULL, s, NULL, geo) : g;
    if (!wants(out, nd->m) && !wants(out, nd->s) && !wants(out, nd->h))
        return;
    ag_tensor *sums = affine_sums(t, g, x, m, geo);
    if (wants(out, nd->s))
        gin[nd->s] = row_of(t, sums, 0, geo->c);
    if (wants(out, nd->h))
        gin[nd->h] = row_of(t, sums, 1, geo->c);
    if (wants(out, nd->m)) {
        ag_tensor *sg = row_of(t, sums, 1, geo->c);
        gin[nd->m] = ag_neg(t, s ? ag_mul(t, s, sg) : sg);
    }
}
/* dy = dx s + (x - m) ds + (dh - dm s) */
static ag_tensor *jvp_affine(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const affine_node *nd = out->attr.ext;
    const agi_norm_geom *geo = &nd->geom;
    ag_tensor *x = out->in[0], *m = input_at(out, nd->m), *s = input_at(out, nd->s), *r = NULL;
    ag_tensor *dm = nd->m >= 0 ? tan[nd->m] : NULL, *ds = nd->s >= 0 ? tan[nd->s] : NULL;
    ag_tensor *dh = nd->h >= 0 ? tan[nd->h] : NULL;
    if (tan[0])
        r = s ? affine(t, tan[0], NULL, s, NULL, geo) : tan[0];
    if (dm || ds || dh) {
        if (dm) {
            ag_tensor *shift = s ? ag_mul(t, dm, s) : dm;
            dh = dh ? ag_sub(t, dh, shift) : ag_neg(t, shift);
        }
        if (!ds)
            ds = ag_zeros(t, (ag_dtype)x->dtype, 1, &geo->c);
        r = agi_jvp_sum(t, r, affine(t, x, m, ds, dh, geo));
    }
    return r;
}
static const ag_op op_affine = {.name = "channel_affine", .vjp = vjp_affine, .jvp = jvp_affine};

/* <U, sums(g, x, m)> = sum g ((x - m) U0 + U1): in g, affine(x, m, U0, U1);
** in x, g U0; in m, -U0 sum g */
static void vjp_affine_sums(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const affine_node *nd = out->attr.ext;
    const agi_norm_geom *geo = &nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *m = input_at(out, nd->m);
    ag_tensor *u0 = row_of(t, u, 0, geo->c);
    if (agi_needs_grad(out, 0))
        gin[0] = affine(t, x, m, u0, row_of(t, u, 1, geo->c), geo);
    if (agi_needs_grad(out, 1))
        gin[1] = affine(t, g, NULL, u0, NULL, geo);
    if (wants(out, nd->m))
        gin[nd->m] = ag_neg(t, ag_mul(t, u0, row_of(t, affine_sums(t, g, x, m, geo), 1, geo->c)));
}
/* d sums = sums(dg, x, m) + [sum g (dx - dm); 0] */
static ag_tensor *jvp_affine_sums(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const affine_node *nd = out->attr.ext;
    const agi_norm_geom *geo = &nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *m = input_at(out, nd->m), *r = NULL;
    ag_tensor *dm = nd->m >= 0 ? tan[nd->m] : NULL;
    if (tan[0])
        r = affine_sums(t, tan[0], x, m, geo);
    if (tan[1])
        r = agi_jvp_sum(t, r, first_row(t, row_of(t, affine_sums(t, g, tan[1], dm, geo), 0,
                                                  geo->c), geo->c));
    else if (dm) {
        ag_tensor *sg = row_of(t, affine_sums(t, g, x, m, geo), 1, geo->c);
        r = agi_jvp_sum(t, r, first_row(t, ag_neg(t, ag_mul(t, dm, sg)), geo->c));
    }
    return r;
}
static const ag_op op_affine_sums = {
    .name = "channel_affine_sums", .vjp = vjp_affine_sums, .jvp = jvp_affine_sums};

static affine_node *node_make(ag_tape *t, const agi_norm_geom *geo, int m, int s, int h)
{
    affine_node *nd = agi_arena_alloc(t, sizeof *nd, _Alignof(affine_node));
    if (nd)
        *nd = (affine_node){{.a = geo->a, .c = geo->c, .b = geo->b}, (int8_t)m, (int8_t)s,
                            (int8_t)h};
    return nd;
}

static ag_tensor *affine(ag_tape *t, ag_tensor *x, ag_tensor *m, ag_tensor *s, ag_tensor *h,
                         const agi_norm_geom *geo)
{
    ag_tensor *in[4] = {x};
    int nin = 1, mi = -1, si = -1, hi = -1;
    if (m)
        in[mi = nin++] = m;
    if (s)
        in[si = nin++] = s;
    if (h)
        in[hi = nin++] = h;
    if (!agi_check_inputs(t, "channel_affine", nin, in, true))
        return agi_nil(t);
    affine_node *nd = node_make(t, geo, mi, si, hi);
    if (!nd)
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_affine, nin, in, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    return agi_norm_affine_values(t, &nd->geom, x, m, s, h, out) ? out : agi_nil(t);
}

static ag_tensor *affine_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *m,
                              const agi_norm_geom *geo)
{
    ag_tensor *in[3] = {g, x, m};
    int nin = m ? 3 : 2;
    if (!agi_check_inputs(t, "channel_affine_sums", nin, in, true))
        return agi_nil(t);
    if (!agi_same_shape(g, x))   /* a tangent may come smaller */
        in[0] = g = ag_broadcast_to(t, g, x->rank, x->shape);
    affine_node *nd = node_make(t, geo, m ? 2 : -1, -1, -1);
    if (!nd || t->status != AG_OK)
        return agi_nil(t);
    int64_t c = geo->c;
    ag_tensor *out = agi_new(t, &op_affine_sums, nin, in, (ag_dtype)x->dtype, 2,
                             (int64_t[]){2, c});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    const double *sums = agi_norm_sums_values(t, &nd->geom, g, x, m);
    if (!sums)
        return agi_nil(t);
    for (int64_t i = 0; i < c; i++) {
        agi_set(out, i, sums[c + i]);
        agi_set(out, c + i, sums[i]);
    }
    return out;
}

/* Validates the view and the [c] vectors, naming 'who'. */
static bool view_ok(ag_tape *t, const char *who, const ag_tensor *x, int64_t a, int64_t c,
                    int64_t b, ag_tensor *const *vecs, const char *const *names, int n)
{
    if (a < 1 || c < 1 || b < 1 || a * c * b != x->numel) {
        agi_error(t, AG_ESHAPE, "%s: x %s is not %lld x %lld x %lld values", who, agi_shp(x, 0),
                  (long long)a, (long long)c, (long long)b);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (vecs[i] && (vecs[i]->rank != 1 || vecs[i]->shape[0] != c)) {
            agi_error(t, AG_ESHAPE, "%s: %s %s must be [%lld]", who, names[i],
                      agi_shp(vecs[i], 0), (long long)c);
            return false;
        }
    return true;
}

ag_tensor *agi_channel_affine(ag_tape *t, const char *who, ag_tensor *x, int64_t a, int64_t c,
                              int64_t b, ag_tensor *m, ag_tensor *s, ag_tensor *h)
{
    ag_tensor *in[4] = {x};
    int nin = 1;
    if (m)
        in[nin++] = m;
    if (s)
        in[nin++] = s;
    if (h)
        in[nin++] = h;
    if (!agi_check_inputs(t, who, nin, in, true))
        return agi_nil(t);
    ag_tensor *vecs[3] = {m, s, h};
    if (!view_ok(t, who, x, a, c, b, vecs, (const char *const[]){"m", "s", "h"}, 3))
        return agi_nil(t);
    agi_norm_geom geo = {.a = a, .c = c, .b = b};
    return affine(t, x, m, s, h, &geo);
}

ag_tensor *agi_channel_affine_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, int64_t a, int64_t c,
                                   int64_t b, ag_tensor *m)
{
    ag_tensor *in[3] = {g, x, m};
    if (!agi_check_inputs(t, "channel_affine_sums", m ? 3 : 2, in, true))
        return agi_nil(t);
    if (!view_ok(t, "channel_affine_sums", x, a, c, b, &m, (const char *const[]){"m"}, 1))
        return agi_nil(t);
    agi_norm_geom geo = {.a = a, .c = c, .b = b};
    return affine_sums(t, g, x, m, &geo);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_norm_affine[] = {&op_affine, &op_affine_sums, NULL};
