/*
 * on_reject: page. On an https site with client_auth: optional, a client
 * whose certificate is missing or refused completes the handshake and every
 * request it sends is answered here, never forwarded: 496 (no certificate)
 * or 495 (a certificate that failed), as nginx names them, or 403 (a
 * certificate that verified but is not on the allow-list), with a short
 * page that says why, what was offered, and which CAs the server accepts.
 */
#include "proxy/reject.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#include "core/log.h"

struct out {
    char *p;
    size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) TG_PRINTF(2, 3);

static void put(struct out *o, const char *fmt, ...)
{
    if (o->len >= o->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len = (size_t)n < o->cap - o->len ? o->len + (size_t)n : o->cap - 1;
}

/* What the page shows of a certificate name: enough to recognise it, and
 * a bounded share of the page whatever the certificate holds. */
#define SHOWN_NAME_MAX 256
/* Room kept for what closes the page, so that it is never cut. */
#define PAGE_TAIL 64

/* Text from the certificate (subject, issuer) or the configuration (CA
 * names), at most SHOWN_NAME_MAX bytes of it (cut at a character boundary,
 * then "..."), escaped for HTML or as a JSON string. Written whole or not
 * at all; returns whether it was. */
static bool put_text(struct out *o, const char *s, bool json)
{
    char cut[SHOWN_NAME_MAX + 4];
    size_t n = strnlen(s, SHOWN_NAME_MAX + 1);
    if (n > SHOWN_NAME_MAX) {
        n = SHOWN_NAME_MAX;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
        memcpy(cut, s, n);
        memcpy(cut + n, "...", 4);
        s = cut;
    }
    char e[6 * (SHOWN_NAME_MAX + 3) + 3];
    size_t len = 0;
    if (json) {
        e[len++] = '"';
        len += log_json_escape(e + len, sizeof(e) - len - 1, s);
        e[len++] = '"';
    } else {
        for (; *s != '\0'; s++) {
            const char *rep = NULL;
            switch (*s) {
            case '<':
                rep = "&lt;";
                break;
            case '>':
                rep = "&gt;";
                break;
            case '&':
                rep = "&amp;";
                break;
            case '"':
                rep = "&quot;";
                break;
            case '\'':
                rep = "&#39;";
                break;
            default:
                e[len++] = *s;
                continue;
            }
            memcpy(e + len, rep, strlen(rep));
            len += strlen(rep);
        }
    }
    e[len] = '\0';
    if (o->len + len + PAGE_TAIL >= o->cap)
        return false;
    put(o, "%s", e);
    return true;
}

/* Why a reason code refuses, in words. */
static const char *explain(const char *reason)
{
    static const struct {
        const char *code, *text;
    } t[] = {
        {"no_client_cert", "no client certificate was sent"},
        {"cert_expired", "the client certificate has expired"},
        {"cert_not_yet_valid", "the client certificate is not valid yet"},
        {"cert_revoked", "the client certificate has been revoked"},
        {"unknown_ca", "the client certificate was not issued by a CA this server accepts"},
        {"self_signed", "the client certificate is self-signed"},
        {"bad_signature", "a signature in the client certificate chain does not verify"},
        {"wrong_purpose", "the client certificate is not meant for client authentication"},
        {"chain_too_long", "the client certificate chain is longer than this server allows"},
        {"crl_expired", "the revocation list of the issuing CA is out of date"},
        {"crl_missing", "no revocation list is available for the issuing CA"},
        {"not_allowed", "the client certificate is valid, but its identity is not on this "
                        "site's allow-list"},
    };
    for (size_t i = 0; i < TG_ARRAY_LEN(t); i++)
        if (strcmp(t[i].code, reason) == 0)
            return t[i].text;
    return "the client certificate could not be verified";
}

bool reject_page_applies(const struct session *c)
{
    const struct cfg_tls *t = &c->l->cfg->tls;
    if (c->ssl == NULL || !c->l->cfg->has_tls || t->on_reject == NULL ||
        strcmp(t->on_reject, "page") != 0)
        return false;
    const struct cfg_site *s = &t->sites[c->site];
    return s->mode == CFG_TLS_MUTUAL && s->client_auth == CFG_CLIENT_AUTH_OPTIONAL;
}

unsigned reject_page_render(const struct tls_info *info, const STACK_OF(X509_NAME) *cas, bool json,
                            char *dst, size_t cap, const char **reason)
{
    assert(cap >= REJECT_PAGE_MIN);
    if (info->client_verified)
        return 0;
    *reason = info->has_client_cert ? info->client_verdict : "no_client_cert";
    /* A certificate that verified but is not on the allow-list is a
     * refusal of who it names, not of the certificate. */
    bool forbidden = info->has_client_cert && strcmp(*reason, "not_allowed") == 0;
    unsigned status = forbidden ? 403 : info->has_client_cert ? 495 : 496;
    const char *title = forbidden       ? "Forbidden"
                        : status == 495 ? "SSL Certificate Error"
                                        : "SSL Certificate Required";
    struct out o = {dst, 0, cap};
    dst[0] = '\0';
    char name[SHOWN_NAME_MAX + 8]; /* longer than shown, so a cut gets its "..." */
    if (json) {
        put(&o, "{\"status\":%u,\"reason\":\"%s\",\"message\":", status, *reason);
        put_text(&o, explain(*reason), true);
        if (info->has_client_cert) {
            put(&o, ",\"subject\":");
            put_text(&o, info->client_subject, true);
            put(&o, ",\"issuer\":");
            put_text(&o, info->client_issuer, true);
        }
        put(&o, ",\"accepted_cas\":[");
        for (int i = 0; i < sk_X509_NAME_num(cas); i++) {
            size_t before = o.len;
            tls_name_format(sk_X509_NAME_value(cas, i), name, sizeof(name));
            put(&o, i ? "," : "");
            if (!put_text(&o, name, true)) {
                o.len = before; /* no room: the list ends here */
                break;
            }
        }
        put(&o, "]}\n");
    } else {
        put(&o, "<!doctype html>\n<html><head><title>%u %s</title></head><body>\n<h1>%u %s</h1>\n",
            status, title, status, title);
        put(&o, "<p>This site asks for a client certificate, and ");
        put_text(&o, explain(*reason), false);
        put(&o, " (<code>%s</code>).</p>\n", *reason);
        if (info->has_client_cert) {
            put(&o, "<p>Offered: subject <code>");
            put_text(&o, info->client_subject, false);
            put(&o, "</code>, issuer <code>");
            put_text(&o, info->client_issuer, false);
            put(&o, "</code>.</p>\n");
        }
        put(&o, "<p>Accepted issuers:</p>\n<ul>\n");
        for (int i = 0; i < sk_X509_NAME_num(cas); i++) {
            size_t before = o.len;
            tls_name_format(sk_X509_NAME_value(cas, i), name, sizeof(name));
            put(&o, "<li><code>");
            if (!put_text(&o, name, false)) {
                o.len = before; /* no room: the list ends here */
                break;
            }
            put(&o, "</code></li>\n");
        }
        put(&o, "</ul>\n</body></html>\n");
    }
    return status;
}

unsigned reject_page(struct session *c, bool json, char *dst, size_t cap, const char **reason)
{
    struct tls_info info;
    tls_info_get(c->ssl, &c->verdict, &info);
    return reject_page_render(&info, SSL_get_client_CA_list(c->ssl), json, dst, cap, reason);
}
