/*
** test_gemm.c: the matrix-product kernels (autograd/kernels/gemm*.c) against
** a naive triple loop in long double, on many odd shapes, both transposes,
** padded strides, both dtypes, with the dispatcher forced onto each
** instruction set this CPU has; SIMD against portable; and the bits of C
** for 1, 2 and 3 threads.
*/
#include "kernels/kernels.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A shape and layout of C = op(A) op(B), with row strides padded by 'pad'. */
typedef struct gemm_case {
    int64_t m, n, k;
    bool ta, tb;
    int64_t pad;
} gemm_case;

/* Operands and results of one case in one dtype, all in malloc'd memory. */
typedef struct operands {
    ag_dtype dt;
    gemm_case g;
    int64_t lda, ldb, ldc;
    void *a, *b, *c;
    long double *ref;     /* m x n, exact enough to judge both dtypes */
    double *bound;        /* m x n: sum_p |a||b|, for the tolerance */
} operands;

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static double uniform(void)
{
    /* xorshift64*: reproducible, independent of libc. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717u) >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static size_t esize(ag_dtype dt) { return dt == AG_F32 ? sizeof(float) : sizeof(double); }

static double get(ag_dtype dt, const void *p, int64_t i)
{
    return dt == AG_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static void set(ag_dtype dt, void *p, int64_t i, double v)
{
    if (dt == AG_F32)
        ((float *)p)[i] = (float)v;
    else
        ((double *)p)[i] = v;
}

/* Fills A, B and the padding of every buffer (with NaN where the kernel must
** neither read nor write), and computes the reference product. */
static operands make(ag_dtype dt, gemm_case g)
{
    operands o = {.dt = dt, .g = g};
    int64_t ar = g.ta ? g.k : g.m, ac = g.ta ? g.m : g.k;
    int64_t br = g.tb ? g.n : g.k, bc = g.tb ? g.k : g.n;
    o.lda = ac + g.pad;
    o.ldb = bc + g.pad;
    o.ldc = g.n + g.pad;
    size_t es = esize(dt);
    o.a = malloc((size_t)(ar * o.lda + 1) * es);
    o.b = malloc((size_t)(br * o.ldb + 1) * es);
    o.c = malloc((size_t)(g.m * o.ldc + 1) * es);
    o.ref = malloc((size_t)(g.m * g.n + 1) * sizeof *o.ref);
    o.bound = malloc((size_t)(g.m * g.n + 1) * sizeof *o.bound);
    cr_assert(o.a && o.b && o.c && o.ref && o.bound);
    for (int64_t i = 0; i < ar * o.lda; i++)
        set(dt, o.a, i, i % o.lda < ac ? uniform() : NAN);
    for (int64_t i = 0; i < br * o.ldb; i++)
        set(dt, o.b, i, i % o.ldb < bc ? uniform() : NAN);
    for (int64_t i = 0; i < g.m; i++)
        for (int64_t j = 0; j < g.n; j++) {
            long double s = 0;
            double bound = 0;
            for (int64_t p = 0; p < g.k; p++) {
                double x = get(dt, o.a, g.ta ? p * o.lda + i : i * o.lda + p);
                double y = get(dt, o.b, g.tb ? j * o.ldb + p : p * o.ldb + j);
                s += (long double)x * y;
                bound += fabs(x * y);
            }
            o.ref[i * g.n + j] = s;
            o.bound[i * g.n + j] = bound;
        }
    return o;
}

static void release(operands *o)
{
    free(o->a);
    free(o->b);
    free(o->c);
    free(o->ref);
    free(o->bound);
}

/* Runs the product on 'isa' with 'pool' into o->c, whose padding is set to a
** sentinel first and must survive. */
static void run(operands *o, agk_isa isa, ag_pool *pool)
{
    const gemm_case *g = &o->g;
    size_t es = esize(o->dt);
    for (int64_t i = 0; i < g->m * o->ldc; i++)
        set(o->dt, o->c, i, i % o->ldc < g->n ? NAN : 12345.0);
    size_t need = agk_gemm_scratch_isa(isa, o->dt, g->m, g->n, g->k, g->ta, g->tb, pool);
    /* Scratch at an odd offset: the kernel must align it itself. */
    char *scratch = malloc(need + 8);
    cr_assert(scratch || need == 0);
    agk_gemm_isa(isa, o->dt, g->m, g->n, g->k, o->a, o->lda, g->ta, o->b, o->ldb, g->tb, o->c,
                 o->ldc, scratch ? scratch + (es == 4 ? 4 : 8) : NULL, pool);
    free(scratch);
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = g->n; j < o->ldc; j++)
            cr_assert_eq(get(o->dt, o->c, i * o->ldc + j), 12345.0,
                         "%s %s: [%lld,%lld,%lld] ta=%d tb=%d wrote into padding at (%lld,%lld)",
                         agk_isa_name(isa), ag_dtype_name(o->dt), (long long)g->m,
                         (long long)g->n, (long long)g->k, g->ta, g->tb, (long long)i,
                         (long long)j);
}

