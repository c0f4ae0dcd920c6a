#include "admin/admin.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/internal.h"
#include "lb/lb.h"

static void out_reserve(struct admin_out *o, size_t more)
{
    if (o->failed || o->len + more + 1 <= o->cap)
        return;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more + 1)
        cap *= 2;
    char *p = realloc(o->p, cap);
    if (p == NULL) {
        o->failed = true;
        return;
    }
    o->p = p;
    o->cap = cap;
}

void admin_out_printf(struct admin_out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        o->failed = true;
        return;
    }
    out_reserve(o, (size_t)n);
    if (o->failed)
        return;
    if ((size_t)n < sizeof(small)) {
        memcpy(o->p + o->len, small, (size_t)n + 1);
    } else {
        va_start(ap, fmt);
        vsnprintf(o->p + o->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    o->len += (size_t)n;
}

void admin_out_fini(struct admin_out *o)
{
    free(o->p);
    memset(o, 0, sizeof(*o));
}

void admin_label_escape(struct admin_out *o, const char *v)
{
    for (const char *s = v ? v : ""; *s != '\0'; s++) {
        if (*s == '\\')
            admin_out_printf(o, "\\\\");
        else if (*s == '"')
            admin_out_printf(o, "\\\"");
        else if (*s == '\n')
            admin_out_printf(o, "\\n");
        else
            admin_out_printf(o, "%c", *s);
    }
}

void admin_out_double(struct admin_out *o, double v)
{
    if (isinf(v))
        admin_out_printf(o, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        admin_out_printf(o, "NaN");
    else
        admin_out_printf(o, "%.15g", v);
}

void admin_out_histogram(struct admin_out *o, const char *name, const char *labels,
                         const struct shm_hist *h)
{
    uint64_t cum = 0;
    const char *sep = labels[0] != '\0' ? "," : "";
    for (size_t i = 0; i <= SHM_HIST_BOUNDS; i++) {
        cum += shm_get(&h->buckets[i]);
        admin_out_printf(o, "%s_bucket{%s%sle=\"", name, labels, sep);
        if (i < SHM_HIST_BOUNDS)
            admin_out_printf(o, "%g", shm_hist_bound(i));
        else
            admin_out_printf(o, "+Inf");
        admin_out_printf(o, "\"} %llu\n", (unsigned long long)cum);
    }
    admin_out_printf(o, "%s_sum{%s} ", name, labels);
    admin_out_double(o, (double)shm_get(&h->sum_ns) / 1e9);
    admin_out_printf(o, "\n%s_count{%s} %llu\n", name, labels, (unsigned long long)cum);
}

/* ---- /metrics ---- */

static struct admin_lsum *lsum_find(struct admin_lsum *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

size_t admin_collect(struct admin *a, struct admin_gen *gens, size_t n_gens,
                     struct admin_lsum **out)
{
    size_t cap = 0, n = 0;
    for (struct admin_total *t = a->totals; t != NULL; t = t->next)
        cap++;
    for (size_t g = 0; g < n_gens; g++)
        cap += gens[g].cfg->n_listeners;
    struct admin_lsum *v = calloc(cap + 1, sizeof(*v));
    if (v == NULL)
        return 0;
    for (size_t g = 0; g < n_gens; g++) {
        for (size_t i = 0; i < gens[g].cfg->n_listeners && i < gens[g].stats->n_listeners; i++) {
            const struct cfg_listener *l = &gens[g].cfg->listeners[i];
            struct admin_lsum *s = lsum_find(v, n, l->name);
            if (s == NULL) {
                s = &v[n++];
                s->name = l->name;
                s->cfg = l;
            }
            shm_listener_stats_add(&s->s, &gens[g].stats->listeners[i]);
            s->active += atomic_load_explicit(&gens[g].stats->listeners[i].conns_active,
                                              memory_order_relaxed);
            s->h2_streams += atomic_load_explicit(&gens[g].stats->listeners[i].h2_streams_active,
                                                  memory_order_relaxed);
        }
    }
    for (struct admin_total *t = a->totals; t != NULL; t = t->next) {
        struct admin_lsum *s = lsum_find(v, n, t->listener);
        if (s == NULL) {
            s = &v[n++];
            s->name = t->listener;
        }
        shm_listener_stats_add(&s->s, &t->s);
    }
    *out = v;
    return n;
}

static void family(struct admin_out *o, const char *name, const char *type, const char *help)
{
    admin_out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample_start(struct admin_out *o, const char *name, const char *listener)
{
    admin_out_printf(o, "%s{listener=\"", name);
    admin_label_escape(o, listener);
    admin_out_printf(o, "\"");
}

static void sample_u64(struct admin_out *o, uint64_t v)
{
    admin_out_printf(o, "} %llu\n", (unsigned long long)v);
}

/* One listener's histogram of family name. */
static void listener_histogram(struct admin_out *o, const char *name, const char *listener,
                               const struct shm_hist *h)
{
    struct admin_out lab = {0};
    admin_out_printf(&lab, "listener=\"");
    admin_label_escape(&lab, listener);
    admin_out_printf(&lab, "\"");
    if (!lab.failed)
        admin_out_histogram(o, name, lab.p, h);
    admin_out_fini(&lab);
}

/* Whether a site of l has client_ca_next. */
static bool has_next(const struct cfg_listener *l)
{
    for (size_t i = 0; l->has_tls && i < l->tls.n_sites; i++)
        if (l->tls.sites[i].client_ca_next != NULL)
            return true;
    return false;
}

/* A per-reason counter array (at offset off in the listener stats) of
 * the re-judging reasons, for every mutual listener. */
static void recheck_counters(struct admin_out *o, const struct admin_lsum *v, size_t n,
                             const char *name, size_t off)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i].cfg != NULL && !v[i].cfg->has_tls)
            continue;
        const _Atomic uint64_t *c = (const _Atomic uint64_t *)((const char *)&v[i].s + off);
        for (size_t r = 0; shm_recheck_reasons[r] != NULL; r++) {
            sample_start(o, name, v[i].name);
            admin_out_printf(o, ",reason=\"%s\"", shm_recheck_reasons[r]);
            sample_u64(o, shm_get(&c[shm_reason_index(shm_recheck_reasons[r])]));
        }
    }
}

