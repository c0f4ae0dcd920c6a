#include "proxy/http_req.h"

/* The block of a request in progress (struct http_msg), lent by a
 * per-worker free list while the request is in progress, so that an idle
 * connection holds none. */

#include <stdlib.h>

#define MSG_FREE_MAX 256 /* free request blocks kept by a worker */

/* Free request blocks (struct http_msg) of this worker: a worker is one
 * process with one loop, so the list is its own and needs no lock. */
static struct http_msg *msg_free_list;
static size_t n_msg_free;

/* Gives c the block of a request (its parsers, heads, cookie and log
 * path), from the free list when it has one, with both parsers ready for a
 * new message. False when out of memory. */
bool http_msg_get(struct session *c, struct http_req *h)
{
    if (h->m != NULL)
        return true;
    struct http_msg *m = msg_free_list;
    if (m != NULL) {
        msg_free_list = m->next_free;
        n_msg_free--;
    } else {
        m = malloc(sizeof(*m));
        if (m == NULL)
            return false;
    }
    m->next_free = NULL;
    h1_init(&m->req_p, true, c->l->cfg->max_body_size);
    h1_init(&m->resp_p, false, 0);
    m->set_cookie[0] = '\0';
    m->log_path[0] = '\0';
    h->m = m;
    return true;
}

/* Returns h's request block once the request is logged: an idle
 * keep-alive connection holds none. */
void http_msg_put(struct http_req *h)
{
    struct http_msg *m = h->m;
    if (m == NULL)
        return;
    h->m = NULL;
    h->log_path = "";
    if (n_msg_free >= MSG_FREE_MAX) {
        free(m);
        return;
    }
    m->next_free = msg_free_list;
    msg_free_list = m;
    n_msg_free++;
}
