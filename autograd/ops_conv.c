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
** Each product goes through the packed gemm: per slice of the batch (as
** many images as fit in COLS_BUDGET) and group, the receptive fields are
** unfolded into a [C/groups * KH * KW, images * OH * OW] matrix (im2col) in
** arena scratch, and the weight multiplies it; the input gradient folds such
** a matrix back (col2im). Scratch comes from the tape's arena, so a repeated
** training step allocates nothing; unfolding, folding and the gemm share
** their work with the tape's pool, with the same bits on any threads.
*/
#include "internal.h"
#include "kernels/kernels.h"

#include <string.h>

/* The geometry of one convolution, kept in the arena and shared by the
** result and every op its gradients make (attr.ext). */
typedef struct conv_geom {
    int64_t n, c, h, w;      /* input */
    int64_t o, kh, kw;       /* weight [o, c / groups, kh, kw] */
    int64_t oh, ow;          /* output */
    int p[AGI_CONV_PARAMS];  /* stride h, w; padding h, w; dilation h, w; groups */
} conv_geom;

enum { SH, SW, PH, PW, DH, DW, GROUPS };

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

/* Unfolds channel c of group gi of image n of x into its rows of cols
** (one row per kernel tap (c, i, j), the image's OH*OW columns starting at
** column 'col' of rows 'ld' apart), with zeros where a window reads padding;
** fold is the reverse, adding such rows back into the image. With stride and
** dilation 1, each output row of a tap reads a run of the input row: copied
** whole, with zeros at the padded ends. */
#define DEFINE_UNFOLD(T, SUFFIX)                                                                   \
    static void unfold_##SUFFIX(const conv_geom *g, const T *x, int64_t n, int64_t gi, int64_t c,  \
                                T *cols, int64_t ld, int64_t col)                                  \
    {                                                                                              \
        int64_t cg = g->c / g->p[GROUPS];                                                          \
        const T *plane = x + ((n * g->c) + gi * cg + c) * g->h * g->w;                             \
        bool unit = g->p[SW] == 1 && g->p[DW] == 1;                                                \
        for (int64_t i = 0; i < g->kh; i++)                                                        \
            for (int64_t j = 0; j < g->kw; j++) {                                                  \
                T *row = cols + ((c * g->kh + i) * g->kw + j) * ld + col;                          \
                /* the output columns whose tap j lands inside the row: [lo, hi) */                \
                int64_t lo = 0, hi = g->ow, x0 = j * g->p[DW] - g->p[PW];                          \
                if (unit) {                                                                        \
                    lo = x0 < 0 ? -x0 : 0;                                                         \
                    hi = g->w - x0 < g->ow ? g->w - x0 : g->ow;                                    \
                    if (hi < lo)                                                                   \
                        hi = lo;                                                                   \
                }                                                                                  \
                for (int64_t oy = 0; oy < g->oh; oy++) {                                           \
                    int64_t y = oy * g->p[SH] - g->p[PH] + i * g->p[DH];                           \
                    T *dst = row + oy * g->ow;                                                     \
                    if (y < 0 || y >= g->h) {                                                      \
                        memset(dst, 0, (size_t)g->ow * sizeof(T));                                 \
                        continue;                                                                  \
                    }                                                                              \
                    const T *src = plane + y * g->w;                                               \
                    if (unit) {                                                                    \
                        for (int64_t ox = 0; ox < lo; ox++)                                        \
                            dst[ox] = 0;                                                           \
                        /* a short run: a loop the compiler vectorises beats a call */         \
                        for (int64_t ox = lo; ox < hi; ox++)                                       \
                            dst[ox] = src[ox + x0];                                                \
                        for (int64_t ox = hi; ox < g->ow; ox++)                                    \
                            dst[ox] = 0;                                                           \
                        continue;                                                                  \
                    }                                                                              \
                    for (int64_t ox = 0; ox < g->ow; ox++) {                                       \
                        int64_t xx = ox * g->p[SW] + x0;                                           \
                        dst[ox] = xx >= 0 && xx < g->w ? src[xx] : (T)0;                           \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }                                                                                              \
    static void fold_##SUFFIX(const conv_geom *g, const T *cols, int64_t ld, int64_t col,          \
                              int64_t n, int64_t gi, int64_t c, T *x)                              \
    {                                                                                              \
        int64_t cg = g->c / g->p[GROUPS];                                                          \
        T *plane = x + ((n * g->c) + gi * cg + c) * g->h * g->w;                                   \
        for (int64_t i = 0; i < g->kh; i++)                                                        \
            for (int64_t j = 0; j < g->kw; j++) {                                                  \
                const T *row = cols + ((c * g->kh + i) * g->kw + j) * ld + col;                    \
                int64_t x0 = j * g->p[DW] - g->p[PW];                                              \
                for (int64_t oy = 0; oy < g->oh; oy++) {                                           \
                    int64_t y = oy * g->p[SH] - g->p[PH] + i * g->p[DH];                           \
                    if (y < 0 || y >= g->h)                                                        \
                        continue;                                                                  \
                    T *dst = plane + y * g->w;                                                     \
                    const T *src = row + oy * g->ow;                                               \
                    for (int64_t ox = 0; ox < g->ow; ox++) {                                       \
                        int64_t xx = ox * g->p[SW] + x0;                                           \
                        if (xx >= 0 && xx < g->w)                                                  \
                            dst[xx] += src[ox];                                                    \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }
DEFINE_UNFOLD(float, f32)
DEFINE_UNFOLD(double, f64)

/* Images n0 .. n0 + nb - 1 of one group, unfolded into (or folded back
** from) cols [K, nb * OH * OW] on the pool: one task per image and channel,
** each writing only its own rows (unfold) or its own plane (fold), so the
** bits do not depend on the threads. */
typedef struct unfold_job {
    const conv_geom *g;
    ag_dtype dt;
    bool fold;
    int64_t n0, nb, gi;
    const void *x;   /* unfold: the input */
    void *cols, *y;  /* fold: y receives */
} unfold_job;

static void unfold_tasks(void *ctx, int64_t begin, int64_t end)
{
    const unfold_job *j = ctx;
    const conv_geom *g = j->g;
    int64_t cg = g->c / g->p[GROUPS], P = g->oh * g->ow, ld = j->nb * P;
    for (int64_t task = begin; task < end; task++) {
        int64_t k = task / cg, c = task % cg, n = j->n0 + k;
        if (j->fold && j->dt == AG_F32)
            fold_f32(g, j->cols, ld, k * P, n, j->gi, c, j->y);
        else if (j->fold)
            fold_f64(g, j->cols, ld, k * P, n, j->gi, c, j->y);
        else if (j->dt == AG_F32)
            unfold_f32(g, j->x, n, j->gi, c, j->cols, ld, k * P);
        else
            unfold_f64(g, j->x, n, j->gi, c, j->cols, ld, k * P);
    }
}

static void unfold(ag_tape *t, unfold_job *j)
{
    int64_t cg = j->g->c / j->g->p[GROUPS];
    /* a task of under some 4K elements is not worth a thread's wake-up */
    int64_t per = cg ? j->g->kh * j->g->kw * j->g->oh * j->g->ow : 1;
    ag_pool_for(t->pool, j->nb * cg, per >= 4096 ? 1 : 4096 / (per ? per : 1), unfold_tasks, j);
}

/* The batch is unfolded a slice of images at a time, as many as fit in
** this many bytes of unfolded columns (at least one image), so one product
** covers many images without the scratch growing with the batch. */
enum { COLS_BUDGET = 1 << 23 };

/* Images per slice, and the arena scratch for one slice: the unfolded
** columns, a [O, slice * OH * OW] staging matrix (the product's layout,
** where NCHW holds each image's channels together), and a gemm of
** m x n x k (n in images' columns). */
typedef struct conv_scratch {
    int64_t nb;
    void *cols, *stage, *gemm;
} conv_scratch;

static bool scratch(ag_tape *t, const conv_geom *g, ag_dtype dt, int64_t m, int64_t k, bool ta,
                    bool tb, bool gemm_n_is_cols, conv_scratch *s)
{
    int64_t kk = g->c / g->p[GROUPS] * g->kh * g->kw, P = g->oh * g->ow;
    size_t es = ag_dtype_size(dt), per = (size_t)(kk * P) * es;
    int64_t nb = per ? (int64_t)(COLS_BUDGET / per) : g->n;
    nb = nb < 1 ? 1 : nb > g->n ? g->n : nb;
    s->nb = nb;
    size_t cbytes = per * (size_t)nb, sbytes = (size_t)(g->o * nb * P) * es;
    /* the product's n is the slice's columns, or (weight gradient) its k */
    size_t need = gemm_n_is_cols ? agk_gemm_scratch(dt, m, nb * P, k, ta, tb, t->pool)
                                 : agk_gemm_scratch(dt, m, k, nb * P, ta, tb, t->pool);
    s->cols = cbytes ? agi_arena_alloc(t, cbytes, 64) : NULL;
    s->stage = sbytes ? agi_arena_alloc(t, sbytes, 64) : NULL;
    s->gemm = need ? agi_arena_alloc(t, need, 64) : NULL;
    return t->status == AG_OK;
}

/* Between NCHW (images n0 .. n0 + nb - 1 of t4, [N, O, P]) and the staging
** matrix [O, nb P]: 'to_stage' copies into the stage, else out of it. */
typedef struct stage_job {
    void *t4, *stage;
    int64_t n0, nb, o, P;
    size_t es;
    bool to_stage;
} stage_job;

static void stage_rows(void *ctx, int64_t begin, int64_t end)
{
    const stage_job *j = ctx;
    size_t row = (size_t)j->P * j->es;
    for (int64_t r = begin; r < end; r++) {
        int64_t k = r / j->o, o = r % j->o;
        char *a = (char *)j->t4 + (size_t)((j->n0 + k) * j->o + o) * row;
        char *b = (char *)j->stage + (size_t)(o * j->nb + k) * row;
        if (j->to_stage)
            memcpy(b, a, row);
        else
            memcpy(a, b, row);
    }
}

static void stage(ag_tape *t, void *t4, void *st, const conv_geom *g, size_t es, int64_t n0,
                  int64_t nb, bool to_stage)
{
    stage_job j = {t4, st, n0, nb, g->o, g->oh * g->ow, es, to_stage};
    int64_t rows_per_task = 1 + (int64_t)(16384 / ((size_t)j.P * es + 1));
    ag_pool_for(t->pool, nb * g->o, rows_per_task, stage_rows, &j);
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
    int64_t groups = g->p[GROUPS], og = g->o / groups, k = g->c / groups * g->kh * g->kw;
    int64_t P = g->oh * g->ow;
    size_t es = ag_dtype_size(dt);
    conv_scratch s;
    if (!scratch(t, g, dt, og, k, false, false, true, &s))
        return agi_nil(t);
    for (int64_t n0 = 0; n0 < g->n; n0 += s.nb) {
        int64_t nb = g->n - n0 < s.nb ? g->n - n0 : s.nb, cols = nb * P;
        for (int64_t gi = 0; gi < groups; gi++) {
            /* stage rows of group gi = W_g [Og, K] @ cols [K, nb P] */
            unfold_job j = {.g = g, .dt = dt, .n0 = n0, .nb = nb, .gi = gi, .x = x->value,
                            .cols = s.cols};
            unfold(t, &j);
            agk_gemm(dt, og, cols, k, (const char *)w->value + (size_t)(gi * og * k) * es, k, false,
                     s.cols, cols, false, (char *)s.stage + (size_t)(gi * og * cols) * es, cols,
                     s.gemm, t->pool);
        }
        stage(t, out->value, s.stage, g, es, n0, nb, false);
    }
    if (b)
        for (int64_t n = 0; n < g->n; n++)
            for (int64_t o = 0; o < g->o; o++) {
                double bias = agi_get(b, o);
                int64_t base = (n * g->o + o) * P;
                if (dt == AG_F32)
                    for (int64_t i = 0; i < P; i++)
                        ((float *)out->value)[base + i] += (float)bias;
                else
                    for (int64_t i = 0; i < P; i++)
                        ((double *)out->value)[base + i] += bias;
            }
    return out;
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
    int64_t groups = g->p[GROUPS], og = g->o / groups, k = g->c / groups * g->kh * g->kw;
    int64_t P = g->oh * g->ow;
    size_t es = ag_dtype_size(dt);
    if (out->numel)
        memset(out->value, 0, (size_t)out->numel * es);
    conv_scratch s;
    if (!scratch(t, g, dt, k, og, true, false, true, &s))
        return agi_nil(t);
    for (int64_t n0 = 0; n0 < g->n; n0 += s.nb) {
        int64_t nb = g->n - n0 < s.nb ? g->n - n0 : s.nb, cols = nb * P;
        stage(t, gy->value, s.stage, g, es, n0, nb, true);
        for (int64_t gi = 0; gi < groups; gi++) {
            /* cols [K, nb P] = W_g^T [K, Og] @ stage rows of group gi, folded back */
            agk_gemm(dt, k, cols, og, (const char *)w->value + (size_t)(gi * og * k) * es, k, true,
                     (const char *)s.stage + (size_t)(gi * og * cols) * es, cols, false, s.cols,
                     cols, s.gemm, t->pool);
            unfold_job j = {.g = g, .dt = dt, .fold = true, .n0 = n0, .nb = nb, .gi = gi,
                            .cols = s.cols, .y = out->value};
            unfold(t, &j);
        }
    }
    return out;
}

static ag_tensor *conv_weight_grad(ag_tape *t, ag_tensor *x, ag_tensor *gy, const conv_geom *g)
{
    ag_tensor *in[2] = {x, gy};
    if (!agi_check_inputs(t, "conv2d_weight_grad", 2, in, true))
        return agi_nil(t);
    ag_dtype dt = (ag_dtype)x->dtype;
    int64_t groups = g->p[GROUPS], og = g->o / groups, cg = g->c / groups;
    int64_t k = cg * g->kh * g->kw, P = g->oh * g->ow;
    ag_tensor *out = agi_new(t, &op_conv2d_weight_grad, 2, in, dt, 4,
                             (int64_t[]){g->o, cg, g->kh, g->kw});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = g;
    size_t es = ag_dtype_size(dt);
    if (out->numel)
        memset(out->value, 0, (size_t)out->numel * es);
    conv_scratch s;
    if (!scratch(t, g, dt, og, k, false, true, false, &s))
        return agi_nil(t);
    for (int64_t n0 = 0; n0 < g->n; n0 += s.nb) {
        int64_t nb = g->n - n0 < s.nb ? g->n - n0 : s.nb, cols = nb * P;
        stage(t, gy->value, s.stage, g, es, n0, nb, true);
        for (int64_t gi = 0; gi < groups; gi++) {
            /* W_g [Og, K] (+)= stage rows of group gi [Og, nb P] @ cols^T [nb P, K]: one
            ** chain over the slice's images and positions; slices add in order */
            unfold_job j = {.g = g, .dt = dt, .n0 = n0, .nb = nb, .gi = gi, .x = x->value,
                            .cols = s.cols};
            unfold(t, &j);
            const char *a = (const char *)s.stage + (size_t)(gi * og * cols) * es;
            char *c = (char *)out->value + (size_t)(gi * og * k) * es;
            if (n0 == 0)
                agk_gemm(dt, og, k, cols, a, cols, false, s.cols, cols, true, c, k, s.gemm,
                         t->pool);
            else
                agk_gemm_add(dt, og, k, cols, a, cols, false, s.cols, cols, true, c, k, s.gemm,
                             t->pool);
        }
    }
    return out;
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
