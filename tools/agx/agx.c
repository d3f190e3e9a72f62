/*
** agx.c: the expression explorer. Records an expression on a tape in f64 and
** prints its value and its gradient with respect to every variable; draws
** the graph with the chain rule on every edge, and the backward pass step by
** step. With --hessian and --tangent it also prints second derivatives
** and a directional derivative, through the library's drivers (ag_hessian,
** ag_jvp). Exit status: 0 done, 1 a value or derivative is NaN or
** infinite, 2 bad input, 3 an output file could not be written.
*/
#define _POSIX_C_SOURCE 200809L
#include "eval.h"
#include "parse.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { EXIT_NONFINITE = 1, EXIT_BAD_INPUT = 2, EXIT_OUTPUT = 3 };

/* --steps writes one frame of the whole graph per backward step, so its
** output grows as the square of the expression: a 12 KB expression once
** wrote 3,000 files and 5.3 GB. Beyond either cap nothing is written. */
enum { MAX_FRAMES = 1000 };
#define MAX_FRAME_BYTES (64ll << 20)

typedef struct options {
    const char *expr;
    const char *dot;        /* --dot FILE */
    const char *html;       /* --html FILE */
    const char *steps;      /* --steps DIR */
    const char *format;     /* --format FMT, for --steps */
    int top_to_bottom, check, json, hessian;
    int n_args;             /* name=value arguments */
    char **args;
    int n_tangents;         /* --tangent NAME=V, in the order given */
    char **tangents;
} options;

static void usage(FILE *f)
{
    fputs("usage: agx [options] 'EXPRESSION' [name=value ...]\n"
          "Records EXPRESSION on an autograd tape (f64), then prints its value and its\n"
          "gradient with respect to every variable.\n"
          "\n"
          "  agx 'tanh(x1*w1 + x2*w2 + b)' x1=2 x2=0 w1=-3 w2=1 b=6.8813735870195432\n"
          "  agx 'b = ab*a; c = bc*b; d = cd*c; L = (d - 17)^2' a=3 ab=0.5 bc=1.5 cd=2\n"
          "\n"
          "Expressions: numbers (2, 0.5, 1e-3), names, + - * / ^ (^ binds tightest and\n"
          "is right-associative; -x^2 is -(x^2)), parentheses, and the functions\n"
          "exp log sqrt abs sin cos tanh sigmoid relu softplus erf atan log1p expm1 and\n"
          "atan2(y, x). Statements separated by ';' bind names to intermediate values\n"
          "(name = ...); the last is the output.\n"
          "\n"
          "options:\n"
          "  --dot FILE      write the graph with the chain rule on every edge: DOT text\n"
          "                  for .dot or .gv; .svg, .png, .pdf rendered (needs Graphviz)\n"
          "  --html FILE     write one self-contained web page that steps through the\n"
          "                  forward and backward pass (arrow keys; no Graphviz needed)\n"
          "  --steps DIR     write one frame per backward step into DIR (made if missing);\n"
          "                  refused beyond 1000 frames or 64 MB of DOT text\n"
          "  --format FMT    frames as dot (default), svg, png or pdf (needs Graphviz)\n"
          "  --tb            draw graphs top to bottom (left to right by default)\n"
          "  --check         print finite-difference gradients beside the tape's\n"
          "  --hessian       print the Hessian, the matrix of second derivatives with\n"
          "                  respect to the variables (forward over reverse mode)\n"
          "  --tangent NAME=V\n"
          "                  give variable NAME the tangent V (repeatable; the others get\n"
          "                  0) and print the directional derivative (forward mode)\n"
          "  --json          print {\"value\": V, \"grad\": {\"x\": G, ...}} (%.17g numbers;\n"
          "                  NaN, Infinity, -Infinity when not finite), with\n"
          "                  \"hessian\": {\"x\": {\"x\": H, ...}, ...} and \"jvp\": D when asked\n"
          "  --version       print agx's and the library's version\n"
          "  -h, --help      this text\n"
          "\n"
          "exit status: 0 done; 1 a value or derivative is NaN or infinite; 2 bad input;\n"
          "3 an output file could not be written\n",
          f);
}

