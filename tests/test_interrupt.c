/* Interrupts and failing writes.
 *
 * - A run that gets SIGTERM (sent by another process) or Ctrl-C (SIGINT) stops after the
 *   step it is in, saves its state, says how to continue, and exits with 128 + signal;
 *   resumed with --resume it ends bit-for-bit where an uninterrupted run ends (weights,
 *   optimizer state, best checkpoint, and the loss/accuracy columns of metrics.csv).
 * - A second interrupt exits at once and writes nothing.
 * - A save that fails (file-size limit, a path under a regular file) gives one line naming
 *   the file and the reason, leaves the previous checkpoint loadable and unchanged, and
 *   leaves no temporary file behind.
 * Every training run happens in a child process (an exit must not end the test, and GNU
 * OpenMP does not survive a fork after it has started threads); the parent checks the files. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/checkpoint.h"
#include "core/train.h"
#include "tests/fixtures.h"

/* 300 images, 44 for validation, batch 32: 8 steps per epoch, 3 epochs, lr drop after 1 */
static void tiny_config(TrainConfig *c, const Dataset *tr, const Dataset *te, const char *out)
{
    fixture_config(c, tr, te, out, 3);
}

static char *slurp(const char *path, size_t *len)
{
    char err[256];
    return read_file(path, len, err, sizeof err);
}

/* metrics.csv without its timing columns (seconds, img/s differ between runs) */
static void metrics_core(const char *dir, char *out, size_t cap)
{
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = 0;
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        char *c = line;
        for (int k = 0; k < 5 && c; k++) c = strchr(c + 1, ',');   /* keep 5 columns */
        if (c) *c = 0;
        n += (size_t)snprintf(out + n, cap - n, "%s\n", line);
    }
    fclose(f);
}

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* ---- the child: a training run that is signalled at a chosen step ---- */

typedef struct Stopper {
    int epoch, step;      /* when to signal */
    int mode;             /* 0: ask the parent to send SIGTERM; 1: raise SIGINT; 2: SIGINT twice */
    int to_parent, from_parent;
} Stopper;

static void stopper(void *arg, int epoch, int step)
{
    Stopper *s = arg;
    if (epoch != s->epoch || step != s->step) return;
    if (s->mode == 0) {   /* the parent sends SIGTERM, then lets us go on */
        char b = 1;
        ck_assert_int_eq(write(s->to_parent, &b, 1), 1);
        ck_assert_int_eq(read(s->from_parent, &b, 1), 1);
    } else {
        raise(SIGINT);
        if (s->mode == 2) raise(SIGINT);   /* does not return */
    }
}

/* Runs one training in a child (resume: continue from last.state), stopped as `s` says;
 * returns the child's exit status and leaves its stderr in dir/stderr.txt. */
