/* Loading a config: reading the file, the load context and the top level. */
#include "config/internal.h"
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Far beyond any real config; refuses to slurp a wrong file (a disk image). */
#define CFG_MAX_FILE_SIZE (16 * 1024 * 1024)

static void cfg_vreport(struct cfg_ctx *c, enum diag_level level, const char *path, int line,
                        int col, const char *fmt, va_list ap) TG_PRINTF(6, 0);

static void cfg_vreport(struct cfg_ctx *c, enum diag_level level, const char *path, int line,
                        int col, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    diag_add(c->d, level, c->file, line, col, path && path[0] ? path : NULL, "%s", msg);
}

void cfg_error(struct cfg_ctx *c, const struct cfg_val *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(c, DIAG_ERROR, v->path, v->line, v->col, fmt, ap);
    va_end(ap);
}

void cfg_oom(struct cfg_ctx *c)
{
    if (!c->is_oom)
        diag_add(c->d, DIAG_ERROR, c->file, 0, 0, NULL, "out of memory while loading");
    c->is_oom = true;
}

void *cfg_calloc(struct cfg_ctx *c, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (p == NULL)
        cfg_oom(c);
    return p;
}

char *cfg_strdup(struct cfg_ctx *c, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        cfg_oom(c);
    return p;
}

static void record(struct cfg_ctx *c, const void *addr, bool is_obj, bool is_bad,
                   const struct cfg_val *v)
{
    if (c->n_recs == c->cap_recs) {
        size_t cap = c->cap_recs ? c->cap_recs * 2 : 64;
        struct cfg_rec *recs = realloc(c->recs, cap * sizeof(*recs));
        if (recs == NULL) {
            cfg_oom(c);
            return;
        }
        c->recs = recs;
        c->cap_recs = cap;
    }
    char *path = cfg_strdup(c, v->path);
    if (path == NULL)
        return;
    c->recs[c->n_recs] = (struct cfg_rec){.addr = addr,
                                          .is_obj = is_obj,
                                          .seq = c->n_recs,
                                          .is_bad = is_bad,
                                          .path = path,
                                          .line = v->line,
                                          .col = v->col};
    c->n_recs++;
    c->is_sorted = false;
}

void cfg_record(struct cfg_ctx *c, const void *addr, bool is_obj, const struct cfg_val *v)
{
    record(c, addr, is_obj, false, v);
}

void cfg_record_bad(struct cfg_ctx *c, const void *addr, const struct cfg_val *v)
{
    record(c, addr, false, true, v);
}

static int rec_key_cmp(const struct cfg_rec *ra, const struct cfg_rec *rb)
{
    uintptr_t x = (uintptr_t)ra->addr, y = (uintptr_t)rb->addr;
    if (x != y)
        return x < y ? -1 : 1;
    return (int)ra->is_obj - (int)rb->is_obj;
}

static int rec_cmp(const void *a, const void *b)
{
    const struct cfg_rec *ra = a, *rb = b;
    int r = rec_key_cmp(ra, rb);
    if (r != 0)
        return r;
    return ra->seq < rb->seq ? -1 : (ra->seq > rb->seq ? 1 : 0);
}

const struct cfg_rec *cfg_rec_find(struct cfg_ctx *c, const void *addr, bool is_obj)
{
    if (!c->is_sorted) {
        if (c->n_recs > 0)
            qsort(c->recs, c->n_recs, sizeof(*c->recs), rec_cmp);
        c->is_sorted = true;
    }
    /* The last record of the key: first one greater, minus one. */
    struct cfg_rec key = {.addr = addr, .is_obj = is_obj};
    size_t lo = 0, hi = c->n_recs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (rec_key_cmp(&c->recs[mid], &key) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || rec_key_cmp(&c->recs[lo - 1], &key) != 0)
        return NULL;
    return &c->recs[lo - 1];
}

static void cfg_vreport_at(struct cfg_ctx *c, enum diag_level level, const void *field,
                           const char *fmt, va_list ap) TG_PRINTF(4, 0);

static void cfg_vreport_at(struct cfg_ctx *c, enum diag_level level, const void *field,
                           const char *fmt, va_list ap)
{
    const struct cfg_rec *r = cfg_rec_find(c, field, false);
    cfg_vreport(c, level, r ? r->path : NULL, r ? r->line : 0, r ? r->col : 0, fmt, ap);
}

void cfg_error_at(struct cfg_ctx *c, const void *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport_at(c, DIAG_ERROR, field, fmt, ap);
    va_end(ap);
}

void cfg_warn_at(struct cfg_ctx *c, const void *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport_at(c, DIAG_WARNING, field, fmt, ap);
    va_end(ap);
}

