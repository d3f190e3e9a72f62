/*
** op_cases.h: one table of test cases for every differentiable op, keyed by
** the op's name, with the inputs each case needs. The gradient
** check, the second-derivative check and the f32/f64 agreement test all walk
** this one table, so adding an op means adding its cases here once.
**
** Included by exactly one source file per test executable (the suites are
** built one source each), hence the static definitions.
*/
#ifndef TESTS_OP_CASES_H
#define TESTS_OP_CASES_H

#include "internal.h"
#include "ops_norm_fused.h"

#include <criterion/alloc.h>
#include <criterion/parameterized.h>
#include <string.h>

typedef ag_tensor *(*unary_fn)(ag_tape *t, ag_tensor *x);
typedef ag_tensor *(*binary_fn)(ag_tape *t, ag_tensor *a, ag_tensor *b);
typedef ag_tensor *(*axis_fn)(ag_tape *t, ag_tensor *x, int axis, int keepdim);

/* How an input's values are drawn. The grids keep every value at least 0.1
** from the kinks of abs, relu, clamp(-0.5, 0.5) and from any value of the
** other grid, so finite differences never straddle a kink or a tie. */
typedef enum value_kind {
    UNIFORM,   /* [-1, 1) */
    WIDE,      /* [-3, 3) */
    POSITIVE,  /* [0.5, 2) */
    AWAY,      /* +-[0.5, 2): away from zero, for divisors and masks */
    GRID_A,    /* 0.1 + 0.25 k */
    GRID_B,    /* 0.25 k */
    DISTINCT,  /* a shuffle of values 0.3 apart: no ties anywhere */
    OFFSET,    /* 100 + [-1, 1): a mean large against the spread */
} value_kind;

/* Fixed shapes, or shapes drawn from the case's seed: rank 0 to 4, dims 1
** to 3, with size-1 dims and missing leading dims for broadcasting. */
typedef enum shape_kind { FIXED, RANDOM_ONE, RANDOM_BROADCAST } shape_kind;

typedef struct input_spec {
    int rank;
    int64_t shape[AG_MAX_DIMS];
    value_kind values;
} input_spec;

typedef struct op_case op_case;
typedef ag_tensor *(*case_fn)(ag_tape *t, ag_tensor *const *x, const op_case *c);

struct op_case {
    const char *op;      /* the name of the op this case covers (ag_op.name) */
    const char *what;    /* the expression, for failure messages */
    int n;               /* inputs */
    input_spec in[3];
    shape_kind shapes;
    /* what to compute: f, else un, bin or ax applied to the inputs */
    case_fn f;
    unary_fn un;
    binary_fn bin;
    axis_fn ax;
    int axis, keepdim;
    int iv[AG_MAX_DIMS]; /* permutation, slice bounds, transpose flags */
    double p[2];         /* slope, clamp bounds, exponent */
    input_spec to;       /* target shape of reshape, sum_to, broadcast_to, slice_grad */
    int64_t labels[4];   /* cross_entropy */
    const int64_t *idx;  /* indices (iv[0] of them, or 'to' gives their shape), pad widths */
};

/* ------------------------------------------------------- case functions */

static ag_dtype dtype_of_inputs(ag_tensor *const *x) { return ag_dtype_of(x[0]); }

static ag_tensor *c_add_self(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_add(t, x[0], x[0]);
}

static ag_tensor *c_mul_self(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_mul(t, x[0], x[0]);
}

/* A diamond: y feeds the result twice, once through z. */
static ag_tensor *c_diamond(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    ag_tensor *y = ag_mul(t, x[0], x[1]);
    ag_tensor *z = ag_add(t, ag_sin(t, x[0]), y);
    return ag_mul(t, z, y);
}

static ag_tensor *c_add_scalar(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_add_scalar(t, x[0], c->p[0]);
}

static ag_tensor *c_mul_scalar(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_mul_scalar(t, x[0], c->p[0]);
}

/* The mask comes from input 0 (values away from zero), so its gradient is
** zero both ways and finite differences never flip it. */
static ag_tensor *c_where(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    ag_tensor *mask = ag_gt(t, x[0], ag_scalar(t, dtype_of_inputs(x), 0.0));
    return ag_where(t, mask, x[1], x[2]);
}

static ag_tensor *c_leaky_relu(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_leaky_relu(t, x[0], c->p[0]);
}

static ag_tensor *c_clamp(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_clamp(t, x[0], c->p[0], c->p[1]);
}

static ag_tensor *c_pow_scalar(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_pow_scalar(t, x[0], c->p[0]);
}

static ag_tensor *c_sum_to(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_sum_to(t, x[0], c->to.rank, c->to.shape);
}

static ag_tensor *c_broadcast_to(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_broadcast_to(t, x[0], c->to.rank, c->to.shape);
}

static ag_tensor *c_reshape(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_reshape(t, x[0], c->to.rank, c->to.shape);
}

static ag_tensor *c_permute(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_permute(t, x[0], c->iv);
}

static ag_tensor *c_transpose(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_transpose(t, x[0], c->iv[0], c->iv[1]);
}

static ag_tensor *c_slice(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_slice(t, x[0], c->axis, c->iv[0], c->iv[1], c->iv[2]);
}

/* The adjoint of slice, applied to x[0] as the gradient of a slice of a
** tensor of shape 'to'. */
static ag_tensor *c_slice_grad(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *like = ag_zeros(t, dtype_of_inputs(x), c->to.rank, c->to.shape);
    return agi_slice_grad(t, x[0], like, c->axis, c->iv[0], c->iv[1]);
}

static ag_tensor *c_concat(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_concat(t, c->n, x, c->axis);
}

static ag_tensor *c_concat_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *parts[3] = {x[0], x[1], x[0]};
    return ag_concat(t, 3, parts, c->axis);
}

/* The same dtype: a cast through f32 cannot be differentiated to 1e-6 by
** finite differences, so that one is checked analytically instead. */
static ag_tensor *c_cast(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_cast(t, x[0], dtype_of_inputs(x));
}

static ag_tensor *c_matmul_t(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return agi_matmul_t(t, x[0], x[1], c->iv[0], c->iv[1]);
}

/* act(x @ w + b): iv[0] the activation; the bias is the third input when n is 3. */
static ag_tensor *c_dense(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_dense(t, x[0], x[1], c->n == 3 ? x[2] : NULL, (ag_activation)c->iv[0]);
}

/* One input as both data and weight (x @ x + b), and one as both data and
** bias (x @ w + x): reused inputs whose gradients add up. */
static ag_tensor *c_dense_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_dense(t, x[0], x[0], x[1], (ag_activation)c->iv[0]);
}

static ag_tensor *c_dense_bias_is_input(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_dense(t, x[0], x[1], x[0], (ag_activation)c->iv[0]);
}

static ag_tensor *c_softmax(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_softmax(t, x[0], c->axis);
}

static ag_tensor *c_log_softmax(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_log_softmax(t, x[0], c->axis);
}

static ag_tensor *c_cross_entropy(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_cross_entropy(t, x[0], c->labels);
}

/* ------------------------------------------------- linear algebra cases */
/* Matrices are built from the drawn inputs inside the case, so that the
** checks go through a well-conditioned matrix: X + c I with X in [-1, 1)
** and c = n is strictly diagonally dominant, X X^T + n I is symmetric
** positive definite. iv[2] set swaps the first two rows (det changes sign,
** and partial pivoting must exchange them back). */
static ag_tensor *shifted(ag_tape *t, ag_tensor *x, double c, int swap)
{
    int64_t n = ag_dim(x, -1);
    ag_tensor *a = ag_add(t, x, ag_mul_scalar(t, ag_eye(t, ag_dtype_of(x), n), c));
    if (!swap)
        return a;
    ag_tensor *p = ag_eye(t, ag_dtype_of(x), n);
    ag_set(p, 0, 0), ag_set(p, n + 1, 0), ag_set(p, 1, 1), ag_set(p, n, 1);
    return ag_matmul(t, p, a);
}

static ag_tensor *c_cholesky(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    int64_t n = ag_dim(x[0], -1);
    ag_tensor *xxt = ag_matmul(t, x[0], ag_transpose(t, x[0], -1, -2));
    return ag_cholesky(t, ag_add(t, xxt, ag_mul_scalar(t, ag_eye(t, ag_dtype_of(x[0]), n),
                                                       (double)n)));
}

/* iv[0]: upper, iv[1]: left; with one input it is both A and B. */
static ag_tensor *c_solve_triangular(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *a = shifted(t, x[0], (double)ag_dim(x[0], -1), 0);
    return ag_solve_triangular(t, a, x[c->n == 2 ? 1 : 0], c->iv[0], c->iv[1]);
}

static ag_tensor *c_solve(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *a = shifted(t, x[0], (double)ag_dim(x[0], -1), c->iv[2]);
    return ag_solve(t, a, x[c->n == 2 ? 1 : 0]);
}

static ag_tensor *c_inverse(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_inverse(t, shifted(t, x[0], (double)ag_dim(x[0], -1), c->iv[2]));
}

/* p[0] scales the shift: -1 gives det < 0 for odd n. */
static ag_tensor *c_slogdet(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *a = shifted(t, x[0], c->p[0] * (double)ag_dim(x[0], -1), c->iv[2]);
    return ag_slogdet(t, a, NULL);
}

/* atan2 with one input as both coordinates: the angle of (x, x) is
** constant, so the two contributions must cancel exactly. */
static ag_tensor *c_atan2_self(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_atan2(t, x[0], x[0]);
}

/* atan2(a, e^a): a reaches the result along two paths; e^a keeps the point
** away from the origin and the branch cut. */
static ag_tensor *c_atan2_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_atan2(t, x[0], ag_exp(t, x[0]));
}

/* var and std: p[0] is the correction; .ax unset means over every element. */
static ag_tensor *c_var(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return c->iv[0] ? ag_var_axis(t, x[0], c->axis, c->keepdim, c->p[0])
                    : ag_var(t, x[0], c->p[0]);
}

static ag_tensor *c_std(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return c->iv[0] ? ag_std_axis(t, x[0], c->axis, c->keepdim, c->p[0])
                    : ag_std(t, x[0], c->p[0]);
}

/* var(x * x) + x: x is used three times, once outside the reduction. */
static ag_tensor *c_var_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_add(t, ag_var_axis(t, ag_mul(t, x[0], x[0]), c->axis, 1, c->p[0]), x[0]);
}

static ag_tensor *c_cumsum(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_cumsum(t, x[0], c->axis);
}

/* cumsum(x) * x: x both summed and weighting the sums. */
static ag_tensor *c_cumsum_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_mul(t, ag_cumsum(t, x[0], c->axis), x[0]);
}

static ag_tensor *c_cumsum_reverse(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return agi_cumsum_reverse(t, x[0], c->axis);
}

/* Indexing: iv[0] indices in idx; gather and scatter_add's index array has
** the shape 'to' (scatter_add: src's shape). */
static ag_tensor *c_index_select(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_index_select(t, x[0], c->axis, c->iv[0], c->idx);
}

/* x's rows picked, times x: a reused input whose gradients add up. */
static ag_tensor *c_index_select_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_mul(t, ag_index_select(t, x[0], c->axis, c->iv[0], c->idx), x[0]);
}

static ag_tensor *c_index_add(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_index_add(t, x[0], c->axis, c->iv[0], c->idx, x[c->n - 1]);
}

