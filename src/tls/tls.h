#ifndef TG_TLS_TLS_H
#define TG_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

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

/* Makes store's CRL checks remember which CRL verified with which issuer
 * certificate, so that the same CRL met again with the same issuer is not
 * verified again (crl_check.c says when exactly). False when out of memory:
 * the store then checks as OpenSSL does. */
bool tls_crl_check_attach(X509_STORE *store);

/* How often store's CRL checks ran OpenSSL's check in full, and how often
 * a remembered signature spared it. */
struct tls_crl_check_counts {
    uint64_t full, skipped;
};
struct tls_crl_check_counts tls_crl_check_counts(X509_STORE *store);

/* Loads every certificate and client CA the config names and reports every
 * problem into d (used by `tollgate check` and before every (re)load). */
void tls_config_check(const struct config *cfg, struct diag *d);

/* ---- client trust: a client_cas entry as loaded (trust.c) ---- */

/* Digests tollgate keeps of names and CA sets: SHA-256, cut. */
#define TLS_DIGEST_LEN 16

/* What a trust holds, for /status, /metrics and the log. */
struct tls_trust_info {
    uint8_t ca_digest[TLS_DIGEST_LEN]; /* of the CA certificates, in order */
    char crl_number[48];               /* the newest CRL's cRLNumber, decimal; "" when none */
    int64_t crl_last_update;           /* unix seconds: the newest CRL's lastUpdate; 0 = none */
    int64_t crl_next_update;           /* the first time an issuer has no CRL in date (the
                                        * latest nextUpdate of its CRLs, soonest over
                                        * issuers); 0 = no CRL */
    size_t n_crls, n_revoked;          /* CRLs, and revoked serials over all of them */
    size_t n_bad_signatures;           /* CRLs whose issuer is in the bundle but did not sign */
    int64_t loaded_at;                 /* unix seconds */
};

struct tls_trust;

/* What stat() says of a file: a change of any field is a change. */
struct tls_file_sig {
    bool exists;
    uint64_t dev, ino;
    int64_t size, mtime_ns, ctime_ns;
};
void tls_file_sig_get(const char *path, struct tls_file_sig *sig);

/* Loads a client_cas entry (tls_load_client_ca) into a new trust with one
 * reference; errors and warnings go to d. */
TG_MUST_USE enum tg_status tls_trust_load(const struct config *cfg, const struct cfg_client_ca *ca,
                                          struct tls_trust **out, struct diag *d);
struct tls_trust *tls_trust_ref(struct tls_trust *t);
void tls_trust_unref(struct tls_trust *t);
X509_STORE *tls_trust_store(const struct tls_trust *t);
STACK_OF(X509_NAME) *tls_trust_names(const struct tls_trust *t);
const struct tls_trust_info *tls_trust_info(const struct tls_trust *t);
bool tls_trust_is_crl_checked(const struct tls_trust *t);
/* A number no other trust loaded by this process has: which trust judged
 * a handshake (struct tls_verdict's judged_under). */
uint64_t tls_trust_serial(const struct tls_trust *t);

/* Watches a client CA's files for a trust in use. */
struct tls_trust_watch {
    bool has_failed; /* the files as they were at the last refused load */
    struct tls_file_sig failed_ca, failed_crl;
};

/*
 * Looks at ca's files (stat only, unless they changed since current was
 * loaded; with current NULL, none loaded, they are tried once per change):
 * TG_E_AGAIN when nothing changed (or the change was already refused); TG_OK with *out a new trust
 * (one reference) when they changed and load; else the status of the failed load, with its first
 * error in err (once per change: the same files are not tried again).
 */
TG_MUST_USE enum tg_status tls_trust_watch_poll(struct tls_trust_watch *w, const struct config *cfg,
                                                const struct cfg_client_ca *ca,
                                                const struct tls_trust *current,
                                                struct tls_trust **out, char *err, size_t err_len);

/* An ASN1_TIME as unix seconds (0 when unreadable). */
int64_t tls_time_unix(const ASN1_TIME *t);
/* The first TLS_DIGEST_LEN bytes of SHA-256 over name's DER. */
void tls_name_digest(const X509_NAME *name, uint8_t out[TLS_DIGEST_LEN]);

/* ---- what a session remembers of its client (session.c) ---- */

