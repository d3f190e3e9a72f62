/*
** dataset.c: in-memory datasets of (x, y) samples and the loader that serves
** them in shuffled mini-batches. The loader allocates its permutation and
** batch buffers once, so iterating costs no allocation beyond the tape's
** arena, which stops growing after the first step.
*/
#include "io_util.h"
#include "simd.h"

#include <float.h>
#include <math.h>
#include <string.h>

struct nn_dataset {
    ag_alloc_fn fn;
    void *ud;
    ag_dtype dtype;
    int64_t n;
    int x_rank, y_rank;
    int64_t x_shape[AG_MAX_DIMS], y_shape[AG_MAX_DIMS];
    int64_t x_numel, y_numel; /* elements of one sample */
    nn_ykind ykind;
    void *x, *y;
    int64_t *labels;
    size_t x_bytes, y_bytes, labels_bytes;
    /* Byte storage (nn_dataset_new_u8): x holds one byte per element, served
    ** as byte / x_divisor in dtype, which 'value' lists for every byte. */
    bool x_u8;
    bool x_by_product;   /* f32: byte * (1 / divisor) in double, rounded, is 'value' */
    bool x_by_fma;       /* f32: the same from a float product and an FMA correction */
    double x_divisor;
    union {
        float f32[256];
        double f64[256];
    } value;
};

/* ------------------------------------------------------------- datasets */

static ag_status check_sample_shape(const char *who, const char *what, int rank, const int64_t *shape,
                                    char *err, size_t errlen)
{
    if (rank < 0 || rank > AG_MAX_DIMS - 1)
        return nni_io_fail(err, errlen, AG_ESHAPE, "%s: %s rank %d is outside 0..%d (a batch adds an axis)",
                           who, what, rank, AG_MAX_DIMS - 1);
    if (rank > 0 && !shape)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %s shape is NULL for rank %d", who, what, rank);
    for (int d = 0; d < rank; d++)
        if (shape[d] < 0)
            return nni_io_fail(err, errlen, AG_ESHAPE, "%s: %s dim %d is negative (%lld)", who, what, d,
                               (long long)shape[d]);
    return AG_OK;
}

/* Bytes for n samples of 'numel' elements of 'esize', or 0 with *ok false on
** overflow. */
static size_t buffer_bytes(int64_t n, int64_t numel, size_t esize, bool *ok)
{
    const uint64_t limit = SIZE_MAX / 2;
    if (numel < 0 || (numel > 0 && (uint64_t)n > limit / (uint64_t)numel / esize)) {
        *ok = false;
        return 0;
    }
    return (size_t)n * (size_t)numel * esize;
}

static void *zeroed(ag_alloc_fn fn, void *ud, size_t bytes, bool *ok)
{
    if (bytes == 0)
        return NULL;
    void *p = ag_realloc(fn, ud, NULL, 0, bytes);
    if (!p)
        *ok = false;
    else
        memset(p, 0, bytes);
    return p;
}

/* The byte values of a dataset made by nn_dataset_new_u8: byte / divisor
** in its dtype, and whether the gather may compute them as a product (the
** division would cost more than the copy it replaces; the product is used
** only where it gives the quotient's bits for all 256 bytes). */
static void set_byte_values(nn_dataset *ds, double divisor)
{
    ds->x_u8 = true;
    ds->x_divisor = divisor;
    ds->x_by_product = ds->dtype == AG_F32;
    ds->x_by_fma = ds->dtype == AG_F32 && nni_have_fma();
    double inverse = 1.0 / divisor;
    float d = (float)divisor, r = 1.0f / d;
    for (int b = 0; b < 256; b++) {
        if (ds->dtype == AG_F32) {
            float want = ds->value.f32[b] = (float)b / d;
            if ((float)((double)b * inverse) != want)
                ds->x_by_product = false;
            float q = (float)b * r;
            if (fmaf(fmaf(-q, d, (float)b), r, q) != want)
                ds->x_by_fma = false;
        } else {
            ds->value.f64[b] = (double)b / divisor;
        }
    }
}

