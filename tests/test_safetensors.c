/*
** test_safetensors.c: checkpoints. Round trips bit for bit, listing,
** agreement with an independent Python reader and writer, strict validation
** of malformed headers, every truncation and every header bit flip of a
** real file (run under ASan), and atomic saves that leave the old file
** loadable when writing fails.
*/
#include "io_fixtures.h"

#include "alloc_hooks.h"
#include "nn_io.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sys/resource.h>

/* ------------------------------------------------------------- helpers */

/* The values safetensors_ref.py computes too: i * 0.37 - 1.5 in f64. */
static double ramp_value(int64_t i) { return (double)i * 0.37 - 1.5; }

static ag_tensor *ramp_param(ag_dtype dt, int rank, const int64_t *shape)
{
    ag_tensor *p = ag_param_new(dt, rank, shape);
    cr_assert(p);
    for (int64_t i = 0; i < ag_numel(p); i++)
        ag_set(p, i, ramp_value(i));
    return p;
}

static ag_tensor *filled_param(ag_dtype dt, int rank, const int64_t *shape, double v)
{
    ag_tensor *p = ag_param_new(dt, rank, shape);
    cr_assert(p);
    ag_fill(p, v);
    return p;
}

static int same_bits(ag_tensor *a, ag_tensor *b)
{
    if (ag_dtype_of(a) != ag_dtype_of(b) || ag_rank(a) != ag_rank(b))
        return 0;
    for (int d = 0; d < ag_rank(a); d++)
        if (ag_shape(a)[d] != ag_shape(b)[d])
            return 0;
    size_t n = (size_t)ag_numel(a) * ag_dtype_size(ag_dtype_of(a));
    return n == 0 || memcmp(ag_data(a), ag_data(b), n) == 0;
}

static int all_equal(ag_tensor *x, double v)
{
    for (int64_t i = 0; i < ag_numel(x); i++)
        if (ag_get(x, i) != v)
            return 0;
    return 1;
}

static void free_all(int n, ag_tensor **t)
{
    for (int i = 0; i < n; i++)
        ag_param_free(t[i]);
}

/* The tensor set shared with safetensors_ref.py's expected(). */
enum { REF_N = 8 };
static const char *const ref_names[REF_N] = {
    "scalar", "w.f32", "cube", "hyper", "quote\"and\\back", "ünï código ✓ 😀", "empty", "special",
};
static const ag_dtype ref_dtypes[REF_N] = {AG_F64, AG_F32, AG_F32, AG_F64, AG_F32, AG_F64, AG_F32, AG_F64};
static const int ref_ranks[REF_N] = {0, 2, 3, 4, 1, 2, 2, 1};
static const int64_t ref_shapes[REF_N][4] = {
    {0}, {3, 4}, {2, 3, 4}, {2, 1, 2, 3}, {1}, {2, 2}, {0, 3}, {7},
};
static const uint64_t special_bits[7] = {
    0, 0x8000000000000000u, 0x7ff0000000000000u, 0xfff0000000000000u, 0x7ff8000000000000u,
    1, 0x7fefffffffffffffu,
};
static const char *const ref_meta_keys[2] = {"format", "note"};
static const char *const ref_meta_values[2] = {"pt", "tab\there ✓"};

static void ref_make(ag_tensor **t)
{
    for (int i = 0; i < REF_N; i++)
        t[i] = ramp_param(ref_dtypes[i], ref_ranks[i], ref_shapes[i]);
    memcpy(ag_data(t[REF_N - 1]), special_bits, sizeof special_bits);
}

static void ref_make_filled(ag_tensor **t, double v)
{
    for (int i = 0; i < REF_N; i++)
        t[i] = filled_param(ref_dtypes[i], ref_ranks[i], ref_shapes[i], v);
}

static char dir[512];

static void make_dir(void) { cr_assert(fixture_dir(dir, sizeof dir)); }
static void drop_dir(void) { remove_dir(dir); }

/* ----------------------------------------------------------- round trips */