void cfg_error_in(struct cfg_ctx *c, const void *obj, const char *sub, const char *fmt, ...)
{
    const struct cfg_rec *r = cfg_rec_find(c, obj, true);
    char path[CFG_PATH_MAX];
    const char *base = r ? r->path : "";
    if (sub == NULL)
        snprintf(path, sizeof(path), "%s", base);
    else
        snprintf(path, sizeof(path), "%s%s%s", base, base[0] ? "." : "", sub);
    va_list ap;
    va_start(ap, fmt);
    cfg_vreport(c, DIAG_ERROR, path, r ? r->line : 0, r ? r->col : 0, fmt, ap);
    va_end(ap);
}

/* ---- top level ---- */

static void parse_workers(struct cfg_ctx *c, const struct cfg_val *v)
{
    struct config *cfg = c->cfg;
    if (v->node != NULL && v->node->kind == YN_SCALAR && strcmp(v->node->str, "auto") == 0) {
        cfg->workers = 0;
        cfg_record(c, &cfg->workers, false, v);
        return;
    }
    if (v->node != NULL && v->node->kind == YN_SCALAR && !v->node->has_nul &&
        (v->node->str[0] < '0' || v->node->str[0] > '9') && v->node->str[0] != '-') {
        cfg_error(c, v, "unknown value \"%.64s\" (expected auto or a whole number from 1 to 256)",
                  v->node->str);
        return;
    }
    (void)cfg_get_uint(c, v, 1, 256, &cfg->workers);
}

/* A name for the Host header: letters, digits, '-', '.' (a DNS name or an
 * IPv4 address), or an IPv6 address in brackets. */
static bool admin_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253)
        return false;
    bool v6 = s[0] == '[';
    if (v6 && (n < 3 || s[n - 1] != ']'))
        return false;
    for (size_t i = v6 ? 1 : 0; i < (v6 ? n - 1 : n); i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '.' || (v6 ? ch == ':' : ch == '-');
        if (!ok)
            return false;
    }
    return true;
}

static void parse_admin_server_names(struct cfg_ctx *c, const struct cfg_val *v)
{
    struct config *cfg = c->cfg;
    if (!cfg_is_seq(c, v))
        return;
    cfg_record(c, &cfg->admin_server_names, false, v);
    cfg->admin_server_names = cfg_calloc(c, cfg_count(v) + 1, sizeof(char *));
    if (cfg->admin_server_names == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, v, &i, &item);) {
        char **slot = &cfg->admin_server_names[cfg->n_admin_server_names];
        if (!cfg_get_str(c, &item, slot))
            continue;
        if (!admin_name_ok(*slot)) {
            cfg_error(c, &item,
                      "\"%.64s\" is not a host name (expected a name such as admin.example, an "
                      "IPv4 address or an IPv6 address in brackets)",
                      *slot);
            free(*slot);
            *slot = NULL;
            continue;
        }
        cfg->n_admin_server_names++;
    }
}

static void parse_admin(struct cfg_ctx *c, const struct cfg_val *v)
{
    static const char *const keys[] = {"listen", "allow_remote", "server_names", "token_file"};
    struct config *cfg = c->cfg;
    if (!cfg_is_map(c, v))
        return;
    /* Present (even empty): the endpoint is on, on loopback unless told. */
    cfg->admin_listen = cfg_strdup(c, "127.0.0.1:9901");
    cfg_record(c, &cfg->admin_listen, false, v);
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            (void)cfg_get_str(c, &kv, &cfg->admin_listen);
            break;
        case 1:
            (void)cfg_get_bool(c, &kv, &cfg->admin_allow_remote);
            break;
        case 2:
            parse_admin_server_names(c, &kv);
            break;
        case 3:
            (void)cfg_get_path(c, &kv, &cfg->admin_token_file);
            break;
        default:
            break;
        }
    }
}

static void parse_log(struct cfg_ctx *c, const struct cfg_val *v)
{
    static const char *const keys[] = {"level", "access"};
    /* Same order as enum log_level. */
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    struct config *cfg = c->cfg;
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k;
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            k = cfg_get_enum(c, &kv, levels, TG_ARRAY_LEN(levels), &cfg->log_level);
            if (k >= 0)
                cfg->log_level = (enum log_level)k;
            break;
        case 1:
            if (kv.node != NULL && kv.node->kind == YN_SCALAR &&
                (strcmp(kv.node->str, "stdout") == 0 || strcmp(kv.node->str, "off") == 0))
                (void)cfg_get_str(c, &kv, &cfg->access_log);
            else
                (void)cfg_get_path(c, &kv, &cfg->access_log);
            break;
        default:
            break;
        }
    }
}

