/* Part 3 of the practical: train the same ResNet on images whose pixels are permuted by one
 * fixed random permutation (the same for every image and channel; flip and crop happen
 * before it), and, for comparison, on the plain images with the same schedule and seed.
 * The practical asks whether the CNN uses spatial structure differently than the MLP of the
 * previous practical, so an MLP (3072-512-256-10, ReLU, SGD) is trained on both too: it sees
 * the image as a flat vector, so a fixed permutation of its inputs changes nothing it can
 * use, and its two accuracies should agree within noise.
 * Writes DIR/permutation.txt, DIR/{shuffled,unshuffled,mlp_shuffled,mlp_unshuffled}/
 * (checkpoints, metrics, TensorBoard), DIR/shuffle.csv (validation accuracy per epoch of the
 * four runs) and DIR/shuffle.png.
 *   apps/shuffle [--epochs 10] [--perm-seed 42] [--mlp-lr 0.01] [--no-mlp] [--out DIR] [training flags] */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core/augment.h"
#include "core/cli.h"
#include "core/files.h"
#include "core/plot.h"
#include "core/util.h"

/* val_acc column of metrics.csv per epoch (NaN where not validated) */
static int read_val_history(const char *csv, double *val, int max)
{
    FILE *f = fopen(csv, "r");
    if (!f) return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        int e;
        double lr, loss, acc;
        char rest[512] = "";
        if (sscanf(line, "%d,%lf,%lf,%lf,%511s", &e, &lr, &loss, &acc, rest) < 4 || e < 1 || e > max) continue;
        val[e - 1] = rest[0] == ',' ? NAN : atof(rest);
        if (e > n) n = e;
    }
    fclose(f);
    return n;
}

typedef struct ShuffleFlags { int threads, mlp; long perm_seed; double mlp_lr; } ShuffleFlags;

/* The flags (one line and exit 2 on a bad one); 1 when --help was printed. Fuzzed by
 * tests/fuzz/fuzz_cli.c. */
