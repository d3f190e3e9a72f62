/*
** html_layout.c: layers and orders for the HTML page's drawing (see
** html_layout.h): a Sugiyama-style layered layout, cut down to what a
** computation graph needs. Edges always point to a later layer, because the
** tape is already in topological order.
*/
#include "html_layout.h"

#include <stdlib.h>
#include <string.h>

enum { SWEEP_ROUNDS = 4 };

static void *hl_calloc(ag_tape *t, const char *who, size_t n, size_t size)
{
    if (n == 0)
        n = 1;
    void *p = n <= SIZE_MAX / size ? agi_realloc(t->alloc, t->alloc_ud, NULL, 0, n * size) : NULL;
    if (!p) {
        agi_error(t, AG_ENOMEM, "%s: out of memory for a layout of %zu items", who, n);
        return NULL;
    }
    memset(p, 0, n * size);
    return p;
}

static void hl_release(ag_tape *t, void *p, size_t n, size_t size)
{
    if (p)
        agi_realloc(t->alloc, t->alloc_ud, p, (n ? n : 1) * size, 0);
}

/* ------------------------------------------------------------- layers */

/* Layers of the real vertices (tensors, then ops) into 'layer'. */
static void assign_layers(const dg_graph *g, int64_t *layer)
{
    int64_t nt = g->n_nodes;
    for (int64_t i = 0; i < g->n_ops; i++) {
        const dg_op *op = &g->ops[i];
        int64_t L = 1;
        for (int j = 0; j < op->out->nin; j++) {
            int64_t from = g->edges[op->edge0 + j].from;
            if (layer[from] + 1 > L)
                L = layer[from] + 1;
        }
        layer[nt + i] = L;
        layer[op->node] = L + 1;
    }
    /* Leaves: just before their first consumer, not all in layer 0 where a
    ** constant used at the end would need an edge across the whole page. A
    ** leaf no op reads (y itself, a parameter) stays in layer 0. */
    for (int64_t v = 0; v < nt; v++)
        if (g->nodes[v].op < 0)
            layer[v] = -1;
    for (int64_t e = 0; e < g->n_edges; e++) {
        int64_t from = g->edges[e].from;
        int64_t want = layer[nt + g->edges[e].op] - 1;
        if (g->nodes[from].op < 0 && (layer[from] < 0 || want < layer[from]))
            layer[from] = want;
    }
    for (int64_t v = 0; v < nt; v++)
        if (layer[v] < 0)
            layer[v] = 0;
}

/* -------------------------------------------------------- the segments */

/* The edges between adjacent layers that the drawing is made of, with each
** vertex's neighbours in the layer above (pred) and below (succ) as CSR. */
typedef struct segments {
    int64_t n;
    int64_t *u, *v;                 /* u in layer r, v in layer r + 1 */
    int64_t *pred_start, *pred;     /* pred[pred_start[v] .. pred_start[v + 1]) */
    int64_t *succ_start, *succ;
} segments;

static void add_segment(segments *s, int64_t u, int64_t v)
{
    s->u[s->n] = u;
    s->v[s->n] = v;
    s->n++;
}

static void list_segments(const hl_layout *l, const dg_graph *g, segments *s)
{
    int64_t nt = l->n_tensors;
    for (int64_t e = 0; e < g->n_edges; e++) {
        int64_t prev = g->edges[e].from, to = nt + g->edges[e].op;
        int64_t span = l->layer[to] - l->layer[prev] - 1;
        for (int64_t k = 0; k < span; k++) {
            add_segment(s, prev, l->dummy0[e] + k);
            prev = l->dummy0[e] + k;
        }
        add_segment(s, prev, to);
    }
    for (int64_t i = 0; i < g->n_ops; i++)
        add_segment(s, nt + i, g->ops[i].node);
}