/* Every element within a forward-error bound of the reference. */
static void check(const operands *o, agk_isa isa)
{
    const gemm_case *g = &o->g;
    double eps = o->dt == AG_F32 ? FLT_EPSILON : DBL_EPSILON;
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = 0; j < g->n; j++) {
            double got = get(o->dt, o->c, i * o->ldc + j);
            double want = (double)o->ref[i * g->n + j];
            double tol = (double)(g->k + 2) * eps * o->bound[i * g->n + j] + 1e-300;
            cr_assert(fabs(got - want) <= tol,
                      "%s %s: [%lld,%lld,%lld] ta=%d tb=%d pad=%lld: C(%lld,%lld) = %.17g, "
                      "want %.17g (tolerance %.3g)",
                      agk_isa_name(isa), ag_dtype_name(o->dt), (long long)g->m, (long long)g->n,
                      (long long)g->k, g->ta, g->tb, (long long)g->pad, (long long)i,
                      (long long)j, got, want, tol);
        }
}

/* The cases: every dimension in 1..67 appears, with the register-tile
** edges (multiples of 4, 6, 8, 16, 32 and their neighbours) over-represented,
** plus shapes past the cache blocks (operands read in place or packed,
** several k blocks) and narrow ones (computed as C^T). */
static int make_cases(gemm_case *out, int cap)
{
    static const int64_t edges[] = {1, 2, 3, 5, 6, 7, 8, 9, 12, 15, 16, 17,
                                    31, 32, 33, 47, 48, 49, 63, 64, 65, 67};
    int n = 0;
    for (int64_t d = 1; d <= 67 && n < cap; d++) {
        int64_t e = edges[d % (int64_t)(sizeof edges / sizeof edges[0])];
        out[n++] = (gemm_case){d, e, 68 - d, d % 2 == 1, d % 3 == 1, d % 4 == 0 ? 3 : 0};
        out[n++] = (gemm_case){e, 68 - d, d, d % 3 == 2, d % 2 == 0, d % 5 == 0 ? 1 : 0};
        out[n++] = (gemm_case){68 - d, d, e, d % 4 < 2, d % 4 >= 2, d % 7 == 0 ? 5 : 0};
    }
    static const gemm_case big[] = {
        {131, 97, 301, false, false, 0}, {131, 97, 301, true, true, 2},
        {100, 70, 1100, false, true, 0}, {70, 100, 1100, true, false, 1},
        {9, 1100, 30, false, false, 0},  {9, 1100, 30, true, true, 0},
        {300, 3, 200, false, false, 0},  {300, 3, 200, true, false, 0},
        {3, 300, 200, false, true, 0},   {260, 10, 130, true, true, 4},
        {200, 260, 40, false, true, 0},  {1, 1, 2000, false, false, 0},
        /* Over 2 MB of operands even in f32: every panel packed. */
        {600, 8, 900, true, false, 0},   {8, 600, 900, false, true, 1},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0] && n < cap; i++)
        out[n++] = big[i];
    return n;
}

enum { MAX_CASES = 256 };

