/*
** conv_layers.c: the layers of a convolutional network: nn_conv2d
** (ag_conv2d with the model's parameters; the weight is stored
** [out, in / groups, k, k], PyTorch's own layout, so a checkpoint exchanged
** with PyTorch needs no transpose) and nn_batchnorm2d (ag_batch_norm
** following the model's training flag, with running statistics of its own).
*/
#include "model_internal.h"

#include <math.h>

struct nn_conv2d {
    nn_model *model;
    ag_tensor *weight, *bias;
    int64_t in, out;
    int kernel, stride, pad, dilation, groups;
};

/* Returned by failed constructors: forward on it reports an error. */
static nn_conv2d nil_conv2d;

int nn_conv2d_is_nil(const nn_conv2d *c) { return !c || c == &nil_conv2d; }
ag_tensor *nn_conv2d_weight(const nn_conv2d *c) { return nn_conv2d_is_nil(c) ? NULL : c->weight; }
ag_tensor *nn_conv2d_bias(const nn_conv2d *c) { return nn_conv2d_is_nil(c) ? NULL : c->bias; }

nn_conv2d *nn_conv2d_new(nn_model *m, const char *name, ag_dtype dt, int64_t in, int64_t out,
                         int kernel, int stride, int pad, int dilation, int groups, int bias)
{
    static const char who[] = "nn_conv2d_new";
    if (!m || m->status != AG_OK)
        return &nil_conv2d;
    if (in < 1 || out < 1 || kernel < 1 || stride < 1 || pad < 0 || dilation < 1) {
        nn_model_fail(m, AG_EINVAL,
                      "%s: layer '%s': channels %lld -> %lld, kernel %d, stride %d, dilation %d "
                      "must be >= 1 and padding %d >= 0",
                      who, name ? name : "", (long long)in, (long long)out, kernel, stride,
                      dilation, pad);
        return &nil_conv2d;
    }
    if (groups < 1 || in % groups || out % groups) {
        nn_model_fail(m, AG_EINVAL,
                      "%s: layer '%s': groups %d must divide %lld input and %lld output channels",
                      who, name ? name : "", groups, (long long)in, (long long)out);
        return &nil_conv2d;
    }
    char wname[64], bname[64];
    if (!nni_join_name(m, who, wname, name, "weight") ||
        !nni_join_name(m, who, bname, name, "bias"))
        return &nil_conv2d;
    nn_conv2d *c = nni_model_alloc(m, who, sizeof *c);
    if (!c)
        return &nil_conv2d;
    *c = (nn_conv2d){.model = m, .in = in, .out = out, .kernel = kernel, .stride = stride,
                     .pad = pad, .dilation = dilation, .groups = groups};
    c->weight = nn_param(m, wname, dt, 4, (int64_t[]){out, in / groups, kernel, kernel});
    c->bias = bias ? nn_param(m, bname, dt, 1, &out) : NULL;
    if (m->status != AG_OK)
        return &nil_conv2d;
    /* Kaiming-uniform by fan-in (the inputs one output sees), ReLU's gain:
    ** U(-a, a), a = sqrt(2) sqrt(3 / fan_in). nn_init_fans reads the dense
    ** [in, out] layout, so the fan is counted here. The bias stays zero. */
    double fan_in = (double)(in / groups) * kernel * kernel;
    double a = sqrt(2.0) * sqrt(3.0 / fan_in);
    ag_fill_uniform(c->weight, &m->rng, -a, a);
    return c;
}

