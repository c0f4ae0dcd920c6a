#ifndef TG_PKI_PKI_H
#define TG_PKI_PKI_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <jansson.h>

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
 *   p12-password.txt                  the password of every .p12: 32 random hex
 *                                     digits, new each run, mode 0600
 * Server SANs: localhost, 127.0.0.1, ::1 and hosts. Keys are written 0600.
 * On failure err gets the reason and the status is returned.
 */
TG_MUST_USE enum tg_status pki_init(const struct pki_init_opts *o, char *err, size_t err_len);

/* tollgate pki revoke DIR NAME|CERTFILE [--reason R] [--crl-days N] */
int pki_cmd_revoke(int argc, char **argv);

#define PKI_SERIAL_TEXT_MAX (2 * 20 + 2) /* RFC 5280 §4.1.2.2: 20 octets, in hex, a sign */

struct pki_revoke_opts {
    const char *dir;  /* as pki init wrote it */
    const char *cert; /* NAME: dir/NAME.crt; with a '/' (or when dir/NAME.crt does not
                         exist but the file NAME does): the certificate's file */
    int reason;       /* CRL_REASON_*; 0 (unspecified): the entry has no reason */
    long crl_days;    /* validity of the new CRLs; 0: as pki init (30 days) */
};

struct pki_revoke_result {
    char cert[4096];                  /* the file read */
    char serial[PKI_SERIAL_TEXT_MAX]; /* lower-case hex, as the event log writes it */
    char subject[512];
    const char *ca;          /* "intermediate" or "root": whose CRL lists it */
    bool is_already_revoked; /* nothing was written */
    char revoked_at[64];     /* is_already_revoked: the entry's revocation date */
    char crl_number[64];     /* decimal: the new one (or the current one) */
    char next_update[64];    /* of the new CRLs */
    int n_revoked;           /* entries on that CA's CRL now */
};

/*
 * Adds the serial of o->cert to the CRL of its issuer (dir's intermediate or
 * root CA: issuer name and signature) in dir/clients.crl, keeping every entry
 * the file lists, and writes the file again atomically (0644): the
 * intermediate's CRL then the root's, both with the next cRLNumber (the
 * highest in the file plus one), made by pki_crl_make and signed with the
 * CA keys of dir. A serial already listed is left alone
 * (res->is_already_revoked, TG_OK, nothing written). TG_E_CONFIG with err
 * when a CA file or key is missing or wrong, the certificate is not of
 * this PKI, or dir/clients.crl holds what cannot be kept (a CRL of another
 * issuer, a bad signature); the file is then untouched. Blocks on file I/O
 * and on another pki revoke of the same dir.
 */
TG_MUST_USE enum tg_status pki_revoke(const struct pki_revoke_opts *o,
                                      struct pki_revoke_result *res, char *err, size_t err_len);

/* ---- certificate tooling (inspect.c, verify.c, match.c, convert.c, probe.c) ---- */

/* tollgate trust diff -c FILE --client-ca NAME --ca FILE [--crl FILE]
 * [--allow-file FILE] [--format text|json]; argv[0] is "trust". Exit 0
 * when nobody recorded would be refused, 1 when somebody would. */
int pki_cmd_trust(int argc, char **argv);

/* tollgate cert inspect|verify|match|convert ...; argv[0] is "cert". */
int pki_cmd_cert(int argc, char **argv);

/* tollgate probe HOST:PORT [--sni NAME] [--ca CA] [--cert C --key K] [--crl CRL]
 * [--tls1.2|--tls1.3] [--json]; argv[0] is "probe". */
int pki_cmd_probe(int argc, char **argv);

/*
 * Everything about the certificates and key of one file (PEM, DER, PKCS#7,
 * PKCS#12; password from password_file, or asked on a terminal), as of now:
 *   {"file", "format", "certificates": [{"index", "subject", "issuer",
 *    "serial", "sans", "not_before", "not_after", "days_left", "status",
 *    "key", "signature_algorithm", "basic_constraints", "key_usage",
 *    "extended_key_usage", "sha256_fingerprint", "crl_distribution_points",
 *    "ocsp", "self_signed"}...], "key": {...} or null, "chain": [indices,
 *    leaf first], "warnings": [{"code", "message"}...], "notes": [...]}
 * Warning codes: out_of_order, missing_intermediate, extra_certificates,
 * key_mismatch, expired, not_yet_valid, expiring_soon, weak_key,
 * weak_signature. *out is owned by the caller. TG_E_CONFIG with the reason
 * in err when the file cannot be read.
 */
