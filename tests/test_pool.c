/*
** test_pool.c: the thread pool (autograd/kernels/pool.c): every task runs
** exactly once, jobs in quick succession, a busy pool refuses instead of
** deadlocking, the allocator hook sees every byte back, and matrix products
** on a tape give the same bits with 1, 2 and 3 threads, also from two tapes
** on two threads sharing one pool.
*/
#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE   /* syscall, tgkill */

#include "alloc_hooks.h"
#include "kernels/kernels.h"

#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

Test(pool, sizes)
{
    cr_assert_null(ag_pool_new(-1));
    cr_assert_eq(ag_pool_size(NULL), 1);
    cr_assert_eq(agk_pool_threads(NULL), 1);
    ag_pool *one = ag_pool_new(1), *three = ag_pool_new(3), *cores = ag_pool_new(0);
    cr_assert(one && three && cores);
    cr_assert_eq(ag_pool_size(one), 1);
    cr_assert_eq(ag_pool_size(three), 3);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    cr_assert_eq(ag_pool_size(cores), online < 1 ? 1 : (int)online);
    ag_pool_free(one);
    ag_pool_free(three);
    ag_pool_free(cores);
    ag_pool_free(NULL);
}

typedef struct counts {
    atomic_int hits[64];
} counts;

static void count_task(void *ctx, int task)
{
    counts *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
}

Test(pool, every_task_runs_once)
{
    for (int threads = 2; threads <= 4; threads++) {
        ag_pool *p = ag_pool_new(threads);
        cr_assert(p);
        for (int ntasks = 1; ntasks <= 64; ntasks++) {
            counts c;
            for (int i = 0; i < 64; i++)
                atomic_init(&c.hits[i], 0);
            cr_assert(agk_pool_try_run(p, ntasks, count_task, &c));
            for (int i = 0; i < 64; i++)
                cr_assert_eq(atomic_load(&c.hits[i]), i < ntasks ? 1 : 0,
                             "%d threads, %d tasks: task %d ran %d times", threads, ntasks, i,
                             atomic_load(&c.hits[i]));
        }
        ag_pool_free(p);
    }
}

/* Thousands of short jobs back to back: no lost wake-up, no early return. */
Test(pool, many_jobs_in_a_row)
{
    ag_pool *p = ag_pool_new(3);
    cr_assert(p);
    counts c;
    for (int i = 0; i < 64; i++)
        atomic_init(&c.hits[i], 0);
    for (int job = 0; job < 5000; job++)
        cr_assert(agk_pool_try_run(p, 1 + job % 7, count_task, &c));
    int total = 0;
    for (int i = 0; i < 64; i++)
        total += atomic_load(&c.hits[i]);
    /* Jobs of 1..7 tasks, cycling: 5000 = 714 whole cycles (28 tasks each)
    ** plus jobs of 1 and 2 tasks. */
    cr_assert_eq(total, 714 * 28 + 1 + 2);
    ag_pool_free(p);
}

/* Workers asleep between jobs wake for the next one. */
Test(pool, jobs_after_idle_sleep)
{
    ag_pool *p = ag_pool_new(2);
    cr_assert(p);
    for (int round = 0; round < 3; round++) {
        nanosleep(&(struct timespec){0, 20000000}, NULL);   /* past the spin: workers sleep */
        counts c;
        for (int i = 0; i < 64; i++)
            atomic_init(&c.hits[i], 0);
        cr_assert(agk_pool_try_run(p, 8, count_task, &c));
        for (int i = 0; i < 8; i++)
            cr_assert_eq(atomic_load(&c.hits[i]), 1);
    }
    ag_pool_free(p);
}

Test(pool, no_workers_means_caller_runs)
{
    ag_pool *p = ag_pool_new(1);
    counts c;
    atomic_init(&c.hits[0], 0);
    cr_assert_not(agk_pool_try_run(p, 4, count_task, &c));
    cr_assert_not(agk_pool_try_run(NULL, 4, count_task, &c));
    cr_assert_eq(atomic_load(&c.hits[0]), 0, "a refused job runs nothing");
    ag_pool_free(p);
}

typedef struct nested {
    ag_pool *pool;
    atomic_int refused, ran;
} nested;

static void inner_task(void *ctx, int task)
{
    (void)task;
    nested *n = ctx;
    atomic_fetch_add(&n->ran, 1);
}

static void outer_task(void *ctx, int task)
{
    (void)task;
    nested *n = ctx;
    if (!agk_pool_try_run(n->pool, 3, inner_task, n))
        atomic_fetch_add(&n->refused, 1);
}

