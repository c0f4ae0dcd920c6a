#ifndef TG_MASTER_INTERNAL_H
#define TG_MASTER_INTERNAL_H

/* Private to src/master: the OCSP fetcher the master runs for each
 * generation (ocsp_fetch.c). */

#include <ev.h>
#include <jansson.h>

#include "admin/admin.h"
#include "config/config.h"
#include "core/ocsp_shm.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

struct ocsp_fetch;

/* Once per process, before the first ocsp_fetch_new; false when libcurl
 * cannot start (stapling from responders is then off). */
bool ocsp_fetch_global_init(void);
void ocsp_fetch_global_fini(void);

/*
 * Starts obtaining the OCSP response of every certificates: entry of cfg
 * that staples (ocsp: auto with a responder URL in the certificate, or an
 * ocsp_file), on loop, and publishes each one that passes tls_ocsp_check
 * into its slot of shm (slot i for cfg->certificates[i]). A response
 * still valid that prev (the fetcher of the generation before, or NULL)
 * holds for the same certificate is published at once, so that a reload
 * does not interrupt stapling. Responders are asked over HTTP with
 * libcurl's multi interface on loop: nothing blocks the loop (a transfer
 * is bounded to OCSP_FETCH_TIMEOUT_MS and OCSP_RESP_MAX bytes). Reads
 * certificate files (blocking, as loading a config does). cfg and shm must
 * outlive the fetcher. NULL when out of memory.
 */
struct ocsp_fetch *ocsp_fetch_new(struct ev_loop *loop, const struct config *cfg,
                                  struct ocsp_shm *shm, const struct ocsp_fetch *prev);

/* Stops every transfer and timer and frees f (the slots keep what they
 * hold). NULL does nothing. */
void ocsp_fetch_free(struct ocsp_fetch *f);

/* In a forked worker: stops f's watchers on the inherited loop and closes
 * its sockets without calling libcurl (whose resolver threads did not come
 * along). f must not be used afterwards. NULL does nothing. */
void ocsp_fetch_forget(struct ocsp_fetch *f);

/* ---- client CA files (trust.c) ---- */

/* The master's watch on the client CA files of one mutual site of a
 * listener (struct cfg_site). */
struct gen_trust {
    struct tls_trust_watch watch;
    ev_tstamp next_check;
    bool is_warned_soon, is_warned_expired; /* about the CRL's nextUpdate, once per load */
};

/* Looks, every second, at the client CA files of cfg's mutual listeners
 * (pls[i].tls; trusts holds one per site of every listener, in order):
 * loads a changed one into the listener's server and logs it, refuses a
 * bad one once, and warns about CRLs near or past their nextUpdate; and at
 * the allow files of their sites, logging a change or a refusal once. */
void master_trust_tick(const struct config *cfg, struct proxy_listener *pls,
                       struct gen_trust *trusts, ev_tstamp now);

/* Each client CA the mutual listeners of cfg use, once, as /status and
 * /metrics show it; returns how many (at most max). */
size_t master_trust_list(const struct config *cfg, const struct proxy_listener *pls,
                         struct admin_trust *out, size_t max);

/* ---- a fleet node (fleet.c) ---- */

struct fleet_node;
struct fleet_opts;

/* What a fleet node asks of its master. */
struct fleet_node_ops {
    void *ctx;
    /* Reloads as on SIGHUP (the config comes from fleet_node_load). */
    enum admin_reload (*reload)(void *ctx, struct diag *d);
    /* Publishes the fleet's ticket keys to the workers. */
    void (*tickets)(void *ctx, const struct ticket_set *set);
    /* The admin /status document of the node (owned by the caller). */
    json_t *(*status)(void *ctx);
    /* The config that runs now, or NULL. */
    const struct config *(*current)(void *ctx);
    /* Trust files (CRLs, allow files) changed in place: every worker of
     * every generation looks at them now. */
    void (*trust_changed)(void *ctx);
    /* Whether a reload would be refused now (old generations draining). */
    bool (*is_busy)(void *ctx);
};

/*
 * Joins the fleet o describes: makes the cache, asks etcd for the newest
 * revision and brings it into the cache, checks it and installs its files.
 * etcd unreachable, or its revision refused: the revision last applied
 * from the cache. NULL, with every reason in d, when there is none.
 * Blocking (etcd, files): before the first generation only.
 */
struct fleet_node *fleet_node_new(const struct fleet_opts *o, struct diag *d);

/* Loads the revision being applied (or the one running) as a config, for
 * a new generation. */
TG_MUST_USE enum tg_status fleet_node_load(struct fleet_node *n, struct config **out,
                                           struct diag *d);

/* Tells the node whether the generation loaded from it serves now. */
void fleet_node_loaded(struct fleet_node *n, bool ok);

/* The revision that runs. */
int64_t fleet_node_revision(const struct fleet_node *n);

/* Starts the agent process and the node's timers on loop. */
void fleet_node_start(struct fleet_node *n, struct ev_loop *loop, const struct fleet_node_ops *ops);

/* SIGHUP: asks the agent to offer the newest revision again, even one
 * refused before. NULL does nothing. */
void fleet_node_retry(struct fleet_node *n);

/* In a forked worker: stops the node's watchers, closes its socket. */
void fleet_node_forget(struct fleet_node *n);

/* The "fleet" object of /status. */
json_t *fleet_node_status_json(const struct fleet_node *n);

/* Stops the agent (it revokes its lease) and frees n. NULL does nothing. */
void fleet_node_free(struct fleet_node *n);

#endif
