/*
** dot_graph.c: builds the model the DOT writer draws (dot_graph.h). Node
** numbers follow the tape, so the same computation always gives the same
** graph. Derivatives come from the ops' own vjps, run without recording: with
** a gradient of ones on a one-element result, input i receives d out / d in_i.
*/
#include "dot_graph.h"

#include <string.h>

/* ------------------------------------------------------------ memory */

static void *dg_calloc(ag_tape *t, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX / size) {
        agi_error(t, AG_ENOMEM, "ag_dot: a graph of %zu items does not fit in memory", n);
        return NULL;
    }
    void *p = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, n * size);
    if (!p) {
        agi_error(t, AG_ENOMEM, "ag_dot: out of memory for a graph of %zu items", n);
        return NULL;
    }
    memset(p, 0, n * size);
    return p;
}

static void dg_release(ag_tape *t, void *p, size_t n, size_t size)
{
    if (p)
        agi_realloc(t->alloc, t->alloc_ud, p, (n ? n : 1) * size, 0);
}

/* ---------------------------------------------- tensor -> index lookup */

/* Open addressing keyed by address: it only answers lookups, and every
** order the output depends on comes from the tape, never from this table. */
typedef struct ptr_map {
    const ag_tensor **keys;
    int64_t *vals;
    size_t cap;
} ptr_map;

static bool map_init(ptr_map *m, ag_tape *t, size_t items)
{
    size_t cap = 16;
    while (cap < 2 * items && cap < SIZE_MAX / 4)
        cap *= 2;
    m->cap = cap;
    m->keys = dg_calloc(t, cap, sizeof *m->keys);
    m->vals = m->keys ? dg_calloc(t, cap, sizeof *m->vals) : NULL;
    return m->vals != NULL;
}

static void map_free(ptr_map *m, ag_tape *t)
{
    dg_release(t, m->keys, m->cap, sizeof *m->keys);
    dg_release(t, m->vals, m->cap, sizeof *m->vals);
}

static void map_clear(ptr_map *m) { memset(m->keys, 0, m->cap * sizeof *m->keys); }

static size_t map_slot(const ptr_map *m, const ag_tensor *k)
{
    uint64_t h = (uint64_t)(uintptr_t)k * 0x9E3779B97F4A7C15u;
    size_t i = (size_t)(h >> 29) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != k)
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int64_t map_get(const ptr_map *m, const ag_tensor *k)
{
    size_t i = map_slot(m, k);
    return m->keys[i] ? m->vals[i] : -1;
}

static void map_put(ptr_map *m, const ag_tensor *k, int64_t v)
{
    size_t i = map_slot(m, k);
    m->keys[i] = k;
    m->vals[i] = v;
}

/* ---------------------------------------------------------- structure */

/* Marks the entries that reach y (all of them for the whole tape). Returns
** the number kept. */
static int64_t mark_kept(ag_tape *t, ag_tensor *y, ptr_map *m, uint8_t *keep)
{
    size_t n = t->n_entries;
    for (size_t i = 0; i < n; i++)
        map_put(m, t->entries[i], (int64_t)i);
    if (!y) {
        memset(keep, 1, n);
        return (int64_t)n;
    }
    int64_t last = map_get(m, y);
    if (last < 0)
        return 0;
    keep[last] = 1;
    int64_t kept = 0;
    for (int64_t i = last; i >= 0; i--) {
        if (!keep[i])
            continue;
        kept++;
        ag_tensor *e = t->entries[i];
        for (int j = 0; j < e->nin; j++) {
            int64_t k = map_get(m, e->in[j]);
            if (k >= 0)
                keep[k] = 1;
        }
    }
    return kept;
}

static int64_t add_node(dg_graph *g, ptr_map *m, ag_tensor *x)
{
    int64_t id = map_get(m, x);
    if (id >= 0)
        return id;
    id = g->n_nodes++;
    map_put(m, x, id);
    dg_node *n = &g->nodes[id];
    n->x = x;
    n->op = -1;
    n->first_in = -1;
    if (x->flags & AGI_PARAM)
        n->kind = DG_PARAM;
    else if (x->flags & AGI_REQUIRES_GRAD)
        n->kind = DG_INPUT;
    else
        n->kind = DG_CONST;
    return id;
}

