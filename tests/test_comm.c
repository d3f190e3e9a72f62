/*
** test_comm.c: data-parallel training on the in-process backend (threads
** as ranks). N ranks at batch b match one process at batch N*b; every rank
** holds the same bits after every step; two runs agree bit for bit;
** different models are refused naming the parameter; a rank that never
** comes gives a timeout error instead of a hang.
*/
#include <criterion/criterion.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "nn_comm.h"

enum { MAX_RANKS = 4, STEPS = 100, IN = 4, HIDDEN = 8 };

/* y = sin(x0) + x1 x2 - x3 / 2 on uniform x. */
static nn_dataset *make_data(ag_dtype dt, int64_t n)
{
    nn_dataset *ds = NULL;
    char err[200];
    cr_assert_eq(nn_dataset_new(NULL, NULL, dt, n, 1, (int64_t[]){IN}, NN_Y_VALUES, 1, (int64_t[]){1}, &ds,
                                err, sizeof err), AG_OK, "%s", err);
    ag_rng r;
    ag_rng_seed(&r, 7);
    for (int64_t i = 0; i < n; i++) {
        double x[IN];
        for (int k = 0; k < IN; k++)
            x[k] = 2 * ag_rng_uniform(&r) - 1;
        double y = sin(x[0]) + x[1] * x[2] - x[3] / 2;
        for (int k = 0; k < IN; k++) {
            if (dt == AG_F32)
                ((float *)nn_dataset_x(ds))[i * IN + k] = (float)x[k];
            else
                ((double *)nn_dataset_x(ds))[i * IN + k] = x[k];
        }
        if (dt == AG_F32)
            ((float *)nn_dataset_y(ds))[i] = (float)y;
        else
            ((double *)nn_dataset_y(ds))[i] = y;
    }
    return ds;
}

typedef struct run {
    nn_comm *comm;       /* NULL: one process */
    const nn_dataset *ds;
    ag_dtype dt;
    int adam, batch, hidden;
    uint64_t hashes[STEPS];   /* of the weights after each step */
    double *weights;          /* the final weights, as f64 */
    ag_status status;
    char msg[300];
} run;

static uint64_t fnv(const void *p, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211u;
    return h;
}

static void *train(void *arg)
{
    run *r = arg;
    int rank = r->comm ? nn_comm_rank(r->comm) : 0, size = r->comm ? nn_comm_size(r->comm) : 1;
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 1000 + (uint64_t)rank);   /* differs: the broadcast makes them agree */
    nn_mlp *net = nn_mlp_new(m, "mlp", r->dt, 3, (int64_t[]){IN, r->hidden, 1}, NN_TANH);
    nn_optim *o = r->adam ? nn_adam_new(m, 0.01, 0.9, 0.999, 1e-8, 0.0) : nn_sgd_new(m, 0.1, 0.9, 0.0, 0);
    ag_rng shuffle;
    ag_rng_seed(&shuffle, 99);
    nn_loader *ld = NULL;
    ag_tape *t = ag_tape_new();
    nn_loader_new(r->ds, r->batch, 1, 1, &shuffle, NULL, NULL, &ld, r->msg, sizeof r->msg);
    ag_status s = AG_OK;
    if (r->comm) {
        s = nn_comm_check_model(r->comm, m);
        if (s == AG_OK)
            s = nn_comm_broadcast_model(r->comm, m, o);
        if (s == AG_OK)
            s = nn_loader_set_shard(ld, rank, size, r->msg, sizeof r->msg);
    }
    size_t bytes = (size_t)nn_model_numel(m) * ag_dtype_size(r->dt);
    for (int step = 0; step < STEPS && s == AG_OK;) {
        nn_batch b;
        if (!nn_loader_next(ld, t, &b)) {
            ag_tape_reset(t);
            continue;
        }
        ag_tensor *loss = nn_mse_loss(t, nn_mlp_forward(t, net, b.x), b.y, NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
        if (r->comm)
            s = nn_comm_average_grads(r->comm, m);
        nn_optim_step(o);
        ag_tape_reset(t);
        r->hashes[step++] = fnv(nn_model_values(m), bytes);
    }
    if (r->comm && s != AG_OK)
        snprintf(r->msg, sizeof r->msg, "%s", nn_comm_errmsg(r->comm));
    r->status = s;
    int64_t n = nn_model_numel(m);
    r->weights = calloc((size_t)n, sizeof *r->weights);
    for (int64_t i = 0; i < n; i++)
        r->weights[i] = r->dt == AG_F32 ? ((float *)nn_model_values(m))[i] : ((double *)nn_model_values(m))[i];
    nn_loader_free(ld);
    ag_tape_free(t);
    nn_optim_free(o);
    nn_model_free(m);
    return NULL;
}

