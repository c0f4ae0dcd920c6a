#ifndef TG_TLS_TLS_H
#define TG_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config/config.h"
#include "core/diag.h"
#include "core/ocsp_shm.h"
#include "core/status.h"
#include "core/ticket.h"

/* ---- loading certificates, keys, CA bundles and CRLs (load.c) ---- */

/* A server (or client) certificate with its chain and key. */
struct tls_chain {
    X509 *leaf;            /* owned */
    STACK_OF(X509) *chain; /* owned; intermediates in order leaf-issuer first; may be empty */
    EVP_PKEY *key;         /* owned */
};

void tls_chain_fini(struct tls_chain *c);

/*
 * Reads every certificate and private key in a file, whatever its format:
 * PEM (certificates, keys, encrypted keys), DER certificate or key, PKCS#7
 * (PEM or DER) and PKCS#12 (also legacy RC2-encrypted ones). password may be
 * NULL. *certs gets every certificate in file order (owned by the caller,
 * possibly empty); *key the first private key or NULL. On failure writes a
 * precise reason ("wrong password", "not a certificate or key in any known
 * format", "cannot open: ...") into err and returns TG_E_CONFIG.
 */
TG_MUST_USE enum tg_status tls_read_file(const char *path, const char *password,
                                         STACK_OF(X509) **certs, EVP_PKEY **key, char *err,
                                         size_t err_len);

/*
 * Loads a certificates: entry: the leaf (the certificate whose public key
 * matches the private key), its chain in order (re-ordered with a warning
 * if the file had it out of order) and the key. Errors and warnings go to
 * d, positioned at the entry's keys in cfg->path: unreadable file, key that
 * matches no certificate, expired or not yet valid leaf (error), expiring
 * within 30 days, incomplete chain (warning). Returns TG_E_CONFIG on error.
 */
TG_MUST_USE enum tg_status tls_load_certificate(const struct config *cfg,
                                                const struct cfg_certificate *c,
                                                struct tls_chain *out, struct diag *d);

/*
 * Loads a client_cas: entry into a new X509_STORE (CA certificates plus
 * CRLs when given; CRL checking flags are NOT set here) and the list of CA
 * subject names to send in a CertificateRequest. Both owned by the caller;
 * either out-pointer may be NULL. Errors and warnings (CRL past its
 * nextUpdate, CA expiring) go to d. Returns TG_E_CONFIG on error.
 */
TG_MUST_USE enum tg_status tls_load_client_ca(const struct config *cfg,
                                              const struct cfg_client_ca *ca, X509_STORE **store,
                                              STACK_OF(X509_NAME) **names, struct diag *d);

/* Loads every certificate and client CA the config names and reports every
 * problem into d (used by `tollgate check` and before every (re)load). */
void tls_config_check(const struct config *cfg, struct diag *d);

/* ---- server contexts (ctx.c) ---- */

/* ---- session tickets (ticket.c) ---- */

/* Fills a key (name, HMAC secret, AES key) from the CSPRNG. */
TG_MUST_USE enum tg_status tls_ticket_key_generate(struct ticket_key *key);

/* Makes ctx encrypt tickets with the newest key of the set in shm and
 * decrypt with any key of it (matched by name); a ticket under an older
 * key is renewed. shm must outlive ctx. */
TG_MUST_USE enum tg_status tls_ticket_use(SSL_CTX *ctx, const struct ticket_shm *shm);

struct tls_server;

/*
 * Builds the server side of one listener: one SSL_CTX per certificate set
 * (SNI picks among them by SAN), the policy, client verification for mutual
 * mode, the shared session-ticket keys, a session id context bound to
 * the listener's trust configuration, and OCSP stapling from ocsp (one slot
 * per cfg->certificates entry; NULL: none). Errors go to d. The returned
 * object is owned by the caller (tls_server_free).
 */
TG_MUST_USE enum tg_status tls_server_new(const struct config *cfg, const struct cfg_listener *l,
                                          const struct ticket_shm *tickets,
                                          const struct ocsp_shm *ocsp, struct tls_server **out,
                                          struct diag *d);
void tls_server_free(struct tls_server *s);

/* A new server-side SSL for an accepted fd, or NULL when out of memory. */
SSL *tls_server_ssl_new(struct tls_server *s, int fd);

