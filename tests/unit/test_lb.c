/* The pickers (src/lb/pick.c) and the shared target table (src/lb/shared.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "lb/lb.h"

enum { MAX_TARGETS = 8 };

struct group {
    struct cfg_target targets[MAX_TARGETS];
    struct cfg_target_group g;
};

static void group_init(struct group *gr, const unsigned *weights, size_t n)
{
    assert_true(n <= MAX_TARGETS);
    memset(gr, 0, sizeof(*gr));
    for (size_t i = 0; i < n; i++)
        gr->targets[i].weight = weights[i];
    gr->g.name = "test";
    gr->g.algorithm = CFG_LB_WRR;
    gr->g.targets = gr->targets;
    gr->g.n_targets = n;
}

/* Picks n times and counts how often each target came up. */
static void count_picks(struct lb_wrr *w, const bool *skip, size_t n, size_t *counts)
{
    memset(counts, 0, MAX_TARGETS * sizeof(*counts));
    for (size_t i = 0; i < n; i++) {
        int t = lb_wrr_pick(w, skip);
        assert_true(t >= 0 && t < MAX_TARGETS);
        counts[t]++;
    }
}

/* nginx's example: weights 5, 1, 1 give a a b a c a a, then repeat. */
static void test_nginx_sequence(void **state)
{
    (void)state;
    static const unsigned weights[] = {5, 1, 1};
    static const int want[] = {0, 0, 1, 0, 2, 0, 0};
    struct group gr;
    group_init(&gr, weights, 3);
    struct lb_wrr w;
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < TG_ARRAY_LEN(want); i++)
            assert_int_equal(lb_wrr_pick(&w, NULL), want[i]);
    lb_wrr_fini(&w);
    assert_null(w.current);
}

/* Over k * sum(weights) picks each target comes up exactly k * weight times. */
static void test_exact_counts(void **state)
{
    (void)state;
    static const unsigned weights[] = {3, 2, 0, 7, 1, 10};
    const unsigned sum = 23;
    struct group gr;
    group_init(&gr, weights, TG_ARRAY_LEN(weights));
    struct lb_wrr w;
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    size_t counts[MAX_TARGETS];
    for (unsigned k = 1; k <= 4; k++) {
        count_picks(&w, NULL, sum, counts);
        for (size_t i = 0; i < TG_ARRAY_LEN(weights); i++)
            assert_int_equal(counts[i], weights[i]);
    }
    count_picks(&w, NULL, 50 * sum, counts);
    for (size_t i = 0; i < TG_ARRAY_LEN(weights); i++)
        assert_int_equal(counts[i], 50 * weights[i]);
    lb_wrr_fini(&w);
}

/* Weight 0 drains a target: it is never picked, even when alone. */
static void test_weight_zero(void **state)
{
    (void)state;
    static const unsigned weights[] = {0, 1, 0};
    struct group gr;
    group_init(&gr, weights, 3);
    struct lb_wrr w;
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    for (int i = 0; i < 20; i++)
        assert_int_equal(lb_wrr_pick(&w, NULL), 1);
    lb_wrr_fini(&w);

    static const unsigned none[] = {0, 0};
    group_init(&gr, none, 2);
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    assert_int_equal(lb_wrr_pick(&w, NULL), -1);
    lb_wrr_fini(&w);
}

/* A skipped target is left out and the others share its turns by weight. */
static void test_skip(void **state)
{
    (void)state;
    static const unsigned weights[] = {5, 1, 1};
    struct group gr;
    group_init(&gr, weights, 3);
    struct lb_wrr w;
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    size_t counts[MAX_TARGETS];

    const bool skip_b[] = {false, true, false};
    count_picks(&w, skip_b, 6 * 10, counts);
    assert_int_equal(counts[0], 50);
    assert_int_equal(counts[1], 0);
    assert_int_equal(counts[2], 10);

    const bool skip_a[] = {true, false, false};
    count_picks(&w, skip_a, 40, counts);
    assert_int_equal(counts[0], 0);
    assert_true(counts[1] > 0 && counts[2] > 0);
    assert_int_equal(counts[1] + counts[2], 40);

    const bool skip_all_but_c[] = {true, true, false};
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_wrr_pick(&w, skip_all_but_c), 2);
    lb_wrr_fini(&w);
}

