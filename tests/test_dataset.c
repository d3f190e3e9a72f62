/*
** test_dataset.c: datasets and the mini-batch loader: batch sizes with and
** without drop-last, Fisher-Yates shuffles from the seeded rng, batches
** whose rows match their labels, no allocation per batch, splits.
*/
#include "alloc_hooks.h"
#include "nn_io.h"

#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

static char err[512];

/* n samples of shape [2,3] whose values are 100*i + k and label i. */
static nn_dataset *indexed(int64_t n, ag_dtype dt, nn_ykind ykind)
{
    nn_dataset *ds;
    cr_assert_eq(nn_dataset_new(NULL, NULL, dt, n, 2, (int64_t[]){2, 3}, ykind, 1, (int64_t[]){1}, &ds, err,
                                sizeof err),
                 AG_OK, "%s", err);
    for (int64_t i = 0; i < n; i++) {
        for (int k = 0; k < 6; k++) {
            if (dt == AG_F32)
                ((float *)nn_dataset_x(ds))[i * 6 + k] = (float)(100 * i + k);
            else
                ((double *)nn_dataset_x(ds))[i * 6 + k] = (double)(100 * i + k);
        }
        if (ykind == NN_Y_LABELS)
            nn_dataset_labels(ds)[i] = i;
        if (ykind == NN_Y_VALUES && dt == AG_F32)
            ((float *)nn_dataset_y(ds))[i] = 0.5f * (float)i;
        if (ykind == NN_Y_VALUES && dt == AG_F64)
            ((double *)nn_dataset_y(ds))[i] = 0.5 * (double)i;
    }
    return ds;
}

/* Checks that batch row r holds sample 'i' and returns i (from the label,
** or from x when there are no labels). */
static int64_t sample_of_row(const nn_batch *b, int64_t r)
{
    int64_t i = b->labels ? b->labels[r] : (int64_t)(ag_get(b->x, r * 6) / 100);
    for (int k = 0; k < 6; k++)
        cr_assert_eq(ag_get(b->x, r * 6 + k), (double)(100 * i + k), "row %lld", (long long)r);
    return i;
}

Test(dataset, new_validates_its_arguments)
{
    nn_dataset *ds = (nn_dataset *)&ds;
    cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F32, -1, 0, NULL, NN_Y_NONE, 0, NULL, &ds, err, sizeof err),
                 AG_ESHAPE);
    cr_expect_null(ds);
    cr_expect(strstr(err, "nn_dataset_new: -1 samples"), "%s", err);
    cr_expect_eq(
        nn_dataset_new(NULL, NULL, AG_F32, 1, 8, (int64_t[8]){1}, NN_Y_NONE, 0, NULL, &ds, err, sizeof err),
        AG_ESHAPE);
    cr_expect(strstr(err, "x rank 8 is outside 0..7"), "%s", err);
    cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F32, 1, 1, NULL, NN_Y_NONE, 0, NULL, &ds, err, sizeof err),
                 AG_EINVAL);
    cr_expect_eq(
        nn_dataset_new(NULL, NULL, AG_F32, 1, 1, (int64_t[]){-2}, NN_Y_NONE, 0, NULL, &ds, err, sizeof err),
        AG_ESHAPE);
    cr_expect(strstr(err, "x dim 0 is negative (-2)"), "%s", err);
    cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F32, 1, 0, NULL, NN_Y_VALUES, 1, NULL, &ds, err, sizeof err),
                 AG_EINVAL);
    cr_expect_eq(
        nn_dataset_new(NULL, NULL, (ag_dtype)3, 1, 0, NULL, NN_Y_NONE, 0, NULL, &ds, err, sizeof err),
        AG_EDTYPE);
    cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F32, 1, 0, NULL, (nn_ykind)9, 0, NULL, &ds, err, sizeof err),
                 AG_EINVAL);
    cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F64, INT64_MAX / 2, 1, (int64_t[]){1 << 20}, NN_Y_NONE, 0,
                                NULL, &ds, err, sizeof err),
                 AG_ESHAPE);
    cr_expect(strstr(err, "do not fit in memory"), "%s", err);
    cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F32, 1, 0, NULL, NN_Y_NONE, 0, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
}

