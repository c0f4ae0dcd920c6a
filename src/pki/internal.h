/*
 * Shared by the certificate tools of src/pki (inspect, verify, match,
 * convert, probe); not part of the module's public interface (pki.h).
 */
#ifndef TG_PKI_INTERNAL_H
#define TG_PKI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "core/status.h"

#define PKI_WARN_DAYS    30   /* "expiring soon" threshold, as tollgate check uses */
#define PKI_PASSWORD_MAX 1024 /* as load.c accepts */
#define PKI_NAME_MAX     512  /* a formatted subject or issuer */
#define PKI_FP_MAX       100  /* SHA-256 as 32 colon-separated hex pairs */
#define PKI_CHAIN_MAX    256  /* certificates of one file that are ordered into a chain */

/* Matches "--name VALUE" and "--name=VALUE" at argv[*i]: 0 when argv[*i] is
 * another argument, 1 with *value set (and *i advanced past a separate
 * value), -1 when the value is missing. */
int pki_opt(int argc, char **argv, int *i, const char *name, const char **value);

/* Copies n bytes of untrusted text into dst, writing bytes outside printable
 * ASCII as \xNN so that neither a terminal nor a JSON encoder is confused. */
void pki_sanitize(const unsigned char *src, size_t n, char *dst, size_t dst_len);

/* A JSON string of s; s is escaped as by pki_sanitize when not valid UTF-8.
 * NULL only when out of memory. */
json_t *pki_json_str(const char *s);

/* Sets obj[key] to a string (pki_json_str) or to JSON null when s is NULL. */
void pki_json_set_str(json_t *obj, const char *key, const char *s);

/* A string field of obj, or def when absent or not a string. */
const char *pki_json_get_str(const json_t *obj, const char *key, const char *def);

void pki_subject(const X509 *x, char *dst, size_t dst_len);
void pki_issuer(const X509 *x, char *dst, size_t dst_len);

/* SHA-256 of the certificate, "AB:CD:..." (upper case, as openssl prints). */
void pki_fingerprint(const X509 *x, char *dst, size_t dst_len);

/* SHA-256 of a public key's SubjectPublicKeyInfo, lower-case hex: the same
 * for a certificate and for its private key. */
void pki_spki_fingerprint(const EVP_PKEY *k, char *dst, size_t dst_len);

/* "EC P-256", "RSA 2048", "Ed25519"...; *bits gets the size in bits and
 * *is_weak whether it is below today's minimum (RSA/DSA < 2048, EC < 224). */
void pki_key_describe(const EVP_PKEY *k, char *dst, size_t dst_len, int *bits, bool *is_weak);

/* Whole days from now to t (negative when t is past). */
long pki_days_until(const ASN1_TIME *t, time_t now);

/* The certificate's names as "DNS:localhost", "IP:127.0.0.1", ... */
json_t *pki_sans_json(const X509 *x);

/* Joins the strings of a JSON array with sep into dst ("" when empty). */
void pki_json_join(const json_t *arr, const char *sep, char *dst, size_t dst_len);

/* Subject, issuer, validity, key and fingerprint of a certificate: what a
 * chain listing shows. Owned by the caller; NULL when out of memory. */
json_t *pki_cert_brief(const X509 *x, time_t now);

/* Parses "2026-01-31", "2026-01-31T12:00:00Z", "2026-01-31 12:00:00" (UTC)
 * or "@1769860800"; false when s is none of these. */
bool pki_parse_time(const char *s, time_t *out);

/* The certificates of one file, ordered as a chain. */
struct pki_chain {
    int *order;       /* owned; indices into the stack: leaf first, each followed by its issuer */
    int n;            /* length of order */
    int *rest;        /* owned; certificates not in the chain, in file order */
    int n_rest;       /* length of rest */
    int key_match;    /* index of the certificate the key belongs to; -1 when none or no key */
    bool is_in_order; /* the file already lists the chain leaf first */
    bool is_bundle;   /* CA certificates only, not one chain (a trust bundle) */
};

