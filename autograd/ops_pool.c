/*
** ops_pool.c: 2-D pooling over NCHW tensors, and flatten (the glue between
** a convolution stack and a dense head).
**
** Max pooling records, per output element, the flat index of its window's
** winner in x. Its VJP scatters g to those indices (max_pool2d_scatter),
** whose own VJP gathers at them (max_pool2d_gather), and the gather's VJP
** scatters again: both are linear maps fixed by the indices, each the
** other's adjoint, so every order of derivative routes through the same
** winners. Average pooling is a depthwise convolution with a constant
** kernel of 1 / (kh kw) (ops_conv.c), so its gradients are conv2d's.
*/
#include "internal.h"
#include "kernels/kernels.h"
#include "kernels/simd_clones.h"

#include <math.h>
#include <string.h>

/* A max pooling's windows and winners, kept in the arena (attr.ext) and
** shared by the result and the scatter and gather ops made from it. */
typedef struct pool_geom {
    int64_t n, c, h, w, oh, ow;
    int kh, kw, sh, sw, ph, pw;
    int64_t *argmax;   /* n c oh ow flat indices into x; NULL for a 2x2 pooling: */
    int32_t *code;     /* its winners by place in the window: 0, 1 (top), 2, 3 (bottom) */
} pool_geom;

/* The three loops of max pooling, one plane (image and channel) per task on
** the tape's pool: a plane's windows, and so its winners, never leave it,
** so tasks write disjoint elements and the bits do not depend on the
** threads. The first maximum in row-major window order wins a tie, as in
** PyTorch; the first NaN wins over everything. Padding is never a
** candidate (pad <= k/2 leaves a real element in every window). */
typedef struct pool_job {
    const pool_geom *pg;
    const void *src;
    void *dst;
    int kind;   /* POOL_MAX, POOL_SCATTER, POOL_GATHER */
} pool_job;

enum { POOL_MAX, POOL_SCATTER, POOL_GATHER };

/* The common 2x2 window of stride 2 without padding (is_2x2), a plane at a
** time in loops the compiler vectorises: of WINDOWS_2X2 windows at once,
** where the ifs of TAKE_2X2 become selects, not jumps (which element wins
** is data, and a mispredicted jump per window cost more than the rest of
** the pooling). A row of at least WINDOWS_2X2 windows ends with a block
** that overlaps the one before (each window is computed the same by any
** block, so the overlap rewrites the same values); a shorter row is copied
** into a block's worth of scratch, and its windows back. */
enum { WINDOWS_2X2 = 8 };

/* Window ox of rows r0 and r1 into y and code, by the rule above. */
#define TAKE_2X2(T, r0, r1, y, code, ox)                                                           \
    do {                                                                                           \
        T a_ = (r0)[2 * (ox)], b_ = (r0)[2 * (ox) + 1], c_ = (r1)[2 * (ox)],                       \
          d_ = (r1)[2 * (ox) + 1], bv_ = a_;                                                       \
        int32_t k_ = 0;                                                                            \
        if (bv_ == bv_ && (b_ > bv_ || b_ != b_)) {                                                \
            bv_ = b_;                                                                              \
            k_ = 1;                                                                                \
        }                                                                                          \
        if (bv_ == bv_ && (c_ > bv_ || c_ != c_)) {                                                \
            bv_ = c_;                                                                              \
            k_ = 2;                                                                                \
        }                                                                                          \
        if (bv_ == bv_ && (d_ > bv_ || d_ != d_)) {                                                \
            bv_ = d_;                                                                              \
            k_ = 3;                                                                                \
        }                                                                                          \
        (y)[ox] = bv_;                                                                             \
        (code)[ox] = k_;                                                                           \
    } while (0)

