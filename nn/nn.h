/*
** nn.h: the public API of libautograd-nn, neural-network pieces built on
** autograd.h alone: models that own their parameters, layers, initialisers,
** losses, optimizers and learning-rate schedules (this header), and data
** sets, checkpoints and metrics (nn_io.h, included below).
**
**     nn_model *m = nn_model_new(NULL, NULL);
**     nn_model_seed(m, 42);
**     nn_mlp *net = nn_mlp_new(m, "mlp", AG_F32, 3, (int64_t[]){2, 8, 1}, NN_TANH);
**     nn_optim *opt = nn_adam_new(m, 0.05, 0.9, 0.999, 1e-8, 0.0);
**     ag_tape *t = ag_tape_new();
**     for (int step = 0; step < 500; step++) {
**         ag_tensor *x = ag_tensor_from(t, AG_F32, 2, (int64_t[]){4, 2}, xs);
**         ag_tensor *y = ag_tensor_from(t, AG_F32, 2, (int64_t[]){4, 1}, ys);
**         ag_tensor *loss = nn_bce_with_logits_loss(t, nn_mlp_forward(t, net, x), y,
**                                                   NN_REDUCE_MEAN);
**         nn_model_zero_grad(m);
**         ag_backward(t, loss);
**         if (ag_tape_status(t) != AG_OK) break;       // ag_tape_errmsg says why
**         nn_optim_step(opt);
**         ag_tape_reset(t);
**     }
**     nn_optim_free(opt); ag_tape_free(t); nn_model_free(m);
**
** Ownership. A model owns its parameters, its buffers (nn_buffer), its
** layers and its random generator; everything is freed by nn_model_free. Optimizers are owned by
** the caller (nn_optim_free, before or after the model). A model must
** outlive every tape that uses its parameters and every optimizer step.
**
** Errors. A model has a sticky status like a tape's: the first error is kept
** with a message naming the function and the offending values, and later
** builders on that model do nothing. Builders never return NULL on error:
** they return a nil layer (whose forward records an error on the tape) or, for
** nn_param, NULL, which every autograd op reports as an error on its tape.
** Functions that take a tape (forwards, losses) record their errors on the
** tape and return its nil tensor, exactly as autograd ops do.
*/
#ifndef NN_H
#define NN_H

#include "autograd.h"
#include "nn_io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NN_API, the export macro of libautograd-nn, comes from nn_io.h. */

/* ------------------------------------------------------------------ models */
/* A model keeps all its parameters in ONE contiguous value buffer and ONE
** gradient buffer, parameter after parameter in registration order, so that
** zeroing gradients is one memset and an optimizer step one flat loop. All
** parameters of a model share one dtype, fixed by the first one. */

typedef struct nn_model nn_model;

/* A new, empty model in training mode whose generator is seeded with 0. 'fn'
** is the allocator hook for everything the model and its optimizers take
** (NULL: realloc/free). NULL only when memory runs out. */
NN_API nn_model *nn_model_new(ag_alloc_fn fn, void *ud);
/* Frees the model, its parameters and layers. NULL is a no-op. */
NN_API void nn_model_free(nn_model *m);

