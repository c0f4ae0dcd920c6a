#include <stdio.h>
#include <string.h>

#include "admin/admin.h"
#include "core/log.h"
#include "tls/tls.h"

/* `tollgate check -T`: the config as loaded, every default filled in, in
 * the same YAML keys the parser reads. Strings are JSON-quoted, which YAML
 * reads as double-quoted scalars. */

static void str(FILE *out, const char *s)
{
    if (s == NULL) {
        fputs("null", out);
        return;
    }
    char esc[4096];
    log_json_escape(esc, sizeof(esc), s);
    fprintf(out, "\"%s\"", esc);
}

/* A NULL string is an absent key: written as a comment so the output
 * still loads. */
static void kv_str(FILE *out, int indent, const char *key, const char *s)
{
    if (s == NULL) {
        fprintf(out, "%*s# %s: not set\n", indent, "", key);
        return;
    }
    fprintf(out, "%*s%s: ", indent, "", key);
    str(out, s);
    fputc('\n', out);
}

static void duration(FILE *out, int indent, const char *key, uint64_t ms)
{
    fprintf(out, "%*s%s: ", indent, "", key);
    if (ms == 0)
        fputs("0", out);
    else if (ms % 3600000 == 0)
        fprintf(out, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms % 60000 == 0)
        fprintf(out, "%llum", (unsigned long long)(ms / 60000));
    else if (ms % 1000 == 0)
        fprintf(out, "%llus", (unsigned long long)(ms / 1000));
    else
        fprintf(out, "%llums", (unsigned long long)ms);
    fputc('\n', out);
}

static const char *const levels[] = {"error", "warn", "info", "debug"};
static const char *const algos[] = {"wrr", "least_conn", "ip_hash"};
static const char *const hc_types[] = {"none", "tcp", "http", "https"};
static const char *const sticky_types[] = {"none", "source_ip", "cookie"};
static const char *const downs[] = {"fail_open", "reject"};
static const char *const policies[] = {"intermediate", "modern", "custom"};
static const char *const proxies[] = {"none", "v1", "v2"};

static void dump_group(FILE *out, const struct cfg_target_group *g)
{
    fprintf(out, "  ");
    str(out, g->name);
    fprintf(out, ":\n    algorithm: %s\n    targets:\n", algos[g->algorithm]);
    for (size_t i = 0; i < g->n_targets; i++) {
        fprintf(out, "      - address: ");
        str(out, g->targets[i].address);
        fprintf(out, "\n        weight: %u\n", g->targets[i].weight);
    }
    const struct cfg_health_check *h = &g->health_check;
    fprintf(out, "    health_check:\n      type: %s\n", hc_types[h->type]);
    if (h->type != CFG_HC_NONE) {
        if (h->type != CFG_HC_TCP) {
            kv_str(out, 6, "path", h->path);
            kv_str(out, 6, "method", h->method);
            kv_str(out, 6, "host", h->host);
            if (h->expect_lo == h->expect_hi)
                fprintf(out, "      expect: \"%u\"\n", h->expect_lo);
            else
                fprintf(out, "      expect: \"%u-%u\"\n", h->expect_lo, h->expect_hi);
        }
        duration(out, 6, "interval", h->interval_ms);
        duration(out, 6, "timeout", h->timeout_ms);
        fprintf(out, "      healthy_threshold: %u\n      unhealthy_threshold: %u\n",
                h->healthy_threshold, h->unhealthy_threshold);
    }
    fprintf(out, "    passive:\n      consecutive_failures: %u\n      count_5xx: %s\n",
            g->passive.consecutive_failures, g->passive.count_5xx ? "true" : "false");
    duration(out, 6, "ejection", g->passive.ejection_ms);
    fprintf(out, "    sticky:\n      type: %s\n", sticky_types[g->sticky.type]);
    if (g->sticky.type != CFG_STICKY_NONE) {
        duration(out, 6, "ttl", g->sticky.ttl_ms);
        if (g->sticky.type == CFG_STICKY_COOKIE)
            kv_str(out, 6, "name", g->sticky.name);
    }
    if (g->tls.enabled) {
        fprintf(out, "    tls:\n      verify: %s\n", g->tls.verify ? "true" : "false");
        kv_str(out, 6, "ca", g->tls.ca_name);
        kv_str(out, 6, "server_name", g->tls.server_name);
    }
    fprintf(out, "    when_all_down: %s\n", downs[g->when_all_down]);
}

