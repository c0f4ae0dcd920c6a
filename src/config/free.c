/* Freeing a config, look-ups and small accessors. */
#include "config/internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void site_fini(struct cfg_site *s)
{
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i]);
    free(s->names);
    if (s->certificate_names != NULL) {
        for (size_t i = 0; i < s->n_certificates; i++)
            free(s->certificate_names[i]);
        free(s->certificate_names);
        free(s->certificates);
    }
    free(s->client_ca_name);
    free(s->client_ca_next_name);
    config_allow_fini(&s->allow);
    free(s->allow_file);
    memset(s, 0, sizeof(*s));
}

void cfg_tls_fini(struct cfg_tls *t)
{
    for (size_t i = 0; i < t->n_sites; i++)
        site_fini(&t->sites[i]);
    free(t->sites);
    for (size_t i = 0; i < t->n_certificates; i++)
        free(t->certificate_names[i]);
    free(t->certificate_names);
    free(t->certificates);
    free(t->client_ca_name);
    free(t->min_version);
    free(t->max_version);
    free(t->ciphers);
    free(t->ciphersuites);
    free(t->groups);
    free(t->on_reject);
    memset(t, 0, sizeof(*t));
}

void cfg_rule_fini(struct cfg_rule *r)
{
    config_allow_rule_fini(&r->client);
    free(r->host);
    free(r->path);
    free(r->target_group_name);
    free(r->respond_body);
    for (size_t i = 0; i < r->n_respond_headers; i++) {
        free(r->respond_headers[i].name);
        free(r->respond_headers[i].value);
    }
    free(r->respond_headers);
    free(r->redirect_scheme);
    free(r->redirect_host);
    free(r->redirect_path);
    memset(r, 0, sizeof(*r));
}

void cfg_target_group_fini(struct cfg_target_group *g)
{
    free(g->name);
    for (size_t i = 0; i < g->n_targets; i++)
        free(g->targets[i].address);
    free(g->targets);
    free(g->health_check.path);
    free(g->health_check.method);
    free(g->health_check.host);
    free(g->sticky.name);
    free(g->tls.ca_name);
    free(g->tls.server_name);
    memset(g, 0, sizeof(*g));
}

static void listener_fini(struct cfg_listener *l)
{
    free(l->name);
    free(l->listen);
    cfg_tls_fini(&l->tls);
    free(l->target_group_name);
    for (size_t i = 0; i < l->n_rules; i++)
        cfg_rule_fini(&l->rules[i]);
    free(l->rules);
    free(l->default_target_group_name);
    free(l->trusted_proxies);
    memset(l, 0, sizeof(*l));
}

void config_free(struct config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        struct cfg_certificate *c = &cfg->certificates[i];
        free(c->name);
        free(c->cert);
        free(c->key);
        free(c->password_file);
        free(c->ocsp_file);
    }
    free(cfg->certificates);
    if (cfg->fleet != NULL) {
        for (size_t i = 0; i < cfg->fleet->n_etcd; i++)
            free(cfg->fleet->etcd[i]);
        free(cfg->fleet->etcd);
        free(cfg->fleet->prefix);
        free(cfg->fleet->node);
        free(cfg->fleet->secret_file);
        free(cfg->fleet->cache_dir);
        free(cfg->fleet->etcd_ca);
        free(cfg->fleet->etcd_cert);
        free(cfg->fleet->etcd_key);
        free(cfg->fleet);
    }
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        free(cfg->client_cas[i].name);
        free(cfg->client_cas[i].ca);
        free(cfg->client_cas[i].crl);
        free(cfg->client_cas[i].ocsp_responder);
    }
    free(cfg->client_cas);
    for (size_t i = 0; i < cfg->n_target_groups; i++)
        cfg_target_group_fini(&cfg->target_groups[i]);
    free(cfg->target_groups);
    for (size_t i = 0; i < cfg->n_listeners; i++)
        listener_fini(&cfg->listeners[i]);
    free(cfg->listeners);
    free(cfg->path);
    free(cfg->admin_listen);
    for (size_t i = 0; i < cfg->n_admin_server_names; i++)
        free(cfg->admin_server_names[i]);
    free(cfg->admin_server_names);
    free(cfg->admin_token_file);
    if (cfg->admin_token != NULL)
        explicit_bzero(cfg->admin_token, cfg->admin_token_len);
    free(cfg->admin_token);
    free(cfg->access_log);
    free(cfg->user);
    free(cfg->ticket_keys_file);
    free(cfg->state_dir);
    if (cfg->ticket_keys != NULL)
        ticket_set_wipe(cfg->ticket_keys);
    free(cfg->ticket_keys);
    free(cfg);
}

