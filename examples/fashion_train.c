/*
** fashion_train.c: the training program of fashion_mnist and fashion_cnn
** (see fashion_train.h): options, the epoch loop, testing, checkpoints and
** data-parallel ranks. The networks are the programs' own.
*/
#include "fashion_train.h"

#include "cli.h"
#include "fashion_data.h"
#include "fashion_history.h"
#include "nn_comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SIDE = 28 };   /* images are SIDE x SIDE pixels */

typedef struct options {
    const char *data, *resume, *log;
    char checkpoint[256], svg[256];   /* defaults made from the program's name */
    int cosine;   /* decay the learning rate along a cosine (else constant) */
    int flip;     /* mirror each training image left-right with probability 1/2 */
    long epochs, decay_epochs, batch, train_limit, test_limit, seed, threads;
    double lr;
} options;

/* ----------------------------------------------------------------- options */

static void usage(const fashion_program *p, FILE *f)
{
    int w = (int)strlen(p->name) + 8;   /* "usage: NAME " */
    fprintf(f,
            "usage: %s [--data DIR] [--epochs E] [--batch B] [--lr RATE] [--seed S]\n"
            "%*s[--train-limit N] [--test-limit N] [--threads T]\n"
            "%*s[--schedule cosine|constant] [--decay-epochs N]\n"
            "%*s[--flip on|off] [--checkpoint FILE] [--resume FILE] [--svg FILE]\n"
            "%*s[--log FILE]\n"
            "Trains on Fashion-MNIST (f32), with softmax cross-entropy and Adam:\n"
            "  %s\n"
            "printing the test accuracy after every epoch. Started by mpirun with more than\n"
            "one rank, it trains data-parallel: --batch is split over the ranks.\n"
            "  --data DIR         the IDX files (plain or .gz); default %s\n"
            "                     (Debian: apt-get install dataset-fashion-mnist)\n"
            "  --epochs E         train until epoch E (counting resumed ones); default %ld\n"
            "  --batch B          mini-batch size; default 64\n"
            "  --lr RATE          Adam's learning rate; default %g\n"
            "  --schedule S       cosine: lower the rate along a half cosine to 1%% of it at\n"
            "                     the end of epoch --decay-epochs (the default); constant: keep it\n"
            "  --decay-epochs N   the cosine's length in epochs, whatever --epochs says, so a\n"
            "                     run stopped and resumed follows the same rates; default %ld\n"
            "  --flip on|off      mirror each training image left-right with probability 1/2\n"
            "                     (drawn from the model's generator); default off\n"
            "  --seed S           seed of the weights, dropout, mirroring and shuffling; default 1\n"
            "  --train-limit N    use only the first N training images\n"
            "  --test-limit N     use only the first N test images\n"
            "  --threads T        threads for the training step, 0 for one per core; default 0\n"
            "                     (the results are the same bits on any number)\n"
            "  --checkpoint FILE  written after every epoch; default %s.safetensors\n"
            "  --resume FILE      go on from a checkpoint written by this program: the weights,\n"
            "                     Adam's state, the schedule's position and the shuffling, so\n"
            "                     the run ends with the bits of one never interrupted\n"
            "  --svg FILE         the loss and accuracy curves; default %s_curve.svg\n"
            "  --log FILE         append each epoch's metrics to FILE as JSON lines\n",
            p->name, w, "", w, "", w, "", w, "", p->network, FASHION_DEFAULT_DIR, p->epochs, p->lr,
            p->epochs, p->name, p->name);
}

