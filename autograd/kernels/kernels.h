/*
** kernels.h: the raw loops under the ops, the only code that knows about
** memory layout tricks, SIMD or threads. Each kernel is written once for both
** dtypes: elementwise maps are inline templates specialised by the compiler
** at each call site; the matrix product is a template file included per dtype.
*/
#ifndef AG_KERNELS_H
#define AG_KERNELS_H

#include "../autograd.h"
#include "simd_clones.h"

#include <stdbool.h>
#include <string.h>

#if defined(__GNUC__)
#define AGK_INLINE static inline __attribute__((always_inline))
#define AGK_NOINLINE static __attribute__((noinline))
#else
#define AGK_INLINE static inline
#define AGK_NOINLINE static
#endif

typedef double (*agk_fn1)(double x, const double *p);
typedef double (*agk_fn2)(double a, double b);

/* For agk_map2 used as a strided copy: passes a through. */
static inline double agk_first(double a, double b)
{
    (void)b;
    return a;
}

/* y[i] = f(x[i], p) for i < n; x and y may be the same buffer. */
AGK_INLINE void agk_map1(ag_dtype dt, int64_t n, const void *x, void *y, agk_fn1 f,
                         const double *p)
{
    if (dt == AG_F32) {
        const float *xs = x;
        float *ys = y;
        for (int64_t i = 0; i < n; i++)
            ys[i] = (float)f(xs[i], p);
    } else {
        const double *xs = x;
        double *ys = y;
        for (int64_t i = 0; i < n; i++)
            ys[i] = f(xs[i], p);
    }
}

/* The inner loop of a binary map: n outputs from strided a and b. */
AGK_INLINE void agk_row2(ag_dtype dt, int64_t n, const void *a, int64_t sa, const void *b,
                         int64_t sb, void *out, agk_fn2 f)
{
    if (dt == AG_F32) {
        const float *as = a, *bs = b;
        float *o = out;
        if (sa == 1 && sb == 1)
            for (int64_t i = 0; i < n; i++)
                o[i] = (float)f(as[i], bs[i]);
        else if (sa == 1 && sb == 0)
            for (int64_t i = 0; i < n; i++)
                o[i] = (float)f(as[i], bs[0]);
        else
            for (int64_t i = 0; i < n; i++)
                o[i] = (float)f(as[i * sa], bs[i * sb]);
    } else {
        const double *as = a, *bs = b;
        double *o = out;
        if (sa == 1 && sb == 1)
            for (int64_t i = 0; i < n; i++)
                o[i] = f(as[i], bs[i]);
        else if (sa == 1 && sb == 0)
            for (int64_t i = 0; i < n; i++)
                o[i] = f(as[i], bs[0]);
        else
            for (int64_t i = 0; i < n; i++)
                o[i] = f(as[i * sa], bs[i * sb]);
    }
}

/* Is out = f(a, b) over 'shape' one flat loop, each side contiguous (stride
** 1) or one value repeated (stride 0)? Then *fa and *fb are those strides. */
AGK_INLINE bool agk_flat2(int rank, const int64_t *shape, const int64_t *sa, const int64_t *sb,
                          int64_t *fa, int64_t *fb)
{
    bool a_full = true, b_full = true, a_zero = true, b_zero = true;
    int64_t c = 1;
    for (int i = rank - 1; i >= 0; i--) {
        if (shape[i] != 1) {
            a_full &= sa[i] == c;
            b_full &= sb[i] == c;
            a_zero &= sa[i] == 0;
            b_zero &= sb[i] == 0;
        }
        c *= shape[i];
    }
    *fa = a_full ? 1 : 0;
    *fb = b_full ? 1 : 0;
    return (a_full || a_zero) && (b_full || b_zero);
}