/* Numbers nodes in tape order: an op's inputs first (by slot), then its
** result; ops keep their tape order. */
static void number_nodes(dg_graph *g, ptr_map *m, const uint8_t *keep)
{
    ag_tape *t = g->t;
    map_clear(m);
    for (size_t i = 0; i < t->n_entries; i++) {
        if (!keep[i])
            continue;
        ag_tensor *e = t->entries[i];
        dg_op *op = &g->ops[g->n_ops];
        op->out = e;
        op->edge0 = g->n_edges;
        for (int j = 0; j < e->nin; j++) {
            dg_edge *ed = &g->edges[g->n_edges++];
            ed->from = add_node(g, m, e->in[j]);
            ed->op = g->n_ops;
            ed->slot = j;
            ed->next_in = -1;
        }
        op->node = add_node(g, m, e);
        g->nodes[op->node].kind = DG_RESULT;
        g->nodes[op->node].op = g->n_ops;
        g->n_ops++;
    }
    if (g->y) {
        g->y_node = add_node(g, m, g->y);
        g->nodes[g->y_node].output = true;
    } else
        for (int64_t i = 0; i < g->n_ops; i++)
            g->nodes[g->ops[i].node].output = true;
    if (!g->y)
        for (int64_t i = 0; i < g->n_edges; i++)
            g->nodes[g->edges[i].from].output = false;
}

/* ------------------------------------------------------- derivatives */

/* gin[i] = the vjp of 'out' applied to 'up', recording nothing. */
static bool pull_back(ag_tape *t, ag_tensor *out, ag_tensor *up, ag_tensor **gin)
{
    memset(gin, 0, (size_t)out->nin * sizeof *gin);
    ag_no_grad_begin(t);
    agi_pull_back(t, out, up, gin, agi_raw_backward(t));   /* not in a backward: the vjp */
    ag_no_grad_end(t);
    return t->status == AG_OK;
}

/* Local derivatives of every op whose result has one element. */
static bool local_derivatives(dg_graph *g)
{
    ag_tape *t = g->t;
    ag_tensor *gin[256];
    for (int64_t i = 0; i < g->n_ops; i++) {
        ag_tensor *out = g->ops[i].out;
        if (out->numel != 1)
            continue;
        ag_no_grad_begin(t);
        ag_tensor *one = ag_full(t, (ag_dtype)out->dtype, out->rank, out->shape, 1.0);
        ag_no_grad_end(t);
        if (!pull_back(t, out, one, gin))
            return false;
        for (int j = 0; j < out->nin; j++)
            g->edges[g->ops[i].edge0 + j].local = gin[j];
    }
    return true;
}

