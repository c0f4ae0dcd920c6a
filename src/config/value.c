/* Walking the YAML tree: iteration with key paths and typed getters. */
#include "config/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A short, printable rendering of user text for messages: control bytes
 * become '?', long text is cut with "...". */
static const char *quote(const char *s, char *buf, size_t len)
{
    size_t j = 0;
    for (size_t i = 0; s[i] != '\0' && j + 4 < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        buf[j++] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
        if (i >= 80 && s[i + 1] != '\0') {
            memcpy(&buf[j], "...", 3);
            j += 3;
            break;
        }
    }
    buf[j] = '\0';
    return buf;
}

static const char *kind_name(const struct ynode *n)
{
    if (n == NULL || n->kind == YN_NULL)
        return "nothing";
    switch (n->kind) {
    case YN_SCALAR:
        return "a string";
    case YN_MAP:
        return "a mapping";
    case YN_SEQ:
        return "a sequence";
    default:
        return "an invalid value";
    }
}

/* Paths longer than CFG_PATH_MAX are cut; they still point the way. */
static void set_path(struct cfg_val *v, const char *fmt, ...) TG_PRINTF(2, 3);

static void set_path(struct cfg_val *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->path, sizeof(v->path), fmt, ap);
    va_end(ap);
}

void cfg_val_root(struct cfg_val *v, const struct ynode *root)
{
    memset(v, 0, sizeof(*v));
    v->node = root;
    v->line = root ? root->line : 1;
    v->col = root ? root->col : 1;
}

bool cfg_is_map(struct cfg_ctx *c, const struct cfg_val *v)
{
    const struct ynode *n = v->node;
    if (n == NULL || n->kind == YN_NULL || n->kind == YN_MAP)
        return true;
    if (n->kind != YN_BAD)
        cfg_error(c, v, "expected a mapping (key: value), got %s", kind_name(n));
    return false;
}

bool cfg_is_seq(struct cfg_ctx *c, const struct cfg_val *v)
{
    const struct ynode *n = v->node;
    if (n == NULL || n->kind == YN_NULL || n->kind == YN_SEQ)
        return true;
    if (n->kind != YN_BAD)
        cfg_error(c, v, "expected a sequence (- item, or [a, b]), got %s", kind_name(n));
    return false;
}

size_t cfg_count(const struct cfg_val *v)
{
    const struct ynode *n = v->node;
    if (n == NULL)
        return 0;
    if (n->kind == YN_SEQ)
        return n->n;
    if (n->kind != YN_MAP)
        return 0;
    size_t count = 0;
    for (size_t i = 0; i < n->n; i++) {
        const struct ypair *p = &n->pairs[i];
        if (p->key != NULL && p->first == NULL && !p->key->has_nul)
            count++;
    }
    return count;
}

bool cfg_map_next(struct cfg_ctx *c, const struct cfg_val *map, size_t *i, struct cfg_val *out)
{
    const struct ynode *m = map->node;
    if (m == NULL || m->kind != YN_MAP)
        return false;
    while (*i < m->n) {
        const struct ypair *p = &m->pairs[(*i)++];
        if (p->key == NULL)
            continue;
        char q[96];
        memset(out, 0, sizeof(*out));
        out->node = p->val;
        out->key = p->key->str;
        out->line = p->key->line;
        out->col = p->key->col;
        quote(p->key->str, q, sizeof(q));
        set_path(out, "%s%s%s", map->path, map->path[0] ? "." : "", q);
        if (p->key->has_nul) {
            cfg_error(c, out, "the key contains a NUL character");
            continue;
        }
        if (p->first != NULL) {
            cfg_error(c, out, "duplicate key (first defined at line %d, column %d)",
                      p->first->key->line, p->first->key->col);
            continue;
        }
        return true;
    }
    return false;
}

bool cfg_seq_next(struct cfg_ctx *c, const struct cfg_val *seq, size_t *i, struct cfg_val *out)
{
    (void)c;
    const struct ynode *s = seq->node;
    if (s == NULL || s->kind != YN_SEQ || *i >= s->n)
        return false;
    const struct ynode *item = s->items[*i];
    memset(out, 0, sizeof(*out));
    out->node = item;
    out->line = item->line;
    out->col = item->col;
    set_path(out, "%s[%zu]", seq->path, *i);
    (*i)++;
    return true;
}