/* out = f(a, b) over 'shape' (rank dims), reading a and b through broadcast
** strides (0 on the dims they repeat). out is contiguous. */
AGK_INLINE void agk_map2(ag_dtype dt, int rank, const int64_t *shape, const void *a,
                         const int64_t *sa, const void *b, const int64_t *sb, void *out,
                         agk_fn2 f)
{
    size_t es = dt == AG_F32 ? sizeof(float) : sizeof(double);
    int64_t numel = 1;
    for (int i = 0; i < rank; i++)
        numel *= shape[i];
    if (numel == 0)
        return;
    /* Collapse to one flat loop when each side is contiguous or a scalar. */
    int64_t fa, fb;
    if (agk_flat2(rank, shape, sa, sb, &fa, &fb)) {
        agk_row2(dt, numel, a, fa, b, fb, out, f);
        return;
    }
    int64_t idx[AG_MAX_DIMS] = {0};
    int64_t inner = shape[rank - 1];
    int64_t oa = 0, ob = 0;
    char *o = out;
    for (int64_t done = 0; done < numel; done += inner) {
        agk_row2(dt, inner, (const char *)a + oa * (int64_t)es, sa[rank - 1],
                 (const char *)b + ob * (int64_t)es, sb[rank - 1], o + done * (int64_t)es, f);
        for (int d = rank - 2; d >= 0; d--) {
            oa += sa[d];
            ob += sb[d];
            if (++idx[d] < shape[d])
                break;
            oa -= sa[d] * shape[d];
            ob -= sb[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* dst[i] += src[i], on the pool when n is large (NULL: on this thread). */
void agk_add_inplace(ag_pool *pool, ag_dtype dt, int64_t n, void *dst, const void *src);

/* ------------------------------------------------- raw gradient kernels */
/* A gradient formula for a raw vjp: the contribution of one element, from
** the incoming gradient g and up to two operands a and b (the op's inputs or
** output), with the op's constants p. It calls agk_round after every step
** that the op's differentiable vjp performs as a separate op, so both paths
** give the same bits. */
typedef double (*agk_grad_fn)(double g, double a, double b, const double *p, bool f32);

/* The gradient formula of negation, shared by neg and sub's second input. */
static inline double agk_grad_neg(double g, double a, double b, const double *p, bool f32)
{
    (void)a, (void)b, (void)p, (void)f32;
    return -g;
}

/* v rounded to the dtype (f32: to float), as an op's result is. */
AGK_INLINE double agk_round(double v, bool f32) { return f32 ? (double)(float)v : v; }

/* dst[i] = f(g[i], a[i], b[i]) when 'fresh', else dst[i] + f(...) in the
** dtype, as the general path accumulates. 'a' and 'b' may be NULL when f
** ignores them; all arrays hold n elements of dtype dt. */
AGK_INLINE void agk_grad_map(ag_dtype dt, int64_t n, void *dst, bool fresh, const void *g,
                             const void *a, const void *b, agk_grad_fn f, const double *p)
{
    if (dt == AG_F32) {
        float *d = dst;
        const float *gs = g, *as = a, *bs = b;
        for (int64_t i = 0; i < n; i++) {
            float v = (float)f(gs[i], as ? as[i] : 0.0, bs ? bs[i] : 0.0, p, true);
            d[i] = fresh ? v : d[i] + v;
        }
    } else {
        double *d = dst;
        const double *gs = g, *as = a, *bs = b;
        for (int64_t i = 0; i < n; i++) {
            double v = f(gs[i], as ? as[i] : 0.0, bs ? bs[i] : 0.0, p, false);
            d[i] = fresh ? v : d[i] + v;
        }
    }
}

/* ------------------------------------------------ elementwise on the pool */
/* An elementwise op of at least AGK_PARALLEL_MIN elements runs its kernel on
** the tape's pool, over slices of at least AGK_GRAIN elements: each element
** is computed alone, so the slices change no bit. Below that size waking a
** thread costs more than it saves, and scalar graphs never get here.
**
** The slices must still inline each op's formula (a call per element would
** cost more than the second thread gains), so each op gets its own slice
** function from one of the macros below, next to its formula. */
enum { AGK_PARALLEL_MIN = 1 << 16, AGK_GRAIN = 1 << 15 };

typedef struct agk_slice_job {
    ag_dtype dt;
    const void *a, *b, *c;   /* inputs as each kernel names them; NULL if unused */
    int64_t sa, sb;          /* agk_row2's strides of a and b: 1 or 0 */
    void *out;
    bool fresh;              /* agk_grad_map: assign rather than add */
    const double *p;         /* the op's constants */
} agk_slice_job;

/* Element 'i' of a buffer of dtype dt. */
static inline const void *agk_at(const void *base, ag_dtype dt, int64_t i)
{
    return base ? (const char *)base + i * (int64_t)(dt == AG_F32 ? sizeof(float) : sizeof(double))
                : NULL;
}


/* The slice macros below define a function; each ends with a declaration
** that its invocation completes with a ';' (AGK_MAP1_SLICE(f_neg);). A
** statement that ends as C's do keeps tools that read the source without
** expanding macros (Universal Ctags) from taking the definition after it
** for a continuation of the macro: without the ';' they lost ag_add, ag_mul
** and every op defined below such a line. */
#define AGK_SLICE_END struct agk_slice_end

/* f##_slice1: y = f(x, p) over a slice; job: a = x, out = y. The _VEC form
** adds AVX-512 and AVX2 clones, for a formula that vectorises. */
#define AGK_MAP1_SLICE(f) AGK_MAP1_SLICE_WITH(f, )
#define AGK_MAP1_SLICE_VEC(f) AGK_MAP1_SLICE_WITH(f, AGK_SIMD_CLONES)
#define AGK_MAP1_SLICE_WITH(f, attr)                                                         \
    attr static void f##_slice1(void *ctx, int64_t begin, int64_t end)                       \
    {                                                                                        \
        const agk_slice_job *j = ctx;                                                        \
        agk_map1(j->dt, end - begin, agk_at(j->a, j->dt, begin),                             \
                 (void *)agk_at(j->out, j->dt, begin), f, j->p);                             \
    }                                                                                        \
    AGK_SLICE_END

/* f##_slice2: out = f(a, b) over a slice of a flat map (strides 1 or 0). */
#define AGK_ROW2_SLICE(f)                                                                    \
    static void f##_slice2(void *ctx, int64_t begin, int64_t end)                            \
    {                                                                                        \
        const agk_slice_job *j = ctx;                                                        \
        agk_row2(j->dt, end - begin, agk_at(j->a, j->dt, begin * j->sa), j->sa,              \
                 agk_at(j->b, j->dt, begin * j->sb), j->sb,                                  \
                 (void *)agk_at(j->out, j->dt, begin), f);                                   \
    }                                                                                        \
    AGK_SLICE_END

/* f##_slice_grad: a raw vjp's agk_grad_map over a slice; job: a = g, b and
** c = the formula's two operands, out = the gradient. */
#define AGK_GRAD_SLICE(f)                                                                    \
    static void f##_slice_grad(void *ctx, int64_t begin, int64_t end)                        \
    {                                                                                        \
        const agk_slice_job *j = ctx;                                                        \
        agk_grad_map(j->dt, end - begin, (void *)agk_at(j->out, j->dt, begin), j->fresh,     \
                     agk_at(j->a, j->dt, begin), agk_at(j->b, j->dt, begin),                 \
                     agk_at(j->c, j->dt, begin), f, j->p);                                   \
    }                                                                                        \
    AGK_SLICE_END

/* ---------------------------------------------------------------- threads */
/* The number of threads a pool runs a job on, counting the caller; 1 for NULL. */
int agk_pool_threads(const ag_pool *pool);
typedef void (*agk_task_fn)(void *ctx, int task);
/* Runs fn(ctx, i) for every i < ntasks on the pool's threads and the
** caller's, and returns when all are done. Returns false, having run
** nothing, when there is no pool or it is busy with another job (another
** tape's, or the caller is itself one of its tasks): the caller then runs
** the tasks itself. Tasks must not depend on which thread runs them. */
bool agk_pool_try_run(ag_pool *pool, int ntasks, agk_task_fn fn, void *ctx);
/* ag_pool_for's scheme on exactly 'tasks' tasks (at most the pool's
** threads): each is dealt an equal share of [0, n) as a few ranges, and one
** done with its share takes ranges left in another's. fn(ctx, task, begin,
** end) is told the task running the range (for per-thread buffers: no two
** run at once with the same task). False, having run nothing, as
** agk_pool_try_run. */
typedef void (*agk_range_task_fn)(void *ctx, int task, int64_t begin, int64_t end);
bool agk_pool_try_ranges(ag_pool *pool, int tasks, int64_t n, agk_range_task_fn fn, void *ctx);

/* -------------------------------------------------------- matrix product */
/* Instruction sets the kernels need. */
typedef enum agk_isa { AGK_ISA_PORTABLE, AGK_ISA_AVX2, AGK_ISA_AVX512, AGK_ISA_COUNT } agk_isa;
const char *agk_isa_name(agk_isa isa);
bool agk_isa_supported(agk_isa isa);   /* by this build and this CPU */
agk_isa agk_isa_best(void);

/* The product's micro-kernels, one per family of cores (gemm.c's table
** says what each is): one is chosen per process (agk_gemm_kernel_chosen,
** the public ag_gemm_kernel), or forced by AG_GEMM_KERNEL=<name>. */
typedef enum agk_gemm_kernel {
    AGK_GEMM_PORTABLE,
    AGK_GEMM_AVX2,           /* Haswell to Alder Lake, Zen 1 to 3 */
    AGK_GEMM_AVX512_ZEN4,    /* AMD Zen 4 and later: one 512-bit FMA per cycle */
    AGK_GEMM_AVX512_INTEL,   /* Skylake-SP to Sapphire Rapids: two FMA ports */
    AGK_GEMM_KERNELS
} agk_gemm_kernel;
const char *agk_gemm_kernel_name(agk_gemm_kernel id);   /* "?" past the table */
bool agk_gemm_kernel_runs(agk_gemm_kernel id);          /* on this build and CPU */
agk_gemm_kernel agk_gemm_kernel_chosen(void);
/* The one of 'n' candidates (all of which run here) that did the most
** multiply-adds per second on a few L1-resident tiles: the first-use probe
** for what cpuid cannot tell. Well under a millisecond. */
agk_gemm_kernel agk_gemm_kernel_probe(const agk_gemm_kernel *cand, int n);

/* C[m,n] = op(A)[m,k] @ op(B)[k,n], where op(A) is A[m,k] (row stride lda)
** or, with 'ta', the transpose of A[k,m]; likewise op(B) with 'tb'.
** Transposes are read in place while packing. C has row stride ldc and is
** overwritten (zeros when k == 0). 'scratch' holds agk_gemm_scratch bytes,
** any alignment; the same arguments give the same size. With a pool the
** work is shared among its threads. Each element of C is one chain of
** fused multiply-adds in order of k, so its bits depend neither on the
** threads, nor on the kernel (the portable one aside, which rounds each
** product), nor on the cache blocks. */
size_t agk_gemm_scratch(ag_dtype dt, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                        ag_pool *pool);
void agk_gemm(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, bool ta,
              const void *b, int64_t ldb, bool tb, void *c, int64_t ldc, void *scratch,
              ag_pool *pool);
/* C += op(A) op(B), with the bits of agk_gemm into a buffer followed by
** adding the buffer into C, for any k. With k <= agk_gemm_one_block_k(dt)
** the product is one k block, summed in registers and added as each tile
** is stored; longer k chains each block of C in a buffer of the scratch,
** then adds it (B packed whole first, if packed). Same scratch as agk_gemm. */
void agk_gemm_add(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                  bool ta, const void *b, int64_t ldb, bool tb, void *c, int64_t ldc,
                  void *scratch, ag_pool *pool);
int64_t agk_gemm_one_block_k(ag_dtype dt);

/* The same with a chosen kernel (one the CPU cannot run: the portable one)
** and, for tests and tuning, cache blocks other than the kernel's (0: the
** kernel's, derived from the caches). The scratch size depends on them. */
typedef struct agk_gemm_opts {
    agk_gemm_kernel kernel;
    int64_t kc, mc, nc;
    bool pack;   /* pack both operands, whatever their size */
} agk_gemm_opts;
size_t agk_gemm_scratch_with(const agk_gemm_opts *o, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                             bool ta, bool tb, ag_pool *pool);
void agk_gemm_with(const agk_gemm_opts *o, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                   const void *a, int64_t lda, bool ta, const void *b, int64_t ldb, bool tb,
                   void *c, int64_t ldc, bool accumulate, void *scratch, ag_pool *pool);
/* The cache blocks a kernel uses for a dtype here: {mr, nr, mc, kc, nc}. */
void agk_gemm_blocking(agk_gemm_kernel id, ag_dtype dt, int64_t out[5]);

#endif
