/*
** test_jvp_shape.c: the JVP rules of the shape, struct, index and factor
** ops (ops_shape.c, ops_struct.c, ops_index.c, ops_factor.c), beyond what
** test_jvp checks for every op in f64: the same tangents and Hessian-vector
** products in f32, the factorisations' derivatives against their closed
** forms (with directions the op does not read: the other triangle, the
** antisymmetric part), zeros for inputs without tangents, and tangents of
** gradients made by the ops' inner constructors.
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>

#include "op_cases.h"

static const char *const FAMILY[] = {
    "reshape", "permute", "slice", "slice_grad", "concat", "cast",
    "stack", "pad", "tril", "triu", "diag_embed", "diagonal",
    "index_select", "index_add", "gather", "scatter_add", "index", "index_grad",
    "cholesky", "solve_triangular", "solve", "inverse", "slogdet",
};

static bool in_family(const char *op)
{
    for (size_t i = 0; i < ARRAY_LEN(FAMILY); i++)
        if (strcmp(FAMILY[i], op) == 0)
            return true;
    return false;
}

/* The indices of the cases of these ops, in place of all of them. */
static struct criterion_test_params family_cases(void)
{
    struct criterion_test_params p = case_indices();
    size_t *idx = p.params, n = 0;
    for (size_t i = 0; i < p.length; i++)
        if (in_family(op_cases[idx[i]].op))
            idx[n++] = idx[i];
    p.length = n;
    return p;
}

/* The four files' tables (autograd/gen_op_tables.py declares them for the
** library only). */
extern const ag_op *const agi_ops_shape[], *const agi_ops_struct[], *const agi_ops_index[],
    *const agi_ops_factor[];

/* The list above names every op of the four files (their tables), and no
** other; each has a rule and a case. */
Test(jvp_shape, the_family_is_complete)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS), found = 0;
    for (size_t i = 0; i < n; i++)
        if (in_family(ops[i]->name)) {
            found++;
            cr_expect(ops[i]->jvp != NULL, "op '%s' has no JVP rule", ops[i]->name);
            cr_expect(case_exists_for(ops[i]->name), "op '%s' has no case", ops[i]->name);
        }
    const ag_op *const *tables[] = {agi_ops_shape, agi_ops_struct, agi_ops_index, agi_ops_factor};
    size_t in_tables = 0;
    for (size_t k = 0; k < ARRAY_LEN(tables); k++)
        for (const ag_op *const *op = tables[k]; *op; op++)
            in_tables++;
    cr_expect_eq(found, ARRAY_LEN(FAMILY), "%zu of the %zu names are ops", found, ARRAY_LEN(FAMILY));
    cr_expect_eq(in_tables, ARRAY_LEN(FAMILY), "the four files have %zu ops, the list %zu",
                 in_tables, ARRAY_LEN(FAMILY));
}

/* A direction in [-1, 1) of x's shape and dtype: drawn in f32 and cast, so
** that the f32 and f64 runs move along exactly the same direction. */
static ag_tensor *direction(ag_tape *t, const ag_tensor *x, uint64_t salt)
{
    ag_rng r;
    ag_rng_seed(&r, 0x73686170ull + salt);
    ag_tensor *v = ag_rand(t, &r, AG_F32, ag_rank(x), ag_shape(x), -1.0, 1.0);
    return ag_cast(t, v, ag_dtype_of(x));
}

static ag_tensor *tangent_of_case(ag_tape *t, const op_case *c, ag_dtype dt)
{
    ag_tensor *x[3], *dual[3];
    case_inputs(t, c, dt, x);
    for (int i = 0; i < c->n; i++)
        dual[i] = ag_dual(t, x[i], direction(t, x[i], (uint64_t)i));
    return ag_tangent(case_apply(t, dual, c));
}

ParameterizedTestParameters(jvp_shape, f32_agrees_with_f64) { return family_cases(); }

ParameterizedTest(size_t *index, jvp_shape, f32_agrees_with_f64)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *d32 = tangent_of_case(t, c, AG_F32), *d64 = tangent_of_case(t, c, AG_F64);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    cr_assert_eq(d32 == NULL, d64 == NULL, "%s, %s: a tangent in one dtype only", c->op, c->what);
    if (d64) {
        cr_assert_eq(ag_dtype_of(d32), AG_F32, "%s, %s", c->op, c->what);
        cr_assert_eq(ag_numel(d32), ag_numel(d64), "%s, %s", c->op, c->what);
        for (int64_t j = 0; j < ag_numel(d64); j++) {
            double a = ag_get(d32, j), b = ag_get(d64, j);
            cr_expect(fabs(a - b) <= 1e-4 * fmax(1.0, fabs(b)),
                      "%s, %s: tangent element %lld is %.9g in f32, %.9g in f64", c->op, c->what,
                      (long long)j, a, b);
        }
    }
    ag_tape_free(t);
}