/* ---- per-connection verdicts (verify.c) ---- */

/* What we learned about the peer's certificate during a handshake. Stored
 * in the SSL's ex_data by the verify callback; owned by the connection. */
struct tls_verdict {
    int first_error;      /* first X509_V_ERR_* seen in the chain; X509_V_OK if none */
    int error_depth;      /* depth of that error */
    const char *sni_fail; /* set to "unknown_sni" when strict SNI refused */
    X509 *offered;        /* owned reference: the leaf the client offered, if any */
};

/* Clears v and attaches it to ssl so that the verify and SNI callbacks can
 * fill it. Release with tls_verdict_fini. */
void tls_verdict_attach(SSL *ssl, struct tls_verdict *v);
void tls_verdict_fini(struct tls_verdict *v);

/*
 * The security level of certificate verification, whatever the protocol
 * floor: 2 refuses RSA, DSA and DH keys under 2048 bits, EC keys under 224
 * bits and SHA-1 (or weaker) signatures in the peer's chain below the trust
 * anchor (X509_V_ERR_EE_KEY_TOO_SMALL, _CA_KEY_TOO_SMALL, _CA_MD_TOO_WEAK:
 * reason bad_signature).
 */
#define TLS_VERIFY_AUTH_LEVEL 2

/* Pins ctx's verification level at TLS_VERIFY_AUTH_LEVEL. Without it the
 * context's security level decides, and the level 0 that TLS 1.0 and 1.1
 * need would accept any chain. */
void tls_ctx_set_verify_level(SSL_CTX *ctx);

/* Maps an X509_V_ERR_* code (or a TLS_V_ERR_* of ours) to a stable reason
 * code of docs/OPERATIONS.md
 * ("cert_expired", "unknown_ca", ...); never NULL. */
const char *tls_reason_from_verify(int x509_err);

/*
 * The reason a handshake failed, from the verdict, the OpenSSL error queue
 * (consumed) and the SSL itself. Never NULL; "tls_error" when nothing more
 * precise is known. detail gets OpenSSL's own text for the log.
 */
const char *tls_reason_from_handshake(SSL *ssl, const struct tls_verdict *v, char *detail,
                                      size_t detail_len);

/* ---- non-blocking I/O (io.c); only this module calls SSL_read/SSL_write ---- */

enum tls_want { TLS_WANT_NONE, TLS_WANT_READ, TLS_WANT_WRITE };

/* One step of the server handshake. TG_OK when done; TG_E_AGAIN with *want
 * set; TG_E_PROTO when refused (the caller asks tls_reason_from_handshake). */
TG_MUST_USE enum tg_status tls_handshake(SSL *ssl, enum tls_want *want);

/* Reads up to len bytes. TG_OK with *n > 0; TG_E_AGAIN with *want;
 * TG_E_CLOSED on close_notify, EOF or a socket error; TG_E_RESET when the
 * peer reset the connection; TG_E_PROTO on a TLS error. */
TG_MUST_USE enum tg_status tls_read(SSL *ssl, void *dst, size_t len, size_t *n,
                                    enum tls_want *want);

/* From now on *drained tells whether ssl's last read() from its socket
 * emptied it (got less than OpenSSL asked for, which with read-ahead is all
 * the room in its buffer, or failed). Starts false; the caller clears it
 * when the socket becomes readable again. *drained must outlive ssl. */
void tls_report_reads(SSL *ssl, bool *drained);

/* Writes up to len bytes (partial writes allowed). Same statuses. */
TG_MUST_USE enum tg_status tls_write(SSL *ssl, const void *src, size_t len, size_t *n,
                                     enum tls_want *want);

/* Sends close_notify (once). TG_OK when sent; TG_E_AGAIN with *want. */
TG_MUST_USE enum tg_status tls_shutdown(SSL *ssl, enum tls_want *want);

/* ---- facts about an established session (info.c) ---- */

/* The largest Certificate message a client may send on a mutual listener
 * (leaf and chain with their framing); a larger one fails the handshake. */
#define TLS_MAX_CLIENT_CHAIN (64 * 1024)
/* The longest first CN of a client certificate, as escaped text. */
#define TLS_CN_MAX 255
/* RFC 5280 §4.1.2.2: a serial number is at most 20 octets. */
#define TLS_SERIAL_MAX 20
/* The longest subject or issuer name, as RFC 4514 text, that a client
 * certificate may have; each is forwarded whole or the certificate fails. */
