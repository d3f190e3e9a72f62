/*
** optim.c: optimizers as flat loops over a model's contiguous buffers, and
** global-norm gradient clipping. Each kind is a small descriptor (name,
** state size, update function per dtype); the update loops are written once
** in optim_update.h and instantiated for f32 and f64, so an f32 model is
** updated in f32 with f32 state, in vectorised loops.
*/
#include "optim_internal.h"
#include "simd.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const optim_kind nil_kind = {"nil", 0, NULL, NULL, {NULL, NULL}};
/* What a failed constructor returns: for a model (the message is the
** model's), and for a plain list when even its error could not be kept. */
static nn_optim nil_optim = {.kind = &nil_kind, .lr = NAN, .status = AG_EINVAL,
                             .errmsg = "nil optimizer: its constructor failed (the model's "
                                       "message says why)"};
static nn_optim nomem_optim = {.kind = &nil_kind, .lr = NAN, .status = AG_ENOMEM,
                               .errmsg = "nil optimizer: out of memory"};

int nn_optim_is_nil(const nn_optim *o) { return !o || o->kind == &nil_kind; }

/* ----------------------------------------------------------------- updates */
/* Each update loop is vectorised, with AVX-512 and AVX2 clones (simd.h). */

#define T float
#define FN(name) name##_f32
#define SQRT sqrtf
#include "optim_update.h"
#undef T
#undef FN
#undef SQRT

#define T double
#define FN(name) name##_f64
#define SQRT sqrt
#include "optim_update.h"
#undef T
#undef FN
#undef SQRT

#define KIND(name, n_state, update, s0, s1) {name, n_state, update##_f32, update##_f64, {s0, s1}}
static const optim_kind sgd_kind = KIND("sgd", 0, update_sgd, NULL, NULL);
static const optim_kind sgd_momentum_kind = KIND("sgd", 1, update_sgd, "momentum_buffer", NULL);
static const optim_kind adam_kind = KIND("adam", 2, update_adam, "exp_avg", "exp_avg_sq");
static const optim_kind adamw_kind = KIND("adamw", 2, update_adamw, "exp_avg", "exp_avg_sq");
static const optim_kind rmsprop_kind = KIND("rmsprop", 1, update_rmsprop, "square_avg", NULL);
static const optim_kind rmsprop_momentum_kind =
    KIND("rmsprop", 2, update_rmsprop, "square_avg", "momentum_buffer");
static const optim_kind adagrad_kind = KIND("adagrad", 1, update_adagrad, "sum", NULL);

/* ------------------------------------------------------------ construction */

void nni_optim_fail(nn_optim *o, ag_status st, const char *fmt, ...)
{
    if (!o || o == &nil_optim || o == &nomem_optim)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (o->model)
        nn_model_fail(o->model, st, "%s", msg);
    else if (o->status == AG_OK) {
        o->status = st;
        memcpy(o->errmsg, msg, sizeof msg);
    }
}

bool nni_optim_ok(const nn_optim *o)
{
    if (nn_optim_is_nil(o))
        return false;
    return o->model ? o->model->status == AG_OK : o->status == AG_OK;
}

/* A list's constructor failed: an optimizer in error that keeps the
** message (the static nomem one when even that cannot be had). */
static nn_optim *list_failed(const nni_optim_target *tg, ag_status st, const char *fmt, ...)
{
    nn_optim *o = ag_realloc(tg->alloc, tg->alloc_ud, NULL, 0, sizeof *o);
    if (!o)
        return &nomem_optim;
    memset(o, 0, sizeof *o);
    o->kind = &nil_kind;
    o->lr = NAN;
    o->alloc = tg->alloc;
    o->alloc_ud = tg->alloc_ud;
    o->state_bytes = sizeof *o;
    o->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(o->errmsg, sizeof o->errmsg, fmt, ap);
    va_end(ap);
    return o;
}

nn_optim *nni_optim_nil(void) { return &nil_optim; }

