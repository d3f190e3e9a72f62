/*
** safetensors.c: reading safetensors checkpoints. Opening a file reads and
** validates its whole header (JSON syntax, dtypes, shapes, offsets that tile
** the data exactly, unique names) before anything else happens; tensors are
** then read with pread at offsets that are known to lie inside the file.
*/
#define _POSIX_C_SOURCE 200809L
#include "io_util.h"
#include "json.h"
#include "safetensors_limits.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct dtype_desc {
    const char *name;
    size_t size;
} dtype_desc;

/* Every dtype of the format, so that any valid file can be listed. */
static const dtype_desc dtype_table[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8},
};

typedef struct meta_pair {
    const char *key, *value;
} meta_pair;

struct nn_safetensors {
    ag_alloc_fn fn;
    void *ud;
    int fd;
    char *path; /* copy, for messages */
    size_t path_size;
    char *header; /* the JSON text; names point into it */
    size_t header_len;
    uint64_t data_start, data_len; /* where the data section lies in the file */
    nn_safetensors_info *entries;  /* sorted by data offset */
    int count, cap;
    const nn_safetensors_info **by_name; /* sorted by name, for find */
    meta_pair *meta;                     /* sorted by key */
    int nmeta, meta_cap;
};

static const dtype_desc *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof dtype_table / sizeof dtype_table[0]; i++)
        if (strcmp(dtype_table[i].name, name) == 0)
            return &dtype_table[i];
    return NULL;
}

static size_t dtype_size(const char *name)
{
    const dtype_desc *d = find_dtype(name);
    return d ? d->size : 0;
}

/* Grows an array of 'esize'-byte elements to hold one more. */
static bool grow(nn_safetensors *f, void **array, int *cap, int used, size_t esize)
{
    if (used < *cap)
        return true;
    if (*cap > (INT32_MAX / 2))
        return false;
    int ncap = *cap ? 2 * *cap : 16;
    void *p = ag_realloc(f->fn, f->ud, *array, (size_t)*cap * esize, (size_t)ncap * esize);
    if (!p)
        return false;
    *array = p;
    *cap = ncap;
    return true;
}

/* ------------------------------------------------------------- the header */

/* Names appear in messages shortened, so a huge key cannot flood them. */
#define NAME_FMT "'%.80s%s'"
#define NAME_ARG(s) (s), strlen(s) > 80 ? "..." : ""

