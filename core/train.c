#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "core/checkpoint.h"
#include "core/devdata.h"
#include "core/dist.h"
#include "cpu/cpu.h"
#include "core/gpustep.h"
#include "core/loader.h"
#include "core/progress.h"
#include "core/tblog.h"
#include "core/train.h"
#include "core/plot.h"
#include "core/stop.h"
#include "core/util.h"

/* GPU training: how many graph launches the host may queue before it waits for the card (see
 * the loop). 8 steps are 85 ms with the fast kernels on an H200, 1 s with the readable ones. */
#define GPU_STEPS_AHEAD 8

void train_config_default(TrainConfig *c)
{
    memset(c, 0, sizeof *c);
    c->device = "cpu";
    model_config_default(&c->model);
    c->epochs = 100;
    c->batch = 128;
    c->lr = 0.1;
    c->momentum = 0.9;
    c->weight_decay = 1e-4;
    c->gamma = 0.1;
    c->milestones[0] = 70; c->milestones[1] = 90; c->n_milestones = 2;
    c->val_every = 10;
    c->seed = 42;
    c->out_dir = "saved_models/practical2/ResNet";
    c->flip = c->crop = 1;
    c->n_val = 5000;
}

int train_config_is_default(const TrainConfig *c)
{
    TrainConfig d;
    train_config_default(&d);
    if (!model_config_same(&c->model, &d.model) || c->epochs != d.epochs || c->batch != d.batch ||
        c->lr != d.lr || c->momentum != d.momentum || c->weight_decay != d.weight_decay ||
        c->gamma != d.gamma || c->n_milestones != d.n_milestones || c->val_every != d.val_every ||
        c->seed != d.seed || c->flip != d.flip || c->crop != d.crop || c->perm)
        return 0;
    for (int i = 0; i < d.n_milestones; i++) if (c->milestones[i] != d.milestones[i]) return 0;
    return 1;
}

double lr_at_epoch(const TrainConfig *c, int epoch)
{
    double lr = c->lr;
    for (int i = 0; i < c->n_milestones; i++) if (epoch >= c->milestones[i]) lr *= c->gamma;
    return lr;
}

static int file_exists(const char *p) { return access(p, F_OK) == 0; }

/* dst = src, atomically; 0 or -1 with err set */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
    size_t len;
    char *buf = read_file(src, &len, err, errlen);
    if (!buf) return -1;
    int rc = atomic_write(dst, buf, len, err, errlen);
    free(buf);
    return rc;
}


/* Images classified correctly, with the batches built on the device (any table but the
 * CPU's). dd: the device's copy of lc->ds with lc->perm, or NULL to upload one for this call. */
static long correct_on_device(Model *m, const LoaderConfig *lc, DeviceData *dd)
{
    DeviceData *own = dd ? NULL : devdata_create(m->ops, lc->ds, lc->perm, lc->batch);
    if (own) dd = own;
    int n = lc->indices ? lc->n : lc->ds->n;
    int *order = xmalloc(sizeof(int) * (n > 0 ? n : 1));
    int32_t *y = xmalloc(sizeof(int32_t) * lc->batch);
    loader_order(lc, 0, order);
    long correct = 0;
    for (int b = 0; b * lc->batch < n; b++) {
        int count = n - b * lc->batch < lc->batch ? n - b * lc->batch : lc->batch, ok;
        devdata_fill(dd, lc, order, 0, b, count, m->input, y);
        model_forward_input(m, count, 0);
        model_loss(m, y, count, &ok);
        correct += ok;
    }
    free(order);
    free(y);
    devdata_free(own);
    return correct;
}