Test(dataset, new_is_zero_filled_with_the_asked_layout)
{
    nn_dataset *ds;
    cr_assert_eq(nn_dataset_new(NULL, NULL, AG_F64, 4, 1, (int64_t[]){3}, NN_Y_VALUES, 2, (int64_t[]){2, 2},
                                &ds, err, sizeof err),
                 AG_OK);
    cr_expect_str_empty(err);
    cr_expect_eq(nn_dataset_len(ds), 4);
    cr_expect_eq(nn_dataset_y_rank(ds), 2);
    cr_expect_eq(nn_dataset_y_shape(ds)[1], 2);
    cr_expect_null(nn_dataset_labels(ds));
    const double *x = nn_dataset_x(ds), *y = nn_dataset_y(ds);
    for (int i = 0; i < 12; i++)
        cr_expect_eq(x[i], 0.0);
    for (int i = 0; i < 16; i++)
        cr_expect_eq(y[i], 0.0);
    cr_expect_eq(nn_dataset_num_classes(ds), 0);
    nn_dataset_free(ds);
    cr_expect_eq(nn_dataset_len(NULL), 0);
    nn_dataset_free(NULL);
}

Test(dataset, reshape_keeps_the_element_count)
{
    nn_dataset *ds = indexed(3, AG_F32, NN_Y_LABELS);
    cr_expect_eq(nn_dataset_reshape(ds, 1, (int64_t[]){6}, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(nn_dataset_x_rank(ds), 1);
    cr_expect_eq(nn_dataset_x_shape(ds)[0], 6);
    cr_expect_eq(nn_dataset_reshape(ds, 2, (int64_t[]){4, 2}, err, sizeof err), AG_ESHAPE);
    cr_expect(strstr(err, "samples of shape [6] (6 elements) cannot become [4,2]"), "%s", err);
    cr_expect_eq(nn_dataset_x_shape(ds)[0], 6);
    nn_dataset_free(ds);
}

/* ------------------------------------------------------------------ loaders */

static void batch_sizes(int drop_last, int64_t batch, int64_t n, const int64_t *want, int nwant)
{
    nn_dataset *ds = indexed(n, AG_F32, NN_Y_LABELS);
    ag_rng rng;
    ag_rng_seed(&rng, 3);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, batch, 1, drop_last, &rng, NULL, NULL, &ld, err, sizeof err), AG_OK, "%s",
                 err);
    cr_expect_eq(nn_loader_num_batches(ld), nwant);
    ag_tape *t = ag_tape_new();
    nn_batch b;
    for (int epoch = 0; epoch < 2; epoch++) {
        int count = 0;
        while (nn_loader_next(ld, t, &b)) {
            cr_assert_lt(count, nwant);
            cr_expect_eq(b.size, want[count]);
            cr_expect_eq(b.index, count);
            cr_expect_eq(ag_dim(b.x, 0), want[count]);
            count++;
            ag_tape_reset(t);
        }
        cr_expect_eq(count, nwant, "epoch %d", epoch);
    }
    ag_tape_free(t);
    nn_loader_free(ld);
    nn_dataset_free(ds);
}

Test(loader, keeps_or_drops_the_partial_last_batch)
{
    batch_sizes(0, 4, 10, (int64_t[]){4, 4, 2}, 3);
    batch_sizes(1, 4, 10, (int64_t[]){4, 4}, 2);
    batch_sizes(0, 5, 10, (int64_t[]){5, 5}, 2);
    batch_sizes(1, 5, 10, (int64_t[]){5, 5}, 2);
    batch_sizes(0, 32, 10, (int64_t[]){10}, 1);
    batch_sizes(1, 32, 10, NULL, 0);
    batch_sizes(0, 4, 0, NULL, 0);
}

/* The order the loader must use: Fisher-Yates from the top, j drawn by
** ag_rng_below(i + 1). */
static void reference_order(ag_rng *rng, int64_t n, int64_t *order)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ag_rng_below(rng, (uint64_t)i + 1);
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

