/*
** ops_norm.c: batch, layer and group normalisation. Batch and group norm
** go through the fused ops of ops_norm_fused.c (standardisation) and
** ops_norm_affine.c (the per-channel affine map of evaluation and of group
** norm's gamma and beta): a few passes over x, gradients included. Layer
** norm is a composition of the library's differentiable ops (means over
** axes, sub, mul, div, sqrt, broadcasting), which keeps it, the
** normalisation of sequence models, among what plans run (autograd.h).
** This file has no descriptors of its own: its table is empty. The
** variance is the biased one (divide by the count), in two passes (the
** mean first, then the mean of squared deviations), which stays accurate
** when the mean is large against the spread.
*/
#include "ops_norm_fused.h"

#include <string.h>

/* Layer norm's rows [m, k] normalised over axis 1, composed:
** (x - mean) / sqrt(var + eps). */
static ag_tensor *standardise_rows(ag_tape *t, ag_tensor *rows, double eps)
{
    ag_tensor *d = ag_sub(t, rows, ag_mean_axis(t, rows, 1, 1));
    ag_tensor *v = ag_mean_axis(t, ag_mul(t, d, d), 1, 1);
    return ag_div(t, d, ag_sqrt(t, ag_add_scalar(t, v, eps)));
}

/* Is p NULL or a [n] vector? */
static bool vector_of(const ag_tensor *p, int64_t n)
{
    return !p || (p->rank == 1 && p->shape[0] == n);
}

/* y * gamma + beta, either optional; both already shaped to broadcast. */
static ag_tensor *affine(ag_tape *t, ag_tensor *y, ag_tensor *gamma, ag_tensor *beta)
{
    if (gamma)
        y = ag_mul(t, y, gamma);
    if (beta)
        y = ag_add(t, y, beta);
    return y;
}

/* Checks x and the optional tensors together (tape, dtypes). */
static bool check_all(ag_tape *t, const char *who, ag_tensor *x, ag_tensor *const *opt, int nopt)
{
    ag_tensor *in[5] = {x};
    int n = 1;
    for (int i = 0; i < nopt; i++)
        if (opt[i])
            in[n++] = opt[i];
    return agi_check_inputs(t, who, n, in, true);
}

ag_tensor *ag_batch_norm(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta,
                         ag_tensor *running_mean, ag_tensor *running_var, int training,
                         double momentum, double eps)
{
    ag_tensor *opt[4] = {gamma, beta, running_mean, running_var};
    if (!check_all(t, "ag_batch_norm", x, opt, 4))
        return agi_nil(t);
    if (x->rank < 2)
        return agi_error(t, AG_ESHAPE, "ag_batch_norm: x %s needs rank 2 or more (N, C, ...)",
                         agi_shp(x, 0));
    int64_t c = x->shape[1];
    for (int i = 0; i < 4; i++)
        if (!vector_of(opt[i], c))
            return agi_error(t, AG_ESHAPE, "ag_batch_norm: %s %s must be [%lld] for x %s",
                             (const char *[]){"gamma", "beta", "running_mean", "running_var"}[i],
                             agi_shp(opt[i], 0), (long long)c, agi_shp(x, 1));
    if (!(eps >= 0) || !(momentum >= 0 && momentum <= 1))
        return agi_error(t, AG_EINVAL,
                         "ag_batch_norm: eps %g must be >= 0 and momentum %g in [0, 1]", eps,
                         momentum);
    if ((running_mean == NULL) != (running_var == NULL))
        return agi_error(t, AG_EINVAL,
                         "ag_batch_norm: give both running_mean and running_var, or neither");
    if (!training) {
        if (!running_mean)
            return agi_error(t, AG_EINVAL,
                             "ag_batch_norm: evaluation mode needs running_mean and running_var");
        if (x->numel == 0)   /* nothing to normalise: the result is empty too */
            return ag_mul_scalar(t, x, 1.0);
        /* (x - running_mean) gamma / sqrt(running_var + eps) + beta in one
        ** pass; the scale is a [C] vector, so gradients reach all four. */
        ag_tensor *s = ag_pow_scalar(t, ag_add_scalar(t, running_var, eps), -0.5);
        if (gamma)
            s = ag_mul(t, gamma, s);
        int64_t n = x->shape[0];
        return agi_channel_affine(t, "ag_batch_norm", x, n, c, x->numel / (n * c), running_mean,
                                  s, beta);
    }
    int64_t count = x->numel / (c ? c : 1);
    if (count < 2)
        return agi_error(t, AG_ESHAPE,
                         "ag_batch_norm: x %s has %lld value(s) per channel; training needs 2 "
                         "or more",
                         agi_shp(x, 0), (long long)count);
    ag_tensor *y = agi_standardise(t, x, x->shape[0], c, count / x->shape[0], eps, gamma, beta);
    if (t->status != AG_OK)
        return agi_nil(t);
    if (running_mean) {
        /* PyTorch's update: the running variance takes the unbiased one. */
        const agi_norm_geom *st = agi_standardise_geom(y);
        double unbias = (double)count / (double)(count - 1);
        for (int64_t i = 0; i < c; i++) {
            agi_set(running_mean, i,
                    (1 - momentum) * agi_get(running_mean, i) + momentum * st->mean[i]);
            agi_set(running_var, i,
                    (1 - momentum) * agi_get(running_var, i) + momentum * st->var[i] * unbias);
        }
    }
    return y;
}

