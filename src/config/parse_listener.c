/* listeners: and their rules. */
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

static bool is_hostname(const char *s)
{
    for (; *s != '\0'; s++) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
        if (!ok)
            return false;
    }
    return true;
}

/* A path without spaces or control bytes (it goes into a request line or a
 * Location header), starting with "/". */
static bool path_ok(const struct cfg_val *kv, const char *s, struct cfg_ctx *c)
{
    if (s[0] != '/') {
        cfg_error(c, kv, "must start with \"/\" (for example /api/)");
        return false;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) {
            cfg_error(c, kv, "must not contain spaces or control characters");
            return false;
        }
    }
    return true;
}

static void parse_headers(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_rule *r)
{
    if (!cfg_is_map(c, v) || cfg_count(v) == 0)
        return;
    r->respond_headers = cfg_calloc(c, cfg_count(v), sizeof(*r->respond_headers));
    if (r->respond_headers == NULL)
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        if (!cfg_is_token(kv.key)) {
            cfg_error(c, &kv,
                      "not a valid header name (expected letters, digits and !#$%%&'*+-.^_`|~)");
            continue;
        }
        char *value = NULL;
        if (!cfg_get_str(c, &kv, &value))
            continue;
        if (strpbrk(value, "\r\n") != NULL) {
            cfg_error(c, &kv, "a header value must not contain line breaks");
            free(value);
            continue;
        }
        char *name = cfg_strdup(c, kv.key);
        if (name == NULL) {
            free(value);
            continue;
        }
        r->respond_headers[r->n_respond_headers++] = (struct cfg_header){name, value};
    }
}

static void parse_respond(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_rule *r)
{
    static const char *const keys[] = {"status", "body", "headers"};
    r->has_respond = true;
    r->respond_status = 200;
    cfg_record(c, &r->has_respond, false, v);
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            (void)cfg_get_uint(c, &kv, 200, 599, &r->respond_status);
            break;
        case 1:
            /* An empty body is a body; the other strings must not be empty. */
            if (kv.node != NULL && kv.node->kind == YN_SCALAR && kv.node->len == 0)
                r->respond_body = cfg_strdup(c, "");
            else
                (void)cfg_get_str(c, &kv, &r->respond_body);
            break;
        case 2:
            parse_headers(c, &kv, r);
            break;
        default:
            break;
        }
    }
}

static void parse_redirect(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_rule *r)
{
    static const char *const keys[] = {"scheme", "host", "port", "path", "status"};
    static const char *const schemes[] = {"http", "https"};
    r->has_redirect = true;
    r->redirect_status = 301;
    cfg_record(c, &r->has_redirect, false, v);
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k;
        unsigned status = 0;
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            k = cfg_get_enum(c, &kv, schemes, TG_ARRAY_LEN(schemes), &r->redirect_scheme);
            if (k >= 0) {
                free(r->redirect_scheme);
                r->redirect_scheme = cfg_strdup(c, schemes[k]);
            }
            break;
        case 1:
            if (cfg_get_str(c, &kv, &r->redirect_host) && !is_hostname(r->redirect_host))
                cfg_error(c, &kv, "not a host name (expected letters, digits, - and .)");
            break;
        case 2:
            (void)cfg_get_uint(c, &kv, 1, 65535, &r->redirect_port);
            break;
        case 3:
            if (cfg_get_str(c, &kv, &r->redirect_path))
                (void)path_ok(&kv, r->redirect_path, c);
            break;
        case 4:
            if (!cfg_get_uint(c, &kv, 100, 599, &status))
                break;
            if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
                cfg_error(c, &kv,
                          "%u is not a redirect status (expected 301, 302, 303, 307 or 308)",
                          status);
                break;
            }
            r->redirect_status = status;
            break;
        default:
            break;
        }
    }
}

static void parse_rule_host(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_rule *r)
{
    if (!cfg_get_str(c, kv, &r->host))
        return;
    const char *h = r->host;
    if (strncmp(h, "*.", 2) == 0)
        h += 2;
    if (h[0] == '\0' || !is_hostname(h))
        cfg_error(c, kv,
                  "not a host pattern (expected a name such as api.example.com or *.example.com)");
}

static void parse_rule(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_rule *r)
{
    static const char *const keys[] = {"host",    "path",     "target_group",
                                       "respond", "redirect", "client"};
    r->pos = cfg_pos_of(v);
    cfg_record(c, r, true, v);
    if (!cfg_is_map(c, v))
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            parse_rule_host(c, &kv, r);
            break;
        case 1:
            if (cfg_get_str(c, &kv, &r->path))
                (void)path_ok(&kv, r->path, c);
            break;
        case 2:
            cfg_record(c, &r->target_group_name, false, &kv);
            (void)cfg_get_str(c, &kv, &r->target_group_name);
            break;
        case 3:
            parse_respond(c, &kv, r);
            break;
        case 4:
            parse_redirect(c, &kv, r);
            break;
        case 5:
            cfg_record(c, &r->client, false, &kv);
            r->has_client = true;
            cfg_parse_allow_rule(c, &kv, &r->client);
            break;
        default:
            break;
        }
    }
}

