/*
** test_ops_index.c: the values of the indexing and structure ops
** (ops_index.c, ops_struct.c) against hand-worked results, in f32 and f64:
** index_select / index_add, gather / scatter_add, ag_index, stack, pad,
** tril / triu, diag, trace; an embedding lookup's gradient; NaN; and the
** errors, whose messages name the function and the values. Gradients in
** general are checked by the cases in op_cases.h.
*/
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd.h"

static ag_tape *tape;

static void setup(void)
{
    tape = ag_tape_new();
    cr_assert_not_null(tape);
}

static void teardown(void)
{
    ag_tape_free(tape);
    tape = NULL;
}

TestSuite(ops_index, .init = setup, .fini = teardown);

static const ag_dtype DTYPES[2] = {AG_F32, AG_F64};

/* 0, 1, 2, ... in the given shape. */
static ag_tensor *counting(ag_dtype dt, int rank, const int64_t *shape)
{
    ag_tensor *x = ag_zeros(tape, dt, rank, shape);
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, (double)i);
    return x;
}

static ag_tensor *from(ag_dtype dt, int rank, const int64_t *shape, const double *v)
{
    ag_tensor *x = ag_zeros(tape, dt, rank, shape);
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, v[i]);
    return x;
}

/* y has exactly 'rank' dims 'shape' and the values 'want' (small integers
** and halves, exact in both dtypes). */
static void expect_tensor(const ag_tensor *y, int rank, const int64_t *shape, const double *want,
                          const char *what)
{
    cr_assert_eq(ag_tape_status(tape), AG_OK, "%s: %s", what, ag_tape_errmsg(tape));
    cr_assert_eq(ag_rank(y), rank, "%s: rank %d, want %d", what, ag_rank(y), rank);
    for (int d = 0; d < rank; d++)
        cr_assert_eq(ag_shape(y)[d], shape[d], "%s: dim %d is %lld, want %lld", what, d,
                     (long long)ag_shape(y)[d], (long long)shape[d]);
    for (int64_t i = 0; i < ag_numel(y); i++)
        cr_expect_eq(ag_get(y, i), want[i], "%s: element %lld is %g, want %g", what, (long long)i,
                     ag_get(y, i), want[i]);
}

/* The status is 'want' and the message holds each of the needles; then the
** tape is reset for the next case. */
static void expect_error(ag_tensor *y, ag_status want, const char *what, const char *needle1,
                         const char *needle2)
{
    ag_status got = ag_tape_status(tape);
    const char *msg = ag_tape_errmsg(tape);
    cr_assert(ag_is_nil(y), "%s: the result is not nil", what);
    cr_assert_eq(got, want, "%s: status %s, want %s (message '%s')", what, ag_status_str(got),
                 ag_status_str(want), msg);
    cr_assert_not_null(strstr(msg, needle1), "%s: message '%s' lacks '%s'", what, msg, needle1);
    if (needle2)
        cr_assert_not_null(strstr(msg, needle2), "%s: message '%s' lacks '%s'", what, msg,
                           needle2);
    ag_tape_reset(tape);
}

/* ------------------------------------------------ index_select, index_add */

Test(ops_index, index_select_picks_rows_and_columns)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = counting(DTYPES[k], 2, (int64_t[]){4, 3});
        expect_tensor(ag_index_select(tape, x, 0, 3, (int64_t[]){2, 0, 2}), 2,
                      (int64_t[]){3, 3}, (double[]){6, 7, 8, 0, 1, 2, 6, 7, 8}, "rows (2,0,2)");
        expect_tensor(ag_index_select(tape, x, -1, 2, (int64_t[]){2, 1}), 2, (int64_t[]){4, 2},
                      (double[]){2, 1, 5, 4, 8, 7, 11, 10}, "columns (2,1)");
        expect_tensor(ag_index_select(tape, x, 0, 0, NULL), 2, (int64_t[]){0, 3}, NULL,
                      "no rows");
        ag_tensor *c = counting(DTYPES[k], 3, (int64_t[]){2, 3, 2});
        expect_tensor(ag_index_select(tape, c, 1, 2, (int64_t[]){1, 1}), 3, (int64_t[]){2, 2, 2},
                      (double[]){2, 3, 2, 3, 8, 9, 8, 9}, "middle axis");
        ag_tape_reset(tape);
    }
}

