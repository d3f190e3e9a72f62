/*
** bench.h: what the sections of the benchmark program share: the table of
** rows (ours beside a reference measured in the same run), a clock, the
** options, and running a Python script for the PyTorch references.
*/
#ifndef BENCH_H
#define BENCH_H

#include <stdbool.h>
#include <stddef.h>

/* How a row's ratio reads: for a rate (GFLOP/s) ours / reference, for a
** cost (ns per op, seconds) reference / ours; above 1, ours is better. */
typedef enum bench_sense { BENCH_HIGHER_IS_BETTER, BENCH_LOWER_IS_BETTER } bench_sense;

typedef struct bench_row {
    char name[96];
    double ours;
    double reference;      /* NaN when there is no reference */
    char unit[24];
    bench_sense sense;
    char note[160];        /* why a reference is missing, or a caveat */
} bench_row;

typedef struct bench_table {
    bench_row *rows;
    size_t n, cap;
} bench_table;

typedef struct bench_options {
    bool quick;            /* fewer repetitions and sizes: a smoke run */
    int repeat;            /* rounds of each measurement; the best counts */
    const char *python;    /* interpreter for the PyTorch rows */
} bench_options;

/* Appends a row; 'reference' may be NaN (no reference) with 'note' saying why. */
void bench_add(bench_table *t, const char *name, double ours, double reference,
               const char *unit, bench_sense sense, const char *note);
/* ours / reference or reference / ours by the row's sense; NaN without a reference. */
double bench_ratio(const bench_row *r);

/* Seconds on a monotonic clock. */
double bench_now(void);

/* Writes 'script' to a temporary file, runs it with the options' Python
** and 'args', and returns its standard output (malloc'd, NUL-terminated), or
** NULL when Python or the script fails; 'why' then says what happened. */
char *bench_python(const bench_options *o, const char *script, const char *args, char *why,
                   size_t whylen);
/* True when the options' Python can import torch. */
bool bench_have_torch(const bench_options *o);

/* The sections, in the order the table shows them. */
void bench_matmul(bench_table *t, const bench_options *o);
void bench_scalar(bench_table *t, const bench_options *o);
void bench_conv(bench_table *t, const bench_options *o);
void bench_train(bench_table *t, const bench_options *o);
void bench_parallel(bench_table *t, const bench_options *o);
void bench_replay(bench_table *t, const bench_options *o);
/* The conv section and the CNN's training rows (examples/fashion_cnn's network) alone. */
void bench_cnn(bench_table *t, const bench_options *o);

#endif