/* A certificate of a verified chain, as a CRL names it. */
#define TLS_FACTS_SERIAL_MAX 32
struct tls_cert_ref {
    uint8_t issuer[TLS_DIGEST_LEN]; /* tls_name_digest of its issuer */
    uint8_t serial_len;
    bool is_serial_negative;
    uint8_t serial[TLS_FACTS_SERIAL_MAX]; /* the INTEGER's content octets */
};

/* x as a CRL (and the OCSP cache) names it: false when its serial is
 * longer than TLS_FACTS_SERIAL_MAX octets. */
bool tls_cert_ref_of(X509 *x, struct tls_cert_ref *r);
/* The same certificate: issuer digest, serial and its sign. */
bool tls_cert_ref_equal(const struct tls_cert_ref *a, const struct tls_cert_ref *b);

/* Leaf, at most 16 intermediates (verify_depth), root. */
#define TLS_FACTS_MAX_CERTS 18
/* The most of the client's chain a session keeps for Client-Cert-Chain. */
#define TLS_FACTS_CHAIN_MAX (16 * 1024)

/*
 * What a session keeps of its first full handshake, in every ticket made
 * from it, so that a resumption is judged again and forwards the same
 * identity: when it began, and for a verified client certificate, the
 * validity window of its chain, the CA set it was verified under, each
 * certificate as a CRL names it, and the chain the client sent.
 */
struct tls_facts {
    int64_t first_time; /* unix seconds of the first full handshake */
    bool has_client;    /* a verified client certificate: the fields below are set */
    bool is_complete;   /* every certificate of the chain is in certs */
    bool is_chain_kept; /* chain holds what the client sent after its leaf */
    int64_t not_before; /* the latest notBefore of the verified chain */
    int64_t not_after;  /* the earliest notAfter */
    uint8_t ca_digest[TLS_DIGEST_LEN];
    size_t n_certs;
    struct tls_cert_ref certs[TLS_FACTS_MAX_CERTS];
    const uint8_t *chain; /* DER certificates, each after its length (u32, big-endian); borrowed */
    size_t chain_len;
};

/* The encoded facts are at most this long. */
#define TLS_FACTS_ENCODED_MAX                                                                      \
    (64 + TLS_FACTS_MAX_CERTS * (TLS_DIGEST_LEN + 2 + TLS_FACTS_SERIAL_MAX) + TLS_FACTS_CHAIN_MAX)

/* Encodes f into dst: the length, or 0 when cap is too small. */
size_t tls_facts_encode(const struct tls_facts *f, uint8_t *dst, size_t cap);
/* Decodes what tls_facts_encode made; f->chain points into src. False
 * when src is not such an encoding (bounded: never reads past len). */
bool tls_facts_decode(const uint8_t *src, size_t len, struct tls_facts *f);

/* The facts of an established connection's client, from its session's
 * ticket data or else its verified chain: false when there is no verified
 * client certificate. f->chain may point into ssl's session. */
bool tls_facts_of(SSL *ssl, struct tls_facts *f);

/*
 * Judges f again under t at time now: NULL while it still holds, else the
 * reason: cert_expired, cert_not_yet_valid (the chain's window),
 * trust_changed (other CA certificates), and with CRL checking, for each
 * certificate of the chain, crl_missing (no CRL of its issuer),
 * bad_signature (none signed by the issuer), cert_revoked (on a signed
 * one), crl_expired (no signed one in date). Cheap: only a CRL whose
 * issuer is not in the bundle has its signature checked, once, with the
 * intermediate of f's chain (t remembers it).
 */
const char *tls_trust_recheck(struct tls_trust *t, const struct tls_facts *f, int64_t now);

/* Verifies a client chain (leaf, and what the client sent after it) under
 * t as a mutual site with verify_depth depth would, at unix time at: chain,
 * dates, purpose, revocation when t has CRLs, the facts' limits. NULL when
 * it verifies, else the reason. For trust diff, away from any handshake. */
const char *tls_trust_verify(const struct tls_trust *t, X509 *leaf, STACK_OF(X509) *chain,
                             unsigned depth, int64_t at);

/* Verifies an established connection's client chain (what it sent, or
 * what its session kept) under t, with the connection's verification
 * settings: NULL when it verifies, else the reason. For a change of CA
 * certificates, where tls_trust_recheck can only say trust_changed. */
const char *tls_reverify(SSL *ssl, const struct tls_trust *t);

/* The certificates a resumed session's client sent after its leaf (DER,
 * borrowed from the session): how many, at most max. 0 on a full
 * handshake (SSL_get_peer_cert_chain has them) or when not kept. */