/* An embedding: weight [5,2] is a parameter, tokens pick rows; a row hit
** twice gets the sum of both rows of the gradient, a row not hit none. */
Test(ops_index, embedding_lookup_gradient_adds_up_repeated_rows)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *w = ag_param_new(DTYPES[k], 2, (int64_t[]){5, 2});
        cr_assert_not_null(w);
        for (int i = 0; i < 10; i++)
            ag_set(w, i, 0.5 * i);
        const int64_t tokens[4] = {1, 3, 1, 1};
        ag_tensor *e = ag_index_select(tape, w, 0, 4, tokens);
        expect_tensor(e, 2, (int64_t[]){4, 2}, (double[]){1, 1.5, 3, 3.5, 1, 1.5, 1, 1.5},
                      "rows of w");
        /* loss = sum(e * m): row 1 gets m0 + m2 + m3, row 3 gets m1. */
        ag_tensor *m = from(DTYPES[k], 2, (int64_t[]){4, 2}, (double[]){1, 2, 3, 4, 5, 6, 7, 8});
        ag_backward(tape, ag_sum(tape, ag_mul(tape, e, m)));
        expect_tensor(ag_grad(w), 2, (int64_t[]){5, 2}, (double[]){0, 0, 13, 16, 0, 0, 3, 4, 0, 0},
                      "embedding gradient");
        /* With ones upstream, a row picked three times gets 3x. */
        ag_zero_grad(w);
        ag_backward(tape, ag_sum(tape, ag_index_select(tape, w, 0, 4, tokens)));
        expect_tensor(ag_grad(w), 2, (int64_t[]){5, 2}, (double[]){0, 0, 3, 3, 0, 0, 1, 1, 0, 0},
                      "counts");
        ag_tape_reset(tape);
        ag_param_free(w);
    }
}

Test(ops_index, index_add_adds_in_turn)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *base = from(DTYPES[k], 2, (int64_t[]){3, 2}, (double[]){1, 1, 1, 1, 1, 1});
        ag_tensor *src = from(DTYPES[k], 2, (int64_t[]){3, 2}, (double[]){1, 2, 3, 4, 5, 6});
        expect_tensor(ag_index_add(tape, base, 0, 3, (int64_t[]){2, 0, 2}, src), 2,
                      (int64_t[]){3, 2}, (double[]){4, 5, 1, 1, 7, 9}, "rows (2,0,2)");
        ag_tensor *cols = from(DTYPES[k], 2, (int64_t[]){3, 1}, (double[]){10, 20, 30});
        expect_tensor(ag_index_add(tape, base, 1, 1, (int64_t[]){1}, cols), 2, (int64_t[]){3, 2},
                      (double[]){1, 11, 1, 21, 1, 31}, "column 1");
        ag_tape_reset(tape);
    }
}

/* ------------------------------------------------------ gather, scatter_add */

Test(ops_index, gather_follows_torch)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = from(DTYPES[k], 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
        /* axis 1: out[i][j] = x[i][idx[i][j]] */
        expect_tensor(ag_gather(tape, x, 1, 2, (int64_t[]){2, 2}, (int64_t[]){2, 0, 1, 1}), 2,
                      (int64_t[]){2, 2}, (double[]){3, 1, 5, 5}, "axis 1");
        /* axis 0: out[i][j] = x[idx[i][j]][j] */
        expect_tensor(ag_gather(tape, x, 0, 2, (int64_t[]){1, 3}, (int64_t[]){1, 0, 1}), 2,
                      (int64_t[]){1, 3}, (double[]){4, 2, 6}, "axis 0");
        /* Each row's entry at its label: log-likelihood picking. */
        expect_tensor(ag_gather(tape, x, -1, 2, (int64_t[]){2, 1}, (int64_t[]){0, 2}), 2,
                      (int64_t[]){2, 1}, (double[]){1, 6}, "labels");
        ag_tape_reset(tape);
    }
}

Test(ops_index, scatter_add_follows_torch)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *base = ag_zeros(tape, DTYPES[k], 2, (int64_t[]){2, 3});
        ag_tensor *src = from(DTYPES[k], 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
        /* axis 1: out[i][idx[i][j]] += src[i][j]; (0,0) is hit twice */
        expect_tensor(ag_scatter_add(tape, base, 1, (int64_t[]){0, 0, 2, 1}, src), 2,
                      (int64_t[]){2, 3}, (double[]){3, 0, 0, 0, 4, 3}, "axis 1");
        /* axis 0: out[idx[i][j]][j] += src[i][j] */
        expect_tensor(ag_scatter_add(tape, base, 0, (int64_t[]){1, 1, 1, 0}, src), 2,
                      (int64_t[]){2, 3}, (double[]){0, 4, 0, 4, 2, 0}, "axis 0");
        ag_tape_reset(tape);
    }
}