static void against_reference(ag_dtype dt, agk_isa isa)
{
    if (!agk_isa_supported(isa))
        cr_skip_test("this CPU lacks %s", agk_isa_name(isa));
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    for (int i = 0; i < n; i++) {
        operands o = make(dt, cases[i]);
        run(&o, isa, NULL);
        check(&o, isa);
        release(&o);
    }
}

Test(gemm, portable_f32_matches_naive) { against_reference(AG_F32, AGK_ISA_PORTABLE); }
Test(gemm, portable_f64_matches_naive) { against_reference(AG_F64, AGK_ISA_PORTABLE); }
Test(gemm, avx2_f32_matches_naive) { against_reference(AG_F32, AGK_ISA_AVX2); }
Test(gemm, avx2_f64_matches_naive) { against_reference(AG_F64, AGK_ISA_AVX2); }
Test(gemm, avx512_f32_matches_naive) { against_reference(AG_F32, AGK_ISA_AVX512); }
Test(gemm, avx512_f64_matches_naive) { against_reference(AG_F64, AGK_ISA_AVX512); }

/* The best kernel and the portable one agree within a few roundings of the
** result's magnitude bound, element by element. */
static void simd_vs_portable(ag_dtype dt)
{
    agk_isa best = agk_isa_best();
    if (best == AGK_ISA_PORTABLE)
        cr_skip_test("no SIMD kernel on this CPU");
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    double eps = dt == AG_F32 ? FLT_EPSILON : DBL_EPSILON;
    for (int i = 0; i < n; i += 3) {
        operands o = make(dt, cases[i]);
        size_t bytes = (size_t)(o.g.m * o.ldc) * esize(dt);
        run(&o, AGK_ISA_PORTABLE, NULL);
        void *portable = malloc(bytes + 1);
        cr_assert(portable);
        memcpy(portable, o.c, bytes);
        run(&o, best, NULL);
        for (int64_t r = 0; r < o.g.m; r++)
            for (int64_t c = 0; c < o.g.n; c++) {
                int64_t at = r * o.ldc + c;
                double tol = 2.0 * (double)(o.g.k + 2) * eps * o.bound[r * o.g.n + c] + 1e-300;
                cr_assert(fabs(get(dt, o.c, at) - get(dt, portable, at)) <= tol,
                          "%s vs portable differ at (%lld,%lld) of case %d", agk_isa_name(best),
                          (long long)r, (long long)c, i);
            }
        free(portable);
        release(&o);
    }
}

Test(gemm, simd_agrees_with_portable_f32) { simd_vs_portable(AG_F32); }
Test(gemm, simd_agrees_with_portable_f64) { simd_vs_portable(AG_F64); }

/* k == 0 gives zeros (C is overwritten, not left alone); empty m or n touch
** nothing. */
Test(gemm, empty_inner_dimension_gives_zeros)
{
    for (int isa = 0; isa < AGK_ISA_COUNT; isa++) {
        if (!agk_isa_supported((agk_isa)isa))
            continue;
        float c[6] = {1, 2, 3, 4, 5, 6}, dummy = 7;
        size_t need = agk_gemm_scratch_isa((agk_isa)isa, AG_F32, 2, 3, 0, false, false, NULL);
        void *scratch = malloc(need);
        agk_gemm_isa((agk_isa)isa, AG_F32, 2, 3, 0, &dummy, 0, false, &dummy, 3, false, c, 3,
                     scratch, NULL);
        free(scratch);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(c[i], 0.0f, "%s: C[%d] = %g", agk_isa_name((agk_isa)isa), i, c[i]);
        agk_gemm_isa((agk_isa)isa, AG_F32, 0, 3, 5, &dummy, 5, false, &dummy, 3, false, c, 3,
                     NULL, NULL);
        agk_gemm_isa((agk_isa)isa, AG_F32, 2, 0, 5, &dummy, 5, false, &dummy, 0, false, c, 0,
                     NULL, NULL);
        cr_assert_eq(agk_gemm_scratch_isa((agk_isa)isa, AG_F32, 0, 3, 5, false, false, NULL), 0);
    }
}