/* Per client CA with CRLs: seconds until the soonest nextUpdate (negative
 * once past: its clients are refused) and the serials its CRLs revoke. */
static void trust_metrics(struct admin *a, struct admin_out *o)
{
    struct admin_trust v[64];
    size_t n = a->ops.trusts != NULL ? a->ops.trusts(a->ops.ctx, v, TG_ARRAY_LEN(v)) : 0;
    int64_t now = (int64_t)time(NULL);
    family(o, "tollgate_crl_next_update_seconds", "gauge",
           "Seconds until the soonest nextUpdate of a client CA's CRLs (negative once past: "
           "the clients it covers are refused with crl_expired).");
    for (size_t i = 0; i < n; i++) {
        if (v[i].crl_next_update == 0)
            continue;
        admin_out_printf(o, "tollgate_crl_next_update_seconds{client_ca=\"");
        admin_label_escape(o, v[i].client_ca);
        admin_out_printf(o, "\"} %lld\n", (long long)(v[i].crl_next_update - now));
    }
    family(o, "tollgate_crl_revoked_serials", "gauge",
           "Serials the CRLs of a client CA revoke, as loaded.");
    for (size_t i = 0; i < n; i++) {
        if (v[i].n_crls == 0)
            continue;
        admin_out_printf(o, "tollgate_crl_revoked_serials{client_ca=\"");
        admin_label_escape(o, v[i].client_ca);
        admin_out_printf(o, "\"} %zu\n", v[i].n_revoked);
    }
}

static bool is_h2_capable(const struct admin_lsum *v)
{
    return v->cfg == NULL || v->cfg->protocol == CFG_PROTO_HTTPS;
}

/* https listeners: how much of their traffic is HTTP/2, and why HTTP/2
 * connections were ended. */
static void h2_metrics(struct admin_out *o, struct admin_lsum *v, size_t n)
{
    family(o, "tollgate_h2_connections_total", "counter",
           "Client connections that chose HTTP/2 (ALPN h2).");
    for (size_t i = 0; i < n; i++) {
        if (!is_h2_capable(&v[i]))
            continue;
        sample_start(o, "tollgate_h2_connections_total", v[i].name);
        sample_u64(o, shm_get(&v[i].s.h2_conns));
    }
    family(o, "tollgate_h2_requests_total", "counter",
           "HTTP requests answered over HTTP/2 (of tollgate_requests_total).");
    for (size_t i = 0; i < n; i++) {
        if (!is_h2_capable(&v[i]))
            continue;
        sample_start(o, "tollgate_h2_requests_total", v[i].name);
        sample_u64(o, shm_get(&v[i].s.h2_requests));
    }
    family(o, "tollgate_h2_streams_active", "gauge", "HTTP/2 streams open now.");
    for (size_t i = 0; i < n; i++) {
        if (!is_h2_capable(&v[i]))
            continue;
        sample_start(o, "tollgate_h2_streams_active", v[i].name);
        admin_out_printf(o, "} %lld\n", (long long)(v[i].h2_streams > 0 ? v[i].h2_streams : 0));
    }
    family(o, "tollgate_h2_connection_errors_total", "counter",
           "HTTP/2 connections ended because of what the client sent, by reason.");
    for (size_t i = 0; i < n; i++) {
        for (size_t r = 0; r < SHM_H2_ERROR_COUNT && is_h2_capable(&v[i]); r++) {
            sample_start(o, "tollgate_h2_connection_errors_total", v[i].name);
            admin_out_printf(o, ",reason=\"%s\"", shm_h2_errors[r]);
            sample_u64(o, shm_get(&v[i].s.h2_errors[r]));
        }
    }
}

