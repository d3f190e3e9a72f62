/*
** test_tensor.c: making tensors (from arrays, constants, ranges, identity,
** random), the accessors, names, parameters, printing, the RNG's golden
** values and the shape helpers under them.
*/
#include "internal.h"

#include <criterion/criterion.h>
#include <math.h>
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

static void assert_ok(void)
{
    cr_assert_eq(ag_tape_status(tape), AG_OK, "tape error: %s", ag_tape_errmsg(tape));
}

/* x's elements equal want[0..n) exactly (values we store are representable). */
static void assert_values(const ag_tensor *x, int64_t n, const double *want)
{
    cr_assert_eq(ag_numel(x), n, "numel %lld, want %lld", (long long)ag_numel(x), (long long)n);
    for (int64_t i = 0; i < n; i++)
        cr_assert_eq(ag_get(x, i), want[i], "element %lld is %g, want %g", (long long)i,
                     ag_get(x, i), want[i]);
}

static void assert_shape(const ag_tensor *x, int rank, const int64_t *shape)
{
    cr_assert_eq(ag_rank(x), rank, "rank %d, want %d", ag_rank(x), rank);
    for (int i = 0; i < rank; i++)
        cr_assert_eq(ag_shape(x)[i], shape[i], "dim %d is %lld, want %lld", i,
                     (long long)ag_shape(x)[i], (long long)shape[i]);
}

/* ------------------------------------------------------------ creation */

TestSuite(tensor, .init = setup, .fini = teardown);

Test(tensor, from_copies_f64_data)
{
    double src[6] = {1, 2, 3, 4, 5, 6};
    ag_tensor *x = ag_tensor_from(tape, AG_F64, 2, (int64_t[]){2, 3}, src);
    assert_ok();
    assert_shape(x, 2, (int64_t[]){2, 3});
    cr_assert_eq(ag_dtype_of(x), AG_F64);
    cr_assert_neq(ag_data(x), (void *)src, "the tensor must own a copy");
    src[0] = 100;
    src[5] = -7;
    assert_values(x, 6, (double[]){1, 2, 3, 4, 5, 6});
    cr_assert_eq(((double *)ag_data(x))[4], 5.0);
    cr_assert_not(ag_requires_grad_of(x), "a tensor made from data is a constant");
}

Test(tensor, from_copies_f32_data)
{
    float src[4] = {0.5f, -1.25f, 3.0f, 1e-3f};
    ag_tensor *x = ag_tensor_from(tape, AG_F32, 1, (int64_t[]){4}, src);
    assert_ok();
    cr_assert_eq(ag_dtype_of(x), AG_F32);
    src[1] = 9.0f;
    const float *v = ag_data(x);
    cr_assert_eq(v[0], 0.5f);
    cr_assert_eq(v[1], -1.25f);
    cr_assert_eq(v[3], 1e-3f);
    cr_assert_eq(ag_get(x, 3), (double)1e-3f, "ag_get widens the f32 value exactly");
}

/* The typed constructors: the compiler checks that the data's type is the
** dtype's (a double array passed to ag_tensor_from(t, AG_F32, ...) was read
** as floats, with status OK). */
Test(tensor, from_typed_constructors)
{
    const float f[3] = {0.5f, -1.25f, 1e-3f};
    const double d[3] = {0.1, -2.5, 1e300};
    ag_tensor *x = ag_tensor_from_f32(tape, 1, (int64_t[]){3}, f);
    ag_tensor *y = ag_tensor_from_f64(tape, 1, (int64_t[]){3}, d);
    assert_ok();
    cr_assert_eq(ag_dtype_of(x), AG_F32);
    cr_assert_eq(ag_dtype_of(y), AG_F64);
    assert_values(x, 3, (double[]){0.5, -1.25, (double)1e-3f});
    assert_values(y, 3, d);
    cr_assert(ag_is_nil(ag_tensor_from_f64(tape, 1, (int64_t[]){3}, NULL)));
    cr_assert_str_eq(ag_tape_errmsg(tape), "ag_tensor_from_f64: data is NULL for shape [3]");
    ag_tape_reset(tape);
    cr_assert(ag_is_nil(ag_tensor_from_f32(tape, 1, (int64_t[]){-1}, f)));
    cr_assert(strncmp(ag_tape_errmsg(tape), "ag_tensor_from_f32: ", 20) == 0, "%s",
              ag_tape_errmsg(tape));
    ag_tape_reset(tape);
}

