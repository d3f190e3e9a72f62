/*
** test_ops_gradcheck.c: every op (each ops file's table) against central finite
** differences in f64 (issue 2): broadcasting, size-1 and random shapes,
** reused inputs, each reduction axis, and the softmax family at huge logits.
** The cases live in op_cases.h; an op without one fails here.
*/
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>

#include "op_cases.h"

static const double TOLERANCE = 1e-6;

static ag_tensor *run_case(ag_tape *t, ag_tensor *const *x, void *ud)
{
    return case_apply(t, x, ud);
}

ParameterizedTestParameters(gradcheck, op)
{
    return case_indices();
}

ParameterizedTest(size_t *index, gradcheck, op)
{
    const op_case *c = &op_cases[*index];
    ag_tape *t = ag_tape_new();
    ag_tensor *x[3];
    case_inputs(t, c, AG_F64, x);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_gradcheck_report rep;
    char err[256];
    ag_status st = ag_gradcheck(run_case, (void *)c, c->n, x, 0, &rep, err, sizeof err);
    cr_assert_eq(st, AG_OK, "%s, %s: %s", c->op, c->what, err);
    int64_t total = 0;
    for (int i = 0; i < c->n; i++)
        total += ag_numel(x[i]);
    cr_assert_eq(rep.checked, total, "%s, %s: %lld of %lld elements checked", c->op, c->what,
                 (long long)rep.checked, (long long)total);
    cr_assert_leq(rep.max_rel_err, TOLERANCE,
                  "%s, %s: input %d element %lld: analytic %.12g, numeric %.12g (rel %.3g)",
                  c->op, c->what, rep.input, (long long)rep.element, rep.analytic, rep.numeric,
                  rep.max_rel_err);
    ag_tape_free(t);
}

Test(gradcheck, every_op_has_a_case)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    cr_assert(n > 0 && n <= MAX_OPS, "%zu ops", n);
    for (size_t i = 0; i < n; i++)
        cr_expect(case_exists_for(ops[i]->name),
                  "op '%s' is in an ops file's table but has no case in tests/op_cases.h",
                  ops[i]->name);
}

/* Is 'name' an op of some ops file's table? */
static bool op_is_listed(const char *name)
{
    const ag_op *ops[MAX_OPS];
    size_t n = all_ops(ops, MAX_OPS);
    for (size_t i = 0; i < n && i < MAX_OPS; i++)
        if (strcmp(ops[i]->name, name) == 0)
            return true;
    return false;
}

Test(gradcheck, every_case_names_a_listed_op)
{
    for (size_t i = 0; i < n_op_cases; i++)
        cr_expect(op_is_listed(op_cases[i].op), "case %zu (%s) names op '%s', in no ops file's table",
                  i, op_cases[i].what, op_cases[i].op);
}

/* A case must exercise the op it is filed under, or the coverage check
** above proves nothing. */
Test(gradcheck, every_case_records_its_op)
{
    ag_tape *t = ag_tape_new();
    for (size_t i = 0; i < n_op_cases; i++) {
        const op_case *c = &op_cases[i];
        ag_tape_reset(t);
        ag_tensor *x[3];
        case_inputs(t, c, AG_F64, x);
        for (int k = 0; k < c->n; k++)
            ag_requires_grad(x[k]);
        case_apply(t, x, c);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s, %s: %s", c->op, c->what, ag_tape_errmsg(t));
        bool seen = false;
        for (size_t e = 0; e < t->n_entries; e++)
            seen |= strcmp(t->entries[e]->op->name, c->op) == 0;
        cr_expect(seen, "case '%s' records no '%s' entry", c->what, c->op);
    }
    ag_tape_free(t);
}

/* ------------------------------------------------ the checker checks */

/* An op whose vjp is deliberately wrong (y = 2x, but dx = g): the harness
** must notice, or every pass above means nothing. */
static void vjp_wrong(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    (void)t, (void)out;
    gin[0] = g;
}
static const ag_op wrong_op = {.name = "wrong_double", .vjp = vjp_wrong};

static ag_tensor *wrong_double(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    ag_tensor *out = agi_new(t, &wrong_op, 1, x, AG_F64, x[0]->rank, x[0]->shape);
    for (int64_t i = 0; i < out->numel; i++)
        agi_set(out, i, 2.0 * agi_get(x[0], i));
    return out;
}

