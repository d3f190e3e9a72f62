/*
** train_worker.c: the "ours" side of the benchmark's training rows, in a
** process of its own so that its peak memory is its own: trains one network
** on Fashion-MNIST as bench_train.c's PyTorch script does, and prints
** "seconds-per-step steps last-loss". It uses only the public API, as a
** user's program would.
**
**     train_worker mlp|nielsen|cnn BATCH THREADS STEPS [mpi]   (STEPS 0: one epoch)
**
** With 'mpi', started by mpirun: data-parallel training (nn_comm.h), BATCH
** being the step's whole batch split over the ranks, as fashion_mnist does;
** rank 0 prints a fourth number, the seconds per step spent in
** nn_comm_average_grads (the allreduce, waiting for the slower rank
** included).
*/
#define _POSIX_C_SOURCE 200809L

#include "../../examples/fashion_cnn_net.h"
#include "../../examples/fashion_data.h"
#include "autograd.h"
#include "nn.h"
#include "nn_comm.h"
#include "nn_io.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { WARMUP_STEPS = 20 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Nielsen's network ends in a sigmoid and learns a one-hot target with the
** quadratic cost sum((a - y)^2) / (2 m); PyTorch's script does the same. */
static ag_tensor *nielsen_loss(ag_tape *t, const nn_mlp *net, nn_batch *b, float *onehot)
{
    memset(onehot, 0, (size_t)b->size * FASHION_CLASSES * sizeof *onehot);
    for (int64_t i = 0; i < b->size; i++)
        onehot[i * FASHION_CLASSES + b->labels[i]] = 1.0f;
    ag_tensor *y = ag_tensor_from_f32(t, 2, (int64_t[]){b->size, FASHION_CLASSES}, onehot);
    ag_tensor *a = ag_sigmoid(t, nn_mlp_forward(t, net, b->x));
    return ag_mul_scalar(t, nn_mse_loss(t, a, y, NN_REDUCE_SUM), 0.5 / (double)b->size);
}

