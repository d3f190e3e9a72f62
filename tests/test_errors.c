/*
** test_errors.c: every error path of the core reports a status and a message
** that names the function and the offending values, returns the nil tensor,
** and never crashes; then the sticky rules: the first error wins, later ops
** do nothing, backward does nothing, nil is safe to read, reset recovers.
*/
#include "internal.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

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

TestSuite(errors, .init = setup, .fini = teardown);

/* Asserts the tape's status and that its message contains 'needle' (the
** whole message where the test gives it whole), then resets the tape for
** the next case. 'what' says which case failed. */
static void expect(const char *what, ag_status want, const char *needle)
{
    ag_status got = ag_tape_status(tape);
    const char *msg = ag_tape_errmsg(tape);
    cr_assert_eq(got, want, "%s: status %s, want %s (message '%s')", what, ag_status_str(got),
                 ag_status_str(want), msg);
    cr_assert_not_null(strstr(msg, needle), "%s: message '%s' lacks '%s'", what, msg, needle);
    ag_tape_reset(tape);
}

/* The same for a call that must also return the nil tensor. */
static void expect_nil(const char *what, const ag_tensor *r, ag_status want, const char *needle)
{
    cr_assert(ag_is_nil(r), "%s: returned a tensor, not nil", what);
    expect(what, want, needle);
}

static ag_tensor *mat(int64_t rows, int64_t cols)
{
    return ag_ones(tape, AG_F64, 2, (int64_t[]){rows, cols});
}

static ag_tensor *vec(ag_dtype dt, int64_t n) { return ag_ones(tape, dt, 1, (int64_t[]){n}); }

/* ------------------------------------------------------------ NULL input */

Test(errors, null_inputs)
{
    ag_tensor *a = mat(2, 3);
    expect_nil("add", ag_add(tape, NULL, a), AG_EINVAL, "ag_add: input 0 is NULL");
    a = mat(2, 3);
    expect_nil("matmul", ag_matmul(tape, a, NULL), AG_EINVAL, "ag_matmul: input 1 is NULL");
    expect_nil("neg", ag_neg(tape, NULL), AG_EINVAL, "ag_neg: input 0 is NULL");
    expect_nil("sum", ag_sum(tape, NULL), AG_EINVAL, "ag_sum: input 0 is NULL");
    expect_nil("mean_axis", ag_mean_axis(tape, NULL, 0, 0), AG_EINVAL,
               "ag_mean_axis: input 0 is NULL");
    expect_nil("reshape", ag_reshape(tape, NULL, 1, (int64_t[]){1}), AG_EINVAL,
               "ag_reshape: input 0 is NULL");
    a = mat(2, 3);
    expect_nil("where", ag_where(tape, a, NULL, a), AG_EINVAL, "ag_where: input 1 is NULL");
    a = mat(2, 3);
    expect_nil("concat", ag_concat(tape, 2, (ag_tensor *[]){a, NULL}, 0), AG_EINVAL,
               "ag_concat: input 1 is NULL");
    expect_nil("concat xs", ag_concat(tape, 2, NULL, 0), AG_EINVAL, "ag_concat: 2 inputs");
    expect_nil("add_scalar", ag_add_scalar(tape, NULL, 1), AG_EINVAL,
               "ag_add_scalar: input 0 is NULL");
    expect_nil("detach", ag_detach(tape, NULL), AG_EINVAL, "ag_detach: input 0 is NULL");
    expect_nil("cast", ag_cast(tape, NULL, AG_F32), AG_EINVAL, "ag_cast: input 0 is NULL");
    expect_nil("cross_entropy", ag_cross_entropy(tape, NULL, (int64_t[]){0}), AG_EINVAL,
               "ag_cross_entropy: input 0 is NULL");

    expect_nil("tensor_from data", ag_tensor_from(tape, AG_F64, 1, (int64_t[]){3}, NULL),
               AG_EINVAL, "ag_tensor_from: data is NULL for shape [3]");
    expect_nil("zeros shape", ag_zeros(tape, AG_F64, 2, NULL), AG_EINVAL,
               "ag_zeros: shape is NULL for rank 2");
    expect_nil("tensor_from shape", ag_tensor_from(tape, AG_F64, 1, NULL, (double[]){1}),
               AG_EINVAL, "ag_tensor_from: shape is NULL for rank 1");
    a = mat(2, 3);
    expect_nil("permute perm", ag_permute(tape, a, NULL), AG_EINVAL,
               "ag_permute: perm is NULL for shape [2,3]");
    a = mat(2, 3);
    expect_nil("labels", ag_cross_entropy(tape, a, NULL), AG_EINVAL,
               "ag_cross_entropy: labels is NULL");
    expect_nil("rand rng", ag_rand(tape, NULL, AG_F64, 0, NULL, 0, 1), AG_EINVAL,
               "ag_rand: rng is NULL");
    expect_nil("randn rng", ag_randn(tape, NULL, AG_F64, 0, NULL, 0, 1), AG_EINVAL,
               "ag_randn: rng is NULL");
    a = mat(2, 3);
    expect_nil("reshape shape", ag_reshape(tape, a, 2, NULL), AG_EINVAL, "ag_reshape: target");
    a = mat(2, 3);
    expect_nil("broadcast_to shape", ag_broadcast_to(tape, a, 2, NULL), AG_EINVAL,
               "ag_broadcast_to: target rank 2");
    a = mat(2, 3);
    expect_nil("sum_to shape", ag_sum_to(tape, a, 2, NULL), AG_EINVAL, "ag_sum_to: target rank 2");

    ag_backward(tape, NULL);
    expect("backward", AG_EINVAL, "ag_backward: input 0 is NULL");
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 1));
    ag_backward_seed(tape, x, NULL);
    expect("backward_seed", AG_EINVAL, "ag_backward_seed: seed is NULL");
    x = ag_requires_grad(ag_scalar(tape, AG_F64, 1));
    ag_tensor *out[1];
    ag_gradients(tape, x, NULL, 1, NULL, out, 0);
    expect("gradients xs", AG_EINVAL, "ag_gradients: 1 inputs with xs");
    x = ag_requires_grad(ag_scalar(tape, AG_F64, 1));
    ag_gradients(tape, x, NULL, 1, (ag_tensor *[]){NULL}, out, 0);
    cr_assert(ag_is_nil(out[0]), "outputs are nil after an error");
    expect("gradients input", AG_EINVAL, "ag_gradients: input 0 is NULL");
    x = ag_requires_grad(ag_scalar(tape, AG_F64, 1));
    ag_gradients(tape, x, NULL, -1, NULL, NULL, 0);
    expect("gradients n", AG_EINVAL, "ag_gradients: -1 inputs");
}