/* "a", "a or b", "a, b or c" */
static void join_names(char *dst, size_t len, const char *const *names, size_t n, const char *last)
{
    size_t used = 0;
    dst[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        const char *sep = i == 0 ? "" : (i + 1 == n ? last : ", ");
        int w = snprintf(dst + used, len - used, "%s%s", sep, names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

int cfg_key(struct cfg_ctx *c, const struct cfg_val *kv, const char *const *keys, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(kv->key, keys[i]) == 0)
            return (int)i;
    }
    char q[96], list[512];
    join_names(list, sizeof(list), keys, n, ", ");
    cfg_error(c, kv, "unknown key \"%s\" (expected one of: %s)", quote(kv->key, q, sizeof(q)),
              list);
    return -1;
}

/* The text of a scalar value, or NULL after reporting (what names the
 * expected value in messages). */
static const char *scalar(struct cfg_ctx *c, const struct cfg_val *v, const char *what)
{
    const struct ynode *n = v->node;
    if (n != NULL && n->kind == YN_BAD)
        return NULL;
    if (n == NULL || n->kind == YN_NULL) {
        cfg_error(c, v, "missing value (expected %s)", what);
        return NULL;
    }
    if (n->kind != YN_SCALAR) {
        cfg_error(c, v, "expected %s, got %s", what, kind_name(n));
        return NULL;
    }
    if (n->has_nul) {
        cfg_error(c, v, "the value contains a NUL character");
        return NULL;
    }
    return n->str;
}

bool cfg_get_str(struct cfg_ctx *c, const struct cfg_val *v, char **out)
{
    const char *s = scalar(c, v, "a string");
    if (s == NULL)
        return false;
    if (s[0] == '\0') {
        cfg_error(c, v, "must not be empty");
        return false;
    }
    char *dup = cfg_strdup(c, s);
    if (dup == NULL)
        return false;
    free(*out);
    *out = dup;
    cfg_record(c, out, false, v);
    return true;
}

bool cfg_get_path(struct cfg_ctx *c, const struct cfg_val *v, char **out)
{
    const char *s = scalar(c, v, "a file path");
    if (s == NULL)
        return false;
    if (s[0] == '\0') {
        cfg_error(c, v, "must not be empty (expected a file path)");
        return false;
    }
    char *p = cfg_resolve_path(c, s);
    if (p == NULL)
        return false;
    free(*out);
    *out = p;
    cfg_record(c, out, false, v);
    return true;
}

/* RFC 9110 §5.6.2 tchar */
bool cfg_is_token(const char *s)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || strchr(extra, ch) != NULL;
        if (!ok)
            return false;
    }
    return true;
}

bool cfg_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool cfg_get_name(struct cfg_ctx *c, const struct cfg_val *v, char **out)
{
    const char *s = scalar(c, v, "a name");
    if (s == NULL)
        return false;
    bool is_ok = cfg_name_ok(s);
    if (!is_ok) {
        char q[96];
        cfg_error(c, v, "invalid name \"%s\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)",
                  quote(s, q, sizeof(q)));
    }
    /* Kept even when invalid, so that references to it do not cascade. */
    return cfg_get_str(c, v, out) && is_ok;
}

char *cfg_entry_name(struct cfg_ctx *c, const struct cfg_val *kv)
{
    if (!cfg_name_ok(kv->key)) {
        char q[96];
        cfg_error(c, kv, "invalid name \"%s\" (expected 1 to 64 of A-Z a-z 0-9 _ . -)",
                  quote(kv->key, q, sizeof(q)));
    }
    return cfg_strdup(c, kv->key);
}

bool cfg_get_bool(struct cfg_ctx *c, const struct cfg_val *v, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    const char *s = scalar(c, v, "true or false");
    if (s == NULL)
        return false;
    for (size_t i = 0; i < TG_ARRAY_LEN(yes); i++) {
        if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
            *out = strcmp(s, yes[i]) == 0;
            cfg_record(c, out, false, v);
            return true;
        }
    }
    char q[96];
    cfg_error(c, v, "unknown value \"%s\" (expected true or false)", quote(s, q, sizeof(q)));
    return false;
}

/* Decimal digits only: no sign, no spaces, no base prefix. */
static bool parse_u64(const char *s, uint64_t *out, const char **end_out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    *out = v;
    *end_out = end;
    return true;
}

static bool is_integer(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '\0')
        return false;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

