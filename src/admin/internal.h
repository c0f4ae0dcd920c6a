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
};

/* The slot the workers' pickers use for a target, or NULL (no shared
 * table, or the table was full: such a target is always up). */
const struct lb_slot *admin_target_slot(const struct cfg_target_group *g, size_t t);

/* The /status document (new reference), or NULL when out of memory. */
json_t *admin_status_json(struct admin *a);

#endif
