/*
** test_html.c: the step-through page (html.c, html_layout.c). The page's
** behaviour in a browser is tested by browser_html.py; here, what the file
** holds: its JSON data, its escaping, its steps and their chain-rule text,
** its layout, and its errors.
*/
#define _POSIX_C_SOURCE 200809L
#include "alloc_hooks.h"
#include "autograd.h"
#include "html_layout.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- helpers */

static char *read_stream(FILE *f)
{
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    cr_assert(s);
    for (size_t got; (got = fread(s + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (n + 1 >= cap) {
            cap *= 2;
            s = realloc(s, cap);
            cr_assert(s);
        }
    }
    s[n] = '\0';
    return s;
}

/* The page of ag_html_write; *st (when not NULL) gets the status. */
static char *page_of(ag_tape *t, ag_tensor *y, const ag_dot_options *o, ag_status *st)
{
    FILE *f = tmpfile();
    cr_assert(f);
    ag_status s = ag_html_write(t, y, o, f);
    if (st)
        *st = s;
    rewind(f);
    char *text = read_stream(f);
    fclose(f);
    return text;
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* The chain of the documents: B = ab*A, C = bc*B, D = cd*C, L = (D - 17)^2. */
typedef struct chain {
    ag_tape *t;
    ag_tensor *ab, *bc, *cd, *L;
} chain;

static ag_tensor *named(ag_tensor *x, const char *name)
{
    ag_set_name(x, name);
    return x;
}

static void chain_make(chain *c, ag_tape *t)
{
    c->t = t;
    c->ab = named(ag_param_scalar(AG_F64, 0.5), "ab");
    c->bc = named(ag_param_scalar(AG_F64, 1.5), "bc");
    c->cd = named(ag_param_scalar(AG_F64, 2.0), "cd");
    ag_tensor *A = named(ag_scalar(t, AG_F64, 3.0), "A");
    ag_tensor *B = named(ag_mul(t, c->ab, A), "B");
    ag_tensor *C = named(ag_mul(t, c->bc, B), "C");
    ag_tensor *D = named(ag_mul(t, c->cd, C), "D");
    c->L = named(ag_square(t, ag_sub(t, D, ag_scalar(t, AG_F64, 17.0))), "L");
}

static void chain_free(chain *c)
{
    ag_tape_free(c->t);
    ag_param_free(c->ab);
    ag_param_free(c->bc);
    ag_param_free(c->cd);
}

/* ------------------------------------------------------------ the page */

Test(html, one_file_with_data_and_script_and_nothing_external)
{
    chain c;
    chain_make(&c, ag_tape_new());
    ag_status st;
    char *page = page_of(c.t, c.L, NULL, &st);
    cr_assert_eq(st, AG_OK, "%s", ag_tape_errmsg(c.t));
    cr_expect(!strncmp(page, "<!DOCTYPE html>", 15));
    cr_expect(strstr(page, "<script type=\"application/json\" id=\"ag-data\">{\"title\":"));
    cr_expect_eq(count(page, "<script"), 2, "the data and the script, both inline");
    cr_expect_eq(count(page, "</script>"), 2);
    cr_expect(!strstr(page, "src="), "no external script or image");
    cr_expect(!strstr(page, "<link"), "no external style sheet");
    cr_expect(!strstr(page, "@import") && !strstr(page, "@font-face"));
    cr_expect(!strstr(page, "http:") || !strstr(page, "https:"), "no address but the SVG namespace");
    cr_expect(!strstr(page, "https://"));
    cr_expect(!strstr(page, "@TITLE@") && !strstr(page, "@DATA@"), "every marker filled");
    cr_expect(strstr(page, "</html>\n"));
    free(page);
    chain_free(&c);
}

Test(html, chain_steps_state_the_chain_rule_in_words_and_numbers)
{
    chain c;
    chain_make(&c, ag_tape_new());
    char *page = page_of(c.t, c.L, NULL, NULL);
    cr_expect(strstr(page, "\"steps\":5,"));
    cr_expect_eq(ag_dot_steps(c.t, c.L), 5, "the same steps as the DOT frames");
    cr_expect_eq(count(page, "\"title\":\"Backward step "), 6, "step 0 (the seed) to 5");
    cr_expect_eq(count(page, "\"title\":\"Forward step "), 5, "one per op");
    cr_expect(strstr(page, "\"title\":\"Backward step 0 of 5: the seed\",\"lines\":[[\"rule\","
                           "\"grad(L) = \xe2\x88\x82L/\xe2\x88\x82L = 1\"]"));
    cr_expect(strstr(page, "\"title\":\"Backward step 3 of 5: mul \xe2\x86\x92 D passes grad(D) = "
                           "-25 back to its inputs\""));
    cr_expect(strstr(page, "[\"rule\",\"grad(C) += grad(D) \xc3\x97 \xe2\x88\x82"
                           "D/\xe2\x88\x82" "C = (-25) \xc3\x97 2 = -50\"]"), "%s", page);
    cr_expect(strstr(page, "[\"rule\",\"grad(cd) += grad(D) \xc3\x97 \xe2\x88\x82"
                           "D/\xe2\x88\x82" "cd = (-25) \xc3\x97 2.25 = -56.25\"]"));
    cr_expect(strstr(page, "[\"note\",\"17 is a constant: no gradient flows back to it\"]"));
    cr_expect(strstr(page, "Every gradient is known now: grad(ab) = -225, grad(bc) = -75, "
                           "grad(cd) = -56.25"));
    cr_expect(strstr(page, "[\"rule\",\"B = ab \xc3\x97 A = 0.5 \xc3\x97 3 = 1.5\"]"),
              "the forward walk computes each value");
    cr_expect(strstr(page, "\"label\":\"C\",\"named\":true,\"kind\":\"result\",\"output\":false,"
                           "\"shape\":\"\",\"dtype\":\"f64\",\"value\":\"2.25\",\"op\":1,"
                           "\"wants\":true,\"grads\":[[3,\"-50\",true]]"),
              "C's gradient is known from step 3");
    cr_expect(strstr(page, "\"label\":\"L\",\"named\":true,\"kind\":\"result\",\"output\":true,"));
    cr_expect(strstr(page, "\"grads\":[[0,\"1 (seed)\",true]]"));
    cr_expect(strstr(page, "\"local\":\"\xe2\x88\x82" "D/\xe2\x88\x82" "C = 2\","
                           "\"contrib\":\"(-25) \xc3\x97 2 = -50\""), "the edge's labels");
    free(page);
    chain_free(&c);
}

Test(html, a_value_used_twice_shows_the_running_sum_of_its_contributions)
{
    /* y = x*x + x at x = 3: x receives 1 from the add, then 3 and 3 from the mul. */
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 3.0)), "x");
    ag_tensor *y = named(ag_add(t, named(ag_mul(t, x, x), "sq"), x), "y");
    char *page = page_of(t, y, NULL, NULL);
    cr_expect(strstr(page, "[\"rule\",\"grad(x) += grad(y) \xc3\x97 \xe2\x88\x82y/\xe2\x88\x82x "
                           "= 1 \xc3\x97 1 = 1\"],[\"sum\",\"grad(x) = 1 so far (1 of 3 "
                           "contributions)\"]"), "%s", page);
    cr_expect(strstr(page, "[\"sum\",\"grad(x) = 1 + 3 = 4 so far (2 of 3 contributions)\"]"));
    cr_expect(strstr(page, "[\"sum\",\"grad(x) = 1 + 3 + 3 = 7: all 3 contributions are in\"]"));
    cr_expect(strstr(page, "\"grads\":[[1,\"1\",false],[2,\"1 + 3 + 3 = 7\",true]]"),
              "in the graph: 1 so far after step 1, the sum after step 2");
    cr_expect(strstr(page, "Every gradient is known now: grad(x) = 7"));
    free(page);
    ag_tape_free(t);
}

