#ifndef TG_MASTER_INTERNAL_H
#define TG_MASTER_INTERNAL_H

/* Private to src/master: the OCSP fetcher the master runs for each
 * generation (ocsp_fetch.c). */

#include <ev.h>

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

#endif
