/*
 * Fuzzes the header rewriter (http_hdr_request, http_hdr_response). Heads
 * are built from the input by a plain line split, not by h1.c, so they hold
 * bytes the parser would refuse (bare CR, NUL, odd names): whatever the
 * head and the certificate facts say, the output must be a well-formed
 * head, CRLF line by CRLF line, with exactly one of each identity header we
 * set and none from the client in any spelling ('_' read as '-'), under
 * every listener header policy, and a buffer too small must be left
 * untouched.
 *
 * Input: a flags byte, a small-buffer size byte, then sections split by
 * NUL: the head text, the client subject, the client issuer, and the rest
 * as certificate bytes.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "fuzz_common.h"

#include "http/http.h"

enum {
    FZ_REQUEST = 1 << 0,
    FZ_UPGRADE = 1 << 1,
    FZ_KEEP_ALIVE = 1 << 2,
    FZ_TLS = 1 << 3,
    FZ_CLIENT_CERT = 1 << 4,
    FZ_VERIFIED = 1 << 5,
    FZ_EXTRA = 1 << 6,
    FZ_IPV6 = 1 << 7,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next NUL-separated section of [*p, end); *p moves past its NUL. */
static const char *section(const char **p, const char *end, size_t *len)
{
    const char *s = *p;
    const char *nul = memchr(s, '\0', (size_t)(end - s));
    *len = nul != NULL ? (size_t)(nul - s) : (size_t)(end - s);
    *p = nul != NULL ? nul + 1 : end;
    return s;
}

static struct http_span span(const char *base, const char *from, size_t len)
{
    struct http_span s = {(uint32_t)(from - base), (uint32_t)len};
    return s;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t';
}

/* Splits the first line into up to three space-separated parts. */
static void first_line(struct http_head *hd, const char *line, size_t len)
{
    const char *sp1 = memchr(line, ' ', len);
    size_t a = sp1 ? (size_t)(sp1 - line) : len;
    const char *rest = sp1 ? sp1 + 1 : line + len;
    size_t rest_len = (size_t)(line + len - rest);
    const char *sp2 = memchr(rest, ' ', rest_len);
    size_t b = sp2 ? (size_t)(sp2 - rest) : rest_len;
    const char *third = sp2 ? sp2 + 1 : rest + rest_len;
    size_t c = (size_t)(line + len - third);

    const char *version = hd->is_request ? third : line;
    size_t vlen = hd->is_request ? c : a;
    hd->major = vlen > 5 ? (uint8_t)(version[5] - '0') : 1;
    hd->minor = vlen > 7 ? (uint8_t)(version[7] - '0') : 1;
    if (hd->is_request) {
        hd->method_s = span(hd->base, line, a);
        hd->target = span(hd->base, rest, b);
        return;
    }
    hd->status = 0;
    for (size_t i = 0; i < b && i < 3; i++)
        hd->status = hd->status * 10 + (uint8_t)rest[i] % 10;
    hd->reason = span(hd->base, third, c);
}

/* Lines split on LF (one CR before it dropped); "Name: value" headers up to
 * an empty line. CRs elsewhere stay in the spans. */
static void build_head(struct http_head *hd, const char *text, size_t len, bool is_request)
{
    memset(hd, 0, sizeof(*hd));
    hd->base = text;
    hd->is_request = is_request;
    hd->host = -1;
    const char *p = text, *end = text + len;
    bool first = true;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl != NULL ? nl : end;
        const char *next = nl != NULL ? nl + 1 : end;
        if (eol > p && eol[-1] == '\r')
            eol--;
        size_t n = (size_t)(eol - p);
        if (first) {
            first_line(hd, p, n);
            first = false;
        } else if (n == 0 || hd->n_headers == HTTP_MAX_HEADERS) {
            break;
        } else {
            const char *colon = memchr(p, ':', n);
            if (colon != NULL) {
                const char *v = colon + 1, *ve = eol;
                while (v < ve && is_ws(*v))
                    v++;
                while (ve > v && is_ws(ve[-1]))
                    ve--;
                hd->h[hd->n_headers].name = span(text, p, (size_t)(colon - p));
                hd->h[hd->n_headers].value = span(text, v, (size_t)(ve - v));
                hd->n_headers++;
            }
        }
        p = next;
    }
    hd->len = (size_t)(p - text);
    hd->host = http_head_find(hd, "host");
}

/* A well-formed head: CRLF-terminated lines, no CR or LF inside one, a
 * colon in every header line, and the only empty line at the end. */
static void check_head(const char *out, size_t len)
{
    CHECK(len >= 4);
    CHECK(memcmp(out + len - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\r')
            CHECK(i + 1 < len && out[i + 1] == '\n');
        if (out[i] == '\n')
            CHECK(i > 0 && out[i - 1] == '\r');
    }
    const char *p = out, *end = out + len - 2;
    bool first = true;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        CHECK(eol != NULL && eol > p);
        CHECK(first || memchr(p, ':', (size_t)(eol - p)) != NULL);
        first = false;
        p = eol + 2;
    }
    CHECK(p == end);
}

/* Exact output in a large buffer, then the same or nothing in a small one
 * that already holds a few bytes. */