static void test_all_skipped(void **state)
{
    (void)state;
    static const unsigned weights[] = {5, 1, 1};
    struct group gr;
    group_init(&gr, weights, 3);
    struct lb_wrr w;
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    const bool skip[] = {true, true, true};
    assert_int_equal(lb_wrr_pick(&w, skip), -1);
    assert_int_equal(lb_wrr_pick(&w, skip), -1);
    /* skipping is per pick: the next unrestricted pick works again */
    assert_int_equal(lb_wrr_pick(&w, NULL), 0);
    lb_wrr_fini(&w);

    group_init(&gr, NULL, 0);
    assert_int_equal(lb_wrr_init(&w, &gr.g), TG_OK);
    assert_int_equal(lb_wrr_pick(&w, NULL), -1);
    lb_wrr_fini(&w);
}

/* ---- lb_pick over a whole config ---- */

struct cgroup {
    struct cfg_target targets[MAX_TARGETS];
    char addrs[MAX_TARGETS][32];
    struct cfg_target_group g;
    struct config cfg;
};

static void cgroup_init(struct cgroup *cg, enum cfg_lb_algo algo, const unsigned *weights, size_t n)
{
    assert_true(n <= MAX_TARGETS);
    memset(cg, 0, sizeof(*cg));
    for (size_t i = 0; i < n; i++) {
        snprintf(cg->addrs[i], sizeof(cg->addrs[i]), "10.0.0.%zu:80", i + 1);
        cg->targets[i].address = cg->addrs[i];
        cg->targets[i].weight = weights[i];
    }
    cg->g.name = "web";
    cg->g.algorithm = algo;
    cg->g.targets = cg->targets;
    cg->g.n_targets = n;
    cg->g.passive.ejection_ms = 30000;
    cg->cfg.target_groups = &cg->g;
    cg->cfg.n_target_groups = 1;
}

static struct net_addr ipv4(uint32_t host_order)
{
    struct net_addr a;
    memset(&a, 0, sizeof(a));
    struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(host_order);
    in->sin_port = htons((uint16_t)(1024 + host_order % 50000));
    a.len = sizeof(*in);
    return a;
}

static int64_t fake_now;
static int64_t fake_clock(void)
{
    return fake_now;
}

/* lb_pick with wrr is the smooth wrr: exact counts, weight 0 drained. */
static void test_pick_wrr(void **state)
{
    (void)state;
    static const unsigned weights[] = {3, 0, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 3);
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    size_t counts[MAX_TARGETS] = {0};
    for (int i = 0; i < 400; i++) {
        int t = lb_pick(s, &cg.g, NULL, NULL);
        assert_true(t >= 0 && t < 3);
        counts[t]++;
    }
    assert_int_equal(counts[0], 300);
    assert_int_equal(counts[1], 0);
    assert_int_equal(counts[2], 100);
    lb_state_free(s);
}

/* A group that is not the state's config's picks nothing. */
static void test_pick_foreign_group(void **state)
{
    (void)state;
    static const unsigned weights[] = {1};
    struct cgroup cg, other;
    cgroup_init(&cg, CFG_LB_WRR, weights, 1);
    cgroup_init(&other, CFG_LB_WRR, weights, 1);
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    assert_int_equal(lb_pick(s, &other.g, NULL, NULL), LB_NONE);
    assert_int_equal(lb_pick(s, &cg.g, NULL, NULL), 0);
    lb_state_free(s);
    lb_state_free(NULL);
}

/* Long-lived connections: each pick stays open, so least_conn fills the
 * targets in proportion to their weights. */
static void test_least_conn_long_lived(void **state)
{
    (void)state;
    static const unsigned weights[] = {2, 1, 3, 0};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_LEAST_CONN, weights, 4);
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    int open[MAX_TARGETS] = {0};
    for (int i = 0; i < 60; i++) {
        int t = lb_pick(s, &cg.g, NULL, NULL);
        assert_true(t >= 0 && t < 3);
        lb_conn_begin(s, &cg.g, t);
        open[t]++;
        /* after every full round the counts are exactly by weight */
        if ((i + 1) % 6 == 0) {
            int k = (i + 1) / 6;
            assert_int_equal(open[0], 2 * k);
            assert_int_equal(open[1], 1 * k);
            assert_int_equal(open[2], 3 * k);
        }
    }
    assert_int_equal(open[3], 0);
    /* target 1 loses all its connections: it gets the next ones */
    for (int i = 0; i < 10; i++)
        lb_conn_end(s, &cg.g, 1);
    for (int i = 0; i < 5; i++) {
        int t = lb_pick(s, &cg.g, NULL, NULL);
        assert_int_equal(t, 1);
        lb_conn_begin(s, &cg.g, t);
    }
    assert_int_equal(atomic_load(&lb_target_slot(s, &cg.g, 1)->active), 5);
    lb_state_free(s);
}

