/*
** fashion_cnn.c: a small convolutional network learns Fashion-MNIST, in f32:
** two blocks of 3x3 convolution, batch normalisation, ReLU and 2x2 max
** pooling (1 -> 16 -> 32 channels, 28x28 -> 14x14 -> 7x7), then a dense head
** 1568 -> 128 -> 10 with dropout, trained with softmax cross-entropy and
** Adam under a cosine learning rate. Around it, what fashion_mnist shows for
** its MLP: the Debian package's data, a progress bar, the time and test
** accuracy of every epoch, a checkpoint after every epoch that --resume
** continues from, and the curves as an SVG picture.
**
**     fashion_cnn                              the default run: 12 epochs
**     fashion_cnn --resume fashion_cnn.safetensors --epochs 14
**     fashion_cnn --train-limit 2000 --test-limit 500 --epochs 1
**
** Batch normalisation follows the model's mode: batch statistics while
** training, the running ones (nn_model_set_training(m, 0)) when testing.
** The network is built and run by cnn_new and cnn_forward alone
** (fashion_cnn_net.h, shared with its tests and the benchmark), so a
** different architecture is a change to those two functions.
*/
#include "cli.h"
#include "fashion_cnn_net.h"
#include "fashion_data.h"
#include "nn.h"
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    MAX_EPOCHS = 1000,
    LOSS_POINTS_PER_EPOCH = 10,   /* the curve's resolution */
    EVAL_BATCH = 100,   /* small enough that testing needs no more memory than training */
    HISTORY_CHARS = 16 * MAX_EPOCHS * LOSS_POINTS_PER_EPOCH,
};

typedef struct options {
    const char *data, *checkpoint, *resume, *svg, *log;
    int cosine;   /* decay the learning rate along a cosine (else constant) */
    int flip;     /* mirror each training image left-right with probability 1/2 */
    long epochs, decay_epochs, batch, train_limit, test_limit, seed, threads;
    double lr;
} options;

/* What the curves show; kept in the checkpoint so a resumed run draws them
** whole. */
typedef struct history {
    int epochs;                                          /* finished */
    int n_loss;                                          /* loss points */
    double loss[MAX_EPOCHS * LOSS_POINTS_PER_EPOCH];     /* mean loss of each tenth of an epoch */
    double train_acc[MAX_EPOCHS], test_acc[MAX_EPOCHS];  /* per epoch, in [0, 1] */
} history;

/* ----------------------------------------------------------------- options */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: fashion_cnn [--data DIR] [--epochs E] [--batch B] [--lr RATE] [--seed S]\n"
            "                   [--train-limit N] [--test-limit N] [--threads T]\n"
            "                   [--schedule cosine|constant] [--decay-epochs N]\n"
            "                   [--flip on|off] [--checkpoint FILE] [--resume FILE] [--svg FILE]\n"
            "                   [--log FILE]\n"
            "Trains a small convolutional network on Fashion-MNIST (f32):\n"
            "  " CNN_DESCRIPTION "\n"
            "with softmax cross-entropy and Adam, printing the test accuracy after every epoch.\n"
            "  --data DIR         the IDX files (plain or .gz); default %s\n"
            "                     (Debian: apt-get install dataset-fashion-mnist)\n"
            "  --epochs E         train until epoch E (counting resumed ones); default 12\n"
            "  --batch B          mini-batch size; default 64\n"
            "  --lr RATE          Adam's learning rate; default 0.002\n"
            "  --schedule S       cosine: lower the rate along a half cosine to 1%% of it at\n"
            "                     the end of epoch --decay-epochs (the default); constant: keep it\n"
            "  --decay-epochs N   the cosine's length in epochs, whatever --epochs says, so a\n"
            "                     run stopped and resumed follows the same rates; default 12\n"
            "  --flip on|off      mirror each training image left-right with probability 1/2\n"
            "                     (drawn from the model's generator); default off\n"
            "  --seed S           seed of the weights, dropout, mirroring and shuffling; default 1\n"
            "  --train-limit N    use only the first N training images\n"
            "  --test-limit N     use only the first N test images\n"
            "  --threads T        threads for the training step, 0 for one per core; default 0\n"
            "                     (the results are the same bits on any number)\n"
            "  --checkpoint FILE  written after every epoch; default fashion_cnn.safetensors\n"
            "  --resume FILE      go on from a checkpoint written by this program\n"
            "  --svg FILE         the loss and accuracy curves; default fashion_cnn_curve.svg\n"
            "  --log FILE         append each epoch's metrics to FILE as JSON lines\n",
            FASHION_DEFAULT_DIR);
}