/* A task that asks its own pool for help is refused (the pool is busy) and
** must run its work itself, rather than deadlock. */
Test(pool, nested_job_is_refused)
{
    nested n = {.pool = ag_pool_new(2)};
    atomic_init(&n.refused, 0);
    atomic_init(&n.ran, 0);
    cr_assert(agk_pool_try_run(n.pool, 4, outer_task, &n));
    cr_assert_eq(atomic_load(&n.refused), 4);
    cr_assert_eq(atomic_load(&n.ran), 0);
    ag_pool_free(n.pool);
}

Test(pool, allocator_hook_sees_everything_back)
{
    alloc_hooks h = hooks_counting();
    ag_pool *p = ag_pool_new_alloc(hook_alloc, &h, 3);
    cr_assert(p);
    cr_assert_gt(h.live, 0);
    ag_pool_free(p);
    cr_assert_eq(h.live, 0);
    cr_assert_eq(h.bad_osize, 0);
    /* Refusing each allocation in turn gives NULL and leaks nothing. */
    for (long n = 1; n <= 2; n++) {
        alloc_hooks f = hooks_failing_at(n);
        cr_assert_null(ag_pool_new_alloc(hook_alloc, &f, 3));
        cr_assert_eq(f.live, 0);
    }
}

Test(pool, tape_keeps_its_pool_across_reset)
{
    ag_pool *p = ag_pool_new(2);
    ag_tape *t = ag_tape_new();
    cr_assert_null(ag_tape_pool(t));
    cr_assert_null(ag_tape_pool(NULL));
    ag_tape_set_pool(t, p);
    cr_assert_eq(ag_tape_pool(t), p);
    ag_tape_reset(t);
    cr_assert_eq(ag_tape_pool(t), p);
    ag_tape_set_pool(t, NULL);
    cr_assert_null(ag_tape_pool(t));
    ag_tape_set_pool(NULL, p);   /* no-op */
    ag_tape_free(t);
    ag_pool_free(p);
}

/* One training-like step on a tape, with products big enough to be split:
** y = tanh(x W1) W2, loss = sum(y^2); copies the loss, both weight
** gradients and y out. Returns false on any failure (no assert: it also
** runs on threads of its own). */
typedef struct step_out {
    double loss;
    float gw1[96 * 100], gw2[100 * 70], y[400 * 70];
} step_out;

static bool step(ag_pool *pool, step_out *out)
{
    ag_rng r;
    ag_rng_seed(&r, 42);
    ag_tensor *w1 = ag_param_new(AG_F32, 2, (int64_t[]){96, 100});
    ag_tensor *w2 = ag_param_new(AG_F32, 2, (int64_t[]){100, 70});
    ag_tape *t = ag_tape_new();
    bool ok = w1 && w2 && t;
    if (ok) {
        ag_fill_normal(w1, &r, 0, 0.1);
        ag_fill_normal(w2, &r, 0, 0.1);
        ag_tape_set_pool(t, pool);
        ag_tensor *x = ag_randn(t, &r, AG_F32, 2, (int64_t[]){400, 96}, 0, 1);
        ag_tensor *y = ag_matmul(t, ag_tanh(t, ag_matmul(t, x, w1)), w2);
        ag_tensor *loss = ag_sum(t, ag_mul(t, y, y));
        ag_backward(t, loss);
        ok = ag_tape_status(t) == AG_OK;
        if (ok) {
            out->loss = ag_item(loss);
            memcpy(out->gw1, ag_data(ag_grad(w1)), sizeof out->gw1);
            memcpy(out->gw2, ag_data(ag_grad(w2)), sizeof out->gw2);
            memcpy(out->y, ag_data(y), sizeof out->y);
        }
    }
    ag_tape_free(t);
    ag_param_free(w1);
    ag_param_free(w2);
    return ok;
}

Test(pool, matmul_on_a_tape_is_bitwise_identical_for_any_thread_count)
{
    static step_out one, two, three;
    ag_pool *p2 = ag_pool_new(2), *p3 = ag_pool_new(3);
    cr_assert(step(NULL, &one) && step(p2, &two) && step(p3, &three));
    cr_assert(one.loss > 0);
    cr_assert(memcmp(&one, &two, sizeof one) == 0, "2 threads changed the bits");
    cr_assert(memcmp(&one, &three, sizeof one) == 0, "3 threads changed the bits");
    ag_pool_free(p2);
    ag_pool_free(p3);
}