/* Images classified correctly among ds's images idx[0..n) (all of ds when idx is NULL) */
static long correct_of(Model *m, DeviceData *dd, const Dataset *ds, const int *idx, int n, const int *perm,
                       double rotate_deg, int batch)
{
    LoaderConfig lc = {.ds = ds, .indices = idx, .n = n, .batch = batch, .perm = perm, .rotate_deg = rotate_deg};
    if (!m->ops->host) return correct_on_device(m, &lc, dd);
    Loader *l = loader_create(&lc);
    long correct = 0;
    loader_start_epoch(l, 0);
    for (const Batch *b; (b = loader_next(l));) {
        int ok;
        model_forward(m, b->x, b->n, 0);
        model_loss(m, b->y, b->n, &ok);
        correct += ok;
    }
    loader_free(l);
    return correct;
}

/* Accuracy. With several processes (core/dist.h) each classifies its contiguous share of the
 * images and the counts are added: the same figure, N times sooner. */
static double evaluate_dd(Model *m, DeviceData *dd, const Dataset *ds, const int *idx, int n, const int *perm,
                          double rotate_deg, int batch)
{
    if (!idx) n = ds->n;
    int lo, hi, *all = NULL;
    dist_slice(n, &lo, &hi);   /* (one process: all of them) */
    if (!idx && hi - lo < n) {   /* a share of the whole set: its indices, to take the share */
        all = xmalloc(sizeof(int) * (size_t)n);
        for (int i = 0; i < n; i++) all[i] = i;
        idx = all;
    }
    double correct = hi > lo ? (double)correct_of(m, dd, ds, idx ? idx + lo : NULL, hi - lo, perm, rotate_deg, batch) : 0;
    dist_sum(&correct, 1);   /* (one process: nothing) */
    free(all);
    return n ? correct / n : 0;
}

double evaluate(Model *m, const Dataset *ds, const int *idx, int n, const int *perm, double rotate_deg, int batch)
{
    return evaluate_dd(m, NULL, ds, idx, n, perm, rotate_deg, batch);
}

/* Keep the rows of metrics.csv up to `epochs` (a resumed run rewrites the ones after). */
static void metrics_truncate(const char *path, int epochs)
{
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024], *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    while (fgets(line, sizeof line, f)) {
        int e;
        if (sscanf(line, "%d,", &e) == 1 && e > epochs) continue;
        fputs(line, mem);
    }
    fclose(f);
    fclose(mem);
    char err[512];
    if (atomic_write(path, out, len, err, sizeof err) != 0) die("%s", err);
    free(out);
}

/* The state of a run stopped by a signal, and the one line that says how to go on. */
static void interrupt_save(const Model *m, const TrainState *at, const char *state_path, int epoch, int steps, int quiet)
{
    char err[1024];
    if (dist_rank() == 0 && train_state_save(m, at, state_path, err, sizeof err)) die("%s", err);
    const char *name = stop_signal() == SIGINT ? "interrupt" : stop_signal() == SIGTERM ? "SIGTERM" : "signal";
    if (!quiet)
        fprintf(stderr, "\nconvnet: stopped by %s in epoch %d after step %d of %d; saved %s: run the same "
                "command with --resume to continue\n", name, epoch + 1, at->step, steps, state_path);
}

