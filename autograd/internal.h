/*
** internal.h: struct layouts and agi_ helpers shared by the files of
** autograd/. Never installed; nn/ and user code see only autograd.h.
*/
#ifndef AG_INTERNAL_H
#define AG_INTERNAL_H

#include "autograd.h"


#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ag_op, the descriptor of an op, is public (autograd.h): user-defined ops
** use it too. An op with neither vjp nor raw_vjp (comparisons) is never
** recorded. */

/* Per-op constants kept in the result tensor. */
typedef union agi_attr {
    struct { int axis, keepdim; } red;
    struct { int axis, keepdim; double correction; } stat;   /* ops_stats.c */
    struct { int axis; int64_t start, step; } slice;
    struct { int ta, tb; } mm;
    struct { int act; } dense;   /* an ag_activation */
    struct { int upper, left; } tri;   /* solve_triangular's flags, 0 or 1 */
    /* ops_index.c, ops_struct.c: an axis, an offset or diagonal, and the
    ** indices (or pad widths) copied into the arena */
    struct { int axis; int64_t k; const int64_t *idx; } index;
    double s[2];
    uint8_t perm[AG_MAX_DIMS];
    const int64_t *labels;
    const void *ext;         /* constants too large for the union, in the arena (conv, pooling) */
    struct {                 /* a user-defined op (custom_op.c) */
        void *ctx;
        ag_tensor **saved;   /* nsaved tensors, in the arena; room for cap */
        int nsaved, cap;
    } custom;
} agi_attr;

enum {
    AGI_REQUIRES_GRAD = 1 << 0,
    AGI_PARAM = 1 << 1,        /* lives outside a tape */
    AGI_RECORDED = 1 << 2,     /* an entry of its tape */
    AGI_OWNS_MEMORY = 1 << 3,  /* a param whose block is ours to free */
    /* A tape tensor made while tangents were live, with room for one
    ** before its header (agi_tangent). Tape tensors only: the bit is
    ** AGI_OWNS_MEMORY's, which only parameters have. */
    AGI_TANGENT_SLOT = 1 << 3,
    AGI_NIL = 1 << 4,
    AGI_GACC_OWNED = 1 << 5,   /* gacc is a fresh buffer no one else sees */
    AGI_COLLECTED = 1 << 6,    /* leaf already listed by the current backward */
    AGI_COUNTED = 1 << 7,      /* a matrix parameter or its gradient: tapes count their uses */
};

/* A tensor's header. Tape tensors are carved from the arena in one block:
** the header, cut short after shape[rank] (a scalar op pays for none of
** the AG_MAX_DIMS dims it does not use), then its nin input pointers, then
** values of up to 64 bytes. So shape must stay the last field, and a tape
** tensor's header is never copied or read past shape[rank - 1] (see
** agi_header_size). Parameters carry a full header (tensor.c). */
struct ag_tensor {
    const ag_op *op;         /* NULL for leaves */
    ag_tensor **in;          /* nin inputs, in the arena with the tensor */
    void *value;             /* numel elements of dtype */
    ag_tensor *grad;         /* the gradient backward stored, or NULL */
    ag_tensor *gacc;         /* gradient being accumulated during one backward */
    ag_tape *tape;           /* owner, NULL for parameters */
    const char *name;        /* NULL when unnamed */
    int64_t numel;
    agi_attr attr;
    uint32_t epoch;          /* tape's reset count when made */
    uint8_t dtype, rank, nin, flags;
    int64_t shape[AG_MAX_DIMS];   /* only [0, rank) exists on tape tensors */
};

/* Forward mode (forward_mode.c): a tensor's tangent, NULL for zero. It is
** kept in a slot just before the header, carved only while tangents are
** live, so that a scalar op stays one 128-byte block the rest of the time. */
static inline ag_tensor *agi_tangent(const ag_tensor *x)
{
    return (x->flags & (AGI_TANGENT_SLOT | AGI_PARAM)) == AGI_TANGENT_SLOT
               ? ((ag_tensor *const *)x)[-1]
               : NULL;
}
/* x must have its slot (AGI_TANGENT_SLOT). */
static inline void agi_set_tangent(ag_tensor *x, ag_tensor *v) { ((ag_tensor **)x)[-1] = v; }

/* Bytes of a tape tensor's header with 'rank' dims: what agi_new carves. */
static inline size_t agi_header_size(int rank)
{
    return offsetof(ag_tensor, shape) + (size_t)rank * sizeof(int64_t);
}

