/* Whole-file I/O shared by checkpoints, training state, logs and the apps' outputs.
 *
 * atomic_write: the bytes go to "<path>.tmp.<pid>" in the same directory, are fsynced, and
 * the temporary file is renamed over path (then the directory is fsynced). A crash, a full
 * disk or a file-size limit at any moment leaves either the old file or the new one, never a
 * torn one; on failure the temporary file is removed and err gets one line naming path and
 * the reason (e.g. "No space left on device").
 *
 * A process killed inside atomic_write (SIGKILL, power loss) leaves its temporary file
 * behind. files_remove_stale_temps removes such leftovers of a directory: names of the form
 * "<name>.tmp.<pid>" whose pid is no longer a running process. No reader ever opens a
 * temporary name, so a leftover is never taken for a checkpoint. */
#ifndef CONVNET_FILES_H
#define CONVNET_FILES_H
#include <stddef.h>

int atomic_write(const char *path, const void *data, size_t len, char *err, size_t errlen);
/* Reads a whole regular file (plus a terminating NUL not counted in *len); NULL and err on
 * failure. max_bytes > 0: larger files are refused before anything is allocated. */
void *read_file_max(const char *path, size_t max_bytes, size_t *len, char *err, size_t errlen);
void *read_file(const char *path, size_t *len, char *err, size_t errlen);
/* Returns how many leftovers were removed; each one is named on stdout unless quiet. */
int files_remove_stale_temps(const char *dir, int quiet);

#endif
