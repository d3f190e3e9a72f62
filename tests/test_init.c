/*
** test_init.c: fans, gains, and the Glorot/Xavier and He/Kaiming fills:
** bounds, spreads, determinism from a seed, and argument errors.
*/
#include "nn.h"

#include <criterion/criterion.h>
#include <math.h>

static ag_tensor *param(int rank, const int64_t *shape)
{
    return ag_param_new(AG_F64, rank, shape);
}

Test(init, fans_follow_the_in_out_layout)
{
    int64_t in, out;
    ag_tensor *w = param(2, (int64_t[]){3, 5});
    nn_init_fans(w, &in, &out);
    cr_assert_eq(in, 3);
    cr_assert_eq(out, 5);
    ag_param_free(w);
    /* [kh, kw, in, out]: receptive field 2 x 3 */
    w = param(4, (int64_t[]){2, 3, 4, 5});
    nn_init_fans(w, &in, &out);
    cr_assert_eq(in, 24);
    cr_assert_eq(out, 30);
    ag_param_free(w);
    w = param(1, (int64_t[]){7});
    nn_init_fans(w, &in, &out);
    cr_assert_eq(in, 7);
    cr_assert_eq(out, 7);
    ag_param_free(w);
    w = param(0, NULL);
    nn_init_fans(w, &in, NULL);
    cr_assert_eq(in, 1);
    ag_param_free(w);
}

Test(init, gains)
{
    cr_assert_float_eq(nn_init_gain(NN_IDENTITY), 1.0, 0);
    cr_assert_float_eq(nn_init_gain(NN_SIGMOID), 1.0, 0);
    cr_assert_float_eq(nn_init_gain(NN_TANH), 5.0 / 3.0, 1e-15);
    cr_assert_float_eq(nn_init_gain(NN_RELU), 1.4142135623730951, 1e-15);
    cr_assert_float_eq(nn_init_gain(NN_LEAKY_RELU), sqrt(2.0 / 1.0001), 1e-15);
    cr_assert_float_eq(nn_init_gain(NN_GELU), sqrt(2.0), 1e-15);
}

/* Checks a filled tensor: every |value| <= bound (when bound > 0), and the
** sample standard deviation within 3% of 'std'. */
static void check_spread(ag_tensor *w, double bound, double std)
{
    int64_t n = ag_numel(w);
    double sum = 0, sq = 0, maxabs = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = ag_get(w, i);
        sum += v;
        sq += v * v;
        maxabs = fmax(maxabs, fabs(v));
    }
    double mean = sum / (double)n, sd = sqrt(sq / (double)n - mean * mean);
    if (bound > 0)
        cr_assert_leq(maxabs, bound);
    cr_assert(fabs(mean) < 0.05 * std, "mean %g", mean);
    cr_assert(fabs(sd - std) < 0.03 * std, "std %g, want %g", sd, std);
}

Test(init, xavier_uniform_and_normal)
{
    ag_rng r;
    ag_rng_seed(&r, 1);
    ag_tensor *w = param(2, (int64_t[]){100, 200});
    cr_assert_eq(nn_init_xavier_uniform(w, &r, 2.0), AG_OK);
    double a = 2.0 * sqrt(6.0 / 300.0);
    check_spread(w, a, a / sqrt(3.0));   /* U(-a, a) has std a / sqrt(3) */
    cr_assert_eq(nn_init_xavier_normal(w, &r, 2.0), AG_OK);
    check_spread(w, 0, 2.0 * sqrt(2.0 / 300.0));
    ag_param_free(w);
}

Test(init, kaiming_uniform_and_normal)
{
    ag_rng r;
    ag_rng_seed(&r, 2);
    ag_tensor *w = param(2, (int64_t[]){150, 100});
    cr_assert_eq(nn_init_kaiming_uniform(w, &r, sqrt(2.0)), AG_OK);
    double a = sqrt(2.0) * sqrt(3.0 / 150.0);
    check_spread(w, a, a / sqrt(3.0));   /* = sqrt(2 / fan_in) */
    cr_assert_eq(nn_init_kaiming_normal(w, &r, sqrt(2.0)), AG_OK);
    check_spread(w, 0, sqrt(2.0 / 150.0));
    ag_param_free(w);
}

Test(init, same_seed_same_values_and_f32_too)
{
    ag_rng r1, r2;
    ag_rng_seed(&r1, 42);
    ag_rng_seed(&r2, 42);
    ag_tensor *a = ag_param_new(AG_F32, 2, (int64_t[]){4, 4});
    ag_tensor *b = ag_param_new(AG_F32, 2, (int64_t[]){4, 4});
    nn_init_kaiming_normal(a, &r1, 1.0);
    nn_init_kaiming_normal(b, &r2, 1.0);
    for (int64_t i = 0; i < 16; i++)
        cr_assert_eq(ag_get(a, i), ag_get(b, i));
    ag_param_free(a);
    ag_param_free(b);
}

Test(init, constants_and_errors)
{
    ag_rng r;
    ag_rng_seed(&r, 0);
    ag_tensor *w = param(1, (int64_t[]){3});
    cr_assert_eq(nn_init_constant(w, 0.5), AG_OK);
    cr_assert_float_eq(ag_get(w, 2), 0.5, 0);
    cr_assert_eq(nn_init_zeros(w), AG_OK);
    cr_assert_float_eq(ag_get(w, 1), 0.0, 0);
    cr_assert_eq(nn_init_xavier_uniform(w, NULL, 1.0), AG_EINVAL);
    cr_assert_eq(nn_init_kaiming_normal(w, &r, 0.0), AG_EINVAL);
    cr_assert_eq(nn_init_xavier_normal(w, &r, NAN), AG_EINVAL);
    cr_assert_eq(nn_init_kaiming_uniform(NULL, &r, 1.0), AG_EINVAL);
    cr_assert_eq(nn_init_zeros(NULL), AG_EINVAL);
    cr_assert_float_eq(ag_get(w, 0), 0.0, 0, "failed fills leave the tensor alone");
    ag_param_free(w);
}
