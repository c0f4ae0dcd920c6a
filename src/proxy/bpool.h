#ifndef TG_PROXY_BPOOL_H
#define TG_PROXY_BPOOL_H

/* Private to src/proxy: the pool of idle backend connections (bpool.c). */

#include <openssl/ssl.h>

#include "proxy/worker.h"

/* bpool.c: idle keep-alive backend connections, per worker and target */
struct bpool;
struct bpool *bpool_new(struct worker *w);
/* An idle connection to (g, target) or -1; *ssl gets its TLS (owned by
 * the caller now), NULL when plain. */
int bpool_take(struct bpool *p, const struct cfg_target_group *g, int target, SSL **ssl);
/* Keeps fd and its ssl (may be NULL) for reuse, or closes them when the
 * pool is full. Takes ownership of both. */
void bpool_put(struct bpool *p, const struct cfg_target_group *g, int target, int fd, SSL *ssl);

#endif
