/*
** fuzz_safetensors.c: libFuzzer target for the safetensors reader and
** writer. The input is a whole file. A refusal must come with a message
** naming the function; a file that opens must satisfy the validated
** header's promises (entries tile the data section, names are found again,
** metadata is sorted), its F32 and F64 entries must read back the file's own
** bytes, and loading them all by name must succeed exactly when no other
** dtype is present. Then two round trips:
**   - what loaded is saved (with its metadata), opened and loaded again:
**     the same names, dtypes, shapes, bytes and metadata must come back, and
**     through a model (nn_model_save, nn_model_load) when the names allow;
**   - the input's bytes, cut at each NUL, become tensor names and metadata
**     strings for the writer: whatever it accepts must load back equal, and
**     plain ASCII names it must accept (issue 21: a save that succeeded and
**     could not be loaded).
** Every block goes through a counting hook that must end at zero.
*/
#define _GNU_SOURCE /* mkdtemp */
#include "fuzz_file.h"

#include "../alloc_hooks.h"
#include "nn.h"
#include "nn_io.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LOADED = 64, MAX_STRINGS = 24 };

/* A scratch directory for saved files, made once per process and removed
** at exit (every file in it is removed after use). */
static char scratch[64];

static void drop_scratch(void) { rmdir(scratch); }

static const char *scratch_dir(void)
{
    if (!scratch[0]) {
        snprintf(scratch, sizeof scratch, "/tmp/fuzz_st_XXXXXX");
        if (!mkdtemp(scratch))
            abort();
        atexit(drop_scratch);
    }
    return scratch;
}

static bool same_entries(const nn_safetensors *a, const nn_safetensors *b)
{
    if (nn_safetensors_count(a) != nn_safetensors_count(b) ||
        nn_safetensors_metadata_count(a) != nn_safetensors_metadata_count(b))
        return false;
    for (int i = 0; i < nn_safetensors_count(a); i++) {
        const nn_safetensors_info *x = nn_safetensors_entry(a, i);
        int k = nn_safetensors_find(b, x->name);
        if (k < 0)
            return false;
        const nn_safetensors_info *y = nn_safetensors_entry(b, k);
        if (strcmp(x->dtype, y->dtype) || x->rank != y->rank || x->numel != y->numel)
            return false;
        for (int d = 0; d < x->rank; d++)
            if (x->shape[d] != y->shape[d])
                return false;
    }
    for (int i = 0; i < nn_safetensors_metadata_count(a); i++)
        if (strcmp(nn_safetensors_metadata_key(a, i), nn_safetensors_metadata_key(b, i)) ||
            strcmp(nn_safetensors_metadata_value(a, i), nn_safetensors_metadata_value(b, i)))
            return false;
    return true;
}

static bool same_bytes(ag_tensor *a, ag_tensor *b)
{
    size_t n = (size_t)ag_numel(a) * ag_dtype_size(ag_dtype_of(a));
    return ag_numel(a) == ag_numel(b) && ag_dtype_of(a) == ag_dtype_of(b) &&
           (n == 0 || memcmp(ag_data(a), ag_data(b), n) == 0);
}

/* Loads 'path' into fresh tensors shaped as 'like' and compares bytes. */
static void load_back(const char *path, int n, const char **names, ag_tensor **like, alloc_hooks *h)
{
    ag_tensor *back[MAX_LOADED] = {0};
    char err[512];
    for (int i = 0; i < n; i++) {
        back[i] = ag_param_new_alloc(hook_alloc, h, ag_dtype_of(like[i]), ag_rank(like[i]), ag_shape(like[i]));
        if (!back[i])
            abort();
    }
    if (nn_safetensors_load(path, n, names, back, hook_alloc, h, err, sizeof err) != AG_OK)
        abort();   /* a file the writer made must load */
    for (int i = 0; i < n; i++) {
        if (!same_bytes(like[i], back[i]))
            abort();
        ag_param_free(back[i]);
    }
}

