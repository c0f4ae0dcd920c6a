#ifndef TG_CONFIG_CONFIG_H
#define TG_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/diag.h"
#include "core/log.h"
#include "core/status.h"
#include "core/ticket.h"
#include "net/net.h"

/*
 * The loaded configuration: plain structs, read-only once loaded. The
 * struct config owns every string and array below it; pointers named
 * "resolved" are borrowed references to other parts of the same config.
 * See docs/CONFIG.md for every key, its default and an example.
 */

struct cfg_pos {
    int line; /* 1-based line of the key in the file; 0 when defaulted */
    int col;  /* 1-based column */
};

enum cfg_listener_proto { CFG_PROTO_TCP_SSL, CFG_PROTO_HTTPS, CFG_PROTO_HTTP };
enum cfg_tls_mode { CFG_TLS_ONE_WAY, CFG_TLS_MUTUAL };
enum cfg_client_auth { CFG_CLIENT_AUTH_REQUIRED, CFG_CLIENT_AUTH_OPTIONAL };
enum cfg_tls_policy { CFG_POLICY_INTERMEDIATE, CFG_POLICY_MODERN, CFG_POLICY_CUSTOM };
enum cfg_proxy_proto { CFG_PROXY_NONE, CFG_PROXY_V1, CFG_PROXY_V2 };
/* What an https listener forwards of a client certificate: full (RFC 9440
 * Client-Cert and Client-Cert-Chain, and the X-Client-* facts), leaf (no
 * chain), hash (the facts only; X-Client-Fingerprint names the
 * certificate), off (X-Client-Verify alone). */
enum cfg_cert_header {
    CFG_CERT_HEADER_FULL,
    CFG_CERT_HEADER_LEAF,
    CFG_CERT_HEADER_HASH,
    CFG_CERT_HEADER_OFF
};
/* on_revoke, on_expiry: what happens to an established connection whose
 * client certificate stops being valid. */
enum cfg_on_invalid { CFG_ON_INVALID_CLOSE, CFG_ON_INVALID_KEEP };
enum cfg_lb_algo { CFG_LB_WRR, CFG_LB_LEAST_CONN, CFG_LB_IP_HASH };
enum cfg_hc_type { CFG_HC_NONE, CFG_HC_TCP, CFG_HC_HTTP, CFG_HC_HTTPS };
enum cfg_sticky_type { CFG_STICKY_NONE, CFG_STICKY_SOURCE_IP, CFG_STICKY_COOKIE };
enum cfg_all_down { CFG_ALL_DOWN_FAIL_OPEN, CFG_ALL_DOWN_REJECT };

/* certificates.NAME.ocsp: whether the master obtains an OCSP response that
 * workers staple (auto: when the certificate names an OCSP responder or
 * ocsp_file is set), or never (off). */
enum cfg_ocsp { CFG_OCSP_AUTO, CFG_OCSP_OFF };

/* certificates.NAME: { cert, key, password_file, ocsp, ocsp_file } */
struct cfg_certificate {
    char *name;
    char *cert;          /* path: leaf then chain (PEM; later issues: DER, PKCS#7, PKCS#12) */
    char *key;           /* path; NULL when the cert file also holds the key (PKCS#12) */
    char *password_file; /* path or NULL */
    enum cfg_ocsp ocsp;  /* default auto */
    char *ocsp_file;     /* path or NULL: a DER OCSP response, re-read when it changes */
    struct cfg_pos pos, cert_pos, key_pos, password_file_pos, ocsp_pos, ocsp_file_pos;
};

/* client_cas.NAME.ocsp: whether mutual listeners ask the OCSP responder of
 * each client certificate for its status (off: never; prefer: a revoked
 * certificate is refused, an unanswered question is not; require: only a
 * certificate the responder says is good is accepted). */
enum cfg_client_ocsp { CFG_CLIENT_OCSP_OFF, CFG_CLIENT_OCSP_PREFER, CFG_CLIENT_OCSP_REQUIRE };