Test(ops_index, gather_gradient_counts_repeated_indices)
{
    ag_tensor *x = ag_requires_grad(counting(AG_F64, 2, (int64_t[]){2, 3}));
    ag_tensor *y = ag_gather(tape, x, 1, 2, (int64_t[]){2, 3}, (int64_t[]){2, 2, 2, 0, 1, 0});
    ag_backward(tape, ag_sum(tape, y));
    expect_tensor(ag_grad(x), 2, (int64_t[]){2, 3}, (double[]){0, 0, 3, 2, 1, 0}, "gather");
    /* scatter_add's src gets g gathered: the base row 1 is weighted by 10. */
    ag_tensor *base = ag_requires_grad(ag_zeros(tape, AG_F64, 2, (int64_t[]){2, 3}));
    ag_tensor *src = ag_requires_grad(counting(AG_F64, 2, (int64_t[]){1, 3}));
    ag_tensor *s = ag_scatter_add(tape, base, 0, (int64_t[]){1, 0, 1}, src);
    ag_tensor *w = from(AG_F64, 2, (int64_t[]){2, 3}, (double[]){1, 1, 1, 10, 10, 10});
    ag_backward(tape, ag_sum(tape, ag_mul(tape, s, w)));
    expect_tensor(ag_grad(src), 2, (int64_t[]){1, 3}, (double[]){10, 1, 10}, "scatter src");
    expect_tensor(ag_grad(base), 2, (int64_t[]){2, 3}, (double[]){1, 1, 1, 10, 10, 10},
                  "scatter base");
}

/* ------------------------------------------------------------------ index */

Test(ops_index, index_takes_leading_axes_python_style)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = counting(DTYPES[k], 3, (int64_t[]){2, 3, 4});
        expect_tensor(ag_index(tape, x, 3, (int64_t[]){1, -1, 2}), 0, NULL, (double[]){22},
                      "x[1][-1][2]");
        expect_tensor(ag_index(tape, x, 2, (int64_t[]){0, -3}), 1, (int64_t[]){4},
                      (double[]){0, 1, 2, 3}, "x[0][-3]");
        ag_tensor *last = ag_index(tape, x, 1, (int64_t[]){-1});
        cr_assert_eq(ag_numel(last), 12);
        for (int i = 0; i < 12; i++)
            cr_expect_eq(ag_get(last, i), 12.0 + i, "x[-1] element %d", i);
        ag_tensor *all = ag_index(tape, x, 0, NULL);
        cr_assert_eq(ag_rank(all), 3);
        for (int i = 0; i < 24; i++)
            cr_expect_eq(ag_get(all, i), (double)i, "x with no index, element %d", i);
        ag_tape_reset(tape);
    }
}

Test(ops_index, index_gradient_is_one_hot)
{
    ag_tensor *x = ag_requires_grad(counting(AG_F64, 2, (int64_t[]){2, 3}));
    ag_tensor *y = ag_mul_scalar(tape, ag_index(tape, x, 2, (int64_t[]){-1, 1}), 5.0);
    cr_assert_eq(ag_item(y), 20.0);
    ag_backward(tape, y);
    expect_tensor(ag_grad(x), 2, (int64_t[]){2, 3}, (double[]){0, 0, 0, 0, 5, 0}, "x[-1][1]");
}

/* ----------------------------------------------------------- stack, pad */

Test(ops_index, stack_inserts_an_axis)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *a = from(DTYPES[k], 1, (int64_t[]){2}, (double[]){1, 2});
        ag_tensor *b = from(DTYPES[k], 1, (int64_t[]){2}, (double[]){3, 4});
        ag_tensor *ab[2] = {a, b};
        expect_tensor(ag_stack(tape, 2, ab, 0), 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4},
                      "axis 0");
        expect_tensor(ag_stack(tape, 2, ab, 1), 2, (int64_t[]){2, 2}, (double[]){1, 3, 2, 4},
                      "axis 1");
        expect_tensor(ag_stack(tape, 2, ab, -1), 2, (int64_t[]){2, 2}, (double[]){1, 3, 2, 4},
                      "axis -1");
        ag_tensor *m = counting(DTYPES[k], 2, (int64_t[]){2, 2});
        ag_tensor *mm[3] = {m, m, m};
        expect_tensor(ag_stack(tape, 3, mm, 1), 3, (int64_t[]){2, 3, 2},
                      (double[]){0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3}, "[2,2] x 3 at axis 1");
        ag_tape_reset(tape);
    }
}