/* Orders certs: the leaf is the certificate key belongs to (when key is
 * given and matches one), else the first one that issued none of the
 * others; then its issuers as found in the file. TG_E_NOMEM or TG_OK. */
TG_MUST_USE enum tg_status pki_chain_build(STACK_OF(X509) *certs, const EVP_PKEY *key,
                                           struct pki_chain *out);
void pki_chain_fini(struct pki_chain *c);

/*
 * Reads the password of password_file into dst (when given). Then reads
 * path with tls_read_file; when that fails for want of a password and none
 * was given and stdin is a terminal, asks for one and tries again. Errors
 * name the file and what to do. *certs and *key as for tls_read_file.
 */
TG_MUST_USE enum tg_status pki_read(const char *path, const char *password_file,
                                    STACK_OF(X509) **certs, EVP_PKEY **key, char *err,
                                    size_t err_len);

/* A short name of the file's format: "PEM", "PKCS#12", "PKCS#7 (DER)",
 * "DER certificate", "DER private key" or "unknown". */
const char *pki_file_format(const char *path);

/* Prints v as JSON (2-space indent) on stdout with a final newline. */
void pki_json_print(const json_t *v);

/* Client-side checks of a certificate chain (verify.c), shared by `cert
 * verify` and `probe`. */
struct pki_check_opts {
    X509_STORE *trust;        /* borrowed: the trust anchors */
    const char *trust_label;  /* e.g. "ca-bundle.crt" or "the system trust store" */
    STACK_OF(X509_CRL) *crls; /* borrowed; NULL: revocation is not checked */
    const char *name;         /* DNS name or IP address; NULL: not checked */
    const char *name_flag;    /* the option that sets name, for messages ("--host") */
    int purpose;              /* X509_PURPOSE_SSL_SERVER, _SSL_CLIENT or 0: not checked */
    time_t at;                /* the time to check at; 0: now */
};

/*
 * Checks leaf (with the untrusted certificates that came with it) as a TLS
 * peer would: dates, revocation, trust, purpose, name, in that order (each
 * skipped when leaf is NULL).
 * Appends one object per check to checks: {"check", "verdict" ("pass",
 * "fail" or "skip"), "reason" (a reason code of docs/OPERATIONS.md, or null), "detail"}. Sets
 * *chain (when not NULL) to the chain as built, as a JSON array of
 * pki_cert_brief. Returns true when no check failed; *reason then is NULL,
 * else the reason of the first failed check.
 */
bool pki_check_chain(X509 *leaf, STACK_OF(X509) *untrusted, const struct pki_check_opts *o,
                     json_t *checks, json_t **chain, const char **reason);

/* Prints the check objects of a JSON array, one per line, indented. */
void pki_checks_print(const json_t *checks, const char *indent);

/* Reads CRL files (each PEM or DER) into one stack; errors name the file. */
TG_MUST_USE enum tg_status pki_read_crls(const char *const *paths, size_t n,
                                         STACK_OF(X509_CRL) **out, char *err, size_t err_len);

/* A trust store of the certificates of path, or of the system's default
 * locations when path is NULL; *label describes it. */
TG_MUST_USE enum tg_status pki_trust_store(const char *path, X509_STORE **out, char *label,
                                           size_t label_len, char *err, size_t err_len);

/* Entry points of each `tollgate cert` subcommand (argv[0] is its name). */
int pki_cmd_inspect(int argc, char **argv);
int pki_cmd_verify(int argc, char **argv);
int pki_cmd_match(int argc, char **argv);
int pki_cmd_convert(int argc, char **argv);

/* ---- CRLs of the development PKI (crl.c), for pki init and pki revoke ---- */

#define PKI_CRL_DAYS       30 /* how long a CRL of pki init or pki revoke is valid */
#define PKI_CRL_DAYS_MAX   3650
#define PKI_CRL_NUMBER_MAX 20 /* octets of a cRLNumber (RFC 5280 §5.2.3) */

