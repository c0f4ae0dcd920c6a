/*
 * Meaning checks after parsing: references between sections, combinations
 * of keys, addresses and files. Runs even when parsing found errors, so it
 * skips what is missing rather than reporting it twice.
 */
#include "config/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Given with a valid value. */
bool cfg_was_set(struct cfg_ctx *c, const void *field)
{
    const struct cfg_rec *r = cfg_rec_find(c, field, false);
    return r != NULL && !r->is_bad;
}

/* Given with a value that was refused and reported: checks that depend on
 * it would only repeat the error in other words. */
bool cfg_was_bad(struct cfg_ctx *c, const void *field)
{
    const struct cfg_rec *r = cfg_rec_find(c, field, false);
    return r != NULL && r->is_bad;
}

/* "site, site-rsa" from an array of structs whose name is at name_off. */
static void list_names(char *dst, size_t len, const void *arr, size_t n, size_t stride,
                       size_t name_off)
{
    size_t used = 0;
    dst[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < len; i++) {
        const char *name = *(char *const *)((const char *)arr + i * stride + name_off);
        if (name == NULL)
            continue;
        int w = snprintf(dst + used, len - used, "%s%s", used ? ", " : "", name);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

static void unknown_ref(struct cfg_ctx *c, const void *field, const char *what, const char *name,
                        const char *section, const void *arr, size_t n, size_t stride,
                        size_t name_off)
{
    char names[512];
    list_names(names, sizeof(names), arr, n, stride, name_off);
    if (names[0] == '\0')
        cfg_error_at(c, field, "unknown %s \"%.64s\" (none is defined under %s)", what, name,
                     section);
    else
        cfg_error_at(c, field, "unknown %s \"%.64s\" (defined: %s)", what, name, names);
}

struct cfg_certificate *cfg_ref_certificate(struct cfg_ctx *c, char *const *field)
{
    struct config *cfg = c->cfg;
    struct cfg_certificate *r = config_find_certificate(cfg, *field);
    if (r == NULL)
        unknown_ref(c, field, "certificate", *field, "certificates", cfg->certificates,
                    cfg->n_certificates, sizeof(*cfg->certificates),
                    offsetof(struct cfg_certificate, name));
    return r;
}

struct cfg_client_ca *cfg_ref_client_ca(struct cfg_ctx *c, char *const *field)
{
    struct config *cfg = c->cfg;
    struct cfg_client_ca *r = config_find_client_ca(cfg, *field);
    if (r == NULL)
        unknown_ref(c, field, "client_ca", *field, "client_cas", cfg->client_cas, cfg->n_client_cas,
                    sizeof(*cfg->client_cas), offsetof(struct cfg_client_ca, name));
    return r;
}

static struct cfg_target_group *ref_target_group(struct cfg_ctx *c, char *const *field)
{
    struct config *cfg = c->cfg;
    struct cfg_target_group *r = config_find_target_group(cfg, *field);
    if (r == NULL)
        unknown_ref(c, field, "target group", *field, "target_groups", cfg->target_groups,
                    cfg->n_target_groups, sizeof(*cfg->target_groups),
                    offsetof(struct cfg_target_group, name));
    return r;
}

/* The file must exist and be readable by us now; its content is the TLS
 * module's business (tls_config_check). */
static void check_file(struct cfg_ctx *c, char *const *field)
{
    const char *path = *field;
    if (path == NULL)
        return;
    /* O_NONBLOCK: a FIFO must not hang the check. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat sb;
    if (fd < 0) {
        cfg_error_at(c, field, "cannot read \"%s\": %s", path, strerror(errno));
        return;
    }
    if (fstat(fd, &sb) != 0)
        cfg_error_at(c, field, "cannot read \"%s\": %s", path, strerror(errno));
    else if (S_ISDIR(sb.st_mode))
        cfg_error_at(c, field, "cannot read \"%s\": %s", path, strerror(EISDIR));
    close(fd);
}

static bool parse_addr(struct cfg_ctx *c, char *const *field, struct net_addr *out)
{
    char err[256];
    if (net_addr_parse(*field, false, out, err, sizeof(err)) == TG_OK)
        return true;
    cfg_error_at(c, field, "%s", err);
    return false;
}

/* Both cannot be bound at once: same address, or a wildcard of the same
 * family on the same port (IPv6 sockets are v6only, so families differ). */
static bool addr_overlap(const struct net_addr *a, const struct net_addr *b)
{
    if (a->len == 0 || b->len == 0 || a->ss.ss_family != b->ss.ss_family)
        return false;
    if (net_addr_port(a) != net_addr_port(b))
        return false;
    return net_addr_equal(a, b) || net_addr_is_any(a) || net_addr_is_any(b);
}

/* RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
 * "+" / "/" ) *"=" */
static bool is_b64token(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                     (s[i] >= '0' && s[i] <= '9') || strchr("-._~+/", s[i]) != NULL))
        i++;
    if (i == 0)
        return false;
    while (i < n && s[i] == '=')
        i++;
    return i == n;
}

/*
 * Reads a file of secrets named by the config key at field (path): a
 * regular file, read whole up to cap bytes into buf (*n; more than cap
 * means the file is larger). A file other users can read is a warning.
 * False, with the error given, when it cannot be read.
 */
static bool read_secret_file(struct cfg_ctx *c, const void *field, const char *path, void *buf,
                             size_t cap, size_t *n)
{
    *n = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        cfg_error_at(c, field, "cannot read \"%s\": %s", path, strerror(errno));
        return false;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        cfg_error_at(c, field, "cannot read \"%s\": not a regular file", path);
        close(fd);
        return false;
    }
    if ((sb.st_mode & 077) != 0)
        cfg_warn_at(c, field, "\"%s\" can be read by other users (mode %03o); chmod 600 it", path,
                    (unsigned)(sb.st_mode & 0777));
    while (*n < cap) {
        ssize_t r = read(fd, (char *)buf + *n, cap - *n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        *n += (size_t)r;
    }
    close(fd);
    return true;
}

/* Reads admin.token_file into cfg->admin_token: one line (a final newline
 * is dropped), a bearer token of ADMIN_TOKEN_MIN to ADMIN_TOKEN_MAX
 * characters. The token is never written into a message. */
static void read_admin_token(struct cfg_ctx *c)
{
    enum { ADMIN_TOKEN_MIN = 16, ADMIN_TOKEN_MAX = 1024 };
    struct config *cfg = c->cfg;
    char buf[ADMIN_TOKEN_MAX + 3];
    size_t n = 0;
    if (!read_secret_file(c, &cfg->admin_token_file, cfg->admin_token_file, buf, sizeof(buf), &n))
        return;
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n < ADMIN_TOKEN_MIN || n > ADMIN_TOKEN_MAX)
        cfg_error_at(c, &cfg->admin_token_file,
                     "\"%s\" holds %s%zu characters; a token needs %d to %d (for example the "
                     "output of: openssl rand -base64 32)",
                     cfg->admin_token_file, n > ADMIN_TOKEN_MAX ? "more than " : "",
                     n > ADMIN_TOKEN_MAX ? (size_t)ADMIN_TOKEN_MAX : n, ADMIN_TOKEN_MIN,
                     ADMIN_TOKEN_MAX);
    else if (!is_b64token(buf, n))
        cfg_error_at(c, &cfg->admin_token_file,
                     "\"%s\" must hold one line of letters, digits and -._~+/ (then = signs "
                     "only), as a bearer token is written (RFC 6750 §2.1)",
                     cfg->admin_token_file);
    else if ((cfg->admin_token = cfg_calloc(c, 1, n + 1)) != NULL) {
        memcpy(cfg->admin_token, buf, n);
        cfg->admin_token_len = n;
    }
    explicit_bzero(buf, sizeof(buf));
}