static int shuffle_flags(int argc, char **argv, TrainConfig *cfg, ShuffleFlags *o)
{
    train_config_default(cfg);
    cfg->epochs = 10;
    cfg->val_every = 1;
    cfg->n_milestones = 0;          /* the practical's short retraining: constant lr */
    cfg->out_dir = "saved_models/practical2/Shuffle";
    *o = (ShuffleFlags){.threads = 0, .mlp = 1, .perm_seed = 42, .mlp_lr = 0.01};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: %s [flags]\nTrain on pixel-shuffled CIFAR-10 and on the plain images (Part 3).\n"
                   "  --perm-seed N          seed of the pixel permutation (default 42)\n"
                   "  --mlp-lr X             learning rate of the MLP runs (default 0.01)\n"
                   "  --no-mlp               train the ResNet only\n%s"
                   "defaults here: --epochs 10 --val-every 1, no lr milestones\n", argv[0], cli_train_help);
            return 1;
        }
        if (cli_is_flag(argv[i], "--perm-seed")) o->perm_seed = cli_long("--perm-seed", cli_value(argc, argv, &i), 0, 0x7fffffffL);
        else if (cli_is_flag(argv[i], "--mlp-lr")) o->mlp_lr = cli_double("--mlp-lr", cli_value(argc, argv, &i), 1e-6, 10);
        else if (!strcmp(argv[i], "--no-mlp")) o->mlp = 0;
        else if (!cli_train_flag(cfg, argc, argv, &i, &o->threads)) die_code(2, "unknown flag '%s' (see --help)", argv[i]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    TrainConfig cfg;
    ShuffleFlags o;
    if (shuffle_flags(argc, argv, &cfg, &o)) return 0;
    cli_apply_threads(o.threads);
    int mlp = o.mlp;
    long perm_seed = o.perm_seed;
    double mlp_lr = o.mlp_lr;
    char path[17000], err[1024], dirs[4][4200], csv[4200], png[4200];
    mkdir_p(cfg.out_dir);
    files_remove_stale_temps(cfg.out_dir, 0);   /* permutation.txt.tmp.<pid> of a killed run */
    int perm[CIFAR_H * CIFAR_W];
    snprintf(path, sizeof path, "%s/permutation.txt", cfg.out_dir);
    if (access(path, F_OK) == 0 && !cfg.retrain) {
        if (permutation_load(path, perm, CIFAR_H * CIFAR_W, err, sizeof err)) die_code(2, "%s", err);
        printf("using the saved pixel permutation %s\n", path);
    } else {
        permutation_from_seed(perm, CIFAR_H * CIFAR_W, (uint64_t)perm_seed);
        if (permutation_save(path, perm, CIFAR_H * CIFAR_W, err, sizeof err)) die("%s", err);
        printf("drew a pixel permutation from seed %ld: %s\n", perm_seed, path);
    }
    /* runs: ResNet plain, ResNet shuffled, MLP plain, MLP shuffled (same data, schedule, seed) */
    int runs = mlp ? 4 : 2;
    TrainResult res[4];
    const char *names[4] = {"unshuffled", "shuffled", "mlp_unshuffled", "mlp_shuffled"};
    for (int r = 0; r < runs; r++) {
        TrainConfig c = cfg;
        snprintf(dirs[r], sizeof dirs[r], "%s/%s", cfg.out_dir, names[r]);
        c.out_dir = dirs[r];
        c.perm = r % 2 ? perm : NULL;
        if (r >= 2) {
            model_config_mlp(&c.model);
            c.lr = mlp_lr;
        }
        printf("== %s: %s images ==\n", r >= 2 ? "MLP" : "ResNet", r % 2 ? "pixel-shuffled" : "plain");
        train_run(&c, &res[r]);
        if (res[r].interrupted) return 128 + res[r].interrupted;   /* --resume continues */
    }
    static double hist[4][1024];
    int n = 0;
    for (int r = 0; r < runs; r++) {
        for (int e = 0; e < 1024; e++) hist[r][e] = NAN;
        snprintf(path, sizeof path, "%s/metrics.csv", dirs[r]);
        int k = read_val_history(path, hist[r], 1024);
        if (k > n) n = k;
    }
    snprintf(csv, sizeof csv, "%s/shuffle.csv", cfg.out_dir);
    snprintf(png, sizeof png, "%s/shuffle.png", cfg.out_dir);
    FILE *f = fopen(csv, "w");
    if (!f) die_code(2, "cannot write %s: %s", csv, strerror(errno));
    fprintf(f, "epoch,val_unshuffled,val_shuffled%s\n", mlp ? ",val_mlp_unshuffled,val_mlp_shuffled" : "");
    for (int e = 0; e < n; e++) {
        fprintf(f, "%d", e + 1);
        for (int r = 0; r < runs; r++) isnan(hist[r][e]) ? fprintf(f, ",") : fprintf(f, ",%.6f", hist[r][e]);
        fprintf(f, "\n");
    }
    xfclose(f, csv);
    const char *series[] = {"ResNet, plain images", "ResNet, pixel-shuffled", "MLP, plain images", "MLP, pixel-shuffled"};
    plot_csv(png, csv, "Validation accuracy: plain vs pixel-shuffled CIFAR-10", "epoch", "validation accuracy",
             runs, series, "set yrange [0:1]\nset xtics 1");
    printf("\n%-16s  %8s  %8s\n", "run", "val", "test");
    for (int r = 0; r < runs; r++) printf("%-16s  %8.4f  %8.4f\n", names[r], res[r].val, res[r].test);
    printf("gap (unshuffled - shuffled): ResNet val %.4f, test %.4f\n", res[0].val - res[1].val, res[0].test - res[1].test);
    if (mlp) printf("gap (unshuffled - shuffled): MLP    val %.4f, test %.4f\n", res[2].val - res[3].val, res[2].test - res[3].test);
    return 0;
}