/* nn_dataset_new (divisor 0: x held in dt) and nn_dataset_new_u8 (x held
** as bytes, served as byte / divisor). */
static ag_status dataset_new(const char *who, ag_alloc_fn fn, void *ud, ag_dtype dt, double divisor, int64_t n,
                             int x_rank, const int64_t *x_shape, nn_ykind ykind, int y_rank,
                             const int64_t *y_shape, nn_dataset **out, char *err, size_t errlen)
{
    if (!out)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: out is NULL", who);
    *out = NULL;
    if (dt != AG_F32 && dt != AG_F64)
        return nni_io_fail(err, errlen, AG_EDTYPE, "%s: dtype %d is neither AG_F32 nor AG_F64", who, (int)dt);
    if (n < 0)
        return nni_io_fail(err, errlen, AG_ESHAPE, "%s: %lld samples", who, (long long)n);
    if (ykind != NN_Y_NONE && ykind != NN_Y_LABELS && ykind != NN_Y_VALUES)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: ykind %d is not an nn_ykind", who, (int)ykind);
    bool u8 = divisor != 0;
    /* In f32 the divisor is a float: one that rounds to 0 or infinity there
    ** would give NaN or 0 for every byte. (Tested before the conversion,
    ** which is undefined out of float's range.) */
    bool usable = divisor > 0 && isfinite(divisor) &&
                  (dt != AG_F32 || (divisor <= FLT_MAX && (float)divisor > 0));
    if (u8 && !usable)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: x_divisor %g is not a positive finite %s", who,
                           divisor, ag_dtype_name(dt));
    ag_status s = check_sample_shape(who, "x", x_rank, x_shape, err, errlen);
    if (s == AG_OK && ykind == NN_Y_VALUES)
        s = check_sample_shape(who, "y", y_rank, y_shape, err, errlen);
    if (s != AG_OK)
        return s;

    nn_dataset *ds = ag_realloc(fn, ud, NULL, 0, sizeof *ds);
    if (!ds)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory", who);
    memset(ds, 0, sizeof *ds);
    ds->fn = fn;
    ds->ud = ud;
    ds->dtype = dt;
    ds->n = n;
    ds->ykind = ykind;
    ds->x_rank = x_rank;
    if (x_rank > 0)
        memcpy(ds->x_shape, x_shape, (size_t)x_rank * sizeof *x_shape);
    if (ykind == NN_Y_VALUES) {
        ds->y_rank = y_rank;
        if (y_rank > 0)
            memcpy(ds->y_shape, y_shape, (size_t)y_rank * sizeof *y_shape);
    }
    size_t esize = ag_dtype_size(dt);
    ds->x_numel = nni_io_numel(ds->x_rank, ds->x_shape, INT64_MAX / 8);
    ds->y_numel = ykind == NN_Y_VALUES ? nni_io_numel(ds->y_rank, ds->y_shape, INT64_MAX / 8) : 0;
    bool fits = true;
    ds->x_bytes = buffer_bytes(n, ds->x_numel, u8 ? 1 : esize, &fits);
    ds->y_bytes = buffer_bytes(n, ds->y_numel, esize, &fits);
    ds->labels_bytes = buffer_bytes(n, ykind == NN_Y_LABELS ? 1 : 0, sizeof(int64_t), &fits);
    if (!fits) {
        nn_dataset_free(ds);
        return nni_io_fail(err, errlen, AG_ESHAPE, "%s: %lld samples of this shape do not fit in memory", who,
                           (long long)n);
    }
    /* Loaders and splits keep an int64 index per sample (n * 8 bytes, which
    ** they compute unchecked). Samples of no element take no buffer, so
    ** without this check an n of 2^61 passed, the loader's order array
    ** wrapped around to 0 bytes, and the first batch wrote past it. */
    buffer_bytes(n, 1, sizeof(int64_t), &fits);
    if (!fits) {
        nn_dataset_free(ds);
        return nni_io_fail(err, errlen, AG_ESHAPE,
                           "%s: %lld samples do not fit in memory: their indices (8 bytes each, as "
                           "loaders and splits keep) would take over half the address space",
                           who, (long long)n);
    }
    bool ok = true;
    ds->x = zeroed(fn, ud, ds->x_bytes, &ok);
    ds->y = ok ? zeroed(fn, ud, ds->y_bytes, &ok) : NULL;
    ds->labels = ok ? zeroed(fn, ud, ds->labels_bytes, &ok) : NULL;
    if (!ok) {
        size_t total = ds->x_bytes + ds->y_bytes + ds->labels_bytes;
        nn_dataset_free(ds);
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory for %lld samples (%zu bytes)", who,
                           (long long)n, total);
    }
    if (u8)
        set_byte_values(ds, divisor);
    *out = ds;
    return nni_io_ok(err, errlen);
}