ag_tensor *ag_layer_norm(ag_tape *t, ag_tensor *x, int normalized_ndims, ag_tensor *gamma,
                         ag_tensor *beta, double eps)
{
    ag_tensor *opt[2] = {gamma, beta};
    if (!check_all(t, "ag_layer_norm", x, opt, 2))
        return agi_nil(t);
    if (normalized_ndims < 1 || normalized_ndims > x->rank)
        return agi_error(t, AG_EINVAL,
                         "ag_layer_norm: normalized_ndims %d must be between 1 and the rank of %s",
                         normalized_ndims, agi_shp(x, 0));
    if (!(eps >= 0))
        return agi_error(t, AG_EINVAL, "ag_layer_norm: eps %g must be >= 0", eps);
    int lead = x->rank - normalized_ndims;
    int64_t m = 1, k = 1;
    for (int d = 0; d < x->rank; d++)
        *(d < lead ? &m : &k) *= x->shape[d];
    for (int i = 0; i < 2; i++) {
        const ag_tensor *p = opt[i];
        if (p && (p->rank != normalized_ndims ||
                  memcmp(p->shape, x->shape + lead, (size_t)normalized_ndims * sizeof *p->shape)))
            return agi_error(t, AG_ESHAPE, "ag_layer_norm: %s %s must be the last %d dims of x %s",
                             i ? "beta" : "gamma", agi_shp(p, 0), normalized_ndims,
                             agi_shp(x, 1));
    }
    if (k == 0)
        return agi_error(t, AG_ESHAPE, "ag_layer_norm: x %s normalises over no values",
                         agi_shp(x, 0));
    ag_tensor *rows = ag_reshape(t, x, 2, (int64_t[]){m, k});
    ag_tensor *y = standardise_rows(t, rows, eps);
    return affine(t, ag_reshape(t, y, x->rank, x->shape), gamma, beta);
}

ag_tensor *ag_group_norm(ag_tape *t, ag_tensor *x, int groups, ag_tensor *gamma, ag_tensor *beta,
                         double eps)
{
    ag_tensor *opt[2] = {gamma, beta};
    if (!check_all(t, "ag_group_norm", x, opt, 2))
        return agi_nil(t);
    if (x->rank < 2)
        return agi_error(t, AG_ESHAPE, "ag_group_norm: x %s needs rank 2 or more (N, C, ...)",
                         agi_shp(x, 0));
    int64_t n = x->shape[0], c = x->shape[1];
    if (groups < 1 || c % groups)
        return agi_error(t, AG_EINVAL, "ag_group_norm: groups %d must be positive and divide %lld "
                         "channels of x %s", groups, (long long)c, agi_shp(x, 0));
    for (int i = 0; i < 2; i++)
        if (!vector_of(opt[i], c))
            return agi_error(t, AG_ESHAPE, "ag_group_norm: %s %s must be [%lld] for x %s",
                             i ? "beta" : "gamma", agi_shp(opt[i], 0), (long long)c,
                             agi_shp(x, 1));
    if (!(eps >= 0))
        return agi_error(t, AG_EINVAL, "ag_group_norm: eps %g must be >= 0", eps);
    int64_t per = n && groups ? x->numel / (n * groups) : 0;
    if (per == 0)
        return agi_error(t, AG_ESHAPE, "ag_group_norm: x %s normalises over no values",
                         agi_shp(x, 0));
    ag_tensor *y = agi_standardise(t, x, 1, n * groups, per, eps, NULL, NULL);
    if (!gamma && !beta)
        return y;
    return agi_channel_affine(t, "ag_group_norm", y, n, c, x->numel / (n * c), NULL, gamma, beta);
}

/* No descriptors of this file's own. In tests/op_cases.h the cases of
** layer norm are filed under "sqrt", which they record; those of batch and
** group norm under the fused ops they record. */
const ag_op *const agi_ops_norm[] = {NULL};