/* Four f32 windows of rows r0 and r1 by TAKE_2X2's rule, in SSE2 (every
** x86-64 has it): for the rows of 4 to 7 windows, too short for the blocks
** of WINDOWS_2X2 the compiler vectorises, which the CNN's second pooling
** has (7); through the scratch copies they took three times as long as a
** row of 8. A select is and, andnot, or: blendv is not in SSE2. */
#if defined(__SSE2__)
#include <emmintrin.h>
#define HAVE_TAKE4_SSE2 1
static inline __m128 select_ps(__m128 take, __m128 yes, __m128 no)
{
    return _mm_or_ps(_mm_and_ps(take, yes), _mm_andnot_ps(take, no));
}
static inline void take4_f32(const float *r0, const float *r1, float *y, int32_t *code)
{
    __m128 p0 = _mm_loadu_ps(r0), p1 = _mm_loadu_ps(r0 + 4);
    __m128 q0 = _mm_loadu_ps(r1), q1 = _mm_loadu_ps(r1 + 4);
    __m128 cand[3] = {_mm_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1)),
                      _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1))};
    __m128 best = _mm_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
    __m128 k = _mm_setzero_ps();
    for (int i = 0; i < 3; i++) {
        __m128 v = cand[i];
        /* best is a number and v beats it or is a NaN */
        __m128 take = _mm_and_ps(_mm_cmpord_ps(best, best),
                                 _mm_or_ps(_mm_cmpgt_ps(v, best), _mm_cmpunord_ps(v, v)));
        best = select_ps(take, v, best);
        k = select_ps(take, _mm_castsi128_ps(_mm_set1_epi32(i + 1)), k);
    }
    _mm_storeu_ps(y, best);
    _mm_storeu_si128((__m128i *)(void *)code, _mm_castps_si128(k));
}
/* The gradient of four f32 windows: g's bits at each winner, +0 at the
** other three places (a mask of the code), interleaved back into the two
** rows' eight elements. */
static inline void scatter4_f32(const float *g, const int32_t *code, float *r0, float *r1)
{
    __m128 gv = _mm_loadu_ps(g);
    __m128i k = _mm_loadu_si128((const __m128i *)(const void *)code);
    __m128 e[4];
    for (int q = 0; q < 4; q++)
        e[q] = _mm_and_ps(gv, _mm_castsi128_ps(_mm_cmpeq_epi32(k, _mm_set1_epi32(q))));
    _mm_storeu_ps(r0, _mm_unpacklo_ps(e[0], e[1]));
    _mm_storeu_ps(r0 + 4, _mm_unpackhi_ps(e[0], e[1]));
    _mm_storeu_ps(r1, _mm_unpacklo_ps(e[2], e[3]));
    _mm_storeu_ps(r1 + 4, _mm_unpackhi_ps(e[2], e[3]));
}
/* A row of 4 or more windows' gradient, by blocks of four, the last one
** overlapping the one before (it rewrites the same values). */
static inline void scatter4_rows(const float *g, const int32_t *code, int64_t ow, float *r0,
                                 float *r1)
{
    int64_t ox = 0;
    for (; ox + 4 <= ow; ox += 4)
        scatter4_f32(g + ox, code + ox, r0 + 2 * ox, r1 + 2 * ox);
    if (ox < ow) {
        ox = ow - 4;
        scatter4_f32(g + ox, code + ox, r0 + 2 * ox, r1 + 2 * ox);
    }
}
/* A row of 4 to 7 windows: two blocks of four, the second overlapping. */
static inline void take4_rows(const float *r0, const float *r1, int64_t ow, float *y,
                              int32_t *code)
{
    take4_f32(r0, r1, y, code);
    int64_t ox = ow - 4;
    take4_f32(r0 + 2 * ox, r1 + 2 * ox, y + ox, code + ox);
}
#else
#define HAVE_TAKE4_SSE2 0
static inline void take4_rows(const float *r0, const float *r1, int64_t ow, float *y,
                              int32_t *code)
{
    (void)r0, (void)r1, (void)ow, (void)y, (void)code;
}
static inline void scatter4_rows(const float *g, const int32_t *code, int64_t ow, float *r0,
                                 float *r1)
{
    (void)g, (void)code, (void)ow, (void)r0, (void)r1;
}
#endif

