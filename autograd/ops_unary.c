/*
** ops_unary.c: elementwise functions of one tensor. Each forward is a scalar
** function mapped by the kernels; each vjp is the derivative written with
** the library's ops, so it can be differentiated again.
*/
#include "internal.h"
#include "kernels/activation.h"
#include "kernels/kernels.h"

#include <math.h>

/* out = f(x) elementwise, with up to two constants kept in out->attr.s. */
AGK_INLINE ag_tensor *unary_with(ag_tape *t, const ag_op *op, const char *who, ag_tensor *x,
                                 agk_fn1 f, ag_range_fn slice, double p0, double p1)
{
    if (!agi_check_inputs(t, who, 1, &x, false))
        return agi_nil(t);
    ag_tensor *out = x->rank == 0 ? agi_new_scalar(t, op, 1, &x, (ag_dtype)x->dtype)
                                  : agi_new(t, op, 1, &x, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.s[0] = p0;
    out->attr.s[1] = p1;
    if (x->numel > 1) {
        /* The slice function even on one thread: it may be vectorised. */
        agk_slice_job j = {.dt = (ag_dtype)x->dtype, .a = x->value, .out = out->value,
                           .p = out->attr.s};
        if (x->numel >= AGK_PARALLEL_MIN)
            ag_pool_for(t->pool, x->numel, AGK_GRAIN, slice, &j);
        else
            slice(&j, 0, x->numel);
    } else {
        agk_map1((ag_dtype)x->dtype, x->numel, x->value, out->value, f, out->attr.s);
    }
    return out;
}
/* Each formula f has its slice function f_slice1 (kernels.h), defined next to it. */
#define unary(t, op, who, x, f, p0, p1) unary_with(t, op, who, x, f, f##_slice1, p0, p1)

/* A raw vjp (internal.h): adds f(g, a) elementwise into the input's
** gradient, where 'a' is the output or the input as the formula needs, and
** the op's constants reach f as p. Each formula below rounds where its vjp
** makes a separate op, so both paths give the same bits. */
AGK_INLINE bool raw_unary_with(ag_tape *t, ag_tensor *out, const ag_tensor *g,
                               const ag_tensor *a, agk_grad_fn f, ag_range_fn slice)
{
    bool fresh;
    void *dst = agi_grad_slot(t, out->in[0], &fresh);
    if (!dst)
        return true;
    if (out->numel >= AGK_PARALLEL_MIN) {
        agk_slice_job j = {.dt = (ag_dtype)out->dtype, .a = g->value, .b = a->value,
                           .out = dst, .fresh = fresh, .p = out->attr.s};
        ag_pool_for(t->pool, out->numel, AGK_GRAIN, slice, &j);
    } else {
        agk_grad_map((ag_dtype)out->dtype, out->numel, dst, fresh, g->value, a->value, NULL, f,
                     out->attr.s);
    }
    return true;
}
#define raw_unary(t, out, g, a, f) raw_unary_with(t, out, g, a, f, f##_slice_grad)

static ag_tensor *one_like(ag_tape *t, const ag_tensor *x) { return agi_const_like(t, x, 1.0); }

/* -x */
static double f_neg(double x, const double *p) { (void)p; return -x; }
AGK_GRAD_SLICE(agk_grad_neg);
static int raw_neg(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    return raw_unary(t, out, g, out, agk_grad_neg);
}
static void vjp_neg(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)out;
    gin[0] = ag_neg(t, g);
}
static const ag_op op_neg = {
    .name = "neg", .vjp = vjp_neg, .raw_vjp = raw_neg, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_neg);
ag_tensor *ag_neg(ag_tape *t, ag_tensor *x) { return unary(t, &op_neg, "ag_neg", x, f_neg, 0, 0); }

