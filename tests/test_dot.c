/*
** test_dot.c: DOT export (dot.c, dot_graph.c, dot_render.c). Golden files
** under tests/golden/ pin the exact text; set AG_UPDATE_GOLDEN=1 to rewrite
** them after a deliberate change, then review the diff. Every text a test
** makes is also given to Graphviz's `dot` when it is on PATH, which must
** accept it without a single warning.
*/
#define _POSIX_C_SOURCE 200809L
#include "alloc_hooks.h"
#include "autograd.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    cr_assert(s);
    for (;;) {
        size_t got = fread(s + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 >= cap) {
            cap *= 2;
            s = realloc(s, cap);
            cr_assert(s);
        }
    }
    s[n] = '\0';
    if (len)
        *len = n;
    return s;
}

static char *read_path(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = read_stream(f, len);
    fclose(f);
    return s;
}

/* The DOT text of ag_dot_write (or of frame k when k >= 0); *st gets the status. */
static char *dot_of(ag_tape *t, ag_tensor *y, const ag_dot_options *o, int64_t k, ag_status *st)
{
    FILE *f = tmpfile();
    cr_assert(f);
    ag_status s = k < 0 ? ag_dot_write(t, y, o, f) : ag_dot_write_step(t, y, k, o, f);
    if (st)
        *st = s;
    rewind(f);
    char *text = read_stream(f, NULL);
    fclose(f);
    return text;
}

static bool have_dot(void) { return system("command -v dot >/dev/null 2>&1") == 0; }

/* A fresh directory for one test's files. */
static char *temp_dir(void)
{
    char *dir = strdup("/tmp/ag_test_dot_XXXXXX");
    cr_assert(dir && mkdtemp(dir), "mkdtemp failed");
    return dir;
}

static void remove_dir(char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);
    free(dir);
}

/* Graphviz's dot must lay the text out to SVG, exit 0, and say nothing. */
static void expect_dot_accepts(const char *text)
{
    if (!have_dot())
        return;   /* the DOT text is still checked byte for byte elsewhere */
    char *dir = temp_dir();
    char in[128], err[128], cmd[512];
    snprintf(in, sizeof in, "%s/g.dot", dir);
    snprintf(err, sizeof err, "%s/err.txt", dir);
    FILE *f = fopen(in, "wb");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "dot -Tsvg '%s' -o /dev/null 2>'%s'", in, err);
    int rc = system(cmd);
    char *msg = read_path(err, NULL);
    cr_expect_eq(rc, 0, "dot -Tsvg failed on:\n%s\n%s", text, msg ? msg : "");
    cr_expect(msg && msg[0] == '\0', "dot -Tsvg complained: %s", msg ? msg : "");
    free(msg);
    remove_dir(dir);
}

static void expect_golden(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "golden/%s", name);
    const char *update = getenv("AG_UPDATE_GOLDEN");
    if (update && *update && strcmp(update, "0") != 0) {
        FILE *f = fopen(path, "wb");
        cr_assert(f, "cannot write %s", path);
        fputs(text, f);
        fclose(f);
    }
    char *want = read_path(path, NULL);
    cr_assert(want, "missing %s (run with AG_UPDATE_GOLDEN=1 from tests/ to make it)", path);
    cr_expect_str_eq(text, want, "%s differs from the golden file", path);
    free(want);
    expect_dot_accepts(text);
}

