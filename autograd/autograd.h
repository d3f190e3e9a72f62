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

/* The version of this header. ag_version() gives the library's, which may
** differ when a program runs against another build of the shared library. */
#define AG_VERSION_MAJOR 0
#define AG_VERSION_MINOR 2
#define AG_VERSION_PATCH 0
#define AG_VERSION_STRING "0.2.0"
/* One number that orders versions: 10000 * major + 100 * minor + patch. */
#define AG_VERSION_NUMBER (AG_VERSION_MAJOR * 10000 + AG_VERSION_MINOR * 100 + AG_VERSION_PATCH)

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
/* The library's version as "MAJOR.MINOR.PATCH", and as AG_VERSION_NUMBER
** orders it; compare with the header's macros to detect a mismatch. */
AG_API const char *ag_version(void);
AG_API int ag_version_number(void);
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
/* The tape x lives on; NULL for NULL and for parameters. */
AG_API ag_tape *ag_tape_of(const ag_tensor *x);
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
/* ------------------------------------------------------------ forward mode */
/* Forward mode computes J v, the derivative of everything downstream of
** some inputs along a direction v, in the same pass as the values (PyTorch's
** torch.autograd.forward_ad): give an input a tangent with ag_dual, compute
** with it as usual, and read any result's tangent with ag_tangent.
**
**     ag_tensor *x = ag_dual(t, x0, v);     // x = x0, carrying tangent v
**     ag_tensor *y = ag_sin(t, ag_mul(t, x, x));
**     ag_tensor *dy = ag_tangent(y);        // 2 x0 cos(x0^2) v
**
** Every op of the library has a JVP rule; an op without one (a user's op
** whose ag_op has no .jvp) records AG_EUNSUPPORTED, naming it, when a
** tangent reaches it. Tangents are ordinary tensors of the tape: they may be
** differentiated in reverse (reverse-over-forward). While tangents are live
** on a tape, a backward pass computes gradients with ops, so the gradients
** carry tangents too: the tangent of ag_grad(x) or of an ag_gradients
** result is the Hessian-vector product H v (forward-over-reverse). A
** parameter's own gradient (accumulated in place) carries none. Tangents
** last until ag_tape_reset. */
/* A copy of x carrying 'tangent' (x's shape and dtype, a tensor of t or a
** parameter) in place of any tangent x carried; gradients through it reach
** x. x may be a parameter. */
AG_API ag_tensor *ag_dual(ag_tape *t, ag_tensor *x, ag_tensor *tangent);
/* y's tangent, or NULL when no tangent reaches y (its tangent is zero), or
** y is NULL, nil or stale. Runs any JVP rule still pending first: when one
** fails, the tape's status says why. */
AG_API ag_tensor *ag_tangent(const ag_tensor *y);

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
/* Special functions, libm's in both dtypes (an f32 result is libm's f64
** value rounded once). NaN in gives NaN out. */
AG_API ag_tensor *ag_erf(ag_tape *t, ag_tensor *x);     /* erf x: d/dx = 2/sqrt(pi) e^(-x^2) */
AG_API ag_tensor *ag_atan(ag_tape *t, ag_tensor *x);    /* atan x: d/dx = 1 / (1 + x^2) */
/* log(1 + x), exact where 1 + x rounds (log1p(1e-10) = 1e-10 - 5e-21):
** d/dx = 1 / (1 + x); -1 gives -inf, below -1 NaN. */
AG_API ag_tensor *ag_log1p(ag_tape *t, ag_tensor *x);
/* e^x - 1, exact for tiny x (expm1(1e-10) = 1e-10 + 5e-21): d/dx = e^x. */
AG_API ag_tensor *ag_expm1(ag_tape *t, ag_tensor *x);
/* atan2(y, x): the angle of the point (x, y), in [-pi, pi], with C's signs
** and quadrants (atan2(0, 0) = 0, atan2(0, -1) = pi, atan2(-0.0, -1) = -pi).
** y and x broadcast and share a dtype. d/dy = x / (x^2 + y^2), d/dx = -y /
** (x^2 + y^2), computed as written: at the origin both are NaN (0/0), and
** where x^2 + y^2 underflows to 0 or overflows, they are inf/NaN or 0. */
AG_API ag_tensor *ag_atan2(ag_tape *t, ag_tensor *y, ag_tensor *x);

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
/* Variance and standard deviation as PyTorch's torch.var and torch.std:
** sum (x - mean)^2 / max(0, N - correction) over the N reduced elements;
** correction 1 is the unbiased (Bessel) estimate, 0 the population one, and
** any finite value >= 0 is allowed (otherwise AG_EINVAL). As ag_sum and
** ag_sum_axis, ag_var and ag_std reduce every element to rank 0, the _axis
** forms one axis (keepdim as above). Computed in double by two passes, the
** mean and then the squared deviations (corrected for the mean's rounding),
** so a large mean costs no digits; std is the square root of that double,
** rounded once. Where N - correction <= 0 the result is what PyTorch gives:
** inf when the values differ, NaN when they are equal (0/0), and an empty
** reduction gives NaN. Any NaN or inf among the values gives NaN.
** d var/dx = 2 (x - mean) / (N - correction) (inf/NaN where N - correction
** <= 0), d std/dx = d var/dx / (2 std), and 0 where std is 0 (all values
** equal), as PyTorch's. */
AG_API ag_tensor *ag_var(ag_tape *t, ag_tensor *x, double correction);
AG_API ag_tensor *ag_var_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim, double correction);
AG_API ag_tensor *ag_std(ag_tape *t, ag_tensor *x, double correction);
AG_API ag_tensor *ag_std_axis(ag_tape *t, ag_tensor *x, int axis, int keepdim, double correction);
/* The running sum along an axis, of x's shape: out[..., k, ...] = x[..., 0,
** ...] + ... + x[..., k, ...], summed in double in that order and rounded
** once per element. A NaN spreads to every later element. A rank-0 x takes
** axis 0 or -1 and is returned as is. The gradient of x[k] is the sum of the
** gradients of out[k..n-1]. */
AG_API ag_tensor *ag_cumsum(ag_tape *t, ag_tensor *x, int axis);
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
/* n tensors of one shape and dtype along a new axis, which is axis 'axis'
** of the result (-1 appends it): four [2,3] give [4,2,3] at axis 0 and
** [2,3,4] at axis -1. Input i gets slice i of the gradient. */
AG_API ag_tensor *ag_stack(ag_tape *t, int n, ag_tensor *const *xs, int axis);
/* x inside a border of 'value' (NaN and infinities too): 'widths' holds
** 2 * rank(x) entries, (before, after) for axis 0, then axis 1, ... (NumPy's
** pad_width order; torch.nn.functional.pad lists the last axis first).
** Result dim d is before_d + shape[d] + after_d. A negative width is
** AG_EINVAL. x's gradient is the middle of g; 'value' gets none. */
AG_API ag_tensor *ag_pad(ag_tape *t, ag_tensor *x, const int64_t *widths, double value);
/* The lower (tril) or upper (triu) triangle of the matrices in x's last two
** axes, batched over the others (rank >= 2): out[.., i, j] is x[.., i, j]
** where j - i <= k (tril) or j - i >= k (triu), and 0 elsewhere. k = 0 is
** the main diagonal, k > 0 above it, k < 0 below. The zeros are stored,
** not multiplied in: a NaN outside the triangle does not show. The
** gradient is the same triangle of g. */
AG_API ag_tensor *ag_tril(ag_tape *t, ag_tensor *x, int64_t k);
AG_API ag_tensor *ag_triu(ag_tape *t, ag_tensor *x, int64_t k);
/* torch.diag. A vector v [n] gives the square matrix [n+|k|, n+|k|] with v
** on diagonal k and zeros elsewhere; a matrix x [r,c] gives its diagonal k
** as a vector, out[i] = x[i][i+k] (k >= 0) or x[i-k][i] (k < 0), of length
** min(r, c-k) or min(r+k, c), 0 when the diagonal lies outside. k = 0 is
** the main diagonal, k > 0 above it. Other ranks are AG_ESHAPE. Each
** direction's gradient is the other direction applied to g. */
AG_API ag_tensor *ag_diag(ag_tape *t, ag_tensor *x, int64_t k);
/* sum_i x[i][i] of a matrix [r,c] (rank 0 result); gradient g * eye [r,c]. */
AG_API ag_tensor *ag_trace(ag_tape *t, ag_tensor *x);

