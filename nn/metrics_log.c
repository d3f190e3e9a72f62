/*
** metrics_log.c: per-epoch metrics appended to a CSV or JSON-lines file,
** one whole line per record, written as it comes.
**
** Records go out with write(2) on a descriptor, not through stdio, so that
** the log knows how many bytes of a record reached the file: a stdio buffer
** hides a short write until a flush, drops what it could not write, and the
** next record lands behind the torn line. Here a record that fails midway is
** cut off again (ftruncate to where it began), and the log then refuses every
** later record, so the file never holds a torn line, nor good lines behind a
** missing one.
*/
#define _POSIX_C_SOURCE 200809L
#include "io_util.h"
#include "nn_io.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_COLUMNS = 64, MAX_KEY = 64, LINE_BYTES = MAX_COLUMNS * (MAX_KEY + 32) };

struct nn_metrics_log {
    int fd;
    ag_alloc_fn fn;
    void *ud;
    char *path;        /* a copy, for messages */
    size_t path_bytes; /* its allocation */
    nn_log_format format;
    long long records; /* written by this log, for messages */
    /* Sticky after a failed write: what failed, for every later call. */
    bool failed;
    char failure[256];
    int n_columns;     /* 0 until the first record (or an appended CSV header) fixes them */
    char columns[MAX_COLUMNS][MAX_KEY];
    char line[LINE_BYTES];
};

static bool key_ok(const char *k)
{
    size_t n = k ? strlen(k) : 0;
    if (n == 0 || n >= MAX_KEY)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == '/'))
            return false;
    }
    return true;
}

/* An appended CSV log's columns come from its header, the first line. */
static ag_status read_header(nn_metrics_log *log, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return AG_OK;   /* no file yet: the first record writes the header */
    char *line = log->line;
    bool got = fgets(line, LINE_BYTES, f) != NULL;
    fclose(f);
    if (!got)
        return AG_OK;   /* empty */
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n')
        return nni_io_fail(err, errlen, AG_EIO, "nn_metrics_log_open: %s: the first line is "
                           "not a complete CSV header", path);
    line[len - 1] = '\0';
    for (char *p = line, *comma;; p = comma + 1) {
        comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (log->n_columns == MAX_COLUMNS || !key_ok(p))
            return nni_io_fail(err, errlen, AG_EIO, "nn_metrics_log_open: %s: the header's "
                               "column '%.64s' is not a metrics log's", path, p);
        snprintf(log->columns[log->n_columns++], MAX_KEY, "%s", p);
        if (!comma)
            break;
    }
    return AG_OK;
}

/* A log continued by a resumed run must end in a newline: a record appended
** after a torn last line would glue onto it. */
static ag_status check_last_line_whole(int fd, const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return nni_io_fail(err, errlen, AG_EIO, "nn_metrics_log_open: %s: fstat failed: %s", path,
                           strerror(errno));
    if (!S_ISREG(st.st_mode) || st.st_size == 0)
        return AG_OK;
    char last;
    int rfd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    ssize_t got = rfd < 0 ? -1 : nni_io_pread_full(rfd, &last, 1, st.st_size - 1);
    int saved = errno;
    if (rfd >= 0)
        close(rfd);
    if (got != 1)
        return nni_io_fail(err, errlen, AG_EIO, "nn_metrics_log_open: %s: cannot read its last "
                           "byte: %s", path, got < 0 ? strerror(saved) : "the file shrank");
    if (last != '\n')
        return nni_io_fail(err, errlen, AG_EIO, "nn_metrics_log_open: %s: the file does not end "
                           "in a newline (its last line, in its %lld bytes, is cut short); a "
                           "record appended now would join that line: cut it off or start a new "
                           "log", path, (long long)st.st_size);
    return AG_OK;
}

ag_status nn_metrics_log_open(const char *path, nn_log_format format, int append, ag_alloc_fn fn,
                              void *ud, nn_metrics_log **out, char *err, size_t errlen)
{
    const char *who = "nn_metrics_log_open";
    if (!out)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: out is NULL", who);
    *out = NULL;
    if (!path)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: path is NULL", who);
    if (format != NN_LOG_CSV && format != NN_LOG_JSONL)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: format %d is neither NN_LOG_CSV nor "
                           "NN_LOG_JSONL", who, (int)format);
    nn_metrics_log *log = ag_realloc(fn, ud, NULL, 0, sizeof *log);
    size_t path_bytes = strlen(path) + 1;
    char *path_copy = log ? ag_realloc(fn, ud, NULL, 0, path_bytes) : NULL;
    if (!path_copy) {
        if (log)
            ag_realloc(fn, ud, log, sizeof *log, 0);
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory", who);
    }
    memset(log, 0, sizeof *log);
    memcpy(path_copy, path, path_bytes);
    log->fd = -1;
    log->fn = fn;
    log->ud = ud;
    log->path = path_copy;
    log->path_bytes = path_bytes;
    log->format = format;
    ag_status st = append && format == NN_LOG_CSV ? read_header(log, path, err, errlen) : AG_OK;
    if (st == AG_OK) {
        int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC);
        log->fd = open(path, flags, 0666);
        if (log->fd < 0)
            st = nni_io_fail(err, errlen, AG_EIO, "%s: cannot open '%s': %s", who, path,
                             strerror(errno));
    }
    if (st == AG_OK && append)
        st = check_last_line_whole(log->fd, path, err, errlen);
    if (st != AG_OK) {
        if (log->fd >= 0)
            close(log->fd);
        ag_realloc(fn, ud, path_copy, path_bytes, 0);
        ag_realloc(fn, ud, log, sizeof *log, 0);
        return st;
    }
    *out = log;
    return nni_io_ok(err, errlen);
}

