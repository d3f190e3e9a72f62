/*
** test_anomaly.c: anomaly mode. Off by default; when on, the first op whose
** result or backward gradient holds a NaN or an infinity stops the tape
** with AG_ENUMERIC and a message naming the op, its tape entry, its inputs
** and, through autograd_trace.h, the line that called it.
*/
#define _POSIX_C_SOURCE 200809L   /* open_memstream */

#include "autograd.h"
#include "autograd_trace.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A leaf on t that requires grad, named. */
static ag_tensor *leaf(ag_tape *t, const char *name, int n, const double *v)
{
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){n}, v));
    ag_set_name(x, name);
    return x;
}

/* "test_anomaly.c:<line>" as the message shows it. */
static const char *at_line(int line)
{
    static char buf[64];
    snprintf(buf, sizeof buf, "test_anomaly.c:%d", line);
    return buf;
}

static void expect_in(const char *msg, const char *part)
{
    cr_expect(strstr(msg, part), "'%s' is not in: %s", part, msg);
}

Test(anomaly, off_by_default_nothing_is_reported)
{
    ag_tape *t = ag_tape_new();
    cr_assert_eq(ag_tape_anomaly(t), 0);
    ag_tensor *x = leaf(t, "x", 2, (double[]){0, 1});
    ag_tensor *y = ag_sum(t, ag_log(t, x));
    cr_assert(isinf(ag_item(y)) && ag_item(y) < 0);
    ag_backward(t, y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert(isinf(ag_get(ag_grad(x), 0)), "1/0 reaches the gradient unchecked");
    ag_tape_free(t);
}

Test(anomaly, log_of_zero_names_op_entry_line_and_inputs)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    cr_assert_eq(ag_tape_anomaly(t), 1);
    ag_tensor *x = leaf(t, "x", 3, (double[]){1, 0, 2});
    ag_tensor *a = ag_mul_scalar(t, x, 2.0);
    int line = __LINE__ + 1;
    ag_tensor *y = ag_log(t, a);
    ag_tensor *z = ag_sum(t, y);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC, "%s", ag_tape_errmsg(t));
    const char *msg = ag_tape_errmsg(t);
    expect_in(msg, "anomaly: log at ");
    expect_in(msg, at_line(line));
    expect_in(msg, "(tape entry 1)");
    expect_in(msg, "gave -inf at element 1 of its result [3]");
    expect_in(msg, "inputs: 0 f64 [3]");
    cr_expect(ag_is_nil(z), "the op after the anomaly did nothing");
    cr_expect_eq(ag_tape_entries(t), 2, "mul, log and no more");
    ag_tape_free(t);
}

Test(anomaly, zero_over_zero_names_both_inputs)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *num = leaf(t, "numerator", 2, (double[]){0, 3});
    ag_tensor *den = ag_scalar(t, AG_F64, 0.0);
    ag_set_name(den, "den");
    int line = __LINE__ + 1;
    ag_tensor *q = ag_div(t, num, den);
    ag_backward(t, ag_sum(t, q));
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    const char *msg = ag_tape_errmsg(t);
    expect_in(msg, "anomaly: div at ");
    expect_in(msg, at_line(line));
    expect_in(msg, "(tape entry 0)");
    expect_in(msg, "gave NaN at element 0 of its result [2]");
    expect_in(msg, "inputs: 0 'numerator' f64 [2], 1 'den' f64 []");
    cr_expect_null(ag_grad(num), "backward did not run");
    ag_tape_free(t);
}

Test(anomaly, sqrt_of_minus_one_in_f32)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F32, 2, (int64_t[]){2, 2},
                                                   (float[]){4, 1, -1, 9}));
    ag_set_name(x, "img");
    int line = __LINE__ + 1;
    ag_sqrt(t, x);
    /* Nothing runs after it: the status itself checks the last result. */
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    const char *msg = ag_tape_errmsg(t);
    expect_in(msg, "anomaly: sqrt at ");
    expect_in(msg, at_line(line));
    expect_in(msg, "gave NaN at element 2 of its result [2,2]");
    expect_in(msg, "inputs: 0 'img' f32 [2,2]");
    ag_tape_free(t);
}

Test(anomaly, a_result_that_is_not_recorded_is_checked_too)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *c = ag_scalar(t, AG_F64, -4.0);   /* a constant: nothing is recorded */
    int line = __LINE__ + 1;
    ag_tensor *r = ag_sqrt(t, c);
    cr_assert_not(ag_requires_grad_of(r));
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), at_line(line));
    expect_in(ag_tape_errmsg(t), "(not recorded)");
    ag_tape_free(t);
}

Test(anomaly, an_inner_op_of_a_nested_call_is_the_one_named)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = leaf(t, "x", 2, (double[]){-1, 1});
    ag_tensor *s = ag_sum(t, ag_mul(t, ag_log(t, x), x));
    cr_assert(ag_is_nil(s));
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), "anomaly: log at ");
    expect_in(ag_tape_errmsg(t), "inputs: 0 'x' f64 [2]");
    ag_tape_free(t);
}

