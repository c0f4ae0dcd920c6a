/*
 * Fuzzes the request head path as a connection runs it: the h1 parser with
 * its limits (h1_head, h1_body, h1_next for pipelined requests), rule
 * matching (route_match) and the header rewrite for the backend
 * (http_hdr_request) on whatever was accepted.
 *
 * Checks: parsing the bytes in one call and in small steps agrees; an
 * accepted head stays inside the input and the limits, has clean names and
 * values, unambiguous framing (RFC 9112 §6.1, §6.3) and a Host that
 * http_host_parse reads without '@', '/', whitespace or stray brackets (the
 * parser is also run on the raw input alone); a refusal carries a
 * 4xx status; the matched rule really matches and a rule that matches is
 * never missed; the rewritten head is well formed with one of each identity
 * header and no client copy in any spelling, under every listener header
 * policy, and all or nothing in a small buffer; the body decoder always
 * makes progress and never claims more bytes than it was given.
 *
 * Input: a flags byte, a small-buffer size byte, then the bytes a client
 * sends.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include "fuzz_common.h"

#include "config/config.h"
#include "core/diag.h"
#include "http/http.h"

enum {
    FZ_STEP_MASK = 0x0f, /* incremental parse: 1..16 bytes per step */
    FZ_TLS = 1 << 4,
    FZ_CLIENT_CERT = 1 << 5,
    FZ_SMALL_BODY = 1 << 6, /* max_body 16 instead of unlimited */
    FZ_IPV6 = 1 << 7,
};

enum { FZ_MAX_MESSAGES = 4 };

/* Rules of every kind, with overlapping hosts and paths. No file paths, so
 * the listener loads without a PKI. */
static const char fz_config[] =
    "target_groups:\n"
    "  a: { targets: [ { address: 127.0.0.1:1 } ] }\n"
    "  b: { targets: [ { address: 127.0.0.1:2 } ] }\n"
    "listeners:\n"
    "  - name: web\n"
    "    protocol: http\n"
    "    listen: 127.0.0.1:8080\n"
    "    rules:\n"
    "      - { host: api.example.com, path: /v1/, target_group: a }\n"
    "      - { host: '*.example.com', path: /v1/admin, target_group: b }\n"
    "      - { host: '*.b.example.com', target_group: a }\n"
    "      - { host: localhost, target_group: b }\n"
    "      - { path: /ping, respond: { status: 200, body: \"pong\\n\" } }\n"
    "      - { path: /, target_group: b }\n"
    "      - { host: old.example.com, redirect: { scheme: https, port: 8443 } }\n"
    "    default_target_group: a\n";

static const struct cfg_listener *fz_listener(void)
{
    static struct config *cfg;
    if (cfg == NULL) {
        struct diag d;
        diag_init(&d);
        enum tg_status st =
            config_load_buffer("fuzz.yaml", NULL, fz_config, sizeof(fz_config) - 1, &cfg, &d);
        if (st != TG_OK) {
            char line[512];
            for (size_t i = 0; i < d.n; i++) {
                diag_format(&d, i, line, sizeof(line));
                fprintf(stderr, "%s\n", line);
            }
        }
        diag_fini(&d);
        CHECK(st == TG_OK && cfg->n_listeners == 1);
    }
    return &cfg->listeners[0];
}

static bool is_tchar_or_colonless(char c)
{
    return c != ':' && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '\0';
}

static void check_span(const struct http_head *hd, struct http_span s)
{
    CHECK((size_t)s.off + s.len <= hd->len);
}

/*
 * A value http_host_parse accepted: uri-host [":" port] with nothing a
 * backend could read as another host: no '@', '/', '\\', '%', whitespace
 * or control bytes, brackets only around the whole of an IPv6 literal, a
 * name within bounds and a port up to 65535. Refused values leave the
 * result cleared.
 */