/* Rows of 8 windows or more in AVX2 where the CPU has it: eight windows a
** block, the compiler's blocks of selects being no faster than SSE2's four.
** The even and odd elements' shuffle leaves the windows in the order 0 1 4
** 5 2 3 6 7, the same for all four candidates; the results are put back in
** order before they are stored. */
#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define HAVE_TAKE8_AVX2 1
__attribute__((target("avx2"))) static void take8_f32(const float *r0, const float *r1, float *y,
                                                      int32_t *code)
{
    __m256 p0 = _mm256_loadu_ps(r0), p1 = _mm256_loadu_ps(r0 + 8);
    __m256 q0 = _mm256_loadu_ps(r1), q1 = _mm256_loadu_ps(r1 + 8);
    __m256 cand[3] = {_mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(3, 1, 3, 1)),
                      _mm256_shuffle_ps(q0, q1, _MM_SHUFFLE(2, 0, 2, 0)),
                      _mm256_shuffle_ps(q0, q1, _MM_SHUFFLE(3, 1, 3, 1))};
    __m256 best = _mm256_shuffle_ps(p0, p1, _MM_SHUFFLE(2, 0, 2, 0)), k = _mm256_setzero_ps();
    for (int i = 0; i < 3; i++) {
        __m256 v = cand[i];
        __m256 take = _mm256_and_ps(_mm256_cmp_ps(best, best, _CMP_ORD_Q),
                                    _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ),
                                                 _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
        best = _mm256_blendv_ps(best, v, take);
        k = _mm256_blendv_ps(k, _mm256_castsi256_ps(_mm256_set1_epi32(i + 1)), take);
    }
    /* (a macro: the intrinsic needs a constant expression, at -O0 too) */
#define WINDOW_ORDER _MM_SHUFFLE(3, 1, 2, 0)
    _mm256_storeu_ps(y,
                     _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(best), WINDOW_ORDER)));
    _mm256_storeu_ps((float *)(void *)code,
                     _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(k), WINDOW_ORDER)));
#undef WINDOW_ORDER
}
__attribute__((target("avx2"))) static void take8_rows(const float *r0, const float *r1,
                                                       int64_t ow, float *y, int32_t *code)
{
    int64_t ox = 0;
    for (; ox + 8 <= ow; ox += 8)
        take8_f32(r0 + 2 * ox, r1 + 2 * ox, y + ox, code + ox);
    if (ox < ow) {
        ox = ow - 8;
        take8_f32(r0 + 2 * ox, r1 + 2 * ox, y + ox, code + ox);
    }
}
#else
#define HAVE_TAKE8_AVX2 0
static void take8_rows(const float *r0, const float *r1, int64_t ow, float *y, int32_t *code)
{
    (void)r0, (void)r1, (void)ow, (void)y, (void)code;
}
#endif