Test(html, negative_terms_are_subtracted_and_long_sums_cut)
{
    /* y = sum of -x, twelve times: grad(x) = -12, from twelve terms. */
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 2.0)), "x");
    ag_tensor *y = ag_neg(t, x);
    for (int i = 1; i < 12; i++)
        y = ag_sub(t, y, x);
    char *page = page_of(t, named(y, "y"), NULL, NULL);
    cr_expect(strstr(page, "grad(x) = -1 - 1 = -2 so far (2 of 12 contributions)"), "%s", page);
    cr_expect(strstr(page, "grad(x) = -1 - 1 - 1 - 1 - 1 - 1 - 1 - 1 + \xe2\x80\xa6 (12 terms) = "
                           "-12: all 12 contributions are in"));
    free(page);
    ag_tape_free(t);
}

Test(html, names_are_escaped_in_the_json_and_the_title)
{
    ag_tape *t = ag_tape_new();
    /* a name that would close the script, break the string, or is not UTF-8 */
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 1.0)),
                         "</script><b>\"&\\\n\xff\xe2\x80\xa8");
    ag_tensor *y = named(ag_mul_scalar(t, x, 2.0), "<!--y");
    ag_dot_options o = {.title = "<i>\"T\" & 'q'</i>"};
    char *page = page_of(t, y, &o, NULL);
    cr_expect_eq(count(page, "</script>"), 2, "no name closes the script element");
    cr_expect(!strstr(page, "<!--y") && !strstr(page, "<b>"));
    cr_expect(strstr(page, "\"label\":\"\\u003c/script\\u003e\\u003cb\\u003e\\\"\\u0026\\\\\\u000a"
                           "\\ufffd\\u2028\""), "%s", page);
    cr_expect(strstr(page, "\\u003c!--y"));
    cr_expect(strstr(page, "<title>&lt;i&gt;&quot;T&quot; &amp; &#39;q&#39;&lt;/i&gt;</title>"));
    cr_expect(strstr(page, "{\"title\":\"\\u003ci\\u003e\\\"T\\\" \\u0026 'q'\\u003c/i\\u003e\""));
    free(page);
    ag_tape_free(t);
}

