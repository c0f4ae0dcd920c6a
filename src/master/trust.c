/*
 * The master's watch on the client CA files of the current generation's
 * mutual listeners: a change is loaded and logged here once (the workers
 * load it too, each for itself, and judge their connections), so that
 * workers spawned later and /status have it; and the warnings about a
 * CRL's nextUpdate.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "core/log.h"
#include "master/internal.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

static void format_unix(int64_t t, char *dst, size_t len)
{
    time_t sec = (time_t)t;
    struct tm tm;
    if (t == 0 || gmtime_r(&sec, &tm) == NULL || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "-");
}

/* Warns once per load when a CRL is within a day of its nextUpdate, and
 * again once it is past it: from then on every client it covers is
 * refused (crl_expired) until a fresh CRL is installed. */
static void warn_crl_dates(struct gen_trust *gt, const struct cfg_listener *l,
                           const struct cfg_client_ca *ca, const struct tls_trust_info *info,
                           int64_t now)
{
    if (info->n_crls == 0 || info->crl_next_update == 0 || info->crl_next_update == INT64_MAX)
        return;
    char when[32];
    int64_t left = info->crl_next_update - now;
    format_unix(info->crl_next_update, when, sizeof(when));
    if (left < 0 && !gt->is_warned_expired) {
        gt->is_warned_expired = true;
        log_err("event=crl_expired listener=%s client_ca=%s next_update=%s crl_number=%s "
                "effect=\"clients of its issuer are refused (crl_expired)\"",
                l->name, ca->name, when, info->crl_number[0] ? info->crl_number : "-");
    } else if (left >= 0 && left < 24 * 3600 && !gt->is_warned_soon) {
        gt->is_warned_soon = true;
        log_warn("event=crl_next_update_soon listener=%s client_ca=%s next_update=%s "
                 "seconds_left=%lld crl_number=%s",
                 l->name, ca->name, when, (long long)left,
                 info->crl_number[0] ? info->crl_number : "-");
    }
}

/* One mutual site's client CA files. */
static void site_trust_tick(const struct config *cfg, const struct cfg_listener *l, size_t site,
                            struct tls_server *srv, struct gen_trust *gt, ev_tstamp now,
                            int64_t unix_now)
{
    const struct cfg_client_ca *ca = l->tls.sites[site].client_ca;
    const struct tls_trust *current = tls_server_trust(srv, site);
    if (current == NULL)
        return;
    uint64_t every = ca->check_interval_ms;
    if (every != 0 && now >= gt->next_check) {
        gt->next_check = now + (ev_tstamp)every / 1000.0;
        struct tls_trust *fresh = NULL;
        char err[256];
        enum tg_status st =
            tls_trust_watch_poll(&gt->watch, cfg, ca, current, &fresh, err, sizeof(err));
        if (st == TG_OK && tls_server_set_trust(srv, site, fresh) == TG_OK) {
            const struct tls_trust_info *info = tls_trust_info(fresh);
            char next[32];
            format_unix(info->crl_next_update, next, sizeof(next));
            log_info("event=trust_reloaded listener=%s client_ca=%s crl_number=%s "
                     "crl_next_update=%s crls=%zu revoked=%zu",
                     l->name, ca->name, info->crl_number[0] ? info->crl_number : "-", next,
                     info->n_crls, info->n_revoked);
            gt->is_warned_soon = gt->is_warned_expired = false;
            current = fresh;
        } else if (st != TG_E_AGAIN) {
            char e_err[LOG_KV_MAX];
            log_warn("event=trust_reload_failed listener=%s client_ca=%s error=%s "
                     "action=keep_previous",
                     l->name, ca->name, log_kv(e_err, sizeof(e_err), err));
        }
        tls_trust_unref(fresh);
        if (l->tls.sites[site].allow_file != NULL) {
            st = tls_server_allow_poll(srv, site, err, sizeof(err));
            char e_path[LOG_KV_MAX], e_err[LOG_KV_MAX];
            log_kv(e_path, sizeof(e_path), l->tls.sites[site].allow_file);
            if (st == TG_OK)
                log_info("event=allow_reloaded listener=%s allow_file=%s", l->name, e_path);
            else if (st != TG_E_AGAIN)
                log_warn("event=allow_reload_failed listener=%s allow_file=%s error=%s "
                         "action=keep_previous",
                         l->name, e_path, log_kv(e_err, sizeof(e_err), err));
        }
    }
    warn_crl_dates(gt, l, ca, tls_trust_info(current), unix_now);
}

void master_trust_tick(const struct config *cfg, struct proxy_listener *pls,
                       struct gen_trust *trusts, ev_tstamp now)
{
    int64_t unix_now = (int64_t)time(NULL);
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_listeners; i++) {
        const struct cfg_listener *l = &cfg->listeners[i];
        for (size_t s = 0; s < l->tls.n_sites; s++, k++)
            if (pls[i].tls != NULL)
                site_trust_tick(cfg, l, s, pls[i].tls, &trusts[k], now, unix_now);
    }
}

size_t master_trust_list(const struct config *cfg, const struct proxy_listener *pls,
                         struct admin_trust *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->n_listeners && n < max; i++) {
        const struct cfg_tls *lt = &cfg->listeners[i].tls;
        for (size_t s = 0; s < lt->n_sites && n < max; s++) {
            const struct tls_trust *t = pls[i].tls ? tls_server_trust(pls[i].tls, s) : NULL;
            if (t == NULL)
                continue;
            const char *name = lt->sites[s].client_ca->name;
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = strcmp(out[k].client_ca, name) == 0;
            if (seen)
                continue;
            const struct tls_trust_info *info = tls_trust_info(t);
            struct admin_trust *a = &out[n++];
            memset(a, 0, sizeof(*a));
            a->client_ca = name;
            snprintf(a->crl_number, sizeof(a->crl_number), "%s", info->crl_number);
            a->crl_this_update = info->crl_last_update;
            a->crl_next_update = info->crl_next_update == INT64_MAX ? 0 : info->crl_next_update;
            a->n_crls = info->n_crls;
            a->n_revoked = info->n_revoked;
            a->loaded_at = info->loaded_at;
        }
    }
    return n;
}