static int count(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ------------------------------------------------------------ graphs */

/* The chain of the documents: B = ab*A, C = bc*B, D = cd*C, L = (D - 17)^2,
** A = 3, with the weights as parameters and A an input. */
typedef struct chain {
    ag_tape *t;
    ag_tensor *w[3], *A, *B, *C, *D, *L;
} chain;

static ag_tensor *named(ag_tensor *x, const char *name)
{
    ag_set_name(x, name);
    return x;
}

static void chain_make(chain *c, ag_tape *t)
{
    static const double w[3] = {0.5, 1.5, 2.0};
    static const char *const names[3] = {"ab", "bc", "cd"};
    c->t = t ? t : ag_tape_new();
    for (int i = 0; i < 3; i++)
        c->w[i] = named(ag_param_scalar(AG_F64, w[i]), names[i]);
    c->A = named(ag_requires_grad(ag_scalar(c->t, AG_F64, 3.0)), "A");
    c->B = named(ag_mul(c->t, c->w[0], c->A), "B");
    c->C = named(ag_mul(c->t, c->w[1], c->B), "C");
    c->D = named(ag_mul(c->t, c->w[2], c->C), "D");
    ag_tensor *diff = ag_sub(c->t, c->D, ag_scalar(c->t, AG_F64, 17.0));
    c->L = named(ag_pow(c->t, diff, ag_scalar(c->t, AG_F64, 2.0)), "L");
    cr_assert_eq(ag_tape_status(c->t), AG_OK, "%s", ag_tape_errmsg(c->t));
}

static void chain_free(chain *c)
{
    ag_tape_free(c->t);
    for (int i = 0; i < 3; i++)
        ag_param_free(c->w[i]);
}

/* micrograd's two-input neuron: o = tanh(x1*w1 + x2*w2 + b). */
typedef struct neuron {
    ag_tape *t;
    ag_tensor *w1, *w2, *b, *x1, *x2, *n, *o;
} neuron;

static void neuron_make(neuron *m)
{
    m->t = ag_tape_new();
    m->w1 = named(ag_param_scalar(AG_F64, -3.0), "w1");
    m->w2 = named(ag_param_scalar(AG_F64, 1.0), "w2");
    m->b = named(ag_param_scalar(AG_F64, 6.8813735870195432), "b");
    m->x1 = named(ag_requires_grad(ag_scalar(m->t, AG_F64, 2.0)), "x1");
    m->x2 = named(ag_requires_grad(ag_scalar(m->t, AG_F64, 0.0)), "x2");
    ag_tensor *x1w1 = named(ag_mul(m->t, m->x1, m->w1), "x1*w1");
    ag_tensor *x2w2 = named(ag_mul(m->t, m->x2, m->w2), "x2*w2");
    ag_tensor *sum = named(ag_add(m->t, x1w1, x2w2), "x1*w1 + x2*w2");
    m->n = named(ag_add(m->t, sum, m->b), "n");
    m->o = named(ag_tanh(m->t, m->n), "o");
    cr_assert_eq(ag_tape_status(m->t), AG_OK, "%s", ag_tape_errmsg(m->t));
}

static void neuron_free(neuron *m)
{
    ag_tape_free(m->t);
    ag_param_free(m->w1);
    ag_param_free(m->w2);
    ag_param_free(m->b);
}

/* A broadcasting tensor op: L = sum(X * b) with X [2,3] and b [3]. */
typedef struct bcast {
    ag_tape *t;
    ag_tensor *b, *X, *Y, *L;
} bcast;

static void bcast_make(bcast *m)
{
    static const double x[6] = {1, 2, 3, 4, 5, 6};
    m->t = ag_tape_new();
    m->b = named(ag_param_new(AG_F64, 1, (int64_t[]){3}), "b");
    ag_set(m->b, 0, 0.5), ag_set(m->b, 1, -1), ag_set(m->b, 2, 2);
    m->X = named(ag_requires_grad(ag_tensor_from(m->t, AG_F64, 2, (int64_t[]){2, 3}, x)), "X");
    m->Y = named(ag_mul(m->t, m->X, m->b), "Y");
    m->L = named(ag_sum(m->t, m->Y), "L");
    cr_assert_eq(ag_tape_status(m->t), AG_OK, "%s", ag_tape_errmsg(m->t));
}

static void bcast_free(bcast *m)
{
    ag_tape_free(m->t);
    ag_param_free(m->b);
}

/* -------------------------------------------------------------- golden */

Test(dot_golden, chain)
{
    chain c;
    chain_make(&c, NULL);
    ag_status st;
    char *text = dot_of(c.t, c.L, NULL, -1, &st);
    cr_assert_eq(st, AG_OK, "%s", ag_tape_errmsg(c.t));
    expect_golden("chain.dot", text);
    /* Values, gradients and chain-rule labels worked out by hand:
    ** dL/dD = 2(D - 17) = -25, dL/dC = -25*cd = -50, dL/dB = -50*bc = -75. */
    cr_expect(strstr(text, "&#8706;D/&#8706;C = 2</font><br/><font color=\"#b91c1c\">(-25) &#215; 2 = -50"));
    cr_expect(strstr(text, "&#8706;C/&#8706;B = 1.5</font><br/><font color=\"#b91c1c\">(-50) &#215; 1.5 = -75"));
    cr_expect(strstr(text, "&#8706;B/&#8706;A = 0.5</font><br/><font color=\"#b91c1c\">(-75) &#215; 0.5 = -37.5"));
    cr_expect(strstr(text, "&#8706;B/&#8706;ab = 3</font><br/><font color=\"#b91c1c\">(-75) &#215; 3 = -225"));
    cr_expect(strstr(text, "<b>L</b></td></tr><tr><td align=\"left\">value</td><td align=\"left\" balign=\"left\">156.25"));
    free(text);
    chain_free(&c);
}

Test(dot_golden, micrograd_neuron)
{
    neuron m;
    neuron_make(&m);
    ag_status st;
    char *text = dot_of(m.t, m.o, NULL, -1, &st);
    cr_assert_eq(st, AG_OK, "%s", ag_tape_errmsg(m.t));
    expect_golden("neuron.dot", text);
    /* do/dn = 1 - tanh(n)^2 = 0.5; do/dx1 = 0.5 * w1 = -1.5; do/dw1 = 0.5 * x1 = 1. */
    cr_expect(strstr(text, "&#8706;o/&#8706;n = 0.5"));
    cr_expect(strstr(text, "0.5 &#215; (-3) = -1.5"));
    cr_expect(strstr(text, "0.5 &#215; 2 = 1"));
    cr_expect(strstr(text, "value</td><td align=\"left\" balign=\"left\">0.707107"));
    free(text);
    neuron_free(&m);
}

Test(dot_golden, broadcast_tensor_op)
{
    bcast m;
    bcast_make(&m);
    ag_status st;
    char *text = dot_of(m.t, m.L, NULL, -1, &st);
    cr_assert_eq(st, AG_OK, "%s", ag_tape_errmsg(m.t));
    expect_golden("broadcast.dot", text);
    /* dL/dY = ones; dL/db sums X over the broadcast rows: [1+4, 2+5, 3+6]. */
    cr_expect(strstr(text, "&#8706;L/&#8706;Y = [[1, 1, 1],<br/>[1, 1, 1]]"));
    cr_expect(strstr(text, "contributes [5, 7, 9]"));
    cr_expect(strstr(text, "contributes [[0.5, -1, 2],<br/>[0.5, -1, 2]]"));
    cr_expect(strstr(text, "<b>X</b> <font point-size=\"9\" color=\"#6b7280\">[2,3]</font>"));
    free(text);
    bcast_free(&m);
}

Test(dot_golden, chain_backward_step)
{
    chain c;
    chain_make(&c, NULL);
    cr_assert_eq(ag_dot_steps(c.t, c.L), 5);
    ag_status st;
    char *text = dot_of(c.t, c.L, NULL, 3, &st);
    cr_assert_eq(st, AG_OK, "%s", ag_tape_errmsg(c.t));
    expect_golden("chain_step3.dot", text);
    cr_expect(strstr(text, "backward step 3 of 5</b>: mul &#8594; D passes its gradient back"));
    free(text);
    chain_free(&c);
}

/* ------------------------------------------------------------ content */

Test(dot, same_computation_gives_the_same_bytes)
{
    chain a, b;
    chain_make(&a, NULL);
    ag_tape *t = ag_tape_new();
    ag_tensor *junk = ag_scalar(t, AG_F64, 1.0);   /* moves every address */
    (void)junk;
    chain_make(&b, t);
    char *ta = dot_of(a.t, a.L, NULL, -1, NULL), *tb = dot_of(b.t, b.L, NULL, -1, NULL);
    cr_expect_str_eq(ta, tb);
    char *again = dot_of(a.t, a.L, NULL, -1, NULL);
    cr_expect_str_eq(ta, again, "drawing twice changed the text");
    free(ta), free(tb), free(again);
    chain_free(&a);
    chain_free(&b);
}

Test(dot, a_value_used_twice_shows_each_contribution_and_the_sum)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 3.0)), "x");
    ag_tensor *y = named(ag_add(t, ag_mul(t, x, x), x), "y");   /* dy/dx = 2x + 1 = 7 */
    char *text = dot_of(t, y, NULL, -1, NULL);
    /* The add is replayed first (1), then both inputs of x*x (3 each). */
    cr_expect(strstr(text, "grad</td><td align=\"left\" balign=\"left\">1 + 3 + 3 = 7</td>"), "%s", text);
    cr_expect_eq(count(text, "&#8706;out/&#8706;x = 3"), 2);
    expect_dot_accepts(text);
    free(text);
    ag_tape_free(t);
}