Test(html, tensors_show_name_shape_and_a_summary_not_every_value)
{
    /* A layer of Nielsen's network: 784 inputs, 30 sigmoid neurons, batch 10. */
    ag_tape *t = ag_tape_new();
    ag_tensor *W = named(ag_param_new(AG_F64, 2, (int64_t[]){784, 30}), "W");
    ag_tensor *b = named(ag_param_new(AG_F64, 1, (int64_t[]){30}), "b");
    for (int64_t i = 0; i < 784 * 30; i++)
        ag_set(W, i, 0.001 * (double)(i % 7));
    ag_tensor *x = named(ag_full(t, AG_F64, 2, (int64_t[]){10, 784}, 0.5), "x");
    ag_tensor *a = named(ag_sigmoid(t, ag_add(t, ag_matmul(t, x, W), b)), "a");
    ag_tensor *C = named(ag_mean(t, ag_square(t, a)), "C");
    char *page = page_of(t, C, NULL, NULL);
    cr_expect(strstr(page, "\"label\":\"W\",\"named\":true,\"kind\":\"parameter\",\"output\":false,"
                           "\"shape\":\"[784,30]\",\"dtype\":\"f64\",\"value\":\"norm "), "%s", page);
    cr_expect(strstr(page, ": 0, 0.001, 0.002, \xe2\x80\xa6 (23520 values)\""));
    cr_expect(strstr(page, "\"label\":\"b\",\"named\":true,\"kind\":\"parameter\",\"output\":false,"
                           "\"shape\":\"[30]\",\"dtype\":\"f64\",\"value\":\"norm 0: 0, 0, 0, "
                           "\xe2\x80\xa6 (30 values)\""));
    cr_expect(strstr(page, "grad(W) += grad(#"), "tensor rules say what was pulled back");
    cr_expect(strlen(page) < 60000, "a summary, not 23520 numbers: %zu bytes", strlen(page));
    free(page);
    ag_tape_free(t);
    ag_param_free(W);
    ag_param_free(b);
}

