/*
** bench_matmul.c: the machine's FMA peak (our own microbenchmark: chains of
** fused multiply-adds in registers, independent enough to fill every FMA
** pipe) and our matrix product beside every peer found at build time
** (OpenBLAS, BLIS, libxsmm for the small untransposed products), one and
** two threads, at square sizes and at the MLP's shapes. The product is
** timed at the kernel (agk_gemm), as the peers' sgemm is, on the same
** buffers. A row's reference is the best peer; its note gives each one.
*/
#define _POSIX_C_SOURCE 200809L

#include "bench.h"
#include "autograd.h"
#include "kernels/gemm_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if BENCH_HAVE_OPENBLAS
#include <cblas.h>
#endif
#if BENCH_HAVE_BLIS
#include <blis.h>
#endif
#if BENCH_HAVE_LIBXSMM
#include <libxsmm.h>
#endif

/* Seconds of this thread's CPU time. One-thread rows are timed with it:
** on a machine shared with compilers (a load of 20 on 2 vCPUs), wall time
** counted the moments each side was off the CPU, and it hit the two sides
** unevenly (ours at 0.4x OpenBLAS by the wall clock, 0.8x by CPU time, in
** the same run). Rows with threads keep the wall clock: their point is how
** the threads share the work. */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------ FMA peak */

enum { PEAK_ITERS = 20 * 1000 * 1000 };

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>

/* Twelve chains: more than FMA pipes times latency on any x86 core we know,
** so the pipes, not the chains, set the rate. The empty asm keeps the
** compiler from merging or hoisting the chains. */
__attribute__((target("avx2,fma"))) static double peak_avx2(long iters)
{
    __m256 x = _mm256_set1_ps(1.0f - 1e-7f), y = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m256 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    double t0 = cpu_now();
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(x, c0, y), c1 = _mm256_fmadd_ps(x, c1, y);
        c2 = _mm256_fmadd_ps(x, c2, y), c3 = _mm256_fmadd_ps(x, c3, y);
        c4 = _mm256_fmadd_ps(x, c4, y), c5 = _mm256_fmadd_ps(x, c5, y);
        c6 = _mm256_fmadd_ps(x, c6, y), c7 = _mm256_fmadd_ps(x, c7, y);
        c8 = _mm256_fmadd_ps(x, c8, y), c9 = _mm256_fmadd_ps(x, c9, y);
        c10 = _mm256_fmadd_ps(x, c10, y), c11 = _mm256_fmadd_ps(x, c11, y);
        __asm__ volatile("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5),
                         "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    double t = cpu_now() - t0;
    volatile float sink = _mm256_cvtss_f32(_mm256_add_ps(_mm256_add_ps(c0, c5), c11));
    (void)sink;
    return (double)iters * 12 * 8 * 2 / t * 1e-9;
}

__attribute__((target("avx512f"))) static double peak_avx512(long iters)
{
    __m512 x = _mm512_set1_ps(1.0f - 1e-7f), y = _mm512_set1_ps(1e-7f);
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    __m512 c6 = c0, c7 = c0, c8 = c0, c9 = c0, c10 = c0, c11 = c0;
    double t0 = cpu_now();
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_fmadd_ps(x, c0, y), c1 = _mm512_fmadd_ps(x, c1, y);
        c2 = _mm512_fmadd_ps(x, c2, y), c3 = _mm512_fmadd_ps(x, c3, y);
        c4 = _mm512_fmadd_ps(x, c4, y), c5 = _mm512_fmadd_ps(x, c5, y);
        c6 = _mm512_fmadd_ps(x, c6, y), c7 = _mm512_fmadd_ps(x, c7, y);
        c8 = _mm512_fmadd_ps(x, c8, y), c9 = _mm512_fmadd_ps(x, c9, y);
        c10 = _mm512_fmadd_ps(x, c10, y), c11 = _mm512_fmadd_ps(x, c11, y);
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5),
                         "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    double t = cpu_now() - t0;
    volatile float sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c5), c11));
    (void)sink;
    return (double)iters * 12 * 16 * 2 / t * 1e-9;
}
#endif

