#ifndef TG_CORE_SHM_H
#define TG_CORE_SHM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Counters shared by the master and every worker of one config generation,
 * in an anonymous shared mapping made by the master before it forks. Workers
 * update them with relaxed atomics; readers sum nothing (one slot per
 * listener is already the total). The master folds a retired generation's
 * counters into its own totals (shm_listener_stats_add) before unmapping
 * them, so that what /metrics shows never goes down.
 */

/* TLS protocol versions counted apart; anything else is SHM_TLS_OTHER. */
enum shm_tls_version {
    SHM_TLS_V1_0,
    SHM_TLS_V1_1,
    SHM_TLS_V1_2,
    SHM_TLS_V1_3,
    SHM_TLS_OTHER,
    SHM_TLS_COUNT
};

/* The rejection reasons (docs/OPERATIONS.md). */
#define SHM_REASON_COUNT 23
/* The first SHM_HANDSHAKE_REASONS of them (tls_error last) are those a
 * handshake is refused for; the others only refuse a session or cut a
 * connection that is judged again. */
#define SHM_HANDSHAKE_REASONS 20
#define SHM_REASON_TLS_ERROR  (SHM_HANDSHAKE_REASONS - 1)

/* Histogram upper bounds in seconds (the +Inf bucket comes after them). */
#define SHM_HIST_BOUNDS 16

/* HTTP status codes 100..599 are counted one by one. */
#define SHM_STATUS_MIN   100
#define SHM_STATUS_COUNT 500

struct shm_hist {
    _Atomic uint64_t buckets[SHM_HIST_BOUNDS + 1]; /* per bucket, not cumulative; last is +Inf */
    _Atomic uint64_t count;
    _Atomic uint64_t sum_ns;
};

/* Workers per generation whose open connections are tracked one by one, so
 * that the master can take a crashed worker's connections off the gauge
 * (config workers: at most 256). */
#define SHM_MAX_WORKERS 256

/* The last refused handshakes of a listener, for the admin status page.
 * Subject and issuer are peer-controlled: cut to SHM_REFUSAL_NAME - 1 bytes
 * (whatever they hold) and always NUL-terminated when read back. */
#define SHM_REFUSALS     16
#define SHM_REFUSAL_NAME 256
#define SHM_REFUSAL_PEER 64

struct shm_refusal {
    int64_t unix_ms; /* when it was refused */
    uint32_t reason; /* shm_reason_name() slot */
    char client[SHM_REFUSAL_PEER];
    char subject[SHM_REFUSAL_NAME]; /* RFC 2253 text as logged; "" when none offered */
    char issuer[SHM_REFUSAL_NAME];
};

/* A ring written by every worker without a lock: each entry carries a
 * sequence number (odd while it is written) so that a reader skips an entry
 * it caught half-written. */
struct shm_refusal_slot {
    _Atomic uint64_t seq; /* 0: never written; 2t+1 while refusal t is written, then 2t+2 */
    struct shm_refusal r;
};

struct shm_refusal_ring {
    _Atomic uint64_t next; /* refusals ever noted; refusal t goes to v[t % SHM_REFUSALS] */
    struct shm_refusal_slot v[SHM_REFUSALS];
};

/* The reasons an HTTP/2 connection is ended for (shm_h2_errors). */
#define SHM_H2_ERROR_COUNT 8
extern const char *const shm_h2_errors[SHM_H2_ERROR_COUNT];

struct shm_listener_stats {
    _Atomic int64_t conns_active;
    _Atomic int64_t conns_active_by_worker[SHM_MAX_WORKERS];
    _Atomic uint64_t conns_total;
    _Atomic uint64_t conns_refused; /* over max_connections */
    _Atomic uint64_t handshakes;
    _Atomic uint64_t handshakes_resumed;
    _Atomic uint64_t handshake_failures;
    _Atomic uint64_t bytes_in;                        /* from clients */
    _Atomic uint64_t bytes_out;                       /* to clients */
    _Atomic uint64_t hs_by_version[SHM_TLS_COUNT][2]; /* [version][resumed] */
    _Atomic uint64_t hs_failures[SHM_REASON_COUNT];
    _Atomic uint64_t resume_refused[SHM_REASON_COUNT]; /* sessions judged again and refused */
    _Atomic uint64_t conns_cut[SHM_REASON_COUNT];      /* live connections closed on a re-judging */
    _Atomic uint64_t requests[SHM_STATUS_COUNT];       /* by status - SHM_STATUS_MIN */
    _Atomic uint64_t h2_conns;                         /* sessions whose client chose h2 */
    _Atomic uint64_t h2_requests;                      /* of requests: those over h2 */
    _Atomic int64_t h2_streams_active;
    _Atomic int64_t h2_streams_by_worker[SHM_MAX_WORKERS];
    _Atomic uint64_t h2_errors[SHM_H2_ERROR_COUNT]; /* connections ended, by shm_h2_errors */
    struct shm_hist hs_duration;
    struct shm_hist req_duration;
    struct shm_refusal_ring refusals; /* not folded by shm_listener_stats_add */
    /* client_ca_next (report-only): accepted handshakes the next trust
     * would refuse, by reason, and the last of them (not folded). */
    _Atomic uint64_t next_refused[SHM_REASON_COUNT];
    struct shm_refusal_ring next_refusals;
};

