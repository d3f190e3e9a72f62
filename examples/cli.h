/*
** cli.h: the command-line helpers the examples share: numbers read with a
** range check, and a message naming the program, the option and the value
** when they are wrong, so that every example fails the same clear way.
*/
#ifndef EXAMPLES_CLI_H
#define EXAMPLES_CLI_H

/* Parses 'text', the value of option 'opt', as an integer in [lo, hi] into
** '*out'. Returns 0, or -1 after printing "prog: opt: 'text' is not an
** integer in lo..hi" to stderr (leaving '*out' alone). */
int cli_long(const char *prog, const char *opt, const char *text, long lo, long hi, long *out);
/* The same for a real number in [lo, hi]; NaN never passes. */
int cli_double(const char *prog, const char *opt, const char *text, double lo, double hi,
               double *out);
/* The value after option argv[*i], advancing *i; NULL (after printing
** "prog: opt needs a value") when argv[*i] is the last argument. */
const char *cli_value(const char *prog, int argc, char **argv, int *i);

#endif