/* 1s lets tests watch rotations; 168h (7 days) keeps a leaked key's reach bounded. */
static void parse_ticket_rotation(struct cfg_ctx *c, const struct cfg_val *kv)
{
    enum { MIN_MS = 1000, MAX_MS = 7 * 24 * 3600 * 1000 };
    uint64_t *ms = &c->cfg->ticket_key_rotation_ms;
    if (!cfg_get_duration(c, kv, ms))
        return;
    if (*ms < MIN_MS || *ms > MAX_MS) {
        cfg_error_at(c, ms,
                     "must be between 1s and 168h (how often a new session-ticket key is made)");
        *ms = 3600 * 1000;
    }
}

/* How far back the record of accepted client certificates reaches: 0
 * keeps none; at most 90 days. */
static void parse_trust_history(struct cfg_ctx *c, const struct cfg_val *kv)
{
    enum { MIN_MS = 3600 * 1000 };
    const uint64_t max_ms = UINT64_C(90) * 24 * 3600 * 1000;
    uint64_t *ms = &c->cfg->trust_history_ms;
    if (!cfg_get_duration(c, kv, ms))
        return;
    if (*ms != 0 && (*ms < MIN_MS || *ms > max_ms)) {
        cfg_error_at(c, ms,
                     "must be 0 (keep no record) or between 1h and 2160h (how far back tollgate "
                     "remembers the client certificates it accepted)");
        *ms = CFG_TRUST_HISTORY_DEFAULT_MS;
    }
}

static void parse_root(struct cfg_ctx *c, const struct ynode *root)
{
    static const char *const keys[] = {"workers",
                                       "admin",
                                       "log",
                                       "drain_timeout",
                                       "user",
                                       "certificates",
                                       "client_cas",
                                       "target_groups",
                                       "listeners",
                                       "max_connections",
                                       "max_draining_generations",
                                       "ticket_key_rotation",
                                       "ticket_keys_file",
                                       "state_dir",
                                       "trust_history",
                                       "fleet"};
    struct config *cfg = c->cfg;
    struct cfg_val rv, kv;
    cfg_val_root(&rv, root);
    if (root != NULL && root->kind != YN_MAP && root->kind != YN_NULL) {
        if (root->kind != YN_BAD)
            cfg_error(c, &rv,
                      "the top level must be a mapping with keys such as listeners, target_groups "
                      "and certificates");
        return;
    }
    bool has_listeners = false, has_other = false;
    struct cfg_val other;
    for (size_t i = 0; cfg_map_next(c, &rv, &i, &kv);) {
        if (!has_other && kv.key != NULL && strcmp(kv.key, "fleet") != 0) {
            has_other = true;
            other = kv;
        }
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            parse_workers(c, &kv);
            break;
        case 1:
            parse_admin(c, &kv);
            break;
        case 2:
            parse_log(c, &kv);
            break;
        case 3:
            (void)cfg_get_duration(c, &kv, &cfg->drain_timeout_ms);
            break;
        case 4:
            (void)cfg_get_str(c, &kv, &cfg->user);
            break;
        case 5:
            cfg_parse_certificates(c, &kv);
            break;
        case 6:
            cfg_parse_client_cas(c, &kv);
            break;
        case 7:
            cfg_parse_target_groups(c, &kv);
            break;
        case 8:
            has_listeners = true;
            cfg_parse_listeners(c, &kv);
            break;
        case 9:
            (void)cfg_get_uint(c, &kv, 0, 10000000, &cfg->max_connections);
            break;
        case 10:
            /* The current generation and this many draining ones fit the
             * 16 generations /status and /metrics show. */
            (void)cfg_get_uint(c, &kv, 1, 15, &cfg->max_draining_generations);
            break;
        case 11:
            parse_ticket_rotation(c, &kv);
            break;
        case 12:
            (void)cfg_get_path(c, &kv, &cfg->ticket_keys_file);
            break;
        case 13:
            (void)cfg_get_path(c, &kv, &cfg->state_dir);
            break;
        case 14:
            parse_trust_history(c, &kv);
            break;
        case 15:
            cfg_parse_fleet(c, &kv);
            break;
        default:
            break;
        }
    }
    if (cfg->fleet != NULL) {
        /* A node file: its config comes from the fleet. */
        if (has_other)
            cfg_error(c, &other,
                      "a file with fleet: holds nothing else (this node's config "
                      "comes from the fleet; push it with tollgate fleet push)");
        return;
    }
    if (!has_listeners) {
        snprintf(rv.path, sizeof(rv.path), "listeners");
        cfg_error(c, &rv, "required key is missing (expected a sequence of listeners)");
    }
}

