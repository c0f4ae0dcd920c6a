#include "tls/tls.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "core/file.h"
#include "core/log.h"

/* Ciphers for TLS 1.2 under the intermediate policy: ECDHE + AEAD only,
 * strongest first (the server's order decides). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
#define TLS13_SUITES   "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"
#define DEFAULT_GROUPS "X25519:P-256:P-384"

/* Certificates with the same names share one SSL_CTX (one per key type:
 * OpenSSL picks ECDSA or RSA by the client's signature algorithms). */
struct tls_bucket {
    SSL_CTX *ctx; /* owned */
    X509 *leaf;   /* owned reference: the first leaf, for SNI matching */
    int key_types[4];
    size_t n_key_types;
};

/*
 * What a handshake is judged under (struct cfg_site): the listener's own
 * settings or one sni entry's, each with its own contexts, so that its
 * certificates, client verification, session id context and trust travel
 * together. Every context of a site points back at it (site_index).
 */
struct tls_site {
    struct tls_server *server;
    size_t index;
    const struct cfg_site *cfg;
    struct tls_bucket *buckets; /* owned array; buckets[0] is the site's default */
    size_t n_buckets;
    /* How sessions live and are re-judged; policy.trust is the client
     * trust (one reference; NULL for one-way), replaced by
     * tls_server_set_trust. */
    struct tls_session_policy policy;
    /* The allow-list: the owner site's inline rules and its allow file
     * as last loaded (owner == this site when it has its own list). */
    const struct tls_site *allow_owner; /* NULL: no allow-list */
    struct cfg_allow allow_file;        /* owned; loaded from cfg->allow_file */
    struct tls_file_sig allow_sig, allow_failed_sig;
    bool has_allow_failed;
};

struct tls_server {
    struct tls_site *sites; /* owned array; sites[0] is the listener's own */
    size_t n_sites;
    bool strict_sni;
    const struct cfg_listener *l;
};

static int g_site_idx = -1;

static int site_index(void)
{
    if (g_site_idx < 0)
        g_site_idx = SSL_CTX_get_ex_new_index(0, "tollgate site", NULL, NULL, NULL);
    return g_site_idx;
}

static const struct tls_site *site_of_ctx(SSL_CTX *ctx)
{
    return g_site_idx < 0 || ctx == NULL ? NULL : SSL_CTX_get_ex_data(ctx, g_site_idx);
}

size_t tls_site_of(SSL *ssl)
{
    const struct tls_site *site = site_of_ctx(SSL_get_SSL_CTX(ssl));
    return site != NULL ? site->index : 0;
}

bool tls_site_allows(SSL_CTX *ctx, X509 *leaf)
{
    const struct tls_site *site = site_of_ctx(ctx);
    const struct tls_site *o = site != NULL ? site->allow_owner : NULL;
    if (o == NULL)
        return true;
    return leaf != NULL &&
           (tls_allow_matches(&o->cfg->allow, leaf) || tls_allow_matches(&o->allow_file, leaf));
}

static bool bucket_matches(const struct tls_bucket *b, const char *name, bool wildcards)
{
    unsigned flags = wildcards ? 0 : X509_CHECK_FLAG_NO_WILDCARDS;
    if (X509_check_host(b->leaf, name, 0, flags, NULL) == 1)
        return true;
    return X509_check_ip_asc(b->leaf, name, 0) == 1;
}

/* RFC 6066 §3: the certificate set of site for the requested name; exact
 * names win over wildcards. NULL when none names it. */
static const struct tls_bucket *bucket_for_name(const struct tls_site *site, const char *name)
{
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < site->n_buckets; i++) {
            if (bucket_matches(&site->buckets[i], name, pass == 1))
                return &site->buckets[i];
        }
    }
    return NULL;
}

