/*
** elementwise.c: kernels that are not templates: in-place accumulation.
*/
#include "kernels.h"

void agk_add_inplace(ag_dtype dt, int64_t n, void *dst, const void *src)
{
    if (dt == AG_F32) {
        float *d = dst;
        const float *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    } else {
        double *d = dst;
        const double *s = src;
        for (int64_t i = 0; i < n; i++)
            d[i] += s[i];
    }
}
