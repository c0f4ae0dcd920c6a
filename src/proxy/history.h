#ifndef TG_PROXY_HISTORY_H
#define TG_PROXY_HISTORY_H

/* A worker's record (src/proxy) of the client certificates its
 * listeners accepted (core/history.h has the format). */

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "config/config.h"

struct history;

/* In a new worker, before it drops to cfg->user: makes the history
 * directory (0700) and gives it to that user, so that the worker can write
 * there. Failures are left for history_new to report. */
void history_prepare(const struct config *cfg);

/* The worker's history, or NULL when cfg keeps none (no state_dir, or
 * trust_history 0) or it cannot be made (logged). Removes the files of
 * the history directory last written before the window. */
struct history *history_new(const struct config *cfg);
void history_free(struct history *h);

/* Notes that the verified client of ssl was accepted by site of l at unix
 * time now: written when new to this worker or not written for a day.
 * Writes a line to a local file: done at most once a day per certificate. */
void history_note(struct history *h, const struct cfg_listener *l, size_t site, SSL *ssl,
                  int64_t now);

#endif