Test(tensor, every_rank_up_to_max)
{
    int64_t shape[AG_MAX_DIMS];
    for (int i = 0; i < AG_MAX_DIMS; i++)
        shape[i] = 2;
    for (int rank = 0; rank <= AG_MAX_DIMS; rank++) {
        for (int d = 0; d < 2; d++) {
            ag_dtype dt = d ? AG_F64 : AG_F32;
            ag_tensor *x = ag_ones(tape, dt, rank, rank ? shape : NULL);
            assert_ok();
            cr_assert_eq(ag_rank(x), rank);
            cr_assert_eq(ag_numel(x), (int64_t)1 << rank);
            cr_assert_eq(ag_dtype_of(x), dt);
            cr_assert_eq(ag_get(x, ag_numel(x) - 1), 1.0);
            if (rank > 0)
                cr_assert_eq(ag_dim(x, -1), 2);
        }
    }
}

Test(tensor, zeros_ones_full_scalar)
{
    int64_t shape[] = {2, 2};
    assert_values(ag_zeros(tape, AG_F64, 2, shape), 4, (double[]){0, 0, 0, 0});
    assert_values(ag_ones(tape, AG_F32, 2, shape), 4, (double[]){1, 1, 1, 1});
    assert_values(ag_full(tape, AG_F64, 2, shape, -2.5), 4, (double[]){-2.5, -2.5, -2.5, -2.5});
    ag_tensor *s = ag_scalar(tape, AG_F64, 0.125);
    assert_ok();
    cr_assert_eq(ag_rank(s), 0);
    cr_assert_eq(ag_numel(s), 1);
    cr_assert_eq(ag_item(s), 0.125);
}

Test(tensor, empty_has_the_shape_and_takes_what_is_written)
{
    ag_tensor *x = ag_empty(tape, AG_F32, 2, (int64_t[]){2, 3});
    assert_ok();
    assert_shape(x, 2, (int64_t[]){2, 3});
    cr_assert_eq(ag_dtype_of(x), AG_F32);
    float *d = ag_data(x);
    for (int i = 0; i < 6; i++)
        d[i] = (float)i * 0.5f;
    assert_values(x, 6, (double[]){0, 0.5, 1, 1.5, 2, 2.5});
    ag_tensor *bad = ag_empty(tape, AG_F64, 1, (int64_t[]){-1});
    cr_assert_eq(ag_tape_status(tape), AG_ESHAPE);
    cr_assert(strstr(ag_tape_errmsg(tape), "ag_empty"), "%s", ag_tape_errmsg(tape));
    cr_assert_eq(ag_numel(bad), 0);
}

Test(tensor, zero_sized_dims)
{
    ag_tensor *x = ag_zeros(tape, AG_F64, 2, (int64_t[]){3, 0});
    assert_ok();
    assert_shape(x, 2, (int64_t[]){3, 0});
    cr_assert_eq(ag_numel(x), 0);
    cr_assert(isnan(ag_get(x, 0)), "no element 0 in an empty tensor");
    ag_tensor *y = ag_tensor_from(tape, AG_F32, 1, (int64_t[]){0}, NULL);
    assert_ok();
    cr_assert_eq(ag_numel(y), 0, "NULL data is fine when there is nothing to copy");
}

Test(tensor, arange_positive_step)
{
    ag_tensor *x = ag_arange(tape, AG_F64, 0, 5, 1);
    assert_ok();
    assert_shape(x, 1, (int64_t[]){5});
    assert_values(x, 5, (double[]){0, 1, 2, 3, 4});
    assert_values(ag_arange(tape, AG_F64, 1, 2, 0.25), 4, (double[]){1, 1.25, 1.5, 1.75});
    /* stop is excluded even when it is not a multiple of the step away */
    assert_values(ag_arange(tape, AG_F32, -1, 1.5, 1), 3, (double[]){-1, 0, 1});
    assert_ok();
}

Test(tensor, arange_negative_step)
{
    assert_values(ag_arange(tape, AG_F64, 5, 0, -1), 5, (double[]){5, 4, 3, 2, 1});
    assert_values(ag_arange(tape, AG_F64, 1, -1, -0.5), 4, (double[]){1, 0.5, 0, -0.5});
    assert_ok();
}

