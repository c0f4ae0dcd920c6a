/* certificates:, client_cas: and a listener's tls: block. */
#include "config/internal.h"

#include <stdlib.h>
#include <string.h>

static void parse_certificate(struct cfg_ctx *c, const struct cfg_val *ev,
                              struct cfg_certificate *e)
{
    static const char *const keys[] = {"cert", "key", "password_file", "ocsp", "ocsp_file"};
    /* Same order as enum cfg_ocsp. */
    static const char *const ocsp_modes[] = {"auto", "off"};
    if (!cfg_is_map(c, ev))
        return;
    int k;
    bool has_cert = false;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, ev, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            has_cert = true;
            if (cfg_get_path(c, &kv, &e->cert))
                e->cert_pos = cfg_pos_of(&kv);
            break;
        case 1:
            if (cfg_get_path(c, &kv, &e->key))
                e->key_pos = cfg_pos_of(&kv);
            break;
        case 2:
            if (cfg_get_path(c, &kv, &e->password_file))
                e->password_file_pos = cfg_pos_of(&kv);
            break;
        case 3:
            k = cfg_get_enum(c, &kv, ocsp_modes, TG_ARRAY_LEN(ocsp_modes), &e->ocsp);
            if (k >= 0) {
                e->ocsp = (enum cfg_ocsp)k;
                e->ocsp_pos = cfg_pos_of(&kv);
            }
            break;
        case 4:
            if (cfg_get_path(c, &kv, &e->ocsp_file))
                e->ocsp_file_pos = cfg_pos_of(&kv);
            break;
        default:
            break;
        }
    }
    if (!has_cert)
        cfg_error_in(c, e, "cert", "required key is missing (expected the certificate file)");
}

void cfg_parse_certificates(struct cfg_ctx *c, const struct cfg_val *v)
{
    struct config *cfg = c->cfg;
    if (!cfg_is_map(c, v) || cfg_count(v) == 0)
        return;
    cfg->certificates = cfg_calloc(c, cfg_count(v), sizeof(*cfg->certificates));
    if (cfg->certificates == NULL)
        return;
    struct cfg_val ev;
    for (size_t i = 0; cfg_map_next(c, v, &i, &ev);) {
        struct cfg_certificate *e = &cfg->certificates[cfg->n_certificates++];
        e->name = cfg_entry_name(c, &ev);
        e->pos = cfg_pos_of(&ev);
        cfg_record(c, e, true, &ev);
        parse_certificate(c, &ev, e);
    }
}

#define CRL_CHECK_INTERVAL_DEFAULT_MS (5 * 1000)

static void parse_client_ca(struct cfg_ctx *c, const struct cfg_val *ev, struct cfg_client_ca *e)
{
    static const char *const keys[] = {"ca", "crl", "crl_check_interval", "ocsp", "ocsp_responder"};
    /* Same order as enum cfg_client_ocsp. */
    static const char *const ocsp_modes[] = {"off", "prefer", "require"};
    int k;
    e->check_interval_ms = CRL_CHECK_INTERVAL_DEFAULT_MS;
    if (!cfg_is_map(c, ev))
        return;
    bool has_ca = false;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, ev, &i, &kv);) {
        switch (cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys))) {
        case 0:
            has_ca = true;
            if (cfg_get_path(c, &kv, &e->ca))
                e->ca_pos = cfg_pos_of(&kv);
            break;
        case 1:
            if (cfg_get_path(c, &kv, &e->crl))
                e->crl_pos = cfg_pos_of(&kv);
            break;
        case 2:
            if (cfg_get_duration(c, &kv, &e->check_interval_ms) && e->check_interval_ms != 0 &&
                (e->check_interval_ms < 1000 || e->check_interval_ms > 3600 * 1000)) {
                cfg_error_at(c, &e->check_interval_ms,
                             "must be 0 (off) or between 1s and 1h (how often the CA and CRL "
                             "files are looked at for changes)");
                e->check_interval_ms = CRL_CHECK_INTERVAL_DEFAULT_MS;
            }
            break;
        case 3:
            k = cfg_get_enum(c, &kv, ocsp_modes, TG_ARRAY_LEN(ocsp_modes), &e->ocsp);
            if (k >= 0)
                e->ocsp = (enum cfg_client_ocsp)k;
            break;
        case 4:
            /* RFC 6960 Appendix A: plain HTTP; a fetch over TLS could need
             * the very revocation status it is fetching. */
            if (cfg_get_str(c, &kv, &e->ocsp_responder) &&
                (strncmp(e->ocsp_responder, "http://", 7) != 0 || e->ocsp_responder[7] == '\0' ||
                 strlen(e->ocsp_responder) >= 1024))
                cfg_error_at(c, &e->ocsp_responder,
                             "\"%.64s\" is not an http:// URL of at most 1023 characters (OCSP "
                             "is asked over plain HTTP, RFC 6960 Appendix A)",
                             e->ocsp_responder);
            break;
        default:
            break;
        }
    }
    if (!has_ca)
        cfg_error_in(c, e, "ca", "required key is missing (expected the CA certificate file)");
}

