/*
 * What happens to a client once its handshake is accepted, beyond serving
 * it: it is noted in the trust history (trust diff replays it), and on a
 * site with client_ca_next it is judged under the next trust too, which
 * only reports: a client it would refuse is counted, shown in /status and
 * logged once an hour, and served all the same.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "proxy/history.h"
#include "proxy/session.h"
#include "proxy/worker.h"

bool session_client_verified(struct session *c)
{
    return c->ssl != NULL && SSL_get0_peer_certificate(c->ssl) != NULL &&
           c->verdict.first_error == X509_V_OK && SSL_get_verify_result(c->ssl) == X509_V_OK;
}

/* Whether the refusal of the client with fingerprint fp on listener li
 * is to be logged now: once an hour per client and worker. */
static bool next_log_due(struct worker *w, const uint8_t fp[32], uint32_t li, int64_t now)
{
    uint64_t k;
    memcpy(&k, fp, sizeof(k));
    struct next_seen *s = &w->next_seen[(k ^ li) % WORKER_NEXT_SEEN];
    bool same = s->logged != 0 && s->listener == li && memcmp(s->fp, fp, 32) == 0;
    if (same && now - s->logged < 3600)
        return false;
    memcpy(s->fp, fp, 32);
    s->listener = li;
    s->logged = now;
    return true;
}

static void judge_next(struct session *c, struct tls_trust *next, int64_t now)
{
    const char *why = tls_reverify(c->ssl, next);
    if (why == NULL || c->w->next_seen == NULL)
        return;
    X509 *leaf = SSL_get0_peer_certificate(c->ssl);
    struct tls_info info;
    tls_info_clear(&info);
    tls_cert_facts(leaf, &info);
    char peer[64];
    net_addr_format(&c->peer, peer, sizeof(peer));
    shm_count_next_refused(c->l->stats, why);
    shm_note_refusal(&c->l->stats->next_refusals, why, peer, info.client_subject,
                     info.client_issuer, (int64_t)(ev_now(c->w->loop) * 1000));
    uint8_t fp[32];
    uint32_t li = (uint32_t)(c->l - c->w->ls);
    if (!tls_cert_sha256(leaf, fp) || !next_log_due(c->w, fp, li, now))
        return;
    const struct cfg_client_ca *ca = c->l->cfg->tls.sites[c->site].client_ca_next;
    char e_subj[LOG_KV_MAX], e_ca[LOG_KV_MAX];
    log_warn("event=trust_next_refused listener=%s client_ca_next=%s reason=%s client=%s "
             "serial=%s fingerprint=%s subject=%s effect=\"accepted now; client_ca_next would "
             "refuse it\"",
             c->l->cfg->name, log_kv(e_ca, sizeof(e_ca), ca != NULL ? ca->name : "-"), why, peer,
             info.client_serial[0] ? info.client_serial : "-", info.client_fingerprint,
             log_kv(e_subj, sizeof(e_subj), info.client_subject));
}

void session_judge_accepted(struct session *c)
{
    int64_t now = (int64_t)time(NULL);
    history_note(c->w->history, c->l->cfg, c->site, c->ssl, now);
    struct tls_trust *next = c->site < c->l->n_sites ? c->l->sites[c->site].next : NULL;
    if (next != NULL)
        judge_next(c, next, now);
}
