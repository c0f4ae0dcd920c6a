/* The pickers: smooth wrr, weighted least_conn and weighted consistent
 * hashing of the client address; health and passive ejection on top. */
#include "lb/internal.h"

#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Slots of a private table, for a state made without a shared one. */
#define LB_PRIVATE_SLOTS 1024

enum tg_status lb_wrr_init(struct lb_wrr *w, const struct cfg_target_group *g)
{
    w->group = g;
    w->current = calloc(g->n_targets ? g->n_targets : 1, sizeof(*w->current));
    return w->current ? TG_OK : TG_E_NOMEM;
}

void lb_wrr_fini(struct lb_wrr *w)
{
    free(w->current);
    w->current = NULL;
    w->group = NULL;
}

/* The first n targets only. */
static int wrr_pick_n(struct lb_wrr *w, const bool *skip, size_t n)
{
    const struct cfg_target_group *g = w->group;
    long total = 0;
    int best = -1;
    for (size_t i = 0; i < n && i < g->n_targets; i++) {
        long weight = (long)g->targets[i].weight;
        if (weight == 0 || (skip != NULL && skip[i]))
            continue;
        w->current[i] += weight;
        total += weight;
        if (best < 0 || w->current[i] > w->current[best])
            best = (int)i;
    }
    if (best >= 0)
        w->current[best] -= total;
    return best;
}

int lb_wrr_pick(struct lb_wrr *w, const bool *skip)
{
    return wrr_pick_n(w, skip, w->group->n_targets);
}

static uint64_t mix64(uint64_t x)
{
    /* splitmix64's finaliser: every input bit moves every output bit. */
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

static uint64_t hash_bytes(const void *p, size_t len)
{
    const unsigned char *b = p;
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= UINT64_C(0x100000001b3);
    }
    return mix64(h);
}

void lb_state_free(struct lb_state *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->groups != NULL && i < s->cfg->n_target_groups; i++) {
        lb_wrr_fini(&s->groups[i].wrr);
        free(s->groups[i].slot);
        free(s->groups[i].hash);
        free(s->groups[i].mine);
    }
    free(s->groups);
    if (s->is_private)
        lb_shared_free(s->sh);
    free(s);
}

enum tg_status lb_state_new(const struct config *cfg, struct lb_shared *sh, struct lb_state **out)
{
    *out = NULL;
    struct lb_state *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return TG_E_NOMEM;
    s->cfg = cfg;
    s->sh = sh;
    if (sh == NULL) {
        s->sh = lb_shared_new(LB_PRIVATE_SLOTS);
        s->is_private = s->sh != NULL;
        if (s->sh != NULL)
            (void)lb_shared_register(s->sh, cfg);
    }
    s->groups = calloc(cfg->n_target_groups + 1, sizeof(*s->groups));
    if (s->groups == NULL)
        goto fail;
    for (size_t i = 0; i < cfg->n_target_groups; i++) {
        struct lb_group *lg = &s->groups[i];
        const struct cfg_target_group *g = &cfg->target_groups[i];
        size_t n = g->n_targets ? g->n_targets : 1;
        lg->g = g;
        lg->name_hash = hash_bytes(g->name, strlen(g->name));
        lg->slot = calloc(n, sizeof(*lg->slot));
        lg->hash = calloc(n, sizeof(*lg->hash));
        lg->mine = calloc(n, sizeof(*lg->mine));
        if (lg->slot == NULL || lg->hash == NULL || lg->mine == NULL ||
            lb_wrr_init(&lg->wrr, g) != TG_OK)
            goto fail;
        for (size_t j = 0; j < g->n_targets; j++) {
            const char *addr = g->targets[j].address ? g->targets[j].address : "";
            lg->slot[j] = lb_shared_find(s->sh, g->name, addr);
            lg->hash[j] = hash_bytes(addr, strlen(addr));
        }
    }
    *out = s;
    return TG_OK;
fail:
    lb_state_free(s);
    return TG_E_NOMEM;
}

struct lb_group *lb_group_of(struct lb_state *s, const struct cfg_target_group *g)
{
    if (g < s->cfg->target_groups || g >= s->cfg->target_groups + s->cfg->n_target_groups)
        return NULL;
    return &s->groups[g - s->cfg->target_groups];
}

