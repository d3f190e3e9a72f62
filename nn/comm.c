/*
** comm.c: the communicator's front (a sticky status over a table of backend
** functions, as nn_comm.h describes) and the data-parallel helpers built on
** its collectives: averaging gradients, broadcasting a model and its
** optimizer, and checking that every rank built the same model.
*/
#include "comm_internal.h"
#include "model_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct nn_comm {
    const nn_comm_ops *ops;
    void *ctx;
    ag_status status;
    char errmsg[256];
};

nn_comm *nn_comm_new(const nn_comm_ops *ops, void *ctx)
{
    nn_comm *c = ops ? ag_realloc(NULL, NULL, NULL, 0, sizeof *c) : NULL;
    if (!c) {
        if (ops && ops->free)
            ops->free(ctx);
        return NULL;
    }
    memset(c, 0, sizeof *c);
    c->ops = ops;
    c->ctx = ctx;
    return c;
}

void nn_comm_free(nn_comm *c)
{
    if (!c)
        return;
    if (c->ops->free)
        c->ops->free(c->ctx);
    ag_realloc(NULL, NULL, c, sizeof *c, 0);
}

int nn_comm_rank(const nn_comm *c) { return c ? c->ops->rank(c->ctx) : -1; }
int nn_comm_size(const nn_comm *c) { return c ? c->ops->size(c->ctx) : 0; }
const char *nn_comm_backend(const nn_comm *c) { return c ? c->ops->name : ""; }
ag_status nn_comm_status(const nn_comm *c) { return c ? c->status : AG_EINVAL; }
const char *nn_comm_errmsg(const nn_comm *c)
{
    return !c ? "nn_comm_errmsg: communicator is NULL" : c->errmsg;
}

/* The funnel: the first error wins. */
static ag_status fail(nn_comm *c, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static ag_status fail(nn_comm *c, ag_status s, const char *fmt, ...)
{
    if (c->status != AG_OK)
        return c->status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap);
    va_end(ap);
    c->status = s;
    return s;
}

/* A backend's error, its message prefixed with the function that called. */
static ag_status backend_result(nn_comm *c, const char *who, ag_status s, const char *msg)
{
    return s == AG_OK ? AG_OK : fail(c, s, "%s: %s", who, msg);
}

void nni_comm_sum_ranks(void *dst, const void *const *src, int nsrc, int64_t begin, int64_t end,
                        ag_dtype dt)
{
    if (dt == AG_F32) {
        float *d = dst;
        for (int64_t i = begin; i < end; i++) {
            float s = ((const float *)src[0])[i];
            for (int r = 1; r < nsrc; r++)
                s += ((const float *)src[r])[i];
            d[i] = s;
        }
    } else {
        double *d = dst;
        for (int64_t i = begin; i < end; i++) {
            double s = ((const double *)src[0])[i];
            for (int r = 1; r < nsrc; r++)
                s += ((const double *)src[r])[i];
            d[i] = s;
        }
    }
}

/* ------------------------------------------------------------- agreement */

