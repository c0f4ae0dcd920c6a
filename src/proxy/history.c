/*
 * The trust history of one worker: each client certificate its listeners
 * accept is appended to the worker's file in the state directory the first
 * time, and again once a day while it keeps coming (core/history.h). The
 * table of what was written is bounded (TG_HISTORY_MAX_CERTS), and so is
 * the file (TG_HISTORY_MAX_FILE): past either the worker records no more
 * and says so once. A write is one write() of one line to a local file.
 */
#include "proxy/history.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/history.h"
#include "core/log.h"
#include "tls/tls.h"

#define SLOTS (2 * TG_HISTORY_MAX_CERTS)

struct seen {
    uint8_t fp[32];
    uint32_t listener;
    int64_t written; /* unix seconds; 0: free slot */
};

struct history {
    const struct config *cfg;
    char dir[4096];
    int *fds; /* per listener, -1 until the first line, -2 once it could not be opened */
    off_t *sizes;
    size_t n_listeners;
    struct seen *seen; /* SLOTS, open addressing */
    size_t n_seen;
    bool is_full_said;
};

/* Deletes the files of dir last written before the window: they hold
 * nothing a reader would keep. */
static void drop_old_files(const char *dir, int64_t now, uint64_t window_ms)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 7 || strcmp(e->d_name + n - 6, ".jsonl") != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (int64_t)st.st_mtime + (int64_t)(window_ms / 1000) < now)
            (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

void history_prepare(const struct config *cfg)
{
    char dir[4096];
    if (cfg->state_dir == NULL || cfg->trust_history_ms == 0 ||
        snprintf(dir, sizeof(dir), "%s/%s", cfg->state_dir, TG_HISTORY_DIR) >= (int)sizeof(dir))
        return;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return;
    struct passwd *pw = cfg->user != NULL && geteuid() == 0 ? getpwnam(cfg->user) : NULL;
    if (pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) != 0)
        log_warn("event=trust_history_unavailable dir=%s error=\"chown: %s\"", dir,
                 strerror(errno));
}

struct history *history_new(const struct config *cfg)
{
    if (cfg->state_dir == NULL || cfg->trust_history_ms == 0)
        return NULL;
    bool any = false;
    for (size_t i = 0; i < cfg->n_listeners && !any; i++)
        any = config_tls_any_mutual(&cfg->listeners[i].tls, false);
    if (!any)
        return NULL;
    struct history *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return NULL;
    h->cfg = cfg;
    h->n_listeners = cfg->n_listeners;
    h->fds = calloc(h->n_listeners, sizeof(*h->fds));
    h->sizes = calloc(h->n_listeners, sizeof(*h->sizes));
    h->seen = calloc(SLOTS, sizeof(*h->seen));
    int n = snprintf(h->dir, sizeof(h->dir), "%s/%s", cfg->state_dir, TG_HISTORY_DIR);
    if (h->fds == NULL || h->sizes == NULL || h->seen == NULL || n < 0 ||
        (size_t)n >= sizeof(h->dir)) {
        history_free(h);
        return NULL;
    }
    for (size_t i = 0; i < h->n_listeners; i++)
        h->fds[i] = -1;
    if (mkdir(h->dir, 0700) != 0 && errno != EEXIST) {
        char e_dir[LOG_KV_MAX];
        log_warn("event=trust_history_unavailable dir=%s error=\"%s\" effect=\"no record of "
                 "accepted client certificates for trust diff\"",
                 log_kv(e_dir, sizeof(e_dir), h->dir), strerror(errno));
        history_free(h);
        return NULL;
    }
    drop_old_files(h->dir, (int64_t)time(NULL), cfg->trust_history_ms);
    return h;
}

void history_free(struct history *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; h->fds != NULL && i < h->n_listeners; i++)
        if (h->fds[i] >= 0)
            close(h->fds[i]);
    free(h->fds);
    free(h->sizes);
    free(h->seen);
    free(h);
}

/* The slot of (fp, listener): its own, or the free one it would take;
 * NULL when the table is full and it is not in it. */
static struct seen *slot_of(struct history *h, const uint8_t fp[32], uint32_t listener)
{
    uint64_t k;
    memcpy(&k, fp, sizeof(k));
    size_t i = (size_t)((k ^ listener) % SLOTS);
    for (size_t probe = 0; probe < SLOTS; probe++, i = (i + 1) % SLOTS) {
        struct seen *s = &h->seen[i];
        if (s->written == 0 || (s->listener == listener && memcmp(s->fp, fp, 32) == 0))
            return s;
    }
    return NULL;
}

/* A growing line. */
struct line {
    char *p;
    size_t len, cap;
    bool is_bad;
};

static void put(struct line *o, const char *s, size_t n)
{
    if (o->is_bad)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *p = realloc(o->p, cap);
        if (p == NULL) {
            o->is_bad = true;
            return;
        }
        o->p = p;
        o->cap = cap;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void put_str(struct line *o, const char *s)
{
    put(o, s, strlen(s));
}

/* s as a JSON string (escaped by log_json_escape: at most 6 bytes a byte). */
static void put_json(struct line *o, const char *s)
{
    size_t cap = 6 * strlen(s) + 1;
    char *e = malloc(cap);
    if (e == NULL) {
        o->is_bad = true;
        return;
    }
    log_json_escape(e, cap, s);
    put(o, "\"", 1);
    put_str(o, e);
    put(o, "\"", 1);
    free(e);
}

static void put_der(struct line *o, const uint8_t *der, size_t len, bool first)
{
    size_t cap = 4 * ((len + 2) / 3) + 1;
    unsigned char *b = malloc(cap);
    if (b == NULL || len > INT32_MAX) {
        free(b);
        o->is_bad = true;
        return;
    }
    int n = EVP_EncodeBlock(b, der, (int)len);
    put_str(o, first ? "\"" : ",\"");
    put(o, (const char *)b, n > 0 ? (size_t)n : 0);
    put(o, "\"", 1);
    free(b);
}

static void put_x509(struct line *o, X509 *x, bool first)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    if (n <= 0) {
        o->is_bad = true;
        return;
    }
    put_der(o, der, (size_t)n, first);
    OPENSSL_free(der);
}

