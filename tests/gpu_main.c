/* The GPU-vs-CPU suite alone, linked against the real CUDA build (make gpu-test), for a
 * machine with a GPU: the same tests the emulator runs in `make test`. */
#include <check.h>
#include <stdlib.h>

Suite *suite_gpu(void);

int main(void)
{
    SRunner *sr = srunner_create(suite_gpu());
    srunner_set_fork_status(sr, CK_NOFORK);   /* one process: compute-sanitizer sees every kernel */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