ag_status nn_dataset_new(ag_alloc_fn fn, void *ud, ag_dtype dt, int64_t n, int x_rank, const int64_t *x_shape,
                         nn_ykind ykind, int y_rank, const int64_t *y_shape, nn_dataset **out, char *err,
                         size_t errlen)
{
    return dataset_new("nn_dataset_new", fn, ud, dt, 0, n, x_rank, x_shape, ykind, y_rank, y_shape, out, err,
                       errlen);
}

ag_status nn_dataset_new_u8(ag_alloc_fn fn, void *ud, ag_dtype dt, double x_divisor, int64_t n, int x_rank,
                            const int64_t *x_shape, nn_ykind ykind, int y_rank, const int64_t *y_shape,
                            nn_dataset **out, char *err, size_t errlen)
{
    if (x_divisor == 0) {   /* 0 means float storage to dataset_new */
        if (out)
            *out = NULL;
        return nni_io_fail(err, errlen, AG_EINVAL, "nn_dataset_new_u8: x_divisor is 0");
    }
    return dataset_new("nn_dataset_new_u8", fn, ud, dt, x_divisor, n, x_rank, x_shape, ykind, y_rank, y_shape,
                       out, err, errlen);
}

void nn_dataset_free(nn_dataset *ds)
{
    if (!ds)
        return;
    /* A buffer that failed to allocate is NULL and frees nothing. */
    ag_realloc(ds->fn, ds->ud, ds->x, ds->x ? ds->x_bytes : 0, 0);
    ag_realloc(ds->fn, ds->ud, ds->y, ds->y ? ds->y_bytes : 0, 0);
    ag_realloc(ds->fn, ds->ud, ds->labels, ds->labels ? ds->labels_bytes : 0, 0);
    ag_realloc(ds->fn, ds->ud, ds, sizeof *ds, 0);
}

int64_t nn_dataset_len(const nn_dataset *ds) { return ds ? ds->n : 0; }
ag_dtype nn_dataset_dtype(const nn_dataset *ds) { return ds ? ds->dtype : AG_F64; }
nn_ykind nn_dataset_ykind(const nn_dataset *ds) { return ds ? ds->ykind : NN_Y_NONE; }
int nn_dataset_x_rank(const nn_dataset *ds) { return ds ? ds->x_rank : 0; }
const int64_t *nn_dataset_x_shape(const nn_dataset *ds) { return ds ? ds->x_shape : NULL; }
int nn_dataset_y_rank(const nn_dataset *ds) { return ds ? ds->y_rank : 0; }
const int64_t *nn_dataset_y_shape(const nn_dataset *ds) { return ds ? ds->y_shape : NULL; }
void *nn_dataset_x(nn_dataset *ds) { return ds && !ds->x_u8 ? ds->x : NULL; }
uint8_t *nn_dataset_x_u8(nn_dataset *ds) { return ds && ds->x_u8 ? ds->x : NULL; }
double nn_dataset_x_divisor(const nn_dataset *ds) { return ds && ds->x_u8 ? ds->x_divisor : 0; }
int64_t *nn_dataset_labels(nn_dataset *ds) { return ds ? ds->labels : NULL; }
void *nn_dataset_y(nn_dataset *ds) { return ds ? ds->y : NULL; }