/* client_cas.NAME: { ca, crl, crl_check_interval, ocsp, ocsp_responder } */
struct cfg_client_ca {
    char *name;
    char *ca;                   /* path: one or more PEM CA certificates */
    char *crl;                  /* path or NULL: one or more PEM CRLs */
    uint64_t check_interval_ms; /* crl_check_interval: default 5s; 0 = never */
    enum cfg_client_ocsp ocsp;  /* default off */
    char *ocsp_responder;       /* http:// URL or NULL: overrides each certificate's AIA */
    struct cfg_pos pos, ca_pos, crl_pos;
};

/* The targets of a group that get traffic (a 64-bit mask per connection
 * tracks the tried ones); check warns about more. */
#define CFG_MAX_TARGETS 64

struct cfg_target {
    char *address;   /* as written: "127.0.0.1:8080", "[::1]:80", "host:port", "builtin:echo" */
    bool is_builtin; /* "builtin:echo" */
    struct net_addr addr; /* resolved at load time unless is_builtin */
    unsigned weight;      /* 0..1000, default 1; 0 drains the target */
    struct cfg_pos pos;
};

struct cfg_health_check {
    enum cfg_hc_type type;         /* CFG_HC_NONE when the block is absent */
    char *path;                    /* http/https, default "/" */
    char *method;                  /* default "GET" */
    char *host;                    /* Host header, default the target address */
    unsigned expect_lo, expect_hi; /* "expect: 200-399" (default), or "200" */
    uint64_t interval_ms;          /* default 5s */
    uint64_t timeout_ms;           /* default 2s */
    unsigned healthy_threshold;    /* default 2 */
    unsigned unhealthy_threshold;  /* default 3 */
    struct cfg_pos pos;
};

struct cfg_passive {
    unsigned consecutive_failures; /* 0 = passive checks off (default) */
    bool count_5xx;                /* default false */
    uint64_t ejection_ms;          /* default 30s */
};

struct cfg_sticky {
    enum cfg_sticky_type type;
    uint64_t ttl_ms; /* default 1h */
    char *name;      /* cookie name, default "tollgate_sticky" */
    struct cfg_pos pos;
};

/* target_groups.NAME.tls: re-encryption to the targets (every listener protocol) */
struct cfg_backend_tls {
    bool enabled;
    bool verify;              /* default true */
    char *ca_name;            /* client_cas entry used as trust anchors */
    struct cfg_client_ca *ca; /* resolved */
    char *server_name;        /* SNI and name to verify; default the target host */
    struct cfg_pos pos;
};

struct cfg_target_group {
    char *name;
    enum cfg_lb_algo algorithm; /* default wrr */
    struct cfg_target *targets; /* owned array */
    size_t n_targets;
    struct cfg_health_check health_check;
    struct cfg_passive passive;
    struct cfg_sticky sticky;
    struct cfg_backend_tls tls;
    enum cfg_all_down when_all_down; /* default fail_open */
    struct cfg_pos pos;
};

/* An IPv4 or IPv6 network (trusted_proxies, allow-lists). */
struct cfg_cidr {
    sa_family_t family; /* AF_INET or AF_INET6 */
    unsigned prefix;    /* 0-32 or 0-128 */
    uint8_t addr[16];   /* network byte order (4 bytes for AF_INET); bits past prefix are 0 */
};

/* ---- allow-lists (config/allow.c): which verified clients may come in ---- */

/* What an allow-list matcher looks at in a verified client certificate
 * (docs/CONFIG.md, "Allow-lists"). Same order as the names
 * config_allow_field_name gives. */
enum cfg_allow_field {
    CFG_ALLOW_SUBJECT_CN,         /* the subject's first CN, escaped as X-Client-Subject */
    CFG_ALLOW_SAN_DNS,            /* a DNS name of the subjectAltName */
    CFG_ALLOW_SAN_URI,            /* a URI of the subjectAltName (SPIFFE IDs) */
    CFG_ALLOW_SAN_EMAIL,          /* an rfc822Name of the subjectAltName */
    CFG_ALLOW_SAN_IP,             /* an iPAddress of the subjectAltName */
    CFG_ALLOW_FINGERPRINT_SHA256, /* SHA-256 of the certificate's DER */
    CFG_ALLOW_SPKI_SHA256,        /* SHA-256 of its DER SubjectPublicKeyInfo (key pinning) */
    CFG_ALLOW_ISSUER,             /* the issuer name, RFC 4514 text as X-Client-Issuer */
    CFG_ALLOW_SERIAL,             /* the serial number, hex */
    CFG_ALLOW_N_FIELDS
};

