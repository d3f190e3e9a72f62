/*
** csv.c: numeric CSV files into datasets. Two passes over the text held in
** memory: the first finds the shape (and ragged rows), the second parses
** numbers straight into the dataset's buffers. Every error names the file,
** the line and the column.
*/
#define _POSIX_C_SOURCE 200809L
#include "io_util.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WHO "nn_csv_load"

typedef struct scan {
    const char *p, *end;
    int64_t line; /* line of the cursor, from 1 */
    const char *path;
} scan;

typedef struct field {
    const char *s; /* content without surrounding blanks or quotes */
    size_t n;
    bool quoted;
} field;

static bool blank(char c) { return c == ' ' || c == '\t'; }

/* Consumes one line ending (\n, \r\n or a lone \r) at the cursor, if any. */
static void end_line(scan *sc)
{
    if (sc->p < sc->end && *sc->p == '\r')
        sc->p++;
    if (sc->p < sc->end && *sc->p == '\n')
        sc->p++;
    sc->line++;
}

/* Skips blank lines; false when no record is left. */
static bool next_record(scan *sc)
{
    for (;;) {
        const char *q = sc->p;
        while (q < sc->end && blank(*q))
            q++;
        if (q == sc->end) {
            sc->p = q;
            return false;
        }
        if (*q != '\n' && *q != '\r')
            return true;
        sc->p = q;
        end_line(sc);
    }
}

/* Reads the field at the cursor and the separator after it; '*last' tells
** whether it ended its record. Fails only on a malformed quote. */
static ag_status next_field(scan *sc, int col, field *f, bool *last, char *err, size_t errlen)
{
    while (sc->p < sc->end && blank(*sc->p))
        sc->p++;
    f->quoted = sc->p < sc->end && *sc->p == '"';
    if (f->quoted) {
        int64_t start_line = sc->line;
        f->s = ++sc->p;
        for (;;) {
            if (sc->p == sc->end)
                return nni_io_fail(err, errlen, AG_EIO,
                                   WHO ": %s: line %lld, column %d: the quote is never closed", sc->path,
                                   (long long)start_line, col);
            if (*sc->p == '"') {
                if (sc->p + 1 < sc->end && sc->p[1] == '"') {
                    sc->p += 2; /* "" is a quote inside the field */
                    continue;
                }
                break;
            }
            if (*sc->p == '\n')
                sc->line++;
            sc->p++;
        }
        f->n = (size_t)(sc->p - f->s);
        sc->p++;
        while (sc->p < sc->end && blank(*sc->p))
            sc->p++;
        if (sc->p < sc->end && *sc->p != ',' && *sc->p != '\n' && *sc->p != '\r') {
            char shown[8];
            return nni_io_fail(err, errlen, AG_EIO,
                               WHO ": %s: line %lld, column %d: '%s' after a closing quote", sc->path,
                               (long long)sc->line, col, nni_io_escape(shown, sizeof shown, sc->p, 1));
        }
    } else {
        f->s = sc->p;
        while (sc->p < sc->end && *sc->p != ',' && *sc->p != '\n' && *sc->p != '\r')
            sc->p++;
        f->n = (size_t)(sc->p - f->s);
        while (f->n > 0 && blank(f->s[f->n - 1]))
            f->n--;
    }
    *last = !(sc->p < sc->end && *sc->p == ',');
    if (*last)
        end_line(sc);
    else
        sc->p++;
    return AG_OK;
}

/* Counts the fields of the record at the cursor, moving past it. */
static ag_status count_fields(scan *sc, int *count, char *err, size_t errlen)
{
    bool last = false;
    int n = 0;
    while (!last) {
        field f = {0};
        if (n == INT32_MAX)
            return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: line %lld has too many fields", sc->path,
                               (long long)sc->line);
        ag_status s = next_field(sc, n + 1, &f, &last, err, errlen);
        if (s != AG_OK)
            return s;
        n++;
    }
    *count = n;
    return AG_OK;
}

