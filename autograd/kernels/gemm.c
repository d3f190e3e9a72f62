/*
** gemm.c: the matrix product's driver: picks a micro-kernel for the CPU at
** run time, splits C among the threads of a pool, and runs the packed,
** cache-blocked product of gemm_template.inc on each part.
*/
#define _POSIX_C_SOURCE 200809L

#include "gemm_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
    bool b_prepacked;       /* 'pb' holds all of op(B)'s panels packed whole, k x nr each
                            ** (pack_b_panels): no part packs B, none packs it twice */
    bool ct;                /* C is stored transposed: (i, j) at c[j*ldc + i] */
    bool a_rows_outer;      /* A read in place: a row of tiles at a time (macro_kernel) */
    bool accumulate;        /* C += the product: the first k block adds too */
    void *pa, *pb;          /* packing buffers */
    void *pc;               /* a block of C's chains, for 'accumulate' over several k blocks */
} agk_part;

/* PACK_T_MIN: the narrowest panel a kernel's SIMD transpose packs faster
** than the template's loops (f32: AVX2's 6 rows, see pack_t_narrow_f32;
** f64: one vector of rows). */
#define TPL(name) name##_f32
#define REAL float
#define KERNEL agk_kernel_f32
#define PACK_T_MIN 6
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
#ifdef AGK_AVX512_EMULATED
        /* The test build's AVX-512 kernels run on AVX2 and FMA. */
        return agk_isa_supported(AGK_ISA_AVX2);
#else
        return __builtin_cpu_supports("avx512f") && agk_isa_supported(AGK_ISA_AVX2);
#endif
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

static size_t elem_size(ag_dtype dt) { return dt == AG_F32 ? sizeof(float) : sizeof(double); }

/* How a kernel's cache blocks follow from the caches (es: element size).
** Each rule keeps mc a multiple of mr and nc of nr. */
typedef void (*blocking_rule)(const agk_cpu *cpu, size_t es, agk_blocking *b);

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* The largest power of two at most v (v >= 1). */
static int64_t floor_pow2(int64_t v)
{
    int64_t p = 1;
    while (p * 2 <= v)
        p *= 2;
    return p;
}

/* nc: a kc x nc block of B in the core's share of the L3. */
static int nc_for_l3(const agk_cpu *cpu, size_t es, const agk_blocking *b)
{
    int64_t nc = (int64_t)(cpu->l3_per_core / ((size_t)b->kc * es));
    return (int)clamp64(nc - nc % b->nr, 4 * b->nr, 4096 - 4096 % b->nr);
}

/* Zen 4's kernel streams B panels from the L2 (kc x nr is 128 KB in f32,
** four times the L1): a long k block keeps each tile's C in registers
** longest. The A block of 6 tiles' rows and a B panel take a third of the
** L2, the B block the core's L3. On Zen 4 (32 KB, 1 MB, 4 MB a core) this
** gives the blocks measured best there: mc 48, kc 1024 (f64 512), nc 1024. */
static void blocking_l2_stream(const agk_cpu *cpu, size_t es, agk_blocking *b)
{
    b->mc = 6 * b->mr;
    int64_t kc = (int64_t)(cpu->l2 / 3 / ((size_t)(b->mc + b->nr) * es));
    b->kc = (int)floor_pow2(clamp64(kc, 128, 1024));
    b->nc = nc_for_l3(cpu, es, b);
}

/* The textbook blocks: a kc x nr panel of B in two thirds of the L1 (the
** rest for A's tile rows and C), an mc x kc block of A in a sixth of the L2
** (the B panels stream through it too), the B block in half the core's L3.
** On Ice Lake-SP (48 KB, 1.25 MB) this gives the measured kc 256
** and an mc near its 192; on Zen 3 (32 KB, 512 KB) kc 336, mc 60 (f32). */
static void blocking_l1_panel(const agk_cpu *cpu, size_t es, agk_blocking *b)
{
    int64_t kc = (int64_t)(cpu->l1d * 2 / 3 / ((size_t)b->nr * es));
    b->kc = (int)clamp64(kc - kc % 16, 64, 1024);
    int64_t mc = (int64_t)(cpu->l2 / 6 / ((size_t)b->kc * es));
    b->mc = (int)clamp64(mc - mc % b->mr, b->mr, 40 * b->mr);
    agk_cpu half = *cpu;
    half.l3_per_core /= 2;
    b->nc = nc_for_l3(&half, es, b);
}

