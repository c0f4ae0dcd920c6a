#ifndef TG_PROXY_REJECT_H
#define TG_PROXY_REJECT_H

/* Private to src/proxy: the on_reject page (reject.c). */

#include <stdbool.h>
#include <stddef.h>

#include <openssl/x509.h>

#include "proxy/session.h"
#include "tls/tls.h"

/* on_reject: page (reject.c). Whether the listener answers refused client
 * certificates with a page; and the page: its status (495, 496, 403 for a
 * certificate that verified but is not on the allow-list), or 0 when
 * the client's certificate was accepted. *reason gets the reason code. */
bool reject_page_applies(const struct session *c);
unsigned reject_page(struct session *c, bool json, char *dst, size_t cap, const char **reason);

/* The page itself, from the facts of the client's certificate and the CA
 * names the listener accepts: HTML or JSON into dst (cap bytes, at least
 * REJECT_PAGE_MIN), always complete and terminated; names are shown cut to 256 bytes
 * and the CA list ends early rather than cut the page. Returns the status
 * (495, 496, 403) with *reason set, or 0 when info says the client verified. */
#define REJECT_PAGE_MIN 4096
unsigned reject_page_render(const struct tls_info *info, const STACK_OF(X509_NAME) *cas, bool json,
                            char *dst, size_t cap, const char **reason);

#endif
