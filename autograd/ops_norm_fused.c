/*
** ops_norm_fused.c: standardisation as three fused ops, for batch and group
** normalisation (ops_norm.c). x is viewed as [a, c, b] and each middle
** index c is standardised over its a * b values:
**
**   standardise(x, gamma, beta)    y = xhat gamma[c] + beta[c],  xhat = (x - mean_c) rstd_c
**   standardise_grad(g, x, gamma)  J^T (gamma g) = gamma rstd (g - mean_c g - xhat mean_c(g xhat))
**   standardise_sums(g, x)         [sum_c g xhat; sum_c g], the gradients of gamma and beta
**
** The Jacobian J of x -> xhat is symmetric, so standardise_grad is both the
** VJP and the JVP of standardise in x, and its own VJP in g; standardise is
** the VJP of standardise_sums in g. Only the dependence of standardise_grad
** on x (a Hessian of the standardisation) is written with generic ops, on
** the second-order path alone.
**
** Statistics are computed once per x, in double: the sums of x and of its
** squares shifted by a value of each channel, in one pass (accurate when the
** mean is large against the spread, as two passes are; the short rows'
** column sweeps take two passes: the mean, then squared deviations); every
** op on the same x shares them (agi_norm_geom). A pass is
** a reduction per c, one task per c summing its rows in a fixed order, or a
** write per row of b values (short rows are swept as columns instead); both
** run on the tape's pool with the same bits on any number of threads. The
** passes serve ops_norm_affine.c's affine map too.
*/
#include "ops_norm_fused.h"
#include "kernels/kernels.h"
#include "kernels/simd_clones.h"

#include <math.h>
#include <string.h>

/* Each op's result carries its x's geometry and where its gamma and beta
** are among its inputs (-1: absent). */
typedef struct norm_node {
    const agi_norm_geom *geom;
    int8_t gamma, beta;
} norm_node;

/* ------------------------------------------------------------ row kernels */

/* Sums in LANES lanes added in a fixed order at the end: a loop that
** vectorises (a single chain would not) with the same bits on every run and
** in every clone (AGK_SIMD_CLONES: AVX2 and AVX-512 beside the baseline).
** Sixteen lanes are four chains of AVX2 vectors of doubles: an addition
** takes 3 cycles on Zen 3, so with the two chains of eight lanes the loop
** waited on them, at half the speed. */
enum { LANES = 16 };

static double lanes_total(const double *s)
{
    double h[LANES / 2];
    for (int k = 0; k < LANES / 2; k++)
        h[k] = s[k] + s[k + LANES / 2];
    return ((h[0] + h[1]) + (h[2] + h[3])) + ((h[4] + h[5]) + (h[6] + h[7]));
}

/* Two sums of a channel in one pass over its a rows of n values, ld apart
** (lanes kept across the rows, the tail of each row in a sum of its own):
** with g, r0 = sum g and r1 = sum (x - c) g (the gradient's, c the mean);
** without, r0 = sum (x - c) and r1 = sum (x - c)^2 (the statistics, c a
** value of the channel). GCC does not vectorise two chains of lanes in one
** loop (it keeps one in memory, element by element), so where the compiler
** has vector types the lanes are four explicit vectors of four doubles per
** sum, lane k holding elements k mod 16 as in the plain C below, which
** other compilers build: the same operations in the same order, the same
** bits, in every clone. */
#if defined(__GNUC__) && (defined(__clang__) || __GNUC__ >= 9)
typedef double lanes_vd __attribute__((vector_size(32)));
typedef float lanes_vf __attribute__((vector_size(16)));
/* (macros: a function returning a vector changes the ABI with the target) */
#define vload_f32(p)                                                                               \
    __extension__({                                                                                \
        lanes_vf v_;                                                                               \
        memcpy(&v_, (p), sizeof v_);                                                               \
        __builtin_convertvector(v_, lanes_vd);                                                     \
    })
#define vload_f64(p)                                                                               \
    __extension__({                                                                                \
        lanes_vd v_;                                                                               \
        memcpy(&v_, (p), sizeof v_);                                                               \
        v_;                                                                                        \
    })
