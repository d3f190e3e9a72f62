/*
** test_idx.c: the IDX reader on generated files (plain and gzipped, the
** latter written here with stored deflate blocks), every truncation, bad
** magics, count mismatches, lying headers; and Fashion-MNIST itself when
** Debian's dataset-fashion-mnist is installed.
*/
#include "io_fixtures.h"

#include "alloc_hooks.h"
#include "nn_io.h"

#include <criterion/criterion.h>

enum { N = 5, ROWS = 3, COLS = 4 };

static char dir[512], images[600], labels[600];

static void make_dir(void)
{
    cr_assert(fixture_dir(dir, sizeof dir));
    fixture_path(images, sizeof images, dir, "images-idx3-ubyte");
    fixture_path(labels, sizeof labels, dir, "labels-idx1-ubyte");
}

static void drop_dir(void) { remove_dir(dir); }

static unsigned char pixel(size_t i) { return (unsigned char)((i * 7 + 3) % 256); }

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An image file of n x rows x cols pixels; size in *len; free it. */
static unsigned char *image_bytes(uint32_t n, uint32_t rows, uint32_t cols, size_t *len)
{
    size_t data = (size_t)n * rows * cols;
    unsigned char *b = malloc(16 + data);
    put_be32(b, 0x00000803);
    put_be32(b + 4, n);
    put_be32(b + 8, rows);
    put_be32(b + 12, cols);
    for (size_t i = 0; i < data; i++)
        b[16 + i] = pixel(i);
    *len = 16 + data;
    return b;
}

static unsigned char *label_bytes(uint32_t n, size_t *len)
{
    unsigned char *b = malloc(8 + n);
    put_be32(b, 0x00000801);
    put_be32(b + 4, n);
    for (uint32_t i = 0; i < n; i++)
        b[8 + i] = (unsigned char)(i * 3 % 10);
    *len = 8 + n;
    return b;
}

static void write_fixtures(const char *img_path, const char *lab_path)
{
    size_t n;
    unsigned char *b = image_bytes(N, ROWS, COLS, &n);
    cr_assert(write_bytes(img_path, b, n));
    free(b);
    b = label_bytes(N, &n);
    cr_assert(write_bytes(lab_path, b, n));
    free(b);
}

static void expect_fixture_values(nn_dataset *ds, ag_dtype dt)
{
    cr_assert_eq(nn_dataset_len(ds), N);
    cr_assert_eq(nn_dataset_dtype(ds), dt);
    cr_assert_eq(nn_dataset_ykind(ds), NN_Y_LABELS);
    cr_assert_eq(nn_dataset_x_rank(ds), 2);
    cr_expect_eq(nn_dataset_x_shape(ds)[0], ROWS);
    cr_expect_eq(nn_dataset_x_shape(ds)[1], COLS);
    for (size_t i = 0; i < (size_t)N * ROWS * COLS; i++) {
        if (dt == AG_F32)
            cr_assert_eq(((float *)nn_dataset_x(ds))[i], (float)pixel(i) / 255.0f, "pixel %zu", i);
        else
            cr_assert_eq(((double *)nn_dataset_x(ds))[i], (double)pixel(i) / 255.0, "pixel %zu", i);
    }
    for (int i = 0; i < N; i++)
        cr_expect_eq(nn_dataset_labels(ds)[i], i * 3 % 10);
    cr_expect_eq(nn_dataset_num_classes(ds), 10); /* labels 0 3 6 9 2 */
}

Test(idx, loads_pixels_scaled_to_unit_range_and_labels, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char err[256];
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_F64 : AG_F32;
        nn_dataset *ds;
        cr_assert_eq(nn_idx_load(images, labels, dt, NULL, NULL, &ds, err, sizeof err), AG_OK, "%s", err);
        cr_expect_str_empty(err);
        expect_fixture_values(ds, dt);
        nn_dataset_free(ds);
    }
}

/* ------------------------------------------------------------------ gzip */