/* AVX2's 6 x 16 tile: as the textbook's, but with a B panel the size of
** the whole L1 (kc 512 in f32 on a 32 KB L1). Each tile then keeps its C
** in registers for 512 steps instead of 336, and its A panel (6 rows)
** streams past the B panel from the L2: on Zen 3, quiet, one thread,
** 512^3 to 2048^3 ran 1.4 to 3.3% faster than with kc 336, and mc and nc
** (the textbook's) did not matter within 1% (docs/PERFORMANCE.md). */
static void blocking_l1_whole(const agk_cpu *cpu, size_t es, agk_blocking *b)
{
    blocking_l1_panel(cpu, es, b);
    int64_t kc = (int64_t)(cpu->l1d / ((size_t)b->nr * es));
    b->kc = (int)clamp64(kc - kc % 16, 64, 1024);
    agk_cpu half = *cpu;
    half.l3_per_core /= 2;
    b->nc = nc_for_l3(&half, es, b);
}

/* The portable kernel keeps its constants: nothing to tune it on. */
static void blocking_fixed(const agk_cpu *cpu, size_t es, agk_blocking *b)
{
    (void)cpu, (void)es, (void)b;
}

/* The kernels, one row each: the instruction set they need, how a value of
** A reaches every lane of a vector, their tiles and their blocking rule. */
typedef struct gemm_kernel_desc {
    const char *name;
    agk_isa isa;
    const char *broadcast;
    const agk_kernel_f32 *f32;
    const agk_kernel_f64 *f64;
    blocking_rule blocking;
    /* Packs an operand B it would read in place when its rows fall into a
    ** few sets of the L1 (see make_plan). Not Zen 4's kernel: its plans
    ** were measured as they are, on Zen 4. */
    bool avoid_set_conflicts;
    /* Walks an A read in place by rows a row of tiles at a time, when the B
    ** block fits the L2 (agk_part.a_rows_outer): measured on Zen 3's AVX2
    ** kernel; not Zen 4's, whose plans were measured as they are there. */
    bool rows_outer;
} gemm_kernel_desc;

#if AGK_HAVE_X86
#define X86_KERNELS(f32, f64) &agk_kernel_f32_##f32, &agk_kernel_f64_##f64
#else
#define X86_KERNELS(f32, f64) NULL, NULL
#endif

static const gemm_kernel_desc kernel_table[AGK_GEMM_KERNELS] = {
    [AGK_GEMM_PORTABLE] = {"portable", AGK_ISA_PORTABLE, "scalar, in C", &kernel_portable_f32,
                           &kernel_portable_f64, blocking_fixed, false, false},
    /* 6 x 16 (f64 6 x 8): 12 accumulators of the 16 ymm registers. */
    [AGK_GEMM_AVX2] = {"avx2", AGK_ISA_AVX2, "vbroadcastss/sd into a register per row",
                       X86_KERNELS(avx2, avx2), blocking_l1_whole, true, true},
    /* 8 x 32 (f64 8 x 16), up to 12 rows at an edge read in place. */
    [AGK_GEMM_AVX512_ZEN4] = {"avx512-zen4", AGK_ISA_AVX512,
                              "{1to16} memory operand of each FMA",
                              X86_KERNELS(avx512, avx512), blocking_l2_stream, false, false},
    /* 12 x 32 (f64 12 x 16): 24 accumulators, two B vectors, one broadcast
    ** register per row: 14 loads per 24 FMAs, where the memory-operand
    ** broadcasts of Zen 4's kernel load 18 per 16. */
    [AGK_GEMM_AVX512_INTEL] = {"avx512-intel", AGK_ISA_AVX512,
                               "vbroadcastss/sd into a register per row",
                               X86_KERNELS(avx512_intel, avx512_intel), blocking_l1_panel,
                               true, true},
};

const char *agk_gemm_kernel_name(agk_gemm_kernel id)
{
    return (unsigned)id < AGK_GEMM_KERNELS ? kernel_table[id].name : "?";
}

bool agk_gemm_kernel_runs(agk_gemm_kernel id)
{
    return (unsigned)id < AGK_GEMM_KERNELS && kernel_table[id].f32 &&
           agk_isa_supported(kernel_table[id].isa);
}

static agk_gemm_kernel usable(agk_gemm_kernel id)
{
    return agk_gemm_kernel_runs(id) ? id : AGK_GEMM_PORTABLE;
}

static const agk_kernel_f32 *kernel_f32(agk_gemm_kernel id) { return kernel_table[id].f32; }
static const agk_kernel_f64 *kernel_f64(agk_gemm_kernel id) { return kernel_table[id].f64; }

/* Chosen once per process (pthread_once): the kernel, and every kernel's
** blocks for this CPU's caches. */
static struct {
    agk_cpu cpu;
    agk_gemm_kernel chosen;
    agk_blocking blk[AGK_GEMM_KERNELS][2];   /* [kernel][f64] */
} host;
static pthread_once_t host_once = PTHREAD_ONCE_INIT;