/* e^x: d/dx = e^x = out */
static double f_exp(double x, const double *p) { (void)p; return exp(x); }
static double d_exp(double g, double out, double b, const double *p, bool f32)
{
    (void)b, (void)p;
    return agk_round(g * out, f32);
}
AGK_GRAD_SLICE(d_exp);
static int raw_exp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    return raw_unary(t, out, g, out, d_exp);
}
static void vjp_exp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, out);
}
static const ag_op op_exp = {
    .name = "exp", .vjp = vjp_exp, .raw_vjp = raw_exp, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_exp);
ag_tensor *ag_exp(ag_tape *t, ag_tensor *x) { return unary(t, &op_exp, "ag_exp", x, f_exp, 0, 0); }

/* log x: d/dx = 1/x */
static double f_log(double x, const double *p) { (void)p; return log(x); }
static double d_log(double g, double x, double b, const double *p, bool f32)
{
    (void)b, (void)p;
    return agk_round(g / x, f32);
}
AGK_GRAD_SLICE(d_log);
static int raw_log(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    return raw_unary(t, out, g, out->in[0], d_log);
}
static void vjp_log(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_div(t, g, out->in[0]);
}
static const ag_op op_log = {
    .name = "log", .vjp = vjp_log, .raw_vjp = raw_log, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_log);
ag_tensor *ag_log(ag_tape *t, ag_tensor *x) { return unary(t, &op_log, "ag_log", x, f_log, 0, 0); }

/* sqrt x: d/dx = 1 / (2 sqrt x) */
static double f_sqrt(double x, const double *p) { (void)p; return sqrt(x); }
static void vjp_sqrt(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_div(t, g, ag_mul_scalar(t, out, 2.0));
}
static const ag_op op_sqrt = {.name = "sqrt", .vjp = vjp_sqrt, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_sqrt);
ag_tensor *ag_sqrt(ag_tape *t, ag_tensor *x) { return unary(t, &op_sqrt, "ag_sqrt", x, f_sqrt, 0, 0); }

/* sign x, without gradient; NaN stays NaN (as NumPy's), so |x|'s gradient does too */
static double f_sign(double x, const double *p)
{
    (void)p;
    return x > 0 ? 1.0 : x < 0 ? -1.0 : x == x ? 0.0 : x;
}
static const ag_op op_sign = {.name = "sign"};
AGK_MAP1_SLICE(f_sign);
ag_tensor *ag_sign(ag_tape *t, ag_tensor *x) { return unary(t, &op_sign, "ag_sign", x, f_sign, 0, 0); }

/* |x|: d/dx = sign x */
static double f_abs(double x, const double *p) { (void)p; return fabs(x); }
static void vjp_abs(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, ag_sign(t, out->in[0]));
}
static const ag_op op_abs = {.name = "abs", .vjp = vjp_abs, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_abs);
ag_tensor *ag_abs(ag_tape *t, ag_tensor *x) { return unary(t, &op_abs, "ag_abs", x, f_abs, 0, 0); }

/* sin x: d/dx = cos x */
static double f_sin(double x, const double *p) { (void)p; return sin(x); }
static void vjp_sin(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, ag_cos(t, out->in[0]));
}
static const ag_op op_sin = {.name = "sin", .vjp = vjp_sin, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_sin);
ag_tensor *ag_sin(ag_tape *t, ag_tensor *x) { return unary(t, &op_sin, "ag_sin", x, f_sin, 0, 0); }

/* cos x: d/dx = -sin x */
static double f_cos(double x, const double *p) { (void)p; return cos(x); }
static void vjp_cos(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_neg(t, ag_mul(t, g, ag_sin(t, out->in[0])));
}
static const ag_op op_cos = {.name = "cos", .vjp = vjp_cos, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_cos);
ag_tensor *ag_cos(ag_tape *t, ag_tensor *x) { return unary(t, &op_cos, "ag_cos", x, f_cos, 0, 0); }

