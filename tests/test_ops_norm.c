/*
** test_ops_norm.c: the fused standardisation behind batch and group norm
** (ops_norm_fused.c) beyond what the op tables check: values and gradients
** equal to the composition of generic ops they replaced, the same bits on
** any number of threads (both ways a pass goes: per row and per column),
** NaN kept to its channel, accuracy at a mean large against the spread in
** f32, the f32 sums' same bits by every path (the portable one too, which
** AVX2 hosts never take), and plans refusing the fused op by name.
*/
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "ops_norm_fused.h"

static ag_tensor *random_tensor(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape,
                                uint64_t seed)
{
    ag_rng r;
    ag_rng_seed(&r, seed);
    return ag_rand(t, &r, dt, rank, shape, -2.0, 2.0);
}

/* Batch norm written with generic ops, as ops_norm.c had it. */
static ag_tensor *composed_batch_norm(ag_tape *t, ag_tensor *x, ag_tensor *gamma,
                                      ag_tensor *beta, double eps)
{
    ag_tensor *mu = x, *v;
    int axes[3] = {3, 2, 0};
    for (int i = 0; i < 3; i++)
        mu = ag_mean_axis(t, mu, axes[i], 1);
    ag_tensor *d = ag_sub(t, x, mu);
    v = ag_mul(t, d, d);
    for (int i = 0; i < 3; i++)
        v = ag_mean_axis(t, v, axes[i], 1);
    ag_tensor *y = ag_div(t, d, ag_sqrt(t, ag_add_scalar(t, v, eps)));
    int64_t c = ag_shape(x)[1], shape[4] = {1, c, 1, 1};
    y = ag_mul(t, y, ag_reshape(t, gamma, 4, shape));
    return ag_add(t, y, ag_reshape(t, beta, 4, shape));
}

static void expect_close(const ag_tensor *a, const ag_tensor *b, double tol, const char *what)
{
    cr_assert_eq(ag_numel(a), ag_numel(b), "%s", what);
    for (int64_t i = 0; i < ag_numel(a); i++)
        cr_expect(fabs(ag_get(a, i) - ag_get(b, i)) <= tol * fmax(1.0, fabs(ag_get(b, i))),
                  "%s: element %lld is %.17g, not %.17g", what, (long long)i, ag_get(a, i),
                  ag_get(b, i));
}