/* Returns 0, 1 for --help (printed), or -1 after a message. */
static int parse_args(const fashion_program *p, int argc, char **argv, options *o)
{
    *o = (options){.cosine = 1, .epochs = p->epochs, .decay_epochs = p->epochs, .batch = 64,
                   .seed = 1, .lr = p->lr};
    snprintf(o->checkpoint, sizeof o->checkpoint, "%s.safetensors", p->name);
    snprintf(o->svg, sizeof o->svg, "%s_curve.svg", p->name);
    const char *checkpoint = NULL, *svg_path = NULL;
    static const char *const names[] = {"--data",        "--checkpoint", "--resume",
                                        "--svg",         "--epochs",     "--batch",
                                        "--train-limit", "--test-limit", "--seed",
                                        "--threads",     "--lr",         "--decay-epochs",
                                        "--log",         "--schedule",   "--flip"};
    const int count = (int)(sizeof names / sizeof names[0]);
    const char *prog = p->name;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(p, stdout);
            return 1;
        }
        int k = 0;
        while (k < count && strcmp(a, names[k]))
            k++;
        if (k == count) {
            fprintf(stderr, "%s: unknown option %s (try --help)\n", prog, a);
            return -1;
        }
        if (!(v = cli_value(prog, argc, argv, &i)))
            return -1;
        int bad = 0;
        switch (k) {
        case 0: o->data = v; break;
        case 1: checkpoint = v; break;
        case 2: o->resume = v; break;
        case 3: svg_path = v; break;
        case 4: bad = cli_long(prog, a, v, 0, FASHION_MAX_EPOCHS, &o->epochs); break;
        case 5: bad = cli_long(prog, a, v, 1, 60000, &o->batch); break;
        case 6: bad = cli_long(prog, a, v, 1, 60000, &o->train_limit); break;
        case 7: bad = cli_long(prog, a, v, 1, 10000, &o->test_limit); break;
        case 8: bad = cli_long(prog, a, v, 0, 2147483647, &o->seed); break;
        case 9: bad = cli_long(prog, a, v, 0, 1024, &o->threads); break;
        case 10: bad = cli_double(prog, a, v, 0, 10, &o->lr); break;
        case 11: bad = cli_long(prog, a, v, 1, FASHION_MAX_EPOCHS, &o->decay_epochs); break;
        case 12: o->log = v; break;
        case 13:
            o->cosine = !strcmp(v, "cosine");
            if (!o->cosine && strcmp(v, "constant")) {
                fprintf(stderr, "%s: --schedule: '%s' is neither cosine nor constant\n", prog, v);
                bad = 1;
            }
            break;
        default:
            o->flip = !strcmp(v, "on");
            if (!o->flip && strcmp(v, "off")) {
                fprintf(stderr, "%s: --flip: '%s' is neither on nor off\n", prog, v);
                bad = 1;
            }
            break;
        }
        if (bad)
            return -1;
    }
    const char *given[2] = {checkpoint, svg_path};
    char *dest[2] = {o->checkpoint, o->svg};
    for (int k = 0; k < 2; k++)
        if (given[k] && snprintf(dest[k], sizeof o->svg, "%s", given[k]) >= (int)sizeof o->svg) {
            fprintf(stderr, "%s: %s: the path is longer than %zu characters\n", prog,
                    k ? "--svg" : "--checkpoint", sizeof o->svg - 1);
            return -1;
        }
    return 0;
}

/* ---------------------------------------------------------------- training */

typedef struct trainer {
    const fashion_program *p;
    nn_model *model;
    void *net;
    nn_optim *adam;
    ag_tape *tape;
    ag_pool *pool;
    nn_schedule schedule;   /* the learning rate of each step */
    int64_t step;           /* steps taken, counting resumed epochs */
    ag_rng shuffle;         /* draws each epoch's order; kept in checkpoints */
    int flip;               /* --flip */
    nn_comm *comm;          /* under mpirun with more than one rank; else NULL */
    int rank;
} trainer;

/* Mirrors each image of the batch left-right with probability 1/2, drawn
** from the model's generator, which checkpoints keep (so a resumed run
** mirrors as the whole run would). */
static void mirror_some(nn_model *m, ag_tensor *x)
{
    float *px = ag_data(x);
    ag_rng *r = nn_model_rng(m);
    for (int64_t n = 0; n < ag_dim(x, 0); n++) {
        if (ag_rng_uniform(r) < 0.5)
            continue;
        for (float *row = px + n * SIDE * SIDE; row < px + (n + 1) * SIDE * SIDE; row += SIDE)
            for (int i = 0, j = SIDE - 1; i < j; i++, j--) {
                float v = row[i];
                row[i] = row[j];
                row[j] = v;
            }
    }
}