bool tls_sni_from_hello(const unsigned char *p, size_t len, char *dst, size_t cap)
{
    if (len < 2 || (size_t)((p[0] << 8) | p[1]) != len - 2)
        return false;
    for (size_t o = 2; o + 3 <= len;) {
        unsigned type = p[o];
        size_t n = (size_t)((p[o + 1] << 8) | p[o + 2]);
        o += 3;
        if (n > len - o)
            return false;
        if (type == TLSEXT_NAMETYPE_host_name) {
            if (n == 0 || n >= cap || n > 255 || memchr(p + o, '\0', n) != NULL)
                return false;
            memcpy(dst, p + o, n);
            dst[n] = '\0';
            return true;
        }
        o += n;
    }
    return false;
}

/* Moves ssl to ctx, a context of another site or certificate set: the
 * certificate, the session id context, the store and CA names follow the
 * context; the verification mode and parameters and the bound on the
 * client's certificate message, which an SSL copies when it is made, are
 * copied again. */
static bool switch_ctx(SSL *ssl, SSL_CTX *ctx)
{
    if (SSL_set_SSL_CTX(ssl, ctx) != ctx)
        return false;
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    /* The bound on the client's certificate message, copied too. */
    SSL_set_max_cert_list(ssl, SSL_CTX_get_max_cert_list(ctx));
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    uint32_t saved = X509_VERIFY_PARAM_get_inh_flags(p);
    X509_VERIFY_PARAM_set_inh_flags(p, X509_VP_FLAG_OVERWRITE | X509_VP_FLAG_RESET_FLAGS);
    int ok = X509_VERIFY_PARAM_inherit(p, SSL_CTX_get0_param(ctx));
    X509_VERIFY_PARAM_set_inh_flags(p, saved);
    return ok == 1;
}

/*
 * The first thing OpenSSL does with a ClientHello, before it looks at an
 * offered session: pick the site by SNI (an sni entry naming it, else the
 * listener's own), then its certificate set, and move the handshake to
 * that context. A session is resumed only under the context it was made
 * in (its id context names the site), and the client is verified under
 * the site's settings. A second ClientHello (after a HelloRetryRequest)
 * must name the same site.
 */
static int client_hello_cb(SSL *ssl, int *alert, void *arg)
{
    struct tls_server *s = arg;
    struct tls_verdict *v = tls_verdict_of(ssl);
    const unsigned char *ext = NULL;
    size_t ext_len = 0;
    char name[256];
    bool has_name = SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1 &&
                    tls_sni_from_hello(ext, ext_len, name, sizeof(name));
    size_t len = has_name ? strlen(name) : 0;
    size_t site = has_name ? config_site_for_name(s->l, name, len) : 0;
    if (site >= s->n_sites)
        site = 0;
    if (v != NULL)
        v->sni_hash = has_name ? tls_name_hash(name, len) : 0;
    /* A certificate's names have no trailing dot. */
    if (len > 1 && name[len - 1] == '.')
        name[len - 1] = '\0';
    const struct tls_site *st = &s->sites[site];
    const struct tls_bucket *b = has_name ? bucket_for_name(st, name) : NULL;
    /* strict_sni refuses in sni_cb, where OpenSSL has the name for the
     * log line. */
    if (b == NULL && site == 0 && s->strict_sni && v != NULL)
        v->sni_fail = "unknown_sni";
    if (v != NULL) {
        if (v->site_chosen != 0 && v->site_chosen != site + 1) {
            *alert = SSL_AD_ILLEGAL_PARAMETER;
            return SSL_CLIENT_HELLO_ERROR;
        }
        v->site_chosen = site + 1;
    }
    SSL_CTX *want = (b != NULL ? b : &st->buckets[0])->ctx;
    if (SSL_get_SSL_CTX(ssl) != want && !switch_ctx(ssl, want)) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* The name was judged by client_hello_cb: refused with strict_sni when
 * no site and no certificate names it (a hello without a name too), else
 * acknowledged, which keeps it in the session (TLS 1.2 resumption reads
 * it from there). With strict_sni a ClientHello must name something. */
static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    struct tls_verdict *v = tls_verdict_of(ssl);
    if (v == NULL || v->sni_fail == NULL)
        return SSL_TLSEXT_ERR_OK;
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int version_from_name(const char *s)
{
    static const struct {
        const char *name;
        int version;
    } map[] = {{"TLSv1", TLS1_VERSION},
               {"TLSv1.1", TLS1_1_VERSION},
               {"TLSv1.2", TLS1_2_VERSION},
               {"TLSv1.3", TLS1_3_VERSION}};
    for (size_t i = 0; i < TG_ARRAY_LEN(map); i++)
        if (strcmp(s, map[i].name) == 0)
            return map[i].version;
    return -1;
}

static void diag_ssl(struct diag *d, const struct config *cfg, struct cfg_pos pos, const char *key,
                     const char *what)
{
    char err[256] = "unknown error";
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, err, sizeof(err));
    ERR_clear_error();
    diag_add(d, DIAG_ERROR, cfg->path, pos.line, pos.col, key, "%s: %s", what, err);
}