static int diag_pos_cmp(const void *a, const void *b)
{
    const struct diag_entry *const *ea = a, *const *eb = b;
    if ((*ea)->line != (*eb)->line)
        return (*ea)->line < (*eb)->line ? -1 : 1;
    if ((*ea)->col != (*eb)->col)
        return (*ea)->col < (*eb)->col ? -1 : 1;
    /* Same key: keep the order they were found in. */
    return *ea < *eb ? -1 : (*ea > *eb ? 1 : 0);
}

/* Puts the entries added since n0 in file order: parsing and the meaning
 * checks find them in two passes, a reader wants them top to bottom. */
static void sort_diags(struct diag *d, size_t n0)
{
    size_t n = d->n - n0;
    if (n < 2)
        return;
    const struct diag_entry **order = calloc(n, sizeof(*order));
    struct diag_entry *tmp = calloc(n, sizeof(*tmp));
    if (order != NULL && tmp != NULL) {
        for (size_t i = 0; i < n; i++)
            order[i] = &d->v[n0 + i];
        qsort(order, n, sizeof(*order), diag_pos_cmp);
        for (size_t i = 0; i < n; i++)
            tmp[i] = *order[i];
        memcpy(&d->v[n0], tmp, n * sizeof(*tmp));
    }
    free(tmp);
    free(order);
}

static void cfg_ctx_fini(struct cfg_ctx *c)
{
    for (size_t i = 0; i < c->n_recs; i++)
        free(c->recs[i].path);
    free(c->recs);
    c->recs = NULL;
    c->n_recs = c->cap_recs = 0;
}

enum tg_status config_load_buffer(const char *name, const char *base_dir, const char *text,
                                  size_t len, struct config **out, struct diag *d)
{
    return config_load_mapped(name, base_dir, NULL, text, len, out, d);
}

enum tg_status config_load_mapped(const char *name, const char *base_dir,
                                  const struct config_path_map *map, const char *text, size_t len,
                                  struct config **out, struct diag *d)
{
    struct cfg_ctx c = {.d = d, .file = name, .base_dir = base_dir, .map = map};
    struct ydoc doc = {0};
    struct config *cfg = NULL;
    size_t n_errors = d->n_errors, n_diags = d->n;
    *out = NULL;

    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        diag_add(d, DIAG_ERROR, name, 0, 0, NULL, "out of memory while loading");
        return TG_E_CONFIG;
    }
    c.cfg = cfg;
    cfg->path = cfg_strdup(&c, name);
    cfg->log_level = LOG_LEVEL_INFO;
    cfg->access_log = cfg_strdup(&c, "stdout");
    cfg->drain_timeout_ms = 30 * 1000;
    cfg->max_draining_generations = 4;
    cfg->ticket_key_rotation_ms = 3600 * 1000;
    cfg->trust_history_ms = CFG_TRUST_HISTORY_DEFAULT_MS;

    if (ydoc_parse(&doc, name, text, len, d) != TG_OK)
        goto out;
    parse_root(&c, doc.root);
    /* Even after errors: one run reports everything it can. */
    if (!c.is_oom && cfg->fleet == NULL)
        cfg_check(&c);
out:
    ydoc_fini(&doc);
    cfg_ctx_fini(&c);
    sort_diags(d, n_diags);
    if (d->n_errors != n_errors) {
        config_free(cfg);
        return TG_E_CONFIG;
    }
    *out = cfg;
    return TG_OK;
}

/* Reads a whole regular file (tg_read_file) into a NUL-terminated heap
 * buffer; what went wrong goes to d. */
static enum tg_status read_file(const char *path, char **text, size_t *len, struct diag *d)
{
    char err[256];
    enum tg_status st = tg_read_file(path, CFG_MAX_FILE_SIZE, text, len, err, sizeof(err));
    if (st == TG_OK)
        return TG_OK;
    const char *why = strncmp(err, "cannot read: ", 13) == 0 ? err + 13 : err;
    if (strncmp(err, "larger than", 11) == 0)
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL,
                 "config file \"%s\" is too large (more than 16 MiB)", path);
    else
        diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "cannot read config file \"%s\": %s", path, why);
    return TG_E_CONFIG;
}

enum tg_status config_load(const char *path, struct config **out, struct diag *d)
{
    char *text = NULL, *dir = NULL;
    size_t len = 0;
    enum tg_status st;
    *out = NULL;

    st = read_file(path, &text, &len, d);
    if (st != TG_OK)
        goto out;
    const char *slash = strrchr(path, '/');
    if (slash != NULL) {
        dir = strndup(path, slash == path ? 1 : (size_t)(slash - path));
        if (dir == NULL) {
            diag_add(d, DIAG_ERROR, NULL, 0, 0, NULL, "out of memory reading \"%s\"", path);
            st = TG_E_CONFIG;
            goto out;
        }
    }
    st = config_load_buffer(path, dir, text, len, out, d);
out:
    free(dir);
    free(text);
    return st;
}
