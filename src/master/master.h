#ifndef TG_MASTER_MASTER_H
#define TG_MASTER_MASTER_H

/* Command-line entry points; each returns the process exit code
 * (0 success, 1 bad config or refused, 2 usage error). */

/* tollgate run -c FILE: master + workers in the foreground until SIGTERM. */
int master_cmd_run(int argc, char **argv);

/* tollgate check -c FILE: every config error at once, then warnings. */
int master_cmd_check(int argc, char **argv);

/* tollgate demo [--dir DIR]: writes a dev PKI and config, then runs it. */
int master_cmd_demo(int argc, char **argv);

/* Runs master and workers on the config at path until stopped. Returns the
 * exit code. Used by run and demo. */
int master_run_config(const char *path);

#endif
