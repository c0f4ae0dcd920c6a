#include "fleet/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/ticket.h"
#include "fleet/b64.h"
#include "fleet/cache.h"
#include "fleet/internal.h"
#include "fleet/seal.h"

#define POLL_EVERY         5.0 /* seconds: a full look even when the watch is quiet */
#define VIEW_EVERY         2.0
#define BACKOFF_MIN        0.25
#define BACKOFF_MAX        5.0
#define FLEET_KEYS_KEPT    4 /* staged, encrypting, two before */
#define WAIT_SLICE_MS      250
#define AGENT_SEND_WAIT_MS 30000 /* the master reads at once, unless busy loading a revision */

/* ---- messages ---- */

bool fleet_msg_send(int fd, const json_t *msg, int wait_ms)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    if (text == NULL)
        return true; /* nothing written: the framing holds */
    size_t len = strlen(text);
    if (len > FLEET_MSG_MAX) {
        log_warn("event=fleet_message_dropped bytes=%zu limit=%u", len, FLEET_MSG_MAX);
        free(text);
        return true;
    }
    bool ok = true;
    uint8_t hdr[4] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
                      (uint8_t)len};
    struct {
        const void *p;
        size_t n;
    } parts[2] = {{hdr, 4}, {text, len}};
    for (size_t i = 0; ok && i < 2; i++) {
        const uint8_t *p = parts[i].p;
        size_t n = parts[i].n;
        while (n > 0) {
            ssize_t w = write(fd, p, n);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                /* The peer is our own process: it reads soon, or is stuck
                 * and the message is dropped with the connection. */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                if (wait_ms > 0 && poll(&pfd, 1, wait_ms) == 1)
                    continue;
                ok = false;
                break;
            }
            if (w <= 0) {
                ok = false;
                break;
            }
            p += w;
            n -= (size_t)w;
        }
    }
    free(text);
    return ok;
}

