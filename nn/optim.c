/*
** optim.c: optimizers as flat loops over a model's contiguous buffers, and
** global-norm gradient clipping. Each kind is a small descriptor (name,
** state size, update function per dtype); the update loops are written once
** in optim_update.h and instantiated for f32 and f64, so an f32 model is
** updated in f32 with f32 state, in vectorised loops.
*/
#include "model_internal.h"
#include "simd.h"

#include <math.h>
#include <string.h>

typedef struct optim_kind optim_kind;

struct nn_optim {
    const optim_kind *kind;
    nn_model *model;
    ag_alloc_fn alloc;   /* the model's hook, kept so freeing needs no model */
    void *alloc_ud;
    int64_t numel;       /* the model's size when the state was made */
    int64_t steps;
    double lr, momentum, beta1, beta2, alpha, eps, weight_decay;
    bool nesterov;
    /* per-step constants, set before the loop: Adam's bias corrections */
    double correct1, correct2;
    void *state[2];      /* kind->n_state buffers of numel elements of the
                            model's dtype, one block; unused ones NULL */
    size_t state_bytes;
};

/* Updates elements [off, off + n): w and g are the model's whole buffers, of
** the dtype the function is for; o->state[k] are the optimizer's. */
typedef void (*update_fn)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g);

struct optim_kind {
    const char *name;
    int n_state;
    update_fn update_f32, update_f64;
    const char *state_names[2];   /* PyTorch's names, for checkpoints */
};

static const optim_kind nil_kind = {"nil", 0, NULL, NULL, {NULL, NULL}};
static nn_optim nil_optim = {.kind = &nil_kind, .lr = NAN};

int nn_optim_is_nil(const nn_optim *o) { return !o || o == &nil_optim; }

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

typedef struct hyper {
    const char *name;
    double value, lo, hi;   /* valid when lo <= value <= hi (and hi_open: < hi) */
    bool hi_open;
} hyper;

/* A new optimizer of 'kind' with zeroed state, or nil after recording why. */
static nn_optim *optim_make(nn_model *m, const char *who, const optim_kind *kind, double lr,
                            int n_hyper, const hyper *hs)
{
    if (!m || m->status != AG_OK)
        return &nil_optim;
    if (!(lr >= 0.0 && isfinite(lr))) {
        nn_model_fail(m, AG_EINVAL, "%s: learning rate %g must be finite and >= 0", who, lr);
        return &nil_optim;
    }
    for (int i = 0; i < n_hyper; i++) {
        const hyper *h = &hs[i];
        if (!(h->value >= h->lo && (h->hi_open ? h->value < h->hi : h->value <= h->hi))) {
            nn_model_fail(m, AG_EINVAL, "%s: %s %g is outside %s%g, %g%s", who, h->name, h->value,
                          "[", h->lo, h->hi, h->hi_open ? ")" : "]");
            return &nil_optim;
        }
    }
    if (m->numel == 0) {
        nn_model_fail(m, AG_ESTATE, "%s: the model has no parameter yet; make the optimizer "
                      "after the layers", who);
        return &nil_optim;
    }
    size_t elem = m->dtype == AG_F64 ? sizeof(double) : sizeof(float);
    size_t per = (size_t)m->numel * elem;
    if ((uint64_t)m->numel > SIZE_MAX / elem / 2) {
        nn_model_fail(m, AG_ENOMEM, "%s: state for %lld values is too large", who,
                      (long long)m->numel);
        return &nil_optim;
    }
    if (per > (SIZE_MAX - sizeof(nn_optim)) / 2 - NNI_PAGE) {
        nn_model_fail(m, AG_ENOMEM, "%s: state for %lld values is too large", who,
                      (long long)m->numel);
        return &nil_optim;
    }
    size_t bytes = sizeof(nn_optim) + (size_t)kind->n_state * (per + NNI_PAGE);
    nn_optim *o = nni_realloc(m, NULL, 0, bytes);
    if (!o) {
        nn_model_fail(m, AG_ENOMEM, "%s: out of memory allocating %zu bytes of state", who, bytes);
        return &nil_optim;
    }
    memset(o, 0, bytes);
    o->kind = kind;
    o->model = m;
    o->alloc = m->alloc;
    o->alloc_ud = m->alloc_ud;
    o->numel = m->numel;
    o->lr = lr;
    o->state_bytes = bytes;
    /* Page slots apart from the values (0) and gradients (1/4 page). */
    char *at = (char *)(o + 1);
    for (int k = 0; k < kind->n_state; k++) {
        o->state[k] = nni_page_slot(at, (size_t)(2 + k) * NNI_PAGE / 4);
        at = (char *)o->state[k] + per;
    }
    return o;
}

nn_optim *nn_sgd_new(nn_model *m, double lr, double momentum, double weight_decay, int nesterov)
{
    hyper hs[] = {{"momentum", momentum, 0, 1, true},
                  {"weight decay", weight_decay, 0, INFINITY, false}};
    if (nesterov && momentum == 0.0 && m && m->status == AG_OK) {
        nn_model_fail(m, AG_EINVAL, "nn_sgd_new: Nesterov momentum needs momentum > 0");
        return &nil_optim;
    }
    nn_optim *o = optim_make(m, "nn_sgd_new", momentum > 0 ? &sgd_momentum_kind : &sgd_kind, lr,
                             2, hs);
    if (!nn_optim_is_nil(o)) {
        o->momentum = momentum;
        o->weight_decay = weight_decay;
        o->nesterov = nesterov != 0;
    }
    return o;
}