void cfg_parse_client_cas(struct cfg_ctx *c, const struct cfg_val *v)
{
    struct config *cfg = c->cfg;
    if (!cfg_is_map(c, v) || cfg_count(v) == 0)
        return;
    cfg->client_cas = cfg_calloc(c, cfg_count(v), sizeof(*cfg->client_cas));
    if (cfg->client_cas == NULL)
        return;
    struct cfg_val ev;
    for (size_t i = 0; cfg_map_next(c, v, &i, &ev);) {
        struct cfg_client_ca *e = &cfg->client_cas[cfg->n_client_cas++];
        e->name = cfg_entry_name(c, &ev);
        e->pos = cfg_pos_of(&ev);
        cfg_record(c, e, true, &ev);
        parse_client_ca(c, &ev, e);
    }
}

/* Keys that take one of a fixed set of words but are stored as strings. */
static void parse_word(struct cfg_ctx *c, const struct cfg_val *kv, const char *const *words,
                       size_t n, char **out)
{
    int k = cfg_get_enum(c, kv, words, n, out);
    if (k < 0)
        return;
    char *s = cfg_strdup(c, words[k]);
    if (s == NULL)
        return;
    free(*out);
    *out = s;
}

/* A host name of letters, digits and '-' in dot-separated labels of 1-63
 * characters (at most 253 in all), optionally after "*." */
static bool cfg_sni_name_ok(const char *s)
{
    if (strncmp(s, "*.", 2) == 0)
        s += 2;
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > 253)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-';
        if (!ok || ++label > 63)
            return false;
    }
    return label > 0;
}

/* One allow-list matcher: a mapping of field names to patterns, every
 * one of which the client must match. */
void cfg_parse_allow_rule(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_allow_rule *r)
{
    r->pos = cfg_pos_of(v);
    if (!cfg_is_map(c, v))
        return;
    if (cfg_count(v) == 0) {
        cfg_error(c, v,
                  "an empty matcher would match every client: give at least one field, such "
                  "as { san_uri: \"spiffe://prod/*\" }");
        return;
    }
    r->terms = cfg_calloc(c, cfg_count(v), sizeof(*r->terms));
    if (r->terms == NULL)
        return;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k = config_allow_field_of(kv.key);
        char *value = NULL;
        if (k < 0) {
            char msg[512];
            config_allow_unknown_field(kv.key, strlen(kv.key), msg, sizeof(msg));
            cfg_error(c, &kv, "%s", msg);
            continue;
        }
        if (!cfg_get_str(c, &kv, &value))
            continue;
        const char *why = NULL;
        struct cfg_allow_term *t = &r->terms[r->n_terms];
        if (config_allow_term_set(t, (enum cfg_allow_field)k, value, &why)) {
            t->pos = cfg_pos_of(&kv);
            r->n_terms++;
        } else {
            cfg_error(c, &kv, "%s", why);
        }
        free(value);
    }
}