NN_API ag_status nn_model_status(const nn_model *m);   /* AG_EINVAL for NULL */
NN_API const char *nn_model_errmsg(const nn_model *m); /* "" when AG_OK */
/* Records an error as nn does (the first one wins); for code built on nn. */
NN_API void nn_model_fail(nn_model *m, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A new parameter called 'name' (at most 63 bytes, unique in the model),
** zero-filled, living in the model's flat buffers. Use it in ops on any tape;
** backward adds into its slot of the gradient buffer. The model owns it
** (ag_param_claim): nn_model_free frees it, and ag_param_free refuses it with
** AG_EINVAL. Registering grows the flat buffers, which may move
** them: earlier parameters keep their handles (they are re-pointed with
** ag_param_rebind), but pointers from ag_data / nn_model_values go stale, and
** parameters must not be added while a tape that uses them awaits backward.
** Returns NULL, recording the error on the model, when the model is in error,
** the name is missing, too long or taken, the dtype differs from the model's,
** or the shape is invalid. */
NN_API ag_tensor *nn_param(nn_model *m, const char *name, ag_dtype dt, int rank,
                           const int64_t *shape);

NN_API int nn_model_num_params(const nn_model *m);       /* parameter tensors */
NN_API ag_tensor *nn_model_param(const nn_model *m, int i);  /* NULL out of range */
NN_API ag_tensor *nn_model_find(const nn_model *m, const char *name);  /* NULL if absent */
NN_API int64_t nn_model_numel(const nn_model *m);        /* total elements */
NN_API ag_dtype nn_model_dtype(const nn_model *m);       /* AG_F32 before any param */
/* The flat buffers: nn_model_numel elements of nn_model_dtype each, in
** registration order. Borrowed; valid until the next nn_param. NULL when
** the model has no parameter. */
NN_API void *nn_model_values(nn_model *m);
NN_API void *nn_model_grads(nn_model *m);
/* Zeroes every gradient of the model (one pass over its gradient buffer). */
NN_API void nn_model_zero_grad(nn_model *m);
/* Lets the model's whole-buffer passes (optimizer steps, nn_model_zero_grad)
** share their work with 'pool' (borrowed: free it after the model, or set
** NULL first); NULL, the default, keeps them on the calling thread. Results
** are the same bits either way. Give the training tape the same pool with
** ag_tape_set_pool. */
NN_API void nn_model_set_pool(nn_model *m, ag_pool *pool);

/* The model's mode, which every layer that behaves differently in training
** follows (as PyTorch's module.train() / .eval()). Training mode (the
** default): dropout drops, and batch norm normalises by the batch's
** statistics and moves its running statistics toward them. Evaluation mode:
** dropout is the identity, and batch norm normalises by its running
** statistics and changes nothing. nn_model_training returns 1 or 0 (0 for
** NULL). */
NN_API void nn_model_set_training(nn_model *m, int on);
NN_API int nn_model_training(const nn_model *m);
/* The model's generator, used by layer initialisation and dropout. */
NN_API void nn_model_seed(nn_model *m, uint64_t seed);
NN_API ag_rng *nn_model_rng(nn_model *m);   /* NULL for NULL */

/* Checkpoints. nn_model_save writes every parameter and then every buffer
** under its name ("fc1.weight", "bn1.running_mean") to a safetensors file,
** atomically (nn_safetensors_save), so PyTorch or NumPy can read it.
** nn_model_load fills every parameter and buffer from such a file: it must
** hold every one of the model's names and no other (tensors named "optim.*",
** an optimizer's state, are passed over, and so is "<bn>.num_batches_tracked"
** of a batch norm layer "<bn>", which PyTorch writes and we do not keep in
** the file), with the same dtypes and shapes; on any mismatch nothing is
** changed, and the message names what is missing, extra or different. A
** file saved before the model had buffers lacks them: the strict load
** refuses it, naming them, and NN_LOAD_ALLOW_MISSING loads it, leaving the
** buffers as they are (a fresh batch norm's: mean 0, variance 1). Both return AG_OK or the
** error, its message in 'err' (errlen bytes, may be NULL); a failed save or
** load leaves the model's own status alone. A model in error returns its
** status and message. */
NN_API ag_status nn_model_save(nn_model *m, const char *path, char *err, size_t errlen);
NN_API ag_status nn_model_load(nn_model *m, const char *path, char *err, size_t errlen);
/* Flags of the loads below: tensors the file lacks are left as they are;
** tensors the model lacks are passed over. Strict (0) refuses both. */
enum { NN_LOAD_ALLOW_MISSING = 1, NN_LOAD_ALLOW_EXTRA = 2 };
NN_API ag_status nn_model_load_flags(nn_model *m, const char *path, int flags, char *err,
                                     size_t errlen);

/* Buffers: state a layer keeps in the model that is not a parameter, such
** as batch norm's running mean and variance (PyTorch's register_buffer). A
** buffer has a name unique among the model's parameters and buffers (at
** most 63 bytes), the model's dtype, and values of its own, outside the
** flat parameter buffers: optimizers, nn_model_zero_grad, nn_clip_grad_norm
** and nn_model_numel never see it, and it gets no gradient from layers
** (they read it as a constant of the tape). Checkpoints save and load it
** beside the parameters, under its name. nn_buffer registers one, zero-
** filled, and returns its handle (a parameter view the model owns, like
** nn_param's: read and write it with ag_get / ag_set / ag_data; passed to
** an op, it is recorded as a parameter, and whatever gradient reaches it
** goes to a scratch block nothing reads); NULL, recording the error on the
** model, as nn_param. Registering may move earlier buffers' values (their
** handles stay valid, ag_data pointers go stale). */
NN_API ag_tensor *nn_buffer(nn_model *m, const char *name, ag_dtype dt, int rank,
                            const int64_t *shape);
NN_API int nn_model_num_buffers(const nn_model *m);
NN_API ag_tensor *nn_model_buffer(const nn_model *m, int i);   /* NULL out of range */
NN_API ag_tensor *nn_model_find_buffer(const nn_model *m, const char *name);   /* NULL if absent */

typedef struct nn_optim nn_optim;   /* see "optimizers" below */

/* Training checkpoints: what an interrupted run needs to go on with the
** same bits as one never interrupted. nn_checkpoint_save writes the model's
** parameters (as nn_model_save), the state of optimizer 'o' (NULL: none) as
** ordinary tensors "optim.<param>.<state>" under PyTorch's state names
** (exp_avg, exp_avg_sq, momentum_buffer, square_avg, sum), and in the file's
** metadata its kind ("optim"), its step count ("optim.steps"), the model's
** generator ("model.rng", for dropout), and the caller's nmeta pairs (keys
** not "optim*" nor "model.rng"). Everything stays readable by safetensors
** readers in Python. nn_checkpoint_load restores all of it into a model and
** an optimizer of the same kind, made as before the save (the learning rate
** is the caller's, set by its schedule); flags as for nn_model_load_flags.
** Buffers are saved and restored with the parameters (not as optimizer
** state). A step count that is not plain decimal digits, or is above 2^53
** (no run gets there; the counter must go on without overflowing), is
** refused (AG_EINVAL). Nothing changes on failure. The caller keeps its own
** generators (a loader's shuffling) in its metadata with nn_rng_format. */
NN_API ag_status nn_checkpoint_save(nn_model *m, nn_optim *o, const char *path, int nmeta,
                                    const char *const *keys, const char *const *values, char *err,
                                    size_t errlen);
NN_API ag_status nn_checkpoint_load(nn_model *m, nn_optim *o, const char *path, int flags,
                                    char *err, size_t errlen);
/* A generator's whole state as text of NN_RNG_CHARS - 1 characters (hex),
** and back: the same draws follow. nn_rng_format returns snprintf's count
** (-1 for NULL); nn_rng_parse returns AG_EINVAL, leaving r alone, for text
** it did not write. */
enum { NN_RNG_CHARS = 64 + 1 + 1 + 1 + 16 + 1 };
NN_API int nn_rng_format(const ag_rng *r, char *buf, size_t n);
NN_API ag_status nn_rng_parse(ag_rng *r, const char *text);

/* ------------------------------------------------------------- activations */

typedef enum nn_activation {
    NN_IDENTITY,
    NN_RELU,
    NN_LEAKY_RELU,   /* slope 0.01 below zero, as PyTorch's default */
    NN_TANH,
    NN_SIGMOID,
    NN_GELU,         /* tanh approximation */
    NN_SOFTPLUS,
    NN_ACTIVATION_COUNT
} nn_activation;

#define NN_LEAKY_RELU_SLOPE 0.01

/* act(x) on tape t; NN_IDENTITY returns x itself. An unknown activation
** records AG_EINVAL on t and returns its nil tensor. */
NN_API ag_tensor *nn_activate(ag_tape *t, nn_activation act, ag_tensor *x);
NN_API const char *nn_activation_name(nn_activation act);   /* "relu"; "?" if unknown */

/* ----------------------------------------------------------------- dropout */
/* Inverted dropout: in training, each element is zeroed with probability p
** and the survivors scaled by 1/(1-p), so evaluation needs no rescaling. The
** mask is drawn from 'r' (one uniform per element, kept when u >= p) and is a
** constant of the tape. Identity when not training or p == 0; zeros when
** p == 1. p outside [0, 1] or a NULL r records AG_EINVAL on t. */
NN_API ag_tensor *nn_dropout_with(ag_tape *t, ag_rng *r, ag_tensor *x, double p, int training);
/* The same with the model's generator and training flag. */
NN_API ag_tensor *nn_dropout(ag_tape *t, nn_model *m, ag_tensor *x, double p);

/* ------------------------------------------------------------ dense layers */
/* y = x @ W + b. The weight is stored [in, out] (the transpose of PyTorch's
** nn.Linear, so a checkpoint exchanged with PyTorch needs the weight
** transposed), and a batch x of shape [N, in] needs no transpose; x may also
** be a single row of shape [in], giving [out]. The bias, of shape [out], is
** optional. Parameters are named "<name>.weight" and "<name>.bias". */

typedef struct nn_dense nn_dense;

/* A dense layer registered in m: Glorot/Xavier-uniform weight (gain 1) drawn
** from the model's generator, zero bias. The model owns it. On error (model
** in error, in or out < 1, bad name) returns a nil layer, never NULL, and
** the model records why. */
NN_API nn_dense *nn_dense_new(nn_model *m, const char *name, ag_dtype dt, int64_t in,
                              int64_t out, int bias);
/* Records the layer on t. A nil layer, or x whose last dim is not 'in',
** records an error on t and returns its nil tensor. */
NN_API ag_tensor *nn_dense_forward(ag_tape *t, const nn_dense *d, ag_tensor *x);
NN_API ag_tensor *nn_dense_weight(const nn_dense *d);   /* [in, out]; NULL for nil */
NN_API ag_tensor *nn_dense_bias(const nn_dense *d);     /* [out]; NULL if none or nil */
NN_API int nn_dense_is_nil(const nn_dense *d);

/* ----------------------------------------------------- convolution layers */
/* y = conv2d(x, W) + b over x [N, in, H, W] (ag_conv2d), with a square
** kernel and the same stride, padding (zeros) and dilation on both axes.
** The weight is stored [out, in / groups, kernel, kernel], PyTorch's
** layout; the bias [out] is optional. Parameters are "<name>.weight" and
** "<name>.bias". */

typedef struct nn_conv2d nn_conv2d;

/* A convolution layer registered in m: Kaiming-uniform weight by fan-in
** (in / groups * kernel^2) with ReLU's gain sqrt(2), drawn from the model's
** generator, zero bias. Sizes and kernel, stride, dilation >= 1, padding
** >= 0, groups dividing in and out; otherwise (or with the model in error)
** returns a nil layer, never NULL, and the model records why. */
NN_API nn_conv2d *nn_conv2d_new(nn_model *m, const char *name, ag_dtype dt, int64_t in,
                                int64_t out, int kernel, int stride, int pad, int dilation,
                                int groups, int bias);
/* Records the layer on t. A nil layer, or x not [N, in, H, W], records an
** error on t and returns its nil tensor. */
NN_API ag_tensor *nn_conv2d_forward(ag_tape *t, const nn_conv2d *c, ag_tensor *x);
NN_API ag_tensor *nn_conv2d_weight(const nn_conv2d *c);   /* NULL for nil */
NN_API ag_tensor *nn_conv2d_bias(const nn_conv2d *c);     /* NULL if none or nil */
NN_API int nn_conv2d_is_nil(const nn_conv2d *c);

/* Batch normalisation of x [N, channels, H, W] (ag_batch_norm) following
** the model's mode: in training, batch statistics, and the running mean
** and variance move by 'momentum' (PyTorch's default 0.1) toward the
** batch's, the variance unbiased, and num_batches_tracked counts the pass;
** in evaluation, the running statistics, and nothing changes. With
** 'affine', a scale "<name>.weight" (ones) and a shift "<name>.bias"
** (zeros), both [channels], as PyTorch names them. The running statistics
** are buffers of the model (nn_buffer) in its dtype, "<name>.running_mean"
** (zeros) and "<name>.running_var" (ones), as PyTorch names them: saved and
** loaded by checkpoints, never touched by optimizers. num_batches_tracked
** is kept by the layer only (PyTorch's momentum = None, the one user of it,
** is not offered): a file's "<name>.num_batches_tracked" is passed over on
** load, and PyTorch's load_state_dict fills in its own when absent. */

typedef struct nn_batchnorm2d nn_batchnorm2d;

/* channels >= 1, momentum in [0, 1], eps >= 0 (PyTorch's default 1e-5);
** otherwise a nil layer, never NULL, and the model records why. */
NN_API nn_batchnorm2d *nn_batchnorm2d_new(nn_model *m, const char *name, ag_dtype dt,
                                          int64_t channels, double momentum, double eps,
                                          int affine);
/* Records the layer on t (and in training updates its running statistics).
** A nil layer, or x not [N, channels, H, W] of the model's dtype, records
** an error on t and returns its nil tensor; so does training on one value
** per channel (N H W = 1). */
NN_API ag_tensor *nn_batchnorm2d_forward(ag_tape *t, nn_batchnorm2d *bn, ag_tensor *x);
/* The buffers [channels] (NULL for nil): read them, or set them before
** evaluation, through ag_get / ag_set / ag_data. */
NN_API ag_tensor *nn_batchnorm2d_running_mean(const nn_batchnorm2d *bn);
NN_API ag_tensor *nn_batchnorm2d_running_var(const nn_batchnorm2d *bn);
NN_API ag_tensor *nn_batchnorm2d_weight(const nn_batchnorm2d *bn);   /* NULL if none or nil */
NN_API ag_tensor *nn_batchnorm2d_bias(const nn_batchnorm2d *bn);     /* NULL if none or nil */
/* Training passes so far (0 for nil); not saved in checkpoints. */
NN_API int64_t nn_batchnorm2d_num_batches_tracked(const nn_batchnorm2d *bn);
NN_API int nn_batchnorm2d_is_nil(const nn_batchnorm2d *bn);

/* ---------------------------------------------------------------- pooling */
/* Pooling layers over x [N, C, H, W], with no parameters: max pooling
** (ag_max_pool2d), average pooling (ag_avg_pool2d, padded zeros counted)
** with a square kernel and the same stride and padding on both axes, and
** global average pooling (ag_global_avg_pool2d: [N, C, 1, 1]; follow it
** with ag_flatten(t, y, 1) for [N, C]). 'stride' 0 means the kernel size
** (PyTorch's default); padding 0 <= pad <= kernel / 2. Otherwise (or with
** the model in error) the constructors return a nil layer, never NULL, and
** the model records why. The model owns the layers. There is no flatten
** layer: ag_flatten(t, x, 1) is the whole of it. */

typedef struct nn_pool2d nn_pool2d;

NN_API nn_pool2d *nn_maxpool2d_new(nn_model *m, int kernel, int stride, int pad);
NN_API nn_pool2d *nn_avgpool2d_new(nn_model *m, int kernel, int stride, int pad);
NN_API nn_pool2d *nn_global_avgpool2d_new(nn_model *m);
/* Records the pooling on t. A nil layer, or x not of rank 4 or smaller
** than the kernel, records an error on t naming nn_pool2d_forward and
** returns its nil tensor. */
NN_API ag_tensor *nn_pool2d_forward(ag_tape *t, const nn_pool2d *p, ag_tensor *x);
NN_API int nn_pool2d_is_nil(const nn_pool2d *p);

/* ------------------------------------------------------ layer normalisation */
/* Layer normalisation (ag_layer_norm) of x over its last 'ndims' axes,
** whose sizes are shape[0..ndims) (PyTorch's normalized_shape), eps >= 0
** (PyTorch's default 1e-5). With 'affine', a scale "<name>.weight" (ones)
** and a shift "<name>.bias" (zeros) of that shape, PyTorch's names. The
** same in training and evaluation. Bad sizes give a nil layer, never NULL,
** and the model records why. */

typedef struct nn_layernorm nn_layernorm;

NN_API nn_layernorm *nn_layernorm_new(nn_model *m, const char *name, ag_dtype dt, int ndims,
                                      const int64_t *shape, double eps, int affine);
/* Records the layer on t. A nil layer, or x whose last axes are not the
** layer's shape, records an error on t and returns its nil tensor. */
NN_API ag_tensor *nn_layernorm_forward(ag_tape *t, const nn_layernorm *ln, ag_tensor *x);
NN_API ag_tensor *nn_layernorm_weight(const nn_layernorm *ln);   /* NULL if none or nil */
NN_API ag_tensor *nn_layernorm_bias(const nn_layernorm *ln);     /* NULL if none or nil */
NN_API int nn_layernorm_is_nil(const nn_layernorm *ln);

/* ------------------------------------------------------------- embeddings */
/* A lookup table of 'num' vectors of size 'dim': the weight "<name>.weight"
** [num, dim], drawn N(0, 1) from the model's generator (PyTorch's
** nn.Embedding). The forward picks rows by token (ag_index_select), so
** only the rows used get a gradient, a token used twice its rows' sum. */

typedef struct nn_embedding nn_embedding;

/* num, dim >= 1; otherwise a nil layer, never NULL, and the model records why. */
NN_API nn_embedding *nn_embedding_new(nn_model *m, const char *name, ag_dtype dt, int64_t num,
                                      int64_t dim);
/* The vectors of tokens laid out in (rank, shape), row-major: a result of
** shape (shape..., dim), e.g. tokens [N, L] give [N, L, dim]; rank 0 (one
** token) gives [dim]. rank < AG_MAX_DIMS. Tokens are copied. A token
** outside [0, num), a bad shape or a nil layer records an error on t naming
** nn_embedding_forward (and the token and its position) and returns its
** nil tensor. */
NN_API ag_tensor *nn_embedding_forward(ag_tape *t, const nn_embedding *e, int rank,
                                       const int64_t *shape, const int64_t *tokens);
NN_API ag_tensor *nn_embedding_weight(const nn_embedding *e);   /* [num, dim]; NULL for nil */
NN_API int nn_embedding_is_nil(const nn_embedding *e);

/* -------------------------------------------------------------------- MLPs */
/* A sequential stack of dense layers sizes[0] -> sizes[1] -> ... ->
** sizes[n-1], with 'act' after every layer but the last (which gives raw
** outputs: logits or regression values). Layer i is named "<name>.<i>", so
** parameters read "mlp.0.weight"; an empty or NULL name gives "0.weight".
** Weights are initialised for 'act': He/Kaiming-uniform for the ReLU family
** and GELU, Glorot/Xavier-uniform with nn_init_gain(act) otherwise; biases
** are zero. */

typedef struct nn_mlp nn_mlp;

/* n_sizes >= 2 sizes, each >= 1. On error returns a nil MLP (see nn_dense_new). */
NN_API nn_mlp *nn_mlp_new(nn_model *m, const char *name, ag_dtype dt, int n_sizes,
                          const int64_t *sizes, nn_activation act);
/* Dropout with probability p after each hidden activation (0, the default,
** turns it off); uses the model's generator and training flag. A p outside
** [0, 1) is recorded as an error on the model. */
NN_API void nn_mlp_set_dropout(nn_mlp *mlp, double p);
NN_API ag_tensor *nn_mlp_forward(ag_tape *t, const nn_mlp *mlp, ag_tensor *x);
NN_API int nn_mlp_depth(const nn_mlp *mlp);                  /* dense layers; 0 for nil */
NN_API nn_dense *nn_mlp_layer(const nn_mlp *mlp, int i);    /* NULL out of range */
NN_API int nn_mlp_is_nil(const nn_mlp *mlp);

/* ------------------------------------------------------------------- init */
/* Fill a tensor (usually a parameter) in place from an explicit generator.
** Fans follow PyTorch's rule for our [in, out] layout: for rank >= 2,
** fan_in = dim[-2] * receptive and fan_out = dim[-1] * receptive, where
** receptive is the product of the leading dims; a vector has fan_in =
** fan_out = its length; a scalar 1 and 1. Each returns AG_EINVAL (leaving w
** untouched) for a NULL or nil tensor, a NULL generator, or a gain that is
** not finite and positive. */

/* The recommended gain for weights feeding 'act': identity, sigmoid and
** softplus 1; tanh 5/3; relu sqrt(2); leaky relu sqrt(2 / (1 + 0.01^2));
** gelu sqrt(2) (our choice: PyTorch defines none, and GELU is ReLU-like). */
NN_API double nn_init_gain(nn_activation act);
NN_API void nn_init_fans(const ag_tensor *w, int64_t *fan_in, int64_t *fan_out);
/* U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)). */
NN_API ag_status nn_init_xavier_uniform(ag_tensor *w, ag_rng *r, double gain);
/* N(0, s^2) with s = gain * sqrt(2 / (fan_in + fan_out)). */
NN_API ag_status nn_init_xavier_normal(ag_tensor *w, ag_rng *r, double gain);
/* U(-a, a) with a = gain * sqrt(3 / fan_in) (fan-in mode). */
NN_API ag_status nn_init_kaiming_uniform(ag_tensor *w, ag_rng *r, double gain);
/* N(0, s^2) with s = gain / sqrt(fan_in). */
NN_API ag_status nn_init_kaiming_normal(ag_tensor *w, ag_rng *r, double gain);
NN_API ag_status nn_init_zeros(ag_tensor *w);
NN_API ag_status nn_init_constant(ag_tensor *w, double v);

/* ------------------------------------------------------------------ losses */
/* Each loss is a scalar built from autograd ops, so it differentiates (twice,
** too). Prediction and target must have the same dtype and shape (nothing
** broadcasts silently); otherwise the loss records AG_ESHAPE or AG_EDTYPE on
** t, naming itself and the shapes, and returns t's nil tensor. */

typedef enum nn_reduction {
    NN_REDUCE_MEAN,   /* mean over all elements (over rows for cross-entropy) */
    NN_REDUCE_SUM
} nn_reduction;

/* (pred - target)^2 */
NN_API ag_tensor *nn_mse_loss(ag_tape *t, ag_tensor *pred, ag_tensor *target, nn_reduction r);
/* |pred - target| */
NN_API ag_tensor *nn_l1_loss(ag_tape *t, ag_tensor *pred, ag_tensor *target, nn_reduction r);
/* With d = |pred - target|: d^2 / 2 where d <= delta, delta (d - delta / 2)
** beyond (PyTorch's HuberLoss); delta > 0. */
NN_API ag_tensor *nn_huber_loss(ag_tape *t, ag_tensor *pred, ag_tensor *target, double delta,
                                nn_reduction r);
/* Binary cross-entropy of probabilities sigmoid(logits) against targets in
** [0, 1], computed as softplus(x) - y x, which is finite for logits of any
** size. */
NN_API ag_tensor *nn_bce_with_logits_loss(ag_tape *t, ag_tensor *logits, ag_tensor *target,
                                          nn_reduction r);
/* Softmax cross-entropy of logits [N, C] against N integer labels in [0, C),
** stable for logits of any finite magnitude. With label smoothing s in
** [0, 1) the target is (1 - s) onehot + s / C (PyTorch's convention). Mean
** is over the N rows. Labels are copied. */
NN_API ag_tensor *nn_cross_entropy_loss(ag_tape *t, ag_tensor *logits, const int64_t *labels,
                                        double smoothing, nn_reduction r);
/* Max-margin loss relu(1 - y * score) for targets y in {-1, +1} (the loss of
** micrograd's demo); any other target value records AG_EINVAL. */
NN_API ag_tensor *nn_hinge_loss(ag_tape *t, ag_tensor *score, ag_tensor *target, nn_reduction r);

/* -------------------------------------------------------------- optimizers */
/* An optimizer updates every parameter of one model, or of a plain list of
** parameters (the _params constructors below). Its state (momentum,
** moments) is allocated once, in the model's dtype (an f32 model is updated
** in f32 with f32 state, as PyTorch does), when it is made, sized to
** the model's parameters at that moment: make it after the model is built.
** A step is one flat loop over the model's buffers and allocates nothing.
** Constructors return a nil optimizer (whose step does nothing) and record
** the error on the model when the model is in error, has no parameter, a
** hyper-parameter is out of range, or memory runs out. Weight decay applies to
** every parameter, biases included (PyTorch's default). With g the gradient,
** w the value, t the step count from 1, the updates are PyTorch's: */

typedef struct nn_optim nn_optim;

/* SGD:  g += wd w;  b = mu b + g (b starts at 0);  g = nesterov ? g + mu b : b
** (when mu > 0);  w -= lr g.  No dampening. Nesterov needs mu > 0. */
NN_API nn_optim *nn_sgd_new(nn_model *m, double lr, double momentum, double weight_decay,
                            int nesterov);
/* Adam: g += wd w (L2, coupled);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
** w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
** Usual values: lr 1e-3, b1 0.9, b2 0.999, eps 1e-8, wd 0. */
NN_API nn_optim *nn_adam_new(nn_model *m, double lr, double beta1, double beta2, double eps,
                             double weight_decay);
/* AdamW: w -= lr wd w (decoupled decay, before the moments), then Adam with
** no L2 term. PyTorch's default wd is 0.01. */
NN_API nn_optim *nn_adamw_new(nn_model *m, double lr, double beta1, double beta2, double eps,
                              double weight_decay);
/* RMSprop: g += wd w;  v = alpha v + (1 - alpha) g^2;  with momentum mu > 0:
** b = mu b + g / (sqrt(v) + eps), w -= lr b;  else w -= lr g / (sqrt(v) + eps).
** Usual values: lr 1e-2, alpha 0.99, eps 1e-8. Not the centered variant. */
NN_API nn_optim *nn_rmsprop_new(nn_model *m, double lr, double alpha, double eps, double momentum,
                                double weight_decay);
/* Adagrad: g += wd w;  s += g^2 (s starts at 0);  w -= lr g / (sqrt(s) + eps).
** Usual values: lr 1e-2, eps 1e-10. No lr decay (use a schedule). */
NN_API nn_optim *nn_adagrad_new(nn_model *m, double lr, double eps, double weight_decay);

/* The same optimizers over a plain list of parameters instead of a model:
** n distinct parameters of one dtype (ag_param_new, ag_param_view, or a
** model's nn_param), borrowed: they must outlive the optimizer. The list
** is copied. 'fn' is the allocator hook for the optimizer's state (NULL:
** realloc/free). Updates are bit for bit those of the model's optimizer on
** the same values and gradients. These record their errors on the
** optimizer itself (nn_optim_status): a constructor given a bad list or
** setting returns an optimizer in error (nil: its step does nothing),
** whose message names the function and the value; free it as any other.
**
**     ag_tensor *x = ag_param_new(AG_F64, 1, (int64_t[]){100});
**     nn_optim *o = nn_adam_new_params(NULL, NULL, 1, &x, 1e-3, 0.9, 0.999, 1e-8, 0);
**     if (nn_optim_status(o) != AG_OK) fprintf(stderr, "%s\n", nn_optim_errmsg(o));
*/
NN_API nn_optim *nn_sgd_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                                   double lr, double momentum, double weight_decay, int nesterov);
NN_API nn_optim *nn_adam_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                                    double lr, double beta1, double beta2, double eps,
                                    double weight_decay);