static uint32_t crc32_of(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* A gzip member holding 'data' in stored (uncompressed) deflate blocks. */
static unsigned char *gzip_bytes(const unsigned char *data, size_t n, size_t *len)
{
    size_t blocks = n / 65535 + 1;
    unsigned char *g = malloc(10 + n + 5 * blocks + 8), *p = g;
    static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    memcpy(p, head, 10);
    p += 10;
    size_t done = 0;
    do {
        size_t k = n - done > 65535 ? 65535 : n - done;
        *p++ = done + k == n; /* BFINAL, BTYPE 00 */
        *p++ = (unsigned char)k;
        *p++ = (unsigned char)(k >> 8);
        *p++ = (unsigned char)~k;
        *p++ = (unsigned char)(~k >> 8);
        memcpy(p, data + done, k);
        p += k;
        done += k;
    } while (done < n);
    uint32_t crc = crc32_of(data, n);
    for (int i = 0; i < 4; i++)
        *p++ = (unsigned char)(crc >> (8 * i));
    for (int i = 0; i < 4; i++)
        *p++ = (unsigned char)((uint32_t)n >> (8 * i));
    *len = (size_t)(p - g);
    return g;
}

static void write_gz(const char *plain, const char *gz)
{
    size_t n, glen;
    unsigned char *raw = read_bytes(plain, &n);
    unsigned char *g = gzip_bytes(raw, n, &glen);
    cr_assert(write_bytes(gz, g, glen));
    free(raw);
    free(g);
}

Test(idx, gzipped_files_load_when_built_with_zlib, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char gz_images[700], gz_labels[700], err[512];
    snprintf(gz_images, sizeof gz_images, "%s.gz", images);
    snprintf(gz_labels, sizeof gz_labels, "%s.gz", labels);
    write_gz(images, gz_images);
    write_gz(labels, gz_labels);
    nn_dataset *ds;
    ag_status s = nn_idx_load(gz_images, gz_labels, AG_F32, NULL, NULL, &ds, err, sizeof err);
    if (nn_idx_has_gzip()) {
        cr_assert_eq(s, AG_OK, "%s", err);
        expect_fixture_values(ds, AG_F32);
        nn_dataset_free(ds);
    } else {
        cr_expect_eq(s, AG_EUNSUPPORTED);
        cr_expect_null(ds);
        cr_expect(strstr(err, gz_images) && strstr(err, "zlib"), "%s", err);
    }
}

Test(idx, gzip_content_without_gz_suffix_is_detected, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char gz_images[700], err[512];
    snprintf(gz_images, sizeof gz_images, "%s.compressed", images);
    write_gz(images, gz_images);
    nn_dataset *ds;
    ag_status s = nn_idx_load(gz_images, labels, AG_F64, NULL, NULL, &ds, err, sizeof err);
    cr_expect_eq(s, nn_idx_has_gzip() ? AG_OK : AG_EUNSUPPORTED, "%s", err);
    nn_dataset_free(ds);
}

Test(idx, every_truncation_of_a_gzip_file_is_an_error, .init = make_dir, .fini = drop_dir)
{
    if (!nn_idx_has_gzip()) {
        drop_dir();   /* a skipped test does not run its .fini */
        cr_skip_test("built without zlib");
    }
    write_fixtures(images, labels);
    size_t n, glen;
    unsigned char *raw = read_bytes(images, &n);
    unsigned char *g = gzip_bytes(raw, n, &glen);
    char cut[700], err[512];
    snprintf(cut, sizeof cut, "%s/cut.gz", dir);
    for (size_t len = 0; len < glen; len++) {
        cr_assert(write_bytes(cut, g, len));
        nn_dataset *ds;
        ag_status s = nn_idx_load(cut, labels, AG_F32, NULL, NULL, &ds, err, sizeof err);
        cr_assert_eq(s, AG_EIO, "cut at %zu of %zu: %s", len, glen, err);
        cr_assert_null(ds);
        cr_assert(strstr(err, cut), "%s", err);
    }
    /* A wrong checksum is caught too. */
    g[glen - 8] ^= 1;
    cr_assert(write_bytes(cut, g, glen));
    nn_dataset *ds;
    cr_expect_eq(nn_idx_load(cut, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    free(raw);
    free(g);
}

/* ------------------------------------------------------------- validation */

Test(idx, every_truncation_of_a_plain_file_is_an_error, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    size_t n;
    unsigned char *img = read_bytes(images, &n);
    char cut[700], err[512];
    snprintf(cut, sizeof cut, "%s/cut-images", dir);
    for (size_t len = 0; len < n; len++) {
        cr_assert(write_bytes(cut, img, len));
        nn_dataset *ds;
        cr_assert_eq(nn_idx_load(cut, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO, "cut at %zu",
                     len);
        cr_assert(strncmp(err, "nn_idx_load: ", 13) == 0 && strstr(err, cut) && strstr(err, "truncated"),
                  "cut at %zu: %s", len, err);
    }
    cr_assert(write_bytes(cut, img, 16 + 10));
    nn_dataset *ds;
    nn_idx_load(cut, labels, AG_F32, NULL, NULL, &ds, err, sizeof err);
    char want[800];
    snprintf(want, sizeof want,
             "nn_idx_load: %s: truncated: header says 5x3x4 but only 10 bytes of data follow", cut);
    cr_expect(strstr(err, want), "%s", err);
    free(img);
}

Test(idx, bad_magic_names_both_numbers, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char err[512];
    nn_dataset *ds;
    /* Files swapped: the image reader sees a label file's magic. */
    cr_expect_eq(nn_idx_load(labels, images, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "bad magic 0x00000801: IDX images are 0x00000803"), "%s", err);
    cr_expect(strstr(err, labels), "%s", err);
    size_t n;
    unsigned char *img = read_bytes(images, &n);
    put_be32(img, 0x00000d03); /* float IDX data, which we do not read */
    cr_assert(write_bytes(images, img, n));
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "bad magic 0x00000d03"), "%s", err);
    free(img);
}

Test(idx, trailing_bytes_and_count_mismatch, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char err[512];
    nn_dataset *ds;
    size_t n;
    unsigned char *lab = label_bytes(N - 1, &n);
    cr_assert(write_bytes(labels, lab, n));
    free(lab);
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_ESHAPE);
    cr_expect(strstr(err, "holds 5 images but") && strstr(err, "holds 4 labels"), "%s", err);

    lab = label_bytes(N, &n);
    lab = realloc(lab, n + 1);
    lab[n] = 0;
    cr_assert(write_bytes(labels, lab, n + 1));
    free(lab);
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "header says 5 (5 bytes) but more data follows"), "%s", err);
}

