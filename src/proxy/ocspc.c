/*
 * OCSP for client certificates, per worker: the cache of what responders
 * said, and the lookups in flight. A handshake whose leaf the cache does
 * not know is suspended in its verify callback (tls/ctx.c) and waits here,
 * on the lookup of its (issuer, serial): one fetch per certificate however
 * many handshakes wait for it. When the fetch ends (bounded: 5 s, 16 KiB,
 * http only) the answer is checked (tls_ocsp_check_ex), kept in the cache
 * and handed to every waiter, whose handshake then runs on. A waiter that
 * closes first (client gone, handshake_timeout) leaves the list; the fetch
 * goes on and its answer is cached.
 */
#include "proxy/ocspc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "core/fetch.h"
#include "core/log.h"

#define OCSPC_TIMEOUT_MS         5000
#define OCSPC_CONNECT_TIMEOUT_MS 3000
#define OCSPC_URL_MAX            1024
/* Lookups in flight per worker: beyond it a new certificate's status is
 * unavailable at once (not cached: the certificate is not at fault). */
#define OCSPC_LOOKUPS_MAX 256

struct lookup {
    struct ocspc *o;
    struct lookup *prev, *next; /* o's list */
    struct tls_cert_ref key;
    X509 *leaf, *issuer;     /* owned references */
    struct fetch_xfer *xfer; /* the fetch in flight; NULL once it ended */
    struct session *waiters; /* borrowed: the handshakes suspended for it */
};

struct ocspc {
    struct worker *w;
    struct fetch *fetch;          /* owned; NULL when libcurl could not start */
    struct tls_ocsp_cache *cache; /* owned */
    struct lookup *lookups;       /* owned list */
    size_t n_lookups;
};

struct ocspc *ocspc_new(struct worker *w)
{
    struct ocspc *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->w = w;
    o->cache = tls_ocsp_cache_new(TLS_OCSP_CACHE_ENTRIES);
    if (o->cache == NULL) {
        free(o);
        return NULL;
    }
    o->fetch = fetch_new(w->loop);
    if (o->fetch == NULL)
        log_warn("event=ocsp_client_degraded error=\"libcurl could not start\" "
                 "action=\"every OCSP status is unavailable\"");
    return o;
}

struct tls_ocsp_cache *ocspc_cache(struct ocspc *o)
{
    return o->cache;
}

static void lookup_unlink(struct lookup *lk)
{
    struct ocspc *o = lk->o;
    if (lk->prev != NULL)
        lk->prev->next = lk->next;
    else if (o->lookups == lk)
        o->lookups = lk->next;
    if (lk->next != NULL)
        lk->next->prev = lk->prev;
    lk->prev = lk->next = NULL;
    o->n_lookups--;
}

static void waiter_unlink(struct session *c)
{
    struct lookup *lk = c->ocsp_lookup;
    if (lk == NULL)
        return;
    if (c->ocsp_prev != NULL)
        c->ocsp_prev->ocsp_next = c->ocsp_next;
    else
        lk->waiters = c->ocsp_next;
    if (c->ocsp_next != NULL)
        c->ocsp_next->ocsp_prev = c->ocsp_prev;
    c->ocsp_prev = c->ocsp_next = NULL;
    c->ocsp_lookup = NULL;
}

void ocspc_free(struct ocspc *o)
{
    if (o == NULL)
        return;
    while (o->lookups != NULL) {
        struct lookup *lk = o->lookups;
        while (lk->waiters != NULL)
            waiter_unlink(lk->waiters);
        fetch_cancel(lk->xfer);
        lookup_unlink(lk);
        X509_free(lk->leaf);
        X509_free(lk->issuer);
        free(lk);
    }
    fetch_free(o->fetch);
    tls_ocsp_cache_free(o->cache);
    free(o);
}

/* The leaf's serial and subject for a log line. */
static void describe(X509 *leaf, char *serial, size_t serial_len, char *subject, size_t subject_len)
{
    struct tls_info *info = OPENSSL_malloc(sizeof(*info));
    snprintf(serial, serial_len, "-");
    snprintf(subject, subject_len, "-");
    if (info == NULL || leaf == NULL) {
        OPENSSL_free(info);
        return;
    }
    tls_info_clear(info);
    tls_cert_facts(leaf, info);
    snprintf(serial, serial_len, "%s", info->client_serial[0] ? info->client_serial : "-");
    log_kv(subject, subject_len, info->client_subject);
    OPENSSL_free(info);
}