nn_optim *nni_optim_refuse(const nni_optim_target *tg, ag_status st, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (tg->model) {
        if (tg->model->status == AG_OK)
            nn_model_fail(tg->model, st, "%s", msg);
        return &nil_optim;
    }
    return list_failed(tg, st, "%s", msg);
}

/* Checks a plain list: 1 or more distinct parameters of one dtype, each
** with its gradient buffer. Sets *dtype and *numel. */
static nn_optim *list_check(const nni_optim_target *tg, const char *who, ag_dtype *dtype,
                            int64_t *numel)
{
    if (tg->n < 1 || !tg->params)
        return list_failed(tg, AG_EINVAL, "%s: %d parameters at %p (need 1 or more)", who, tg->n,
                           (const void *)tg->params);
    *numel = 0;
    for (int i = 0; i < tg->n; i++) {
        ag_tensor *p = tg->params[i];
        if (!p)
            return list_failed(tg, AG_EINVAL, "%s: parameter %d is NULL", who, i);
        if (!ag_is_param(p) || !ag_grad(p))
            return list_failed(tg, AG_EINVAL, "%s: parameter %d%s%s%s is not a parameter (made "
                               "by ag_param_new or nn_param) with a gradient buffer", who, i,
                               ag_name(p)[0] ? " '" : "", ag_name(p), ag_name(p)[0] ? "'" : "");
        if (i == 0)
            *dtype = ag_dtype_of(p);
        else if (ag_dtype_of(p) != *dtype)
            return list_failed(tg, AG_EDTYPE, "%s: parameter %d is %s but parameter 0 is %s", who,
                               i, ag_dtype_name(ag_dtype_of(p)), ag_dtype_name(*dtype));
        for (int j = 0; j < i; j++)
            if (tg->params[j] == p)
                return list_failed(tg, AG_EINVAL, "%s: parameter %d is parameter %d again (it "
                                   "would be updated twice)", who, i, j);
        *numel += ag_numel(p);
    }
    if (*numel == 0)
        return list_failed(tg, AG_EINVAL, "%s: the parameters hold no value", who);
    return NULL;
}

nn_optim *nni_optim_make(const nni_optim_target *tg, const char *who, const optim_kind *kind,
                         double lr, int n_hyper, const nni_hyper *hs, size_t extra,
                         void **extra_at)
{
    nn_model *m = tg->model;
    bool list = m == NULL;
    ag_dtype dtype = AG_F32;
    int64_t numel = 0;
    if (list) {
        nn_optim *bad = list_check(tg, who, &dtype, &numel);
        if (bad)
            return bad;
    } else {
        if (m->status != AG_OK)
            return &nil_optim;
        dtype = m->dtype;
        numel = m->numel;
    }
    /* The first failure: on the model, or in an optimizer in error. */
#define FAIL(st, ...)                                                                             \
    do {                                                                                          \
        if (list)                                                                                 \
            return list_failed(tg, st, __VA_ARGS__);                                              \
        nn_model_fail(m, st, __VA_ARGS__);                                                        \
        return &nil_optim;                                                                        \
    } while (0)
    if (!(lr >= 0.0 && isfinite(lr)))
        FAIL(AG_EINVAL, "%s: learning rate %g must be finite and >= 0", who, lr);
    for (int i = 0; i < n_hyper; i++) {
        const nni_hyper *h = &hs[i];
        if (!(h->value >= h->lo && (h->hi_open ? h->value < h->hi : h->value <= h->hi)))
            FAIL(AG_EINVAL, "%s: %s %g is outside %s%g, %g%s", who, h->name, h->value, "[", h->lo,
                 h->hi, h->hi_open ? ")" : "]");
    }
    if (numel == 0)
        FAIL(AG_ESTATE, "%s: the model has no parameter yet; make the optimizer after the layers",
             who);
    size_t elem = dtype == AG_F64 ? sizeof(double) : sizeof(float);
    size_t per = (size_t)numel * elem;
    size_t n_list = list ? (size_t)tg->n : 0;
    size_t list_bytes = n_list * (sizeof(ag_tensor *) + sizeof(int64_t));
    if ((uint64_t)numel > SIZE_MAX / elem / 2 ||
        per > (SIZE_MAX - sizeof(nn_optim) - list_bytes - extra - 64) / 2 - NNI_PAGE)
        FAIL(AG_ENOMEM, "%s: state for %lld values is too large", who, (long long)numel);
    size_t bytes = sizeof(nn_optim) + list_bytes + (size_t)kind->n_state * (per + NNI_PAGE) +
                   extra + 16;
    nn_optim *o = ag_realloc(list ? tg->alloc : m->alloc, list ? tg->alloc_ud : m->alloc_ud, NULL,
                             0, bytes);
    if (!o)
        FAIL(AG_ENOMEM, "%s: out of memory allocating %zu bytes of state", who, bytes);
#undef FAIL
    memset(o, 0, bytes);
    o->kind = kind;
    o->model = m;
    o->dtype = dtype;
    o->alloc = list ? tg->alloc : m->alloc;
    o->alloc_ud = list ? tg->alloc_ud : m->alloc_ud;
    o->numel = numel;
    o->lr = lr;
    o->state_bytes = bytes;
    char *at = (char *)(o + 1);
    if (list) {
        o->n_params = tg->n;
        o->params = (ag_tensor **)at;
        o->offsets = (int64_t *)(at + n_list * sizeof(ag_tensor *));
        int64_t off = 0;
        for (int i = 0; i < tg->n; i++) {
            o->params[i] = tg->params[i];
            o->offsets[i] = off;
            off += ag_numel(tg->params[i]);
        }
        at += list_bytes;
    }
    /* Page slots apart from the values (0) and gradients (1/4 page). */
    for (int k = 0; k < kind->n_state; k++) {
        o->state[k] = nni_page_slot(at, (size_t)(2 + k) * NNI_PAGE / 4);
        at = (char *)o->state[k] + per;
    }
    if (extra_at)
        *extra_at = (void *)(((uintptr_t)at + 15) & ~(uintptr_t)15);
    return o;
}

