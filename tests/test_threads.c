/*
** test_threads.c: tapes on threads. Two tapes training two independent
** models on two threads must give exactly (bit for bit) the weights of the
** same two trainings run one after the other; so must two tapes that share
** one thread pool. Run under ThreadSanitizer in CI (meson test -C
** build-tsan threads).
*/
#include "nn.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

/* One training job: its own model, tape, optimizer and data, all made and
** used on the thread that runs it. */
typedef struct job {
    uint64_t seed;
    int64_t in, hidden, batch;
    int steps;
    ag_pool *pool;          /* shared between jobs, or NULL */
    int anomaly;            /* train with anomaly mode on */
    /* results */
    float *weights;         /* malloc'ed copy of the final weights */
    size_t bytes;
    double last_loss;
    ag_status status;
    char errmsg[256];
} job;

static void *train(void *arg)
{
    job *j = arg;
    nn_model *m = nn_model_new(NULL, NULL);
    ag_tape *t = ag_tape_new();
    if (!m || !t) {
        j->status = AG_ENOMEM;
        goto done;
    }
    ag_tape_set_pool(t, j->pool);
    ag_tape_set_anomaly(t, j->anomaly);
    nn_model_seed(m, j->seed);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F32, 3, (int64_t[]){j->in, j->hidden, 4}, NN_TANH);
    nn_optim *opt = nn_adam_new(m, 1e-2, 0.9, 0.999, 1e-8, 0.0);
    ag_rng data;
    ag_rng_seed(&data, j->seed ^ 0x5eed);
    int64_t *labels = malloc((size_t)j->batch * sizeof *labels);
    for (int step = 0; step < j->steps && labels; step++) {
        ag_tensor *x = ag_randn(t, &data, AG_F32, 2, (int64_t[]){j->batch, j->in}, 0.0, 1.0);
        for (int64_t i = 0; i < j->batch; i++)
            labels[i] = (int64_t)ag_rng_below(&data, 4);
        ag_tensor *loss = nn_cross_entropy_loss(t, nn_mlp_forward(t, net, x), labels, 0.1,
                                                NN_REDUCE_MEAN);
        nn_model_zero_grad(m);
        ag_backward(t, loss);
        if (ag_tape_status(t) != AG_OK)
            break;
        j->last_loss = ag_item(loss);
        nn_optim_step(opt);
        ag_tape_reset(t);
    }
    j->status = !labels ? AG_ENOMEM : ag_tape_status(t) ? ag_tape_status(t) : nn_model_status(m);
    snprintf(j->errmsg, sizeof j->errmsg, "%s%s", ag_tape_errmsg(t), nn_model_errmsg(m));
    j->bytes = (size_t)nn_model_numel(m) * sizeof(float);
    j->weights = malloc(j->bytes);
    if (j->weights)
        memcpy(j->weights, nn_model_values(m), j->bytes);
    free(labels);
    nn_optim_free(opt);
done:
    ag_tape_free(t);
    nn_model_free(m);
    return NULL;
}

static job make_job(uint64_t seed, int64_t in, int64_t hidden, int64_t batch, int steps)
{
    return (job){.seed = seed, .in = in, .hidden = hidden, .batch = batch, .steps = steps};
}

static void expect_same(const job *seq, const job *par, const char *what)
{
    cr_assert_eq(seq->status, AG_OK, "%s, one after the other: %s", what, seq->errmsg);
    cr_assert_eq(par->status, AG_OK, "%s, on threads: %s", what, par->errmsg);
    cr_assert_not_null(seq->weights);
    cr_assert_not_null(par->weights);
    cr_assert_eq(seq->bytes, par->bytes);
    cr_assert(memcmp(seq->weights, par->weights, seq->bytes) == 0,
              "%s: the weights differ from the sequential run's", what);
    cr_assert_eq(seq->last_loss, par->last_loss, "%s", what);
}