/* Reads ticket_keys_file into cfg->ticket_keys (ticket_file_parse). */
static void read_ticket_keys(struct cfg_ctx *c)
{
    enum { MAX_LEN = 4096 };
    struct config *cfg = c->cfg;
    uint8_t buf[MAX_LEN + 1];
    char why[160];
    size_t n = 0;
    if (!read_secret_file(c, &cfg->ticket_keys_file, cfg->ticket_keys_file, buf, sizeof(buf), &n))
        return;
    struct ticket_set *set = cfg_calloc(c, 1, sizeof(*set));
    if (n > MAX_LEN)
        cfg_error_at(c, &cfg->ticket_keys_file, "\"%s\" is larger than %d bytes",
                     cfg->ticket_keys_file, MAX_LEN);
    else if (set != NULL && !ticket_file_parse(buf, n, set, why, sizeof(why)))
        cfg_error_at(c, &cfg->ticket_keys_file, "\"%s\" %s", cfg->ticket_keys_file, why);
    else if (set != NULL) {
        cfg->ticket_keys = set;
        set = NULL;
    }
    free(set);
    explicit_bzero(buf, sizeof(buf));
}

static void check_globals(struct cfg_ctx *c)
{
    struct config *cfg = c->cfg;
    if (cfg->admin_listen != NULL && parse_addr(c, &cfg->admin_listen, &cfg->admin_addr) &&
        !cfg->admin_allow_remote && !net_addr_is_loopback(&cfg->admin_addr))
        cfg_error_at(c, &cfg->admin_listen,
                     "\"%s\" is not a loopback address (set admin.allow_remote: true, with "
                     "admin.token_file, to expose the admin endpoint anyway)",
                     cfg->admin_listen);
    if (cfg->admin_token_file != NULL)
        read_admin_token(c);
    if (cfg->ticket_keys_file != NULL)
        read_ticket_keys(c);
    if (cfg->admin_listen != NULL && cfg->admin_allow_remote && cfg->admin_token_file == NULL &&
        !cfg_was_bad(c, &cfg->admin_token_file))
        cfg_error_at(c, &cfg->admin_allow_remote,
                     "allow_remote needs admin.token_file: an admin endpoint reachable from "
                     "other hosts must ask for a bearer token");
    if (cfg->user != NULL && getpwnam(cfg->user) == NULL)
        cfg_error_at(c, &cfg->user, "unknown user \"%.64s\" (no such user on this system)",
                     cfg->user);
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        check_file(c, &cfg->certificates[i].cert);
        check_file(c, &cfg->certificates[i].key);
        check_file(c, &cfg->certificates[i].password_file);
        check_file(c, &cfg->certificates[i].ocsp_file);
        if (cfg->certificates[i].ocsp_file != NULL && cfg->certificates[i].ocsp == CFG_OCSP_OFF)
            cfg_error_at(c, &cfg->certificates[i].ocsp_file,
                         "ocsp_file is set but ocsp is off: remove one of the two");
    }
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        check_file(c, &cfg->client_cas[i].ca);
        check_file(c, &cfg->client_cas[i].crl);
        if (cfg->client_cas[i].ocsp_responder != NULL &&
            cfg->client_cas[i].ocsp == CFG_CLIENT_OCSP_OFF &&
            !cfg_was_bad(c, &cfg->client_cas[i].ocsp))
            cfg_error_at(c, &cfg->client_cas[i].ocsp_responder,
                         "ocsp_responder is set but ocsp is off: set ocsp: prefer or require, or "
                         "remove ocsp_responder");
    }
}