/* Multiply-adds per second of a kernel's whole f32 tile on L1-resident
** panels (k = 64), over about 'seconds'. */
static double tile_rate(agk_gemm_kernel id, double seconds)
{
    enum { K = 64 };
    const agk_kernel_f32 *K32 = kernel_f32(id);
    int mr = K32->blk.mr, nr = K32->blk.nr;
    _Alignas(64) float a[AGK_MAX_MR * K], b[AGK_MAX_NR * K], c[AGK_MAX_MR * AGK_MAX_NR];
    for (int i = 0; i < AGK_MAX_MR * K; i++)
        a[i] = 1.0f / (float)(i + 1);
    for (int i = 0; i < AGK_MAX_NR * K; i++)
        b[i] = 1.0f / (float)(i + 2);
    agk_tile_f32 tile = K32->tile_full ? K32->tile_full : K32->tile;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double elapsed = 0;
    long calls = 0;
    while (elapsed < seconds) {
        for (int r = 0; r < 16; r++, calls++)
            tile(K, a, 1, mr, b, nr, c, nr, AGK_C_SET, mr, nr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        elapsed = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    }
    return (double)calls * mr * nr * K / elapsed;
}

agk_gemm_kernel agk_gemm_kernel_probe(const agk_gemm_kernel *cand, int n)
{
    /* Twice round, keeping each one's better rate: the first tiles of a
    ** cold core (clock ramping, caches filling) would favour the second. */
    double rate[AGK_GEMM_KERNELS] = {0};
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < n; i++) {
            double r = tile_rate(cand[i], 50e-6);
            rate[cand[i]] = r > rate[cand[i]] ? r : rate[cand[i]];
        }
    agk_gemm_kernel best = cand[0];
    for (int i = 1; i < n; i++)
        if (rate[cand[i]] > rate[best])
            best = cand[i];
    return best;
}

/* From cpuid: AVX-512 on AMD is Zen 4 or later, on Intel a core with two
** FMA ports or one (whose loads limit the Zen 4 kernel no less). Elsewhere,
** such as a hypervisor that hides the vendor, the probe times both. */
static agk_gemm_kernel choose_by_cpu(const agk_cpu *cpu)
{
    if (agk_gemm_kernel_runs(AGK_GEMM_AVX512_ZEN4)) {
        if (cpu->vendor == AGK_VENDOR_AMD)
            return AGK_GEMM_AVX512_ZEN4;
        if (cpu->vendor == AGK_VENDOR_INTEL)
            return AGK_GEMM_AVX512_INTEL;
        static const agk_gemm_kernel both[] = {AGK_GEMM_AVX512_ZEN4, AGK_GEMM_AVX512_INTEL};
        return agk_gemm_kernel_probe(both, 2);
    }
    return agk_gemm_kernel_runs(AGK_GEMM_AVX2) ? AGK_GEMM_AVX2 : AGK_GEMM_PORTABLE;
}

/* AG_GEMM_KERNEL=<name> forces a kernel this CPU runs. Any other value is
** said once on stderr, and the choice is cpuid's. */
static agk_gemm_kernel choose(const agk_cpu *cpu)
{
    const char *want = getenv("AG_GEMM_KERNEL");
    if (want && *want) {
        for (int id = 0; id < AGK_GEMM_KERNELS; id++)
            if (strcmp(want, kernel_table[id].name) == 0 && agk_gemm_kernel_runs((agk_gemm_kernel)id))
                return (agk_gemm_kernel)id;
        agk_gemm_kernel fallback = choose_by_cpu(cpu);
        fprintf(stderr,
                "autograd: AG_GEMM_KERNEL=%s is not a kernel this CPU runs (", want);
        for (int id = 0, first = 1; id < AGK_GEMM_KERNELS; id++)
            if (agk_gemm_kernel_runs((agk_gemm_kernel)id)) {
                fprintf(stderr, "%s%s", first ? "" : ", ", kernel_table[id].name);
                first = 0;
            }
        fprintf(stderr, "); using %s\n", kernel_table[fallback].name);
        return fallback;
    }
    return choose_by_cpu(cpu);
}

static void init_host(void)
{
    agk_cpu_read(&host.cpu);
    for (int id = 0; id < AGK_GEMM_KERNELS; id++) {
        const gemm_kernel_desc *d = &kernel_table[id];
        if (!d->f32)
            continue;
        host.blk[id][0] = d->f32->blk;
        host.blk[id][1] = d->f64->blk;
        d->blocking(&host.cpu, sizeof(float), &host.blk[id][0]);
        d->blocking(&host.cpu, sizeof(double), &host.blk[id][1]);
    }
    host.chosen = choose(&host.cpu);
}

static void ensure_host(void) { pthread_once(&host_once, init_host); }

agk_gemm_kernel agk_gemm_kernel_chosen(void)
{
    ensure_host();
    return host.chosen;
}

const char *ag_gemm_kernel(void) { return agk_gemm_kernel_name(agk_gemm_kernel_chosen()); }