/* Runs a and b one after the other, then copies of them on two threads at
** once, and compares. */
static void sequential_then_parallel(job a, job b, const char *what)
{
    job sa = a, sb = b, pa = a, pb = b;
    train(&sa);
    train(&sb);
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, train, &pa), 0);
    cr_assert_eq(pthread_create(&tb, NULL, train, &pb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    expect_same(&sa, &pa, what);
    expect_same(&sb, &pb, what);
    cr_assert(sa.bytes != sb.bytes || memcmp(sa.weights, sb.weights, sa.bytes) != 0,
              "the two jobs are different trainings");
    free(sa.weights);
    free(sb.weights);
    free(pa.weights);
    free(pb.weights);
}

Test(threads, two_tapes_on_two_threads_match_a_sequential_run)
{
    sequential_then_parallel(make_job(1, 12, 24, 16, 40), make_job(2, 10, 16, 8, 40),
                             "separate models");
}

Test(threads, two_tapes_sharing_one_pool_match_a_sequential_run)
{
    /* Products large enough to be split among the pool's threads: when one
    ** tape finds the pool busy, its product runs on its own thread instead. */
    ag_pool *pool = ag_pool_new(3);
    cr_assert_not_null(pool);
    job a = make_job(3, 256, 128, 64, 6), b = make_job(4, 256, 96, 64, 6);
    a.pool = b.pool = pool;
    sequential_then_parallel(a, b, "shared pool");
    ag_pool_free(pool);
}

Test(threads, each_tape_with_its_own_pool)
{
    ag_pool *pa = ag_pool_new(2), *pb = ag_pool_new(2);
    cr_assert(pa && pb);
    job a = make_job(5, 256, 128, 64, 4), b = make_job(6, 200, 128, 64, 4);
    a.pool = pa;
    b.pool = pb;
    sequential_then_parallel(a, b, "own pools");
    ag_pool_free(pa);
    ag_pool_free(pb);
}

Test(threads, anomaly_mode_and_errors_stay_on_their_tape)
{
    /* Anomaly messages use per-thread scratch space; one tape's error is
    ** never seen on the other. */
    job a = make_job(7, 8, 8, 4, 30), b = make_job(8, 8, 8, 4, 30);
    a.anomaly = b.anomaly = 1;
    sequential_then_parallel(a, b, "anomaly mode");
}

/* Fails its own tape while the other thread trains. */
static void *fail_own_tape(void *arg)
{
    ag_tape *t = arg;
    for (int i = 0; i < 1000; i++) {
        ag_tensor *x = ag_ones(t, AG_F64, 1, (int64_t[]){3});
        ag_matmul(t, x, ag_ones(t, AG_F64, 2, (int64_t[]){4, 2}));
        if (ag_tape_status(t) != AG_ESHAPE || !strstr(ag_tape_errmsg(t), "inner sizes 3 and 4"))
            return t;
        ag_tape_reset(t);
    }
    return NULL;
}

Test(threads, an_error_on_one_tape_does_not_touch_another)
{
    ag_tape *bad = ag_tape_new();
    job good = make_job(9, 12, 24, 16, 40), ref = good;
    train(&ref);
    pthread_t tb, tg;
    cr_assert_eq(pthread_create(&tb, NULL, fail_own_tape, bad), 0);
    cr_assert_eq(pthread_create(&tg, NULL, train, &good), 0);
    void *bad_result;
    pthread_join(tb, &bad_result);
    pthread_join(tg, NULL);
    cr_assert_null(bad_result, "the failing tape kept its own message");
    expect_same(&ref, &good, "beside a failing tape");
    free(ref.weights);
    free(good.weights);
    ag_tape_free(bad);
}

/* Inference: one model read by two tapes on two threads at once. */
typedef struct reader {
    const nn_mlp *net;
    uint64_t seed;
    float logits[32 * 4];
    ag_status status;
} reader;

static void *infer(void *arg)
{
    reader *r = arg;
    ag_tape *t = ag_tape_new();
    ag_rng data;
    ag_rng_seed(&data, r->seed);
    r->status = AG_ENOMEM;
    for (int pass = 0; t && pass < 20; pass++) {
        ag_tensor *x = ag_randn(t, &data, AG_F32, 2, (int64_t[]){32, 12}, 0.0, 1.0);
        ag_tensor *y = nn_mlp_forward(t, r->net, x);
        r->status = ag_tape_status(t);
        if (r->status != AG_OK || ag_numel(y) != 32 * 4)
            break;
        memcpy(r->logits, ag_data(y), sizeof r->logits);
        ag_tape_reset(t);
    }
    ag_tape_free(t);
    return NULL;
}

Test(threads, one_model_serves_two_threads_for_inference)
{
    nn_model *m = nn_model_new(NULL, NULL);
    nn_model_seed(m, 11);
    nn_mlp *net = nn_mlp_new(m, "mlp", AG_F32, 3, (int64_t[]){12, 24, 4}, NN_GELU);
    nn_mlp_set_dropout(net, 0.5);
    nn_model_set_training(m, 0);   /* dropout would draw from the model's generator */
    cr_assert_eq(nn_model_status(m), AG_OK, "%s", nn_model_errmsg(m));
    reader seq[2] = {{net, 1, {0}, AG_OK}, {net, 2, {0}, AG_OK}};
    reader par[2] = {{net, 1, {0}, AG_OK}, {net, 2, {0}, AG_OK}};
    infer(&seq[0]);
    infer(&seq[1]);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, infer, &par[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(seq[i].status, AG_OK);
        cr_assert_eq(par[i].status, AG_OK);
        cr_assert(memcmp(seq[i].logits, par[i].logits, sizeof seq[i].logits) == 0, "reader %d", i);
    }
    nn_model_free(m);
}