/* One field test of a matcher. */
struct cfg_allow_term {
    enum cfg_allow_field field;
    char *value;       /* owned: the pattern as written (text fields: may hold '*') */
    uint8_t bytes[32]; /* fingerprint_sha256, spki_sha256: the digest; serial: its magnitude,
                        * big-endian, without leading zero octets */
    size_t n_bytes;
    struct cfg_cidr net; /* san_ip: the address (a /32 or /128) or network */
    struct cfg_pos pos;
};

/* A matcher: a client matches when every one of its terms does. */
struct cfg_allow_rule {
    struct cfg_allow_term *terms; /* owned array, at least one */
    size_t n_terms;
    struct cfg_pos pos;
};

/* An allow-list: a client is on it when it matches one of its rules. */
struct cfg_allow {
    struct cfg_allow_rule *rules; /* owned array */
    size_t n_rules;
};

/* "subject_cn", "san_dns", ... for f; "?" when out of range. */
const char *config_allow_field_name(enum cfg_allow_field f);
/* The field named name, or -1. */
int config_allow_field_of(const char *name);

/* What to say of a field name that is none (field[0, n)): the closest
 * field when there is one, and the list of fields. */
void config_allow_unknown_field(const char *field, size_t n, char *dst, size_t dst_len);

/*
 * Checks value as a pattern for field f and fills t (value copied): text
 * fields (subject_cn, san_dns, san_uri, san_email, issuer) take 1-1024
 * printable characters with '*' globs as docs/CONFIG.md defines; san_ip
 * an address or CIDR network; fingerprint_sha256 and spki_sha256 64 hex
 * digits (':' between pairs allowed; spki_sha256 also base64 of the 32
 * bytes); serial 1-40 hex digits (':' allowed). False, with what is
 * wrong in *why (a static string) and t untouched, when it is none.
 */
bool config_allow_term_set(struct cfg_allow_term *t, enum cfg_allow_field f, const char *value,
                           const char **why);

/*
 * Reads an allow file: UTF-8 text, one matcher a line written
 * "FIELD VALUE" (the value is the rest of the line, surrounding blanks
 * removed), blank lines and lines starting with '#' ignored, at most
 * CFG_ALLOW_FILE_MAX bytes. Every problem goes to d as path:line:col;
 * TG_E_CONFIG when there is one (out untouched), else TG_OK with *out
 * filled (free with config_allow_fini). An empty file is an empty list:
 * nobody matches it.
 */
#define CFG_ALLOW_FILE_MAX (4 * 1024 * 1024)
TG_MUST_USE enum tg_status config_allow_file_load(const char *path, struct cfg_allow *out,
                                                  struct diag *d);
void config_allow_fini(struct cfg_allow *a);
void config_allow_rule_fini(struct cfg_allow_rule *r);

struct cfg_header {
    char *name;
    char *value;
};

/* listeners[].rules[]: a match (host, path) and exactly one action. */
struct cfg_rule {
    char *host; /* NULL = any; exact or "*.suffix", case-insensitive */
    char *path; /* NULL = any; prefix */
    bool has_client;
    struct cfg_allow_rule client; /* has_client: the verified client certificate matches it */
    /* action: exactly one of the three */
    char *target_group_name;
    struct cfg_target_group *target_group; /* resolved */
    bool has_respond;
    unsigned respond_status;            /* 200..599 (a final response), default 200 */
    char *respond_body;                 /* may be NULL */
    struct cfg_header *respond_headers; /* owned array */
    size_t n_respond_headers;
    bool has_redirect;
    char *redirect_scheme;    /* NULL = keep */
    char *redirect_host;      /* NULL = keep */
    unsigned redirect_port;   /* 0 = default for the scheme */
    char *redirect_path;      /* NULL = keep; the query is always kept */
    unsigned redirect_status; /* 301, 302, 303, 307, 308; default 301 */
    struct cfg_pos pos;
};

/*
 * Who a handshake is judged under: the listener's tls block itself (site
 * 0, with the listener's allow and allow_file) or one of its sni entries
 * (sites 1..), each taking from the listener what it does not set. The
 * loader fills every field; code that serves connections reads
 * l->tls.sites[i] and never the listener's own fields for these.
 */