Test(loader, shuffles_every_epoch_by_fisher_yates_from_the_seed)
{
    enum { N = 23, B = 5 };
    nn_dataset *ds = indexed(N, AG_F64, NN_Y_LABELS);
    ag_rng rng, ref;
    ag_rng_seed(&rng, 1234);
    ag_rng_seed(&ref, 1234);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, B, 1, 0, &rng, NULL, NULL, &ld, err, sizeof err), AG_OK);
    ag_tape *t = ag_tape_new();
    int64_t previous[N];
    for (int epoch = 0; epoch < 3; epoch++) {
        int64_t want[N], got[N], seen[N] = {0}, k = 0;
        reference_order(&ref, N, want);
        nn_batch b;
        while (nn_loader_next(ld, t, &b)) {
            cr_assert_eq(ag_dtype_of(b.x), AG_F64);
            cr_assert_eq(ag_rank(b.x), 3);
            cr_assert(ag_dim(b.x, 1) == 2 && ag_dim(b.x, 2) == 3);
            cr_assert_null(b.y);
            for (int64_t r = 0; r < b.size; r++) {
                got[k] = sample_of_row(&b, r);
                seen[got[k]]++;
                k++;
            }
            ag_tape_reset(t);
        }
        cr_assert_eq(k, N);
        for (int i = 0; i < N; i++) {
            cr_expect_eq(seen[i], 1, "epoch %d: sample %d seen %lld times", epoch, i, (long long)seen[i]);
            cr_expect_eq(got[i], want[i], "epoch %d, position %d", epoch, i);
        }
        if (epoch > 0)
            cr_expect(memcmp(previous, got, sizeof got) != 0, "two epochs in the same order");
        memcpy(previous, got, sizeof got);
    }
    ag_tape_free(t);
    nn_loader_free(ld);
    nn_dataset_free(ds);
}

Test(loader, without_shuffle_keeps_the_order_and_needs_no_rng)
{
    nn_dataset *ds = indexed(7, AG_F32, NN_Y_NONE);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, 3, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err), AG_OK, "%s", err);
    ag_tape *t = ag_tape_new();
    nn_batch b;
    int64_t k = 0;
    while (nn_loader_next(ld, t, &b)) {
        cr_assert_null(b.labels);
        for (int64_t r = 0; r < b.size; r++)
            cr_expect_eq(sample_of_row(&b, r), k++);
        ag_tape_reset(t);
    }
    cr_expect_eq(k, 7);
    ag_tape_free(t);
    nn_loader_free(ld);
    nn_dataset_free(ds);
}

Test(loader, regression_batches_carry_y)
{
    nn_dataset *ds = indexed(6, AG_F64, NN_Y_VALUES);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, 4, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err), AG_OK);
    ag_tape *t = ag_tape_new();
    nn_batch b;
    cr_assert(nn_loader_next(ld, t, &b));
    cr_assert_not_null(b.y);
    cr_expect_eq(ag_rank(b.y), 2);
    cr_expect(ag_dim(b.y, 0) == 4 && ag_dim(b.y, 1) == 1);
    for (int r = 0; r < 4; r++)
        cr_expect_eq(ag_get(b.y, r), 0.5 * r);
    ag_tape_reset(t);
    cr_assert(nn_loader_next(ld, t, &b));
    cr_expect_eq(ag_get(b.y, 1), 2.5);
    ag_tape_free(t);
    nn_loader_free(ld);
    nn_dataset_free(ds);
}

Test(loader, rewind_and_tape_errors)
{
    nn_dataset *ds = indexed(6, AG_F32, NN_Y_LABELS);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, 4, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err), AG_OK);
    ag_tape *t = ag_tape_new();
    nn_batch b;
    cr_assert(nn_loader_next(ld, t, &b));
    cr_expect_eq(b.labels[0], 0);
    nn_loader_rewind(ld);
    ag_tape_reset(t);
    cr_assert(nn_loader_next(ld, t, &b));
    cr_expect_eq(b.index, 0);
    cr_expect_eq(b.labels[0], 0);
    /* A tape in error yields nothing; after a reset the epoch goes on. */
    ag_tape_fail(t, AG_EINVAL, "test: an earlier error");
    cr_expect_eq(nn_loader_next(ld, t, &b), 0);
    ag_tape_reset(t);
    cr_assert(nn_loader_next(ld, t, &b));
    cr_expect_eq(b.index, 1);
    cr_expect_eq(b.labels[0], 4);
    cr_expect_eq(nn_loader_next(NULL, t, &b), 0);
    ag_tape_free(t);
    nn_loader_free(ld);
    nn_dataset_free(ds);
}

Test(loader, new_validates_its_arguments)
{
    nn_dataset *ds = indexed(6, AG_F32, NN_Y_LABELS);
    nn_loader *ld;
    cr_expect_eq(nn_loader_new(ds, 0, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "batch size 0 is below 1"), "%s", err);
    cr_expect_eq(nn_loader_new(ds, 2, 1, 0, NULL, NULL, NULL, &ld, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "needs an rng"), "%s", err);
    cr_expect_eq(nn_loader_new(NULL, 2, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err), AG_EINVAL);
    nn_dataset_free(ds);
}

