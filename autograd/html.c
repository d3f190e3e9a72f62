/*
** html.c: one self-contained HTML page that steps through a computation:
** the forward pass, then the backward pass op by op with each step's chain
** rule in words and numbers. The graph and its replayed gradients come from
** dot_graph.c, the layers and orders of the drawing from html_layout.c; this
** file writes them as JSON into the page template (html_page.html, embedded
** at build time), whose script draws the SVG. Every string in the JSON goes
** through put_json, the one place that escapes.
*/
#include "html_layout.h"

#include <errno.h>
#include <math.h>
#include <string.h>

extern const char agi_html_template[];   /* html_page.html, made by embed.py */

enum { SMALL = 16, MAX_TERMS = 8, DEFAULT_DIGITS = 6, SUMMARY_DIGITS = 3 };

#define TIMES "\xc3\x97"     /* U+00D7 multiplication sign */
#define PARTIAL "\xe2\x88\x82" /* U+2202 partial differential */
#define ARROW "\xe2\x86\x92"   /* U+2192 rightwards arrow */
#define ELLIPSIS "\xe2\x80\xa6"

/* ----------------------------------------------------- JSON strings */

/* The page being written: the stream, and what its texts need. */
typedef struct page {
    FILE *f;
    const dg_graph *g;
    int digits;
    int64_t *rank_in;     /* per edge: its place among its node's contributions, 1 first */
    int64_t *n_in;        /* per node: how many contributions it receives */
} page;

/* Text inside a JSON string in a <script> element. Besides JSON's own
** escapes, '<', '>' and '&' become \u escapes so that no name can close the
** element or open a comment; U+2028/9 too, for older script engines; bytes
** that are not UTF-8 (or are XML-invalid) become U+FFFD. The script puts
** every text into the page with textContent, never as markup. */
static void put_json(page *p, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    FILE *f = p->f;
    while (*s) {
        unsigned c = *s;
        int n = 1;
        if (c == '"' || c == '\\')
            fputc('\\', f), fputc((int)c, f);
        else if (c < 0x20 || c == 0x7F || c == '<' || c == '>' || c == '&')
            fprintf(f, "\\u%04x", c);
        else if (c < 0x80)
            fputc((int)c, f);
        else if ((n = agi_utf8_char(s)) == 3 && s[0] == 0xE2 && s[1] == 0x80 &&
                 (s[2] == 0xA8 || s[2] == 0xA9))
            fprintf(f, "\\u%04x", s[2] == 0xA8 ? 0x2028u : 0x2029u);
        else if (n > 0)
            fwrite(s, 1, (size_t)n, f);
        else
            n = 1, fputs("\\ufffd", f);
        s += n;
    }
}

/* Text inside HTML elements (the page's <title>). */
static void put_html(FILE *f, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        int n = 1;
        if (c == '&')
            fputs("&amp;", f);
        else if (c == '<')
            fputs("&lt;", f);
        else if (c == '>')
            fputs("&gt;", f);
        else if (c == '"')
            fputs("&quot;", f);
        else if (c == '\'')
            fputs("&#39;", f);
        else if (c < 0x20 || c == 0x7F)
            fputs("&#xFFFD;", f);
        else if (c < 0x80)
            fputc((int)c, f);
        else if ((n = agi_utf8_char(s)) > 0)
            fwrite(s, 1, (size_t)n, f);
        else
            n = 1, fputs("&#xFFFD;", f);
        s += n;
    }
}

/* A number in 'digits' significant digits: "nan", "inf", "-inf" spelled out
** and -0 shown as 0, as the DOT labels do. */
static void put_num_digits(page *p, double v, int digits)
{
    char b[40];
    if (isnan(v))
        strcpy(b, "nan");
    else if (isinf(v))
        strcpy(b, v > 0 ? "inf" : "-inf");
    else if (v == 0)
        strcpy(b, "0");
    else
        snprintf(b, sizeof b, "%.*g", digits, v);
    fputs(b, p->f);
}

/* A number in the page's digits. */
static void put_num(page *p, double v) { put_num_digits(p, v, p->digits); }

