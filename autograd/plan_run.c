/*
** plan_run.c: the interpreter of a plan (plan_internal.h): one loop over the
** instructions forward, one backward, with the scalar f64 ops inline in the
** switch and every other op in a kernel of its own. Nothing here allocates
** or records.
**
** Values follow the ops' own formulas (each computes in double and rounds
** once to the result's dtype), so a plan's forward values are the tape's,
** bit for bit where the op is elementwise. Adjoints are accumulated in
** double with the formulas of the ops' VJPs; they match a backward through
** the tape to rounding (sums may be taken in another order, and an f32
** tape rounds every intermediate gradient to float where the plan does not).
**
** Backward adds an op's adjoint into each of its inputs, constants
** included: a constant's adjoint is never read, and the test for it would
** cost more than the add.
*/
#include "plan_internal.h"
#include "kernels/activation.h"

#include <math.h>
#include <string.h>

static const double GELU_C = 0.79788456080286535588, GELU_K = 0.044715;
static const double TWO_OVER_SQRT_PI = 1.12837916709551257390;

static inline double rnd(double v, bool f32) { return f32 ? (double)(float)v : v; }
static inline double sign_of(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x == x ? 0.0 : x; }
static inline double inside(double x, double lo, double hi)
{
    return x < lo || x > hi ? 0.0 : x == x ? 1.0 : x;
}
static inline double share_max(double a, double b)
{
    return a > b ? 1.0 : a < b ? 0.0 : a == b ? 0.5 : a + b;
}
static inline double share_min(double a, double b)
{
    return a < b ? 1.0 : a > b ? 0.0 : a == b ? 0.5 : a + b;
}

/* ---------------------------------------------------- elementwise, unary */

AGK_INLINE double unary_value(int code, double x, const double *s)
{
    switch (code) {
    case AGP_NEG: return -x;
    case AGP_EXP: return exp(x);
    case AGP_LOG: return log(x);
    case AGP_SQRT: return sqrt(x);
    case AGP_ABS: return fabs(x);
    case AGP_SIGN: return sign_of(x);
    case AGP_SIN: return sin(x);
    case AGP_COS: return cos(x);
    case AGP_TANH: return tanh(x);
    case AGP_SIGMOID: return agk_sigmoid(x);
    case AGP_RELU: return agk_relu(x);
    case AGP_LEAKY_RELU: return x > 0 ? x : s[0] * x;
    case AGP_GELU: return 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_K * x * x * x)));
    case AGP_SOFTPLUS: return (x > 0 ? x : 0.0) + log1p(exp(-fabs(x)));
    case AGP_CLAMP: return x < s[0] ? s[0] : x > s[1] ? s[1] : x;
    case AGP_POW_SCALAR: return s[0] == 2.0 ? x * x : pow(x, s[0]);
    case AGP_ERF: return erf(x);
    case AGP_ATAN: return atan(x);
    case AGP_LOG1P: return log1p(x);
    case AGP_EXPM1: return expm1(x);
    case AGP_STEP: return agk_step(x, s[0]);
    case AGP_INSIDE: return inside(x, s[0], s[1]);
    default: return x;   /* AGP_COPY */
    }
}

/* d out / d x times go, given x and out = f(x) */
AGK_INLINE double unary_adjoint(int code, double go, double x, double y, const double *s)
{
    switch (code) {
    case AGP_NEG: return -go;
    case AGP_EXP: return go * y;
    case AGP_LOG: return go / x;
    case AGP_SQRT: return go / (y * 2.0);
    case AGP_ABS: return go * sign_of(x);
    case AGP_SIN: return go * cos(x);
    case AGP_COS: return -(go * sin(x));
    case AGP_TANH: return go * (1.0 - y * y);
    case AGP_SIGMOID: return go * (y * (1.0 - y));
    case AGP_RELU: return go * agk_step(x, 0.0);
    case AGP_LEAKY_RELU: return go * agk_step(x, s[0]);
    case AGP_GELU: {
        double x2 = x * x, th = tanh((x + x2 * x * GELU_K) * GELU_C);
        double left = (1.0 + th) * 0.5, du = (1.0 + x2 * (3.0 * GELU_K)) * GELU_C;
        return go * (left + x * 0.5 * ((1.0 - th * th) * du));
    }
    case AGP_SOFTPLUS: return go * agk_sigmoid(x);
    case AGP_CLAMP: return go * inside(x, s[0], s[1]);
    case AGP_POW_SCALAR:
        if (s[0] == 0.0)
            return go * 0.0;
        if (s[0] == 1.0)
            return go;
        if (s[0] == 2.0)
            return go * (x * 2.0);
        return go * (pow(x, s[0] - 1.0) * s[0]);
    case AGP_ERF: return go * (exp(-(x * x)) * TWO_OVER_SQRT_PI);
    case AGP_ATAN: return go / (x * x + 1.0);
    case AGP_LOG1P: return go / (x + 1.0);
    case AGP_EXPM1: return go * exp(x);
    case AGP_SIGN: case AGP_STEP: case AGP_INSIDE: return 0.0;   /* never recorded */
    default: return go;   /* AGP_COPY */
    }
}

