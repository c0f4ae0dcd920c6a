#ifndef TG_LB_LB_H
#define TG_LB_LB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* lb_pick results besides a target index. */
#define LB_NONE   (-1) /* nothing eligible: every target skipped or of weight 0 */
#define LB_REJECT (-2) /* every eligible target is down and the group says reject */

/*
 * Smooth weighted round robin (nginx's algorithm): each pick adds every
 * target's weight to its current score, picks the highest and subtracts the
 * total. Over sum(weights) picks each target is chosen exactly weight times,
 * spread out rather than in bursts. Per-worker state.
 */
struct lb_wrr {
    const struct cfg_target_group *group; /* borrowed */
    long *current;                        /* owned, one per target */
};

TG_MUST_USE enum tg_status lb_wrr_init(struct lb_wrr *w, const struct cfg_target_group *g);
void lb_wrr_fini(struct lb_wrr *w);

/* Picks a target index, skipping those for which skip[i] is true (skip may
 * be NULL) and those of weight 0. Returns -1 when none is eligible. */
int lb_wrr_pick(struct lb_wrr *w, const bool *skip);

/* ---- state shared by the master and every worker (shared.c) ---- */

enum lb_health { LB_HEALTH_UNKNOWN, LB_HEALTH_UP, LB_HEALTH_DOWN };

#define LB_KEY_MAX      320
#define LB_SHARED_SLOTS 4096 /* targets of every live generation together */

/*
 * The result of one active health check, as tollgate_health_checks_total
 * counts it (label result). A small, stable set: the finer cause of a
 * failure is in the slot's last check (/status) and the log.
 */
enum lb_hc_result {
    LB_HC_PASS,      /* "pass": connected (tcp) or answered an expected status */
    LB_HC_REFUSED,   /* "refused": connection refused */
    LB_HC_TIMEOUT,   /* "timeout": no connection or answer within the timeout */
    LB_HC_STATUS,    /* "status": an HTTP status outside expect */
    LB_HC_TLS_ERROR, /* "tls_error": handshake failed or certificate refused */
    LB_HC_ERROR,     /* "error": anything else (reset, unreachable, not HTTP) */
    LB_HC_RESULTS    /* count */
};

#define LB_HC_CAUSE_MAX  32
#define LB_HC_DETAIL_MAX 96

/*
 * One target of one group, keyed by group name and target address so that
 * a reload finds the health and connection counts of targets that stay.
 * Keys and refs are written by the master only (before it forks); the rest
 * by anyone, with relaxed atomics. The last check's cause and detail are
 * plain text written and read by the master only (health checks, admin).
 */
struct lb_slot {
    char key[LB_KEY_MAX];            /* "group address"; "" when free */
    _Atomic uint32_t refs;           /* config generations using the slot */
    _Atomic int32_t active;          /* connections in use, across workers */
    _Atomic int32_t health;          /* enum lb_health, from active checks */
    _Atomic uint32_t hc_ok, hc_fail; /* active check streaks (master) */
    _Atomic uint32_t conn_fail;      /* consecutive failed connects (passive) */
    _Atomic int64_t eject_until_ms;  /* lb_now_ms() deadline; 0 = not ejected */
    /* Every active check since the slot was made, by result (master). */
    _Atomic uint64_t hc_total[LB_HC_RESULTS];
    /* The last active check (master): result, when (Unix ms; 0 = none yet),
     * cause token ("refused", "status_500", "tls_error", ...) and detail
     * (the verify reason, "expected 200-299", strerror ...; may be ""). */
    _Atomic int32_t hc_last_result;
    _Atomic int64_t hc_last_unix_ms;
    char hc_last_cause[LB_HC_CAUSE_MAX];
    char hc_last_detail[LB_HC_DETAIL_MAX];
    /* The last change of health (master): when (Unix ms; 0 = none yet) and
     * why: "first_check", "passed", "checks_removed", or the failing check's
     * cause. */
    _Atomic int64_t hc_change_unix_ms;
    char hc_change_cause[LB_HC_CAUSE_MAX];
    /* Connections ever begun to the target, across workers (its traffic). */
    _Atomic uint64_t conns_total;
};

