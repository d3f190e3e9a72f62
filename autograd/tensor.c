/*
** tensor.c: making tensors (on a tape, or as parameters outside one) and
** reading them back through accessors that accept NULL and nil.
*/
#include "internal.h"

#include <math.h>
#include <string.h>

size_t ag_dtype_size(ag_dtype dt) { return dt == AG_F32 ? sizeof(float) : sizeof(double); }

const char *ag_dtype_name(ag_dtype dt)
{
    return dt == AG_F32 ? "f32" : dt == AG_F64 ? "f64" : "invalid dtype";
}

static bool valid_dtype(ag_dtype dt) { return dt == AG_F32 || dt == AG_F64; }

bool agi_check_make(ag_tape *t, const char *who, ag_dtype dt, int rank, const int64_t *shape)
{
    if (!t || t->status != AG_OK)
        return false;
    if (!valid_dtype(dt)) {
        agi_error(t, AG_EDTYPE, "%s: dtype %d is neither AG_F32 nor AG_F64", who, (int)dt);
        return false;
    }
    if (rank < 0 || rank > AG_MAX_DIMS) {
        agi_error(t, AG_ESHAPE, "%s: rank %d is outside 0..%d", who, rank, AG_MAX_DIMS);
        return false;
    }
    if (rank > 0 && !shape) {
        agi_error(t, AG_EINVAL, "%s: shape is NULL for rank %d", who, rank);
        return false;
    }
    /* agi_new checks these too, but can only name itself. */
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0) {
            agi_error(t, AG_ESHAPE, "%s: dimension %d is negative (%lld)", who, i,
                      (long long)shape[i]);
            return false;
        }
        if (shape[i] != 0 && numel > INT64_MAX / 8 / shape[i]) {
            char s[96];
            agi_shape_str(s, sizeof s, rank, shape);
            agi_error(t, AG_ESHAPE, "%s: shape %s has too many elements", who, s);
            return false;
        }
        numel *= shape[i];
    }
    return true;
}

static ag_tensor *make_full(ag_tape *t, const char *who, ag_dtype dt, int rank,
                            const int64_t *shape, double v)
{
    if (!agi_check_make(t, who, dt, rank, shape))
        return agi_nil(t);
    ag_tensor *x = agi_new(t, NULL, 0, NULL, dt, rank, shape);
    if (!(x->flags & AGI_NIL))
        ag_fill(x, v);
    return x;
}

ag_tensor *ag_full(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape, double v)
{
    return make_full(t, "ag_full", dt, rank, shape, v);
}

ag_tensor *ag_empty(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape)
{
    if (!agi_check_make(t, "ag_empty", dt, rank, shape))
        return agi_nil(t);
    return agi_new(t, NULL, 0, NULL, dt, rank, shape);
}

ag_tensor *ag_zeros(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape)
{
    return make_full(t, "ag_zeros", dt, rank, shape, 0.0);
}

ag_tensor *ag_ones(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape)
{
    return make_full(t, "ag_ones", dt, rank, shape, 1.0);
}

ag_tensor *ag_scalar(ag_tape *t, ag_dtype dt, double v)
{
    return make_full(t, "ag_scalar", dt, 0, NULL, v);
}

/* Copies numel elements of dt from data, naming 'who' in errors. */
static ag_tensor *tensor_from(ag_tape *t, const char *who, ag_dtype dt, int rank,
                              const int64_t *shape, const void *data)
{
    if (!agi_check_make(t, who, dt, rank, shape))
        return agi_nil(t);
    ag_tensor *x = agi_new(t, NULL, 0, NULL, dt, rank, shape);
    if (x->flags & AGI_NIL)
        return x;
    if (!data && x->numel > 0)
        return agi_error(t, AG_EINVAL, "%s: data is NULL for shape %s", who, agi_shp(x, 0));
    if (x->numel > 0)
        memcpy(x->value, data, (size_t)x->numel * ag_dtype_size(dt));
    return x;
}

ag_tensor *ag_tensor_from(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape, const void *data)
{
    return tensor_from(t, "ag_tensor_from", dt, rank, shape, data);
}

ag_tensor *ag_tensor_from_f32(ag_tape *t, int rank, const int64_t *shape, const float *data)
{
    return tensor_from(t, "ag_tensor_from_f32", AG_F32, rank, shape, data);
}