/* 'size' ranks on threads at batch b each, into runs[0..size). */
static void run_ranks(run *runs, int size, const nn_dataset *ds, ag_dtype dt, int adam, int batch,
                      const int *hidden)
{
    nn_comm *comms[MAX_RANKS];
    char err[200];
    cr_assert_eq(nn_comm_local_new(size, 30.0, comms, err, sizeof err), AG_OK, "%s", err);
    pthread_t th[MAX_RANKS];
    for (int r = 0; r < size; r++) {
        runs[r] = (run){.comm = comms[r], .ds = ds, .dt = dt, .adam = adam, .batch = batch,
                        .hidden = hidden ? hidden[r] : HIDDEN};
        pthread_create(&th[r], NULL, train, &runs[r]);
    }
    for (int r = 0; r < size; r++) {
        pthread_join(th[r], NULL);
        nn_comm_free(comms[r]);
    }
}

static void free_runs(run *runs, int n)
{
    for (int r = 0; r < n; r++)
        free(runs[r].weights);
}

static void check_matches_one_process(ag_dtype dt, int adam, int size, int batch)
{
    nn_dataset *ds = make_data(dt, 320);
    run one = {.ds = ds, .dt = dt, .adam = adam, .batch = size * batch, .hidden = HIDDEN};
    train(&one);
    run ranks[MAX_RANKS];
    run_ranks(ranks, size, ds, dt, adam, batch, NULL);
    int64_t n = (int64_t)IN * HIDDEN + HIDDEN + HIDDEN + 1;
    double worst = 0;
    for (int r = 0; r < size; r++) {
        cr_assert_eq(ranks[r].status, AG_OK, "rank %d: %s", r, ranks[r].msg);
        for (int step = 0; step < STEPS; step++)
            cr_assert_eq(ranks[r].hashes[step], ranks[0].hashes[step], "rank %d differs after step %d", r,
                         step + 1);
    }
    for (int64_t i = 0; i < n; i++) {
        double a = ranks[0].weights[i], b = one.weights[i];
        double rel = fabs(a - b) / fmax(fabs(b), 1e-3);
        worst = fmax(worst, rel);
    }
    printf("test_comm: %s %s, %d ranks x batch %d vs 1 x batch %d after %d steps: max relative difference "
           "%.3g\n", dt == AG_F32 ? "f32" : "f64", adam ? "adam" : "sgd", size, batch, size * batch, STEPS,
           worst);
    cr_assert(worst < 1e-6, "max relative difference %g", worst);
    cr_assert(one.weights[0] != 0 || one.weights[1] != 0);
    free_runs(ranks, size);
    free(one.weights);
    nn_dataset_free(ds);
}

Test(comm, four_ranks_sgd_match_one_process_f64) { check_matches_one_process(AG_F64, 0, 4, 8); }
Test(comm, four_ranks_adam_match_one_process_f64) { check_matches_one_process(AG_F64, 1, 4, 8); }
Test(comm, two_ranks_adam_match_one_process_f64) { check_matches_one_process(AG_F64, 1, 2, 16); }

Test(comm, two_runs_give_the_same_bits_f32)
{
    nn_dataset *ds = make_data(AG_F32, 320);
    run a[3], b[3];
    run_ranks(a, 3, ds, AG_F32, 1, 8, NULL);
    run_ranks(b, 3, ds, AG_F32, 1, 8, NULL);
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(a[r].status, AG_OK, "%s", a[r].msg);
        cr_assert_eq(memcmp(a[r].hashes, a[0].hashes, sizeof a[r].hashes), 0, "rank %d", r);
        cr_assert_eq(memcmp(a[r].hashes, b[r].hashes, sizeof a[r].hashes), 0, "rank %d", r);
    }
    free_runs(a, 3);
    free_runs(b, 3);
    nn_dataset_free(ds);
}