static uint8_t unary_side(int code, double x, const double *s)
{
    return code == AGP_ABS ? agp_sign_code(x)
         : code == AGP_CLAMP ? agp_clamp_code(x, s[0], s[1]) : agp_relu_code(x);
}

/* Each op code of one input, for loops specialised by code: the switch on
** the code then runs once per op, not once per element. */
#define UNARY_CODES(X)                                                                        \
    X(AGP_NEG) X(AGP_EXP) X(AGP_LOG) X(AGP_SQRT) X(AGP_ABS) X(AGP_SIGN) X(AGP_SIN) X(AGP_COS) \
    X(AGP_TANH) X(AGP_SIGMOID) X(AGP_RELU) X(AGP_LEAKY_RELU) X(AGP_GELU) X(AGP_SOFTPLUS)      \
    X(AGP_CLAMP) X(AGP_POW_SCALAR) X(AGP_ERF) X(AGP_ATAN) X(AGP_LOG1P) X(AGP_EXPM1)          \
    X(AGP_STEP) X(AGP_INSIDE)

static void unary_forward(ag_plan *p, const agp_ext *e)
{
    const double *a = p->val + e->in[0], *s = e->s;
    double *o = p->val + e->out;
    int64_t n = e->n;
    bool f32 = e->f32;
    if (e->code == AGP_POW_SCALAR && s[0] == 2.0) {   /* square: no call per element */
        for (int64_t i = 0; i < n; i++)
            o[i] = rnd(a[i] * a[i], f32);
        return;
    }
    switch (e->code) {
#define UNARY_FORWARD(C)                                                                      \
    case C:                                                                                   \
        for (int64_t i = 0; i < n; i++)                                                       \
            o[i] = rnd(unary_value(C, a[i], s), f32);                                         \
        break;
    UNARY_CODES(UNARY_FORWARD)
#undef UNARY_FORWARD
    default:
        for (int64_t i = 0; i < n; i++)
            o[i] = rnd(unary_value(e->code, a[i], s), f32);
    }
    if (e->chk >= 0)
        for (int64_t i = 0; i < e->n; i++) {
            uint8_t now = unary_side(e->code, a[i], e->s), was = p->branch[e->chk + i];
            if (now != was)
                agp_changed(p, e->name, e->entry, e->index, i, was, now);
        }
}

static void unary_backward(ag_plan *p, const agp_ext *e)
{
    const double *a = p->val + e->in[0], *y = p->val + e->out, *g = p->adj + e->out;
    double *ga = p->adj + e->in[0];
    const double *s = e->s;
    int64_t n = e->n;
    if (e->code == AGP_POW_SCALAR && s[0] == 2.0) {
        for (int64_t i = 0; i < n; i++)
            ga[i] += g[i] * (a[i] * 2.0);
        return;
    }
    switch (e->code) {
#define UNARY_BACKWARD(C)                                                                     \
    case C:                                                                                   \
        for (int64_t i = 0; i < n; i++)                                                       \
            ga[i] += unary_adjoint(C, g[i], a[i], y[i], s);                                   \
        break;
    UNARY_CODES(UNARY_BACKWARD)
#undef UNARY_BACKWARD
    default:
        for (int64_t i = 0; i < n; i++)
            ga[i] += unary_adjoint(e->code, g[i], a[i], y[i], s);
    }
}

/* -------------------------------------------- elementwise, broadcast */

/* The step of input k's offset per element of the result when it is
** constant: 1 for an input of the result's size, 0 for one element; -1
** when the input broadcasts otherwise. */
static inline int64_t flat_step(const agp_ext *e, int k)
{
    if (k >= e->nin || e->in_n[k] == 1)
        return 0;
    return e->in_n[k] == e->n ? 1 : -1;
}

