/*
** idx.c: the IDX format of MNIST and Fashion-MNIST (a big-endian magic
** 0x000008NN, u8 data with NN dims, then the dims as big-endian u32), plain
** or gzipped. The data buffer grows only as bytes actually arrive, so a
** header that lies about its size cannot make us allocate gigabytes.
*/
#define _POSIX_C_SOURCE 200809L
#include "io_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>
#ifdef NN_HAVE_ZLIB
#include <zlib.h>
#endif

#define WHO "nn_idx_load"
#define IDX_U8 0x08u

/* A file read either through zlib (which also reads plain files as they
** are) or, without zlib, through read(2). */
typedef struct source {
    const char *path;
    bool cut_short; /* the gzip stream ended before its end marker */
#ifdef NN_HAVE_ZLIB
    gzFile gz;
#else
    int fd;
#endif
} source;

int nn_idx_has_gzip(void)
{
#ifdef NN_HAVE_ZLIB
    return 1;
#else
    return 0;
#endif
}

#ifndef NN_HAVE_ZLIB
static bool named_gz(const char *path)
{
    size_t n = strlen(path);
    return n >= 3 && strcmp(path + n - 3, ".gz") == 0;
}

static ag_status no_zlib(const char *path, char *err, size_t errlen)
{
    return nni_io_fail(err, errlen, AG_EUNSUPPORTED,
                       WHO
                       ": %s: the file is gzipped, and this build has no zlib (rebuild with -Dzlib=enabled, "
                       "or gunzip the file)",
                       path);
}
#endif

static ag_status source_open(source *s, const char *path, char *err, size_t errlen)
{
    s->path = path;
    s->cut_short = false;
#ifdef NN_HAVE_ZLIB
    errno = 0;
    s->gz = gzopen(path, "rb");
    if (!s->gz)
        return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: cannot open: %s", path,
                           errno ? strerror(errno) : "out of memory");
    return AG_OK;
#else
    s->fd = -1;
    if (named_gz(path))
        return no_zlib(path, err, errlen);
    s->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0)
        return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: cannot open: %s", path, strerror(errno));
    return AG_OK;
#endif
}

static void source_close(source *s)
{
#ifdef NN_HAVE_ZLIB
    if (s->gz)
        gzclose(s->gz);
    s->gz = NULL;
#else
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
#endif
}

/* Reads up to n bytes; fewer only at the end of the data (a gzip stream cut
** short sets 'cut_short'). -1 on an error, with the message written. */
static ssize_t source_read(source *s, void *buf, size_t n, char *err, size_t errlen)
{
#ifdef NN_HAVE_ZLIB
    size_t done = 0;
    while (done < n && !s->cut_short) {
        unsigned want = n - done > (size_t)INT_MAX / 2 ? (unsigned)(INT_MAX / 2) : (unsigned)(n - done);
        int got = gzread(s->gz, (char *)buf + done, want);
        int code = Z_OK;
        const char *why = gzerror(s->gz, &code);
        if (got < 0 || (code != Z_OK && code != Z_BUF_ERROR)) {
            nni_io_fail(err, errlen, AG_EIO, WHO ": %s: reading failed: %s", s->path,
                        code == Z_ERRNO ? strerror(errno) : why);
            return -1;
        }
        if (got > 0)
            done += (size_t)got;
        if (code == Z_BUF_ERROR)
            s->cut_short = true;
        else if (got == 0)
            break;
    }
    return (ssize_t)done;
#else
    ssize_t got = nni_io_read_full(s->fd, buf, n);
    if (got < 0)
        nni_io_fail(err, errlen, AG_EIO, WHO ": %s: reading failed: %s", s->path, strerror(errno));
    return got;
#endif
}

/* One IDX file of u8 values, its dims and data. */
typedef struct idx_file {
    int ndims;
    uint32_t dims[3];
    unsigned char *data;
    size_t size, cap;
} idx_file;

static void dims_str(char *buf, size_t n, const idx_file *f)
{
    if (f->ndims == 1)
        snprintf(buf, n, "%lu", (unsigned long)f->dims[0]);
    else
        snprintf(buf, n, "%lux%lux%lu", (unsigned long)f->dims[0], (unsigned long)f->dims[1],
                 (unsigned long)f->dims[2]);
}

