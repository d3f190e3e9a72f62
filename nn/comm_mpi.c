/*
** comm_mpi.c: the MPI backend over a duplicate of MPI_COMM_WORLD (so that
** its collectives never match a program's own), or, in a build without
** MPI, a nn_comm_mpi_new that says so. MPI does the transport; the sum is
** ours: rank 0 gathers every rank's buffer, adds them in rank order and
** broadcasts the result, so the bits never depend on the MPI library's
** choice of reduction tree. (MPI_Allreduce would move less data, 2(N-1)/N
** of the buffer per rank in a ring, but its order of addition is the
** library's, and may change with the rank count or the message size.)
**
** Every collective is started non-blocking and waited for here, with a
** deadline: a rank that stops calling (it left on an error, or hangs)
** gives the others AG_EIO instead of a hang. MPI's default error handler
** stays: a rank that dies makes mpirun end the job.
*/
#define _POSIX_C_SOURCE 200809L
#include "comm_internal.h"

#include <stdio.h>
#include <string.h>

#if defined(NN_HAVE_MPI)
#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <sched.h>
#include <time.h>

enum { DEFAULT_TIMEOUT_S = 60 };

typedef struct mpi_ctx {
    MPI_Comm comm;
    int rank, size;
    int began;            /* we called MPI_Init, so we call MPI_Finalize */
    int stranded;         /* a wait timed out: a collective is left half done */
    double timeout_s;     /* 0: wait for ever */
    void *gathered;       /* size buffers side by side, on rank 0; kept between steps */
    size_t gathered_bytes;
    const void **parts;   /* size pointers into 'gathered' */
} mpi_ctx;

static int mpi_rank(void *ctx) { return ((mpi_ctx *)ctx)->rank; }
static int mpi_size(void *ctx) { return ((mpi_ctx *)ctx)->size; }

static ag_status mpi_result(int rc, const char *call, char *err, size_t errlen)
{
    if (rc == MPI_SUCCESS)
        return AG_OK;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    snprintf(err, errlen, "%s failed: %.*s", call, len, text);
    return AG_EIO;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* Waits for a started collective. MPI progresses it inside MPI_Test, so the
** first 10 ms poll as a blocking call would; a longer wait (a rank
** evaluating alone, or one that is gone) yields the core between polls, and
** past 100 ms sleeps a millisecond between them, so a waiting rank leaves
** the cores to those still working. Past the timeout: AG_EIO, and the
** communicator is stranded. */
static ag_status wait_for(mpi_ctx *c, MPI_Request *req, const char *call, char *err, size_t errlen)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool slow = false;   /* past 10 ms: the clock is read at every poll */
    for (long polls = 0;; polls++) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS)
            return mpi_result(rc, call, err, errlen);
        if (done)
            return AG_OK;
        if (!slow && (polls & 63) != 63)
            continue;
        double waited = seconds_since(&t0);
        if (c->timeout_s > 0 && waited > c->timeout_s) {
            c->stranded = 1;
            snprintf(err, errlen, "%s: rank %d of %d waited %g s for the others (one left, hangs or "
                     "died); the job cannot go on", call, c->rank, c->size, c->timeout_s);
            return AG_EIO;
        }
        slow = waited > 0.01;
        if (waited > 0.1)
            nanosleep(&(struct timespec){0, 1000000}, NULL);
        else if (slow)
            sched_yield();
    }
}

static ag_status mpi_broadcast(void *ctx, void *buf, size_t bytes, int root, char *err, size_t errlen)
{
    mpi_ctx *c = ctx;
    /* In pieces below INT_MAX bytes, MPI's count being an int. */
    for (size_t done = 0; done < bytes;) {
        size_t part = bytes - done < (size_t)INT_MAX ? bytes - done : (size_t)INT_MAX;
        MPI_Request req;
        ag_status s = mpi_result(MPI_Ibcast((char *)buf + done, (int)part, MPI_BYTE, root, c->comm, &req),
                                 "MPI_Ibcast", err, errlen);
        if (s == AG_OK)
            s = wait_for(c, &req, "MPI_Ibcast", err, errlen);
        if (s != AG_OK)
            return s;
        done += part;
    }
    return AG_OK;
}

static ag_status mpi_allreduce(void *ctx, void *buf, int64_t n, ag_dtype dt, char *err, size_t errlen)
{
    mpi_ctx *c = ctx;
    size_t bytes = (size_t)n * ag_dtype_size(dt);
    if (bytes > (size_t)INT_MAX) {
        snprintf(err, errlen, "%lld elements exceed MPI_Igather's count", (long long)n);
        return AG_EINVAL;
    }
    if (c->size == 1)
        return AG_OK;
    /* Rank 0's answer on whether the gather buffer exists, so no rank waits
    ** in a gather that rank 0 has abandoned. */
    int ok = 1;
    if (c->rank == 0 && bytes * (size_t)c->size > c->gathered_bytes) {
        void *p = ag_realloc(NULL, NULL, c->gathered, c->gathered_bytes, bytes * (size_t)c->size);
        if (p) {
            c->gathered = p;
            c->gathered_bytes = bytes * (size_t)c->size;
        } else {
            ok = 0;
        }
    }
    ag_status s = mpi_broadcast(ctx, &ok, sizeof ok, 0, err, errlen);
    if (s != AG_OK)
        return s;
    if (!ok) {
        snprintf(err, errlen, "out of memory on rank 0 for %d buffers of %zu bytes", c->size, bytes);
        return AG_ENOMEM;
    }
    MPI_Request req;
    s = mpi_result(MPI_Igather(buf, (int)bytes, MPI_BYTE, c->gathered, (int)bytes, MPI_BYTE, 0, c->comm,
                               &req), "MPI_Igather", err, errlen);
    if (s == AG_OK)
        s = wait_for(c, &req, "MPI_Igather", err, errlen);
    if (s != AG_OK)
        return s;
    if (c->rank == 0) {
        for (int r = 0; r < c->size; r++)
            c->parts[r] = (const char *)c->gathered + (size_t)r * bytes;
        nni_comm_sum_ranks(buf, c->parts, c->size, 0, n, dt);
    }
    return mpi_broadcast(ctx, buf, bytes, 0, err, errlen);
}