/* Forward-over-reverse in f32: the tangent of the gradient of |y|^2 / 2
** (H v), which runs the JVP rules of the ops the vjps record. That gradient
** is J^T y, y itself the seed: no reduction op is needed. */
static void hessian_vector(ag_tape *t, const op_case *c, ag_dtype dt, ag_tensor **hv)
{
    ag_tensor *x[3], *dual[3], *g[3];
    case_inputs(t, c, dt, x);
    for (int i = 0; i < c->n; i++)
        dual[i] = ag_requires_grad(ag_dual(t, x[i], direction(t, x[i], (uint64_t)i)));
    ag_tensor *y = case_apply(t, dual, c);
    ag_gradients(t, y, y, c->n, dual, g, 0);
    for (int i = 0; i < c->n; i++)
        hv[i] = ag_tangent(g[i]);
}

ParameterizedTestParameters(jvp_shape, f32_hessian_vector_products_agree) { return family_cases(); }

ParameterizedTest(size_t *index, jvp_shape, f32_hessian_vector_products_agree)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *h32[3], *h64[3];
    hessian_vector(t, c, AG_F32, h32);
    hessian_vector(t, c, AG_F64, h64);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
    for (int i = 0; i < c->n; i++) {
        cr_assert_eq(h32[i] == NULL, h64[i] == NULL, "%s, %s: input %d", c->op, c->what, i);
        for (int64_t j = 0; h64[i] && j < ag_numel(h64[i]); j++) {
            double a = ag_get(h32[i], j), b = ag_get(h64[i], j);
            cr_expect(fabs(a - b) <= 1e-4 * fmax(1.0, fabs(b)),
                      "%s, %s: H v %d element %lld is %.9g in f32, %.9g in f64", c->op, c->what,
                      i, (long long)j, a, b);
        }
    }
    ag_tape_free(t);
}

/* ------------------------------------------------------- closed forms */

static ag_tensor *matrix(ag_tape *t, ag_dtype dt, int64_t n, const double *v)
{
    ag_tensor *m = ag_zeros(t, dt, 2, (int64_t[]){n, n});
    for (int64_t i = 0; i < n * n; i++)
        ag_set(m, i, v[i]);
    return m;
}

static void expect_tensor(const ag_tensor *got, const double *want, int64_t n, double tol,
                          const char *what)
{
    cr_assert_not_null(got, "%s: no tangent", what);
    cr_assert_eq(ag_numel(got), n, "%s", what);
    for (int64_t i = 0; i < n; i++)
        cr_expect(fabs(ag_get(got, i) - want[i]) <= tol * (1.0 + fabs(want[i])),
                  "%s: element %lld is %.12g, want %.12g", what, (long long)i, ag_get(got, i),
                  want[i]);
}

/* The SPD matrix [[4, 2], [2, 3]] has L = [[2, 0], [1, sqrt 2]]; along a
** symmetric dA, dL solves dL L^T + L dL^T = dA with dL lower. */
Test(jvp_shape, cholesky_closed_form)
{
    ag_dtype dts[2] = {AG_F64, AG_F32};
    for (int k = 0; k < 2; k++) {
        ag_tape *t = ag_tape_new();
        ag_tensor *a = matrix(t, dts[k], 2, (double[]){4, 2, 2, 3});
        ag_tensor *da = matrix(t, dts[k], 2, (double[]){1, 0.5, 0.5, -1});
        ag_tensor *dl = ag_tangent(ag_cholesky(t, ag_dual(t, a, da)));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        cr_assert_eq(ag_dtype_of(dl), dts[k]);
        /* dl00 = da00 / (2 l00); dl10 = (da10 - l10 dl00) / l00;
        ** dl11 = (da11 - 2 l10 dl10) / (2 l11). */
        double s2 = sqrt(2.0), dl00 = 0.25, dl10 = (0.5 - 0.25) / 2, dl11 = (-1 - 2 * dl10) / (2 * s2);
        expect_tensor(dl, (double[]){dl00, 0, dl10, dl11}, 4, k ? 1e-6 : 1e-14, "cholesky");
        ag_tape_free(t);
    }
}

