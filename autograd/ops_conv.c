/*
** ops_conv.c: 2-D convolution, NCHW, as PyTorch defines it (stride,
** padding, dilation, groups, optional bias). Three ops, all bilinear:
**
**   conv2d(x, w)               y[n,o]  = sum_c,i,j w[o,c,i,j] x[n,c,(oy s + i d - p)...]
**   conv2d_input_grad(g, w)    the adjoint of conv2d in x (a transposed convolution)
**   conv2d_weight_grad(x, g)   the adjoint of conv2d in w (a correlation of x with g)
**
** Each one's VJP is made of the three, so gradients of any order follow:
** <g, conv(x, w)> = <input_grad(g, w), x> = <weight_grad(x, g), w>.
**
** Each product goes through the packed gemm, one image at a time (and
** group by group): the image's receptive fields are unfolded into a
** [C/groups * KH * KW, OH * OW] matrix (im2col) in arena scratch, and the
** weight multiplies it, straight into the image's NCHW rows; the input
** gradient folds such a matrix back (col2im), or, with stride 1 and enough
** channels, correlates g with the flipped kernel (flip_applies); the weight
** gradient, with stride 1 and enough channels, reads x through bands
** instead of unfolding it (rows_applies), and with few columns is summed
** without the gemm (kernels/conv_narrow.c); the copies that lay the data
** out for the products are conv_layout.c's. Images share out among the
** pool's threads (conv_run says how, and why the bits stay the same on any
** threads). Scratch comes from the tape's arena, so a repeated training
** step allocates nothing.
*/
#include "conv_layout.h"
#include "kernels/kernels.h"
#include "kernels/conv_narrow.h"

#include <string.h>

static int64_t out_size(int64_t in, int64_t k, int stride, int pad, int dil)
{
    return (in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1) / stride + 1;
}

/* Validates the settings and sizes (errors name 'who') and makes the
** geometry in the arena; NULL after recording an error. */
static conv_geom *geom_make(ag_tape *t, const char *who, int64_t n, int64_t c, int64_t h,
                            int64_t w, int64_t o, int64_t kh, int64_t kw, const int *p)
{
    if (p[SH] < 1 || p[SW] < 1)
        return agi_error(t, AG_EINVAL, "%s: stride (%d, %d) must be positive", who, p[SH], p[SW]),
               NULL;
    if (p[PH] < 0 || p[PW] < 0)
        return agi_error(t, AG_EINVAL, "%s: padding (%d, %d) must not be negative", who, p[PH],
                         p[PW]),
               NULL;
    if (p[DH] < 1 || p[DW] < 1)
        return agi_error(t, AG_EINVAL, "%s: dilation (%d, %d) must be positive", who, p[DH],
                         p[DW]),
               NULL;
    if (p[GROUPS] < 1 || c % p[GROUPS] || o % p[GROUPS])
        return agi_error(t, AG_EINVAL,
                         "%s: groups %d must be positive and divide both %lld input and %lld "
                         "output channels",
                         who, p[GROUPS], (long long)c, (long long)o),
               NULL;
    if (kh < 1 || kw < 1)
        return agi_error(t, AG_ESHAPE, "%s: kernel %lldx%lld is empty", who, (long long)kh,
                         (long long)kw),
               NULL;
    int64_t ekh = (int64_t)p[DH] * (kh - 1) + 1, ekw = (int64_t)p[DW] * (kw - 1) + 1;
    if (ekh > h + 2 * (int64_t)p[PH] || ekw > w + 2 * (int64_t)p[PW])
        return agi_error(t, AG_ESHAPE,
                         "%s: kernel %lldx%lld (dilated %lldx%lld) is larger than the padded "
                         "input %lldx%lld",
                         who, (long long)kh, (long long)kw, (long long)ekh, (long long)ekw,
                         (long long)(h + 2 * (int64_t)p[PH]), (long long)(w + 2 * (int64_t)p[PW])),
               NULL;
    conv_geom *g = agi_arena_alloc(t, sizeof *g, _Alignof(conv_geom));
    if (!g)
        return NULL;
    *g = (conv_geom){.n = n, .c = c, .h = h, .w = w, .o = o, .kh = kh, .kw = kw,
                     .oh = out_size(h, kh, p[SH], p[PH], p[DH]),
                     .ow = out_size(w, kw, p[SW], p[PW], p[DW])};
    memcpy(g->p, p, sizeof g->p);
    return g;
}