/* The ranks learn whether any of them failed before a collective's data
** moves: a rank that refuses its arguments, or whose model is in error,
** still takes part, so that the others stop at the same call with an error
** naming it instead of waiting for it forever. 'mine' is this rank's
** verdict (AG_OK, or an error with 'why'). Returns AG_OK when every rank is
** well; otherwise every rank records an error: the lowest failing rank's
** status, and its message, named. With the backend's max_int this is one
** small collective; without, a sum of one number (and, when some rank
** failed, a vector of one number per rank). */
static ag_status agree(nn_comm *c, const char *who, ag_status mine, const char *why)
{
    int size = nn_comm_size(c), rank = nn_comm_rank(c);
    if (size == 1)
        return mine == AG_OK ? AG_OK : fail(c, mine, "%s", why);
    char msg[200] = "";
    ag_status s;
    int first = -1;
    if (c->ops->max_int) {
        int v = mine != AG_OK ? size - rank : 0;
        s = c->ops->max_int(c->ctx, &v, msg, sizeof msg);
        first = v > 0 ? size - v : -1;
    } else {
        double failed = mine != AG_OK;
        s = c->ops->allreduce_sum(c->ctx, &failed, 1, AG_F64, msg, sizeof msg);
        if (s == AG_OK && failed > 0) {
            size_t bytes = (size_t)size * sizeof(double);
            double *who_failed = ag_realloc(NULL, NULL, NULL, 0, bytes);
            /* Every rank must make the same calls: one that has no memory
            ** still sums (a vector of its own flag only would not do), so
            ** without memory the failing rank is not named. */
            if (who_failed) {
                memset(who_failed, 0, bytes);
                who_failed[rank] = mine != AG_OK;
                s = c->ops->allreduce_sum(c->ctx, who_failed, size, AG_F64, msg, sizeof msg);
                for (int r = 0; s == AG_OK && r < size && first < 0; r++)
                    if (who_failed[r] != 0)
                        first = r;
                ag_realloc(NULL, NULL, who_failed, bytes, 0);
            } else {
                double none = 0;
                s = c->ops->allreduce_sum(c->ctx, &none, 1, AG_F64, msg, sizeof msg);
                return s != AG_OK ? fail(c, s, "%s: %s", who, msg)
                                  : fail(c, AG_ENOMEM, "%s: a rank failed (out of memory to learn which)", who);
            }
        }
    }
    if (s != AG_OK)
        return fail(c, s, "%s: %s", who, msg);
    if (first < 0)
        return AG_OK;
    /* The failing rank's status and message, to every rank. */
    struct {
        int32_t status;
        char text[sizeof c->errmsg - 64];
    } told = {(int32_t)mine, ""};
    if (rank == first)
        snprintf(told.text, sizeof told.text, "%s", why);
    s = c->ops->broadcast(c->ctx, &told, sizeof told, first, msg, sizeof msg);
    if (s != AG_OK)
        return fail(c, s, "%s: %s", who, msg);
    if (rank == first)
        return fail(c, mine, "%s", why);
    told.text[sizeof told.text - 1] = '\0';
    return fail(c, (ag_status)told.status, "%s: rank %d failed, so this rank stops too: %s", who,
                first, told.text);
}

/* A rank's verdict on a call's arguments, written as fail() would. */
typedef struct verdict {
    ag_status status;
    char why[200];
} verdict;