#define DEFINE_POOL_2X2(T, U, SUFFIX)                                                                 \
    AGK_SIMD_CLONES static void max_plane_2x2_##SUFFIX(const T *restrict x, int64_t h, int64_t w,  \
                                                       int64_t oh, int64_t ow, T *restrict y,      \
                                                       int32_t *restrict code)                     \
    {                                                                                              \
        (void)h;                                                                                   \
        bool avx2 = HAVE_TAKE8_AVX2 && sizeof(T) == sizeof(float) &&                               \
                    agk_isa_supported(AGK_ISA_AVX2);                                               \
        T t0[2 * WINDOWS_2X2], t1[2 * WINDOWS_2X2], ty[WINDOWS_2X2];                               \
        int32_t tk[WINDOWS_2X2];                                                                   \
        for (int64_t oy = 0; oy < oh; oy++, y += ow, code += ow) {                                 \
            const T *r0 = x + 2 * oy * w, *r1 = r0 + w;                                            \
            int64_t ox = 0;                                                                        \
            if (HAVE_TAKE8_AVX2 && sizeof(T) == sizeof(float) && ow >= 8 && avx2) {               \
                take8_rows((const float *)r0, (const float *)r1, ow, (float *)y, code);           \
                continue;                                                                          \
            }                                                                                      \
            if (ow >= WINDOWS_2X2) {                                                               \
                for (; ox + WINDOWS_2X2 <= ow; ox += WINDOWS_2X2)                                  \
                    for (int b = 0; b < WINDOWS_2X2; b++)                                          \
                        TAKE_2X2(T, r0 + 2 * ox, r1 + 2 * ox, y + ox, code + ox, b);               \
                ox = ow - WINDOWS_2X2;                                                             \
                for (int b = 0; ox > 0 && b < WINDOWS_2X2; b++)                                    \
                    TAKE_2X2(T, r0 + 2 * ox, r1 + 2 * ox, y + ox, code + ox, b);                   \
                continue;                                                                          \
            }                                                                                      \
            if (HAVE_TAKE4_SSE2 && sizeof(T) == sizeof(float) && ow >= 4) {                        \
                take4_rows((const float *)r0, (const float *)r1, ow, (float *)y, code);           \
                continue;                                                                          \
            }                                                                                      \
            /* a short row: its windows copied out to a block's worth, and back */              \
            /* (the copies are not plain loops, which the compiler makes memcpy calls of) */    \
            for (int64_t i = 0; i < 2 * WINDOWS_2X2; i++) {                                        \
                int64_t at = i < 2 * ow ? i : 2 * ow - 1;                                          \
                t0[i] = r0[at], t1[i] = r1[at];                                                    \
            }                                                                                      \
            for (int b = 0; b < WINDOWS_2X2; b++)                                                  \
                TAKE_2X2(T, t0, t1, ty, tk, b);                                                    \
            for (int b = 0; b < WINDOWS_2X2; b++)                                                  \
                if (b < ow) {                                                                      \
                    y[b] = ty[b];                                                                  \
                    code[b] = tk[b];                                                               \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    /* the gradient's plane: each window's g at its winner, zeros elsewhere (and in the row     \
    ** and column an odd size leaves out of every window), each element written once, by      \
    ** masks (a memset of the plane and then a store per window wrote the plane twice, the    \
    ** second time scattered); f32 rows of 4 windows or more four windows at a time in SSE2   \
    ** (the compiler's loop took one a time) */                                                \
    AGK_SIMD_CLONES static void scatter_plane_2x2_##SUFFIX(const T *restrict g,                    \
                                                           const int32_t *restrict code,           \
                                                           int64_t h, int64_t w, int64_t oh,        \
                                                           int64_t ow, T *restrict x)              \
    {                                                                                              \
        for (int64_t oy = 0; oy < oh; oy++, g += ow, code += ow) {                                 \
            T *r0 = x + 2 * oy * w, *r1 = r0 + w;                                                  \
            if (HAVE_TAKE4_SSE2 && sizeof(T) == sizeof(float) && ow >= 4)                          \
                scatter4_rows((const float *)g, code, ow, (float *)r0, (float *)r1);              \
            else                                                                                   \
                for (int64_t ox = 0; ox < ow; ox++) {                                              \
                    U v, e[4];                                                                     \
                    memcpy(&v, g + ox, sizeof v);                                                  \
                    for (int32_t q = 0; q < 4; q++)                                                \
                        e[q] = v & (U)-(U)(code[ox] == q);                                         \
                    memcpy(r0 + 2 * ox, e, 2 * sizeof v);                                          \
                    memcpy(r1 + 2 * ox, e + 2, 2 * sizeof v);                                      \
                }                                                                                  \
            if (w > 2 * ow)                                                                        \
                r0[w - 1] = r1[w - 1] = 0;                                                         \
        }                                                                                          \
        for (int64_t i = 2 * oh * w; i < h * w; i++)                                               \
            x[i] = 0;                                                                              \
    }                                                                                              \
    static void gather_plane_2x2_##SUFFIX(const T *restrict u, const int32_t *restrict code,       \
                                          int64_t w, int64_t oh, int64_t ow, T *restrict y)        \
    {                                                                                              \
        for (int64_t oy = 0; oy < oh; oy++, y += ow, code += ow) {                                 \
            const T *r0 = u + 2 * oy * w;                                                          \
            for (int64_t ox = 0; ox < ow; ox++)                                                    \
                y[ox] = r0[(code[ox] >> 1) * w + 2 * ox + (code[ox] & 1)];                         \
        }                                                                                          \
    }
DEFINE_POOL_2X2(float, uint32_t, f32)
DEFINE_POOL_2X2(double, uint64_t, f64)

static bool is_2x2(const pool_geom *pg)
{
    return pg->kh == 2 && pg->kw == 2 && pg->sh == 2 && pg->sw == 2 && pg->ph == 0 && pg->pw == 0;
}

#define DEFINE_POOL(T, SUFFIX)                                                                     \
    static void max_plane_##SUFFIX(const pool_geom *pg, const T *x, T *y, int64_t plane)           \
    {                                                                                              \
        int64_t o = plane * pg->oh * pg->ow;                                                       \
        if (pg->ph == 0 && pg->pw == 0) {                                                          \
            /* every window lies inside the plane: no bounds to test */                           \
            for (int64_t oy = 0; oy < pg->oh; oy++)                                                \
                for (int64_t ox = 0; ox < pg->ow; ox++, o++) {                                     \
                    int64_t best = (plane * pg->h + oy * pg->sh) * pg->w + ox * pg->sw;            \
                    T bv = x[best];                                                                \
                    for (int64_t i = 0; i < pg->kh; i++)                                           \
                        for (int64_t j = 0; j < pg->kw; j++) {                                     \
                            int64_t at = (plane * pg->h + oy * pg->sh + i) * pg->w + ox * pg->sw + j; \
                            T v = x[at];                                                           \
                            if (!isnan(bv) && (v > bv || isnan(v)))                                \
                                best = at, bv = v;                                                 \
                        }                                                                          \
                    pg->argmax[o] = best;                                                          \
                    y[o] = bv;                                                                     \
                }                                                                                  \
            return;                                                                                \
        }                                                                                          \
        for (int64_t oy = 0; oy < pg->oh; oy++)                                                    \
            for (int64_t ox = 0; ox < pg->ow; ox++, o++) {                                         \
                int64_t best = -1;                                                                 \
                T bv = 0;                                                                          \
                for (int64_t i = 0; i < pg->kh; i++) {                                             \
                    int64_t yy = oy * pg->sh - pg->ph + i;                                         \
                    if (yy < 0 || yy >= pg->h)                                                     \
                        continue;                                                                  \
                    for (int64_t j = 0; j < pg->kw; j++) {                                         \
                        int64_t xx = ox * pg->sw - pg->pw + j;                                     \
                        if (xx < 0 || xx >= pg->w)                                                 \
                            continue;                                                              \
                        int64_t at = (plane * pg->h + yy) * pg->w + xx;                            \
                        T v = x[at];                                                               \
                        if (best < 0 || (!isnan(bv) && (v > bv || isnan(v))))                      \
                            best = at, bv = v;                                                     \
                    }                                                                              \
                }                                                                                  \
                pg->argmax[o] = best;                                                              \
                y[o] = bv;                                                                         \
            }                                                                                      \
    }                                                                                              \
    static void scatter_plane_##SUFFIX(const pool_geom *pg, const T *g, T *x, int64_t plane)       \
    {                                                                                              \
        int64_t m = pg->oh * pg->ow, h = pg->h * pg->w;                                            \
        memset(x + plane * h, 0, (size_t)h * sizeof(T));                                           \
        for (int64_t o = plane * m; o < (plane + 1) * m; o++)                                      \
            x[pg->argmax[o]] += g[o];                                                              \
    }                                                                                              \
    static void gather_plane_##SUFFIX(const pool_geom *pg, const T *u, T *y, int64_t plane)        \
    {                                                                                              \
        int64_t m = pg->oh * pg->ow;                                                               \
        for (int64_t o = plane * m; o < (plane + 1) * m; o++)                                      \
            y[o] = u[pg->argmax[o]];                                                               \
    }                                                                                              \
    /* planes [begin, end) of a pool_job, by the 2x2 path when it has codes */                     \
    static void tasks_##SUFFIX(void *ctx, int64_t begin, int64_t end)                              \
    {                                                                                              \
        const pool_job *j = ctx;                                                                   \
        const pool_geom *pg = j->pg;                                                               \
        if (pg->code) {                                                                            \
            int64_t in = pg->h * pg->w, out = pg->oh * pg->ow;                                     \
            for (int64_t p = begin; p < end; p++)                                                  \
                if (j->kind == POOL_MAX)                                                           \
                    max_plane_2x2_##SUFFIX((const T *)j->src + p * in, pg->h, pg->w, pg->oh,       \
                                           pg->ow, (T *)j->dst + p * out, pg->code + p * out);     \
                else if (j->kind == POOL_SCATTER)                                                  \
                    scatter_plane_2x2_##SUFFIX((const T *)j->src + p * out, pg->code + p * out,    \
                                               pg->h, pg->w, pg->oh, pg->ow, (T *)j->dst + p * in); \
                else                                                                               \
                    gather_plane_2x2_##SUFFIX((const T *)j->src + p * in, pg->code + p * out,      \
                                              pg->w, pg->oh, pg->ow, (T *)j->dst + p * out);       \
            return;                                                                                \
        }                                                                                          \
        for (int64_t p = begin; p < end; p++)                                                      \
            if (j->kind == POOL_MAX)                                                               \
                max_plane_##SUFFIX(j->pg, j->src, j->dst, p);                                      \
            else if (j->kind == POOL_SCATTER)                                                      \
                scatter_plane_##SUFFIX(j->pg, j->src, j->dst, p);                                  \
            else                                                                                   \
                gather_plane_##SUFFIX(j->pg, j->src, j->dst, p);                                   \
    }
