#include "core/shm.h"

#include <string.h>
#include <sys/mman.h>

static size_t shm_size(size_t n)
{
    return sizeof(struct shm_stats) + n * sizeof(struct shm_listener_stats);
}

struct shm_stats *shm_stats_new(size_t n_listeners)
{
    void *p = mmap(NULL, shm_size(n_listeners), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    struct shm_stats *s = p;
    s->n_listeners = n_listeners;
    return s;
}

void shm_stats_free(struct shm_stats *s)
{
    if (s != NULL)
        munmap(s, shm_size(s->n_listeners));
}

/* From half a millisecond (a resumed handshake on loopback) to a minute
 * (a slow upload). */
static const double hist_bounds[SHM_HIST_BOUNDS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,   0.5,   1.0,    2.5,   5.0,  10.0,  30.0, 60.0,
};

double shm_hist_bound(size_t i)
{
    return i < SHM_HIST_BOUNDS ? hist_bounds[i] : 0.0;
}

void shm_hist_observe(struct shm_hist *h, double seconds)
{
    if (!(seconds > 0.0))
        seconds = 0.0;
    size_t i = 0;
    while (i < SHM_HIST_BOUNDS && seconds > hist_bounds[i])
        i++;
    shm_add(&h->buckets[i], 1);
    shm_add(&h->count, 1);
    double ns = seconds * 1e9;
    shm_add(&h->sum_ns, ns < 1.8e19 ? (uint64_t)ns : UINT64_C(18000000000000000000));
}

static const char *const version_names[SHM_TLS_COUNT] = {
    [SHM_TLS_V1_0] = "TLSv1",   [SHM_TLS_V1_1] = "TLSv1.1", [SHM_TLS_V1_2] = "TLSv1.2",
    [SHM_TLS_V1_3] = "TLSv1.3", [SHM_TLS_OTHER] = "other",
};

const char *shm_tls_version_name(enum shm_tls_version v)
{
    return v < SHM_TLS_COUNT ? version_names[v] : "other";
}

enum shm_tls_version shm_tls_version_of(int protocol)
{
    switch (protocol) {
    case 0x0301:
        return SHM_TLS_V1_0;
    case 0x0302:
        return SHM_TLS_V1_1;
    case 0x0303:
        return SHM_TLS_V1_2;
    case 0x0304:
        return SHM_TLS_V1_3;
    default:
        return SHM_TLS_OTHER;
    }
}

/* The rejection reasons (docs/OPERATIONS.md): those of a handshake, tls_error
 * last of them (SHM_HANDSHAKE_REASONS), then those of a judging again. */
static const char *const reasons[SHM_REASON_COUNT] = {
    "no_client_cert",    "cert_expired",       "cert_not_yet_valid", "cert_revoked",
    "unknown_ca",        "self_signed",        "bad_signature",      "wrong_purpose",
    "chain_too_long",    "crl_expired",        "crl_missing",        "serial_too_long",
    "name_too_long",     "protocol_version",   "no_shared_cipher",   "unknown_sni",
    "handshake_timeout", "ocsp_unavailable",   "not_allowed",        "tls_error",
    "session_expired",   "session_incomplete", "trust_changed",
};

const char *const shm_recheck_reasons[] = {
    "cert_expired",    "cert_not_yet_valid", "cert_revoked", "crl_expired",
    "crl_missing",     "bad_signature",      "unknown_ca",   "trust_changed",
    "session_expired", "session_incomplete", "not_allowed",  NULL,
};

const char *shm_reason_name(size_t i)
{
    return i < SHM_REASON_COUNT ? reasons[i] : "tls_error";
}

size_t shm_reason_index(const char *reason)
{
    for (size_t i = 0; reason != NULL && i < SHM_REASON_COUNT; i++)
        if (strcmp(reasons[i], reason) == 0)
            return i;
    return SHM_REASON_TLS_ERROR;
}

/* This process's worker slot; set once after fork. */
static unsigned worker_slot;

void shm_set_worker_slot(unsigned slot)
{
    worker_slot = slot < SHM_MAX_WORKERS ? slot : SHM_MAX_WORKERS - 1;
}

void shm_worker_died(struct shm_stats *s, unsigned slot)
{
    if (s == NULL || slot >= SHM_MAX_WORKERS)
        return;
    for (size_t i = 0; i < s->n_listeners; i++) {
        struct shm_listener_stats *l = &s->listeners[i];
        int64_t n =
            atomic_exchange_explicit(&l->conns_active_by_worker[slot], 0, memory_order_relaxed);
        atomic_fetch_sub_explicit(&l->conns_active, n, memory_order_relaxed);
        n = atomic_exchange_explicit(&l->h2_streams_by_worker[slot], 0, memory_order_relaxed);
        atomic_fetch_sub_explicit(&l->h2_streams_active, n, memory_order_relaxed);
    }
}

void shm_count_accept(struct shm_listener_stats *s)
{
    atomic_fetch_add_explicit(&s->conns_active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->conns_active_by_worker[worker_slot], 1, memory_order_relaxed);
    shm_add(&s->conns_total, 1);
}

void shm_count_close(struct shm_listener_stats *s, uint64_t bytes_in, uint64_t bytes_out)
{
    shm_add(&s->bytes_in, bytes_in);
    shm_add(&s->bytes_out, bytes_out);
    atomic_fetch_sub_explicit(&s->conns_active_by_worker[worker_slot], 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->conns_active, 1, memory_order_relaxed);
}

void shm_count_handshake(struct shm_listener_stats *s, int protocol, bool resumed, double seconds)
{
    shm_add(&s->handshakes, 1);
    if (resumed)
        shm_add(&s->handshakes_resumed, 1);
    shm_add(&s->hs_by_version[shm_tls_version_of(protocol)][resumed ? 1 : 0], 1);
    shm_hist_observe(&s->hs_duration, seconds);
}

void shm_count_handshake_failure(struct shm_listener_stats *s, const char *reason)
{
    shm_add(&s->handshake_failures, 1);
    shm_add(&s->hs_failures[shm_reason_index(reason)], 1);
}

void shm_count_resumption_refused(struct shm_listener_stats *s, const char *reason)
{
    shm_add(&s->resume_refused[shm_reason_index(reason)], 1);
}

void shm_count_conn_cut(struct shm_listener_stats *s, const char *reason)
{
    shm_add(&s->conns_cut[shm_reason_index(reason)], 1);
}

void shm_count_next_refused(struct shm_listener_stats *s, const char *reason)
{
    shm_add(&s->next_refused[shm_reason_index(reason)], 1);
}

static void copy_cut(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

void shm_note_refusal(struct shm_refusal_ring *ring, const char *reason, const char *client,
                      const char *subject, const char *issuer, int64_t unix_ms)
{
    uint64_t t = atomic_fetch_add_explicit(&ring->next, 1, memory_order_relaxed);
    struct shm_refusal_slot *e = &ring->v[t % SHM_REFUSALS];
    atomic_store_explicit(&e->seq, 2 * t + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    e->r.unix_ms = unix_ms;
    e->r.reason = (uint32_t)shm_reason_index(reason);
    copy_cut(e->r.client, sizeof(e->r.client), client);
    copy_cut(e->r.subject, sizeof(e->r.subject), subject);
    copy_cut(e->r.issuer, sizeof(e->r.issuer), issuer);
    atomic_store_explicit(&e->seq, 2 * t + 2, memory_order_release);
}

size_t shm_read_refusals(const struct shm_refusal_ring *ring, struct shm_refusal *out, size_t max)
{
    uint64_t next = atomic_load_explicit(&ring->next, memory_order_acquire);
    size_t n = 0;
    for (uint64_t k = 0; k < SHM_REFUSALS && k < next && n < max; k++) {
        uint64_t t = next - 1 - k;
        const struct shm_refusal_slot *e = &ring->v[t % SHM_REFUSALS];
        uint64_t before = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (before != 2 * t + 2)
            continue; /* being written, or already overwritten by a newer one */
        out[n] = e->r;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->seq, memory_order_relaxed) != before)
            continue;
        /* Whatever a torn copy holds, it ends inside its field. */
        out[n].client[sizeof(out[n].client) - 1] = '\0';
        out[n].subject[sizeof(out[n].subject) - 1] = '\0';
        out[n].issuer[sizeof(out[n].issuer) - 1] = '\0';
        if (out[n].reason >= SHM_REASON_COUNT)
            out[n].reason = SHM_REASON_TLS_ERROR;
        n++;
    }
    return n;
}

const char *const shm_h2_errors[SHM_H2_ERROR_COUNT] = {
    "h2_protocol_error", "h2_flow_control_error", "h2_frame_size_error", "h2_compression_error",
    "h2_flood",          "h2_settings_timeout",   "h2_internal_error",   "h2_error",
};

void shm_count_h2_conn(struct shm_listener_stats *s)
{
    shm_add(&s->h2_conns, 1);
}

void shm_count_h2_streams(struct shm_listener_stats *s, int n)
{
    atomic_fetch_add_explicit(&s->h2_streams_active, n, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->h2_streams_by_worker[worker_slot], n, memory_order_relaxed);
}

void shm_count_h2_request(struct shm_listener_stats *s)
{
    shm_add(&s->h2_requests, 1);
}

void shm_count_h2_error(struct shm_listener_stats *s, const char *reason)
{
    size_t i = 0;
    while (i + 1 < SHM_H2_ERROR_COUNT && strcmp(shm_h2_errors[i], reason) != 0)
        i++;
    shm_add(&s->h2_errors[i], 1);
}

void shm_count_request(struct shm_listener_stats *s, unsigned status, double seconds)
{
    if (status < SHM_STATUS_MIN || status >= SHM_STATUS_MIN + SHM_STATUS_COUNT)
        return;
    shm_add(&s->requests[status - SHM_STATUS_MIN], 1);
    shm_hist_observe(&s->req_duration, seconds);
}

static void hist_add(struct shm_hist *dst, const struct shm_hist *src)
{
    for (size_t i = 0; i <= SHM_HIST_BOUNDS; i++)
        shm_add(&dst->buckets[i], shm_get(&src->buckets[i]));
    shm_add(&dst->count, shm_get(&src->count));
    shm_add(&dst->sum_ns, shm_get(&src->sum_ns));
}

void shm_listener_stats_add(struct shm_listener_stats *dst, const struct shm_listener_stats *src)
{
    shm_add(&dst->conns_total, shm_get(&src->conns_total));
    shm_add(&dst->conns_refused, shm_get(&src->conns_refused));
    shm_add(&dst->handshakes, shm_get(&src->handshakes));
    shm_add(&dst->handshakes_resumed, shm_get(&src->handshakes_resumed));
    shm_add(&dst->handshake_failures, shm_get(&src->handshake_failures));
    shm_add(&dst->bytes_in, shm_get(&src->bytes_in));
    shm_add(&dst->bytes_out, shm_get(&src->bytes_out));
    for (size_t v = 0; v < SHM_TLS_COUNT; v++)
        for (size_t r = 0; r < 2; r++)
            shm_add(&dst->hs_by_version[v][r], shm_get(&src->hs_by_version[v][r]));
    for (size_t i = 0; i < SHM_REASON_COUNT; i++) {
        shm_add(&dst->hs_failures[i], shm_get(&src->hs_failures[i]));
        shm_add(&dst->resume_refused[i], shm_get(&src->resume_refused[i]));
        shm_add(&dst->conns_cut[i], shm_get(&src->conns_cut[i]));
        shm_add(&dst->next_refused[i], shm_get(&src->next_refused[i]));
    }
    for (size_t i = 0; i < SHM_STATUS_COUNT; i++)
        shm_add(&dst->requests[i], shm_get(&src->requests[i]));
    shm_add(&dst->h2_conns, shm_get(&src->h2_conns));
    shm_add(&dst->h2_requests, shm_get(&src->h2_requests));
    for (size_t i = 0; i < SHM_H2_ERROR_COUNT; i++)
        shm_add(&dst->h2_errors[i], shm_get(&src->h2_errors[i]));
    hist_add(&dst->hs_duration, &src->hs_duration);
    hist_add(&dst->req_duration, &src->req_duration);
}