/* CSR of the segments' ends grouped by 'key' (v for pred lists, u for succ). */
static void index_segments(int64_t n_vertices, const segments *s, const int64_t *key,
                           const int64_t *other, int64_t *start, int64_t *list)
{
    for (int64_t i = 0; i < s->n; i++)
        start[key[i] + 1]++;
    for (int64_t v = 0; v < n_vertices; v++)
        start[v + 1] += start[v];
    for (int64_t i = 0; i < s->n; i++)
        list[start[key[i]]++] = other[i];
    for (int64_t v = n_vertices; v > 0; v--)
        start[v] = start[v - 1];
    start[0] = 0;
}

/* ---------------------------------------------------------- crossings */

typedef struct pair {
    int64_t a, b;
} pair;

static int by_pair(const void *x, const void *y)
{
    const pair *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    return p->b < q->b ? -1 : p->b > q->b;
}

/* Crossings between each pair of adjacent layers: segments sorted by their
** upper end, then the inversions among their lower ends, counted with a
** Fenwick tree over the lower layer's positions. 'pairs' holds s->n items
** and 'tree' one more than the widest layer. */
static int64_t count_crossings(const hl_layout *l, const segments *s, const int64_t *seg_start,
                               const int64_t *seg_of, pair *pairs, int64_t *tree)
{
    int64_t total = 0;
    for (int64_t r = 0; r + 1 < l->n_layers; r++) {
        int64_t n = 0;
        for (int64_t k = seg_start[r]; k < seg_start[r + 1]; k++) {
            int64_t i = seg_of[k];
            pairs[n++] = (pair){l->pos[s->u[i]], l->pos[s->v[i]]};
        }
        if (n < 2)
            continue;
        qsort(pairs, (size_t)n, sizeof *pairs, by_pair);
        int64_t width = l->layer_start[r + 2] - l->layer_start[r + 1];
        memset(tree, 0, (size_t)(width + 1) * sizeof *tree);
        for (int64_t k = 0; k < n; k++) {
            int64_t seen_at_or_below = 0;
            for (int64_t j = pairs[k].b + 1; j > 0; j -= j & -j)
                seen_at_or_below += tree[j];
            total += k - seen_at_or_below;
            for (int64_t j = pairs[k].b + 1; j <= width; j += j & -j)
                tree[j]++;
        }
    }
    return total;
}

/* ------------------------------------------------------------ ordering */

typedef struct keyed {
    double key;
    int64_t pos, v;
} keyed;

static int by_key(const void *x, const void *y)
{
    const keyed *p = x, *q = y;
    if (p->key != q->key)
        return p->key < q->key ? -1 : 1;
    return p->pos < q->pos ? -1 : p->pos > q->pos;
}

/* Reorders layer r by the mean position of each vertex's neighbours in the
** adjacent layer ('start'/'list': preds or succs); a vertex without any
** keeps its place as its key. */
static void sweep_layer(hl_layout *l, int64_t r, const int64_t *start, const int64_t *list,
                        keyed *scratch)
{
    int64_t n = l->layer_start[r + 1] - l->layer_start[r];
    const int64_t *m = l->members + l->layer_start[r];
    for (int64_t k = 0; k < n; k++) {
        int64_t v = m[k], deg = start[v + 1] - start[v];
        double sum = 0;
        for (int64_t j = start[v]; j < start[v + 1]; j++)
            sum += (double)l->pos[list[j]];
        scratch[k] = (keyed){deg ? sum / (double)deg : (double)l->pos[v], l->pos[v], v};
    }
    qsort(scratch, (size_t)n, sizeof *scratch, by_key);
    for (int64_t k = 0; k < n; k++) {
        l->pos[scratch[k].v] = k;
        l->members[l->layer_start[r] + k] = scratch[k].v;
    }
}

/* ------------------------------------------------------------- public */

