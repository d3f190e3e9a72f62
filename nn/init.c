/*
** init.c: weight initialisers (Glorot/Xavier, He/Kaiming, constants), each
** drawing from a generator the caller passes, so a seed fixes the weights.
*/
#include "model_internal.h"

#include <math.h>

double nn_init_gain(nn_activation act)
{
    switch (act) {
    case NN_TANH: return 5.0 / 3.0;
    case NN_RELU:
    case NN_GELU: return sqrt(2.0);
    case NN_LEAKY_RELU: return sqrt(2.0 / (1.0 + NN_LEAKY_RELU_SLOPE * NN_LEAKY_RELU_SLOPE));
    case NN_IDENTITY:
    case NN_SIGMOID:
    case NN_SOFTPLUS:
    case NN_ACTIVATION_COUNT: break;
    }
    return 1.0;
}

void nn_init_fans(const ag_tensor *w, int64_t *fan_in, int64_t *fan_out)
{
    int rank = ag_rank(w);
    int64_t in = 1, out = 1;
    if (rank == 1) {
        in = out = ag_dim(w, 0);
    } else if (rank >= 2) {
        int64_t receptive = 1;
        for (int i = 0; i < rank - 2; i++)
            receptive *= ag_dim(w, i);
        in = ag_dim(w, -2) * receptive;
        out = ag_dim(w, -1) * receptive;
    }
    if (fan_in)
        *fan_in = in;
    if (fan_out)
        *fan_out = out;
}

static bool can_fill(const ag_tensor *w, const ag_rng *r, double gain)
{
    return !ag_is_nil(w) && r && isfinite(gain) && gain > 0;
}

/* A fan of zero (an empty tensor) would divide by zero; there is nothing to fill. */
static double safe_fan(int64_t fan) { return fan > 0 ? (double)fan : 1.0; }

ag_status nn_init_xavier_uniform(ag_tensor *w, ag_rng *r, double gain)
{
    if (!can_fill(w, r, gain))
        return AG_EINVAL;
    int64_t in, out;
    nn_init_fans(w, &in, &out);
    double a = gain * sqrt(6.0 / safe_fan(in + out));
    ag_fill_uniform(w, r, -a, a);
    return AG_OK;
}

ag_status nn_init_xavier_normal(ag_tensor *w, ag_rng *r, double gain)
{
    if (!can_fill(w, r, gain))
        return AG_EINVAL;
    int64_t in, out;
    nn_init_fans(w, &in, &out);
    ag_fill_normal(w, r, 0.0, gain * sqrt(2.0 / safe_fan(in + out)));
    return AG_OK;
}

ag_status nn_init_kaiming_uniform(ag_tensor *w, ag_rng *r, double gain)
{
    if (!can_fill(w, r, gain))
        return AG_EINVAL;
    int64_t in;
    nn_init_fans(w, &in, NULL);
    double a = gain * sqrt(3.0 / safe_fan(in));
    ag_fill_uniform(w, r, -a, a);
    return AG_OK;
}

ag_status nn_init_kaiming_normal(ag_tensor *w, ag_rng *r, double gain)
{
    if (!can_fill(w, r, gain))
        return AG_EINVAL;
    int64_t in;
    nn_init_fans(w, &in, NULL);
    ag_fill_normal(w, r, 0.0, gain / sqrt(safe_fan(in)));
    return AG_OK;
}

ag_status nn_init_constant(ag_tensor *w, double v)
{
    if (ag_is_nil(w))
        return AG_EINVAL;
    ag_fill(w, v);
    return AG_OK;
}

ag_status nn_init_zeros(ag_tensor *w) { return nn_init_constant(w, 0.0); }
