/*
** parse.h: the expression language of agx, parsed into a flat program that
** eval.c records on a tape. Pure C with no dependency, so that it can be
** unit-tested and fuzzed on its own.
**
**     program    := statement (';' statement)* [';']
**     statement  := name '=' expression | expression      (the last is the output)
**     expression := term (('+' | '-') term)*
**     term       := unary (('*' | '/') unary)*
**     unary      := ('-' | '+') unary | power
**     power      := primary ['^' unary]                   (right-associative)
**     primary    := number | name | function '(' arguments ')' | '(' expression ')'
**     arguments  := expression [',' expression]           (as many as the function takes)
**
** So -x^2 is -(x^2), 2^-1 is 0.5 and 2^3^2 is 2^9. Numbers are decimal, with
** an optional fraction and exponent (1, 2.5, .5, 1e-3). Names are
** [A-Za-z_][A-Za-z0-9_]*, at most AGX_NAME_MAX bytes; a name bound by a
** statement is an intermediate value, any other is a variable.
*/
#ifndef AGX_PARSE_H
#define AGX_PARSE_H

#include <stddef.h>

enum {
    AGX_NAME_MAX = 63,    /* the longest name the library keeps */
    AGX_MAX_DEPTH = 200,  /* nesting of parentheses, signs and powers */
};

typedef enum agx_kind {
    AGX_NUM,    /* a literal: num */
    AGX_NAME,   /* a variable or a bound name: name */
    AGX_NEG,    /* -a */
    AGX_ADD,    /* a + b */
    AGX_SUB,    /* a - b */
    AGX_MUL,    /* a * b */
    AGX_DIV,    /* a / b */
    AGX_POW,    /* a ^ b */
    AGX_CALL,   /* func(a), or func(a, b) for a function of two arguments */
} agx_kind;

typedef enum agx_func {
    AGX_EXP, AGX_LOG, AGX_SQRT, AGX_ABS, AGX_SIN, AGX_COS, AGX_TANH, AGX_SIGMOID, AGX_RELU,
    AGX_SOFTPLUS, AGX_ERF, AGX_ATAN, AGX_LOG1P, AGX_EXPM1,
    AGX_ATAN2,    /* atan2(y, x): two arguments */
    AGX_FUNC_COUNT
} agx_func;

/* One node of an expression. Operands always come before the node that uses
** them, so evaluating nodes in index order is evaluating bottom-up. */
typedef struct agx_node {
    agx_kind kind;
    int col;            /* 1-based column (in characters) of its first character */
    int a, b;           /* operand node indices, or -1 */
    double num;         /* AGX_NUM */
    int name;           /* AGX_NAME: index into the program's names */
    agx_func func;      /* AGX_CALL */
} agx_node;

typedef struct agx_stmt {
    int name;           /* the name it binds, or -1 for a bare expression */
    int col;            /* column of the statement's first character */
    int first, root;    /* its nodes are first..root; root is its value */
} agx_stmt;

typedef struct agx_name {
    char text[AGX_NAME_MAX + 1];
    int first_col;      /* where it first appears */
    int bound_by;       /* the statement that binds it, or -1 for a variable */
    int bound_col;      /* column of that binding */
} agx_name;

typedef struct agx_program {
    agx_node *nodes;
    agx_stmt *stmts;
    agx_name *names;    /* in order of first appearance */
    int n_nodes, n_stmts, n_names;
    int cap_nodes, cap_stmts, cap_names;
} agx_program;

typedef struct agx_error {
    int col;            /* 1-based column of the problem */
    char msg[256];
} agx_error;

/* Parses the NUL-terminated 'src' into 'p'. Returns 0 on success; -1 with
** 'err' filled and 'p' emptied on a syntax error, an unknown function, a
** name bound twice or used before its binding, an empty program, nesting
** deeper than AGX_MAX_DEPTH, or out of memory. Any input is safe. Free 'p'
** with agx_program_free in both cases. */
int agx_parse(const char *src, agx_program *p, agx_error *err);
void agx_program_free(agx_program *p);

/* The function's name as written ("sigmoid"). */
const char *agx_func_name(agx_func f);
/* How many arguments the function takes: 2 for atan2, else 1. */
int agx_func_arity(agx_func f);
/* The index of a name in the program, or -1. */
int agx_find_name(const agx_program *p, const char *text);
/* The 1-based column of byte 'offset' of 'src', counting UTF-8 characters. */
int agx_column(const char *src, size_t offset);

typedef enum agx_number_status {
    AGX_NUMBER_OK,
    AGX_NUMBER_BAD,     /* not a decimal number: '*bad' is the first byte that does not fit */
    AGX_NUMBER_RANGE,   /* a decimal number beyond the largest double */
} agx_number_status;

/* Reads all of the NUL-terminated 'text' as a decimal number: an optional
** sign, digits with an optional '.' (at least one digit), an optional
** exponent; any length, correctly rounded. Hex ("0x10"), "inf" and "nan",
** which strtod would take, are AGX_NUMBER_BAD. An underflow gives the
** nearest double (0 or a subnormal). */
agx_number_status agx_read_number(const char *text, double *out, size_t *bad);

#endif