/* Indexing by integer positions. Indices are int64 arrays that the op
** copies (onto the tape, for its backward pass). An index outside its axis
** is AG_EINVAL naming the function, the index, where it was and the axis's
** size; nothing is read out of bounds. Axes may be negative (-1 the last). */

/* x[idx[0]][idx[1]]...[idx[n-1]]: the sub-tensor of shape x.shape[n:] at
** those positions of x's first n axes, or with n == rank(x) the element
** (rank 0). Indices may be negative as in Python (-1 is the last). */
AG_API ag_tensor *ag_index(ag_tape *t, ag_tensor *x, int n, const int64_t *idx);
/* Slices of x along 'axis' picked by n indices in [0, dim): out has x's
** shape with dim 'axis' replaced by n, and out[.., i, ..] = x[.., idx[i], ..]
** (torch.index_select). An embedding lookup: ag_index_select(t, weight
** [V,D], 0, n, tokens) gives [n,D]. The gradient is ag_index_add of g into
** zeros, so a row picked twice gets both rows of g, summed. */
AG_API ag_tensor *ag_index_select(ag_tape *t, ag_tensor *x, int axis, int64_t n,
                                  const int64_t *idx);
/* base plus src's slices added at the indices (torch.index_add): out =
** base, then out[.., idx[i], ..] += src[.., i, ..] for i = 0..n-1 in turn
** (an index given twice adds twice). src has base's shape with dim 'axis'
** replaced by n, and base's dtype. Gradients: base gets g, src gets
** ag_index_select(g, axis, n, idx). */
AG_API ag_tensor *ag_index_add(ag_tape *t, ag_tensor *base, int axis, int64_t n,
                               const int64_t *idx, ag_tensor *src);
/* torch.gather: idx is an array of shape (rank, shape) (rank(x) dims, each
** at most x's except along 'axis', row-major), and out, of that shape, is
**     out[i][j] = x[idx[i][j]][j]  (axis 0),  out[i][j] = x[i][idx[i][j]]  (axis 1)
** and so on in higher ranks. Each row's entry at its label: ag_gather(t,
** logp [N,C], 1, 2, (int64_t[]){N, 1}, labels) gives [N,1]. The gradient
** is ag_scatter_add of g into zeros. */
AG_API ag_tensor *ag_gather(ag_tape *t, ag_tensor *x, int axis, int rank, const int64_t *shape,
                            const int64_t *idx);
/* torch.scatter_add, the adjoint of ag_gather: out = base, then
**     out[idx[i][j]][j] += src[i][j]  (axis 0; likewise for other axes)
** in src's order, where idx holds one index per element of src, laid out
** in src's shape (rank(base) dims, each at most base's except along
** 'axis'). Gradients: base gets g, src gets g gathered at idx. */
AG_API ag_tensor *ag_scatter_add(ag_tape *t, ag_tensor *base, int axis, const int64_t *idx,
                                 ag_tensor *src);

/* Matrix product. 2-D x 2-D; a vector on either side as NumPy treats it (a
** 1-D left operand is a row, a 1-D right operand a column, and that axis is
** dropped from the result); ranks above 2 are batches of matrices whose
** leading dims broadcast. */
AG_API ag_tensor *ag_matmul(ag_tape *t, ag_tensor *a, ag_tensor *b);

