#ifndef TG_FLEET_FLEET_H
#define TG_FLEET_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/etcd.h"

/*
 * The fleet mode: several tollgate nodes that share one config, one set of
 * session-ticket keys and one view of themselves through etcd
 * (docs/FLEET.md). This header has what the command line and the master
 * use: the options of a node, the endpoint list, the commands.
 */

#define FLEET_TIMEOUT_MS 3000 /* one request to etcd */
#define FLEET_LEASE_TTL  10   /* seconds: a node that stops renewing disappears */

/* How a node joins a fleet (tollgate run --fleet ...). */
struct fleet_opts {
    const char *urls[ETCD_URLS_MAX];
    size_t n_urls;
    char prefix[256];
    const char *node;
    const char *secret_file; /* NULL: ticket keys stay per node */
    struct etcd_tls tls;     /* to https:// endpoints */
    const char *cache_dir;
    unsigned lease_ttl; /* seconds */
};

/* Splits "URL[,URL...]" into o->urls (pointing into text, which it
 * modifies). False, with a reason, on a bad list. */
bool fleet_parse_urls(char *text, struct fleet_opts *o, char *err, size_t err_len);

/* tollgate fleet push|history|rollback|status ... (argv[0] is "fleet"). */
int fleet_cmd(int argc, char **argv);

#endif
