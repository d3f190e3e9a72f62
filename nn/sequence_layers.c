/*
** sequence_layers.c: layers of sequence models that a convolutional network
** may use too: nn_layernorm (ag_layer_norm over the last axes, PyTorch's
** nn.LayerNorm) and nn_embedding (a table of vectors looked up by token
** with ag_index_select, PyTorch's nn.Embedding).
*/
#include "model_internal.h"

#include <string.h>

/* ------------------------------------------------------ layer normalisation */

struct nn_layernorm {
    nn_model *model;
    ag_tensor *gamma, *beta;   /* NULL without the affine part */
    int ndims;
    int64_t shape[AG_MAX_DIMS];
    double eps;
};

static nn_layernorm nil_layernorm;

int nn_layernorm_is_nil(const nn_layernorm *ln) { return !ln || ln == &nil_layernorm; }
ag_tensor *nn_layernorm_weight(const nn_layernorm *ln)
{
    return nn_layernorm_is_nil(ln) ? NULL : ln->gamma;
}
ag_tensor *nn_layernorm_bias(const nn_layernorm *ln)
{
    return nn_layernorm_is_nil(ln) ? NULL : ln->beta;
}

nn_layernorm *nn_layernorm_new(nn_model *m, const char *name, ag_dtype dt, int ndims,
                               const int64_t *shape, double eps, int affine)
{
    static const char who[] = "nn_layernorm_new";
    if (!m || m->status != AG_OK)
        return &nil_layernorm;
    if (ndims < 1 || ndims > AG_MAX_DIMS || !shape || !(eps >= 0)) {
        nn_model_fail(m, AG_EINVAL,
                      "%s: layer '%s': %d normalised axes (1 to %d) with shape %s, eps %g >= 0",
                      who, name ? name : "", ndims, AG_MAX_DIMS, shape ? "given" : "NULL", eps);
        return &nil_layernorm;
    }
    for (int i = 0; i < ndims; i++)
        if (shape[i] < 1) {
            nn_model_fail(m, AG_ESHAPE, "%s: layer '%s': normalised size %d is %lld; sizes must "
                          "be >= 1", who, name ? name : "", i, (long long)shape[i]);
            return &nil_layernorm;
        }
    char wname[64], bname[64];
    if (!nni_join_name(m, who, wname, name, "weight") ||
        !nni_join_name(m, who, bname, name, "bias"))
        return &nil_layernorm;
    nn_layernorm *ln = nni_model_alloc(m, who, sizeof *ln);
    if (!ln)
        return &nil_layernorm;
    *ln = (nn_layernorm){.model = m, .ndims = ndims, .eps = eps};
    memcpy(ln->shape, shape, (size_t)ndims * sizeof *shape);
    if (affine) {
        ln->gamma = nn_param(m, wname, dt, ndims, shape);
        ln->beta = nn_param(m, bname, dt, ndims, shape);
        if (m->status != AG_OK)
            return &nil_layernorm;
        nn_init_constant(ln->gamma, 1.0);
    }
    return ln;
}

ag_tensor *nn_layernorm_forward(ag_tape *t, const nn_layernorm *ln, ag_tensor *x)
{
    static const char who[] = "nn_layernorm_forward";
    if (!nni_layer_usable(t, who, ln, ln == &nil_layernorm, ln ? ln->model : NULL) ||
        !nni_check_input(t, who, "the input", x))
        return ag_tape_nil(t);
    int lead = ag_rank(x) - ln->ndims;
    if (lead < 0 || memcmp(ag_shape(x) + lead, ln->shape, (size_t)ln->ndims * sizeof *ln->shape)) {
        char got[NNI_SHAPE_STR], want[NNI_SHAPE_STR];
        ag_shape_str(want, sizeof want, ln->ndims, ln->shape);
        ag_tape_fail(t, AG_ESHAPE, "%s: input %s does not end in the normalised shape %s", who,
                     nni_shape_str(x, got, sizeof got), want);
        return ag_tape_nil(t);
    }
    return ag_layer_norm(t, x, ln->ndims, ln->gamma, ln->beta, ln->eps);
}

/* -------------------------------------------------------------- embeddings */

struct nn_embedding {
    nn_model *model;
    ag_tensor *weight;   /* [num, dim] */
    int64_t num, dim;
};

static nn_embedding nil_embedding;

int nn_embedding_is_nil(const nn_embedding *e) { return !e || e == &nil_embedding; }
ag_tensor *nn_embedding_weight(const nn_embedding *e)
{
    return nn_embedding_is_nil(e) ? NULL : e->weight;
}

nn_embedding *nn_embedding_new(nn_model *m, const char *name, ag_dtype dt, int64_t num,
                               int64_t dim)
{
    static const char who[] = "nn_embedding_new";
    if (!m || m->status != AG_OK)
        return &nil_embedding;
    if (num < 1 || dim < 1) {
        nn_model_fail(m, AG_ESHAPE, "%s: layer '%s' has %lld vectors of size %lld; both must "
                      "be >= 1", who, name ? name : "", (long long)num, (long long)dim);
        return &nil_embedding;
    }
    char wname[64];
    if (!nni_join_name(m, who, wname, name, "weight"))
        return &nil_embedding;
    nn_embedding *e = nni_model_alloc(m, who, sizeof *e);
    if (!e)
        return &nil_embedding;
    *e = (nn_embedding){.model = m, .num = num, .dim = dim};
    e->weight = nn_param(m, wname, dt, 2, (int64_t[]){num, dim});
    if (m->status != AG_OK)
        return &nil_embedding;
    ag_fill_normal(e->weight, &m->rng, 0.0, 1.0);   /* PyTorch's N(0, 1) */
    return e;
}

ag_tensor *nn_embedding_forward(ag_tape *t, const nn_embedding *e, int rank, const int64_t *shape,
                                const int64_t *tokens)
{
    static const char who[] = "nn_embedding_forward";
    if (!nni_layer_usable(t, who, e, e == &nil_embedding, e ? e->model : NULL))
        return ag_tape_nil(t);
    if (rank < 0 || rank >= AG_MAX_DIMS || (rank > 0 && !shape)) {
        ag_tape_fail(t, AG_EINVAL, "%s: rank %d must be 0 to %d, with a shape (%s)", who, rank,
                     AG_MAX_DIMS - 1, shape ? "given" : "NULL");
        return ag_tape_nil(t);
    }
    int64_t n = 1, out[AG_MAX_DIMS];
    for (int d = 0; d < rank; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && n > INT64_MAX / 16 / shape[d])) {
            ag_tape_fail(t, AG_ESHAPE, "%s: token dimension %d is %lld", who, d,
                         (long long)shape[d]);
            return ag_tape_nil(t);
        }
        n *= shape[d];
        out[d] = shape[d];
    }
    out[rank] = e->dim;
    if (n > 0 && !tokens) {
        ag_tape_fail(t, AG_EINVAL, "%s: %lld tokens but tokens is NULL", who, (long long)n);
        return ag_tape_nil(t);
    }
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= e->num) {
            ag_tape_fail(t, AG_EINVAL, "%s: token %lld at position %lld is outside [0, %lld) of "
                         "'%s'", who, (long long)tokens[i], (long long)i, (long long)e->num,
                         ag_name(e->weight));
            return ag_tape_nil(t);
        }
    /* ag_index_select copies the tokens into the tape's arena. */
    ag_tensor *rows = ag_index_select(t, e->weight, 0, n, tokens);
    return ag_reshape(t, rows, rank + 1, out);
}