/* sticky: source_ip: a client address of a group bound to a target slot
 * until expires_ms. Written by any worker without a lock: a torn entry
 * names a slot that is not the group's and reads as a miss. */
struct lb_sticky {
    _Atomic uint64_t key; /* hash of group name and client address; 0 = empty */
    _Atomic int32_t slot;
    _Atomic int64_t expires_ms;
};

#define LB_COOKIE_KEY_LEN 32
#define LB_COOKIE_MAX     384 /* a whole Set-Cookie line */

/* Each worker process claims a lane and notes there, per slot, the active
 * connections it counted, so that the master can take back the counts of
 * a worker that died without ending them. */
#define LB_LANES 128

struct lb_shared {
    uint8_t cookie_key[LB_COOKIE_KEY_LEN]; /* signs sticky cookies; random per run */
    size_t n_slots;
    size_t n_sticky;
    struct lb_sticky *sticky;           /* in the same mapping, after slots */
    _Atomic int32_t *ledger;            /* same mapping: LB_LANES x n_slots */
    _Atomic int32_t lane_pid[LB_LANES]; /* 0 = free */
    struct lb_slot slots[];
};

/* Maps a zeroed MAP_SHARED|MAP_ANONYMOUS table of n slots (and a sticky
 * table of 16 entries per slot), so that it is shared with processes
 * forked afterwards. NULL on failure. */
struct lb_shared *lb_shared_new(size_t n_slots);
void lb_shared_free(struct lb_shared *sh);

/* The table the master made for the whole run (NULL until set). Processes
 * forked after lb_shared_set_global inherit it. */
struct lb_shared *lb_shared_global(void);
void lb_shared_set_global(struct lb_shared *sh);

/* Master: takes a reference on a slot for every target of cfg, creating
 * slots for new ones. Returns false (and logs) when the table is full; the
 * targets without a slot are then always up and uncounted. */
bool lb_shared_register(struct lb_shared *sh, const struct config *cfg);
/* Master: drops the references of lb_shared_register. sh may be NULL. */
void lb_shared_release(struct lb_shared *sh, const struct config *cfg);

/* The lane of the calling process, claimed on first use; -1 when all are
 * taken (its counts then cannot be taken back after a crash). */
int lb_shared_lane(struct lb_shared *sh);

/* Master: worker pid is gone. Ends the connections it still counted and
 * frees its lane. sh may be NULL. */
void lb_shared_worker_exited(struct lb_shared *sh, int pid);

/* The slot index of (group, target address) or -1. Does not block. */
int lb_shared_find(const struct lb_shared *sh, const char *group, const char *address);

/* True when active checks have not marked the slot down and passive checks
 * have not ejected it at now_ms. */
bool lb_slot_is_up(const struct lb_slot *s, int64_t now_ms);

/* The label value of r ("pass", "refused", ...); "error" when out of range. */
const char *lb_hc_result_name(enum lb_hc_result r);

/* Master: notes one active check of slot s: counts it under r and keeps it
 * as the last check at unix_ms with cause and detail (both may be NULL;
 * truncated to fit). Does not block. */
void lb_slot_note_check(struct lb_slot *s, enum lb_hc_result r, const char *cause,
                        const char *detail, int64_t unix_ms);

/* Master: notes that slot s changed health at unix_ms because of cause
 * (truncated to fit). Does not block. */
void lb_slot_note_change(struct lb_slot *s, const char *cause, int64_t unix_ms);

/* CLOCK_MONOTONIC in milliseconds (the same in every process). */
int64_t lb_now_ms(void);
/* Tests: replaces the clock (NULL restores the real one). */
void lb_set_clock(int64_t (*now_ms)(void));