/* The same with scalar fused multiply-adds, where no SIMD is known. */
static double peak_scalar(long iters)
{
    volatile float seed = 1e-7f;
    float x = 1.0f - seed, y = seed, c[12] = {0};
    double t0 = cpu_now();
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++)
            c[j] = fmaf(x, c[j], y);
    double t = cpu_now() - t0;
    volatile float sink = c[0] + c[11];
    (void)sink;
    return (double)iters * 12 * 2 / t * 1e-9;
}

/* GFLOP/s of one thread: the best instruction set, the best of 'repeat'. */
static double peak_one_thread(int repeat, long iters)
{
    double best = 0;
    for (int r = 0; r < repeat; r++) {
        double g = 0;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
        if (agk_isa_supported(AGK_ISA_AVX512))
            g = peak_avx512(iters);
        if (agk_isa_supported(AGK_ISA_AVX2)) {
            double g2 = peak_avx2(iters);
            g = g2 > g ? g2 : g;
        }
#endif
        if (g == 0)
            g = peak_scalar(iters / 8);
        best = g > best ? g : best;
    }
    return best;
}

/* Our VMs share their cores: now and then another machine's work runs on
** the sibling of our vCPU, and for seconds at a time every FMA pipe gives
** us half its rate or less (the one-thread FMA peak fell from 102 to 70
** GFLOP/s on the Zen 3 VM, over and over, in session 10). A round timed in
** such a moment measures the neighbour, and whichever side it falls on
** loses 20-30%, more than any difference between the products. So before
** each side's one-thread round, probes of the FMA rate, 40 us each, run
** back to back until one comes within 4% of the peak measured at the start
** (long runs: a threshold from the best of the short probes themselves
** crept up with their noise until none passed), for up to a second. Not
** with sleeps between them: a core that has just slept runs its first FMAs
** at 70% of its rate. Both sides wait the same way. */
enum { QUIET_PROBE_ITERS = 20000, QUIET_MAX_PROBES = 25000 };
static double quiet_peak;     /* the one-thread FMA peak, GFLOP/s; 0: not yet known */
static long quiet_probes;     /* the probes that failed, for the summary line */
static long quiet_gave_up;    /* the rounds that waited the whole second */

static void wait_for_quiet_core(void)
{
    if (quiet_peak <= 0)
        return;
    for (int w = 0; w < QUIET_MAX_PROBES; w++) {
        if (peak_one_thread(1, QUIET_PROBE_ITERS) >= 0.96 * quiet_peak)
            return;
        quiet_probes++;
    }
    quiet_gave_up++;
}

/* The same wait for a two-thread round, with a probe on each of the pool's
** first two threads at once: a round on two threads is as slow as its
** slower core, and the neighbour takes one core at a time. Both probes
** must have run on different threads (a worker late to take its probe has
** it run by the caller, one after the other, which says nothing of its
** core). */
static double quiet_pair_peak;   /* each thread's FMA rate while both run; 0: not yet known */
static long quiet_pair_probes;   /* as quiet_probes, for two-thread rounds */
static long quiet_pair_gave_up;

typedef struct quiet_pair {
    double rate[2];
    int task[2];
} quiet_pair;

static void probe_on_task(void *ctx, int task, int64_t begin, int64_t end)
{
    quiet_pair *q = ctx;
    for (int64_t i = begin; i < end; i++) {
        q->rate[i] = peak_one_thread(1, QUIET_PROBE_ITERS);
        q->task[i] = task;
    }
}

static void wait_for_quiet_cores(ag_pool *pool)
{
    if (quiet_pair_peak <= 0)
        return;
    for (int w = 0; w < QUIET_MAX_PROBES; w++) {
        quiet_pair q = {.task = {-1, -1}};
        if (agk_pool_try_ranges(pool, 2, 2, probe_on_task, &q) && q.task[0] != q.task[1] &&
            q.rate[0] >= 0.96 * quiet_pair_peak && q.rate[1] >= 0.96 * quiet_pair_peak)
            return;
        quiet_pair_probes++;
    }
    quiet_pair_gave_up++;
}

typedef struct peak_arg {
    int repeat;
    long iters;
    double gflops;
} peak_arg;

static void *peak_thread(void *p)
{
    peak_arg *a = p;
    a->gflops = peak_one_thread(a->repeat, a->iters);
    return NULL;
}

