/*
** fuzz_file.h: the loaders of nn_io.h read files by path, so a fuzz target
** turns its input bytes into a file first: an anonymous memory file
** (memfd, named through /proc/self/fd) on Linux, a temporary file
** elsewhere. Shared by the fuzz targets and the corpus replay test.
*/
#ifndef TESTS_FUZZ_FILE_H
#define TESTS_FUZZ_FILE_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE   /* memfd_create */
#endif

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct fuzz_file {
    int fd;
    char path[64];
    char tmp[64];   /* the temporary file to unlink, or "" */
} fuzz_file;

/* Writes data[0..size) to a new file; 0 on success, -1 when the system
** refuses (the input is then skipped, not a finding). */
static inline int fuzz_file_make(fuzz_file *f, const uint8_t *data, size_t size)
{
    f->tmp[0] = '\0';
#if defined(__linux__)
    f->fd = memfd_create("fuzz", 0);
    if (f->fd >= 0)
        snprintf(f->path, sizeof f->path, "/proc/self/fd/%d", f->fd);
#else
    f->fd = -1;
#endif
    if (f->fd < 0) {
        snprintf(f->tmp, sizeof f->tmp, "/tmp/fuzz_XXXXXX");
        f->fd = mkstemp(f->tmp);
        if (f->fd < 0)
            return -1;
        snprintf(f->path, sizeof f->path, "%s", f->tmp);
    }
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(f->fd, data + done, size - done);
        if (w <= 0) {
            close(f->fd);
            if (f->tmp[0])
                unlink(f->tmp);
            return -1;
        }
        done += (size_t)w;
    }
    return 0;
}

static inline void fuzz_file_drop(fuzz_file *f)
{
    close(f->fd);
    if (f->tmp[0])
        unlink(f->tmp);
}

#endif
