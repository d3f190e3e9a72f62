/*
** comm_local.c: the in-process backend, N ranks as N threads sharing one
** group. Collectives meet at a barrier: each rank posts its buffer, the
** ranks sum disjoint slices of every element in rank order into the
** group's scratch, meet again, and copy the sum back. Every wait has a
** deadline, so a rank that never comes gives the others AG_EIO instead of
** a hang, and breaks the group for good (a collective half done cannot be
** resumed).
*/
#define _POSIX_C_SOURCE 200809L
#include "comm_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct group {
    pthread_mutex_t lock;
    pthread_cond_t arrived;
    int size, refs;
    double timeout_s;
    int waiting;
    uint64_t generation;   /* barriers completed */
    int broken;            /* a wait timed out, or a rank left: every later call fails */
    char left[200];        /* why a rank left (nn_comm_abort), "" when none did */
    void **bufs;           /* size buffers posted for the current collective */
    void *scratch;         /* the sum, grown to the largest buffer seen */
    size_t scratch_bytes;
} group;

typedef struct local_rank {
    group *g;
    int rank;
} local_rank;

static int local_rank_of(void *ctx) { return ((local_rank *)ctx)->rank; }
static int local_size(void *ctx) { return ((local_rank *)ctx)->g->size; }

static void group_free(group *g)
{
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->arrived);
    ag_realloc(NULL, NULL, g->scratch, g->scratch_bytes, 0);
    ag_realloc(NULL, NULL, g->bufs, (size_t)g->size * sizeof *g->bufs, 0);
    ag_realloc(NULL, NULL, g, sizeof *g, 0);
}

static void local_free(void *ctx)
{
    local_rank *lr = ctx;
    group *g = lr->g;
    pthread_mutex_lock(&g->lock);
    int last = --g->refs == 0;
    pthread_mutex_unlock(&g->lock);
    if (last)
        group_free(g);
    ag_realloc(NULL, NULL, lr, sizeof *lr, 0);
}

/* The group's failure as a message; under g->lock. */
static ag_status broken(const group *g, char *err, size_t errlen)
{
    if (g->left[0])
        snprintf(err, errlen, "%s; the group is broken", g->left);
    else
        snprintf(err, errlen, "a rank of the %d did not arrive within %g s; the group is broken",
                 g->size, g->timeout_s);
    return AG_EIO;
}

/* All ranks meet here; AG_EIO when the others do not come in time. */
static ag_status barrier(void *ctx, char *err, size_t errlen)
{
    group *g = ((local_rank *)ctx)->g;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    pthread_mutex_lock(&g->lock);
    double whole = (double)(long long)g->timeout_s;
    deadline.tv_sec += (time_t)whole;
    deadline.tv_nsec += (long)((g->timeout_s - whole) * 1e9);
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    if (g->broken) {
        ag_status s = broken(g, err, errlen);
        pthread_mutex_unlock(&g->lock);
        return s;
    }
    uint64_t gen = g->generation;
    if (++g->waiting == g->size) {
        g->waiting = 0;
        g->generation++;
        pthread_cond_broadcast(&g->arrived);
    } else {
        while (g->generation == gen && !g->broken) {
            if (pthread_cond_timedwait(&g->arrived, &g->lock, &deadline) == ETIMEDOUT &&
                g->generation == gen) {
                g->broken = 1;
                pthread_cond_broadcast(&g->arrived);
            }
        }
    }
    ag_status s = g->generation == gen ? broken(g, err, errlen) : AG_OK;
    pthread_mutex_unlock(&g->lock);
    return s;
}

static ag_status local_allreduce(void *ctx, void *buf, int64_t n, ag_dtype dt, char *err, size_t errlen)
{
    local_rank *lr = ctx;
    group *g = lr->g;
    size_t bytes = (size_t)n * ag_dtype_size(dt);
    pthread_mutex_lock(&g->lock);
    g->bufs[lr->rank] = buf;
    /* Grown by whichever rank comes first with a larger buffer; later
    ** steps of the same size allocate nothing. */
    if (bytes > g->scratch_bytes) {
        void *p = ag_realloc(NULL, NULL, g->scratch, g->scratch_bytes, bytes);
        if (p) {
            g->scratch = p;
            g->scratch_bytes = bytes;
        }
    }
    pthread_mutex_unlock(&g->lock);
    ag_status s = barrier(ctx, err, errlen);
    if (s != AG_OK)
        return s;
    if (g->scratch_bytes < bytes) {   /* seen alike by all ranks: nobody writes it now */
        snprintf(err, errlen, "out of memory for the sum of %lld elements", (long long)n);
        barrier(ctx, err, 0);
        return AG_ENOMEM;
    }
    int64_t slice = (n + g->size - 1) / g->size;
    int64_t begin = slice * lr->rank < n ? slice * lr->rank : n;
    int64_t end = begin + slice < n ? begin + slice : n;
    nni_comm_sum_ranks(g->scratch, (const void *const *)g->bufs, g->size, begin, end, dt);
    if ((s = barrier(ctx, err, errlen)) != AG_OK)
        return s;
    if (bytes > 0)
        memcpy(buf, g->scratch, bytes);
    /* Nobody may grow or refill the scratch until all have copied. */
    return barrier(ctx, err, errlen);
}