/* A small product worked by hand: [[1,2],[3,4]] [[5,6],[7,8]] and its
** transposed forms. */
Test(gemm, known_values_with_transposes)
{
    const double a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    const double want[4][4] = {
        {19, 22, 43, 50},  /* A B */
        {17, 23, 39, 53},  /* A B^T */
        {26, 30, 38, 44},  /* A^T B */
        {23, 31, 34, 46},  /* A^T B^T */
    };
    for (int isa = 0; isa < AGK_ISA_COUNT; isa++) {
        if (!agk_isa_supported((agk_isa)isa))
            continue;
        for (int t = 0; t < 4; t++) {
            bool ta = t >= 2, tb = t % 2 == 1;
            double c[4];
            size_t need = agk_gemm_scratch_isa((agk_isa)isa, AG_F64, 2, 2, 2, ta, tb, NULL);
            void *scratch = malloc(need);
            agk_gemm_isa((agk_isa)isa, AG_F64, 2, 2, 2, a, 2, ta, b, 2, tb, c, 2, scratch, NULL);
            free(scratch);
            for (int i = 0; i < 4; i++)
                cr_assert_eq(c[i], want[t][i], "%s ta=%d tb=%d: C[%d] = %g, want %g",
                             agk_isa_name((agk_isa)isa), ta, tb, i, c[i], want[t][i]);
        }
    }
}

Test(gemm, dispatcher_names_and_support)
{
    cr_assert(agk_isa_supported(AGK_ISA_PORTABLE));
    cr_assert(agk_isa_supported(agk_isa_best()));
    cr_assert_str_eq(agk_isa_name(AGK_ISA_PORTABLE), "portable");
    cr_assert_str_eq(agk_isa_name(AGK_ISA_AVX2), "avx2");
    cr_assert_str_eq(agk_isa_name(AGK_ISA_AVX512), "avx512");
    cr_assert_str_eq(agk_isa_name(AGK_ISA_COUNT), "?");
    /* AVX-512 kernels also need AVX2 (the dispatcher prefers the widest). */
    if (agk_isa_supported(AGK_ISA_AVX512))
        cr_assert(agk_isa_supported(AGK_ISA_AVX2));
}

/* Shapes big enough to be split among threads, in both orientations and
** with several k blocks: the bits of C must not depend on the thread count. */
static void threads_bitwise(ag_dtype dt, agk_isa isa)
{
    if (!agk_isa_supported(isa))
        cr_skip_test("this CPU lacks %s", agk_isa_name(isa));
    static const gemm_case cases[] = {
        {150, 130, 170, false, false, 0}, {150, 130, 170, true, true, 1},
        {97, 211, 160, false, true, 0},   {211, 97, 160, true, false, 0},
        {700, 5, 900, false, false, 0},   {700, 5, 900, true, true, 0},
        {40, 50, 1500, false, false, 2},  {5, 640, 1000, false, true, 0},
        {333, 333, 40, false, false, 0},
    };
    ag_pool *two = ag_pool_new(2), *three = ag_pool_new(3);
    cr_assert(two && three);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        operands o = make(dt, cases[i]);
        size_t bytes = (size_t)(o.g.m * o.ldc) * esize(dt);
        run(&o, isa, NULL);
        check(&o, isa);
        void *one = malloc(bytes);
        cr_assert(one);
        memcpy(one, o.c, bytes);
        run(&o, isa, two);
        cr_assert(memcmp(one, o.c, bytes) == 0, "%s %s case %zu: 2 threads differ from 1",
                  agk_isa_name(isa), ag_dtype_name(dt), i);
        run(&o, isa, three);
        cr_assert(memcmp(one, o.c, bytes) == 0, "%s %s case %zu: 3 threads differ from 1",
                  agk_isa_name(isa), ag_dtype_name(dt), i);
        free(one);
        release(&o);
    }
    ag_pool_free(two);
    ag_pool_free(three);
}

