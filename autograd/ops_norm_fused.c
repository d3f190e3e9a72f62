/*
** ops_norm_fused.c: standardisation as three fused ops, for batch and group
** normalisation (ops_norm.c). x is viewed as [a, c, b] and each middle
** index c is standardised over its a * b values:
**
**   standardise(x, gamma, beta)    y = xhat gamma[c] + beta[c],  xhat = (x - mean_c) rstd_c
**   standardise_grad(g, x, gamma)  J^T (gamma g) = gamma rstd (g - mean_c g - xhat mean_c(g xhat))
**   standardise_sums(g, x)         [sum_c g xhat; sum_c g], the gradients of gamma and beta
**
** The Jacobian J of x -> xhat is symmetric, so standardise_grad is both the
** VJP and the JVP of standardise in x, and its own VJP in g; standardise is
** the VJP of standardise_sums in g. Only the dependence of standardise_grad
** on x (a Hessian of the standardisation) is written with generic ops, on
** the second-order path alone.
**
** Statistics are computed once per x and every op on the same x shares them
** (agi_norm_geom). The passes over the values (norm_passes.c) compute them,
** and the ops' sums and writes.
*/
#include "ops_norm_fused.h"

/* Each op's result carries its x's geometry and where its gamma and beta
** are among its inputs (-1: absent). */
typedef struct norm_node {
    const agi_norm_geom *geom;
    int8_t gamma, beta;
} norm_node;

/* ------------------------------------------------------------ the ops */

/* The sums of g and g (x - mean) per c, [2c] doubles in the arena. */
static double *gsums(ag_tape *t, const ag_tensor *g, const ag_tensor *x, const agi_norm_geom *geom)
{
    return agi_norm_sums_values(t, geom, g, x, NULL);
}

static ag_tensor *standardise(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta,
                              const agi_norm_geom *geom);
static ag_tensor *standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                   const agi_norm_geom *geom, const double *sums);
static ag_tensor *standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x,
                                   const agi_norm_geom *geom, const double **sums);

static ag_tensor *input_or_null(const ag_tensor *out, int idx)
{
    return idx >= 0 ? out->in[idx] : NULL;
}

/* Row i of a [2, c] tensor, as [c]. */
static ag_tensor *row_of(ag_tape *t, ag_tensor *s, int i, int64_t c)
{
    return ag_reshape(t, ag_slice(t, s, 0, i, i + 1, 1), 1, &c);
}

/* A tensor of x's size seen in the [a, c, b] view, */
static ag_tensor *view3(ag_tape *t, ag_tensor *v, const agi_norm_geom *g)
{
    return ag_reshape(t, v, 3, (int64_t[]){g->a, g->c, g->b});
}

/* and a [c] vector as [1, c, 1] to broadcast over it. */
static ag_tensor *vec3(ag_tape *t, ag_tensor *p, const agi_norm_geom *g)
{
    return ag_reshape(t, p, 3, (int64_t[]){1, g->c, 1});
}

/* The mean over a and b of z [a, c, b]: [1, c, 1]. */
static ag_tensor *chan_mean(ag_tape *t, ag_tensor *z)
{
    return ag_mean_axis(t, ag_mean_axis(t, z, 2, 1), 0, 1);
}

/* The sum over a and b of u * v (x's shape) per c, as [c]. */
static ag_tensor *chan_dot(ag_tape *t, ag_tensor *u, ag_tensor *v, const agi_norm_geom *g)
{
    ag_tensor *s = ag_sum_to(t, ag_mul(t, view3(t, u, g), view3(t, v, g)), 3,
                             (int64_t[]){1, g->c, 1});
    return ag_reshape(t, s, 1, (int64_t[]){g->c});
}