Test(html, dot_labels_summarise_large_tensors_too)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *W = named(ag_requires_grad(ag_full(t, AG_F64, 2, (int64_t[]){5, 4}, 2.0)), "W");
    ag_tensor *y = ag_sum(t, W);
    FILE *f = tmpfile();
    cr_assert_eq(ag_dot_write(t, y, NULL, f), AG_OK);
    rewind(f);
    char *text = read_stream(f);
    fclose(f);
    cr_expect(strstr(text, "<i>20 values</i>: 2, 2, 2, ...<br/>norm 8.94427"), "%s", text);
    free(text);
    ag_tape_free(t);
}

Test(html, the_same_computation_gives_the_same_bytes)
{
    chain a, b;
    chain_make(&a, ag_tape_new());
    chain_make(&b, ag_tape_new());
    char *pa = page_of(a.t, a.L, NULL, NULL), *pb = page_of(b.t, b.L, NULL, NULL);
    cr_expect_str_eq(pa, pb);
    free(pa);
    free(pb);
    chain_free(&a);
    chain_free(&b);
}

Test(html, the_page_in_docs_is_what_the_library_writes_now)
{
    /* docs/chain.html is chain --html's page: the same graph and title. The
    ** tests run in tests/; regenerate it with build/examples/chain --steps 0
    ** --html docs/chain.html after a deliberate change. */
    chain c;
    chain_make(&c, ag_tape_new());
    ag_dot_options o = {.title = "L = (D - 17)^2 for A = 3: backprop, step by step"};
    char *page = page_of(c.t, c.L, &o, NULL);
    FILE *f = fopen("../docs/chain.html", "rb");
    cr_assert(f, "no ../docs/chain.html (the test runs in tests/)");
    char *doc = read_stream(f);
    fclose(f);
    cr_expect(!strcmp(page, doc), "docs/chain.html is stale: regenerate it");
    free(page);
    free(doc);
    chain_free(&c);
}

Test(html, digits_and_the_saved_file)
{
    chain c;
    chain_make(&c, ag_tape_new());
    ag_dot_options o = {.digits = 2, .title = "two digits"};
    char path[] = "/tmp/ag_test_html_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    cr_assert_eq(ag_html_save(c.t, c.L, &o, path), AG_OK, "%s", ag_tape_errmsg(c.t));
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    char *page = read_stream(f);
    fclose(f);
    unlink(path);
    cr_expect(strstr(page, "<title>two digits</title>"));
    cr_expect(strstr(page, "= (-25) \xc3\x97 2.2 = -56\""), "2 significant digits");
    free(page);
    chain_free(&c);
}

/* ------------------------------------------------------------- layout */

Test(html_layout, chain_is_one_row_of_layers_without_crossings)
{
    chain c;
    chain_make(&c, ag_tape_new());
    dg_graph g;
    cr_assert_eq(agi_dg_build(&g, c.t, c.L), AG_OK);
    hl_layout l;
    cr_assert_eq(agi_hl_build(&l, &g, "test"), AG_OK);
    /* ab A | mul | B bc | mul | C cd | mul | D 17 | sub | #8 | pow | L */
    cr_expect_eq(l.n_layers, 11);
    cr_expect_eq(l.n_vertices, g.n_nodes + g.n_ops, "no edge skips a layer");
    cr_expect_eq(l.crossings, 0);
    for (int64_t i = 0; i < g.n_ops; i++) {
        cr_expect_eq(l.layer[g.ops[i].node], l.layer[l.n_tensors + i] + 1, "a result follows its op");
        for (int j = 0; j < g.ops[i].out->nin; j++) {
            int64_t from = g.edges[g.ops[i].edge0 + j].from;
            cr_expect_eq(l.layer[from], l.layer[l.n_tensors + i] - 1,
                         "leaves sit just before the op that reads them");
        }
    }
    agi_hl_free(&l);
    agi_dg_free(&g);
    chain_free(&c);
}

