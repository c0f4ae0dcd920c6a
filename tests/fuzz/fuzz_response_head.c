/*
 * Fuzzes the response head path: the h1 parser reading what a backend sends
 * (h1_head, h1_body, h1_next for the next response on a kept-alive
 * connection), then the rewrite for the client (http_hdr_response).
 *
 * Checks: parsing in one call and in small steps agrees; an accepted head
 * stays inside the input and the limits, has clean names and values and
 * unambiguous framing (RFC 9112 §6.3), no body where none may be (HEAD,
 * 1xx, 204, 304); a refusal is a 502; the rewritten head is well formed,
 * keeps the framing, says Connection: close exactly when asked, and is all
 * or nothing in a small buffer; the body decoder always makes progress.
 *
 * Input: a flags byte, a small-buffer size byte, then the bytes a backend
 * sends.
 *
 * clang -fsanitize=fuzzer -DTG_LIBFUZZER builds a fuzzer; otherwise main()
 * replays every file in the directory given as argv[1].
 */
#include "fuzz_common.h"

#include "http/http.h"

enum {
    FZ_STEP_MASK = 0x0f,  /* incremental parse: 1..16 bytes per step */
    FZ_WAS_HEAD = 1 << 4, /* the request was HEAD */
    FZ_KEEP_ALIVE = 1 << 5,
    FZ_EXTRA = 1 << 6,
};

enum { FZ_MAX_MESSAGES = 4 };

static void check_span(const struct http_head *hd, struct http_span s)
{
    CHECK((size_t)s.off + s.len <= hd->len);
}

static void check_accepted(const struct http_head *hd, size_t avail, bool was_head)
{
    CHECK(hd->len > 0 && hd->len <= avail && hd->len <= HTTP_MAX_HEAD_BYTES);
    CHECK(hd->base[hd->len - 1] == '\n');
    CHECK(!hd->is_request);
    /* RFC 9110 §15: a status code is three digits, 1xx to 5xx. */
    CHECK(hd->status >= 100 && hd->status <= 599);
    CHECK(hd->n_headers <= HTTP_MAX_HEADERS);
    check_span(hd, hd->reason);
    for (size_t i = 0; i < hd->reason.len; i++) {
        char c = http_span_ptr(hd, hd->reason)[i];
        CHECK(c != '\r' && c != '\n');
    }
    unsigned n_cl = 0, n_te = 0;
    for (size_t i = 0; i < hd->n_headers; i++) {
        const struct http_header *f = &hd->h[i];
        check_span(hd, f->name);
        check_span(hd, f->value);
        CHECK(f->name.len > 0);
        const char *nm = http_span_ptr(hd, f->name);
        for (size_t j = 0; j < f->name.len; j++)
            CHECK(nm[j] != ':' && nm[j] != ' ' && nm[j] != '\r' && nm[j] != '\n' && nm[j] != 0);
        const char *v = http_span_ptr(hd, f->value);
        for (size_t j = 0; j < f->value.len; j++)
            CHECK(v[j] != '\r' && v[j] != '\n' && v[j] != '\0');
        if (f->value.len > 0)
            CHECK(v[f->value.len - 1] != ' ' && v[f->value.len - 1] != '\t');
        n_cl += http_span_ieq(hd, f->name, "content-length");
        n_te += http_span_ieq(hd, f->name, "transfer-encoding");
    }
    CHECK(!(n_cl > 0 && n_te > 0));
    CHECK(n_cl <= 1);
    bool no_body = was_head || (hd->status >= 100 && hd->status < 200) || hd->status == 204 ||
                   hd->status == 304;
    CHECK(!no_body || hd->body == HTTP_BODY_NONE);
    CHECK(hd->body != HTTP_BODY_CHUNKED || n_te >= 1);
    CHECK(hd->body != HTTP_BODY_LENGTH || (n_cl == 1 && hd->content_length > 0));
    CHECK(hd->body != HTTP_BODY_EOF || (n_cl == 0 && n_te == 0));
    CHECK(hd->is_upgrade == (hd->status == 101));
}

static bool same_span(struct http_span a, struct http_span b)
{
    return a.off == b.off && a.len == b.len;
}

static void check_same(const struct http_head *a, const struct http_head *b)
{
    CHECK(a->len == b->len && a->status == b->status);
    CHECK(same_span(a->reason, b->reason));
    CHECK(a->major == b->major && a->minor == b->minor);
    CHECK(a->n_headers == b->n_headers);
    for (size_t i = 0; i < a->n_headers; i++) {
        CHECK(same_span(a->h[i].name, b->h[i].name));
        CHECK(same_span(a->h[i].value, b->h[i].value));
    }
    CHECK(a->body == b->body && a->content_length == b->content_length);
    CHECK(a->keep_alive == b->keep_alive && a->is_upgrade == b->is_upgrade);
}

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

