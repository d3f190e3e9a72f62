/*
** backward.c: replaying the tape in reverse. Entries are in execution order,
** so walking them backwards visits every consumer before its inputs: a
** tensor's accumulated gradient is final when its own entry is reached.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <string.h>

/* The leaves a backward pass reaches, listed as it first reaches them, in
** arena blocks: listing them up front would cost a walk over the whole tape. */
typedef struct agi_leaf_block {
    struct agi_leaf_block *next;
    size_t n;
    ag_tensor *x[254];
} agi_leaf_block;

/* Called before a gradient first reaches x in this pass. A leaf (not an
** entry) may hold an earlier pass's gradient (a parameter shared by tapes,
** a second backward): it is cleared and listed, so that its gradient is
** stored when the pass ends. Entries need no such care: run() clears those
** an earlier pass reached. */
static void reach(ag_tape *t, ag_tensor *x)
{
    if (x->flags & AGI_RECORDED) {
        /* Counted, so that the walk stops once every gradient is used. */
        if (!x->gacc)
            t->grad_pending++;
        return;
    }
    if (x->flags & AGI_COLLECTED)
        return;
    /* Forgotten before anything can fail: the old gradient may live in a
    ** tape already freed, and the caller goes on to use x->gacc. */
    x->gacc = NULL;
    x->flags &= (uint8_t)~AGI_GACC_OWNED;
    agi_leaf_block *b = t->leaves;
    if (!b || b->n == ARRAY_LEN(b->x)) {
        b = agi_arena_alloc(t, sizeof *b, 16);
        if (!b)
            return;
        b->next = t->leaves;
        b->n = 0;
        t->leaves = b;
    }
    b->x[b->n++] = x;
    x->flags |= AGI_COLLECTED;
}

/* Adds g into x's gradient-in-progress. A buffer this pass made itself is
** added to in place; otherwise the sum is a new tensor (recorded in
** create-graph mode, so it stays differentiable). */
static void accumulate(ag_tape *t, ag_tensor *x, ag_tensor *g)
{
    reach(t, x);
    if (!x->gacc) {
        x->gacc = g;
        x->flags &= (uint8_t)~AGI_GACC_OWNED;
    } else if (agi_raw_backward(t) && (x->flags & AGI_GACC_OWNED)) {
        agk_add_inplace(t->pool, (ag_dtype)x->dtype, x->numel, x->gacc->value, g->value);
    } else {
        x->gacc = ag_add(t, x->gacc, g);
        if (agi_raw_backward(t))
            x->flags |= AGI_GACC_OWNED;
    }
}

void *agi_grad_slot(ag_tape *t, ag_tensor *x, bool *fresh)
{
    reach(t, x);
    if (x->gacc && (x->flags & AGI_GACC_OWNED)) {
        *fresh = false;
        return x->gacc->value;
    }
    ag_tensor *g = agi_new(t, NULL, 0, NULL, (ag_dtype)x->dtype, x->rank, x->shape);
    if (g->flags & AGI_NIL)
        return NULL;
    *fresh = !x->gacc;
    if (x->gacc)
        memcpy(g->value, x->gacc->value, (size_t)x->numel * ag_dtype_size((ag_dtype)x->dtype));
    x->gacc = g;
    x->flags |= AGI_GACC_OWNED;
    return g->value;
}

void agi_grad_add(ag_tape *t, ag_tensor *x, ag_tensor *g)
{
    reach(t, x);
    if (!x->gacc) {
        x->gacc = g;
        x->flags &= (uint8_t)~AGI_GACC_OWNED;
        return;
    }
    bool fresh;
    void *dst = agi_grad_slot(t, x, &fresh);
    if (dst)
        agk_add_inplace(t->pool, (ag_dtype)x->dtype, x->numel, dst, g->value);
}