ag_tensor *ag_tensor_from_f64(ag_tape *t, int rank, const int64_t *shape, const double *data)
{
    return tensor_from(t, "ag_tensor_from_f64", AG_F64, rank, shape, data);
}

ag_tensor *ag_arange(ag_tape *t, ag_dtype dt, double start, double stop, double step)
{
    if (!agi_check_make(t, "ag_arange", dt, 0, NULL))
        return agi_nil(t);
    if (!(step != 0) || !isfinite(start) || !isfinite(stop) || !isfinite(step))
        return agi_error(t, AG_EINVAL, "ag_arange: start %g, stop %g, step %g must be finite, step nonzero",
                         start, stop, step);
    double count = ceil((stop - start) / step);
    if (count < 0)
        count = 0;
    if (count > 1e12)
        return agi_error(t, AG_ESHAPE, "ag_arange: %g elements are too many", count);
    int64_t n = (int64_t)count;
    ag_tensor *x = agi_new(t, NULL, 0, NULL, dt, 1, &n);
    for (int64_t i = 0; i < x->numel; i++)
        agi_set(x, i, start + (double)i * step);
    return x;
}

ag_tensor *ag_eye(ag_tape *t, ag_dtype dt, int64_t n)
{
    if (!agi_check_make(t, "ag_eye", dt, 0, NULL))
        return agi_nil(t);
    if (n < 0)
        return agi_error(t, AG_ESHAPE, "ag_eye: size %lld is negative", (long long)n);
    ag_tensor *x = make_full(t, "ag_eye", dt, 2, (int64_t[]){n, n}, 0.0);
    for (int64_t i = 0; i < n && !(x->flags & AGI_NIL); i++)
        agi_set(x, i * n + i, 1.0);
    return x;
}

ag_tensor *ag_requires_grad(ag_tensor *x)
{
    if (!agi_usable(x, "ag_requires_grad"))
        return x;
    if ((x->flags & AGI_PARAM) && !x->grad) {
        /* It would need a gradient of its own, which it cannot hold. */
        ag_tape_fail(x->tape, AG_EINVAL, "ag_requires_grad: the tensor is a parameter's "
                     "gradient; ag_detach it onto a tape to differentiate it");
        return x;
    }
    if (x->flags & AGI_RECORDED) {
        ag_tape_fail(x->tape, AG_EINVAL,
                     "ag_requires_grad: tensor%s%s%s is the recorded result of op %s, not a leaf",
                     x->name ? " '" : "", x->name ? x->name : "", x->name ? "'" : "",
                     x->op->name);
        return x;
    }
    /* An unrecorded result (computed from constants) becomes a leaf, as in
    ** PyTorch: its history is forgotten. */
    x->op = NULL;
    x->nin = 0;
    x->flags |= AGI_REQUIRES_GRAD;
    return x;
}

/* ---------------------------------------------------------------- params */

/* How to free a parameter's block, kept in the block after its two headers
** rather than in ag_tensor, where every tape tensor would carry it. */
typedef struct param_owner {
    ag_alloc_fn alloc;
    void *alloc_ud;
    size_t size;
    const void *claimed_by;   /* ag_param_claim's owner, or NULL */
} param_owner;

/* Each header is full-size and followed by 64 bytes for its name. */
static size_t param_head(void) { return (sizeof(ag_tensor) + 64 + 63) & ~(size_t)63; }

static param_owner *owner_of(ag_tensor *p)
{
    return (param_owner *)((char *)p + 2 * param_head());
}

