/*
** norm_passes.c: the passes over the values behind the fused normalisation
** ops (ops_norm_fused.c, ops_norm_affine.c), x viewed as [a, c, b].
**
** Statistics are computed in double: the sums of x and of its squares
** shifted by a value of each channel, in one pass (accurate when the mean
** is large against the spread, as two passes are; the short rows' column
** sweeps take two passes: the mean, then squared deviations). A pass is a
** reduction per c, summing its rows by blocks of images in a fixed order,
** or a write per row of b values (short rows are swept as columns
** instead); both run on the tape's pool with the same bits on any number
** of threads.
*/
#include "ops_norm_fused.h"
#include "kernels/kernels.h"
#include "kernels/simd_clones.h"

#include <math.h>
#include <string.h>

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
#define DEFINE_SUMS2(CLONES, NAME, T, S)                                                           \
    CLONES static void NAME(const T *x, const T *g, int64_t a, int64_t ld, int64_t n, double c,    \
                            double *r0, double *r1)                                                \
    {                                                                                              \
        SUMS2_BODY(S)                                                                              \
    }
DEFINE_SUMS2(AGK_SIMD_CLONES, chan_sums2_f32, float, f32)
DEFINE_SUMS2(AGK_SIMD_CLONES, chan_sums2_f64, double, f64)
/* The f32 sums built for the baseline only, the code chan_sums2_f32's
** default clone is: what a CPU without AVX2 runs, for the tests to run on
** one that has it (agi_norm_sums2_f32). */
DEFINE_SUMS2(, chan_sums2_baseline_f32, float, f32)

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

bool agi_norm_sums2_f32(agi_sums_path path, const float *x, const float *g, int64_t a,
                        int64_t ld, int64_t n, double c, double *r0, double *r1)
{
    switch (path) {
    case AGI_SUMS_AVX2:
        if (!HAVE_SUMS2_AVX2 || !agk_isa_supported(AGK_ISA_AVX2))
            return false;
        chan_sums2_avx2_f32(x, g, a, ld, n, c, r0, r1);
        return true;
    case AGI_SUMS_PORTABLE:
        chan_sums2_f32(x, g, a, ld, n, c, r0, r1);
        return true;
    case AGI_SUMS_BASELINE:
        chan_sums2_baseline_f32(x, g, a, ld, n, c, r0, r1);
        return true;
    }
    return false;
}

/* The f32 sums, by AVX2 where the CPU has it (asked as the tests ask, so
** theirs is the passes' AVX2 path), else by the portable code. */
static void sums2_f32(const float *x, const float *g, int64_t a, int64_t ld, int64_t n, double c,
                      double *r0, double *r1)
{
    if (!agi_norm_sums2_f32(AGI_SUMS_AVX2, x, g, a, ld, n, c, r0, r1))
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

bool agi_norm_stats_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *x)
{
    pass_job j = {.kind = PASS_STATS, .geom = geo, .f32 = x->dtype == AG_F32, .x = x->value,
                  .mean = geo->mean, .var = geo->var, .rstd = geo->rstd};
    return run_pass(t, &j);
}

bool agi_norm_standardise_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *x,
                                 const ag_tensor *gamma, const ag_tensor *beta, ag_tensor *out)
{
    pass_job j = {.kind = PASS_AFFINE, .geom = geo, .f32 = x->dtype == AG_F32, .x = x->value,
                  .out = out->value, .gamma = gamma, .beta = beta};
    return run_pass(t, &j);
}

bool agi_norm_grad_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *g,
                          const ag_tensor *x, const ag_tensor *gamma, const double *sums,
                          ag_tensor *out)
{
    pass_job j = {.kind = PASS_GRAD, .geom = geo, .f32 = x->dtype == AG_F32, .x = x->value,
                  .g = g->value, .out = out->value, .gamma = gamma, .sums = (double *)sums};
    return run_pass(t, &j);
}