/* The arena: a list of chunks reused in order after each reset, so a pass
** that repeats the same requests never allocates again. */
typedef struct agi_chunk {
    struct agi_chunk *next;
    size_t size, used;
    /* data follows, at AGI_CHUNK_HEADER */
} agi_chunk;
enum { AGI_CHUNK_HEADER = 64 };   /* a cache line: data starts aligned as the chunk is */

typedef struct agi_arena {
    agi_chunk *first, *cur;
    size_t in_use;      /* bytes handed out since reset */
} agi_arena;

/* Anomaly mode (anomaly.c). A site is where an op was called, as given to
** ag_tape_here; file is NULL when unknown. */
typedef struct agi_site {
    const char *file;
    int line;
} agi_site;

typedef struct agi_anomaly {
    bool on;
    agi_site here;            /* the last ag_tape_here */
    ag_tensor *pending;       /* the last op result, not yet checked; NULL when off */
    agi_site pending_site;
    size_t pending_entry;     /* its entry, or SIZE_MAX when not recorded */
    agi_site *sites;          /* per entry, while on; cap_sites of them */
    size_t cap_sites;
} agi_anomaly;

/* Matrix parameters (and their gradients) a tape counts the uses of; one
** past these is never written through (agi_param_grad_target). */
enum { AGI_MAX_COUNTED = 32 };

struct ag_tape {
    ag_alloc_fn alloc;
    void *alloc_ud;
    agi_arena arena;
    agi_arena heads[2];    /* tensor headers, by epoch parity (agi_heads) */
    ag_tensor **entries;
    size_t n_entries, cap_entries;
    ag_status status;
    char errmsg[256];
    uint32_t epoch;        /* incremented by each reset */
    int no_grad;           /* depth of no-grad scopes */
    int in_backward;       /* >0 while replaying: ops record only in create-graph mode */
    int create_graph;
    bool storing;          /* the running pass adds into ag_grad (ag_backward) */
    /* How many recorded ops since the last reset take each AGI_COUNTED
    ** tensor as an input, up to 2, for agi_param_grad_target. The tape's
    ** own: other tapes, on other threads too, count their own. */
    int n_counted;
    bool counted_overflow;   /* some tensor went uncounted: trust no count */
    struct agi_use {
        const ag_tensor *x;
        uint32_t uses;
    } counted[AGI_MAX_COUNTED];
    int trap;
    agi_anomaly anomaly;
    /* Entries [grad_dirty_lo, grad_dirty) may hold an earlier backward's
    ** state: what that pass reached, so that a tape backpropagated many
    ** times (a Jacobian by rows, a Hessian) clears only that. */
    size_t grad_dirty_lo, grad_dirty;
    size_t grad_pending;   /* entries holding a gradient the running pass has not used yet */
    struct agi_leaf_block *leaves;  /* leaves the running backward reached (arena) */
    /* Forward mode (forward_mode.c). A result whose inputs carry tangents
    ** waits here until the next op checks its inputs: an op fills its
    ** result after making it, so the tangent is computed once it is whole. */
    bool tangents_live;    /* ag_dual was called since the last reset */
    int in_jvp;            /* >0 while a JVP rule runs: its ops carry no tangents */
    int n_jvp_pending;
    ag_tensor *jvp_pending[4];
    ag_pool *pool;         /* borrowed; NULL runs ops on the calling thread */
    /* checkpoint.c's tape for segments, made on first use with this tape's
    ** hook, reset after each use, freed with the tape; busy while in use. */
    ag_tape *scratch;
    bool scratch_busy;
    ag_tensor nil;
};