static void check_host(const char *s, size_t len)
{
    struct http_host h;
    if (!http_host_parse(s, len, &h)) {
        CHECK(h.name == NULL && h.name_len == 0 && !h.has_port);
        return;
    }
    size_t open = 0, close = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        CHECK(c > 0x20 && c < 0x7f);
        CHECK(c != '@' && c != '/' && c != '\\' && c != '%' && c != '?' && c != '#');
        open += c == '[';
        close += c == ']';
    }
    CHECK(open == close && open <= 1);
    CHECK(open == 0 || (s[0] == '[' && h.kind == HTTP_HOST_IPV6));
    CHECK(h.name_len <= HTTP_HOST_MAX_NAME);
    CHECK(h.name_len <= len && h.name >= s && h.name + h.name_len <= s + len);
    CHECK((h.kind == HTTP_HOST_EMPTY) == (len == 0));
    CHECK(h.kind == HTTP_HOST_EMPTY || h.name_len > 0);
    for (size_t i = 0; i < h.name_len; i++) {
        CHECK(h.name[i] != '[' && h.name[i] != ']');
        CHECK(h.kind == HTTP_HOST_IPV6 || h.name[i] != ':');
    }
    CHECK(!h.has_port || h.port <= 65535);
    /* Parsing is stable: the name alone reads back as the same host. */
    if (h.kind == HTTP_HOST_NAME || h.kind == HTTP_HOST_IPV4) {
        struct http_host again;
        CHECK(http_host_parse(h.name, h.name_len, &again));
        CHECK(again.name_len <= h.name_len && !again.has_port);
    }
}

/* What an accepted head must look like. */
static void check_accepted(const struct h1 *h, const struct http_head *hd, size_t avail)
{
    CHECK(hd->len > 0 && hd->len <= avail && hd->len <= HTTP_MAX_HEAD_BYTES);
    CHECK(hd->base[hd->len - 1] == '\n');
    CHECK(hd->is_request);
    CHECK(hd->n_headers <= HTTP_MAX_HEADERS);
    check_span(hd, hd->method_s);
    check_span(hd, hd->target);
    /* RFC 9112 §2.3: HTTP/1.0 and 1.1 only; no version-less request line. */
    CHECK(hd->major == 1 && hd->minor <= 1);
    CHECK(hd->target.len > 0);
    CHECK(hd->method_s.len > 0);
    CHECK(hd->target.len <= HTTP_MAX_TARGET_BYTES);
    for (size_t i = 0; i < hd->target.len; i++) {
        char c = http_span_ptr(hd, hd->target)[i];
        CHECK(c != ' ' && c != '\r' && c != '\n');
    }
    unsigned n_cl = 0, n_te = 0;
    for (size_t i = 0; i < hd->n_headers; i++) {
        const struct http_header *f = &hd->h[i];
        check_span(hd, f->name);
        check_span(hd, f->value);
        /* RFC 9110 §5.1: a field name is a token, never empty. */
        CHECK(f->name.len > 0);
        for (size_t j = 0; j < f->name.len; j++)
            CHECK(is_tchar_or_colonless(http_span_ptr(hd, f->name)[j]));
        const char *v = http_span_ptr(hd, f->value);
        for (size_t j = 0; j < f->value.len; j++)
            CHECK(v[j] != '\r' && v[j] != '\n' && v[j] != '\0');
        if (f->value.len > 0) {
            CHECK(v[0] != ' ' && v[0] != '\t');
            CHECK(v[f->value.len - 1] != ' ' && v[f->value.len - 1] != '\t');
        }
        n_cl += http_span_ieq(hd, f->name, "content-length");
        n_te += http_span_ieq(hd, f->name, "transfer-encoding");
    }
    /* RFC 9112 §6.3: never both, never two lengths; §6.1: no
     * Transfer-Encoding in HTTP/1.0. */
    CHECK(!(n_cl > 0 && n_te > 0));
    CHECK(n_te == 0 || hd->minor == 1);
    CHECK(n_cl <= 1);
    CHECK(hd->body != HTTP_BODY_EOF);
    CHECK(hd->body != HTTP_BODY_CHUNKED || n_te >= 1);
    CHECK(hd->body != HTTP_BODY_LENGTH || (n_cl == 1 && hd->content_length > 0));
    CHECK(h->max_body == 0 || hd->body != HTTP_BODY_LENGTH || hd->content_length <= h->max_body);
    CHECK(hd->host == http_head_find(hd, "host"));
    /* RFC 9112 §3.2: more than one Host is refused, or the backend could
     * pick another site than the one we routed on. */
    unsigned n_host = 0;
    for (size_t i = 0; i < hd->n_headers; i++)
        n_host += http_span_ieq(hd, hd->h[i].name, "host");
    CHECK(n_host <= 1);

    /* RFC 9112 §3.2: HTTP/1.1 requests carry Host. */
    CHECK(!(hd->major == 1 && hd->minor == 1) || hd->host >= 0);
    /* An accepted Host is one the rules and the SNI check can read. */
    if (hd->host >= 0) {
        struct http_span v = hd->h[hd->host].value;
        check_host(http_span_ptr(hd, v), v.len);
    }
}