size_t tls_session_chain(SSL *ssl, const uint8_t **ders, size_t *lens, size_t max);

/*
 * How a listener's sessions live: at most lifetime_s from their first full
 * handshake, never past the client certificate's notAfter, and re-judged
 * under the current trust on every resumption. trust is the listener's
 * current client trust (NULL for one-way); whoever swaps it keeps a
 * reference.
 */
struct tls_ocsp_cache;
struct tls_session_policy {
    uint64_t lifetime_s;
    struct tls_trust *trust;
    /* OCSP for client certificates (mutual listeners): the client CA's
     * mode, its responder override (borrowed from the config; NULL: each
     * certificate's AIA), and the worker's cache (borrowed; NULL until a
     * worker sets it: then nothing is asked). */
    enum cfg_client_ocsp ocsp_mode;
    const char *ocsp_responder;
    struct tls_ocsp_cache *ocsp_cache;
};

/* Installs the ticket callbacks that keep and check the facts on ctx;
 * p must outlive ctx. */
TG_MUST_USE enum tg_status tls_session_use(SSL_CTX *ctx, struct tls_session_policy *p);
/* The policy tls_session_use put on ctx, or NULL. */
const struct tls_session_policy *tls_session_policy_of(SSL_CTX *ctx);

/* ---- tollgate as a TLS client (client.c): backend re-encryption and
 * https health checks ---- */

/*
 * The client context of target group g (g->tls enabled), the same for
 * every connection tollgate makes to its targets: TLS 1.2 or 1.3, no
 * renegotiation or compression, a bare EOF read as the end, chain
 * verification pinned at TLS_VERIFY_AUTH_LEVEL. With g->tls.verify the
 * server's chain is checked against the trust anchors of g->tls.ca (loaded
 * with tls_load_client_ca; every certificate of the chain checked against
 * its CRLs when the entry has any) or the system store; without it any
 * certificate is accepted. No session cache: a caller that resumes adds
 * its own. Returns the context (owned by the caller) or NULL with the
 * reason in err. Reads files, so it can block.
 */
SSL_CTX *tls_client_ctx_new(const struct config *cfg, const struct cfg_target_group *g, char *err,
                            size_t err_len);

/* Sets the name ssl expects of the server: SNI (not for an IP address
 * literal) and, with verify, the host name or IP address the certificate
 * must match. False when OpenSSL refuses it. */
bool tls_client_set_peer(SSL *ssl, const char *name, bool verify);

/* The leaf certificate the server offered on an SSL of a context made by
 * tls_client_ctx_new, also when the handshake refused it; NULL when none
 * came. Borrowed from ssl. */
X509 *tls_client_offered_cert(SSL *ssl);

/*
 * The reason code of a failed client handshake: name_mismatch for a host
 * name or IP address the certificate does not carry, else the code
 * tls_reason_from_verify gives a verify_result other than X509_V_OK, else
 * the code of OpenSSL error err (tls_reason_from_ssl_error:
 * protocol_version, no_shared_cipher), else "tls_error". Never NULL.
 */
const char *tls_client_reason(long verify_result, unsigned long err);

/*
 * Why a client handshake on ssl failed: tls_client_reason of its verify
 * result (only when it verifies the server) and of the OpenSSL error queue
 * (consumed). detail gets the words for the log: OpenSSL's text of the
 * verify result or of the first error, or what happened when there is
 * none (the server closed the connection, or the socket failed).
 */
const char *tls_client_failure(SSL *ssl, char *detail, size_t detail_len);

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
 * Builds the server side of one listener: for each of its sites (the
 * listener's own settings and its sni entries; the ClientHello's SNI
 * picks one before anything else is decided) one SSL_CTX per certificate
 * set (SNI picks among them by SAN), the policy, client verification for
 * a mutual site with its allow-list, the shared session-ticket keys, a
 * session id context bound to the site and its trust configuration, and
 * OCSP stapling from ocsp (one slot per cfg->certificates entry; NULL:
 * none). Errors go to d. The returned object is owned by the caller
 * (tls_server_free).
 */
TG_MUST_USE enum tg_status tls_server_new(const struct config *cfg, const struct cfg_listener *l,
                                          const struct ticket_shm *tickets,
                                          const struct ocsp_shm *ocsp, struct tls_server **out,
                                          struct diag *d);
void tls_server_free(struct tls_server *s);

