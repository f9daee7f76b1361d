/* Part 1 of the practical: train the pre-activation ResNet (or the original block) on
 * CIFAR-10, keep the best-validation weights, report validation and test accuracy.
 *   apps/resnet [--device cpu|gpu] [--epochs 100] ... (apps/resnet --help) */
#include <stdio.h>
#include <string.h>
#include "core/cli.h"
#include "core/dist.h"
#include "core/util.h"

/* The flags (one line and exit 2 on a bad one); 1 when --help was printed. Fuzzed by
 * tests/fuzz/fuzz_cli.c. */
static int resnet_flags(int argc, char **argv, TrainConfig *cfg, int *threads)
{
    train_config_default(cfg);
    *threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s [flags]\nTrain the practical's ResNet on CIFAR-10 (Part 1).\n%s", argv[0], cli_train_help);
            return 1;
        }
        if (!cli_train_flag(cfg, argc, argv, &i, threads))
            die_code(2, "unknown flag '%s' (see --help)", argv[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* progress lines reach logs as they happen */
    dist_init(&argc, &argv);   /* one process, or (apps/resnet-mpi under mpirun) one of several: core/dist.h */
    TrainConfig cfg;
    int threads;
    if (resnet_flags(argc, argv, &cfg, &threads)) {
        dist_finalize();
        return 0;
    }
    cli_apply_threads(threads);
    /* the practical's defaults: with no checkpoint in --out, use the one shipped beside this
     * program (apps/results/ResNet), as the notebook uses its pretrained download */
    static char shipped[4096];
    if (train_config_is_default(&cfg) && exe_dir(shipped, sizeof shipped) == 0) {
        strncat(shipped, "/results/ResNet", sizeof shipped - strlen(shipped) - 1);
        cfg.shipped_dir = shipped;
    }
    TrainResult res;
    train_run(&cfg, &res);
    int rc = res.interrupted ? 128 + res.interrupted : 0;   /* interrupted: state saved; --resume continues */
    if (!rc && res.epochs_run && dist_rank() == 0)
        printf("%d epochs, %.1f s/epoch, %.0f img/s; best val %.4f at epoch %d\n", res.epochs_run,
               res.seconds_per_epoch, res.images_per_second, res.best_val, res.best_epoch);
    dist_finalize();
    return rc;
}
