/*
** model_internal.h: the model's layout and the nni_ helpers shared by the
** model half of nn (model.c, layers.c, init.c, loss.c, optim.c). Never
** installed. Like the rest of nn, it sees autograd only through autograd.h.
*/
#ifndef NN_MODEL_INTERNAL_H
#define NN_MODEL_INTERNAL_H

#include "nn.h"

#include <stdbool.h>

/* One registered parameter: its handle and where its elements start in the
** model's flat buffers. */
typedef struct nni_param {
    ag_tensor *tensor;
    int64_t offset;
} nni_param;

/* Memory the model frees with itself (layers), kept as a list. */
typedef struct nni_block {
    struct nni_block *next;
    size_t size;   /* including this header */
} nni_block;

struct nn_model {
    ag_alloc_fn alloc;
    void *alloc_ud;
    ag_status status;
    char errmsg[256];
    bool has_dtype;
    ag_dtype dtype;
    /* 'cap' elements each; the first 'numel' belong to parameters. Both
    ** live in 'block' (block_bytes), at different page slots. */
    void *value, *grad;
    void *block;
    size_t block_bytes;
    int64_t numel, cap;
    nni_param *params;
    int n_params, cap_params;
    nni_block *blocks;
    /* Buffers (nn_buffer): like parameters but in a block of their own,
    ** 'buf_value' (buf_cap elements, the first buf_numel in use) and
    ** 'buf_grad', a scratch gradient nothing reads, there only so that a
    ** buffer passed to an op by mistake cannot write into its values. */
    void *buf_value, *buf_grad;
    int64_t buf_numel, buf_cap;
    nni_param *buffers;
    int n_buffers, cap_buffers;
    ag_rng rng;
    bool training;
    ag_pool *pool;   /* borrowed; NULL: whole-buffer passes on the caller's thread */
};

void *nni_realloc(const nn_model *m, void *p, size_t osize, size_t nsize);
/* 'size' zeroed bytes freed with the model; NULL after recording AG_ENOMEM
** (naming 'who') on the model. */
void *nni_model_alloc(nn_model *m, const char *who, size_t size);
/* "<prefix>.<suffix>", or just suffix when prefix is NULL or empty, into
** buf[64]; false (error recorded on m, naming 'who') when it does not fit. */
bool nni_join_name(nn_model *m, const char *who, char *buf, const char *prefix,
                   const char *suffix);

/* An optimizer's state, for checkpoints (optim.c): the model it updates
** (NULL for nil), the values it was sized for, its n_state buffers of
** numel elements of the model's dtype, and their PyTorch names. */
nn_model *nni_optim_model(const nn_optim *o);
int64_t nni_optim_numel(const nn_optim *o);
int nni_optim_n_state(const nn_optim *o);
const char *nni_optim_state_name(const nn_optim *o, int k);
void *nni_optim_state(nn_optim *o, int k);
void nni_optim_set_steps(nn_optim *o, int64_t steps);

/* Why a layer cannot run, recorded on t naming 'who': t in error, a NULL or
** nil layer, or its model in error. True when it can. */
bool nni_layer_usable(ag_tape *t, const char *who, const void *layer, bool nil,
                      const nn_model *m);

/* For nn functions that record on a tape: false when t is in error (or NULL),
** or, after recording AG_EINVAL on t naming 'who' and 'what', when x is NULL or
** nil. */
bool nni_check_input(ag_tape *t, const char *who, const char *what, const ag_tensor *x);
/* "[2,3]" for x into buf (AG_MAX_DIMS * 21 + 3 bytes suffice); returns buf. */
const char *nni_shape_str(const ag_tensor *x, char *buf, size_t n);
enum { NNI_SHAPE_STR = AG_MAX_DIMS * 21 + 3 };

/* The first address at or after p whose offset within a 4 KiB page is
** 'slot' (p needs up to 4095 bytes after it). Buffers streamed side by side
** (a model's values and gradients, an optimizer's state) start at different
** slots: when their addresses agree in the low 12 bits, the core takes each
** load for a possible alias of the store before it and waits (4K
** aliasing). Page-aligned buffers made SGD's loop a third slower. */
enum { NNI_PAGE = 4096 };
static inline void *nni_page_slot(void *p, size_t slot)
{
    return (char *)p + ((slot - (uintptr_t)p) & (NNI_PAGE - 1));
}

#endif