/* Returns 0, 1 for --help (printed), or -1 after a message. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.checkpoint = "fashion_cnn.safetensors", .svg = "fashion_cnn_curve.svg",
                   .cosine = 1, .epochs = 12, .decay_epochs = 12, .batch = 64, .seed = 1,
                   .lr = 2e-3};
    static const char *const names[] = {"--data",        "--checkpoint", "--resume",
                                        "--svg",         "--epochs",     "--batch",
                                        "--train-limit", "--test-limit", "--seed",
                                        "--threads",     "--lr",         "--decay-epochs",
                                        "--log",         "--schedule",   "--flip"};
    const int count = (int)(sizeof names / sizeof names[0]);
    const char *p = "fashion_cnn";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 1;
        }
        int k = 0;
        while (k < count && strcmp(a, names[k]))
            k++;
        if (k == count) {
            fprintf(stderr, "%s: unknown option %s (try --help)\n", p, a);
            return -1;
        }
        if (!(v = cli_value(p, argc, argv, &i)))
            return -1;
        int bad = 0;
        switch (k) {
        case 0: o->data = v; break;
        case 1: o->checkpoint = v; break;
        case 2: o->resume = v; break;
        case 3: o->svg = v; break;
        case 4: bad = cli_long(p, a, v, 0, MAX_EPOCHS, &o->epochs); break;
        case 5: bad = cli_long(p, a, v, 1, 60000, &o->batch); break;
        case 6: bad = cli_long(p, a, v, 1, 60000, &o->train_limit); break;
        case 7: bad = cli_long(p, a, v, 1, 10000, &o->test_limit); break;
        case 8: bad = cli_long(p, a, v, 0, 2147483647, &o->seed); break;
        case 9: bad = cli_long(p, a, v, 0, 1024, &o->threads); break;
        case 10: bad = cli_double(p, a, v, 0, 10, &o->lr); break;
        case 11: bad = cli_long(p, a, v, 1, MAX_EPOCHS, &o->decay_epochs); break;
        case 12: o->log = v; break;
        case 14:
            o->flip = !strcmp(v, "on");
            if (!o->flip && strcmp(v, "off")) {
                fprintf(stderr, "%s: --flip: '%s' is neither on nor off\n", p, v);
                bad = 1;
            }
            break;
        default:
            o->cosine = !strcmp(v, "cosine");
            if (!o->cosine && strcmp(v, "constant")) {
                fprintf(stderr, "%s: --schedule: '%s' is neither cosine nor constant\n", p, v);
                bad = 1;
            }
            break;
        }
        if (bad)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ checkpoints */

/* Writes n numbers as "a,b,c" into buf; returns buf. */
static char *join(const double *v, int n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%.6g", i ? "," : "", v[i]);
    return buf;
}

/* Reads up to 'max' comma-separated numbers; returns how many, or -1 when the
** text is not such a list. */
static int split(const char *text, double *v, int max)
{
    int n = 0;
    while (text && *text) {
        char *end;
        if (n == max)
            return -1;
        v[n++] = strtod(text, &end);
        if (end == text || (*end && *end != ','))
            return -1;
        text = *end ? end + 1 : end;
    }
    return n;
}