/* The chain as the client sent it: leaf first, then what followed it (a
 * resumed session's from what its ticket kept). */
static void put_chain(struct line *o, SSL *ssl, X509 *leaf)
{
    put_str(o, ",\"chain\":[");
    put_x509(o, leaf, true);
    STACK_OF(X509) *sk = SSL_get_peer_cert_chain(ssl);
    if (sk != NULL) {
        for (int i = 0; i < sk_X509_num(sk); i++) {
            X509 *x = sk_X509_value(sk, i);
            if (X509_cmp(x, leaf) != 0)
                put_x509(o, x, false);
        }
    } else {
        const uint8_t *ders[TLS_FACTS_MAX_CERTS];
        size_t lens[TLS_FACTS_MAX_CERTS];
        size_t n = tls_session_chain(ssl, ders, lens, TLS_FACTS_MAX_CERTS);
        for (size_t i = 0; i < n; i++)
            put_der(o, ders[i], lens[i], false);
    }
    put_str(o, "]");
}

static bool build_line(struct line *o, const struct cfg_listener *l, size_t site, SSL *ssl,
                       X509 *leaf, const uint8_t fp[32], int64_t first, int64_t now)
{
    struct tls_info info;
    tls_info_clear(&info);
    tls_cert_facts(leaf, &info);
    char num[128], hex[65];
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", fp[i]);
    const struct cfg_site *s = &l->tls.sites[site];
    snprintf(num, sizeof(num), "{\"v\":%d,\"listener\":", TG_HISTORY_VERSION);
    put_str(o, num);
    put_json(o, l->name);
    put_str(o, ",\"site\":");
    put_json(o, s->n_names > 0 ? s->names[0] : "");
    snprintf(num, sizeof(num), ",\"first\":%lld,\"last\":%lld,\"fingerprint\":\"%s\"",
             (long long)first, (long long)now, hex);
    put_str(o, num);
    put_str(o, ",\"subject\":");
    put_json(o, info.client_subject);
    put_str(o, ",\"serial\":");
    put_json(o, info.client_serial);
    put_chain(o, ssl, leaf);
    put_str(o, "}\n");
    return !o->is_bad;
}

/* The listener's file, opened on first use; -1 when it cannot be (said
 * once: the listener records nothing more in this worker). */
static int file_of(struct history *h, size_t listener)
{
    if (h->fds[listener] != -1)
        return h->fds[listener] >= 0 ? h->fds[listener] : -1;
    char path[4096 + 128];
    snprintf(path, sizeof(path), "%s/%s.%d.jsonl", h->dir, h->cfg->listeners[listener].name,
             (int)getpid());
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        char e_path[LOG_KV_MAX];
        log_warn("event=trust_history_unavailable file=%s error=\"%s\" effect=\"this worker "
                 "records no client certificate of the listener\"",
                 log_kv(e_path, sizeof(e_path), path), strerror(errno));
        h->fds[listener] = -2;
        return -1;
    }
    struct stat st;
    h->sizes[listener] = fstat(fd, &st) == 0 ? st.st_size : 0;
    h->fds[listener] = fd;
    return fd;
}

void history_note(struct history *h, const struct cfg_listener *l, size_t site, SSL *ssl,
                  int64_t now)
{
    X509 *leaf = SSL_get0_peer_certificate(ssl);
    uint8_t fp[32];
    if (h == NULL || leaf == NULL || !tls_cert_sha256(leaf, fp))
        return;
    size_t li = (size_t)(l - h->cfg->listeners);
    if (li >= h->n_listeners)
        return;
    struct seen *s = slot_of(h, fp, (uint32_t)li);
    bool is_new = s == NULL || s->written == 0;
    if (s != NULL && !is_new && now - s->written < TG_HISTORY_REFRESH_S)
        return;
    if (is_new && (s == NULL || h->n_seen >= TG_HISTORY_MAX_CERTS)) {
        if (!h->is_full_said)
            log_warn("event=trust_history_full certs=%d effect=\"this worker records no more "
                     "new client certificates until it is restarted\"",
                     TG_HISTORY_MAX_CERTS);
        h->is_full_said = true;
        return;
    }
    int fd = file_of(h, li);
    if (fd < 0)
        return;
    struct line o = {0};
    if (build_line(&o, l, site, ssl, leaf, fp, is_new ? now : s->written, now) &&
        h->sizes[li] + (off_t)o.len <= TG_HISTORY_MAX_FILE) {
        ssize_t n = write(fd, o.p, o.len);
        if (n > 0)
            h->sizes[li] += n;
        if (n == (ssize_t)o.len) {
            if (is_new) {
                memcpy(s->fp, fp, 32);
                s->listener = (uint32_t)li;
                h->n_seen++;
            }
            s->written = now;
        }
    } else if (!o.is_bad && !h->is_full_said) {
        h->is_full_said = true;
        log_warn("event=trust_history_full bytes=%d effect=\"this worker records no more client "
                 "certificates until it is restarted\"",
                 TG_HISTORY_MAX_FILE);
    }
    free(o.p);
}