Test(loader, a_training_loop_allocates_nothing_per_batch)
{
    nn_dataset *ds = indexed(50, AG_F32, NN_Y_LABELS);
    alloc_hooks tape_hooks = hooks_counting(), loader_hooks = hooks_counting();
    ag_tape *t = ag_tape_new_alloc(hook_alloc, &tape_hooks);
    ag_rng rng;
    ag_rng_seed(&rng, 9);
    nn_loader *ld;
    cr_assert_eq(nn_loader_new(ds, 8, 1, 0, &rng, hook_alloc, &loader_hooks, &ld, err, sizeof err), AG_OK);
    long loader_after_new = loader_hooks.requests, tape_after_warmup = 0;
    nn_batch b;
    for (int epoch = 0; epoch < 4; epoch++) {
        while (nn_loader_next(ld, t, &b)) {
            /* What a step does with a batch: a few ops on it. */
            ag_tensor *h = ag_tanh(t, ag_reshape(t, b.x, 2, (int64_t[]){b.size, 6}));
            ag_tensor *loss = ag_mean(t, ag_square(t, h));
            cr_assert_eq(ag_tape_status(t), AG_OK, "%s", ag_tape_errmsg(t));
            cr_assert(isfinite(ag_item(loss)));
            ag_tape_reset(t);
        }
        if (epoch == 0)
            tape_after_warmup = tape_hooks.requests;
    }
    cr_expect_eq(loader_hooks.requests, loader_after_new, "the loader allocated while iterating");
    cr_expect_eq(tape_hooks.requests, tape_after_warmup, "the tape kept growing after the first epoch");
    nn_loader_free(ld);
    cr_expect_eq(loader_hooks.live, 0);
    cr_expect_eq(loader_hooks.bad_osize, 0);
    ag_tape_free(t);
    nn_dataset_free(ds);
}

Test(loader, every_failed_allocation_is_clean)
{
    nn_dataset *ds = indexed(10, AG_F32, NN_Y_VALUES);
    ag_rng rng;
    ag_rng_seed(&rng, 1);
    for (long k = 1;; k++) {
        alloc_hooks h = hooks_failing_at(k);
        nn_loader *ld;
        ag_status s = nn_loader_new(ds, 4, 1, 0, &rng, hook_alloc, &h, &ld, err, sizeof err);
        if (h.refused == 0) {
            cr_assert_eq(s, AG_OK);
            nn_loader_free(ld);
            cr_expect_eq(h.live, 0);
            cr_expect_gt(k, 2);   /* the loader and its order */
            break;
        }
        cr_assert_eq(s, AG_ENOMEM);
        cr_assert_null(ld);
        cr_assert_eq(h.live, 0);
    }
    for (long k = 1;; k++) {
        alloc_hooks h = hooks_failing_at(k);
        nn_dataset *a, *b;
        ag_status s = nn_dataset_split(ds, 3, &rng, hook_alloc, &h, &a, &b, err, sizeof err);
        if (h.refused == 0) {
            cr_assert_eq(s, AG_OK);
            nn_dataset_free(a);
            nn_dataset_free(b);
            cr_expect_eq(h.live, 0);
            break;
        }
        cr_assert_eq(s, AG_ENOMEM, "request %ld: %s", k, err);
        cr_assert(a == NULL && b == NULL);
        cr_assert_eq(h.live, 0);
        cr_assert_eq(h.bad_osize, 0);
    }
    nn_dataset_free(ds);
}

/* ------------------------------------------------------------------ splits */

