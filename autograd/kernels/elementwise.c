/*
** elementwise.c: kernels that are not templates: in-place accumulation,
** on the pool's threads when it is large (each element alone: same bits).
*/
#include "kernels.h"

static void add_f32(int64_t n, float *restrict d, const float *restrict s)
{
    for (int64_t i = 0; i < n; i++)
        d[i] += s[i];
}

static void add_f64(int64_t n, double *restrict d, const double *restrict s)
{
    for (int64_t i = 0; i < n; i++)
        d[i] += s[i];
}

typedef struct add_job {
    ag_dtype dt;
    void *dst;
    const void *src;
} add_job;

static void add_range(void *ctx, int64_t begin, int64_t end)
{
    const add_job *j = ctx;
    if (j->dt == AG_F32)
        add_f32(end - begin, (float *)j->dst + begin, (const float *)j->src + begin);
    else
        add_f64(end - begin, (double *)j->dst + begin, (const double *)j->src + begin);
}

/* Below this many elements per thread, the sum stays on one thread. */
enum { MIN_ELEMS_PER_THREAD = 1 << 15 };

void agk_add_inplace(ag_pool *pool, ag_dtype dt, int64_t n, void *dst, const void *src)
{
    add_job j = {dt, dst, src};
    ag_pool_for(pool, n, MIN_ELEMS_PER_THREAD, add_range, &j);
}