/* OCSP is asked only for the client certificates of mutual listeners: a
 * client CA with ocsp on that no such listener uses checks nothing (the
 * certificates of targets are not asked about). */
static void check_client_ocsp(struct cfg_ctx *c)
{
    struct config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        struct cfg_client_ca *ca = &cfg->client_cas[i];
        if (ca->ocsp == CFG_CLIENT_OCSP_OFF)
            continue;
        bool used = false;
        for (size_t j = 0; j < cfg->n_listeners && !used; j++) {
            const struct cfg_tls *t = &cfg->listeners[j].tls;
            for (size_t k = 0; cfg->listeners[j].has_tls && k < t->n_sites && !used; k++)
                used = t->sites[k].mode == CFG_TLS_MUTUAL && t->sites[k].client_ca == ca;
        }
        if (!used)
            cfg_warn_at(c, &ca->ocsp,
                        "no mutual listener uses client CA \"%.64s\": ocsp checks nothing here "
                        "(only client certificates are asked about, not those of targets)",
                        ca->name ? ca->name : "");
    }
}

static void check_health_check(struct cfg_ctx *c, struct cfg_health_check *h)
{
    if (h->type != CFG_HC_HTTP && h->type != CFG_HC_HTTPS && !cfg_was_bad(c, &h->type)) {
        char *const *fields[] = {&h->path, &h->method, &h->host};
        for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
            if (cfg_was_set(c, fields[i]))
                cfg_error_at(c, fields[i], "only used with health_check type http or https");
        }
        if (cfg_was_set(c, &h->expect_lo))
            cfg_error_at(c, &h->expect_lo, "only used with health_check type http or https");
    }
    if (h->type != CFG_HC_NONE && h->timeout_ms > h->interval_ms && cfg_was_set(c, &h->timeout_ms))
        cfg_warn_at(c, &h->timeout_ms, "longer than the interval (%llums): checks will overlap",
                    (unsigned long long)h->interval_ms);
}

