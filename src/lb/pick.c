#include "lb/lb.h"

#include <stdlib.h>

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

int lb_wrr_pick(struct lb_wrr *w, const bool *skip)
{
    const struct cfg_target_group *g = w->group;
    long total = 0;
    int best = -1;
    for (size_t i = 0; i < g->n_targets; i++) {
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