typedef struct shared_run {
    ag_pool *pool;
    const step_out *want;
    int mismatches;
} shared_run;

static void *run_steps(void *arg)
{
    shared_run *s = arg;
    static _Thread_local step_out got;
    for (int i = 0; i < 5; i++)
        s->mismatches += !step(s->pool, &got) || memcmp(&got, s->want, sizeof got) != 0;
    return NULL;
}

/* Two tapes on two threads, one pool: whichever finds it busy computes
** alone, and both get the single-threaded bits. */
Test(pool, two_tapes_share_one_pool)
{
    static step_out want;
    cr_assert(step(NULL, &want));
    ag_pool *p = ag_pool_new(2);
    shared_run a = {p, &want, 0}, b = {p, &want, 0};
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, run_steps, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, run_steps, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert_eq(a.mismatches + b.mismatches, 0);
    ag_pool_free(p);
}

/* ------------------------------------------------- reductions on the pool */

/* Reductions of x [rows, cols] (f32, values in [-1, 1)) on a tape with
** 'pool': the whole sum, the max, and sums along each axis. */
typedef struct reductions {
    double sum, max;
    float row_sums[300], col_sums[500];
} reductions;

static void reduce_all(ag_pool *pool, bool nan_late, reductions *r)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_pool(t, pool);
    ag_rng g;
    ag_rng_seed(&g, 5);
    ag_tensor *x = ag_zeros(t, AG_F32, 2, (int64_t[]){300, 500});
    ag_fill_uniform(x, &g, -1, 1);
    if (nan_late)
        ag_set(x, 300 * 500 - 7, NAN);   /* in the last chunk of the whole max */
    r->sum = ag_item(ag_sum(t, x));
    r->max = ag_item(ag_max(t, x));
    memcpy(r->row_sums, ag_data(ag_sum_axis(t, x, 1, 0)), sizeof r->row_sums);
    memcpy(r->col_sums, ag_data(ag_sum_axis(t, x, 0, 0)), sizeof r->col_sums);
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    ag_tape_free(t);
}

Test(pool, reductions_are_bitwise_identical_for_any_thread_count)
{
    static reductions one, two, three;
    ag_pool *p2 = ag_pool_new(2), *p3 = ag_pool_new(3);
    reduce_all(NULL, false, &one);
    reduce_all(p2, false, &two);
    reduce_all(p3, false, &three);
    cr_expect(memcmp(&one, &two, sizeof one) == 0, "2 threads changed the bits");
    cr_expect(memcmp(&one, &three, sizeof one) == 0, "3 threads changed the bits");
    /* The values themselves, against a plain double loop over the same data. */
    ag_tape *t = ag_tape_new();
    ag_rng g;
    ag_rng_seed(&g, 5);
    ag_tensor *x = ag_zeros(t, AG_F32, 2, (int64_t[]){300, 500});
    ag_fill_uniform(x, &g, -1, 1);
    double sum = 0, max = -INFINITY, col0 = 0;
    for (int64_t i = 0; i < ag_numel(x); i++) {
        sum += ag_get(x, i);
        max = fmax(max, ag_get(x, i));
    }
    for (int i = 0; i < 300; i++)
        col0 += ag_get(x, i * 500);
    cr_expect_float_eq(one.sum, sum, 1e-3, "sum %.9g, want %.9g", one.sum, sum);
    cr_expect_eq(one.max, max);
    cr_expect_float_eq(one.col_sums[0], col0, 1e-4);
    ag_tape_free(t);
    /* A NaN anywhere wins, whichever chunk holds it. */
    reduce_all(p2, true, &two);
    cr_expect(isnan(two.max));
    cr_expect(isnan(two.sum));
    ag_pool_free(p2);
    ag_pool_free(p3);
}

/* ------------------------------------------- elementwise ops on the pool */

enum { EW_N = 200000 };   /* above the size where elementwise ops use the pool */

