/*
** json.h: a strict, bounded JSON scanner (RFC 8259) for the safetensors
** header. The caller drives it by the shape it expects; it never reads past
** 'end' and decodes strings in place. Private: never installed.
*/
#ifndef NN_JSON_H
#define NN_JSON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nni_json {
    char *base, *p, *end;   /* the text, the cursor, one past the last byte */
    char msg[192];          /* the first error, "" while none */
} nni_json;

void nni_json_init(nni_json *j, char *text, size_t len);
/* Records the first error (with the cursor's byte offset); returns false. */
bool nni_json_fail(nni_json *j, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
bool nni_json_vfail(nni_json *j, const char *fmt, va_list ap);
/* Skips whitespace and returns the next byte without consuming it, or -1 at
** the end. */
int nni_json_peek(nni_json *j);
/* Skips whitespace; consumes c and returns true when it comes next. */
bool nni_json_eat(nni_json *j, char c);
/* Like eat, but a missing c is an error naming what was expected. */
bool nni_json_expect(nni_json *j, char c);
/* A string at the cursor, unescaped in place and NUL-terminated: '*s' points
** into the text, '*len' is its length in bytes (it may hold NULs from \u0000).
** Rejects invalid UTF-8, raw control characters and lone surrogates. */
bool nni_json_string(nni_json *j, char **s, size_t *len);
/* A number at the cursor that must be a non-negative integer below 2^63. */
bool nni_json_uint(nni_json *j, uint64_t *out);
/* True when only whitespace is left. */
bool nni_json_at_end(nni_json *j);

/* Length (1..4) of the valid UTF-8 sequence starting at s (n bytes
** available), or 0 when it is not one. */
size_t nni_utf8_len(const unsigned char *s, size_t n);

#endif