/* The sum over 'n' threads running the microbenchmark at once. */
static double peak_threads(int n, int repeat, long iters)
{
    pthread_t th[16];
    peak_arg args[16];
    double sum = 0;
    n = n > 16 ? 16 : n;
    for (int i = 0; i < n; i++) {
        args[i] = (peak_arg){repeat, iters, 0};
        if (pthread_create(&th[i], NULL, peak_thread, &args[i]) != 0)
            return NAN;
    }
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        sum += args[i].gflops;
    }
    return sum;
}

/* ---------------------------------------------------------- products */

typedef struct mm_case {
    const char *name;
    int m, n, k;
    bool ta, tb;
} mm_case;

typedef struct mm_buffers {
    float *a, *b, *c_ours, *c_ref;
    void *scratch;
} mm_buffers;

/* What a peer keeps for one product between its rounds. */
typedef union peer_state {
#if BENCH_HAVE_LIBXSMM
    libxsmm_smmfunction xsmm;   /* the kernel it generated for this product */
#endif
    char none;
} peer_state;

static void fill(float *x, size_t n, unsigned seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15u + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
}

/* n zeroed floats, 64-byte aligned as the engine's tensors are: from
** malloc (16-byte aligned) each 64-byte load the kernel makes of a row of B
** read in place can straddle two cache lines, which OpenBLAS, packing
** every operand, never sees. */
static float *floats(size_t n)
{
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *x = aligned_alloc(64, bytes ? bytes : 64);
    if (x)
        memset(x, 0, bytes);
    return x;
}

static void run_ours(const mm_case *c, mm_buffers *buf, ag_pool *pool)
{
    agk_gemm(AG_F32, c->m, c->n, c->k, buf->a, c->ta ? c->m : c->k, c->ta, buf->b,
             c->tb ? c->k : c->n, c->tb, buf->c_ours, c->n, buf->scratch, pool);
}

/* ------------------------------------------------------------- peers */

/* A peer's sgemm on 'threads' threads; 'prepare' returns false when it
** does not take this product (then its column is empty), and may set up
** what it needs in *state. Every product prepared before a round runs on
** the same number of threads (OpenBLAS and BLIS keep the count globally). */
typedef struct peer {
    const char *name;
    bool (*prepare)(const mm_case *c, int threads, peer_state *state);
    void (*run)(const mm_case *c, mm_buffers *buf, const peer_state *state);
    bool spins;   /* its threads keep spinning after a threaded call */
} peer;

#if BENCH_HAVE_OPENBLAS
static bool openblas_prepare(const mm_case *c, int threads, peer_state *state)
{
    (void)c, (void)state;
    openblas_set_num_threads(threads);
    return true;
}

static void openblas_run(const mm_case *c, mm_buffers *buf, const peer_state *state)
{
    (void)state;
    cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans,
                c->tb ? CblasTrans : CblasNoTrans, c->m, c->n, c->k, 1.0f, buf->a,
                c->ta ? c->m : c->k, buf->b, c->tb ? c->k : c->n, 0.0f, buf->c_ref, c->n);
}
#endif

#if BENCH_HAVE_BLIS
static bool blis_prepare(const mm_case *c, int threads, peer_state *state)
{
    (void)c, (void)state;
    bli_thread_set_num_threads(threads);
    return true;
}

/* BLIS's own interface takes both strides of each operand: a transposed
** operand is the same memory with the strides swapped. */
static void blis_run(const mm_case *c, mm_buffers *buf, const peer_state *state)
{
    (void)state;
    float one = 1.0f, zero = 0.0f;
    inc_t lda = c->ta ? c->m : c->k, ldb = c->tb ? c->k : c->n;
    bli_sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, c->m, c->n, c->k, &one, buf->a,
              c->ta ? 1 : lda, c->ta ? lda : 1, buf->b, c->tb ? 1 : ldb, c->tb ? ldb : 1, &zero,
              buf->c_ref, c->n, 1);
}
#endif

