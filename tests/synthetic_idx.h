/*
** synthetic_idx.h: a small, generated stand-in for Fashion-MNIST in the IDX
** format, so that tests read data through the real reader without the
** Debian data set. Image i has label i % 10, and its pixels draw a band
** whose position depends on the label, plus deterministic noise: a model
** can learn it, and the same call writes the same bytes everywhere.
*/
#ifndef TESTS_SYNTHETIC_IDX_H
#define TESTS_SYNTHETIC_IDX_H

#include "io_fixtures.h"

#include <stdint.h>
#include <stdlib.h>

enum { SYNTH_CLASSES = 10 };

static inline void synth_put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static inline unsigned char synth_pixel(uint32_t i, uint32_t r, uint32_t c, uint32_t rows)
{
    uint32_t label = i % SYNTH_CLASSES;
    uint32_t band = label * rows / SYNTH_CLASSES;
    uint32_t noise = (i * 2654435761u + r * 40503u + c * 9973u) >> 27;   /* 0..31 */
    return (unsigned char)((r == band || r == band + 1 ? 200 : 20) + noise);
}

/* Writes n images of rows x cols and their labels as IDX files at the two
** paths. Returns 1 on success. */
static inline int synth_write_idx(const char *images, const char *labels, uint32_t n,
                                  uint32_t rows, uint32_t cols)
{
    size_t img_len = 16 + (size_t)n * rows * cols, lab_len = 8 + (size_t)n;
    unsigned char *img = malloc(img_len), *lab = malloc(lab_len);
    int ok = img && lab;
    if (ok) {
        synth_put_be32(img, 0x803);
        synth_put_be32(img + 4, n);
        synth_put_be32(img + 8, rows);
        synth_put_be32(img + 12, cols);
        synth_put_be32(lab, 0x801);
        synth_put_be32(lab + 4, n);
        unsigned char *p = img + 16;
        for (uint32_t i = 0; i < n; i++) {
            lab[8 + i] = (unsigned char)(i % SYNTH_CLASSES);
            for (uint32_t r = 0; r < rows; r++)
                for (uint32_t c = 0; c < cols; c++)
                    *p++ = synth_pixel(i, r, c, rows);
        }
        ok = write_bytes(images, img, img_len) && write_bytes(labels, lab, lab_len);
    }
    free(img);
    free(lab);
    return ok;
}

#endif