#define SUMS2_BODY(S)                                                                              \
    lanes_vd cv = {c, c, c, c}, z = {0, 0, 0, 0};                                                 \
    lanes_vd a0 = z, a1 = z, a2 = z, a3 = z, b0 = z, b1 = z, b2 = z, b3 = z;                       \
    double t0 = 0, t1 = 0;                                                                         \
    for (int64_t r = 0; r < a; r++, x += ld, g = g ? g + ld : NULL) {                              \
        int64_t i = 0;                                                                             \
        if (g) {                                                                                   \
            for (; i + LANES <= n; i += LANES) {                                                   \
                lanes_vd u0 = vload_##S(g + i), u1 = vload_##S(g + i + 4);                         \
                lanes_vd u2 = vload_##S(g + i + 8), u3 = vload_##S(g + i + 12);                    \
                a0 += u0, a1 += u1, a2 += u2, a3 += u3;                                            \
                b0 += (vload_##S(x + i) - cv) * u0;                                                \
                b1 += (vload_##S(x + i + 4) - cv) * u1;                                            \
                b2 += (vload_##S(x + i + 8) - cv) * u2;                                            \
                b3 += (vload_##S(x + i + 12) - cv) * u3;                                           \
            }                                                                                      \
        } else {                                                                                   \
            for (; i + LANES <= n; i += LANES) {                                                   \
                lanes_vd d0 = vload_##S(x + i) - cv, d1 = vload_##S(x + i + 4) - cv;               \
                lanes_vd d2 = vload_##S(x + i + 8) - cv, d3 = vload_##S(x + i + 12) - cv;          \
                a0 += d0, a1 += d1, a2 += d2, a3 += d3;                                            \
                b0 += d0 * d0, b1 += d1 * d1, b2 += d2 * d2, b3 += d3 * d3;                        \
            }                                                                                      \
        }                                                                                          \
        SUMS2_TAIL                                                                                 \
    }                                                                                              \
    double sa[LANES], sb[LANES];                                                                   \
    memcpy(sa, &a0, 32), memcpy(sa + 4, &a1, 32), memcpy(sa + 8, &a2, 32);                         \
    memcpy(sa + 12, &a3, 32);                                                                      \
    memcpy(sb, &b0, 32), memcpy(sb + 4, &b1, 32), memcpy(sb + 8, &b2, 32);                         \
    memcpy(sb + 12, &b3, 32);                                                                      \
    *r0 = lanes_total(sa) + t0;                                                                    \
    *r1 = lanes_total(sb) + t1;
#else
#define SUMS2_BODY(S)                                                                              \
    double sa[LANES] = {0}, sb[LANES] = {0}, t0 = 0, t1 = 0;                                       \
    for (int64_t r = 0; r < a; r++, x += ld, g = g ? g + ld : NULL) {                              \
        int64_t i = 0;                                                                             \
        for (; i + LANES <= n; i += LANES)                                                         \
            for (int k = 0; k < LANES; k++) {                                                      \
                double d = (double)x[i + k] - c, u = g ? (double)g[i + k] : d;                     \
                sa[k] += u;                                                                        \
                sb[k] += d * u;                                                                    \
            }                                                                                      \
        SUMS2_TAIL                                                                                 \
    }                                                                                              \
    *r0 = lanes_total(sa) + t0;                                                                    \
    *r1 = lanes_total(sb) + t1;
#endif
#define SUMS2_TAIL                                                                                 \
    for (; i < n; i++) {                                                                           \
        double d = (double)x[i] - c, u = g ? (double)g[i] : d;                                     \
        t0 += u;                                                                                   \
        t1 += d * u;                                                                               \
    }
#define DEFINE_SUMS2(T, S)                                                                         \
    AGK_SIMD_CLONES static void chan_sums2_##S(const T *x, const T *g, int64_t a, int64_t ld,      \
                                               int64_t n, double c, double *r0, double *r1)        \
    {                                                                                              \
        SUMS2_BODY(S)                                                                              \
    }
DEFINE_SUMS2(float, f32)
DEFINE_SUMS2(double, f64)

/* The f32 sums in AVX2 where the CPU has it: GCC 12 builds the vector
** types' conversion of 4 floats to 4 doubles from two halves (a 128-bit
** vcvtps2pd each and an insert) and spills a chain to the stack, at 60%
** of the speed of this. The operations, their order and so the bits are
** SUMS2_BODY's. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_SUMS2_AVX2 1
#define LOAD4_AVX2(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
__attribute__((target("avx2"))) static void chan_sums2_avx2_f32(const float *x, const float *g,
                                                                int64_t a, int64_t ld, int64_t n,
                                                                double c, double *r0, double *r1)
{
    __m256d cv = _mm256_set1_pd(c), a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    __m256d b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    double t0 = 0, t1 = 0;
    for (int64_t r = 0; r < a; r++, x += ld, g = g ? g + ld : NULL) {
        int64_t i = 0;
        if (g) {
            for (; i + LANES <= n; i += LANES) {
                __m256d u0 = LOAD4_AVX2(g + i), u1 = LOAD4_AVX2(g + i + 4);
                __m256d u2 = LOAD4_AVX2(g + i + 8), u3 = LOAD4_AVX2(g + i + 12);
                a0 = _mm256_add_pd(a0, u0), a1 = _mm256_add_pd(a1, u1);
                a2 = _mm256_add_pd(a2, u2), a3 = _mm256_add_pd(a3, u3);
                b0 = _mm256_add_pd(b0, _mm256_mul_pd(_mm256_sub_pd(LOAD4_AVX2(x + i), cv), u0));
                b1 = _mm256_add_pd(b1, _mm256_mul_pd(_mm256_sub_pd(LOAD4_AVX2(x + i + 4), cv), u1));
                b2 = _mm256_add_pd(b2, _mm256_mul_pd(_mm256_sub_pd(LOAD4_AVX2(x + i + 8), cv), u2));
                b3 = _mm256_add_pd(b3,
                                   _mm256_mul_pd(_mm256_sub_pd(LOAD4_AVX2(x + i + 12), cv), u3));
            }
        } else {
            for (; i + LANES <= n; i += LANES) {
                __m256d d0 = _mm256_sub_pd(LOAD4_AVX2(x + i), cv);
                __m256d d1 = _mm256_sub_pd(LOAD4_AVX2(x + i + 4), cv);
                __m256d d2 = _mm256_sub_pd(LOAD4_AVX2(x + i + 8), cv);
                __m256d d3 = _mm256_sub_pd(LOAD4_AVX2(x + i + 12), cv);
                a0 = _mm256_add_pd(a0, d0), a1 = _mm256_add_pd(a1, d1);
                a2 = _mm256_add_pd(a2, d2), a3 = _mm256_add_pd(a3, d3);
                b0 = _mm256_add_pd(b0, _mm256_mul_pd(d0, d0));
                b1 = _mm256_add_pd(b1, _mm256_mul_pd(d1, d1));
                b2 = _mm256_add_pd(b2, _mm256_mul_pd(d2, d2));
                b3 = _mm256_add_pd(b3, _mm256_mul_pd(d3, d3));
            }
        }
        SUMS2_TAIL
    }
    double sa[LANES], sb[LANES];
    _mm256_storeu_pd(sa, a0), _mm256_storeu_pd(sa + 4, a1), _mm256_storeu_pd(sa + 8, a2);
    _mm256_storeu_pd(sa + 12, a3);
    _mm256_storeu_pd(sb, b0), _mm256_storeu_pd(sb + 4, b1), _mm256_storeu_pd(sb + 8, b2);
    _mm256_storeu_pd(sb + 12, b3);
    *r0 = lanes_total(sa) + t0;
    *r1 = lanes_total(sb) + t1;
}
#else
#define HAVE_SUMS2_AVX2 0
#define chan_sums2_avx2_f32 chan_sums2_f32
#endif

/* The f32 sums, by AVX2 where the CPU has it. */
static void sums2_f32(const float *x, const float *g, int64_t a, int64_t ld, int64_t n, double c,
                      double *r0, double *r1)
{
    if (HAVE_SUMS2_AVX2 && agk_isa_supported(AGK_ISA_AVX2))
        chan_sums2_avx2_f32(x, g, a, ld, n, c, r0, r1);
    else
        chan_sums2_f32(x, g, a, ld, n, c, r0, r1);
}

#define DEFINE_ROWS(T, S)                                                                          \
    /* the writes in double, rounded once */                                                   \
    AGK_SIMD_CLONES static void row_affine_d_##S(const T *x, T *y, int64_t n, double mu, double s, \
                                                 double h)                                         \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++)                                                            \
            y[i] = (T)(((double)x[i] - mu) * s + h);                                               \
    }                                                                                              \
    AGK_SIMD_CLONES static void row_grad_d_##S(const T *g, const T *x, T *o, int64_t n,            \
                                               double mu, double k, double gm, double q)           \
    {                                                                                              \
        for (int64_t i = 0; i < n; i++)                                                            \
            o[i] = (T)(k * (((double)g[i] - gm) - ((double)x[i] - mu) * q));                       \
    }