json_t *fleet_msg_next(struct fleet_msg_reader *r, int fd, bool *closed)
{
    *closed = false;
    for (;;) {
        if (r->len >= 4) {
            size_t n = (size_t)r->buf[0] << 24 | (size_t)r->buf[1] << 16 | (size_t)r->buf[2] << 8 |
                       r->buf[3];
            if (n > FLEET_MSG_MAX) {
                *closed = true;
                return NULL;
            }
            if (r->len >= 4 + n) {
                json_error_t jerr;
                json_t *j = json_loadb((const char *)r->buf + 4, n, 0, &jerr);
                memmove(r->buf, r->buf + 4 + n, r->len - 4 - n);
                r->len -= 4 + n;
                if (!json_is_object(j)) {
                    json_decref(j);
                    *closed = true;
                    return NULL;
                }
                return j;
            }
        }
        if (r->cap - r->len < 65536) {
            /* Doubling, up to what the largest message and one read past
             * it need. */
            size_t most = FLEET_MSG_MAX + 4 + 65536;
            size_t cap = r->cap ? r->cap * 2 : 65536;
            if (cap > most)
                cap = most;
            if (cap <= r->cap) {
                *closed = true;
                return NULL;
            }
            uint8_t *b = realloc(r->buf, cap);
            if (b == NULL) {
                *closed = true;
                return NULL;
            }
            r->buf = b;
            r->cap = cap;
        }
        ssize_t got = read(fd, r->buf + r->len, r->cap - r->len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return NULL;
        if (got <= 0) {
            *closed = true;
            return NULL;
        }
        r->len += (size_t)got;
    }
}

void fleet_msg_reader_fini(struct fleet_msg_reader *r)
{
    free(r->buf);
    memset(r, 0, sizeof(*r));
}

/* ---- the agent ---- */

struct rev_id {
    int64_t rev;
    char sha[65];
};

static bool rev_id_is(const struct rev_id *r, const struct fleet_head *h)
{
    return r->rev == h->rev && strcmp(r->sha, h->sha) == 0;
}

static void rev_id_set(struct rev_id *r, int64_t rev, const char *sha)
{
    r->rev = rev;
    snprintf(r->sha, sizeof(r->sha), "%s", sha ? sha : "");
}

struct agent {
    const struct fleet_opts *o;
    int fd;
    struct etcd *e;
    struct fleet_secret secret;
    bool has_secret;
    struct fleet_msg_reader rd;

    /* Revisions by number and digest: etcd restored from a backup may hold
     * another revision under a number already seen. */
    struct rev_id running; /* what the master runs */
    struct rev_id asked;   /* what the master is applying; rev 0: none */
    struct rev_id refused; /* the newest revision refused (by the master, or unreadable) */
    char head_err[512];    /* why P/head did not parse, logged once */
    int64_t lease;         /* 0: none */
    double lease_renew_at; /* when to renew */
    json_t *state;         /* the node's entry as the master last described it */
    bool is_state_dirty;
    bool is_leader;
    int64_t leader_mod_rev;
    uint64_t rotation_ms;
    int64_t keys_mod_rev; /* of P/tickets/keys as last read */
    bool is_broken;       /* the connection to the master is */
    bool is_name_taken;   /* another host's node writes P/nodes/NAME */
    uint64_t keys_due;    /* unix seconds: the leader's next rotation; 0: not leading */
    char keys_sent[65];   /* which set the master has: fleet_sha256_hex of its names */
    bool want_head, want_keys, want_view;
    double next_poll, next_view;
    bool is_etcd_up;
    char etcd_err[512];
    double backoff, retry_at;
    struct etcd_watch *watch;
    double watch_started, watch_retry_at, watch_backoff;
    char k_head[512], k_node[512], k_leader[512], k_keys[512], prefix_slash[512];
};

/* A message to the master. One that could not be written whole breaks the
 * framing: the agent leaves (and the master starts another). */
static bool to_master(struct agent *a, const json_t *m)
{
    if (a->is_broken || fleet_msg_send(a->fd, m, AGENT_SEND_WAIT_MS))
        return !a->is_broken;
    log_err("event=fleet_agent_exit node=%s reason=master_unreachable", a->o->node);
    a->is_broken = true;
    return false;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void etcd_down(struct agent *a, const char *what)
{
    if (a->is_etcd_up || strcmp(a->etcd_err, etcd_error(a->e)) != 0)
        log_warn("event=fleet_etcd_unavailable node=%s during=%s error=\"%s\" action=retry",
                 a->o->node, what, etcd_error(a->e));
    snprintf(a->etcd_err, sizeof(a->etcd_err), "%s", etcd_error(a->e));
    a->is_etcd_up = false;
    a->backoff = a->backoff == 0 ? BACKOFF_MIN : a->backoff * 2;
    if (a->backoff > BACKOFF_MAX)
        a->backoff = BACKOFF_MAX;
    a->retry_at = now_s() + a->backoff;
    etcd_watch_free(a->watch);
    a->watch = NULL;
}

static void etcd_up(struct agent *a)
{
    if (!a->is_etcd_up)
        log_info("event=fleet_etcd_available node=%s endpoint=%s", a->o->node, etcd_endpoint(a->e));
    a->is_etcd_up = true;
    a->backoff = 0;
    a->etcd_err[0] = '\0';
}

static void send_view(struct agent *a, json_t *view)
{
    /* A view that would not fit one message is left out (the node's own
     * facts still go): fleet status reads the whole of it from etcd. */
    char *text = view != NULL ? json_dumps(view, JSON_COMPACT) : NULL;
    if (text == NULL || strlen(text) > FLEET_MSG_MAX - 65536) {
        json_decref(view);
        view = NULL;
    }
    free(text);
    json_t *m = json_pack("{s:s,s:o,s:s,s:s,s:b}", "t", "view", "view", view ? view : json_null(),
                          "etcd", a->is_etcd_up ? "up" : "down", "error", a->etcd_err, "name_taken",
                          a->is_name_taken);
    if (m != NULL)
        to_master(a, m);
    json_decref(m);
}

/* The node's entry, under the lease: put again after every change and
 * whenever the lease was granted anew. */
/* Whether P/nodes/NAME belongs to another node: under another lease, of
 * another instance (host and cache directory; the node that went before
 * this one on this host, with this cache, is replaced). */
static bool name_taken(struct agent *a, const struct etcd_kvs *kvs)
{
    if (kvs->n != 1 || kvs->v[0].lease == a->lease)
        return false;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)kvs->v[0].value, kvs->v[0].len, 0, &jerr);
    const char *host = json_string_value(json_object_get(j, "instance"));
    const char *mine = json_string_value(json_object_get(a->state, "instance"));
    bool taken = host != NULL && mine != NULL && strcmp(host, mine) != 0;
    json_decref(j);
    return taken;
}

