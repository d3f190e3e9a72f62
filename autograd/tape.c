/*
** tape.c: tapes (new, reset, free), the no-grad scope, and recording: the
** one place where an op's result is made and appended to the tape.
*/
#include "internal.h"

#include <string.h>

#if defined(__GNUC__)
#define AGI_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define AGI_ALWAYS_INLINE static inline
#endif

ag_tape *ag_tape_new(void) { return ag_tape_new_alloc(NULL, NULL); }

ag_tape *ag_tape_new_alloc(ag_alloc_fn fn, void *ud)
{
    ag_tape *t = agi_realloc(fn, ud, NULL, 0, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->alloc = fn;
    t->alloc_ud = ud;
    t->nil.flags = AGI_NIL;
    t->nil.tape = t;
    return t;
}

void ag_tape_free(ag_tape *t)
{
    if (!t)
        return;
    agi_arena_free(t, &t->arena);
    agi_arena_free(t, &t->heads[0]);
    agi_arena_free(t, &t->heads[1]);
    agi_anomaly_free(t);
    ag_tape_free(t->scratch);
    agi_realloc(t->alloc, t->alloc_ud, t->entries, t->cap_entries * sizeof *t->entries, 0);
    agi_realloc(t->alloc, t->alloc_ud, t, sizeof *t, 0);
}

void ag_tape_reset(ag_tape *t)
{
    if (!t)
        return;
    agi_arena_reset(&t->arena);
    t->n_entries = 0;
    t->anomaly.pending = NULL;
    t->tangents_live = false;
    t->in_jvp = 0;
    t->n_jvp_pending = 0;
    t->grad_dirty_lo = t->grad_dirty = 0;
    t->epoch++;
    /* The headers of the pass that ends stay where they are (agi_heads). */
    agi_arena_reset(agi_heads(t));
    t->status = AG_OK;
    t->errmsg[0] = '\0';
    t->no_grad = 0;
    t->in_backward = 0;
    t->create_graph = 0;
    t->n_counted = 0;
    t->counted_overflow = false;
}

size_t ag_tape_entries(const ag_tape *t) { return t ? t->n_entries : 0; }
size_t ag_tape_bytes(const ag_tape *t)
{
    return t ? t->arena.in_use + t->heads[t->epoch & 1].in_use : 0;
}

void ag_no_grad_begin(ag_tape *t)
{
    if (t)
        t->no_grad++;
}

void ag_no_grad_end(ag_tape *t)
{
    if (!t)
        return;
    if (t->no_grad == 0) {
        agi_error(t, AG_ESTATE, "ag_no_grad_end: no scope is open");
        return;
    }
    t->no_grad--;
}

ag_tensor *agi_nil(ag_tape *t)
{
    /* Without a tape there is nowhere to keep a nil; this one is never written. */
    static ag_tensor orphan_nil = {.flags = AGI_NIL};
    return t ? &t->nil : &orphan_nil;
}

ag_tensor *ag_tape_nil(ag_tape *t) { return agi_nil(t); }

bool agi_recording(const ag_tape *t)
{
    return t->no_grad == 0 && (t->in_backward == 0 || t->create_graph);
}

bool agi_check_inputs_slow(ag_tape *t, const char *opname, int n, ag_tensor *const *xs,
                           bool same_dtype)
{
    if (!t)
        return false;
    if (t->anomaly.pending)
        agi_anomaly_flush(t);
    if (t->n_jvp_pending)
        agi_jvp_flush(t);
    if (t->status != AG_OK)
        return false;
    for (int i = 0; i < n; i++) {
        const ag_tensor *x = xs[i];
        if (!x) {
            agi_error(t, AG_EINVAL, "%s: input %d is NULL", opname, i);
            return false;
        }
        if (x->flags & AGI_NIL) {
            agi_error(t, AG_EINVAL, "%s: input %d is the nil tensor of a failed tape", opname, i);
            return false;
        }
        if (!(x->flags & AGI_PARAM)) {
            if (x->tape != t) {
                agi_error(t, AG_EINVAL, "%s: input %d%s%s%s belongs to another tape", opname, i,
                          x->name ? " '" : "", x->name ? x->name : "", x->name ? "'" : "");
                return false;
            }
            if (x->epoch != t->epoch) {
                agi_error(t, AG_ESTATE, "%s: input %d was made before the last ag_tape_reset",
                          opname, i);
                return false;
            }
        }
        if (same_dtype && x->dtype != xs[0]->dtype) {
            agi_error(t, AG_EDTYPE, "%s: dtypes differ: input 0 is %s, input %d is %s", opname,
                      ag_dtype_name((ag_dtype)xs[0]->dtype), i, ag_dtype_name((ag_dtype)x->dtype));
            return false;
        }
    }
    return true;
}

bool agi_stale(const ag_tensor *x, const char *who)
{
    agi_error(x->tape, AG_ESTATE, "%s: tensor%s%s%s was made before the last ag_tape_reset "
              "(pass %u; the tape is at pass %u)", who, x->name ? " '" : "",
              x->name ? x->name : "", x->name ? "'" : "", (unsigned)x->epoch,
              (unsigned)x->tape->epoch);
    return false;
}

static bool grow_entries(ag_tape *t)
{
    size_t cap = t->cap_entries ? t->cap_entries * 2 : 1024;
    ag_tensor **e = agi_realloc(t->alloc, t->alloc_ud, t->entries,
                                t->cap_entries * sizeof *e, cap * sizeof *e);
    if (!e) {
        agi_error(t, AG_ENOMEM, "tape: out of memory growing to %zu entries", cap);
        return false;
    }
    t->entries = e;
    t->cap_entries = cap;
    return true;
}

/* Out of carve's line: scalar graphs never get here. */
#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static void count_matrix_uses(ag_tape *t, int nin, ag_tensor *const *in)
{
    for (int i = 0; i < nin; i++)
        if (in[i]->flags & AGI_COUNTED)
            agi_count_use(t, in[i]);
}

void agi_count_use(ag_tape *t, const ag_tensor *x)
{
    for (int i = 0; i < t->n_counted; i++)
        if (t->counted[i].x == x) {
            t->counted[i].uses = 2;   /* a second use: "more than one" from now on */
            return;
        }
    if (t->n_counted < AGI_MAX_COUNTED)
        t->counted[t->n_counted++] = (struct agi_use){x, 1};
    else
        t->counted_overflow = true;
}

uint32_t agi_uses(const ag_tape *t, const ag_tensor *x)
{
    for (int i = 0; i < t->n_counted; i++)
        if (t->counted[i].x == x)
            return t->counted[i].uses;
    return 0;
}

/* Carves a tensor of 'numel' elements (checked by the caller) with its
** header, inputs and small values in one block (after a tangent's slot of
** 'slot' bytes), and records it. Always inline, so that agi_new_scalar gets
** its own copy with rank 0 folded in and the usual path its copy with no
** slot. */
AGI_ALWAYS_INLINE ag_tensor *carve_with(ag_tape *t, const ag_op *op, int nin,
                                         ag_tensor *const *in, ag_dtype dt, int rank,
                                         const int64_t *shape, int64_t numel, size_t slot)
{
    size_t esize = dt == AG_F32 ? sizeof(float) : sizeof(double);   /* inline: ag_dtype_size is a call */
    size_t hsize = agi_header_size(rank);
    size_t head = (hsize + (size_t)nin * sizeof(ag_tensor *) + 15) & ~(size_t)15;
    size_t bytes = (size_t)numel * esize;
    ag_tensor *x;
    if (bytes <= 64) {
        /* Small tensors (scalars above all) in one block with their header. */
        char *block = agi_arena_take(t, agi_heads(t), slot + head + bytes, 16);
        if (!block)
            return agi_nil(t);
        x = (ag_tensor *)(block + slot);
        x->value = (char *)x + head;
    } else {
        char *block = agi_arena_take(t, agi_heads(t), slot + head, 16);
        void *v = block ? agi_arena_alloc(t, bytes, 64) : NULL;
        if (!v)
            return agi_nil(t);
        x = (ag_tensor *)(block + slot);
        x->value = v;
    }
    x->in = nin ? (ag_tensor **)((char *)x + hsize) : NULL;
    for (int i = 0; i < nin; i++)
        x->in[i] = in[i];
    x->op = op;
    x->grad = x->gacc = NULL;
    x->tape = t;
    x->name = NULL;
    x->numel = numel;
    if (rank > 0)
        memcpy(x->shape, shape, (size_t)rank * sizeof(int64_t));
    memset(&x->attr, 0, sizeof x->attr);
    x->epoch = t->epoch;
    x->dtype = (uint8_t)dt;
    x->rank = (uint8_t)rank;
    x->nin = (uint8_t)nin;
    x->flags = 0;
    if (slot) {
        x->flags = AGI_TANGENT_SLOT;
        agi_set_tangent(x, NULL);
    }
    if (op && (op->vjp || op->raw_vjp) && agi_recording(t)) {
        /* Uses of matrix parameters are counted (agi_note_param_use): only
        ** a matrix can be a dense layer's weight. One load of each input's
        ** flags serves both tests: a branch on a second field cost scalar
        ** graphs a nanosecond an op. */
        unsigned any = 0;
        for (int i = 0; i < nin; i++)
            any |= in[i]->flags;
        bool matrices = any & AGI_COUNTED;
        any &= AGI_REQUIRES_GRAD;
        if (any) {
            if (t->n_entries == t->cap_entries && !grow_entries(t))
                return agi_nil(t);
            t->entries[t->n_entries++] = x;
            x->flags |= AGI_REQUIRES_GRAD | AGI_RECORDED;
            if (matrices)
                count_matrix_uses(t, nin, in);
        }
    }
    if (t->anomaly.on && !agi_anomaly_note(t, x))
        return agi_nil(t);
    /* An op with no derivative at all (a comparison) gives a constant. */
    if (slot && op && (op->vjp || op->raw_vjp) && !t->in_jvp) {
        /* An input may still wait for its tangent: an op's internal
        ** constructors make results without checking their inputs (which
        ** would have flushed). The input is being read, so it is whole. */
        if (t->n_jvp_pending)
            agi_jvp_flush(t);
        for (int i = 0; i < nin; i++)
            if (agi_tangent(in[i])) {
                agi_jvp_note(t, x);
                break;
            }
    }
    return x;
}

/* While forward mode is in use (tangents_live), every tensor gets room for
** a tangent before its header (agi_tangent), 16 bytes to keep the header's
** alignment. Out of line, so that the usual path pays one test for it. */
static ag_tensor *carve_with_slot(ag_tape *t, const ag_op *op, int nin, ag_tensor *const *in,
                                  ag_dtype dt, int rank, const int64_t *shape, int64_t numel)
{
    return carve_with(t, op, nin, in, dt, rank, shape, numel, 16);
}

static inline ag_tensor *carve(ag_tape *t, const ag_op *op, int nin, ag_tensor *const *in,
                               ag_dtype dt, int rank, const int64_t *shape, int64_t numel)
{
    if (t->tangents_live)
        return carve_with_slot(t, op, nin, in, dt, rank, shape, numel);
    return carve_with(t, op, nin, in, dt, rank, shape, numel, 0);
}

ag_tensor *agi_new(ag_tape *t, const ag_op *op, int nin, ag_tensor *const *in, ag_dtype dt,
                   int rank, const int64_t *shape)
{
    if (t->status != AG_OK)
        return agi_nil(t);
    const char *who = op ? op->name : "tensor";
    if (rank < 0 || rank > AG_MAX_DIMS)
        return agi_error(t, AG_ESHAPE, "%s: rank %d is outside 0..%d", who, rank, AG_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return agi_error(t, AG_ESHAPE, "%s: dimension %d is negative (%lld)", who, i,
                             (long long)shape[i]);
        if (shape[i] != 0 && numel > INT64_MAX / 8 / shape[i])
            return agi_error(t, AG_ESHAPE, "%s: shape is too large", who);
        numel *= shape[i];
    }
    size_t head = agi_header_size(rank) + (size_t)nin * sizeof(ag_tensor *) + 15;
    /* Divided by the largest element size, a constant: a division by
    ** 'esize' costs more than the rest of a scalar op's recording. */
    if ((uint64_t)numel > (SIZE_MAX - head - 64) / sizeof(double))
        return agi_error(t, AG_ENOMEM, "%s: %lld elements do not fit in memory", who,
                         (long long)numel);
    return carve(t, op, nin, in, dt, rank, shape, numel);
}

ag_tensor *agi_new_scalar(ag_tape *t, const ag_op *op, int nin, ag_tensor *const *in, ag_dtype dt)
{
    if (t->status != AG_OK)
        return agi_nil(t);
    return carve(t, op, nin, in, dt, 0, NULL, 1);
}
