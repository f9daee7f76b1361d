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

int plot_training_curve(const char *png, const char *csv)
{
    char gp[4200];
    snprintf(gp, sizeof gp, "%s", png);
    char *dot = strrchr(gp, '.');
    if (dot) strcpy(dot, ".gp");
    FILE *in = fopen(csv, "r");
    if (!in) { fprintf(stderr, "convnet: cannot read %s\n", csv); return -1; }
    FILE *f = fopen(gp, "w");
    if (!f) { fclose(in); fprintf(stderr, "convnet: cannot write %s\n", gp); return -1; }
    fprintf(f, "set terminal pngcairo size 900,560 enhanced font 'sans,11'\n"
               "set output '%s'\nset datafile separator ','\n"
               "set title 'Part 1: PreAct ResNet on CIFAR-10'\nset xlabel 'epoch'\n"
               "set ylabel 'train loss'\nset y2label 'accuracy'\nset y2range [0:1]\n"
               "set ytics nomirror\nset y2tics 0.1\nset grid\nset key center right\n", png);
    char line[512];
    double prev = -1;
    int rows = 0;
    while (fgets(line, sizeof line, in)) {            /* a dashed line at each lr change */
        int e;
        double lr;
        if (sscanf(line, "%d,%lf,", &e, &lr) != 2) continue;
        if (prev > 0 && lr != prev)
            fprintf(f, "set arrow from %g, graph 0 to %g, graph 1 nohead dt 2 lc rgb 'gray40'\n"
                       "set label 'lr %g' at %g, graph 0.95 left offset 0.5,0\n", e - 0.5, e - 0.5, lr, e - 0.5);
        prev = lr;
        rows++;
    }
    fclose(in);
    fprintf(f, "plot '%s' every ::1 using 1:3 with lines lw 2 title 'train loss', "
               "'' every ::1 using 1:4 axes x1y2 with lines lw 2 title 'train accuracy', "
               "'' every ::1 using 1:5 axes x1y2 with linespoints pt 7 ps 1.2 lw 2 title 'validation accuracy'\n", csv);
    fclose(f);
    if (rows == 0) return -1;
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("gnuplot not found: the data is in %s; plot it with `gnuplot %s` (apt-get install gnuplot-nox)\n", csv, gp);
        return -1;
    }
    char cmd[8600];
    snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>/dev/null", gp);
    if (system(cmd) != 0) { fprintf(stderr, "convnet: gnuplot failed on %s\n", gp); return -1; }
    printf("plot: %s\n", png);
    return 0;
}