static void run_both(const struct http_head *hd, const struct hdr_identity *id, bool keep_alive,
                     const char *extra, size_t small_cap, size_t large_cap)
{
    struct buf large, small;
    CHECK(buf_init(&large, large_cap) == TG_OK);
    enum tg_status st = hd->is_request ? http_hdr_request(hd, id, &large)
                                       : http_hdr_response(hd, keep_alive, extra, &large);
    CHECK(st == TG_OK);
    size_t len;
    const char *out = (const char *)buf_rdata(&large, &len);
    check_head(out, len);

    if (hd->is_request) {
        char ip[64];
        net_addr_host(id->client, ip, sizeof(ip));
        bool has_cert = id->tls && id->tls->has_client_cert;
        fz_check_identity(out, len, ip, id->tls != NULL, has_cert, id->cert_der_len > 0,
                          id->n_chain > 0, id->allow_underscores, id->client_is_trusted_proxy,
                          id->add_forwarded);
        CHECK(fz_count_named(out, len, "x-client-subject") == (has_cert ? 1 : 0));
        CHECK(fz_count_named(out, len, "connection") == (hd->is_upgrade ? 1 : 0));
        CHECK(fz_count_named(out, len, "keep-alive") == 0);
    } else {
        CHECK(fz_count_named(out, len, "connection") == (hd->status == 101 || !keep_alive ? 1 : 0));
        CHECK(fz_count_named(out, len, "upgrade") <= (hd->status == 101 ? HTTP_MAX_HEADERS : 0));
    }

    CHECK(buf_init(&small, small_cap + 16) == TG_OK);
    CHECK(buf_append(&small, "0123456789abcdef", 16) == TG_OK);
    buf_consume(&small, 8);
    uint8_t before[32];
    memcpy(before, small.data, 16);
    st = hd->is_request ? http_hdr_request(hd, id, &small)
                        : http_hdr_response(hd, keep_alive, extra, &small);
    if (st == TG_OK) {
        CHECK(buf_len(&small) == 8 + len);
        CHECK(memcmp(small.data + small.r, "89abcdef", 8) == 0);
        CHECK(memcmp(small.data + small.r + 8, out, len) == 0);
    } else {
        CHECK(st == TG_E_AGAIN);
        CHECK(len > small_cap + 8);
        CHECK(small.r == 8 && small.w == 16);
        CHECK(memcmp(small.data, before, 16) == 0);
    }
    buf_fini(&small);
    buf_fini(&large);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t small_cap = (size_t)data[1] * 8;
    const char *p = (const char *)data + 2, *end = (const char *)data + size;
    size_t head_len, subject_len, issuer_len;
    const char *head = section(&p, end, &head_len);
    const char *subject = section(&p, end, &subject_len);
    const char *issuer = section(&p, end, &issuer_len);
    const uint8_t *cert = (const uint8_t *)p;
    size_t cert_len = (size_t)(end - p);

    struct http_head *hd = malloc(sizeof(*hd));
    CHECK(hd != NULL);
    build_head(hd, head, head_len, (flags & FZ_REQUEST) != 0);
    hd->is_upgrade = hd->is_request ? (flags & FZ_UPGRADE) != 0 : hd->status == 101;

    struct net_addr addr;
    char err[64];
    CHECK(net_addr_parse(flags & FZ_IPV6 ? "[2001:db8::7]:4242" : "203.0.113.7:4242", false, &addr,
                         err, sizeof(err)) == TG_OK);
    struct tls_info info;
    memset(&info, 0, sizeof(info));
    info.has_client_cert = (flags & FZ_CLIENT_CERT) != 0;
    info.client_verified = (flags & FZ_VERIFIED) != 0;
    info.client_verdict = info.client_verified ? "SUCCESS" : "cert_revoked";
    snprintf(info.client_subject, sizeof(info.client_subject), "%.*s", (int)subject_len, subject);
    snprintf(info.client_issuer, sizeof(info.client_issuer), "%.*s", (int)issuer_len, issuer);
    snprintf(info.client_serial, sizeof(info.client_serial), "%.*s", (int)subject_len, subject);
    snprintf(info.client_fingerprint, sizeof(info.client_fingerprint), "%.*s", (int)issuer_len,
             issuer);

    /* The certificate bytes, and the same bytes cut in two as its chain. */
    const uint8_t *chain[2] = {cert, cert + cert_len / 2};
    size_t chain_len[2] = {cert_len / 2, cert_len - cert_len / 2};
    struct hdr_identity id = {
        .client = &addr,
        .port = 8443,
        .proto = "https",
        .tls = flags & FZ_TLS ? &info : NULL,
        .cert_der = info.has_client_cert && cert_len > 0 ? cert : NULL,
        .cert_der_len = info.has_client_cert ? cert_len : 0,
        .chain_der = chain,
        .chain_der_len = chain_len,
        .n_chain = info.has_client_cert ? 2 : 0,
    };
    const char *extra = flags & FZ_EXTRA ? "Set-Cookie: tg=1\r\n" : NULL;
    /* Every header policy of a listener: names with '_' allowed or not, the
     * client a trusted proxy or not, Forwarded added or not. */
    for (int opt = 0; opt < (hd->is_request ? 8 : 1); opt++) {
        id.allow_underscores = (opt & 1) != 0;
        id.client_is_trusted_proxy = (opt & 2) != 0;
        id.add_forwarded = (opt & 4) != 0;
        run_both(hd, &id, (flags & FZ_KEEP_ALIVE) != 0, extra, small_cap, 4 * size + 65536);
    }
    free(hd);
    return 0;
}
