/*
** ops_binary.c: binary elementwise ops with NumPy broadcasting (add, sub,
** mul, div, pow, maximum, minimum), where, and the comparisons that make the
** masks their gradients use. Each op's vjp sits under its forward.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>

/* Validates, broadcasts, and computes out = f(a, b). 'op' may be a
** non-differentiable descriptor (vjp NULL), as for the comparisons. */
AGK_INLINE ag_tensor *binary_with(ag_tape *t, const ag_op *op, const char *who, ag_tensor *a,
                                  ag_tensor *b, agk_fn2 f, ag_range_fn slice)
{
    ag_tensor *in[2] = {a, b};
    if (!agi_check_inputs(t, who, 2, in, true))
        return agi_nil(t);
    if (a->rank == 0 && b->rank == 0) {
        /* Scalars (micrograd-style graphs): no shapes to broadcast. */
        ag_tensor *out = agi_new_scalar(t, op, 2, in, (ag_dtype)a->dtype);
        if (!(out->flags & AGI_NIL))
            agk_row2((ag_dtype)a->dtype, 1, a->value, 0, b->value, 0, out->value, f);
        return out;
    }
    int rank;
    int64_t shape[AG_MAX_DIMS];
    if (!agi_broadcast_shape(a->rank, a->shape, b->rank, b->shape, &rank, shape))
        return agi_error(t, AG_ESHAPE, "%s: shapes %s and %s do not broadcast", who,
                         agi_shp(a, 0), agi_shp(b, 1));
    ag_tensor *out = agi_new(t, op, 2, in, (ag_dtype)a->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    int64_t sa[AG_MAX_DIMS], sb[AG_MAX_DIMS], fa, fb;
    agi_broadcast_strides(a, rank, shape, sa);
    agi_broadcast_strides(b, rank, shape, sb);
    if (out->numel >= AGK_PARALLEL_MIN && agk_flat2(rank, shape, sa, sb, &fa, &fb)) {
        agk_slice_job j = {.dt = (ag_dtype)a->dtype, .a = a->value, .b = b->value, .sa = fa,
                           .sb = fb, .out = out->value};
        ag_pool_for(t->pool, out->numel, AGK_GRAIN, slice, &j);
    } else {
        agk_map2((ag_dtype)a->dtype, rank, shape, a->value, sa, b->value, sb, out->value, f);
    }
    return out;
}
/* Each formula f has its slice function f_slice2 (kernels.h), defined next to it. */
#define binary(t, op, who, a, b, f) binary_with(t, op, who, a, b, f, f##_slice2)

ag_tensor *agi_unbroadcast(ag_tape *t, ag_tensor *g, const ag_tensor *x)
{
    if (agi_same_shape(g, x))
        return g;
    return ag_sum_to(t, g, x->rank, x->shape);
}

ag_tensor *agi_const_like(ag_tape *t, const ag_tensor *x, double v)
{
    return ag_scalar(t, (ag_dtype)x->dtype, v);
}

ag_tensor *ag_add_scalar(ag_tape *t, ag_tensor *x, double s)
{
    if (!agi_check_inputs(t, "ag_add_scalar", 1, &x, false))
        return agi_nil(t);
    return ag_add(t, x, agi_const_like(t, x, s));
}

ag_tensor *ag_mul_scalar(ag_tape *t, ag_tensor *x, double s)
{
    if (!agi_check_inputs(t, "ag_mul_scalar", 1, &x, false))
        return agi_nil(t);
    return ag_mul(t, x, agi_const_like(t, x, s));
}

/* Raw vjps (internal.h) handle an input of the output's shape; a broadcast
** one, whose gradient needs summing, is left to the vjp. Each dim of a
** broadcast input is 1 or the output's, so equal rank and equal nonzero size
** mean equal shapes; with a zero dimension ([0,1] and [0,3] agree on both)
** the shapes are compared. Cheap on purpose: scalar graphs call it per op. */
static bool fits(const ag_tensor *x, const ag_tensor *out)
{
    return x->rank == out->rank && x->numel == out->numel &&
           (x->numel != 0 || agi_same_shape(x, out));
}

/* Adds f(g, a, b) into the gradient of input i of 'out' when it needs one. */
AGK_INLINE void raw_into_with(ag_tape *t, ag_tensor *out, int i, const ag_tensor *g,
                              const ag_tensor *a, const ag_tensor *b, agk_grad_fn f,
                              ag_range_fn slice)
{
    if (!agi_needs_grad(out, i))
        return;
    bool fresh;
    void *dst = agi_grad_slot(t, out->in[i], &fresh);
    if (!dst)
        return;
    if (out->numel >= AGK_PARALLEL_MIN) {
        agk_slice_job j = {.dt = (ag_dtype)out->dtype, .a = g->value, .b = a ? a->value : NULL,
                           .c = b ? b->value : NULL, .out = dst, .fresh = fresh};
        ag_pool_for(t->pool, out->numel, AGK_GRAIN, slice, &j);
    } else {
        agk_grad_map((ag_dtype)out->dtype, out->numel, dst, fresh, g->value, a ? a->value : NULL,
                     b ? b->value : NULL, f, NULL);
    }
}
#define raw_into(t, out, i, g, a, b, f) raw_into_with(t, out, i, g, a, b, f, f##_slice_grad)

/* Gradient formulas of the raw vjps, step for step as in each vjp below. */
static double d_mul(double g, double a, double b, const double *p, bool f32)
{
    (void)b, (void)p;
    return agk_round(g * a, f32);
}
static double d_div(double g, double b, double unused, const double *p, bool f32)
{
    (void)unused, (void)p;
    return agk_round(g / b, f32);
}
static double d_div_denominator(double g, double out, double b, const double *p, bool f32)
{
    (void)p;
    return -agk_round(g * agk_round(out / b, f32), f32);
}

/* a + b */
static double f_add(double a, double b) { return a + b; }
static int raw_add(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (!fits(a, out) || !fits(b, out))
        return false;
    if (agi_needs_grad(out, 0))
        agi_grad_add(t, a, g);
    if (agi_needs_grad(out, 1))
        agi_grad_add(t, b, g);
    return true;
}
static void vjp_add(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, g, out->in[0]);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, g, out->in[1]);
}
static ag_tensor *jvp_add(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)out;
    return agi_jvp_sum(t, tan[0], tan[1]);
}
static const ag_op op_add = {.name = "add", .vjp = vjp_add, .raw_vjp = raw_add, .jvp = jvp_add};
AGK_ROW2_SLICE(f_add);
ag_tensor *ag_add(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_add, "ag_add", a, b, f_add);
}

