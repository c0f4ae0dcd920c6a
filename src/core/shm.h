#ifndef TG_CORE_SHM_H
#define TG_CORE_SHM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Counters shared by the master and every worker of one config generation,
 * in an anonymous shared mapping made by the master before it forks. Workers
 * update them with relaxed atomics; readers sum nothing (one slot per
 * listener is already the total).
 */
struct shm_listener_stats {
    _Atomic int64_t conns_active;
    _Atomic uint64_t conns_total;
    _Atomic uint64_t conns_refused; /* over max_connections */
    _Atomic uint64_t handshakes;
    _Atomic uint64_t handshakes_resumed;
    _Atomic uint64_t handshake_failures;
    _Atomic uint64_t bytes_in;  /* from clients */
    _Atomic uint64_t bytes_out; /* to clients */
};

struct shm_stats {
    size_t n_listeners;
    struct shm_listener_stats listeners[];
};

/* Maps a zeroed region for n listeners; NULL on failure (errno set). */
struct shm_stats *shm_stats_new(size_t n_listeners);
void shm_stats_free(struct shm_stats *s);

static inline void shm_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

#endif