/* Each constructor is written once over a target (a model or a list) and
** named twice: nn_<kind>_new(model, ...) and nn_<kind>_new_params(hook,
** list, ...). A NULL model is the nil optimizer, as before. */
static nni_optim_target model_target(nn_model *m) { return (nni_optim_target){.model = m}; }
static nni_optim_target list_target(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params)
{
    return (nni_optim_target){.n = n, .params = params, .alloc = fn, .alloc_ud = ud};
}

static nn_optim *sgd_make(const nni_optim_target *tg, const char *who, double lr,
                          double momentum, double weight_decay, int nesterov)
{
    nni_hyper hs[] = {{"momentum", momentum, 0, 1, true},
                      {"weight decay", weight_decay, 0, INFINITY, false}};
    if (nesterov && momentum == 0.0) {
        if (tg->model) {
            if (tg->model->status == AG_OK)
                nn_model_fail(tg->model, AG_EINVAL, "%s: Nesterov momentum needs momentum > 0",
                              who);
            return &nil_optim;
        }
        return list_failed(tg, AG_EINVAL, "%s: Nesterov momentum needs momentum > 0", who);
    }
    nn_optim *o = nni_optim_make(tg, who, momentum > 0 ? &sgd_momentum_kind : &sgd_kind, lr, 2,
                                 hs, 0, NULL);
    if (!nn_optim_is_nil(o)) {
        o->momentum = momentum;
        o->weight_decay = weight_decay;
        o->nesterov = nesterov != 0;
    }
    return o;
}

static nn_optim *adam_like(const nni_optim_target *tg, const char *who, const optim_kind *kind,
                           double lr, double beta1, double beta2, double eps, double weight_decay)
{
    nni_hyper hs[] = {{"beta1", beta1, 0, 1, true},
                      {"beta2", beta2, 0, 1, true},
                      {"eps", eps, 0, INFINITY, false},
                      {"weight decay", weight_decay, 0, INFINITY, false}};
    nn_optim *o = nni_optim_make(tg, who, kind, lr, 4, hs, 0, NULL);
    if (!nn_optim_is_nil(o)) {
        o->beta1 = beta1;
        o->beta2 = beta2;
        o->eps = eps;
        o->weight_decay = weight_decay;
    }
    return o;
}