static agk_blocking blocking(ag_dtype dt, agk_gemm_kernel id)
{
    ensure_host();
    return host.blk[id][dt == AG_F64];
}

static void blocking_out(agk_blocking b, int64_t out[5])
{
    out[0] = b.mr, out[1] = b.nr, out[2] = b.mc, out[3] = b.kc, out[4] = b.nc;
}

void agk_gemm_blocking(agk_gemm_kernel id, ag_dtype dt, int64_t out[5])
{
    blocking_out(blocking(dt, usable(id)), out);
}

void agk_gemm_blocking_cpu(agk_gemm_kernel id, ag_dtype dt, const agk_cpu *cpu, int64_t out[5])
{
    const gemm_kernel_desc *d = &kernel_table[(unsigned)id < AGK_GEMM_KERNELS ? id : 0];
    if (!d->f32)
        d = &kernel_table[AGK_GEMM_PORTABLE];
    agk_blocking b = dt == AG_F32 ? d->f32->blk : d->f64->blk;
    d->blocking(cpu, elem_size(dt), &b);
    blocking_out(b, out);
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
    /* With parts and B packed: all of op(B) is packed once, shared, into
    ** shared_bytes before the parts run. */
    bool b_shared;
    bool b_packed;    /* op(B) is packed (not read in place) */
    bool a_rows_outer;   /* see agk_part */
    int pm, pn;
    int64_t part_m, part_n;
    int slices;       /* a part's rows are cut in this many slices of slice_m, taken dynamically */
    int64_t slice_m;
    size_t a_bytes, b_bytes, part_bytes;   /* a part's packed A and B, and all its buffers */
    size_t shared_bytes;   /* B packed whole: shared (b_shared), or for agk_gemm_add; else 0 */
} plan;

/* Below this many multiply-adds per thread, waking a thread costs more
** than it saves. */
static const double MIN_MACS_PER_THREAD = 1 << 20;
/* The most slices a thread's part is cut into (see make_plan). */
enum { MAX_SLICES = 8 };
/* Operands up to this size together are read in place: packing them costs
** more than the cache misses it saves. Up to the larger size, the operands
** whose rows the kernel reads as they lie (op(A) not transposed, op(B) not
** transposed) still are: the MLP's products ran 3 to 10% faster that way,
** on AVX-512 and AVX2, one thread or two (docs/PERFORMANCE.md). So is a
** transposed A when a tile's mr values of each of k's steps fill half a
** cache line (AVX-512's 8 floats), so that two tiles use each line read;
** with AVX2's 6 they straddle lines and ran slower. Beyond some megabytes
** packing wins again, most at leading dimensions of 4 KB multiples (every
** row in the same L1 set). With AVX2's whole-tile kernel on Zen 3, a medium
** A read in place ran 192^3 to 512^3 1 to 3% faster than packed, and the
** MLP's b64 784-deep product 3% (docs/PERFORMANCE.md, session 10). */
static const double DIRECT_MAX_BYTES = 192 * 1024;
static const double ROWS_IN_PLACE_MAX_BYTES = 2 * 1024 * 1024;
/* See make_plan's set conflicts. */
enum { SMALL_PACK_B_MIN_TILES = 16 };

