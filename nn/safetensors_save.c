/*
** safetensors_save.c: writing safetensors checkpoints atomically (through
** atomic_file.c: a crash or an error at any point leaves either the old
** checkpoint or the new one, never a torn file), and never one the reader
** would refuse (safetensors_limits.h).
*/
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"
#include "io_util.h"
#include "json.h"
#include "safetensors_limits.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


/* A growing byte buffer through the hook; 'oom' sticks after a failure.
** It never grows past 'limit' bytes: beyond it 'len' goes on counting what
** would have been written (so the message can say how much), but nothing is
** stored, and 'over' is set. */
typedef struct text {
    ag_alloc_fn fn;
    void *ud;
    char *p;
    size_t len, cap, limit;
    bool oom, over;
} text;

static void put(text *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->over || n > b->limit - b->len) {
        b->over = true;
        b->len += n;
        return;
    }
    if (b->len + n > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + n)
            ncap = ncap > b->limit / 2 ? b->limit : 2 * ncap;
        char *q = ag_realloc(b->fn, b->ud, b->p, b->cap, ncap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(text *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(text *b, uint64_t v)
{
    char num[24];
    int w = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    put(b, num, (size_t)w);
}

/* A JSON string: quotes, backslashes and control characters escaped; other
** bytes (valid UTF-8, checked before) are written as they are, in runs. */
static void put_json_string(text *b, const char *s)
{
    put(b, "\"", 1);
    const unsigned char *c = (const unsigned char *)s;
    while (*c) {
        size_t run = 0;
        while (c[run] >= 0x20 && c[run] != '"' && c[run] != '\\')
            run++;
        put(b, (const char *)c, run);
        c += run;
        if (!*c)
            break;
        char esc[8];
        if (*c == '"' || *c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*c;
            put(b, esc, 2);
        } else if (*c == '\n') {
            put(b, "\\n", 2);
        } else if (*c == '\t') {
            put(b, "\\t", 2);
        } else if (*c == '\r') {
            put(b, "\\r", 2);
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", *c);
            put(b, esc, 6);
        }
        c++;
    }
    put(b, "\"", 1);
}

static bool valid_utf8(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t k = nni_utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Reports the first string of strs[0..n) that is NULL, empty, not UTF-8 or
** repeated; 'what' names the array in the message. */
static ag_status check_strings(const char *who, const char *path, int n, const char *const *strs,
                               const char *what, bool allow_empty, ag_alloc_fn fn, void *ud, char *err,
                               size_t errlen)
{
    for (int i = 0; i < n; i++) {
        if (!strs[i])
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: %s[%d] is NULL", who, path, what, i);
        if (!allow_empty && !strs[i][0])
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: %s[%d] is empty", who, path, what, i);
        if (!valid_utf8(strs[i]))
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: %s[%d] is not valid UTF-8", who, path, what,
                               i);
    }
    if (n < 2)
        return AG_OK;
    const char **sorted = ag_realloc(fn, ud, NULL, 0, (size_t)n * sizeof *sorted);
    if (!sorted)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", who, path);
    memcpy(sorted, strs, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, by_string);
    ag_status s = AG_OK;
    for (int i = 1; i < n && s == AG_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            s = nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: %s '%.80s' appears twice", who, path, what,
                            sorted[i]);
    ag_realloc(fn, ud, sorted, (size_t)n * sizeof *sorted, 0);
    return s;
}

static ag_status check_args(const char *who, const char *path, int n, const char *const *names,
                            ag_tensor *const *tensors, int nmeta, const char *const *keys,
                            const char *const *values, ag_alloc_fn fn, void *ud, char *err, size_t errlen)
{
    if (!path)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: path is NULL", who);
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: n is %d with names %s and tensors %s", who, path,
                           n, names ? "set" : "NULL", tensors ? "set" : "NULL");
    if (nmeta < 0 || (nmeta > 0 && (!keys || !values)))
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: nmeta is %d with keys %s and values %s", who,
                           path, nmeta, keys ? "set" : "NULL", values ? "set" : "NULL");
    for (int i = 0; i < n; i++) {
        if (names[i] && strcmp(names[i], "__metadata__") == 0)
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: names[%d] is the reserved \"__metadata__\"",
                               who, path, i);
        if (!tensors[i] || ag_is_nil(tensors[i]))
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: tensors[%d] ('%.80s') is %s", who, path, i,
                               names[i] ? names[i] : "", tensors[i] ? "nil" : "NULL");
    }
    for (int i = 0; i < nmeta; i++)
        if (!values[i] || !valid_utf8(values[i]))
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: meta_values[%d] is %s", who, path, i,
                               values[i] ? "not valid UTF-8" : "NULL");
    ag_status s = check_strings(who, path, n, names, "names", false, fn, ud, err, errlen);
    if (s == AG_OK)
        s = check_strings(who, path, nmeta, keys, "meta_keys", true, fn, ud, err, errlen);
    return s;
}