Test(tensor, arange_empty_ranges)
{
    const double cases[][3] = {{0, 0, 1}, {3, 1, 1}, {1, 3, -1}, {2, 2, -0.5}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ag_tensor *x = ag_arange(tape, AG_F64, cases[i][0], cases[i][1], cases[i][2]);
        assert_ok();
        cr_assert_not(ag_is_nil(x), "case %zu", i);
        assert_shape(x, 1, (int64_t[]){0});
        cr_assert_eq(ag_numel(x), 0, "case %zu", i);
    }
}

Test(tensor, eye)
{
    ag_tensor *x = ag_eye(tape, AG_F64, 3);
    assert_ok();
    assert_shape(x, 2, (int64_t[]){3, 3});
    assert_values(x, 9, (double[]){1, 0, 0, 0, 1, 0, 0, 0, 1});
    ag_tensor *e = ag_eye(tape, AG_F32, 0);
    assert_ok();
    assert_shape(e, 2, (int64_t[]){0, 0});
}

Test(tensor, detach_copies_and_drops_grad)
{
    ag_tensor *x = ag_requires_grad(ag_arange(tape, AG_F64, 0, 3, 1));
    ag_tensor *y = ag_mul(tape, x, x);
    ag_tensor *d = ag_detach(tape, y);
    assert_ok();
    cr_assert(ag_requires_grad_of(y));
    cr_assert_not(ag_requires_grad_of(d));
    cr_assert_neq(ag_data(d), ag_data(y));
    assert_values(d, 3, (double[]){0, 1, 4});
    cr_assert_str_eq(ag_op_name(d), "");
}

/* ----------------------------------------------------------- accessors */

Test(tensor, accessors)
{
    ag_tensor *x = ag_arange(tape, AG_F64, 0, 24, 1);
    ag_tensor *y = ag_reshape(tape, x, 3, (int64_t[]){2, 3, 4});
    assert_ok();
    cr_assert_eq(ag_rank(y), 3);
    cr_assert_eq(ag_numel(y), 24);
    cr_assert_eq(ag_dim(y, 0), 2);
    cr_assert_eq(ag_dim(y, 2), 4);
    cr_assert_eq(ag_dim(y, -1), 4);
    cr_assert_eq(ag_dim(y, -3), 2);
    cr_assert_eq(ag_dim(y, 3), 0, "out of range axes read as 0");
    cr_assert_eq(ag_dim(y, -4), 0);
    cr_assert(isnan(ag_get(y, 24)));
    cr_assert(isnan(ag_get(y, -1)));
    cr_assert(isnan(ag_item(y)), "ag_item needs exactly one element");
    ag_set(y, 23, -1);
    ag_set(y, 24, 99);   /* out of range: ignored */
    cr_assert_eq(ag_get(y, 23), -1.0);
    cr_assert_str_eq(ag_op_name(y), "reshape");
    cr_assert_str_eq(ag_op_name(x), "");
    cr_assert_eq(ag_num_inputs(y), 1);
    cr_assert_eq(ag_input(y, 0), x);
    cr_assert_null(ag_input(y, 1));
    cr_assert_null(ag_input(y, -1));
    cr_assert_null(ag_grad(y), "no gradient before a backward pass");
    cr_assert_eq(ag_grad_item(y), 0.0);
    ag_fill(y, 2.0);
    cr_assert_eq(ag_get(y, 0), 2.0);
}

Test(tensor, scalar_helpers)
{
    ag_tensor *x = ag_requires_grad(ag_scalar(tape, AG_F64, 3.0));
    cr_assert_eq(ag_item(x), 3.0);
    cr_assert_eq(ag_grad_item(x), 0.0);
    ag_tensor *y = ag_mul(tape, x, ag_scalar(tape, AG_F64, 4.0));
    cr_assert_eq(ag_item(y), 12.0);
    ag_backward(tape, y);
    assert_ok();
    cr_assert_eq(ag_grad_item(x), 4.0);
    cr_assert_eq(ag_grad_item(y), 1.0);
    ag_tensor *f = ag_scalar(tape, AG_F32, 0.1);
    cr_assert_eq(ag_item(f), (double)0.1f, "an f32 scalar stores the rounded value");
}

Test(tensor, names)
{
    ag_tensor *x = ag_zeros(tape, AG_F64, 1, (int64_t[]){2});
    cr_assert_str_eq(ag_name(x), "");
    char name[8] = "weight";
    ag_set_name(x, name);
    name[0] = 'X';   /* the name is a copy */
    cr_assert_str_eq(ag_name(x), "weight");
    ag_set_name(x, "bias");
    cr_assert_str_eq(ag_name(x), "bias");
    ag_set_name(x, NULL);
    cr_assert_str_eq(ag_name(x), "bias", "a NULL name changes nothing");
    assert_ok();
}

