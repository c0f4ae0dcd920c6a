/* ${NAME} and ${NAME:-default} in config values, from the environment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"

static bool name_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

struct out {
    char *p;
    size_t len;
};

static bool put(struct out *o, const char *s, size_t n)
{
    if (n > CFG_ENV_VALUE_MAX - o->len)
        return false;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    return true;
}

enum tg_status cfg_expand_env(const char *s, size_t len, char **out, size_t *out_len, char *err,
                              size_t err_len)
{
    *out = NULL;
    *out_len = 0;
    if (memmem(s, len, "${", 2) == NULL)
        return TG_OK;
    struct out o = {malloc(CFG_ENV_VALUE_MAX + 1), 0};
    if (o.p == NULL) {
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    size_t i = 0;
    while (i < len) {
        if (s[i] == '$' && i + 2 < len && s[i + 1] == '$' && s[i + 2] == '{') {
            if (!put(&o, "${", 2))
                goto too_long;
            i += 3;
            continue;
        }
        if (!(s[i] == '$' && i + 1 < len && s[i + 1] == '{')) {
            if (!put(&o, s + i, 1))
                goto too_long;
            i++;
            continue;
        }
        size_t start = i + 2, k = start;
        while (k < len && k - start < CFG_ENV_NAME_MAX && name_char(s[k], k == start))
            k++;
        const char *dflt = NULL;
        size_t dflt_len = 0, end = k;
        if (k > start && k + 1 < len && s[k] == ':' && s[k + 1] == '-') {
            const char *close = memchr(s + k + 2, '}', len - k - 2);
            if (close != NULL) {
                dflt = s + k + 2;
                dflt_len = (size_t)(close - dflt);
                end = (size_t)(close - s);
            }
        }
        if (k == start || end >= len || s[end] != '}') {
            snprintf(err, err_len,
                     "\"${\" starts ${NAME} or ${NAME:-default} (NAME: letters, digits, _; "
                     "at most %d); write $${ for a literal ${",
                     CFG_ENV_NAME_MAX);
            free(o.p);
            return TG_E_CONFIG;
        }
        char name[CFG_ENV_NAME_MAX + 1];
        memcpy(name, s + start, k - start);
        name[k - start] = '\0';
        const char *v = getenv(name);
        if (v == NULL || (v[0] == '\0' && dflt != NULL)) {
            if (dflt == NULL) {
                snprintf(err, err_len,
                         "environment variable %s is not set (give a default: ${%s:-VALUE})", name,
                         name);
                free(o.p);
                return TG_E_CONFIG;
            }
            if (!put(&o, dflt, dflt_len))
                goto too_long;
        } else if (!put(&o, v, strlen(v))) {
            goto too_long;
        }
        i = end + 1;
    }
    o.p[o.len] = '\0';
    *out = o.p;
    *out_len = o.len;
    return TG_OK;
too_long:
    snprintf(err, err_len, "the value is longer than %d bytes once expanded", CFG_ENV_VALUE_MAX);
    free(o.p);
    return TG_E_CONFIG;
}