Test(ops_index, stack_gradient_slices_back)
{
    ag_tensor *a = ag_requires_grad(ag_zeros(tape, AG_F64, 1, (int64_t[]){2}));
    ag_tensor *b = ag_requires_grad(ag_zeros(tape, AG_F64, 1, (int64_t[]){2}));
    ag_tensor *s = ag_stack(tape, 3, (ag_tensor *[]){a, b, a}, 1);
    ag_tensor *w = counting(AG_F64, 2, (int64_t[]){2, 3});
    ag_backward(tape, ag_sum(tape, ag_mul(tape, s, w)));
    /* a is column 0 and column 2 of [[0,1,2],[3,4,5]], b column 1 */
    expect_tensor(ag_grad(a), 1, (int64_t[]){2}, (double[]){2, 8}, "a");
    expect_tensor(ag_grad(b), 1, (int64_t[]){2}, (double[]){1, 4}, "b");
}

Test(ops_index, pad_puts_a_border_around)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = from(DTYPES[k], 2, (int64_t[]){2, 2}, (double[]){1, 2, 3, 4});
        expect_tensor(ag_pad(tape, x, (int64_t[]){1, 0, 0, 2}, 9.0), 2, (int64_t[]){3, 4},
                      (double[]){9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9}, "(1,0),(0,2)");
        expect_tensor(ag_pad(tape, x, (int64_t[]){0, 1, 1, 1}, -0.5), 2, (int64_t[]){3, 4},
                      (double[]){-0.5, 1, 2, -0.5, -0.5, 3, 4, -0.5, -0.5, -0.5, -0.5, -0.5},
                      "(0,1),(1,1)");
        ag_tensor *s = ag_scalar(tape, DTYPES[k], 7.0);
        expect_tensor(ag_pad(tape, s, NULL, 0.0), 0, NULL, (double[]){7}, "a scalar");
        ag_tensor *e = ag_zeros(tape, DTYPES[k], 1, (int64_t[]){0});
        expect_tensor(ag_pad(tape, e, (int64_t[]){1, 2}, 3.0), 1, (int64_t[]){3},
                      (double[]){3, 3, 3}, "an empty vector");
        ag_tape_reset(tape);
    }
}

Test(ops_index, pad_gradient_is_the_middle)
{
    ag_tensor *x = ag_requires_grad(ag_zeros(tape, AG_F64, 2, (int64_t[]){2, 2}));
    ag_tensor *p = ag_pad(tape, x, (int64_t[]){1, 0, 0, 2}, 9.0);
    ag_backward(tape, ag_sum(tape, ag_mul(tape, p, counting(AG_F64, 2, (int64_t[]){3, 4}))));
    expect_tensor(ag_grad(x), 2, (int64_t[]){2, 2}, (double[]){4, 5, 8, 9}, "pad");
}

/* --------------------------------------------------- triangles, diagonals */

Test(ops_index, tril_and_triu_keep_their_triangle)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = from(DTYPES[k], 2, (int64_t[]){3, 3}, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
        const int64_t s3[2] = {3, 3};
        expect_tensor(ag_tril(tape, x, 0), 2, s3, (double[]){1, 0, 0, 4, 5, 0, 7, 8, 9}, "tril");
        expect_tensor(ag_tril(tape, x, -1), 2, s3, (double[]){0, 0, 0, 4, 0, 0, 7, 8, 0},
                      "tril -1");
        expect_tensor(ag_tril(tape, x, 1), 2, s3, (double[]){1, 2, 0, 4, 5, 6, 7, 8, 9}, "tril 1");
        expect_tensor(ag_triu(tape, x, 0), 2, s3, (double[]){1, 2, 3, 0, 5, 6, 0, 0, 9}, "triu");
        expect_tensor(ag_triu(tape, x, 1), 2, s3, (double[]){0, 2, 3, 0, 0, 6, 0, 0, 0}, "triu 1");
        expect_tensor(ag_triu(tape, x, -5), 2, s3, (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9},
                      "triu -5");
        expect_tensor(ag_tril(tape, x, INT64_MIN), 2, s3, (double[]){0, 0, 0, 0, 0, 0, 0, 0, 0},
                      "tril INT64_MIN");
        /* batched over a leading axis, non-square */
        ag_tensor *b = counting(DTYPES[k], 3, (int64_t[]){2, 2, 3});
        expect_tensor(ag_triu(tape, b, 0), 3, (int64_t[]){2, 2, 3},
                      (double[]){0, 1, 2, 0, 4, 5, 6, 7, 8, 0, 10, 11}, "batched triu");
        ag_tape_reset(tape);
    }
}

