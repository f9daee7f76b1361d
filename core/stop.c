#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include "core/stop.h"

static volatile sig_atomic_t first_signal;
static volatile sig_atomic_t quiet;   /* the first signal's line not written (stop_set_quiet) */

/* Only async-signal-safe calls here: write(2) and _exit(2). */
static void on_signal(int sig)
{
    if (first_signal) {
        static const char msg[] = "\nconvnet: second interrupt: exiting now without saving\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        _exit(128 + sig);
    }
    first_signal = sig;
    if (quiet) return;
    static const char msg[] = "\nconvnet: interrupt: stopping after this step to save the training state "
                              "(interrupt again to exit at once)\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
}

static void set_action(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;   /* reads and writes in progress continue */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

void stop_install(void)
{
    first_signal = 0;
    set_action(on_signal);
}

void stop_uninstall(void)
{
    set_action(SIG_DFL);
    first_signal = 0;
}

int stop_signal(void) { return first_signal; }
void stop_set_quiet(int q) { quiet = q != 0; }