/* Test loss and accuracy in evaluation mode (running statistics, no
** dropout); with 'confusion' (10 x 10, zeroed here) also the confusion
** matrix. Returns 0, or -1 after a message. */
static int evaluate(trainer *tr, const nn_dataset *test, double *loss, double *acc,
                    int64_t *confusion)
{
    nn_loader *ld = NULL;
    char err[512];
    if (nn_loader_new(test, tr->p->eval_batch, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err) !=
        AG_OK) {
        fprintf(stderr, "%s: %s\n", tr->p->name, err);
        return -1;
    }
    if (confusion)
        memset(confusion, 0, sizeof *confusion * FASHION_CLASSES * FASHION_CLASSES);
    ag_tape *t = tr->tape;
    double loss_sum = 0;
    int64_t correct = 0;
    nn_batch b;
    ag_status st = AG_OK;
    nn_model_set_training(tr->model, 0);
    ag_tape_reset(t);
    while (st == AG_OK && nn_loader_next(ld, t, &b)) {
        ag_no_grad_begin(t);
        ag_tensor *logits = tr->p->forward(t, tr->net, b.x);
        ag_tensor *l = nn_cross_entropy_loss(t, logits, b.labels, 0, NN_REDUCE_SUM);
        ag_no_grad_end(t);
        int64_t right = 0;
        st = ag_tape_status(t);
        if (st != AG_OK) {
            snprintf(err, sizeof err, "%s", ag_tape_errmsg(t));
            break;
        }
        st = nn_count_correct(logits, b.labels, &right, err, sizeof err);
        if (st == AG_OK && confusion)
            st = nn_confusion_add(logits, b.labels, FASHION_CLASSES, confusion, err, sizeof err);
        loss_sum += ag_item(l);
        correct += right;
        ag_tape_reset(t);
    }
    nn_model_set_training(tr->model, 1);
    nn_loader_free(ld);
    if (st == AG_OK && ag_tape_status(t) != AG_OK) {   /* the loader's own failure */
        st = ag_tape_status(t);
        snprintf(err, sizeof err, "%s", ag_tape_errmsg(t));
    }
    if (st != AG_OK) {
        fprintf(stderr, "%s: %s\n", tr->p->name, err);
        return -1;
    }
    *loss = loss_sum / (double)nn_dataset_len(test);
    *acc = (double)correct / (double)nn_dataset_len(test);
    return 0;
}

/* One pass over the training set, adding the epoch's loss points to the
** history. '*loss' and '*acc' receive the mean loss and the accuracy on the
** batches as they were trained on, '*seconds' the time taken. Returns 0, or
** -1 after a message. */
static int train_epoch(trainer *tr, nn_loader *ld, const char *label, fashion_history *h,
                       double *loss, double *acc, double *seconds)
{
    ag_tape *t = tr->tape;
    int64_t steps = nn_loader_num_batches(ld), step = 0, seen = 0, correct = 0;
    int64_t tenth_steps = 0;
    double epoch_loss = 0, tenth_loss = 0;
    int tenth = 0;
    char err[512] = "";
    nn_progress bar;
    nn_progress_start(&bar, stdout, label, steps);
    nn_batch b;
    ag_tape_reset(t);
    while (nn_loader_next(ld, t, &b)) {
        if (tr->flip)
            mirror_some(tr->model, b.x);
        ag_tensor *logits = tr->p->forward(t, tr->net, b.x);
        ag_tensor *loss = nn_cross_entropy_loss(t, logits, b.labels, 0, NN_REDUCE_MEAN);
        nn_model_zero_grad(tr->model);
        ag_backward(t, loss);
        if (tr->comm && ag_tape_status(t) == AG_OK &&
            nn_comm_average_grads(tr->comm, tr->model) != AG_OK) {
            snprintf(err, sizeof err, "%s", nn_comm_errmsg(tr->comm));
            break;
        }
        int64_t right = 0;
        if (ag_tape_status(t) != AG_OK ||
            nn_count_correct(logits, b.labels, &right, err, sizeof err) != AG_OK)
            break;
        nn_optim_set_lr(tr->adam, nn_schedule_lr(&tr->schedule, tr->step++));
        nn_optim_step(tr->adam);
        double l = ag_item(loss);
        step++;
        seen += b.size;
        correct += right;
        epoch_loss += l;
        tenth_loss += l;
        tenth_steps++;
        /* Tenth k of the epoch ends once step reaches (k + 1) / 10 of it; an
        ** epoch of fewer than ten steps gives a step's loss to several tenths. */
        if (step * FASHION_LOSS_POINTS >= (tenth + 1) * steps) {
            double mean = tenth_loss / (double)tenth_steps;
            while (tenth < FASHION_LOSS_POINTS && step * FASHION_LOSS_POINTS >= (tenth + 1) * steps) {
                h->loss[h->n_loss++] = mean;
                tenth++;
            }
            tenth_loss = 0;
            tenth_steps = 0;
        }
        nn_progress_update(&bar, step, epoch_loss / (double)step);
        ag_tape_reset(t);
    }
    *seconds = nn_progress_finish(&bar);
    if (err[0] || ag_tape_status(t) != AG_OK || nn_model_status(tr->model) != AG_OK) {
        fprintf(stderr, "%s: %s\n", tr->p->name,
                err[0] ? err : ag_tape_status(t) ? ag_tape_errmsg(t) : nn_model_errmsg(tr->model));
        return -1;
    }
    *loss = step ? epoch_loss / (double)step : 0;
    *acc = seen ? (double)correct / (double)seen : 0;
    return 0;
}

