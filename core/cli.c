#include <errno.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include "core/cli.h"
#include "core/ops.h"
#include "core/util.h"

long cli_long(const char *flag, const char *val, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (errno || end == val || *end || v < lo || v > hi)
        die_code(2, "%s: expected an integer in [%ld, %ld], got '%s'", flag, lo, hi, val);
    return v;
}

double cli_double(const char *flag, const char *val, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || !(v >= lo && v <= hi))
        die_code(2, "%s: expected a number in [%g, %g], got '%s'", flag, lo, hi, val);
    return v;
}

const char *cli_value(int argc, char **argv, int *i)
{
    const char *eq = strchr(argv[*i], '=');
    if (eq) return eq + 1;
    if (*i + 1 >= argc) die_code(2, "%s: missing value", argv[*i]);
    return argv[++*i];
}

int cli_is_flag(const char *arg, const char *name)
{
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == 0 || arg[n] == '=');
}

const char cli_train_help[] =
    "  --device cpu|gpu       where to train (default cpu)\n"
    "  --kernels fast|reference  the tuned kernels and fused slots (default), or the readable\n"
    "                         kernels of cpu/ or gpu/ run by the plain walk (core/net_plain.c)\n"
    "  --gpu-math 3xtf32|fp32 the GPU convolutions' products: tensor cores, each product as three\n"
    "                         tf32 products (fp32's accuracy; default where the card has them),\n"
    "                         or CUDA cores in fp32\n"
    "  --block preact|original  residual block type (default preact)\n"
    "  --blocks 2,2,3         blocks per stage\n"
    "  --channels 16,24,32    channels per stage\n"
    "  --epochs N             (default 100)\n"
    "  --batch-size N         (default 128)\n"
    "  --lr X                 (default 0.1)\n"
    "  --momentum X           (default 0.9)\n"
    "  --weight-decay X       (default 1e-4)\n"
    "  --milestones A,B       MultiStepLR epochs (default 70,90)\n"
    "  --gamma X              MultiStepLR factor (default 0.1)\n"
    "  --val-every N          validate every N epochs and after the last (default 10)\n"
    "  --seed N               (default 42)\n"
    "  --data DIR             CIFAR-10 binary directory (else $CIFAR10_DIR, else ./data/cifar-10-batches-bin)\n"
    "  --out DIR              output directory\n"
    "  --threads N            CPU threads (default: all cores)\n"
    "  --no-flip, --no-crop   switch off a training augmentation\n"
    "  --batchnorm sync|local with several processes (apps/resnet-mpi): statistics over the\n"
    "                         whole batch (default: the same model as one process), or over\n"
    "                         each process's slice (PyTorch DDP's default: a different model)\n"
    "  --retrain              train even if the best checkpoint exists\n"
    "  --resume               continue from DIR/last.state\n";

