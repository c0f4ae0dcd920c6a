/* target_groups: targets, health checks, passive checks, stickiness, tls. */
#include "config/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void parse_target(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_target *t)
{
    static const char *const keys[] = {"address", "weight"};
    t->weight = 1;
    t->pos = cfg_pos_of(v);
    cfg_record(c, t, true, v);
    if (!cfg_is_map(c, v))
        return;
    bool has_address = false;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            has_address = true;
            if (cfg_get_str(c, &kv, &t->address))
                t->is_builtin = strcmp(t->address, "builtin:echo") == 0;
            break;
        case 1:
            (void)cfg_get_uint(c, &kv, 0, 1000, &t->weight);
            break;
        default:
            break;
        }
    }
    if (!has_address)
        cfg_error_in(c, t, "address",
                     "required key is missing (expected HOST:PORT or builtin:echo)");
}

static void parse_targets(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_target_group *g)
{
    if (!cfg_is_seq(c, v) || cfg_count(v) == 0)
        return;
    g->targets = cfg_calloc(c, cfg_count(v), sizeof(*g->targets));
    if (g->targets == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, v, &i, &item);)
        parse_target(c, &item, &g->targets[g->n_targets++]);
}

/* A status code 100..599 at s, ending at *end. */
static bool parse_status(const char *s, const char **end, unsigned *out)
{
    if (s[0] < '0' || s[0] > '9')
        return false;
    char *e = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &e, 10);
    if (errno != 0 || e == s || v < 100 || v > 599)
        return false;
    *end = e;
    *out = (unsigned)v;
    return true;
}

static void parse_expect(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_health_check *h)
{
    char *s = NULL;
    if (!cfg_get_str(c, kv, &s))
        return;
    const char *end = NULL;
    unsigned lo = 0, hi = 0;
    bool is_ok = parse_status(s, &end, &lo);
    if (is_ok && *end == '\0') {
        hi = lo;
    } else if (is_ok && *end == '-') {
        is_ok = parse_status(end + 1, &end, &hi) && *end == '\0' && lo <= hi;
    } else {
        is_ok = false;
    }
    if (!is_ok)
        cfg_error(c, kv,
                  "bad status range \"%.32s\" (expected a code such as 200 or a range such as "
                  "200-399, within 100-599)",
                  s);
    else {
        h->expect_lo = lo;
        h->expect_hi = hi;
        cfg_record(c, &h->expect_lo, false, kv);
    }
    free(s);
}

static void parse_health_check(struct cfg_ctx *c, const struct cfg_val *v,
                               struct cfg_health_check *h)
{
    static const char *const keys[] = {"type",
                                       "path",
                                       "method",
                                       "host",
                                       "expect",
                                       "interval",
                                       "timeout",
                                       "healthy_threshold",
                                       "unhealthy_threshold"};
    static const char *const types[] = {"none", "tcp", "http", "https"};
    h->pos = cfg_pos_of(v);
    cfg_record(c, h, true, v);
    if (!cfg_is_map(c, v))
        return;
    /* The block is there: check with TCP connects unless told otherwise. */
    h->type = CFG_HC_TCP;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k;
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            k = cfg_get_enum(c, &kv, types, TG_ARRAY_LEN(types), &h->type);
            if (k >= 0)
                h->type = (enum cfg_hc_type)k;
            break;
        case 1:
            if (cfg_get_str(c, &kv, &h->path) && h->path[0] != '/')
                cfg_error(c, &kv, "must start with \"/\" (for example /healthz)");
            break;
        case 2:
            if (cfg_get_str(c, &kv, &h->method) && !cfg_is_token(h->method))
                cfg_error(c, &kv, "not an HTTP method (expected a token such as GET or HEAD)");
            break;
        case 3:
            (void)cfg_get_str(c, &kv, &h->host);
            break;
        case 4:
            parse_expect(c, &kv, h);
            break;
        case 5:
            if (cfg_get_duration(c, &kv, &h->interval_ms) && h->interval_ms == 0)
                cfg_error(c, &kv, "must be greater than 0");
            break;
        case 6:
            if (cfg_get_duration(c, &kv, &h->timeout_ms) && h->timeout_ms == 0)
                cfg_error(c, &kv, "must be greater than 0");
            break;
        case 7:
            (void)cfg_get_uint(c, &kv, 1, 100, &h->healthy_threshold);
            break;
        case 8:
            (void)cfg_get_uint(c, &kv, 1, 100, &h->unhealthy_threshold);
            break;
        default:
            break;
        }
    }
}

static void parse_passive(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_passive *p)
{
    static const char *const keys[] = {"consecutive_failures", "count_5xx", "ejection"};
    cfg_record(c, p, true, v);
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            (void)cfg_get_uint(c, &kv, 0, 1000, &p->consecutive_failures);
            break;
        case 1:
            (void)cfg_get_bool(c, &kv, &p->count_5xx);
            break;
        case 2:
            if (cfg_get_duration(c, &kv, &p->ejection_ms) && p->ejection_ms == 0)
                cfg_error(c, &kv, "must be greater than 0");
            break;
        default:
            break;
        }
    }
}