Test(comm, different_models_are_refused_naming_the_parameter)
{
    nn_dataset *ds = make_data(AG_F32, 64);
    run runs[2];
    run_ranks(runs, 2, ds, AG_F32, 0, 8, (int[]){8, 9});
    for (int r = 0; r < 2; r++) {
        cr_assert_eq(runs[r].status, AG_ESHAPE, "rank %d: %s", r, runs[r].msg);
        cr_assert(strstr(runs[r].msg, "nn_comm_check_model") && strstr(runs[r].msg, "'mlp.0.weight' f32 [4,8]"),
                  "rank %d: %s", r, runs[r].msg);
    }
    cr_assert(strstr(runs[1].msg, "rank 1 has 'mlp.0.weight' f32 [4,9]"), "%s", runs[1].msg);
    free_runs(runs, 2);
    nn_dataset_free(ds);
}

Test(comm, a_rank_that_never_comes_gives_a_timeout)
{
    nn_comm *c[3];
    char err[200];
    cr_assert_eq(nn_comm_local_new(3, 0.2, c, err, sizeof err), AG_OK, "%s", err);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    double x[2] = {1, 2};
    cr_assert_eq(nn_comm_allreduce_sum(c[0], x, 2, AG_F64), AG_EIO);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    cr_assert(waited >= 0.15 && waited < 5, "waited %g s", waited);
    cr_assert(strstr(nn_comm_errmsg(c[0]), "nn_comm_allreduce_sum") &&
              strstr(nn_comm_errmsg(c[0]), "did not arrive"), "%s", nn_comm_errmsg(c[0]));
    /* Sticky, and the group stays broken for the late ranks too. */
    cr_assert_eq(nn_comm_barrier(c[0]), AG_EIO);
    cr_assert_eq(nn_comm_barrier(c[1]), AG_EIO);
    cr_assert(strstr(nn_comm_errmsg(c[1]), "nn_comm_barrier"), "%s", nn_comm_errmsg(c[1]));
    for (int r = 0; r < 3; r++)
        nn_comm_free(c[r]);
}

