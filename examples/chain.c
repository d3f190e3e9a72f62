/*
** chain.c: the four-node chain A -> B -> C -> D of the documents, trained by
** gradient descent. B = ab*A, C = bc*B, D = cd*C, so D = (ab*bc*cd)*A: one
** number, the product, must fit three (A, D) pairs as well as it can.
**
**     chain                  the A->B->C->D chain, 4 nodes
**     chain --nodes 26       A->B->...->Z, 25 weights
**     chain --steps 200 --lr 1e-5 --dot chain.dot
**     chain --html chain.html   a page that steps through backprop (arrow keys)
*/
#include "autograd.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_NODES = 26, PAIRS = 3 };

static const double A_VALUES[PAIRS] = {3, 10, 7};
static const double D_TARGETS[PAIRS] = {17, 200, -17};

typedef struct options {
    int nodes;
    int steps;
    double lr;
    const char *dot;
    const char *html;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: chain [--nodes N] [--steps S] [--lr RATE] [--dot FILE] [--html FILE]\n"
            "Trains the chain A -> B -> C -> D (B = ab*A, C = bc*B, D = cd*C) by gradient\n"
            "descent on the pairs (A, D) = (3, 17), (10, 200), (7, -17) with mean squared error.\n"
            "  --nodes N   chain length, 2..26 (26 gives A -> ... -> Z); default 4\n"
            "  --steps S   gradient-descent steps; default 300\n"
            "  --lr RATE   learning rate; default chosen for the chain length\n"
            "  --dot FILE  write the graph of the first pair with the chain-rule view\n"
            "  --html FILE write a web page that steps through the first pair's forward and\n"
            "              backward pass (arrow keys, buttons, a slider; opens from disk)\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){4, 300, 0.0, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "chain: %s needs a value\n", a);
            return -1;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--nodes"))
            o->nodes = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--steps"))
            o->steps = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--lr"))
            o->lr = strtod(v, &end);
        else if (!strcmp(a, "--dot"))
            o->dot = v, end = (char *)v + strlen(v);
        else if (!strcmp(a, "--html"))
            o->html = v, end = (char *)v + strlen(v);
        else {
            fprintf(stderr, "chain: unknown option %s (try --help)\n", a);
            return -1;
        }
        if (!end || *end || end == v) {
            fprintf(stderr, "chain: %s: '%s' is not a valid value\n", a, v);
            return -1;
        }
    }
    if (o->nodes < 2 || o->nodes > MAX_NODES || o->steps < 0 || o->lr < 0) {
        fprintf(stderr, "chain: --nodes must be 2..26, --steps and --lr not negative\n");
        return -1;
    }
    return 0;
}

/* Node k is letter 'A' + k; weight k joins node k to node k+1 ("ab", "bc"). */
static void weight_name(int k, char name[3])
{
    name[0] = (char)('a' + k);
    name[1] = (char)('a' + k + 1);
    name[2] = '\0';
}

/* Records the chain for all pairs at once; nodes[k] receives node k. */
static ag_tensor *record_loss(ag_tape *t, int n_weights, ag_tensor **w, ag_tensor **nodes)
{
    ag_tensor *x = ag_tensor_from_f64(t, 1, (int64_t[]){PAIRS}, A_VALUES);
    ag_set_name(x, "A");
    ag_requires_grad(x);   /* so that dL/dA shows in the gradient table */
    nodes[0] = x;
    for (int k = 0; k < n_weights; k++) {
        x = ag_mul(t, w[k], x);
        ag_set_name(x, (char[]){(char)('B' + k), '\0'});
        nodes[k + 1] = x;
    }
    ag_tensor *target = ag_tensor_from_f64(t, 1, (int64_t[]){PAIRS}, D_TARGETS);
    ag_tensor *loss = ag_mean(t, ag_square(t, ag_sub(t, x, target)));
    ag_set_name(loss, "L");
    return loss;
}

/* The graph of the first pair alone (A = 3, D = 17), so that every node is
** a scalar and every edge can show its local derivative, as DOT (--dot) or
** as a step-through page (--html). The writer replays backward itself and
** leaves the weights' gradients alone. */
static int write_graph(const char *path, bool html, int n_weights, ag_tensor **w)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_scalar(t, AG_F64, A_VALUES[0]);
    ag_set_name(x, "A");
    for (int k = 0; k < n_weights; k++) {
        x = ag_mul(t, w[k], x);
        ag_set_name(x, (char[]){(char)('B' + k), '\0'});
    }
    ag_tensor *loss = ag_square(t, ag_sub(t, x, ag_scalar(t, AG_F64, D_TARGETS[0])));
    ag_set_name(loss, "L");
    ag_dot_options opt = {.title = "L = (D - 17)^2 for A = 3: the chain rule, edge by edge"};
    if (html)
        opt.title = "L = (D - 17)^2 for A = 3: backprop, step by step";
    ag_status st = !t     ? AG_ENOMEM
                   : html ? ag_html_save(t, loss, &opt, path)
                          : ag_dot_save(t, loss, &opt, path);
    const char *flag = html ? "--html" : "--dot";
    if (st != AG_OK)
        fprintf(stderr, "chain: %s %s: %s\n", flag, path, t ? ag_tape_errmsg(t) : "out of memory");
    else if (html)
        printf("Step-through page of the first pair written to %s\n", path);
    else
        printf("Graph of the first pair written to %s\n", path);
    ag_tape_free(t);
    return st == AG_OK ? 0 : -1;
}

static double product(int n_weights, ag_tensor **w)
{
    double p = 1;
    for (int k = 0; k < n_weights; k++)
        p *= ag_item(w[k]);
    return p;
}