/* Versions, ciphers and groups of the listener's policy. */
static bool apply_policy(SSL_CTX *ctx, const struct config *cfg, const struct cfg_listener *l,
                         struct diag *d)
{
    const struct cfg_tls *t = &l->tls;
    char key[128];
    int min = TLS1_2_VERSION, max = 0;
    const char *ciphers = TLS12_CIPHERS, *suites = TLS13_SUITES;

    snprintf(key, sizeof(key), "listeners.%s.tls.policy", l->name);
    if (t->policy == CFG_POLICY_MODERN) {
        min = TLS1_3_VERSION;
    } else if (t->policy == CFG_POLICY_CUSTOM) {
        if (t->min_version != NULL)
            min = version_from_name(t->min_version);
        if (t->max_version != NULL)
            max = version_from_name(t->max_version);
        if (min < 0 || max < 0) {
            diag_add(d, DIAG_ERROR, cfg->path, t->pos.line, t->pos.col, key,
                     "unknown TLS version (expected TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3)");
            return false;
        }
        if (t->ciphers != NULL)
            ciphers = t->ciphers;
        if (t->ciphersuites != NULL)
            suites = t->ciphersuites;
    }
    /* Old versions need SHA-1 signatures in the handshake; the level of
     * client chain verification stays pinned (tls_ctx_set_verify_level). */
    if (min < TLS1_2_VERSION)
        SSL_CTX_set_security_level(ctx, 0);
    if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max)) {
        diag_ssl(d, cfg, t->pos, key, "cannot set the TLS versions");
        return false;
    }
    if (!SSL_CTX_set_cipher_list(ctx, ciphers)) {
        diag_ssl(d, cfg, t->pos, key, "no usable cipher in the TLS 1.2 cipher list");
        return false;
    }
    if (!SSL_CTX_set_ciphersuites(ctx, suites)) {
        diag_ssl(d, cfg, t->pos, key, "bad TLS 1.3 cipher suite list");
        return false;
    }
    if (!SSL_CTX_set1_groups_list(ctx, t->groups ? t->groups : DEFAULT_GROUPS)) {
        diag_ssl(d, cfg, t->pos, key, "bad groups list");
        return false;
    }
    return true;
}

/* Feeds the bytes of a file to md, not its name: the nodes of a fleet keep
 * the same bundle under different paths and resume each other's sessions.
 * A file that cannot be read adds its name only (loading has already
 * refused such a config). */
static void digest_file(EVP_MD_CTX *md, const char *path)
{
    char *data = NULL, err[128];
    size_t len = 0;
    if (tg_read_file(path, 16u << 20, &data, &len, err, sizeof(err)) != TG_OK) {
        EVP_DigestUpdate(md, path, strlen(path) + 1);
        return;
    }
    EVP_DigestUpdate(md, data, len);
    free(data);
}

/*
 * A session may resume only where it was made (RFC 8446 §4.6.1 lets us
 * refuse it, and the id context is how): the session id context binds a
 * session (and a ticket, whose keys outlive reloads) to the listener, to
 * the site that judged it (its index and names) and to that site's client
 * verification settings: mode, depth and the CA bundle by content.
 * Revocation and allow-lists are not in it: every resumption is judged
 * again under the current CRLs and list (session.c), so a change refuses
 * the sessions of the clients it concerns, not everybody's.
 */