/* One CRL to sign. */
struct pki_crl_spec {
    X509 *issuer;                    /* borrowed: the CA whose CRL it is */
    EVP_PKEY *key;                   /* borrowed: the CA's key */
    STACK_OF(X509_REVOKED) *entries; /* borrowed, each entry copied; NULL: none */
    const BIGNUM *number;            /* borrowed: the cRLNumber */
    time_t now;
    long days; /* valid this long from its lastUpdate */
};

/*
 * A revoked entry: serial, revocation date when, and the reason code
 * (CRL_REASON_*; the extension is left out for 0, unspecified, and for -1).
 * Owned by the caller; NULL when out of memory.
 */
X509_REVOKED *pki_crl_entry(const ASN1_INTEGER *serial, const ASN1_TIME *when, int reason);

/*
 * A v2 CRL as s says, signed with SHA-256: lastUpdate an hour before now
 * (a peer whose clock is a little behind accepts it, as the certificates of
 * pki init), nextUpdate days after that, a cRLNumber and the authority key
 * identifier. Owned by the caller; NULL on failure (OpenSSL's error queued).
 */
X509_CRL *pki_crl_make(const struct pki_crl_spec *s);

/* ---- tollgate probe (probe.c, probe_util.c, probe_cmd.c) ---- */

struct pki_probe_opts;

int64_t pki_now_ms(void); /* CLOCK_MONOTONIC */

/* Waits until fd is ready for events or the deadline (pki_now_ms) passes:
 * 1, 0 on timeout, -1 on error. */
int pki_wait_fd(int fd, short events, int64_t deadline);

/* "host:port" or "[v6]:port" into host and port; false when malformed. */
bool pki_split_target(const char *target, char *host, size_t host_len, char *port, size_t port_len);

/*
 * Connects to host:port (every address in turn) within timeout_ms and
 * returns the non-blocking socket; addr gets the address used, msg what
 * happened. On failure returns -1 with *reason one of resolve_failed,
 * connection_refused, connect_timeout, connect_failed.
 */
int pki_connect(const char *host, const char *port, int timeout_ms, char *addr, size_t addr_len,
                const char **reason, char *msg, size_t msg_len);

/* Our client certificate for probe. */
struct pki_client_cert {
    X509 *leaf;            /* owned */
    STACK_OF(X509) *chain; /* owned: its issuers, in order */
    EVP_PKEY *key;         /* owned */
};

/* Loads o->cert (and o->key) with any format and password; errors start
 * with the option at fault. */
TG_MUST_USE enum tg_status pki_client_cert_load(const struct pki_probe_opts *o,
                                                struct pki_client_cert *c, char *err,
                                                size_t err_len);
void pki_client_cert_fini(struct pki_client_cert *c);

/* 1 when a certificate of c expired, -1 when one is not yet valid, else 0. */
int pki_client_cert_dates(const struct pki_client_cert *c);

/* The reason code of a fatal alert (RFC 8446 §6.2) from a server, and
 * its meaning; refined with what we sent and know of our certificate. */
const char *pki_alert_reason(bool saw_request, int n_sent, const struct pki_client_cert *c,
                             int desc, const char **meaning);

/* The RFC name of a TLS alert description ("certificate_required"). */
const char *pki_alert_name(int desc);

/* Prints a probe result (pki_probe) for a person. */
void pki_probe_print(const json_t *res);

/*
 * The OCSP response ssl's server stapled, checked against the server's leaf
 * (first of peer) and its issuer (from peer, else from trust) at now:
 * {"requested", "stapled", "bytes", "status", "this_update", "next_update",
 * "next_update_in_seconds", "verdict" ("none": nothing stapled, "pass",
 * "fail", "skip": the issuer is unknown), "reason" (cert_revoked,
 * ocsp_unknown, or "ocsp_" and a tls_ocsp_check reason), "detail"}.
 */
json_t *pki_probe_ocsp(SSL *ssl, STACK_OF(X509) *peer, X509_STORE *trust, time_t now);

/* Prints the "OCSP staple:" section of the report. */
void pki_probe_ocsp_print(const json_t *ocsp);

#endif