TG_MUST_USE enum tg_status pki_inspect(const char *path, const char *password_file, time_t now,
                                       json_t **out, char *err, size_t err_len);

enum pki_purpose { PKI_PURPOSE_NONE, PKI_PURPOSE_SERVER, PKI_PURPOSE_CLIENT };

struct pki_verify_opts {
    const char *cert;          /* leaf (+ chain) in any format */
    const char *password_file; /* NULL: none */
    const char *ca;            /* trust anchors; NULL: the system trust store */
    const char *const *crls;   /* CRL files; n_crls == 0: revocation not checked */
    size_t n_crls;
    const char *host; /* DNS name or IP address; NULL: not checked */
    enum pki_purpose purpose;
    time_t at; /* 0: now */
};

/*
 * Runs the checks a TLS peer makes on o->cert, one by one:
 *   {"file", "certificate": brief, "chain": [brief...], "trust", "at",
 *    "checks": [{"check", "verdict", "reason", "detail"}...], "ok", "reason"}
 * with checks dates, revocation, trust, purpose, name and reasons from
 * docs/OPERATIONS.md (plus name_mismatch). TG_OK with *out set whatever the
 * verdict; TG_E_CONFIG with err when the certificate cannot be read (err
 * starts with "cert:"), or --ca / --crl cannot (err starts with the option).
 */
TG_MUST_USE enum tg_status pki_verify(const struct pki_verify_opts *o, json_t **out, char *err,
                                      size_t err_len);

/*
 * Whether the private key of key_path belongs to the (first matching)
 * certificate of cert_path: {"cert", "key", "certificate": brief,
 * "key_type", "key_spki_sha256", "cert_spki_sha256", "match", "matched_index",
 * "message"}. TG_E_CONFIG with err when a file cannot be read or holds no
 * certificate / no key.
 */
TG_MUST_USE enum tg_status pki_match(const char *cert_path, const char *key_path,
                                     const char *password_file, json_t **out, char *err,
                                     size_t err_len);

struct pki_convert_opts {
    const char *in;
    const char *out;           /* certificates as PEM, leaf first, then each issuer */
    const char *key_out;       /* NULL: OUT with .pem/.crt replaced by .key */
    const char *password_file; /* NULL: none (or asked on a terminal) */
};

/*
 * Converts o->in (DER, PKCS#7, PKCS#12 incl. legacy, PEM with an encrypted
 * key) to PEM: o->out gets the chain leaf first (0644), the key goes
 * unencrypted to its own file (0600). Files are replaced atomically.
 * *report: {"in", "format", "out", "key_out", "certificates": [brief...],
 * "notes": [...]}. TG_E_CONFIG with err on unreadable input, a key that
 * matches no certificate, or an output that cannot be written.
 */
TG_MUST_USE enum tg_status pki_convert(const struct pki_convert_opts *o, json_t **report, char *err,
                                       size_t err_len);

struct pki_probe_opts {
    const char *target;        /* HOST:PORT or [IPv6]:PORT */
    const char *sni;           /* NULL: the host when it is a name */
    const char *ca;            /* NULL: the system trust store */
    const char *cert;          /* client certificate; NULL: none */
    const char *key;           /* NULL: from the cert file */
    const char *password_file; /* for cert / key */
    const char *const *crls;
    size_t n_crls;
    int min_version;          /* TLS1_2_VERSION ...; 0: library default */
    int max_version;          /* 0: library default */
    int connect_timeout_ms;   /* 0: 3000 */
    int handshake_timeout_ms; /* 0: 5000 */
    int read_timeout_ms;      /* 0: 1000; post-handshake wait for a TLS 1.3 refusal */
};

/*
 * Connects to o->target as a TLS client and records every step (blocking,
 * bounded by the timeouts). *out: {"target", "address", "sni",
 * "client_hello", "steps", "server_hello", "server_chain", "checks",
 * "certificate_request", "client_certificate", "outcome": {"accepted",
 * "stage", "reason", "alert", "meaning"}, "ok"}. TG_OK with *out set
 * whatever happened on the wire; TG_E_CONFIG with err when an input file
 * or the target cannot be used (usage errors).
 */
TG_MUST_USE enum tg_status pki_probe(const struct pki_probe_opts *o, json_t **out, char *err,
                                     size_t err_len);

#endif
