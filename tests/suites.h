#ifndef CONVNET_SUITES_H
#define CONVNET_SUITES_H
#include <check.h>
#define SUITE(name) Suite *name(void);
#include "tests/suites.def"
#undef SUITE
#endif