int64_t nn_dataset_num_classes(const nn_dataset *ds)
{
    if (!ds || !ds->labels)
        return 0;
    int64_t top = -1;
    for (int64_t i = 0; i < ds->n; i++)
        if (ds->labels[i] > top)
            top = ds->labels[i];
    return top + 1;
}

ag_status nn_dataset_reshape(nn_dataset *ds, int rank, const int64_t *shape, char *err, size_t errlen)
{
    const char *who = "nn_dataset_reshape";
    if (!ds)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: dataset is NULL", who);
    ag_status s = check_sample_shape(who, "new", rank, shape, err, errlen);
    if (s != AG_OK)
        return s;
    int64_t numel = nni_io_numel(rank, shape, INT64_MAX / 8);
    if (numel != ds->x_numel) {
        char from[96], to[96];
        ag_shape_str(from, sizeof from, ds->x_rank, ds->x_shape);
        ag_shape_str(to, sizeof to, rank, shape);
        return nni_io_fail(err, errlen, AG_ESHAPE, "%s: samples of shape %s (%lld elements) cannot become %s",
                           who, from, (long long)ds->x_numel, to);
    }
    ds->x_rank = rank;
    memset(ds->x_shape, 0, sizeof ds->x_shape);
    if (rank > 0)
        memcpy(ds->x_shape, shape, (size_t)rank * sizeof *shape);
    return nni_io_ok(err, errlen);
}

/* Copies sample 'from' of src to sample 'to' of dst (same layout). */
static void copy_sample(nn_dataset *dst, int64_t to, const nn_dataset *src, int64_t from)
{
    size_t esize = ag_dtype_size(src->dtype);
    size_t xrow = (size_t)src->x_numel * (src->x_u8 ? 1 : esize), yrow = (size_t)src->y_numel * esize;
    if (xrow)
        memcpy((char *)dst->x + (size_t)to * xrow, (const char *)src->x + (size_t)from * xrow, xrow);
    if (yrow)
        memcpy((char *)dst->y + (size_t)to * yrow, (const char *)src->y + (size_t)from * yrow, yrow);
    if (src->labels)
        dst->labels[to] = src->labels[from];
}

/* Fisher-Yates: each of the n! orders equally likely given uniform draws. */
static void shuffle(int64_t *order, int64_t n, ag_rng *rng)
{
    for (int64_t i = 0; i < n; i++)
        order[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ag_rng_below(rng, (uint64_t)i + 1);
        int64_t tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
}

ag_status nn_dataset_split(const nn_dataset *ds, int64_t first, ag_rng *rng, ag_alloc_fn fn, void *ud,
                           nn_dataset **a, nn_dataset **b, char *err, size_t errlen)
{
    const char *who = "nn_dataset_split";
    if (!a || !b)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: an output pointer is NULL", who);
    *a = *b = NULL;
    if (!ds)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: dataset is NULL", who);
    if (first < 0 || first > ds->n)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: first %lld is outside 0..%lld", who, (long long)first,
                           (long long)ds->n);
    int64_t *order = NULL;
    size_t order_bytes = (size_t)ds->n * sizeof *order;
    if (rng && ds->n > 0) {
        order = ag_realloc(fn, ud, NULL, 0, order_bytes);
        if (!order)
            return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory", who);
        shuffle(order, ds->n, rng);
    }
    const int64_t counts[2] = {first, ds->n - first};
    nn_dataset **parts[2] = {a, b};
    ag_status s = AG_OK;
    for (int p = 0; p < 2 && s == AG_OK; p++) {
        s = dataset_new(who, fn, ud, ds->dtype, ds->x_u8 ? ds->x_divisor : 0, counts[p], ds->x_rank,
                        ds->x_shape, ds->ykind, ds->y_rank, ds->y_shape, parts[p], err, errlen);
        for (int64_t i = 0; s == AG_OK && i < counts[p]; i++) {
            int64_t k = (p == 0 ? 0 : first) + i;
            copy_sample(*parts[p], i, ds, order ? order[k] : k);
        }
    }
    ag_realloc(fn, ud, order, order ? order_bytes : 0, 0);
    if (s != AG_OK) {
        nn_dataset_free(*a);
        nn_dataset_free(*b);
        *a = *b = NULL;
        if (s != AG_ENOMEM)
            return s;
        return nni_io_fail(err, errlen, s, "%s: out of memory", who);
    }
    return nni_io_ok(err, errlen);
}

