#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include "core/progress.h"
#include "core/util.h"

void progress_begin(Progress *p, int epoch, int epochs, int steps)
{
    p->tty = isatty(fileno(stdout));
    p->epoch = epoch;
    p->epochs = epochs;
    p->steps = steps;
    p->t0 = p->last_line = now_seconds();
}

void progress_step(Progress *p, int step, double loss, double acc, double img_per_s)
{
    double t = now_seconds(), el = t - p->t0, eta = step > 0 ? el / step * (p->steps - step) : 0;
    if (!p->tty) {
        if (t - p->last_line < PROGRESS_LOG_SECONDS || step >= p->steps) return;
        p->last_line = t;
        printf("epoch %d/%d  step %d/%d  %.0f img/s  ETA %02d:%02d\n", p->epoch + 1, p->epochs, step, p->steps,
               img_per_s, (int)eta / 60, (int)eta % 60);
        fflush(stdout);
        return;
    }
    int width = 24, fill = p->steps ? step * width / p->steps : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    printf("\repoch %d/%d [%s] %d/%d ", p->epoch + 1, p->epochs, bar, step, p->steps);
    if (!isnan(loss)) printf("loss %.4f acc %.3f ", loss, acc);   /* NaN: summed on the device */
    printf("%.0f img/s ETA %02d:%02d ", img_per_s, (int)eta / 60, (int)eta % 60);
    fflush(stdout);
}

void progress_end(Progress *p, double loss, double acc, double val_acc, double lr, double seconds,
                  double img_per_s)
{
    if (p->tty) printf("\r\033[K");
    printf("epoch %d/%d  lr %.4g  train_loss %.4f  train_acc %.4f", p->epoch + 1, p->epochs, lr,
           loss, acc);
    if (!isnan(val_acc)) printf("  val_acc %.4f", val_acc);
    printf("  %.1fs  %.0f img/s\n", seconds, img_per_s);
    fflush(stdout);
}
