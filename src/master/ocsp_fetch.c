/*
 * The master's OCSP fetcher: for each certificate that staples, it asks the
 * responder named in the certificate (RFC 6960 Appendix A: an HTTP POST of
 * the DER request) or reads its ocsp_file, checks what comes back
 * (tls_ocsp_check) and publishes it into the generation's shared slots,
 * which the workers' status callbacks read. Transfers run on the master's
 * libev loop through libcurl's multi interface, so a slow or silent
 * responder never holds up the admin endpoint, health checks or reloads.
 */
#include "master/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fetch.h"
#include "core/log.h"
#include "tls/tls.h"

#define OCSP_FETCH_TIMEOUT_MS   5000 /* a whole transfer */
#define OCSP_CONNECT_TIMEOUT_MS 3000
#define OCSP_RETRY_FIRST        2.0   /* seconds after a first failure; doubles each time */
#define OCSP_RETRY_MAX          300.0 /* the longest wait between two attempts */
#define OCSP_REFRESH_MIN        2.0   /* never ask again sooner than this after a success */
#define OCSP_FILE_POLL          1.0   /* how often an ocsp_file is looked at (stat) */
#define OCSP_URL_MAX            1024

enum src { SRC_NONE, SRC_URL, SRC_FILE };

/* One certificates: entry. */
struct entry {
    struct ocsp_fetch *f;
    size_t slot;
    const struct cfg_certificate *c; /* borrowed from the config */
    enum src src;
    X509 *leaf;   /* owned */
    X509 *issuer; /* owned */
    char url[OCSP_URL_MAX];
    unsigned char *req; /* owned (OPENSSL_malloc): the DER request, the same every time */
    size_t req_len;
    /* The response being stapled, the master's copy (owned; NULL: none). */
    uint8_t *der;
    size_t len;
    struct tls_ocsp_facts facts;
    struct fetch_xfer *xfer; /* the transfer in progress (at most one), or NULL */
    double backoff;          /* the wait after the next failure */
    ev_timer next;           /* the next fetch, or the next look at the file */
    ev_timer expire;         /* at the staple's nextUpdate */
    struct stat seen;        /* the file as last read */
    bool has_seen;
    bool is_missing; /* its absence was logged */
};

struct ocsp_fetch {
    struct ev_loop *loop;
    const struct config *cfg;
    struct ocsp_shm *shm;
    struct fetch *fetch; /* owned; NULL when libcurl could not start */
    struct entry *v;     /* owned array, one per cfg->certificates */
    size_t n;
};

bool ocsp_fetch_global_init(void)
{
    return fetch_global_init();
}

void ocsp_fetch_global_fini(void)
{
    fetch_global_fini();
}

static const char *src_name(enum src s)
{
    return s == SRC_FILE ? "file" : "responder";
}

