/* /status: the JSON document of the running configuration and its state. */
#include "admin/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lb/lb.h"

static const char *tls_mode_name(const struct cfg_listener *l)
{
    if (!l->has_tls)
        return "none";
    if (l->tls.mode == CFG_TLS_ONE_WAY)
        return "one-way";
    return l->tls.client_auth == CFG_CLIENT_AUTH_OPTIONAL ? "mutual-optional" : "mutual";
}

static const char *policy_name(const struct cfg_listener *l)
{
    if (!l->has_tls)
        return "none";
    switch (l->tls.policy) {
    case CFG_POLICY_MODERN:
        return "modern";
    case CFG_POLICY_CUSTOM:
        return "custom";
    default:
        return "intermediate";
    }
}

static json_t *iso_time(double t)
{
    char buf[64];
    time_t sec = (time_t)t;
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

/* The last active check of a slot, null before the first one. The slot's
 * text is written by this process's health checker only, so it is whole. */
static json_t *last_check_json(const struct lb_slot *sl)
{
    int64_t at = atomic_load_explicit(&sl->hc_last_unix_ms, memory_order_relaxed);
    if (at <= 0)
        return json_null();
    int32_t r = atomic_load_explicit(&sl->hc_last_result, memory_order_relaxed);
    double at_s = (double)at / 1000.0;
    json_t *j =
        json_pack("{s:s,s:b,s:s,s:s}", "result", lb_hc_result_name(r), "passed", r == LB_HC_PASS,
                  "cause", sl->hc_last_cause, "detail", sl->hc_last_detail);
    if (j == NULL)
        return json_null();
    json_object_set_new(j, "at", iso_time(at_s));
    json_object_set_new(j, "at_unix", json_real(at_s));
    return j;
}

/* The last change of health, null before the first one. */
static json_t *last_change_json(const struct lb_slot *sl)
{
    int64_t at = atomic_load_explicit(&sl->hc_change_unix_ms, memory_order_relaxed);
    if (at <= 0)
        return json_null();
    double at_s = (double)at / 1000.0;
    json_t *j = json_pack("{s:s}", "cause", sl->hc_change_cause);
    if (j == NULL)
        return json_null();
    json_object_set_new(j, "at", iso_time(at_s));
    json_object_set_new(j, "at_unix", json_real(at_s));
    return j;
}

static json_t *target_json(const struct cfg_target_group *g, size_t t)
{
    static const char *const healths[] = {"unknown", "up", "down"};
    const struct lb_slot *sl = admin_target_slot(g, t);
    json_t *j = json_pack("{s:s,s:i}", "address", g->targets[t].address, "weight",
                          (json_int_t)g->targets[t].weight);
    if (j == NULL)
        return NULL;
    if (sl == NULL) {
        json_object_set_new(j, "health", json_string("unknown"));
        json_object_set_new(j, "up", json_true());
        return j;
    }
    int32_t h = atomic_load_explicit(&sl->health, memory_order_relaxed);
    int64_t now = lb_now_ms();
    int64_t eject = atomic_load_explicit(&sl->eject_until_ms, memory_order_relaxed);
    json_object_set_new(j, "health", json_string(h >= 0 && h <= 2 ? healths[h] : "unknown"));
    json_object_set_new(j, "up", json_boolean(lb_slot_is_up(sl, now)));
    json_object_set_new(j, "ejected_for_ms", json_integer(eject > now ? eject - now : 0));
    json_object_set_new(j, "active_connections",
                        json_integer(atomic_load_explicit(&sl->active, memory_order_relaxed)));
    json_object_set_new(
        j, "connections_total",
        json_integer((json_int_t)atomic_load_explicit(&sl->conns_total, memory_order_relaxed)));
    json_object_set_new(j, "checks_ok_in_a_row",
                        json_integer(atomic_load_explicit(&sl->hc_ok, memory_order_relaxed)));
    json_object_set_new(j, "checks_failed_in_a_row",
                        json_integer(atomic_load_explicit(&sl->hc_fail, memory_order_relaxed)));
    json_object_set_new(j, "connect_failures_in_a_row",
                        json_integer(atomic_load_explicit(&sl->conn_fail, memory_order_relaxed)));
    if (g->health_check.type != CFG_HC_NONE && !g->targets[t].is_builtin) {
        json_object_set_new(j, "last_check", last_check_json(sl));
        json_object_set_new(j, "last_change", last_change_json(sl));
        json_t *totals = json_object();
        for (int r = 0; r < LB_HC_RESULTS; r++)
            json_object_set_new(totals, lb_hc_result_name(r),
                                json_integer((json_int_t)atomic_load_explicit(
                                    &sl->hc_total[r], memory_order_relaxed)));
        json_object_set_new(j, "checks_total", totals);
    }
    return j;
}

void admin_hist_sample(struct admin *a, double now)
{
    struct admin_gen gens[ADMIN_MAX_GENS];
    size_t n_gens = a->ops.generations(a->ops.ctx, gens, ADMIN_MAX_GENS);
    struct admin_lsum *v = NULL;
    size_t n = admin_collect(a, gens, n_gens, &v);
    for (size_t i = 0; i < n; i++) {
        uint64_t totals[SHM_REASON_COUNT];
        for (size_t r = 0; r < SHM_REASON_COUNT; r++)
            totals[r] = shm_get(&v[i].s.hs_failures[r]);
        if (admin_hist_note(&a->hist, v[i].name, totals, (int64_t)now) != TG_OK)
            break;
    }
    free(v);
    admin_hist_prune(&a->hist, (int64_t)now);
}

/* The last refusals over every listener of the live generations, newest
 * first, at most ADMIN_RECENT_REFUSALS. */
#define ADMIN_RECENT_REFUSALS 20

struct named_refusal {
    struct shm_refusal r;
    const char *listener; /* borrowed */
};

static int newest_first(const void *x, const void *y)
{
    const struct named_refusal *a = x, *b = y;
    return a->r.unix_ms < b->r.unix_ms ? 1 : a->r.unix_ms > b->r.unix_ms ? -1 : 0;
}

static json_t *recent_refusals_json(const struct admin_gen *gens, size_t n_gens)
{
    size_t cap = 0;
    for (size_t g = 0; g < n_gens; g++)
        cap += gens[g].stats->n_listeners * SHM_REFUSALS;
    struct named_refusal *v = calloc(cap + 1, sizeof(*v));
    json_t *arr = json_array();
    if (v == NULL || arr == NULL) {
        free(v);
        return arr;
    }
    size_t n = 0;
    for (size_t g = 0; g < n_gens; g++) {
        const struct config *cfg = gens[g].cfg;
        for (size_t i = 0; i < cfg->n_listeners && i < gens[g].stats->n_listeners; i++) {
            struct shm_refusal got[SHM_REFUSALS];
            size_t k = shm_read_refusals(&gens[g].stats->listeners[i].refusals, got, SHM_REFUSALS);
            for (size_t j = 0; j < k && n < cap; j++) {
                v[n].r = got[j];
                v[n++].listener = cfg->listeners[i].name;
            }
        }
    }
    qsort(v, n, sizeof(*v), newest_first);
    for (size_t i = 0; i < n && i < ADMIN_RECENT_REFUSALS; i++)
        json_array_append_new(arr, admin_refusal_json(&v[i].r, v[i].listener));
    free(v);
    return arr;
}

static const char *site_mode_name(const struct cfg_site *s)
{
    if (s->mode == CFG_TLS_ONE_WAY)
        return "one-way";
    return s->client_auth == CFG_CLIENT_AUTH_OPTIONAL ? "mutual-optional" : "mutual";
}

/* The sni entries of a listener: names, mode, client CA, allow-list. */
static json_t *sites_json(const struct cfg_listener *l)
{
    json_t *arr = json_array();
    for (size_t i = 1; arr != NULL && i < l->tls.n_sites; i++) {
        const struct cfg_site *s = &l->tls.sites[i];
        json_t *names = json_array();
        for (size_t k = 0; k < s->n_names; k++)
            json_array_append_new(names, json_string(s->names[k]));
        json_t *j = json_pack("{s:o,s:s,s:b}", "names", names, "tls_mode", site_mode_name(s),
                              "allow_list", s->allow_site != NULL);
        if (j != NULL && s->client_ca != NULL)
            json_object_set_new(j, "client_ca", json_string(s->client_ca->name));
        if (j != NULL && s->client_ca_next != NULL)
            json_object_set_new(j, "client_ca_next", json_string(s->client_ca_next->name));
        json_array_append_new(arr, j);
    }
    return arr;
}

/* client_ca_next (report-only): what it would have refused of the clients
 * accepted, by reason, and the last of them, over every generation. */
static void trust_next_json(json_t *jl, const struct admin_gen *gens, size_t n_gens,
                            const struct cfg_listener *l)
{
    const struct cfg_client_ca *next = NULL;
    for (size_t i = 0; i < l->tls.n_sites && next == NULL; i++)
        next = l->tls.sites[i].client_ca_next;
    if (next == NULL)
        return;
    json_t *by = json_object(), *recent = json_array();
    struct named_refusal v[SHM_REFUSALS * 4]; /* the newest generations fill it first */
    size_t n = 0;
    uint64_t counts[SHM_REASON_COUNT] = {0};
    for (size_t g = 0; g < n_gens; g++) {
        for (size_t j = 0; j < gens[g].cfg->n_listeners && j < gens[g].stats->n_listeners; j++) {
            if (strcmp(gens[g].cfg->listeners[j].name, l->name) != 0)
                continue;
            const struct shm_listener_stats *st = &gens[g].stats->listeners[j];
            for (size_t r = 0; r < SHM_REASON_COUNT; r++)
                counts[r] += shm_get(&st->next_refused[r]);
            struct shm_refusal got[SHM_REFUSALS];
            size_t k = shm_read_refusals(&st->next_refusals, got, SHM_REFUSALS);
            for (size_t m = 0; m < k && n < TG_ARRAY_LEN(v); m++) {
                v[n].r = got[m];
                v[n++].listener = l->name;
            }
        }
    }
    for (size_t r = 0; by != NULL && r < SHM_REASON_COUNT; r++)
        if (counts[r] > 0)
            json_object_set_new(by, shm_reason_name(r), json_integer((json_int_t)counts[r]));
    qsort(v, n, sizeof(*v), newest_first);
    for (size_t i = 0; recent != NULL && i < n && i < SHM_REFUSALS; i++)
        json_array_append_new(recent, admin_refusal_json(&v[i].r, v[i].listener));
    json_object_set_new(jl, "trust_next",
                        json_pack("{s:s,s:o,s:o}", "client_ca_next", next->name, "refusals",
                                  by ? by : json_object(), "recent",
                                  recent ? recent : json_array()));
}

static json_t *unix_or_null(int64_t t)
{
    return t != 0 ? iso_time((double)t) : json_null();
}

/* Each client CA in use: its CRL (number, dates, revoked serials) and
 * when its files were last loaded. */
static json_t *trusts_json(struct admin *a)
{
    struct admin_trust v[64];
    size_t n = a->ops.trusts != NULL ? a->ops.trusts(a->ops.ctx, v, TG_ARRAY_LEN(v)) : 0;
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *j = json_pack("{s:s,s:I,s:I,s:o}", "name", v[i].client_ca, "crls",
                              (json_int_t)v[i].n_crls, "revoked", (json_int_t)v[i].n_revoked,
                              "loaded_at", unix_or_null(v[i].loaded_at));
        if (j == NULL)
            continue;
        json_object_set_new(j, "crl_number",
                            v[i].crl_number[0] ? json_string(v[i].crl_number) : json_null());
        json_object_set_new(j, "crl_this_update", unix_or_null(v[i].crl_this_update));
        json_object_set_new(j, "crl_next_update", unix_or_null(v[i].crl_next_update));
        json_object_set_new(j, "crl_next_update_unix",
                            v[i].crl_next_update ? json_integer((json_int_t)v[i].crl_next_update)
                                                 : json_null());
        json_array_append_new(arr, j);
    }
    return arr;
}