/* The first step's gradients by the chain rule, written out by hand:
** dL/dw_k = mean_i 2 (D_i - T_i) * (product of the weights after k) * node_k,i */
static void print_first_step(int n_weights, ag_tensor **w, ag_tensor **nodes)
{
    double p = product(n_weights, w);
    printf("First step: gradients from the tape beside the chain rule by hand\n");
    printf("  %-8s %16s %16s\n", "weight", "tape", "by hand");
    for (int k = n_weights - 1; k >= 0; k--) {
        double after = 1;
        for (int j = k + 1; j < n_weights; j++)
            after *= ag_item(w[j]);
        double hand = 0;
        for (int i = 0; i < PAIRS; i++) {
            double d = p * A_VALUES[i];
            hand += 2 * (d - D_TARGETS[i]) * after * ag_get(nodes[k], i) / PAIRS;
        }
        char name[3];
        weight_name(k, name);
        printf("  dL/d%-4s %16.10g %16.10g\n", name, ag_grad_item(w[k]), hand);
    }
}

/* How the gradient reaching each node changes along the chain. */
static void print_gradient_sizes(int n_nodes, ag_tensor **nodes)
{
    printf("Gradient size along the chain (first step, |dL/dnode| summed over the pairs)\n");
    double first = 0, last = 0;
    for (int k = n_nodes - 1; k >= 0; k--) {
        double s = 0;
        ag_tensor *g = ag_grad(nodes[k]);
        for (int i = 0; g && i < PAIRS; i++)
            s += fabs(ag_get(g, i));
        printf("  %c %14.6g\n", 'A' + k, s);
        if (k == n_nodes - 1)
            last = s;
        if (k == 0)
            first = s;
    }
    printf("  each step back multiplies it by the weight crossed: |dL/dA| / |dL/d%c| = %.6g\n",
           'A' + n_nodes - 1, first / last);
}

int main(int argc, char **argv)
{
    options o;
    if (parse_args(argc, argv, &o) != 0)
        return 2;
    int n_weights = o.nodes - 1;
    /* The documents start at ab = 0.5, bc = 1.5, cd = 2; longer chains start
    ** every weight at 0.9, so the gradient visibly shrinks towards A. */
    const double start[3] = {0.5, 1.5, 2.0};
    ag_tensor *w[MAX_NODES], *nodes[MAX_NODES];
    for (int k = 0; k < n_weights; k++) {
        w[k] = ag_param_scalar(AG_F64, o.nodes == 4 ? start[k] : 0.9);
        if (!w[k]) {
            fprintf(stderr, "chain: out of memory\n");
            return 1;
        }
        char name[3];
        weight_name(k, name);
        ag_set_name(w[k], name);
    }
    /* A stable step size. The loss's curvature in the product p is
    ** 2 sum A^2 / 3 (about 105); near the optimum q each of the n weights is
    ** q^(1/n) and sees that curvature scaled by (q / w)^2, so gradient descent
    ** is stable below 2 / (105 n q^(2 - 2/n)). Take half of that. */
    double lr = o.lr > 0 ? o.lr
                         : 1.0 / (105.0 * n_weights * pow(1932.0 / 158.0, 2.0 - 2.0 / n_weights));

    if ((o.dot && write_graph(o.dot, false, n_weights, w) != 0) ||
        (o.html && write_graph(o.html, true, n_weights, w) != 0))
        return 1;
    ag_tape *t = ag_tape_new();
    if (!t) {
        fprintf(stderr, "chain: out of memory\n");
        return 1;
    }
    double loss = NAN;
    for (int step = 0; step <= o.steps; step++) {
        ag_tape_reset(t);
        ag_zero_grads(n_weights, w);
        ag_tensor *l = record_loss(t, n_weights, w, nodes);
        ag_backward(t, l);
        if (ag_tape_status(t) != AG_OK) {
            fprintf(stderr, "chain: %s\n", ag_tape_errmsg(t));
            return 1;
        }
        loss = ag_item(l);
        if (step == 0) {
            print_first_step(n_weights, w, nodes);
            print_gradient_sizes(o.nodes, nodes);
            printf("Training (lr %g)\n", lr);
        }
        if (step % (o.steps / 10 > 0 ? o.steps / 10 : 1) == 0 || step == o.steps)
            printf("  step %5d  loss %.6f\n", step, loss);
        if (step == o.steps)
            break;
        for (int k = 0; k < n_weights; k++)
            ag_set(w[k], 0, ag_item(w[k]) - lr * ag_grad_item(w[k]));
    }

    printf("Learned weights\n");
    for (int k = 0; k < n_weights; k++) {
        char name[3];
        weight_name(k, name);
        printf("  %s = %.6f\n", name, ag_item(w[k]));
    }
    double sad = 0, saa = 0;
    for (int i = 0; i < PAIRS; i++) {
        sad += A_VALUES[i] * D_TARGETS[i];
        saa += A_VALUES[i] * A_VALUES[i];
    }
    double best = sad / saa, min_loss = 0;
    for (int i = 0; i < PAIRS; i++)
        min_loss += (best * A_VALUES[i] - D_TARGETS[i]) * (best * A_VALUES[i] - D_TARGETS[i]) / PAIRS;
    printf("product of the weights   %.6f\n", product(n_weights, w));
    printf("least-squares optimum    %.6f (= sum A*D / sum A^2 = %g/%g)\n", best, sad, saa);
    printf("final loss               %.6f\n", loss);
    printf("minimal loss             %.6f\n", min_loss);
    printf("Why not zero: D = (product of weights) * A is a line through the origin, and no\n"
           "such line passes through (3, 17), (10, 200) and (7, -17) at once.\n");

    for (int k = 0; k < n_weights; k++)
        ag_param_free(w[k]);
    ag_tape_free(t);
    return 0;
}