/* Saves what was loaded from 'f' (names, tensors, metadata), reopens the
** new file and loads it again; then the same through a model. */
static void save_round_trip(nn_safetensors *f, int n, const char **names, ag_tensor **tensors, alloc_hooks *h)
{
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/round.safetensors", scratch_dir());
    int nmeta = nn_safetensors_metadata_count(f);
    const char **keys = malloc(((size_t)nmeta + 1) * sizeof *keys);
    const char **values = malloc(((size_t)nmeta + 1) * sizeof *values);
    if (!keys || !values)
        abort();
    for (int i = 0; i < nmeta; i++) {
        keys[i] = nn_safetensors_metadata_key(f, i);
        values[i] = nn_safetensors_metadata_value(f, i);
    }
    if (nn_safetensors_save_meta(path, n, names, tensors, nmeta, keys, values, hook_alloc, h, err, sizeof err) !=
        AG_OK)
        abort();   /* every file the reader accepts, the writer can write again */
    nn_safetensors *g = NULL;
    if (nn_safetensors_open(path, hook_alloc, h, &g, err, sizeof err) != AG_OK || !same_entries(f, g))
        abort();
    nn_safetensors_close(g);
    load_back(path, n, names, tensors, h);
    unlink(path);
    free(keys);
    free(values);

    /* A model holds one dtype and names of at most 63 bytes. */
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) > 63 || ag_dtype_of(tensors[i]) != ag_dtype_of(tensors[0]))
            return;
    nn_model *m = nn_model_new(hook_alloc, h), *m2 = nn_model_new(hook_alloc, h);
    if (!m || !m2)
        abort();
    for (int i = 0; i < n; i++) {
        ag_tensor *p = nn_param(m, names[i], ag_dtype_of(tensors[i]), ag_rank(tensors[i]), ag_shape(tensors[i]));
        ag_tensor *q = nn_param(m2, names[i], ag_dtype_of(tensors[i]), ag_rank(tensors[i]), ag_shape(tensors[i]));
        if (!p || !q) {
            nn_model_free(m);   /* a shape a model refuses (too large) */
            nn_model_free(m2);
            return;
        }
        size_t bytes = (size_t)ag_numel(p) * ag_dtype_size(ag_dtype_of(p));
        if (bytes)
            memcpy(ag_data(p), ag_data(tensors[i]), bytes);
    }
    if (nn_model_save(m, path, err, sizeof err) != AG_OK || nn_model_load(m2, path, err, sizeof err) != AG_OK)
        abort();
    for (int i = 0; i < n; i++)
        if (!same_bytes(nn_model_find(m, names[i]), nn_model_find(m2, names[i])))
            abort();
    unlink(path);
    nn_model_free(m);
    nn_model_free(m2);
}

