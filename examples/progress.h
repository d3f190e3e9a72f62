/*
** progress.h: a training progress report for the examples. On a terminal it
** is one line redrawn in place (a bar, steps/s, the running loss and the time
** left); into a pipe or a file it is a plain line every quarter of the
** way, so that logs stay short.
*/
#ifndef EXAMPLES_PROGRESS_H
#define EXAMPLES_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct progress {
    FILE *out;
    int tty;                 /* redraw in place (out is a terminal) */
    char label[48];          /* "epoch 3/10" */
    int64_t total;           /* steps in this run of the bar */
    int64_t next_line;       /* plain mode: the step of the next line */
    double start, last_draw; /* seconds, from progress_now */
} progress;

/* Seconds on a monotonic clock, for measuring durations. */
double progress_now(void);
/* Starts a bar of 'total' steps titled 'label' (copied) on 'out'. */
void progress_start(progress *p, FILE *out, const char *label, int64_t total);
/* Reports that 'done' of the steps are finished and the running loss is
** 'loss'. On a terminal, redraws at most ten times a second. */
void progress_update(progress *p, int64_t done, double loss);
/* Ends the bar (clearing the line on a terminal); returns the seconds since
** progress_start. */
double progress_finish(progress *p);

#endif