unsigned config_worker_count(const struct config *cfg)
{
    if (cfg->workers > 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 256 ? 256 : (unsigned)n;
}

const char *config_proto_name(enum cfg_listener_proto p)
{
    switch (p) {
    case CFG_PROTO_TCP_SSL:
        return "tcp_ssl";
    case CFG_PROTO_HTTPS:
        return "https";
    case CFG_PROTO_HTTP:
        return "http";
    }
    return "unknown";
}

struct cfg_certificate *config_find_certificate(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        if (cfg->certificates[i].name != NULL && strcmp(cfg->certificates[i].name, name) == 0)
            return &cfg->certificates[i];
    }
    return NULL;
}

struct cfg_client_ca *config_find_client_ca(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        if (cfg->client_cas[i].name != NULL && strcmp(cfg->client_cas[i].name, name) == 0)
            return &cfg->client_cas[i];
    }
    return NULL;
}

struct cfg_target_group *config_find_target_group(const struct config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        if (cfg->target_groups[i].name != NULL && strcmp(cfg->target_groups[i].name, name) == 0)
            return &cfg->target_groups[i];
    }
    return NULL;
}

bool config_cidr_parse(const char *s, struct cfg_cidr *out, const char **why)
{
    char tmp[INET6_ADDRSTRLEN];
    memset(out, 0, sizeof(*out));
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    *why = "not an IPv4 or IPv6 address";
    if (alen == 0 || alen >= sizeof(tmp))
        return false;
    memcpy(tmp, s, alen);
    tmp[alen] = '\0';
    bool is_v6 = memchr(tmp, ':', alen) != NULL;
    out->family = is_v6 ? AF_INET6 : AF_INET;
    if (inet_pton(out->family, tmp, out->addr) != 1)
        return false;
    unsigned max = is_v6 ? 128 : 32;
    out->prefix = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t n = strlen(p);
        *why = is_v6 ? "not a prefix length 0-128" : "not a prefix length 0-32";
        if (n == 0 || n > 3 || (n > 1 && p[0] == '0'))
            return false;
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
            if (p[i] < '0' || p[i] > '9')
                return false;
            v = v * 10 + (unsigned)(p[i] - '0');
        }
        if (v > max)
            return false;
        out->prefix = v;
    }
    for (unsigned bit = out->prefix; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    *why = NULL;
    return true;
}

/* The first prefix bits of a and b are equal. */
static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool config_cidr_contains(const struct cfg_cidr *nets, size_t n, const struct net_addr *a)
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    sa_family_t family = a->ss.ss_family;
    const uint8_t *bytes;
    if (family == AF_INET) {
        bytes = (const uint8_t *)&a->ss.sin.sin_addr;
    } else if (family == AF_INET6) {
        bytes = a->ss.sin6.sin6_addr.s6_addr;
        if (memcmp(bytes, v4_mapped, sizeof(v4_mapped)) == 0) {
            family = AF_INET;
            bytes += sizeof(v4_mapped);
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (config_cidr_match(&nets[i], family, bytes))
            return true;
    return false;
}

bool config_cidr_match(const struct cfg_cidr *net, sa_family_t family, const uint8_t *addr)
{
    return net->family == family && prefix_equal(net->addr, addr, net->prefix);
}

/* Case-insensitive equality of name[0, len) and a stored lower-case
 * name. */
static bool name_is(const char *stored, const char *name, size_t len)
{
    if (strlen(stored) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch != stored[i])
            return false;
    }
    return true;
}

size_t config_site_for_name(const struct cfg_listener *l, const char *name, size_t len)
{
    const struct cfg_tls *t = &l->tls;
    if (name == NULL || len == 0)
        return 0;
    if (len > 1 && name[len - 1] == '.')
        len--;
    size_t wild = 0, wild_len = 0;
    for (size_t i = 1; i < t->n_sites; i++) {
        const struct cfg_site *s = &t->sites[i];
        for (size_t k = 0; k < s->n_names; k++) {
            const char *n = s->names[k];
            if (n[0] != '*') {
                if (name_is(n, name, len))
                    return i;
                continue;
            }
            /* "*.rest": any name that ends in ".rest", at any depth; the
             * longest rest wins. */
            size_t rest = strlen(n + 1);
            if (len > rest && rest > wild_len && name_is(n + 1, name + len - rest, rest)) {
                wild = i;
                wild_len = rest;
            }
        }
    }
    return wild;
}

bool config_tls_any_mutual(const struct cfg_tls *t, bool is_optional)
{
    for (size_t i = 0; i < t->n_sites; i++) {
        const struct cfg_site *s = &t->sites[i];
        if (s->mode == CFG_TLS_MUTUAL &&
            (!is_optional || s->client_auth == CFG_CLIENT_AUTH_OPTIONAL))
            return true;
    }
    return false;
}
