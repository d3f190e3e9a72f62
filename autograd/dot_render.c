/*
** dot_render.c: DOT text to SVG, PNG or PDF in process, through Graphviz's
** libgvc when the build found it (AG_HAVE_GRAPHVIZ); otherwise a clear
** "built without Graphviz" error, while the DOT text itself always works.
*/
#include "internal.h"

#include <errno.h>
#include <string.h>

#ifdef AG_HAVE_GRAPHVIZ
#include <gvc.h>
#include <stdlib.h>
#endif

static void set_err(char *err, size_t errlen, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool known_format(const char *format)
{
    return !strcmp(format, "svg") || !strcmp(format, "png") || !strcmp(format, "pdf");
}

#ifdef AG_HAVE_GRAPHVIZ

int ag_dot_can_render(void) { return 1; }

/* Graphviz's own message for the last error, without its trailing newline. */
static void graphviz_err(char *err, size_t errlen, const char *what)
{
    char *msg = aglasterr();
    size_t n = msg ? strlen(msg) : 0;
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        n--;
    if (n)
        set_err(err, errlen, "ag_dot_render: %s: %.*s", what, (int)n, msg);
    else
        set_err(err, errlen, "ag_dot_render: %s", what);
    free(msg);   /* aglasterr's result is malloc'ed by Graphviz */
}

/* One Graphviz context for the whole process, made on first use and never
** freed. Graphviz 2.42's pango plugin remembers the last font by a pointer
** into its context's font table, so rendering with a second context after
** freeing a first reads freed memory; one context keeps that pointer valid.
** (Graphviz is not thread-safe in any case: see ag_dot_render.) */
static GVC_t *context(void)
{
    static GVC_t *gvc;
    if (!gvc)
        gvc = gvContext();
    return gvc;
}

static ag_status render(const char *dot, const char *format, const char *path, char *err,
                        size_t errlen)
{
    /* Messages go to Graphviz's buffer, for aglasterr, instead of stderr. */
    agerrlevel_t level = agseterr(AGMAX);
    ag_status s = AG_OK;
    GVC_t *gvc = context();
    Agraph_t *g = gvc ? agmemread(dot) : NULL;
    if (!gvc) {
        set_err(err, errlen, "ag_dot_render: Graphviz could not start");
        s = AG_ENOMEM;
    } else if (!g) {
        graphviz_err(err, errlen, "the DOT text does not parse");
        s = AG_EINVAL;
    } else if (gvLayout(gvc, g, "dot") != 0) {
        graphviz_err(err, errlen, "Graphviz could not lay out the graph");
        s = AG_EINVAL;
    } else {
        if (gvRenderFilename(gvc, g, format, path) != 0) {
            graphviz_err(err, errlen, "Graphviz could not render it");
            s = AG_EIO;
        }
        gvFreeLayout(gvc, g);
    }
    if (g)
        agclose(g);
    agseterr(level);
    return s;
}

#else

int ag_dot_can_render(void) { return 0; }

static ag_status render(const char *dot, const char *format, const char *path, char *err,
                        size_t errlen)
{
    (void)dot, (void)format;
    set_err(err, errlen,
            "ag_dot_render: cannot make '%s': autograd was built without Graphviz (libgvc); "
            "write DOT text (.dot) instead and run 'dot -T%s'",
            path, format);
    return AG_EUNSUPPORTED;
}

#endif

ag_status ag_dot_render(const char *dot, const char *format, const char *path, char *err,
                        size_t errlen)
{
    set_err(err, errlen, "%s", "");
    if (!dot || !format || !path) {
        set_err(err, errlen, "ag_dot_render: %s is NULL",
                !dot ? "the DOT text" : !format ? "the format" : "the path");
        return AG_EINVAL;
    }
    if (!known_format(format)) {
        set_err(err, errlen, "ag_dot_render: format '%s' is not svg, png or pdf", format);
        return AG_EINVAL;
    }
    if (!ag_dot_can_render())
        return render(dot, format, path, err, errlen);
    /* Open the file ourselves first: a clear message, and Graphviz never
    ** meets a path it cannot write. */
    FILE *f = fopen(path, "wb");
    if (!f) {
        set_err(err, errlen, "ag_dot_render: cannot open '%s' for writing: %s", path,
                strerror(errno));
        return AG_EIO;
    }
    fclose(f);
    return render(dot, format, path, err, errlen);
}