/* Makes this pass's gradient of x visible as ag_grad(x), adding to what an
** earlier backward left there. */
static void store_grad(ag_tape *t, ag_tensor *x)
{
    if (!x->gacc)
        return;
    if (x->flags & AGI_PARAM) {
        if (x->grad)   /* a parameter's own gradient tensor has none */
            agk_add_inplace(t->pool, (ag_dtype)x->dtype, x->numel, x->grad->value, x->gacc->value);
    } else if (!x->grad) {
        x->grad = x->gacc;
    } else {
        x->grad = ag_add(t, x->grad, x->gacc);
    }
}

/* A VJP's result must be a gradient of its input's shape and dtype. The
** library's own VJPs are checked in debug builds (a wrong one is a bug of
** ours); a user's (a descriptor with a forward) always, since a wrong shape
** would otherwise be added past the end of a buffer. */
static bool vjp_result_ok(ag_tape *t, const ag_tensor *e, int i, const ag_tensor *g)
{
    bool user = e->op->forward != NULL;
#ifdef NDEBUG
    if (!user)
        return true;
#endif
    const ag_tensor *x = e->in[i];
    if ((g->flags & AGI_NIL) || g->dtype != x->dtype || !agi_same_shape(g, x) ||
        (!(g->flags & AGI_PARAM) && (g->tape != t || g->epoch != t->epoch))) {
        const char *what = (g->flags & AGI_NIL) ? " (nil)" : g->tape != t ? " (another tape's)" : "";
        if (user)
            agi_error(t, AG_ESHAPE, "%s: its vjp gave %s %s%s for input %d of %s %s", e->op->name,
                      ag_dtype_name((ag_dtype)g->dtype), agi_shp(g, 0), what, i,
                      ag_dtype_name((ag_dtype)x->dtype), agi_shp(x, 1));
        else
            agi_error(t, AG_ESTATE, "internal: vjp of %s gave %s %s%s for input %d of %s %s",
                      e->op->name, ag_dtype_name((ag_dtype)g->dtype), agi_shp(g, 0), what, i,
                      ag_dtype_name((ag_dtype)x->dtype), agi_shp(x, 1));
        return false;
    }
    return true;
}

/* Clears what an earlier pass since the last reset left on entries
** [0, end) and their inputs; later entries are as new. */
static void clear_stale(ag_tape *t, size_t end)
{
    if (end > t->grad_dirty)
        end = t->grad_dirty;
    for (size_t i = t->grad_dirty_lo; i < end; i++) {
        ag_tensor *e = t->entries[i];
        e->gacc = NULL;
        e->flags &= (uint8_t)~(AGI_GACC_OWNED | AGI_COLLECTED);
        for (int j = 0; j < e->nin; j++) {
            e->in[j]->gacc = NULL;
            e->in[j]->flags &= (uint8_t)~(AGI_GACC_OWNED | AGI_COLLECTED);
        }
    }
}

/* On a long scalar graph backward is bound by memory: each entry's header,
** written by the forward pass long ago, and its inputs' headers (entries
** from a few to a few dozen places earlier) come from DRAM. The hardware
** prefetcher follows the descending walk only loosely; asking for the
** header a few kilobytes ahead took a 1,000,000-op graph's backward from
** about 14 to 11.5 ns per op, the cost with the whole tape in cache. */
enum { PREFETCH_AHEAD = 32 };

static void prefetch_entry(const ag_tensor *e)
{
#if defined(__GNUC__)
    /* Its first two lines: the fields backward reads and writes, and for
    ** small tensors the input pointers. */
    __builtin_prefetch(e, 1);
    __builtin_prefetch((const char *)e + 64, 1);
#else
    (void)e;
#endif
}