/* tanh x: d/dx = 1 - tanh^2 x */
static double f_tanh(double x, const double *p) { (void)p; return tanh(x); }
static double d_tanh(double g, double out, double b, const double *p, bool f32)
{
    (void)b, (void)p;
    return agk_round(g * agk_round(1.0 - agk_round(out * out, f32), f32), f32);
}
AGK_GRAD_SLICE(d_tanh);
static int raw_tanh(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    return raw_unary(t, out, g, out, d_tanh);
}
static void vjp_tanh(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, ag_sub(t, one_like(t, out), ag_mul(t, out, out)));
}
static const ag_op op_tanh = {
    .name = "tanh", .vjp = vjp_tanh, .raw_vjp = raw_tanh, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_tanh);
ag_tensor *ag_tanh(ag_tape *t, ag_tensor *x) { return unary(t, &op_tanh, "ag_tanh", x, f_tanh, 0, 0); }

/* sigmoid x = 1 / (1 + e^-x): d/dx = s (1 - s). Both branches avoid overflow. */
static double f_sigmoid(double x, const double *p)
{
    (void)p;
    return agk_sigmoid(x);   /* the fused dense layer's too: the same bits */
}
static double d_sigmoid(double g, double out, double b, const double *p, bool f32)
{
    (void)b, (void)p;
    return agk_round(g * agk_round(out * agk_round(1.0 - out, f32), f32), f32);
}
AGK_GRAD_SLICE(d_sigmoid);
static int raw_sigmoid(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    return raw_unary(t, out, g, out, d_sigmoid);
}
static void vjp_sigmoid(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, ag_mul(t, out, ag_sub(t, one_like(t, out), out)));
}
static const ag_op op_sigmoid = {
    .name = "sigmoid", .vjp = vjp_sigmoid, .raw_vjp = raw_sigmoid, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE_VEC(f_sigmoid);
ag_tensor *ag_sigmoid(ag_tape *t, ag_tensor *x)
{
    return unary(t, &op_sigmoid, "ag_sigmoid", x, f_sigmoid, 0, 0);
}

/* agi_step (internal.h): relu's and leaky relu's derivative, a constant. */
static double f_step(double x, const double *p) { return agk_step(x, p[0]); }
static const ag_op op_step = {.name = "step"};
AGK_MAP1_SLICE(f_step);
ag_tensor *agi_step(ag_tape *t, ag_tensor *x, double below)
{
    return unary(t, &op_step, "step", x, f_step, below, 0);
}

/* max(x, 0), NaN for NaN: d/dx = [x > 0] (NaN for NaN) */
static double f_relu(double x, const double *p) { (void)p; return agk_relu(x); }
/* The raw vjp, g * step(x) over a slice in the dtype itself, a loop the
** compiler vectorises: g times 1, a zero of g's sign (NaN for an infinite
** g) or x's NaN is exact in either dtype, so the bits are those of the vjp's
** mul (agk_grad_map's call per element cost the convolutional network's
** ReLUs more than the arithmetic). Job as AGK_GRAD_SLICE's: a = g, b = x. */
AGK_SIMD_CLONES static void relu_grad_slice(void *ctx, int64_t begin, int64_t end)
{
    const agk_slice_job *j = ctx;
    int64_t n = end - begin;
    if (j->dt == AG_F32) {
        const float *restrict g = (const float *)j->a + begin, *restrict x = (const float *)j->b + begin;
        float *restrict d = (float *)j->out + begin;
        if (j->fresh)
            for (int64_t i = 0; i < n; i++)
                d[i] = g[i] * agk_step_f(x[i]);
        else
            for (int64_t i = 0; i < n; i++)
                d[i] += g[i] * agk_step_f(x[i]);
    } else {
        const double *restrict g = (const double *)j->a + begin, *restrict x = (const double *)j->b + begin;
        double *restrict d = (double *)j->out + begin;
        if (j->fresh)
            for (int64_t i = 0; i < n; i++)
                d[i] = g[i] * agk_step(x[i], 0.0);
        else
            for (int64_t i = 0; i < n; i++)
                d[i] += g[i] * agk_step(x[i], 0.0);
    }
}
static int raw_relu(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    bool fresh;
    void *dst = agi_grad_slot(t, out->in[0], &fresh);
    if (!dst)
        return true;
    agk_slice_job j = {.dt = (ag_dtype)out->dtype, .a = g->value, .b = out->in[0]->value,
                       .out = dst, .fresh = fresh};
    if (out->numel >= AGK_PARALLEL_MIN)
        ag_pool_for(t->pool, out->numel, AGK_GRAIN, relu_grad_slice, &j);
    else
        relu_grad_slice(&j, 0, out->numel);
    return true;
}
static void vjp_relu(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, agi_step(t, out->in[0], 0.0));
}
static const ag_op op_relu = {
    .name = "relu", .vjp = vjp_relu, .raw_vjp = raw_relu, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE_VEC(f_relu);
ag_tensor *ag_relu(ag_tape *t, ag_tensor *x) { return unary(t, &op_relu, "ag_relu", x, f_relu, 0, 0); }

/* x > 0 ? x : slope x */
static double f_leaky(double x, const double *p) { return x > 0 ? x : p[0] * x; }
static void vjp_leaky(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, agi_step(t, out->in[0], out->attr.s[0]));
}
static const ag_op op_leaky_relu = {
    .name = "leaky_relu", .vjp = vjp_leaky, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_leaky);