/* ------------------------------------------------------------- nil input */

Test(errors, nil_inputs)
{
    ag_tape *failed = ag_tape_new();
    ag_tensor *nil = ag_add(failed, ag_zeros(failed, AG_F64, 1, (int64_t[]){2}),
                            ag_zeros(failed, AG_F64, 1, (int64_t[]){3}));
    cr_assert(ag_is_nil(nil));
    ag_tensor *a = vec(AG_F64, 2);
    expect_nil("add", ag_add(tape, nil, a), AG_EINVAL,
               "ag_add: input 0 is the nil tensor of a failed tape");
    expect_nil("exp", ag_exp(tape, nil), AG_EINVAL, "ag_exp: input 0 is the nil tensor");
    expect_nil("orphan", ag_exp(tape, agi_nil(NULL)), AG_EINVAL, "ag_exp: input 0 is the nil");
    expect_nil("own nil", ag_exp(tape, agi_nil(tape)), AG_EINVAL, "ag_exp: input 0 is the nil");
    ag_backward(tape, nil);
    expect("backward", AG_EINVAL, "ag_backward: input 0 is the nil tensor");
    ag_tape_free(failed);
}

/* ------------------------------------------------------- shape mismatches */

typedef ag_tensor *(*binary_fn)(ag_tape *, ag_tensor *, ag_tensor *);

static const struct {
    const char *name;
    binary_fn fn;
} binary_ops[] = {
    {"ag_add", ag_add}, {"ag_sub", ag_sub}, {"ag_mul", ag_mul}, {"ag_div", ag_div},
    {"ag_pow", ag_pow}, {"ag_maximum", ag_maximum}, {"ag_minimum", ag_minimum},
    {"ag_gt", ag_gt}, {"ag_ge", ag_ge}, {"ag_lt", ag_lt}, {"ag_le", ag_le}, {"ag_eq", ag_eq},
};
enum { N_BINARY = sizeof binary_ops / sizeof binary_ops[0] };

Test(errors, binary_shapes_that_do_not_broadcast)
{
    char want[128];
    for (int i = 0; i < N_BINARY; i++) {
        ag_tensor *a = mat(2, 3), *b = vec(AG_F64, 4);
        size_t before = ag_tape_entries(tape);
        ag_tensor *r = binary_ops[i].fn(tape, ag_requires_grad(a), b);
        cr_assert_eq(ag_tape_entries(tape), before, "%s recorded a failed op", binary_ops[i].name);
        snprintf(want, sizeof want, "%s: shapes [2,3] and [4] do not broadcast",
                 binary_ops[i].name);
        cr_assert_str_eq(ag_tape_errmsg(tape), want);
        expect_nil(binary_ops[i].name, r, AG_ESHAPE, want);
    }
    ag_tensor *m = mat(2, 3), *v = vec(AG_F64, 4);
    expect_nil("where", ag_where(tape, m, m, v), AG_ESHAPE,
               "ag_where: shapes [2,3], [2,3] and [4] do not broadcast");
    m = mat(2, 3);
    expect_nil("add_scalar ok, then add", ag_add(tape, ag_add_scalar(tape, m, 1), mat(3, 2)),
               AG_ESHAPE, "ag_add: shapes [2,3] and [3,2] do not broadcast");
}

