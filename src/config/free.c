/* Freeing a config, look-ups and small accessors. */
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cfg_tls_fini(struct cfg_tls *t)
{
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
    }
    free(cfg->certificates);
    for (size_t i = 0; i < cfg->n_client_cas; i++) {
        free(cfg->client_cas[i].name);
        free(cfg->client_cas[i].ca);
        free(cfg->client_cas[i].crl);
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
