/*
** test_ops_conv.c: values of conv2d, pooling, flatten and the
** normalisations (issue 17). Convolution and its two gradients against a
** naive reference written here, over strides, padding, dilation, groups,
** odd sizes and batch 1, in f64 and f32, with and without a pool; small
** hand-made cases with exact results; max pooling's NaNs and ties; the
** running statistics of batch norm; and the errors, whose messages must
** name the function and the values. (Finite-difference checks of first and
** second derivatives are the cases of op_cases.h.)
*/
#include "autograd.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------- reference convolution */

typedef struct geom {
    int64_t n, c, h, w, o, kh, kw;
    int sh, sw, ph, pw, dh, dw, groups;
} geom;

static int64_t oh_of(const geom *g) { return (g->h + 2 * g->ph - g->dh * (g->kh - 1) - 1) / g->sh + 1; }
static int64_t ow_of(const geom *g) { return (g->w + 2 * g->pw - g->dw * (g->kw - 1) - 1) / g->sw + 1; }

/* Calls f(n, o, oy, ox, c, i, j, x index, w index, y index) for every
** product term of the convolution that reads a real (unpadded) element. */
#define FOR_EACH_TERM(g, BODY)                                                                     \
    do {                                                                                           \
        int64_t OH = oh_of(g), OW = ow_of(g), cg = (g)->c / (g)->groups, og = (g)->o / (g)->groups; \
        for (int64_t n = 0; n < (g)->n; n++)                                                       \
            for (int64_t o = 0; o < (g)->o; o++)                                                   \
                for (int64_t oy = 0; oy < OH; oy++)                                                \
                    for (int64_t ox = 0; ox < OW; ox++)                                            \
                        for (int64_t c = 0; c < cg; c++)                                           \
                            for (int64_t i = 0; i < (g)->kh; i++)                                  \
                                for (int64_t j = 0; j < (g)->kw; j++) {                            \
                                    int64_t y = oy * (g)->sh - (g)->ph + i * (g)->dh;              \
                                    int64_t xx = ox * (g)->sw - (g)->pw + j * (g)->dw;             \
                                    if (y < 0 || y >= (g)->h || xx < 0 || xx >= (g)->w)            \
                                        continue;                                                  \
                                    int64_t ci = (o / og) * cg + c;                                \
                                    int64_t xi = ((n * (g)->c + ci) * (g)->h + y) * (g)->w + xx;   \
                                    int64_t wi = ((o * cg + c) * (g)->kh + i) * (g)->kw + j;       \
                                    int64_t yi = ((n * (g)->o + o) * OH + oy) * OW + ox;           \
                                    BODY;                                                          \
                                }                                                                  \
    } while (0)

static ag_tensor *random_tensor(ag_tape *t, ag_dtype dt, int rank, const int64_t *shape,
                                uint64_t seed)
{
    ag_rng r;
    ag_rng_seed(&r, seed);
    ag_tensor *x = ag_rand(t, &r, AG_F64, rank, shape, -1, 1);
    /* Rounded to f32 so both dtypes see the same numbers. */
    for (int64_t i = 0; i < ag_numel(x); i++)
        ag_set(x, i, (float)ag_get(x, i));
    return dt == AG_F64 ? x : ag_cast(t, x, dt);
}

