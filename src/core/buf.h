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

/* Gives b the memory mem of cap bytes (empty). b must have none. */
void buf_attach(struct buf *b, uint8_t *mem, size_t cap);

/* Takes the memory back from an empty buffer; b has none afterwards. */
uint8_t *buf_detach(struct buf *b);

static inline bool buf_has_mem(const struct buf *b)
{
    return b->data != NULL;
}

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

/* Free space at the end, without moving the bytes already there (for a
 * message head whose spans must stay put while it is parsed). */
static inline uint8_t *buf_wspace_tail(struct buf *b, size_t *len)
{
    *len = b->cap - b->w;
    return b->data + b->w;
}

/* Moves the unread bytes to the start of the memory. */
void buf_compact(struct buf *b);

static inline const uint8_t *buf_rdata(const struct buf *b, size_t *len)
{
    *len = b->w - b->r;
    return b->data + b->r;
}

void buf_consume(struct buf *b, size_t n);

/* True when no byte can be written even after compacting. A buffer
 * without memory is not full: it gets memory when written to. */
static inline bool buf_is_full(const struct buf *b)
{
    return b->data != NULL && b->w - b->r == b->cap;
}

/* Appends all of src or nothing. TG_E_AGAIN when it does not fit. */
TG_MUST_USE enum tg_status buf_append(struct buf *b, const void *src, size_t len);

#endif
