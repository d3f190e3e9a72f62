/*
** test_gemm.c: the matrix-product kernels (autograd/kernels/gemm*.c) against
** a naive triple loop in long double, on many odd shapes, both transposes,
** padded strides, both dtypes, with the driver forced onto each kernel this
** CPU runs; the SIMD kernels against each other bit for bit, whatever the
** cache blocks, with C as it lies or transposed, overwritten or added to;
** SIMD against portable; the bits of C for 1, 2 and 3 threads; the choice
** of kernel and its override. tests/meson.build also builds it over
** emulated AVX-512 intrinsics, so the AVX-512 kernels run on any CPU with
** AVX2 (AGK_AVX512_EMULATED).
*/
#define _POSIX_C_SOURCE 200809L

#include "kernels/gemm_internal.h"
#include "autograd.h"

#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static agk_gemm_opts opts_of(agk_gemm_kernel id) { return (agk_gemm_opts){.kernel = id}; }

/* Runs the product with 'o' and 'pool' into o->c (with 'add', C + it: C is
** then left as the caller set it), whose padding is set to a sentinel first
** and must survive. */
static void run_opts(operands *o, const agk_gemm_opts *opts, ag_pool *pool, bool add)
{
    const gemm_case *g = &o->g;
    size_t es = esize(o->dt);
    if (!add)
        for (int64_t i = 0; i < g->m * o->ldc; i++)
            set(o->dt, o->c, i, i % o->ldc < g->n ? NAN : 12345.0);
    size_t need = agk_gemm_scratch_with(opts, o->dt, g->m, g->n, g->k, g->ta, g->tb, pool);
    /* Scratch at an odd offset: the kernel must align it itself. */
    char *scratch = malloc(need + 8);
    cr_assert(scratch || need == 0);
    agk_gemm_with(opts, o->dt, g->m, g->n, g->k, o->a, o->lda, g->ta, o->b, o->ldb, g->tb, o->c,
                  o->ldc, add, scratch ? scratch + (es == 4 ? 4 : 8) : NULL, pool);
    free(scratch);
    for (int64_t i = 0; i < g->m; i++)
        for (int64_t j = g->n; j < o->ldc; j++)
            cr_assert_eq(get(o->dt, o->c, i * o->ldc + j), 12345.0,
                         "%s %s: [%lld,%lld,%lld] ta=%d tb=%d wrote into padding at (%lld,%lld)",
                         agk_gemm_kernel_name(opts->kernel), ag_dtype_name(o->dt),
                         (long long)g->m, (long long)g->n, (long long)g->k, g->ta, g->tb,
                         (long long)i, (long long)j);
}

static void run(operands *o, agk_gemm_kernel id, ag_pool *pool)
{
    agk_gemm_opts opts = opts_of(id);
    run_opts(o, &opts, pool, false);
}

/* Every element within a forward-error bound of the reference. */
static void check(const operands *o, agk_gemm_kernel id)
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
                      agk_gemm_kernel_name(id), ag_dtype_name(o->dt), (long long)g->m, (long long)g->n,
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
        /* Rows of B 1 KB or 512 bytes apart, in few sets of the L1: packed,
        ** by the first row of tiles where the kernel can (AVX2 f32), with a
        ** last partial panel, a short last row of tiles, two k blocks. */
        {100, 256, 300, false, false, 0}, {100, 250, 300, false, false, 6},
        {130, 128, 128, false, false, 0}, {64, 256, 784, false, false, 0},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0] && n < cap; i++)
        out[n++] = big[i];
    return n;
}

enum { MAX_CASES = 256 };

static void against_reference(ag_dtype dt, agk_gemm_kernel id)
{
    if (!agk_gemm_kernel_runs(id))
        cr_skip_test("this CPU cannot run %s", agk_gemm_kernel_name(id));
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    for (int i = 0; i < n; i++) {
        operands o = make(dt, cases[i]);
        run(&o, id, NULL);
        check(&o, id);
        release(&o);
    }
}