/* Cholesky is a function of symmetric matrices: an antisymmetric direction
** moves nothing, as its vjp (which reports symmetric gradients) implies. */
Test(jvp_shape, cholesky_ignores_the_antisymmetric_part)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = matrix(t, AG_F64, 3, (double[]){4, 1, 0, 1, 3, 1, 0, 1, 2});
    ag_tensor *skew = matrix(t, AG_F64, 3, (double[]){0, 1, -2, -1, 0, 3, 2, -3, 0});
    ag_tensor *dl = ag_tangent(ag_cholesky(t, ag_dual(t, a, skew)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_tensor(dl, (double[9]){0}, 9, 1e-15, "cholesky along a skew direction");
    ag_tape_free(t);
}

/* X = A^{-1} B for lower A reads only A's lower triangle: a direction in
** the strict upper triangle moves nothing, one on the diagonal does. */
Test(jvp_shape, solve_triangular_reads_one_triangle)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = matrix(t, AG_F64, 2, (double[]){2, 7, 1, 4});
    ag_tensor *b = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 1}, (double[]){2, 9});
    ag_tensor *upper = matrix(t, AG_F64, 2, (double[]){0, 1, 0, 0});
    ag_tensor *dx = ag_tangent(ag_solve_triangular(t, ag_dual(t, a, upper), b, 0, 1));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_tensor(dx, (double[]){0, 0}, 2, 1e-15, "the unread triangle");
    /* x = (1, 2); d(a00) = 1: dx0 = -x0 / a00 = -1/2, dx1 = -a10 dx0 / a11 = 1/8. */
    ag_tensor *diag = matrix(t, AG_F64, 2, (double[]){1, 0, 0, 0});
    dx = ag_tangent(ag_solve_triangular(t, ag_dual(t, a, diag), b, 0, 1));
    expect_tensor(dx, (double[]){-0.5, 0.125}, 2, 1e-15, "the diagonal");
    ag_tape_free(t);
}

/* B's tangent broadcast over A's batch: dX = A_i^{-1} dB for each i. */
Test(jvp_shape, solve_broadcasts_the_tangent_of_b)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_tensor_from(t, AG_F64, 3, (int64_t[]){2, 2, 2},
                                  (double[]){2, 0, 0, 4, 1, 1, 0, 1});
    ag_tensor *b = ag_ones(t, AG_F64, 2, (int64_t[]){2, 1});
    ag_tensor *db = ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 1}, (double[]){1, 2});
    ag_tensor *dx = ag_tangent(ag_solve(t, a, ag_dual(t, b, db)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    /* diag(2, 4) \ (1, 2) = (1/2, 1/2); [[1, 1], [0, 1]] \ (1, 2) = (-1, 2). */
    expect_tensor(dx, (double[]){0.5, 0.5, -1, 2}, 4, 1e-15, "solve");
    ag_tape_free(t);
}

/* d inv(A) = -inv(A) dA inv(A); d log|det A| = tr(inv(A) dA), the sign
** constant. A = [[2, 1], [1, -1]]: det -3, inv = [[1, 1], [1, -2]] / 3. */
Test(jvp_shape, inverse_and_slogdet_closed_forms)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = matrix(t, AG_F64, 2, (double[]){2, 1, 1, -1});
    ag_tensor *da = matrix(t, AG_F64, 2, (double[]){1, 0, 2, 0});
    ag_tensor *x = ag_dual(t, a, da), *sign;
    ag_tensor *dinv = ag_tangent(ag_inverse(t, x));
    ag_tensor *dlog = ag_tangent(ag_slogdet(t, x, &sign));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_null(ag_tangent(sign), "the sign is a constant");
    /* inv dA = [[1+2, 0], [1-4, 0]] / 3 = [[1, 0], [-1, 0]];
    ** -(inv dA) inv = -[[1, 1], [-1, -1]] / 3. */
    expect_tensor(dinv, (double[]){-1.0 / 3, -1.0 / 3, 1.0 / 3, 1.0 / 3}, 4, 1e-15, "inverse");
    expect_tensor(dlog, (double[]){1.0}, 1, 1e-15, "slogdet: tr(inv dA) = 1 + 0");
    ag_tape_free(t);
}