#if BENCH_HAVE_LIBXSMM
/* libxsmm's generated kernels, for the untransposed products it generates
** (column-major: C^T = B^T A^T) on one thread. */
static bool libxsmm_prepare(const mm_case *c, int threads, peer_state *state)
{
    if (threads > 1 || c->ta || c->tb)
        return false;
    /* Its default beta is 1 (C +=): ours overwrites. */
    static const float one = 1.0f, zero = 0.0f;
    state->xsmm = libxsmm_smmdispatch(c->n, c->m, c->k, NULL, NULL, NULL, &one, &zero, NULL,
                                      NULL);
    return state->xsmm != NULL;
}

static void libxsmm_run(const mm_case *c, mm_buffers *buf, const peer_state *state)
{
    (void)c;
    state->xsmm(buf->b, buf->a, buf->c_ref);
}
#endif

static const peer peers[] = {
#if BENCH_HAVE_OPENBLAS
    {"openblas", openblas_prepare, openblas_run, true},
#endif
#if BENCH_HAVE_BLIS
    {"blis", blis_prepare, blis_run, true},
#endif
#if BENCH_HAVE_LIBXSMM
    {"libxsmm", libxsmm_prepare, libxsmm_run, false},
#endif
    {NULL, NULL, NULL, false},
};
enum { NPEERS = sizeof peers / sizeof peers[0] - 1, MAX_PEERS = 4 };

/* One product on one number of threads: its buffers, each side's best
** round so far, and then its rates. */
typedef struct mm_row {
    char name[96];
    mm_case c;
    int threads;
    ag_pool *pool;
    int rounds;                    /* how many rounds it gets; 0: it could not be set up */
    long reps;                     /* the calls one round times */
    mm_buffers buf;
    peer_state state[MAX_PEERS];
    bool takes[MAX_PEERS];
    double best_ours, best_ref[MAX_PEERS];   /* seconds a call, the best round's */
    double ours, ref[MAX_PEERS];   /* GFLOP/s, NaN where none */
    double agree[MAX_PEERS];       /* per peer, the largest difference from ours relative to
                                   ** the largest element */
} mm_row;

/* Sets up a row: buffers filled, each peer prepared, 'repeat' rounds (more
** for small products and for threads). */
static void row_open(mm_row *r, const bench_options *o, const char *name, mm_case c,
                     int threads, ag_pool *pool)
{
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->c = c;
    r->c.name = r->name;
    r->threads = threads;
    r->pool = pool;
    r->ours = NAN;
    for (int p = 0; p < MAX_PEERS; p++)
        r->ref[p] = r->agree[p] = NAN;
    double flop = 2.0 * c.m * c.n * c.k;
    r->reps = (long)(2e9 / flop) + 1;
    size_t na = (size_t)c.m * c.k, nb = (size_t)c.k * c.n, nc = (size_t)c.m * c.n;
    r->buf.a = floats(na);
    r->buf.b = floats(nb);
    r->buf.c_ours = floats(nc);
    r->buf.c_ref = floats(nc);
    r->buf.scratch = malloc(agk_gemm_scratch(AG_F32, c.m, c.n, c.k, c.ta, c.tb, pool));
    if (!r->buf.a || !r->buf.b || !r->buf.c_ours || !r->buf.c_ref || !r->buf.scratch)
        return;
    fill(r->buf.a, na, 1);
    fill(r->buf.b, nb, 2);
    r->best_ours = INFINITY;
    for (int p = 0; p < NPEERS; p++) {
        r->best_ref[p] = INFINITY;
        r->takes[p] = peers[p].prepare(&r->c, threads, &r->state[p]);
    }
    r->rounds = o->repeat;
    /* Two-thread rows take more rounds: on this shared VM one vCPU is now
    ** and then taken away for a few hundred milliseconds, and a round that
    ** falls in such a moment runs at one core's speed, ours or a peer's. */
    if (threads > 1 && r->rounds < 10)
        r->rounds = 10;
    /* A round of a small product is thousands of calls, and the two sides
    ** of 64^3 are within 1% of each other and of the FMA peak: three times
    ** the rounds make the best of them steadier. */
    if (flop < 1e8)
        r->rounds *= 3;
}