DEFINE_ROWS(float, f32)
DEFINE_ROWS(double, f64)

#define row_affine_f64 row_affine_d_f64
#define row_grad_f64 row_grad_d_f64

/* The f32 writes in f32: vectors of 8 floats, not of 4 doubles, and no
** conversions, at about 60% of the time of the writes in double (the
** passes were bound by their arithmetic, not by memory). Centred on the
** mean rounded to f32, mf, with the rest of the mean, mu - mf, moved into
** the constant term: x - mf is exact where x is within a factor 2 of mf
** (Sterbenz), as at a large mean, and the products and sums then round a
** few times, to within a few f32 ulps of the result in double
** (tests/test_ops_norm.c holds them to 1e-6 at a mean of 1e4). A constant
** that is not finite in f32 (a NaN, or an rstd beyond FLT_MAX) takes the
** writes in double, which propagate it as before. */
AGK_SIMD_CLONES static void row_affine_s_f32(const float *x, float *y, int64_t n, float mf,
                                             float sf, float hf)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = (x[i] - mf) * sf + hf;
}
AGK_SIMD_CLONES static void row_grad_s_f32(const float *g, const float *x, float *o, int64_t n,
                                           float mf, float kf, float gf, float qf)
{
    for (int64_t i = 0; i < n; i++)
        o[i] = kf * ((g[i] - gf) - (x[i] - mf) * qf);
}

static bool all_finite_f32(const float *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return false;
    return true;
}

/* (x - mu) s + h = (x - mf) s + (h - (mu - mf) s) */
static void row_affine_f32(const float *x, float *y, int64_t n, double mu, double s, double h)
{
    float mf = (float)mu;
    float c[3] = {mf, (float)s, (float)(h - (mu - (double)mf) * s)};
    if (all_finite_f32(c, 3))
        row_affine_s_f32(x, y, n, c[0], c[1], c[2]);
    else
        row_affine_d_f32(x, y, n, mu, s, h);
}
/* k ((g - gm) - (x - mu) q) = k ((g - (gm + (mf - mu) q)) - (x - mf) q) */
static void row_grad_f32(const float *g, const float *x, float *o, int64_t n, double mu, double k,
                         double gm, double q)
{
    float mf = (float)mu;
    float c[4] = {mf, (float)k, (float)(gm + ((double)mf - mu) * q), (float)q};
    if (all_finite_f32(c, 4))
        row_grad_s_f32(g, x, o, n, c[0], c[1], c[2], c[3]);
    else
        row_grad_d_f32(g, x, o, n, mu, k, gm, q);
}

/* ------------------------------------------------------------------ passes */

typedef enum pass_kind { PASS_STATS, PASS_GSUMS, PASS_AFFINE, PASS_GRAD } pass_kind;

typedef struct pass_job {
    pass_kind kind;
    const agi_norm_geom *geom;
    bool f32;
    const void *x, *g;               /* g: the seed (GSUMS, GRAD) */
    void *out;                       /* AFFINE, GRAD */
    const ag_tensor *gamma, *beta;   /* AFFINE; GRAD takes gamma */
    const ag_tensor *m;              /* AFFINE, GSUMS: the centre when geom has no mean */
    double *sums;                    /* GSUMS writes [2c], GRAD reads: sum g, sum g (x - mu) */
    double *mean, *var, *rstd;       /* STATS writes */
    double *work;                    /* STATS, GSUMS: partial sums by block of images; */
                                     /* AFFINE, GRAD: chan_params by channel */
} pass_job;

/* The centre of channel c: x's mean for the standardisation, the given m
** (or 0) for an affine map. */
static double centre(const pass_job *j, int64_t c)
{
    return j->geom->mean ? j->geom->mean[c] : j->m ? agi_get(j->m, c) : 0.0;
}

/* The reductions go by blocks of BLOCK_IMAGES values of a (images, for
** batch norm): a task sums one channel over one block's rows, into partial
** sums of its own, and the blocks' partials are added in block order
** after: the same bits on any number of threads. A block's tasks, taken in
** order, read its images as BLOCK_IMAGES streams that each run through
** memory in order, which the prefetchers follow; the channel's rows of the
** whole batch at once (64 rows 50 KB apart for the CNN's first batch norm,
** of 784 bytes for its second) were too many streams for them, and these
** passes wait on memory. */
enum { BLOCK_IMAGES = 8 };

static void block_tasks(void *ctx, int64_t begin, int64_t end)
{
    const pass_job *j = ctx;
    const agi_norm_geom *geo = j->geom;
    int64_t a = geo->a, C = geo->c, b = geo->b, ld = C * b;
    for (int64_t t = begin; t < end; t++) {
        int64_t k = t / C, c = t % C, i0 = k * BLOCK_IMAGES;
        int64_t rows = a - i0 < BLOCK_IMAGES ? a - i0 : BLOCK_IMAGES, off = (i0 * C + c) * b;
        double *r0 = j->work + k * 2 * C + c, *r1 = r0 + C;
        if (j->kind == PASS_STATS) {
            /* x shifted by its channel's first value (see finish_stats) */
            double sh = j->f32 ? ((const float *)j->x)[c * b] : ((const double *)j->x)[c * b];
            if (j->f32)
                sums2_f32((const float *)j->x + off, NULL, rows, ld, b, sh, r0, r1);
            else
                chan_sums2_f64((const double *)j->x + off, NULL, rows, ld, b, sh, r0, r1);
        } else {
            double mu = centre(j, c);
            if (j->f32)
                sums2_f32((const float *)j->x + off, (const float *)j->g + off, rows, ld, b, mu,
                          r0, r1);
            else
                chan_sums2_f64((const double *)j->x + off, (const double *)j->g + off, rows, ld,
                               b, mu, r0, r1);
        }
    }
}