struct lb_slot *lb_target_slot(struct lb_state *s, const struct cfg_target_group *g, int t)
{
    struct lb_group *lg = lb_group_of(s, g);
    if (lg == NULL || t < 0 || (size_t)t >= g->n_targets || lg->slot[t] < 0 || s->sh == NULL)
        return NULL;
    return &s->sh->slots[lg->slot[t]];
}

static int32_t active_of(struct lb_state *s, struct lb_group *lg, size_t t)
{
    if (lg->slot[t] < 0 || s->sh == NULL)
        return 0;
    int32_t a = atomic_load_explicit(&s->sh->slots[lg->slot[t]].active, memory_order_relaxed);
    return a > 0 ? a : 0;
}

/* Fewest active connections per unit of weight; ties share by wrr so that
 * an idle group still spreads by weight. */
static int pick_least_conn(struct lb_state *s, struct lb_group *lg, bool *skip, size_t n)
{
    const struct cfg_target_group *g = lg->g;
    int best = -1;
    int64_t best_a = 0, best_w = 1;
    for (size_t i = 0; i < n; i++) {
        if (skip[i])
            continue;
        int64_t a = active_of(s, lg, i), w = g->targets[i].weight;
        /* a / w < best_a / best_w, without division */
        if (best < 0 || a * best_w < best_a * w) {
            best = (int)i;
            best_a = a;
            best_w = w;
        }
    }
    if (best < 0)
        return LB_NONE;
    for (size_t i = 0; i < n; i++) {
        if (!skip[i] && active_of(s, lg, i) * best_w != best_a * (int64_t)g->targets[i].weight)
            skip[i] = true;
    }
    return wrr_pick_n(&lg->wrr, skip, n);
}

/* The address bytes of the client, without the port. */
static uint64_t client_hash(const struct net_addr *a)
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
        return hash_bytes(&in->sin_addr, sizeof(in->sin_addr));
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
        return hash_bytes(&in6->sin6_addr, sizeof(in6->sin6_addr));
    }
    return 0;
}

/*
 * Weighted rendezvous hashing: each target scores -w / ln(u), u uniform in
 * (0,1) from hash(client, target); the highest wins. A target's share is
 * its weight over the total, and adding or removing one target moves only
 * the clients that it wins or held, about 1/N of them.
 */
static int pick_ip_hash(struct lb_group *lg, const struct net_addr *client, const bool *skip,
                        size_t n)
{
    const struct cfg_target_group *g = lg->g;
    uint64_t ch = client_hash(client);
    int best = -1;
    double best_score = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip[i])
            continue;
        uint64_t h = mix64(ch ^ lg->hash[i]);
        double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* 2^53 */
        double score = -(double)g->targets[i].weight / log(u);
        if (best < 0 || score > best_score) {
            best = (int)i;
            best_score = score;
        }
    }
    return best < 0 ? LB_NONE : best;
}

/* Targets past the cap are never picked. */
static int pick_algorithm(struct lb_state *s, struct lb_group *lg, const struct net_addr *client,
                          bool *mask, size_t n)
{
    switch (lg->g->algorithm) {
    case CFG_LB_LEAST_CONN:
        return pick_least_conn(s, lg, mask, n);
    case CFG_LB_IP_HASH:
        if (client != NULL && client_hash(client) != 0)
            return pick_ip_hash(lg, client, mask, n);
        return wrr_pick_n(&lg->wrr, mask, n);
    case CFG_LB_WRR:
    default:
        return wrr_pick_n(&lg->wrr, mask, n);
    }
}

#define STICKY_PROBES 8

static uint64_t sticky_key(const struct lb_group *lg, const struct net_addr *client)
{
    uint64_t ch = client_hash(client);
    if (ch == 0)
        return 0;
    uint64_t k = mix64(ch ^ lg->name_hash);
    return k != 0 ? k : 1;
}

