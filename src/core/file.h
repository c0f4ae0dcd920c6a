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

#endif
