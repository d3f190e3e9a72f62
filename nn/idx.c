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
#include <sys/stat.h>
#include <unistd.h>
#ifdef NN_HAVE_ZLIB
#include <zlib.h>
#endif

#define WHO "nn_idx_load"
#define IDX_U8 0x08u
#define MAX_GZIP_RATIO 1032u

/* A file read as it is, or inflated when it starts with the gzip magic.
** Gzip streams are inflated here (not by gzread) so that what follows the
** last member is seen: gzread skips trailing garbage silently, and a plain
** IDX file with trailing bytes is refused, so a gzipped one must be too. */
typedef struct source {
    const char *path;
    int fd;
    bool gz;        /* the file starts with the gzip magic */
    bool cut_short; /* the gzip stream ended before its end marker */
#ifdef NN_HAVE_ZLIB
    bool ended;     /* the last gzip member is complete */
    bool z_ready;   /* 'z' was initialised */
    z_stream z;
    ag_alloc_fn fn; /* zlib's memory goes through the library's hook */
    void *ud;
    unsigned char in[1 << 14];
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
#else
/* zlib frees without a size, and the hook wants one: each block carries its
** size in a 16-byte header (which keeps the payload aligned). */
static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    source *s = opaque;
    size_t n = (size_t)items * size;
    if (size != 0 && n / size != items)
        return Z_NULL;
    unsigned char *p = ag_realloc(s->fn, s->ud, NULL, 0, n + 16);
    if (!p)
        return Z_NULL;
    memcpy(p, &n, sizeof n);
    return p + 16;
}

static void z_free(voidpf opaque, voidpf q)
{
    source *s = opaque;
    if (!q)
        return;
    unsigned char *p = (unsigned char *)q - 16;
    size_t n;
    memcpy(&n, p, sizeof n);
    ag_realloc(s->fn, s->ud, p, n + 16, 0);
}
#endif

/* Refills the gzip input; returns the bytes read (0 at end of file) or -1
** with the message written. */
#ifdef NN_HAVE_ZLIB
static ssize_t refill(source *s, char *err, size_t errlen)
{
    ssize_t r = nni_io_read_full(s->fd, s->in, sizeof s->in);
    if (r < 0) {
        nni_io_fail(err, errlen, AG_EIO, WHO ": %s: reading failed: %s", s->path, strerror(errno));
        return -1;
    }
    s->z.next_in = s->in;
    s->z.avail_in = (uInt)r;
    return r;
}
#endif