static void print_per_class(const int64_t *confusion)
{
    printf("Test accuracy per class:\n");
    for (int c = 0; c < FASHION_CLASSES; c++) {
        int64_t total = 0;
        for (int k = 0; k < FASHION_CLASSES; k++)
            total += confusion[c * FASHION_CLASSES + k];
        printf("  %-12s %6.2f%%\n", fashion_class_names[c],
               total ? 100.0 * (double)confusion[c * FASHION_CLASSES + c] / (double)total : 0.0);
    }
}

/* ---------------------------------------------------------- setting up */

/* Under mpirun with more than one rank: the communicator, the same model on
** every rank (checked), rank 0's weights, buffers and Adam state everywhere,
** and output from rank 0 only. Returns 0, or -1 after a message. */
static int start_ranks(trainer *tr, const options *o)
{
    const char *ranks = getenv("OMPI_COMM_WORLD_SIZE");
    if (!ranks)
        ranks = getenv("PMI_SIZE");   /* MPICH's launcher */
    if (!ranks || atoi(ranks) <= 1)
        return 0;
    const char *prog = tr->p->name;
    char err[512];
    if (nn_comm_mpi_new(&tr->comm, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return -1;
    }
    tr->rank = nn_comm_rank(tr->comm);
    int size = nn_comm_size(tr->comm);
    if (o->batch % size != 0) {
        fprintf(stderr, "%s: --batch %ld does not split evenly over %d ranks\n", prog, o->batch,
                size);
        return -1;
    }
    if (nn_comm_check_model(tr->comm, tr->model) != AG_OK ||
        nn_comm_broadcast_model(tr->comm, tr->model, tr->adam) != AG_OK) {
        fprintf(stderr, "%s: %s\n", prog, nn_comm_errmsg(tr->comm));
        return -1;
    }
    if (tr->rank != 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "%s: /dev/null: cannot write there\n", prog);
        return -1;
    }
    return 0;
}

/* Builds the model, optimizer, tape and pool; loads the checkpoint when
** resuming. Returns 0, or -1 after a message. */
static int setup(trainer *tr, const fashion_program *p, const options *o, fashion_history *h)
{
    memset(tr, 0, sizeof *tr);
    tr->p = p;
    tr->flip = o->flip;
    tr->model = nn_model_new(NULL, NULL);
    tr->tape = ag_tape_new();
    tr->pool = ag_pool_new((int)o->threads);
    if (!tr->model || !tr->tape || !tr->pool) {
        fprintf(stderr, "%s: out of memory\n", p->name);
        return -1;
    }
    ag_tape_set_pool(tr->tape, tr->pool);
    nn_model_set_pool(tr->model, tr->pool);
    nn_model_seed(tr->model, (uint64_t)o->seed);
    tr->net = p->build(tr->model);
    tr->adam = nn_adam_new(tr->model, o->lr, 0.9, 0.999, 1e-8, 0.0);
    if (nn_model_status(tr->model) != AG_OK || !tr->net) {
        fprintf(stderr, "%s: %s\n", p->name,
                nn_model_status(tr->model) ? nn_model_errmsg(tr->model) : "the network");
        return -1;
    }
    /* Each epoch's order comes from this one generator, saved with each
    ** checkpoint: a resumed run draws the orders the whole run would. */
    ag_rng_seed(&tr->shuffle, (uint64_t)o->seed * 1000003u);
    if (o->resume &&
        fashion_checkpoint_load(p->name, tr->model, tr->adam, &tr->shuffle, o->resume, h) != 0)
        return -1;
    return start_ranks(tr, o);
}