static void listener_metrics(struct admin_out *o, struct admin_lsum *v, size_t n)
{
    family(o, "tollgate_connections_total", "counter", "Client connections accepted.");
    for (size_t i = 0; i < n; i++) {
        sample_start(o, "tollgate_connections_total", v[i].name);
        sample_u64(o, shm_get(&v[i].s.conns_total));
    }
    family(o, "tollgate_connections_active", "gauge", "Client connections open now.");
    for (size_t i = 0; i < n; i++) {
        sample_start(o, "tollgate_connections_active", v[i].name);
        admin_out_printf(o, "} %lld\n", (long long)(v[i].active > 0 ? v[i].active : 0));
    }
    family(o, "tollgate_connections_refused_total", "counter",
           "Client connections closed at once because max_connections was reached.");
    for (size_t i = 0; i < n; i++) {
        sample_start(o, "tollgate_connections_refused_total", v[i].name);
        sample_u64(o, shm_get(&v[i].s.conns_refused));
    }
    family(o, "tollgate_tls_handshakes_total", "counter",
           "TLS handshakes completed, by protocol version and session resumption.");
    for (size_t i = 0; i < n; i++) {
        if (v[i].cfg != NULL && !v[i].cfg->has_tls)
            continue;
        for (size_t ver = 0; ver < SHM_TLS_COUNT; ver++) {
            for (int r = 0; r < 2; r++) {
                uint64_t x = shm_get(&v[i].s.hs_by_version[ver][r]);
                if (x == 0 && ver != SHM_TLS_V1_2 && ver != SHM_TLS_V1_3)
                    continue;
                sample_start(o, "tollgate_tls_handshakes_total", v[i].name);
                admin_out_printf(o, ",version=\"%s\",resumed=\"%s\"",
                                 shm_tls_version_name((enum shm_tls_version)ver),
                                 r ? "true" : "false");
                sample_u64(o, x);
            }
        }
    }
    family(o, "tollgate_tls_handshake_failures_total", "counter",
           "TLS handshakes refused or failed, by rejection reason.");
    for (size_t i = 0; i < n; i++) {
        if (v[i].cfg != NULL && !v[i].cfg->has_tls)
            continue;
        for (size_t r = 0; r < SHM_HANDSHAKE_REASONS; r++) {
            sample_start(o, "tollgate_tls_handshake_failures_total", v[i].name);
            admin_out_printf(o, ",reason=\"%s\"", shm_reason_name(r));
            sample_u64(o, shm_get(&v[i].s.hs_failures[r]));
        }
    }
    family(o, "tollgate_tls_resumptions_refused_total", "counter",
           "Offered TLS sessions judged again and refused (a full handshake followed), by "
           "reason.");
    recheck_counters(o, v, n, "tollgate_tls_resumptions_refused_total",
                     offsetof(struct shm_listener_stats, resume_refused));
    family(o, "tollgate_connections_cut_total", "counter",
           "Established connections closed because their client certificate stopped being "
           "valid (on_revoke, on_expiry), by reason.");
    recheck_counters(o, v, n, "tollgate_connections_cut_total",
                     offsetof(struct shm_listener_stats, conns_cut));
    family(o, "tollgate_trust_next_refusals_total", "counter",
           "Accepted handshakes that the listener's client_ca_next (report-only) would have "
           "refused, by reason.");
    for (size_t i = 0; i < n; i++) {
        if (v[i].cfg == NULL || !has_next(v[i].cfg))
            continue;
        for (size_t r = 0; r < SHM_REASON_COUNT; r++) {
            sample_start(o, "tollgate_trust_next_refusals_total", v[i].name);
            admin_out_printf(o, ",reason=\"%s\"", shm_reason_name(r));
            sample_u64(o, shm_get(&v[i].s.next_refused[r]));
        }
    }
    family(o, "tollgate_tls_handshake_duration_seconds", "histogram",
           "Time from accept to a completed TLS handshake.");
    for (size_t i = 0; i < n; i++) {
        if (v[i].cfg != NULL && !v[i].cfg->has_tls)
            continue;
        listener_histogram(o, "tollgate_tls_handshake_duration_seconds", v[i].name,
                           &v[i].s.hs_duration);
    }
    family(o, "tollgate_requests_total", "counter",
           "HTTP requests answered (https and http listeners), by status code.");
    for (size_t i = 0; i < n; i++) {
        for (size_t code = 0; code < SHM_STATUS_COUNT; code++) {
            uint64_t x = shm_get(&v[i].s.requests[code]);
            if (x == 0)
                continue;
            sample_start(o, "tollgate_requests_total", v[i].name);
            admin_out_printf(o, ",code=\"%zu\"", code + SHM_STATUS_MIN);
            sample_u64(o, x);
        }
    }
    h2_metrics(o, v, n);
    family(o, "tollgate_request_duration_seconds", "histogram",
           "Time from the first byte of a request head to the end of its response.");
    for (size_t i = 0; i < n; i++) {
        if (v[i].cfg != NULL && v[i].cfg->protocol == CFG_PROTO_TCP_SSL)
            continue;
        listener_histogram(o, "tollgate_request_duration_seconds", v[i].name, &v[i].s.req_duration);
    }
    family(o, "tollgate_bytes_total", "counter",
           "Bytes from clients (in) and to clients (out), counted when a connection closes.");
    for (size_t i = 0; i < n; i++) {
        sample_start(o, "tollgate_bytes_total", v[i].name);
        admin_out_printf(o, ",direction=\"in\"");
        sample_u64(o, shm_get(&v[i].s.bytes_in));
        sample_start(o, "tollgate_bytes_total", v[i].name);
        admin_out_printf(o, ",direction=\"out\"");
        sample_u64(o, shm_get(&v[i].s.bytes_out));
    }
}