/* The blocks' partial sums added in order, and from them the statistics:
** of x shifted by its channel's first value x0, in double, q = s1 - s0^2 / n
** cancels at most a factor n + 1, since s0^2 / n = n (mean - x0)^2 <= n q
** (x0 is one of the values): an error within the bound of the sums' own
** rounding. With a large mean the shifted values are small, as in two
** passes. Or the gradient's sums. */
static void finish_sums(const pass_job *j, int64_t blocks)
{
    const agi_norm_geom *geo = j->geom;
    int64_t C = geo->c;
    double n = (double)(geo->a * geo->b);
    for (int64_t c = 0; c < C; c++) {
        double s0 = 0, s1 = 0;
        for (int64_t k = 0; k < blocks; k++) {
            s0 += j->work[k * 2 * C + c];
            s1 += j->work[k * 2 * C + C + c];
        }
        if (j->kind == PASS_STATS) {
            double sh = j->f32 ? ((const float *)j->x)[c * geo->b]
                               : ((const double *)j->x)[c * geo->b];
            double q = s1 - s0 * (s0 / n);   /* the sum of squared deviations */
            if (q < 0)                       /* by rounding; a NaN stays */
                q = 0;
            j->mean[c] = sh + s0 / n;
            j->var[c] = q / n;
            j->rstd[c] = 1.0 / sqrt(q / n + geo->eps);
        } else {
            j->sums[c] = s0;
            j->sums[C + c] = s1;
        }
    }
}

/* The constants of channel c for a write: (mu, scale, shift) for the
** affine map, (mu, k, gm, q) for the gradient k ((g - gm) - (x - mu) q). */
static void chan_params(const pass_job *j, int64_t c, double *p)
{
    const agi_norm_geom *geo = j->geom;
    double rs = geo->rstd ? geo->rstd[c] : 1.0;
    double gam = j->gamma ? agi_get(j->gamma, c) : 1.0;
    p[0] = centre(j, c);
    if (j->kind == PASS_AFFINE) {
        p[1] = rs * gam;
        p[2] = j->beta ? agi_get(j->beta, c) : 0.0;
    } else {
        double n = (double)(geo->a * geo->b);
        p[1] = gam * rs;
        p[2] = j->sums[c] / n;
        p[3] = rs * rs * j->sums[geo->c + c] / n;
    }
}

/* One task per row (i, c) of b values: the normalised x, or its gradient. */
static void row_tasks(void *ctx, int64_t begin, int64_t end)
{
    const pass_job *j = ctx;
    int64_t C = j->geom->c, b = j->geom->b;
    for (int64_t r = begin; r < end; r++) {
        int64_t off = r * b;
        const double *p = j->work + 4 * (r % C);
        if (j->kind == PASS_AFFINE) {
            if (j->f32)
                row_affine_f32((const float *)j->x + off, (float *)j->out + off, b, p[0], p[1], p[2]);
            else
                row_affine_f64((const double *)j->x + off, (double *)j->out + off, b, p[0], p[1],
                               p[2]);
        } else {
            if (j->f32)
                row_grad_f32((const float *)j->g + off, (const float *)j->x + off,
                             (float *)j->out + off, b, p[0], p[1], p[2], p[3]);
            else
                row_grad_f64((const double *)j->g + off, (const double *)j->x + off,
                             (double *)j->out + off, b, p[0], p[1], p[2], p[3]);
        }
    }
}

/* A task of under some 16K values is not worth a thread's wake-up. */
enum { TASK_VALUES = 16384 };

/* ------------------------------------------------------- narrow rows */

/* With few values per row (a rank-2 batch norm has b = 1) a call per row
** costs more than its work, so x is swept as an [a, c b] matrix in memory
** order instead: sums per column over a (vectorised across the columns,
** each column its own chain in a fixed order), then per c its b columns in
** order; writes go a row of c b values at a time, with per-column
** constants. Which way a shape goes depends on b alone. */
enum { NARROW = 32, COL_BLOCK = 128 };

