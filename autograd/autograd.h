/*
** autograd.h: the public API of libautograd, a tape-based reverse-mode
** automatic differentiation engine for f32 and f64 tensors.
**
**     ag_tape   *t  = ag_tape_new();
**     ag_tensor *w  = ag_param_scalar(AG_F64, 0.5);       // owned by you
**     ag_tensor *x  = ag_scalar(t, AG_F64, 3.0);          // lives on the tape
**     ag_tensor *y  = ag_mul(t, w, x);
**     ag_tensor *l  = ag_square(t, ag_sub(t, y, ag_scalar(t, AG_F64, 17.0)));
**     ag_backward(t, l);                                  // w's grad is set
**     if (ag_tape_status(t) != AG_OK) fprintf(stderr, "%s\n", ag_tape_errmsg(t));
**     printf("dl/dw = %g\n", ag_grad_item(w));
**     ag_tape_reset(t);                                   // temporaries gone
**     ag_param_free(w);
**     ag_tape_free(t);
**
** Ownership. A tape owns an arena: every tensor made while it records (inputs,
** constants, op results, gradients) lives there and stays valid until
** ag_tape_reset or ag_tape_free. Parameters are made outside any tape by
** ag_param_*, owned by their creator, and keep value and gradient across
** resets; free them with ag_param_free.
**
** Errors. Every function that takes a tape records the first error on it (a
** "sticky" status with a message naming the function and the offending
** values) and returns the tape's nil tensor (rank 0, no data) instead of
** crashing; later ops on that tape return nil and record nothing. Check
** ag_tape_status once, where convenient. ag_tape_reset clears the error.
**
** NaN. A NaN propagates through every op, as in IEEE arithmetic, NumPy and
** PyTorch: an element of a result that a NaN input takes part in is NaN
** (relu(NaN), maximum(NaN, 0), clamp, a max or min over a lane holding a
** NaN, a softmax row holding one), and so is the gradient sent back
** through it to every input of that element. A mask is nonzero for NaN
** (ag_where picks a); comparisons (ag_gt...) are false for NaN.
**
** Threads. A tape and the tensors on it belong to one thread at a time. Two
** tapes may run on two threads if they share no parameter that both
** differentiate. Nothing in the library is global.
*/
#ifndef AUTOGRAD_H
#define AUTOGRAD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define AG_API
#else
#define AG_API __attribute__((visibility("default")))
#endif

#define AG_MAX_DIMS 8

typedef enum ag_dtype { AG_F32, AG_F64 } ag_dtype;

typedef enum ag_status {
    AG_OK = 0,
    AG_ENOMEM,       /* an allocation failed */
    AG_EINVAL,       /* NULL, bad value, tensor from another tape */
    AG_ESHAPE,       /* shapes do not fit the op */
    AG_EDTYPE,       /* dtypes mixed or unsupported */
    AG_ESTATE,       /* wrong moment: tensor used after reset, backward twice... */
    AG_EIO,          /* a file could not be read or written */
    AG_ENUMERIC,     /* a NaN or infinity (anomaly mode) */
    AG_EUNSUPPORTED, /* a feature this build lacks */
    AG_STATUS_COUNT
} ag_status;

typedef struct ag_tape ag_tape;
typedef struct ag_tensor ag_tensor;

/* The one allocator hook, as Lua's: nsize == 0 frees 'ptr' and returns NULL;
** otherwise it behaves as realloc(ptr, nsize). 'osize' is the size of the
** block 'ptr' points to (0 when ptr is NULL). NULL as a hook means realloc/free. */
typedef void *(*ag_alloc_fn)(void *ud, void *ptr, size_t osize, size_t nsize);

/* The default allocator hook's behaviour for any hook: calls 'fn' when set,
** else realloc/free. Freeing NULL (p NULL, nsize 0) never reaches the hook.
** For code built on the library, such as nn, so that one hook serves all. */
AG_API void *ag_realloc(ag_alloc_fn fn, void *ud, void *p, size_t osize, size_t nsize);
/* Writes a shape as "[2,3]" ("[]" for rank 0); snprintf's rules and result. */
AG_API int ag_shape_str(char *buf, size_t n, int rank, const int64_t *shape);