static const geom geoms[] = {
    {2, 3, 5, 4, 4, 3, 2, 1, 1, 0, 0, 1, 1, 1},
    {1, 2, 5, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {2, 2, 6, 5, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1},
    {2, 4, 4, 3, 6, 3, 2, 1, 2, 1, 0, 1, 1, 2},
    {1, 3, 4, 4, 3, 2, 2, 2, 1, 0, 1, 1, 2, 3},
    {2, 1, 7, 5, 2, 3, 3, 3, 2, 2, 1, 1, 1, 1},
    {3, 8, 9, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* a gemm larger than one tile */
    {1, 2, 3, 3, 2, 3, 3, 1, 1, 0, 0, 1, 1, 1},   /* the kernel covers the input: 1x1 out */
    /* "same" convolutions (stride 1, OW == W), whose taps unfold and fold as
    ** runs of the flat plane: uneven kernels, and padding as wide as the image */
    {2, 2, 6, 5, 3, 5, 3, 1, 1, 2, 1, 1, 1, 1},
    {2, 2, 3, 1, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {1, 1, 2, 2, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1},
    /* 1.2 MB of unfolded columns per image in f64 */
    {9, 16, 32, 32, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    /* 16 and more input channels a group: the input gradient as a correlation
    ** of g with the flipped kernel (ops_conv.c's flip_applies), over padding
    ** 0 to K-1 with k 3 and 5, uneven kernels and paddings, groups, batch 1,
    ** planes that are not "same"; padding K (the fold again) beside them */
    {2, 16, 6, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {1, 16, 5, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {2, 16, 4, 5, 4, 3, 3, 1, 1, 2, 2, 1, 1, 1},
    {1, 16, 7, 6, 4, 5, 5, 1, 1, 0, 1, 1, 1, 1},
    {2, 16, 6, 7, 4, 5, 5, 1, 1, 2, 2, 1, 1, 1},
    {1, 16, 5, 5, 4, 5, 5, 1, 1, 4, 3, 1, 1, 1},
    {2, 16, 6, 5, 4, 5, 3, 1, 1, 2, 0, 1, 1, 1},
    {2, 32, 5, 5, 8, 3, 3, 1, 1, 1, 1, 1, 1, 2},
    {1, 48, 4, 4, 6, 3, 5, 1, 1, 1, 2, 1, 1, 3},
    {1, 16, 3, 3, 2, 3, 3, 1, 1, 3, 3, 1, 1, 1},
};

static void check_conv(const geom *g, ag_dtype dt, ag_pool *pool)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_pool(t, pool);
    ag_tensor *x = ag_requires_grad(random_tensor(t, dt, 4, (int64_t[]){g->n, g->c, g->h, g->w}, 1));
    ag_tensor *w = ag_requires_grad(
        random_tensor(t, dt, 4, (int64_t[]){g->o, g->c / g->groups, g->kh, g->kw}, 2));
    ag_tensor *b = ag_requires_grad(random_tensor(t, dt, 1, (int64_t[]){g->o}, 3));
    ag_tensor *y = ag_conv2d(t, x, w, b, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->groups);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    int64_t OH = oh_of(g), OW = ow_of(g);
    cr_assert_eq(ag_rank(y), 4);
    cr_assert(ag_shape(y)[0] == g->n && ag_shape(y)[1] == g->o && ag_shape(y)[2] == OH &&
              ag_shape(y)[3] == OW);
    int64_t ny = ag_numel(y);
    double *ref = calloc((size_t)ny, sizeof *ref), *gx = calloc((size_t)ag_numel(x), sizeof *gx);
    double *gw = calloc((size_t)ag_numel(w), sizeof *gw), *gb = calloc((size_t)g->o, sizeof *gb);
    cr_assert(ref && gx && gw && gb);
    for (int64_t k = 0; k < ny; k++)
        ref[k] = ag_get(b, (k / (OH * OW)) % g->o);
    FOR_EACH_TERM(g, ref[yi] += ag_get(x, xi) * ag_get(w, wi));
    double tol = dt == AG_F64 ? 1e-12 : 1e-5;
    for (int64_t k = 0; k < ny; k++)
        cr_assert(fabs(ag_get(y, k) - ref[k]) <= tol * (1 + fabs(ref[k])),
                  "groups %d: y[%lld] = %.12g, reference %.12g", g->groups, (long long)k,
                  ag_get(y, k), ref[k]);
    /* Gradients of sum(s * y) for a fixed s: the reference's adjoints. */
    ag_tensor *s = random_tensor(t, dt, 4, ag_shape(y), 4);
    ag_tensor *in[3] = {x, w, b}, *gr[3];
    ag_gradients(t, ag_sum(t, ag_mul(t, s, y)), NULL, 3, in, gr, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    FOR_EACH_TERM(g, (gx[xi] += ag_get(s, yi) * ag_get(w, wi), gw[wi] += ag_get(s, yi) * ag_get(x, xi)));
    for (int64_t k = 0; k < ny; k++)
        gb[(k / (OH * OW)) % g->o] += ag_get(s, k);
    for (int64_t k = 0; k < ag_numel(x); k++)
        cr_assert(fabs(ag_get(gr[0], k) - gx[k]) <= tol * (1 + fabs(gx[k])), "dx[%lld]: %.12g vs %.12g",
                  (long long)k, ag_get(gr[0], k), gx[k]);
    /* each weight's gradient sums n OH OW terms: f32's error grows with them */
    double wtol = tol * fmax(4, dt == AG_F32 ? (double)(g->n * OH * OW) / 256 : 4);
    for (int64_t k = 0; k < ag_numel(w); k++)
        cr_assert(fabs(ag_get(gr[1], k) - gw[k]) <= wtol * (1 + fabs(gw[k])),
                  "dw[%lld]: %.12g vs %.12g", (long long)k, ag_get(gr[1], k), gw[k]);
    for (int64_t k = 0; k < g->o; k++)
        cr_assert(fabs(ag_get(gr[2], k) - gb[k]) <= tol * (1 + fabs(gb[k])) * 4);
    free(ref), free(gx), free(gw), free(gb);
    ag_tape_free(t);
}

Test(conv2d, matches_the_reference_and_its_adjoints)
{
    for (size_t i = 0; i < sizeof geoms / sizeof geoms[0]; i++) {
        check_conv(&geoms[i], AG_F64, NULL);
        check_conv(&geoms[i], AG_F32, NULL);
    }
}

Test(conv2d, a_pool_gives_the_same_values)
{
    ag_pool *pool = ag_pool_new(2);
    cr_assert_not_null(pool);
    for (size_t i = 0; i < sizeof geoms / sizeof geoms[0]; i++)
        check_conv(&geoms[i], AG_F64, pool);
    ag_pool_free(pool);
}

/* conv2d(x, w, b) and the gradients of sum(s * y) on the tape's pool, as
** fresh f32 buffers (caller frees): y, then dx, dw, db. */
static float *conv_bits(const geom *g, ag_pool *pool, int64_t *count)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_pool(t, pool);
    ag_tensor *x = ag_requires_grad(random_tensor(t, AG_F32, 4, (int64_t[]){g->n, g->c, g->h, g->w}, 1));
    ag_tensor *w = ag_requires_grad(
        random_tensor(t, AG_F32, 4, (int64_t[]){g->o, g->c / g->groups, g->kh, g->kw}, 2));
    ag_tensor *b = ag_requires_grad(random_tensor(t, AG_F32, 1, (int64_t[]){g->o}, 3));
    ag_tensor *y = ag_conv2d(t, x, w, b, g->sh, g->sw, g->ph, g->pw, g->dh, g->dw, g->groups);
    ag_tensor *s = random_tensor(t, AG_F32, 4, ag_shape(y), 4);
    ag_tensor *in[3] = {x, w, b}, *gr[3];
    ag_gradients(t, ag_sum(t, ag_mul(t, s, y)), NULL, 3, in, gr, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tensor *parts[4] = {y, gr[0], gr[1], gr[2]};
    *count = 0;
    for (int i = 0; i < 4; i++)
        *count += ag_numel(parts[i]);
    float *bits = malloc((size_t)*count * sizeof *bits), *at = bits;
    cr_assert_not_null(bits);
    for (int i = 0; i < 4; i++)
        for (int64_t k = 0; k < ag_numel(parts[i]); k++)
            *at++ = (float)ag_get(parts[i], k);
    ag_tape_free(t);
    return bits;
}

/* The images share out among the threads (and the weight gradient sums
** them in fixed chunks): the bits must not depend on how many. */
Test(conv2d, the_same_bits_on_any_threads)
{
    static const geom shapes[] = {
        {9, 4, 9, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2},   /* groups, an image a chunk */
        /* the weight gradient's chunks (ops_conv.c's weight_chunk_images) uneven:
        ** 18 of a small gradient (the last of one image), 5 of a large one */
        {35, 2, 5, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {9, 64, 4, 4, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},
        {2, 3, 8, 8, 4, 3, 3, 2, 2, 1, 1, 1, 1, 1},   /* fewer images than 3 threads */
        {64, 1, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* fashion_cnn's first layer */
        {9, 16, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1},   /* its second: the flipped kernel */
        {5, 32, 6, 5, 8, 3, 3, 1, 1, 2, 0, 1, 1, 2},      /* the same with groups */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        int64_t count, other;
        float *want = conv_bits(&shapes[i], NULL, &count);
        for (int threads = 2; threads <= 3; threads++) {
            ag_pool *pool = ag_pool_new(threads);
            cr_assert_not_null(pool);
            float *got = conv_bits(&shapes[i], pool, &other);
            cr_assert_eq(other, count);
            cr_assert(memcmp(got, want, (size_t)count * sizeof *got) == 0,
                      "shape %zu: %d threads change the bits", i, threads);
            free(got);
            ag_pool_free(pool);
        }
        free(want);
    }
}

/* x = 1..16 as [1,1,4,4] */
static ag_tensor *ramp(ag_tape *t, int64_t c)
{
    return ag_reshape(t, ag_arange(t, AG_F64, 1, 1 + 16 * (double)c, 1), 4,
                      (int64_t[]){1, c, 4, 4});
}

static void expect_values(ag_tensor *y, int n, const double *want)
{
    cr_assert_eq(ag_numel(y), n);
    for (int i = 0; i < n; i++)
        cr_expect(ag_get(y, i) == want[i] || (isnan(want[i]) && isnan(ag_get(y, i))),
                  "element %d is %.17g, not %.17g", i, ag_get(y, i), want[i]);
}

Test(conv2d, hand_made_cases)
{
    ag_tape *t = ag_tape_new();
    /* A diagonal difference: x[r][c] - x[r+1][c+1] = -5 everywhere, + bias 2. */
    ag_tensor *w = ag_tensor_from(t, AG_F64, 4, (int64_t[]){1, 1, 2, 2}, (double[]){1, 0, 0, -1});
    ag_tensor *y = ag_conv2d(t, ramp(t, 1), w, ag_full(t, AG_F64, 1, (int64_t[]){1}, 2), 1, 1, 0,
                             0, 1, 1, 1);
    expect_values(y, 9, (double[]){-3, -3, -3, -3, -3, -3, -3, -3, -3});
    /* A 3x3 box, stride 2, pad 1: window sums of the valid part. */
    ag_tensor *box = ag_ones(t, AG_F64, 4, (int64_t[]){1, 1, 3, 3});
    y = ag_conv2d(t, ramp(t, 1), box, NULL, 2, 2, 1, 1, 1, 1, 1);
    expect_values(y, 4, (double[]){14, 30, 57, 99});
    /* Dilation 3 picks the corners of the 4x4: 1 + 4 + 13 + 16. */
    y = ag_conv2d(t, ramp(t, 1), ag_ones(t, AG_F64, 4, (int64_t[]){1, 1, 2, 2}), NULL, 1, 1, 0, 0,
                  3, 3, 1);
    expect_values(y, 1, (double[]){34});
    /* Two groups, 1x1 kernels (2, -1): each output channel sees its own. */
    ag_tensor *w2 = ag_tensor_from(t, AG_F64, 4, (int64_t[]){2, 1, 1, 1}, (double[]){2, -1});
    y = ag_conv2d(t, ramp(t, 2), w2, NULL, 3, 3, 0, 0, 1, 1, 2);
    expect_values(y, 8, (double[]){2, 8, 26, 32, -17, -20, -29, -32});
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* ------------------------------------------------------------- pooling */

Test(pool, max_pool_values_and_gradient)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_requires_grad(ramp(t, 1));
    ag_tensor *y = ag_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
    expect_values(y, 4, (double[]){6, 8, 14, 16});
    ag_backward(t, ag_sum(t, y));
    expect_values(ag_grad(x), 16, (double[]){0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1});
    /* Padding is never chosen, even where everything real is negative. */
    ag_tensor *neg = ag_mul_scalar(t, ramp(t, 1), -1);
    y = ag_max_pool2d(t, neg, 3, 3, 2, 2, 1, 1);
    expect_values(y, 4, (double[]){-1, -2, -5, -6});
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(pool, max_pool_nan_wins_and_ties_go_to_the_first)
{
    ag_tape *t = ag_tape_new();
    double v[16] = {1, 2, 5, 5, NAN, 3, 5, 5, 0, 0, 7, 9, 0, 0, NAN, NAN};
    ag_tensor *x = ag_requires_grad(ag_tensor_from(t, AG_F64, 4, (int64_t[]){1, 1, 4, 4}, v));
    ag_tensor *y = ag_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
    expect_values(y, 4, (double[]){NAN, 5, 0, NAN});
    ag_tensor *g;
    ag_gradients(t, y, ag_ones(t, AG_F64, 4, ag_shape(y)), 1, &x, &g, 0);
    /* The NaN at (1,0); the first 5 at (0,2); the first 0 at (2,0); the first NaN at (3,2). */
    expect_values(g, 16, (double[]){0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0});
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* The winner of window (oy, ox) of a 2x2 pooling of plane x (row length w),
** by the rule: the first NaN, else the first larger value. */
static int64_t winner_2x2(const double *x, int64_t w, int64_t oy, int64_t ox)
{
    int64_t best = 2 * oy * w + 2 * ox;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            int64_t at = (2 * oy + i) * w + 2 * ox + j;
            if (!isnan(x[best]) && (x[at] > x[best] || isnan(x[at])))
                best = at;
        }
    return best;
}

static ag_tensor *pool_2x2(ag_tape *t, ag_tensor *const *x, void *ud)
{
    (void)ud;
    return ag_max_pool2d(t, x[0], 2, 2, 2, 2, 0, 0);
}

/* The 2x2 window of stride 2 has loops of its own (ops_pool.c): rows of
** many windows, of 4 to 7 (SSE2 blocks of four), of a few, of one; odd
** sizes; ties and NaNs everywhere; its gradient (a scatter), the gradient's
** gradient and the JVP (gathers). */
Test(pool, max_pool_2x2_matches_the_rule_on_every_row_length)
{
    static const int64_t sizes[][2] = {{5, 23}, {4, 22}, {3, 16}, {4, 14}, {5, 11},
                                       {2, 9},  {6, 5},  {2, 2},  {7, 3}};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int f32 = 0; f32 < 2; f32++) {
            ag_dtype dt = f32 ? AG_F32 : AG_F64;
            int64_t n = 2, c = 3, h = sizes[si][0], w = sizes[si][1], oh = h / 2, ow = w / 2;
            int64_t shape[4] = {n, c, h, w}, numel = n * c * h * w;
            ag_tape *t = ag_tape_new();
            ag_rng r;
            ag_rng_seed(&r, 7 + si);
            double *xv = malloc((size_t)numel * sizeof *xv);
            cr_assert_not_null(xv);
            for (int64_t k = 0; k < numel; k++) {   /* three values: ties are common */
                double u = ag_rng_uniform(&r);
                xv[k] = u < 0.05 ? NAN : floor(u * 3);
            }
            ag_tensor *x = ag_requires_grad(ag_cast(t, ag_tensor_from(t, AG_F64, 4, shape, xv), dt));
            ag_tensor *y = ag_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
            ag_tensor *s = ag_requires_grad(random_tensor(t, dt, 4, ag_shape(y), 5));
            ag_tensor *gx;
            ag_gradients(t, ag_sum(t, ag_mul(t, s, y)), NULL, 1, &x, &gx, 1);
            /* d/ds <u, gx> = u gathered at the winners, as is the JVP along u */
            ag_tensor *u = random_tensor(t, dt, 4, shape, 6), *gs, *jv;
            ag_gradients(t, ag_sum(t, ag_mul(t, u, gx)), NULL, 1, &s, &gs, 0);
            ag_jvp(t, pool_2x2, NULL, 1, &x, &u, &jv);
            cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
            cr_assert_eq(ag_numel(y), n * c * oh * ow);
            double *want_gx = calloc((size_t)numel, sizeof *want_gx);
            cr_assert_not_null(want_gx);
            for (int64_t p = 0; p < n * c; p++)
                for (int64_t oy = 0; oy < oh; oy++)
                    for (int64_t ox = 0; ox < ow; ox++) {
                        int64_t o = (p * oh + oy) * ow + ox;
                        int64_t at = p * h * w + winner_2x2(xv + p * h * w, w, oy, ox);
                        double want = xv[at];
                        cr_assert(ag_get(y, o) == want || (isnan(want) && isnan(ag_get(y, o))),
                                  "%lldx%lld: y[%lld] = %g, not %g", (long long)h, (long long)w,
                                  (long long)o, ag_get(y, o), want);
                        want_gx[at] = ag_get(s, o);
                        cr_assert_eq(ag_get(gs, o), ag_get(u, at), "%lldx%lld: gather at %lld",
                                     (long long)h, (long long)w, (long long)o);
                        cr_assert_eq(ag_get(jv, o), ag_get(u, at), "%lldx%lld: jvp at %lld",
                                     (long long)h, (long long)w, (long long)o);
                    }
            for (int64_t k = 0; k < numel; k++)
                cr_assert_eq(ag_get(gx, k), want_gx[k], "%lldx%lld: dx[%lld] = %g, not %g",
                             (long long)h, (long long)w, (long long)k, ag_get(gx, k), want_gx[k]);
            free(want_gx);
            free(xv);
            ag_tape_free(t);
        }
}

/* The 2x2 pooling's gradient writes each element of its plane once (no
** memset first): g's own bits at the winners (-0, infinities and NaN
** included) and +0 everywhere else, the odd row and column too, over an
** arena left full of other numbers by earlier passes. */
Test(pool, max_pool_2x2_gradient_writes_every_element_once)
{
    for (int f32 = 0; f32 < 2; f32++) {
        ag_dtype dt = f32 ? AG_F32 : AG_F64;
        int64_t shape[4] = {1, 2, 5, 7}, gshape[4] = {1, 2, 2, 3}, numel = 70;
        ag_tape *t = ag_tape_new();
        for (int pass = 0; pass < 2; pass++) {   /* both parities of the header arenas */
            for (int k = 0; k < 64; k++)
                ag_full(t, dt, 4, shape, -7);
            ag_tape_reset(t);
        }
        double xv[70], gv[12] = {-0.0, NAN, INFINITY, -INFINITY, 1.5, -2, 3, -0.0, 4, 5, -6, 7};
        for (int k = 0; k < 70; k++)   /* distinct values: the winner moves around the window */
            xv[k] = (double)((k * 37) % 70);
        ag_tensor *x = ag_requires_grad(ag_cast(t, ag_tensor_from(t, AG_F64, 4, shape, xv), dt));
        ag_tensor *y = ag_max_pool2d(t, x, 2, 2, 2, 2, 0, 0);
        ag_tensor *gy = ag_cast(t, ag_tensor_from(t, AG_F64, 4, gshape, gv), dt), *gx;
        ag_gradients(t, y, gy, 1, &x, &gx, 0);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        double want[70] = {0};
        bool winner[70] = {false};
        for (int64_t p = 0; p < 2; p++)
            for (int64_t oy = 0; oy < 2; oy++)
                for (int64_t ox = 0; ox < 3; ox++) {
                    int64_t at = p * 35 + winner_2x2(xv + p * 35, 7, oy, ox);
                    want[at] = gv[(p * 2 + oy) * 3 + ox];
                    winner[at] = true;
                }
        for (int64_t k = 0; k < numel; k++) {
            double v = ag_get(gx, k);
            bool same = isnan(want[k]) ? isnan(v) : v == want[k] && !signbit(v) == !signbit(want[k]);
            cr_assert(same, "%s: dx[%lld] = %g, not %g (%s)", f32 ? "f32" : "f64", (long long)k, v,
                      want[k], winner[k] ? "a winner" : "+0");
        }
        ag_tape_free(t);
    }
}

Test(pool, avg_pool_counts_padding)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *y = ag_avg_pool2d(t, ramp(t, 1), 2, 2, 2, 2, 0, 0);
    expect_values(y, 4, (double[]){3.5, 5.5, 11.5, 13.5});
    /* Pad 1: the corner window holds x[0][0] = 1 and three padded zeros. */
    y = ag_avg_pool2d(t, ramp(t, 1), 2, 2, 2, 2, 1, 1);
    cr_assert_eq(ag_numel(y), 9);
    cr_expect_float_eq(ag_get(y, 0), 0.25, 1e-15);
    cr_expect_float_eq(ag_get(y, 1), (2 + 3) / 4.0, 1e-15);
    cr_expect_float_eq(ag_get(y, 4), (6 + 7 + 10 + 11) / 4.0, 1e-15);
    /* Two channels pooled apart. */
    y = ag_avg_pool2d(t, ramp(t, 2), 4, 4, 1, 1, 0, 0);
    expect_values(y, 2, (double[]){8.5, 24.5});
    y = ag_global_avg_pool2d(t, ramp(t, 2));
    cr_assert_eq(ag_rank(y), 4);
    cr_assert(ag_shape(y)[0] == 1 && ag_shape(y)[1] == 2 && ag_shape(y)[2] == 1 &&
              ag_shape(y)[3] == 1);
    expect_values(y, 2, (double[]){8.5, 24.5});
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(pool, flatten_shapes)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_zeros(t, AG_F32, 4, (int64_t[]){2, 3, 4, 5});
    ag_tensor *y = ag_flatten(t, x, 1);
    cr_assert(ag_rank(y) == 2 && ag_shape(y)[0] == 2 && ag_shape(y)[1] == 60);
    y = ag_flatten(t, x, -2);
    cr_assert(ag_rank(y) == 3 && ag_shape(y)[1] == 3 && ag_shape(y)[2] == 20);
    y = ag_flatten(t, x, 0);
    cr_assert(ag_rank(y) == 1 && ag_shape(y)[0] == 120);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_flatten(t, x, 4);
    cr_assert_eq(ag_tape_status(t), AG_EINVAL);
    cr_assert(strstr(ag_tape_errmsg(t), "ag_flatten") && strstr(ag_tape_errmsg(t), "4"));
    ag_tape_free(t);
}

/* ------------------------------------------------------- normalisation */

Test(norm, batch_norm_training_and_running_statistics)
{
    ag_tape *t = ag_tape_new();
    /* x [4, 2]: channel 0 is 1..4, channel 1 is 10 * that. */
    ag_tensor *x = ag_tensor_from(t, AG_F64, 2, (int64_t[]){4, 2},
                                  (double[]){1, 10, 2, 20, 3, 30, 4, 40});
    ag_tensor *rm = ag_zeros(t, AG_F64, 1, (int64_t[]){2});
    ag_tensor *rv = ag_ones(t, AG_F64, 1, (int64_t[]){2});
    ag_tensor *gamma = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){2, 1});
    ag_tensor *beta = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){0, -1});
    ag_tensor *y = ag_batch_norm(t, x, gamma, beta, rm, rv, 1, 0.1, 0);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    /* mean 2.5, biased variance 1.25 (x 100 for channel 1) */
    for (int i = 0; i < 4; i++) {
        double z = (i + 1 - 2.5) / sqrt(1.25);
        cr_expect_float_eq(ag_get(y, 2 * i), 2 * z, 1e-14);
        cr_expect_float_eq(ag_get(y, 2 * i + 1), z - 1, 1e-14);
    }
    /* Running: 0.9 r + 0.1 s, with the unbiased variance (5/3, 500/3). */
    cr_expect_float_eq(ag_get(rm, 0), 0.25, 1e-15);
    cr_expect_float_eq(ag_get(rm, 1), 2.5, 1e-14);
    cr_expect_float_eq(ag_get(rv, 0), 0.9 + 0.1 * 5.0 / 3.0, 1e-14);
    cr_expect_float_eq(ag_get(rv, 1), 0.9 + 0.1 * 500.0 / 3.0, 1e-12);
    /* Evaluation uses them. */
    y = ag_batch_norm(t, x, NULL, NULL, rm, rv, 0, 0.1, 1e-5);
    cr_expect_float_eq(ag_get(y, 0), (1 - 0.25) / sqrt(ag_get(rv, 0) + 1e-5), 1e-14);
    cr_expect_float_eq(ag_get(y, 7), (40 - 2.5) / sqrt(ag_get(rv, 1) + 1e-5), 1e-12);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(norm, batch_norm_nchw_normalises_each_channel)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = random_tensor(t, AG_F64, 4, (int64_t[]){3, 2, 4, 5}, 9);
    ag_tensor *y = ag_batch_norm(t, x, NULL, NULL, NULL, NULL, 1, 0.1, 0);
    for (int64_t c = 0; c < 2; c++) {
        double s = 0, s2 = 0;
        for (int64_t n = 0; n < 3; n++)
            for (int64_t k = 0; k < 20; k++) {
                double v = ag_get(y, (n * 2 + c) * 20 + k);
                s += v, s2 += v * v;
            }
        cr_expect_float_eq(s / 60, 0, 1e-13);
        cr_expect_float_eq(s2 / 60, 1, 1e-12);
    }
    ag_tape_free(t);
}

Test(norm, layer_and_group_norm_agree_with_their_definitions)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = random_tensor(t, AG_F64, 4, (int64_t[]){2, 4, 3, 2}, 11);
    /* group norm with one group is layer norm over C, H, W */
    ag_tensor *a = ag_group_norm(t, x, 1, NULL, NULL, 1e-5);
    ag_tensor *b = ag_layer_norm(t, x, 3, NULL, NULL, 1e-5);
    for (int64_t i = 0; i < ag_numel(x); i++)
        cr_expect_float_eq(ag_get(a, i), ag_get(b, i), 1e-13);
    /* group norm with C groups is batch norm of each image alone (instance norm) */
    ag_tensor *gamma = random_tensor(t, AG_F64, 1, (int64_t[]){4}, 12);
    ag_tensor *beta = random_tensor(t, AG_F64, 1, (int64_t[]){4}, 13);
    a = ag_group_norm(t, x, 4, gamma, beta, 1e-5);
    for (int64_t n = 0; n < 2; n++) {
        ag_tensor *img = ag_slice(t, x, 0, n, n + 1, 1);
        ag_tensor *flat = ag_reshape(t, img, 3, (int64_t[]){1, 4, 6});
        ag_tensor *ref = ag_batch_norm(t, ag_reshape(t, ag_transpose(t, flat, 0, 2), 2,
                                                     (int64_t[]){6, 4}),
                                       gamma, beta, NULL, NULL, 1, 0.1, 1e-5);
        for (int64_t c = 0; c < 4; c++)
            for (int64_t k = 0; k < 6; k++)
                cr_expect_float_eq(ag_get(a, (n * 4 + c) * 6 + k), ag_get(ref, k * 4 + c), 1e-13);
    }
    /* layer norm's affine part is per trailing element */
    ag_tensor *lx = ag_tensor_from(t, AG_F64, 2, (int64_t[]){1, 2}, (double[]){1, 3});
    ag_tensor *lg = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){2, 3});
    ag_tensor *lb = ag_tensor_from(t, AG_F64, 1, (int64_t[]){2}, (double[]){1, 0});
    ag_tensor *ly = ag_layer_norm(t, lx, 1, lg, lb, 0);
    expect_values(ly, 2, (double[]){-1, 3});
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

/* ------------------------------------------------------------- errors */

/* Runs 'expr' on a fresh tape; the tape must hold 'code' and the message
** every one of the NULL-terminated fragments. */
#define EXPECT_ERROR(code, expr, ...)                                                              \
    do {                                                                                           \
        ag_tape *t = ag_tape_new();                                                                \
        ag_tensor *x4 = ag_zeros(t, AG_F64, 4, (int64_t[]){2, 4, 5, 5});                           \
        ag_tensor *w4 = ag_zeros(t, AG_F64, 4, (int64_t[]){6, 2, 3, 3});                           \
        (void)x4, (void)w4;                                                                        \
        ag_tensor *r = (expr);                                                                     \
        cr_expect_eq(ag_tape_status(t), code, "%s: status %d", #expr, ag_tape_status(t));          \
        cr_expect_eq(ag_rank(r), 0, "%s gave a result", #expr);                                    \
        const char *frags[] = {__VA_ARGS__, NULL};                                                 \
        for (int k = 0; frags[k]; k++)                                                             \
            cr_expect(strstr(ag_tape_errmsg(t), frags[k]), "%s: '%s' lacks '%s'", #expr,           \
                      ag_tape_errmsg(t), frags[k]);                                                \
        ag_tape_free(t);                                                                           \
    } while (0)

Test(errors, conv2d_refuses_what_does_not_fit)
{
    EXPECT_ERROR(AG_ESHAPE, ag_conv2d(t, ag_zeros(t, AG_F64, 3, (int64_t[]){4, 5, 5}), w4, NULL,
                                      1, 1, 0, 0, 1, 1, 2),
                 "ag_conv2d", "[4,5,5]", "rank 4");
    EXPECT_ERROR(AG_ESHAPE, ag_conv2d(t, x4, w4, NULL, 1, 1, 0, 0, 1, 1, 1), "ag_conv2d",
                 "4 channels", "[6,2,3,3]", "groups 1", "takes 2");
    EXPECT_ERROR(AG_EINVAL, ag_conv2d(t, x4, ag_zeros(t, AG_F64, 4, (int64_t[]){5, 1, 3, 3}),
                                      NULL, 1, 1, 0, 0, 1, 1, 4),
                 "ag_conv2d", "groups 4", "5 output");
    EXPECT_ERROR(AG_ESHAPE, ag_conv2d(t, x4, w4, NULL, 1, 1, 0, 0, 3, 1, 2), "ag_conv2d",
                 "3x3", "dilated 7x3", "5x5");
    EXPECT_ERROR(AG_ESHAPE, ag_conv2d(t, x4, ag_zeros(t, AG_F64, 4, (int64_t[]){6, 2, 8, 3}),
                                      NULL, 1, 1, 1, 1, 1, 1, 2),
                 "ag_conv2d", "8x3", "7x7");
    EXPECT_ERROR(AG_EINVAL, ag_conv2d(t, x4, w4, NULL, 0, 1, 0, 0, 1, 1, 2), "ag_conv2d",
                 "stride (0, 1)");
    EXPECT_ERROR(AG_EINVAL, ag_conv2d(t, x4, w4, NULL, 1, 1, -1, 0, 1, 1, 2), "ag_conv2d",
                 "padding (-1, 0)");
    EXPECT_ERROR(AG_EINVAL, ag_conv2d(t, x4, w4, NULL, 1, 1, 0, 0, 1, 0, 2), "ag_conv2d",
                 "dilation (1, 0)");
    EXPECT_ERROR(AG_EINVAL, ag_conv2d(t, x4, w4, NULL, 1, 1, 0, 0, 1, 1, 0), "ag_conv2d",
                 "groups 0");
    EXPECT_ERROR(AG_ESHAPE, ag_conv2d(t, x4, w4, ag_zeros(t, AG_F64, 1, (int64_t[]){4}), 1, 1, 0,
                                      0, 1, 1, 2),
                 "ag_conv2d", "bias [4]", "[6]");
    EXPECT_ERROR(AG_EDTYPE, ag_conv2d(t, x4, ag_zeros(t, AG_F32, 4, (int64_t[]){6, 2, 3, 3}),
                                      NULL, 1, 1, 0, 0, 1, 1, 2),
                 "ag_conv2d");
    EXPECT_ERROR(AG_EINVAL, ag_conv2d(t, x4, NULL, NULL, 1, 1, 0, 0, 1, 1, 2), "ag_conv2d");
}

Test(errors, pooling_refuses_what_does_not_fit)
{
    EXPECT_ERROR(AG_ESHAPE, ag_max_pool2d(t, ag_zeros(t, AG_F64, 2, (int64_t[]){5, 5}), 2, 2, 2,
                                          2, 0, 0),
                 "ag_max_pool2d", "[5,5]", "rank 4");
    EXPECT_ERROR(AG_EINVAL, ag_max_pool2d(t, x4, 2, 2, 0, 2, 0, 0), "ag_max_pool2d",
                 "stride (0, 2)");
    EXPECT_ERROR(AG_EINVAL, ag_max_pool2d(t, x4, 2, 2, 2, 2, 2, 0), "ag_max_pool2d",
                 "padding (2, 0)", "2x2");
    EXPECT_ERROR(AG_ESHAPE, ag_max_pool2d(t, x4, 6, 2, 1, 1, 0, 0), "ag_max_pool2d", "6x2",
                 "5x5");
    EXPECT_ERROR(AG_EINVAL, ag_avg_pool2d(t, x4, 0, 2, 1, 1, 0, 0), "ag_avg_pool2d",
                 "kernel 0x2");
    EXPECT_ERROR(AG_ESHAPE, ag_avg_pool2d(t, x4, 2, 8, 1, 1, 0, 1), "ag_avg_pool2d", "2x8",
                 "5x7");
    EXPECT_ERROR(AG_ESHAPE, ag_global_avg_pool2d(t, ag_zeros(t, AG_F64, 1, (int64_t[]){3})),
                 "ag_global_avg_pool2d", "[3]");
}

Test(errors, normalisations_refuse_what_does_not_fit)
{
    EXPECT_ERROR(AG_ESHAPE, ag_batch_norm(t, x4, ag_zeros(t, AG_F64, 1, (int64_t[]){3}), NULL,
                                          NULL, NULL, 1, 0.1, 1e-5),
                 "ag_batch_norm", "gamma [3]", "[4]");
    EXPECT_ERROR(AG_EINVAL, ag_batch_norm(t, x4, NULL, NULL, NULL, NULL, 0, 0.1, 1e-5),
                 "ag_batch_norm", "evaluation");
    EXPECT_ERROR(AG_ESHAPE, ag_batch_norm(t, ag_zeros(t, AG_F64, 4, (int64_t[]){1, 4, 1, 1}),
                                          NULL, NULL, NULL, NULL, 1, 0.1, 1e-5),
                 "ag_batch_norm", "[1,4,1,1]", "1 value");
    EXPECT_ERROR(AG_EINVAL, ag_batch_norm(t, x4, NULL, NULL, NULL, NULL, 1, 1.5, 1e-5),
                 "ag_batch_norm", "momentum 1.5");
    EXPECT_ERROR(AG_EINVAL, ag_group_norm(t, x4, 3, NULL, NULL, 1e-5), "ag_group_norm",
                 "groups 3", "4 channels");
    EXPECT_ERROR(AG_EINVAL, ag_layer_norm(t, x4, 5, NULL, NULL, 1e-5), "ag_layer_norm",
                 "normalized_ndims 5");
    EXPECT_ERROR(AG_ESHAPE, ag_layer_norm(t, x4, 2, ag_zeros(t, AG_F64, 1, (int64_t[]){5}), NULL,
                                          1e-5),
                 "ag_layer_norm", "gamma [5]", "last 2 dims");
}