/* The counts are shared: a second worker's state sees the first one's. */
static void test_least_conn_shared(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_LEAST_CONN, weights, 2);
    struct lb_shared *sh = lb_shared_new(64);
    assert_non_null(sh);
    assert_true(lb_shared_register(sh, &cg.cfg));
    struct lb_state *w1 = NULL, *w2 = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, sh, &w1), TG_OK);
    assert_int_equal(lb_state_new(&cg.cfg, sh, &w2), TG_OK);
    for (int i = 0; i < 3; i++)
        lb_conn_begin(w1, &cg.g, 0);
    for (int i = 0; i < 3; i++) {
        int t = lb_pick(w2, &cg.g, NULL, NULL);
        assert_int_equal(t, 1);
        lb_conn_begin(w2, &cg.g, t);
    }
    lb_conn_end(w1, &cg.g, 0);
    assert_int_equal(lb_pick(w2, &cg.g, NULL, NULL), 0);
    /* a worker that exits with connections open takes its counts along,
     * and ends only what it began */
    lb_state_drop_conns(w1);
    assert_int_equal(atomic_load(&lb_target_slot(w2, &cg.g, 0)->active), 0);
    assert_int_equal(atomic_load(&lb_target_slot(w2, &cg.g, 1)->active), 3);
    lb_conn_end(w1, &cg.g, 1);
    assert_int_equal(atomic_load(&lb_target_slot(w2, &cg.g, 1)->active), 3);
    lb_state_drop_conns(NULL);
    lb_state_free(w1);
    lb_state_free(w2);
    lb_shared_free(sh);
}

/* A worker that dies with connections counted: the master takes them
 * back by its pid; a live process's counts stay. */
static void test_worker_exit_lanes(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_LEAST_CONN, weights, 2);
    struct lb_shared *sh = lb_shared_new(8);
    assert_non_null(sh);
    assert_true(lb_shared_register(sh, &cg.cfg));
    struct lb_state *me = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, sh, &me), TG_OK);
    lb_conn_begin(me, &cg.g, 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the "worker": counts three and dies without ending them */
        for (int i = 0; i < 3; i++)
            lb_conn_begin(me, &cg.g, 0);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    struct lb_slot *s0 = lb_target_slot(me, &cg.g, 0), *s1 = lb_target_slot(me, &cg.g, 1);
    assert_int_equal(atomic_load(&s0->active), 3);
    lb_shared_worker_exited(sh, (int)pid);
    assert_int_equal(atomic_load(&s0->active), 0);
    assert_int_equal(atomic_load(&s1->active), 1);
    lb_shared_worker_exited(sh, (int)pid); /* twice: nothing more */
    lb_shared_worker_exited(NULL, (int)pid);
    assert_int_equal(atomic_load(&s1->active), 1);
    lb_conn_end(me, &cg.g, 1);
    assert_int_equal(atomic_load(&s1->active), 0);
    lb_state_free(me);
    lb_shared_free(sh);
}

#define N_CLIENTS 20000

static void hash_counts(struct lb_state *s, const struct cfg_target_group *g, int *picks,
                        size_t *counts)
{
    memset(counts, 0, MAX_TARGETS * sizeof(*counts));
    for (uint32_t i = 0; i < N_CLIENTS; i++) {
        struct net_addr a = ipv4(0x0a000000u + i * 7919u);
        int t = lb_pick(s, g, &a, NULL);
        assert_true(t >= 0 && t < MAX_TARGETS);
        picks[i] = t;
        counts[t]++;
    }
}

/* ip_hash: shares follow weights (within 3 points), the same client
 * always gets the same target whatever its port. */