/* One round of a row: ours, then each peer, each timed over r->reps calls
** after an untimed one. The untimed call brings the operands back into the
** caches, which the other rows' rounds have since filled (from 1024^3 up a
** round is a single call, which would otherwise start from memory).
** With threads it also wakes the pool: the first call after the pauses
** between the sides ran 10-25% slower than the next ones (ours, 1024^3 on
** the 2-vCPU Zen 3 VM, 119-148 GFLOP/s against 151-170), which measured the
** machine waking up. The wait for quiet cores comes last on one thread,
** right before the clock starts; on two, the probes themselves wake the
** worker, and the warm-up call follows them. 'last': also check that each
** peer's product agrees with ours. */
static void row_round(mm_row *r, bool last)
{
    bool threaded = r->threads > 1;
    double (*now)(void) = threaded ? bench_now : cpu_now;
    if (threaded)
        wait_for_quiet_cores(r->pool);
    run_ours(&r->c, &r->buf, r->pool);
    if (!threaded)
        wait_for_quiet_core();
    double t0 = now();
    for (long i = 0; i < r->reps; i++)
        run_ours(&r->c, &r->buf, r->pool);
    double t = (now() - t0) / (double)r->reps;
    r->best_ours = t < r->best_ours ? t : r->best_ours;
    for (int p = 0; p < NPEERS; p++) {
        if (!r->takes[p])
            continue;
        /* The same courtesy the other way: our workers spin 1.7 ms
        ** (after the probes too). */
        if (threaded) {
            wait_for_quiet_cores(r->pool);
            nanosleep(&(struct timespec){.tv_nsec = 5000000}, NULL);
        }
        peers[p].run(&r->c, &r->buf, &r->state[p]);
        if (!threaded)
            wait_for_quiet_core();
        t0 = now();
        for (long i = 0; i < r->reps; i++)
            peers[p].run(&r->c, &r->buf, &r->state[p]);
        t = (now() - t0) / (double)r->reps;
        r->best_ref[p] = t < r->best_ref[p] ? t : r->best_ref[p];
        /* OpenBLAS's workers (and OpenMP's, BLIS's) spin for up to 100 ms
        ** after a threaded call; on two cores one would share a core with
        ** our worker in our next round. Let them go to sleep. */
        if (threaded && peers[p].spins)
            nanosleep(&(struct timespec){.tv_nsec = 300000000}, NULL);
        if (last) {
            size_t nc = (size_t)r->c.m * r->c.n;
            double diff = 0, scale = 0;
            for (size_t i = 0; i < nc; i++) {
                double d = fabs((double)r->buf.c_ours[i] - r->buf.c_ref[i]);
                diff = d > diff ? d : diff;
                scale = fabs(r->buf.c_ref[i]) > scale ? fabs(r->buf.c_ref[i]) : scale;
            }
            r->agree[p] = scale > 0 ? diff / scale : diff;
            memset(r->buf.c_ref, 0, nc * sizeof *r->buf.c_ref);
        }
    }
}

/* The rates from the best rounds; the buffers go back. */
static void row_close(mm_row *r)
{
    double flop = 2.0 * r->c.m * r->c.n * r->c.k;
    if (r->rounds > 0) {
        r->ours = flop / r->best_ours * 1e-9;
        for (int p = 0; p < NPEERS; p++)
            if (r->takes[p])
                r->ref[p] = flop / r->best_ref[p] * 1e-9;
    }
    free(r->buf.a);
    free(r->buf.b);
    free(r->buf.c_ours);
    free(r->buf.c_ref);
    free(r->buf.scratch);
    r->buf = (mm_buffers){0};
}

/* Every row's rounds, spread evenly over the whole phase: pass after pass,
** each row takes its next round when its share of the passes is due. The
** neighbour on our cores comes and goes for seconds at a time, longer than
** a row's rounds take one after another (a second or two): rows measured
** that way came out with every round of every side in one busy stretch
** (session 12: 768^3 at 0.925 of BLIS with every side at 69-77 GFLOP/s
** against its usual 90-94, in a run where it was 1.002 the time before).
** Spread over the minutes a phase takes, each row's best round falls in a
** quiet moment, as every other row's does. */
static void measure_rows(mm_row *rows, size_t n, const char *phase)
{
    int passes = 0;
    for (size_t i = 0; i < n; i++)
        passes = rows[i].rounds > passes ? rows[i].rounds : passes;
    for (int pass = 0; pass < passes; pass++) {
        for (size_t i = 0; i < n; i++) {
            long due = (long)(pass + 1) * rows[i].rounds / passes;
            if (due > (long)pass * rows[i].rounds / passes)
                row_round(&rows[i], due == rows[i].rounds);
        }
        fprintf(stderr, "bench: matmul, %s: pass %d of %d\n", phase, pass + 1, passes);
    }
    for (size_t i = 0; i < n; i++)
        row_close(&rows[i]);
}