static void parse_rules(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_listener *l)
{
    cfg_record(c, &l->rules, false, v);
    if (!cfg_is_seq(c, v) || cfg_count(v) == 0)
        return;
    l->rules = cfg_calloc(c, cfg_count(v), sizeof(*l->rules));
    if (l->rules == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, v, &i, &item);)
        parse_rule(c, &item, &l->rules[l->n_rules++]);
}

/* trusted_proxies: [CIDR, ...]; every bad entry is reported at its position. */
static void parse_trusted_proxies(struct cfg_ctx *c, const struct cfg_val *v,
                                  struct cfg_listener *l)
{
    cfg_record(c, &l->trusted_proxies, false, v);
    if (!cfg_is_seq(c, v) || cfg_count(v) == 0)
        return;
    l->trusted_proxies = cfg_calloc(c, cfg_count(v), sizeof(*l->trusted_proxies));
    if (l->trusted_proxies == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, v, &i, &item);) {
        const struct ynode *node = item.node;
        const char *why = "expected an address or network as a string";
        if (node != NULL && node->kind == YN_SCALAR && !node->has_nul &&
            config_cidr_parse(node->str, &l->trusted_proxies[l->n_trusted_proxies], &why)) {
            l->n_trusted_proxies++;
            continue;
        }
        cfg_error(c, &item,
                  "%s (expected a network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.7)", why);
    }
}

static const char *const listener_keys[] = {"name",
                                            "protocol",
                                            "listen",
                                            "tls",
                                            "target_group",
                                            "default_target_group",
                                            "proxy_protocol",
                                            "max_connections",
                                            "max_connections_per_client",
                                            "handshake_timeout",
                                            "idle_timeout",
                                            "connect_timeout",
                                            "header_timeout",
                                            "response_timeout",
                                            "max_body_size",
                                            "rules",
                                            "trusted_proxies",
                                            "allow_underscores_in_headers",
                                            "add_forwarded_header",
                                            "alpn",
                                            "h2_max_streams",
                                            "h2_max_header_list_size",
                                            "h2_max_resets_per_second"};

/* Index into listener_keys for the keys that need a protocol. */
enum {
    LK_NAME,
    LK_PROTOCOL,
    LK_LISTEN,
    LK_TLS,
    LK_TARGET_GROUP,
    LK_DEFAULT_TARGET_GROUP,
    LK_PROXY_PROTOCOL,
    LK_MAX_CONNECTIONS,
    LK_MAX_CONNECTIONS_PER_CLIENT,
    LK_HANDSHAKE_TIMEOUT,
    LK_IDLE_TIMEOUT,
    LK_CONNECT_TIMEOUT,
    LK_HEADER_TIMEOUT,
    LK_RESPONSE_TIMEOUT,
    LK_MAX_BODY_SIZE,
    LK_RULES,
    LK_TRUSTED_PROXIES,
    LK_ALLOW_UNDERSCORES_IN_HEADERS,
    LK_ADD_FORWARDED_HEADER,
    LK_ALPN,
    LK_H2_MAX_STREAMS,
    LK_H2_MAX_HEADER_LIST_SIZE,
    LK_H2_MAX_RESETS_PER_SECOND,
};

/* alpn: [h2, http/1.1], in any order, each once. */
static void parse_alpn(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_listener *l)
{
    static const char *const names[] = {"h2", "http/1.1"};
    static const unsigned bits[] = {CFG_ALPN_H2, CFG_ALPN_HTTP1};
    cfg_record(c, &l->alpn, false, kv);
    if (!cfg_is_seq(c, kv))
        return;
    unsigned seen = 0;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, kv, &i, &item);) {
        int k = cfg_get_enum(c, &item, names, TG_ARRAY_LEN(names), &l->alpn);
        if (k < 0)
            continue;
        if (seen & bits[k])
            cfg_error(c, &item, "\"%s\" is listed twice", names[k]);
        seen |= bits[k];
    }
    if (cfg_count(kv) == 0)
        cfg_error(c, kv, "at least one protocol is required (h2, http/1.1)");
    if (seen != 0)
        l->alpn = seen;
}