static void check_group(struct cfg_ctx *c, struct cfg_target_group *g)
{
    if (g->n_targets == 0) {
        if (cfg_was_set(c, &g->targets))
            cfg_error_at(c, &g->targets, "at least one target is required");
        else
            cfg_error_in(c, g, "targets",
                         "required key is missing (expected a sequence of { address: HOST:PORT, "
                         "weight: N })");
    }
    unsigned total_weight = 0;
    for (size_t i = 0; i < g->n_targets; i++) {
        struct cfg_target *t = &g->targets[i];
        total_weight += t->weight;
        if (t->address == NULL || t->is_builtin)
            continue;
        if (strncmp(t->address, "builtin:", 8) == 0) {
            cfg_error_at(c, &t->address,
                         "unknown built-in target \"%.64s\" (expected builtin:echo)", t->address);
            continue;
        }
        (void)parse_addr(c, &t->address, &t->addr);
    }
    if (g->n_targets > 0 && total_weight == 0)
        cfg_warn_at(c, &g->targets, "every target has weight 0: the group gets no traffic");
    if (g->n_targets > CFG_MAX_TARGETS)
        cfg_warn_at(c, &g->targets, "%zu targets: only the first %d get traffic", g->n_targets,
                    CFG_MAX_TARGETS);
    check_health_check(c, &g->health_check);
    if (g->sticky.type != CFG_STICKY_COOKIE && !cfg_was_bad(c, &g->sticky.type) &&
        cfg_was_set(c, &g->sticky.name))
        cfg_error_at(c, &g->sticky.name, "only used with sticky type cookie");
    if (g->tls.ca_name != NULL)
        g->tls.ca = cfg_ref_client_ca(c, &g->tls.ca_name);
}

static const char *const policy_names[] = {"intermediate", "modern", "custom"};