/* ------------------------------------------------------------ messages */

/* Prints the expression with a caret under column 'col', a window of it when
** it is long; control characters are shown as '?'. */
static void show_column(const char *src, int col)
{
    enum { BEFORE = 50, AFTER = 25 };
    int first = col > BEFORE ? col - BEFORE : 1, c = 1;
    fputs("  ", stderr);
    if (first > 1)
        fputs("...", stderr);
    for (const char *s = src; *s; s++) {
        bool starts = ((unsigned char)*s & 0xC0) != 0x80;
        if (starts && s != src)
            c++;
        if (c < first)
            continue;
        if (c > col + AFTER) {
            fputs("...", stderr);
            break;
        }
        unsigned char u = (unsigned char)*s;
        fputc(u < 0x20 || u == 0x7F ? '?' : u, stderr);
    }
    fprintf(stderr, "\n  %*s^\n", col - first + (first > 1 ? 3 : 0), "");
}

static int bad_expression(const char *src, int col, const char *msg)
{
    fprintf(stderr, "agx: column %d: %s\n", col, msg);
    show_column(src, col);
    return EXIT_BAD_INPUT;
}

/* 'what' is "argument" for name=value, "--tangent" for a tangent. */
static int bad_argument(const char *what, const char *arg, int col, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int bad_argument(const char *what, const char *arg, int col, const char *fmt, ...)
{
    fprintf(stderr, "agx: %s '%s', column %d: ", what, arg, col);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_BAD_INPUT;
}

/* The shortest text that reads back as the same double. */
static const char *num(char buf[32], double v)
{
    if (isnan(v))
        return "nan";
    if (isinf(v))
        return v > 0 ? "inf" : "-inf";
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, 32, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    /* %g turns 20 into 2e+01 at one digit: keep every integer digit below 1e17. */
    double mag = fabs(v);
    int int_digits = mag >= 1 && mag < 1e17 ? (int)floor(log10(mag)) + 1 : 0;
    snprintf(buf, 32, "%.*g", prec > int_digits ? prec : int_digits, v);
    return buf;
}

static void json_num(double v)
{
    if (isnan(v))
        fputs("NaN", stdout);
    else if (isinf(v))
        fputs(v > 0 ? "Infinity" : "-Infinity", stdout);
    else
        printf("%.17g", v);
}

/* ------------------------------------------------------------ arguments */

/* "--", or "--" then a lowercase letter, letters and hyphens: an option.
** Anything else, such as the expression "-----x", is an argument; write
** "-- --x" for the expression --x. */
static bool looks_like_option(const char *a)
{
    if (strncmp(a, "--", 2) != 0 || (a[2] && !(a[2] >= 'a' && a[2] <= 'z')))
        return false;
    for (const char *c = a + 2; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || *c == '-'))
            return false;
    return true;
}

/* Options may come anywhere; after "--" everything is positional. The first
** positional argument is the expression, the others name=value. */
static int parse_options(int argc, char **argv, options *o, char **positional, char **tangents)
{
    *o = (options){0};
    o->tangents = tangents;
    o->format = "dot";
    int n = 0;
    bool options_end = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_end || !looks_like_option(a)) {
            if (!(n == 0 && !options_end && !strcmp(a, "-h")))
                positional[n++] = argv[i];
            else {
                usage(stdout);
                exit(0);
            }
            continue;
        }
        const char *tangent = NULL;
        const char **value = !strcmp(a, "--dot")       ? &o->dot
                             : !strcmp(a, "--html")    ? &o->html
                             : !strcmp(a, "--steps")   ? &o->steps
                             : !strcmp(a, "--format")  ? &o->format
                             : !strcmp(a, "--tangent") ? &tangent
                                                       : NULL;
        if (!strcmp(a, "--")) {
            options_end = true;
        } else if (!strcmp(a, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--version")) {
            printf("agx %s (libautograd %s)\n", AG_VERSION_STRING, ag_version());
            exit(0);
        } else if (value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "agx: %s needs a value\n", a);
                return EXIT_BAD_INPUT;
            }
            *value = argv[++i];
            if (value == &tangent)
                o->tangents[o->n_tangents++] = argv[i];
        } else if (!strcmp(a, "--hessian")) {
            o->hessian = 1;
        } else if (!strcmp(a, "--tb")) {
            o->top_to_bottom = 1;
        } else if (!strcmp(a, "--check")) {
            o->check = 1;
        } else if (!strcmp(a, "--json")) {
            o->json = 1;
        } else {
            fprintf(stderr, "agx: unknown option '%s' (try --help)\n", a);
            return EXIT_BAD_INPUT;
        }
    }
    if (n == 0) {
        fputs("agx: no expression given\n", stderr);
        usage(stderr);
        return EXIT_BAD_INPUT;
    }
    o->expr = positional[0];
    o->args = positional + 1;
    o->n_args = n - 1;
    return 0;
}

