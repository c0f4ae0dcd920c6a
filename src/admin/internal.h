#ifndef TG_ADMIN_INTERNAL_H
#define TG_ADMIN_INTERNAL_H

/* Private to src/admin. */

#include <jansson.h>
#include <time.h>

#include "admin/admin.h"

/* One certificate loaded by a generation, as /status and /metrics show it. */
struct admin_cert {
    char *name;       /* owned: the certificates: or client_cas: entry */
    const char *kind; /* "server" or "ca" */
    bool is_leaf;     /* server: the first certificate of the file */
    char subject[512];
    char issuer[512];
    char serial[80]; /* hex, upper case */
    json_t *sans;    /* owned array of "DNS:name" / "IP:addr" */
    time_t not_after;
};

/* The certificates of one generation, read once per generation. */
struct admin_certs {
    unsigned gen; /* 0 = none read yet */
    struct admin_cert *v;
    size_t n;
    json_t *errors; /* owned array: files that could not be read */
};

/* Re-reads the certificates of cfg when gen differs from the last one. */
void admin_certs_update(struct admin_certs *c, unsigned gen, const struct config *cfg);
void admin_certs_fini(struct admin_certs *c);

/* Appends tollgate_certificate_not_after_timestamp_seconds. */
void admin_certs_metrics(const struct admin_certs *c, struct admin_out *o);

/* A new JSON array describing every certificate (days left from now). */
json_t *admin_certs_json(const struct admin_certs *c);

/* ---- OCSP staples (ocsp.c) ---- */

/* A new JSON object describing slot of shm at Unix time now ("status",
 * "stapled", "this_update", "next_update", "next_update_unix",
 * "updated_at", "last_error", "last_error_at"), or JSON null. */
json_t *admin_ocsp_json(const struct ocsp_shm *shm, size_t slot, int64_t now);

/* Sets "ocsp" on each server leaf of certs (admin_certs_json of cfg). */
void admin_ocsp_annotate(json_t *certs, const struct config *cfg, const struct ocsp_shm *shm);

/* Appends tollgate_ocsp_staple_next_update_seconds and
 * tollgate_ocsp_staple_status for the certificates of cfg that staple. */
void admin_ocsp_metrics(const struct config *cfg, const struct ocsp_shm *shm, struct admin_out *o);

/* ---- refused handshakes (refusals.c, pure) ---- */

/* Replaces every byte of s that is not part of well-formed UTF-8 (RFC 3629)
 * with '?', so that peer text can become a JSON string. */
void admin_utf8_clean(char *s);

/* A new JSON object for one refusal of listener (names cleaned), or NULL. */
json_t *admin_refusal_json(const struct shm_refusal *r, const char *listener);

/* How far back the per-minute counts of refusals go. */
#define ADMIN_HIST_MINUTES 60

struct admin_hist_listener;

/* Refusals by reason per minute, per listener name, from the totals the
 * master samples (every few seconds and on each /status). */
struct admin_hist {
    struct admin_hist_listener *ls; /* owned list */
};

/* Notes the totals of listener (by reason, monotonic) at now_unix. */
TG_MUST_USE enum tg_status admin_hist_note(struct admin_hist *h, const char *listener,
                                           const uint64_t totals[SHM_REASON_COUNT],
                                           int64_t now_unix);

/* Forgets listeners not sampled for the last hour. */
void admin_hist_prune(struct admin_hist *h, int64_t now_unix);
void admin_hist_fini(struct admin_hist *h);

/* {"start_unix":S,"step_seconds":60,"by_reason":{"unknown_ca":[60 counts],...}}
 * for the hour ending with the minute of now_unix (oldest first); only the
 * reasons with a refusal in it. A refusal counts in the minute of the first
 * sample that saw it; the listener's first sample is the baseline. NULL
 * when out of memory. */
json_t *admin_hist_json(const struct admin_hist *h, const char *listener, int64_t now_unix);

/* ---- the status page (ui.c; the bytes are generated from ui.html) ---- */

extern const unsigned char admin_ui_page[];
extern const size_t admin_ui_page_len;

/* Writes into out the Content-Security-Policy of page: nothing but its own
 * inline <script> and <style> (by SHA-256) and fetch to the same origin.
 * False when page lacks either element or out is too small. */
bool admin_ui_csp_for(const char *page, size_t len, char *out, size_t cap);

/* The extra header lines (CRLF-terminated) the page is served with. */
const char *admin_ui_headers(void);

#define ADMIN_MAX_GENS 16

/* Counters of a listener that no live generation has any more, or of the
 * retired generations of one that still exists (by listener name). */
struct admin_total {
    char *listener; /* owned */
    struct shm_listener_stats s;
    struct admin_total *next;
};

struct admin {
    struct ev_loop *loop;
    struct admin_ops ops;
    int fd;
    struct net_addr addr;
    ev_io accept_w;
    struct admin_conn *conns;
    size_t n_conns;
    bool is_draining;
    uint64_t reloads_ok, reloads_failed;
    double last_reload_ok; /* wall clock; 0 = never */
    struct admin_total *totals;
    struct admin_certs certs; /* of the current generation */
    struct admin_guard guard; /* of the current generation */
    struct admin_hist hist;   /* refusals per minute */
    ev_timer hist_timer;      /* samples the totals into hist */
};

/* Samples every listener's refusal totals into a->hist at wall time now. */
void admin_hist_sample(struct admin *a, double now);

/* One listener's counters summed over the retired totals and every live
 * generation. */
struct admin_lsum {
    const char *name;               /* borrowed */
    const struct cfg_listener *cfg; /* borrowed, newest generation that has it; may be NULL */
    struct shm_listener_stats s;    /* sums (the refusal ring stays empty) */
    int64_t active;
    int64_t h2_streams; /* HTTP/2 streams open now */
};

/* Sums every listener's counters over gens and the retired totals into a
 * new array *out (free() it); returns its length, 0 with *out untouched
 * when out of memory. */
size_t admin_collect(struct admin *a, struct admin_gen *gens, size_t n_gens,
                     struct admin_lsum **out);

/* The slot the workers' pickers use for a target, or NULL (no shared
 * table, or the table was full: such a target is always up). */
const struct lb_slot *admin_target_slot(const struct cfg_target_group *g, size_t t);

#endif