int train_run(const TrainConfig *cfg, TrainResult *res)
{
    memset(res, 0, sizeof *res);
    for (int i = 0; i < 1024; i++) res->val_history[i] = NAN;
    /* data parallel over processes (core/dist.h): every process trains its slice of each
     * batch; rank 0 alone writes files and prints. On GPUs, one each (gpu/dist.cu), chosen
     * before the first CUDA call. */
    char err[1024];
    if (cfg->batch < dist_size())
        die_code(2, "a batch of %d over %d processes leaves some without an image: fewer processes, or --batch-size %d "
                 "or more", cfg->batch, dist_size(), dist_size());
    if (dist_size() > 1 && !strcmp(cfg->device, "gpu")) {
        int local_rank, local_size;
        dist_local(&local_rank, &local_size);
        if (gpu_dist_init(dist_rank(), dist_size(), local_rank, local_size, dist_broadcast, err, sizeof err))
            die_code(2, "data-parallel GPU training (%s): %s", dist_name(), err);
    }
    const Ops *ops = ops_for_device(cfg->device, cfg->kernels);
    int writer = dist_rank() == 0, quiet = cfg->quiet || !writer;
    if (dist_size() > 1 && !ops->host && ops->fused)   /* (ops_for_device gives the data-parallel table) */
        die_code(2, "data-parallel GPU training (%s): the %s table's fused batchnorm cannot add its sums over the "
                 "processes", dist_name(), ops->name);
    if (dist_size() > 1 && !ops->host && cfg->batchnorm_local)
        die_code(2, "--batchnorm local: on the CPU only for now (the GPU's batchnorm always uses the whole batch)");
    void (*sync)(double *, int) = batchnorm_sync;   /* (restored at the end) */
    if (cfg->batchnorm_local) batchnorm_sync = NULL;   /* each process's own statistics: another model */
    char best_path[4200], state_path[4200], csv_path[4200], json_path[4200];
    mkdir_p(cfg->out_dir);
    if (writer) files_remove_stale_temps(cfg->out_dir, quiet);
    snprintf(best_path, sizeof best_path, "%s/best.safetensors", cfg->out_dir);
    snprintf(state_path, sizeof state_path, "%s/last.state", cfg->out_dir);
    snprintf(csv_path, sizeof csv_path, "%s/metrics.csv", cfg->out_dir);
    snprintf(json_path, sizeof json_path, "%s/results.json", cfg->out_dir);

    Dataset train_loaded = {0}, test_loaded = {0};
    const Dataset *train_set = cfg->train_set, *test_set = cfg->test_set;
    if (!train_set) {
        const char *dir = cifar_dir(cfg->data_dir);
        if (cifar_load_train(dir, &train_loaded, err, sizeof err)) die_code(2, "%s", err);
        if (cifar_load_test(dir, &test_loaded, err, sizeof err)) die_code(2, "%s", err);
        train_set = &train_loaded;
        test_set = &test_loaded;
    }
    int n_val = cfg->n_val, n_train = train_set->n - n_val;
    if (n_train < cfg->batch) die_code(2, "training set (%d) smaller than one batch (%d)", n_train, cfg->batch);
    int *train_idx = xmalloc(sizeof(int) * n_train), *val_idx = xmalloc(sizeof(int) * n_val);
    split_train_val(train_set->n, n_val, 42, train_idx, val_idx);   /* the practical's split seed */

    Model *m = model_create(ops, &cfg->model, cfg->batch);
    if (!quiet)
        printf("%s on %s%s%s: %zu trainable parameters; train %d / val %d / test %d\n",
               cfg->model.mlp ? "MLP" : cfg->model.block == BLOCK_PREACT ? "ResNet (preact)" : "ResNet (original)", ops->name,
               dist_size() > 1 ? ", " : "", dist_name(), model_num_trainable(m), n_train, n_val, test_set->n);

    /* the validation split, for anyone who wants the same images (bench/torch_practical.py) */
    if (!cfg->train_set && writer) {
        size_t cap = (size_t)n_val * 8 + 16, len = 0;
        char *txt = xmalloc(cap);
        for (int i = 0; i < n_val; i++) len += (size_t)snprintf(txt + len, cap - len, "%d\n", val_idx[i]);
        char split_path[4200];
        snprintf(split_path, sizeof split_path, "%s/split_val.txt", cfg->out_dir);
        if (atomic_write(split_path, txt, len, err, sizeof err)) die("%s", err);
        free(txt);
    }

    int have_best = file_exists(best_path), stopped = 0;
    ModelConfig defaults;
    model_config_default(&defaults);
    if (!have_best && !cfg->retrain && !cfg->resume && cfg->shipped_dir && !cfg->perm &&
        !cfg->train_set && model_config_same(&cfg->model, &defaults)) {
        char src[4200];
        snprintf(src, sizeof src, "%s/best.safetensors", cfg->shipped_dir);
        if (file_exists(src)) {
            if (writer && copy_file(src, best_path, err, sizeof err)) die_code(2, "%s", err);
            snprintf(src, sizeof src, "%s/metrics.csv", cfg->shipped_dir);
            if (writer && file_exists(src) && !file_exists(csv_path) && copy_file(src, csv_path, err, sizeof err))
                die("%s", err);
            if (!quiet)
                printf("no checkpoint in %s: using the shipped one, %s/best.safetensors (trained by "
                       "convnet.c at the practical's defaults; --retrain trains instead)\n",
                       cfg->out_dir, cfg->shipped_dir);
            have_best = 1;
            res->used_shipped = 1;
        }
    }
    /* every process decides alike, and none reads best_path before rank 0 has copied it */
    have_best = dist_any(have_best);
    DeviceData *dd = NULL;   /* the device's copy of the training set (devices other than the CPU) */
    if (have_best && !cfg->retrain && !cfg->resume) {
        if (checkpoint_load(m, best_path, err, sizeof err)) die_code(2, "%s", err);
        if (!quiet && !res->used_shipped)
            printf("found %s: skipping training (pass --retrain to train again)\n", best_path);
        res->loaded_pretrained = 1;
    } else {
        TrainState st = {.best_val = -1, .best_epoch = -1, .seed = cfg->seed};
        if (cfg->resume && dist_any(file_exists(state_path))) {
            if (train_state_load(m, &st, state_path, err, sizeof err)) die_code(2, "%s", err);
            if (st.seed != cfg->seed) die_code(2, "%s was trained with --seed %llu, not %llu", state_path,
                                               (unsigned long long)st.seed, (unsigned long long)cfg->seed);
            if (writer) metrics_truncate(csv_path, st.epoch);
            if (!quiet && st.step)
                printf("resuming epoch %d at step %d (best val so far %.4f)\n", st.epoch + 1, st.step + 1, st.best_val);
            else if (!quiet)
                printf("resuming after epoch %d (best val %.4f)\n", st.epoch, st.best_val);
        } else {
            if (cfg->resume && !quiet) printf("no %s to resume from: starting fresh\n", state_path);
            Rng rng;
            rng_seed(&rng, cfg->seed, 1);
            model_init(m, &rng);
            if (writer) {
                FILE *f = fopen(csv_path, "w");
                if (!f) die_code(2, "cannot write %s: %s", csv_path, strerror(errno));
                fprintf(f, "epoch,lr,train_loss,train_acc,val_acc,seconds,img_per_s\n");
                fclose(f);
                unlink(best_path);   /* a fresh run must not keep a stale "best" from another run */
            }
        }
        LoaderConfig lc = {.ds = train_set, .indices = train_idx, .n = n_train, .batch = cfg->batch,
                           .shuffle = 1, .drop_last = 1, .flip = cfg->flip, .crop = cfg->crop,
                           .perm = cfg->perm, .seed = cfg->seed};
        /* CPU: a background thread prepares the next batch; other devices: the data set
         * lives on the device and batches are built there (core/devdata.c). Same batches. */
        int on_cpu = ops->host;
        Loader *loader = on_cpu ? loader_create(&lc) : NULL;
        if (!on_cpu) dd = devdata_create(ops, train_set, cfg->perm, cfg->batch);
        GpuStep *gs = on_cpu ? NULL : gpustep_create(m, dd, &lc, 1);
        int steps = n_train / cfg->batch;   /* drop_last */
        TbLog tb = {0};   /* (not opened: its calls do nothing) */
        char tbdir[4200];
        snprintf(tbdir, sizeof tbdir, "%s/tensorboard", cfg->out_dir);
        if (writer && tblog_open(&tb, tbdir, err, sizeof err)) die_code(2, "%s", err);
        double total_time = 0;
        long total_imgs = 0;
        stop_install();   /* Ctrl-C / SIGTERM: finish the step, save, exit (core/stop.h) */
        stop_set_quiet(!writer);   /* (one process says so for all) */
        for (int epoch = st.epoch; epoch < cfg->epochs && !res->interrupted; epoch++) {
            /* a run stopped inside this epoch goes on from the step after the saved one */
            int first = epoch == st.epoch && st.step <= steps ? st.step : 0;
            double lr = lr_at_epoch(cfg, epoch), t0 = now_seconds(), loss_sum = first ? st.loss_sum : 0;
            double before = first ? st.seconds : 0;   /* seconds of this epoch before the stop */
            long correct = first ? st.correct : 0, seen = first ? st.seen : 0;
            Progress pr;
            progress_begin(&pr, epoch, cfg->epochs, steps);
            if (on_cpu) loader_start_epoch_at(loader, epoch, first);
            else gpustep_epoch(gs, &lc, epoch, first, loss_sum, correct);
            for (int step = first; step < steps; step++) {
                int count = cfg->batch;
                if (on_cpu) {
                    /* every process draws the whole batch and trains on its rows (one
                     * process: all of them); the loss and the gradients are the whole
                     * batch's (core/dist.h: the sums do nothing with one process) */
                    const Batch *b = loader_next(loader);
                    int lo, hi, ok;
                    dist_slice(b->n, &lo, &hi);
                    count = b->n;
                    m->batch_share = (double)(hi - lo) / b->n;
                    model_forward(m, b->x + (size_t)lo * CIFAR_PIXELS, hi - lo, 1);
                    double loss = model_loss(m, b->y + lo, hi - lo, &ok);
                    if (dist_size() > 1) {
                        double sums[2] = {loss * (hi - lo), ok};
                        dist_sum(sums, 2);
                        loss = sums[0] / count;
                        ok = (int)sums[1];
                    }
                    if (!isfinite(loss))
                        die("training diverged at epoch %d step %d (loss %g); the last good checkpoints "
                            "(%s, %s) are kept", epoch + 1, step + 1, loss, best_path, state_path);
                    model_backward(m, hi - lo);
                    dist_sum_floats(m->grads, m->n_params);
                    model_sgd_step(m, (float)lr, (float)cfg->momentum, (float)cfg->weight_decay);
                    loss_sum += loss * count;
                    correct += ok;
                    tblog_scalar(&tb, "train_loss", m->steps, (float)loss);
                } else {
                    /* one graph launch; loss and accuracy are summed on the device */
                    gpustep_run(gs, (float)lr, (float)cfg->momentum, (float)cfg->weight_decay);
                    /* launches return at once: without a wait the host would queue the whole
                     * epoch, its progress lines would count launches, not finished steps, and
                     * Ctrl-C would wait for the queue (44 s with the readable kernels on an
                     * H200). At most GPU_STEPS_AHEAD steps queued keeps the card fed. */
                    if ((step + 1) % GPU_STEPS_AHEAD == 0) m->ops->sync();
                }
                seen += count;
                if (!quiet) progress_step(&pr, step + 1, on_cpu ? loss_sum / seen : NAN,
                                               on_cpu ? (double)correct / seen : NAN,
                                               seen / (before + now_seconds() - t0));
                if (cfg->on_step) cfg->on_step(cfg->on_step_arg, epoch, step);
                if (dist_any(stop_signal())) {   /* any process's Ctrl-C or SIGTERM stops them all */
                    if (!on_cpu) gpustep_sums(gs, &loss_sum, &correct);
                    TrainState at = st;
                    at.step = step + 1;
                    at.steps = m->steps;
                    at.loss_sum = loss_sum; at.correct = correct; at.seen = seen;
                    at.seconds = before + now_seconds() - t0;
                    interrupt_save(m, &at, state_path, epoch, steps, quiet);
                    res->interrupted = stop_signal() ? stop_signal() : SIGTERM;
                    break;
                }
            }
            if (res->interrupted) break;
            if (!on_cpu) {   /* the epoch's one read-back */
                gpustep_sums(gs, &loss_sum, &correct);
                if (!isfinite(loss_sum))
                    die("training diverged in epoch %d (loss %g); the last good checkpoints (%s, %s) are kept",
                        epoch + 1, loss_sum / seen, best_path, state_path);
                tblog_scalar(&tb, "train_loss", m->steps, (float)(loss_sum / seen));
            }
            double secs = before + now_seconds() - t0, val = NAN;
            total_time += secs;
            total_imgs += seen;
            if ((epoch + 1) % cfg->val_every == 0 || epoch + 1 == cfg->epochs) {
                val = evaluate_dd(m, dd, train_set, val_idx, n_val, cfg->perm, 0, cfg->batch);
                if (epoch < 1024) res->val_history[epoch] = val;
                if (val > st.best_val) {
                    st.best_val = val;
                    st.best_epoch = epoch + 1;
                    if (writer && checkpoint_save(m, best_path, err, sizeof err)) die("%s", err);
                }
            }
            if (!quiet) progress_end(&pr, loss_sum / seen, (double)correct / seen, val, lr, secs, seen / secs);
            tblog_scalar(&tb, "train_acc", m->steps, (float)((double)correct / seen));
            tblog_scalar(&tb, "lr", m->steps, (float)lr);
            if (!isnan(val)) tblog_scalar(&tb, "val_acc", m->steps, (float)val);
            tblog_flush(&tb);
            if (writer) {
                FILE *f = fopen(csv_path, "a");
                if (!f) die("cannot append to %s: %s", csv_path, strerror(errno));
                fprintf(f, "%d,%.6g,%.6f,%.6f,", epoch + 1, lr, loss_sum / seen, (double)correct / seen);
                if (!isnan(val)) fprintf(f, "%.6f", val);
                fprintf(f, ",%.3f,%.1f\n", secs, seen / secs);
                xfclose(f, csv_path);
            }
            st.epoch = epoch + 1;
            st.steps = m->steps;
            st.step = 0; st.loss_sum = 0; st.correct = st.seen = 0; st.seconds = 0;
            if (writer && train_state_save(m, &st, state_path, err, sizeof err)) die("%s", err);
            res->epochs_run++;
            if (dist_any(stop_signal()) && epoch + 1 < cfg->epochs) {   /* arrived during validation or the save */
                interrupt_save(m, &st, state_path, epoch + 1, steps, quiet);
                res->interrupted = stop_signal() ? stop_signal() : SIGTERM;
            }
            if (cfg->stop_after_epoch && st.epoch >= cfg->stop_after_epoch) {
                stopped = 1;   /* tests: behave as if killed here (no final evaluation) */
                break;
            }
        }
        stop_uninstall();
        tblog_close(&tb);
        loader_free(loader);
        gpustep_free(gs);
        if (res->epochs_run) {
            res->seconds_per_epoch = total_time / res->epochs_run;
            res->images_per_second = total_imgs / total_time;
        }
        res->best_val = st.best_val;
        res->best_epoch = st.best_epoch;
        if (res->interrupted) stopped = 1;
        dist_any(0);   /* (every process waits here for rank 0's last write of best_path) */
        if (!stopped && checkpoint_load(m, best_path, err, sizeof err)) die("%s", err);
    }
    if (!stopped) {
        res->val = evaluate_dd(m, dd, train_set, val_idx, n_val, cfg->perm, 0, cfg->batch);
        res->test = evaluate(m, test_set, NULL, test_set->n, cfg->perm, 0, cfg->batch);
        char json[256];
        int jl = snprintf(json, sizeof json, "{\"test\": %.6f, \"val\": %.6f}\n", res->test, res->val);
        if (writer && atomic_write(json_path, json, (size_t)jl, err, sizeof err)) die("%s", err);
        if (!quiet) printf("best weights: val %.4f  test %.4f  (%s)\n", res->val, res->test, json_path);
        if (file_exists(csv_path) && !quiet) {
            char png[4200];
            snprintf(png, sizeof png, "%s/training_curve.png", cfg->out_dir);
            plot_training_curve(png, csv_path);
        }
    }
    devdata_free(dd);
    model_free(m);
    free(train_idx); free(val_idx);
    dataset_free(&train_loaded); dataset_free(&test_loaded);
    batchnorm_sync = sync;
    return 0;
}
