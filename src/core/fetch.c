/*
 * Bounded HTTP POSTs on a libev loop through libcurl's multi interface:
 * libcurl says which sockets and which timeout to watch
 * (CURLMOPT_SOCKETFUNCTION, CURLMOPT_TIMERFUNCTION), the loop watches
 * them and hands the events back (curl_multi_socket_action), so nothing
 * here ever waits on a server.
 */
#include "core/fetch.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A socket libcurl asked us to watch. */
struct sockw {
    ev_io io;
    struct fetch *f;
    struct sockw *next;
};

struct fetch_xfer {
    struct fetch *f;
    struct fetch_xfer *prev, *next; /* f's list */
    CURL *easy;                     /* owned */
    struct curl_slist *headers;     /* owned */
    char *url;                      /* owned */
    uint8_t *body;                  /* owned: max_response bytes */
    size_t body_len, body_cap;
    bool is_too_large;
    fetch_done_fn done;
    void *arg;
    char curl_err[CURL_ERROR_SIZE];
};

struct fetch {
    struct ev_loop *loop;
    CURLM *multi; /* owned */
    ev_timer timer;
    struct sockw *socks;      /* owned list */
    struct fetch_xfer *xfers; /* owned list: the transfers in progress */
};

static bool g_curl_ok;

bool fetch_global_init(void)
{
    g_curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    return g_curl_ok;
}

void fetch_global_fini(void)
{
    if (g_curl_ok)
        curl_global_cleanup();
    g_curl_ok = false;
}

static void xfer_free(struct fetch_xfer *x)
{
    struct fetch *f = x->f;
    if (x->easy != NULL) {
        curl_multi_remove_handle(f->multi, x->easy);
        curl_easy_cleanup(x->easy);
    }
    if (x->prev != NULL)
        x->prev->next = x->next;
    else if (f->xfers == x)
        f->xfers = x->next;
    if (x->next != NULL)
        x->next->prev = x->prev;
    curl_slist_free_all(x->headers);
    free(x->url);
    free(x->body);
    free(x);
}

static size_t body_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    struct fetch_xfer *x = arg;
    size_t n = size * nmemb;
    if (n > x->body_cap - x->body_len) {
        x->is_too_large = true;
        return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    return n;
}

static void transfer_done(struct fetch_xfer *x, CURLcode rc)
{
    struct fetch_result r;
    memset(&r, 0, sizeof(r));
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &r.http_code);
    if (x->is_too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        r.reason = "too_large";
        snprintf(r.detail, sizeof(r.detail), "the response exceeds %zu bytes", x->body_cap);
    } else if (rc != CURLE_OK) {
        r.reason = rc == CURLE_OPERATION_TIMEDOUT ? "timeout" : "unreachable";
        snprintf(r.detail, sizeof(r.detail), "%s: %s", x->url,
                 x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc));
    } else if (r.http_code != 200) {
        r.reason = "http_status";
        snprintf(r.detail, sizeof(r.detail), "%s answered HTTP %ld", x->url, r.http_code);
    } else {
        r.ok = true;
        r.body = x->body;
        r.len = x->body_len;
    }
    x->done(x->arg, &r);
    xfer_free(x);
}

static void finish_transfers(struct fetch *f)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result;
        struct fetch_xfer *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x != NULL && x->easy == msg->easy_handle)
            transfer_done(x, rc);
    }
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    struct sockw *w = (struct sockw *)io;
    struct fetch *f = w->f;
    int fd = io->fd; /* w may be freed by the call below */
    int action =
        ((revents & EV_READ) ? CURL_CSELECT_IN : 0) | ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running = 0;
    curl_multi_socket_action(f->multi, fd, action, &running);
    finish_transfers(f);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    struct fetch *f = userp;
    struct sockw *w = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (w == NULL)
            return 0;
        ev_io_stop(f->loop, &w->io);
        for (struct sockw **pp = &f->socks; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == w) {
                *pp = w->next;
                break;
            }
        }
        curl_multi_assign(f->multi, s, NULL);
        free(w);
        return 0;
    }
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL)
            return -1;
        ev_init(&w->io, io_cb);
        w->f = f;
        w->next = f->socks;
        f->socks = w;
        curl_multi_assign(f->multi, s, w);
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    ev_io_stop(f->loop, &w->io);
    ev_io_set(&w->io, s, events);
    ev_io_start(f->loop, &w->io);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct fetch *f = userp;
    ev_timer_stop(f->loop, &f->timer);
    if (timeout_ms >= 0) {
        ev_timer_set(&f->timer, (double)timeout_ms / 1000.0, 0.);
        ev_timer_start(f->loop, &f->timer);
    }
    return 0;
}

