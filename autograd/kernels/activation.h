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

/* 1 / (1 + e^-x), with both branches safe from overflow. */
static inline double agk_sigmoid(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* act(z), z already rounded to the dtype. */
AGK_INLINE double agk_act(ag_activation act, double z)
{
    switch (act) {
    case AG_ACT_RELU:
        return z > 0 ? z : 0.0;
    case AG_ACT_SIGMOID:
        return agk_sigmoid(z);
    case AG_ACT_TANH:
        return tanh(z);
    default:
        return z;
    }
}

/* g * act'(z), from the output y = act(z): relu [y > 0] (y > 0 exactly when
** z > 0), sigmoid y (1 - y), tanh 1 - y^2. */
AGK_INLINE double agk_act_grad(ag_activation act, double g, double y, bool f32)
{
    switch (act) {
    case AG_ACT_RELU:
        return g * (double)(y > 0);   /* g or a zero of g's sign: exact either way */
    case AG_ACT_SIGMOID:
        return agk_round(g * agk_round(y * agk_round(1.0 - y, f32), f32), f32);
    case AG_ACT_TANH:
        return agk_round(g * agk_round(1.0 - agk_round(y * y, f32), f32), f32);
    default:
        return g;
    }
}

#endif
