#ifndef TG_LB_LB_H
#define TG_LB_LB_H

#include <stddef.h>

#include "config/config.h"

/*
 * Smooth weighted round robin (nginx's algorithm): each pick adds every
 * target's weight to its current score, picks the highest and subtracts the
 * total. Over sum(weights) picks each target is chosen exactly weight times,
 * spread out rather than in bursts. Per-worker state.
 */
struct lb_wrr {
    const struct cfg_target_group *group; /* borrowed */
    long *current;                        /* owned, one per target */
};

TG_MUST_USE enum tg_status lb_wrr_init(struct lb_wrr *w, const struct cfg_target_group *g);
void lb_wrr_fini(struct lb_wrr *w);

/* Picks a target index, skipping those for which skip[i] is true (skip may
 * be NULL) and those of weight 0. Returns -1 when none is eligible. */
int lb_wrr_pick(struct lb_wrr *w, const bool *skip);

#endif