Test(gemm, threads_bitwise_portable_f32) { threads_bitwise(AG_F32, AGK_ISA_PORTABLE); }
Test(gemm, threads_bitwise_portable_f64) { threads_bitwise(AG_F64, AGK_ISA_PORTABLE); }
Test(gemm, threads_bitwise_avx2_f32) { threads_bitwise(AG_F32, AGK_ISA_AVX2); }
Test(gemm, threads_bitwise_avx2_f64) { threads_bitwise(AG_F64, AGK_ISA_AVX2); }
Test(gemm, threads_bitwise_avx512_f32) { threads_bitwise(AG_F32, AGK_ISA_AVX512); }
Test(gemm, threads_bitwise_avx512_f64) { threads_bitwise(AG_F64, AGK_ISA_AVX512); }

/* More threads are asked for than the product has work for: the scratch
** size says so, and the result is still right. */
Test(gemm, small_product_with_pool)
{
    ag_pool *pool = ag_pool_new(4);
    cr_assert(pool);
    operands o = make(AG_F32, (gemm_case){3, 4, 5, false, false, 0});
    cr_assert_eq(agk_gemm_scratch(AG_F32, 3, 4, 5, false, false, pool),
                 agk_gemm_scratch(AG_F32, 3, 4, 5, false, false, NULL));
    run(&o, agk_isa_best(), pool);
    check(&o, agk_isa_best());
    release(&o);
    ag_pool_free(pool);
}

/* agk_gemm_add: C + the product, for every case whose k is one block, has
** the bits of the product computed alone and then added into C; with k == 0
** it is C + 0. Longer k must still be close to C + the reference. */
static void add_matches_separate_add(ag_dtype dt, ag_pool *pool)
{
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    cases[n++] = (gemm_case){784, 30, 10, true, false, 0};   /* Nielsen's weight gradient */
    cases[n++] = (gemm_case){5, 7, 0, false, false, 1};
    size_t es = esize(dt);
    for (int i = 0; i < n; i++) {
        gemm_case g = cases[i];
        operands o = make(dt, g);
        run(&o, agk_isa_best(), pool);   /* o.c = the product alone */
        size_t cbytes = (size_t)(g.m * o.ldc) * es;
        void *c = malloc(cbytes + es), *want = malloc(cbytes + es);
        cr_assert(c && want);
        for (int64_t e = 0; e < g.m * o.ldc; e++) {
            double v = e % o.ldc < g.n ? uniform() * 4 : 12345.0;
            if (e % 97 == 5)
                v = -0.0;
            set(dt, c, e, v);
            set(dt, want, e, e % o.ldc < g.n ? get(dt, c, e) + get(dt, o.c, e) : v);
        }
        size_t need = agk_gemm_scratch(dt, g.m, g.n, g.k, g.ta, g.tb, pool);
        void *scratch = need ? malloc(need) : NULL;
        agk_gemm_add(dt, g.m, g.n, g.k, o.a, o.lda, g.ta, o.b, o.ldb, g.tb, c, o.ldc, scratch, pool);
        if (g.k <= agk_gemm_one_block_k(dt)) {
            cr_assert_eq(memcmp(c, want, cbytes), 0, "%s [%lld,%lld,%lld] ta=%d tb=%d: C + AB differs",
                         ag_dtype_name(dt), (long long)g.m, (long long)g.n, (long long)g.k, g.ta, g.tb);
        } else {
            for (int64_t e = 0; e < g.m * o.ldc; e++) {
                double tol = e % o.ldc < g.n ? 1e-5 * (4 + o.bound[e / o.ldc * g.n + e % o.ldc]) : 0;
                cr_assert_leq(fabs(get(dt, c, e) - get(dt, want, e)), tol, "element %lld", (long long)e);
            }
        }
        free(scratch);
        free(c);
        free(want);
        release(&o);
    }
}

Test(gemm, add_into_c_has_the_bits_of_a_separate_add)
{
    ag_pool *pool = ag_pool_new(2);
    for (int d = 0; d < 2; d++) {
        add_matches_separate_add(d ? AG_F64 : AG_F32, NULL);
        add_matches_separate_add(d ? AG_F64 : AG_F32, pool);
    }
    ag_pool_free(pool);
}