/* The products of a convolution run image by image (or, for the weight
** gradient, chunk of images by chunk), each image on one thread with its
** own scratch: its unfolded columns [K, OH*OW] per group, small enough to
** stay in that thread's cache while the gemm packs them, and the gemm's
** scratch. One image of NCHW, [O, OH*OW], is the product's own layout, so
**
**   forward         y_n[g]  = W_g [Og, K] @ cols_n,g        (written in place)
**   input gradient  cols    = W_g^T [K, Og] @ gy_n[g]       (read in place), folded into dx_n
**                   (or, with stride 1, as a correlation of gy with the flipped
**                   kernel written in place: flip_applies says where)
**   weight gradient dW_g   += gy_n[g] [Og, P] @ cols_n,g^T   (summed transposed: conv_chunk)
**
** read and write the tensors where they lie. With fewer images than
** threads, the images run one at a time instead, with the unfolding and
** the gemm on the pool. Either way each element is computed the same, so
** the bits do not depend on the threads; the weight gradient sums its
** images in fixed chunks (weight_chunks: the geometry's, whatever the
** threads), each chunk a chain in order of its images, and then the chunks
** in order. */
enum { WEIGHT_CHUNKS = 8, WEIGHT_CHUNKS_MAX = 32 };
/* Partial sums up to this size in all take more chunks than WEIGHT_CHUNKS. */
#define WEIGHT_PARTIALS_BYTES (1u << 20)

/* Images per chunk of the weight gradient. A chunk is what a thread takes
** at a time, so with 8 the last one could keep the other thread waiting for
** 8 of the example's images (its second layer's weight gradient, 18 KB,
** took 38 us an image on each of two threads, Zen 3); a small gradient is
** cut finer, up to WEIGHT_CHUNKS_MAX chunks, while their partial sums stay
** within WEIGHT_PARTIALS_BYTES. Depends on the geometry alone. */
static int64_t weight_chunk_images(const conv_geom *g, size_t es)
{
    int64_t k = g->c / g->p[GROUPS] * g->kh * g->kw;
    size_t one = (size_t)(g->o * k) * es;
    int64_t chunks = one ? (int64_t)(WEIGHT_PARTIALS_BYTES / one) : WEIGHT_CHUNKS_MAX;
    if (chunks < WEIGHT_CHUNKS)
        chunks = WEIGHT_CHUNKS;
    if (chunks > WEIGHT_CHUNKS_MAX)
        chunks = WEIGHT_CHUNKS_MAX;
    return (g->n + chunks - 1) / chunks;
}

typedef enum conv_kind { CONV_FORWARD, CONV_INPUT_GRAD, CONV_WEIGHT_GRAD } conv_kind;

typedef struct conv_job {
    const conv_geom *g;
    ag_dtype dt;
    conv_kind kind;
    const void *x, *w;      /* forward: x and w; input gradient: w; weight gradient: x */
    const void *gy;         /* the gradients: the output's gradient */
    const ag_tensor *bias;  /* forward: NULL or [O] */
    void *out;
    ag_pool *inner;         /* the pool for one image's loops, when images run one at a time */
    char *scratch;          /* task_bytes per task: the columns, [sum_t], then the gemm's */
    size_t cols_bytes, sum_t_bytes, task_bytes;   /* sum_t: narrow's lanes, or by_rows' gy^T */
    int64_t per_chunk;      /* weight gradient: images per chunk */
    char *partials;         /* weight gradient: chunk c sums into partials[c] ([K, Og] a group,
                            ** transposed, unless narrow) */
    bool flipped;           /* input gradient as a correlation (flip_applies) */
    const void *wt;         /* forward computed transposed: W_g^T [K, Og] a group, or NULL */
    bool narrow;            /* weight gradient summed directly (narrow_applies) */
    bool by_rows;           /* weight gradient by kernel rows over bands (rows_applies) */
    const void *wflip;      /* its kernel: [groups, KH, C/groups, O/groups KW] */
} conv_job;