#define DEFINE_COLS(T, S)                                                                          \
    /* s0 += x, or (x - mu)^2 with mu; with g: s0 += g, s1 += g (x - mu) */                        \
    AGK_SIMD_CLONES static void col_sums_##S(const T *restrict x, const T *restrict g, int64_t a,  \
                                             int64_t ld, int64_t n, const double *restrict mu,     \
                                             double *restrict s0, double *restrict s1)             \
    {                                                                                              \
        for (int64_t i = 0; i < a; i++) {                                                          \
            const T *xr = x + i * ld;                                                              \
            if (g) {                                                                               \
                const T *gr = g + i * ld;                                                          \
                for (int64_t k = 0; k < n; k++)                                                    \
                    s0[k] += (double)gr[k];                                                        \
                for (int64_t k = 0; k < n; k++)                                                    \
                    s1[k] += (double)gr[k] * ((double)xr[k] - mu[k]);                              \
            } else if (mu) {                                                                       \
                for (int64_t k = 0; k < n; k++) {                                                  \
                    double d = (double)xr[k] - mu[k];                                              \
                    s0[k] += d * d;                                                                \
                }                                                                                  \
            } else {                                                                               \
                for (int64_t k = 0; k < n; k++)                                                    \
                    s0[k] += (double)xr[k];                                                        \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    /* a row of the affine map (p3 NULL) or of the gradient, constants per column */              \
    AGK_SIMD_CLONES static void cols_write_##S(const T *restrict x, const T *restrict g,           \
                                               T *restrict o, int64_t n,                           \
                                               const double *restrict p0,                          \
                                               const double *restrict p1,                          \
                                               const double *restrict p2,                          \
                                               const double *restrict p3)                          \
    {                                                                                              \
        if (!p3)                                                                                   \
            for (int64_t k = 0; k < n; k++)                                                        \
                o[k] = (T)(((double)x[k] - p0[k]) * p1[k] + p2[k]);                                \
        else                                                                                       \
            for (int64_t k = 0; k < n; k++)                                                        \
                o[k] = (T)(p1[k] * (((double)g[k] - p2[k]) - ((double)x[k] - p0[k]) * p3[k]));     \
    }
DEFINE_COLS(float, f32)
DEFINE_COLS(double, f64)

typedef struct narrow_job {
    const pass_job *p;
    int64_t cols;
    const double *mu;   /* sweeps: per column, or NULL */
    double *s0, *s1;
    const double *par[4];   /* writes: per column; par[3] NULL for the affine map */
} narrow_job;

static void sweep_tasks(void *ctx, int64_t begin, int64_t end)
{
    const narrow_job *j = ctx;
    const pass_job *p = j->p;
    int64_t c0 = begin * COL_BLOCK, c1 = end * COL_BLOCK < j->cols ? end * COL_BLOCK : j->cols;
    const double *mu = j->mu ? j->mu + c0 : NULL;
    double *s1 = j->s1 ? j->s1 + c0 : NULL;
    if (p->f32)
        col_sums_f32((const float *)p->x + c0, j->s1 ? (const float *)p->g + c0 : NULL,
                     p->geom->a, j->cols, c1 - c0, mu, j->s0 + c0, s1);
    else
        col_sums_f64((const double *)p->x + c0, j->s1 ? (const double *)p->g + c0 : NULL,
                     p->geom->a, j->cols, c1 - c0, mu, j->s0 + c0, s1);
}

static void write_tasks(void *ctx, int64_t begin, int64_t end)
{
    const narrow_job *j = ctx;
    const pass_job *p = j->p;
    for (int64_t i = begin; i < end; i++) {
        int64_t off = i * j->cols;
        if (p->f32)
            cols_write_f32((const float *)p->x + off, p->g ? (const float *)p->g + off : NULL,
                           (float *)p->out + off, j->cols, j->par[0], j->par[1], j->par[2],
                           j->par[3]);
        else
            cols_write_f64((const double *)p->x + off, p->g ? (const double *)p->g + off : NULL,
                           (double *)p->out + off, j->cols, j->par[0], j->par[1], j->par[2],
                           j->par[3]);
    }
}

/* Column sums of x (or of g and g (x - mu) when s1 is given) into s0, s1. */
static void sweep(ag_tape *t, narrow_job *j, const double *mu, double *s0, double *s1)
{
    memset(s0, 0, (size_t)j->cols * sizeof *s0);
    if (s1)
        memset(s1, 0, (size_t)j->cols * sizeof *s1);
    j->mu = mu, j->s0 = s0, j->s1 = s1;
    int64_t per = j->p->geom->a * COL_BLOCK;
    ag_pool_for(t->pool, (j->cols + COL_BLOCK - 1) / COL_BLOCK,
                per >= TASK_VALUES ? 1 : TASK_VALUES / per, sweep_tasks, j);
}

/* The sum of c's b columns of s, in order. */
static double chan_total(const double *s, int64_t c, int64_t b)
{
    double r = 0;
    for (int64_t k = 0; k < b; k++)
        r += s[c * b + k];
    return r;
}

static bool narrow_pass(ag_tape *t, pass_job *p)
{
    const agi_norm_geom *geo = p->geom;
    int64_t C = geo->c, b = geo->b, cols = C * b;
    double n = (double)(geo->a * b);
    double *w = agi_arena_alloc(t, 6 * (size_t)cols * sizeof *w, 64);
    if (!w)
        return false;
    double *s0 = w, *s1 = w + cols, *par = w + 2 * cols;   /* par: 4 arrays of cols */
    narrow_job j = {.p = p, .cols = cols};
    if (p->kind == PASS_STATS) {
        sweep(t, &j, NULL, s0, NULL);
        for (int64_t c = 0; c < C; c++) {
            p->mean[c] = chan_total(s0, c, b) / n;
            for (int64_t k = 0; k < b; k++)
                par[c * b + k] = p->mean[c];
        }
        sweep(t, &j, par, s0, NULL);
        for (int64_t c = 0; c < C; c++) {
            double q = chan_total(s0, c, b);
            p->var[c] = q / n;
            p->rstd[c] = 1.0 / sqrt(q / n + geo->eps);
        }
    } else if (p->kind == PASS_GSUMS) {
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < b; k++)
                par[c * b + k] = centre(p, c);
        sweep(t, &j, par, s0, s1);
        for (int64_t c = 0; c < C; c++) {
            p->sums[c] = chan_total(s0, c, b);
            p->sums[C + c] = chan_total(s1, c, b);
        }
    } else {
        for (int64_t c = 0; c < C; c++) {
            double q[4];
            chan_params(p, c, q);
            for (int i = 0; i < 4; i++)
                for (int64_t k = 0; k < b; k++)
                    par[i * cols + c * b + k] = q[i];
        }
        for (int i = 0; i < 4; i++)
            j.par[i] = par + i * cols;
        if (p->kind == PASS_AFFINE)
            j.par[3] = NULL;
        ag_pool_for(t->pool, geo->a, cols >= TASK_VALUES ? 1 : TASK_VALUES / cols, write_tasks, &j);
    }
    return true;
}

/* ------------------------------------------------------------ a pass */

/* Runs pass j; false (ENOMEM recorded) when its scratch could not be had. */
static bool run_pass(ag_tape *t, pass_job *j)
{
    const agi_norm_geom *g = j->geom;
    if (g->b < NARROW)
        return narrow_pass(t, j);
    if (j->kind == PASS_STATS || j->kind == PASS_GSUMS) {
        int64_t blocks = (g->a + BLOCK_IMAGES - 1) / BLOCK_IMAGES, per = BLOCK_IMAGES * g->b;
        j->work = agi_arena_alloc(t, 2 * (size_t)(blocks * g->c) * sizeof *j->work, 64);
        if (!j->work)
            return false;
        ag_pool_for(t->pool, blocks * g->c, per >= TASK_VALUES ? 1 : TASK_VALUES / per,
                    block_tasks, j);
        finish_sums(j, blocks);
    } else {
        /* each channel's constants once, not once a row (the CNN's second
        ** batch norm has 2048 rows of 196 values) */
        j->work = agi_arena_alloc(t, 4 * (size_t)g->c * sizeof *j->work, 64);
        if (!j->work)
            return false;
        for (int64_t c = 0; c < g->c; c++)
            chan_params(j, c, j->work + 4 * c);
        ag_pool_for(t->pool, g->a * g->c, g->b >= TASK_VALUES ? 1 : TASK_VALUES / g->b, row_tasks,
                    j);
    }
    return true;
}

/* The sums of g and g (x - mean) per c, [2c] doubles in the arena. */
static double *gsums(ag_tape *t, const ag_tensor *g, const ag_tensor *x, const agi_norm_geom *geom)
{
    return agi_norm_sums_values(t, geom, g, x, NULL);
}

double *agi_norm_sums_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *g,
                             const ag_tensor *x, const ag_tensor *m)
{
    double *s = agi_arena_alloc(t, 2 * (size_t)geo->c * sizeof *s, 64);
    if (!s)
        return NULL;
    pass_job j = {.kind = PASS_GSUMS, .geom = geo, .f32 = x->dtype == AG_F32, .x = x->value,
                  .g = g->value, .sums = s, .m = m};
    if (!run_pass(t, &j))
        return NULL;
    return s;
}

