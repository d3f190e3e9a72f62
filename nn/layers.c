/*
** layers.c: the building blocks of a forward pass: activations by name,
** inverted dropout, dense layers (y = x @ W + b, W stored [in, out]) and
** sequential MLPs made of dense layers.
*/
#include "model_internal.h"

#include <math.h>
#include <string.h>

bool nni_check_input(ag_tape *t, const char *who, const char *what, const ag_tensor *x)
{
    if (ag_tape_status(t) != AG_OK)
        return false;
    if (ag_is_nil(x)) {
        ag_tape_fail(t, AG_EINVAL, "%s: %s is %s", who, what,
                     x ? "the nil tensor of a failed op" : "NULL");
        return false;
    }
    return true;
}

const char *nni_shape_str(const ag_tensor *x, char *buf, size_t n)
{
    ag_shape_str(buf, n, ag_rank(x), ag_shape(x));
    return buf;
}

/* ------------------------------------------------------------- activations */

static const char *const activation_names[] = {
    [NN_IDENTITY] = "identity", [NN_RELU] = "relu",       [NN_LEAKY_RELU] = "leaky_relu",
    [NN_TANH] = "tanh",         [NN_SIGMOID] = "sigmoid", [NN_GELU] = "gelu",
    [NN_SOFTPLUS] = "softplus",
};
_Static_assert(sizeof activation_names / sizeof activation_names[0] == NN_ACTIVATION_COUNT,
               "one name per activation");

const char *nn_activation_name(nn_activation act)
{
    return (unsigned)act < NN_ACTIVATION_COUNT ? activation_names[act] : "?";
}

ag_tensor *nn_activate(ag_tape *t, nn_activation act, ag_tensor *x)
{
    switch (act) {
    case NN_IDENTITY: return x;
    case NN_RELU: return ag_relu(t, x);
    case NN_LEAKY_RELU: return ag_leaky_relu(t, x, NN_LEAKY_RELU_SLOPE);
    case NN_TANH: return ag_tanh(t, x);
    case NN_SIGMOID: return ag_sigmoid(t, x);
    case NN_GELU: return ag_gelu(t, x);
    case NN_SOFTPLUS: return ag_softplus(t, x);
    case NN_ACTIVATION_COUNT: break;
    }
    ag_tape_fail(t, AG_EINVAL, "nn_activate: activation %d is not an nn_activation", (int)act);
    return ag_tape_nil(t);
}

/* ----------------------------------------------------------------- dropout */