/* 'status' is the run's: a rank that stops on an error of its own (a
** checkpoint it could not write, a tape in error) while the others would go
** on waiting for its gradients ends them with nn_comm_abort; an error of
** the communicator's own is every rank's already. */
static void teardown(trainer *tr, int status)
{
    if (status != 0 && tr->comm && nn_comm_status(tr->comm) == AG_OK) {
        char why[128];
        snprintf(why, sizeof why, "%s stopped on an error of this rank (above)", tr->p->name);
        nn_comm_abort(tr->comm, why);
    }
    nn_optim_free(tr->adam);
    ag_tape_free(tr->tape);
    ag_pool_free(tr->pool);
    nn_model_free(tr->model);
    nn_comm_free(tr->comm);
}

/* ----------------------------------------------------------------- the run */

static void print_banner(const trainer *tr, const options *o, const nn_dataset *train,
                         const nn_dataset *test)
{
    int threads = ag_pool_size(tr->pool);
    printf("%s\n(%lld parameters, f32), Adam lr %g (%s), batch %ld%s, %d thread%s\n",
           tr->p->network, (long long)nn_model_numel(tr->model), o->lr,
           o->cosine ? "cosine decay" : "constant", o->batch,
           o->flip ? ", images mirrored at random" : "", threads, threads == 1 ? "" : "s");
    if (tr->comm)
        printf("data-parallel: %d ranks (%s) of batch %ld each\n", nn_comm_size(tr->comm),
               nn_comm_backend(tr->comm), o->batch / nn_comm_size(tr->comm));
    printf("%lld training images, %lld test images\n", (long long)nn_dataset_len(train),
           (long long)nn_dataset_len(test));
}

/* The epochs from the history's to --epochs: train, test, log, checkpoint
** and draw after each. Returns 0, or -1 after a message. */
static int run_epochs(trainer *tr, const options *o, nn_loader *ld, const nn_dataset *test,
                      nn_metrics_log *log, fashion_history *h)
{
    const fashion_program *p = tr->p;
    int start = h->epochs, status = 0;
    double total_seconds = 0, test_loss = 0, test_acc = 0;
    int64_t confusion[FASHION_CLASSES * FASHION_CLASSES];
    char err[512];
    for (int epoch = start + 1; status == 0 && epoch <= o->epochs; epoch++) {
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%ld", epoch, o->epochs);
        double train_loss, train_acc, seconds;
        status = train_epoch(tr, ld, label, h, &train_loss, &train_acc, &seconds);
        if (status == 0)
            status = evaluate(tr, test, &test_loss, &test_acc,
                              epoch == o->epochs ? confusion : NULL);
        if (status != 0)
            break;
        total_seconds += seconds;
        h->train_acc[h->epochs] = train_acc;
        h->test_acc[h->epochs] = test_acc;
        h->epochs++;
        /* The MLP's steps take under a millisecond, the CNN's tens. */
        double steps = (double)nn_loader_num_batches(ld);
        printf("epoch %2d  train loss %.4f  train accuracy %.2f%%  test loss %.4f  "
               "test accuracy %.2f%%  (%.1f s, ",
               epoch, train_loss, 100 * train_acc, test_loss, 100 * test_acc, seconds);
        if (p->ms_per_step)
            printf("%.1f ms/step)\n", 1e3 * seconds / steps);
        else
            printf("%.0f steps/s)\n", steps / seconds);
        fflush(stdout);
        static const char *const columns[] = {"epoch", "train_loss", "train_accuracy",
                                              "test_loss", "test_accuracy", "seconds"};
        double record[] = {epoch, train_loss, train_acc, test_loss, test_acc, seconds};
        if (log && nn_metrics_log_write(log, 6, columns, record, err, sizeof err) != AG_OK) {
            fprintf(stderr, "%s: --log: %s\n", p->name, err);
            return -1;
        }
        if (tr->rank != 0)
            continue;   /* one writer: every rank holds the same weights */
        status = fashion_checkpoint_save(p->name, tr->model, tr->adam, &tr->shuffle, o->checkpoint,
                                         h);
        if (status == 0 && fashion_curves_write(o->svg, h, p->target, p->target_label) != 0) {
            perror(o->svg);
            status = -1;
        }
        if (status == 0 && epoch == o->epochs)
            print_per_class(confusion);
    }
    if (status == 0 && h->epochs > start) {
        int n = h->epochs - start;
        printf("trained %d epoch%s in %.1f s (%.1f s per epoch); checkpoint %s, curves %s\n", n,
               n == 1 ? "" : "s", total_seconds, total_seconds / n, o->checkpoint, o->svg);
        printf("final test accuracy %.2f%%\n", 100 * test_acc);
    }
    return status;
}