/* loss = sum(tanh(x) * y - exp(-x) / (y + 3) + relu(x) ^ 2), forward and raw
** backward of large f32 tensors on a tape with 'pool': the values of one
** intermediate and both gradients. */
static void elementwise_run(ag_pool *pool, float *value, float *gx, float *gy)
{
    ag_tape *t = ag_tape_new();
    ag_tape_set_pool(t, pool);
    ag_rng g;
    ag_rng_seed(&g, 9);
    ag_tensor *x = ag_zeros(t, AG_F32, 1, (int64_t[]){EW_N});
    ag_tensor *y = ag_zeros(t, AG_F32, 1, (int64_t[]){EW_N});
    ag_fill_uniform(x, &g, -2, 2);
    ag_fill_uniform(y, &g, 0, 1);
    ag_requires_grad(x);
    ag_requires_grad(y);
    ag_tensor *a = ag_mul(t, ag_tanh(t, x), y);
    ag_tensor *b = ag_div(t, ag_exp(t, ag_neg(t, x)), ag_add_scalar(t, y, 3));
    ag_tensor *c = ag_pow_scalar(t, ag_relu(t, x), 2);
    ag_tensor *v = ag_add(t, ag_sub(t, a, b), c);
    ag_backward(t, ag_sum(t, v));
    cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
    memcpy(value, ag_data(v), EW_N * sizeof *value);
    memcpy(gx, ag_data(ag_grad(x)), EW_N * sizeof *gx);
    memcpy(gy, ag_data(ag_grad(y)), EW_N * sizeof *gy);
    ag_tape_free(t);
}

Test(pool, elementwise_ops_are_bitwise_identical_for_any_thread_count)
{
    static float v1[EW_N], x1[EW_N], y1[EW_N], v2[EW_N], x2[EW_N], y2[EW_N];
    ag_pool *p2 = ag_pool_new(2), *p3 = ag_pool_new(3);
    elementwise_run(NULL, v1, x1, y1);
    for (int k = 0; k < 2; k++) {
        elementwise_run(k ? p3 : p2, v2, x2, y2);
        cr_expect(memcmp(v1, v2, sizeof v1) == 0, "%d threads changed the values", k + 2);
        cr_expect(memcmp(x1, x2, sizeof x1) == 0, "%d threads changed dL/dx", k + 2);
        cr_expect(memcmp(y1, y2, sizeof y1) == 0, "%d threads changed dL/dy", k + 2);
    }
    /* And the values are right: element 0 by hand. */
    ag_rng g;
    ag_rng_seed(&g, 9);
    ag_tape *t = ag_tape_new();
    ag_tensor *x = ag_zeros(t, AG_F32, 1, (int64_t[]){EW_N});
    ag_tensor *y = ag_zeros(t, AG_F32, 1, (int64_t[]){EW_N});
    ag_fill_uniform(x, &g, -2, 2);
    ag_fill_uniform(y, &g, 0, 1);
    double x0 = ag_get(x, 0), y0 = ag_get(y, 0), r = x0 > 0 ? x0 : 0;
    double want = tanh(x0) * y0 - exp(-x0) / (y0 + 3) + r * r;
    double want_gx = (1 - tanh(x0) * tanh(x0)) * y0 + exp(-x0) / (y0 + 3) + 2 * r;
    cr_expect_float_eq(v1[0], want, 1e-5, "value %.9g, want %.9g", v1[0], want);
    cr_expect_float_eq(x1[0], want_gx, 1e-5, "dL/dx %.9g, want %.9g", x1[0], want_gx);
    ag_tape_free(t);
    ag_pool_free(p2);
    ag_pool_free(p3);
}

/* ------------------------------------------------------------ ag_pool_for */

typedef struct cover {
    atomic_int hits[1000];
    atomic_int calls;
} cover;

static void mark(void *ctx, int64_t begin, int64_t end)
{
    cover *c = ctx;
    atomic_fetch_add(&c->calls, 1);
    for (int64_t i = begin; i < end; i++)
        atomic_fetch_add(&c->hits[i], 1);
}

static void expect_covered_once(const cover *c, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(atomic_load(&c->hits[i]), 1, "item %lld ran %d times", (long long)i,
                     atomic_load(&c->hits[i]));
}

Test(pool, pool_for_runs_every_item_once)
{
    ag_pool *p3 = ag_pool_new(3);
    static cover c;
    for (int64_t n = 1; n <= 1000; n += 333) {
        for (int64_t grain = 0; grain <= 400; grain += 100) {
            memset(&c, 0, sizeof c);
            ag_pool_for(p3, n, grain, mark, &c);
            expect_covered_once(&c, n);
            /* min(3, n / grain) threads, each a share of at most 8 ranges. */
            int64_t g = grain < 1 ? 1 : grain;
            int threads = (int)(n / g < 3 ? n / g : 3);
            cr_expect_leq(atomic_load(&c.calls), threads < 2 ? 1 : 8 * threads,
                          "n %lld grain %lld: %d ranges", (long long)n, (long long)grain,
                          atomic_load(&c.calls));
        }
    }
    memset(&c, 0, sizeof c);
    ag_pool_for(NULL, 10, 1, mark, &c);   /* no pool: one call on this thread */
    expect_covered_once(&c, 10);
    cr_expect_eq(atomic_load(&c.calls), 1);
    memset(&c, 0, sizeof c);
    ag_pool_for(p3, 0, 1, mark, &c);      /* nothing to do */
    ag_pool_for(p3, -5, 1, mark, &c);
    ag_pool_for(p3, 10, 1, NULL, &c);     /* no function: nothing, no crash */
    cr_expect_eq(atomic_load(&c.calls), 0);
    ag_pool_free(p3);
}

