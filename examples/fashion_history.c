/*
** fashion_history.c: the run's history in checkpoints and as curves (see
** fashion_history.h).
*/
#include "fashion_history.h"

#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { HISTORY_CHARS = 16 * FASHION_MAX_EPOCHS * FASHION_LOSS_POINTS };

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

int fashion_checkpoint_save(const char *prog, nn_model *m, nn_optim *adam, const ag_rng *shuffle,
                            const char *path, const fashion_history *h)
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
        fprintf(stderr, "%s: %s\n", prog, err);
        return -1;
    }
    return 0;
}

int fashion_checkpoint_load(const char *prog, nn_model *m, nn_optim *adam, ag_rng *shuffle,
                            const char *path, fashion_history *h)
{
    char err[512];
    nn_safetensors *f = NULL;
    if (nn_checkpoint_load(m, adam, path, 0, err, sizeof err) != AG_OK ||
        nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err) != AG_OK) {
        fprintf(stderr, "%s: --resume: %s\n", prog, err);
        return -1;
    }
    const char *epoch = nn_safetensors_metadata_get(f, "epoch");
    h->epochs = epoch ? atoi(epoch) : 0;
    h->n_loss = split(nn_safetensors_metadata_get(f, "loss"), h->loss,
                      FASHION_MAX_EPOCHS * FASHION_LOSS_POINTS);
    int train = split(nn_safetensors_metadata_get(f, "train_accuracy"), h->train_acc,
                      FASHION_MAX_EPOCHS);
    int test = split(nn_safetensors_metadata_get(f, "test_accuracy"), h->test_acc,
                     FASHION_MAX_EPOCHS);
    const char *rng = nn_safetensors_metadata_get(f, "shuffle_rng");
    int bad_rng = !rng || nn_rng_parse(shuffle, rng) != AG_OK;
    nn_safetensors_close(f);
    if (h->epochs < 0 || h->epochs > FASHION_MAX_EPOCHS ||
        h->n_loss != h->epochs * FASHION_LOSS_POINTS || train != h->epochs ||
        test != h->epochs || bad_rng) {
        fprintf(stderr, "%s: --resume: %s: the metadata was not written by this program\n", prog,
                path);
        return -1;
    }
    return 0;
}

int fashion_curves_write(const char *path, const fashion_history *h, double target,
                         const char *target_label)
{
    svg s;
    if (svg_open(&s, path, 860, 400) != 0)
        return -1;
    double epochs = h->epochs > 1 ? h->epochs : 1;
    static double x[FASHION_MAX_EPOCHS * FASHION_LOSS_POINTS],
        y[FASHION_MAX_EPOCHS * FASHION_LOSS_POINTS];

    double top = 0;
    for (int i = 0; i < h->n_loss; i++)
        top = fmax(top, h->loss[i]);
    svg_chart loss = {70, 40, 340, 260, 0, epochs, 0, top > 0 ? top * 1.05 : 1};
    svg_chart_axes(&s, &loss, "training loss, mean of each tenth of an epoch", "epoch",
                   "cross-entropy");
    for (int i = 0; i < h->n_loss; i++) {
        x[i] = (i + 1.0) / FASHION_LOSS_POINTS;
        y[i] = h->loss[i];
    }
    svg_chart_line(&s, &loss, h->n_loss, x, y, "#1f77b4", 2);

    double low = 1;
    for (int e = 0; e < h->epochs; e++)
        low = fmin(low, fmin(h->train_acc[e], h->test_acc[e]));
    /* A round bound (a multiple of 5%) at least 2.5 points under the target,
    ** so that the reference line shows. */
    low = fmin(floor(low * 20) / 20, floor(target / 5 - 0.5) / 20);
    svg_chart acc = {500, 40, 340, 260, h->epochs > 1 ? 1 : 0, epochs, 100 * low, 100};
    svg_chart_axes(&s, &acc, "accuracy after each epoch", "epoch", "percent");
    x[0] = acc.xmin, y[0] = target;
    x[1] = epochs, y[1] = target;
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
    /* The legend has a row of its own, under both charts' axis labels, so
    ** nothing it says can cross a line or a label. */
    svg_legend(&s, 70, 385, colours[0], "training accuracy (during the epoch)");
    svg_legend(&s, 330, 385, colours[1], "test accuracy");
    svg_legend(&s, 450, 385, "#999999", target_label);
    return svg_close(&s);
}
