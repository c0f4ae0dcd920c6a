#include "core/buf.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum tg_status buf_init(struct buf *b, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->data = malloc(cap);
    if (b->data == NULL)
        return TG_E_NOMEM;
    b->cap = cap;
    return TG_OK;
}

void buf_fini(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void buf_attach(struct buf *b, uint8_t *mem, size_t cap)
{
    assert(b->data == NULL);
    b->data = mem;
    b->cap = cap;
    b->r = 0;
    b->w = 0;
}

uint8_t *buf_detach(struct buf *b)
{
    assert(b->r == b->w);
    uint8_t *mem = b->data;
    memset(b, 0, sizeof(*b));
    return mem;
}

void buf_compact(struct buf *b)
{
    if (b->r == 0)
        return;
    size_t n = b->w - b->r;
    if (n > 0)
        memmove(b->data, b->data + b->r, n);
    b->r = 0;
    b->w = n;
}

uint8_t *buf_wspace(struct buf *b, size_t *len)
{
    if (b->r == b->w) {
        b->r = 0;
        b->w = 0;
    } else if (b->cap - b->w < b->cap / 4 || b->w == b->cap) {
        /* Compact only when the tail is short, so large relays rarely copy. */
        buf_compact(b);
    }
    *len = b->cap - b->w;
    return b->data + b->w;
}

void buf_commit(struct buf *b, size_t n)
{
    assert(n <= b->cap - b->w);
    b->w += n;
}

void buf_consume(struct buf *b, size_t n)
{
    assert(n <= b->w - b->r);
    b->r += n;
    if (b->r == b->w) {
        b->r = 0;
        b->w = 0;
    }
}

enum tg_status buf_append(struct buf *b, const void *src, size_t len)
{
    if (len == 0)
        return TG_OK;
    if (b->cap - (b->w - b->r) < len)
        return TG_E_AGAIN;
    if (b->cap - b->w < len)
        buf_compact(b);
    memcpy(b->data + b->w, src, len);
    b->w += len;
    return TG_OK;
}