Test(comm, collectives_sum_in_rank_order_and_check_arguments)
{
    nn_comm *c[1];
    char err[200];
    cr_assert_eq(nn_comm_local_new(1, 1.0, c, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_comm_rank(c[0]), 0);
    cr_assert_eq(nn_comm_size(c[0]), 1);
    cr_assert(strcmp(nn_comm_backend(c[0]), "local") == 0);
    float v[3] = {1, 2, 3};
    cr_assert_eq(nn_comm_allreduce_sum(c[0], v, 3, AG_F32), AG_OK);
    cr_assert(v[0] == 1 && v[1] == 2 && v[2] == 3);
    cr_assert_eq(nn_comm_allreduce_sum(c[0], NULL, 0, AG_F64), AG_OK);   /* nothing to add */
    cr_assert_eq(nn_comm_broadcast(c[0], v, sizeof v, 1), AG_EINVAL);
    cr_assert(strstr(nn_comm_errmsg(c[0]), "nn_comm_broadcast: root 1"), "%s", nn_comm_errmsg(c[0]));
    nn_comm_free(c[0]);
    cr_assert_eq(nn_comm_local_new(0, 1.0, c, err, sizeof err), AG_EINVAL);
    cr_assert(strstr(err, "nn_comm_local_new"), "%s", err);
    cr_assert_eq(nn_comm_average_grads(NULL, NULL), AG_EINVAL);
    cr_assert_eq(nn_comm_rank(NULL), -1);
}

Test(comm, mpi_new_says_whether_the_build_has_mpi)
{
#ifdef AG_TEST_NO_MPI
    nn_comm *c = (nn_comm *)1;
    char err[200];
    cr_assert_eq(nn_comm_mpi_new(&c, err, sizeof err), AG_EUNSUPPORTED);
    cr_assert_null(c);
    cr_assert(strstr(err, "nn_comm_mpi_new") && strstr(err, "no MPI"), "%s", err);
#else
    /* this build has MPI: tests/mpi_train.c runs under mpirun (suite mpi) */
#endif
}

Test(comm, shards_are_disjoint_and_cover_the_batch_of_one_process)
{
    nn_dataset *ds = make_data(AG_F64, 10);
    char err[200];
    ag_rng r0, r1;
    ag_rng_seed(&r0, 5);
    ag_rng_seed(&r1, 5);
    nn_loader *a, *b;
    cr_assert_eq(nn_loader_new(ds, 2, 1, 0, &r0, NULL, NULL, &a, err, sizeof err), AG_OK);
    cr_assert_eq(nn_loader_new(ds, 2, 1, 0, &r1, NULL, NULL, &b, err, sizeof err), AG_OK);
    cr_assert_eq(nn_loader_set_shard(a, 0, 3, err, sizeof err), AG_OK);
    cr_assert_eq(nn_loader_set_shard(b, 3, 3, err, sizeof err), AG_EINVAL);
    cr_assert(strstr(err, "nn_loader_set_shard: rank 3 of 3"), "%s", err);
    cr_assert_eq(nn_loader_set_shard(b, 1, 3, err, sizeof err), AG_OK);
    cr_assert_eq(nn_loader_num_batches(a), 2);   /* 10 / 3 = 3 samples: batches of 2 and 1 */
    ag_tape *t = ag_tape_new();
    double seen[10] = {0};
    nn_batch ba, bb;
    while (nn_loader_next(a, t, &ba)) {
        cr_assert(nn_loader_next(b, t, &bb));
        cr_assert_eq(ba.size, bb.size);
        for (int64_t i = 0; i < ba.size; i++) {
            for (int64_t k = 0; k < 10; k++) {
                const double *x = nn_dataset_x(ds);
                if (x[k * IN] == ((double *)ag_data(ba.x))[i * IN])
                    seen[k] += 1;
                if (x[k * IN] == ((double *)ag_data(bb.x))[i * IN])
                    seen[k] += 1;
            }
        }
    }
    int total = 0;
    for (int k = 0; k < 10; k++) {
        cr_assert(seen[k] <= 1, "sample %d served twice", k);
        total += (int)seen[k];
    }
    cr_assert_eq(total, 6);
    ag_tape_free(t);
    nn_loader_free(a);
    nn_loader_free(b);
    nn_dataset_free(ds);
}

/* Each rank of a group, on a thread: one refuses its call (a NULL buffer),
** or leaves with nn_comm_abort; the others must stop at the same call. */
typedef struct fault_rank {
    nn_comm *c;
    int failing;   /* the rank that fails */
    int leave;     /* it leaves with nn_comm_abort instead of refusing */
    ag_status status;
    char msg[256];
} fault_rank;

static void *fault_thread(void *arg)
{
    fault_rank *f = arg;
    double x[4] = {1, 2, 3, 4};
    int me = nn_comm_rank(f->c) == f->failing;
    for (int step = 0; step < 3 && f->status == AG_OK; step++) {
        if (step == 2 && me && f->leave) {
            nn_comm_abort(f->c, "its file could not be written");
            f->status = nn_comm_status(f->c);
        } else {
            f->status = nn_comm_allreduce_sum(f->c, step == 2 && me ? NULL : x, 4, AG_F64);
        }
    }
    snprintf(f->msg, sizeof f->msg, "%s", nn_comm_errmsg(f->c));
    return NULL;
}

static void run_fault(fault_rank *f, int leave)
{
    nn_comm *c[3];
    char err[200];
    /* A long timeout: the others must learn of the failure, not time out. */
    cr_assert_eq(nn_comm_local_new(3, 60.0, c, err, sizeof err), AG_OK, "%s", err);
    pthread_t th[3];
    for (int r = 0; r < 3; r++) {
        f[r] = (fault_rank){.c = c[r], .failing = 1, .leave = leave};
        cr_assert_eq(pthread_create(&th[r], NULL, fault_thread, &f[r]), 0);
    }
    for (int r = 0; r < 3; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 3; r++)
        nn_comm_free(c[r]);
}

Test(comm, a_rank_that_refuses_a_call_stops_every_rank_naming_it)
{
    fault_rank f[3];
    run_fault(f, 0);
    cr_assert_eq(f[1].status, AG_EINVAL);
    cr_assert(strstr(f[1].msg, "nn_comm_allreduce_sum: buffer NULL of 4 elements"), "%s", f[1].msg);
    for (int r = 0; r < 3; r += 2) {
        cr_assert_eq(f[r].status, AG_EINVAL, "rank %d: %s", r, f[r].msg);
        cr_assert(strstr(f[r].msg, "nn_comm_allreduce_sum: rank 1 failed, so this rank stops too: "
                                   "nn_comm_allreduce_sum: buffer NULL"), "rank %d: %s", r, f[r].msg);
    }
}

Test(comm, a_rank_that_aborts_ends_the_others_wait)
{
    fault_rank f[3];
    run_fault(f, 1);
    cr_assert_eq(f[1].status, AG_ESTATE);
    cr_assert(strstr(f[1].msg, "nn_comm_abort: this rank left: its file could not be written"), "%s",
              f[1].msg);
    for (int r = 0; r < 3; r += 2) {
        cr_assert_eq(f[r].status, AG_EIO, "rank %d: %s", r, f[r].msg);
        cr_assert(strstr(f[r].msg, "rank 1 left: its file could not be written"), "rank %d: %s", r,
                  f[r].msg);
    }
}

Test(comm, set_timeout_checks_its_argument)
{
    nn_comm *c[1];
    char err[200];
    cr_assert_eq(nn_comm_local_new(1, 1.0, c, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_comm_set_timeout(NULL, 1), AG_EINVAL);
    cr_assert_eq(nn_comm_set_timeout(c[0], 0), AG_OK);   /* for ever */
    cr_assert_eq(nn_comm_set_timeout(c[0], 5), AG_OK);
    cr_assert_eq(nn_comm_set_timeout(c[0], -1), AG_EINVAL);
    cr_assert(strstr(nn_comm_errmsg(c[0]), "nn_comm_set_timeout: -1 s"), "%s", nn_comm_errmsg(c[0]));
    nn_comm_abort(NULL, "nothing");
    nn_comm_free(c[0]);
}

/* Buffers (batch norm's running statistics) start as rank 0's on every
** rank, as the parameters do. */
typedef struct buffer_rank {
    nn_comm *comm;
    int rank;
    float got[3];
    ag_status st;
} buffer_rank;

static void *broadcast_buffers(void *arg)
{
    buffer_rank *b = arg;
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tensor *w = nn_param(m, "w", AG_F32, 1, (int64_t[]){2});
    ag_tensor *buf = nn_buffer(m, "bn.running_mean", AG_F32, 1, (int64_t[]){3});
    ag_fill(w, (double)b->rank);
    ag_fill(buf, 10.0 + b->rank);
    b->st = nn_comm_broadcast_model(b->comm, m, NULL);
    memcpy(b->got, ag_data(nn_model_find_buffer(m, "bn.running_mean")), sizeof b->got);
    nn_model_free(m);
    return NULL;
}

Test(comm, broadcast_model_copies_rank_0s_buffers)
{
    nn_comm *c[2];
    char err[256];
    cr_assert_eq(nn_comm_local_new(2, 30.0, c, err, sizeof err), AG_OK, "%s", err);
    buffer_rank b[2] = {{c[0], 0, {0}, AG_OK}, {c[1], 1, {0}, AG_OK}};
    pthread_t th[2];
    for (int r = 0; r < 2; r++)
        cr_assert_eq(pthread_create(&th[r], NULL, broadcast_buffers, &b[r]), 0);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 2; r++) {
        cr_expect_eq(b[r].st, AG_OK);
        for (int i = 0; i < 3; i++)
            cr_expect_eq(b[r].got[i], 10.0f, "rank %d buffer element %d", r, i);
        nn_comm_free(c[r]);
    }
}