static ag_tensor *c_gather(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_gather(t, x[0], c->axis, c->to.rank, c->to.shape, c->idx);
}

static ag_tensor *c_gather_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_add(t, ag_gather(t, x[0], c->axis, c->to.rank, c->to.shape, c->idx), x[0]);
}

static ag_tensor *c_scatter_add(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_scatter_add(t, x[0], c->axis, c->idx, x[c->n - 1]);
}

static ag_tensor *c_index(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_index(t, x[0], c->iv[0], c->idx);
}

/* x[idx[0]] * x[idx[1]]: two rows of one input. */
static ag_tensor *c_index_two_rows(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_mul(t, ag_index(t, x[0], 1, c->idx), ag_index(t, x[0], 1, c->idx + 1));
}

/* index's adjoint, met as the gradient of sum(index(x)^2) taken with
** create_graph, so that it is recorded with an input that depends on x.
** x is marked as requiring grad here, since the gradient of an x that does
** not is zero: forward mode passes in a dual that need not be marked. */
static ag_tensor *c_index_grad(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_requires_grad(x[0]);
    ag_tensor *y = ag_index(t, x[0], c->iv[0], c->idx), *g;
    ag_gradients(t, ag_sum(t, ag_square(t, y)), NULL, 1, x, &g, 1);
    return g;
}

static ag_tensor *c_stack(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_stack(t, c->n, x, c->axis);
}

static ag_tensor *c_stack_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *parts[3] = {x[0], x[1], x[0]};
    return ag_stack(t, 3, parts, c->axis);
}

static ag_tensor *c_pad(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_pad(t, x[0], c->idx, c->p[0]);
}

/* x padded at the end times x padded at the start (widths idx, idx + 2). */
static ag_tensor *c_pad_shifted(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_mul(t, ag_pad(t, x[0], c->idx, c->p[0]), ag_pad(t, x[0], c->idx + 2, c->p[0]));
}

static ag_tensor *c_tril(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_tril(t, x[0], c->iv[0]);
}

static ag_tensor *c_triu(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_triu(t, x[0], c->iv[0]);
}

/* tril(x, k) + triu(x, k + 1) puts x back together from its two parts. */
static ag_tensor *c_tril_plus_triu(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_add(t, ag_tril(t, x[0], c->iv[0]), ag_triu(t, x[0], c->iv[0] + 1));
}

static ag_tensor *c_diag(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_diag(t, x[0], c->iv[0]);
}

/* diag(diag(x)) + x: x's diagonal as a matrix, plus x. */
static ag_tensor *c_diag_twice_plus_x(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_add(t, ag_diag(t, ag_diag(t, x[0], c->iv[0]), c->iv[0]), x[0]);
}

static ag_tensor *c_trace(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_trace(t, x[0]);
}

/* conv2d family: iv = {stride h, stride w, pad h, pad w, dil h, dil w, groups};
** the bias is the third input when n is 3. */
static ag_tensor *c_conv2d(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const int *p = c->iv;
    return ag_conv2d(t, x[0], x[1], c->n == 3 ? x[2] : NULL, p[0], p[1], p[2], p[3], p[4], p[5],
                     p[6]);
}

/* One input as both image and kernel: the gradients add up. */
static ag_tensor *c_conv2d_self(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const int *p = c->iv;
    return ag_conv2d(t, x[0], x[0], NULL, p[0], p[1], p[2], p[3], p[4], p[5], p[6]);
}

/* The adjoints, on g = x[0] (input_grad: of an input of to.shape's H x W)
** or x = x[0] and g = x[1] (weight_grad: a kernel of to.shape's KH x KW). */
static ag_tensor *c_conv2d_input_grad(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return agi_conv2d_input_grad(t, x[0], x[1], c->to.shape[0], c->to.shape[1], c->iv);
}

static ag_tensor *c_conv2d_weight_grad(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return agi_conv2d_weight_grad(t, x[0], x[1], c->to.shape[0], c->to.shape[1], c->iv);
}

/* pooling: iv = {kh, kw, stride h, stride w, pad h, pad w} */
static ag_tensor *c_max_pool2d(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const int *p = c->iv;
    return ag_max_pool2d(t, x[0], p[0], p[1], p[2], p[3], p[4], p[5]);
}

static ag_tensor *c_avg_pool2d(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const int *p = c->iv;
    return ag_avg_pool2d(t, x[0], p[0], p[1], p[2], p[3], p[4], p[5]);
}

/* The max pooling's adjoints, routed through the winners of a pooling of a
** constant copy of x[1] (distinct values: no tie flips under the finite
** differences, and x[1]'s gradient is zero both ways). */
static ag_tensor *c_max_pool2d_scatter(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const int *p = c->iv;
    ag_tensor *pooled = ag_max_pool2d(t, ag_detach(t, x[1]), p[0], p[1], p[2], p[3], p[4], p[5]);
    return agi_max_pool2d_scatter(t, x[0], pooled);
}

static ag_tensor *c_max_pool2d_gather(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const int *p = c->iv;
    ag_tensor *pooled = ag_max_pool2d(t, ag_detach(t, x[1]), p[0], p[1], p[2], p[3], p[4], p[5]);
    return agi_max_pool2d_gather(t, x[0], pooled);
}

static ag_tensor *c_global_avg_pool2d(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    (void)c;
    return ag_global_avg_pool2d(t, x[0]);
}

static ag_tensor *c_flatten(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_flatten(t, x[0], c->axis);
}

/* Normalisations (compositions): gamma and beta are inputs 1 and 2 when n
** is 3; p[0] is eps. */
static ag_tensor *c_batch_norm(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *gamma = c->n == 3 ? x[1] : NULL, *beta = c->n == 3 ? x[2] : NULL;
    return ag_batch_norm(t, x[0], gamma, beta, NULL, NULL, 1, 0.1, c->p[0]);
}

/* Training that also updates running buffers (which carry no gradient),
** plus evaluation with other, fixed running statistics: the buffers the
** training call updates hold x's statistics, so evaluating with them would
** depend on x in a way no gradient follows (as in PyTorch). */
static ag_tensor *c_batch_norm_running(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_dtype dt = dtype_of_inputs(x);
    int64_t ch = ag_shape(x[0])[1];
    ag_tensor *rm = ag_zeros(t, dt, 1, &ch), *rv = ag_ones(t, dt, 1, &ch);
    ag_tensor *y = ag_batch_norm(t, x[0], x[1], x[2], rm, rv, 1, 0.5, c->p[0]);
    ag_tensor *fm = ag_full(t, dt, 1, &ch, 0.25), *fv = ag_full(t, dt, 1, &ch, 2.0);
    ag_tensor *z = ag_batch_norm(t, x[0], x[1], x[2], fm, fv, 0, 0.5, c->p[0]);
    return ag_add(t, y, z);
}

/* Evaluation alone: fixed running statistics, normalisation composed. */
static ag_tensor *c_batch_norm_eval(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_dtype dt = dtype_of_inputs(x);
    int64_t ch = ag_shape(x[0])[1];
    ag_tensor *fm = ag_full(t, dt, 1, &ch, 0.25), *fv = ag_full(t, dt, 1, &ch, 2.0);
    return ag_batch_norm(t, x[0], c->n == 3 ? x[1] : NULL, c->n == 3 ? x[2] : NULL, fm, fv, 0,
                         0.1, c->p[0]);
}

/* x used twice: batch_norm(x, gamma, gamma) * x. */
static ag_tensor *c_batch_norm_reused(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_mul(t, ag_batch_norm(t, x[0], x[1], x[1], NULL, NULL, 1, 0.1, c->p[0]), x[0]);
}

/* The fused ops by themselves (ops_norm_fused.h), on x [a, c, ...] viewed
** as [a, c, rest]: standardise_grad(g = x[1], x[0], gamma = x[2]) and
** standardise_sums(g = x[1], x[0]). */
static const agi_norm_geom *case_geom(ag_tape *t, ag_tensor *x, const op_case *c)
{
    int64_t a = ag_shape(x)[0], ch = ag_shape(x)[1];
    ag_tensor *y = agi_standardise(t, x, a, ch, ag_numel(x) / (a * ch), c->p[0], NULL, NULL);
    return agi_standardise_geom(y);
}

static ag_tensor *c_standardise_grad(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const agi_norm_geom *g = case_geom(t, x[0], c);
    return agi_standardise_grad(t, x[1], x[0], c->n == 3 ? x[2] : NULL, g);
}

static ag_tensor *c_standardise_sums(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    const agi_norm_geom *g = case_geom(t, x[0], c);
    return agi_standardise_sums(t, x[1], x[0], g);
}

/* Evaluation with gradients to the running statistics too: x[1] is
** running_mean, x[2] running_var (positive). */
static ag_tensor *c_batch_norm_eval_stats(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    return ag_batch_norm(t, x[0], NULL, NULL, x[1], x[2], 0, 0.1, c->p[0]);
}

/* channel_affine over x[0] [a, c, ...] viewed as [a, c, rest]: iv[0] 0 takes
** (m, s) = (x[1], x[2]), 1 takes (s, h), 2 takes m alone. */
static ag_tensor *c_channel_affine(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    int64_t a = ag_shape(x[0])[0], ch = ag_shape(x[0])[1], b = ag_numel(x[0]) / (a * ch);
    ag_tensor *m = c->iv[0] == 0 ? x[1] : c->iv[0] == 2 ? x[1] : NULL;
    ag_tensor *s = c->iv[0] == 0 ? x[2] : c->iv[0] == 1 ? x[1] : NULL;
    ag_tensor *h = c->iv[0] == 1 ? x[2] : NULL;
    return agi_channel_affine(t, "channel_affine", x[0], a, ch, b, m, s, h);
}

/* channel_affine_sums(g = x[0], x[1], m = x[2] when given) */
static ag_tensor *c_channel_affine_sums(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    int64_t a = ag_shape(x[1])[0], ch = ag_shape(x[1])[1], b = ag_numel(x[1]) / (a * ch);
    return agi_channel_affine_sums(t, x[0], x[1], a, ch, b, c->n == 3 ? x[2] : NULL);
}

static ag_tensor *c_layer_norm(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *gamma = c->n == 3 ? x[1] : NULL, *beta = c->n == 3 ? x[2] : NULL;
    return ag_layer_norm(t, x[0], c->axis, gamma, beta, c->p[0]);
}

static ag_tensor *c_group_norm(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    ag_tensor *gamma = c->n == 3 ? x[1] : NULL, *beta = c->n == 3 ? x[2] : NULL;
    return ag_group_norm(t, x[0], c->axis, gamma, beta, c->p[0]);
}

static ag_tensor *case_apply(ag_tape *t, ag_tensor *const *x, const op_case *c)
{
    if (c->f)
        return c->f(t, x, c);
    if (c->un)
        return c->un(t, x[0]);
    if (c->bin)
        return c->bin(t, x[0], x[1]);
    return c->ax(t, x[0], c->axis, c->keepdim);
}

/* ----------------------------------------------------------- the table */

#define ONE(v) {{2, {2, 3}, v}}
#define PAIR(va, vb) {{0, {0}, va}, {0, {0}, vb}}