static void test_ip_hash_weights(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1, 2, 0};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_IP_HASH, weights, 4);
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    static int picks[N_CLIENTS];
    size_t counts[MAX_TARGETS];
    hash_counts(s, &cg.g, picks, counts);
    assert_int_equal(counts[3], 0);
    for (size_t i = 0; i < 3; i++) {
        double share = (double)counts[i] / N_CLIENTS, want = weights[i] / 4.0;
        assert_true(share > want - 0.03 && share < want + 0.03);
    }
    for (uint32_t i = 0; i < 200; i++) {
        struct net_addr a = ipv4(0x0a000000u + i * 7919u);
        struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
        in->sin_port = htons(40000);
        assert_int_equal(lb_pick(s, &cg.g, &a, NULL), picks[i]);
    }
    lb_state_free(s);
}

/* Adding a fifth of the weight moves about a fifth of the clients, all of
 * them to the new target; taking one out moves only its own clients. */
static void test_ip_hash_stability(void **state)
{
    (void)state;
    static const unsigned w4[] = {1, 1, 1, 1}, w5[] = {1, 1, 1, 1, 1};
    struct cgroup before, after;
    cgroup_init(&before, CFG_LB_IP_HASH, w4, 4);
    cgroup_init(&after, CFG_LB_IP_HASH, w5, 5);
    struct lb_state *s1 = NULL, *s2 = NULL;
    assert_int_equal(lb_state_new(&before.cfg, NULL, &s1), TG_OK);
    assert_int_equal(lb_state_new(&after.cfg, NULL, &s2), TG_OK);
    static int p1[N_CLIENTS], p2[N_CLIENTS];
    size_t counts[MAX_TARGETS];
    hash_counts(s1, &before.g, p1, counts);
    hash_counts(s2, &after.g, p2, counts);
    size_t moved = 0;
    for (size_t i = 0; i < N_CLIENTS; i++) {
        if (p1[i] != p2[i]) {
            moved++;
            assert_int_equal(p2[i], 4);
        }
    }
    double share = (double)moved / N_CLIENTS;
    assert_true(share > 0.17 && share < 0.23);

    const bool skip0[] = {true, false, false, false};
    for (uint32_t i = 0; i < N_CLIENTS; i++) {
        struct net_addr a = ipv4(0x0a000000u + i * 7919u);
        int t = lb_pick(s1, &before.g, &a, skip0);
        if (p1[i] != 0)
            assert_int_equal(t, p1[i]);
        else
            assert_true(t >= 1 && t <= 3);
    }
    lb_state_free(s1);
    lb_state_free(s2);
}

/* Down targets are left out; when all are, fail_open spreads over all and
 * reject says so. */
static void test_health_and_all_down(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 3);
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    atomic_store(&lb_target_slot(s, &cg.g, 1)->health, LB_HEALTH_DOWN);
    for (int i = 0; i < 30; i++)
        assert_int_not_equal(lb_pick(s, &cg.g, NULL, NULL), 1);
    atomic_store(&lb_target_slot(s, &cg.g, 0)->health, LB_HEALTH_DOWN);
    atomic_store(&lb_target_slot(s, &cg.g, 2)->health, LB_HEALTH_DOWN);
    size_t counts[3] = {0};
    for (int i = 0; i < 30; i++) {
        int t = lb_pick(s, &cg.g, NULL, NULL);
        assert_true(t >= 0 && t < 3);
        counts[t]++;
    }
    assert_int_equal(counts[0], 10);
    assert_int_equal(counts[1], 10);
    assert_int_equal(counts[2], 10);
    cg.g.when_all_down = CFG_ALL_DOWN_REJECT;
    assert_int_equal(lb_pick(s, &cg.g, NULL, NULL), LB_REJECT);
    /* skipped (already tried) targets are not "down": nothing eligible */
    const bool all[] = {true, true, true};
    assert_int_equal(lb_pick(s, &cg.g, NULL, all), LB_NONE);
    atomic_store(&lb_target_slot(s, &cg.g, 2)->health, LB_HEALTH_UP);
    assert_int_equal(lb_pick(s, &cg.g, NULL, NULL), 2);
    lb_state_free(s);
}

/* Passive checks: N failed connects in a row eject for the period; a
 * success in between resets the count. */