/* --------------------------------------------------------------- loaders */

struct nn_loader {
    const nn_dataset *ds;
    ag_alloc_fn fn;
    void *ud;
    ag_rng *rng;
    int64_t batch;
    bool shuffle, drop_last;
    bool in_epoch;
    int64_t pos, index; /* next sample of 'order', next batch number */
    int64_t *order;     /* ds->n sample indices, in this epoch's order; the
                           first 'n' are this rank's (all of them unsharded) */
    int64_t n;          /* samples per epoch: ds->n / shard_size */
    int shard_rank, shard_size;
    int64_t *labels;    /* one batch of labels, handed out in nn_batch */
    size_t labels_bytes;
};

void nn_loader_free(nn_loader *ld)
{
    if (!ld)
        return;
    ag_realloc(ld->fn, ld->ud, ld->order, ld->order ? (size_t)ld->ds->n * sizeof *ld->order : 0, 0);
    ag_realloc(ld->fn, ld->ud, ld->labels, ld->labels ? ld->labels_bytes : 0, 0);
    ag_realloc(ld->fn, ld->ud, ld, sizeof *ld, 0);
}

ag_status nn_loader_new(const nn_dataset *ds, int64_t batch_size, int shuffle_each_epoch, int drop_last,
                        ag_rng *rng, ag_alloc_fn fn, void *ud, nn_loader **out, char *err, size_t errlen)
{
    const char *who = "nn_loader_new";
    if (!out)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: out is NULL", who);
    *out = NULL;
    if (!ds)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: dataset is NULL", who);
    if (batch_size < 1)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: batch size %lld is below 1", who,
                           (long long)batch_size);
    if (shuffle_each_epoch && !rng)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: shuffling needs an rng, and rng is NULL", who);
    nn_loader *ld = ag_realloc(fn, ud, NULL, 0, sizeof *ld);
    if (!ld)
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory", who);
    memset(ld, 0, sizeof *ld);
    ld->ds = ds;
    ld->fn = fn;
    ld->ud = ud;
    ld->rng = rng;
    ld->batch = batch_size;
    ld->shuffle = shuffle_each_epoch != 0;
    ld->drop_last = drop_last != 0;
    ld->n = ds->n;
    ld->shard_size = 1;
    int64_t rows = batch_size < ds->n ? batch_size : ds->n; /* most samples a batch holds */
    ld->labels_bytes = ds->labels ? (size_t)rows * sizeof(int64_t) : 0;
    bool ok = true;
    ld->order = zeroed(fn, ud, (size_t)ds->n * sizeof *ld->order, &ok);
    ld->labels = ok ? zeroed(fn, ud, ld->labels_bytes, &ok) : NULL;
    if (!ok) {
        nn_loader_free(ld);
        return nni_io_fail(err, errlen, AG_ENOMEM, "%s: out of memory for batches of %lld", who,
                           (long long)batch_size);
    }
    *out = ld;
    return nni_io_ok(err, errlen);
}

int64_t nn_loader_num_batches(const nn_loader *ld)
{
    if (!ld)
        return 0;
    int64_t n = ld->n;
    return n / ld->batch + (!ld->drop_last && n % ld->batch != 0);   /* no n + batch: it may overflow */
}

