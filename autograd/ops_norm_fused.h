/*
** ops_norm_fused.h: the fused standardisation of ops_norm_fused.c, for the
** normalisations of ops_norm.c and for the tests. Never installed.
**
** x is viewed as [a, c, b] (contiguous) and standardised over a and b for
** each middle index: batch norm is [N, C, H*W], group norm [1, N*G, per].
*/
#ifndef AG_OPS_NORM_FUSED_H
#define AG_OPS_NORM_FUSED_H

#include "internal.h"

/* The view and the statistics of one x, computed once by agi_standardise
** and shared (attr.ext) by every op its gradients make on that x. */
typedef struct agi_norm_geom {
    int64_t a, c, b;    /* x as [a, c, b]: statistics over a * b values per c */
    double eps;
    double *mean;       /* [c] the mean, */
    double *var;        /* [c] the biased variance (of shifted values), */
    double *rstd;       /* [c] and 1 / sqrt(var + eps) */
} agi_norm_geom;

/* y = (x - mean_c) / sqrt(var_c + eps) * gamma[c] + beta[c]; gamma and beta
** are optional [c] vectors (absent: 1 and 0). Records the error and answers
** nil on a view that is not x's size, a wrong gamma/beta or eps < 0. */
ag_tensor *agi_standardise(ag_tape *t, ag_tensor *x, int64_t a, int64_t c, int64_t b, double eps,
                           ag_tensor *gamma, ag_tensor *beta);
/* The view and statistics of a result of agi_standardise. */
const agi_norm_geom *agi_standardise_geom(const ag_tensor *y);
/* The adjoint of standardise in x at seed g (x's shape), times gamma[c]:
** gamma rstd (g - mean_c g - xhat mean_c(g xhat)). 'geom' must be x's. */
ag_tensor *agi_standardise_grad(ag_tape *t, ag_tensor *g, ag_tensor *x, ag_tensor *gamma,
                                const agi_norm_geom *geom);
/* [2, c]: row 0 the sums over a and b of g * xhat, row 1 those of g (the
** gradients of gamma and beta). 'geom' must be x's. */
ag_tensor *agi_standardise_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, const agi_norm_geom *geom);

/* The affine map y = (x - m[c]) s[c] + h[c] (ops_norm_affine.c), over x
** viewed as [a, c, b]: m, s and h are optional [c] vectors of x's dtype (0,
** 1 and 0 when absent). Errors name 'who'. */
ag_tensor *agi_channel_affine(ag_tape *t, const char *who, ag_tensor *x, int64_t a, int64_t c,
                              int64_t b, ag_tensor *m, ag_tensor *s, ag_tensor *h);
/* [2, c]: row 0 the sums over a and b of g (x - m[c]) (m optional), row 1
** those of g: the gradients of the affine map's s and h. */
ag_tensor *agi_channel_affine_sums(ag_tape *t, ag_tensor *g, ag_tensor *x, int64_t a, int64_t c,
                                   int64_t b, ag_tensor *m);

/* The passes (norm_passes.c), for ops_norm_affine.c, on a geometry
** without statistics (mean, var and rstd NULL): out = (x - m) s + h per c
** (m, s, h optional: 0, 1, 0), false when memory runs out; and [2c]
** doubles in the arena, the sums of g then those of g (x - m), or NULL when
** memory runs out. */
bool agi_norm_affine_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *x,
                            const ag_tensor *m, const ag_tensor *s, const ag_tensor *h,
                            ag_tensor *out);
double *agi_norm_sums_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *g,
                             const ag_tensor *x, const ag_tensor *m);
/* The standardisation's passes (norm_passes.c) for ops_norm_fused.c: geo's
** mean, var and rstd from x; out = the standardised x times gamma[c] plus
** beta[c] (either NULL); out = standardise_grad's values from 'sums' (as
** agi_norm_sums_values gives them). False when scratch could not be had
** (ENOMEM recorded). */
bool agi_norm_stats_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *x);
bool agi_norm_standardise_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *x,
                                 const ag_tensor *gamma, const ag_tensor *beta, ag_tensor *out);
bool agi_norm_grad_values(ag_tape *t, const agi_norm_geom *geo, const ag_tensor *g,
                          const ag_tensor *x, const ag_tensor *gamma, const double *sums,
                          ag_tensor *out);

/* For the tests: the f32 sums of a channel that the passes take (per block
** of images), by a chosen path. Over a rows of n values ld apart, u = g
** (NULL: u = x - c): r0 = sum u, r1 = sum (x - c) u, in double, in 16
** lanes added in a fixed order, each row's tail apart. Every path is to
** give the same bits. AVX2: the intrinsics the passes take where the CPU
** has AVX2; PORTABLE: the code they take where it has not (vector types,
** or plain C for other compilers), as the clone for this CPU
** (AGK_SIMD_CLONES); BASELINE: that code built for plain x86-64, as a CPU
** without AVX2 runs it. False, nothing written, when this build or CPU
** has no such path. */
typedef enum agi_sums_path { AGI_SUMS_AVX2, AGI_SUMS_PORTABLE, AGI_SUMS_BASELINE } agi_sums_path;
bool agi_norm_sums2_f32(agi_sums_path path, const float *x, const float *g, int64_t a,
                        int64_t ld, int64_t n, double c, double *r0, double *r1);

#endif
