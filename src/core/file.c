#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
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

enum tg_status tg_read_file(const char *path, size_t max, char **data, size_t *len, char *err,
                            size_t err_len)
{
    enum tg_status st = TG_E_CONFIG;
    char *buf = NULL;
    size_t n = 0;
    struct stat sb;
    /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        snprintf(err, err_len, "cannot read: %s", strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, err_len, "not a regular file");
        goto out;
    }
    if ((uint64_t)sb.st_size > max) {
        snprintf(err, err_len, "larger than %zu bytes", max);
        goto out;
    }
    /* One byte more than fstat saw, to notice a file that changes while
     * it is read: a cut copy could read as a different, shorter text. */
    size_t size = (size_t)sb.st_size;
    buf = malloc(size + 2);
    if (buf == NULL) {
        snprintf(err, err_len, "out of memory");
        st = TG_E_NOMEM;
        goto out;
    }
    while (n <= size) {
        ssize_t r = read(fd, buf + n, size + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, err_len, "cannot read: %s", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n != size) {
        snprintf(err, err_len, "changed while it was read (replace it with a rename)");
        goto out;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
    st = TG_OK;
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return st;
}