/* An https listener's HTTP/2: whether it is offered, and its share of
 * the requests and connections of the generations running. */
static json_t *h2_json(struct admin_gen *gens, size_t n_gens, const struct cfg_listener *l)
{
    uint64_t conns = 0, h2_conns = 0, reqs = 0, h2_reqs = 0;
    int64_t streams = 0;
    for (size_t g = 0; g < n_gens; g++) {
        for (size_t j = 0; j < gens[g].cfg->n_listeners && j < gens[g].stats->n_listeners; j++) {
            if (strcmp(gens[g].cfg->listeners[j].name, l->name) != 0)
                continue;
            const struct shm_listener_stats *s = &gens[g].stats->listeners[j];
            conns += shm_get(&s->conns_total);
            h2_conns += shm_get(&s->h2_conns);
            h2_reqs += shm_get(&s->h2_requests);
            for (size_t k = 0; k < SHM_STATUS_COUNT; k++)
                reqs += shm_get(&s->requests[k]);
            streams += atomic_load_explicit(&s->h2_streams_active, memory_order_relaxed);
        }
    }
    return json_pack("{s:b,s:I,s:I,s:I,s:f,s:f}", "offered", (l->alpn & CFG_ALPN_H2) != 0,
                     "connections", (json_int_t)h2_conns, "requests", (json_int_t)h2_reqs,
                     "streams_active", (json_int_t)(streams > 0 ? streams : 0), "request_share",
                     reqs > 0 ? (double)h2_reqs / (double)reqs : 0.0, "connection_share",
                     conns > 0 ? (double)h2_conns / (double)conns : 0.0);
}