static void set_session_context(SSL_CTX *ctx, const struct cfg_listener *l,
                                const struct tls_site *site)
{
    const struct cfg_site *t = site->cfg;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char material[512];
    int n = snprintf(material, sizeof(material), "%s|%zu|%d|%d|%u", l->name, site->index,
                     (int)t->mode, (int)t->client_auth, t->verify_depth);
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (m == NULL || !EVP_DigestInit_ex(m, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(m);
        EVP_Digest(material, (size_t)n, md, &md_len, EVP_sha256(), NULL);
    } else {
        EVP_DigestUpdate(m, material, (size_t)n);
        for (size_t i = 0; i < t->n_names; i++)
            EVP_DigestUpdate(m, t->names[i], strlen(t->names[i]) + 1);
        if (t->mode == CFG_TLS_MUTUAL && t->client_ca != NULL)
            digest_file(m, t->client_ca->ca);
        EVP_DigestFinal_ex(m, md, &md_len);
        EVP_MD_CTX_free(m);
    }
    if (md_len > SSL_MAX_SID_CTX_LENGTH)
        md_len = SSL_MAX_SID_CTX_LENGTH;
    SSL_CTX_set_session_id_context(ctx, md, md_len);
}

/* Makes ctx verify clients under trust: its store and the CA names sent
 * in the CertificateRequest. */
static bool use_trust(SSL_CTX *ctx, const struct tls_trust *trust)
{
    STACK_OF(X509_NAME) *dup = SSL_dup_CA_list(tls_trust_names(trust));
    if (dup == NULL)
        return false;
    SSL_CTX_set1_cert_store(ctx, tls_trust_store(trust));
    SSL_CTX_set_client_CA_list(ctx, dup);
    return true;
}

static bool setup_client_auth(SSL_CTX *ctx, const struct cfg_site *t, const struct tls_trust *trust)
{
    int mode = SSL_VERIFY_PEER;
    if (t->client_auth == CFG_CLIENT_AUTH_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, tls_verify_client_cb);
    if (!use_trust(ctx, trust))
        return false;
    /* verify_depth is the number of intermediate CAs allowed between the
     * client's certificate and the self-signed root its chain ends at (an
     * intermediate that is in the CA bundle still counts), which is what
     * OpenSSL's depth limit counts (SSL_CTX_set_verify_depth(3): depth N
     * allows levels 0..N+1, leaf and root included). One more is refused
     * with X509_V_ERR_CERT_CHAIN_TOO_LONG: reason chain_too_long. */
    SSL_CTX_set_verify_depth(ctx, (int)t->verify_depth);
    tls_ctx_set_verify_level(ctx);
    X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_CLIENT);
    if (t->client_ca->crl != NULL)
        X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
    /* What one client's chain may cost in memory, kept by OpenSSL for the
     * connection whether or not it verifies. */
    SSL_CTX_set_max_cert_list(ctx, TLS_MAX_CLIENT_CHAIN);
    return true;
}