Test(anomaly, an_infinite_gradient_from_sqrt_at_zero)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = leaf(t, "x", 3, (double[]){4, 0, 1});
    ag_tensor *h = ag_mul_scalar(t, x, 1.0);
    int line = __LINE__ + 1;
    ag_tensor *r = ag_sqrt(t, h);
    ag_tensor *loss = ag_sum(t, r);
    cr_assert_eq(ag_tape_status(t), AG_OK, "the forward pass is finite: %s", ag_tape_errmsg(t));
    cr_assert_float_eq(ag_item(loss), 3.0, 0);
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    const char *msg = ag_tape_errmsg(t);
    expect_in(msg, "anomaly: backward of sqrt at ");
    expect_in(msg, at_line(line));
    expect_in(msg, "(tape entry 1)");
    expect_in(msg, "gave inf at element 1 of the gradient of input 0");
    expect_in(msg, "inputs: 0 f64 [3]");
    cr_expect_null(ag_grad(x), "the pass stopped before reaching x");
    ag_tape_free(t);
}

Test(anomaly, a_gradient_that_overflows_in_a_product)
{
    /* Every value is finite: a * b = 1, times 1e10. The gradient of b is
    ** 1e10 * a = 1e10 * 1e300, which overflows in mul's backward. */
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *a = leaf(t, "a", 1, (double[]){1e300});
    ag_tensor *b = leaf(t, "b", 1, (double[]){1e-300});
    int line = __LINE__ + 1;
    ag_tensor *p = ag_mul(t, a, b);
    ag_tensor *loss = ag_sum(t, ag_mul_scalar(t, p, 1e10));
    cr_assert_float_eq(ag_item(loss), 1e10, 1e-3);
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    const char *msg = ag_tape_errmsg(t);
    expect_in(msg, "anomaly: backward of mul at ");
    expect_in(msg, at_line(line));
    expect_in(msg, "gradient of input 1");
    expect_in(msg, "inputs: 0 'a' f64 [1], 1 'b' f64 [1]");
    ag_tape_free(t);
}

Test(anomaly, a_second_order_backward_is_checked)
{
    /* The gradient 2x of x^2, recorded with create_graph, is 0 at x = 0;
    ** differentiating its square root there overflows. */
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = leaf(t, "x", 1, (double[]){0.0});
    ag_tensor *y = ag_sum(t, ag_mul(t, x, x));
    ag_tensor *g;
    ag_gradients(t, y, NULL, 1, &x, &g, 1);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_float_eq(ag_get(g, 0), 0.0, 0);
    ag_tensor *s = ag_sum(t, ag_sqrt(t, g));
    ag_backward(t, s);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), "anomaly: backward of sqrt at ");
    ag_tape_free(t);
}

Test(anomaly, without_the_trace_header_the_line_is_unknown)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = leaf(t, "x", 1, (double[]){0});
    /* Through a pointer, the call bypasses autograd_trace.h's macro. */
    ag_tensor *(*log_fn)(ag_tape *, ag_tensor *) = ag_log;
    log_fn(t, x);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), "anomaly: log at an unknown line (include autograd_trace.h)");
    ag_tape_free(t);
}

Test(anomaly, reset_clears_the_error_and_keeps_the_mode)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    for (int pass = 0; pass < 3; pass++) {
        ag_tensor *x = leaf(t, "x", 2, (double[]){1, 2});
        ag_tensor *loss = ag_sum(t, ag_log(t, x));
        ag_backward(t, loss);
        cr_assert_eq(ag_tape_status(t), AG_OK, "pass %d: %s", pass, ag_tape_errmsg(t));
        cr_assert_float_eq(ag_get(ag_grad(x), 1), 0.5, 0);
        ag_tape_reset(t);
        ag_log(t, ag_scalar(t, AG_F64, -1.0));
        cr_assert_eq(ag_tape_status(t), AG_ENUMERIC, "pass %d", pass);
        ag_tape_reset(t);
        cr_assert_eq(ag_tape_status(t), AG_OK);
        cr_assert_eq(ag_tape_anomaly(t), 1);
    }
    ag_tape_set_anomaly(t, 0);
    ag_log(t, ag_scalar(t, AG_F64, -1.0));
    cr_assert_eq(ag_tape_status(t), AG_OK, "off again");
    ag_tape_free(t);
}

Test(anomaly, finite_training_is_unchanged_bit_for_bit)
{
    /* The same steps with and without anomaly mode give the same bits. */
    double result[2][4];
    for (int mode = 0; mode < 2; mode++) {
        ag_tape *t = ag_tape_new();
        ag_tape_set_anomaly(t, mode);
        ag_tensor *w = ag_param_new(AG_F64, 2, (int64_t[]){2, 2});
        for (int i = 0; i < 4; i++)
            ag_set(w, i, 0.1 * (i + 1));
        for (int step = 0; step < 5; step++) {
            ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){3, 2},
                                          (double[]){1, 2, -1, 0.5, 0.25, -2});
            ag_tensor *h = ag_tanh(t, ag_matmul(t, x, w));
            ag_tensor *loss = ag_mean(t, ag_square(t, ag_softmax(t, h, 1)));
            ag_backward(t, loss);
            cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
            for (int i = 0; i < 4; i++)
                ag_set(w, i, ag_get(w, i) - 0.5 * ag_get(ag_grad(w), i));
            ag_zero_grad(w);
            ag_tape_reset(t);
        }
        for (int i = 0; i < 4; i++)
            result[mode][i] = ag_get(w, i);
        ag_param_free(w);
        ag_tape_free(t);
    }
    cr_assert(memcmp(result[0], result[1], sizeof result[0]) == 0);
}

