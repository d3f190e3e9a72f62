/*
** parse.c: a recursive-descent parser for agx expressions (grammar in
** parse.h). The first error wins and names its column; recursion is bounded
** by AGX_MAX_DEPTH, so no input can exhaust the stack.
*/
#include "parse.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_NUMBER_TEXT = 400 };

static const char *const FUNC_NAMES[AGX_FUNC_COUNT] = {
    [AGX_EXP] = "exp",   [AGX_LOG] = "log",   [AGX_SQRT] = "sqrt",
    [AGX_ABS] = "abs",   [AGX_SIN] = "sin",   [AGX_COS] = "cos",
    [AGX_TANH] = "tanh", [AGX_SIGMOID] = "sigmoid", [AGX_RELU] = "relu",
    [AGX_SOFTPLUS] = "softplus", [AGX_ERF] = "erf", [AGX_ATAN] = "atan",
    [AGX_LOG1P] = "log1p", [AGX_EXPM1] = "expm1", [AGX_ATAN2] = "atan2",
};

#define KNOWN_FUNCS "exp log sqrt abs sin cos tanh sigmoid relu softplus erf atan log1p expm1 atan2"

int agx_func_arity(agx_func f) { return f == AGX_ATAN2 ? 2 : 1; }

const char *agx_func_name(agx_func f)
{
    return (unsigned)f < AGX_FUNC_COUNT ? FUNC_NAMES[f] : "?";
}

int agx_column(const char *src, size_t offset)
{
    int col = 1;
    for (size_t i = 0; i < offset && src[i]; i++)
        if (((unsigned char)src[i] & 0xC0) != 0x80)
            col++;
    return col;
}

/* ---------------------------------------------------------------- lexer */

typedef enum tok_kind {
    T_END, T_NUM, T_NAME, T_PLUS, T_MINUS, T_STAR, T_SLASH, T_CARET, T_LPAREN, T_RPAREN,
    T_EQ, T_SEMI, T_COMMA
} tok_kind;

typedef struct token {
    tok_kind kind;
    size_t pos, len;    /* bytes of src */
    double num;
} token;

typedef struct parser {
    const char *src;
    size_t pos;         /* where the next token starts looking */
    token tok;          /* the current token */
    agx_program *p;
    agx_error *err;
    int depth;
    int binding;        /* the name the current statement binds, or -1 */
    bool failed;
    size_t col_pos;     /* a byte offset whose column is known... */
    int col;            /* ...and that column, so columns cost O(1) as parsing moves on */
} parser;

/* The column of byte 'pos', counted from the last one asked for, which is
** always near: parsing moves forward. */
static int column(parser *ps, size_t pos)
{
    while (ps->col_pos > pos)   /* an operator, just before its right operand */
        if (((unsigned char)ps->src[--ps->col_pos] & 0xC0) != 0x80)
            ps->col--;
    for (; ps->col_pos < pos && ps->src[ps->col_pos]; ps->col_pos++)
        if (((unsigned char)ps->src[ps->col_pos] & 0xC0) != 0x80)
            ps->col++;
    return ps->col;
}