ag_tensor *ag_leaky_relu(ag_tape *t, ag_tensor *x, double slope)
{
    return unary(t, &op_leaky_relu, "ag_leaky_relu", x, f_leaky, slope, 0);
}

/* gelu x = x/2 (1 + tanh u), u = c (x + k x^3), c = sqrt(2/pi), k = 0.044715:
** d/dx = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) c (1 + 3k x^2) */
static const double GELU_C = 0.79788456080286535588, GELU_K = 0.044715;
static double f_gelu(double x, const double *p)
{
    (void)p;
    return 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_K * x * x * x)));
}
static void vjp_gelu(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0], *one = one_like(t, x);
    ag_tensor *x2 = ag_mul(t, x, x);
    ag_tensor *u = ag_mul_scalar(t, ag_add(t, x, ag_mul_scalar(t, ag_mul(t, x2, x), GELU_K)), GELU_C);
    ag_tensor *th = ag_tanh(t, u);
    ag_tensor *left = ag_mul_scalar(t, ag_add(t, one, th), 0.5);
    ag_tensor *du = ag_mul_scalar(t, ag_add(t, one, ag_mul_scalar(t, x2, 3.0 * GELU_K)), GELU_C);
    ag_tensor *right = ag_mul(t, ag_mul_scalar(t, x, 0.5),
                              ag_mul(t, ag_sub(t, one, ag_mul(t, th, th)), du));
    gin[0] = ag_mul(t, g, ag_add(t, left, right));
}
static const ag_op op_gelu = {.name = "gelu", .vjp = vjp_gelu, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_gelu);
ag_tensor *ag_gelu(ag_tape *t, ag_tensor *x) { return unary(t, &op_gelu, "ag_gelu", x, f_gelu, 0, 0); }

/* log(1 + e^x), as max(x, 0) + log1p(e^-|x|) so it never overflows: d/dx = sigmoid x */
static double f_softplus(double x, const double *p)
{
    (void)p;
    return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
}
static void vjp_softplus(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = ag_mul(t, g, ag_sigmoid(t, out->in[0]));
}
static const ag_op op_softplus = {
    .name = "softplus", .vjp = vjp_softplus, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_softplus);
ag_tensor *ag_softplus(ag_tape *t, ag_tensor *x)
{
    return unary(t, &op_softplus, "ag_softplus", x, f_softplus, 0, 0);
}

/* clamp's derivative, a constant: 1 on [p0, p1], 0 outside, NaN for NaN */
static double f_inside(double x, const double *p)
{
    return x < p[0] || x > p[1] ? 0.0 : x == x ? 1.0 : x;
}
static const ag_op op_inside = {.name = "inside"};
AGK_MAP1_SLICE(f_inside);