static int run(const fashion_program *p, const options *o, const nn_dataset *train,
               const nn_dataset *test, fashion_history *h)
{
    trainer tr;
    if (setup(&tr, p, o, h) != 0) {
        teardown(&tr, -1);
        return -1;
    }
    print_banner(&tr, o, train, test);
    int status = 0, start = h->epochs;
    if (o->resume) {
        double test_loss, test_acc;
        status = evaluate(&tr, test, &test_loss, &test_acc, NULL);
        if (status == 0)
            printf("resumed from %s after epoch %d: test loss %.4f, test accuracy %.2f%%\n",
                   o->resume, start, test_loss, 100 * test_acc);
        if (status == 0 && start >= o->epochs)
            printf("nothing to train: the checkpoint has reached --epochs %ld\n", o->epochs);
    }
    char err[512];
    nn_loader *ld = NULL;
    int ranks = tr.comm ? nn_comm_size(tr.comm) : 1;
    if (status == 0 && (nn_loader_new(train, o->batch / ranks, 1, 0, &tr.shuffle, NULL, NULL, &ld,
                                      err, sizeof err) != AG_OK ||
                        nn_loader_set_shard(ld, tr.rank, ranks, err, sizeof err) != AG_OK)) {
        fprintf(stderr, "%s: %s\n", p->name, err);
        status = -1;
    }
    if (status == 0 && o->epochs > start) {
        int64_t steps = nn_loader_num_batches(ld);
        tr.schedule = o->cosine ? nn_schedule_cosine(o->lr, o->lr / 100, 0, o->decay_epochs * steps)
                                : nn_schedule_constant(o->lr);
        tr.step = nn_optim_steps(tr.adam);
    }
    /* A resumed run continues the log it was started with. */
    nn_metrics_log *log = NULL;
    if (status == 0 && o->log && tr.rank == 0 &&
        nn_metrics_log_open(o->log, NN_LOG_JSONL, o->resume != NULL, NULL, NULL, &log, err,
                            sizeof err) != AG_OK) {
        fprintf(stderr, "%s: --log: %s\n", p->name, err);
        status = -1;
    }
    if (status == 0)
        status = run_epochs(&tr, o, ld, test, log, h);
    if (nn_metrics_log_close(log, err, sizeof err) != AG_OK && status == 0) {
        fprintf(stderr, "%s: --log: %s\n", p->name, err);
        status = -1;
    }
    nn_loader_free(ld);
    teardown(&tr, status);
    return status;
}

int fashion_train_main(const fashion_program *p, int argc, char **argv)
{
    options o;
    int parsed = parse_args(p, argc, argv, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    nn_dataset *train = fashion_load(p->name, o.data, 1, AG_F32, o.train_limit);
    nn_dataset *test = train ? fashion_load(p->name, o.data, 0, AG_F32, o.test_limit) : NULL;
    static fashion_history h;   /* large: kept out of the stack */
    int status = test ? run(p, &o, train, test, &h) : -1;
    nn_dataset_free(test);
    nn_dataset_free(train);
    return status == 0 ? 0 : 1;
}