/* The derivative of h = standardise_grad(g, x, 1) in x along v, which is
** also its transpose applied to v (it is a Hessian of <g, xhat>, so
** symmetric): with r = rstd and a = mean_c(g xhat),
**   -r (mean_c(v h) xhat + a standardise_grad(v, x) + mean_c(v xhat) h).
** Generic ops, recomputing r from x, so that it is differentiable again. */
static ag_tensor *grad_in_x(ag_tape *t, ag_tensor *x, ag_tensor *g, ag_tensor *h, ag_tensor *v,
                            const agi_norm_geom *geo)
{
    ag_tensor *x3 = view3(t, x, geo), *g3 = view3(t, g, geo), *h3 = view3(t, h, geo);
    ag_tensor *v3 = view3(t, v, geo);
    ag_tensor *d = ag_sub(t, x3, chan_mean(t, x3));
    ag_tensor *r = ag_pow_scalar(t, ag_add_scalar(t, chan_mean(t, ag_mul(t, d, d)), geo->eps), -0.5);
    ag_tensor *xhat = view3(t, standardise(t, x, NULL, NULL, geo), geo);
    ag_tensor *a = chan_mean(t, ag_mul(t, g3, xhat));
    ag_tensor *t1 = ag_mul(t, ag_mul(t, r, chan_mean(t, ag_mul(t, v3, h3))), xhat);
    ag_tensor *t2 = ag_mul(t, ag_mul(t, r, a), view3(t, standardise_grad(t, v, x, NULL, geo, NULL), geo));
    ag_tensor *t3 = ag_mul(t, ag_mul(t, r, chan_mean(t, ag_mul(t, v3, xhat))), h3);
    ag_tensor *w = ag_neg(t, ag_add(t, ag_add(t, t1, t2), t3));
    return ag_reshape(t, w, x->rank, x->shape);
}

/* gamma[c] v, v of x's shape */
static ag_tensor *scale_by(ag_tape *t, ag_tensor *v, ag_tensor *gamma, const agi_norm_geom *g)
{
    if (!gamma)
        return v;
    ag_tensor *s = ag_mul(t, view3(t, v, g), vec3(t, gamma, g));
    return ag_reshape(t, s, v->rank, v->shape);
}

/* standardise: d/dx = standardise_grad(g, x, gamma); d/dgamma, d/dbeta =
** the rows of standardise_sums(g, x), whose sums standardise_grad reuses */
static void vjp_standardise(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *x = out->in[0], *gamma = input_or_null(out, nd->gamma);
    bool need_gamma = gamma && agi_needs_grad(out, nd->gamma);
    bool need_beta = nd->beta >= 0 && agi_needs_grad(out, nd->beta);
    const double *sums = NULL;
    if (need_gamma || need_beta) {
        ag_tensor *s = standardise_sums(t, g, x, geo, &sums);
        if (need_gamma)
            gin[nd->gamma] = row_of(t, s, 0, geo->c);
        if (need_beta)
            gin[nd->beta] = row_of(t, s, 1, geo->c);
    }
    if (agi_needs_grad(out, 0))
        gin[0] = standardise_grad(t, g, x, gamma, geo, sums);
}
/* J is symmetric: d y = standardise_grad(dx, x, gamma) + xhat dgamma + dbeta */
static ag_tensor *jvp_standardise(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *x = out->in[0], *gamma = input_or_null(out, nd->gamma), *r = NULL;
    if (tan[0])
        r = standardise_grad(t, tan[0], x, gamma, geo, NULL);
    ag_tensor *dg = nd->gamma >= 0 ? tan[nd->gamma] : NULL;
    ag_tensor *db = nd->beta >= 0 ? tan[nd->beta] : NULL;
    if (dg || db) {
        if (!dg)
            dg = ag_zeros(t, (ag_dtype)x->dtype, 1, &geo->c);
        r = agi_jvp_sum(t, r, standardise(t, x, dg, db, geo));
    }
    return r;
}
static const ag_op op_standardise = {
    .name = "standardise", .vjp = vjp_standardise, .jvp = jvp_standardise};

/* standardise_grad(g, x, gamma) = gamma h, h = standardise_grad(g, x, 1):
** linear and self-adjoint in g, linear in gamma; in x, grad_in_x */
static void vjp_standardise_grad(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *gamma = input_or_null(out, nd->gamma);
    if (agi_needs_grad(out, 0))
        gin[0] = standardise_grad(t, u, x, gamma, geo, NULL);
    bool need_gamma = gamma && agi_needs_grad(out, nd->gamma);
    if (!need_gamma && !agi_needs_grad(out, 1))
        return;
    ag_tensor *h = gamma ? standardise_grad(t, g, x, NULL, geo, NULL) : out;
    if (need_gamma)
        gin[nd->gamma] = chan_dot(t, u, h, geo);
    if (agi_needs_grad(out, 1))
        gin[1] = grad_in_x(t, x, g, h, scale_by(t, u, gamma, geo), geo);
}
static ag_tensor *jvp_standardise_grad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *gamma = input_or_null(out, nd->gamma), *r = NULL;
    if (tan[0])
        r = standardise_grad(t, tan[0], x, gamma, geo, NULL);
    if (gamma && tan[nd->gamma])
        r = agi_jvp_sum(t, r, standardise_grad(t, g, x, tan[nd->gamma], geo, NULL));
    if (tan[1]) {
        ag_tensor *h = gamma ? standardise_grad(t, g, x, NULL, geo, NULL) : out;
        r = agi_jvp_sum(t, r, grad_in_x(t, x, g, h, scale_by(t, tan[1], gamma, geo), geo));
    }
    return r;
}
static const ag_op op_standardise_grad = {
    .name = "standardise_grad", .vjp = vjp_standardise_grad, .jvp = jvp_standardise_grad};