static int run_child(const char *dir, int resume, Stopper s, const Dataset *tr, const Dataset *te)
{
    int up[2], down[2];
    ck_assert_int_eq(pipe(up), 0);
    ck_assert_int_eq(pipe(down), 0);
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char path[512];
        snprintf(path, sizeof path, "%s/stderr.txt", dir);
        if (!freopen(path, "w", stderr)) _exit(99);
        s.to_parent = up[1];
        s.from_parent = down[0];
        TrainConfig c;
        TrainResult r;
        tiny_config(&c, tr, te, dir);
        c.quiet = 0;                      /* the line that says how to continue */
        if (!freopen("/dev/null", "w", stdout)) _exit(99);
        c.retrain = !resume;
        c.resume = resume;
        c.on_step = stopper;
        c.on_step_arg = &s;
        train_run(&c, &r);
        fflush(NULL);
        _exit(r.interrupted ? 128 + r.interrupted : 0);
    }
    close(up[1]);
    close(down[0]);
    char b;
    if (s.mode == 0 && read(up[0], &b, 1) == 1) {   /* the child reached the step */
        ck_assert_int_eq(kill(pid, SIGTERM), 0);
        ck_assert_int_eq(write(down[1], &b, 1), 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    close(up[0]);
    close(down[1]);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static int file_has(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t len;
    char *s = slurp(path, &len);
    int has = s && strstr(s, text);
    free(s);
    return has;
}

START_TEST(signal_stops_and_resume_is_bit_exact)
{
    Dataset tr = fixture_set(300, 1), te = fixture_set(50, 2);
    char dA[] = "/tmp/convnet_sigA_XXXXXX", dB[] = "/tmp/convnet_sigB_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dA));
    ck_assert_ptr_nonnull(mkdtemp(dB));
    /* uninterrupted: 3 epochs */
    ck_assert_int_eq(run_child(dA, 0, (Stopper){.epoch = -1, .mode = 1}, &tr, &te), 0);

    /* SIGTERM from another process in the middle of epoch 1 */
    int st = run_child(dB, 0, (Stopper){.epoch = 0, .step = 2, .mode = 0}, &tr, &te);
    ck_assert_int_eq(st, 128 + SIGTERM);
    ck_assert_msg(file_has(dB, "stderr.txt", "--resume"), "no line saying how to continue");
    ck_assert(file_has(dB, "stderr.txt", "after step 3 of 8"));
    /* resumed, and Ctrl-C in the middle of epoch 2 (the epoch after the lr drop) */
    st = run_child(dB, 1, (Stopper){.epoch = 1, .step = 5, .mode = 1}, &tr, &te);
    ck_assert_int_eq(st, 128 + SIGINT);
    ck_assert(file_has(dB, "stderr.txt", "stopped by interrupt in epoch 2 after step 6 of 8"));
    /* resumed to the end */
    ck_assert_int_eq(run_child(dB, 1, (Stopper){.epoch = -1, .mode = 1}, &tr, &te), 0);

    char p[512], q[512];
    snprintf(p, sizeof p, "%s/last.state", dA); snprintf(q, sizeof q, "%s/last.state", dB);
    ck_assert_msg(fixture_same_file(p, q), "the twice-interrupted run's final state differs from the uninterrupted run's");
    snprintf(p, sizeof p, "%s/best.safetensors", dA); snprintf(q, sizeof q, "%s/best.safetensors", dB);
    ck_assert(fixture_same_file(p, q));
    snprintf(p, sizeof p, "%s/results.json", dA); snprintf(q, sizeof q, "%s/results.json", dB);
    ck_assert(fixture_same_file(p, q));
    static char ma[8192], mb[8192];
    metrics_core(dA, ma, sizeof ma);
    metrics_core(dB, mb, sizeof mb);
    ck_assert_msg(!strcmp(ma, mb), "metrics differ:\n%s\nvs\n%s", ma, mb);
    ck_assert_int_eq(count_temps(dB), 0);

    ck_assert_int_eq(fixture_remove(dA, dB), 0);
    dataset_free(&tr);
    dataset_free(&te);
}
END_TEST

START_TEST(second_interrupt_exits_at_once)
{
    Dataset tr = fixture_set(300, 1), te = fixture_set(50, 2);
    char d[] = "/tmp/convnet_sig2_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(d));
    /* a first epoch completes and is saved; two interrupts in epoch 2 */
    int st = run_child(d, 0, (Stopper){.epoch = 1, .step = 3, .mode = 2}, &tr, &te);
    ck_assert_int_eq(st, 128 + SIGINT);
    ck_assert(file_has(d, "stderr.txt", "second interrupt"));
    ck_assert(!file_has(d, "stderr.txt", "--resume"));   /* nothing saved after the signal */
    /* the state of epoch 1 is intact and loads */
    TrainConfig c;
    tiny_config(&c, &tr, &te, d);
    Model *m = model_create(&ops_cpu, &c.model, 4);
    TrainState ts;
    char p[512], err[512];
    snprintf(p, sizeof p, "%s/last.state", d);
    ck_assert_msg(train_state_load(m, &ts, p, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(ts.epoch, 1);
    ck_assert_int_eq(ts.step, 0);
    model_free(m);
    ck_assert_int_eq(fixture_remove(d, NULL), 0);
    dataset_free(&tr);
    dataset_free(&te);
}
END_TEST

/* ---- failing writes ---- */

/* In a child limited to `limit` bytes per file (SIGXFSZ ignored, so write returns EFBIG),
 * saves the model once more; exit 0 when the save failed the way it must. */
static int save_under_limit(Model *m, const char *path, rlim_t limit, int state)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {limit, limit};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(90);
        char err[1024];
        TrainState ts = {.epoch = 2, .best_val = 0.5, .best_epoch = 1, .seed = 7};
        int rc = state ? train_state_save(m, &ts, path, err, sizeof err) : checkpoint_save(m, path, err, sizeof err);
        if (rc != -1) _exit(91);
        if (!strstr(err, path) || !strstr(err, strerror(EFBIG))) { fprintf(stderr, "message: %s\n", err); _exit(92); }
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

START_TEST(failed_save_keeps_the_previous_file)
{
    char d[] = "/tmp/convnet_full_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(d));
    ModelConfig mc;
    model_config_default(&mc);
    Model *m = model_create(&ops_cpu, &mc, 4);
    Rng r;
    rng_seed(&r, 5, 1);
    model_init(m, &r);
    char ck[512], stp[512], copy[512], err[1024];
    snprintf(ck, sizeof ck, "%s/best.safetensors", d);
    snprintf(stp, sizeof stp, "%s/last.state", d);
    snprintf(copy, sizeof copy, "%s/copy.safetensors", d);
    ck_assert_int_eq(checkpoint_save(m, ck, err, sizeof err), 0);
    ck_assert_int_eq(checkpoint_save(m, copy, err, sizeof err), 0);
    TrainState ts = {.epoch = 1, .best_val = 0.25, .best_epoch = 1, .seed = 7};
    ck_assert_int_eq(train_state_save(m, &ts, stp, err, sizeof err), 0);

    model_init(m, &r);   /* new weights: the failed save must not replace the old ones */
    ck_assert_int_eq(save_under_limit(m, ck, 64 * 1024, 0), 0);
    ck_assert_int_eq(save_under_limit(m, stp, 64 * 1024, 1), 0);
    ck_assert_msg(fixture_same_file(ck, copy), "a failed save changed the previous checkpoint");
    ck_assert_msg(checkpoint_load(m, ck, err, sizeof err) == 0, "%s", err);
    TrainState back;
    ck_assert_msg(train_state_load(m, &back, stp, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(back.epoch, 1);
    ck_assert_int_eq(count_temps(d), 0);

    /* a directory that is a regular file */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/copy.safetensors/best.safetensors", d);
    ck_assert_int_eq(checkpoint_save(m, bad, err, sizeof err), -1);
    ck_assert_msg(strstr(err, bad) && strstr(err, strerror(ENOTDIR)), "message: %s", err);
    model_free(m);
    ck_assert_int_eq(fixture_remove(d, NULL), 0);
}
END_TEST

/* A whole run whose --out is under a regular file: exit 2 with one line naming it. */
START_TEST(output_under_a_file_is_one_line)
{
    char d[] = "/tmp/convnet_outf_XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(d));
    char file[512], out[600], errpath[600];
    snprintf(file, sizeof file, "%s/plain_file", d);
    FILE *f = fopen(file, "w");
    fputs("x", f);
    fclose(f);
    snprintf(out, sizeof out, "%s/run", file);
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", d);
    Dataset tr = fixture_set(300, 1), te = fixture_set(50, 2);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(errpath, "w", stderr)) _exit(99);
        TrainConfig c;
        TrainResult r;
        tiny_config(&c, &tr, &te, out);
        c.retrain = 1;
        train_run(&c, &r);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 2);
    size_t len;
    char *msg = slurp(errpath, &len);
    ck_assert_ptr_nonnull(msg);
    ck_assert_msg(strstr(msg, out) && strstr(msg, strerror(ENOTDIR)), "message: %s", msg);
    ck_assert_msg(strchr(msg, '\n') == msg + len - 1, "more than one line: %s", msg);
    free(msg);
    dataset_free(&tr);
    dataset_free(&te);
    ck_assert_int_eq(fixture_remove(d, NULL), 0);
}
END_TEST

Suite *suite_interrupt(void)
{
    Suite *s = suite_create("interrupts and failing writes");
    TCase *t = tcase_create("interrupt");
    tcase_set_timeout(t, 180);
    tcase_add_test(t, signal_stops_and_resume_is_bit_exact);
    tcase_add_test(t, second_interrupt_exits_at_once);
    tcase_add_test(t, failed_save_keeps_the_previous_file);
    tcase_add_test(t, output_under_a_file_is_one_line);
    suite_add_tcase(s, t);
    return s;
}