static void test_passive_ejection(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 2);
    cg.g.passive.consecutive_failures = 3;
    cg.g.passive.ejection_ms = 5000;
    fake_now = 1000;
    lb_set_clock(fake_clock);
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    lb_connect_result(s, &cg.g, 0, false);
    lb_connect_result(s, &cg.g, 0, false);
    lb_connect_result(s, &cg.g, 0, true);
    lb_connect_result(s, &cg.g, 0, false);
    lb_connect_result(s, &cg.g, 0, false);
    assert_true(lb_slot_is_up(lb_target_slot(s, &cg.g, 0), fake_now));
    lb_connect_result(s, &cg.g, 0, false);
    assert_false(lb_slot_is_up(lb_target_slot(s, &cg.g, 0), fake_now));
    for (int i = 0; i < 10; i++)
        assert_int_equal(lb_pick(s, &cg.g, NULL, NULL), 1);
    fake_now += 4999;
    assert_int_equal(lb_pick(s, &cg.g, NULL, NULL), 1);
    fake_now += 1;
    size_t counts[2] = {0};
    for (int i = 0; i < 10; i++)
        counts[lb_pick(s, &cg.g, NULL, NULL)]++;
    assert_int_equal(counts[0], 5);
    assert_int_equal(counts[1], 5);
    /* off when consecutive_failures is 0 */
    cg.g.passive.consecutive_failures = 0;
    for (int i = 0; i < 20; i++)
        lb_connect_result(s, &cg.g, 1, false);
    assert_true(lb_slot_is_up(lb_target_slot(s, &cg.g, 1), fake_now));
    lb_set_clock(NULL);
    lb_state_free(s);
}

/* A reload finds the slots of targets that stay, with their state; slots
 * of targets gone are reused once no generation holds them. */
static void test_shared_reload(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1};
    struct cgroup g1, g2;
    cgroup_init(&g1, CFG_LB_WRR, weights, 2);
    cgroup_init(&g2, CFG_LB_WRR, weights, 2);
    g2.targets[1].address = "10.9.9.9:80";
    struct lb_shared *sh = lb_shared_new(3);
    assert_non_null(sh);
    assert_true(lb_shared_register(sh, &g1.cfg));
    int k0 = lb_shared_find(sh, "web", "10.0.0.1:80");
    int k1 = lb_shared_find(sh, "web", "10.0.0.2:80");
    assert_true(k0 >= 0 && k1 >= 0 && k0 != k1);
    assert_int_equal(lb_shared_find(sh, "other", "10.0.0.1:80"), -1);
    atomic_store(&sh->slots[k0].health, LB_HEALTH_DOWN);
    assert_true(lb_shared_register(sh, &g2.cfg));
    assert_int_equal(lb_shared_find(sh, "web", "10.0.0.1:80"), k0);
    assert_int_equal(atomic_load(&sh->slots[k0].health), LB_HEALTH_DOWN);
    assert_int_equal(atomic_load(&sh->slots[k0].refs), 2);
    lb_shared_release(sh, &g1.cfg);
    /* table full (3 slots) until the old generation let go */
    g1.targets[1].address = "10.8.8.8:80";
    assert_true(lb_shared_register(sh, &g1.cfg));
    assert_int_equal(lb_shared_find(sh, "web", "10.0.0.2:80"), -1);
    assert_int_equal(lb_shared_find(sh, "web", "10.8.8.8:80"), k1);
    g1.targets[0].address = "10.7.7.7:80";
    assert_false(lb_shared_register(sh, &g1.cfg));
    lb_shared_release(NULL, &g1.cfg);
    lb_shared_free(sh);
    lb_shared_free(NULL);
}

/* Check counters and the last check live in the slot: kept by a reload
 * that keeps the target, zero in a slot reused for another target. */