/* Runs BODY for each element i of the result with ia, ib, ic the offsets
** of the inputs' elements (strides from aux: shape, then one set per input).
** Inputs of the result's size or of one element (most ops) take one add
** per element instead of the walk over dims. */
#define BROADCAST(p, e, ...)                                                           \
    do {                                                                                \
        int64_t fa_ = flat_step(e, 0), fb_ = flat_step(e, 1), fc_ = flat_step(e, 2);    \
        if (fa_ == 1 && fb_ == 1 && fc_ != -1) {                                        \
            /* constant offsets: loops the compiler vectorises */                      \
            for (int64_t i = 0; i < (e)->n; i++) {                                      \
                const int64_t ia = i, ib = i, ic = fc_ ? i : 0;                         \
                (void)ic;                                                               \
                __VA_ARGS__;                                                            \
            }                                                                           \
            break;                                                                      \
        }                                                                               \
        if (fa_ == 1 && fb_ == 0 && fc_ == 0) {                                         \
            for (int64_t i = 0; i < (e)->n; i++) {                                      \
                const int64_t ia = i, ib = 0, ic = 0;                                   \
                (void)ic;                                                               \
                __VA_ARGS__;                                                            \
            }                                                                           \
            break;                                                                      \
        }                                                                               \
        if (fa_ >= 0 && fb_ >= 0 && fc_ >= 0) {                                         \
            int64_t ia = 0, ib = 0, ic = 0;                                             \
            for (int64_t i = 0; i < (e)->n; i++, ia += fa_, ib += fb_, ic += fc_) {     \
                (void)ic;                                                               \
                __VA_ARGS__;                                                            \
            }                                                                           \
            break;                                                                      \
        }                                                                               \
        int r_ = (e)->rank;                                                             \
        const int64_t *sh_ = (p)->aux + (e)->aux, *sa_ = sh_ + r_, *sb_ = sa_ + r_;     \
        const int64_t *sc_ = (e)->nin > 2 ? sb_ + r_ : sb_;                             \
        int64_t ix_[AG_MAX_DIMS] = {0}, ia = 0, ib = 0, ic = 0;                         \
        for (int64_t i = 0; i < (e)->n; i++) {                                          \
            __VA_ARGS__;                                                                \
            for (int d_ = r_ - 1; d_ >= 0; d_--) {                                      \
                ia += sa_[d_], ib += sb_[d_], ic += sc_[d_];                            \
                if (++ix_[d_] < sh_[d_])                                                \
                    break;                                                              \
                ia -= sa_[d_] * sh_[d_], ib -= sb_[d_] * sh_[d_], ic -= sc_[d_] * sh_[d_]; \
                ix_[d_] = 0;                                                            \
            }                                                                           \
        }                                                                               \
    } while (0)

AGK_INLINE double binary_value(int code, double a, double b)
{
    switch (code) {
    case AGP_ADD: return a + b;
    case AGP_SUB: return a - b;
    case AGP_MUL: return a * b;
    case AGP_DIV: return a / b;
    case AGP_POW: return pow(a, b);
    case AGP_MAXIMUM: return a >= b || a != a ? a : b;
    case AGP_MINIMUM: return a <= b || a != a ? a : b;
    case AGP_ATAN2: return atan2(a, b);
    case AGP_GT: return a > b;
    case AGP_GE: return a >= b;
    case AGP_LT: return a < b;
    case AGP_LE: return a <= b;
    default: return a == b;   /* AGP_EQ */
    }
}

static void binary_forward(ag_plan *p, const agp_ext *e)
{
    double *v = p->val, *o = v + e->out;
    const double *a = v + e->in[0], *b = v + e->in[1];
    if (e->code == AGP_WHERE) {
        const double *c = v + e->in[2];
        BROADCAST(p, e, {
            bool m = a[ia] != 0;
            o[i] = rnd(m ? b[ib] : c[ic], e->f32);
            if (m != p->branch[e->chk + i])
                agp_changed(p, e->name, e->entry, e->index, i, p->branch[e->chk + i], m);
        });
        return;
    }
    bool f32 = e->f32;
    switch (e->code) {
#define BINARY_FORWARD(C)                                                                     \
    case C:                                                                                   \
        BROADCAST(p, e, { o[i] = rnd(binary_value(C, a[ia], b[ib]), f32); });                  \
        break;
    BINARY_FORWARD(AGP_ADD) BINARY_FORWARD(AGP_SUB) BINARY_FORWARD(AGP_MUL)
    BINARY_FORWARD(AGP_DIV) BINARY_FORWARD(AGP_POW) BINARY_FORWARD(AGP_MAXIMUM)
    BINARY_FORWARD(AGP_MINIMUM) BINARY_FORWARD(AGP_ATAN2) BINARY_FORWARD(AGP_GT)
    BINARY_FORWARD(AGP_GE) BINARY_FORWARD(AGP_LT) BINARY_FORWARD(AGP_LE)
#undef BINARY_FORWARD
    default: {
        int code = e->code;
        BROADCAST(p, e, { o[i] = rnd(binary_value(code, a[ia], b[ib]), f32); });
    }
    }
    if (e->chk >= 0)
        BROADCAST(p, e, {
            uint8_t now = agp_cmp_code(a[ia], b[ib]), was = p->branch[e->chk + i];
            if (now != was)
                agp_changed(p, e->name, e->entry, e->index, i, was, now);
        });
}