static void parse_allow(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_site *s)
{
    cfg_record(c, &s->allow, false, kv);
    if (!cfg_is_seq(c, kv))
        return;
    size_t n = cfg_count(kv);
    if (n == 0)
        return; /* an empty list: nobody */
    s->allow.rules = cfg_calloc(c, n, sizeof(*s->allow.rules));
    if (s->allow.rules == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, kv, &i, &item);)
        cfg_parse_allow_rule(c, &item, &s->allow.rules[s->allow.n_rules++]);
}

/* A name of an sni entry: a host name, or "*." and one, stored in lower
 * case. A trailing dot, a port or an address is refused: what a client
 * sends as SNI is a bare host name (RFC 6066 §3). */
static void parse_sni_names(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_site *s)
{
    cfg_record(c, &s->names, false, kv);
    if (!cfg_is_seq(c, kv))
        return;
    size_t n = cfg_count(kv);
    if (n == 0) {
        cfg_error(c, kv, "at least one name is required (such as api.example.com)");
        return;
    }
    s->names = cfg_calloc(c, n, sizeof(*s->names));
    if (s->names == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, kv, &i, &item);) {
        char *name = NULL;
        if (!cfg_get_str(c, &item, &name))
            continue;
        if (!cfg_sni_name_ok(name)) {
            cfg_error(c, &item,
                      "\"%.64s\" is not a server name (expected a host name such as "
                      "api.example.com, or *. and one for every name one label below it; no "
                      "trailing dot, port or address)",
                      name);
            free(name);
            continue;
        }
        for (char *p = name; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        s->names[s->n_names] = name;
        cfg_record(c, &s->names[s->n_names], false, &item);
        s->n_names++;
    }
}

static void parse_site_certificates(struct cfg_ctx *c, const struct cfg_val *kv, char ***names,
                                    size_t *n_names, struct cfg_certificate ***resolved)
{
    if (!cfg_is_seq(c, kv))
        return;
    size_t n = cfg_count(kv);
    if (n == 0) {
        cfg_error(c, kv, "at least one certificate is required");
        return;
    }
    *names = cfg_calloc(c, n, sizeof(**names));
    *resolved = cfg_calloc(c, n, sizeof(**resolved));
    if (*names == NULL || *resolved == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; cfg_seq_next(c, kv, &i, &item);) {
        if (cfg_get_str(c, &item, &(*names)[*n_names]))
            (*n_names)++;
    }
}

/* Keys a site (the listener's tls block or an sni entry) shares; returns
 * false when k is not one of them. */
static bool parse_site_key(struct cfg_ctx *c, const struct cfg_val *kv, const char *key,
                           struct cfg_site *s)
{
    if (strcmp(key, "allow") == 0) {
        parse_allow(c, kv, s);
    } else if (strcmp(key, "allow_file") == 0) {
        (void)cfg_get_path(c, kv, &s->allow_file);
    } else if (strcmp(key, "client_ca_next") == 0) {
        cfg_record(c, &s->client_ca_next_name, false, kv);
        (void)cfg_get_str(c, kv, &s->client_ca_next_name);
    } else {
        return false;
    }
    return true;
}

static void parse_sni_entry(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_site *s)
{
    static const char *const keys[] = {"names",     "certificates", "mode",
                                       "client_ca", "client_auth",  "verify_depth",
                                       "allow",     "allow_file",   "client_ca_next"};
    static const char *const modes[] = {"one-way", "mutual"};
    static const char *const auths[] = {"required", "optional"};
    s->pos = cfg_pos_of(v);
    cfg_record(c, s, true, v);
    if (!cfg_is_map(c, v))
        return;
    bool has_names = false;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k = cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys));
        switch (k) {
        case 0:
            has_names = true;
            parse_sni_names(c, &kv, s);
            break;
        case 1:
            cfg_record(c, &s->certificate_names, false, &kv);
            parse_site_certificates(c, &kv, &s->certificate_names, &s->n_certificates,
                                    &s->certificates);
            break;
        case 2:
            k = cfg_get_enum(c, &kv, modes, TG_ARRAY_LEN(modes), &s->mode);
            if (k >= 0) {
                s->mode = (enum cfg_tls_mode)k;
                s->mode_pos = cfg_pos_of(&kv);
            }
            break;
        case 3:
            cfg_record(c, &s->client_ca_name, false, &kv);
            (void)cfg_get_str(c, &kv, &s->client_ca_name);
            break;
        case 4:
            k = cfg_get_enum(c, &kv, auths, TG_ARRAY_LEN(auths), &s->client_auth);
            if (k >= 0)
                s->client_auth = (enum cfg_client_auth)k;
            break;
        case 5:
            (void)cfg_get_uint(c, &kv, 0, 16, &s->verify_depth);
            break;
        case 6:
        case 7:
        case 8:
            (void)parse_site_key(c, &kv, keys[k], s);
            break;
        default:
            break;
        }
    }
    if (!has_names)
        cfg_error_in(c, s, "names",
                     "required key is missing (expected the server names this entry is for, "
                     "such as [api.example.com])");
}

