/*
 * Who may use the admin endpoint: a request must name this endpoint in
 * Host (so that a DNS-rebound name cannot read it), must not come from a
 * web page (Origin, Sec-Fetch-Site), and must carry the bearer token when
 * one is configured. Pure functions over a parsed head; admin.c answers.
 */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin/admin.h"
#include "http/http.h"

void admin_guard_fini(struct admin_guard *g)
{
    for (size_t i = 0; i < g->n_names; i++)
        free(g->names[i]);
    free(g->names);
    OPENSSL_cleanse(g, sizeof(*g));
}

static enum tg_status add_name(struct admin_guard *g, const char *s, size_t n)
{
    char *dup = strndup(s, n);
    if (dup == NULL)
        return TG_E_NOMEM;
    g->names[g->n_names++] = dup;
    return TG_OK;
}

static bool digest(const void *p, size_t n, unsigned char out[ADMIN_TOKEN_DIGEST])
{
    unsigned int len = 0;
    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == ADMIN_TOKEN_DIGEST;
}

enum tg_status admin_guard_set(struct admin_guard *g, const struct config *cfg)
{
    struct admin_guard n = {0};
    enum tg_status st = TG_E_NOMEM;
    n.names = calloc(cfg->n_admin_server_names + 2, sizeof(*n.names));
    if (n.names == NULL)
        goto out;
    /* The listen address as a Host: "127.0.0.1:9901" or "[::1]:9901"
     * without the port. */
    char addr[64];
    net_addr_format(&cfg->admin_addr, addr, sizeof(addr));
    const char *colon = strrchr(addr, ':');
    if (add_name(&n, addr, colon ? (size_t)(colon - addr) : strlen(addr)) != TG_OK ||
        add_name(&n, "localhost", 9) != TG_OK)
        goto out;
    for (size_t i = 0; i < cfg->n_admin_server_names; i++)
        if (add_name(&n, cfg->admin_server_names[i], strlen(cfg->admin_server_names[i])) != TG_OK)
            goto out;
    if (cfg->admin_token != NULL) {
        if (!digest(cfg->admin_token, cfg->admin_token_len, n.token_digest)) {
            st = TG_E_INTERNAL;
            goto out;
        }
        n.has_token = true;
    }
    admin_guard_fini(g);
    *g = n;
    return TG_OK;
out:
    admin_guard_fini(&n);
    return st;
}

/* Length of the host in a Host value "host" or "host:port" ("[v6]:port"),
 * or 0 when the value is not of that form (RFC 9110 §7.2). */
static size_t host_part(const char *v, size_t n)
{
    size_t h;
    if (n > 0 && v[0] == '[') {
        const char *e = memchr(v, ']', n);
        if (e == NULL)
            return 0;
        h = (size_t)(e - v) + 1;
    } else {
        const char *e = memchr(v, ':', n);
        h = e ? (size_t)(e - v) : n;
    }
    if (h == 0 || h == n)
        return h;
    /* Any port: behind a tunnel or a port forward the client's port
     * differs from ours, and the name is what a rebinding attack forges. */
    size_t plen = n - h - 1;
    if (v[h] != ':' || plen == 0 || plen > 5)
        return 0;
    for (size_t i = h + 1; i < n; i++)
        if (v[i] < '0' || v[i] > '9')
            return 0;
    return h;
}

static bool name_is(const char *name, const char *v, size_t n)
{
    return name != NULL && strlen(name) == n && strncasecmp(name, v, n) == 0;
}

static bool host_ok(const struct admin_guard *g, const struct http_head *hd, const char *local_host)
{
    const char *v = http_span_ptr(hd, hd->h[hd->host].value);
    size_t n = host_part(v, hd->h[hd->host].value.len);
    if (n == 0)
        return false;
    if (name_is(local_host, v, n))
        return true;
    for (size_t i = 0; i < g->n_names; i++)
        if (name_is(g->names[i], v, n))
            return true;
    return false;
}

/* A browser names the page behind a request in Origin (every cross-origin
 * request and every POST) and in Sec-Fetch-Site; curl and scrapers send
 * neither. */
static bool from_web_page(const struct http_head *hd)
{
    for (size_t i = 0; i < hd->n_headers; i++) {
        const struct http_header *h = &hd->h[i];
        if (http_span_ieq(hd, h->name, "origin"))
            return true;
        if (http_span_ieq(hd, h->name, "sec-fetch-site") &&
            !http_span_ieq(hd, h->value, "same-origin") && !http_span_ieq(hd, h->value, "none"))
            return true;
    }
    return false;
}

/* "Authorization: Bearer <token>" (RFC 6750 §2.1), exactly once. The
 * token is compared through its digest, so the time taken says nothing of
 * the expected token's bytes or length. */
static bool token_ok(const struct admin_guard *g, const struct http_head *hd)
{
    int idx = -1, n_auth = 0;
    for (size_t i = 0; i < hd->n_headers; i++) {
        if (http_span_ieq(hd, hd->h[i].name, "authorization")) {
            idx = (int)i;
            n_auth++;
        }
    }
    if (n_auth != 1)
        return false;
    const char *v = http_span_ptr(hd, hd->h[idx].value);
    size_t n = hd->h[idx].value.len;
    if (n < 7 || strncasecmp(v, "bearer", 6) != 0 || v[6] != ' ')
        return false;
    size_t i = 7;
    while (i < n && v[i] == ' ')
        i++;
    unsigned char d[ADMIN_TOKEN_DIGEST];
    if (i == n || !digest(v + i, n - i, d))
        return false;
    return CRYPTO_memcmp(d, g->token_digest, sizeof(d)) == 0;
}

unsigned admin_guard_check(const struct admin_guard *g, const struct http_head *hd,
                           const char *local_host, const char **why)
{
    if (hd->host < 0) {
        /* RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400;
         * HTTP/1.0 predates Host and is served. */
        if (hd->major == 1 && hd->minor == 0) {
            *why = NULL;
        } else {
            *why = "no_host";
            return 400;
        }
    } else if (!host_ok(g, hd, local_host)) {
        *why = "unknown_host";
        return 421;
    }
    if (from_web_page(hd)) {
        *why = "cross_site";
        return 403;
    }
    if (g->has_token && !token_ok(g, hd)) {
        *why = "no_valid_token";
        return 401;
    }
    *why = NULL;
    return 0;
}