static void fmt_time(int64_t t, char *dst, size_t len)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (gmtime_r(&s, &tm) == NULL || strftime(dst, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(dst, len, "%lld", (long long)t);
}

/* Publishes state and the master's copy of the response, keeping the slot's
 * last error. */
static void publish(struct entry *e, enum ocsp_state state)
{
    struct ocsp_info info;
    memset(&info, 0, sizeof(info));
    struct ocsp_info old;
    if (ocsp_shm_info(e->f->shm, e->slot, &old)) {
        memcpy(info.last_error, old.last_error, sizeof(info.last_error));
        info.last_error_at = old.last_error_at;
    }
    info.state = state;
    bool has = state == OCSP_STATE_GOOD || state == OCSP_STATE_REVOKED;
    if (has) {
        info.this_update = e->facts.this_update;
        info.next_update = e->facts.next_update;
        info.updated_at = (int64_t)time(NULL);
    }
    (void)ocsp_shm_publish(e->f->shm, e->slot, &info, has ? e->der : NULL, has ? e->len : 0);
}

static void drop_staple(struct entry *e)
{
    free(e->der);
    e->der = NULL;
    e->len = 0;
    ev_timer_stop(e->f->loop, &e->expire);
    publish(e, OCSP_STATE_NONE);
}

static void arm(struct ev_loop *loop, ev_timer *t, double after, double repeat)
{
    ev_timer_stop(loop, t);
    ev_timer_set(t, after > 0 ? after : 0., repeat);
    ev_timer_start(loop, t);
}

/* A response that passed every check becomes the staple. */
static void accept_response(struct entry *e, const uint8_t *der, size_t len,
                            const struct tls_ocsp_facts *facts, const char *via)
{
    uint8_t *copy = malloc(len);
    if (copy == NULL) {
        log_err("event=ocsp_fetch_failed cert=%s reason=out_of_memory action=%s", e->c->name,
                e->der ? "keep_last" : "no_staple");
        return;
    }
    memcpy(copy, der, len);
    free(e->der);
    e->der = copy;
    e->len = len;
    e->facts = *facts;
    bool is_revoked = facts->status == TLS_OCSP_REVOKED;
    publish(e, is_revoked ? OCSP_STATE_REVOKED : OCSP_STATE_GOOD);
    int64_t now = (int64_t)time(NULL);
    arm(e->f->loop, &e->expire, (double)(facts->next_update - now), 0.);
    char this_s[32], next_s[32], rev_s[32];
    fmt_time(facts->this_update, this_s, sizeof(this_s));
    fmt_time(facts->next_update, next_s, sizeof(next_s));
    if (is_revoked) {
        /* Stapled all the same: it is the CA's signed, current word, and a
         * client that reads it must refuse the certificate. */
        fmt_time(facts->revoked_at, rev_s, sizeof(rev_s));
        log_err("event=ocsp_revoked cert=%s source=%s revoked_at=%s revocation_reason=%d "
                "this_update=%s next_update=%s action=staple_revoked hint=\"replace this "
                "certificate\"",
                e->c->name, via, rev_s, facts->revocation_reason, this_s, next_s);
        return;
    }
    log_info("event=ocsp_updated cert=%s status=good source=%s this_update=%s next_update=%s "
             "bytes=%zu",
             e->c->name, via, this_s, next_s, len);
}

/* Records a failure; the staple, if any, stays until its nextUpdate. */
static void failed(struct entry *e, const char *reason, const char *detail, double retry_in)
{
    char msg[OCSP_ERROR_MAX];
    char esc[LOG_KV_MAX];
    snprintf(msg, sizeof(msg), "%s: %s", reason, detail);
    ocsp_shm_note_error(e->f->shm, e->slot, msg, (int64_t)time(NULL));
    if (retry_in > 0)
        log_warn("event=ocsp_fetch_failed cert=%s source=%s reason=%s detail=%s action=%s "
                 "retry_in=%.0fs",
                 e->c->name, src_name(e->src), reason, log_kv(esc, sizeof(esc), detail),
                 e->der ? "keep_last" : "no_staple", retry_in);
    else
        log_warn("event=ocsp_fetch_failed cert=%s source=%s reason=%s detail=%s action=%s",
                 e->c->name, src_name(e->src), reason, log_kv(esc, sizeof(esc), detail),
                 e->der ? "keep_last" : "no_staple");
}

/* Checks a response; true when it became the staple. */
static bool take(struct entry *e, const uint8_t *der, size_t len, const char *via, double retry_in)
{
    struct tls_ocsp_facts facts;
    const char *reason = NULL;
    char detail[300];
    if (tls_ocsp_check(der, len, e->leaf, e->issuer, (int64_t)time(NULL), &facts, &reason, detail,
                       sizeof(detail)) != TG_OK) {
        failed(e, reason, detail, retry_in);
        return false;
    }
    if (facts.status == TLS_OCSP_UNKNOWN) {
        failed(e, "status_unknown", "the responder does not know this certificate", retry_in);
        return false;
    }
    accept_response(e, der, len, &facts, via);
    return true;
}

/* ---- responders ---- */

static void retry_later(struct entry *e)
{
    arm(e->f->loop, &e->next, e->backoff, 0.);
    e->backoff = e->backoff * 2 > OCSP_RETRY_MAX ? OCSP_RETRY_MAX : e->backoff * 2;
}

/* Half-way between thisUpdate and nextUpdate (RFC 5019 §4 lets a response
 * be cached until nextUpdate; half leaves room for failures). */
static void refresh_later(struct entry *e)
{
    int64_t now = (int64_t)time(NULL);
    int64_t half = e->facts.this_update + (e->facts.next_update - e->facts.this_update) / 2;
    double after = (double)(half - now);
    arm(e->f->loop, &e->next, after < OCSP_REFRESH_MIN ? OCSP_REFRESH_MIN : after, 0.);
    e->backoff = OCSP_RETRY_FIRST;
}

static void transfer_done(void *arg, const struct fetch_result *r)
{
    struct entry *e = arg;
    double retry_in = e->backoff;
    bool ok = false;
    e->xfer = NULL; /* freed by the fetcher once this returns */
    if (r->ok)
        ok = take(e, r->body, r->len, "responder", retry_in);
    else
        failed(e, r->reason, r->detail, retry_in);
    if (ok)
        refresh_later(e);
    else
        retry_later(e);
}

static void start_fetch(struct entry *e)
{
    struct ocsp_fetch *f = e->f;
    if (e->xfer != NULL)
        return;
    if (f->fetch == NULL) {
        failed(e, "no_http_client", "libcurl could not be initialised", e->backoff);
        retry_later(e);
        return;
    }
    struct fetch_req rq = {
        .url = e->url,
        .content_type = "application/ocsp-request",
        .accept = "application/ocsp-response",
        .body = e->req,
        .body_len = e->req_len,
        .max_response = OCSP_RESP_MAX,
        .timeout_ms = OCSP_FETCH_TIMEOUT_MS,
        .connect_timeout_ms = OCSP_CONNECT_TIMEOUT_MS,
    };
    char err[128];
    enum tg_status st = fetch_post(f->fetch, &rq, transfer_done, e, &e->xfer, err, sizeof(err));
    if (st != TG_OK) {
        failed(e, st == TG_E_NOMEM ? "out_of_memory" : "unreachable", err, e->backoff);
        retry_later(e);
    }
}

/* ---- files ---- */

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Reads the file when it changed (or on the first look). */
static void look_at_file(struct entry *e)
{
    struct stat st;
    const char *path = e->c->ocsp_file;
    char err[300];
    if (stat(path, &st) != 0) {
        if (!e->is_missing) { /* once, until the file comes back */
            snprintf(err, sizeof(err), "%s: %s", path, strerror(errno));
            failed(e, "unreadable", err, 0);
        }
        e->is_missing = true;
        e->has_seen = false;
        return;
    }
    e->is_missing = false;
    if (e->has_seen && same_file(&st, &e->seen))
        return;
    e->seen = st;
    e->has_seen = true;
    uint8_t *buf = malloc(OCSP_RESP_MAX);
    size_t len = 0;
    if (buf == NULL) {
        e->has_seen = false; /* try again at the next look */
        return;
    }
    if (tls_ocsp_read_file(path, buf, OCSP_RESP_MAX, &len, err, sizeof(err)) != TG_OK) {
        char detail[400];
        snprintf(detail, sizeof(detail), "%s: %s", path, err);
        failed(e, "unreadable", detail, 0);
    } else {
        (void)take(e, buf, len, "file", 0);
    }
    free(buf);
}

/* ---- timers ---- */

static void next_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct entry *e = t->data;
    if (e->src == SRC_FILE)
        look_at_file(e);
    else if (e->src == SRC_URL)
        start_fetch(e);
}

