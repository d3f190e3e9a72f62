/*
** checkpoint.c: a model's parameters, and what training needs to go on
** exactly (an optimizer's state, the model's generator, the caller's own
** metadata), to and from a safetensors file, by name.
**
** Layout of a training checkpoint, readable by any safetensors reader:
**   "<param>"                     each parameter, as nn_model_save writes it
**   "<buffer>"                    each buffer ("bn1.running_mean"), likewise
**   "optim.<param>.<state>"       the optimizer's state for that parameter,
**                                 under PyTorch's names (exp_avg, exp_avg_sq,
**                                 momentum_buffer, square_avg, sum)
**   __metadata__: "optim" (its kind), "optim.steps", "model.rng", and the
**                 caller's pairs.
** Tensors whose names start with "optim." belong to the optimizer: a load
** that restores no optimizer passes over them, so weights load from a full
** training checkpoint.
*/
#include "io_util.h"
#include "model_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NAME_MAX_BYTES = 64 + 6 + 1 + 24 };   /* "optim." + param + "." + state */

static const char OPTIM_PREFIX[] = "optim.";

/* ------------------------------------------------------------- generators */

int nn_rng_format(const ag_rng *r, char *buf, size_t n)
{
    if (!r || !buf)
        return -1;
    uint64_t spare;
    memcpy(&spare, &r->spare, sizeof spare);
    return snprintf(buf, n, "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 ":%d:%016" PRIx64,
                    r->s[0], r->s[1], r->s[2], r->s[3], r->has_spare ? 1 : 0, spare);
}

/* n hex digits at p into *v; false unless all are lowercase hex digits. */
static bool hex64(const char *p, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < 16; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        x = x << 4 | (uint64_t)d;
    }
    *v = x;
    return true;
}

ag_status nn_rng_parse(ag_rng *r, const char *text)
{
    if (!r || !text || strlen(text) != NN_RNG_CHARS - 1 || text[64] != ':' || text[66] != ':' ||
        (text[65] != '0' && text[65] != '1'))
        return AG_EINVAL;
    ag_rng v;
    uint64_t spare;
    for (int i = 0; i < 4; i++)
        if (!hex64(text + 16 * i, &v.s[i]))
            return AG_EINVAL;
    if (!hex64(text + 67, &spare))
        return AG_EINVAL;
    if (!(v.s[0] | v.s[1] | v.s[2] | v.s[3]))
        return AG_EINVAL;   /* xoshiro's one forbidden state */
    v.has_spare = text[65] == '1';
    memcpy(&v.spare, &spare, sizeof spare);
    /* A spare variate of the polar method is always finite, so no text of
    ** nn_rng_format holds another; taken, an infinity or a NaN would be
    ** the next ag_rng_normal's draw. */
    if (v.has_spare && !isfinite(v.spare))
        return AG_EINVAL;
    *r = v;
    return AG_OK;
}

/* --------------------------------------------------------------- the list */

/* What a checkpoint holds for one model and optimizer: entries[0..n) of
** names and tensors, parameters first, then the model's buffers (n_model
** entries in all), then the optimizer's state as views over its buffers
** (made here, freed by list_free). */
typedef struct list {
    nn_model *m;
    int n, n_params, n_model, n_views;
    const char **names;
    ag_tensor **tensors;
    char *name_buf;   /* NAME_MAX_BYTES per optimizer entry */
    size_t bytes;
} list;

static void list_free(list *l)
{
    for (int i = l->n_model; i < l->n_model + l->n_views; i++)
        ag_param_free(l->tensors[i]);
    nni_realloc(l->m, l->tensors, l->bytes, 0);
}