static bool is_name(const char *s, size_t n, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (i > 0 && c >= '0' && c <= '9');
        if (!ok) {
            *bad = i;
            return false;
        }
    }
    *bad = n;
    return n > 0 && n <= AGX_NAME_MAX;
}

/* Reads NAME=VALUE arguments (what: "argument") or --tangent values (what:
** "--tangent") into values[], checking them against the program's names:
** each a variable, given once. Lists the names read in *order; given[i]
** is set for each. */
static int read_assignments(const char *what, const char *noun, char **args, int n_args,
                            const agx_program *p, double *values, int *order, int *given)
{
    for (int k = 0; k < n_args; k++) {
        const char *arg = args[k];
        const char *eq = strchr(arg, '=');
        size_t bad;
        if (!eq)
            return bad_argument(what, arg, 1, "expected name=value");
        size_t len = (size_t)(eq - arg);
        if (!is_name(arg, len, &bad)) {
            fprintf(stderr, "agx: %s '%s', column %d: '%.*s' is not a name (a letter or _, "
                            "then letters, digits or _, at most %d in all)\n",
                    what, arg, (int)bad + 1, (int)len, arg, AGX_NAME_MAX);
            return EXIT_BAD_INPUT;
        }
        char name[AGX_NAME_MAX + 1];
        memcpy(name, arg, len);
        name[len] = '\0';
        const char *text = eq + 1;
        double v = 0;
        size_t at = 0;
        if (!*text)
            return bad_argument(what, arg, (int)len + 2, "no value after '='");
        agx_number_status ns = agx_read_number(text, &v, &at);
        if (ns == AGX_NUMBER_RANGE)
            return bad_argument(what, arg, (int)len + 2, "'%s' is out of range for a double", text);
        if (ns != AGX_NUMBER_OK)
            return bad_argument(what, arg, agx_column(arg, (size_t)(text - arg) + at),
                                "'%s' is not a number (decimal digits, an optional '.' and exponent)",
                                text);
        int i = agx_find_name(p, name);
        if (i < 0)
            return bad_argument(what, arg, 1, "the expression has no variable '%s'", name);
        if (p->names[i].bound_by >= 0) {
            fprintf(stderr, "agx: %s '%s', column 1: '%s' is bound by the expression at "
                            "column %d, so it cannot be given a %s\n",
                    what, arg, name, p->names[i].bound_col, noun);
            return EXIT_BAD_INPUT;
        }
        if (given[i])
            return bad_argument(what, arg, 1, "'%s' is given a %s twice", name, noun);
        given[i] = 1;
        values[i] = v;
        *order++ = i;
    }
    return 0;
}

