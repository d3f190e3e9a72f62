/*
** dot.c: Graphviz DOT text for a tape: the full graph with the chain-rule
** view, one frame per backward step, and saving either to files. Every label
** is an HTML-like label whose text goes through put_text, the one place that
** escapes user strings; numbers come from put_num. The model drawn is built
** by dot_graph.c.
*/
#include "dot_graph.h"

#include <errno.h>
#include <math.h>
#include <string.h>

enum { SMALL = 16, MAX_TERMS = 8, DEFAULT_DIGITS = 6 };

/* Fill and border of each kind of node, and of the op replayed now. */
typedef struct palette {
    const char *fill, *line;
} palette;
static const palette KIND_COLOURS[] = {
    [DG_RESULT] = {"#ffffff", "#374151"},
    [DG_INPUT] = {"#dbeafe", "#1d4ed8"},
    [DG_PARAM] = {"#dcfce7", "#15803d"},
    [DG_CONST] = {"#f3f4f6", "#9ca3af"},
};
static const palette OUTPUT_COLOURS = {"#fee2e2", "#b91c1c"};
static const palette OP_COLOURS = {"#fef3c7", "#b45309"};
static const palette NOW_COLOURS = {"#fde047", "#dc2626"};
/* Text colours: local derivatives, contributions, remarks. */
#define INK_LOCAL "#1d4ed8"
#define INK_CONTRIB "#b91c1c"
#define INK_FAINT "#6b7280"

/* ---------------------------------------------------------------- text */

/* DOT text grows in one buffer from the tape's allocator. */
typedef struct dot_text {
    ag_tape *t;
    char *s;
    size_t len, cap;
    bool oom;
} dot_text;

static void reserve(dot_text *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return;
        }
        cap *= 2;
    }
    char *s = agi_realloc(b->t->alloc, b->t->alloc_ud, b->s, b->cap, cap);
    if (!s) {
        b->oom = true;
        return;
    }
    b->s = s;
    b->cap = cap;
}