const struct lb_slot *admin_target_slot(const struct cfg_target_group *g, size_t t)
{
    const struct lb_shared *sh = lb_shared_global();
    int i = sh ? lb_shared_find(sh, g->name, g->targets[t].address) : -1;
    return i >= 0 ? &sh->slots[i] : NULL;
}

static void target_sample(struct admin_out *o, const char *name, const struct cfg_target_group *g,
                          size_t t)
{
    admin_out_printf(o, "%s{target_group=\"", name);
    admin_label_escape(o, g->name);
    admin_out_printf(o, "\",target=\"");
    admin_label_escape(o, g->targets[t].address);
    admin_out_printf(o, "\"} ");
}

/* tollgate_target_up and tollgate_target_connections_active from the
 * shared lb table, for the current generation's targets. */
static void target_metrics(const struct config *cfg, struct admin_out *o)
{
    int64_t now = lb_now_ms();
    family(o, "tollgate_target_up", "gauge",
           "1 when a target may be picked: not marked down by health checks, not ejected.");
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        for (size_t t = 0; t < g->n_targets; t++) {
            const struct lb_slot *sl = admin_target_slot(g, t);
            target_sample(o, "tollgate_target_up", g, t);
            admin_out_printf(o, "%d\n", sl == NULL || lb_slot_is_up(sl, now) ? 1 : 0);
        }
    }
    /* The documented name for the same gauge. */
    family(o, "tollgate_backend_up", "gauge",
           "1 when a target may be picked (as tollgate_target_up).");
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        for (size_t t = 0; t < g->n_targets; t++) {
            const struct lb_slot *sl = admin_target_slot(g, t);
            admin_out_printf(o, "tollgate_backend_up{group=\"");
            admin_label_escape(o, g->name);
            admin_out_printf(o, "\",target=\"");
            admin_label_escape(o, g->targets[t].address);
            admin_out_printf(o, "\"} %d\n", sl == NULL || lb_slot_is_up(sl, now) ? 1 : 0);
        }
    }
    family(o, "tollgate_health_checks_total", "counter",
           "Active health checks of a target, by result: pass, refused, timeout, status, "
           "tls_error, error.");
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        for (size_t t = 0; g->health_check.type != CFG_HC_NONE && t < g->n_targets; t++) {
            const struct lb_slot *sl = admin_target_slot(g, t);
            if (sl == NULL || g->targets[t].is_builtin)
                continue; /* never checked */
            for (int r = 0; r < LB_HC_RESULTS; r++) {
                admin_out_printf(o, "tollgate_health_checks_total{target_group=\"");
                admin_label_escape(o, g->name);
                admin_out_printf(o, "\",target=\"");
                admin_label_escape(o, g->targets[t].address);
                admin_out_printf(o, "\",result=\"%s\"} %llu\n", lb_hc_result_name(r),
                                 (unsigned long long)atomic_load_explicit(&sl->hc_total[r],
                                                                          memory_order_relaxed));
            }
        }
    }
    family(o, "tollgate_target_connections_active", "gauge",
           "Connections to a target in use now, over every worker.");
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        for (size_t t = 0; t < g->n_targets; t++) {
            const struct lb_slot *sl = admin_target_slot(g, t);
            int32_t n = sl ? atomic_load_explicit(&sl->active, memory_order_relaxed) : 0;
            target_sample(o, "tollgate_target_connections_active", g, t);
            admin_out_printf(o, "%d\n", n > 0 ? (int)n : 0);
        }
    }
}