Test(errors, matmul_shapes)
{
    ag_matmul(tape, mat(3, 4), mat(5, 2));
    cr_assert_str_eq(ag_tape_errmsg(tape), "ag_matmul: [3,4] x [5,2]: inner sizes 4 and 5 differ");
    expect("inner", AG_ESHAPE, "inner sizes 4 and 5 differ");
    expect_nil("scalar", ag_matmul(tape, ag_scalar(tape, AG_F64, 1), mat(2, 2)), AG_ESHAPE,
               "ag_matmul: [] x [2,2]: scalars have no matrix product");
    ag_tensor *a = ag_ones(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    ag_tensor *b = ag_ones(tape, AG_F64, 3, (int64_t[]){5, 4, 2});
    expect_nil("batch", ag_matmul(tape, a, b), AG_ESHAPE,
               "ag_matmul: [2,3,4] x [5,4,2]: batch dims do not broadcast");
    /* The shapes given, not the matrices a vector was reshaped to. */
    expect_nil("vectors", ag_matmul(tape, vec(AG_F64, 3), vec(AG_F64, 4)), AG_ESHAPE,
               "ag_matmul: [3] x [4]: inner sizes 3 and 4 differ");
    expect_nil("matrix-vector", ag_matmul(tape, mat(2, 3), vec(AG_F64, 4)), AG_ESHAPE,
               "ag_matmul: [2,3] x [4]: inner sizes 3 and 4 differ");
    expect_nil("vector-matrix", ag_matmul(tape, vec(AG_F64, 4), mat(3, 2)), AG_ESHAPE,
               "ag_matmul: [4] x [3,2]: inner sizes 4 and 3 differ");
}

Test(errors, other_shape_errors)
{
    ag_tensor *a = mat(2, 3), *b = mat(2, 4);
    expect_nil("concat", ag_concat(tape, 2, (ag_tensor *[]){a, b}, 0), AG_ESHAPE,
               "ag_concat: input 1 [2,4] does not match input 0 [2,3] outside axis 0");
    a = mat(2, 3);
    expect_nil("concat rank", ag_concat(tape, 2, (ag_tensor *[]){a, vec(AG_F64, 3)}, 0),
               AG_ESHAPE, "ag_concat: input 1 [3] does not match input 0 [2,3]");
    a = mat(2, 3);
    expect_nil("concat none", ag_concat(tape, 0, (ag_tensor *[]){a}, 0), AG_EINVAL,
               "ag_concat: 0 inputs");
    expect_nil("broadcast_to", ag_broadcast_to(tape, vec(AG_F64, 3), 2, (int64_t[]){2, 4}),
               AG_ESHAPE, "ag_broadcast_to: [3] does not broadcast to [2,4]");
    expect_nil("broadcast_to rank", ag_broadcast_to(tape, mat(2, 3), 1, (int64_t[]){3}),
               AG_ESHAPE, "ag_broadcast_to: [2,3] does not broadcast to [3]");
    expect_nil("sum_to", ag_sum_to(tape, mat(2, 3), 1, (int64_t[]){4}), AG_ESHAPE,
               "ag_sum_to: [4] does not broadcast to [2,3]");
    ag_tensor *empty = ag_zeros(tape, AG_F64, 1, (int64_t[]){0});
    expect_nil("mean empty", ag_mean(tape, empty), AG_ESHAPE,
               "ag_mean: the mean of the empty shape [0] is undefined");
    empty = ag_zeros(tape, AG_F64, 1, (int64_t[]){0});
    expect_nil("max empty", ag_max(tape, empty), AG_ESHAPE,
               "ag_max: cannot reduce the empty shape [0]");
    empty = ag_zeros(tape, AG_F64, 2, (int64_t[]){2, 0});
    expect_nil("mean_axis empty", ag_mean_axis(tape, empty, 1, 0), AG_ESHAPE,
               "ag_mean_axis: axis 1 of [2,0] is empty");
    empty = ag_zeros(tape, AG_F64, 2, (int64_t[]){2, 0});
    expect_nil("min_axis empty", ag_min_axis(tape, empty, 1, 0), AG_ESHAPE,
               "ag_min_axis: cannot reduce the empty shape [2,0]");
}

/* ----------------------------------------------------------------- dtypes */

Test(errors, dtype_mix)
{
    char want[128];
    for (int i = 0; i < N_BINARY; i++) {
        ag_tensor *r = binary_ops[i].fn(tape, vec(AG_F32, 2), vec(AG_F64, 2));
        snprintf(want, sizeof want, "%s: dtypes differ: input 0 is f32, input 1 is f64",
                 binary_ops[i].name);
        cr_assert_str_eq(ag_tape_errmsg(tape), want);
        expect_nil(binary_ops[i].name, r, AG_EDTYPE, want);
    }
    expect_nil("matmul", ag_matmul(tape, mat(2, 2), ag_ones(tape, AG_F32, 2, (int64_t[]){2, 2})),
               AG_EDTYPE, "ag_matmul: dtypes differ: input 0 is f64, input 1 is f32");
    ag_tensor *m = vec(AG_F64, 2);
    expect_nil("where", ag_where(tape, m, m, vec(AG_F32, 2)), AG_EDTYPE,
               "ag_where: dtypes differ: input 0 is f64, input 2 is f32");
    ag_tensor *a = vec(AG_F64, 2);
    expect_nil("concat", ag_concat(tape, 2, (ag_tensor *[]){a, vec(AG_F32, 2)}, 0), AG_EDTYPE,
               "ag_concat: dtypes differ: input 0 is f64, input 1 is f32");
    ag_tensor *p = ag_param_scalar(AG_F32, 1);
    expect_nil("param", ag_mul(tape, p, ag_scalar(tape, AG_F64, 2)), AG_EDTYPE,
               "ag_mul: dtypes differ: input 0 is f32, input 1 is f64");
    ag_param_free(p);
    ag_tensor *y = ag_requires_grad(vec(AG_F64, 2));
    ag_backward_seed(tape, y, vec(AG_F32, 2));
    expect("seed dtype", AG_ESHAPE, "ag_backward_seed: seed is f32 [2] but the output is f64 [2]");
}

/* 'r' came from 'fn' called with the dtype value 7. */
static void expect_bad_dtype(const char *fn, const ag_tensor *r)
{
    char want[96];
    snprintf(want, sizeof want, "%s: dtype 7 is neither AG_F32 nor AG_F64", fn);
    cr_assert_str_eq(ag_tape_errmsg(tape), want);
    expect_nil(fn, r, AG_EDTYPE, want);
}

Test(errors, bad_dtype_values)
{
    const ag_dtype bad = (ag_dtype)7;
    int64_t two = 2;
    ag_rng r;
    ag_rng_seed(&r, 1);
    expect_bad_dtype("ag_zeros", ag_zeros(tape, bad, 1, &two));
    expect_bad_dtype("ag_ones", ag_ones(tape, bad, 1, &two));
    expect_bad_dtype("ag_full", ag_full(tape, bad, 1, &two, 3));
    expect_bad_dtype("ag_scalar", ag_scalar(tape, bad, 3));
    expect_bad_dtype("ag_tensor_from", ag_tensor_from(tape, bad, 1, &two, (double[]){1, 2}));
    expect_bad_dtype("ag_arange", ag_arange(tape, bad, 0, 3, 1));
    expect_bad_dtype("ag_eye", ag_eye(tape, bad, 2));
    expect_bad_dtype("ag_rand", ag_rand(tape, &r, bad, 1, &two, 0, 1));
    expect_bad_dtype("ag_randn", ag_randn(tape, &r, bad, 1, &two, 0, 1));
    expect_bad_dtype("ag_cast", ag_cast(tape, vec(AG_F64, 2), bad));
}

/* -------------------------------------------------------- tapes and time */

Test(errors, tensor_from_another_tape)
{
    ag_tape *other = ag_tape_new();
    ag_tensor *w = ag_ones(other, AG_F64, 0, NULL);
    expect_nil("mul", ag_mul(tape, ag_scalar(tape, AG_F64, 1), w), AG_EINVAL,
               "ag_mul: input 1 belongs to another tape");
    ag_set_name(w, "w");
    expect_nil("named", ag_mul(tape, ag_scalar(tape, AG_F64, 1), w), AG_EINVAL,
               "ag_mul: input 1 'w' belongs to another tape");
    ag_tensor *y = ag_mul(other, ag_requires_grad(w), w);
    ag_backward(tape, y);
    expect("backward", AG_EINVAL, "ag_backward: input 0 belongs to another tape");
    cr_assert_null(ag_grad(w), "the other tape's tensors are untouched");
    cr_assert_eq(ag_tape_status(other), AG_OK, "the other tape is not blamed");
    ag_tape_free(other);
}

/* A tensor kept past ag_tape_reset is caught while its header still holds
** the old epoch (best effort: once the arena reuses its bytes it cannot be). */
Test(errors, tensor_used_after_reset)
{
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 2));
    ag_tensor *y = ag_mul(tape, x, x);
    ag_tape_reset(tape);
    expect_nil("exp", ag_exp(tape, x), AG_ESTATE,
               "ag_exp: input 0 was made before the last ag_tape_reset");
    ag_backward(tape, y);
    expect("backward", AG_ESTATE, "ag_backward: input 0 was made before the last ag_tape_reset");
}