static ag_tensor *param_make(ag_alloc_fn fn, void *ud, ag_dtype dt, int rank, const int64_t *shape,
                             void *value, void *grad)
{
    if (!valid_dtype(dt) || rank < 0 || rank > AG_MAX_DIMS || (rank > 0 && !shape))
        return NULL;
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || (shape[i] != 0 && numel > INT64_MAX / 8 / shape[i]))
            return NULL;
        numel *= shape[i];
    }
    size_t esize = ag_dtype_size(dt);
    size_t head = param_head();
    bool owned = value == NULL;
    size_t bytes = owned ? (size_t)numel * esize : 0;
    if (owned && (uint64_t)numel > (SIZE_MAX / 4) / esize)
        return NULL;
    size_t total = 2 * head + sizeof(param_owner) + 2 * ((bytes + 63) & ~(size_t)63) + 64;
    char *block = agi_realloc(fn, ud, NULL, 0, total);
    if (!block)
        return NULL;
    memset(block, 0, total);
    /* Header, grad header, owner, then 64-byte aligned value and grad buffers. */
    ag_tensor *p = (ag_tensor *)block;
    ag_tensor *g = (ag_tensor *)(block + head);
    char *data = (char *)(((uintptr_t)(block + 2 * head + sizeof(param_owner)) + 63) &
                          ~(uintptr_t)63);
    p->value = owned ? data : value;
    g->value = owned ? data + ((bytes + 63) & ~(size_t)63) : grad;
    for (ag_tensor *x = p; x; x = x == p ? g : NULL) {
        x->numel = numel;
        if (rank > 0)
            memcpy(x->shape, shape, (size_t)rank * sizeof(int64_t));
        x->dtype = (uint8_t)dt;
        x->rank = (uint8_t)rank;
        x->flags = AGI_PARAM;
    }
    p->flags |= AGI_REQUIRES_GRAD | AGI_OWNS_MEMORY;
    if (rank == 2) {   /* a possible dense weight (agi_param_grad_target) */
        p->flags |= AGI_COUNTED;
        g->flags |= AGI_COUNTED;
    }
    p->grad = g;
    *owner_of(p) = (param_owner){fn, ud, total, NULL};
    return p;
}

ag_tensor *ag_param_new(ag_dtype dt, int rank, const int64_t *shape)
{
    return param_make(NULL, NULL, dt, rank, shape, NULL, NULL);
}

ag_tensor *ag_param_new_alloc(ag_alloc_fn fn, void *ud, ag_dtype dt, int rank, const int64_t *shape)
{
    return param_make(fn, ud, dt, rank, shape, NULL, NULL);
}

ag_tensor *ag_param_scalar(ag_dtype dt, double v)
{
    ag_tensor *p = ag_param_new(dt, 0, NULL);
    if (p)
        agi_set(p, 0, v);
    return p;
}

ag_tensor *ag_param_view(ag_alloc_fn fn, void *ud, ag_dtype dt, int rank, const int64_t *shape,
                         void *value, void *grad)
{
    if (!value || !grad)
        return NULL;
    return param_make(fn, ud, dt, rank, shape, value, grad);
}

ag_status ag_param_rebind(ag_tensor *p, void *value, void *grad)
{
    if (!p || !(p->flags & AGI_PARAM) || !p->grad || !value || !grad)
        return AG_EINVAL;
    p->value = value;
    p->grad->value = grad;
    return AG_OK;
}

/* A parameter's own header (not its gradient's, not a tape tensor). */
static bool is_param_block(const ag_tensor *p)
{
    return p && (p->flags & AGI_PARAM) && (p->flags & AGI_OWNS_MEMORY);
}

static void param_release(ag_tensor *p)
{
    param_owner o = *owner_of(p);
    agi_realloc(o.alloc, o.alloc_ud, p, o.size, 0);
}

ag_status ag_param_free(ag_tensor *p)
{
    if (!p)
        return AG_OK;
    /* A claimed parameter (an nn_model's) is freed by its owner: freeing it
    ** here too was a double free when the owner let go of it. */
    if (!is_param_block(p) || owner_of(p)->claimed_by)
        return AG_EINVAL;
    param_release(p);
    return AG_OK;
}

ag_status ag_param_claim(ag_tensor *p, const void *owner)
{
    if (!is_param_block(p) || !owner || owner_of(p)->claimed_by)
        return AG_EINVAL;
    owner_of(p)->claimed_by = owner;
    return AG_OK;
}

ag_status ag_param_free_claimed(ag_tensor *p, const void *owner)
{
    if (!p)
        return AG_OK;
    if (!is_param_block(p) || !owner || owner_of(p)->claimed_by != owner)
        return AG_EINVAL;
    param_release(p);
    return AG_OK;
}

int ag_param_claimed(const ag_tensor *p)
{
    return is_param_block(p) && owner_of((ag_tensor *)p)->claimed_by != NULL;
}

int ag_is_param(const ag_tensor *x) { return x && (x->flags & AGI_PARAM) && x->grad; }

