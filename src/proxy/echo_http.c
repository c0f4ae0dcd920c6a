#include "proxy/echo.h"

#include "http/http.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

/*
 * builtin:echo for https: the far end of a socket pair that answers every
 * request with JSON describing it as a backend receives it: method, path,
 * version, headers (names lower-cased, repeats joined with ", "), the
 * client address, body length and SHA-256. Keep-alive and pipelining work
 * as with a real backend.
 */
struct echo_http {
    struct worker *w;
    int fd;
    ev_io io;
    struct buf in;    /* owned */
    struct h1 parser; /* request parser */
    struct http_head hd;
    json_t *doc;    /* owned: the answer being built */
    EVP_MD_CTX *md; /* owned: body digest */
    uint64_t body_bytes;
    bool in_body;
    char *out; /* owned: the response being written */
    size_t out_len, out_off;
    bool keep_alive;
    bool is_head; /* the request was HEAD: the answer has no body */
    bool rd_shut;
};

static void echo_http_free(struct echo_http *e)
{
    ev_io_stop(e->w->loop, &e->io);
    close(e->fd);
    buf_fini(&e->in);
    json_decref(e->doc);
    EVP_MD_CTX_free(e->md);
    free(e->out);
    free(e);
}

static json_t *span_json(const struct http_head *hd, struct http_span s)
{
    return json_stringn(http_span_ptr(hd, s), s.len);
}

