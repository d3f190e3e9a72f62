/*
** gemm.c: the matrix product's driver: picks a micro-kernel for the CPU at
** run time, splits C among the threads of a pool, and runs the packed,
** cache-blocked product of gemm_template.inc on each part.
*/
#include "gemm_internal.h"

enum { PORTABLE_MR = 4, PORTABLE_NR = 8 };

/* One part of a product as the driver hands it to a dtype's template:
** C[m, n] = op(A)[m, k] op(B)[k, n], pointers at the part's first element. */
typedef struct agk_part {
    const agk_blocking *blk;
    int64_t kblock;         /* length of the k blocks (the last may be shorter) */
    int64_t m, n, k;
    const void *a, *b;
    void *c;
    int64_t lda, ldb, ldc;
    bool ta, tb;
    bool a_direct;          /* read op(A) in place, packing no panel of it */
    bool b_direct;          /* read op(B) in place unless transposed; pack only edges */
    bool ct;                /* C is stored transposed: (i, j) at c[j*ldc + i] */
    bool accumulate;        /* C += the product: the first k block adds too */
    void *pa, *pb;          /* packing buffers */
} agk_part;

/* PACK_T_MIN: the narrowest panel a kernel's SIMD transpose packs faster
** than the template's loops (one vector of rows). */
#define TPL(name) name##_f32
#define REAL float
#define KERNEL agk_kernel_f32
#define PACK_T_MIN 8
#include "gemm_template.inc"
#undef TPL
#undef REAL
#undef KERNEL
#undef PACK_T_MIN

#define TPL(name) name##_f64
#define REAL double
#define KERNEL agk_kernel_f64
#define PACK_T_MIN 4
#include "gemm_template.inc"
#undef TPL
#undef REAL
#undef KERNEL
#undef PACK_T_MIN

/* ----------------------------------------------------------- dispatch */

const char *agk_isa_name(agk_isa isa)
{
    static const char *const names[] = {
        [AGK_ISA_PORTABLE] = "portable",
        [AGK_ISA_AVX2] = "avx2",
        [AGK_ISA_AVX512] = "avx512",
    };
    _Static_assert(sizeof names / sizeof names[0] == AGK_ISA_COUNT, "one name per instruction set");
    return (unsigned)isa < AGK_ISA_COUNT ? names[isa] : "?";
}

bool agk_isa_supported(agk_isa isa)
{
    switch (isa) {
    case AGK_ISA_PORTABLE:
        return true;
#if AGK_HAVE_X86
    /* libgcc's checks include the OS saving the wider registers (XGETBV). */
    case AGK_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case AGK_ISA_AVX512:
        return __builtin_cpu_supports("avx512f") && agk_isa_supported(AGK_ISA_AVX2);
#endif
    default:
        return false;
    }
}

agk_isa agk_isa_best(void)
{
    for (int isa = AGK_ISA_COUNT - 1; isa > AGK_ISA_PORTABLE; isa--)
        if (agk_isa_supported((agk_isa)isa))
            return (agk_isa)isa;
    return AGK_ISA_PORTABLE;
}

static const agk_kernel_f32 *kernel_f32(agk_isa isa)
{
#if AGK_HAVE_X86
    if (isa == AGK_ISA_AVX512)
        return &agk_kernel_f32_avx512;
    if (isa == AGK_ISA_AVX2)
        return &agk_kernel_f32_avx2;
#endif
    (void)isa;
    return &kernel_portable_f32;
}

static const agk_kernel_f64 *kernel_f64(agk_isa isa)
{
#if AGK_HAVE_X86
    if (isa == AGK_ISA_AVX512)
        return &agk_kernel_f64_avx512;
    if (isa == AGK_ISA_AVX2)
        return &agk_kernel_f64_avx2;
#endif
    (void)isa;
    return &kernel_portable_f64;
}

static agk_blocking blocking(ag_dtype dt, agk_isa isa)
{
    return dt == AG_F32 ? kernel_f32(isa)->blk : kernel_f64(isa)->blk;
}

/* ------------------------------------------------------------- planning */

/* How a product is computed: possibly as C^T = op(B)^T op(A)^T (which gives
** the same bits, a*b being b*a), in place or packed, and cut among threads
** as a grid of pm x pn parts, each part_m rows by part_n columns of the
** computed matrix (multiples of the register tile; the last ones smaller or
** empty), each with its own packing buffers of part_bytes. */
typedef struct plan {
    agk_blocking blk;
    int64_t kblock;   /* the same for every part, whatever the grid */
    bool swap, a_direct, b_direct;
    int pm, pn;
    int64_t part_m, part_n;
    size_t a_bytes, part_bytes;   /* a part's packed A, and all its buffers */
} plan;