Test(ops_index, diag_goes_both_ways)
{
    for (int k = 0; k < 2; k++) {
        ag_tensor *v = from(DTYPES[k], 1, (int64_t[]){2}, (double[]){1, 2});
        expect_tensor(ag_diag(tape, v, 0), 2, (int64_t[]){2, 2}, (double[]){1, 0, 0, 2}, "v");
        expect_tensor(ag_diag(tape, v, 1), 2, (int64_t[]){3, 3},
                      (double[]){0, 1, 0, 0, 0, 2, 0, 0, 0}, "v, k 1");
        expect_tensor(ag_diag(tape, v, -1), 2, (int64_t[]){3, 3},
                      (double[]){0, 0, 0, 1, 0, 0, 0, 2, 0}, "v, k -1");
        ag_tensor *m = counting(DTYPES[k], 2, (int64_t[]){3, 4});
        expect_tensor(ag_diag(tape, m, 0), 1, (int64_t[]){3}, (double[]){0, 5, 10}, "m");
        expect_tensor(ag_diag(tape, m, 1), 1, (int64_t[]){3}, (double[]){1, 6, 11}, "m, k 1");
        expect_tensor(ag_diag(tape, m, 2), 1, (int64_t[]){2}, (double[]){2, 7}, "m, k 2");
        expect_tensor(ag_diag(tape, m, -1), 1, (int64_t[]){2}, (double[]){4, 9}, "m, k -1");
        expect_tensor(ag_diag(tape, m, 4), 1, (int64_t[]){0}, NULL, "m, k 4: outside");
        expect_tensor(ag_diag(tape, m, -3), 1, (int64_t[]){0}, NULL, "m, k -3: outside");
        ag_tape_reset(tape);
    }
}

Test(ops_index, trace_sums_the_diagonal_and_its_gradient_is_eye)
{
    ag_tensor *x = ag_requires_grad(counting(AG_F64, 2, (int64_t[]){3, 3}));
    ag_tensor *tr = ag_trace(tape, x);
    cr_assert_eq(ag_item(tr), 12.0);
    ag_backward(tape, ag_mul_scalar(tape, tr, 2.0));
    expect_tensor(ag_grad(x), 2, (int64_t[]){3, 3}, (double[]){2, 0, 0, 0, 2, 0, 0, 0, 2},
                  "2 eye");
    ag_tensor *r = ag_requires_grad(counting(AG_F32, 2, (int64_t[]){2, 3}));
    tr = ag_trace(tape, r);
    cr_assert_eq(ag_item(tr), 4.0);
    ag_backward(tape, tr);
    expect_tensor(ag_grad(r), 2, (int64_t[]){2, 3}, (double[]){1, 0, 0, 0, 1, 0}, "eye [2,3]");
}

/* -------------------------------------------------------------------- NaN */

Test(ops_index, nan_goes_where_its_element_goes)
{
    ag_tensor *x = from(AG_F64, 2, (int64_t[]){2, 2}, (double[]){NAN, 1, 2, 3});
    ag_tensor *rows = ag_index_select(tape, x, 0, 2, (int64_t[]){1, 0});
    cr_expect(isnan(ag_get(rows, 2)) && ag_get(rows, 0) == 2.0);
    cr_expect(isnan(ag_item(ag_index(tape, x, 2, (int64_t[]){0, 0}))));
    cr_expect(isnan(ag_item(ag_trace(tape, x))));
    /* Outside the triangle the zero is stored: the NaN does not show. */
    ag_tensor *u = ag_triu(tape, x, 1);
    cr_expect(ag_get(u, 0) == 0.0 && ag_get(u, 1) == 1.0);
    cr_expect(isnan(ag_get(ag_tril(tape, x, 0), 0)));
    ag_tensor *p = ag_pad(tape, x, (int64_t[]){0, 1, 0, 0}, NAN);
    cr_expect(isnan(ag_get(p, 4)) && isnan(ag_get(p, 5)) && ag_get(p, 3) == 3.0);
    ag_tensor *s = ag_scatter_add(tape, ag_zeros(tape, AG_F64, 1, (int64_t[]){3}), 0,
                                  (int64_t[]){2, 2, 0, 0}, ag_reshape(tape, x, 1,
                                                                      (int64_t[]){4}));
    cr_expect(isnan(ag_get(s, 2)) && ag_get(s, 0) == 5.0 && ag_get(s, 1) == 0.0);
    cr_assert_eq(ag_tape_status(tape), AG_OK, "%s", ag_tape_errmsg(tape));
}