bool cfg_get_uint(struct cfg_ctx *c, const struct cfg_val *v, unsigned lo, unsigned hi,
                  unsigned *out)
{
    char what[64], q[96];
    snprintf(what, sizeof(what), "a whole number from %u to %u", lo, hi);
    const char *s = scalar(c, v, what);
    if (s == NULL)
        return false;
    uint64_t n = 0;
    const char *end = NULL;
    if (!parse_u64(s, &n, &end)) {
        /* "-1" and "99999999999999999999" are numbers, just not ours. */
        if (is_integer(s))
            cfg_error(c, v, "%s is out of range (expected %u to %u)", quote(s, q, sizeof(q)), lo,
                      hi);
        else
            cfg_error(c, v, "\"%s\" is not a whole number (expected %u to %u)",
                      quote(s, q, sizeof(q)), lo, hi);
        return false;
    }
    if (*end != '\0') {
        cfg_error(c, v, "\"%s\" is not a whole number (expected %u to %u)", quote(s, q, sizeof(q)),
                  lo, hi);
        return false;
    }
    if (n < lo || n > hi) {
        cfg_error(c, v, "%s is out of range (expected %u to %u)", quote(s, q, sizeof(q)), lo, hi);
        return false;
    }
    *out = (unsigned)n;
    cfg_record(c, out, false, v);
    return true;
}

bool config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 60 * 60 * 1000}};
    uint64_t n = 0;
    const char *end = NULL;
    if (s == NULL || !parse_u64(s, &n, &end))
        return false;
    if (*end == '\0') {
        if (n != 0)
            return false;
        *ms = 0;
        return true;
    }
    for (size_t i = 0; i < TG_ARRAY_LEN(units); i++) {
        if (strcmp(end, units[i].unit) != 0)
            continue;
        if (n > UINT64_MAX / units[i].mult)
            return false;
        *ms = n * units[i].mult;
        return true;
    }
    return false;
}

bool config_parse_size(const char *s, uint64_t *bytes)
{
    uint64_t n = 0, mult = 1;
    const char *end = NULL;
    if (s == NULL || !parse_u64(s, &n, &end))
        return false;
    if (*end != '\0') {
        if (end[1] != '\0')
            return false;
        switch (*end) {
        case 'k':
        case 'K':
            mult = 1024;
            break;
        case 'm':
        case 'M':
            mult = 1024 * 1024;
            break;
        case 'g':
        case 'G':
            mult = 1024 * 1024 * 1024;
            break;
        default:
            return false;
        }
    }
    if (n > UINT64_MAX / mult)
        return false;
    *bytes = n * mult;
    return true;
}

bool cfg_get_duration(struct cfg_ctx *c, const struct cfg_val *v, uint64_t *out)
{
    const char *s = scalar(c, v, "a duration such as 500ms, 2s, 5m or 1h");
    if (s == NULL)
        return false;
    if (!config_parse_duration(s, out)) {
        char q[96];
        cfg_error(
            c, v,
            "bad duration \"%s\" (expected a whole number with a unit: 500ms, 2s, 5m, 1h; or 0)",
            quote(s, q, sizeof(q)));
        return false;
    }
    cfg_record(c, out, false, v);
    return true;
}

bool cfg_get_size(struct cfg_ctx *c, const struct cfg_val *v, uint64_t *out)
{
    const char *s = scalar(c, v, "a size such as 512, 16k, 1m or 1g");
    if (s == NULL)
        return false;
    if (!config_parse_size(s, out)) {
        char q[96];
        cfg_error(
            c, v,
            "bad size \"%s\" (expected bytes, or a whole number with k, m or g: 512, 16k, 1m)",
            quote(s, q, sizeof(q)));
        return false;
    }
    cfg_record(c, out, false, v);
    return true;
}

int cfg_get_enum(struct cfg_ctx *c, const struct cfg_val *v, const char *const *names, size_t n,
                 const void *field)
{
    char list[512], q[96];
    join_names(list, sizeof(list), names, n, " or ");
    const char *s = scalar(c, v, list);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            cfg_record(c, field, false, v);
            return (int)i;
        }
    }
    cfg_error(c, v, "unknown value \"%s\" (expected %s)", quote(s, q, sizeof(q)), list);
    cfg_record_bad(c, field, v);
    return -1;
}

static char *resolve(struct cfg_ctx *c, const char *p)
{
    const char *base = c->base_dir;
    if (p[0] == '/' || base == NULL || base[0] == '\0' || strcmp(base, ".") == 0)
        return cfg_strdup(c, p);
    size_t n = strlen(base) + 1 + strlen(p) + 1;
    char *r = cfg_calloc(c, n, 1);
    if (r == NULL)
        return NULL;
    bool has_slash = base[strlen(base) - 1] == '/';
    snprintf(r, n, "%s%s%s", base, has_slash ? "" : "/", p);
    return r;
}

char *cfg_resolve_path(struct cfg_ctx *c, const char *p)
{
    char *r = resolve(c, p);
    if (r == NULL || c->map == NULL)
        return r;
    char *mapped = c->map->fn(c->map->ctx, r);
    if (mapped == NULL)
        return r;
    free(r);
    char *own = cfg_strdup(c, mapped);
    free(mapped);
    return own;
}