/* RFC 7301: the protocols of an https listener's alpn setting, h2 first
 * (the server's preference); a client that offers none of them gets no
 * ALPN answer rather than a refusal, and speaks HTTP/1.1. arg is the
 * listener's cfg_listener.alpn bits. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    unsigned bits = (unsigned)(uintptr_t)arg;
    const unsigned char *ours = both;
    unsigned ours_len = sizeof(both) - 1;
    if (bits == CFG_ALPN_H2)
        ours_len = 3;
    else if (bits == CFG_ALPN_HTTP1) {
        ours = both + 3;
        ours_len -= 3;
    }
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, ours_len, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *new_ctx(struct tls_site *site, const struct config *cfg,
                        const struct cfg_listener *l, const struct ticket_shm *tickets,
                        struct diag *d)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        return NULL;
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Whole records, and several at once, per read() (as nginx): without it
     * OpenSSL reads a record's 5-byte header, then its body. Bytes can then
     * wait inside OpenSSL while the socket is not readable: readers stop
     * only at TG_E_AGAIN (see struct side's can_read). */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Room for four full records per read(): half the read() calls of an
     * upload (docs/PERFORMANCE.md). With SSL_MODE_RELEASE_BUFFERS the
     * buffer exists only while it holds bytes, so idle connections do not
     * pay for it. */
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    /* Stateless tickets only: a per-process cache could not be shared. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    if (SSL_CTX_set_ex_data(ctx, site_index(), site) != 1 ||
        tls_ticket_use(ctx, tickets) != TG_OK || tls_session_use(ctx, &site->policy) != TG_OK) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    set_session_context(ctx, l, site);
    SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, site->server);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    if (l->protocol == CFG_PROTO_HTTPS)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, (void *)(uintptr_t)l->alpn);
    if (!apply_policy(ctx, cfg, l, d)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static bool same_names(X509 *a, X509 *b)
{
    unsigned char *da = NULL, *db = NULL;
    GENERAL_NAMES *ga = X509_get_ext_d2i(a, NID_subject_alt_name, NULL, NULL);
    GENERAL_NAMES *gb = X509_get_ext_d2i(b, NID_subject_alt_name, NULL, NULL);
    int la = ga ? i2d_GENERAL_NAMES(ga, &da) : 0;
    int lb = gb ? i2d_GENERAL_NAMES(gb, &db) : 0;
    bool same = la == lb && (la <= 0 || memcmp(da, db, (size_t)la) == 0);
    if (la == 0 && lb == 0)
        same = X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) == 0;
    OPENSSL_free(da);
    OPENSSL_free(db);
    GENERAL_NAMES_free(ga);
    GENERAL_NAMES_free(gb);
    return same;
}

static struct tls_bucket *bucket_for(struct tls_site *s, X509 *leaf, int key_type)
{
    for (size_t i = 0; i < s->n_buckets; i++) {
        struct tls_bucket *b = &s->buckets[i];
        bool type_taken = false;
        for (size_t k = 0; k < b->n_key_types; k++)
            type_taken = type_taken || b->key_types[k] == key_type;
        if (!type_taken && b->n_key_types < TG_ARRAY_LEN(b->key_types) && same_names(b->leaf, leaf))
            return b;
    }
    return NULL;
}

static bool add_certificate(struct tls_site *s, const struct config *cfg,
                            const struct cfg_listener *l, const struct cfg_certificate *c,
                            const struct ticket_shm *tickets, const struct ocsp_shm *ocsp,
                            struct diag *d)
{
    struct tls_chain chain = {0};
    bool ok = false;
    char key[160];
    snprintf(key, sizeof(key), "certificates.%s", c->name);
    if (tls_load_certificate(cfg, c, &chain, d) != TG_OK)
        goto out;
    int key_type = EVP_PKEY_get_base_id(chain.key);
    struct tls_bucket *b = bucket_for(s, chain.leaf, key_type);
    if (b == NULL) {
        b = &s->buckets[s->n_buckets];
        b->ctx = new_ctx(s, cfg, l, tickets, d);
        if (b->ctx == NULL)
            goto out;
        X509_up_ref(chain.leaf);
        b->leaf = chain.leaf;
        s->n_buckets++;
    }
    if (SSL_CTX_use_certificate(b->ctx, chain.leaf) != 1 ||
        SSL_CTX_set1_chain(b->ctx, chain.chain) != 1 ||
        SSL_CTX_use_PrivateKey(b->ctx, chain.key) != 1 || SSL_CTX_check_private_key(b->ctx) != 1) {
        diag_ssl(d, cfg, c->pos, key, "cannot use this certificate and key");
        goto out;
    }
    if (tls_ocsp_staple(b->ctx, chain.leaf, ocsp, (size_t)(c - cfg->certificates)) != TG_OK) {
        diag_ssl(d, cfg, c->pos, key, "cannot set up OCSP stapling");
        goto out;
    }
    b->key_types[b->n_key_types++] = key_type;
    ok = true;
out:
    tls_chain_fini(&chain);
    return ok;
}

/* Loads the allow file of a site that has its own list (a reload keeps
 * the previous list when this fails). */
