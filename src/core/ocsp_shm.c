#include "core/ocsp_shm.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define OCSP_READ_TRIES 1000

static size_t shm_size(size_t n)
{
    return sizeof(struct ocsp_shm) + n * sizeof(struct ocsp_slot);
}

struct ocsp_shm *ocsp_shm_new(size_t n)
{
    void *p = mmap(NULL, shm_size(n), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct ocsp_shm *shm = p; /* zero-filled: seq 0, OCSP_STATE_OFF */
    shm->n = n;
    return shm;
}

void ocsp_shm_free(struct ocsp_shm *shm)
{
    if (shm == NULL)
        return;
    munmap(shm, shm_size(shm->n));
}

static void write_begin(struct ocsp_slot *s)
{
    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(struct ocsp_slot *s)
{
    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_release);
}

bool ocsp_shm_publish(struct ocsp_shm *shm, size_t i, const struct ocsp_info *info,
                      const uint8_t *der, size_t len)
{
    if (shm == NULL || i >= shm->n || len > OCSP_RESP_MAX || (len > 0 && der == NULL))
        return false;
    struct ocsp_slot *s = &shm->v[i];
    write_begin(s);
    s->info = *info;
    s->info.len = (uint32_t)len;
    s->info.last_error[OCSP_ERROR_MAX - 1] = '\0';
    if (len > 0)
        memcpy(s->der, der, len);
    write_end(s);
    return true;
}

void ocsp_shm_note_error(struct ocsp_shm *shm, size_t i, const char *error, int64_t at)
{
    if (shm == NULL || i >= shm->n)
        return;
    struct ocsp_slot *s = &shm->v[i];
    write_begin(s);
    snprintf(s->info.last_error, sizeof(s->info.last_error), "%s", error);
    s->info.last_error_at = at;
    write_end(s);
}

bool ocsp_shm_info(const struct ocsp_shm *shm, size_t i, struct ocsp_info *out)
{
    if (shm == NULL || i >= shm->n)
        return false;
    const struct ocsp_slot *s = &shm->v[i];
    for (int tries = 0; tries < OCSP_READ_TRIES; tries++) {
        uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        memcpy(out, &s->info, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (s1 == s2) {
            out->last_error[OCSP_ERROR_MAX - 1] = '\0';
            if (out->len > OCSP_RESP_MAX)
                out->len = 0;
            return true;
        }
    }
    return false;
}

uint8_t *ocsp_shm_copy(const struct ocsp_shm *shm, size_t i, int64_t now, size_t *len,
                       void *(*alloc)(size_t), void (*release)(void *))
{
    *len = 0;
    if (shm == NULL || i >= shm->n)
        return NULL;
    const struct ocsp_slot *s = &shm->v[i];
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (int tries = 0; tries < OCSP_READ_TRIES; tries++) {
        uint64_t s1 = atomic_load_explicit(&s->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        uint32_t state = s->info.state;
        uint32_t n = s->info.len;
        int64_t next = s->info.next_update;
        bool has_one = (state == OCSP_STATE_GOOD || state == OCSP_STATE_REVOKED) && n > 0 &&
                       n <= OCSP_RESP_MAX && now < next;
        if (has_one && cap < n) {
            release(buf);
            buf = alloc(n);
            cap = buf != NULL ? n : 0;
            if (buf == NULL)
                return NULL;
        }
        if (has_one)
            memcpy(buf, s->der, n);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->seq, memory_order_relaxed) != s1)
            continue;
        if (!has_one)
            break;
        *len = n;
        return buf;
    }
    release(buf);
    return NULL;
}

const char *ocsp_state_name(uint32_t state)
{
    static const char *const names[] = {"off", "none", "good", "revoked"};
    return state < sizeof(names) / sizeof(names[0]) ? names[state] : "none";
}
