#ifndef TG_PROXY_ECHO_H
#define TG_PROXY_ECHO_H

/* Private to src/proxy: the builtin:echo target (echo.c, echo_http.c). */

#include <stdbool.h>

#include "proxy/worker.h"

/* echo.c: builtin:echo; *fd gets our end of a connected socket pair whose
 * other end echoes every byte (and the EOF) back (tcp_ssl), or answers
 * every HTTP request with JSON describing it (is_http). */
TG_MUST_USE enum tg_status echo_open(struct worker *w, bool is_http, int *fd);

/* echo_http.c: serves builtin:echo for HTTP on fd (our end of the pair). */
TG_MUST_USE enum tg_status echo_http_open(struct worker *w, int fd);

#endif
