/*
** test_ops_special.c: the values of the special functions (ops_special.c)
** and of var, std and cumsum (ops_stats.c) against known values and long
** double references: accuracy where the naive formula fails, C's quadrants
** for atan2, PyTorch's edge cases for var and std, NaN propagation, the
** pool, and errors that name the function and the values. Their gradients
** are checked with every op's in test_ops_gradcheck.c (op_cases.h).
*/
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <string.h>

#include "autograd.h"

/* C11 has no PI. */
static const double PI = 3.14159265358979323846;

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

TestSuite(special, .init = setup, .fini = teardown);

static ag_tensor *scalar(double v) { return ag_scalar(tape, AG_F64, v); }

static ag_tensor *vector(ag_dtype dt, int64_t n, const double *v)
{
    ag_tensor *x = ag_zeros(tape, dt, 1, (int64_t[]){n});
    for (int64_t i = 0; i < n; i++)
        ag_set(x, i, v[i]);
    return x;
}

/* Distance between a and b in units in the last place of b (doubles). */
static double ulps(double a, double b)
{
    if (a == b)
        return 0;
    return fabs(a - b) / (nextafter(fabs(b), INFINITY) - fabs(b));
}

static void expect_ok(void)
{
    cr_assert_eq(ag_tape_status(tape), AG_OK, "%s", ag_tape_errmsg(tape));
}

/* The tape's status is 'want' and its whole message 'msg'; then reset. */
static void expect_error(const ag_tensor *r, ag_status want, const char *msg)
{
    cr_assert(ag_is_nil(r), "returned a tensor, not nil (expected '%s')", msg);
    cr_assert_eq(ag_tape_status(tape), want, "status %s, want %s ('%s')",
                 ag_status_str(ag_tape_status(tape)), ag_status_str(want), ag_tape_errmsg(tape));
    cr_assert_str_eq(ag_tape_errmsg(tape), msg);
    ag_tape_reset(tape);
}

/* ------------------------------------------------------ special functions */

Test(special, erf_known_values)
{
    cr_assert_eq(ag_item(ag_erf(tape, scalar(0.5))), 0.5204998778130465);
    cr_assert_eq(ag_item(ag_erf(tape, scalar(-0.5))), -0.5204998778130465);
    cr_assert_eq(ag_item(ag_erf(tape, scalar(0.0))), 0.0);
    cr_assert_eq(ag_item(ag_erf(tape, scalar(INFINITY))), 1.0);
    cr_assert_eq(ag_item(ag_erf(tape, scalar(-INFINITY))), -1.0);
    /* f32: libm's double, rounded once */
    cr_assert_eq(ag_item(ag_erf(tape, ag_scalar(tape, AG_F32, 0.5))), (double)(float)0.5204998778130465);
    expect_ok();
}

/* The first and second derivatives of erf, which a hand-made erf with a
** detached derivative got 2x wrong (issue 14): 2/sqrt(pi) e^(-x^2) and
** -2x times that. */
Test(special, erf_first_and_second_derivative)
{
    ag_tensor *x = ag_requires_grad(scalar(0.5));
    ag_tensor *y = ag_erf(tape, x), *g, *gg;
    ag_gradients(tape, y, NULL, 1, &x, &g, 1);
    ag_gradients(tape, g, NULL, 1, &x, &gg, 0);
    expect_ok();
    double d1 = 2.0 / sqrt(PI) * exp(-0.25);
    cr_assert_leq(ulps(ag_item(g), d1), 2, "erf' = %.17g, want %.17g", ag_item(g), d1);
    cr_assert_leq(ulps(ag_item(gg), -2.0 * 0.5 * d1), 4, "erf'' = %.17g, want %.17g",
                  ag_item(gg), -d1);
}

Test(special, atan_known_values)
{
    cr_assert_eq(ag_item(ag_atan(tape, scalar(1.0))), PI / 4);
    cr_assert_eq(ag_item(ag_atan(tape, scalar(-INFINITY))), -PI / 2);
    cr_assert_eq(ag_item(ag_atan(tape, scalar(0.0))), 0.0);
    ag_tensor *x = ag_requires_grad(scalar(2.0));
    ag_backward(tape, ag_atan(tape, x));
    cr_assert_eq(ag_grad_item(x), 0.2);   /* 1 / (1 + 4) */
    expect_ok();
}