Test(gradcheck, a_wrong_vjp_is_caught)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_full(t, AG_F64, 1, (int64_t[]){3}, 0.25);
    ag_gradcheck_report rep;
    cr_assert_eq(ag_gradcheck(wrong_double, NULL, 1, &x, 0, &rep, NULL, 0), AG_OK);
    cr_assert_gt(rep.max_rel_err, 0.1);
    cr_assert_float_eq(rep.numeric, 2.0 * rep.analytic, 1e-6);
    ag_tape_free(t);
}

/* sum(x) broadcast to [sizes[k]] on call k, the last size from then on: an
** output whose size changes between calls. */
typedef struct growing {
    int calls;
    int64_t sizes[2];
} growing;

static ag_tensor *growing_output(ag_tape *t, ag_tensor *const *x, void *ud)
{
    growing *g = ud;
    int64_t size = g->sizes[g->calls++ ? 1 : 0];
    return ag_broadcast_to(t, ag_sum(t, x[0]), 1, &size);
}

/* The weights that contract the output are sized by the first call: an
** output that grows was read past them, one that shrinks gave a wrong
** difference. Either is an error naming both shapes. */
Test(gradcheck, an_output_that_changes_shape_between_calls_is_refused)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_full(t, AG_F64, 1, (int64_t[]){3}, 0.25);
    const growing cases[] = {{0, {1, 1000}}, {0, {1000, 1}}};
    const char *msgs[] = {"ag_gradcheck: f returned f64 [1] on one call and f64 [1000] on another",
                          "ag_gradcheck: f returned f64 [1000] on one call and f64 [1] on another"};
    for (int k = 0; k < 2; k++) {
        growing g = cases[k];
        ag_gradcheck_report rep;
        char err[256];
        cr_expect_eq(ag_gradcheck(growing_output, &g, 1, &x, 0, &rep, err, sizeof err),
                     AG_ESHAPE, "case %d: %s", k, err);
        cr_expect(strstr(err, msgs[k]), "case %d: '%s'", k, err);
        cr_expect_eq(g.calls, 2, "case %d stops at the first changed call", k);
        cr_expect_eq(rep.checked, 0);
    }
    ag_tape_free(t);
}

static ag_tensor *sum_of(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_sum(t, x[0]);
}

/* f's output must be of the tape and pass it was given: an output kept
** from the first evaluation lies, after the next reset, in arena memory
** the tape has given back; one of another tape is not differentiated by
** this one. */
typedef struct keeper {
    ag_tensor *first;
    ag_tape *other;
} keeper;

static ag_tensor *keeps_its_first_output(ag_tape *t, ag_tensor *const *x, void *ud)
{
    keeper *k = ud;
    if (!k->first)
        return k->first = ag_sum(t, x[0]);
    return k->first;
}

static ag_tensor *answers_on_another_tape(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)t;
    (void)x;
    keeper *k = ud;
    return ag_full(k->other, AG_F64, 0, NULL, 1.0);
}

Test(gradcheck, an_output_of_an_earlier_pass_or_another_tape_is_refused)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_full(t, AG_F64, 1, (int64_t[]){3}, 0.25);
    keeper k = {.other = ag_tape_new()};
    ag_gradcheck_report rep;
    char err[256];
    cr_expect_eq(ag_gradcheck(keeps_its_first_output, &k, 1, &x, 0, &rep, err, sizeof err),
                 AG_EINVAL, "%s", err);
    cr_expect(strstr(err, "ag_gradcheck: f returned a tensor of an earlier pass (before a reset)"),
              "'%s'", err);
    cr_expect_eq(ag_gradcheck(answers_on_another_tape, &k, 1, &x, 0, &rep, err, sizeof err),
                 AG_EINVAL, "%s", err);
    cr_expect(strstr(err, "ag_gradcheck: f returned a tensor of another tape"), "'%s'", err);
    cr_expect_eq(rep.checked, 0);
    ag_tape_free(k.other);
    ag_tape_free(t);
}