/* The sites of the listener (struct cfg_site): 1 + its sni entries. */
size_t tls_server_n_sites(const struct tls_server *s);

/* A site's client trust (NULL for one-way or out of range). */
struct tls_trust *tls_server_trust(const struct tls_server *s, size_t site);

/* Verifies new handshakes of a mutual site under trust (a reference is
 * taken) and judges resumptions under it; the old trust is released once
 * nothing uses it. Connections already established are the caller's to
 * judge again (tls_facts_of, tls_trust_recheck). */
TG_MUST_USE enum tg_status tls_server_set_trust(struct tls_server *s, size_t site,
                                                struct tls_trust *trust);

/*
 * Looks at the allow file of a site that has its own (stat only, unless
 * it changed since it was loaded): TG_E_AGAIN when nothing changed (or the
 * change was already refused); TG_OK when the new list is in use; else
 * the failed load's status, with its first error in err (once per change;
 * the previous list stays).
 */
TG_MUST_USE enum tg_status tls_server_allow_poll(struct tls_server *s, size_t site, char *err,
                                                 size_t err_len);

/* The site whose allow-list judges site's clients (itself or the
 * listener's own): false when it has none. */
bool tls_server_allow_owner(const struct tls_server *s, size_t site, size_t *owner);

/*
 * The host_name of a ClientHello's server_name extension (p, len: the
 * extension's body, RFC 6066 §3: a u16 list length, then entries of a u8
 * type, a u16 length and the name) into dst, NUL-terminated. Bounded:
 * false when the list length is not the rest of the body, an entry runs
 * past it, no entry is a host_name, or the host_name is empty, longer than
 * 255 bytes (or cap - 1) or holds a NUL (OpenSSL refuses such a hello
 * after this). The first host_name counts.
 */
bool tls_sni_from_hello(const unsigned char *p, size_t len, char *dst, size_t cap);

/* The site an SSL of a tls_server was judged under (the SNI of its
 * ClientHello picked it); 0 for the listener's own. */
size_t tls_site_of(SSL *ssl);

/* Whether the allow-list of the site of ctx (a context of a tls_server)
 * lets leaf in: true when the site has none. */
bool tls_site_allows(SSL_CTX *ctx, X509 *leaf);

/* Makes the listener's verify callback and resumption judge consult cache
 * (borrowed; it must outlive s's handshakes) when its client CA has ocsp
 * on. Called by each worker for its own cache. */
void tls_server_set_ocsp_cache(struct tls_server *s, struct tls_ocsp_cache *cache);

/* A new server-side SSL for an accepted fd, or NULL when out of memory.
 * On a listener with client OCSP on, the SSL runs its handshake as an
 * OpenSSL async job (SSL_MODE_ASYNC) so that the verify callback can
 * suspend it while the status is looked up (tls_handshake: TLS_WANT_OCSP). */
SSL *tls_server_ssl_new(struct tls_server *s, int fd);

/* What is known of a client certificate: the responder said good or
 * revoked, or no usable answer came (no URL, timeout, HTTP error, a
 * response that fails tls_ocsp_check, status unknown). */
enum tls_ocsp_verdict { TLS_OCSP_V_GOOD, TLS_OCSP_V_REVOKED, TLS_OCSP_V_UNAVAILABLE };

/* ---- per-connection verdicts (verify.c) ---- */

/* What we learned about the peer's certificate during a handshake. Stored
 * in the SSL's ex_data by the verify callback; owned by the connection. */