/* Sites of one listener: its own and its sni entries (a connection keeps
 * its site's index in 16 bits). */
#define CFG_MAX_SITES 1024

struct cfg_site {
    char **names; /* owned; sni entries only: "api.example.com" or "*.example.com", lower case */
    size_t n_names;
    enum cfg_tls_mode mode;
    enum cfg_client_auth client_auth;
    unsigned verify_depth;
    char **certificate_names;              /* owned; NULL when taken from the listener */
    struct cfg_certificate **certificates; /* resolved; owned with certificate_names, else the
                                            * listener's array */
    size_t n_certificates;
    char *client_ca_name;            /* owned; NULL when taken from the listener */
    struct cfg_client_ca *client_ca; /* resolved; NULL for one-way */
    /* Report-only: the trust that will replace client_ca, judged on every
     * accepted handshake and reported, never enforced. */
    char *client_ca_next_name;            /* owned; NULL when taken from the listener */
    struct cfg_client_ca *client_ca_next; /* resolved; NULL when none */
    struct cfg_allow allow;               /* owned: as written here */
    char *allow_file;                     /* owned path, or NULL */
    /* Resolved: the site whose allow and allow_file judge this one's
     * clients (itself, or the listener's own when an entry sets
     * neither); NULL when there is no allow-list. */
    const struct cfg_site *allow_site;
    struct cfg_pos pos, mode_pos;
};

struct cfg_tls {
    enum cfg_tls_mode mode;                /* default one-way */
    enum cfg_client_auth client_auth;      /* mutual only; default required */
    char **certificate_names;              /* owned; at least one */
    struct cfg_certificate **certificates; /* resolved, same order */
    size_t n_certificates;
    char *client_ca_name;            /* required for mutual */
    struct cfg_client_ca *client_ca; /* resolved */
    unsigned verify_depth;           /* intermediates allowed; default 3, 0..16 */
    enum cfg_tls_policy policy;      /* default intermediate */
    char *min_version;               /* custom: "TLSv1.2" or "TLSv1.3" (also TLSv1, TLSv1.1) */
    char *max_version;               /* custom */
    char *ciphers;                   /* custom: OpenSSL TLS 1.2 cipher list */
    char *ciphersuites;              /* custom: TLS 1.3 suites */
    char *groups;                    /* custom (also allowed for the others): "X25519:P-256" */
    bool strict_sni;                 /* default false */
    char *on_reject;                 /* NULL, or "page" (optional mutual on https) */
    enum cfg_cert_header client_cert_header; /* https mutual; default full */
    uint64_t session_lifetime_ms;            /* default 1h; 1s..168h */
    enum cfg_on_invalid on_revoke;           /* mutual; default close */
    enum cfg_on_invalid on_expiry;           /* mutual; default close */
    /* sites[0] is the listener's own settings, sites[1..] its sni entries
     * in order (owned array, at least one once loaded). */
    struct cfg_site *sites;
    size_t n_sites;
    struct cfg_pos pos, mode_pos, client_ca_pos;
};

/* The largest h2_max_header_list_size: a request's header list becomes an
 * HTTP/1.1 head toward the backend, which may be at most this long (the
 * same bound as HTTP_MAX_HEAD_BYTES for HTTP/1.1 clients). */
#define CFG_H2_MAX_HEADER_LIST 16384

/* The protocols an https listener offers in ALPN (cfg_listener.alpn). */
enum { CFG_ALPN_H2 = 1u << 0, CFG_ALPN_HTTP1 = 1u << 1 };

