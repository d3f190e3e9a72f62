/*
** nn_comm.h: data-parallel training. N ranks (processes under MPI, or
** threads of one process) each hold the same model, take a disjoint shard
** of every batch, and after backward average their gradients with one
** allreduce of the model's flat gradient buffer, so every rank steps its
** optimizer with the same gradient and keeps the same weights.
**
**     nn_comm *c;
**     if (nn_comm_mpi_new(&c, err, sizeof err) != AG_OK) { puts(err); ... }
**     ... build the same model and optimizer on every rank ...
**     nn_comm_check_model(c, m);              // same names and shapes?
**     nn_comm_broadcast_model(c, m, opt);     // rank 0's weights everywhere
**     nn_loader_set_shard(ld, nn_comm_rank(c), nn_comm_size(c));
**     while (nn_loader_next(ld, t, &b)) {
**         ... forward, nn_model_zero_grad, ag_backward ...
**         if (nn_comm_average_grads(c, m) != AG_OK) break;  // nn_comm_errmsg
**         nn_optim_step(opt);
**     }
**     nn_comm_free(c);                        // MPI_Finalize if it began MPI
**
** Determinism. The sum is never left to the transport's choice of order:
** every backend adds the ranks' buffers element by element in rank order
** (rank 0's value, plus rank 1's, ...) in the buffer's own dtype, so every
** rank holds the same bits, two runs with the same seed and rank count give
** the same bits, and the in-process and MPI backends agree with each other.
** N ranks at batch b see the same samples per step as one process at batch
** N*b (nn_loader_set_shard); only the order of the summation differs.
**
** Errors. A communicator has a sticky status (the first error wins, later
** calls return it at once) with a message naming the function. Every call
** is collective: all ranks make the same calls in the same order. Before a
** collective moves data the ranks agree on whether each is well, so a rank
** that refuses a call (bad arguments, its model in error) stops every rank
** at that same call: the others get its status and a message naming it
** ("rank 1 failed, so this rank stops too: ..."), and all can leave
** cleanly. A rank that leaves on an error of its own (outside these calls)
** should say so with nn_comm_abort, which ends the others at once.
** A rank that never arrives (it stopped calling, or hangs): every rank that
** waits gets AG_EIO after the timeout (nn_comm_set_timeout; under MPI 60 s
** unless set, for the in-process backend the one given at creation). Under
** MPI such a communicator cannot be finalized (a collective is left
** half done), so nn_comm_free ends the job with MPI_Abort. A rank that dies
** (a crash, exit without nn_comm_free) makes mpirun end the whole job: MPI's
** default error handler (MPI_ERRORS_ARE_FATAL) stays.
** A build without MPI (meson -Dmpi=disabled, or no MPI found) still has
** every function; nn_comm_mpi_new then returns AG_EUNSUPPORTED saying so.
*/
#ifndef NN_COMM_H
#define NN_COMM_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_comm nn_comm;

/* A backend, as a table of functions over its own context 'ctx'. Each
** returns AG_OK or an error, writing its message into err (errlen bytes).
** allreduce_sum must add in rank order (see Determinism above). */
typedef struct nn_comm_ops {
    const char *name;   /* "mpi", "local" */
    int (*rank)(void *ctx);
    int (*size)(void *ctx);
    ag_status (*allreduce_sum)(void *ctx, void *buf, int64_t n, ag_dtype dt, char *err,
                               size_t errlen);
    ag_status (*broadcast)(void *ctx, void *buf, size_t bytes, int root, char *err,
                           size_t errlen);
    ag_status (*barrier)(void *ctx, char *err, size_t errlen);
    void (*free)(void *ctx);
    /* Optional (NULL: the front does without). *value becomes the largest
    ** of the ranks' values: the agreement before each collective takes one
    ** call of it instead of one or two allreduce_sum. */
    ag_status (*max_int)(void *ctx, int *value, char *err, size_t errlen);
    /* Optional: how long a rank waits for the others (0: for ever). */
    void (*set_timeout)(void *ctx, double seconds);
    /* Optional: this rank leaves; the others must stop waiting for it. */
    void (*abort)(void *ctx, const char *why);
} nn_comm_ops;