/* A factor in a product: negative numbers in parentheses. */
static void put_factor(page *p, double v)
{
    fputs(v < 0 ? "(" : "", p->f);
    put_num(p, v);
    fputs(v < 0 ? ")" : "", p->f);
}

static void put_shape(page *p, const ag_tensor *x)
{
    char shape[160];
    agi_shape_str(shape, sizeof shape, x->rank, x->shape);
    fputs(shape, p->f);
}

static void put_axis(page *p, const ag_tensor *x, int axis, int64_t offset)
{
    int64_t n = x->shape[axis], stride = 1;
    for (int i = axis + 1; i < x->rank; i++)
        stride *= x->shape[i];
    fputc('[', p->f);
    for (int64_t i = 0; i < n; i++) {
        if (axis == x->rank - 1)
            put_num(p, agi_get(x, offset + i));
        else
            put_axis(p, x, axis + 1, offset + i * stride);
        if (i + 1 < n)
            fputs(", ", p->f);
    }
    fputc(']', p->f);
}

/* A tensor's values: all of them up to SMALL, else a one-line summary (the
** norm, the first few values, the count) so that a layer of 784 x 30
** weights stays one readable line; a summary is a glance, so its numbers
** take at most SUMMARY_DIGITS digits. */
static void put_values(page *p, const ag_tensor *x)
{
    int digits = p->digits < SUMMARY_DIGITS ? p->digits : SUMMARY_DIGITS;
    if (x->rank == 0) {
        put_num(p, agi_get(x, 0));
    } else if (x->numel <= SMALL) {
        put_axis(p, x, 0, 0);
    } else {
        fputs("norm ", p->f);
        put_num_digits(p, agi_dg_norm(x), digits);
        fputs(": ", p->f);
        for (int64_t i = 0; i < DG_SUMMARY_VALUES; i++) {
            put_num_digits(p, agi_get(x, i), digits);
            fputs(", ", p->f);
        }
        fprintf(p->f, ELLIPSIS " (%lld values)", (long long)x->numel);
    }
}

static bool is_scalar(const ag_tensor *x) { return x && x->numel == 1; }

/* ------------------------------------------------------------ names */

static bool unnamed_constant(const dg_node *n)
{
    return !n->x->name && n->kind == DG_CONST && n->x->numel == 1;
}

/* How node 'id' is called on the page: its name; an unnamed scalar constant
** by its value; any other unnamed tensor by its node number, "#5". */
static void put_label(page *p, int64_t id)
{
    const dg_node *n = &p->g->nodes[id];
    if (n->x->name)
        put_json(p, n->x->name);
    else if (unnamed_constant(n))
        put_num(p, agi_get(n->x, 0));
    else
        fprintf(p->f, "#%lld", (long long)id);
}

