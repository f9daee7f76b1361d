/* Progress display: a live one-line bar on a terminal, one plain line per epoch otherwise. */
#ifndef CONVNET_PROGRESS_H
#define CONVNET_PROGRESS_H

typedef struct Progress { int tty, epoch, epochs, steps; double t0; } Progress;

void progress_begin(Progress *p, int epoch, int epochs, int steps);
/* loss NaN: not known yet (a device sums it; shown at the epoch's end) */
void progress_step(Progress *p, int step, double loss, double acc, double img_per_s);
void progress_end(Progress *p, double loss, double acc, double val_acc, double lr, double seconds,
                  double img_per_s);

#endif