/* memory: all through the hook */
void *agi_realloc(ag_alloc_fn fn, void *ud, void *p, size_t osize, size_t nsize);
/* The slow path of agi_arena_take: moves on to the next chunk, or makes one. */
void *agi_arena_grow(ag_tape *t, agi_arena *a, size_t size, size_t align);
/* 'size' bytes of arena 'a' of tape t aligned to 'align' (a power of two),
** or NULL with AG_ENOMEM recorded. Inline because a scalar op makes one or
** two requests and the bump itself is a few instructions. */
static inline void *agi_arena_take(ag_tape *t, agi_arena *a, size_t size, size_t align)
{
    agi_chunk *c = a->cur;
    if (c && size) {
        uintptr_t base = (uintptr_t)c + AGI_CHUNK_HEADER;
        size_t off = (size_t)(((base + c->used + align - 1) & ~(uintptr_t)(align - 1)) - base);
        if (off <= c->size && c->size - off >= size) {
            c->used = off + size;
            a->in_use += size;
            return (void *)(base + off);
        }
    }
    return agi_arena_grow(t, a, size, align);
}
/* From the tape's arena: everything but tensor headers (see agi_heads). */
static inline void *agi_arena_alloc(ag_tape *t, size_t size, size_t align)
{
    return agi_arena_take(t, &t->arena, size, align);
}
/* Tensor headers (with their input pointers and small values) come from one
** of two arenas, by the parity of the tape's epoch: a reset rewinds the one
** the next pass uses, and leaves the last pass's headers as they were. So a
** tensor from the last pass is never overwritten by a current one at its
** address, and its epoch still tells that it is stale (agi_stale). */
static inline agi_arena *agi_heads(ag_tape *t) { return &t->heads[t->epoch & 1]; }

void agi_arena_reset(agi_arena *a);
void agi_arena_free(ag_tape *t, agi_arena *a);

