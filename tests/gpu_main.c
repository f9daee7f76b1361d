/* The GPU-vs-CPU suite alone, linked against the real CUDA build (make gpu-test), for a
 * machine with a GPU: the same tests the emulator runs in `make test`. (make test also links
 * it against the emulator built with FMA contraction: build/gpu_tests_emu_fma.)
 * One process by default (compute-sanitizer sees every kernel; one CUDA context for all), each
 * test's result printed as it ends, so a test that stops the process (a failed CUDA call
 * exits) is the one after the last line. CK_FORK=yes runs each test in a process of its own
 * (a context each: slower, but one failure no longer hides the tests after it). */
#include <check.h>
#include <stdlib.h>

Suite *suite_gpu(void);

int main(void)
{
    SRunner *sr = srunner_create(suite_gpu());
    if (!getenv("CK_FORK")) srunner_set_fork_status(sr, CK_NOFORK);
    if (!getenv("CK_LOG_FILE_NAME")) srunner_set_log(sr, "/dev/stderr");   /* a line as each test ends */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
