/* The practical's train_model(...) in C: what PyTorch Lightning does for the notebook.
 *   per epoch: shuffle, forward, loss, backward, SGD step; MultiStepLR per epoch;
 *   validation every val_every epochs and after the last; keep the best-validation weights
 *   (ModelCheckpoint mode max on val_acc); at the end evaluate the best weights on the
 *   validation and test sets and write results.json {"test": ..., "val": ...}.
 * Files in out_dir: best.safetensors (PyTorch state_dict names), last.state (resume),
 * metrics.csv (one row per epoch), training_curve.png (+ .gp), split_val.txt (the indices
 * of the 5,000 validation images in the 50,000 training records), results.json.
 * With the practical's default model and no checkpoint in out_dir, the checkpoint shipped
 * in shipped_dir (apps/results/ResNet) is copied there and evaluated, as the notebook
 * downloads its pretrained weights; --retrain trains instead. */
#ifndef CONVNET_TRAIN_H
#define CONVNET_TRAIN_H
#include <stdint.h>
#include "core/cifar.h"
#include "core/model.h"

typedef struct TrainConfig {
    const char *device;
    const char *kernels;        /* "fast" or "reference" (NULL: fast, or $CONVNET_KERNELS) */
    ModelConfig model;
    int epochs, batch;
    double lr, momentum, weight_decay, gamma;
    int milestones[16], n_milestones;
    int val_every;
    uint64_t seed;
    const char *data_dir, *out_dir;
    int retrain, resume;
    const char *shipped_dir;   /* a trained checkpoint to use when out_dir has none, or NULL
                                * (apps/resnet sets it when every flag is the practical's default) */
    int flip, crop;            /* training augmentation switches (both on by default) */
    const int *perm;           /* pixel permutation for every split (Part 3), or NULL */
    int n_val;                 /* 5000 */
    const Dataset *train_set, *test_set;   /* given (tests) or NULL: loaded from data_dir */
    int stop_after_epoch;      /* tests: return after this many epochs (simulated kill), 0 = off */
    void (*on_step)(void *arg, int epoch, int step);   /* tests: called after every step, or NULL */
    void *on_step_arg;
    int quiet;
    int batchnorm_local;       /* several processes: batchnorm over each one's slice (not synchronized) */
} TrainConfig;

typedef struct TrainResult {
    double val, test;          /* accuracy of the best weights */
    double best_val;
    int best_epoch, epochs_run, loaded_pretrained, used_shipped;
    int interrupted;           /* the signal (SIGINT, SIGTERM) that stopped the run, or 0; its
                                * state is saved and the caller exits with 128 + it */
    double seconds_per_epoch, images_per_second;
    double val_history[1024];  /* val accuracy per epoch (NaN where not validated) */
} TrainResult;

void train_config_default(TrainConfig *cfg);
double lr_at_epoch(const TrainConfig *cfg, int epoch);   /* MultiStepLR */
/* Returns 0, or exits with a clear message on user errors (bad data, bad checkpoint). */
int train_run(const TrainConfig *cfg, TrainResult *res);
/* 1 if the training recipe (model, schedule, optimizer, augmentation, seed) is the default one */
int train_config_is_default(const TrainConfig *cfg);
/* Accuracy of the model (eval mode) on the given records. */
double evaluate(Model *m, const Dataset *ds, const int *idx, int n, const int *perm, double rotate_deg, int batch);

#endif
