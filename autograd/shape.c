/*
** shape.c: shape arithmetic shared by the ops: broadcasting by NumPy's
** rules, axis normalisation, and shapes formatted for error messages.
*/
#include "internal.h"

#include <string.h>

int ag_shape_str(char *buf, size_t n, int rank, const int64_t *shape)
{
    if (!buf)
        n = 0;
    return agi_shape_str(buf, n, rank, shape);
}

int agi_shape_str(char *buf, size_t n, int rank, const int64_t *shape)
{
    size_t len = 0;
    int w = snprintf(buf, n, "[");
    len += w > 0 ? (size_t)w : 0;
    for (int i = 0; i < rank; i++) {
        w = snprintf(buf + (len < n ? len : n), len < n ? n - len : 0, "%s%lld", i ? "," : "",
                     (long long)shape[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    w = snprintf(buf + (len < n ? len : n), len < n ? n - len : 0, "]");
    len += w > 0 ? (size_t)w : 0;
    return (int)len;
}

/* Four rotating scratch buffers so that one message can show several shapes;
** thread-local, so tapes on different threads never share them. */
const char *agi_shp(const ag_tensor *x, int slot)
{
    static _Thread_local char bufs[4][96];
    char *b = bufs[slot & 3];
    if (!x)
        return "NULL";
    agi_shape_str(b, sizeof bufs[0], x->rank, x->shape);
    return b;
}

bool agi_same_shape(const ag_tensor *a, const ag_tensor *b)
{
    return a->rank == b->rank && memcmp(a->shape, b->shape, (size_t)a->rank * sizeof(int64_t)) == 0;
}

bool agi_broadcast_shape(int ra, const int64_t *sa, int rb, const int64_t *sb, int *rank,
                         int64_t *shape)
{
    /* Built aside: 'shape' may be 'sa' or 'sb' (ag_where broadcasts in two
    ** steps), and a shorter input's dims are read after earlier output dims. */
    int64_t out[AG_MAX_DIMS];
    int r = ra > rb ? ra : rb;
    for (int i = 0; i < r; i++) {
        int64_t da = i < r - ra ? 1 : sa[i - (r - ra)];
        int64_t db = i < r - rb ? 1 : sb[i - (r - rb)];
        if (da != db && da != 1 && db != 1)
            return false;
        out[i] = da == 1 ? db : da;
    }
    if (r > 0)
        memcpy(shape, out, (size_t)r * sizeof *out);
    *rank = r;
    return true;
}

int agi_norm_axis(int axis, int rank)
{
    if (axis < 0)
        axis += rank;
    return axis >= 0 && axis < rank ? axis : -1;
}

void agi_broadcast_strides(const ag_tensor *x, int rank, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = rank - 1; i >= 0; i--) {
        int xi = i - (rank - x->rank);
        if (xi < 0 || (x->shape[xi] == 1 && shape[i] != 1)) {
            strides[i] = 0;
        } else {
            strides[i] = s;
        }
        if (xi >= 0)
            s *= x->shape[xi];
    }
}
