#ifndef TG_FLEET_ETCD_H
#define TG_FLEET_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/*
 * A small client of etcd's v3 JSON gateway (etcd 3.4 and later): ranges,
 * puts, deletes, transactions, leases and a watch, as POST requests with
 * libcurl and JSON bodies with jansson. Keys and values travel in base64;
 * 64-bit numbers travel as JSON strings.
 *
 * Blocking: each call waits for its answer, bounded by the client's
 * timeout. Meant for command-line tools and the fleet agent process, never
 * for a worker's event loop. Every answer is bounded (ETCD_RESP_MAX) and
 * checked field by field: an answer that does not parse is an error, never
 * a guess.
 *
 * Several endpoints may be given: a call that cannot reach one tries the
 * next, and the client keeps using the one that answered.
 */

#define ETCD_RESP_MAX       (8u << 20) /* bytes of one answer */
#define ETCD_VALUE_MAX      (1u << 20) /* bytes of one value this client stores or reads */
#define ETCD_URLS_MAX       16
#define ETCD_KVS_MAX        16384  /* key-values of a prefix read without a limit */
#define ETCD_JSON_NODES_MAX 200000 /* objects and arrays in one answer */

struct etcd;

/* TLS to https:// endpoints: the CA bundle that verifies etcd's
 * certificate (NULL: the system's), and a client certificate and key for
 * etcd's --client-cert-auth (NULL: none). Paths, read by libcurl. */
struct etcd_tls {
    const char *ca_file, *cert_file, *key_file;
};

/* A client of the endpoints urls[0..n) ("http://host:port" or https, no
 * path), with tls (NULL: defaults). timeout_ms bounds every request. NULL
 * when out of memory or n is out of range. */
struct etcd *etcd_new(const char *const *urls, size_t n, unsigned timeout_ms,
                      const struct etcd_tls *tls);
void etcd_free(struct etcd *e);

/* Calls fail with TG_E_CLOSED when no endpoint could be reached (or every
 * one answered 503: no leader, stopping) and TG_E_PROTO when an endpoint
 * answered something else than what was asked (an HTTP error, an answer
 * that does not parse or is too large).
 *
 * What the last failed call said, for a log line or a message. */
const char *etcd_error(const struct etcd *e);

/* The endpoint the client is using now. */
const char *etcd_endpoint(const struct etcd *e);

struct etcd_kv {
    char *key;      /* NUL-terminated */
    uint8_t *value; /* NUL-terminated for convenience; len bytes */
    size_t len;
    int64_t mod_rev, create_rev, lease;
    bool is_too_large; /* the value was over ETCD_VALUE_MAX: value is empty */
};

struct etcd_kvs {
    struct etcd_kv *v;
    size_t n;
    int64_t revision; /* the store's revision when it answered */
};

void etcd_kvs_free(struct etcd_kvs *kvs);

/* The key, if it exists (out->n is 0 or 1). */
TG_MUST_USE enum tg_status etcd_get(struct etcd *e, const char *key, struct etcd_kvs *out);

/* Every key starting with prefix, in key order, at most limit of them (0:
 * ETCD_KVS_MAX). */
TG_MUST_USE enum tg_status etcd_get_prefix(struct etcd *e, const char *prefix, size_t limit,
                                           struct etcd_kvs *out);

/* The last limit keys (1 to ETCD_KVS_MAX) starting with prefix, in key
 * order. */
TG_MUST_USE enum tg_status etcd_get_prefix_last(struct etcd *e, const char *prefix, size_t limit,
                                                struct etcd_kvs *out);

/* Stores value under key, attached to lease (0: none). */
TG_MUST_USE enum tg_status etcd_put(struct etcd *e, const char *key, const void *value, size_t len,
                                    int64_t lease);

TG_MUST_USE enum tg_status etcd_delete(struct etcd *e, const char *key);

/* One comparison of a transaction: the key's mod_revision equals mod_rev,
 * or, with mod_rev 0, the key does not exist. */
struct etcd_cmp {
    const char *key;
    int64_t mod_rev;
};

/* One put of a transaction. */
struct etcd_op {
    const char *key;
    const void *value;
    size_t len;
    int64_t lease;
};

/* Applies every op when every comparison holds, atomically; *succeeded
 * tells which. */
TG_MUST_USE enum tg_status etcd_txn(struct etcd *e, const struct etcd_cmp *cmp, size_t n_cmp,
                                    const struct etcd_op *ops, size_t n_ops, bool *succeeded);

TG_MUST_USE enum tg_status etcd_lease_grant(struct etcd *e, int64_t ttl_s, int64_t *id);

/* Renews a lease; *ttl_left is 0 or less when it had already expired. */
TG_MUST_USE enum tg_status etcd_lease_keepalive(struct etcd *e, int64_t id, int64_t *ttl_left);

TG_MUST_USE enum tg_status etcd_lease_revoke(struct etcd *e, int64_t id);

/*
 * A watch on every key under a prefix, from a revision on: one streamed
 * request on its own connection. etcd_watch_wait waits for events (or for
 * extra_fd to be readable, or for timeout_ms) and reports each changed key
 * to on_event. It returns TG_OK while the stream is alive and an error
 * once it ended (etcd gone, compacted revision, cancelled): start another.
 */
struct etcd_watch;

typedef void (*etcd_event_fn)(void *arg, const char *key, bool is_delete, int64_t mod_rev);

struct etcd_watch *etcd_watch_start(struct etcd *e, const char *prefix, int64_t start_rev);
TG_MUST_USE enum tg_status etcd_watch_wait(struct etcd_watch *w, int extra_fd, int timeout_ms,
                                           etcd_event_fn on_event, void *arg);
void etcd_watch_free(struct etcd_watch *w);

/* The revision after the newest event the watch has seen (where a new
 * watch should start to miss nothing); 0 before any. */
int64_t etcd_watch_next_rev(const struct etcd_watch *w);

#endif