/* Records a header error on j; returns AG_EIO, the status of every one. */
static ag_status bad(nni_json *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static ag_status bad(nni_json *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nni_json_vfail(j, fmt, ap);
    va_end(ap);
    return AG_EIO;
}

/* One tensor's object: {"dtype": .., "shape": [..], "data_offsets": [b, e]}.
** Returns AG_EIO with the message in j, or AG_ENOMEM. */
static ag_status parse_tensor(nn_safetensors *f, nni_json *j, char *name, size_t name_len)
{
    if (memchr(name, '\0', name_len))
        return bad(j, "a tensor name holds a NUL character");
    if (name_len == 0)
        return bad(j, "a tensor name is empty");
    nn_safetensors_info e = {.name = name};
    bool have_dtype = false, have_shape = false, have_offsets = false;
    if (!nni_json_expect(j, '{'))
        return AG_EIO;
    if (!nni_json_eat(j, '}')) {
        do {
            char *key;
            size_t key_len;
            if (!nni_json_string(j, &key, &key_len) || !nni_json_expect(j, ':'))
                return AG_EIO;
            if (strcmp(key, "dtype") == 0 && key_len == 5) {
                char *dt;
                size_t dt_len;
                if (have_dtype)
                    return bad(j, "tensor " NAME_FMT ": \"dtype\" given twice", NAME_ARG(name));
                if (!nni_json_string(j, &dt, &dt_len))
                    return AG_EIO;
                const dtype_desc *d = find_dtype(dt);
                if (!d || strlen(dt) != dt_len) {
                    char shown[4 * 16 + 1]; /* escaped: a \u0000 would end the message */
                    nni_io_escape(shown, sizeof shown, dt, dt_len < 16 ? dt_len : 16);
                    return bad(j, "tensor " NAME_FMT ": unknown dtype '%s'", NAME_ARG(name), shown);
                }
                e.dtype = d->name;
                have_dtype = true;
            } else if (strcmp(key, "shape") == 0 && key_len == 5) {
                if (have_shape)
                    return bad(j, "tensor " NAME_FMT ": \"shape\" given twice", NAME_ARG(name));
                if (!nni_json_expect(j, '['))
                    return AG_EIO;
                if (!nni_json_eat(j, ']')) {
                    do {
                        uint64_t d;
                        if (e.rank == AG_MAX_DIMS)
                            return bad(j, "tensor " NAME_FMT ": rank above AG_MAX_DIMS (%d)", NAME_ARG(name),
                                       AG_MAX_DIMS);
                        if (!nni_json_uint(j, &d))
                            return AG_EIO;
                        e.shape[e.rank++] = (int64_t)d;
                    } while (nni_json_eat(j, ','));
                    if (!nni_json_expect(j, ']'))
                        return AG_EIO;
                }
                have_shape = true;
            } else if (strcmp(key, "data_offsets") == 0 && key_len == 12) {
                if (have_offsets)
                    return bad(j, "tensor " NAME_FMT ": \"data_offsets\" given twice", NAME_ARG(name));
                if (!nni_json_expect(j, '[') || !nni_json_uint(j, &e.begin) || !nni_json_expect(j, ',') ||
                    !nni_json_uint(j, &e.end) || !nni_json_expect(j, ']'))
                    return AG_EIO;
                have_offsets = true;
            } else {
                char shown[4 * 32 + 1];
                nni_io_escape(shown, sizeof shown, key, key_len < 32 ? key_len : 32);
                return bad(j, "tensor " NAME_FMT ": unknown field '%s'", NAME_ARG(name), shown);
            }
        } while (nni_json_eat(j, ','));
        if (!nni_json_expect(j, '}'))
            return AG_EIO;
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return bad(j, "tensor " NAME_FMT " lacks \"%s\"", NAME_ARG(name),
                   !have_dtype   ? "dtype"
                   : !have_shape ? "shape"
                                 : "data_offsets");
    size_t esize = dtype_size(e.dtype);
    e.numel = nni_io_numel(e.rank, e.shape, INT64_MAX / (int64_t)esize);
    char shp[96];
    ag_shape_str(shp, sizeof shp, e.rank, e.shape);
    if (e.numel < 0)
        return bad(j, "tensor " NAME_FMT ": shape %s is too large", NAME_ARG(name), shp);
    if (e.end < e.begin)
        return bad(j, "tensor " NAME_FMT ": data_offsets [%llu, %llu] end before they begin", NAME_ARG(name),
                   (unsigned long long)e.begin, (unsigned long long)e.end);
    uint64_t nbytes = (uint64_t)e.numel * esize;
    if (e.end - e.begin != nbytes)
        return bad(j, "tensor " NAME_FMT ": %s %s needs %llu bytes but data_offsets [%llu, %llu] span %llu",
                   NAME_ARG(name), e.dtype, shp, (unsigned long long)nbytes, (unsigned long long)e.begin,
                   (unsigned long long)e.end, (unsigned long long)(e.end - e.begin));
    if (!grow(f, (void **)&f->entries, &f->cap, f->count, sizeof e))
        return AG_ENOMEM;
    f->entries[f->count++] = e;
    return AG_OK;
}

static ag_status parse_metadata(nn_safetensors *f, nni_json *j)
{
    if (!nni_json_expect(j, '{'))
        return AG_EIO;
    if (nni_json_eat(j, '}'))
        return AG_OK;
    do {
        char *key, *value;
        size_t key_len, value_len;
        if (!nni_json_string(j, &key, &key_len) || !nni_json_expect(j, ':'))
            return AG_EIO;
        if (nni_json_peek(j) != '"')
            return bad(j, "__metadata__ values must be strings");
        if (!nni_json_string(j, &value, &value_len))
            return AG_EIO;
        if (memchr(key, '\0', key_len) || memchr(value, '\0', value_len))
            return bad(j, "a __metadata__ string holds a NUL character");
        if (!grow(f, (void **)&f->meta, &f->meta_cap, f->nmeta, sizeof(meta_pair)))
            return AG_ENOMEM;
        f->meta[f->nmeta++] = (meta_pair){key, value};
    } while (nni_json_eat(j, ','));
    return nni_json_expect(j, '}') ? AG_OK : AG_EIO;
}

static ag_status parse_header(nn_safetensors *f, nni_json *j)
{
    bool have_meta = false;
    if (!nni_json_expect(j, '{'))
        return AG_EIO;
    if (!nni_json_eat(j, '}')) {
        do {
            char *key;
            size_t key_len;
            if (!nni_json_string(j, &key, &key_len) || !nni_json_expect(j, ':'))
                return AG_EIO;
            ag_status s;
            if (key_len == 12 && strcmp(key, "__metadata__") == 0) {
                if (have_meta)
                    return bad(j, "\"__metadata__\" given twice");
                have_meta = true;
                s = parse_metadata(f, j);
            } else {
                s = parse_tensor(f, j, key, key_len);
            }
            if (s != AG_OK)
                return s;
        } while (nni_json_eat(j, ','));
        if (!nni_json_expect(j, '}'))
            return AG_EIO;
    }
    if (!nni_json_at_end(j))
        return bad(j, "text after the closing '}'");
    return AG_OK;
}

/* -------------------------------------------------------- checks on the whole */

static int by_offset(const void *a, const void *b)
{
    const nn_safetensors_info *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int by_name(const void *a, const void *b)
{
    const nn_safetensors_info *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int by_key(const void *a, const void *b)
{
    const meta_pair *x = a, *y = b;
    return strcmp(x->key, y->key);
}

/* The offsets, sorted, must run 0..data_len with no gap and no overlap. */
static ag_status check_tiling(nn_safetensors *f, const char *who, char *err, size_t errlen)
{
    if (f->count > 0)
        qsort(f->entries, (size_t)f->count, sizeof *f->entries, by_offset);
    uint64_t covered = 0;
    for (int i = 0; i < f->count; i++) {
        const nn_safetensors_info *e = &f->entries[i];
        if (e->begin < covered)
            return nni_io_fail(
                err, errlen, AG_EIO,
                "%s: %s: tensors " NAME_FMT " and " NAME_FMT " overlap (bytes [%llu, %llu) and [%llu, %llu))",
                who, f->path, NAME_ARG(f->entries[i - 1].name), NAME_ARG(e->name),
                (unsigned long long)f->entries[i - 1].begin, (unsigned long long)f->entries[i - 1].end,
                (unsigned long long)e->begin, (unsigned long long)e->end);
        if (e->begin > covered)
            return nni_io_fail(err, errlen, AG_EIO,
                               "%s: %s: %llu bytes of the data section before tensor " NAME_FMT
                               " belong to no tensor",
                               who, f->path, (unsigned long long)(e->begin - covered), NAME_ARG(e->name));
        if (e->end > f->data_len)
            return nni_io_fail(err, errlen, AG_EIO,
                               "%s: %s: truncated: tensor " NAME_FMT
                               " ends at data byte %llu but the data section has %llu bytes",
                               who, f->path, NAME_ARG(e->name), (unsigned long long)e->end,
                               (unsigned long long)f->data_len);
        covered = e->end;
    }
    if (covered != f->data_len)
        return nni_io_fail(err, errlen, AG_EIO,
                           "%s: %s: the data section has %llu bytes but the tensors cover %llu", who, f->path,
                           (unsigned long long)f->data_len, (unsigned long long)covered);
    return AG_OK;
}

static ag_status check_names(nn_safetensors *f, const char *who, char *err, size_t errlen)
{
    if (f->count > 0) {
        f->by_name = ag_realloc(f->fn, f->ud, NULL, 0, (size_t)f->count * sizeof *f->by_name);
        if (!f->by_name)
            return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory for %d names", who, f->path,
                               f->count);
        for (int i = 0; i < f->count; i++)
            f->by_name[i] = &f->entries[i];
        qsort(f->by_name, (size_t)f->count, sizeof *f->by_name, by_name);
    }
    for (int i = 1; i < f->count; i++)
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0)
            return nni_io_fail(err, errlen, AG_EIO, "%s: %s: tensor name " NAME_FMT " appears twice", who,
                               f->path, NAME_ARG(f->by_name[i]->name));
    if (f->nmeta > 0)
        qsort(f->meta, (size_t)f->nmeta, sizeof *f->meta, by_key);
    for (int i = 1; i < f->nmeta; i++)
        if (strcmp(f->meta[i - 1].key, f->meta[i].key) == 0)
            return nni_io_fail(err, errlen, AG_EIO, "%s: %s: __metadata__ key " NAME_FMT " appears twice",
                               who, f->path, NAME_ARG(f->meta[i].key));
    return AG_OK;
}

/* ------------------------------------------------------------ open, close */

void nn_safetensors_close(nn_safetensors *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    ag_realloc(f->fn, f->ud, f->by_name, (size_t)f->count * sizeof *f->by_name, 0);
    ag_realloc(f->fn, f->ud, f->entries, (size_t)f->cap * sizeof *f->entries, 0);
    ag_realloc(f->fn, f->ud, f->meta, (size_t)f->meta_cap * sizeof *f->meta, 0);
    ag_realloc(f->fn, f->ud, f->header, f->header_len + 1, 0);
    ag_realloc(f->fn, f->ud, f->path, f->path_size, 0);
    ag_realloc(f->fn, f->ud, f, sizeof *f, 0);
}

/* Reads the length and the header text; checks them against the file size. */
static ag_status read_header(nn_safetensors *f, const char *who, char *err, size_t errlen)
{
    ag_status s = AG_OK;
    f->fd = nni_io_open_regular(who, f->path, &s, err, errlen);
    if (f->fd < 0)
        return s;
    struct stat st;
    if (fstat(f->fd, &st) != 0)
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: cannot stat: %s", who, f->path, strerror(errno));
    uint64_t size = (uint64_t)st.st_size;
    unsigned char len8[8];
    if (size < 8 || nni_io_pread_full(f->fd, len8, 8, 0) != 8)
        return nni_io_fail(
            err, errlen, AG_EIO,
            "%s: %s: truncated: the file has %llu bytes, fewer than the 8 of the header length", who, f->path,
            (unsigned long long)size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | len8[i];
    if (n > size - 8)
        return nni_io_fail(err, errlen, AG_EIO,
                           "%s: %s: truncated: the header length is %llu bytes but only %llu bytes follow it",
                           who, f->path, (unsigned long long)n, (unsigned long long)(size - 8));
    if (n > NNI_ST_MAX_HEADER_BYTES)
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: header length %llu is above the limit of %u bytes",
                           who, f->path, (unsigned long long)n, NNI_ST_MAX_HEADER_BYTES);
    if (n == 0)
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: the header is empty", who, f->path);
    f->header = ag_realloc(f->fn, f->ud, NULL, 0, (size_t)n + 1);
    if (!f->header)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory for a %llu-byte header", who,
                           f->path, (unsigned long long)n);
    f->header_len = (size_t)n;
    ssize_t got = nni_io_pread_full(f->fd, f->header, (size_t)n, 8);
    if (got != (ssize_t)n)
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: reading the header: %s", who, f->path,
                           got < 0 ? strerror(errno) : "the file shrank");
    f->header[n] = '\0';
    f->data_start = 8 + n;
    f->data_len = size - 8 - n;
    return AG_OK;
}