NN_API nn_optim *nn_adamw_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                                     double lr, double beta1, double beta2, double eps,
                                     double weight_decay);
NN_API nn_optim *nn_rmsprop_new_params(ag_alloc_fn fn, void *ud, int n,
                                       ag_tensor *const *params, double lr, double alpha,
                                       double eps, double momentum, double weight_decay);
NN_API nn_optim *nn_adagrad_new_params(ag_alloc_fn fn, void *ud, int n,
                                       ag_tensor *const *params, double lr, double eps,
                                       double weight_decay);

/* L-BFGS (PyTorch's torch.optim.LBFGS, with a strong-Wolfe line search):
** a quasi-Newton method that keeps the last history_size steps and
** gradient changes to approximate the inverse Hessian. It must evaluate the
** function again and again, so it takes a closure: given the parameters'
** current values, it computes the loss, stores it in *loss, and runs a
** backward pass that fills the parameters' gradients (nn_lbfgs_step zeroes
** them before each call); it returns AG_OK, or an error status to stop.
**
**     static ag_status rosenbrock(void *ud, double *loss)
**     {
**         struct problem *p = ud;              // a tape and the parameter x
**         ag_tape_reset(p->t);
**         ag_tensor *f = my_function(p->t, p->x);
**         ag_backward(p->t, f);
**         *loss = ag_item(f);
**         return ag_tape_status(p->t);
**     }
**     ...
**     nn_optim *o = nn_lbfgs_new_params(NULL, NULL, 1, &p.x, NULL);   // defaults
**     for (int i = 0; i < 100 && !nn_lbfgs_converged(o); i++)
**         nn_lbfgs_step(o, rosenbrock, &p);
**     if (nn_optim_status(o) != AG_OK) fprintf(stderr, "%s\n", nn_optim_errmsg(o));
**
** Each nn_lbfgs_step evaluates the closure at the current point and then
** runs up to max_iter iterations: a direction from the history (the
** two-loop recursion, scaled by y's/y'y of the last pair), then a line
** search along it for a step length t meeting the strong Wolfe conditions
**     f(x + t d) <= f(x) + c1 t g'd   and   |g(x + t d)'d| <= c2 |g'd|
** with c1 = 1e-4 and c2 = 0.9, by bracketing and cubic interpolation
** (Nocedal and Wright, algorithms 3.5 and 3.6). The first iteration ever
** tries t = lr min(1, 1 / |g|_1), later ones t = lr. A trial point where the
** loss is not finite counts as too far. It stops early when the gradient's
** largest element is at most tolerance_grad, when g'd > -tolerance_change
** (no descent), or when the step (largest element of t d) or the change of
** the loss falls below tolerance_change (these set nn_lbfgs_converged), or
** after max_eval closure calls. The history, the direction and t carry over
** to the next call, as PyTorch's do: do not change the parameters between
** calls. Its state is in double (the parameters are rounded to f32 when
** they are), made once: a step allocates nothing. nn_optim_steps counts
** iterations; nn_optim_set_lr sets lr (> 0); nn_optim_step refuses (it
** needs the closure). */
typedef ag_status (*nn_closure_fn)(void *ud, double *loss);