static void check_rewrite(const struct http_head *hd, bool keep_alive, const char *extra,
                          size_t small_cap)
{
    struct buf large, small;
    CHECK(buf_init(&large, 4 * hd->len + 65536) == TG_OK);
    CHECK(http_hdr_response(hd, keep_alive, extra, &large) == TG_OK);
    size_t len;
    const char *out = (const char *)buf_rdata(&large, &len);
    fz_check_head(out, len);
    CHECK(len > 12 && memcmp(out, "HTTP/1.1 ", 9) == 0);
    CHECK(fz_count_named(out, len, "connection") == (hd->status == 101 || !keep_alive ? 1 : 0));
    CHECK(fz_count_named(out, len, "keep-alive") == 0);
    CHECK(fz_count_named(out, len, "set-cookie") >= (extra != NULL ? 1 : 0));
    /* The client must split the body where we do (RFC 9112 §6.3). */
    int n_cl = fz_count_named(out, len, "content-length");
    int n_te = fz_count_named(out, len, "transfer-encoding");
    if (hd->body == HTTP_BODY_LENGTH)
        CHECK(n_cl == 1 && n_te == 0);
    else if (hd->body == HTTP_BODY_CHUNKED)
        CHECK(n_cl == 0 && n_te >= 1);
    else if (hd->body == HTTP_BODY_EOF)
        CHECK(n_cl == 0 && n_te == 0);

    CHECK(buf_init(&small, small_cap) == TG_OK);
    enum tg_status st = http_hdr_response(hd, keep_alive, extra, &small);
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

/* Bytes after a head through h1_body, step at a time: how many belonged to
 * the body, or SIZE_MAX when refused or the input ended first. */
static size_t run_body(struct h1 *h, const char *data, size_t len, size_t step)
{
    size_t used = 0;
    while (used < len || h->hd->body == HTTP_BODY_NONE) {
        size_t chunk = len - used < step ? len - used : step;
        size_t n = SIZE_MAX;
        bool done = false;
        enum tg_status st = h1_body(h, data + used, chunk, &n, &done);
        if (st != TG_OK) {
            CHECK(st == TG_E_PROTO && h->err_status == 502 && h->err_reason != NULL);
            return SIZE_MAX;
        }
        CHECK(n <= chunk);
        used += n;
        if (done)
            return used;
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
    bool was_head = (flags & FZ_WAS_HEAD) != 0;
    bool keep_alive = (flags & FZ_KEEP_ALIVE) != 0;
    const char *extra = flags & FZ_EXTRA ? "Set-Cookie: tg=1\r\n" : NULL;
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    struct h1 *whole = malloc(sizeof(*whole)), *steps = malloc(sizeof(*steps));
    struct http_head *hd = malloc(sizeof(*hd)), *hd2 = malloc(sizeof(*hd2));
    CHECK(whole != NULL && steps != NULL && hd != NULL && hd2 != NULL);
    h1_init(whole, false, 0);
    h1_init(steps, false, 0);
    h1_next(whole, was_head);
    h1_next(steps, was_head);

    for (int m = 0; m < FZ_MAX_MESSAGES && len > 0; m++) {
        enum tg_status st = h1_head(whole, hd, in, len);
        enum tg_status st2 = parse_steps(steps, hd2, in, len, step);
        CHECK(st == st2);
        if (st == TG_E_PROTO) {
            CHECK(whole->err_reason != NULL);
            /* http.h: a refused response is a 502, whatever the cause. */
            CHECK(whole->err_status == 502 && steps->err_status == 502);
            break;
        }
        if (st != TG_OK) {
            CHECK(st == TG_E_AGAIN && len < HTTP_MAX_HEAD_BYTES);
            break;
        }
        check_accepted(hd, len, was_head);
        check_same(hd, hd2);
        check_rewrite(hd, keep_alive, extra, small_cap);
        if (hd->is_upgrade || !hd->keep_alive)
            break;
        size_t used = run_body(whole, in + hd->len, len - hd->len, 4096);
        size_t used2 = run_body(steps, in + hd->len, len - hd->len, step);
        CHECK(used == used2);
        if (used == SIZE_MAX)
            break;
        in += hd->len + used;
        len -= hd->len + used;
        h1_next(whole, was_head);
        h1_next(steps, was_head);
    }
    free(hd2);
    free(hd);
    free(steps);
    free(whole);
    return 0;
}