static ag_status open_as(const char *who, const char *path, ag_alloc_fn fn, void *ud, nn_safetensors **out,
                         char *err, size_t errlen)
{
    if (!out)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: out is NULL", who);
    *out = NULL;
    if (!path)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: path is NULL", who);
    nn_safetensors *f = ag_realloc(fn, ud, NULL, 0, sizeof *f);
    if (!f)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", who, path);
    memset(f, 0, sizeof *f);
    f->fn = fn;
    f->ud = ud;
    f->fd = -1;
    f->path_size = strlen(path) + 1;
    f->path = ag_realloc(fn, ud, NULL, 0, f->path_size);
    if (!f->path) {
        f->path_size = 0;
        nn_safetensors_close(f);
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", who, path);
    }
    memcpy(f->path, path, f->path_size);

    ag_status s = read_header(f, who, err, errlen);
    if (s == AG_OK) {
        nni_json j;
        nni_json_init(&j, f->header, f->header_len);
        s = parse_header(f, &j);
        if (s == AG_EIO)
            nni_io_fail(err, errlen, s, "%s: %s: bad header: %s", who, path, j.msg);
        else if (s == AG_ENOMEM)
            nni_io_fail(err, errlen, s, "%s: %s: out of memory while parsing the header", who, path);
    }
    if (s == AG_OK)
        s = check_tiling(f, who, err, errlen);
    if (s == AG_OK)
        s = check_names(f, who, err, errlen);
    if (s != AG_OK) {
        nn_safetensors_close(f);
        return s;
    }
    *out = f;
    return nni_io_ok(err, errlen);
}