/* What one accepted iteration did, for on_iteration (logging, tests). */
typedef struct nn_lbfgs_iteration {
    int64_t iteration;       /* counted over the optimizer's life, from 1 */
    double step;             /* the accepted step length t along the direction d */
    double loss_before, loss;    /* f(x) and f(x + t d) */
    double slope_before, slope;  /* g(x)'d and g(x + t d)'d */
    int evaluations;         /* closure calls of this line search */
    int wolfe;               /* 1 when both strong Wolfe conditions hold */
} nn_lbfgs_iteration;

/* Settings; a zero field takes the default (PyTorch's, but for the line
** search, which is strong Wolfe here). NULL: all defaults. */
typedef struct nn_lbfgs_options {
    double lr;                /* step length scale; 1 */
    int max_iter;             /* iterations per nn_lbfgs_step; 20 */
    int max_eval;             /* closure calls per nn_lbfgs_step; max_iter * 5 / 4 */
    double tolerance_grad;    /* stop when max |g_i| <= this; 1e-7 */
    double tolerance_change;  /* stop when a step or loss change is below; 1e-9 */
    int history_size;         /* pairs kept; 100 */
    /* Called after every accepted iteration, when not NULL. */
    void (*on_iteration)(void *ud, const nn_lbfgs_iteration *it);
    void *on_iteration_ud;
} nn_lbfgs_options;