static nn_optim *adam_like(nn_model *m, const char *who, const optim_kind *kind, double lr,
                           double beta1, double beta2, double eps, double weight_decay)
{
    hyper hs[] = {{"beta1", beta1, 0, 1, true},
                  {"beta2", beta2, 0, 1, true},
                  {"eps", eps, 0, INFINITY, false},
                  {"weight decay", weight_decay, 0, INFINITY, false}};
    nn_optim *o = optim_make(m, who, kind, lr, 4, hs);
    if (!nn_optim_is_nil(o)) {
        o->beta1 = beta1;
        o->beta2 = beta2;
        o->eps = eps;
        o->weight_decay = weight_decay;
    }
    return o;
}

nn_optim *nn_adam_new(nn_model *m, double lr, double beta1, double beta2, double eps,
                      double weight_decay)
{
    return adam_like(m, "nn_adam_new", &adam_kind, lr, beta1, beta2, eps, weight_decay);
}

nn_optim *nn_adamw_new(nn_model *m, double lr, double beta1, double beta2, double eps,
                       double weight_decay)
{
    return adam_like(m, "nn_adamw_new", &adamw_kind, lr, beta1, beta2, eps, weight_decay);
}

nn_optim *nn_rmsprop_new(nn_model *m, double lr, double alpha, double eps, double momentum,
                         double weight_decay)
{
    hyper hs[] = {{"alpha", alpha, 0, 1, true},
                  {"eps", eps, 0, INFINITY, false},
                  {"momentum", momentum, 0, 1, true},
                  {"weight decay", weight_decay, 0, INFINITY, false}};
    const optim_kind *kind = momentum > 0 ? &rmsprop_momentum_kind : &rmsprop_kind;
    nn_optim *o = optim_make(m, "nn_rmsprop_new", kind, lr, 4, hs);
    if (!nn_optim_is_nil(o)) {
        o->alpha = alpha;
        o->eps = eps;
        o->momentum = momentum;
        o->weight_decay = weight_decay;
    }
    return o;
}

nn_optim *nn_adagrad_new(nn_model *m, double lr, double eps, double weight_decay)
{
    hyper hs[] = {{"eps", eps, 0, INFINITY, false},
                  {"weight decay", weight_decay, 0, INFINITY, false}};
    nn_optim *o = optim_make(m, "nn_adagrad_new", &adagrad_kind, lr, 2, hs);
    if (!nn_optim_is_nil(o)) {
        o->eps = eps;
        o->weight_decay = weight_decay;
    }
    return o;
}

void nn_optim_free(nn_optim *o)
{
    if (nn_optim_is_nil(o))
        return;
    ag_realloc(o->alloc, o->alloc_ud, o, o->state_bytes, 0);
}

/* -------------------------------------------------------------------- step */

/* Below this many values per thread, the update stays on one thread. */
enum { MIN_ELEMS_PER_THREAD = 1 << 15 };

/* Each element's update reads and writes only its own w, g and state, so
** any cut among threads gives the same bits. */
static void update_range(void *ctx, int64_t begin, int64_t end)
{
    const nn_optim *o = ctx;
    const nn_model *m = o->model;
    update_fn update = m->dtype == AG_F64 ? o->kind->update_f64 : o->kind->update_f32;
    update(o, begin, end - begin, m->value, m->grad);
}

void nn_optim_step(nn_optim *o)
{
    if (nn_optim_is_nil(o))
        return;
    nn_model *m = o->model;
    if (m->status != AG_OK)
        return;
    if (m->numel != o->numel) {
        nn_model_fail(m, AG_ESTATE, "nn_optim_step: the model has %lld values but this %s "
                      "optimizer was made for %lld; make optimizers after adding parameters",
                      (long long)m->numel, o->kind->name, (long long)o->numel);
        return;
    }
    o->steps++;
    o->correct1 = 1.0 - pow(o->beta1, (double)o->steps);
    o->correct2 = 1.0 - pow(o->beta2, (double)o->steps);
    ag_pool_for(m->pool, o->numel, MIN_ELEMS_PER_THREAD, update_range, o);
}

void nn_optim_set_lr(nn_optim *o, double lr)
{
    if (nn_optim_is_nil(o))
        return;
    if (!(lr >= 0.0 && isfinite(lr))) {
        nn_model_fail(o->model, AG_EINVAL, "nn_optim_set_lr: learning rate %g must be finite "
                      "and >= 0", lr);
        return;
    }
    o->lr = lr;
}

double nn_optim_lr(const nn_optim *o) { return nn_optim_is_nil(o) ? NAN : o->lr; }
int64_t nn_optim_steps(const nn_optim *o) { return nn_optim_is_nil(o) ? 0 : o->steps; }
const char *nn_optim_name(const nn_optim *o) { return nn_optim_is_nil(o) ? "nil" : o->kind->name; }

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