static void binary_backward(ag_plan *p, const agp_ext *e)
{
    const double *v = p->val, *y = v + e->out, *g = p->adj + e->out;
    const double *a = v + e->in[0], *b = v + e->in[1];
    double *ga = p->adj + e->in[0], *gb = p->adj + e->in[1];
    switch (e->code) {
    case AGP_ADD: BROADCAST(p, e, { ga[ia] += g[i]; gb[ib] += g[i]; }); break;
    case AGP_SUB: BROADCAST(p, e, { ga[ia] += g[i]; gb[ib] -= g[i]; }); break;
    case AGP_MUL: BROADCAST(p, e, { ga[ia] += g[i] * b[ib]; gb[ib] += g[i] * a[ia]; }); break;
    case AGP_DIV:
        BROADCAST(p, e, { ga[ia] += g[i] / b[ib]; gb[ib] += -(g[i] * (y[i] / b[ib])); });
        break;
    case AGP_POW:
        BROADCAST(p, e, {
            ga[ia] += g[i] * (b[ib] * pow(a[ia], b[ib] - 1.0));
            gb[ib] += g[i] * (y[i] * (a[ia] > 0 ? log(a[ia]) : 0.0));
        });
        break;
    case AGP_MAXIMUM:
        BROADCAST(p, e, {
            ga[ia] += g[i] * share_max(a[ia], b[ib]);
            gb[ib] += g[i] * share_max(b[ib], a[ia]);
        });
        break;
    case AGP_MINIMUM:
        BROADCAST(p, e, {
            ga[ia] += g[i] * share_min(a[ia], b[ib]);
            gb[ib] += g[i] * share_min(b[ib], a[ia]);
        });
        break;
    case AGP_ATAN2:
        BROADCAST(p, e, {
            double gr = g[i] / (b[ib] * b[ib] + a[ia] * a[ia]);
            ga[ia] += gr * b[ib];
            gb[ib] += -(gr * a[ia]);
        });
        break;
    case AGP_WHERE: {
        /* inputs are (mask, a, b): a and b sit in ib and ic */
        double *gc = p->adj + e->in[2];
        BROADCAST(p, e, {
            if (a[ia] != 0)
                gb[ib] += g[i];
            else
                gc[ic] += g[i];
        });
        break;
    }
    default:
        break;   /* comparisons have no gradient */
    }
}

/* ------------------------------------------------------------ reductions */

static void reduce_forward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t outer = q[0], n = q[1], inner = q[2];
    const double *x = p->val + e->in[0];
    double *o = p->val + e->out;
    for (int64_t o_ = 0; o_ < outer * inner; o_++) {
        const double *l = x + (o_ / inner) * n * inner + o_ % inner;
        double r;
        if (e->code == AGP_SUM) {
            r = 0;
            for (int64_t k = 0; k < n; k++)
                r += l[k * inner];
        } else {
            bool max = e->code != AGP_MIN;
            double m = max ? -INFINITY : INFINITY;
            for (int64_t k = 0; k < n; k++) {
                double v = l[k * inner];
                if ((max ? v > m : v < m) || isnan(v))
                    m = v;
                if (isnan(m))
                    break;
            }
            r = m;
            if (e->code == AGP_LOGSUMEXP && !isinf(m) && !isnan(m)) {
                double rest = 0;
                bool seen = false;
                for (int64_t k = 0; k < n; k++) {
                    double v = l[k * inner];
                    if (v == m && !seen)
                        seen = true;
                    else
                        rest += exp(v - m);
                }
                r = m + log1p(rest);
            } else if (e->code != AGP_LOGSUMEXP) {
                /* the first extremum and its ties, as recorded? */
                int64_t first = -1, ties = 0;
                for (int64_t k = 0; k < n; k++) {
                    double v = l[k * inner];
                    if (v == m || (v != v && m != m)) {
                        first = first < 0 ? k : first;
                        ties++;
                    }
                }
                const int64_t *was = p->aux + e->chk + 2 * o_;
                if (first != was[0] || ties != was[1])
                    agp_changed(p, e->name, e->entry, e->index, o_,
                                (int)(first != was[0] ? was[0] : was[1]),
                                (int)(first != was[0] ? first : ties));
            }
        }
        o[o_] = rnd(r, e->f32);
    }
}

