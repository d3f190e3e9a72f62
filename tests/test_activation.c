/*
** test_activation.c: the sigmoid's own exp (kernels/activation.h), written
** without calls so that its loops vectorise, against libm: within an ulp of
** exp everywhere it is used, and f32 sigmoids equal to libm's rounded to
** float, through the op and through the fused dense layer.
*/
#include "internal.h"
#include "kernels/activation.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Distance in ulps between two finite doubles of the same sign. */
static double ulps(double got, double want)
{
    if (got == want)
        return 0;
    double ulp = nextafter(want, INFINITY) - want;
    return fabs(got - want) / ulp;
}

static double libm_sigmoid(double x)
{
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

Test(activation, exp_is_within_an_ulp_of_libm_down_to_the_subnormals)
{
    double worst = 0, worst_x = 0;
    for (int64_t i = 0; i <= 2000000; i++) {
        double x = -745.0 * (double)i / 2000000.0 - 1e-9 * (double)(i % 11);
        double u = ulps(agk_exp_nonpos(x), exp(x));
        if (u > worst)
            worst = u, worst_x = x;
    }
    cr_expect_leq(worst, 1.0, "%.3f ulps at x = %.17g", worst, worst_x);
    /* Around the first subnormals, where the scaling rounds. */
    for (double x = -708.0; x > -745.2; x -= 0.0137)
        cr_expect_leq(ulps(agk_exp_nonpos(x), exp(x)), 1.0, "x = %.17g", x);
}

Test(activation, exp_edges)
{
    cr_expect_eq(agk_exp_nonpos(0.0), 1.0);
    cr_expect_eq(agk_exp_nonpos(-0.0), 1.0);
    cr_expect_eq(agk_exp_nonpos(-745.0), exp(-745.0), "the smallest subnormal");
    cr_expect_eq(agk_exp_nonpos(-746.0), 0.0);
    cr_expect_eq(agk_exp_nonpos(-1e300), 0.0);
    cr_expect_eq(agk_exp_nonpos(-INFINITY), 0.0);
    cr_expect(isnan(agk_exp_nonpos(NAN)));
}

/* One tape op over a sweep of f32 inputs: every value must be libm's
** sigmoid rounded to float, whichever clone (AVX2 or baseline) runs. */
Test(activation, f32_sigmoid_is_libm_rounded_to_float)
{
    enum { N = 1 << 20 };
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_empty(t, AG_F32, 1, (int64_t[]){N});
    float *xs = ag_data(x);
    for (int64_t i = 0; i < N; i++)
        xs[i] = (float)(-110.0 + 220.0 * (double)i / N);
    xs[0] = INFINITY, xs[1] = -INFINITY, xs[2] = -0.0f, xs[3] = 1e-30f, xs[4] = -103.9f;
    ag_tensor *y = ag_sigmoid(t, x);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const float *ys = ag_data(y);
    int64_t wrong = 0, first = -1;
    for (int64_t i = 0; i < N; i++) {
        float want = (float)libm_sigmoid(xs[i]);
        if (memcmp(&ys[i], &want, sizeof want) && wrong++ == 0)
            first = i;
    }
    cr_expect_eq(wrong, 0, "%lld values differ, the first at x = %.9g: %.9g, libm %.9g",
                 (long long)wrong, first < 0 ? 0.0 : xs[first], first < 0 ? 0.0 : ys[first],
                 first < 0 ? 0.0 : (float)libm_sigmoid(xs[first]));
    cr_expect_eq(ys[0], 1.0f);
    cr_expect_eq(ys[1], 0.0f);
    cr_expect_eq(ys[2], 0.5f);
    cr_expect_gt(ys[4], 0.0f, "sigmoid(-103.9) is a float subnormal, not 0");
    ag_tape_free(t);
}

Test(activation, f64_sigmoid_is_within_two_ulps_of_libm)
{
    enum { N = 100000 };
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_empty(t, AG_F64, 1, (int64_t[]){N});
    double *xs = ag_data(x);
    for (int64_t i = 0; i < N; i++)
        xs[i] = -750.0 + 1500.0 * (double)i / N;
    ag_tensor *y = ag_sigmoid(t, x);
    const double *ys = ag_data(y);
    for (int64_t i = 0; i < N; i++) {
        double want = libm_sigmoid(xs[i]);
        if (want == 0)
            cr_assert_leq(ys[i], 5e-324, "x = %.17g", xs[i]);
        else
            cr_assert_leq(ulps(ys[i], want), 2.0, "x = %.17g: %.17g, libm %.17g", xs[i], ys[i], want);
    }
    ag_tensor *nan = ag_sigmoid(t, ag_scalar(t, AG_F64, NAN));
    cr_expect(isnan(ag_item(nan)));
    ag_tape_free(t);
}

/* The fused layer's sigmoid runs flat over its rows after the bias: an odd
** column count puts elements in the vector loop's tail and body alike. */
Test(activation, dense_sigmoid_matches_the_op_on_every_element)
{
    ag_tape *t = ag_tape_new();
    ag_rng rng;
    ag_rng_seed(&rng, 7);
    ag_tensor *x = ag_randn(t, &rng, AG_F32, 2, (int64_t[]){7, 13}, 0, 3);
    ag_tensor *w = ag_randn(t, &rng, AG_F32, 2, (int64_t[]){13, 29}, 0, 1);
    ag_tensor *b = ag_randn(t, &rng, AG_F32, 1, (int64_t[]){29}, 0, 1);
    ag_tensor *fused = ag_dense(t, x, w, b, AG_ACT_SIGMOID);
    ag_tensor *composed = ag_sigmoid(t, ag_add(t, ag_matmul(t, x, w), b));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    cr_expect_eq(memcmp(ag_data(fused), ag_data(composed), 7 * 29 * sizeof(float)), 0);
    ag_tape_free(t);
}

/* Softmax over rows goes through scratch a block at a time (about 8K
** doubles): across several blocks it must equal the strided path (the
** same rows read as columns of the transpose) bit for bit. */
Test(activation, softmax_rows_in_blocks_match_the_strided_path)
{
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F64 : AG_F32;
        ag_tape *t = ag_tape_new();
        ag_rng rng;
        ag_rng_seed(&rng, 5);
        ag_tensor *x = ag_randn(t, &rng, dt, 2, (int64_t[]){3000, 7}, 0, 4);
        ag_tensor *rows = ag_softmax(t, x, 1);
        ag_tensor *cols = ag_transpose(t, ag_softmax(t, ag_transpose(t, x, 0, 1), 0), 0, 1);
        ag_tensor *lrows = ag_log_softmax(t, x, 1);
        ag_tensor *lcols = ag_transpose(t, ag_log_softmax(t, ag_transpose(t, x, 0, 1), 0), 0, 1);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        size_t bytes = 3000 * 7 * ag_dtype_size(dt);
        cr_expect_eq(memcmp(ag_data(rows), ag_data(cols), bytes), 0, "%s softmax", ag_dtype_name(dt));
        cr_expect_eq(memcmp(ag_data(lrows), ag_data(lcols), bytes), 0, "%s log_softmax", ag_dtype_name(dt));
        ag_tape_free(t);
    }
}