/* The input gradient of a convolution with stride and dilation 1 is itself
** a convolution: dx[c, y, x] = sum_o,i,j w[o, c, i, j] gy[o, y + p - i, x + p - j]
** reads gy through the taps mirrored, so with the kernel flipped (i' =
** KH-1-i, j' = KW-1-j) it is a correlation of gy padded by KH-1-p (and
** KW-1-p), whose output is exactly H x W. Its columns need not be unfolded
** whole (O KH KW rows of H W: twice the fold's for the example's second
** layer, which made the unfolding cost more than the fold it replaced):
** only the column shifts are. Band (o, j') of gy holds the padded rows of
** gy[o] shifted by j' columns, [H + KH - 1, W], so kernel row i' reads, for
** output (y, x), band (o, j') at row y + i': the bands from row i' on are
** one matrix [O/groups KW, H W] of row stride (H + KH - 1) W, read in place
** by the product with that kernel row, wflip[i'] [C/groups, O/groups KW]
** (wflip[g][i'][c][o][j'] = w[g O/groups + o][c][KH-1-i'][KW-1-j']). So
**
**   dx_n[g] [C/groups, H W] = sum over i' of wflip_g[i'] @ bands_n,g from row i'
**
** KH products of depth O/groups KW (96 for the example), the first with
** agk_gemm and the rest with agk_gemm_add, in order of i': the same sums
** whatever the threads. They are computed transposed, dx^T [H W, C/groups]
** = bands^T @ wflip^T (the kernel kept transposed), in the task's scratch,
** then transposed into dx: the image's H W (196) as rows fills the
** register tiles where as columns it ended in a partial panel the gemm
** packed for every product (12 to 15% of the layer's input gradient on one
** thread, Zen 3); the same chains, the same bits. Needs p <= K-1. It was faster (one
** thread, Zen 3: docs/PERFORMANCE.md) where the product's rows fill some
** register tiles, C/groups >= 16, and the bands are at most 4/5 of the
** fold's columns, O/groups KW (H + KH - 1) W against C/groups KH KW H W:
** 12% on the example's second layer (0.76); at 0.86 (7x7 planes) it was
** even within the noise, and with one input channel (the first layer) the
** product of one row ran 4x slower. Any other geometry, or an
** empty one, keeps the fold. */
enum { FLIP_MIN_CHANNELS = 16 };
static bool flip_applies(const conv_geom *g)
{
    int64_t groups = g->p[GROUPS], cg = g->c / groups, og = g->o / groups;
    return g->p[SH] == 1 && g->p[SW] == 1 && g->p[DH] == 1 && g->p[DW] == 1 &&
           g->p[PH] <= g->kh - 1 && g->p[PW] <= g->kw - 1 && og > 0 && g->h * g->w > 0 &&
           cg >= FLIP_MIN_CHANNELS &&
           5 * og * g->kw * (g->h + g->kh - 1) * g->w <= 4 * cg * g->kh * g->kw * g->h * g->w;
}


static void conv_image(const conv_job *j, char *scratch, int64_t n)
{
    const conv_geom *g = j->g;
    int64_t groups = g->p[GROUPS], og = g->o / groups, k = g->c / groups * g->kh * g->kw;
    int64_t P = g->oh * g->ow;
    size_t es = ag_dtype_size(j->dt);
    char *cols = scratch, *sum_t = scratch + j->cols_bytes, *gs = sum_t + j->sum_t_bytes;
    if (j->flipped) {
        int64_t cg = g->c / groups, kt = og * g->kw, hw = g->h * g->w;
        int64_t ldb = (g->h + g->kh - 1) * g->w;
        char *dxt = sum_t;   /* dx_n[g] transposed, [H W, C/groups] */
        for (int64_t gi = 0; gi < groups; gi++) {
            agi_conv_bands(g, j->dt, false, j->gy, n, gi, cols);
            char *dx = (char *)j->out + (size_t)((n * g->c + gi * cg) * hw) * es;
            for (int64_t i = 0; i < g->kh; i++) {
                const char *b = (const char *)j->wflip + (size_t)((gi * g->kh + i) * cg * kt) * es;
                const char *a = (const char *)cols + (size_t)(i * g->w) * es;
                if (i == 0)
                    agk_gemm(j->dt, hw, cg, kt, a, ldb, true, b, cg, false, dxt, cg, gs, j->inner);
                else
                    agk_gemm_add(j->dt, hw, cg, kt, a, ldb, true, b, cg, false, dxt, cg, gs,
                                 j->inner);
            }
            agi_conv_transpose_out(j->dt, hw, cg, dxt, dx);
        }
        return;
    }
    if (j->kind == CONV_INPUT_GRAD && g->c * g->h * g->w != 0)
        memset((char *)j->out + (size_t)(n * g->c * g->h * g->w) * es, 0,
               (size_t)(g->c * g->h * g->w) * es);
    for (int64_t gi = 0; gi < groups; gi++) {
        const char *wg = (const char *)j->w + (size_t)(gi * og * k) * es;
        size_t rows = (size_t)((n * g->o + gi * og) * P) * es;   /* group gi's rows of image n */
        if (j->kind == CONV_FORWARD && j->wt) {
            /* y_n[g]^T [P, Og] = cols^T @ W_g^T (fwd_transposed) */
            const char *wt = (const char *)j->wt + (size_t)(gi * og * k) * es;
            agi_conv_unfold(j->inner, g, j->dt, false, n, gi, j->x, cols, NULL);
            agk_gemm(j->dt, P, og, k, cols, P, true, wt, og, false, sum_t, og, gs, j->inner);
            agi_conv_transpose_out(j->dt, P, og, sum_t, (char *)j->out + rows);
        } else if (j->kind == CONV_FORWARD) {
            agi_conv_unfold(j->inner, g, j->dt, false, n, gi, j->x, cols, NULL);
            agk_gemm(j->dt, og, P, k, wg, k, false, cols, P, false, (char *)j->out + rows, P, gs,
                     j->inner);
        } else {
            agk_gemm(j->dt, k, P, og, wg, k, true, (const char *)j->gy + rows, P, false, cols, P,
                     gs, j->inner);
            agi_conv_unfold(j->inner, g, j->dt, true, n, gi, NULL, cols, j->out);
        }
    }
    if (j->kind == CONV_FORWARD && j->bias)
        for (int64_t o = 0; o < g->o; o++) {
            double b = agi_get(j->bias, o);
            int64_t base = (n * g->o + o) * P;
            if (j->dt == AG_F32)
                for (int64_t i = 0; i < P; i++)
                    ((float *)j->out)[base + i] += (float)b;
            else
                for (int64_t i = 0; i < P; i++)
                    ((double *)j->out)[base + i] += b;
        }
}