static void dump_rule(FILE *out, const struct cfg_rule *r)
{
    /* The list item starts at the rule's first key; all of them are optional
     * but the action. */
    fprintf(out, "      -");
    if (r->host != NULL) {
        fprintf(out, " host: ");
        str(out, r->host);
        fprintf(out, "\n       ");
    }
    if (r->path != NULL) {
        fprintf(out, " path: ");
        str(out, r->path);
        fprintf(out, "\n       ");
    }
    if (r->target_group_name != NULL) {
        fprintf(out, " target_group: ");
        str(out, r->target_group_name);
        fprintf(out, "\n");
    } else {
        fputc(' ', out);
    }
    if (r->has_respond) {
        fprintf(out, "respond:\n          status: %u\n", r->respond_status);
        kv_str(out, 10, "body", r->respond_body);
        fprintf(out, "          headers:%s\n", r->n_respond_headers ? "" : " {}");
        for (size_t i = 0; i < r->n_respond_headers; i++) {
            fprintf(out, "            ");
            str(out, r->respond_headers[i].name);
            fprintf(out, ": ");
            str(out, r->respond_headers[i].value);
            fputc('\n', out);
        }
    }
    if (r->has_redirect) {
        fprintf(out, "redirect:\n");
        kv_str(out, 10, "scheme", r->redirect_scheme);
        kv_str(out, 10, "host", r->redirect_host);
        if (r->redirect_port != 0)
            fprintf(out, "          port: %u\n", r->redirect_port);
        kv_str(out, 10, "path", r->redirect_path);
        fprintf(out, "          status: %u\n", r->redirect_status);
    }
}

/* A site's allow-list as written: its matchers and its file. */
static void dump_allow(FILE *out, int indent, const struct cfg_site *s)
{
    if (s->allow.n_rules > 0)
        fprintf(out, "%*sallow:\n", indent, "");
    for (size_t i = 0; i < s->allow.n_rules; i++) {
        const struct cfg_allow_rule *r = &s->allow.rules[i];
        fprintf(out, "%*s- {", indent + 2, "");
        for (size_t k = 0; k < r->n_terms; k++) {
            fprintf(out, "%s%s: ", k ? ", " : " ", config_allow_field_name(r->terms[k].field));
            str(out, r->terms[k].value);
        }
        fputs(" }\n", out);
    }
    if (s->allow_file != NULL)
        kv_str(out, indent, "allow_file", s->allow_file);
}

/* An sni entry with what it took from the listener filled in. */
static void dump_site(FILE *out, const struct cfg_site *s)
{
    fprintf(out, "        - names: [");
    for (size_t i = 0; i < s->n_names; i++) {
        fputs(i ? ", " : "", out);
        str(out, s->names[i]);
    }
    fprintf(out, "]\n          certificates: [");
    for (size_t i = 0; i < s->n_certificates; i++) {
        fputs(i ? ", " : "", out);
        str(out, s->certificates[i] != NULL ? s->certificates[i]->name : NULL);
    }
    fprintf(out, "]\n          mode: %s\n", s->mode == CFG_TLS_MUTUAL ? "mutual" : "one-way");
    if (s->mode != CFG_TLS_MUTUAL)
        return;
    fprintf(out, "          client_auth: %s\n",
            s->client_auth == CFG_CLIENT_AUTH_OPTIONAL ? "optional" : "required");
    kv_str(out, 10, "client_ca", s->client_ca != NULL ? s->client_ca->name : NULL);
    if (s->client_ca_next != NULL)
        kv_str(out, 10, "client_ca_next", s->client_ca_next->name);
    fprintf(out, "          verify_depth: %u\n", s->verify_depth);
    if (s->allow_site == s)
        dump_allow(out, 10, s);
    else if (s->allow_site != NULL)
        fprintf(out, "          # allow: the listener's\n");
}