Test(anomaly, locations_of_many_ops_survive_entry_growth)
{
    /* More entries than the first capacity: the places grow with them. */
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = ag_requires_grad(ag_scalar(t, AG_F64, 0.5));
    ag_tensor *y = x;
    for (int i = 0; i < 3000; i++)
        y = ag_add_scalar(t, y, 0.0);
    int line = __LINE__ + 1;
    ag_tensor *r = ag_sqrt(t, ag_mul_scalar(t, y, 0.0));
    ag_backward(t, r);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), at_line(line));
    expect_in(ag_tape_errmsg(t), "(tape entry 3001)");
    ag_tape_free(t);
}

Test(anomaly, ag_tape_here_and_null_tapes)
{
    cr_assert_null(ag_tape_here(NULL, "f.c", 1));
    ag_tape_set_anomaly(NULL, 1);
    cr_assert_eq(ag_tape_anomaly(NULL), 0);
    ag_tape *t = ag_tape_new();
    cr_assert_eq(ag_tape_here(t, "f.c", 7), t);
    ag_tape_free(t);
}

/* The trace header, generated at build time, must wrap every op of
** autograd.h, or anomalies in a new op would lose their line. autograd.h
** is read from the source tree, the header from the build tree (meson
** passes its path in AG_TRACE_H). */
Test(anomaly, the_trace_header_wraps_every_op)
{
    static char api[1 << 17], trace[1 << 15];
    FILE *f = fopen("../autograd/autograd.h", "r");
    cr_assert_not_null(f, "run from tests/ (meson sets the workdir)");
    api[fread(api, 1, sizeof api - 1, f)] = '\0';
    fclose(f);
    const char *path = getenv("AG_TRACE_H");
    cr_assert_not_null(path, "AG_TRACE_H names the generated autograd_trace.h");
    f = fopen(path, "r");
    cr_assert_not_null(f, "cannot read %s", path);
    trace[fread(trace, 1, sizeof trace - 1, f)] = '\0';
    fclose(f);
    const char *ops = strstr(api, "---- ops */");
    const char *end = strstr(api, "---- gradcheck */");
    cr_assert(ops && end && ops < end, "autograd.h has an ops section");
    int wrapped = 0;
    for (const char *p = ops; (p = strstr(p, "AG_API ag_tensor *")) && p < end; p++) {
        char name[64], want[112];
        if (sscanf(p, "AG_API ag_tensor *%63[a-z_0-9]", name) != 1)
            continue;
        /* Ops take the tape first (sscanf would not check what follows a
        ** conversion); accessors such as ag_op_saved take a tensor. */
        snprintf(want, sizeof want, "AG_API ag_tensor *%s(ag_tape *t,", name);
        if (strncmp(p, want, strlen(want)) != 0)
            continue;
        snprintf(want, sizeof want, "#define %s(t, ...)", name);
        cr_expect(strstr(trace, want), "autograd_trace.h does not wrap %s", name);
        wrapped++;
    }
    cr_expect_geq(wrapped, 50);
}

Test(anomaly, drawing_the_graph_is_not_an_anomaly)
{
    /* The DOT export replays backward to show gradients; an infinite local
    ** derivative there is part of the picture, not an error. The backward
    ** pass itself still reports it. */
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = leaf(t, "x", 1, (double[]){0});
    ag_tensor *y = ag_sum(t, ag_sqrt(t, x));
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    cr_assert_eq(ag_dot_write(t, y, NULL, f), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_gt(ag_dot_steps(t, y), 0);
    fclose(f);
    cr_assert_eq(ag_tape_anomaly(t), 1, "still on after drawing");
    ag_backward(t, y);
    cr_assert_eq(ag_tape_status(t), AG_ENUMERIC);
    expect_in(ag_tape_errmsg(t), "anomaly: backward of sqrt at ");
    ag_tape_free(t);
}

Test(anomaly, a_graph_with_an_anomaly_is_drawn_without_gradients)
{
    /* As for any tape in error, the picture shows what was recorded, which
    ** is what one wants to see when looking for the NaN. */
    ag_tape *t = ag_tape_new();
    ag_tape_set_anomaly(t, 1);
    ag_tensor *x = leaf(t, "x", 1, (double[]){-1});
    ag_tensor *y = ag_sqrt(t, x);
    ag_set_name(y, "root");
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    ag_status s = ag_dot_write(t, y, NULL, f);
    fclose(f);
    cr_assert_eq(s, AG_ENUMERIC, "%s", ag_tape_errmsg(t));
    expect_in(text, "root");
    expect_in(text, "sqrt");
    free(text);
    ag_tape_free(t);
}