/* What parse_number found. */
typedef enum number_kind { NUMBER_OK, NUMBER_BAD, NUMBER_RANGE } number_kind;

/* Length of the decimal number at s[0..n) (an optional sign, digits with
** an optional '.', at least one digit, an optional exponent), or 0 when the
** field does not start with one. strtod alone would also take hex
** ("0x10"), "inf", "nan" and "infinity", which are not CSV numbers. */
static size_t decimal_length(const char *s, size_t n)
{
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
        digits++;
    if (i < n && s[i] == '.')
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            digits++;
    if (digits == 0)
        return 0;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t e = i + 1;
        if (e < n && (s[e] == '+' || s[e] == '-'))
            e++;
        size_t first = e;
        while (e < n && s[e] >= '0' && s[e] <= '9')
            e++;
        if (e == first)
            return 0;   /* "1e" or "1e+": no exponent digits */
        i = e;
    }
    return i;
}

/* A finite decimal number filling the whole field. The text buffer ends in
** a NUL and every field is followed by a byte no number can continue with
** (a separator, a line end, a blank or a quote), so strtod (and strtof, for
** f32) reads the field in place, whatever its length, and stops exactly at
** its end. */
static number_kind parse_number(const field *f, double *out)
{
    if (f->n == 0 || decimal_length(f->s, f->n) != f->n)
        return NUMBER_BAD;
    char *stop;
    errno = 0;
    double v = strtod(f->s, &stop);
    if (stop != f->s + f->n)
        return NUMBER_BAD;
    /* ERANGE also marks an underflow, whose result (0 or a subnormal) is the
    ** correctly rounded value: only an infinity is out of range. */
    if (!isfinite(v))
        return NUMBER_RANGE;
    *out = v;
    return NUMBER_OK;
}

static ag_status bad_field(const scan *sc, int64_t line, int col, const field *f, const char *why, char *err,
                           size_t errlen)
{
    if (f->n == 0)
        return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: line %lld, column %d: empty field", sc->path,
                           (long long)line, col);
    /* Shown escaped: a NUL would end the message, a newline break it. */
    char shown[4 * 40 + 1];
    nni_io_escape(shown, sizeof shown, f->s, f->n > 40 ? 40 : f->n);
    return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: line %lld, column %d: '%s%s' %s", sc->path,
                       (long long)line, col, shown, f->n > 40 ? "..." : "", why);
}

/* Reads the whole file into memory through the hook. */
static ag_status read_file(const char *path, ag_alloc_fn fn, void *ud, char **text, size_t *len, size_t *cap,
                           char *err, size_t errlen)
{
    ag_status s = AG_OK;
    int fd = nni_io_open_regular(WHO, path, &s, err, errlen);
    if (fd < 0)
        return s;
    struct stat st;
    if (fstat(fd, &st) != 0)
        s = nni_io_fail(err, errlen, AG_EIO, WHO ": %s: cannot stat: %s", path, strerror(errno));
    else if ((uint64_t)st.st_size >= SIZE_MAX / 2)
        s = nni_io_fail(err, errlen, AG_ENOMEM, WHO ": %s: too large to read", path);
    if (s == AG_OK) {
        *cap = (size_t)st.st_size + 1;
        *text = ag_realloc(fn, ud, NULL, 0, *cap);
        if (!*text) {
            *cap = 0;
            s = nni_io_fail(err, errlen, AG_ENOMEM, WHO ": %s: out of memory for %lld bytes", path,
                            (long long)st.st_size);
        }
    }
    if (s == AG_OK) {
        ssize_t got = nni_io_read_full(fd, *text, (size_t)st.st_size);
        if (got < 0)
            s = nni_io_fail(err, errlen, AG_EIO, WHO ": %s: reading failed: %s", path, strerror(errno));
        else {
            *len = (size_t)got; /* a file that shrank meanwhile is read as it now is */
            (*text)[*len] = '\0'; /* parse_number reads numbers in place */
        }
    }
    close(fd);
    return s;
}

