/*
** io_fixtures.h: scratch directories and small file helpers for the data
** and checkpoint suites, which generate their fixtures instead of keeping
** binary files in the repository.
*/
#ifndef TESTS_IO_FIXTURES_H
#define TESTS_IO_FIXTURES_H

#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A fresh directory under $TMPDIR (or /tmp); path written to 'dir'. */
static inline int fixture_dir(char *dir, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, n, "%s/nn_io_test_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(dir) != NULL;
}

static inline void fixture_path(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static inline int write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static inline int write_text(const char *path, const char *text)
{
    return write_bytes(path, text, strlen(text));
}

/* The whole file in a malloc'ed buffer (NULL on failure); size in *n. */
static inline unsigned char *read_bytes(const char *path, size_t *n)
{
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0, got;
    unsigned char *buf = malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            unsigned char *p = realloc(buf, 2 * cap);
            if (!p)
                free(buf);
            buf = p;
            cap *= 2;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

/* Entries of a directory, '.' and '..' aside; -1 when it cannot be read. */
static inline int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Removes the files in 'dir' (one level) and the directory itself. */
static inline void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
                rmdir(p);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

#endif