struct shm_stats {
    size_t n_listeners;
    struct shm_listener_stats listeners[];
};

/* Maps a zeroed region for n listeners; NULL on failure (errno set). */
struct shm_stats *shm_stats_new(size_t n_listeners);
void shm_stats_free(struct shm_stats *s);

static inline void shm_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t shm_get(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* The upper bound in seconds of histogram bucket i (< SHM_HIST_BOUNDS). */
double shm_hist_bound(size_t i);

/* Records one observation of seconds (negative counts as 0). */
void shm_hist_observe(struct shm_hist *h, double seconds);

/* "TLSv1.3" etc., or "other". */
const char *shm_tls_version_name(enum shm_tls_version v);

/* Maps an OpenSSL protocol number (TLS1_3_VERSION, ...) to its slot. */
enum shm_tls_version shm_tls_version_of(int protocol);

/* The reason code of slot i (< SHM_REASON_COUNT). */
const char *shm_reason_name(size_t i);

/* The slot of a reason code; unknown codes count as "tls_error". */
size_t shm_reason_index(const char *reason);

/* In a new worker, before any accounting call: its slot (0..workers-1). */
void shm_set_worker_slot(unsigned slot);

/* Master, when worker slot died without draining: takes the connections it
 * had open off conns_active of every listener of s. The worker must be
 * gone (no writer left for that slot). */
void shm_worker_died(struct shm_stats *s, unsigned slot);

/* Accounting points, one call each where the event log or access log line
 * is written. All take the listener's slot of the current generation. */
void shm_count_accept(struct shm_listener_stats *s);
void shm_count_close(struct shm_listener_stats *s, uint64_t bytes_in, uint64_t bytes_out);
void shm_count_handshake(struct shm_listener_stats *s, int protocol, bool resumed, double seconds);
void shm_count_handshake_failure(struct shm_listener_stats *s, const char *reason);
void shm_count_resumption_refused(struct shm_listener_stats *s, const char *reason);
void shm_count_conn_cut(struct shm_listener_stats *s, const char *reason);

/* The reasons a session or a live connection is judged again for
 * (tls_trust_recheck and the session's own limits), in metric order;
 * NULL-terminated. */
extern const char *const shm_recheck_reasons[];
/* Notes one refused handshake in a listener's ring (refusals, or
 * next_refusals); any of the strings may be NULL; each is cut to fit. */
void shm_note_refusal(struct shm_refusal_ring *ring, const char *reason, const char *client,
                      const char *subject, const char *issuer, int64_t unix_ms);

/* Copies up to max whole entries of the ring, newest first, into out;
 * returns how many. Entries being written at that moment are skipped. */
size_t shm_read_refusals(const struct shm_refusal_ring *ring, struct shm_refusal *out, size_t max);

/* An accepted handshake that client_ca_next would refuse for reason. */
void shm_count_next_refused(struct shm_listener_stats *s, const char *reason);

/* HTTP/2: a session whose client chose h2; n streams opened (1) or
 * ended (-1); one of its requests (after shm_count_request); a connection
 * ended for reason (one of shm_h2_errors, else the last, "h2_error"). */
void shm_count_h2_conn(struct shm_listener_stats *s);
void shm_count_h2_streams(struct shm_listener_stats *s, int n);
void shm_count_h2_request(struct shm_listener_stats *s);
void shm_count_h2_error(struct shm_listener_stats *s, const char *reason);

/* An https/http request answered with status (ignored unless 100..599). */
void shm_count_request(struct shm_listener_stats *s, unsigned status, double seconds);

/* dst += src for every counter except the conns_active and
 * h2_streams_active gauges. dst is the
 * master's private copy; src may be live (workers still writing). */
void shm_listener_stats_add(struct shm_listener_stats *dst, const struct shm_listener_stats *src);

#endif