Test(gemm, portable_f32_matches_naive) { against_reference(AG_F32, AGK_GEMM_PORTABLE); }
Test(gemm, portable_f64_matches_naive) { against_reference(AG_F64, AGK_GEMM_PORTABLE); }
Test(gemm, avx2_f32_matches_naive) { against_reference(AG_F32, AGK_GEMM_AVX2); }
Test(gemm, avx2_f64_matches_naive) { against_reference(AG_F64, AGK_GEMM_AVX2); }
Test(gemm, avx512_zen4_f32_matches_naive) { against_reference(AG_F32, AGK_GEMM_AVX512_ZEN4); }
Test(gemm, avx512_zen4_f64_matches_naive) { against_reference(AG_F64, AGK_GEMM_AVX512_ZEN4); }
Test(gemm, avx512_intel_f32_matches_naive) { against_reference(AG_F32, AGK_GEMM_AVX512_INTEL); }
Test(gemm, avx512_intel_f64_matches_naive) { against_reference(AG_F64, AGK_GEMM_AVX512_INTEL); }

/* The cache blocks each bit-for-bit run tries, beside the kernel's own:
** k blocks of several lengths (and so several counts of blocks: blocks are
** equal), A blocks of one tile row and B blocks of one panel, and both
** operands packed where they would be read in place. */
static const agk_gemm_opts block_variants[] = {
    {.kc = 64}, {.kc = 96}, {.kc = 257}, {.kc = 1024}, {.kc = 80, .mc = 1, .nc = 1},
    {.pack = true}, {.kc = 64, .pack = true},
};

/* C, or C + C0 with 'add', for one case with 'opts'; C0 is the same seeded
** matrix for every call. Returns a malloc'd copy of C's rows. */
static void *result(operands *o, const agk_gemm_opts *opts, ag_pool *pool, bool add)
{
    size_t bytes = (size_t)(o->g.m * o->ldc) * esize(o->dt);
    if (add) {
        uint64_t saved = rng_state;
        rng_state = 0x1234567u;
        for (int64_t e = 0; e < o->g.m * o->ldc; e++)
            set(o->dt, o->c, e, e % o->ldc < o->g.n ? (e % 97 == 5 ? -0.0 : uniform() * 4) : 12345.0);
        rng_state = saved;
    }
    run_opts(o, opts, pool, add);
    void *copy = malloc(bytes + 1);
    cr_assert(copy);
    memcpy(copy, o->c, bytes);
    return copy;
}

/* Every kernel this CPU runs with FMA (all but the portable one), with its
** own blocks and every variant above, one thread or two, gives the bits of
** the first; the portable kernel gives its own bits whatever its blocks.
** With 'add', those bits are also C0 + the product computed alone. */
static void same_bits_everywhere(ag_dtype dt, bool add)
{
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    ag_pool *pool = ag_pool_new(2);
    cr_assert(pool);
    int nvar = (int)(sizeof block_variants / sizeof block_variants[0]);
    for (int i = 0; i < n; i += (i < n - 16 ? 4 : 1)) {
        operands o = make(dt, cases[i]);
        size_t bytes = (size_t)(o.g.m * o.ldc) * esize(dt);
        void *first[2] = {NULL, NULL};   /* [portable], [fma kernels] */
        const char *first_name[2] = {NULL, NULL};
        for (int id = 0; id < AGK_GEMM_KERNELS; id++) {
            if (!agk_gemm_kernel_runs((agk_gemm_kernel)id))
                continue;
            int fam = id != AGK_GEMM_PORTABLE;
            for (int v = -1; v < nvar; v++) {
                agk_gemm_opts opts = v < 0 ? opts_of((agk_gemm_kernel)id) : block_variants[v];
                opts.kernel = (agk_gemm_kernel)id;
                void *got = result(&o, &opts, v % 2 ? pool : NULL, add);
                if (!first[fam]) {
                    first[fam] = got;
                    first_name[fam] = agk_gemm_kernel_name((agk_gemm_kernel)id);
                    if (add) {
                        /* C0 + the product alone, element by element. */
                        void *alone = result(&o, &opts, NULL, false);
                        uint64_t saved = rng_state;
                        rng_state = 0x1234567u;
                        for (int64_t e = 0; e < o.g.m * o.ldc; e++) {
                            double c0e = e % o.ldc < o.g.n ? (e % 97 == 5 ? -0.0 : uniform() * 4) : 0;
                            if (e % o.ldc >= o.g.n)
                                continue;
                            double want = dt == AG_F32
                                ? (double)((float)c0e + ((float *)alone)[e])
                                : c0e + ((double *)alone)[e];
                            cr_assert_eq(get(dt, got, e), want,
                                         "%s %s case %d: C + AB differs from a separate add at %lld",
                                         first_name[fam], ag_dtype_name(dt), i, (long long)e);
                        }
                        rng_state = saved;
                        free(alone);
                    }
                    continue;
                }
                cr_assert(memcmp(got, first[fam], bytes) == 0,
                          "%s %s case %d [%lld,%lld,%lld] ta=%d tb=%d add=%d, blocks %d: "
                          "bits differ from %s's", agk_gemm_kernel_name((agk_gemm_kernel)id),
                          ag_dtype_name(dt), i, (long long)o.g.m, (long long)o.g.n,
                          (long long)o.g.k, o.g.ta, o.g.tb, add, v, first_name[fam]);
                free(got);
            }
        }
        free(first[0]);
        free(first[1]);
        release(&o);
    }
    ag_pool_free(pool);
}

