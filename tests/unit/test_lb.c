/* Smooth weighted round robin (src/lb/pick.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nginx_sequence), cmocka_unit_test(test_exact_counts),
        cmocka_unit_test(test_weight_zero),    cmocka_unit_test(test_skip),
        cmocka_unit_test(test_all_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