static void reduce_backward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t outer = q[0], n = q[1], inner = q[2];
    const double *x = p->val + e->in[0], *y = p->val + e->out, *g = p->adj + e->out;
    double *gx = p->adj + e->in[0];
    for (int64_t o_ = 0; o_ < outer * inner; o_++) {
        int64_t base = (o_ / inner) * n * inner + o_ % inner;
        const double *l = x + base;
        double *gl = gx + base, go = g[o_];
        if (e->code == AGP_SUM) {
            for (int64_t k = 0; k < n; k++)
                gl[k * inner] += go;
        } else if (e->code == AGP_LOGSUMEXP) {
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < n; k++)
                m = l[k * inner] > m || isnan(l[k * inner]) ? l[k * inner] : m;
            for (int64_t k = 0; k < n; k++)
                s += exp(l[k * inner] - m);
            for (int64_t k = 0; k < n; k++)
                gl[k * inner] += go * (exp(l[k * inner] - m) / s);
        } else {
            double cnt = 0;
            for (int64_t k = 0; k < n; k++)
                cnt += l[k * inner] == y[o_];
            for (int64_t k = 0; k < n; k++)
                gl[k * inner] += go * ((l[k * inner] == y[o_] ? 1.0 : 0.0) / cnt);
        }
    }
}

/* softmax and log_softmax along an axis: lanes as reductions' */
static void softmax_forward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t outer = q[0], n = q[1], inner = q[2];
    const double *x = p->val + e->in[0];
    double *y = p->val + e->out;
    for (int64_t o_ = 0; o_ < outer * inner; o_++) {
        int64_t base = (o_ / inner) * n * inner + o_ % inner;
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < n; k++) {
            double v = x[base + k * inner];
            m = v > m || isnan(v) ? v : m;
        }
        for (int64_t k = 0; k < n; k++)
            s += exp(x[base + k * inner] - m);
        for (int64_t k = 0; k < n; k++) {
            double z = x[base + k * inner] - m;
            y[base + k * inner] = rnd(e->code == AGP_SOFTMAX ? exp(z) / s : z - log(s), e->f32);
        }
    }
}

static void softmax_backward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t outer = q[0], n = q[1], inner = q[2];
    const double *y = p->val + e->out, *g = p->adj + e->out;
    double *gx = p->adj + e->in[0];
    for (int64_t o_ = 0; o_ < outer * inner; o_++) {
        int64_t base = (o_ / inner) * n * inner + o_ % inner;
        double s = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t j = base + k * inner;
            s += e->code == AGP_SOFTMAX ? g[j] * y[j] : g[j];
        }
        for (int64_t k = 0; k < n; k++) {
            int64_t j = base + k * inner;
            gx[j] += e->code == AGP_SOFTMAX ? y[j] * (g[j] - s) : g[j] - exp(y[j]) * s;
        }
    }
}

/* ---------------------------------------------------------------- matmul */

static void matmul_forward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t m = q[0], n = q[1], k = q[2], ta = q[3], tb = q[4], lda = q[5], ldb = q[6];
    for (int64_t bt = 0; bt < q[7]; bt++) {
        const double *a = p->val + e->in[0] + q[8 + 2 * bt], *b = p->val + e->in[1] + q[9 + 2 * bt];
        double *c = p->val + e->out + bt * m * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t l = 0; l < k; l++)
                    s += (ta ? a[l * lda + i] : a[i * lda + l]) * (tb ? b[j * ldb + l] : b[l * ldb + j]);
                c[i * n + j] = rnd(s, e->f32);
            }
    }
}

static void matmul_backward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t m = q[0], n = q[1], k = q[2], ta = q[3], tb = q[4], lda = q[5], ldb = q[6];
    for (int64_t bt = 0; bt < q[7]; bt++) {
        const double *a = p->val + e->in[0] + q[8 + 2 * bt], *b = p->val + e->in[1] + q[9 + 2 * bt];
        double *ga = p->adj + e->in[0] + q[8 + 2 * bt], *gb = p->adj + e->in[1] + q[9 + 2 * bt];
        const double *g = p->adj + e->out + bt * m * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t l = 0; l < k; l++) {
                double sa = 0;
                for (int64_t j = 0; j < n; j++)
                    sa += g[i * n + j] * (tb ? b[j * ldb + l] : b[l * ldb + j]);
                ga[ta ? l * lda + i : i * lda + l] += sa;
            }
        for (int64_t l = 0; l < k; l++)
            for (int64_t j = 0; j < n; j++) {
                double sb = 0;
                for (int64_t i = 0; i < m; i++)
                    sb += (ta ? a[l * lda + i] : a[i * lda + l]) * g[i * n + j];
                gb[tb ? j * ldb + l : l * ldb + j] += sb;
            }
    }
}

