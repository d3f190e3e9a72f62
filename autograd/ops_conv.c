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
** Each product goes through the packed gemm: per image and group, the
** receptive fields are unfolded into a [C/groups * KH * KW, OH * OW] matrix
** (im2col) in arena scratch, and the weight multiplies it; the input
** gradient folds such a matrix back (col2im). Scratch comes from the tape's
** arena, so a repeated training step allocates nothing, and the gemm shares
** its work with the tape's pool.
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

/* Unfolds group 'gi' of image 'n' of x into cols [K, OH*OW] (zeros where a
** window reads padding), and the reverse: adds such a matrix into x. */
#define DEFINE_UNFOLD(T, SUFFIX)                                                                   \
    static void im2col_##SUFFIX(const conv_geom *g, const T *x, int64_t n, int64_t gi, T *cols)    \
    {                                                                                              \
        int64_t cg = g->c / g->p[GROUPS], P = g->oh * g->ow;                                       \
        for (int64_t c = 0; c < cg; c++) {                                                         \
            const T *plane = x + ((n * g->c) + gi * cg + c) * g->h * g->w;                         \
            for (int64_t i = 0; i < g->kh; i++)                                                    \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    T *row = cols + ((c * g->kh + i) * g->kw + j) * P;                             \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                       \
                        int64_t y = oy * g->p[SH] - g->p[PH] + i * g->p[DH];                       \
                        T *dst = row + oy * g->ow;                                                 \
                        if (y < 0 || y >= g->h) {                                                  \
                            memset(dst, 0, (size_t)g->ow * sizeof(T));                             \
                            continue;                                                              \
                        }                                                                          \
                        for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                            int64_t xx = ox * g->p[SW] - g->p[PW] + j * g->p[DW];                  \
                            dst[ox] = xx >= 0 && xx < g->w ? plane[y * g->w + xx] : (T)0;          \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    static void col2im_##SUFFIX(const conv_geom *g, const T *cols, int64_t n, int64_t gi, T *x)    \
    {                                                                                              \
        int64_t cg = g->c / g->p[GROUPS], P = g->oh * g->ow;                                       \
        for (int64_t c = 0; c < cg; c++) {                                                         \
            T *plane = x + ((n * g->c) + gi * cg + c) * g->h * g->w;                               \
            for (int64_t i = 0; i < g->kh; i++)                                                    \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    const T *row = cols + ((c * g->kh + i) * g->kw + j) * P;                       \
                    for (int64_t oy = 0; oy < g->oh; oy++) {                                       \
                        int64_t y = oy * g->p[SH] - g->p[PH] + i * g->p[DH];                       \
                        if (y < 0 || y >= g->h)                                                    \
                            continue;                                                              \
                        for (int64_t ox = 0; ox < g->ow; ox++) {                                   \
                            int64_t xx = ox * g->p[SW] - g->p[PW] + j * g->p[DW];                  \
                            if (xx >= 0 && xx < g->w)                                              \
                                plane[y * g->w + xx] += row[oy * g->ow + ox];                      \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }
DEFINE_UNFOLD(float, f32)
DEFINE_UNFOLD(double, f64)

static void im2col(const conv_geom *g, ag_dtype dt, const void *x, int64_t n, int64_t gi,
                   void *cols)
{
    if (dt == AG_F32)
        im2col_f32(g, x, n, gi, cols);
    else
        im2col_f64(g, x, n, gi, cols);
}

static void col2im(const conv_geom *g, ag_dtype dt, const void *cols, int64_t n, int64_t gi,
                   void *x)
{
    if (dt == AG_F32)
        col2im_f32(g, cols, n, gi, x);
    else
        col2im_f64(g, cols, n, gi, x);
}

/* Arena scratch for one unfolded matrix and for a gemm of m x n x k. */
static bool scratch(ag_tape *t, const conv_geom *g, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                    bool ta, bool tb, void **cols, void **gemm)
{
    int64_t kk = g->c / g->p[GROUPS] * g->kh * g->kw;
    size_t cbytes = (size_t)(kk * g->oh * g->ow) * ag_dtype_size(dt);
    size_t need = agk_gemm_scratch(dt, m, n, k, ta, tb, t->pool);
    *cols = cbytes ? agi_arena_alloc(t, cbytes, 64) : NULL;
    *gemm = need ? agi_arena_alloc(t, need, 64) : NULL;
    return t->status == AG_OK;
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
    void *cols, *gs;
    if (!scratch(t, g, dt, og, P, k, false, false, &cols, &gs))
        return agi_nil(t);
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t gi = 0; gi < groups; gi++) {
            im2col(g, dt, x->value, n, gi, cols);
            agk_gemm(dt, og, P, k, (const char *)w->value + (size_t)(gi * og * k) * es, k, false,
                     cols, P, false, (char *)out->value + (size_t)((n * g->o + gi * og) * P) * es,
                     P, gs, t->pool);
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
    void *cols, *gs;
    if (!scratch(t, g, dt, k, P, og, true, false, &cols, &gs))
        return agi_nil(t);
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t gi = 0; gi < groups; gi++) {
            /* cols = W_g^T [K, Og] @ g_n,g [Og, P], folded back into the image */
            agk_gemm(dt, k, P, og, (const char *)w->value + (size_t)(gi * og * k) * es, k, true,
                     (const char *)gy->value + (size_t)((n * g->o + gi * og) * P) * es, P, false,
                     cols, P, gs, t->pool);
            col2im(g, dt, cols, n, gi, out->value);
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
    void *cols, *gs;
    if (!scratch(t, g, dt, og, k, P, false, true, &cols, &gs))
        return agi_nil(t);
    for (int64_t n = 0; n < g->n; n++)
        for (int64_t gi = 0; gi < groups; gi++) {
            /* W_g [Og, K] += g_n,g [Og, P] @ cols^T [P, K], summed over the batch */
            im2col(g, dt, x->value, n, gi, cols);
            agk_gemm_add(dt, og, k, P, (const char *)gy->value + (size_t)((n * g->o + gi * og) * P) * es,
                         P, false, cols, P, true, (char *)out->value + (size_t)(gi * og * k) * es,
                         k, gs, t->pool);
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
