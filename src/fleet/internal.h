#ifndef TG_FLEET_INTERNAL_H
#define TG_FLEET_INTERNAL_H

/* Private to src/fleet: the revision store in etcd (store.c) and the
 * fleet's view of its nodes (status.c). */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "fleet/etcd.h"
#include "fleet/rev.h"

/* PREFIX/head: the revision the fleet runs. rev 0 when nothing was
 * pushed yet (mod_rev 0 then: the key does not exist). */
struct fleet_head {
    int64_t rev;
    char sha[65];
    char by[FLEET_TEXT_MAX + 1];
    int64_t at;
    int64_t mod_rev; /* etcd's, for the compare and swap */
};

TG_MUST_USE enum tg_status fleet_head_read(struct etcd *e, const char *prefix,
                                           struct fleet_head *out, char *err, size_t err_len);

/* Parses the value of PREFIX/head. */
bool fleet_head_parse(const uint8_t *v, size_t len, struct fleet_head *out);

/* Stores r (rev = head->rev + 1) as the fleet's revision if the head is
 * still *head: the document, its history line and the new head in one
 * transaction. TG_E_AGAIN when somebody pushed meanwhile (err says who). */
TG_MUST_USE enum tg_status fleet_commit(struct etcd *e, const char *prefix,
                                        const struct fleet_head *head, const struct fleet_rev *r,
                                        char *err, size_t err_len);

/* Reads and checks revision rev from etcd. */
TG_MUST_USE enum tg_status fleet_rev_read(struct etcd *e, const char *prefix, int64_t rev,
                                          struct fleet_rev *out, char *err, size_t err_len);

/* The last limit history lines (PREFIX/log/), oldest first, as a JSON
 * array of {rev, parent, at, by, sha256, message, files, local}. */
#define FLEET_HISTORY_MAX 1000
TG_MUST_USE enum tg_status fleet_log_read(struct etcd *e, const char *prefix, size_t limit,
                                          json_t **out, char *err, size_t err_len);

/* The nodes' states (PREFIX/nodes/) with the head, as one JSON object:
 * {"prefix", "head": {rev, sha256, by, at}, "nodes": [...]} (each node as
 * it wrote itself, entries that do not parse left out and counted in
 * "unreadable"). */
TG_MUST_USE enum tg_status fleet_view_read(struct etcd *e, const char *prefix, json_t **out,
                                           char *err, size_t err_len);

/* Replaces control characters in every string of j by '?' (text output
 * of what etcd holds). */
void fleet_json_printable(json_t *j);

/* tollgate fleet status: prints the view; 0 when every node runs the
 * head without error, 1 otherwise or when etcd cannot be read. */
int fleet_status_print(struct etcd *e, const char *prefix, bool is_json);

#endif