/* The JSON header, padded with spaces so the data after it starts at a file
** offset that is a multiple of 8. */
static void build_header(text *b, int n, const char *const *names, ag_tensor *const *tensors, int nmeta,
                         const char *const *keys, const char *const *values)
{
    puts_(b, "{");
    bool first = true;
    if (nmeta > 0) {
        puts_(b, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i > 0)
                puts_(b, ",");
            put_json_string(b, keys[i]);
            puts_(b, ":");
            put_json_string(b, values[i]);
        }
        puts_(b, "}");
        first = false;
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        ag_tensor *x = tensors[i];
        if (!first)
            puts_(b, ",");
        first = false;
        put_json_string(b, names[i]);
        puts_(b, ag_dtype_of(x) == AG_F32 ? ":{\"dtype\":\"F32\",\"shape\":["
                                          : ":{\"dtype\":\"F64\",\"shape\":[");
        for (int d = 0; d < ag_rank(x); d++) {
            if (d > 0)
                puts_(b, ",");
            put_u64(b, (uint64_t)ag_shape(x)[d]);
        }
        uint64_t nbytes = (uint64_t)ag_numel(x) * ag_dtype_size(ag_dtype_of(x));
        puts_(b, "],\"data_offsets\":[");
        put_u64(b, offset);
        puts_(b, ",");
        put_u64(b, offset + nbytes);
        puts_(b, "]}");
        offset += nbytes;
    }
    puts_(b, "}");
    /* After a failed allocation 'len' no longer grows: stop. */
    while (!b->oom && (8 + b->len) % 8 != 0)
        puts_(b, " ");
}

/* Writes the little-endian data of x; on a big-endian host through a small
** swapped copy, so nothing is allocated. */
static bool write_tensor(int fd, ag_tensor *x)
{
    size_t esize = ag_dtype_size(ag_dtype_of(x));
    size_t nbytes = (size_t)ag_numel(x) * esize;
    const char *data = ag_data(x);
    if (nbytes == 0)
        return true;
    if (nni_io_host_is_little_endian())
        return nni_io_write_full(fd, data, nbytes) == (ssize_t)nbytes;
    char chunk[4096];
    for (size_t done = 0; done < nbytes;) {
        size_t k = nbytes - done < sizeof chunk ? nbytes - done : sizeof chunk;
        memcpy(chunk, data + done, k);
        nni_io_swap_bytes(chunk, k / esize, esize);
        if (nni_io_write_full(fd, chunk, k) != (ssize_t)k)
            return false;
        done += k;
    }
    return true;
}

static ag_status write_file(const char *who, const char *path, const text *header, int n,
                            ag_tensor *const *tensors, ag_alloc_fn fn, void *ud, char *err, size_t errlen)
{
    nni_atomic a;
    ag_status s = nni_atomic_begin(&a, who, path, fn, ud, err, errlen);
    if (s != AG_OK)
        return s;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)header->len >> (8 * i));
    bool ok = nni_io_write_full(a.fd, len8, 8) == 8 &&
              nni_io_write_full(a.fd, header->p, header->len) == (ssize_t)header->len;
    for (int i = 0; ok && i < n; i++)
        ok = write_tensor(a.fd, tensors[i]);
    if (!ok) {
        int saved = errno;
        s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: writing failed: %s; the previous file is unchanged",
                        who, path, strerror(saved));
        nni_atomic_abort(&a);
        return s;
    }
    return nni_atomic_commit(&a, err, errlen);
}

/* Both public functions; 'who' is the one called, for messages. */
static ag_status save_as(const char *who, const char *path, int n, const char *const *names,
                         ag_tensor *const *tensors, int nmeta, const char *const *meta_keys,
                         const char *const *meta_values, ag_alloc_fn fn, void *ud, char *err, size_t errlen)
{
    ag_status s =
        check_args(who, path, n, names, tensors, nmeta, meta_keys, meta_values, fn, ud, err, errlen);
    if (s != AG_OK)
        return s;
    text header = {.fn = fn, .ud = ud, .limit = NNI_ST_MAX_HEADER_BYTES};
    build_header(&header, n, names, tensors, nmeta, meta_keys, meta_values);
    if (header.oom)
        s = nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", who, path);
    else if (header.over)
        /* Checked before any file is touched: the previous one stays. */
        s = nni_io_fail(err, errlen, AG_EINVAL,
                        "%s: %s: the header of %d tensors and %d metadata pairs would take %zu bytes, above "
                        "the limit of %u that nn_safetensors_open reads; nothing was written", who,
                        path, n, nmeta, header.len, NNI_ST_MAX_HEADER_BYTES);
    else
        s = write_file(who, path, &header, n, tensors, fn, ud, err, errlen);
    ag_realloc(fn, ud, header.p, header.cap, 0);
    return s == AG_OK ? nni_io_ok(err, errlen) : s;
}

/* Messages name the function called (they all said nn_safetensors_save). */
ag_status nn_safetensors_save_meta(const char *path, int n, const char *const *names,
                                   ag_tensor *const *tensors, int nmeta, const char *const *meta_keys,
                                   const char *const *meta_values, ag_alloc_fn fn, void *ud, char *err,
                                   size_t errlen)
{
    return save_as("nn_safetensors_save_meta", path, n, names, tensors, nmeta, meta_keys, meta_values, fn, ud,
                   err, errlen);
}

ag_status nn_safetensors_save(const char *path, int n, const char *const *names, ag_tensor *const *tensors,
                              ag_alloc_fn fn, void *ud, char *err, size_t errlen)
{
    return save_as("nn_safetensors_save", path, n, names, tensors, 0, NULL, NULL, fn, ud, err, errlen);
}