/* Reads all of the data after the header: exactly 'expected' bytes. */
static ag_status read_data(source *s, idx_file *f, size_t expected, ag_alloc_fn fn, void *ud, char *err,
                           size_t errlen)
{
    char dims[64];
    dims_str(dims, sizeof dims, f);
    while (f->size < expected) {
        if (f->size == f->cap) {
            size_t ncap = f->cap ? 2 * f->cap : 1u << 20;
            if (ncap > expected)
                ncap = expected;
            unsigned char *p = ag_realloc(fn, ud, f->data, f->cap, ncap);
            if (!p)
                return nni_io_fail(err, errlen, AG_ENOMEM, WHO ": %s: out of memory for %zu bytes of data",
                                   s->path, ncap);
            f->data = p;
            f->cap = ncap;
        }
        ssize_t got = source_read(s, f->data + f->size, f->cap - f->size, err, errlen);
        if (got < 0)
            return AG_EIO;
        if (got == 0)
            return nni_io_fail(
                err, errlen, AG_EIO,
                WHO ": %s: truncated: header says %s but only %zu bytes of data follow (%zu expected)%s",
                s->path, dims, f->size, expected, s->cut_short ? "; the gzip stream ends early" : "");
        f->size += (size_t)got;
    }
    unsigned char probe;
    ssize_t extra = source_read(s, &probe, 1, err, errlen);
    if (extra < 0)
        return AG_EIO;
    if (extra > 0)
        return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: header says %s (%zu bytes) but more data follows",
                           s->path, dims, expected);
    if (s->cut_short)
        return nni_io_fail(err, errlen, AG_EIO,
                           WHO ": %s: truncated: the gzip stream ends before its trailer", s->path);
    return AG_OK;
}

/* Reads an IDX file of u8 values with 'ndims' dims (1 or 3). */
static ag_status read_idx(const char *path, int ndims, const char *what, ag_alloc_fn fn, void *ud,
                          idx_file *f, char *err, size_t errlen)
{
    memset(f, 0, sizeof *f);
    f->ndims = ndims;
    source s;
    ag_status st = source_open(&s, path, err, errlen);
    if (st != AG_OK)
        return st;
    unsigned char head[16];
    size_t head_len = 4 + 4 * (size_t)ndims;
    ssize_t got = source_read(&s, head, head_len, err, errlen);
    uint32_t magic = 0;
    if (got >= 4)
        magic = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
    uint32_t want = IDX_U8 << 8 | (uint32_t)ndims;
    if (got < 0)
        st = AG_EIO;
#ifndef NN_HAVE_ZLIB
    else if (got >= 2 && head[0] == 0x1f && head[1] == 0x8b)
        st = no_zlib(path, err, errlen);
#endif
    else if (got < 4)
        st = nni_io_fail(err, errlen, AG_EIO,
                         WHO ": %s: truncated: %zd bytes, too short for an IDX magic number%s", path, got,
                         s.cut_short ? "; the gzip stream ends early" : "");
    else if (magic != want)
        st = nni_io_fail(err, errlen, AG_EIO,
                         WHO ": %s: bad magic 0x%08lx: IDX %s are 0x%08lx (u8 data, %d dim%s)", path,
                         (unsigned long)magic, what, (unsigned long)want, ndims, ndims > 1 ? "s" : "");
    else if ((size_t)got < head_len)
        st = nni_io_fail(err, errlen, AG_EIO, WHO ": %s: truncated: the header of %zu bytes has only %zd%s",
                         path, head_len, got, s.cut_short ? "; the gzip stream ends early" : "");
    if (st != AG_OK) {
        source_close(&s);
        return st;
    }
    uint64_t expected = 1;
    for (int d = 0; d < ndims; d++) {
        const unsigned char *b = head + 4 + 4 * d;
        f->dims[d] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    }
    for (int d = 0; d < ndims; d++) {
        /* Checked before multiplying, so the product never wraps. */
        if (f->dims[d] != 0 && expected > (uint64_t)(SIZE_MAX / 16) / f->dims[d]) {
            char dims[64];
            dims_str(dims, sizeof dims, f);
            source_close(&s);
            return nni_io_fail(err, errlen, AG_ESHAPE, WHO ": %s: dims %s are too large", path, dims);
        }
        expected *= f->dims[d];
    }
    st = read_data(&s, f, (size_t)expected, fn, ud, err, errlen);
    source_close(&s);
    if (st != AG_OK) {
        ag_realloc(fn, ud, f->data, f->cap, 0);
        f->data = NULL;
    }
    return st;
}