/* On x of 'shape' ([N, C, H, W]). Rows of H W under 32 values take the
** column sweeps of ops_norm_fused.c, longer ones the per-row kernels. */
static void check_against_composition(const int64_t *shape)
{
    ag_tape *t = ag_tape_new();
    const int64_t c = shape[1];
    ag_tensor *x = ag_requires_grad(random_tensor(t, AG_F64, 4, shape, 1));
    ag_tensor *gamma = ag_requires_grad(random_tensor(t, AG_F64, 1, &c, 2));
    ag_tensor *beta = ag_requires_grad(random_tensor(t, AG_F64, 1, &c, 3));
    ag_tensor *w = random_tensor(t, AG_F64, 4, shape, 4);
    ag_tensor *in[3] = {x, gamma, beta}, *fused[3], *composed[3];
    ag_tensor *y = ag_batch_norm(t, x, gamma, beta, NULL, NULL, 1, 0.1, 1e-5);
    ag_tensor *z = composed_batch_norm(t, x, gamma, beta, 1e-5);
    expect_close(y, z, 1e-13, "y");
    ag_gradients(t, ag_sum(t, ag_mul(t, y, w)), NULL, 3, in, fused, 0);
    ag_gradients(t, ag_sum(t, ag_mul(t, z, w)), NULL, 3, in, composed, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const char *names[3] = {"dx", "dgamma", "dbeta"};
    for (int i = 0; i < 3; i++)
        expect_close(fused[i], composed[i], 1e-12, names[i]);
    ag_tape_free(t);
}

Test(norm_fused, batch_norm_equals_the_composition_values_and_gradients)
{
    check_against_composition((const int64_t[]){3, 4, 5, 2});
    check_against_composition((const int64_t[]){2, 3, 8, 8});
    check_against_composition((const int64_t[]){5, 7, 1, 1});
}

/* Forward and backward of a batch norm of x 'shape' (rank 2 or 4) big
** enough to be split across a pool, in f32, on 'threads' threads (0: no
** pool); the values go to 'out', n_out at most, and their count back. */
static int64_t run_on(int threads, int rank, const int64_t *shape, float *out, int64_t n_out)
{
    ag_pool *pool = threads ? ag_pool_new(threads) : NULL;
    ag_tape *t = ag_tape_new();
    ag_tape_set_pool(t, pool);
    const int64_t c = shape[1];
    ag_tensor *x = ag_requires_grad(random_tensor(t, AG_F32, rank, shape, 5));
    ag_tensor *gamma = ag_requires_grad(random_tensor(t, AG_F32, 1, &c, 6));
    ag_tensor *beta = ag_requires_grad(random_tensor(t, AG_F32, 1, &c, 7));
    ag_tensor *w = random_tensor(t, AG_F32, rank, shape, 8);
    ag_tensor *y = ag_batch_norm(t, x, gamma, beta, NULL, NULL, 1, 0.1, 1e-5);
    ag_backward(t, ag_sum(t, ag_mul(t, y, w)));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    const ag_tensor *parts[4] = {y, ag_grad(x), ag_grad(gamma), ag_grad(beta)};
    int64_t k = 0;
    for (int i = 0; i < 4; i++) {
        int64_t n = ag_numel(parts[i]);
        cr_assert_leq(k + n, n_out);
        memcpy(out + k, ag_data((ag_tensor *)parts[i]), (size_t)n * sizeof *out);
        k += n;
    }
    ag_tape_free(t);
    ag_pool_free(pool);
    return k;
}

Test(norm_fused, the_same_bits_on_any_number_of_threads)
{
    enum { N = 2 * 16 * 8 * 33 * 17 + 2 * 8 };
    static float one[N], two[N], three[N];
    /* rows of 561 values (per-row kernels), then of 1 (column sweeps) */
    const int64_t wide[4] = {16, 8, 33, 17}, narrow[2] = {200, 300};
    for (int k = 0; k < 2; k++) {
        int rank = k ? 2 : 4;
        const int64_t *shape = k ? narrow : wide;
        int64_t n = run_on(0, rank, shape, one, N);
        cr_assert_eq(run_on(2, rank, shape, two, N), n);
        cr_assert_eq(run_on(3, rank, shape, three, N), n);
        cr_expect(memcmp(one, two, (size_t)n * sizeof *one) == 0, "rank %d: 2 threads differ", rank);
        cr_expect(memcmp(one, three, (size_t)n * sizeof *one) == 0, "rank %d: 3 threads differ",
                  rank);
    }
}

Test(norm_fused, a_nan_stays_in_its_channel)
{
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_F32 : AG_F64;
        ag_tape *t = ag_tape_new();
        const int64_t shape[4] = {2, 3, 2, 2}, c = 3;
        ag_tensor *x = random_tensor(t, dt, 4, shape, 9);
        ag_set(x, 5, NAN);   /* image 0, channel 1 */
        ag_requires_grad(x);
        ag_tensor *gamma = ag_requires_grad(ag_ones(t, dt, 1, &c));
        ag_tensor *y = ag_batch_norm(t, x, gamma, NULL, NULL, NULL, 1, 0.1, 1e-5);
        ag_backward(t, ag_sum(t, y));
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        for (int64_t i = 0; i < ag_numel(x); i++) {
            bool in_channel_1 = (i / 4) % 3 == 1;
            cr_expect(isnan(ag_get(y, i)) == in_channel_1, "%s y[%lld] = %g",
                      ag_dtype_name(dt), (long long)i, ag_get(y, i));
            cr_expect(isnan(ag_get(ag_grad(x), i)) == in_channel_1, "%s dx[%lld] = %g",
                      ag_dtype_name(dt), (long long)i, ag_get(ag_grad(x), i));
        }
        for (int64_t i = 0; i < c; i++)
            cr_expect(isnan(ag_get(ag_grad(gamma), i)) == (i == 1), "%s dgamma[%lld] = %g",
                      ag_dtype_name(dt), (long long)i, ag_get(ag_grad(gamma), i));
        /* group norm: the NaN's group (channels 0-2 of image 0 with 1 group) */
        ag_tensor *g = ag_group_norm(t, x, 1, NULL, NULL, 1e-5);
        for (int64_t i = 0; i < ag_numel(x); i++)
            cr_expect(isnan(ag_get(g, i)) == (i < 12), "%s group_norm[%lld] = %g",
                      ag_dtype_name(dt), (long long)i, ag_get(g, i));
        ag_tape_free(t);
    }
}