static void put(dot_text *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(dot_text *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    reserve(b, (size_t)n);
    if (b->oom)
        return;
    if ((size_t)n < sizeof small) {
        memcpy(b->s + b->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

static void text_free(dot_text *b)
{
    if (b->s)
        agi_realloc(b->t->alloc, b->t->alloc_ud, b->s, b->cap, 0);
    b->s = NULL;
    b->len = b->cap = 0;
}

/* Length of the valid UTF-8 sequence at s that XML accepts as a character,
** or 0. Graphviz parses HTML-like labels with an XML parser, which rejects
** malformed UTF-8, surrogates and U+FFFE/U+FFFF. The HTML page (html.c)
** escapes names with it too. */
int agi_utf8_char(const unsigned char *s)
{
    unsigned c = s[0];
    int n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    bool overlong = (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE ||
        cp == 0xFFFF)
        return 0;
    return n;
}

/* User text inside an HTML-like label. Markup characters become entities; a
** backslash is doubled, since Graphviz expands escapes such as \N even there;
** control characters and bytes that are not valid UTF-8 become U+FFFD. */
static void put_text(dot_text *b, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s;
        int n = 1;
        if (c == '&')
            put(b, "&amp;");
        else if (c == '<')
            put(b, "&lt;");
        else if (c == '>')
            put(b, "&gt;");
        else if (c == '"')
            put(b, "&quot;");
        else if (c == '\\')
            put(b, "\\\\");
        else if (c < 0x20 || c == 0x7F)
            put(b, "&#xFFFD;");
        else if (c < 0x80)
            put(b, "%c", (char)c);
        else if ((n = agi_utf8_char(s)) > 0)
            put(b, "%.*s", n, (const char *)s);
        else
            n = 1, put(b, "&#xFFFD;");
        s += n;
    }
}

/* A number in 'digits' significant digits; "nan", "inf", "-inf" spelled out
** and -0 shown as 0, so that the text depends only on the value. */
static void put_num(dot_text *b, double v, int digits)
{
    if (isnan(v))
        put(b, "nan");
    else if (isinf(v))
        put(b, v > 0 ? "inf" : "-inf");
    else if (v == 0)
        put(b, "0");
    else
        put(b, "%.*g", digits, v);
}

/* A factor in a product: negative numbers in parentheses. */
static void put_factor(dot_text *b, double v, int digits)
{
    bool paren = v < 0;
    put(b, paren ? "(" : "");
    put_num(b, v, digits);
    put(b, paren ? ")" : "");
}

static void put_axis(dot_text *b, const ag_tensor *x, int axis, int64_t offset, int digits)
{
    int64_t n = x->shape[axis], stride = 1;
    for (int i = axis + 1; i < x->rank; i++)
        stride *= x->shape[i];
    put(b, "[");
    for (int64_t i = 0; i < n; i++) {
        if (axis == x->rank - 1)
            put_num(b, agi_get(x, offset + i), digits);
        else
            put_axis(b, x, axis + 1, offset + i * stride, digits);
        if (i + 1 < n)
            put(b, axis == x->rank - 2 ? ",<br/>" : ", ");
    }
    put(b, "]");
}

static void put_shape(dot_text *b, const ag_tensor *x)
{
    char shape[160];
    agi_shape_str(shape, sizeof shape, x->rank, x->shape);
    put(b, "%s", shape);
}

/* Values of a small tensor, compactly; for a large one (a layer's weights)
** a summary that stays one short label: the count, the first few values and
** the norm. */
static void put_values(dot_text *b, const ag_tensor *x, int digits)
{
    if (x->rank == 0) {
        put_num(b, agi_get(x, 0), digits);
    } else if (x->numel <= SMALL) {
        put_axis(b, x, 0, 0, digits);
    } else {
        put(b, "<i>%lld values</i>: ", (long long)x->numel);
        for (int64_t i = 0; i < DG_SUMMARY_VALUES; i++) {
            put_num(b, agi_get(x, i), digits);
            put(b, ", ");
        }
        put(b, "...<br/>norm ");
        put_num(b, agi_dg_norm(x), digits);
    }
}

static bool is_scalar(const ag_tensor *x) { return x && x->numel == 1; }

/* ---------------------------------------------------------------- views */

/* What one picture shows: the final graph (step < 0) or backward frame 'step'. */
typedef struct view {
    const dg_graph *g;
    const ag_dot_options *o;
    int digits;
    bool frame;
    int64_t k;          /* steps replayed so far */
    int64_t now;        /* the op replayed at step k, or -1 */
} view;

static bool replayed(const view *v, int64_t op)
{
    int64_t s = v->g->ops[op].step;
    return s > 0 && s <= v->k;
}

/* The node's gradient and the contributions that make it, as known in view v. */
static void put_grad(dot_text *b, const view *v, int64_t id)
{
    const dg_graph *g = v->g;
    const dg_node *n = &g->nodes[id];
    int64_t count = 0, last = -1;
    for (int64_t e = n->first_in; e >= 0; e = g->edges[e].next_in)
        if (replayed(v, g->edges[e].op))
            count++, last = e;
    if (id == g->y_node && g->seed) {
        put_values(b, g->seed, v->digits);
        put(b, " <font color=\"" INK_FAINT "\">(seed)</font>");
        return;
    }
    if (count == 0) {
        if (v->frame && n->first_in >= 0)
            put(b, "<font color=\"" INK_FAINT "\">?</font>");
        else if (n->grad)
            put_values(b, n->grad, v->digits);
        return;
    }
    const ag_tensor *sum = v->frame || !n->grad ? g->edges[last].running : n->grad;
    if (count > 1 && is_scalar(sum)) {
        int64_t shown = 0;
        for (int64_t e = n->first_in; e >= 0; e = g->edges[e].next_in) {
            if (!replayed(v, g->edges[e].op))
                continue;
            double c = agi_get(g->edges[e].contrib, 0);
            if (shown == MAX_TERMS) {
                put(b, " + ... (%lld terms)", (long long)count);
                break;
            }
            if (shown++ == 0)
                put_num(b, c, v->digits);
            else if (c < 0)
                put(b, " - "), put_num(b, -c, v->digits);
            else
                put(b, " + "), put_num(b, c, v->digits);
        }
        put(b, " = ");
    }
    put_values(b, sum, v->digits);
    if (count > 1 && !is_scalar(sum))
        put(b, " <font color=\"" INK_FAINT "\">(sum of %lld)</font>", (long long)count);
    if (v->frame && v->k < n->last_step)
        put(b, " <font color=\"" INK_FAINT "\"><i>so far</i></font>");
}

static void put_tensor_node(dot_text *b, const view *v, int64_t id)
{
    const dg_graph *g = v->g;
    const dg_node *n = &g->nodes[id];
    const ag_tensor *x = n->x;
    const palette *c = n->output ? &OUTPUT_COLOURS : &KIND_COLOURS[n->kind];
    bool now = v->now >= 0 && g->ops[v->now].node == id;
    put(b, "  t%lld [shape=plain, label=<<table border=\"%d\" cellborder=\"0\" cellspacing=\"0\" "
           "cellpadding=\"3\" bgcolor=\"%s\" color=\"%s\"%s>",
        (long long)id, now ? 3 : n->output ? 2 : 1, c->fill, now ? NOW_COLOURS.line : c->line,
        n->kind == DG_CONST && !n->output ? " style=\"dashed\"" : "");
    if (x->name || x->rank > 0 || x->dtype != AG_F64) {
        put(b, "<tr><td colspan=\"2\">");
        if (x->name) {
            put(b, "<b>");
            put_text(b, x->name);
            put(b, "</b>");
        }
        if (x->rank > 0 || x->dtype != AG_F64) {
            put(b, "%s<font point-size=\"9\" color=\"" INK_FAINT "\">", x->name ? " " : "");
            if (x->rank > 0)
                put_shape(b, x);
            if (x->dtype != AG_F64)
                put(b, "%s%s", x->rank > 0 ? " " : "", ag_dtype_name((ag_dtype)x->dtype));
            put(b, "</font>");
        }
        put(b, "</td></tr>");
    }
    put(b, "<tr><td align=\"left\">value</td><td align=\"left\" balign=\"left\">");
    put_values(b, x, v->digits);
    put(b, "</td></tr>");
    dot_text probe = {b->t, NULL, 0, 0, false};
    if (g->derivatives) {
        put_grad(&probe, v, id);
        if (probe.len > 0 || probe.oom) {
            put(b, "<tr><td align=\"left\">grad</td><td align=\"left\" balign=\"left\">%s</td></tr>",
                probe.s ? probe.s : "");
            b->oom |= probe.oom;
        }
        text_free(&probe);
    }
    put(b, "</table>>];\n");
}

static void put_op_node(dot_text *b, const view *v, int64_t i)
{
    const ag_tensor *out = v->g->ops[i].out;
    const palette *c = i == v->now ? &NOW_COLOURS : &OP_COLOURS;
    put(b, "  op%lld [shape=box, style=\"rounded,filled\", fillcolor=\"%s\", color=\"%s\"%s, "
           "label=<",
        (long long)i, c->fill, c->line, i == v->now ? ", penwidth=3" : "");
    put_text(b, out->op->name);
    put(b, ">];\n");
}

/* A name inside a formula, in parentheses when it is itself one ("x*w"). */
static void put_symbol(dot_text *b, const char *name)
{
    bool plain = true;
    for (const char *c = name; *c && plain; c++)
        plain = (unsigned char)*c >= 0x80 || (*c >= 'a' && *c <= 'z') ||
                (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '.';
    put(b, plain ? "" : "(");
    put_text(b, name);
    put(b, plain ? "" : ")");
}

/* "dB/dA" with the tensors' names, "out" and "in" for unnamed ones. */
static void put_partial(dot_text *b, const ag_tensor *out, const ag_tensor *in)
{
    put(b, "&#8706;");
    put_symbol(b, out->name ? out->name : "out");
    put(b, "/&#8706;");
    put_symbol(b, in->name ? in->name : "in");
}

/* The label of an input edge: the local derivative, then (once replayed)
** grad(out) x local = contribution. */
static void put_edge_label(dot_text *b, const view *v, const dg_edge *e, const char *sep)
{
    const dg_graph *g = v->g;
    const dg_op *op = &g->ops[e->op];
    const ag_tensor *in = g->nodes[e->from].x;
    bool local = e->local && e->local->numel <= SMALL;
    bool contrib = e->contrib && replayed(v, e->op);
    if (!local && !contrib)
        return;
    put(b, "%slabel=<", sep);
    if (local) {
        put(b, "<font color=\"" INK_LOCAL "\">");
        put_partial(b, op->out, in);
        put(b, " = ");
        put_values(b, e->local, v->digits);
        put(b, "</font>");
    }
    if (contrib) {
        put(b, "%s<font color=\"" INK_CONTRIB "\">", local ? "<br/>" : "");
        if (local && is_scalar(e->local) && is_scalar(op->upstream) && is_scalar(e->contrib)) {
            put_factor(b, agi_get(op->upstream, 0), v->digits);
            put(b, " &#215; ");
            put_factor(b, agi_get(e->local, 0), v->digits);
            put(b, " = ");
            put_num(b, agi_get(e->contrib, 0), v->digits);
        } else if (e->contrib->numel <= SMALL) {
            put(b, "contributes ");
            put_values(b, e->contrib, v->digits);
        } else {
            put(b, "contributes ");
            put_shape(b, e->contrib);
        }
        put(b, "</font>");
    }
    put(b, ">");
}

static void put_edges(dot_text *b, const view *v, int64_t i)
{
    const dg_graph *g = v->g;
    const dg_op *op = &g->ops[i];
    bool hot = i == v->now;
    for (int j = 0; j < op->out->nin; j++) {
        const dg_edge *e = &g->edges[op->edge0 + j];
        put(b, "  t%lld -> op%lld [", (long long)e->from, (long long)i);
        if (hot)
            put(b, "color=\"%s\", penwidth=2.5", NOW_COLOURS.line);
        if (!v->o->plain && g->derivatives)
            put_edge_label(b, v, e, hot ? ", " : "");
        put(b, "];\n");
    }
    put(b, "  op%lld -> t%lld [", (long long)i, (long long)op->node);
    if (hot)
        put(b, "color=\"%s\", penwidth=2.5", NOW_COLOURS.line);
    put(b, "];\n");
}

static void put_legend(dot_text *b, const view *v)
{
    static const struct {
        const char *what;
        const palette *c;
    } cells[] = {
        {"input", &KIND_COLOURS[DG_INPUT]}, {"parameter", &KIND_COLOURS[DG_PARAM]},
        {"constant", &KIND_COLOURS[DG_CONST]}, {"result", &KIND_COLOURS[DG_RESULT]},
        {"op", &OP_COLOURS}, {"output", &OUTPUT_COLOURS},
    };
    int n = (int)ARRAY_LEN(cells);
    put(b, "  legend [shape=plain, label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"0\" "
           "cellpadding=\"4\"><tr><td colspan=\"%d\"><b>legend</b></td></tr><tr>", n);
    for (int i = 0; i < n; i++)
        put(b, "<td bgcolor=\"%s\" color=\"%s\">%s</td>", cells[i].c->fill, cells[i].c->line,
            cells[i].what);
    put(b, "</tr>");
    if (!v->o->plain && v->g->derivatives)
        put(b, "<tr><td colspan=\"%d\" align=\"left\" balign=\"left\">"
               "<font color=\"" INK_LOCAL "\">&#8706;out/&#8706;in = local</font>: the derivative "
               "of an op at the recorded point<br/>"
               "<font color=\"" INK_CONTRIB "\">grad(out) &#215; local = contribution</font>&#160;"
               "to grad(in)<br/>"
               "grad(in) = the sum of its contributions</td></tr>", n);
    if (v->frame)
        put(b, "<tr><td colspan=\"%d\" align=\"left\" balign=\"left\">highlighted: the op "
               "replayed at this step<br/>?: gradient not known yet</td></tr>", n);
    put(b, "</table>>];\n");
}

/* The caption: the user's title, then for a frame what the step did. */
static void put_title(dot_text *b, const view *v)
{
    const dg_graph *g = v->g;
    if (!v->o->title && !v->frame)
        return;
    put(b, "  graph [labelloc=t, label=<");
    if (v->o->title)
        put_text(b, v->o->title);
    if (v->frame) {
        put(b, "%s<b>backward step %lld of %lld</b>: ", v->o->title ? "<br/>" : "",
            (long long)v->k, (long long)g->n_steps);
        const ag_tensor *y = g->y;
        if (v->k == 0) {
            put(b, "seed grad(");
            put_text(b, y->name ? y->name : "output");
            put(b, ") = 1");
        } else {
            const ag_tensor *out = g->ops[v->now].out;
            put_text(b, out->op->name);
            if (out->name) {
                put(b, " &#8594; ");
                put_text(b, out->name);
            }
            put(b, " passes its gradient back to its inputs");
        }
    }
    put(b, ">];\n");
}

/* Draws view k (the final graph when k < 0) of a built graph into b. */
static void draw(dot_text *b, const dg_graph *g, const ag_dot_options *o, int64_t k)
{
    view v = {g, o, o->digits, k >= 0, k >= 0 ? k : g->n_steps, -1};
    if (v.frame && k > 0)
        v.now = g->by_step[k - 1];
    put(b, "digraph autograd {\n");
    put(b, "  graph [rankdir=%s, fontname=\"Helvetica\", fontsize=12, nodesep=0.3, ranksep=0.45];\n",
        o->top_to_bottom ? "TB" : "LR");
    put(b, "  node [fontname=\"Helvetica\", fontsize=11];\n");
    put(b, "  edge [fontname=\"Helvetica\", fontsize=10, color=\"#4b5563\", arrowsize=0.7];\n");
    put_title(b, &v);
    for (int64_t i = 0; i < g->n_nodes; i++)
        put_tensor_node(b, &v, i);
    for (int64_t i = 0; i < g->n_ops; i++)
        put_op_node(b, &v, i);
    for (int64_t i = 0; i < g->n_ops; i++)
        put_edges(b, &v, i);
    if (!o->no_legend)
        put_legend(b, &v);
    put(b, "}\n");
}

/* ----------------------------------------------------------- public API */

/* Checks the arguments every entry point shares and fills 'o' with the
** options, defaults applied. On a tape already in error only what drawing
** needs is checked, and nothing is recorded. */
static bool begin(ag_tape *t, const char *who, ag_tensor *y, bool need_y,
                  const ag_dot_options *opt, ag_dot_options *o)
{
    if (!t)
        return false;
    *o = opt ? *opt : (ag_dot_options){0};
    bool digits_ok = o->digits >= 0 && o->digits <= 17;
    if (o->digits == 0 || !digits_ok)
        o->digits = DEFAULT_DIGITS;
    /* ag_tape_status, not the field: in anomaly mode it checks the last
    ** result first, so a NaN there counts as an error already made. */
    if (ag_tape_status(t) != AG_OK) {
        if (need_y || (y && (y->flags & AGI_NIL)))
            return false;
        return !y || (y->flags & AGI_PARAM) || (y->tape == t && y->epoch == t->epoch);
    }
    if (need_y && !y) {
        agi_error(t, AG_EINVAL, "%s: the output y is NULL; backward steps need one", who);
        return false;
    }
    if (y && !agi_check_inputs(t, who, 1, &y, false))
        return false;
    if (!digits_ok) {
        agi_error(t, AG_EINVAL, "%s: digits is %d, not in 0..17", who, opt->digits);
        return false;
    }
    return true;
}

/* The status to return once drawing is done: a tape that was already in
** error keeps reporting its error. */
static ag_status finish(ag_tape *t, const char *who, dot_text *b)
{
    if (b && b->oom)
        agi_error(t, AG_ENOMEM, "%s: out of memory for the DOT text", who);
    return t->status;
}

static ag_status write_text(ag_tape *t, const char *who, const dot_text *b, FILE *f)
{
    if (fwrite(b->s, 1, b->len, f) != b->len || fflush(f) != 0)
        agi_error(t, AG_EIO, "%s: writing the DOT text failed: %s", who, strerror(errno));
    return t->status;
}

/* Writes b to 'path' as DOT text, or rendered in 'format' when it is not NULL. */
static ag_status save_text(ag_tape *t, const char *who, const dot_text *b, const char *path,
                           const char *format)
{
    if (format) {
        char err[256];
        ag_status s = ag_dot_render(b->s, format, path, err, sizeof err);
        if (s != AG_OK)
            agi_error(t, s, "%s: %s", who, err);
        return s != AG_OK ? s : t->status;
    }
    FILE *f = fopen(path, "wb");
    if (!f) {
        agi_error(t, AG_EIO, "%s: cannot open '%s' for writing: %s", who, path, strerror(errno));
        return t->status != AG_OK ? t->status : AG_EIO;
    }
    bool ok = fwrite(b->s, 1, b->len, f) == b->len;
    ok &= fclose(f) == 0;
    if (!ok) {
        agi_error(t, AG_EIO, "%s: writing '%s' failed: %s", who, path, strerror(errno));
        return t->status != AG_OK ? t->status : AG_EIO;
    }
    return t->status;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    if (n < m)
        return false;
    for (size_t i = 0; i < m; i++) {
        char c = s[n - m + i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != suffix[i])
            return false;
    }
    return true;
}

/* The render format a file name asks for: NULL for DOT text, "" when unknown. */
static const char *format_of_path(const char *path)
{
    if (ends_with(path, ".dot") || ends_with(path, ".gv"))
        return NULL;
    static const char *const formats[] = {"svg", "png", "pdf"};
    for (size_t i = 0; i < ARRAY_LEN(formats); i++) {
        char ext[8];
        snprintf(ext, sizeof ext, ".%s", formats[i]);
        if (ends_with(path, ext))
            return formats[i];
    }
    return "";
}

ag_status ag_dot_write(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, FILE *f)
{
    static const char who[] = "ag_dot_write";
    ag_dot_options o;
    if (t && t->status == AG_OK && !f)
        agi_error(t, AG_EINVAL, "%s: the FILE is NULL", who);
    if (!f || !begin(t, who, y, false, opt, &o))
        return t ? t->status : AG_EINVAL;
    dg_graph g = {0};
    dot_text b = {t, NULL, 0, 0, false};
    if (agi_dg_build(&g, t, y) == AG_OK) {
        draw(&b, &g, &o, -1);
        if (!b.oom)
            write_text(t, who, &b, f);
    }
    agi_dg_free(&g);
    ag_status s = finish(t, who, &b);
    text_free(&b);
    return s;
}

ag_status ag_dot_save(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, const char *path)
{
    static const char who[] = "ag_dot_save";
    ag_dot_options o;
    if (t && t->status == AG_OK && !path)
        agi_error(t, AG_EINVAL, "%s: the path is NULL", who);
    if (!path || !begin(t, who, y, false, opt, &o))
        return t ? t->status : AG_EINVAL;
    const char *format = format_of_path(path);
    if (format && !*format) {
        agi_error(t, AG_EINVAL, "%s: '%s' does not end in .dot, .gv, .svg, .png or .pdf", who, path);
        return t->status;
    }
    dg_graph g = {0};
    dot_text b = {t, NULL, 0, 0, false};
    ag_status s = AG_OK;
    if (agi_dg_build(&g, t, y) == AG_OK) {
        draw(&b, &g, &o, -1);
        if (!b.oom)
            s = save_text(t, who, &b, path, format);
    }
    agi_dg_free(&g);
    ag_status f = finish(t, who, &b);
    text_free(&b);
    return s != AG_OK ? s : f;
}

/* Builds the graph for the step functions, which need gradients: a tape in
** error cannot replay, so it is refused. */
static bool build_for_steps(dg_graph *g, ag_tape *t, const char *who, ag_tensor *y,
                            const ag_dot_options *opt, ag_dot_options *o)
{
    memset(g, 0, sizeof *g);
    if (!begin(t, who, y, true, opt, o) || t->status != AG_OK)
        return false;
    return agi_dg_build(g, t, y) == AG_OK;
}

int64_t ag_dot_steps(ag_tape *t, ag_tensor *y)
{
    dg_graph g = {0};
    ag_dot_options o;
    int64_t n = build_for_steps(&g, t, "ag_dot_steps", y, NULL, &o) ? g.n_steps : -1;
    agi_dg_free(&g);
    return n;
}

ag_status ag_dot_write_step(ag_tape *t, ag_tensor *y, int64_t k, const ag_dot_options *opt,
                            FILE *f)
{
    static const char who[] = "ag_dot_write_step";
    dg_graph g = {0};
    ag_dot_options o;
    dot_text b = {t, NULL, 0, 0, false};
    if (t && t->status == AG_OK && !f)
        agi_error(t, AG_EINVAL, "%s: the FILE is NULL", who);
    if (f && build_for_steps(&g, t, who, y, opt, &o)) {
        if (k < 0 || k > g.n_steps)
            agi_error(t, AG_EINVAL, "%s: step %lld is outside 0..%lld", who, (long long)k,
                      (long long)g.n_steps);
        else
            draw(&b, &g, &o, k);
        if (t->status == AG_OK && !b.oom)
            write_text(t, who, &b, f);
    }
    if (f)
        agi_dg_free(&g);
    ag_status s = t ? finish(t, who, &b) : AG_EINVAL;
    text_free(&b);
    return s;
}

ag_status ag_dot_save_steps(ag_tape *t, ag_tensor *y, const ag_dot_options *opt, const char *dir,
                            const char *format, int64_t *frames)
{
    static const char who[] = "ag_dot_save_steps";
    if (frames)
        *frames = 0;
    if (!format)
        format = "dot";
    if (t && t->status == AG_OK) {
        if (!dir)
            agi_error(t, AG_EINVAL, "%s: the directory is NULL", who);
        else if (strcmp(format, "dot") && strcmp(format, "svg") && strcmp(format, "png") &&
                 strcmp(format, "pdf"))
            agi_error(t, AG_EINVAL, "%s: format '%s' is not dot, svg, png or pdf", who, format);
    }
    dg_graph g = {0};
    ag_dot_options o;
    if (!t || t->status != AG_OK || !build_for_steps(&g, t, who, y, opt, &o)) {
        if (t)
            agi_dg_free(&g);
        return t ? t->status : AG_EINVAL;
    }
    int width = 3;
    for (int64_t n = g.n_steps; n >= 1000; n /= 10)
        width++;
    dot_text b = {t, NULL, 0, 0, false};
    for (int64_t k = 0; k <= g.n_steps && t->status == AG_OK; k++) {
        char path[4096];
        int len = snprintf(path, sizeof path, "%s/step_%0*lld.%s", dir, width, (long long)k, format);
        if (len < 0 || (size_t)len >= sizeof path) {
            agi_error(t, AG_EINVAL, "%s: the directory name is too long", who);
            break;
        }
        b.len = 0;
        draw(&b, &g, &o, k);
        if (b.oom)
            break;
        if (save_text(t, who, &b, path, strcmp(format, "dot") ? format : NULL) != AG_OK)
            break;
        if (frames)
            *frames = k + 1;
    }
    agi_dg_free(&g);
    ag_status s = finish(t, who, &b);
    text_free(&b);
    return s;
}