/* The engine behind ag_backward and ag_gradients. With 'store', gradients
** are added into ag_grad of every tensor reached. */
static void run(ag_tape *t, const char *who, ag_tensor *y, ag_tensor *seed, bool create_graph,
                bool store)
{
    if (!agi_check_inputs(t, who, 1, &y, false))
        return;
    if (seed && !agi_check_inputs(t, who, 1, &seed, false))
        return;
    if (t->in_backward) {
        agi_error(t, AG_ESTATE, "%s: called while a backward pass is running", who);
        return;
    }
    if (seed) {
        if (seed->dtype != y->dtype || !agi_same_shape(seed, y)) {
            agi_error(t, AG_ESHAPE, "%s: seed is %s %s but the output is %s %s", who,
                      ag_dtype_name((ag_dtype)seed->dtype), agi_shp(seed, 0),
                      ag_dtype_name((ag_dtype)y->dtype), agi_shp(y, 1));
            return;
        }
    } else if (y->numel != 1) {
        agi_error(t, AG_ESHAPE, "%s: output has shape %s, not one element; pass a seed", who,
                  agi_shp(y, 0));
        return;
    }
    if (store && !(y->flags & AGI_REQUIRES_GRAD)) {
        agi_error(t, AG_ESTATE, "%s: the output%s%s%s depends on no tensor that requires grad",
                  who, y->name ? " '" : "", y->name ? y->name : "", y->name ? "'" : "");
        return;
    }
    size_t end = t->n_entries;
    clear_stale(t, end);
    t->grad_pending = 0;
    y->gacc = NULL;
    y->flags &= (uint8_t)~AGI_GACC_OWNED;
    t->leaves = NULL;
    if (y->flags & AGI_REQUIRES_GRAD)
        reach(t, y);
    t->in_backward++;
    t->create_graph = create_graph;
    t->storing = store;
    /* A copy of the caller's seed, so that no gradient stored or returned
    ** shares its buffer: refilling the seed later must not change them. (In
    ** create-graph mode the copy is recorded and stays differentiable.) */
    if (seed)
        seed = ag_reshape(t, seed, seed->rank, seed->shape);
    else {
        seed = agi_const_like(t, y, 1.0);
        if (y->rank > 0)
            seed = ag_broadcast_to(t, seed, y->rank, y->shape);
    }
    y->gacc = seed;
    /* The mode is fixed for the pass (a nested backward is refused above). */
    const bool raw = agi_raw_backward(t);
    ag_tensor *small[8];
    /* The lowest entry this pass reached: below it, nothing it did needs
    ** clearing by the next pass. */
    size_t lowest = end;
    for (size_t i = end; i-- > 0 && t->status == AG_OK && t->grad_pending;) {
        ag_tensor *e = t->entries[i];
        if (i >= PREFETCH_AHEAD)
            prefetch_entry(t->entries[i - PREFETCH_AHEAD]);
        if (!e->gacc)
            continue;
        t->grad_pending--;
        lowest = i;
        if (store)
            store_grad(t, e);
        ag_tensor **gin = small;
        if (e->nin > (int)ARRAY_LEN(small)) {
            gin = agi_arena_alloc(t, e->nin * sizeof *gin, 16);
            if (!gin)
                break;
            memset(gin, 0, e->nin * sizeof *gin);
        } else {
            /* A constant size compiles to a few stores; a variable one to a
            ** 'rep stos' that costs as much as a scalar op's whole vjp. */
            memset(small, 0, sizeof small);
        }
        agi_pull_back(t, e, e->gacc, gin, raw);
        for (int j = 0; j < e->nin && t->status == AG_OK; j++) {
            ag_tensor *x = e->in[j];
            if (gin[j] && (x->flags & AGI_REQUIRES_GRAD) && vjp_result_ok(t, e, j, gin[j]))
                accumulate(t, x, gin[j]);
        }
        if (t->anomaly.on && t->status == AG_OK)
            agi_anomaly_check_grads(t, i);
    }
    for (agi_leaf_block *b = t->leaves; b; b = b->next)
        for (size_t k = 0; k < b->n; k++) {
            if (store && t->status == AG_OK)
                store_grad(t, b->x[k]);
            b->x[k]->flags &= (uint8_t)~AGI_COLLECTED;
        }
    t->leaves = NULL;
    /* Entries made in create-graph mode were reached by nothing yet, but
    ** counting them keeps the rule simple. */
    t->grad_dirty_lo = t->status == AG_OK ? lowest : 0;
    t->grad_dirty = t->n_entries;
    t->in_backward--;
    t->create_graph = 0;
    t->storing = false;
}