Test(safetensors, round_trip_f32_f64_rank0_to_4_bit_for_bit, .init = make_dir, .fini = drop_dir)
{
    static const int64_t shapes[5][4] = {{0}, {5}, {2, 3}, {2, 3, 4}, {2, 1, 3, 2}};
    static const char *const bases[5] = {"plain", "ünïcødé ✓ 😀", "quote\"d", "back\\slash",
                                         "ctl\n\t\x01\x1f"};
    enum { N = 10 };
    char names_buf[N][64];
    const char *names[N];
    ag_tensor *saved[N], *loaded[N];
    ag_rng rng;
    ag_rng_seed(&rng, 7);
    for (int k = 0; k < N; k++) {
        ag_dtype dt = k % 2 ? AG_F64 : AG_F32;
        int rank = k / 2;
        snprintf(names_buf[k], sizeof names_buf[k], "%s/%d/%s", bases[rank], rank, ag_dtype_name(dt));
        names[k] = names_buf[k];
        saved[k] = ag_param_new(dt, rank, shapes[rank]);
        ag_fill_normal(saved[k], &rng, 0.0, 3.0);
        /* Values that a lossy conversion would change. */
        if (ag_numel(saved[k]) >= 3) {
            ag_set(saved[k], 0, -0.0);
            ag_set(saved[k], 1, dt == AG_F32 ? 1.0e-45 : 4.9e-324);
            ag_set(saved[k], 2, INFINITY);
        }
        loaded[k] = filled_param(dt, rank, shapes[rank], 0.0);
    }
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "all.safetensors");
    cr_assert_eq(nn_safetensors_save(path, N, names, saved, NULL, NULL, err, sizeof err), AG_OK, "%s", err);
    cr_assert_str_empty(err);
    cr_assert_eq(nn_safetensors_load(path, N, names, loaded, NULL, NULL, err, sizeof err), AG_OK, "%s", err);
    for (int k = 0; k < N; k++)
        cr_expect(same_bits(saved[k], loaded[k]), "tensor %d ('%s') differs", k, names[k]);

    /* The header escapes quotes, backslashes and control characters and
    ** keeps UTF-8 as it is; data starts 8-byte aligned. */
    size_t size;
    unsigned char *bytes = read_bytes(path, &size);
    cr_assert(bytes);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | bytes[i];
    cr_expect_eq((8 + hlen) % 8, 0);
    char *header = strndup((const char *)bytes + 8, (size_t)hlen);
    cr_expect(strstr(header, "\"quote\\\"d/2/f32\""));
    cr_expect(strstr(header, "\"back\\\\slash/3/f64\""));
    cr_expect(strstr(header, "\"ctl\\n\\t\\u0001\\u001f/4/f32\""));
    cr_expect(strstr(header, "\"ünïcødé ✓ 😀/1/f64\""));
    cr_expect(strstr(header, "\"dtype\":\"F32\",\"shape\":[2,3,4]"));
    free(header);
    free(bytes);
    free_all(N, saved);
    free_all(N, loaded);
}

Test(safetensors, empty_checkpoint_round_trips, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "empty.safetensors");
    cr_assert_eq(nn_safetensors_save(path, 0, NULL, NULL, NULL, NULL, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_safetensors_load(path, 0, NULL, NULL, NULL, NULL, err, sizeof err), AG_OK, "%s", err);
    nn_safetensors *f;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_expect_eq(nn_safetensors_count(f), 0);
    cr_expect_eq(nn_safetensors_metadata_count(f), 0);
    nn_safetensors_close(f);
}

Test(safetensors, listing_without_a_model, .init = make_dir, .fini = drop_dir)
{
    ag_tensor *t[REF_N];
    ref_make(t);
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "ref.safetensors");
    cr_assert_eq(nn_safetensors_save_meta(path, REF_N, ref_names, t, 2, ref_meta_keys, ref_meta_values, NULL,
                                          NULL, err, sizeof err),
                 AG_OK, "%s", err);
    nn_safetensors *f;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_safetensors_count(f), REF_N);
    uint64_t offset = 0;
    for (int i = 0; i < REF_N; i++) {
        /* Entries come in data order, which is the order they were saved in. */
        const nn_safetensors_info *e = nn_safetensors_entry(f, i);
        cr_assert(e);
        cr_expect_str_eq(e->name, ref_names[i]);
        cr_expect_str_eq(e->dtype, ref_dtypes[i] == AG_F32 ? "F32" : "F64");
        cr_expect_eq(e->rank, ref_ranks[i]);
        for (int d = 0; d < e->rank; d++)
            cr_expect_eq(e->shape[d], ref_shapes[i][d]);
        cr_expect_eq(e->numel, ag_numel(t[i]));
        cr_expect_eq(e->begin, offset);
        offset += (uint64_t)ag_numel(t[i]) * ag_dtype_size(ref_dtypes[i]);
        cr_expect_eq(e->end, offset);
        cr_expect_eq(nn_safetensors_find(f, ref_names[i]), i);
    }
    cr_expect_null(nn_safetensors_entry(f, REF_N));
    cr_expect_null(nn_safetensors_entry(f, -1));
    cr_expect_eq(nn_safetensors_find(f, "nope"), -1);
    cr_expect_eq(nn_safetensors_metadata_count(f), 2);
    cr_expect_str_eq(nn_safetensors_metadata_get(f, "note"), "tab\there ✓");
    cr_expect_str_eq(nn_safetensors_metadata_key(f, 0), "format");
    cr_expect_str_eq(nn_safetensors_metadata_value(f, 0), "pt");
    cr_expect_null(nn_safetensors_metadata_get(f, "missing"));

    /* One tensor alone, into a tape tensor. */
    ag_tape *tape = ag_tape_new();
    ag_tensor *cube = ag_zeros(tape, AG_F32, 3, (int64_t[]){2, 3, 4});
    cr_assert_eq(nn_safetensors_read(f, nn_safetensors_find(f, "cube"), cube, err, sizeof err), AG_OK, "%s",
                 err);
    cr_expect(same_bits(cube, t[2]));
    cr_expect_eq(nn_safetensors_read(f, REF_N, cube, err, sizeof err), AG_EINVAL);
    ag_tape_free(tape);
    nn_safetensors_close(f);
    free_all(REF_N, t);
}

