/*
** conv_layout.c: the data movement of the convolution (ops_conv.c says
** which product needs which): unfolding an image's receptive fields into
** columns and folding them back (im2col, col2im), the bands of shifted
** planes that the flipped input gradient and the weight gradient by kernel
** rows read in place, the flipped kernel, and the transposes between a
** product's layout and NCHW. Copies only: no arithmetic but the fold's
** additions, so none of it changes a bit of any sum.
*/
#include "conv_layout.h"
#include "kernels/gemm_internal.h"
#include "kernels/simd_clones.h"

#include <limits.h>
#include <string.h>

/* d[0, len) = s[0, len) for a short run (a row of a small image): in
** blocks of RUN_BLOCK elements of a size the compiler knows, so each is a
** vector move or two, the last block overlapping the one before; a call
** to memcpy (which the compiler makes of a plain loop) cost more than the
** copy. */
enum { RUN_BLOCK = 8 };
#define COPY_RUN(T, d, s, len)                                                                     \
    do {                                                                                           \
        T *d_ = (d);                                                                               \
        const T *s_ = (s);                                                                         \
        int64_t n_ = (len);                                                                        \
        if (n_ >= RUN_BLOCK) {                                                                     \
            for (int64_t k_ = 0; k_ + RUN_BLOCK <= n_; k_ += RUN_BLOCK)                            \
                memcpy(d_ + k_, s_ + k_, RUN_BLOCK * sizeof(T));                                   \
            memcpy(d_ + n_ - RUN_BLOCK, s_ + n_ - RUN_BLOCK, RUN_BLOCK * sizeof(T));               \
        } else {                                                                                   \
            for (int64_t k_ = 0; k_ < n_; k_++)                                                    \
                d_[k_] = s_[k_];                                                                   \
        }                                                                                          \
    } while (0)

/* Where kernel tap (i, j) of a window reads, as unfold and fold both need
** it: output (oy, ox) reads input row oy sh + yoff, column ox sw + x0. With
** unit stride and dilation, the output columns whose tap lands inside the
** input row are [lo, hi). For "same" (below) only: the output rows inside
** the plane are [oy0, oy1), and the tap's rows there are one run of the
** flat plane: 'run' elements (none when run <= 0) from plane_at, at row_at
** in the tap's row, leaving out the |x0| elements at one end that wrapped
** from the next or the previous row. Always inlined (AGK_INLINE): the
** callers are SIMD clones, which GCC inlines a plain function into only
** when told to. */
typedef struct tap_geom {
    int64_t x0, yoff;
    int64_t lo, hi;
    int64_t oy0, oy1;
    int64_t plane_at, row_at, run;
} tap_geom;

AGK_INLINE tap_geom tap_geom_of(const conv_geom *g, int64_t i, int64_t j)
{
    const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow;
    tap_geom t;
    t.x0 = j * g->p[DW] - g->p[PW];
    t.yoff = i * g->p[DH] - g->p[PH];
    t.lo = t.x0 < 0 ? -t.x0 : 0;
    t.lo = t.lo > ow ? ow : t.lo;
    t.hi = w - t.x0 < ow ? w - t.x0 : ow;
    t.hi = t.hi < t.lo ? t.lo : t.hi;
    t.oy0 = t.yoff < 0 ? -t.yoff : 0;
    t.oy0 = t.oy0 > oh ? oh : t.oy0;
    t.oy1 = h - t.yoff < oh ? h - t.yoff : oh;
    t.oy1 = t.oy1 < t.oy0 ? t.oy0 : t.oy1;
    int64_t head = t.x0 < 0 ? -t.x0 : 0, tail = t.x0 > 0 ? t.x0 : 0;
    t.plane_at = (t.oy0 + t.yoff) * w + t.x0 + head;
    t.row_at = t.oy0 * ow + head;
    t.run = (t.oy1 - t.oy0) * ow - head - tail;
    return t;
}