/* Inverted dropout, its errors naming 'who': the function the caller called. */
static ag_tensor *dropout(ag_tape *t, const char *who, ag_rng *r, ag_tensor *x, double p,
                          int training)
{
    if (!nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    if (!(p >= 0.0 && p <= 1.0)) {
        ag_tape_fail(t, AG_EINVAL, "%s: probability %g is outside [0, 1]", who, p);
        return ag_tape_nil(t);
    }
    if (!training || p == 0.0)
        return x;
    if (!r) {
        ag_tape_fail(t, AG_EINVAL, "%s: generator is NULL", who);
        return ag_tape_nil(t);
    }
    if (p == 1.0)
        return ag_mul_scalar(t, x, 0.0);
    ag_dtype dt = ag_dtype_of(x);
    /* keep = (u >= p) / (1 - p): a constant of the tape, so only x gets a gradient. */
    ag_tensor *u = ag_rand(t, r, dt, ag_rank(x), ag_shape(x), 0.0, 1.0);
    ag_tensor *keep = ag_ge(t, u, ag_scalar(t, dt, p));
    return ag_mul(t, x, ag_mul_scalar(t, keep, 1.0 / (1.0 - p)));
}

ag_tensor *nn_dropout_with(ag_tape *t, ag_rng *r, ag_tensor *x, double p, int training)
{
    return dropout(t, "nn_dropout_with", r, x, p, training);
}

ag_tensor *nn_dropout(ag_tape *t, nn_model *m, ag_tensor *x, double p)
{
    if (!m) {
        ag_tape_fail(t, AG_EINVAL, "nn_dropout: model is NULL");
        return ag_tape_nil(t);
    }
    return dropout(t, "nn_dropout", &m->rng, x, p, m->training);
}

/* ------------------------------------------------------------ dense layers */

struct nn_dense {
    nn_model *model;
    ag_tensor *weight, *bias;
    int64_t in, out;
};

/* Returned by failed constructors: forward on it reports an error. */
static nn_dense nil_dense;

int nn_dense_is_nil(const nn_dense *d) { return !d || d == &nil_dense; }
ag_tensor *nn_dense_weight(const nn_dense *d) { return nn_dense_is_nil(d) ? NULL : d->weight; }
ag_tensor *nn_dense_bias(const nn_dense *d) { return nn_dense_is_nil(d) ? NULL : d->bias; }

/* A dense layer with zeroed parameters, or nil; the caller initialises. */
static nn_dense *dense_make(nn_model *m, const char *who, const char *name, ag_dtype dt,
                            int64_t in, int64_t out, int bias)
{
    if (!m || m->status != AG_OK)
        return &nil_dense;
    if (in < 1 || out < 1) {
        nn_model_fail(m, AG_ESHAPE, "%s: layer '%s' is %lld -> %lld; both sizes must be >= 1",
                      who, name ? name : "", (long long)in, (long long)out);
        return &nil_dense;
    }
    char wname[64], bname[64];
    if (!nni_join_name(m, who, wname, name, "weight") ||
        !nni_join_name(m, who, bname, name, "bias"))
        return &nil_dense;
    nn_dense *d = nni_model_alloc(m, who, sizeof *d);
    if (!d)
        return &nil_dense;
    d->model = m;
    d->in = in;
    d->out = out;
    d->weight = nn_param(m, wname, dt, 2, (int64_t[]){in, out});
    d->bias = bias ? nn_param(m, bname, dt, 1, &out) : NULL;
    return m->status == AG_OK ? d : &nil_dense;
}

nn_dense *nn_dense_new(nn_model *m, const char *name, ag_dtype dt, int64_t in, int64_t out,
                       int bias)
{
    nn_dense *d = dense_make(m, "nn_dense_new", name, dt, in, out, bias);
    if (!nn_dense_is_nil(d))
        nn_init_xavier_uniform(d->weight, &m->rng, 1.0);
    return d;
}

bool nni_layer_usable(ag_tape *t, const char *who, const void *layer, bool nil,
                      const nn_model *m)
{
    if (ag_tape_status(t) != AG_OK)
        return false;
    if (!layer || nil) {
        ag_tape_fail(t, AG_EINVAL, "%s: the layer is %s", who,
                     layer ? "nil (its constructor failed: see nn_model_errmsg)" : "NULL");
        return false;
    }
    if (m->status != AG_OK) {
        ag_tape_fail(t, AG_ESTATE, "%s: the model is in error: %s", who, m->errmsg);
        return false;
    }
    return true;
}

/* The layer, then 'act' fused into it (one op: ag_dense) where the core
** has it, else recorded after it. Errors name 'who'. */
static ag_tensor *dense_act(ag_tape *t, const char *who, const nn_dense *d, ag_tensor *x,
                            nn_activation act)
{
    if (!nni_layer_usable(t, who, d, d == &nil_dense, d ? d->model : NULL) ||
        !nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    if (ag_rank(x) < 1 || ag_dim(x, -1) != d->in) {
        char shape[NNI_SHAPE_STR];
        ag_tape_fail(t, AG_ESHAPE, "%s: input %s does not end in %lld, the input size of "
                     "'%s' [%lld,%lld]", who, nni_shape_str(x, shape, sizeof shape),
                     (long long)d->in, ag_name(d->weight), (long long)d->in, (long long)d->out);
        return ag_tape_nil(t);
    }
    switch (act) {
    case NN_RELU: return ag_dense(t, x, d->weight, d->bias, AG_ACT_RELU);
    case NN_SIGMOID: return ag_dense(t, x, d->weight, d->bias, AG_ACT_SIGMOID);
    case NN_TANH: return ag_dense(t, x, d->weight, d->bias, AG_ACT_TANH);
    default:
        return nn_activate(t, act, ag_dense(t, x, d->weight, d->bias, AG_ACT_IDENTITY));
    }
}

ag_tensor *nn_dense_forward(ag_tape *t, const nn_dense *d, ag_tensor *x)
{
    return dense_act(t, "nn_dense_forward", d, x, NN_IDENTITY);
}

/* -------------------------------------------------------------------- MLPs */

struct nn_mlp {
    nn_model *model;
    nn_dense **layers;
    int depth;
    nn_activation act;
    double dropout;
};

static nn_mlp nil_mlp;

int nn_mlp_is_nil(const nn_mlp *mlp) { return !mlp || mlp == &nil_mlp; }
int nn_mlp_depth(const nn_mlp *mlp) { return nn_mlp_is_nil(mlp) ? 0 : mlp->depth; }

nn_dense *nn_mlp_layer(const nn_mlp *mlp, int i)
{
    return !nn_mlp_is_nil(mlp) && i >= 0 && i < mlp->depth ? mlp->layers[i] : NULL;
}

/* He/Kaiming for the ReLU family (and GELU), Glorot/Xavier otherwise. */
static void init_for(ag_tensor *w, ag_rng *r, nn_activation act)
{
    if (act == NN_RELU || act == NN_LEAKY_RELU || act == NN_GELU)
        nn_init_kaiming_uniform(w, r, nn_init_gain(act));
    else
        nn_init_xavier_uniform(w, r, nn_init_gain(act));
}

nn_mlp *nn_mlp_new(nn_model *m, const char *name, ag_dtype dt, int n_sizes, const int64_t *sizes,
                   nn_activation act)
{
    static const char who[] = "nn_mlp_new";
    if (!m || m->status != AG_OK)
        return &nil_mlp;
    if (n_sizes < 2 || !sizes) {
        nn_model_fail(m, AG_EINVAL, "%s: %d sizes%s; an MLP needs at least 2", who, n_sizes,
                      sizes ? "" : " (sizes is NULL)");
        return &nil_mlp;
    }
    if ((unsigned)act >= NN_ACTIVATION_COUNT) {
        nn_model_fail(m, AG_EINVAL, "%s: activation %d is not an nn_activation", who, (int)act);
        return &nil_mlp;
    }
    nn_mlp *mlp = nni_model_alloc(m, who, sizeof *mlp);
    nn_dense **layers = mlp ? nni_model_alloc(m, who, (size_t)(n_sizes - 1) * sizeof *layers)
                            : NULL;
    if (!layers)
        return &nil_mlp;
    *mlp = (nn_mlp){m, layers, n_sizes - 1, act, 0.0};
    for (int i = 0; i < mlp->depth; i++) {
        char index[16], lname[64];
        snprintf(index, sizeof index, "%d", i);
        if (!nni_join_name(m, who, lname, name, index))
            return &nil_mlp;
        nn_dense *d = dense_make(m, who, lname, dt, sizes[i], sizes[i + 1], 1);
        if (nn_dense_is_nil(d))
            return &nil_mlp;
        /* The last layer feeds no activation: Glorot with gain 1. */
        init_for(d->weight, &m->rng, i + 1 < mlp->depth ? act : NN_IDENTITY);
        layers[i] = d;
    }
    return mlp;
}

void nn_mlp_set_dropout(nn_mlp *mlp, double p)
{
    if (nn_mlp_is_nil(mlp))
        return;
    if (!(p >= 0.0 && p < 1.0)) {
        nn_model_fail(mlp->model, AG_EINVAL, "nn_mlp_set_dropout: probability %g is outside "
                      "[0, 1)", p);
        return;
    }
    mlp->dropout = p;
}

ag_tensor *nn_mlp_forward(ag_tape *t, const nn_mlp *mlp, ag_tensor *x)
{
    if (!nni_layer_usable(t, "nn_mlp_forward", mlp, mlp == &nil_mlp, mlp ? mlp->model : NULL))
        return ag_tape_nil(t);
    for (int i = 0; i < mlp->depth; i++) {
        bool hidden = i + 1 < mlp->depth;
        x = dense_act(t, "nn_mlp_forward", mlp->layers[i], x, hidden ? mlp->act : NN_IDENTITY);
        if (hidden && mlp->dropout > 0.0)
            x = nn_dropout(t, mlp->model, x, mlp->dropout);
    }
    return x;
}