Test(dot, negative_contributions_are_subtracted_in_the_sum)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 2.0)), "x");
    ag_tensor *y = ag_sub(t, ag_mul(t, x, ag_scalar(t, AG_F64, 5.0)), ag_mul(t, x, x));
    char *text = dot_of(t, y, NULL, -1, NULL);   /* 5 - 2 - 2 = 1 */
    cr_expect(strstr(text, "5 - 2 - 2 = 1</td>"), "%s", text);
    free(text);
    ag_tape_free(t);
}

Test(dot, the_graph_of_an_output_leaves_out_what_does_not_reach_it)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 2.0)), "x");
    ag_tensor *y = named(ag_exp(t, x), "y");
    ag_tensor *z = named(ag_sin(t, x), "z");
    char *only_y = dot_of(t, y, NULL, -1, NULL), *all = dot_of(t, NULL, NULL, -1, NULL);
    cr_expect(strstr(only_y, "<b>y</b>") && !strstr(only_y, "<b>z</b>"));
    cr_expect(strstr(all, "<b>y</b>") && strstr(all, "<b>z</b>"));
    cr_expect_eq(count(only_y, "[shape=box"), 1);
    cr_expect_eq(count(all, "[shape=box"), 2);
    /* Both sinks of the whole tape are drawn as outputs. */
    cr_expect_eq(count(all, "bgcolor=\"#fee2e2\" color=\"#b91c1c\"><tr>"), 2);
    (void)z;
    free(only_y), free(all);
    ag_tape_free(t);
}