/* The number of sni entries the tls block v will give, so that sites can
 * be allocated before its keys are walked. */
static size_t count_sni(const struct cfg_val *v)
{
    const struct ynode *n = v->node;
    size_t count = 0;
    for (size_t i = 0; n != NULL && n->kind == YN_MAP && i < n->n; i++) {
        const struct ypair *p = &n->pairs[i];
        if (p->key != NULL && p->first == NULL && strcmp(p->key->str, "sni") == 0 &&
            p->val != NULL && p->val->kind == YN_SEQ)
            count = p->val->n;
    }
    return count;
}

/* sni: a sequence of entries, each a site after the listener's own
 * (t->sites was sized for them by count_sni). */
static void parse_sni(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_tls *t, size_t cap)
{
    cfg_record(c, &t->n_sites, false, kv);
    if (!cfg_is_seq(c, kv) || t->sites == NULL)
        return;
    struct cfg_val item;
    for (size_t i = 0; t->n_sites < cap && cfg_seq_next(c, kv, &i, &item);)
        parse_sni_entry(c, &item, &t->sites[t->n_sites++]);
}

#define SESSION_LIFETIME_DEFAULT_MS (3600 * 1000)

/* RFC 8446 §4.6.1: a ticket lives at most 7 days. */
static void parse_session_lifetime(struct cfg_ctx *c, const struct cfg_val *kv, struct cfg_tls *t)
{
    enum { MIN_MS = 1000, MAX_MS = 7 * 24 * 3600 * 1000 };
    if (!cfg_get_duration(c, kv, &t->session_lifetime_ms))
        return;
    if (t->session_lifetime_ms < MIN_MS || t->session_lifetime_ms > MAX_MS) {
        cfg_error_at(c, &t->session_lifetime_ms,
                     "must be between 1s and 168h (how long a TLS session may be resumed after "
                     "its first full handshake)");
        t->session_lifetime_ms = SESSION_LIFETIME_DEFAULT_MS;
    }
}

