/*
** json.c: the strict JSON scanner behind the safetensors reader. Every read
** checks the cursor against 'end' first, so a malformed or truncated header
** gives an error with a byte offset, never a read out of bounds.
*/
#include "json.h"

#include <stdio.h>

void nni_json_init(nni_json *j, char *text, size_t len)
{
    j->base = j->p = text;
    j->end = text + len;
    j->msg[0] = '\0';
}

bool nni_json_vfail(nni_json *j, const char *fmt, va_list ap)
{
    if (j->msg[0])
        return false;
    int w = snprintf(j->msg, sizeof j->msg, "byte %td: ", j->p - j->base);
    if (w > 0 && (size_t)w < sizeof j->msg)
        vsnprintf(j->msg + w, sizeof j->msg - (size_t)w, fmt, ap);
    return false;
}

bool nni_json_fail(nni_json *j, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    nni_json_vfail(j, fmt, ap);
    va_end(ap);
    return false;
}

static void skip_ws(nni_json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* What the cursor shows, for messages. */
static const char *found(const nni_json *j, char *buf, size_t n)
{
    if (j->p >= j->end)
        return "the end of the header";
    unsigned char c = (unsigned char)*j->p;
    if (c >= 0x20 && c < 0x7f)
        snprintf(buf, n, "'%c'", c);
    else
        snprintf(buf, n, "byte 0x%02x", c);
    return buf;
}

int nni_json_peek(nni_json *j)
{
    skip_ws(j);
    return j->p < j->end ? (unsigned char)*j->p : -1;
}

bool nni_json_eat(nni_json *j, char c)
{
    skip_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

bool nni_json_expect(nni_json *j, char c)
{
    if (nni_json_eat(j, c))
        return true;
    char buf[16];
    return nni_json_fail(j, "expected '%c' but found %s", c, found(j, buf, sizeof buf));
}

bool nni_json_at_end(nni_json *j)
{
    skip_ws(j);
    return j->p == j->end;
}

size_t nni_utf8_len(const unsigned char *s, size_t n)
{
    if (n == 0)
        return 0;
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* no overlong forms */
        if (c == 0xed)
            hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f; /* nothing above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits after "\u" at r; -1 when they are not there. */
static long read_hex4(const char *r, const char *end)
{
    if (end - r < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(r[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static char *put_utf8(char *w, unsigned long cp)
{
    if (cp < 0x80) {
        *w++ = (char)cp;
    } else if (cp < 0x800) {
        *w++ = (char)(0xc0 | (cp >> 6));
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        *w++ = (char)(0xe0 | (cp >> 12));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    } else {
        *w++ = (char)(0xf0 | (cp >> 18));
        *w++ = (char)(0x80 | ((cp >> 12) & 0x3f));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3f));
        *w++ = (char)(0x80 | (cp & 0x3f));
    }
    return w;
}

/* Decodes the escape at r (just after the backslash) to w. An escape is at
** least as long as its UTF-8 form, so w never overtakes r. */
static bool unescape(nni_json *j, char **rp, char **wp)
{
    char *r = *rp, *w = *wp;
    if (r >= j->end)
        return nni_json_fail(j, "string ends inside an escape");
    char c = *r++;
    switch (c) {
    case '"':
    case '\\':
    case '/': *w++ = c; break;
    case 'b': *w++ = '\b'; break;
    case 'f': *w++ = '\f'; break;
    case 'n': *w++ = '\n'; break;
    case 'r': *w++ = '\r'; break;
    case 't': *w++ = '\t'; break;
    case 'u': {
        long cp = read_hex4(r, j->end);
        if (cp < 0)
            return nni_json_fail(j, "\\u needs four hex digits");
        r += 4;
        if (cp >= 0xdc00 && cp <= 0xdfff)
            return nni_json_fail(j, "lone low surrogate \\u%04lx", cp);
        if (cp >= 0xd800 && cp <= 0xdbff) {
            long lo = (j->end - r >= 2 && r[0] == '\\' && r[1] == 'u') ? read_hex4(r + 2, j->end) : -1;
            if (lo < 0xdc00 || lo > 0xdfff)
                return nni_json_fail(j, "high surrogate \\u%04lx without a low one", cp);
            r += 6;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        }
        w = put_utf8(w, (unsigned long)cp);
        break;
    }
    default:
        return nni_json_fail(j, "invalid escape '\\%c'",
                             (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? c : '?');
    }
    *rp = r;
    *wp = w;
    return true;
}

bool nni_json_string(nni_json *j, char **s, size_t *len)
{
    skip_ws(j);
    if (j->p >= j->end || *j->p != '"') {
        char buf[16];
        return nni_json_fail(j, "expected a string but found %s", found(j, buf, sizeof buf));
    }
    char *start = j->p + 1, *r = start, *w = start;
    for (;;) {
        if (r >= j->end) {
            j->p = r;
            return nni_json_fail(j, "unterminated string");
        }
        unsigned char c = (unsigned char)*r;
        if (c == '"')
            break;
        if (c < 0x20) {
            j->p = r;
            return nni_json_fail(j, "raw control character 0x%02x in a string", c);
        }
        if (c == '\\') {
            r++;
            if (!unescape(j, &r, &w)) {
                j->p = r;
                return false;
            }
            continue;
        }
        size_t n = nni_utf8_len((const unsigned char *)r, (size_t)(j->end - r));
        if (n == 0) {
            j->p = r;
            return nni_json_fail(j, "invalid UTF-8 in a string");
        }
        for (size_t i = 0; i < n; i++)
            *w++ = *r++;
    }
    *w = '\0'; /* w <= r, which points at the closing quote */
    j->p = r + 1;
    *s = start;
    *len = (size_t)(w - start);
    return true;
}

static bool is_digit(const char *p, const char *end) { return p < end && *p >= '0' && *p <= '9'; }

bool nni_json_uint(nni_json *j, uint64_t *out)
{
    skip_ws(j);
    char *start = j->p, *q = j->p;
    /* Scan the whole JSON number first, so that "1.5" or "-2" is reported as
    ** a number of the wrong kind rather than as a syntax error. */
    bool negative = q < j->end && *q == '-';
    if (negative)
        q++;
    if (!is_digit(q, j->end)) {
        char buf[16];
        return nni_json_fail(j, "expected an integer but found %s", found(j, buf, sizeof buf));
    }
    bool leading_zero = *q == '0' && is_digit(q + 1, j->end);
    while (is_digit(q, j->end))
        q++;
    bool fraction = false, exponent = false;
    if (q < j->end && *q == '.') {
        fraction = true;
        q++;
        if (!is_digit(q, j->end))
            return nni_json_fail(j, "a number's '.' must be followed by digits");
        while (is_digit(q, j->end))
            q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        exponent = true;
        q++;
        if (q < j->end && (*q == '+' || *q == '-'))
            q++;
        if (!is_digit(q, j->end))
            return nni_json_fail(j, "a number's exponent needs digits");
        while (is_digit(q, j->end))
            q++;
    }
    if (leading_zero)
        return nni_json_fail(j, "numbers may not have leading zeros");
    if (negative || fraction || exponent)
        return nni_json_fail(j, "expected a non-negative integer but found '%.*s'",
                             (int)(q - start > 24 ? 24 : q - start), start);
    uint64_t v = 0;
    for (const char *d = start; d < q; d++) {
        uint64_t digit = (uint64_t)(*d - '0');
        if (v > (UINT64_C(0x7fffffffffffffff) - digit) / 10)
            return nni_json_fail(j, "integer '%.*s' is too large", (int)(q - start > 24 ? 24 : q - start),
                                 start);
        v = v * 10 + digit;
    }
    j->p = q;
    *out = v;
    return true;
}