/* Describes the head as soon as it is complete (its bytes go away then). */
static bool describe_head(struct echo_http *e)
{
    const struct http_head *hd = &e->hd;
    json_t *headers = json_object();
    e->doc = json_object();
    if (e->doc == NULL || headers == NULL) {
        json_decref(headers);
        return false;
    }
    for (size_t i = 0; i < hd->n_headers; i++) {
        char name[256];
        size_t n = hd->h[i].name.len < sizeof(name) - 1 ? hd->h[i].name.len : sizeof(name) - 1;
        for (size_t k = 0; k < n; k++) {
            char ch = http_span_ptr(hd, hd->h[i].name)[k];
            name[k] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        name[n] = '\0';
        json_t *prev = json_object_get(headers, name);
        if (prev != NULL) {
            char *joined = NULL;
            size_t vlen = hd->h[i].value.len, plen = json_string_length(prev);
            joined = malloc(plen + 2 + vlen);
            if (joined == NULL)
                continue;
            memcpy(joined, json_string_value(prev), plen);
            memcpy(joined + plen, ", ", 2);
            memcpy(joined + plen + 2, http_span_ptr(hd, hd->h[i].value), vlen);
            json_object_set_new(headers, name, json_stringn(joined, plen + 2 + vlen));
            free(joined);
        } else {
            json_object_set_new(headers, name, span_json(hd, hd->h[i].value));
        }
    }
    char version[16];
    snprintf(version, sizeof(version), "HTTP/%u.%u", hd->major, hd->minor);
    json_object_set_new(e->doc, "method", span_json(hd, hd->method_s));
    json_object_set_new(e->doc, "path", span_json(hd, hd->target));
    json_object_set_new(e->doc, "version", json_string(version));
    json_object_set_new(e->doc, "headers", headers);
    json_object_set_new(e->doc, "backend", json_string("builtin:echo"));
    /* The echo sits on a socket pair: the client address it reports is the
     * one a backend learns, from X-Real-IP (set by tollgate, never the
     * client's own copy). */
    int ip = http_head_find(hd, "x-real-ip");
    json_object_set_new(e->doc, "client", ip >= 0 ? span_json(hd, hd->h[ip].value) : json_null());
    e->keep_alive = hd->keep_alive;
    e->is_head = hd->method == HTTP_HEAD;
    e->body_bytes = 0;
    return EVP_DigestInit_ex(e->md, EVP_sha256(), NULL) == 1;
}

static bool build_response(struct echo_http *e)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    EVP_DigestFinal_ex(e->md, md, &md_len);
    for (unsigned i = 0; i < md_len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[2 * md_len] = '\0';
    json_object_set_new(e->doc, "body_bytes", json_integer((json_int_t)e->body_bytes));
    json_object_set_new(e->doc, "body_sha256", json_string(hex));
    char *body = json_dumps(e->doc, JSON_COMPACT);
    json_decref(e->doc);
    e->doc = NULL;
    if (body == NULL)
        return false;
    size_t blen = strlen(body);
    size_t cap = blen + 160;
    e->out = malloc(cap);
    if (e->out == NULL) {
        free(body);
        return false;
    }
    int n = snprintf(e->out, cap,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                     "%zu\r\n%s\r\n",
                     blen + 1, e->keep_alive ? "" : "Connection: close\r\n");
    memcpy(e->out + n, body, blen);
    e->out[(size_t)n + blen] = '\n';
    /* RFC 9110 §9.3.2: HEAD gets the same head and no content. */
    e->out_len = e->is_head ? (size_t)n : (size_t)n + blen + 1;
    e->out_off = 0;
    free(body);
    return true;
}

/* Parses what is in the input buffer; false to close. */
static bool consume_input(struct echo_http *e)
{
    while (e->out == NULL && !buf_is_empty(&e->in)) {
        size_t len;
        const uint8_t *src = buf_rdata(&e->in, &len);
        if (!e->in_body) {
            enum tg_status st = h1_head(&e->parser, &e->hd, (const char *)src, len);
            if (st == TG_E_AGAIN)
                return true;
            if (st != TG_OK || !describe_head(e))
                return false;
            buf_consume(&e->in, e->hd.len);
            e->in_body = true;
            continue;
        }
        size_t n = 0;
        bool done = false;
        if (h1_body(&e->parser, (const char *)src, len, &n, &done) != TG_OK)
            return false;
        EVP_DigestUpdate(e->md, src, n);
        e->body_bytes += n;
        buf_consume(&e->in, n);
        if (done) {
            e->in_body = false;
            h1_next(&e->parser, false);
            if (!build_response(e))
                return false;
        }
    }
    /* A body-less request completes with its head. */
    if (e->out == NULL && e->in_body && e->hd.body == HTTP_BODY_NONE) {
        e->in_body = false;
        h1_next(&e->parser, false);
        return build_response(e);
    }
    return true;
}

static void echo_http_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct echo_http *e = io->data;
    for (;;) {
        if (!consume_input(e)) {
            echo_http_free(e);
            return;
        }
        if (e->out != NULL) {
            ssize_t n = send(e->fd, e->out + e->out_off, e->out_len - e->out_off, MSG_NOSIGNAL);
            if (n < 0 && errno != EAGAIN && errno != EINTR) {
                echo_http_free(e);
                return;
            }
            if (n > 0)
                e->out_off += (size_t)n;
            if (e->out_off < e->out_len)
                break;
            free(e->out);
            e->out = NULL;
            if (!e->keep_alive) {
                echo_http_free(e);
                return;
            }
            continue;
        }
        if (e->rd_shut) {
            echo_http_free(e);
            return;
        }
        size_t room;
        uint8_t *dst = buf_wspace(&e->in, &room);
        ssize_t n = room ? recv(e->fd, dst, room, 0) : -1;
        if (n > 0) {
            buf_commit(&e->in, (size_t)n);
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            e->rd_shut = true;
            continue;
        }
        break;
    }
    int events = e->out != NULL ? EV_WRITE : EV_READ;
    ev_io_stop(loop, &e->io);
    ev_io_set(&e->io, e->fd, events);
    ev_io_start(loop, &e->io);
}

enum tg_status echo_http_open(struct worker *w, int fd)
{
    struct echo_http *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return TG_E_NOMEM;
    e->w = w;
    e->fd = fd;
    e->md = EVP_MD_CTX_new();
    if (e->md == NULL || buf_init(&e->in, WORKER_BUF_SIZE) != TG_OK) {
        EVP_MD_CTX_free(e->md);
        free(e);
        return TG_E_NOMEM;
    }
    h1_init(&e->parser, true, 0);
    ev_io_init(&e->io, echo_http_cb, fd, EV_READ);
    e->io.data = e;
    ev_io_start(w->loop, &e->io);
    return TG_OK;
}
