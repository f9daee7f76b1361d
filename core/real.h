/* `real` is the scalar type of the CPU reference operators in cpu/.
 * The library builds them with real = float (the op table's type). The gradient-check
 * tests build the very same sources a second time with -DCONVNET_REAL_DOUBLE and
 * tests/f64_names.h, which renames every function to name_f64, so finite differences
 * run in double precision and can use tight tolerances. */
#ifndef CONVNET_REAL_H
#define CONVNET_REAL_H
#ifdef CONVNET_REAL_DOUBLE
typedef double real;
#else
typedef float real;
#endif
#endif
