#ifndef TG_FLEET_AGENT_H
#define TG_FLEET_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/status.h"
#include "fleet/fleet.h"

/*
 * The fleet agent: a process of its own, started by a fleet node's master,
 * that does all the talking to etcd (blocking libcurl calls, never in an
 * event loop that serves clients). It watches the prefix, brings new
 * revisions into the cache and asks the master to apply them (the newest
 * only), keeps the node's entry under a lease, takes part in the election
 * of the node that makes the ticket keys, hands the keys to the master,
 * and reads the fleet's view for /status. etcd lost: it retries with
 * backoff and catches up when it returns; the master serves on meanwhile.
 *
 * Master and agent speak over a socket pair in messages: a 4-byte
 * big-endian length, then a JSON object with a "t" member:
 *
 *   agent → master
 *     {"t":"apply","rev":N}                 revision N is in the cache
 *     {"t":"tickets","keys":B64,"enc":I,"generation":G}
 *     {"t":"view","view":{…},"etcd":"up"|"down","error":S}
 *   master → agent
 *     {"t":"result","rev":N,"ok":B,"error":S}  what applying N gave
 *     {"t":"state","state":{…},"rotation_ms":M} the node's entry, ticket
 *                                               key rotation interval
 */

#define FLEET_MSG_MAX (4u << 20)

/* Sends one message on a non-blocking fd, waiting at most wait_ms for
 * room when the socket is full (0: not at all); false when the whole of it
 * could not be written, after which the framing is broken and the
 * connection must be closed. A message over FLEET_MSG_MAX (or no memory)
 * is dropped with a log line, and true returned: nothing was written. */
bool fleet_msg_send(int fd, const json_t *msg, int wait_ms);

/* A reader of messages from a non-blocking fd. */
struct fleet_msg_reader {
    uint8_t *buf;
    size_t len, cap;
};

/* Reads what the fd has and returns the next whole message (NULL with
 * *closed false when none is complete yet, NULL with *closed true when the
 * peer closed or broke the framing). */
json_t *fleet_msg_next(struct fleet_msg_reader *r, int fd, bool *closed);
void fleet_msg_reader_fini(struct fleet_msg_reader *r);

/* The agent's end of the socket pair, in the agent process. */
#define FLEET_AGENT_FD 3

/* tollgate fleet-agent ...: the agent, as the master starts it (execv of
 * its own binary, the socket pair as FLEET_AGENT_FD). Not for people:
 * refused unless FLEET_AGENT_FD is a socket. */
int fleet_agent_cmd(int argc, char **argv);

/* What the agent starts from. */
struct fleet_agent_start {
    const struct fleet_opts *opts;
    int fd;              /* its end of the socket pair */
    int64_t running_rev; /* what the master runs now */
    const char *running_sha;
};

/* The agent's main loop; returns when the master goes away (exit code). */
int fleet_agent_main(const struct fleet_agent_start *s);

#endif