/* An op with a raw VJP and no differentiable one (a user's, written on
** arrays): it serves a pass that records nothing, and in create-graph mode
** it is an error. */
void agi_pull_back_raw_only(ag_tape *t, ag_tensor *e, ag_tensor *g, ag_tensor **gin)
{
    const char *name = e->op->name;
    if (t->create_graph)
        agi_error(t, AG_EUNSUPPORTED, "%s: its VJP is raw (first order only), so create_graph "
                  "cannot differentiate through it; give the op a vjp written with ag_ ops", name);
    else if (!e->op->raw_vjp)
        agi_error(t, AG_ESTATE, "%s: the op has no VJP", name);
    else if (agi_raw_backward(t) || !e->op->raw_vjp(t, e, g, gin))
        agi_error(t, AG_ESTATE, "%s: its raw VJP declined and it has no other", name);
}

void *agi_param_grad_target(ag_tape *t, ag_tensor *x)
{
    if ((x->flags & (AGI_COUNTED | AGI_REQUIRES_GRAD | AGI_COLLECTED)) !=
            (AGI_COUNTED | AGI_REQUIRES_GRAD) ||
        !x->grad || !t->storing || !agi_raw_backward(t) || t->anomaly.on || t->counted_overflow)
        return NULL;
    if (agi_uses(t, x) != 1 || agi_uses(t, x->grad) != 0)
        return NULL;
    return x->grad->value;
}

void ag_backward(ag_tape *t, ag_tensor *y) { run(t, "ag_backward", y, NULL, false, true); }

void ag_backward_seed(ag_tape *t, ag_tensor *y, ag_tensor *seed)
{
    if (t && t->status == AG_OK && !seed) {
        agi_error(t, AG_EINVAL, "ag_backward_seed: seed is NULL");
        return;
    }
    run(t, "ag_backward_seed", y, seed, false, true);
}

void ag_gradients(ag_tape *t, ag_tensor *y, ag_tensor *seed, int n, ag_tensor *const *xs,
                  ag_tensor **out, int create_graph)
{
    if (!t)
        return;
    if (n < 0 || (n > 0 && (!xs || !out))) {
        agi_error(t, AG_EINVAL, "ag_gradients: %d inputs with xs %p and out %p", n,
                  (const void *)xs, (void *)out);
        return;
    }
    for (int i = 0; i < n; i++)
        out[i] = agi_nil(t);
    if (!agi_check_inputs(t, "ag_gradients", n, xs, false))
        return;
    /* run() clears only what this graph reaches; an x it never reaches may
    ** still hold an earlier pass's gradient (a parameter after a reset, a
    ** leaf that was itself an output), which would read as this one's. */
    for (int i = 0; i < n; i++) {
        xs[i]->gacc = NULL;
        xs[i]->flags &= (uint8_t)~AGI_GACC_OWNED;
    }
    run(t, "ag_gradients", y, seed, create_graph != 0, false);
    for (int i = 0; i < n && t->status == AG_OK; i++) {
        ag_tensor *x = xs[i];
        if (x->gacc && (x->flags & AGI_REQUIRES_GRAD)) {
            out[i] = x->gacc;
        } else {
            /* y does not depend on x: its gradient is zero. */
            ag_no_grad_begin(t);
            out[i] = ag_zeros(t, (ag_dtype)x->dtype, x->rank, x->shape);
            ag_no_grad_end(t);
        }
    }
}

void ag_zero_grad(ag_tensor *x)
{
    if (!agi_usable(x, "ag_zero_grad"))
        return;
    if (x->flags & AGI_PARAM) {
        if (x->grad)
            memset(x->grad->value, 0, (size_t)x->numel * ag_dtype_size((ag_dtype)x->dtype));
    } else {
        x->grad = NULL;
    }
}

void ag_zero_grads(int n, ag_tensor *const *xs)
{
    for (int i = 0; xs && i < n; i++)
        ag_zero_grad(xs[i]);
}
