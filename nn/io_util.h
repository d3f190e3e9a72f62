/*
** io_util.h: helpers shared by the data and checkpoint files of nn/ (errors
** into a caller buffer, the allocation hook, shapes in messages, byte order,
** whole reads). Private: never installed.
*/
#ifndef NN_IO_UTIL_H
#define NN_IO_UTIL_H

#include "nn_io.h"

#include <stdbool.h>
#include <sys/types.h>

/* Writes the message into err (when not NULL) and returns s. */
ag_status nni_io_fail(char *err, size_t errlen, ag_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
/* Sets err to "" and returns AG_OK. */
ag_status nni_io_ok(char *err, size_t errlen);



/* Element count of a shape, or -1 when a dim is negative or the product
** passes 'limit'. */
int64_t nni_io_numel(int rank, const int64_t *shape, int64_t limit);

bool nni_io_host_is_little_endian(void);
/* Reverses the bytes of each of 'count' elements of 'esize' bytes. */
void nni_io_swap_bytes(void *data, size_t count, size_t esize);

/* read()/pread()/write() until n bytes are done, retrying on EINTR. Return
** the bytes moved (less than n at end of file), or -1 with errno set. */
ssize_t nni_io_read_full(int fd, void *buf, size_t n);
ssize_t nni_io_pread_full(int fd, void *buf, size_t n, off_t offset);
ssize_t nni_io_write_full(int fd, const void *buf, size_t n);

/* Opens 'path' for reading and checks, on the opened descriptor, that it is
** a regular file: a FIFO, a device or a directory is refused before a byte
** is read. The open itself never blocks (O_NONBLOCK, cleared once the file
** is known to be regular), and fstat on the descriptor leaves no window for
** the name to change between the check and the read. Returns the fd, or -1
** with the message ("<who>: <path>: ...") written and '*s' set (AG_EIO). */
int nni_io_open_regular(const char *who, const char *path, ag_status *s, char *err, size_t errlen);

/* Writes 'n' bytes of 's' into 'out' (size 'cap', always NUL-terminated) with
** NUL, control bytes and backslashes escaped (\0, \n, \xHH, \\), so a
** message shows what a file holds instead of stopping at its first NUL.
** Returns 'out'. */
const char *nni_io_escape(char *out, size_t cap, const char *s, size_t n);

#endif