static void dump_listener(FILE *out, const struct cfg_listener *l)
{
    fprintf(out, "  - name: ");
    str(out, l->name);
    fprintf(out, "\n    protocol: %s\n", config_proto_name(l->protocol));
    kv_str(out, 4, "listen", l->listen);
    if (l->has_tls) {
        const struct cfg_tls *t = &l->tls;
        fprintf(out, "    tls:\n      mode: %s\n",
                t->mode == CFG_TLS_MUTUAL ? "mutual" : "one-way");
        if (t->mode == CFG_TLS_MUTUAL) {
            fprintf(out, "      client_auth: %s\n",
                    t->client_auth == CFG_CLIENT_AUTH_OPTIONAL ? "optional" : "required");
            kv_str(out, 6, "client_ca", t->client_ca_name);
            if (t->n_sites > 0 && t->sites[0].client_ca_next != NULL)
                kv_str(out, 6, "client_ca_next", t->sites[0].client_ca_next->name);
            fprintf(out, "      verify_depth: %u\n", t->verify_depth);
            fprintf(out, "      on_revoke: %s\n      on_expiry: %s\n",
                    t->on_revoke == CFG_ON_INVALID_KEEP ? "keep" : "close",
                    t->on_expiry == CFG_ON_INVALID_KEEP ? "keep" : "close");
        }
        duration(out, 6, "session_lifetime", t->session_lifetime_ms);
        fprintf(out, "      certificates: [");
        for (size_t i = 0; i < t->n_certificates; i++) {
            fputs(i ? ", " : "", out);
            str(out, t->certificate_names[i]);
        }
        fprintf(out, "]\n      policy: %s\n", policies[t->policy]);
        if (t->min_version)
            kv_str(out, 6, "min_version", t->min_version);
        if (t->max_version)
            kv_str(out, 6, "max_version", t->max_version);
        if (t->ciphers)
            kv_str(out, 6, "ciphers", t->ciphers);
        if (t->ciphersuites)
            kv_str(out, 6, "ciphersuites", t->ciphersuites);
        if (t->groups)
            kv_str(out, 6, "groups", t->groups);
        fprintf(out, "      strict_sni: %s\n", t->strict_sni ? "true" : "false");
        if (t->on_reject)
            kv_str(out, 6, "on_reject", t->on_reject);
        if (t->n_sites > 0)
            dump_allow(out, 6, &t->sites[0]);
        if (t->n_sites > 1)
            fprintf(out, "      sni:\n");
        for (size_t i = 1; i < t->n_sites; i++)
            dump_site(out, &t->sites[i]);
    }
    if (l->target_group_name != NULL)
        kv_str(out, 4, "target_group", l->target_group_name);
    if (l->default_target_group_name != NULL)
        kv_str(out, 4, "default_target_group", l->default_target_group_name);
    if (l->protocol == CFG_PROTO_TCP_SSL)
        fprintf(out, "    proxy_protocol: %s\n", proxies[l->proxy_protocol]);
    fprintf(out, "    max_connections: %u\n", l->max_connections);
    duration(out, 4, "handshake_timeout", l->handshake_timeout_ms);
    duration(out, 4, "idle_timeout", l->idle_timeout_ms);
    duration(out, 4, "connect_timeout", l->connect_timeout_ms);
    if (l->protocol != CFG_PROTO_TCP_SSL) {
        duration(out, 4, "header_timeout", l->header_timeout_ms);
        duration(out, 4, "response_timeout", l->response_timeout_ms);
        fprintf(out, "    max_body_size: %llu\n", (unsigned long long)l->max_body_size);
        fprintf(out, "    rules:%s\n", l->n_rules ? "" : " []");
        for (size_t i = 0; i < l->n_rules; i++)
            dump_rule(out, &l->rules[i]);
    }
}