/* Whether op(A) is read in place, by the rule above ('small' and 'medium':
** the product's operands fit the two sizes). B, untransposed, is read in
** place whenever 'medium' holds. */
static bool a_in_place(bool small, bool medium, bool ta, bool half_lines, int64_t panels,
                       int64_t m, int mr)
{
    /* Each panel of B reads the A block again: a small transposed A whose
    ** tile rows straddle lines, with many panels and tiles, is packed
    ** (b64's 256 x 128 x 64 dW product ran 2 to 3% faster on Zen 3). */
    if (small && ta && !half_lines && panels >= 4 && m >= 16 * mr)
        return false;
    return small || (medium && (!ta || half_lines));
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
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
/* Whether the rows of an operand read in place, 'ld' elements apart, fall
** into so few sets of the L1 that a k block of them cannot stay there: a
** panel of B is read once per tile of A, and with a leading dimension of
** 1 KB (256 floats) its rows share 4 of Zen 3's 64 sets, 32 lines for a
** k block of 300; the panel then came from the L2 for every tile, and the
** b256 784x256 product ran at 0.85x OpenBLAS read in place, 1.04x packed.
** Rows not 64-byte multiples apart spread over the sets. 0: unknown. */
static bool set_conflicts(int64_t ld, size_t es, int64_t kc)
{
    size_t stride = (size_t)ld * es, line = 64, ways = 8;
    if (ld <= 0 || stride % line)
        return false;
    size_t sets = host.cpu.l1d / (line * ways), step = (stride / line) % sets, g = sets;
    for (size_t r = step; r;) {   /* gcd(step, sets) */
        size_t t = g % r;
        g = r;
        r = t;
    }
    size_t lines = sets / g * ways;
    return (int64_t)lines < 2 * kc;
}

static void make_plan(plan *p, ag_dtype dt, const agk_gemm_opts *o, int64_t m, int64_t n,
                      int64_t k, bool ta, bool tb, int64_t lda, int64_t ldb, ag_pool *pool)
{
    *p = (plan){.blk = blocking(dt, o->kernel), .pm = 1, .pn = 1};
    if (o->kc > 0)
        p->blk.kc = (int)o->kc;
    if (o->mc > 0)
        p->blk.mc = (int)round_up(o->mc, p->blk.mr);
    if (o->nc > 0)
        p->blk.nc = (int)round_up(o->nc, p->blk.nr);
    size_t es = elem_size(dt);
    double bytes = ((double)m * (double)k + (double)k * (double)n) * (double)es;
    bool small = !o->pack && bytes <= DIRECT_MAX_BYTES;
    bool medium = !o->pack && bytes <= ROWS_IN_PLACE_MAX_BYTES;
    bool half_lines = (size_t)p->blk.mr * es % 32 == 0;
    /* A narrow C (a few columns) wastes most of each column vector; its
    ** transpose (op(A)' = op(B)^T, transposed unless tb) may fill them better. */
    int vec = p->blk.nr / 2;
    int mr = p->blk.mr;
    bool a_as_is = a_in_place(small, medium, ta, half_lines, ceil_div(n, p->blk.nr), m, mr);
    bool a_swapped = a_in_place(small, medium, !tb, half_lines, ceil_div(m, p->blk.nr), n, mr);
    double as_is = cost(m, n, k, tb, a_as_is, medium, false, vec);
    double swapped = cost(n, m, k, !ta, a_swapped, medium, true, vec);
    p->swap = swapped < as_is;
    if (p->swap) {
        int64_t t = m;
        m = n;
        n = t;
        bool f = ta;
        ta = !tb;
        tb = !f;
        t = lda;
        lda = ldb;
        ldb = t;
    }
    p->a_direct = p->swap ? a_swapped : a_as_is;
    p->b_direct = medium;
    /* Whether B may be packed: the scratch size, asked without leading
    ** dimensions (agk_gemm_scratch), must not depend on them. A small
    ** product packs a conflicting B only for enough tiles of A to repay the
    ** copy: 128^3 and b64's 256 x 128 x 64 (dW) ran 2 and 4% faster so,
    ** b64's 64 x 128 x 256 (11 tiles) 3% slower (docs/PERFORMANCE.md). */
    bool b_may_conflict = medium && !tb && kernel_table[o->kernel].avoid_set_conflicts &&
                          (!small || m >= SMALL_PACK_B_MIN_TILES * p->blk.mr);
    if (b_may_conflict && set_conflicts(ldb, es, p->blk.kc < k ? p->blk.kc : k))
        p->b_direct = false;
    bool b_packed = p->b_packed = !p->b_direct || tb;
    /* A's rows read in place stay in the L1 for a row of tiles while the B
    ** block streams past them, when that block fits the L2 (macro_kernel):
    ** 128^3 to 256^3 and b64's 784-deep product ran 1 to 5% faster so. */
    int64_t block_n = n < p->blk.nc ? n : p->blk.nc;
    int64_t block_k = k <= p->blk.kc ? k : ceil_div(k, ceil_div(k, p->blk.kc));
    p->a_rows_outer = p->a_direct && !ta && kernel_table[o->kernel].rows_outer &&
                      (double)block_k * (double)block_n * (double)es <= (double)host.cpu.l2;
    bool b_may_pack = !medium || tb || b_may_conflict;
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
    /* With A read in place, no part packs any of it, and a grid of column
    ** parts lets each thread pack its own share of B (the shared packing's
    ** panels are dealt in the same order) and keep it in its own L2, where
    ** row parts each stream all of B: when B is over half the L2, the
    ** MLP's b256 784-deep products and 384^3 ran 2 to 4% faster on two
    ** threads so (Zen 3, docs/PERFORMANCE.md, session 12). Parts of 4
    ** panels ran 5 to 8% slower by columns (b256's 256 x 128 forward):
    ** hence 8 panels a thread at least. */
    /* All of B packed: shared_bytes below, when it is shared. */
    size_t b_whole = ((size_t)(round_up(n, p->blk.nr) * k) * es + 63) & ~(size_t)63;
    bool by_columns = p->a_direct && (double)b_whole > 0.5 * (double)host.cpu.l2 &&
                      tiles_n >= 8 * (int64_t)threads;
    if (threads > 1 && tiles_m * tiles_n >= threads) {
        /* Otherwise choose the grid that minimises the largest part's work
        ** plus its packing: each part packs its own rows of A (B is shared,
        ** or read in place). */
        double best = -1;
        for (int pm = 1; pm <= threads; pm++) {
            if (threads % pm)
                continue;
            int pn = threads / pm;
            if (pm > tiles_m || pn > tiles_n || (by_columns && pm > 1))
                continue;
            double rows = (double)(ceil_div(tiles_m, pm) * p->blk.mr);
            double cols = (double)(ceil_div(tiles_n, pn) * p->blk.nr);
            double cost = rows * cols + 8.0 * rows;
            if (best < 0 || cost < best) {
                best = cost;
                p->pm = pm;
                p->pn = pn;
                p->part_m = (int64_t)rows;
                p->part_n = (int64_t)cols;
            }
        }
    }
    /* With parts, a packed B is packed once for all of them, before they
    ** start (gemm_run). Each part packed its own before, and each of its
    ** slices again (below): at 1024^3 on two threads, each packed 1.5 times
    ** what one thread packs alone for half the multiply-adds. */
    p->b_shared = b_packed && p->pm * p->pn > 1;
    if (b_may_pack && (p->pm * p->pn > 1 || k > p->kblock)) {
        /* Also for agk_gemm_add over several k blocks, which would pack B
        ** again for each block of A (gemm_part_add_blocks); the scratch
        ** size cannot tell agk_gemm_add from agk_gemm. */
        p->shared_bytes = b_whole;
    }
    /* With threads, each part's rows are cut into slices that the pool
    ** hands out as ag_pool_for does its ranges: a thread done with its own
    ** takes those left in another's, so a worker that wakes late or is
    ** descheduled (common on VMs) does not hold the caller up by a whole
    ** part. A slice packs only its own rows of A (B is read in place or
    ** shared), so slices cost little more than the tiles' edges. */
    p->slices = 1;
    p->slice_m = p->part_m;
    if (p->pm * p->pn > 1) {
        int64_t min_rows = 4 * p->blk.mr;
        /* Each slice walks the whole shared B, a k block at a time, and the
        ** threads' slices are at different k blocks: a B larger than half
        ** the L3 a core has then left the L3 between one slice's use of a
        ** block and the next's. Two slices a part keep a late worker's
        ** second half for the other thread, and reuse each block as long.
        ** On two threads, 2048^3 and 1536^3 ran 1 to 6% faster so (Zen 3,
        ** docs/PERFORMANCE.md); up to 1024^3 nothing changes. */
        if (p->b_shared && (double)p->shared_bytes > 0.5 * (double)host.cpu.l3_per_core)
            min_rows = ceil_div(p->part_m, 2);
        int64_t s = p->part_m / min_rows;
        p->slices = (int)(s < 1 ? 1 : s > MAX_SLICES ? MAX_SLICES : s);
        p->slice_m = round_up(ceil_div(p->part_m, p->slices), p->blk.mr);
    }
    /* Packed panels round rows up to mr and columns to nr: mr - 1 and nr - 1
    ** more are enough, without dividing. */
    int64_t block_rows = agk_block_rows_max(&p->blk);
    int64_t a_rows = (p->part_m < block_rows ? p->part_m : block_rows) + p->blk.mr - 1;
    int64_t b_cols = (p->part_n < p->blk.nc ? p->part_n : p->blk.nc) + p->blk.nr - 1;
    p->a_bytes = ((size_t)(a_rows * p->kblock) * es + 63) & ~(size_t)63;
    p->b_bytes = ((size_t)(b_cols * p->kblock) * es + 63) & ~(size_t)63;
    p->part_bytes = p->a_bytes + p->b_bytes;
    if (k > p->kblock) {
        /* agk_gemm_add's chains of a C block (gemm_part_add_blocks): as
        ** many rows as an A block, packed or read in place, may have. */
        int max_rows = dt == AG_F32 ? kernel_f32(o->kernel)->max_rows : kernel_f64(o->kernel)->max_rows;
        int64_t c_rows = p->blk.mc + max_rows - p->blk.mr;
        c_rows = c_rows > block_rows ? c_rows : block_rows;
        c_rows = p->part_m < c_rows ? p->part_m : c_rows;
        int64_t c_cols = p->part_n < p->blk.nc ? p->part_n : p->blk.nc;
        p->part_bytes += ((size_t)(c_rows * c_cols) * es + 63) & ~(size_t)63;
    }
}

/* Whether make_plan would give the product the plan gemm_in_place follows
** without making one: both operands read in place (small), one chain per
** element of C (k blocks change no bit), one thread (under two threads' worth of work), B untransposed and C not
** swapped. No swap holds when C's columns fill whole vectors: cost() then
** charges the swapped side the same multiply-adds or more, plus its
** transposed store. And B needs no edge packed: its columns fill whole
** panels, or the kernel masks its loads. The 64^3 product took 4.58 us with
** a plan and 4.53 without (docs/PERFORMANCE.md); test_gemm checks the bits
** against the planned walk. */
static bool trivial_plan(const agk_gemm_opts *o, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                         bool tb)
{
    if (tb || k < 1 || o->pack)
        return false;
    const agk_blocking *blk = dt == AG_F32 ? &kernel_f32(o->kernel)->blk : &kernel_f64(o->kernel)->blk;
    bool masked_b = dt == AG_F32 ? kernel_f32(o->kernel)->masked_b : kernel_f64(o->kernel)->masked_b;
    /* The k blocks change no bit, so the one chain here needs no cut; past
    ** 1024 the planned walk's blocks keep B's panels in cache. */
    if (k > 1024 || n % (blk->nr / 2) || (!masked_b && n % blk->nr))
        return false;
    double bytes = ((double)m * (double)k + (double)k * (double)n) * (double)elem_size(dt);
    double macs = (double)m * (double)n * (double)k;
    return bytes <= DIRECT_MAX_BYTES && macs < 2 * MIN_MACS_PER_THREAD;
}

/* The options with a kernel this CPU runs. */
static agk_gemm_opts resolve(const agk_gemm_opts *o)
{
    agk_gemm_opts r = *o;
    r.kernel = usable(o->kernel);
    return r;
}

size_t agk_gemm_scratch_with(const agk_gemm_opts *o, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                             bool ta, bool tb, ag_pool *pool)
{
    if (m <= 0 || n <= 0)
        return 0;
    agk_gemm_opts r = resolve(o);
    plan p;
    make_plan(&p, dt, &r, m, n, k, ta, tb, 0, 0, pool);
    /* 64 more so the caller's block need not be aligned. */
    return p.shared_bytes + (size_t)(p.pm * p.pn) * p.part_bytes + 64;
}

size_t agk_gemm_scratch(ag_dtype dt, int64_t m, int64_t n, int64_t k, bool ta, bool tb,
                        ag_pool *pool)
{
    agk_gemm_opts o = {.kernel = agk_gemm_kernel_chosen()};
    return agk_gemm_scratch_with(&o, dt, m, n, k, ta, tb, pool);
}

/* ------------------------------------------------------------- running */

typedef struct gemm_job {
    const plan *p;
    bool b_shared;        /* the plan's, or one part adding over several k blocks */
    agk_gemm_kernel kernel;
    ag_dtype dt;
    agk_part whole;       /* the product as computed (swapped if the plan says) */
    char *scratch;        /* 64-aligned, part_bytes per part (per task) */
    char *shared_b;       /* B packed whole, when the plan shares it */
} gemm_job;

static void run_kernel(agk_gemm_kernel id, ag_dtype dt, const agk_part *part)
{
    if (dt == AG_F32)
        gemm_part_f32(kernel_f32(id), part);
    else
        gemm_part_f64(kernel_f64(id), part);
}

/* A part's buffers at 'base': packed A, packed B, C's chains. */
static void set_buffers(agk_part *part, const plan *p, char *base)
{
    part->pa = base;
    part->pb = base + p->a_bytes;
    part->pc = base + p->a_bytes + p->b_bytes;
}

/* Slice 'slice' of part 'index' (its rows cut in p->slices), in the
** buffers at 'buf'. */
static void run_slice(const gemm_job *j, int index, int slice, char *buf)
{
    const plan *p = j->p;
    const agk_part *w = &j->whole;
    int64_t i0 = (index / p->pn) * p->part_m + slice * p->slice_m;
    int64_t j0 = (index % p->pn) * p->part_n;
    int64_t i1 = (index / p->pn) * p->part_m + p->part_m;
    int64_t rows = (i1 < w->m ? i1 : w->m) - i0;
    if (rows > p->slice_m)
        rows = p->slice_m;
    if (rows <= 0 || j0 >= w->n)
        return;
    size_t es = elem_size(j->dt);
    agk_part part = *w;
    part.m = rows;
    part.n = w->n - j0 < p->part_n ? w->n - j0 : p->part_n;
    part.a = (const char *)w->a + (size_t)(w->ta ? i0 : i0 * w->lda) * es;
    part.b = (const char *)w->b + (size_t)(w->tb ? j0 * w->ldb : j0) * es;
    part.c = (char *)w->c + (size_t)(w->ct ? j0 * w->ldc + i0 : i0 * w->ldc + j0) * es;
    set_buffers(&part, p, buf);
    if (j->b_shared) {
        /* j0 is a multiple of nr: its panel starts j0 * k values in. */
        part.b_prepacked = true;
        part.pb = j->shared_b + (size_t)(j0 * w->k) * es;
    }
    run_kernel(j->kernel, j->dt, &part);
}

/* Panels begin..end - 1 of op(B), packed whole into the shared buffer. */
static void pack_shared_b(void *ctx, int task, int64_t begin, int64_t end)
{
    (void)task;
    const gemm_job *j = ctx;
    const agk_part *w = &j->whole;
    if (j->dt == AG_F32)
        pack_b_panels_f32(kernel_f32(j->kernel), w->k, w->n, w->b, w->ldb, w->tb,
                          (float *)(void *)j->shared_b, begin, end);
    else
        pack_b_panels_f64(kernel_f64(j->kernel), w->k, w->n, w->b, w->ldb, w->tb,
                          (double *)(void *)j->shared_b, begin, end);
}

/* Items begin..end - 1 (part * slices + slice), run by 'task', in its
** buffers. */
static void run_items(void *ctx, int task, int64_t begin, int64_t end)
{
    const gemm_job *j = ctx;
    char *buf = j->scratch + (size_t)task * j->p->part_bytes;
    for (int64_t item = begin; item < end; item++)
        run_slice(j, (int)(item / j->p->slices), (int)(item % j->p->slices), buf);
}

static void gemm_run(const agk_gemm_opts *o, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                     const void *a, int64_t lda, bool ta, const void *b, int64_t ldb, bool tb,
                     void *c, int64_t ldc, bool accumulate, void *scratch, ag_pool *pool)
{
    if (m <= 0 || n <= 0)
        return;
    agk_gemm_opts r = resolve(o);
    if (trivial_plan(&r, dt, m, n, k, tb)) {
        /* A small product: planning it would take 1% of its time. */
        agk_part whole = {.m = m, .n = n, .k = k, .a = a, .lda = lda, .ta = ta, .b = b,
                          .ldb = ldb, .c = c, .ldc = ldc, .accumulate = accumulate};
        if (dt == AG_F32)
            gemm_in_place_f32(kernel_f32(r.kernel), &whole);
        else
            gemm_in_place_f64(kernel_f64(r.kernel), &whole);
        return;
    }
    plan p;
    make_plan(&p, dt, &r, m, n, k, ta, tb, lda, ldb, pool);
    char *aligned = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    gemm_job job = {
        .p = &p, .kernel = r.kernel, .dt = dt,
        .b_shared = p.b_shared || (accumulate && p.b_packed && p.shared_bytes > 0),
        .shared_b = aligned, .scratch = aligned + p.shared_bytes,
    };
    job.whole = (agk_part){.blk = &p.blk, .kblock = p.kblock, .k = k, .c = c, .ldc = ldc,
                           .a_direct = p.a_direct, .b_direct = p.b_direct, .ct = p.swap,
                           .a_rows_outer = p.a_rows_outer,
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
        set_buffers(&job.whole, &p, job.scratch);
        if (job.b_shared) {
            pack_shared_b(&job, 0, 0, ceil_div(job.whole.n, p.blk.nr));
            job.whole.b_prepacked = true;
            job.whole.pb = job.shared_b;
        }
        run_kernel(r.kernel, dt, &job.whole);
        return;
    }
    if (job.b_shared) {
        /* Two jobs, so no thread waits inside one for another's packing:
        ** the pool's end of a job already copes with a late worker. */
        int64_t panels = ceil_div(job.whole.n, p.blk.nr);
        if (!agk_pool_try_ranges(pool, parts, panels, pack_shared_b, &job))
            pack_shared_b(&job, 0, 0, panels);
    }
    int64_t items = (int64_t)parts * p.slices;
    if (!agk_pool_try_ranges(pool, parts, items, run_items, &job)) {
        /* No pool, or it is busy (another tape, or a nested call): the same
        ** slices, one after another, give the same bits. */
        run_items(&job, 0, 0, items);
    }
}

void agk_gemm_with(const agk_gemm_opts *o, ag_dtype dt, int64_t m, int64_t n, int64_t k,
                   const void *a, int64_t lda, bool ta, const void *b, int64_t ldb, bool tb,
                   void *c, int64_t ldc, bool accumulate, void *scratch, ag_pool *pool)
{
    gemm_run(o, dt, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, accumulate, scratch, pool);
}

void agk_gemm(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda, bool ta,
              const void *b, int64_t ldb, bool tb, void *c, int64_t ldc, void *scratch,
              ag_pool *pool)
{
    agk_gemm_opts o = {.kernel = agk_gemm_kernel_chosen()};
    gemm_run(&o, dt, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, false, scratch, pool);
}

int64_t agk_gemm_one_block_k(ag_dtype dt) { return blocking(dt, agk_gemm_kernel_chosen()).kc; }

void agk_gemm_add(ag_dtype dt, int64_t m, int64_t n, int64_t k, const void *a, int64_t lda,
                  bool ta, const void *b, int64_t ldb, bool tb, void *c, int64_t ldc,
                  void *scratch, ag_pool *pool)
{
    agk_gemm_opts o = {.kernel = agk_gemm_kernel_chosen()};
    gemm_run(&o, dt, m, n, k, a, lda, ta, b, ldb, tb, c, ldc, true, scratch, pool);
}
