/*
** conv_layers.c: the layers of a convolutional network: nn_conv2d
** (ag_conv2d with the model's parameters; the weight is stored
** [out, in / groups, k, k], PyTorch's own layout, so a checkpoint exchanged
** with PyTorch needs no transpose), nn_batchnorm2d (ag_batch_norm following
** the model's mode, its running statistics buffers of the model) and the
** pooling layers (max, average, global average), which have no parameters.
*/
#include "model_internal.h"

#include <math.h>
#include <string.h>

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
    ag_tensor *running_mean, *running_var;   /* buffers of the model, [channels] */
    int64_t channels, num_batches_tracked;
    double momentum, eps;
};

static nn_batchnorm2d nil_batchnorm2d;

int nn_batchnorm2d_is_nil(const nn_batchnorm2d *bn) { return !bn || bn == &nil_batchnorm2d; }
ag_tensor *nn_batchnorm2d_running_mean(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? NULL : bn->running_mean;
}
ag_tensor *nn_batchnorm2d_running_var(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? NULL : bn->running_var;
}
ag_tensor *nn_batchnorm2d_weight(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? NULL : bn->gamma;
}
ag_tensor *nn_batchnorm2d_bias(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? NULL : bn->beta;
}
int64_t nn_batchnorm2d_num_batches_tracked(const nn_batchnorm2d *bn)
{
    return nn_batchnorm2d_is_nil(bn) ? 0 : bn->num_batches_tracked;
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
    char wname[64], bname[64], mname[64], vname[64];
    if (!nni_join_name(m, who, wname, name, "weight") ||
        !nni_join_name(m, who, bname, name, "bias") ||
        !nni_join_name(m, who, mname, name, "running_mean") ||
        !nni_join_name(m, who, vname, name, "running_var"))
        return &nil_batchnorm2d;
    nn_batchnorm2d *bn = nni_model_alloc(m, who, sizeof *bn);
    if (!bn)
        return &nil_batchnorm2d;
    *bn = (nn_batchnorm2d){.model = m, .channels = channels, .momentum = momentum, .eps = eps};
    if (affine) {
        bn->gamma = nn_param(m, wname, dt, 1, &channels);
        bn->beta = nn_param(m, bname, dt, 1, &channels);
    }
    bn->running_mean = nn_buffer(m, mname, dt, 1, &channels);
    bn->running_var = nn_buffer(m, vname, dt, 1, &channels);
    if (m->status != AG_OK)
        return &nil_batchnorm2d;
    if (affine)
        nn_init_constant(bn->gamma, 1.0);
    nn_init_constant(bn->running_var, 1.0);   /* PyTorch's start: mean 0, variance 1 */
    return bn;
}

