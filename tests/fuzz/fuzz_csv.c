/*
** fuzz_csv.c: libFuzzer target for the CSV reader. Byte 0 picks the options
** (bit 0: a header row; bits 1-2: NN_Y_NONE, NN_Y_LABELS, NN_Y_VALUES; bit
** 3: f64, else f32), byte 1 is y_column as a signed byte, the rest is the
** file.
**
** The oracle is a second reader written here from the format's rules, not
** from csv.c: a byte state machine for records and quoted fields, a decimal
** grammar checked character by character, and strtod on a copy of each
** number. Both must agree on whether the file loads, and on every value,
** bit for bit. A refusal must carry a message naming nn_csv_load. What
** loads is then written back as CSV (%.17g / %.9g) and loaded again: the
** same values must come back (the round trip).
*/
#include "fuzz_file.h"

#include "../alloc_hooks.h"
#include "nn_io.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- the reference */

typedef struct ref_field {
    const uint8_t *s;
    size_t n;
} ref_field;

typedef struct ref_table {
    ref_field *fields;   /* row-major, rows * cols (header first when present) */
    size_t n, cap;
    int64_t rows;        /* records, the header included */
    int cols;
    bool ragged, bad_quote;
} ref_table;

static bool is_blank(uint8_t c) { return c == ' ' || c == '\t'; }
static bool is_end(uint8_t c) { return c == '\n' || c == '\r'; }

static void push(ref_table *t, const uint8_t *s, size_t n)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->fields = realloc(t->fields, t->cap * sizeof *t->fields);
        if (!t->fields)
            abort();
    }
    t->fields[t->n++] = (ref_field){s, n};
}

/* Splits the text into records of fields. A line of blanks only is no
** record; a quoted field runs to a quote not doubled, and only blanks may
** follow it before ',' or the line's end. */
static void ref_split(const uint8_t *p, size_t len, ref_table *t)
{
    size_t i = 0;
    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        i = 3;
    for (;;) {
        size_t j = i;   /* blank lines */
        while (j < len && is_blank(p[j]))
            j++;
        if (j == len)
            return;
        if (is_end(p[j])) {
            i = j + 1 + (p[j] == '\r' && j + 1 < len && p[j + 1] == '\n');
            continue;
        }
        int fields = 0;
        for (;;) {   /* one record */
            while (i < len && is_blank(p[i]))
                i++;
            if (i < len && p[i] == '"') {
                size_t start = ++i;
                for (;; i++) {
                    if (i == len) {
                        t->bad_quote = true;
                        return;
                    }
                    if (p[i] == '"') {
                        if (i + 1 < len && p[i + 1] == '"') {
                            i++;
                            continue;
                        }
                        break;
                    }
                }
                push(t, p + start, i - start);
                i++;
                while (i < len && is_blank(p[i]))
                    i++;
                if (i < len && p[i] != ',' && !is_end(p[i])) {
                    t->bad_quote = true;
                    return;
                }
            } else {
                size_t start = i;
                while (i < len && p[i] != ',' && !is_end(p[i]))
                    i++;
                size_t end = i;
                while (end > start && is_blank(p[end - 1]))
                    end--;
                push(t, p + start, end - start);
            }
            fields++;
            if (i < len && p[i] == ',') {
                i++;
                continue;
            }
            break;
        }
        if (t->rows == 0)
            t->cols = fields;
        else if (fields != t->cols)
            t->ragged = true;
        t->rows++;
        if (i < len && p[i] == '\r')
            i++;
        if (i < len && p[i] == '\n')
            i++;
        if (t->ragged)
            return;
    }
}

/* A decimal number: [+-] digits [. digits] | [+-] . digits, then an optional
** exponent [eE] [+-] digits; nothing else. */
static bool ref_decimal(const uint8_t *s, size_t n)
{
    size_t i = 0, int_digits = 0, frac_digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++, int_digits++;
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, frac_digits++;
    }
    if (int_digits + frac_digits == 0)
        return false;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t exp_digits = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++, exp_digits++;
        if (exp_digits == 0)
            return false;
    }
    return i == n;
}

/* The field's finite value, or false. */
static bool ref_number(const ref_field *f, double *v)
{
    if (!ref_decimal(f->s, f->n))
        return false;
    char *copy = malloc(f->n + 1);
    if (!copy)
        abort();
    memcpy(copy, f->s, f->n);
    copy[f->n] = '\0';
    char *end;
    *v = strtod(copy, &end);
    bool ok = end == copy + f->n && isfinite(*v);
    free(copy);
    return ok;
}

/* ------------------------------------------------------------ the target */

static double value_at(const void *buf, ag_dtype dt, int64_t i)
{
    return dt == AG_F32 ? (double)((const float *)buf)[i] : ((const double *)buf)[i];
}

