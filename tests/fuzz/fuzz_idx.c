/*
** fuzz_idx.c: libFuzzer target for the IDX (MNIST) reader. The input holds
** both files: a 2-byte little-endian length L whose top bit picks f64 (else
** f32), then L bytes of the label file (fewer if the input ends), then the
** image file. Plain and gzipped files (when built with zlib) are both read.
** A refusal must carry a message naming nn_idx_load; a data set that loads
** must have the header's shape, one label per image equal to its byte, and
** (for plain files) every pixel equal to its byte / 255. nn_idx_load_u8
** must agree, and keep the bytes. A plain image file that loads is then
** wrapped in gzip (stored blocks, written here): it must load to the same
** pixels, and with one byte after the gzip stream it must be refused, as a
** plain file with a trailing byte is (issue 21).
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

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* 'data' as one gzip member of stored deflate blocks, plus 'extra' zero
** bytes after it; length in *len. */
static uint8_t *gzip_stored(const uint8_t *data, size_t n, size_t extra, size_t *len)
{
    size_t blocks = n / 65535 + 1;
    uint8_t *g = malloc(18 + n + 5 * blocks + extra), *p = g;
    if (!g)
        abort();
    static const uint8_t head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    memcpy(p, head, 10);
    p += 10;
    size_t done = 0;
    do {
        size_t k = n - done > 65535 ? 65535 : n - done;
        *p++ = done + k == n;
        *p++ = (uint8_t)k;
        *p++ = (uint8_t)(k >> 8);
        *p++ = (uint8_t)~k;
        *p++ = (uint8_t)(~k >> 8);
        memcpy(p, data + done, k);
        p += k;
        done += k;
    } while (done < n);
    uint32_t crc = crc32_of(data, n);
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)(crc >> (8 * i));
    for (int i = 0; i < 4; i++)
        *p++ = (uint8_t)((uint32_t)n >> (8 * i));
    memset(p, 0, extra);
    *len = (size_t)(p - g) + extra;
    return g;
}

/* The plain image file, gzipped: the same data set; with a byte after the
** stream: refused. */
static void check_gzip_agrees(const uint8_t *img, size_t img_n, const char *labels_path, ag_dtype dt,
                              alloc_hooks *h)
{
    for (size_t extra = 0; extra < 2; extra++) {
        size_t len;
        uint8_t *g = gzip_stored(img, img_n, extra, &len);
        fuzz_file gz;
        if (fuzz_file_make(&gz, g, len) != 0) {
            free(g);
            return;
        }
        nn_dataset *ds = NULL;
        char err[512];
        ag_status s = nn_idx_load(gz.path, labels_path, dt, hook_alloc, h, &ds, err, sizeof err);
        if (extra == 0) {
            if (s != AG_OK)
                abort();   /* the same bytes, gzipped, must load */
            const uint8_t *x = img + 16;
            int64_t pixels = nn_dataset_len(ds) * nn_dataset_x_shape(ds)[0] * nn_dataset_x_shape(ds)[1];
            for (int64_t i = 0; i < pixels; i++) {
                double want = dt == AG_F32 ? (double)((float)x[i] / 255.0f) : x[i] / 255.0;
                double got = dt == AG_F32 ? (double)((const float *)nn_dataset_x(ds))[i]
                                          : ((const double *)nn_dataset_x(ds))[i];
                if (got != want)
                    abort();
            }
            nn_dataset_free(ds);
        } else if (s == AG_OK || ds || !strstr(err, "trailing bytes after the gzip stream")) {
            abort();   /* a trailing byte is refused, gzipped or not */
        }
        fuzz_file_drop(&gz);
        free(g);
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
        if (nn_idx_has_gzip() && !gzipped(img, img_n))
            check_gzip_agrees(img, img_n, labels.path, dt, &h);
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