/* A NaN eps passed 'eps <= 0' and the check ran, answering AG_OK with an
** infinite error; a negative one was silently replaced. 0 means 1e-6. */
Test(gradcheck, a_step_that_is_not_finite_and_positive_is_refused)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_full(t, AG_F64, 1, (int64_t[]){3}, 0.25);
    const double bad[] = {NAN, INFINITY, -INFINITY, -1e-6};
    const char *msgs[] = {"ag_gradcheck: eps nan ", "ag_gradcheck: eps inf ",
                          "ag_gradcheck: eps -inf ", "ag_gradcheck: eps -1e-06 "};
    for (int k = 0; k < 4; k++) {
        ag_gradcheck_report rep = {.checked = -1};
        char err[256];
        cr_expect_eq(ag_gradcheck(sum_of, NULL, 1, &x, bad[k], &rep, err, sizeof err), AG_EINVAL,
                     "eps %g: %s", bad[k], err);
        cr_expect(strstr(err, msgs[k]), "'%s' lacks '%s'", err, msgs[k]);
    }
    ag_gradcheck_report rep;
    cr_expect_eq(ag_gradcheck(sum_of, NULL, 1, &x, 0, &rep, NULL, 0), AG_OK);
    cr_expect_eq(rep.checked, 3);
    cr_expect_leq(rep.max_rel_err, 1e-8);
    cr_expect_eq(ag_tape_status(t), AG_OK);
    ag_tape_free(t);
}

/* An input made before its tape's last reset is refused as every accessor
** refuses it: AG_ESTATE, recorded on its tape too. */
Test(gradcheck, a_stale_input_is_refused)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *fresh = ag_param_scalar(AG_F64, 1.0);
    ag_tensor *x = ag_full(t, AG_F64, 1, (int64_t[]){3}, 0.25);
    ag_tape_reset(t);
    char err[256];
    cr_expect_eq(ag_gradcheck(sum_of, NULL, 2, (ag_tensor *[]){fresh, x}, 0, NULL, err,
                              sizeof err), AG_ESTATE, "%s", err);
    cr_expect(strstr(err, "ag_gradcheck: input 1 was made before the last ag_tape_reset"), "%s",
              err);
    cr_expect_eq(ag_tape_status(t), AG_ESTATE);
    cr_expect(strstr(ag_tape_errmsg(t), "ag_gradcheck: tensor was made before the last "
                     "ag_tape_reset"), "%s", ag_tape_errmsg(t));
    ag_param_free(fresh);
    ag_tape_free(t);
}

/* ------------------------------------------------------------- cast */

/* A cast through f32 cannot be finite-differenced to 1e-6, so its gradient
** is checked exactly: the vjp converts g back to the input's dtype. */
Test(gradcheck, cast_f64_to_f32_gradient_is_the_cast_back)
{
    ag_tape *t = ag_tape_new();
    const double xv[4] = {0.5, -1.25, 3.0, 0.1};
    const float cv[4] = {1.5f, -2.0f, 0.25f, 7.0f};
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){4}, xv));
    ag_tensor *c = ag_tensor_from(t, AG_F32, 1, (int64_t[]){4}, cv);
    ag_tensor *y32 = ag_cast(t, x, AG_F32);
    ag_tensor *loss = ag_sum(t, ag_mul(t, ag_square(t, y32), c));
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_assert_eq(ag_dtype_of(y32), AG_F32);
    ag_tensor *g = ag_grad(x);
    cr_assert_not_null(g);
    cr_assert_eq(ag_dtype_of(g), AG_F64);
    for (int i = 0; i < 4; i++) {
        double expect = 2.0 * (double)(float)xv[i] * (double)cv[i];
        cr_expect_float_eq(ag_get(g, i), expect, 1e-6 * fabs(expect), "element %d", i);
    }
    ag_tape_free(t);
}

Test(gradcheck, cast_f32_to_f64_gradient_is_the_cast_back)
{
    ag_tape *t = ag_tape_new();
    const float xv[3] = {0.5f, -1.5f, 2.0f};
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F32, 1, (int64_t[]){3}, xv));
    ag_tensor *loss = ag_sum(t, ag_pow_scalar(t, ag_cast(t, x, AG_F64), 3.0));
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tensor *g = ag_grad(x);
    cr_assert_eq(ag_dtype_of(g), AG_F32);
    for (int i = 0; i < 3; i++)
        cr_expect_float_eq(ag_get(g, i), 3.0 * xv[i] * xv[i], 1e-6, "element %d", i);
    ag_tape_free(t);
}

/* --------------------------------------------- stability at huge logits */

static const double HUGE_LOGITS[6] = {1e4, -1e4, 0.0, -1e4, -1e4, 1e4};