static bool same_span(struct http_span a, struct http_span b)
{
    return a.off == b.off && a.len == b.len;
}

/* The same head parsed in one call and step by step. */
static void check_same(const struct http_head *a, const struct http_head *b)
{
    CHECK(a->len == b->len);
    CHECK(a->method == b->method && same_span(a->method_s, b->method_s));
    CHECK(same_span(a->target, b->target));
    CHECK(a->major == b->major && a->minor == b->minor);
    CHECK(a->n_headers == b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        CHECK(same_span(a->h[i].name, b->h[i].name));
        CHECK(same_span(a->h[i].value, b->h[i].value));
    }
    CHECK(a->body == b->body && a->content_length == b->content_length);
    CHECK(a->keep_alive == b->keep_alive && a->is_upgrade == b->is_upgrade);
    CHECK(a->expect_continue == b->expect_continue && a->host == b->host);
}

/* h1_head with avail growing by step bytes until it decides. */
static enum tg_status parse_steps(struct h1 *h, struct http_head *hd, const char *data, size_t len,
                                  size_t step)
{
    size_t avail = 0;
    for (;;) {
        avail = len - avail < step ? len : avail + step;
        enum tg_status st = h1_head(h, hd, data, avail);
        if (st != TG_E_AGAIN || avail == len)
            return st;
    }
}

static size_t target_path_len(const char *t, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (t[i] == '?' || t[i] == '#')
            return i;
    return len;
}

static bool rule_matches(const struct cfg_rule *r, const char *host, size_t host_len,
                         const char *path, size_t path_len)
{
    if (r->host != NULL && !route_host_matches(r->host, host, host_len))
        return false;
    if (r->path == NULL)
        return true;
    size_t n = strlen(r->path);
    return n <= path_len && memcmp(path, r->path, n) == 0;
}

/* What a normalized path must look like: no longer than what it came
 * from, and no "." or ".." segment left to walk out of a rule's prefix
 * (RFC 3986 §5.2.4). */
static void check_normalized(const char *path, size_t len, const char *norm, size_t n)
{
    CHECK(n <= len || (len == 0 && n == 0));
    size_t i = 0;
    while (i < n) {
        if (norm[i] == '/')
            i++;
        size_t seg = i;
        while (i < n && norm[i] != '/')
            i++;
        size_t sl = i - seg;
        CHECK(!(sl == 1 && norm[seg] == '.'));
        CHECK(!(sl == 2 && norm[seg] == '.' && norm[seg + 1] == '.'));
    }
    /* A buffer one byte short is reported, never overrun. */
    if (n > 0) {
        char *small = malloc(n);
        CHECK(small != NULL);
        CHECK(route_normalize_path(path, len, small, n - 1) == n);
        free(small);
    }
}