/* ----------------------------------------------------------------- errors */

Test(ops_index, out_of_range_indices_are_refused)
{
    ag_tensor *x = counting(AG_F64, 2, (int64_t[]){5, 2});
    expect_error(ag_index_select(tape, x, 0, 2, (int64_t[]){0, 5}), AG_EINVAL, "too large",
                 "ag_index_select: index 5 (entry 1) is outside [0, 5), the size of axis 0", NULL);
    x = counting(AG_F64, 2, (int64_t[]){5, 2});
    expect_error(ag_index_select(tape, x, 1, 1, (int64_t[]){-1}), AG_EINVAL, "negative",
                 "ag_index_select: index -1 (entry 0) is outside [0, 2), the size of axis 1",
                 NULL);
    x = counting(AG_F64, 2, (int64_t[]){5, 2});
    expect_error(ag_index_add(tape, x, 0, 1, (int64_t[]){7}, ag_zeros(tape, AG_F64, 2,
                                                                       (int64_t[]){1, 2})),
                 AG_EINVAL, "index_add", "ag_index_add: index 7", "[0, 5)");
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_gather(tape, x, 1, 2, (int64_t[]){1, 2}, (int64_t[]){0, 3}), AG_EINVAL,
                 "gather", "ag_gather: index 3 (entry 1) is outside [0, 3)", "axis 1");
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_scatter_add(tape, x, 0, (int64_t[]){0, -2}, ag_zeros(tape, AG_F64, 2,
                                                                          (int64_t[]){1, 2})),
                 AG_EINVAL, "scatter_add", "ag_scatter_add: index -2 (entry 1)", "[0, 2)");
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index(tape, x, 2, (int64_t[]){1, -4}), AG_EINVAL, "index",
                 "ag_index: index -4 is outside axis 1 of [2,3] (size 3)", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index(tape, x, 1, (int64_t[]){2}), AG_EINVAL, "index 2",
                 "ag_index: index 2 is outside axis 0 of [2,3] (size 2)", NULL);
}

Test(ops_index, bad_axes_counts_and_ranks_are_refused)
{
    ag_tensor *x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index_select(tape, x, 2, 1, (int64_t[]){0}), AG_EINVAL, "axis",
                 "ag_index_select: axis 2 is out of range for [2,3]", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index_select(tape, x, 0, 2, NULL), AG_EINVAL, "NULL idx",
                 "ag_index_select: idx is NULL for 2 indices", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index_select(tape, x, 0, -1, (int64_t[]){0}), AG_EINVAL, "n < 0",
                 "ag_index_select: -1 indices", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index_add(tape, x, 0, 1, (int64_t[]){0},
                              ag_zeros(tape, AG_F64, 2, (int64_t[]){1, 2})),
                 AG_ESHAPE, "src shape", "ag_index_add: src [1,2] is not base [2,3]", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index_add(tape, x, 0, 1, (int64_t[]){0},
                              ag_zeros(tape, AG_F32, 2, (int64_t[]){1, 3})),
                 AG_EDTYPE, "src dtype", "ag_index_add: dtypes differ", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_gather(tape, x, 0, 1, (int64_t[]){2}, (int64_t[]){0, 1}), AG_ESHAPE,
                 "gather rank", "ag_gather: the index array [2] has rank 1, x [2,3] has rank 2",
                 NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_gather(tape, x, 0, 2, (int64_t[]){1, 4}, (int64_t[]){0, 0, 0, 0}), AG_ESHAPE,
                 "gather shape", "ag_gather: the index array [1,4] does not fit in x [2,3] "
                 "outside axis 0", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_gather(tape, x, -3, 2, (int64_t[]){1, 1}, (int64_t[]){0}), AG_EINVAL,
                 "gather axis", "ag_gather: axis -3 is out of range for [2,3]", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_scatter_add(tape, x, 0, (int64_t[]){0, 0, 0},
                                ag_zeros(tape, AG_F64, 1, (int64_t[]){3})),
                 AG_ESHAPE, "scatter rank", "ag_scatter_add: the index array [3] has rank 1, "
                 "base [2,3] has rank 2", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index(tape, x, 3, (int64_t[]){0, 0, 0}), AG_EINVAL, "index count",
                 "ag_index: 3 indices for [2,3] (rank 2)", NULL);
}

