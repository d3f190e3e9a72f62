/*
** pool.c: a small pool of persistent worker threads (pthreads) and the
** tape's link to it. A job is a number of tasks dealt out in turn: the
** calling thread runs tasks 0, n, 2n, ..., worker k tasks k, k + n, ... for
** n threads; the caller returns when all are done. Workers spin briefly
** between jobs, since ops come in bursts, then sleep on a condition variable.
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
*/
#define _POSIX_C_SOURCE 200809L

#include "../internal.h"
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

/* Polls of a flag before sleeping: about 1.7 ms here (a pause is some 26
** ns), longer than the serial stretches of a training step, so workers
** stay awake through one. With 4096 polls (0.1 ms) a worker slept and was
** woken about twice per step of the 784-256-128-10 MLP at batch 256, and
** each wake-up cost up to half a millisecond on the VM: the two-thread step
** took 2.6 ms instead of 1.6. Idle, a worker burns at most this long after
** the last job before it sleeps. */
enum { SPIN_POLLS = 1 << 16, MAX_THREADS = 256 };

typedef struct agk_worker {
    pthread_t thread;
    ag_pool *pool;
    int index;               /* 1..started: its first task */
} agk_worker;

struct ag_pool {
    ag_alloc_fn alloc;
    void *alloc_ud;
    int nthreads;            /* counting the caller */
    int started;             /* workers running */
    agk_worker *workers;
    pthread_mutex_t lock;
    pthread_cond_t wake;     /* workers sleep here between jobs */
    pthread_cond_t done;     /* the caller sleeps here until the last worker ends */
    int sleepers;            /* workers waiting on 'wake'; under 'lock' */
    atomic_bool busy;        /* a job is running: one at a time */
    atomic_bool stop;
    atomic_uint generation;  /* bumped per job; workers compare with the last they ran */
    atomic_int running;      /* workers not yet through the current job */
    /* The current job, written before 'generation' is bumped. */
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

/* The current job's tasks first, first + threads, ... */
static void run_tasks(ag_pool *p, int first)
{
    for (int i = first; i < p->ntasks; i += p->started + 1)
        p->fn(p->ctx, i);
}

static void *worker_main(void *arg)
{
    const agk_worker *w = arg;
    ag_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        for (int i = 0; i < SPIN_POLLS && gen == seen && !atomic_load(&p->stop); i++) {
            cpu_relax();
            gen = atomic_load_explicit(&p->generation, memory_order_acquire);
        }
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
        run_tasks(p, w->index);
        if (atomic_fetch_sub_explicit(&p->running, 1, memory_order_acq_rel) == 1) {
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
    atomic_init(&p->running, 0);
    int workers = nthreads - 1;
    if (workers > 0) {
        p->workers = agi_realloc(fn, ud, NULL, 0, (size_t)workers * sizeof *p->workers);
        if (!p->workers) {
            agi_realloc(fn, ud, p, sizeof *p, 0);
            return NULL;
        }
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
    if (p->workers)
        agi_realloc(fn, ud, p->workers, (size_t)workers * sizeof *p->workers, 0);
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
    if (p->workers)
        agi_realloc(p->alloc, p->alloc_ud, p->workers,
                    (size_t)(p->nthreads - 1) * sizeof *p->workers, 0);
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
    atomic_store_explicit(&p->running, p->started, memory_order_relaxed);
    pthread_mutex_lock(&p->lock);
    atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
    if (p->sleepers)
        pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    run_tasks(p, 0);
    for (int i = 0; i < SPIN_POLLS && atomic_load_explicit(&p->running, memory_order_acquire); i++)
        cpu_relax();
    if (atomic_load_explicit(&p->running, memory_order_acquire)) {
        pthread_mutex_lock(&p->lock);
        while (atomic_load(&p->running))
            pthread_cond_wait(&p->done, &p->lock);
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
