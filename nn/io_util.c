/*
** io_util.c: the small pieces every reader and writer of nn/ needs: error
** messages into the caller's buffer, the allocation hook, shape strings,
** byte order and read/write loops that survive EINTR and short transfers.
*/
#define _POSIX_C_SOURCE 200809L
#include "io_util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ag_status nni_io_fail(char *err, size_t errlen, ag_status s, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return s;
}

ag_status nni_io_ok(char *err, size_t errlen)
{
    if (err && errlen > 0)
        err[0] = '\0';
    return AG_OK;
}

int64_t nni_io_numel(int rank, const int64_t *shape, int64_t limit)
{
    int64_t numel = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return -1;
        if (shape[i] != 0 && numel > limit / shape[i])
            return -1;
        numel *= shape[i];
    }
    return numel;
}

bool nni_io_host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

void nni_io_swap_bytes(void *data, size_t count, size_t esize)
{
    unsigned char *p = data;
    for (size_t i = 0; i < count; i++, p += esize)
        for (size_t a = 0, b = esize - 1; a < b; a++, b--) {
            unsigned char tmp = p[a];
            p[a] = p[b];
            p[b] = tmp;
        }
}

ssize_t nni_io_read_full(int fd, void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, (char *)buf + done, n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

ssize_t nni_io_pread_full(int fd, void *buf, size_t n, off_t offset)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(fd, (char *)buf + done, n - done, offset + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        done += (size_t)r;
    }
    return (ssize_t)done;
}

ssize_t nni_io_write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, (const char *)buf + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        done += (size_t)w;
    }
    return (ssize_t)done;
}

int nni_io_open_regular(const char *who, const char *path, ag_status *s, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
    ** writer, forever. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: cannot open: %s", who, path, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *kind = NULL;
    if (fstat(fd, &st) != 0)
        *s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: cannot stat: %s", who, path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        kind = S_ISFIFO(st.st_mode)  ? "a FIFO"
               : S_ISDIR(st.st_mode) ? "a directory"
               : S_ISCHR(st.st_mode) ? "a character device"
               : S_ISBLK(st.st_mode) ? "a block device"
               : S_ISSOCK(st.st_mode) ? "a socket"
                                      : "not a regular file";
    else {
        /* A regular file reads the same either way; clear the flag so that
        ** no read of a file system that honours it returns EAGAIN. */
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0)
            return fd;
        *s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: cannot set blocking mode: %s", who, path,
                         strerror(errno));
    }
    if (kind)
        *s = nni_io_fail(err, errlen, AG_EIO, "%s: %s: is %s, not a regular file; refused before reading",
                         who, path, kind);
    close(fd);
    return -1;
}

const char *nni_io_escape(char *out, size_t cap, const char *s, size_t n)
{
    size_t w = 0;
    if (cap == 0)
        return out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char piece[8];
        if (c == 0)
            snprintf(piece, sizeof piece, "\\0");
        else if (c == '\\')
            snprintf(piece, sizeof piece, "\\\\");
        else if (c == '\n')
            snprintf(piece, sizeof piece, "\\n");
        else if (c < 0x20 || c == 0x7f)
            snprintf(piece, sizeof piece, "\\x%02x", c);
        else {
            piece[0] = (char)c;
            piece[1] = '\0';
        }
        size_t k = strlen(piece);
        if (w + k >= cap)
            break;
        memcpy(out + w, piece, k);
        w += k;
    }
    out[w] = '\0';
    return out;
}