static void test_check_counters(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1};
    struct cgroup g1, g2;
    cgroup_init(&g1, CFG_LB_WRR, weights, 2);
    cgroup_init(&g2, CFG_LB_WRR, weights, 2);
    g2.targets[1].address = "10.9.9.9:80";
    struct lb_shared *sh = lb_shared_new(2);
    assert_non_null(sh);
    assert_true(lb_shared_register(sh, &g1.cfg));
    int k0 = lb_shared_find(sh, "web", "10.0.0.1:80");
    int k1 = lb_shared_find(sh, "web", "10.0.0.2:80");
    struct lb_slot *s0 = &sh->slots[k0], *s1 = &sh->slots[k1];
    assert_int_equal(atomic_load(&s0->hc_last_unix_ms), 0);
    lb_slot_note_check(s0, LB_HC_PASS, "connected", NULL, 1000);
    lb_slot_note_check(s0, LB_HC_REFUSED, "refused", "Connection refused", 2000);
    lb_slot_note_check(s0, LB_HC_REFUSED, "refused", "Connection refused", 3000);
    lb_slot_note_check(s1, LB_HC_STATUS, "status_500", "expected 200-299", 4000);
    assert_int_equal(atomic_load(&s0->hc_total[LB_HC_PASS]), 1);
    assert_int_equal(atomic_load(&s0->hc_total[LB_HC_REFUSED]), 2);
    assert_int_equal(atomic_load(&s0->hc_total[LB_HC_STATUS]), 0);
    assert_int_equal(atomic_load(&s0->hc_last_result), LB_HC_REFUSED);
    assert_int_equal(atomic_load(&s0->hc_last_unix_ms), 3000);
    assert_string_equal(s0->hc_last_cause, "refused");
    assert_string_equal(s0->hc_last_detail, "Connection refused");
    assert_string_equal(s1->hc_last_cause, "status_500");

    /* reload: 10.0.0.1 stays, 10.0.0.2 goes (its slot is taken over once
     * the old generation let go) */
    lb_shared_release(sh, &g1.cfg);
    assert_true(lb_shared_register(sh, &g2.cfg));
    assert_int_equal(lb_shared_find(sh, "web", "10.0.0.1:80"), k0);
    assert_int_equal(atomic_load(&s0->hc_total[LB_HC_REFUSED]), 2);
    assert_string_equal(s0->hc_last_cause, "refused");
    assert_int_equal(lb_shared_find(sh, "web", "10.9.9.9:80"), k1);
    assert_int_equal(atomic_load(&s1->hc_total[LB_HC_STATUS]), 0);
    assert_int_equal(atomic_load(&s1->hc_last_unix_ms), 0);
    assert_string_equal(s1->hc_last_cause, "");

    /* NULL texts are empty, long ones cut, a bad result counts as error */
    lb_slot_note_check(s1, (enum lb_hc_result)99, NULL, NULL, 5000);
    assert_int_equal(atomic_load(&s1->hc_total[LB_HC_ERROR]), 1);
    assert_int_equal(atomic_load(&s1->hc_last_result), LB_HC_ERROR);
    assert_string_equal(s1->hc_last_cause, "");
    char longer[200];
    memset(longer, 'x', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    lb_slot_note_check(s1, LB_HC_TLS_ERROR, longer, longer, 6000);
    assert_int_equal(strlen(s1->hc_last_cause), LB_HC_CAUSE_MAX - 1);
    assert_int_equal(strlen(s1->hc_last_detail), LB_HC_DETAIL_MAX - 1);

    assert_string_equal(lb_hc_result_name(LB_HC_PASS), "pass");
    assert_string_equal(lb_hc_result_name(LB_HC_REFUSED), "refused");
    assert_string_equal(lb_hc_result_name(LB_HC_TIMEOUT), "timeout");
    assert_string_equal(lb_hc_result_name(LB_HC_STATUS), "status");
    assert_string_equal(lb_hc_result_name(LB_HC_TLS_ERROR), "tls_error");
    assert_string_equal(lb_hc_result_name(LB_HC_ERROR), "error");
    assert_string_equal(lb_hc_result_name(LB_HC_RESULTS), "error");
    lb_shared_free(sh);
}

