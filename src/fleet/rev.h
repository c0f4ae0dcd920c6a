#ifndef TG_FLEET_REV_H
#define TG_FLEET_REV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/diag.h"
#include "core/status.h"

/*
 * A fleet revision: one pushed config with every file it reads, as stored
 * in etcd under a prefix P:
 *
 *   P/head               {"rev":N,"sha256":…}: the revision nodes run; the
 *                        key every push compares and swaps
 *   P/revs/NNNNNNNNNNNN  the revision document (fleet_rev_encode)
 *   P/files/SHA256       the bytes of one shared file, by content
 *   P/nodes/NAME         one node's state, under its lease
 *   P/tickets/leader     the node that makes the ticket keys, under its lease
 *   P/tickets/keys       the ticket keys, sealed (fleet/seal.h)
 *
 * Shared files travel with the revision: certificates, CA bundles, CRLs,
 * OCSP responses, allow files. Node-local ones are named only, and each
 * node reads them from its own disk: private keys, password files, the
 * ticket key file and the admin token (unless pushed with keys).
 */

#define FLEET_FILES_MAX  1024
#define FLEET_REV_MAX    (1u << 20) /* bytes of a revision document */
#define FLEET_PREFIX_MAX CFG_FLEET_PREFIX_MAX
#define FLEET_NODE_MAX   CFG_FLEET_NODE_MAX
#define FLEET_TEXT_MAX   512 /* bytes of "by" and "message" */

struct fleet_file {
    char *path; /* absolute, as the config names it */
    char sha[65];
    uint64_t size;
    bool is_secret; /* a key pushed with --with-keys: stored sealed */
};

struct fleet_rev {
    int64_t rev, parent;
    int64_t at; /* unix seconds */
    char *by, *message;
    char *config_path; /* absolute, as on the machine that pushed */
    char *config_text;
    size_t config_len;
    struct fleet_file *files; /* shipped */
    size_t n_files;
    char **local; /* node-local paths */
    size_t n_local;
    char sha[65]; /* of config_path, the text, and each file's path, digest, size and form */
};

void fleet_rev_free(struct fleet_rev *r);

/* The revision document as JSON text (heap); NULL when out of memory. */
char *fleet_rev_encode(const struct fleet_rev *r);

/* Parses a revision document strictly (types, bounds, absolute paths
 * without NUL or "..", hexadecimal digests, the digest itself). */
TG_MUST_USE enum tg_status fleet_rev_decode(const char *text, size_t len, struct fleet_rev *out,
                                            char *err, size_t err_len);

/* Sets r->sha from the config text and the files' digests. */
void fleet_rev_digest(struct fleet_rev *r);

/*
 * Lists the files cfg reads into r (each once): shared ones with their
 * digest and size, read now (at most ETCD_VALUE_MAX bytes each); keys are
 * node-local unless with_keys. For each shared file, on_file is called
 * with its bytes (to store them). Problems go to d.
 */
TG_MUST_USE enum tg_status fleet_rev_collect(
    const struct config *cfg, bool with_keys, struct fleet_rev *r,
    enum tg_status (*on_file)(void *arg, const struct fleet_file *f, const uint8_t *data),
    void *arg, struct diag *d);

/* config_fleet_prefix_ok and config_fleet_node_ok (config/config.h). */
bool fleet_prefix_ok(char *prefix, char *err, size_t err_len);

bool fleet_node_name_ok(const char *name);

/* "PREFIX/revs/000000000042" and the like. */
void fleet_key_rev(char *dst, size_t len, const char *prefix, int64_t rev);
void fleet_key(char *dst, size_t len, const char *prefix, const char *rest);

/* Whether s is 64 lower-case hexadecimal digits (a SHA-256). */
bool fleet_is_hex64(const char *s);

/* The hexadecimal SHA-256 of data. */
void fleet_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