/* A training checkpoint (nn_checkpoint_save): the weights, Adam's state, the
** model's generator (dropout) and, as metadata, the history and the
** shuffling generator. Returns 0, or -1 after a message. */
static int save_checkpoint(nn_model *m, nn_optim *adam, const ag_rng *shuffle, const char *path,
                           const history *h)
{
    static char loss[HISTORY_CHARS], train_acc[HISTORY_CHARS / 4], test_acc[HISTORY_CHARS / 4];
    char epochs[16], rng[NN_RNG_CHARS];
    snprintf(epochs, sizeof epochs, "%d", h->epochs);
    nn_rng_format(shuffle, rng, sizeof rng);
    const char *keys[] = {"epoch", "loss", "train_accuracy", "test_accuracy", "shuffle_rng"};
    const char *values[] = {epochs, join(h->loss, h->n_loss, loss, sizeof loss),
                            join(h->train_acc, h->epochs, train_acc, sizeof train_acc),
                            join(h->test_acc, h->epochs, test_acc, sizeof test_acc), rng};
    char err[512];
    if (nn_checkpoint_save(m, adam, path, 5, keys, values, err, sizeof err) != AG_OK) {
        fprintf(stderr, "fashion_cnn: %s\n", err);
        return -1;
    }
    return 0;
}