/* Names longer than 63 bytes keep their first 63, on tapes and parameters. */
Test(tensor, names_truncate_at_63_bytes)
{
    char longname[101];
    for (int i = 0; i < 100; i++)
        longname[i] = (char)('a' + i % 26);
    longname[100] = '\0';
    ag_tensor *x = ag_zeros(tape, AG_F64, 0, NULL);
    ag_tensor *p = ag_param_new(AG_F32, 1, (int64_t[]){3});
    cr_assert_not_null(p);
    ag_tensor *tensors[] = {x, p, ag_grad(p)};
    for (int k = 0; k < 3; k++) {
        ag_set_name(tensors[k], longname);
        cr_assert_eq(strlen(ag_name(tensors[k])), 63, "tensor %d", k);
        cr_assert(strncmp(ag_name(tensors[k]), longname, 63) == 0, "tensor %d", k);
    }
    char exact[64];
    memcpy(exact, longname, 63);
    exact[63] = '\0';
    ag_set_name(p, exact);
    cr_assert_str_eq(ag_name(p), exact, "63 bytes fit whole");
    ag_set_name(p, "w");
    cr_assert_str_eq(ag_name(p), "w");
    cr_assert_eq(ag_get(p, 0), 0.0, "naming does not touch the values");
    assert_ok();
    ag_param_free(p);
}

/* ---------------------------------------------------------- parameters */

Test(tensor, params)
{
    ag_tensor *p = ag_param_new(AG_F64, 2, (int64_t[]){2, 3});
    cr_assert_not_null(p);
    cr_assert(ag_is_param(p));
    cr_assert(ag_requires_grad_of(p));
    assert_shape(p, 2, (int64_t[]){2, 3});
    assert_values(p, 6, (double[]){0, 0, 0, 0, 0, 0});
    ag_tensor *g = ag_grad(p);
    cr_assert_not_null(g, "a parameter always has a gradient buffer");
    assert_shape(g, 2, (int64_t[]){2, 3});
    assert_values(g, 6, (double[]){0, 0, 0, 0, 0, 0});
    cr_assert_not(ag_is_param(g));
    cr_assert_neq(ag_data(g), ag_data(p));
    ag_set(p, 4, 7);
    cr_assert_eq(((double *)ag_data(p))[4], 7.0);
    cr_assert_str_eq(ag_op_name(p), "");

    ag_tensor *s = ag_param_scalar(AG_F32, 1.5);
    cr_assert_not_null(s);
    cr_assert_eq(ag_rank(s), 0);
    cr_assert_eq(ag_item(s), 1.5);
    cr_assert_eq(ag_dtype_of(s), AG_F32);
    ag_param_free(s);
    ag_param_free(p);
    ag_param_free(NULL);
}

Test(tensor, param_view_borrows_buffers)
{
    double value[4] = {1, 2, 3, 4}, grad[4] = {0};
    ag_tensor *p = ag_param_view(NULL, NULL, AG_F64, 1, (int64_t[]){4}, value, grad);
    cr_assert_not_null(p);
    cr_assert_eq(ag_data(p), (void *)value);
    cr_assert_eq(ag_data(ag_grad(p)), (void *)grad);
    value[2] = 30;
    cr_assert_eq(ag_get(p, 2), 30.0);
    ag_tensor *y = ag_sum(tape, ag_mul(tape, p, p));
    ag_backward(tape, y);
    assert_ok();
    cr_assert_eq(grad[0], 2.0);
    cr_assert_eq(grad[2], 60.0);
    ag_zero_grad(p);
    cr_assert_eq(grad[2], 0.0);
    ag_param_free(p);
    cr_assert_eq(value[3], 4.0, "freeing a view leaves the caller's buffers alone");
    cr_assert_null(ag_param_view(NULL, NULL, AG_F64, 1, (int64_t[]){4}, NULL, grad));
    cr_assert_null(ag_param_view(NULL, NULL, AG_F64, 1, (int64_t[]){4}, value, NULL));
}

Test(tensor, invalid_params_are_null)
{
    cr_assert_null(ag_param_new((ag_dtype)7, 1, (int64_t[]){2}));
    cr_assert_null(ag_param_new(AG_F64, AG_MAX_DIMS + 1, (int64_t[AG_MAX_DIMS + 1]){1}));
    cr_assert_null(ag_param_new(AG_F64, -1, NULL));
    cr_assert_null(ag_param_new(AG_F64, 2, NULL));
    cr_assert_null(ag_param_new(AG_F64, 2, (int64_t[]){2, -1}));
    cr_assert_null(ag_param_new(AG_F64, 2, (int64_t[]){INT64_MAX, INT64_MAX}));
}

