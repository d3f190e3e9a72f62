/*
** model.c: models own their parameters in one flat value buffer and one
** flat gradient buffer, plus the memory of their layers; and they carry a
** sticky error status, a generator and the training flag.
*/
#include "model_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *nni_realloc(const nn_model *m, void *p, size_t osize, size_t nsize)
{
    return ag_realloc(m->alloc, m->alloc_ud, p, osize, nsize);
}

nn_model *nn_model_new(ag_alloc_fn fn, void *ud)
{
    nn_model *m = ag_realloc(fn, ud, NULL, 0, sizeof *m);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->alloc = fn;
    m->alloc_ud = ud;
    m->training = true;
    ag_rng_seed(&m->rng, 0);
    return m;
}

void nn_model_free(nn_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_params; i++)
        ag_param_free_claimed(m->params[i].tensor, m);
    for (int i = 0; i < m->n_buffers; i++)
        ag_param_free_claimed(m->buffers[i].tensor, m);
    nni_realloc(m, m->params, (size_t)m->cap_params * sizeof *m->params, 0);
    nni_realloc(m, m->buffers, (size_t)m->cap_buffers * sizeof *m->buffers, 0);
    nni_realloc(m, m->block, m->block_bytes, 0);
    nni_realloc(m, m->buf_value, 2 * (size_t)m->buf_cap * ag_dtype_size(m->dtype), 0);
    for (nni_block *b = m->blocks; b;) {
        nni_block *next = b->next;
        nni_realloc(m, b, b->size, 0);
        b = next;
    }
    nni_realloc(m, m, sizeof *m, 0);
}

/* ------------------------------------------------------------------ errors */

void nn_model_fail(nn_model *m, ag_status s, const char *fmt, ...)
{
    if (!m || m->status != AG_OK || s == AG_OK)
        return;
    m->status = s;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->errmsg, sizeof m->errmsg, fmt, ap);
    va_end(ap);
}

ag_status nn_model_status(const nn_model *m) { return m ? m->status : AG_EINVAL; }

const char *nn_model_errmsg(const nn_model *m)
{
    return m ? m->errmsg : "nn_model_errmsg: model is NULL";
}

/* ------------------------------------------------------------ owned memory */

void *nni_model_alloc(nn_model *m, const char *who, size_t size)
{
    if (size > SIZE_MAX - sizeof(nni_block) - 16) {
        nn_model_fail(m, AG_ENOMEM, "%s: %zu bytes are too many", who, size);
        return NULL;
    }
    /* The header is padded to 16 bytes so the payload is as aligned as malloc's. */
    size_t head = (sizeof(nni_block) + 15) & ~(size_t)15;
    nni_block *b = nni_realloc(m, NULL, 0, head + size);
    if (!b) {
        nn_model_fail(m, AG_ENOMEM, "%s: out of memory allocating %zu bytes", who, head + size);
        return NULL;
    }
    memset(b, 0, head + size);
    b->size = head + size;
    b->next = m->blocks;
    m->blocks = b;
    return (char *)b + head;
}

bool nni_join_name(nn_model *m, const char *who, char *buf, const char *prefix, const char *suffix)
{
    int n = prefix && prefix[0] ? snprintf(buf, 64, "%s.%s", prefix, suffix)
                                : snprintf(buf, 64, "%s", suffix);
    if (n < 0 || n > 63) {
        nn_model_fail(m, AG_EINVAL, "%s: name '%s%s%s' is longer than 63 bytes", who,
                      prefix ? prefix : "", prefix && prefix[0] ? "." : "", suffix);
        return false;
    }
    return true;
}

/* -------------------------------------------------------------- parameters */

/* Makes room for 'more' elements. New buffers are made and filled before the
** old ones are let go, so a failure leaves every parameter where it was.
** Growth is by a quarter, or exactly to what is asked when that is more: a
** model of one large layer gets buffers of its size (doubling to a power of
** two once made a 600 MB model ask for 2 GiB), and one built a layer at a
** time still copies each element only a few times in all. */
static bool reserve(nn_model *m, int64_t more)
{
    if (m->numel + more <= m->cap && m->value)
        return true;
    if (more > INT64_MAX - m->numel)
        return false;
    int64_t need = m->numel + more;
    int64_t cap = m->cap ? m->cap + m->cap / 4 : 64;
    if (cap < need)
        cap = need;
    size_t es = ag_dtype_size(m->dtype);
    if ((uint64_t)cap > SIZE_MAX / es)
        return false;
    size_t bytes = (size_t)cap * es, used = (size_t)m->numel * es;
    if (bytes > (SIZE_MAX - 2 * NNI_PAGE) / 2)
        return false;
    size_t block_bytes = 2 * bytes + 2 * NNI_PAGE;
    char *block = nni_realloc(m, NULL, 0, block_bytes);
    if (!block)
        return false;
    char *value = nni_page_slot(block, 0);
    char *grad = nni_page_slot(value + bytes, NNI_PAGE / 4);
    if (used) {
        memcpy(value, m->value, used);
        memcpy(grad, m->grad, used);
    }
    memset(value + used, 0, bytes - used);
    memset(grad + used, 0, bytes - used);
    for (int i = 0; i < m->n_params; i++) {
        size_t at = (size_t)m->params[i].offset * es;
        ag_param_rebind(m->params[i].tensor, value + at, grad + at);
    }
    nni_realloc(m, m->block, m->block_bytes, 0);
    m->block = block;
    m->block_bytes = block_bytes;
    m->value = value;
    m->grad = grad;
    m->cap = cap;
    return true;
}