static ag_status list_make(list *l, nn_model *m, nn_optim *o, const char *who, char *err,
                           size_t errlen)
{
    *l = (list){.m = m};
    int per = nni_optim_n_state(o);
    size_t n = (size_t)m->n_params * (size_t)(1 + per) + (size_t)m->n_buffers;
    size_t slots = n ? n : 1;
    size_t views = (size_t)m->n_params * (size_t)per;
    l->bytes = slots * (sizeof(const char *) + sizeof(ag_tensor *)) + views * NAME_MAX_BYTES;
    l->tensors = nni_realloc(m, NULL, 0, l->bytes);
    if (!l->tensors) {
        if (err)
            snprintf(err, errlen, "%s: out of memory listing %zu tensors", who, n);
        return AG_ENOMEM;
    }
    l->names = (const char **)(l->tensors + slots);
    l->name_buf = (char *)(l->names + slots);
    l->n_params = m->n_params;
    l->n_model = m->n_params + m->n_buffers;
    for (int i = 0; i < l->n_model; i++) {
        l->tensors[i] = i < m->n_params ? m->params[i].tensor : m->buffers[i - m->n_params].tensor;
        l->names[i] = ag_name(l->tensors[i]);
    }
    size_t es = ag_dtype_size(m->dtype);
    for (int k = 0; k < per; k++) {
        char *state = nni_optim_state(o, k);
        for (int i = 0; i < m->n_params; i++) {
            const ag_tensor *p = m->params[i].tensor;
            char *at = state + (size_t)m->params[i].offset * es;
            /* A view's gradient is never used; it points at the state too. */
            ag_tensor *v = ag_param_view(m->alloc, m->alloc_ud, m->dtype, ag_rank(p), ag_shape(p),
                                         at, at);
            if (!v) {
                if (err)
                    snprintf(err, errlen, "%s: out of memory listing the optimizer's state", who);
                list_free(l);
                return AG_ENOMEM;
            }
            char *name = l->name_buf + (size_t)l->n_views * NAME_MAX_BYTES;
            snprintf(name, NAME_MAX_BYTES, "%s%s.%s", OPTIM_PREFIX, ag_name(p),
                     nni_optim_state_name(o, k));
            l->tensors[l->n_model + l->n_views] = v;
            l->names[l->n_model + l->n_views] = name;
            l->n_views++;
        }
    }
    l->n = l->n_model + l->n_views;
    return AG_OK;
}

/* The model's own checks before saving or loading: not NULL, not in error,
** and an optimizer (when given) made for this model at its present size. */
static ag_status check_model(nn_model *m, const nn_optim *o, const char *who, char *err,
                             size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    if (!m || m->status != AG_OK) {
        if (err)
            snprintf(err, errlen, "%s: %s%s", who, m ? "the model is in error: " : "model is NULL",
                     m ? m->errmsg : "");
        return m ? m->status : AG_EINVAL;
    }
    if (o && nn_optim_is_nil(o)) {
        if (err)
            snprintf(err, errlen, "%s: the optimizer is nil (its constructor failed)", who);
        return AG_EINVAL;
    }
    if (o && nni_optim_model(o) != m) {
        if (err)
            snprintf(err, errlen, "%s: the optimizer updates another model", who);
        return AG_EINVAL;
    }
    if (o && nni_optim_numel(o) != m->numel) {
        if (err)
            snprintf(err, errlen, "%s: the optimizer was made for %lld values, the model has %lld",
                     who, (long long)nni_optim_numel(o), (long long)m->numel);
        return AG_ESTATE;
    }
    return AG_OK;
}

/* The safetensors layer's messages name its own function; the caller
** called ours, so its name goes first: "nn_model_load: nn_safetensors_open:
** <path>: ...". */
static void name_caller(const char *who, char *err, size_t errlen)
{
    if (!err || errlen <= strlen(who) + 2)
        return;
    char tail[512];
    snprintf(tail, sizeof tail, "%s", err);
    snprintf(err, errlen, "%s: %s", who, tail);
}

/* ------------------------------------------------------------------- save */

enum { OWN_META = 3 };   /* "optim", "optim.steps", "model.rng" */