/* ---------------------------------------------------------- index maps */

static void map_forward(ag_plan *p, const agp_ext *e)
{
    const int64_t *map = p->aux + e->aux;
    const double *x = p->val + e->in[0];
    double *o = p->val + e->out;
    switch (e->code) {
    case AGP_GATHER:
        for (int64_t i = 0; i < e->n; i++)
            o[i] = rnd(map[i] < 0 ? e->s[0] : x[map[i]], e->f32);
        break;
    case AGP_PLACE:
        for (int64_t i = 0; i < e->in_n[0]; i++)
            o[map[i]] = rnd(x[i], e->f32);
        break;
    default:   /* AGP_SCATTER, AGP_SCATTER_ADD */
        if (e->code == AGP_SCATTER)
            memset(o, 0, (size_t)e->n * sizeof *o);
        for (int64_t i = 0; i < e->in_n[0]; i++)
            o[map[i]] += x[i];
        for (int64_t i = 0; e->f32 && i < e->n; i++)
            o[i] = rnd(o[i], true);
        break;
    }
}

static void map_backward(ag_plan *p, const agp_ext *e)
{
    const int64_t *map = p->aux + e->aux;
    const double *g = p->adj + e->out;
    double *gx = p->adj + e->in[0];
    if (e->code == AGP_GATHER) {
        for (int64_t i = 0; i < e->n; i++)
            if (map[i] >= 0)
                gx[map[i]] += g[i];
    } else {
        for (int64_t i = 0; i < e->in_n[0]; i++)
            gx[i] += g[map[i]];
    }
}

/* ------------------------------------------------- lanes: cumsum, var, std */

static void lanes_forward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t outer = q[0], n = q[1], inner = q[2];
    const double *x = p->val + e->in[0];
    double *y = p->val + e->out;
    for (int64_t o_ = 0; o_ < outer * inner; o_++) {
        int64_t base = (o_ / inner) * n * inner + o_ % inner;
        const double *l = x + base;
        if (e->code == AGP_CUMSUM || e->code == AGP_CUMSUM_REVERSE) {
            double s = 0;
            for (int64_t k0 = 0; k0 < n; k0++) {
                int64_t k = e->code == AGP_CUMSUM ? k0 : n - 1 - k0;
                s += l[k * inner];
                y[base + k * inner] = rnd(s, e->f32);
            }
            continue;
        }
        /* var, std: the corrected two-pass variance, as ops_stats.c */
        double sum = 0;
        for (int64_t k = 0; k < n; k++)
            sum += l[k * inner];
        double mean = sum / (double)n, squares = 0, deviations = 0;
        for (int64_t k = 0; k < n; k++) {
            double d = l[k * inner] - mean;
            squares += d * d;
            deviations += d;
        }
        double v = squares - deviations * deviations / (double)n;
        v = (v < 0 ? 0 : v) / e->s[0];
        y[o_] = rnd(e->code == AGP_STD ? sqrt(v) : v, e->f32);
    }
}

static void lanes_backward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t outer = q[0], n = q[1], inner = q[2];
    const double *x = p->val + e->in[0], *y = p->val + e->out, *g = p->adj + e->out;
    double *gx = p->adj + e->in[0];
    for (int64_t o_ = 0; o_ < outer * inner; o_++) {
        int64_t base = (o_ / inner) * n * inner + o_ % inner;
        if (e->code == AGP_CUMSUM || e->code == AGP_CUMSUM_REVERSE) {
            /* the adjoint runs the other way */
            double s = 0;
            for (int64_t k0 = 0; k0 < n; k0++) {
                int64_t k = e->code == AGP_CUMSUM ? n - 1 - k0 : k0;
                s += g[base + k * inner];
                gx[base + k * inner] += s;
            }
            continue;
        }
        double go = g[o_];
        if (e->code == AGP_STD)
            go = y[o_] == 0 ? 0.0 : go / (y[o_] * 2.0);
        double sum = 0;
        for (int64_t k = 0; k < n; k++)
            sum += x[base + k * inner];
        double mean = sum * (1.0 / (double)n);
        for (int64_t k = 0; k < n; k++)
            gx[base + k * inner] += (x[base + k * inner] - mean) * (2.0 / e->s[0]) * go;
    }
}