static ag_status local_broadcast(void *ctx, void *buf, size_t bytes, int root, char *err, size_t errlen)
{
    local_rank *lr = ctx;
    group *g = lr->g;
    if (lr->rank == root) {
        pthread_mutex_lock(&g->lock);
        g->bufs[root] = buf;
        pthread_mutex_unlock(&g->lock);
    }
    ag_status s = barrier(ctx, err, errlen);
    if (s != AG_OK)
        return s;
    if (lr->rank != root && bytes > 0)
        memcpy(buf, g->bufs[root], bytes);
    return barrier(ctx, err, errlen);
}

static void local_set_timeout(void *ctx, double seconds)
{
    group *g = ((local_rank *)ctx)->g;
    pthread_mutex_lock(&g->lock);
    g->timeout_s = seconds > 0 ? seconds : 1e9;   /* "for ever": about 30 years */
    pthread_mutex_unlock(&g->lock);
}

/* The group breaks at once: ranks waiting now, and every later call, fail. */
static void local_abort(void *ctx, const char *why)
{
    local_rank *lr = ctx;
    group *g = lr->g;
    pthread_mutex_lock(&g->lock);
    if (!g->left[0])
        snprintf(g->left, sizeof g->left, "rank %d left: %s", lr->rank, why);
    g->broken = 1;
    pthread_cond_broadcast(&g->arrived);
    pthread_mutex_unlock(&g->lock);
}

static const nn_comm_ops local_ops = {
    "local", local_rank_of, local_size, local_allreduce, local_broadcast, barrier, local_free,
    NULL, local_set_timeout, local_abort,
};

ag_status nn_comm_local_new(int size, double timeout_s, nn_comm **out, char *err, size_t errlen)
{
    const char *who = "nn_comm_local_new";
    if (!out) {
        if (err)
            snprintf(err, errlen, "%s: out is NULL", who);
        return AG_EINVAL;
    }
    if (size < 1 || !(timeout_s > 0) || timeout_s > 1e9) {
        if (err)
            snprintf(err, errlen, "%s: size %d and timeout %g s (need size >= 1, 0 < timeout <= 1e9)",
                     who, size, timeout_s);
        return AG_EINVAL;
    }
    for (int r = 0; r < size; r++)
        out[r] = NULL;
    group *g = ag_realloc(NULL, NULL, NULL, 0, sizeof *g);
    void **bufs = ag_realloc(NULL, NULL, NULL, 0, (size_t)size * sizeof *bufs);
    if (!g || !bufs) {
        ag_realloc(NULL, NULL, g, g ? sizeof *g : 0, 0);
        ag_realloc(NULL, NULL, bufs, bufs ? (size_t)size * sizeof *bufs : 0, 0);
        if (err)
            snprintf(err, errlen, "%s: out of memory for %d ranks", who, size);
        return AG_ENOMEM;
    }
    memset(g, 0, sizeof *g);
    memset(bufs, 0, (size_t)size * sizeof *bufs);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->arrived, NULL);
    g->size = size;
    g->timeout_s = timeout_s;
    g->bufs = bufs;
    /* One reference per rank made, and one held while making them, so that
    ** a failure part way frees the group exactly once. */
    g->refs = 1;
    ag_status s = AG_OK;
    for (int r = 0; r < size && s == AG_OK; r++) {
        local_rank *lr = ag_realloc(NULL, NULL, NULL, 0, sizeof *lr);
        if (lr) {
            lr->g = g;
            lr->rank = r;
            g->refs++;
            out[r] = nn_comm_new(&local_ops, lr);   /* on failure it dropped lr's reference */
        }
        if (!out[r])
            s = AG_ENOMEM;
    }
    if (s != AG_OK)
        for (int r = 0; r < size; r++) {
            nn_comm_free(out[r]);
            out[r] = NULL;
        }
    if (--g->refs == 0)
        group_free(g);
    if (s != AG_OK) {
        if (err)
            snprintf(err, errlen, "%s: out of memory for %d ranks", who, size);
        return s;
    }
    if (err && errlen)
        err[0] = '\0';
    return AG_OK;
}
