/*
** mpi_train.c: run by mpirun -np N (suite 'mpi'). Every rank starts from a
** different initialisation, takes rank 0's weights and Adam state, trains
** on its shard, and must hold the same bits as every other rank after every
** step; rank 0 also trains alone at batch N*b and compares (1e-6 relative).
** Then a model that differs on the last rank must be refused everywhere,
** naming the parameter. Exit status 0 on every rank when all holds.
*/
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn_comm.h"

enum { IN = 4, HIDDEN = 8, STEPS = 40, BATCH = 8 };

#define CHECK(cond, ...)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "mpi_train rank %d: ", rank);                         \
            fprintf(stderr, __VA_ARGS__);                                         \
            fputc('\n', stderr);                                                  \
            return 1;                                                             \
        }                                                                         \
    } while (0)

static nn_dataset *make_data(int64_t n)
{
    nn_dataset *ds = NULL;
    if (nn_dataset_new(NULL, NULL, AG_F64, n, 1, (int64_t[]){IN}, NN_Y_VALUES, 1, (int64_t[]){1}, &ds, NULL,
                       0) != AG_OK)
        return NULL;
    ag_rng r;
    ag_rng_seed(&r, 7);
    double *x = nn_dataset_x(ds), *y = nn_dataset_y(ds);
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < IN; k++)
            x[i * IN + k] = 2 * ag_rng_uniform(&r) - 1;
        y[i] = sin(x[i * IN]) + x[i * IN + 1] * x[i * IN + 2] - x[i * IN + 3] / 2;
    }
    return ds;
}

static uint64_t fnv(const void *p, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211u;
    return h;
}

/* Trains STEPS steps; with c, data-parallel (checking after every step that
** all ranks agree), else alone at batch 'batch'. Final weights into w. */
static int train(nn_comm *c, int rank, const nn_dataset *ds, int batch, int hidden, double *w)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 1000 + (uint64_t)rank);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F64, 3, (int64_t[]){IN, hidden, 1}, NN_TANH);
    nn_optim *o = nn_adam_new(m, 0.01, 0.9, 0.999, 1e-8, 0.0);
    ag_rng shuffle;
    ag_rng_seed(&shuffle, 99);
    nn_loader *ld = NULL;
    char err[300];
    CHECK(nn_loader_new(ds, batch, 1, 1, &shuffle, NULL, NULL, &ld, err, sizeof err) == AG_OK, "%s", err);
    ag_tape *t = ag_tape_new();
    if (c) {
        ag_status s = nn_comm_check_model(c, m);
        if (s == AG_OK)
            s = nn_comm_broadcast_model(c, m, o);
        if (s != AG_OK) {
            snprintf(err, sizeof err, "%s", nn_comm_errmsg(c));
            nn_loader_free(ld), ag_tape_free(t), nn_optim_free(o), nn_model_free(m);
            fprintf(stderr, "mpi_train rank %d (expected when the models differ): %s\n", rank, err);
            return s == AG_ESHAPE && strstr(err, "'mlp.0.weight'") ? 2 : 1;
        }
        CHECK(nn_loader_set_shard(ld, rank, nn_comm_size(c), err, sizeof err) == AG_OK, "%s", err);
    }
    size_t bytes = (size_t)nn_model_numel(m) * sizeof(double);
    for (int step = 0; step < STEPS;) {
        nn_batch b;
        if (!nn_loader_next(ld, t, &b)) {
            ag_tape_reset(t);
            continue;
        }
        ag_tensor *loss = nn_mse_loss(t, nn_mlp_forward(t, net, b.x), b.y, NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        CHECK(ag_tape_status(t) == AG_OK, "%s", ag_tape_errmsg(t));
        if (c)
            CHECK(nn_comm_average_grads(c, m) == AG_OK, "%s", nn_comm_errmsg(c));
        nn_optim_step(o);
        ag_tape_reset(t);
        step++;
        if (c) {
            /* rank 0's hash to all; every rank compares; the count of those that differ summed */
            uint64_t mine = fnv(nn_model_values(m), bytes), first = mine;
            CHECK(nn_comm_broadcast(c, &first, sizeof first, 0) == AG_OK, "%s", nn_comm_errmsg(c));
            double differ = mine != first;
            CHECK(nn_comm_allreduce_sum(c, &differ, 1, AG_F64) == AG_OK, "%s", nn_comm_errmsg(c));
            CHECK(differ == 0, "%g rank(s) hold other weights than rank 0 after step %d", differ, step);
        }
    }
    memcpy(w, nn_model_values(m), bytes);
    nn_loader_free(ld);
    ag_tape_free(t);
    nn_optim_free(o);
    nn_model_free(m);
    return 0;
}

int main(void)
{
    int rank = -1;
    nn_comm *c;
    char err[300];
    if (nn_comm_mpi_new(&c, err, sizeof err) != AG_OK) {
        fprintf(stderr, "mpi_train: %s\n", err);
        return 1;
    }
    rank = nn_comm_rank(c);
    int size = nn_comm_size(c);
    CHECK(strcmp(nn_comm_backend(c), "mpi") == 0, "backend %s", nn_comm_backend(c));
    nn_dataset *ds = make_data(64 * size);
    CHECK(ds, "no data set");
    int64_t n = (int64_t)IN * HIDDEN + HIDDEN + HIDDEN + 1;
    double *w = calloc((size_t)n, sizeof *w), *alone = calloc((size_t)n, sizeof *alone);
    CHECK(w && alone, "out of memory");
    CHECK(train(c, rank, ds, BATCH, HIDDEN, w) == 0, "data-parallel training failed");
    if (rank == 0) {
        CHECK(train(NULL, 0, ds, BATCH * size, HIDDEN, alone) == 0, "training alone failed");
        double worst = 0;
        for (int64_t i = 0; i < n; i++)
            worst = fmax(worst, fabs(w[i] - alone[i]) / fmax(fabs(alone[i]), 1e-3));
        printf("mpi_train: %d ranks x batch %d vs 1 x batch %d, %d Adam steps: max relative difference %.3g\n",
               size, BATCH, BATCH * size, STEPS, worst);
        CHECK(worst < 1e-6, "max relative difference %g", worst);
    }
    /* A second communicator (MPI already begun, so freeing it leaves MPI on)
    ** for a model that differs on the last rank: refused on every rank. */
    nn_comm *c2;
    CHECK(nn_comm_mpi_new(&c2, err, sizeof err) == AG_OK, "%s", err);
    int refused = size > 1 ? train(c2, rank, ds, BATCH, rank == size - 1 ? HIDDEN + 1 : HIDDEN, w) : 2;
    nn_comm_free(c2);
    CHECK(refused == 2, "a model differing on rank %d was not refused naming mlp.0.weight", size - 1);
    free(w);
    free(alone);
    nn_dataset_free(ds);
    printf("mpi_train rank %d of %d: OK\n", rank, size);
    nn_comm_free(c);
    return 0;
}