/* Reads name=value arguments into values[], and --tangent ones into
** tangents[] (0 for a variable without one), checking them against the
** program's names: every variable needs a value. */
static int read_values(const options *o, const agx_program *p, double *values, int *order,
                       double *tangents)
{
    int *given = calloc(2 * ((size_t)p->n_names + 1), sizeof *given);
    int *scratch = calloc((size_t)p->n_names + 1, sizeof *scratch);
    if (!given || !scratch) {
        free(given);
        free(scratch);
        fputs("agx: out of memory\n", stderr);
        return EXIT_BAD_INPUT;
    }
    int status = read_assignments("argument", "value", o->args, o->n_args, p, values, order, given);
    for (int i = 0; i < p->n_names && !status; i++) {
        if (p->names[i].bound_by < 0 && !given[i]) {
            char msg[2 * AGX_NAME_MAX + 80];
            snprintf(msg, sizeof msg, "the variable '%s' has no value: add %s=NUMBER",
                     p->names[i].text, p->names[i].text);
            status = bad_expression(o->expr, p->names[i].first_col, msg);
        }
    }
    if (!status)
        status = read_assignments("--tangent", "tangent", o->tangents, o->n_tangents, p, tangents,
                                  scratch, given + p->n_names + 1);
    free(given);
    free(scratch);
    return status;
}

static bool render_format(const char *f)
{
    return !strcmp(f, "svg") || !strcmp(f, "png") || !strcmp(f, "pdf");
}

/* Checks --dot and --steps before any work is done. */
static int check_outputs(const options *o)
{
    if (o->dot) {
        const char *ext = strrchr(o->dot, '.');
        ext = ext ? ext + 1 : "";
        bool text = !strcmp(ext, "dot") || !strcmp(ext, "gv");
        if (!text && !render_format(ext)) {
            fprintf(stderr, "agx: --dot %s: the name must end in .dot, .gv, .svg, .png or .pdf\n",
                    o->dot);
            return EXIT_BAD_INPUT;
        }
        if (!text && !ag_dot_can_render()) {
            fprintf(stderr, "agx: --dot %s: pictures need Graphviz's dot program, which this "
                            "agx cannot run (Debian: apt-get install graphviz); write a .dot "
                            "file instead\n", o->dot);
            return EXIT_BAD_INPUT;
        }
    }
    if (strcmp(o->format, "dot") && !render_format(o->format)) {
        fprintf(stderr, "agx: --format %s: use dot, svg, png or pdf\n", o->format);
        return EXIT_BAD_INPUT;
    }
    if (o->steps && strcmp(o->format, "dot") && !ag_dot_can_render()) {
        fprintf(stderr, "agx: --format %s: pictures need Graphviz's dot program, which this "
                        "agx cannot run (Debian: apt-get install graphviz); use --format dot\n",
                o->format);
        return EXIT_BAD_INPUT;
    }
    return 0;
}

/* ------------------------------------------------------------- results */

/* Per name (variables and bound names alike): its value, its gradient, and
** with --check the finite-difference estimate. */
typedef struct result {
    double value;           /* the output's */
    double *val, *grad, *numeric;
    bool *has_grad;
    const int *order;       /* names in the order of the table: variables as given */
    int n_order;
    double *hess;           /* --hessian: n_order x n_order, in the order of the table */
    double jvp;             /* --tangent: the directional derivative */
} result;

/* Lists the rows of a table: the variables in the order they were given,
** or the intermediate names in the order they are bound (not the output). */
static int rows(const agx_program *p, const result *r, bool variables, int *out)
{
    int n = 0;
    if (variables) {
        for (int k = 0; k < r->n_order; k++)
            out[n++] = r->order[k];
        return n;
    }
    for (int s = 0; s + 1 < p->n_stmts; s++)
        if (p->stmts[s].name >= 0)
            out[n++] = p->stmts[s].name;
    return n;
}