bool agi_norm_affine_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *x,
                            const ag_tensor *m, const ag_tensor *s, const ag_tensor *h,
                            ag_tensor *out)
{
    pass_job j = {.kind = PASS_AFFINE, .geom = geo, .f32 = x->dtype == AG_F32, .x = x->value,
                  .out = out->value, .gamma = s, .beta = h, .m = m};
    return run_pass(t, &j);
}

/* ------------------------------------------------------------ the ops */

static ag_tensor *standardise(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta,
                              const agi_norm_geom *geom);
static ag_tensor *standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                   const agi_norm_geom *geom, const double *sums);
static ag_tensor *standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x,
                                   const agi_norm_geom *geom, const double **sums);

static ag_tensor *input_or_null(const ag_tensor *out, int idx)
{
    return idx >= 0 ? out->in[idx] : NULL;
}

/* Row i of a [2, c] tensor, as [c]. */
static ag_tensor *row_of(ag_tape *t, ag_tensor *s, int i, int64_t c)
{
    return ag_reshape(t, ag_slice(t, s, 0, i, i + 1, 1), 1, &c);
}

/* A tensor of x's size seen in the [a, c, b] view, */
static ag_tensor *view3(ag_tape *t, ag_tensor *v, const agi_norm_geom *g)
{
    return ag_reshape(t, v, 3, (int64_t[]){g->a, g->c, g->b});
}

/* and a [c] vector as [1, c, 1] to broadcast over it. */
static ag_tensor *vec3(ag_tape *t, ag_tensor *p, const agi_norm_geom *g)
{
    return ag_reshape(t, p, 3, (int64_t[]){1, g->c, 1});
}

/* The mean over a and b of z [a, c, b]: [1, c, 1]. */
static ag_tensor *chan_mean(ag_tape *t, ag_tensor *z)
{
    return ag_mean_axis(t, ag_mean_axis(t, z, 2, 1), 0, 1);
}

/* The sum over a and b of u * v (x's shape) per c, as [c]. */
static ag_tensor *chan_dot(ag_tape *t, ag_tensor *u, ag_tensor *v, const agi_norm_geom *g)
{
    ag_tensor *s = ag_sum_to(t, ag_mul(t, view3(t, u, g), view3(t, v, g)), 3,
                             (int64_t[]){1, g->c, 1});
    return ag_reshape(t, s, 1, (int64_t[]){g->c});
}

/* The derivative of h = standardise_grad(g, x, 1) in x along v, which is
** also its transpose applied to v (it is a Hessian of <g, xhat>, so
** symmetric): with r = rstd and a = mean_c(g xhat),
**   -r (mean_c(v h) xhat + a standardise_grad(v, x) + mean_c(v xhat) h).
** Generic ops, recomputing r from x, so that it is differentiable again. */
static ag_tensor *grad_in_x(ag_tape *t, ag_tensor *x, ag_tensor *g, ag_tensor *h, ag_tensor *v,
                            const agi_norm_geom *geo)
{
    ag_tensor *x3 = view3(t, x, geo), *g3 = view3(t, g, geo), *h3 = view3(t, h, geo);
    ag_tensor *v3 = view3(t, v, geo);
    ag_tensor *d = ag_sub(t, x3, chan_mean(t, x3));
    ag_tensor *r = ag_pow_scalar(t, ag_add_scalar(t, chan_mean(t, ag_mul(t, d, d)), geo->eps), -0.5);
    ag_tensor *xhat = view3(t, standardise(t, x, NULL, NULL, geo), geo);
    ag_tensor *a = chan_mean(t, ag_mul(t, g3, xhat));
    ag_tensor *t1 = ag_mul(t, ag_mul(t, r, chan_mean(t, ag_mul(t, v3, h3))), xhat);
    ag_tensor *t2 = ag_mul(t, ag_mul(t, r, a), view3(t, standardise_grad(t, v, x, NULL, geo, NULL), geo));
    ag_tensor *t3 = ag_mul(t, ag_mul(t, r, chan_mean(t, ag_mul(t, v3, xhat))), h3);
    ag_tensor *w = ag_neg(t, ag_add(t, ag_add(t, t1, t2), t3));
    return ag_reshape(t, w, x->rank, x->shape);
}

/* gamma[c] v, v of x's shape */
static ag_tensor *scale_by(ag_tape *t, ag_tensor *v, ag_tensor *gamma, const agi_norm_geom *g)
{
    if (!gamma)
        return v;
    ag_tensor *s = ag_mul(t, view3(t, v, g), vec3(t, gamma, g));
    return ag_reshape(t, s, v->rank, v->shape);
}