static void curl_timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct fetch *f = t->data;
    int running = 0;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    finish_transfers(f);
}

struct fetch *fetch_new(struct ev_loop *loop)
{
    if (!g_curl_ok)
        return NULL;
    struct fetch *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->loop = loop;
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        free(f);
        return NULL;
    }
    ev_init(&f->timer, curl_timer_cb);
    f->timer.data = f;
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    return f;
}

void fetch_free(struct fetch *f)
{
    if (f == NULL)
        return;
    while (f->xfers != NULL)
        xfer_free(f->xfers);
    curl_multi_cleanup(f->multi);
    ev_timer_stop(f->loop, &f->timer);
    while (f->socks != NULL) {
        struct sockw *w = f->socks;
        f->socks = w->next;
        ev_io_stop(f->loop, &w->io);
        free(w);
    }
    free(f);
}

void fetch_forget(struct fetch *f)
{
    if (f == NULL)
        return;
    ev_timer_stop(f->loop, &f->timer);
    for (struct sockw *w = f->socks; w != NULL; w = w->next) {
        ev_io_stop(f->loop, &w->io);
        close(w->io.fd);
    }
}

enum tg_status fetch_post(struct fetch *f, const struct fetch_req *rq, fetch_done_fn done,
                          void *arg, struct fetch_xfer **out, char *err, size_t err_len)
{
    *out = NULL;
    struct fetch_xfer *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    x->f = f;
    x->done = done;
    x->arg = arg;
    x->body_cap = rq->max_response;
    x->easy = curl_easy_init();
    x->url = strdup(rq->url);
    x->body = malloc(rq->max_response ? rq->max_response : 1);
    char ctype[128], accept[128];
    snprintf(ctype, sizeof(ctype), "Content-Type: %s", rq->content_type);
    struct curl_slist *h = curl_slist_append(NULL, ctype);
    if (h != NULL)
        x->headers = h;
    if (h != NULL && rq->accept != NULL) {
        snprintf(accept, sizeof(accept), "Accept: %s", rq->accept);
        if ((h = curl_slist_append(x->headers, accept)) != NULL)
            x->headers = h;
    }
    if (x->easy == NULL || x->url == NULL || x->body == NULL || h == NULL) {
        xfer_free(x);
        snprintf(err, err_len, "out of memory");
        return TG_E_NOMEM;
    }
    CURL *c = x->easy;
    /* POSTFIELDSIZE before COPYPOSTFIELDS: the copy takes that many bytes. */
    bool ok =
        curl_easy_setopt(c, CURLOPT_URL, x->url) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http") == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->body_len) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_COPYPOSTFIELDS, rq->body) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, x->headers) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_WRITEDATA, x) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_PRIVATE, x) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->curl_err) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, rq->timeout_ms) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, rq->connect_timeout_ms) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)rq->max_response) == CURLE_OK &&
        curl_easy_setopt(c, CURLOPT_USERAGENT, "tollgate/" TG_VERSION) == CURLE_OK;
    if (!ok || curl_multi_add_handle(f->multi, c) != CURLM_OK) {
        xfer_free(x);
        snprintf(err, err_len, "cannot set up the HTTP request");
        return TG_E_INTERNAL;
    }
    x->next = f->xfers;
    if (f->xfers != NULL)
        f->xfers->prev = x;
    f->xfers = x;
    *out = x;
    return TG_OK;
}

void fetch_cancel(struct fetch_xfer *x)
{
    if (x != NULL)
        xfer_free(x);
}