static ag_status save(nn_model *m, nn_optim *o, const char *who, bool own_meta, const char *path,
                      int nmeta, const char *const *keys, const char *const *values, char *err,
                      size_t errlen)
{
    ag_status st = check_model(m, o, who, err, errlen);
    if (st != AG_OK)
        return st;
    if (nmeta < 0 || (nmeta > 0 && (!keys || !values))) {
        if (err)
            snprintf(err, errlen, "%s: %d metadata pairs with keys %s and values %s", who, nmeta,
                     keys ? "given" : "NULL", values ? "given" : "NULL");
        return AG_EINVAL;
    }
    for (int i = 0; i < nmeta && own_meta; i++) {
        if (keys[i] && (!strcmp(keys[i], "model.rng") || !strncmp(keys[i], OPTIM_PREFIX, 6) ||
                        !strcmp(keys[i], "optim"))) {
            if (err)
                snprintf(err, errlen, "%s: metadata key '%s' is the checkpoint's own", who, keys[i]);
            return AG_EINVAL;
        }
    }
    list l;
    if ((st = list_make(&l, m, o, who, err, errlen)) != AG_OK)
        return st;
    /* The caller's pairs, then the checkpoint's own. */
    int total = nmeta + (own_meta ? OWN_META : 0);
    size_t meta_bytes = (size_t)(total ? total : 1) * 2 * sizeof(const char *);
    const char **mk = nni_realloc(m, NULL, 0, meta_bytes);
    if (!mk) {
        list_free(&l);
        if (err)
            snprintf(err, errlen, "%s: out of memory listing metadata", who);
        return AG_ENOMEM;
    }
    const char **mv = mk + (total ? total : 1);
    for (int i = 0; i < nmeta; i++)
        mk[i] = keys[i], mv[i] = values[i];
    char steps[24], rng[NN_RNG_CHARS];
    int k = nmeta;
    if (own_meta) {
        snprintf(steps, sizeof steps, "%" PRId64, o ? nn_optim_steps(o) : (int64_t)0);
        nn_rng_format(&m->rng, rng, sizeof rng);
        mk[k] = "model.rng", mv[k++] = rng;
        mk[k] = "optim", mv[k++] = o ? nn_optim_name(o) : "none";
        mk[k] = "optim.steps", mv[k++] = steps;
    }
    st = nn_safetensors_save_meta(path, l.n, l.names, l.tensors, k, mk, mv, m->alloc, m->alloc_ud,
                                  err, errlen);
    if (st != AG_OK)
        name_caller(who, err, errlen);
    nni_realloc(m, mk, meta_bytes, 0);
    list_free(&l);
    return st;
}

ag_status nn_model_save(nn_model *m, const char *path, char *err, size_t errlen)
{
    return save(m, NULL, "nn_model_save", false, path, 0, NULL, NULL, err, errlen);
}

ag_status nn_checkpoint_save(nn_model *m, nn_optim *o, const char *path, int nmeta,
                             const char *const *keys, const char *const *values, char *err,
                             size_t errlen)
{
    return save(m, o, "nn_checkpoint_save", true, path, nmeta, keys, values, err, errlen);
}

/* ------------------------------------------------------------------- load */

static const char *dtype_code(ag_dtype dt) { return dt == AG_F64 ? "F64" : "F32"; }

/* Whether entry e can fill tensor x: same dtype, same shape. */
static bool fits(const nn_safetensors_info *e, const ag_tensor *x)
{
    if (strcmp(e->dtype, dtype_code(ag_dtype_of(x))) || e->rank != ag_rank(x))
        return false;
    for (int d = 0; d < e->rank; d++)
        if (e->shape[d] != ag_shape(x)[d])
            return false;
    return true;
}

/* Appends "'name'" to a list of up to three names in buf, then counts. */
static void note_name(char *buf, size_t n, int *count, const char *name)
{
    if (*count < 3) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, "%s'%.64s'", *count ? ", " : "", name);
    }
    (*count)++;
}

static void and_more(char *buf, size_t n, int count)
{
    if (count > 3) {
        size_t len = strlen(buf);
        snprintf(buf + len, n - len, " and %d more", count - 3);
    }
}

/* Is 'name' "<bn>.num_batches_tracked" of a batch norm layer "<bn>" of m
** (one with a buffer "<bn>.running_mean")? PyTorch writes that count; we
** keep it out of files (nn.h says why), so loads pass over it. */
static bool batch_count(const nn_model *m, const char *name)
{
    static const char count[] = "num_batches_tracked", mean[] = "running_mean";
    size_t len = strlen(name), tail = sizeof count - 1;
    if (len <= tail || len - tail + sizeof mean > 64 || strcmp(name + len - tail, count))
        return false;
    char buf[64];
    memcpy(buf, name, len - tail);
    memcpy(buf + len - tail, mean, sizeof mean);
    return nn_model_find_buffer(m, buf) != NULL;
}