/* ------------------------------------------------------------------- axes */

static ag_tensor *sum_axis(ag_tape *t, ag_tensor *x, int a) { return ag_sum_axis(t, x, a, 0); }
static ag_tensor *mean_axis(ag_tape *t, ag_tensor *x, int a) { return ag_mean_axis(t, x, a, 1); }
static ag_tensor *max_axis(ag_tape *t, ag_tensor *x, int a) { return ag_max_axis(t, x, a, 0); }
static ag_tensor *min_axis(ag_tape *t, ag_tensor *x, int a) { return ag_min_axis(t, x, a, 0); }
static ag_tensor *lse_axis(ag_tape *t, ag_tensor *x, int a)
{
    return ag_logsumexp_axis(t, x, a, 0);
}
static ag_tensor *slice(ag_tape *t, ag_tensor *x, int a) { return ag_slice(t, x, a, 0, 1, 1); }
static ag_tensor *concat(ag_tape *t, ag_tensor *x, int a)
{
    return ag_concat(t, 2, (ag_tensor *[]){x, x}, a);
}
static ag_tensor *transpose(ag_tape *t, ag_tensor *x, int a) { return ag_transpose(t, x, 0, a); }

Test(errors, axis_out_of_range)
{
    const struct {
        const char *format;   /* the message, %d for the axis */
        ag_tensor *(*fn)(ag_tape *, ag_tensor *, int);
    } ops[] = {
        {"ag_sum_axis: axis %d is out of range for shape [2,3]", sum_axis},
        {"ag_mean_axis: axis %d is out of range for shape [2,3]", mean_axis},
        {"ag_max_axis: axis %d is out of range for shape [2,3]", max_axis},
        {"ag_min_axis: axis %d is out of range for shape [2,3]", min_axis},
        {"ag_logsumexp_axis: axis %d is out of range for shape [2,3]", lse_axis},
        {"ag_softmax: axis %d is out of range for [2,3]", ag_softmax},
        {"ag_log_softmax: axis %d is out of range for [2,3]", ag_log_softmax},
        {"ag_slice: axis %d is out of range for [2,3]", slice},
        {"ag_concat: axis %d is out of range for [2,3]", concat},
        {"ag_transpose: axes 0 and %d do not both exist in [2,3]", transpose},
    };
    const int bad_axes[] = {2, -3, 100};
    char want[128];
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        for (size_t k = 0; k < 3; k++) {
            snprintf(want, sizeof want, ops[i].format, bad_axes[k]);
            ag_tensor *r = ops[i].fn(tape, ag_requires_grad(mat(2, 3)), bad_axes[k]);
            cr_assert_eq(ag_tape_entries(tape), 0, "%s", want);
            cr_assert_str_eq(ag_tape_errmsg(tape), want);
            expect_nil(want, r, AG_EINVAL, want);
            /* the same ops accept the axis counted from the end */
            r = ops[i].fn(tape, mat(2, 3), -1);
            cr_assert_eq(ag_tape_status(tape), AG_OK, "%s: %s", want, ag_tape_errmsg(tape));
        }
    expect_nil("scalar", ag_sum_axis(tape, ag_scalar(tape, AG_F64, 1), 0, 0), AG_EINVAL,
               "ag_sum_axis: axis 0 is out of range for shape []");
}