/* The target a client is bound to, when still eligible; refreshes it. */
static int sticky_get(struct lb_state *s, struct lb_group *lg, uint64_t key, const bool *mask,
                      size_t n, int64_t now)
{
    struct lb_shared *sh = s->sh;
    if (sh == NULL || sh->n_sticky == 0)
        return -1;
    for (size_t p = 0; p < STICKY_PROBES; p++) {
        struct lb_sticky *e = &sh->sticky[(key + p) % sh->n_sticky];
        if (atomic_load_explicit(&e->key, memory_order_relaxed) != key)
            continue;
        if (atomic_load_explicit(&e->expires_ms, memory_order_relaxed) <= now)
            return -1;
        int32_t slot = atomic_load_explicit(&e->slot, memory_order_relaxed);
        for (size_t i = 0; i < n; i++) {
            if (lg->slot[i] == slot && !mask[i]) {
                atomic_store_explicit(&e->expires_ms, now + (int64_t)lg->g->sticky.ttl_ms,
                                      memory_order_relaxed);
                return (int)i;
            }
        }
        return -1;
    }
    return -1;
}

/* Binds key to slot: its own entry, else a free or expired one, else the
 * one closest to expiry among the probes. */
static void sticky_put(struct lb_shared *sh, uint64_t key, int32_t slot, int64_t now,
                       int64_t expires)
{
    if (sh == NULL || sh->n_sticky == 0)
        return;
    struct lb_sticky *best = NULL;
    int64_t best_exp = 0;
    for (size_t p = 0; p < STICKY_PROBES; p++) {
        struct lb_sticky *e = &sh->sticky[(key + p) % sh->n_sticky];
        int64_t exp = atomic_load_explicit(&e->expires_ms, memory_order_relaxed);
        if (atomic_load_explicit(&e->key, memory_order_relaxed) == key) {
            best = e;
            break;
        }
        if (exp <= now)
            exp = INT64_MIN;
        if (best == NULL || exp < best_exp) {
            best = e;
            best_exp = exp;
        }
    }
    atomic_store_explicit(&best->key, key, memory_order_relaxed);
    atomic_store_explicit(&best->slot, slot, memory_order_relaxed);
    atomic_store_explicit(&best->expires_ms, expires, memory_order_relaxed);
}

static int pick(struct lb_state *s, const struct cfg_target_group *g, const struct net_addr *client,
                const bool *skip, int prefer, bool by_source)
{
    struct lb_group *lg = lb_group_of(s, g);
    if (lg == NULL)
        return LB_NONE;
    bool mask[CFG_MAX_TARGETS];
    size_t n = g->n_targets < CFG_MAX_TARGETS ? g->n_targets : CFG_MAX_TARGETS;
    size_t n_eligible = 0, n_up = 0;
    int64_t now = lb_now_ms();
    bool is_up[CFG_MAX_TARGETS];
    for (size_t i = 0; i < n; i++) {
        is_up[i] = false;
        mask[i] = g->targets[i].weight == 0 || (skip != NULL && skip[i]);
        if (mask[i])
            continue;
        n_eligible++;
        is_up[i] = lg->slot[i] < 0 || lb_slot_is_up(&s->sh->slots[lg->slot[i]], now);
        n_up += is_up[i];
    }
    if (n_eligible == 0)
        return LB_NONE;
    if (n_up == 0 && g->when_all_down == CFG_ALL_DOWN_REJECT)
        return LB_REJECT;
    /* fail_open: with none up, spread over all of them. */
    for (size_t i = 0; i < n && n_up > 0; i++)
        mask[i] = mask[i] || !is_up[i];
    if (prefer >= 0 && (size_t)prefer < n && !mask[prefer])
        return prefer;
    uint64_t key = 0;
    if (by_source && g->sticky.ttl_ms > 0 && client != NULL)
        key = sticky_key(lg, client);
    if (key != 0) {
        int t = sticky_get(s, lg, key, mask, n, now);
        if (t >= 0)
            return t;
    }
    int t = pick_algorithm(s, lg, client, mask, n);
    if (key != 0 && t >= 0 && lg->slot[t] >= 0)
        sticky_put(s->sh, key, lg->slot[t], now, now + (int64_t)g->sticky.ttl_ms);
    return t;
}