/* A fleet node's gauges, from the "fleet" object of /status. */
static void fleet_metrics(struct admin *a, struct admin_out *o)
{
    json_t *f = a->ops.fleet != NULL ? a->ops.fleet(a->ops.ctx) : NULL;
    if (f == NULL)
        return;
    const json_t *err = json_object_get(f, "error");
    const json_t *view = json_object_get(f, "view");
    const json_t *head = json_object_get(view, "head");
    family(o, "tollgate_fleet_revision", "gauge",
           "The fleet revision this node runs, and the newest one pushed (head).");
    admin_out_printf(o, "tollgate_fleet_revision{which=\"running\"} %lld\n",
                     (long long)json_integer_value(json_object_get(f, "rev")));
    if (json_is_object(head))
        admin_out_printf(o, "tollgate_fleet_revision{which=\"head\"} %lld\n",
                         (long long)json_integer_value(json_object_get(head, "rev")));
    family(o, "tollgate_fleet_refused_revision", "gauge",
           "The last fleet revision this node refused since it last applied one; 0 when none.");
    admin_out_printf(o, "tollgate_fleet_refused_revision %lld\n",
                     (long long)json_integer_value(json_object_get(err, "rev")));
    family(o, "tollgate_fleet_etcd_up", "gauge",
           "Whether this node's agent reached etcd at its last attempt.");
    const char *up = json_string_value(json_object_get(f, "etcd"));
    admin_out_printf(o, "tollgate_fleet_etcd_up %d\n", up != NULL && strcmp(up, "up") == 0);
    json_decref(f);
}

void admin_metrics(struct admin *a, struct admin_out *o)
{
    struct admin_gen gens[ADMIN_MAX_GENS];
    size_t n_gens = a->ops.generations(a->ops.ctx, gens, ADMIN_MAX_GENS);
    struct admin_lsum *v = NULL;
    size_t n = admin_collect(a, gens, n_gens, &v);

    family(o, "tollgate_build_info", "gauge", "The running build.");
    admin_out_printf(o, "tollgate_build_info{version=\"%s\"} 1\n", TG_VERSION);
    listener_metrics(o, v, n);
    free(v);

    family(o, "tollgate_config_reloads_total", "counter",
           "Configuration reloads (SIGHUP or POST /reload), by result.");
    admin_out_printf(o, "tollgate_config_reloads_total{result=\"success\"} %llu\n",
                     (unsigned long long)a->reloads_ok);
    admin_out_printf(o, "tollgate_config_reloads_total{result=\"failure\"} %llu\n",
                     (unsigned long long)a->reloads_failed);
    family(o, "tollgate_config_last_reload_success_timestamp_seconds", "gauge",
           "When the serving configuration was loaded (Unix time).");
    double last = a->last_reload_ok;
    if (last == 0 && n_gens > 0)
        last = gens[0].loaded_at;
    admin_out_printf(o, "tollgate_config_last_reload_success_timestamp_seconds ");
    admin_out_double(o, last);
    admin_out_printf(o, "\n");
    family(o, "tollgate_generations", "gauge",
           "Config generations with running workers (more than 1 while old ones drain).");
    admin_out_printf(o, "tollgate_generations %zu\n", n_gens);

    if (n_gens > 0) {
        admin_certs_update(&a->certs, gens[0].id, gens[0].cfg);
        admin_certs_metrics(&a->certs, o);
        trust_metrics(a, o);
        admin_ocsp_metrics(gens[0].cfg, gens[0].ocsp, o);
    }
    if (n_gens > 0)
        target_metrics(gens[0].cfg, o);
    fleet_metrics(a, o);
}