Test(ops_index, bad_structure_arguments_are_refused)
{
    ag_tensor *x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_pad(tape, x, (int64_t[]){0, 0, 1, -1}, 0.0), AG_EINVAL, "negative width",
                 "ag_pad: widths (1, -1) of axis 1 of [2,3] are not both >= 0", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_pad(tape, x, NULL, 0.0), AG_EINVAL, "NULL widths",
                 "ag_pad: widths is NULL for [2,3]", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_pad(tape, x, (int64_t[]){0, 0, INT64_MAX / 2, 0}, 0.0), AG_ESHAPE,
                 "huge width", "ag_pad: widths", "too large");
    x = counting(AG_F64, 1, (int64_t[]){3});
    expect_error(ag_tril(tape, x, 0), AG_ESHAPE, "tril rank",
                 "ag_tril: x [3] has rank 1; matrices need 2 or more", NULL);
    x = counting(AG_F64, 1, (int64_t[]){3});
    expect_error(ag_triu(tape, x, 0), AG_ESHAPE, "triu rank", "ag_triu: x [3] has rank 1", NULL);
    x = counting(AG_F64, 3, (int64_t[]){2, 2, 2});
    expect_error(ag_diag(tape, x, 0), AG_ESHAPE, "diag rank",
                 "ag_diag: x [2,2,2] has rank 3, not 1", NULL);
    x = counting(AG_F64, 1, (int64_t[]){2});
    expect_error(ag_diag(tape, x, INT64_MIN), AG_EINVAL, "diag k",
                 "ag_diag: diagonal -9223372036854775808 is out of range", NULL);
    x = counting(AG_F64, 1, (int64_t[]){3});
    expect_error(ag_trace(tape, x), AG_ESHAPE, "trace rank", "ag_trace: x [3] has rank 1, not 2",
                 NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    ag_tensor *y = counting(AG_F64, 2, (int64_t[]){3, 2});
    expect_error(ag_stack(tape, 2, (ag_tensor *[]){x, y}, 0), AG_ESHAPE, "stack shapes",
                 "ag_stack: input 1 [3,2] differs from input 0 [2,3]", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_stack(tape, 1, &x, 3), AG_EINVAL, "stack axis",
                 "ag_stack: axis 3 is out of range for a new axis of [2,3]", NULL);
    expect_error(ag_stack(tape, 0, NULL, 0), AG_EINVAL, "stack count",
                 "ag_stack: 0 inputs", NULL);
}

/* A failed op leaves the tape in error: the ops after it do nothing. */
Test(ops_index, errors_are_sticky)
{
    ag_tensor *x = counting(AG_F64, 2, (int64_t[]){2, 3});
    ag_index_select(tape, x, 0, 1, (int64_t[]){9});
    cr_assert(ag_is_nil(ag_diag(tape, x, 0)));
    cr_assert(ag_is_nil(ag_index(tape, x, 1, (int64_t[]){0})));
    cr_assert_not_null(strstr(ag_tape_errmsg(tape), "ag_index_select: index 9"));
}

