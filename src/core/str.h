/* Bounded string copies for hot paths, where snprintf("%s") would parse a
 * format for every request. */
#ifndef TG_CORE_STR_H
#define TG_CORE_STR_H

#include <stddef.h>
#include <string.h>

/* Copies src's first len bytes, or fewer up to a NUL in them, into dst
 * (dst_len bytes, always terminated when dst_len > 0), cut to fit; what
 * snprintf(dst, dst_len, "%.*s", len, src) writes. Returns the length
 * written. */
static inline size_t str_copy_n(char *dst, size_t dst_len, const char *src, size_t len)
{
    if (dst_len == 0)
        return 0;
    const char *nul = memchr(src, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - src);
    if (len > dst_len - 1)
        len = dst_len - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return len;
}

/* What snprintf(dst, dst_len, "%s", src) writes. */
static inline size_t str_copy(char *dst, size_t dst_len, const char *src)
{
    return str_copy_n(dst, dst_len, src, strnlen(src, dst_len));
}

#endif
