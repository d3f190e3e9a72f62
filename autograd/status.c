/*
** status.c: status codes and the one error funnel. The first error on a tape
** wins; set a breakpoint in agi_verror to stop at any error.
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_strings[] = {
    [AG_OK] = "ok",
    [AG_ENOMEM] = "out of memory",
    [AG_EINVAL] = "invalid argument",
    [AG_ESHAPE] = "shape mismatch",
    [AG_EDTYPE] = "dtype mismatch",
    [AG_ESTATE] = "invalid state",
    [AG_EIO] = "input/output error",
    [AG_ENUMERIC] = "non-finite value",
    [AG_EUNSUPPORTED] = "not supported by this build",
};
_Static_assert(ARRAY_LEN(status_strings) == AG_STATUS_COUNT, "one string per status");

const char *ag_status_str(ag_status s)
{
    if ((unsigned)s >= AG_STATUS_COUNT)
        return "unknown status";
    return status_strings[s];
}

void agi_verror(ag_tape *t, ag_status s, const char *fmt, va_list ap)
{
    if (!t || t->status != AG_OK || s == AG_OK)
        return;
    t->status = s;
    vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
    if (t->trap) {
        fprintf(stderr, "autograd trap: %s\n", t->errmsg);
        abort();
    }
}

ag_tensor *agi_error(ag_tape *t, ag_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    agi_verror(t, s, fmt, ap);
    va_end(ap);
    return agi_nil(t);
}

void ag_tape_fail(ag_tape *t, ag_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    agi_verror(t, s, fmt, ap);
    va_end(ap);
}

/* Work deferred until the last op's result is whole comes first: in
** anomaly mode its check, in forward mode its tangent; either may record
** the error asked about. The tape is never a const object (ag_tape_new
** makes it), so the cast is sound. */
static void flush_pending(const ag_tape *t)
{
    if (t->anomaly.pending)
        agi_anomaly_flush((ag_tape *)t);
    if (t->n_jvp_pending)
        agi_jvp_flush((ag_tape *)t);
}

ag_status ag_tape_status(const ag_tape *t)
{
    if (!t)
        return AG_EINVAL;
    flush_pending(t);
    return t->status;
}

const char *ag_tape_errmsg(const ag_tape *t)
{
    if (!t)
        return "ag_tape_errmsg: tape is NULL";
    flush_pending(t);
    return t->errmsg;
}

void ag_tape_set_trap(ag_tape *t, int on)
{
    if (t)
        t->trap = on;
}