/* The best peer's rate (NaN without one). */
static double best_peer(const mm_row *r)
{
    double best = NAN;
    for (int p = 0; p < NPEERS; p++)
        if (!isnan(r->ref[p]) && (isnan(best) || r->ref[p] > best))
            best = r->ref[p];
    return best;
}

/* Each peer's GFLOP/s, and any that disagrees with ours. */
static const char *peers_note(const mm_row *r, char *note, size_t len)
{
    if (NPEERS == 0)
        return "no BLAS peer (OpenBLAS, BLIS, libxsmm) found at build time";
    size_t at = 0;
    note[0] = 0;
    for (int p = 0; p < NPEERS && at < len; p++) {
        if (isnan(r->ref[p]))
            at += (size_t)snprintf(note + at, len - at, "%s%s -", at ? ", " : "", peers[p].name);
        else
            at += (size_t)snprintf(note + at, len - at, "%s%s %.1f%s", at ? ", " : "",
                                   peers[p].name, r->ref[p],
                                   r->agree[p] > 1e-4 ? " (DIFFERS by >1e-4)" : "");
    }
    return note;
}

/* A dense layer's three products at batch b: Y = X W, dX = G W^T, dW = X^T G.
** Returns the rows set up (3). */
static size_t mlp_layer(mm_row *rows, const bench_options *o, int b, int in, int out,
                        int threads, ag_pool *pool)
{
    static const char *const what[] = {"fwd  X W", "dX   G W^T", "dW   X^T G"};
    const mm_case cases[] = {{"", b, out, in, false, false},
                             {"", b, in, out, false, true},
                             {"", in, out, b, true, false}};
    for (int i = 0; i < 3; i++) {
        char name[96];
        snprintf(name, sizeof name, "mlp b%d %dx%d %s%s", b, in, out, what[i],
                 threads > 1 ? ", 2 threads" : "");
        row_open(&rows[i], o, name, cases[i], threads, pool);
    }
    return 3;
}

/* The square sizes' rows on 'threads' threads from 'from' up; returns how
** many, and in *big the index of 1024^3's. */
static size_t square_rows(mm_row *rows, const bench_options *o, const int *sz, size_t nsz,
                          int from, int threads, ag_pool *pool, size_t *big)
{
    size_t n = 0;
    for (size_t i = 0; i < nsz; i++) {
        if (sz[i] < from)
            continue;
        char name[96];
        snprintf(name, sizeof name, "sgemm %d^3, %d thread%s", sz[i], threads,
                 threads > 1 ? "s" : "");
        if (sz[i] == 1024)
            *big = n;
        row_open(&rows[n++], o, name, (mm_case){"", sz[i], sz[i], sz[i], false, false},
                 threads, pool);
    }
    return n;
}

enum { MAX_ROWS = 32 };