/* -------------------------------------------------- the Python reference */

static void need_python(void)
{
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        drop_dir();   /* a skipped test does not run its .fini */
        cr_skip_test("/usr/bin/python3 with numpy is not installed (apt-get install python3-numpy)");
    }
    cr_assert_eq(access("safetensors_ref.py", R_OK), 0, "run from tests/ (meson sets workdir)");
}

Test(safetensors, python_reads_our_file, .init = make_dir, .fini = drop_dir)
{
    need_python();
    ag_tensor *t[REF_N];
    ref_make(t);
    char path[600], err[256], cmd[1400];
    fixture_path(path, sizeof path, dir, "ours.safetensors");
    cr_assert_eq(nn_safetensors_save_meta(path, REF_N, ref_names, t, 2, ref_meta_keys, ref_meta_values, NULL,
                                          NULL, err, sizeof err),
                 AG_OK, "%s", err);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 safetensors_ref.py check '%s'", path);
    cr_expect_eq(system(cmd), 0, "the Python reader disagrees with %s", path);
    free_all(REF_N, t);
}

Test(safetensors, we_read_the_python_file, .init = make_dir, .fini = drop_dir)
{
    need_python();
    char path[600], err[256], cmd[1400];
    fixture_path(path, sizeof path, dir, "python.safetensors");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 safetensors_ref.py write '%s'", path);
    cr_assert_eq(system(cmd), 0);
    ag_tensor *want[REF_N], *got[REF_N];
    ref_make(want);
    ref_make_filled(got, 42.0);
    cr_assert_eq(nn_safetensors_load(path, REF_N, ref_names, got, NULL, NULL, err, sizeof err), AG_OK, "%s",
                 err);
    for (int i = 0; i < REF_N; i++)
        cr_expect(same_bits(want[i], got[i]), "'%s' differs", ref_names[i]);
    nn_safetensors *f;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_expect_str_eq(nn_safetensors_metadata_get(f, "format"), "pt");
    cr_expect_str_eq(nn_safetensors_metadata_get(f, "note"), "tab\there ✓");
    nn_safetensors_close(f);
    free_all(REF_N, want);
    free_all(REF_N, got);
}

/* -------------------------------------------------- corrupted real files */

/* Loads 'bytes' (written to a file) into sentinel-filled targets. A load
** that fails must say why and leave every target untouched; one that
** succeeds must give exactly the saved values. Asserts only on a problem:
** these loops run thousands of times, and each Criterion assertion costs. */
static int load_corrupt(const char *path, const unsigned char *bytes, size_t n, ag_tensor **want,
                        ag_tensor **got, const char *what, size_t at)
{
    if (!write_bytes(path, bytes, n))
        cr_assert_fail("cannot write %s", path);
    for (int i = 0; i < REF_N; i++)
        ag_fill(got[i], 42.0);
    char err[256] = "unset";
    ag_status s = nn_safetensors_load(path, REF_N, ref_names, got, NULL, NULL, err, sizeof err);
    for (int i = 0; i < REF_N; i++) {
        if (s == AG_OK && !same_bits(want[i], got[i]))
            cr_assert_fail("%s at %zu loaded '%s' wrong", what, at, ref_names[i]);
        if (s != AG_OK && !all_equal(got[i], 42.0))
            cr_assert_fail("%s at %zu: a failed load changed '%s'", what, at, ref_names[i]);
    }
    if (s != AG_OK && (strncmp(err, "nn_safetensors_load: ", 21) != 0 || strlen(err) < 40))
        cr_assert_fail("%s at %zu: '%s'", what, at, err);
    return s == AG_OK;
}