/* Matches the file's entries with the list: where[i] is entry i's index in
** the file, or -1 when absent (allowed with NN_LOAD_ALLOW_MISSING). Checks
** dtypes and shapes, and entries nobody asked for (allowed with
** NN_LOAD_ALLOW_EXTRA; optimizer entries are nobody's when no optimizer is
** restored). */
static ag_status match(const list *l, nn_safetensors *f, bool with_optim, int flags, int *where,
                       const char *who, const char *path, char *err, size_t errlen)
{
    char missing[320] = "", extra[320] = "";
    int n_missing = 0, n_extra = 0;
    for (int i = 0; i < l->n; i++) {
        where[i] = nn_safetensors_find(f, l->names[i]);
        if (where[i] < 0) {
            note_name(missing, sizeof missing, &n_missing, l->names[i]);
            continue;
        }
        const nn_safetensors_info *e = nn_safetensors_entry(f, where[i]);
        if (!fits(e, l->tensors[i])) {
            char want[NNI_SHAPE_STR], got[NNI_SHAPE_STR];
            ag_shape_str(got, sizeof got, e->rank, e->shape);
            if (err)
                snprintf(err, errlen, "%s: %s: tensor '%.64s' is %s %s in the file, %s %s in the %s",
                         who, path, l->names[i], e->dtype, got, dtype_code(ag_dtype_of(l->tensors[i])),
                         nni_shape_str(l->tensors[i], want, sizeof want),
                         i < l->n_model ? "model" : "optimizer");
            return strcmp(e->dtype, dtype_code(ag_dtype_of(l->tensors[i]))) ? AG_EDTYPE : AG_ESHAPE;
        }
    }
    for (int j = 0; j < nn_safetensors_count(f); j++) {
        const char *name = nn_safetensors_entry(f, j)->name;
        bool optim_entry = !strncmp(name, OPTIM_PREFIX, 6);
        if ((optim_entry && !with_optim) || batch_count(l->m, name))
            continue;
        bool wanted = false;
        for (int i = 0; i < l->n && !wanted; i++)
            wanted = where[i] == j;
        if (!wanted)
            note_name(extra, sizeof extra, &n_extra, name);
    }
    and_more(missing, sizeof missing, n_missing);
    and_more(extra, sizeof extra, n_extra);
    if (n_missing && !(flags & NN_LOAD_ALLOW_MISSING)) {
        if (err)
            snprintf(err, errlen, "%s: %s: %d tensor%s of the %s missing from the file: %s "
                     "(NN_LOAD_ALLOW_MISSING leaves them as they are)", who, path, n_missing,
                     n_missing == 1 ? "" : "s", with_optim ? "model and optimizer are" : "model is",
                     missing);
        return AG_EINVAL;
    }
    if (n_extra && !(flags & NN_LOAD_ALLOW_EXTRA)) {
        if (err)
            snprintf(err, errlen, "%s: %s: the file holds %d extra tensor%s the model lacks: %s "
                     "(NN_LOAD_ALLOW_EXTRA passes over them)", who, path, n_extra,
                     n_extra == 1 ? "" : "s", extra);
        return AG_EINVAL;
    }
    return AG_OK;
}

/* A step count as nn_checkpoint_save writes it: decimal digits and nothing
** else, at most 2^53. strtoll took a sign and leading blanks, and clamped a
** count past INT64_MAX to INT64_MAX without a word; from INT64_MAX the next
** nn_optim_step overflowed the optimizer's signed counter. No run reaches
** 2^53 steps (104 days at 10^9 a second), and from there the counter has
** room for 2^63 - 2^53 more. */
static bool parse_steps(const char *text, int64_t *out)
{
    const int64_t max = (int64_t)1 << 53;
    int64_t v = 0;
    if (!text[0])
        return false;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || v > (max - (*p - '0')) / 10)
            return false;
        v = v * 10 + (*p - '0');
    }
    *out = v;
    return true;
}

/* The optimizer's metadata: its kind must be o's; its step count. */
static ag_status optim_meta(nn_safetensors *f, const nn_optim *o, int flags, int64_t *steps,
                            const char *who, const char *path, char *err, size_t errlen)
{
    const char *kind = nn_safetensors_metadata_get(f, "optim");
    const char *text = nn_safetensors_metadata_get(f, "optim.steps");
    *steps = -1;
    if (!kind || !text) {
        if (flags & NN_LOAD_ALLOW_MISSING)
            return AG_OK;
        if (err)
            snprintf(err, errlen, "%s: %s: the file holds no optimizer state (it was not written "
                     "by nn_checkpoint_save; NN_LOAD_ALLOW_MISSING loads the weights alone)", who, path);
        return AG_EINVAL;
    }
    if (strcmp(kind, nn_optim_name(o))) {
        if (err)
            snprintf(err, errlen, "%s: %s: the file holds the state of a%s %.32s optimizer, not of %s",
                     who, path, strchr("aeiou", kind[0]) && kind[0] ? "n" : "", kind, nn_optim_name(o));
        return AG_EINVAL;
    }
    if (!parse_steps(text, steps)) {
        char shown[4 * 32 + 1];
        nni_io_escape(shown, sizeof shown, text, strlen(text) < 32 ? strlen(text) : 32);
        if (err)
            snprintf(err, errlen, "%s: %s: optim.steps '%s%s' is not a step count (decimal digits, "
                     "at most 2^53)", who, path, shown, strlen(text) > 32 ? "..." : "");
        return AG_EINVAL;
    }
    return AG_OK;
}