/* Loads what save_checkpoint wrote. Returns 0, or -1 after a message. */
static int load_checkpoint(nn_model *m, nn_optim *adam, ag_rng *shuffle, const char *path,
                           history *h)
{
    char err[512];
    nn_safetensors *f = NULL;
    if (nn_checkpoint_load(m, adam, path, 0, err, sizeof err) != AG_OK ||
        nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err) != AG_OK) {
        fprintf(stderr, "fashion_cnn: --resume: %s\n", err);
        return -1;
    }
    const char *epoch = nn_safetensors_metadata_get(f, "epoch");
    h->epochs = epoch ? atoi(epoch) : 0;
    h->n_loss = split(nn_safetensors_metadata_get(f, "loss"), h->loss,
                      MAX_EPOCHS * LOSS_POINTS_PER_EPOCH);
    int train = split(nn_safetensors_metadata_get(f, "train_accuracy"), h->train_acc, MAX_EPOCHS);
    int test = split(nn_safetensors_metadata_get(f, "test_accuracy"), h->test_acc, MAX_EPOCHS);
    const char *rng = nn_safetensors_metadata_get(f, "shuffle_rng");
    int bad_rng = !rng || nn_rng_parse(shuffle, rng) != AG_OK;
    nn_safetensors_close(f);
    if (h->epochs < 0 || h->epochs > MAX_EPOCHS || h->n_loss != h->epochs * LOSS_POINTS_PER_EPOCH ||
        train != h->epochs || test != h->epochs || bad_rng) {
        fprintf(stderr, "fashion_cnn: --resume: %s: the metadata was not written by this program\n",
                path);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- curves */

static int write_curves(const char *path, const history *h)
{
    svg s;
    if (svg_open(&s, path, 860, 400) != 0)
        return -1;
    double epochs = h->epochs > 1 ? h->epochs : 1;
    static double x[MAX_EPOCHS * LOSS_POINTS_PER_EPOCH], y[MAX_EPOCHS * LOSS_POINTS_PER_EPOCH];

    double top = 0;
    for (int i = 0; i < h->n_loss; i++)
        top = fmax(top, h->loss[i]);
    svg_chart loss = {70, 40, 340, 260, 0, epochs, 0, top > 0 ? top * 1.05 : 1};
    svg_chart_axes(&s, &loss, "training loss, mean of each tenth of an epoch", "epoch",
                   "cross-entropy");
    for (int i = 0; i < h->n_loss; i++) {
        x[i] = (i + 1.0) / LOSS_POINTS_PER_EPOCH;
        y[i] = h->loss[i];
    }
    svg_chart_line(&s, &loss, h->n_loss, x, y, "#1f77b4", 2);

    double low = 1;
    for (int e = 0; e < h->epochs; e++)
        low = fmin(low, fmin(h->train_acc[e], h->test_acc[e]));
    low = fmin(floor(low * 20) / 20, 0.85);   /* a round bound that shows 92% */
    svg_chart acc = {500, 40, 340, 260, h->epochs > 1 ? 1 : 0, epochs, 100 * low, 100};
    svg_chart_axes(&s, &acc, "accuracy after each epoch", "epoch", "percent");
    x[0] = acc.xmin, y[0] = 92.0;
    x[1] = epochs, y[1] = 92.0;
    svg_chart_line(&s, &acc, 2, x, y, "#999999", 1);
    const double *series[2] = {h->train_acc, h->test_acc};
    const char *colours[2] = {"#ff7f0e", "#2ca02c"};
    for (int k = 0; k < 2; k++) {
        for (int e = 0; e < h->epochs; e++) {
            x[e] = e + 1;
            y[e] = 100 * series[k][e];
            svg_circle(&s, svg_chart_x(&acc, x[e]), svg_chart_y(&acc, y[e]), 3, colours[k], "none");
        }
        svg_chart_line(&s, &acc, h->epochs, x, y, colours[k], 2);
    }
    svg_legend(&s, 70, 385, colours[0], "training accuracy (during the epoch)");
    svg_legend(&s, 330, 385, colours[1], "test accuracy");
    svg_legend(&s, 450, 385, "#999999", "92%: this example's target");
    return svg_close(&s);
}

/* ---------------------------------------------------------------- training */

typedef struct trainer {
    nn_model *model;
    cnn net;   /* fashion_cnn_net.h */
    nn_optim *adam;
    ag_tape *tape;
    nn_schedule schedule;   /* the learning rate of each step */
    int64_t step;           /* steps taken, counting resumed epochs */
    ag_rng shuffle;         /* draws each epoch's order; kept in checkpoints */
    int flip;               /* --flip */
} trainer;

/* Mirrors each image of the batch (rows of 28 pixels) left-right with
** probability 1/2, drawn from the model's generator, which checkpoints keep
** (so a resumed run mirrors as the whole run would). */
static void mirror_some(nn_model *m, ag_tensor *x)
{
    float *px = ag_data(x);
    ag_rng *r = nn_model_rng(m);
    for (int64_t n = 0; n < ag_dim(x, 0); n++) {
        if (ag_rng_uniform(r) < 0.5)
            continue;
        for (float *row = px + n * CNN_SIDE * CNN_SIDE; row < px + (n + 1) * CNN_SIDE * CNN_SIDE;
             row += CNN_SIDE)
            for (int i = 0, j = CNN_SIDE - 1; i < j; i++, j--) {
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
    if (nn_loader_new(test, EVAL_BATCH, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err) != AG_OK) {
        fprintf(stderr, "fashion_cnn: %s\n", err);
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
        ag_tensor *logits = cnn_forward(t, &tr->net, b.x);
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
    if (st != AG_OK) {
        fprintf(stderr, "fashion_cnn: %s\n", err);
        return -1;
    }
    *loss = loss_sum / (double)nn_dataset_len(test);
    *acc = (double)correct / (double)nn_dataset_len(test);
    return 0;
}

/* One pass over the training set, adding the epoch's loss points to the
** history; '*loss' and '*acc' receive the mean loss and the accuracy on the
** batches as they were trained on, '*seconds' the time taken. Returns 0, or
** -1 after a message. */
static int train_epoch(trainer *tr, nn_loader *ld, const char *label, history *h, double *loss,
                       double *acc, double *seconds)
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
        ag_tensor *logits = cnn_forward(t, &tr->net, b.x);
        ag_tensor *loss = nn_cross_entropy_loss(t, logits, b.labels, 0, NN_REDUCE_MEAN);
        nn_model_zero_grad(tr->model);
        ag_backward(t, loss);
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
        /* Tenth k of the epoch ends once step reaches (k + 1) / 10 of it. */
        if (step * LOSS_POINTS_PER_EPOCH >= (tenth + 1) * steps) {
            double mean = tenth_loss / (double)tenth_steps;
            while (tenth < LOSS_POINTS_PER_EPOCH &&
                   step * LOSS_POINTS_PER_EPOCH >= (tenth + 1) * steps) {
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
        fprintf(stderr, "fashion_cnn: %s\n",
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

/* Builds the model, optimizer, tape and pool; loads the checkpoint when
** resuming. Returns 0, or -1 after a message. */
static int setup(trainer *tr, ag_pool **pool, const options *o, history *h)
{
    memset(tr, 0, sizeof *tr);
    tr->flip = o->flip;
    tr->model = nn_model_new(NULL, NULL);
    tr->tape = ag_tape_new();
    *pool = ag_pool_new((int)o->threads);
    if (!tr->model || !tr->tape || !*pool) {
        fprintf(stderr, "fashion_cnn: out of memory\n");
        return -1;
    }
    ag_tape_set_pool(tr->tape, *pool);
    nn_model_set_pool(tr->model, *pool);
    nn_model_seed(tr->model, (uint64_t)o->seed);
    cnn_new(tr->model, AG_F32, &tr->net);
    tr->adam = nn_adam_new(tr->model, o->lr, 0.9, 0.999, 1e-8, 0.0);
    if (nn_model_status(tr->model) != AG_OK) {
        fprintf(stderr, "fashion_cnn: %s\n", nn_model_errmsg(tr->model));
        return -1;
    }
    ag_rng_seed(&tr->shuffle, (uint64_t)o->seed * 1000003u);
    if (o->resume && load_checkpoint(tr->model, tr->adam, &tr->shuffle, o->resume, h) != 0)
        return -1;
    return 0;
}

static void teardown(trainer *tr, ag_pool *pool)
{
    nn_optim_free(tr->adam);
    ag_tape_free(tr->tape);
    ag_pool_free(pool);
    nn_model_free(tr->model);
}

static int run(const options *o, const nn_dataset *train, const nn_dataset *test, history *h)
{
    trainer tr;
    ag_pool *pool = NULL;
    nn_loader *ld = NULL;
    if (setup(&tr, &pool, o, h) != 0) {
        teardown(&tr, pool);
        return -1;
    }
    int status = 0, start = h->epochs;
    printf("CNN %s\n(%lld parameters, f32), Adam lr %g (%s), batch %ld%s, %d thread%s\n",
           CNN_DESCRIPTION, (long long)nn_model_numel(tr.model), o->lr,
           o->cosine ? "cosine decay" : "constant", o->batch,
           o->flip ? ", images mirrored at random" : "", ag_pool_size(pool),
           ag_pool_size(pool) == 1 ? "" : "s");
    printf("%lld training images, %lld test images\n", (long long)nn_dataset_len(train),
           (long long)nn_dataset_len(test));
    double test_loss = 0, test_acc = 0;
    int64_t confusion[FASHION_CLASSES * FASHION_CLASSES];
    if (o->resume) {
        status = evaluate(&tr, test, &test_loss, &test_acc, NULL);
        if (status == 0)
            printf("resumed from %s after epoch %d: test loss %.4f, test accuracy %.2f%%\n",
                   o->resume, start, test_loss, 100 * test_acc);
        if (status == 0 && start >= o->epochs)
            printf("nothing to train: the checkpoint has reached --epochs %ld\n", o->epochs);
    }
    char err[512];
    if (status == 0 && nn_loader_new(train, o->batch, 1, 0, &tr.shuffle, NULL, NULL, &ld, err,
                                     sizeof err) != AG_OK) {
        fprintf(stderr, "fashion_cnn: %s\n", err);
        status = -1;
    }
    if (status == 0 && o->epochs > start) {
        int64_t steps = nn_loader_num_batches(ld);
        tr.schedule = o->cosine ? nn_schedule_cosine(o->lr, o->lr / 100, 0, o->decay_epochs * steps)
                                : nn_schedule_constant(o->lr);
        tr.step = nn_optim_steps(tr.adam);
    }
    nn_metrics_log *log = NULL;
    if (status == 0 && o->log &&
        nn_metrics_log_open(o->log, NN_LOG_JSONL, o->resume != NULL, NULL, NULL, &log, err,
                            sizeof err) != AG_OK) {
        fprintf(stderr, "fashion_cnn: --log: %s\n", err);
        status = -1;
    }
    double total_seconds = 0;
    for (int epoch = start + 1; status == 0 && epoch <= o->epochs; epoch++) {
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%ld", epoch, o->epochs);
        double train_loss, train_acc, seconds;
        status = train_epoch(&tr, ld, label, h, &train_loss, &train_acc, &seconds);
        if (status == 0)
            status = evaluate(&tr, test, &test_loss, &test_acc,
                              epoch == o->epochs ? confusion : NULL);
        if (status != 0)
            break;
        total_seconds += seconds;
        h->train_acc[h->epochs] = train_acc;
        h->test_acc[h->epochs] = test_acc;
        h->epochs++;
        printf("epoch %2d  train loss %.4f  train accuracy %.2f%%  test loss %.4f  "
               "test accuracy %.2f%%  (%.1f s, %.1f ms/step)\n",
               epoch, train_loss, 100 * train_acc, test_loss, 100 * test_acc, seconds,
               1e3 * seconds / (double)nn_loader_num_batches(ld));
        fflush(stdout);
        static const char *const columns[] = {"epoch", "train_loss", "train_accuracy",
                                              "test_loss", "test_accuracy", "seconds"};
        double record[] = {epoch, train_loss, train_acc, test_loss, test_acc, seconds};
        if (log && nn_metrics_log_write(log, 6, columns, record, err, sizeof err) != AG_OK) {
            fprintf(stderr, "fashion_cnn: --log: %s\n", err);
            status = -1;
            break;
        }
        status = save_checkpoint(tr.model, tr.adam, &tr.shuffle, o->checkpoint, h);
        if (status == 0 && write_curves(o->svg, h) != 0) {
            perror(o->svg);
            status = -1;
        }
        if (status == 0 && epoch == o->epochs)
            print_per_class(confusion);
    }
    if (status == 0 && h->epochs > start) {
        printf("trained %d epoch%s in %.1f s (%.1f s per epoch); checkpoint %s, curves %s\n",
               h->epochs - start, h->epochs - start == 1 ? "" : "s", total_seconds,
               total_seconds / (h->epochs - start), o->checkpoint, o->svg);
        printf("final test accuracy %.2f%%\n", 100 * test_acc);
    }
    if (nn_metrics_log_close(log, err, sizeof err) != AG_OK && status == 0) {
        fprintf(stderr, "fashion_cnn: --log: %s\n", err);
        status = -1;
    }
    nn_loader_free(ld);
    teardown(&tr, pool);
    return status;
}

int main(int argc, char **argv)
{
    options o;
    int parsed = parse_args(argc, argv, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    nn_dataset *train = fashion_load("fashion_cnn", o.data, 1, AG_F32, o.train_limit);
    nn_dataset *test = train ? fashion_load("fashion_cnn", o.data, 0, AG_F32, o.test_limit) : NULL;
    static history h;   /* large: kept out of the stack */
    int status = test ? run(&o, train, test, &h) : -1;
    nn_dataset_free(test);
    nn_dataset_free(train);
    return status == 0 ? 0 : 1;
}
