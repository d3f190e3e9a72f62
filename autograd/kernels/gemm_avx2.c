/*
** gemm_avx2.c: the AVX2/FMA micro-kernels: a 6 x 16 f32 tile and a 6 x 8
** f64 tile, held in 12 of the 16 ymm registers while the k loop broadcasts
** one value of A per row and multiply-adds it into two vectors of B. A tile
** cut by the edge of C runs a copy of the loop for just its rows and column
** vectors, and masks its loads and stores of C. Only gemm.c's dispatcher
** calls these, after checking the CPU.
*/
#include "gemm_internal.h"

#if AGK_HAVE_X86
#include <immintrin.h>

enum { MR = 6 };

#define AGK_AVX2_INLINE AGK_TARGET_AVX2 static inline __attribute__((always_inline))

/* Lanes j < n of a vector of 'lanes' 32-bit or 64-bit elements set. */
AGK_AVX2_INLINE __m256i lane_mask32(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
AGK_AVX2_INLINE __m256i lane_mask64(int n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

/* The first n (< 1: none) of 8 floats or 4 doubles at c, the rest zero:
** the start of a chain continued from C. */
AGK_AVX2_INLINE __m256 load_c_ps(const float *c, int n)
{
    return n >= 8 ? _mm256_loadu_ps(c) : _mm256_maskload_ps(c, lane_mask32(n));
}
AGK_AVX2_INLINE __m256d load_c_pd(const double *c, int n)
{
    return n >= 4 ? _mm256_loadu_pd(c) : _mm256_maskload_pd(c, lane_mask64(n));
}

/* R rows and H vectors of V elements (8 floats or 4 doubles), constants at
** each call; 'cols' of the H * V columns are stored. With 'pb' (whole
** tiles only), each step's B row is also copied there, packed
** (tile_pack_b). The accumulators are
** named variables, not an array: with an array GCC kept them in memory,
** storing all twelve to the stack on every step of the k loop, and the
** kernel ran at 40% of OpenBLAS's speed on Zen 3 (docs/PERFORMANCE.md). */
#define AVX2_ROWS(NAME, T, VEC, V, SFX, BCAST, LOADC)                                          \
    AGK_AVX2_INLINE void NAME(const int R, const int H, int64_t kc, const T *restrict a,      \
                              int64_t ars, int64_t acs, const T *restrict b, int64_t brs,    \
                              T *restrict c, int64_t ldc, agk_c_mode mode, int cols,         \
                              T *restrict pb)                                                 \
    {                                                                                         \
        VEC z = _mm256_setzero_##SFX();                                                      \
        VEC c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z;                            \
        VEC c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;                            \
        if (mode == AGK_C_CONTINUE) {                                                        \
            INIT_ROW(0, LOADC, V) INIT_ROW(1, LOADC, V) INIT_ROW(2, LOADC, V)                 \
            INIT_ROW(3, LOADC, V) INIT_ROW(4, LOADC, V) INIT_ROW(5, LOADC, V)                 \
        }                                                                                     \
        const T *a0 = a, *a1 = a + ars, *a2 = a + 2 * ars, *a3 = a + 3 * ars;               \
        const T *a4 = a + 4 * ars, *a5 = a + 5 * ars;                                        \
        for (int64_t p = 0; p < kc; p++, b += brs) {                                         \
            VEC b0 = _mm256_loadu_##SFX(b), b1 = H > 1 ? _mm256_loadu_##SFX(b + V) : b0;     \
            KEEP_IN_REGISTERS(b0, b1);                                                       \
            if (pb) {                                                                        \
                _mm256_storeu_##SFX(pb + p * 2 * V, b0);                                     \
                _mm256_storeu_##SFX(pb + p * 2 * V + V, b1);                                 \
            }                                                                                \
            int64_t o = p * acs;                                                              \
            STEP_ROW(0, BCAST) STEP_ROW(1, BCAST) STEP_ROW(2, BCAST)                          \
            STEP_ROW(3, BCAST) STEP_ROW(4, BCAST) STEP_ROW(5, BCAST)                          \
        }                                                                                     \
        /* With AGK_C_ADD, all of the tile's C is read before any of it is       */          \
        /* written (gemm_avx512.c: a masked store would hold up the next load).  */          \
        /* Row by row, not through an array: GCC put an array on the stack.      */          \
        if (mode == AGK_C_ADD) {                                                             \
            ADD_ROW(0, SFX, LOADC, V) ADD_ROW(1, SFX, LOADC, V) ADD_ROW(2, SFX, LOADC, V)    \
            ADD_ROW(3, SFX, LOADC, V) ADD_ROW(4, SFX, LOADC, V) ADD_ROW(5, SFX, LOADC, V)    \
        }                                                                                     \
        STORE_ROW(0, SFX, V) STORE_ROW(1, SFX, V) STORE_ROW(2, SFX, V)                       \
        STORE_ROW(3, SFX, V) STORE_ROW(4, SFX, V) STORE_ROW(5, SFX, V)                       \
    }

/* Row i's accumulators from C (the chain continues), and one k step of row
** i: a broadcast of its value of A, one or two multiply-adds. */
#define INIT_ROW(i, LOADC, V)                                   \
    if (R > i) {                                                \
        c##i##0 = LOADC(c + i * ldc, cols);                     \
        if (H > 1)                                              \
            c##i##1 = LOADC(c + i * ldc + V, cols - V);         \
    }
#define STEP_ROW(i, BCAST)                                      \
    if (R > i) {                                                \
        __typeof__(b0) x = BCAST(a##i + o);                     \
        c##i##0 = FMADD(x, b0, c##i##0);                        \
        if (H > 1)                                              \
            c##i##1 = FMADD(x, b1, c##i##1);                    \
    }
#define ADD_ROW(i, SFX, LOADC, V)                                               \
    if (R > i) {                                                                \
        c##i##0 = _mm256_add_##SFX(LOADC(c + i * ldc, cols), c##i##0);          \
        if (H > 1)                                                              \
            c##i##1 = _mm256_add_##SFX(LOADC(c + i * ldc + V, cols - V), c##i##1); \
    }
#define STORE_ROW(i, SFX, V)                                                    \
    if (R > i) {                                                                \
        STORE_VEC(SFX, c + i * ldc, cols, c##i##0, V);                          \
        if (H > 1)                                                              \
            STORE_VEC(SFX, c + i * ldc + V, cols - V, c##i##1, V);              \
    }
/* The first n of V lanes of v to p (n >= 1). */
#define STORE_VEC(SFX, p, n, v, V)                                              \
    do {                                                                        \
        if ((n) >= V)                                                           \
            _mm256_storeu_##SFX(p, v);                                          \
        else                                                                    \
            STORE_MASKED_##SFX(p, n, v);                                        \
    } while (0)
#define STORE_MASKED_ps(p, n, v) _mm256_maskstore_ps(p, lane_mask32(n), v)
#define STORE_MASKED_pd(p, n, v) _mm256_maskstore_pd(p, lane_mask64(n), v)

#define FMADD _mm256_fmadd_ps
AVX2_ROWS(rows_f32, float, __m256, 8, ps, _mm256_broadcast_ss, load_c_ps)
#undef FMADD
#define FMADD _mm256_fmadd_pd
AVX2_ROWS(rows_f64, double, __m256d, 4, pd, _mm256_broadcast_sd, load_c_pd)
#undef FMADD

/* Any tile: rows <= MR, cols <= two vectors of V; one copy of the loop
** per height and width, each with constant trip counts. */
#define AVX2_TILE_HEIGHTS(ROWS_FN, H)                                                         \
    switch (rows) {                                                                           \
    case 1: ROWS_FN(1, H, kc, a, ars, acs, b, brs, c, ldc, mode, cols, NULL); break;          \
    case 2: ROWS_FN(2, H, kc, a, ars, acs, b, brs, c, ldc, mode, cols, NULL); break;          \
    case 3: ROWS_FN(3, H, kc, a, ars, acs, b, brs, c, ldc, mode, cols, NULL); break;          \
    case 4: ROWS_FN(4, H, kc, a, ars, acs, b, brs, c, ldc, mode, cols, NULL); break;          \
    case 5: ROWS_FN(5, H, kc, a, ars, acs, b, brs, c, ldc, mode, cols, NULL); break;          \
    default: ROWS_FN(6, H, kc, a, ars, acs, b, brs, c, ldc, mode, cols, NULL); break;         \
    }
#define AVX2_TILE(NAME, T, V, ROWS_FN)                                                        \
    AGK_TARGET_AVX2 static void NAME(int64_t kc, const T *a, int64_t ars, int64_t acs,        \
                                     const T *b, int64_t brs, T *c, int64_t ldc,              \
                                     agk_c_mode mode, int rows, int cols)                     \
    {                                                                                         \
        if (cols > V) {                                                                       \
            AVX2_TILE_HEIGHTS(ROWS_FN, 2)                                                     \
        } else {                                                                              \
            AVX2_TILE_HEIGHTS(ROWS_FN, 1)                                                     \
        }                                                                                     \
    }

AVX2_TILE(tile_f32, float, 8, rows_f32)
AVX2_TILE(tile_f64, double, 4, rows_f64)
#undef AVX2_TILE
#undef AVX2_TILE_HEIGHTS

/* A whole tile: MR rows, two vectors, with the strides of A as constants
** where they are known (packed: 1 and MR; rows read in place: p's stride 1),
** so the k loop steps two pointers and computes no addresses, and the
** stores need no masks. With the stores of AVX2_ROWS written row by row,
** 1024^3 went from 87.4 to 90.5 GFLOP/s on Zen 3 (docs/PERFORMANCE.md,
** session 9). */
#define AVX2_TILE_FULL(NAME, T, V, ROWS_FN)                                                   \
    AGK_TARGET_AVX2 static void NAME(int64_t kc, const T *a, int64_t ars, int64_t acs,        \
                                     const T *b, int64_t brs, T *c, int64_t ldc,              \
                                     agk_c_mode mode, int rows, int cols)                     \
    {                                                                                         \
        (void)rows, (void)cols;                                                               \
        if (ars == 1 && acs == MR)                                                            \
            ROWS_FN(MR, 2, kc, a, 1, MR, b, brs, c, ldc, mode, 2 * V, NULL);                  \
        else if (acs == 1)                                                                    \
            ROWS_FN(MR, 2, kc, a, ars, 1, b, brs, c, ldc, mode, 2 * V, NULL);                 \
        else                                                                                  \
            ROWS_FN(MR, 2, kc, a, ars, acs, b, brs, c, ldc, mode, 2 * V, NULL);               \
    }

AVX2_TILE_FULL(tile_full_f32, float, 8, rows_f32)

/* A whole f32 tile that also copies the B panel it reads into 'pb', packed
** (16 values a step of k): the first row of tiles packs B as it goes,
** where a separate pass over B took 2.5 to 3% of 128^3 to 256^3 on Zen 3.
** The B rows are loaded anyway; their two stores a step fit beside the 12
** multiply-adds. Same bits as tile_full_f32. */
AGK_TARGET_AVX2 static void tile_pack_b_f32(int64_t kc, const float *a, int64_t ars, int64_t acs,
                                            const float *b, int64_t brs, float *c, int64_t ldc,
                                            agk_c_mode mode, float *pb)
{
    if (acs == 1)
        rows_f32(MR, 2, kc, a, ars, 1, b, brs, c, ldc, mode, 16, pb);
    else
        rows_f32(MR, 2, kc, a, ars, acs, b, brs, c, ldc, mode, 16, pb);
}
AVX2_TILE_FULL(tile_full_f64, double, 4, rows_f64)
#undef AVX2_TILE_FULL

/* o[q] lane r = r[r] lane q: an 8 x 8 transpose in registers. */
AGK_AVX2_INLINE void transpose8_regs(const __m256 r[8], __m256 o[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    o[0] = _mm256_permute2f128_ps(u0, u4, 0x20), o[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    o[2] = _mm256_permute2f128_ps(u2, u6, 0x20), o[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    o[4] = _mm256_permute2f128_ps(u0, u4, 0x31), o[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    o[6] = _mm256_permute2f128_ps(u2, u6, 0x31), o[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Transposes an 8 x 8 block of floats: row r of src (stride ld) becomes
** column r of dst (stride w); with 'add', dst's rows are added to. */
AGK_AVX2_INLINE void transpose8_add(const float *src, int64_t ld, float *dst, int64_t w, bool add)
{
    __m256 r[8], o[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * ld);
    transpose8_regs(r, o);
#pragma GCC unroll 8
    for (int q = 0; q < 8; q++)
        _mm256_storeu_ps(dst + q * w,
                         add ? _mm256_add_ps(_mm256_loadu_ps(dst + q * w), o[q]) : o[q]);
}

AGK_AVX2_INLINE void transpose8(const float *src, int64_t ld, float *dst, int64_t w)
{
    transpose8_add(src, ld, dst, w, false);
}

AGK_TARGET_AVX2 void agk_store_t_f32_avx2(const float *tile, int nr, int rows, int cols, float *c,
                                          int64_t ldc, bool add)
{
    int i0 = 0;
    for (; i0 + 8 <= rows; i0 += 8) {
        int j = 0;
        for (; j + 8 <= cols; j += 8)
            transpose8_add(tile + i0 * nr + j, nr, c + j * ldc + i0, ldc, add);
        for (; j < cols; j++)
            for (int i = i0; i < i0 + 8; i++)
                c[j * ldc + i] = add ? c[j * ldc + i] + tile[i * nr + j] : tile[i * nr + j];
    }
    for (int j = 0; j < cols && i0 < rows; j++)
        for (int i = i0; i < rows; i++)
            c[j * ldc + i] = add ? c[j * ldc + i] + tile[i * nr + j] : tile[i * nr + j];
}

/* Panels narrower than a vector (AVX2's 6 rows of A): each 8 x 8 block
** read from up to 8 rows (the rest zero) and transposed in registers, then
** stored a step of k at a time, 8 lanes where the w that belong there are
** followed by room the next store overwrites (steps go in order), masked
** where they would pass the panel's end. The scalar loops took 2.5 cycles
** a value: 3 to 4% of a 768^3 product on Zen 3. */
AGK_AVX2_INLINE void pack_t_narrow_f32(int64_t kc, int64_t rows, const float *src, int64_t ld,
                                       float *dst, int w)
{
    const __m256i lanes = lane_mask32(w);
    const int64_t end = kc * w;
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        __m256 r[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++)
            r[i] = i < rows ? _mm256_loadu_ps(src + i * ld + p) : _mm256_setzero_ps();
        __m256 o[8];
        transpose8_regs(r, o);
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++) {
            float *d = dst + (p + q) * w;
            if ((p + q) * w + 8 <= end)
                _mm256_storeu_ps(d, o[q]);
            else
                _mm256_maskstore_ps(d, lanes, o[q]);
        }
    }
    for (; p < kc; p++)
        for (int i = 0; i < w; i++)
            dst[p * w + i] = i < rows ? src[i * ld + p] : 0.0f;
}

/* A whole panel of AVX2's 6 rows, the common case of pack_t_narrow_f32
** without its checks: 8 steps of k at a time, each 8 x 8 transpose (rows 6
** and 7 are copies of row 0, whose lanes land where the next store
** overwrites them) stored as 8 overlapping vectors, while 8 more steps
** follow; the rest by pack_t_narrow_f32. Its per-row and per-store checks
** had cost 1.1 cycles a value on Zen 3, this 0.4 (docs/PERFORMANCE.md). */
AGK_AVX2_INLINE void pack_t6_f32(int64_t kc, const float *src, int64_t ld, float *dst)
{
    int64_t p = 0;
    for (; p + 8 < kc; p += 8) {
        __m256 r[8], o[8];
        r[0] = _mm256_loadu_ps(src + p);
        r[1] = _mm256_loadu_ps(src + ld + p);
        r[2] = _mm256_loadu_ps(src + 2 * ld + p);
        r[3] = _mm256_loadu_ps(src + 3 * ld + p);
        r[4] = _mm256_loadu_ps(src + 4 * ld + p);
        r[5] = _mm256_loadu_ps(src + 5 * ld + p);
        r[6] = r[0];
        r[7] = r[0];
        transpose8_regs(r, o);
        float *d = dst + p * 6;
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++)
            _mm256_storeu_ps(d + 6 * q, o[q]);
    }
    if (p < kc)
        pack_t_narrow_f32(kc - p, 6, src + p, ld, dst + p * 6, 6);
}

AGK_TARGET_AVX2 void agk_pack_t_f32_avx2(int64_t kc, int64_t rows, const float *src, int64_t ld,
                                         float *dst, int w)
{
    if (w == 6 && rows == 6) {
        pack_t6_f32(kc, src, ld, dst);
        return;
    }
    if (w < 8) {
        pack_t_narrow_f32(kc, rows, src, ld, dst, w);
        return;
    }
    int64_t i0 = 0;
    for (; i0 + 8 <= rows; i0 += 8) {
        int64_t p = 0;
        for (; p + 8 <= kc; p += 8)
            transpose8(src + i0 * ld + p, ld, dst + p * w + i0, w);
        for (; p < kc; p++)
            for (int r = 0; r < 8; r++)
                dst[p * w + i0 + r] = src[(i0 + r) * ld + p];
    }
    if (i0 < w)
        for (int64_t p = 0; p < kc; p++)
            for (int64_t i = i0; i < w; i++)
                dst[p * w + i] = i < rows ? src[i * ld + p] : 0.0f;
}

/* Eight rows at a time across every panel (each panel gets eight rows'
** lines together, where the template's pack_b_nr goes a row at a time), with
** whole vectors where the columns fill them (the template is compiled for
** SSE2). Lanes past a
** panel's width (w not a multiple of 8) spill into the next rows' places,
** which the next stores overwrite, and are masked where they would pass the
** panel's end. At 256^3 on Zen 3 packing B took 2.5% of the time, down from
** 3.3%. */
AGK_AVX2_INLINE void pack_n_w(const int w, int64_t kc, int64_t cols, const float *src,
                              int64_t ld, float *dst)
{
    const int chunks = (w + 7) / 8;   /* at most 2 */
    const int64_t end = kc * w;
    for (int64_t p0 = 0; p0 < kc; p0 += 8) {
        int64_t p1 = kc - p0 < 8 ? kc : p0 + 8;
        float *panel = dst;
        int64_t jr = 0;
        /* Panels whose loads are whole vectors, and rows whose stores are. */
        for (; jr + 8 * chunks <= cols; jr += w, panel += w * kc)
            for (int64_t p = p0; p < p1; p++) {
                const float *s = src + p * ld + jr;
                float *d = panel + p * w;
                __m256 v0 = _mm256_loadu_ps(s);
                __m256 v1 = chunks > 1 ? _mm256_loadu_ps(s + 8) : v0;
                if (p * w + 8 * chunks <= end) {
                    _mm256_storeu_ps(d, v0);
                    if (chunks > 1)
                        _mm256_storeu_ps(d + 8, v1);
                } else {
                    _mm256_maskstore_ps(d, lane_mask32(w), v0);
                    if (chunks > 1)
                        _mm256_maskstore_ps(d + 8, lane_mask32(w - 8), v1);
                }
            }
        for (; jr < cols; jr += w, panel += w * kc)
            for (int64_t p = p0; p < p1; p++)
                for (int j = 0; j < w; j++)
                    panel[p * w + j] = jr + j < cols ? src[p * ld + jr + j] : 0.0f;
    }
}

AGK_TARGET_AVX2 void agk_pack_n_f32_avx2(int64_t kc, int64_t cols, const float *src, int64_t ld,
                                         float *dst, int w)
{
    switch (w) {
    case 16: pack_n_w(16, kc, cols, src, ld, dst); break;
    default: pack_n_w(w, kc, cols, src, ld, dst); break;
    }
}

/* The f64 twin, in 4 x 4 blocks. */
AGK_AVX2_INLINE void transpose4_add(const double *src, int64_t ld, double *dst, int64_t w,
                                    bool add)
{
    __m256d r0 = _mm256_loadu_pd(src + 0 * ld), r1 = _mm256_loadu_pd(src + 1 * ld);
    __m256d r2 = _mm256_loadu_pd(src + 2 * ld), r3 = _mm256_loadu_pd(src + 3 * ld);
    __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
    __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
    __m256d o[4] = {
        _mm256_permute2f128_pd(t0, t2, 0x20), _mm256_permute2f128_pd(t1, t3, 0x20),
        _mm256_permute2f128_pd(t0, t2, 0x31), _mm256_permute2f128_pd(t1, t3, 0x31),
    };
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++)
        _mm256_storeu_pd(dst + q * w,
                         add ? _mm256_add_pd(_mm256_loadu_pd(dst + q * w), o[q]) : o[q]);
}

AGK_AVX2_INLINE void transpose4(const double *src, int64_t ld, double *dst, int64_t w)
{
    transpose4_add(src, ld, dst, w, false);
}

AGK_TARGET_AVX2 void agk_store_t_f64_avx2(const double *tile, int nr, int rows, int cols,
                                          double *c, int64_t ldc, bool add)
{
    int i0 = 0;
    for (; i0 + 4 <= rows; i0 += 4) {
        int j = 0;
        for (; j + 4 <= cols; j += 4)
            transpose4_add(tile + i0 * nr + j, nr, c + j * ldc + i0, ldc, add);
        for (; j < cols; j++)
            for (int i = i0; i < i0 + 4; i++)
                c[j * ldc + i] = add ? c[j * ldc + i] + tile[i * nr + j] : tile[i * nr + j];
    }
    for (int j = 0; j < cols && i0 < rows; j++)
        for (int i = i0; i < rows; i++)
            c[j * ldc + i] = add ? c[j * ldc + i] + tile[i * nr + j] : tile[i * nr + j];
}

AGK_TARGET_AVX2 void agk_pack_t_f64_avx2(int64_t kc, int64_t rows, const double *src, int64_t ld,
                                         double *dst, int w)
{
    int64_t i0 = 0;
    for (; i0 + 4 <= rows; i0 += 4) {
        int64_t p = 0;
        for (; p + 4 <= kc; p += 4)
            transpose4(src + i0 * ld + p, ld, dst + p * w + i0, w);
        for (; p < kc; p++)
            for (int r = 0; r < 4; r++)
                dst[p * w + i0 + r] = src[(i0 + r) * ld + p];
    }
    if (i0 < w)
        for (int64_t p = 0; p < kc; p++)
            for (int64_t i = i0; i < w; i++)
                dst[p * w + i] = i < rows ? src[i * ld + p] : 0.0;
}

/* Blocks, measured on Zen 4 (docs/PERFORMANCE.md): a long k block keeps C
** in registers longer; the A block (mc x kc) and a B panel (kc x nr) fit
** L2 together, and the B block (kc x nc) L2 or L3. */
const agk_kernel_f32 agk_kernel_f32_avx2 = {
    {MR, 16, 48, 1024, 1024}, MR, tile_f32, tile_full_f32, false, agk_pack_t_f32_avx2,
    agk_store_t_f32_avx2, agk_pack_n_f32_avx2, tile_pack_b_f32,
};
const agk_kernel_f64 agk_kernel_f64_avx2 = {
    {MR, 8, 48, 512, 1024}, MR, tile_f64, tile_full_f64, false, agk_pack_t_f64_avx2,
    agk_store_t_f64_avx2, NULL, NULL,
};

#else
/* ISO C forbids an empty translation unit. */
typedef int agk_no_avx2;
#endif
