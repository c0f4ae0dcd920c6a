#ifndef TG_CORE_FILE_H
#define TG_CORE_FILE_H

#include <stddef.h>
#include <sys/types.h>

#include "core/status.h"

/*
 * Writes len bytes to path through a temporary file in the same directory
 * and a rename, so that readers never see half a file. The temporary is
 * created 0600 and gets mode before any byte is written: a key is never
 * readable by others, not even for a moment. TG_E_CONFIG with err set
 * ("PATH: cannot create: ...", "PATH: cannot write: ...") on failure.
 */
TG_MUST_USE enum tg_status tg_write_file_atomic(const char *path, const void *data, size_t len,
                                                mode_t mode, char *err, size_t err_len);

/*
 * Reads the whole regular file path into a heap buffer *data (free with
 * free), NUL-terminated after its *len bytes. Refuses, with TG_E_CONFIG and
 * err set ("cannot read: ...", "not a regular file", "larger than MAX
 * bytes", "changed while it was read"), anything but a regular file (a
 * FIFO does not block), a file over max bytes and one whose size changes
 * while it is read; TG_E_NOMEM when memory runs out. Blocks on the file
 * system only.
 */
TG_MUST_USE enum tg_status tg_read_file(const char *path, size_t max, char **data, size_t *len,
                                        char *err, size_t err_len);

#endif
