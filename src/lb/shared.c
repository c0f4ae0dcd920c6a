/* The table of target slots shared by the master and every worker. */
#include "lb/lb.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "core/log.h"

static struct lb_shared *global;
static int64_t (*clock_fn)(void);

#define STICKY_PER_SLOT 16

static size_t slots_size(size_t n)
{
    size_t sz = sizeof(struct lb_shared) + n * sizeof(struct lb_slot);
    return (sz + 63) & ~(size_t)63;
}

static size_t sticky_size(size_t n)
{
    return n * STICKY_PER_SLOT * sizeof(struct lb_sticky);
}

static size_t shared_size(size_t n)
{
    return slots_size(n) + sticky_size(n) + (size_t)LB_LANES * n * sizeof(int32_t);
}

struct lb_shared *lb_shared_new(size_t n_slots)
{
    void *p =
        mmap(NULL, shared_size(n_slots), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct lb_shared *sh = p;
    if (RAND_bytes(sh->cookie_key, sizeof(sh->cookie_key)) != 1) {
        munmap(p, shared_size(n_slots));
        return NULL;
    }
    sh->n_slots = n_slots;
    sh->n_sticky = n_slots * STICKY_PER_SLOT;
    sh->sticky = (struct lb_sticky *)((char *)p + slots_size(n_slots));
    sh->ledger = (_Atomic int32_t *)((char *)sh->sticky + sticky_size(n_slots));
    return sh;
}

void lb_shared_free(struct lb_shared *sh)
{
    if (sh == NULL)
        return;
    if (global == sh)
        global = NULL;
    munmap(sh, shared_size(sh->n_slots));
}

struct lb_shared *lb_shared_global(void)
{
    return global;
}

void lb_shared_set_global(struct lb_shared *sh)
{
    global = sh;
}

/* FNV-1a, to key names too long for a slot. */
static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static void make_key(char *dst, const char *group, const char *address)
{
    int n = snprintf(dst, LB_KEY_MAX, "%s %s", group, address);
    if (n < 0 || n >= LB_KEY_MAX) {
        uint64_t h = fnv1a(fnv1a(UINT64_C(0xcbf29ce484222325), group), " ");
        h = fnv1a(h, address);
        snprintf(dst, LB_KEY_MAX, "#%016llx", (unsigned long long)h);
    }
}

static int find_key(const struct lb_shared *sh, const char *key)
{
    for (size_t i = 0; i < sh->n_slots; i++) {
        if (sh->slots[i].key[0] != '\0' && strcmp(sh->slots[i].key, key) == 0)
            return (int)i;
    }
    return -1;
}

int lb_shared_lane(struct lb_shared *sh)
{
    static struct lb_shared *lane_sh;
    static int lane_pid, lane = -1;
    int pid = tg_pid();
    if (sh == NULL)
        return -1;
    if (lane_sh == sh && lane_pid == pid)
        return lane;
    lane_sh = sh;
    lane_pid = pid;
    lane = -1;
    for (int i = 0; i < LB_LANES; i++) {
        int32_t want = 0;
        if (atomic_compare_exchange_strong(&sh->lane_pid[i], &want, pid)) {
            lane = i;
            break;
        }
    }
    return lane;
}

void lb_shared_worker_exited(struct lb_shared *sh, int pid)
{
    for (int i = 0; sh != NULL && pid > 0 && i < LB_LANES; i++) {
        if (atomic_load(&sh->lane_pid[i]) != pid)
            continue;
        _Atomic int32_t *row = &sh->ledger[(size_t)i * sh->n_slots];
        for (size_t k = 0; k < sh->n_slots; k++) {
            int32_t n = atomic_exchange(&row[k], 0);
            if (n != 0)
                atomic_fetch_sub(&sh->slots[k].active, n);
        }
        atomic_store(&sh->lane_pid[i], 0);
    }
}

int lb_shared_find(const struct lb_shared *sh, const char *group, const char *address)
{
    if (sh == NULL || group == NULL || address == NULL)
        return -1;
    char key[LB_KEY_MAX];
    make_key(key, group, address);
    return find_key(sh, key);
}

static void slot_reset(struct lb_slot *s, const char *key)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->key, sizeof(s->key), "%s", key);
}