int cli_train_flag(TrainConfig *c, int argc, char **argv, int *i, int *threads)
{
    const char *a = argv[*i];
    if (cli_is_flag(a, "--device")) {
        c->device = cli_value(argc, argv, i);
        if (strcmp(c->device, "cpu") && strcmp(c->device, "gpu")) die_code(2, "--device: expected cpu or gpu, got '%s'", c->device);
    } else if (cli_is_flag(a, "--kernels")) {
        c->kernels = cli_kernels(cli_value(argc, argv, i));
    } else if (cli_is_flag(a, "--batchnorm")) {
        const char *v = cli_value(argc, argv, i);
        if (!strcmp(v, "sync")) c->batchnorm_local = 0;
        else if (!strcmp(v, "local")) c->batchnorm_local = 1;
        else die_code(2, "--batchnorm: expected sync or local, got '%s'", v);
    } else if (cli_is_flag(a, "--gpu-math")) {
        cli_gpu_math(cli_value(argc, argv, i));
    } else if (cli_is_flag(a, "--block")) {
        const char *v = cli_value(argc, argv, i);
        if (!strcmp(v, "preact")) c->model.block = BLOCK_PREACT;
        else if (!strcmp(v, "original")) c->model.block = BLOCK_ORIGINAL;
        else die_code(2, "--block: expected preact or original, got '%s'", v);
    } else if (cli_is_flag(a, "--blocks") || cli_is_flag(a, "--channels")) {
        int ch = cli_is_flag(a, "--channels"), v[MAX_STAGES];
        const char *s = cli_value(argc, argv, i);
        int n = parse_int_list(s, v, MAX_STAGES);
        if (n <= 0) die_code(2, "%s: expected a comma-separated list of positive integers, got '%s'", ch ? "--channels" : "--blocks", s);
        for (int k = 0; k < n; k++) (ch ? c->model.channels : c->model.blocks)[k] = v[k];
        c->model.n_stages = n;   /* model_create checks that both lists cover every stage */
    } else if (cli_is_flag(a, "--epochs")) c->epochs = (int)cli_long("--epochs", cli_value(argc, argv, i), 1, 100000);
    else if (cli_is_flag(a, "--batch-size")) c->batch = (int)cli_long("--batch-size", cli_value(argc, argv, i), 1, 65536);
    else if (cli_is_flag(a, "--lr")) c->lr = cli_double("--lr", cli_value(argc, argv, i), 0, 100);
    else if (cli_is_flag(a, "--momentum")) c->momentum = cli_double("--momentum", cli_value(argc, argv, i), 0, 1);
    else if (cli_is_flag(a, "--weight-decay")) c->weight_decay = cli_double("--weight-decay", cli_value(argc, argv, i), 0, 1);
    else if (cli_is_flag(a, "--gamma")) c->gamma = cli_double("--gamma", cli_value(argc, argv, i), 0, 1);
    else if (cli_is_flag(a, "--milestones")) {
        const char *s = cli_value(argc, argv, i);
        c->n_milestones = parse_int_list(s, c->milestones, 16);
        if (c->n_milestones < 0) die_code(2, "--milestones: expected a comma-separated list of epochs, got '%s'", s);
    } else if (cli_is_flag(a, "--val-every")) c->val_every = (int)cli_long("--val-every", cli_value(argc, argv, i), 1, 100000);
    else if (cli_is_flag(a, "--seed")) c->seed = (uint64_t)cli_long("--seed", cli_value(argc, argv, i), 0, 0x7fffffffL);
    else if (cli_is_flag(a, "--data")) c->data_dir = cli_value(argc, argv, i);
    else if (cli_is_flag(a, "--out")) c->out_dir = cli_value(argc, argv, i);
    else if (cli_is_flag(a, "--threads")) *threads = (int)cli_long("--threads", cli_value(argc, argv, i), 1, 1024);
    else if (!strcmp(a, "--no-flip")) c->flip = 0;
    else if (!strcmp(a, "--no-crop")) c->crop = 0;
    else if (!strcmp(a, "--retrain")) c->retrain = 1;
    else if (!strcmp(a, "--resume")) c->resume = 1;
    else return 0;
    return 1;
}

const char *cli_kernels(const char *v)
{
    if (strcmp(v, "fast") && strcmp(v, "reference")) die_code(2, "--kernels: expected fast or reference, got '%s'", v);
    return v;
}

void cli_gpu_math(const char *v)
{
    int m = !strcmp(v, "3xtf32") ? GPU_CONV_3XTF32 : !strcmp(v, "fp32") ? GPU_CONV_FP32 : -1;
    if (m < 0) die_code(2, "--gpu-math: expected 3xtf32 or fp32, got '%s'", v);
    if (gpu_set_conv_math(m)) die_code(2, "--gpu-math %s: this build's GPU code cannot run it (no CUDA, or CUDA_ARCH below 80)", v);
}

void cli_apply_threads(int threads)
{
    if (threads > 0) omp_set_num_threads(threads);
}
