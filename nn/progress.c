/*
** progress.c: the progress bar or progress lines of nn_io.h, for training
** loops of any program.
*/
#define _POSIX_C_SOURCE 200809L   /* clock_gettime, isatty, fileno */
#include "nn_io.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

enum { BAR_WIDTH = 24, PLAIN_LINES = 4 };

double nn_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void nn_progress_start(nn_progress *p, FILE *out, const char *label, int64_t total)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    out = p->out;
    p->tty = isatty(fileno(out));
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->total = total > 0 ? total : 1;
    p->next_line = (p->total + PLAIN_LINES - 1) / PLAIN_LINES;
    p->start = p->last_draw = nn_now();
}

/* "1:05" or "1:02:05". */
static void format_duration(double seconds, char *buf, size_t size)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, size, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, size, "%ld:%02ld", s / 60, s % 60);
}

void nn_progress_update(nn_progress *p, int64_t done, double loss)
{
    if (!p || !p->out)
        return;
    double now = nn_now(), elapsed = now - p->start;
    int last = done >= p->total;
    if (p->tty ? (now - p->last_draw < 0.1 && !last) : done < p->next_line)
        return;
    p->last_draw = now;
    double rate = elapsed > 0 ? (double)done / elapsed : 0;
    char left[32];
    format_duration(rate > 0 ? (double)(p->total - done) / rate : 0, left, sizeof left);
    if (p->tty) {
        char bar[BAR_WIDTH + 1];
        int filled = (int)(BAR_WIDTH * done / p->total);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        /* \033[K clears what a longer previous line left behind. */
        fprintf(p->out, "\r  %s [%s] %lld/%lld  %.0f steps/s  loss %.4f  %s left\033[K", p->label,
                bar, (long long)done, (long long)p->total, rate, loss, left);
    } else {
        fprintf(p->out, "  %s  step %lld/%lld  %.0f steps/s  loss %.4f  %s left\n", p->label,
                (long long)done, (long long)p->total, rate, loss, left);
        while (p->next_line <= done)
            p->next_line += (p->total + PLAIN_LINES - 1) / PLAIN_LINES;
    }
    fflush(p->out);
}

double nn_progress_finish(nn_progress *p)
{
    if (!p || !p->out)
        return 0.0;
    if (p->tty) {
        fputs("\r\033[K", p->out);
        fflush(p->out);
    }
    return nn_now() - p->start;
}
