#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* mkostemp(3) replaces the six characters at the end of the template. */
static const char tmp_pattern[] = {'X', 'X', 'X', 'X', 'X', 'X', '\0'};

enum tg_status tg_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                                    char *err, size_t err_len)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%s", path, tmp_pattern) >= (int)sizeof(tmp)) {
        snprintf(err, err_len, "%s: path too long", path);
        return TG_E_CONFIG;
    }
    int fd = mkostemp(tmp, O_CLOEXEC); /* 0600 from the start */
    if (fd < 0) {
        snprintf(err, err_len, "%s: cannot create: %s", path, strerror(errno));
        return TG_E_CONFIG;
    }
    const unsigned char *p = data;
    size_t done = 0;
    bool is_ok = fchmod(fd, mode) == 0;
    while (is_ok && done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        is_ok = n > 0;
        if (is_ok)
            done += (size_t)n;
    }
    is_ok = is_ok && fsync(fd) == 0;
    int saved = errno;
    is_ok = close(fd) == 0 && is_ok;
    if (is_ok && rename(tmp, path) == 0)
        return TG_OK;
    saved = is_ok ? errno : saved;
    unlink(tmp);
    snprintf(err, err_len, "%s: cannot write: %s", path, strerror(saved));
    return TG_E_CONFIG;
}