static void print_table(const options *o, const agx_program *p, const result *r, bool variables,
                        int *row)
{
    int n_rows = rows(p, r, variables, row);
    if (n_rows == 0)
        return;
    int wn = variables ? 8 : 12, wv = 5, wg = 8;
    char b[4][32];
    for (int k = 0; k < n_rows; k++) {
        int i = row[k];
        int n = (int)strlen(p->names[i].text), v = (int)strlen(num(b[0], r->val[i]));
        int g = r->has_grad[i] ? (int)strlen(num(b[1], r->grad[i])) : 10;
        wn = n > wn ? n : wn;
        wv = v > wv ? v : wv;
        wg = g > wg ? g : wg;
    }
    bool check = o->check && variables;
    printf("\n%-*s  %-*s  %-*s", wn, variables ? "variable" : "intermediate", wv, "value",
           check ? wg : 0, "gradient");
    printf(check ? "  %-23s  %s\n" : "\n", "finite difference", "difference");
    for (int k = 0; k < n_rows; k++) {
        int i = row[k];
        const char *g = r->has_grad[i] ? num(b[1], r->grad[i]) : "(constant)";
        printf("%-*s  %-*s  %-*s", wn, p->names[i].text, wv, num(b[0], r->val[i]),
               check ? wg : 0, g);
        if (check)
            printf("  %-23s  %s", num(b[2], r->numeric[i]),
                   num(b[3], fabs(r->numeric[i] - r->grad[i])));
        printf("\n");
    }
}

/* --hessian's table: a row and a column per variable, as given. */
static void print_hessian(const agx_program *p, const result *r)
{
    int n = r->n_order;
    char b[32];
    int w0 = 7;   /* "hessian" */
    for (int k = 0; k < n; k++) {
        int len = (int)strlen(p->names[r->order[k]].text);
        w0 = len > w0 ? len : w0;
    }
    printf("\n%-*s", w0, "hessian");
    int *w = calloc((size_t)n + 1, sizeof *w);
    if (!w)
        return;
    for (int k = 0; k < n; k++) {
        w[k] = (int)strlen(p->names[r->order[k]].text);
        for (int i = 0; i < n; i++) {
            int len = (int)strlen(num(b, r->hess[i * n + k]));
            w[k] = len > w[k] ? len : w[k];
        }
        printf("  %-*s", k + 1 < n ? w[k] : 0, p->names[r->order[k]].text);
    }
    printf("\n");
    for (int i = 0; i < n; i++) {
        printf("%-*s", w0, p->names[r->order[i]].text);
        for (int k = 0; k < n; k++)
            printf("  %-*s", k + 1 < n ? w[k] : 0, num(b, r->hess[i * n + k]));
        printf("\n");
    }
    free(w);
}

/* --tangent's line, naming the direction as the arguments gave it. */
static void print_jvp(const options *o, const result *r)
{
    char b[32];
    printf("\ndirectional derivative (forward mode) along ");
    for (int k = 0; k < o->n_tangents; k++)
        printf("%s%s", k ? ", " : "", o->tangents[k]);
    printf(": %s\n", num(b, r->jvp));
}

static void print_json(const options *o, const agx_program *p, const result *r)
{
    printf("{\"value\": ");
    json_num(r->value);
    for (int pass = 0; pass < (o->check ? 2 : 1); pass++) {
        printf(pass ? ", \"numeric\": {" : ", \"grad\": {");
        const char *sep = "";
        for (int k = 0; k < r->n_order; k++) {
            int i = r->order[k];
            printf("%s\"%s\": ", sep, p->names[i].text);
            json_num(pass ? r->numeric[i] : r->grad[i]);
            sep = ", ";
        }
        printf("}");
    }
    if (o->hessian) {
        printf(", \"hessian\": {");
        for (int i = 0; i < r->n_order; i++) {
            printf("%s\"%s\": {", i ? ", " : "", p->names[r->order[i]].text);
            for (int k = 0; k < r->n_order; k++) {
                printf("%s\"%s\": ", k ? ", " : "", p->names[r->order[k]].text);
                json_num(r->hess[i * r->n_order + k]);
            }
            printf("}");
        }
        printf("}");
    }
    if (o->n_tangents) {
        printf(", \"jvp\": ");
        json_num(r->jvp);
    }
    printf("}\n");
}

/* The program as a drivers' callback (ag_fn): x[k] is the k-th variable
** of the table, the order the command line gave them. */
typedef struct program_call {
    const agx_program *p;
    const int *order;
    int n_order;
    ag_tensor **inputs;     /* per name of the program */
} program_call;