/* The second half of the items is slow (each range sleeps): the caller,
** done with its quick half, must take some of the worker's ranges (or, if
** the caller was kept off the CPU meanwhile, the worker some of the
** caller's), and every item must still run once. */
typedef struct uneven {
    cover c;
    pthread_t caller;
    atomic_int taken;   /* ranges run by the thread whose share they are not */
} uneven;

static void slow_second_half(void *ctx, int64_t begin, int64_t end)
{
    uneven *u = ctx;
    bool on_caller = pthread_equal(pthread_self(), u->caller);
    if (begin >= 500)
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    if ((begin >= 500) == on_caller)
        atomic_fetch_add(&u->taken, 1);
    mark(&u->c, begin, end);
}

Test(pool, pool_for_idle_thread_takes_waiting_ranges)
{
    ag_pool *p2 = ag_pool_new(2);
    cr_assert(p2);
    static uneven u;
    memset(&u, 0, sizeof u);
    u.caller = pthread_self();
    ag_pool_for(p2, 1000, 1, slow_second_half, &u);
    expect_covered_once(&u.c, 1000);
    cr_expect_gt(atomic_load(&u.taken), 0, "no thread ran a range of the other's share");
    ag_pool_free(p2);
}

/* agk_pool_try_ranges (the matrix product's slices): every item once, each
** range told a task below 'tasks' that no other range is running at the
** same moment (its buffers are that task's), and a thread done with its
** share takes ranges waiting in the other's. */
typedef struct task_ranges {
    cover c;
    atomic_int running[4];   /* ranges now running per task */
    atomic_int clashes, bad_task, taken;
    pthread_t caller;
} task_ranges;

static void mark_task(void *ctx, int task, int64_t begin, int64_t end)
{
    task_ranges *r = ctx;
    if (task < 0 || task >= 4) {
        atomic_fetch_add(&r->bad_task, 1);
        return;
    }
    if (atomic_fetch_add(&r->running[task], 1) != 0)
        atomic_fetch_add(&r->clashes, 1);
    bool on_caller = pthread_equal(pthread_self(), r->caller);
    if (begin >= 500)
        nanosleep(&(struct timespec){0, 2000000}, NULL);
    if ((begin >= 500) == on_caller)
        atomic_fetch_add(&r->taken, 1);
    mark(&r->c, begin, end);
    atomic_fetch_sub(&r->running[task], 1);
}

Test(pool, try_ranges_tells_each_range_its_task)
{
    ag_pool *p2 = ag_pool_new(2), *p3 = ag_pool_new(3);
    cr_assert(p2 && p3);
    static task_ranges r;
    memset(&r, 0, sizeof r);
    r.caller = pthread_self();
    cr_assert(agk_pool_try_ranges(p2, 2, 1000, mark_task, &r));
    expect_covered_once(&r.c, 1000);
    cr_expect_eq(atomic_load(&r.clashes), 0);
    cr_expect_eq(atomic_load(&r.bad_task), 0);
    cr_expect_gt(atomic_load(&r.taken), 0, "no thread ran a range of the other's share");
    for (int64_t n = 1; n <= 40; n += 13) {
        memset(&r, 0, sizeof r);
        r.caller = pthread_self();
        cr_assert(agk_pool_try_ranges(p3, 3, n, mark_task, &r));
        expect_covered_once(&r.c, n);
        cr_expect_eq(atomic_load(&r.clashes), 0);
        cr_expect_eq(atomic_load(&r.bad_task), 0);
    }
    /* No pool, nothing to do, no tasks: refused, nothing run. */
    memset(&r, 0, sizeof r);
    cr_expect_not(agk_pool_try_ranges(NULL, 2, 10, mark_task, &r));
    cr_expect_not(agk_pool_try_ranges(p2, 2, 0, mark_task, &r));
    cr_expect_not(agk_pool_try_ranges(p2, 0, 10, mark_task, &r));
    cr_expect_eq(atomic_load(&r.c.calls), 0);
    ag_pool_free(p2);
    ag_pool_free(p3);
}