static void expire_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct entry *e = t->data;
    int64_t now = (int64_t)time(NULL);
    if (e->der == NULL)
        return;
    if (now < e->facts.next_update) { /* the monotonic timer ran ahead of the wall clock */
        arm(loop, t, (double)(e->facts.next_update - now), 0.);
        return;
    }
    char next_s[32];
    fmt_time(e->facts.next_update, next_s, sizeof(next_s));
    log_warn("event=ocsp_expired cert=%s next_update=%s action=no_staple", e->c->name, next_s);
    ocsp_shm_note_error(e->f->shm, e->slot, "expired: no fresh response before nextUpdate", now);
    drop_staple(e);
}

/* ---- set-up ---- */

/* The same certificate, issuer and source in the generation before. */
static const struct entry *previous(const struct ocsp_fetch *prev, const struct entry *e)
{
    for (size_t i = 0; prev != NULL && i < prev->n; i++) {
        const struct entry *p = &prev->v[i];
        if (p->src != e->src || p->leaf == NULL || p->der == NULL)
            continue;
        if (X509_cmp(p->leaf, e->leaf) != 0 || X509_cmp(p->issuer, e->issuer) != 0)
            continue;
        if (e->src == SRC_URL && strcmp(p->url, e->url) != 0)
            continue;
        if (e->src == SRC_FILE && strcmp(p->c->ocsp_file, e->c->ocsp_file) != 0)
            continue;
        return p;
    }
    return NULL;
}