DEFINE_POOL(float, f32)
DEFINE_POOL(double, f64)

static void run_planes(ag_tape *t, const pool_geom *pg, ag_dtype dt, int kind, const void *src,
                       void *dst)
{
    pool_job j = {pg, src, dst, kind};
    /* about 8K input elements a task at least, or a wake-up costs more */
    int64_t per = pg->h * pg->w + 1, grain = 1 + 8192 / per;
    ag_pool_for(t->pool, pg->n * pg->c, grain, dt == AG_F32 ? tasks_f32 : tasks_f64, &j);
}

/* Checks a pooling's settings against x (rank 4); errors name 'who'. */
static bool pool_check(ag_tape *t, const char *who, const ag_tensor *x, int kh, int kw,
                       int stride_h, int stride_w, int pad_h, int pad_w)
{
    if (x->rank != 4)
        return agi_error(t, AG_ESHAPE, "%s: x %s must have rank 4 (N, C, H, W)", who,
                         agi_shp(x, 0)),
               false;
    if (kh < 1 || kw < 1)
        return agi_error(t, AG_EINVAL, "%s: kernel %dx%d must be positive", who, kh, kw), false;
    if (stride_h < 1 || stride_w < 1)
        return agi_error(t, AG_EINVAL, "%s: stride (%d, %d) must be positive", who, stride_h,
                         stride_w),
               false;
    /* PyTorch's bound: with more padding a window could hold padding only. */
    if (pad_h < 0 || pad_w < 0 || pad_h > kh / 2 || pad_w > kw / 2)
        return agi_error(t, AG_EINVAL,
                         "%s: padding (%d, %d) must be between 0 and half the kernel %dx%d", who,
                         pad_h, pad_w, kh, kw),
               false;
    if (kh > x->shape[2] + 2 * (int64_t)pad_h || kw > x->shape[3] + 2 * (int64_t)pad_w)
        return agi_error(t, AG_ESHAPE, "%s: kernel %dx%d is larger than the padded input %lldx%lld",
                         who, kh, kw, (long long)(x->shape[2] + 2 * (int64_t)pad_h),
                         (long long)(x->shape[3] + 2 * (int64_t)pad_w)),
               false;
    return true;
}