Test(html_layout, sweeps_undo_the_crossings_of_tape_order)
{
    /* u and v are made in that order, then sin(v) before sin(u): in tape
    ** order the two chains cross once; the sweeps swap them back. */
    ag_tape *t = ag_tape_new();
    ag_tensor *x1 = ag_requires_grad(ag_scalar(t, AG_F64, 0.5));
    ag_tensor *x2 = ag_requires_grad(ag_scalar(t, AG_F64, 0.25));
    ag_tensor *u = ag_exp(t, x1), *v = ag_exp(t, x2);
    ag_tensor *p = ag_sin(t, v), *q = ag_sin(t, u);
    ag_tensor *y = ag_add(t, p, q);
    dg_graph g;
    cr_assert_eq(agi_dg_build(&g, t, y), AG_OK);
    hl_layout l;
    cr_assert_eq(agi_hl_build(&l, &g, "test"), AG_OK);
    cr_expect_eq(l.crossings, 0);
    int64_t op_sin_v = l.n_tensors + 2, op_sin_u = l.n_tensors + 3;
    int64_t node_u = g.edges[g.ops[3].edge0].from, node_v = g.edges[g.ops[2].edge0].from;
    cr_expect_eq(l.pos[op_sin_v] < l.pos[op_sin_u], l.pos[node_v] < l.pos[node_u],
                 "sin(v) sits on v's side");
    agi_hl_free(&l);
    agi_dg_free(&g);
    ag_tape_free(t);
}

Test(html_layout, long_edges_get_dummies)
{
    /* x feeds ops at several depths; a and b each feed both products (one
    ** crossing is unavoidable there). */
    ag_tape *t = ag_tape_new();
    ag_tensor *x = named(ag_requires_grad(ag_scalar(t, AG_F64, 1.5)), "x");
    ag_tensor *a = ag_exp(t, x), *b = ag_sin(t, x);
    ag_tensor *p = ag_mul(t, b, ag_tanh(t, a)), *q = ag_mul(t, ag_cos(t, b), a);
    ag_tensor *y = ag_add(t, ag_add(t, p, q), x);
    dg_graph g;
    cr_assert_eq(agi_dg_build(&g, t, y), AG_OK);
    hl_layout l;
    cr_assert_eq(agi_hl_build(&l, &g, "test"), AG_OK);
    cr_expect_gt(l.n_vertices, g.n_nodes + g.n_ops, "x -> the last add skips layers");
    cr_expect_leq(l.crossings, 1);
    for (int64_t e = 0; e < g.n_edges; e++) {
        int64_t to = l.n_tensors + g.edges[e].op, from = g.edges[e].from;
        int64_t span = l.layer[to] - l.layer[from] - 1;
        cr_expect_geq(span, 0);
        for (int64_t k = 0; k < span; k++)
            cr_expect_eq(l.layer[l.dummy0[e] + k], l.layer[from] + 1 + k);
    }
    /* members lists each layer in pos order, every vertex once */
    int64_t seen = 0;
    for (int64_t r = 0; r < l.n_layers; r++)
        for (int64_t k = l.layer_start[r]; k < l.layer_start[r + 1]; k++, seen++) {
            cr_expect_eq(l.layer[l.members[k]], r);
            cr_expect_eq(l.pos[l.members[k]], k - l.layer_start[r]);
        }
    cr_expect_eq(seen, l.n_vertices);
    agi_hl_free(&l);
    agi_dg_free(&g);
    ag_tape_free(t);
}

/* ------------------------------------------------------------- errors */