json_t *admin_status_json(struct admin *a)
{
    struct admin_gen gens[ADMIN_MAX_GENS];
    size_t n_gens = a->ops.generations(a->ops.ctx, gens, ADMIN_MAX_GENS);
    json_t *doc = json_object();
    if (doc == NULL)
        return NULL;
    json_object_set_new(doc, "version", json_string(TG_VERSION));
    json_object_set_new(doc, "pid", json_integer((json_int_t)getpid()));
    json_object_set_new(doc, "state", json_string(a->is_draining ? "draining" : "serving"));
    json_t *gen_arr = json_array();
    for (size_t g = 0; g < n_gens; g++)
        json_array_append_new(gen_arr, json_pack("{s:i,s:b}", "id", (json_int_t)gens[g].id,
                                                 "retiring", gens[g].is_retiring));
    json_object_set_new(doc, "generations", gen_arr);
    json_t *reloads = json_pack("{s:I,s:I}", "success", (json_int_t)a->reloads_ok, "failure",
                                (json_int_t)a->reloads_failed);
    json_object_set_new(doc, "reloads", reloads);
    json_t *fleet = a->ops.fleet != NULL ? a->ops.fleet(a->ops.ctx) : NULL;
    if (fleet != NULL)
        json_object_set_new(doc, "fleet", fleet);
    if (n_gens == 0)
        return doc;

    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    admin_hist_sample(a, (double)now.tv_sec);
    const struct config *cfg = gens[0].cfg;
    json_t *config = json_object();
    char *abs = realpath(cfg->path, NULL);
    json_object_set_new(config, "path", json_string(abs ? abs : cfg->path));
    free(abs);
    json_object_set_new(config, "loaded_at", iso_time(gens[0].loaded_at));
    json_object_set_new(config, "loaded_at_unix", json_real(gens[0].loaded_at));
    json_object_set_new(config, "generation", json_integer((json_int_t)gens[0].id));
    json_object_set_new(config, "workers", json_integer((json_int_t)config_worker_count(cfg)));
    json_object_set_new(doc, "config", config);

    json_t *ls = json_array();
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        int64_t active = 0;
        for (size_t g = 0; g < n_gens; g++)
            for (size_t j = 0; j < gens[g].cfg->n_listeners; j++)
                if (strcmp(gens[g].cfg->listeners[j].name, l->name) == 0)
                    active += atomic_load_explicit(&gens[g].stats->listeners[j].conns_active,
                                                   memory_order_relaxed);
        char addr[64];
        net_addr_format(&l->addr, addr, sizeof(addr));
        json_t *jl =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "name", l->name, "address", addr, "protocol",
                      config_proto_name(l->protocol), "tls_mode", tls_mode_name(l), "policy",
                      policy_name(l), "active_connections", (json_int_t)(active > 0 ? active : 0),
                      "max_connections", (json_int_t)l->max_connections);
        if (jl != NULL && l->has_tls) {
            json_t *names = json_array();
            for (size_t k = 0; k < l->tls.n_certificates; k++)
                json_array_append_new(names, json_string(l->tls.certificate_names[k]));
            json_object_set_new(jl, "certificates", names);
            if (l->tls.client_ca_name != NULL)
                json_object_set_new(jl, "client_ca", json_string(l->tls.client_ca_name));
        }
        if (jl != NULL && l->has_tls && l->tls.n_sites > 1)
            json_object_set_new(jl, "sites", sites_json(l));
        if (jl != NULL && l->has_tls)
            trust_next_json(jl, gens, n_gens, l);
        if (jl != NULL && l->protocol == CFG_PROTO_HTTPS)
            json_object_set_new(jl, "http2", h2_json(gens, n_gens, l));
        if (jl != NULL && l->has_tls) {
            json_object_set_new(jl, "refusals_last_hour",
                                admin_hist_json(&a->hist, l->name, (int64_t)now.tv_sec));
        }
        const char *tg = l->target_group_name ? l->target_group_name : l->default_target_group_name;
        if (jl != NULL && tg != NULL)
            json_object_set_new(jl, "target_group", json_string(tg));
        json_array_append_new(ls, jl);
    }
    json_object_set_new(doc, "listeners", ls);
    json_object_set_new(doc, "recent_refusals", recent_refusals_json(gens, n_gens));

    /* The shared lb table: what the health checks and pickers know. */
    json_t *tgs = json_array();
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        json_t *ts = json_array();
        for (size_t k = 0; k < g->n_targets; k++)
            json_array_append_new(ts, target_json(g, k));
        json_array_append_new(tgs, json_pack("{s:s,s:o}", "name", g->name, "targets", ts));
    }
    json_object_set_new(doc, "target_groups", tgs);

    admin_certs_update(&a->certs, gens[0].id, cfg);
    json_t *certs = admin_certs_json(&a->certs);
    admin_ocsp_annotate(certs, cfg, gens[0].ocsp);
    json_object_set_new(doc, "certificates", certs);
    json_object_set_new(doc, "client_cas", trusts_json(a));
    return doc;
}