/* nn_idx_load and nn_idx_load_u8: pixels as dtype values, or kept as bytes. */
static ag_status idx_load(const char *images_path, const char *labels_path, ag_dtype dt, bool bytes,
                          ag_alloc_fn fn, void *ud, nn_dataset **out, char *err, size_t errlen)
{
    if (!out)
        return nni_io_fail(err, errlen, AG_EINVAL, WHO ": out is NULL");
    *out = NULL;
    if (!images_path || !labels_path)
        return nni_io_fail(err, errlen, AG_EINVAL, WHO ": the %s path is NULL",
                           images_path ? "labels" : "images");
    if (dt != AG_F32 && dt != AG_F64)
        return nni_io_fail(err, errlen, AG_EDTYPE, WHO ": dtype %d is neither AG_F32 nor AG_F64", (int)dt);
    idx_file img, lab = {0};
    ag_status s = read_idx(images_path, 3, "images", fn, ud, &img, err, errlen);
    if (s == AG_OK)
        s = read_idx(labels_path, 1, "labels", fn, ud, &lab, err, errlen);
    if (s == AG_OK && img.dims[0] != lab.dims[0])
        s = nni_io_fail(err, errlen, AG_ESHAPE, WHO ": %s holds %lu images but %s holds %lu labels",
                        images_path, (unsigned long)img.dims[0], labels_path, (unsigned long)lab.dims[0]);
    nn_dataset *ds = NULL;
    if (s == AG_OK) {
        const int64_t shape[2] = {img.dims[1], img.dims[2]};
        s = bytes ? nn_dataset_new_u8(fn, ud, dt, 255.0, img.dims[0], 2, shape, NN_Y_LABELS, 0, NULL, &ds,
                                      err, errlen)
                  : nn_dataset_new(fn, ud, dt, img.dims[0], 2, shape, NN_Y_LABELS, 0, NULL, &ds, err, errlen);
        if (s == AG_ENOMEM)
            nni_io_fail(err, errlen, s, WHO ": %s: out of memory for %lu images", images_path,
                        (unsigned long)img.dims[0]);
        else if (s != AG_OK)   /* the message would name nn_dataset_new, not what was called */
            nni_io_fail(err, errlen, s, WHO ": %s: %lu images of %lux%lu pixels are too large", images_path,
                        (unsigned long)img.dims[0], (unsigned long)img.dims[1], (unsigned long)img.dims[2]);
    }
    if (s == AG_OK) {
        /* Divide rather than multiply by 1/255, so each value is the
        ** correctly rounded v/255 in its dtype. */
        if (bytes) {
            if (img.size)
                memcpy(nn_dataset_x_u8(ds), img.data, img.size);
        } else if (dt == AG_F32) {
            float *x = nn_dataset_x(ds);
            for (size_t i = 0; i < img.size; i++)
                x[i] = (float)img.data[i] / 255.0f;
        } else {
            double *x = nn_dataset_x(ds);
            for (size_t i = 0; i < img.size; i++)
                x[i] = (double)img.data[i] / 255.0;
        }
        int64_t *labels = nn_dataset_labels(ds);
        for (size_t i = 0; i < lab.size; i++)
            labels[i] = lab.data[i];
        *out = ds;
    }
    ag_realloc(fn, ud, img.data, img.cap, 0);
    ag_realloc(fn, ud, lab.data, lab.cap, 0);
    return s == AG_OK ? nni_io_ok(err, errlen) : s;
}

ag_status nn_idx_load(const char *images_path, const char *labels_path, ag_dtype dt, ag_alloc_fn fn, void *ud,
                      nn_dataset **out, char *err, size_t errlen)
{
    return idx_load(images_path, labels_path, dt, false, fn, ud, out, err, errlen);
}

ag_status nn_idx_load_u8(const char *images_path, const char *labels_path, ag_dtype dt, ag_alloc_fn fn,
                         void *ud, nn_dataset **out, char *err, size_t errlen)
{
    ag_status s = idx_load(images_path, labels_path, dt, true, fn, ud, out, err, errlen);
    /* The shared code's messages start with nn_idx_load's name: say ours. */
    size_t len = strlen(WHO);
    if (s != AG_OK && err && errlen > len + 3 && !strncmp(err, WHO ":", len + 1)) {
        memmove(err + len + 3, err + len, errlen - len - 3);
        memcpy(err + len, "_u8", 3);
        err[errlen - 1] = '\0';
    }
    return s;
}