Test(gemm, same_bits_whatever_kernel_and_blocks_f32) { same_bits_everywhere(AG_F32, false); }
Test(gemm, same_bits_whatever_kernel_and_blocks_f64) { same_bits_everywhere(AG_F64, false); }
Test(gemm, add_same_bits_whatever_kernel_and_blocks_f32) { same_bits_everywhere(AG_F32, true); }
Test(gemm, add_same_bits_whatever_kernel_and_blocks_f64) { same_bits_everywhere(AG_F64, true); }

/* The best kernel and the portable one agree within a few roundings of the
** result's magnitude bound, element by element. */
static void simd_vs_portable(ag_dtype dt)
{
    agk_gemm_kernel best = agk_gemm_kernel_chosen();
    if (best == AGK_GEMM_PORTABLE)
        cr_skip_test("no SIMD kernel on this CPU");
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    double eps = dt == AG_F32 ? FLT_EPSILON : DBL_EPSILON;
    for (int i = 0; i < n; i += 3) {
        operands o = make(dt, cases[i]);
        size_t bytes = (size_t)(o.g.m * o.ldc) * esize(dt);
        run(&o, AGK_GEMM_PORTABLE, NULL);
        void *portable = malloc(bytes + 1);
        cr_assert(portable);
        memcpy(portable, o.c, bytes);
        run(&o, best, NULL);
        for (int64_t r = 0; r < o.g.m; r++)
            for (int64_t c = 0; c < o.g.n; c++) {
                int64_t at = r * o.ldc + c;
                double tol = 2.0 * (double)(o.g.k + 2) * eps * o.bound[r * o.g.n + c] + 1e-300;
                cr_assert(fabs(get(dt, o.c, at) - get(dt, portable, at)) <= tol,
                          "%s vs portable differ at (%lld,%lld) of case %d",
                          agk_gemm_kernel_name(best), (long long)r, (long long)c, i);
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
    for (int id = 0; id < AGK_GEMM_KERNELS; id++) {
        if (!agk_gemm_kernel_runs((agk_gemm_kernel)id))
            continue;
        agk_gemm_opts o = opts_of((agk_gemm_kernel)id);
        float c[6] = {1, 2, 3, 4, 5, 6}, dummy = 7;
        size_t need = agk_gemm_scratch_with(&o, AG_F32, 2, 3, 0, false, false, NULL);
        void *scratch = malloc(need);
        agk_gemm_with(&o, AG_F32, 2, 3, 0, &dummy, 0, false, &dummy, 3, false, c, 3, false,
                      scratch, NULL);
        free(scratch);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(c[i], 0.0f, "%s: C[%d] = %g", agk_gemm_kernel_name(o.kernel), i, c[i]);
        agk_gemm_with(&o, AG_F32, 0, 3, 5, &dummy, 5, false, &dummy, 3, false, c, 3, false, NULL,
                      NULL);
        agk_gemm_with(&o, AG_F32, 2, 0, 5, &dummy, 5, false, &dummy, 0, false, c, 0, false, NULL,
                      NULL);
        cr_assert_eq(agk_gemm_scratch_with(&o, AG_F32, 0, 3, 5, false, false, NULL), 0);
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
    for (int id = 0; id < AGK_GEMM_KERNELS; id++) {
        if (!agk_gemm_kernel_runs((agk_gemm_kernel)id))
            continue;
        agk_gemm_opts o = opts_of((agk_gemm_kernel)id);
        for (int t = 0; t < 4; t++) {
            bool ta = t >= 2, tb = t % 2 == 1;
            double c[4];
            size_t need = agk_gemm_scratch_with(&o, AG_F64, 2, 2, 2, ta, tb, NULL);
            void *scratch = malloc(need);
            agk_gemm_with(&o, AG_F64, 2, 2, 2, a, 2, ta, b, 2, tb, c, 2, false, scratch, NULL);
            free(scratch);
            for (int i = 0; i < 4; i++)
                cr_assert_eq(c[i], want[t][i], "%s ta=%d tb=%d: C[%d] = %g, want %g",
                             agk_gemm_kernel_name(o.kernel), ta, tb, i, c[i], want[t][i]);
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
    cr_assert_str_eq(agk_gemm_kernel_name(AGK_GEMM_PORTABLE), "portable");
    cr_assert_str_eq(agk_gemm_kernel_name(AGK_GEMM_AVX2), "avx2");
    cr_assert_str_eq(agk_gemm_kernel_name(AGK_GEMM_AVX512_ZEN4), "avx512-zen4");
    cr_assert_str_eq(agk_gemm_kernel_name(AGK_GEMM_AVX512_INTEL), "avx512-intel");
    cr_assert_str_eq(agk_gemm_kernel_name(AGK_GEMM_KERNELS), "?");
    cr_assert(agk_gemm_kernel_runs(AGK_GEMM_PORTABLE));
    cr_assert_not(agk_gemm_kernel_runs(AGK_GEMM_KERNELS));
    cr_assert_eq(agk_gemm_kernel_runs(AGK_GEMM_AVX2), agk_isa_supported(AGK_ISA_AVX2));
    cr_assert_eq(agk_gemm_kernel_runs(AGK_GEMM_AVX512_ZEN4), agk_isa_supported(AGK_ISA_AVX512));
    cr_assert_eq(agk_gemm_kernel_runs(AGK_GEMM_AVX512_INTEL), agk_isa_supported(AGK_ISA_AVX512));
    /* The widest instruction set's kernel is chosen, and named publicly. */
    agk_gemm_kernel chosen = agk_gemm_kernel_chosen();
    cr_assert(agk_gemm_kernel_runs(chosen));
    cr_assert_eq(agk_gemm_kernel_name(chosen), ag_gemm_kernel());
    if (agk_isa_supported(AGK_ISA_AVX512))
        cr_assert(chosen == AGK_GEMM_AVX512_ZEN4 || chosen == AGK_GEMM_AVX512_INTEL);
    else
        cr_assert_eq(chosen, agk_isa_supported(AGK_ISA_AVX2) ? AGK_GEMM_AVX2 : AGK_GEMM_PORTABLE);
}

/* The probe for what cpuid cannot tell picks one of its candidates, the
** only one when alone, and quickly; between the portable kernel and a SIMD
** one it picks the SIMD one. The time is this thread's CPU time, so that a
** loaded machine that deschedules the test cannot fail it, with room for
** sanitizers: the bound catches a probe that runs for milliseconds, and
** tools/bench gives the figure. */
Test(gemm, probe_is_quick_and_picks_a_candidate)
{
    agk_gemm_kernel runs[AGK_GEMM_KERNELS];
    int n = 0;
    for (int id = 0; id < AGK_GEMM_KERNELS; id++)
        if (agk_gemm_kernel_runs((agk_gemm_kernel)id))
            runs[n++] = (agk_gemm_kernel)id;
    struct timespec t0, t1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    agk_gemm_kernel pick = agk_gemm_kernel_probe(runs, n);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    double us = 1e6 * (double)(t1.tv_sec - t0.tv_sec) + 1e-3 * (double)(t1.tv_nsec - t0.tv_nsec);
    bool found = false;
    for (int i = 0; i < n; i++)
        found = found || runs[i] == pick;
    cr_assert(found);
    cr_assert_eq(agk_gemm_kernel_probe(runs, 1), runs[0]);
#ifndef AGK_AVX512_EMULATED
    /* 2 rounds of 50 us per candidate, plus the last calls' overshoot
    ** (emulated, each of the 16 tiles between two looks at the clock takes
    ** longer than a round: the time says nothing). */
    cr_assert_lt(us, 100.0 * n + 2000.0, "the probe took %.0f us of CPU time", us);
#else
    (void)us;
#endif
    if (n > 1)
        cr_assert_neq(pick, AGK_GEMM_PORTABLE);
}

/* The blocking rules on caches that are not at hand: Zen 4's kernel keeps
** the blocks measured best on Zen 4 (mc 48, kc 1024 / 512, nc 1024); Intel's
** gets the kc 256 on Ice Lake-SP; every rule keeps mc a multiple of
** mr and nc of nr; absurd sizes fall back. */
Test(gemm, blocks_follow_the_caches)
{
    agk_cpu zen4 = {.vendor = AGK_VENDOR_AMD, .l1d = 32 << 10, .l2 = 1 << 20, .l3_per_core = 4 << 20};
    agk_cpu icx = {.vendor = AGK_VENDOR_INTEL, .l1d = 48 << 10, .l2 = 1280 << 10,
                   .l3_per_core = 1536 << 10};
    int64_t b[5];
    agk_gemm_blocking_cpu(AGK_GEMM_AVX512_ZEN4, AG_F32, &zen4, b);
    cr_assert(b[0] == 8 && b[1] == 32 && b[2] == 48 && b[3] == 1024 && b[4] == 1024,
              "zen4 f32: %lld %lld %lld %lld %lld", (long long)b[0], (long long)b[1],
              (long long)b[2], (long long)b[3], (long long)b[4]);
    agk_gemm_blocking_cpu(AGK_GEMM_AVX512_ZEN4, AG_F64, &zen4, b);
    cr_assert(b[2] == 48 && b[3] == 512 && b[4] == 1024, "zen4 f64: %lld %lld %lld",
              (long long)b[2], (long long)b[3], (long long)b[4]);
    agk_gemm_blocking_cpu(AGK_GEMM_AVX512_INTEL, AG_F32, &icx, b);
    cr_assert(b[0] == 12 && b[1] == 32 && b[3] == 256, "icx f32: kc %lld", (long long)b[3]);
    for (int id = 0; id < AGK_GEMM_KERNELS; id++)
        for (int d = 0; d < 2; d++)
            for (int c = 0; c < 2; c++) {
                agk_gemm_blocking_cpu((agk_gemm_kernel)id, d ? AG_F64 : AG_F32, c ? &icx : &zen4, b);
                cr_assert(b[2] % b[0] == 0 && b[4] % b[1] == 0 && b[3] >= 64 && b[2] >= b[0],
                          "%s: mc %lld nc %lld kc %lld", agk_gemm_kernel_name((agk_gemm_kernel)id),
                          (long long)b[2], (long long)b[4], (long long)b[3]);
            }
    agk_cpu host;
    agk_cpu_read(&host);
    cr_assert(host.l1d >= 8 << 10 && host.l2 >= 128 << 10 && host.l3_per_core >= 256 << 10);
    agk_gemm_blocking(agk_gemm_kernel_chosen(), AG_F32, b);
    cr_assert(b[3] >= 64 && b[2] % b[0] == 0 && b[4] % b[1] == 0);
}

/* AG_GEMM_KERNEL forces a kernel the CPU runs. (Criterion runs each test
** in a process of its own, where the choice is made at first use.) */
Test(gemm_env, override_forces_a_kernel)
{
    cr_assert_eq(setenv("AG_GEMM_KERNEL", "portable", 1), 0);
    cr_assert_str_eq(ag_gemm_kernel(), "portable");
    cr_assert_eq(agk_gemm_kernel_chosen(), AGK_GEMM_PORTABLE);
    operands o = make(AG_F32, (gemm_case){33, 20, 70, false, true, 1});
    float *c = malloc((size_t)(o.g.m * o.ldc) * sizeof *c);
    cr_assert(c);
    size_t need = agk_gemm_scratch(AG_F32, 33, 20, 70, false, true, NULL);
    void *scratch = malloc(need);
    agk_gemm(AG_F32, 33, 20, 70, o.a, o.lda, false, o.b, o.ldb, true, c, o.ldc, scratch, NULL);
    run(&o, AGK_GEMM_PORTABLE, NULL);
    for (int64_t i = 0; i < o.g.m; i++)
        cr_assert(memcmp(c + i * o.ldc, (float *)o.c + i * o.ldc, (size_t)o.g.n * sizeof *c) == 0);
    free(scratch);
    free(c);
    release(&o);
}

/* A name the CPU cannot run is said once on stderr; cpuid's choice stands. */
Test(gemm_env, unknown_override_is_reported_and_ignored, .init = cr_redirect_stderr)
{
    cr_assert_eq(setenv("AG_GEMM_KERNEL", "avx1024", 1), 0);
    const char *name = ag_gemm_kernel();
    cr_assert_str_eq(ag_gemm_kernel(), name);
    cr_assert(agk_gemm_kernel_runs(agk_gemm_kernel_chosen()));
    cr_assert_neq(strcmp(name, "avx1024"), 0);
    fflush(stderr);
    char want[256];
    snprintf(want, sizeof want, "%s", "autograd: AG_GEMM_KERNEL=avx1024 is not a kernel this CPU runs (");
    FILE *err = cr_get_redirected_stderr();
    char got[512] = {0};
    size_t len = fread(got, 1, sizeof got - 1, err);
    cr_assert_gt(len, strlen(want));
    cr_assert_eq(strncmp(got, want, strlen(want)), 0, "stderr: %s", got);
    cr_assert(strstr(got, name) != NULL, "stderr: %s", got);
    cr_assert_eq(strchr(got, '\n'), got + len - 1, "one line: %s", got);
}

/* Shapes big enough to be split among threads, in both orientations and
** with several k blocks, B read in place or packed once for all threads:
** the bits of C must not depend on the thread count. */
static void threads_bitwise(ag_dtype dt, agk_gemm_kernel id)
{
    if (!agk_gemm_kernel_runs(id))
        cr_skip_test("this CPU cannot run %s", agk_gemm_kernel_name(id));
    static const gemm_case cases[] = {
        {150, 130, 170, false, false, 0}, {150, 130, 170, true, true, 1},
        {97, 211, 160, false, true, 0},   {211, 97, 160, true, false, 0},
        {700, 5, 900, false, false, 0},   {700, 5, 900, true, true, 0},
        {40, 50, 1500, false, false, 2},  {5, 640, 1000, false, true, 0},
        {333, 333, 40, false, false, 0},  {520, 300, 700, true, false, 0},
        /* B packed whole and shared, the parts cut by columns (3 threads) */
        {12, 900, 700, false, false, 0},
        /* A read in place and a B over half the L2: parts by columns */
        {100, 520, 400, false, false, 0},
    };
    ag_pool *two = ag_pool_new(2), *three = ag_pool_new(3);
    cr_assert(two && three);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        operands o = make(dt, cases[i]);
        size_t bytes = (size_t)(o.g.m * o.ldc) * esize(dt);
        run(&o, id, NULL);
        check(&o, id);
        void *one = malloc(bytes);
        cr_assert(one);
        memcpy(one, o.c, bytes);
        run(&o, id, two);
        cr_assert(memcmp(one, o.c, bytes) == 0, "%s %s case %zu: 2 threads differ from 1",
                  agk_gemm_kernel_name(id), ag_dtype_name(dt), i);
        run(&o, id, three);
        cr_assert(memcmp(one, o.c, bytes) == 0, "%s %s case %zu: 3 threads differ from 1",
                  agk_gemm_kernel_name(id), ag_dtype_name(dt), i);
        free(one);
        release(&o);
    }
    ag_pool_free(two);
    ag_pool_free(three);
}

Test(gemm, threads_bitwise_portable_f32) { threads_bitwise(AG_F32, AGK_GEMM_PORTABLE); }
Test(gemm, threads_bitwise_portable_f64) { threads_bitwise(AG_F64, AGK_GEMM_PORTABLE); }
Test(gemm, threads_bitwise_avx2_f32) { threads_bitwise(AG_F32, AGK_GEMM_AVX2); }
Test(gemm, threads_bitwise_avx2_f64) { threads_bitwise(AG_F64, AGK_GEMM_AVX2); }
Test(gemm, threads_bitwise_avx512_zen4_f32) { threads_bitwise(AG_F32, AGK_GEMM_AVX512_ZEN4); }
Test(gemm, threads_bitwise_avx512_zen4_f64) { threads_bitwise(AG_F64, AGK_GEMM_AVX512_ZEN4); }
Test(gemm, threads_bitwise_avx512_intel_f32) { threads_bitwise(AG_F32, AGK_GEMM_AVX512_INTEL); }
Test(gemm, threads_bitwise_avx512_intel_f64) { threads_bitwise(AG_F64, AGK_GEMM_AVX512_INTEL); }

/* More threads are asked for than the product has work for: the scratch
** size says so, and the result is still right. */
Test(gemm, small_product_with_pool)
{
    ag_pool *pool = ag_pool_new(4);
    cr_assert(pool);
    operands o = make(AG_F32, (gemm_case){3, 4, 5, false, false, 0});
    cr_assert_eq(agk_gemm_scratch(AG_F32, 3, 4, 5, false, false, pool),
                 agk_gemm_scratch(AG_F32, 3, 4, 5, false, false, NULL));
    run(&o, agk_gemm_kernel_chosen(), pool);
    check(&o, agk_gemm_kernel_chosen());
    release(&o);
    ag_pool_free(pool);
}

/* agk_gemm_add: C + the product has the bits of the product computed alone
** and then added into C, for any k (one block or several); with k == 0 it
** is C + 0. */
static void add_matches_separate_add(ag_dtype dt, ag_pool *pool)
{
    gemm_case cases[MAX_CASES];
    int n = make_cases(cases, MAX_CASES);
    cases[n++] = (gemm_case){784, 30, 10, true, false, 0};   /* Nielsen's weight gradient */
    cases[n++] = (gemm_case){5, 7, 0, false, false, 1};
    cases[n++] = (gemm_case){70, 40, 2500, true, false, 0};  /* several k blocks */
    size_t es = esize(dt);
    for (int i = 0; i < n; i++) {
        gemm_case g = cases[i];
        operands o = make(dt, g);
        run(&o, agk_gemm_kernel_chosen(), pool);   /* o.c = the product alone */
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
        cr_assert_eq(memcmp(c, want, cbytes), 0, "%s [%lld,%lld,%lld] ta=%d tb=%d: C + AB differs",
                     ag_dtype_name(dt), (long long)g.m, (long long)g.n, (long long)g.k, g.ta, g.tb);
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
static void small_product_rows(ag_dtype dt, agk_gemm_kernel id, ag_pool *pool, gemm_case g,
                               bool add)
{
    size_t es = esize(dt);
    agk_gemm_opts opts = opts_of(id);
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
    void *scratch = malloc(agk_gemm_scratch_with(&opts, dt, big_m, g.n, g.k, g.ta, false, pool));
    cr_assert(scratch);
    agk_gemm_with(&opts, dt, g.m, g.n, g.k, a, lda, g.ta, b, g.n, false, small, ldc, add, scratch,
                  pool);
    agk_gemm_with(&opts, dt, big_m, g.n, g.k, a, lda, g.ta, b, g.n, false, big, ldc, add, scratch,
                  pool);
    cr_assert(memcmp(small, big, (size_t)(g.m * ldc) * es) == 0,
              "%s %s [%lld,%lld,%lld] ta=%d add=%d: a small product's rows differ from the "
              "same rows of a planned one", agk_gemm_kernel_name(id), ag_dtype_name(dt),
              (long long)g.m, (long long)g.n, (long long)g.k, g.ta, add);
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
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
            for (int id = 0; id < AGK_GEMM_KERNELS; id++)
                if (agk_gemm_kernel_runs((agk_gemm_kernel)id)) {
                    small_product_rows(dt, (agk_gemm_kernel)id, NULL, cases[i], false);
                    small_product_rows(dt, (agk_gemm_kernel)id, pool, cases[i], false);
                    small_product_rows(dt, (agk_gemm_kernel)id, pool, cases[i], true);
                }
    }
    ag_pool_free(pool);
}

#if AGK_HAVE_X86
/* AVX2's transposing pack for panels narrower than a vector (the avx2
** kernel's 6 rows of A): every width below 8, every height up to it, k
** around multiples of 8 (whole 8 x 8 blocks, a remainder, none): the
** layout of gemm_internal.h, zeros past the rows, and not a value written
** past the panel (its 8-lane stores overlap the next step's slot, masked
** at the end). */
Test(gemm, narrow_transposing_pack_avx2)
{
    if (!agk_isa_supported(AGK_ISA_AVX2))
        cr_skip_test("no AVX2");
    enum { LD = 37, MAXK = 25 };
    float src[8 * LD], dst[8 * MAXK + 16];
    for (int i = 0; i < 8 * LD; i++)
        src[i] = (float)(i + 1);
    for (int w = 1; w < 8; w++)
        for (int rows = 1; rows <= w; rows++)
            for (int64_t kc = 1; kc <= MAXK; kc++) {
                for (int i = 0; i < 8 * MAXK + 16; i++)
                    dst[i] = -1.0f;
                agk_pack_t_f32_avx2(kc, rows, src, LD, dst, w);
                for (int64_t p = 0; p < kc; p++)
                    for (int i = 0; i < w; i++) {
                        float want = i < rows ? src[i * LD + p] : 0.0f;
                        cr_assert_eq(dst[p * w + i], want, "w %d rows %d kc %lld: [%lld][%d]",
                                     w, rows, (long long)kc, (long long)p, i);
                    }
                for (int64_t e = kc * w; e < 8 * MAXK + 16; e++)
                    cr_assert_eq(dst[e], -1.0f, "w %d rows %d kc %lld: written past the panel at %lld",
                                 w, rows, (long long)kc, (long long)e);
            }
}

/* AVX2's copying pack (rows of B into 16-column panels, rows of a
** transposed A into 6-row ones): widths up to 16, any number of columns
** (edge panels zero-filled), k around multiples of 8: the layout of
** gemm_internal.h, zeros past the columns and nothing written past the
** last panel. */
Test(gemm, copying_pack_avx2)
{
    if (!agk_isa_supported(AGK_ISA_AVX2))
        cr_skip_test("no AVX2");
    enum { MAXK = 19, MAXC = 40, LD = 41, ROOM = 4 * 16 * MAXK + 32 };
    float *src = malloc(sizeof(float) * MAXK * LD), dst[ROOM];
    cr_assert(src);
    for (int i = 0; i < MAXK * LD; i++)
        src[i] = (float)(i + 1);
    static const int widths[] = {6, 8, 16, 3, 12};
    for (int wi = 0; wi < 5; wi++)
        for (int64_t cols = 1; cols <= MAXC; cols++)
            for (int64_t kc = 1; kc <= MAXK; kc++) {
                int w = widths[wi];
                int64_t panels = (cols + w - 1) / w;
                if (panels * w * kc > ROOM - 16)
                    continue;
                for (int i = 0; i < ROOM; i++)
                    dst[i] = -1.0f;
                agk_pack_n_f32_avx2(kc, cols, src, LD, dst, w);
                for (int64_t s = 0; s < panels; s++)
                    for (int64_t p = 0; p < kc; p++)
                        for (int j = 0; j < w; j++) {
                            int64_t col = s * w + j;
                            float want = col < cols ? src[p * LD + col] : 0.0f;
                            cr_assert_eq(dst[s * w * kc + p * w + j], want,
                                         "w %d cols %lld kc %lld: panel %lld [%lld][%d]", w,
                                         (long long)cols, (long long)kc, (long long)s,
                                         (long long)p, j);
                        }
                for (int64_t e = panels * w * kc; e < ROOM; e++)
                    cr_assert_eq(dst[e], -1.0f, "w %d cols %lld kc %lld: written past at %lld", w,
                                 (long long)cols, (long long)kc, (long long)e);
            }
    free(src);
}
#endif
