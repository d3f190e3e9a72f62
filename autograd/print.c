/*
** print.c: tensors as text, "tensor(name, f64, [2,3], [[1, 2, 3], [4, 5, 6]])",
** with long axes summarised by "...", as NumPy does.
*/
#include "internal.h"

#include <string.h>

enum { EDGE = 3, SUMMARISE_ABOVE = 1000 };

/* Text goes to a buffer (snprintf rules) or straight to a stream. */
typedef struct sink {
    char *buf;
    size_t n, len;
    FILE *f;
} sink;

static void put(sink *s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void put(sink *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (s->f) {
        vfprintf(s->f, fmt, ap);
        va_end(ap);
        return;
    }
    size_t room = s->len < s->n ? s->n - s->len : 0;
    int w = vsnprintf(room ? s->buf + s->len : NULL, room, fmt, ap);
    va_end(ap);
    if (w > 0)
        s->len += (size_t)w;
}

static void put_axis(sink *s, const ag_tensor *x, int axis, int64_t offset, bool summarise)
{
    int64_t n = x->shape[axis];
    int64_t stride = 1;
    for (int i = axis + 1; i < x->rank; i++)
        stride *= x->shape[i];
    put(s, "[");
    for (int64_t i = 0; i < n; i++) {
        if (summarise && n > 2 * EDGE && i == EDGE) {
            put(s, "..., ");
            i = n - EDGE - 1;
            continue;
        }
        if (axis == x->rank - 1)
            put(s, "%.*g", x->dtype == AG_F32 ? 6 : 8, agi_get(x, offset + i));
        else
            put_axis(s, x, axis + 1, offset + i * stride, summarise);
        if (i + 1 < n)
            put(s, ", ");
    }
    put(s, "]");
}

static void put_tensor(sink *s, const ag_tensor *x)
{
    if (!agi_usable(x, "ag_snprint")) {
        put(s, "tensor(nil)");
        return;
    }
    char shape[96];
    agi_shape_str(shape, sizeof shape, x->rank, x->shape);
    put(s, "tensor(");
    if (x->name)
        put(s, "%s, ", x->name);
    put(s, "%s, %s, ", ag_dtype_name((ag_dtype)x->dtype), shape);
    if (x->rank == 0)
        put(s, "%.*g", x->dtype == AG_F32 ? 6 : 8, agi_get(x, 0));
    else
        put_axis(s, x, 0, 0, x->numel > SUMMARISE_ABOVE);
    put(s, ")");
}

int ag_snprint(char *buf, size_t n, const ag_tensor *x)
{
    sink s = {buf, buf ? n : 0, 0, NULL};
    if (buf && n)
        buf[0] = '\0';
    put_tensor(&s, x);
    return (int)s.len;
}

void ag_print(FILE *f, const ag_tensor *x)
{
    if (!f)
        return;
    sink s = {NULL, 0, 0, f};
    put_tensor(&s, x);
    fputc('\n', f);
}