Test(html_errors, bad_arguments_name_the_function)
{
    chain c;
    chain_make(&c, ag_tape_new());
    FILE *f = tmpfile();
    cr_expect_eq(ag_html_write(NULL, c.L, NULL, f), AG_EINVAL);
    cr_expect_eq(ag_html_save(NULL, c.L, NULL, "/tmp/x.html"), AG_EINVAL);

    cr_expect_eq(ag_html_write(c.t, c.L, NULL, NULL), AG_EINVAL);
    cr_expect_str_eq(ag_tape_errmsg(c.t), "ag_html_write: the FILE is NULL");
    ag_tape_reset(c.t);
    chain_free(&c);

    chain_make(&c, ag_tape_new());
    cr_expect_eq(ag_html_save(c.t, c.L, NULL, NULL), AG_EINVAL);
    cr_expect_str_eq(ag_tape_errmsg(c.t), "ag_html_save: the path is NULL");
    chain_free(&c);

    chain_make(&c, ag_tape_new());
    cr_expect_eq(ag_html_write(c.t, NULL, NULL, f), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "ag_html_write: the output y is NULL"));
    chain_free(&c);

    chain_make(&c, ag_tape_new());
    ag_tape *other = ag_tape_new();
    ag_tensor *foreign = ag_requires_grad(ag_scalar(other, AG_F64, 1.0));
    cr_expect_eq(ag_html_write(c.t, foreign, NULL, f), AG_EINVAL);
    cr_expect(strstr(ag_tape_errmsg(c.t), "ag_html_write") &&
              strstr(ag_tape_errmsg(c.t), "another tape"), "%s", ag_tape_errmsg(c.t));
    ag_tape_free(other);
    chain_free(&c);

    chain_make(&c, ag_tape_new());
    cr_expect_eq(ag_html_write(c.t, c.L, &(ag_dot_options){.digits = 18}, f), AG_EINVAL);
    cr_expect_str_eq(ag_tape_errmsg(c.t), "ag_html_write: digits is 18, not in 0..17");
    chain_free(&c);

    chain_make(&c, ag_tape_new());
    cr_expect_eq(ag_html_save(c.t, c.L, NULL, "/nonexistent-dir/page.html"), AG_EIO);
    cr_expect(strstr(ag_tape_errmsg(c.t), "ag_html_save: cannot open '/nonexistent-dir/page.html' "
                                          "for writing: "), "%s", ag_tape_errmsg(c.t));
    chain_free(&c);
    cr_expect_eq(ftell(f), 0, "nothing was written by a refused call");
    fclose(f);
}

Test(html_errors, a_tape_in_error_keeps_its_error_and_writes_nothing)
{
    chain c;
    chain_make(&c, ag_tape_new());
    ag_add(c.t, ag_ones(c.t, AG_F64, 1, (int64_t[]){2}), ag_ones(c.t, AG_F64, 1, (int64_t[]){3}));
    ag_status before = ag_tape_status(c.t);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", ag_tape_errmsg(c.t));
    cr_assert_eq(before, AG_ESHAPE);
    ag_status st;
    char *page = page_of(c.t, c.L, NULL, &st);
    cr_expect_eq(st, before, "the tape's first error is returned");
    cr_expect_str_eq(ag_tape_errmsg(c.t), msg, "and kept");
    cr_expect_str_eq(page, "", "nothing is written");
    free(page);
    chain_free(&c);
}

Test(html_errors, out_of_memory_at_every_allocation)
{
    for (long n = 1; n < 400; n++) {
        alloc_hooks h = {0};
        ag_tape *t = ag_tape_new_alloc(hook_alloc, &h);
        cr_assert(t);
        chain c;
        chain_make(&c, t);
        h.fail_at = h.requests + n;
        FILE *f = tmpfile();
        ag_status s = ag_html_write(t, c.L, NULL, f);
        long written = ftell(f);
        fclose(f);
        bool reached = h.refused > 0;
        cr_expect_eq(s == AG_ENOMEM, reached, "allocation %ld: status %d", n, s);
        cr_expect(s == AG_OK || written == 0, "allocation %ld: a failed page writes nothing", n);
        chain_free(&c);
        cr_expect_eq(h.live, 0, "allocation %ld leaked %ld blocks", n, h.live);
        cr_expect_eq(h.bad_osize, 0);
        if (!reached)
            break;
    }
}