void cfg_parse_listener_tls(struct cfg_ctx *c, const struct cfg_val *v, struct cfg_tls *t)
{
    static const char *const keys[] = {"mode",
                                       "client_auth",
                                       "certificates",
                                       "client_ca",
                                       "verify_depth",
                                       "policy",
                                       "min_version",
                                       "max_version",
                                       "ciphers",
                                       "ciphersuites",
                                       "groups",
                                       "strict_sni",
                                       "on_reject",
                                       "client_cert_header",
                                       "session_lifetime",
                                       "on_revoke",
                                       "on_expiry",
                                       "sni",
                                       "allow",
                                       "allow_file",
                                       "client_ca_next"};
    static const char *const on_invalid[] = {"close", "keep"};
    static const char *const modes[] = {"one-way", "mutual"};
    static const char *const auths[] = {"required", "optional"};
    /* Same order as enum cfg_tls_policy. */
    static const char *const policies[] = {"intermediate", "modern", "custom"};
    static const char *const versions[] = {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"};
    static const char *const rejects[] = {"page"};
    /* Same order as enum cfg_cert_header. */
    static const char *const cert_headers[] = {"full", "leaf", "hash", "off"};

    t->pos = cfg_pos_of(v);
    t->mode = CFG_TLS_ONE_WAY;
    t->client_auth = CFG_CLIENT_AUTH_REQUIRED;
    t->verify_depth = 3;
    t->policy = CFG_POLICY_INTERMEDIATE;
    t->session_lifetime_ms = SESSION_LIFETIME_DEFAULT_MS;
    cfg_record(c, t, true, v);
    if (!cfg_is_map(c, v))
        return;
    size_t cap = 1 + count_sni(v);
    t->sites = cfg_calloc(c, cap, sizeof(*t->sites));
    if (t->sites == NULL)
        return;
    t->n_sites = 1;
    t->sites[0].pos = t->pos;
    struct cfg_val kv;
    for (size_t i = 0; cfg_map_next(c, v, &i, &kv);) {
        int k = cfg_key(c, &kv, keys, TG_ARRAY_LEN(keys));
        switch (k) {
        case 0:
            k = cfg_get_enum(c, &kv, modes, TG_ARRAY_LEN(modes), &t->mode);
            if (k >= 0) {
                t->mode = (enum cfg_tls_mode)k;
                t->mode_pos = cfg_pos_of(&kv);
            }
            break;
        case 1:
            k = cfg_get_enum(c, &kv, auths, TG_ARRAY_LEN(auths), &t->client_auth);
            if (k >= 0)
                t->client_auth = (enum cfg_client_auth)k;
            break;
        case 2:
            cfg_record(c, &t->certificate_names, false, &kv);
            parse_site_certificates(c, &kv, &t->certificate_names, &t->n_certificates,
                                    &t->certificates);
            break;
        case 3:
            /* Recorded even when invalid: check.c must not say it is missing. */
            cfg_record(c, &t->client_ca_name, false, &kv);
            if (cfg_get_str(c, &kv, &t->client_ca_name))
                t->client_ca_pos = cfg_pos_of(&kv);
            break;
        case 4:
            /* Intermediates between the leaf and the root, as OpenSSL counts
             * them (SSL_CTX_set_verify_depth(3)): 0 = signed by the root. */
            (void)cfg_get_uint(c, &kv, 0, 16, &t->verify_depth);
            break;
        case 5:
            k = cfg_get_enum(c, &kv, policies, TG_ARRAY_LEN(policies), &t->policy);
            if (k >= 0)
                t->policy = (enum cfg_tls_policy)k;
            break;
        case 6:
            parse_word(c, &kv, versions, TG_ARRAY_LEN(versions), &t->min_version);
            break;
        case 7:
            parse_word(c, &kv, versions, TG_ARRAY_LEN(versions), &t->max_version);
            break;
        case 8:
            (void)cfg_get_str(c, &kv, &t->ciphers);
            break;
        case 9:
            (void)cfg_get_str(c, &kv, &t->ciphersuites);
            break;
        case 10:
            (void)cfg_get_str(c, &kv, &t->groups);
            break;
        case 11:
            (void)cfg_get_bool(c, &kv, &t->strict_sni);
            break;
        case 12:
            parse_word(c, &kv, rejects, TG_ARRAY_LEN(rejects), &t->on_reject);
            break;
        case 13:
            k = cfg_get_enum(c, &kv, cert_headers, TG_ARRAY_LEN(cert_headers),
                             &t->client_cert_header);
            if (k >= 0)
                t->client_cert_header = (enum cfg_cert_header)k;
            break;
        case 14:
            parse_session_lifetime(c, &kv, t);
            break;
        case 15:
            k = cfg_get_enum(c, &kv, on_invalid, TG_ARRAY_LEN(on_invalid), &t->on_revoke);
            if (k >= 0)
                t->on_revoke = (enum cfg_on_invalid)k;
            break;
        case 16:
            k = cfg_get_enum(c, &kv, on_invalid, TG_ARRAY_LEN(on_invalid), &t->on_expiry);
            if (k >= 0)
                t->on_expiry = (enum cfg_on_invalid)k;
            break;
        case 17:
            parse_sni(c, &kv, t, cap);
            break;
        case 18:
        case 19:
        case 20:
            (void)parse_site_key(c, &kv, keys[k], &t->sites[0]);
            break;
        default:
            break;
        }
    }
}