ag_status nn_loader_set_shard(nn_loader *ld, int rank, int size, char *err, size_t errlen)
{
    const char *who = "nn_loader_set_shard";
    if (!ld)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: loader is NULL", who);
    if (size < 1 || rank < 0 || rank >= size)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: rank %d of %d ranks", who, rank, size);
    if (ld->ds->n / size == 0)
        return nni_io_fail(err, errlen, AG_EINVAL, "%s: %lld samples leave nothing for %d ranks", who,
                           (long long)ld->ds->n, size);
    ld->shard_rank = rank;
    ld->shard_size = size;
    ld->n = ld->ds->n / size;
    ld->in_epoch = false;
    return nni_io_ok(err, errlen);
}

void nn_loader_rewind(nn_loader *ld)
{
    if (ld)
        ld->in_epoch = false;
}

/* Below this many bytes per thread, a batch is gathered on one thread.
** Small: shuffled rows come from all over the data set, so the gather
** waits on memory, and two threads waiting at once halve it; at batch 64
** (200 KB) splitting took it from 40 to 21 us a step. */
enum { MIN_GATHER_BYTES = 1 << 13 };

static inline void prefetch(const void *p)
{
#if defined(__GNUC__)
    __builtin_prefetch(p);
#else
    (void)p;
#endif
}

/* Copies samples [begin, end) of the batch at the loader's position into
** the batch's tensors and labels. */
typedef struct gather_job {
    nn_loader *ld;
    char *xs, *ys;
    size_t xrow, yrow;   /* bytes of a sample in the batch */
} gather_job;

/* A byte sample into dtype values. Cloned for AVX2, where the f32 product
** converts eight bytes per instruction. */
NNI_SIMD_CLONES static void bytes_to_values(const nn_dataset *ds, const uint8_t *restrict src,
                                            void *restrict dst, int64_t n)
{
    if (ds->x_by_product) {
        const double inverse = 1.0 / ds->x_divisor;
        float *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = (float)((double)src[i] * inverse);
    } else if (ds->dtype == AG_F32) {
        float *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = ds->value.f32[src[i]];
    } else {
        double *d = dst;
        for (int64_t i = 0; i < n; i++)
            d[i] = ds->value.f64[src[i]];
    }
}

#if NNI_HAVE_X86
/* b / d as q + (b - q d) / d, the remainder exact by FMA: eight bytes per
** step in floats, where the product in double converts four. */
NNI_TARGET_FMA static void bytes_to_f32_fma(const uint8_t *restrict src, float *restrict dst, int64_t n,
                                            float d)
{
    const float r = 1.0f / d;
    for (int64_t i = 0; i < n; i++) {
        float v = (float)src[i], q = v * r;
        dst[i] = fmaf(fmaf(-q, d, v), r, q);
    }
}
#endif

static void bytes_to_sample(const nn_dataset *ds, const uint8_t *src, void *dst, int64_t n)
{
#if NNI_HAVE_X86
    if (ds->x_by_fma) {
        bytes_to_f32_fma(src, dst, n, (float)ds->x_divisor);
        return;
    }
#endif
    bytes_to_values(ds, src, dst, n);
}

static void gather_rows(void *ctx, int64_t begin, int64_t end)
{
    const gather_job *j = ctx;
    const nn_dataset *ds = j->ld->ds;
    const int64_t *order = j->ld->order + j->ld->pos;
    if (ds->x_u8) {
        /* Shuffled rows come from all over memory, and a row's conversion
        ** is too long for the core to reach the next row's loads by itself:
        ** asking for every line first lets the misses overlap. */
        for (int64_t i = begin; i < end; i++)
            for (int64_t o = 0; o < ds->x_numel; o += 64)
                prefetch((const uint8_t *)ds->x + order[i] * ds->x_numel + o);
        for (int64_t i = begin; i < end; i++)
            bytes_to_sample(ds, (const uint8_t *)ds->x + order[i] * ds->x_numel, j->xs + (size_t)i * j->xrow,
                            ds->x_numel);
    }
    for (int64_t i = begin; i < end; i++) {
        int64_t k = order[i];
        if (j->xrow && !ds->x_u8)
            memcpy(j->xs + (size_t)i * j->xrow, (const char *)ds->x + (size_t)k * j->xrow, j->xrow);
        if (j->ys && j->yrow)
            memcpy(j->ys + (size_t)i * j->yrow, (const char *)ds->y + (size_t)k * j->yrow, j->yrow);
        if (ds->labels)
            j->ld->labels[i] = ds->labels[k];
    }
}

