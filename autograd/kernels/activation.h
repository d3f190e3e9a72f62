/*
** activation.h: the activations a fused dense layer applies, and their
** derivatives written in terms of the output, one element at a time. The
** rounding follows the unary ops step by step (f32: to float after each
** step that the composed vjp performs as an op of its own), so the fused
** layer gives the same bits as matmul, add and the activation recorded
** separately.
*/
#ifndef AG_KERNELS_ACTIVATION_H
#define AG_KERNELS_ACTIVATION_H

#include "kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x for x <= 0 (NaN passes through), within an ulp of libm's exp, and
** written without branches or calls so that loops over it vectorise: libm's
** exp costs a call per element, and the sigmoid of a layer's outputs was most
** of a small network's forward pass. x = n ln2 + r with |r| <= ln2/2 (ln2 in
** two parts, the high one short enough that n * hi is exact); e^r is its
** Taylor series to r^13 (the next term is below 2^-57 of the sum); 2^n is
** applied as two factors 2^n1 2^n2, each a normal double, so results down
** to the smallest subnormal round once, as a single scaling would not. */
static inline double agk_exp_nonpos(double x)
{
    const double shifter = 0x1.8p52, log2e = 0x1.71547652b82fep0;
    const double ln2_hi = 0x1.62e42fee00000p-1, ln2_lo = 0x1.a39ef35793c76p-33;
    x = x < -746.0 ? -746.0 : x;   /* e^-746 rounds to 0; the clamp bounds n */
    double k = x * log2e + shifter;   /* n in the low bits: round to nearest */
    double n = k - shifter;
    double r = (x - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    uint64_t kb, sb;
    memcpy(&kb, &k, sizeof kb);
    memcpy(&sb, &shifter, sizeof sb);
    uint64_t m = kb - sb + 1076;   /* n + 1076, in [0, 1076]: unsigned shifts */
    uint64_t h = m >> 1;
    uint64_t b1 = (h + 1023 - 538) << 52, b2 = (m - h + 1023 - 538) << 52;
    double s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    return p * s1 * s2;
}

/* 1 / (1 + e^-x), safe from overflow on both sides: e^-|x| never exceeds 1. */
static inline double agk_sigmoid(double x)
{
    double e = agk_exp_nonpos(-fabs(x));
    double d = 1.0 + e;
    return x >= 0 ? 1.0 / d : e / d;
}

/* NaN propagates through every op, as in IEEE arithmetic, NumPy and
** PyTorch: relu(NaN) is NaN, and so is its derivative there, so that a
** diverged model never looks healthy. Both are selects written so that a
** NaN fails the first comparison and falls through to x itself (the
** obvious 'x > 0 ? x : 0' gives 0), with no branch or call: loops over
** them vectorise. The derivative is a factor: 1 above 0, 'below' at or
** below 0 (0 for relu, the slope for leaky relu), x where x is NaN. */
static inline double agk_relu(double x) { return x <= 0 ? 0.0 : x; }
static inline float agk_relu_f(float x) { return x <= 0 ? 0.0f : x; }
static inline double agk_step(double x, double below) { return x > 0 ? 1.0 : x <= 0 ? below : x; }
static inline float agk_step_f(float x) { return x > 0 ? 1.0f : x <= 0 ? 0.0f : x; }

/* act(z), z already rounded to the dtype. */
AGK_INLINE double agk_act(ag_activation act, double z)
{
    switch (act) {
    case AG_ACT_RELU:
        return agk_relu(z);
    case AG_ACT_SIGMOID:
        return agk_sigmoid(z);
    case AG_ACT_TANH:
        return tanh(z);
    default:
        return z;
    }
}

/* g * act'(z), from the output y = act(z): relu [y > 0] (y > 0 exactly when
** z > 0, and y is z's NaN when z is NaN), sigmoid y (1 - y), tanh 1 - y^2. */
AGK_INLINE double agk_act_grad(ag_activation act, double g, double y, bool f32)
{
    switch (act) {
    case AG_ACT_RELU:
        return g * agk_step(y, 0.0);   /* g, a zero of g's sign, or NaN: exact */
    case AG_ACT_SIGMOID:
        return agk_round(g * agk_round(y * agk_round(1.0 - y, f32), f32), f32);
    case AG_ACT_TANH:
        return agk_round(g * agk_round(1.0 - agk_round(y * y, f32), f32), f32);
    default:
        return g;
    }
}

#endif