/* standardise: d/dx = standardise_grad(g, x, gamma); d/dgamma, d/dbeta =
** the rows of standardise_sums(g, x), whose sums standardise_grad reuses */
static void vjp_standardise(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *x = out->in[0], *gamma = input_or_null(out, nd->gamma);
    bool need_gamma = gamma && agi_needs_grad(out, nd->gamma);
    bool need_beta = nd->beta >= 0 && agi_needs_grad(out, nd->beta);
    const double *sums = NULL;
    if (need_gamma || need_beta) {
        ag_tensor *s = standardise_sums(t, g, x, geo, &sums);
        if (need_gamma)
            gin[nd->gamma] = row_of(t, s, 0, geo->c);
        if (need_beta)
            gin[nd->beta] = row_of(t, s, 1, geo->c);
    }
    if (agi_needs_grad(out, 0))
        gin[0] = standardise_grad(t, g, x, gamma, geo, sums);
}
/* J is symmetric: d y = standardise_grad(dx, x, gamma) + xhat dgamma + dbeta */
static ag_tensor *jvp_standardise(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *x = out->in[0], *gamma = input_or_null(out, nd->gamma), *r = NULL;
    if (tan[0])
        r = standardise_grad(t, tan[0], x, gamma, geo, NULL);
    ag_tensor *dg = nd->gamma >= 0 ? tan[nd->gamma] : NULL;
    ag_tensor *db = nd->beta >= 0 ? tan[nd->beta] : NULL;
    if (dg || db) {
        if (!dg)
            dg = ag_zeros(t, (ag_dtype)x->dtype, 1, &geo->c);
        r = agi_jvp_sum(t, r, standardise(t, x, dg, db, geo));
    }
    return r;
}
static const ag_op op_standardise = {
    .name = "standardise", .vjp = vjp_standardise, .jvp = jvp_standardise};

/* standardise_grad(g, x, gamma) = gamma h, h = standardise_grad(g, x, 1):
** linear and self-adjoint in g, linear in gamma; in x, grad_in_x */
static void vjp_standardise_grad(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *gamma = input_or_null(out, nd->gamma);
    if (agi_needs_grad(out, 0))
        gin[0] = standardise_grad(t, u, x, gamma, geo, NULL);
    bool need_gamma = gamma && agi_needs_grad(out, nd->gamma);
    if (!need_gamma && !agi_needs_grad(out, 1))
        return;
    ag_tensor *h = gamma ? standardise_grad(t, g, x, NULL, geo, NULL) : out;
    if (need_gamma)
        gin[nd->gamma] = chan_dot(t, u, h, geo);
    if (agi_needs_grad(out, 1))
        gin[1] = grad_in_x(t, x, g, h, scale_by(t, u, gamma, geo), geo);
}
static ag_tensor *jvp_standardise_grad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *gamma = input_or_null(out, nd->gamma), *r = NULL;
    if (tan[0])
        r = standardise_grad(t, tan[0], x, gamma, geo, NULL);
    if (gamma && tan[nd->gamma])
        r = agi_jvp_sum(t, r, standardise_grad(t, g, x, tan[nd->gamma], geo, NULL));
    if (tan[1]) {
        ag_tensor *h = gamma ? standardise_grad(t, g, x, NULL, geo, NULL) : out;
        r = agi_jvp_sum(t, r, grad_in_x(t, x, g, h, scale_by(t, tan[1], gamma, geo), geo));
    }
    return r;
}
static const ag_op op_standardise_grad = {
    .name = "standardise_grad", .vjp = vjp_standardise_grad, .jvp = jvp_standardise_grad};

/* <U, sums(g, x)> = <U0, sum g xhat> + <U1, sum g>: in g, xhat U0 + U1 (a
** standardise); in x, J (U0 g) = standardise_grad(g, x, U0) */
static void vjp_standardise_sums(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1];
    ag_tensor *u0 = row_of(t, u, 0, geo->c);
    if (agi_needs_grad(out, 0))
        gin[0] = standardise(t, x, u0, row_of(t, u, 1, geo->c), geo);
    if (agi_needs_grad(out, 1))
        gin[1] = standardise_grad(t, g, x, u0, geo, NULL);
}
/* d sums = sums(dg, x) + [sum dx J g; 0] */
static ag_tensor *jvp_standardise_sums(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const norm_node *nd = out->attr.ext;
    const agi_norm_geom *geo = nd->geom;
    ag_tensor *g = out->in[0], *x = out->in[1], *r = NULL;
    if (tan[0])
        r = standardise_sums(t, tan[0], x, geo, NULL);
    if (tan[1]) {
        int64_t c = geo->c;
        ag_tensor *s = chan_dot(t, tan[1], standardise_grad(t, g, x, NULL, geo, NULL), geo);
        ag_tensor *rows[2] = {ag_reshape(t, s, 2, (int64_t[]){1, c}),
                              ag_zeros(t, (ag_dtype)x->dtype, 2, (int64_t[]){1, c})};
        r = agi_jvp_sum(t, r, ag_concat(t, 2, rows, 0));
    }
    return r;
}
static const ag_op op_standardise_sums = {
    .name = "standardise_sums", .vjp = vjp_standardise_sums, .jvp = jvp_standardise_sums};

/* ------------------------------------------------------ construction */

static norm_node *node_make(ag_tape *t, const agi_norm_geom *geom, int gamma, int beta)
{
    norm_node *nd = agi_arena_alloc(t, sizeof *nd, _Alignof(norm_node));
    if (nd)
        *nd = (norm_node){geom, (int8_t)gamma, (int8_t)beta};
    return nd;
}

/* g as x's shape, broadcast when it is not (a tangent may be smaller). */
static ag_tensor *seed_like(ag_tape *t, ag_tensor *g, const ag_tensor *x)
{
    return agi_same_shape(g, x) ? g : ag_broadcast_to(t, g, x->rank, x->shape);
}

