/*
** conv_layout.h: what ops_conv.c shares with conv_layout.c, its data
** movement: the geometry of a convolution and the copies between an
** image's NCHW planes and the matrices its products read and write.
*/
#ifndef AG_CONV_LAYOUT_H
#define AG_CONV_LAYOUT_H

#include "internal.h"

/* The geometry of one convolution, kept in the arena and shared by the
** result and every op its gradients make (attr.ext). */
typedef struct conv_geom {
    int64_t n, c, h, w;      /* input */
    int64_t o, kh, kw;       /* weight [o, c / groups, kh, kw] */
    int64_t oh, ow;          /* output */
    int p[AGI_CONV_PARAMS];  /* stride h, w; padding h, w; dilation h, w; groups */
} conv_geom;

enum { SH, SW, PH, PW, DH, DW, GROUPS };

/* Group gi of image n of x unfolded into cols [C/groups KH KW, OH OW], one
** row per kernel tap, zeros where a window reads padding; with 'fold', the
** reverse: cols added back into the image y. On the pool (NULL: this
** thread), a task per channel. */
void agi_conv_unfold(ag_pool *pool, const conv_geom *g, ag_dtype dt, bool fold, int64_t n,
                     int64_t gi, const void *x, void *cols, void *y);
/* Group gi of image n of gy into its bands for the flipped input gradient
** [O/groups KW, H + KH - 1, W], or (of_x) of x into those of the weight
** gradient by kernel rows [C/groups KW, OH + KH - 1, OW]. */
void agi_conv_bands(const conv_geom *g, ag_dtype dt, bool of_x, const void *src, int64_t n,
                    int64_t gi, void *b);
/* The kernel w flipped for the input gradient: f[g][i'][c][o][j'] =
** w[g O/groups + o][c][KH-1-i'][KW-1-j']. */
void agi_conv_flip(const conv_geom *g, ag_dtype dt, const void *w, void *f);
/* d [cols, rows] = s [rows, cols] transposed: plainly, or (transpose_out,
** for a product's result into its place) by the gemm's SIMD stores where
** they run. */
void agi_conv_transpose(ag_dtype dt, int64_t rows, int64_t cols, const void *s, void *d);
void agi_conv_transpose_out(ag_dtype dt, int64_t rows, int64_t cols, const void *s, void *d);
/* gy_n[g] [og, P] into gyt [P, og], by the gemm's SIMD transposes where
** they run. */
void agi_conv_transpose_gy(ag_dtype dt, int64_t og, int64_t P, const void *gy, void *gyt);
/* out[o][c][i][j] = s[i][c][j][o] for one group: the weight gradient by
** kernel rows' sums into the weight's layout. */
void agi_conv_unrow(const conv_geom *g, ag_dtype dt, const void *s, void *out);

#endif
