/*
** metrics.c: classification metrics from logits: predictions (argmax),
** accuracy and a confusion matrix that accumulates over batches. They read
** values only and record nothing on any tape.
*/
#include "io_util.h"

#include <math.h>
#include <stdio.h>

/* Checks that logits is [n, C] with C >= 1 and sets n and C. */
static ag_status check_logits(const char *who, ag_tensor *logits, int64_t *n, int64_t *c, char *err,
                              size_t errlen)
{
    if (!logits || ag_is_nil(logits))
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: logits are %s", who, logits ? "nil" : "NULL");
    if (ag_rank(logits) != 2 || ag_dim(logits, 1) < 1) {
        char shp[96];
        ag_shape_str(shp, sizeof shp, ag_rank(logits), ag_shape(logits));
        return nni_io_fail(err, errlen, AG_ESHAPE, "%s: logits of shape %s are not [n, C] with C >= 1", who,
                           shp);
    }
    *n = ag_dim(logits, 0);
    *c = ag_dim(logits, 1);
    return AG_OK;
}

static double value_at(const void *data, ag_dtype dt, int64_t i)
{
    return dt == AG_F32 ? (double)((const float *)data)[i] : ((const double *)data)[i];
}

/* Row i's prediction. A NaN beats every number, as in NumPy's argmax. */
static int64_t predict(const void *data, ag_dtype dt, int64_t i, int64_t c)
{
    if (c == 1)
        return value_at(data, dt, i) > 0 ? 1 : 0;
    int64_t best = 0;
    double top = value_at(data, dt, i * c);
    for (int64_t k = 1; k < c && !isnan(top); k++) {
        double v = value_at(data, dt, i * c + k);
        if (v > top || isnan(v)) {
            top = v;
            best = k;
        }
    }
    return best;
}

static ag_status check_labels(const char *who, const int64_t *labels, int64_t n, int64_t classes, char *err,
                              size_t errlen)
{
    if (n > 0 && !labels)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: labels are NULL", who);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: labels[%lld] is %lld, outside [0, %lld)", who,
                               (long long)i, (long long)labels[i], (long long)classes);
    return AG_OK;
}

ag_status nn_argmax(ag_tensor *logits, int64_t *pred, char *err, size_t errlen)
{
    int64_t n, c;
    ag_status s = check_logits("nn_argmax", logits, &n, &c, err, errlen);
    if (s != AG_OK)
        return s;
    if (n > 0 && !pred)
        return nni_io_fail(err, errlen, AG_EINVAL, "nn_argmax: pred is NULL");
    const void *data = ag_data(logits);
    for (int64_t i = 0; i < n; i++)
        pred[i] = predict(data, ag_dtype_of(logits), i, c);
    return nni_io_ok(err, errlen);
}

static ag_status count_as(const char *who, ag_tensor *logits, const int64_t *labels, int64_t *correct,
                          int64_t *rows, char *err, size_t errlen)
{
    int64_t n, c;
    ag_status s = check_logits(who, logits, &n, &c, err, errlen);
    if (s == AG_OK)
        s = check_labels(who, labels, n, c > 1 ? c : 2, err, errlen);
    if (s != AG_OK)
        return s;
    const void *data = ag_data(logits);
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++)
        hits += predict(data, ag_dtype_of(logits), i, c) == labels[i];
    *correct = hits;
    *rows = n;
    return nni_io_ok(err, errlen);
}

ag_status nn_count_correct(ag_tensor *logits, const int64_t *labels, int64_t *correct, char *err,
                           size_t errlen)
{
    if (!correct)
        return nni_io_fail(err, errlen, AG_EINVAL, "nn_count_correct: correct is NULL");
    int64_t rows;
    return count_as("nn_count_correct", logits, labels, correct, &rows, err, errlen);
}

ag_status nn_accuracy(ag_tensor *logits, const int64_t *labels, double *acc, char *err, size_t errlen)
{
    if (!acc)
        return nni_io_fail(err, errlen, AG_EINVAL, "nn_accuracy: acc is NULL");
    int64_t correct, rows;
    ag_status s = count_as("nn_accuracy", logits, labels, &correct, &rows, err, errlen);
    if (s == AG_OK)
        *acc = rows > 0 ? (double)correct / (double)rows : 0.0;
    return s;
}

ag_status nn_confusion_add(ag_tensor *logits, const int64_t *labels, int classes, int64_t *counts, char *err,
                           size_t errlen)
{
    const char *who = "nn_confusion_add";
    int64_t n, c;
    ag_status s = check_logits(who, logits, &n, &c, err, errlen);
    if (s != AG_OK)
        return s;
    int64_t needed = c > 1 ? c : 2;
    if (classes < needed)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %d classes, but logits with %lld columns need %lld",
                           who, classes, (long long)c, (long long)needed);
    if (!counts)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: counts is NULL", who);
    s = check_labels(who, labels, n, classes, err, errlen);
    if (s != AG_OK)
        return s;
    const void *data = ag_data(logits);
    for (int64_t i = 0; i < n; i++)
        counts[labels[i] * classes + predict(data, ag_dtype_of(logits), i, c)]++;
    return nni_io_ok(err, errlen);
}

void nn_confusion_print(FILE *f, int classes, const int64_t *counts)
{
    if (!f || !counts || classes < 1)
        return;
    int width = 4;
    for (int64_t i = 0; i < (int64_t)classes * classes; i++) {
        char num[24];
        int w = snprintf(num, sizeof num, "%lld", (long long)counts[i]);
        if (w + 1 > width)
            width = w + 1;
    }
    fprintf(f, "true\\pred");
    for (int k = 0; k < classes; k++)
        fprintf(f, "%*d", width, k);
    fputc('\n', f);
    for (int r = 0; r < classes; r++) {
        fprintf(f, "%9d", r);
        for (int k = 0; k < classes; k++)
            fprintf(f, "%*lld", width, (long long)counts[(int64_t)r * classes + k]);
        fputc('\n', f);
    }
}
