/*
** fuzz_idx.c: libFuzzer target for the IDX (MNIST) reader. The input holds
** both files: a 2-byte little-endian length L whose top bit picks f64 (else
** f32), then L bytes of the label file (fewer if the input ends), then the
** image file. Plain and gzipped files (when built with zlib) are both read.
** A refusal must carry a message naming nn_idx_load; a data set that loads
** must have the header's shape, one label per image equal to its byte, and
** (for plain files) every pixel equal to its byte / 255. nn_idx_load_u8
** must agree, and keep the bytes.
*/
#include "fuzz_file.h"

#include "../alloc_hooks.h"
#include "nn_io.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int gzipped(const uint8_t *p, size_t n) { return n >= 2 && p[0] == 0x1f && p[1] == 0x8b; }

static void check_dataset(nn_dataset *ds, ag_dtype dt, const uint8_t *img, size_t img_n,
                          const uint8_t *lab, size_t lab_n)
{
    if (nn_dataset_dtype(ds) != dt || nn_dataset_ykind(ds) != NN_Y_LABELS ||
        nn_dataset_x_rank(ds) != 2)
        abort();
    int64_t n = nn_dataset_len(ds), rows = nn_dataset_x_shape(ds)[0];
    int64_t cols = nn_dataset_x_shape(ds)[1];
    const int64_t *labels = nn_dataset_labels(ds);
    for (int64_t i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] > 255)
            abort();
    if (gzipped(lab, lab_n) || gzipped(img, img_n))
        return;   /* plain files only: compare with the bytes themselves */
    if (img_n < 16 || lab_n < 8 || (int64_t)be32(img + 4) != n || (int64_t)be32(img + 8) != rows ||
        (int64_t)be32(img + 12) != cols || (int64_t)be32(lab + 4) != n)
        abort();
    int64_t pixels = n * rows * cols;
    if ((size_t)pixels != img_n - 16 || (size_t)n != lab_n - 8)
        abort();
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != lab[8 + i])
            abort();
    const void *x = nn_dataset_x(ds);
    for (int64_t i = 0; i < pixels; i++) {
        double want = dt == AG_F32 ? (double)((float)img[16 + i] / 255.0f) : img[16 + i] / 255.0;
        double got = dt == AG_F32 ? (double)((const float *)x)[i] : ((const double *)x)[i];
        if (got != want)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t lab_n = (size_t)(data[0] | (data[1] & 0x7f) << 8);
    ag_dtype dt = data[1] & 0x80 ? AG_F64 : AG_F32;
    data += 2, size -= 2;
    if (lab_n > size)
        lab_n = size;
    const uint8_t *lab = data, *img = data + lab_n;
    size_t img_n = size - lab_n;
    fuzz_file images, labels;
    if (fuzz_file_make(&images, img, img_n) != 0)
        return 0;
    if (fuzz_file_make(&labels, lab, lab_n) != 0) {
        fuzz_file_drop(&images);
        return 0;
    }
    alloc_hooks h = hooks_counting();
    nn_dataset *ds = NULL;
    char err[512];
    ag_status s = nn_idx_load(images.path, labels.path, dt, hook_alloc, &h, &ds, err, sizeof err);
    if (s != AG_OK) {
        if (ds || strncmp(err, "nn_idx_load: ", 13) != 0)
            abort();
    } else {
        if (!ds || err[0])
            abort();
        check_dataset(ds, dt, img, img_n, lab, lab_n);
        nn_dataset_free(ds);
    }
    /* The byte form parses the same files: the same verdict, its own name,
    ** and for plain files the bytes themselves. */
    nn_dataset *bytes = NULL;
    ag_status s8 = nn_idx_load_u8(images.path, labels.path, dt, hook_alloc, &h, &bytes, err, sizeof err);
    if (s8 != s || (s8 != AG_OK && (bytes || strncmp(err, "nn_idx_load_u8: ", 16) != 0)))
        abort();
    if (s8 == AG_OK) {
        if (!bytes || nn_dataset_x(bytes) || nn_dataset_x_divisor(bytes) != 255.0)
            abort();
        int64_t pixels = nn_dataset_len(bytes) * nn_dataset_x_shape(bytes)[0] * nn_dataset_x_shape(bytes)[1];
        for (int64_t i = 0; !gzipped(img, img_n) && i < pixels; i++)
            if (nn_dataset_x_u8(bytes)[i] != img[16 + i])
                abort();
        nn_dataset_free(bytes);
    }
    if (h.live != 0 || h.bad_osize != 0)
        abort();
    fuzz_file_drop(&images);
    fuzz_file_drop(&labels);
    return 0;
}
