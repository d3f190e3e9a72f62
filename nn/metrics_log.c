/*
** metrics_log.c: per-epoch metrics appended to a CSV or JSON-lines file,
** one whole line per record, flushed as it is written.
*/
#define _POSIX_C_SOURCE 200809L
#include "io_util.h"
#include "nn_io.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { MAX_COLUMNS = 64, MAX_KEY = 64, LINE_BYTES = MAX_COLUMNS * (MAX_KEY + 32) };

struct nn_metrics_log {
    FILE *f;
    ag_alloc_fn fn;
    void *ud;
    nn_log_format format;
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
    if (!log)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory", who);
    memset(log, 0, sizeof *log);
    log->fn = fn;
    log->ud = ud;
    log->format = format;
    ag_status st = append && format == NN_LOG_CSV ? read_header(log, path, err, errlen) : AG_OK;
    if (st == AG_OK) {
        log->f = fopen(path, append ? "a" : "w");
        if (!log->f)
            st = nni_io_fail(err, errlen, AG_EIO, "%s: cannot open '%s': %s", who, path,
                             strerror(errno));
    }
    if (st != AG_OK) {
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
    /* One write of the whole record, then flush: a run killed now leaves
    ** every line written so far whole. */
    if (fwrite(log->line, 1, used, log->f) != used || fflush(log->f) != 0)
        return nni_io_fail(err, errlen, AG_EIO, "%s: cannot write: %s", who, strerror(errno));
    if (!log->n_columns) {
        for (int i = 0; i < n; i++)
            snprintf(log->columns[i], MAX_KEY, "%s", keys[i]);
        log->n_columns = n;
    }
    return nni_io_ok(err, errlen);
}

ag_status nn_metrics_log_close(nn_metrics_log *log, char *err, size_t errlen)
{
    if (!log)
        return nni_io_ok(err, errlen);
    int bad = fclose(log->f) != 0;
    int saved = errno;
    ag_realloc(log->fn, log->ud, log, sizeof *log, 0);
    if (bad)
        return nni_io_fail(err, errlen, AG_EIO, "nn_metrics_log_close: %s", strerror(saved));
    return nni_io_ok(err, errlen);
}