/* ------------------------------------------------------- cross entropy */

static void cross_entropy_forward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t rows = q[0], c = q[1];
    const int64_t *labels = q + 2;
    const double *x = p->val + e->in[0];
    double total = 0;
    for (int64_t i = 0; i < rows; i++) {
        const double *l = x + i * c;
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < c; k++)
            m = l[k] > m || isnan(l[k]) ? l[k] : m;
        for (int64_t k = 0; k < c; k++)
            s += exp(l[k] - m);
        total += log(s) - (l[labels[i]] - m);
    }
    p->val[e->out] = rnd(total / (double)rows, e->f32);
}

static void cross_entropy_backward(ag_plan *p, const agp_ext *e)
{
    const int64_t *q = p->aux + e->aux;
    int64_t rows = q[0], c = q[1];
    const int64_t *labels = q + 2;
    const double *x = p->val + e->in[0];
    double *gx = p->adj + e->in[0], go = p->adj[e->out] / (double)rows;
    for (int64_t i = 0; i < rows; i++) {
        const double *l = x + i * c;
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < c; k++)
            m = l[k] > m || isnan(l[k]) ? l[k] : m;
        for (int64_t k = 0; k < c; k++)
            s += exp(l[k] - m);
        for (int64_t k = 0; k < c; k++)
            gx[i * c + k] += go * (exp(l[k] - m) / s - (k == labels[i]));
    }
}

/* ------------------------------------------------------------ the loops */

static void ext_forward(ag_plan *p, const agp_ext *e)
{
    switch (e->code) {
    case AGP_ADD: case AGP_SUB: case AGP_MUL: case AGP_DIV: case AGP_POW: case AGP_MAXIMUM:
    case AGP_MINIMUM: case AGP_ATAN2: case AGP_GT: case AGP_GE: case AGP_LT: case AGP_LE:
    case AGP_EQ: case AGP_WHERE:
        binary_forward(p, e);
        break;
    case AGP_SUM: case AGP_MAX: case AGP_MIN: case AGP_LOGSUMEXP:
        reduce_forward(p, e);
        break;
    case AGP_GATHER: case AGP_PLACE: case AGP_SCATTER: case AGP_SCATTER_ADD:
        map_forward(p, e);
        break;
    case AGP_MATMUL:
        matmul_forward(p, e);
        break;
    case AGP_SOFTMAX: case AGP_LOG_SOFTMAX:
        softmax_forward(p, e);
        break;
    case AGP_CUMSUM: case AGP_CUMSUM_REVERSE: case AGP_VAR: case AGP_STD:
        lanes_forward(p, e);
        break;
    case AGP_CROSS_ENTROPY:
        cross_entropy_forward(p, e);
        break;
    default:
        unary_forward(p, e);
        break;
    }
}

static void ext_backward(ag_plan *p, const agp_ext *e)
{
    if (!(e->grad & AGP_GRAD_OUT))
        return;
    switch (e->code) {
    case AGP_ADD: case AGP_SUB: case AGP_MUL: case AGP_DIV: case AGP_POW: case AGP_MAXIMUM:
    case AGP_MINIMUM: case AGP_ATAN2: case AGP_GT: case AGP_GE: case AGP_LT: case AGP_LE:
    case AGP_EQ: case AGP_WHERE:
        binary_backward(p, e);
        break;
    case AGP_SUM: case AGP_MAX: case AGP_MIN: case AGP_LOGSUMEXP:
        reduce_backward(p, e);
        break;
    case AGP_GATHER: case AGP_PLACE: case AGP_SCATTER: case AGP_SCATTER_ADD:
        map_backward(p, e);
        break;
    case AGP_MATMUL:
        matmul_backward(p, e);
        break;
    case AGP_SOFTMAX: case AGP_LOG_SOFTMAX:
        softmax_backward(p, e);
        break;
    case AGP_CUMSUM: case AGP_CUMSUM_REVERSE: case AGP_VAR: case AGP_STD:
        lanes_backward(p, e);
        break;
    case AGP_CROSS_ENTROPY:
        cross_entropy_backward(p, e);
        break;
    default:
        unary_backward(p, e);
        break;
    }
}