Test(errors, bad_slices)
{
    const int64_t bad[][3] = {{0, 2, 0}, {0, 6, 1}, {3, 2, 1}, {-7, 2, 1}, {0, 2, -1}};
    char want[128];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ag_tensor *r = ag_slice(tape, mat(2, 5), 1, bad[i][0], bad[i][1], bad[i][2]);
        snprintf(want, sizeof want,
                 "ag_slice: [%lld:%lld:%lld] does not fit axis 1 of [2,5] (size 5)",
                 (long long)bad[i][0], (long long)bad[i][1], (long long)bad[i][2]);
        expect_nil(want, r, AG_EINVAL, want);
    }
    /* a step of any size past the axis takes just the first element */
    ag_tensor *one = ag_slice(tape, ag_arange(tape, AG_F64, 0, 5, 1), 0, 1, 5, INT64_MAX);
    cr_assert_eq(ag_numel(one), 1);
    cr_assert_eq(ag_item(one), 1.0);
    /* the edges that are allowed */
    cr_assert_eq(ag_dim(ag_slice(tape, mat(2, 5), 1, 5, 5, 1), 1), 0);
    cr_assert_eq(ag_dim(ag_slice(tape, mat(2, 5), 1, -3, -1, 1), 1), 2);
    cr_assert_eq(ag_dim(ag_slice(tape, mat(2, 5), 1, 0, 5, 2), 1), 3);
    cr_assert_eq(ag_tape_status(tape), AG_OK, "%s", ag_tape_errmsg(tape));
}

Test(errors, bad_permutations)
{
    ag_tensor *x = ag_zeros(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_nil("repeat", ag_permute(tape, x, (int[]){0, 0, 1}), AG_EINVAL,
               "ag_permute: entry 1 (0) makes no permutation of 3 axes for [2,3,4]");
    x = ag_zeros(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_nil("too big", ag_permute(tape, x, (int[]){0, 1, 3}), AG_EINVAL,
               "ag_permute: entry 2 (3) makes no permutation");
    x = ag_zeros(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_nil("negative", ag_permute(tape, x, (int[]){-1, 1, 2}), AG_EINVAL,
               "ag_permute: entry 0 (-1) makes no permutation");
}

Test(errors, bad_reshapes)
{
    expect_nil("count", ag_reshape(tape, mat(2, 3), 1, (int64_t[]){4}), AG_ESHAPE,
               "ag_reshape: cannot view [2,3] (6 elements) as [4]");
    expect_nil("two -1", ag_reshape(tape, mat(2, 3), 2, (int64_t[]){-1, -1}), AG_ESHAPE,
               "ag_reshape: dimension 1 of the target is -1");
    expect_nil("-1 misfit", ag_reshape(tape, mat(2, 3), 2, (int64_t[]){-1, 4}), AG_ESHAPE,
               "ag_reshape: cannot view [2,3] (6 elements) as [-1,4]");
    expect_nil("negative", ag_reshape(tape, mat(2, 3), 2, (int64_t[]){-2, 3}), AG_ESHAPE,
               "ag_reshape: dimension 0 of the target is -2");
    expect_nil("rank", ag_reshape(tape, mat(2, 3), AG_MAX_DIMS + 1, (int64_t[AG_MAX_DIMS + 1]){6}),
               AG_EINVAL, "ag_reshape: target rank 9 is invalid");
    /* dims whose product overflows are refused, not wrapped around */
    expect_nil("overflow", ag_reshape(tape, mat(2, 3), 2, (int64_t[]){INT64_MAX, INT64_MAX}),
               AG_ESHAPE, "ag_reshape: cannot view [2,3] (6 elements) as [9223372036854775807,");
    expect_nil("overflow -1", ag_reshape(tape, mat(2, 3), 3, (int64_t[]){-1, INT64_MAX, 4}),
               AG_ESHAPE, "ag_reshape: cannot view [2,3]");
    ag_tensor *ok = ag_reshape(tape, mat(2, 3), 2, (int64_t[]){-1, 2});
    cr_assert_eq(ag_dim(ok, 0), 3, "one -1 is inferred");
}

Test(errors, cross_entropy_labels)
{
    expect_nil("too big", ag_cross_entropy(tape, mat(2, 3), (int64_t[]){0, 3}), AG_EINVAL,
               "ag_cross_entropy: label 3 of row 1 is outside [0, 3)");
    expect_nil("negative", ag_cross_entropy(tape, mat(2, 3), (int64_t[]){-1, 0}), AG_EINVAL,
               "ag_cross_entropy: label -1 of row 0 is outside [0, 3)");
    expect_nil("rank", ag_cross_entropy(tape, vec(AG_F64, 3), (int64_t[]){0}), AG_ESHAPE,
               "ag_cross_entropy: logits are [3], not [N,C] with N, C >= 1");
    expect_nil("empty", ag_cross_entropy(tape, mat(0, 3), (int64_t[]){0}), AG_ESHAPE,
               "ag_cross_entropy: logits are [0,3]");
}

/* -------------------------------------------------------------- backward */

Test(errors, backward_of_non_scalar_without_seed)
{
    ag_tensor *y = ag_mul(tape, ag_requires_grad(vec(AG_F64, 3)), vec(AG_F64, 3));
    ag_backward(tape, y);
    cr_assert_str_eq(ag_tape_errmsg(tape),
                     "ag_backward: output has shape [3], not one element; pass a seed");
    expect("backward", AG_ESHAPE, "pass a seed");
    ag_tensor *x = ag_requires_grad(vec(AG_F64, 3));
    ag_tensor *out;
    ag_gradients(tape, ag_exp(tape, x), NULL, 1, &x, &out, 0);
    expect("gradients", AG_ESHAPE, "ag_gradients: output has shape [3], not one element");
    y = ag_exp(tape, ag_requires_grad(vec(AG_F64, 3)));
    ag_backward_seed(tape, y, vec(AG_F64, 2));
    expect("seed shape", AG_ESHAPE, "ag_backward_seed: seed is f64 [2] but the output is f64 [3]");
}

Test(errors, backward_of_what_requires_no_grad)
{
    ag_tensor *c = vec(AG_F64, 1);
    ag_tensor *y = ag_mul(tape, c, c);
    ag_backward(tape, y);
    cr_assert_str_eq(ag_tape_errmsg(tape),
                     "ag_backward: the output depends on no tensor that requires grad");
    expect("constant", AG_ESTATE, "depends on no tensor that requires grad");
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 1));
    ag_no_grad_begin(tape);
    ag_tensor *loss = ag_exp(tape, x);
    ag_no_grad_end(tape);
    ag_set_name(loss, "loss");
    ag_backward(tape, loss);
    expect("no-grad result", AG_ESTATE, "ag_backward: the output 'loss' depends on no tensor");
}

Test(errors, requires_grad_on_a_recorded_result)
{
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 2));
    ag_tensor *y = ag_mul(tape, x, x);
    cr_assert_eq(ag_requires_grad(y), y);
    expect("unnamed", AG_EINVAL, "ag_requires_grad: tensor is the recorded result of op mul, "
                                 "not a leaf");
    x = ag_requires_grad(ag_scalar(tape, AG_F64, 2));
    y = ag_exp(tape, x);
    ag_set_name(y, "h");
    ag_requires_grad(y);
    cr_assert_str_eq(ag_tape_errmsg(tape),
                     "ag_requires_grad: tensor 'h' is the recorded result of op exp, not a leaf");
    expect("named", AG_EINVAL, "'h'");
}