Test(tensor, requires_grad_marks_leaves)
{
    ag_tensor *x = ag_ones(tape, AG_F64, 1, (int64_t[]){2});
    cr_assert_not(ag_requires_grad_of(x));
    cr_assert_eq(ag_requires_grad(x), x, "returns its argument so it chains");
    cr_assert(ag_requires_grad_of(x));
    cr_assert_null(ag_requires_grad(NULL));
    assert_ok();
}

/* ---------------------------------------------------------------- random */

/* xoshiro256** seeded by splitmix64 with seed 42: the first outputs of the
** reference algorithm, computed offline, so that any platform difference in
** the integer arithmetic shows. */
Test(rng, golden_values_seed_42)
{
    static const uint64_t golden[] = {
        0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
        0xecb8ad4703b360a1ull, 0xfde6dc7fe2ec5e64ull, 0xc50da53101795238ull,
    };
    ag_rng r;
    ag_rng_seed(&r, 42);
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        uint64_t v = ag_rng_next(&r);
        cr_assert_eq(v, golden[i], "output %zu is 0x%016llx, want 0x%016llx", i,
                     (unsigned long long)v, (unsigned long long)golden[i]);
    }
    ag_rng_seed(&r, 42);
    /* uniform is the top 53 bits scaled by 2^-53 */
    cr_assert_eq(ag_rng_uniform(&r), (double)(0x15780b2e0c2ec716ull >> 11) * 0x1.0p-53);
    double second = ag_rng_uniform(&r);
    cr_assert_float_eq(second, 0.3789802506626686, 1e-16);
}

Test(rng, same_seed_same_numbers)
{
    ag_rng a, b, c;
    ag_rng_seed(&a, 7);
    ag_rng_seed(&b, 7);
    ag_rng_seed(&c, 8);
    int same_as_other_seed = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ag_rng_next(&a);
        cr_assert_eq(x, ag_rng_next(&b));
        same_as_other_seed += x == ag_rng_next(&c);
    }
    cr_assert_eq(same_as_other_seed, 0);
    ag_rng_seed(&a, 3);
    ag_rng_seed(&b, 3);
    for (int i = 0; i < 101; i++)   /* odd count: the polar method's spare is in play */
        cr_assert_eq(ag_rng_normal(&a), ag_rng_normal(&b));
    ag_rng_seed(&a, 3);
    ag_rng_normal(&a);   /* leaves a spare */
    ag_rng_seed(&a, 3);
    ag_rng_seed(&b, 3);
    cr_assert_eq(ag_rng_normal(&a), ag_rng_normal(&b), "seeding forgets the spare");
}

