#include "core/ticket.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

void ticket_set_wipe(struct ticket_set *s)
{
    explicit_bzero(s, sizeof(*s));
}

void ticket_set_rotate(struct ticket_set *s, const struct ticket_key *fresh)
{
    size_t keep = s->n < TICKET_KEYS_ROTATE ? s->n : TICKET_KEYS_ROTATE - 1;
    for (size_t i = keep; i < s->n; i++)
        explicit_bzero(&s->v[i], sizeof(s->v[i]));
    memmove(&s->v[1], &s->v[0], keep * sizeof(s->v[0]));
    s->v[0] = *fresh;
    s->n = keep + 1;
    s->enc = 0;
}

const struct ticket_key *ticket_set_find(const struct ticket_set *s, const uint8_t *name,
                                         bool *is_current)
{
    for (size_t i = 0; i < s->n && i < TICKET_KEYS_MAX; i++) {
        if (memcmp(ticket_key_name(&s->v[i]), name, TICKET_NAME_LEN) == 0) {
            *is_current = i == s->enc;
            return &s->v[i];
        }
    }
    return NULL;
}

static int b64_value(uint8_t ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

static bool is_space(uint8_t ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Text if every byte is base64 or white space (a random 80-byte binary key
 * is that with a chance of about 1e-46). */
static bool looks_like_text(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (b64_value(data[i]) < 0 && data[i] != '=' && !is_space(data[i]))
            return false;
    return true;
}

/* Decodes one line (trailing spaces allowed) into exactly one key. */
static bool b64_key(const uint8_t *s, size_t len, struct ticket_key *out)
{
    while (len > 0 && is_space(s[len - 1]))
        len--;
    if (len != 108 || s[107] != '=' || s[106] == '=') /* 80 bytes: 26 groups + 2 bytes */
        return false;
    uint32_t acc = 0;
    size_t bits = 0, n = 0;
    for (size_t i = 0; i < 107; i++) {
        int v = b64_value(s[i]);
        if (v < 0)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= TICKET_KEY_LEN)
                return false;
            out->bytes[n++] = (uint8_t)(acc >> bits);
        }
    }
    bool ok = n == TICKET_KEY_LEN && (acc & ((1u << bits) - 1)) == 0;
    acc = 0;
    return ok;
}

/* Refuses two keys with one name; then picks the key that encrypts. */
static bool finish(struct ticket_set *out, char *err, size_t err_len)
{
    for (size_t a = 0; a < out->n; a++) {
        for (size_t b = a + 1; b < out->n; b++) {
            if (memcmp(out->v[a].bytes, out->v[b].bytes, TICKET_NAME_LEN) == 0) {
                snprintf(err, err_len, "keys %zu and %zu have the same name (first 16 bytes)",
                         a + 1, b + 1);
                ticket_set_wipe(out);
                return false;
            }
        }
    }
    out->enc = out->n >= 2 ? out->n - 2 : 0;
    return true;
}

bool ticket_file_parse(const uint8_t *data, size_t len, struct ticket_set *out, char *err,
                       size_t err_len)
{
    ticket_set_wipe(out);
    if (len == 0) {
        snprintf(err, err_len, "is empty (expected 80-byte keys, binary or one base64 line each)");
        return false;
    }
    if (!looks_like_text(data, len)) {
        if (len % TICKET_KEY_LEN != 0 || len / TICKET_KEY_LEN > TICKET_KEYS_MAX) {
            snprintf(err, err_len,
                     "holds %zu bytes; a binary key file holds 1 to %d keys of exactly 80 bytes "
                     "(for example: openssl rand 80)",
                     len, TICKET_KEYS_MAX);
            return false;
        }
        out->n = len / TICKET_KEY_LEN;
        memcpy(out->v, data, len);
        return finish(out, err, err_len);
    }
    size_t line = 0;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && data[end] != '\n')
            end++;
        line++;
        size_t j = i;
        while (j < end && is_space(data[j]))
            j++;
        if (j < end) {
            if (out->n == TICKET_KEYS_MAX) {
                snprintf(err, err_len, "holds more than %d keys", TICKET_KEYS_MAX);
                ticket_set_wipe(out);
                return false;
            }
            if (!b64_key(data + j, end - j, &out->v[out->n])) {
                snprintf(err, err_len,
                         "line %zu is not one base64 key of 80 bytes (for example: openssl rand "
                         "80 | openssl base64 -A)",
                         line);
                ticket_set_wipe(out);
                return false;
            }
            out->n++;
        }
        i = end + 1;
    }
    if (out->n == 0) {
        snprintf(err, err_len,
                 "holds no key (expected 80-byte keys, binary or one base64 line "
                 "each)");
        return false;
    }
    return finish(out, err, err_len);
}

struct ticket_shm *ticket_shm_new(void)
{
    void *p = mmap(NULL, sizeof(struct ticket_shm), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, sizeof(struct ticket_shm), MADV_DONTDUMP);
    return p; /* zero-filled: seq 0, no key */
}

void ticket_shm_free(struct ticket_shm *shm)
{
    if (shm == NULL)
        return;
    explicit_bzero(&shm->set, sizeof(shm->set));
    munmap(shm, sizeof(*shm));
}

void ticket_shm_publish(struct ticket_shm *shm, const struct ticket_set *s)
{
    uint64_t seq = atomic_load_explicit(&shm->seq, memory_order_relaxed);
    atomic_store_explicit(&shm->seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&shm->set, s, sizeof(*s));
    atomic_store_explicit(&shm->seq, seq + 2, memory_order_release);
}

bool ticket_shm_read(const struct ticket_shm *shm, struct ticket_set *out)
{
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t s1 = atomic_load_explicit(&shm->seq, memory_order_acquire);
        if (s1 & 1)
            continue;
        memcpy(out, &shm->set, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        uint64_t s2 = atomic_load_explicit(&shm->seq, memory_order_relaxed);
        if (s1 == s2 && out->n <= TICKET_KEYS_MAX && out->enc < TICKET_KEYS_MAX)
            return true;
    }
    return false;
}