Test(safetensors, truncation_at_every_byte_is_a_clean_error, .init = make_dir, .fini = drop_dir)
{
    ag_tensor *want[REF_N], *got[REF_N];
    ref_make(want);
    ref_make_filled(got, 42.0);
    char path[600], cut[600], err[256];
    fixture_path(path, sizeof path, dir, "whole.safetensors");
    fixture_path(cut, sizeof cut, dir, "cut.safetensors");
    cr_assert_eq(nn_safetensors_save(path, REF_N, ref_names, want, NULL, NULL, err, sizeof err), AG_OK);
    size_t size;
    unsigned char *bytes = read_bytes(path, &size);
    cr_assert(bytes && size > 200);
    for (size_t n = 0; n < size; n++)
        if (load_corrupt(cut, bytes, n, want, got, "truncation", n))
            cr_assert_fail("the file truncated to %zu bytes loaded", n);
    cr_expect_eq(load_corrupt(cut, bytes, size, want, got, "whole", size), 1);
    free(bytes);
    free_all(REF_N, want);
    free_all(REF_N, got);
}

Test(safetensors, every_header_bit_flip_errors_or_loads_correctly, .init = make_dir, .fini = drop_dir)
{
    ag_tensor *want[REF_N], *got[REF_N];
    ref_make(want);
    ref_make_filled(got, 42.0);
    char path[600], bad[600], err[256];
    fixture_path(path, sizeof path, dir, "whole.safetensors");
    fixture_path(bad, sizeof bad, dir, "flipped.safetensors");
    cr_assert_eq(nn_safetensors_save_meta(path, REF_N, ref_names, want, 2, ref_meta_keys, ref_meta_values,
                                          NULL, NULL, err, sizeof err),
                 AG_OK);
    size_t size;
    unsigned char *bytes = read_bytes(path, &size);
    cr_assert(bytes);
    size_t header_end = 8;
    for (int i = 7; i >= 0; i--)
        header_end = header_end + ((size_t)bytes[i] << (8 * i));
    int loads = 0, errors = 0;
    for (size_t at = 0; at < header_end; at++)
        for (int bit = 0; bit < 8; bit++) {
            bytes[at] ^= (unsigned char)(1u << bit);
            if (load_corrupt(bad, bytes, size, want, got, "bit flip", at))
                loads++;
            else
                errors++;
            bytes[at] ^= (unsigned char)(1u << bit);
        }
    /* Most flips break the file; a few are harmless (inside metadata text). */
    cr_expect_gt(errors, (int)header_end * 6);
    cr_expect_gt(loads, 0);
    free(bytes);
    free_all(REF_N, want);
    free_all(REF_N, got);
}

/* ------------------------------------------------------ malformed headers */

typedef struct bad_case {
    const char *json;
    size_t data_len;     /* zero bytes of data after the header */
    const char *message; /* a substring the error must contain */
} bad_case;