Test(dot, the_whole_tape_shows_stored_gradients)
{
    chain c;
    chain_make(&c, NULL);
    char *before = dot_of(c.t, NULL, NULL, -1, NULL);
    cr_expect(!strstr(before, "-37.5"), "no backward yet, so no gradient of A");
    ag_backward(c.t, c.L);
    char *after = dot_of(c.t, NULL, NULL, -1, NULL);
    cr_expect(strstr(after, "<b>A</b></td></tr><tr><td align=\"left\">value</td><td align=\"left\" balign=\"left\">3</td></tr><tr><td align=\"left\">grad</td><td align=\"left\" balign=\"left\">-37.5</td>"));
    cr_expect(strstr(after, "(-75) &#215; 0.5 = -37.5"));
    expect_dot_accepts(after);
    free(before), free(after);
    chain_free(&c);
}

Test(dot, drawing_touches_no_stored_gradient)
{
    chain c;
    chain_make(&c, NULL);
    size_t entries = ag_tape_entries(c.t);
    char *text = dot_of(c.t, c.L, NULL, -1, NULL);
    cr_expect_null(ag_grad(c.A));
    cr_expect_eq(ag_grad_item(c.w[0]), 0.0);
    cr_expect_eq(ag_tape_entries(c.t), entries, "drawing recorded ops");
    ag_backward(c.t, c.L);
    cr_expect_float_eq(ag_grad_item(c.w[0]), -225.0, 1e-12);
    cr_expect_float_eq(ag_grad_item(c.A), -37.5, 1e-12);
    free(text);
    chain_free(&c);
}

Test(dot, options_change_direction_labels_legend_and_digits)
{
    neuron m;
    neuron_make(&m);
    ag_dot_options o = {0};
    char *lr = dot_of(m.t, m.o, &o, -1, NULL);
    cr_expect(strstr(lr, "rankdir=LR") && strstr(lr, "legend") && strstr(lr, "&#8706;"));
    o.top_to_bottom = 1;
    o.plain = 1;
    o.no_legend = 1;
    o.digits = 3;
    o.title = "a neuron";
    char *tb = dot_of(m.t, m.o, &o, -1, NULL);
    cr_expect(strstr(tb, "rankdir=TB"));
    cr_expect(!strstr(tb, "&#8706;") && !strstr(tb, "legend"));
    cr_expect(strstr(tb, ">0.707</td>") && strstr(tb, "label=<a neuron>"));
    expect_dot_accepts(tb);
    free(lr), free(tb);
    neuron_free(&m);
}