/* min(max(x, lo), hi), NaN for NaN: d/dx = [lo <= x <= hi] (NaN for NaN) */
static double f_clamp(double x, const double *p) { return x < p[0] ? p[0] : x > p[1] ? p[1] : x; }
static void vjp_clamp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    ag_tensor *x = out->in[0];
    /* The bounds as the dtype holds them, as constants of x's dtype compare. */
    bool f32 = x->dtype == AG_F32;
    double lo = agk_round(out->attr.s[0], f32), hi = agk_round(out->attr.s[1], f32);
    gin[0] = ag_mul(t, g, unary(t, &op_inside, "inside", x, f_inside, lo, hi));
}
static const ag_op op_clamp = {.name = "clamp", .vjp = vjp_clamp, .jvp = agi_jvp_diagonal};
AGK_MAP1_SLICE(f_clamp);
ag_tensor *ag_clamp(ag_tape *t, ag_tensor *x, double lo, double hi)
{
    if (t && t->status == AG_OK && !(lo <= hi))
        return agi_error(t, AG_EINVAL, "ag_clamp: lower bound %g is above upper bound %g", lo, hi);
    return unary(t, &op_clamp, "ag_clamp", x, f_clamp, lo, hi);
}

/* x^p for a constant p: d/dx = p x^(p-1) */
static double f_pow_scalar(double x, const double *p)
{
    if (p[0] == 2.0)
        return x * x;
    return pow(x, p[0]);
}
/* p == 0 and p == 1 are left to the vjp (rare, and p == 1 shares g). */
static double d_square(double g, double x, double b, const double *p, bool f32)
{
    (void)b, (void)p;
    return agk_round(g * agk_round(x * 2.0, f32), f32);
}
AGK_MAP1_SLICE(f_pow_scalar);
static double d_pow_scalar(double g, double x, double b, const double *p, bool f32)
{
    (void)b;
    double q = p[0] - 1.0;
    double pw = agk_round(f_pow_scalar(x, &q), f32);
    return agk_round(g * agk_round(pw * agk_round(p[0], f32), f32), f32);
}
AGK_GRAD_SLICE(d_square);
AGK_GRAD_SLICE(d_pow_scalar);
static int raw_pow_scalar(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)gin;
    double p = out->attr.s[0];
    if (p == 0.0 || p == 1.0)
        return false;
    if (p == 2.0)
        return raw_unary(t, out, g, out->in[0], d_square);
    return raw_unary(t, out, g, out->in[0], d_pow_scalar);
}
static void vjp_pow_scalar(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    double p = out->attr.s[0];
    ag_tensor *x = out->in[0];
    if (p == 0.0)
        gin[0] = ag_mul_scalar(t, g, 0.0);
    else if (p == 1.0)
        gin[0] = g;
    else if (p == 2.0)
        gin[0] = ag_mul(t, g, ag_mul_scalar(t, x, 2.0));
    else
        gin[0] = ag_mul(t, g, ag_mul_scalar(t, ag_pow_scalar(t, x, p - 1.0), p));
}
static const ag_op op_pow_scalar = {
    .name = "pow_scalar", .vjp = vjp_pow_scalar, .jvp = agi_jvp_diagonal, .raw_vjp = raw_pow_scalar};
ag_tensor *ag_pow_scalar(ag_tape *t, ag_tensor *x, double p)
{
    return unary(t, &op_pow_scalar, "ag_pow_scalar", x, f_pow_scalar, p, 0);
}

ag_tensor *ag_square(ag_tape *t, ag_tensor *x) { return ag_pow_scalar(t, x, 2.0); }

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_unary[] = {
    &op_neg, &op_exp, &op_log, &op_sqrt, &op_abs, &op_sin, &op_cos, &op_tanh, &op_sigmoid,
    &op_relu, &op_leaky_relu, &op_gelu, &op_softplus, &op_clamp, &op_pow_scalar, NULL
};