/* atan2 in each quadrant, on the axes and at signed zeros, as C gives. */
Test(special, atan2_quadrants_and_zeros)
{
    static const struct { double y, x, want; } cases[] = {
        {1, 1, PI / 4},         {1, -1, 3 * PI / 4},   {-1, -1, -3 * PI / 4},
        {-1, 1, -PI / 4},       {1, 0, PI / 2},        {-1, 0, -PI / 2},
        {0, 1, 0},                {0, -1, PI},           {-0.0, -1, -PI},
        {0, 0, 0},                {-0.0, 0, -0.0},         {0, -0.0, PI},
        {INFINITY, INFINITY, PI / 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = ag_item(ag_atan2(tape, scalar(cases[i].y), scalar(cases[i].x)));
        cr_expect_eq(got, cases[i].want, "atan2(%g, %g) = %.17g, want %.17g", cases[i].y,
                     cases[i].x, got, cases[i].want);
        cr_expect_eq(signbit(got), signbit(cases[i].want), "atan2(%g, %g): sign of %g",
                     cases[i].y, cases[i].x, got);
    }
    expect_ok();
}

/* y [2,1] against x [3]: a [2,3] result, and gradients summed back to each
** input's shape: d/dy = x / r^2, d/dx = -y / r^2. */
Test(special, atan2_broadcasts_and_its_gradients_sum_back)
{
    const double yv[2] = {1, -2}, xv[3] = {2, -1, 0.5};
    ag_tensor *y = ag_requires_grad(vector(AG_F64, 2, yv));
    ag_tensor *y21 = ag_reshape(tape, y, 2, (int64_t[]){2, 1});
    ag_tensor *x = ag_requires_grad(vector(AG_F64, 3, xv));
    ag_tensor *a = ag_atan2(tape, y21, x);
    expect_ok();
    cr_assert_eq(ag_rank(a), 2);
    cr_assert_eq(ag_shape(a)[0], 2);
    cr_assert_eq(ag_shape(a)[1], 3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            cr_expect_eq(ag_get(a, 3 * i + j), atan2(yv[i], xv[j]));
    ag_backward(tape, ag_sum(tape, a));
    expect_ok();
    for (int i = 0; i < 2; i++) {
        double want = 0;
        for (int j = 0; j < 3; j++)
            want += xv[j] / (xv[j] * xv[j] + yv[i] * yv[i]);
        cr_expect_float_eq(ag_get(ag_grad(y), i), want, 1e-15, "d/dy[%d]", i);
    }
    for (int j = 0; j < 3; j++) {
        double want = 0;
        for (int i = 0; i < 2; i++)
            want -= yv[i] / (xv[j] * xv[j] + yv[i] * yv[i]);
        cr_expect_float_eq(ag_get(ag_grad(x), j), want, 1e-15, "d/dx[%d]", j);
    }
}

/* At the origin the derivative's formula is 0/0: NaN, as documented. */
Test(special, atan2_derivative_at_the_origin_is_nan)
{
    ag_tensor *y = ag_requires_grad(scalar(0)), *x = ag_requires_grad(scalar(0));
    ag_tensor *a = ag_atan2(tape, y, x);
    cr_assert_eq(ag_item(a), 0.0);
    ag_backward(tape, a);
    expect_ok();
    cr_assert(isnan(ag_grad_item(y)) && isnan(ag_grad_item(x)));
}

/* log1p(1e-10) to 1 ulp, where log(1 + 1e-10) is wrong from the 8th digit:
** 1 + 1e-10 rounds. The reference is the series in long double. */
Test(special, log1p_is_accurate_where_log_of_one_plus_x_is_not)
{
    long double x = 1e-10;
    double ref = (double)(x - x * x / 2 + x * x * x / 3);
    double got = ag_item(ag_log1p(tape, scalar(1e-10)));
    cr_assert_leq(ulps(got, ref), 1, "log1p(1e-10) = %.17g, want %.17g", got, ref);
    double naive = ag_item(ag_log(tape, ag_add_scalar(tape, scalar(1e-10), 1.0)));
    cr_assert_gt(ulps(naive, ref), 1e6, "log(1 + 1e-10) = %.17g is too good", naive);
    cr_assert_eq(ag_item(ag_log1p(tape, scalar(-1))), -INFINITY);
    cr_assert(isnan(ag_item(ag_log1p(tape, scalar(-2)))));
    /* the derivative 1 / (1 + x) */
    ag_tensor *v = ag_requires_grad(scalar(3));
    ag_backward(tape, ag_log1p(tape, v));
    cr_assert_eq(ag_grad_item(v), 0.25);
    expect_ok();
}

Test(special, expm1_is_accurate_where_exp_minus_one_is_not)
{
    long double x = 1e-10;
    double ref = (double)(x + x * x / 2 + x * x * x / 6);
    double got = ag_item(ag_expm1(tape, scalar(1e-10)));
    cr_assert_leq(ulps(got, ref), 1, "expm1(1e-10) = %.17g, want %.17g", got, ref);
    double naive = ag_item(ag_add_scalar(tape, ag_exp(tape, scalar(1e-10)), -1.0));
    cr_assert_gt(ulps(naive, ref), 1e6, "exp(1e-10) - 1 = %.17g is too good", naive);
    cr_assert_eq(ag_item(ag_expm1(tape, scalar(-INFINITY))), -1.0);
    /* The derivative is e^x even where expm1 x + 1 rounds to 0. */
    ag_tensor *v = ag_requires_grad(scalar(-40));
    ag_backward(tape, ag_expm1(tape, v));
    cr_assert_eq(ag_grad_item(v), exp(-40.0));
    expect_ok();
}

Test(special, nan_propagates_through_each_function)
{
    ag_tensor *n = scalar(NAN), *one = scalar(1);
    cr_expect(isnan(ag_item(ag_erf(tape, n))));
    cr_expect(isnan(ag_item(ag_atan(tape, n))));
    cr_expect(isnan(ag_item(ag_log1p(tape, n))));
    cr_expect(isnan(ag_item(ag_expm1(tape, n))));
    cr_expect(isnan(ag_item(ag_atan2(tape, n, one))));
    cr_expect(isnan(ag_item(ag_atan2(tape, one, n))));
    expect_ok();
}

/* Above the pool's threshold the forward runs in slices on two threads:
** every element is still libm's value. */
Test(special, large_tensors_on_the_pool_give_libm_values)
{
    ag_pool *pool = ag_pool_new(2);
    cr_assert_not_null(pool);
    ag_tape_set_pool(tape, pool);
    int64_t n = 1 << 17;
    ag_tensor *x = ag_arange(tape, AG_F64, -3.0, 3.0, 6.0 / (double)n);
    ag_tensor *e = ag_erf(tape, x), *l = ag_log1p(tape, ag_abs(tape, x));
    ag_tensor *a = ag_atan2(tape, x, ag_scalar(tape, AG_F64, -0.5));
    expect_ok();
    cr_assert_eq(ag_numel(e), n);
    for (int64_t i = 0; i < n; i++) {
        double v = ag_get(x, i);
        if (ag_get(e, i) != erf(v) || ag_get(l, i) != log1p(fabs(v)) ||
            ag_get(a, i) != atan2(v, -0.5))
            cr_assert_fail("element %lld (x = %g) differs from libm", (long long)i, v);
    }
    ag_tape_set_pool(tape, NULL);
    ag_pool_free(pool);
}

Test(special, errors_name_the_function_and_the_values)
{
    expect_error(ag_erf(tape, NULL), AG_EINVAL, "ag_erf: input 0 is NULL");
    expect_error(ag_expm1(tape, NULL), AG_EINVAL, "ag_expm1: input 0 is NULL");
    ag_tensor *a = ag_ones(tape, AG_F32, 2, (int64_t[]){2, 3});
    ag_tensor *b = ag_ones(tape, AG_F64, 1, (int64_t[]){3});
    expect_error(ag_atan2(tape, a, b), AG_EDTYPE, "ag_atan2: dtypes differ: input 0 is f32, input 1 is f64");
    a = ag_ones(tape, AG_F64, 2, (int64_t[]){2, 3});
    b = ag_ones(tape, AG_F64, 1, (int64_t[]){4});
    expect_error(ag_atan2(tape, a, b), AG_ESHAPE,
                 "ag_atan2: shapes [2,3] (y) and [4] (x) do not broadcast");
}

/* ------------------------------------------------------------- var, std */

/* A [2,3,4] tensor of values 1e4 + small steps: a mean large against the
** spread, where the one-pass formula loses digits. */
static const double STAT_BASE = 1e4;
static double stat_value(int64_t i) { return STAT_BASE + 0.37 * (double)((i * 7) % 24) - 0.011 * (double)i; }

static ag_tensor *stat_input(ag_dtype dt)
{
    ag_tensor *x = ag_zeros(tape, dt, 3, (int64_t[]){2, 3, 4});
    for (int64_t i = 0; i < 24; i++)
        ag_set(x, i, stat_value(i));
    return x;
}

/* The variance of elements of 'v' (as stored: f32 values for f32) at
** base + k * stride, k < n, by two passes in long double. */
static long double ref_var(const ag_tensor *x, int64_t base, int64_t n, int64_t stride,
                           double correction)
{
    long double s = 0, ss = 0;
    for (int64_t k = 0; k < n; k++)
        s += ag_get(x, base + k * stride);
    long double mean = s / n;
    for (int64_t k = 0; k < n; k++) {
        long double d = ag_get(x, base + k * stride) - mean;
        ss += d * d;
    }
    return ss / ((long double)n - correction);
}

/* Checks var/std of x against the reference for axis (-1: all). */
static void check_stats(ag_tensor *x, int axis, int keepdim, double correction)
{
    ag_dtype dt = ag_dtype_of(x);
    const int64_t dims[3] = {2, 3, 4};
    ag_tensor *v = axis < 0 ? ag_var(tape, x, correction)
                            : ag_var_axis(tape, x, axis, keepdim, correction);
    ag_tensor *s = axis < 0 ? ag_std(tape, x, correction)
                            : ag_std_axis(tape, x, axis, keepdim, correction);
    expect_ok();
    int want_rank = axis < 0 ? 0 : keepdim ? 3 : 2;
    cr_assert_eq(ag_rank(v), want_rank, "axis %d keepdim %d: rank %d", axis, keepdim, ag_rank(v));
    cr_assert_eq(ag_rank(s), want_rank);
    for (int d = 0, k = 0; axis >= 0 && d < 3; d++) {
        if (d == axis && !keepdim)
            continue;
        cr_assert_eq(ag_shape(v)[k], d == axis ? 1 : dims[d], "axis %d: dim %d", axis, k);
        k++;
    }
    int64_t n = axis < 0 ? 24 : dims[axis], inner = 1;
    for (int d = axis + 1; axis >= 0 && d < 3; d++)
        inner *= dims[d];
    int64_t stride = axis < 0 ? 1 : inner;
    for (int64_t o = 0; o < ag_numel(v); o++) {
        int64_t base = axis < 0 ? 0 : (o / inner) * n * inner + o % inner;
        long double r = ref_var(x, base, n, stride, correction);
        double rv = (double)r, rs = (double)sqrtl(r);
        if (dt == AG_F32) {
            /* computed in double, rounded once: the reference's float, or its neighbour */
            cr_expect_leq(fabs(ag_get(v, o) - (double)(float)rv), fabs((double)nextafterf((float)rv, INFINITY) - (float)rv),
                          "f32 var axis %d keepdim %d c %g [%lld]: %.9g, want %.9g", axis,
                          keepdim, correction, (long long)o, ag_get(v, o), rv);
            cr_expect_leq(fabs(ag_get(s, o) - (double)(float)rs), fabs((double)nextafterf((float)rs, INFINITY) - (float)rs),
                          "f32 std axis %d [%lld]: %.9g, want %.9g", axis, (long long)o,
                          ag_get(s, o), rs);
        } else {
            cr_expect_leq(ulps(ag_get(v, o), rv), 4,
                          "var axis %d keepdim %d c %g [%lld]: %.17g, want %.17g", axis, keepdim,
                          correction, (long long)o, ag_get(v, o), rv);
            cr_expect_leq(ulps(ag_get(s, o), rs), 4,
                          "std axis %d keepdim %d c %g [%lld]: %.17g, want %.17g", axis, keepdim,
                          correction, (long long)o, ag_get(s, o), rs);
        }
    }
}

Test(special, var_and_std_match_a_long_double_two_pass_reference)
{
    for (int dt = AG_F32; dt <= AG_F64; dt++) {
        ag_tensor *x = stat_input((ag_dtype)dt);
        for (int c = 0; c <= 2; c++) {
            check_stats(x, -1, 0, c);
            for (int axis = 0; axis < 3; axis++) {
                if (axis == 0 && c == 2)
                    continue;   /* N - correction = 0: the edge cases below */
                check_stats(x, axis, 0, c);
                check_stats(x, axis, 1, c);
            }
        }
    }
}

/* Negative axes count from the end, as for ag_sum_axis. */
Test(special, var_negative_axis_is_the_last)
{
    ag_tensor *x = stat_input(AG_F64);
    ag_tensor *a = ag_var_axis(tape, x, -1, 0, 1), *b = ag_var_axis(tape, x, 2, 0, 1);
    expect_ok();
    for (int64_t i = 0; i < 6; i++)
        cr_assert_eq(ag_get(a, i), ag_get(b, i));
}

/* 1e8 + {1, 2, 3, 4}: variance 1.25 (population). The one-pass formula
** E[x^2] - E[x]^2 in double gives 0 or garbage here. */
Test(special, var_keeps_its_digits_under_a_large_mean)
{
    const double v[4] = {1e8 + 1, 1e8 + 2, 1e8 + 3, 1e8 + 4};
    ag_tensor *x = vector(AG_F64, 4, v);
    cr_assert_eq(ag_item(ag_var(tape, x, 0)), 1.25);
    cr_assert_eq(ag_item(ag_var(tape, x, 1)), 5.0 / 3.0);
    expect_ok();
}

/* N - correction <= 0, as PyTorch: inf when the values differ, NaN when
** they are all equal (0/0); an empty reduction is NaN. */
Test(special, var_where_n_minus_correction_is_not_positive)
{
    const double two[2] = {1, 3}, same[2] = {2, 2};
    ag_tensor *x = vector(AG_F64, 2, two), *y = vector(AG_F64, 2, same);
    cr_assert_eq(ag_item(ag_var(tape, x, 2)), INFINITY);
    cr_assert_eq(ag_item(ag_var(tape, x, 5)), INFINITY);
    cr_assert_eq(ag_item(ag_std(tape, x, 2)), INFINITY);
    cr_assert(isnan(ag_item(ag_var(tape, y, 2))));
    cr_assert(isnan(ag_item(ag_var(tape, ag_scalar(tape, AG_F64, 7), 1))));
    cr_assert_eq(ag_item(ag_var(tape, ag_scalar(tape, AG_F64, 7), 0)), 0.0);
    cr_assert(isnan(ag_item(ag_var(tape, ag_zeros(tape, AG_F64, 1, (int64_t[]){0}), 0))));
    ag_tensor *e = ag_var_axis(tape, ag_zeros(tape, AG_F64, 2, (int64_t[]){3, 0}), 1, 0, 0);
    cr_assert_eq(ag_numel(e), 3);
    cr_assert(isnan(ag_get(e, 0)));
    /* the gradient's 2 / (N - correction) is inf there too */
    ag_tensor *p = ag_requires_grad(vector(AG_F64, 2, two));
    ag_backward(tape, ag_var(tape, p, 2));
    expect_ok();
    cr_assert_eq(ag_get(ag_grad(p), 0), -INFINITY);
    cr_assert_eq(ag_get(ag_grad(p), 1), INFINITY);
}

Test(special, var_gradient_values)
{
    const double v[3] = {1, 2, 6};   /* mean 3 */
    ag_tensor *x = ag_requires_grad(vector(AG_F64, 3, v));
    ag_backward(tape, ag_var(tape, x, 1));
    expect_ok();
    for (int i = 0; i < 3; i++)
        cr_expect_eq(ag_get(ag_grad(x), i), 2 * (v[i] - 3) / 2, "element %d", i);
}

/* std of equal values is 0 and its gradient 0 (PyTorch's choice), not 0/0. */
Test(special, std_gradient_is_zero_where_std_is_zero)
{
    const double v[3] = {4, 4, 4};
    ag_tensor *x = ag_requires_grad(vector(AG_F64, 3, v));
    ag_tensor *s = ag_std(tape, x, 1);
    cr_assert_eq(ag_item(s), 0.0);
    ag_backward(tape, s);
    expect_ok();
    for (int i = 0; i < 3; i++)
        cr_expect_eq(ag_get(ag_grad(x), i), 0.0);
}

Test(special, var_nan_and_inf_propagate_to_their_line_only)
{
    const double v[6] = {1, NAN, 3, 4, 5, 6};
    ag_tensor *x = ag_reshape(tape, vector(AG_F64, 6, v), 2, (int64_t[]){2, 3});
    ag_tensor *r = ag_var_axis(tape, x, 1, 0, 1);
    expect_ok();
    cr_assert(isnan(ag_get(r, 0)));
    cr_assert_eq(ag_get(r, 1), 1.0);
    const double w[3] = {1, INFINITY, 3};
    cr_assert(isnan(ag_item(ag_std(tape, vector(AG_F64, 3, w), 0))));
}

Test(special, var_errors_name_the_function_and_the_values)
{
    ag_tensor *x = ag_ones(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_error(ag_var_axis(tape, x, 3, 0, 1), AG_EINVAL,
                 "ag_var_axis: axis 3 is out of range for shape [2,3,4]");
    x = ag_ones(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_error(ag_std_axis(tape, x, -4, 1, 1), AG_EINVAL,
                 "ag_std_axis: axis -4 is out of range for shape [2,3,4]");
    x = ag_ones(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_error(ag_var(tape, x, -1), AG_EINVAL, "ag_var: correction -1 is not a finite number >= 0");
    x = ag_ones(tape, AG_F64, 3, (int64_t[]){2, 3, 4});
    expect_error(ag_std(tape, x, NAN), AG_EINVAL, "ag_std: correction nan is not a finite number >= 0");
    expect_error(ag_var(tape, NULL, 1), AG_EINVAL, "ag_var: input 0 is NULL");
}

/* --------------------------------------------------------------- cumsum */

/* cumsum of 0..23 as [2,3,4] along each axis against loops. */
Test(special, cumsum_values_along_each_axis)
{
    const int64_t dims[3] = {2, 3, 4};
    for (int dt = AG_F32; dt <= AG_F64; dt++) {
        ag_tensor *x = ag_reshape(tape, ag_arange(tape, (ag_dtype)dt, 0, 24, 1), 3, dims);
        for (int axis = 0; axis < 3; axis++) {
            ag_tensor *c = ag_cumsum(tape, x, axis);
            expect_ok();
            cr_assert_eq(ag_rank(c), 3);
            int64_t inner = 1;
            for (int d = axis + 1; d < 3; d++)
                inner *= dims[d];
            for (int64_t i = 0; i < 24; i++) {
                int64_t k = (i / inner) % dims[axis];
                double want = 0;
                for (int64_t j = 0; j <= k; j++)
                    want += (double)(i - (k - j) * inner);
                cr_expect_eq(ag_get(c, i), want, "%s axis %d element %lld: %g, want %g",
                             ag_dtype_name((ag_dtype)dt), axis, (long long)i, ag_get(c, i), want);
            }
        }
    }
    /* axis -1 is the last; a scalar is its own running sum */
    ag_tensor *x = ag_reshape(tape, ag_arange(tape, AG_F64, 0, 24, 1), 3, dims);
    ag_tensor *a = ag_cumsum(tape, x, -1), *b = ag_cumsum(tape, x, 2);
    for (int64_t i = 0; i < 24; i++)
        cr_expect_eq(ag_get(a, i), ag_get(b, i));
    cr_assert_eq(ag_item(ag_cumsum(tape, ag_scalar(tape, AG_F64, 2.5), 0)), 2.5);
    expect_ok();
}

/* The gradient of sum(w * cumsum(x)) is the reverse running sum of w. */
Test(special, cumsum_gradient_is_the_reverse_running_sum)
{
    const double w[4] = {1, 10, 100, 1000};
    ag_tensor *x = ag_requires_grad(ag_zeros(tape, AG_F64, 1, (int64_t[]){4}));
    ag_backward(tape, ag_sum(tape, ag_mul(tape, vector(AG_F64, 4, w), ag_cumsum(tape, x, 0))));
    expect_ok();
    const double want[4] = {1111, 1110, 1100, 1000};
    for (int i = 0; i < 4; i++)
        cr_expect_eq(ag_get(ag_grad(x), i), want[i], "element %d", i);
}

/* An f32 cumsum sums in double: 1 + 2^-24 + 2^-24 + ... keeps every
** 2^-24, where a float accumulator would drop each one. */
Test(special, cumsum_f32_sums_in_double)
{
    int64_t n = 5;
    ag_tensor *x = ag_full(tape, AG_F32, 1, &n, 0x1p-24);
    ag_set(x, 0, 1.0);
    ag_tensor *c = ag_cumsum(tape, x, 0);
    expect_ok();
    cr_assert_eq(ag_get(c, 4), (double)(float)(1.0 + 4 * 0x1p-24));
    cr_assert_eq(ag_get(c, 4), 1.0 + 4 * 0x1p-24);
}

Test(special, cumsum_nan_spreads_forward_only)
{
    const double v[4] = {1, NAN, 2, 3};
    ag_tensor *c = ag_cumsum(tape, vector(AG_F64, 4, v), 0);
    expect_ok();
    cr_assert_eq(ag_get(c, 0), 1.0);
    for (int i = 1; i < 4; i++)
        cr_assert(isnan(ag_get(c, i)), "element %d", i);
}

/* On two threads (rows of a large tensor), the same values as on one. */
Test(special, cumsum_and_var_on_the_pool_match_one_thread)
{
    int64_t shape[2] = {512, 300};
    ag_rng r;
    ag_rng_seed(&r, 14);
    ag_tensor *x = ag_randn(tape, &r, AG_F64, 2, shape, 0, 1);
    ag_tensor *c1 = ag_cumsum(tape, x, 0), *v1 = ag_var_axis(tape, x, 1, 0, 1);
    ag_pool *pool = ag_pool_new(2);
    cr_assert_not_null(pool);
    ag_tape_set_pool(tape, pool);
    ag_tensor *c2 = ag_cumsum(tape, x, 0), *v2 = ag_var_axis(tape, x, 1, 0, 1);
    expect_ok();
    for (int64_t i = 0; i < ag_numel(x); i++)
        if (ag_get(c1, i) != ag_get(c2, i))
            cr_assert_fail("cumsum element %lld differs", (long long)i);
    for (int64_t i = 0; i < 512; i++)
        cr_expect_eq(ag_get(v1, i), ag_get(v2, i), "var row %lld", (long long)i);
    ag_tape_set_pool(tape, NULL);
    ag_pool_free(pool);
}

Test(special, cumsum_errors_name_the_function_and_the_values)
{
    ag_tensor *x = ag_ones(tape, AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_cumsum(tape, x, 2), AG_EINVAL, "ag_cumsum: axis 2 is out of range for shape [2,3]");
    x = ag_ones(tape, AG_F64, 2, (int64_t[]){2, 3});
    expect_error(ag_cumsum(tape, x, -3), AG_EINVAL, "ag_cumsum: axis -3 is out of range for shape [2,3]");
    expect_error(ag_cumsum(tape, ag_scalar(tape, AG_F64, 1), 1), AG_EINVAL,
                 "ag_cumsum: axis 1 is out of range for shape []");
    expect_error(ag_cumsum(tape, NULL, 0), AG_EINVAL, "ag_cumsum: input 0 is NULL");
}
