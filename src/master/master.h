#ifndef TG_MASTER_MASTER_H
#define TG_MASTER_MASTER_H

#include <stdbool.h>

/* Command-line entry points; each returns the process exit code
 * (0 success, 1 bad config or refused, 2 usage error). */

/* tollgate check -c FILE [--format json]: loads and checks the config at path
 * and reports every error, then every warning: as "file:line:col: key:
 * message" lines on stderr and a summary line, or as one JSON object on
 * stdout (diag_print_json) when is_json. Returns 0 without errors, 1 with. */
int master_cmd_check(const char *path, bool is_json);

/* tollgate demo [--dir DIR]: writes a dev PKI and config, then runs it. */
int master_cmd_demo(int argc, char **argv);

/* Runs master and workers on the config at path until stopped. Returns the
 * exit code. Used by run and demo. */
int master_run_config(const char *path);

/* Runs a fleet node (tollgate run --fleet ...): its config comes from
 * etcd through the fleet's revisions (docs/FLEET.md). */
struct fleet_opts;
int master_run_fleet(const struct fleet_opts *o);

#endif
