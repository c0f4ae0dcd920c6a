#include "core/diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void diag_init(struct diag *d)
{
    memset(d, 0, sizeof(*d));
}

void diag_fini(struct diag *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].key);
        free(d->v[i].msg);
    }
    free(d->v);
    memset(d, 0, sizeof(*d));
}

void diag_add(struct diag *d, enum diag_level level, const char *file, int line, int col,
              const char *key, const char *fmt, ...)
{
    if (level == DIAG_ERROR)
        d->n_errors++;
    else
        d->n_warnings++;

    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct diag_entry *v = realloc(d->v, cap * sizeof(*v));
        if (v == NULL)
            return;
        d->v = v;
        d->cap = cap;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    struct diag_entry *e = &d->v[d->n++];
    e->level = level;
    e->file = file ? strdup(file) : NULL;
    e->line = line;
    e->col = col;
    e->key = key ? strdup(key) : NULL;
    e->msg = strdup(msg);
}

void diag_format(const struct diag *d, size_t i, char *dst, size_t dst_len)
{
    const struct diag_entry *e = &d->v[i];
    const char *lvl = e->level == DIAG_WARNING ? "warning: " : "";
    const char *msg = e->msg ? e->msg : "(out of memory formatting message)";
    if (e->file && e->key)
        snprintf(dst, dst_len, "%s:%d:%d: %s%s: %s", e->file, e->line, e->col, lvl, e->key, msg);
    else if (e->file)
        snprintf(dst, dst_len, "%s:%d:%d: %s%s", e->file, e->line, e->col, lvl, msg);
    else if (e->key)
        snprintf(dst, dst_len, "%s%s: %s", lvl, e->key, msg);
    else
        snprintf(dst, dst_len, "%s%s", lvl, msg);
}

void diag_print(const struct diag *d, FILE *out)
{
    char line[2048];
    for (size_t i = 0; i < d->n; i++) {
        diag_format(d, i, line, sizeof(line));
        fprintf(out, "%s\n", line);
    }
}

void diag_append_errors(struct diag *dst, const struct diag *src)
{
    for (size_t i = 0; i < src->n; i++) {
        const struct diag_entry *e = &src->v[i];
        if (e->level == DIAG_ERROR)
            diag_add(dst, DIAG_ERROR, e->file, e->line, e->col, e->key, "%s",
                     e->msg ? e->msg : "(out of memory)");
    }
}