static ag_tensor *program_fn(ag_tape *t, ag_tensor *const *x, void *ud)
{
    program_call *c = ud;
    for (int k = 0; k < c->n_order; k++)
        c->inputs[c->order[k]] = x[k];
    return agx_record_inputs(t, c->p, c->inputs);
}

/* --hessian (ag_hessian: forward over reverse) and --tangent (ag_jvp:
** forward mode) on a tape of their own, so that the graphs drawn from the
** main tape hold the expression alone. 0, or EXIT_OUTPUT when the library
** fails (its message said). */
static int drive(const options *o, const agx_program *p, const double *values,
                 const double *tangents, result *r)
{
    int n = r->n_order, status = 0;
    ag_tape *t = ag_tape_new();
    ag_tensor **x = calloc((size_t)n + 1, sizeof *x), **v = calloc((size_t)n + 1, sizeof *v);
    ag_tensor **h = calloc((size_t)n * (size_t)n + 1, sizeof *h);
    program_call c = {p, r->order, n, calloc((size_t)p->n_names + 1, sizeof(ag_tensor *))};
    if (!t || !x || !v || !h || !c.inputs) {
        fputs("agx: out of memory\n", stderr);
        status = EXIT_OUTPUT;
        goto done;
    }
    for (int k = 0; k < n; k++) {
        x[k] = ag_scalar(t, AG_F64, values[r->order[k]]);
        v[k] = ag_scalar(t, AG_F64, tangents[r->order[k]]);
    }
    if (o->hessian) {
        ag_hessian(t, program_fn, &c, n, x, NULL, h);
        for (int i = 0; i < n * n; i++)
            r->hess[i] = ag_item(h[i]);
    }
    if (o->n_tangents) {
        ag_tensor *dy = NULL;
        ag_jvp(t, program_fn, &c, n, x, v, &dy);
        r->jvp = ag_item(dy);
    }
    if (ag_tape_status(t) != AG_OK) {
        fprintf(stderr, "agx: %s\n", ag_tape_errmsg(t));
        status = EXIT_OUTPUT;
    }
done:
    ag_tape_free(t);
    free(x);
    free(v);
    free(h);
    free(c.inputs);
    return status;
}

/* Central differences with a step scaled to each variable, re-recording the
** program on a scratch tape for every evaluation. */
static void finite_differences(const agx_program *p, double *values, double *numeric)
{
    ag_tape *t = ag_tape_new();
    for (int i = 0; i < p->n_names; i++) {
        numeric[i] = NAN;
        if (p->names[i].bound_by >= 0 || !t)
            continue;
        double x = values[i], h = 6e-6 * (fabs(x) > 1 ? fabs(x) : 1);
        values[i] = x + h;
        double up = agx_value(t, p, values);
        values[i] = x - h;
        double down = agx_value(t, p, values);
        values[i] = x;
        numeric[i] = (up - down) / (2 * h);
    }
    ag_tape_free(t);
}

/* Whether --steps would pass MAX_FRAMES or MAX_FRAME_BYTES (said on stderr).
** The last frame, which shows every gradient, is the largest: frames times
** its DOT text bounds what would be written. */
static bool steps_too_large(const options *o, ag_tape *t, ag_tensor *y, const ag_dot_options *d)
{
    int64_t frames = ag_dot_steps(t, y);
    long long bytes = 0;
    if (frames > 0 && frames <= MAX_FRAMES) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        if (f) {
            ag_dot_write_step(t, y, frames - 1, d, f);
            fclose(f);
        }
        free(text);
        bytes = (long long)len * frames;
    }
    if (frames <= MAX_FRAMES && bytes <= MAX_FRAME_BYTES)
        return false;
    if (frames > MAX_FRAMES)
        fprintf(stderr, "agx: --steps %s: %lld frames pass the cap of %d; nothing was written (--dot FILE "
                        "draws the whole graph once)\n", o->steps, (long long)frames, MAX_FRAMES);
    else
        fprintf(stderr, "agx: --steps %s: %lld frames of up to %lld KB of DOT text (%lld MB in all) pass the "
                        "cap of %lld MB; nothing was written (--dot FILE draws the whole graph once)\n",
                o->steps, (long long)frames, bytes / frames >> 10, bytes >> 20, MAX_FRAME_BYTES >> 20);
    return true;
}

