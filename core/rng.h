/* Explicit, serializable random number generator (PCG32, O'Neill 2014).
 * No global state: every user owns an Rng and passes it along; its 16 bytes go into
 * the training-state file so a resumed run draws the same numbers. */
#ifndef CONVNET_RNG_H
#define CONVNET_RNG_H
#include <stdint.h>

typedef struct Rng { uint64_t state, inc; } Rng;

void rng_seed(Rng *r, uint64_t seed, uint64_t stream);
uint32_t rng_u32(Rng *r);
double rng_uniform(Rng *r);                     /* [0, 1) with 53 random bits */
double rng_uniform_range(Rng *r, double a, double b);
int rng_int(Rng *r, int n);                     /* uniform in [0, n), unbiased */
double rng_normal(Rng *r);                      /* standard normal (Box-Muller) */
void rng_shuffle(Rng *r, int *a, int n);        /* Fisher-Yates */

#endif