struct tls_verdict {
    int first_error;      /* first X509_V_ERR_* seen in the chain; X509_V_OK if none */
    int error_depth;      /* depth of that error */
    const char *sni_fail; /* set to "unknown_sni" when strict SNI refused */
    X509 *offered;        /* owned reference: the leaf the client offered, if any */
    /* A session the client offered and tollgate refused, and why (a reason
     * of tls_trust_recheck, or session_expired, session_incomplete): the
     * handshake went on as a full one. NULL when none was refused. */
    const char *resume_refused;
    int64_t resumed_not_after;           /* a resumed session's client chain notAfter; 0 = none */
    uint8_t verified_ca[TLS_DIGEST_LEN]; /* the trust's CA digest when the chain was verified */
    uint64_t judged_under; /* tls_trust_serial of the trust that verified the chain or judged
                            * the resumed session; 0 = none */
    /* OCSP for the client's leaf. The verify callback, on a cache miss,
     * sets ocsp_leaf and ocsp_issuer (owned references) and suspends the
     * handshake; whoever looks the status up sets ocsp_result (or
     * ocsp_abort, to end a handshake that nobody waits for any more) and
     * runs the handshake again. */
    X509 *ocsp_leaf, *ocsp_issuer;
    const char *ocsp_responder; /* the listener's override, borrowed; NULL: the AIA */
    bool is_ocsp_waiting;       /* suspended until ocsp_result is set */
    bool is_ocsp_abort;
    bool is_ocsp_done; /* the leaf was judged once */
    enum tls_ocsp_verdict ocsp_result;
    /* A reference on the trust whose store the suspended verification
     * uses, so that a trust swapped meanwhile outlives it. */
    struct tls_trust *ocsp_trust;
    size_t site_chosen; /* 1 + the site the first ClientHello picked; 0 before */
    uint64_t sni_hash;  /* tls_name_hash of the ClientHello's SNI; 0 without one */
};

/* A hash of a server name that ignores ASCII case and one trailing dot
 * (never 0): whether a resumed TLS 1.2 session was made for the name the
 * ClientHello asks for. */
uint64_t tls_name_hash(const char *name, size_t len);

/* The verify callback of mutual sites: records the first verification
 * error in the connection's verdict, refuses a leaf whose facts exceed the
 * limits below or that its site's allow-list does not have, and asks
 * about its OCSP status (suspending the handshake on a cache miss). With
 * client_auth optional the handshake goes on and the verdict travels to
 * the backend instead. */
int tls_verify_client_cb(int ok, X509_STORE_CTX *xs);

/* The verdict tls_verdict_attach put on ssl, or NULL. */
struct tls_verdict *tls_verdict_of(SSL *ssl);

/* The earliest notAfter of an established connection's verified client
 * chain (unix seconds), or 0 when it has no verified client certificate. */
int64_t tls_client_not_after(SSL *ssl, const struct tls_verdict *v);

/* Clears v and attaches it to ssl so that the verify and SNI callbacks can
 * fill it. Release with tls_verdict_fini. */
void tls_verdict_attach(SSL *ssl, struct tls_verdict *v);
void tls_verdict_fini(struct tls_verdict *v);
/* Once the handshake ended (either way): drops what only a handshake
 * suspended for OCSP needed. */
void tls_verdict_handshake_done(struct tls_verdict *v);

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

/* The reason code of an OpenSSL error of the SSL library that has one of
 * its own (protocol_version, no_shared_cipher, no_client_cert), else NULL. */
const char *tls_reason_from_ssl_error(unsigned long err);

/*
 * The reason a handshake failed, from the verdict, the OpenSSL error queue
 * (consumed) and the SSL itself. Never NULL; "tls_error" when nothing more
 * precise is known. detail gets OpenSSL's own text for the log.
 */
const char *tls_reason_from_handshake(SSL *ssl, const struct tls_verdict *v, char *detail,
                                      size_t detail_len);

/* ---- non-blocking I/O (io.c): every SSL_read/SSL_write of the proxied
 * connections, client and backend side (the health checks' own client and
 * probe drive OpenSSL themselves) ---- */

/* TLS_WANT_OCSP: the handshake is suspended in the verify callback until
 * the client certificate's OCSP status is known (struct tls_verdict);
 * nothing on the socket moves it on. */
enum tls_want { TLS_WANT_NONE, TLS_WANT_READ, TLS_WANT_WRITE, TLS_WANT_OCSP };

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
/* The OCSP status of a client certificate could not be learned under
 * ocsp: require. */
#define TLS_V_ERR_OCSP_UNAVAILABLE 0x74670003 /* reason "ocsp_unavailable" */
/* A verified client certificate that matches no entry of the allow-list
 * its handshake is judged under. */
#define TLS_V_ERR_NOT_ALLOWED 0x74670004 /* reason "not_allowed" */

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

/* The first CN of cert's subject, escaped as client_cn (dst_len >= 1;
 * "" when there is none). Returns the length of the whole text: dst was
 * cut when it is >= dst_len. */
size_t tls_cert_cn(X509 *cert, char *dst, size_t dst_len);

/* SHA-256 of cert's DER (X-Client-Fingerprint) into md. False when it
 * cannot be computed. */
bool tls_cert_sha256(X509 *cert, uint8_t md[32]);

