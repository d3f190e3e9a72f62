/*
** anomaly.c: anomaly mode, a debugging aid that stops a tape at the first op
** whose result or backward gradient holds a NaN or an infinity, and says
** which op it was, where on the tape, on what inputs and, for calls made
** through autograd_trace.h, at which line of the caller's source.
**
** Costs nothing when off but one predictable branch in agi_new and one in
** agi_check_inputs. An op's values are computed after agi_new returns, so a
** result is checked later: when the next op starts (agi_check_inputs), at
** backward, or when the status is read, whichever comes first. Ops fill
** their result before calling any other op, so it is complete by then.
*/
#include "internal.h"

#include <math.h>
#include <string.h>

void ag_tape_set_anomaly(ag_tape *t, int on)
{
    if (!t)
        return;
    agi_anomaly *a = &t->anomaly;
    if (on && !a->on && a->sites)
        /* Entries recorded while it was off have no known location. */
        memset(a->sites, 0, a->cap_sites * sizeof *a->sites);
    a->on = on != 0;
    if (!a->on)
        a->pending = NULL;
}

int ag_tape_anomaly(const ag_tape *t) { return t ? t->anomaly.on : 0; }

ag_tape *ag_tape_here(ag_tape *t, const char *file, int line)
{
    if (t) {
        t->anomaly.here.file = file;
        t->anomaly.here.line = line;
    }
    return t;
}

bool agi_anomaly_pause(ag_tape *t)
{
    if (t->anomaly.pending)
        agi_anomaly_flush(t);
    bool was_on = t->anomaly.on;
    t->anomaly.on = false;
    return was_on;
}

void agi_anomaly_resume(ag_tape *t, bool was_on) { t->anomaly.on = was_on; }

void agi_anomaly_free(ag_tape *t)
{
    agi_anomaly *a = &t->anomaly;
    agi_realloc(t->alloc, t->alloc_ud, a->sites, a->cap_sites * sizeof *a->sites, 0);
    a->sites = NULL;
    a->cap_sites = 0;
}

/* Room for the location of entry n - 1, grown with the entries' capacity. */
static bool reserve_sites(ag_tape *t, size_t n)
{
    agi_anomaly *a = &t->anomaly;
    if (n <= a->cap_sites)
        return true;
    size_t cap = t->cap_entries > n ? t->cap_entries : n;
    agi_site *s = agi_realloc(t->alloc, t->alloc_ud, a->sites, a->cap_sites * sizeof *s,
                              cap * sizeof *s);
    if (!s) {
        agi_error(t, AG_ENOMEM, "anomaly mode: out of memory keeping the places of %zu ops", cap);
        return false;
    }
    memset(s + a->cap_sites, 0, (cap - a->cap_sites) * sizeof *s);
    a->sites = s;
    a->cap_sites = cap;
    return true;
}

bool agi_anomaly_note(ag_tape *t, ag_tensor *x)
{
    agi_anomaly *a = &t->anomaly;
    if (!x->op)
        return true;
    bool recorded = (x->flags & AGI_RECORDED) != 0;
    if (recorded) {
        if (!reserve_sites(t, t->n_entries))
            return false;
        /* An op recorded by a create-graph backward has no line of its own. */
        a->sites[t->n_entries - 1] = t->in_backward ? (agi_site){0} : a->here;
    }
    /* Gradients made during backward are checked there, op by op. */
    if (t->in_backward)
        return true;
    a->pending = x;
    a->pending_site = a->here;
    a->pending_entry = recorded ? t->n_entries - 1 : SIZE_MAX;
    return true;
}

/* The index of x's first NaN or infinity, or -1. */
static int64_t first_non_finite(const ag_tensor *x)
{
    if (x->dtype == AG_F32) {
        const float *v = x->value;
        for (int64_t i = 0; i < x->numel; i++)
            if (!isfinite(v[i]))
                return i;
    } else {
        const double *v = x->value;
        for (int64_t i = 0; i < x->numel; i++)
            if (!isfinite(v[i]))
                return i;
    }
    return -1;
}

/* "NaN" (whatever its sign bit), "inf" or "-inf". */
static const char *non_finite_name(double v)
{
    return isnan(v) ? "NaN" : v > 0 ? "inf" : "-inf";
}

/* "tests/foo.c:12 (tape entry 3)" and the like. */
static void describe_place(char *buf, size_t n, agi_site site, size_t entry)
{
    char where[160], pos[48];
    if (site.file)
        snprintf(where, sizeof where, "at %s:%d", site.file, site.line);
    else
        snprintf(where, sizeof where, "at an unknown line (include autograd_trace.h)");
    if (entry == SIZE_MAX)
        snprintf(pos, sizeof pos, "not recorded");
    else
        snprintf(pos, sizeof pos, "tape entry %zu", entry);
    snprintf(buf, n, "%s (%s)", where, pos);
}

/* "0 'x' f64 [3], 1 f64 []": the inputs of op result x. */
static void describe_inputs(char *buf, size_t n, const ag_tensor *x)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < x->nin && len < n; i++) {
        const ag_tensor *in = x->in[i];
        int w = snprintf(buf + len, n - len, "%s%d %s%s%s%s %s", i ? ", " : "", i,
                         in->name ? "'" : "", in->name ? in->name : "", in->name ? "' " : "",
                         ag_dtype_name((ag_dtype)in->dtype), agi_shp(in, 0));
        len += w > 0 ? (size_t)w : 0;
    }
}

void agi_anomaly_flush(ag_tape *t)
{
    agi_anomaly *a = &t->anomaly;
    ag_tensor *x = a->pending;
    a->pending = NULL;
    if (t->status != AG_OK || x->epoch != t->epoch)
        return;
    int64_t bad = first_non_finite(x);
    if (bad < 0)
        return;
    char place[224], inputs[160];
    describe_place(place, sizeof place, a->pending_site, a->pending_entry);
    describe_inputs(inputs, sizeof inputs, x);
    agi_error(t, AG_ENUMERIC, "anomaly: %s %s gave %s at element %lld of its result %s; inputs: %s",
              x->op->name, place, non_finite_name(agi_get(x, bad)), (long long)bad, agi_shp(x, 1),
              inputs);
}

void agi_anomaly_check_grads(ag_tape *t, size_t entry)
{
    const ag_tensor *e = t->entries[entry];
    for (int j = 0; j < e->nin; j++) {
        const ag_tensor *x = e->in[j];
        /* The accumulated gradient: a raw vjp adds straight into it, and
        ** every earlier contribution was checked when it arrived, so a bad
        ** value now comes from this op. Only an entry, or a leaf this pass
        ** reached, has a gradient of this pass: a leaf's may be stale. */
        if (!(x->flags & AGI_REQUIRES_GRAD) || !x->gacc ||
            !(x->flags & (AGI_RECORDED | AGI_COLLECTED)))
            continue;
        int64_t bad = first_non_finite(x->gacc);
        if (bad < 0)
            continue;
        agi_site site = entry < t->anomaly.cap_sites ? t->anomaly.sites[entry] : (agi_site){0};
        char place[224], inputs[160];
        describe_place(place, sizeof place, site, entry);
        describe_inputs(inputs, sizeof inputs, e);
        agi_error(t, AG_ENUMERIC,
                  "anomaly: backward of %s %s gave %s at element %lld of the gradient of input %d; "
                  "inputs: %s",
                  e->op->name, place, non_finite_name(agi_get(x->gacc, bad)), (long long)bad, j,
                  inputs);
        return;
    }
}