Test(rng, uniform_in_unit_interval)
{
    ag_rng r;
    ag_rng_seed(&r, 42);
    enum { N = 100000 };
    double sum = 0, sum2 = 0, lo = 1, hi = 0;
    for (int i = 0; i < N; i++) {
        double u = ag_rng_uniform(&r);
        cr_assert(u >= 0.0 && u < 1.0, "sample %d is %.17g", i, u);
        sum += u;
        sum2 += u * u;
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    double mean = sum / N, var = sum2 / N - mean * mean;
    cr_assert_float_eq(mean, 0.5, 0.01);
    cr_assert_float_eq(var, 1.0 / 12.0, 0.005);
    cr_assert_lt(lo, 1e-3);
    cr_assert_gt(hi, 1 - 1e-3);
}

Test(rng, normal_moments)
{
    ag_rng r;
    ag_rng_seed(&r, 42);
    enum { N = 100000 };
    double sum = 0, sum2 = 0;
    int beyond_2sd = 0;
    for (int i = 0; i < N; i++) {
        double z = ag_rng_normal(&r);
        cr_assert(isfinite(z));
        sum += z;
        sum2 += z * z;
        beyond_2sd += fabs(z) > 2;
    }
    double mean = sum / N, sd = sqrt(sum2 / N - mean * mean);
    cr_assert_float_eq(mean, 0.0, 0.02);
    cr_assert_float_eq(sd, 1.0, 0.02);
    /* 4.55% of a normal lies beyond two standard deviations */
    cr_assert_float_eq((double)beyond_2sd / N, 0.0455, 0.005);
}

Test(rng, below_is_in_range_and_covers_it)
{
    ag_rng r;
    ag_rng_seed(&r, 1);
    int seen[10] = {0};
    for (int i = 0; i < 10000; i++) {
        uint64_t v = ag_rng_below(&r, 10);
        cr_assert_lt(v, 10);
        seen[v]++;
    }
    for (int k = 0; k < 10; k++)
        cr_assert(seen[k] > 800 && seen[k] < 1200, "value %d seen %d times", k, seen[k]);
    cr_assert_eq(ag_rng_below(&r, 0), 0);
    cr_assert_eq(ag_rng_below(&r, 1), 0);
}

Test(rng, random_tensors, .init = setup, .fini = teardown)
{
    ag_rng r1, r2;
    ag_rng_seed(&r1, 42);
    ag_rng_seed(&r2, 42);
    int64_t shape[] = {100, 1000};
    ag_tensor *a = ag_rand(tape, &r1, AG_F64, 2, shape, -2, 3);
    ag_tensor *b = ag_rand(tape, &r2, AG_F64, 2, shape, -2, 3);
    assert_ok();
    assert_shape(a, 2, shape);
    double sum = 0;
    for (int64_t i = 0; i < ag_numel(a); i++) {
        double v = ag_get(a, i);
        cr_assert(v >= -2 && v < 3, "element %lld is %g", (long long)i, v);
        cr_assert_eq(v, ag_get(b, i), "same seed, same tensor");
        sum += v;
    }
    cr_assert_float_eq(sum / 100000, 0.5, 0.02);

    ag_tensor *n = ag_randn(tape, &r1, AG_F32, 2, shape, 2.0, 3.0);
    assert_ok();
    cr_assert_eq(ag_dtype_of(n), AG_F32);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < ag_numel(n); i++) {
        double v = ag_get(n, i);
        s += v;
        s2 += v * v;
    }
    double mean = s / 100000, sd = sqrt(s2 / 100000 - mean * mean);
    cr_assert_float_eq(mean, 2.0, 0.05);
    cr_assert_float_eq(sd, 3.0, 0.05);
    cr_assert_not(ag_requires_grad_of(n));
}

Test(rng, fill_in_place)
{
    ag_tensor *p = ag_param_new(AG_F64, 1, (int64_t[]){1000});
    ag_rng r;
    ag_rng_seed(&r, 5);
    ag_fill_uniform(p, &r, 1, 2);
    for (int64_t i = 0; i < 1000; i++)
        cr_assert(ag_get(p, i) >= 1 && ag_get(p, i) < 2);
    ag_fill_normal(p, &r, 0, 0);
    cr_assert_eq(ag_get(p, 999), 0.0, "std 0 gives the mean");
    ag_fill(p, 4);
    cr_assert_eq(ag_get(p, 0), 4.0);
    ag_fill_uniform(NULL, &r, 0, 1);
    ag_fill_uniform(p, NULL, 0, 1);
    cr_assert_eq(ag_get(p, 0), 4.0, "no rng, no change");
    ag_param_free(p);
}

/* -------------------------------------------------------------- printing */

static const char *show(const ag_tensor *x)
{
    static char buf[512];
    int n = ag_snprint(buf, sizeof buf, x);
    cr_assert_eq((size_t)n, strlen(buf), "returns the length it wrote");
    return buf;
}

TestSuite(print, .init = setup, .fini = teardown);

Test(print, scalar)
{
    cr_assert_str_eq(show(ag_scalar(tape, AG_F64, 2.5)), "tensor(f64, [], 2.5)");
    cr_assert_str_eq(show(ag_scalar(tape, AG_F64, 1.0 / 3.0)), "tensor(f64, [], 0.33333333)");
    cr_assert_str_eq(show(ag_scalar(tape, AG_F64, -1e-12)), "tensor(f64, [], -1e-12)");
}

Test(print, matrix_f64)
{
    double v[] = {1, 2, 3, 4, 5, 6.5};
    ag_tensor *x = ag_tensor_from(tape, AG_F64, 2, (int64_t[]){2, 3}, v);
    cr_assert_str_eq(show(x), "tensor(f64, [2,3], [[1, 2, 3], [4, 5, 6.5]])");
}

Test(print, f32_uses_six_digits)
{
    float v[] = {0.1f, -2.5f, 1.0f / 3.0f};
    ag_tensor *x = ag_tensor_from(tape, AG_F32, 1, (int64_t[]){3}, v);
    cr_assert_str_eq(show(x), "tensor(f32, [3], [0.1, -2.5, 0.333333])");
}

