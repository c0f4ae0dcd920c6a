#ifndef TG_PKI_PKI_H
#define TG_PKI_PKI_H

#include <stddef.h>

#include "core/status.h"

/* Command-line entry points. Each returns the process exit code:
 * 0 success, 1 the thing checked is bad, 2 usage error. */

/* tollgate pki init DIR [--key ecdsa|rsa] [--hosts h1,h2] [--clients alice,bob] */
int pki_cmd_init(int argc, char **argv);

enum pki_key_type { PKI_KEY_ECDSA, PKI_KEY_RSA };

struct pki_init_opts {
    const char *dir;
    enum pki_key_type key;    /* CAs and client certificates; servers get both kinds */
    const char *const *hosts; /* extra SANs for server certificates (DNS or IP) */
    size_t n_hosts;
    const char *const *clients; /* client names; default {"alice"} */
    size_t n_clients;
};

/*
 * Writes a development PKI into dir (created if missing; files replaced):
 *   root.crt root.key                 root CA (10 years)
 *   intermediate.crt intermediate.key intermediate CA, signed by the root
 *   ca-bundle.crt                     intermediate + root, for clients to trust
 *   server-ecdsa.crt .key             P-256 leaf + intermediate (full chain)
 *   server-rsa.crt .key               RSA-2048 leaf + intermediate
 *   NAME.crt NAME.key NAME.p12        per client: leaf + intermediate, clientAuth
 *   revoked.crt .key .p12             a client listed in the CRL
 *   clients.crl                       intermediate's CRL (revoking "revoked") + root's CRL
 *   p12-password.txt                  the password of every .p12 ("tollgate")
 * Server SANs: localhost, 127.0.0.1, ::1 and hosts. Keys are written 0600.
 * On failure err gets the reason and the status is returned.
 */
TG_MUST_USE enum tg_status pki_init(const struct pki_init_opts *o, char *err, size_t err_len);

#endif