/* Replays backward over the kept ops as ag_backward does, keeping every
** contribution and every partial sum. Without y, each op pulls back the
** gradient stored on its result instead. */
static bool replay(dg_graph *g)
{
    ag_tape *t = g->t;
    size_t n = (size_t)g->n_nodes;
    ag_tensor **acc = dg_calloc(t, n, sizeof *acc);
    int64_t *tail = acc ? dg_calloc(t, n, sizeof *tail) : NULL;
    bool ok = tail != NULL;
    if (ok && g->y && (g->y->flags & AGI_REQUIRES_GRAD)) {
        ag_no_grad_begin(t);
        g->seed = ag_full(t, (ag_dtype)g->y->dtype, g->y->rank, g->y->shape, 1.0);
        ag_no_grad_end(t);
        acc[g->y_node] = g->seed;
        ok = t->status == AG_OK;
    }
    ag_tensor *gin[256];
    for (int64_t i = g->n_ops; ok && i-- > 0;) {
        dg_op *op = &g->ops[i];
        ag_tensor *up = g->y ? acc[op->node] : op->out->grad;
        if (!up)
            continue;   /* no gradient reached it: backward skips it too */
        op->upstream = up;
        op->step = ++g->n_steps;
        g->by_step[op->step - 1] = i;
        if (!pull_back(t, op->out, up, gin)) {
            ok = false;
            break;
        }
        for (int j = 0; j < op->out->nin && ok; j++) {
            int64_t ei = op->edge0 + j;
            dg_edge *e = &g->edges[ei];
            if (!gin[j] || !(op->out->in[j]->flags & AGI_REQUIRES_GRAD))
                continue;
            e->contrib = gin[j];
            if (acc[e->from]) {
                ag_no_grad_begin(t);
                acc[e->from] = ag_add(t, acc[e->from], gin[j]);
                ag_no_grad_end(t);
                ok = t->status == AG_OK;
            } else {
                acc[e->from] = gin[j];
            }
            e->running = acc[e->from];
            dg_node *nd = &g->nodes[e->from];
            if (nd->first_in < 0)
                nd->first_in = ei;
            else
                g->edges[tail[e->from]].next_in = ei;
            tail[e->from] = ei;
            nd->last_step = op->step;
        }
    }
    for (int64_t k = 0; ok && k < g->n_nodes; k++)
        g->nodes[k].grad = g->y ? acc[k] : g->nodes[k].x->grad;
    dg_release(t, acc, n, sizeof *acc);
    dg_release(t, tail, n, sizeof *tail);
    return ok;
}

/* ------------------------------------------------------------- public */

ag_status agi_dg_build(dg_graph *g, ag_tape *t, ag_tensor *y)
{
    memset(g, 0, sizeof *g);
    g->t = t;
    g->y = y;
    g->y_node = -1;
    size_t n = t->n_entries, items = 1;
    for (size_t i = 0; i < n; i++)
        items += 1 + t->entries[i]->nin;
    ptr_map m = {0};
    uint8_t *keep = NULL;
    if (!map_init(&m, t, items))
        goto fail;
    keep = dg_calloc(t, n, 1);
    if (!keep)
        goto fail;
    int64_t kept = mark_kept(t, y, &m, keep);
    size_t n_edges = 0;
    for (size_t i = 0; i < n; i++)
        n_edges += keep[i] ? t->entries[i]->nin : 0;
    g->cap_nodes = (size_t)kept + n_edges + 1;
    g->cap_ops = (size_t)kept;
    g->cap_edges = n_edges;
    g->nodes = dg_calloc(t, g->cap_nodes, sizeof *g->nodes);
    g->ops = g->nodes ? dg_calloc(t, g->cap_ops, sizeof *g->ops) : NULL;
    g->by_step = g->ops ? dg_calloc(t, g->cap_ops, sizeof *g->by_step) : NULL;
    g->edges = g->by_step ? dg_calloc(t, g->cap_edges, sizeof *g->edges) : NULL;
    if (!g->edges)
        goto fail;
    number_nodes(g, &m, keep);
    dg_release(t, keep, n, 1);
    map_free(&m, t);
    if (t->status != AG_OK)
        return AG_OK;   /* a failed tape: draw what was recorded, nothing more */
    /* Derivatives for the picture, not a pass of the user's: anomaly mode
    ** would report an infinite local derivative as an error of the tape. */
    bool anomaly = agi_anomaly_pause(t);
    bool drawn = local_derivatives(g) && replay(g);
    agi_anomaly_resume(t, anomaly);
    if (!drawn)
        return t->status;
    g->derivatives = true;
    return AG_OK;
fail:
    dg_release(t, keep, n, 1);
    map_free(&m, t);
    return t->status != AG_OK ? t->status : AG_ENOMEM;
}

void agi_dg_free(dg_graph *g)
{
    if (!g->t)
        return;
    ag_tape *t = g->t;
    dg_release(t, g->nodes, g->cap_nodes, sizeof *g->nodes);
    dg_release(t, g->ops, g->cap_ops, sizeof *g->ops);
    dg_release(t, g->by_step, g->cap_ops, sizeof *g->by_step);
    dg_release(t, g->edges, g->cap_edges, sizeof *g->edges);
    memset(g, 0, sizeof *g);
}