/* Static string for a status code ("shape mismatch"); never NULL. */
AG_API const char *ag_status_str(ag_status s);
AG_API size_t ag_dtype_size(ag_dtype dt);
AG_API const char *ag_dtype_name(ag_dtype dt);   /* "f32", "f64" */

/* ---------------------------------------------------------------- tapes */

/* A new, empty tape that records. NULL only when memory runs out. */
AG_API ag_tape *ag_tape_new(void);
AG_API ag_tape *ag_tape_new_alloc(ag_alloc_fn fn, void *ud);
/* Frees the tape and every tensor on it. NULL is a no-op. */
AG_API void ag_tape_free(ag_tape *t);
/* Forgets every entry and tensor of the tape in O(1), keeping the memory for
** the next pass, clears the error status and closes any open no-grad scope.
** Tensors made on the tape before the reset must not be used again. A
** tensor made in the pass just ended is always caught, in every build:
** ops and accessors (ag_get, ag_item, ag_data, ag_grad, shapes...) record
** AG_ESTATE and answer as for nil, and never read the current pass's
** tensors in its place (headers alternate between two arenas by pass, so
** the last pass's are still whole). One kept across two resets or more is
** a dangling pointer, like memory after free: it may read a current tensor. */
AG_API void ag_tape_reset(ag_tape *t);
AG_API ag_status ag_tape_status(const ag_tape *t);
AG_API const char *ag_tape_errmsg(const ag_tape *t);  /* "" when AG_OK */
/* Records an error as the library does (the first one wins); for code built
** on the library, such as nn. */
AG_API void ag_tape_fail(ag_tape *t, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* The tape's nil tensor (rank 0, no data), which failed ops return; for code
** built on the library that must return one after ag_tape_fail. For a NULL
** tape, a shared nil that is never written. */
AG_API ag_tensor *ag_tape_nil(ag_tape *t);
/* With trap on, the first error prints its message and aborts: a debugging aid. */
AG_API void ag_tape_set_trap(ag_tape *t, int on);
/* Anomaly mode, a debugging aid (off by default; kept across resets). While
** it is on, the first op whose result, or whose backward gradient for one
** of its inputs, holds a NaN or an infinity records AG_ENUMERIC with a
** message naming the op, its entry on the tape, its inputs' names, dtypes
** and shapes, and the source file and line it was called from when the call
** went through autograd_trace.h (see there). A result is checked when the
** next op on the tape starts, at backward, or by ag_tape_status, whichever
** comes first. Every result and gradient is scanned once: expect training
** to run slower, and memory to grow by a location per recorded op. */
AG_API void ag_tape_set_anomaly(ag_tape *t, int on);
AG_API int ag_tape_anomaly(const ag_tape *t);    /* 0 for NULL */
/* Stores 'file' and 'line' as where the next ops on t are called from, for
** anomaly mode's messages, and returns t. 'file' must outlive the tape (a
** string literal such as __FILE__). autograd_trace.h wraps every op in it. */
AG_API ag_tape *ag_tape_here(ag_tape *t, const char *file, int line);
AG_API size_t ag_tape_entries(const ag_tape *t);     /* ops recorded so far */
AG_API size_t ag_tape_bytes(const ag_tape *t);       /* arena bytes in use */
/* No-grad scope: between begin and end, ops compute but record nothing and
** their results do not require grad. Scopes nest. */
AG_API void ag_no_grad_begin(ag_tape *t);
AG_API void ag_no_grad_end(ag_tape *t);

/* ---------------------------------------------------------- tensors on a tape */
/* All shapes are (rank, dims[]) with rank 0..AG_MAX_DIMS, row-major, contiguous.
** A tensor made here is a constant: it gets a gradient only after
** ag_requires_grad. */

/* A constant holding a copy of 'data', numel elements of the dtype. Prefer
** the typed pair, for which the compiler checks that data holds floats
** (doubles): passing a double array to ag_tensor_from(t, AG_F32, ...) read
** its bytes as floats. */
AG_API ag_tensor *ag_tensor_from_f32(ag_tape *t, int rank, const int64_t *shape,
                                     const float *data);
AG_API ag_tensor *ag_tensor_from_f64(ag_tape *t, int rank, const int64_t *shape,
                                     const double *data);
/* The untyped form, data in dtype dt (for buffers whose dtype is known at
** run time only). */
AG_API ag_tensor *ag_tensor_from(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape,
                                 const void *data);
AG_API ag_tensor *ag_zeros(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape);
/* Values left unset, for a caller that fills every element before any op
** reads it (ag_data, then a copy): saves the pass that ag_zeros makes. */
AG_API ag_tensor *ag_empty(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape);
AG_API ag_tensor *ag_ones(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape);
AG_API ag_tensor *ag_full(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape, double v);
AG_API ag_tensor *ag_scalar(ag_tape *t, ag_dtype dt, double v);    /* rank 0 */
/* [start, start+step, ...) below 'stop' (above it when step < 0). */
AG_API ag_tensor *ag_arange(ag_tape *t, ag_dtype dt, double start, double stop, double step);
AG_API ag_tensor *ag_eye(ag_tape *t, ag_dtype dt, int64_t n);
/* Marks a tensor of the tape as one whose gradient backward computes. An
** unrecorded op result (computed from constants only) becomes a leaf; a
** recorded one is an AG_EINVAL error. Returns x, so it chains:
** ag_requires_grad(ag_scalar(t, AG_F64, 2)). */
AG_API ag_tensor *ag_requires_grad(ag_tensor *x);
/* A copy of x that records nothing and requires no grad. */
AG_API ag_tensor *ag_detach(ag_tape *t, ag_tensor *x);

/* ------------------------------------------------------------------ random */
/* Our own generator (xoshiro256** seeded by splitmix64): the same seed gives
** the same bits on every platform. Normal variates use the polar method. */
typedef struct ag_rng {
    uint64_t s[4];
    double spare;
    int has_spare;
} ag_rng;

AG_API void ag_rng_seed(ag_rng *r, uint64_t seed);
AG_API uint64_t ag_rng_next(ag_rng *r);               /* 64 random bits */
AG_API double ag_rng_uniform(ag_rng *r);              /* [0, 1) */
AG_API double ag_rng_normal(ag_rng *r);               /* mean 0, std 1 */
AG_API uint64_t ag_rng_below(ag_rng *r, uint64_t n);  /* [0, n), unbiased; 0 if n == 0 */
AG_API ag_tensor *ag_rand(ag_tape *t, ag_rng *r, ag_dtype dt, int rank, const int64_t *shape,
                          double lo, double hi);
AG_API ag_tensor *ag_randn(ag_tape *t, ag_rng *r, ag_dtype dt, int rank, const int64_t *shape,
                           double mean, double std);
/* Fill any tensor's values in place (for initialising parameters). */
AG_API void ag_fill_uniform(ag_tensor *x, ag_rng *r, double lo, double hi);
AG_API void ag_fill_normal(ag_tensor *x, ag_rng *r, double mean, double std);
AG_API void ag_fill(ag_tensor *x, double v);

/* -------------------------------------------------------------- parameters */
/* Tensors outside any tape that require grad and keep their value and
** gradient across resets; usable on any tape. Zero-filled. NULL when memory
** runs out or the shape is invalid. Free with ag_param_free. */
AG_API ag_tensor *ag_param_new(ag_dtype dt, int rank, const int64_t *shape);
AG_API ag_tensor *ag_param_new_alloc(ag_alloc_fn fn, void *ud, ag_dtype dt, int rank,
                                     const int64_t *shape);
AG_API ag_tensor *ag_param_scalar(ag_dtype dt, double v);
/* A parameter that borrows 'value' and 'grad' (numel elements of dtype dt
** each, owned by the caller and outliving the parameter), so that a model can
** keep all its parameters in one buffer. Only the small header is allocated. */
AG_API ag_tensor *ag_param_view(ag_alloc_fn fn, void *ud, ag_dtype dt, int rank,
                                const int64_t *shape, void *value, void *grad);
/* Points parameter p at new 'value' and 'grad' buffers (numel elements of
** its dtype each, owned by the caller), keeping the same handle: a model
** whose flat buffers grow moves its parameters this way. Nothing is copied;
** the old buffers are no longer referenced. Call it between passes, never
** while a tape that uses p is waiting for backward. Returns AG_EINVAL (and
** changes nothing) when p is not a parameter or a buffer is NULL. */
AG_API ag_status ag_param_rebind(ag_tensor *p, void *value, void *grad);
/* Frees a parameter made by ag_param_new, _scalar or _view (a view's
** buffers stay the caller's). NULL is a no-op (AG_OK). Returns AG_EINVAL and
** frees nothing when p is not a parameter (a tape tensor, a parameter's
** gradient) or when an owner has claimed it (below: an nn_model's
** parameters are freed by nn_model_free, and freeing one here as well was a
** double free). */
AG_API ag_status ag_param_free(ag_tensor *p);
/* For code that keeps parameters on behalf of its users, as nn_model does:
** makes 'owner' (any non-NULL address, such as the model) the only one that
** may free p, with ag_param_free_claimed(p, owner); ag_param_free(p) then
** refuses. AG_EINVAL when p is not a parameter, owner is NULL or p is
** claimed already. ag_param_free_claimed returns AG_EINVAL, freeing
** nothing, unless p is claimed by 'owner' (NULL p: AG_OK). */
AG_API ag_status ag_param_claim(ag_tensor *p, const void *owner);
AG_API ag_status ag_param_free_claimed(ag_tensor *p, const void *owner);
AG_API int ag_param_claimed(const ag_tensor *p);   /* 1 when an owner claimed p */
AG_API int ag_is_param(const ag_tensor *x);

/* --------------------------------------------------------------- accessors */
/* All accept NULL and the nil tensor (rank 0, numel 0, data NULL). */
AG_API ag_dtype ag_dtype_of(const ag_tensor *x);
AG_API int ag_rank(const ag_tensor *x);
AG_API const int64_t *ag_shape(const ag_tensor *x);   /* rank entries */
AG_API int64_t ag_dim(const ag_tensor *x, int axis);  /* negative counts from the end; 0 if out of range */
AG_API int64_t ag_numel(const ag_tensor *x);
AG_API void *ag_data(ag_tensor *x);                   /* float* or double* per dtype */
AG_API double ag_get(const ag_tensor *x, int64_t i);  /* flat index; NaN if out of range */
AG_API void ag_set(ag_tensor *x, int64_t i, double v);
AG_API double ag_item(const ag_tensor *x);            /* the single element; NaN unless numel == 1 */
/* The gradient as a tensor of x's shape, or NULL before any backward reached x.
** Read it, do not write it: gradients of tape tensors may share storage (for
** y = a + b, a, b and y have the same gradient tensor). A parameter's
** gradient is its own buffer, zeroed by ag_zero_grad. */
AG_API ag_tensor *ag_grad(const ag_tensor *x);
AG_API double ag_grad_item(const ag_tensor *x);       /* 0 when there is no gradient */
AG_API int ag_requires_grad_of(const ag_tensor *x);
AG_API int ag_is_nil(const ag_tensor *x);
/* Names appear in error messages and graphs. The string is copied (into the
** arena for tape tensors); it is truncated at 63 bytes. */
AG_API void ag_set_name(ag_tensor *x, const char *name);
AG_API const char *ag_name(const ag_tensor *x);       /* "" when unnamed */
/* The op that produced x ("mul"), or "" for leaves. */
AG_API const char *ag_op_name(const ag_tensor *x);
AG_API int ag_num_inputs(const ag_tensor *x);
AG_API ag_tensor *ag_input(const ag_tensor *x, int i);
/* Writes "tensor(name, f64, [2,3], [[1, 2, 3], [4, 5, 6]])" form; long tensors
** are summarised. Returns what snprintf would. */
AG_API int ag_snprint(char *buf, size_t n, const ag_tensor *x);
AG_API void ag_print(FILE *f, const ag_tensor *x);

/* ----------------------------------------------------------------- backward */
/* Seeds dy/dy = 1 (y must have one element) and replays the tape backwards,
** adding into the gradient of every tensor that requires grad and reaches y.
** Gradients accumulate: a second backward without ag_zero_grad adds again
** (as PyTorch does). Stored gradients are plain values, never recorded. If
** the pass fails (ag_tape_status is not AG_OK after it), the gradients it
** would have added are unspecified: a dense layer's weight may already hold
** its part. Zero them before trying again. */
AG_API void ag_backward(ag_tape *t, ag_tensor *y);
/* The same with an explicit seed of y's shape, for non-scalar y. */
AG_API void ag_backward_seed(ag_tape *t, ag_tensor *y, ag_tensor *seed);
/* Gradients of y (seeded by 'seed', or 1 when NULL) with respect to xs[0..n),
** written to out[0..n) without touching any .grad (PyTorch's autograd.grad).
** A tensor y does not depend on gets a zero gradient. With create_graph the
** vector-Jacobian products are recorded on the tape, so out[i] can itself be
** differentiated (second derivatives, Hessian-vector products). */
AG_API void ag_gradients(ag_tape *t, ag_tensor *y, ag_tensor *seed, int n,
                         ag_tensor *const *xs, ag_tensor **out, int create_graph);
/* Zeroes a parameter's gradient, or forgets a tape tensor's. */
AG_API void ag_zero_grad(ag_tensor *x);
AG_API void ag_zero_grads(int n, ag_tensor *const *xs);

/* ---------------------------------------------------------------------- ops */
/* Binary elementwise ops broadcast by NumPy's rules. Both inputs must share a
** dtype. Every op below records a vector-Jacobian product, so gradients of
** gradients work. */
AG_API ag_tensor *ag_add(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_sub(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_mul(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_div(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_pow(ag_tape *t, ag_tensor *a, ag_tensor *b);      /* a^b, d/db needs a > 0 */
AG_API ag_tensor *ag_maximum(ag_tape *t, ag_tensor *a, ag_tensor *b);  /* ties split the gradient */
AG_API ag_tensor *ag_minimum(ag_tape *t, ag_tensor *a, ag_tensor *b);
/* mask ? a : b, elementwise; mask is any tensor of the dtype (nonzero = true)
** and gets no gradient. All three broadcast together. */
AG_API ag_tensor *ag_where(ag_tape *t, ag_tensor *mask, ag_tensor *a, ag_tensor *b);
/* Comparisons give 0/1 tensors that require no grad. */
AG_API ag_tensor *ag_gt(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_ge(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_lt(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_le(ag_tape *t, ag_tensor *a, ag_tensor *b);
AG_API ag_tensor *ag_eq(ag_tape *t, ag_tensor *a, ag_tensor *b);

/* Scalar conveniences: each makes a rank-0 constant of x's dtype. */
AG_API ag_tensor *ag_add_scalar(ag_tape *t, ag_tensor *x, double s);
AG_API ag_tensor *ag_mul_scalar(ag_tape *t, ag_tensor *x, double s);

/* Unary elementwise ops. */
AG_API ag_tensor *ag_neg(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_exp(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_log(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_sqrt(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_abs(ag_tape *t, ag_tensor *x);     /* d/dx at 0 is 0 */
AG_API ag_tensor *ag_sign(ag_tape *t, ag_tensor *x);    /* -1, 0, 1 (NaN for NaN); no gradient */
AG_API ag_tensor *ag_sin(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_cos(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_tanh(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_sigmoid(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_relu(ag_tape *t, ag_tensor *x);    /* d/dx at 0 is 0 */
AG_API ag_tensor *ag_leaky_relu(ag_tape *t, ag_tensor *x, double slope);
AG_API ag_tensor *ag_gelu(ag_tape *t, ag_tensor *x);    /* tanh approximation */
AG_API ag_tensor *ag_softplus(ag_tape *t, ag_tensor *x);  /* log(1 + e^x), stable */
AG_API ag_tensor *ag_clamp(ag_tape *t, ag_tensor *x, double lo, double hi);
AG_API ag_tensor *ag_pow_scalar(ag_tape *t, ag_tensor *x, double p);   /* x^p */
AG_API ag_tensor *ag_square(ag_tape *t, ag_tensor *x);                 /* x^2 */

/* Reductions. Axes may be negative (-1 is the last). keepdim keeps the
** reduced axis with size 1. */
AG_API ag_tensor *ag_sum(ag_tape *t, ag_tensor *x);     /* over all elements: rank 0 */
AG_API ag_tensor *ag_mean(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_max(ag_tape *t, ag_tensor *x);     /* ties share the gradient */
AG_API ag_tensor *ag_min(ag_tape *t, ag_tensor *x);
AG_API ag_tensor *ag_logsumexp(ag_tape *t, ag_tensor *x);   /* d/dx = softmax x */
AG_API ag_tensor *ag_sum_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim);
AG_API ag_tensor *ag_mean_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim);
AG_API ag_tensor *ag_max_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim);
AG_API ag_tensor *ag_min_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim);
AG_API ag_tensor *ag_logsumexp_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim);
/* Sums x down to a shape it broadcasts from (the inverse of ag_broadcast_to). */
AG_API ag_tensor *ag_sum_to(ag_tape *t, ag_tensor *x, int rank, const int64_t *shape);

/* Shape ops. */
AG_API ag_tensor *ag_reshape(ag_tape *t, ag_tensor *x, int rank, const int64_t *shape);
AG_API ag_tensor *ag_permute(ag_tape *t, ag_tensor *x, const int *perm);  /* rank(x) entries */
AG_API ag_tensor *ag_transpose(ag_tape *t, ag_tensor *x, int axis0, int axis1);
/* Elements start, start+step, ... below stop along one axis (step >= 1). */
AG_API ag_tensor *ag_slice(ag_tape *t, ag_tensor *x, int axis, int64_t start, int64_t stop,
                           int64_t step);
AG_API ag_tensor *ag_concat(ag_tape *t, int n, ag_tensor *const *xs, int axis);
AG_API ag_tensor *ag_broadcast_to(ag_tape *t, ag_tensor *x, int rank, const int64_t *shape);
/* x converted to dtype dt; the gradient converts back. */
AG_API ag_tensor *ag_cast(ag_tape *t, ag_tensor *x, ag_dtype dt);

/* Matrix product. 2-D x 2-D; a vector on either side as NumPy treats it (a
** 1-D left operand is a row, a 1-D right operand a column, and that axis is
** dropped from the result); ranks above 2 are batches of matrices whose
** leading dims broadcast. */
AG_API ag_tensor *ag_matmul(ag_tape *t, ag_tensor *a, ag_tensor *b);

/* The activations a fused dense layer can apply. */
typedef enum ag_activation {
    AG_ACT_IDENTITY,
    AG_ACT_RELU,
    AG_ACT_SIGMOID,
    AG_ACT_TANH
} ag_activation;

/* A dense layer in one op: act(x @ w + b), for x of shape [..., in], w
** [in, out] and b [out] (or NULL: no bias), giving [..., out]. Values and
** gradients are bit for bit those of ag_matmul, ag_add and the activation
** recorded one after another, in fewer passes over memory and with one
** result instead of three; it differentiates twice like them. Shapes that do
** not fit record AG_ESHAPE naming them, an unknown act AG_EINVAL. */
AG_API ag_tensor *ag_dense(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b,
                           ag_activation act);

/* Softmax family along an axis, for any finite logits: each is computed
** from z = x - max and the sum of e^z, kept apart (log-softmax is
** z - log sum e^z, not x - logsumexp x), so adding a constant to the logits
** changes no result and no gradient beyond a few ulps (logsumexp moves by
** the constant), at 1e16 in f64 as at 0. */
AG_API ag_tensor *ag_softmax(ag_tape *t, ag_tensor *x, int axis);
AG_API ag_tensor *ag_log_softmax(ag_tape *t, ag_tensor *x, int axis);
/* Mean over the batch of -log softmax(logits)[i, labels[i]], for logits of
** shape [N, C] and N labels in [0, C). Fused and stable. The labels are copied. */
AG_API ag_tensor *ag_cross_entropy(ag_tape *t, ag_tensor *logits, const int64_t *labels);

/* -------------------------------------------------------------- op descriptors */
/* An op is one descriptor: the library's own ops are built from it (each
** autograd/ops_*.c file defines its ops' descriptors beside their
** constructors), and so are user-defined ops (ag_custom, below). Write it
** with designated initializers; fields left out are NULL.
**
** vjp      the vector-Jacobian product: given g, the gradient of 'out',
**          writes gin[i], the gradient of input i (ag_input(out, i)), for
**          each input that requires grad, of exactly that input's shape and
**          dtype; NULL for an input that gets none. Write
**          it with the library's ops: in create-graph mode (ag_gradients with
**          create_graph) they are recorded, so the gradient can itself be
**          differentiated.
** raw_vjp  optional, first order only: a fast path the engine takes instead
**          of vjp during an ordinary backward (ag_backward, or ag_gradients
**          without create_graph), when nothing a vjp does is recorded. It
**          may compute on the arrays directly (ag_data) and write gin[] as
**          vjp does; it returns nonzero when done, 0 to decline (then vjp
**          runs). The library's raw VJPs give vjp's bits exactly. An op with
**          a raw_vjp and no vjp cannot be differentiated twice: create-graph
**          mode through it records AG_EUNSUPPORTED naming the op.
** jvp      reserved for forward mode, not called yet: given the tangents of
**          the inputs (tangents[i], NULL for a zero tangent), returns the
**          tangent of 'out', written with the library's ops.
**
** The engine alone chooses between raw_vjp and vjp; an op never does. */
typedef struct ag_op ag_op;
struct ag_op {
    const char *name;   /* for errors and graphs */
    void (*vjp)(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin);
    int (*raw_vjp)(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin);
    ag_tensor *(*jvp)(ag_tape *t, ag_tensor *out, ag_tensor *const *tangents);
};

/* --------------------------------------------------------------- gradcheck */
/* The function under test: builds its output on 't' from the given inputs
** (leaves of 't' that require grad, f64, in the order given). */
typedef ag_tensor *(*ag_gradcheck_fn)(ag_tape *t, ag_tensor *const *inputs, void *ud);

typedef struct ag_gradcheck_report {
    double max_rel_err;   /* worst |analytic - numeric| / max(1, |analytic|, |numeric|) */
    int input;            /* where it occurs: the input's index... */
    int64_t element;      /* ...and the flat element index */
    double analytic, numeric;
    int64_t checked;      /* number of elements compared */
} ag_gradcheck_report;

/* Compares backward against central finite differences (step 'eps', 1e-6 when
** 0) for f(inputs), element by element. A non-scalar output is contracted
** with fixed random weights first. 'inputs' are tensors of any kind whose
** values are copied; they are left unchanged. Returns AG_OK, or the status of
** the tape on which f failed (its message copied to 'err' when not NULL). */
AG_API ag_status ag_gradcheck(ag_gradcheck_fn f, void *ud, int n, ag_tensor *const *inputs,
                              double eps, ag_gradcheck_report *report, char *err, size_t errlen);

/* ------------------------------------------------------------------ threads */
/* A pool of persistent worker threads that large ops (matrix products) share
** their work with. A tape uses one only when given it; results are the same
** bits whatever the pool's size, or without one.
**
**     ag_pool *pool = ag_pool_new(0);        // one thread per online core
**     ag_tape_set_pool(t, pool);
**     ...                                    // ops on t now use the pool
**     ag_tape_free(t);
**     ag_pool_free(pool);                    // after every tape using it
**
** A pool runs one job at a time: when two tapes on two threads share it, an
** op that finds it busy runs on its own thread instead (same result). */
typedef struct ag_pool ag_pool;

/* A pool of 'nthreads' threads counting the one that calls an op, so it
** starts nthreads - 1 workers; 0 means one per online core, and 1 makes a
** pool that never starts a thread. Returns NULL when nthreads is negative or
** memory or threads run out (nothing is left running). */
AG_API ag_pool *ag_pool_new(int nthreads);
AG_API ag_pool *ag_pool_new_alloc(ag_alloc_fn fn, void *ud, int nthreads);
/* Stops and joins the workers and frees the pool; NULL is a no-op. No tape
** may use the pool afterwards (set another with ag_tape_set_pool first). */
AG_API void ag_pool_free(ag_pool *pool);
/* Threads a job runs on, counting the caller; 1 for NULL. */
AG_API int ag_pool_size(const ag_pool *pool);
/* Lets ops on 't' use 'pool' (borrowed: the caller keeps ownership and frees
** it after the tape); NULL goes back to one thread. Kept across resets. */
AG_API void ag_tape_set_pool(ag_tape *t, ag_pool *pool);
AG_API ag_pool *ag_tape_pool(const ag_tape *t);    /* NULL when none */

/* Runs fn(ctx, begin, end) over the items [0, n), cut into contiguous
** ranges. The pool's threads, but no more than n / grain of them (so a small
** job stays on the calling thread: waking a worker costs some
** microseconds), are each dealt an equal share, as a few ranges; a thread
** done with its share runs the ranges still waiting in another's (in pools
** of up to 16 threads), so work that is uneven across the items still ends
** together. Returns when all
** ranges are done. fn must compute each item the same whichever range
** holds it and whichever thread runs it (the cut depends on the pool's
** size). A NULL pool, or one busy with another job, runs fn(ctx, 0, n) on
** the calling thread; n <= 0 or a NULL fn does nothing, and a grain below 1
** counts as 1. The library's own passes (dense layers, reductions, nn's
** optimizers and loaders) use it. */
typedef void (*ag_range_fn)(void *ctx, int64_t begin, int64_t end);
AG_API void ag_pool_for(ag_pool *pool, int64_t n, int64_t grain, ag_range_fn fn, void *ctx);

/* ------------------------------------------------------ graphs (Graphviz DOT) */
/* Pictures of a tape to see backpropagation. A node per tensor (its name,
** shape, and for tensors of at most 16 elements their values and gradients),
** a node per op, edges in the direction data flows. Inputs, parameters,
** constants, ops and the output have distinct colours, explained by a legend.
**
** Chain-rule view (the default): an edge into an op whose result has one
** element carries the local derivative d out / d in at the recorded point;
** once its op is replayed, an edge also shows the contribution
** grad(out) x local it sends back; a tensor that feeds several ops shows
** each contribution and their sum, so that grad(in) = sum of grad(out) x
** local can be checked by eye.
**
** With an output y, the graph holds what reaches y, and the gradients are
** those of a backward pass from y that the writer replays itself, touching
** no stored gradient (a y of several elements is seeded with ones). With y
** NULL, the graph holds the whole tape with the gradients stored by the last
** backward.
**
** The text is deterministic (the same computation gives the same bytes) and
** valid DOT whatever the names hold: they are escaped, and bytes that are
** not UTF-8 are shown as U+FFFD. These functions record nothing, but make
** tensors on the tape's arena (freed at reset). They report errors as ops do
** (on the tape, the first error wins) and return the tape's status. On a
** tape already in error, ag_dot_write and ag_dot_save still draw what was
** recorded, without gradients, to help find the fault. */
typedef struct ag_dot_options {
    int top_to_bottom;   /* lay out top to bottom; left to right by default */
    int plain;           /* no local derivatives or contributions on edges */
    int no_legend;       /* leave the legend out */
    int digits;          /* significant digits of numbers, 1..17; 0 means 6 */
    const char *title;   /* a caption above the graph (UTF-8), or NULL */
} ag_dot_options;        /* zero-initialised (or NULL) means all defaults */

/* Writes the graph as DOT text to f. */
AG_API ag_status ag_dot_write(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, FILE *f);
/* Writes the graph to a file named by 'path': DOT text for .dot or .gv;
** rendered for .svg, .png or .pdf (AG_EUNSUPPORTED when built without
** Graphviz, see ag_dot_render). AG_EIO when the file cannot be written. */
AG_API ag_status ag_dot_save(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, const char *path);

/* Step-by-step backward. Replaying the tape from y processes the ops that
** reach y one at a time, the last recorded first. Frame k (0 <= k <= steps)
** shows the gradients known after k steps; in it the op replayed at step k
** is highlighted, with the contributions it sent. Frame 0 holds only the
** seed grad(y) = 1. y must not be NULL, and the tape must not be in error. */
/* The number of steps, or -1 on error (recorded on the tape). */
AG_API int64_t ag_dot_steps(ag_tape *t, ag_tensor *y);
/* Writes frame k as DOT text to f. */
AG_API ag_status ag_dot_write_step(ag_tape *t, ag_tensor *y, int64_t k, const ag_dot_options *opt,
                                   FILE *f);
/* Writes every frame into the existing directory 'dir' as step_000.FMT,
** step_001.FMT, ... (three digits or more, so they sort), where 'format' is
** "dot" (the default when NULL), "svg", "png" or "pdf" (these need
** Graphviz). '*frames' (when not NULL) receives the number written. */
AG_API ag_status ag_dot_save_steps(ag_tape *t, ag_tensor *y, const ag_dot_options *opt,
                                   const char *dir, const char *format, int64_t *frames);

/* 1 when this build renders with Graphviz's library, 0 otherwise. */
AG_API int ag_dot_can_render(void);
/* Lays out the NUL-terminated DOT text with Graphviz's dot and renders it to
** 'path' in 'format' ("svg", "png" or "pdf"). Returns AG_OK, AG_EINVAL (bad
** arguments, text Graphviz rejects), AG_EIO (the file cannot be written) or
** AG_EUNSUPPORTED (built without Graphviz), with a message in err (up to
** errlen bytes, may be NULL). Graphviz is not thread-safe: render from one
** thread at a time. */
AG_API ag_status ag_dot_render(const char *dot, const char *format, const char *path, char *err,
                               size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