/* Over-long keys are hashed, so they still tell targets apart. */
static void test_shared_long_keys(void **state)
{
    (void)state;
    char a[400], b[400];
    memset(a, 'a', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[sizeof(b) - 2] = 'b';
    static const unsigned weights[] = {1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 2);
    cg.targets[0].address = a;
    cg.targets[1].address = b;
    struct lb_shared *sh = lb_shared_new(8);
    assert_true(lb_shared_register(sh, &cg.cfg));
    int ka = lb_shared_find(sh, "web", a), kb = lb_shared_find(sh, "web", b);
    assert_true(ka >= 0 && kb >= 0 && ka != kb);
    assert_int_equal(sh->slots[ka].key[0], '#');
    lb_shared_free(sh);
}

/* sticky source_ip: a client keeps its target across pickers sharing the
 * table, moves when it is down and stays where it moved, and is free again
 * after ttl. */
static void test_sticky_source_ip(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 3);
    cg.g.sticky.type = CFG_STICKY_SOURCE_IP;
    cg.g.sticky.ttl_ms = 10000;
    fake_now = 5000;
    lb_set_clock(fake_clock);
    struct lb_shared *sh = lb_shared_new(16);
    assert_non_null(sh);
    assert_true(lb_shared_register(sh, &cg.cfg));
    struct lb_state *w1 = NULL, *w2 = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, sh, &w1), TG_OK);
    assert_int_equal(lb_state_new(&cg.cfg, sh, &w2), TG_OK);
    struct net_addr a = ipv4(0x0a010203u);
    int first = lb_pick(w1, &cg.g, &a, NULL);
    assert_true(first >= 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(lb_pick(w1, &cg.g, &a, NULL), first);
        assert_int_equal(lb_pick(w2, &cg.g, &a, NULL), first);
    }
    /* other clients still spread */
    size_t counts[3] = {0};
    for (uint32_t i = 0; i < 30; i++) {
        struct net_addr b = ipv4(0x0b000000u + i);
        counts[lb_pick(w1, &cg.g, &b, NULL)]++;
    }
    assert_true(counts[0] > 0 && counts[1] > 0 && counts[2] > 0);
    /* down: the client moves, and stays on the new target afterwards */
    atomic_store(&lb_target_slot(w1, &cg.g, first)->health, LB_HEALTH_DOWN);
    int moved = lb_pick(w2, &cg.g, &a, NULL);
    assert_true(moved >= 0 && moved != first);
    atomic_store(&lb_target_slot(w1, &cg.g, first)->health, LB_HEALTH_UP);
    for (int i = 0; i < 5; i++)
        assert_int_equal(lb_pick(w1, &cg.g, &a, NULL), moved);
    /* a tried target is not forced on the client */
    bool skip[3] = {false, false, false};
    skip[moved] = true;
    assert_int_not_equal(lb_pick(w1, &cg.g, &a, skip), moved);
    /* past ttl each pick is free: wrr then goes round */
    bool seen[3] = {false, false, false};
    for (int i = 0; i < 6; i++) {
        fake_now += 10001;
        seen[lb_pick(w1, &cg.g, &a, NULL)] = true;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    lb_set_clock(NULL);
    lb_state_free(w1);
    lb_state_free(w2);
    lb_shared_free(sh);
}

/* count_5xx: 5xx responses count as failures and other responses end the
 * streak; connects alone no longer reset it. Without it responses are
 * ignored. */
static void test_passive_5xx(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 2);
    cg.g.passive.consecutive_failures = 2;
    cg.g.passive.ejection_ms = 1000;
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    int64_t now = lb_now_ms();
    lb_response_result(s, &cg.g, 0, 503);
    lb_response_result(s, &cg.g, 0, 503);
    assert_true(lb_slot_is_up(lb_target_slot(s, &cg.g, 0), now));
    cg.g.passive.count_5xx = true;
    lb_response_result(s, &cg.g, 0, 503);
    lb_response_result(s, &cg.g, 0, 200);
    lb_response_result(s, &cg.g, 0, 500);
    assert_true(lb_slot_is_up(lb_target_slot(s, &cg.g, 0), now));
    lb_connect_result(s, &cg.g, 0, true);
    lb_response_result(s, &cg.g, 0, 599);
    assert_false(lb_slot_is_up(lb_target_slot(s, &cg.g, 0), lb_now_ms()));
    for (int i = 0; i < 4; i++)
        assert_int_equal(lb_pick(s, &cg.g, NULL, NULL), 1);
    lb_response_result(s, &cg.g, 1, 404);
    lb_response_result(s, &cg.g, 1, 600);
    assert_true(lb_slot_is_up(lb_target_slot(s, &cg.g, 1), lb_now_ms()));
    lb_state_free(s);
}

/* The value of the cookie in a Set-Cookie line, as a client sends it back. */
static void cookie_value(const char *line, const char *name, char *dst, size_t cap)
{
    const char *p = strstr(line, name);
    assert_non_null(p);
    p += strlen(name) + 1;
    const char *end = strchr(p, ';');
    assert_non_null(end);
    snprintf(dst, cap, "%s=%.*s", name, (int)(end - p), p);
}

/* Signed cookies: a client gets back the target its cookie names; forged,
 * expired, foreign and malformed cookies name none. */