static int fail(parser *ps, size_t pos, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int fail(parser *ps, size_t pos, const char *fmt, ...)
{
    if (ps->failed)
        return -1;
    ps->failed = true;
    ps->err->col = agx_column(ps->src, pos);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err->msg, sizeof ps->err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

/* Bytes of the UTF-8 character at s, or 0 when it is not well formed. */
static int utf8_len(const unsigned char *s)
{
    int n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (s[0] >= 0xF5)
        n = 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

static int lex_number(parser *ps, size_t start)
{
    const char *s = ps->src;
    size_t i = start;
    if (s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X'))
        return fail(ps, start, "hex numbers are not read: write the number in decimal");
    while (is_digit(s[i]))
        i++;
    if (s[i] == '.') {
        i++;
        while (is_digit(s[i]))
            i++;
    }
    if (s[i] == 'e' || s[i] == 'E') {
        size_t e = i++;
        if (s[i] == '+' || s[i] == '-')
            i++;
        if (!is_digit(s[i]))
            return fail(ps, e, "the exponent of '%.*s' has no digits", (int)(i - start), s + start);
        while (is_digit(s[i]))
            i++;
    }
    size_t len = i - start;
    if (len > MAX_NUMBER_TEXT)
        return fail(ps, start, "a number of %zu characters is too long", len);
    char text[MAX_NUMBER_TEXT + 1];
    memcpy(text, s + start, len);
    text[len] = '\0';
    double v = strtod(text, NULL);
    if (v > 1.7976931348623157e308)
        return fail(ps, start, "the number '%s' is too large for a double", text);
    ps->tok = (token){T_NUM, start, len, v};
    ps->pos = i;
    return 0;
}

agx_number_status agx_read_number(const char *text, double *out, size_t *bad)
{
    size_t i = 0, digits = 0;
    if (text[i] == '+' || text[i] == '-')
        i++;
    for (; is_digit(text[i]); i++)
        digits++;
    if (text[i] == '.')
        for (i++; is_digit(text[i]); i++)
            digits++;
    if (digits == 0) {
        *bad = text[0] == '+' || text[0] == '-' ? 1 : 0;
        return AGX_NUMBER_BAD;
    }
    if (text[i] == 'e' || text[i] == 'E') {
        size_t e = i + 1;
        if (text[e] == '+' || text[e] == '-')
            e++;
        if (!is_digit(text[e])) {
            *bad = e;
            return AGX_NUMBER_BAD;
        }
        while (is_digit(text[e]))
            e++;
        i = e;
    }
    if (text[i] != '\0') {
        *bad = i;
        return AGX_NUMBER_BAD;
    }
    /* The grammar above is strtod's decimal form, so it stops where we did. */
    double v = strtod(text, NULL);
    if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308)
        return AGX_NUMBER_RANGE;
    *out = v;
    return AGX_NUMBER_OK;
}

/* Reads the next token into ps->tok. */
static int next(parser *ps)
{
    if (ps->failed)
        return -1;
    const char *s = ps->src;
    size_t i = ps->pos;
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
        i++;
    char c = s[i];
    if (c == '\0') {
        ps->tok = (token){T_END, i, 0, 0};
        ps->pos = i;
        return 0;
    }
    if (is_digit(c) || (c == '.' && is_digit(s[i + 1])))
        return lex_number(ps, i);
    if (is_name_start(c)) {
        size_t j = i;
        while (is_name_char(s[j]))
            j++;
        if (j - i > AGX_NAME_MAX)
            return fail(ps, i, "the name '%.16s...' is longer than %d characters", s + i,
                        AGX_NAME_MAX);
        ps->tok = (token){T_NAME, i, j - i, 0};
        ps->pos = j;
        return 0;
    }
    static const char singles[] = "+-*/^()=;,";
    static const tok_kind kinds[] = {T_PLUS,   T_MINUS,  T_STAR, T_SLASH, T_CARET,
                                     T_LPAREN, T_RPAREN, T_EQ,   T_SEMI,  T_COMMA};
    const char *hit = strchr(singles, c);
    if (hit) {
        if (c == '*' && s[i + 1] == '*')
            return fail(ps, i, "'**' is not an operator: write ^ for powers");
        ps->tok = (token){kinds[hit - singles], i, 1, 0};
        ps->pos = i + 1;
        return 0;
    }
    unsigned char u = (unsigned char)c;
    if (u < 0x20 || u == 0x7F)
        return fail(ps, i, "unexpected control character 0x%02X", u);
    if (u < 0x80)
        return fail(ps, i, "unexpected character '%c'", c);
    int n = utf8_len((const unsigned char *)s + i);
    if (n)
        return fail(ps, i, "unexpected character '%.*s' (names are ASCII letters, digits and _)",
                    n, s + i);
    return fail(ps, i, "unexpected byte 0x%02X (not UTF-8 text)", u);
}

/* The current token, quoted, for messages. */
static const char *describe(const parser *ps, char *buf, size_t n)
{
    if (ps->tok.kind == T_END)
        return "the end";
    size_t len = ps->tok.len > 24 ? 24 : ps->tok.len;
    snprintf(buf, n, "'%.*s%s'", (int)len, ps->src + ps->tok.pos, ps->tok.len > 24 ? "..." : "");
    return buf;
}

/* ------------------------------------------------------------ program */

static bool grow(parser *ps, void **arr, int *cap, int n, size_t size)
{
    if (n < *cap)
        return true;
    int cap2 = *cap ? *cap * 2 : 16;
    void *a = cap2 > 0 && (size_t)cap2 < SIZE_MAX / size ? realloc(*arr, (size_t)cap2 * size) : NULL;
    if (!a) {
        fail(ps, ps->tok.pos, "out of memory");
        return false;
    }
    *arr = a;
    *cap = cap2;
    return true;
}

static int add_node(parser *ps, agx_kind kind, size_t pos, int a, int b)
{
    agx_program *p = ps->p;
    if (ps->failed || !grow(ps, (void **)&p->nodes, &p->cap_nodes, p->n_nodes, sizeof *p->nodes))
        return -1;
    agx_node *n = &p->nodes[p->n_nodes];
    *n = (agx_node){kind, column(ps, pos), a, b, 0, -1, AGX_EXP};
    return p->n_nodes++;
}

int agx_find_name(const agx_program *p, const char *text)
{
    for (int i = 0; i < p->n_names; i++)
        if (!strcmp(p->names[i].text, text))
            return i;
    return -1;
}

/* The index of the name the current token spells, added on first sight. */
static int intern(parser *ps)
{
    agx_program *p = ps->p;
    char text[AGX_NAME_MAX + 1];
    memcpy(text, ps->src + ps->tok.pos, ps->tok.len);
    text[ps->tok.len] = '\0';
    int i = agx_find_name(p, text);
    if (i >= 0)
        return i;
    if (!grow(ps, (void **)&p->names, &p->cap_names, p->n_names, sizeof *p->names))
        return -1;
    agx_name *nm = &p->names[p->n_names];
    memcpy(nm->text, text, ps->tok.len + 1);
    nm->first_col = column(ps, ps->tok.pos);
    nm->bound_by = -1;
    nm->bound_col = 0;
    return p->n_names++;
}

static int func_of(const parser *ps)
{
    for (int f = 0; f < AGX_FUNC_COUNT; f++)
        if (strlen(FUNC_NAMES[f]) == ps->tok.len &&
            !memcmp(FUNC_NAMES[f], ps->src + ps->tok.pos, ps->tok.len))
            return f;
    return -1;
}

/* ------------------------------------------------------------- grammar */

static int expression(parser *ps);
static int unary(parser *ps);

static int call(parser *ps, agx_func f)
{
    size_t at = ps->tok.pos;
    const char *name = FUNC_NAMES[f];
    if (next(ps) < 0)
        return -1;
    if (ps->tok.kind != T_LPAREN)
        return fail(ps, at, "'%s' is a function: write %s(...)", name, name);
    if (next(ps) < 0)
        return -1;
    int arity = agx_func_arity(f);
    if (ps->tok.kind == T_RPAREN)
        return arity == 1 ? fail(ps, ps->tok.pos, "%s() needs an argument", name)
                          : fail(ps, ps->tok.pos, "%s() needs %d arguments", name, arity);
    int args[2] = {-1, -1};
    for (int i = 0; i < arity; i++) {
        if (i > 0) {
            char buf[40];
            if (ps->tok.kind == T_RPAREN)
                return fail(ps, ps->tok.pos, "%s takes %d arguments, found %d", name, arity, i);
            if (ps->tok.kind != T_COMMA)
                return fail(ps, ps->tok.pos, "expected ',' or ')' in '%s(' at column %d, found %s",
                            name, column(ps, at), describe(ps, buf, sizeof buf));
            if (next(ps) < 0)
                return -1;
        }
        if ((args[i] = expression(ps)) < 0)
            return -1;
    }
    if (ps->tok.kind == T_COMMA)
        return arity == 1 ? fail(ps, ps->tok.pos, "%s takes one argument", name)
                          : fail(ps, ps->tok.pos, "%s takes %d arguments, found more", name, arity);
    if (ps->tok.kind != T_RPAREN) {
        char buf[40];
        return fail(ps, ps->tok.pos, "expected ')' to close '%s(' at column %d, found %s", name,
                    column(ps, at), describe(ps, buf, sizeof buf));
    }
    int n = add_node(ps, AGX_CALL, at, args[0], args[1]);
    if (n >= 0)
        ps->p->nodes[n].func = f;
    return next(ps) < 0 ? -1 : n;
}

static int primary(parser *ps)
{
    char buf[40];
    size_t at = ps->tok.pos;
    switch (ps->tok.kind) {
    case T_NUM: {
        int n = add_node(ps, AGX_NUM, at, -1, -1);
        if (n >= 0)
            ps->p->nodes[n].num = ps->tok.num;
        return n < 0 || next(ps) < 0 ? -1 : n;
    }
    case T_NAME: {
        int f = func_of(ps);
        if (f >= 0)
            return call(ps, (agx_func)f);
        int name = intern(ps);
        if (name < 0 || next(ps) < 0)
            return -1;
        if (ps->tok.kind == T_LPAREN)
            return fail(ps, at, "unknown function '%s' (known: " KNOWN_FUNCS ")",
                        ps->p->names[name].text);
        if (name == ps->binding)
            return fail(ps, at, "'%s' is used in its own definition", ps->p->names[name].text);
        int n = add_node(ps, AGX_NAME, at, -1, -1);
        if (n >= 0)
            ps->p->nodes[n].name = name;
        return n;
    }
    case T_LPAREN: {
        if (next(ps) < 0)
            return -1;
        int a = expression(ps);
        if (a < 0)
            return -1;
        if (ps->tok.kind != T_RPAREN)
            return fail(ps, ps->tok.pos, "expected ')' to close the '(' at column %d, found %s",
                        column(ps, at), describe(ps, buf, sizeof buf));
        return next(ps) < 0 ? -1 : a;
    }
    default:
        return fail(ps, at, "expected a number, a name or '(', found %s",
                    describe(ps, buf, sizeof buf));
    }
}

static int power(parser *ps)
{
    int a = primary(ps);
    if (a < 0 || ps->tok.kind != T_CARET)
        return a;
    size_t at = ps->tok.pos;
    if (next(ps) < 0)
        return -1;
    int b = unary(ps);
    return b < 0 ? -1 : add_node(ps, AGX_POW, at, a, b);
}

static int unary(parser *ps)
{
    if (++ps->depth > AGX_MAX_DEPTH)
        return fail(ps, ps->tok.pos, "the expression is nested more than %d deep", AGX_MAX_DEPTH);
    int r;
    if (ps->tok.kind == T_MINUS || ps->tok.kind == T_PLUS) {
        bool minus = ps->tok.kind == T_MINUS;
        size_t at = ps->tok.pos;
        int a = next(ps) < 0 ? -1 : unary(ps);
        if (a < 0 || !minus) {
            r = a;
        } else if (ps->p->nodes[a].kind == AGX_NUM) {
            /* A negative literal is a constant, not an op on one. */
            ps->p->nodes[a].num = -ps->p->nodes[a].num;
            ps->p->nodes[a].col = column(ps, at);
            r = a;
        } else {
            r = add_node(ps, AGX_NEG, at, a, -1);
        }
    } else {
        r = power(ps);
    }
    ps->depth--;
    return r;
}

static int term(parser *ps)
{
    int a = unary(ps);
    while (a >= 0 && (ps->tok.kind == T_STAR || ps->tok.kind == T_SLASH)) {
        agx_kind k = ps->tok.kind == T_STAR ? AGX_MUL : AGX_DIV;
        size_t at = ps->tok.pos;
        int b = next(ps) < 0 ? -1 : unary(ps);
        a = b < 0 ? -1 : add_node(ps, k, at, a, b);
    }
    return a;
}

static int expression(parser *ps)
{
    int a = term(ps);
    while (a >= 0 && (ps->tok.kind == T_PLUS || ps->tok.kind == T_MINUS)) {
        agx_kind k = ps->tok.kind == T_PLUS ? AGX_ADD : AGX_SUB;
        size_t at = ps->tok.pos;
        int b = next(ps) < 0 ? -1 : term(ps);
        a = b < 0 ? -1 : add_node(ps, k, at, a, b);
    }
    return a;
}

/* 'name =' at the start of a statement: checks and returns the name's index,
** or -1 (with no error) when the statement is a bare expression. */
static int binding(parser *ps, bool *is_binding)
{
    *is_binding = false;
    if (ps->tok.kind != T_NAME)
        return -1;
    agx_error ignored;
    parser peek = *ps;
    peek.err = &ignored;   /* a lexing error there is met again, and reported, later */
    if (next(&peek) < 0 || peek.tok.kind != T_EQ)
        return -1;
    *is_binding = true;
    size_t at = ps->tok.pos;
    if (func_of(ps) >= 0)
        return fail(ps, at, "'%.*s' is a function and cannot be bound", (int)ps->tok.len,
                    ps->src + at);
    int had = ps->p->n_names;
    int name = intern(ps);
    if (name < 0)
        return -1;
    agx_name *nm = &ps->p->names[name];
    if (nm->bound_by >= 0)
        return fail(ps, at, "'%s' is bound twice (first at column %d)", nm->text, nm->bound_col);
    if (name < had)
        return fail(ps, at, "'%s' is used at column %d before it is bound here", nm->text,
                    nm->first_col);
    nm->bound_col = column(ps, at);
    if (next(ps) < 0 || next(ps) < 0)   /* the name, then '=' */
        return -1;
    return name;
}

static int statement(parser *ps)
{
    agx_program *p = ps->p;
    size_t at = ps->tok.pos;
    bool is_binding;
    int name = binding(ps, &is_binding);
    if (is_binding && name < 0)
        return -1;
    ps->binding = name;
    int first = p->n_nodes;
    int root = expression(ps);
    ps->binding = -1;
    if (root < 0)
        return -1;
    if (!grow(ps, (void **)&p->stmts, &p->cap_stmts, p->n_stmts, sizeof *p->stmts))
        return -1;
    if (name >= 0)
        p->names[name].bound_by = p->n_stmts;
    p->stmts[p->n_stmts++] = (agx_stmt){name, column(ps, at), first, root};
    return 0;
}

/* After a statement: ';', the end, or an error that says what is missing. */
static int after_statement(parser *ps)
{
    char buf[40];
    size_t at = ps->tok.pos;
    switch (ps->tok.kind) {
    case T_SEMI:
    case T_END:
        return 0;
    case T_NUM:
    case T_NAME:
    case T_LPAREN:
        return fail(ps, at, "missing operator before %s (write 2*x, not 2x)",
                    describe(ps, buf, sizeof buf));
    case T_RPAREN:
        return fail(ps, at, "')' has no '(' to close");
    case T_EQ:
        return fail(ps, at, "'=' can only follow a name at the start of a statement");
    default:
        return fail(ps, at, "unexpected %s", describe(ps, buf, sizeof buf));
    }
}

int agx_parse(const char *src, agx_program *p, agx_error *err)
{
    memset(p, 0, sizeof *p);
    agx_error scratch;
    if (!err)
        err = &scratch;
    err->col = 0;
    err->msg[0] = '\0';
    parser ps = {src ? src : "", 0, {T_END, 0, 0, 0}, p, err, 0, -1, false, 0, 1};
    if (next(&ps) == 0) {
        while (ps.tok.kind != T_END) {
            if (ps.tok.kind == T_SEMI) {
                fail(&ps, ps.tok.pos, p->n_stmts ? "empty statement before ';'" : "empty expression");
                break;
            }
            if (p->n_stmts > 0 && p->stmts[p->n_stmts - 1].name < 0) {
                const agx_stmt *prev = &p->stmts[p->n_stmts - 1];
                fail(&ps, 0, "only the last statement can be a bare expression: bind the one at "
                             "column %d to a name (name = ...)", prev->col);
                err->col = prev->col;
                break;
            }
            if (statement(&ps) < 0 || after_statement(&ps) < 0)
                break;
            if (ps.tok.kind == T_SEMI && next(&ps) < 0)
                break;
        }
        if (!ps.failed && p->n_stmts == 0)
            fail(&ps, ps.tok.pos, "empty expression");
    }
    if (ps.failed) {
        agx_program_free(p);
        return -1;
    }
    return 0;
}

void agx_program_free(agx_program *p)
{
    free(p->nodes);
    free(p->stmts);
    free(p->names);
    memset(p, 0, sizeof *p);
}