/* a - b */
static double f_sub(double a, double b) { return a - b; }
AGK_GRAD_SLICE(agk_grad_neg);
static int raw_sub(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (!fits(a, out) || !fits(b, out))
        return false;
    if (agi_needs_grad(out, 0))
        agi_grad_add(t, a, g);
    raw_into(t, out, 1, g, NULL, NULL, agk_grad_neg);
    return true;
}
static void vjp_sub(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, g, out->in[0]);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, ag_neg(t, g), out->in[1]);
}
static ag_tensor *jvp_sub(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    (void)out;
    if (!tan[0])
        return ag_neg(t, tan[1]);
    return tan[1] ? ag_sub(t, tan[0], tan[1]) : tan[0];
}
static const ag_op op_sub = {.name = "sub", .vjp = vjp_sub, .raw_vjp = raw_sub, .jvp = jvp_sub};
AGK_ROW2_SLICE(f_sub);
ag_tensor *ag_sub(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_sub, "ag_sub", a, b, f_sub);
}

/* a * b: d/da = b, d/db = a */
static double f_mul(double a, double b) { return a * b; }
AGK_GRAD_SLICE(d_mul);
static int raw_mul(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (!fits(a, out) || !fits(b, out))
        return false;
    raw_into(t, out, 0, g, b, NULL, d_mul);
    raw_into(t, out, 1, g, a, NULL, d_mul);
    return true;
}
static void vjp_mul(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, ag_mul(t, g, b), a);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, ag_mul(t, g, a), b);
}
static ag_tensor *jvp_mul(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    return agi_jvp_sum(t, tan[0] ? ag_mul(t, tan[0], b) : NULL, tan[1] ? ag_mul(t, a, tan[1]) : NULL);
}
static const ag_op op_mul = {.name = "mul", .vjp = vjp_mul, .raw_vjp = raw_mul, .jvp = jvp_mul};
AGK_ROW2_SLICE(f_mul);
ag_tensor *ag_mul(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_mul, "ag_mul", a, b, f_mul);
}