static void test_sticky_cookie(void **state)
{
    (void)state;
    static const unsigned weights[] = {1, 1, 1};
    struct cgroup cg;
    cgroup_init(&cg, CFG_LB_WRR, weights, 3);
    cg.g.sticky.type = CFG_STICKY_COOKIE;
    cg.g.sticky.ttl_ms = 3600 * 1000;
    cg.g.sticky.name = "sid";
    struct lb_state *s = NULL;
    assert_int_equal(lb_state_new(&cg.cfg, NULL, &s), TG_OK);
    const int64_t now = 1700000000;
    char line[LB_COOKIE_MAX], hdr[LB_COOKIE_MAX + 64];
    assert_true(lb_cookie_header(s, &cg.g, 2, true, now, line, sizeof(line)));
    assert_non_null(strstr(line, "Set-Cookie: sid="));
    assert_non_null(strstr(line, "; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax; Secure\r\n"));
    char kv[200];
    cookie_value(line, "sid", kv, sizeof(kv));
    snprintf(hdr, sizeof(hdr), "a=b; %s; c=d", kv);
    assert_int_equal(lb_cookie_target(s, &cg.g, hdr, strlen(hdr), now), 2);
    assert_int_equal(lb_cookie_target(s, &cg.g, kv, strlen(kv), now + 3599), 2);
    /* expired */
    assert_int_equal(lb_cookie_target(s, &cg.g, kv, strlen(kv), now + 3600), -1);
    /* every byte of the value matters */
    size_t vstart = strlen("sid=");
    for (size_t i = vstart; i < strlen(kv); i++) {
        char bad[200];
        snprintf(bad, sizeof(bad), "%s", kv);
        bad[i] = bad[i] == '1' ? '2' : '1';
        assert_int_equal(lb_cookie_target(s, &cg.g, bad, strlen(bad), now), -1);
    }
    /* truncated, wrong name, no value, prefix of the name */
    assert_int_equal(lb_cookie_target(s, &cg.g, kv, strlen(kv) - 1, now), -1);
    assert_int_equal(lb_cookie_target(s, &cg.g, kv + 1, strlen(kv) - 1, now), -1);
    assert_int_equal(lb_cookie_target(s, &cg.g, "sid=", 4, now), -1);
    assert_int_equal(lb_cookie_target(s, &cg.g, "sid=1.2.3", 9, now), -1);
    assert_int_equal(lb_cookie_target(s, &cg.g, "", 0, now), -1);
    /* another group (same targets, other name) refuses it */
    struct cgroup other;
    cgroup_init(&other, CFG_LB_WRR, weights, 3);
    other.g.name = "api";
    other.g.sticky = cg.g.sticky;
    struct lb_state *s2 = NULL;
    assert_int_equal(lb_state_new(&other.cfg, NULL, &s2), TG_OK);
    assert_int_equal(lb_cookie_target(s2, &other.g, kv, strlen(kv), now), -1);
    lb_state_free(s2);
    /* the preferred target wins while eligible; down, the pick falls back */
    for (int i = 0; i < 5; i++)
        assert_int_equal(lb_pick_prefer(s, &cg.g, NULL, NULL, 2), 2);
    atomic_store(&lb_target_slot(s, &cg.g, 2)->health, LB_HEALTH_DOWN);
    for (int i = 0; i < 5; i++)
        assert_int_not_equal(lb_pick_prefer(s, &cg.g, NULL, NULL, 2), 2);
    assert_false(lb_cookie_header(s, &cg.g, 7, false, now, line, sizeof(line)));
    assert_false(lb_cookie_header(s, &cg.g, 0, false, now, line, 40));
    assert_string_equal(line, "");
    lb_state_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nginx_sequence),      cmocka_unit_test(test_exact_counts),
        cmocka_unit_test(test_weight_zero),         cmocka_unit_test(test_skip),
        cmocka_unit_test(test_all_skipped),         cmocka_unit_test(test_pick_wrr),
        cmocka_unit_test(test_pick_foreign_group),  cmocka_unit_test(test_least_conn_long_lived),
        cmocka_unit_test(test_least_conn_shared),   cmocka_unit_test(test_worker_exit_lanes),
        cmocka_unit_test(test_ip_hash_weights),     cmocka_unit_test(test_ip_hash_stability),
        cmocka_unit_test(test_health_and_all_down), cmocka_unit_test(test_passive_ejection),
        cmocka_unit_test(test_shared_reload),       cmocka_unit_test(test_shared_long_keys),
        cmocka_unit_test(test_sticky_source_ip),    cmocka_unit_test(test_passive_5xx),
        cmocka_unit_test(test_sticky_cookie),       cmocka_unit_test(test_check_counters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