#ifndef NDEBUG
/* A vjp that hands back a gradient of the wrong shape is a library bug; debug
** builds catch it before it corrupts anything. */
static void vjp_wrong_shape(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)out, (void)g;
    gin[0] = ag_zeros(t, AG_F64, 1, (int64_t[]){5});
}
static void vjp_wrong_dtype(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)g;
    gin[0] = ag_zeros(t, AG_F32, 1, out->in[0]->shape);
}
static const ag_op fake_wrong_shape = {.name = "fake_shape", .vjp = vjp_wrong_shape};
static const ag_op fake_wrong_dtype = {.name = "fake_dtype", .vjp = vjp_wrong_dtype};
#endif
static void vjp_reenters(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)g, (void)gin;
    ag_backward(t, out);
}
static const ag_op fake_reenters = {.name = "fake_reenters", .vjp = vjp_reenters};

/* y = op(x) for x of shape [3], y a scalar 0, recorded. */
static ag_tensor *fake_apply(const ag_op *op)
{
    ag_tensor *x = ag_requires_grad(vec(AG_F64, 3));
    ag_tensor *y = agi_new(tape, op, 1, &x, AG_F64, 0, NULL);
    cr_assert(!ag_is_nil(y));
    ag_set(y, 0, 0.0);
    cr_assert_eq(ag_tape_entries(tape), 1);
    return y;
}

Test(errors, debug_build_checks_vjp_results)
{
#ifdef NDEBUG
    cr_skip_test("vjp results are checked only when NDEBUG is not defined");
#else
    ag_backward(tape, fake_apply(&fake_wrong_shape));
    cr_assert_str_eq(ag_tape_errmsg(tape),
                     "internal: vjp of fake_shape gave f64 [5] for input 0 of f64 [3]");
    expect("shape", AG_ESTATE, "internal: vjp of");
    ag_backward(tape, fake_apply(&fake_wrong_dtype));
    expect("dtype", AG_ESTATE, "internal: vjp of fake_dtype gave f32 [3] for input 0 of f64 [3]");
#endif
}

Test(errors, backward_inside_backward)
{
    ag_backward(tape, fake_apply(&fake_reenters));
    expect("reentry", AG_ESTATE, "ag_backward: called while a backward pass is running");
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 3));
    ag_backward(tape, ag_mul(tape, x, x));
    cr_assert_eq(ag_tape_status(tape), AG_OK, "the tape works again after reset");
    cr_assert_eq(ag_grad_item(x), 6.0);
}

/* ------------------------------------------------- ranks and constructors */

