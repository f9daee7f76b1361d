/* core/dist.h for one process: nothing to add, the whole batch is this process's. */
#include "core/dist.h"

void dist_init(int *argc, char ***argv) { (void)argc; (void)argv; }
void dist_finalize(void) {}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
const char *dist_name(void) { return ""; }
void dist_sum(double *v, size_t n) { (void)v; (void)n; }
void dist_sum_floats(float *v, size_t n) { (void)v; (void)n; }
void dist_slice(int n, int *lo, int *hi) { *lo = 0; *hi = n; }
int dist_any(int flag) { return flag != 0; }
double dist_seconds(void) { return 0; }
void dist_local(int *local_rank, int *local_size) { *local_rank = 0; *local_size = 1; }
void dist_broadcast(void *buf, size_t bytes) { (void)buf; (void)bytes; }