static bool put_state(struct agent *a)
{
    if (a->state == NULL || a->lease == 0)
        return true;
    struct etcd_kvs kvs;
    if (etcd_get(a->e, a->k_node, &kvs) != TG_OK)
        return false;
    bool taken = name_taken(a, &kvs);
    etcd_kvs_free(&kvs);
    if (taken != a->is_name_taken) {
        if (taken)
            log_err("event=fleet_node_name_taken node=%s detail=\"another node (another host, or "
                    "another cache directory) uses this "
                    "name: this node's entry is not written; give it another --node\"",
                    a->o->node);
        a->is_name_taken = taken;
        a->want_view = true;
    }
    if (taken) {
        /* Shown to fleet status (under this node's lease): a name two
         * nodes use hides one of them. */
        const char *inst = json_string_value(json_object_get(a->state, "instance"));
        char key[600], h[65];
        fleet_sha256_hex(inst ? inst : "", inst ? strlen(inst) : 0, h);
        snprintf(key, sizeof(key), "%s/conflicts/%s/%.16s", a->o->prefix, a->o->node, h);
        if (etcd_put(a->e, key, inst ? inst : "", inst ? strlen(inst) : 0, a->lease) != TG_OK)
            return false;
        a->is_state_dirty = false; /* looked at again on the next full look */
        return true;
    }
    json_object_set_new(a->state, "ticket_leader", json_boolean(a->is_leader));
    char *text = json_dumps(a->state, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        return true;
    bool ok = etcd_put(a->e, a->k_node, text, strlen(text), a->lease) == TG_OK;
    free(text);
    if (ok)
        a->is_state_dirty = false;
    return ok;
}

static bool ensure_lease(struct agent *a)
{
    double now = now_s();
    if (a->lease != 0 && now < a->lease_renew_at)
        return true;
    if (a->lease != 0) {
        int64_t left = 0;
        if (etcd_lease_keepalive(a->e, a->lease, &left) != TG_OK)
            return false;
        if (left > 0) {
            a->lease_renew_at = now + (double)a->o->lease_ttl / 3.0;
            return true;
        }
        log_warn("event=fleet_lease_lost node=%s action=new_lease", a->o->node);
        a->lease = 0;
        a->is_leader = false;
    }
    if (etcd_lease_grant(a->e, (int64_t)a->o->lease_ttl, &a->lease) != TG_OK)
        return false;
    a->lease_renew_at = now + (double)a->o->lease_ttl / 3.0;
    a->is_state_dirty = true;
    a->want_keys = true;
    return true;
}

/* A newer revision than the one running: into the cache, then to the
 * master. One at a time; the newest wins. */
static bool check_head(struct agent *a)
{
    struct fleet_head head;
    char err[512];
    enum tg_status st = fleet_head_read(a->e, a->o->prefix, &head, err, sizeof(err));
    if (st == TG_E_PROTO) {
        /* etcd answers, but its head is not one: the node runs on. */
        if (strcmp(a->head_err, err) != 0)
            log_err("event=fleet_head_unreadable node=%s error=\"%s\" action=keep_serving",
                    a->o->node, err);
        snprintf(a->head_err, sizeof(a->head_err), "%s", err);
        a->want_head = false;
        return true;
    }
    if (st != TG_OK)
        return false;
    a->head_err[0] = '\0';
    a->want_head = false;
    if (head.rev == 0 || rev_id_is(&a->running, &head) || rev_id_is(&a->asked, &head) ||
        rev_id_is(&a->refused, &head))
        return true;
    struct fleet_rev r;
    st = fleet_cache_fetch(a->o->cache_dir, a->e, a->o->prefix, head.rev, head.sha,
                           a->has_secret ? &a->secret : NULL, &r, err, sizeof(err));
    if (st == TG_E_CLOSED)
        return false;
    if (st != TG_OK) {
        log_err("event=fleet_revision_unreadable node=%s revision=%" PRId64 " error=\"%s\"",
                a->o->node, head.rev, err);
        rev_id_set(&a->refused, head.rev, head.sha);
        json_t *res = json_pack("{s:s,s:I,s:b,s:s}", "t", "fetch_failed", "rev",
                                (json_int_t)head.rev, "ok", 0, "error", err);
        to_master(a, res);
        json_decref(res);
        return true;
    }
    fleet_rev_free(&r);
    if (a->asked.rev != 0)
        return true; /* asked again once the master answers */
    json_t *m =
        json_pack("{s:s,s:I,s:s}", "t", "apply", "rev", (json_int_t)head.rev, "sha256", head.sha);
    if (m != NULL && to_master(a, m))
        rev_id_set(&a->asked, head.rev, head.sha);
    json_decref(m);
    return true;
}

/* Hands the set to the master when it is not the one handed last: known
 * by its keys' names and which encrypts, not by its generation number (a
 * leader that replaced an unreadable set starts that number again). */
static bool send_keys(struct agent *a, const struct ticket_set *set, uint64_t generation)
{
    char id[65], names[TICKET_KEYS_MAX * TICKET_NAME_LEN + 8];
    size_t n = 0;
    for (size_t i = 0; i < set->n; i++, n += TICKET_NAME_LEN)
        memcpy(names + n, ticket_key_name(&set->v[i]), TICKET_NAME_LEN);
    n += (size_t)snprintf(names + n, sizeof(names) - n, "%zu", set->enc);
    fleet_sha256_hex(names, n, id);
    if (strcmp(id, a->keys_sent) == 0)
        return true;
    uint8_t raw[TICKET_KEYS_MAX * TICKET_KEY_LEN];
    for (size_t i = 0; i < set->n; i++)
        memcpy(raw + i * TICKET_KEY_LEN, set->v[i].bytes, TICKET_KEY_LEN);
    char *b64 = fleet_b64_encode(raw, set->n * TICKET_KEY_LEN);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (b64 == NULL)
        return true;
    json_t *m = json_pack("{s:s,s:s,s:I,s:I}", "t", "tickets", "keys", b64, "enc",
                          (json_int_t)set->enc, "generation", (json_int_t)generation);
    OPENSSL_cleanse(b64, strlen(b64));
    free(b64);
    if (m != NULL && to_master(a, m))
        memcpy(a->keys_sent, id, sizeof(id));
    json_decref(m);
    return true;
}

/* The leader rotates the shared keys when due (or makes the first); it
 * never starts over from nothing while a set exists, so that a change of
 * leader loses no key a ticket may still use. */
/*
 * The fleet's rotation: the new key is staged first (it decrypts only) and
 * encrypts from the next rotation on, so that every node has it before a
 * ticket needs it; a node a moment behind still opens every ticket. Kept:
 * the staged key, the one that encrypts and the two before it, so a ticket
 * resumes for two to three rotations, as on one node. The first key of a
 * fleet encrypts at once.
 */
static void fleet_rotate(struct ticket_set *set, const struct ticket_key *fresh)
{
    size_t keep = set->n < FLEET_KEYS_KEPT ? set->n + 1 : FLEET_KEYS_KEPT;
    if (set->n == FLEET_KEYS_KEPT)
        OPENSSL_cleanse(&set->v[FLEET_KEYS_KEPT - 1], sizeof(set->v[0]));
    memmove(&set->v[1], &set->v[0], (keep - 1) * sizeof(set->v[0]));
    set->v[0] = *fresh;
    set->n = keep;
    set->enc = keep > 1 ? 1 : 0;
}

/* ticket_key_rotation of the running config, in whole seconds (at least
 * one), as the sealed set records its rotation time. */
static uint64_t rotation_s(const struct agent *a)
{
    return a->rotation_ms / 1000 ? a->rotation_ms / 1000 : 1;
}

static bool lead_keys(struct agent *a, struct ticket_set *set, uint64_t *rotated_at,
                      uint64_t *generation, int64_t mod_rev)
{
    uint64_t now = (uint64_t)time(NULL);
    uint64_t every = rotation_s(a);
    if (set->n > 0 && now < *rotated_at + every)
        return true;
    /* The rotated set replaces *set only once stored: what nodes are given
     * is always what etcd holds. */
    struct ticket_key fresh;
    struct ticket_set next = *set;
    if (RAND_priv_bytes(fresh.bytes, sizeof(fresh.bytes)) != 1) {
        ticket_set_wipe(&next);
        return true;
    }
    fleet_rotate(&next, &fresh);
    OPENSSL_cleanse(&fresh, sizeof(fresh));
    char *token = fleet_tickets_seal(&a->secret, a->k_keys, &next, now, *generation + 1);
    bool ok = false;
    enum tg_status st = TG_OK;
    if (token != NULL) {
        const struct etcd_cmp cmp[] = {{a->k_keys, mod_rev}, {a->k_leader, a->leader_mod_rev}};
        const struct etcd_op op = {a->k_keys, token, strlen(token), 0};
        st = etcd_txn(a->e, cmp, 2, &op, 1, &ok);
        free(token);
    }
    if (ok) {
        ticket_set_wipe(set);
        *set = next;
        *rotated_at = now;
        (*generation)++;
        log_info("event=fleet_ticket_keys_rotated node=%s generation=%" PRIu64 " keys=%zu",
                 a->o->node, *generation, set->n);
    } else if (st == TG_OK) {
        a->want_keys = true; /* somebody else wrote (or no seal): read again */
    }
    ticket_set_wipe(&next);
    return st == TG_OK;
}

/* The election (one key under the leader's lease) and the keys. */
static bool check_keys(struct agent *a)
{
    if (!a->has_secret || a->lease == 0)
        return true;
    const struct etcd_cmp cmp = {a->k_leader, 0};
    const struct etcd_op op = {a->k_leader, a->o->node, strlen(a->o->node), a->lease};
    bool won = false;
    if (etcd_txn(a->e, &cmp, 1, &op, 1, &won) != TG_OK)
        return false;
    struct etcd_kvs kvs;
    if (etcd_get(a->e, a->k_leader, &kvs) != TG_OK)
        return false;
    bool was = a->is_leader;
    a->is_leader = kvs.n == 1 && kvs.v[0].lease == a->lease;
    a->leader_mod_rev = a->is_leader ? kvs.v[0].mod_rev : 0;
    etcd_kvs_free(&kvs);
    if (a->is_leader != was) {
        log_info("event=fleet_ticket_leader node=%s leader=%s", a->o->node,
                 a->is_leader ? "yes" : "no");
        a->is_state_dirty = true;
    }
    if (etcd_get(a->e, a->k_keys, &kvs) != TG_OK)
        return false;
    a->want_keys = false;
    struct ticket_set set;
    uint64_t rotated_at = 0, generation = 0;
    int64_t mod_rev = kvs.n == 1 ? kvs.v[0].mod_rev : 0;
    char err[256];
    memset(&set, 0, sizeof(set));
    if (kvs.n == 1 &&
        fleet_tickets_open(&a->secret, a->k_keys, (const char *)kvs.v[0].value, kvs.v[0].len, &set,
                           &rotated_at, &generation, err, sizeof(err)) != TG_OK) {
        /* Sealed with another secret, or damaged: a leader replaces it;
         * the others keep what they use. */
        log_err("event=fleet_ticket_keys_unreadable node=%s error=\"%s\" action=%s", a->o->node,
                err, a->is_leader ? "replace" : "keep_current");
        ticket_set_wipe(&set);
        rotated_at = generation = 0;
        if (!a->is_leader) {
            etcd_kvs_free(&kvs);
            return true;
        }
    }
    etcd_kvs_free(&kvs);
    a->keys_mod_rev = mod_rev;
    bool ok = true;
    if (a->is_leader)
        ok = lead_keys(a, &set, &rotated_at, &generation, mod_rev);
    /* The leader looks again when the next rotation is due, not only on
     * the next event or full look. */
    a->keys_due = a->is_leader && set.n > 0 ? rotated_at + rotation_s(a) : 0;
    if (ok && set.n > 0)
        send_keys(a, &set, generation);
    ticket_set_wipe(&set);
    return ok;
}

static bool check_view(struct agent *a)
{
    json_t *view = NULL;
    char err[512];
    if (fleet_view_read(a->e, a->o->prefix, &view, err, sizeof(err)) != TG_OK)
        return false;
    send_view(a, view);
    a->next_view = now_s() + VIEW_EVERY;
    a->want_view = false;
    return true;
}

static void on_event(void *arg, const char *key, bool is_delete, int64_t mod_rev)
{
    struct agent *a = arg;
    (void)mod_rev;
    if (strcmp(key, a->k_head) == 0)
        a->want_head = true;
    else if (strcmp(key, a->k_keys) == 0 || strcmp(key, a->k_leader) == 0)
        a->want_keys = true;
    else if (strncmp(key, a->prefix_slash, strlen(a->prefix_slash)) == 0 &&
             strstr(key, "/nodes/") != NULL)
        a->want_view = true;
    if (is_delete && strcmp(key, a->k_node) == 0)
        a->is_state_dirty = true; /* somebody removed this node's entry */
}

/* One message from the master. Returns false when it went away. */
static bool from_master(struct agent *a)
{
    for (;;) {
        bool closed = false;
        json_t *m = fleet_msg_next(&a->rd, a->fd, &closed);
        if (m == NULL)
            return !closed;
        const char *t = json_string_value(json_object_get(m, "t"));
        if (t != NULL && strcmp(t, "result") == 0) {
            int64_t rev = json_integer_value(json_object_get(m, "rev"));
            const char *sha = json_string_value(json_object_get(m, "sha256"));
            rev_id_set(json_is_true(json_object_get(m, "ok")) ? &a->running : &a->refused, rev,
                       sha);
            rev_id_set(&a->asked, 0, NULL);
            a->want_head = true; /* a newer one may have come meanwhile */
        } else if (t != NULL && strcmp(t, "retry") == 0) {
            rev_id_set(&a->refused, 0, NULL);
            a->want_head = true;
        } else if (t != NULL && strcmp(t, "state") == 0) {
            json_t *s = json_object_get(m, "state");
            if (json_is_object(s) && !json_equal(s, a->state)) {
                json_decref(a->state);
                a->state = json_deep_copy(s);
                a->is_state_dirty = true;
            }
            json_int_t r = json_integer_value(json_object_get(m, "rotation_ms"));
            if (r > 0 && (uint64_t)r != a->rotation_ms) {
                a->rotation_ms = (uint64_t)r;
                a->want_keys = true;
            }
        }
        json_decref(m);
    }
}

/* One pass of everything that is due; false when etcd failed. */
static bool step(struct agent *a)
{
    double now = now_s();
    if (now >= a->next_poll) {
        a->want_head = a->want_keys = a->want_view = true;
        a->next_poll = now + POLL_EVERY;
        a->is_state_dirty = a->is_state_dirty || a->is_name_taken;
    }
    if (now >= a->next_view)
        a->want_view = true;
    if (a->keys_due != 0 && (uint64_t)time(NULL) >= a->keys_due)
        a->want_keys = true;
    /* After a failure, etcd is back only once every look succeeded: no
     * backoff is reset by a pass that asked nothing. */
    if (!a->is_etcd_up)
        a->want_head = a->want_keys = a->want_view = true;
    if (!ensure_lease(a))
        return false;
    if (a->is_state_dirty && !put_state(a))
        return false;
    if (a->watch == NULL && now >= a->watch_retry_at) {
        /* From the store's revision now: what changes between this and the
         * full look just after is seen twice, never missed. */
        struct etcd_kvs k;
        if (etcd_get(a->e, a->k_head, &k) != TG_OK)
            return false;
        int64_t from = k.revision > 0 && k.revision < INT64_MAX ? k.revision + 1 : 0;
        etcd_kvs_free(&k);
        a->watch = etcd_watch_start(a->e, a->prefix_slash, from);
        a->watch_started = now;
        a->want_head = a->want_keys = a->want_view = true;
    }
    if (a->want_head && !check_head(a))
        return false;
    if (a->want_keys && !check_keys(a))
        return false;
    if (a->want_view && !check_view(a))
        return false;
    if (a->is_state_dirty && !put_state(a))
        return false;
    etcd_up(a);
    return true;
}

static void agent_init(struct agent *a, const struct fleet_agent_start *s)
{
    memset(a, 0, sizeof(*a));
    a->o = s->opts;
    a->fd = s->fd;
    fcntl(a->fd, F_SETFL, fcntl(a->fd, F_GETFL) | O_NONBLOCK);
    rev_id_set(&a->running, s->running_rev, s->running_sha);
    a->rotation_ms = 3600 * 1000;
    const char *p = a->o->prefix;
    fleet_key(a->k_head, sizeof(a->k_head), p, "head");
    snprintf(a->k_node, sizeof(a->k_node), "%s/nodes/%s", p, a->o->node);
    fleet_key(a->k_leader, sizeof(a->k_leader), p, "tickets/leader");
    fleet_key(a->k_keys, sizeof(a->k_keys), p, "tickets/keys");
    snprintf(a->prefix_slash, sizeof(a->prefix_slash), "%s/", p);
}

int fleet_agent_main(const struct fleet_agent_start *s)
{
    struct agent a;
    agent_init(&a, s);
    char err[256];
    if (s->opts->secret_file != NULL) {
        if (fleet_secret_load(s->opts->secret_file, &a.secret, err, sizeof(err)) == TG_OK)
            a.has_secret = true;
        else
            log_err("event=fleet_secret_unavailable node=%s error=\"%s\" "
                    "action=ticket_keys_per_node",
                    s->opts->node, err);
    }
    a.e = etcd_new(s->opts->urls, s->opts->n_urls, FLEET_TIMEOUT_MS, &s->opts->tls);
    if (a.e == NULL)
        return 1;
    a.is_etcd_up = true;
    log_info("event=fleet_agent_started node=%s prefix=%s revision=%" PRId64, s->opts->node,
             s->opts->prefix, s->running_rev);
    for (;;) {
        if (a.is_broken || !from_master(&a))
            break;
        double now = now_s();
        if (now >= a.retry_at && !step(&a)) {
            etcd_down(&a, "sync");
            send_view(&a, NULL);
        }
        if (a.watch != NULL) {
            if (etcd_watch_wait(a.watch, a.fd, WAIT_SLICE_MS, on_event, &a) != TG_OK) {
                etcd_watch_free(a.watch);
                a.watch = NULL;
                /* Ended by etcd: look again at once. One that ends soon
                 * after it started waits (the full look every few seconds
                 * goes on meanwhile), so that a gateway without watches is
                 * not asked in a loop. */
                a.want_head = a.want_keys = a.want_view = true;
                bool is_young = now_s() - a.watch_started < 2.0;
                a.watch_backoff =
                    is_young ? (a.watch_backoff == 0 ? BACKOFF_MIN : a.watch_backoff * 2) : 0;
                if (a.watch_backoff > BACKOFF_MAX)
                    a.watch_backoff = BACKOFF_MAX;
                a.watch_retry_at = now_s() + a.watch_backoff;
            }
        } else {
            struct pollfd pfd = {.fd = a.fd, .events = POLLIN};
            (void)poll(&pfd, 1, WAIT_SLICE_MS);
        }
    }
    log_info("event=fleet_agent_exit node=%s", s->opts->node);
    if (a.lease != 0 && etcd_lease_revoke(a.e, a.lease) != TG_OK)
        log_warn("event=fleet_lease_not_revoked node=%s error=\"%s\" detail=\"the node's "
                 "entry stays until its lease expires\"",
                 s->opts->node, etcd_error(a.e));
    etcd_watch_free(a.watch);
    etcd_free(a.e);
    json_decref(a.state);
    fleet_msg_reader_fini(&a.rd);
    if (a.has_secret)
        fleet_secret_wipe(&a.secret);
    return 0;
}

int fleet_agent_cmd(int argc, char **argv)
{
    static struct fleet_opts o;
    struct stat st;
    if (fstat(FLEET_AGENT_FD, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "tollgate fleet-agent: started by a fleet node's master only\n");
        return 2;
    }
    const char *urls = NULL, *running = NULL, *running_sha = "", *ttl = NULL;
    o.cache_dir = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--fleet") == 0)
            urls = v;
        else if (strcmp(k, "--prefix") == 0)
            snprintf(o.prefix, sizeof(o.prefix), "%s", v);
        else if (strcmp(k, "--node") == 0)
            o.node = v;
        else if (strcmp(k, "--cache-dir") == 0)
            o.cache_dir = v;
        else if (strcmp(k, "--secret-file") == 0)
            o.secret_file = v;
        else if (strcmp(k, "--lease-ttl") == 0)
            ttl = v;
        else if (strcmp(k, "--running") == 0)
            running = v;
        else if (strcmp(k, "--running-sha") == 0)
            running_sha = v;
        else if (strcmp(k, "--etcd-ca") == 0)
            o.tls.ca_file = v;
        else if (strcmp(k, "--etcd-cert") == 0)
            o.tls.cert_file = v;
        else if (strcmp(k, "--etcd-key") == 0)
            o.tls.key_file = v;
    }
    static char url_buf[4096];
    char err[256];
    snprintf(url_buf, sizeof(url_buf), "%s", urls ? urls : "");
    if (urls == NULL || o.node == NULL || o.cache_dir == NULL || ttl == NULL || running == NULL ||
        !fleet_parse_urls(url_buf, &o, err, sizeof(err)) || !fleet_node_name_ok(o.node) ||
        !fleet_prefix_ok(o.prefix, err, sizeof(err))) {
        fprintf(stderr, "tollgate fleet-agent: bad arguments\n");
        return 2;
    }
    o.lease_ttl = (unsigned)strtoul(ttl, NULL, 10);
    if (o.lease_ttl < 2 || o.lease_ttl > 300)
        o.lease_ttl = FLEET_LEASE_TTL;
    struct fleet_agent_start s = {&o, FLEET_AGENT_FD, strtoll(running, NULL, 10), running_sha};
    return fleet_agent_main(&s);
}
