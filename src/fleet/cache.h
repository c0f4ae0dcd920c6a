#ifndef TG_FLEET_CACHE_H
#define TG_FLEET_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/status.h"
#include "fleet/etcd.h"
#include "fleet/rev.h"
#include "fleet/seal.h"

/*
 * A node's copy of the fleet on its own disk, under one directory (0711;
 * revs/ and blobs/ 0700, files/ 0711 so that workers that dropped
 * privileges can read the CRLs and allow files they watch, by name):
 *
 *   revs/N.json        revision documents, each written once its files are
 *   blobs/SHA256       the shared files, by content, each checked on write
 *   files/H-NAME       the files the running config reads: one name per
 *                      path of the config (H hashes the path), replaced in
 *                      place when a revision changes its contents, so that
 *                      the CRL and allow-file watches see the change
 *   applied            the number of the revision the node last applied
 *
 * Every write is atomic (a temporary file and a rename): a node stopped at
 * any moment finds a consistent cache, and starts from it when etcd cannot
 * be reached.
 */

/* Makes the directory and its subdirectories when missing, and sets their
 * modes. */
TG_MUST_USE enum tg_status fleet_cache_init(const char *dir, char *err, size_t err_len);

/*
 * Brings revision rev, whose digest the head says is sha, from etcd into
 * the cache, unless it is there already with that digest: its document,
 * then every shared file it lacks (checked against its digest; sealed ones
 * opened with secret, which may be NULL when none is sealed), then the
 * document. On success *out holds the revision. TG_E_CLOSED when etcd
 * could not be asked, TG_E_PROTO when what it holds is refused.
 */
TG_MUST_USE enum tg_status fleet_cache_fetch(const char *dir, struct etcd *e, const char *prefix,
                                             int64_t rev, const char *sha,
                                             const struct fleet_secret *secret,
                                             struct fleet_rev *out, char *err, size_t err_len);

/* Reads revision rev from the cache (document and the presence of every
 * file). */
TG_MUST_USE enum tg_status fleet_cache_read(const char *dir, int64_t rev, struct fleet_rev *out,
                                            char *err, size_t err_len);

/* The revision last applied, 0 when none. */
int64_t fleet_cache_applied(const char *dir);
TG_MUST_USE enum tg_status fleet_cache_set_applied(const char *dir, int64_t rev, char *err,
                                                   size_t err_len);

/*
 * Loads revision r as a config: its text, named as its path on the pushing
 * machine, relative paths resolved there, with the files it ships read
 * from the cache: from blobs/ when is_staged (to check a revision without
 * touching what runs), else from files/. Node-local files are read where
 * the config names them.
 */
TG_MUST_USE enum tg_status fleet_cache_load(const char *dir, const struct fleet_rev *r,
                                            bool is_staged, struct config **out, struct diag *d);

/* Copies every shipped file of r from blobs/ to files/ where the contents
 * differ (atomically; keys 0600, others 0644). */
TG_MUST_USE enum tg_status fleet_cache_install(const char *dir, const struct fleet_rev *r,
                                               char *err, size_t err_len);

/* Whether revisions a and b differ only in the contents of CRL and allow
 * files, which the workers of cfg (a loaded from dir) watch themselves;
 * false when either is NULL. */
bool fleet_rev_only_watched_changed(const char *dir, const struct fleet_rev *a,
                                    const struct fleet_rev *b, const struct config *cfg);

#endif