/* Dense linear algebra on a square matrix A [n, n] or a batch of them
** [..., n, n] (PyTorch's torch.linalg semantics unless said otherwise).
** Each matrix is factored in double precision, for f32 too (the result is
** rounded once to the dtype), with plain loops meant for small n. A and B
** must share a dtype (AG_EDTYPE otherwise); an A that is not [..., n, n],
** a B whose size does not fit A and batch dims that do not broadcast
** record AG_ESHAPE; a matrix the op cannot factor records AG_EINVAL naming
** the function, the shape and, for batches, the flat index of the batch
** element ("ag_solve: A [2,3,3], batch element 1 is singular (...)"). A NaN
** in a matrix gives NaN in its result, never an error (one that the op could
** not have factored anyway, as a pivot that is not positive, gives NaN
** throughout); infinities go through the arithmetic as IEEE says, and a NaN
** they make on the way (inf / inf) is a NaN like one given. All
** differentiate twice. */

/* L, lower triangular with a positive diagonal, such that A = L L^T, for a
** symmetric positive definite A [..., n, n]. Reads only A's lower triangle
** (the upper one is taken as its mirror) and gives A's gradient symmetric,
** as PyTorch does: it is the gradient for symmetric changes of A, so build
** A symmetric (X X^T + c I, say) when the gradient flows further back. A
** pivot that is not positive records AG_EINVAL: "ag_cholesky: A [2,3,3],
** batch element 1 is not positive definite (the leading minor of order 2
** is not: pivot -0.5)". */
AG_API ag_tensor *ag_cholesky(ag_tape *t, ag_tensor *a);
/* X solving A X = B ('left' nonzero) or X A = B ('left' zero), for A
** [..., n, n] triangular: upper when 'upper' is nonzero, else lower. Only
** that triangle of A is read, and only it gets a gradient. B is [..., n, k]
** (left) or [..., k, n] (right), rank 2 or more; batch dims broadcast, and
** X has the broadcast batch dims and B's last two. A zero on A's diagonal
** records AG_EINVAL. */
AG_API ag_tensor *ag_solve_triangular(ag_tape *t, ag_tensor *a, ag_tensor *b, int upper,
                                      int left);
/* X = A^{-1} B, solving A X = B by LU factorization with partial pivoting.
** B is a batch of matrices [..., n, k], giving X [..., n, k] with the batch
** dims of A and B broadcast; or, as in PyTorch, a batch of vectors when B
** has rank 1 ([n]) or is shaped as A without its last dim ([..., n]),
** giving X of the broadcast batch dims and [n]. An exactly singular A (a
** column without a nonzero pivot) records AG_EINVAL; a nearly singular one
** gives large values, as LAPACK's would. */
AG_API ag_tensor *ag_solve(ag_tape *t, ag_tensor *a, ag_tensor *b);
/* A^{-1} for A [..., n, n], by LU with partial pivoting; singular A records
** AG_EINVAL as ag_solve does. Prefer ag_solve to multiplying by it. */
AG_API ag_tensor *ag_inverse(ag_tape *t, ag_tensor *a);
/* log|det A| for A [..., n, n], of shape [...] (rank 0 for one matrix), by LU
** with partial pivoting. When 'sign' is not NULL, *sign receives det A's
** sign (-1, 0 or 1; NaN where A holds a NaN) of the same shape: a constant
** without gradient. A singular A is not an error: its sign is 0 and its
** log|det| -inf (as PyTorch's), but a backward through it then fails in
** ag_inverse, since the gradient g A^{-T} does not exist. On error *sign is
** the nil tensor too. det A = sign * exp(logabsdet). */
AG_API ag_tensor *ag_slogdet(ag_tape *t, ag_tensor *a, ag_tensor **sign);

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

/* Convolutional networks, NCHW, with PyTorch's semantics and argument order.
** Bad settings record AG_EINVAL and shapes that do not fit AG_ESHAPE, with
** a message naming the function and the values. */
/* 2-D convolution (cross-correlation, as in every framework): x [N, C, H, W],
** w [O, C / groups, KH, KW], b [O] or NULL, giving [N, O, OH, OW] with
** OH = (H + 2 pad_h - dil_h (KH - 1) - 1) / stride_h + 1 (OW likewise).
** Strides and dilations >= 1, paddings >= 0 (zeros), groups >= 1 dividing C
** and O; a dilated kernel larger than the padded input is an error. Through
** the packed gemm (im2col per slice of the batch and group, scratch in the
** tape's arena) on the tape's pool. Differentiable to any order in x, w and b. */
AG_API ag_tensor *ag_conv2d(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b, int stride_h,
                            int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int groups);
/* Max over kh x kw windows of x [N, C, H, W]: [N, C, OH, OW] with
** OH = (H + 2 pad_h - kh) / stride_h + 1 (no ceil mode). Padding is never
** chosen; 0 <= pad <= kernel / 2, as PyTorch requires. A NaN in a window
** wins it (the first NaN); on ties the first maximum in row-major window
** order wins and alone gets the gradient, as in PyTorch. */
AG_API ag_tensor *ag_max_pool2d(ag_tape *t, ag_tensor *x, int kh, int kw, int stride_h,
                                int stride_w, int pad_h, int pad_w);
/* Mean over kh x kw windows, same shapes and bounds as ag_max_pool2d. Padded
** zeros count in the divisor (always kh kw: PyTorch's default
** count_include_pad = true). */
AG_API ag_tensor *ag_avg_pool2d(ag_tape *t, ag_tensor *x, int kh, int kw, int stride_h,
                                int stride_w, int pad_h, int pad_w);
/* Mean over each channel's plane: x [N, C, H, W] gives [N, C, 1, 1]
** (PyTorch's adaptive_avg_pool2d(x, 1)). */
AG_API ag_tensor *ag_global_avg_pool2d(ag_tape *t, ag_tensor *x);
/* x with the axes from start_axis on merged into one (a reshape):
** [N, C, H, W] from axis 1 gives [N, C H W]. start_axis may be negative. */
AG_API ag_tensor *ag_flatten(ag_tape *t, ag_tensor *x, int start_axis);

