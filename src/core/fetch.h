#ifndef TG_CORE_FETCH_H
#define TG_CORE_FETCH_H

/*
 * One bounded HTTP POST at a time per caller, many at once per loop:
 * libcurl's multi interface driven by a libev loop (the sockets and the
 * timeout libcurl asks for become ev_io and ev_timer watchers), so that a
 * slow or silent server never holds the loop. Each transfer is bounded in
 * time (whole transfer and connect), in response size, to plain http and
 * to no redirects. Used by the master (OCSP stapling) and by each worker
 * (OCSP for client certificates).
 */

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Once per process before the first fetch_new (the master, before it
 * forks; workers inherit it); false when libcurl cannot start. */
bool fetch_global_init(void);
void fetch_global_fini(void);

struct fetch;
struct fetch_xfer;

/* How a transfer ended. reason is a stable word for logs ("too_large",
 * "timeout", "unreachable", "http_status"; NULL when ok); detail says
 * what exactly (URL, libcurl's message, the HTTP status). body/len: the
 * response when ok, borrowed until the callback returns. */
struct fetch_result {
    bool ok; /* HTTP 200 with a body of at most max_response bytes */
    const char *reason;
    char detail[1200];
    long http_code;
    const uint8_t *body;
    size_t len;
};

typedef void (*fetch_done_fn)(void *arg, const struct fetch_result *r);

struct fetch_req {
    const char *url;          /* http:// only; copied */
    const char *content_type; /* of the body, e.g. "application/ocsp-request" */
    const char *accept;       /* Accept header, or NULL */
    const void *body;         /* copied */
    size_t body_len;
    size_t max_response; /* a larger response fails with too_large */
    long timeout_ms;     /* the whole transfer */
    long connect_timeout_ms;
};

/* A fetcher on loop (borrowed; must outlive it). NULL when libcurl could
 * not start or out of memory. */
struct fetch *fetch_new(struct ev_loop *loop);

/* Cancels every transfer (no callback is called) and frees f. NULL: no-op. */
void fetch_free(struct fetch *f);

/* In a forked child that will not use f: stops its watchers and closes
 * its sockets without calling libcurl (the parent still owns them). */
void fetch_forget(struct fetch *f);

/*
 * Starts a POST. done(arg, result) is called later, from the loop, exactly
 * once unless fetch_cancel comes first; the transfer is freed after done
 * returns. *out gets the transfer (borrowed, for fetch_cancel). Never
 * calls done itself: on failure returns TG_E_NOMEM or TG_E_INTERNAL with
 * the reason in err. Never blocks (name resolution is threaded).
 */
TG_MUST_USE enum tg_status fetch_post(struct fetch *f, const struct fetch_req *rq,
                                      fetch_done_fn done, void *arg, struct fetch_xfer **out,
                                      char *err, size_t err_len);

/* Abandons a transfer before its callback: done is never called. */
void fetch_cancel(struct fetch_xfer *x);

#endif
