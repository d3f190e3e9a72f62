/*
** adolc_peer.h: ADOL-C (a C++ library) measured behind a C interface, for
** the replay section (bench_replay.c). Built only where meson finds ADOL-C
** (BENCH_HAVE_ADOLC); these are benchmark references, never dependencies.
*/
#ifndef ADOLC_PEER_H
#define ADOLC_PEER_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The scalar graph of bench_scalar.c: 'samples' samples of 20 ops over the
** rows x[100][8] and -target[100], differentiated in w[8] and b (9
** independents). Best seconds of 'repeat' rounds. */
typedef struct adolc_scalar_result {
    double tape_s;       /* recording the tape (trace_on ... trace_off) */
    double gradient_s;   /* gradient(): forward + reverse at new inputs */
    double forward_s;    /* zos_forward with keep = 1 */
    double reverse_s;    /* fos_reverse after it */
    double loss, grad_w0;   /* at the recorded point */
    bool ok;
} adolc_scalar_result;

adolc_scalar_result adolc_scalar(int samples, int repeat, const double (*x)[8],
                                 const double *neg_target, const double *w0, double b0);

/* The Hessian of the n-dimensional Rosenbrock function at x by hessian()
** (taped once): best seconds per Hessian, and H[n-1][n-2] (lower triangle). */
typedef struct adolc_hessian_result {
    double seconds;
    double h10;          /* H[1][0], to compare */
    bool ok;
} adolc_hessian_result;

adolc_hessian_result adolc_rosenbrock_hessian(int n, int repeat, const double *x);

#ifdef __cplusplus
}
#endif
#endif