/* A scalar relu or abs whose side changed (rare: out of the loop's line). */
#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static void scalar_changed(ag_plan *p, const agp_instr *c, uint8_t now)
{
    int64_t rec = p->aux[c->b];
    agp_changed(p, c->code == AGP_S_RELU ? "relu" : "abs", (int32_t)((rec >> 8) - 1),
                (int32_t)(c - p->code), 0, (int)(rec & 0xff), now);
}

void agp_forward(ag_plan *p)
{
    if (!p->ncode)
        return;   /* code may be NULL */
    double *v = p->val;
    const agp_instr *c = p->code, *end = c + p->ncode;
    for (; c < end; c++) {
        switch (c->code) {
        case AGP_S_ADD: v[c->out] = v[c->a] + v[c->b]; break;
        case AGP_S_SUB: v[c->out] = v[c->a] - v[c->b]; break;
        case AGP_S_MUL: v[c->out] = v[c->a] * v[c->b]; break;
        case AGP_S_DIV: v[c->out] = v[c->a] / v[c->b]; break;
        case AGP_S_NEG: v[c->out] = -v[c->a]; break;
        case AGP_S_EXP: v[c->out] = exp(v[c->a]); break;
        case AGP_S_LOG: v[c->out] = log(v[c->a]); break;
        case AGP_S_SQRT: v[c->out] = sqrt(v[c->a]); break;
        case AGP_S_SIN: v[c->out] = sin(v[c->a]); break;
        case AGP_S_COS: v[c->out] = cos(v[c->a]); break;
        case AGP_S_TANH: v[c->out] = tanh(v[c->a]); break;
        case AGP_S_SIGMOID: v[c->out] = agk_sigmoid(v[c->a]); break;
        case AGP_S_SQUARE: v[c->out] = v[c->a] * v[c->a]; break;
        case AGP_S_POWS: v[c->out] = pow(v[c->a], v[c->b]); break;
        case AGP_S_RELU: {
            double x = v[c->a];
            v[c->out] = agk_relu(x);
            uint8_t now = agp_relu_code(x);
            if (now != (p->aux[c->b] & 0xff))
                scalar_changed(p, c, now);
            break;
        }
        case AGP_S_ABS: {
            double x = v[c->a];
            v[c->out] = fabs(x);
            uint8_t now = agp_sign_code(x);
            if (now != (p->aux[c->b] & 0xff))
                scalar_changed(p, c, now);
            break;
        }
        default:
            ext_forward(p, &p->ext[c->out]);
            break;
        }
    }
}

void agp_backward(ag_plan *p)
{
    const double *v = p->val;
    double *g = p->adj;
    memset(g, 0, p->nval * sizeof *g);
    g[p->y_off] = 1.0;
    for (size_t k = p->ncode; k-- > 0;) {
        const agp_instr *c = &p->code[k];
        if (c->code >= AGP_EXT_FIRST) {
            ext_backward(p, &p->ext[c->out]);
            continue;
        }
        if (!(c->grad & AGP_GRAD_OUT))
            continue;
        double go = g[c->out];
        switch (c->code) {
        case AGP_S_ADD: g[c->a] += go; g[c->b] += go; break;
        case AGP_S_SUB: g[c->a] += go; g[c->b] -= go; break;
        case AGP_S_MUL: g[c->a] += go * v[c->b]; g[c->b] += go * v[c->a]; break;
        case AGP_S_DIV:
            g[c->a] += go / v[c->b];
            g[c->b] += -(go * (v[c->out] / v[c->b]));
            break;
        case AGP_S_NEG: g[c->a] -= go; break;
        case AGP_S_EXP: g[c->a] += go * v[c->out]; break;
        case AGP_S_LOG: g[c->a] += go / v[c->a]; break;
        case AGP_S_SQRT: g[c->a] += go / (v[c->out] * 2.0); break;
        case AGP_S_SIN: g[c->a] += go * cos(v[c->a]); break;
        case AGP_S_COS: g[c->a] += -(go * sin(v[c->a])); break;
        case AGP_S_TANH: g[c->a] += go * (1.0 - v[c->out] * v[c->out]); break;
        case AGP_S_SIGMOID: g[c->a] += go * (v[c->out] * (1.0 - v[c->out])); break;
        case AGP_S_SQUARE: g[c->a] += go * (v[c->a] * 2.0); break;
        case AGP_S_POWS: g[c->a] += go * (pow(v[c->a], v[c->b] - 1.0) * v[c->b]); break;
        case AGP_S_RELU: g[c->a] += go * agk_step(v[c->a], 0.0); break;
        case AGP_S_ABS: g[c->a] += go * sign_of(v[c->a]); break;
        default: break;
        }
    }
}