static void parse_listener_key(struct cfg_ctx *c, const struct cfg_val *kv, int k,
                               struct cfg_listener *l)
{
    static const char *const protos[] = {"tcp_ssl", "https", "http"};
    static const char *const proxies[] = {"none", "v1", "v2"};
    int e;
    switch (k) {
    case LK_NAME:
        (void)cfg_get_name(c, kv, &l->name);
        break;
    case LK_PROTOCOL:
        e = cfg_get_enum(c, kv, protos, TG_ARRAY_LEN(protos), &l->protocol);
        if (e >= 0)
            l->protocol = (enum cfg_listener_proto)e;
        break;
    case LK_LISTEN:
        if (cfg_get_str(c, kv, &l->listen))
            l->listen_pos = cfg_pos_of(kv);
        break;
    case LK_TLS:
        l->has_tls = true;
        cfg_parse_listener_tls(c, kv, &l->tls);
        break;
    case LK_TARGET_GROUP:
        /* Recorded even when invalid: check.c must not say it is missing. */
        cfg_record(c, &l->target_group_name, false, kv);
        (void)cfg_get_str(c, kv, &l->target_group_name);
        break;
    case LK_DEFAULT_TARGET_GROUP:
        cfg_record(c, &l->default_target_group_name, false, kv);
        (void)cfg_get_str(c, kv, &l->default_target_group_name);
        break;
    case LK_PROXY_PROTOCOL:
        e = cfg_get_enum(c, kv, proxies, TG_ARRAY_LEN(proxies), &l->proxy_protocol);
        if (e >= 0)
            l->proxy_protocol = (enum cfg_proxy_proto)e;
        break;
    case LK_MAX_CONNECTIONS:
        (void)cfg_get_uint(c, kv, 1, 1000000, &l->max_connections);
        break;
    case LK_MAX_CONNECTIONS_PER_CLIENT:
        (void)cfg_get_uint(c, kv, 0, 1000000, &l->max_connections_per_client);
        break;
    case LK_HANDSHAKE_TIMEOUT:
        (void)cfg_get_duration(c, kv, &l->handshake_timeout_ms);
        break;
    case LK_IDLE_TIMEOUT:
        (void)cfg_get_duration(c, kv, &l->idle_timeout_ms);
        break;
    case LK_CONNECT_TIMEOUT:
        (void)cfg_get_duration(c, kv, &l->connect_timeout_ms);
        break;
    case LK_HEADER_TIMEOUT:
        (void)cfg_get_duration(c, kv, &l->header_timeout_ms);
        break;
    case LK_RESPONSE_TIMEOUT:
        (void)cfg_get_duration(c, kv, &l->response_timeout_ms);
        break;
    case LK_MAX_BODY_SIZE:
        (void)cfg_get_size(c, kv, &l->max_body_size);
        break;
    case LK_RULES:
        parse_rules(c, kv, l);
        break;
    case LK_TRUSTED_PROXIES:
        parse_trusted_proxies(c, kv, l);
        break;
    case LK_ALLOW_UNDERSCORES_IN_HEADERS:
        (void)cfg_get_bool(c, kv, &l->allow_underscores_in_headers);
        break;
    case LK_ADD_FORWARDED_HEADER:
        (void)cfg_get_bool(c, kv, &l->add_forwarded_header);
        break;
    case LK_ALPN:
        parse_alpn(c, kv, l);
        break;
    case LK_H2_MAX_STREAMS:
        (void)cfg_get_uint(c, kv, 1, 1000, &l->h2_max_streams);
        break;
    case LK_H2_MAX_HEADER_LIST_SIZE:
        (void)cfg_get_uint(c, kv, 1024, CFG_H2_MAX_HEADER_LIST, &l->h2_max_header_list_size);
        break;
    case LK_H2_MAX_RESETS_PER_SECOND:
        (void)cfg_get_uint(c, kv, 1, 100000, &l->h2_max_resets_per_second);
        break;
    default:
        break;
    }
}

static void parse_listener(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_listener *l)
{
    l->pos = cfg_pos_of(v);
    l->max_connections = 10000;
    l->handshake_timeout_ms = 10 * 1000;
    l->idle_timeout_ms = 5 * 60 * 1000;
    l->connect_timeout_ms = 5 * 1000;
    l->header_timeout_ms = 10 * 1000;
    l->response_timeout_ms = 60 * 1000;
    l->alpn = CFG_ALPN_H2 | CFG_ALPN_HTTP1;
    l->h2_max_streams = 100;
    l->h2_max_header_list_size = CFG_H2_MAX_HEADER_LIST;
    l->h2_max_resets_per_second = 100;
    cfg_record(c, l, true, v);
    if (!cfg_is_map(c, v))
        return;
    bool seen[TG_ARRAY_LEN(listener_keys)] = {false};
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k = cfg_key(c, &kv, listener_keys, TG_ARRAY_LEN(listener_keys));
        if (k < 0)
            continue;
        seen[k] = true;
        parse_listener_key(c, &kv, k, l);
    }
    if (!seen[LK_NAME])
        cfg_error_in(c, l, "name", "required key is missing (expected a name such as api)");
    if (!seen[LK_PROTOCOL])
        cfg_error_in(c, l, "protocol", "required key is missing (expected tcp_ssl, https or http)");
    if (!seen[LK_LISTEN])
        cfg_error_in(c, l, "listen",
                     "required key is missing (expected an address such as 0.0.0.0:8443)");
}

void cfg_parse_listeners(struct cfg_ctx *c, const struct cfg_val *v)
{
    struct config *cfg = c->cfg;
    if (!cfg_is_seq(c, v))
        return;
    if (cfg_count(v) == 0) {
        cfg_error(c, v, "at least one listener is required");
        return;
    }
    cfg->listeners = cfg_calloc(c, cfg_count(v), sizeof(*cfg->listeners));
    if (cfg->listeners == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, v, &i, &item);)
        parse_listener(c, &item, &cfg->listeners[cfg->n_listeners++]);
}