static bool reserve_entry(nn_model *m)
{
    if (m->n_params < m->cap_params)
        return true;
    int cap = m->cap_params ? m->cap_params * 2 : 16;
    nni_param *p = nni_realloc(m, m->params, (size_t)m->cap_params * sizeof *p,
                               (size_t)cap * sizeof *p);
    if (!p)
        return false;
    m->params = p;
    m->cap_params = cap;
    return true;
}

/* The element count of a shape, or -1 (with the error recorded) if invalid. */
static int64_t checked_numel(nn_model *m, const char *who, const char *name, int rank,
                             const int64_t *shape)
{
    if (rank < 0 || rank > AG_MAX_DIMS) {
        nn_model_fail(m, AG_ESHAPE, "%s: '%s' has rank %d, outside 0..%d", who, name,
                      rank, AG_MAX_DIMS);
        return -1;
    }
    if (rank > 0 && !shape) {
        nn_model_fail(m, AG_EINVAL, "%s: '%s' has rank %d but shape is NULL", who, name,
                      rank);
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > (INT64_MAX / 16) / shape[i])) {
            nn_model_fail(m, AG_ESHAPE, "%s: '%s' has invalid dimension %d (%lld)", who, name,
                          i, (long long)shape[i]);
            return -1;
        }
        n *= shape[i];
    }
    return n;
}

/* The checks nn_param and nn_buffer share: a usable model, a free name of
** 1 to 63 bytes, the model's dtype, a valid shape. The element count, or -1
** with the error recorded on m naming 'who'. Fixes the model's dtype. */
static int64_t check_new(nn_model *m, const char *who, const char *name, ag_dtype dt, int rank,
                         const int64_t *shape)
{
    if (!m || m->status != AG_OK)
        return -1;
    if (!name || !name[0] || strlen(name) > 63) {
        nn_model_fail(m, AG_EINVAL, "%s: name %s%s%s must have 1 to 63 bytes", who,
                      name ? "'" : "", name ? name : "NULL", name ? "'" : "");
        return -1;
    }
    if (dt != AG_F32 && dt != AG_F64) {
        nn_model_fail(m, AG_EDTYPE, "%s: '%s' has dtype %d, neither AG_F32 nor AG_F64", who,
                      name, (int)dt);
        return -1;
    }
    if (m->has_dtype && dt != m->dtype) {
        nn_model_fail(m, AG_EDTYPE, "%s: '%s' is %s but the model's parameters are %s", who, name,
                      ag_dtype_name(dt), ag_dtype_name(m->dtype));
        return -1;
    }
    if (nn_model_find(m, name) || nn_model_find_buffer(m, name)) {
        nn_model_fail(m, AG_EINVAL, "%s: the model already has a %s '%s'", who,
                      nn_model_find(m, name) ? "parameter" : "buffer", name);
        return -1;
    }
    int64_t n = checked_numel(m, who, name, rank, shape);
    if (n >= 0 && !m->has_dtype) {
        m->dtype = dt;
        m->has_dtype = true;
    }
    return n;
}

ag_tensor *nn_param(nn_model *m, const char *name, ag_dtype dt, int rank, const int64_t *shape)
{
    int64_t n = check_new(m, "nn_param", name, dt, rank, shape);
    if (n < 0)
        return NULL;
    if (!reserve(m, n) || !reserve_entry(m)) {
        nn_model_fail(m, AG_ENOMEM, "nn_param: out of memory adding '%s' (%lld elements) to %lld",
                      name, (long long)n, (long long)m->numel);
        return NULL;
    }
    size_t at = (size_t)m->numel * ag_dtype_size(dt);
    ag_tensor *p = ag_param_view(m->alloc, m->alloc_ud, dt, rank, shape, (char *)m->value + at,
                                 (char *)m->grad + at);
    if (!p) {
        nn_model_fail(m, AG_ENOMEM, "nn_param: out of memory making '%s'", name);
        return NULL;
    }
    ag_param_claim(p, m);   /* ag_param_free(p) now refuses: nn_model_free frees it */
    ag_set_name(p, name);
    m->params[m->n_params++] = (nni_param){p, m->numel};
    m->numel += n;
    return p;
}

int nn_model_num_params(const nn_model *m) { return m ? m->n_params : 0; }

ag_tensor *nn_model_param(const nn_model *m, int i)
{
    return m && i >= 0 && i < m->n_params ? m->params[i].tensor : NULL;
}

ag_tensor *nn_model_find(const nn_model *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(ag_name(m->params[i].tensor), name) == 0)
            return m->params[i].tensor;
    return NULL;
}

/* ----------------------------------------------------------------- buffers */