Test(dot, names_of_every_kind_are_escaped)
{
    static const char *const names[] = {
        "q\"uote", "back\\slash\\N", "{brace}", "<tag> & amp", "caf\xc3\xa9 \xce\xb1\xce\xb2",
        "emoji \xf0\x9f\x98\x80", "bad \xff\xfe byte", "cut \xe2\x82", "ctl\x01\ttab",
        "nonchar \xef\xbf\xbe", "surrogate \xed\xa0\x80", "overlong \xc0\xaf",
    };
    ag_tape *t = ag_tape_new();
    ag_tensor *acc = ag_requires_grad(ag_scalar(t, AG_F64, 1.0));
    ag_set_name(acc, names[0]);
    for (size_t i = 1; i < sizeof names / sizeof names[0]; i++)
        acc = named(ag_mul(t, acc, ag_scalar(t, AG_F64, 2.0)), names[i]);
    ag_dot_options o = {0};
    o.title = "title \"with\" <html> & \\N \xff";
    char *text = dot_of(t, acc, &o, -1, NULL);
    cr_expect(strstr(text, "q&quot;uote"));
    cr_expect(strstr(text, "back\\\\slash\\\\N"));
    cr_expect(strstr(text, "&lt;tag&gt; &amp; amp"));
    cr_expect(strstr(text, "caf\xc3\xa9 \xce\xb1\xce\xb2"), "valid UTF-8 stays as it is");
    cr_expect(strstr(text, "bad &#xFFFD;&#xFFFD; byte"));
    cr_expect(strstr(text, "cut &#xFFFD;&#xFFFD;"));
    cr_expect(strstr(text, "ctl&#xFFFD;&#xFFFD;tab"));
    cr_expect(strstr(text, "nonchar &#xFFFD;&#xFFFD;&#xFFFD;"));
    cr_expect(!strstr(text, "\xff") && !strstr(text, "\x01"));
    expect_dot_accepts(text);
    free(text);
    ag_tape_free(t);
}

Test(dot, a_name_cut_inside_a_utf8_character_stays_valid)
{
    char name[80];
    memset(name, 'a', 62);
    strcpy(name + 62, "\xc3\xa9tail");   /* the library keeps 63 bytes: half of the e-acute */
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 1.0)), name);
    char *text = dot_of(t, x, NULL, -1, NULL);
    cr_expect(strstr(text, "aaaa&#xFFFD;</b>"), "%s", text);
    expect_dot_accepts(text);
    free(text);
    ag_tape_free(t);
}

Test(dot, tensors_show_shape_dtype_and_small_values)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *small = named(ag_requires_grad(ag_arange(t, AG_F32, 0, 4, 1)), "v");
    ag_tensor *big = named(ag_requires_grad(ag_ones(t, AG_F64, 2, (int64_t[]){5, 4})), "M");
    ag_tensor *y = ag_add(t, ag_sum(t, ag_mul(t, small, small)), ag_cast(t, ag_sum(t, big), AG_F32));
    char *text = dot_of(t, y, NULL, -1, NULL);
    cr_expect(strstr(text, "<b>v</b> <font point-size=\"9\" color=\"#6b7280\">[4] f32</font>"));
    cr_expect(strstr(text, ">[0, 1, 2, 3]</td>"));
    cr_expect(strstr(text, ">[0, 2, 4, 6] <font color=\"#6b7280\">(sum of 2)</font></td>"),
              "grad of sum(v*v) is 2v, from two edges");
    cr_expect(strstr(text, "<i>20 values</i>"));
    expect_dot_accepts(text);
    free(text);
    ag_tape_free(t);
}

Test(dot, special_values_are_spelled_out)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 0.0)), "x");
    ag_tensor *y = ag_add(t, ag_log(t, x), ag_mul(t, x, ag_scalar(t, AG_F64, -0.0)));
    char *text = dot_of(t, y, NULL, -1, NULL);
    cr_expect(strstr(text, ">-inf</td>"), "log 0");
    cr_expect(strstr(text, "&#8706;out/&#8706;x = inf"), "d log x / dx at 0");
    cr_expect(!strstr(text, "-0<") && !strstr(text, "-0 "), "negative zero reads as 0");
    expect_dot_accepts(text);
    free(text);
    ag_tape_free(t);
}

/* ------------------------------------------------------ backward frames */

static const ag_dot_options NO_LEGEND = {.no_legend = 1};

Test(dot_steps, frames_show_gradients_as_they_become_known)
{
    chain c;
    chain_make(&c, NULL);
    char *f0 = dot_of(c.t, c.L, &NO_LEGEND, 0, NULL);
    cr_expect(strstr(f0, "seed grad(L) = 1"));
    cr_expect(strstr(f0, "1 <font color=\"#6b7280\">(seed)</font>"));
    cr_expect_eq(count(f0, ">?</font>"), 8, "every gradient but the seed is unknown");
    cr_expect(!strstr(f0, "&#215;"), "no contribution yet");
    char *f1 = dot_of(c.t, c.L, &NO_LEGEND, 1, NULL);
    cr_expect(strstr(f1, "fillcolor=\"#fde047\", color=\"#dc2626\", penwidth=3, label=<pow>"));
    cr_expect_eq(count(f1, "&#215;"), 1, "the pow sent one contribution");
    cr_expect_eq(count(f1, ">?</font>"), 7);
    char *last = dot_of(c.t, c.L, &NO_LEGEND, 5, NULL);
    char *full = dot_of(c.t, c.L, &NO_LEGEND, -1, NULL);
    cr_expect(!strstr(last, ">?</font>"));
    cr_expect_eq(count(last, "&#215;"), count(full, "&#215;"));
    cr_expect(strstr(last, "label=<mul>") && strstr(last, "penwidth=3, label=<mul>"));
    expect_dot_accepts(f0);
    expect_dot_accepts(f1);
    free(f0), free(f1), free(last), free(full);
    chain_free(&c);
}