/* A chunk of the weight gradient sums its images' products transposed,
** dW_g^T [K, Og] += cols_n,g [K, P] @ gy_n[g]^T, into its partial sums;
** the chunks' sums are added and transposed once at the end (conv_run).
** The product the other way round took the gemm's transposed stores (it
** swaps a narrow C, and Og is narrow beside K), each image adding into the
** sum through them (12% of the second layer's weight gradient on one
** thread, Zen 3). Each element is the same chain of multiply-adds as dW =
** gy @ cols^T (a product's factors commute), added image by image and then
** chunk by chunk the same: the same bits. */

/* With stride and dilation 1, the weight gradient reads x through bands
** as the input gradient reads gy (flip_applies): band (c, j) holds the rows
** of x[c] padded by PH above and below, shifted by j - PW columns, [OH + KH
** - 1, OW], so the columns of kernel row i, (c, i, j) for all c and j, are
** the bands from row i on, [C/groups KW, OH OW] of row stride (OH + KH - 1)
** OW, read in place:
**
**   dW_g^T[i] [C/groups KW, Og] += bands_n,g from row i @ gy_n[g]^T
**
** with gy_n[g] transposed once per image (the gemm packed it anew for each
** product). The bands are (OH + KH - 1) / (KH OH) of the unfolded columns
** (0.38 for the example's second layer), and each element is the same
** chain as from the columns: the same bits. The partial sums are then
** [KH, C/groups KW, Og] a group, rearranged at the end. Where the bands are
** at most 4/5 of the columns, with 16 or more channels a group. */
static bool rows_applies(const conv_geom *g)
{
    int64_t groups = g->p[GROUPS], cg = g->c / groups, og = g->o / groups;
    return g->p[SH] == 1 && g->p[SW] == 1 && g->p[DH] == 1 && g->p[DW] == 1 && og > 0 &&
           g->oh * g->ow > 0 && cg >= FLIP_MIN_CHANNELS &&
           5 * (g->oh + g->kh - 1) <= 4 * g->kh * g->oh;
}


/* A narrow weight gradient (conv_narrow.c) */
static bool narrow_applies(const conv_geom *g)
{
    return g->c / g->p[GROUPS] * g->kh * g->kw <= AGK_NARROW_MAX_K;
}


static void conv_chunk(const conv_job *j, char *scratch, int64_t chunk)
{
    const conv_geom *g = j->g;
    int64_t groups = g->p[GROUPS], og = g->o / groups, k = g->c / groups * g->kh * g->kw;
    int64_t P = g->oh * g->ow, n0 = chunk * j->per_chunk;
    int64_t n1 = g->n - n0 < j->per_chunk ? g->n : n0 + j->per_chunk;
    size_t es = ag_dtype_size(j->dt);
    char *cols = scratch, *sum_t = scratch + j->cols_bytes, *gs = sum_t + j->sum_t_bytes;
    char *sum = j->partials + (size_t)(chunk * g->o * k) * es;
    if (j->narrow) {
        int64_t per = agk_narrow_sums(og, k);
        memset(sum_t, 0, (size_t)(groups * per) * es);
        for (int64_t n = n0; n < n1; n++)
            for (int64_t gi = 0; gi < groups; gi++) {
                agi_conv_unfold(j->inner, g, j->dt, false, n, gi, j->x, cols, NULL);
                const char *gy = (const char *)j->gy + (size_t)((n * g->o + gi * og) * P) * es;
                agk_narrow_add(j->dt, gy, cols, og, k, P, sum_t + (size_t)(gi * per) * es);
            }
        for (int64_t gi = 0; gi < groups; gi++)
            agk_narrow_total(j->dt, sum_t + (size_t)(gi * per) * es, og, k,
                             sum + (size_t)(gi * og * k) * es);
        return;
    }
    if (j->by_rows) {
        int64_t cg = g->c / groups, kt = cg * g->kw, lda = (g->oh + g->kh - 1) * g->ow;
        char *gyt = sum_t;   /* gy_n[g] transposed, [P, Og] */
        for (int64_t n = n0; n < n1; n++)
            for (int64_t gi = 0; gi < groups; gi++) {
                const char *gyn = (const char *)j->gy + (size_t)((n * g->o + gi * og) * P) * es;
                agi_conv_bands(g, j->dt, true, j->x, n, gi, cols);
                agi_conv_transpose_gy(j->dt, og, P, gyn, gyt);
                for (int64_t i = 0; i < g->kh; i++) {
                    const char *a = cols + (size_t)(i * g->ow) * es;
                    char *c = sum + (size_t)(gi * og * k + i * kt * og) * es;
                    if (n == n0)
                        agk_gemm(j->dt, kt, og, P, a, lda, false, gyt, og, false, c, og, gs,
                                 j->inner);
                    else
                        agk_gemm_add(j->dt, kt, og, P, a, lda, false, gyt, og, false, c, og, gs,
                                     j->inner);
                }
            }
        return;
    }
    for (int64_t n = n0; n < n1; n++)
        for (int64_t gi = 0; gi < groups; gi++) {
            const char *b = (const char *)j->gy + (size_t)((n * g->o + gi * og) * P) * es;
            char *c = sum + (size_t)(gi * og * k) * es;
            agi_conv_unfold(j->inner, g, j->dt, false, n, gi, j->x, cols, NULL);
            if (n == n0)
                agk_gemm(j->dt, k, og, P, cols, P, false, b, P, true, c, og, gs, j->inner);
            else
                agk_gemm_add(j->dt, k, og, P, cols, P, false, b, P, true, c, og, gs, j->inner);
        }
}