/* tcp_ssl has no cookies: a cookie group sticks by source address there. */
int lb_pick(struct lb_state *s, const struct cfg_target_group *g, const struct net_addr *client,
            const bool *skip)
{
    bool by_source = g->sticky.type == CFG_STICKY_SOURCE_IP || g->sticky.type == CFG_STICKY_COOKIE;
    return pick(s, g, client, skip, -1, by_source);
}

int lb_pick_prefer(struct lb_state *s, const struct cfg_target_group *g,
                   const struct net_addr *client, const bool *skip, int prefer)
{
    return pick(s, g, client, skip, prefer, g->sticky.type == CFG_STICKY_SOURCE_IP);
}

/* Counts n more (or fewer) connections of this process to target t. */
static void count_active(struct lb_state *s, struct lb_group *lg, int t, int32_t n)
{
    int k = lg->slot[t];
    atomic_fetch_add_explicit(&s->sh->slots[k].active, n, memory_order_relaxed);
    lg->mine[t] += n;
    int lane = lb_shared_lane(s->sh);
    if (lane >= 0)
        atomic_fetch_add_explicit(&s->sh->ledger[(size_t)lane * s->sh->n_slots + (size_t)k], n,
                                  memory_order_relaxed);
}

void lb_conn_begin(struct lb_state *s, const struct cfg_target_group *g, int t)
{
    struct lb_slot *sl = lb_target_slot(s, g, t);
    if (sl == NULL)
        return;
    atomic_fetch_add_explicit(&sl->conns_total, 1, memory_order_relaxed);
    count_active(s, lb_group_of(s, g), t, 1);
}

void lb_conn_end(struct lb_state *s, const struct cfg_target_group *g, int t)
{
    struct lb_group *lg = lb_group_of(s, g);
    if (lb_target_slot(s, g, t) != NULL && lg->mine[t] > 0)
        count_active(s, lg, t, -1);
}

void lb_state_drop_conns(struct lb_state *s)
{
    for (size_t i = 0; s != NULL && i < s->cfg->n_target_groups; i++) {
        struct lb_group *lg = &s->groups[i];
        for (size_t t = 0; t < lg->g->n_targets; t++) {
            if (lb_target_slot(s, lg->g, (int)t) != NULL && lg->mine[t] > 0)
                count_active(s, lg, (int)t, -lg->mine[t]);
        }
    }
}

/* One more failure in a row; at the limit, eject (only the worker that
 * reached it ejects and logs). */
static void passive_failure(struct lb_state *s, const struct cfg_target_group *g, int t,
                            const char *cause)
{
    struct lb_slot *sl = lb_target_slot(s, g, t);
    unsigned limit = g->passive.consecutive_failures;
    if (sl == NULL || limit == 0)
        return;
    uint32_t n = atomic_fetch_add_explicit(&sl->conn_fail, 1, memory_order_relaxed) + 1;
    if (n < limit)
        return;
    uint32_t want = n;
    if (!atomic_compare_exchange_strong(&sl->conn_fail, &want, 0))
        return;
    atomic_store_explicit(&sl->eject_until_ms, lb_now_ms() + (int64_t)g->passive.ejection_ms,
                          memory_order_relaxed);
    log_warn("event=target_ejected target_group=%s target=%s cause=%s failures=%u "
             "ejection_ms=%llu",
             g->name, g->targets[t].address, cause, n, (unsigned long long)g->passive.ejection_ms);
}

static void passive_success(struct lb_state *s, const struct cfg_target_group *g, int t)
{
    struct lb_slot *sl = lb_target_slot(s, g, t);
    if (sl != NULL && atomic_load_explicit(&sl->conn_fail, memory_order_relaxed) != 0)
        atomic_store_explicit(&sl->conn_fail, 0, memory_order_relaxed);
}

void lb_connect_result(struct lb_state *s, const struct cfg_target_group *g, int t, bool is_ok)
{
    if (!is_ok)
        passive_failure(s, g, t, "connect_failures");
    else if (!g->passive.count_5xx)
        passive_success(s, g, t); /* with count_5xx the response decides */
}

void lb_response_result(struct lb_state *s, const struct cfg_target_group *g, int t,
                        unsigned status)
{
    if (!g->passive.count_5xx)
        return;
    if (status >= 500 && status <= 599)
        passive_failure(s, g, t, "5xx");
    else
        passive_success(s, g, t);
}