/* The writer's side: the input cut at NULs gives up to MAX_STRINGS strings;
** the first half name tensors of 0..3 elements, the rest are metadata pairs. */
static void writer_range(const uint8_t *data, size_t size, alloc_hooks *h)
{
    char *copy = malloc(size + 1);
    if (!copy)
        abort();
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *strs[MAX_STRINGS];
    int k = 0;
    for (size_t i = 0; i <= size && k < MAX_STRINGS;) {
        strs[k++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    int n = (k + 1) / 2, nmeta = (k - n) / 2;
    ag_tensor *t[MAX_STRINGS];
    bool plain = true;
    for (int i = 0; i < n; i++) {
        int64_t len = (int64_t)(strlen(strs[i]) % 4);
        t[i] = ag_param_new_alloc(hook_alloc, h, i % 2 ? AG_F64 : AG_F32, 1, &len);
        if (!t[i])
            abort();
        for (int64_t e = 0; e < len; e++)
            ag_set(t[i], e, (double)(i * 4 + e) - 0.5);
        plain = plain && strs[i][0] && strcmp(strs[i], "__metadata__") != 0;
        for (const char *c = strs[i]; *c; c++)
            plain = plain && *c >= 0x20 && *c < 0x7f;
        for (int j = 0; j < i; j++)
            plain = plain && strcmp(strs[i], strs[j]) != 0;
    }
    for (int i = 0; i < nmeta; i++)
        for (int j = 0; j < i; j++)
            plain = plain && strcmp(strs[n + 2 * i], strs[n + 2 * j]) != 0;
    for (int i = n; i < n + 2 * nmeta; i++)
        for (const char *c = strs[i]; *c; c++)
            plain = plain && *c >= 0x20 && *c < 0x7f;
    const char *keys[MAX_STRINGS], *values[MAX_STRINGS];
    for (int i = 0; i < nmeta; i++) {
        keys[i] = strs[n + 2 * i];
        values[i] = strs[n + 2 * i + 1];
    }
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/writer.safetensors", scratch_dir());
    ag_status s = nn_safetensors_save_meta(path, n, strs, t, nmeta, keys, values, hook_alloc, h, err, sizeof err);
    if (s == AG_OK) {
        nn_safetensors *f = NULL;
        if (nn_safetensors_open(path, hook_alloc, h, &f, err, sizeof err) != AG_OK)
            abort();   /* saved, and cannot be opened */
        if (nn_safetensors_count(f) != n || nn_safetensors_metadata_count(f) != nmeta)
            abort();
        for (int i = 0; i < nmeta; i++) {
            const char *v = nn_safetensors_metadata_get(f, keys[i]);
            if (!v || strcmp(v, values[i]) != 0)
                abort();
        }
        nn_safetensors_close(f);
        load_back(path, n, strs, t, h);
        unlink(path);
    } else if (plain || strncmp(err, "nn_safetensors_save_meta: ", 26) != 0) {
        abort();   /* plain ASCII, unique, non-empty names must save */
    }
    for (int i = 0; i < n; i++)
        ag_param_free(t[i]);
    free(copy);
}

static size_t dtype_bytes(const char *dt)
{
    if (!strcmp(dt, "F64") || !strcmp(dt, "I64") || !strcmp(dt, "U64"))
        return 8;
    if (!strcmp(dt, "F32") || !strcmp(dt, "I32") || !strcmp(dt, "U32"))
        return 4;
    if (!strcmp(dt, "F16") || !strcmp(dt, "BF16") || !strcmp(dt, "I16") || !strcmp(dt, "U16"))
        return 2;
    return 1;
}

static uint64_t header_length(const uint8_t *data)
{
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | data[i];
    return n;
}

static void check_header(const nn_safetensors *f, const uint8_t *data, size_t size)
{
    int n = nn_safetensors_count(f);
    uint64_t data_start = 8 + header_length(data), at = 0;
    if (n < 0 || data_start > size)
        abort();
    for (int i = 0; i < n; i++) {
        const nn_safetensors_info *e = nn_safetensors_entry(f, i);
        if (!e || !e->name || !e->dtype || e->rank < 0 || e->rank > AG_MAX_DIMS)
            abort();
        int64_t numel = 1;
        for (int d = 0; d < e->rank; d++) {
            if (e->shape[d] < 0)
                abort();
            numel *= e->shape[d];
        }
        if (numel != e->numel || e->begin != at || e->end < e->begin ||
            e->end - e->begin != (uint64_t)numel * dtype_bytes(e->dtype))
            abort();
        at = e->end;
        if (nn_safetensors_find(f, e->name) != i)
            abort();
    }
    if (at != size - data_start)
        abort();   /* the entries tile the data section exactly */
    if (nn_safetensors_entry(f, n) || nn_safetensors_entry(f, -1))
        abort();
    for (int i = 0; i < nn_safetensors_metadata_count(f); i++) {
        const char *key = nn_safetensors_metadata_key(f, i);
        const char *value = nn_safetensors_metadata_value(f, i);
        if (!key || !value || nn_safetensors_metadata_get(f, key) != value)
            abort();
        if (i > 0 && strcmp(nn_safetensors_metadata_key(f, i - 1), key) >= 0)
            abort();
    }
}

/* Reads every F32/F64 entry, compares it with the file's bytes, then loads
** them all at once by name. */
static void check_reads(nn_safetensors *f, const char *path, const uint8_t *data, size_t size,
                        alloc_hooks *h)
{
    const char *names[MAX_LOADED];
    ag_tensor *tensors[MAX_LOADED];
    int n = 0, others = 0;
    uint64_t data_start = 8 + header_length(data);
    char err[512];
    for (int i = 0; i < nn_safetensors_count(f); i++) {
        const nn_safetensors_info *e = nn_safetensors_entry(f, i);
        int f32 = !strcmp(e->dtype, "F32"), f64 = !strcmp(e->dtype, "F64");
        if ((!f32 && !f64) || n == MAX_LOADED) {
            others++;
            continue;
        }
        ag_tensor *p = ag_param_new_alloc(hook_alloc, h, f32 ? AG_F32 : AG_F64, e->rank, e->shape);
        if (!p) {
            others++;   /* a shape the library refuses (too large); not loaded */
            continue;
        }
        if (nn_safetensors_read(f, i, p, err, sizeof err) != AG_OK)
            abort();
        size_t bytes = (size_t)(e->end - e->begin);
        if (bytes && (data_start + e->end > size ||
                      memcmp(ag_data(p), data + data_start + e->begin, bytes) != 0))
            abort();   /* (little-endian hosts: the bytes are the values) */
        ag_fill(p, 0.0);
        names[n] = e->name;
        tensors[n++] = p;
    }
    ag_status s = nn_safetensors_load(path, n, names, tensors, hook_alloc, h, err, sizeof err);
    if ((s == AG_OK) != (others == 0) || (s != AG_OK && !strstr(err, "nn_safetensors_load")))
        abort();
    if (s == AG_OK)
        save_round_trip(f, n, names, tensors, h);
    for (int i = 0; i < n; i++)
        ag_param_free(tensors[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_file file;
    if (fuzz_file_make(&file, data, size) != 0)
        return 0;
    alloc_hooks h = hooks_counting();
    nn_safetensors *f = NULL;
    char err[512];
    ag_status s = nn_safetensors_open(file.path, hook_alloc, &h, &f, err, sizeof err);
    if (s != AG_OK) {
        if (f || s == AG_ENOMEM || strncmp(err, "nn_safetensors_open: ", 21) != 0)
            abort();
    } else {
        if (!f || err[0])
            abort();
        check_header(f, data, size);
        check_reads(f, file.path, data, size, &h);
        nn_safetensors_close(f);
    }
    writer_range(data, size, &h);
    if (h.live != 0 || h.bad_osize != 0)
        abort();
    fuzz_file_drop(&file);
    return 0;
}
