/*
** optim_internal.h: the optimizer's layout, shared by optim.c (the
** first-order optimizers, construction, stepping) and lbfgs.c (L-BFGS).
** Never installed.
*/
#ifndef NN_OPTIM_INTERNAL_H
#define NN_OPTIM_INTERNAL_H

#include "model_internal.h"

typedef struct optim_kind optim_kind;
typedef struct nni_lbfgs nni_lbfgs;

/* An optimizer updates either a model's flat buffers ('model' set) or a
** plain list of parameters ('params', each with its own buffers; 'offsets'
** place each one's elements in the flat state). */
struct nn_optim {
    const optim_kind *kind;
    nn_model *model;     /* NULL for a plain list */
    int n_params;        /* a plain list: its parameters, in this block */
    ag_tensor **params;
    int64_t *offsets;
    ag_dtype dtype;
    ag_alloc_fn alloc;   /* the model's or the list's hook, kept so freeing needs no model */
    void *alloc_ud;
    int64_t numel;       /* values updated (the model's size when the state was made) */
    int64_t steps;
    double lr, momentum, beta1, beta2, alpha, eps, weight_decay;
    bool nesterov;
    /* per-step constants, set before the loop: Adam's bias corrections */
    double correct1, correct2;
    void *state[2];      /* kind->n_state buffers of numel elements of the
                            dtype, one block; unused ones NULL */
    size_t state_bytes;  /* the whole block, this header included */
    nni_lbfgs *lbfgs;    /* L-BFGS's state, in this block; NULL for the others */
    /* A plain list's own sticky error (a model's optimizer records on the
    ** model instead). */
    ag_status status;
    char errmsg[256];
};

/* Updates elements [off, off + n) of the flat state: w and g point at the
** first of the n values and gradients, of the dtype the function is for. */
typedef void (*update_fn)(const nn_optim *o, int64_t off, int64_t n, void *w, const void *g);

struct optim_kind {
    const char *name;
    int n_state;
    update_fn update_f32, update_f64;
    const char *state_names[2];   /* PyTorch's names, for checkpoints */
};

/* What an optimizer is made for: a model, or a plain list with a hook. */
typedef struct nni_optim_target {
    nn_model *model;
    int n;
    ag_tensor *const *params;
    ag_alloc_fn alloc;
    void *alloc_ud;
} nni_optim_target;

typedef struct nni_hyper {
    const char *name;
    double value, lo, hi;   /* valid when lo <= value <= hi (and hi_open: < hi) */
    bool hi_open;
} nni_hyper;

/* A new optimizer of 'kind' for 'tg' with zeroed state and 'extra' more
** zeroed bytes (16-aligned, at *extra), or a nil one after recording why,
** naming 'who': on the model, or in an optimizer in error for a list. */
nn_optim *nni_optim_make(const nni_optim_target *tg, const char *who, const optim_kind *kind,
                         double lr, int n_hyper, const nni_hyper *hs, size_t extra,
                         void **extra_at);
/* The nil optimizer a model constructor returns (for a NULL model too). */
nn_optim *nni_optim_nil(void);
/* A constructor's refusal: recorded on tg's model (nil returned), or kept
** in an optimizer in error for a list. */
nn_optim *nni_optim_refuse(const nni_optim_target *tg, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Records an error where o keeps them (its model, or itself); first wins. */
void nni_optim_fail(nn_optim *o, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Is o able to work (not nil, no error on it or its model)? */
bool nni_optim_ok(const nn_optim *o);
/* The values (or gradients, when 'grads') of every parameter in flat order,
** into dst as doubles; and the values set from src. */
void nni_optim_gather(const nn_optim *o, bool grads, double *dst);
void nni_optim_scatter(nn_optim *o, const double *src);
void nni_optim_zero_grad(nn_optim *o);

#endif
