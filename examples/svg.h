/*
** svg.h: just enough SVG for the examples' pictures (a decision boundary, a
** training curve), written by hand so that no plotting library is needed.
** Coordinates are pixels from the top-left corner unless a chart maps them.
** The output is deterministic: numbers are printed with two decimals.
*/
#ifndef EXAMPLES_SVG_H
#define EXAMPLES_SVG_H

#include <stdio.h>

typedef struct svg {
    FILE *f;
    double width, height;
} svg;

/* Creates 'path' and writes the header of a width x height picture with a
** white background. Returns 0, or -1 with errno set when the file cannot be
** created. */
int svg_open(svg *s, const char *path, double width, double height);
/* Writes the closing tag and closes the file. Returns 0, or -1 with errno
** set when anything failed to be written. */
int svg_close(svg *s);

/* Shapes. Colours are SVG colour strings ("#1f77b4", "none"). */
void svg_rect(svg *s, double x, double y, double w, double h, const char *fill);
/* A group of shapes drawn with crisp edges: tiles that touch show no seam
** where anti-aliasing would blend each edge with the white below. */
void svg_tiles_begin(svg *s);
void svg_tiles_end(svg *s);
void svg_circle(svg *s, double cx, double cy, double r, const char *fill, const char *stroke);
void svg_line(svg *s, double x1, double y1, double x2, double y2, const char *stroke, double width);
/* Text at (x, y), the baseline; 'anchor' is "start", "middle" or "end".
** The text is escaped for XML. */
void svg_text(svg *s, double x, double y, double size, const char *anchor, const char *text);

/* A chart: the data window [xmin, xmax] x [ymin, ymax] drawn in the
** rectangle at (left, top) of size width x height, y growing upwards. */
typedef struct svg_chart {
    double left, top, width, height;
    double xmin, xmax, ymin, ymax;
} svg_chart;

double svg_chart_x(const svg_chart *c, double x);   /* data x to pixels */
double svg_chart_y(const svg_chart *c, double y);
/* A frame, light grid lines at round values with their labels, a title
** above and axis labels (any may be NULL). */
void svg_chart_axes(svg *s, const svg_chart *c, const char *title, const char *xlabel,
                    const char *ylabel);
/* A line through the n data points (x[i], y[i]). */
void svg_chart_line(svg *s, const svg_chart *c, int n, const double *x, const double *y,
                    const char *color, double width);
/* A legend entry: a short stroke of 'color' then 'text', at pixel (x, y). */
void svg_legend(svg *s, double x, double y, const char *color, const char *text);

#endif