/* <U, sums(g, x)> = <U0, sum g xhat> + <U1, sum g>: in g, xhat U0 + U1 (a
** standardise); in x, J (U0 g) = standardise_grad(g, x, U0) */
static void vjp_standardise_sums(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1];
    ag_tensor *u0 = row_of(t, u, 0, geo->c);
    if (agi_needs_grad(out, 0))
        gin[0] = standardise(t, x, u0, row_of(t, u, 1, geo->c), geo);
    if (agi_needs_grad(out, 1))
        gin[1] = standardise_grad(t, g, x, u0, geo, NULL);
}
/* d sums = sums(dg, x) + [sum dx J g; 0] */
static ag_tensor *jvp_standardise_sums(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *r = NULL;
    if (tan[0])
        r = standardise_sums(t, tan[0], x, geo, NULL);
    if (tan[1]) {
        int64_t c = geo->c;
        ag_tensor *s = chan_dot(t, tan[1], standardise_grad(t, g, x, NULL, geo, NULL), geo);
        ag_tensor *rows[2] = {ag_reshape(t, s, 2, (int64_t[]){1, c}),
                              ag_zeros(t, (ag_dtype)x->dtype, 2, (int64_t[]){1, c})};
        r = agi_jvp_sum(t, r, ag_concat(t, 2, rows, 0));
    }
    return r;
}
static const ag_op op_standardise_sums = {
    .name = "standardise_sums", .vjp = vjp_standardise_sums, .jvp = jvp_standardise_sums};

/* ------------------------------------------------------ construction */

static norm_node *node_make(ag_tape *t, const agi_norm_geom *geom, int gamma, int beta)
{
    norm_node *nd = agi_arena_alloc(t, sizeof *nd, _Alignof(norm_node));
    if (nd)
        *nd = (norm_node){geom, (int8_t)gamma, (int8_t)beta};
    return nd;
}

/* g as x's shape, broadcast when it is not (a tangent may be smaller). */
static ag_tensor *seed_like(ag_tape *t, ag_tensor *g, const ag_tensor *x)
{
    return agi_same_shape(g, x) ? g : ag_broadcast_to(t, g, x->rank, x->shape);
}

static ag_tensor *standardise(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta,
                              const agi_norm_geom *geom)
{
    ag_tensor *in[3] = {x};
    int nin = 1, gi = -1, bi = -1;
    if (gamma)
        in[gi = nin++] = gamma;
    if (beta)
        in[bi = nin++] = beta;
    if (!agi_check_inputs(t, "standardise", nin, in, true))
        return agi_nil(t);
    norm_node *nd = node_make(t, geom, gi, bi);
    if (!nd)
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_standardise, nin, in, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    return agi_norm_standardise_values(t, geom, x, gamma, beta, out) ? out : agi_nil(t);
}

/* 'sums' (from standardise_sums on the same g and x), when given, spares
** the reduction: the same numbers, so the same bits. */
static ag_tensor *standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                   const agi_norm_geom *geom, const double *sums)
{
    ag_tensor *in[3] = {g, x, gamma};
    int nin = gamma ? 3 : 2;
    if (!agi_check_inputs(t, "standardise_grad", nin, in, true))
        return agi_nil(t);
    in[0] = g = seed_like(t, g, x);
    norm_node *nd = node_make(t, geom, gamma ? 2 : -1, -1);
    if (!nd || t->status != AG_OK)
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_standardise_grad, nin, in, (ag_dtype)x->dtype, x->rank,
                             x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    double *own = sums ? NULL : gsums(t, g, x, geom);
    if (!sums && !own)
        return agi_nil(t);
    return agi_norm_grad_values(t, geom, g, x, gamma, sums ? sums : own, out) ? out
                                                                              : agi_nil(t);
}

