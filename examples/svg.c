/*
** svg.c: the SVG writer of svg.h. Write errors are not checked call by
** call: stdio keeps them, and svg_close reports them once.
*/
#include "svg.h"

#include <math.h>

int svg_open(svg *s, const char *path, double width, double height)
{
    s->f = fopen(path, "w");
    s->width = width;
    s->height = height;
    if (!s->f)
        return -1;
    fprintf(s->f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n",
            width, height, width, height);
    svg_rect(s, 0, 0, width, height, "white");
    return 0;
}

int svg_close(svg *s)
{
    fputs("</svg>\n", s->f);
    int failed = ferror(s->f);
    if (fclose(s->f) != 0)
        failed = 1;
    s->f = NULL;
    return failed ? -1 : 0;
}

void svg_rect(svg *s, double x, double y, double w, double h, const char *fill)
{
    fprintf(s->f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
            x, y, w, h, fill);
}

void svg_tiles_begin(svg *s) { fputs("<g shape-rendering=\"crispEdges\">\n", s->f); }

void svg_tiles_end(svg *s) { fputs("</g>\n", s->f); }

void svg_circle(svg *s, double cx, double cy, double r, const char *fill, const char *stroke)
{
    fprintf(s->f,
            "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\" stroke=\"%s\"/>\n",
            cx, cy, r, fill, stroke);
}

void svg_line(svg *s, double x1, double y1, double x2, double y2, const char *stroke, double width)
{
    fprintf(s->f,
            "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
            "stroke-width=\"%.2f\"/>\n",
            x1, y1, x2, y2, stroke, width);
}

void svg_text(svg *s, double x, double y, double size, const char *anchor, const char *text)
{
    fprintf(s->f, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%.1f\" text-anchor=\"%s\">", x, y, size,
            anchor);
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '<': fputs("&lt;", s->f); break;
        case '>': fputs("&gt;", s->f); break;
        case '&': fputs("&amp;", s->f); break;
        case '"': fputs("&quot;", s->f); break;
        default: fputc(*c, s->f);
        }
    }
    fputs("</text>\n", s->f);
}

double svg_chart_x(const svg_chart *c, double x)
{
    return c->left + (x - c->xmin) / (c->xmax - c->xmin) * c->width;
}

double svg_chart_y(const svg_chart *c, double y)
{
    return c->top + (c->ymax - y) / (c->ymax - c->ymin) * c->height;
}

/* A round step (1, 2 or 5 times a power of ten) giving about five ticks. */
static double tick_step(double span)
{
    double raw = span / 5, power = pow(10, floor(log10(raw)));
    double unit = raw / power;
    return power * (unit < 1.5 ? 1 : unit < 3.5 ? 2 : unit < 7.5 ? 5 : 10);
}

void svg_chart_axes(svg *s, const svg_chart *c, const char *title, const char *xlabel,
                    const char *ylabel)
{
    double right = c->left + c->width, bottom = c->top + c->height;
    char label[32];
    double step = tick_step(c->xmax - c->xmin);
    for (double v = ceil(c->xmin / step) * step; v <= c->xmax + step * 1e-9; v += step) {
        double x = svg_chart_x(c, v);
        svg_line(s, x, c->top, x, bottom, "#e0e0e0", 1);
        snprintf(label, sizeof label, "%g", fabs(v) < step * 1e-9 ? 0.0 : v);
        svg_text(s, x, bottom + 16, 12, "middle", label);
    }
    step = tick_step(c->ymax - c->ymin);
    for (double v = ceil(c->ymin / step) * step; v <= c->ymax + step * 1e-9; v += step) {
        double y = svg_chart_y(c, v);
        svg_line(s, c->left, y, right, y, "#e0e0e0", 1);
        snprintf(label, sizeof label, "%g", fabs(v) < step * 1e-9 ? 0.0 : v);
        svg_text(s, c->left - 6, y + 4, 12, "end", label);
    }
    fprintf(s->f,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
            "stroke=\"#404040\"/>\n",
            c->left, c->top, c->width, c->height);
    if (title)
        svg_text(s, c->left + c->width / 2, c->top - 10, 14, "middle", title);
    if (xlabel)
        svg_text(s, c->left + c->width / 2, bottom + 36, 12, "middle", xlabel);
    if (ylabel) {
        double x = c->left - 44, y = c->top + c->height / 2;
        fprintf(s->f, "<g transform=\"rotate(-90 %.2f %.2f)\">\n", x, y);
        svg_text(s, x, y, 12, "middle", ylabel);
        fputs("</g>\n", s->f);
    }
}

void svg_chart_line(svg *s, const svg_chart *c, int n, const double *x, const double *y,
                    const char *color, double width)
{
    fputs("<polyline points=\"", s->f);
    for (int i = 0; i < n; i++)
        fprintf(s->f, "%s%.2f,%.2f", i ? " " : "", svg_chart_x(c, x[i]), svg_chart_y(c, y[i]));
    fprintf(s->f,
            "\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.2f\" "
            "stroke-linejoin=\"round\"/>\n",
            color, width);
}

void svg_legend(svg *s, double x, double y, const char *color, const char *text)
{
    svg_line(s, x, y - 4, x + 20, y - 4, color, 2.5);
    svg_text(s, x + 26, y, 12, "start", text);
}