static ag_status load(nn_model *m, nn_optim *o, const char *who, int flags, const char *path,
                      char *err, size_t errlen)
{
    ag_status st = check_model(m, o, who, err, errlen);
    if (st != AG_OK)
        return st;
    if (flags & ~(NN_LOAD_ALLOW_MISSING | NN_LOAD_ALLOW_EXTRA)) {
        if (err)
            snprintf(err, errlen, "%s: unknown flags 0x%x", who, (unsigned)flags);
        return AG_EINVAL;
    }
    nn_safetensors *f = NULL;
    if ((st = nn_safetensors_open(path, m->alloc, m->alloc_ud, &f, err, errlen)) != AG_OK) {
        name_caller(who, err, errlen);
        return st;
    }
    list l;
    if ((st = list_make(&l, m, o, who, err, errlen)) != AG_OK) {
        nn_safetensors_close(f);
        return st;
    }
    /* where[] and a copy of everything a read may change, to put back if
    ** the disk fails midway: a failed load changes nothing. */
    size_t es = ag_dtype_size(m->dtype), values = (size_t)m->numel * es;
    size_t buffers = (size_t)m->buf_numel * es;
    int per = nni_optim_n_state(o);
    size_t where_bytes = (size_t)(l.n ? l.n : 1) * sizeof(int);
    size_t backup_bytes = where_bytes + values * (size_t)(1 + per) + buffers;
    int *where = nni_realloc(m, NULL, 0, backup_bytes);
    int64_t steps = -1;
    ag_rng rng = m->rng;
    const char *rng_text = o ? nn_safetensors_metadata_get(f, "model.rng") : NULL;
    if (!where) {
        if (err)
            snprintf(err, errlen, "%s: out of memory (%zu bytes) to load '%s'", who, backup_bytes, path);
        st = AG_ENOMEM;
    } else if ((st = match(&l, f, o != NULL, flags, where, who, path, err, errlen)) == AG_OK &&
               o) {
        st = optim_meta(f, o, flags, &steps, who, path, err, errlen);
        if (st == AG_OK && rng_text && nn_rng_parse(&rng, rng_text) != AG_OK) {
            if (err)
                snprintf(err, errlen, "%s: %s: model.rng '%.80s' is not a generator's state", who,
                         path, rng_text);
            st = AG_EINVAL;
        }
    }
    /* A model without parameters has no value buffers, and one without
    ** buffers no buffer block (memcpy from NULL is undefined even for 0). */
    if (st == AG_OK && (values || buffers)) {
        char *backup = (char *)where + where_bytes;
        char *buffers_backup = backup + values * (size_t)(1 + per);
        if (values) {
            memcpy(backup, m->value, values);
            for (int k = 0; k < per; k++)
                memcpy(backup + values * (size_t)(1 + k), nni_optim_state(o, k), values);
        }
        if (buffers)
            memcpy(buffers_backup, m->buf_value, buffers);
        for (int i = 0; i < l.n && st == AG_OK; i++)
            if (where[i] >= 0)
                st = nn_safetensors_read(f, where[i], l.tensors[i], err, errlen);
        if (st != AG_OK) {
            name_caller(who, err, errlen);
            if (values) {
                memcpy(m->value, backup, values);
                for (int k = 0; k < per; k++)
                    memcpy(nni_optim_state(o, k), backup + values * (size_t)(1 + k), values);
            }
            if (buffers)
                memcpy(m->buf_value, buffers_backup, buffers);
        } else if (o) {
            if (steps >= 0)
                nni_optim_set_steps(o, steps);
            m->rng = rng;
        }
    }
    nni_realloc(m, where, where ? backup_bytes : 0, 0);
    list_free(&l);
    nn_safetensors_close(f);
    return st;
}

ag_status nn_model_load(nn_model *m, const char *path, char *err, size_t errlen)
{
    return load(m, NULL, "nn_model_load", 0, path, err, errlen);
}

ag_status nn_model_load_flags(nn_model *m, const char *path, int flags, char *err, size_t errlen)
{
    return load(m, NULL, "nn_model_load_flags", flags, path, err, errlen);
}

ag_status nn_checkpoint_load(nn_model *m, nn_optim *o, const char *path, int flags, char *err,
                             size_t errlen)
{
    return load(m, o, "nn_checkpoint_load", flags, path, err, errlen);
}
