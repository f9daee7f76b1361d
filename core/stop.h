/* Stopping a training run cleanly on Ctrl-C (SIGINT) or SIGTERM.
 *
 * stop_install() sets handlers that only record the signal; the training loop polls
 * stop_signal() after every step and, when it is set, writes its resumable state and exits
 * with status 128 + signal (what a shell reports for a signal death). A second signal while
 * that happens ends the process at once (status 128 + signal, nothing more written: the
 * previous files are intact because every save is atomic). */
#ifndef CONVNET_STOP_H
#define CONVNET_STOP_H

void stop_install(void);
void stop_uninstall(void);      /* the default actions again (tests) */
int stop_signal(void);          /* the first signal received since stop_install, or 0 */
/* 1: the first signal is recorded without its line on stderr (the processes of a
 * data-parallel run other than rank 0, which says it once for all) */
void stop_set_quiet(int quiet);

#endif