ag_status agi_hl_build(hl_layout *l, const dg_graph *g, const char *who)
{
    ag_tape *t = g->t;
    memset(l, 0, sizeof *l);
    l->t = t;
    l->n_tensors = g->n_nodes;
    l->n_ops = g->n_ops;
    int64_t n_real = g->n_nodes + g->n_ops;
    l->cap_edges = (size_t)g->n_edges;
    l->dummy0 = hl_calloc(t, who, l->cap_edges, sizeof *l->dummy0);
    int64_t *real_layer = l->dummy0 ? hl_calloc(t, who, (size_t)n_real, sizeof *real_layer) : NULL;
    if (!real_layer)
        return t->status;
    assign_layers(g, real_layer);
    int64_t n_vertices = n_real, n_segments = g->n_ops;
    for (int64_t e = 0; e < g->n_edges; e++) {
        int64_t span = real_layer[l->n_tensors + g->edges[e].op] - real_layer[g->edges[e].from] - 1;
        l->dummy0[e] = span > 0 ? n_vertices : -1;
        n_vertices += span;
        n_segments += span + 1;
    }
    l->n_vertices = n_vertices;
    l->cap_vertices = (size_t)n_vertices;
    l->layer = hl_calloc(t, who, l->cap_vertices, sizeof *l->layer);
    l->pos = l->layer ? hl_calloc(t, who, l->cap_vertices, sizeof *l->pos) : NULL;
    l->members = l->pos ? hl_calloc(t, who, l->cap_vertices, sizeof *l->members) : NULL;
    if (!l->members) {
        hl_release(t, real_layer, (size_t)n_real, sizeof *real_layer);
        return t->status;
    }
    memcpy(l->layer, real_layer, (size_t)n_real * sizeof *real_layer);
    hl_release(t, real_layer, (size_t)n_real, sizeof *real_layer);
    for (int64_t e = 0; e < g->n_edges; e++) {
        int64_t a = l->layer[g->edges[e].from], b = l->layer[l->n_tensors + g->edges[e].op];
        for (int64_t k = 0; l->dummy0[e] >= 0 && k < b - a - 1; k++)
            l->layer[l->dummy0[e] + k] = a + 1 + k;
    }
    for (int64_t v = 0; v < n_vertices; v++)
        if (l->layer[v] + 1 > l->n_layers)
            l->n_layers = l->layer[v] + 1;

    /* Members by layer, each layer first in vertex order (tape order). */
    size_t nl = (size_t)l->n_layers + 2, ns = (size_t)n_segments, nv = (size_t)n_vertices + 1;
    l->layer_start = hl_calloc(t, who, nl, sizeof *l->layer_start);
    segments s = {0};
    s.u = l->layer_start ? hl_calloc(t, who, ns, sizeof *s.u) : NULL;
    s.v = s.u ? hl_calloc(t, who, ns, sizeof *s.v) : NULL;
    s.pred_start = s.v ? hl_calloc(t, who, nv, sizeof *s.pred_start) : NULL;
    s.pred = s.pred_start ? hl_calloc(t, who, ns, sizeof *s.pred) : NULL;
    s.succ_start = s.pred ? hl_calloc(t, who, nv, sizeof *s.succ_start) : NULL;
    s.succ = s.succ_start ? hl_calloc(t, who, ns, sizeof *s.succ) : NULL;
    int64_t *seg_start = s.succ ? hl_calloc(t, who, nl, sizeof *seg_start) : NULL;
    int64_t *seg_of = seg_start ? hl_calloc(t, who, ns, sizeof *seg_of) : NULL;
    int64_t *best = seg_of ? hl_calloc(t, who, nv, sizeof *best) : NULL;
    int64_t *tree = best ? hl_calloc(t, who, nv, sizeof *tree) : NULL;
    pair *pairs = tree ? hl_calloc(t, who, ns, sizeof *pairs) : NULL;
    keyed *scratch = pairs ? hl_calloc(t, who, nv, sizeof *scratch) : NULL;
    if (scratch) {
        for (int64_t v = 0; v < n_vertices; v++)
            l->layer_start[l->layer[v] + 1]++;
        for (int64_t r = 0; r < l->n_layers; r++)
            l->layer_start[r + 1] += l->layer_start[r];
        l->layer_start[l->n_layers + 1] = l->layer_start[l->n_layers];
        int64_t *fill = tree;   /* free until the crossings are counted */
        memcpy(fill, l->layer_start, (size_t)l->n_layers * sizeof *fill);
        for (int64_t v = 0; v < n_vertices; v++) {
            l->pos[v] = fill[l->layer[v]] - l->layer_start[l->layer[v]];
            l->members[fill[l->layer[v]]++] = v;
        }
        list_segments(l, g, &s);
        index_segments(n_vertices, &s, s.v, s.u, s.pred_start, s.pred);
        index_segments(n_vertices, &s, s.u, s.v, s.succ_start, s.succ);
        /* Segments grouped by their upper layer, for counting crossings. */
        for (int64_t i = 0; i < s.n; i++)
            seg_start[l->layer[s.u[i]] + 1]++;
        for (int64_t r = 0; r < l->n_layers; r++)
            seg_start[r + 1] += seg_start[r];
        memcpy(fill, seg_start, (size_t)l->n_layers * sizeof *fill);
        for (int64_t i = 0; i < s.n; i++)
            seg_of[fill[l->layer[s.u[i]]]++] = i;

        int64_t least = count_crossings(l, &s, seg_start, seg_of, pairs, tree);
        memcpy(best, l->pos, (size_t)n_vertices * sizeof *best);
        for (int round = 0; round < SWEEP_ROUNDS && least > 0; round++) {
            for (int down = 1; down >= 0 && least > 0; down--) {
                if (down)
                    for (int64_t r = 1; r < l->n_layers; r++)
                        sweep_layer(l, r, s.pred_start, s.pred, scratch);
                else
                    for (int64_t r = l->n_layers - 1; r-- > 0;)
                        sweep_layer(l, r, s.succ_start, s.succ, scratch);
                int64_t c = count_crossings(l, &s, seg_start, seg_of, pairs, tree);
                if (c < least) {
                    least = c;
                    memcpy(best, l->pos, (size_t)n_vertices * sizeof *best);
                }
            }
        }
        memcpy(l->pos, best, (size_t)n_vertices * sizeof *best);
        for (int64_t v = 0; v < n_vertices; v++)
            l->members[l->layer_start[l->layer[v]] + l->pos[v]] = v;
        l->crossings = least;
    }
    hl_release(t, s.u, ns, sizeof *s.u);
    hl_release(t, s.v, ns, sizeof *s.v);
    hl_release(t, s.pred_start, nv, sizeof *s.pred_start);
    hl_release(t, s.pred, ns, sizeof *s.pred);
    hl_release(t, s.succ_start, nv, sizeof *s.succ_start);
    hl_release(t, s.succ, ns, sizeof *s.succ);
    hl_release(t, seg_start, nl, sizeof *seg_start);
    hl_release(t, seg_of, ns, sizeof *seg_of);
    hl_release(t, best, nv, sizeof *best);
    hl_release(t, tree, nv, sizeof *tree);
    hl_release(t, pairs, ns, sizeof *pairs);
    hl_release(t, scratch, nv, sizeof *scratch);
    return scratch ? AG_OK : t->status;
}

void agi_hl_free(hl_layout *l)
{
    if (!l->t)
        return;
    ag_tape *t = l->t;
    hl_release(t, l->dummy0, l->cap_edges, sizeof *l->dummy0);
    hl_release(t, l->layer, l->cap_vertices, sizeof *l->layer);
    hl_release(t, l->pos, l->cap_vertices, sizeof *l->pos);
    hl_release(t, l->members, l->cap_vertices, sizeof *l->members);
    hl_release(t, l->layer_start, (size_t)l->n_layers + 2, sizeof *l->layer_start);
    memset(l, 0, sizeof *l);
}