static ag_tensor *standardise(ag_tape *t, ag_tensor *x, ag_tensor *gamma, ag_tensor *beta,
                              const agi_norm_geom *geom)
{
    ag_tensor *in[3] = {x};
    int nin = 1, gi = -1, bi = -1;
    if (gamma)
        in[gi = nin++] = gamma;
    if (beta)
        in[bi = nin++] = beta;
    if (!agi_check_inputs(t, "standardise", nin, in, true))
        return agi_nil(t);
    norm_node *nd = node_make(t, geom, gi, bi);
    if (!nd)
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_standardise, nin, in, (ag_dtype)x->dtype, x->rank, x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    pass_job j = {.kind = PASS_AFFINE, .geom = geom, .f32 = x->dtype == AG_F32, .x = x->value,
                  .out = out->value, .gamma = gamma, .beta = beta};
    return run_pass(t, &j) ? out : agi_nil(t);
}

/* 'sums' (from standardise_sums on the same g and x), when given, spares
** the reduction: the same numbers, so the same bits. */
static ag_tensor *standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                   const agi_norm_geom *geom, const double *sums)
{
    ag_tensor *in[3] = {g, x, gamma};
    int nin = gamma ? 3 : 2;
    if (!agi_check_inputs(t, "standardise_grad", nin, in, true))
        return agi_nil(t);
    in[0] = g = seed_like(t, g, x);
    norm_node *nd = node_make(t, geom, gamma ? 2 : -1, -1);
    if (!nd || t->status != AG_OK)
        return agi_nil(t);
    ag_tensor *out = agi_new(t, &op_standardise_grad, nin, in, (ag_dtype)x->dtype, x->rank,
                             x->shape);
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    double *own = sums ? NULL : gsums(t, g, x, geom);
    if (!sums && !own)
        return agi_nil(t);
    pass_job j = {.kind = PASS_GRAD, .geom = geom, .f32 = x->dtype == AG_F32, .x = x->value,
                  .g = g->value, .out = out->value, .gamma = gamma,
                  .sums = sums ? (double *)sums : own};
    return run_pass(t, &j) ? out : agi_nil(t);
}

static ag_tensor *standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x,
                                   const agi_norm_geom *geom, const double **sums)
{
    ag_tensor *in[2] = {g, x};
    if (!agi_check_inputs(t, "standardise_sums", 2, in, true))
        return agi_nil(t);
    in[0] = g = seed_like(t, g, x);
    norm_node *nd = node_make(t, geom, -1, -1);
    if (!nd || t->status != AG_OK)
        return agi_nil(t);
    int64_t c = geom->c;
    ag_tensor *out = agi_new(t, &op_standardise_sums, 2, in, (ag_dtype)x->dtype, 2,
                             (int64_t[]){2, c});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = nd;
    double *s = gsums(t, g, x, geom);
    if (!s)
        return agi_nil(t);
    for (int64_t i = 0; i < c; i++) {
        agi_set(out, i, geom->rstd[i] * s[c + i]);
        agi_set(out, c + i, s[i]);
    }
    if (sums)
        *sums = s;
    return out;
}

/* Is p NULL or a [n] vector? */
static bool vector_of(const ag_tensor *p, int64_t n)
{
    return !p || (p->rank == 1 && p->shape[0] == n);
}

ag_tensor *agi_standardise(ag_tape *t, ag_tensor *x, int64_t a, int64_t c, int64_t b, double eps,
                           ag_tensor *gamma, ag_tensor *beta)
{
    ag_tensor *in[3] = {x};
    int nin = 1;
    if (gamma)
        in[nin++] = gamma;
    if (beta)
        in[nin++] = beta;
    if (!agi_check_inputs(t, "standardise", nin, in, true))
        return agi_nil(t);
    if (a < 1 || c < 1 || b < 1 || a * c * b != x->numel)
        return agi_error(t, AG_ESHAPE, "standardise: x %s is not %lld x %lld x %lld values",
                         agi_shp(x, 0), (long long)a, (long long)c, (long long)b);
    if (!vector_of(gamma, c) || !vector_of(beta, c))
        return agi_error(t, AG_ESHAPE, "standardise: gamma %s and beta %s must be [%lld]",
                         agi_shp(gamma, 0), agi_shp(beta, 1), (long long)c);
    if (!(eps >= 0))
        return agi_error(t, AG_EINVAL, "standardise: eps %g must be >= 0", eps);
    agi_norm_geom *geo = agi_arena_alloc(t, sizeof *geo, _Alignof(agi_norm_geom));
    double *stats = agi_arena_alloc(t, 3 * (size_t)c * sizeof *stats, 64);
    if (!geo || !stats)
        return agi_nil(t);
    *geo = (agi_norm_geom){.a = a, .c = c, .b = b, .eps = eps, .mean = stats, .var = stats + c,
                           .rstd = stats + 2 * c};
    pass_job j = {.kind = PASS_STATS, .geom = geo, .f32 = x->dtype == AG_F32, .x = x->value,
                  .mean = geo->mean, .var = geo->var, .rstd = geo->rstd};
    if (!run_pass(t, &j))
        return agi_nil(t);
    return standardise(t, x, gamma, beta, geo);
}

const agi_norm_geom *agi_standardise_geom(const ag_tensor *y)
{
    return y && y->op == &op_standardise ? ((const norm_node *)y->attr.ext)->geom : NULL;
}

/* Checks that geom is x's view (the tests call these directly). */
static bool fits(ag_tape *t, const char *who, const ag_tensor *x, const agi_norm_geom *geom)
{
    if (t->status != AG_OK)
        return false;
    if (!geom || !x || geom->a * geom->c * geom->b != x->numel) {
        agi_error(t, AG_ESHAPE, "%s: x %s does not fit its statistics", who, agi_shp(x, 0));
        return false;
    }
    return true;
}

ag_tensor *agi_standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                const agi_norm_geom *geom)
{
    if (!fits(t, "standardise_grad", x, geom))
        return agi_nil(t);
    if (!vector_of(gamma, geom->c))
        return agi_error(t, AG_ESHAPE, "standardise_grad: gamma %s must be [%lld]",
                         agi_shp(gamma, 0), (long long)geom->c);
    return standardise_grad(t, g, x, gamma, geom, NULL);
}

ag_tensor *agi_standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, const agi_norm_geom *geom)
{
    if (!fits(t, "standardise_sums", x, geom))
        return agi_nil(t);
    return standardise_sums(t, g, x, geom, NULL);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_norm_fused[] = {
    &op_standardise, &op_standardise_grad, &op_standardise_sums, NULL
};