/* A free slot, else one no generation uses any more (its connections are
 * gone with the workers of the generations that used it). */
static int take_slot(struct lb_shared *sh, const char *key)
{
    int unused = -1;
    for (size_t i = 0; i < sh->n_slots; i++) {
        struct lb_slot *s = &sh->slots[i];
        if (s->key[0] == '\0') {
            slot_reset(s, key);
            return (int)i;
        }
        if (unused < 0 && atomic_load(&s->refs) == 0 && atomic_load(&s->active) <= 0)
            unused = (int)i;
    }
    if (unused >= 0)
        slot_reset(&sh->slots[unused], key);
    return unused;
}

bool lb_shared_register(struct lb_shared *sh, const struct config *cfg)
{
    bool is_ok = true;
    char key[LB_KEY_MAX];
    for (size_t i = 0; sh != NULL && i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        for (size_t j = 0; j < g->n_targets; j++) {
            const char *addr = g->targets[j].address;
            if (addr == NULL)
                continue;
            make_key(key, g->name, addr);
            int k = find_key(sh, key);
            if (k < 0)
                k = take_slot(sh, key);
            if (k < 0) {
                log_warn("event=lb_table_full target_group=%s target=%s slots=%zu "
                         "effect=\"no health or connection counts for this target\"",
                         g->name, addr, sh->n_slots);
                is_ok = false;
                continue;
            }
            atomic_fetch_add(&sh->slots[k].refs, 1);
        }
    }
    return is_ok;
}

void lb_shared_release(struct lb_shared *sh, const struct config *cfg)
{
    for (size_t i = 0; sh != NULL && cfg != NULL && i < cfg->n_target_groups; i++) {
        const struct cfg_target_group *g = &cfg->target_groups[i];
        for (size_t j = 0; j < g->n_targets; j++) {
            int k = lb_shared_find(sh, g->name, g->targets[j].address);
            if (k >= 0 && atomic_load(&sh->slots[k].refs) > 0)
                atomic_fetch_sub(&sh->slots[k].refs, 1);
        }
    }
}

const char *lb_hc_result_name(enum lb_hc_result r)
{
    static const char *const names[LB_HC_RESULTS] = {
        [LB_HC_PASS] = "pass",     [LB_HC_REFUSED] = "refused",     [LB_HC_TIMEOUT] = "timeout",
        [LB_HC_STATUS] = "status", [LB_HC_TLS_ERROR] = "tls_error", [LB_HC_ERROR] = "error",
    };
    return (unsigned)r < LB_HC_RESULTS ? names[r] : "error";
}

void lb_slot_note_check(struct lb_slot *s, enum lb_hc_result r, const char *cause,
                        const char *detail, int64_t unix_ms)
{
    if ((unsigned)r >= LB_HC_RESULTS)
        r = LB_HC_ERROR;
    atomic_fetch_add_explicit(&s->hc_total[r], 1, memory_order_relaxed);
    snprintf(s->hc_last_cause, sizeof(s->hc_last_cause), "%s", cause ? cause : "");
    snprintf(s->hc_last_detail, sizeof(s->hc_last_detail), "%s", detail ? detail : "");
    atomic_store_explicit(&s->hc_last_result, (int32_t)r, memory_order_relaxed);
    atomic_store_explicit(&s->hc_last_unix_ms, unix_ms, memory_order_relaxed);
}

void lb_slot_note_change(struct lb_slot *s, const char *cause, int64_t unix_ms)
{
    snprintf(s->hc_change_cause, sizeof(s->hc_change_cause), "%s", cause ? cause : "");
    atomic_store_explicit(&s->hc_change_unix_ms, unix_ms, memory_order_relaxed);
}

bool lb_slot_is_up(const struct lb_slot *s, int64_t now_ms)
{
    if (atomic_load_explicit(&s->health, memory_order_relaxed) == LB_HEALTH_DOWN)
        return false;
    return atomic_load_explicit(&s->eject_until_ms, memory_order_relaxed) <= now_ms;
}

int64_t lb_now_ms(void)
{
    if (clock_fn != NULL)
        return clock_fn();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void lb_set_clock(int64_t (*now_ms)(void))
{
    clock_fn = now_ms;
}
