#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core/plot.h"

int plot_csv(const char *png, const char *csv, const char *title, const char *xlabel,
             const char *ylabel, int ncols, const char *const *series, const char *extra)
{
    char gp[4200];
    snprintf(gp, sizeof gp, "%s", png);
    char *dot = strrchr(gp, '.');
    if (dot) strcpy(dot, ".gp");
    FILE *f = fopen(gp, "w");
    if (!f) { fprintf(stderr, "convnet: cannot write %s\n", gp); return -1; }
    fprintf(f, "set terminal pngcairo size 900,560 enhanced font 'sans,11'\n"
               "set output '%s'\nset datafile separator ','\nset key autotitle columnhead\n"
               "set title '%s'\nset xlabel '%s'\nset ylabel '%s'\nset grid\nset key bottom right\n%s\n",
            png, title, xlabel, ylabel, extra ? extra : "");
    fprintf(f, "plot ");
    for (int i = 0; i < ncols; i++)
        fprintf(f, "%s'%s' using 1:%d with linespoints lw 2 title '%s'", i ? ", " : "", csv, i + 2, series[i]);
    fprintf(f, "\n");
    fclose(f);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("gnuplot not found: the data is in %s; plot it with `gnuplot %s` (apt-get install gnuplot-nox)\n", csv, gp);
        return -1;
    }
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", gp);
    if (system(cmd) != 0) { fprintf(stderr, "convnet: gnuplot failed on %s\n", gp); return -1; }
    printf("plot: %s\n", png);
    return 0;
}