#define TLS_NAME_MAX 4096

/* Verification errors of tollgate's own, beyond OpenSSL's X509_V_ERR_*
 * range, for client certificates whose facts exceed the limits above. */
#define TLS_V_ERR_SERIAL_TOO_LONG 0x74670001 /* reason "serial_too_long" */
#define TLS_V_ERR_NAME_TOO_LONG   0x74670002 /* reason "name_too_long" */

struct tls_info {
    char version[16]; /* "TLSv1.3" */
    char cipher[64];
    char sni[256]; /* "" when absent */
    char alpn[64]; /* "" when none */
    bool resumed;
    bool has_client_cert;
    bool client_verified;       /* verified against the client CA */
    const char *client_verdict; /* "SUCCESS", "NONE" or a reason code */
    long verify_result;         /* X509_V_* for PROXY v2 */
    /* RFC 4514 text, control characters as \XX, UTF-8 otherwise; cut at
     * a character boundary only for a certificate that failed. */
    char client_subject[TLS_NAME_MAX + 1];
    char client_issuer[TLS_NAME_MAX + 1];
    char client_cn[TLS_CN_MAX + 1];             /* the first CN, escaped the same way */
    char client_serial[2 * TLS_SERIAL_MAX + 2]; /* hex, "-" first if negative; "" if too long */
    char client_fingerprint[2 * 32 + 1];        /* SHA-256, lower-case hex */
};

/* Empties info: no TLS facts, verdict "NONE". */
void tls_info_clear(struct tls_info *info);

/* Fills info from an established ssl and its verdict. */
void tls_info_get(SSL *ssl, const struct tls_verdict *v, struct tls_info *info);

/*
 * The facts of info as JSON object members ("sni":"...", "tls_version",
 * "cipher", "resumed", "client_subject", "client_issuer", "client_serial",
 * "client_fingerprint", "client_verify"), peer text escaped, into dst.
 * With cap >= TLS_INFO_JSON_MAX nothing is ever cut. Returns the length.
 */
#define TLS_INFO_JSON_MAX (6 * 256 + 6 * TLS_NAME_MAX + 1024)
size_t tls_info_json(const struct tls_info *info, char *dst, size_t cap);

/* Fills the client_* facts of info (subject, issuer, cn, serial,
 * fingerprint) from cert, bounded whatever the certificate holds. */
void tls_cert_facts(X509 *cert, struct tls_info *info);

/* X509_V_OK when cert's facts fit the limits above, else
 * TLS_V_ERR_SERIAL_TOO_LONG or TLS_V_ERR_NAME_TOO_LONG (subject, issuer or
 * first CN). Called by the
 * verify callback on the client's leaf. */
int tls_cert_limits(X509 *cert);

/* Formats a certificate's subject or issuer name as RFC 4514 text into dst
 * (terminated, cut at a UTF-8 character boundary when it does not fit).
 * Returns the length of the whole text: dst was cut when it is >= dst_len. */
size_t tls_name_format(X509_NAME *name, char *dst, size_t dst_len);

/* ---- reading X.509 files, shared by load.c and the certificate tools (x509util.c) ---- */

/* tls_read_file (declared above) lives in x509util.c with the readers below. */

/*
 * Reads every CRL in a file: PEM (any number of "X509 CRL" blocks; other
 * blocks are skipped) or one DER CRL. *crls is owned by the caller and holds
 * at least one CRL on success. On failure writes the reason into err
 * ("cannot open: ...", "no CRL among its PEM blocks", ...) and returns
 * TG_E_CONFIG.
 */
TG_MUST_USE enum tg_status tls_read_crls(const char *path, STACK_OF(X509_CRL) **crls, char *err,
                                         size_t err_len);

/* Reads the first line of a password file (trailing "\n" or "\r\n"
 * removed) into dst. The caller should OPENSSL_cleanse dst after use.
 * TG_E_CONFIG with the reason in err when unreadable or too long. */
TG_MUST_USE enum tg_status tls_read_password_file(const char *path, char *dst, size_t dst_len,
                                                  char *err, size_t err_len);