static nn_optim *rmsprop_make(const nni_optim_target *tg, const char *who, double lr,
                              double alpha, double eps, double momentum, double weight_decay)
{
    nni_hyper hs[] = {{"alpha", alpha, 0, 1, true},
                      {"eps", eps, 0, INFINITY, false},
                      {"momentum", momentum, 0, 1, true},
                      {"weight decay", weight_decay, 0, INFINITY, false}};
    const optim_kind *kind = momentum > 0 ? &rmsprop_momentum_kind : &rmsprop_kind;
    nn_optim *o = nni_optim_make(tg, who, kind, lr, 4, hs, 0, NULL);
    if (!nn_optim_is_nil(o)) {
        o->alpha = alpha;
        o->eps = eps;
        o->momentum = momentum;
        o->weight_decay = weight_decay;
    }
    return o;
}

static nn_optim *adagrad_make(const nni_optim_target *tg, const char *who, double lr, double eps,
                              double weight_decay)
{
    nni_hyper hs[] = {{"eps", eps, 0, INFINITY, false},
                      {"weight decay", weight_decay, 0, INFINITY, false}};
    nn_optim *o = nni_optim_make(tg, who, &adagrad_kind, lr, 2, hs, 0, NULL);
    if (!nn_optim_is_nil(o)) {
        o->eps = eps;
        o->weight_decay = weight_decay;
    }
    return o;
}

#define MODEL_TARGET(m)                                                                           \
    if (!(m))                                                                                     \
        return &nil_optim;                                                                        \
    nni_optim_target tg = model_target(m)

nn_optim *nn_sgd_new(nn_model *m, double lr, double momentum, double weight_decay, int nesterov)
{
    MODEL_TARGET(m);
    return sgd_make(&tg, "nn_sgd_new", lr, momentum, weight_decay, nesterov);
}

nn_optim *nn_adam_new(nn_model *m, double lr, double beta1, double beta2, double eps,
                      double weight_decay)
{
    MODEL_TARGET(m);
    return adam_like(&tg, "nn_adam_new", &adam_kind, lr, beta1, beta2, eps, weight_decay);
}

nn_optim *nn_adamw_new(nn_model *m, double lr, double beta1, double beta2, double eps,
                       double weight_decay)
{
    MODEL_TARGET(m);
    return adam_like(&tg, "nn_adamw_new", &adamw_kind, lr, beta1, beta2, eps, weight_decay);
}

nn_optim *nn_rmsprop_new(nn_model *m, double lr, double alpha, double eps, double momentum,
                         double weight_decay)
{
    MODEL_TARGET(m);
    return rmsprop_make(&tg, "nn_rmsprop_new", lr, alpha, eps, momentum, weight_decay);
}

nn_optim *nn_adagrad_new(nn_model *m, double lr, double eps, double weight_decay)
{
    MODEL_TARGET(m);
    return adagrad_make(&tg, "nn_adagrad_new", lr, eps, weight_decay);
}

nn_optim *nn_sgd_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params, double lr,
                            double momentum, double weight_decay, int nesterov)
{
    nni_optim_target tg = list_target(fn, ud, n, params);
    return sgd_make(&tg, "nn_sgd_new_params", lr, momentum, weight_decay, nesterov);
}

nn_optim *nn_adam_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                             double lr, double beta1, double beta2, double eps,
                             double weight_decay)
{
    nni_optim_target tg = list_target(fn, ud, n, params);
    return adam_like(&tg, "nn_adam_new_params", &adam_kind, lr, beta1, beta2, eps, weight_decay);
}

nn_optim *nn_adamw_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                              double lr, double beta1, double beta2, double eps,
                              double weight_decay)
{
    nni_optim_target tg = list_target(fn, ud, n, params);
    return adam_like(&tg, "nn_adamw_new_params", &adamw_kind, lr, beta1, beta2, eps,
                     weight_decay);
}