ag_tensor *nn_batchnorm2d_forward(ag_tape *t, nn_batchnorm2d *bn, ag_tensor *x)
{
    static const char who[] = "nn_batchnorm2d_forward";
    if (!nni_layer_usable(t, who, bn, bn == &nil_batchnorm2d, bn ? bn->model : NULL) ||
        !nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    if (ag_rank(x) != 4 || ag_dim(x, 1) != bn->channels) {
        char shape[NNI_SHAPE_STR];
        ag_tape_fail(t, AG_ESHAPE, "%s: input %s is not [N, %lld, H, W] for '%s'", who,
                     nni_shape_str(x, shape, sizeof shape), (long long)bn->channels,
                     ag_name(bn->running_mean));
        return ag_tape_nil(t);
    }
    ag_dtype dt = ag_dtype_of(bn->running_mean);
    if (ag_dtype_of(x) != dt) {
        ag_tape_fail(t, AG_EDTYPE, "%s: input is %s but '%s' is %s", who,
                     ag_dtype_name(ag_dtype_of(x)), ag_name(bn->running_mean), ag_dtype_name(dt));
        return ag_tape_nil(t);
    }
    /* The running statistics go in as constants of the tape (copies: no
    ** gradient reaches the buffers) and, after a training pass, come back
    ** updated. The copies are arena memory, so a step allocates nothing. */
    bool training = bn->model->training;
    size_t bytes = (size_t)bn->channels * ag_dtype_size(dt);
    ag_tensor *rm = ag_tensor_from(t, dt, 1, &bn->channels, ag_data(bn->running_mean));
    ag_tensor *rv = ag_tensor_from(t, dt, 1, &bn->channels, ag_data(bn->running_var));
    ag_tensor *y = ag_batch_norm(t, x, bn->gamma, bn->beta, rm, rv, training, bn->momentum,
                                 bn->eps);
    if (training && ag_tape_status(t) == AG_OK) {
        memcpy(ag_data(bn->running_mean), ag_data(rm), bytes);
        memcpy(ag_data(bn->running_var), ag_data(rv), bytes);
        bn->num_batches_tracked++;
    }
    return y;
}

/* ----------------------------------------------------------------- pooling */

typedef enum pool_kind { POOL_MAX, POOL_AVG, POOL_GLOBAL_AVG } pool_kind;

struct nn_pool2d {
    nn_model *model;
    pool_kind kind;
    int kernel, stride, pad;   /* unused by global pooling */
};

static nn_pool2d nil_pool2d;

int nn_pool2d_is_nil(const nn_pool2d *p) { return !p || p == &nil_pool2d; }

static nn_pool2d *pool_make(nn_model *m, const char *who, pool_kind kind, int kernel, int stride,
                            int pad)
{
    if (!m || m->status != AG_OK)
        return &nil_pool2d;
    if (kind != POOL_GLOBAL_AVG && (kernel < 1 || stride < 0 || pad < 0 || pad > kernel / 2)) {
        nn_model_fail(m, AG_EINVAL,
                      "%s: kernel %d must be >= 1, stride %d >= 0 (0: the kernel) and padding "
                      "%d between 0 and kernel / 2",
                      who, kernel, stride, pad);
        return &nil_pool2d;
    }
    nn_pool2d *p = nni_model_alloc(m, who, sizeof *p);
    if (!p)
        return &nil_pool2d;
    *p = (nn_pool2d){.model = m, .kind = kind, .kernel = kernel,
                     .stride = stride ? stride : kernel, .pad = pad};
    return p;
}

nn_pool2d *nn_maxpool2d_new(nn_model *m, int kernel, int stride, int pad)
{
    return pool_make(m, "nn_maxpool2d_new", POOL_MAX, kernel, stride, pad);
}

nn_pool2d *nn_avgpool2d_new(nn_model *m, int kernel, int stride, int pad)
{
    return pool_make(m, "nn_avgpool2d_new", POOL_AVG, kernel, stride, pad);
}

nn_pool2d *nn_global_avgpool2d_new(nn_model *m)
{
    return pool_make(m, "nn_global_avgpool2d_new", POOL_GLOBAL_AVG, 0, 0, 0);
}

ag_tensor *nn_pool2d_forward(ag_tape *t, const nn_pool2d *p, ag_tensor *x)
{
    static const char who[] = "nn_pool2d_forward";
    if (!nni_layer_usable(t, who, p, p == &nil_pool2d, p ? p->model : NULL) ||
        !nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    int64_t k = p->kind == POOL_GLOBAL_AVG ? 1 : p->kernel, pad = 2 * (int64_t)p->pad;
    if (ag_rank(x) != 4 || ag_dim(x, 2) + pad < k || ag_dim(x, 3) + pad < k) {
        char shape[NNI_SHAPE_STR];
        ag_tape_fail(t, AG_ESHAPE, "%s: input %s is not [N, C, H, W] with H and W padded by %d "
                     "at least the kernel %lld", who, nni_shape_str(x, shape, sizeof shape),
                     p->kind == POOL_GLOBAL_AVG ? 0 : p->pad, (long long)k);
        return ag_tape_nil(t);
    }
    switch (p->kind) {
    case POOL_MAX:
        return ag_max_pool2d(t, x, p->kernel, p->kernel, p->stride, p->stride, p->pad, p->pad);
    case POOL_AVG:
        return ag_avg_pool2d(t, x, p->kernel, p->kernel, p->stride, p->stride, p->pad, p->pad);
    case POOL_GLOBAL_AVG: break;
    }
    return ag_global_avg_pool2d(t, x);
}