struct cfg_listener {
    char *name;
    enum cfg_listener_proto protocol;
    char *listen;         /* as written */
    struct net_addr addr; /* resolved */
    bool has_tls;         /* tcp_ssl and https: required; http: refused */
    struct cfg_tls tls;
    char *target_group_name;               /* tcp_ssl: required */
    struct cfg_target_group *target_group; /* resolved */
    enum cfg_proxy_proto proxy_protocol;   /* tcp_ssl; default none */
    unsigned max_connections;              /* default 10000 */
    unsigned max_connections_per_client;   /* per client address; default 0 = no limit */
    uint64_t handshake_timeout_ms;         /* default 10s */
    uint64_t idle_timeout_ms;              /* default 5m */
    uint64_t connect_timeout_ms;           /* default 5s */
    uint64_t header_timeout_ms;            /* https/http; default 10s */
    uint64_t response_timeout_ms;          /* https/http; default 60s */
    uint64_t max_body_size;                /* https/http bytes; default 0 = unlimited */
    struct cfg_cidr *trusted_proxies;      /* owned array (https, http) */
    size_t n_trusted_proxies;
    bool allow_underscores_in_headers; /* https/http; default false */
    bool add_forwarded_header;         /* https/http; default false */
    unsigned alpn;                     /* https: CFG_ALPN_* bits; default both */
    unsigned h2_max_streams;           /* https: concurrent streams; default 100 */
    unsigned h2_max_header_list_size;  /* https: bytes; default 16384 */
    unsigned h2_max_resets_per_second; /* https: stream resets; default 100 */
    struct cfg_rule *rules;            /* owned array (https, http) */
    size_t n_rules;
    char *default_target_group_name;
    struct cfg_target_group *default_target_group; /* resolved */
    struct cfg_pos pos, listen_pos;
};

#define CFG_TRUST_HISTORY_DEFAULT_MS (UINT64_C(7) * 24 * 3600 * 1000)

struct config {
    char *path;         /* the file it was read from, as given */
    unsigned workers;   /* 0 = auto (one per core); else 1..256 */
    char *admin_listen; /* NULL = no admin endpoint */
    struct net_addr admin_addr;
    bool admin_allow_remote;
    char **admin_server_names; /* owned: more Host names the admin endpoint answers to */
    size_t n_admin_server_names;
    char *admin_token_file; /* NULL = no bearer token */
    char *admin_token;      /* owned: the token read from admin_token_file at load; wiped
                             * when freed */
    size_t admin_token_len;
    enum log_level log_level;  /* default info */
    char *access_log;          /* "stdout" (default), "off" or a path */
    uint64_t drain_timeout_ms; /* default 30s */
    unsigned max_connections;  /* all listeners together, all workers; 0 = no limit (default) */
    char *user;                /* NULL = keep the user */
    /* Reloads are refused while this many old generations drain; default 4. */
    unsigned max_draining_generations;
    /* Session-ticket keys: generated by the master and rotated every
     * ticket_key_rotation_ms (default 1h, 1s..168h), unless ticket_keys_file
     * is set: then ticket_keys holds the keys read from it at load (owned,
     * wiped when freed) and nothing rotates. */
    uint64_t ticket_key_rotation_ms;
    char *ticket_keys_file;
    struct ticket_set *ticket_keys;

    /* Where tollgate keeps what outlives a process (the trust history);
     * NULL: nothing is kept. */
    char *state_dir;
    /* How far back the record of accepted client certificates reaches
     * (trust diff); default CFG_TRUST_HISTORY_DEFAULT_MS, 0 = none. */
    uint64_t trust_history_ms;

    /* fleet: this file makes the process a node of a fleet, whose config
     * comes from etcd; nothing else may be in the file. NULL otherwise. */
    struct cfg_fleet *fleet;

    struct cfg_certificate *certificates; /* owned arrays */
    size_t n_certificates;
    struct cfg_client_ca *client_cas;
    size_t n_client_cas;
    struct cfg_target_group *target_groups;
    size_t n_target_groups;
    struct cfg_listener *listeners;
    size_t n_listeners;
};

/*
 * Reads, parses and checks the meaning of a config file. Every problem goes
 * into diag as "file:line:col: key: message"; the loader carries on after an
 * error so that one run reports all of them. Relative file paths in the
 * config are resolved against the config file's directory.
 *
 * Returns TG_OK and *out (owned by the caller, free with config_free) when
 * there is no error (warnings allowed); TG_E_CONFIG otherwise, *out NULL.
 * Resolves host names, so it can block.
 */
TG_MUST_USE enum tg_status config_load(const char *path, struct config **out, struct diag *d);

/* The same from memory; name is used as the file name in diagnostics and
 * relative paths are resolved against base_dir (NULL = current directory). */
TG_MUST_USE enum tg_status config_load_buffer(const char *name, const char *base_dir,
                                              const char *text, size_t len, struct config **out,
                                              struct diag *d);

