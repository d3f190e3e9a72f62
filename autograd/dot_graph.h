/*
** dot_graph.h: the model the DOT writer draws, private to dot*.c. It holds
** the tensors and recorded ops of a tape (or of the part of it that reaches
** one output) and, when it can compute them, each op's local derivatives and
** the gradients of a backward pass replayed step by step.
*/
#ifndef AG_DOT_GRAPH_H
#define AG_DOT_GRAPH_H

#include "internal.h"

#include <math.h>

typedef enum dg_kind {
    DG_RESULT,   /* made by a recorded op */
    DG_INPUT,    /* a tape leaf that requires grad */
    DG_PARAM,    /* a parameter */
    DG_CONST     /* requires no grad: a constant, or a result of untracked values */
} dg_kind;

typedef struct dg_node {
    ag_tensor *x;
    dg_kind kind;
    bool output;
    int64_t op;            /* the op that made it, or -1 */
    ag_tensor *grad;       /* its gradient once the pass is over, or NULL */
    int64_t first_in;      /* its first contribution (an edge), or -1 */
    int64_t last_step;     /* the step after which its gradient is complete */
} dg_node;

/* Input 'slot' of an op: data flows from node 'from' into the op. */
typedef struct dg_edge {
    int64_t from;
    int64_t op;
    int slot;
    ag_tensor *local;      /* d out / d in, when the op's result has one element */
    ag_tensor *contrib;    /* the op's gradient pulled back to this input, or NULL */
    ag_tensor *running;    /* the input's gradient after adding 'contrib' */
    int64_t next_in;       /* the next contribution to the same node, or -1 */
} dg_edge;

typedef struct dg_op {
    ag_tensor *out;
    int64_t node;          /* the node of its result */
    int64_t edge0;         /* its inputs are edges edge0 .. edge0 + nin - 1 */
    int64_t step;          /* the backward step that replays it (1 first), 0 if none */
    ag_tensor *upstream;   /* the gradient of its result it pulled back, or NULL */
} dg_op;

typedef struct dg_graph {
    ag_tape *t;
    ag_tensor *y;          /* the output, or NULL for the whole tape */
    dg_node *nodes;
    dg_op *ops;            /* in tape order */
    dg_edge *edges;
    int64_t *by_step;      /* by_step[s - 1]: the op replayed at step s */
    int64_t n_nodes, n_ops, n_edges, n_steps;
    size_t cap_nodes, cap_ops, cap_edges;   /* allocated lengths */
    int64_t y_node;        /* y's node, or -1 */
    ag_tensor *seed;       /* y's gradient before any step, or NULL */
    bool derivatives;      /* local derivatives and contributions were computed */
} dg_graph;

/* Builds the graph of 't' (y == NULL) or of what reaches 'y', with local
** derivatives and contributions: from a backward pass replayed from y, or
** from the stored gradients when y is NULL. 'y' must have been checked (on
** 't' or a parameter). The tensors it makes live on the tape's arena.
** Returns AG_OK, or records an error on 't' and returns it; on a tape
** already in error it builds the structure alone and returns AG_OK. Free
** with agi_dg_free in every case. */
ag_status agi_dg_build(dg_graph *g, ag_tape *t, ag_tensor *y);
void agi_dg_free(dg_graph *g);

/* The length of the valid UTF-8 character at s (XML's characters: no
** surrogates, U+FFFE or U+FFFF), or 0 for a byte that does not start one
** (dot.c). Names are escaped through it. */
int agi_utf8_char(const unsigned char *s);

/* How many leading values a large tensor's summary shows (DOT and HTML). */
enum { DG_SUMMARY_VALUES = 3 };

/* The Euclidean norm of x's values, for the one-line summary of a tensor too
** large to print: summed in double (NaN stays NaN; a sum past DBL_MAX reads
** as inf, which is what a picture should say). */
static inline double agi_dg_norm(const ag_tensor *x)
{
    double s = 0;
    for (int64_t i = 0; i < x->numel; i++) {
        double v = agi_get(x, i);
        s += v * v;
    }
    return sqrt(s);
}

#endif