/* No usable answer: believed for TLS_OCSP_CACHE_FAILURE_TTL, logged once
 * per certificate for that time. */
static void unavailable(struct ocspc *o, const struct tls_cert_ref *key, X509 *leaf,
                        const char *reason, const char *detail)
{
    char serial[64], subject[LOG_KV_MAX], e_detail[LOG_KV_MAX];
    tls_ocsp_cache_put(o->cache, key, TLS_OCSP_V_UNAVAILABLE,
                       (int64_t)time(NULL) + TLS_OCSP_CACHE_FAILURE_TTL);
    describe(leaf, serial, sizeof(serial), subject, sizeof(subject));
    log_warn("event=ocsp_unavailable serial=%s subject=%s reason=%s detail=%s retry_in=%ds", serial,
             subject, reason, log_kv(e_detail, sizeof(e_detail), detail),
             TLS_OCSP_CACHE_FAILURE_TTL);
}

/* Checks a responder's answer; the verdict to cache and hand over. */
static enum tls_ocsp_verdict judge(struct lookup *lk, const struct fetch_result *res)
{
    struct ocspc *o = lk->o;
    int64_t now = (int64_t)time(NULL);
    struct tls_ocsp_facts f;
    const char *reason = NULL;
    char detail[300], serial[64], subject[LOG_KV_MAX];
    if (!res->ok) {
        unavailable(o, &lk->key, lk->leaf, res->reason, res->detail);
        return TLS_OCSP_V_UNAVAILABLE;
    }
    if (tls_ocsp_check_ex(res->body, res->len, lk->leaf, lk->issuer, now,
                          TLS_OCSP_NO_NEXT_UPDATE_OK, &f, &reason, detail,
                          sizeof(detail)) != TG_OK) {
        unavailable(o, &lk->key, lk->leaf, reason, detail);
        return TLS_OCSP_V_UNAVAILABLE;
    }
    if (f.status == TLS_OCSP_UNKNOWN) {
        unavailable(o, &lk->key, lk->leaf, "status_unknown",
                    "the responder does not know this certificate");
        return TLS_OCSP_V_UNAVAILABLE;
    }
    enum tls_ocsp_verdict r = f.status == TLS_OCSP_GOOD ? TLS_OCSP_V_GOOD : TLS_OCSP_V_REVOKED;
    int64_t until = tls_ocsp_cache_until(&f, now);
    tls_ocsp_cache_put(o->cache, &lk->key, r, until);
    describe(lk->leaf, serial, sizeof(serial), subject, sizeof(subject));
    if (r == TLS_OCSP_V_REVOKED)
        log_warn("event=ocsp_client_status status=revoked serial=%s subject=%s "
                 "revocation_reason=%d cached_for=%llds",
                 serial, subject, f.revocation_reason, (long long)(until - now));
    else
        log_info("event=ocsp_client_status status=good serial=%s subject=%s cached_for=%llds",
                 serial, subject, (long long)(until - now));
    return r;
}

/* The fetch ended: every waiter's handshake runs on with the verdict. */
static void lookup_done(void *arg, const struct fetch_result *res)
{
    struct lookup *lk = arg;
    lk->xfer = NULL; /* the fetcher frees it once this returns */
    enum tls_ocsp_verdict r = judge(lk, res);
    /* Off the list first: a handshake that starts from here on finds the
     * verdict in the cache. Waiters leave one by one, so that one closing
     * while another runs unlinks itself from a list that still exists. */
    lookup_unlink(lk);
    struct session *c;
    while ((c = lk->waiters) != NULL) {
        waiter_unlink(c);
        c->verdict.ocsp_result = r;
        session_run(c);
    }
    X509_free(lk->leaf);
    X509_free(lk->issuer);
    free(lk);
}

