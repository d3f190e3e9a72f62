/*
** cli.c: number parsing with range checks for the examples' options.
*/
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_long(const char *prog, const char *opt, const char *text, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < lo || v > hi) {
        fprintf(stderr, "%s: %s: '%s' is not an integer in %ld..%ld\n", prog, opt, text, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_double(const char *prog, const char *opt, const char *text, double lo, double hi,
               double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    /* '!(v >= lo)' also rejects NaN. */
    if (errno || end == text || *end || !(v >= lo) || !(v <= hi)) {
        fprintf(stderr, "%s: %s: '%s' is not a number in [%g, %g]\n", prog, opt, text, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

const char *cli_value(const char *prog, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: %s needs a value (try --help)\n", prog, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}
