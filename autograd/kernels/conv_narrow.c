/*
** conv_narrow.c: the weight gradient of a convolution whose unfolded
** columns are few, K = C/groups KH KW at most AGK_NARROW_MAX_K (the
** example's first layer: one channel, K = 9), is summed here rather than
** by the gemm: its product dW [Og, K] = gy [Og, P] @ cols^T has a depth
** P of hundreds but only K columns (or, swapped, rows), so the gemm spent
** a third of its time transposing gy to pack it and storing tiny tiles
** (the layer's weight gradient took 385 us on one thread, Zen 3, batch
** 64). Each element (o, t) is DW_LANES partial sums, lane l summing the
** terms gy[o][p] cols[t][p] of p = l (mod DW_LANES), image after image of
** the chunk, reduced in a fixed tree at the chunk's end: the same bits on
** any threads. Four rows of gy by three taps at a time keep twelve vectors
** of sums in registers (GCC's vector extension: loops of lane arrays were not
** vectorised with more than one chain); rows and taps past the edge repeat
** the last one, their sums thrown away.
*/
#include "conv_narrow.h"

#include "simd_clones.h"

#include <string.h>

enum { DW_LANES = 8, DW_ROWS = 4, DW_TAPS = 3 };
/* Columns of gy and cols at a time (a multiple of DW_LANES, so that lane l
** still sums p = l mod DW_LANES): 9 KB of the first layer's columns and 16
** KB of its gy stay in the L1 while all rows and taps read them. */
enum { DW_SPAN = 256 };

#if defined(__GNUC__)
#define DW_VEC(T, name) T name __attribute__((vector_size(DW_LANES * sizeof(T))))
#define DW_LOAD(v, p) memcpy(&(v), (p), sizeof(v))
#define DW_STORE(p, v) memcpy((p), &(v), sizeof(v))
#define DW_LANE(v, l) (v)[l]
#define DW_STEP(s, y, x) ((s) += (y) * (x))
#else
#define DW_VEC(T, name) struct { T e[DW_LANES]; } name
#define DW_LOAD(v, p) memcpy((v).e, (p), sizeof(v))
#define DW_STORE(p, v) memcpy((p), (v).e, sizeof(v))
#define DW_LANE(v, l) (v).e[l]
#define DW_STEP(s, y, x)                                                                           \
    do {                                                                                           \
        for (int l_ = 0; l_ < DW_LANES; l_++)                                                      \
            (s).e[l_] += (y).e[l_] * (x).e[l_];                                                    \
    } while (0)
#endif

