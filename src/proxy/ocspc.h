#ifndef TG_PROXY_OCSPC_H
#define TG_PROXY_OCSPC_H

/* Private to src/proxy: OCSP lookups for client certificates (ocspc.c). */

#include <stdbool.h>

#include "proxy/session.h"

/* ocspc.c: OCSP for client certificates, per worker (the cache and the
 * lookups in flight). NULL when out of memory. */
struct ocspc;
struct lookup;
struct ocspc *ocspc_new(struct worker *w);
void ocspc_free(struct ocspc *o);
/* The cache the listeners' verify callbacks and resumptions consult. */
struct tls_ocsp_cache *ocspc_cache(struct ocspc *o);
/* c's handshake was suspended for the OCSP status of its client's leaf
 * (c->verdict.ocsp_leaf): true when c now waits for a lookup (one fetch
 * per certificate; session_run(c) is called when it ends, with
 * c->verdict.ocsp_result set); false when the result is set at once
 * (cached meanwhile, or unavailable: no issuer, no URL, no HTTP client,
 * too many lookups): run the handshake again. o may be NULL. */
bool ocspc_wait(struct ocspc *o, struct session *c);
/* Takes c off the waiters of its lookup, if any (c is closing). */
void ocspc_cancel(struct session *c);

#endif