Test(print, named)
{
    ag_tensor *x = ag_arange(tape, AG_F64, 1, 3, 1);
    ag_set_name(x, "w");
    cr_assert_str_eq(show(x), "tensor(w, f64, [2], [1, 2])");
    ag_tensor *p = ag_param_scalar(AG_F64, -4);
    ag_set_name(p, "bias");
    cr_assert_str_eq(show(p), "tensor(bias, f64, [], -4)");
    ag_param_free(p);
}

Test(print, empty_and_rank3)
{
    cr_assert_str_eq(show(ag_arange(tape, AG_F64, 0, 0, 1)), "tensor(f64, [0], [])");
    ag_tensor *x = ag_reshape(tape, ag_arange(tape, AG_F64, 0, 8, 1), 3, (int64_t[]){2, 2, 2});
    cr_assert_str_eq(show(x), "tensor(f64, [2,2,2], [[[0, 1], [2, 3]], [[4, 5], [6, 7]]])");
}

Test(print, long_tensors_are_summarised)
{
    cr_assert_str_eq(show(ag_arange(tape, AG_F64, 0, 2000, 1)),
                     "tensor(f64, [2000], [0, 1, 2, ..., 1997, 1998, 1999])");
    ag_tensor *m = ag_reshape(tape, ag_arange(tape, AG_F64, 0, 2000, 1), 2, (int64_t[]){1000, 2});
    cr_assert_str_eq(show(m), "tensor(f64, [1000,2], [[0, 1], [2, 3], [4, 5], ..., "
                              "[1994, 1995], [1996, 1997], [1998, 1999]])");
    /* up to 1000 elements everything is shown */
    char buf[8192];
    int n = ag_snprint(buf, sizeof buf, ag_arange(tape, AG_F64, 0, 1000, 1));
    cr_assert_eq((size_t)n, strlen(buf));
    cr_assert_null(strstr(buf, "..."));
    cr_assert_not_null(strstr(buf, ", 500, 501, "));
}

Test(print, nil_and_null)
{
    cr_assert_str_eq(show(NULL), "tensor(nil)");
    cr_assert_str_eq(show(agi_nil(tape)), "tensor(nil)");
}

Test(print, snprintf_semantics)
{
    ag_tensor *x = ag_arange(tape, AG_F64, 1, 4, 1);
    const char *full = "tensor(f64, [3], [1, 2, 3])";
    int len = (int)strlen(full);
    char buf[11];
    memset(buf, 'Z', sizeof buf);
    cr_assert_eq(ag_snprint(buf, 10, x), len, "returns the untruncated length");
    cr_assert_str_eq(buf, "tensor(f6");
    cr_assert_eq(buf[10], 'Z', "nothing written past n");
    buf[0] = 'Q';
    cr_assert_eq(ag_snprint(buf, 0, x), len);
    cr_assert_eq(buf[0], 'Q', "n == 0 writes nothing");
    cr_assert_eq(ag_snprint(NULL, 0, x), len);
    cr_assert_eq(ag_snprint(buf, 1, x), len);
    cr_assert_str_eq(buf, "");
    char exact[64];
    cr_assert_eq(ag_snprint(exact, (size_t)len + 1, x), len);
    cr_assert_str_eq(exact, full);
    cr_assert_eq(ag_snprint(exact, (size_t)len, x), len);
    cr_assert_eq(strlen(exact), (size_t)len - 1, "one byte short loses the last character");
}

Test(print, to_stream)
{
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    ag_print(f, ag_arange(tape, AG_F32, 0, 2, 1));
    ag_print(f, NULL);
    ag_print(NULL, NULL);
    rewind(f);
    char line[128];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "tensor(f32, [2], [0, 1])\n");
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_assert_str_eq(line, "tensor(nil)\n");
    fclose(f);
}

/* ---------------------------------------------------------------- shapes */

Test(shape, broadcast_rules)
{
    int rank;
    int64_t out[AG_MAX_DIMS];
    cr_assert(agi_broadcast_shape(2, (int64_t[]){2, 3}, 1, (int64_t[]){3}, &rank, out));
    cr_assert_eq(rank, 2);
    cr_assert(out[0] == 2 && out[1] == 3);
    cr_assert(agi_broadcast_shape(3, (int64_t[]){4, 1, 3}, 2, (int64_t[]){5, 1}, &rank, out));
    cr_assert(rank == 3 && out[0] == 4 && out[1] == 5 && out[2] == 3);
    cr_assert(agi_broadcast_shape(0, NULL, 1, (int64_t[]){0}, &rank, out));
    cr_assert(rank == 1 && out[0] == 0);
    cr_assert_not(agi_broadcast_shape(2, (int64_t[]){2, 3}, 1, (int64_t[]){4}, &rank, out));
}