/* The graph export replays each op's vjp for its edges: every new op must
** draw, named, with its gradients. */
Test(ops_index, graphs_draw_every_new_op)
{
    ag_tensor *x = ag_requires_grad(counting(AG_F64, 2, (int64_t[]){3, 3}));
    ag_tensor *parts[2] = {ag_tril(tape, x, 0), ag_triu(tape, x, 1)};
    ag_tensor *s = ag_stack(tape, 2, parts, 0);
    ag_tensor *p = ag_pad(tape, ag_index(tape, s, 1, (int64_t[]){0}), (int64_t[]){1, 0, 0, 1}, 0);
    ag_tensor *e = ag_index_select(tape, p, 0, 2, (int64_t[]){3, 3});
    ag_tensor *g = ag_gather(tape, e, 1, 2, (int64_t[]){2, 1}, (int64_t[]){0, 2});
    ag_tensor *d = ag_diag(tape, ag_diag(tape, ag_reshape(tape, g, 1, (int64_t[]){2}), 0), 0);
    ag_tensor *y = ag_add(tape, ag_trace(tape, x), ag_sum(tape, d));
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    cr_assert_eq(ag_dot_write(tape, y, NULL, f), AG_OK, "%s", ag_tape_errmsg(tape));
    long n = ftell(f);
    cr_assert_gt(n, 0);
    char *text = calloc(1, (size_t)n + 1);
    rewind(f);
    cr_assert_eq(fread(text, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    const char *names[] = {"tril", "triu", "stack", "pad", "index", "index_select", "gather",
                           "diag_embed", "diagonal"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        cr_expect_not_null(strstr(text, names[i]), "the graph does not name '%s'", names[i]);
    free(text);
    /* Row 3 of the padded tril(x) is x's row 2; gather picks columns 0 and
    ** 2 of it, so y = trace(x) + x[2][0] + x[2][2]. */
    cr_assert_eq(ag_item(y), 0 + 4 + 8 + 6 + 8);
    ag_backward(tape, y);
    expect_tensor(ag_grad(x), 2, (int64_t[]){3, 3}, (double[]){1, 0, 0, 0, 1, 0, 1, 0, 2},
                  "dy/dx");
}

Test(ops_index, null_tensors_and_tapes_are_refused)
{
    ag_tensor *x = counting(AG_F64, 2, (int64_t[]){2, 2});
    expect_error(ag_index_select(tape, NULL, 0, 1, (int64_t[]){0}), AG_EINVAL, "select NULL",
                 "ag_index_select: input 0 is NULL", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 2});
    expect_error(ag_index_add(tape, x, 0, 1, (int64_t[]){0}, NULL), AG_EINVAL, "add NULL",
                 "ag_index_add: input 1 is NULL", NULL);
    expect_error(ag_gather(tape, NULL, 0, 0, NULL, NULL), AG_EINVAL, "gather NULL",
                 "ag_gather: input 0 is NULL", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 2});
    expect_error(ag_scatter_add(tape, NULL, 0, NULL, x), AG_EINVAL, "scatter NULL",
                 "ag_scatter_add: input 0 is NULL", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 2});
    expect_error(ag_gather(tape, x, 0, 2, NULL, (int64_t[]){0}), AG_EINVAL, "gather shape NULL",
                 "ag_gather: the index array's shape is NULL for rank 2", NULL);
    expect_error(ag_index(tape, NULL, 0, NULL), AG_EINVAL, "index NULL",
                 "ag_index: input 0 is NULL", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 2});
    expect_error(ag_index(tape, x, 1, NULL), AG_EINVAL, "index idx NULL",
                 "ag_index: 1 indices at NULL for [2,2] (rank 2)", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 2});
    expect_error(ag_stack(tape, 2, (ag_tensor *[]){x, NULL}, 0), AG_EINVAL, "stack NULL",
                 "ag_stack: input 1 is NULL", NULL);
    expect_error(ag_pad(tape, NULL, NULL, 0), AG_EINVAL, "pad NULL", "ag_pad: input 0 is NULL",
                 NULL);
    expect_error(ag_tril(tape, NULL, 0), AG_EINVAL, "tril NULL", "ag_tril: input 0 is NULL", NULL);
    expect_error(ag_diag(tape, NULL, 0), AG_EINVAL, "diag NULL", "ag_diag: input 0 is NULL", NULL);
    expect_error(ag_trace(tape, NULL), AG_EINVAL, "trace NULL", "ag_trace: input 0 is NULL", NULL);
    /* Without a tape there is nowhere to record: nil, no crash. */
    cr_assert(ag_is_nil(ag_index_select(NULL, NULL, 0, 0, NULL)));
    cr_assert(ag_is_nil(ag_stack(NULL, 1, &x, 0)));
    cr_assert(ag_is_nil(ag_trace(NULL, x)));
}

/* Counts that no array could hold are refused before anything is read. */
Test(ops_index, impossible_index_counts_are_refused)
{
    ag_tensor *x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_index_select(tape, x, 0, INT64_MAX, (int64_t[]){0}), AG_EINVAL, "huge n",
                 "ag_index_select: 9223372036854775807 indices are too many", NULL);
    x = counting(AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_gather(tape, x, 0, 2, (int64_t[]){INT64_MAX / 2, 3}, (int64_t[]){0}),
                 AG_ESHAPE, "huge index array", "ag_gather: the index array", "does not fit");
}
