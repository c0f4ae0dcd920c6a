#ifndef TG_ADMIN_ADMIN_H
#define TG_ADMIN_ADMIN_H

#include <ev.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"
#include "core/diag.h"
#include "core/ocsp_shm.h"
#include "core/shm.h"
#include "core/status.h"

/*
 * The admin endpoint, served by the master on its libev loop (see
 * docs/OPERATIONS.md): GET /metrics (Prometheus text 0.0.4), GET /status
 * (JSON), GET /healthz (200 while serving, 503 while draining) and
 * POST /reload (the same as SIGHUP, answered with the result as JSON).
 * One request per connection, answered with Connection: close. Every
 * request passes the guard first (guard.c): a known Host, no sign of a web
 * page, and the bearer token when admin.token_file is set.
 */

/* A growable output string. On allocation failure it stops growing and
 * sets failed; the caller answers 500 then. */
struct admin_out {
    char *p; /* owned, NUL-terminated when len > 0 */
    size_t len, cap;
    bool failed;
};

void admin_out_printf(struct admin_out *o, const char *fmt, ...) TG_PRINTF(2, 3);
void admin_out_fini(struct admin_out *o);

/* A config generation as the master sees it (all borrowed). */
struct admin_gen {
    unsigned id;
    const struct config *cfg;
    const struct shm_stats *stats;
    const struct ocsp_shm *ocsp; /* slot i: cfg->certificates[i]; may be NULL */
    bool is_retiring;
    double loaded_at; /* wall clock, seconds */
};

/* The result of a reload asked for on the admin endpoint. */
enum admin_reload {
    ADMIN_RELOAD_OK,     /* the new config serves */
    ADMIN_RELOAD_FAILED, /* refused config: the previous one serves on */
    ADMIN_RELOAD_BUSY,   /* not tried: max_draining_generations are draining */
};

/* A client CA as the current generation verifies with it (/status,
 * /metrics): what its trust holds. */
struct admin_trust {
    const char *client_ca;                    /* borrowed: the client_cas entry */
    char crl_number[48];                      /* "" when none */
    int64_t crl_this_update, crl_next_update; /* unix seconds; 0 when no CRL */
    size_t n_crls, n_revoked;
    int64_t loaded_at; /* unix seconds: the last (re)load of its files */
};

/* What the admin endpoint asks of the master. */
struct admin_ops {
    void *ctx;
    /* Fills up to max generations, the current one first; returns how many. */
    size_t (*generations)(void *ctx, struct admin_gen *out, size_t max);
    /* Reloads as on SIGHUP; every error and warning goes to d, and the
     * reason when busy. May block (DNS, files). */
    enum admin_reload (*reload)(void *ctx, struct diag *d);
    /* Fills up to max client CAs of the current generation, each once;
     * returns how many. NULL: none shown. */
    size_t (*trusts)(void *ctx, struct admin_trust *out, size_t max);
    /* The "fleet" object of /status (owned by the caller), or NULL when
     * the node is not in a fleet. NULL callback: none. */
    json_t *(*fleet)(void *ctx);
};

struct admin;

/* A new, not yet listening, admin endpoint on loop. ops is copied. NULL when
 * out of memory. */
struct admin *admin_new(struct ev_loop *loop, const struct admin_ops *ops);

/* Closes the socket and every admin connection. NULL does nothing. */
void admin_free(struct admin *a);

/*
 * Listens on cfg->admin_addr (or stops listening when cfg has no admin
 * block). Keeps the socket when the address did not change. On failure
 * writes an error positioned at admin.listen into d and returns
 * TG_E_CONFIG; the previous socket, if any, stays open.
 */
TG_MUST_USE enum tg_status admin_configure(struct admin *a, const struct config *cfg,
                                           struct diag *d);

/* From now on /healthz answers 503. */
void admin_set_draining(struct admin *a);

/* Counts a reload attempt (tollgate_config_reloads_total) at wall time now. */
void admin_note_reload(struct admin *a, bool ok, double now);

/* Folds a retiring generation's counters into the totals kept by the
 * master, just before the generation is freed. */
void admin_retire(struct admin *a, const struct config *cfg, const struct shm_stats *stats);

/* Appends the whole /metrics page to o. */
void admin_metrics(struct admin *a, struct admin_out *o);

/* ---- the request guard, pure (guard.c) ---- */

struct http_head;

#define ADMIN_TOKEN_DIGEST 32

struct admin_guard {
    char **names; /* owned: Host names accepted (listen address, localhost, server_names) */
    size_t n_names;
    bool has_token;
    unsigned char token_digest[ADMIN_TOKEN_DIGEST]; /* SHA-256 of the token */
};

/* Replaces g with the rules of cfg's admin block. On failure (TG_E_NOMEM,
 * TG_E_INTERNAL) g is unchanged. */
TG_MUST_USE enum tg_status admin_guard_set(struct admin_guard *g, const struct config *cfg);

/* Frees the names and wipes g. */
void admin_guard_fini(struct admin_guard *g);

/*
 * Whether the request hd may be served: 0, or the status to answer with
 * *why a token for the log. 400 "no_host": HTTP/1.1 without Host. 421
 * "unknown_host": Host (any port) is not an accepted name nor local_host
 * (the address the connection came in on, "127.0.0.1" or "[::1]"; may be
 * NULL). 403 "cross_site": an Origin header, or Sec-Fetch-Site other than
 * same-origin or none. 401 "no_valid_token": a token is set and the request
 * does not carry it as the one Authorization: Bearer header.
 */
unsigned admin_guard_check(const struct admin_guard *g, const struct http_head *hd,
                           const char *local_host, const char **why);

/* ---- metrics formatting, pure (metrics.c) ---- */

/* Appends v as a Prometheus label value (backslash, quote, newline escaped). */
void admin_label_escape(struct admin_out *o, const char *v);

/* Appends a float the way Prometheus parses it ("+Inf", "0.0005", "12"). */
void admin_out_double(struct admin_out *o, double v);

/* Appends one histogram series set (the _bucket lines with le, _sum and
 * _count) of family name with the label string labels ("listener=\"a\"").
 * _count is the +Inf bucket so they always agree. */
void admin_out_histogram(struct admin_out *o, const char *name, const char *labels,
                         const struct shm_hist *h);

/* ---- tollgate check -T (dump.c) ---- */

/* Writes cfg as YAML with every default filled in, keys as the parser reads
 * them, so that the output is itself a valid config. */
void admin_config_dump(const struct config *cfg, FILE *out);

/* tollgate check -T -c path: diagnostics to stderr, then the normalized
 * config to stdout when there is no error. Returns the exit code. */
int admin_cmd_check_dump(const char *path);

/* ---- privilege drop (privs.c) ---- */

/*
 * In a worker, after the master (root) has bound the sockets and read the
 * keys: becomes user (supplementary groups, group, then user) and sets
 * PR_SET_NO_NEW_PRIVS. NULL does nothing. Already being that user is fine;
 * being another non-root user is an error. Logs why on failure.
 */
TG_MUST_USE enum tg_status admin_drop_privileges(const char *user);

/* ---- sd_notify (notify.c) ---- */

/*
 * Sends state ("READY=1", "RELOADING=1", "STOPPING=1", ...) to the socket
 * named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace),
 * as systemd's sd_notify does; nothing when it is unset. Never blocks.
 */
void admin_sd_notify(const char *state);

/* The /status document (new reference), or NULL when out of memory. */
json_t *admin_status_json(struct admin *a);

#endif
