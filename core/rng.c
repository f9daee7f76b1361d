#include <math.h>
#include "core/rng.h"

void rng_seed(Rng *r, uint64_t seed, uint64_t stream)
{
    r->state = 0;
    r->inc = (stream << 1u) | 1u;
    rng_u32(r);
    r->state += seed;
    rng_u32(r);
}

uint32_t rng_u32(Rng *r)
{
    uint64_t old = r->state;
    r->state = old * 6364136223846793005ULL + r->inc;
    uint32_t xorshifted = (uint32_t)(((old >> 18u) ^ old) >> 27u);
    uint32_t rot = (uint32_t)(old >> 59u);
    return (xorshifted >> rot) | (xorshifted << ((-rot) & 31));
}

double rng_uniform(Rng *r)
{
    uint64_t hi = rng_u32(r) >> 5, lo = rng_u32(r) >> 6;   /* 27 + 26 bits */
    return (hi * 67108864.0 + lo) / 9007199254740992.0;
}

double rng_uniform_range(Rng *r, double a, double b) { return a + (b - a) * rng_uniform(r); }

int rng_int(Rng *r, int n)
{
    uint32_t bound = (uint32_t)n, threshold = (-bound) % bound;
    for (;;) {
        uint32_t x = rng_u32(r);
        if (x >= threshold) return (int)(x % bound);
    }
}

double rng_normal(Rng *r)
{
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_shuffle(Rng *r, int *a, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = rng_int(r, i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}