Test(dot_steps, partial_sums_are_marked_until_complete)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 3.0)), "x");
    ag_tensor *a = named(ag_exp(t, x), "a");
    ag_tensor *y = named(ag_add(t, a, x), "y");   /* x feeds exp and add */
    cr_assert_eq(ag_dot_steps(t, y), 2);
    char *f1 = dot_of(t, y, NULL, 1, NULL), *f2 = dot_of(t, y, NULL, 2, NULL);
    cr_expect(strstr(f1, "<b>x</b></td></tr><tr><td align=\"left\">value</td><td align=\"left\" balign=\"left\">3</td></tr><tr><td align=\"left\">grad</td><td align=\"left\" balign=\"left\">1 <font color=\"#6b7280\"><i>so far</i></font>"), "%s", f1);
    cr_expect(strstr(f2, ">1 + 20.0855 = 21.0855</td>"), "%s", f2);
    free(f1), free(f2);
    ag_tape_free(t);
}

Test(dot_steps, save_steps_writes_every_frame)
{
    neuron m;
    neuron_make(&m);
    char *dir = temp_dir();
    int64_t frames = -1;
    cr_assert_eq(ag_dot_save_steps(m.t, m.o, NULL, dir, NULL, &frames), AG_OK, "%s",
                 ag_tape_errmsg(m.t));
    cr_expect_eq(frames, 6);   /* 5 ops: frames 0..5 */
    for (int k = 0; k <= 5; k++) {
        char path[256];
        snprintf(path, sizeof path, "%s/step_%03d.dot", dir, k);
        char *text = read_path(path, NULL), *want = dot_of(m.t, m.o, NULL, k, NULL);
        cr_assert(text, "missing %s", path);
        cr_expect_str_eq(text, want);
        if (k == 5)
            expect_dot_accepts(text);
        free(text), free(want);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/step_006.dot", dir);
    cr_expect_null(fopen(path, "rb"));
    remove_dir(dir);
    neuron_free(&m);
}

Test(dot_steps, rendered_frames_or_a_clear_refusal)
{
    chain c;
    chain_make(&c, NULL);
    char *dir = temp_dir();
    int64_t frames = 0;
    ag_status s = ag_dot_save_steps(c.t, c.L, NULL, dir, "svg", &frames);
    if (ag_dot_can_render()) {
        cr_assert_eq(s, AG_OK, "%s", ag_tape_errmsg(c.t));
        cr_expect_eq(frames, 6);
        char path[256];
        snprintf(path, sizeof path, "%s/step_005.svg", dir);
        char *svg = read_path(path, NULL);
        cr_assert(svg);
        cr_expect(strstr(svg, "<svg"));
        free(svg);
    } else {
        cr_expect_eq(s, AG_EUNSUPPORTED);
        cr_expect(strstr(ag_tape_errmsg(c.t), "Graphviz"), "%s", ag_tape_errmsg(c.t));
        cr_expect_eq(frames, 0);
    }
    remove_dir(dir);
    chain_free(&c);
}

Test(dot_steps, bad_arguments)
{
    chain c;
    chain_make(&c, NULL);
    FILE *f = tmpfile();
    cr_expect_eq(ag_dot_write_step(c.t, c.L, 6, NULL, f), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "step 6 is outside 0..5"), "%s", ag_tape_errmsg(c.t));
    ag_tape_reset(c.t);
    chain_free(&c);
    chain_make(&c, NULL);
    cr_expect_eq(ag_dot_write_step(c.t, NULL, 0, NULL, f), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "NULL"));
    chain_free(&c);
    chain_make(&c, NULL);
    cr_expect_eq(ag_dot_save_steps(c.t, c.L, NULL, "/tmp", "gif", NULL), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "'gif'"));
    chain_free(&c);
    chain_make(&c, NULL);
    cr_expect_eq(ag_dot_save_steps(c.t, c.L, NULL, "/nonexistent/dir", "dot", NULL), AG_EIO);
    cr_expect(strstr(ag_tape_errmsg(c.t), "/nonexistent/dir/step_000.dot"));
    cr_expect_eq(ag_dot_steps(c.t, c.L), -1, "the tape is in error now");
    chain_free(&c);
    fclose(f);
}