/* Writes --dot, --html and --steps; 0 or EXIT_OUTPUT. */
static int write_graphs(const options *o, ag_tape *t, ag_tensor *y)
{
    ag_dot_options d = {0};
    d.top_to_bottom = o->top_to_bottom;
    d.title = o->expr;
    if (o->dot && ag_dot_save(t, y, &d, o->dot) != AG_OK) {
        fprintf(stderr, "agx: --dot %s: %s\n", o->dot, ag_tape_errmsg(t));
        return EXIT_OUTPUT;
    }
    if (o->html) {
        if (ag_html_save(t, y, &d, o->html) != AG_OK) {
            fprintf(stderr, "agx: --html %s: %s\n", o->html, ag_tape_errmsg(t));
            return EXIT_OUTPUT;
        }
        if (!o->json)
            printf("\nwrote %s (open it in a browser; arrow keys step)\n", o->html);
    }
    if (o->steps) {
        if (steps_too_large(o, t, y, &d))
            return EXIT_OUTPUT;
        if (mkdir(o->steps, 0777) != 0 && errno != EEXIST) {
            fprintf(stderr, "agx: --steps %s: cannot make the directory: %s\n", o->steps,
                    strerror(errno));
            return EXIT_OUTPUT;
        }
        int64_t frames = 0;
        if (ag_dot_save_steps(t, y, &d, o->steps, o->format, &frames) != AG_OK) {
            fprintf(stderr, "agx: --steps %s: %s\n", o->steps, ag_tape_errmsg(t));
            return EXIT_OUTPUT;
        }
        if (!o->json)
            printf("\nwrote %lld frames to %s/step_*.%s\n", (long long)frames, o->steps, o->format);
    }
    return 0;
}

/* Warns about every value or gradient that is NaN or infinite. */
static int report_nonfinite(const options *o, const agx_program *p, const result *r,
                            const ag_tensor *y)
{
    int status = 0;
    char b[32];
    if (!isfinite(r->value)) {
        fprintf(stderr, "agx: the value%s%s is %s\n", ag_name(y)[0] ? " of " : "", ag_name(y),
                num(b, r->value));
        status = EXIT_NONFINITE;
    }
    for (int i = 0; i < p->n_names; i++) {
        if (r->has_grad[i] && !isfinite(r->grad[i])) {
            fprintf(stderr, "agx: the gradient with respect to %s is %s\n", p->names[i].text,
                    num(b, r->grad[i]));
            status = EXIT_NONFINITE;
        }
    }
    for (int i = 0; o->hessian && i < r->n_order; i++)
        for (int k = 0; k < r->n_order; k++) {
            double h = r->hess[i * r->n_order + k];
            if (!isfinite(h)) {
                fprintf(stderr, "agx: the second derivative with respect to %s and %s is %s\n",
                        p->names[r->order[i]].text, p->names[r->order[k]].text, num(b, h));
                status = EXIT_NONFINITE;
            }
        }
    if (o->n_tangents && !isfinite(r->jvp)) {
        fprintf(stderr, "agx: the directional derivative is %s\n", num(b, r->jvp));
        status = EXIT_NONFINITE;
    }
    return status;
}