static enum tg_status load_allow_file(struct tls_site *site, struct diag *d)
{
    const char *path = site->cfg->allow_file;
    if (path == NULL || site->allow_owner != site)
        return TG_OK;
    struct cfg_allow fresh = {0};
    struct tls_file_sig sig;
    tls_file_sig_get(path, &sig);
    if (config_allow_file_load(path, &fresh, d) != TG_OK)
        return TG_E_CONFIG;
    config_allow_fini(&site->allow_file);
    site->allow_file = fresh;
    site->allow_sig = sig;
    site->has_allow_failed = false;
    return TG_OK;
}

static bool build_site(struct tls_server *s, size_t i, const struct config *cfg,
                       const struct ticket_shm *tickets, const struct ocsp_shm *ocsp,
                       struct diag *d)
{
    const struct cfg_listener *l = s->l;
    struct tls_site *site = &s->sites[i];
    const struct cfg_site *t = &l->tls.sites[i];
    site->server = s;
    site->index = i;
    site->cfg = t;
    site->policy.lifetime_s = l->tls.session_lifetime_ms / 1000;
    if (t->allow_site != NULL)
        site->allow_owner = &s->sites[(size_t)(t->allow_site - l->tls.sites)];
    if (load_allow_file(site, d) != TG_OK)
        return false;
    site->buckets = calloc(t->n_certificates ? t->n_certificates : 1, sizeof(*site->buckets));
    if (site->buckets == NULL)
        return false;
    for (size_t k = 0; k < t->n_certificates; k++)
        if (!add_certificate(site, cfg, l, t->certificates[k], tickets, ocsp, d))
            return false;
    if (site->n_buckets == 0)
        return false;
    if (t->mode != CFG_TLS_MUTUAL)
        return true;
    site->policy.ocsp_mode = t->client_ca->ocsp;
    site->policy.ocsp_responder = t->client_ca->ocsp_responder;
    if (tls_trust_load(cfg, t->client_ca, &site->policy.trust, d) != TG_OK)
        return false;
    for (size_t k = 0; k < site->n_buckets; k++)
        if (!setup_client_auth(site->buckets[k].ctx, t, site->policy.trust))
            return false;
    return true;
}

enum tg_status tls_server_new(const struct config *cfg, const struct cfg_listener *l,
                              const struct ticket_shm *tickets, const struct ocsp_shm *ocsp,
                              struct tls_server **out, struct diag *d)
{
    const struct cfg_tls *t = &l->tls;
    enum tg_status st = TG_E_CONFIG;
    struct tls_server *s = calloc(1, sizeof(*s));
    *out = NULL;
    site_index();
    if (s == NULL)
        return TG_E_NOMEM;
    s->l = l;
    s->strict_sni = t->strict_sni;
    s->sites = calloc(t->n_sites ? t->n_sites : 1, sizeof(*s->sites));
    if (s->sites == NULL || t->n_sites == 0) {
        st = s->sites == NULL ? TG_E_NOMEM : TG_E_CONFIG;
        goto out;
    }
    s->n_sites = t->n_sites;
    for (size_t i = 0; i < s->n_sites; i++)
        if (!build_site(s, i, cfg, tickets, ocsp, d))
            goto out;
    *out = s;
    s = NULL;
    st = TG_OK;
out:
    tls_server_free(s);
    return st;
}

size_t tls_server_n_sites(const struct tls_server *s)
{
    return s->n_sites;
}

struct tls_trust *tls_server_trust(const struct tls_server *s, size_t site)
{
    return site < s->n_sites ? s->sites[site].policy.trust : NULL;
}

