/*
** bench.c: the benchmark program's driver: options, the table of rows
** (ours beside a reference measured in the same run, with the ratio), its
** JSON form, and the helper that runs the PyTorch references in Python.
**
**     bench [--json FILE] [--quick] [--repeat N] [--only SECTION] [--python PATH]
*/
#define _POSIX_C_SOURCE 200809L

#include "bench.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_add(bench_table *t, const char *name, double ours, double reference,
               const char *unit, bench_sense sense, const char *note)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 32;
        bench_row *rows = realloc(t->rows, cap * sizeof *rows);
        if (!rows) {
            fprintf(stderr, "bench: out of memory\n");
            exit(1);
        }
        t->rows = rows;
        t->cap = cap;
    }
    bench_row *r = &t->rows[t->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->ours = ours;
    r->reference = reference;
    snprintf(r->unit, sizeof r->unit, "%s", unit);
    r->sense = sense;
    snprintf(r->note, sizeof r->note, "%s", note ? note : "");
    /* Rows appear as they are measured, so a long run shows progress. */
    fprintf(stderr, "  %-44s %10.4g %10.4g %s\n", r->name, r->ours, r->reference, r->unit);
}

double bench_ratio(const bench_row *r)
{
    if (isnan(r->reference) || isnan(r->ours) || r->ours <= 0 || r->reference <= 0)
        return NAN;
    return r->sense == BENCH_HIGHER_IS_BETTER ? r->ours / r->reference : r->reference / r->ours;
}

static void print_number(FILE *f, double v)
{
    if (isnan(v))
        fprintf(f, " %11s", "-");
    else if (fabs(v) >= 1e5 || (fabs(v) < 1e-2 && v != 0))
        fprintf(f, " %11.3e", v);
    else
        fprintf(f, " %11.3f", v);
}

static void print_table(FILE *f, const bench_table *t)
{
    fprintf(f, "\n%-44s %11s %11s %11s  %-10s %s\n", "benchmark", "ours", "reference", "ratio",
            "unit", "note");
    for (size_t i = 0; i < t->n; i++) {
        const bench_row *r = &t->rows[i];
        fprintf(f, "%-44s", r->name);
        print_number(f, r->ours);
        print_number(f, r->reference);
        print_number(f, bench_ratio(r));
        fprintf(f, "  %-10s %s\n", r->unit, r->note);
    }
    fprintf(f, "\nratio > 1: ours is better (a rate divided by the reference's, or the "
               "reference's cost divided by ours)\n");
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_number(FILE *f, double v)
{
    if (isnan(v) || isinf(v))
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

static int write_json(const char *path, const bench_table *t)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "bench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fputs("[\n", f);
    for (size_t i = 0; i < t->n; i++) {
        const bench_row *r = &t->rows[i];
        fputs("  {\"name\": ", f);
        json_string(f, r->name);
        fputs(", \"ours\": ", f);
        json_number(f, r->ours);
        fputs(", \"reference\": ", f);
        json_number(f, r->reference);
        fputs(", \"unit\": ", f);
        json_string(f, r->unit);
        fputs(", \"ratio\": ", f);
        json_number(f, bench_ratio(r));
        fputs(", \"note\": ", f);
        json_string(f, r->note);
        fprintf(f, "}%s\n", i + 1 < t->n ? "," : "");
    }
    fputs("]\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, "bench: error writing %s\n", path);
        return 1;
    }
    return 0;
}

char *bench_python(const bench_options *o, const char *script, const char *args, char *why,
                   size_t whylen)
{
    char path[] = "/tmp/ag_bench_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(why, whylen, "cannot make a temporary file: %s", strerror(errno));
        return NULL;
    }
    size_t len = strlen(script);
    bool written = write(fd, script, len) == (ssize_t)len;
    close(fd);
    char *out = NULL;
    if (!written) {
        snprintf(why, whylen, "cannot write %s", path);
        goto done;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s %s 2>/dev/null", o->python, path, args ? args : "");
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, whylen, "cannot run %s", o->python);
        goto done;
    }
    size_t cap = 4096, n = 0;
    out = malloc(cap);
    for (int c; out && (c = fgetc(p)) != EOF;) {
        if (n + 1 == cap) {
            char *bigger = realloc(out, cap *= 2);
            if (!bigger) {
                free(out);
                out = NULL;
                break;
            }
            out = bigger;
        }
        out[n++] = (char)c;
    }
    int status = pclose(p);
    if (out)
        out[n] = '\0';
    if (status != 0 || !out) {
        snprintf(why, whylen, "%s failed (status %d)", o->python, status);
        free(out);
        out = NULL;
    }
done:
    remove(path);
    return out;
}

bool bench_have_torch(const bench_options *o)
{
    char why[128];
    char *out = bench_python(o, "import torch\nprint('ok')\n", NULL, why, sizeof why);
    bool ok = out && strncmp(out, "ok", 2) == 0;
    free(out);
    return ok;
}

static void usage(FILE *f)
{
    fputs("usage: bench [--json FILE] [--quick] [--repeat N]\n"
          "             [--only matmul|scalar|replay|conv|train|cnn|parallel] [--python PATH]\n"
          "Prints one table: each row ours beside a reference measured in the same run.\n"
          "  --json FILE    also write the rows as a JSON list of\n"
          "                 {name, ours, reference, unit, ratio, note}\n"
          "  --quick        fewer sizes and repetitions (a smoke run)\n"
          "  --repeat N     rounds per measurement, the best kept (default 5)\n"
          "  --only NAME    run one section (cnn: the conv section and the CNN's training\n"
          "                 rows alone)\n"
          "  --python PATH  interpreter for the PyTorch rows (default /usr/bin/python3)\n",
          f);
}

int main(int argc, char **argv)
{
    bench_options o = {.repeat = 5, .python = "/usr/bin/python3"};
    const char *json = NULL, *only = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json") && i + 1 < argc) {
            json = argv[++i];
        } else if (!strcmp(a, "--quick")) {
            o.quick = true;
            o.repeat = 2;
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            o.repeat = atoi(argv[++i]);
            if (o.repeat < 1) {
                fprintf(stderr, "bench: --repeat needs a count of 1 or more\n");
                return 2;
            }
        } else if (!strcmp(a, "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(a, "--python") && i + 1 < argc) {
            o.python = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    static const struct {
        const char *name;
        void (*run)(bench_table *, const bench_options *);
    } sections[] = {
        {"matmul", bench_matmul},
        {"scalar", bench_scalar},
        {"replay", bench_replay},
        {"conv", bench_conv},
        {"train", bench_train},
        {"parallel", bench_parallel},
    };
    /* Not a section of the whole run: a part of two of them. */
    bool cnn_only = only && !strcmp(only, "cnn");
    bench_table t = {0};
    bool ran = false;
    if (cnn_only) {
        fprintf(stderr, "bench: cnn\n");
        bench_cnn(&t, &o);
        ran = true;
    }
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        if (only && strcmp(only, sections[i].name))
            continue;
        fprintf(stderr, "bench: %s\n", sections[i].name);
        sections[i].run(&t, &o);
        ran = true;
    }
    if (!ran) {
        fprintf(stderr, "bench: no section named '%s'\n", only);
        return 2;
    }
    print_table(stdout, &t);
    int rc = json ? write_json(json, &t) : 0;
    free(t.rows);
    return rc;
}
