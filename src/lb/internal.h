#ifndef TG_LB_INTERNAL_H
#define TG_LB_INTERNAL_H

/* Private to src/lb: the picker state shared by pick.c and cookie.c. */

#include "lb/lb.h"

/* One group as a worker picks in it. */
struct lb_group {
    const struct cfg_target_group *g; /* borrowed */
    struct lb_wrr wrr;
    int *slot;      /* owned, per target: index into the shared table or -1 */
    uint64_t *hash; /* owned, per target: hash of its address (ip_hash, cookies) */
    int32_t *mine;  /* owned, per target: this state's share of the shared active count */
    uint64_t name_hash;
};

struct lb_state {
    const struct config *cfg; /* borrowed */
    struct lb_shared *sh;     /* borrowed, or owned when is_private */
    bool is_private;
    struct lb_group *groups; /* owned, cfg->n_target_groups */
};

/* The state of g, NULL when g is not a group of the state's config. */
struct lb_group *lb_group_of(struct lb_state *s, const struct cfg_target_group *g);

#endif
