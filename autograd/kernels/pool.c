/*
** pool.c: a small pool of persistent worker threads (pthreads) and the
** tape's link to it. A job is a number of tasks dealt out in turn: the
** calling thread runs tasks 0, n, 2n, ..., worker k tasks k, k + n, ... for
** n threads; the caller returns when all are done. Waiting threads spin
** briefly, since ops come in bursts, yielding the core while they do, then
** sleep on a condition variable.
**
** The tasks are dealt, not taken from a shared counter: with a counter, a
** caller whose worker was slow to wake took every task itself, the worker
** found none, went back to sleep before the next job, and the pool stayed
** at one thread's speed from then on (seen on the VM: 2-thread products at
** half speed after any pause longer than the spin). ag_pool_for's jobs,
** whose work can be uneven, and the matrix product's
** (agk_pool_try_ranges), let a thread that is done take ranges left in
** another's share (see range_job): a worker that wakes late, or is
** descheduled, costs no more than its unstarted ranges run by the others.
**
** A job never waits for a worker that has not started it. Each worker's
** dealt tasks are claimed one by one from a counter of its own, and the
** caller, done with its share, claims what a worker has not: then it closes
** the job and waits only for the workers inside it (counted in 'active'),
** which are running. A worker that comes late finds the job closed and
** goes back to waiting. Before this, with more threads than cores (two
** busy processes beside a 2-thread training), every job waited for a
** descheduled worker to be given a core again: fashion_mnist's epoch on
** 4000 images took 22 s on 2 threads, 3 s on one (2.6 s on 2 threads now;
** docs/PERFORMANCE.md, "Threads").
*/
#define _POSIX_C_SOURCE 200809L

#include "../internal.h"
#include "kernels.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

/* How long a waiting thread polls before it sleeps: 1.7 ms, longer than the
** serial stretches of a training step, so workers stay awake through one.
** With 0.1 ms a worker slept and was woken about twice per step of the
** 784-256-128-10 MLP at batch 256, and each wake-up cost up to half a
** millisecond on the VM: the two-thread step took 2.6 ms instead of 1.6.
** After the first SPIN_PAUSE_NS of it, the thread yields the core every
** 64 polls, some 2 us (sched_yield returns at once when no other thread
** wants it), so a spinning thread does not keep a descheduled one, or
** another process, from running when there are more threads than cores. */
enum { MAX_THREADS = 256 };
#define SPIN_NS 1700000L
#define SPIN_PAUSE_NS 50000L

typedef struct agk_worker {
    pthread_t thread;
    ag_pool *pool;
    int index;               /* 1..started: its first task */
    /* Its next dealt task, as a count of tasks taken from its sequence
    ** index, index + threads, ...; the caller takes from it too. Alone on
    ** its cache line so that workers do not share one. */
    _Alignas(64) atomic_int taken;
    char pad[64 - sizeof(atomic_int)];
} agk_worker;

struct ag_pool {
    ag_alloc_fn alloc;
    void *alloc_ud;
    int nthreads;            /* counting the caller */
    int started;             /* workers running */
    agk_worker *workers;
    void *workers_block;     /* as allocated: 'workers' is its first 64-byte boundary */
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* workers sleep here between jobs */
    pthread_cond_t done;     /* the caller sleeps here until the last worker ends */
    int sleepers;            /* workers waiting on 'wake'; under 'lock' */
    atomic_bool busy;        /* a job is running: one at a time */
    atomic_bool stop;
    atomic_uint generation;  /* bumped per job; workers compare with the last they saw */
    atomic_bool open;        /* the current job still takes workers */
    atomic_int active;       /* workers inside the current job (or backing out of it) */
    atomic_bool caller_sleeps; /* the caller waits on 'done'; under 'lock' when set */
    /* The current job, written before 'open' is set. */
    agk_task_fn fn;
    void *ctx;
    int ntasks;
};

static void cpu_relax(void)
{
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#endif
}

static long elapsed_ns(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(now.tv_sec - since->tv_sec) * 1000000000L + (now.tv_nsec - since->tv_nsec);
}

/* One poll of a spin that began at 'start' (read lazily: the clock is read
** every 64 polls); false once the spin has lasted SPIN_NS. */
static bool spin_once(struct timespec *start, int *polls)
{
    if (*polls == 0)
        clock_gettime(CLOCK_MONOTONIC, start);
    if ((++*polls & 63) != 0) {
        cpu_relax();
        return true;
    }
    long ns = elapsed_ns(start);
    if (ns >= SPIN_NS)
        return false;
    if (ns >= SPIN_PAUSE_NS)
        sched_yield();
    return true;
}

/* Worker w's dealt tasks not yet taken, run by whoever calls (the worker
** itself, or the caller once done with its own). */
static void run_dealt(ag_pool *p, agk_worker *w)
{
    int stride = p->started + 1;
    for (;;) {
        int k = atomic_fetch_add_explicit(&w->taken, 1, memory_order_relaxed);
        int task = w->index + k * stride;
        if (task >= p->ntasks)
            return;
        p->fn(p->ctx, task);
    }
}

