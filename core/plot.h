/* Plots through gnuplot (a well-kept tool, Debian package gnuplot-nox): writes a gnuplot
 * script next to the CSV and runs it when gnuplot is installed; otherwise says where the
 * CSV and script are. Returns 0 if the PNG was produced. */
#ifndef CONVNET_PLOT_H
#define CONVNET_PLOT_H

/* csv: header line then rows; column 1 is x, columns 2..ncols+1 are the series. */
int plot_csv(const char *png, const char *csv, const char *title, const char *xlabel,
             const char *ylabel, int ncols, const char *const *series, const char *extra);

/* Part 1's training curve from metrics.csv (epoch,lr,train_loss,train_acc,val_acc,...):
 * train loss (left axis), train and validation accuracy (right axis), a dashed line where
 * the learning rate drops. */
int plot_training_curve(const char *png, const char *metrics_csv);

#endif