/* errors: the one funnel. Returns the nil tensor for convenience. */
ag_tensor *agi_error(ag_tape *t, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void agi_verror(ag_tape *t, ag_status s, const char *fmt, va_list ap);
ag_tensor *agi_nil(ag_tape *t);

/* shapes */
int agi_shape_str(char *buf, size_t n, int rank, const int64_t *shape);
/* A scratch string for messages, e.g. "[3,4]" for x; 'slot' picks one of 4. */
const char *agi_shp(const ag_tensor *x, int slot);
bool agi_same_shape(const ag_tensor *a, const ag_tensor *b);
bool agi_broadcast_shape(int ra, const int64_t *sa, int rb, const int64_t *sb, int *rank,
                         int64_t *shape);
int agi_norm_axis(int axis, int rank);   /* -1 when out of range */
/* Strides (in elements) of x viewed with 'rank' dims of 'shape' it broadcasts to:
** 0 on broadcast dims. */
void agi_broadcast_strides(const ag_tensor *x, int rank, const int64_t *shape, int64_t *strides);

/* Validates what every tape constructor takes (a tape not in error, dtype,
** rank, a shape without negative dims or overflow), naming 'who' in errors. */
bool agi_check_make(ag_tape *t, const char *who, ag_dtype dt, int rank, const int64_t *shape);

/* recording */
/* Validates an op's inputs: tape status, NULL, nil, other tape, stale, dtype
** agreement (when same_dtype). Returns false after recording an error. */
bool agi_check_inputs_slow(ag_tape *t, const char *opname, int n, ag_tensor *const *xs,
                           bool same_dtype);
/* Inline because every op calls it: the test that everything is in order
** is a few compares per input, and only a failure (or a pending anomaly
** check) takes the call that finds out what is wrong and says so. */
static inline bool agi_check_inputs(ag_tape *t, const char *opname, int n, ag_tensor *const *xs,
                                    bool same_dtype)
{
    if (t && !t->anomaly.pending && !t->n_jvp_pending && t->status == AG_OK) {
        int i = 0;
        for (; i < n; i++) {
            const ag_tensor *x = xs[i];
            if (!x || (x->flags & AGI_NIL) ||
                (!(x->flags & AGI_PARAM) && (x->tape != t || x->epoch != t->epoch)) ||
                (same_dtype && x->dtype != xs[0]->dtype))
                break;
        }
        if (i == n)
            return true;
    }
    return agi_check_inputs_slow(t, opname, n, xs, same_dtype);
}
/* For accessors, which take no tape: is x a tensor to read (not NULL, not
** nil, not stale)? A tape tensor made before its tape's last reset is stale:
** agi_stale records AG_ESTATE on its tape, naming 'who', and the accessor
** answers as for nil. Its header is intact (agi_heads), so its epoch says so. */
bool agi_stale(const ag_tensor *x, const char *who);
static inline bool agi_usable(const ag_tensor *x, const char *who)
{
    if (!x || (x->flags & AGI_NIL))
        return false;
    if (!(x->flags & AGI_PARAM) && x->tape && x->epoch != x->tape->epoch)
        return agi_stale(x, who);
    return true;
}
/* A new tensor on the tape with uninitialised values. If 'op' is given and
** recording is on and an input requires grad, it becomes an entry of the tape
** with those inputs. Returns nil on error. */
ag_tensor *agi_new(ag_tape *t, const ag_op *op, int nin, ag_tensor *const *in, ag_dtype dt,
                   int rank, const int64_t *shape);
/* agi_new for a rank-0 result: the same tensor, without the shape checks
** and arithmetic that cost as much as the rest of a scalar op. */
ag_tensor *agi_new_scalar(ag_tape *t, const ag_op *op, int nin, ag_tensor *const *in, ag_dtype dt);
bool agi_recording(const ag_tape *t);
/* Anomaly mode: agi_new notes each op result while it is on (false after
** recording ENOMEM); agi_check_inputs flushes the pending result (checks it
** for NaN and infinities, which records AG_ENUMERIC); backward checks the
** gradients entry 'entry' sent to its inputs. An op must fill its result
** before it calls another op, so that the result is complete when checked. */
bool agi_anomaly_note(ag_tape *t, ag_tensor *x);
void agi_anomaly_flush(ag_tape *t);
void agi_anomaly_check_grads(ag_tape *t, size_t entry);
void agi_anomaly_free(ag_tape *t);
/* Turns anomaly mode off for work that is not the user's (drawing's replay
** of backward), after checking the pending result; returns whether it was
** on, for agi_anomaly_resume. */
bool agi_anomaly_pause(ag_tape *t);
void agi_anomaly_resume(ag_tape *t, bool was_on);
/* Is this an ordinary backward, where nothing a vjp does is recorded? Then
** the engine takes an op's raw_vjp, which may compute the same gradients,
** bit for bit, with raw loops straight into the inputs' accumulators
** (agi_grad_add, agi_grad_slot) and leave gin[] empty. */
/* Not while tangents are live either: forward-over-reverse needs the
** gradients made by ops, so that they carry tangents (Hessian-vector
** products). */
static inline bool agi_raw_backward(const ag_tape *t)
{
    return t->in_backward && !t->create_graph && !t->tangents_live;
}

/* The engine's one choice of how a gradient flows back through entry e
** (backward.c, and the DOT export's replay in dot_graph.c): the op's raw
** VJP when 'raw' (agi_raw_backward(t), which a pass computes once), if it
** has one and does not decline; otherwise its differentiable VJP. Ops never
** choose themselves. Inline: a scalar graph pays a pointer test per op. */
void agi_pull_back_raw_only(ag_tape *t, ag_tensor *e, ag_tensor *g, ag_tensor **gin);
static inline void agi_pull_back(ag_tape *t, ag_tensor *e, ag_tensor *g, ag_tensor **gin, bool raw)
{
    const ag_op *op = e->op;
    if (raw && op->raw_vjp && op->raw_vjp(t, e, g, gin))
        return;
    if (op->vjp)
        op->vjp(t, e, g, gin);
    else
        agi_pull_back_raw_only(t, e, g, gin);
}

/* Forward mode (forward_mode.c). agi_new notes a result with an input
** that carries a tangent; agi_jvp_flush runs the pending results' JVP
** rules (agi_check_inputs calls it before the next op, and so do
** ag_tangent and ag_tape_status). */
void agi_jvp_note(ag_tape *t, ag_tensor *x);
void agi_jvp_flush(ag_tape *t);
/* For JVP rules: acc + term, where either may be NULL (a zero tangent). */
ag_tensor *agi_jvp_sum(ag_tape *t, ag_tensor *acc, ag_tensor *term);
/* The JVP rule of an elementwise op of one input: its Jacobian is
** diagonal, so its own transpose, and J v is its vjp applied to v. */
ag_tensor *agi_jvp_diagonal(ag_tape *t, ag_tensor *out, ag_tensor *const *tangents);

/* Counts a recorded op's use of x (AGI_COUNTED) on t, up to 2 ("more than
** one"). A tensor past the table's room stays uncounted: never written
** through. */
void agi_count_use(ag_tape *t, const ag_tensor *x);
/* Recorded uses of x on t since the reset, up to 2. */
uint32_t agi_uses(const ag_tape *t, const ag_tensor *x);

/* Where a vjp may add input x's gradient itself: the buffer of ag_grad(x)
** when x is a matrix parameter (the only ones counted) that only this op
** uses on t since its reset, and that no recorded op reads ag_grad(x) as a
** value (its vjp would see the sum early), in an
** ag_backward pass (not create-graph, not anomaly mode), so that the one
** contribution would just be added into that buffer at the end of the pass.
** NULL otherwise. A vjp that adds into it leaves gin[i] NULL. */
void *agi_param_grad_target(ag_tape *t, ag_tensor *x);
/* For raw vjps, during backward: adds g (x's shape and dtype) into x's
** gradient, sharing g when x has none yet. */
void agi_grad_add(ag_tape *t, ag_tensor *x, ag_tensor *g);
/* x's own gradient buffer (x's shape and dtype) for a raw vjp to add into;
** '*fresh' says it holds nothing yet, so the caller assigns instead. NULL,
** with the error recorded, when memory runs out. */
void *agi_grad_slot(ag_tape *t, ag_tensor *x, bool *fresh);
/* Does input i of 'out' need a gradient? For vjp functions. */
static inline bool agi_needs_grad(const ag_tensor *out, int i)
{
    return (out->in[i]->flags & AGI_REQUIRES_GRAD) != 0;
}
/* A constant of x's dtype (used by vjps and composites). */
ag_tensor *agi_const_like(ag_tape *t, const ag_tensor *x, double v);
/* g summed down to x's shape when it broadcast. */
ag_tensor *agi_unbroadcast(ag_tape *t, ag_tensor *g, const ag_tensor *x);

/* element access in double, any dtype */
static inline double agi_get(const ag_tensor *x, int64_t i)
{
    return x->dtype == AG_F32 ? (double)((const float *)x->value)[i]
                              : ((const double *)x->value)[i];
}
static inline void agi_set(ag_tensor *x, int64_t i, double v)
{
    if (x->dtype == AG_F32)
        ((float *)x->value)[i] = (float)v;
    else
        ((double *)x->value)[i] = v;
}

/* Every op of the library, for the tests and tools that walk them all. Each
** autograd/ops_<family>.c ends with its table, agi_ops_<family>[], the
** addresses of its differentiable ops' descriptors and a NULL; the list of
** those tables, agi_op_tables[] (NULL-terminated too), is generated at build
** time from the ops_*.c files named in autograd/meson.build
** (autograd/gen_op_tables.py), so no list is kept by hand. */
extern const ag_op *const *const agi_op_tables[];

/* Internal ops used by vjps. */
/* Zeros of x's shape with g written into the slice (the adjoint of ag_slice). */
ag_tensor *agi_slice_grad(ag_tape *t, ag_tensor *g, const ag_tensor *x, int axis, int64_t start,
                          int64_t step);
/* The running sum of x along 'axis' from its end: out[k] = x[k] + ... +
** x[n-1], the adjoint of ag_cumsum (ops_stats.c). */
ag_tensor *agi_cumsum_reverse(ag_tape *t, ag_tensor *x, int axis);
/* The derivative of relu (below = 0) or leaky relu (below = its slope) at
** x: 1 where x > 0, 'below' where x <= 0, NaN where x is NaN. A constant. */
ag_tensor *agi_step(ag_tape *t, ag_tensor *x, double below);
/* op(a) @ op(b) where op transposes the last two axes when its flag is set. */
ag_tensor *agi_matmul_t(ag_tape *t, ag_tensor *a, ag_tensor *b, int ta, int tb);
/* The adjoints of ag_conv2d (ops_conv.c), for its vjps and the tests. p holds
** AGI_CONV_PARAMS ints: stride h, w; padding h, w; dilation h, w; groups.
** input_grad(g, w) is the gradient of <g, conv2d(x, w)> in an x of height h
** and width wd; weight_grad(x, g) its gradient in a w of kh x kw. */
enum { AGI_CONV_PARAMS = 7 };
ag_tensor *agi_conv2d_input_grad(ag_tape *t, ag_tensor *g, ag_tensor *w, int64_t h, int64_t wd,
                                 const int *p);
ag_tensor *agi_conv2d_weight_grad(ag_tape *t, ag_tensor *x, ag_tensor *g, int64_t kh, int64_t kw,
                                  const int *p);
/* The adjoints of a max pooling (ops_pool.c), given its result 'pooled'
** (whose windows' argmaxes they route through): scatter sends g (pooled's
** shape) to the argmaxes in zeros of the pooled input's shape; gather reads
** u (the input's shape) at the argmaxes. Each is the other's vjp. */
ag_tensor *agi_max_pool2d_scatter(ag_tape *t, ag_tensor *g, const ag_tensor *pooled);
ag_tensor *agi_max_pool2d_gather(ag_tape *t, ag_tensor *u, const ag_tensor *pooled);

#endif