typedef struct layout {
    int64_t rows;
    int cols, y_col;     /* y_col is -1 without a y */
    int64_t header_line; /* 0 without a header */
    int64_t first_line;  /* line of the first data row */
} layout;

/* Pass one: the number of rows and columns, and ragged rows. */
static ag_status measure(scan sc, const nn_csv_options *opt, layout *lay, char *err, size_t errlen)
{
    memset(lay, 0, sizeof *lay);
    lay->y_col = -1;
    ag_status s = AG_OK;
    if (opt->header && next_record(&sc)) {
        lay->header_line = sc.line;
        s = count_fields(&sc, &lay->cols, err, errlen);
    }
    while (s == AG_OK && next_record(&sc)) {
        int64_t line = sc.line;
        int n;
        s = count_fields(&sc, &n, err, errlen);
        if (s != AG_OK)
            break;
        if (lay->cols == 0)
            lay->cols = n;
        if (lay->rows == 0)
            lay->first_line = line;
        if (n != lay->cols)
            return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: line %lld: %d fields, but line %lld has %d",
                               sc.path, (long long)line, n,
                               (long long)(lay->header_line ? lay->header_line : lay->first_line), lay->cols);
        lay->rows++;
    }
    if (s != AG_OK)
        return s;
    if (lay->rows == 0)
        return nni_io_fail(err, errlen, AG_EIO, WHO ": %s: no data rows", sc.path);
    if (opt->ykind != NN_Y_NONE) {
        int y = opt->y_column < 0 ? lay->cols + opt->y_column : opt->y_column;
        if (y < 0 || y >= lay->cols)
            return nni_io_fail(err, errlen, AG_EINVAL, WHO ": %s: y_column %d is outside the %d columns",
                               sc.path, opt->y_column, lay->cols);
        lay->y_col = y;
    }
    if (lay->cols - (lay->y_col >= 0) < 1)
        return nni_io_fail(err, errlen, AG_EINVAL, WHO ": %s: no feature column is left besides y", sc.path);
    return AG_OK;
}

/* Pass two: the numbers, into ds. */
static ag_status fill(scan sc, const nn_csv_options *opt, const layout *lay, nn_dataset *ds, char *err,
                      size_t errlen)
{
    bool f32 = nn_dataset_dtype(ds) == AG_F32;
    void *x = nn_dataset_x(ds), *y = nn_dataset_y(ds);
    int64_t *labels = nn_dataset_labels(ds);
    int64_t features = lay->cols - (lay->y_col >= 0);
    if (opt->header && next_record(&sc)) {
        int ignored;
        count_fields(&sc, &ignored, err, errlen); /* checked in pass one */
    }
    for (int64_t r = 0; r < lay->rows; r++) {
        next_record(&sc);
        int64_t line = sc.line, k = r * features;
        bool last = false;
        for (int c = 0; c < lay->cols; c++) {
            field f = {0};
            /* Pass one checked the quotes; a failure here would be our bug,
            ** but it must not read an unset field. */
            ag_status fs = next_field(&sc, c + 1, &f, &last, err, errlen);
            if (fs != AG_OK)
                return fs;
            double v = 0;
            number_kind kind = parse_number(&f, &v);
            if (kind == NUMBER_RANGE)
                return bad_field(&sc, line, c + 1, &f, "is out of range (beyond +-1.8e308, the largest double)",
                                 err, errlen);
            if (kind != NUMBER_OK)
                return bad_field(&sc, line, c + 1, &f, "is not a number", err, errlen);
            /* An f32 value is read by strtof (same syntax, checked above):
            ** strtod's double rounded once more to float was an ulp off
            ** wherever the double landed on a midpoint between two floats
            ** ("1.00000005960464477539062500001" gave 1, not 1 + 2^-23).
            ** An infinity is out of range; up to half an ulp past FLT_MAX
            ** rounds to FLT_MAX, as the %.9g text of FLT_MAX itself
            ** (3.40282347e+38) does. */
            bool label = c == lay->y_col && opt->ykind == NN_Y_LABELS;
            float fv = 0;
            if (f32 && !label) {
                fv = strtof(f.s, NULL);
                if (isinf(fv))
                    return bad_field(&sc, line, c + 1, &f, "is out of range for f32", err, errlen);
            }
            if (label) {
                if (v != floor(v) || v < 0 || v > 9007199254740992.0)
                    return bad_field(&sc, line, c + 1, &f, "is not a class label (an integer >= 0)", err,
                                     errlen);
                labels[r] = (int64_t)v;
            } else if (c == lay->y_col) {
                if (f32)
                    ((float *)y)[r] = fv;
                else
                    ((double *)y)[r] = v;
            } else {
                if (f32)
                    ((float *)x)[k++] = fv;
                else
                    ((double *)x)[k++] = v;
            }
        }
    }
    return AG_OK;
}