static void check_route(const struct http_head *hd)
{
    const struct cfg_listener *l = fz_listener();
    const char *host = hd->host >= 0 ? http_span_ptr(hd, hd->h[hd->host].value) : NULL;
    size_t host_len = hd->host >= 0 ? hd->h[hd->host].value.len : 0;
    const char *target = http_span_ptr(hd, hd->target);
    size_t plen = target_path_len(target, hd->target.len);
    const struct cfg_rule *r = route_match(l, host, host_len, target, plen, NULL);
    /* Rules match on the normalized path. */
    static char norm[HTTP_MAX_TARGET_BYTES];
    size_t n = route_normalize_path(target, plen, norm, sizeof(norm));
    CHECK(n <= sizeof(norm));
    check_normalized(target, plen, norm, n);
    target = norm;
    plen = n;
    bool any = false;
    for (size_t i = 0; i < l->n_rules; i++)
        any = any || rule_matches(&l->rules[i], host, host_len, target, plen);
    CHECK(any == (r != NULL));
    if (r != NULL) {
        CHECK(r >= l->rules && r < l->rules + l->n_rules);
        CHECK(rule_matches(r, host, host_len, target, plen));
    }
}

static void check_rewrite(const struct http_head *hd, const struct hdr_identity *id,
                          size_t small_cap)
{
    struct buf large, small;
    CHECK(buf_init(&large, 4 * hd->len + 65536) == TG_OK);
    CHECK(http_hdr_request(hd, id, &large) == TG_OK);
    size_t len;
    const char *out = (const char *)buf_rdata(&large, &len);
    fz_check_head(out, len);
    char ip[64];
    net_addr_host(id->client, ip, sizeof(ip));
    fz_check_identity(out, len, ip, id->tls != NULL, id->tls && id->tls->has_client_cert,
                      id->cert_der_len > 0, id->n_chain > 0, id->allow_underscores,
                      id->client_is_trusted_proxy, id->add_forwarded);
    CHECK(fz_count_named(out, len, "connection") == (hd->is_upgrade ? 1 : 0));
    CHECK(fz_count_named(out, len, "keep-alive") == 0);
    CHECK(fz_count_named(out, len, "te") == 0);
    CHECK(fz_count_named(out, len, "proxy-connection") == 0);
    /* The framing the backend sees is the framing we parsed (RFC 9112
     * §11.2): nothing that would let it split the body differently. */
    int n_cl = fz_count_named(out, len, "content-length");
    int n_te = fz_count_named(out, len, "transfer-encoding");
    if (hd->body == HTTP_BODY_LENGTH)
        CHECK(n_cl == 1 && n_te == 0);
    else if (hd->body == HTTP_BODY_CHUNKED)
        CHECK(n_cl == 0 && n_te >= 1);
    else
        CHECK(n_te == 0 && n_cl <= 1);
    /* One Host, the one we routed on. */
    CHECK(fz_count_named(out, len, "host") == (hd->host >= 0 ? 1 : 0));

    CHECK(buf_init(&small, small_cap) == TG_OK);
    enum tg_status st = http_hdr_request(hd, id, &small);
    if (st == TG_OK) {
        size_t slen;
        const uint8_t *s = buf_rdata(&small, &slen);
        CHECK(slen == len && memcmp(s, out, len) == 0);
    } else {
        CHECK(st == TG_E_AGAIN && buf_len(&small) == 0 && len > small_cap);
    }
    buf_fini(&small);
    buf_fini(&large);
}

/* Feeds the bytes after a head to h1_body step bytes at a time. Returns
 * how many belonged to the body, or SIZE_MAX when it was refused or the
 * input ended first. */