static ag_tensor *huge_logits(ag_tape *t, ag_dtype dt)
{
    ag_tensor *x = ag_zeros(t, dt, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++)
        ag_set(x, i, HUGE_LOGITS[i]);
    return ag_requires_grad(x);
}

static void expect_values(const ag_tensor *y, const double *want, int n, double tol,
                          const char *what)
{
    cr_assert_eq(ag_numel(y), n, "%s: %lld elements", what, (long long)ag_numel(y));
    for (int i = 0; i < n; i++) {
        double v = ag_get(y, i);
        cr_expect(isfinite(v), "%s: element %d is %g", what, i, v);
        cr_expect(fabs(v - want[i]) <= tol * fmax(1.0, fabs(want[i])),
                  "%s: element %d is %.9g, not %.9g", what, i, v, want[i]);
    }
}

static void check_softmax_family_at_huge_logits(ag_dtype dt)
{
    const char *name = ag_dtype_name(dt);
    ag_tape *t = ag_tape_new();
    ag_tensor *x = huge_logits(t, dt);
    double tol = dt == AG_F32 ? 1e-6 : 1e-12;

    expect_values(ag_softmax(t, x, -1), (double[]){1, 0, 0, 0, 0, 1}, 6, tol, name);
    expect_values(ag_log_softmax(t, x, -1), (double[]){0, -2e4, -1e4, -2e4, -2e4, 0}, 6, tol, name);
    /* Along axis 0 each column is a pair. */
    double e = exp(-1e4 - 0.0);
    expect_values(ag_softmax(t, x, 0), (double[]){1, 0.5, e, 0, 0.5, 1}, 6, tol, name);
    expect_values(ag_log_softmax(t, x, 0), (double[]){0, -log(2.0), -1e4, -2e4, -log(2.0), 0}, 6,
                  tol, name);
    expect_values(ag_logsumexp(t, x), (double[]){1e4 + log(2.0)}, 1, tol, name);
    expect_values(ag_logsumexp_axis(t, x, 1, 0), (double[]){1e4, 1e4}, 2, tol, name);

    /* Row 0 picks a logit 2e4 below the top, row 1 the top one. */
    ag_tensor *loss = ag_cross_entropy(t, x, (int64_t[]){1, 2});
    expect_values(loss, (double[]){1e4}, 1, tol, name);
    ag_backward(t, loss);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", name, ag_tape_errmsg(t));
    /* (softmax - onehot) / N */
    expect_values(ag_grad(x), (double[]){0.5, -0.5, 0, 0, 0, 0}, 6, tol, name);
    ag_tape_free(t);
}

Test(gradcheck, softmax_family_is_finite_at_huge_logits_f64)
{
    check_softmax_family_at_huge_logits(AG_F64);
}

Test(gradcheck, softmax_family_is_finite_at_huge_logits_f32)
{
    check_softmax_family_at_huge_logits(AG_F32);
}

Test(gradcheck, softmax_gradients_are_finite_at_huge_logits)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = huge_logits(t, AG_F64);
    ag_tensor *w = ag_reshape(t, ag_arange(t, AG_F64, 1, 7, 1), 2, (int64_t[]){2, 3});
    ag_tensor *ls = ag_sum(t, ag_mul(t, ag_log_softmax(t, x, -1), w));
    ag_tensor *g[1];
    ag_gradients(t, ls, NULL, 1, &x, g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    /* d/dx sum(w log_softmax x) = w - softmax(x) sum_row(w): rows sum to 6 and 15. */
    expect_values(g[0], (double[]){1 - 6, 2, 3, 4, 5, 6 - 15}, 6, 1e-12, "log_softmax");
    ag_tensor *s = ag_sum(t, ag_mul(t, ag_softmax(t, x, -1), w));
    ag_gradients(t, s, NULL, 1, &x, g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    /* softmax is one-hot here, so its Jacobian vanishes. */
    expect_values(g[0], (double[]){0, 0, 0, 0, 0, 0}, 6, 1e-12, "softmax");
    ag_tape_free(t);
}

Test(gradcheck, cross_entropy_of_equal_huge_logits_is_log_c)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_full(t, AG_F64, 2, (int64_t[]){1, 4}, -1e4));
    ag_tensor *loss = ag_cross_entropy(t, x, (int64_t[]){3});
    cr_assert_float_eq(ag_item(loss), log(4.0), 1e-12);
    ag_backward(t, loss);
    expect_values(ag_grad(x), (double[]){0.25, 0.25, 0.25, -0.75}, 4, 1e-12, "cross_entropy");
    ag_tape_free(t);
}