static void parse_sticky(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_sticky *s)
{
    static const char *const keys[] = {"type", "ttl", "name"};
    static const char *const types[] = {"none", "source_ip", "cookie"};
    s->pos = cfg_pos_of(v);
    cfg_record(c, s, true, v);
    if (!cfg_is_map(c, v))
        return;
    bool has_type = false;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k;
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            has_type = true;
            k = cfg_get_enum(c, &kv, types, TG_ARRAY_LEN(types), &s->type);
            if (k >= 0)
                s->type = (enum cfg_sticky_type)k;
            break;
        case 1:
            (void)cfg_get_duration(c, &kv, &s->ttl_ms);
            break;
        case 2:
            if (cfg_get_str(c, &kv, &s->name) && !cfg_is_token(s->name))
                cfg_error(
                    c, &kv,
                    "not a valid cookie name (expected letters, digits and !#$%%&'*+-.^_`|~)");
            break;
        default:
            break;
        }
    }
    if (!has_type)
        cfg_error_in(c, s, "type", "required key is missing (expected none, source_ip or cookie)");
}

static void parse_backend_tls(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_backend_tls *t)
{
    static const char *const keys[] = {"verify", "ca", "server_name"};
    t->enabled = true;
    t->pos = cfg_pos_of(v);
    cfg_record(c, t, true, v);
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            (void)cfg_get_bool(c, &kv, &t->verify);
            break;
        case 1:
            (void)cfg_get_str(c, &kv, &t->ca_name);
            break;
        case 2:
            (void)cfg_get_str(c, &kv, &t->server_name);
            break;
        default:
            break;
        }
    }
}

static void group_defaults(struct cfg_ctx *c, struct cfg_target_group *g)
{
    g->algorithm = CFG_LB_WRR;
    g->health_check.type = CFG_HC_NONE;
    g->health_check.path = cfg_strdup(c, "/");
    g->health_check.method = cfg_strdup(c, "GET");
    g->health_check.expect_lo = 200;
    g->health_check.expect_hi = 399;
    g->health_check.interval_ms = 5 * 1000;
    g->health_check.timeout_ms = 2 * 1000;
    g->health_check.healthy_threshold = 2;
    g->health_check.unhealthy_threshold = 3;
    g->passive.ejection_ms = 30 * 1000;
    g->sticky.type = CFG_STICKY_NONE;
    g->sticky.ttl_ms = 60 * 60 * 1000;
    g->sticky.name = cfg_strdup(c, "tollgate_sticky");
    g->tls.verify = true;
    g->when_all_down = CFG_ALL_DOWN_FAIL_OPEN;
}

static void parse_group(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_target_group *g)
{
    static const char *const keys[] = {"algorithm", "targets", "health_check", "passive",
                                       "sticky",    "tls",     "when_all_down"};
    static const char *const algos[] = {"wrr", "least_conn", "ip_hash"};
    static const char *const downs[] = {"fail_open", "reject"};
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k;
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            k = cfg_get_enum(c, &kv, algos, TG_ARRAY_LEN(algos), &g->algorithm);
            if (k >= 0)
                g->algorithm = (enum cfg_lb_algo)k;
            break;
        case 1:
            cfg_record(c, &g->targets, false, &kv);
            parse_targets(c, &kv, g);
            break;
        case 2:
            parse_health_check(c, &kv, &g->health_check);
            break;
        case 3:
            parse_passive(c, &kv, &g->passive);
            break;
        case 4:
            parse_sticky(c, &kv, &g->sticky);
            break;
        case 5:
            parse_backend_tls(c, &kv, &g->tls);
            break;
        case 6:
            k = cfg_get_enum(c, &kv, downs, TG_ARRAY_LEN(downs), &g->when_all_down);
            if (k >= 0)
                g->when_all_down = (enum cfg_all_down)k;
            break;
        default:
            break;
        }
    }
}

void cfg_parse_target_groups(struct cfg_ctx *c, const struct cfg_val *v)
{
    struct config *cfg = c->cfg;
    if (!cfg_is_map(c, v) || cfg_count(v) == 0)
        return;
    cfg->target_groups = cfg_calloc(c, cfg_count(v), sizeof(*cfg->target_groups));
    if (cfg->target_groups == NULL)
        return;
    struct cfg_val ev;
    for (size_t i = 0; cfg_map_next(c, v, &i, &ev);) {
        struct cfg_target_group *g = &cfg->target_groups[cfg->n_target_groups++];
        g->name = cfg_entry_name(c, &ev);
        g->pos = cfg_pos_of(&ev);
        cfg_record(c, g, true, &ev);
        group_defaults(c, g);
        parse_group(c, &ev, g);
    }
}