static void conv_range(void *ctx, int task, int64_t begin, int64_t end)
{
    const conv_job *j = ctx;
    char *scratch = j->scratch + (size_t)task * j->task_bytes;
    for (int64_t u = begin; u < end; u++)
        if (j->kind == CONV_WEIGHT_GRAD)
            conv_chunk(j, scratch, u);
        else
            conv_image(j, scratch, u);
}

static size_t round64(size_t n) { return (n + 63) / 64 * 64; }

/* out += partial 0, then partial 1, ... element by element (the bits of
** adding each partial in turn), in one pass over out. */
typedef struct sum_job {
    ag_dtype dt;
    int64_t parts, len;   /* partials [parts, len] */
    void *out;
    const void *partials;
} sum_job;

enum { SUM_GRAIN = 4096 };

#define DEFINE_SUM_PARTIALS(T, SUFFIX)                                                             \
    AGK_SIMD_CLONES static void sum_partials_##SUFFIX(T *restrict out, const T *restrict p,      \
                                                      int64_t parts, int64_t len, int64_t begin,   \
                                                      int64_t end)                                 \
    {                                                                                              \
        for (int64_t c = 0; c < parts; c++)                                                        \
            for (int64_t e = begin; e < end; e++)                                                  \
                out[e] += p[c * len + e];                                                          \
    }
DEFINE_SUM_PARTIALS(float, f32)
DEFINE_SUM_PARTIALS(double, f64)

static void sum_partials(void *ctx, int64_t begin, int64_t end)
{
    const sum_job *j = ctx;
    if (j->dt == AG_F32)
        sum_partials_f32(j->out, j->partials, j->parts, j->len, begin, end);
    else
        sum_partials_f64(j->out, j->partials, j->parts, j->len, begin, end);
}