/* Normalisations, differentiable to any order: batch and group norm as
** fused ops (a few passes over x, gradients included), layer norm written
** with the ops above. The variance is the biased one (divide by the count), and
** (x - mean) / sqrt(var + eps) is scaled by gamma and shifted by beta, either
** of which may be NULL (no affine part). */
/* Batch normalisation over x [N, C, ...] (rank >= 2) per channel C; gamma,
** beta, running_mean and running_var are [C] (the running pair both given or
** both NULL). Training: statistics over every axis but 1 (at least two
** values per channel), and when given, the running buffers are updated in
** place, r = (1 - momentum) r + momentum s, with the unbiased variance for
** running_var (as PyTorch; PyTorch's default momentum is 0.1). Evaluation
** (training = 0): the running statistics, which must be given. */
AG_API ag_tensor *ag_batch_norm(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta,
                                ag_tensor *running_mean, ag_tensor *running_var, int training,
                                double momentum, double eps);
/* Layer normalisation over the last normalized_ndims axes of x (1 to its
** rank); gamma and beta have exactly those axes' shape. */
AG_API ag_tensor *ag_layer_norm(ag_tape *t, ag_tensor *x, int normalized_ndims, ag_tensor *gamma,
                                ag_tensor *beta, double eps);
/* Group normalisation: x [N, C, ...] with its C channels split into 'groups'
** consecutive groups (groups divides C), each image's group normalised over
** its channels and positions; gamma and beta are [C]. */
AG_API ag_tensor *ag_group_norm(ag_tape *t, ag_tensor *x, int groups, ag_tensor *gamma,
                                ag_tensor *beta, double eps);

/* ------------------------------------------------------ user-defined ops */
/* An op is one descriptor, an ag_op. The library's own ops are built from it
** (each autograd/ops_*.c defines its ops' descriptors beside their
** constructors), and so are yours: state a name, a forward on raw values
** (any C code, with a context pointer), a VJP and, for forward mode, a JVP;
** then apply the op with ag_custom. A complete example, erf from libm with
** its VJP and JVP written with library ops, so that it differentiates twice
** and in either mode as the library's ops do:
**
**     static int erf_forward(ag_tensor *out, void *ctx)
**     {
**         (void)ctx;
**         const double *x = ag_data(ag_input(out, 0));   // AG_F64 here
**         double *y = ag_data(out);
**         for (int64_t i = 0; i < ag_numel(out); i++)
**             y[i] = erf(x[i]);
**         return 0;                                       // nonzero: failed
**     }
**     // d/dx erf x = 2/sqrt(pi) e^(-x^2)
**     static void erf_vjp(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
**     {
**         ag_tensor *x = ag_input(out, 0);
**         ag_tensor *d = ag_mul_scalar(t, ag_exp(t, ag_neg(t, ag_mul(t, x, x))),
**                                      1.1283791670955126);
**         gin[0] = ag_mul(t, g, d);
**     }
**     // forward mode: the tangent of y is erf'(x) times x's tangent
**     static ag_tensor *erf_jvp(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
**     {
**         ag_tensor *x = ag_input(out, 0);
**         ag_tensor *d = ag_mul_scalar(t, ag_exp(t, ag_neg(t, ag_mul(t, x, x))),
**                                      1.1283791670955126);
**         return ag_mul(t, tan[0], d);
**     }
**     static const ag_op erf_op = {.name = "erf", .forward = erf_forward,
**                                  .vjp = erf_vjp, .jvp = erf_jvp};
**     ...
**     ag_tensor *x = ...;                                 // f64, requires grad
**     ag_tensor *y = ag_custom(t, &erf_op, NULL, 1, &x, AG_F64,
**                              ag_rank(x), ag_shape(x));
**     ag_backward(t, ag_sum(t, y));                       // ag_grad(x) is set
**     ag_tensor *xv = ag_dual(t, x, v);                   // x carrying tangent v
**     ag_tensor *jv = ag_tangent(ag_custom(t, &erf_op, NULL, 1, &xv, AG_F64,
**                                          ag_rank(x), ag_shape(x)));  // erf'(x) v
**
** The fields (leave out what you do not need; it is NULL):
**
** name     for errors and graphs; required.
** forward  user ops only (the library's forwards are their constructors):
**          fills ag_data(out) from ag_data(ag_input(out, i)), given the
**          'ctx' passed to ag_custom. It computes on arrays: it may make
**          tensors on the tape to keep (ag_empty, then ag_op_save) but
**          should not call ops. Returns 0, or nonzero when it fails; with
**          ag_op_fail it says why. Required for ag_custom.
** vjp      the vector-Jacobian product: given g, the gradient of 'out',
**          writes gin[i], the gradient of input i, for each input where
**          ag_op_needs_grad(out, i) holds, of exactly that input's shape and
**          dtype (a broadcasting op sums it down, e.g. with ag_sum_to);
**          NULL for an input that gets none. Write it with the library's
**          ops: in create-graph mode (ag_gradients with create_graph) they
**          are recorded, so the gradient can itself be differentiated.
** raw_vjp  optional, first order only: a path the engine takes instead of
**          vjp during an ordinary backward (ag_backward, or ag_gradients
**          without create_graph), when nothing a VJP does is recorded. It
**          may compute on arrays: make gin[i] with ag_empty and fill
**          ag_data(gin[i]). Returns nonzero when done, 0 to decline (then
**          vjp runs). An op with a raw_vjp and no vjp cannot be
**          differentiated twice: create-graph mode through it records
**          AG_EUNSUPPORTED naming the op. (The library's raw VJPs add into
**          gradients directly and give vjp's bits exactly.)
** jvp      forward mode (ag_dual): given the tangents of the inputs
**          (tangents[i], NULL for a zero tangent; at least one is not),
**          returns the tangent of 'out', written with the library's ops:
**          out's dtype, and out's shape or one that broadcasts to it; NULL
**          for a zero tangent. Without it, a tangent reaching the op records
**          AG_EUNSUPPORTED. It runs once the forward has returned; a
**          tangent of another dtype, or of a shape that does not broadcast
**          to out's, records AG_EDTYPE or AG_ESHAPE naming the op, and it
**          may fail with ag_op_fail as the other callbacks do.
**
** The engine alone chooses between raw_vjp and vjp; an op never does.
** Callbacks read what they need through the accessors below (ag_input,
** ag_num_inputs, ag_data, ag_op_ctx, ag_op_saved...), since ag_tensor is
** opaque. A callback that fails calls ag_op_fail: its message, prefixed
** with the op's name, becomes the tape's sticky error, and the pass stops. */
typedef struct ag_op ag_op;
struct ag_op {
    const char *name;
    void (*vjp)(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin);
    int (*raw_vjp)(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin);
    ag_tensor *(*jvp)(ag_tape *t, ag_tensor *out, ag_tensor *const *tangents);
    int (*forward)(ag_tensor *out, void *ctx);
};