ag_tensor *nn_conv2d_forward(ag_tape *t, const nn_conv2d *c, ag_tensor *x)
{
    static const char who[] = "nn_conv2d_forward";
    if (ag_tape_status(t) != AG_OK)
        return ag_tape_nil(t);
    if (nn_conv2d_is_nil(c)) {
        ag_tape_fail(t, AG_EINVAL, "%s: the layer is %s", who,
                     c ? "nil (its constructor failed: see nn_model_errmsg)" : "NULL");
        return ag_tape_nil(t);
    }
    if (c->model->status != AG_OK) {
        ag_tape_fail(t, AG_ESTATE, "%s: the model is in error: %s", who, c->model->errmsg);
        return ag_tape_nil(t);
    }
    if (!nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    if (ag_rank(x) != 4 || ag_dim(x, 1) != c->in) {
        char shape[NNI_SHAPE_STR];
        ag_tape_fail(t, AG_ESHAPE, "%s: input %s is not [N, %lld, H, W] for '%s'", who,
                     nni_shape_str(x, shape, sizeof shape), (long long)c->in, ag_name(c->weight));
        return ag_tape_nil(t);
    }
    return ag_conv2d(t, x, c->weight, c->bias, c->stride, c->stride, c->pad, c->pad, c->dilation,
                     c->dilation, c->groups);
}

/* ------------------------------------------------------- batch norm layers */

struct nn_batchnorm2d {
    nn_model *model;
    ag_tensor *gamma, *beta;   /* NULL without the affine part */
    int64_t channels;
    double momentum, eps;
    double *running_mean, *running_var;   /* channels each, in the model's memory */
};

static nn_batchnorm2d nil_batchnorm2d;

int nn_batchnorm2d_is_nil(const nn_batchnorm2d *bn) { return !bn || bn == &nil_batchnorm2d; }
const double *nn_batchnorm2d_running_mean(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? NULL : bn->running_mean;
}
const double *nn_batchnorm2d_running_var(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? NULL : bn->running_var;
}

nn_batchnorm2d *nn_batchnorm2d_new(nn_model *m, const char *name, ag_dtype dt, int64_t channels,
                                   double momentum, double eps, int affine)
{
    static const char who[] = "nn_batchnorm2d_new";
    if (!m || m->status != AG_OK)
        return &nil_batchnorm2d;
    if (channels < 1 || !(momentum >= 0 && momentum <= 1) || !(eps >= 0)) {
        nn_model_fail(m, AG_EINVAL,
                      "%s: layer '%s': channels %lld must be >= 1, momentum %g in [0, 1], "
                      "eps %g >= 0",
                      who, name ? name : "", (long long)channels, momentum, eps);
        return &nil_batchnorm2d;
    }
    char wname[64], bname[64];
    if (!nni_join_name(m, who, wname, name, "weight") ||
        !nni_join_name(m, who, bname, name, "bias"))
        return &nil_batchnorm2d;
    nn_batchnorm2d *bn = nni_model_alloc(m, who, sizeof *bn + 2 * (size_t)channels * sizeof(double));
    if (!bn)
        return &nil_batchnorm2d;
    *bn = (nn_batchnorm2d){.model = m, .channels = channels, .momentum = momentum, .eps = eps};
    bn->running_mean = (double *)(bn + 1);
    bn->running_var = bn->running_mean + channels;
    for (int64_t i = 0; i < channels; i++)
        bn->running_var[i] = 1.0;   /* PyTorch's start: mean 0, variance 1 */
    if (affine) {
        bn->gamma = nn_param(m, wname, dt, 1, &channels);
        bn->beta = nn_param(m, bname, dt, 1, &channels);
        if (m->status != AG_OK)
            return &nil_batchnorm2d;
        nn_init_constant(bn->gamma, 1.0);
    }
    return bn;
}

ag_tensor *nn_batchnorm2d_forward(ag_tape *t, nn_batchnorm2d *bn, ag_tensor *x)
{
    static const char who[] = "nn_batchnorm2d_forward";
    if (ag_tape_status(t) != AG_OK)
        return ag_tape_nil(t);
    if (nn_batchnorm2d_is_nil(bn)) {
        ag_tape_fail(t, AG_EINVAL, "%s: the layer is %s", who,
                     bn ? "nil (its constructor failed: see nn_model_errmsg)" : "NULL");
        return ag_tape_nil(t);
    }
    if (bn->model->status != AG_OK) {
        ag_tape_fail(t, AG_ESTATE, "%s: the model is in error: %s", who, bn->model->errmsg);
        return ag_tape_nil(t);
    }
    if (!nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    if (ag_rank(x) != 4 || ag_dim(x, 1) != bn->channels) {
        char shape[NNI_SHAPE_STR];
        ag_tape_fail(t, AG_ESHAPE, "%s: input %s is not [N, %lld, H, W]", who,
                     nni_shape_str(x, shape, sizeof shape), (long long)bn->channels);
        return ag_tape_nil(t);
    }
    /* The running statistics go in as constants of the tape (no gradient)
    ** and, after a training pass, come back updated. */
    ag_dtype dt = ag_dtype_of(x);
    ag_tensor *rm = ag_empty(t, dt, 1, &bn->channels), *rv = ag_empty(t, dt, 1, &bn->channels);
    if (ag_tape_status(t) != AG_OK)
        return ag_tape_nil(t);
    for (int64_t i = 0; i < bn->channels; i++) {
        ag_set(rm, i, bn->running_mean[i]);
        ag_set(rv, i, bn->running_var[i]);
    }
    bool training = bn->model->training;
    ag_tensor *y = ag_batch_norm(t, x, bn->gamma, bn->beta, rm, rv, training, bn->momentum,
                                 bn->eps);
    if (training && ag_tape_status(t) == AG_OK)
        for (int64_t i = 0; i < bn->channels; i++) {
            bn->running_mean[i] = ag_get(rm, i);
            bn->running_var[i] = ag_get(rv, i);
        }
    return y;
}