static void *worker_main(void *arg)
{
    agk_worker *w = arg;
    ag_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        struct timespec start;
        int polls = 0;
        while (gen == seen && !atomic_load_explicit(&p->stop, memory_order_relaxed) &&
               spin_once(&start, &polls))
            gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (gen == seen) {
            pthread_mutex_lock(&p->lock);
            p->sleepers++;
            while ((gen = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->lock);
            p->sleepers--;
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = gen;
        /* Enter, then look: the caller closes, then looks at 'active' (both
        ** sequentially consistent), so either it sees this worker inside or
        ** this worker sees the job closed. Seeing it open also makes the
        ** job's fields visible (they are written before 'open' is set). */
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->open))
            run_dealt(p, w);
        if (atomic_fetch_sub(&p->active, 1) == 1 && atomic_load(&p->caller_sleeps)) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_broadcast(&p->done);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

static void stop_workers(ag_pool *p)
{
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->started; i++)
        pthread_join(p->workers[i].thread, NULL);
    p->started = 0;
}

static int online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

ag_pool *ag_pool_new(int nthreads) { return ag_pool_new_alloc(NULL, NULL, nthreads); }

/* The workers' array, aligned to 64 bytes by hand: the allocator promises
** less, and each worker's counter has a cache line of its own. */
static size_t workers_block_size(int workers)
{
    return (size_t)workers * sizeof(agk_worker) + 63;
}

ag_pool *ag_pool_new_alloc(ag_alloc_fn fn, void *ud, int nthreads)
{
    if (nthreads < 0)
        return NULL;
    if (nthreads == 0)
        nthreads = online_cores();
    if (nthreads > MAX_THREADS)
        nthreads = MAX_THREADS;
    ag_pool *p = agi_realloc(fn, ud, NULL, 0, sizeof *p);
    if (!p)
        return NULL;
    *p = (ag_pool){.alloc = fn, .alloc_ud = ud, .nthreads = nthreads};
    atomic_init(&p->busy, false);
    atomic_init(&p->stop, false);
    atomic_init(&p->generation, 0);
    atomic_init(&p->open, false);
    atomic_init(&p->active, 0);
    atomic_init(&p->caller_sleeps, false);
    int workers = nthreads - 1;
    if (workers > 0) {
        p->workers_block = agi_realloc(fn, ud, NULL, 0, workers_block_size(workers));
        if (!p->workers_block) {
            agi_realloc(fn, ud, p, sizeof *p, 0);
            return NULL;
        }
        uintptr_t at = ((uintptr_t)p->workers_block + 63) & ~(uintptr_t)63;
        p->workers = (agk_worker *)at;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        goto fail_lock;
    if (pthread_cond_init(&p->wake, NULL) != 0)
        goto fail_wake;
    if (pthread_cond_init(&p->done, NULL) != 0)
        goto fail_done;
    for (; p->started < workers; p->started++) {
        agk_worker *w = &p->workers[p->started];
        w->pool = p;
        w->index = p->started + 1;
        atomic_init(&w->taken, 0);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            stop_workers(p);
            goto fail_threads;
        }
    }
    return p;

fail_threads:
    pthread_cond_destroy(&p->done);
fail_done:
    pthread_cond_destroy(&p->wake);
fail_wake:
    pthread_mutex_destroy(&p->lock);
fail_lock:
    if (p->workers_block)
        agi_realloc(fn, ud, p->workers_block, workers_block_size(workers), 0);
    agi_realloc(fn, ud, p, sizeof *p, 0);
    return NULL;
}

void ag_pool_free(ag_pool *p)
{
    if (!p)
        return;
    stop_workers(p);
    pthread_cond_destroy(&p->done);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    if (p->workers_block)
        agi_realloc(p->alloc, p->alloc_ud, p->workers_block, workers_block_size(p->nthreads - 1), 0);
    agi_realloc(p->alloc, p->alloc_ud, p, sizeof *p, 0);
}

int ag_pool_size(const ag_pool *p) { return p ? p->nthreads : 1; }

int agk_pool_threads(const ag_pool *p) { return ag_pool_size(p); }

bool agk_pool_try_run(ag_pool *p, int ntasks, agk_task_fn fn, void *ctx)
{
    if (!p || p->started == 0 || ntasks < 1)
        return false;
    bool idle = false;
    if (!atomic_compare_exchange_strong(&p->busy, &idle, true))
        return false;
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    for (int i = 0; i < p->started; i++)
        atomic_store_explicit(&p->workers[i].taken, 0, memory_order_relaxed);
    atomic_store(&p->open, true);   /* publishes the fields above to who sees it */
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    /* A worker going to sleep holds the lock from its last look at
    ** 'generation' until it waits, so a sleeper is either counted here or
    ** sees the new generation. */
    pthread_mutex_lock(&p->lock);
    if (p->sleepers)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < ntasks; i += p->started + 1)
        fn(ctx, i);
    /* The dealt tasks no worker has taken yet: the caller's now. */
    for (int w = 0; w < p->started; w++)
        run_dealt(p, &p->workers[w]);
    atomic_store(&p->open, false);
    struct timespec start;
    int polls = 0;
    while (atomic_load(&p->active) != 0 && spin_once(&start, &polls))
        ;
    if (atomic_load(&p->active) != 0) {
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->caller_sleeps, true);
        while (atomic_load(&p->active) != 0)
            pthread_cond_wait(&p->done, &p->lock);
        atomic_store(&p->caller_sleeps, false);
        pthread_mutex_unlock(&p->lock);
    }
    atomic_store(&p->busy, false);
    return true;
}