static void vjp_max_pool2d(ag_tape *t, ag_tensor *out, ag_tensor *g, ag_tensor **gin)
{
    gin[0] = agi_max_pool2d_scatter(t, g, out);
}
/* Each output moves with its window's winner: the tangent gathered at the
** argmax, the same winners (ties and NaN included) as the vjp routes to. */
static ag_tensor *jvp_max_pool2d(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return agi_max_pool2d_gather(t, tan[0], out);
}
static const ag_op op_max_pool2d = {.name = "max_pool2d", .vjp = vjp_max_pool2d,
                                    .jvp = jvp_max_pool2d};

/* scatter and gather are each other's adjoints; 'out' carries the geometry */
static void vjp_max_pool2d_scatter(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    gin[0] = agi_max_pool2d_gather(t, u, out);
}
/* scatter and gather are linear: each one's JVP is itself applied to the tangent */
static ag_tensor *jvp_max_pool2d_scatter(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return agi_max_pool2d_scatter(t, tan[0], out);
}
static const ag_op op_max_pool2d_scatter = {
    .name = "max_pool2d_scatter", .vjp = vjp_max_pool2d_scatter, .jvp = jvp_max_pool2d_scatter};

static void vjp_max_pool2d_gather(ag_tape *t, ag_tensor *out, ag_tensor *u, ag_tensor **gin)
{
    gin[0] = agi_max_pool2d_scatter(t, u, out);
}
static ag_tensor *jvp_max_pool2d_gather(ag_tape *t, ag_tensor *out, ag_tensor *const *tan)
{
    return agi_max_pool2d_gather(t, tan[0], out);
}
static const ag_op op_max_pool2d_gather = {
    .name = "max_pool2d_gather", .vjp = vjp_max_pool2d_gather, .jvp = jvp_max_pool2d_gather};