/* Formats a certificate or CRL time as "2026-01-31 23:59:59 UTC". */
void tls_time_format(const ASN1_TIME *t, char *dst, size_t dst_len);

/* ---- OCSP stapling (ocsp.c) ---- */

/* How far in the future a response's thisUpdate may be (clock skew). A
 * response is never accepted at or after its nextUpdate. */
#define TLS_OCSP_LEEWAY 300

enum tls_ocsp_status { TLS_OCSP_GOOD, TLS_OCSP_REVOKED, TLS_OCSP_UNKNOWN };

/* What a response that passed tls_ocsp_check says about the certificate. */
struct tls_ocsp_facts {
    enum tls_ocsp_status status;
    int64_t this_update; /* Unix seconds */
    int64_t next_update;
    int64_t revoked_at;    /* REVOKED: when (0 when unreadable) */
    int revocation_reason; /* REVOKED: OCSP_REVOKED_STATUS_*, -1 when not given */
};

/* The first http:// OCSP responder URL of cert's Authority Information
 * Access into dst (terminated); false, dst "", when there is none (other
 * schemes are not used) or it does not fit. */
bool tls_ocsp_url(X509 *cert, char *dst, size_t dst_len);

/* The certificate of certs that issued leaf (borrowed), or NULL. */
X509 *tls_ocsp_issuer(X509 *leaf, STACK_OF(X509) *certs);

/* The DER OCSP request for leaf (RFC 6960 §4.1: one CertID, SHA-1 hashes
 * of the issuer's name and key, no nonce so that responses can be cached).
 * *der is OPENSSL_malloc'd, owned by the caller. TG_E_NOMEM on failure. */
TG_MUST_USE enum tg_status tls_ocsp_request(X509 *leaf, X509 *issuer, unsigned char **der,
                                            size_t *len);

/*
 * Checks len bytes of a DER OCSPResponse (hostile: from a responder or a
 * file) about leaf, issued by issuer, at Unix time now: one whole DER
 * structure (1 to OCSP_RESP_MAX bytes, nothing after it), responseStatus
 * successful, a basic response signed by issuer or by a responder
 * certificate issuer signed for id-kp-OCSPSigning and valid at now, a
 * SingleResponse for leaf's CertID, a nextUpdate, thisUpdate at most
 * TLS_OCSP_LEEWAY seconds ahead and nextUpdate after now. TG_OK with out
 * filled (the status may be good, revoked or unknown); else TG_E_PROTO
 * (TG_E_NOMEM) with *reason one of malformed, not_successful,
 * bad_signature, wrong_certificate, no_next_update, not_yet_valid,
 * expired, and what exactly in detail. Clears OpenSSL's error queue.
 */
TG_MUST_USE enum tg_status tls_ocsp_check(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer,
                                          int64_t now, struct tls_ocsp_facts *out,
                                          const char **reason, char *detail, size_t detail_len);

/* Warns (into d, at the entry's keys) when c would staple but its file
 * lacks the issuer of the certificate, or its ocsp_file holds no response
 * that tls_ocsp_check accepts now. chain is c as loaded. */
void tls_ocsp_config_check(const struct config *cfg, const struct cfg_certificate *c,
                           const struct tls_chain *chain, struct diag *d);

/* "good", "revoked" or "unknown". */
const char *tls_ocsp_status_name(enum tls_ocsp_status s);

/* Reads an ocsp_file (a regular file of 1 to cap bytes) into buf. TG_E_CONFIG
 * with the reason in err otherwise. Never blocks on a FIFO. */
TG_MUST_USE enum tg_status tls_ocsp_read_file(const char *path, uint8_t *buf, size_t cap,
                                              size_t *len, char *err, size_t err_len);

/*
 * Makes ctx staple, for leaf, the response of slot of shm: when a client
 * asks for the certificate status, the status callback copies the slot
 * (while its nextUpdate has not passed) into the handshake. Nothing when
 * shm is NULL or slot is out of range. shm must outlive ctx and leaf. The
 * callback never blocks and costs nothing to clients that do not ask.
 */
TG_MUST_USE enum tg_status tls_ocsp_staple(SSL_CTX *ctx, X509 *leaf, const struct ocsp_shm *shm,
                                           size_t slot);

#endif
