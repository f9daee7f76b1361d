/* Progress display: a live one-line bar on a terminal; otherwise (a log file) one plain line
 * per epoch, and inside an epoch a line every PROGRESS_LOG_SECONDS, so a slow epoch shows it is
 * moving. */
#ifndef CONVNET_PROGRESS_H
#define CONVNET_PROGRESS_H

#define PROGRESS_LOG_SECONDS 10.0
typedef struct Progress { int tty, epoch, epochs, steps; double t0, last_line; } Progress;

void progress_begin(Progress *p, int epoch, int epochs, int steps);
/* loss NaN: not known yet (a device sums it; shown at the epoch's end) */
void progress_step(Progress *p, int step, double loss, double acc, double img_per_s);
void progress_end(Progress *p, double loss, double acc, double val_acc, double lr, double seconds,
                  double img_per_s);

#endif