nn_optim *nn_rmsprop_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                                double lr, double alpha, double eps, double momentum,
                                double weight_decay)
{
    nni_optim_target tg = list_target(fn, ud, n, params);
    return rmsprop_make(&tg, "nn_rmsprop_new_params", lr, alpha, eps, momentum, weight_decay);
}

nn_optim *nn_adagrad_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                                double lr, double eps, double weight_decay)
{
    nni_optim_target tg = list_target(fn, ud, n, params);
    return adagrad_make(&tg, "nn_adagrad_new_params", lr, eps, weight_decay);
}

void nn_optim_free(nn_optim *o)
{
    if (!o || o == &nil_optim || o == &nomem_optim)
        return;
    ag_realloc(o->alloc, o->alloc_ud, o, o->state_bytes, 0);
}

ag_status nn_optim_status(const nn_optim *o)
{
    if (!o)
        return AG_EINVAL;
    if (o->model)
        return o->model->status;
    return o->status;
}

const char *nn_optim_errmsg(const nn_optim *o)
{
    if (!o)
        return "nn_optim_errmsg: the optimizer is NULL";
    if (o->model)
        return o->model->errmsg;
    return o->errmsg;
}

/* -------------------------------------------------------------------- step */

/* Below this many values per thread, the update stays on one thread. */
enum { MIN_ELEMS_PER_THREAD = 1 << 15 };

static update_fn update_of(const nn_optim *o)
{
    return o->dtype == AG_F64 ? o->kind->update_f64 : o->kind->update_f32;
}

/* Each element's update reads and writes only its own w, g and state, so
** any cut among threads gives the same bits. */
static void update_range(void *ctx, int64_t begin, int64_t end)
{
    const nn_optim *o = ctx;
    const nn_model *m = o->model;
    size_t at = (size_t)begin * ag_dtype_size(o->dtype);
    update_of(o)(o, begin, end - begin, (char *)m->value + at, (const char *)m->grad + at);
}

void nn_optim_step(nn_optim *o)
{
    if (!nni_optim_ok(o))
        return;
    if (!update_of(o)) {
        nni_optim_fail(o, AG_EINVAL, "nn_optim_step: a %s optimizer needs a closure that "
                       "evaluates the loss: call nn_lbfgs_step", o->kind->name);
        return;
    }
    nn_model *m = o->model;
    if (m && m->numel != o->numel) {
        nn_model_fail(m, AG_ESTATE, "nn_optim_step: the model has %lld values but this %s "
                      "optimizer was made for %lld; make optimizers after adding parameters",
                      (long long)m->numel, o->kind->name, (long long)o->numel);
        return;
    }
    o->steps++;
    o->correct1 = 1.0 - pow(o->beta1, (double)o->steps);
    o->correct2 = 1.0 - pow(o->beta2, (double)o->steps);
    if (m) {
        ag_pool_for(m->pool, o->numel, MIN_ELEMS_PER_THREAD, update_range, o);
        return;
    }
    /* A plain list: parameter by parameter, each with its own buffers (read
    ** at every step: a model's parameter may have moved). */
    update_fn update = update_of(o);
    for (int i = 0; i < o->n_params; i++) {
        ag_tensor *p = o->params[i];
        update(o, o->offsets[i], ag_numel(p), ag_data(p), ag_data(ag_grad(p)));
    }
}

/* A first-order optimizer may be paused with lr 0; L-BFGS may not, as its
** constructor says: every trial step would be 0, and the line search would
** stop on tolerance_change and report convergence where g is not 0. */
void nn_optim_set_lr(nn_optim *o, double lr)
{
    if (nn_optim_is_nil(o))
        return;
    if (o->lbfgs && !(lr > 0.0 && isfinite(lr))) {
        nni_optim_fail(o, AG_EINVAL, "nn_optim_set_lr: learning rate %g must be finite and > 0 "
                       "for %s", lr, o->kind->name);
        return;
    }
    if (!(lr >= 0.0 && isfinite(lr))) {
        nni_optim_fail(o, AG_EINVAL, "nn_optim_set_lr: learning rate %g must be finite and >= 0",
                       lr);
        return;
    }
    o->lr = lr;
}

