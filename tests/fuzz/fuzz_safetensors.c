/*
** fuzz_safetensors.c: libFuzzer target for the safetensors reader. The input
** is a whole file. A refusal must come with a message naming the function;
** a file that opens must satisfy the validated header's promises (entries
** tile the data section, names are found again, metadata is sorted), its
** F32 and F64 entries must read back the file's own bytes, and loading them
** all by name must succeed exactly when no other dtype is present. Every
** block goes through a counting hook that must end at zero.
*/
#include "fuzz_file.h"

#include "../alloc_hooks.h"
#include "nn_io.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_LOADED = 64 };

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
    if (h.live != 0 || h.bad_osize != 0)
        abort();
    fuzz_file_drop(&file);
    return 0;
}