static int version_rank(const char *v)
{
    static const char *const versions[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
    for (size_t i = 0; i < TG_ARRAY_LEN(versions); i++) {
        if (strcmp(v, versions[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* The listener's own mode; what depends on the modes of every site is
 * checked by cfg_check_sites. */
static void check_tls_mode(struct cfg_ctx *c, struct cfg_tls *t)
{
    if (cfg_was_bad(c, &t->mode) || cfg_was_bad(c, &t->client_auth))
        return;
    if (t->mode == CFG_TLS_MUTUAL) {
        if (!cfg_was_set(c, &t->client_ca_name))
            cfg_error_at(c, &t->mode,
                         "mode mutual needs client_ca (the CA that signs client certificates, from "
                         "client_cas)");
        if (t->client_ca_name != NULL)
            t->client_ca = cfg_ref_client_ca(c, &t->client_ca_name);
        return;
    }
    const void *fields[] = {&t->client_auth, &t->client_ca_name, &t->verify_depth};
    for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
        if (cfg_was_set(c, fields[i]))
            cfg_error_at(c, fields[i], "only used with mode: mutual (mode is one-way)");
    }
}

static void check_tls_policy(struct cfg_ctx *c, struct cfg_tls *t)
{
    if (cfg_was_bad(c, &t->policy))
        return;
    if (t->policy != CFG_POLICY_CUSTOM) {
        char *const *fields[] = {&t->min_version, &t->max_version, &t->ciphers, &t->ciphersuites};
        for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
            if (cfg_was_set(c, fields[i]))
                cfg_error_at(c, fields[i], "only used with policy: custom (policy is %s)",
                             policy_names[t->policy]);
        }
        return;
    }
    if (t->min_version != NULL && t->max_version != NULL &&
        version_rank(t->min_version) > version_rank(t->max_version))
        cfg_error_at(c, &t->max_version, "%s is lower than min_version %s", t->max_version,
                     t->min_version);
}

static void check_tls(struct cfg_ctx *c, struct cfg_listener *l)
{
    struct cfg_tls *t = &l->tls;
    if (t->n_certificates == 0 && !cfg_was_set(c, &t->certificate_names))
        cfg_error_in(
            c, t, "certificates",
            "required key is missing (expected a list of names from certificates, such as [site])");
    for (size_t i = 0; i < t->n_certificates; i++) {
        t->certificates[i] = cfg_ref_certificate(c, &t->certificate_names[i]);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(t->certificate_names[i], t->certificate_names[j]) == 0) {
                cfg_error_at(c, &t->certificate_names[i], "certificate \"%.64s\" is listed twice",
                             t->certificate_names[i]);
                break;
            }
        }
    }
    check_tls_mode(c, t);
    check_tls_policy(c, t);
    cfg_check_sites(c, l);
}

/* ALPN and HTTP/2 need TLS: an http listener speaks HTTP/1.1 only. */
static void check_https_only(struct cfg_ctx *c, struct cfg_listener *l)
{
    const void *fields[] = {&l->alpn, &l->h2_max_streams, &l->h2_max_header_list_size,
                            &l->h2_max_resets_per_second};
    for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
        if (cfg_was_set(c, fields[i]))
            cfg_error_at(c, fields[i], "only used with protocol https");
    }
}

static void check_listener_proto(struct cfg_ctx *c, struct cfg_listener *l)
{
    const char *proto = config_proto_name(l->protocol);
    if (l->protocol == CFG_PROTO_HTTP && l->has_tls)
        cfg_error_in(c, &l->tls, NULL,
                     "protocol http does not take tls (use https to terminate TLS)");
    if (l->protocol != CFG_PROTO_HTTP && !l->has_tls)
        cfg_error_in(c, l, "tls", "required for protocol %s (at least certificates: [NAME])",
                     proto);
    if (l->protocol == CFG_PROTO_TCP_SSL) {
        const void *fields[] = {&l->rules,
                                &l->default_target_group_name,
                                &l->header_timeout_ms,
                                &l->response_timeout_ms,
                                &l->max_body_size,
                                &l->trusted_proxies,
                                &l->allow_underscores_in_headers,
                                &l->add_forwarded_header};
        for (size_t i = 0; i < TG_ARRAY_LEN(fields); i++) {
            if (cfg_was_set(c, fields[i]))
                cfg_error_at(c, fields[i], "only used with protocol https or http");
        }
        check_https_only(c, l);
        if (!cfg_was_set(c, &l->target_group_name))
            cfg_error_in(c, l, "target_group",
                         "required for protocol tcp_ssl (a name from target_groups)");
        return;
    }
    if (cfg_was_set(c, &l->target_group_name))
        cfg_error_at(
            c, &l->target_group_name,
            "only used with protocol tcp_ssl (%s listeners use default_target_group and rules)",
            proto);
    if (cfg_was_set(c, &l->proxy_protocol))
        cfg_error_at(c, &l->proxy_protocol, "only used with protocol tcp_ssl");
    if (l->protocol == CFG_PROTO_HTTP)
        check_https_only(c, l);
    if (l->n_rules == 0 && !cfg_was_set(c, &l->default_target_group_name))
        cfg_error_in(c, l, "rules", "protocol %s needs rules, default_target_group or both", proto);
}

static void check_rule(struct cfg_ctx *c, struct cfg_rule *r)
{
    const char *actions[3];
    size_t n = 0;
    if (cfg_was_set(c, &r->target_group_name))
        actions[n++] = "target_group";
    if (r->has_respond)
        actions[n++] = "respond";
    if (r->has_redirect)
        actions[n++] = "redirect";
    if (n == 0)
        cfg_error_in(c, r, NULL, "a rule needs one action: target_group, respond or redirect");
    if (n > 1)
        cfg_error_in(c, r, NULL, "a rule takes exactly one action, this one has %s and %s",
                     actions[0], actions[1]);
    if (r->target_group_name != NULL)
        r->target_group = ref_target_group(c, &r->target_group_name);
}

static void check_listener_addr(struct cfg_ctx *c, size_t idx)
{
    struct config *cfg = c->cfg;
    struct cfg_listener *l = &cfg->listeners[idx];
    if (l->listen == NULL || !parse_addr(c, &l->listen, &l->addr))
        return;
    for (size_t j = 0; j < idx; j++) {
        const struct cfg_listener *o = &cfg->listeners[j];
        if (net_addr_equal(&l->addr, &o->addr)) {
            cfg_error_at(c, &l->listen, "%s is already used by listener \"%.64s\" (line %d)",
                         l->listen, o->name ? o->name : "?", o->listen_pos.line);
            return;
        }
        if (addr_overlap(&l->addr, &o->addr)) {
            cfg_error_at(c, &l->listen, "%s overlaps %s of listener \"%.64s\" (line %d)", l->listen,
                         o->listen, o->name ? o->name : "?", o->listen_pos.line);
            return;
        }
    }
    if (cfg->admin_listen != NULL && addr_overlap(&l->addr, &cfg->admin_addr))
        cfg_error_at(c, &l->listen, "%s overlaps the admin endpoint %s", l->listen,
                     cfg->admin_listen);
}

static void check_listener(struct cfg_ctx *c, size_t idx)
{
    struct config *cfg = c->cfg;
    struct cfg_listener *l = &cfg->listeners[idx];
    for (size_t j = 0; l->name != NULL && j < idx; j++) {
        const struct cfg_listener *o = &cfg->listeners[j];
        if (o->name != NULL && strcmp(l->name, o->name) == 0) {
            cfg_error_at(c, &l->name, "duplicate listener name \"%.64s\" (first used at line %d)",
                         l->name, o->pos.line);
            break;
        }
    }
    check_listener_addr(c, idx);
    /* Without a valid protocol the combinations below mean nothing. */
    if (cfg_was_set(c, &l->protocol))
        check_listener_proto(c, l);
    /* http with tls is reported above; its tls block is not looked at. */
    if (l->has_tls && !(cfg_was_set(c, &l->protocol) && l->protocol == CFG_PROTO_HTTP))
        check_tls(c, l);
    if (l->target_group_name != NULL)
        l->target_group = ref_target_group(c, &l->target_group_name);
    if (l->default_target_group_name != NULL)
        l->default_target_group = ref_target_group(c, &l->default_target_group_name);
    for (size_t i = 0; i < l->n_rules; i++) {
        check_rule(c, &l->rules[i]);
        if (!l->rules[i].has_client)
            continue;
        if (l->protocol != CFG_PROTO_HTTPS)
            cfg_error_at(c, &l->rules[i].client,
                         "only used with protocol https (it matches the verified client "
                         "certificate)");
        else if (!config_tls_any_mutual(&l->tls, false))
            cfg_warn_at(c, &l->rules[i].client,
                        "no site of this listener is mutual: no client has a verified "
                        "certificate, so this rule never matches");
    }
}

/* state_dir: a directory (tollgate makes what it keeps below it, never
 * the directory itself; under systemd, StateDirectory= makes it). */
static void check_state_dir(struct cfg_ctx *c)
{
    struct config *cfg = c->cfg;
    struct stat st;
    if (cfg->state_dir == NULL)
        return;
    if (stat(cfg->state_dir, &st) != 0 && errno == ENOENT)
        cfg_warn_at(c, &cfg->state_dir,
                    "\"%s\" does not exist: nothing is kept there (no trust history) until it "
                    "does",
                    cfg->state_dir);
    else if (stat(cfg->state_dir, &st) != 0)
        cfg_error_at(c, &cfg->state_dir, "cannot use \"%s\": %s", cfg->state_dir, strerror(errno));
    else if (!S_ISDIR(st.st_mode))
        cfg_error_at(c, &cfg->state_dir, "\"%s\" is not a directory", cfg->state_dir);
}

void cfg_check(struct cfg_ctx *c)
{
    struct config *cfg = c->cfg;
    check_globals(c);
    check_state_dir(c);
    for (size_t i = 0; i < cfg->n_target_groups; i++)
        check_group(c, &cfg->target_groups[i]);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        check_listener(c, i);
    check_client_ocsp(c);
}