/* a / b: d/da = 1/b, d/db = -a/b^2 = -out/b */
static double f_div(double a, double b) { return a / b; }
AGK_GRAD_SLICE(d_div);
AGK_GRAD_SLICE(d_div_denominator);
static int raw_div(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (!fits(a, out) || !fits(b, out))
        return false;
    raw_into(t, out, 0, g, b, NULL, d_div);
    raw_into(t, out, 1, g, out, b, d_div_denominator);
    return true;
}
static void vjp_div(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, ag_div(t, g, b), a);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, ag_neg(t, ag_mul(t, g, ag_div(t, out, b))), b);
}
/* d(a / b) = da / b - (a / b) db / b */
static ag_tensor *jvp_div(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *b = out->in[1];
    ag_tensor *r = tan[0] ? ag_div(t, tan[0], b) : NULL;
    if (tan[1])
        r = agi_jvp_sum(t, r, ag_neg(t, ag_mul(t, tan[1], ag_div(t, out, b))));
    return r;
}
static const ag_op op_div = {.name = "div", .vjp = vjp_div, .raw_vjp = raw_div, .jvp = jvp_div};
AGK_ROW2_SLICE(f_div);
ag_tensor *ag_div(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_div, "ag_div", a, b, f_div);
}

/* a ^ b: d/da = b a^(b-1), d/db = a^b log a (taken as 0 where a <= 0) */
static double f_pow(double a, double b) { return pow(a, b); }
static void vjp_pow(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (agi_needs_grad(out, 0)) {
        ag_tensor *bm1 = ag_sub(t, b, agi_const_like(t, b, 1.0));
        gin[0] = agi_unbroadcast(t, ag_mul(t, g, ag_mul(t, b, ag_pow(t, a, bm1))), a);
    }
    if (agi_needs_grad(out, 1)) {
        ag_tensor *zero = agi_const_like(t, a, 0.0);
        ag_tensor *pos = ag_gt(t, a, zero);
        ag_tensor *loga = ag_where(t, pos, ag_log(t, ag_where(t, pos, a, agi_const_like(t, a, 1.0))),
                                   zero);
        gin[1] = agi_unbroadcast(t, ag_mul(t, g, ag_mul(t, out, loga)), b);
    }
}
static ag_tensor *jvp_pow(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *a = out->in[0], *b = out->in[1], *r = NULL;
    if (tan[0]) {
        ag_tensor *bm1 = ag_sub(t, b, agi_const_like(t, b, 1.0));
        r = ag_mul(t, tan[0], ag_mul(t, b, ag_pow(t, a, bm1)));
    }
    if (tan[1]) {
        ag_tensor *zero = agi_const_like(t, a, 0.0);
        ag_tensor *pos = ag_gt(t, a, zero);
        ag_tensor *loga = ag_where(t, pos, ag_log(t, ag_where(t, pos, a, agi_const_like(t, a, 1.0))),
                                   zero);
        r = agi_jvp_sum(t, r, ag_mul(t, tan[1], ag_mul(t, out, loga)));
    }
    return r;
}
static const ag_op op_pow = {.name = "pow", .vjp = vjp_pow, .jvp = jvp_pow};
AGK_ROW2_SLICE(f_pow);
ag_tensor *ag_pow(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_pow, "ag_pow", a, b, f_pow);
}