/* L-BFGS for a model's parameters (errors on the model, as the optimizers
** above) or for a plain list (errors on the optimizer, as the _params
** optimizers). Negative or non-finite settings are AG_EINVAL naming the
** field. */
NN_API nn_optim *nn_lbfgs_new(nn_model *m, const nn_lbfgs_options *opt);
NN_API nn_optim *nn_lbfgs_new_params(ag_alloc_fn fn, void *ud, int n, ag_tensor *const *params,
                                     const nn_lbfgs_options *opt);
/* Runs L-BFGS iterations as described above; returns the loss at the
** point it leaves the parameters at (their gradients are those of the
** last closure call, which may be another trial point). NaN, doing
** nothing more, when o is nil, NULL, not an L-BFGS optimizer, in error, or
** closure is NULL (AG_EINVAL), when the closure fails (its status, with a
** message naming nn_lbfgs_step and the evaluation) or gives a non-finite
** loss or gradient at the starting point (AG_ENUMERIC). */
NN_API double nn_lbfgs_step(nn_optim *o, nn_closure_fn closure, void *ud);
/* 1 when the last nn_lbfgs_step stopped on a tolerance (the gradient, the
** step or the change of the loss), not on max_iter or max_eval. */
NN_API int nn_lbfgs_converged(const nn_optim *o);
NN_API int64_t nn_lbfgs_evaluations(const nn_optim *o);   /* closure calls, over its life */