/* Runs job j (its kind, tensors and geometry set) over the batch; false
** with the tape in error when the scratch cannot be had. */
static bool conv_run(ag_tape *t, conv_job *j)
{
    const conv_geom *g = j->g;
    int64_t groups = g->p[GROUPS], og = g->o / groups, k = g->c / groups * g->kh * g->kw;
    int64_t P = g->oh * g->ow, units = g->n, chunks = 0;
    if (j->kind == CONV_WEIGHT_GRAD) {
        j->per_chunk = weight_chunk_images(g, ag_dtype_size(j->dt));
        units = chunks = j->per_chunk ? (g->n + j->per_chunk - 1) / j->per_chunk : 0;
    }
    if (units == 0)
        return true;
    int threads = agk_pool_threads(t->pool);
    bool across = threads > 1 && units >= threads;
    int tasks = across ? threads : 1;
    j->inner = across ? NULL : t->pool;
    size_t es = ag_dtype_size(j->dt);
    size_t gemm = j->kind == CONV_FORWARD ? agk_gemm_scratch(j->dt, og, P, k, false, false, j->inner)
                  : j->kind == CONV_INPUT_GRAD
                      ? agk_gemm_scratch(j->dt, k, P, og, true, false, j->inner)
                      : agk_gemm_scratch(j->dt, k, og, P, false, true, j->inner);
    size_t cols = (size_t)(k * P);
    j->flipped = j->kind == CONV_INPUT_GRAD && flip_applies(g);
    if (j->flipped) {
        int64_t kt = og * g->kw, hw = g->h * g->w, ldb = (g->h + g->kh - 1) * g->w;
        int64_t cg = g->c / groups;
        gemm = agk_gemm_scratch(j->dt, hw, cg, kt, true, false, j->inner);
        cols = (size_t)(kt * ldb);
        void *f = agi_arena_alloc(t, (size_t)(g->c * kt * g->kh) * es, 64);
        char *ft = agi_arena_alloc(t, (size_t)(g->c * kt * g->kh) * es, 64);
        if (!f || !ft)
            return false;
        agi_conv_flip(g, j->dt, j->w, f);
        for (int64_t b = 0; b < groups * g->kh; b++) {   /* each [C/groups, O/groups KW] transposed */
            size_t at = (size_t)(b * cg * kt) * es;
            agi_conv_transpose(j->dt, cg, kt, (char *)f + at, ft + at);
        }
        j->wflip = ft;
    }
    /* The forward computed transposed, y_n[g]^T [P, Og] = cols^T @ W_g^T, then
    ** transposed into place, where the image's P as columns would end in a
    ** partial panel that the gemm packs (P not a multiple of 16, the widest
    ** AVX2 panel) and Og fills whole vectors as columns: conv2's 196 pixels
    ** fill the tiles as rows, its 32 channels two panels (7% of its forward
    ** on one thread, Zen 3). The same chains, the same bits. Not for a
    ** shallow product (the first layer's K = 9), whose tiles are stores. */
    if (j->kind == CONV_FORWARD && og % 8 == 0 && P % 16 != 0 && k >= 32) {
        gemm = agk_gemm_scratch(j->dt, P, og, k, true, false, j->inner);
        char *wt = agi_arena_alloc(t, (size_t)(g->o * k) * es, 64);
        if (!wt)
            return false;
        for (int64_t gi = 0; gi < groups; gi++) {
            size_t at = (size_t)(gi * og * k) * es;
            agi_conv_transpose(j->dt, og, k, (const char *)j->w + at, wt + at);
        }
        j->wt = wt;
    }
    j->narrow = j->kind == CONV_WEIGHT_GRAD && narrow_applies(g);
    j->by_rows = j->kind == CONV_WEIGHT_GRAD && !j->narrow && rows_applies(g);
    if (j->narrow)
        gemm = 0;
    if (j->by_rows) {
        int64_t kt = g->c / groups * g->kw;
        gemm = agk_gemm_scratch(j->dt, kt, og, P, false, false, j->inner);
        cols = (size_t)(kt * (g->oh + g->kh - 1) * g->ow);
    }
    j->cols_bytes = round64(cols * es);
    j->sum_t_bytes = j->narrow    ? round64((size_t)(groups * agk_narrow_sums(og, k)) * es)
                     : j->by_rows ? round64((size_t)(P * og) * es)
                     : j->flipped ? round64((size_t)(g->h * g->w * (g->c / groups)) * es)
                     : j->wt      ? round64((size_t)(P * og) * es)
                                  : 0;
    j->task_bytes = j->cols_bytes + j->sum_t_bytes + round64(gemm);
    j->scratch = j->task_bytes ? agi_arena_alloc(t, (size_t)tasks * j->task_bytes, 64) : NULL;
    size_t partial_bytes = (size_t)(chunks * g->o * k) * es;
    j->partials = partial_bytes ? agi_arena_alloc(t, partial_bytes, 64) : NULL;
    if (t->status != AG_OK)
        return false;
    if (!across || !agk_pool_try_ranges(t->pool, tasks, units, conv_range, j))
        conv_range(j, 0, 0, units);
    if (chunks > 0 && partial_bytes) {
        /* the chunks' sums, in order, into the first; then where they go */
        sum_job sj = {j->dt, chunks - 1, g->o * k, j->partials,
                      j->partials + (size_t)(g->o * k) * es};
        if (chunks > 1)
            ag_pool_for(t->pool, g->o * k, SUM_GRAIN, sum_partials, &sj);
        for (int64_t gi = 0; gi < groups; gi++) {
            size_t at = (size_t)(gi * og * k) * es;
            if (j->narrow)   /* already [Og, K] */
                memcpy((char *)j->out + at, j->partials + at, (size_t)(og * k) * es);
            else if (j->by_rows)
                agi_conv_unrow(g, j->dt, j->partials + at, (char *)j->out + at);
            else
                agi_conv_transpose(j->dt, k, og, j->partials + at, (char *)j->out + at);
        }
    }
    return true;
}

static ag_tensor *conv_forward(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b,
                               const conv_geom *g);
static ag_tensor *conv_input_grad(ag_tape *t, ag_tensor *gy, ag_tensor *w, const conv_geom *g);
static ag_tensor *conv_weight_grad(ag_tape *t, ag_tensor *x, ag_tensor *gy, const conv_geom *g);