/* A worker that never gets a core, made so: a signal whose handler blocks
** on a pipe until the test lets it go. The worker is found as the thread
** that ag_pool_new added to /proc/self/task. */
static int freeze_pipe[2];
static atomic_int frozen;   /* lock-free, so usable in the handler */

static void freeze_handler(int sig)
{
    (void)sig;
    char c;
    atomic_store(&frozen, 1);
    while (read(freeze_pipe[0], &c, 1) < 0 && errno == EINTR)
        ;
    atomic_store(&frozen, 0);
}

/* The thread ids of this process, as many as fit; returns the count. */
static int thread_ids(pid_t *ids, int max)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) && n < max;)
        if (e->d_name[0] != '.')
            ids[n++] = (pid_t)atoi(e->d_name);
    if (d)
        closedir(d);
    return n;
}

/* Before the pool stopped waiting for workers that had not started a job,
** this test hung: the caller waited for the frozen worker's tasks. Now the
** caller runs them and returns, and the worker, let go, finds the job done. */
Test(pool, a_job_never_waits_for_a_worker_without_a_core)
{
    pid_t before[64], after[64], worker = 0;
    int nb = thread_ids(before, 64);
    ag_pool *p = ag_pool_new(2);
    cr_assert(p);
    int na = thread_ids(after, 64);
    for (int i = 0; i < na && !worker; i++) {
        bool old = false;
        for (int k = 0; k < nb; k++)
            old = old || after[i] == before[k];
        if (!old)
            worker = after[i];
    }
    cr_assert_neq(worker, 0, "the pool's worker thread was not found");
    cr_assert_eq(pipe(freeze_pipe), 0);
    struct sigaction sa = {.sa_handler = freeze_handler};
    sigemptyset(&sa.sa_mask);
    cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
    cr_assert_eq(syscall(SYS_tgkill, getpid(), worker, SIGUSR1), 0);
    while (!atomic_load(&frozen))
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    for (int job = 0; job < 50; job++) {
        counts c;
        for (int i = 0; i < 64; i++)
            atomic_init(&c.hits[i], 0);
        cr_assert(agk_pool_try_run(p, 1 + job % 9, count_task, &c));
        for (int i = 0; i < 64; i++)
            cr_assert_eq(atomic_load(&c.hits[i]), i < 1 + job % 9 ? 1 : 0, "job %d, task %d", job, i);
    }
    cr_assert_eq(atomic_load(&frozen), 1);   /* the jobs ran without it */
    cr_assert_eq(write(freeze_pipe[1], "g", 1), 1);
    /* Let go, it takes part in jobs again (the caller may still take all). */
    for (int job = 0; job < 50; job++) {
        counts c;
        for (int i = 0; i < 64; i++)
            atomic_init(&c.hits[i], 0);
        cr_assert(agk_pool_try_run(p, 8, count_task, &c));
        for (int i = 0; i < 8; i++)
            cr_assert_eq(atomic_load(&c.hits[i]), 1);
    }
    ag_pool_free(p);
    signal(SIGUSR1, SIG_DFL);
    close(freeze_pipe[0]);
    close(freeze_pipe[1]);
}

static void *spin_until(void *arg)
{
    atomic_bool *stop = arg;
    while (!atomic_load_explicit(stop, memory_order_relaxed))
        ;
    return NULL;
}

/* More threads than cores (four per online core, and two threads spinning
** beside them, as other processes would): the steps finish, with the bits
** of one thread. No time is asserted; before the fix every job waited for
** descheduled workers and this took minutes on two cores. */
Test(pool, more_threads_than_cores_finish_with_the_same_bits)
{
    static step_out want, got;
    cr_assert(step(NULL, &want));
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = cores < 1 ? 4 : cores > 8 ? 33 : 4 * (int)cores + 1;
    ag_pool *p = ag_pool_new(threads);
    cr_assert(p);
    atomic_bool stop;
    atomic_init(&stop, false);
    pthread_t spinners[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&spinners[i], NULL, spin_until, &stop), 0);
    int mismatches = 0;
    for (int i = 0; i < 20; i++)
        mismatches += !step(p, &got) || memcmp(&got, &want, sizeof got) != 0;
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(spinners[i], NULL);
    ag_pool_free(p);
    cr_assert_eq(mismatches, 0, "%d of 20 steps on %d threads differ from one thread's", mismatches,
                 threads);
}