/* An optimizer's status: a model optimizer's is its model's, a plain
** list's its own; a nil one from a model constructor says AG_EINVAL (the
** model's message says why). ag_status for NULL is AG_EINVAL. */
NN_API ag_status nn_optim_status(const nn_optim *o);
NN_API const char *nn_optim_errmsg(const nn_optim *o);   /* "" when AG_OK */

/* One update of every parameter from its current gradient. Does nothing when
** the model (the list's optimizer) is in error; records AG_ESTATE on the
** model when parameters were added after the optimizer was made; an L-BFGS
** optimizer refuses (AG_EINVAL: use nn_lbfgs_step). */
NN_API void nn_optim_step(nn_optim *o);
/* The learning rate of later steps (for schedules). A negative or non-finite
** lr, and for L-BFGS also 0 (which its constructor refuses), is recorded as
** AG_EINVAL on the model (a list's optimizer) and ignored. */
NN_API void nn_optim_set_lr(nn_optim *o, double lr);
NN_API double nn_optim_lr(const nn_optim *o);            /* NaN for NULL or nil */
NN_API int64_t nn_optim_steps(const nn_optim *o);        /* steps taken */
NN_API const char *nn_optim_name(const nn_optim *o);     /* "adam"; "nil" */
NN_API int nn_optim_is_nil(const nn_optim *o);
/* Frees the optimizer (before or after its model). NULL and nil are no-ops. */
NN_API void nn_optim_free(nn_optim *o);

