#ifndef TG_CORE_BUF_H
#define TG_CORE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/*
 * A byte buffer with a capacity fixed at creation and read/write offsets.
 * Bytes are written at [w, cap) and read from [r, w). A full buffer is the
 * backpressure signal: the side that fills it stops reading.
 */
struct buf {
    uint8_t *data; /* owned */
    size_t cap;
    size_t r;
    size_t w;
};

/* Allocates cap bytes. Returns TG_E_NOMEM on failure (b is then empty). */
TG_MUST_USE enum tg_status buf_init(struct buf *b, size_t cap);
void buf_fini(struct buf *b);

static inline size_t buf_len(const struct buf *b)
{
    return b->w - b->r;
}

static inline bool buf_is_empty(const struct buf *b)
{
    return b->w == b->r;
}

/* Free space at the end after compacting if that helps; *len gets its size. */
uint8_t *buf_wspace(struct buf *b, size_t *len);
void buf_commit(struct buf *b, size_t n);

static inline const uint8_t *buf_rdata(const struct buf *b, size_t *len)
{
    *len = b->w - b->r;
    return b->data + b->r;
}

void buf_consume(struct buf *b, size_t n);

/* True when no byte can be written even after compacting. */
static inline bool buf_is_full(const struct buf *b)
{
    return b->w - b->r == b->cap;
}

/* Appends all of src or nothing. TG_E_AGAIN when it does not fit. */
TG_MUST_USE enum tg_status buf_append(struct buf *b, const void *src, size_t len);

#endif