static bool same_bits(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* Whether the reference accepts the file, and (if so) checks ds against it. */
static bool reference_accepts(const ref_table *t, const nn_csv_options *opt, ag_dtype dt)
{
    int64_t first = opt->header ? 1 : 0;
    if (t->bad_quote || t->ragged || t->rows - first < 1)
        return false;
    int y = -1;
    if (opt->ykind != NN_Y_NONE) {
        y = opt->y_column < 0 ? t->cols + opt->y_column : opt->y_column;
        if (y < 0 || y >= t->cols)
            return false;
    }
    if (t->cols - (y >= 0) < 1)
        return false;
    for (int64_t r = first; r < t->rows; r++)
        for (int c = 0; c < t->cols; c++) {
            double v;
            if (!ref_number(&t->fields[r * t->cols + c], &v))
                return false;
            bool label = c == y && opt->ykind == NN_Y_LABELS;
            if (label && (v != floor(v) || v < 0 || v > 9007199254740992.0))
                return false;
            if (!label && dt == AG_F32 && isinf((double)(float)v))
                return false;
        }
    return true;
}

static void check_values(nn_dataset *ds, const ref_table *t, const nn_csv_options *opt, ag_dtype dt)
{
    int64_t first = opt->header ? 1 : 0, n = t->rows - first;
    int y = opt->ykind == NN_Y_NONE ? -1 : opt->y_column < 0 ? t->cols + opt->y_column : opt->y_column;
    int64_t features = t->cols - (y >= 0);
    if (nn_dataset_len(ds) != n || nn_dataset_dtype(ds) != dt || nn_dataset_ykind(ds) != opt->ykind ||
        nn_dataset_x_rank(ds) != 1 || nn_dataset_x_shape(ds)[0] != features)
        abort();
    const void *x = nn_dataset_x(ds), *yv = nn_dataset_y(ds);
    const int64_t *labels = nn_dataset_labels(ds);
    for (int64_t r = 0; r < n; r++) {
        int64_t k = r * features;
        for (int c = 0; c < t->cols; c++) {
            double v;
            if (!ref_number(&t->fields[(r + first) * t->cols + c], &v))
                abort();
            double want = dt == AG_F32 ? (double)(float)v : v;
            if (c == y && opt->ykind == NN_Y_LABELS) {
                if (labels[r] != (int64_t)v)
                    abort();
            } else if (c == y) {
                if (!same_bits(value_at(yv, dt, r), want))
                    abort();
            } else if (!same_bits(value_at(x, dt, k++), want)) {
                abort();   /* a value the reference reads otherwise */
            }
        }
    }
}

/* Writes ds back as CSV (columns in their places, no header), loads it
** with the same options, and checks every value comes back. */
static void round_trip(nn_dataset *ds, const ref_table *t, const nn_csv_options *opt, ag_dtype dt,
                       alloc_hooks *h)
{
    int y = opt->ykind == NN_Y_NONE ? -1 : opt->y_column < 0 ? t->cols + opt->y_column : opt->y_column;
    int64_t n = nn_dataset_len(ds), features = nn_dataset_x_shape(ds)[0];
    size_t cap = (size_t)(n * t->cols) * 32 + 1, len = 0;
    char *text = malloc(cap);
    if (!text)
        abort();
    const void *x = nn_dataset_x(ds), *yv = nn_dataset_y(ds);
    const int64_t *labels = nn_dataset_labels(ds);
    for (int64_t r = 0; r < n; r++) {
        int64_t k = r * features;
        for (int c = 0; c < t->cols; c++) {
            double v = c == y ? (opt->ykind == NN_Y_LABELS ? (double)labels[r] : value_at(yv, dt, r))
                              : value_at(x, dt, k++);
            len += (size_t)snprintf(text + len, cap - len, "%.*g%s", dt == AG_F32 ? 9 : 17, v,
                                    c + 1 < t->cols ? "," : "\n");
        }
    }
    fuzz_file file;
    if (fuzz_file_make(&file, (const uint8_t *)text, len) != 0) {
        free(text);
        return;
    }
    nn_csv_options again = *opt;
    again.header = 0;
    nn_dataset *back = NULL;
    char err[512];
    if (nn_csv_load(file.path, &again, dt, hook_alloc, h, &back, err, sizeof err) != AG_OK)
        abort();   /* what was read must read again */
    size_t xs = (size_t)(n * features);
    if (nn_dataset_len(back) != n || nn_dataset_x_shape(back)[0] != features)
        abort();
    for (size_t i = 0; i < xs; i++)
        if (!same_bits(value_at(x, dt, (int64_t)i), value_at(nn_dataset_x(back), dt, (int64_t)i)))
            abort();
    for (int64_t r = 0; r < n; r++) {
        if (opt->ykind == NN_Y_LABELS && labels[r] != nn_dataset_labels(back)[r])
            abort();
        if (opt->ykind == NN_Y_VALUES && !same_bits(value_at(yv, dt, r), value_at(nn_dataset_y(back), dt, r)))
            abort();
    }
    nn_dataset_free(back);
    fuzz_file_drop(&file);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    static const nn_ykind kinds[4] = {NN_Y_NONE, NN_Y_LABELS, NN_Y_VALUES, NN_Y_NONE};
    nn_csv_options opt = {
        .header = data[0] & 1,
        .ykind = kinds[(data[0] >> 1) & 3],
        .y_column = (int8_t)data[1],
    };
    ag_dtype dt = data[0] & 8 ? AG_F64 : AG_F32;
    fuzz_file file;
    if (fuzz_file_make(&file, data + 2, size - 2) != 0)
        return 0;
    ref_table t = {0};
    ref_split(data + 2, size - 2, &t);
    bool accepts = reference_accepts(&t, &opt, dt);
    alloc_hooks h = hooks_counting();
    nn_dataset *ds = NULL;
    char err[512];
    ag_status s = nn_csv_load(file.path, &opt, dt, hook_alloc, &h, &ds, err, sizeof err);
    if ((s == AG_OK) != accepts)
        abort();   /* the two readers disagree on the verdict */
    if (s != AG_OK) {
        if (ds || strncmp(err, "nn_csv_load: ", 13) != 0)
            abort();
    } else {
        if (!ds || err[0])
            abort();
        check_values(ds, &t, &opt, dt);
        round_trip(ds, &t, &opt, dt, &h);
        nn_dataset_free(ds);
    }
    if (h.live != 0 || h.bad_osize != 0)
        abort();
    free(t.fields);
    fuzz_file_drop(&file);
    return 0;
}