/* Unfolds channel c of group gi of image n of x into its rows of cols
** [K, OH*OW] (one row per kernel tap (c, i, j)), with zeros where a window
** reads padding; fold is the reverse, adding such rows back into the
** image. Each tap's rows that read inside the image, [oy0, oy1), go by one
** of three loops:
**  - "same" (stride and dilation 1, OW == W, as a 3x3 kernel with padding
**    1): the tap reads the plane shifted by yoff rows and x0 columns, so
**    its rows are one run of the flat plane, copied (or added) whole; the
**    column or two where a row's run wraps into the next row are then the
**    padding, zeroed in the columns (fold: zeroed before adding, and adding
**    +0 leaves every sum as it was, since a sum that starts from +0 is
**    never -0);
**  - unit (stride and dilation 1): each row is a run [lo, hi) of an input
**    row, zeros at the ends;
**  - any other: element by element.
** The geometry is read into locals first (the tap's into a tap_geom, a
** local whose address is never taken): the stores through cols (and
** memcpy's) may alias g as far as the compiler knows. */
#define DEFINE_UNFOLD(T, SUFFIX)                                                                   \
    /* "same": zeros in the tap's rows [oy0, oy1) outside the columns [lo, hi),                 \
    ** by columns: a row's loop became a call to memset, per row */                            \
    AGK_INLINE void zero_edges_##SUFFIX(T *restrict row, int64_t ow, tap_geom t)                   \
    {                                                                                              \
        for (int64_t ox = 0; ox < t.lo; ox++)                                                      \
            for (int64_t oy = t.oy0; oy < t.oy1; oy++)                                             \
                row[oy * ow + ox] = 0;                                                             \
        for (int64_t ox = t.hi; ox < ow; ox++)                                                     \
            for (int64_t oy = t.oy0; oy < t.oy1; oy++)                                             \
                row[oy * ow + ox] = 0;                                                             \
    }                                                                                              \
    AGK_SIMD_CLONES static void unfold_##SUFFIX(const conv_geom *g, const T *restrict x, int64_t n, \
                                                int64_t gi, int64_t c, T *restrict cols)           \
    {                                                                                              \
        const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;          \
        const int64_t sh = g->p[SH], sw = g->p[SW], dh = g->p[DH], dw = g->p[DW];                  \
        const int64_t cg = g->c / g->p[GROUPS], P = oh * ow;                                       \
        const T *plane = x + ((n * g->c) + gi * cg + c) * h * w;                                   \
        bool unit = sw == 1 && dw == 1, same = unit && sh == 1 && dh == 1 && ow == w;              \
        for (int64_t i = 0; i < kh; i++)                                                           \
            for (int64_t j = 0; j < kw; j++) {                                                     \
                T *row = cols + ((c * kh + i) * kw + j) * P;                                       \
                const tap_geom t = tap_geom_of(g, i, j);                                           \
                if (same) {                                                                        \
                    for (int64_t k = 0; k < t.oy0 * ow; k++) /* a row or two: no call */         \
                        row[k] = 0;                                                                \
                    for (int64_t k = t.oy1 * ow; k < oh * ow; k++)                                 \
                        row[k] = 0;                                                                \
                    if (t.run > 0)                                                                 \
                        memcpy(row + t.row_at, plane + t.plane_at, (size_t)t.run * sizeof(T));     \
                    zero_edges_##SUFFIX(row, ow, t);                                               \
                    continue;                                                                      \
                }                                                                                  \
                for (int64_t oy = 0; oy < oh; oy++) {                                              \
                    int64_t y = oy * sh + t.yoff;                                                  \
                    T *dst = row + oy * ow;                                                        \
                    if (y < 0 || y >= h) {                                                         \
                        memset(dst, 0, (size_t)ow * sizeof(T));                                    \
                        continue;                                                                  \
                    }                                                                              \
                    const T *src = plane + y * w;                                                  \
                    if (unit) {                                                                    \
                        for (int64_t ox = 0; ox < t.lo; ox++)                                      \
                            dst[ox] = 0;                                                           \
                        COPY_RUN(T, dst + t.lo, src + t.lo + t.x0, t.hi - t.lo);                   \
                        for (int64_t ox = t.hi; ox < ow; ox++)                                     \
                            dst[ox] = 0;                                                           \
                        continue;                                                                  \
                    }                                                                              \
                    for (int64_t ox = 0; ox < ow; ox++) {                                          \
                        int64_t xx = ox * sw + t.x0;                                               \
                        dst[ox] = xx >= 0 && xx < w ? src[xx] : (T)0;                              \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }                                                                                              \
    /* cols is scratch: "same" zeroes its padding columns before adding */                      \
    AGK_SIMD_CLONES static void fold_##SUFFIX(const conv_geom *g, T *restrict cols, int64_t n,     \
                                              int64_t gi, int64_t c, T *restrict x)                \
    {                                                                                              \
        const int64_t h = g->h, w = g->w, oh = g->oh, ow = g->ow, kh = g->kh, kw = g->kw;          \
        const int64_t sh = g->p[SH], sw = g->p[SW], dh = g->p[DH], dw = g->p[DW];                  \
        const int64_t cg = g->c / g->p[GROUPS], P = oh * ow;                                       \
        T *plane = x + ((n * g->c) + gi * cg + c) * h * w;                                         \
        bool unit = sw == 1 && dw == 1, same = unit && sh == 1 && dh == 1 && ow == w;              \
        for (int64_t i = 0; i < kh; i++)                                                           \
            for (int64_t j = 0; j < kw; j++) {                                                     \
                T *row = cols + ((c * kh + i) * kw + j) * P;                                       \
                const tap_geom t = tap_geom_of(g, i, j);                                           \
                if (same) {                                                                        \
                    zero_edges_##SUFFIX(row, ow, t);                                               \
                    T *dst = plane + t.plane_at;                                                   \
                    const T *src = row + t.row_at;                                                 \
                    for (int64_t q = 0; q < t.run; q++)                                            \
                        dst[q] += src[q];                                                          \
                    continue;                                                                      \
                }                                                                                  \
                for (int64_t oy = 0; oy < oh; oy++) {                                              \
                    int64_t y = oy * sh + t.yoff;                                                  \
                    if (y < 0 || y >= h)                                                           \
                        continue;                                                                  \
                    T *dst = plane + y * w;                                                        \
                    const T *src = row + oy * ow;                                                  \
                    if (unit) {                                                                    \
                        for (int64_t ox = t.lo; ox < t.hi; ox++)                                   \
                            dst[ox + t.x0] += src[ox];                                             \
                        continue;                                                                  \
                    }                                                                              \
                    for (int64_t ox = 0; ox < ow; ox++) {                                          \
                        int64_t xx = ox * sw + t.x0;                                               \
                        if (xx >= 0 && xx < w)                                                     \
                            dst[xx] += src[ox];                                                    \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }
DEFINE_UNFOLD(float, f32)
DEFINE_UNFOLD(double, f64)

/* Group gi of image n unfolded into (or folded back from) cols [K, OH*OW],
** one task per channel, each writing only its own rows (unfold) or its own
** plane (fold): on the pool when the images run one at a time, else (pool
** NULL) on the calling thread. */
typedef struct unfold_job {
    const conv_geom *g;
    ag_dtype dt;
    bool fold;
    int64_t n, gi;
    const void *x;   /* unfold: the input */
    void *cols, *y;  /* fold: y receives */
} unfold_job;

static void unfold_tasks(void *ctx, int64_t begin, int64_t end)
{
    const unfold_job *j = ctx;
    for (int64_t c = begin; c < end; c++)
        if (j->fold && j->dt == AG_F32)
            fold_f32(j->g, j->cols, j->n, j->gi, c, j->y);
        else if (j->fold)
            fold_f64(j->g, j->cols, j->n, j->gi, c, j->y);
        else if (j->dt == AG_F32)
            unfold_f32(j->g, j->x, j->n, j->gi, c, j->cols);
        else
            unfold_f64(j->g, j->x, j->n, j->gi, c, j->cols);
}

void agi_conv_unfold(ag_pool *pool, const conv_geom *g, ag_dtype dt, bool fold, int64_t n,
                     int64_t gi, const void *x, void *cols, void *y)
{
    unfold_job j = {g, dt, fold, n, gi, x, cols, y};
    int64_t cg = g->c / g->p[GROUPS], per = g->kh * g->kw * g->oh * g->ow;
    /* a task of under some 4K elements is not worth a thread's wake-up */
    ag_pool_for(pool, cg, per >= 4096 ? 1 : 4096 / (per ? per : 1), unfold_tasks, &j);
}

#define DEFINE_FLIP(T, SUFFIX)                                                                     \
    static void flip_##SUFFIX(const conv_geom *g, const T *restrict w, T *restrict f)             \
    {                                                                                              \
        const int64_t groups = g->p[GROUPS], og = g->o / groups, cg = g->c / groups;              \
        const int64_t kh = g->kh, kw = g->kw;                                                      \
        for (int64_t gi = 0; gi < groups; gi++)                                                    \
            for (int64_t i = 0; i < kh; i++)                                                       \
                for (int64_t c = 0; c < cg; c++)                                                   \
                    for (int64_t o = 0; o < og; o++)                                               \
                        for (int64_t j = 0; j < kw; j++)                                           \
                            *f++ = w[(((gi * og + o) * cg + c) * kh + kh - 1 - i) * kw +      \
                                     kw - 1 - j];                                                  \
    }                                                                                              \
    /* np planes [sh, sw] of src into their bands [np KW, rows, bw]: band (q, j)                  \
    ** row r reads plane row r - top, its column x plane column x + j + s0 (zeros                \
    ** outside the plane); top >= 0 and top + sh <= rows */                                       \
    static void bands_##SUFFIX(const T *restrict src, int64_t np, int64_t sh, int64_t sw,          \
                               int64_t kw, int64_t rows, int64_t top, int64_t s0, int64_t bw,      \
                               T *restrict b)                                                      \
    {                                                                                              \
        for (int64_t q = 0; q < np; q++) {                                                         \
            const T *plane = src + q * sh * sw;                                                    \
            for (int64_t j = 0; j < kw; j++, b += rows * bw) {                                     \
                /* band column x reads plane column x + s: [lo, hi) inside */                      \
                int64_t s = j + s0;                                                                \
                int64_t lo = s < 0 ? -s : 0, hi = sw - s < bw ? sw - s : bw;                       \
                lo = lo > bw ? bw : lo;                                                            \
                hi = hi < lo ? lo : hi;                                                            \
                if (sw == bw) {                                                                    \
                    /* "same" (as 3x3 with padding 1): the plane shifted by s is one run,       \
                    ** the column or two where a row's run wraps into the next then zeroed */  \
                    for (int64_t k = 0; k < top * bw; k++)                                         \
                        b[k] = 0;                                                                  \
                    for (int64_t k = (top + sh) * bw; k < rows * bw; k++)                          \
                        b[k] = 0;                                                                  \
                    T *d = b + top * bw;                                                           \
                    int64_t head = s < 0 ? -s : 0, tail = s > 0 ? s : 0;                           \
                    int64_t len = sh * bw - head - tail;                                           \
                    if (len > 0)                                                                   \
                        memcpy(d + head, plane + head + s, (size_t)len * sizeof(T));               \
                    for (int64_t x = 0; x < lo; x++)                                               \
                        for (int64_t y = 0; y < sh; y++)                                           \
                            d[y * bw + x] = 0;                                                     \
                    for (int64_t x = hi; x < bw; x++)                                              \
                        for (int64_t y = 0; y < sh; y++)                                           \
                            d[y * bw + x] = 0;                                                     \
                    continue;                                                                      \
                }                                                                                  \
                for (int64_t r = 0; r < rows; r++) {                                               \
                    T *dst = b + r * bw;                                                           \
                    int64_t y = r - top;                                                           \
                    if (y < 0 || y >= sh) {                                                        \
                        for (int64_t x = 0; x < bw; x++)                                           \
                            dst[x] = 0;                                                            \
                        continue;                                                                  \
                    }                                                                              \
                    for (int64_t x = 0; x < lo; x++)                                               \
                        dst[x] = 0;                                                                \
                    COPY_RUN(T, dst + lo, plane + y * sw + lo + s, hi - lo);                       \
                    for (int64_t x = hi; x < bw; x++)                                              \
                        dst[x] = 0;                                                                \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }
DEFINE_FLIP(float, f32)
DEFINE_FLIP(double, f64)

/* Group gi of image n of gy into its bands for the input gradient [O/groups
** KW, H + KH - 1, W] (flip_applies), or of x into those of the weight
** gradient [C/groups KW, OH + KH - 1, OW] (rows_applies). */
void agi_conv_bands(const conv_geom *g, ag_dtype dt, bool of_x, const void *src, int64_t n,
                    int64_t gi, void *b)
{
    int64_t groups = g->p[GROUPS], np, sh, sw, rows, top, s0, bw;
    size_t at;
    if (of_x) {
        np = g->c / groups, sh = g->h, sw = g->w, rows = g->oh + g->kh - 1, top = g->p[PH];
        s0 = -(int64_t)g->p[PW], bw = g->ow;
        at = (size_t)((n * g->c + gi * np) * sh * sw);
    } else {
        np = g->o / groups, sh = g->oh, sw = g->ow, rows = g->h + g->kh - 1;
        top = g->kh - 1 - g->p[PH], s0 = -(g->kw - 1 - g->p[PW]), bw = g->w;
        at = (size_t)((n * g->o + gi * np) * sh * sw);
    }
    if (dt == AG_F32)
        bands_f32((const float *)src + at, np, sh, sw, g->kw, rows, top, s0, bw, b);
    else
        bands_f64((const double *)src + at, np, sh, sw, g->kw, rows, top, s0, bw, b);
}

/* d [cols, rows] = s [rows, cols] transposed */
#define DEFINE_TRANSPOSE(T, SUFFIX)                                                                \
    static void transpose_##SUFFIX(int64_t rows, int64_t cols, const T *restrict s,                \
                                   T *restrict d)                                                  \
    {                                                                                              \
        for (int64_t r = 0; r < rows; r++)                                                         \
            for (int64_t c = 0; c < cols; c++)                                                     \
                d[c * rows + r] = s[r * cols + c];                                                 \
    }
DEFINE_TRANSPOSE(float, f32)
DEFINE_TRANSPOSE(double, f64)

/* A product's result computed transposed, s [rows, cols], into its place
** d [cols, rows]: by the gemm's SIMD transposed stores where they run (a
** scalar loop took 13% of conv2's forward on one thread, Zen 3). */
void agi_conv_transpose_out(ag_dtype dt, int64_t rows, int64_t cols, const void *s, void *d)
{
#if AGK_HAVE_X86
    if (agk_isa_supported(AGK_ISA_AVX2) && rows <= INT_MAX && cols <= INT_MAX) {
        if (dt == AG_F32)
            agk_store_t_f32_avx2(s, (int)cols, (int)rows, (int)cols, d, rows, false);
        else
            agk_store_t_f64_avx2(s, (int)cols, (int)rows, (int)cols, d, rows, false);
        return;
    }
#endif
    if (dt == AG_F32)
        transpose_f32(rows, cols, s, d);
    else
        transpose_f64(rows, cols, s, d);
}

/* gy_n[g] [Og, P] into gyt [P, Og]: by the gemm's SIMD transposes where
** they run (a scalar loop took 13% of the layer's weight gradient) */
void agi_conv_transpose_gy(ag_dtype dt, int64_t og, int64_t P, const void *gy, void *gyt)
{
#if AGK_HAVE_X86
    if (agk_isa_supported(AGK_ISA_AVX2) && og % (dt == AG_F32 ? 8 : 4) == 0 && og <= INT_MAX) {
        if (dt == AG_F32)
            agk_pack_t_f32_avx2(P, og, gy, P, gyt, (int)og);
        else
            agk_pack_t_f64_avx2(P, og, gy, P, gyt, (int)og);
        return;
    }
#endif
    if (dt == AG_F32)
        transpose_f32(og, P, gy, gyt);
    else
        transpose_f64(og, P, gy, gyt);
}

/* out[o][c][i][j] = s[i][c][j][o] for one group (rows_applies' sums) */
#define DEFINE_UNROW(T, SUFFIX)                                                                    \
    static void unrow_##SUFFIX(const conv_geom *g, const T *restrict s, T *restrict out)          \
    {                                                                                              \
        const int64_t og = g->o / g->p[GROUPS], cg = g->c / g->p[GROUPS], kh = g->kh, kw = g->kw; \
        for (int64_t i = 0; i < kh; i++)                                                           \
            for (int64_t c = 0; c < cg; c++)                                                       \
                for (int64_t j = 0; j < kw; j++, s += og)                                          \
                    for (int64_t o = 0; o < og; o++)                                               \
                        out[((o * cg + c) * kh + i) * kw + j] = s[o];                              \
    }
DEFINE_UNROW(float, f32)
DEFINE_UNROW(double, f64)

void agi_conv_flip(const conv_geom *g, ag_dtype dt, const void *w, void *f)
{
    if (dt == AG_F32)
        flip_f32(g, w, f);
    else
        flip_f64(g, w, f);
}

void agi_conv_transpose(ag_dtype dt, int64_t rows, int64_t cols, const void *s, void *d)
{
    if (dt == AG_F32)
        transpose_f32(rows, cols, s, d);
    else
        transpose_f64(rows, cols, s, d);
}

void agi_conv_unrow(const conv_geom *g, ag_dtype dt, const void *s, void *out)
{
    if (dt == AG_F32)
        unrow_f32(g, s, out);
    else
        unrow_f64(g, s, out);
}
