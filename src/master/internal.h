#ifndef TG_MASTER_INTERNAL_H
#define TG_MASTER_INTERNAL_H

/* Private to src/master: the OCSP fetcher the master runs for each
 * generation (ocsp_fetch.c). */

#include <ev.h>

#include "config/config.h"
#include "core/ocsp_shm.h"

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

#endif
