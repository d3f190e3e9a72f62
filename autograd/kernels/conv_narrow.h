/*
** conv_narrow.h: what ops_conv.c asks of conv_narrow.c, the weight
** gradient of a convolution with few unfolded columns, summed directly.
** Private to the library.
*/
#ifndef AG_CONV_NARROW_H
#define AG_CONV_NARROW_H

#include "../autograd.h"

#include <stdint.h>

/* The most columns K = C/groups KH KW summed this way. */
enum { AGK_NARROW_MAX_K = 16 };

/* Elements of one group's sums (dtype-sized), for og rows of gy and k
** columns: zeroed by the caller before the first image. */
int64_t agk_narrow_sums(int64_t og, int64_t k);
/* Adds one image's terms, gy [og, P] times cols [k, P] transposed, into
** 'sums'; image after image, in order. */
void agk_narrow_add(ag_dtype dt, const void *gy, const void *cols, int64_t og, int64_t k,
                    int64_t P, void *sums);
/* The sums' totals into dw [og, k], each a fixed tree of its lanes. */
void agk_narrow_total(ag_dtype dt, const void *sums, int64_t og, int64_t k, void *dw);

#endif
