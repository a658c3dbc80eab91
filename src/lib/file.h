/* file.h -- writing a whole file safely: the one place that loops over short writes, fsyncs
 * and renames, for the keyring, persisted agent services/checks and snapshot saves. */
#ifndef CONCORD_LIB_FILE_H
#define CONCORD_LIB_FILE_H

#include <stdbool.h>
#include <stddef.h>

/* Creates (mode 0600) or truncates path and writes len bytes; with sync, fsyncs it before
 * closing. Returns 0 or an errno value (path is then left as far as it got). */
int file_write_all(const char *path, const void *data, size_t len, bool sync);

/* Writes path through "<path>.tmp" (file_write_all) and renames it into place, so readers see
 * the old content or the new, never a part; with sync, also fsyncs the directory so the rename
 * survives a crash. Returns 0 or an errno value (ENAMETOOLONG for an overlong path); on
 * failure the temporary file is removed and path is untouched. */
int file_write_atomic(const char *path, const void *data, size_t len, bool sync);

#endif