#define DEFINE_NARROW(T, SUFFIX)                                                                   \
    /* s[12][DW_LANES] += the terms of rows g[0..3] of gy by taps c0, c1, c2 */                    \
    AGK_SIMD_CLONES static void narrow_block_##SUFFIX(const T *const *g, const T *c0,             \
                                                      const T *c1, const T *c2, int64_t P, T *s)   \
    {                                                                                              \
        const T *g0 = g[0], *g1 = g[1], *g2 = g[2], *g3 = g[3];                                    \
        DW_VEC(T, a0); DW_VEC(T, a1); DW_VEC(T, a2); DW_VEC(T, b0); DW_VEC(T, b1);                \
        DW_VEC(T, b2); DW_VEC(T, d0); DW_VEC(T, d1); DW_VEC(T, d2); DW_VEC(T, e0);                \
        DW_VEC(T, e1); DW_VEC(T, e2); DW_VEC(T, x0); DW_VEC(T, x1); DW_VEC(T, x2);                \
        DW_VEC(T, y);                                                                              \
        T *at[12];                                                                                 \
        for (int i = 0; i < 12; i++)                                                               \
            at[i] = s + i * DW_LANES;                                                              \
        DW_LOAD(a0, at[0]), DW_LOAD(a1, at[1]), DW_LOAD(a2, at[2]), DW_LOAD(b0, at[3]);            \
        DW_LOAD(b1, at[4]), DW_LOAD(b2, at[5]), DW_LOAD(d0, at[6]), DW_LOAD(d1, at[7]);            \
        DW_LOAD(d2, at[8]), DW_LOAD(e0, at[9]), DW_LOAD(e1, at[10]), DW_LOAD(e2, at[11]);          \
        int64_t p = 0;                                                                             \
        for (; p + DW_LANES <= P; p += DW_LANES) {                                                 \
            DW_LOAD(x0, c0 + p), DW_LOAD(x1, c1 + p), DW_LOAD(x2, c2 + p);                         \
            DW_LOAD(y, g0 + p);                                                                    \
            DW_STEP(a0, y, x0);                                                                    \
            DW_STEP(a1, y, x1);                                                                    \
            DW_STEP(a2, y, x2);                                                                    \
            DW_LOAD(y, g1 + p);                                                                    \
            DW_STEP(b0, y, x0);                                                                    \
            DW_STEP(b1, y, x1);                                                                    \
            DW_STEP(b2, y, x2);                                                                    \
            DW_LOAD(y, g2 + p);                                                                    \
            DW_STEP(d0, y, x0);                                                                    \
            DW_STEP(d1, y, x1);                                                                    \
            DW_STEP(d2, y, x2);                                                                    \
            DW_LOAD(y, g3 + p);                                                                    \
            DW_STEP(e0, y, x0);                                                                    \
            DW_STEP(e1, y, x1);                                                                    \
            DW_STEP(e2, y, x2);                                                                    \
        }                                                                                          \
        for (int l = 0; p + l < P; l++) {   /* the tail, lane by lane */                           \
            int64_t q = p + l;                                                                     \
            DW_LANE(a0, l) += g0[q] * c0[q], DW_LANE(a1, l) += g0[q] * c1[q];                      \
            DW_LANE(a2, l) += g0[q] * c2[q], DW_LANE(b0, l) += g1[q] * c0[q];                      \
            DW_LANE(b1, l) += g1[q] * c1[q], DW_LANE(b2, l) += g1[q] * c2[q];                      \
            DW_LANE(d0, l) += g2[q] * c0[q], DW_LANE(d1, l) += g2[q] * c1[q];                      \
            DW_LANE(d2, l) += g2[q] * c2[q], DW_LANE(e0, l) += g3[q] * c0[q];                      \
            DW_LANE(e1, l) += g3[q] * c1[q], DW_LANE(e2, l) += g3[q] * c2[q];                      \
        }                                                                                          \
        DW_STORE(at[0], a0), DW_STORE(at[1], a1), DW_STORE(at[2], a2), DW_STORE(at[3], b0);        \
        DW_STORE(at[4], b1), DW_STORE(at[5], b2), DW_STORE(at[6], d0), DW_STORE(at[7], d1);        \
        DW_STORE(at[8], d2), DW_STORE(at[9], e0), DW_STORE(at[10], e1), DW_STORE(at[11], e2);      \
    }                                                                                              \
    /* the terms of one image, gy [og, P] by cols [k, P], into the sums s */                       \
    static void narrow_add_##SUFFIX(const T *gyn, const T *cols, int64_t og, int64_t k, int64_t P, \
                                    T *s)                                                          \
    {                                                                                              \
        for (int64_t p = 0; p < P; p += DW_SPAN) {                                                 \
            int64_t len = P - p < DW_SPAN ? P - p : DW_SPAN;                                       \
            T *st = s;                                                                             \
            for (int64_t o = 0; o < og; o += DW_ROWS) {                                            \
                const T *rows[DW_ROWS];                                                            \
                for (int64_t r = 0; r < DW_ROWS; r++)                                              \
                    rows[r] = gyn + (o + r < og ? o + r : o) * P + p;                              \
                for (int64_t t = 0; t < k; t += DW_TAPS, st += DW_ROWS * DW_TAPS * DW_LANES) {     \
                    const T *c0 = cols + t * P + p, *c1 = t + 1 < k ? c0 + P : c0;                 \
                    const T *c2 = t + 2 < k ? c0 + 2 * P : c0;                                     \
                    narrow_block_##SUFFIX(rows, c0, c1, c2, len, st);                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    /* the sums s of a group into its dW [Og, K] */                                                \
    static void narrow_total_##SUFFIX(const T *s, int64_t og, int64_t k, T *dw)                    \
    {                                                                                              \
        for (int64_t o = 0; o < og; o += DW_ROWS)                                                  \
            for (int64_t t = 0; t < k; t += DW_TAPS, s += DW_ROWS * DW_TAPS * DW_LANES)            \
                for (int64_t r = 0; r < DW_ROWS && o + r < og; r++)                                \
                    for (int64_t c = 0; c < DW_TAPS && t + c < k; c++) {                           \
                        const T *l = s + (r * DW_TAPS + c) * DW_LANES;                             \
                        dw[(o + r) * k + t + c] =                                                  \
                            ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));     \
                    }                                                                              \
    }
DEFINE_NARROW(float, f32)
DEFINE_NARROW(double, f64)

int64_t agk_narrow_sums(int64_t og, int64_t k)
{
    return (og + DW_ROWS - 1) / DW_ROWS * ((k + DW_TAPS - 1) / DW_TAPS) * DW_ROWS * DW_TAPS *
           DW_LANES;
}

void agk_narrow_add(ag_dtype dt, const void *gy, const void *cols, int64_t og, int64_t k,
                    int64_t P, void *sums)
{
    if (dt == AG_F32)
        narrow_add_f32(gy, cols, og, k, P, sums);
    else
        narrow_add_f64(gy, cols, og, k, P, sums);
}

void agk_narrow_total(ag_dtype dt, const void *sums, int64_t og, int64_t k, void *dw)
{
    if (dt == AG_F32)
        narrow_total_f32(sums, og, k, dw);
    else
        narrow_total_f64(sums, og, k, dw);
}