void admin_config_dump(const struct config *cfg, FILE *out)
{
    fprintf(out, "# %s, normalized: every default filled in\n", cfg->path);
    if (cfg->workers == 0)
        fprintf(out, "workers: auto  # %u on this machine\n", config_worker_count(cfg));
    else
        fprintf(out, "workers: %u\n", cfg->workers);
    if (cfg->admin_listen != NULL) {
        fprintf(out, "admin:\n");
        kv_str(out, 2, "listen", cfg->admin_listen);
        fprintf(out, "  allow_remote: %s\n", cfg->admin_allow_remote ? "true" : "false");
        fprintf(out, "  server_names:%s\n", cfg->n_admin_server_names ? "" : " []");
        for (size_t i = 0; i < cfg->n_admin_server_names; i++) {
            fprintf(out, "    - ");
            str(out, cfg->admin_server_names[i]);
            fputc('\n', out);
        }
        kv_str(out, 2, "token_file", cfg->admin_token_file);
    } else {
        fprintf(out, "# admin: absent, so no admin endpoint\n");
    }
    fprintf(out, "log:\n  level: %s\n", levels[cfg->log_level]);
    kv_str(out, 2, "access", cfg->access_log);
    duration(out, 0, "drain_timeout", cfg->drain_timeout_ms);
    fprintf(out, "max_connections: %u%s\n", cfg->max_connections,
            cfg->max_connections ? "" : "  # no limit for all listeners together");
    fprintf(out, "max_draining_generations: %u\n", cfg->max_draining_generations);
    if (cfg->user != NULL)
        kv_str(out, 0, "user", cfg->user);
    kv_str(out, 0, "state_dir", cfg->state_dir);
    duration(out, 0, "trust_history", cfg->trust_history_ms);
    fprintf(out, "certificates:%s\n", cfg->n_certificates ? "" : " {}");
    for (size_t i = 0; i < cfg->n_certificates; i++) {
        const struct cfg_certificate *c = &cfg->certificates[i];
        fprintf(out, "  ");
        str(out, c->name);
        fprintf(out, ":\n");
        kv_str(out, 4, "cert", c->cert);
        if (c->key)
            kv_str(out, 4, "key", c->key);
        if (c->password_file)
            kv_str(out, 4, "password_file", c->password_file);
        fprintf(out, "    ocsp: %s\n", c->ocsp == CFG_OCSP_OFF ? "off" : "auto");
        if (c->ocsp_file)
            kv_str(out, 4, "ocsp_file", c->ocsp_file);
    }
    fprintf(out, "client_cas:%s\n", cfg->n_client_cas ? "" : " {}");
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        const struct cfg_client_ca *c = &cfg->client_cas[i];
        fprintf(out, "  ");
        str(out, c->name);
        fprintf(out, ":\n");
        kv_str(out, 4, "ca", c->ca);
        if (c->crl)
            kv_str(out, 4, "crl", c->crl);
        duration(out, 4, "crl_check_interval", c->check_interval_ms);
    }
    fprintf(out, "target_groups:%s\n", cfg->n_target_groups ? "" : " {}");
    for (size_t i = 0; i < cfg->n_target_groups; i++)
        dump_group(out, &cfg->target_groups[i]);
    fprintf(out, "listeners:%s\n", cfg->n_listeners ? "" : " []");
    for (size_t i = 0; i < cfg->n_listeners; i++)
        dump_listener(out, &cfg->listeners[i]);
}

int admin_cmd_check_dump(const char *path)
{
    struct diag d;
    struct config *cfg = NULL;
    diag_init(&d);
    if (config_load(path, &cfg, &d) == TG_OK)
        tls_config_check(cfg, &d);
    diag_print(&d, stderr);
    int rc = diag_has_errors(&d) ? 1 : 0;
    if (rc == 0)
        admin_config_dump(cfg, stdout);
    else
        fprintf(stderr, "%s: %zu error%s; nothing to print\n", path, d.n_errors,
                d.n_errors == 1 ? "" : "s");
    config_free(cfg);
    diag_fini(&d);
    return rc;
}