/* Records the largest single request, to show that a lying header does not
** make the reader allocate what the header claims. */
static size_t largest;
static void *spy_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    if (nsize > largest)
        largest = nsize;
    return hook_alloc(ud, ptr, osize, nsize);
}

Test(idx, lying_headers_allocate_only_what_arrives, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    unsigned char head[16 + 64];
    memset(head, 0, sizeof head);
    put_be32(head, 0x00000803);
    put_be32(head + 4, 100000);
    put_be32(head + 8, 1000);
    put_be32(head + 12, 1000); /* 10^11 bytes promised, 64 present */
    cr_assert(write_bytes(images, head, sizeof head));
    alloc_hooks h = hooks_counting();
    char err[512];
    nn_dataset *ds;
    largest = 0;
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, spy_alloc, &h, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "header says 100000x1000x1000 but only 64 bytes"), "%s", err);
    cr_expect_leq(largest, (size_t)1 << 20);
    cr_expect_eq(h.live, 0);

    put_be32(head + 4, 0xffffffffu);
    put_be32(head + 8, 0xffffffffu);
    put_be32(head + 12, 0xffffffffu);
    cr_assert(write_bytes(images, head, sizeof head));
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_ESHAPE);
    cr_expect(strstr(err, "dims 4294967295x4294967295x4294967295 are too large"), "%s", err);
}

Test(idx, argument_and_open_errors, .init = make_dir, .fini = drop_dir)
{
    char err[512];
    nn_dataset *ds;
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "cannot open") && strstr(err, images), "%s", err);
    cr_expect_eq(nn_idx_load(NULL, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_idx_load(images, labels, (ag_dtype)7, NULL, NULL, &ds, err, sizeof err), AG_EDTYPE);
    cr_expect_eq(nn_idx_load(images, labels, AG_F32, NULL, NULL, NULL, err, sizeof err), AG_EINVAL);
}