/* The label inside a formula, in parentheses when it is not one word
** ("x*w", "-3") so that "d(x*w)/dx" reads right. */
static void put_symbol(page *p, int64_t id)
{
    const ag_tensor *x = p->g->nodes[id].x;
    bool plain = true;
    if (x->name)
        for (const char *c = x->name; *c && plain; c++)
            plain = (unsigned char)*c >= 0x80 || (*c >= 'a' && *c <= 'z') ||
                    (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' ||
                    *c == '.';
    else
        plain = !unnamed_constant(&p->g->nodes[id]) || agi_get(x, 0) >= 0;
    fputs(plain ? "" : "(", p->f);
    put_label(p, id);
    fputs(plain ? "" : ")", p->f);
}

static void put_partial(page *p, int64_t out, int64_t in)
{
    fputs(PARTIAL, p->f);
    put_symbol(p, out);
    fputs("/" PARTIAL, p->f);
    put_symbol(p, in);
}

static const char *kind_name(const dg_node *n)
{
    static const char *const names[] = {
        [DG_RESULT] = "result", [DG_INPUT] = "input", [DG_PARAM] = "parameter",
        [DG_CONST] = "constant",
    };
    return names[n->kind];
}

/* ---------------------------------------------------------- formulas */

/* The symbol of the ops written between their operands. */
static const char *infix(const ag_op *op)
{
    static const struct {
        const char *op, *sign;
    } signs[] = {{"add", " + "}, {"sub", " - "}, {"mul", " " TIMES " "}, {"div", " / "}};
    for (size_t i = 0; i < ARRAY_LEN(signs); i++)
        if (!strcmp(op->name, signs[i].op))
            return signs[i].sign;
    return NULL;
}

/* op's inputs, by label or value: "ab x A" or "mul(ab, A)". */
static void put_call(page *p, int64_t i, bool values)
{
    const dg_op *op = &p->g->ops[i];
    const char *sign = op->out->nin == 2 ? infix(op->out->op) : NULL;
    if (!sign) {
        put_json(p, op->out->op->name);
        fputc('(', p->f);
    }
    for (int j = 0; j < op->out->nin; j++) {
        int64_t from = p->g->edges[op->edge0 + j].from;
        if (j > 0)
            fputs(sign ? sign : ", ", p->f);
        if (values && sign)
            put_factor(p, agi_get(p->g->nodes[from].x, 0));
        else if (values)
            put_num(p, agi_get(p->g->nodes[from].x, 0));
        else
            put_symbol(p, from);
    }
    fputs(sign ? "" : ")", p->f);
}

/* "B = ab x A = 0.5 x 3 = 1.5", or for tensors "h = matmul(x, W): [10,30] ..." */
static void put_forward_rule(page *p, int64_t i)
{
    const dg_op *op = &p->g->ops[i];
    bool scalars = is_scalar(op->out);
    for (int j = 0; j < op->out->nin; j++)
        scalars &= is_scalar(p->g->nodes[p->g->edges[op->edge0 + j].from].x);
    put_label(p, op->node);
    fputs(" = ", p->f);
    put_call(p, i, false);
    if (scalars) {
        fputs(" = ", p->f);
        put_call(p, i, true);
        fputs(" = ", p->f);
    } else {
        fputs(": ", p->f);
        put_shape(p, op->out);
        fputc(' ', p->f);
    }
    put_values(p, op->out);
}

/* The running sum of node 'id' after its contribution through edge 'upto':
** "40 + 30 - 8 = 62" for scalars, the values (or summary) otherwise. */
static void put_running(page *p, int64_t id, int64_t upto)
{
    const dg_graph *g = p->g;
    const dg_edge *last = &g->edges[upto];
    int64_t count = p->rank_in[upto];
    if (count > 1 && is_scalar(last->running)) {
        int64_t shown = 0;
        for (int64_t e = g->nodes[id].first_in; e >= 0; e = g->edges[e].next_in) {
            double c = agi_get(g->edges[e].contrib, 0);
            if (shown == MAX_TERMS) {
                fprintf(p->f, " + " ELLIPSIS " (%lld terms)", (long long)count);
                break;
            }
            if (shown++ == 0)
                put_num(p, c);
            else
                fputs(c < 0 ? " - " : " + ", p->f), put_num(p, fabs(c));
            if (e == upto)
                break;
        }
        fputs(" = ", p->f);
    }
    put_values(p, last->running);
    if (count > 1 && !is_scalar(last->running))
        fprintf(p->f, " (sum of %lld)", (long long)count);
}

/* ------------------------------------------------------------ JSON parts */

/* Opens a JSON string, writes 'text' (our own words), closes it. */
static void put_str(page *p, const char *text)
{
    fputc('"', p->f);
    put_json(p, text);
    fputc('"', p->f);
}

static void put_tensors(page *p)
{
    const dg_graph *g = p->g;
    FILE *f = p->f;
    fputs("\"tensors\":[", f);
    for (int64_t id = 0; id < g->n_nodes; id++) {
        const dg_node *n = &g->nodes[id];
        fprintf(f, "%s\n{\"label\":\"", id ? "," : "");
        put_label(p, id);
        fprintf(f, "\",\"named\":%s,\"kind\":\"%s\",\"output\":%s,\"shape\":\"",
                n->x->name ? "true" : "false", kind_name(n), n->output ? "true" : "false");
        if (n->x->rank > 0)
            put_shape(p, n->x);
        fprintf(f, "\",\"dtype\":\"%s\",\"value\":\"", ag_dtype_name((ag_dtype)n->x->dtype));
        put_values(p, n->x);
        bool seeded = id == g->y_node && g->seed;
        fprintf(f, "\",\"op\":%lld,\"wants\":%s,\"grads\":[", (long long)n->op,
                seeded || n->first_in >= 0 ? "true" : "false");
        const char *sep = "";
        if (seeded) {
            fputs("[0,\"", f);
            put_values(p, g->seed);
            fputs(" (seed)\",true]", f);
            sep = ",";
        }
        for (int64_t e = n->first_in; e >= 0 && !seeded; e = g->edges[e].next_in) {
            int64_t step = g->ops[g->edges[e].op].step, next = g->edges[e].next_in;
            if (next >= 0 && g->edges[next].op == g->edges[e].op)
                continue;   /* x*x: the graph shows the sum once the step is over */
            fprintf(f, "%s[%lld,\"", sep, (long long)step);
            put_running(p, id, e);
            fprintf(f, "\",%s]", step >= n->last_step ? "true" : "false");
            sep = ",";
        }
        fputs("]}", f);
    }
    fputs("]", f);
}

/* An edge's label on the drawing: the local derivative, and (once its op is
** replayed) "grad(out) x local = contribution". */
static void put_edges(page *p, const hl_layout *l)
{
    const dg_graph *g = p->g;
    FILE *f = p->f;
    fputs(",\n\"edges\":[", f);
    for (int64_t ei = 0; ei < g->n_edges; ei++) {
        const dg_edge *e = &g->edges[ei];
        const dg_op *op = &g->ops[e->op];
        fprintf(f, "%s\n{\"from\":%lld,\"op\":%lld,\"local\":\"", ei ? "," : "",
                (long long)e->from, (long long)e->op);
        if (e->local && e->local->numel <= SMALL) {
            put_partial(p, op->node, e->from);
            fputs(" = ", f);
            put_values(p, e->local);
        }
        fputs("\",\"contrib\":\"", f);
        if (e->contrib) {
            if (is_scalar(e->local) && is_scalar(op->upstream) && is_scalar(e->contrib)) {
                put_factor(p, agi_get(op->upstream, 0));
                fputs(" " TIMES " ", f);
                put_factor(p, agi_get(e->local, 0));
                fputs(" = ", f);
                put_num(p, agi_get(e->contrib, 0));
            } else if (e->contrib->numel <= SMALL) {
                fputs("sends ", f);
                put_values(p, e->contrib);
            } else {
                fputs("sends ", f);
                put_shape(p, e->contrib);
            }
        }
        /* The vertices the edge passes through: the tensor, the dummies of
        ** the layers it skips, the op. */
        fprintf(f, "\",\"path\":[%lld", (long long)e->from);
        int64_t span = l->layer[l->n_tensors + e->op] - l->layer[e->from] - 1;
        for (int64_t k = 0; k < span; k++)
            fprintf(f, ",%lld", (long long)(l->dummy0[ei] + k));
        fprintf(f, ",%lld]}", (long long)(l->n_tensors + e->op));
    }
    fputs("]", f);
}

static void put_ops(page *p)
{
    const dg_graph *g = p->g;
    FILE *f = p->f;
    fputs(",\n\"ops\":[", f);
    for (int64_t i = 0; i < g->n_ops; i++) {
        const dg_op *op = &g->ops[i];
        fprintf(f, "%s\n{\"name\":\"", i ? "," : "");
        put_json(p, op->out->op->name);
        fprintf(f, "\",\"out\":%lld,\"step\":%lld,\"edges\":[", (long long)op->node,
                (long long)op->step);
        for (int j = 0; j < op->out->nin; j++)
            fprintf(f, "%s%lld", j ? "," : "", (long long)(op->edge0 + j));
        fputs("]}", f);
    }
    fputs("]", f);
}

static void put_layers(page *p, const hl_layout *l)
{
    FILE *f = p->f;
    fprintf(f, ",\n\"vertices\":%lld,\"crossings\":%lld,\"layers\":[", (long long)l->n_vertices,
            (long long)l->crossings);
    for (int64_t r = 0; r < l->n_layers; r++) {
        fputs(r ? ",\n[" : "\n[", f);
        for (int64_t k = l->layer_start[r]; k < l->layer_start[r + 1]; k++)
            fprintf(f, "%s%lld", k > l->layer_start[r] ? "," : "", (long long)l->members[k]);
        fputc(']', f);
    }
    fputs("]", f);
}

/* ----------------------------------------------------------- the steps */

/* A panel line: its class (rule, sum, note) and its text, written by 'body'. */
static void line_open(page *p, const char *cls, bool *first)
{
    fprintf(p->f, "%s[\"%s\",\"", *first ? "" : ",", cls);
    *first = false;
}
static void line_close(page *p) { fputs("\"]", p->f); }

static void put_forward_steps(page *p)
{
    const dg_graph *g = p->g;
    FILE *f = p->f;
    fprintf(f, ",\n\"forward\":[\n{\"op\":-1,\"title\":\"Forward pass: the leaves hold their "
               "values; %lld op%s will run in the order they were recorded\",\"lines\":[",
            (long long)g->n_ops, g->n_ops == 1 ? "" : "s");
    bool first = true;
    for (int64_t id = 0; id < g->n_nodes; id++) {
        const dg_node *n = &g->nodes[id];
        if (n->op >= 0 || unnamed_constant(n))
            continue;
        line_open(p, "rule", &first);
        put_label(p, id);
        fputs(" = ", f);
        put_values(p, n->x);
        fprintf(f, " (%s%s)", kind_name(n),
                n->kind == DG_INPUT || n->kind == DG_PARAM ? ", requires grad" : "");
        line_close(p);
    }
    fputs("]}", f);
    for (int64_t i = 0; i < g->n_ops; i++) {
        fprintf(f, ",\n{\"op\":%lld,\"title\":\"Forward step %lld of %lld: ", (long long)i,
                (long long)i + 1, (long long)g->n_ops);
        put_json(p, g->ops[i].out->op->name);
        fputs(" computes ", f);
        put_label(p, g->ops[i].node);
        fputs("\",\"lines\":[", f);
        first = true;
        line_open(p, "rule", &first);
        put_forward_rule(p, i);
        line_close(p);
        fputs("]}", f);
    }
    fputs("]", f);
}

/* The panel of backward step k >= 1: what op it replays, then for each
** input the chain rule and, for a value that receives several
** contributions, their running sum. */
static void put_backward_step(page *p, int64_t k)
{
    const dg_graph *g = p->g;
    FILE *f = p->f;
    int64_t i = g->by_step[k - 1];
    const dg_op *op = &g->ops[i];
    fprintf(f, ",\n{\"op\":%lld,\"title\":\"Backward step %lld of %lld: ", (long long)i,
            (long long)k, (long long)g->n_steps);
    put_json(p, op->out->op->name);
    fputs(" " ARROW " ", f);
    put_label(p, op->node);
    fputs(" passes grad(", f);
    put_label(p, op->node);
    fputs(is_scalar(op->upstream) ? ") = " : ") ", f);
    if (!is_scalar(op->upstream))
        put_shape(p, op->upstream), fputs(" = ", f);
    put_values(p, op->upstream);
    fputs(" back to its inputs\",\"lines\":[", f);
    bool first = true;
    for (int j = 0; j < op->out->nin; j++) {
        int64_t ei = op->edge0 + j;
        const dg_edge *e = &g->edges[ei];
        if (!e->contrib) {
            line_open(p, "note", &first);
            put_label(p, e->from);
            if (g->nodes[e->from].kind == DG_CONST)
                fputs(" is a constant: no gradient flows back to it", f);
            else
                fputs(" gets no gradient through this input of ", f), put_json(p, op->out->op->name);
            line_close(p);
            continue;
        }
        line_open(p, "rule", &first);
        fputs("grad(", f);
        put_label(p, e->from);
        fputs(") += ", f);
        if (is_scalar(e->local) && is_scalar(op->upstream) && is_scalar(e->contrib)) {
            fputs("grad(", f);
            put_label(p, op->node);
            fputs(") " TIMES " ", f);
            put_partial(p, op->node, e->from);
            fputs(" = ", f);
            put_factor(p, agi_get(op->upstream, 0));
            fputs(" " TIMES " ", f);
            put_factor(p, agi_get(e->local, 0));
            fputs(" = ", f);
            put_num(p, agi_get(e->contrib, 0));
        } else {
            fputs("grad(", f);
            put_label(p, op->node);
            fputs(") pulled back through ", f);
            put_json(p, op->out->op->name);
            fputs(" = ", f);
            if (e->contrib->rank > 0)
                put_shape(p, e->contrib), fputc(' ', f);
            put_values(p, e->contrib);
        }
        line_close(p);
        int64_t total = p->n_in[e->from];
        if (total > 1) {
            line_open(p, "sum", &first);
            fputs("grad(", f);
            put_label(p, e->from);
            fputs(") = ", f);
            put_running(p, e->from, ei);
            if (p->rank_in[ei] < total)
                fprintf(f, " so far (%lld of %lld contributions)", (long long)p->rank_in[ei],
                        (long long)total);
            else
                fprintf(f, ": all %lld contributions are in", (long long)total);
            line_close(p);
        }
    }
    if (k == g->n_steps) {
        line_open(p, "note", &first);
        fputs("Every gradient is known now", f);
        const char *sep = ": ";
        for (int64_t id = 0; id < g->n_nodes; id++) {
            const dg_node *n = &g->nodes[id];
            if ((n->kind == DG_INPUT || n->kind == DG_PARAM) && n->grad) {
                fprintf(f, "%sgrad(", sep);
                put_label(p, id);
                fputs(") = ", f);
                put_values(p, n->grad);
                sep = ", ";
            }
        }
        line_close(p);
    }
    fputs("]}", f);
}

static void put_backward_steps(page *p)
{
    const dg_graph *g = p->g;
    FILE *f = p->f;
    fprintf(f, ",\n\"backward\":[\n{\"op\":-1,\"title\":\"Backward step 0 of %lld: the seed\","
               "\"lines\":[",
            (long long)g->n_steps);
    bool first = true;
    line_open(p, "rule", &first);
    if (g->seed) {
        fputs("grad(", f);
        put_label(p, g->y_node);
        fputs(") = " PARTIAL, f);
        put_symbol(p, g->y_node);
        fputs("/" PARTIAL, f);
        put_symbol(p, g->y_node);
        fputs(" = ", f);
        put_values(p, g->seed);
    } else {
        put_label(p, g->y_node);
        fputs(" does not depend on anything that requires grad: no backward pass", f);
    }
    line_close(p);
    line_open(p, "note", &first);
    fputs("Each step replays one op, the last recorded first, and passes the gradient of its "
          "result back to its inputs by the chain rule", f);
    line_close(p);
    fputs("]}", f);
    for (int64_t k = 1; k <= g->n_steps; k++)
        put_backward_step(p, k);
    fputs("]", f);
}

static void put_data(page *p, const hl_layout *l, const char *title)
{
    FILE *f = p->f;
    fputs("{\"title\":", f);
    put_str(p, title);
    fprintf(f, ",\"output\":%lld,\"steps\":%lld,\n", (long long)p->g->y_node,
            (long long)p->g->n_steps);
    put_tensors(p);
    put_ops(p);
    put_edges(p, l);
    put_layers(p, l);
    put_forward_steps(p);
    put_backward_steps(p);
    fputs("}", f);
}

/* ------------------------------------------------------------- the page */

/* The template with "@TITLE@" and "@DATA@" filled in. */
static void put_page(page *p, const hl_layout *l, const ag_dot_options *o)
{
    const char *title = o->title ? o->title : "backprop, step by step";
    const char *s = agi_html_template;
    for (;;) {
        const char *at_title = strstr(s, "@TITLE@"), *at_data = strstr(s, "@DATA@");
        const char *at = !at_title ? at_data : !at_data || at_title < at_data ? at_title : at_data;
        if (!at) {
            fputs(s, p->f);
            return;
        }
        fwrite(s, 1, (size_t)(at - s), p->f);
        if (at == at_title) {
            put_html(p->f, title);
            s = at + strlen("@TITLE@");
        } else {
            put_data(p, l, title);
            s = at + strlen("@DATA@");
        }
    }
}

/* Checks what both entry points share. A tape already in error keeps its
** first error (nothing is recorded) and the page is not written: it needs a
** backward pass to replay. */
static bool begin(ag_tape *t, const char *who, ag_tensor *y, const void *dest, const char *what,
                  const ag_dot_options *opt, ag_dot_options *o)
{
    if (!t || ag_tape_status(t) != AG_OK)
        return false;
    *o = opt ? *opt : (ag_dot_options){0};
    if (!dest) {
        agi_error(t, AG_EINVAL, "%s: the %s is NULL", who, what);
        return false;
    }
    if (!y) {
        agi_error(t, AG_EINVAL, "%s: the output y is NULL; the page steps through the backward "
                                "pass from it", who);
        return false;
    }
    if (!agi_check_inputs(t, who, 1, &y, false))
        return false;
    if (o->digits < 0 || o->digits > 17) {
        agi_error(t, AG_EINVAL, "%s: digits is %d, not in 0..17", who, o->digits);
        return false;
    }
    if (o->digits == 0)
        o->digits = DEFAULT_DIGITS;
    return true;
}

/* Builds the graph and its layout and writes the page to f. */
static ag_status write_page(ag_tape *t, const char *who, ag_tensor *y, const ag_dot_options *o,
                            FILE *f)
{
    dg_graph g;
    hl_layout l = {0};
    page p = {f, &g, o->digits, NULL, NULL};
    size_t n_edges = 0, n_nodes = 0;
    if (agi_dg_build(&g, t, y) == AG_OK && agi_hl_build(&l, &g, who) == AG_OK) {
        n_edges = (size_t)g.n_edges ? (size_t)g.n_edges : 1;
        n_nodes = (size_t)g.n_nodes ? (size_t)g.n_nodes : 1;
        p.rank_in = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, n_edges * sizeof *p.rank_in);
        p.n_in = agi_realloc(t->alloc, t->alloc_ud, NULL, 0, n_nodes * sizeof *p.n_in);
        if (!p.rank_in || !p.n_in) {
            agi_error(t, AG_ENOMEM, "%s: out of memory for a graph of %zu edges", who, n_edges);
        } else {
            for (int64_t id = 0; id < g.n_nodes; id++) {
                p.n_in[id] = 0;
                for (int64_t e = g.nodes[id].first_in; e >= 0; e = g.edges[e].next_in)
                    p.rank_in[e] = ++p.n_in[id];
            }
            put_page(&p, &l, o);
            if (fflush(f) != 0 || ferror(f))
                agi_error(t, AG_EIO, "%s: writing the page failed: %s", who, strerror(errno));
        }
    }
    if (p.rank_in)
        agi_realloc(t->alloc, t->alloc_ud, p.rank_in, n_edges * sizeof *p.rank_in, 0);
    if (p.n_in)
        agi_realloc(t->alloc, t->alloc_ud, p.n_in, n_nodes * sizeof *p.n_in, 0);
    agi_hl_free(&l);
    agi_dg_free(&g);
    return t->status;
}

ag_status ag_html_write(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, FILE *f)
{
    static const char who[] = "ag_html_write";
    ag_dot_options o;
    if (!begin(t, who, y, f, "FILE", opt, &o))
        return t ? t->status : AG_EINVAL;
    return write_page(t, who, y, &o, f);
}

ag_status ag_html_save(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, const char *path)
{
    static const char who[] = "ag_html_save";
    ag_dot_options o;
    if (!begin(t, who, y, path, "path", opt, &o))
        return t ? t->status : AG_EINVAL;
    FILE *f = fopen(path, "wb");
    if (!f) {
        agi_error(t, AG_EIO, "%s: cannot open '%s' for writing: %s", who, path, strerror(errno));
        return t->status;
    }
    write_page(t, who, y, &o, f);
    if (fclose(f) != 0 && t->status == AG_OK)
        agi_error(t, AG_EIO, "%s: writing '%s' failed: %s", who, path, strerror(errno));
    if (t->status != AG_OK)
        remove(path);   /* no half page left behind */
    return t->status;
}