static struct lookup *find(struct ocspc *o, const struct tls_cert_ref *key)
{
    for (struct lookup *lk = o->lookups; lk != NULL; lk = lk->next) {
        if (tls_cert_ref_equal(&lk->key, key))
            return lk;
    }
    return NULL;
}

/* Starts the fetch for v's leaf; NULL when the status is known to be
 * unavailable at once (no issuer, no URL, no HTTP client, too busy). */
static struct lookup *start(struct ocspc *o, const struct tls_verdict *v,
                            const struct tls_cert_ref *key)
{
    char url[OCSPC_URL_MAX], err[160];
    unsigned char *req = NULL;
    size_t req_len = 0;
    if (o->n_lookups >= OCSPC_LOOKUPS_MAX) {
        log_debug("event=ocsp_lookup_refused reason=busy lookups=%zu", o->n_lookups);
        return NULL;
    }
    if (v->ocsp_issuer == NULL) {
        unavailable(o, key, v->ocsp_leaf, "no_issuer",
                    "the verified chain has no issuer for the certificate");
        return NULL;
    }
    if (v->ocsp_responder != NULL)
        snprintf(url, sizeof(url), "%s", v->ocsp_responder);
    else if (!tls_ocsp_url(v->ocsp_leaf, url, sizeof(url))) {
        unavailable(o, key, v->ocsp_leaf, "no_url",
                    "the certificate names no http:// OCSP responder and the client CA sets no "
                    "ocsp_responder");
        return NULL;
    }
    if (o->fetch == NULL) {
        unavailable(o, key, v->ocsp_leaf, "no_http_client", "libcurl could not be initialised");
        return NULL;
    }
    struct lookup *lk = calloc(1, sizeof(*lk));
    if (lk == NULL || tls_ocsp_request(v->ocsp_leaf, v->ocsp_issuer, &req, &req_len) != TG_OK) {
        free(lk);
        unavailable(o, key, v->ocsp_leaf, "out_of_memory", "cannot build the OCSP request");
        return NULL;
    }
    struct fetch_req rq = {
        .url = url,
        .content_type = "application/ocsp-request",
        .accept = "application/ocsp-response",
        .body = req,
        .body_len = req_len,
        .max_response = OCSP_RESP_MAX,
        .timeout_ms = OCSPC_TIMEOUT_MS,
        .connect_timeout_ms = OCSPC_CONNECT_TIMEOUT_MS,
    };
    enum tg_status st = fetch_post(o->fetch, &rq, lookup_done, lk, &lk->xfer, err, sizeof(err));
    OPENSSL_free(req);
    if (st != TG_OK) {
        free(lk);
        unavailable(o, key, v->ocsp_leaf, st == TG_E_NOMEM ? "out_of_memory" : "unreachable", err);
        return NULL;
    }
    lk->o = o;
    lk->key = *key;
    X509_up_ref(v->ocsp_leaf);
    X509_up_ref(v->ocsp_issuer);
    lk->leaf = v->ocsp_leaf;
    lk->issuer = v->ocsp_issuer;
    lk->next = o->lookups;
    if (o->lookups != NULL)
        o->lookups->prev = lk;
    o->lookups = lk;
    o->n_lookups++;
    return lk;
}

bool ocspc_wait(struct ocspc *o, struct session *c)
{
    struct tls_verdict *v = &c->verdict;
    struct tls_cert_ref key;
    enum tls_ocsp_verdict r;
    v->ocsp_result = TLS_OCSP_V_UNAVAILABLE;
    if (o == NULL || v->ocsp_leaf == NULL || !tls_cert_ref_of(v->ocsp_leaf, &key))
        return false;
    if (tls_ocsp_cache_get(o->cache, &key, (int64_t)time(NULL), &r)) {
        v->ocsp_result = r;
        return false;
    }
    struct lookup *lk = find(o, &key);
    if (lk == NULL && (lk = start(o, v, &key)) == NULL)
        return false;
    c->ocsp_lookup = lk;
    c->ocsp_prev = NULL;
    c->ocsp_next = lk->waiters;
    if (lk->waiters != NULL)
        lk->waiters->ocsp_prev = c;
    lk->waiters = c;
    return true;
}

void ocspc_cancel(struct session *c)
{
    waiter_unlink(c);
}