/* A small batch's samples are asked for as this one is handed out: they
** arrive while the step computes, and its next gather finds them in cache.
** (A large batch would stall on the miss queue as long as its own gather,
** and part of it would be evicted before use.) */
enum { MAX_PREFETCH_BYTES = 1 << 14 };

static void prefetch_next_batch(const nn_loader *ld, int64_t size)
{
    const nn_dataset *ds = ld->ds;
    size_t row = (size_t)ds->x_numel * (ds->x_u8 ? 1 : ag_dtype_size(ds->dtype));
    int64_t next = ld->pos + size, stop = ld->n - next < ld->batch ? ld->n : next + ld->batch;
    if (next >= stop || (size_t)(stop - next) * row > MAX_PREFETCH_BYTES)
        return;
    for (int64_t i = next; i < stop; i++)
        for (size_t o = 0; o < row; o += 64)
            prefetch((const char *)ds->x + (size_t)ld->order[i] * row + o);
}

int nn_loader_next(nn_loader *ld, ag_tape *t, nn_batch *b)
{
    if (!ld || !t || !b || ag_tape_status(t) != AG_OK)
        return 0;
    const nn_dataset *ds = ld->ds;
    if (!ld->in_epoch) {
        if (ld->shuffle)
            shuffle(ld->order, ds->n, ld->rng);
        else
            for (int64_t i = 0; i < ds->n; i++)
                ld->order[i] = i;
        /* This rank's positions rank, rank + size, ... of the epoch's order,
        ** moved to its front (each moves down or stays: in place). */
        for (int64_t i = 0; ld->shard_size > 1 && i < ld->n; i++)
            ld->order[i] = ld->order[ld->shard_rank + i * ld->shard_size];
        ld->in_epoch = true;
        ld->pos = 0;
        ld->index = 0;
    }
    int64_t left = ld->n - ld->pos;
    if (left == 0 || (ld->drop_last && left < ld->batch)) {
        ld->in_epoch = false;
        return 0;
    }
    int64_t size = left < ld->batch ? left : ld->batch;
    /* The batch's tensors first, then the samples gathered straight into them. */
    int64_t shape[AG_MAX_DIMS];
    shape[0] = size;
    memcpy(shape + 1, ds->x_shape, (size_t)ds->x_rank * sizeof *shape);
    ag_tensor *x = ag_empty(t, ds->dtype, ds->x_rank + 1, shape);
    ag_tensor *y = NULL;
    if (ds->ykind == NN_Y_VALUES) {
        memcpy(shape + 1, ds->y_shape, (size_t)ds->y_rank * sizeof *shape);
        y = ag_empty(t, ds->dtype, ds->y_rank + 1, shape);
    }
    if (ag_tape_status(t) != AG_OK)
        return 0;
    size_t esize = ag_dtype_size(ds->dtype);
    gather_job j = {ld, ag_data(x), y ? ag_data(y) : NULL, (size_t)ds->x_numel * esize,
                    (size_t)ds->y_numel * esize};
    size_t read = (ds->x_u8 ? (size_t)ds->x_numel : j.xrow) + j.yrow + sizeof(int64_t);
    int64_t grain = (int64_t)(MIN_GATHER_BYTES / read) + 1;
    ag_pool_for(ag_tape_pool(t), size, grain, gather_rows, &j);
    prefetch_next_batch(ld, size);
    b->x = x;
    b->y = y;
    b->labels = ds->labels ? ld->labels : NULL;
    b->size = size;
    b->index = ld->index++;
    ld->pos += size;
    return 1;
}