/* Below this many multiply-adds per thread, waking a thread costs more
** than it saves. */
static const double MIN_MACS_PER_THREAD = 1 << 20;
/* Operands up to this size together are read in place: packing them costs
** more than the cache misses it saves. Up to the larger size, the operands
** whose rows the kernel reads as they lie (op(A) not transposed, op(B) not
** transposed) still are: the MLP's products ran 3 to 10% faster that way,
** on AVX-512 and AVX2, one thread or two (docs/PERFORMANCE.md). So is a
** transposed A when a tile's mr values of each of k's steps fill half a
** cache line (AVX-512's 8 floats), so that two tiles use each line read;
** with AVX2's 6 they straddle lines and ran slower. Beyond some megabytes
** packing wins again, most at leading dimensions of 4 KB multiples (every
** row in the same L1 set). */
static const double DIRECT_MAX_BYTES = 192 * 1024;
static const double ROWS_IN_PLACE_MAX_BYTES = 2 * 1024 * 1024;

/* Whether op(A) is read in place, by the rule above ('small' and 'medium':
** the product's operands fit the two sizes). B, untransposed, is read in
** place whenever 'medium' holds. */
static bool a_in_place(bool small, bool medium, bool ta, bool half_lines)
{
    return small || (medium && (!ta || half_lines));
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static size_t elem_size(ag_dtype dt) { return dt == AG_F32 ? sizeof(float) : sizeof(double); }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* A rough cost in cycles of one orientation of a product, to choose
** between C and C^T: column vectors are filled to the edge (rows are not:
** the kernels run edge rows alone), a transposed B operand is packed by
** transposing (any operand not read in place, by copying), and a transposed
** C goes through a buffer. The weights are rough measures on Zen 4: they
** only have to pick the cheaper side. */
static double cost(int64_t m, int64_t n, int64_t k, bool tb, bool a_direct, bool b_direct,
                   bool ct, int vec)
{
    /* vec is a power of two for every kernel: no division. */
    int64_t filled =
        (vec & (vec - 1)) == 0 ? (n + vec - 1) & ~(int64_t)(vec - 1) : round_up(n, vec);
    double compute = (double)m * (double)filled * (double)k / 16.0;
    double gather = tb ? 0.25 * (double)k * (double)n : 0.0;
    double copy = 0.25 * (double)k * (double)((a_direct ? 0 : m) + (b_direct ? 0 : n));
    double store = ct ? (double)m * (double)n : 0.0;
    return compute + gather + copy + store;
}

/* Fills *p in place: a plan built in a local and returned by value was
** copied with wide loads of fields just written by narrow stores, which the
** CPU cannot forward; the stalls cost a tiny product a third of its time. */
static void make_plan(plan *p, ag_dtype dt, agk_isa isa, int64_t m, int64_t n, int64_t k,
                      bool ta, bool tb, ag_pool *pool)
{
    *p = (plan){.blk = blocking(dt, isa), .pm = 1, .pn = 1};
    size_t es = elem_size(dt);
    double bytes = ((double)m * (double)k + (double)k * (double)n) * (double)es;
    bool small = bytes <= DIRECT_MAX_BYTES, medium = bytes <= ROWS_IN_PLACE_MAX_BYTES;
    bool half_lines = (size_t)p->blk.mr * es % 32 == 0;
    /* A narrow C (a few columns) wastes most of each column vector; its
    ** transpose (op(A)' = op(B)^T, transposed unless tb) may fill them better. */
    int vec = p->blk.nr / 2;
    double as_is = cost(m, n, k, tb, a_in_place(small, medium, ta, half_lines), medium, false, vec);
    double swapped =
        cost(n, m, k, !ta, a_in_place(small, medium, !tb, half_lines), medium, true, vec);
    p->swap = swapped < as_is;
    if (p->swap) {
        int64_t t = m;
        m = n;
        n = t;
        bool f = ta;
        ta = !tb;
        tb = !f;
    }
    p->a_direct = a_in_place(small, medium, ta, half_lines);
    p->b_direct = medium;
    p->part_m = m;
    p->part_n = n;
    /* Equal k blocks no larger than kc, so no short last block. (Divisions
    ** cost more than the whole of a tiny product: only where needed.) */
    p->kblock = k < 1 ? 1 : k;
    if (k > p->blk.kc)
        p->kblock = ceil_div(k, ceil_div(k, p->blk.kc));
    double macs = (double)m * (double)n * (double)k;
    int threads = agk_pool_threads(pool);
    if (macs / MIN_MACS_PER_THREAD < threads)
        threads = (int)(macs / MIN_MACS_PER_THREAD);
    int64_t tiles_m = threads > 1 ? ceil_div(m, p->blk.mr) : 1;
    int64_t tiles_n = threads > 1 ? ceil_div(n, p->blk.nr) : 1;
    if (threads > 1 && tiles_m * tiles_n >= threads) {
        /* Choose the grid that minimises the largest part's work plus its
        ** packing, which each part does for its own rows and columns. */
        double best = -1;
        for (int pm = 1; pm <= threads; pm++) {
            if (threads % pm)
                continue;
            int pn = threads / pm;
            if (pm > tiles_m || pn > tiles_n)
                continue;
            double rows = (double)(ceil_div(tiles_m, pm) * p->blk.mr);
            double cols = (double)(ceil_div(tiles_n, pn) * p->blk.nr);
            double cost = rows * cols + 8.0 * (rows + cols);
            if (best < 0 || cost < best) {
                best = cost;
                p->pm = pm;
                p->pn = pn;
                p->part_m = (int64_t)rows;
                p->part_n = (int64_t)cols;
            }
        }
    }
    /* Packed panels round rows up to mr and columns to nr: mr - 1 and nr - 1
    ** more are enough, without dividing. */
    int64_t a_rows = (p->part_m < p->blk.mc ? p->part_m : p->blk.mc) + p->blk.mr - 1;
    int64_t b_cols = (p->part_n < p->blk.nc ? p->part_n : p->blk.nc) + p->blk.nr - 1;
    p->a_bytes = ((size_t)(a_rows * p->kblock) * es + 63) & ~(size_t)63;
    p->part_bytes = p->a_bytes + (((size_t)(b_cols * p->kblock) * es + 63) & ~(size_t)63);
}

/* Whether make_plan would give the product the plan gemm_in_place follows
** without making one: both operands read in place (small), one k block,
** one thread (under two threads' worth of work), B untransposed and C not
** swapped. No swap holds when C's columns fill whole vectors: cost() then
** charges the swapped side the same multiply-adds or more, plus its
** transposed store. And B needs no edge packed: its columns fill whole
** panels, or the kernel masks its loads. The 64^3 product took 4.58 us with
** a plan and 4.53 without (docs/PERFORMANCE.md); test_gemm checks the bits
** against the planned walk. */
static bool trivial_plan(agk_isa isa, ag_dtype dt, int64_t m, int64_t n, int64_t k, bool tb)
{
    if (tb || k < 1)
        return false;
    const agk_blocking *blk = dt == AG_F32 ? &kernel_f32(isa)->blk : &kernel_f64(isa)->blk;
    bool masked_b = dt == AG_F32 ? kernel_f32(isa)->masked_b : kernel_f64(isa)->masked_b;
    if (k > blk->kc || n % (blk->nr / 2) || (!masked_b && n % blk->nr))
        return false;
    double bytes = ((double)m * (double)k + (double)k * (double)n) * (double)elem_size(dt);
    double macs = (double)m * (double)n * (double)k;
    return bytes <= DIRECT_MAX_BYTES && macs < 2 * MIN_MACS_PER_THREAD;
}

static agk_isa usable(agk_isa isa) { return agk_isa_supported(isa) ? isa : AGK_ISA_PORTABLE; }

size_t agk_gemm_scratch_isa(agk_isa isa, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                            bool ta, bool tb, ag_pool *pool)
{
    if (m <= 0 || n <= 0)
        return 0;
    plan p;
    make_plan(&p, dt, usable(isa), m, n, k, ta, tb, pool);
    /* 64 more so the caller's block need not be aligned. */
    return (size_t)(p.pm * p.pn) * p.part_bytes + 64;
}

size_t agk_gemm_scratch(ag_dtype dt, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                        ag_pool *pool)
{
    return agk_gemm_scratch_isa(agk_isa_best(), dt, m, n, k, ta, tb, pool);
}

/* ------------------------------------------------------------- running */

typedef struct gemm_job {
    const plan *p;
    agk_isa isa;
    ag_dtype dt;
    agk_part whole;       /* the product as computed (swapped if the plan says) */
    char *scratch;        /* 64-aligned, part_bytes per part */
    bool shared_scratch;  /* parts run one after another in part 0's buffers */
} gemm_job;

static void run_kernel(agk_isa isa, ag_dtype dt, const agk_part *part)
{
    if (dt == AG_F32)
        gemm_part_f32(kernel_f32(isa), part);
    else
        gemm_part_f64(kernel_f64(isa), part);
}

static void run_part(void *ctx, int index)
{
    const gemm_job *j = ctx;
    const plan *p = j->p;
    const agk_part *w = &j->whole;
    int64_t i0 = 0, j0 = 0;
    if (index > 0) {
        i0 = (index / p->pn) * p->part_m;
        j0 = (index % p->pn) * p->part_n;
        if (i0 >= w->m || j0 >= w->n)
            return;
    }
    size_t es = elem_size(j->dt);
    agk_part part = *w;
    part.m = w->m - i0 < p->part_m ? w->m - i0 : p->part_m;
    part.n = w->n - j0 < p->part_n ? w->n - j0 : p->part_n;
    part.a = (const char *)w->a + (size_t)(w->ta ? i0 : i0 * w->lda) * es;
    part.b = (const char *)w->b + (size_t)(w->tb ? j0 * w->ldb : j0) * es;
    part.c = (char *)w->c + (size_t)(w->ct ? j0 * w->ldc + i0 : i0 * w->ldc + j0) * es;
    part.pa = j->scratch + (j->shared_scratch ? 0 : (size_t)index * p->part_bytes);
    part.pb = (char *)part.pa + p->a_bytes;
    run_kernel(j->isa, j->dt, &part);
}

static void gemm_run(agk_isa isa, ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a,
                     int64_t lda, bool ta, const void *b, int64_t ldb, bool tb, void *c,
                     int64_t ldc, bool accumulate, void *scratch, ag_pool *pool)
{
    if (m <= 0 || n <= 0)
        return;
    isa = usable(isa);
    if (trivial_plan(isa, dt, m, n, k, tb)) {
        /* A small product: planning it would take 1% of its time. */
        agk_part whole = {.m = m, .n = n, .k = k, .a = a, .lda = lda, .ta = ta, .b = b,
                          .ldb = ldb, .c = c, .ldc = ldc, .accumulate = accumulate};
        if (dt == AG_F32)
            gemm_in_place_f32(kernel_f32(isa), &whole);
        else
            gemm_in_place_f64(kernel_f64(isa), &whole);
        return;
    }
    plan p;
    make_plan(&p, dt, isa, m, n, k, ta, tb, pool);
    gemm_job job = {
        .p = &p, .isa = isa, .dt = dt,
        .scratch = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63),
    };
    job.whole = (agk_part){.blk = &p.blk, .kblock = p.kblock, .k = k, .c = c, .ldc = ldc,
                           .a_direct = p.a_direct, .b_direct = p.b_direct, .ct = p.swap,
                           .accumulate = accumulate};
    if (p.swap) {
        /* C^T[n, m] = op(B)^T op(A)^T: B^T's transpose flag is !tb. */
        job.whole.m = n, job.whole.n = m;
        job.whole.a = b, job.whole.lda = ldb, job.whole.ta = !tb;
        job.whole.b = a, job.whole.ldb = lda, job.whole.tb = !ta;
    } else {
        job.whole.m = m, job.whole.n = n;
        job.whole.a = a, job.whole.lda = lda, job.whole.ta = ta;
        job.whole.b = b, job.whole.ldb = ldb, job.whole.tb = tb;
    }
    int parts = p.pm * p.pn;
    if (parts == 1) {
        /* The whole is the one part: no copy of it (see make_plan). */
        job.whole.pa = job.scratch;
        job.whole.pb = job.scratch + p.a_bytes;
        run_kernel(isa, dt, &job.whole);
        return;
    }
    if (!agk_pool_try_run(pool, parts, run_part, &job)) {
        /* No pool, or it is busy (another tape, or a nested call): the same
        ** parts, one after another, give the same bits. */
        job.shared_scratch = true;
        for (int i = 0; i < parts; i++)
            run_part(&job, i);
    }
}

void agk_gemm_isa(agk_isa isa, ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a,
                  int64_t lda, bool ta, const void *b, int64_t ldb, bool tb, void *c, int64_t ldc,
                  void *scratch, ag_pool *pool)
{
    gemm_run(isa, dt, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, false, scratch, pool);
}

void agk_gemm(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, bool ta,
              const void *b, int64_t ldb, bool tb, void *c, int64_t ldc, void *scratch,
              ag_pool *pool)
{
    gemm_run(agk_isa_best(), dt, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, false, scratch, pool);
}

int64_t agk_gemm_one_block_k(ag_dtype dt) { return blocking(dt, usable(agk_isa_best())).kc; }

void agk_gemm_add(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                  bool ta, const void *b, int64_t ldb, bool tb, void *c, int64_t ldc,
                  void *scratch, ag_pool *pool)
{
    gemm_run(agk_isa_best(), dt, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, true, scratch, pool);
}