/* Cast carries the tangent into the result's dtype. */
Test(jvp_shape, cast_casts_the_tangent)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_dual(t, ag_full(t, AG_F64, 1, (int64_t[]){2}, 1.0),
                           ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){0.1, -3}));
    ag_tensor *d = ag_tangent(ag_cast(t, x, AG_F32));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_dtype_of(d), AG_F32);
    cr_expect_eq(ag_get(d, 0), (double)0.1f);
    cr_expect_eq(ag_get(d, 1), -3.0);
    ag_tape_free(t);
}

/* An input with no tangent stands as zeros among the others. */
Test(jvp_shape, concat_stack_and_scatter_fill_in_zeros)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_dual(t, ag_ones(t, AG_F64, 1, (int64_t[]){2}),
                           ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){5, 6}));
    ag_tensor *b = ag_ones(t, AG_F64, 1, (int64_t[]){1});
    ag_tensor *d = ag_tangent(ag_concat(t, 2, (ag_tensor *[]){b, a}, 0));
    expect_tensor(d, (double[]){0, 5, 6}, 3, 0, "concat");
    ag_tensor *c = ag_ones(t, AG_F64, 1, (int64_t[]){2});
    d = ag_tangent(ag_stack(t, 2, (ag_tensor *[]){a, c}, 1));
    expect_tensor(d, (double[]){5, 0, 6, 0}, 4, 0, "stack");
    /* base without a tangent, src with: zeros get src's tangent added. */
    ag_tensor *base = ag_zeros(t, AG_F64, 1, (int64_t[]){3});
    d = ag_tangent(ag_scatter_add(t, base, 0, (int64_t[]){2, 2}, a));
    expect_tensor(d, (double[]){0, 0, 11}, 3, 0, "scatter_add");
    d = ag_tangent(ag_index_add(t, base, 0, 2, (int64_t[]){1, 0}, a));
    expect_tensor(d, (double[]){6, 5, 0}, 3, 0, "index_add");
    /* src without a tangent: the base's passes as it is. */
    d = ag_tangent(ag_index_add(t, ag_concat(t, 2, (ag_tensor *[]){a, b}, 0), 0, 1,
                                (int64_t[]){0}, b));
    expect_tensor(d, (double[]){5, 6, 0}, 3, 0, "index_add, base only");
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* The vjps of these ops build their results with inner constructors; the
** tangent of the gradient they make must reach it (it was lost when the
** constructor made its result before the tangent of its input was due). */
Test(jvp_shape, a_gradient_through_index_carries_its_tangent)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_tensor_from(t, AG_F64, 2, (int64_t[]){3, 2}, (double[]){1, 2, 3, 4, 5, 6});
    ag_tensor *v = ag_tensor_from(t, AG_F64, 2, (int64_t[]){3, 2}, (double[]){1, -1, 2, 3, 0.5, 4});
    ag_tensor *x = ag_requires_grad(ag_dual(t, x0, v)), *g;
    ag_tensor *y = ag_index(t, x, 1, (int64_t[]){1});
    ag_gradients(t, ag_mul(t, ag_index(t, y, 1, (int64_t[]){0}), ag_index(t, y, 1, (int64_t[]){1})),
                 NULL, 1, &x, &g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    /* f = x10 x11: grad = (.., x11, x10, ..), its tangent (.., v11, v10, ..). */
    expect_tensor(ag_tangent(g), (double[]){0, 0, 3, 2, 0, 0}, 6, 0, "H v through index");
    ag_tape_free(t);
}

Test(jvp_shape, a_gradient_through_diag_carries_its_tangent)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x0 = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){1, 2});
    ag_tensor *v = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){3, -1});
    ag_tensor *x = ag_requires_grad(ag_dual(t, x0, v)), *g;
    ag_tensor *m = ag_diag(t, x, 0);
    /* f = sum(diag(M)^2) / 2 with M = diag(x): grad x, its tangent v. */
    ag_tensor *d = ag_diag(t, m, 0);
    ag_tensor *f = ag_mul_scalar(t, ag_add(t, ag_square(t, ag_index(t, d, 1, (int64_t[]){0})),
                                           ag_square(t, ag_index(t, d, 1, (int64_t[]){1}))), 0.5);
    ag_gradients(t, f, NULL, 1, &x, &g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_tensor(ag_tangent(g), (double[]){3, -1}, 2, 0, "H v through diag");
    ag_tape_free(t);
}