ag_status nn_safetensors_open(const char *path, ag_alloc_fn fn, void *ud, nn_safetensors **out, char *err,
                              size_t errlen)
{
    return open_as("nn_safetensors_open", path, fn, ud, out, err, errlen);
}

/* ------------------------------------------------------------- accessors */

int nn_safetensors_count(const nn_safetensors *f) { return f ? f->count : 0; }

const nn_safetensors_info *nn_safetensors_entry(const nn_safetensors *f, int i)
{
    return f && i >= 0 && i < f->count ? &f->entries[i] : NULL;
}

int nn_safetensors_find(const nn_safetensors *f, const char *name)
{
    if (!f || !name)
        return -1;
    int lo = 0, hi = f->count;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0)
            return (int)(f->by_name[mid] - f->entries);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int nn_safetensors_metadata_count(const nn_safetensors *f) { return f ? f->nmeta : 0; }

const char *nn_safetensors_metadata_key(const nn_safetensors *f, int i)
{
    return f && i >= 0 && i < f->nmeta ? f->meta[i].key : NULL;
}

const char *nn_safetensors_metadata_value(const nn_safetensors *f, int i)
{
    return f && i >= 0 && i < f->nmeta ? f->meta[i].value : NULL;
}

const char *nn_safetensors_metadata_get(const nn_safetensors *f, const char *key)
{
    if (!f || !key)
        return NULL;
    int lo = 0, hi = f->nmeta;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta[mid].key, key);
        if (c == 0)
            return f->meta[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---------------------------------------------------------------- reading */

/* Whether entry e can be copied into dst: same dtype (nothing converts) and
** same shape. */
static ag_status check_target(const nn_safetensors *f, const nn_safetensors_info *e, ag_tensor *dst,
                              const char *who, char *err, size_t errlen)
{
    if (!dst || ag_is_nil(dst))
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: the tensor for " NAME_FMT " is %s", who, f->path,
                           NAME_ARG(e->name), dst ? "nil" : "NULL");
    ag_dtype dt = ag_dtype_of(dst);
    const char *want = dt == AG_F32 ? "F32" : "F64";
    if (strcmp(e->dtype, want) != 0)
        return nni_io_fail(err, errlen, AG_EDTYPE,
                           "%s: %s: tensor " NAME_FMT " is %s in the file but %s in memory", who, f->path,
                           NAME_ARG(e->name), e->dtype, ag_dtype_name(dt));
    int rank = ag_rank(dst);
    const int64_t *shape = ag_shape(dst);
    bool same = rank == e->rank;
    for (int d = 0; same && d < rank; d++)
        same = shape[d] == e->shape[d];
    if (!same) {
        char fs[96], ms[96];
        ag_shape_str(fs, sizeof fs, e->rank, e->shape);
        ag_shape_str(ms, sizeof ms, rank, shape);
        return nni_io_fail(err, errlen, AG_ESHAPE,
                           "%s: %s: tensor " NAME_FMT " has shape %s in the file but %s in memory", who,
                           f->path, NAME_ARG(e->name), fs, ms);
    }
    return AG_OK;
}