ag_tensor *ag_max_pool2d(ag_tape *t, ag_tensor *x, int kh, int kw, int stride_h, int stride_w,
                         int pad_h, int pad_w)
{
    if (!agi_check_inputs(t, "ag_max_pool2d", 1, &x, false))
        return agi_nil(t);
    if (!pool_check(t, "ag_max_pool2d", x, kh, kw, stride_h, stride_w, pad_h, pad_w))
        return agi_nil(t);
    int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
    int64_t oh = (h + 2 * pad_h - kh) / stride_h + 1, ow = (w + 2 * pad_w - kw) / stride_w + 1;
    ag_tensor *out = agi_new(t, &op_max_pool2d, 1, &x, (ag_dtype)x->dtype, 4,
                             (int64_t[]){n, c, oh, ow});
    if (out->flags & AGI_NIL)
        return out;
    pool_geom *pg = agi_arena_alloc(t, sizeof *pg, _Alignof(pool_geom));
    if (!pg)
        return agi_nil(t);
    *pg = (pool_geom){.n = n, .c = c, .h = h, .w = w, .oh = oh, .ow = ow, .kh = kh, .kw = kw,
                      .sh = stride_h, .sw = stride_w, .ph = pad_h, .pw = pad_w};
    if (out->numel && is_2x2(pg))
        pg->code = agi_arena_alloc(t, (size_t)out->numel * sizeof *pg->code, 64);
    else if (out->numel)
        pg->argmax = agi_arena_alloc(t, (size_t)out->numel * sizeof *pg->argmax, 64);
    if (out->numel && !pg->code && !pg->argmax)
        return agi_nil(t);
    out->attr.ext = pg;
    run_planes(t, pg, (ag_dtype)x->dtype, POOL_MAX, x->value, out->value);
    return out;
}

ag_tensor *agi_max_pool2d_scatter(ag_tape *t, ag_tensor *g, const ag_tensor *pooled)
{
    if (!agi_check_inputs(t, "max_pool2d_scatter", 1, &g, false))
        return agi_nil(t);
    const pool_geom *pg = pooled->attr.ext;
    ag_tensor *out = agi_new(t, &op_max_pool2d_scatter, 1, &g, (ag_dtype)g->dtype, 4,
                             (int64_t[]){pg->n, pg->c, pg->h, pg->w});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = pg;
    run_planes(t, pg, (ag_dtype)g->dtype, POOL_SCATTER, g->value, out->value);
    return out;
}

