/*
** fuzz_csv.c: libFuzzer target for the CSV reader. Byte 0 picks the options
** (bit 0: a header row; bits 1-2: NN_Y_NONE, NN_Y_LABELS, NN_Y_VALUES; bit
** 3: f64, else f32), byte 1 is y_column as a signed byte, the rest is the
** file. A refusal must carry a message naming nn_csv_load; a data set that
** loads must have at least one row and one feature, labels >= 0, and only
** finite values (the reader promises to reject NaN and infinities).
*/
#include "fuzz_file.h"

#include "../alloc_hooks.h"
#include "nn_io.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static double value_at(const void *buf, ag_dtype dt, int64_t i)
{
    return dt == AG_F32 ? (double)((const float *)buf)[i] : ((const double *)buf)[i];
}

static void check_dataset(nn_dataset *ds, const nn_csv_options *opt, ag_dtype dt)
{
    int64_t n = nn_dataset_len(ds);
    if (n < 1 || nn_dataset_dtype(ds) != dt || nn_dataset_ykind(ds) != opt->ykind ||
        nn_dataset_x_rank(ds) != 1 || nn_dataset_x_shape(ds)[0] < 1)
        abort();
    int64_t features = nn_dataset_x_shape(ds)[0];
    const void *x = nn_dataset_x(ds);
    for (int64_t i = 0; i < n * features; i++)
        if (!isfinite(value_at(x, dt, i)))
            abort();
    if (opt->ykind == NN_Y_LABELS) {
        const int64_t *labels = nn_dataset_labels(ds);
        for (int64_t i = 0; i < n; i++)
            if (labels[i] < 0)
                abort();
    } else if (opt->ykind == NN_Y_VALUES) {
        const void *y = nn_dataset_y(ds);
        for (int64_t i = 0; i < n; i++)
            if (!isfinite(value_at(y, dt, i)))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const nn_ykind kinds[4] = {NN_Y_NONE, NN_Y_LABELS, NN_Y_VALUES, NN_Y_NONE};
    nn_csv_options opt = {
        .header = data[0] & 1,
        .ykind = kinds[(data[0] >> 1) & 3],
        .y_column = (int8_t)data[1],
    };
    ag_dtype dt = data[0] & 8 ? AG_F64 : AG_F32;
    fuzz_file file;
    if (fuzz_file_make(&file, data + 2, size - 2) != 0)
        return 0;
    alloc_hooks h = hooks_counting();
    nn_dataset *ds = NULL;
    char err[512];
    ag_status s = nn_csv_load(file.path, &opt, dt, hook_alloc, &h, &ds, err, sizeof err);
    if (s != AG_OK) {
        if (ds || strncmp(err, "nn_csv_load: ", 13) != 0)
            abort();
    } else {
        if (!ds || err[0])
            abort();
        check_dataset(ds, &opt, dt);
        nn_dataset_free(ds);
    }
    if (h.live != 0 || h.bad_osize != 0)
        abort();
    fuzz_file_drop(&file);
    return 0;
}