/* Values 1e4 + 0.01 k in f32 (spaced by 10 of its ulps at 1e4): the
** normalised values match those of the same numbers in f64. */
Test(norm_fused, f32_is_accurate_at_a_large_mean)
{
    ag_tape *t = ag_tape_new();
    const int64_t shape[2] = {64, 2};
    ag_tensor *x32 = ag_zeros(t, AG_F32, 2, shape), *x64 = ag_zeros(t, AG_F64, 2, shape);
    for (int64_t i = 0; i < 128; i++) {
        double v = (double)(float)(1e4 + 0.01 * (double)((i * 37) % 64) * (i % 2 ? 3 : 1));
        ag_set(x32, i, v);
        ag_set(x64, i, v);
    }
    ag_tensor *y32 = ag_batch_norm(t, x32, NULL, NULL, NULL, NULL, 1, 0.1, 0);
    ag_tensor *y64 = ag_batch_norm(t, x64, NULL, NULL, NULL, NULL, 1, 0.1, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_close(y32, y64, 1e-6, "f32 against f64");
    ag_tape_free(t);
}

/* The same on rows of 64 values, which take the per-row kernels (the f32
** writes in f32 arithmetic, centred on the mean rounded to f32), gradients
** included: within a few f32 ulps of f64, gamma and beta away from 1 and 0. */
Test(norm_fused, f32_rows_are_accurate_at_a_large_mean)
{
    ag_tape *t = ag_tape_new();
    const int64_t shape[3] = {4, 2, 64}, c = 2, n = 4 * 2 * 64;
    ag_tensor *x[2], *y[2], *d[2][3];
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_F64 : AG_F32;
        ag_tensor *xv = ag_zeros(t, dt, 3, shape), *w = ag_zeros(t, dt, 3, shape);
        for (int64_t i = 0; i < n; i++) {
            ag_set(xv, i, (double)(float)(1e4 + 0.01 * (double)((i * 37) % 64) * (i % 2 ? 3 : 1)));
            ag_set(w, i, (double)(float)(0.25 * (double)((i * 11) % 7) - 0.5));
        }
        ag_tensor *gamma = ag_requires_grad(ag_full(t, dt, 1, &c, 1.5));
        ag_tensor *beta = ag_requires_grad(ag_full(t, dt, 1, &c, -0.75));
        x[k] = ag_requires_grad(xv);
        y[k] = ag_batch_norm(t, x[k], gamma, beta, NULL, NULL, 1, 0.1, 0);
        ag_gradients(t, ag_sum(t, ag_mul(t, y[k], w)), NULL, 3,
                     (ag_tensor *[]){x[k], gamma, beta}, d[k], 0);
    }
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    expect_close(y[0], y[1], 1e-6, "y: f32 against f64");
    expect_close(d[0][0], d[1][0], 1e-5, "dx: f32 against f64");
    expect_close(d[0][1], d[1][1], 1e-5, "dgamma: f32 against f64");
    expect_close(d[0][2], d[1][2], 1e-5, "dbeta: f32 against f64");
    ag_tape_free(t);
}