/* Comparisons: 0/1 masks without gradient. */
static double f_gt(double a, double b) { return a > b; }
static double f_ge(double a, double b) { return a >= b; }
static double f_lt(double a, double b) { return a < b; }
static double f_le(double a, double b) { return a <= b; }
static double f_eq(double a, double b) { return a == b; }
static const ag_op op_gt = {.name = "gt"}, op_ge = {.name = "ge"}, op_lt = {.name = "lt"},
                   op_le = {.name = "le"}, op_eq = {.name = "eq"};
AGK_ROW2_SLICE(f_gt);
ag_tensor *ag_gt(ag_tape *t, ag_tensor *a, ag_tensor *b) { return binary(t, &op_gt, "ag_gt", a, b, f_gt); }
AGK_ROW2_SLICE(f_ge);
ag_tensor *ag_ge(ag_tape *t, ag_tensor *a, ag_tensor *b) { return binary(t, &op_ge, "ag_ge", a, b, f_ge); }
AGK_ROW2_SLICE(f_lt);
ag_tensor *ag_lt(ag_tape *t, ag_tensor *a, ag_tensor *b) { return binary(t, &op_lt, "ag_lt", a, b, f_lt); }
AGK_ROW2_SLICE(f_le);
ag_tensor *ag_le(ag_tape *t, ag_tensor *a, ag_tensor *b) { return binary(t, &op_le, "ag_le", a, b, f_le); }
AGK_ROW2_SLICE(f_eq);
ag_tensor *ag_eq(ag_tape *t, ag_tensor *a, ag_tensor *b) { return binary(t, &op_eq, "ag_eq", a, b, f_eq); }

/* The share of the gradient that flows to the first input of maximum or
** minimum: 1 where it wins, 1/2 on ties, NaN where either is NaN (the
** result is NaN: so is its derivative). A constant, without gradient. */
static double f_share_max(double a, double b) { return a > b ? 1.0 : a < b ? 0.0 : a == b ? 0.5 : a + b; }
static double f_share_min(double a, double b) { return a < b ? 1.0 : a > b ? 0.0 : a == b ? 0.5 : a + b; }
static const ag_op op_share = {.name = "share"};
AGK_ROW2_SLICE(f_share_max);
AGK_ROW2_SLICE(f_share_min);
static ag_tensor *winner_share(ag_tape *t, ag_tensor *a, ag_tensor *b, bool maximum)
{
    return maximum ? binary(t, &op_share, "share", a, b, f_share_max)
                   : binary(t, &op_share, "share", a, b, f_share_min);
}

/* Each input's tangent weighted by its share, as the vjp weights g. */
static ag_tensor *jvp_extremum(ag_tape *t, ag_tensor *out, ag_tensor *const *tan, bool maximum)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    return agi_jvp_sum(t, tan[0] ? ag_mul(t, tan[0], winner_share(t, a, b, maximum)) : NULL,
                       tan[1] ? ag_mul(t, tan[1], winner_share(t, b, a, maximum)) : NULL);
}
static ag_tensor *jvp_maximum(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return jvp_extremum(t, out, tan, true);
}
static ag_tensor *jvp_minimum(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return jvp_extremum(t, out, tan, false);
}

static void vjp_extremum(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin, bool maximum)
{
    ag_tensor *a = out->in[0], *b = out->in[1];
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, ag_mul(t, g, winner_share(t, a, b, maximum)), a);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, ag_mul(t, g, winner_share(t, b, a, maximum)), b);
}