ag_tensor *agi_max_pool2d_gather(ag_tape *t, ag_tensor *u, const ag_tensor *pooled)
{
    if (!agi_check_inputs(t, "max_pool2d_gather", 1, &u, false))
        return agi_nil(t);
    const pool_geom *pg = pooled->attr.ext;
    ag_tensor *out = agi_new(t, &op_max_pool2d_gather, 1, &u, (ag_dtype)u->dtype, 4,
                             (int64_t[]){pg->n, pg->c, pg->oh, pg->ow});
    if (out->flags & AGI_NIL)
        return out;
    out->attr.ext = pg;
    run_planes(t, pg, (ag_dtype)u->dtype, POOL_GATHER, u->value, out->value);
    return out;
}

ag_tensor *ag_avg_pool2d(ag_tape *t, ag_tensor *x, int kh, int kw, int stride_h, int stride_w,
                         int pad_h, int pad_w)
{
    if (!agi_check_inputs(t, "ag_avg_pool2d", 1, &x, false))
        return agi_nil(t);
    if (!pool_check(t, "ag_avg_pool2d", x, kh, kw, stride_h, stride_w, pad_h, pad_w))
        return agi_nil(t);
    /* Every channel on its own: a one-channel convolution over N*C images. */
    int64_t n = x->shape[0], c = x->shape[1];
    ag_tensor *planes = ag_reshape(t, x, 4, (int64_t[]){n * c, 1, x->shape[2], x->shape[3]});
    ag_tensor *k = ag_full(t, (ag_dtype)x->dtype, 4, (int64_t[]){1, 1, kh, kw},
                           1.0 / ((double)kh * (double)kw));
    ag_tensor *y = ag_conv2d(t, planes, k, NULL, stride_h, stride_w, pad_h, pad_w, 1, 1, 1);
    if (y->flags & AGI_NIL)
        return y;
    return ag_reshape(t, y, 4, (int64_t[]){n, c, y->shape[2], y->shape[3]});
}

ag_tensor *ag_global_avg_pool2d(ag_tape *t, ag_tensor *x)
{
    if (!agi_check_inputs(t, "ag_global_avg_pool2d", 1, &x, false))
        return agi_nil(t);
    if (x->rank != 4 || x->shape[2] * x->shape[3] == 0)
        return agi_error(t, AG_ESHAPE,
                         "ag_global_avg_pool2d: x %s must have rank 4 (N, C, H, W) and a "
                         "non-empty plane",
                         agi_shp(x, 0));
    int64_t n = x->shape[0], c = x->shape[1];
    ag_tensor *rows = ag_reshape(t, x, 3, (int64_t[]){n, c, x->shape[2] * x->shape[3]});
    return ag_reshape(t, ag_mean_axis(t, rows, 2, 0), 4, (int64_t[]){n, c, 1, 1});
}

ag_tensor *ag_flatten(ag_tape *t, ag_tensor *x, int start_axis)
{
    if (!agi_check_inputs(t, "ag_flatten", 1, &x, false))
        return agi_nil(t);
    int ax = x->rank == 0 && (start_axis == 0 || start_axis == -1) ? 0
                                                                   : agi_norm_axis(start_axis, x->rank);
    if (ax < 0)
        return agi_error(t, AG_EINVAL, "ag_flatten: start axis %d is out of range for %s",
                         start_axis, agi_shp(x, 0));
    int64_t shape[AG_MAX_DIMS], tail = 1;
    memcpy(shape, x->shape, (size_t)ax * sizeof *shape);
    for (int d = ax; d < x->rank; d++)
        tail *= x->shape[d];
    shape[ax] = tail;
    return ag_reshape(t, x, ax + 1, shape);
}

/* This file's differentiable ops, for the tests that walk every op
** (internal.h, agi_op_tables). */
const ag_op *const agi_ops_pool[] = {
    &op_max_pool2d, &op_max_pool2d_scatter, &op_max_pool2d_gather, NULL
};