/* Applies a user-defined op to in[0..nin) (tensors of 't', of any dtypes):
** makes its result, of dtype dt and the given shape, runs op->forward on
** it with 'ctx', and records it when an input requires grad. 'ctx' is
** kept for the backward pass (ag_op_ctx): it must stay valid until then.
** Returns the result, or the tape's nil tensor after recording an error:
** AG_EINVAL for a NULL op, a missing name or forward, an op with neither
** vjp nor raw_vjp, bad inputs, or a forward that fails (its message names
** the op); AG_EDTYPE or AG_ESHAPE for a bad dtype or shape. */
AG_API ag_tensor *ag_custom(ag_tape *t, const ag_op *op, void *ctx, int nin,
                            ag_tensor *const *in, ag_dtype dt, int rank, const int64_t *shape);
/* For an op's callbacks, given its result 'out' (ag_input and ag_num_inputs,
** above, give its inputs): */
/* The ctx given to ag_custom; NULL for the library's ops. */
AG_API void *ag_op_ctx(const ag_tensor *out);
/* Whether input i of 'out' needs a gradient (requires grad); 0 otherwise. */
AG_API int ag_op_needs_grad(const ag_tensor *out, int i);
/* Keeps x, a tensor of out's tape (or a parameter), for the backward pass:
** saved tensors are numbered from 0 in the order saved. They are constants
** to the backward pass (no gradient flows into them: make a tensor an input
** for that). Returns AG_OK, or the error it recorded on the tape. */
AG_API ag_status ag_op_save(ag_tensor *out, ag_tensor *x);
AG_API int ag_op_num_saved(const ag_tensor *out);
AG_API ag_tensor *ag_op_saved(const ag_tensor *out, int i);  /* NULL when out of range */
/* Records on out's tape, as 'code' (AG_EINVAL when AG_OK is given), the
** message "NAME: " followed by the formatted text, NAME being the op's;
** the first error wins, as always. For callbacks that fail. */
AG_API void ag_op_fail(ag_tensor *out, ag_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ------------------------------------------------------ record once, replay */
/* A plan freezes the computation of y from some leaves, as recorded on a
** tape, into a flat program that evaluates y and its gradient again at new
** leaf values, recording nothing and allocating nothing (ADOL-C's and
** CppAD's "record once, replay"): for the same gradient at many points,
** such as an optimiser's iterations on a fixed graph.
**
**     ag_tensor *x = ag_requires_grad(ag_zeros(t, AG_F64, 1, (int64_t[]){10}));
**     ag_tensor *y = rosenbrock(t, x);                  // any ops of the list below
**     ag_plan *plan = ag_plan_new(t, y, 1, &x);         // NULL on error (on t)
**     ag_tape_reset(t);                                 // the plan keeps no tensor
**     double xv[10] = {...}, yv, gx[10];
**     for (...) {
**         ag_status s = ag_plan_run_f64(plan, (const double *[]){xv}, &yv,
**                                       (double *[]){gx});
**         if (s == AG_ESTATE) ...;                      // a comparison went otherwise:
**         ...                                           // record again (see below)
**     }
**     ag_plan_free(plan);
**
** What is frozen: every tensor y depends on. Those the leaves reach are
** recomputed by each run; every other one (data, parameters not among the
** leaves, tensors read out with ag_item and put back, ag_detach's copies)
** is a constant, its values copied at ag_plan_new. Gradients flow through
** the ops that were recorded, as ag_gradients(t, y, NULL, n, leaves) would
** compute them; each leaf must require grad. Shapes, dtypes and the
** structure of the computation are fixed; leaves of any shape and dtype.
**
** The ops a plan runs: neg exp log sqrt abs sign sin cos tanh sigmoid relu
** leaky_relu gelu softplus clamp pow_scalar (square) erf atan log1p expm1;
** add sub mul div pow maximum minimum atan2 where and the comparisons gt ge
** lt le eq, broadcasting; sum max min logsumexp over all elements or an axis
** (so mean); matmul; softmax log_softmax; reshape (flatten) cast permute
** (transpose) slice broadcast_to index index_select gather tril triu diag
** concat stack pad sum_to index_add scatter_add cumsum var std dense
** cross_entropy; and whatever is written with them (layer_norm, mse...).
** A tape holding any other op that y depends on (convolutions, pooling,
** batch and group norm, factorizations, a user-defined op...) makes
** ag_plan_new record
** AG_EUNSUPPORTED naming it.
**
** Values are the tape's: each op computes as its tape op does (in double,
** rounded once to the dtype), so elementwise results agree bit for bit, and
** sums, products and softmaxes to rounding (they may add in another
** order). Gradients are accumulated in double, also for f32 leaves (an f32
** tape rounds every intermediate gradient to float): they agree with the
** tape's to rounding.
**
** Comparisons. The recorded pass took branches: masks of gt/ge/lt/le/eq,
** where's condition, the side of the kink of relu, leaky_relu, abs and
** clamp, which of maximum/minimum's inputs won, the position and ties of a
** max/min reduction's extremum. Each run checks every one of them again.
** When one comes out otherwise, the run still completes, with the values
** and gradients of the new point computed by the same ops, but returns
** AG_ESTATE and its message names the op, its tape entry and the element
** (ADOL-C's drivers return -1, CppAD counts compare_change_number): a
** branch the caller's own C code took on a recorded value cannot be seen,
** so record the tape again when it matters.
**
** A plan of a gradient recorded with create_graph runs too: freezing
** y = sum(g * v) for g = dy/dx gives, at each run, the Hessian-vector
** product H v as the gradient of x (v a leaf or a constant), except through
** maximum and minimum, whose recorded gradients a plan cannot run.
**
** Threads: a run writes the plan's buffers, so a plan belongs to one thread
** at a time; two plans (freeze one per thread) run on two threads. */
typedef struct ag_plan ag_plan;

/* Freezes y (any shape) as a function of leaves[0..nleaves), tensors of t or
** parameters that require grad, distinct. Memory comes from t's allocator
** hook; the plan is independent of t afterwards (reset or free it). Returns
** NULL with the error recorded on t (AG_EINVAL for NULL or nil tensors, a
** leaf from another tape or without requires_grad, repeated leaves;
** AG_EUNSUPPORTED for an op the plan cannot run; AG_ENOMEM), or NULL
** without recording when t is NULL or already in error. */
AG_API ag_plan *ag_plan_new(ag_tape *t, ag_tensor *y, int nleaves, ag_tensor *const *leaves);
/* Runs the plan at new leaf values: leaves[i] points to leaf i's elements
** (row-major, numel of them, in leaf i's dtype). y (may be NULL) receives
** y's elements in its dtype. With grads not NULL, the backward pass runs
** too (y must have one element) and grads[i], when not NULL, receives dy/d
** leaf i in leaf i's shape and dtype; grads NULL computes values only.
** Returns AG_OK, AG_ESTATE when a recorded comparison went otherwise (all
** outputs written, see above), or an error before anything runs (NULL
** buffers, a dtype that differs in the typed forms, gradients of a y of
** several elements). The status and message are those of the last run
** (ag_plan_status, ag_plan_errmsg), not sticky: each run starts clean. */
AG_API ag_status ag_plan_run(ag_plan *p, const void *const *leaves, void *y, void *const *grads);
/* The same where every leaf and y are f64 (f32): AG_EDTYPE otherwise. */
AG_API ag_status ag_plan_run_f64(ag_plan *p, const double *const *leaves, double *y,
                                 double *const *grads);
AG_API ag_status ag_plan_run_f32(ag_plan *p, const float *const *leaves, float *y,
                                 float *const *grads);
AG_API ag_status ag_plan_status(const ag_plan *p);      /* AG_EINVAL for NULL */
AG_API const char *ag_plan_errmsg(const ag_plan *p);    /* "" after a clean run */
AG_API size_t ag_plan_ops(const ag_plan *p);            /* instructions; 0 for NULL */
AG_API int ag_plan_num_leaves(const ag_plan *p);
/* Frees the plan; NULL is a no-op. */
AG_API void ag_plan_free(ag_plan *p);

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
** with fixed random weights first, so f must give the same dtype and shape
** on every call. 'inputs' are tensors of any kind whose values are copied;
** they are left unchanged. Returns AG_OK, or the status of the tape on which
** f failed (its message copied to 'err' when not NULL): AG_ESHAPE when f's
** output changes dtype or shape between calls, AG_EINVAL when it is not of
** the tape and pass f was given (kept from an earlier call, or another
** tape's). Bad arguments are answered
** the same way: AG_EINVAL for f NULL, a NULL or nil input, or an eps that is
** negative or not finite; AG_ESTATE for an input made before its tape's last
** ag_tape_reset (recorded on that tape too, as every accessor does). */
AG_API ag_status ag_gradcheck(ag_gradcheck_fn f, void *ud, int n, ag_tensor *const *inputs,
                              double eps, ag_gradcheck_report *report, char *err, size_t errlen);

/* ----------------------------------------------------------- checkpointing */
/* Gradient checkpointing (torch.utils.checkpoint, jax.checkpoint): a
** segment of the computation whose intermediates are not kept for backward
** but computed again when backward needs them. A segment is a function in
** ag_gradcheck_fn's shape: it builds its result on the tape it is given
** from the inputs it is given.
**
**     // 100 steps of a simulation: the state and a parameter k in, the state out
**     static ag_tensor *hundred_steps(ag_tape *t, ag_tensor *const *in, void *ud)
**     {
**         ag_tensor *x = in[0];
**         for (int i = 0; i < 100; i++)
**             x = step(t, x, in[1]);
**         return x;
**     }
**     ...
**     for (int s = 0; s < 100; s++)        // 10,000 steps, 100 entries kept
**         x = ag_checkpoint(t, hundred_steps, NULL, 2, (ag_tensor *[]){x, k});
**     // k: a parameter (ag_param_scalar); its gradient arrives as usual
**     ag_backward(t, ag_sum(t, ag_square(t, x)));
**
** The segment runs on a scratch tape of t's (made on first use with t's
** allocator hook, kept until t is freed, and reset after every use), over
** copies of the inputs' values; its result is copied onto t as the output
** of one "checkpoint" entry, which keeps only its inputs. Backward runs the
** segment again on the scratch tape, backpropagates the output's gradient
** through it and hands the inputs their gradients: the tape then holds one
** entry per segment and the scratch tape one segment at a time, for a
** second forward pass. In create-graph mode (ag_gradients with
** create_graph) the VJP is itself recorded on t as a checkpoint of the
** segment's gradient, so gradients through a checkpoint differentiate again
** (second derivatives, Hessian-vector products) and still keep no
** intermediate on t. Forward mode passes through as well: a tangent that
** reaches a checkpoint is carried by running the segment again with its
** inputs' tangents, itself as a checkpoint (at most 127 inputs then).
**
** The rules. f must be a pure function of its inputs: it is run twice (or
** more) and must give the same bits; a recomputation that differs records
** AG_ESTATE, in backward, create-graph and forward mode alike (so a segment
** that draws from a generator, such as dropout, cannot be checkpointed). Every tensor that requires grad and that f uses must be an
** input (parameters too: pass them in 'in'); a result that depends on one it
** reached otherwise, through 'ud', records AG_EINVAL, since its gradient
** would be lost. Tensors of t cannot be used inside f (another tape's: an
** error): pass them as inputs. f and ud must stay valid until backward.
** Segments nest (f may call ag_checkpoint on the tape it is given).
**
** 1 to 254 inputs of one dtype (tensors of t or parameters); the result may
** have any shape and dtype. Returns the result, or the tape's nil tensor
** after recording an error: AG_EINVAL for a NULL f, a bad count or inputs;
** and any error of the segment, on the scratch tape, passed on to t with
** its message after "ag_checkpoint: the segment failed: " (anomaly mode and
** the trap of t apply inside the segment too). NaN propagates as in any op. */
typedef ag_tensor *(*ag_segment_fn)(ag_tape *t, ag_tensor *const *in, void *ud);
AG_API ag_tensor *ag_checkpoint(ag_tape *t, ag_segment_fn f, void *ud, int nin,
                                ag_tensor *const *in);

/* ----------------------------------------------------------------- drivers */
/* Derivatives of a whole function: vector-Jacobian and Jacobian-vector
** products, Jacobians, Hessians and Hessian-vector products (torch.func's
** vjp, jvp, jacrev/jacfwd, hessian; JAX's). The function is a callback, as
** for ag_gradcheck, that builds its output on the tape it is given from the
** inputs it is given:
**
**     // Rosenbrock's (1 - a)^2 + 100 (b - a^2)^2, of two scalars
**     static ag_tensor *rosen(ag_tape *t, ag_tensor *const *x, void *ud)
**     {
**         ag_tensor *r = ag_add_scalar(t, ag_neg(t, x[0]), 1.0);
**         ag_tensor *s = ag_sub(t, x[1], ag_square(t, x[0]));
**         return ag_add(t, ag_square(t, r), ag_mul_scalar(t, ag_square(t, s), 100.0));
**     }
**     ...
**     ag_tensor *x[2] = {ag_scalar(t, AG_F64, 1.0), ag_scalar(t, AG_F64, 2.0)};
**     ag_tensor *g[2], *h[4];
**     ag_tensor *y = ag_hessian(t, rosen, NULL, 2, x, g, h);
**     // y = 100; g = {-400, 200}; h = {402, -400, -400, 200}: h[i*2 + k] = d2y/dx[i]dx[k]
**     ag_tensor *v[2] = {ag_scalar(t, AG_F64, 1.0), NULL}, *dy;   // NULL: no move
**     ag_jvp(t, rosen, NULL, 2, x, v, &dy);                       // dy = dy/da = -400
**
** For every driver:
** - Arguments come in one order: the tape, f and its 'ud', the n inputs x,
**   the driver's own (a direction, a seed, a mode), then arrays the caller
**   provides for the results.
** - f(t, xs, ud) gets the caller's tape and n tensors of it holding copies
**   of x[0..n) (same shapes and dtypes; f never sees x itself) and returns
**   its output y, a tensor of t. f may use anything else of t, and
**   parameters. A driver may call f several times (once per row, column or
**   direction): it must return the same shape each time.
** - x[i] are tensors of t or parameters, f32 or f64, left unchanged.
** - Every result, and f's output that each driver returns, is a new
**   constant of t: no history, so differentiating it gives zero.
** - Everything f and the driver make stays on t until ag_tape_reset: a
**   Jacobian by columns or a Hessian records f once per input element.
** - The forward-mode drivers (ag_jvp, a Jacobian by columns, ag_hessian,
**   ag_hvp) give tangents to f's inputs, so every op f uses needs a JVP
**   rule, and tangents stay live on t until the reset ("forward mode"
**   above; later backward passes run the differentiable VJPs). A tensor f
**   takes from elsewhere that carries a tangent of its own adds it in.
** - Errors go on t as ops' do, the message naming the driver, and every
**   result slot is then the tape's nil tensor, as is the value returned:
**   AG_EINVAL for a NULL f, x, v or result array, a negative n, an
**   unknown mode, an x[i] that is NULL, nil or another tape's (AG_ESTATE
**   when stale), f returning NULL or nil without an error, or a tensor of
**   another tape or pass; AG_ESHAPE for a direction or
**   seed unlike what it goes with, f's output changing shape between calls,
**   a result beyond AG_MAX_DIMS, or (ag_hessian, ag_hvp) f's output not
**   having one element. When f fails, its error stays, after "ag_hessian:
**   f failed: " (the driver's name). */
typedef ag_tensor *(*ag_fn)(ag_tape *t, ag_tensor *const *x, void *ud); /* as ag_gradcheck_fn */

/* Reverse mode, one backward: out[i] = u^T dy/dx[i], the gradient of
** sum(u * y), of x[i]'s shape and dtype. u has y's shape and dtype, or is
** NULL when y has one element (u = 1). Returns y. */
AG_API ag_tensor *ag_vjp(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x, ag_tensor *u,
                         ag_tensor **out);
/* Forward mode, one pass: *out = J v = sum over i of dy/dx[i] v[i], of y's
** shape and dtype: the directional derivative along v. v[i] has x[i]'s
** shape and dtype, or is NULL for no move of x[i]. Returns y. */
AG_API ag_tensor *ag_jvp(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x,
                         ag_tensor *const *v, ag_tensor **out);

typedef enum ag_jacobian_mode {
    AG_JACOBIAN_AUTO,     /* reverse when y has no more elements than x together, else forward */
    AG_JACOBIAN_REVERSE,  /* by rows: f recorded once, one backward per element of y */
    AG_JACOBIAN_FORWARD,  /* by columns: one forward-mode call of f per element of x */
} ag_jacobian_mode;

/* out[i] = dy/dx[i], of shape y.shape + x[i].shape and y's dtype: with r
** and c flat indices of y and x[i], element r * numel(x[i]) + c is
** d y[r] / d x[i][c]. Both modes give the same numbers up to rounding; AUTO
** picks the one with fewer passes. Returns y. */
AG_API ag_tensor *ag_jacobian(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x,
                              ag_jacobian_mode mode, ag_tensor **out);
/* y must have one element. hess[i * n + k] = d2y / dx[i] dx[k], of shape
** x[i].shape + x[k].shape and x[i]'s dtype: with one input, hess[0] is
** the Hessian matrix (for x of shape [d], [d, d]). grad[i] = dy/dx[i] when
** grad is not NULL (a Newton step needs both). Forward over reverse: one
** call of f and its backward per input element, each giving a column of
** H; the symmetry of H is not imposed (it holds up to rounding). Returns y. */
AG_API ag_tensor *ag_hessian(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x,
                             ag_tensor **grad, ag_tensor **hess);
/* y must have one element. hv[i] = sum over k of d2y / dx[i] dx[k] v[k],
** of x[i]'s shape and dtype, in one pass (forward over reverse), without
** forming H; grad[i] = dy/dx[i] when grad is not NULL. v[i] as for ag_jvp.
** Returns y. */
AG_API ag_tensor *ag_hvp(ag_tape *t, ag_fn f, void *ud, int n, ag_tensor *const *x,
                         ag_tensor *const *v, ag_tensor **grad, ag_tensor **hv);

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

/* The matrix product's micro-kernel in this process, chosen at first use
** from cpuid (vendor, family and model; a short timing probe where cpuid
** cannot tell): "avx512-intel" (Intel cores with AVX-512), "avx512-zen4"
** (AMD Zen 4 and later), "avx2" (AVX2 and FMA) or "portable" (plain C).
** The environment variable AG_GEMM_KERNEL=<name> forces any of these the
** CPU can run; another value is reported once on stderr and ignored. Every
** kernel but the portable one gives the same bits (docs/PERFORMANCE.md). */
AG_API const char *ag_gemm_kernel(void);

/* ------------------------------------------------------ graphs (Graphviz DOT) */
/* Pictures of a tape to see backpropagation. A node per tensor (its name,
** shape, and for tensors of at most 16 elements their values and gradients;
** for larger ones a summary: the count, the first values and the norm),
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
** rendered for .svg, .png or .pdf (AG_EUNSUPPORTED when Graphviz's dot
** program is not installed, see ag_dot_render). AG_EIO when the file cannot
** be written. */
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

/* 1 when pictures can be rendered now: Graphviz's dot program (or the one
** the AG_DOT environment variable names) is installed and executable, and
** the build was not configured with -Dgraphviz=disabled. 0 otherwise. */
AG_API int ag_dot_can_render(void);
/* Lays out the NUL-terminated DOT text by running Graphviz's dot program
** and renders it to 'path' in 'format' ("svg", "png" or "pdf"). The picture
** is written to a temporary file beside 'path' and renamed over it only on
** success, so a failure leaves any old file as it was. Returns AG_OK,
** AG_EINVAL (bad arguments, text dot rejects, with dot's message), AG_EIO
** (the file cannot be written) or AG_EUNSUPPORTED (dot is not installed, or
** the build never starts processes), with a message in err (up to errlen
** bytes, may be NULL). Safe from several threads at once: each call runs its
** own process. Nothing of Graphviz is linked into the library. */
AG_API ag_status ag_dot_render(const char *dot, const char *format, const char *path, char *err,
                               size_t errlen);

/* ------------------------------------------------ backprop as a web page */
/* One self-contained HTML file (no network, no external script, style or
** font: it opens from disk in any browser) that steps through the
** computation that makes y: first the forward pass, each op's value as it
** is computed, then the backward pass as ag_dot_steps counts it. Backward
** step 0 is the seed grad(y) = 1; step k replays one op, which the page
** highlights, and a panel states its chain rule in words and numbers
** ("grad(C) += grad(D) x dD/dC = (-25) x 2 = -50") and, for a value that
** receives several contributions, their running sum; gradients not known
** yet read "?"; the last step shows every gradient. Arrow keys, buttons and
** a slider move between steps; the address "page.html#step=3" opens at
** backward step 3 ("#forward=K": forward step K).
**
** The graph is laid out by the library (layers by longest path, a few
** barycenter sweeps against crossings) and drawn as inline SVG: no Graphviz
** needed. Tensors show their name, shape and values; one of more than 16
** elements shows a summary (its norm and first values) instead. Names are
** escaped. The gradients come from a backward pass replayed as the DOT
** export replays it, touching no stored gradient; the bytes are the same
** for the same computation. Of 'opt', digits and title are used (NULL: 6
** digits, a generic title).
**
** Errors go on the tape as for ops: NULL f or path, NULL y, a y from another
** tape or from before a reset (AG_EINVAL), the file not writable (AG_EIO),
** out of memory. On a tape already in error nothing is written (it keeps
** its first error, which is returned): the page needs a backward pass. */
AG_API ag_status ag_html_write(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, FILE *f);
/* The same page, written to the file 'path' (created or truncated). */
AG_API ag_status ag_html_save(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, const char *path);

#ifdef __cplusplus
}
#endif
#endif