/* max(a, b) elementwise, NaN where either is (a NaN a fails the compare) */
static double f_maximum(double a, double b) { return a >= b || a != a ? a : b; }
static void vjp_maximum(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    vjp_extremum(t, out, g, gin, true);
}
static const ag_op op_maximum = {.name = "maximum", .vjp = vjp_maximum, .jvp = jvp_maximum};
AGK_ROW2_SLICE(f_maximum);
ag_tensor *ag_maximum(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_maximum, "ag_maximum", a, b, f_maximum);
}

/* min(a, b) elementwise, NaN where either is */
static double f_minimum(double a, double b) { return a <= b || a != a ? a : b; }
static void vjp_minimum(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    vjp_extremum(t, out, g, gin, false);
}
static const ag_op op_minimum = {.name = "minimum", .vjp = vjp_minimum, .jvp = jvp_minimum};
AGK_ROW2_SLICE(f_minimum);
ag_tensor *ag_minimum(ag_tape *t, ag_tensor *a, ag_tensor *b)
{
    return binary(t, &op_minimum, "ag_minimum", a, b, f_minimum);
}

/* mask ? a : b: the gradient goes to a where mask holds, to b elsewhere. */
static void vjp_where(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *mask = out->in[0], *zero = agi_const_like(t, g, 0.0);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, ag_where(t, mask, g, zero), out->in[1]);
    if (agi_needs_grad(out, 2))
        gin[2] = agi_unbroadcast(t, ag_where(t, mask, zero, g), out->in[2]);
}
/* The mask is a constant: its tangent, if any, is ignored. */
static ag_tensor *jvp_where(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    if (!tan[1] && !tan[2])
        return NULL;
    ag_tensor *zero = agi_const_like(t, out, 0.0);
    return ag_where(t, out->in[0], tan[1] ? tan[1] : zero, tan[2] ? tan[2] : zero);
}
static const ag_op op_where = {.name = "where", .vjp = vjp_where, .jvp = jvp_where};
ag_tensor *ag_where(ag_tape *t, ag_tensor *mask, ag_tensor *a, ag_tensor *b)
{
    ag_tensor *in[3] = {mask, a, b};
    if (!agi_check_inputs(t, "ag_where", 3, in, true))
        return agi_nil(t);
    int rank;
    int64_t shape[AG_MAX_DIMS];
    if (!agi_broadcast_shape(mask->rank, mask->shape, a->rank, a->shape, &rank, shape) ||
        !agi_broadcast_shape(rank, shape, b->rank, b->shape, &rank, shape))
        return agi_error(t, AG_ESHAPE, "ag_where: shapes %s, %s and %s do not broadcast",
                         agi_shp(mask, 0), agi_shp(a, 1), agi_shp(b, 2));
    /* The mask gets no gradient: the vjp leaves gin[0] empty. */
    ag_tensor *out = agi_new(t, &op_where, 3, in, (ag_dtype)a->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    int64_t sm[AG_MAX_DIMS], sa[AG_MAX_DIMS], sb[AG_MAX_DIMS], idx[AG_MAX_DIMS] = {0};
    agi_broadcast_strides(mask, rank, shape, sm);
    agi_broadcast_strides(a, rank, shape, sa);
    agi_broadcast_strides(b, rank, shape, sb);
    int64_t om = 0, oa = 0, ob = 0;
    for (int64_t i = 0; i < out->numel; i++) {
        agi_set(out, i, agi_get(mask, om) != 0 ? agi_get(a, oa) : agi_get(b, ob));
        for (int d = rank - 1; d >= 0; d--) {
            om += sm[d], oa += sa[d], ob += sb[d];
            if (++idx[d] < shape[d])
                break;
            om -= sm[d] * shape[d], oa -= sa[d] * shape[d], ob -= sb[d] * shape[d];
            idx[d] = 0;
        }
    }
    return out;
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_binary[] = {
    &op_add, &op_sub, &op_mul, &op_div, &op_pow, &op_maximum, &op_minimum, &op_where, NULL
};