static const bad_case bad_cases[] = {
    {"", 0, "the header is empty"},
    {"[]", 0, "expected '{'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4, "expected a string"},
    {"{'a':1}", 0, "expected a string"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zeros"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
     "non-negative integer but found '1.0'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, "non-negative integer"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, "too large"},
    {"{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F17'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field 'x'"},
    /* issue 21: a \u0000 in the text ended the message there */
    {"{\"a\":{\"dtype\":\"F\\u00003\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype 'F\\03'"},
    {"{\"a\":{\"x\\u0000y\":1}}", 0, "unknown field 'x\\0y'"},
    {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "\"dtype\" given twice"},
    {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "lacks \"shape\""},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "rank above"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
     "needs 8 bytes but data_offsets [0, 4] span 4"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before they begin"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}",
     6, "overlap"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
     "4 bytes of the data section before tensor 'a'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12,
     "has 12 bytes but the tensors cover 4"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
     "truncated: tensor 'a' ends at data byte 8"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "tensor name 'a' appears twice"},
    {"{\"\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "invalid UTF-8"},
    {"{\"\xc0\xaf\":{}}", 0, "invalid UTF-8"},
    {"{\"\\udc00\":{}}", 0, "lone low surrogate"},
    {"{\"\\ud800x\":{}}", 0, "without a low one"},
    {"{\"\\u12\":{}}", 0, "four hex digits"},
    {"{\"\\q\":{}}", 0, "invalid escape"},
    {"{\"a\x01\":{}}", 0, "raw control character 0x01"},
    {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL character"},
    {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "name is empty"},
    {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ values must be strings"},
    {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "\"__metadata__\" given twice"},
    {"{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}", 0, "__metadata__ key 'k' appears twice"},
    {"{} x", 0, "text after the closing '}'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected '}'"},
    {"{\"a", 0, "unterminated string"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4}}", 4, "expected ']'"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "expected ','"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\xef", 4, "text after"},
};

static void write_header_file(const char *path, const char *json, size_t data_len)
{
    size_t n = strlen(json);
    unsigned char *buf = calloc(1, 8 + n + data_len);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    cr_assert(write_bytes(path, buf, 8 + n + data_len));
    free(buf);
}

Test(safetensors, malformed_headers_are_named_errors, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[512];
    fixture_path(path, sizeof path, dir, "bad.safetensors");
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        write_header_file(path, bad_cases[i].json, bad_cases[i].data_len);
        nn_safetensors *f = (nn_safetensors *)&f; /* must be reset to NULL */
        ag_status s = nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err);
        cr_expect_eq(s, AG_EIO, "case %zu: status %d", i, (int)s);
        cr_expect_null(f, "case %zu", i);
        cr_expect(strstr(err, bad_cases[i].message), "case %zu: '%s' lacks '%s'", i, err,
                  bad_cases[i].message);
        cr_expect(strncmp(err, "nn_safetensors_open: ", 21) == 0 && strstr(err, path), "case %zu: '%s'", i,
                  err);
    }
}

Test(safetensors, valid_json_variants_are_accepted, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "ok.safetensors");
    /* Whitespace anywhere JSON allows it, escapes, a surrogate pair, any
    ** order of fields, an empty metadata object. */
    write_header_file(
        path,
        " \t\r\n{ \"__metadata__\" : { } , \"b\\u00e9\\ud83d\\ude00\\/\" : { \"data_offsets\" : [ 0 , 8 ] ,"
        " \"shape\" : [ 2 ] , \"dtype\" : \"F32\" } }  \n",
        8);
    nn_safetensors *f;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_safetensors_count(f), 1);
    cr_expect_str_eq(nn_safetensors_entry(f, 0)->name, "bé😀/");
    nn_safetensors_close(f);
}

Test(safetensors, other_dtypes_list_but_do_not_load, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "mixed.safetensors");
    write_header_file(path,
                      "{\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                      "\"half\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]},"
                      "\"w\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[16,32]}}",
                      32);
    nn_safetensors *f;
    cr_assert_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_OK, "%s", err);
    cr_assert_eq(nn_safetensors_count(f), 3);
    cr_expect_str_eq(nn_safetensors_entry(f, 0)->dtype, "I64");
    cr_expect_str_eq(nn_safetensors_entry(f, 1)->dtype, "BF16");
    ag_tensor *p = filled_param(AG_F32, 0, NULL, 1.0);
    cr_expect_eq(nn_safetensors_read(f, 0, p, err, sizeof err), AG_EDTYPE);
    cr_expect(strstr(err, "tensor 'step' is I64 in the file but f32 in memory"), "%s", err);
    ag_tensor *w32 = filled_param(AG_F32, 1, (int64_t[]){2}, 1.0);
    cr_expect_eq(nn_safetensors_read(f, 2, w32, err, sizeof err), AG_EDTYPE);
    cr_expect(strstr(err, "tensor 'w' is F64 in the file but f32 in memory"), "%s", err);
    cr_expect(all_equal(w32, 1.0));
    nn_safetensors_close(f);
    ag_param_free(p);
    ag_param_free(w32);
}

/* --------------------------------------------------- load-time mismatches */