/* A range job deals each thread an equal share of the items, as ranges of
** about a CHUNKS-th of it; a thread done with its own share takes the
** ranges left in others', from their end. So each thread keeps to its part
** of memory while the work is even, and uneven work still ends together:
** Adam's update of the 784-256-128-10 MLP took 47 us on its first half and
** 80 on its second, whose gradients had left the caches. A range is claimed
** by an atomic exchange on its own flag; the owner, climbing, stops at the
** first range taken from above, and a thief, descending, at the first
** taken from below, so every range runs exactly once. */
enum { CHUNKS = 8, STEAL_MAX_THREADS = 16 };

typedef struct range_job {
    ag_range_fn fn;
    agk_range_task_fn task_fn;   /* instead of fn: told which task runs the range */
    void *ctx;
    int64_t n, per_task, per_chunk;
    int tasks;
    /* A cache line of flags per owner: owners never share a line. */
    struct {
        _Alignas(64) atomic_bool taken[CHUNKS];
    } owner[STEAL_MAX_THREADS];
} range_job;

/* Range c of task t's share, run by task 'runner'. */
static void run_chunk(range_job *j, int runner, int t, int c)
{
    int64_t share_end = j->n - t * j->per_task < j->per_task ? j->n : (t + 1) * j->per_task;
    int64_t begin = t * j->per_task + c * j->per_chunk;
    int64_t end = share_end - begin < j->per_chunk ? share_end : begin + j->per_chunk;
    if (begin >= end)
        return;
    if (j->task_fn)
        j->task_fn(j->ctx, runner, begin, end);
    else
        j->fn(j->ctx, begin, end);
}

static bool claim(range_job *j, int t, int c)
{
    return !atomic_exchange_explicit(&j->owner[t].taken[c], true, memory_order_relaxed);
}

static void run_range(void *ctx, int task)
{
    range_job *j = ctx;
    for (int c = 0; c < CHUNKS && claim(j, task, c); c++)
        run_chunk(j, task, task, c);
    for (int v = 1; v < j->tasks; v++) {
        int victim = (task + v) % j->tasks;
        for (int c = CHUNKS - 1; c >= 0 && claim(j, victim, c); c--)
            run_chunk(j, task, victim, c);
    }
}

/* For pools too large for the flags: one range per task, no taking. */
static void run_share(void *ctx, int task)
{
    range_job *j = ctx;
    int64_t begin = task * j->per_task;
    int64_t end = j->n - begin < j->per_task ? j->n : begin + j->per_task;
    if (begin < end && j->task_fn)
        j->task_fn(j->ctx, task, begin, end);
    else if (begin < end)
        j->fn(j->ctx, begin, end);
}

/* Starts a range job of 'tasks' tasks over [0, n) (with fn or task_fn in
** *j set); false when the pool would not run it. */
static bool try_ranges(ag_pool *pool, range_job *j, int64_t n, int tasks)
{
    j->n = n;
    j->per_task = (n + tasks - 1) / tasks;
    j->tasks = tasks;
    j->per_chunk = (j->per_task + CHUNKS - 1) / CHUNKS;
    bool steal = tasks <= STEAL_MAX_THREADS;
    for (int t = 0; steal && t < tasks; t++)
        for (int c = 0; c < CHUNKS; c++)
            atomic_init(&j->owner[t].taken[c], false);
    return agk_pool_try_run(pool, tasks, steal ? run_range : run_share, j);
}

bool agk_pool_try_ranges(ag_pool *pool, int tasks, int64_t n, agk_range_task_fn fn, void *ctx)
{
    if (n <= 0 || tasks < 1)
        return false;
    range_job j = {.task_fn = fn, .ctx = ctx};
    return try_ranges(pool, &j, n, tasks);
}

void ag_pool_for(ag_pool *pool, int64_t n, int64_t grain, ag_range_fn fn, void *ctx)
{
    if (n <= 0 || !fn)
        return;
    int64_t tasks = agk_pool_threads(pool);
    if (grain < 1)
        grain = 1;
    if (tasks > n / grain)
        tasks = n / grain;
    if (tasks < 2) {
        fn(ctx, 0, n);
        return;
    }
    range_job j = {.fn = fn, .ctx = ctx};
    if (!try_ranges(pool, &j, n, (int)tasks))
        fn(ctx, 0, n);
}

void ag_tape_set_pool(ag_tape *t, ag_pool *pool)
{
    if (t)
        t->pool = pool;
}

ag_pool *ag_tape_pool(const ag_tape *t) { return t ? t->pool : NULL; }
