/*
** comm_mpi.c: the MPI backend over MPI_COMM_WORLD, or, in a build without
** MPI, a nn_comm_mpi_new that says so. MPI does the transport; the sum is
** ours: rank 0 gathers every rank's buffer, adds them in rank order and
** broadcasts the result, so the bits never depend on the MPI library's
** choice of reduction tree. (MPI_Allreduce would move less data, 2(N-1)/N
** of the buffer per rank in a ring, but its order of addition is the
** library's, and may change with the rank count or the message size.)
** MPI's default error handler stays: a rank that dies makes mpirun abort
** the job, so the others never hang.
*/
#include "comm_internal.h"

#include <stdio.h>
#include <string.h>

#if defined(NN_HAVE_MPI)
#include <limits.h>
#include <mpi.h>

typedef struct mpi_ctx {
    int rank, size;
    int began;            /* we called MPI_Init, so we call MPI_Finalize */
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

static ag_status mpi_broadcast(void *ctx, void *buf, size_t bytes, int root, char *err, size_t errlen)
{
    (void)ctx;
    /* In pieces below INT_MAX bytes, MPI's count being an int. */
    for (size_t done = 0; done < bytes;) {
        size_t part = bytes - done < (size_t)INT_MAX ? bytes - done : (size_t)INT_MAX;
        ag_status s = mpi_result(MPI_Bcast((char *)buf + done, (int)part, MPI_BYTE, root, MPI_COMM_WORLD),
                                 "MPI_Bcast", err, errlen);
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
        snprintf(err, errlen, "%lld elements exceed MPI_Gather's count", (long long)n);
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
    s = mpi_result(MPI_Gather(buf, (int)bytes, MPI_BYTE, c->gathered, (int)bytes, MPI_BYTE, 0,
                              MPI_COMM_WORLD), "MPI_Gather", err, errlen);
    if (s != AG_OK)
        return s;
    if (c->rank == 0) {
        for (int r = 0; r < c->size; r++)
            c->parts[r] = (const char *)c->gathered + (size_t)r * bytes;
        nni_comm_sum_ranks(buf, c->parts, c->size, 0, n, dt);
    }
    return mpi_broadcast(ctx, buf, bytes, 0, err, errlen);
}

static ag_status mpi_barrier(void *ctx, char *err, size_t errlen)
{
    (void)ctx;
    return mpi_result(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", err, errlen);
}

static void mpi_free(void *ctx)
{
    mpi_ctx *c = ctx;
    if (c->began) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized)
            MPI_Finalize();
    }
    ag_realloc(NULL, NULL, c->gathered, c->gathered_bytes, 0);
    ag_realloc(NULL, NULL, c->parts, (size_t)c->size * sizeof *c->parts, 0);
    ag_realloc(NULL, NULL, c, sizeof *c, 0);
}

static const nn_comm_ops mpi_ops = {
    "mpi", mpi_rank, mpi_size, mpi_allreduce, mpi_broadcast, mpi_barrier, mpi_free,
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
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
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