/* SHA-256 of cert's DER SubjectPublicKeyInfo (the key pin of RFC 7469
 * §2.4) into md. False when it cannot be computed. */
bool tls_cert_spki_sha256(X509 *cert, uint8_t md[32]);

/* The magnitude of cert's serial number, big-endian without leading zero
 * octets (zero is one 0x00), borrowed from cert. False for a negative
 * serial and one over TLS_SERIAL_MAX octets. */
bool tls_cert_serial(X509 *cert, const uint8_t **mag, size_t *len);

/* The subjectAltName entries read from one certificate; later ones are
 * ignored. */
#define TLS_SAN_MAX 1024

/* cert's subjectAltName, decoded (owned by the caller: GENERAL_NAMES_free),
 * or NULL when it has none or it does not decode. */
GENERAL_NAMES *tls_cert_sans(X509 *cert);

/*
 * Entry i of sans when it is of type and of the shape identity is read
 * from: GEN_DNS, GEN_EMAIL and GEN_URI text of printable ASCII (0x20 to
 * 0x7e: an entry with a NUL, a control character or any other byte is
 * never read), GEN_IPADD 4 or 16 octets. *data (borrowed from sans) and
 * *len get its bytes. False otherwise, and for i >= TLS_SAN_MAX.
 */
bool tls_san_value(const GENERAL_NAMES *sans, int i, int type, const uint8_t **data, size_t *len);

/* ---- allow-lists on verified client certificates (allow.c) ---- */

/* True when leaf matches every term of r (docs/CONFIG.md, "Allow-lists"):
 * each term against the facts of leaf that tls_cert_facts forwards (first
 * CN, issuer, serial, fingerprint) or its subjectAltName entries (any one
 * entry of the kind matches; an entry holding a NUL or a control character
 * never does) or the SHA-256 of its SubjectPublicKeyInfo. Bounded whatever
 * the certificate holds. */
bool tls_allow_rule_matches(const struct cfg_allow_rule *r, X509 *leaf);

/* True when leaf matches one of a's rules; false for an empty list. */
bool tls_allow_matches(const struct cfg_allow *a, X509 *leaf);

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

/* tls_ocsp_check, and with TLS_OCSP_NO_NEXT_UPDATE_OK a response without
 * nextUpdate passes too (out->next_update 0): RFC 6960 §4.2.2.1 allows
 * one, and a cache can believe it briefly where a staple could not. */
#define TLS_OCSP_NO_NEXT_UPDATE_OK 0x1u
TG_MUST_USE enum tg_status tls_ocsp_check_ex(const uint8_t *der, size_t len, X509 *leaf,
                                             X509 *issuer, int64_t now, unsigned flags,
                                             struct tls_ocsp_facts *out, const char **reason,
                                             char *detail, size_t detail_len);

/* ---- OCSP for client certificates: the per-worker cache (ocsp_cache.c) ---- */

/* How long a response without nextUpdate is believed, and a failure
 * (so that a responder outage costs one fetch per certificate per
 * TLS_OCSP_CACHE_FAILURE_TTL, not one per handshake). Seconds. */
#define TLS_OCSP_CACHE_MAX_AGE     300
#define TLS_OCSP_CACHE_FAILURE_TTL 30
/* Entries per worker; a full cache drops the oldest. */
#define TLS_OCSP_CACHE_ENTRIES 16384

/* A cache of cap entries (NULL when out of memory or cap is 0). */
struct tls_ocsp_cache *tls_ocsp_cache_new(size_t cap);
void tls_ocsp_cache_free(struct tls_ocsp_cache *c);
/* The verdict for key at unix time now: false when there is none or it
 * expired (an expired entry is dropped). */
bool tls_ocsp_cache_get(struct tls_ocsp_cache *c, const struct tls_cert_ref *key, int64_t now,
                        enum tls_ocsp_verdict *out);
/* Keeps verdict for key until expires_at, replacing what was there; when
 * the cache is full the entry written longest ago goes. */
void tls_ocsp_cache_put(struct tls_ocsp_cache *c, const struct tls_cert_ref *key,
                        enum tls_ocsp_verdict verdict, int64_t expires_at);
size_t tls_ocsp_cache_len(const struct tls_ocsp_cache *c);
/* Until when a checked response f is believed: its nextUpdate, or
 * TLS_OCSP_CACHE_MAX_AGE from now without one. */
int64_t tls_ocsp_cache_until(const struct tls_ocsp_facts *f, int64_t now);

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
