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

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 §4), or 0: no
 * overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80;
        unsigned char hi = c == 0xed ? 0x9f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80;
        unsigned char hi = c == 0xf4 ? 0x8f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

void diag_json_string(FILE *out, const char *s)
{
    if (s == NULL) {
        fputs("null", out);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    while (*p != '\0') {
        unsigned char c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            p++;
        } else if (c == '\n') {
            fputs("\\n", out);
            p++;
        } else if (c == '\t') {
            fputs("\\t", out);
            p++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            p++;
        } else if (c < 0x80) {
            fputc(c, out);
            p++;
        } else {
            /* A continuation byte is never NUL, so utf8_len stops at the
             * terminator before reading past it. */
            size_t n = utf8_len(p);
            if (n == 0) {
                fputs("\\ufffd", out);
                p++;
            } else {
                fwrite(p, 1, n, out);
                p += n;
            }
        }
    }
    fputc('"', out);
}

static void json_entries(const struct diag *d, enum diag_level level, FILE *out)
{
    const char *sep = "";
    fputc('[', out);
    for (size_t i = 0; i < d->n; i++) {
        const struct diag_entry *e = &d->v[i];
        if (e->level != level)
            continue;
        fprintf(out, "%s{\"file\": ", sep);
        diag_json_string(out, e->file);
        fprintf(out, ", \"line\": %d, \"column\": %d, \"key\": ", e->line, e->col);
        diag_json_string(out, e->key);
        fputs(", \"message\": ", out);
        diag_json_string(out, e->msg ? e->msg : "(out of memory formatting message)");
        fputc('}', out);
        sep = ", ";
    }
    fputc(']', out);
}

void diag_print_json(const struct diag *d, FILE *out)
{
    fprintf(out, "{\"ok\": %s, \"errors\": ", diag_has_errors(d) ? "false" : "true");
    json_entries(d, DIAG_ERROR, out);
    fputs(", \"warnings\": ", out);
    json_entries(d, DIAG_WARNING, out);
    fputs("}\n", out);
}