void bench_matmul(bench_table *t, const bench_options *o)
{
    long iters = o->quick ? PEAK_ITERS / 10 : PEAK_ITERS;
    static const int quick_sizes[] = {64, 256, 1024};
    static const int sizes[] = {64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048};
    const int *sz = o->quick ? quick_sizes : sizes;
    size_t nsz = o->quick ? 3 : sizeof sizes / sizeof sizes[0];
    static mm_row one[MAX_ROWS], two[MAX_ROWS];
    size_t n1 = 0, n2 = 0, big1 = 0, big2 = 0;

    /* One thread first, every size and shape, then two: OpenBLAS's threads
    ** keep spinning a while after a threaded call, which would slow the
    ** single-threaded rows measured next. The peak is measured before and
    ** after, and the best kept: a busy moment of a shared machine would
    ** otherwise lower it. */
    double peak1 = peak_one_thread(o->repeat, iters);
    quiet_peak = peak1;
    n1 = square_rows(one, o, sz, nsz, 0, 1, NULL, &big1);
    /* The MLP 784-256-128-10 at batch 64 and 256. */
    static const int layers[][2] = {{784, 256}, {256, 128}, {128, 10}};
    static const int batches[] = {64, 256};
    for (size_t bi = 0; bi < 2; bi++)
        for (size_t l = 0; l < 3; l++)
            n1 += mlp_layer(one + n1, o, batches[bi], layers[l][0], layers[l][1], 1, NULL);
    measure_rows(one, n1, "one thread");
    double again = peak_one_thread(o->repeat, iters);
    peak1 = again > peak1 ? again : peak1;

    double peak2 = peak_threads(2, o->repeat, iters);
    quiet_pair_peak = peak2 / 2;
    ag_pool *pool2 = ag_pool_new(2);
    n2 = square_rows(two, o, sz, nsz, 256, 2, pool2, &big2);
    /* Batch 256's two big layers, which a two-thread training step splits. */
    for (size_t l = 0; l < 2; l++)
        n2 += mlp_layer(two + n2, o, 256, layers[l][0], layers[l][1], 2, pool2);
    measure_rows(two, n2, "two threads");
    ag_pool_free(pool2);
    again = peak_threads(2, o->repeat, iters);
    peak2 = again > peak2 ? again : peak2;

    /* Which kernel ran, on which CPU, with which blocks: the figures mean
    ** little without them. */
    agk_cpu cpu;
    agk_cpu_read(&cpu);
    int64_t blk[5];
    agk_gemm_blocking(agk_gemm_kernel_chosen(), AG_F32, blk);
    fprintf(stderr,
            "bench: matmul on %s (L1d %zu KB, L2 %zu KB, L3 %zu KB a core): kernel %s, f32 tile "
            "%lldx%lld, mc %lld kc %lld nc %lld; fma peak %.1f GFLOP/s; %ld probes of 40 us "
            "failed waiting for a quiet core, %ld rounds ran after a second of them; %ld "
            "failed waiting for two, %ld two-thread rounds ran after a second\n",
            cpu.brand[0] ? cpu.brand : "an unnamed CPU", cpu.l1d >> 10, cpu.l2 >> 10,
            cpu.l3_per_core >> 10, ag_gemm_kernel(), (long long)blk[0], (long long)blk[1],
            (long long)blk[2], (long long)blk[3], (long long)blk[4], peak1, quiet_probes,
            quiet_gave_up, quiet_pair_probes, quiet_pair_gave_up);
    char note[160];
    snprintf(note, sizeof note, "our microbenchmark; kernel %s on %.60s", ag_gemm_kernel(),
             cpu.brand[0] ? cpu.brand : "an unnamed CPU");
    bench_add(t, "fma peak f32, 1 thread", peak1, NAN, "GFLOP/s", BENCH_HIGHER_IS_BETTER, note);
    bench_add(t, "fma peak f32, 2 threads", peak2, NAN, "GFLOP/s", BENCH_HIGHER_IS_BETTER,
              "two copies at once");
    char pn[160];
    const mm_row *b1 = &one[big1], *b2 = &two[big2];
    bench_add(t, "sgemm 1024^3, share of fma peak, 1 thread", 100 * b1->ours / peak1,
              100 * best_peer(b1) / peak1, "%", BENCH_HIGHER_IS_BETTER,
              peers_note(b1, pn, sizeof pn));
    bench_add(t, "sgemm 1024^3, share of fma peak, 2 threads", 100 * b2->ours / peak2,
              100 * best_peer(b2) / peak2, "%", BENCH_HIGHER_IS_BETTER,
              peers_note(b2, pn, sizeof pn));
    bench_add(t, "sgemm 1024^3, speedup of 2 threads over 1", b2->ours / b1->ours,
              best_peer(b2) / best_peer(b1), "x", BENCH_HIGHER_IS_BETTER,
              "reference: the best peer's");
    for (size_t i = 0; i < n1 + n2; i++) {
        const mm_row *r = i < n1 ? &one[i] : &two[i - n1];
        bench_add(t, r->name, r->ours, best_peer(r), "GFLOP/s", BENCH_HIGHER_IS_BETTER,
                  peers_note(r, pn, sizeof pn));
    }
}