Test(idx, every_failed_allocation_is_clean, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char err[512];
    for (long k = 1;; k++) {
        alloc_hooks h = hooks_failing_at(k);
        nn_dataset *ds;
        ag_status s = nn_idx_load(images, labels, AG_F64, hook_alloc, &h, &ds, err, sizeof err);
        if (h.refused == 0) {
            cr_assert_eq(s, AG_OK, "%s", err);
            expect_fixture_values(ds, AG_F64);
            nn_dataset_free(ds);
            cr_expect_eq(h.live, 0);
            cr_expect_gt(k, 3);
            break;
        }
        cr_assert_eq(s, AG_ENOMEM, "request %ld: %s", k, err);
        cr_assert_null(ds);
        cr_assert_eq(h.live, 0, "request %ld refused: a block leaked", k);
        cr_assert_eq(h.bad_osize, 0);
    }
}

/* ------------------------------------------------------ the real data set */

#define FASHION "/usr/share/datasets/fashion-mnist/"

Test(idx, fashion_mnist_test_set_when_installed)
{
    const char *img = FASHION "t10k-images-idx3-ubyte.gz", *lab = FASHION "t10k-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0 || access(lab, R_OK) != 0)
        cr_skip_test("dataset-fashion-mnist is not installed");
    if (!nn_idx_has_gzip())
        cr_skip_test("built without zlib");
    char err[512];
    nn_dataset *ds;
    cr_assert_eq(nn_idx_load(img, lab, AG_F64, NULL, NULL, &ds, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_dataset_len(ds), 10000);
    cr_expect_eq(nn_dataset_x_shape(ds)[0], 28);
    cr_expect_eq(nn_dataset_x_shape(ds)[1], 28);
    cr_expect_eq(nn_dataset_num_classes(ds), 10);
    int64_t per_class[10] = {0};
    const int64_t *y = nn_dataset_labels(ds);
    for (int i = 0; i < 10000; i++)
        per_class[y[i]]++;
    for (int c = 0; c < 10; c++)
        cr_expect_eq(per_class[c], 1000, "class %d", c);
    static const int64_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++)
        cr_expect_eq(y[i], first[i]);
    const double *x = nn_dataset_x(ds);
    double sum = 0, lo = 1, hi = 0;
    for (int i = 0; i < 784; i++)
        sum += x[i];
    for (int64_t i = 0; i < 10000 * 784; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    cr_expect_float_eq(sum, 33456.0 / 255.0, 1e-9);
    cr_expect_eq(lo, 0.0);
    cr_expect_eq(hi, 1.0);
    nn_dataset_free(ds);
}

/* ------------------------------------------------------------ byte storage */

/* The same values in every batch as nn_idx_load's, from a byte dataset. */
Test(idx, u8_keeps_bytes_and_serves_the_same_batches, .init = make_dir, .fini = drop_dir)
{
    write_fixtures(images, labels);
    char err[256];
    for (int k = 0; k < 2; k++) {
        ag_dtype dt = k ? AG_F64 : AG_F32;
        nn_dataset *floats, *bytes;
        cr_assert_eq(nn_idx_load(images, labels, dt, NULL, NULL, &floats, err, sizeof err), AG_OK, "%s", err);
        cr_assert_eq(nn_idx_load_u8(images, labels, dt, NULL, NULL, &bytes, err, sizeof err), AG_OK, "%s",
                     err);
        cr_expect_null(nn_dataset_x(bytes));
        cr_expect_eq(nn_dataset_x_divisor(bytes), 255.0);
        cr_expect_eq(nn_dataset_x_divisor(floats), 0.0);
        cr_expect_null(nn_dataset_x_u8(floats));
        for (size_t i = 0; i < (size_t)N * ROWS * COLS; i++)
            cr_assert_eq(nn_dataset_x_u8(bytes)[i], pixel(i), "byte %zu", i);
        ag_tape *t = ag_tape_new();
        nn_loader *a, *b;
        cr_assert_eq(nn_loader_new(floats, N, 0, 0, NULL, NULL, NULL, &a, err, sizeof err), AG_OK);
        cr_assert_eq(nn_loader_new(bytes, N, 0, 0, NULL, NULL, NULL, &b, err, sizeof err), AG_OK);
        nn_batch ba, bb;
        cr_assert(nn_loader_next(a, t, &ba) && nn_loader_next(b, t, &bb));
        size_t size = (size_t)N * ROWS * COLS * ag_dtype_size(dt);
        cr_expect_eq(memcmp(ag_data(ba.x), ag_data(bb.x), size), 0, "dtype %d", (int)dt);
        cr_expect_eq(memcmp(ba.labels, bb.labels, N * sizeof *ba.labels), 0);
        nn_loader_free(a);
        nn_loader_free(b);
        ag_tape_free(t);
        nn_dataset_free(floats);
        nn_dataset_free(bytes);
    }
}

Test(idx, u8_errors_name_the_function, .init = make_dir, .fini = drop_dir)
{
    char err[512];
    nn_dataset *ds;
    cr_expect_eq(nn_idx_load_u8(images, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(!strncmp(err, "nn_idx_load_u8: ", 16) && strstr(err, "cannot open"), "%s", err);
    cr_expect_null(ds);
    char tiny[20];
    cr_expect_eq(nn_idx_load_u8(images, labels, AG_F32, NULL, NULL, &ds, tiny, sizeof tiny), AG_EIO);
    cr_expect(!strncmp(tiny, "nn_idx_load_u8: ", 16) && strlen(tiny) == sizeof tiny - 1, "%s", tiny);
    cr_expect_eq(nn_idx_load_u8(images, labels, (ag_dtype)7, NULL, NULL, &ds, err, sizeof err), AG_EDTYPE);
    cr_expect(strstr(err, "nn_idx_load_u8: dtype 7"), "%s", err);
}

/* ------------------------------------------------------- hostile inputs */

/* Issue 21: opening a FIFO for reading waited for a writer, forever. */
Test(idx, a_fifo_is_refused_before_reading, .init = make_dir, .fini = drop_dir, .timeout = 10)
{
    write_fixtures(images, labels);
    char fifo[700], err[512];
    fixture_path(fifo, sizeof fifo, dir, "pipe-idx3-ubyte");
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    nn_dataset *ds = NULL;
    cr_expect_eq(nn_idx_load(fifo, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_idx_load: ") && strstr(err, "is a FIFO, not a regular file"), "%s", err);
    cr_expect_eq(nn_idx_load_u8(images, fifo, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "nn_idx_load_u8: ") && strstr(err, "is a FIFO"), "%s", err);
    cr_expect_eq(nn_idx_load(dir, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "is a directory, not a regular file"), "%s", err);
    cr_expect_null(ds);
}

/* Issue 21: gzread skips whatever follows a gzip stream, so a gzipped file
** with trailing bytes loaded while the same plain file was refused. */
Test(idx, trailing_bytes_after_a_gzip_stream_are_refused, .init = make_dir, .fini = drop_dir)
{
    if (!nn_idx_has_gzip()) {
        cr_skip_test("built without zlib");
        return;
    }
    write_fixtures(images, labels);
    size_t n, glen, glen2;
    unsigned char *raw = read_bytes(images, &n);
    unsigned char *g = gzip_bytes(raw, n, &glen);
    char gz[700], err[512];
    snprintf(gz, sizeof gz, "%s.gz", images);
    g = realloc(g, glen + 5);
    memcpy(g + glen, "junk!", 5);
    cr_assert(write_bytes(gz, g, glen + 5));
    nn_dataset *ds = NULL;
    cr_expect_eq(nn_idx_load(gz, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    char want[200];
    snprintf(want, sizeof want, "trailing bytes after the gzip stream (from byte %zu of the file)", glen);
    cr_expect(strstr(err, want), "%s", err);
    /* One zero byte, as some tools pad with, is refused the same way. */
    g[glen] = 0;
    cr_assert(write_bytes(gz, g, glen + 1));
    cr_expect_eq(nn_idx_load(gz, labels, AG_F32, NULL, NULL, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "trailing bytes after the gzip stream"), "%s", err);
    /* Two members one after the other are one gzip file (gzip -c a b). */
    unsigned char *g1 = gzip_bytes(raw, 20, &glen), *g2 = gzip_bytes(raw + 20, n - 20, &glen2);
    g1 = realloc(g1, glen + glen2);
    memcpy(g1 + glen, g2, glen2);
    cr_assert(write_bytes(gz, g1, glen + glen2));
    cr_expect_eq(nn_idx_load(gz, labels, AG_F64, NULL, NULL, &ds, err, sizeof err), AG_OK, "%s", err);
    expect_fixture_values(ds, AG_F64);
    nn_dataset_free(ds);
    free(raw);
    free(g);
    free(g1);
    free(g2);
}

/* A deflate writer just big enough for a bomb: one block with the fixed
** Huffman codes, the IDX header as literals, then a zero and 'matches'
** copies of 258 zeros (13 bits each: 159 bytes out per byte in). The gzip
** trailer is left out: no reader gets that far. */
typedef struct bit_writer {
    unsigned char *p;
    size_t n;
    unsigned acc;
    int nacc;
} bit_writer;

static void put_bit(bit_writer *w, unsigned bit)
{
    w->acc |= (bit & 1u) << w->nacc;
    if (++w->nacc == 8) {
        w->p[w->n++] = (unsigned char)w->acc;
        w->acc = 0;
        w->nacc = 0;
    }
}

/* Huffman codes go most significant bit first. */
static void put_code(bit_writer *w, unsigned code, int len)
{
    for (int i = len - 1; i >= 0; i--)
        put_bit(w, code >> i);
}

static void put_literal(bit_writer *w, unsigned char c)
{
    if (c < 144)
        put_code(w, 0x30u + c, 8);
    else
        put_code(w, 0x190u + (c - 144u), 9);
}

static unsigned char *gzip_bomb(uint32_t n, uint32_t rows, uint32_t cols, size_t matches, size_t *len)
{
    bit_writer w = {malloc(32 + 16 * 2 + matches * 2), 0, 0, 0};
    static const unsigned char head[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff};
    memcpy(w.p, head, 10);
    w.n = 10;
    put_bit(&w, 1);         /* BFINAL */
    put_bit(&w, 1);         /* BTYPE 01, fixed codes, low bit first */
    put_bit(&w, 0);
    unsigned char idx[16];
    put_be32(idx, 0x00000803);
    put_be32(idx + 4, n);
    put_be32(idx + 8, rows);
    put_be32(idx + 12, cols);
    for (int i = 0; i < 16; i++)
        put_literal(&w, idx[i]);
    put_literal(&w, 0);
    for (size_t i = 0; i < matches; i++) {
        put_code(&w, 0xc5, 8); /* length 258: code 285, no extra bits */
        put_code(&w, 0, 5);    /* distance 1: code 0 */
    }
    put_code(&w, 0, 7);        /* end of block */
    if (w.nacc)
        w.p[w.n++] = (unsigned char)w.acc;
    *len = w.n;
    return w.p;
}

/* Issue 21: a header that promises more than its gzip stream can hold was
** believed: the stream was inflated to the end (1 GiB in the report)
** before the file was refused as truncated. */
Test(idx, a_gzip_bomb_is_refused_without_inflating_it, .init = make_dir, .fini = drop_dir)
{
    if (!nn_idx_has_gzip()) {
        cr_skip_test("built without zlib");
        return;
    }
    write_fixtures(images, labels);
    char gz[700], err[512];
    snprintf(gz, sizeof gz, "%s.gz", images);
    size_t glen;
    /* 100,000 copies: 25.8 MB of zeros from 163 KB; the header promises
    ** 4 GB, more than 1032 times the file. */
    unsigned char *g = gzip_bomb(4000, 1000, 1000, 100000, &glen);
    cr_assert(write_bytes(gz, g, glen));
    free(g);
    alloc_hooks h = hooks_counting();
    nn_dataset *ds = NULL;
    largest = 0;
    cr_expect_eq(nn_idx_load(gz, labels, AG_F32, spy_alloc, &h, &ds, err, sizeof err), AG_EIO);
    char want[200];
    snprintf(want, sizeof want, "header says 4000x1000x1000 (4000000016 bytes in all) but a gzip file of %zu "
             "bytes inflates to at most %zu", glen, glen * 1032);
    cr_expect(strstr(err, want), "%s", err);
    cr_expect_leq(largest, (size_t)1 << 16, "largest request %zu", largest);
    cr_expect_eq(h.live, 0);

    /* A header that promises less than the stream holds: the reader stops
    ** one byte past the promise. */
    g = gzip_bomb(1, 1, 1, 100000, &glen);
    cr_assert(write_bytes(gz, g, glen));
    free(g);
    largest = 0;
    cr_expect_eq(nn_idx_load(gz, labels, AG_F32, spy_alloc, &h, &ds, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "header says 1x1x1 (1 bytes) but more data follows"), "%s", err);
    cr_expect_leq(largest, (size_t)1 << 16, "largest request %zu", largest);
    cr_expect_eq(h.live, 0);
    cr_expect_eq(h.bad_osize, 0);
}