/* ag_where broadcasts in two steps, writing the result over its first input:
** a longer second shape must not read dims already overwritten. */
Test(shape, broadcast_into_its_own_input)
{
    int64_t s[AG_MAX_DIMS] = {3};
    int rank;
    cr_assert(agi_broadcast_shape(1, s, 2, (int64_t[]){2, 3}, &rank, s));
    cr_assert_eq(rank, 2);
    cr_assert(s[0] == 2 && s[1] == 3, "got [%lld,%lld]", (long long)s[0], (long long)s[1]);
    int64_t u[AG_MAX_DIMS] = {4, 1};
    cr_assert(agi_broadcast_shape(2, u, 4, (int64_t[]){7, 6, 1, 5}, &rank, u));
    cr_assert(rank == 4 && u[0] == 7 && u[1] == 6 && u[2] == 4 && u[3] == 5);
}

Test(shape, where_broadcasts_a_longer_third_shape, .init = setup, .fini = teardown)
{
    ag_tensor *mask = ag_tensor_from(tape, AG_F64, 1, (int64_t[]){3}, (double[]){1, 0, 1});
    ag_tensor *a = ag_full(tape, AG_F64, 1, (int64_t[]){3}, 7);
    ag_tensor *b = ag_arange(tape, AG_F64, 0, 6, 1);
    b = ag_reshape(tape, b, 2, (int64_t[]){2, 3});
    ag_tensor *w = ag_where(tape, mask, a, b);
    assert_ok();
    assert_shape(w, 2, (int64_t[]){2, 3});
    assert_values(w, 6, (double[]){7, 1, 7, 7, 4, 7});
}

Test(shape, strings_and_axes)
{
    char buf[64];
    cr_assert_eq(agi_shape_str(buf, sizeof buf, 3, (int64_t[]){2, 30, 4}), 8);
    cr_assert_str_eq(buf, "[2,30,4]");
    cr_assert_eq(agi_shape_str(buf, sizeof buf, 0, NULL), 2);
    cr_assert_str_eq(buf, "[]");
    cr_assert_eq(agi_shape_str(buf, 4, 2, (int64_t[]){100, 200}), 9, "snprintf's count");
    cr_assert_str_eq(buf, "[10");
    cr_assert_eq(agi_norm_axis(-1, 3), 2);
    cr_assert_eq(agi_norm_axis(2, 3), 2);
    cr_assert_eq(agi_norm_axis(3, 3), -1);
    cr_assert_eq(agi_norm_axis(-4, 3), -1);
    cr_assert_eq(agi_norm_axis(0, 0), -1);
}

Test(shape, dtype_and_status_strings)
{
    cr_assert_eq(ag_dtype_size(AG_F32), 4);
    cr_assert_eq(ag_dtype_size(AG_F64), 8);
    cr_assert_str_eq(ag_dtype_name(AG_F32), "f32");
    cr_assert_str_eq(ag_dtype_name(AG_F64), "f64");
    cr_assert_str_eq(ag_dtype_name((ag_dtype)9), "invalid dtype");
    cr_assert_str_eq(ag_status_str(AG_OK), "ok");
    cr_assert_str_eq(ag_status_str(AG_ESHAPE), "shape mismatch");
    cr_assert_str_eq(ag_status_str(AG_STATUS_COUNT), "unknown status");
    cr_assert_str_eq(ag_status_str((ag_status)-1), "unknown status");
    for (int s = 0; s < AG_STATUS_COUNT; s++)
        for (int u = s + 1; u < AG_STATUS_COUNT; u++)
            cr_assert_str_neq(ag_status_str((ag_status)s), ag_status_str((ag_status)u));
}

Test(rng, null_generator_does_not_crash)
{
    ag_rng_seed(NULL, 1);
    cr_assert_eq(ag_rng_next(NULL), 0);
    cr_assert_eq(ag_rng_uniform(NULL), 0.0);
    cr_assert_eq(ag_rng_below(NULL, 5), 0);
    cr_assert(isnan(ag_rng_normal(NULL)));
}