/* conv2d: d/dx = input_grad(g, w), d/dw = weight_grad(x, g), d/db = g summed
** over N, H, W */
static void vjp_conv2d(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    const conv_geom *geom = out->attr.ext;
    if (agi_needs_grad(out, 0))
        gin[0] = conv_input_grad(t, g, out->in[1], geom);
    if (agi_needs_grad(out, 1))
        gin[1] = conv_weight_grad(t, out->in[0], g, geom);
    if (out->nin == 3 && agi_needs_grad(out, 2)) {
        ag_tensor *s = ag_sum_to(t, g, 4, (int64_t[]){1, geom->o, 1, 1});
        gin[2] = ag_reshape(t, s, 1, &geom->o);
    }
}
/* Bilinear: d conv(x, w) + b = conv(dx, w) + conv(x, dw) + db over [1, O, 1, 1] */
static ag_tensor *jvp_conv2d(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const conv_geom *geom = out->attr.ext;
    ag_tensor *x = out->in[0], *w = out->in[1], *r = NULL;
    if (tan[0])
        r = conv_forward(t, tan[0], w, NULL, geom);
    if (tan[1])
        r = agi_jvp_sum(t, r, conv_forward(t, x, tan[1], NULL, geom));
    if (out->nin == 3 && tan[2])
        r = agi_jvp_sum(t, r, ag_reshape(t, tan[2], 4, (int64_t[]){1, geom->o, 1, 1}));
    return r;
}
static const ag_op op_conv2d = {.name = "conv2d", .vjp = vjp_conv2d, .jvp = jvp_conv2d};

/* input_grad(g, w) is linear in each: in g its adjoint is conv2d(., w); in w,
** <u, input_grad(g, w)> = <conv2d(u, w), g>, whose w-gradient is weight_grad(u, g) */
static void vjp_conv2d_input_grad(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const conv_geom *geom = out->attr.ext;
    if (agi_needs_grad(out, 0))
        gin[0] = conv_forward(t, u, out->in[1], NULL, geom);
    if (agi_needs_grad(out, 1))
        gin[1] = conv_weight_grad(t, u, out->in[0], geom);
}
static ag_tensor *jvp_conv2d_input_grad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const conv_geom *geom = out->attr.ext;
    ag_tensor *r = tan[0] ? conv_input_grad(t, tan[0], out->in[1], geom) : NULL;
    if (tan[1])
        r = agi_jvp_sum(t, r, conv_input_grad(t, out->in[0], tan[1], geom));
    return r;
}
static const ag_op op_conv2d_input_grad = {
    .name = "conv2d_input_grad", .vjp = vjp_conv2d_input_grad, .jvp = jvp_conv2d_input_grad};

/* weight_grad(x, g): <u, weight_grad(x, g)> = <g, conv2d(x, u)>, so the
** x-gradient is input_grad(g, u) and the g-gradient conv2d(x, u) */
static void vjp_conv2d_weight_grad(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    const conv_geom *geom = out->attr.ext;
    if (agi_needs_grad(out, 0))
        gin[0] = conv_input_grad(t, out->in[1], u, geom);
    if (agi_needs_grad(out, 1))
        gin[1] = conv_forward(t, out->in[0], u, NULL, geom);
}
static ag_tensor *jvp_conv2d_weight_grad(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    const conv_geom *geom = out->attr.ext;
    ag_tensor *r = tan[0] ? conv_weight_grad(t, tan[0], out->in[1], geom) : NULL;
    if (tan[1])
        r = agi_jvp_sum(t, r, conv_weight_grad(t, out->in[0], tan[1], geom));
    return r;
}
static const ag_op op_conv2d_weight_grad = {
    .name = "conv2d_weight_grad", .vjp = vjp_conv2d_weight_grad, .jvp = jvp_conv2d_weight_grad};

static ag_tensor *conv_forward(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b,
                               const conv_geom *g)
{
    ag_tensor *in[3] = {x, w, b};
    int nin = b ? 3 : 2;
    if (!agi_check_inputs(t, "ag_conv2d", nin, in, true))
        return agi_nil(t);
    ag_dtype dt = (ag_dtype)x->dtype;
    ag_tensor *out = agi_new(t, &op_conv2d, nin, in, dt, 4, (int64_t[]){g->n, g->o, g->oh, g->ow});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = g;
    conv_job j = {.g = g, .dt = dt, .kind = CONV_FORWARD, .x = x->value, .w = w->value, .bias = b,
                  .out = out->value};
    return conv_run(t, &j) ? out : agi_nil(t);
}

static ag_tensor *conv_input_grad(ag_tape *t, ag_tensor *gy, ag_tensor *w, const conv_geom *g)
{
    ag_tensor *in[2] = {gy, w};
    if (!agi_check_inputs(t, "conv2d_input_grad", 2, in, true))
        return agi_nil(t);
    ag_dtype dt = (ag_dtype)gy->dtype;
    ag_tensor *out = agi_new(t, &op_conv2d_input_grad, 2, in, dt, 4,
                             (int64_t[]){g->n, g->c, g->h, g->w});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = g;
    conv_job j = {.g = g, .dt = dt, .kind = CONV_INPUT_GRAD, .w = w->value, .gy = gy->value,
                  .out = out->value};
    return conv_run(t, &j) ? out : agi_nil(t);
}