Test(errors, bad_ranks_and_dims)
{
    int64_t dims[AG_MAX_DIMS + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    expect_nil("zeros 9", ag_zeros(tape, AG_F64, AG_MAX_DIMS + 1, dims), AG_ESHAPE,
               "ag_zeros: rank 9 is outside 0..8");
    expect_nil("ones -1", ag_ones(tape, AG_F64, -1, dims), AG_ESHAPE,
               "ag_ones: rank -1 is outside 0..8");
    expect_nil("from 9", ag_tensor_from(tape, AG_F64, 9, dims, (double[]){1}), AG_ESHAPE,
               "ag_tensor_from: rank 9 is outside 0..8");
    ag_rng r;
    ag_rng_seed(&r, 1);
    expect_nil("rand 9", ag_rand(tape, &r, AG_F64, 9, dims, 0, 1), AG_ESHAPE,
               "ag_rand: rank 9 is outside 0..8");
    expect_nil("negative dim", ag_zeros(tape, AG_F64, 2, (int64_t[]){2, -2}), AG_ESHAPE,
               "ag_zeros: dimension 1 is negative (-2)");
    expect_nil("full negative", ag_full(tape, AG_F32, 1, (int64_t[]){-1}, 1), AG_ESHAPE,
               "ag_full: dimension 0 is negative (-1)");
    expect_nil("randn negative", ag_randn(tape, &r, AG_F64, 1, (int64_t[]){-3}, 0, 1), AG_ESHAPE,
               "ag_randn: dimension 0 is negative (-3)");
    expect_nil("overflow", ag_ones(tape, AG_F64, 2, (int64_t[]){INT64_MAX, 4}), AG_ESHAPE,
               "ag_ones: shape [9223372036854775807,4] has too many elements");
    expect_nil("broadcast_to 9", ag_broadcast_to(tape, vec(AG_F64, 1), 9, dims), AG_EINVAL,
               "ag_broadcast_to: target rank 9");
}

Test(errors, clamp_bounds)
{
    expect_nil("lo > hi", ag_clamp(tape, vec(AG_F64, 2), 2, 1), AG_EINVAL,
               "ag_clamp: lower bound 2 is above upper bound 1");
    expect_nil("nan", ag_clamp(tape, vec(AG_F64, 2), NAN, 1), AG_EINVAL, "ag_clamp: lower bound");
    ag_tensor *ok = ag_clamp(tape, vec(AG_F64, 2), 0.5, 0.5);
    cr_assert_eq(ag_get(ok, 0), 0.5, "lo == hi is allowed");
    cr_assert_eq(ag_tape_status(tape), AG_OK);
}

Test(errors, arange_and_other_constructors)
{
    expect_nil("step 0", ag_arange(tape, AG_F64, 0, 1, 0), AG_EINVAL,
               "ag_arange: start 0, stop 1, step 0 must be finite, step nonzero");
    expect_nil("nan", ag_arange(tape, AG_F64, NAN, 1, 1), AG_EINVAL, "ag_arange: start nan");
    expect_nil("inf", ag_arange(tape, AG_F64, 0, INFINITY, 1), AG_EINVAL, "stop inf");
    expect_nil("nan step", ag_arange(tape, AG_F64, 0, 1, NAN), AG_EINVAL, "step nan");
    expect_nil("too many", ag_arange(tape, AG_F64, 0, 1e13, 1), AG_ESHAPE,
               "ag_arange: 1e+13 elements are too many");
    expect_nil("eye", ag_eye(tape, AG_F64, -1), AG_ESHAPE, "ag_eye: size -1 is negative");
    expect_nil("eye overflow", ag_eye(tape, AG_F64, INT64_MAX / 2), AG_ESHAPE, "ag_eye: shape");
    ag_rng r;
    ag_rng_seed(&r, 1);
    expect_nil("rand lo > hi", ag_rand(tape, &r, AG_F64, 0, NULL, 1, 0), AG_EINVAL,
               "ag_rand: parameters 1 and 0 are invalid");
    expect_nil("rand inf", ag_rand(tape, &r, AG_F64, 0, NULL, 0, INFINITY), AG_EINVAL,
               "ag_rand: parameters 0 and inf are invalid");
    expect_nil("randn std", ag_randn(tape, &r, AG_F64, 0, NULL, 0, -1), AG_EINVAL,
               "ag_randn: parameters 0 and -1 are invalid");
}

/* ---------------------------------------------------------- NULL tape */

Test(errors, null_tape_never_crashes)
{
    ag_tape *t = NULL;
    ag_tensor *x = vec(AG_F64, 2);
    ag_rng r;
    ag_rng_seed(&r, 1);
    ag_tensor *results[] = {
        ag_zeros(t, AG_F64, 1, (int64_t[]){2}),
        ag_scalar(t, AG_F64, 1),
        ag_tensor_from(t, AG_F64, 1, (int64_t[]){1}, (double[]){1}),
        ag_arange(t, AG_F64, 0, 3, 1),
        ag_eye(t, AG_F64, 2),
        ag_rand(t, &r, AG_F64, 0, NULL, 0, 1),
        ag_add(t, x, x),
        ag_exp(t, x),
        ag_clamp(t, x, 1, 0),
        ag_sum(t, x),
        ag_mean_axis(t, x, 0, 0),
        ag_matmul(t, x, x),
        ag_reshape(t, x, 0, NULL),
        ag_permute(t, x, (int[]){0}),
        ag_concat(t, 1, &x, 0),
        ag_softmax(t, x, 0),
        ag_cross_entropy(t, x, NULL),
        ag_detach(t, x),
        ag_cast(t, x, AG_F32),
    };
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        cr_assert(ag_is_nil(results[i]), "call %zu", i);
    ag_backward(t, x);
    ag_backward_seed(t, x, x);
    ag_tensor *out[1] = {x};
    ag_gradients(t, x, NULL, 1, &x, out, 0);
    ag_no_grad_begin(t);
    ag_no_grad_end(t);
    ag_tape_reset(t);
    ag_tape_free(t);
    ag_tape_fail(t, AG_EIO, "x");
    ag_tape_set_trap(t, 1);
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    cr_assert_not_null(ag_tape_errmsg(t));
    cr_assert_eq(ag_tape_entries(t), 0);
    cr_assert_eq(ag_tape_status(tape), AG_OK, "%s", ag_tape_errmsg(tape));
}

/* ------------------------------------------------------- sticky status */

Test(errors, first_error_wins)
{
    ag_add(tape, mat(2, 3), vec(AG_F64, 4));
    ag_tape_fail(tape, AG_EIO, "later failure");
    ag_mul(tape, vec(AG_F32, 1), vec(AG_F64, 1));
    ag_no_grad_end(tape);
    ag_zeros(tape, (ag_dtype)9, 0, NULL);
    cr_assert_eq(ag_tape_status(tape), AG_ESHAPE);
    cr_assert_str_eq(ag_tape_errmsg(tape), "ag_add: shapes [2,3] and [4] do not broadcast");
}

Test(errors, later_ops_return_nil_and_record_nothing)
{
    ag_tensor *x = ag_requires_grad(vec(AG_F64, 2));
    ag_tensor *y = ag_exp(tape, x);
    cr_assert_eq(ag_tape_entries(tape), 1);
    size_t bytes = ag_tape_bytes(tape);
    ag_reshape(tape, x, 1, (int64_t[]){3});
    cr_assert_eq(ag_tape_status(tape), AG_ESHAPE);
    ag_tensor *later[] = {
        ag_add(tape, x, y), ag_exp(tape, y), ag_sum(tape, y), ag_zeros(tape, AG_F64, 0, NULL),
        ag_scalar(tape, AG_F64, 1), ag_arange(tape, AG_F64, 0, 3, 1), ag_eye(tape, AG_F64, 2),
        ag_matmul(tape, x, x), ag_detach(tape, x), ag_add_scalar(tape, x, 1),
        ag_concat(tape, 1, &x, 0), ag_where(tape, x, x, y), ag_clamp(tape, x, 0, 1),
        ag_cross_entropy(tape, x, (int64_t[]){0}),
    };
    for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
        cr_assert(ag_is_nil(later[i]), "op %zu after the error", i);
    cr_assert_eq(ag_tape_entries(tape), 1, "nothing recorded after the error");
    cr_assert_eq(ag_tape_bytes(tape), bytes, "nothing allocated after the error");
    cr_assert_str_eq(ag_tape_errmsg(tape), "ag_reshape: cannot view [2] (2 elements) as [3]");
}

Test(errors, backward_on_a_failed_tape_does_nothing)
{
    ag_tensor *p = ag_param_scalar(AG_F64, 3);
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 2));
    ag_tensor *y = ag_mul(tape, p, x);
    ag_tensor *out[1] = {NULL};
    ag_tape_fail(tape, AG_EIO, "reading the batch failed");
    ag_backward(tape, y);
    ag_backward_seed(tape, y, ag_scalar(tape, AG_F64, 1));
    ag_gradients(tape, y, NULL, 1, &x, out, 0);
    cr_assert_eq(ag_grad_item(p), 0.0);
    cr_assert_null(ag_grad(x));
    cr_assert_null(ag_grad(y));
    cr_assert(ag_is_nil(out[0]));
    cr_assert_str_eq(ag_tape_errmsg(tape), "reading the batch failed");
    ag_param_free(p);
}