Test(dataset, split_in_order_and_shuffled)
{
    nn_dataset *ds = indexed(10, AG_F32, NN_Y_LABELS), *a, *b;
    cr_assert_eq(nn_dataset_split(ds, 7, NULL, NULL, NULL, &a, &b, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(nn_dataset_len(a), 7);
    cr_expect_eq(nn_dataset_len(b), 3);
    cr_expect_eq(nn_dataset_labels(a)[6], 6);
    cr_expect_eq(nn_dataset_labels(b)[0], 7);
    cr_expect_eq(((float *)nn_dataset_x(b))[6 * 2 + 5], 905.0f);
    nn_dataset_free(a);
    nn_dataset_free(b);

    ag_rng rng;
    ag_rng_seed(&rng, 5);
    cr_assert_eq(nn_dataset_split(ds, 4, &rng, NULL, NULL, &a, &b, err, sizeof err), AG_OK);
    int seen[10] = {0}, moved = 0;
    for (int i = 0; i < 10; i++) {
        nn_dataset *part = i < 4 ? a : b;
        int64_t r = i < 4 ? i : i - 4, label = nn_dataset_labels(part)[r];
        seen[label]++;
        moved += label != i;
        cr_expect_eq(((float *)nn_dataset_x(part))[r * 6 + 1], (float)(100 * label + 1));
    }
    for (int i = 0; i < 10; i++)
        cr_expect_eq(seen[i], 1);
    cr_expect_gt(moved, 0);
    nn_dataset_free(a);
    nn_dataset_free(b);
    cr_expect_eq(nn_dataset_split(ds, 11, NULL, NULL, NULL, &a, &b, err, sizeof err), AG_EINVAL);
    cr_expect(strstr(err, "first 11 is outside 0..10"), "%s", err);
    nn_dataset_free(ds);
}

/* ------------------------------------------------------------ byte storage */

/* Batches of a byte dataset hold byte / divisor computed in the dtype, for
** a divisor the gather multiplies by (f32, 255) and ones it looks up. */
Test(dataset, u8_batches_hold_byte_over_divisor_in_the_dtype)
{
    const double divisors[] = {255.0, 3.7, 10.0, 1.0};
    for (int k = 0; k < 8; k++) {
        ag_dtype dt = k & 1 ? AG_F64 : AG_F32;
        double div = divisors[k / 2];
        nn_dataset *ds;
        cr_assert_eq(nn_dataset_new_u8(NULL, NULL, dt, div, 256, 1, (int64_t[]){3}, NN_Y_LABELS, 0, NULL, &ds,
                                       err, sizeof err),
                     AG_OK, "%s", err);
        cr_expect_null(nn_dataset_x(ds));
        cr_expect_eq(nn_dataset_x_divisor(ds), div);
        for (int i = 0; i < 256; i++) {
            for (int c = 0; c < 3; c++)
                nn_dataset_x_u8(ds)[i * 3 + c] = (uint8_t)((i + 85 * c) % 256);
            nn_dataset_labels(ds)[i] = i;
        }
        ag_rng rng;
        ag_rng_seed(&rng, 3);
        nn_loader *ld;
        cr_assert_eq(nn_loader_new(ds, 100, 1, 0, &rng, NULL, NULL, &ld, err, sizeof err), AG_OK);
        ag_tape *t = ag_tape_new();
        nn_batch b;
        int64_t seen = 0;
        while (nn_loader_next(ld, t, &b)) {
            for (int64_t r = 0; r < b.size; r++, seen++) {
                for (int c = 0; c < 3; c++) {
                    int byte = (int)((b.labels[r] + 85 * c) % 256);
                    double want = dt == AG_F32 ? (double)((float)byte / (float)div) : (double)byte / div;
                    cr_assert_eq(ag_get(b.x, r * 3 + c), want, "byte %d / %g in dtype %d", byte, div, (int)dt);
                }
            }
        }
        cr_expect_eq(seen, 256);
        /* A split keeps the storage and the values. */
        nn_dataset *head, *rest;
        cr_assert_eq(nn_dataset_split(ds, 10, &rng, NULL, NULL, &head, &rest, err, sizeof err), AG_OK, "%s", err);
        cr_expect_null(nn_dataset_x(head));
        cr_expect_eq(nn_dataset_x_divisor(rest), div);
        for (int64_t i = 0; i < nn_dataset_len(head); i++)
            cr_expect_eq(nn_dataset_x_u8(head)[i * 3], (uint8_t)nn_dataset_labels(head)[i]);
        nn_dataset_free(head);
        nn_dataset_free(rest);
        nn_loader_free(ld);
        ag_tape_free(t);
        nn_dataset_free(ds);
    }
}

Test(dataset, u8_refuses_a_divisor_that_is_not_positive_and_finite_in_its_dtype)
{
    const double bad[] = {0.0, -1.0, NAN, INFINITY, 1e39, 1e-50};   /* the last two: not f32 */
    for (int i = 0; i < 6; i++) {
        nn_dataset *ds = (nn_dataset *)&ds;
        cr_expect_eq(nn_dataset_new_u8(NULL, NULL, AG_F32, bad[i], 4, 1, (int64_t[]){2}, NN_Y_NONE, 0, NULL,
                                       &ds, err, sizeof err),
                     AG_EINVAL, "divisor %g", bad[i]);
        cr_expect_null(ds);
        cr_expect(strstr(err, "nn_dataset_new_u8: x_divisor"), "%s", err);
    }
    nn_dataset *ds;
    cr_expect_eq(nn_dataset_new_u8(NULL, NULL, AG_F64, 1e39, 4, 1, (int64_t[]){2}, NN_Y_NONE, 0, NULL, &ds,
                                   err, sizeof err),
                 AG_OK, "a divisor finite in f64: %s", err);
    nn_dataset_free(ds);
    cr_expect_eq(nn_dataset_new_u8(NULL, NULL, (ag_dtype)9, 255.0, 4, 1, (int64_t[]){2}, NN_Y_NONE, 0, NULL,
                                   &ds, err, sizeof err),
                 AG_EDTYPE);
    cr_expect(strstr(err, "nn_dataset_new_u8: dtype 9"), "%s", err);
}

/* A batch size near INT64_MAX serves the whole set in one batch, with no
** overflow on the way (UBSan watches). */
Test(loader, a_huge_batch_size_is_one_batch)
{
    nn_dataset *ds = indexed(7, AG_F32, NN_Y_LABELS);
    for (int drop = 0; drop < 2; drop++) {
        nn_loader *ld;
        cr_assert_eq(nn_loader_new(ds, INT64_MAX, 0, drop, NULL, NULL, NULL, &ld, err, sizeof err), AG_OK,
                     "%s", err);
        cr_expect_eq(nn_loader_num_batches(ld), drop ? 0 : 1);
        ag_tape *t = ag_tape_new();
        nn_batch b;
        cr_expect_eq(nn_loader_next(ld, t, &b), drop ? 0 : 1);
        if (!drop)
            cr_expect_eq(b.size, 7);
        ag_tape_free(t);
        nn_loader_free(ld);
    }
    nn_dataset_free(ds);
}

/* Samples of no element take no buffer, so nn_dataset_new took any n; the
** loader's order array of n * 8 bytes then wrapped around: 2^61 samples
** gave 0 bytes (NULL) and 2^62 + 1 gave 8, and the first batch wrote n
** indices into it. Such an n is refused where the dataset is made. */
Test(dataset, a_sample_count_whose_indices_overflow_is_refused)
{
    static const int64_t huge[] = {INT64_C(1) << 61, (INT64_C(1) << 62) + 1, INT64_MAX};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        nn_dataset *ds = (nn_dataset *)&ds;
        cr_expect_eq(nn_dataset_new(NULL, NULL, AG_F32, huge[i], 1, (int64_t[]){0}, NN_Y_NONE, 0, NULL, &ds,
                                    err, sizeof err),
                     AG_ESHAPE, "n = %lld", (long long)huge[i]);
        cr_expect_null(ds);
        char want[96];
        snprintf(want, sizeof want, "nn_dataset_new: %lld samples do not fit in memory", (long long)huge[i]);
        cr_expect(strstr(err, want), "%s", err);
        if (ds) {   /* before the fix: the loader it allowed */
            nn_loader *ld = NULL;
            if (nn_loader_new(ds, 1, 0, 0, NULL, NULL, NULL, &ld, err, sizeof err) == AG_OK) {
                ag_tape *t = ag_tape_new();
                nn_batch b;
                nn_loader_next(ld, t, &b);
                ag_tape_free(t);
            }
            nn_loader_free(ld);
            nn_dataset_free(ds);
        }
    }
    cr_expect_eq(nn_dataset_new_u8(NULL, NULL, AG_F32, 255.0, INT64_C(1) << 61, 1, (int64_t[]){0}, NN_Y_NONE,
                                   0, NULL, &(nn_dataset *){NULL}, err, sizeof err),
                 AG_ESHAPE);
    cr_expect(strstr(err, "nn_dataset_new_u8: 2305843009213693952 samples do not fit"), "%s", err);
    /* Where the indices fit, such a dataset is made (it holds no buffer). */
    nn_dataset *ds;
    cr_assert_eq(nn_dataset_new(NULL, NULL, AG_F32, INT64_C(1) << 59, 1, (int64_t[]){0}, NN_Y_NONE, 0, NULL,
                                &ds, err, sizeof err),
                 AG_OK, "%s", err);
    cr_expect_eq(nn_dataset_len(ds), INT64_C(1) << 59);
    nn_dataset_free(ds);
}