ag_status nn_csv_load(const char *path, const nn_csv_options *opt, ag_dtype dt, ag_alloc_fn fn, void *ud,
                      nn_dataset **out, char *err, size_t errlen)
{
    if (!out)
        return nni_io_fail(err, errlen, AG_EINVAL, WHO ": out is NULL");
    *out = NULL;
    if (!path)
        return nni_io_fail(err, errlen, AG_EINVAL, WHO ": path is NULL");
    const nn_csv_options defaults = {0, NN_Y_NONE, 0};
    if (!opt)
        opt = &defaults;
    if (opt->ykind != NN_Y_NONE && opt->ykind != NN_Y_LABELS && opt->ykind != NN_Y_VALUES)
        return nni_io_fail(err, errlen, AG_EINVAL, WHO ": %s: ykind %d is not an nn_ykind", path,
                           (int)opt->ykind);
    if (dt != AG_F32 && dt != AG_F64)
        return nni_io_fail(err, errlen, AG_EDTYPE, WHO ": %s: dtype %d is neither AG_F32 nor AG_F64", path,
                           (int)dt);
    char *text = NULL;
    size_t len = 0, cap = 0;
    ag_status s = read_file(path, fn, ud, &text, &len, &cap, err, errlen);
    scan sc = {text, text + len, 1, path};
    /* A UTF-8 byte order mark, as spreadsheets write, is not data. */
    if (s == AG_OK && len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
        sc.p += 3;
    layout lay;
    if (s == AG_OK)
        s = measure(sc, opt, &lay, err, errlen);
    nn_dataset *ds = NULL;
    if (s == AG_OK) {
        int64_t features = lay.cols - (lay.y_col >= 0);
        s = nn_dataset_new(fn, ud, dt, lay.rows, 1, &features, opt->ykind, 1, (const int64_t[]){1}, &ds, err,
                           errlen);
        if (s == AG_ENOMEM)
            nni_io_fail(err, errlen, s, WHO ": %s: out of memory for %lld rows of %d columns", path,
                        (long long)lay.rows, lay.cols);
    }
    if (s == AG_OK) {
        /* strtod follows the program's LC_NUMERIC; CSV numbers use '.'
        ** whatever it is, so parse in the C locale (for this thread only). */
        locale_t c_numeric = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        locale_t previous = c_numeric ? uselocale(c_numeric) : (locale_t)0;
        s = fill(sc, opt, &lay, ds, err, errlen);
        if (c_numeric) {
            uselocale(previous);
            freelocale(c_numeric);
        }
    }
    ag_realloc(fn, ud, text, cap, 0);
    if (s != AG_OK) {
        nn_dataset_free(ds);
        return s;
    }
    *out = ds;
    return nni_io_ok(err, errlen);
}