/* A communicator over a backend of one's own; it calls ops->free(ctx) when
** freed. NULL when memory runs out (ops->free is then called). */
NN_API nn_comm *nn_comm_new(const nn_comm_ops *ops, void *ctx);

/* MPI_COMM_WORLD's ranks (MPI_Init is called if MPI is not yet
** initialised, and then MPI_Finalize by nn_comm_free). AG_EUNSUPPORTED in a
** build without MPI. */
NN_API ag_status nn_comm_mpi_new(nn_comm **out, char *err, size_t errlen);

/* 'size' ranks in this process, for threads: out[r] is rank r's
** communicator, to be used by one thread each and freed by it. A rank that
** waits longer than timeout_s seconds (> 0) for the others gets AG_EIO, and
** so does every later call of every rank. */
NN_API ag_status nn_comm_local_new(int size, double timeout_s, nn_comm **out, char *err,
                                   size_t errlen);

NN_API void nn_comm_free(nn_comm *c);   /* NULL is a no-op */
NN_API int nn_comm_rank(const nn_comm *c);   /* -1 for NULL */
NN_API int nn_comm_size(const nn_comm *c);   /* 0 for NULL */
NN_API const char *nn_comm_backend(const nn_comm *c);   /* "mpi", "local"; "" for NULL */
NN_API ag_status nn_comm_status(const nn_comm *c);      /* AG_EINVAL for NULL */
NN_API const char *nn_comm_errmsg(const nn_comm *c);    /* "" when AG_OK */

/* Collectives (every rank calls them, in the same order). */
/* buf (n elements of dt) becomes the sum over ranks, added in rank order. */
NN_API ag_status nn_comm_allreduce_sum(nn_comm *c, void *buf, int64_t n, ag_dtype dt);
/* buf (bytes) becomes rank root's on every rank. */
NN_API ag_status nn_comm_broadcast(nn_comm *c, void *buf, size_t bytes, int root);
NN_API ag_status nn_comm_barrier(nn_comm *c);

/* How long any rank waits in a collective for the others before it gets
** AG_EIO (0: for ever). Not collective: each rank sets its own.
** AG_EUNSUPPORTED for a backend without a timeout. */
NN_API ag_status nn_comm_set_timeout(nn_comm *c, double seconds);
/* For a rank that leaves the collectives on an error of its own (a failed
** write, a tape in error): records AG_ESTATE with 'why' on c, and ends the
** others' wait. Under MPI it prints 'why' on stderr and calls MPI_Abort,
** which ends every process of the job, this one included; the in-process
** backend breaks the group, so every other rank gets AG_EIO at its next
** (or current) wait, 'why' in the message. NULL is a no-op. */
NN_API void nn_comm_abort(nn_comm *c, const char *why);

/* The model's whole gradient buffer summed over ranks and divided by the
** rank count: one allreduce per step. A model in error returns its status. */
NN_API ag_status nn_comm_average_grads(nn_comm *c, nn_model *m);
/* Rank 0's parameters and buffers, and, when o is not NULL, its optimizer's
** state and step count, copied to every rank. Buffers (batch norm's running
** statistics) are not averaged afterwards: each rank's follow the batches
** of its own shard, and checkpoints (rank 0's) save rank 0's. */
NN_API ag_status nn_comm_broadcast_model(nn_comm *c, nn_model *m, nn_optim *o);
/* Refuses (AG_ESHAPE on every rank) models whose parameters differ between
** ranks in count, name, dtype or shape; the message names the first
** parameter that differs, as rank 0 has it. */
NN_API ag_status nn_comm_check_model(nn_comm *c, nn_model *m);

#ifdef __cplusplus
}
#endif

#endif