/* ------------------------------------------- ties and kinks, by design */

/* The gradient of x through f at the given points, seeded with ones. */
static void grad_at(ag_tensor *(*f)(ag_tape *, ag_tensor *), const double *xv, int n,
                    const double *want, const char *what)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, (int64_t[]){n}, xv));
    ag_tensor *y = ag_sum(t, f(t, x));
    ag_backward(t, y);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s: %s", what, ag_tape_errmsg(t));
    expect_values(ag_grad(x), want, n, 1e-15, what);
    ag_tape_free(t);
}

static ag_tensor *leaky_0_1(ag_tape *t, ag_tensor *x) { return ag_leaky_relu(t, x, 0.1); }
static ag_tensor *clamp_pm1(ag_tape *t, ag_tensor *x) { return ag_clamp(t, x, -1.0, 1.0); }

Test(gradcheck, kinks_take_the_documented_one_sided_values)
{
    const double x[4] = {-1.0, 0.0, 1.0, 2.0};
    grad_at(ag_abs, x, 4, (double[]){-1, 0, 1, 1}, "abs");
    grad_at(ag_relu, x, 4, (double[]){0, 0, 1, 1}, "relu");
    grad_at(leaky_0_1, x, 4, (double[]){0.1, 0.1, 1, 1}, "leaky_relu");
    /* clamp passes the gradient on its bounds, inclusive */
    grad_at(clamp_pm1, x, 4, (double[]){1, 1, 1, 0}, "clamp");
}

Test(gradcheck, max_and_min_ties_share_the_gradient)
{
    grad_at(ag_max, (double[]){1, 3, 3, 2}, 4, (double[]){0, 0.5, 0.5, 0}, "max");
    grad_at(ag_min, (double[]){1, 3, 1, 1}, 4, (double[]){1.0 / 3, 0, 1.0 / 3, 1.0 / 3}, "min");

    ag_tape *t = ag_tape_new();
    const double xv[6] = {3, 1, 3, 2, 2, 0};
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 2, (int64_t[]){2, 3}, xv));
    ag_backward(t, ag_sum(t, ag_max_axis(t, x, 1, 0)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_values(ag_grad(x), (double[]){0.5, 0, 0.5, 0.5, 0.5, 0}, 6, 1e-15, "max_axis");
    ag_tape_free(t);
}

Test(gradcheck, maximum_and_minimum_ties_split_the_gradient)
{
    ag_tape *t = ag_tape_new();
    const int64_t n[1] = {3};
    ag_tensor *a = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, n, (double[]){1, 2, 3}));
    ag_tensor *b = ag_requires_grad(ag_tensor_from(t, AG_F64, 1, n, (double[]){1, 0, 4}));
    ag_tensor *g[2];
    ag_gradients(t, ag_sum(t, ag_maximum(t, a, b)), NULL, 2, (ag_tensor *[]){a, b}, g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_values(g[0], (double[]){0.5, 1, 0}, 3, 1e-15, "maximum, a");
    expect_values(g[1], (double[]){0.5, 0, 1}, 3, 1e-15, "maximum, b");
    ag_gradients(t, ag_sum(t, ag_minimum(t, a, b)), NULL, 2, (ag_tensor *[]){a, b}, g, 0);
    expect_values(g[0], (double[]){0.5, 0, 1}, 3, 1e-15, "minimum, a");
    expect_values(g[1], (double[]){0.5, 1, 0}, 3, 1e-15, "minimum, b");
    ag_tape_free(t);
}

Test(gradcheck, pow_exponent_gradient_is_zero_for_nonpositive_bases)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *a = ag_tensor_from(t, AG_F64, 1, (int64_t[]){3}, (double[]){-2, 0, 2});
    ag_tensor *b = ag_requires_grad(ag_scalar(t, AG_F64, 2.0));
    ag_tensor *g;
    ag_gradients(t, ag_sum(t, ag_pow(t, a, b)), NULL, 1, &b, &g, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    /* only the base 2 contributes: 2^2 log 2 */
    cr_assert_float_eq(ag_item(g), 4.0 * log(2.0), 1e-14);
    ag_tape_free(t);
}