/* ---------------------------------------------------------- saving, errors */

Test(dot_save, dot_files_hold_the_same_text)
{
    chain c;
    chain_make(&c, NULL);
    char *dir = temp_dir(), path[256];
    snprintf(path, sizeof path, "%s/chain.GV", dir);
    cr_assert_eq(ag_dot_save(c.t, c.L, NULL, path), AG_OK, "%s", ag_tape_errmsg(c.t));
    char *saved = read_path(path, NULL), *written = dot_of(c.t, c.L, NULL, -1, NULL);
    cr_expect_str_eq(saved, written);
    free(saved), free(written);
    snprintf(path, sizeof path, "%s/chain.txt", dir);
    cr_expect_eq(ag_dot_save(c.t, c.L, NULL, path), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), ".dot, .gv, .svg, .png or .pdf"));
    remove_dir(dir);
    chain_free(&c);
}

Test(dot_save, svg_with_graphviz_or_a_clear_error_without)
{
    chain c;
    chain_make(&c, NULL);
    char *dir = temp_dir(), path[256];
    snprintf(path, sizeof path, "%s/chain.svg", dir);
    ag_status s = ag_dot_save(c.t, c.L, NULL, path);
    if (ag_dot_can_render()) {
        cr_assert_eq(s, AG_OK, "%s", ag_tape_errmsg(c.t));
        char *svg = read_path(path, NULL);
        cr_assert(svg);
        cr_expect(strstr(svg, "<svg") && strstr(svg, "156.25"));
        free(svg);
    } else {
        cr_expect_eq(s, AG_EUNSUPPORTED);
        cr_expect(strstr(ag_tape_errmsg(c.t), "Graphviz"), "%s", ag_tape_errmsg(c.t));
    }
    remove_dir(dir);
    chain_free(&c);
}

Test(dot_render, arguments_and_failures)
{
    char err[256];
    cr_expect_eq(ag_dot_render(NULL, "svg", "/tmp/x.svg", err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "DOT text is NULL"));
    cr_expect_eq(ag_dot_render("digraph{a}", "gif", "/tmp/x.gif", err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "'gif'"));
    cr_expect_eq(ag_dot_render("digraph{a}", "svg", "/tmp/x.svg", NULL, 0),
                 ag_dot_can_render() ? AG_OK : AG_EUNSUPPORTED);
    if (ag_dot_can_render()) {
        cr_expect_eq(ag_dot_render("digraph { a -> }", "svg", "/tmp/ag_bad.svg", err, sizeof err),
                     AG_EINVAL);
        cr_expect(strstr(err, "syntax error") && strstr(err, "failed (exit"), "%s", err);
        cr_expect_eq(ag_dot_render("digraph{a}", "png", "/nonexistent/dir/x.png", err, sizeof err),
                     AG_EIO);
        cr_expect(strstr(err, "/nonexistent/dir/x.png"), "%s", err);
        remove("/tmp/ag_bad.svg");
    } else {
        cr_expect_eq(ag_dot_render("digraph{a}", "png", "/tmp/x.png", err, sizeof err),
                     AG_EUNSUPPORTED);
        cr_expect(strstr(err, "Graphviz"), "%s", err);
    }
    remove("/tmp/x.svg");
}

Test(dot_errors, bad_arguments_are_reported_on_the_tape)
{
    chain c;
    chain_make(&c, NULL);
    cr_expect_eq(ag_dot_write(c.t, c.L, NULL, NULL), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "ag_dot_write: the FILE is NULL"));
    chain_free(&c);

    chain_make(&c, NULL);
    ag_tape *other = ag_tape_new();
    ag_tensor *foreign = ag_scalar(other, AG_F64, 1.0);
    FILE *f = tmpfile();
    cr_expect_eq(ag_dot_write(c.t, foreign, NULL, f), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "another tape"));
    ag_tape_free(other);
    chain_free(&c);

    chain_make(&c, NULL);
    ag_dot_options o = {0};
    o.digits = 18;
    cr_expect_eq(ag_dot_write(c.t, c.L, &o, f), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "digits is 18"));
    chain_free(&c);
    cr_expect_eq(ag_dot_write(NULL, NULL, NULL, f), AG_EINVAL);
    fclose(f);
}