/* Appends text to the line at *used; false when it does not fit. */
static bool put(char *line, size_t *used, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static bool put(char *line, size_t *used, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + *used, LINE_BYTES - *used, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= LINE_BYTES - *used)
        return false;
    *used += (size_t)n;
    return true;
}

/* Appends the record in log->line (used bytes) to the file whole, or not
** at all: bytes of it that reached the file before a failure are cut off
** again. On failure the log is failed from then on (log->failure says why)
** and false is returned. */
static bool append_whole(nn_metrics_log *log, size_t used)
{
    /* With O_APPEND each write goes to the end of the file, which is where
    ** the record begins (one writer per log). */
    off_t start = lseek(log->fd, 0, SEEK_END);
    size_t done = 0;
    int why = EIO;   /* a write() that moves 0 bytes sets no errno */
    while (done < used) {
        ssize_t w = write(log->fd, log->line + done, used - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            why = w < 0 ? errno : EIO;
            break;
        }
        done += (size_t)w;
    }
    if (done == used)
        return true;
    log->failed = true;
    int n = snprintf(log->failure, sizeof log->failure, "cannot write record %lld: %s",
                     log->records + 1, strerror(why));
    if (n < 0 || (size_t)n >= sizeof log->failure)
        n = (int)strlen(log->failure);   /* cut short: what follows is cut too */
    if (done > 0 && (start < 0 || ftruncate(log->fd, start) != 0))
        snprintf(log->failure + n, sizeof log->failure - (size_t)n, "; %zu of its %zu bytes stay "
                 "in the file, cutting them off failed: %s", done, used,
                 start < 0 ? "it cannot seek" : strerror(errno));
    return false;
}

ag_status nn_metrics_log_write(nn_metrics_log *log, int n, const char *const *keys,
                               const double *values, char *err, size_t errlen)
{
    const char *who = "nn_metrics_log_write";
    if (!log || !keys || !values)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s is NULL", who,
                           !log ? "the log" : !keys ? "keys" : "values");
    if (n < 1 || n > MAX_COLUMNS)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %d columns; a record has 1 to %d", who, n,
                           MAX_COLUMNS);
    for (int i = 0; i < n; i++)
        if (!key_ok(keys[i]))
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: column name '%.64s' must be 1 to %d "
                               "letters, digits or _ . - /", who, keys[i] ? keys[i] : "(null)",
                               MAX_KEY - 1);
    if (log->n_columns && log->n_columns != n)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %d columns, where the log has %d", who, n,
                           log->n_columns);
    for (int i = 0; i < n && log->n_columns; i++)
        if (strcmp(keys[i], log->columns[i]))
            return nni_io_fail(err, errlen, AG_EINVAL, "%s: column %d is '%s', where the log "
                               "has '%s'", who, i + 1, keys[i], log->columns[i]);
    if (log->failed)
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: the log failed earlier (%s) and takes "
                           "no more records (records written before it: %lld)", who,
                           log->path, log->failure, log->records);
    size_t used = 0;
    bool ok = true, header = log->format == NN_LOG_CSV && log->n_columns == 0;
    for (int i = 0; i < n && header; i++)
        ok = ok && put(log->line, &used, "%s%s", i ? "," : "", keys[i]);
    if (header)
        ok = ok && put(log->line, &used, "\n");
    for (int i = 0; i < n; i++) {
        double v = values[i];
        if (log->format == NN_LOG_CSV)
            ok = ok && put(log->line, &used, i ? ",%.17g" : "%.17g", v);
        else if (isfinite(v))
            ok = ok && put(log->line, &used, "%s\"%s\": %.17g", i ? ", " : "{", keys[i], v);
        else
            ok = ok && put(log->line, &used, "%s\"%s\": null", i ? ", " : "{", keys[i]);
    }
    ok = ok && put(log->line, &used, log->format == NN_LOG_CSV ? "\n" : "}\n");
    if (!ok)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: the record is longer than %d bytes", who,
                           LINE_BYTES);
    if (!append_whole(log, used))
        return nni_io_fail(err, errlen, AG_EIO, "%s: %s: %s", who, log->path, log->failure);
    log->records++;
    if (!log->n_columns) {
        for (int i = 0; i < n; i++)
            snprintf(log->columns[i], MAX_KEY, "%s", keys[i]);
        log->n_columns = n;
    }
    return nni_io_ok(err, errlen);
}

ag_status nn_metrics_log_close(nn_metrics_log *log, char *err, size_t errlen)
{
    const char *who = "nn_metrics_log_close";
    if (!log)
        return nni_io_ok(err, errlen);
    int bad = log->fd >= 0 && close(log->fd) != 0;
    int saved = errno;
    ag_status st = log->failed
        ? nni_io_fail(err, errlen, AG_EIO, "%s: %s: a write failed earlier (%s); records written "
                      "before it: %lld", who, log->path, log->failure, log->records)
        : bad ? nni_io_fail(err, errlen, AG_EIO, "%s: %s: %s", who, log->path, strerror(saved))
              : nni_io_ok(err, errlen);
    ag_realloc(log->fn, log->ud, log->path, log->path_bytes, 0);
    ag_realloc(log->fn, log->ud, log, sizeof *log, 0);
    return st;
}