/* A small product whose operands are read in place skips the planning and
** the walk over cache blocks (gemm.c: trivial_plan). Its rows must have the
** bits of the same rows of a product too big for that path, which is
** planned, walked in blocks and, with a pool, cut among threads: each row
** of C depends on its row of op(A) alone. */
static void small_product_rows(ag_dtype dt, agk_isa isa, ag_pool *pool, gemm_case g, bool add)
{
    size_t es = esize(dt);
    /* Enough more rows that the operands pass 192 KB. */
    int64_t big_m = g.m + 200 * 1024 / (g.k * (int64_t)es) + 1;
    int64_t lda = g.ta ? big_m : g.k, ldc = g.n + g.pad;
    int64_t a_len = g.ta ? g.k * big_m : big_m * g.k, b_len = g.k * g.n;
    void *a = malloc((size_t)a_len * es), *b = malloc((size_t)b_len * es);
    void *small = malloc((size_t)(g.m * ldc) * es), *big = malloc((size_t)(big_m * ldc) * es);
    cr_assert(a && b && small && big);
    for (int64_t i = 0; i < a_len; i++)
        set(dt, a, i, uniform());
    for (int64_t i = 0; i < b_len; i++)
        set(dt, b, i, uniform());
    for (int64_t i = 0; i < big_m * ldc; i++)
        set(dt, big, i, i % ldc < g.n ? uniform() : 12345.0);
    memcpy(small, big, (size_t)(g.m * ldc) * es);
    void *scratch = malloc(agk_gemm_scratch_isa(isa, dt, big_m, g.n, g.k, g.ta, false, pool));
    cr_assert(scratch);
    if (add) {
        agk_gemm_add(dt, g.m, g.n, g.k, a, lda, g.ta, b, g.n, false, small, ldc, scratch, pool);
        agk_gemm_add(dt, big_m, g.n, g.k, a, lda, g.ta, b, g.n, false, big, ldc, scratch, pool);
    } else {
        agk_gemm_isa(isa, dt, g.m, g.n, g.k, a, lda, g.ta, b, g.n, false, small, ldc, scratch, pool);
        agk_gemm_isa(isa, dt, big_m, g.n, g.k, a, lda, g.ta, b, g.n, false, big, ldc, scratch, pool);
    }
    cr_assert(memcmp(small, big, (size_t)(g.m * ldc) * es) == 0,
              "%s %s [%lld,%lld,%lld] ta=%d add=%d: a small product's rows differ from the "
              "same rows of a planned one", agk_isa_name(isa), ag_dtype_name(dt), (long long)g.m,
              (long long)g.n, (long long)g.k, g.ta, add);
    free(scratch);
    free(a);
    free(b);
    free(small);
    free(big);
}

Test(gemm, small_products_have_the_bits_of_planned_ones)
{
    /* Columns in whole vectors of every kernel (40: of some), in-place
    ** rows and transposed ones, tiles cut by the edge, padded C. */
    static const gemm_case cases[] = {
        {64, 64, 64, false, false, 0}, {96, 96, 96, false, false, 0},
        {10, 32, 784, false, false, 0}, {61, 48, 33, true, false, 3},
        {13, 16, 200, true, false, 0}, {19, 40, 50, false, false, 1},
        {1, 16, 1, false, false, 0},   {12, 64, 7, true, false, 0},
    };
    ag_pool *pool = ag_pool_new(2);
    cr_assert(pool);
    for (int d = 0; d < 2; d++) {
        ag_dtype dt = d ? AG_F64 : AG_F32;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            for (int isa = 0; isa < AGK_ISA_COUNT; isa++)
                if (agk_isa_supported((agk_isa)isa)) {
                    small_product_rows(dt, (agk_isa)isa, NULL, cases[i], false);
                    small_product_rows(dt, (agk_isa)isa, pool, cases[i], false);
                }
            small_product_rows(dt, agk_isa_best(), pool, cases[i], true);
        }
    }
    ag_pool_free(pool);
}
