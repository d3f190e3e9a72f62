/*
** test_metrics.c: predictions, accuracy and the confusion matrix from
** logits, in f32 and f64, with ties, NaNs and a single logit column.
*/
#define _POSIX_C_SOURCE 200809L
#include "nn_io.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[256];

static ag_tensor *logits_of(ag_tape *t, ag_dtype dt, int64_t n, int64_t c, const double *v)
{
    ag_tensor *x = ag_zeros(t, dt, 2, (int64_t[]){n, c});
    for (int64_t i = 0; i < n * c; i++)
        ag_set(x, i, v[i]);
    return x;
}

Test(metrics, argmax_takes_the_first_maximum_and_nan_wins)
{
    ag_tape *t = ag_tape_new();
    const double v[] = {
        0.1,       0.7,       0.2,       /* 1 */
        5,         5,         1,         /* tie: 0 */
        -3,        -1,        -1,        /* tie: 1 */
        1,         NAN,       9,         /* NaN: 1 */
        -INFINITY, -INFINITY, -INFINITY, /* 0 */
    };
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = logits_of(t, k ? AG_F64 : AG_F32, 5, 3, v);
        int64_t pred[5];
        cr_assert_eq(nn_argmax(x, pred, err, sizeof err), AG_OK, "%s", err);
        cr_expect(pred[0] == 1 && pred[1] == 0 && pred[2] == 1 && pred[3] == 1 && pred[4] == 0,
                  "%lld %lld %lld %lld %lld", (long long)pred[0], (long long)pred[1], (long long)pred[2],
                  (long long)pred[3], (long long)pred[4]);
    }
    ag_tape_free(t);
}

Test(metrics, one_column_is_a_binary_logit)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *x = logits_of(t, AG_F64, 4, 1, (const double[]){2.0, -0.5, 0.0, 0.1});
    int64_t pred[4];
    cr_assert_eq(nn_argmax(x, pred, err, sizeof err), AG_OK);
    cr_expect(pred[0] == 1 && pred[1] == 0 && pred[2] == 0 && pred[3] == 1);
    double acc;
    cr_assert_eq(nn_accuracy(x, (const int64_t[]){1, 0, 1, 1}, &acc, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(acc, 0.75);
    cr_expect_eq(nn_accuracy(x, (const int64_t[]){1, 0, 2, 1}, &acc, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "labels[2] is 2, outside [0, 2)"), "%s", err);
    ag_tape_free(t);
}

Test(metrics, accuracy_and_count_correct)
{
    ag_tape *t = ag_tape_new();
    const double v[] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1};
    const int64_t labels[5] = {0, 1, 2, 2, 1};
    for (int k = 0; k < 2; k++) {
        ag_tensor *x = logits_of(t, k ? AG_F64 : AG_F32, 5, 3, v);
        double acc = -1;
        int64_t correct = -1;
        cr_assert_eq(nn_accuracy(x, labels, &acc, err, sizeof err), AG_OK);
        cr_expect_eq(acc, 3.0 / 5.0);
        cr_assert_eq(nn_count_correct(x, labels, &correct, err, sizeof err), AG_OK);
        cr_expect_eq(correct, 3);
    }
    ag_tensor *none = ag_zeros(t, AG_F32, 2, (int64_t[]){0, 3});
    double acc = -1;
    cr_expect_eq(nn_accuracy(none, NULL, &acc, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(acc, 0.0);
    ag_tape_free(t);
}

Test(metrics, errors_name_shapes_and_labels)
{
    ag_tape *t = ag_tape_new();
    ag_tensor *v = ag_zeros(t, AG_F32, 1, (int64_t[]){3});
    double acc;
    cr_expect_eq(nn_accuracy(v, (const int64_t[]){0, 0, 0}, &acc, err, sizeof err), AG_ESHAPE);
    cr_expect(strstr(err, "nn_accuracy: logits of shape [3] are not [n, C]"), "%s", err);
    ag_tensor *x = ag_zeros(t, AG_F32, 2, (int64_t[]){2, 3});
    cr_expect_eq(nn_accuracy(x, (const int64_t[]){0, 3}, &acc, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "labels[1] is 3, outside [0, 3)"), "%s", err);
    cr_expect_eq(nn_accuracy(x, (const int64_t[]){0, -1}, &acc, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_accuracy(x, NULL, &acc, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_accuracy(x, (const int64_t[]){0, 1}, NULL, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_accuracy(NULL, (const int64_t[]){0, 1}, &acc, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_argmax(x, NULL, err, sizeof err), AG_EINVAL);
    int64_t counts[4] = {0};
    cr_expect_eq(nn_confusion_add(x, (const int64_t[]){0, 1}, 2, counts, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "2 classes, but logits with 3 columns need 3"), "%s", err);
    ag_tape_free(t);
}

Test(metrics, confusion_matrix_accumulates_over_batches)
{
    ag_tape *t = ag_tape_new();
    int64_t counts[9] = {0};
    /* Batch one: true 0->0, 1->2, 2->2. Batch two: true 0->1, 1->1. */
    ag_tensor *a = logits_of(t, AG_F32, 3, 3, (const double[]){9, 0, 0, 0, 1, 2, 0, 0, 3});
    ag_tensor *b = logits_of(t, AG_F64, 2, 3, (const double[]){0, 4, 1, 0, 4, 1});
    cr_assert_eq(nn_confusion_add(a, (const int64_t[]){0, 1, 2}, 3, counts, err, sizeof err), AG_OK, "%s",
                 err);
    cr_assert_eq(nn_confusion_add(b, (const int64_t[]){0, 1}, 3, counts, err, sizeof err), AG_OK, "%s", err);
    const int64_t want[9] = {1, 1, 0, 0, 1, 1, 0, 0, 1};
    for (int i = 0; i < 9; i++)
        cr_expect_eq(counts[i], want[i], "cell %d", i);

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    nn_confusion_print(f, 3, counts);
    fclose(f);
    cr_expect_str_eq(text, "true\\pred   0   1   2\n"
                           "        0   1   1   0\n"
                           "        1   0   1   1\n"
                           "        2   0   0   1\n");
    free(text);
    ag_tape_free(t);
}