Test(safetensors, load_names_shapes_and_sets_must_match, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "two.safetensors");
    ag_tensor *w = ramp_param(AG_F32, 2, (int64_t[]){3, 4}), *b = ramp_param(AG_F32, 1, (int64_t[]){4});
    const char *names[2] = {"fc1.weight", "fc1.bias"};
    cr_assert_eq(nn_safetensors_save(path, 2, names, (ag_tensor *[]){w, b}, NULL, NULL, err, sizeof err),
                 AG_OK);

    ag_tensor *wt = filled_param(AG_F32, 2, (int64_t[]){4, 3}, 7.0),
              *bt = filled_param(AG_F32, 1, (int64_t[]){4}, 7.0);
    cr_expect_eq(nn_safetensors_load(path, 2, names, (ag_tensor *[]){wt, bt}, NULL, NULL, err, sizeof err),
                 AG_ESHAPE);
    cr_expect(strstr(err, "tensor 'fc1.weight' has shape [3,4] in the file but [4,3] in memory"), "%s", err);
    cr_expect(all_equal(wt, 7.0) && all_equal(bt, 7.0));

    ag_tensor *w64 = filled_param(AG_F64, 2, (int64_t[]){3, 4}, 7.0);
    cr_expect_eq(nn_safetensors_load(path, 2, names, (ag_tensor *[]){w64, bt}, NULL, NULL, err, sizeof err),
                 AG_EDTYPE);
    cr_expect(strstr(err, "tensor 'fc1.weight' is F32 in the file but f64 in memory"), "%s", err);

    ag_tensor *w2 = filled_param(AG_F32, 2, (int64_t[]){3, 4}, 7.0);
    cr_expect_eq(nn_safetensors_load(path, 1, names, (ag_tensor *[]){w2}, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
    cr_expect(strstr(err, "holds tensor 'fc1.bias', which is not among the 1 asked for"), "%s", err);
    cr_expect(all_equal(w2, 7.0));

    const char *missing[2] = {"fc1.weight", "fc2.bias"};
    cr_expect_eq(nn_safetensors_load(path, 2, missing, (ag_tensor *[]){w2, bt}, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
    cr_expect(strstr(err, "the file has no tensor 'fc2.bias'"), "%s", err);

    const char *twice[2] = {"fc1.weight", "fc1.weight"};
    cr_expect_eq(nn_safetensors_load(path, 2, twice, (ag_tensor *[]){w2, w2}, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
    cr_expect(strstr(err, "asked for twice"), "%s", err);

    cr_expect_eq(nn_safetensors_load(path, 2, names, (ag_tensor *[]){w2, NULL}, NULL, NULL, err, sizeof err),
                 AG_EINVAL);
    cr_expect_eq(nn_safetensors_load(path, -1, names, NULL, NULL, NULL, err, sizeof err), AG_EINVAL);
    cr_expect(all_equal(w2, 7.0));

    cr_expect_eq(nn_safetensors_load(path, 2, names, (ag_tensor *[]){w2, bt}, NULL, NULL, NULL, 0), AG_OK);
    cr_expect(same_bits(w, w2) && same_bits(b, bt));
    free_all(6, (ag_tensor *[]){w, b, wt, bt, w64, w2});
}

Test(safetensors, open_reports_missing_and_short_files, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "absent.safetensors");
    nn_safetensors *f;
    cr_expect_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "cannot open: No such file"), "%s", err);
    cr_expect_eq(nn_safetensors_open(dir, NULL, NULL, &f, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "not a regular file"), "%s", err);
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, '{', '}'};
    cr_assert(write_bytes(path, huge, sizeof huge));
    cr_expect_eq(nn_safetensors_open(path, NULL, NULL, &f, err, sizeof err), AG_EIO);
    cr_expect(strstr(err, "header length is 2147483647 bytes but only 8 bytes follow"), "%s", err);
    cr_expect_eq(nn_safetensors_open(NULL, NULL, NULL, &f, err, sizeof err), AG_EINVAL);
    cr_expect_eq(nn_safetensors_open(path, NULL, NULL, NULL, err, sizeof err), AG_EINVAL);
}

/* ----------------------------------------------------------------- saving */

Test(safetensors, save_rejects_bad_names_and_tensors, .init = make_dir, .fini = drop_dir)
{
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "x.safetensors");
    ag_tensor *a = ramp_param(AG_F32, 1, (int64_t[]){2});
    ag_tape *tape = ag_tape_new();
    struct {
        const char *names[2];
        ag_tensor *t[2];
        const char *message;
    } cases[] = {
        {{"a", "a"}, {a, a}, "names 'a' appears twice"},
        {{"a", ""}, {a, a}, "names[1] is empty"},
        {{"a", NULL}, {a, a}, "names[1] is NULL"},
        {{"a", "\xff"}, {a, a}, "names[1] is not valid UTF-8"},
        {{"a", "__metadata__"}, {a, a}, "reserved \"__metadata__\""},
        {{"a", "b"}, {a, NULL}, "tensors[1] ('b') is NULL"},
        {{"a", "b"}, {a, ag_log(tape, NULL)}, "tensors[1] ('b') is nil"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_expect_eq(nn_safetensors_save(path, 2, cases[i].names, cases[i].t, NULL, NULL, err, sizeof err),
                     AG_EINVAL, "case %zu", i);
        cr_expect(strstr(err, cases[i].message), "case %zu: '%s'", i, err);
        cr_expect_eq(dir_entries(dir), 0, "case %zu left a file", i);
    }
    const char *keys[2] = {"k", "k"}, *values[2] = {"1", "2"};
    cr_expect_eq(nn_safetensors_save_meta(path, 1, (const char *[]){"a"}, &a, 2, keys, values, NULL, NULL,
                                          err, sizeof err),
                 AG_EINVAL);
    cr_expect(strstr(err, "meta_keys 'k' appears twice"), "%s", err);
    ag_tape_free(tape);
    ag_param_free(a);
}

/* Saves 'old' to path, checks that 'attempt' fails with 'status', and that
** the old checkpoint still loads and no temporary file is left behind. */
static void old_file_survives(const char *path, ag_status status, ag_status (*attempt)(const char *, void *),
                              void *ud)
{
    char err[256];
    ag_tensor *old = ramp_param(AG_F64, 1, (int64_t[]){16});
    cr_assert_eq(nn_safetensors_save(path, 1, (const char *[]){"w"}, &old, NULL, NULL, err, sizeof err),
                 AG_OK);
    int entries = dir_entries(dir);
    cr_expect_eq(attempt(path, ud), status);
    cr_expect_eq(dir_entries(dir), entries, "a temporary file was left behind");
    ag_tensor *back = filled_param(AG_F64, 1, (int64_t[]){16}, 0.0);
    cr_expect_eq(nn_safetensors_load(path, 1, (const char *[]){"w"}, &back, NULL, NULL, err, sizeof err),
                 AG_OK, "%s", err);
    cr_expect(same_bits(old, back));
    ag_param_free(old);
    ag_param_free(back);
}

static char attempt_err[512];

/* A new checkpoint of another shape, big enough to cross a file-size limit. */
static ag_status save_new(const char *path, void *ud)
{
    alloc_hooks *h = ud;
    ag_tensor *big = ramp_param(AG_F32, 1, (int64_t[]){4096});
    ag_status s = nn_safetensors_save(path, 1, (const char *[]){"w"}, &big, h ? hook_alloc : NULL, h,
                                      attempt_err, sizeof attempt_err);
    ag_param_free(big);
    return s;
}

Test(safetensors, failing_allocation_keeps_the_old_file, .init = make_dir, .fini = drop_dir)
{
    char path[600], scratch[600];
    fixture_path(path, sizeof path, dir, "ckpt.safetensors");
    fixture_path(scratch, sizeof scratch, dir, "scratch.safetensors");
    alloc_hooks count = hooks_counting();
    cr_assert_eq(save_new(scratch, &count), AG_OK, "%s", attempt_err);
    cr_expect_eq(count.live, 0);
    cr_assert_gt(count.requests, 1);
    unlink(scratch);
    for (long k = 1; k <= count.requests; k++) {
        alloc_hooks h = hooks_failing_at(k);
        old_file_survives(path, AG_ENOMEM, save_new, &h);
        cr_expect_eq(h.refused, 1);
        cr_expect_eq(h.live, 0, "a block leaked when request %ld failed", k);
        cr_expect_eq(h.bad_osize, 0);
        cr_expect(strstr(attempt_err, "out of memory"), "%s", attempt_err);
    }
}

Test(safetensors, failing_write_keeps_the_old_file, .init = make_dir, .fini = drop_dir)
{
    char path[600];
    fixture_path(path, sizeof path, dir, "ckpt.safetensors");
    /* Past 4 KiB writes fail with EFBIG instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old_limit, small;
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    small = old_limit;
    small.rlim_cur = 4096;
    ag_tensor *old = ramp_param(AG_F64, 1, (int64_t[]){16});
    char err[256];
    cr_assert_eq(nn_safetensors_save(path, 1, (const char *[]){"w"}, &old, NULL, NULL, err, sizeof err),
                 AG_OK);
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    ag_status s = save_new(path, NULL);
    setrlimit(RLIMIT_FSIZE, &old_limit);
    cr_expect_eq(s, AG_EIO);
    cr_expect(strstr(attempt_err, "the previous file is unchanged"), "%s", attempt_err);
    cr_expect_eq(dir_entries(dir), 1, "the temporary file was left behind");
    ag_tensor *back = filled_param(AG_F64, 1, (int64_t[]){16}, 0.0);
    cr_expect_eq(nn_safetensors_load(path, 1, (const char *[]){"w"}, &back, NULL, NULL, err, sizeof err),
                 AG_OK, "%s", err);
    cr_expect(same_bits(old, back));
    ag_param_free(old);
    ag_param_free(back);
}

Test(safetensors, failing_rename_keeps_the_target, .init = make_dir, .fini = drop_dir)
{
    /* The target is a directory: refused before anything is written, and
    ** no temporary file is left. */
    char path[600];
    fixture_path(path, sizeof path, dir, "ckpt.safetensors");
    cr_assert_eq(mkdir(path, 0755), 0);
    cr_expect_eq(save_new(path, NULL), AG_EIO);
    cr_expect(strstr(attempt_err, "it is a directory, not a regular file: it is not replaced"), "%s",
              attempt_err);
    cr_expect_eq(dir_entries(dir), 1);
    struct stat st;
    cr_expect(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
}

Test(safetensors, missing_directory_is_an_io_error, .init = make_dir, .fini = drop_dir)
{
    char path[600];
    fixture_path(path, sizeof path, dir, "no/such/dir/ckpt.safetensors");
    cr_expect_eq(save_new(path, NULL), AG_EIO);
    cr_expect(strstr(attempt_err, "cannot create a temporary file beside it: No such file or directory"),
              "%s", attempt_err);
    cr_expect(strstr(attempt_err, path), "%s", attempt_err);
}

/* No .init: a skipped test would not run its .fini. */
Test(safetensors, read_only_directory_keeps_the_old_file)
{
    if (geteuid() == 0)
        cr_skip_test("root writes into read-only directories");
    make_dir();
    char path[600];
    fixture_path(path, sizeof path, dir, "ckpt.safetensors");
    ag_tensor *old = ramp_param(AG_F64, 1, (int64_t[]){16});
    char err[256];
    cr_assert_eq(nn_safetensors_save(path, 1, (const char *[]){"w"}, &old, NULL, NULL, err, sizeof err),
                 AG_OK);
    chmod(dir, 0555);
    ag_status s = save_new(path, NULL);
    chmod(dir, 0755);
    cr_expect_eq(s, AG_EIO);
    ag_tensor *back = filled_param(AG_F64, 1, (int64_t[]){16}, 0.0);
    cr_expect_eq(nn_safetensors_load(path, 1, (const char *[]){"w"}, &back, NULL, NULL, err, sizeof err),
                 AG_OK);
    cr_expect(same_bits(old, back));
    ag_param_free(old);
    ag_param_free(back);
    drop_dir();
}

Test(safetensors, loading_survives_every_failed_allocation, .init = make_dir, .fini = drop_dir)
{
    ag_tensor *want[REF_N], *got[REF_N];
    ref_make(want);
    ref_make_filled(got, 42.0);
    char path[600], err[256];
    fixture_path(path, sizeof path, dir, "ref.safetensors");
    cr_assert_eq(nn_safetensors_save_meta(path, REF_N, ref_names, want, 2, ref_meta_keys, ref_meta_values,
                                          NULL, NULL, err, sizeof err),
                 AG_OK);
    long k = 1;
    for (;; k++) {
        alloc_hooks h = hooks_failing_at(k);
        ag_status s = nn_safetensors_load(path, REF_N, ref_names, got, hook_alloc, &h, err, sizeof err);
        cr_assert_eq(h.live, 0, "request %ld refused: a block leaked", k);
        cr_assert_eq(h.bad_osize, 0);
        if (h.refused == 0) {
            cr_assert_eq(s, AG_OK, "%s", err);
            break;
        }
        cr_assert_eq(s, AG_ENOMEM, "request %ld refused: %s", k, err);
        cr_assert(strstr(err, "out of memory"), "%s", err);
        for (int i = 0; i < REF_N; i++)
            cr_assert(all_equal(got[i], 42.0));
    }
    cr_expect_gt(k, 4);
    for (int i = 0; i < REF_N; i++)
        cr_expect(same_bits(want[i], got[i]));
    free_all(REF_N, want);
    free_all(REF_N, got);
}
