/*
** html_layout.h: a layered drawing of a dot_graph.h graph for the HTML page,
** private to html*.c. It decides which column (layer) each tensor and op
** goes in and their order within it; the page turns that into coordinates
** once it has measured its text. No Graphviz is involved.
*/
#ifndef AG_HTML_LAYOUT_H
#define AG_HTML_LAYOUT_H

#include "dot_graph.h"

/* Vertices: tensor node i is vertex i, op i is vertex n_tensors + i, and the
** dummies that carry an edge across the layers it skips come after. An
** input edge from layer a into an op in layer b > a + 1 has b - a - 1
** dummies, consecutive vertices from dummy0[edge], one per layer between. */
typedef struct hl_layout {
    ag_tape *t;                /* whose allocator holds the arrays */
    int64_t n_tensors, n_ops, n_vertices, n_layers;
    int64_t *layer;            /* per vertex: its layer, 0 first */
    int64_t *pos;              /* per vertex: its place in its layer, 0 first */
    int64_t *dummy0;           /* per input edge: its first dummy, or -1 */
    int64_t *layer_start;      /* layer r holds members[layer_start[r] .. layer_start[r+1]) */
    int64_t *members;          /* vertices by layer, then by pos */
    int64_t crossings;         /* edge crossings of the chosen order */
    size_t cap_vertices, cap_edges;
} hl_layout;

/* Lays out g: layer = longest path from the inputs (a result one layer after
** its op, an op one after its latest input), then each leaf (input,
** parameter, constant) moved up to the layer just before its first
** consumer, so that weights and constants sit beside the op that uses them.
** Within layers, a few barycenter sweeps (down, then up) reorder vertices to
** reduce crossings, keeping the best order seen. Deterministic: the same
** graph gives the same layout. Returns AG_OK, or records AG_ENOMEM (naming
** 'who') on the tape and returns it. Free with agi_hl_free in every case. */
ag_status agi_hl_build(hl_layout *l, const dg_graph *g, const char *who);
void agi_hl_free(hl_layout *l);

#endif