Test(errors, accessors_on_nil_are_safe)
{
    ag_tensor *nils[] = {NULL, agi_nil(tape), agi_nil(NULL),
                         ag_exp(tape, NULL) /* now the tape's own nil */};
    char buf[32];
    for (size_t i = 0; i < sizeof nils / sizeof nils[0]; i++) {
        ag_tensor *n = nils[i];
        cr_assert(ag_is_nil(n));
        cr_assert_eq(ag_rank(n), 0);
        cr_assert_null(ag_shape(n));
        cr_assert_eq(ag_numel(n), 0);
        cr_assert_eq(ag_dim(n, 0), 0);
        cr_assert_null(ag_data(n));
        cr_assert(isnan(ag_get(n, 0)));
        cr_assert(isnan(ag_item(n)));
        cr_assert_null(ag_grad(n));
        cr_assert_eq(ag_grad_item(n), 0.0);
        cr_assert_not(ag_requires_grad_of(n));
        cr_assert_not(ag_is_param(n));
        cr_assert_str_eq(ag_name(n), "");
        cr_assert_str_eq(ag_op_name(n), "");
        cr_assert_eq(ag_num_inputs(n), 0);
        cr_assert_null(ag_input(n, 0));
        cr_assert(ag_dtype_of(n) == AG_F32 || ag_dtype_of(n) == AG_F64);
        ag_set(n, 0, 1);
        ag_fill(n, 1);
        ag_set_name(n, "x");
        ag_zero_grad(n);
        ag_rng r;
        ag_rng_seed(&r, 1);
        ag_fill_uniform(n, &r, 0, 1);
        ag_fill_normal(n, &r, 0, 1);
        cr_assert_eq(ag_requires_grad(n), n);
        ag_param_free(n);
        cr_assert_eq(ag_snprint(buf, sizeof buf, n), 11);
        cr_assert_str_eq(buf, "tensor(nil)");
        cr_assert_str_eq(ag_name(n), "", "nil stays unnamed");
        cr_assert_not(ag_requires_grad_of(n), "nil never requires grad");
    }
    ag_zero_grads(4, nils);
    ag_zero_grads(1, NULL);
}

Test(errors, reset_clears_the_status)
{
    ag_matmul(tape, mat(3, 4), mat(5, 2));
    cr_assert_eq(ag_tape_status(tape), AG_ESHAPE);
    ag_tape_reset(tape);
    cr_assert_eq(ag_tape_status(tape), AG_OK);
    cr_assert_str_eq(ag_tape_errmsg(tape), "");
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 4));
    ag_tensor *y = ag_mul(tape, x, x);
    ag_backward(tape, y);
    cr_assert_eq(ag_tape_status(tape), AG_OK);
    cr_assert_eq(ag_grad_item(x), 8.0);
    cr_assert_eq(ag_tape_entries(tape), 1);
}