enum tg_status tls_server_set_trust(struct tls_server *s, size_t site, struct tls_trust *trust)
{
    struct tls_site *st = site < s->n_sites ? &s->sites[site] : NULL;
    if (st == NULL || st->policy.trust == NULL || trust == NULL)
        return TG_E_INTERNAL;
    /* Every context or none: the CA lists are made first. */
    STACK_OF(X509_NAME) **lists = calloc(st->n_buckets, sizeof(*lists));
    bool ok = lists != NULL;
    for (size_t i = 0; ok && i < st->n_buckets; i++)
        ok = (lists[i] = SSL_dup_CA_list(tls_trust_names(trust))) != NULL;
    if (!ok) {
        for (size_t i = 0; lists != NULL && i < st->n_buckets; i++)
            sk_X509_NAME_pop_free(lists[i], X509_NAME_free);
        free(lists);
        return TG_E_NOMEM;
    }
    for (size_t i = 0; i < st->n_buckets; i++) {
        SSL_CTX_set1_cert_store(st->buckets[i].ctx, tls_trust_store(trust));
        SSL_CTX_set_client_CA_list(st->buckets[i].ctx, lists[i]);
    }
    free(lists);
    tls_trust_unref(st->policy.trust);
    st->policy.trust = tls_trust_ref(trust);
    return TG_OK;
}

enum tg_status tls_server_allow_poll(struct tls_server *s, size_t site, char *err, size_t err_len)
{
    struct tls_site *st = site < s->n_sites ? &s->sites[site] : NULL;
    err[0] = '\0';
    if (st == NULL || st->allow_owner != st || st->cfg->allow_file == NULL)
        return TG_E_AGAIN;
    struct tls_file_sig now;
    tls_file_sig_get(st->cfg->allow_file, &now);
    if (memcmp(&now, &st->allow_sig, sizeof(now)) == 0 ||
        (st->has_allow_failed && memcmp(&now, &st->allow_failed_sig, sizeof(now)) == 0))
        return TG_E_AGAIN;
    struct diag d;
    diag_init(&d);
    enum tg_status r = load_allow_file(st, &d);
    if (r != TG_OK) {
        st->has_allow_failed = true;
        st->allow_failed_sig = now;
        for (size_t i = 0; i < d.n; i++) {
            if (d.v[i].level == DIAG_ERROR) {
                diag_format(&d, i, err, err_len);
                break;
            }
        }
    }
    diag_fini(&d);
    return r;
}

bool tls_server_allow_owner(const struct tls_server *s, size_t site, size_t *owner)
{
    const struct tls_site *st = site < s->n_sites ? &s->sites[site] : NULL;
    if (st == NULL || st->allow_owner == NULL)
        return false;
    *owner = st->allow_owner->index;
    return true;
}

void tls_server_free(struct tls_server *s)
{
    if (s == NULL)
        return;
    for (size_t k = 0; s->sites != NULL && k < s->n_sites; k++) {
        struct tls_site *site = &s->sites[k];
        for (size_t i = 0; i < site->n_buckets; i++) {
            SSL_CTX_free(site->buckets[i].ctx);
            X509_free(site->buckets[i].leaf);
        }
        free(site->buckets);
        tls_trust_unref(site->policy.trust);
        config_allow_fini(&site->allow_file);
    }
    free(s->sites);
    free(s);
}

void tls_server_set_ocsp_cache(struct tls_server *s, struct tls_ocsp_cache *cache)
{
    for (size_t i = 0; i < s->n_sites; i++) {
        struct tls_session_policy *p = &s->sites[i].policy;
        p->ocsp_cache = p->ocsp_mode != CFG_CLIENT_OCSP_OFF ? cache : NULL;
    }
}

SSL *tls_server_ssl_new(struct tls_server *s, int fd)
{
    SSL *ssl = SSL_new(s->sites[0].buckets[0].ctx);
    if (ssl == NULL)
        return NULL;
    /* The handshake as an async job, so that the verify callback can
     * pause it for an OCSP lookup (ocsp_judge); cleared once it is done. */
    for (size_t i = 0; i < s->n_sites; i++) {
        if (s->sites[i].policy.ocsp_cache != NULL) {
            SSL_set_mode(ssl, SSL_MODE_ASYNC);
            break;
        }
    }
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}