/* ---- the picker of one worker (pick.c) ---- */

struct lb_state;

/*
 * Per-worker picker state for every target group of cfg (borrowed, must
 * outlive it). sh is the shared table (borrowed); with NULL a private one is
 * made and cfg registered in it. Returns TG_OK with *out (owned by the
 * caller, free with lb_state_free) or TG_E_NOMEM.
 */
TG_MUST_USE enum tg_status lb_state_new(const struct config *cfg, struct lb_shared *sh,
                                        struct lb_state **out);
void lb_state_free(struct lb_state *s);

/*
 * Picks a target of g (a group of the state's config) by g->algorithm for a
 * client at client (may be NULL: ip_hash then falls back to wrr). Targets of
 * weight 0 and those with skip[i] (skip may be NULL) are never picked. Of
 * the rest, those down (active checks) or ejected (passive checks) are left
 * out unless all are: then fail_open picks among all of them and reject
 * returns LB_REJECT. With sticky source_ip (or cookie: this is the picker
 * of tcp_ssl, which has no cookies) a client address goes back to the
 * target it got last within ttl while that one is eligible (shared by every
 * worker). Returns a target index, LB_NONE or LB_REJECT.
 */
int lb_pick(struct lb_state *s, const struct cfg_target_group *g, const struct net_addr *client,
            const bool *skip);

/* The picker of https: lb_pick, but target prefer (-1: none) when it is
 * eligible and up (or all are down and fail_open): a sticky cookie's
 * target. Sticks by source address only with sticky source_ip. */
int lb_pick_prefer(struct lb_state *s, const struct cfg_target_group *g,
                   const struct net_addr *client, const bool *skip, int prefer);

/* ---- sticky cookies (cookie.c) ---- */

/*
 * The target of g named by a valid sticky cookie (g->sticky.name) in one
 * Cookie header value ("a=b; name=value"): signed with the run's key, not
 * expired at now_s (Unix seconds) and naming a target of g. -1 otherwise
 * (absent, forged, expired or naming a target that is gone).
 */
int lb_cookie_target(struct lb_state *s, const struct cfg_target_group *g, const char *hdr,
                     size_t len, int64_t now_s);

/* Writes "Set-Cookie: NAME=VALUE; Max-Age=TTL; Path=/; HttpOnly;
 * SameSite=Lax[; Secure]\r\n" binding a client to target t of g until
 * now_s + ttl. False when it does not fit in cap (dst is then ""). */
bool lb_cookie_header(struct lb_state *s, const struct cfg_target_group *g, int t, bool is_secure,
                      int64_t now_s, char *dst, size_t cap);

/* A connection to target t of g starts or ends being in use (least_conn
 * counts, shared by every worker). Each begin has exactly one end. */
void lb_conn_begin(struct lb_state *s, const struct cfg_target_group *g, int t);
void lb_conn_end(struct lb_state *s, const struct cfg_target_group *g, int t);

/* Ends every connection this state began and did not end: a worker that
 * exits with connections open (drain timeout) must not leave them counted
 * for the workers that stay. */
void lb_state_drop_conns(struct lb_state *s);

/* Passive checks: the result of a connect to target t. After
 * g->passive.consecutive_failures failures in a row the target is ejected
 * for g->passive.ejection_ms (one log line). */
void lb_connect_result(struct lb_state *s, const struct cfg_target_group *g, int t, bool is_ok);

/* Passive checks with count_5xx (https): the status of a response from
 * target t. A 5xx counts as a failure, anything else ends the streak.
 * Without count_5xx the connect results alone count. */
void lb_response_result(struct lb_state *s, const struct cfg_target_group *g, int t,
                        unsigned status);

/* The shared slot of target t of g, NULL when it has none. */
struct lb_slot *lb_target_slot(struct lb_state *s, const struct cfg_target_group *g, int t);

#endif
