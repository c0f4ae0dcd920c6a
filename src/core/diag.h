#ifndef TG_CORE_DIAG_H
#define TG_CORE_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

/*
 * Diagnostics collected while loading and checking a config: every error and
 * warning, each with the file, line and column of the key it is about, so
 * that one run reports all of them.
 */
enum diag_level { DIAG_ERROR, DIAG_WARNING };

struct diag_entry {
    enum diag_level level;
    char *file; /* owned; may be NULL when no file is involved */
    int line;   /* 1-based; 0 when unknown */
    int col;    /* 1-based; 0 when unknown */
    char *key;  /* owned; dotted path such as "listeners[0].tls.mode"; may be NULL */
    char *msg;  /* owned */
};

struct diag {
    struct diag_entry *v; /* owned array */
    size_t n;
    size_t cap;
    size_t n_errors;
    size_t n_warnings;
};

void diag_init(struct diag *d);
void diag_fini(struct diag *d);

/* Appends one entry. file and key may be NULL. Never fails: on allocation
 * failure the entry is counted but its text is replaced by a fixed one. */
void diag_add(struct diag *d, enum diag_level level, const char *file, int line, int col,
              const char *key, const char *fmt, ...) TG_PRINTF(7, 8);

/* Copies the errors (not the warnings) of src to the end of dst. */
void diag_append_errors(struct diag *dst, const struct diag *src);

/* Writes each entry as "file:line:col: key: message" (warnings get "warning: "
 * before the key) followed by a newline. */
void diag_print(const struct diag *d, FILE *out);

/* Formats entry i into dst like diag_print does, without the newline. */
void diag_format(const struct diag *d, size_t i, char *dst, size_t dst_len);

/*
 * Writes the entries as one JSON object and a newline:
 * {"ok": BOOL, "errors": [ENTRY...], "warnings": [ENTRY...]}, each ENTRY
 * {"file": STR|null, "line": INT, "column": INT, "key": STR|null, "message": STR}
 * (line and column 0 when unknown); ok is true when there is no error. Strings
 * are escaped by diag_json_string, so the output is valid JSON whatever bytes
 * a message holds.
 */
void diag_print_json(const struct diag *d, FILE *out);

/*
 * Writes s as a JSON string literal (RFC 8259 §7): quotes, '\\' and control
 * bytes escaped, and each byte that is not part of well-formed UTF-8 written
 * as U+FFFD. NULL is written as null.
 */
void diag_json_string(FILE *out, const char *s);

static inline bool diag_has_errors(const struct diag *d)
{
    return d->n_errors > 0;
}

#endif