/* The largest value over ranks: order does not matter to a maximum, so
** MPI's own reduction is used. */
static ag_status mpi_max_int(void *ctx, int *value, char *err, size_t errlen)
{
    mpi_ctx *c = ctx;
    MPI_Request req;
    ag_status s = mpi_result(MPI_Iallreduce(MPI_IN_PLACE, value, 1, MPI_INT, MPI_MAX, c->comm, &req),
                             "MPI_Iallreduce", err, errlen);
    return s == AG_OK ? wait_for(c, &req, "MPI_Iallreduce", err, errlen) : s;
}

static ag_status mpi_barrier(void *ctx, char *err, size_t errlen)
{
    mpi_ctx *c = ctx;
    MPI_Request req;
    ag_status s = mpi_result(MPI_Ibarrier(c->comm, &req), "MPI_Ibarrier", err, errlen);
    return s == AG_OK ? wait_for(c, &req, "MPI_Ibarrier", err, errlen) : s;
}

static void mpi_set_timeout(void *ctx, double seconds) { ((mpi_ctx *)ctx)->timeout_s = seconds; }

static void mpi_abort(void *ctx, const char *why)
{
    mpi_ctx *c = ctx;
    fprintf(stderr, "nn_comm_abort: rank %d of %d leaves: %s\n", c->rank, c->size, why);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void mpi_free(void *ctx)
{
    mpi_ctx *c = ctx;
    int finalized = 0;
    MPI_Finalized(&finalized);
    /* A collective left half done (a timeout) cannot be finished or
    ** cancelled, and MPI_Finalize would wait for it: the job ends here. */
    if (c->stranded && !finalized) {
        fprintf(stderr, "nn_comm_free: rank %d of %d: a collective timed out; ending the job\n",
                c->rank, c->size);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (!finalized && c->comm != MPI_COMM_NULL)
        MPI_Comm_free(&c->comm);
    if (c->began && !finalized)
        MPI_Finalize();
    ag_realloc(NULL, NULL, c->gathered, c->gathered_bytes, 0);
    ag_realloc(NULL, NULL, c->parts, (size_t)c->size * sizeof *c->parts, 0);
    ag_realloc(NULL, NULL, c, sizeof *c, 0);
}

static const nn_comm_ops mpi_ops = {
    "mpi", mpi_rank, mpi_size, mpi_allreduce, mpi_broadcast, mpi_barrier, mpi_free,
    mpi_max_int, mpi_set_timeout, mpi_abort,
};

ag_status nn_comm_mpi_new(nn_comm **out, char *err, size_t errlen)
{
    const char *who = "nn_comm_mpi_new";
    char scratch[1];
    if (!err) {
        err = scratch;
        errlen = sizeof scratch;
    }
    if (!out) {
        snprintf(err, errlen, "%s: out is NULL", who);
        return AG_EINVAL;
    }
    *out = NULL;
    mpi_ctx *c = ag_realloc(NULL, NULL, NULL, 0, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "%s: out of memory", who);
        return AG_ENOMEM;
    }
    memset(c, 0, sizeof *c);
    c->comm = MPI_COMM_NULL;
    c->timeout_s = DEFAULT_TIMEOUT_S;
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
            ag_realloc(NULL, NULL, c, sizeof *c, 0);
            snprintf(err, errlen, "%s: MPI_Init failed", who);
            return AG_EIO;
        }
        c->began = 1;
    }
    if (MPI_Comm_dup(MPI_COMM_WORLD, &c->comm) != MPI_SUCCESS) {
        c->comm = MPI_COMM_NULL;
        mpi_free(c);
        snprintf(err, errlen, "%s: MPI_Comm_dup failed", who);
        return AG_EIO;
    }
    MPI_Comm_rank(c->comm, &c->rank);
    MPI_Comm_size(c->comm, &c->size);
    c->parts = ag_realloc(NULL, NULL, NULL, 0, (size_t)c->size * sizeof *c->parts);
    if (!c->parts || !(*out = nn_comm_new(&mpi_ops, c))) {
        if (c->parts)
            c = NULL;   /* nn_comm_new freed it */
        if (c)
            mpi_free(c);
        snprintf(err, errlen, "%s: out of memory", who);
        return AG_ENOMEM;
    }
    err[0] = '\0';
    return AG_OK;
}

#else

ag_status nn_comm_mpi_new(nn_comm **out, char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (err && errlen)
        snprintf(err, errlen, "nn_comm_mpi_new: this build of libautograd-nn has no MPI "
                 "(install MPI, e.g. libopenmpi-dev, and configure with -Dmpi=enabled)");
    return AG_EUNSUPPORTED;
}

#endif