static size_t run_body(struct h1 *h, const char *data, size_t len, size_t step)
{
    size_t used = 0;
    while (used < len || h->hd->body == HTTP_BODY_NONE) {
        size_t chunk = len - used < step ? len - used : step;
        size_t n = SIZE_MAX;
        bool done = false;
        enum tg_status st = h1_body(h, data + used, chunk, &n, &done);
        if (st != TG_OK) {
            CHECK(st == TG_E_PROTO);
            CHECK(h->err_status == 400 || h->err_status == 413);
            CHECK(h->err_reason != NULL);
            return SIZE_MAX;
        }
        CHECK(n <= chunk);
        used += n;
        if (done)
            return used;
        /* No progress without an end would spin a connection forever. */
        CHECK(n > 0 || chunk == 0);
    }
    return SIZE_MAX;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    size_t small_cap = (size_t)data[1] * 8;
    size_t step = (size_t)(flags & FZ_STEP_MASK) + 1;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    uint64_t max_body = flags & FZ_SMALL_BODY ? 16 : 0;

    struct net_addr addr;
    char err[64];
    CHECK(net_addr_parse(flags & FZ_IPV6 ? "[2001:db8::7]:4242" : "203.0.113.7:4242", false, &addr,
                         err, sizeof(err)) == TG_OK);
    static const uint8_t cert[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    const uint8_t *chain[1] = {cert};
    size_t chain_len[1] = {sizeof(cert)};
    struct tls_info info;
    memset(&info, 0, sizeof(info));
    info.has_client_cert = (flags & FZ_CLIENT_CERT) != 0;
    info.client_verified = info.has_client_cert;
    info.client_verdict = info.has_client_cert ? "SUCCESS" : "no_client_cert";
    snprintf(info.client_subject, sizeof(info.client_subject), "CN=alice");
    snprintf(info.client_issuer, sizeof(info.client_issuer), "CN=root");
    struct hdr_identity id = {
        .client = &addr,
        .port = 8443,
        .proto = flags & FZ_TLS ? "https" : "http",
        .tls = flags & FZ_TLS ? &info : NULL,
        .cert_der = info.has_client_cert ? cert : NULL,
        .cert_der_len = info.has_client_cert ? sizeof(cert) : 0,
        .chain_der = chain,
        .chain_der_len = chain_len,
        .n_chain = info.has_client_cert ? 1 : 0,
    };

    /* The host parser on its own, over the raw bytes. */
    check_host(in, len < 512 ? len : 512);

    struct h1 *whole = malloc(sizeof(*whole)), *steps = malloc(sizeof(*steps));
    struct http_head *hd = malloc(sizeof(*hd)), *hd2 = malloc(sizeof(*hd2));
    CHECK(whole != NULL && steps != NULL && hd != NULL && hd2 != NULL);
    h1_init(whole, true, max_body);
    h1_init(steps, true, max_body);

    /* Up to a few pipelined requests, as one keep-alive connection reads
     * them. */
    for (int m = 0; m < FZ_MAX_MESSAGES && len > 0; m++) {
        enum tg_status st = h1_head(whole, hd, in, len);
        enum tg_status st2 = parse_steps(steps, hd2, in, len, step);
        CHECK(st == st2);
        if (st == TG_E_PROTO) {
            unsigned e = whole->err_status;
            CHECK(e == 400 || e == 413 || e == 414 || e == 431);
            CHECK(whole->err_reason != NULL);
            CHECK(steps->err_status >= 400 && steps->err_status < 500);
            break;
        }
        if (st != TG_OK) {
            CHECK(st == TG_E_AGAIN && len < HTTP_MAX_HEAD_BYTES);
            break;
        }
        check_accepted(whole, hd, len);
        check_same(hd, hd2);
        check_route(hd);
        /* Every header policy: names with '_' allowed or not, the client a
         * trusted proxy or not, Forwarded added or not. */
        for (int opt = 0; opt < 8; opt++) {
            id.allow_underscores = (opt & 1) != 0;
            id.client_is_trusted_proxy = (opt & 2) != 0;
            id.add_forwarded = (opt & 4) != 0;
            check_rewrite(hd, &id, small_cap);
        }
        if (hd->is_upgrade || hd->method == HTTP_CONNECT || !hd->keep_alive)
            break;
        size_t used = run_body(whole, in + hd->len, len - hd->len, 4096);
        size_t used2 = run_body(steps, in + hd->len, len - hd->len, step);
        CHECK(used == used2);
        if (used == SIZE_MAX)
            break;
        in += hd->len + used;
        len -= hd->len + used;
        h1_next(whole, false);
        h1_next(steps, false);
    }
    free(hd2);
    free(hd);
    free(steps);
    free(whole);
    return 0;
}