static const op_case op_cases[] = {
    /* add */
    {"add", "[2,3] + [3]", 2, {{2, {2, 3}, UNIFORM}, {1, {3}, UNIFORM}}, .bin = ag_add},
    {"add", "[4,1,3] + [2,1]", 2, {{3, {4, 1, 3}, UNIFORM}, {2, {2, 1}, UNIFORM}}, .bin = ag_add},
    {"add", "[] + [2,3]", 2, {{0, {0}, UNIFORM}, {2, {2, 3}, UNIFORM}}, .bin = ag_add},
    {"add", "[2,3] + []", 2, {{2, {2, 3}, UNIFORM}, {0, {0}, UNIFORM}}, .bin = ag_add},
    {"add", "rank 6 [2,1,2,1,2,1] + [1,2,1,2,1,2]", 2,
     {{6, {2, 1, 2, 1, 2, 1}, UNIFORM}, {6, {1, 2, 1, 2, 1, 2}, UNIFORM}}, .bin = ag_add},
    {"add", "x + x", 1, ONE(UNIFORM), .f = c_add_self},
    {"add", "x + 0.5", 1, ONE(UNIFORM), .f = c_add_scalar, .p = {0.5}},
    {"add", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_add},
    {"add", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_add},
    {"add", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_add},
    /* sub */
    {"sub", "[2,3] - [3]", 2, {{2, {2, 3}, UNIFORM}, {1, {3}, UNIFORM}}, .bin = ag_sub},
    {"sub", "[4,1,3] - [2,1]", 2, {{3, {4, 1, 3}, UNIFORM}, {2, {2, 1}, UNIFORM}}, .bin = ag_sub},
    {"sub", "[] - [2,3]", 2, {{0, {0}, UNIFORM}, {2, {2, 3}, UNIFORM}}, .bin = ag_sub},
    {"sub", "[2,1] - [1,3]", 2, {{2, {2, 1}, UNIFORM}, {2, {1, 3}, UNIFORM}}, .bin = ag_sub},
    {"sub", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_sub},
    {"sub", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_sub},
    /* mul */
    {"mul", "[2,3] * [3]", 2, {{2, {2, 3}, UNIFORM}, {1, {3}, UNIFORM}}, .bin = ag_mul},
    {"mul", "[4,1,3] * [2,1]", 2, {{3, {4, 1, 3}, UNIFORM}, {2, {2, 1}, UNIFORM}}, .bin = ag_mul},
    {"mul", "[] * [2,3]", 2, {{0, {0}, UNIFORM}, {2, {2, 3}, UNIFORM}}, .bin = ag_mul},
    {"mul", "[2,3] * []", 2, {{2, {2, 3}, UNIFORM}, {0, {0}, UNIFORM}}, .bin = ag_mul},
    {"mul", "rank 5 [3,1,2,1,2] * [2,1,2]", 2,
     {{5, {3, 1, 2, 1, 2}, UNIFORM}, {3, {2, 1, 2}, UNIFORM}}, .bin = ag_mul},
    {"mul", "x * x", 1, ONE(UNIFORM), .f = c_mul_self},
    {"mul", "diamond (sin a + a b) a b", 2, {{2, {2, 3}, UNIFORM}, {1, {3}, UNIFORM}},
     .f = c_diamond},
    {"mul", "x * -1.5", 1, ONE(UNIFORM), .f = c_mul_scalar, .p = {-1.5}},
    {"mul", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_mul},
    {"mul", "random broadcast", 2, PAIR(UNIFORM, UNIFORM), RANDOM_BROADCAST, .bin = ag_mul},
    /* div */
    {"div", "[2,3] / [3]", 2, {{2, {2, 3}, UNIFORM}, {1, {3}, AWAY}}, .bin = ag_div},
    {"div", "[4,1,3] / [2,1]", 2, {{3, {4, 1, 3}, UNIFORM}, {2, {2, 1}, AWAY}}, .bin = ag_div},
    {"div", "[] / [2,3]", 2, {{0, {0}, UNIFORM}, {2, {2, 3}, AWAY}}, .bin = ag_div},
    {"div", "[2,3] / []", 2, {{2, {2, 3}, UNIFORM}, {0, {0}, AWAY}}, .bin = ag_div},
    {"div", "random broadcast", 2, PAIR(UNIFORM, AWAY), RANDOM_BROADCAST, .bin = ag_div},
    {"div", "random broadcast", 2, PAIR(UNIFORM, AWAY), RANDOM_BROADCAST, .bin = ag_div},
    /* pow: positive bases, so d/db exists */
    {"pow", "[2,3] ^ []", 2, {{2, {2, 3}, POSITIVE}, {0, {0}, UNIFORM}}, .bin = ag_pow},
    {"pow", "[2,3] ^ [2,3]", 2, {{2, {2, 3}, POSITIVE}, {2, {2, 3}, WIDE}}, .bin = ag_pow},
    {"pow", "[4,1,3] ^ [2,1]", 2, {{3, {4, 1, 3}, POSITIVE}, {2, {2, 1}, UNIFORM}}, .bin = ag_pow},
    {"pow", "[] ^ [3]", 2, {{0, {0}, POSITIVE}, {1, {3}, UNIFORM}}, .bin = ag_pow},
    {"pow", "random broadcast", 2, PAIR(POSITIVE, UNIFORM), RANDOM_BROADCAST, .bin = ag_pow},
    {"pow", "random broadcast", 2, PAIR(POSITIVE, UNIFORM), RANDOM_BROADCAST, .bin = ag_pow},
    /* maximum, minimum: the two grids never tie */
    {"maximum", "[2,3] max [3]", 2, {{2, {2, 3}, GRID_A}, {1, {3}, GRID_B}}, .bin = ag_maximum},
    {"maximum", "[4,1,3] max [2,1]", 2, {{3, {4, 1, 3}, GRID_A}, {2, {2, 1}, GRID_B}},
     .bin = ag_maximum},
    {"maximum", "[] max [2,3]", 2, {{0, {0}, GRID_B}, {2, {2, 3}, GRID_A}}, .bin = ag_maximum},
    {"maximum", "random broadcast", 2, PAIR(GRID_A, GRID_B), RANDOM_BROADCAST, .bin = ag_maximum},
    {"maximum", "random broadcast", 2, PAIR(GRID_B, GRID_A), RANDOM_BROADCAST, .bin = ag_maximum},
    {"minimum", "[2,3] min [3]", 2, {{2, {2, 3}, GRID_A}, {1, {3}, GRID_B}}, .bin = ag_minimum},
    {"minimum", "[4,1,3] min [2,1]", 2, {{3, {4, 1, 3}, GRID_A}, {2, {2, 1}, GRID_B}},
     .bin = ag_minimum},
    {"minimum", "[2,3] min []", 2, {{2, {2, 3}, GRID_B}, {0, {0}, GRID_A}}, .bin = ag_minimum},
    {"minimum", "random broadcast", 2, PAIR(GRID_A, GRID_B), RANDOM_BROADCAST, .bin = ag_minimum},
    {"minimum", "random broadcast", 2, PAIR(GRID_B, GRID_A), RANDOM_BROADCAST, .bin = ag_minimum},
    /* where */
    {"where", "where([2,3], [2,3], [2,3])", 3,
     {{2, {2, 3}, AWAY}, {2, {2, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}}, .f = c_where},
    {"where", "where([3], [2,1], [])", 3, {{1, {3}, AWAY}, {2, {2, 1}, UNIFORM}, {0, {0}, UNIFORM}},
     .f = c_where},
    {"where", "random broadcast", 3, {{0, {0}, AWAY}, {0, {0}, UNIFORM}, {0, {0}, UNIFORM}},
     RANDOM_BROADCAST, .f = c_where},
    {"where", "random broadcast", 3, {{0, {0}, AWAY}, {0, {0}, UNIFORM}, {0, {0}, UNIFORM}},
     RANDOM_BROADCAST, .f = c_where},
    /* unary */
    {"neg", "-x", 1, ONE(UNIFORM), .un = ag_neg},
    {"neg", "-x, random shape", 1, ONE(UNIFORM), RANDOM_ONE, .un = ag_neg},
    {"exp", "exp x", 1, ONE(UNIFORM), .un = ag_exp},
    {"exp", "exp x, random shape", 1, ONE(UNIFORM), RANDOM_ONE, .un = ag_exp},
    {"log", "log x", 1, ONE(POSITIVE), .un = ag_log},
    {"log", "log x, rank 0", 1, {{0, {0}, POSITIVE}}, .un = ag_log},
    {"sqrt", "sqrt x", 1, ONE(POSITIVE), .un = ag_sqrt},
    {"sqrt", "sqrt x, random shape", 1, ONE(POSITIVE), RANDOM_ONE, .un = ag_sqrt},
    {"abs", "|x|", 1, ONE(GRID_A), .un = ag_abs},
    {"abs", "|x|, random shape", 1, ONE(GRID_A), RANDOM_ONE, .un = ag_abs},
    {"sin", "sin x", 1, ONE(WIDE), .un = ag_sin},
    {"sin", "sin x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_sin},
    {"cos", "cos x", 1, ONE(WIDE), .un = ag_cos},
    {"cos", "cos x, rank 0", 1, {{0, {0}, WIDE}}, .un = ag_cos},
    {"tanh", "tanh x", 1, ONE(WIDE), .un = ag_tanh},
    {"tanh", "tanh x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_tanh},
    {"sigmoid", "sigmoid x", 1, ONE(WIDE), .un = ag_sigmoid},
    {"sigmoid", "sigmoid x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_sigmoid},
    {"relu", "relu x", 1, ONE(GRID_A), .un = ag_relu},
    {"relu", "relu x, random shape", 1, ONE(GRID_A), RANDOM_ONE, .un = ag_relu},
    {"leaky_relu", "leaky_relu(x, 0.1)", 1, ONE(GRID_A), .f = c_leaky_relu, .p = {0.1}},
    {"leaky_relu", "leaky_relu(x, -0.3), random shape", 1, ONE(GRID_A), RANDOM_ONE,
     .f = c_leaky_relu, .p = {-0.3}},
    {"gelu", "gelu x", 1, ONE(WIDE), .un = ag_gelu},
    {"gelu", "gelu x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_gelu},
    {"softplus", "softplus x", 1, ONE(WIDE), .un = ag_softplus},
    {"softplus", "softplus x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_softplus},
    {"clamp", "clamp(x, -0.5, 0.5)", 1, ONE(GRID_A), .f = c_clamp, .p = {-0.5, 0.5}},
    {"clamp", "clamp(x, -0.5, 0.5), random shape", 1, ONE(GRID_A), RANDOM_ONE, .f = c_clamp,
     .p = {-0.5, 0.5}},
    {"pow_scalar", "x^3", 1, ONE(UNIFORM), .f = c_pow_scalar, .p = {3.0}},
    {"pow_scalar", "x^2", 1, ONE(UNIFORM), .un = ag_square},
    {"pow_scalar", "x^2, random shape", 1, ONE(UNIFORM), RANDOM_ONE, .f = c_pow_scalar, .p = {2.0}},
    {"pow_scalar", "x^0.5", 1, ONE(POSITIVE), .f = c_pow_scalar, .p = {0.5}},
    {"pow_scalar", "x^-2", 1, ONE(POSITIVE), .f = c_pow_scalar, .p = {-2.0}},
    {"pow_scalar", "x^1", 1, ONE(UNIFORM), .f = c_pow_scalar, .p = {1.0}},
    {"pow_scalar", "x^0", 1, ONE(UNIFORM), .f = c_pow_scalar, .p = {0.0}},
    /* sum (and mean, built on it) */
    {"sum", "sum [2,3,4]", 1, {{3, {2, 3, 4}, UNIFORM}}, .un = ag_sum},
    {"sum", "sum rank 0", 1, {{0, {0}, UNIFORM}}, .un = ag_sum},
    {"sum", "sum axis 0", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_sum_axis, .axis = 0},
    {"sum", "sum axis 0 keepdim", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_sum_axis, .axis = 0,
     .keepdim = 1},
    {"sum", "sum axis 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_sum_axis, .axis = 1},
    {"sum", "sum axis 1 keepdim", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_sum_axis, .axis = 1,
     .keepdim = 1},
    {"sum", "sum axis 2", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_sum_axis, .axis = 2},
    {"sum", "sum axis -1 keepdim", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_sum_axis, .axis = -1,
     .keepdim = 1},
    {"sum", "sum [2,1,3] axis 1", 1, {{3, {2, 1, 3}, UNIFORM}}, .ax = ag_sum_axis, .axis = 1},
    {"sum", "sum rank 5 axis 2", 1, {{5, {2, 1, 3, 2, 2}, UNIFORM}}, .ax = ag_sum_axis, .axis = 2},
    {"sum", "mean [2,3,4]", 1, {{3, {2, 3, 4}, UNIFORM}}, .un = ag_mean},
    {"sum", "mean axis 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_mean_axis, .axis = 1},
    {"sum", "mean axis -1 keepdim", 1, {{3, {2, 3, 4}, UNIFORM}}, .ax = ag_mean_axis, .axis = -1,
     .keepdim = 1},
    /* max, min: distinct values, so no ties */
    {"max", "max [2,3,4]", 1, {{3, {2, 3, 4}, DISTINCT}}, .un = ag_max},
    {"max", "max axis 0", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_max_axis, .axis = 0},
    {"max", "max axis 0 keepdim", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_max_axis, .axis = 0,
     .keepdim = 1},
    {"max", "max axis 1", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_max_axis, .axis = 1},
    {"max", "max axis 1 keepdim", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_max_axis, .axis = 1,
     .keepdim = 1},
    {"max", "max axis 2", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_max_axis, .axis = 2},
    {"max", "max axis -1 keepdim", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_max_axis, .axis = -1,
     .keepdim = 1},
    {"max", "max [1,3] axis 0", 1, {{2, {1, 3}, DISTINCT}}, .ax = ag_max_axis, .axis = 0},
    {"min", "min [2,3,4]", 1, {{3, {2, 3, 4}, DISTINCT}}, .un = ag_min},
    {"min", "min axis 0", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_min_axis, .axis = 0},
    {"min", "min axis 0 keepdim", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_min_axis, .axis = 0,
     .keepdim = 1},
    {"min", "min axis 1", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_min_axis, .axis = 1},
    {"min", "min axis 1 keepdim", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_min_axis, .axis = 1,
     .keepdim = 1},
    {"min", "min axis 2", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_min_axis, .axis = 2},
    {"min", "min axis -1 keepdim", 1, {{3, {2, 3, 4}, DISTINCT}}, .ax = ag_min_axis, .axis = -1,
     .keepdim = 1},
    {"min", "min [3,1] axis 1 keepdim", 1, {{2, {3, 1}, DISTINCT}}, .ax = ag_min_axis, .axis = 1,
     .keepdim = 1},
    /* logsumexp */
    {"logsumexp", "logsumexp [2,3,4]", 1, {{3, {2, 3, 4}, WIDE}}, .un = ag_logsumexp},
    {"logsumexp", "logsumexp axis 0", 1, {{3, {2, 3, 4}, WIDE}}, .ax = ag_logsumexp_axis,
     .axis = 0},
    {"logsumexp", "logsumexp axis 0 keepdim", 1, {{3, {2, 3, 4}, WIDE}}, .ax = ag_logsumexp_axis,
     .axis = 0, .keepdim = 1},
    {"logsumexp", "logsumexp axis 1", 1, {{3, {2, 3, 4}, WIDE}}, .ax = ag_logsumexp_axis,
     .axis = 1},
    {"logsumexp", "logsumexp axis 1 keepdim", 1, {{3, {2, 3, 4}, WIDE}}, .ax = ag_logsumexp_axis,
     .axis = 1, .keepdim = 1},
    {"logsumexp", "logsumexp axis 2", 1, {{3, {2, 3, 4}, WIDE}}, .ax = ag_logsumexp_axis,
     .axis = 2},
    {"logsumexp", "logsumexp axis -1 keepdim", 1, {{3, {2, 3, 4}, WIDE}}, .ax = ag_logsumexp_axis,
     .axis = -1, .keepdim = 1},
    /* sum_to, broadcast_to */
    {"sum_to", "[2,3,4] to [3,1]", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_sum_to, .to = {2, {3, 1}}},
    {"sum_to", "[2,3,4] to [4]", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_sum_to, .to = {1, {4}}},
    {"sum_to", "[2,3,4] to []", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_sum_to, .to = {0, {0}}},
    {"sum_to", "[2,3,4] to [2,1,4]", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_sum_to,
     .to = {3, {2, 1, 4}}},
    {"sum_to", "[2,3] to [2,3]", 1, ONE(UNIFORM), .f = c_sum_to, .to = {2, {2, 3}}},
    {"broadcast_to", "[3,1] to [2,3,4]", 1, {{2, {3, 1}, UNIFORM}}, .f = c_broadcast_to,
     .to = {3, {2, 3, 4}}},
    {"broadcast_to", "[] to [2,2]", 1, {{0, {0}, UNIFORM}}, .f = c_broadcast_to, .to = {2, {2, 2}}},
    {"broadcast_to", "[1] to [3]", 1, {{1, {1}, UNIFORM}}, .f = c_broadcast_to, .to = {1, {3}}},
    {"broadcast_to", "[3] to [2,3]", 1, {{1, {3}, UNIFORM}}, .f = c_broadcast_to,
     .to = {2, {2, 3}}},
    /* shape ops */
    {"reshape", "[2,3,4] as [4,6]", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_reshape,
     .to = {2, {4, 6}}},
    {"reshape", "[2,3,4] as [24]", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_reshape, .to = {1, {24}}},
    {"reshape", "[2,3,4] as [2,-1]", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_reshape,
     .to = {2, {2, -1}}},
    {"reshape", "[] as [1,1]", 1, {{0, {0}, UNIFORM}}, .f = c_reshape, .to = {2, {1, 1}}},
    {"permute", "[2,3,4] by (2,0,1)", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_permute,
     .iv = {2, 0, 1}},
    {"permute", "[2,3,4] by (1,0,2)", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_permute,
     .iv = {1, 0, 2}},
    {"permute", "rank 5 [2,1,3,2,2] by (4,2,0,3,1)", 1, {{5, {2, 1, 3, 2, 2}, UNIFORM}},
     .f = c_permute, .iv = {4, 2, 0, 3, 1}},
    {"permute", "transpose [2,3,4] (0,2)", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_transpose,
     .iv = {0, 2}},
    {"permute", "transpose [3,4] (-1,-2)", 1, {{2, {3, 4}, UNIFORM}}, .f = c_transpose,
     .iv = {-1, -2}},
    {"slice", "[3,7,2] axis 1 [1:6:2]", 1, {{3, {3, 7, 2}, UNIFORM}}, .f = c_slice, .axis = 1,
     .iv = {1, 6, 2}},
    {"slice", "[3,7,2] axis 0 [0:3:1]", 1, {{3, {3, 7, 2}, UNIFORM}}, .f = c_slice, .axis = 0,
     .iv = {0, 3, 1}},
    {"slice", "[3,7,2] axis -1 [1:2:1]", 1, {{3, {3, 7, 2}, UNIFORM}}, .f = c_slice, .axis = -1,
     .iv = {1, 2, 1}},
    {"slice", "[3,7,2] axis 1 [-5:-1:3]", 1, {{3, {3, 7, 2}, UNIFORM}}, .f = c_slice, .axis = 1,
     .iv = {-5, -1, 3}},
    {"slice", "[3,7,2] axis 1 [2:2:2], empty", 1, {{3, {3, 7, 2}, UNIFORM}}, .f = c_slice,
     .axis = 1, .iv = {2, 2, 2}},
    {"slice", "[3,7,2] axis 1 [7:7:3], empty at the end", 1, {{3, {3, 7, 2}, UNIFORM}},
     .f = c_slice, .axis = 1, .iv = {7, 7, 3}},
    {"slice_grad", "[3,3,2] into [3,7,2] axis 1 from 1 step 2", 1, {{3, {3, 3, 2}, UNIFORM}},
     .f = c_slice_grad, .axis = 1, .iv = {1, 2}, .to = {3, {3, 7, 2}}},
    {"slice_grad", "[1,7,2] into [3,7,2] axis 0 from 2", 1, {{3, {1, 7, 2}, UNIFORM}},
     .f = c_slice_grad, .axis = 0, .iv = {2, 1}, .to = {3, {3, 7, 2}}},
    {"slice_grad", "[3,0,2] into [3,7,2] axis 1 from 7 step 3", 1, {{3, {3, 0, 2}, UNIFORM}},
     .f = c_slice_grad, .axis = 1, .iv = {7, 3}, .to = {3, {3, 7, 2}}},
    {"concat", "[2,1,3] [2,2,3] [2,3,3] axis 1", 3,
     {{3, {2, 1, 3}, UNIFORM}, {3, {2, 2, 3}, UNIFORM}, {3, {2, 3, 3}, UNIFORM}}, .f = c_concat,
     .axis = 1},
    {"concat", "[1,3] [2,3] [1,3] axis 0", 3,
     {{2, {1, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}, {2, {1, 3}, UNIFORM}}, .f = c_concat, .axis = 0},
    {"concat", "[2,1] [2,2] [2,3] axis -1", 3,
     {{2, {2, 1}, UNIFORM}, {2, {2, 2}, UNIFORM}, {2, {2, 3}, UNIFORM}}, .f = c_concat, .axis = -1},
    {"concat", "(x, y, x) axis 0", 2, {{2, {2, 3}, UNIFORM}, {2, {1, 3}, UNIFORM}},
     .f = c_concat_reused, .axis = 0},
    {"cast", "cast to the same dtype", 1, ONE(UNIFORM), .f = c_cast},
    /* matmul */
    {"matmul", "[3,4] @ [4,2]", 2, {{2, {3, 4}, UNIFORM}, {2, {4, 2}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[4] @ [4,2]", 2, {{1, {4}, UNIFORM}, {2, {4, 2}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[3,4] @ [4]", 2, {{2, {3, 4}, UNIFORM}, {1, {4}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[4] @ [4]", 2, {{1, {4}, UNIFORM}, {1, {4}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[2,1,3,4] @ [5,4,2]", 2, {{4, {2, 1, 3, 4}, UNIFORM}, {3, {5, 4, 2}, UNIFORM}},
     .bin = ag_matmul},
    {"matmul", "[2,3,4] @ [4,5]", 2, {{3, {2, 3, 4}, UNIFORM}, {2, {4, 5}, UNIFORM}},
     .bin = ag_matmul},
    {"matmul", "[4] @ [2,4,3]", 2, {{1, {4}, UNIFORM}, {3, {2, 4, 3}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[2,3,4] @ [4]", 2, {{3, {2, 3, 4}, UNIFORM}, {1, {4}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[3,1] @ [1,2]", 2, {{2, {3, 1}, UNIFORM}, {2, {1, 2}, UNIFORM}}, .bin = ag_matmul},
    {"matmul", "[4,3]^T @ [4,2]", 2, {{2, {4, 3}, UNIFORM}, {2, {4, 2}, UNIFORM}}, .f = c_matmul_t,
     .iv = {1, 0}},
    {"matmul", "[3,4] @ [2,4]^T", 2, {{2, {3, 4}, UNIFORM}, {2, {2, 4}, UNIFORM}}, .f = c_matmul_t,
     .iv = {0, 1}},
    {"matmul", "[4,3]^T @ [2,4]^T", 2, {{2, {4, 3}, UNIFORM}, {2, {2, 4}, UNIFORM}},
     .f = c_matmul_t, .iv = {1, 1}},
    {"matmul", "[2,4,3]^T @ [1,2,4]^T", 2, {{3, {2, 4, 3}, UNIFORM}, {3, {1, 2, 4}, UNIFORM}},
     .f = c_matmul_t, .iv = {1, 1}},
    /* dense: act(x @ w + b) */
    {"dense", "relu([3,4] @ [4,2] + [2])", 3,
     {{2, {3, 4}, UNIFORM}, {2, {4, 2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_dense,
     .iv = {AG_ACT_RELU}},
    {"dense", "sigmoid([3,4] @ [4,2] + [2])", 3,
     {{2, {3, 4}, WIDE}, {2, {4, 2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_dense,
     .iv = {AG_ACT_SIGMOID}},
    {"dense", "tanh([2,3,4] @ [4,5]), no bias", 2, {{3, {2, 3, 4}, UNIFORM}, {2, {4, 5}, UNIFORM}},
     .f = c_dense, .iv = {AG_ACT_TANH}},
    {"dense", "[4] @ [4,3] + [3]", 3, {{1, {4}, UNIFORM}, {2, {4, 3}, UNIFORM}, {1, {3}, UNIFORM}},
     .f = c_dense, .iv = {AG_ACT_IDENTITY}},
    {"dense", "tanh(x @ x + b), x [3,3] reused", 2, {{2, {3, 3}, UNIFORM}, {1, {3}, UNIFORM}},
     .f = c_dense_reused, .iv = {AG_ACT_TANH}},
    {"dense", "sigmoid(x @ w + x), x [4] reused as the bias", 2,
     {{1, {4}, UNIFORM}, {2, {4, 4}, UNIFORM}}, .f = c_dense_bias_is_input,
     .iv = {AG_ACT_SIGMOID}},
    /* softmax family */
    {"softmax", "softmax [3,4] axis 0", 1, {{2, {3, 4}, WIDE}}, .f = c_softmax, .axis = 0},
    {"softmax", "softmax [3,4] axis -1", 1, {{2, {3, 4}, WIDE}}, .f = c_softmax, .axis = -1},
    {"softmax", "softmax [2,3,4] axis 1", 1, {{3, {2, 3, 4}, WIDE}}, .f = c_softmax, .axis = 1},
    {"softmax", "softmax [2,1,3,2] axis 2", 1, {{4, {2, 1, 3, 2}, WIDE}}, .f = c_softmax,
     .axis = 2},
    {"softmax", "softmax [3,1] axis 1", 1, {{2, {3, 1}, WIDE}}, .f = c_softmax, .axis = 1},
    {"softmax", "softmax [5] axis 0", 1, {{1, {5}, WIDE}}, .f = c_softmax, .axis = 0},
    {"log_softmax", "log_softmax [3,4] axis 0", 1, {{2, {3, 4}, WIDE}}, .f = c_log_softmax,
     .axis = 0},
    {"log_softmax", "log_softmax [3,4] axis -1", 1, {{2, {3, 4}, WIDE}}, .f = c_log_softmax,
     .axis = -1},
    {"log_softmax", "log_softmax [2,3,4] axis 1", 1, {{3, {2, 3, 4}, WIDE}}, .f = c_log_softmax,
     .axis = 1},
    {"log_softmax", "log_softmax [3,1] axis 1", 1, {{2, {3, 1}, WIDE}}, .f = c_log_softmax,
     .axis = 1},
    {"log_softmax", "log_softmax [5] axis 0", 1, {{1, {5}, WIDE}}, .f = c_log_softmax, .axis = 0},
    {"cross_entropy", "[4,3] labels (0,2,1,2)", 1, {{2, {4, 3}, WIDE}}, .f = c_cross_entropy,
     .labels = {0, 2, 1, 2}},
    {"cross_entropy", "[1,5] label 4", 1, {{2, {1, 5}, WIDE}}, .f = c_cross_entropy, .labels = {4}},
    {"cross_entropy", "[3,1] (one class)", 1, {{2, {3, 1}, WIDE}}, .f = c_cross_entropy},
    /* dense linear algebra: matrices built by the case functions above */
    {"cholesky", "chol(X X^T + 3 I), [3,3]", 1, {{2, {3, 3}, UNIFORM}}, .f = c_cholesky},
    {"cholesky", "chol(X X^T + 3 I), batch [2,3,3]", 1, {{3, {2, 3, 3}, UNIFORM}}, .f = c_cholesky},
    {"cholesky", "chol(x^2 + 1), [1,1]", 1, {{2, {1, 1}, UNIFORM}}, .f = c_cholesky},
    {"solve_triangular", "lower A [3,3] \\ B [3,2]", 2,
     {{2, {3, 3}, UNIFORM}, {2, {3, 2}, UNIFORM}}, .f = c_solve_triangular, .iv = {0, 1}},
    {"solve_triangular", "upper A [2,3,3] \\ B [3,2]", 2,
     {{3, {2, 3, 3}, UNIFORM}, {2, {3, 2}, UNIFORM}}, .f = c_solve_triangular, .iv = {1, 1}},
    {"solve_triangular", "B [2,3] / lower A [3,3]", 2, {{2, {3, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}},
     .f = c_solve_triangular, .iv = {0, 0}},
    {"solve_triangular", "B [2,1,3] / upper A [2,3,3]", 2,
     {{3, {2, 3, 3}, UNIFORM}, {3, {2, 1, 3}, UNIFORM}}, .f = c_solve_triangular, .iv = {1, 0}},
    {"solve_triangular", "lower (X + 3 I) \\ X, X reused", 1, {{2, {3, 3}, UNIFORM}},
     .f = c_solve_triangular, .iv = {0, 1}},
    {"solve", "A [3,3] \\ B [3,2]", 2, {{2, {3, 3}, UNIFORM}, {2, {3, 2}, UNIFORM}}, .f = c_solve},
    {"solve", "A [2,3,3] \\ B [3,2], B broadcast", 2,
     {{3, {2, 3, 3}, UNIFORM}, {2, {3, 2}, UNIFORM}}, .f = c_solve},
    {"solve", "A [3,3] \\ B [2,3,2], A broadcast", 2,
     {{2, {3, 3}, UNIFORM}, {3, {2, 3, 2}, UNIFORM}}, .f = c_solve},
    {"solve", "A [3,3] \\ b [3]", 2, {{2, {3, 3}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_solve},
    {"solve", "A [2,3,3] \\ b [2,3], batch of vectors", 2,
     {{3, {2, 3, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}}, .f = c_solve},
    {"solve", "rows swapped: A [3,3] \\ B [3,2]", 2, {{2, {3, 3}, UNIFORM}, {2, {3, 2}, UNIFORM}},
     .f = c_solve, .iv = {0, 0, 1}},
    {"solve", "(X + 3 I) \\ X, X reused", 1, {{2, {3, 3}, UNIFORM}}, .f = c_solve},
    {"inverse", "inv [3,3]", 1, {{2, {3, 3}, UNIFORM}}, .f = c_inverse},
    {"inverse", "inv batch [2,3,3]", 1, {{3, {2, 3, 3}, UNIFORM}}, .f = c_inverse},
    {"inverse", "inv [3,3], rows swapped", 1, {{2, {3, 3}, UNIFORM}}, .f = c_inverse,
     .iv = {0, 0, 1}},
    {"slogdet", "log|det| [3,3], det > 0", 1, {{2, {3, 3}, UNIFORM}}, .f = c_slogdet, .p = {1}},
    {"slogdet", "log|det| [3,3], det < 0", 1, {{2, {3, 3}, UNIFORM}}, .f = c_slogdet, .p = {-1}},
    {"slogdet", "log|det| batch [2,3,3]", 1, {{3, {2, 3, 3}, UNIFORM}}, .f = c_slogdet, .p = {1}},
    {"slogdet", "log|det| [3,3], rows swapped", 1, {{2, {3, 3}, UNIFORM}}, .f = c_slogdet,
     .p = {1}, .iv = {0, 0, 1}},
    /* special functions */
    {"erf", "erf x", 1, ONE(WIDE), .un = ag_erf},
    {"erf", "erf x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_erf},
    {"atan", "atan x", 1, ONE(WIDE), .un = ag_atan},
    {"atan", "atan x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_atan},
    {"log1p", "log1p x", 1, ONE(POSITIVE), .un = ag_log1p},
    {"log1p", "log1p x, rank 0", 1, {{0, {0}, POSITIVE}}, .un = ag_log1p},
    {"log1p", "log1p x, random shape", 1, ONE(POSITIVE), RANDOM_ONE, .un = ag_log1p},
    {"expm1", "expm1 x", 1, ONE(WIDE), .un = ag_expm1},
    {"expm1", "expm1 x, random shape", 1, ONE(WIDE), RANDOM_ONE, .un = ag_expm1},
    /* atan2(y, x): x away from zero, so no point is near the origin or the cut */
    {"atan2", "atan2([2,3], [2,3])", 2, {{2, {2, 3}, WIDE}, {2, {2, 3}, AWAY}}, .bin = ag_atan2},
    {"atan2", "atan2([2,3], [3])", 2, {{2, {2, 3}, UNIFORM}, {1, {3}, AWAY}}, .bin = ag_atan2},
    {"atan2", "atan2([4,1,3], [2,1])", 2, {{3, {4, 1, 3}, UNIFORM}, {2, {2, 1}, AWAY}},
     .bin = ag_atan2},
    {"atan2", "atan2([], [2,3])", 2, {{0, {0}, UNIFORM}, {2, {2, 3}, AWAY}}, .bin = ag_atan2},
    {"atan2", "random broadcast", 2, PAIR(UNIFORM, AWAY), RANDOM_BROADCAST, .bin = ag_atan2},
    {"atan2", "random broadcast", 2, PAIR(AWAY, AWAY), RANDOM_BROADCAST, .bin = ag_atan2},
    {"atan2", "atan2(x, x)", 1, ONE(AWAY), .f = c_atan2_self},
    {"atan2", "atan2(a, e^a)", 1, ONE(WIDE), .f = c_atan2_reused},
    /* var, std: iv[0] set means along .axis; p[0] the correction, below N */
    {"var", "var [2,3,4] correction 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var, .p = {1}},
    {"var", "var [2,3,4] correction 0", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var, .p = {0}},
    {"var", "var axis 0 correction 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var, .iv = {1},
     .axis = 0, .p = {1}},
    {"var", "var axis 0 keepdim correction 0", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var,
     .iv = {1}, .axis = 0, .keepdim = 1, .p = {0}},
    {"var", "var axis 1 correction 2", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var, .iv = {1},
     .axis = 1, .p = {2}},
    {"var", "var axis 1 keepdim correction 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var,
     .iv = {1}, .axis = 1, .keepdim = 1, .p = {1}},
    {"var", "var axis -1 correction 2", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var, .iv = {1},
     .axis = -1, .p = {2}},
    {"var", "var axis 2 keepdim correction 0.5", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_var,
     .iv = {1}, .axis = 2, .keepdim = 1, .p = {0.5}},
    {"var", "var [5] axis 0 correction 1", 1, {{1, {5}, WIDE}}, .f = c_var, .iv = {1},
     .axis = 0, .p = {1}},
    {"var", "var(x * x) + x axis 1 correction 1", 1, {{2, {3, 4}, UNIFORM}}, .f = c_var_reused,
     .axis = 1, .p = {1}},
    {"std", "std [2,3,4] correction 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_std, .p = {1}},
    {"std", "std axis 0 keepdim correction 0", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_std,
     .iv = {1}, .axis = 0, .keepdim = 1, .p = {0}},
    {"std", "std axis 1 correction 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_std, .iv = {1},
     .axis = 1, .p = {1}},
    {"std", "std axis -1 keepdim correction 2", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_std,
     .iv = {1}, .axis = -1, .keepdim = 1, .p = {2}},
    {"std", "std [2,5] axis 1 correction 0", 1, {{2, {2, 5}, WIDE}}, .f = c_std, .iv = {1},
     .axis = 1, .p = {0}},
    /* cumsum and its adjoint */
    {"cumsum", "cumsum [2,3,4] axis 0", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_cumsum, .axis = 0},
    {"cumsum", "cumsum [2,3,4] axis 1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_cumsum, .axis = 1},
    {"cumsum", "cumsum [2,3,4] axis -1", 1, {{3, {2, 3, 4}, UNIFORM}}, .f = c_cumsum, .axis = -1},
    {"cumsum", "cumsum rank 0", 1, {{0, {0}, UNIFORM}}, .f = c_cumsum, .axis = 0},
    {"cumsum", "cumsum axis -1, random shape", 1, ONE(UNIFORM), RANDOM_ONE, .f = c_cumsum,
     .axis = -1},
    {"cumsum", "cumsum(x, 1) * x", 1, ONE(UNIFORM), .f = c_cumsum_reused, .axis = 1},
    {"cumsum_reverse", "reverse cumsum [2,3,4] axis 1", 1, {{3, {2, 3, 4}, UNIFORM}},
     .f = c_cumsum_reverse, .axis = 1},
    {"cumsum_reverse", "reverse cumsum [2,3,4] axis -1", 1, {{3, {2, 3, 4}, UNIFORM}},
     .f = c_cumsum_reverse, .axis = -1},
    {"cumsum_reverse", "reverse cumsum [5] axis 0", 1, {{1, {5}, UNIFORM}},
     .f = c_cumsum_reverse, .axis = 0},
    /* indexing: each index array repeats an index, so the adjoints add */
#define IDX(...) .idx = (const int64_t[]){__VA_ARGS__}
    {"index_select", "embedding [5,3] rows (1,3,1,0)", 1, {{2, {5, 3}, UNIFORM}},
     .f = c_index_select, .axis = 0, .iv = {4}, IDX(1, 3, 1, 0)},
    {"index_select", "[2,4,3] axis 1 (3,0,3)", 1, {{3, {2, 4, 3}, UNIFORM}}, .f = c_index_select,
     .axis = 1, .iv = {3}, IDX(3, 0, 3)},
    {"index_select", "[2,3] axis -1 (2,2)", 1, ONE(UNIFORM), .f = c_index_select, .axis = -1,
     .iv = {2}, IDX(2, 2)},
    {"index_select", "x[(2,0,2)] * x, x [3,3]", 1, {{2, {3, 3}, UNIFORM}},
     .f = c_index_select_reused, .axis = 0, .iv = {3}, IDX(2, 0, 2)},
    {"index_add", "[4,3] + [3,3] at rows (1,3,1)", 2, {{2, {4, 3}, UNIFORM}, {2, {3, 3}, UNIFORM}},
     .f = c_index_add, .axis = 0, .iv = {3}, IDX(1, 3, 1)},
    {"index_add", "[2,3,2] + [2,4,2] axis 1 at (0,2,0,1)", 2,
     {{3, {2, 3, 2}, UNIFORM}, {3, {2, 4, 2}, UNIFORM}}, .f = c_index_add, .axis = 1, .iv = {4},
     IDX(0, 2, 0, 1)},
    {"index_add", "x + x at rows (2,0,2), x [3,2]", 1, {{2, {3, 2}, UNIFORM}}, .f = c_index_add,
     .axis = 0, .iv = {3}, IDX(2, 0, 2)},
    {"gather", "[3,4] axis 1 by [3,2]", 1, {{2, {3, 4}, UNIFORM}}, .f = c_gather, .axis = 1,
     .to = {2, {3, 2}}, IDX(0, 3, 2, 2, 1, 0)},
    {"gather", "[3,4] axis 0 by [2,4]", 1, {{2, {3, 4}, UNIFORM}}, .f = c_gather, .axis = 0,
     .to = {2, {2, 4}}, IDX(2, 0, 1, 2, 0, 0, 2, 1)},
    {"gather", "[2,3,2] axis 1 by [2,4,1]", 1, {{3, {2, 3, 2}, UNIFORM}}, .f = c_gather,
     .axis = 1, .to = {3, {2, 4, 1}}, IDX(2, 0, 0, 1, 1, 1, 2, 0)},
    {"gather", "gather(x, -1) + x, x [2,3]", 1, ONE(UNIFORM), .f = c_gather_reused, .axis = -1,
     .to = {2, {2, 3}}, IDX(2, 2, 0, 1, 0, 1)},
    {"scatter_add", "[3,4] + [3,2] axis 1", 2, {{2, {3, 4}, UNIFORM}, {2, {3, 2}, UNIFORM}},
     .f = c_scatter_add, .axis = 1, IDX(0, 3, 2, 2, 1, 0)},
    {"scatter_add", "[4,3] + [2,3] axis 0", 2, {{2, {4, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}},
     .f = c_scatter_add, .axis = 0, IDX(3, 0, 3, 1, 1, 2)},
    {"scatter_add", "[2,3,2] + [2,4,1] axis -2", 2,
     {{3, {2, 3, 2}, UNIFORM}, {3, {2, 4, 1}, UNIFORM}}, .f = c_scatter_add, .axis = -2,
     IDX(2, 0, 0, 1, 1, 1, 2, 0)},
    {"scatter_add", "x + x scattered, x [3,2]", 1, {{2, {3, 2}, UNIFORM}}, .f = c_scatter_add,
     .axis = 0, IDX(2, 0, 2, 1, 0, 0)},
    {"index", "[3,4,2][-1]", 1, {{3, {3, 4, 2}, UNIFORM}}, .f = c_index, .iv = {1}, IDX(-1)},
    {"index", "[3,4,2][1][-2]", 1, {{3, {3, 4, 2}, UNIFORM}}, .f = c_index, .iv = {2}, IDX(1, -2)},
    {"index", "[3,4,2][0][3][-1], an element", 1, {{3, {3, 4, 2}, UNIFORM}}, .f = c_index,
     .iv = {3}, IDX(0, 3, -1)},
    {"index", "[2,3] with no index", 1, ONE(UNIFORM), .f = c_index, .iv = {0}},
    {"index", "x[0] * x[-1], x [2,3]", 1, ONE(UNIFORM), .f = c_index_two_rows, IDX(0, -1)},
    {"index_grad", "d/dx sum(x[1][-2]^2), x [3,4,2]", 1, {{3, {3, 4, 2}, UNIFORM}},
     .f = c_index_grad, .iv = {2}, IDX(1, -2)},
    {"index_grad", "d/dx sum(x[2]^2), x [3,2]", 1, {{2, {3, 2}, UNIFORM}}, .f = c_index_grad,
     .iv = {1}, IDX(2)},
    /* stack, pad */
    {"stack", "three [2,3] at axis 0", 3, {{2, {2, 3}, UNIFORM}, {2, {2, 3}, UNIFORM},
     {2, {2, 3}, UNIFORM}}, .f = c_stack, .axis = 0},
    {"stack", "three [2,3] at axis -1", 3, {{2, {2, 3}, UNIFORM}, {2, {2, 3}, UNIFORM},
     {2, {2, 3}, UNIFORM}}, .f = c_stack, .axis = -1},
    {"stack", "two [2,3] at axis 1", 2, {{2, {2, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}},
     .f = c_stack, .axis = 1},
    {"stack", "three scalars", 3, {{0, {0}, UNIFORM}, {0, {0}, UNIFORM}, {0, {0}, UNIFORM}},
     .f = c_stack, .axis = 0},
    {"stack", "(x, y, x) at axis 1", 2, {{2, {2, 3}, UNIFORM}, {2, {2, 3}, UNIFORM}},
     .f = c_stack_reused, .axis = 1},
    {"pad", "[2,3] by (1,0),(2,1) with 0.5", 1, ONE(UNIFORM), .f = c_pad, .p = {0.5},
     IDX(1, 0, 2, 1)},
    {"pad", "[2,3,2] by (0,0),(1,1),(0,2) with -1", 1, {{3, {2, 3, 2}, UNIFORM}}, .f = c_pad,
     .p = {-1.0}, IDX(0, 0, 1, 1, 0, 2)},
    {"pad", "[3] by (0,0): unchanged", 1, {{1, {3}, UNIFORM}}, .f = c_pad, IDX(0, 0)},
    {"pad", "a scalar", 1, {{0, {0}, UNIFORM}}, .f = c_pad, .p = {2.0}},
    {"pad", "pad(x, (0,1)) * pad(x, (1,0)), x [3]", 1, {{1, {3}, UNIFORM}}, .f = c_pad_shifted,
     IDX(0, 1, 1, 0)},
    /* triangles and diagonals */
    {"tril", "tril [3,4]", 1, {{2, {3, 4}, UNIFORM}}, .f = c_tril},
    {"tril", "tril [3,4] k 1", 1, {{2, {3, 4}, UNIFORM}}, .f = c_tril, .iv = {1}},
    {"tril", "tril [2,3,3] k -1", 1, {{3, {2, 3, 3}, UNIFORM}}, .f = c_tril, .iv = {-1}},
    {"tril", "tril [4,3] k 5: all of it", 1, {{2, {4, 3}, UNIFORM}}, .f = c_tril, .iv = {5}},
    {"triu", "triu [3,4]", 1, {{2, {3, 4}, UNIFORM}}, .f = c_triu},
    {"triu", "triu [4,3] k -1", 1, {{2, {4, 3}, UNIFORM}}, .f = c_triu, .iv = {-1}},
    {"triu", "triu [2,1,3,3] k 2", 1, {{4, {2, 1, 3, 3}, UNIFORM}}, .f = c_triu, .iv = {2}},
    {"triu", "tril(x) + triu(x, 1), x [3,3]", 1, {{2, {3, 3}, UNIFORM}}, .f = c_tril_plus_triu},
    {"diag_embed", "diag [3]", 1, {{1, {3}, UNIFORM}}, .f = c_diag},
    {"diag_embed", "diag [3] k 1", 1, {{1, {3}, UNIFORM}}, .f = c_diag, .iv = {1}},
    {"diag_embed", "diag [2] k -2", 1, {{1, {2}, UNIFORM}}, .f = c_diag, .iv = {-2}},
    {"diag_embed", "diag(diag(x)) + x, x [3,3]", 1, {{2, {3, 3}, UNIFORM}},
     .f = c_diag_twice_plus_x},
    {"diagonal", "diag [3,3]", 1, {{2, {3, 3}, UNIFORM}}, .f = c_diag},
    {"diagonal", "diag [3,4] k 1", 1, {{2, {3, 4}, UNIFORM}}, .f = c_diag, .iv = {1}},
    {"diagonal", "diag [4,3] k -1", 1, {{2, {4, 3}, UNIFORM}}, .f = c_diag, .iv = {-1}},
    {"diagonal", "diag(diag(x, 1), 1) + x, x [3,3]", 1, {{2, {3, 3}, UNIFORM}},
     .f = c_diag_twice_plus_x, .iv = {1}},
    {"diagonal", "trace [3,3]", 1, {{2, {3, 3}, UNIFORM}}, .f = c_trace},
    {"diagonal", "trace [2,4]", 1, {{2, {2, 4}, UNIFORM}}, .f = c_trace},
#undef IDX
    /* conv2d: iv = {stride h, w, pad h, w, dilation h, w, groups} */
    {"conv2d", "x[2,3,5,4] w[4,3,3,2] + b[4]", 3,
     {{4, {2, 3, 5, 4}, UNIFORM}, {4, {4, 3, 3, 2}, UNIFORM}, {1, {4}, UNIFORM}}, .f = c_conv2d,
     .iv = {1, 1, 0, 0, 1, 1, 1}},
    {"conv2d", "batch 1, stride 2, pad 1, + b", 3,
     {{4, {1, 2, 5, 5}, UNIFORM}, {4, {3, 2, 3, 3}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_conv2d,
     .iv = {2, 2, 1, 1, 1, 1, 1}},
    {"conv2d", "dilation 2, pad (1,2), no bias", 2,
     {{4, {2, 2, 6, 5}, UNIFORM}, {4, {2, 2, 2, 2}, UNIFORM}}, .f = c_conv2d,
     .iv = {1, 1, 1, 2, 2, 2, 1}},
    {"conv2d", "groups 2, stride (1,2), pad (1,0), + b", 3,
     {{4, {2, 4, 4, 3}, UNIFORM}, {4, {6, 2, 3, 2}, UNIFORM}, {1, {6}, UNIFORM}}, .f = c_conv2d,
     .iv = {1, 2, 1, 0, 1, 1, 2}},
    {"conv2d", "depthwise (groups 3), stride (2,1), dilation (1,2)", 2,
     {{4, {1, 3, 4, 4}, UNIFORM}, {4, {3, 1, 2, 2}, UNIFORM}}, .f = c_conv2d,
     .iv = {2, 1, 0, 1, 1, 2, 3}},
    {"conv2d", "odd sizes, stride (3,2), pad (2,1)", 2,
     {{4, {2, 1, 7, 5}, UNIFORM}, {4, {2, 1, 3, 3}, UNIFORM}}, .f = c_conv2d,
     .iv = {3, 2, 2, 1, 1, 1, 1}},
    {"conv2d", "conv2d(x, x), x [1,1,3,3] reused, pad 1", 1, {{4, {1, 1, 3, 3}, UNIFORM}},
     .f = c_conv2d_self, .iv = {1, 1, 1, 1, 1, 1, 1}},
    /* avg_pool2d is a depthwise conv2d with a constant kernel */
    {"conv2d", "avg_pool2d [2,2,5,4] k 2x3 stride (2,1) pad 1", 1, {{4, {2, 2, 5, 4}, UNIFORM}},
     .f = c_avg_pool2d, .iv = {2, 3, 2, 1, 1, 1}},
    {"conv2d", "avg_pool2d [1,3,4,4] k 2 stride 2", 1, {{4, {1, 3, 4, 4}, UNIFORM}},
     .f = c_avg_pool2d, .iv = {2, 2, 2, 2, 0, 0}},
    {"conv2d_input_grad", "g[2,4,3,4] w[4,1,3,2] into 5x6, groups 2, stride (2,1)", 2,
     {{4, {2, 4, 3, 4}, UNIFORM}, {4, {4, 1, 3, 2}, UNIFORM}}, .f = c_conv2d_input_grad,
     .iv = {2, 1, 1, 0, 1, 2, 2}, .to = {2, {5, 6}}},
    {"conv2d_input_grad", "g[1,2,2,3] w[2,3,2,2] into 3x4", 2,
     {{4, {1, 2, 2, 3}, UNIFORM}, {4, {2, 3, 2, 2}, UNIFORM}}, .f = c_conv2d_input_grad,
     .iv = {1, 1, 0, 0, 1, 1, 1}, .to = {2, {3, 4}}},
    /* 16 input channels: computed as a correlation with the flipped kernel */
    {"conv2d", "x[1,16,3,3] w[2,16,3,3] pad 1: the input gradient by the flipped kernel", 2,
     {{4, {1, 16, 3, 3}, UNIFORM}, {4, {2, 16, 3, 3}, UNIFORM}}, .f = c_conv2d,
     .iv = {1, 1, 1, 1, 1, 1, 1}},
    {"conv2d_input_grad", "g[1,2,4,3] w[2,16,3,2] into 4x4 pad (1,0), by the flipped kernel", 2,
     {{4, {1, 2, 4, 3}, UNIFORM}, {4, {2, 16, 3, 2}, UNIFORM}}, .f = c_conv2d_input_grad,
     .iv = {1, 1, 1, 0, 1, 1, 1}, .to = {2, {4, 4}}},
    {"conv2d_weight_grad", "x[2,2,5,6] g[2,4,3,4] to 3x2, groups 2, stride (2,1)", 2,
     {{4, {2, 2, 5, 6}, UNIFORM}, {4, {2, 4, 3, 4}, UNIFORM}}, .f = c_conv2d_weight_grad,
     .iv = {2, 1, 1, 0, 1, 2, 2}, .to = {2, {3, 2}}},
    {"conv2d_weight_grad", "x[1,2,3,3] g[1,3,4,4] to 2x2, pad 1", 2,
     {{4, {1, 2, 3, 3}, UNIFORM}, {4, {1, 3, 4, 4}, UNIFORM}}, .f = c_conv2d_weight_grad,
     .iv = {1, 1, 1, 1, 1, 1, 1}, .to = {2, {2, 2}}},
    /* max pooling: distinct values, so no ties; iv = {kh, kw, stride h, w, pad h, w} */
    {"max_pool2d", "[2,2,4,4] k 2 stride 2", 1, {{4, {2, 2, 4, 4}, DISTINCT}}, .f = c_max_pool2d,
     .iv = {2, 2, 2, 2, 0, 0}},
    {"max_pool2d", "[1,3,5,5] k 3 stride 2 pad 1", 1, {{4, {1, 3, 5, 5}, DISTINCT}},
     .f = c_max_pool2d, .iv = {3, 3, 2, 2, 1, 1}},
    {"max_pool2d", "[2,1,5,4] k 2x3 stride (1,2) pad 1", 1, {{4, {2, 1, 5, 4}, DISTINCT}},
     .f = c_max_pool2d, .iv = {2, 3, 1, 2, 1, 1}},
    {"max_pool2d", "[1,1,4,3] k 3 stride 1, overlapping", 1, {{4, {1, 1, 4, 3}, DISTINCT}},
     .f = c_max_pool2d, .iv = {3, 3, 1, 1, 0, 0}},
    {"max_pool2d_scatter", "g[1,2,2,2] to [1,2,4,4] k 2 stride 2", 2,
     {{4, {1, 2, 2, 2}, UNIFORM}, {4, {1, 2, 4, 4}, DISTINCT}}, .f = c_max_pool2d_scatter,
     .iv = {2, 2, 2, 2, 0, 0}},
    {"max_pool2d_scatter", "g[1,1,3,3] to [1,1,3,3] k 3 stride 1 pad 1, shared winners", 2,
     {{4, {1, 1, 3, 3}, UNIFORM}, {4, {1, 1, 3, 3}, DISTINCT}}, .f = c_max_pool2d_scatter,
     .iv = {3, 3, 1, 1, 1, 1}},
    {"max_pool2d_gather", "u[1,2,4,4] at the winners of k 2 stride 2", 2,
     {{4, {1, 2, 4, 4}, UNIFORM}, {4, {1, 2, 4, 4}, DISTINCT}}, .f = c_max_pool2d_gather,
     .iv = {2, 2, 2, 2, 0, 0}},
    {"max_pool2d_gather", "u[1,1,3,3] at the winners of k 3 stride 1 pad 1", 2,
     {{4, {1, 1, 3, 3}, UNIFORM}, {4, {1, 1, 3, 3}, DISTINCT}}, .f = c_max_pool2d_gather,
     .iv = {3, 3, 1, 1, 1, 1}},
    /* compositions, filed under an op each records */
    {"sum", "global_avg_pool2d [2,3,3,2]", 1, {{4, {2, 3, 3, 2}, UNIFORM}},
     .f = c_global_avg_pool2d},
    {"reshape", "flatten [2,3,2,2] from 1", 1, {{4, {2, 3, 2, 2}, UNIFORM}}, .f = c_flatten,
     .axis = 1},
    {"reshape", "flatten [2,3,2,2] from -2", 1, {{4, {2, 3, 2, 2}, UNIFORM}}, .f = c_flatten,
     .axis = -2},
    /* batch and group norm: the fused standardisation (ops_norm_fused.c) */
    {"standardise", "batch_norm [4,3] * gamma + beta", 3,
     {{2, {4, 3}, WIDE}, {1, {3}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_batch_norm, .p = {1e-5}},
    {"standardise", "batch_norm [2,3,2,2] * gamma + beta", 3,
     {{4, {2, 3, 2, 2}, WIDE}, {1, {3}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_batch_norm,
     .p = {1e-5}},
    {"standardise", "batch_norm [3,2,3,1], no affine", 1, {{4, {3, 2, 3, 1}, WIDE}},
     .f = c_batch_norm, .p = {1e-3}},
    {"standardise", "batch_norm [1,2,2,3], batch 1", 3,
     {{4, {1, 2, 2, 3}, WIDE}, {1, {2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_batch_norm,
     .p = {1e-3}},
    {"standardise", "batch_norm [2,2,3] training (running update) + evaluation", 3,
     {{3, {2, 2, 3}, WIDE}, {1, {2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_batch_norm_running,
     .p = {1e-5}},
    {"standardise", "batch_norm(x, gamma, gamma) * x, x [3,2,2] reused", 2,
     {{3, {3, 2, 2}, WIDE}, {1, {2}, AWAY}}, .f = c_batch_norm_reused, .p = {1e-5}},
    {"standardise", "batch_norm [3,2,2], mean 100 against spread 1", 3,
     {{3, {3, 2, 2}, OFFSET}, {1, {2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_batch_norm,
     .p = {1e-5}},
    {"standardise", "batch_norm [2,2,4,8] * gamma + beta: rows of 32, the per-row kernels", 3,
     {{4, {2, 2, 4, 8}, WIDE}, {1, {2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_batch_norm,
     .p = {1e-5}},
    {"standardise", "group_norm [2,4,3] 2 groups * gamma + beta", 3,
     {{3, {2, 4, 3}, WIDE}, {1, {4}, UNIFORM}, {1, {4}, UNIFORM}}, .f = c_group_norm, .axis = 2,
     .p = {1e-5}},
    {"standardise", "group_norm [1,6,2,2] 3 groups, no affine", 1, {{4, {1, 6, 2, 2}, WIDE}},
     .f = c_group_norm, .axis = 3, .p = {1e-5}},
    {"standardise_grad", "g [2,3,2] at x [2,3,2] * gamma", 3,
     {{3, {2, 3, 2}, WIDE}, {3, {2, 3, 2}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_standardise_grad,
     .p = {1e-5}},
    {"standardise_grad", "g [3,2] at x [3,2], no gamma", 2,
     {{2, {3, 2}, WIDE}, {2, {3, 2}, UNIFORM}}, .f = c_standardise_grad, .p = {1e-5}},
    {"standardise_grad", "g [1,2,2,2] at x [1,2,2,2], mean 100", 2,
     {{4, {1, 2, 2, 2}, OFFSET}, {4, {1, 2, 2, 2}, UNIFORM}}, .f = c_standardise_grad,
     .p = {1e-5}},
    {"standardise_grad", "g [3,1] broadcast at x [2,3,2]", 2,
     {{3, {2, 3, 2}, WIDE}, {2, {3, 1}, UNIFORM}}, .f = c_standardise_grad, .p = {1e-5}},
    {"standardise_grad", "g [2,2,33] at x [2,2,33] * gamma: per-row kernels", 3,
     {{3, {2, 2, 33}, WIDE}, {3, {2, 2, 33}, UNIFORM}, {1, {2}, UNIFORM}},
     .f = c_standardise_grad, .p = {1e-5}},
    {"standardise_sums", "g [1,2,40] at x [1,2,40]: per-row kernels", 2,
     {{3, {1, 2, 40}, WIDE}, {3, {1, 2, 40}, UNIFORM}}, .f = c_standardise_sums, .p = {1e-5}},
    {"standardise_sums", "g [2,1,2] broadcast at x [2,3,2]", 2,
     {{3, {2, 3, 2}, WIDE}, {3, {2, 1, 2}, UNIFORM}}, .f = c_standardise_sums, .p = {1e-5}},
    {"standardise_sums", "g [2,3,2] at x [2,3,2]", 2,
     {{3, {2, 3, 2}, WIDE}, {3, {2, 3, 2}, UNIFORM}}, .f = c_standardise_sums, .p = {1e-5}},
    {"standardise_sums", "g [1,2,3] at x [1,2,3], batch 1", 2,
     {{3, {1, 2, 3}, WIDE}, {3, {1, 2, 3}, UNIFORM}}, .f = c_standardise_sums, .p = {1e-5}},
    /* evaluation batch norm and group norm's gamma, beta: the fused affine map */
    {"channel_affine", "batch_norm evaluation [2,3,2,2] * gamma + beta", 3,
     {{4, {2, 3, 2, 2}, WIDE}, {1, {3}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_batch_norm_eval,
     .p = {1e-5}},
    {"channel_affine", "batch_norm evaluation [3,2], no affine", 1, {{2, {3, 2}, WIDE}},
     .f = c_batch_norm_eval, .p = {1e-5}},
    {"channel_affine", "batch_norm evaluation [2,2,3], d/d running_mean, running_var", 3,
     {{3, {2, 2, 3}, WIDE}, {1, {2}, UNIFORM}, {1, {2}, POSITIVE}}, .f = c_batch_norm_eval_stats,
     .p = {1e-5}},
    {"channel_affine", "group_norm [2,4,3] 2 groups * gamma + beta", 3,
     {{3, {2, 4, 3}, WIDE}, {1, {4}, UNIFORM}, {1, {4}, UNIFORM}}, .f = c_group_norm, .axis = 2,
     .p = {1e-5}},
    {"channel_affine", "(x [2,3,2] - m) s", 3,
     {{3, {2, 3, 2}, WIDE}, {1, {3}, UNIFORM}, {1, {3}, UNIFORM}}, .f = c_channel_affine,
     .iv = {0}},
    {"channel_affine", "x [3,2,1,2] s + h", 3,
     {{4, {3, 2, 1, 2}, WIDE}, {1, {2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_channel_affine,
     .iv = {1}},
    {"channel_affine", "x [1,2,3] - m, batch 1", 2, {{3, {1, 2, 3}, WIDE}, {1, {2}, UNIFORM}},
     .f = c_channel_affine, .iv = {2}},
    {"channel_affine", "(x [2,2,33] - m) s: per-row kernels", 3,
     {{3, {2, 2, 33}, WIDE}, {1, {2}, UNIFORM}, {1, {2}, UNIFORM}}, .f = c_channel_affine,
     .iv = {0}},
    {"channel_affine_sums", "g [2,2,33] at x [2,2,33], m [2]: per-row kernels", 3,
     {{3, {2, 2, 33}, UNIFORM}, {3, {2, 2, 33}, WIDE}, {1, {2}, UNIFORM}},
     .f = c_channel_affine_sums},
    {"channel_affine_sums", "g [2,3,2] at x [2,3,2], m [3]", 3,
     {{3, {2, 3, 2}, UNIFORM}, {3, {2, 3, 2}, WIDE}, {1, {3}, UNIFORM}},
     .f = c_channel_affine_sums},
    {"channel_affine_sums", "g [3] broadcast at x [2,2,3]", 2,
     {{1, {3}, UNIFORM}, {3, {2, 2, 3}, WIDE}}, .f = c_channel_affine_sums},
    {"channel_affine_sums", "g [1,2,3] at x [1,2,3], no m", 2,
     {{3, {1, 2, 3}, UNIFORM}, {3, {1, 2, 3}, WIDE}}, .f = c_channel_affine_sums},
    {"sqrt", "layer_norm [2,3,4] over 2 dims * gamma + beta", 3,
     {{3, {2, 3, 4}, WIDE}, {2, {3, 4}, UNIFORM}, {2, {3, 4}, UNIFORM}}, .f = c_layer_norm,
     .axis = 2, .p = {1e-5}},
    {"sqrt", "layer_norm [3,5] over 1 dim, no affine", 1, {{2, {3, 5}, WIDE}}, .f = c_layer_norm,
     .axis = 1, .p = {1e-5}},
};

#undef ONE
#undef PAIR

static const size_t n_op_cases = ARRAY_LEN(op_cases);

/* ------------------------------------------------------------- inputs */

/* Each case draws from its own stream, so cases do not shift one another. */
static uint64_t case_seed(const op_case *c) { return 0x5eed0000ull + (uint64_t)(c - op_cases); }

static void random_dims(ag_rng *r, int rank, int64_t *shape)
{
    for (int d = 0; d < rank; d++)
        shape[d] = 1 + (int64_t)ag_rng_below(r, 3);
}

/* The shapes of c's inputs: fixed, or drawn so that they broadcast together
** (each a suffix of one full shape, some dims replaced by 1). */
static void case_shapes(const op_case *c, ag_rng *r, int *rank, int64_t (*shape)[AG_MAX_DIMS])
{
    if (c->shapes == FIXED) {
        for (int i = 0; i < c->n; i++) {
            rank[i] = c->in[i].rank;
            memcpy(shape[i], c->in[i].shape, sizeof shape[i]);
        }
        return;
    }
    int64_t full[AG_MAX_DIMS];
    int full_rank = (int)ag_rng_below(r, 5);
    random_dims(r, full_rank, full);
    /* One input, the anchor, has the full shape, so the result has it too. */
    int anchor = (int)ag_rng_below(r, (uint64_t)c->n);
    for (int i = 0; i < c->n; i++) {
        bool shrink = c->shapes == RANDOM_BROADCAST && i != anchor;
        rank[i] = shrink ? (int)ag_rng_below(r, (uint64_t)full_rank + 1) : full_rank;
        for (int d = 0; d < rank[i]; d++) {
            int64_t dim = full[full_rank - rank[i] + d];
            shape[i][d] = shrink && ag_rng_below(r, 3) == 0 ? 1 : dim;
        }
    }
}

static double draw_value(ag_rng *r, value_kind v)
{
    switch (v) {
    case WIDE:
        return -3.0 + 6.0 * ag_rng_uniform(r);
    case POSITIVE:
        return 0.5 + 1.5 * ag_rng_uniform(r);
    case AWAY:
        return (ag_rng_below(r, 2) ? 1.0 : -1.0) * (0.5 + 1.5 * ag_rng_uniform(r));
    case GRID_A:
        return 0.1 + 0.25 * ((double)ag_rng_below(r, 12) - 6.0);
    case GRID_B:
        return 0.25 * ((double)ag_rng_below(r, 12) - 6.0);
    case OFFSET:
        return 100.0 - 1.0 + 2.0 * ag_rng_uniform(r);
    case UNIFORM:
    case DISTINCT:
        break;
    }
    return -1.0 + 2.0 * ag_rng_uniform(r);
}

/* Makes c's inputs on 't' in dtype 'dt'. Values are rounded to f32 in every
** dtype, so that an f32 and an f64 run of a case see the same numbers. */
static void case_inputs(ag_tape *t, const op_case *c, ag_dtype dt, ag_tensor **x)
{
    ag_rng r;
    ag_rng_seed(&r, case_seed(c));
    int rank[3];
    int64_t shape[3][AG_MAX_DIMS];
    case_shapes(c, &r, rank, shape);
    for (int i = 0; i < c->n; i++) {
        x[i] = ag_zeros(t, dt, rank[i], shape[i]);
        int64_t n = ag_numel(x[i]);
        for (int64_t j = 0; j < n; j++)
            ag_set(x[i], j, (float)draw_value(&r, c->in[i].values));
        if (c->in[i].values == DISTINCT) {
            /* A shuffle of evenly spaced values. */
            for (int64_t j = 0; j < n; j++)
                ag_set(x[i], j, (float)(0.3 * (double)(j - n / 2) + 0.05));
            for (int64_t j = n - 1; j > 0; j--) {
                int64_t k = (int64_t)ag_rng_below(&r, (uint64_t)j + 1);
                double a = ag_get(x[i], j);
                ag_set(x[i], j, ag_get(x[i], k));
                ag_set(x[i], k, a);
            }
        }
    }
}

/* The parameters of a test over every case. Criterion runs each parameter
** in a fresh process of its own, where static addresses may differ, so the
** parameters are indices in its shared memory rather than case pointers. */
static void free_case_indices(struct criterion_test_params *p) { cr_free(p->params); }

static struct criterion_test_params case_indices(void)
{
    size_t *idx = cr_malloc(n_op_cases * sizeof *idx);
    for (size_t i = 0; idx && i < n_op_cases; i++)
        idx[i] = i;
    return cr_make_param_array(size_t, idx, idx ? n_op_cases : 0, free_case_indices);
}

/* Every op of the library, from each ops file's table (agi_op_tables), in
** 'ops' (up to 'cap'); returns how many there are. */
static size_t all_ops(const ag_op **ops, size_t cap)
{
    size_t n = 0;
    for (const ag_op *const *const *table = agi_op_tables; *table; table++)
        for (const ag_op *const *op = *table; *op; op++, n++)
            if (n < cap)
                ops[n] = *op;
    return n;
}
enum { MAX_OPS = 512 };

/* Does some case cover the op called 'name'? */
static bool case_exists_for(const char *name)
{
    for (size_t i = 0; i < n_op_cases; i++)
        if (strcmp(op_cases[i].op, name) == 0)
            return true;
    return false;
}

#endif