/* Scales all gradients of m by max_norm / (norm + 1e-6) when their global L2
** norm exceeds max_norm (PyTorch's clip_grad_norm_). Returns the norm before
** clipping; a non-finite norm is returned and nothing is scaled. max_norm
** must be > 0 (else AG_EINVAL on the model and NaN). */
NN_API double nn_clip_grad_norm(nn_model *m, double max_norm);

/* -------------------------------------------------------------- schedules */
/* A learning-rate schedule is a small value: nn_schedule_lr(&s, step) gives
** the rate for step 0, 1, 2, ... (or epoch, as you count), to pass to
** nn_optim_set_lr. Invalid settings make nn_schedule_lr return NaN, which
** nn_optim_set_lr rejects with a message. */

typedef enum nn_schedule_kind {
    NN_SCHEDULE_CONSTANT,
    NN_SCHEDULE_STEP,
    NN_SCHEDULE_EXPONENTIAL,
    NN_SCHEDULE_COSINE
} nn_schedule_kind;

typedef struct nn_schedule {
    nn_schedule_kind kind;
    double base_lr, gamma, min_lr;
    int64_t step_size, warmup, total;
} nn_schedule;

/* base_lr always. */
NN_API nn_schedule nn_schedule_constant(double base_lr);
/* base_lr * gamma^floor(step / step_size); step_size >= 1. */
NN_API nn_schedule nn_schedule_step(double base_lr, int64_t step_size, double gamma);
/* base_lr * gamma^step. */
NN_API nn_schedule nn_schedule_exponential(double base_lr, double gamma);
/* Linear warm-up then cosine decay to min_lr: base_lr (step + 1) / warmup
** for step < warmup; then min_lr + (base_lr - min_lr)(1 + cos(pi p)) / 2 with
** p = (step - warmup) / (total - warmup); min_lr from step 'total' on.
** 0 <= warmup < total. */
NN_API nn_schedule nn_schedule_cosine(double base_lr, double min_lr, int64_t warmup,
                                      int64_t total);
NN_API double nn_schedule_lr(const nn_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
