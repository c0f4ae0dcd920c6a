#ifndef TG_HEALTH_HEALTH_H
#define TG_HEALTH_HEALTH_H

#include <ev.h>

#include "config/config.h"
#include "lb/lb.h"

/*
 * Active health checks, run by the master on its libev loop without
 * blocking: one check per target of every group with a health_check, every
 * interval, each bounded by timeout. Results go to the shared lb table
 * (enum lb_health in each target's slot), where the workers' pickers read
 * them; every check is counted there by result and kept as the slot's last
 * check (cause, detail, time) for /metrics and /status; every change of
 * state writes one log line with its cause.
 */
struct health;

/* loop and sh are borrowed and must outlive the checker. NULL when out of
 * memory. */
struct health *health_new(struct ev_loop *loop, struct lb_shared *sh);

/* Stops every check and frees the checker; in a forked worker it only lets
 * go of the master's watchers and sockets. NULL does nothing. */
void health_free(struct health *h);

/*
 * Stops the checks of the previous config and starts those of cfg
 * (borrowed until the next call; NULL stops everything). State lives in the
 * shared slots, keyed by group name and target address, so targets that
 * stay keep their health across a reload. The first check of each target
 * starts at once.
 */
void health_apply(struct health *h, const struct config *cfg);

/*
 * The tollgate_health_checks_total result of a check that passed (is_ok)
 * or failed with cause, a token of the checker: "refused", "timeout",
 * "tls_error" and "status_NNN" have results of their own; every other
 * failure ("reset", "unreachable", "connect_error", "closed",
 * "bad_response", NULL) is LB_HC_ERROR. Pure.
 */
enum lb_hc_result health_result_of(bool is_ok, const char *cause);

#endif