static ag_status source_open(source *s, const char *path, ag_alloc_fn fn, void *ud, char *err, size_t errlen)
{
    s->path = path;
    s->fd = -1;
    s->gz = s->cut_short = false;
#ifdef NN_HAVE_ZLIB
    s->ended = s->z_ready = false;
#else
    (void)fn;
    (void)ud;
    if (named_gz(path))
        return no_zlib(path, err, errlen);
#endif
    ag_status st = AG_OK;
    s->fd = nni_io_open_regular(WHO, path, &st, err, errlen);
    if (s->fd < 0)
        return st;
    unsigned char magic[2];
    s->gz = nni_io_pread_full(s->fd, magic, 2, 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
#ifdef NN_HAVE_ZLIB
    if (s->gz) {
        memset(&s->z, 0, sizeof s->z);
        s->fn = fn;
        s->ud = ud;
        s->z.zalloc = z_alloc;
        s->z.zfree = z_free;
        s->z.opaque = s;
        /* 16 + MAX_WBITS: a gzip wrapper, not zlib's own. */
        if (inflateInit2(&s->z, 16 + MAX_WBITS) != Z_OK)
            return nni_io_fail(err, errlen, AG_ENOMEM, WHO ": %s: out of memory for the gzip inflater", path);
        s->z_ready = true;
    }
#else
    if (s->gz)
        return no_zlib(path, err, errlen);
#endif
    return AG_OK;
}

static void source_close(source *s)
{
#ifdef NN_HAVE_ZLIB
    if (s->z_ready)
        inflateEnd(&s->z);
    s->z_ready = false;
#endif
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* The size of the file (compressed, for a gzip file). */
static uint64_t source_file_size(const source *s)
{
    struct stat st;
    return fstat(s->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

#ifdef NN_HAVE_ZLIB
/* After a member's end: another member (it starts with the magic), the end
** of the file, or trailing bytes, which are refused. -1 with the message
** written, 0 when done, 1 when another member follows. */
static int after_member(source *s, char *err, size_t errlen)
{
    if (s->z.avail_in < 2) {
        /* Keep a lone byte, then top the buffer up behind it. */
        unsigned char first = s->z.avail_in ? s->z.next_in[0] : 0;
        size_t had = s->z.avail_in;
        s->in[0] = first;
        ssize_t r = nni_io_read_full(s->fd, s->in + had, sizeof s->in - had);
        if (r < 0) {
            nni_io_fail(err, errlen, AG_EIO, WHO ": %s: reading failed: %s", s->path, strerror(errno));
            return -1;
        }
        s->z.next_in = s->in;
        s->z.avail_in = (uInt)(had + (size_t)r);
    }
    if (s->z.avail_in == 0)
        return 0;
    if (s->z.avail_in >= 2 && s->z.next_in[0] == 0x1f && s->z.next_in[1] == 0x8b)
        return 1;
    off_t pos = lseek(s->fd, 0, SEEK_CUR);
    unsigned long long at = pos >= 0 ? (unsigned long long)pos - s->z.avail_in : 0;
    nni_io_fail(err, errlen, AG_EIO,
                WHO ": %s: trailing bytes after the gzip stream (from byte %llu of the file): not gzip data",
                s->path, at);
    return -1;
}
#endif

/* Reads up to n bytes; fewer only at the end of the data (a gzip stream cut
** short sets 'cut_short'). -1 on an error, with the message written. */
static ssize_t source_read(source *s, void *buf, size_t n, char *err, size_t errlen)
{
#ifdef NN_HAVE_ZLIB
    if (s->gz) {
        size_t done = 0;
        while (done < n && !s->ended && !s->cut_short) {
            if (s->z.avail_in == 0) {
                ssize_t r = refill(s, err, errlen);
                if (r < 0)
                    return -1;
                if (r == 0) {
                    s->cut_short = true;
                    break;
                }
            }
            size_t want = n - done > (size_t)UINT_MAX ? (size_t)UINT_MAX : n - done;
            s->z.next_out = (Bytef *)buf + done;
            s->z.avail_out = (uInt)want;
            int rc = inflate(&s->z, Z_NO_FLUSH);
            done += want - s->z.avail_out;
            if (rc == Z_STREAM_END) {
                int next = after_member(s, err, errlen);
                if (next < 0)
                    return -1;
                if (next == 0)
                    s->ended = true;
                else if (inflateReset(&s->z) != Z_OK) {
                    nni_io_fail(err, errlen, AG_EIO, WHO ": %s: cannot restart the inflater", s->path);
                    return -1;
                }
            } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
                nni_io_fail(err, errlen, AG_EIO, WHO ": %s: not a valid gzip stream: %s", s->path,
                            rc == Z_MEM_ERROR ? "out of memory" : s->z.msg ? s->z.msg : "inflate failed");
                return -1;
            }
        }
        return (ssize_t)done;
    }
#endif
    ssize_t got = nni_io_read_full(s->fd, buf, n);
    if (got < 0)
        nni_io_fail(err, errlen, AG_EIO, WHO ": %s: reading failed: %s", s->path, strerror(errno));
    return got;
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
    ag_status st = source_open(&s, path, fn, ud, err, errlen);
    if (st != AG_OK) {
        source_close(&s);
        return st;
    }
    unsigned char head[16];
    size_t head_len = 4 + 4 * (size_t)ndims;
    ssize_t got = source_read(&s, head, head_len, err, errlen);
    uint32_t magic = 0;
    if (got >= 4)
        magic = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
    uint32_t want = IDX_U8 << 8 | (uint32_t)ndims;
    if (got < 0)
        st = AG_EIO;
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
    /* Deflate codes at most 258 bytes in 2 bits: no gzip file inflates to
    ** more than 1032 times its size. A header that promises more is a lie,
    ** refused before any of it is inflated. */
    uint64_t packed = s.gz ? source_file_size(&s) : 0;
    if (s.gz && packed <= UINT64_MAX / MAX_GZIP_RATIO && head_len + expected > MAX_GZIP_RATIO * packed) {
        char dims[64];
        dims_str(dims, sizeof dims, f);
        source_close(&s);
        return nni_io_fail(err, errlen, AG_EIO,
                           WHO ": %s: header says %s (%llu bytes in all) but a gzip file of %llu bytes "
                           "inflates to at most %llu",
                           path, dims, (unsigned long long)(head_len + expected), (unsigned long long)packed,
                           (unsigned long long)(MAX_GZIP_RATIO * packed));
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