double nn_optim_lr(const nn_optim *o) { return nn_optim_is_nil(o) ? NAN : o->lr; }
int64_t nn_optim_steps(const nn_optim *o) { return nn_optim_is_nil(o) ? 0 : o->steps; }
const char *nn_optim_name(const nn_optim *o) { return nn_optim_is_nil(o) ? "nil" : o->kind->name; }

/* ---------------------------------------------- flat vectors, for L-BFGS */

void nni_optim_gather(const nn_optim *o, bool grads, double *dst)
{
    if (o->model) {
        const void *src = grads ? o->model->grad : o->model->value;
        for (int64_t i = 0; i < o->numel; i++)
            dst[i] = o->dtype == AG_F64 ? ((const double *)src)[i] : ((const float *)src)[i];
        return;
    }
    for (int k = 0; k < o->n_params; k++) {
        ag_tensor *p = o->params[k];
        const void *src = ag_data(grads ? ag_grad(p) : p);
        double *d = dst + o->offsets[k];
        for (int64_t i = 0, n = ag_numel(p); i < n; i++)
            d[i] = o->dtype == AG_F64 ? ((const double *)src)[i] : ((const float *)src)[i];
    }
}

void nni_optim_scatter(nn_optim *o, const double *src)
{
    for (int k = 0; k < (o->model ? 1 : o->n_params); k++) {
        void *dst = o->model ? o->model->value : ag_data(o->params[k]);
        int64_t n = o->model ? o->numel : ag_numel(o->params[k]);
        const double *s = src + (o->model ? 0 : o->offsets[k]);
        for (int64_t i = 0; i < n; i++) {
            if (o->dtype == AG_F64)
                ((double *)dst)[i] = s[i];
            else
                ((float *)dst)[i] = (float)s[i];
        }
    }
}

void nni_optim_zero_grad(nn_optim *o)
{
    if (o->model)
        nn_model_zero_grad(o->model);
    else
        ag_zero_grads(o->n_params, o->params);
}

/* ------------------------------------------------------ state, for checkpoints */

nn_model *nni_optim_model(const nn_optim *o) { return nn_optim_is_nil(o) ? NULL : o->model; }
int64_t nni_optim_numel(const nn_optim *o) { return nn_optim_is_nil(o) ? 0 : o->numel; }
int nni_optim_n_state(const nn_optim *o) { return nn_optim_is_nil(o) ? 0 : o->kind->n_state; }
const char *nni_optim_state_name(const nn_optim *o, int k) { return o->kind->state_names[k]; }
void *nni_optim_state(nn_optim *o, int k) { return o->state[k]; }
void nni_optim_set_steps(nn_optim *o, int64_t steps) { o->steps = steps; }

/* ---------------------------------------------------------------- clipping */

double nn_clip_grad_norm(nn_model *m, double max_norm)
{
    if (!m || m->status != AG_OK)
        return NAN;
    if (!(max_norm > 0.0)) {
        nn_model_fail(m, AG_EINVAL, "nn_clip_grad_norm: max_norm %g must be > 0", max_norm);
        return NAN;
    }
    double sq = 0.0;
    int64_t n = m->numel;
    if (m->dtype == AG_F64) {
        const double *g = m->grad;
        for (int64_t i = 0; i < n; i++)
            sq += g[i] * g[i];
    } else {
        const float *g = m->grad;
        for (int64_t i = 0; i < n; i++)
            sq += (double)g[i] * (double)g[i];
    }
    double norm = sqrt(sq);
    if (!isfinite(norm) || norm <= max_norm)
        return norm;
    double scale = max_norm / (norm + 1e-6);
    if (m->dtype == AG_F64) {
        double *g = m->grad;
        for (int64_t i = 0; i < n; i++)
            g[i] *= scale;
    } else {
        float *g = m->grad;
        for (int64_t i = 0; i < n; i++)
            g[i] = (float)(g[i] * scale);
    }
    return norm;
}