/* The statistics of the per-row path come from one pass over x shifted by
** the channel's first value: a first value far out (1e6 against a spread
** of 1) leaves them as exact as two passes would. */
Test(norm_fused, the_statistics_hold_with_an_outlier_first)
{
    ag_tape *t = ag_tape_new();
    enum { N = 2 * 64 };
    const int64_t shape[3] = {2, 1, 64};
    ag_tensor *x = random_tensor(t, AG_F64, 3, shape, 4);
    ag_set(x, 0, 1e6);
    double mean = 0, var = 0;
    for (int i = 0; i < N; i++)
        mean += ag_get(x, i) / N;
    for (int i = 0; i < N; i++)
        var += (ag_get(x, i) - mean) * (ag_get(x, i) - mean) / N;
    ag_tensor *y = ag_batch_norm(t, x, NULL, NULL, NULL, NULL, 1, 0.1, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    for (int i = 0; i < N; i++) {
        double want = (ag_get(x, i) - mean) / sqrt(var);
        cr_expect(fabs(ag_get(y, i) - want) <= 1e-12 * fmax(1.0, fabs(want)),
                  "y[%d] = %.17g, not %.17g", i, ag_get(y, i), want);
    }
    ag_tape_free(t);
}

/* The naive sums of one block of the f32 sums (a rows of n values ld
** apart), one value after another in double, and the sums of their terms'
** magnitudes, which bound any order's rounding. */
static void naive_sums2(const float *x, const float *g, int64_t a, int64_t ld, int64_t n,
                        double c, double want[2], double mag[2])
{
    want[0] = want[1] = mag[0] = mag[1] = 0;
    for (int64_t r = 0; r < a; r++)
        for (int64_t i = 0; i < n; i++) {
            double d = (double)x[r * ld + i] - c, u = g ? (double)g[r * ld + i] : d;
            want[0] += u, want[1] += d * u;
            mag[0] += fabs(u), mag[1] += fabs(d * u);
        }
}

/* x (and g, when not NULL) [A, C, B] through the f32 sums by block of 8
** images as the passes take them, shifted by each channel's first value
** without g (the statistics), by a centre with g (the gradient's sums):
** the portable path as this CPU's clone and as the baseline build, and the
** AVX2 one where there is one, give the same bits, within the rounding of
** the naive sums of them (NaN where those are NaN). */
static void check_sums_paths(const char *what, const float *x, const float *g, int64_t A,
                             int64_t C, int64_t B)
{
    const char *names[2] = {"r0", "r1"};
    for (int64_t ch = 0; ch < C; ch++)
        for (int64_t i0 = 0; i0 < A; i0 += 8) {
            int64_t rows = A - i0 < 8 ? A - i0 : 8, off = (i0 * C + ch) * B, ld = C * B;
            /* a centre with g as a mean is, not a float: x - c rounds */
            double c = g ? 1.0 / 3 : (double)x[ch * B], want[2], mag[2];
            double port[2], base[2], avx2[2];
            const float *xb = x + off, *gb = g ? g + off : NULL;
            naive_sums2(xb, gb, rows, ld, B, c, want, mag);
            cr_assert(
                agi_norm_sums2_f32(AGI_SUMS_PORTABLE, xb, gb, rows, ld, B, c, port, port + 1));
            cr_assert(
                agi_norm_sums2_f32(AGI_SUMS_BASELINE, xb, gb, rows, ld, B, c, base, base + 1));
            cr_expect(memcmp(port, base, sizeof port) == 0,
                      "%s [%lld, %lld, %lld] channel %lld images %lld+: portable %a %a, baseline "
                      "%a %a",
                      what, (long long)A, (long long)C, (long long)B, (long long)ch,
                      (long long)i0, port[0], port[1], base[0], base[1]);
            if (agi_norm_sums2_f32(AGI_SUMS_AVX2, xb, gb, rows, ld, B, c, avx2, avx2 + 1))
                cr_expect(memcmp(port, avx2, sizeof port) == 0,
                          "%s [%lld, %lld, %lld] channel %lld images %lld+: portable %a %a, AVX2 "
                          "%a %a",
                          what, (long long)A, (long long)C, (long long)B, (long long)ch,
                          (long long)i0, port[0], port[1], avx2[0], avx2[1]);
            for (int k = 0; k < 2; k++) {
                double tol = 2.0 * (double)(rows * B) * DBL_EPSILON * mag[k];
                cr_expect(isnan(want[k]) ? isnan(port[k]) : fabs(port[k] - want[k]) <= tol,
                          "%s [%lld, %lld, %lld] channel %lld images %lld+: %s = %.17g, naive "
                          "%.17g",
                          what, (long long)A, (long long)C, (long long)B, (long long)ch,
                          (long long)i0, names[k], port[k], want[k]);
            }
        }
}

/* On a CPU with AVX2 the passes never run the f32 sums' portable code,
** which every other CPU runs: here it is run and held to the same bits,
** on rows of odd lengths and of lengths not a multiple of 8 or 16 (the
** tails), several blocks of 8 images and a block cut short, values with a
** large mean and an outlier first (the shift), and a NaN. */
Test(norm_fused, f32_sums_are_the_same_bits_by_every_path)
{
    const int64_t shapes[][3] = {{1, 3, 1},  {5, 3, 7},   {8, 2, 15}, {9, 3, 17},
                                 {24, 2, 33}, {27, 3, 100}, {16, 1, 64}, {3, 2, 250}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t A = shapes[s][0], C = shapes[s][1], B = shapes[s][2], n = A * C * B;
        float *x = malloc((size_t)n * sizeof *x), *g = malloc((size_t)n * sizeof *g);
        cr_assert(x && g);
        ag_rng r;
        ag_rng_seed(&r, 100 + s);
        for (int64_t i = 0; i < n; i++) {
            x[i] = (float)(4 * ag_rng_uniform(&r) - 2);
            g[i] = (float)(2 * ag_rng_uniform(&r) - 1);
        }
        check_sums_paths("uniform", x, NULL, A, C, B);
        check_sums_paths("uniform, with g", x, g, A, C, B);
        /* a mean of 1e4 against a spread of 0.02, channel 0's first value 1e6 */
        for (int64_t i = 0; i < n; i++)
            x[i] = (float)(1e4 + 0.01 * (double)x[i]);
        x[0] = 1e6f;
        check_sums_paths("large mean, outlier first", x, NULL, A, C, B);
        check_sums_paths("large mean, outlier first, with g", x, g, A, C, B);
        /* a NaN in the last channel, in the middle image's row, at its middle (in
        ** the 16 lanes from 32 values on, else in the tail) */
        x[((A / 2) * C + C - 1) * B + B / 2] = NAN;
        check_sums_paths("a NaN", x, NULL, A, C, B);
        check_sums_paths("a NaN, with g", x, g, A, C, B);
        free(x);
        free(g);
    }
}

Test(norm_fused, plans_name_the_fused_op)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(random_tensor(t, AG_F64, 2, (int64_t[]){4, 3}, 10));
    ag_tensor *y = ag_sum(t, ag_batch_norm(t, x, NULL, NULL, NULL, NULL, 1, 0.1, 1e-5));
    cr_assert_null(ag_plan_new(t, y, 1, &x));
    cr_assert_eq(ag_tape_status(t), AG_EUNSUPPORTED);
    cr_expect(strstr(ag_tape_errmsg(t), "'standardise'"), "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}