/* Room for 'more' buffer elements. Buffers are few and small (a batch norm
** layer's statistics), so the block grows by doubling; values and scratch
** gradients share it, values first. */
static bool reserve_buffer(nn_model *m, int64_t more)
{
    if (more > INT64_MAX / 4 - m->buf_numel)
        return false;
    int64_t need = m->buf_numel + more;
    if (m->n_buffers == m->cap_buffers) {
        int cap = m->cap_buffers ? m->cap_buffers * 2 : 8;
        nni_param *b = nni_realloc(m, m->buffers, (size_t)m->cap_buffers * sizeof *b,
                                   (size_t)cap * sizeof *b);
        if (!b)
            return false;
        m->buffers = b;
        m->cap_buffers = cap;
    }
    if (need <= m->buf_cap && m->buf_value)
        return true;
    int64_t cap = m->buf_cap ? 2 * m->buf_cap : 64;
    if (cap < need)
        cap = need;
    size_t es = ag_dtype_size(m->dtype);
    if ((uint64_t)cap > SIZE_MAX / 2 / es)
        return false;
    size_t bytes = (size_t)cap * es, used = (size_t)m->buf_numel * es;
    char *value = nni_realloc(m, NULL, 0, 2 * bytes);
    if (!value)
        return false;
    memset(value, 0, 2 * bytes);
    if (used)
        memcpy(value, m->buf_value, used);
    for (int i = 0; i < m->n_buffers; i++) {
        size_t at = (size_t)m->buffers[i].offset * es;
        ag_param_rebind(m->buffers[i].tensor, value + at, value + bytes + at);
    }
    nni_realloc(m, m->buf_value, 2 * (size_t)m->buf_cap * es, 0);
    m->buf_value = value;
    m->buf_grad = value + bytes;
    m->buf_cap = cap;
    return true;
}

ag_tensor *nn_buffer(nn_model *m, const char *name, ag_dtype dt, int rank, const int64_t *shape)
{
    int64_t n = check_new(m, "nn_buffer", name, dt, rank, shape);
    if (n < 0)
        return NULL;
    if (!reserve_buffer(m, n)) {
        nn_model_fail(m, AG_ENOMEM, "nn_buffer: out of memory adding '%s' (%lld elements) to "
                      "%lld", name, (long long)n, (long long)m->buf_numel);
        return NULL;
    }
    size_t at = (size_t)m->buf_numel * ag_dtype_size(dt);
    ag_tensor *b = ag_param_view(m->alloc, m->alloc_ud, dt, rank, shape, (char *)m->buf_value + at,
                                 (char *)m->buf_grad + at);
    if (!b) {
        nn_model_fail(m, AG_ENOMEM, "nn_buffer: out of memory making '%s'", name);
        return NULL;
    }
    ag_param_claim(b, m);
    ag_set_name(b, name);
    m->buffers[m->n_buffers++] = (nni_param){b, m->buf_numel};
    m->buf_numel += n;
    return b;
}

int nn_model_num_buffers(const nn_model *m) { return m ? m->n_buffers : 0; }

ag_tensor *nn_model_buffer(const nn_model *m, int i)
{
    return m && i >= 0 && i < m->n_buffers ? m->buffers[i].tensor : NULL;
}

ag_tensor *nn_model_find_buffer(const nn_model *m, const char *name)
{
    if (!m || !name)
        return NULL;
    for (int i = 0; i < m->n_buffers; i++)
        if (strcmp(ag_name(m->buffers[i].tensor), name) == 0)
            return m->buffers[i].tensor;
    return NULL;
}

int64_t nn_model_numel(const nn_model *m) { return m ? m->numel : 0; }
ag_dtype nn_model_dtype(const nn_model *m) { return m && m->has_dtype ? m->dtype : AG_F32; }
void *nn_model_values(nn_model *m) { return m && m->n_params ? m->value : NULL; }
void *nn_model_grads(nn_model *m) { return m && m->n_params ? m->grad : NULL; }

/* Below this many bytes per thread, clearing stays on one thread. */
enum { MIN_BYTES_PER_THREAD = 1 << 17 };

static void zero_range(void *ctx, int64_t begin, int64_t end)
{
    memset((char *)ctx + begin, 0, (size_t)(end - begin));
}

void nn_model_zero_grad(nn_model *m)
{
    if (m && m->grad)
        ag_pool_for(m->pool, m->numel * (int64_t)ag_dtype_size(m->dtype), MIN_BYTES_PER_THREAD,
                    zero_range, m->grad);
}

void nn_model_set_pool(nn_model *m, ag_pool *pool)
{
    if (m)
        m->pool = pool;
}

/* ------------------------------------------------------ mode and generator */

void nn_model_set_training(nn_model *m, int on)
{
    if (m)
        m->training = on != 0;
}

int nn_model_training(const nn_model *m) { return m && m->training; }

void nn_model_seed(nn_model *m, uint64_t seed)
{
    if (m)
        ag_rng_seed(&m->rng, seed);
}

ag_rng *nn_model_rng(nn_model *m) { return m ? &m->rng : NULL; }