static ag_status copy_into(const nn_safetensors *f, const nn_safetensors_info *e, ag_tensor *dst,
                           const char *who, char *err, size_t errlen)
{
    size_t nbytes = (size_t)(e->end - e->begin);
    if (nbytes == 0)
        return AG_OK;
    void *data = ag_data(dst);
    ssize_t got = nni_io_pread_full(f->fd, data, nbytes, (off_t)(f->data_start + e->begin));
    if (got != (ssize_t)nbytes)
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: reading tensor " NAME_FMT ": %s", who, f->path,
                           NAME_ARG(e->name), got < 0 ? strerror(errno) : "the file shrank");
    if (!nni_io_host_is_little_endian())
        nni_io_swap_bytes(data, (size_t)e->numel, ag_dtype_size(ag_dtype_of(dst)));
    return AG_OK;
}

ag_status nn_safetensors_read(nn_safetensors *f, int i, ag_tensor *dst, char *err, size_t errlen)
{
    const char *who = "nn_safetensors_read";
    if (!f)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: the file handle is NULL", who);
    if (i < 0 || i >= f->count)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: entry %d is outside 0..%d", who, f->path, i,
                           f->count - 1);
    ag_status s = check_target(f, &f->entries[i], dst, who, err, errlen);
    if (s == AG_OK)
        s = copy_into(f, &f->entries[i], dst, who, err, errlen);
    return s == AG_OK ? nni_io_ok(err, errlen) : s;
}

