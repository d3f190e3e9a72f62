/*
** test_fuzz_corpus.c: replays every file of a fuzz target's corpus
** (tests/fuzz/<target>/: the seeds and a regression file for each crash the
** fuzzer found) through the target's own entry point, in the regular build,
** so that CI runs them under AddressSanitizer without clang. Built once per
** target, with FUZZ_TARGET and FUZZ_CORPUS set by tests/meson.build; each
** target checks its own invariants and aborts when one fails.
*/
#define _POSIX_C_SOURCE 200809L

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET names the target, FUZZ_CORPUS its corpus directory"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_FILES = 512, NAME_LEN = 64 };

/* A corpus file's name; plain bytes, so Criterion can copy the parameter. */
typedef struct corpus_file {
    char name[NAME_LEN];
} corpus_file;

static int by_name(const void *a, const void *b)
{
    return strcmp(((const corpus_file *)a)->name, ((const corpus_file *)b)->name);
}

static corpus_file files[MAX_FILES];

static size_t list_corpus(void)
{
    size_t n = 0;
    DIR *d = opendir(FUZZ_CORPUS);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) && n < MAX_FILES;)
        if (e->d_name[0] != '.' && strlen(e->d_name) < NAME_LEN)
            memcpy(files[n++].name, e->d_name, strlen(e->d_name) + 1);   /* fits: checked */
    closedir(d);
    qsort(files, n, sizeof *files, by_name);
    return n;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    size_t cap = 1 << 16, len = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    cr_assert_not_null(buf);
    *n = len;
    return buf;
}

ParameterizedTestParameters(fuzz_corpus, replay)
{
    size_t n = list_corpus();
    /* An empty list would pass silently; a placeholder makes 'replay' fail. */
    if (n == 0)
        snprintf(files[n++].name, NAME_LEN, "(no corpus in %s)", FUZZ_CORPUS);
    return cr_make_param_array(corpus_file, files, n);
}

ParameterizedTest(corpus_file *file, fuzz_corpus, replay)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", FUZZ_CORPUS, file->name);
    size_t n;
    unsigned char *data = read_all(path, &n);
    /* On a failed invariant the target aborts and Criterion reports a
    ** crash; this line, just before it, names the file. */
    fprintf(stderr, "replaying %s (%zu bytes)\n", path, n);
    cr_expect_eq(LLVMFuzzerTestOneInput(data, n), 0, "%s", path);
    free(data);
}

Test(fuzz_corpus, has_seeds)
{
    size_t n = list_corpus();
    cr_expect_geq(n, 8, "%s holds %zu files; the seed corpus has more", FUZZ_CORPUS, n);
    size_t seeds = 0;
    for (size_t i = 0; i < n; i++)
        seeds += strncmp(files[i].name, "seed_", 5) == 0;
    cr_expect_geq(seeds, 8, "seed_* files in %s", FUZZ_CORPUS);
}
