/*
** ops_special.c: elementwise special functions of libm (erf, atan, log1p,
** expm1, and the two-argument atan2 with NumPy broadcasting). The forward is
** libm's function mapped by the kernels; each vjp is the derivative written
** with the library's ops, so it differentiates again.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <math.h>

/* out = f(x) elementwise, through the kernels as ops_unary.c's ops are:
** the slice function on the pool for a large tensor, else on this thread. */
AGK_INLINE ag_tensor *special_unary_with(ag_tape *t, const ag_op *op, const char *who,
                                         ag_tensor *x, agk_fn1 f, ag_range_fn slice)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    ag_tensor *out = x->rank == 0 ? agi_new_scalar(t, op, 1, &x, (ag_dtype)x->dtype)
                                  : agi_new(t, op, 1, &x, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    if (x->numel >= AGK_PARALLEL_MIN) {
        agk_slice_job j = {.dt = (ag_dtype)x->dtype, .a = x->value, .out = out->value};
        ag_pool_for(t->pool, x->numel, AGK_GRAIN, slice, &j);
    } else {
        agk_map1((ag_dtype)x->dtype, x->numel, x->value, out->value, f, NULL);
    }
    return out;
}
/* Each formula f has its slice function f_slice1 (kernels.h), defined next to it. */
#define special_unary(t, op, who, x, f) special_unary_with(t, op, who, x, f, f##_slice1)

/* erf x: d/dx = 2/sqrt(pi) e^(-x^2) */
static double f_erf(double x, const double *p) { (void)p; return erf(x); }
static void vjp_erf(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0];
    ag_tensor *bell = ag_exp(t, ag_neg(t, ag_square(t, x)));
    gin[0] = ag_mul(t, g, ag_mul_scalar(t, bell, 1.12837916709551257390));   /* 2/sqrt(pi) */
}
static const ag_op op_erf = {.name = "erf", .vjp = vjp_erf, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_erf);
ag_tensor *ag_erf(ag_tape *t, ag_tensor *x) { return special_unary(t, &op_erf, "ag_erf", x, f_erf); }

/* atan x: d/dx = 1 / (1 + x^2) */
static double f_atan(double x, const double *p) { (void)p; return atan(x); }
static void vjp_atan(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_div(t, g, ag_add_scalar(t, ag_square(t, out->in[0]), 1.0));
}
static const ag_op op_atan = {.name = "atan", .vjp = vjp_atan, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_atan);
ag_tensor *ag_atan(ag_tape *t, ag_tensor *x)
{
    return special_unary(t, &op_atan, "ag_atan", x, f_atan);
}

/* log(1 + x), accurate for tiny x where 1 + x rounds: d/dx = 1 / (1 + x) */
static double f_log1p(double x, const double *p) { (void)p; return log1p(x); }
static void vjp_log1p(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_div(t, g, ag_add_scalar(t, out->in[0], 1.0));
}
static const ag_op op_log1p = {.name = "log1p", .vjp = vjp_log1p, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_log1p);
ag_tensor *ag_log1p(ag_tape *t, ag_tensor *x)
{
    return special_unary(t, &op_log1p, "ag_log1p", x, f_log1p);
}

/* e^x - 1, accurate for tiny x: d/dx = e^x. Not out + 1, which is the same
** function but rounds to 0 for x below about -37 (f64), where e^x is not. */
static double f_expm1(double x, const double *p) { (void)p; return expm1(x); }
static void vjp_expm1(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, ag_exp(t, out->in[0]));
}
static const ag_op op_expm1 = {.name = "expm1", .vjp = vjp_expm1, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_expm1);
ag_tensor *ag_expm1(ag_tape *t, ag_tensor *x)
{
    return special_unary(t, &op_expm1, "ag_expm1", x, f_expm1);
}

/* atan2(y, x), the angle of the point (x, y) in (-pi, pi], as C's:
** d/dy = x / (x^2 + y^2), d/dx = -y / (x^2 + y^2). At the origin both are
** 0/0 = NaN, as the formula gives. */
static double f_atan2(double y, double x) { return atan2(y, x); }
static void vjp_atan2(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *y = out->in[0], *x = out->in[1];
    ag_tensor *g_r2 = ag_div(t, g, ag_add(t, ag_square(t, x), ag_square(t, y)));
    if (agi_needs_grad(out, 0))
        gin[0] = agi_unbroadcast(t, ag_mul(t, g_r2, x), y);
    if (agi_needs_grad(out, 1))
        gin[1] = agi_unbroadcast(t, ag_neg(t, ag_mul(t, g_r2, y)), x);
}
/* d atan2(y, x) = (x dy - y dx) / (x^2 + y^2), broadcast as the result */
static ag_tensor *jvp_atan2(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    ag_tensor *y = out->in[0], *x = out->in[1];
    ag_tensor *num = tan[0] ? ag_mul(t, tan[0], x) : NULL;
    if (tan[1])
        num = num ? ag_sub(t, num, ag_mul(t, tan[1], y)) : ag_neg(t, ag_mul(t, tan[1], y));
    return ag_div(t, num, ag_add(t, ag_square(t, x), ag_square(t, y)));
}
static const ag_op op_atan2 = {.name = "atan2", .vjp = vjp_atan2, .jvp = jvp_atan2};
AGK_ROW2_SLICE(f_atan2);
ag_tensor *ag_atan2(ag_tape *t, ag_tensor *y, ag_tensor *x)
{
    ag_tensor *in[2] = {y, x};
    if (!agi_check_inputs(t, "ag_atan2", 2, in, true))
        return agi_nil(t);
    int rank;
    int64_t shape[AG_MAX_DIMS];
    if (!agi_broadcast_shape(y->rank, y->shape, x->rank, x->shape, &rank, shape))
        return agi_error(t, AG_ESHAPE, "ag_atan2: shapes %s (y) and %s (x) do not broadcast",
                         agi_shp(y, 0), agi_shp(x, 1));
    ag_tensor *out = agi_new(t, &op_atan2, 2, in, (ag_dtype)y->dtype, rank, shape);
    if (out->flags & AGI_NIL)
        return out;
    int64_t sy[AG_MAX_DIMS], sx[AG_MAX_DIMS], fy, fx;
    agi_broadcast_strides(y, rank, shape, sy);
    agi_broadcast_strides(x, rank, shape, sx);
    if (rank == 0) {
        agk_row2((ag_dtype)y->dtype, 1, y->value, 0, x->value, 0, out->value, f_atan2);
    } else if (out->numel >= AGK_PARALLEL_MIN && agk_flat2(rank, shape, sy, sx, &fy, &fx)) {
        agk_slice_job j = {.dt = (ag_dtype)y->dtype, .a = y->value, .b = x->value, .sa = fy,
                           .sb = fx, .out = out->value};
        ag_pool_for(t->pool, out->numel, AGK_GRAIN, f_atan2_slice2, &j);
    } else {
        agk_map2((ag_dtype)y->dtype, rank, shape, y->value, sy, x->value, sx, out->value, f_atan2);
    }
    return out;
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_special[] = {
    &op_erf, &op_atan, &op_log1p, &op_expm1, &op_atan2, NULL
};