/* Matches names to entries (each exactly once, none left over) and checks
** every target before the first byte is copied. 'taken' has count bytes. */
static ag_status match_all(nn_safetensors *f, int n, const char *const *names, ag_tensor *const *tensors,
                           int *index, unsigned char *taken, const char *who, char *err, size_t errlen)
{
    for (int i = 0; i < n; i++) {
        if (!names[i])
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: names[%d] is NULL", who, f->path, i);
        int k = nn_safetensors_find(f, names[i]);
        if (k < 0)
            return nni_io_fail(err, errlen, AG_EINVAL,
                               "%s: %s: the file has no tensor " NAME_FMT " (it holds %d)", who, f->path,
                               NAME_ARG(names[i]), f->count);
        if (taken[k])
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: tensor " NAME_FMT " is asked for twice", who,
                               f->path, NAME_ARG(names[i]));
        taken[k] = 1;
        index[i] = k;
        ag_status s = check_target(f, &f->entries[k], tensors[i], who, err, errlen);
        if (s != AG_OK)
            return s;
    }
    for (int k = 0; k < f->count; k++)
        if (!taken[k])
            return nni_io_fail(err, errlen, AG_EINVAL,
                               "%s: %s: the file holds tensor " NAME_FMT
                               ", which is not among the %d asked for",
                               who, f->path, NAME_ARG(f->entries[k].name), n);
    return AG_OK;
}

ag_status nn_safetensors_load(const char *path, int n, const char *const *names, ag_tensor *const *tensors,
                              ag_alloc_fn fn, void *ud, char *err, size_t errlen)
{
    const char *who = "nn_safetensors_load";
    if (n < 0 || (n > 0 && (!names || !tensors)))
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s: n is %d with names %s and tensors %s", who,
                           path ? path : "(null)", n, names ? "set" : "NULL", tensors ? "set" : "NULL");
    nn_safetensors *f;
    ag_status s = open_as(who, path, fn, ud, &f, err, errlen);
    if (s != AG_OK)
        return s;
    /* One block: n entry indices, then a taken flag per file entry. */
    size_t scratch_size = (size_t)n * sizeof(int) + (size_t)f->count + 1;
    int *index = ag_realloc(fn, ud, NULL, 0, scratch_size);
    if (!index)
        s = nni_io_fail(err, errlen, AG_ENOMEM, "%s: %s: out of memory", who, path);
    if (s == AG_OK) {
        unsigned char *taken = (unsigned char *)(index + n);
        memset(taken, 0, (size_t)f->count);
        s = match_all(f, n, names, tensors, index, taken, who, err, errlen);
    }
    for (int i = 0; s == AG_OK && i < n; i++)
        s = copy_into(f, &f->entries[index[i]], tensors[i], who, err, errlen);
    ag_realloc(fn, ud, index, index ? scratch_size : 0, 0);
    nn_safetensors_close(f);
    return s == AG_OK ? nni_io_ok(err, errlen) : s;
}