static void refuse(verdict *v, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void refuse(verdict *v, ag_status s, const char *fmt, ...)
{
    if (v->status != AG_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->why, sizeof v->why, fmt, ap);
    va_end(ap);
    v->status = s;
}

static void check_allreduce(verdict *v, const char *who, const void *buf, int64_t n, ag_dtype dt)
{
    if (n < 0 || (n > 0 && !buf))
        refuse(v, AG_EINVAL, "%s: buffer %s of %lld elements", who, buf ? "given" : "NULL",
               (long long)n);
    else if (dt != AG_F32 && dt != AG_F64)
        refuse(v, AG_EDTYPE, "%s: dtype %d is neither f32 nor f64", who, (int)dt);
}

/* The collectives themselves, after agreement. */
static ag_status do_allreduce(nn_comm *c, const char *who, void *buf, int64_t n, ag_dtype dt)
{
    char msg[200] = "";
    return backend_result(c, who, c->ops->allreduce_sum(c->ctx, buf, n, dt, msg, sizeof msg), msg);
}

static ag_status do_broadcast(nn_comm *c, const char *who, void *buf, size_t bytes, int root)
{
    char msg[200] = "";
    return backend_result(c, who, c->ops->broadcast(c->ctx, buf, bytes, root, msg, sizeof msg), msg);
}

ag_status nn_comm_allreduce_sum(nn_comm *c, void *buf, int64_t n, ag_dtype dt)
{
    const char *who = "nn_comm_allreduce_sum";
    if (!c)
        return AG_EINVAL;
    if (c->status != AG_OK)
        return c->status;
    verdict v = {AG_OK, ""};
    check_allreduce(&v, who, buf, n, dt);
    ag_status s = agree(c, who, v.status, v.why);
    return s != AG_OK ? s : do_allreduce(c, who, buf, n, dt);
}

ag_status nn_comm_broadcast(nn_comm *c, void *buf, size_t bytes, int root)
{
    const char *who = "nn_comm_broadcast";
    if (!c)
        return AG_EINVAL;
    if (c->status != AG_OK)
        return c->status;
    verdict v = {AG_OK, ""};
    if (bytes > 0 && !buf)
        refuse(&v, AG_EINVAL, "%s: buffer is NULL", who);
    if (root < 0 || root >= nn_comm_size(c))
        refuse(&v, AG_EINVAL, "%s: root %d is not a rank of %d", who, root, nn_comm_size(c));
    ag_status s = agree(c, who, v.status, v.why);
    return s != AG_OK ? s : do_broadcast(c, who, buf, bytes, root);
}

ag_status nn_comm_barrier(nn_comm *c)
{
    if (!c)
        return AG_EINVAL;
    if (c->status != AG_OK)
        return c->status;
    /* The agreement is itself a meeting of all ranks. */
    ag_status s = agree(c, "nn_comm_barrier", AG_OK, "");
    char msg[200] = "";
    return s != AG_OK ? s
                      : backend_result(c, "nn_comm_barrier", c->ops->barrier(c->ctx, msg, sizeof msg), msg);
}

ag_status nn_comm_set_timeout(nn_comm *c, double seconds)
{
    if (!c)
        return AG_EINVAL;
    if (!(seconds >= 0) || seconds > 1e9)
        return fail(c, AG_EINVAL, "nn_comm_set_timeout: %g s (need 0 <= seconds <= 1e9)", seconds);
    if (!c->ops->set_timeout)
        return fail(c, AG_EUNSUPPORTED, "nn_comm_set_timeout: the %s backend has no timeout to set",
                    c->ops->name);
    c->ops->set_timeout(c->ctx, seconds);
    return AG_OK;
}

void nn_comm_abort(nn_comm *c, const char *why)
{
    if (!c)
        return;
    char text[sizeof c->errmsg];
    snprintf(text, sizeof text, "%s", why ? why : "nn_comm_abort");
    fail(c, AG_ESTATE, "nn_comm_abort: this rank left: %s", text);
    if (c->ops->abort)
        c->ops->abort(c->ctx, text);
}

/* ----------------------------------------------------------- data parallel */

/* The model checks every helper makes, agreed between ranks: a model in
** error on one rank stops them all. 'v' may carry a refusal already. */
static ag_status check_model_arg(nn_comm *c, const char *who, nn_model *m, verdict *v)
{
    if (!c)
        return AG_EINVAL;
    if (c->status != AG_OK)
        return c->status;
    if (!m)
        refuse(v, AG_EINVAL, "%s: model is NULL", who);
    else if (m->status != AG_OK)
        refuse(v, m->status, "%s: the model is in error: %s", who, m->errmsg);
    return agree(c, who, v->status, v->why);
}

ag_status nn_comm_average_grads(nn_comm *c, nn_model *m)
{
    const char *who = "nn_comm_average_grads";
    verdict v = {AG_OK, ""};
    ag_status s = check_model_arg(c, who, m, &v);
    if (s != AG_OK || m->numel == 0)
        return s;
    s = do_allreduce(c, who, m->grad, m->numel, m->dtype);
    if (s != AG_OK)
        return s;
    int size = nn_comm_size(c);
    if (size == 1)
        return AG_OK;
    /* Dividing (not multiplying by 1/size) gives the bits of a mean taken
    ** by one process wherever size is a power of two. */
    if (m->dtype == AG_F32) {
        float *g = m->grad, d = (float)size;
        for (int64_t i = 0; i < m->numel; i++)
            g[i] /= d;
    } else {
        double *g = m->grad, d = (double)size;
        for (int64_t i = 0; i < m->numel; i++)
            g[i] /= d;
    }
    return AG_OK;
}

ag_status nn_comm_broadcast_model(nn_comm *c, nn_model *m, nn_optim *o)
{
    const char *who = "nn_comm_broadcast_model";
    verdict v = {AG_OK, ""};
    bool with_optim = o && !nn_optim_is_nil(o);
    if (m && with_optim && nni_optim_model(o) != m)
        refuse(&v, AG_EINVAL, "%s: the optimizer updates another model", who);
    ag_status s = check_model_arg(c, who, m, &v);
    if (s != AG_OK)
        return s;
    size_t esize = ag_dtype_size(m->dtype);
    s = do_broadcast(c, who, m->value, (size_t)m->numel * esize, 0);
    /* Buffers (batch norm's running statistics) start as rank 0's too;
    ** after that each rank's follow its own shard, and rank 0's are what
    ** its checkpoints save (as PyTorch's DDP ends up with rank 0's). */
    if (s == AG_OK && m->buf_numel > 0)
        s = do_broadcast(c, who, m->buf_value, (size_t)m->buf_numel * esize, 0);
    if (s != AG_OK || !with_optim)
        return s;
    int64_t steps = nn_optim_steps(o);
    s = do_broadcast(c, who, &steps, sizeof steps, 0);
    int64_t numel = nni_optim_numel(o);
    for (int k = 0; s == AG_OK && k < nni_optim_n_state(o); k++)
        s = do_broadcast(c, who, nni_optim_state(o, k), (size_t)numel * esize, 0);
    if (s == AG_OK)
        nni_optim_set_steps(o, steps);
    return s;
}

/* FNV-1a over a parameter's name, dtype and shape. */
static uint64_t param_fingerprint(const ag_tensor *p)
{
    uint64_t h = 14695981039346656037u;
    const unsigned char *name = (const unsigned char *)ag_name(p);
    for (; name && *name; name++)
        h = (h ^ *name) * 1099511628211u;
    int64_t desc[2 + AG_MAX_DIMS] = {ag_dtype_of(p), ag_rank(p)};
    for (int d = 0; d < ag_rank(p); d++)
        desc[2 + d] = ag_shape(p)[d];
    const unsigned char *b = (const unsigned char *)desc;
    for (size_t i = 0; i < (size_t)(2 + ag_rank(p)) * sizeof *desc; i++)
        h = (h ^ b[i]) * 1099511628211u;
    return h;
}

/* "'fc1.weight' f32 [8,4]" for parameter i of m ("none" past its end). */
static void describe(const nn_model *m, int64_t i, char *buf, size_t n)
{
    if (i >= m->n_params) {
        snprintf(buf, n, "none");
        return;
    }
    const ag_tensor *p = m->params[i].tensor;
    char shape[NNI_SHAPE_STR];
    snprintf(buf, n, "'%s' %s %s", ag_name(p), ag_dtype_of(p) == AG_F32 ? "f32" : "f64",
             nni_shape_str(p, shape, sizeof shape));
}

ag_status nn_comm_check_model(nn_comm *c, nn_model *m)
{
    const char *who = "nn_comm_check_model";
    verdict v = {AG_OK, ""};
    ag_status s = check_model_arg(c, who, m, &v);
    if (s != AG_OK)
        return s;
    /* Rank 0's parameter count, then its fingerprints; each rank marks
    ** where it differs in a vector summed over ranks (slot n0: the count
    ** differs), so that every rank learns the first difference. */
    int64_t n0 = m->n_params;
    if ((s = do_broadcast(c, who, &n0, sizeof n0, 0)) != AG_OK)
        return s;
    size_t bytes = (size_t)(n0 + 1) * (sizeof(uint64_t) + sizeof(double));
    uint64_t *prints = ag_realloc(m->alloc, m->alloc_ud, NULL, 0, bytes);
    if (!prints)
        refuse(&v, AG_ENOMEM, "%s: out of memory for %lld parameters", who, (long long)n0);
    if ((s = agree(c, who, v.status, v.why)) != AG_OK) {
        ag_realloc(m->alloc, m->alloc_ud, prints, prints ? bytes : 0, 0);
        return s;
    }
    double *differs = (double *)(prints + n0 + 1);
    for (int64_t i = 0; i < n0 && i < m->n_params; i++)
        prints[i] = param_fingerprint(m->params[i].tensor);
    s = do_broadcast(c, who, prints, (size_t)n0 * sizeof *prints, 0);
    for (int64_t i = 0; i <= n0; i++)
        differs[i] = i < n0 ? (i >= m->n_params || prints[i] != param_fingerprint(m->params[i].tensor))
                            : (m->n_params != n0);
    if (s == AG_OK)
        s = do_allreduce(c, who, differs, n0 + 1, AG_F64);
    int64_t first = -1;
    for (int64_t i = 0; s == AG_OK && i <= n0 && first < 0; i++)
        if (differs[i] != 0)
            first = i;
    double ranks = first >= 0 ? differs[first] : 0;
    ag_realloc(m->alloc, m->alloc_ud, prints, bytes, 0);
    if (s != AG_OK || first < 0)
        return s;
    if (first == n0)
        return fail(c, AG_ESHAPE, "%s: %.0f rank(s) have a parameter count other than rank 0's %lld "
                    "(this rank: %d)", who, ranks, (long long)n0, m->n_params);
    /* Every rank reached this point with the same 'first': rank 0 names it. */
    char theirs[128], mine[128];
    describe(m, first, theirs, sizeof theirs);
    describe(m, first, mine, sizeof mine);
    if ((s = do_broadcast(c, who, theirs, sizeof theirs, 0)) != AG_OK)
        return s;
    int rank = nn_comm_rank(c);
    if (rank == 0)
        return fail(c, AG_ESHAPE, "%s: parameter %lld (rank 0's %s) differs on %.0f other rank(s)",
                    who, (long long)first, theirs, ranks);
    return fail(c, AG_ESHAPE, "%s: parameter %lld differs on %.0f rank(s): rank 0 has %s, rank %d has %s",
                who, (long long)first, ranks, theirs, rank, mine);
}