static ag_tensor *standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x,
                                   const agi_norm_geom *geom, const double **sums)
{
    ag_tensor *in[2] = {g, x};
    if (!agi_check_inputs(t, "standardise_sums", 2, in, true))
        return agi_nil(t);
    in[0] = g = seed_like(t, g, x);
    norm_node *nd = node_make(t, geom, -1, -1);
    if (!nd || t->status != AG_OK)
        return agi_nil(t);
    int64_t c = geom->c;
    ag_tensor *out = agi_new(t, &op_standardise_sums, 2, in, (ag_dtype)x->dtype, 2,
                             (int64_t[]){2, c});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    double *s = gsums(t, g, x, geom);
    if (!s)
        return agi_nil(t);
    for (int64_t i = 0; i < c; i++) {
        agi_set(out, i, geom->rstd[i] * s[c + i]);
        agi_set(out, c + i, s[i]);
    }
    if (sums)
        *sums = s;
    return out;
}

/* Is p NULL or a [n] vector? */
static bool vector_of(const ag_tensor *p, int64_t n)
{
    return !p || (p->rank == 1 && p->shape[0] == n);
}

ag_tensor *agi_standardise(ag_tape *t, ag_tensor *x, int64_t a, int64_t c, int64_t b, double eps,
                           ag_tensor *gamma, ag_tensor *beta)
{
    ag_tensor *in[3] = {x};
    int nin = 1;
    if (gamma)
        in[nin++] = gamma;
    if (beta)
        in[nin++] = beta;
    if (!agi_check_inputs(t, "standardise", nin, in, true))
        return agi_nil(t);
    if (a < 1 || c < 1 || b < 1 || a * c * b != x->numel)
        return agi_error(t, AG_ESHAPE, "standardise: x %s is not %lld x %lld x %lld values",
                         agi_shp(x, 0), (long long)a, (long long)c, (long long)b);
    if (!vector_of(gamma, c) || !vector_of(beta, c))
        return agi_error(t, AG_ESHAPE, "standardise: gamma %s and beta %s must be [%lld]",
                         agi_shp(gamma, 0), agi_shp(beta, 1), (long long)c);
    if (!(eps >= 0))
        return agi_error(t, AG_EINVAL, "standardise: eps %g must be >= 0", eps);
    agi_norm_geom *geo = agi_arena_alloc(t, sizeof *geo, _Alignof(agi_norm_geom));
    double *stats = agi_arena_alloc(t, 3 * (size_t)c * sizeof *stats, 64);
    if (!geo || !stats)
        return agi_nil(t);
    *geo = (agi_norm_geom){.a = a, .c = c, .b = b, .eps = eps, .mean = stats, .var = stats + c,
                           .rstd = stats + 2 * c};
    if (!agi_norm_stats_values(t, geo, x))
        return agi_nil(t);
    return standardise(t, x, gamma, beta, geo);
}

const agi_norm_geom *agi_standardise_geom(const ag_tensor *y)
{
    return y && y->op == &op_standardise ? ((const norm_node *)y->attr.ext)->geom : NULL;
}

/* Checks that geom is x's view (the tests call these directly). */
static bool fits(ag_tape *t, const char *who, const ag_tensor *x, const agi_norm_geom *geom)
{
    if (t->status != AG_OK)
        return false;
    if (!geom || !x || geom->a * geom->c * geom->b != x->numel) {
        agi_error(t, AG_ESHAPE, "%s: x %s does not fit its statistics", who, agi_shp(x, 0));
        return false;
    }
    return true;
}

ag_tensor *agi_standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                const agi_norm_geom *geom)
{
    if (!fits(t, "standardise_grad", x, geom))
        return agi_nil(t);
    if (!vector_of(gamma, geom->c))
        return agi_error(t, AG_ESHAPE, "standardise_grad: gamma %s must be [%lld]",
                         agi_shp(gamma, 0), (long long)geom->c);
    return standardise_grad(t, g, x, gamma, geom, NULL);
}

ag_tensor *agi_standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, const agi_norm_geom *geom)
{
    if (!fits(t, "standardise_sums", x, geom))
        return agi_nil(t);
    return standardise_sums(t, g, x, geom, NULL);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_norm_fused[] = {
    &op_standardise, &op_standardise_grad, &op_standardise_sums, NULL
};
