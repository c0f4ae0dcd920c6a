/*
 * What the OCSP responders said about client certificates, per worker:
 * a fixed number of entries keyed by (issuer name digest, serial), each
 * with the moment it stops being believed. The entries live in a ring in
 * the order they were written, so the oldest is the one a full cache
 * drops; a hash index of chained slots finds a key. Nothing here
 * allocates after tls_ocsp_cache_new.
 */
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

#define NIL UINT32_MAX

struct slot {
    struct tls_cert_ref key;
    enum tls_ocsp_verdict verdict;
    int64_t expires_at;
    uint32_t next; /* the next slot of the same bucket, or NIL */
    bool is_live;
};

struct tls_ocsp_cache {
    struct slot *slots; /* owned: a ring of cap slots */
    uint32_t *buckets;  /* owned: n_buckets heads, NIL when empty */
    size_t cap, n_buckets, head, n;
};

struct tls_ocsp_cache *tls_ocsp_cache_new(size_t cap)
{
    if (cap == 0 || cap >= NIL / 2)
        return NULL;
    struct tls_ocsp_cache *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->cap = cap;
    c->n_buckets = 16;
    while (c->n_buckets < 2 * cap)
        c->n_buckets *= 2;
    c->slots = calloc(cap, sizeof(*c->slots));
    c->buckets = malloc(c->n_buckets * sizeof(*c->buckets));
    if (c->slots == NULL || c->buckets == NULL) {
        tls_ocsp_cache_free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->n_buckets; i++)
        c->buckets[i] = NIL;
    return c;
}

void tls_ocsp_cache_free(struct tls_ocsp_cache *c)
{
    if (c == NULL)
        return;
    free(c->slots);
    free(c->buckets);
    free(c);
}

bool tls_cert_ref_equal(const struct tls_cert_ref *a, const struct tls_cert_ref *b)
{
    return a->serial_len == b->serial_len && a->is_serial_negative == b->is_serial_negative &&
           memcmp(a->issuer, b->issuer, TLS_DIGEST_LEN) == 0 &&
           memcmp(a->serial, b->serial, a->serial_len) == 0;
}

/* FNV-1a over the key; the issuer digest is already uniform, the serial
 * is the client's choice only through a CA that signed it. */
static size_t bucket_of(const struct tls_ocsp_cache *c, const struct tls_cert_ref *k)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < TLS_DIGEST_LEN; i++)
        h = (h ^ k->issuer[i]) * 1099511628211ull;
    for (size_t i = 0; i < k->serial_len && i < TLS_FACTS_SERIAL_MAX; i++)
        h = (h ^ k->serial[i]) * 1099511628211ull;
    h = (h ^ k->is_serial_negative) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (c->n_buckets - 1);
}

/* The slot holding key, or NIL; *link gets the pointer that reaches it. */
static uint32_t find(struct tls_ocsp_cache *c, const struct tls_cert_ref *key, uint32_t **link)
{
    uint32_t *p = &c->buckets[bucket_of(c, key)];
    while (*p != NIL && !tls_cert_ref_equal(&c->slots[*p].key, key))
        p = &c->slots[*p].next;
    *link = p;
    return *p;
}

static void drop(struct tls_ocsp_cache *c, uint32_t i)
{
    uint32_t *link;
    if (find(c, &c->slots[i].key, &link) == i)
        *link = c->slots[i].next;
    c->slots[i].is_live = false;
    c->n--;
}

bool tls_ocsp_cache_get(struct tls_ocsp_cache *c, const struct tls_cert_ref *key, int64_t now,
                        enum tls_ocsp_verdict *out)
{
    uint32_t *link;
    uint32_t i = find(c, key, &link);
    if (i == NIL)
        return false;
    if (now >= c->slots[i].expires_at) {
        drop(c, i);
        return false;
    }
    *out = c->slots[i].verdict;
    return true;
}

void tls_ocsp_cache_put(struct tls_ocsp_cache *c, const struct tls_cert_ref *key,
                        enum tls_ocsp_verdict verdict, int64_t expires_at)
{
    uint32_t *link;
    uint32_t old = find(c, key, &link);
    if (old != NIL)
        drop(c, old); /* written again: it becomes the newest */
    uint32_t i = (uint32_t)c->head;
    c->head = (c->head + 1) % c->cap;
    if (c->slots[i].is_live)
        drop(c, i); /* the oldest goes */
    struct slot *s = &c->slots[i];
    s->key = *key;
    if (s->key.serial_len > TLS_FACTS_SERIAL_MAX)
        s->key.serial_len = TLS_FACTS_SERIAL_MAX;
    s->verdict = verdict;
    s->expires_at = expires_at;
    s->is_live = true;
    uint32_t *head = &c->buckets[bucket_of(c, &s->key)];
    s->next = *head;
    *head = i;
    c->n++;
}

size_t tls_ocsp_cache_len(const struct tls_ocsp_cache *c)
{
    return c->n;
}

int64_t tls_ocsp_cache_until(const struct tls_ocsp_facts *f, int64_t now)
{
    /* RFC 5019 §4: a response may be cached until its nextUpdate; one
     * without says newer information is always there (RFC 6960 §4.2.2.1),
     * so it is believed only briefly. */
    return f->next_update != 0 ? f->next_update : now + TLS_OCSP_CACHE_MAX_AGE;
}
