/*
** rng.c: our own seeded generator, xoshiro256** (Blackman and Vigna) seeded
** through splitmix64, and the random tensor constructors. Integer arithmetic
** only up to the final scaling, so a seed gives the same bits everywhere.
*/
#include "internal.h"

#include <math.h>

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ag_rng_seed(ag_rng *r, uint64_t seed)
{
    if (!r)
        return;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
    r->has_spare = 0;
    r->spare = 0.0;
}

uint64_t ag_rng_next(ag_rng *r)
{
    if (!r)
        return 0;   /* no generator, no crash: a constant stream */
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double ag_rng_uniform(ag_rng *r) { return (double)(ag_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t ag_rng_below(ag_rng *r, uint64_t n)
{
    if (n == 0)
        return 0;
    /* Rejection keeps every residue equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = ag_rng_next(r);
    while (x >= limit);
    return x % n;
}

/* Marsaglia's polar method: needs only log and sqrt, and yields two variates. */
double ag_rng_normal(ag_rng *r)
{
    if (!r)
        return NAN;
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u, v, s;
    do {
        u = 2.0 * ag_rng_uniform(r) - 1.0;
        v = 2.0 * ag_rng_uniform(r) - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    r->spare = v * m;
    r->has_spare = 1;
    return u * m;
}

void ag_fill_uniform(ag_tensor *x, ag_rng *r, double lo, double hi)
{
    if (!r || !agi_usable(x, "ag_fill_uniform"))
        return;
    for (int64_t i = 0; i < x->numel; i++)
        agi_set(x, i, lo + (hi - lo) * ag_rng_uniform(r));
}

void ag_fill_normal(ag_tensor *x, ag_rng *r, double mean, double std)
{
    if (!r || !agi_usable(x, "ag_fill_normal"))
        return;
    for (int64_t i = 0; i < x->numel; i++)
        agi_set(x, i, mean + std * ag_rng_normal(r));
}

static ag_tensor *random_tensor(ag_tape *t, const char *who, ag_rng *r, ag_dtype dt, int rank,
                                const int64_t *shape, double a, double b, bool normal)
{
    if (!t || t->status != AG_OK)
        return agi_nil(t);
    if (!r)
        return agi_error(t, AG_EINVAL, "%s: rng is NULL", who);
    if (!isfinite(a) || !isfinite(b) || (!normal && a > b) || (normal && b < 0))
        return agi_error(t, AG_EINVAL, "%s: parameters %g and %g are invalid", who, a, b);
    if (!agi_check_make(t, who, dt, rank, shape))
        return agi_nil(t);
    ag_tensor *x = ag_zeros(t, dt, rank, shape);
    if (normal)
        ag_fill_normal(x, r, a, b);
    else
        ag_fill_uniform(x, r, a, b);
    return x;
}

ag_tensor *ag_rand(ag_tape *t, ag_rng *r, ag_dtype dt, int rank, const int64_t *shape, double lo,
                   double hi)
{
    return random_tensor(t, "ag_rand", r, dt, rank, shape, lo, hi, false);
}

ag_tensor *ag_randn(ag_tape *t, ag_rng *r, ag_dtype dt, int rank, const int64_t *shape, double mean,
                    double std)
{
    return random_tensor(t, "ag_randn", r, dt, rank, shape, mean, std, true);
}