/* Finds the source and the issuer of entry e; SRC_NONE when it does not
 * staple. */
static void entry_init(struct ocsp_fetch *f, struct entry *e, const struct ocsp_fetch *prev)
{
    const struct cfg_certificate *c = e->c;
    struct tls_chain chain = {0};
    struct diag d;
    e->src = SRC_NONE;
    if (c->ocsp == CFG_OCSP_OFF)
        return;
    diag_init(&d);
    enum tg_status st = tls_load_certificate(f->cfg, c, &chain, &d);
    diag_fini(&d); /* reported when the config was checked */
    if (st != TG_OK)
        return;
    if (c->ocsp_file != NULL)
        e->src = SRC_FILE;
    else if (tls_ocsp_url(chain.leaf, e->url, sizeof(e->url)))
        e->src = SRC_URL;
    X509 *issuer = tls_ocsp_issuer(chain.leaf, chain.chain);
    if (e->src != SRC_NONE && issuer == NULL) {
        log_warn("event=ocsp_unavailable cert=%s reason=no_issuer detail=\"the issuer of the "
                 "certificate is not in %s; add it after the certificate to staple\"",
                 c->name, c->cert);
        publish(e, OCSP_STATE_NONE);
        ocsp_shm_note_error(f->shm, e->slot,
                            "no_issuer: the issuer of the certificate is not in its file",
                            (int64_t)time(NULL));
        e->src = SRC_NONE;
    }
    if (e->src == SRC_NONE) {
        tls_chain_fini(&chain);
        return;
    }
    X509_up_ref(chain.leaf);
    X509_up_ref(issuer);
    e->leaf = chain.leaf;
    e->issuer = issuer;
    tls_chain_fini(&chain);
    e->backoff = OCSP_RETRY_FIRST;
    publish(e, OCSP_STATE_NONE);
    if (e->src == SRC_URL && tls_ocsp_request(e->leaf, e->issuer, &e->req, &e->req_len) != TG_OK) {
        failed(e, "out_of_memory", "cannot build the OCSP request", 0);
        e->src = SRC_NONE;
        return;
    }
    const struct entry *p = previous(prev, e);
    int64_t now = (int64_t)time(NULL);
    if (p != NULL && p->facts.next_update > now)
        accept_response(e, p->der, p->len, &p->facts, "previous_generation");
    if (e->src == SRC_FILE) {
        arm(f->loop, &e->next, 0., OCSP_FILE_POLL);
    } else if (e->der != NULL) {
        refresh_later(e);
    } else {
        arm(f->loop, &e->next, 0., 0.);
    }
}

struct ocsp_fetch *ocsp_fetch_new(struct ev_loop *loop, const struct config *cfg,
                                  struct ocsp_shm *shm, const struct ocsp_fetch *prev)
{
    struct ocsp_fetch *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->loop = loop;
    f->cfg = cfg;
    f->shm = shm;
    f->n = cfg->n_certificates;
    f->v = calloc(f->n + 1, sizeof(*f->v));
    if (f->v == NULL) {
        free(f);
        return NULL;
    }
    f->fetch = fetch_new(loop);
    for (size_t i = 0; i < f->n; i++) {
        struct entry *e = &f->v[i];
        e->f = f;
        e->slot = i;
        e->c = &cfg->certificates[i];
        ev_init(&e->next, next_cb);
        e->next.data = e;
        ev_init(&e->expire, expire_cb);
        e->expire.data = e;
        entry_init(f, e, prev);
    }
    return f;
}

void ocsp_fetch_free(struct ocsp_fetch *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        struct entry *e = &f->v[i];
        ev_timer_stop(f->loop, &e->next);
        ev_timer_stop(f->loop, &e->expire);
        fetch_cancel(e->xfer);
        e->xfer = NULL;
        OPENSSL_free(e->req);
        free(e->der);
        X509_free(e->leaf);
        X509_free(e->issuer);
    }
    fetch_free(f->fetch);
    free(f->v);
    free(f);
}

void ocsp_fetch_forget(struct ocsp_fetch *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        ev_timer_stop(f->loop, &f->v[i].next);
        ev_timer_stop(f->loop, &f->v[i].expire);
    }
    fetch_forget(f->fetch);
}