/* Trains 'kind' at 'batch' on 'threads' threads for 'steps' steps after a
** warm-up (0: one whole epoch) and prints "seconds-per-step steps loss"
** (and, with a communicator, the allreduce's seconds per step). */
static int train_worker(const char *kind, int64_t batch, int threads, long steps, nn_comm *comm)
{
    bool mlp = !strcmp(kind, "mlp"), conv = !strcmp(kind, "cnn");
    nn_dataset *train = fashion_load("bench", NULL, 1, AG_F32, 0);
    if (!train)
        return 1;
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tape *t = ag_tape_new();
    ag_pool *pool = ag_pool_new(threads);
    ag_tape_set_pool(t, pool);
    nn_model_set_pool(m, pool);
    nn_model_seed(m, 1);
    int64_t mlp_sizes[] = {784, 256, 128, 10}, nielsen_sizes[] = {784, 30, 10};
    cnn cnet = {0};
    nn_mlp *net = conv  ? NULL
                  : mlp ? nn_mlp_new(m, "mlp", AG_F32, 4, mlp_sizes, NN_RELU)
                        : nn_mlp_new(m, "net", AG_F32, 3, nielsen_sizes, NN_SIGMOID);
    if (conv)
        cnn_new(m, AG_F32, &cnet);
    nn_optim *opt = conv  ? nn_adam_new(m, 2e-3, 0.9, 0.999, 1e-8, 0.0)   /* fashion_cnn's */
                    : mlp ? nn_adam_new(m, 1e-3, 0.9, 0.999, 1e-8, 0.0)
                          : nn_sgd_new(m, 3.0, 0, 0, 0);
    float *onehot = malloc((size_t)batch * FASHION_CLASSES * sizeof *onehot);
    ag_rng rng;
    ag_rng_seed(&rng, 1);
    nn_loader *ld = NULL;
    char err[256] = "";
    int rc = 1;
    int ranks = comm ? nn_comm_size(comm) : 1, rank = comm ? nn_comm_rank(comm) : 0;
    if (!onehot || !pool || nn_model_status(m) != AG_OK ||
        nn_loader_new(train, batch / ranks, 1, 0, &rng, NULL, NULL, &ld, err, sizeof err) != AG_OK ||
        nn_loader_set_shard(ld, rank, ranks, err, sizeof err) != AG_OK) {
        fprintf(stderr, "bench: %s\n", err[0] ? err : nn_model_errmsg(m));
        goto done;
    }
    if (comm && (batch % ranks != 0 || nn_comm_check_model(comm, m) != AG_OK ||
                 nn_comm_broadcast_model(comm, m, opt) != AG_OK)) {
        fprintf(stderr, "bench: %s\n", batch % ranks ? "the batch does not split over the ranks"
                                                      : nn_comm_errmsg(comm));
        goto done;
    }
    if (steps <= 0)
        steps = (long)nn_loader_num_batches(ld);
    double loss = NAN, start = 0, in_allreduce = 0;
    for (long s = -WARMUP_STEPS; s < steps; s++) {
        if (s == 0) {
            start = now();
            in_allreduce = 0;
        }
        nn_batch b;
        ag_tape_reset(t);
        if (!nn_loader_next(ld, t, &b) && !nn_loader_next(ld, t, &b))
            break;
        ag_tensor *l = conv  ? nn_cross_entropy_loss(t, cnn_forward(t, &cnet, b.x), b.labels, 0,
                                                     NN_REDUCE_MEAN)
                       : mlp ? nn_cross_entropy_loss(t, nn_mlp_forward(t, net, b.x), b.labels, 0,
                                                     NN_REDUCE_MEAN)
                             : nielsen_loss(t, net, &b, onehot);
        nn_model_zero_grad(m);
        ag_backward(t, l);
        if (comm) {
            double t0 = now();
            if (nn_comm_average_grads(comm, m) != AG_OK) {
                fprintf(stderr, "bench: %s\n", nn_comm_errmsg(comm));
                goto done;
            }
            in_allreduce += now() - t0;
        }
        nn_optim_step(opt);
        if (ag_tape_status(t) != AG_OK) {
            fprintf(stderr, "bench: %s\n", ag_tape_errmsg(t));
            goto done;
        }
        loss = ag_item(l);
    }
    double seconds = now() - start;
    if (comm && rank == 0)
        printf("%.9g %ld %.9g %.9g\n", seconds / (double)steps, steps, loss,
               in_allreduce / (double)steps);
    else if (!comm)
        printf("%.9g %ld %.9g\n", seconds / (double)steps, steps, loss);
    rc = 0;
done:
    nn_loader_free(ld);
    free(onehot);
    nn_optim_free(opt);
    ag_tape_free(t);
    ag_pool_free(pool);
    nn_model_free(m);
    nn_dataset_free(train);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 5 && !(argc == 6 && !strcmp(argv[5], "mpi"))) {
        fprintf(stderr, "usage: train_worker mlp|nielsen|cnn BATCH THREADS STEPS [mpi]\n");
        return 2;
    }
    const char *kind = argv[1];
    long long batch = atoll(argv[2]);
    int threads = atoi(argv[3]);
    long steps = atol(argv[4]);
    if ((strcmp(kind, "mlp") && strcmp(kind, "nielsen") && strcmp(kind, "cnn")) || batch < 1 ||
        threads < 0) {
        fprintf(stderr, "train_worker: bad arguments\n");
        return 2;
    }
    nn_comm *comm = NULL;
    char err[300];
    if (argc == 6 && nn_comm_mpi_new(&comm, err, sizeof err) != AG_OK) {
        fprintf(stderr, "train_worker: %s\n", err);
        return 1;
    }
    int rc = train_worker(kind, (int64_t)batch, threads, steps, comm);
    /* A rank that failed alone must not leave the other waiting. */
    if (rc != 0 && comm && nn_comm_status(comm) == AG_OK)
        nn_comm_abort(comm, "train_worker failed on this rank");
    nn_comm_free(comm);
    return rc;
}