static ag_tensor *conv_weight_grad(ag_tape *t, ag_tensor *x, ag_tensor *gy, const conv_geom *g)
{
    ag_tensor *in[2] = {x, gy};
    if (!agi_check_inputs(t, "conv2d_weight_grad", 2, in, true))
        return agi_nil(t);
    ag_dtype dt = (ag_dtype)x->dtype;
    int64_t cg = g->c / g->p[GROUPS];
    ag_tensor *out = agi_new(t, &op_conv2d_weight_grad, 2, in, dt, 4,
                             (int64_t[]){g->o, cg, g->kh, g->kw});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = g;
    if (g->n == 0 && out->numel)   /* no image to sum */
        memset(out->value, 0, (size_t)out->numel * ag_dtype_size(dt));
    conv_job j = {.g = g, .dt = dt, .kind = CONV_WEIGHT_GRAD, .x = x->value, .gy = gy->value,
                  .out = out->value};
    return conv_run(t, &j) ? out : agi_nil(t);
}

ag_tensor *ag_conv2d(ag_tape *t, ag_tensor *x, ag_tensor *w, ag_tensor *b, int stride_h,
                     int stride_w, int pad_h, int pad_w, int dil_h, int dil_w, int groups)
{
    ag_tensor *in[3] = {x, w, b};
    if (!agi_check_inputs(t, "ag_conv2d", b ? 3 : 2, in, true))
        return agi_nil(t);
    if (x->rank != 4 || w->rank != 4)
        return agi_error(t, AG_ESHAPE,
                         "ag_conv2d: x %s and w %s must both have rank 4 (x: N,C,H,W; w: "
                         "O,C/groups,KH,KW)",
                         agi_shp(x, 0), agi_shp(w, 1));
    const int64_t *xs = x->shape, *ws = w->shape;
    if (groups >= 1 && ws[1] * groups != xs[1])
        return agi_error(t, AG_ESHAPE,
                         "ag_conv2d: x %s has %lld channels, but w %s with groups %d takes %lld",
                         agi_shp(x, 0), (long long)xs[1], agi_shp(w, 1), groups,
                         (long long)(ws[1] * groups));
    if (b && (b->rank != 1 || b->shape[0] != ws[0]))
        return agi_error(t, AG_ESHAPE, "ag_conv2d: bias %s must be [%lld] for w %s",
                         agi_shp(b, 0), (long long)ws[0], agi_shp(w, 1));
    const int p[AGI_CONV_PARAMS] = {stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups};
    conv_geom *g = geom_make(t, "ag_conv2d", xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], ws[3], p);
    if (!g)
        return agi_nil(t);
    return conv_forward(t, x, w, b, g);
}

ag_tensor *agi_conv2d_input_grad(ag_tape *t, ag_tensor *g, ag_tensor *w, int64_t h, int64_t wd,
                                 const int *p)
{
    ag_tensor *in[2] = {g, w};
    if (!agi_check_inputs(t, "conv2d_input_grad", 2, in, true))
        return agi_nil(t);
    if (g->rank != 4 || w->rank != 4)
        return agi_error(t, AG_ESHAPE, "conv2d_input_grad: g %s and w %s must have rank 4",
                         agi_shp(g, 0), agi_shp(w, 1));
    conv_geom *geom = geom_make(t, "conv2d_input_grad", g->shape[0], w->shape[1] * p[GROUPS], h,
                                wd, w->shape[0], w->shape[2], w->shape[3], p);
    if (!geom)
        return agi_nil(t);
    if (geom->oh != g->shape[2] || geom->ow != g->shape[3] || geom->o != g->shape[1])
        return agi_error(t, AG_ESHAPE, "conv2d_input_grad: g %s does not fit w %s", agi_shp(g, 0),
                         agi_shp(w, 1));
    return conv_input_grad(t, g, w, geom);
}

ag_tensor *agi_conv2d_weight_grad(ag_tape *t, ag_tensor *x, ag_tensor *g, int64_t kh, int64_t kw,
                                  const int *p)
{
    ag_tensor *in[2] = {x, g};
    if (!agi_check_inputs(t, "conv2d_weight_grad", 2, in, true))
        return agi_nil(t);
    if (x->rank != 4 || g->rank != 4)
        return agi_error(t, AG_ESHAPE, "conv2d_weight_grad: x %s and g %s must have rank 4",
                         agi_shp(x, 0), agi_shp(g, 1));
    conv_geom *geom = geom_make(t, "conv2d_weight_grad", x->shape[0], x->shape[1], x->shape[2],
                                x->shape[3], g->shape[1], kh, kw, p);
    if (!geom)
        return agi_nil(t);
    if (geom->oh != g->shape[2] || geom->ow != g->shape[3] || geom->n != g->shape[0])
        return agi_error(t, AG_ESHAPE, "conv2d_weight_grad: g %s does not fit x %s",
                         agi_shp(g, 0), agi_shp(x, 1));
    return conv_weight_grad(t, x, g, geom);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_conv[] = {
    &op_conv2d, &op_conv2d_input_grad, &op_conv2d_weight_grad, NULL
};
