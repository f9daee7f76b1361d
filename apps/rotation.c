/* Part 2 of the practical: how rotation-invariant is the trained ResNet? Accuracy on the
 * validation and test sets with every image rotated by 0, 10, ..., 360 degrees
 * (torchvision rotate semantics, applied before normalization), as a table, rotation.csv
 * and rotation.png in the checkpoint's directory.
 *   apps/rotation [--out DIR] [--device cpu|gpu] [--step 10] [--max-images N] [model flags] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/checkpoint.h"
#include "core/cli.h"
#include "core/plot.h"
#include "core/util.h"

/* The flags (one line and exit 2 on a bad one); 1 when --help was printed. Fuzzed by
 * tests/fuzz/fuzz_cli.c. */
static int rotation_flags(int argc, char **argv, TrainConfig *cfg, int *threads, int *step, int *max_images)
{
    train_config_default(cfg);
    *threads = 0, *step = 10, *max_images = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s [flags]\nAccuracy of the trained ResNet (DIR/best.safetensors) on rotated images.\n"
                   "  --step DEG             angle step (default 10)\n"
                   "  --max-images N         evaluate only the first N images of each set (quick runs)\n%s",
                   argv[0], cli_train_help);
            return 1;
        }
        if (cli_is_flag(argv[i], "--step")) *step = (int)cli_long("--step", cli_value(argc, argv, &i), 1, 360);
        else if (cli_is_flag(argv[i], "--max-images")) *max_images = (int)cli_long("--max-images", cli_value(argc, argv, &i), 1, 1000000);
        else if (!cli_train_flag(cfg, argc, argv, &i, threads)) die_code(2, "unknown flag '%s' (see --help)", argv[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    TrainConfig cfg;
    int threads, step, max_images;
    if (rotation_flags(argc, argv, &cfg, &threads, &step, &max_images)) return 0;
    cli_apply_threads(threads);
    const Ops *ops = ops_for_device(cfg.device, cfg.kernels);
    char err[1024], path[4200], shipped[4096];
    snprintf(path, sizeof path, "%s/best.safetensors", cfg.out_dir);
    ModelConfig defaults;
    model_config_default(&defaults);
    /* no local checkpoint: the one shipped beside this program, as the notebook falls back to
     * its pretrained download (practical's model only) */
    if (access(path, F_OK) != 0 && model_config_same(&cfg.model, &defaults) &&
        exe_dir(shipped, sizeof shipped) == 0) {
        strncat(shipped, "/results/ResNet/best.safetensors", sizeof shipped - strlen(shipped) - 1);
        if (access(shipped, R_OK) == 0) {
            printf("no checkpoint in %s: evaluating the shipped one, %s\n", cfg.out_dir, shipped);
            snprintf(path, sizeof path, "%s", shipped);
            mkdir_p(cfg.out_dir);
        }
    }
    Model *m = model_create(ops, &cfg.model, cfg.batch);
    if (checkpoint_load(m, path, err, sizeof err)) die_code(2, "%s (train it first with apps/resnet --out %s)", err, cfg.out_dir);
    const char *dir = cifar_dir(cfg.data_dir);
    Dataset tr, te;
    if (cifar_load_train(dir, &tr, err, sizeof err) || cifar_load_test(dir, &te, err, sizeof err)) die_code(2, "%s", err);
    int n_train = tr.n - cfg.n_val;
    int *train_idx = xmalloc(sizeof(int) * n_train), *val_idx = xmalloc(sizeof(int) * cfg.n_val);
    split_train_val(tr.n, cfg.n_val, 42, train_idx, val_idx);
    int nv = max_images && max_images < cfg.n_val ? max_images : cfg.n_val;
    int nt = max_images && max_images < te.n ? max_images : te.n;
    char csv[4200], png[4200];
    snprintf(csv, sizeof csv, "%s/rotation.csv", cfg.out_dir);
    snprintf(png, sizeof png, "%s/rotation.png", cfg.out_dir);
    FILE *f = fopen(csv, "w");
    if (!f) die_code(2, "cannot write %s: %s", csv, strerror(errno));
    fprintf(f, "angle,val_acc,test_acc\n");
    printf("rotation of %s: %d validation and %d test images\n angle   val_acc  test_acc\n", path, nv, nt);
    for (int a = 0; a <= 360; a += step) {
        double v = evaluate(m, &tr, val_idx, nv, NULL, a, cfg.batch);
        double t = evaluate(m, &te, NULL, nt, NULL, a, cfg.batch);
        printf("%6d   %.4f   %.4f\n", a, v, t);
        fprintf(f, "%d,%.6f,%.6f\n", a, v, t);
        fflush(f);
    }
    xfclose(f, csv);
    const char *series[] = {"validation", "test"};
    plot_csv(png, csv, "Accuracy of the trained ResNet on rotated images", "rotation angle (degrees)",
             "accuracy", 2, series, "set xtics 0,30,360\nset yrange [0:1]");
    printf("wrote %s\n", csv);
    model_free(m);
    dataset_free(&tr);
    dataset_free(&te);
    free(train_idx);
    free(val_idx);
    return 0;
}