static int run(const options *o, const agx_program *p, double *values, const double *tangents,
               const int *order, int n_order)
{
    size_t n = (size_t)p->n_names + 1;
    int *row = calloc(n, sizeof *row);
    result r;
    r.order = order;
    r.n_order = n_order;
    r.value = NAN;
    r.val = calloc(n, sizeof(double));
    r.grad = calloc(n, sizeof(double));
    r.numeric = calloc(n, sizeof(double));
    r.has_grad = calloc(n, sizeof(bool));
    r.hess = calloc((size_t)n_order * (size_t)n_order + 1, sizeof(double));
    r.jvp = NAN;
    ag_tensor **named = calloc(n, sizeof *named);
    ag_tape *t = ag_tape_new();
    int status = 0;
    if (!r.val || !r.grad || !r.numeric || !r.has_grad || !r.hess || !named || !t || !row) {
        fputs("agx: out of memory\n", stderr);
        status = EXIT_OUTPUT;
        goto done;
    }
    ag_tensor *y = agx_record(t, p, values, 1, named);
    if (ag_requires_grad_of(y))
        ag_backward(t, y);
    if (ag_tape_status(t) != AG_OK) {
        fprintf(stderr, "agx: %s\n", ag_tape_errmsg(t));
        status = EXIT_OUTPUT;
        goto done;
    }
    r.value = ag_item(y);
    for (int i = 0; i < p->n_names; i++) {
        r.val[i] = ag_item(named[i]);
        r.has_grad[i] = ag_requires_grad_of(named[i]);
        r.grad[i] = ag_grad_item(named[i]);
    }
    if (o->check)
        finite_differences(p, values, r.numeric);
    if ((o->hessian || o->n_tangents) && (status = drive(o, p, values, tangents, &r)) != 0)
        goto done;
    if (o->json) {
        print_json(o, p, &r);
    } else {
        char b[32];
        const char *name = p->stmts[p->n_stmts - 1].name >= 0 ? ag_name(y) : "value";
        printf("%s = %s\n", name, num(b, r.value));
        print_table(o, p, &r, true, row);
        print_table(o, p, &r, false, row);
        if (o->hessian && n_order > 0)
            print_hessian(p, &r);
        if (o->n_tangents)
            print_jvp(o, &r);
    }
    status = write_graphs(o, t, y);
    if (!status)
        status = report_nonfinite(o, p, &r, y);
done:
    ag_tape_free(t);
    free(named);
    free(row);
    free(r.val);
    free(r.grad);
    free(r.numeric);
    free(r.has_grad);
    free(r.hess);
    return status;
}

int main(int argc, char **argv)
{
    options o;
    char **positional = calloc((size_t)argc + 1, sizeof *positional);
    char **tangents = calloc((size_t)argc + 1, sizeof *tangents);
    if (!positional || !tangents) {
        free(positional);
        free(tangents);
        fputs("agx: out of memory\n", stderr);
        return EXIT_BAD_INPUT;
    }
    int status = parse_options(argc, argv, &o, positional, tangents);
    if (status) {
        free(positional);
        free(tangents);
        return status;
    }
    agx_program p;
    agx_error err;
    if (agx_parse(o.expr, &p, &err) != 0) {
        agx_program_free(&p);
        free(positional);
        free(tangents);
        return bad_expression(o.expr, err.col, err.msg);
    }
    double *values = calloc((size_t)p.n_names + 1, sizeof *values);
    double *tangent_values = calloc((size_t)p.n_names + 1, sizeof *tangent_values);
    int *order = calloc((size_t)p.n_names + 1, sizeof *order);
    if (!values || !tangent_values || !order) {
        free(values);
        free(tangent_values);
        free(order);
        fputs("agx: out of memory\n", stderr);
        agx_program_free(&p);
        free(positional);
        free(tangents);
        return EXIT_BAD_INPUT;
    }
    status = read_values(&o, &p, values, order, tangent_values);
    if (!status)
        status = check_outputs(&o);
    int n_order = 0;
    for (int i = 0; i < p.n_names; i++)
        n_order += p.names[i].bound_by < 0;
    if (!status && o.html && n_order == 0) {
        fprintf(stderr, "agx: --html %s: the expression has no variable, so there is no backward "
                        "pass to show\n", o.html);
        status = EXIT_BAD_INPUT;
    }
    if (!status)
        status = run(&o, &p, values, tangent_values, order, n_order);
    free(values);
    free(tangent_values);
    free(order);
    free(positional);
    free(tangents);
    agx_program_free(&p);
    fflush(stdout);
    return status;
}