Test(dot_errors, a_failed_tape_is_still_drawn_without_gradients)
{
    chain c;
    chain_make(&c, NULL);
    ag_add(c.t, ag_ones(c.t, AG_F64, 1, (int64_t[]){3}), ag_ones(c.t, AG_F64, 1, (int64_t[]){2}));
    cr_assert_neq(ag_tape_status(c.t), AG_OK);
    ag_status st;
    char *text = dot_of(c.t, c.L, NULL, -1, &st);
    cr_expect_eq(st, ag_tape_status(c.t), "the tape's error is returned");
    cr_expect(strstr(text, "<b>L</b>") && strstr(text, "156.25"));
    cr_expect(!strstr(text, ">grad<"), "no gradients on a failed tape");
    expect_dot_accepts(text);
    free(text);
    cr_expect_eq(ag_dot_steps(c.t, c.L), -1);
    chain_free(&c);
}

Test(dot_errors, out_of_memory_at_every_allocation)
{
    /* Fail each allocation in turn: every one gives AG_ENOMEM or success,
    ** never a crash, and nothing leaks. */
    for (long n = 1; n < 400; n++) {
        alloc_hooks h = {0};
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        cr_assert(t);
        chain c;
        chain_make(&c, t);
        long before = h.requests;
        h.fail_at = before + n;
        FILE *f = tmpfile();
        ag_status s = ag_dot_write(t, c.L, NULL, f);
        fclose(f);
        bool reached = h.refused > 0;
        cr_expect(s == AG_OK || s == AG_ENOMEM, "status %d at allocation %ld", s, n);
        cr_expect_eq(s == AG_ENOMEM, reached, "allocation %ld: status %d", n, s);
        chain_free(&c);
        cr_expect_eq(h.live, 0, "allocation %ld leaked %ld blocks", n, h.live);
        cr_expect_eq(h.bad_osize, 0);
        if (!reached)
            break;
    }
}

/* Rendering runs Graphviz's program: AG_DOT names another one. The tests
** below need the default build (the one that may start a process). */
#ifndef AG_TEST_NO_RENDER_PROCESS
Test(dot_render, a_missing_program_says_how_to_get_it)
{
    setenv("AG_DOT", "/nonexistent/bin/dot", 1);
    char err[512];
    cr_expect_not(ag_dot_can_render());
    cr_expect_eq(ag_dot_render("digraph{a}", "svg", "/tmp/ag_missing.svg", err, sizeof err),
                 AG_EUNSUPPORTED);
    cr_expect(strstr(err, "Graphviz") && strstr(err, "/nonexistent/bin/dot"), "%s", err);
    FILE *f = fopen("/tmp/ag_missing.svg", "rb");
    cr_expect_null(f, "nothing is written");
    if (f)
        fclose(f);
}

/* A program that fails leaves no file, and an old picture stays as it was. */
Test(dot_render, a_failing_program_leaves_the_old_file)
{
    if (access("/bin/false", X_OK) != 0)
        cr_skip_test("no /bin/false");
    char *dir = temp_dir(), path[256];
    snprintf(path, sizeof path, "%s/old.svg", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    fputs("old", f);
    fclose(f);
    setenv("AG_DOT", "/bin/false", 1);
    char err[512];
    cr_expect_eq(ag_dot_render("digraph{a}", "svg", path, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "failed (exit 1)"), "%s", err);
    char *kept = read_path(path, NULL);
    cr_expect_str_eq(kept, "old");
    free(kept);
    DIR *d = opendir(dir);
    cr_assert(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));)
        files += e->d_name[0] != '.';
    closedir(d);
    cr_expect_eq(files, 1, "no temporary file is left beside the picture");
    remove_dir(dir);
}

/* A program that exits without reading its input must not kill us with
** SIGPIPE, however long the text; and writing nothing is not a picture. */
Test(dot_render, a_program_that_reads_nothing_is_survived)
{
    if (access("/bin/true", X_OK) != 0)
        cr_skip_test("no /bin/true");
    size_t n = 4 << 20;
    char *text = malloc(n + 1);
    cr_assert(text);
    memset(text, ' ', n);
    memcpy(text, "digraph{", 8);
    text[n - 1] = '}';
    text[n] = '\0';
    setenv("AG_DOT", "/bin/true", 1);
    char err[512];
    cr_expect_eq(ag_dot_render(text, "svg", "/tmp/ag_true.svg", err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "wrote nothing"), "%s", err);
    FILE *f = fopen("/tmp/ag_true.svg", "rb");
    cr_expect_null(f);
    if (f)
        fclose(f);
    free(text);
}
#endif