/* fleet: { etcd, prefix, node, secret_file, cache_dir, lease_ttl }, a node
 * file's one block (docs/FLEET.md). */
#define CFG_FLEET_PREFIX_MAX 200
#define CFG_FLEET_NODE_MAX   64
#define CFG_FLEET_URLS_MAX   16
#define CFG_FLEET_LEASE_TTL  10
struct cfg_fleet {
    char **etcd; /* owned; client URLs */
    size_t n_etcd;
    char *prefix;                         /* without a trailing slash */
    char *node;                           /* NULL: the host name */
    char *secret_file;                    /* path or NULL */
    char *cache_dir;                      /* path or NULL: /var/lib/tollgate/fleet */
    unsigned lease_ttl;                   /* seconds, default 10 */
    char *etcd_ca, *etcd_cert, *etcd_key; /* paths or NULL: TLS to https:// endpoints */
    struct cfg_pos pos;
};

/* Checks a fleet prefix: absolute, printable, no "//", at most
 * CFG_FLEET_PREFIX_MAX bytes; a trailing slash is removed. */
bool config_fleet_prefix_ok(char *prefix, char *err, size_t err_len);
/* A node name: 1 to CFG_FLEET_NODE_MAX of [A-Za-z0-9._-]. */
bool config_fleet_node_ok(const char *name);
/* An etcd client URL: http:// or https://, no space, query or fragment. */
bool config_fleet_url_ok(const char *url);

/*
 * Where the files a config names are read from, when not where it says:
 * fn gets each path as resolved against base_dir and returns a heap copy
 * of the path to read instead, or NULL to read the path itself. A fleet
 * node maps the files of a revision to its own copies of them; keys stay
 * where each node keeps them.
 */
struct config_path_map {
    char *(*fn)(void *ctx, const char *path);
    void *ctx;
};

/* config_load_buffer with every file path passed through map (NULL: none). */
TG_MUST_USE enum tg_status config_load_mapped(const char *name, const char *base_dir,
                                              const struct config_path_map *map, const char *text,
                                              size_t len, struct config **out, struct diag *d);

void config_free(struct config *cfg);

/* "500ms", "2s", "5m", "1h" (also a bare 0) to milliseconds. False if bad. */
bool config_parse_duration(const char *s, uint64_t *ms);

/* "512", "16k", "1m", "1g" to bytes (powers of 1024). False if bad. */
bool config_parse_size(const char *s, uint64_t *bytes);

/* Number of workers to start: cfg->workers, or the number of online cores. */
unsigned config_worker_count(const struct config *cfg);

const char *config_proto_name(enum cfg_listener_proto p);

/* Parses "ADDRESS" or "ADDRESS/PREFIX" (IPv4 or IPv6; a bare address is a
 * /32 or /128) into *out, clearing host bits past the prefix. Strict: no
 * spaces, no leading zeros in the prefix. False, with a reason in *why, when
 * it is not one. */
bool config_cidr_parse(const char *s, struct cfg_cidr *out, const char **why);

/* True when a is inside one of the n networks (an IPv4-mapped IPv6 address
 * counts as its IPv4 address). */
bool config_cidr_contains(const struct cfg_cidr *nets, size_t n, const struct net_addr *a);

/* True when addr (4 octets for AF_INET, 16 for AF_INET6, network byte
 * order) is inside net. Strict: the families must be the same (no IPv4
 * mapping). */
bool config_cidr_match(const struct cfg_cidr *net, sa_family_t family, const uint8_t *addr);

/* The site of l whose names hold name (a host name, any case, one
 * trailing dot ignored): an exact name first, else the wildcard "*.rest" with the
 * longest rest that name ends in (at any depth, as a rule's host matches);
 * 0 (the listener's own) when none does. len: name's length. */
size_t config_site_for_name(const struct cfg_listener *l, const char *name, size_t len);

/* Whether any site of t is mutual (with client_auth optional, for
 * is_optional). */
bool config_tls_any_mutual(const struct cfg_tls *t, bool is_optional);

/* Looks up by name; NULL when absent. */
struct cfg_certificate *config_find_certificate(const struct config *cfg, const char *name);
struct cfg_client_ca *config_find_client_ca(const struct config *cfg, const char *name);
struct cfg_target_group *config_find_target_group(const struct config *cfg, const char *name);

#endif