/* ------------------------------------------------------------- accessors */

/* Each accessor checks x with agi_usable (internal.h): a tensor from
** before its tape's last reset is reported there, never read. */
ag_dtype ag_dtype_of(const ag_tensor *x) { return agi_usable(x, "ag_dtype_of") ? (ag_dtype)x->dtype : AG_F64; }
int ag_rank(const ag_tensor *x) { return agi_usable(x, "ag_rank") ? x->rank : 0; }
const int64_t *ag_shape(const ag_tensor *x) { return agi_usable(x, "ag_shape") ? x->shape : NULL; }
int64_t ag_numel(const ag_tensor *x) { return agi_usable(x, "ag_numel") ? x->numel : 0; }
void *ag_data(ag_tensor *x) { return agi_usable(x, "ag_data") ? x->value : NULL; }
int ag_is_nil(const ag_tensor *x) { return !agi_usable(x, "ag_is_nil"); }
int ag_requires_grad_of(const ag_tensor *x)
{
    return agi_usable(x, "ag_requires_grad_of") && (x->flags & AGI_REQUIRES_GRAD) != 0;
}

int64_t ag_dim(const ag_tensor *x, int axis)
{
    if (!agi_usable(x, "ag_dim"))
        return 0;
    int a = agi_norm_axis(axis, x->rank);
    return a < 0 ? 0 : x->shape[a];
}

double ag_get(const ag_tensor *x, int64_t i)
{
    if (!agi_usable(x, "ag_get") || i < 0 || i >= x->numel)
        return NAN;
    return agi_get(x, i);
}

void ag_set(ag_tensor *x, int64_t i, double v)
{
    if (agi_usable(x, "ag_set") && i >= 0 && i < x->numel)
        agi_set(x, i, v);
}

double ag_item(const ag_tensor *x)
{
    if (!agi_usable(x, "ag_item") || x->numel != 1)
        return NAN;
    return agi_get(x, 0);
}

ag_tensor *ag_grad(const ag_tensor *x) { return agi_usable(x, "ag_grad") ? x->grad : NULL; }

double ag_grad_item(const ag_tensor *x)
{
    if (!agi_usable(x, "ag_grad_item") || !x->grad || x->grad->numel != 1)
        return 0.0;
    return agi_get(x->grad, 0);
}

void ag_set_name(ag_tensor *x, const char *name)
{
    if (!agi_usable(x, "ag_set_name") || !name)
        return;
    size_t n = strlen(name);
    if (n > 63)
        n = 63;
    char *copy;
    if (x->flags & AGI_PARAM) {
        copy = (char *)(x + 1);   /* the room param_make leaves after the header */
    } else {
        copy = agi_arena_alloc(x->tape, n + 1, 1);
        if (!copy)
            return;
    }
    memcpy(copy, name, n);
    copy[n] = '\0';
    x->name = copy;
}

const char *ag_name(const ag_tensor *x) { return agi_usable(x, "ag_name") && x->name ? x->name : ""; }
const char *ag_op_name(const ag_tensor *x) { return agi_usable(x, "ag_op_name") && x->op ? x->op->name : ""; }
int ag_num_inputs(const ag_tensor *x) { return agi_usable(x, "ag_num_inputs") ? x->nin : 0; }
ag_tensor *ag_input(const ag_tensor *x, int i)
{
    return agi_usable(x, "ag_input") && i >= 0 && i < x->nin ? x->in[i] : NULL;
}

ag_tape *ag_tape_of(const ag_tensor *x) { return x && !(x->flags & AGI_PARAM) ? x->tape : NULL; }

void ag_fill(ag_tensor *x, double v)
{
    if (!agi_usable(x, "ag_fill"))
        return;
    if (v == 0.0 && !signbit(v)) {   /* +0.0 is all-zero bits in both dtypes */
        memset(x->value, 0, (size_t)x->numel * ag_dtype_size((ag_dtype)x->dtype));
    } else if (x->dtype == AG_F32) {
        float *d = x->value, f = (float)v;
        for (int64_t i = 0; i < x->numel; i++)
            d[i] = f;
    } else {
        double *d = x->value;
        for (int64_t i = 0; i < x->numel; i++)
            d[i] = v;
    }
}
