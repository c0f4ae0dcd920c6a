#ifndef TG_PROXY_BETLS_H
#define TG_PROXY_BETLS_H

/* Private to src/proxy: TLS toward targets (betls.c). */

#include <stdbool.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "proxy/session.h"

/* betls.c: TLS to the targets of groups with a tls block */
struct betls;
/* True when c's group re-encrypts to its current target (never to
 * builtin:echo). */
bool betls_wanted(const struct session *c);
/* One step of the client handshake on the connected c->ex->be.fd, the SSL
 * made on the first call (c->ex->be_ssl). TG_OK when done; TG_E_AGAIN
 * while it waits (the backend watcher is set); TG_E_PROTO when it failed:
 * then one event=backend_tls_failed line with the reason code is logged,
 * the socket is closed and the target marked tried (go back to PICK). */
TG_MUST_USE enum tg_status betls_handshake(struct session *c);
/* The same end for a failure found by the caller (a timeout). Returns
 * CONN_ST_PICK. */
enum conn_state betls_connect_failed(struct session *c, const char *reason, const char *detail);
/* recv()/send() on the backend TLS: bytes moved, 0 at the end (read), or
 * -1 with errno EAGAIN while TLS waits, else another errno. */
ssize_t betls_read(struct session *c, void *dst, size_t len);
ssize_t betls_write(struct session *c, const void *src, size_t len);
/* Frees c->ex->be_ssl (close_notify if it goes out at once); the
 * socket stays. No-op without one. */
void betls_close(struct session *c);
/* Frees a backend SSL the way betls_close does; NULL does nothing. */
void betls_ssl_free(SSL *ssl);
/* For an idle pooled connection that became readable: true when what
 * came was no data (a session ticket), so it can stay. */
bool betls_idle_ok(SSL *ssl);

#endif
